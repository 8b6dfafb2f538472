//! The one error type of the crate.
//!
//! Every fallible call returns [`CacheError`]. Its variants are the kinds a
//! caller can act on: fix the key, fix the pattern, fix the configuration, fix
//! the value, or retry (backend). The JS package maps each variant to its own
//! `Error` subclass (`CacheKeyError`, `CachePolicyError`, ...), so the same
//! distinction survives the language boundary.

use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// A loader's error, boxed: what `get_or_set` and `get_or_refresh` loaders
/// may fail with (anything `Into` it), and what a `dyn` store hands through.
pub type DynError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Longest text of a rejected key or pattern repeated inside an error message.
pub(crate) const SHOWN_CHARS: usize = 64;

/// What went wrong. Match on the variant; the message names the offending value.
/// Cheap to clone (sources are shared), so one failure can be handed to
/// every caller waiting on the same load.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The key is empty, longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes
    /// or holds [`RESERVED_KEY_CHAR`](crate::RESERVED_KEY_CHAR) (`CacheKeyError` in JS).
    #[error("invalid cache key {key}: {reason}")]
    Key {
        /// The key as given, shortened and quoted for display.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The glob pattern is longer than [`MAX_PATTERN_LEN`](crate::MAX_PATTERN_LEN)
    /// bytes (`CachePatternError` in JS).
    #[error("invalid pattern {pattern}: {reason}")]
    Pattern {
        /// The pattern as given, shortened and quoted for display.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A policy or an entry's options make no sense: a capacity of zero, a
    /// TTL that is zero, negative or not finite (`CachePolicyError` in JS).
    #[error("invalid policy: {0}")]
    Policy(String),
    /// A value or its metadata cannot be stored or read back in the store's
    /// format (`CacheSerializationError` in JS).
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// The storage backend failed: unreachable, timed out, refused the command
    /// (`CacheBackendError` in JS). Usually worth retrying. The message says
    /// what the store was doing; the cause is [`source`](std::error::Error::source),
    /// never repeated in the message.
    #[error("backend error: {message}")]
    Backend {
        /// Which way the backend failed: [`ErrorKind::Connection`],
        /// [`ErrorKind::BackendTimeout`], [`ErrorKind::ServerBusy`] or
        /// [`ErrorKind::Command`].
        kind: ErrorKind,
        /// What the store was doing and what went wrong.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The loader given to `get_or_set` / `try_get_or_set` failed; its error
    /// is the source (downcast it to get your own type back). Nothing was
    /// cached, and every caller waiting on that load gets this error. The
    /// loader's error is the source only, not repeated in the message.
    #[error("the loader failed")]
    Loader(#[source] Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// A `get_or_set` loader asked the same store for the key it is loading
    /// (directly, or through the loader of another key it asked for): the call
    /// would wait on itself for ever, so it fails at once instead
    /// (`CacheReentrantLoadError` in JS).
    #[error("the loader of {key} asked for {key} itself: a load cannot wait on its own result")]
    Reentrant {
        /// The key, shortened and quoted for display.
        key: String,
    },
    /// A value's `Clone` or `Drop`, run by a [`MemoryStore`](crate::MemoryStore)
    /// under one of its locks (a `get` clones the value it returns), called
    /// the same store: the call would wait on a lock its own thread holds, so
    /// it fails at once instead. Calls that return no `Result` (`len`,
    /// `stats`) panic with this message instead.
    #[error(
        "{call} was called from inside a value's Clone or Drop that the same MemoryStore was running under its \
         lock: it would deadlock, so it fails instead"
    )]
    ReentrantValue {
        /// The store method that was called.
        call: &'static str,
    },
    /// A load took longer than the timeout its caller set
    /// ([`RefreshOptions`](crate::RefreshOptions)); `CacheTimeoutError` in JS.
    #[error("the load of {key} took longer than {after:?}")]
    Timeout {
        /// The key, shortened and quoted for display.
        key: String,
        /// The timeout that passed.
        after: std::time::Duration,
    },
    /// An entry weighs more than the whole capacity it could use (a store
    /// built with a weigher, or a JS store with `maxSize`): it is refused,
    /// nothing is evicted for it and the store is left as it was, the key's
    /// old entry included (`CacheEntryTooLargeError` in JS).
    #[error("the entry {key} weighs {weight}, more than the capacity of {capacity} it could use")]
    EntryTooLarge {
        /// The key, shortened and quoted for display.
        key: String,
        /// The entry's weight, as the weigher gave it.
        weight: u64,
        /// The capacity it had to fit in: the store's, or in a sharded
        /// store its shard's (see `MemoryStoreBuilder::weigher`).
        capacity: u64,
    },
}

/// What kind of failure a [`CacheError`] is, for code that decides what to do
/// next (retry, fall back, report) without matching on every variant, as
/// redis-rs's `ErrorKind`. The JS package derives its error class from it
/// ([`ErrorKind::js_class`]).
///
/// ```
/// use pepperpy_caching::{CacheError, ErrorKind, LruPolicy};
/// let err: CacheError = LruPolicy::new(0).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Policy);
/// assert!(!err.is_retryable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`CacheError::Key`]: the key breaks the key rules.
    Key,
    /// [`CacheError::Pattern`]: the glob pattern is too long.
    Pattern,
    /// [`CacheError::Policy`]: a policy or an entry's options make no sense.
    Policy,
    /// [`CacheError::Serialization`]: a value or metadata cannot be stored or read back.
    Serialization,
    /// The backend could not be reached, or the connection broke mid-call.
    Connection,
    /// The backend did not answer within the store's response timeout.
    BackendTimeout,
    /// The backend is up but cannot serve for now: loading its data set, a
    /// cluster failover or migration under way, a busy script.
    ServerBusy,
    /// The backend refused the command or answered what the store cannot
    /// read (a script error, out of memory, a value of another format).
    Command,
    /// [`CacheError::Loader`]: the caller's loader failed.
    Loader,
    /// [`CacheError::Reentrant`]: a loader asked for the key it is loading.
    Reentrant,
    /// [`CacheError::ReentrantValue`]: a value's `Clone` or `Drop` called its store.
    ReentrantValue,
    /// [`CacheError::Timeout`]: a load took longer than its caller allowed.
    LoadTimeout,
    /// [`CacheError::EntryTooLarge`]: an entry weighs more than the capacity.
    EntryTooLarge,
}

