//! The single-threaded heart of the memory store.
//!
//! [`Engine`] holds the entries and carries out the policy. It never blocks,
//! never does I/O and never reads a clock it was not given. `MemoryStore` puts
//! it behind a `RwLock` for threads; the wasm binding owns one directly.
//!
//! Data structures (n = entries):
//! - `slots`: a slab of entries addressed by a `u32` slot id, which stays the
//!   same for the life of an entry. Freed slots are chained into a free list
//!   and reused, so churn allocates nothing but the key.
//! - `index`: a `hashbrown::HashTable` of slot ids, hashed by key (4 bytes a
//!   bucket instead of a key and a pointer).
//! - `lists`: intrusive doubly linked lists threaded through the slots
//!   (`prev`/`next`): one recency list under LRU (and set order under TTL),
//!   the small and main FIFO queues under S3-FIFO. Push, unlink, pop: O(1).
//! - `ghost` (S3-FIFO only): the hashes of keys recently evicted from the
//!   small queue, in a ring with a hash index (classic S3-FIFO), or as
//!   fingerprints in buckets of four (the adaptive policy, `ghost.rs`); O(1).
//! - the adaptive policy's frequency sketch (`sketch.rs`) and shadow caches
//!   (`shadow.rs`), changed on writes only.
//! - `expiries`: the slots that have a TTL, ordered by expiry time. Insert,
//!   remove, soonest: O(log n).
//!
//! Reads that change no shared order ([`Engine::get_shared`]) take `&self`: a
//! hit under S3-FIFO only bumps the entry's 2-bit frequency (an atomic byte)
//! and the read counters are atomics, so threads read one engine in parallel
//! under a read lock. Exact LRU reorders on every hit and goes through
//! [`Engine::get_exclusive`].
//!
//! Expired entries are never returned. They are reclaimed when a call touches
//! them, up to [`RECLAIM_PER_WRITE`] more on every `set`, all of them when the
//! entry count is asked for, and before any live entry is evicted for room.
//!
//! Foreign code: a value's `Clone` runs while the engine is borrowed, and its
//! `Drop` may panic. Every removal first finishes all bookkeeping and only then
//! drops the old value (see [`Removed`]), so a panicking `Drop` leaves the
//! engine consistent and every other entry in place.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use hashbrown::HashTable;

use crate::clock::{Clock, END_OF_TIME, Nanos, duration_nanos};
use crate::errors::{CacheError, Result};
use crate::metrics::{CacheStats, Counters, ReadCounters};
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::store::{Metadata, SetOptions, check_key, check_set_options};

use super::ghost::BucketGhost;
use super::shadow::{self, Sampler, Setting};
use super::sketch::FrequencySketch;

/// How many expired entries each `set` reclaims beyond the one it touches.
pub(crate) const RECLAIM_PER_WRITE: usize = 8;

/// "No slot": the end of a list, or an empty free list.
const NIL: u32 = u32::MAX;
/// The `expires_at` of an entry without a TTL.
const NEVER: Nanos = Nanos::MAX;
/// The most entries one engine can hold (slot ids are `u32`, `NIL` excluded).
const MAX_SLOTS: usize = NIL as usize;

/// The list an entry is on. LRU and TTL use only `MAIN`.
const SMALL: u8 = 0;
const MAIN: u8 = 1;
const FREE: u8 = 2;

/// S3-FIFO's parameters. As in the paper and libCacheSim, the small queue
/// starts at a tenth of the capacity and an entry read twice while in it moves
/// to main. The ghost remembers nine times as many evicted keys as the small
/// queue holds (0.9 x capacity at the start). Unlike plain S3-FIFO, the small
/// queue's size then adapts to the workload (see [`Climber`]).
const SMALL_SHARE: usize = 10;
pub(super) const MOVE_TO_MAIN: u8 = 2;
const GHOST_PER_SMALL: usize = 9;
/// The CLOCK count's ceiling (the low two bits of a slot's `freq`).
pub(super) const MAX_FREQ: u8 = 3;
const CLOCK_BITS: u8 = 0b11;
/// The hits not yet handed to the adaptive policy's sketch: bits 2-5 of `freq`.
const PENDING_SHIFT: u8 = 2;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const MAX_PENDING: u8 = 15;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) type KeyHasher = hashbrown::DefaultHashBuilder;
#[cfg(target_arch = "wasm32")]
pub(crate) type KeyHasher = super::hasher::SeededState;

struct Slot<V> {
    key: Box<str>,
    /// `None` only on a free slot.
    value: Option<V>,
    // Boxed: most entries carry none, and a map is three words.
    metadata: Option<Box<Metadata>>,
    expires_at: Nanos,
    prev: u32,
    /// The next slot on its list, or on the free list.
    next: u32,
    /// S3-FIFO's access count (bits 0-1, saturating at `MAX_FREQ`) and,
    /// under the adaptive policy, the hits since the entry was last looked at
    /// by the eviction (bits 2-5, saturating at 15), which the sketch takes
    /// in one batch then. Atomic so that a shared read can bump it.
    freq: AtomicU8,
    list: u8,
    /// When it was last set, wrapping: breaks ties between equal expiry
    /// times (the entry set first goes first). Fits in the slot's padding.
    seq: u32,
}

impl<V> Slot<V> {
    #[inline]
    fn expired(&self, now: Nanos) -> bool {
        self.expires_at != NEVER && self.expires_at <= now
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };
}

/// Which rule picks the entry to evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lru { refresh_on_get: bool },
    Ttl,
    S3Fifo,
}

/// An entry taken out of the engine, handed back so the caller drops it after
/// the engine is consistent again (a value's `Drop` may panic), or passes it
/// to whoever wants to know (the JS eviction listener).
pub(crate) struct Removed<V> {
    #[allow(dead_code)] // read by the wasm bindings' listeners
    pub key: Box<str>,
    #[allow(dead_code)]
    pub value: V,
    #[allow(dead_code)]
    pub metadata: Option<Box<Metadata>>,
}

/// The entries one call removed, kept until the engine is consistent again:
/// up to two inline (a `set` removes the replaced entry or one evicted, and
/// rarely expired ones too), more on the heap. Small, because every `set`
/// returns one.
pub(crate) struct Removals<V> {
    inline: [Option<(Removed<V>, Reason)>; 2],
    len: usize,
    spill: Vec<(Removed<V>, Reason)>,
}

impl<V> Removals<V> {
    pub fn new() -> Self {
        Removals { inline: [const { None }; 2], len: 0, spill: Vec::new() }
    }

    fn push(&mut self, removed: Removed<V>, reason: Reason) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some((removed, reason));
            self.len += 1;
        } else {
            self.spill.push((removed, reason));
        }
    }

    /// Everything removed, in order.
    #[allow(dead_code)] // the wasm bindings' eviction listener
    pub fn into_vec(self) -> Vec<(Removed<V>, Reason)> {
        let mut all: Vec<_> = self.inline.into_iter().flatten().collect();
        all.extend(self.spill);
        all
    }
}

/// How fresh an entry read by `get_or_refresh` is.
pub(crate) enum Freshly<V> {
    Fresh(V),
    Stale { value: V, refresh: bool },
    Miss,
}

/// An entry stored by `get_or_refresh`: fresh until `fresh_until`, then stale
/// until it expires; whether a refresh is running, and when the next may start.
struct Freshness {
    fresh_until: Nanos,
    refreshing: bool,
    retry_at: Nanos,
    failures: u32,
}

/// What a shared read found.
pub(crate) enum Lookup<R> {
    Hit(R),
    Miss,
    /// An expired entry: a miss, which the caller should reclaim under an
    /// exclusive borrow ([`Engine::reclaim_if_expired`]).
    Expired,
}

