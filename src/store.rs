//! The [`CacheStore`] trait every backend implements, and what its calls take.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::errors::{CacheError, DynError, Result};
use crate::metrics::CacheStats;
use crate::refresh::{RefreshLoader, RefreshOptions};

pub use crate::key::{MAX_KEY_LEN, RESERVED_KEY_CHAR};
/// The deepest nesting of arrays and objects accepted in metadata (the
/// metadata object itself is level 1) by every store, and in values by
/// `RedisStore`: JSON readers limit nesting (serde_json reads at most 127
/// levels), and what is stored must read back.
pub(crate) const MAX_NESTING: usize = 100;

/// Free-form data stored beside a value: a JSON object (`serde_json`'s map).
///
/// ```
/// use pepperpy_caching::Metadata;
/// let meta: Metadata = serde_json::json!({ "version": 1, "author": "user" })
///     .as_object().cloned().unwrap();
/// assert_eq!(meta["version"], 1);
/// ```
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// How to store one entry.
///
/// ```
/// use pepperpy_caching::SetOptions;
/// use std::time::Duration;
/// let options = SetOptions::new().ttl(Duration::from_secs(60));
/// assert_eq!(options.ttl, Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SetOptions {
    /// How long the entry lives; `None` takes the policy's default (if any).
    pub ttl: Option<Duration>,
    /// Metadata stored with the entry; `None` stores none.
    pub metadata: Option<Metadata>,
    /// Time-to-idle: the entry leaves after this long without a read, or at
    /// its TTL, whichever comes first; `None` takes the policy's default (if
    /// any). See [`idle`](Self::idle).
    pub idle: Option<Duration>,
    /// The entry's tags, for [`CacheStore::invalidate_tags`] (see
    /// [`SetOptions::tags`]); empty, the default, for none.
    pub tags: Vec<String>,
}

impl SetOptions {
    /// No TTL of its own, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry expires after `ttl` (which must not be zero).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The entry carries `metadata`.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The entry leaves after `idle` without a read, or at its TTL,
    /// whichever comes first (moka's `time_to_idle`, per entry). A read is a
    /// `get` hit or a `get_or_set`/`get_or_refresh` hit; `contains` and
    /// `get_metadata` are not (as moka; lru-cache's `has` does not either).
    /// A `set` starts the idle clock again. `idle` must be greater than zero
    /// and at most [`MAX_IDLE`](crate::policies::MAX_IDLE): a `set` with any
    /// other is [`CacheError::Policy`] and changes nothing.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, ManualClock, MemoryStore, SetOptions};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::builder(LruPolicy::new(100)?).clock(clock.clone()).build();
    /// let options = SetOptions::new().ttl(Duration::from_secs(60)).idle(Duration::from_secs(10));
    /// store.set("session", 1, options).await?;
    /// clock.advance(Duration::from_secs(8));
    /// assert_eq!(store.get("session").await?, Some(1)); // a read: 10 s more
    /// clock.advance(Duration::from_secs(8));
    /// assert_eq!(store.get("session").await?, Some(1));
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(store.get("session").await?, None); // 10 s without a read
    /// # Ok(()) }
    /// ```
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The entry carries `tags` (replacing any given before), so that
    /// [`invalidate_tags`](CacheStore::invalidate_tags) of any one of them
    /// removes it. At most [`MAX_TAGS`](crate::MAX_TAGS) tags, each non-empty,
    /// at most [`MAX_TAG_LEN`](crate::MAX_TAG_LEN) bytes, none twice; else
    /// the call fails with [`CacheError::Policy`] and stores nothing.
    ///
    /// ```
    /// use pepperpy_caching::SetOptions;
    /// let options = SetOptions::new().tags(["user:42", "team:7"]);
    /// assert_eq!(options.tags, ["user:42", "team:7"]);
    /// ```
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// The async interface every store implements, so application code can be
/// generic over the backend and move from memory to Redis unchanged.
///
/// Keys are non-empty UTF-8 strings of at most [`MAX_KEY_LEN`] bytes without
/// [`RESERVED_KEY_CHAR`] (U+FFFF); anything else is [`CacheError::Key`]. Patterns use Redis glob syntax (see
/// [`Pattern`](crate::Pattern)). A call that fails on bad input changes
/// nothing: no entry, no counter.
///
/// ```
/// use pepperpy_caching::{CacheStore, SetOptions, Result};
///
/// async fn remember_user<S: CacheStore<String>>(store: &S, id: u32) -> Result<Option<String>> {
///     let key = format!("user:{id}");
///     store.set(&key, format!("user #{id}"), SetOptions::new()).await?;
///     store.get(&key).await
/// }
/// ```
pub trait CacheStore<V>: Send + Sync {
    /// The live value under `key`, or `None` (a miss, also for an expired entry).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<V>>> + Send;

