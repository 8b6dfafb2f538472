//! Where a store's data lives in Redis, and how a user's pattern is confined
//! to it.
//!
//! Entries are at `prefix + key` (strings; while a `get_or_set` load of a
//! missing key runs, its placeholder, a hash, is there instead). The
//! store's internal keys are `prefix + MARKER + name`, where `MARKER` is
//! U+FFFF ([`RESERVED_KEY_CHAR`], UTF-8 `EF BF BF`): the two index keys of a
//! bounded store (`lru`, `expiry`), the refresh lock of `get_or_refresh` for
//! a key (`lock:` + key), a tag's set (`tag:` + tag), a cluster store's
//! bucket count (`buckets`), a near cache's markers (`near:...`). The key
//! rule ([`Key`]) and the prefix rule ([`check_prefix`]) refuse U+FFFF, so
//! no entry of this or any other store can ever have one of those names; and
//! every byte of every key is UTF-8, which a REST client (a JSON body of
//! strings) can send. (Until 0.2 the marker was the byte `0xFF`, which no
//! JSON string can carry; keys an earlier version left with it are not
//! read any more.)
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
use crate::key::{Key, RESERVED_KEY_CHAR, RESERVED_UTF8, has_reserved};
use crate::pattern::Pattern;

/// What ends every non-empty prefix, and may occur nowhere else in it.
pub(crate) const SEPARATOR: char = ':';

/// What follows a store's prefix (and bucket tag) in each of its internal
/// keys: [`RESERVED_KEY_CHAR`] in UTF-8.
pub(crate) const MARKER: &[u8] = RESERVED_UTF8;

/// Checks the prefix rule: empty, or a name without `:` followed by `:`;
/// never [`RESERVED_KEY_CHAR`].
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if has_reserved(prefix) {
        return Err(CacheError::Policy(format!(
            "the prefix {prefix:?} must not contain U+FFFF: that character is reserved for the store's internal \
             keys (RESERVED_KEY_CHAR {RESERVED_KEY_CHAR:?})"
        )));
    }
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

/// Checks what only a cluster store needs: a prefix without hash-tag
/// braces (the store puts its own tag after it), a bucket count Redis
/// Cluster can place, and a capacity every bucket gets a share of.
pub(crate) fn check_cluster_layout(prefix: &str, buckets: usize, max_size: Option<usize>) -> Result<()> {
    if prefix.contains(['{', '}']) {
        return Err(CacheError::Policy(format!(
            "the prefix {prefix:?} of a cluster store must not contain '{{' or '}}': the store puts a hash tag \
             after the prefix to spread entries over the cluster"
        )));
    }
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(CacheError::Policy(format!("buckets must be in 1..={}, got {buckets}", MAX_BUCKETS)));
    }
    if let Some(max_size) = max_size.filter(|&max| max < buckets) {
        return Err(CacheError::Policy(format!(
            "a capacity of {max_size} cannot be split over {buckets} buckets (each bucket holds its share of \
             the capacity); use buckets({max_size}) or fewer"
        )));
    }
    Ok(())
}

/// The Redis key where a cluster store records its bucket count under
/// `prefix` (every process sharing a prefix must use the same count).
pub(crate) fn record_key(prefix: &str) -> Vec<u8> {
    [prefix.as_bytes(), MARKER, b"buckets"].concat()
}

pub(crate) struct Keyspace {
    prefix: Box<str>,
    /// One on a single node; on a cluster, one per bucket (see
    /// [`Keyspace::clustered`]).
    buckets: Box<[Bucket]>,
    clustered: bool,
}

/// A part of the keyspace whose keys all share one Redis Cluster slot: its
/// entries and its two index keys, so that one script can touch them all.
pub(crate) struct Bucket {
    /// `""` on a single node; `{tag}` on a cluster.
    tag: Box<str>,
    /// Sorted set: entry key -> recency (higher is more recent). LRU only.
    pub recency: Vec<u8>,
    /// Sorted set: entry key -> expiry time in ms since the epoch (Redis
    /// `TIME`). Bounded stores only; lists only entries with a TTL.
    pub expiry: Vec<u8>,
}

impl Bucket {
    fn new(prefix: &str, tag: String) -> Self {
        let internal = |name: &str| [prefix.as_bytes(), tag.as_bytes(), MARKER, name.as_bytes()].concat();
        Bucket { recency: internal("lru"), expiry: internal("expiry"), tag: tag.into() }
    }
}

/// The buckets of a cluster store unless its builder says otherwise.
pub(crate) const DEFAULT_BUCKETS: usize = 16;

/// The most buckets a clustered store may have: Redis Cluster's slots.
pub(crate) const MAX_BUCKETS: usize = 16_384;

