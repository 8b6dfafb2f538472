//! Keys: the rules every store shares, checked once.
//!
//! A public call checks its `&str` once, at the top, into a [`Key`]; what runs
//! below (engine, Redis keyspace, near cache) takes a `Key` and never checks
//! again, so a rule cannot be forgotten on one path or run three times on another.

use crate::errors::{CacheError, Result};

/// The longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// A key that passed the key rules: non-empty, at most [`MAX_KEY_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key<'a>(&'a str);

impl<'a> Key<'a> {
    /// Checks `key` against the rules every store shares. Inlined: it runs on
    /// every call, and the valid case is two comparisons.
    #[inline]
    pub(crate) fn new(key: &'a str) -> Result<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN { Err(key_error(key)) } else { Ok(Key(key)) }
    }

    /// The key's text, for the lifetime of the borrowed string (deref gives
    /// it only for the `Key`'s own).
    #[inline]
    #[cfg_attr(not(any(feature = "redis", test)), allow(dead_code))] // the memory store uses deref
    pub(crate) fn as_str(self) -> &'a str {
        self.0
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

#[cold]
#[inline(never)]
fn key_error(key: &str) -> CacheError {
    if key.is_empty() {
        CacheError::key(key, "a key must not be empty")
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
        let owned = KeyBuf::from(Key::new("user:1").unwrap());
        assert_eq!(owned.key(), Key::new("user:1").unwrap());
    }
}
