//! [`NearCache`]: a [`MemoryStore`] in front of a [`RedisStore`], kept
//! coherent across every process by Redis's own client-side caching
//! (RESP3 `CLIENT TRACKING ... BCAST PREFIX`). Native only, feature `redis`.
//!
//! This module owns the memory tier's coherence: when a value may enter
//! memory, and everything that takes it out again. It never talks to Redis
//! about entries except through the [`RedisStore`] (plus a `PTTL` to bound a
//! fill's life), and it never serves from memory while the invalidation
//! connection is down.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::redis::{backend, single_client};
use super::{MemoryStore, RedisStore, RedisStoreBuilder};
use crate::errors::{CacheError, Result};
use crate::metrics::{CacheStats, SharedCounters};
use crate::pattern::Pattern;
use crate::policies::S3FifoPolicy;
use crate::store::{CacheStore, Metadata, SetOptions, check_key, check_set_options};

/// Per-key invalidation counters: a fill is refused when the counter of its
/// key's stripe moved while it read Redis. More stripes, fewer fills refused
/// because of another key's write.
const STRIPES: usize = 4096;

/// The first wait between reconnection attempts; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A [`MemoryStore`] in front of a [`RedisStore`]: reads are served from this
/// process's memory when they can, and a write anywhere removes the key from
/// every instance's memory within milliseconds. Same [`CacheStore`] trait as
/// the other stores.
///
/// ```no_run
/// use pepperpy_caching::{CacheStore, LruPolicy, S3FifoPolicy, SetOptions, stores::{MemoryStore, NearCache}};
/// use std::time::Duration;
///
/// # #[tokio::main]
/// # async fn main() -> pepperpy_caching::Result<()> {
/// let redis_policy = LruPolicy::new(1_000_000)?;
/// let cache: NearCache<String> = NearCache::builder("redis://localhost:6379/0")
///     .prefix("myapp:")
///     .memory(MemoryStore::new(S3FifoPolicy::new(10_000)?))   // the memory tier
///     .redis(move |redis| redis.policy(redis_policy))          // any RedisStoreBuilder option
///     .build()
///     .await?;
/// // `build` returns with tracking on; `set` returns once this instance has
/// // also handled the invalidation Redis sends back for it.
/// cache.set("user:1", "Ada".to_string(), SetOptions::new().ttl(Duration::from_secs(60))).await?;
/// assert_eq!(cache.get("user:1").await?.as_deref(), Some("Ada")); // from Redis, now in memory
/// assert_eq!(cache.get("user:1").await?.as_deref(), Some("Ada")); // from memory
/// assert!(cache.in_memory("user:1")); // unless something wrote it meanwhile (see "When memory is trusted")
/// # Ok(()) }
/// ```
///
/// # Reads and writes
///
/// - `get` and `get_or_set` try memory first; a miss reads Redis (through the
///   `RedisStore`, so its policy and counters apply) and fills memory with
///   what it found. `contains` answers from memory when it can.
/// - `set`, `delete`, `update_metadata`, `invalidate` and `clear` go to Redis
///   and take the key(s) out of this instance's memory before and after
///   (even when the call fails or is dropped mid-way). A write does not put
///   its value in memory: Redis reports every write back to every instance,
///   this one included, so it would be removed again at once; the next read
///   fills it.
/// - `get_metadata`, `keys` and `size` read Redis: memory holds values only.
/// - Memory hits do not reach Redis, so under [`LruPolicy`](crate::LruPolicy)
///   Redis's recency sees only the reads that missed every memory tier.
///
/// # How instances learn about writes: Redis client-side caching
///
/// Each instance holds one extra RESP3 connection on which it runs
/// `CLIENT TRACKING ON BCAST PREFIX <prefix>`. From then on Redis itself
/// pushes an `invalidate` message naming every key under the prefix that
/// anything changes, and a flush message for `FLUSHDB`/`FLUSHALL`; the
/// instance removes those keys from memory as the messages arrive (in the
/// connection's reader task, no channel in between).
///
/// Chosen over pub/sub on a channel per prefix because Redis sends the
/// messages, not the writers:
///
/// - *every* change is reported: writes by plain `RedisStore`s or other
///   programs on the same prefix, entries a bounded store's scripts evict,
///   keys Redis expires or evicts under `maxmemory`, `FLUSHDB`. With pub/sub
///   each of those would need a publish we do not control (the eviction
///   happens inside a Lua script of `RedisStore`).
/// - a message cannot be lost between a write and its publish (a process
///   dying in between), since there is no second step.
/// - `invalidate` and `clear` need no pattern message: the keys they delete
///   are reported one by one, as they are deleted.
///
/// The cost is Redis 6 or later (the `RedisStore` already needs 6.2) and one
/// connection per instance; Redis does a prefix lookup per write.
///
/// # When memory is trusted
///
/// A fill must not put back a value that a write has already replaced. Before
/// reading Redis, a miss notes a counter for its key (one of 4096 stripes)
/// and a global epoch; every invalidation of the key moves the counter, and
/// every `invalidate`, `clear`, flush and connection change moves the epoch.
/// The fill is stored only if neither moved, checked and stored under the
/// same lock the invalidations take, so a value is never in memory after an
/// invalidation of it has been handled. Any write after Redis answered the
/// read produces a message that arrives after the read began, so it either
/// stops the fill or removes what the fill stored. A local write moves the
/// counter before and after it runs, and before returning it waits (one
/// `PING` on the invalidation connection, see [`sync`](NearCache::sync))
/// until the invalidation Redis sends back for the write has been handled:
/// once `set` returns, this instance never serves an older value, and the
/// next read's fill is not undone by that message still in flight.
///
/// Between a write by another instance and its message, that instance's
/// memory may still serve the old value: the near cache is coherent within
/// milliseconds, not linearizable. What was measured, on loopback with 2
/// shared cores: `bench/near` (two instances in one process, 2,000 writes,
/// from the start of A's `set` to the key gone from B's memory) gave p50
/// 93 µs, p99 1.35 ms, max 8 ms at load average 10.4 (earlier runs: p99
/// 0.2-5 ms at load 1.6-6.5, one outlier of 214 ms); from another process
/// under load average 5-8, p50 0.2-5.9 ms and worst 22-32 ms were seen.
/// A busy host or a slow network adds its own delays; what bounds them is
/// the heartbeat: its check travels on the same connection, behind every
/// message sent before it, and one that does not answer within a heartbeat
/// empties memory. So, while the process runs, a value another instance
/// replaced is served for at most about two heartbeats (2 s by default).
///
/// # What Redis does not report
///
/// Redis sends tracking clients nothing for `SWAPDB` (in any tracking mode:
/// checked on Redis 7.0), which replaces every key of the database at once.
/// Each instance therefore keeps three marker keys in its database
/// (`prefix + "\xffnear:" + a random token + ":" + i`, one hour TTL,
/// written again every half hour; no entry can have those names and no
/// `keys`, `size`, `invalidate` or `clear` sees them), and each heartbeat
/// checks them. When all are gone (`SWAPDB`, `FLUSHDB`, `FLUSHALL`),
/// memory is emptied and the markers written again; when only some are
/// (evicted under `maxmemory`), they are written again and memory is kept.
/// So after a `SWAPDB`,
/// memory serves values of the database swapped out for at most one
/// heartbeat plus that check's round trip: about two heartbeats, 2 s by
/// default. A `SWAPDB` undone by another before a heartbeat looks is not
/// seen: values read from the other database in between stay in memory.
/// The markers are small writes: where Redis refuses writes
/// (`maxmemory` reached under `noeviction`, a read-only replica), `build`
/// fails with [`CacheError::Backend`], and a running cache that cannot
/// write them again stops serving from memory until it can.
///
/// # When the invalidation connection drops
///
/// While it is down, messages may be lost, so memory is not used at all:
/// reads go to Redis and nothing is filled. The moment the drop is noticed
/// (the socket closes: server killed, `CLIENT KILL`, network reset) memory is
/// emptied. A connection that goes silent without closing is noticed by a
/// check every [`heartbeat`](NearCacheBuilder::heartbeat) (default 1 s)
/// that must answer within the same period, so the memory tier may serve
/// values missing an invalidation for at most about two heartbeats in that
/// case. The instance reconnects on its own (backoff from 20 ms to 1 s),
/// turns tracking on again, empties memory once more, and only then serves
/// from it.
///
/// # TTL
///
/// A fill asks Redis for the key's remaining TTL (`PTTL`, sent together with
/// the read) and gives the memory entry what is left of it, measured from
/// before the request was sent, so a memory entry always expires before its
/// Redis key. The memory policy's default TTL, if it has one, caps that (and
/// applies to entries without a TTL in Redis): use it to bound how long a
/// value may stay in memory whatever happens.
///
/// # Values that call back
///
/// The memory tier clones values under its shard lock and may drop the ones
/// it replaces or removes under this cache's own lock. A value whose `Clone`
/// or `Drop` calls this cache from there gets
/// [`CacheError::ReentrantValue`] instead of a deadlock (see
/// [`MemoryStore`]).
///
/// # Counters
///
/// [`stats`](CacheStore::stats) are the `RedisStore`'s counters (sets,
/// deletes, evictions, loads, misses...) with the memory hits added to
/// `hits`, and `avg_get_latency` measured over every `get` of this instance.
/// [`memory_stats`](NearCache::memory_stats) are the memory tier's own.
pub struct NearCache<V> {
    shared: Arc<Shared<V>>,
    redis: RedisStore<V>,
    /// `hits`: gets answered from memory; `misses`: gets passed to Redis (for
    /// latency sampling only; Redis counts the real misses).
    own: SharedCounters,
    /// How long the `PTTL` of a fill may take.
    response_timeout: Duration,
    /// The invalidation connection's task, stopped when the cache is dropped.
    task: tokio::task::AbortHandle,
}

