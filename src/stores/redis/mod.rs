//! [`RedisStore`]: entries in Redis, shared by every process that uses the
//! same prefix. Native only, behind the `redis` feature.
//!
//! This module owns the mapping from the [`CacheStore`](crate::store::CacheStore)
//! calls to Redis commands. It never blocks a thread, never waits longer than
//! its timeouts (and, in `get_or_set` and `get_or_refresh`, a lease and the
//! loader) and never panics: every failure of the server, the network or the
//! connection is a [`CacheError::Backend`] carrying the cause.
//!
//! The user-facing design (storage format, policies, patterns, counters,
//! connection) is documented on [`RedisStore`] (docs/redis.md). The files:
//! `builder` connects and checks; `entries` maps the single-key calls;
//! `walks` the calls over many keys and the rebuild of a lost index; `load`
//! and `refresh` read-through and stale-while-revalidate; `call` builds every
//! script call and reads what the scripts report; `scripts` holds the Lua;
//! `conn` is the connection and decides single node vs cluster; `keyspace`
//! is where data lives in Redis; `failure` turns redis-rs errors into the
//! crate's; `format` is the stored JSON.

mod batch;
mod builder;
mod call;
mod conn;
mod entries;
mod failure;
mod listen;
mod load;
mod refresh;
mod scripts;
mod tags;
mod tls;
mod walks;

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::errors::{CacheError, Result};
use crate::metrics::SharedCounters;
use crate::policies::Policy;
use crate::singleflight::SingleFlight;

use crate::remote::keyspace::Keyspace;
use crate::remote::ttl_millis;
pub use builder::{DEFAULT_CLUSTER_BUCKETS, RedisStoreBuilder};
use call::{Capacity, Report};
use conn::Conn;
use failure::Failure;
use scripts::{SAMPLE_EVERY, Scripts};

// What the near cache (`crate::stores::near`) uses of this module, besides
// the `RedisStore` calls on checked keys (see `entries`): the client of its
// invalidation connection, the conversion of that connection's errors, and
// the builders' setters and duration check.
pub(crate) use builder::{check_durations, setters};
pub(crate) use conn::tracking_client;
pub(crate) use failure::backend;

/// How often a running cluster store checks the record of its bucket count.
const RECORD_EVERY: Duration = Duration::from_secs(1);

#[doc = include_str!("../../../docs/redis.md")]
pub struct RedisStore<V> {
    conn: Conn,
    /// `host:port` (for a cluster, `cluster at host:port,...`), for messages
    /// (never the URL: it may hold a password).
    addr: String,
    space: Keyspace,
    scripts: Scripts,
    policy: Option<Policy>,
    default_ttl: Option<Duration>,
    /// The policy's time-to-idle: every `get` then reads through a script
    /// that moves the entry's expiry (one round trip).
    default_idle: Option<Duration>,
    /// `Some((max_size, lru))` when a policy caps the entries.
    bound: Option<(usize, bool)>,
    /// Whether `invalidate` and `clear` may run with an empty prefix.
    whole_database: bool,
    /// Bounded sets so far, to pick the ones that check random index members.
    sets_seen: AtomicU64,
    /// Whether `get` runs the LRU script.
    refresh_on_get: bool,
    /// The most one round trip may take: the response timeout.
    round_trip_timeout: Duration,
    /// How long a load's placeholder or a refresh lock lives unless removed.
    lock_lease: Duration,
    /// This instance's loads in progress; followers get the stored bytes.
    flights: SingleFlight<Arc<[u8]>>,
    /// Keys whose refresh this instance is trying to start or running: one
    /// attempt per key at a time, however many stale reads see it.
    refreshing: std::sync::Mutex<HashSet<Box<str>>>,
    counters: SharedCounters,
    /// When the store was built, and when (ms after that) it last nudged a
    /// cluster client after a timeout (see [`Conn::after_timeout`]).
    created: Instant,
    last_nudge: AtomicU64,
    /// A cluster store's watch over the record of its bucket count.
    record: Option<Arc<Record>>,
    /// Told of what this process removes (see `RedisStoreBuilder::on_remove`).
    listener: Option<crate::removal::RemovalListener<V>>,
    _value: PhantomData<fn() -> V>,
}

