//! Keys: the rules every store shares, checked once.
//!
//! A public call checks its `&str` once, at the top, into a [`Key`]; what runs
//! below (engine, Redis keyspace, near cache) takes a `Key` and never checks
//! again, so a rule cannot be forgotten on one path or run three times on another.

use crate::errors::{CacheError, Result};

/// The longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// The one character no key and no Redis prefix may contain: U+FFFF, a
/// Unicode noncharacter (UTF-8 `EF BF BF`), reserved for the Redis stores'
/// internal keys (capacity indexes, refresh locks, tag sets:
/// `prefix + "\u{FFFF}" + name`). A key holding it is a
/// [`CacheError::Key`] in every store, so that no entry can ever have an
/// internal key's name, and every byte of every key the stores write is
/// UTF-8 (which a REST client's JSON body can carry).
///
/// ```
/// use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MemoryStore, RESERVED_KEY_CHAR, SetOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store: MemoryStore<i32> = MemoryStore::new(LruPolicy::new(10).unwrap());
/// let key = format!("a{RESERVED_KEY_CHAR}b");
/// let err = store.set(&key, 1, SetOptions::new()).await.unwrap_err();
/// assert!(matches!(err, CacheError::Key { .. }), "{err}");
/// assert!(store.set("a\u{FFFE}b", 1, SetOptions::new()).await.is_ok(), "only U+FFFF is reserved");
/// # }
/// ```
pub const RESERVED_KEY_CHAR: char = '\u{FFFF}';

/// [`RESERVED_KEY_CHAR`] in UTF-8.
pub(crate) const RESERVED_UTF8: &[u8; 3] = b"\xef\xbf\xbf";

/// A key that passed the key rules: non-empty, at most [`MAX_KEY_LEN`] bytes,
/// without [`RESERVED_KEY_CHAR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key<'a>(&'a str);

impl<'a> Key<'a> {
    /// Checks `key` against the rules every store shares. Inlined: it runs on
    /// every call, and the valid case is two comparisons and, for an ASCII
    /// key, an AND per 8 bytes ([`has_reserved`]).
    #[inline]
    pub(crate) fn new(key: &'a str) -> Result<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || has_reserved(key) { Err(key_error(key)) } else { Ok(Key(key)) }
    }

    /// The key's text, for the lifetime of the borrowed string (deref gives
    /// it only for the `Key`'s own).
    #[inline]
    #[cfg_attr(not(any(feature = "redis", test)), allow(dead_code))] // the memory store uses deref
    pub(crate) fn as_str(self) -> &'a str {
        self.0
    }
}

/// A key for a look-up, checked for its length only: the rest of the rules
/// (no [`RESERVED_KEY_CHAR`]) are checked only if the look-up misses
/// ([`LookupKey::passes`]). A key the store holds passed every rule when it
/// was set (only a [`Key`] gets in), so a hit needs no check; a miss checks
/// before it counts anything, so a refused key still changes nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe<'a>(&'a str);

impl<'a> Probe<'a> {
    /// The length rules of [`Key::new`] (two comparisons).
    #[inline]
    pub(crate) fn new(key: &'a str) -> Result<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN { Err(key_error(key)) } else { Ok(Probe(key)) }
    }

    /// The error [`Key::new`] gives this key (for a probe that did not
    /// [pass](LookupKey::passes)).
    #[cold]
    #[inline(never)]
    pub(crate) fn error(self) -> CacheError {
        key_error(self.0)
    }
}

impl std::ops::Deref for Probe<'_> {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.0
    }
}

/// What a look-up takes: a [`Key`], checked in full, or a [`Probe`],
/// checked in full only on a miss.
pub(crate) trait LookupKey<'a>: Copy + std::ops::Deref<Target = str> {
    /// Whether the key passes every key rule: for a [`Key`] always (a
    /// constant, no code); for a [`Probe`] the rules it has not met yet.
    fn passes(self) -> bool;

    /// The key as a [`Key`], once an entry was found under it: a held key
    /// passed every rule when it was set.
    fn found(self) -> Key<'a>;
}

impl<'a> LookupKey<'a> for Key<'a> {
    #[inline(always)]
    fn passes(self) -> bool {
        true
    }

    #[inline(always)]
    fn found(self) -> Key<'a> {
        self
    }
}

impl<'a> LookupKey<'a> for Probe<'a> {
    #[inline(always)]
    fn passes(self) -> bool {
        !has_reserved(self.0)
    }

    #[inline(always)]
    fn found(self) -> Key<'a> {
        Key(self.0)
    }
}

/// A [`Key`] that owns its text: for what outlives the call that checked it
/// (a background refresh), so the key is never checked again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyBuf(Box<str>);

impl KeyBuf {
    /// The key, borrowed.
    #[inline]
    pub(crate) fn key(&self) -> Key<'_> {
        Key(&self.0)
    }
}

impl From<Key<'_>> for KeyBuf {
    fn from(key: Key<'_>) -> Self {
        KeyBuf(key.0.into())
    }
}