impl ErrorKind {
    /// Every kind, in declaration order (the order of the JS error table).
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Key,
        ErrorKind::Pattern,
        ErrorKind::Policy,
        ErrorKind::Serialization,
        ErrorKind::Connection,
        ErrorKind::BackendTimeout,
        ErrorKind::ServerBusy,
        ErrorKind::Command,
        ErrorKind::Loader,
        ErrorKind::Reentrant,
        ErrorKind::ReentrantValue,
        ErrorKind::LoadTimeout,
        ErrorKind::EntryTooLarge,
    ];

    /// Whether trying the same call again later may succeed: the backend was
    /// unreachable, slow or busy, or a load ran out of time.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Connection | ErrorKind::BackendTimeout | ErrorKind::ServerBusy | ErrorKind::LoadTimeout
        )
    }

    /// Whether something ran out of time: the backend's answer or a load.
    pub fn is_timeout(self) -> bool {
        matches!(self, ErrorKind::BackendTimeout | ErrorKind::LoadTimeout)
    }

    /// Whether the backend failed (the kinds of [`CacheError::Backend`]).
    pub fn is_backend(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::BackendTimeout | ErrorKind::ServerBusy | ErrorKind::Command)
    }

    /// The name of the JS error class an error of this kind is thrown as by
    /// the npm package (every class extends `CacheError`).
    pub fn js_class(self) -> &'static str {
        match self {
            ErrorKind::Key => "CacheKeyError",
            ErrorKind::Pattern => "CachePatternError",
            ErrorKind::Policy => "CachePolicyError",
            ErrorKind::Serialization => "CacheSerializationError",
            ErrorKind::Connection | ErrorKind::BackendTimeout | ErrorKind::ServerBusy | ErrorKind::Command => {
                "CacheBackendError"
            }
            ErrorKind::Reentrant => "CacheReentrantLoadError",
            ErrorKind::LoadTimeout => "CacheTimeoutError",
            ErrorKind::EntryTooLarge => "CacheEntryTooLargeError",
            // JS loaders reject with their own errors, and the JS store never
            // clones or drops a value under a lock: these reach JS only as a fallback.
            ErrorKind::Loader | ErrorKind::ReentrantValue => "CacheError",
        }
    }
}

