//! The single-threaded heart of the memory store.
//!
//! [`Engine`] holds the entries and carries out the policy. It never blocks,
//! never does I/O, never checks a key (the store hands it a [`Key`] with its
//! hash) and never reads a clock it was not given. `MemoryStore` puts it
//! behind a `RwLock` per shard. (The JS store runs the slot engine,
//! `slots.rs`, instead.)
//!
//! One file per concern (n = entries):
//! - `slab.rs`: the entries, in a slab addressed by a `u32` slot id, and the
//!   intrusive lists threaded through it: one recency list under LRU (set
//!   order under TTL), the small and main FIFO queues under S3-FIFO. O(1).
//! - this file: the index (a `hashbrown::HashTable` of slot ids, hashed by
//!   key: 4 bytes a bucket instead of a key and a pointer), the read paths
//!   and the writes.
//! - `queues.rs`: the policy's side of the lists: S3-FIFO's ghost (the hashes
//!   of keys recently evicted from the small queue) and small-queue climber,
//!   the adaptive policy's admission (its sketch, bucket ghost and shadow
//!   caches live in `sketch.rs`, `ghost.rs`, `shadow.rs`, changed on writes
//!   only), and eviction.
//! - `expiry.rs`: the slots that have a TTL, ordered by expiry time (insert,
//!   remove, soonest: O(log n)), and the one way an expired entry leaves.
//! - `idle.rs`: time-to-idle: the idle clocks of the entries that have one
//!   and the lazy re-filing of deadlines that reads pushed later.
//! - `loads.rs`: the placeholders of loads in flight and the freshness of
//!   the entries `get_or_refresh` stored.
//!
//! Read paths, one per purpose: [`Engine::get_shared`], a counted read under
//! a shared borrow (a hit under S3-FIFO only bumps the entry's frequency
//! bits, an atomic byte, and the read counters are atomics, so threads read
//! one engine in parallel under a read lock); [`Engine::get_exclusive`], the
//! same under an exclusive borrow (exact LRU reorders on every hit);
//! [`Engine::peek_with`], which counts nothing and reorders nothing; and the
//! freshness-aware reads of `get_or_refresh` in `loads.rs`.
//!
//! Expired entries are never returned. They are reclaimed when a call touches
//! them, up to [`RECLAIM_PER_WRITE`] more on every `set`, all of them when the
//! entry count is asked for, and before any live entry is evicted for room.
//!
//! Foreign code: a value's `Clone` runs while the engine is borrowed, and its
//! `Drop` may panic. Every removal first finishes all bookkeeping and only then
//! drops the old value (see [`Removed`]), so a panicking `Drop` leaves the
//! engine consistent and every other entry in place.

mod dump;
mod expiry;
mod idle;
mod lanes;
mod loads;
mod queues;
mod slab;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod slab_tests;
mod tags;

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use hashbrown::HashTable;

use crate::clock::{Clock, Nanos};
use crate::errors::{CacheError, Result, shown};
use crate::key::{Key, LookupKey};
use crate::metrics::{Counters, ReadCounters};
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::removal::RemovalReason;
use crate::store::{Metadata, SetOptions, check_metadata, check_set_options};

pub(crate) use dump::{Restored, Snapshot};
pub(crate) use expiry::RECLAIM_PER_WRITE;
use lanes::Tally;
pub(crate) use lanes::{Entered, LaneColumn, LaneHandle};
pub(crate) use loads::Freshly;
pub(crate) use queues::{Climber, MAX_FREQ, MOVE_TO_MAIN};
// The slot engine's (the JS store's) S3-FIFO sizes its ghost the same way.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) use queues::TOTALS_READ;
#[cfg(any(test, all(target_arch = "wasm32", target_os = "unknown", feature = "js")))]
pub(crate) use queues::ghost_cap;
pub(crate) use slab::Removed;

use super::fifo_ghost::FifoGhost;
use expiry::expiry;
use loads::Freshness;
use queues::{ADAPTIVE_BUILT, Adaptive, AdaptiveBox};
use slab::{FREE, MAIN, MAX_SLOTS, NEVER, SMALL, Slab, Slot};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) type KeyHasher = hashbrown::DefaultHashBuilder;
#[cfg(target_arch = "wasm32")]
pub(crate) type KeyHasher = super::hasher::SeededState;

/// What an entry weighs, from its key and value (`MemoryStoreBuilder::weigher`).
pub(crate) type Weigher<V> = Arc<dyn Fn(&str, &V) -> u64 + Send + Sync>;

/// Which rule picks the entry to evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lru { refresh_on_get: bool },
    Ttl,
    S3Fifo,
}

/// The entries one call removed, kept until the engine is consistent again:
/// up to two inline (a `set` removes the replaced entry or one evicted, and
/// rarely expired ones too), more on the heap. Small, because every `set`
/// returns one.
pub(crate) struct Removals<V> {
    inline: [Option<Removed<V>>; 2],
    len: usize,
    spill: Vec<Removed<V>>,
}

impl<V> Removals<V> {
    pub fn new() -> Self {
        Removals { inline: [const { None }; 2], len: 0, spill: Vec::new() }
    }

    /// Drops the entries, without the call that drops the spill `Vec` when
    /// it never allocated (a `set` removes two entries at most, nearly always).
    #[inline(always)]
    pub fn drop_entries(self) {
        let Removals { inline, len: _, spill } = self;
        if spill.capacity() == 0 {
            // Empty, and no buffer to free: nothing is lost, even if a
            // value's `Drop` below panics.
            std::mem::forget(spill);
        }
        drop(inline);
    }

    /// The entries, in the order they were removed.
    pub fn into_entries(self) -> impl Iterator<Item = Removed<V>> {
        self.inline.into_iter().flatten().chain(self.spill)
    }

    /// The buffer of a removed entry's key of `len` bytes, if there is one
    /// (see [`Removed::take_key_of_len`]).
    #[inline(always)]
    fn take_key_of_len(&mut self, len: usize) -> Option<Box<str>> {
        self.inline[..self.len].iter_mut().flatten().find_map(|removed| removed.take_key_of_len(len))
    }

    #[inline(always)]
    fn push(&mut self, removed: Removed<V>) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some(removed);
            self.len += 1;
        } else {
            self.spill.push(removed);
        }
    }
}

