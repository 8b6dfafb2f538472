//! Stale-while-revalidate for [`RedisStore`]: `get_or_refresh`, with one
//! refresh per key across every process sharing the prefix. The design is
//! documented under "Stale-while-revalidate" on [`RedisStore`].
//!
//! Freshness lives in the entry: an entry stored by `get_or_refresh` starts
//! `{"f":<fresh until>,` in ms of Redis's clock, so every process judges it
//! by the same clock. The read is `GET`, `TIME` and `GET` of the refresh lock
//! in one pipelined round trip (under LRU, a script that also marks the entry
//! used). A stale entry is returned at once; a background task tries for the
//! refresh lock with a script that checks again, atomically, and the one
//! refresh across all processes runs on the options' runtime, storing its
//! value only if the lock is still its own and the entry still has the bytes
//! it saw.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{ScriptCall, flag};
use super::failure::{Cause, Failure, backend};
use super::load::{Condition, Held, Lock, StoreAs, Unlock};
use super::scripts::UNLOCK;
use super::{RedisStore, ttl_millis};
use crate::errors::{CacheError, DynError, ErrorKind, Result};
use crate::key::{Key, KeyBuf};
use crate::metrics::SharedCounters;
use crate::refresh::{RefreshLoader, RefreshOptions, within};
use crate::remote::{backoff_over, format};
use crate::singleflight::loader_error;

/// What the read of `get_or_refresh` found.
enum Found {
    Miss,
    /// Fresh, or stale while another caller refreshes or the backoff runs.
    Serve {
        stored: Vec<u8>,
        stale: bool,
    },
    /// Stale, and this caller holds the refresh lock.
    Refresh {
        stored: Vec<u8>,
        failures: u32,
        sha: String,
    },
    /// Stale, and no refresh seemed to run or back off: served as it is,
    /// while the refresh lock is tried for in the background.
    Attempt {
        stored: Vec<u8>,
    },
}

/// How a background refresh begins: with the lock the read took, or by
/// trying for it (holding this instance's claim on the key meanwhile).
enum Start<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    Locked { token: String, failures: u32, sha: Seen },
    Try(Claim<V>),
}

/// The entry a refresh started on: the SHA1 of its bytes (the condition of
/// its write) and, for a store with a removal listener, the bytes
/// themselves: a refresh that writes replaced exactly them, and reports so.
struct Seen {
    sha: String,
    old: Option<Vec<u8>>,
}

/// This instance's one attempt at a key's refresh; released when dropped.
struct Claim<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    store: Arc<RedisStore<V>>,
    key: Box<str>,
}

