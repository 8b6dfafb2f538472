//! [`RedisStore`]: entries in Redis, shared by every process that uses the
//! same prefix. Native only, behind the `redis` feature.
//!
//! This module owns the mapping from the [`CacheStore`] calls to Redis
//! commands. It never blocks a thread, never waits longer than its timeouts
//! (and, in `get_or_set` and `get_or_refresh`, a lease and the loader) and never panics: every failure of the server, the network or the
//! connection is a [`CacheError::Backend`] carrying the cause.
//!
//! The user-facing design (storage format, policies, patterns, counters,
//! connection) is documented on [`RedisStore`].

mod conn;
mod format;
mod keyspace;
mod load;
mod refresh;
mod scripts;
mod tls;

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{CacheError, Result};
use crate::metrics::{CacheStats, SharedCounters};
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::singleflight::SingleFlight;
use crate::store::{CacheStore, Metadata, SetOptions, check_key, check_metadata, check_set_options};

use conn::{Conn, Node, Topology};
use keyspace::{Entry, Keyspace};
use scripts::{SAMPLE_EVERY, Scripts};

/// Keys per SCAN page and per delete.
const BATCH: usize = 1000;
/// How often `update_metadata` retries when the entry keeps changing under it.
const UPDATE_ATTEMPTS: usize = 32;
/// Longest TTL sent to Redis, in ms (about 31,700 years): longer ones would
/// overflow Redis's expiry time and are the same as this in practice.
const MAX_TTL_MS: u128 = 1_000_000_000_000_000;

/// The `maxmemory-policy` settings a bounded store knows how to live with
/// (see "Redis eviction" on [`RedisStore`]).
const KNOWN_EVICTION_POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The buckets of a cluster store unless [`RedisStoreBuilder::buckets`] says
/// otherwise.
pub const DEFAULT_CLUSTER_BUCKETS: usize = 16;
/// How often redis-rs's cluster client retries a command (after `MOVED`,
/// `TRYAGAIN`, a lost node) within one round trip's timeout.
const CLUSTER_RETRIES: u32 = 16;
/// How often a walk over a cluster's masters starts again because slots
/// moved while it ran (or waits for a slot's migration to end), before it
/// fails: with [`WALK_RETRY_WAIT`], about 8 s of migrations.
const WALK_ATTEMPTS: usize = 40;
/// How often a running cluster store checks the record of its bucket count.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// The most keys a cluster store's rebuild lists straight from a slot
/// (`CLUSTER GETKEYSINSLOT`); a fuller slot is walked with SCAN.
const SLOT_LIST_MAX: u64 = 10_000;
/// How many buckets' sizes `size` asks for at once.
const SIZE_CONCURRENCY: usize = 64;
/// The least time between two [`conn::nudge`]s of a cluster store.
const NUDGE_EVERY: Duration = Duration::from_millis(250);
/// The first wait for a slot's migration to end; later ones are longer.
const WALK_RETRY_WAIT: Duration = Duration::from_millis(20);