/// The value (`Some`: a live slot's) and metadata an update replaced
/// ([`Engine::update_plain`]).
pub(crate) type Replaced<V> = (Option<V>, Option<Box<Metadata>>);

#[cfg(all(test, not(target_arch = "wasm32")))]
thread_local! {
    /// How many index look-ups of a key this thread's engines made.
    pub(crate) static FINDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What a shared read found.
pub(crate) enum Lookup<R> {
    Hit(R),
    Miss,
    /// An expired entry: a miss, which the caller should reclaim under an
    /// exclusive borrow ([`Engine::reclaim_if_expired`]).
    Expired,
    /// A miss of a [`Probe`](crate::key::Probe) that fails the key rules:
    /// nothing was counted (never for a [`Key`]).
    Refused,
}

// `repr(C)`, in this order: a `get` of a thread without a lane counts itself
// in `reads` (an atomic add) under the shard's read lock, so `reads` comes first and shares
// the lock word's cache line (the store's shards are 128-byte aligned): one
// line changes hands between threads reading one shard, not two. The fields a
// hit reads come next. (The default layout put `reads` 112 bytes in.)
#[repr(C)]
pub(crate) struct Engine<V> {
    /// First: see above.
    reads: ReadCounters,
    index: HashTable<u32>,
    /// The hits and misses of shared reads, on the reading thread's lane
    /// (`lanes.rs`); `reads` holds the rest (threads without a lane, exclusive reads).
    lanes: LaneColumn,
    kind: Kind,
    /// Hits on keys whose hash passes this mask are recorded for the shadows
    /// (`shadow::sampled`); `u32::MAX` without an adaptive policy.
    sample_mask: u32,
    /// The adaptive policy's state (S3-FIFO only, unless made classic).
    adaptive: Option<AdaptiveBox>,
    clock: Clock,
    slab: Slab<V>,
    hasher: KeyHasher,
    /// S3-FIFO's ghost (the classic policy; the adaptive one keeps its own).
    ghost: FifoGhost<u64>,
    expiries: BTreeSet<(Nanos, u32, u32)>,
    next_seq: u32,
    /// The idle clocks of the entries that have a time-to-idle, by slot id
    /// (`idle.rs`).
    idles: std::collections::HashMap<u32, idle::IdleClock, KeyHasher>,
    default_idle: Option<std::time::Duration>,
    /// Loads in progress (`get_or_set`), by key: the placeholder a load must
    /// still find to store its value. Any write, delete, invalidate or clear
    /// of the key removes it, so a load that began before them cannot bring
    /// back older data.
    loads: std::collections::HashMap<Box<str>, u64, KeyHasher>,
    next_token: u64,
    /// The tags of the tagged entries (`tags.rs`); `None` until one is set.
    tags: Option<Box<tags::TagIndex>>,
    /// The newest load token when `invalidate_tags` last ran: a tagged load
    /// with a token up to it began before and stores nothing.
    tags_cut: u64,
    /// The freshness of the entries `get_or_refresh` stored, by key. Any
    /// other write or removal of the key drops it (the entry is then plain).
    fresh: std::collections::HashMap<u32, Freshness, KeyHasher>,
    /// The capacity: in entries, or in weight when the engine has a weigher.
    max_size: usize,
    /// Weighs each entry a `set` stores; `None`: every entry weighs 1.
    weigher: Option<Weigher<V>>,
    /// The entries the capacity holds, which sizes what the policy keeps per
    /// entry (ghosts, sketch, shadows, the climber's period): `max_size`
    /// unless the engine weighs entries (see `queues.rs`, `resize_for_entries`).
    entries_hint: usize,
    /// The small queue's share of `max_size` (S3-FIFO).
    small_cap: usize,
    climber: Option<Climber>,
    /// S3-FIFO fills main directly until the first eviction (libCacheSim's
    /// refinement: what arrives while the cache still has room is kept longer).
    evicted_once: bool,
    default_ttl: Option<std::time::Duration>,
    pub counters: Counters,
    /// Whether the store has a removal listener: the entries removed where
    /// no caller takes them (an expired entry a read or a walk found) are
    /// then kept in `orphans` for the store to hand over after the lock,
    /// instead of being dropped on the spot.
    listening: bool,
    orphans: Vec<Removed<V>>,
}

impl<V> Engine<V> {
    /// An engine hashing keys with `hasher` (shards of one store share theirs,
    /// so the store hashes a key once, for its shard and its engine), counting
    /// its shared reads on `lanes` (its column of the store's table, or
    /// [`LaneColumn::single`] for an engine alone).
    pub fn with_hasher(policy: Policy, clock: Clock, hasher: KeyHasher, lanes: LaneColumn) -> Self {
        let kind = match &policy {
            Policy::Lru(p) => Kind::Lru { refresh_on_get: p.refreshes_on_get() },
            Policy::Ttl(_) => Kind::Ttl,
            Policy::S3Fifo(_) => Kind::S3Fifo,
        };
        let adaptive = matches!(&policy, Policy::S3Fifo(p) if p.is_adaptive());
        let mut engine = Engine {
            slab: Slab::new(),
            index: HashTable::new(),
            hasher,
            ghost: FifoGhost::new(0),
            expiries: BTreeSet::new(),
            next_seq: 0,
            idles: std::collections::HashMap::with_hasher(KeyHasher::default()),
            default_idle: policy.default_idle(),
            loads: std::collections::HashMap::with_hasher(KeyHasher::default()),
            next_token: 0,
            tags: None,
            tags_cut: 0,
            fresh: std::collections::HashMap::with_hasher(KeyHasher::default()),
            kind,
            max_size: usize::MAX,
            weigher: None,
            entries_hint: usize::MAX,
            small_cap: 0,
            climber: None,
            adaptive: None,
            sample_mask: u32::MAX,
            evicted_once: false,
            default_ttl: policy.default_ttl(),
            clock,
            counters: Counters::default(),
            reads: ReadCounters::default(),
            lanes,
            listening: false,
            orphans: Vec::new(),
        };
        if adaptive {
            engine.adaptive = Adaptive::new(1).map(|(adaptive, _)| adaptive);
        }
        engine.set_max_size(policy.max_size().unwrap_or(usize::MAX));
        engine
    }

    /// Keeps every entry removed where no caller takes it for
    /// [`take_orphans`](Self::take_orphans) (the store has a removal listener).
    pub fn keep_orphans(&mut self) {
        self.listening = true;
    }

    /// Whether entries removed by the last calls wait in
    /// [`take_orphans`](Self::take_orphans).
    #[inline(always)]
    pub fn has_orphans(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// The entries removed where no caller took them, since the last call.
    pub fn take_orphans(&mut self) -> Vec<Removed<V>> {
        std::mem::take(&mut self.orphans)
    }

    /// Disposes of an entry removed where no caller takes it: kept for the
    /// store's removal listener, or dropped now.
    #[inline]
    pub(super) fn discard(&mut self, removed: Removed<V>) {
        if self.listening {
            self.orphans.push(removed);
        } else {
            drop(removed);
        }
    }

    /// Narrows the capacity, for one shard of a sharded store (before any entry is set).
    pub fn limit_max_size(&mut self, max_size: usize) {
        self.set_max_size(self.max_size.min(max_size));
    }

    /// Weighs every entry with `weigher` from now on: the capacity becomes a
    /// total weight. Call on an empty engine, before
    /// [`limit_max_size`](Self::limit_max_size).
    pub fn weigh_with(&mut self, weigher: Weigher<V>) {
        debug_assert_eq!(self.slab.len(), 0);
        self.weigher = Some(weigher);
        self.slab.weigh();
        self.set_max_size(self.max_size);
    }

    /// What `value` under `key` weighs: 1 without a weigher; an error, before
    /// anything changed, if it weighs more than the whole capacity.
    #[inline(always)]
    fn weigh(&self, key: &str, value: &V) -> Result<u64> {
        match &self.weigher {
            None => Ok(1),
            Some(weigher) => self.checked_weight(weigher, key, value),
        }
    }

    /// Whether the engine weighs its entries.
    pub fn weighs(&self) -> bool {
        self.weigher.is_some()
    }

    /// Fails as `set` would if `value` under `key` weighs more than the
    /// capacity (a batch checks every entry before it writes any).
    pub fn check_weight(&self, key: &str, value: &V) -> Result<()> {
        match &self.weigher {
            None => Ok(()),
            Some(weigher) => self.checked_weight(weigher, key, value).map(drop),
        }
    }

    #[inline(never)]
    fn checked_weight(&self, weigher: &Weigher<V>, key: &str, value: &V) -> Result<u64> {
        let weight = weigher(key, value);
        let capacity = self.max_size as u64;
        if weight > capacity {
            return Err(CacheError::EntryTooLarge { key: shown(key), weight, capacity });
        }
        Ok(weight)
    }

    /// The handle of the lanes this engine counts on, for its shard's lane
    /// reads (valid while the engine lives).
    pub fn lane_handle(&self) -> LaneHandle {
        self.lanes.handle()
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

    /// Sets every counter back to zero.
    pub fn reset_stats(&mut self) {
        self.counters = Counters::default();
        self.reads = ReadCounters::default();
        self.lanes.reset();
        if let Some(climber) = &mut self.climber {
            climber.forget_counts();
        }
    }

    /// The gets and misses so far.
    fn read_totals(&self) -> (u64, u64) {
        let ((hits, misses), (lane_hits, lane_misses)) = (self.reads.totals(), self.lanes.totals());
        let misses = misses.wrapping_add(lane_misses);
        (hits.wrapping_add(lane_hits).wrapping_add(misses), misses)
    }

    /// Adds the counters to `total`, to sum the shards of a store.
    pub fn add_counters_to(&self, total: &mut Counters) {
        total.add(&self.counters);
        self.reads.add_to(total, self.lanes.totals());
        if self.weigher.is_some() {
            // Saturating: each shard's total fits in a u64, but a store
            // whose policy has no bound can hold up to u64::MAX per shard.
            total.total_weight = total.total_weight.saturating_add(self.slab.weight());
        }
    }

    #[inline(always)]
    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        #[cfg(all(test, not(target_arch = "wasm32")))]
        FINDS.set(FINDS.get() + 1);
        let slab = &self.slab;
        self.index.find(hash, |&id| same_key(&slab[id].key, key)).copied()
    }

    /// [`find`](Self::find), with the slot: the look-up has indexed it
    /// already, so the read path checks no bound again.
    #[inline(always)]
    fn find_slot(&self, hash: u64, key: &str) -> Option<(u32, &Slot<V>)> {
        let id = self.find(hash, key)?;
        // SAFETY: `find` returns only an id its closure indexed `slab` with
        // (`slab[id]` did not panic), and nothing has changed the slab since.
        Some((id, unsafe { self.slab.get_unchecked(id) }))
    }

    /// The counted read of every policy whose hits change no shared order
    /// ([`reads_are_shared`](Self::reads_are_shared)), for many threads at
    /// once under a read lock: it changes nothing but S3-FIFO's frequency
    /// bits, the adaptive policy's lossy hit buffer and the read counters.
    /// `now` is the time if the caller has read it already.
    #[inline(always)]
    pub fn get_shared<'k, R>(
        &self,
        key: impl LookupKey<'k>,
        hash: u64,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Lookup<R> {
        match self.lanes.open() {
            Some(lane) => self.get_counted(lane, key, hash, now, read),
            None => self.get_shared_without_lane(key, hash, now, read),
        }
    }

    /// [`get_shared`](Self::get_shared) for a read begun on this thread's
    /// lane without the shard's lock ([`LaneHandle::enter`]), which it ends
    /// (`Tally::close`) as the last thing it does with the engine: a
    /// writer may change the engine from then on, so the latency sample is
    /// recorded before, and what it returns is owned.
    #[inline(always)]
    pub fn get_entered<'k, R>(
        &self,
        entered: Entered<'_>,
        key: impl LookupKey<'k>,
        hash: u64,
        read: impl FnOnce(&V) -> R,
    ) -> Lookup<R> {
        self.get_counted(entered, key, hash, None, read)
    }

    /// [`get_shared`](Self::get_shared) for a thread without a lane (past
    /// the first [`LANES`](lanes::LANES) at once): counted on the shard's
    /// shared counters.
    #[cold]
    #[inline(never)]
    fn get_shared_without_lane<'k, R>(
        &self,
        key: impl LookupKey<'k>,
        hash: u64,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Lookup<R> {
        self.get_counted(&self.reads, key, hash, now, read)
    }

    /// The lookup of [`get_shared`](Self::get_shared), counted on `tally`
    /// once it has ended (as a hit or a miss), never before: see `lanes.rs`.
    /// Counting is the last thing it does with the engine (for a lane read,
    /// it ends the read: a writer may change the engine from then on), so
    /// the latency sample is recorded first; a refused key is not counted
    /// (the tally is dropped).
    #[inline(always)]
    fn get_counted<'k, R>(
        &self,
        tally: impl Tally,
        key: impl LookupKey<'k>,
        hash: u64,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Lookup<R> {
        let started = tally.sampled().then(|| now.unwrap_or_else(|| self.clock.now()));
        let lookup = self.find_shared(key, hash, now.or(started), read);
        if matches!(lookup, Lookup::Refused) {
            return lookup;
        }
        if let Some(started) = started {
            self.record_latency_since(started);
        }
        tally.close(matches!(lookup, Lookup::Hit(_)));
        lookup
    }

    /// The look-up of a shared read, counted by the caller: a hit bumps the
    /// entry and hands its value to `read`. `now` is the time if known.
    #[inline(always)]
    fn find_shared<'k, R>(
        &self,
        key: impl LookupKey<'k>,
        hash: u64,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Lookup<R> {
        match self.find_slot(hash, &key) {
            // A key found passed the rules when it was set; a miss checks
            // the rest of them (a `Probe`) before anything is counted.
            None if !key.passes() => Lookup::Refused,
            None => Lookup::Miss,
            Some((id, slot)) if !self.live_read_slot(id, slot, now) => Lookup::Expired,
            Some((_, slot)) => {
                self.touch(&slot.freq, hash);
                Lookup::Hit(read(slot.value()))
            }
        }
    }

    /// Adds one sampled `get` that started at `started` (one in 32: off the
    /// hit path).
    #[cold]
    #[inline(never)]
    fn record_latency_since(&self, started: Nanos) {
        self.reads.record_latency(self.clock.now().saturating_sub(started));
    }

    /// The counted read under an exclusive borrow, for every policy (exact
    /// LRU moves the entry to the head of its list); an expired entry is
    /// reclaimed on the spot. `now` is the time if the caller has read it.
    /// Inlined whole: the store's exclusive read path is this call under a lock.
    #[inline(always)]
    pub fn get_exclusive<R>(
        &mut self,
        key: Key<'_>,
        hash: u64,
        now: Option<Nanos>,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        if self.reads_are_shared() {
            return match self.get_shared(key, hash, now, read) {
                Lookup::Hit(r) => Some(r),
                Lookup::Miss | Lookup::Refused => None,
                Lookup::Expired => {
                    self.reclaim_if_expired(key, hash);
                    None
                }
            };
        }
        let started = self.reads.sample_next_get().then(|| now.unwrap_or_else(|| self.clock.now()));
        let found = match self.find(hash, &key) {
            None => None,
            Some(id) if !self.live_read(id, now.or(started)) => {
                let removed = self.expire(id, hash);
                // Counted before the value is dropped: its Drop may panic.
                self.reads.count_exclusive(false);
                self.discard(removed);
                return None;
            }
            Some(id) => {
                self.slab.move_to_head(id);
                Some(read(self.slab[id].value()))
            }
        };
        self.reads.count_exclusive(found.is_some());
        if let Some(started) = started {
            self.reads.record_latency(self.clock.now().saturating_sub(started));
        }
        found
    }

    /// The live value under `key`, handed to `read`, for the store's own
    /// look-ups (`contains`, a loader's last look before it runs): counts
    /// nothing and changes no order (an expired entry is reclaimed).
    pub fn peek_with<R>(&mut self, key: Key<'_>, hash: u64, read: impl FnOnce(&V) -> R) -> Option<R> {
        self.live_slot(key, hash).map(|id| read(self.slab[id].value()))
    }

    /// The slot of the live entry under `key`; reclaims it if it has expired.
    fn live_slot(&mut self, key: Key<'_>, hash: u64) -> Option<u32> {
        let id = self.find(hash, &key)?;
        if self.has_expired(id, None) {
            let removed = self.expire(id, hash);
            self.discard(removed);
            return None;
        }
        Some(id)
    }

    /// Stores `value` under `key`, handing back what it removed (the replaced
    /// entry and any entry evicted or reclaimed for room) for the caller to
    /// drop once the engine is consistent. Nothing changes when it fails.
    #[inline]
    pub fn set(&mut self, key: Key<'_>, hash: u64, value: V, options: SetOptions) -> Result<Removals<V>> {
        let mut removed = Removals::new();
        self.set_into(key, hash, value, options, &mut removed)?;
        Ok(removed)
    }

    /// [`set`](Self::set), adding what it removed to `removed` (the caller's,
    /// which the store drops after the lock: no `Removals` is moved through
    /// a `Result` on the way). When it fails, `removed` is left as it was.
    #[inline]
    pub fn set_into(
        &mut self,
        key: Key<'_>,
        hash: u64,
        value: V,
        options: SetOptions,
        removed: &mut Removals<V>,
    ) -> Result<()> {
        self.set_into_known(key, hash, value, options, removed, false)
    }

    /// [`set_into`](Self::set_into); `absent`: the caller has just looked
    /// `key` up and not found it, under this same borrow ([`update_plain`]
    /// said so), and the key is not looked up again (a new key's second
    /// probe of the index cost ~40 instructions a churn set).
    ///
    /// [`update_plain`]: Self::update_plain
    #[inline]
    pub fn set_into_known(
        &mut self,
        key: Key<'_>,
        hash: u64,
        value: V,
        options: SetOptions,
        removed: &mut Removals<V>,
        absent: bool,
    ) -> Result<()> {
        // (Not `find`, which the tests count.)
        debug_assert!(!absent || self.index.find(hash, |&id| same_key(&self.slab[id].key, &key)).is_none());
        if self.weigher.is_some() {
            return self.set_weighed(key, hash, value, options, removed);
        }
        self.set_as::<false>(key, hash, value, options, removed, absent)
    }

    /// The common `set`: a new value for a key held, with plain options (no
    /// TTL, idle time, metadata or tags of its own), in an engine where no
    /// entry expires (no expiry filed: the entry's is `NEVER` and it is not
    /// idle), with no default TTL or idle time, no weigher and no tag index.
    /// Does what [`set_into`](Self::set_into) does then, without the tests
    /// and moves that change nothing (the options taken apart, the clock,
    /// the reclaim, the expiry index, the tags, a [`Removals`]): the old
    /// value and metadata, for the caller to drop or hand on after the lock
    /// (as [`Removed::replaced`]). Anything
    /// else (a new key, any option or expiry) hands `value` back untouched,
    /// with nothing changed, for `set_into`.
    #[inline(always)]
    pub fn update_plain(&mut self, key: Key<'_>, hash: u64, value: V) -> std::result::Result<Replaced<V>, (V, bool)> {
        if self.weigher.is_some()
            || !self.expiries.is_empty()
            || self.default_ttl.is_some()
            || self.default_idle.is_some()
            || self.tags.is_some()
        {
            return Err((value, false));
        }
        // A miss: `set_into_known` need not look again (`true`).
        let Some(id) = self.find(hash, &key) else { return Err((value, true)) };
        // Without an expiry filed no live entry expires, and none is idle
        // (an idle entry files its deadline); the test costs one load.
        if self.slab[id].idle {
            return Err((value, false));
        }
        debug_assert!(self.slab[id].list() != FREE && self.slab[id].expires_at == NEVER);
        // As `set_as`: the load in flight, then the adaptive policy's write.
        self.cancel_load(&key, Some(id));
        self.adapt_before_write(hash);
        let seq = self.take_seq();
        let slot = &mut self.slab[id];
        slot.seq = seq;
        let old_value = slot.value.replace(value);
        let old_metadata = slot.metadata.take();
        match self.kind {
            Kind::S3Fifo => queues::bump(&self.slab[id].freq),
            Kind::Lru { .. } | Kind::Ttl => self.slab.move_to_head(id),
        }
        self.counters.sets += 1;
        Ok((old_value, old_metadata))
    }

    /// The common `set` of a new key: right after [`update_plain`] missed
    /// `key` under this same borrow (it handed back `(value, true)`: plain
    /// options, in an engine where nothing expires, with no default TTL or
    /// idle time, no weigher and no tag index), stores it as
    /// [`set_into`](Self::set_into) would then, without the tests and moves
    /// that change nothing there (the options taken apart, the clock, the
    /// reclaim, the expiry index, the tags, a [`Removals`]), and with the
    /// entry evicted for it, if any, replaced in place: the new entry takes
    /// the victim's slot (no trip through the free list) and, when the store
    /// has no listener and the two keys are as long, the victim's key buffer
    /// (churn then allocates nothing). The entry evicted, for the caller to
    /// drop or hand to the listener after the lock; `value` back, with
    /// nothing changed, if the engine holds [`MAX_SLOTS`] entries (for
    /// `set_into`'s error).
    ///
    /// [`update_plain`]: Self::update_plain
    #[inline(always)]
    pub fn insert_plain(&mut self, key: Key<'_>, hash: u64, value: V) -> std::result::Result<Option<Removed<V>>, V> {
        debug_assert!(
            self.weigher.is_none()
                && self.expiries.is_empty()
                && self.default_ttl.is_none()
                && self.default_idle.is_none()
                && self.tags.is_none()
        );
        // (Not `find`, which the tests count.)
        debug_assert!(self.index.find(hash, |&id| same_key(&self.slab[id].key, &key)).is_none());
        if self.slab.is_full() {
            return Err(value);
        }
        self.prefetch_admission(hash);
        // As `set_as`: the load in flight, the adaptive policy's write, then
        // the admission (the list, and the victim if the engine is full).
        self.cancel_load(&key, None);
        self.adapt_before_write(hash);
        let full = self.slab.len() >= self.max_size;
        let (list, victim) = if ADAPTIVE_BUILT && self.adaptive.is_some() {
            self.admit_victim(hash, full)
        } else {
            // The victim first, then the list: S3-FIFO's ghost takes the
            // victim's hash before it is asked for the new key's.
            let victim = if full { self.victim() } else { None };
            (self.classic_list_for(hash), victim)
        };
        self.counters.sets += 1;
        let Some((id, victim_hash)) = victim else {
            self.insert_fresh(hash, Box::from(&*key), value, None, NEVER, list, 1);
            return Ok(None);
        };
        self.counters.evictions += 1;
        // What `remove_slot` does besides the slab: out of the index under
        // the victim's key, its freshness and idle clock gone (nothing
        // expires here: no expiry filed, no tag index).
        self.unindex(id, victim_hash);
        if !self.fresh.is_empty() {
            self.fresh.remove(&id);
        }
        if !self.idles.is_empty() {
            self.stop_idle(id);
        }
        debug_assert_eq!(self.slab[id].expires_at, NEVER);
        // The new key in the victim's buffer if they are as long (with a
        // listener, the victim's key is the listener's).
        let slot = &mut self.slab[id];
        let key = if !self.listening && slot.key.len() == key.len() {
            overwrite(&mut slot.key, &key);
            None
        } else {
            Some(Box::from(&*key))
        };
        let seq = self.take_seq();
        let evicted = self.slab.replace(id, key, value, seq, list, 1, RemovalReason::Evicted);
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, id, |&i| hasher.hash_one(&*slab[i].key));
        self.prefetch_next_victim();
        Ok(Some(evicted))
    }

    /// [`set`](Self::set) in an engine with a weigher: out of line, so that
    /// the unweighted `set` carries none of its branches.
    #[inline(never)]
    fn set_weighed(
        &mut self,
        key: Key<'_>,
        hash: u64,
        value: V,
        options: SetOptions,
        removed: &mut Removals<V>,
    ) -> Result<()> {
        self.set_as::<true>(key, hash, value, options, removed, false)
    }

    /// The body of [`set`](Self::set), `WEIGHED` when the engine has a weigher.
    #[inline(always)]
    fn set_as<const WEIGHED: bool>(
        &mut self,
        key: Key<'_>,
        hash: u64,
        value: V,
        options: SetOptions,
        removed: &mut Removals<V>,
        absent: bool,
    ) -> Result<()> {
        debug_assert_eq!(hash, self.hash(&key));
        debug_assert_eq!(WEIGHED, self.weigher.is_some());
        let ttl = check_set_options(&options, self.default_ttl)?;
        // The weigher runs first: if it panics, or the entry is too heavy, nothing has changed.
        let weight = if WEIGHED { self.weigh(&key, &value)? } else { 1 };
        let existing = if absent { None } else { self.find(hash, &key) };
        if existing.is_none() && self.slab.is_full() {
            return Err(CacheError::Policy(format!("a memory store holds at most {MAX_SLOTS} entries")));
        }
        // Nothing below can fail: a rejected call has changed nothing.
        self.cancel_load(&key, existing);
        self.adapt_before_write(hash);
        // Without an idle time, exactly the work of a plain `set`.
        let (now, ttl_at, expires_at, idle) = if options.idle.is_none() && self.default_idle.is_none() {
            let now = if ttl.is_some() { self.clock.now() } else { self.now_if_expiring() };
            let at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
            (now, at, at, None)
        } else {
            self.idle_deadlines(ttl, options.idle)
        };
        let metadata = options.metadata.map(Box::new);
        let mut tags = options.tags;
        if !self.expiries.is_empty() {
            self.reclaim_expired(now, RECLAIM_PER_WRITE, removed);
        }
        // The reclaim may have taken the entry under this very key; one it
        // did not reach goes the same way: the key is set as a new one.
        let existing = match existing.filter(|&id| self.slab[id].list() != FREE) {
            Some(id) if self.has_expired(id, Some(now)) => {
                removed.push(self.expire(id, hash));
                None
            }
            existing => existing,
        };
        if WEIGHED && !self.evicted_once && !self.fits::<true>(weight, existing) {
            self.resize_for_entries(self.slab.len());
        }

        if let Some(id) = existing
            && WEIGHED
            && !self.fits::<true>(weight, Some(id))
        {
            // A heavier value that needs room: the old entry leaves first (so
            // that making room cannot pick it), and the key comes back at the
            // head of the list it was on, as a replaced entry would be.
            let (list, freq) = (self.slab[id].list(), self.slab[id].freq.load(Relaxed));
            removed.push(self.remove_slot(id, hash, RemovalReason::Replaced));
            self.make_room::<WEIGHED>(weight, now, removed);
            let id = self.insert_new(hash, key, value, metadata, expires_at, list, weight, removed);
            if idle.is_some() {
                self.start_idle(id, idle, ttl_at, now);
            }
            if self.kind == Kind::S3Fifo {
                self.slab[id].freq.store(freq, Relaxed);
                queues::bump(&self.slab[id].freq);
            }
        } else if let Some(id) = existing {
            if WEIGHED {
                self.slab.set_weight(id, weight);
            }
            let seq = self.take_seq();
            let slot = &mut self.slab[id];
            let old_expiry = std::mem::replace(&mut slot.expires_at, expires_at);
            let old_seq = std::mem::replace(&mut slot.seq, seq);
            let old_value = slot.value.replace(value);
            let old_metadata = std::mem::replace(&mut slot.metadata, metadata);
            if idle.is_some() || slot.idle {
                self.start_idle(id, idle, ttl_at, now);
            }
            self.reindex_expiry(id, (old_expiry, old_seq), (expires_at, seq));
            // Taken: the entry's tags are settled here (none stays empty below).
            // Tested here, not in `retag`: an untagged store makes no call.
            if self.tags.is_some() || !tags.is_empty() {
                self.retag(id, std::mem::take(&mut tags));
            }
            match self.kind {
                Kind::S3Fifo => queues::bump(&self.slab[id].freq),
                Kind::Lru { .. } | Kind::Ttl => self.slab.move_to_head(id),
            }
            removed.push(Removed::replaced(old_value, old_metadata));
        } else if ADAPTIVE_BUILT && self.adaptive.is_some() {
            let full = !self.fits::<WEIGHED>(weight, None)
                && (self.expiries.is_empty() || !self.reclaim_expired(now, 1, removed));
            let (list, evicted) = self.admit(hash, full);
            if let Some(evicted) = evicted {
                self.counters.evictions += 1;
                removed.push(evicted);
            }
            // One eviction makes room for an entry of weight 1; a heavier one may need more.
            if WEIGHED {
                self.make_room::<true>(weight, now, removed);
            }
            let id = self.insert_new(hash, key, value, metadata, expires_at, list, weight, removed);
            if idle.is_some() {
                self.start_idle(id, idle, ttl_at, now);
            }
        } else {
            self.make_room::<WEIGHED>(weight, now, removed);
            let list = self.classic_list_for(hash);
            let id = self.insert_new(hash, key, value, metadata, expires_at, list, weight, removed);
            if idle.is_some() {
                self.start_idle(id, idle, ttl_at, now);
            }
        }
        if !tags.is_empty() {
            let id = self.find(hash, &key).expect("the entry was just set");
            self.retag(id, tags);
        }
        self.counters.sets += 1;
        Ok(())
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Whether an entry of `weight` fits beside the entries held, without
    /// the one in slot `replacing` (a sum past `u64::MAX` does not fit, and does not wrap).
    /// Unweighted (`!WEIGHED`: every entry weighs 1), the entry count decides.
    #[inline(always)]
    fn fits<const WEIGHED: bool>(&self, weight: u64, replacing: Option<u32>) -> bool {
        if !WEIGHED {
            return self.slab.len() - usize::from(replacing.is_some()) < self.max_size;
        }
        let held = self.slab.weight() - replacing.map_or(0, |id| self.slab.weight_of(id));
        held.checked_add(weight).is_some_and(|total| total <= self.max_size as u64)
    }

    /// Makes room for an entry of `weight` (which fits the capacity):
    /// reclaims an expired entry or evicts one by the policy's rule until the
    /// entries held and it fit. Without a weigher, at most one goes.
    #[inline]
    fn make_room<const WEIGHED: bool>(&mut self, weight: u64, now: Nanos, removed: &mut Removals<V>) {
        if !WEIGHED {
            // One entry at most, written as the engine did before weights (the same code).
            if self.slab.len() >= self.max_size
                && !self.reclaim_expired(now, 1, removed)
                && let Some(evicted) = self.evict_one()
            {
                self.counters.evictions += 1;
                removed.push(evicted);
            }
            return;
        }
        while !self.fits::<true>(weight, None) {
            if self.reclaim_expired(now, 1, removed) {
                continue;
            }
            let Some(evicted) = self.evict_one() else { break };
            self.counters.evictions += 1;
            removed.push(evicted);
        }
    }

    /// Stores a new entry of `weight` at the head of `list`; its slot. The
    /// key goes in the buffer of a key this call `removed` if one is as long
    /// and the store has no listener to hand it to (churn of keys of one
    /// length then allocates nothing), else in a new one.
    #[allow(clippy::too_many_arguments)]
    fn insert_new(
        &mut self,
        hash: u64,
        key: Key<'_>,
        value: V,
        metadata: Option<Box<Metadata>>,
        expires_at: Nanos,
        list: u8,
        weight: u64,
        removed: &mut Removals<V>,
    ) -> u32 {
        // With a listener, every removed key is the listener's.
        let recycled = if self.listening { None } else { removed.take_key_of_len(key.len()) };
        let key = match recycled {
            Some(buffer) => refill(buffer, &key),
            None => Box::from(&*key),
        };
        self.insert_fresh(hash, key, value, metadata, expires_at, list, weight)
    }

    /// [`insert_new`](Self::insert_new) with the key's buffer made.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn insert_fresh(
        &mut self,
        hash: u64,
        key: Box<str>,
        value: V,
        metadata: Option<Box<Metadata>>,
        expires_at: Nanos,
        list: u8,
        weight: u64,
    ) -> u32 {
        let seq = self.take_seq();
        let id = self.slab.insert(Slot::new(key, value, metadata, expires_at, seq), list, weight);
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, id, |&i| hasher.hash_one(&*slab[i].key));
        self.reindex_expiry(id, (NEVER, 0), (expires_at, seq));
        id
    }

    /// Removes the entry under `key`, handing back the live entry it removed.
    pub fn delete(&mut self, key: Key<'_>, hash: u64) -> Option<Removed<V>> {
        // The entry's freshness goes with its slot (`remove_slot`).
        self.cancel_load(&key, None);
        let id = self.find(hash, &key)?;
        if self.has_expired(id, None) {
            let removed = self.expire(id, hash);
            self.discard(removed);
            return None;
        }
        self.counters.deletes += 1;
        Some(self.remove_slot(id, hash, RemovalReason::Deleted))
    }

    pub fn contains(&mut self, key: Key<'_>, hash: u64) -> bool {
        self.live_slot(key, hash).is_some()
    }

    pub fn get_metadata(&mut self, key: Key<'_>, hash: u64) -> Option<Metadata> {
        self.live_slot(key, hash).map(|id| self.slab[id].metadata.as_deref().cloned().unwrap_or_default())
    }

    pub fn update_metadata(&mut self, key: Key<'_>, hash: u64, metadata: Metadata) -> Result<bool> {
        // Merging top-level keys adds no depth: checking the update suffices.
        check_metadata(&metadata)?;
        let Some(id) = self.live_slot(key, hash) else { return Ok(false) };
        self.slab[id].metadata.get_or_insert_default().extend(metadata);
        // A write like any other: a load or refresh of the key that began
        // before it stores nothing (it would erase the update).
        self.cancel_refresh(&key, id);
        Ok(true)
    }

    /// Removes the live entries whose keys match `pattern`, handing them back.
    pub fn invalidate(&mut self, pattern: &Pattern) -> Vec<Removed<V>> {
        self.forget_loads_matching(pattern);
        let now = self.now_if_expiring();
        let doomed: Vec<u32> = self.slab.ids().filter(|&id| pattern.matches(&self.slab[id].key)).collect();
        self.invalidate_slots(doomed, now, false)
    }

    /// Removes the slots `doomed` (each once) as invalidated (`invalidate`,
    /// `invalidate_tags`), handing back the live entries; those found
    /// expired leave as expired. `forget_loads`: the loads of their keys are
    /// cancelled too.
    pub(super) fn invalidate_slots(&mut self, doomed: Vec<u32>, now: Nanos, forget_loads: bool) -> Vec<Removed<V>> {
        let mut removed = Vec::with_capacity(doomed.len());
        let mut expired = Vec::new();
        for id in doomed {
            let hash = self.hash(&self.slab[id].key);
            if forget_loads && !self.loads.is_empty() {
                self.loads.remove(&*self.slab[id].key);
            }
            if self.has_expired(id, Some(now)) {
                expired.push(self.expire(id, hash));
            } else {
                removed.push(self.remove_slot(id, hash, RemovalReason::Invalidated));
            }
        }
        self.counters.deletes += removed.len() as u64;
        for gone in expired {
            self.discard(gone);
        }
        removed
    }

    /// Live keys, all or those matching `pattern`, in the engine's order: see
    /// [`for_each_live`](Self::for_each_live).
    pub fn keys(&mut self, pattern: Option<&Pattern>) -> Vec<String> {
        let mut keys = Vec::new();
        self.for_each_live(|key, _| {
            if pattern.is_none_or(|p| p.matches(key)) {
                keys.push(key.to_string());
            }
        });
        keys
    }

    /// Calls `f` with every live entry, after reclaiming the expired ones.
    /// Order: LRU, most recently used first; TTL, most recently set first;
    /// S3-FIFO, the small (probationary) queue newest first, then the main
    /// queue newest first.
    pub fn for_each_live(&mut self, mut f: impl FnMut(&str, &V)) {
        self.reclaim_all_expired();
        for list in [SMALL, MAIN] {
            for id in self.slab.iter(list) {
                let slot = &self.slab[id];
                f(&slot.key, slot.value());
            }
        }
    }

    /// The number of live entries.
    pub fn len(&mut self) -> usize {
        self.reclaim_all_expired();
        self.slab.len()
    }

    /// Empties the engine (counting the live entries as deletes), handing
    /// back what it held for the caller to drop once it is consistent.
    pub fn clear(&mut self) -> Vec<Removed<V>> {
        self.reclaim_all_expired();
        self.counters.deletes += self.slab.len() as u64;
        self.loads.clear();
        self.fresh.clear();
        self.tags = None;
        self.index = HashTable::new();
        self.ghost.clear();
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            adaptive.ghost.clear();
        }
        self.expiries.clear();
        self.idles.clear();
        self.evicted_once = false;
        self.slab.take_all(RemovalReason::Cleared)
    }

    /// Takes slot `id` (filed under `hash`) out of every structure and frees
    /// it; its entry, leaving for `reason`.
    fn remove_slot(&mut self, id: u32, hash: u64, reason: RemovalReason) -> Removed<V> {
        self.unindex(id, hash);
        let slot = &self.slab[id];
        self.reindex_expiry(id, (slot.expires_at, slot.seq), (NEVER, 0));
        if !self.fresh.is_empty() {
            self.fresh.remove(&id);
        }
        if !self.idles.is_empty() {
            self.stop_idle(id);
        }
        if let Some(index) = self.tags.as_deref_mut() {
            index.untag(id);
        }
        self.slab.remove(id, reason)
    }
}

