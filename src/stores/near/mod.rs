//! [`NearCache`]: a [`MemoryStore`](crate::MemoryStore) in front of a [`RedisStore`], kept
//! coherent across every process by Redis's own client-side caching
//! (RESP3 `CLIENT TRACKING ... BCAST PREFIX`). Native only, feature `redis`.
//!
//! This module owns the memory tier's coherence: when a value may enter
//! memory, and everything that takes it out again. It never talks to Redis
//! about entries except through the [`RedisStore`] (plus a `PTTL` to bound a
//! fill's life), and it never serves from memory while the invalidation
//! connection is down.
//!
//! The files: `local` is the memory tier and its coherence state, `tracking`
//! the invalidation connection, `builder` puts them together; this file maps
//! the [`CacheStore`] calls.

mod batch;
mod builder;
mod local;
mod tracking;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::NearCacheBuilder;
use local::{Forget, Scope, Shared, Ticket};
use tracking::MIN_BACKOFF;

use super::RedisStore;
use crate::errors::{CacheError, DynError, ErrorKind, Result};
use crate::key::Key;
use crate::metrics::{CacheStats, SharedCounters};
use crate::pattern::Pattern;
use crate::refresh::{RefreshLoader, RefreshOptions};
use crate::store::{CacheStore, Metadata, SetOptions, check_metadata, check_set_options};

#[doc = include_str!("../../../docs/near.md")]
pub struct NearCache<V> {
    shared: Arc<Shared<V>>,
    redis: Arc<RedisStore<V>>,
    /// `hits`: gets answered from memory; `misses`: gets passed to Redis (for
    /// latency sampling only; Redis counts the real misses).
    own: SharedCounters,
    /// How long the `PTTL` of a fill may take.
    response_timeout: Duration,
    /// The invalidation connection's task, stopped when the cache is dropped.
    task: tokio::task::AbortHandle,
}