/// How a running cluster store keeps the record of its bucket count: it
/// writes it again if it was lost (evicted, a master restarted empty), and
/// stops serving if another count was recorded meanwhile.
#[derive(Default)]
struct Record {
    /// When (ms after the store was built) the next check is due.
    next_due: AtomicU64,
    /// Set once another process recorded another count: every call then
    /// fails with this message.
    mismatch: std::sync::OnceLock<String>,
}

impl<V> RedisStore<V> {
    /// The prefix of every key of this store.
    pub fn prefix(&self) -> &str {
        self.space.prefix()
    }

    /// The policy the store was built with, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Runs one round trip under the timeout, turning every failure into
    /// [`CacheError::Backend`] that says what was being done.
    #[inline]
    async fn round_trip<T>(&self, what: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        self.try_round_trip(what, call).await.map_err(CacheError::from)
    }

    /// [`round_trip`](Self::round_trip), keeping the failure's cause for a
    /// caller that falls back on some (a placeholder, a migrating slot).
    async fn try_round_trip<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> std::result::Result<T, Failure> {
        if let Some(message) = self.record.as_ref().and_then(|r| r.mismatch.get()) {
            return Err(CacheError::Policy(message.clone()).into());
        }
        let done = failure::timed(what, &self.addr, self.round_trip_timeout, call).await;
        if let Err(failure) = &done
            && failure.error.is_timeout()
        {
            let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
            let key = &self.space.buckets()[0].recency;
            self.conn.after_timeout(&self.last_nudge, now, key, self.round_trip_timeout);
        }
        done
    }

    /// On a cluster, checks the record of the bucket count in the background
    /// when a check is due (every [`RECORD_EVERY`], or at once with `now`):
    /// writes it again if it was lost, and makes every later call fail if
    /// another count was recorded.
    fn check_record(&self, now: bool) {
        let Some(record) = &self.record else { return };
        let at = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = record.next_due.load(Ordering::Relaxed);
        let every = u64::try_from(RECORD_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (!now && at < due)
            || record
                .next_due
                .compare_exchange(due, at.saturating_add(every), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (mut conn, record) = (self.conn.clone(), Arc::clone(record));
        let (prefix, count) = (self.space.prefix().to_string(), self.space.buckets().len());
        let (addr, timeout) = (self.addr.clone(), self.round_trip_timeout);
        tokio::spawn(async move {
            if let Err(CacheError::Policy(message)) =
                builder::check_recorded_buckets(&mut conn, &prefix, count, &addr, timeout).await
            {
                let _ = record.mismatch.set(message);
            }
        });
    }

    /// The capacity of bucket `index`, if the store has one.
    #[inline]
    fn capacity(&self, index: usize) -> Option<Capacity<'_>> {
        let (max_size, lru) = self.bound?;
        Some(Capacity { index, bucket: &self.space.buckets()[index], share: self.space.share(max_size, index), lru })
    }

    /// Whether this bounded write is one of those that check random index
    /// members (one in [`SAMPLE_EVERY`]).
    #[inline]
    fn sample(&self) -> bool {
        self.sets_seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(SAMPLE_EVERY)
    }

    /// Counts what a script expired and evicted.
    #[inline]
    fn count(&self, report: Report) {
        SharedCounters::add(&self.counters.expirations, report.expired);
        SharedCounters::add(&self.counters.evictions, report.evicted);
    }

    /// A [`CacheError::Backend`] for a reply the store cannot read.
    #[cold]
    fn unexpected(&self, what: &str, reply: impl std::fmt::Debug) -> CacheError {
        CacheError::backend(
            crate::errors::ErrorKind::Command,
            format!("{what} on Redis at {}: unexpected reply {reply:?}", self.addr),
            None,
        )
    }
}

impl<V> std::fmt::Debug for RedisStore<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.addr)
            .field("prefix", &self.space.prefix())
            .field("policy", &self.policy)
            .field("lock_lease", &self.lock_lease)
            .finish_non_exhaustive()
    }
}