/// How to build a [`NearCache`]: made by [`NearCache::builder`].
#[must_use]
pub struct NearCacheBuilder<V> {
    url: String,
    prefix: String,
    memory: Option<MemoryStore<V>>,
    #[allow(clippy::type_complexity)]
    redis: Option<Box<dyn FnOnce(RedisStoreBuilder<V>) -> RedisStoreBuilder<V> + Send>>,
    root_certificates: Option<Vec<u8>>,
    connect_timeout: Duration,
    response_timeout: Duration,
    heartbeat: Duration,
}

/// What the connection task and the push handler share with the cache.
struct Shared<V> {
    memory: MemoryStore<V>,
    prefix: Box<[u8]>,
    hasher: RandomState,
    /// Whether memory may serve: `state.epoch` is even. Read without the lock
    /// on every `get`.
    up: AtomicBool,
    state: Mutex<State>,
    /// Wakes the connection task when a connection is lost.
    lost: tokio::sync::Notify,
}

struct State {
    /// Moves on every global invalidation (by 2) and connection change (by 1):
    /// odd while the invalidation connection is down.
    epoch: u64,
    /// Moves when a key of the stripe is invalidated.
    stripes: Box<[u64]>,
    /// The connection whose messages keep memory coherent, while up.
    session: u64,
    /// The newest connection that reported its own loss (it may do so before
    /// it is made the current one).
    lost_session: u64,
    conn: Option<MultiplexedConnection>,
}