impl<V> Drop for Claim<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn drop(&mut self) {
        let mut refreshing = self.store.refreshing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refreshing.remove(&self.key);
    }
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Read-through with stale-while-revalidate, as
    /// [`MemoryStore::get_or_refresh`](crate::MemoryStore::get_or_refresh)
    /// but across processes: the fresh value under `key`; within the grace
    /// period after it went stale, the stale value at once while one refresh
    /// runs in the background on the options' [`Runtime`](crate::Runtime)
    /// (one per key across every process sharing the prefix); on a miss, the
    /// value `loader` produces, loaded once for all concurrent callers of all
    /// processes as in [`try_get_or_set`](crate::CacheStore::try_get_or_set).
    ///
    /// - Freshness is judged by Redis's clock: the entry records when it
    ///   stops being fresh, so processes whose clocks disagree still agree.
    /// - A failed or timed-out refresh keeps the stale value until the grace
    ///   period ends (stale-if-error); no process starts the next refresh
    ///   before the backoff of [`RefreshOptions::retry_after`] has passed,
    ///   doubling with each failure in a row.
    /// - A refresh or load stores its value only if nothing wrote, deleted,
    ///   invalidated or cleared the key since it began, and only while it
    ///   still holds its lock (a refresh that outlived the lease stores
    ///   nothing).
    /// - Entries stored by other calls (`set`, `get_or_set`) count as fresh
    ///   until they expire.
    /// - Stats count `stale_hits`, and `refreshes` and `refresh_failures` of
    ///   the refreshes this instance ran.
    ///
    /// ```no_run
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{RefreshOptions, TokioRuntime, stores::RedisStore};
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = Arc::new(RedisStore::<u64>::builder("redis://localhost:6379").prefix("prices:").build().await?);
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600));
    /// let price = store.get_or_refresh("42", || async { Ok::<_, std::io::Error>(1999u64) }, &options).await?;
    /// # let _ = price; Ok(()) }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Key`] or `Policy` for bad input (before any loader
    /// runs), `Loader` when the loader of a miss fails, `Timeout` after the
    /// soft timeout of a miss (or the hard timeout of its loader), `Reentrant`
    /// when a loader asks for its own key, `Backend` when Redis fails,
    /// `Serialization` for a value that cannot be stored or read.
    pub async fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        E: Into<DynError>,
    {
        let loader = move || loader.load();
        // The metadata too: what `entry_options` would add is a TTL of fresh
        // period + grace, above zero. No copy of the metadata per call.
        let key = options.check_call(key)?;
        let how = StoreAs {
            ttl: Some(ttl_millis(options.fresh_for.saturating_add(options.grace))),
            metadata: options.set.metadata.as_ref(),
            fresh_for: Some(ttl_millis(options.fresh_for)),
            idle: options.set.idle.or(self.default_idle).map(ttl_millis),
            tags: &options.set.tags,
        };
        let started = self.counters.sample_next_get().then(Instant::now);
        // Without LRU bookkeeping the read is plain commands (GET, TIME, GET
        // of the lock, pipelined): as cheap as a `get`. With it, one script
        // that also marks the entry used, and takes the lock when due.
        let mut guard = None;
        let found = if self.refresh_on_get {
            let held = guard.insert(Held::new(Unlock {
                lock: Lock::new(self.space.lock(key)),
                conn: self.conn.clone(),
                script: UNLOCK,
                timeout: self.round_trip_timeout,
            }));
            held.arm();
            // An error returns with the guard armed: the read may have taken
            // the refresh lock, so its drop releases it.
            // A script that timed out may still have taken the refresh lock:
            // then the guard stays armed and releases it when dropped.
            let mut may_hold = false;
            let found = match self.read_fresh(key, held.lock(), true).await {
                // On a cluster whose slot is migrating Redis refuses the
                // script (its keys are split between two masters): the plain
                // read follows the migration, without marking the entry used.
                Err(failure) if self.conn.may_be_migrating(&failure) => {
                    may_hold = failure.cause != Cause::Redirect;
                    self.read_plain(key).await?
                }
                other => other?,
            };
            if !matches!(found, Found::Refresh { .. }) && !may_hold {
                held.disarm();
            }
            found
        } else {
            self.read_plain(key).await?
        };
        if let Some(started) = started {
            self.counters.record_latency(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        let (stored, start) = match found {
            Found::Miss => {
                SharedCounters::add(&self.counters.misses, 1);
                return self.load_missing(key, loader, options, how).await;
            }
            Found::Serve { stored, stale } => {
                SharedCounters::add(&self.counters.stale_hits, u64::from(stale));
                (stored, None)
            }
            Found::Refresh { stored, failures, sha } => {
                SharedCounters::add(&self.counters.stale_hits, 1);
                let Some(held) = &mut guard else { unreachable!("only the script takes the lock") };
                let token = held.lock().token.clone();
                // The refresh owns the lock from here (see below).
                let sha = Seen { sha, old: self.listening().then(|| stored.clone()) };
                (stored, Some(Start::Locked { token, failures, sha }))
            }
            Found::Attempt { stored } => {
                SharedCounters::add(&self.counters.stale_hits, 1);
                (stored, self.claim(key).map(Start::Try))
            }
        };
        SharedCounters::add(&self.counters.hits, 1);
        let value = match format::decode_value(&key, &stored) {
            Ok(value) => value,
            Err(e) => {
                if let Some(held) = guard {
                    held.release().await;
                }
                return Err(e);
            }
        };
        // The refresh owns a lock this read took; a guard still armed (a
        // script that timed out may have taken it) releases it when dropped.
        if let (Some(held), Some(Start::Locked { .. })) = (&mut guard, &start) {
            held.disarm();
        }
        if let Some(start) = start {
            let (store, key, owned) = (Arc::clone(self), KeyBuf::from(key), options.clone());
            // An async block here, not a generic async fn, so that only what
            // it holds (not the loader's error type) must be 'static.
            let refresh = async move {
                let (token, failures, sha, _claim) = match start {
                    Start::Locked { token, failures, sha } => (token, failures, sha, None),
                    Start::Try(claim) => match store.try_refresh_lock(key.key()).await {
                        Some((token, failures, sha)) => (token, failures, sha, Some(claim)),
                        None => return,
                    },
                };
                SharedCounters::add(&store.counters.refreshes, 1);
                let task = RefreshTask { store, key, token, failures, options: owned, done: false };
                let started = Instant::now();
                let runtime = Arc::clone(&task.options.runtime);
                let load = async { loader().await.map_err(loader_error) };
                let loaded = within(&*runtime, &task.key.key(), task.options.hard_timeout, load).await;
                task.finish(loaded, started, sha).await;
            };
            options.runtime.spawn(Box::pin(refresh));
        }
        Ok(value)
    }

    /// Claims this instance's one attempt at refreshing `key`, if no other
    /// call of this instance holds it.
    fn claim(self: &Arc<Self>, key: Key<'_>) -> Option<Claim<V>> {
        let mut refreshing = self.refreshing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refreshing.insert(key.as_str().into()).then(|| Claim { store: Arc::clone(self), key: key.as_str().into() })
    }

    /// Tries for the refresh lock of a stale `key` (the read script, which
    /// checks again, atomically): its token, the failures so far and the
    /// SHA1 of the entry's bytes if taken.
    async fn try_refresh_lock(&self, key: Key<'_>) -> Option<(String, u32, Seen)> {
        let mut guard = Held::new(Unlock {
            lock: Lock::new(self.space.lock(key)),
            conn: self.conn.clone(),
            script: UNLOCK,
            timeout: self.round_trip_timeout,
        });
        guard.arm();
        // A lost reply returns with the guard armed: its drop releases.
        let found = self.read_fresh(key, guard.lock(), false).await.ok()?;
        guard.disarm();
        match found {
            Found::Refresh { failures, sha, stored } => {
                let old = self.listening().then_some(stored);
                Some((guard.lock().token.clone(), failures, Seen { sha, old }))
            }
            _ => None,
        }
    }

    /// The plain read: `GET` of the entry, `TIME` and `GET` of the refresh
    /// lock, pipelined in one round trip. Not atomic, so it only decides
    /// whether to *try* for the lock; the script that takes it checks again.
    async fn read_plain(&self, key: Key<'_>) -> Result<Found> {
        let what = "get_or_refresh";
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("GET").arg(self.space.entry(key)).cmd("TIME").cmd("GET").arg(self.space.lock(key));
        let mut conn = self.conn.clone();
        let replies: Vec<redis::Value> = match self.try_round_trip(what, pipe.query_async(&mut conn)).await {
            // On a cluster whose slot is migrating, a key already moved (or
            // absent, as the lock mostly is) draws ASK, which redis-rs follows
            // for a command but not inside a pipeline: send the three apart.
            Err(failure) if self.conn.redirected(&failure) => {
                let get = |name: Vec<u8>| {
                    let mut conn = self.conn.clone();
                    async move {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(name);
                        self.try_round_trip(what, cmd.query_async::<redis::Value>(&mut conn)).await
                    }
                };
                let time = async {
                    let mut conn = self.conn.clone();
                    self.round_trip(what, redis::cmd("TIME").query_async::<redis::Value>(&mut conn)).await
                };
                let (doc, time, lock) =
                    tokio::join!(get(self.space.entry(key).to_vec()), time, get(self.space.lock(key)));
                let doc = match doc {
                    Err(failure) if failure.cause == Cause::WrongType => return Ok(Found::Miss),
                    other => other?,
                };
                vec![doc, time?, lock?]
            }
            other => other?,
        };
        let unexpected = |reply: String| {
            CacheError::backend(
                ErrorKind::Command,
                format!("{what} on Redis at {}: unexpected reply {reply}", self.addr),
                None,
            )
        };
        let [doc, time, lock] = <[redis::Value; 3]>::try_from(replies).map_err(|r| unexpected(format!("{r:?}")))?;
        let stored = match doc {
            redis::Value::BulkString(stored) => stored,
            redis::Value::Nil => return Ok(Found::Miss),
            // A load's placeholder.
            redis::Value::ServerError(e) if e.code() == "WRONGTYPE" => return Ok(Found::Miss),
            // Refused (busy, loading, ...): classified as the error of a command.
            redis::Value::ServerError(e) => {
                return Err(backend(format!("{what} on Redis at {} failed", self.addr), e.into()));
            }
            other => return Err(unexpected(format!("{other:?}"))),
        };
        // A read: an entry with an idle time is touched (a second round trip).
        if let Some(head) = format::idle_header(&stored) {
            self.touch(key, head).await?;
        }
        let Some(fresh_until) = format::fresh_until(&stored) else {
            return Ok(Found::Serve { stored, stale: false });
        };
        let (secs, micros): (u64, u64) = redis::from_redis_value(time).map_err(|e| unexpected(format!("TIME: {e}")))?;
        let now = secs.saturating_mul(1000).saturating_add(micros / 1000);
        if now < fresh_until {
            return Ok(Found::Serve { stored, stale: false });
        }
        let free = match lock {
            redis::Value::Nil => true,
            redis::Value::BulkString(held) => backoff_over(&held, now),
            _ => false,
        };
        Ok(if free { Found::Attempt { stored } } else { Found::Serve { stored, stale: true } })
    }

    /// A miss: loaded once across processes (under the key's placeholder),
    /// as `get_or_set` does, within the options' timeouts.
    async fn load_missing<F, Fut, E>(
        &self,
        key: Key<'_>,
        loader: F,
        options: &RefreshOptions,
        how: StoreAs<'_>,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let runtime = &*options.runtime;
        let load = || within(runtime, &key, options.hard_timeout, async { loader().await.map_err(loader_error) });
        let follow = |stored: Arc<[u8]>| format::decode_value(&key, &stored);
        // The read above was this call's counted get.
        let read = self.flights.read_through(
            &key,
            || std::future::ready(Ok(None)),
            follow,
            || self.load_shared(key, load, how),
        );
        within(runtime, &key, options.soft_timeout, read).await
    }

    /// The read script: the entry, how fresh, and the refresh lock if this
    /// caller is to refresh.
    async fn read_fresh(&self, key: Key<'_>, lock: &Lock, mark_used: bool) -> std::result::Result<Found, Failure> {
        let what = "get_or_refresh";
        let names =
            [self.space.entry(key).into(), lock.key.as_slice().into(), (&self.space.bucket(key).recency).into()];
        let mut call = ScriptCall::new(&self.scripts.read_fresh, &names, &[]);
        call.arg(&lock.token).arg(ttl_millis(self.lock_lease)).arg(flag(mark_used && self.refresh_on_get));
        let mut conn = self.conn.clone();
        let reply: redis::Value = self.try_round_trip(what, call.invoke(&mut conn)).await?;
        let unexpected = |reply: &redis::Value| Failure::from(self.unexpected(what, reply));
        let redis::Value::Array(items) = reply else {
            return if matches!(reply, redis::Value::Nil) { Ok(Found::Miss) } else { Err(unexpected(&reply)) };
        };
        match items.as_slice() {
            [redis::Value::BulkString(stored), redis::Value::Int(state @ (0 | 1))] => {
                Ok(Found::Serve { stored: stored.clone(), stale: *state == 1 })
            }
            [
                redis::Value::BulkString(stored),
                redis::Value::Int(2),
                redis::Value::Int(failures),
                redis::Value::BulkString(sha),
            ] => Ok(Found::Refresh {
                stored: stored.clone(),
                failures: u32::try_from(*failures).unwrap_or(u32::MAX),
                sha: String::from_utf8_lossy(sha).into_owned(),
            }),
            _ => Err(unexpected(&redis::Value::Array(items.clone()))),
        }
    }
}

/// A background refresh in flight, holding the key's refresh lock. Dropped
/// unfinished (the runtime dropped the task, or the loader panicked), it
/// counts as failed and backs off like a failure, so a loader that panics
/// is not retried on every stale read.
struct RefreshTask<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    store: Arc<RedisStore<V>>,
    key: KeyBuf,
    token: String,
    /// Failed refreshes in a row before this one.
    failures: u32,
    options: RefreshOptions,
    done: bool,
}