/// The recently evicted keys of S3-FIFO, by hash: a FIFO of at most `cap`
/// remembered hashes. A hash that is taken back (its key came back) frees its
/// place at once, as in libCacheSim; its queue cell stays behind as a
/// tombstone until it reaches the front or the queue is compacted.
struct Ghost {
    /// Hashes in eviction order; `queue[i]` has sequence number `front + i`.
    queue: std::collections::VecDeque<u64>,
    front: u64,
    /// The sequence numbers of the remembered (non-tombstone) cells.
    index: HashTable<u64>,
    cap: usize,
}

impl Ghost {
    fn new(cap: usize) -> Self {
        Ghost { queue: std::collections::VecDeque::new(), front: 0, index: HashTable::new(), cap }
    }

    fn hash_at(queue: &std::collections::VecDeque<u64>, front: u64, seq: u64) -> u64 {
        queue[(seq - front) as usize]
    }

    fn insert(&mut self, hash: u64) {
        if self.cap == 0 {
            return;
        }
        while self.index.len() >= self.cap {
            self.pop_front();
        }
        if self.queue.len() >= 2 * self.cap {
            self.compact();
        }
        let seq = self.front + self.queue.len() as u64;
        self.queue.push_back(hash);
        let (queue, front) = (&self.queue, self.front);
        self.index.insert_unique(hash, seq, |&s| Self::hash_at(queue, front, s));
    }

    fn pop_front(&mut self) {
        let Some(hash) = self.queue.pop_front() else { return };
        let seq = self.front;
        self.front += 1;
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == seq) {
            entry.remove();
        }
    }

    /// Drops the tombstones, renumbering the remembered cells.
    fn compact(&mut self) {
        let (queue, front) = (std::mem::take(&mut self.queue), self.front);
        let live: std::collections::VecDeque<u64> = queue
            .iter()
            .enumerate()
            .filter(|&(i, &hash)| {
                let seq = front + i as u64;
                self.index.find(hash, |&s| s == seq).is_some()
            })
            .map(|(_, &hash)| hash)
            .collect();
        self.index.clear();
        self.front = 0;
        for (i, &hash) in live.iter().enumerate() {
            self.index.insert_unique(hash, i as u64, |&s| live[s as usize]);
        }
        self.queue = live;
    }

    /// Whether `hash` is remembered; forgets it if so.
    fn take(&mut self, hash: u64) -> bool {
        let (queue, front) = (&self.queue, self.front);
        match self.index.find_entry(hash, |&s| Self::hash_at(queue, front, s) == hash) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn clear(&mut self) {
        *self = Ghost::new(self.cap);
    }

    fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        while self.index.len() > cap {
            self.pop_front();
        }
        // Tombstones stay bounded by twice the (new) capacity.
        if self.queue.len() > 2 * cap.max(1) {
            self.compact();
        }
    }
}

/// Hill climbing of S3-FIFO's small-queue size, as Caffeine sizes its
/// admission window: every `period` gets (20 x capacity), compare the hit
/// rate with the previous period's; keep moving the size the same way while
/// the rate does not drop, turn back when it does. Steps start at 1/32 of the
/// capacity, shrink by 2% each period as it settles, and start over when the
/// rate moves by 5 points or more (the workload changed). Measured on the ARC
/// traces, Zipf and loops (README): a small queue of ~1% wins on Zipf and
/// loops, ~10% or more on the ARC traces; no fixed size wins both.
///
/// Integer arithmetic only, so the model test can replay it exactly.
#[derive(Clone, Debug)]
pub(super) struct Climber {
    period: u64,
    last_gets: u64,
    last_misses: u64,
    prev: Option<(u64, u64)>,
    step: usize,
    initial_step: usize,
    down: bool,
}

impl Climber {
    pub(super) fn new(max: usize) -> Self {
        let step = (max / 32).max(1);
        Climber {
            period: 20u64.saturating_mul(max as u64),
            last_gets: 0,
            last_misses: 0,
            prev: None,
            step,
            initial_step: step,
            down: true,
        }
    }

    /// Given the engine's get and miss counts so far, the small queue's new
    /// size when a period has passed.
    pub(super) fn adapt(&mut self, gets: u64, misses: u64, small: usize, max: usize) -> Option<usize> {
        // Counters reset by `reset_stats`: start a new period from here.
        if gets < self.last_gets || misses < self.last_misses {
            (self.last_gets, self.last_misses, self.prev) = (gets, misses, None);
            return None;
        }
        let period_gets = gets - self.last_gets;
        if period_gets < self.period {
            return None;
        }
        let period_hits = period_gets - (misses - self.last_misses);
        (self.last_gets, self.last_misses) = (gets, misses);
        if let Some((hits_before, gets_before)) = self.prev {
            let now = u128::from(period_hits) * u128::from(gets_before);
            let before = u128::from(hits_before) * u128::from(period_gets);
            if now < before {
                self.down = !self.down;
            }
            if now.abs_diff(before) * 20 >= u128::from(period_gets) * u128::from(gets_before) {
                self.step = self.initial_step;
            } else {
                self.step = (self.step * 98 / 100).max(1);
            }
        }
        self.prev = Some((period_hits, period_gets));
        let most = (max * 8 / 10).max(1);
        Some(if self.down { small.saturating_sub(self.step).max(1) } else { small.saturating_add(self.step).min(most) })
    }
}

/// The ghost's size for a small queue of `small` entries.
pub(super) fn ghost_cap(small: usize, max: usize) -> usize {
    small.saturating_mul(GHOST_PER_SMALL).min(max.saturating_mul(3))
}

/// The adaptive S3-FIFO's state beyond the queues (see `S3FifoPolicy`): the
/// frequency sketch, the fixed-size ghost, the shadow caches choosing the
/// setting, and the buffer of sampled hits that readers fill for them.
/// Everything here changes on the write path only.
pub(super) struct Adaptive {
    pub(super) sketch: FrequencySketch,
    pub(super) ghost: BucketGhost,
    /// The shadows; `None` in a shard that follows another's choice.
    pub(super) sampler: Option<Sampler>,
    pub(super) setting: Setting,
    /// The setting shared by the shards of a store (an index in
    /// [`shadow::SETTINGS`]): the first shard's shadows choose it, the
    /// others read it on their writes.
    pub(super) shared: Option<Arc<AtomicU8>>,
}

/// Whether the adaptive policy is built: not on wasm32, for the npm
/// package's size budget (stores there run the classic policy). Every use of
/// `Engine::adaptive` tests this constant first, so that its code is
/// compiled out there.
const ADAPTIVE_BUILT: bool = cfg!(not(target_arch = "wasm32"));

type AdaptiveBox = Box<Adaptive>;

impl Adaptive {
    /// The state for a capacity of `max_size`, and the sample mask; `None`
    /// where the adaptive policy is not built.
    #[cfg(not(target_arch = "wasm32"))]
    fn new(max_size: usize) -> Option<(AdaptiveBox, u32)> {
        let (mask, shadow_cap) = shadow::sampling(max_size);
        let adaptive = Adaptive {
            sketch: FrequencySketch::new(max_size),
            ghost: BucketGhost::new(shadow::ghost_size(max_size)),
            sampler: Some(Sampler::new(shadow_cap)),
            setting: shadow::SETTINGS[0],
            shared: None,
        };
        Some((Box::new(adaptive), mask))
    }

    #[cfg(target_arch = "wasm32")]
    fn new(_max_size: usize) -> Option<(AdaptiveBox, u32)> {
        None
    }
}