impl CacheError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheError::Key { .. } => ErrorKind::Key,
            CacheError::Pattern { .. } => ErrorKind::Pattern,
            CacheError::Policy(_) => ErrorKind::Policy,
            CacheError::Serialization(_) => ErrorKind::Serialization,
            CacheError::Backend { kind, .. } => *kind,
            CacheError::Loader(_) => ErrorKind::Loader,
            CacheError::Reentrant { .. } => ErrorKind::Reentrant,
            CacheError::ReentrantValue { .. } => ErrorKind::ReentrantValue,
            CacheError::Timeout { .. } => ErrorKind::LoadTimeout,
            CacheError::EntryTooLarge { .. } => ErrorKind::EntryTooLarge,
        }
    }

    /// Whether trying the same call again later may succeed ([`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// Whether something ran out of time ([`ErrorKind::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.kind().is_timeout()
    }

    /// A [`CacheError::Backend`] of `kind` (which must be a backend kind).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backend(
        kind: ErrorKind,
        message: impl Into<String>,
        source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        debug_assert!(kind.is_backend(), "{kind:?} is not a backend kind");
        CacheError::Backend { kind, message: message.into(), source }
    }

    pub(crate) fn key(key: &str, reason: impl Into<String>) -> Self {
        CacheError::Key { key: shown(key), reason: reason.into() }
    }

    pub(crate) fn pattern(pattern: &str, reason: impl Into<String>) -> Self {
        CacheError::Pattern { pattern: shown(pattern), reason: reason.into() }
    }
}

/// Quotes a user-supplied string for an error message, cutting it at
/// [`SHOWN_CHARS`] characters so a megabyte key does not make a megabyte message.
pub(crate) fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}... ({} bytes)", text.len()) } else { format!("{head:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_shortened_in_messages() {
        let err = CacheError::key(&"k".repeat(10_000), "too long");
        let text = err.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(text.contains("10000 bytes"), "{text}");
    }

    #[test]
    fn kinds_answer_retry_and_timeout() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.is_timeout(), matches!(kind, ErrorKind::BackendTimeout | ErrorKind::LoadTimeout));
            if kind.is_backend() {
                assert!(kind.js_class() == "CacheBackendError");
                assert_eq!(CacheError::backend(kind, "m", None).kind(), kind);
            }
        }
        assert!(CacheError::backend(ErrorKind::Connection, "m", None).is_retryable());
        assert!(!CacheError::backend(ErrorKind::Command, "m", None).is_retryable());
        assert!(!CacheError::key("", "empty").is_retryable());
        let timeout = CacheError::Timeout { key: "\"k\"".into(), after: std::time::Duration::from_secs(1) };
        assert!(timeout.is_timeout() && timeout.is_retryable());
        assert_eq!(timeout.kind().js_class(), "CacheTimeoutError");
    }

    #[test]
    fn the_js_types_declare_every_kinds_class() {
        let types = include_str!("../js/index.d.ts");
        for kind in ErrorKind::ALL {
            let class = kind.js_class();
            let base = if class == "CacheError" { "Error" } else { "CacheError" };
            assert!(types.contains(&format!("export declare class {class} extends {base} ")), "{kind:?}: {class}");
        }
    }

    #[test]
    fn short_values_are_quoted_whole() {
        let err = CacheError::pattern("a[b", "whatever");
        assert_eq!(err.to_string(), "invalid pattern \"a[b\": whatever");
    }
}