thread_local! {
    /// The `Shared` (its address) whose state lock this thread holds, 0 if
    /// none: the memory tier drops values under it.
    static HOLDING_STATE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The state lock's guard, marking the lock as held by this thread.
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    outer: usize,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        HOLDING_STATE.set(self.outer);
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// What a fill noted before reading Redis.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ticket {
    epoch: u64,
    stripe: usize,
    seen: u64,
}

/// What to take out of memory.
enum Scope<'a> {
    Key(&'a str),
    Pattern(&'a str),
    All,
}

impl<V: Clone + Send + Sync + 'static> Shared<V> {
    fn new(memory: MemoryStore<V>, prefix: &str) -> Self {
        Shared {
            memory,
            prefix: prefix.as_bytes().into(),
            hasher: RandomState::new(),
            up: AtomicBool::new(false),
            // Odd: down until the first connection is tracking.
            state: Mutex::new(State {
                epoch: 1,
                stripes: vec![0; STRIPES].into_boxed_slice(),
                session: 0,
                lost_session: 0,
                conn: None,
            }),
            lost: tokio::sync::Notify::new(),
        }
    }

    // Every section under this lock leaves the state consistent before it
    // calls into the memory store, so a poisoned lock is still usable.
    fn lock(&self) -> Locked<'_> {
        let me = self as *const Self as usize;
        let outer = HOLDING_STATE.get();
        // The public calls check `reentered` first; this is the last defence.
        assert!(
            outer != me,
            "a value's Drop called the NearCache that was dropping it under its lock: this would deadlock"
        );
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        HOLDING_STATE.set(me);
        Locked { guard, outer }
    }

    /// Fails if this thread holds this cache's state lock: a value dropped
    /// under it (memory replaced or removed it) called the cache, which
    /// would wait on the lock for ever.
    fn reentered(&self, call: &'static str) -> Result<()> {
        if HOLDING_STATE.get() == self as *const Self as usize {
            return Err(CacheError::ReentrantValue { call });
        }
        Ok(())
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    /// What a read of Redis for `key` notes first, with the connection to ask
    /// the TTL on; `None` while down (the read then fills nothing).
    fn ticket(&self, key: &str) -> Option<(Ticket, MultiplexedConnection)> {
        let stripe = self.stripe(key);
        let state = self.lock();
        let conn = state.conn.clone().filter(|_| state.epoch.is_multiple_of(2))?;
        Some((Ticket { epoch: state.epoch, stripe, seen: state.stripes[stripe] }, conn))
    }

    /// Stores a value read from Redis, unless something invalidated it since
    /// `ticket` was taken. Checked and stored under the lock every
    /// invalidation takes, so an invalidation is handled either before (the
    /// fill is refused) or after (it removes the fill).
    fn fill(&self, key: &str, ticket: Ticket, value: V, ttl: Option<Duration>) -> bool {
        let state = self.lock();
        if state.epoch != ticket.epoch || state.stripes[ticket.stripe] != ticket.seen {
            return false;
        }
        let options = match ttl {
            Some(ttl) => SetOptions::new().ttl(ttl),
            None => SetOptions::new(),
        };
        let stored = self.memory.set(key, value, options).into_inner().is_ok();
        drop(state);
        stored
    }

    fn forget(&self, scope: &Scope<'_>) {
        let mut state = self.lock();
        match scope {
            Scope::Key(key) => {
                let stripe = self.stripe(key);
                state.stripes[stripe] += 1;
                let _ = self.memory.delete(key).into_inner();
            }
            Scope::Pattern(pattern) => {
                state.epoch += 2;
                let _ = self.memory.invalidate(pattern).into_inner();
            }
            Scope::All => {
                state.epoch += 2;
                let _ = self.memory.clear().into_inner();
            }
        }
    }

    /// Handles the Redis keys of an `invalidate` message, under one lock.
    fn forget_redis_keys(&self, keys: &[Value]) {
        let mut state = self.lock();
        for key in keys {
            let Value::BulkString(full) = key else { continue };
            // Index and lock keys (with a 0xFF byte) and other prefixes are
            // never in memory.
            let Some(key) = full.strip_prefix(&*self.prefix).and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            if check_key(key).is_err() {
                continue;
            }
            let stripe = self.stripe(key);
            state.stripes[stripe] += 1;
            let _ = self.memory.delete(key).into_inner();
        }
    }

    /// A message from Redis on the connection of `session`.
    fn on_push(&self, session: u64, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => self.forget_redis_keys(keys),
                // Nil: the database was flushed. Anything else is a message
                // we do not understand: forgetting everything is always safe.
                _ => self.forget(&Scope::All),
            },
            PushKind::Disconnection => self.down(session),
            _ => {}
        }
    }

    /// The connection of `session` is gone: stop serving from memory and
    /// empty it, then wake the connection task.
    fn down(&self, session: u64) {
        let mut state = self.lock();
        state.lost_session = state.lost_session.max(session);
        if state.session != session || !state.epoch.is_multiple_of(2) {
            return;
        }
        self.up.store(false, Ordering::Release);
        state.epoch += 1;
        state.conn = None;
        let _ = self.memory.clear().into_inner();
        drop(state);
        self.lost.notify_one();
    }

    /// The connection of `session` is tracking: empty memory (it may hold
    /// what a lost message should have removed) and serve from it again.
    /// False if that connection has already reported its loss.
    fn go_up(&self, session: u64, conn: MultiplexedConnection) -> bool {
        let mut state = self.lock();
        if state.lost_session >= session || state.epoch.is_multiple_of(2) {
            return false;
        }
        let _ = self.memory.clear().into_inner();
        state.epoch += 1;
        state.session = session;
        state.conn = Some(conn);
        self.up.store(true, Ordering::Release);
        true
    }

    /// The invalidation connection, while it is up.
    fn current_conn(&self) -> Option<MultiplexedConnection> {
        let state = self.lock();
        state.conn.clone().filter(|_| state.epoch.is_multiple_of(2))
    }

    fn is_up(&self, session: u64) -> bool {
        let state = self.lock();
        state.session == session && state.epoch.is_multiple_of(2)
    }
}

