//! Read-through on the memory store: the leader's load that `get_or_set`
//! and `get_or_refresh` share (its placeholder in the engine, so a write
//! during the load wins), and `get_or_refresh`'s stale-while-revalidate with
//! its background refresh.

use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::sync::Arc;

use super::MemoryStore;
use super::engine::{Engine, Freshly, Removals};
use super::reentry::{read, write};
use crate::errors::{DynError, Result};
use crate::key::{Key, KeyBuf};
use crate::refresh::{RefreshLoader, RefreshOptions, within};
use crate::singleflight::loader_error;

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// The leader's part of a read-through of `key` (filed under `hash`):
    /// unless a leader that finished after this caller's look-up has stored
    /// a value, runs `load` with a placeholder in the engine, then hands
    /// the outcome and the placeholder's token to `finish` (which stores the
    /// value if the placeholder is still there) under the shard's lock.
    /// What that replaced or evicted is dropped after the lock.
    pub(super) async fn lead_load(
        &self,
        key: Key<'_>,
        hash: u64,
        load: impl Future<Output = Result<V>>,
        finish: impl FnOnce(&mut Engine<V>, u64, &Result<V>) -> Result<Removals<V>>,
    ) -> Result<(V, V)> {
        let token = {
            let mut engine = write(self.shard_of(hash));
            let found = engine.peek_with(key, hash, V::clone);
            let token = found.is_none().then(|| engine.begin_load(key));
            self.release(engine);
            match (found, token) {
                (Some(value), _) => return Ok((value.clone(), value)),
                (None, token) => token.expect("a miss begins a load"),
            }
        };
        // Ends the load if this future is dropped or the loader panics.
        let pending = PendingLoad { store: self, key, hash, token: Some(token) };
        let started = self.clock.now();
        let loaded = load.await;
        let elapsed = self.clock.now().saturating_sub(started);
        std::mem::forget(pending);
        let mut engine = write(self.shard_of(hash));
        engine.counters.record_load(loaded.is_ok(), elapsed);
        let removed = finish(&mut engine, token, &loaded);
        self.release(engine);
        self.dispose_write(removed?, &key);
        let value = loaded?;
        Ok((value.clone(), value))
    }

    /// Read-through with stale-while-revalidate: the fresh value under `key`;
    /// within the grace period after it went stale, the stale value at once
    /// while one refresh runs in the background on the options' [`Runtime`](crate::refresh::Runtime)
    /// (one per key in this store); on a miss, the value `loader` produces,
    /// loaded once for all concurrent callers as in
    /// [`try_get_or_set`](crate::store::CacheStore::try_get_or_set).
    ///
    /// - A failed or timed-out refresh keeps the stale value until the grace
    ///   period ends (stale-if-error) and the next refresh waits for the
    ///   backoff of [`RefreshOptions::retry_after`].
    /// - A refresh or load stores its value only if nothing wrote, deleted,
    ///   invalidated or cleared the key, or updated its metadata, since it
    ///   began: [`update_metadata`](crate::store::CacheStore::update_metadata)
    ///   is a write too, so a refresh running when it lands stores nothing
    ///   (it would erase the update) and the next stale read starts another.
    ///   A refresh that stores replaces the entry as a `set` does, metadata
    ///   included (the options' metadata), as `RedisStore` does.
    /// - Entries stored by other calls count as fresh until they expire.
    /// - Stats count `stale_hits`, `refreshes` and `refresh_failures`.
    /// - Under S3-FIFO and TTL, a hit that needs no exclusive work (fresh, or
    ///   stale with its refresh already running or backing off) is answered,
    ///   and counted, when the call is made, under the shard's shared lock,
    ///   as [`get`](crate::store::CacheStore::get) is; the returned future
    ///   only hands it over. Everything else happens when the future is polled.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{MemoryStore, RefreshOptions, S3FifoPolicy, TokioRuntime};
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = Arc::new(MemoryStore::new(S3FifoPolicy::new(10_000)?));
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600));
    /// let price = store
    ///     .get_or_refresh("price:42", || async { Ok::<_, std::io::Error>(1999u64) }, &options)
    ///     .await?;
    /// assert_eq!(price, 1999);
    /// # Ok(()) }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Key`](crate::errors::CacheError::Key) or `Policy` for
    /// bad input (before any loader runs), `Loader` when the loader of a miss
    /// fails, `Timeout` after the soft timeout of a miss, `Reentrant` when a
    /// loader asks for its own key.
    pub fn get_or_refresh<'a, E>(
        self: &'a Arc<Self>,
        key: &'a str,
        loader: impl RefreshLoader<V, E>,
        options: &'a RefreshOptions,
    ) -> impl Future<Output = Result<V>> + Send + 'a
    where
        E: Into<DynError> + 'a,
    {
        let loader = move || loader.load();
        // A hit that needs no exclusive work (fresh, or stale with its
        // refresh running) is answered at once under the shared lock, as
        // `get` is; only the rest becomes a future of its own.
        let checked = self.reentered("get_or_refresh").and_then(|()| options.check_call(key));
        let hash = self.hasher.hash_one(key);
        if let Ok(key) = checked
            && self.shared_reads
            && let Some(Freshly::Fresh(value) | Freshly::Stale { value, refresh: false }) =
                read(self.shard_of(hash)).get_fresh_shared(key, hash)
        {
            return Refreshing::Done(Some(Ok(value)));
        }
        Refreshing::Later(Box::pin(self.get_or_refresh_slow(checked, hash, loader, options)))
    }

    /// [`get_or_refresh`](Self::get_or_refresh) past its shared fast path.
    async fn get_or_refresh_slow<F, Fut, E>(
        self: &Arc<Self>,
        checked: Result<Key<'_>>,
        hash: u64,
        loader: F,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let key = checked?;
        // A stale read that is to start the refresh takes its placeholder
        // under the same lock.
        let (found, refresh) = {
            let mut engine = write(self.shard_of(hash));
            let found = engine.get_fresh(key, hash);
            let refresh = matches!(found, Freshly::Stale { refresh: true, .. }).then(|| engine.begin_load(key));
            self.release(engine);
            (found, refresh)
        };
        let loader = match found {
            Freshly::Fresh(value) => return Ok(value),
            Freshly::Stale { value, .. } => {
                if let Some(token) = refresh {
                    self.spawn_refresh(key, hash, token, loader, options);
                }
                return Ok(value);
            }
            Freshly::Miss => loader,
        };
        let lead = || {
            let load =
                within(&*options.runtime, &key, options.hard_timeout, async { loader().await.map_err(loader_error) });
            self.lead_load(key, hash, load, |engine, token, loaded| {
                engine.finish_refresh(key, hash, token, loaded.clone().map_err(drop), options, false)
            })
        };
        // The lookup above was this call's counted get.
        let load = self.flights.read_through(&key, || ready(Ok(None)), Ok, lead);
        within(&*options.runtime, &key, options.soft_timeout, load).await
    }

    /// Starts the background refresh of `key`, whose load `token` has begun,
    /// on the options' runtime.
    fn spawn_refresh<F, Fut, E>(
        self: &Arc<Self>,
        key: Key<'_>,
        hash: u64,
        token: u64,
        loader: F,
        options: &RefreshOptions,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // Fails the refresh if the runtime drops the task unfinished, so the
        // key does not stay "refreshing" for ever.
        let mut refresh =
            Refresh { store: Arc::clone(self), key: key.into(), hash, token, options: options.clone(), done: false };
        let task = async move {
            let clock = refresh.store.clock.clone();
            let started = clock.now();
            let loaded = within(&*refresh.options.runtime, &refresh.key.key(), refresh.options.hard_timeout, async {
                loader().await.map_err(loader_error)
            })
            .await;
            let elapsed = clock.now().saturating_sub(started);
            refresh.finish(loaded.map_err(drop), Some(elapsed));
        };
        options.runtime.spawn(Box::pin(task));
    }
}