    /// Stores `value` under `key`, replacing any previous entry and its metadata.
    fn set(&self, key: &str, value: V, options: SetOptions) -> impl Future<Output = Result<()>> + Send;

    /// Removes `key`; whether a live entry was there.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The live values under `keys`, in the order of `keys` (`None` for a
    /// miss), read in one go: one lock per shard in memory, one round trip
    /// on Redis (one per master on a cluster, in parallel). Each key counts
    /// as one `get` (a hit or a miss), so a key given twice is read and
    /// counted twice and answered in both places. Every key is checked
    /// first: one bad key fails the whole call with [`CacheError::Key`]
    /// and nothing is read or counted. An empty `keys` is a no-op.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// store.set("a", 1, SetOptions::new()).await?;
    /// assert_eq!(store.get_many(&["a", "b", "a"]).await?, [Some(1), None, Some(1)]);
    /// assert_eq!((store.stats().hits, store.stats().misses), (2, 1));
    /// # Ok(()) }
    /// ```
    fn get_many(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send;

    /// Stores every `(key, value)` of `entries` with the same `options`
    /// (one TTL and metadata for all: call it once per set of options), as
    /// that many `set`s in the order given would, so of a key given twice
    /// the last value stays. One lock per shard in memory, one round trip on
    /// Redis (one per master on a cluster, in parallel). Each entry counts
    /// as one `set`. The keys and the options are checked (and, on Redis,
    /// every value encoded) before anything is written: bad input fails the
    /// whole call and changes nothing. An empty `entries` is a no-op.
    ///
    /// On Redis a call that fails on the way (a timeout, a server gone)
    /// may have written some of the entries and not others, as that many
    /// `set`s would: each entry is written whole or not at all (under a
    /// capacity, up to 100 entries of one bucket at a time, atomically), and
    /// the call reports the failure; sending it again is safe.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// let ttl = SetOptions::new().ttl(Duration::from_secs(60));
    /// store.set_many(vec![("a", 1), ("b", 2), ("a", 3)], ttl).await?;
    /// assert_eq!(store.get_many(&["a", "b"]).await?, [Some(3), Some(2)]);
    /// # Ok(()) }
    /// ```
    fn set_many(&self, entries: Vec<(&str, V)>, options: SetOptions) -> impl Future<Output = Result<()>> + Send;

    /// Removes every key of `keys`; how many live entries were there (a key
    /// given twice is removed once). One lock per shard in memory, one
    /// round trip on Redis (one per master on a cluster, in parallel); each
    /// entry removed counts as one delete. Every key is checked first: one
    /// bad key fails the whole call and removes nothing. An empty `keys` is
    /// a no-op. On Redis a call that fails on the way may have removed some
    /// of the keys.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// store.set_many(vec![("a", 1), ("b", 2)], SetOptions::new()).await?;
    /// assert_eq!(store.delete_many(&["a", "b", "c", "a"]).await?, 2);
    /// assert_eq!(store.size().await?, 0);
    /// # Ok(()) }
    /// ```
    fn delete_many(&self, keys: &[&str]) -> impl Future<Output = Result<usize>> + Send;

    /// Whether a live entry is under `key`. Counts neither hit nor miss and
    /// does not refresh recency.
    fn contains(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The metadata of the live entry under `key`: `None` when there is no such
    /// entry, an empty map when it has none.
    fn get_metadata(&self, key: &str) -> impl Future<Output = Result<Option<Metadata>>> + Send;

    /// Merges `metadata` into the entry's metadata (top-level keys replaced,
    /// like `dict.update` or `Object.assign`); value and TTL untouched.
    /// Whether a live entry was there.
    fn update_metadata(&self, key: &str, metadata: Metadata) -> impl Future<Output = Result<bool>> + Send;

    /// Removes every live entry whose key matches the glob `pattern`; how many.
    fn invalidate(&self, pattern: &str) -> impl Future<Output = Result<usize>> + Send;

    /// Removes every live entry that carries at least one of `tags` (given
    /// by [`SetOptions::tags`]); how many. A tag named twice counts once;
    /// an invalid tag (empty, longer than [`MAX_TAG_LEN`](crate::MAX_TAG_LEN))
    /// or more than [`MAX_INVALIDATE_TAGS`](crate::MAX_INVALIDATE_TAGS) tags
    /// is [`CacheError::Policy`] and removes nothing.
    ///
    /// When it returns, no reader sees an entry carrying one of the tags
    /// that was set before the call, and a tagged load (`get_or_set`,
    /// `get_or_refresh` with tags in its options) that began before it
    /// stores nothing (its callers still get the loaded value). On Redis
    /// this holds for every process sharing the prefix.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// store.set("page:home", 1, SetOptions::new().tags(["user:42", "team:7"])).await?;
    /// store.set("page:team", 2, SetOptions::new().tags(["team:7"])).await?;
    /// store.set("page:about", 3, SetOptions::new()).await?;
    /// assert_eq!(store.invalidate_tags(&["user:42"]).await?, 1);
    /// assert_eq!(store.invalidate_tags(&["team:7", "user:42"]).await?, 1);
    /// assert_eq!(store.keys(None).await?, ["page:about"]);
    /// # Ok(()) }
    /// ```
    fn invalidate_tags(&self, tags: &[&str]) -> impl Future<Output = Result<usize>> + Send;

    /// The tags of the live entry under `key`, in the order they were set:
    /// `None` when there is no such entry, empty when it has none. Counts
    /// neither hit nor miss.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// store.set("page:home", 1, SetOptions::new().tags(["user:42", "team:7"])).await?;
    /// assert_eq!(store.get_tags("page:home").await?, Some(vec!["user:42".into(), "team:7".into()]));
    /// store.set("page:home", 2, SetOptions::new()).await?; // a set replaces the tags too
    /// assert_eq!(store.get_tags("page:home").await?, Some(vec![]));
    /// assert_eq!(store.get_tags("nothing").await?, None);
    /// # Ok(()) }
    /// ```
    fn get_tags(&self, key: &str) -> impl Future<Output = Result<Option<Vec<String>>>> + Send;

    /// The keys of live entries, all or those matching `pattern`, in no
    /// promised order.
    fn keys(&self, pattern: Option<&str>) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// How many live entries there are.
    fn size(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Removes every entry.
    fn clear(&self) -> impl Future<Output = Result<()>> + Send;

    /// The live value under `key`, or else the value `loader` produces, which
    /// is stored with `options` and returned (read-through caching).
    ///
    /// Concurrent calls for the same missing key share one run of a loader:
    /// the first caller's runs, the others wait for its value. If that caller
    /// goes away mid-load (its future dropped), a waiting caller takes over
    /// with its own loader, so no one waits forever. `options` are checked
    /// before any loader runs.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// let v = store.get_or_set("answer", || async { 6 * 7 }, SetOptions::new()).await?;
    /// assert_eq!(v, 42);
    /// // Cached now: this loader never runs.
    /// assert_eq!(store.get_or_set("answer", || async { unreachable!() }, SetOptions::new()).await?, 42);
    /// # Ok(()) }
    /// ```
    fn get_or_set<F, Fut>(&self, key: &str, loader: F, options: SetOptions) -> impl Future<Output = Result<V>> + Send
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = V> + Send,
    {
        self.try_get_or_set(key, move || async move { Ok::<V, std::convert::Infallible>(loader().await) }, options)
    }

    /// [`get_or_set`](CacheStore::get_or_set) with a loader that can fail. A
    /// failure caches nothing and reaches every caller waiting on that load as
    /// [`CacheError::Loader`] (downcast its source to get your error back);
    /// the next call runs a loader again.
    ///
    /// ```
    /// use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MemoryStore, SetOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = MemoryStore::<String>::new(LruPolicy::new(100)?);
    /// let failed = store
    ///     .try_get_or_set("user:1", || async { Err(std::io::Error::other("db down")) }, SetOptions::new())
    ///     .await;
    /// match failed {
    ///     Err(CacheError::Loader(source)) => assert_eq!(source.to_string(), "db down"),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(!store.contains("user:1").await?);
    /// # Ok(()) }
    /// ```
    fn try_get_or_set<F, Fut, E>(
        &self,
        key: &str,
        loader: F,
        options: SetOptions,
    ) -> impl Future<Output = Result<V>> + Send
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>;

    /// Read-through with stale-while-revalidate: the fresh value under
    /// `key`; within [`RefreshOptions`]' grace period after it went stale,
    /// the stale value at once while one refresh runs in the background on
    /// the options' [`Runtime`](crate::Runtime); on a miss (or past the
    /// grace period), the value `loader` produces, loaded once for all
    /// concurrent callers as in [`try_get_or_set`](CacheStore::try_get_or_set).
    /// A failed refresh keeps the stale value (stale-if-error, with the
    /// options' backoff); a refresh never stores over a write it has not
    /// seen. The store is taken as an `Arc`: a background refresh holds it.
    ///
    /// Each store documents its own guarantees under the same name
    /// ([`MemoryStore::get_or_refresh`](crate::MemoryStore::get_or_refresh),
    /// and `RedisStore::get_or_refresh` across processes); a `NearCache`
    /// answers it from Redis, where freshness is kept.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, RefreshOptions, TokioRuntime};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// async fn price<S: CacheStore<u64>>(store: &Arc<S>, options: &RefreshOptions) -> pepperpy_caching::Result<u64> {
    ///     store.get_or_refresh("price:42", || async { Ok::<_, std::io::Error>(1999) }, options).await
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = Arc::new(MemoryStore::new(LruPolicy::new(100)?));
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600));
    /// assert_eq!(price(&store, &options).await?, 1999);
    /// # Ok(()) }
    /// # }
    /// ```
    fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> impl Future<Output = Result<V>> + Send
    where
        Self: Sized,
        E: Into<DynError> + 'static;

    /// The counters so far.
    fn stats(&self) -> CacheStats;

    /// Sets every counter back to zero.
    fn reset_stats(&self);
}

/// The TTL an entry gets: its own, else the policy's default. A zero TTL of
/// its own is an error.
pub(crate) fn effective_ttl(own: Option<Duration>, default: Option<Duration>) -> Result<Option<Duration>> {
    match own {
        Some(ttl) => crate::policies::check_ttl(ttl).map(Some),
        None => Ok(default),
    }
}

/// Checks the options of a `set` (or `get_or_set`) against the rules every
/// store shares, and returns the TTL the entry gets. Every store calls this
/// before writing, so all give the same answer for the same options.
#[inline]
pub(crate) fn check_set_options(options: &SetOptions, default_ttl: Option<Duration>) -> Result<Option<Duration>> {
    // A plain set (no metadata, idle time or tags) checks its TTL only, inline.
    if options.metadata.is_some() || options.idle.is_some() || !options.tags.is_empty() {
        check_set_extras(options)?;
    }
    effective_ttl(options.ttl, default_ttl)
}

/// The checks of a set's metadata, idle time and tags (out of line: most
/// sets carry none).
#[inline(never)]
fn check_set_extras(options: &SetOptions) -> Result<()> {
    if let Some(metadata) = &options.metadata {
        check_metadata(metadata)?;
    }
    if let Some(idle) = options.idle {
        crate::policies::check_idle(idle)?;
    }
    if !options.tags.is_empty() {
        crate::tags::check_entry_tags(&options.tags)?;
    }
    Ok(())
}

/// Refuses metadata nested deeper than [`MAX_NESTING`] (the map itself is
/// level 1), as [`CacheError::Serialization`]: it could not be read back from
/// a JSON store. Never recurses deeper than the limit, whatever the input.
pub(crate) fn check_metadata(metadata: &Metadata) -> Result<()> {
    fn too_deep(value: &serde_json::Value, level: usize) -> bool {
        let children: &mut dyn Iterator<Item = &serde_json::Value> = match value {
            serde_json::Value::Array(items) => &mut items.iter(),
            serde_json::Value::Object(map) => &mut map.values(),
            _ => return false,
        };
        level > MAX_NESTING || Iterator::any(&mut { children }, |child| too_deep(child, level + 1))
    }
    if metadata.values().any(|value| too_deep(value, 2)) {
        return Err(CacheError::Serialization(format!(
            "the metadata is nested more than {MAX_NESTING} levels deep (arrays and objects), more than can be read back"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_nesting_is_limited() {
        fn nested(depth: usize) -> serde_json::Value {
            (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!([v]))
        }
        let meta = |v| serde_json::json!({ "a": v }).as_object().cloned().unwrap();
        // The map is level 1, so a value nested MAX_NESTING - 1 deep inside it is at the limit.
        assert!(check_metadata(&meta(nested(MAX_NESTING - 1))).is_ok());
        assert!(matches!(check_metadata(&meta(nested(MAX_NESTING))), Err(CacheError::Serialization(_))));
        let options = SetOptions::new().metadata(meta(nested(MAX_NESTING)));
        assert!(matches!(check_set_options(&options, None), Err(CacheError::Serialization(_))));
        assert!(check_set_options(&SetOptions::new().metadata(meta(nested(3))), None).is_ok());
    }

    #[test]
    fn own_ttl_wins_and_zero_is_rejected() {
        let s = Duration::from_secs(1);
        let m = Duration::from_secs(60);
        assert_eq!(effective_ttl(Some(s), Some(m)).unwrap(), Some(s));
        assert_eq!(effective_ttl(None, Some(m)).unwrap(), Some(m));
        assert_eq!(effective_ttl(None, None).unwrap(), None);
        assert!(matches!(effective_ttl(Some(Duration::ZERO), None), Err(CacheError::Policy(_))));
    }
}