/// Takes a scope out of memory now and again when dropped: after the write
/// returned, failed, or was cancelled.
struct Forget<'a, V: Clone + Send + Sync + 'static> {
    shared: &'a Shared<V>,
    scope: Scope<'a>,
}

impl<'a, V: Clone + Send + Sync + 'static> Forget<'a, V> {
    fn new(shared: &'a Shared<V>, scope: Scope<'a>) -> Self {
        shared.forget(&scope);
        Forget { shared, scope }
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Forget<'_, V> {
    fn drop(&mut self) {
        self.shared.forget(&self.scope);
    }
}

/// How to open the invalidation connection.
struct Link {
    client: redis::Client,
    prefix: Vec<u8>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// This instance's marker keys in the database: see [`Link::check_database`].
    sentinels: Vec<Vec<u8>>,
}

/// How long the marker keys live; they are written again after half of it.
const SENTINEL_TTL: Duration = Duration::from_secs(3600);

/// How many marker keys an instance keeps. Under `maxmemory` with an
/// eviction policy Redis evicts a marker as readily as any entry (its LRU
/// clock ticks once a second, so the heartbeat's reads barely protect it):
/// with one marker, a probe (3 MB, `allkeys-lru`, ~6,000 writes/s, 100 ms
/// heartbeat) found it evicted, and emptied memory for nothing, at 5 of 30
/// heartbeats. Memory is emptied only when every
/// marker is gone (what `SWAPDB` and `FLUSHDB` do); a heartbeat that finds
/// some restores the others in the same script.
const SENTINELS: usize = 3;

/// Counts the markers present (`KEYS`); if any is, this is still the
/// database they were written in, and the missing ones are written again
/// (all of them when `ARGV[2]` is `1`: the renewal), with the TTL `ARGV[1]`.
/// A script, so that no `SWAPDB` can come between the count and the writes.
const CHECK_SENTINELS: &str = r"
local present = {}
local n = 0
for i, key in ipairs(KEYS) do
  present[i] = redis.call('EXISTS', key) == 1
  if present[i] then n = n + 1 end
end
if n > 0 then
  for i, key in ipairs(KEYS) do
    if ARGV[2] == '1' or not present[i] then redis.call('SET', key, 1, 'PX', ARGV[1]) end
  end
end
return n
";

/// This instance's marker key names: `prefix + "\xffnear:" + token + ":" + i`.
fn sentinel_names(prefix: &[u8], token: u64) -> Vec<Vec<u8>> {
    (0..SENTINELS).map(|i| [prefix, b"\xffnear:", format!("{token:016x}:{i}").as_bytes()].concat()).collect()
}

impl Link {
    /// A RESP3 connection with broadcast tracking on the prefix, whose
    /// messages go to `shared` tagged with `session`.
    async fn connect<V: Clone + Send + Sync + 'static>(
        &self,
        shared: Weak<Shared<V>>,
        session: u64,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let sender = move |info: PushInfo| {
            if let Some(shared) = shared.upgrade() {
                shared.on_push(session, info);
            }
            Ok::<(), std::convert::Infallible>(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Our own timers bound every round trip.
            .set_response_timeout(None)
            .set_push_sender(sender);
        let within = self.connect_timeout.saturating_add(self.response_timeout);
        let connect = async {
            let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("BCAST");
            if !self.prefix.is_empty() {
                tracking.arg("PREFIX").arg(&self.prefix);
            }
            tracking.query_async::<()>(&mut conn).await?;
            self.mark_database(&mut conn).await?;
            Ok(conn)
        };
        tokio::time::timeout(within, connect).await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((redis::ErrorKind::Io, "no answer within the connect and response timeouts")))
        })
    }
}