impl Keyspace {
    /// The keyspace of a store on a single Redis: entries at `prefix + key`.
    pub fn new(prefix: &str) -> Self {
        Keyspace { prefix: prefix.into(), buckets: Box::new([Bucket::new(prefix, String::new())]), clustered: false }
    }

    /// The keyspace of a store on Redis Cluster, in `buckets` buckets: the
    /// entry of `key` is at `prefix + "{tag}" + key`, where the tag is its
    /// bucket's (chosen by a hash of the key), so that a bucket's entries,
    /// indexes and locks share one slot. Bucket `i`'s tag is the smallest
    /// decimal number hashing to a slot in the `i`-th of `buckets` equal slot
    /// ranges (a pure function of `i` and `buckets`): the buckets spread
    /// evenly over masters that hold equal slot ranges (as
    /// `redis-cli --cluster create` assigns them). `buckets` is in
    /// `1..=MAX_BUCKETS`.
    pub fn clustered(prefix: &str, buckets: usize) -> Self {
        debug_assert!((1..=MAX_BUCKETS).contains(&buckets));
        // Bucket `i` covers slots `i * 16384 / buckets .. (i + 1) * 16384 / buckets`;
        // its tag is the smallest decimal number whose slot is in that range.
        // One pass over 0, 1, 2, ... finds them all (about
        // `buckets * ln(buckets)` tries: 170,000 for 16,384 buckets).
        let mut bucket_of_slot = vec![0u32; MAX_BUCKETS];
        for i in 0..buckets {
            bucket_of_slot[i * MAX_BUCKETS / buckets..(i + 1) * MAX_BUCKETS / buckets].fill(i as u32);
        }
        let mut tags: Vec<Option<u64>> = vec![None; buckets];
        let mut missing = buckets;
        let mut n = 0u64;
        while missing > 0 {
            let i = bucket_of_slot[usize::from(slot(n.to_string().as_bytes()))] as usize;
            if tags[i].is_none() {
                tags[i] = Some(n);
                missing -= 1;
            }
            n += 1;
        }
        let buckets =
            tags.into_iter().map(|tag| Bucket::new(prefix, format!("{{{}}}", tag.unwrap_or_default()))).collect();
        Keyspace { prefix: prefix.into(), buckets, clustered: true }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The index of `key`'s bucket: a stable hash (FNV-1a, the same in every
    /// process and version) modulo the number of buckets.
    #[inline]
    pub fn bucket_index(&self, key: Key<'_>) -> usize {
        if self.buckets.len() == 1 {
            return 0;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key.as_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (hash % self.buckets.len() as u64) as usize
    }

    /// The bucket of `key`.
    #[inline]
    pub fn bucket(&self, key: Key<'_>) -> &Bucket {
        &self.buckets[self.bucket_index(key)]
    }

    /// Bucket `index`'s share of a capacity of `max_size` entries: the
    /// capacity split as evenly as it goes, the shares summing to it.
    pub fn share(&self, max_size: usize, index: usize) -> usize {
        let n = self.buckets.len();
        max_size / n + usize::from(index < max_size % n)
    }

    /// The Redis key of the entry under `key`, written straight into a
    /// command's argument (no intermediate string).
    #[inline]
    pub fn entry<'a>(&'a self, key: Key<'a>) -> Entry<'a> {
        Entry { prefix: &self.prefix, tag: &self.bucket(key).tag, key: key.as_str() }
    }

    /// The Redis key of the entry `key` would have in bucket `index` (the
    /// JS layer's head of a bucket's entry keys: `key` empty).
    #[cfg_attr(not(feature = "js-redis"), allow(dead_code))]
    pub fn entry_of_bucket<'a>(&'a self, index: usize, key: &'a str) -> Entry<'a> {
        Entry { prefix: &self.prefix, tag: &self.buckets[index].tag, key }
    }

    /// The Redis key of the lock `get_or_refresh` holds while refreshing a
    /// stale `key` (and of its backoff after a failed refresh).
    pub fn lock(&self, key: Key<'_>) -> Vec<u8> {
        [self.prefix.as_bytes(), self.bucket(key).tag.as_bytes(), MARKER, b"lock:", key.as_bytes()].concat()
    }

    /// The Redis key of the tag set of `tag` in bucket `index` (see `tags.rs`):
    /// `prefix + bucket tag + MARKER + "tag:" + tag`, in the bucket's slot.
    pub fn tag_set(&self, index: usize, tag: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), self.buckets[index].tag.as_bytes(), MARKER, b"tag:", tag.as_bytes()].concat()
    }