impl std::ops::Deref for Key<'_> {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.0
    }
}

/// Whether `text` holds [`RESERVED_KEY_CHAR`]. Only a byte with its high bit
/// set can start it, so an ASCII key costs an OR per 8 bytes (1.5-2 ns for
/// a 10-30 byte key, measured; a `memchr` for `0xEF` took 3-4 ns); a key with
/// other bytes takes the `memchr` (`0xEF` leads only U+E000 to U+FFFF).
// Out of line on wasm32: there keys are checked off the hot path (the JS
// layers check them first), and a copy at every call site grew each .wasm.
#[cfg_attr(not(target_arch = "wasm32"), inline)]
#[cfg_attr(target_arch = "wasm32", inline(never))]
pub(crate) fn has_reserved(text: &str) -> bool {
    let bytes = text.as_bytes();
    // On wasm32 a plain loop: the least code (the JS layers check keys first,
    // so this is off the hot path; memchr's iterator grew the .wasm by ~800 B).
    if cfg!(target_arch = "wasm32") {
        return bytes.windows(3).any(|w| w == RESERVED_UTF8);
    }
    // The high bits of every byte, OR-ed a word at a time with overlapping
    // loads at the ends (no remainder loop): two loads for a key of 8 to 16
    // bytes, two for 4 to 7. Only a byte with its high bit set can start
    // U+FFFF, so an ASCII key is done here.
    let high = if let Some(last) = bytes.last_chunk::<8>() {
        let mut acc = u64::from_le_bytes(*last);
        for chunk in bytes.chunks_exact(8) {
            acc |= u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        acc
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*first) | u32::from_le_bytes(*last))
    } else {
        bytes.iter().fold(0, |acc, &b| acc | u64::from(b))
    };
    if high & 0x8080_8080_8080_8080 == 0 {
        return false;
    }
    reserved_in(bytes)
}

#[cold]
#[inline(never)]
fn reserved_in(bytes: &[u8]) -> bool {
    // memchr_iter, not memmem: its searcher would grow every .wasm by a few KB.
    memchr::memchr_iter(RESERVED_UTF8[0], bytes).any(|at| bytes[at..].starts_with(RESERVED_UTF8))
}

#[cold]
#[inline(never)]
fn key_error(key: &str) -> CacheError {
    if key.is_empty() {
        CacheError::key(key, "a key must not be empty")
    } else if has_reserved(key) {
        CacheError::key(key, "U+FFFF is reserved (the Redis stores' internal keys)")
    } else {
        CacheError::key(key, format!("{} bytes is longer than the limit of {MAX_KEY_LEN} bytes", key.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert!(Key::new("k").is_ok());
        assert!(Key::new(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(Key::new(""), Err(CacheError::Key { .. })));
        assert!(matches!(Key::new(&"k".repeat(MAX_KEY_LEN + 1)), Err(CacheError::Key { .. })));
        // Every other UTF-8 string is a key, glob characters and newlines included.
        assert!(Key::new("a*b?[c]\\ \n é 😀").is_ok());
        assert_eq!(&*Key::new("user:1").unwrap(), "user:1");
        assert_eq!(Key::new("user:1").unwrap().as_str(), "user:1");
        // U+FFFF, anywhere, is refused; its neighbours are keys.
        for bad in ["\u{FFFF}", "a\u{FFFF}", "\u{FFFF}b", "日\u{FFFF}本", "\u{E000}\u{FFFF}"] {
            let err = Key::new(bad).unwrap_err();
            assert!(matches!(err, CacheError::Key { .. }), "{bad:?}");
            assert!(err.to_string().contains("U+FFFF is reserved") || err.to_string().contains("U+FFFF"), "{err}");
        }
        for ok in ["\u{FFFE}", "\u{FFFD}", "\u{EFFF}", "\u{E000}", "\u{FEFF}x", "\u{10FFFF}", "\u{1FFFF}", "ÿ"] {
            assert!(Key::new(ok).is_ok(), "{ok:?}");
        }
        assert_eq!(RESERVED_KEY_CHAR.to_string().as_bytes(), RESERVED_UTF8);
        // At every position and length (the 8-byte steps and their remainder).
        for len in 0..40 {
            for at in 0..len {
                let mut key: Vec<char> = vec!['a'; len];
                assert!(!has_reserved(&key.iter().collect::<String>()));
                key[at] = RESERVED_KEY_CHAR;
                assert!(has_reserved(&key.iter().collect::<String>()), "{len} {at}");
                key[at] = '\u{FFFE}';
                assert!(!has_reserved(&key.iter().collect::<String>()), "{len} {at}");
                key[at] = 'é';
                assert!(!has_reserved(&key.iter().collect::<String>()), "{len} {at}");
            }
        }
        let owned = KeyBuf::from(Key::new("user:1").unwrap());
        assert_eq!(owned.key(), Key::new("user:1").unwrap());
    }
}
