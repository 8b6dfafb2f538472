//! Where a store's data lives in Redis, and how a user's pattern is confined
//! to it.
//!
//! Entries are at `prefix + key`. The two index keys of a bounded store are
//! `prefix + "\xff" + name`, and the load lock of `get_or_set` for a key is
//! `prefix + "\xff" + "lock:" + key`: a prefix and a key are UTF-8 and `0xFF`
//! never occurs in UTF-8, so no entry of this or any other store (with any
//! UTF-8 prefix) can ever have one of those names.
//!
//! A pattern reaches Redis only behind the escaped prefix, and every key SCAN
//! returns is checked again here: it must start with the prefix, the rest
//! must be a valid, non-empty key, and the rest must match the pattern by our
//! own matcher. So whatever either contains, nothing outside the prefix and no
//! index key is ever listed, counted or deleted.

use crate::pattern::{Pattern, escape_pattern};

/// Patterns with more stars than this are matched here instead of in Redis:
/// Redis's matcher backtracks on many stars (CVE-2022-36021, CVE-2024-31228),
/// and a user-supplied pattern must not be able to stall a shared server.
const MAX_STARS_SENT: usize = 4;

pub(super) struct Keyspace {
    prefix: Box<str>,
    escaped_prefix: Box<str>,
    /// Sorted set: entry key -> recency (higher is more recent). LRU only.
    pub recency: Vec<u8>,
    /// Sorted set: entry key -> expiry time in ms since the epoch (Redis
    /// `TIME`). Bounded stores only; lists only entries with a TTL.
    pub expiry: Vec<u8>,
}

impl Keyspace {
    pub fn new(prefix: &str) -> Self {
        let internal = |name: &str| [prefix.as_bytes(), b"\xff", name.as_bytes()].concat();
        Keyspace {
            prefix: prefix.into(),
            escaped_prefix: escape_pattern(prefix).into(),
            recency: internal("lru"),
            expiry: internal("expiry"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of the entry under `key`.
    #[inline]
    pub fn entry(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// The Redis key of the lock `get_or_set` holds while loading `key`.
    pub fn lock(&self, key: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), b"\xfflock:", key.as_bytes()].concat()
    }

    /// The MATCH argument for a SCAN over entries matching `pattern` (all
    /// entries when `None`). It may select more than `pattern` does (see
    /// [`MAX_STARS_SENT`]); [`Keyspace::user_key`] has the last word.
    pub fn scan_match(&self, pattern: Option<&Pattern>) -> String {
        let sent = match pattern {
            Some(p) if p.as_str().bytes().filter(|&b| b == b'*').count() <= MAX_STARS_SENT => p.as_str(),
            _ => "*",
        };
        let mut out = String::with_capacity(self.escaped_prefix.len() + sent.len());
        out.push_str(&self.escaped_prefix);
        out.push_str(sent);
        out
    }

    /// The user key of the Redis key `raw`, if `raw` is an entry of this
    /// store that matches `pattern`.
    pub fn user_key<'a>(&self, raw: &'a [u8], pattern: Option<&Pattern>) -> Option<&'a str> {
        let rest = raw.strip_prefix(self.prefix.as_bytes())?;
        let key = std::str::from_utf8(rest).ok()?;
        if crate::store::check_key(key).is_err() {
            return None;
        }
        pattern.is_none_or(|p| p.matches(key)).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys_are_never_entries() {
        let space = Keyspace::new("app:");
        assert_eq!(space.recency, b"app:\xfflru");
        assert_eq!(space.user_key(&space.recency, None), None);
        assert_eq!(space.user_key(&space.expiry, None), None);
        assert_eq!(space.lock("k"), b"app:\xfflock:k");
        assert_eq!(space.user_key(&space.lock("k"), None), None);
        assert_eq!(space.user_key(b"app:", None), None, "the prefix alone is no entry");
        assert_eq!(space.user_key(b"other:x", None), None);
        assert_eq!(space.user_key(b"app:x", None), Some("x"));
    }

    #[test]
    fn patterns_stay_behind_the_prefix() {
        for prefix in ["a*[", "\\", "p?]\\x", ""] {
            let space = Keyspace::new(prefix);
            let star = Pattern::new("*").unwrap();
            let m = Pattern::new(&space.scan_match(Some(&star))).unwrap();
            assert!(m.matches(&format!("{prefix}k")), "{prefix}");
            if !prefix.is_empty() {
                assert!(!m.matches("k"), "{prefix}");
                assert!(!m.matches(&format!("x{prefix}k")), "{prefix}");
            }
            // A pattern that tries to close or escape the prefix's brackets matches only inside it.
            let sneaky = Pattern::new("]*").unwrap();
            let m = Pattern::new(&space.scan_match(Some(&sneaky))).unwrap();
            assert!(m.matches(&format!("{prefix}]x")), "{prefix}");
            assert!(!m.matches("]x") || prefix.is_empty(), "{prefix}");
        }
    }

    #[test]
    fn many_stars_are_matched_here() {
        let space = Keyspace::new("p:");
        let p = Pattern::new("a*a*a*a*a*a*b").unwrap();
        assert_eq!(space.scan_match(Some(&p)), "p:*");
        assert_eq!(space.user_key(b"p:aaab", Some(&p)), None);
        assert_eq!(space.user_key(b"p:aaaaaab", Some(&p)), Some("aaaaaab"));
        let p = Pattern::new("u:*").unwrap();
        assert_eq!(space.scan_match(Some(&p)), "p:u:*");
    }
}