    /// The MATCH argument for a SCAN over entries matching `pattern` (all
    /// entries when `None`), of bucket `bucket` only when given (clustered
    /// stores): the escaped prefix, the tag (or `{*}`), and the pattern's
    /// literal head, then `*`. It selects more than `pattern` does;
    /// [`Keyspace::user_key`] has the last word.
    pub fn scan_match(&self, pattern: Option<&Pattern>, bucket: Option<usize>) -> Vec<u8> {
        let head = pattern.map(Pattern::literal_prefix).unwrap_or_default();
        let mut out = Vec::with_capacity(2 * (self.prefix.len() + head.len()) + 16);
        let escaped = |out: &mut Vec<u8>, bytes: &[u8]| {
            for &b in bytes {
                if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                    out.push(b'\\');
                }
                out.push(b);
            }
        };
        escaped(&mut out, self.prefix.as_bytes());
        if self.clustered {
            match bucket {
                Some(i) => escaped(&mut out, self.buckets[i].tag.as_bytes()),
                None => out.extend_from_slice(b"{*}"),
            }
        }
        escaped(&mut out, &head);
        out.push(b'*');
        out
    }

    /// The user key of the Redis key `raw`, if `raw` is an entry of this
    /// store that matches `pattern`. On a cluster the tag must be the key's
    /// own bucket's.
    pub fn user_key<'a>(&self, raw: &'a [u8], pattern: Option<&Pattern>) -> Option<Key<'a>> {
        let mut rest = raw.strip_prefix(self.prefix.as_bytes())?;
        let mut tag: &[u8] = b"";
        if self.clustered {
            let close = rest.iter().position(|&b| b == b'}')?;
            (tag, rest) = rest.split_at(close + 1);
        }
        // Anything under the prefix that breaks the key rules (an index, a
        // lock, someone else's key) is no entry.
        let key = Key::new(std::str::from_utf8(rest).ok()?).ok()?;
        if self.bucket(key).tag.as_bytes() != tag {
            return None;
        }
        pattern.is_none_or(|p| p.matches(&key)).then_some(key)
    }
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of
/// the whole key if it has none, modulo 16384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let inner = &key[open + 1..];
        inner.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &inner[..close])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(key) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % MAX_BUCKETS as u16
}

/// An entry's Redis key, `prefix + tag + key`, as a command argument.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    prefix: &'a str,
    tag: &'a str,
    key: &'a str,
}

impl<'a> Entry<'a> {
    /// The key as bytes, for the few places that need it owned.
    pub fn to_vec(self) -> Vec<u8> {
        [self.prefix.as_bytes(), self.tag.as_bytes(), self.key.as_bytes()].concat()
    }