pub(crate) struct Engine<V> {
    slots: Vec<Slot<V>>,
    free: u32,
    live: usize,
    index: HashTable<u32>,
    hasher: KeyHasher,
    lists: [List; 2],
    ghost: Ghost,
    expiries: BTreeSet<(Nanos, u32, u32)>,
    next_seq: u32,
    /// Loads in progress (`get_or_set`), by key: the placeholder a load must
    /// still find to store its value. Any write, delete, invalidate or clear
    /// of the key removes it, so a load that began before them cannot bring
    /// back older data.
    loads: std::collections::HashMap<Box<str>, u64, KeyHasher>,
    next_token: u64,
    /// The freshness of the entries `get_or_refresh` stored, by key. Any
    /// other write or removal of the key drops it (the entry is then plain).
    fresh: std::collections::HashMap<u32, Freshness, KeyHasher>,
    kind: Kind,
    max_size: usize,
    small_cap: usize,
    climber: Option<Climber>,
    /// The adaptive policy's state (S3-FIFO only, unless made classic).
    adaptive: Option<AdaptiveBox>,
    /// Hits on keys whose hash passes this mask are recorded for the shadows
    /// ([`shadow::sampled`]); `u32::MAX` without an adaptive policy.
    sample_mask: u32,
    /// S3-FIFO fills main directly until the first eviction (libCacheSim's
    /// refinement: what arrives while the cache still has room is kept longer).
    evicted_once: bool,
    default_ttl: Option<std::time::Duration>,
    clock: Clock,
    pub counters: Counters,
    reads: ReadCounters,
}

impl<V> Engine<V> {
    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn new(policy: Policy, clock: Clock) -> Self {
        Self::with_hasher(policy, clock, KeyHasher::default())
    }