/// The future of [`MemoryStore::get_or_refresh`]: its answer when the fast
/// path had it, or the rest of the call.
enum Refreshing<T, B> {
    Done(Option<T>),
    Later(std::pin::Pin<Box<B>>),
}

// `T` is never pinned (it is moved out by `take`), `B` is boxed.
impl<T, B> Unpin for Refreshing<T, B> {}

impl<T, B: Future<Output = T>> Future for Refreshing<T, B> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            Refreshing::Done(answer) => {
                std::task::Poll::Ready(answer.take().expect("get_or_refresh's future polled after it was done"))
            }
            Refreshing::Later(rest) => rest.as_mut().poll(cx),
        }
    }
}

/// A background refresh in flight.
struct Refresh<V: Clone + Send + Sync + 'static> {
    store: Arc<MemoryStore<V>>,
    /// The key, checked when the refresh began.
    key: KeyBuf,
    hash: u64,
    token: u64,
    options: RefreshOptions,
    done: bool,
}

impl<V: Clone + Send + Sync + 'static> Refresh<V> {
    /// Counts the loader's run (that took `elapsed`, or never finished) and
    /// hands its outcome to the engine, under one lock.
    fn finish(&mut self, outcome: std::result::Result<V, ()>, elapsed: Option<crate::clock::Nanos>) {
        self.done = true;
        let key = self.key.key();
        let mut engine = write(self.store.shard_of(self.hash));
        match elapsed {
            Some(elapsed) => engine.counters.record_load(outcome.is_ok(), elapsed),
            None => count_unfinished(&mut engine),
        }
        // A value the store refuses (it cannot: the options were checked) is dropped.
        let removed = engine.finish_refresh(key, self.hash, self.token, outcome, &self.options, true);
        // Dropped (or handed to the listener) after the lock.
        self.store.release(engine);
        if let Ok(removed) = removed {
            self.store.dispose_write(removed, &key);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Refresh<V> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Err(()), None);
        }
    }
}

/// Counts a loader run that never finished: it started, so `loads` counts
/// it; if its loader panicked (this runs while the panic unwinds), it failed
/// too. One dropped unfinished (a timeout, a cancelled task) is no failure.
fn count_unfinished<V>(engine: &mut Engine<V>) {
    if std::thread::panicking() {
        engine.counters.record_load(false, 0);
    } else {
        engine.counters.count_unfinished_load();
    }
}

/// A load in progress; ends it (drops its placeholder) if the load goes away
/// before it finished.
struct PendingLoad<'a, 'k, V: Clone + Send + Sync + 'static> {
    store: &'a MemoryStore<V>,
    key: Key<'k>,
    hash: u64,
    token: Option<u64>,
}

impl<V: Clone + Send + Sync + 'static> Drop for PendingLoad<'_, '_, V> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let mut engine = write(self.store.shard_of(self.hash));
            engine.end_load(self.key, token);
            count_unfinished(&mut engine);
        }
    }
}