/// A cache in Redis, shared by every process that uses the same prefix.
///
/// Share one store between tasks behind an `Arc`; it holds one multiplexed
/// connection that every call uses concurrently.
///
/// ```no_run
/// use pepperpy_caching::{CacheStore, SetOptions, stores::RedisStore, policies::LruPolicy};
/// use std::time::Duration;
///
/// # #[tokio::main]
/// # async fn main() -> pepperpy_caching::Result<()> {
/// let store: RedisStore<String> = RedisStore::builder("redis://localhost:6379/0")
///     .prefix("myapp:")
///     .policy(LruPolicy::new(10_000)?)
///     .build()
///     .await?;
/// store.set("session:1", "alice".to_string(), SetOptions::new().ttl(Duration::from_secs(60))).await?;
/// assert_eq!(store.get("session:1").await?.as_deref(), Some("alice"));
/// assert_eq!(store.invalidate("session:*").await?, 1);
/// # Ok(()) }
/// ```
///
/// # Storage format
///
/// Each entry is one Redis string at `prefix + key` holding a JSON document,
/// so any language can read it:
///
/// ```text
/// {"v":<the value as JSON>}                  an entry without metadata
/// {"v":<the value as JSON>,"m":{...}}        with metadata (a JSON object)
/// ```
///
/// The entry's TTL is the key's Redis TTL, so value and metadata are written
/// together (`SET key doc PX ttl`, one command) and expire together. Without a
/// capacity a `get` is one `GET` and a `set` one `SET`; with one, each is one
/// script call (below): one round trip either way. `update_metadata` reads
/// the document, merges the metadata, and writes it back with a Lua
/// compare-and-set that keeps the TTL (`SET ... KEEPTTL`) and retries if the
/// entry changed in between; the value's JSON text is copied, never re-encoded.
/// A value that cannot be encoded is [`CacheError::Serialization`] and nothing
/// is written; a document that does not decode as `V` is the same error.
///
/// `set` (and a `get_or_set` loader's value) refuses, with
/// [`CacheError::Serialization`] and nothing written, what JSON would not
/// give back as it was: NaN or an infinite `f32`/`f64` anywhere in the value
/// (serde_json writes them as `null`, so an `f64` would become unreadable and
/// `Some(f64::NAN)` would read back as `None`), and a value nested more than
/// 100 levels deep in arrays and objects (JSON readers limit nesting;
/// serde_json reads 127). Metadata nested more than 100 levels is refused by
/// every store alike. The [`MemoryStore`](crate::MemoryStore) keeps Rust
/// values as they are and accepts both kinds of value: this is the one place
/// where the two stores answer differently.
///
/// # Policies
///
/// Without a policy (the default) the store keeps whatever Redis keeps: no
/// capacity, and TTLs only where `set` gives one. With
/// [`TtlPolicy`](crate::TtlPolicy) and no `max_size`, entries set without a TTL
/// get the policy's.
///
/// A policy with a `max_size` ([`LruPolicy`](crate::LruPolicy), or `TtlPolicy`
/// with a capacity) caps the number of entries under the prefix, shared by
/// every process using it. Two sorted sets, at `prefix + "\xff" + "lru"` and
/// `prefix + "\xff" + "expiry"` (names no UTF-8 key can collide with), index
/// the entries:
///
/// - *recency* (LRU only): entry key -> a counter, one more than the highest so
///   far each time the entry is set or read, so the lowest score is the least
///   recently used. A counter, not the clock, so two writes in the same
///   microsecond still have an order.
/// - *expiry*: entry key -> when its TTL runs out (ms, Redis `TIME`), for the
///   entries that have one.
///
/// Each `set` runs one Lua script (atomic, one round trip) that does what the
/// memory store does: reclaim up to 8 entries whose TTL has passed, then, for a
/// new key at capacity, reclaim one more expired entry or else evict the
/// lowest member of the index (least recently used under LRU, soonest to
/// expire under TTL), then write the entry and its index members. Under LRU a
/// `get` is one script too (`GET` plus moving the entry to the top); a miss
/// drops the member of an entry Redis has expired. `delete`, `invalidate` and
/// `clear` remove index members with their entries. Everything is O(log n)
/// per entry touched.
///
/// Under LRU the recency score comes from a counter kept as the score of a
/// sentinel member `""` of the recency index (no entry key is empty), so
/// marking an entry used is one `ZINCRBY` and one `ZADD`. Under a capacity
/// with TTL the sentinel sits in the expiry index with score `+inf`.
///
/// All processes sharing a prefix must use the same policy.
/// [`S3FifoPolicy`](crate::S3FifoPolicy) is not available in Redis
/// (`build` refuses it): use `LruPolicy`.
///
/// # Redis eviction and a capacity that heals
///
/// Redis may remove entries behind the store's back (`maxmemory` eviction, a
/// manual `DEL`), and even an index key itself. The store repairs what it
/// meets:
///
/// - an index member whose entry is gone is dropped when a `get` misses it,
///   when it comes up as the eviction victim (up to 16 such members are
///   skipped per `set`), and at random: one bounded `set` in 8 checks two
///   random members;
/// - a lost index (no sentinel) is noticed by the next `set`, which then
///   rebuilds it: it walks the prefix with SCAN, adopts every entry the index
///   does not list as least recently used (with its remaining TTL), and
///   evicts down to the capacity. A brand-new prefix looks the same, so the
///   first `set` on a new prefix also walks the database once. If the rebuild
///   fails (Redis unreachable), the sentinel is removed again so that a later
///   `set` retries; if the index is lost again during a rebuild, the rebuild
///   stops and the `set` that notices the new loss starts over.
///
/// At `build` a bounded store reads `maxmemory-policy` (`CONFIG GET`, skipped
/// if the server or the user's ACL forbids it) and accepts `noeviction`, `allkeys-lru`,
/// `allkeys-lfu`, `allkeys-random`, `volatile-lru`, `volatile-lfu`,
/// `volatile-random` and `volatile-ttl`; any other value is
/// [`CacheError::Policy`]. With `noeviction` nothing is removed behind the
/// store's back and writes fail with a backend error when Redis is full;
/// with the `allkeys-*` settings (the usual ones for a cache) the index heals
/// as above, and once memory pressure ends the number of entries is back
/// within the capacity. Until then the count can be briefly off in either
/// direction: entries evicted by Redis still count until met, and after a
/// lost index the entries above the capacity stay until the rebuild.
///
/// # Patterns, `keys`, `size`, `clear`
///
/// These walk the prefix with `SCAN ... MATCH <escaped prefix><escaped literal
/// head of the pattern>* COUNT 1000` and delete with `UNLINK` (or the delete
/// script) a page at a time, each page's delete sent together with the next
/// SCAN, never `KEYS`, so a large keyspace never blocks Redis for long. The
/// pattern itself never reaches Redis, whose matcher backtracks (see
/// CVE-2022-36021): Redis gets only plain text and one trailing `*`, which it
/// matches in linear time, and every key SCAN returns is checked against the
/// prefix and the pattern by the crate's own linear-time matcher. So no
/// pattern can stall Redis, and a pattern never reaches keys outside the
/// prefix whatever either contains.
///
/// `keys` costs a walk over the database (SCAN visits every key; MATCH only
/// filters). `size` costs a walk too without a capacity; with one it reads
/// the index (two O(log n) commands): the members, less those whose TTL has
/// passed, so entries Redis evicted behind the store's back count until they
/// are met (see above).
///
/// # Prefixes
///
/// A prefix is empty or a name without `:` followed by one `:` (`"myapp:"`,
/// `"myapp.sessions:"`, or on a single Redis `"{tenant-7}:"`); `build` refuses any other
/// ([`CacheError::Policy`]). Of two such prefixes neither starts with the
/// other, so no Redis key belongs to two stores whatever the keys contain:
/// with `"a:"` and `"a:b:"` allowed, the key `b:x` of the first would be the
/// key `x` of the second.
///
/// An empty prefix means the store shares the whole database with whatever
/// else uses it, so `invalidate` and `clear` are [`CacheError::Policy`] unless
/// the builder was told the database is the store's alone
/// ([`RedisStoreBuilder::whole_database`]).
///
/// # Redis Cluster
///
/// [`RedisStore::cluster_builder`] takes the URLs of some of a cluster's
/// nodes (the client learns the rest) and the same options as
/// [`RedisStore::builder`]; the store then runs on redis-rs's cluster client,
/// which routes each command to the master of its key's slot, follows `MOVED`
/// and `ASK` redirections, refreshes its slot map after a failover or a slot
/// move, and retries within the store's response timeout.
///
/// **Where entries live.** A cluster store has *buckets*
/// ([`RedisStoreBuilder::buckets`], default [`DEFAULT_CLUSTER_BUCKETS`]):
/// the entry of `key` is at `prefix + "{tag}" + key`, where the tag is that of
/// the key's bucket (a stable hash of the key modulo the bucket count). Each
/// bucket's tag is chosen to hash to a slot in its own equal part of the 16,384
/// slots, so on a cluster whose masters hold equal slot ranges (as
/// `redis-cli --cluster create` assigns them) the buckets, and so the
/// entries, spread evenly over the masters. Everything one script touches is
/// in one bucket, so one slot: an entry, its load's placeholder, its refresh
/// lock and its bucket's two indexes. No command ever spans two slots. More
/// buckets spread finer (a new master gets whole buckets when slots move):
/// use at least a few per master. The prefix may not contain `{` or `}`.
///
/// **Every process sharing the prefix must use the same bucket count**: it
/// decides where a key lives, and two processes that disagree would read and
/// write the same key in different places. `build` records the count under
/// the prefix (`prefix + "\xff" + "buckets"`, no TTL) and refuses a different
/// one with [`CacheError::Policy`]; to change it, use a new prefix. A running
/// store checks the record again (at most every second, on writes and loads)
/// and writes it again if Redis lost it (evicted
/// under an `allkeys-*` policy, a master restarted empty). If it finds
/// another count there, recorded by a process that started while the record
/// was gone, every call of this store fails with [`CacheError::Policy`] from
/// then on: two layouts on one prefix could serve values the other replaced.
///
/// **What a capacity means.** Each bucket keeps its own indexes and its share
/// of `max_size` (the capacity split as evenly as it goes; the shares add up
/// to `max_size`, which must be at least the bucket count). The store never
/// holds more than `max_size` entries, but it evicts the least recently used
/// entry *of the bucket* a new key falls in, so with few keys per bucket a
/// bucket can be full while another has room: LRU order is exact within a
/// bucket, approximate across them (as with the memory store's shards). With
/// `buckets(1)` the order is exact and every entry is on one master. A
/// bucket's lost index is rebuilt as on a single Redis (see above), from the
/// bucket's slot only: its keys are listed straight from the slot
/// (`CLUSTER COUNTKEYSINSLOT`, then `GETKEYSINSLOT`) when it holds at most
/// 10,000 keys, and found by a SCAN of its master otherwise. A new prefix
/// has no index either, so the first bounded `set` into each bucket costs
/// those two small commands.
///
/// **Walks.** `keys`, `invalidate`, `clear` (and `size` without a capacity)
/// SCAN every master, as `CLUSTER SLOTS` lists them. While a master reports a
/// slot migrating or importing, that slot's keys are on two masters at once,
/// so a walk waits for the migration to end; a walk during which the slots
/// moved is done again. If slots keep moving for about 8 s the call fails with
/// [`CacheError::Backend`] rather than return a partial answer (`invalidate`
/// and `clear` may have deleted part of their keys by then; run them again).
///
/// **Failover.** While a master is down and until its replica takes over
/// (`cluster-node-timeout` plus an election), calls on its slots fail with
/// [`CacheError::Backend`]; the rest of the cluster keeps serving, and the
/// store serves the failed master's slots again once the replica has taken
/// over, with nothing to restart. A master that hangs without closing its
/// connections (a stopped process, a frozen host) gives the cluster client
/// no reason to look again (it refreshes its slot map on a `MOVED` reply or a
/// lost connection), so after a call times out the store asks a node that
/// answers who serves the slots now and makes the client refresh (at most
/// every 250 ms). Replication is asynchronous: writes a
/// master acknowledged just before it died may be lost with it (Redis's own
/// guarantee), so an entry may be missing or older after a failover, as in
/// any Redis Cluster. A load's placeholder lost that way ends the same way a
/// lease does: callers waiting on it load again.
///
/// **Slot migrations.** While a bucket's slot migrates, its keys are split
/// between two masters and Redis refuses (`TRYAGAIN`) a script whose
/// declared keys are not all on one of them. So scripts declare only keys
/// that exist for them (an unbounded store's delete and a load's store
/// declare no index or lock), `get_or_refresh`'s read falls back from a
/// pipeline to single commands (which follow `ASK`), and an LRU `get` or
/// `get_or_refresh` whose script is refused (or times out, which is how
/// redis-rs's retries of `TRYAGAIN` end) reads with plain commands without
/// marking the entry used; such a call can take one response timeout more. A bounded `set` of a migrating bucket fails with
/// [`CacheError::Backend`] until the slot has moved; an eviction that meets
/// an entry already moved stops before touching the index, so the capacity
/// holds afterwards.
///
/// [`NearCache`](crate::stores::NearCache) runs on a single Redis only: its
/// invalidations come from one node's `CLIENT TRACKING`.
///
/// # Counters
///
/// [`CacheStats`] counts this instance's calls, as for the memory store:
/// hits, misses, sets, deletes (by `delete`, `invalidate` and `clear`) and
/// evictions caused by this instance's `set`s. Redis expires keys by itself,
/// so `expirations` counts only the expired entries this instance's scripts
/// reclaim from a bounded store's indexes, and stays 0 without a `max_size`.
/// A call that fails counts nothing. `avg_get_latency` is the round trip of
/// sampled `get`s, as in [`metrics`](crate::metrics). The load counters are
/// under "Read-through loading".
///
/// # Read-through loading
///
/// [`get_or_set`](CacheStore::get_or_set) and
/// [`try_get_or_set`](CacheStore::try_get_or_set) run one loader per missing
/// key across every process sharing the prefix, so a fleet of servers that
/// all miss a key at once loads it once:
///
/// - *In this instance*, concurrent callers for a key elect one leader; only
///   it talks to Redis, and the others get its result (the stored bytes,
///   decoded by each) or its error, as with [`MemoryStore`](crate::MemoryStore).
/// - *Between instances*, the leader runs one script that returns the entry
///   if it is there by now, or else puts the load's *placeholder* in the
///   entry's own Redis key: a hash `{load: <token>}` that lives for the lease
///   (the token is unique to this call). Checking for the value and taking
///   the placeholder in one atomic step is the owner's re-check: a value
///   stored by another process before is found, not loaded again.
/// - The owner runs its loader and stores the value (one round trip, a
///   script, `options` applied) **only if its placeholder is still there**.
///   Every write replaces or removes it: `set` and a loaded value overwrite
///   the key, `delete`, `invalidate` and `clear` unlink it, and the lease
///   ends it. So a load that a write (in any process) overtook, or that
///   outlived its lease, stores nothing; its callers still get what the
///   loader produced. This costs plain `get` and `set` nothing: they are
///   still one `GET` and one `SET` (a `GET` that meets a placeholder gets
///   Redis's WRONGTYPE answer, which the store reads as a miss).
/// - A placeholder is not an entry: `get`, `contains`, `get_metadata`,
///   `keys`, `size` and the counts of `delete` and `invalidate` skip it
///   (SCAN with `TYPE string`; `delete` and the delete pages of `invalidate`
///   and `clear` are a script that counts only strings).
/// - The other instances' leaders poll with the same script, every 10 ms at
///   first and then every 50 ms, and return the value as soon as it is there.
///   If the placeholder disappears without a value (the owner's loader
///   failed, the owner died, its lease ran out, or a write removed it) the
///   next poll takes the key and loads with its own loader.
///
/// The lease ([`RedisStoreBuilder::lock_lease`], default 10 s) bounds how long
/// a hung loader or a dead process can hold up the others. A loader that
/// takes longer than the lease lets another process load the key too, and
/// its own late value is not stored: pick a lease longer than your slowest
/// loader, but no longer than you are willing to wait after a crash. If the
/// future of a caller holding the placeholder is dropped, its removal (a
/// compare-and-delete on the token) is spawned on the tokio runtime, so the
/// others do not wait out the lease. The same goes for an attempt whose reply
/// is lost (the round trip fails or times out, or the caller's future is
/// dropped while it is in flight): the script may have taken the placeholder
/// all the same, so the same compare-and-delete is spawned (as one `EVAL`, so
/// it needs no script cache), harmless if it was not taken. An attempt that
/// answers with the value or a busy key costs no release.
///
/// A loader that asks the same store for the key it is loading (directly, or
/// through another key's loader) gets [`CacheError::Reentrant`] at once.
///
/// A loader's error reaches every caller waiting in its instance as
/// [`CacheError::Loader`] and caches nothing; callers in other instances see
/// the placeholder go without a value and load themselves. A backend failure
/// while waiting or storing is [`CacheError::Backend`]. `loads`,
/// `load_failures` and `total_load_time` count the loaders this instance ran;
/// `sets` counts the loaded values it stored. A value stored with a TTL
/// shorter than the poll interval, or evicted at once by a full store, may be
/// loaded again by the callers polling for it.
///
/// # Stale-while-revalidate
///
/// [`RedisStore::get_or_refresh`] takes the same [`RefreshOptions`](crate::RefreshOptions)
/// as the memory store's, with one refresh per key across every process on
/// the prefix:
///
/// - An entry it stores starts `{"f":<fresh until>,"v":...}`: when it stops
///   being fresh, in ms of **Redis's clock** (`TIME` in the storing script),
///   so processes whose clocks disagree judge it alike; its Redis TTL is the
///   fresh period plus the grace. Other readers (`get`, other languages)
///   ignore the field; `update_metadata` keeps it.
/// - Its read is one round trip, as a `get`: `GET` of the entry, `TIME` and
///   `GET` of the refresh lock, pipelined (plain commands, so a hot key
///   costs about what a plain hit does). A fresh entry, or a stale one whose
///   refresh runs or backs off, is returned at once. A stale one with no
///   refresh is returned at once too, and one task per instance tries for
///   the refresh lock in the background with a script that checks again,
///   atomically, and takes `SET prefix + "\xff" + "lock:" + key <token> PX
///   <lease>`: one refresh per key across every process. Under an
///   `LruPolicy` that marks reads used, the read is that script itself (it
///   also moves the entry up the recency index), and it takes the lock for
///   the one caller that is to refresh.
/// - The refresh stores its value only if the lock still holds its token
///   and the entry still has the bytes it saw (the script compares their
///   SHA1): any `set`, `update_metadata`, `delete`, `invalidate`, `clear` or
///   other refresh in between, or a lease that ran out, makes it store
///   nothing. Stored, it removes the lock.
/// - A refresh that fails, times out (the hard timeout) or panics turns its
///   lock into a backoff marker, `backoff:<failures in a row>:<retry at>` (on
///   Redis's clock), kept while the entry lives: no process starts a refresh
///   before the retry time, and the wait doubles with each failure in a row
///   (up to a minute). The stale value is served meanwhile, until the grace
///   period ends (stale-if-error).
/// - A miss loads as `try_get_or_set` does (the placeholder, one loader
///   across processes), the caller waiting at most the soft timeout.
///
/// Keys of another Redis type under the prefix read as a load in progress
/// (a miss); Redis keys of this store other than strings, the placeholders
/// and the index and lock keys are not expected.
///
/// # Connection
///
/// One multiplexed connection (redis-rs `ConnectionManager`) shared by all
/// calls, reconnecting by itself after a failure. A password and database go
/// in the URL (`redis://:password@host:6379/2`). Each round trip fails with
/// [`CacheError::Backend`] after at most the response timeout, waiting for a
/// reconnection included (`Duration::MAX` means no limit); reconnecting goes
/// on in the background, each attempt bounded by the connect timeout, so
/// while the server is unreachable calls fail, and the first call after it is
/// back and reconnected succeeds. The timeout is the store's own, one timer
/// per round trip (redis-rs's per-request timer is off: two would cost CPU for
/// nothing). Needs a tokio runtime with time and I/O enabled, and Redis 6.2
/// or later. For Redis Cluster, see "Redis Cluster" below.
///
/// **A write that timed out may still have been applied.** The command may
/// have reached Redis and run after the store stopped waiting (a server
/// paused by `SIGSTOP` or a long `CLIENT PAUSE` runs every queued command when
/// it resumes). So after a `set`, `delete`, `invalidate`, `clear` or
/// `update_metadata` that failed with a timeout, the entry may hold either the
/// old or the new state: read it again, or write again, before relying on it.
///
/// # TLS
///
/// `rediss://` URLs use TLS through rustls with the webpki roots. rustls
/// needs a crypto provider, chosen by cargo features:
///
/// | features | provider |
/// | --- | --- |
/// | `redis` (default features on) | `tls-ring` is a default feature: ring |
/// | `redis`, `tls-aws-lc` | aws-lc-rs (chosen over ring if both are on) |
/// | `redis` with `default-features = false` | none: the application installs its own |
///
/// At `build` of a `rediss://` store, if the process has no default provider
/// yet, the store installs the one its features chose; one the application
/// installed first (`CryptoProvider::install_default`) is always kept. With
/// no provider at all, `build` is [`CacheError::Backend`] saying so, never a
/// panic. Applications that also use rustls elsewhere (reqwest, the AWS SDK)
/// should install their provider at startup, before building a store.
pub struct RedisStore<V> {
    conn: Conn,
    /// `host:port` (for a cluster, `cluster at host:port,...`), for messages
    /// (never the URL: it may hold a password).
    addr: String,
    space: Keyspace,
    scripts: Scripts,
    policy: Option<Policy>,
    default_ttl: Option<Duration>,
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
    /// cluster client after a timeout (see `after_timeout`).
    created: Instant,
    last_nudge: AtomicU64,
    /// A cluster store's watch over the record of its bucket count.
    record: Option<Arc<Record>>,
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

/// How to connect a [`RedisStore`]: made by [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder<V> {
    /// One URL for a single Redis; a cluster's seed nodes otherwise.
    urls: Vec<String>,
    cluster: bool,
    /// Buckets of a cluster store (see [`RedisStoreBuilder::buckets`]).
    buckets: Option<usize>,
    prefix: String,
    policy: Option<Policy>,
    connect_timeout: Duration,
    response_timeout: Duration,
    lock_lease: Duration,
    whole_database: bool,
    root_certificates: Option<Vec<u8>>,
    _value: PhantomData<fn() -> V>,
}

