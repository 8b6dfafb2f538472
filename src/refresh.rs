//! Stale-while-revalidate for `MemoryStore::get_or_refresh`: what it is told
//! ([`RefreshOptions`]) and how it runs work in the background and waits
//! ([`Runtime`]), since the core owns no executor and no timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::errors::{CacheError, Result};
use crate::key::Key;
use crate::store::{Metadata, SetOptions, check_metadata};

/// A boxed, sendable future, as a [`Runtime`] spawns and returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where background refreshes run and how timeouts wait: the executor the
/// application already has. With the `tokio` feature, [`TokioRuntime`].
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxFuture<()>);
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
}

/// The loader of a `get_or_refresh`: a closure making the future of the
/// value, both `Send + 'static`, since a refresh may run the loader in the
/// background after the call has returned. Any `FnOnce() -> impl Future<Output
/// = Result<V, E>>` that owns what it uses is one (blanket impl); `E` is the
/// loader's error, handed back as [`CacheError::Loader`]'s source.
pub trait RefreshLoader<V, E>: Send + 'static {
    /// The future the loader makes.
    type Future: Future<Output = std::result::Result<V, E>> + Send + 'static;

    /// Starts the load.
    fn load(self) -> Self::Future;
}

impl<V, E, F, Fut> RefreshLoader<V, E> for F
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
{
    type Future = Fut;

    fn load(self) -> Fut {
        self()
    }
}

/// Tokio's `spawn` and `sleep` (feature `tokio`; call from inside a runtime).
#[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

#[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
impl Runtime for TokioRuntime {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// How [`MemoryStore::get_or_refresh`](crate::MemoryStore::get_or_refresh)
/// loads and serves a key: fresh for the entry's TTL, then *stale* for a
/// grace period, during which a call returns the stale value at once and
/// starts one background refresh.
///
/// ```
/// use pepperpy_caching::{RefreshOptions, SetOptions};
/// # #[cfg(feature = "tokio")] {
/// use pepperpy_caching::TokioRuntime;
/// use std::time::Duration;
/// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600))
///     .timeouts(Some(Duration::from_millis(200)), Some(Duration::from_secs(5)))
///     .retry_after(Duration::from_secs(2));
/// # let _ = options; }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RefreshOptions {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) set: SetOptions,
    pub(crate) fresh_for: Duration,
    pub(crate) grace: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
}

impl std::fmt::Debug for RefreshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshOptions")
            .field("fresh_for", &self.fresh_for)
            .field("grace", &self.grace)
            .field("retry_after", &self.retry_after)
            .field("soft_timeout", &self.soft_timeout)
            .field("hard_timeout", &self.hard_timeout)
            .finish_non_exhaustive()
    }
}

impl RefreshOptions {
    /// Entries are fresh for `fresh_for`, then served stale for `grace` while
    /// one refresh runs on `runtime`. No timeouts; a failed refresh is retried
    /// after one second, doubling up to a minute.
    pub fn new(runtime: impl Runtime, fresh_for: Duration, grace: Duration) -> Self {
        RefreshOptions {
            runtime: Arc::new(runtime),
            set: SetOptions::new(),
            fresh_for,
            grace,
            retry_after: DEFAULT_RETRY_AFTER,
            soft_timeout: None,
            hard_timeout: None,
        }
    }