impl<V> Engine<V> {
    /// Takes slot `id`, filed under `hash`, out of the index.
    #[inline(always)]
    fn unindex(&mut self, id: u32, hash: u64) {
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
    }
}

/// Writes `key` over `buffer`, a key exactly as long (a key an eviction
/// just freed), with no allocation.
#[inline(always)]
fn overwrite(buffer: &mut str, key: &str) {
    debug_assert_eq!(buffer.len(), key.len());
    // SAFETY: the bytes written are all of `key`'s, valid UTF-8, and the
    // buffer is exactly as long: it holds valid UTF-8 when the borrow ends.
    let bytes = unsafe { buffer.as_bytes_mut() };
    let (from, n) = (key.as_bytes(), bytes.len());
    if (8..=16).contains(&n) {
        // Most keys: two overlapping words, not a call to `memcpy`.
        let word = |at: usize| -> [u8; 8] { from[at..at + 8].try_into().expect("8 bytes") };
        let (head, tail) = (word(0), word(n - 8));
        bytes[..8].copy_from_slice(&head);
        bytes[n - 8..].copy_from_slice(&tail);
    } else {
        bytes.copy_from_slice(from);
    }
}

/// `key` in `buffer`, the buffer of another key exactly as long (a key an
/// eviction just freed): the bytes are copied over, with no allocation
/// (`String::from` takes the box's buffer, `push_str` fits in its capacity
/// and `into_boxed_str` has nothing to shrink; `tests/memory_allocations.rs`
/// checks that churn allocates nothing and that keys of one to four-byte
/// characters read back whole).
#[inline]
fn refill(buffer: Box<str>, key: &str) -> Box<str> {
    let mut text = String::from(buffer);
    text.clear();
    text.push_str(key);
    text.into_boxed_str()
}

