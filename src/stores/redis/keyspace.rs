//! Where a store's data lives in Redis, and how a user's pattern is confined
//! to it.
//!
//! Entries are at `prefix + key` (strings; while a `get_or_set` load of a
//! missing key runs, its placeholder, a hash, is there instead). The two
//! index keys of a bounded store are `prefix + "\xff" + name`, and the
//! refresh lock of `get_or_refresh` for a key is
//! `prefix + "\xff" + "lock:" + key`: a prefix and a key are UTF-8 and `0xFF`
//! never occurs in UTF-8, so no entry of this or any other store (with any
//! UTF-8 prefix) can ever have one of those names.
//!
//! A store's keys are kept apart from every other store's by the prefix rule
//! ([`check_prefix`]): a non-empty prefix is a name without `:` followed by
//! one `:`. Of two such prefixes neither starts with the other unless they are
//! equal, so no Redis key belongs to two stores, whatever the keys contain.
//!
//! A user's pattern never reaches Redis: SCAN gets only the escaped prefix and
//! the pattern's literal head (escaped again) followed by one `*`, which
//! Redis matches in time linear in its length, whatever the pattern. Every
//! key SCAN returns is checked here: it must start with the prefix, the rest
//! must be a valid, non-empty key, and the rest must match the pattern by our
//! own (linear-time) matcher. So nothing outside the prefix and no index key
//! is ever listed, counted or deleted, and no pattern can stall Redis
//! (CVE-2022-36021, CVE-2024-31228).

use crate::errors::{CacheError, Result};
use crate::pattern::Pattern;

/// What ends every non-empty prefix, and may occur nowhere else in it.
pub(super) const SEPARATOR: char = ':';

/// Checks the prefix rule: empty, or a name without `:` followed by `:`.
pub(super) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let name = prefix.strip_suffix(SEPARATOR).unwrap_or(prefix);
    if name.is_empty() || name.len() == prefix.len() || name.contains(SEPARATOR) {
        return Err(CacheError::Policy(format!(
            "the prefix {prefix:?} must be a non-empty name without {SEPARATOR:?} followed by one {SEPARATOR:?} \
             (such as \"myapp:\" or \"myapp.sessions:\"), so that no store's keys can fall under another \
             store's prefix"
        )));
    }
    Ok(())
}

pub(super) struct Keyspace {
    prefix: Box<str>,
    /// Sorted set: entry key -> recency (higher is more recent). LRU only.
    pub recency: Vec<u8>,
    /// Sorted set: entry key -> expiry time in ms since the epoch (Redis
    /// `TIME`). Bounded stores only; lists only entries with a TTL.
    pub expiry: Vec<u8>,
}

impl Keyspace {
    pub fn new(prefix: &str) -> Self {
        let internal = |name: &str| [prefix.as_bytes(), b"\xff", name.as_bytes()].concat();
        Keyspace { prefix: prefix.into(), recency: internal("lru"), expiry: internal("expiry") }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of the entry under `key`, written straight into a
    /// command's argument (no intermediate string).
    #[inline]
    pub fn entry<'a>(&'a self, key: &'a str) -> Entry<'a> {
        Entry { prefix: &self.prefix, key }
    }

    /// The Redis key of the lock `get_or_refresh` holds while refreshing a
    /// stale `key` (and of its backoff after a failed refresh).
    pub fn lock(&self, key: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), b"\xfflock:", key.as_bytes()].concat()
    }

    /// The MATCH argument for a SCAN over entries matching `pattern` (all
    /// entries when `None`): the escaped prefix and the pattern's literal
    /// head, then `*`. It selects more than `pattern` does;
    /// [`Keyspace::user_key`] has the last word.
    pub fn scan_match(&self, pattern: Option<&Pattern>) -> Vec<u8> {
        let head = pattern.map(Pattern::literal_prefix).unwrap_or_default();
        let mut out = Vec::with_capacity(2 * (self.prefix.len() + head.len()) + 1);
        for &b in self.prefix.as_bytes().iter().chain(&head) {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'*');
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

/// An entry's Redis key, `prefix + key`, as a command argument.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl Entry<'_> {
    /// The key as bytes, for the few places that need it owned.
    pub fn to_vec(self) -> Vec<u8> {
        [self.prefix.as_bytes(), self.key.as_bytes()].concat()
    }
}

impl redis::ToRedisArgs for Entry<'_> {
    #[inline]
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing to a command buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
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
    fn prefixes_that_could_nest_are_refused() {
        for ok in ["", "a:", "myapp.sessions:", "{tag}:", "a*[:", "日本:", "\\:"] {
            assert!(check_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in [":", "a", "a:b:", "a::", ":a:", "app_", "a:b"] {
            assert!(matches!(check_prefix(bad), Err(CacheError::Policy(_))), "{bad:?}");
        }
    }

    #[test]
    fn scans_get_only_the_escaped_literal_head() {
        let space = Keyspace::new("p*[:");
        let scan = |p: &str| String::from_utf8(space.scan_match(Some(&Pattern::new(p).unwrap()))).unwrap();
        assert_eq!(scan("u:*"), "p\\*\\[:u:*");
        assert_eq!(scan("a*a*a*a*a*a*b"), "p\\*\\[:a*");
        assert_eq!(scan("*aaaab"), "p\\*\\[:*");
        assert_eq!(scan("x\\?y?"), "p\\*\\[:x\\?y*");
        assert_eq!(scan("]]"), "p\\*\\[:\\]\\]*");
        assert_eq!(String::from_utf8(space.scan_match(None)).unwrap(), "p\\*\\[:*");
        // What Redis gets selects a superset; the store's matcher decides.
        let p = Pattern::new("a*a*a*a*a*a*b").unwrap();
        assert_eq!(space.user_key(b"p*[:aaab", Some(&p)), None);
        assert_eq!(space.user_key(b"p*[:aaaaaab", Some(&p)), Some("aaaaaab"));
        for (pattern, key) in [("u:*", "u:1"), ("x\\?y?", "x?yz"), ("]]", "]]")] {
            let sent = Pattern::new(&scan(pattern)).unwrap();
            assert!(sent.matches(&format!("p*[:{key}")), "{pattern}");
            assert!(!sent.matches(key), "{pattern}");
        }
    }

    #[test]
    fn entries_are_written_whole_into_commands() {
        let space = Keyspace::new("app:");
        let mut cmd = redis::cmd("GET");
        cmd.arg(space.entry("k:1"));
        assert_eq!(
            cmd.args_iter().nth(1).map(|a| format!("{a:?}")),
            Some(format!("{:?}", redis::Arg::Simple(&b"app:k:1"[..])))
        );
        assert_eq!(space.entry("k").to_vec(), b"app:k");
    }
}