impl<V> RedisStoreBuilder<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Every Redis key this store touches starts with `prefix` (default:
    /// none): a name without `:` followed by one `:`, such as `"myapp:"`
    /// (checked by [`build`](Self::build)). Stores with different prefixes
    /// never see each other's entries. See "Prefixes" on [`RedisStore`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With an empty prefix, allow `invalidate` and `clear` to delete any key
    /// of the database, this store's or not (default: refused). Say so only
    /// when the database belongs to this store alone.
    pub fn whole_database(mut self, allowed: bool) -> Self {
        self.whole_database = allowed;
        self
    }

    /// The policy: [`LruPolicy`](crate::LruPolicy) or
    /// [`TtlPolicy`](crate::TtlPolicy) (default: none, no capacity and no
    /// default TTL).
    pub fn policy(mut self, policy: impl Into<Policy>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// For `rediss://`: trust the CA certificates in `pem` (PEM text, one or
    /// more) instead of the webpki roots, for a Redis whose certificate comes
    /// from a private CA. Ignored for `redis://`.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// How long connecting may take, TLS and authentication included
    /// (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one round trip may take, waiting for a reconnection included
    /// (default 1 s). A write that times out may still be applied later: see
    /// "Connection" on [`RedisStore`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long the placeholder of a `get_or_set` load (and the lock of a
    /// `get_or_refresh` refresh) lives unless its owner removes it first
    /// (default 10 s): the longest other callers wait for a loader that hangs
    /// or a process that died holding it. Make it longer than your slowest
    /// loader: a load that outlives its lease lets others load the key too,
    /// and its own value is not stored. See "Read-through loading" on
    /// [`RedisStore`].
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease;
        self
    }

    /// For a store made by [`RedisStore::cluster_builder`]: how many buckets
    /// its entries are spread over (default [`DEFAULT_CLUSTER_BUCKETS`], at most
    /// 16,384). Every process sharing the prefix must use the same number:
    /// it decides where each key lives. See "Redis Cluster" on [`RedisStore`].
    pub fn buckets(mut self, buckets: usize) -> Self {
        self.buckets = Some(buckets);
        self
    }

    /// Connects and checks that Redis answers (`PING`); for a store with a
    /// capacity, also checks Redis's `maxmemory-policy` (every master's, on
    /// a cluster). A cluster store also records its bucket count under the
    /// prefix, or checks it against the one recorded.
    ///
    /// # Errors
    /// [`CacheError::Policy`] for a zero timeout or lock lease, a prefix that
    /// breaks the prefix rule, an [`S3FifoPolicy`](crate::S3FifoPolicy), or
    /// (with a capacity) a `maxmemory-policy` the store does not know; for a
    /// single-node store, a node of a Redis Cluster; for a
    /// cluster store, also a prefix with `{` or `}`, a bucket count out of
    /// `1..=16384` or other than the one recorded for the prefix, or a
    /// capacity below the bucket count; `buckets` on a single-node builder;
    /// [`CacheError::Backend`] for a malformed URL, no tokio runtime, a
    /// `rediss://` URL without a TLS crypto provider, or a server that cannot
    /// be reached, refuses the credentials or does not answer within the
    /// connect timeout plus the response timeout.
    pub async fn build(self) -> Result<RedisStore<V>> {
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("lock_lease", self.lock_lease),
        ] {
            if value.is_zero() {
                return Err(CacheError::Policy(format!("{name} must be greater than zero, got {value:?}")));
            }
        }
        keyspace::check_prefix(&self.prefix)?;
        if matches!(self.policy, Some(Policy::S3Fifo(_))) {
            return Err(CacheError::Policy(
                "RedisStore does not implement S3FifoPolicy (its queues would need a script per read); use LruPolicy"
                    .into(),
            ));
        }
        let policy = self.policy;
        let bound = policy.as_ref().and_then(|p| p.max_size().map(|max| (max, matches!(p, Policy::Lru(_)))));
        let space = if self.cluster {
            let buckets = self.buckets.unwrap_or(DEFAULT_CLUSTER_BUCKETS);
            check_cluster_layout(&self.prefix, buckets, bound.map(|(max, _)| max))?;
            Keyspace::clustered(&self.prefix, buckets)
        } else {
            if let Some(buckets) = self.buckets {
                return Err(CacheError::Policy(format!(
                    "buckets({buckets}) is for stores on Redis Cluster (RedisStore::cluster_builder); a store on one \
                     Redis keeps its entries in one keyspace"
                )));
            }
            Keyspace::new(&self.prefix)
        };
        let mut infos = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            infos.push(
                redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| backend("the Redis URL is invalid".into(), e))?,
            );
        }
        let Some(first) = infos.first() else {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::Command,
                message: "a cluster store needs at least one node URL".into(),
                source: None,
            });
        };
        let tls = matches!(first.addr(), redis::ConnectionAddr::TcpTls { .. });
        if infos.iter().any(|i| matches!(i.addr(), redis::ConnectionAddr::TcpTls { .. }) != tls) {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::Command,
                message: "a cluster store's node URLs must all be redis:// or all rediss://".into(),
                source: None,
            });
        }
        let addr = if self.cluster {
            let nodes: Vec<String> = infos.iter().map(|i| i.addr().to_string()).collect();
            format!("cluster at {}", nodes.join(","))
        } else {
            first.addr().to_string()
        };
        if tls {
            // Before the client: redis-rs builds its rustls config right away.
            tls::ensure_provider()?;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::Command,
                message: "RedisStore must be built inside a tokio runtime".into(),
                source: None,
            });
        }
        let round_trip_timeout = self.response_timeout;
        let connect_and_ping = self.connect_timeout.saturating_add(self.response_timeout);
        let certificates = || redis::TlsCertificates { client_tls: None, root_cert: self.root_certificates.clone() };
        let connect = async {
            let mut conn = if self.cluster {
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(self.connect_timeout)
                    // Our own timer bounds every round trip (`round_trip`), so
                    // the client's overall timer (by default the response
                    // timeout again) would be a second timer per command for
                    // nothing. Its per-node timeout stays: without it, a
                    // refresh of the slot map that asked a hung node first
                    // would hang, and every command with it.
                    .response_timeout(self.response_timeout)
                    .overall_response_timeout(None)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(200);
                if tls {
                    builder = builder.tls(redis::cluster::TlsMode::Secure).certs(certificates());
                }
                let client = builder.build()?;
                Conn::Cluster(client.get_async_connection().await?)
            } else {
                let info = infos.into_iter().next().expect("one URL");
                let client = single_client(info, self.root_certificates.clone())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    // Our own timer bounds every round trip (`round_trip`).
                    .set_response_timeout(None)
                    // Few, short retries: a call waits for a reconnection at most its
                    // own timeout, and the next call starts a new one anyway.
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(ConnectionManager::new_with_config(client, config).await?)
            };
            redis::cmd("PING").query_async::<redis::Value>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let mut conn = match tokio::time::timeout(connect_and_ping, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(backend(format!("cannot connect to Redis at {addr}"), e)),
            Err(elapsed) => {
                return Err(CacheError::Backend {
                    kind: crate::ErrorKind::BackendTimeout,
                    message: format!("Redis at {addr} did not answer within {connect_and_ping:?}"),
                    source: Some(Arc::new(elapsed)),
                });
            }
        };
        if !space.is_clustered() {
            check_not_a_cluster(&mut conn, &addr, round_trip_timeout).await?;
        }
        if bound.is_some() {
            check_eviction_policy(&mut conn, &addr, round_trip_timeout).await?;
        }
        if space.is_clustered() {
            check_recorded_buckets(&mut conn, space.prefix(), space.buckets().len(), &addr, round_trip_timeout).await?;
        }
        let record = space.is_clustered().then(|| Arc::new(Record::default()));
        let refresh_on_get = matches!(&policy, Some(Policy::Lru(p)) if p.refreshes_on_get());
        Ok(RedisStore {
            conn,
            addr,
            space,
            scripts: Scripts::new(),
            default_ttl: policy.as_ref().and_then(Policy::default_ttl),
            policy,
            bound,
            whole_database: self.whole_database,
            sets_seen: AtomicU64::new(0),
            refresh_on_get,
            round_trip_timeout,
            lock_lease: self.lock_lease,
            flights: SingleFlight::default(),
            refreshing: Default::default(),
            counters: SharedCounters::default(),
            created: Instant::now(),
            last_nudge: AtomicU64::new(0),
            record,
            _value: PhantomData,
        })
    }
}