/// `a == b`.
#[inline(always)]
#[cfg(target_arch = "wasm32")]
fn same_key(a: &str, b: &str) -> bool {
    // Smaller code for the npm package's size budget.
    a == b
}

/// `a == b`, with keys of 8 to 16 bytes (most keys) compared by two
/// overlapping word loads each instead of a call to `memcmp`. Only that one
/// length range: a third case (4 to 7 bytes, compared the same way) made the
/// look-up around it too large for LLVM to inline into `get`, which cost
/// more than the `memcmp` it saved (callgrind, bench/native/callgrind.sh).
#[inline(always)]
#[cfg(not(target_arch = "wasm32"))]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    if (8..=16).contains(&n) { word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8) } else { a == b }
}

#[cfg(test)]
impl<V> Engine<V> {
    /// The counters so far.
    pub fn stats(&self) -> crate::metrics::CacheStats {
        let mut counters = crate::metrics::Counters::default();
        self.add_counters_to(&mut counters);
        counters.snapshot()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V> Engine<V> {
    /// The key hasher, for a model to hash keys as the engine does.
    pub fn hasher_for_tests(&self) -> KeyHasher {
        self.hasher.clone()
    }

    /// The gets counted on the shard's shared counters (not on a thread's lane).
    pub fn shared_gets_for_tests(&self) -> u64 {
        let (hits, misses) = self.reads.totals();
        hits + misses
    }

    /// Where the read counters are, to check the layout.
    pub fn read_counters_address(&self) -> usize {
        &self.reads as *const ReadCounters as usize
    }

    /// The adaptive policy's current setting.
    pub fn adaptive_setting(&self) -> Option<super::shadow::Setting> {
        self.adaptive.as_ref().map(|a| a.setting)
    }

    /// Whether this engine runs shadow caches of its own.
    pub fn runs_shadows(&self) -> bool {
        self.adaptive.as_ref().is_some_and(|a| a.sampler.is_some())
    }

    /// Runs `setting` from now on, its shadows (if it has any) holding to it
    /// too, as after a weighted engine's first fill.
    pub fn start_from_setting_for_tests(&mut self, setting: super::shadow::Setting) {
        let adaptive = self.adaptive.as_mut().expect("an adaptive policy");
        adaptive.setting = setting;
        adaptive.forget_followed();
        if let Some(sampler) = &mut adaptive.sampler {
            sampler.start_from(setting);
        }
        self.small_cap = setting.small_cap(self.max_size);
    }

    /// Entries held, expired or not.
    pub fn raw_len(&self) -> usize {
        self.slab.len()
    }

    /// How many loads are in progress (none may be left behind).
    pub fn loads_in_progress(&self) -> usize {
        self.loads.len()
    }

    /// Panics unless the internal invariants hold: the capacity bound
    /// (counting expired entries too), the slab's lists, the index and the
    /// expiry index all describing exactly the live slots, and the policy's
    /// queues within their bounds.
    pub fn validate(&self) {
        self.slab.validate();
        let live = self.slab.len();
        let weight = self.slab.weight();
        assert!(weight <= self.max_size as u64, "weight {weight} > max {}", self.max_size);
        if self.weigher.is_none() {
            assert_eq!(weight, live as u64, "every entry weighs 1");
        }
        assert_eq!(self.index.len(), live, "index size");
        for id in self.slab.ids() {
            let key = &self.slab[id].key;
            assert_eq!(self.find(self.hash(key), key), Some(id), "index misses {key}");
        }
        if self.kind != Kind::S3Fifo {
            assert_eq!(self.slab.list(SMALL).len, 0);
        }
        let expected: BTreeSet<(Nanos, u32, u32)> = self
            .slab
            .ids()
            .filter(|&id| self.slab[id].expires_at != NEVER)
            .map(|id| (self.slab[id].expires_at, self.slab[id].seq, id))
            .collect();
        assert_eq!(self.expiries, expected, "expiry index out of step with the entries");
        self.validate_idle();
        self.validate_queues();
        self.validate_tags();
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