    /// An engine hashing keys with `hasher` (shards of one store share theirs,
    /// so the store hashes a key once).
    pub fn with_hasher(policy: Policy, clock: Clock, hasher: KeyHasher) -> Self {
        let kind = match &policy {
            Policy::Lru(p) => Kind::Lru { refresh_on_get: p.refreshes_on_get() },
            Policy::Ttl(_) => Kind::Ttl,
            Policy::S3Fifo(_) => Kind::S3Fifo,
        };
        let adaptive = matches!(&policy, Policy::S3Fifo(p) if p.is_adaptive());
        let mut engine = Engine {
            slots: Vec::new(),
            free: NIL,
            live: 0,
            index: HashTable::new(),
            hasher,
            lists: [List::EMPTY; 2],
            ghost: Ghost::new(0),
            expiries: BTreeSet::new(),
            next_seq: 0,
            loads: std::collections::HashMap::with_hasher(KeyHasher::default()),
            next_token: 0,
            fresh: std::collections::HashMap::with_hasher(KeyHasher::default()),
            kind,
            max_size: usize::MAX,
            small_cap: 0,
            climber: None,
            adaptive: None,
            sample_mask: u32::MAX,
            evicted_once: false,
            default_ttl: policy.default_ttl(),
            clock,
            counters: Counters::default(),
            reads: ReadCounters::default(),
        };
        if adaptive {
            engine.adaptive = Adaptive::new(1).map(|(adaptive, _)| adaptive);
        }
        engine.set_max_size(policy.max_size().unwrap_or(usize::MAX));
        engine
    }

    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size.max(1);
        if ADAPTIVE_BUILT
            && self.adaptive.is_some()
            && let Some((adaptive, mask)) = Adaptive::new(self.max_size)
        {
            self.small_cap = adaptive.setting.small_cap(self.max_size);
            self.adaptive = Some(adaptive);
            self.sample_mask = mask;
        } else if self.kind == Kind::S3Fifo {
            self.small_cap = (self.max_size / SMALL_SHARE).max(1);
            self.ghost = Ghost::new(ghost_cap(self.small_cap, self.max_size));
            self.climber = Some(Climber::new(self.max_size));
        }
    }

    /// Narrows the capacity, for one shard of a sharded store (before any entry is set).
    pub fn limit_max_size(&mut self, max_size: usize) {
        self.set_max_size(self.max_size.min(max_size));
    }

    /// Makes this engine one shard of a store whose shards share one
    /// adaptive setting in `shared`: the `leader` runs the shadow caches and
    /// publishes their choice, the others drop theirs and follow it (one set
    /// of shadows per store, whatever the shard count). No effect on other
    /// policies. Call after [`limit_max_size`](Self::limit_max_size).
    pub fn share_setting(&mut self, shared: &Arc<AtomicU8>, leader: bool) {
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            adaptive.shared = Some(Arc::clone(shared));
            if !leader {
                adaptive.sampler = None;
                self.sample_mask = u32::MAX;
            }
        }
    }

    /// Whether a `get` hit leaves every shared order alone, so reads can go
    /// through [`get_shared`](Self::get_shared) under a read lock.
    pub fn reads_are_shared(&self) -> bool {
        !matches!(self.kind, Kind::Lru { refresh_on_get: true })
    }

    /// The hash the engine files `key` under.
    #[inline]
    pub fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The clock the engine reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The counters so far.
    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn stats(&self) -> CacheStats {
        let mut counters = self.counters.clone();
        self.reads.add_to(&mut counters);
        counters.snapshot()
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&mut self) {
        self.counters = Counters::default();
        self.reads = ReadCounters::default();
    }

    /// Adds the counters to `total`, to sum the shards of a store.
    pub fn add_counters_to(&self, total: &mut Counters) {
        total.add(&self.counters);
        self.reads.add_to(total);
    }

    #[inline(always)]
    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |&id| same_key(&slots[id as usize].key, key)).copied()
    }

    #[inline]
    fn now_if_expiring(&self) -> Nanos {
        if self.expiries.is_empty() { 0 } else { self.clock.now() }
    }

    /// A read that changes nothing but S3-FIFO's frequency bits and the read
    /// counters, for many threads at once. The key must have passed `check_key`.
    #[inline(always)]
    pub fn get_shared<R>(&self, hash: u64, key: &str, read: impl FnOnce(&V) -> R) -> Lookup<R> {
        self.get_shared_at(hash, key, None, read)
    }

    /// `get_shared`, with the time already read by the caller (if it has).
    #[inline(always)]
    fn get_shared_at<R>(&self, hash: u64, key: &str, now: Option<Nanos>, read: impl FnOnce(&V) -> R) -> Lookup<R> {
        let started = self.reads.count_get().then(|| now.unwrap_or_else(|| self.clock.now()));
        let lookup = match self.find(hash, key) {
            None => Lookup::Miss,
            Some(id) => {
                let slot = &self.slots[id as usize];
                if slot.expires_at != NEVER && slot.expired(now.or(started).unwrap_or_else(|| self.clock.now())) {
                    Lookup::Expired
                } else {
                    self.touch(&slot.freq, hash);
                    Lookup::Hit(read(live(&slot.value)))
                }
            }
        };
        if !matches!(lookup, Lookup::Hit(_)) {
            self.reads.count_miss();
        }
        if let Some(started) = started {
            self.record_latency_since(started);
        }
        lookup
    }

    /// Adds one sampled `get` that started at `started` (one in 32: off the
    /// hit path).
    #[cold]
    #[inline(never)]
    fn record_latency_since(&self, started: Nanos) {
        self.reads.record_latency(self.clock.now().saturating_sub(started));
    }

    /// What a hit does to the policy: S3-FIFO bumps the entry's own counter,
    /// and the adaptive policy records a sampled key's hit in its lossy
    /// buffer for the shadows. Nothing else is touched.
    #[inline(always)]
    fn touch(&self, freq: &AtomicU8, hash: u64) {
        if self.kind == Kind::S3Fifo {
            bump(freq);
            if shadow::sampled(hash, self.sample_mask)
                && ADAPTIVE_BUILT
                && let Some(adaptive) = &self.adaptive
                && let Some(sampler) = &adaptive.sampler
            {
                sampler.record_hit(hash);
            }
        }
    }

    /// Removes the entry under `key` if it has expired (after a shared read found it so).
    pub fn reclaim_if_expired(&mut self, hash: u64, key: &str) {
        if let Some(id) = self.find(hash, key)
            && self.slots[id as usize].expired(self.clock.now())
        {
            let removed = self.remove_slot(id, hash);
            self.counters.expirations += 1;
            drop(removed);
        }
    }

    /// `get` under an exclusive borrow: works for every policy (LRU reorders).
    #[inline]
    pub fn get_exclusive<R>(&mut self, hash: u64, key: &str, read: impl FnOnce(&V) -> R) -> Option<R> {
        self.get_exclusive_at(hash, key, None, read)
    }

    /// `get_exclusive`, with the time already read by the caller (if it has).
    #[inline(always)]
    fn get_exclusive_at<R>(
        &mut self,
        hash: u64,
        key: &str,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        if self.reads_are_shared() {
            return match self.get_shared_at(hash, key, now, read) {
                Lookup::Hit(r) => Some(r),
                Lookup::Miss => None,
                Lookup::Expired => {
                    self.reclaim_if_expired(hash, key);
                    None
                }
            };
        }
        let started = self.reads.sample_next_get().then(|| now.unwrap_or_else(|| self.clock.now()));
        let found = match self.find(hash, key) {
            None => None,
            Some(id) => {
                let slot = &self.slots[id as usize];
                if slot.expires_at != NEVER && slot.expired(now.or(started).unwrap_or_else(|| self.clock.now())) {
                    let removed = self.remove_slot(id, hash);
                    self.counters.expirations += 1;
                    // Counted before the value is dropped: its Drop may panic.
                    self.reads.count_exclusive(false);
                    drop(removed);
                    return None;
                } else {
                    self.move_to_head(id);
                    Some(read(live(&self.slots[id as usize].value)))
                }
            }
        };
        self.reads.count_exclusive(found.is_some());
        if let Some(started) = started {
            self.reads.record_latency(self.clock.now().saturating_sub(started));
        }
        found
    }

    /// Checks `key`, then [`get_exclusive`](Self::get_exclusive).
    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn get_with<R>(&mut self, key: &str, read: impl FnOnce(&V) -> R) -> Result<Option<R>> {
        check_key(key)?;
        let hash = self.hash(key);
        Ok(self.get_exclusive(hash, key, read))
    }

    /// Checks what `set` would check, changing nothing.
    pub fn check_set(&self, key: &str, options: &SetOptions) -> Result<()> {
        check_key(key)?;
        check_set_options(options, self.default_ttl).map(drop)
    }

    /// Stores `value` under `key`; the replaced entry, if a live one was there.
    /// Nothing changes when it fails.
    #[inline]
    #[allow(dead_code)] // the model tests; stores call set_returning and drop outside their lock
    pub fn set(&mut self, key: &str, value: V, options: SetOptions) -> Result<()> {
        let removed = self.set_returning(key, value, options)?;
        drop(removed);
        Ok(())
    }

    /// `set`, handing back what it removed (the replaced entry and any entry
    /// evicted or reclaimed for room) for the caller to drop or report. The
    /// replaced entry's `key` is left empty: it is the key of this `set`.
    pub fn set_returning(&mut self, key: &str, value: V, options: SetOptions) -> Result<Removals<V>> {
        self.set_returning_at(self.hash(key), key, value, options)
    }

    /// [`set_returning`](Self::set_returning) of a key whose hash the caller
    /// has (the store hashed it to pick the shard).
    pub fn set_returning_at(&mut self, hash: u64, key: &str, value: V, options: SetOptions) -> Result<Removals<V>> {
        debug_assert_eq!(hash, self.hash(key));
        check_key(key)?;
        let ttl = check_set_options(&options, self.default_ttl)?;
        let existing = self.find(hash, key);
        if existing.is_none() && self.free == NIL && self.slots.len() as u64 >= MAX_SLOTS as u64 {
            return Err(CacheError::Policy(format!("a memory store holds at most {MAX_SLOTS} entries")));
        }
        // Nothing below can fail: a rejected call has changed nothing.
        self.cancel_load(key, existing);
        if let Some(climber) = &mut self.climber {
            let (gets, misses) = self.reads.totals();
            if let Some(small) = climber.adapt(gets, misses, self.small_cap, self.max_size) {
                self.small_cap = small;
                self.ghost.set_cap(ghost_cap(small, self.max_size));
            }
        }
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            // The shadows see the sampled hits since the last write, then
            // this write; a follower shard takes the leader's latest choice.
            let setting = match (&mut adaptive.sampler, &adaptive.shared) {
                (Some(sampler), shared) => {
                    let setting = sampler.record_write(hash, self.sample_mask);
                    if let Some(shared) = shared {
                        shared.store(shadow::index_of(setting), Relaxed);
                    }
                    setting
                }
                (None, Some(shared)) => shadow::SETTINGS[usize::from(shared.load(Relaxed))],
                (None, None) => adaptive.setting,
            };
            if setting != adaptive.setting {
                adaptive.setting = setting;
                self.small_cap = setting.small_cap(self.max_size);
            }
        }
        let now = if ttl.is_some() { self.clock.now() } else { self.now_if_expiring() };
        let expires_at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
        let metadata = options.metadata.map(Box::new);
        let mut removed = Removals::new();
        if !self.expiries.is_empty() {
            self.reclaim_expired(now, RECLAIM_PER_WRITE, &mut removed);
        }
        // The reclaim may have taken the entry under this very key.
        let existing = existing.filter(|&id| self.slots[id as usize].list != FREE);

        if let Some(id) = existing {
            let seq = self.take_seq();
            let slot = &mut self.slots[id as usize];
            let was_expired = slot.expired(now);
            let old_expiry = std::mem::replace(&mut slot.expires_at, expires_at);
            let old_seq = std::mem::replace(&mut slot.seq, seq);
            let old_value = slot.value.replace(value);
            let old_metadata = std::mem::replace(&mut slot.metadata, metadata);
            if old_expiry != NEVER {
                self.expiries.remove(&(old_expiry, old_seq, id));
            }
            if expires_at != NEVER {
                self.expiries.insert((expires_at, seq, id));
            }
            match self.kind {
                Kind::S3Fifo => bump(&self.slots[id as usize].freq),
                Kind::Lru { .. } | Kind::Ttl => self.move_to_head(id),
            }
            if was_expired {
                self.counters.expirations += 1;
            }
            let old = Removed { key: Box::default(), value: live_owned(old_value), metadata: old_metadata };
            removed.push(old, if was_expired { Reason::Expired } else { Reason::Replaced });
        } else if ADAPTIVE_BUILT && self.adaptive.is_some() {
            let full =
                self.live >= self.max_size && (self.expiries.is_empty() || !self.reclaim_expired(now, 1, &mut removed));
            let (list, evicted) = self.admit(hash, full);
            if let Some(evicted) = evicted {
                self.counters.evictions += 1;
                removed.push(evicted, Reason::Evicted);
            }
            self.insert_new(hash, key, value, metadata, expires_at, Some(list));
        } else {
            if self.live >= self.max_size
                && !self.reclaim_expired(now, 1, &mut removed)
                && let Some(evicted) = self.evict_one()
            {
                self.counters.evictions += 1;
                removed.push(evicted, Reason::Evicted);
            }
            self.insert_new(hash, key, value, metadata, expires_at, None);
        }
        self.counters.sets += 1;
        Ok(removed)
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Stores a new entry on `list` (the adaptive policy chose it), or where
    /// the classic policies put a new key.
    fn insert_new(
        &mut self,
        hash: u64,
        key: &str,
        value: V,
        metadata: Option<Box<Metadata>>,
        expires_at: Nanos,
        list: Option<u8>,
    ) {
        let seq = self.take_seq();
        let slot = Slot {
            seq,
            key: key.into(),
            value: Some(value),
            metadata,
            expires_at,
            prev: NIL,
            next: NIL,
            freq: AtomicU8::new(0),
            list: MAIN,
        };
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.slots[id as usize].next;
            // The old slot holds nothing that could panic on drop.
            self.slots[id as usize] = slot;
            id
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        let list = list.unwrap_or_else(|| match self.kind {
            Kind::S3Fifo if self.ghost.take(hash) => MAIN,
            Kind::S3Fifo if self.evicted_once || self.lists[SMALL as usize].len < self.small_cap => SMALL,
            _ => MAIN,
        });
        self.slots[id as usize].list = list;
        self.push_head(list, id);
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, id, |&i| hasher.hash_one(&*slots[i as usize].key));
        if expires_at != NEVER {
            self.expiries.insert((expires_at, seq, id));
        }
        self.live += 1;
    }

    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        Ok(self.delete_returning(key)?.is_some())
    }

    /// `delete`, handing back the live entry it removed.
    pub fn delete_returning(&mut self, key: &str) -> Result<Option<Removed<V>>> {
        check_key(key)?;
        // The entry's freshness goes with its slot (`remove_slot`).
        self.cancel_load(key, None);
        let hash = self.hash(key);
        let Some(id) = self.find(hash, key) else { return Ok(None) };
        let expired = self.slots[id as usize].expired(self.now_if_expiring());
        let removed = self.remove_slot(id, hash);
        if expired {
            self.counters.expirations += 1;
            drop(removed);
            return Ok(None);
        }
        self.counters.deletes += 1;
        Ok(Some(removed))
    }

    pub fn contains(&mut self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(self.peek_live(key).is_some())
    }

    /// The live value under `key`, handed to `read`; counts nothing and
    /// changes no order.
    pub fn peek_with<R>(&mut self, key: &str, read: impl FnOnce(&V) -> R) -> Result<Option<R>> {
        check_key(key)?;
        Ok(self.peek_live(key).map(|id| read(live(&self.slots[id as usize].value))))
    }

    /// How long the live entry under `key` has left: `None` when there is no
    /// such entry, `Some(None)` when it never expires.
    #[allow(dead_code)] // the wasm bindings' `getRemainingTTL`
    pub fn remaining_ttl(&mut self, key: &str) -> Result<Option<Option<Nanos>>> {
        check_key(key)?;
        let now = self.clock.now();
        Ok(self.peek_live(key).map(|id| {
            let at = self.slots[id as usize].expires_at;
            (at != NEVER).then(|| at.saturating_sub(now))
        }))
    }

    pub fn get_metadata(&mut self, key: &str) -> Result<Option<Metadata>> {
        check_key(key)?;
        Ok(self.peek_live(key).map(|id| self.slots[id as usize].metadata.as_deref().cloned().unwrap_or_default()))
    }

    pub fn update_metadata(&mut self, key: &str, metadata: Metadata) -> Result<bool> {
        check_key(key)?;
        // Merging top-level keys adds no depth: checking the update suffices.
        crate::store::check_metadata(&metadata)?;
        let Some(id) = self.peek_live(key) else { return Ok(false) };
        self.slots[id as usize].metadata.get_or_insert_default().extend(metadata);
        // A write like any other: a load or refresh of the key that began
        // before it stores nothing (it would erase the update). A refresh it
        // cancels is no longer running: the next stale read starts another.
        if self.loads.remove(key).is_some()
            && let Some(state) = self.fresh.get_mut(&id)
        {
            state.refreshing = false;
        }
        Ok(true)
    }

    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn invalidate(&mut self, pattern: &str) -> Result<usize> {
        Ok(self.invalidate_returning(pattern)?.len())
    }

    /// `invalidate`, handing back the live entries it removed.
    pub fn invalidate_returning(&mut self, pattern: &str) -> Result<Vec<Removed<V>>> {
        let pattern = Pattern::new(pattern)?;
        if !self.loads.is_empty() {
            self.loads.retain(|key, _| !pattern.matches(key));
        }
        if !self.fresh.is_empty() {
            let slots = &self.slots;
            self.fresh.retain(|&id, _| !pattern.matches(&slots[id as usize].key));
        }
        let now = self.now_if_expiring();
        let doomed: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&id| {
                let slot = &self.slots[id as usize];
                slot.list != FREE && pattern.matches(&slot.key)
            })
            .collect();
        let mut removed = Vec::with_capacity(doomed.len());
        let mut expired = Vec::new();
        for id in doomed {
            let was_expired = self.slots[id as usize].expired(now);
            let hash = self.hash(&self.slots[id as usize].key);
            let entry = self.remove_slot(id, hash);
            if was_expired {
                self.counters.expirations += 1;
                expired.push(entry);
            } else {
                removed.push(entry);
            }
        }
        self.counters.deletes += removed.len() as u64;
        drop(expired);
        Ok(removed)
    }

    /// Live keys, all or those matching `pattern`, in the engine's order: see
    /// [`for_each_live`](Self::for_each_live).
    pub fn keys(&mut self, pattern: Option<&str>) -> Result<Vec<String>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        let mut keys = Vec::new();
        self.for_each_live(|key, _| {
            if pattern.as_ref().is_none_or(|p| p.matches(key)) {
                keys.push(key.to_string());
            }
        });
        Ok(keys)
    }

    /// Calls `f` with every live entry, after reclaiming the expired ones.
    /// Order: LRU, most recently used first; TTL, most recently set first;
    /// S3-FIFO, the small (probationary) queue newest first, then the main
    /// queue newest first.
    pub fn for_each_live(&mut self, mut f: impl FnMut(&str, &V)) {
        self.reclaim_all_expired();
        for list in [SMALL, MAIN] {
            let mut id = self.lists[list as usize].head;
            while id != NIL {
                let slot = &self.slots[id as usize];
                f(&slot.key, live(&slot.value));
                id = slot.next;
            }
        }
    }

    /// The number of live entries.
    pub fn len(&mut self) -> usize {
        self.reclaim_all_expired();
        self.live
    }

    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the JS bindings clear with `clear_slots`
    pub fn clear(&mut self) {
        drop(self.clear_returning());
    }

    /// `clear`, handing back the live entries it removed.
    pub fn clear_returning(&mut self) -> Vec<Removed<V>> {
        // The engine is empty and consistent: the values may now be dropped.
        self.take_all()
            .into_iter()
            .filter(|slot| slot.list != FREE)
            .map(|slot| Removed { key: slot.key, value: live_owned(slot.value), metadata: slot.metadata })
            .collect()
    }

    /// Empties the engine (counting the live entries as deletes) and hands
    /// back the old slots, for the caller to drop once it is consistent.
    fn take_all(&mut self) -> Vec<Slot<V>> {
        self.reclaim_all_expired();
        self.counters.deletes += self.live as u64;
        self.loads.clear();
        self.fresh.clear();
        let slots = std::mem::take(&mut self.slots);
        self.free = NIL;
        self.live = 0;
        self.index = HashTable::new();
        self.lists = [List::EMPTY; 2];
        self.ghost.clear();
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            adaptive.ghost.clear();
        }
        self.expiries.clear();
        self.evicted_once = false;
        slots
    }

    /// Marks a load of `key` as begun: the token its value must still hold
    /// when it arrives. A newer load of the same key replaces it.
    pub fn begin_load(&mut self, key: &str) -> u64 {
        self.next_token += 1;
        self.loads.insert(key.into(), self.next_token);
        self.next_token
    }

    /// Ends the load `token` of `key`; whether nothing wrote, deleted,
    /// invalidated or cleared the key since it began (whether its value may
    /// be stored).
    pub fn end_load(&mut self, key: &str, token: u64) -> bool {
        if self.loads.get(key) == Some(&token) {
            self.loads.remove(key);
            true
        } else {
            false
        }
    }

    /// Cancels a load of `key` (a write moved the key on), and forgets the
    /// freshness of its entry `existing` (a written entry is no longer one
    /// `get_or_refresh` stored).
    #[inline]
    fn cancel_load(&mut self, key: &str, existing: Option<u32>) {
        if !self.loads.is_empty() {
            self.loads.remove(key);
        }
        if let Some(id) = existing
            && !self.fresh.is_empty()
        {
            self.fresh.remove(&id);
        }
    }

    /// A counted `get` for `get_or_refresh`: whether the value is fresh, or
    /// stale (past its fresh period, within its grace) and whether this call
    /// is to start the refresh (one at a time, not before a failed one's
    /// backoff has passed).
    pub fn get_fresh(&mut self, key: &str) -> Result<Freshly<V>>
    where
        V: Clone,
    {
        check_key(key)?;
        Ok(self.get_fresh_at(self.hash(key), key))
    }

    /// [`get_fresh`](Self::get_fresh) of a checked key whose hash the caller
    /// has.
    pub fn get_fresh_at(&mut self, hash: u64, key: &str) -> Freshly<V>
    where
        V: Clone,
    {
        // One reading of the clock serves both the expiry and the freshness check.
        let now = self.clock.now();
        let Some(value) = self.get_exclusive_at(hash, key, Some(now), V::clone) else { return Freshly::Miss };
        if self.fresh.is_empty() {
            return Freshly::Fresh(value);
        }
        let Some(state) = self.find(hash, key).and_then(|id| self.fresh.get_mut(&id)) else {
            return Freshly::Fresh(value);
        };
        if now < state.fresh_until {
            return Freshly::Fresh(value);
        }
        self.counters.stale_hits += 1;
        let refresh = !state.refreshing && now >= state.retry_at;
        if refresh {
            state.refreshing = true;
            self.counters.refreshes += 1;
        }
        Freshly::Stale { value, refresh }
    }

    /// [`get_fresh_at`](Self::get_fresh_at) under a shared borrow, for the
    /// policies whose reads are shared: the answer, counted, when no
    /// exclusive work is needed; `None` (nothing counted) for a miss, an
    /// expired entry, or a stale one whose refresh this call is to start.
    #[inline]
    pub fn get_fresh_shared(&self, hash: u64, key: &str) -> Option<Freshly<V>>
    where
        V: Clone,
    {
        debug_assert!(self.reads_are_shared());
        let now = self.clock.now();
        let id = self.find(hash, key)?;
        let slot = &self.slots[id as usize];
        if slot.expires_at != NEVER && slot.expired(now) {
            return None;
        }
        let stale = match self.fresh.get(&id) {
            None => false,
            Some(state) if now < state.fresh_until => false,
            // A refresh is running, or backing off after a failure.
            Some(state) if state.refreshing || now < state.retry_at => true,
            Some(_) => return None,
        };
        // Counted as `get_shared_at` counts a hit.
        let sampled = self.reads.count_get();
        self.touch(&slot.freq, hash);
        let value = live(&slot.value).clone();
        if sampled {
            self.reads.record_latency(self.clock.now().saturating_sub(now));
        }
        Some(if stale {
            self.reads.count_stale_hit();
            Freshly::Stale { value, refresh: false }
        } else {
            Freshly::Fresh(value)
        })
    }

    /// [`get_fresh`](Self::get_fresh) for the wasm bindings (which cannot
    /// name `Freshly`): the value, `None` on a miss, and 0 (fresh or a miss),
    /// 1 (stale) or 2 (stale, and this caller is to start the refresh).
    #[allow(dead_code)] // the wasm bindings' `getFresh`
    pub fn get_fresh_coded(&mut self, key: &str) -> Result<(Option<V>, u8)>
    where
        V: Clone,
    {
        Ok(match self.get_fresh(key)? {
            Freshly::Fresh(value) => (Some(value), 0),
            Freshly::Stale { value, refresh } => (Some(value), 1 + u8::from(refresh)),
            Freshly::Miss => (None, 0),
        })
    }

    /// The entry under `key`, just stored by a load, is fresh for the
    /// options' fresh period, with no refresh running and no backoff.
    fn mark_fresh(&mut self, key: &str, options: &crate::refresh::RefreshOptions) {
        let fresh_until = self.clock.now().saturating_add(duration_nanos(options.fresh_for));
        if let Some(id) = self.find(self.hash(key), key) {
            self.fresh.insert(id, Freshness { fresh_until, refreshing: false, retry_at: 0, failures: 0 });
        }
    }

    /// Stores what a load for `get_or_refresh` produced (if its placeholder
    /// `token` is still there), fresh for the options' fresh period, handing
    /// back what the store removed; or, on failure, keeps the stale value and
    /// schedules the next refresh after the options' backoff (if the load is
    /// still the key's own).
    pub fn finish_refresh(
        &mut self,
        key: &str,
        token: u64,
        outcome: std::result::Result<V, ()>,
        options: &crate::refresh::RefreshOptions,
        background: bool,
    ) -> Result<Removals<V>> {
        let still_ours = self.end_load(key, token);
        if outcome.is_err() && background {
            self.counters.refresh_failures += 1;
        }
        match outcome {
            Ok(value) if still_ours => {
                let removed = self.set_returning(key, value, options.entry_options())?;
                self.mark_fresh(key, options);
                return Ok(removed);
            }
            Err(()) if still_ours => {
                let now = self.clock.now();
                if let Some(state) = self.find(self.hash(key), key).and_then(|id| self.fresh.get_mut(&id)) {
                    state.refreshing = false;
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = now.saturating_add(duration_nanos(options.backoff(state.failures)));
                }
            }
            // A load the key has moved on from (written, cleared, loaded
            // again since) touches nothing: not even a newer refresh's state.
            _ => {}
        }
        Ok(Removals::new())
    }

    /// How many loads are in progress (for tests: none may be left behind).
    #[allow(dead_code)]
    pub fn loads_in_progress(&self) -> usize {
        self.loads.len()
    }

    /// The slot of the live entry under `key`; reclaims it if it has expired.
    fn peek_live(&mut self, key: &str) -> Option<u32> {
        let hash = self.hash(key);
        let id = self.find(hash, key)?;
        if self.slots[id as usize].expires_at != NEVER && self.slots[id as usize].expired(self.clock.now()) {
            let removed = self.remove_slot(id, hash);
            self.counters.expirations += 1;
            drop(removed);
            return None;
        }
        Some(id)
    }

    /// Takes slot `id` (filed under `hash`) out of every structure and frees it.
    fn remove_slot(&mut self, id: u32, hash: u64) -> Removed<V> {
        let list = self.slots[id as usize].list;
        self.unlink(list, id);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        let slot = &mut self.slots[id as usize];
        if slot.expires_at != NEVER {
            self.expiries.remove(&(slot.expires_at, slot.seq, id));
        }
        if !self.fresh.is_empty() {
            self.fresh.remove(&id);
        }
        let removed = Removed {
            key: std::mem::take(&mut slot.key),
            value: live_owned(slot.value.take()),
            metadata: slot.metadata.take(),
        };
        slot.expires_at = NEVER;
        slot.list = FREE;
        slot.prev = NIL;
        slot.next = self.free;
        self.free = id;
        self.live -= 1;
        removed
    }

    /// Removes up to `limit` expired entries, soonest-expired first, into
    /// `out`; whether it removed any.
    #[inline]
    fn reclaim_expired(&mut self, now: Nanos, limit: usize, out: &mut Removals<V>) -> bool {
        if self.expiries.is_empty() {
            return false;
        }
        let mut reclaimed = 0;
        while reclaimed < limit {
            match self.expiries.first() {
                Some(&(at, _, id)) if at <= now => {
                    let hash = self.hash(&self.slots[id as usize].key);
                    let removed = self.remove_slot(id, hash);
                    out.push(removed, Reason::Expired);
                    reclaimed += 1;
                }
                _ => break,
            }
        }
        self.counters.expirations += reclaimed as u64;
        reclaimed > 0
    }

    fn reclaim_all_expired(&mut self) {
        let now = self.now_if_expiring();
        let mut out = Removals::new();
        self.reclaim_expired(now, usize::MAX, &mut out);
        drop(out);
    }

    /// Makes room for one entry, by the policy's rule.
    fn evict_one(&mut self) -> Option<Removed<V>> {
        let id = match self.kind {
            Kind::Lru { .. } => self.lists[MAIN as usize].tail,
            Kind::Ttl => self.expiries.first().map_or(self.lists[MAIN as usize].tail, |&(_, _, id)| id),
            Kind::S3Fifo if ADAPTIVE_BUILT && self.adaptive.is_some() => return self.evict_adaptive(),
            Kind::S3Fifo => return self.evict_s3fifo(),
        };
        if id == NIL {
            return None;
        }
        let hash = self.hash(&self.slots[id as usize].key);
        Some(self.remove_slot(id, hash))
    }

    /// S3-FIFO (Yang et al., SOSP 2023): new keys enter the small queue; its
    /// oldest entry moves to main if it was read since it came in, else it
    /// leaves and its hash goes to the ghost (a key found in the ghost enters
    /// main directly). Main is a CLOCK with 2-bit counters: its oldest entry
    /// goes round again with its count lowered while the count is not zero.
    fn evict_s3fifo(&mut self) -> Option<Removed<V>> {
        self.evicted_once = true;
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        loop {
            let small = self.lists[SMALL as usize];
            let from_main = self.lists[MAIN as usize].len > main_cap || small.len == 0;
            let list = if from_main { MAIN } else { SMALL };
            let id = self.lists[list as usize].tail;
            if id == NIL {
                return None;
            }
            let freq = self.slots[id as usize].freq.load(Relaxed) & CLOCK_BITS;
            if from_main && freq > 0 {
                self.slots[id as usize].freq.store(freq.min(MAX_FREQ) - 1, Relaxed);
                self.unlink(MAIN, id);
                self.push_head(MAIN, id);
            } else if !from_main && freq >= MOVE_TO_MAIN {
                self.unlink(SMALL, id);
                self.slots[id as usize].freq.store(0, Relaxed);
                self.slots[id as usize].list = MAIN;
                self.push_head(MAIN, id);
            } else {
                let hash = self.hash(&self.slots[id as usize].key);
                if !from_main {
                    self.ghost.insert(hash);
                }
                return Some(self.remove_slot(id, hash));
            }
        }
    }

    /// The adaptive policy's admission of a new key with `hash`: the list it
    /// goes on, and the entry evicted for it if the engine is `full`.
    ///
    /// A key the ghost remembers (it was evicted from small recently and came
    /// back) goes to main; under the duel setting, when the engine is full and
    /// main has its share, it must first beat main's CLOCK victim on the
    /// sketch's frequency, which it then replaces; a returning key that loses
    /// starts in small like a new one. Every other new key starts in small, except that main is
    /// filled directly until the first eviction.
    fn admit(&mut self, hash: u64, full: bool) -> (u8, Option<Removed<V>>) {
        let adaptive = self.adaptive.as_mut().expect("the adaptive policy");
        adaptive.sketch.admit(hash);
        let returning = adaptive.ghost.take(hash);
        let duel = adaptive.setting.duel;
        if !full {
            let fill_main = !self.evicted_once && self.lists[SMALL as usize].len >= self.small_cap;
            return (if returning || fill_main { MAIN } else { SMALL }, None);
        }
        // Main below its share has room: a returning key needs no duel then.
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        if returning && duel && self.lists[MAIN as usize].len >= main_cap {
            let (victim, victim_hash) = self.main_victim();
            let sketch = &self.adaptive.as_ref().expect("the adaptive policy").sketch;
            if sketch.frequency(hash) > sketch.frequency(victim_hash) {
                self.evicted_once = true;
                return (MAIN, Some(self.remove_slot(victim, victim_hash)));
            }
            return (SMALL, self.evict_adaptive());
        }
        (if returning { MAIN } else { SMALL }, self.evict_adaptive())
    }

    /// Hands the hits slot `id` gathered since it was last looked at to the
    /// sketch (hashing its key only if there were any), keeping its CLOCK
    /// count; the count.
    fn flush_hits(&mut self, id: u32, hash: Option<u64>) -> u8 {
        let freq = self.slots[id as usize].freq.load(Relaxed);
        let pending = freq >> PENDING_SHIFT;
        if pending > 0 {
            let hash = hash.unwrap_or_else(|| self.hash(&self.slots[id as usize].key));
            self.adaptive.as_mut().expect("the adaptive policy").sketch.increment_by(hash, pending);
            self.slots[id as usize].freq.store(freq & CLOCK_BITS, Relaxed);
        }
        freq & CLOCK_BITS
    }

    /// Turns main's CLOCK until its oldest entry has a count of zero: that
    /// entry (left in place) and its hash. Main must not be empty.
    fn main_victim(&mut self) -> (u32, u64) {
        loop {
            let id = self.lists[MAIN as usize].tail;
            let clock = self.flush_hits(id, None);
            if clock == 0 {
                return (id, self.hash(&self.slots[id as usize].key));
            }
            self.slots[id as usize].freq.store(clock - 1, Relaxed);
            self.unlink(MAIN, id);
            self.push_head(MAIN, id);
        }
    }

    /// S3-FIFO's eviction under the adaptive policy: as [`evict_s3fifo`],
    /// with the hits an entry gathered handed to the sketch whenever the
    /// eviction looks at it, and the fixed-size ghost.
    ///
    /// [`evict_s3fifo`]: Self::evict_s3fifo
    fn evict_adaptive(&mut self) -> Option<Removed<V>> {
        self.evicted_once = true;
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        loop {
            let small = self.lists[SMALL as usize];
            if self.lists[MAIN as usize].len > main_cap || small.len == 0 {
                if self.lists[MAIN as usize].len == 0 {
                    return None;
                }
                let (id, hash) = self.main_victim();
                return Some(self.remove_slot(id, hash));
            }
            let id = small.tail;
            let hash = self.hash(&self.slots[id as usize].key);
            let clock = self.flush_hits(id, Some(hash));
            if clock >= MOVE_TO_MAIN {
                self.unlink(SMALL, id);
                self.slots[id as usize].freq.store(0, Relaxed);
                self.slots[id as usize].list = MAIN;
                self.push_head(MAIN, id);
            } else {
                self.adaptive.as_mut().expect("the adaptive policy").ghost.insert(hash);
                return Some(self.remove_slot(id, hash));
            }
        }
    }

    fn move_to_head(&mut self, id: u32) {
        let list = self.slots[id as usize].list;
        if self.lists[list as usize].head != id {
            self.unlink(list, id);
            self.push_head(list, id);
        }
    }

    fn push_head(&mut self, list: u8, id: u32) {
        let l = &mut self.lists[list as usize];
        let old_head = l.head;
        self.slots[id as usize].prev = NIL;
        self.slots[id as usize].next = old_head;
        if old_head != NIL {
            self.slots[old_head as usize].prev = id;
        } else {
            l.tail = id;
        }
        l.head = id;
        l.len += 1;
    }

    fn unlink(&mut self, list: u8, id: u32) {
        let (prev, next) = (self.slots[id as usize].prev, self.slots[id as usize].next);
        let l = &mut self.lists[list as usize];
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            l.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            l.tail = prev;
        }
        l.len -= 1;
    }
}