/// Checks what only a cluster store needs: a prefix without hash-tag
/// braces (the store puts its own tag after it), a bucket count Redis
/// Cluster can place, and a capacity every bucket gets a share of.
fn check_cluster_layout(prefix: &str, buckets: usize, max_size: Option<usize>) -> Result<()> {
    if prefix.contains(['{', '}']) {
        return Err(CacheError::Policy(format!(
            "the prefix {prefix:?} of a cluster store must not contain '{{' or '}}': the store puts a hash tag \
             after the prefix to spread entries over the cluster"
        )));
    }
    if !(1..=keyspace::MAX_BUCKETS).contains(&buckets) {
        return Err(CacheError::Policy(format!("buckets must be in 1..={}, got {buckets}", keyspace::MAX_BUCKETS)));
    }
    if let Some(max_size) = max_size.filter(|&max| max < buckets) {
        return Err(CacheError::Policy(format!(
            "a capacity of {max_size} cannot be split over {buckets} buckets (each bucket holds its share of \
             the capacity); use buckets({max_size}) or fewer"
        )));
    }
    Ok(())
}

/// Records a cluster store's bucket count under its prefix if none is, and
/// refuses one that differs from the recorded count: two processes that
/// disagree on it would look for the same key in different places, and one
/// could serve a value the other has replaced.
async fn check_recorded_buckets(
    conn: &mut Conn,
    prefix: &str,
    count: usize,
    addr: &str,
    timeout: Duration,
) -> Result<()> {
    let key = [prefix.as_bytes(), b"\xffbuckets"].concat();
    let exchange = async {
        let _: redis::Value = redis::cmd("SET").arg(&key).arg(count).arg("NX").query_async(conn).await?;
        redis::cmd("GET").arg(&key).query_async::<Option<String>>(conn).await
    };
    let recorded = match tokio::time::timeout(timeout.saturating_mul(2), exchange).await {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(e)) => return Err(backend(format!("recording the bucket count on Redis at {addr} failed"), e)),
        Err(elapsed) => {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::BackendTimeout,
                message: format!(
                    "recording the bucket count on Redis at {addr}: no reply within {:?}",
                    timeout.saturating_mul(2)
                ),
                source: Some(Arc::new(elapsed)),
            });
        }
    };
    match recorded {
        Some(recorded) if recorded != count.to_string() => Err(CacheError::Policy(format!(
            "the prefix {:?} is used on this cluster with buckets({recorded}), not {count}: every process sharing \
             a prefix must use the same count (or use a new prefix)",
            prefix
        ))),
        _ => Ok(()),
    }
}