    /// The three parts whose concatenation is the key (a command writer
    /// copies them straight into its buffer: the redis store's `ToRedisArgs`).
    #[inline]
    pub fn parts(self) -> [&'a str; 3] {
        [self.prefix, self.tag, self.key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(key: &str) -> Key<'_> {
        Key::new(key).unwrap()
    }

    #[test]
    fn internal_keys_are_never_entries() {
        let space = Keyspace::new("app:");
        let bucket = &space.buckets()[0];
        assert_eq!(bucket.recency, "app:\u{FFFF}lru".as_bytes());
        assert_eq!(space.user_key(&bucket.recency, None).map(Key::as_str), None);
        assert_eq!(space.user_key(&bucket.expiry, None).map(Key::as_str), None);
        assert_eq!(space.lock(k("k")), "app:\u{FFFF}lock:k".as_bytes());
        assert_eq!(record_key("app:"), "app:\u{FFFF}buckets".as_bytes());
        assert_eq!(space.tag_set(0, "t"), "app:\u{FFFF}tag:t".as_bytes());
        assert_eq!(space.user_key(&space.tag_set(0, "t"), None).map(Key::as_str), None);
        assert_eq!(space.user_key(&record_key("app:"), None).map(Key::as_str), None);
        // Every internal key is UTF-8 (a REST client's JSON body carries it).
        for internal in [&bucket.recency, &bucket.expiry, &space.lock(k("k")), &record_key("app:")] {
            assert!(std::str::from_utf8(internal).is_ok(), "{internal:?}");
        }
        // Keys an earlier version wrote with the byte 0xFF are not this version's
        // entries either (they are not UTF-8).
        assert_eq!(space.user_key(b"app:\xfflru", None).map(Key::as_str), None);
        assert_eq!(space.user_key(&space.lock(k("k")), None).map(Key::as_str), None);
        assert_eq!(space.user_key(b"app:", None).map(Key::as_str), None, "the prefix alone is no entry");
        assert_eq!(space.user_key(b"other:x", None).map(Key::as_str), None);
        assert_eq!(space.user_key(b"app:x", None).map(Key::as_str), Some("x"));
    }

    #[test]
    fn prefixes_that_could_nest_are_refused() {
        for ok in ["", "a:", "myapp.sessions:", "{tag}:", "a*[:", "日本:", "\\:"] {
            assert!(check_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in [":", "a", "a:b:", "a::", ":a:", "app_", "a:b", "\u{FFFF}:", "a\u{FFFF}:", "\u{FFFF}"] {
            assert!(matches!(check_prefix(bad), Err(CacheError::Policy(_))), "{bad:?}");
        }
    }

    #[test]
    fn scans_get_only_the_escaped_literal_head() {
        let space = Keyspace::new("p*[:");
        let scan = |p: &str| String::from_utf8(space.scan_match(Some(&Pattern::new(p).unwrap()), None)).unwrap();
        assert_eq!(scan("u:*"), "p\\*\\[:u:*");
        assert_eq!(scan("a*a*a*a*a*a*b"), "p\\*\\[:a*");
        assert_eq!(scan("*aaaab"), "p\\*\\[:*");
        assert_eq!(scan("x\\?y?"), "p\\*\\[:x\\?y*");
        assert_eq!(scan("]]"), "p\\*\\[:\\]\\]*");
        assert_eq!(String::from_utf8(space.scan_match(None, None)).unwrap(), "p\\*\\[:*");
        // What Redis gets selects a superset; the store's matcher decides.
        let p = Pattern::new("a*a*a*a*a*a*b").unwrap();
        assert_eq!(space.user_key(b"p*[:aaab", Some(&p)).map(Key::as_str), None);
        assert_eq!(space.user_key(b"p*[:aaaaaab", Some(&p)).map(Key::as_str), Some("aaaaaab"));
        for (pattern, key) in [("u:*", "u:1"), ("x\\?y?", "x?yz"), ("]]", "]]")] {
            let sent = Pattern::new(&scan(pattern)).unwrap();
            assert!(sent.matches(&format!("p*[:{key}")), "{pattern}");
            assert!(!sent.matches(key), "{pattern}");
        }
    }

    #[test]
    fn entries_are_their_parts() {
        let space = Keyspace::new("app:");
        assert_eq!(space.entry(k("k:1")).parts(), ["app:", "", "k:1"]);
        assert_eq!(space.entry(k("k")).to_vec(), b"app:k");
        // The example of the Redis Cluster specification.
        assert_eq!(slot(b"123456789"), 0x31C3);
    }

    #[test]
    fn a_cluster_buckets_spread_over_the_slots_and_keep_their_keys_together() {
        for buckets in [1, 3, 16, 1000, MAX_BUCKETS] {
            let space = Keyspace::clustered("app:", buckets);
            assert_eq!(space.buckets().len(), buckets);
            for (i, bucket) in space.buckets().iter().enumerate() {
                let at = usize::from(slot(&bucket.recency));
                assert!((i * MAX_BUCKETS / buckets..(i + 1) * MAX_BUCKETS / buckets).contains(&at), "{i}/{buckets}");
                assert_eq!(slot(&bucket.expiry), slot(&bucket.recency));
            }
            let total: usize = (0..buckets).map(|i| space.share(10_007, i)).sum();
            assert_eq!(total, 10_007, "the shares add up to the capacity");
        }
        let space = Keyspace::clustered("app:", 16);
        let mut used = std::collections::HashSet::new();
        for key in ["k", "{x}", "}", "a{b}c", "x}y{", "日本"] {
            let entry = space.entry(k(key)).to_vec();
            let bucket = space.bucket(k(key));
            used.insert(space.bucket_index(k(key)));
            // The entry, its lock and its bucket's indexes share one slot.
            assert_eq!(slot(&entry), slot(&space.lock(k(key))), "{key:?}");
            assert_eq!(slot(&entry), slot(&bucket.recency), "{key:?}");
            assert_eq!(space.user_key(&entry, None).map(Key::as_str), Some(key));
            assert_eq!(space.user_key(&space.lock(k(key)), None).map(Key::as_str), None);
            assert_eq!(space.user_key(&bucket.expiry, None).map(Key::as_str), None);
            // The same key under another bucket's tag is not this store's.
            let other = &space.buckets()[(space.bucket_index(k(key)) + 1) % 16];
            let foreign = [b"app:".as_slice(), other.tag.as_bytes(), key.as_bytes()].concat();
            assert_eq!(space.user_key(&foreign, None).map(Key::as_str), None, "{key:?}");
            assert_eq!(
                space.user_key(&[b"app:", key.as_bytes()].concat(), None).map(Key::as_str),
                None,
                "no tag: {key:?}"
            );
        }
        assert!(used.len() > 1, "keys land in more than one bucket");
        let p = Pattern::new("u:*").unwrap();
        assert_eq!(String::from_utf8(space.scan_match(Some(&p), None)).unwrap(), "app:{*}u:*");
        let tagged = String::from_utf8(space.scan_match(None, Some(3))).unwrap();
        assert_eq!(tagged, format!("app:{}*", space.buckets()[3].tag));
    }
}