impl<V: Clone> Engine<V> {
    #[inline]
    #[cfg_attr(not(all(test, not(target_arch = "wasm32"))), allow(dead_code))]
    pub fn get(&mut self, key: &str) -> Result<Option<V>> {
        self.get_with(key, V::clone)
    }

    /// The live value under `key`, counting nothing and changing no order.
    pub fn peek(&mut self, key: &str) -> Option<V> {
        self.peek_with(key, V::clone).ok().flatten()
    }
}

/// Why an entry left the store (the JS eviction listener's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // some reasons are reported only by the wasm bindings
pub(crate) enum Reason {
    Evicted,
    Expired,
    Deleted,
    Replaced,
    Invalidated,
    Cleared,
}

/// When an entry set at `now` with `ttl` expires: saturating at the end of
/// time, which every TTL set before it reaches; an entry set at the end of
/// time itself (the clock cannot move any more) lives on.
fn expiry(now: Nanos, ttl: std::time::Duration) -> Nanos {
    if now >= END_OF_TIME { NEVER - 1 } else { now.saturating_add(duration_nanos(ttl)).min(END_OF_TIME) }
}

/// Bumps an S3-FIFO access count, writing only when it changes (a hot key's
/// count saturates at once, and its cache line is then only read).
#[inline]
#[cfg(target_arch = "wasm32")]
fn bump(freq: &AtomicU8) {
    // No adaptive policy on wasm32: the CLOCK count only.
    let f = freq.load(Relaxed);
    if f < MAX_FREQ {
        freq.store(f + 1, Relaxed);
    }
}