/// A client for the single Redis at `info`: over TLS for `rediss://`, trusting
/// `root_certificates` (PEM) instead of the webpki roots when given. Shared
/// with [`NearCache`](crate::stores::NearCache)'s invalidation connection.
pub(crate) fn single_client(
    info: redis::ConnectionInfo,
    root_certificates: Option<Vec<u8>>,
) -> redis::RedisResult<redis::Client> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: root_certificates })
    } else {
        redis::Client::open(info)
    }
}

/// Refuses a node of a Redis Cluster for a single-node store: it would hold
/// only some slots and answer `MOVED` for the rest. A server that forbids
/// `INFO` is taken as it is.
async fn check_not_a_cluster(conn: &mut Conn, addr: &str, timeout: Duration) -> Result<()> {
    let mut cmd = redis::cmd("INFO");
    let asked = cmd.arg("cluster").query_async::<String>(conn);
    if let Ok(Ok(info)) = tokio::time::timeout(timeout, asked).await
        && info.lines().any(|line| line.trim() == "cluster_enabled:1")
    {
        return Err(CacheError::Policy(format!(
            "Redis at {addr} is a node of a Redis Cluster: build the store with RedisStore::cluster_builder"
        )));
    }
    Ok(())
}

/// Refuses a `maxmemory-policy` a bounded store does not know. A server that
/// forbids `CONFIG` (managed services rename it, ACLs may deny it) is taken
/// as it is.
async fn check_eviction_policy(conn: &mut Conn, addr: &str, timeout: Duration) -> Result<()> {
    let topology = match tokio::time::timeout(timeout, conn.topology()).await {
        Ok(Ok(topology)) => topology,
        Ok(Err(e)) => return Err(backend(format!("CLUSTER SLOTS on Redis at {addr} failed"), e)),
        Err(elapsed) => {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::BackendTimeout,
                message: format!("CLUSTER SLOTS on Redis at {addr}: no reply within {timeout:?}"),
                source: Some(Arc::new(elapsed)),
            });
        }
    };
    for node in conn::masters(&topology) {
        let addr = node.as_ref().map_or_else(|| addr.to_string(), |n| format!("{}:{}", n.host, n.port));
        check_node_eviction_policy(conn, node.as_ref(), &addr, timeout).await?;
    }
    Ok(())
}