impl<V> NearCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The prefix of every Redis key of this cache.
    pub fn prefix(&self) -> &str {
        self.redis.prefix()
    }

    /// Whether the invalidation connection is up, so the memory tier serves.
    pub fn is_coherent(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Waits until the invalidation connection is up (at once after
    /// [`build`](NearCacheBuilder::build), which returns only once tracking
    /// is on; after a lost connection, until it is back: wrap the call in a
    /// timeout), then makes a round trip on it. When it returns, every
    /// invalidation Redis sent this instance before the call has been
    /// applied to memory: a read that misses now fills memory with what
    /// Redis holds, and no message still on its way can take that out again.
    ///
    /// Every write through this cache (`set`, `delete`, `update_metadata`,
    /// `invalidate`, `clear`, a `get_or_set` that loaded) does the round trip
    /// itself before it returns (waiting at most the response timeout; a
    /// connection that fails it is the heartbeat's to handle), so that its
    /// own invalidation, which Redis
    /// sends back to the writer too, is never still in flight when the next
    /// read fills memory. This call is for waiting on other processes'
    /// writes that are known to be done.
    ///
    /// # Errors
    /// [`CacheError::Backend`] if the connection fails the round trip or does
    /// not answer within the [`response_timeout`](NearCacheBuilder::response_timeout).
    pub async fn sync(&self) -> Result<()> {
        self.shared.reentered("sync")?;
        loop {
            if let Some(conn) = self.shared.current_conn() {
                return self.round_trip(conn).await;
            }
            // Reconnection retries every 20 ms to 1 s; this waits in small steps.
            tokio::time::sleep(MIN_BACKOFF / 4).await;
        }
    }

    /// A `PING` on the invalidation connection: the messages before its
    /// answer have been handled when it returns (the connection's reader
    /// hands each push to the handler as it parses it, in order).
    async fn round_trip(&self, mut conn: MultiplexedConnection) -> Result<()> {
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.response_timeout, ping.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                Err(crate::stores::redis::backend("the invalidation connection failed a round trip".into(), e))
            }
            Err(_) => Err(CacheError::backend(
                ErrorKind::BackendTimeout,
                format!("the invalidation connection did not answer within {:?}", self.response_timeout),
                None,
            )),
        }
    }

    /// Runs a write through to Redis: `scope` is taken out of memory before
    /// the write and again when it ends, however it ends (returned, failed,
    /// dropped); and if `changed` says Redis may have changed something (so
    /// it sends an invalidation back), waits for that invalidation
    /// ([`caught_up`](Self::caught_up)) before returning.
    async fn write_through<T>(
        &self,
        scope: Scope<'_>,
        write: impl Future<Output = Result<T>>,
        changed: impl FnOnce(&Result<T>) -> bool,
    ) -> Result<T> {
        let _forget = Forget::new(&self.shared, scope);
        let done = write.await;
        if changed(&done) {
            self.caught_up().await;
        }
        done
    }

    /// After a write: waits (at most the response timeout) until this
    /// instance has handled the invalidation Redis sent it for the write.
    /// Nothing to wait for while the connection is down: memory does not
    /// serve then, and is emptied before it serves again.
    async fn caught_up(&self) {
        if let Some(conn) = self.shared.current_conn() {
            // A connection that fails here is the heartbeat's to notice.
            let _ = self.round_trip(conn).await;
        }
    }

    /// Whether the memory tier holds a live entry for `key` (false for an
    /// invalid key). Counts nothing.
    pub fn in_memory(&self, key: &str) -> bool {
        self.shared.memory.contains(key).into_inner().unwrap_or(false)
    }

    /// How many live entries the memory tier holds.
    ///
    /// # Panics
    /// When called from a value's `Clone` or `Drop` run under the memory
    /// tier's lock (it would deadlock; see [`MemoryStore`](crate::MemoryStore)'s `len`).
    pub fn memory_len(&self) -> usize {
        self.shared.memory.len()
    }

    /// The memory tier's own counters: its `sets` are fills, its `deletes`
    /// include invalidations.
    ///
    /// # Panics
    /// As [`memory_len`](Self::memory_len).
    pub fn memory_stats(&self) -> CacheStats {
        self.shared.memory.stats()
    }

    /// Reads Redis's remaining TTL of `key` in ms (-1: none, -2: no key), or
    /// `None` if the connection does not answer in time.
    async fn pttl(&self, mut conn: MultiplexedConnection, key: Key<'_>) -> Option<i64> {
        let full = [&*self.shared.prefix, key.as_bytes()].concat();
        let mut cmd = redis::cmd("PTTL");
        let asked = cmd.arg(full).query_async::<i64>(&mut conn);
        tokio::time::timeout(self.response_timeout, asked).await.ok()?.ok()
    }

    /// Fills memory with a value Redis gave, for the rest of its Redis TTL
    /// as measured from `asked` (before the `PTTL` was sent).
    fn fill(&self, key: Key<'_>, ticket: Ticket, value: V, pttl: Option<i64>, asked: Instant) {
        let ttl = match pttl {
            Some(-1) => None,
            Some(ms) if ms > 0 => match Duration::from_millis(ms.unsigned_abs()).checked_sub(asked.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return,
            },
            // No key any more, or no answer: nothing to bound the entry by.
            _ => return,
        };
        let ttl = match (ttl, self.shared.memory.policy().default_ttl()) {
            (Some(left), Some(cap)) => Some(left.min(cap)),
            (left, cap) => left.or(cap),
        };
        self.shared.fill(&key, ticket, value, ttl);
    }

    async fn get_uncounted(&self, key: Key<'_>) -> Result<Option<V>> {
        if self.shared.up.load(Ordering::Acquire)
            && let Some(value) = self.shared.memory.get(&key).into_inner()?
        {
            SharedCounters::add(&self.own.hits, 1);
            return Ok(Some(value));
        }
        SharedCounters::add(&self.own.misses, 1);
        let Some((ticket, conn)) = self.shared.ticket(&key) else {
            return self.redis.get_checked(key).await;
        };
        let asked = Instant::now();
        let (value, pttl) = tokio::join!(self.redis.get_checked(key), self.pttl(conn, key));
        let value = value?;
        if let Some(value) = &value {
            self.fill(key, ticket, value.clone(), pttl, asked);
        }
        Ok(value)
    }
}

impl<V> Drop for NearCache<V> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<V> std::fmt::Debug for NearCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache").field("redis", &self.redis).finish_non_exhaustive()
    }
}

/// Marks that a `get_or_set` loader ran here (this instance wrote the key),
/// and takes the key out of memory when the call ends, however it ends.
struct Loaded<'a, V: Clone + Send + Sync + 'static> {
    shared: &'a Shared<V>,
    key: &'a str,
    ran: AtomicBool,
}

impl<V: Clone + Send + Sync + 'static> Drop for Loaded<'_, V> {
    fn drop(&mut self) {
        if self.ran.load(Ordering::Acquire) {
            self.shared.forget(&Scope::Key(self.key));
        }
    }
}