/// Bumps an S3-FIFO access count (and the hits pending for the sketch),
/// writing only when it changes (a hot key's counts saturate at once, and its
/// cache line is then only read).
#[inline]
#[cfg(not(target_arch = "wasm32"))]
fn bump(freq: &AtomicU8) {
    let f = freq.load(Relaxed);
    let (clock, pending) = (f & CLOCK_BITS, f >> PENDING_SHIFT);
    let bumped = (clock + u8::from(clock < MAX_FREQ)) | ((pending + u8::from(pending < MAX_PENDING)) << PENDING_SHIFT);
    if bumped != f {
        freq.store(bumped, Relaxed);
    }
}

/// `a == b`.
#[inline(always)]
#[cfg(target_arch = "wasm32")]
fn same_key(a: &str, b: &str) -> bool {
    // Smaller code for the npm package's size budget.
    a == b
}

/// `a == b`, with keys of up to 16 bytes (most keys) compared by two
/// overlapping word loads each instead of a call to `memcmp`.
#[inline(always)]
#[cfg(not(target_arch = "wasm32"))]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

#[inline]
fn live<V>(value: &Option<V>) -> &V {
    value.as_ref().expect("a live slot holds a value")
}

#[inline]
fn live_owned<V>(value: Option<V>) -> V {
    value.expect("a live slot holds a value")
}