/// [`check_eviction_policy`] of one node.
async fn check_node_eviction_policy(conn: &mut Conn, node: Option<&Node>, addr: &str, timeout: Duration) -> Result<()> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let asked = conn.on_node(node, &cmd);
    let reply: std::collections::HashMap<String, String> = match tokio::time::timeout(timeout, asked).await {
        Ok(Ok(reply)) => reply,
        // CONFIG renamed or disabled (managed services), or not granted by ACL.
        Ok(Err(e))
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError | redis::ServerErrorKind::NoPerm)
            ) =>
        {
            return Ok(());
        }
        Ok(Err(e)) => return Err(backend(format!("CONFIG GET maxmemory-policy on Redis at {addr} failed"), e)),
        Err(elapsed) => {
            return Err(CacheError::Backend {
                kind: crate::ErrorKind::BackendTimeout,
                message: format!("CONFIG GET maxmemory-policy on Redis at {addr}: no reply within {timeout:?}"),
                source: Some(Arc::new(elapsed)),
            });
        }
    };
    match reply.get("maxmemory-policy") {
        Some(setting) if !KNOWN_EVICTION_POLICIES.contains(&setting.as_str()) => Err(CacheError::Policy(format!(
            "Redis at {addr} has maxmemory-policy {setting:?}, which a RedisStore with a capacity does not \
             support; supported: {}",
            KNOWN_EVICTION_POLICIES.join(", ")
        ))),
        _ => Ok(()),
    }
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a store on the Redis at `url` (`redis://` or `rediss://`,
    /// with an optional `:password@` or `user:password@` and `/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder<V> {
        Self::new_builder(vec![url.into()], false)
    }

    /// A builder for a store on Redis Cluster, reached through any of
    /// `urls` (`redis://` or `rediss://` URLs of some of its nodes: the
    /// client learns the rest). Same options as [`builder`](Self::builder),
    /// and [`buckets`](RedisStoreBuilder::buckets); see "Redis Cluster" on
    /// [`RedisStore`].
    pub fn cluster_builder<I, S>(urls: I) -> RedisStoreBuilder<V>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new_builder(urls.into_iter().map(Into::into).collect(), true)
    }

    fn new_builder(urls: Vec<String>, cluster: bool) -> RedisStoreBuilder<V> {
        RedisStoreBuilder {
            urls,
            cluster,
            buckets: None,
            prefix: String::new(),
            policy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            lock_lease: load::DEFAULT_LOCK_LEASE,
            whole_database: false,
            root_certificates: None,
            _value: PhantomData,
        }
    }

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
    async fn round_trip<T>(&self, what: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        if let Some(message) = self.record.as_ref().and_then(|r| r.mismatch.get()) {
            return Err(CacheError::Policy(message.clone()));
        }
        match tokio::time::timeout(self.round_trip_timeout, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                if e.is_timeout() {
                    self.after_timeout();
                }
                Err(backend(format!("{what} on Redis at {} failed", self.addr), e))
            }
            Err(elapsed) => {
                self.after_timeout();
                Err(CacheError::Backend {
                    kind: crate::ErrorKind::BackendTimeout,
                    message: format!("{what} on Redis at {}: no reply within {:?}", self.addr, self.round_trip_timeout),
                    source: Some(Arc::new(elapsed)),
                })
            }
        }
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
                check_recorded_buckets(&mut conn, &prefix, count, &addr, timeout).await
            {
                let _ = record.mismatch.set(message);
            }
        });
    }

    /// On a cluster, after a call timed out, starts a [`conn::nudge`] (at
    /// most one per [`NUDGE_EVERY`]): if the master that did not answer has
    /// been replaced, the client learns it. Any slot will do: one `MOVED`
    /// makes the client refresh its whole slot map.
    fn after_timeout(&self) {
        if !self.space.is_clustered() {
            return;
        }
        // 0: never nudged; a time is stored as at least 1.
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let last = self.last_nudge.load(Ordering::Relaxed);
        let every = u64::try_from(NUDGE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last != 0 && now.saturating_sub(last) < every)
            || self.last_nudge.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let key = self.space.buckets()[0].recency.clone();
        tokio::spawn(conn::nudge(self.conn.clone(), key, self.round_trip_timeout));
    }

    /// The stored bytes of an entry; `None` if there is none, or only a
    /// load's placeholder (a hash: Redis answers WRONGTYPE, which costs the
    /// usual `GET` nothing).
    async fn read(&self, what: &str, full: Entry<'_>) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        match self.round_trip(what, redis::cmd("GET").arg(full).query_async(&mut conn)).await {
            Err(CacheError::Backend { source: Some(e), .. }) if is_wrong_type(&*e) => Ok(None),
            other => other,
        }
    }

    /// Writes the stored bytes of an entry (Redis key `full`) with its TTL in
    /// ms, under the capacity if there is one: one round trip, and a rebuild
    /// of the index if the write found it lost. Counts a set.
    async fn write(&self, what: &str, key: &str, stored: &[u8], ttl: Option<u64>) -> Result<()> {
        self.check_record(false);
        let full = self.space.entry(key);
        let mut conn = self.conn.clone();
        if let Some((max_size, lru)) = self.bound {
            let sample = self.sets_seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(SAMPLE_EVERY);
            let index = self.space.bucket_index(key);
            let bucket = &self.space.buckets()[index];
            let mut cmd = evalsha(&self.scripts.set_bounded, 3);
            cmd.arg(full).arg(&bucket.recency).arg(&bucket.expiry);
            cmd.arg(stored).arg(ttl.unwrap_or(0)).arg(self.space.share(max_size, index)).arg(if lru {
                "1"
            } else {
                "0"
            });
            cmd.arg(if sample { "1" } else { "0" });
            let (expired, evicted, lost): (u64, u64, u8) =
                self.round_trip(what, eval(&mut conn, &self.scripts.set_bounded, &cmd)).await?;
            SharedCounters::add(&self.counters.expirations, expired);
            SharedCounters::add(&self.counters.evictions, evicted);
            SharedCounters::add(&self.counters.sets, 1);
            if lost == 1 {
                self.rebuild_index(index, max_size, lru).await;
            }
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(full).arg(stored);
        if let Some(ms) = ttl {
            cmd.arg("PX").arg(ms);
        }
        self.round_trip(what, cmd.query_async::<()>(&mut conn)).await?;
        SharedCounters::add(&self.counters.sets, 1);
        Ok(())
    }

    /// Rebuilds bucket `index`'s lost index: adopts every entry of the
    /// bucket, a SCAN page at a time (on a cluster, on the master of the
    /// bucket's slot only: the bucket's keys are all there), and evicts down
    /// to its share of the capacity. Best effort: the `set` that asked has
    /// been applied, so a failure here is not its failure; the sentinel is
    /// removed again so that a later `set` retries.
    async fn rebuild_index(&self, index: usize, max_size: usize, lru: bool) {
        let bucket = &self.space.buckets()[index];
        let scan_match = self.space.scan_match(None, Some(index));
        let slot = keyspace::slot(&bucket.recency);
        let outcome: Result<()> = async {
            // On a cluster the bucket's keys are exactly its slot's (with
            // other stores' keys whose tags share the slot): a slot holding
            // few keys is listed directly, so a new bucket (its first set
            // finds no index either) costs two small commands, not a walk of
            // the master.
            if self.space.is_clustered() {
                let mut conn = self.conn.clone();
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("COUNTKEYSINSLOT").arg(slot);
                let count: u64 = self.round_trip("set", conn.on_slot(slot, &cmd)).await?;
                if count <= SLOT_LIST_MAX {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("GETKEYSINSLOT").arg(slot).arg(count);
                    let listed: Vec<Vec<u8>> = self.round_trip("set", conn.on_slot(slot, &cmd)).await?;
                    let mine: Vec<&[u8]> = listed
                        .iter()
                        .filter(|raw| self.space.user_key(raw, None).is_some())
                        .map(Vec::as_slice)
                        .collect();
                    for page in mine.chunks(BATCH) {
                        if self.adopt(index, max_size, lru, page).await? {
                            return Ok(());
                        }
                    }
                    return Ok(());
                }
            }
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(&scan_match).arg("COUNT").arg(BATCH).arg("TYPE").arg("string");
                let mut conn = self.conn.clone();
                let (next, page): (u64, Vec<Vec<u8>>) = self.round_trip("set", conn.on_slot(slot, &cmd)).await?;
                let mine: Vec<&[u8]> =
                    page.iter().filter(|raw| self.space.user_key(raw, None).is_some()).map(Vec::as_slice).collect();
                if !mine.is_empty() && self.adopt(index, max_size, lru, &mine).await? {
                    return Ok(());
                }
                cursor = next;
                if cursor == 0 {
                    return Ok(());
                }
            }
        }
        .await;
        if outcome.is_err() {
            let members = if lru { &bucket.recency } else { &bucket.expiry };
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("ZREM");
            let forget = cmd.arg(members).arg("").query_async::<redis::Value>(&mut conn);
            let _ = tokio::time::timeout(self.round_trip_timeout, forget).await;
        }
    }

    /// Adopts a page of bucket `index`'s entries into its rebuilt index
    /// (`ADOPT`); whether the index was lost again meanwhile (the rebuild
    /// then stops: the set that notices starts a new one).
    async fn adopt(&self, index: usize, max_size: usize, lru: bool, page: &[&[u8]]) -> Result<bool> {
        let bucket = &self.space.buckets()[index];
        let mut conn = self.conn.clone();
        let mut call = self.scripts.adopt.key(&bucket.recency);
        call.key(&bucket.expiry);
        for key in page {
            call.key(*key);
        }
        call.arg(self.space.share(max_size, index)).arg(if lru { "1" } else { "0" });
        let (_adopted, evicted, expired, lost): (u64, u64, u64, u8) =
            self.round_trip("set", call.invoke_async(&mut conn)).await?;
        SharedCounters::add(&self.counters.evictions, evicted);
        SharedCounters::add(&self.counters.expirations, expired);
        Ok(lost == 1)
    }

    /// Who serves which slots (empty for a single Redis), under the timeout.
    async fn topology(&self, what: &str) -> Result<Topology> {
        let mut conn = self.conn.clone();
        self.round_trip(what, conn.topology()).await
    }

    /// One SCAN page on `node` (a cluster's master; `None` for a single
    /// Redis): the next cursor and the raw keys. With `entries_only`, only
    /// strings (`TYPE string`): entries, not the placeholders of loads in
    /// progress (hashes); deleting walks see both.
    async fn scan_page(
        &self,
        what: &str,
        node: Option<&Node>,
        cursor: u64,
        scan_match: &[u8],
        entries_only: bool,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(scan_match).arg("COUNT").arg(BATCH);
        if entries_only {
            cmd.arg("TYPE").arg("string");
        }
        self.round_trip(what, conn.on_node(node, &cmd)).await
    }

    /// Deletes entries (Redis keys, all of bucket `index`), and the
    /// placeholders of loads in progress among them (which cancels those
    /// loads); how many entries existed.
    async fn unlink(&self, what: &str, index: usize, full_keys: &[&[u8]]) -> Result<usize> {
        if full_keys.is_empty() {
            return Ok(0);
        }
        let bucket = &self.space.buckets()[index];
        let mut conn = self.conn.clone();
        let mut call = self.scripts.delete.prepare_invoke();
        // Only a bounded store has indexes to declare (see `DELETE`).
        if self.bound.is_some() {
            call.key(&bucket.recency).key(&bucket.expiry);
        }
        for key in full_keys {
            call.key(*key);
        }
        call.arg(if self.bound.is_some() { "1" } else { "0" });
        self.round_trip(what, call.invoke_async(&mut conn)).await
    }

    /// Deletes a SCAN page's entries that match `pattern`: one call per
    /// bucket among them (a cluster's buckets are in different slots).
    async fn unlink_page(&self, what: &str, page: &[Vec<u8>], pattern: Option<&Pattern>) -> Result<usize> {
        let mut by_bucket: Vec<(usize, Vec<&[u8]>)> = Vec::new();
        for raw in page {
            let Some(key) = self.space.user_key(raw, pattern) else { continue };
            let index = self.space.bucket_index(key);
            match by_bucket.iter_mut().find(|(i, _)| *i == index) {
                Some((_, keys)) => keys.push(raw),
                None => by_bucket.push((index, vec![raw.as_slice()])),
            }
        }
        let mut removed = 0;
        for (index, keys) in &by_bucket {
            removed += self.unlink(what, *index, keys).await?;
        }
        Ok(removed)
    }

    /// Refuses `invalidate` and `clear` on an empty prefix unless the
    /// builder allowed the whole database.
    fn check_may_delete_many(&self, what: &str) -> Result<()> {
        if self.space.prefix().is_empty() && !self.whole_database {
            return Err(CacheError::Policy(format!(
                "{what} on a RedisStore without a prefix could delete keys that are not the store's; give the store \
                 a prefix, or allow it with RedisStoreBuilder::whole_database(true) if the database is its alone"
            )));
        }
        Ok(())
    }

    /// Walks the entries matching `pattern` (all when `None`) a SCAN page at a
    /// time, on every master of a cluster; with `delete`, deletes each page
    /// and returns how many existed, otherwise collects the user keys into
    /// `found`. On a cluster, a walk during which slots moved (a SCAN cursor
    /// does not follow them) is done again, up to [`WALK_ATTEMPTS`] times.
    async fn walk(
        &self,
        what: &str,
        pattern: Option<&Pattern>,
        delete: bool,
        found: &mut HashSet<String>,
    ) -> Result<usize> {
        let mut removed = 0;
        let mut topology = self.topology(what).await?;
        for attempt in 0..WALK_ATTEMPTS {
            if topology.moving {
                // Keys of a migrating slot are on two masters, moving from one
                // to the other: a walk could pass both without seeing them.
                tokio::time::sleep(WALK_RETRY_WAIT.saturating_mul(attempt.min(10) as u32 + 1)).await;
                topology = self.topology(what).await?;
                continue;
            }
            // Every master at once: a walk costs the slowest master's pages.
            let masters = conn::masters(&topology);
            let walks = masters.iter().map(|node| async move {
                let mut found = HashSet::new();
                let removed = self.walk_node(what, node.as_ref(), pattern, delete, &mut found).await?;
                Ok::<_, CacheError>((removed, found))
            });
            for walked in futures_util::future::join_all(walks).await {
                let (count, keys) = walked?;
                removed += count;
                found.extend(keys);
            }
            let now = self.topology(what).await?;
            if now == topology {
                return Ok(removed);
            }
            topology = now;
        }
        Err(CacheError::Backend {
            kind: crate::ErrorKind::ServerBusy,
            message: format!(
                "{what} on Redis at {}: the cluster's slots kept moving during {WALK_ATTEMPTS} attempts",
                self.addr
            ),
            source: None,
        })
    }

    /// [`walk`](Self::walk) on one node. A page's delete and the next SCAN go
    /// out together on the multiplexed connection, so a walk costs one round
    /// trip per page, not two.
    async fn walk_node(
        &self,
        what: &str,
        node: Option<&Node>,
        pattern: Option<&Pattern>,
        delete: bool,
        found: &mut HashSet<String>,
    ) -> Result<usize> {
        let scan_match = self.space.scan_match(pattern, None);
        let mut removed = 0;
        let (mut cursor, mut page) = self.scan_page(what, node, 0, &scan_match, !delete).await?;
        loop {
            let next_page = async {
                if cursor == 0 {
                    Ok((0, Vec::new()))
                } else {
                    self.scan_page(what, node, cursor, &scan_match, !delete).await
                }
            };
            if delete {
                let (unlinked, next) = tokio::join!(self.unlink_page(what, &page, pattern), next_page);
                removed += unlinked?;
                (cursor, page) = next?;
            } else {
                found.extend(page.iter().filter_map(|raw| self.space.user_key(raw, pattern)).map(str::to_owned));
                if cursor == 0 {
                    return Ok(removed);
                }
                (cursor, page) = next_page.await?;
                continue;
            }
            if cursor == 0 && page.is_empty() {
                return Ok(removed);
            }
        }
    }
}