impl Link {
    /// Writes this instance's marker keys (`prefix + "\xffnear:" + a random
    /// token + ":" + i`, names no entry can have and no walk of the prefix
    /// lists), in one transaction.
    async fn mark_database(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let ttl = u64::try_from(SENTINEL_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for name in &self.sentinels {
            pipe.cmd("SET").arg(name).arg(1).arg("PX").arg(ttl).ignore();
        }
        pipe.query_async::<()>(conn).await
    }

    /// Whether the database this instance caches is still the one it marked.
    /// Redis reports `FLUSHDB` and `FLUSHALL` to tracking clients, but not
    /// `SWAPDB` (nor a database loaded on a replica without a flush): the
    /// keys then change with no message at all. The markers go with their
    /// database, so their absence is noticed at the next heartbeat; one
    /// still there proves the database is the same (they are written only
    /// in it), and the others, evicted, are written again. With `renew`,
    /// all get their full TTL again.
    async fn check_database(&self, conn: &mut MultiplexedConnection, renew: bool) -> redis::RedisResult<bool> {
        let ttl = u64::try_from(SENTINEL_TTL.as_millis()).unwrap_or(u64::MAX);
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CHECK_SENTINELS));
        let mut script = SCRIPT.prepare_invoke();
        for name in &self.sentinels {
            script.key(name);
        }
        script.arg(ttl).arg(if renew { "1" } else { "0" });
        script.invoke_async::<i64>(conn).await.map(|n| n > 0)
    }
}

/// Keeps the invalidation connection up: watches it (loss reported by the
/// push handler, or a heartbeat check unanswered) and reconnects. The
/// heartbeat also checks the database markers: if all are gone (`SWAPDB`,
/// `FLUSHDB`), memory is emptied and the markers written again.
async fn keep_tracking<V: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<V>>,
    link: Link,
    mut conn: MultiplexedConnection,
    mut session: u64,
    heartbeat: Duration,
) {
    // When the markers were last written (by `connect`, just before).
    let mut marked = Instant::now();
    loop {
        loop {
            tokio::select! {
                () = shared.lost.notified() => {
                    // A wake-up left by an older connection changes nothing.
                    if !shared.is_up(session) {
                        break;
                    }
                }
                () = tokio::time::sleep(heartbeat) => {
                    let renew = marked.elapsed() >= SENTINEL_TTL / 2;
                    let checked = tokio::time::timeout(heartbeat, link.check_database(&mut conn, renew)).await;
                    let same = match checked {
                        Ok(Ok(same)) => same,
                        _ => {
                            shared.down(session);
                            break;
                        }
                    };
                    if same && renew {
                        marked = Instant::now();
                    }
                    if !same {
                        // Everything in memory may belong to another database now.
                        shared.forget(&Scope::All);
                        let marking = tokio::time::timeout(heartbeat, link.mark_database(&mut conn)).await;
                        if !matches!(marking, Ok(Ok(()))) {
                            shared.down(session);
                            break;
                        }
                        marked = Instant::now();
                    }
                }
            }
        }
        drop(conn);
        let mut backoff = MIN_BACKOFF;
        conn = loop {
            session += 1;
            match link.connect(Arc::downgrade(&shared), session).await {
                Ok(conn) if shared.go_up(session, conn.clone()) => {
                    marked = Instant::now();
                    break conn;
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
    }
}

impl<V> NearCacheBuilder<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The prefix of the `RedisStore` (see [`RedisStoreBuilder::prefix`]), and
    /// the prefix whose writes Redis reports to this instance.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The memory tier (default: `S3FifoPolicy::new(10_000)`). Anything in it
    /// is removed at `build`. Its policy's default TTL, if any, caps how long
    /// an entry stays in memory.
    pub fn memory(mut self, store: MemoryStore<V>) -> Self {
        self.memory = Some(store);
        self
    }

    /// Sets up the `RedisStore` beyond its URL, prefix and TLS roots: a
    /// policy, timeouts, a lock lease.
    pub fn redis(
        mut self,
        configure: impl FnOnce(RedisStoreBuilder<V>) -> RedisStoreBuilder<V> + Send + 'static,
    ) -> Self {
        self.redis = Some(Box::new(configure));
        self
    }

    /// For `rediss://`: trust the CA certificates in `pem`, on both
    /// connections (see [`RedisStoreBuilder::tls_root_certificates`]).
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// How long opening the invalidation connection may take, TLS included
    /// (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command on the invalidation connection may take: turning
    /// tracking on, and a fill's `PTTL` (default 1 s; a fill whose `PTTL`
    /// does not answer in time is skipped, the read still succeeds).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often the invalidation connection is checked, with a round trip
    /// that also checks the database marker, and how long the answer may
    /// take (default 1 s). A connection that closes is noticed at once; this
    /// bounds how long a silently dead one, or a `SWAPDB`, goes unnoticed
    /// (about two heartbeats).
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.heartbeat = period;
        self
    }

    /// Builds the `RedisStore`, opens the invalidation connection, turns
    /// tracking on and marks the database; returns only once all of that is
    /// done, so the memory tier serves, coherently, from the start.
    ///
    /// # Errors
    /// What [`RedisStoreBuilder::build`] returns; [`CacheError::Policy`] for
    /// a zero timeout or heartbeat; [`CacheError::Backend`] if the
    /// invalidation connection cannot be opened or Redis refuses
    /// `CLIENT TRACKING` (before 6.0, or an ACL that denies it).
    pub async fn build(self) -> Result<NearCache<V>> {
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("heartbeat", self.heartbeat),
        ] {
            if value.is_zero() {
                return Err(CacheError::Policy(format!("{name} must be greater than zero, got {value:?}")));
            }
        }
        let mut redis = RedisStore::builder(self.url.clone()).prefix(self.prefix);
        if let Some(pem) = &self.root_certificates {
            redis = redis.tls_root_certificates(pem.clone());
        }
        if let Some(configure) = self.redis {
            redis = configure(redis);
        }
        // Builds first: it checks the prefix and URL, and installs the TLS provider.
        let redis = redis.build().await?;
        let prefix = redis.prefix().to_string();

        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .map_err(|e| backend("the Redis URL is invalid".into(), e))?;
        let addr = info.addr().to_string();
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = single_client(info, self.root_certificates)
            .map_err(|e| backend(format!("cannot set up the invalidation client for Redis at {addr}"), e))?;
        let token = RandomState::new().hash_one((std::process::id(), Instant::now()));
        let link = Link {
            client,
            prefix: prefix.as_bytes().to_vec(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            sentinels: sentinel_names(prefix.as_bytes(), token),
        };

        let memory = match self.memory {
            Some(memory) => memory,
            None => MemoryStore::new(S3FifoPolicy::new(10_000)?),
        };
        let shared = Arc::new(Shared::new(memory, &prefix));
        let session = 1;
        let conn = link.connect(Arc::downgrade(&shared), session).await.map_err(|e| {
            backend(format!("cannot open the invalidation connection (CLIENT TRACKING) to Redis at {addr}"), e)
        })?;
        if !shared.go_up(session, conn.clone()) {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::Connection,
                message: format!("the invalidation connection to Redis at {addr} closed as it opened"),
                source: None,
            });
        }
        let task = tokio::spawn(keep_tracking(shared.clone(), link, conn, session, self.heartbeat)).abort_handle();
        Ok(NearCache { shared, redis, own: SharedCounters::default(), response_timeout: self.response_timeout, task })
    }
}