impl<V> CacheStore<V> for NearCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn get(&self, key: &str) -> Result<Option<V>> {
        self.shared.reentered("get")?;
        let key = Key::new(key)?;
        let started = self.own.sample_next_get().then(Instant::now);
        let found = self.get_uncounted(key).await;
        if let (Some(started), Ok(_)) = (started, &found) {
            self.own.record_latency(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        found
    }

    async fn set(&self, key: &str, value: V, options: SetOptions) -> Result<()> {
        self.shared.reentered("set")?;
        let key = Key::new(key)?;
        // Checked and encoded before the write-through takes the key out of memory.
        let encoded = self.redis.encode_set(&value, &options)?;
        // The value is dropped where it was before: once the write began.
        let write = async move {
            drop(value);
            self.redis.set_encoded(key, encoded).await
        };
        self.write_through(Scope::Key(&key), write, |_| true).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.shared.reentered("delete")?;
        let key = Key::new(key)?;
        // Nothing deleted, nothing for Redis to invalidate: no wait.
        self.write_through(Scope::Key(&key), self.redis.delete_checked(key), |done| !matches!(done, Ok(false))).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>> {
        self.get_many_through(keys).await
    }

    async fn set_many(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Result<()> {
        self.set_many_through(entries, options).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<usize> {
        self.delete_many_through(keys).await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.shared.reentered("contains")?;
        let key = Key::new(key)?;
        if self.shared.up.load(Ordering::Acquire) && self.shared.memory.contains(&key).into_inner()? {
            return Ok(true);
        }
        self.redis.contains_checked(key).await
    }

    async fn get_metadata(&self, key: &str) -> Result<Option<Metadata>> {
        self.redis.get_metadata(key).await
    }

    async fn update_metadata(&self, key: &str, metadata: Metadata) -> Result<bool> {
        self.shared.reentered("update_metadata")?;
        let key = Key::new(key)?;
        // Refused before the write-through takes the key out of memory.
        check_metadata(&metadata)?;
        let update = self.redis.update_metadata_checked(key, metadata);
        self.write_through(Scope::Key(&key), update, |done| !matches!(done, Ok(false))).await
    }

    async fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.shared.reentered("invalidate")?;
        let checked = Pattern::new(pattern)?;
        let invalidate = self.redis.invalidate_checked(&checked);
        self.write_through(Scope::Pattern(pattern), invalidate, |done| !matches!(done, Ok(0))).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<usize> {
        self.shared.reentered("invalidate_tags")?;
        crate::tags::check_invalidate_tags(tags)?;
        // Which keys go is known only to Redis: each one it unlinks comes back
        // as an invalidation, in every process (this one too) tracking the
        // prefix, which takes it out of memory. The write waits for them, and
        // refuses every fill that read Redis before it ended.
        let invalidate = self.redis.invalidate_tags_checked(tags);
        self.write_through(Scope::Unnamed, invalidate, |_| true).await
    }

    async fn get_tags(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.redis.get_tags(key).await
    }

    async fn keys(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        self.redis.keys(pattern).await
    }

    async fn size(&self) -> Result<usize> {
        self.redis.size().await
    }

    async fn clear(&self) -> Result<()> {
        self.shared.reentered("clear")?;
        self.write_through(Scope::All, self.redis.clear(), |_| true).await
    }

    async fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        E: Into<DynError> + 'static,
    {
        // Freshness lives in Redis (the entry records when it stops being
        // fresh, by Redis's clock), and the memory tier does not know it: so
        // this asks Redis every time (one round trip, as `RedisStore` does),
        // and one refresh runs per key across every process. What it stores
        // reaches the memory tiers of every near cache as any write does.
        self.shared.reentered("get_or_refresh")?;
        let key = Key::new(key)?;
        let loaded = Arc::new(AtomicBool::new(false));
        let ran = Arc::clone(&loaded);
        let loader = move || {
            ran.store(true, Ordering::Release);
            loader.load()
        };
        let value = self.redis.get_or_refresh(key.as_str(), loader, options).await;
        // A value this call loaded and wrote: wait for Redis's invalidation
        // of it, as a write does, so the next `get` here is not served an
        // older copy from memory.
        if loaded.load(Ordering::Acquire) {
            self.caught_up().await;
        }
        value
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.shared.reentered("get_or_set")?;
        let key = Key::new(key)?;
        check_set_options(&options, None)?;
        if self.shared.up.load(Ordering::Acquire)
            && let Some(value) = self.shared.memory.get(&key).into_inner()?
        {
            SharedCounters::add(&self.own.hits, 1);
            return Ok(value);
        }
        let ticket = self.shared.ticket(&key);
        let loaded = Loaded { shared: &self.shared, key: key.as_str(), ran: AtomicBool::new(false) };
        let ran = &loaded.ran;
        let loader = move || {
            ran.store(true, Ordering::Release);
            loader()
        };
        let value = self.redis.get_or_load(key, loader, options).await;
        if loaded.ran.load(Ordering::Acquire) {
            self.caught_up().await;
        }
        let value = value?;
        // A value this instance loaded and wrote is not filled: Redis reports
        // the write back, and `loaded` takes the key out of memory as it goes.
        if !loaded.ran.load(Ordering::Acquire)
            && let Some((ticket, conn)) = ticket
        {
            let asked = Instant::now();
            let pttl = self.pttl(conn, key).await;
            self.fill(key, ticket, value.clone(), pttl, asked);
        }
        Ok(value)
    }

    fn stats(&self) -> CacheStats {
        let mut stats = self.redis.stats();
        let own = self.own.snapshot();
        stats.hits += own.hits;
        let gets = stats.hits + stats.misses;
        stats.hit_ratio = if gets == 0 { 0.0 } else { stats.hits as f64 / gets as f64 };
        stats.avg_get_latency = own.avg_get_latency;
        stats
    }

    fn reset_stats(&self) {
        self.redis.reset_stats();
        self.own.reset();
    }
}