/// `EVALSHA <sha> <keys>`, for the caller to add keys and arguments to:
/// written straight into one command, where redis-rs's `ScriptInvocation`
/// copies every key and argument into a vector of its own first.
fn evalsha(script: &redis::Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs an [`evalsha`] command, loading the script first if Redis does not
/// know it (after a restart or `SCRIPT FLUSH`).
async fn eval<T: redis::FromRedisValue>(
    conn: &mut Conn,
    script: &redis::Script,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.prepare_invoke().load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// Whether Redis refused a command for the key's type: a string command on a
/// load's placeholder.
fn is_wrong_type(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<redis::RedisError>().is_some_and(|e| e.code() == Some("WRONGTYPE"))
}

impl<V> RedisStore<V> {
    /// Whether a script may have failed because its slot is migrating (a
    /// cluster store only): Redis refused it (`TRYAGAIN`, `ASK`), or the
    /// round trip timed out, which is what redis-rs's retries of `TRYAGAIN`
    /// end in. The caller then falls back to plain commands, which follow a
    /// migration; after a timeout on a hung master the fallback times out
    /// too, so such a call can take two timeouts.
    fn maybe_migrating(&self, e: &CacheError) -> bool {
        self.space.is_clustered()
            && matches!(e, CacheError::Backend { source: Some(source), .. }
                if is_redirect(&**source) || source.downcast_ref::<tokio::time::error::Elapsed>().is_some())
    }
}

/// Whether Redis Cluster redirected or deferred a command: `ASK` or `MOVED`
/// (the slot is elsewhere, for now or for good), `TRYAGAIN` (its keys are
/// split between two masters during a migration).
fn is_redirect(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<redis::RedisError>().is_some_and(|e| {
        matches!(
            e.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::Ask | redis::ServerErrorKind::Moved | redis::ServerErrorKind::TryAgain
            )
        ) || matches!(e.code(), Some("ASK" | "MOVED" | "TRYAGAIN"))
    })
}

/// The TTL in whole milliseconds for Redis: rounded up (a TTL is never
/// shortened to 0), capped at [`MAX_TTL_MS`].
fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A backend error: `message` says what was being done, `e` is the source
/// (not repeated in the message, so a report that prints the chain prints
/// it once).
pub(crate) fn backend(message: String, e: redis::RedisError) -> CacheError {
    CacheError::backend(error_kind(&e), message, Some(Arc::new(e)))
}

/// Which kind of backend failure a redis-rs error is.
fn error_kind(e: &redis::RedisError) -> crate::ErrorKind {
    use redis::RetryMethod;
    if e.is_timeout() {
        crate::ErrorKind::BackendTimeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        crate::ErrorKind::Connection
    } else {
        match e.retry_method() {
            RetryMethod::WaitAndRetry
            | RetryMethod::AskRedirect
            | RetryMethod::MovedRedirect
            | RetryMethod::RefreshSlotsAndRetry
            | RetryMethod::RetryImmediately => crate::ErrorKind::ServerBusy,
            RetryMethod::Reconnect | RetryMethod::ReconnectFromInitialConnections => crate::ErrorKind::Connection,
            _ => crate::ErrorKind::Command,
        }
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

impl<V> CacheStore<V> for RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn get(&self, key: &str) -> Result<Option<V>> {
        check_key(key)?;
        let started = self.counters.sample_next_get().then(Instant::now);
        let full = self.space.entry(key);
        let mut conn = self.conn.clone();
        let (stored, expired) = if self.refresh_on_get {
            let bucket = self.space.bucket(key);
            let mut cmd = evalsha(&self.scripts.get_lru, 3);
            cmd.arg(full).arg(&bucket.recency).arg(&bucket.expiry);
            let reply = match self.round_trip("get", eval(&mut conn, &self.scripts.get_lru, &cmd)).await {
                // On a cluster, while the bucket's slot migrates, its keys are
                // split between two masters and Redis refuses the script
                // (TRYAGAIN, retried by the client until the timeout): read
                // the entry with a plain GET, which follows the migration,
                // without marking it used.
                Err(e) if self.maybe_migrating(&e) => match self.read("get", full).await? {
                    Some(bytes) => redis::Value::BulkString(bytes),
                    None => redis::Value::Nil,
                },
                other => other?,
            };
            match reply {
                redis::Value::BulkString(bytes) => (Some(bytes), 0),
                redis::Value::Int(n) => (None, n.unsigned_abs()),
                redis::Value::Nil => (None, 0),
                other => {
                    return Err(CacheError::Backend {
                        kind: crate::ErrorKind::Command,
                        message: format!("get on Redis at {}: unexpected reply {other:?}", self.addr),
                        source: None,
                    });
                }
            }
        } else {
            (self.read("get", full).await?, 0)
        };
        let value = stored.map(|bytes| format::decode_value(key, &bytes)).transpose()?;
        let counter = if value.is_some() { &self.counters.hits } else { &self.counters.misses };
        SharedCounters::add(counter, 1);
        SharedCounters::add(&self.counters.expirations, expired);
        if let Some(started) = started {
            self.counters.record_latency(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(value)
    }

    async fn set(&self, key: &str, value: V, options: SetOptions) -> Result<()> {
        check_key(key)?;
        let ttl = check_set_options(&options, self.default_ttl)?.map(ttl_millis);
        let stored = format::encode(&value, options.metadata.as_ref())?;
        drop(value);
        self.write("set", key, &stored, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        // A script, not UNLINK: a load's placeholder is deleted (cancelling
        // the load) but is no entry that existed.
        let full = self.space.entry(key).to_vec();
        let existed = self.unlink("delete", self.space.bucket_index(key), &[&full]).await? > 0;
        SharedCounters::add(&self.counters.deletes, u64::from(existed));
        Ok(existed)
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        // TYPE, not EXISTS: a load's placeholder (a hash) is no entry.
        let kind: String =
            self.round_trip("contains", redis::cmd("TYPE").arg(self.space.entry(key)).query_async(&mut conn)).await?;
        Ok(kind == "string")
    }

    async fn get_metadata(&self, key: &str) -> Result<Option<Metadata>> {
        check_key(key)?;
        let stored = self.read("get_metadata", self.space.entry(key)).await?;
        stored.map(|bytes| format::decode_metadata(key, &bytes)).transpose()
    }

    async fn update_metadata(&self, key: &str, metadata: Metadata) -> Result<bool> {
        check_key(key)?;
        check_metadata(&metadata)?;
        let full = self.space.entry(key);
        let mut conn = self.conn.clone();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(current) = self.read("update_metadata", full).await? else {
                return Ok(false);
            };
            let updated = format::merge_metadata(key, &current, metadata.clone())?;
            let written: bool = self
                .round_trip(
                    "update_metadata",
                    self.scripts.replace_if_unchanged.key(full).arg(current).arg(updated).invoke_async(&mut conn),
                )
                .await?;
            if written {
                return Ok(true);
            }
        }
        Err(CacheError::Backend {
            kind: crate::ErrorKind::ServerBusy,
            message: format!(
                "update_metadata on Redis at {}: the entry changed under every one of {UPDATE_ATTEMPTS} attempts",
                self.addr
            ),
            source: None,
        })
    }

    async fn invalidate(&self, pattern: &str) -> Result<usize> {
        let pattern = Pattern::new(pattern)?;
        self.check_may_delete_many("invalidate")?;
        let removed = self.walk("invalidate", Some(&pattern), true, &mut HashSet::new()).await?;
        SharedCounters::add(&self.counters.deletes, removed as u64);
        Ok(removed)
    }

    async fn keys(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        let mut found = HashSet::new();
        self.walk("keys", pattern.as_ref(), false, &mut found).await?;
        Ok(found.into_iter().collect())
    }

    async fn size(&self) -> Result<usize> {
        if let Some((_, lru)) = self.bound {
            // Every bucket's index, [`SIZE_CONCURRENCY`] at a time (one on a
            // single Redis): each call's timer starts when it is sent.
            let mut total = Some(0usize);
            for chunk in self.space.buckets().chunks(SIZE_CONCURRENCY) {
                let counts = chunk.iter().map(|bucket| async move {
                    let mut conn = self.conn.clone();
                    let members = if lru { &bucket.recency } else { &bucket.expiry };
                    let mut call = self.scripts.size_bounded.key(members);
                    self.round_trip("size", call.key(&bucket.expiry).invoke_async::<i64>(&mut conn)).await
                });
                for counted in futures_util::future::join_all(counts).await {
                    // -1: no index (new, or lost until the next set rebuilds it): count by walking.
                    total = total.zip(usize::try_from(counted?).ok()).map(|(a, b)| a + b);
                }
                if total.is_none() {
                    break;
                }
            }
            if let Some(n) = total {
                return Ok(n);
            }
        }
        let mut found = HashSet::new();
        self.walk("size", None, false, &mut found).await?;
        Ok(found.len())
    }

    async fn clear(&self) -> Result<()> {
        self.check_may_delete_many("clear")?;
        let removed = self.walk("clear", None, true, &mut HashSet::new()).await?;
        SharedCounters::add(&self.counters.deletes, removed as u64);
        Ok(())
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_load(key, loader, options).await
    }

    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    fn reset_stats(&self) {
        self.counters.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(250)), 250);
        assert_eq!(ttl_millis(Duration::from_micros(250_001)), 251);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS as u64);
    }
}