impl<V> NearCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a near cache on the Redis at `url` (as for
    /// [`RedisStore::builder`]).
    pub fn builder(url: impl Into<String>) -> NearCacheBuilder<V> {
        NearCacheBuilder {
            url: url.into(),
            prefix: String::new(),
            memory: None,
            redis: None,
            root_certificates: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
        }
    }

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
            Ok(Err(e)) => Err(backend("the invalidation connection failed a round trip".into(), e)),
            Err(_) => Err(CacheError::Backend {
                kind: crate::ErrorKind::BackendTimeout,
                message: format!("the invalidation connection did not answer within {:?}", self.response_timeout),
                source: None,
            }),
        }
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
    /// tier's lock (it would deadlock; see [`MemoryStore`]'s `len`).
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
    async fn pttl(&self, mut conn: MultiplexedConnection, key: &str) -> Option<i64> {
        let full = [&*self.shared.prefix, key.as_bytes()].concat();
        let mut cmd = redis::cmd("PTTL");
        let asked = cmd.arg(full).query_async::<i64>(&mut conn);
        tokio::time::timeout(self.response_timeout, asked).await.ok()?.ok()
    }

    /// Fills memory with a value Redis gave, for the rest of its Redis TTL
    /// as measured from `asked` (before the `PTTL` was sent).
    fn fill(&self, key: &str, ticket: Ticket, value: V, pttl: Option<i64>, asked: Instant) {
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
        self.shared.fill(key, ticket, value, ttl);
    }

    async fn get_uncounted(&self, key: &str) -> Result<Option<V>> {
        if self.shared.up.load(Ordering::Acquire)
            && let Some(value) = self.shared.memory.get(key).into_inner()?
        {
            SharedCounters::add(&self.own.hits, 1);
            return Ok(Some(value));
        }
        SharedCounters::add(&self.own.misses, 1);
        let Some((ticket, conn)) = self.shared.ticket(key) else {
            return self.redis.get(key).await;
        };
        let asked = Instant::now();
        let (value, pttl) = tokio::join!(self.redis.get(key), self.pttl(conn, key));
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
        check_key(key)?;
        let started = self.own.sample_next_get().then(Instant::now);
        let found = self.get_uncounted(key).await;
        if let (Some(started), Ok(_)) = (started, &found) {
            self.own.record_latency(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        found
    }

    async fn set(&self, key: &str, value: V, options: SetOptions) -> Result<()> {
        self.shared.reentered("set")?;
        check_key(key)?;
        check_set_options(&options, None)?;
        let _forget = Forget::new(&self.shared, Scope::Key(key));
        let done = self.redis.set(key, value, options).await;
        self.caught_up().await;
        done
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.shared.reentered("delete")?;
        check_key(key)?;
        let _forget = Forget::new(&self.shared, Scope::Key(key));
        let done = self.redis.delete(key).await;
        // Nothing deleted, nothing for Redis to invalidate: no wait.
        if !matches!(done, Ok(false)) {
            self.caught_up().await;
        }
        done
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.shared.reentered("contains")?;
        check_key(key)?;
        if self.shared.up.load(Ordering::Acquire) && self.shared.memory.contains(key).into_inner()? {
            return Ok(true);
        }
        self.redis.contains(key).await
    }

    async fn get_metadata(&self, key: &str) -> Result<Option<Metadata>> {
        self.redis.get_metadata(key).await
    }

    async fn update_metadata(&self, key: &str, metadata: Metadata) -> Result<bool> {
        self.shared.reentered("update_metadata")?;
        check_key(key)?;
        let _forget = Forget::new(&self.shared, Scope::Key(key));
        let done = self.redis.update_metadata(key, metadata).await;
        if !matches!(done, Ok(false)) {
            self.caught_up().await;
        }
        done
    }

    async fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.shared.reentered("invalidate")?;
        Pattern::new(pattern)?;
        let _forget = Forget::new(&self.shared, Scope::Pattern(pattern));
        let done = self.redis.invalidate(pattern).await;
        if !matches!(done, Ok(0)) {
            self.caught_up().await;
        }
        done
    }

    async fn keys(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        self.redis.keys(pattern).await
    }

    async fn size(&self) -> Result<usize> {
        self.redis.size().await
    }

    async fn clear(&self) -> Result<()> {
        self.shared.reentered("clear")?;
        let _forget = Forget::new(&self.shared, Scope::All);
        let done = self.redis.clear().await;
        self.caught_up().await;
        done
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.shared.reentered("get_or_set")?;
        check_key(key)?;
        check_set_options(&options, None)?;
        if self.shared.up.load(Ordering::Acquire)
            && let Some(value) = self.shared.memory.get(key).into_inner()?
        {
            SharedCounters::add(&self.own.hits, 1);
            return Ok(value);
        }
        let ticket = self.shared.ticket(key);
        let loaded = Loaded { shared: &self.shared, key, ran: AtomicBool::new(false) };
        let ran = &loaded.ran;
        let loader = move || {
            ran.store(true, Ordering::Release);
            loader()
        };
        let value = self.redis.try_get_or_set(key, loader, options).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::LruPolicy;

    fn shared() -> Shared<u32> {
        let shared = Shared::new(MemoryStore::new(LruPolicy::new(100).unwrap()), "p:");
        // Up without a connection: tickets need one, so note them by hand.
        let mut state = shared.lock();
        state.epoch = 2;
        drop(state);
        shared.up.store(true, Ordering::Release);
        shared
    }

    fn ticket(shared: &Shared<u32>, key: &str) -> Ticket {
        let stripe = shared.stripe(key);
        let state = shared.lock();
        Ticket { epoch: state.epoch, stripe, seen: state.stripes[stripe] }
    }

    #[test]
    fn a_fill_after_an_invalidation_of_its_key_is_refused() {
        let shared = shared();
        let t = ticket(&shared, "k");
        shared.forget_redis_keys(&[Value::BulkString(b"p:k".to_vec())]);
        assert!(!shared.fill("k", t, 1, None));
        assert!(!shared.memory.contains("k").into_inner().unwrap());
        // A fresh ticket fills.
        let t = ticket(&shared, "k");
        assert!(shared.fill("k", t, 2, None));
        assert_eq!(shared.memory.get("k").into_inner().unwrap(), Some(2));
        // And a later invalidation removes it.
        shared.forget_redis_keys(&[Value::BulkString(b"p:k".to_vec())]);
        assert!(!shared.memory.contains("k").into_inner().unwrap());
    }

    #[test]
    fn other_keys_other_prefixes_and_index_keys_do_not_refuse_a_fill() {
        let shared = shared();
        let t = ticket(&shared, "k");
        let other = (0..).map(|i| format!("o{i}")).find(|o| shared.stripe(o) != t.stripe).unwrap();
        shared.forget_redis_keys(&[
            Value::BulkString(format!("p:{other}").into_bytes()),
            Value::BulkString(b"q:k".to_vec()),
            Value::BulkString(b"p:\xfflru".to_vec()),
            Value::BulkString(b"p:".to_vec()),
        ]);
        assert!(shared.fill("k", t, 1, None));
    }

    #[test]
    fn local_writes_patterns_flushes_and_a_lost_connection_refuse_fills() {
        let shared = shared();
        for scope in [Scope::Key("k"), Scope::Pattern("k*"), Scope::All] {
            let t = ticket(&shared, "k");
            shared.forget(&scope);
            assert!(!shared.fill("k", t, 1, None));
        }
        let t = ticket(&shared, "k");
        shared.on_push(0, PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        assert!(!shared.fill("k", t, 1, None), "a flush");
        // A lost connection (session 0 is current here) empties memory and stops serving.
        let t = ticket(&shared, "k");
        assert!(shared.fill("k", t, 1, None));
        let t = ticket(&shared, "k");
        shared.on_push(0, PushInfo { kind: PushKind::Disconnection, data: vec![] });
        assert!(!shared.up.load(Ordering::Acquire));
        assert_eq!(shared.memory.len(), 0);
        assert!(!shared.fill("k", t, 1, None));
    }

    #[test]
    fn a_fill_that_read_redis_during_a_local_write_is_refused_after_it() {
        // A read whose ticket was taken after the write began (so after its
        // first forget) may have read the old value: the forget when the
        // write ends must refuse it, before the write returns.
        let shared = shared();
        for scope in [Scope::Key("k"), Scope::Pattern("*"), Scope::All] {
            let write = Forget::new(&shared, scope);
            let t = ticket(&shared, "k");
            drop(write);
            assert!(!shared.fill("k", t, 1, None));
            // Filled between the forgets: taken out by the second.
            let write = Forget::new(&shared, Scope::Key("k"));
            let t = ticket(&shared, "k");
            assert!(shared.fill("k", t, 1, None));
            drop(write);
            assert!(!shared.memory.contains("k").into_inner().unwrap());
        }
    }

    /// Push messages come from another process: any shape must leave memory
    /// consistent, never panic. An `invalidate` naming keys removes exactly
    /// those of this prefix; anything not understood empties memory.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                "[a-c]{0,2}".prop_map(|k| format!("p:{k}").into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..8),
                Just(b"p:\xff".to_vec()),
                Just(b"p:".to_vec()),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Nil),
                any::<i64>().prop_map(Value::Int),
                bytes().prop_map(Value::BulkString),
                "[a-z:]{0,4}".prop_map(Value::SimpleString),
                Just(Value::Okay),
                any::<bool>().prop_map(Value::Boolean),
            ];
            leaf.prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Set),
                    proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
                ]
            })
        }

        fn kind() -> impl Strategy<Value = PushKind> {
            prop_oneof![
                4 => Just(PushKind::Invalidate),
                1 => Just(PushKind::Message),
                1 => Just(PushKind::Subscribe),
                1 => "[a-z]{0,6}".prop_map(PushKind::Other),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: crate::stores::memory::fuzz_cases(2_000),
                ..ProptestConfig::default()
            })]

            #[test]
            fn fuzz_push_messages(kind in kind(), data in proptest::collection::vec(value(), 0..3)) {
                let shared = shared();
                for k in ["a", "b", "c", "ab"] {
                    let t = ticket(&shared, k);
                    prop_assert!(shared.fill(k, t, 1, None));
                }
                let named: Vec<String> = match data.first() {
                    Some(Value::Array(keys)) => keys
                        .iter()
                        .filter_map(|v| match v {
                            Value::BulkString(b) => b.strip_prefix(b"p:").and_then(|k| std::str::from_utf8(k).ok()),
                            _ => None,
                        })
                        .map(str::to_string)
                        .collect(),
                    _ => Vec::new(),
                };
                let flush = kind == PushKind::Invalidate && !matches!(data.first(), Some(Value::Array(_)));
                shared.on_push(0, PushInfo { kind: kind.clone(), data });
                for k in ["a", "b", "c", "ab"] {
                    let gone = flush || (kind == PushKind::Invalidate && named.iter().any(|n| n == k));
                    prop_assert_eq!(shared.memory.contains(k).into_inner().unwrap(), !gone, "{}", k);
                }
                prop_assert!(shared.up.load(Ordering::Acquire), "a message is no disconnection");
            }
        }
    }

    /// The marker's three commands against a real redis-server (started
    /// here): written, seen, renewed only while it exists.
    #[tokio::test]
    async fn the_database_marker_is_written_checked_and_renewed_only_if_present() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("pepperpy-near-marker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => break conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let link = Link {
            client: client.clone(),
            prefix: b"p:".to_vec(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            sentinels: sentinel_names(b"p:", 7),
        };
        let count = |mut conn: MultiplexedConnection| {
            let names = link.sentinels.clone();
            async move { redis::cmd("EXISTS").arg(names).query_async::<usize>(&mut conn).await.unwrap() }
        };
        assert!(!link.check_database(&mut conn, false).await.unwrap());
        assert!(!link.check_database(&mut conn, true).await.unwrap(), "not written back when gone");
        assert_eq!(count(conn.clone()).await, 0);
        link.mark_database(&mut conn).await.unwrap();
        assert_eq!(count(conn.clone()).await, SENTINELS);
        assert!(link.check_database(&mut conn, false).await.unwrap());
        // Evicted markers but one: the same database, and the others are back.
        let _: () = redis::cmd("DEL").arg(&link.sentinels[1..]).query_async(&mut conn).await.unwrap();
        assert!(link.check_database(&mut conn, false).await.unwrap());
        assert_eq!(count(conn.clone()).await, SENTINELS);
        let _: () = redis::cmd("PEXPIRE").arg(&link.sentinels[0]).arg(60_000).query_async(&mut conn).await.unwrap();
        assert!(link.check_database(&mut conn, true).await.unwrap());
        let ttl: i64 = redis::cmd("PTTL").arg(&link.sentinels[0]).query_async(&mut conn).await.unwrap();
        assert!(ttl > 3_000_000, "a full hour again: {ttl} ms");
        let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query_async(&mut conn).await.unwrap();
        assert!(!link.check_database(&mut conn, false).await.unwrap(), "gone with its database");
        assert_eq!(count(conn.clone()).await, 0, "nothing written into the database swapped in");
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_connection_that_reported_its_loss_is_never_made_current() {
        let shared = Shared::new(MemoryStore::<u32>::new(LruPolicy::new(10).unwrap()), "p:");
        // Session 3 closes before the task makes it current.
        shared.down(3);
        assert_eq!(shared.lock().lost_session, 3);
        assert!(!shared.up.load(Ordering::Acquire));
    }
}