impl<V> Removals<V> {
    /// Hands each removed entry and why to `f`, in order, without collecting them.
    #[allow(dead_code)] // the wasm bindings
    pub fn for_each(self, mut f: impl FnMut(Removed<V>, Reason)) {
        for (removed, reason) in self.inline.into_iter().flatten().chain(self.spill) {
            f(removed, reason);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V> Engine<V> {
    /// The key hasher, for a model to hash keys as the engine does.
    pub fn hasher_for_tests(&self) -> KeyHasher {
        self.hasher.clone()
    }

    /// The adaptive policy's current setting.
    pub fn adaptive_setting(&self) -> Option<Setting> {
        self.adaptive.as_ref().map(|a| a.setting)
    }

    /// Whether this engine runs shadow caches of its own.
    pub fn runs_shadows(&self) -> bool {
        self.adaptive.as_ref().is_some_and(|a| a.sampler.is_some())
    }

    /// Entries held, expired or not.
    pub fn raw_len(&self) -> usize {
        self.live
    }

    /// Panics unless the internal invariants hold: the capacity bound
    /// (counting expired entries too), the index, lists, free list and expiry
    /// index all describing exactly the live slots.
    pub fn validate(&self) {
        assert!(self.live <= self.max_size, "{} entries > max {}", self.live, self.max_size);
        assert_eq!(self.index.len(), self.live, "index size");
        let mut on_lists = 0;
        for list in [SMALL, MAIN] {
            let l = self.lists[list as usize];
            let (mut id, mut prev, mut n) = (l.head, NIL, 0);
            while id != NIL {
                let slot = &self.slots[id as usize];
                assert_eq!(slot.list, list, "slot {id} on the wrong list");
                assert_eq!(slot.prev, prev, "broken prev link at {id}");
                assert!(slot.value.is_some());
                assert_eq!(self.find(self.hash(&slot.key), &slot.key), Some(id), "index misses {}", slot.key);
                prev = id;
                id = slot.next;
                n += 1;
            }
            assert_eq!(l.tail, prev, "tail");
            assert_eq!(l.len, n, "list length");
            on_lists += n;
        }
        assert_eq!(on_lists, self.live, "every live entry is on exactly one list");
        if self.kind != Kind::S3Fifo {
            assert_eq!(self.lists[SMALL as usize].len, 0);
        }
        let (mut id, mut free) = (self.free, 0);
        while id != NIL {
            assert_eq!(self.slots[id as usize].list, FREE);
            id = self.slots[id as usize].next;
            free += 1;
        }
        assert_eq!(free + self.live, self.slots.len(), "free list");
        let expected: BTreeSet<(Nanos, u32, u32)> = (0..self.slots.len() as u32)
            .filter(|&id| self.slots[id as usize].list != FREE && self.slots[id as usize].expires_at != NEVER)
            .map(|id| (self.slots[id as usize].expires_at, self.slots[id as usize].seq, id))
            .collect();
        assert_eq!(self.expiries, expected, "expiry index out of step with the entries");
        assert!(self.ghost.index.len() <= self.ghost.cap && self.ghost.index.len() <= self.ghost.queue.len());
        assert!(self.ghost.queue.len() <= 2 * self.ghost.cap.max(1));
        if let Some(adaptive) = &self.adaptive {
            assert_eq!(self.small_cap, adaptive.setting.small_cap(self.max_size));
            for list in [SMALL, MAIN] {
                let mut id = self.lists[list as usize].head;
                while id != NIL {
                    let freq = self.slots[id as usize].freq.load(Relaxed);
                    // Hits are handed over whenever the CLOCK count drops to zero.
                    assert!(
                        freq & CLOCK_BITS != 0 || freq >> PENDING_SHIFT == 0 || list == SMALL,
                        "slot {id}: {freq:#b}"
                    );
                    id = self.slots[id as usize].next;
                }
            }
        }
    }
}

#[cfg(test)]
mod same_key_tests {
    use super::same_key;

    #[test]
    fn compares_every_byte_at_every_length() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..=base.len() {
            let a = &base[..n];
            let copy: String = a.chars().collect();
            assert!(same_key(a, &copy));
            for i in 0..n {
                let mut b = a.as_bytes().to_vec();
                b[i] = b'#';
                assert!(!same_key(a, std::str::from_utf8(&b).unwrap()), "{a} differs at {i}");
            }
            assert!(!same_key(a, &base[..(n + 1).min(base.len())]) || n == base.len());
        }
    }
}