    /// Metadata for the loaded entries.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.set = self.set.metadata(metadata);
        self
    }

    /// A time-to-idle for the loaded entries (see [`SetOptions::idle`]):
    /// they leave after `idle` without a read, or when the grace period
    /// ends, whichever comes first. A hit of `get_or_refresh`, fresh or
    /// stale, is a read. Checked at every call: zero or over
    /// [`MAX_IDLE`](crate::policies::MAX_IDLE) is [`CacheError::Policy`].
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{RefreshOptions, TokioRuntime};
    /// use std::time::Duration;
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600))
    ///     .idle(Duration::from_secs(300));
    /// # let _ = options; }
    /// ```
    pub fn idle(mut self, idle: Duration) -> Self {
        self.set = self.set.idle(idle);
        self
    }

    /// Tags for the loaded entries (see [`SetOptions::tags`]): an
    /// [`invalidate_tags`](crate::CacheStore::invalidate_tags) of one of them
    /// removes the entry, and a load or refresh in flight then stores nothing.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{RefreshOptions, TokioRuntime};
    /// use std::time::Duration;
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600))
    ///     .tags(["product:42"]);
    /// # let _ = options; }
    /// ```
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set = self.set.tags(tags);
        self
    }

    /// `soft`: how long a caller waits for a load when there is no value to
    /// serve (then [`CacheError::Timeout`]; another waiting caller may take
    /// the load over, and the caller that gave up stops its loader). `hard`:
    /// how long any load, a background refresh included, may run before it
    /// is dropped and counts as failed.
    pub fn timeouts(mut self, soft: Option<Duration>, hard: Option<Duration>) -> Self {
        self.soft_timeout = soft;
        self.hard_timeout = hard;
        self
    }

    /// The wait before retrying a failed refresh; it doubles on each failure
    /// in a row, up to a minute. The stale value is served meanwhile, until
    /// the grace period ends (stale-if-error).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = delay;
        self
    }

    /// Checks the options: a zero fresh period or grace makes no sense.
    pub(crate) fn check(&self) -> Result<()> {
        if self.fresh_for.is_zero() || self.grace.is_zero() {
            return Err(CacheError::Policy(format!(
                "get_or_refresh needs a fresh period and a grace period above zero, got {:?} and {:?}",
                self.fresh_for, self.grace
            )));
        }
        if let Some(idle) = self.set.idle {
            crate::policies::check_idle(idle)?;
        }
        // The entry's TTL is fresh_for + grace, above zero: only the metadata
        // and tags are left to check (without cloning them, on every call).
        if !self.set.tags.is_empty() {
            crate::tags::check_entry_tags(&self.set.tags)?;
        }
        match &self.set.metadata {
            Some(metadata) => check_metadata(metadata),
            None => Ok(()),
        }
    }

    /// Checks a `get_or_refresh` call before anything runs, as every store
    /// does: the key, then these options. The one rule for the top of each
    /// store's `get_or_refresh`.
    pub(crate) fn check_call<'k>(&self, key: &'k str) -> Result<Key<'k>> {
        let key = Key::new(key)?;
        self.check()?;
        Ok(key)
    }

    /// The options the entry is stored with: it lives until the grace ends.
    pub(crate) fn entry_options(&self) -> SetOptions {
        let mut set = self.set.clone();
        set.ttl = Some(self.fresh_for.saturating_add(self.grace));
        set
    }

    /// The wait before the next refresh after `failures` failures in a row.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        backoff(self.retry_after, failures)
    }
}

/// The rules between a JS `getOrSet`'s options (each value checked): `grace`
/// needs a fresh period (`ttl`), and `retryAfter` needs `grace`. The message
/// of the first broken, for the bindings of both JS stores.
#[cfg_attr(not(any(feature = "js", feature = "js-redis")), allow(dead_code))]
pub(crate) fn js_option_rules(ttl: bool, grace: bool, retry_after: bool) -> Option<&'static str> {
    match (ttl, grace, retry_after) {
        (false, true, _) => Some("grace needs a ttl, the period during which a loaded value is fresh"),
        (_, false, true) => Some("retryAfter applies only with grace"),
        _ => None,
    }
}

/// The wait before retrying a failed refresh unless told otherwise.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The wait before the next refresh after `failures` failed refreshes in a
/// row: `retry_after`, doubling with each, up to a minute (or `retry_after`
/// itself if longer). The JS layer's refreshes take it too (src/wasm).
pub(crate) fn backoff(retry_after: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    retry_after.saturating_mul(factor).min(Duration::from_secs(60).max(retry_after))
}

/// Runs `load`, giving up with [`CacheError::Timeout`] after `timeout` (if any).
pub(crate) async fn within<T>(
    runtime: &dyn Runtime,
    key: &str,
    timeout: Option<Duration>,
    load: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(after) = timeout else { return load.await };
    Race { load: Box::pin(load), timer: runtime.sleep(after) }
        .await
        .unwrap_or_else(|| Err(CacheError::Timeout { key: crate::errors::shown(key), after }))
}

/// Whichever finishes first: the load (`Some`) or the timer (`None`).
struct Race<L> {
    load: Pin<Box<L>>,
    timer: BoxFuture<()>,
}

impl<L: Future> Future for Race<L> {
    type Output = Option<L::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.load.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;

    struct NoRuntime;

    impl Runtime for NoRuntime {
        fn spawn(&self, _: BoxFuture<()>) {}
        fn sleep(&self, _: Duration) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn a_call_is_checked_key_first_then_options() {
        let good = RefreshOptions::new(NoRuntime, Duration::from_secs(1), Duration::from_secs(1));
        let zero = RefreshOptions::new(NoRuntime, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(good.check_call("k").unwrap().as_str(), "k");
        assert_eq!(good.check_call("").unwrap_err().kind(), ErrorKind::Key);
        assert_eq!(zero.check_call("").unwrap_err().kind(), ErrorKind::Key, "the key first");
        assert_eq!(zero.check_call("k").unwrap_err().kind(), ErrorKind::Policy);
        let mut deep = serde_json::Value::Null;
        for _ in 0..200 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let nested = good.metadata(Metadata::from_iter([("m".to_string(), deep)]));
        assert_eq!(nested.check_call("k").unwrap_err().kind(), ErrorKind::Serialization);
    }
}