impl<V> RefreshTask<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Stores what the refresh loaded, if it still may, or backs off.
    async fn finish(mut self, loaded: Result<V>, started: Instant, seen: Seen) {
        let store = Arc::clone(&self.store);
        store.counters.record_load(loaded.is_ok(), u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let entry_options = self.options.entry_options();
        let stored = loaded
            .and_then(|value| format::encode_tagged(&value, entry_options.metadata.as_ref(), &entry_options.tags));
        self.done = true;
        match stored {
            Ok(stored) => {
                let how = StoreAs {
                    ttl: entry_options.ttl.map(ttl_millis),
                    metadata: entry_options.metadata.as_ref(),
                    fresh_for: Some(ttl_millis(self.options.fresh_for)),
                    idle: entry_options.idle.or(store.default_idle).map(ttl_millis),
                    tags: &entry_options.tags,
                };
                let condition = Condition::Refresh { token: &self.token, sha: &seen.sha };
                // Refused, the script released the lock; failed, the lease ends it.
                let written = store.store_loaded(self.key.key(), condition, &stored, how).await;
                if matches!(written, Ok(true)) {
                    store.report_replaced(&self.key.key(), seen.old);
                }
                if matches!(written, Ok(true)) && !how.tags.is_empty() {
                    // Listed once written; a failure takes the entry out again (best effort).
                    let _ = store.register_written("get_or_refresh", self.key.key(), how.tags, how.ttl).await;
                }
            }
            Err(_) => self.failed().await,
        }
    }

    /// Counts the failure and turns the lock into the backoff marker.
    async fn failed(&self) {
        let store = &self.store;
        SharedCounters::add(&store.counters.refresh_failures, 1);
        let failures = self.failures.saturating_add(1);
        let backoff = ttl_millis(self.options.backoff(failures));
        let key = self.key.key();
        let lock = store.space.lock(key);
        let mut call = ScriptCall::new(
            &store.scripts.refresh_failed,
            &[lock.as_slice().into(), store.space.entry(key).into()],
            &[],
        );
        call.arg(&self.token).arg(failures).arg(backoff);
        let mut conn = store.conn.clone();
        // Best effort: if Redis does not answer, the lease ends the lock.
        let _ = tokio::time::timeout(store.round_trip_timeout, call.invoke::<i64>(&mut conn)).await;
    }
}

impl<V> Drop for RefreshTask<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let unfinished = RefreshTask {
            store: Arc::clone(&self.store),
            key: self.key.clone(),
            token: std::mem::take(&mut self.token),
            failures: self.failures,
            options: self.options.clone(),
            done: true,
        };
        runtime.spawn(async move { unfinished.failed().await });
    }
}
