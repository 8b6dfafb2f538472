//! The slot engine behind the JS store: the policy and expiry of entries that
//! it knows only by slot id.
//!
//! The JS layer keeps the keys (in a `Map` to slot ids), the values and the
//! metadata; this engine keeps, per slot, the policy's links and bits and the
//! deadline, in plain arrays (one per field) that the JS layer also reads and
//! writes through typed-array views of the wasm memory. So a hit never calls
//! into wasm: under S3-FIFO it bumps the slot's frequency byte, under TTL it
//! reads the deadline, and under exact LRU it appends the slot id to the
//! access ring ([`SlotEngine::ring`]), which the engine replays, in order,
//! before any call that can evict, reorder or list (each such call takes the
//! ring's length). Caffeine buffers its reads the same way.
//!
//! Every call that removes entries writes their ids (and why) into the
//! removed buffer or the report, for the JS layer to forget them; nothing
//! else frees a slot, so the JS layer never holds an id the engine reused.
//!
//! The rules are the memory engine's (`engine/`): the same lists, the same
//! S3-FIFO (small and main queues, a ghost of evicted hashes, the small
//! queue's size adapted by [`Climber`]), expired entries reclaimed before any
//! live one is evicted, and up to [`RECLAIM_PER_WRITE`] more on each set.
//! Time is the JS clock's, in milliseconds (`f64`); a deadline of `Infinity`
//! means never.

use super::engine::{Climber, RECLAIM_PER_WRITE, ghost_cap};
use super::fifo_ghost::FifoGhost;
use crate::policies::Policy;

// S3-FIFO's parameters, as in engine/queues.rs: the small queue starts at a tenth
// of the capacity, an entry read twice while in it moves to main, and the
// access count saturates at 3.
const SMALL_SHARE: usize = 10;
const MOVE_TO_MAIN: u8 = 2;
pub(crate) const MAX_FREQ: u8 = 3;

/// "No slot": the end of a list, or an empty free list.
const NIL: u32 = u32::MAX;

/// The `prev` of a free slot (a live one has a slot id or `NIL` there).
const FREED: u32 = u32::MAX - 1;
/// The most slots an engine has (ids stay below [`FREED`]).
pub(crate) const MAX_SLOTS: usize = FREED as usize;

/// The list a slot is on. LRU and TTL use only `MAIN`. Under S3-FIFO the
/// slot's `freq` byte holds its access count in the low two bits (the JS
/// layer raises it on a hit) and [`IN_MAIN`] when it is on the main queue.
const SMALL: u8 = 0;
const MAIN: u8 = 1;
const IN_MAIN: u8 = 0x80;
pub(crate) const COUNT: u8 = 0x03;

/// How many hits the access ring holds before the JS layer drains it.
pub(crate) const RING_LEN: usize = 1024;
/// The most (id, reason) pairs one set reports: the replaced entry, up to
/// [`RECLAIM_PER_WRITE`] expired ones, one more expired or evicted for room.
pub(crate) const MAX_REMOVED: usize = RECLAIM_PER_WRITE + 2;

/// Why a slot was freed, as the JS layer reads it.
pub(crate) const EVICTED: u32 = 0;
pub(crate) const EXPIRED: u32 = 1;
pub(crate) const REPLACED: u32 = 3;

/// The counters the engine keeps, at these indexes of [`SlotEngine::counters`].
pub(crate) const SETS: usize = 0;
pub(crate) const DELETES: usize = 1;
pub(crate) const EVICTIONS: usize = 2;
pub(crate) const EXPIRATIONS: usize = 3;
pub(crate) const COUNTERS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lru { refresh_on_get: bool },
    Ttl,
    S3Fifo,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };
}

/// A min-heap entry of the expiry queue: (deadline, seq) orders it; it is
/// stale once its slot was set again or freed (the slot's `seq` moved on).
#[derive(Clone, Copy)]
struct Due {
    at: f64,
    seq: u32,
    id: u32,
}

impl Due {
    #[inline]
    fn before(&self, other: &Due) -> bool {
        self.at < other.at || (self.at == other.at && (self.seq.wrapping_sub(other.seq) as i32) < 0)
    }
}

/// The engine: see the module docs.
pub(crate) struct SlotEngine {
    kind: Kind,
    max_size: usize,
    small_cap: usize,
    climber: Option<Climber>,
    evicted_once: bool,
    /// The policy's TTL in milliseconds, or `Infinity`.
    default_ttl: f64,
    // One array per field, indexed by slot id (read by JS: `freq`, `deadline`).
    /// S3-FIFO only: the access count and queue (see [`IN_MAIN`]).
    freq: Vec<u8>,
    /// [`FREED`] on a free slot.
    prev: Vec<u32>,
    next: Vec<u32>,
    /// Empty until the first entry with a deadline (an LRU store without
    /// TTLs never pays for it).
    deadline: Vec<f64>,
    seq: Vec<u32>,
    /// Whether `deadline` and `seq` are kept (some entry has had a deadline).
    timed: bool,
    /// S3-FIFO only: the key's hash, for the ghost.
    hash: Vec<u32>,
    free: u32,
    live: usize,
    lists: [List; 2],
    dues: Vec<Due>,
    ghost: FifoGhost<u32>,
    next_seq: u32,
    pub counters: [f64; COUNTERS],
    /// `[version, slots, freq address, deadline address or 0]`, for the JS
    /// layer's views: the version moves whenever they change.
    pub header: [u32; 4],
    pub ring: Box<[u32]>,
    /// `[count, id, reason, id, reason, ...]` of the last set.
    pub removed: Box<[u32]>,
    /// The ids the last listing call found, or the ids the JS layer asks to remove.
    pub report: Vec<u32>,
}

// Natively only the tests use it; some calls are the JS layer's alone.
impl SlotEngine {
    /// Reserves room for `n` slots up front where the memory has it (the
    /// JS layer does the same for its arrays): untouched, the pages cost
    /// address space, not resident memory, and the arrays never move.
    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn preallocate(&mut self, n: usize) {
        let n = n.min(self.max_size);
        let s3 = self.kind == Kind::S3Fifo;
        let _ = self.prev.try_reserve_exact(n).is_ok()
            && self.next.try_reserve_exact(n).is_ok()
            && (!s3 || (self.freq.try_reserve_exact(n).is_ok() && self.hash.try_reserve_exact(n).is_ok()));
    }

    pub fn new(policy: &Policy) -> Self {
        let kind = match policy {
            Policy::Lru(p) => Kind::Lru { refresh_on_get: p.refreshes_on_get() },
            Policy::Ttl(_) => Kind::Ttl,
            Policy::S3Fifo(_) => Kind::S3Fifo,
        };
        let max_size = policy.max_size().unwrap_or(usize::MAX).max(1);
        let small_cap = (max_size / SMALL_SHARE).max(1);
        SlotEngine {
            kind,
            max_size,
            small_cap,
            climber: (kind == Kind::S3Fifo).then(|| Climber::new(max_size)),
            evicted_once: false,
            default_ttl: policy.default_ttl().map_or(f64::INFINITY, |ttl| ttl.as_secs_f64() * 1e3),
            freq: Vec::new(),
            prev: Vec::new(),
            next: Vec::new(),
            deadline: Vec::new(),
            seq: Vec::new(),
            timed: false,
            hash: Vec::new(),
            free: NIL,
            live: 0,
            lists: [List::EMPTY; 2],
            dues: Vec::new(),
            ghost: FifoGhost::new(if kind == Kind::S3Fifo { ghost_cap(small_cap, max_size) } else { 0 }),
            next_seq: 0,
            counters: [0.0; COUNTERS],
            header: [0; 4],
            ring: vec![0; RING_LEN].into_boxed_slice(),
            removed: vec![0; 1 + 2 * MAX_REMOVED].into_boxed_slice(),
            report: Vec::new(),
        }
    }

    /// Whether a hit reorders (exact LRU): only then does the JS layer fill the ring.
    pub fn hits_reorder(&self) -> bool {
        self.kind == (Kind::Lru { refresh_on_get: true })
    }

    /// How many live entries there are (expired ones not yet reclaimed included).
    #[cfg(any(test, target_arch = "wasm32"))] // the JS store (and the tests)
    pub fn live(&self) -> usize {
        self.live
    }

    /// Replays the first `n` hits of the ring, in order.
    #[inline]
    pub fn replay(&mut self, n: usize) {
        // `move_to_head` on MAIN, written out over the fields: this runs
        // once per exact-LRU hit, and the loop is most of what a hit costs.
        let main = &mut self.lists[MAIN as usize];
        let (prev, next) = (&mut self.prev[..], &mut self.next[..]);
        for &id in &self.ring[..n.min(RING_LEN)] {
            let i = id as usize;
            // Exact LRU has only MAIN: a live slot is on it.
            if i >= prev.len() || prev[i] == FREED || main.head == id {
                continue;
            }
            // Not the head, so it has a predecessor.
            let (p, nx) = (prev[i], next[i]);
            next[p as usize] = nx;
            if nx != NIL {
                prev[nx as usize] = p;
            } else {
                main.tail = p;
            }
            prev[i] = NIL;
            next[i] = main.head;
            prev[main.head as usize] = id;
            main.head = id;
        }
    }

    /// Whether live slot `id` is on S3-FIFO's small (probationary) queue:
    /// what a dump records of it (`js/api/15-dump.js`).
    pub fn on_probation(&self, id: u32) -> bool {
        self.kind == Kind::S3Fifo && self.is_live(id) && self.list_of(id) == SMALL
    }

    /// Moves live slot `id` to the head of S3-FIFO's small queue (`probation`)
    /// or main queue, keeping its access count: how a loaded dump puts an
    /// entry back on the queue it came from. Nothing under LRU and TTL.
    pub fn place(&mut self, id: u32, probation: bool) {
        if self.kind != Kind::S3Fifo || !self.is_live(id) {
            return;
        }
        let to = if probation { SMALL } else { MAIN };
        self.unlink(self.list_of(id), id);
        self.push_head(to, id);
        let count = self.freq[id as usize] & COUNT;
        self.freq[id as usize] = if probation { count } else { IN_MAIN | count };
    }

    /// Whether `id` is a slot holding an entry.
    #[inline]
    fn is_live(&self, id: u32) -> bool {
        self.prev.get(id as usize).is_some_and(|&p| p != FREED)
    }

    /// The list live slot `id` is on.
    #[inline]
    fn list_of(&self, id: u32) -> u8 {
        if self.kind == Kind::S3Fifo && self.freq[id as usize] & IN_MAIN == 0 { SMALL } else { MAIN }
    }

    #[inline]
    fn expired(&self, id: u32, now: f64) -> bool {
        self.timed && self.deadline[id as usize] <= now
    }

    /// Stores an entry: in slot `existing` (a live slot the JS layer has for
    /// the key) or in a new slot (`existing` < 0, `hash` the key's), with a
    /// TTL of `ttl` ms (`NaN` for the policy's default). `gets` and `misses`
    /// are the store's read counters (S3-FIFO sizes its queues by them).
    /// Returns the slot id, -1 when the engine holds the most slots it can, or
    /// -2 when the memory has no room (then nothing changed); what it removed
    /// is in [`removed`](Self::removed). (The binding calls its two steps
    /// itself, the first before it marks the engine busy: src/wasm/mod.rs.)
    #[cfg(test)]
    pub fn set(&mut self, existing: i64, hash: u32, ttl: f64, now: f64, gets: f64, misses: f64) -> i64 {
        // Room first, so that a set the memory cannot hold changes nothing.
        if !self.prepare_set(existing, ttl) {
            return -2;
        }
        self.set_reserved(existing, hash, ttl, now, gets, misses)
    }

    /// [`set`](Self::set) once [`prepare_set`](Self::prepare_set) with the
    /// same `existing` and `ttl` has reserved its room: it allocates nothing.
    pub fn set_reserved(&mut self, existing: i64, hash: u32, ttl: f64, now: f64, gets: f64, misses: f64) -> i64 {
        let existing = u32::try_from(existing).ok().filter(|&id| self.is_live(id));
        if existing.is_none() && self.free == NIL && self.prev.len() >= MAX_SLOTS {
            return -1;
        }
        let ttl = if ttl.is_nan() { self.default_ttl } else { ttl };
        let deadline = if ttl == f64::INFINITY { f64::INFINITY } else { now + ttl };
        let views = (self.freq.as_ptr(), self.deadline.as_ptr(), self.prev.len(), self.timed);
        self.removed[0] = 0;
        // Looks when the memory engine's climber does (`Climber::due`), so
        // that both decide alike.
        if let Some(climber) = &mut self.climber
            && climber.due()
            && let Some(small) = climber.adapt(gets as u64, misses as u64, self.small_cap, self.max_size)
        {
            self.small_cap = small;
            self.ghost.set_cap(ghost_cap(small, self.max_size));
        }
        // The JS layer passes no hash (0) for a key it has a slot for: if the
        // reclaim below takes that very slot, the new one keeps its hash (a
        // freed slot's hash stays in place until reused).
        let hash = existing.and_then(|id| self.hash.get(id as usize).copied()).unwrap_or(hash);
        self.reclaim_expired(now, RECLAIM_PER_WRITE);
        // The reclaim may have taken the entry in that very slot; one it did
        // not reach goes the same way: the key is set as a new one (as the
        // memory engine does).
        let existing = match existing.filter(|&id| self.is_live(id)) {
            Some(id) if self.expired(id, now) => {
                self.free_slot(id);
                self.counters[EXPIRATIONS] += 1.0;
                self.push_removed(id, EXPIRED);
                None
            }
            existing => existing,
        };
        let id = if let Some(id) = existing {
            self.push_removed(id, REPLACED);
            self.set_deadline(id, deadline);
            match self.kind {
                Kind::S3Fifo => self.bump(id),
                Kind::Lru { .. } | Kind::Ttl => self.move_to_head(id),
            }
            id
        } else {
            if self.live >= self.max_size
                && !self.reclaim_expired(now, 1)
                && let Some(victim) = self.evict_one()
            {
                self.counters[EVICTIONS] += 1.0;
                self.push_removed(victim, EVICTED);
            }
            self.insert_new(hash, deadline)
        };
        self.counters[SETS] += 1.0;
        if views != (self.freq.as_ptr(), self.deadline.as_ptr(), self.prev.len(), self.timed) {
            self.publish();
        }
        i64::from(id)
    }

    /// Reserves what a set needs (a new slot in every array, a deadline and
    /// its queue entry, and for a new key in a full S3-FIFO store the ghost's
    /// room for the hash it evicts): whether the memory had room. Allocates
    /// the deadline arrays at the first deadline.
    fn reserve(&mut self, new_key: bool, deadline: bool) -> bool {
        let new_slot = new_key && self.free == NIL;
        let n = usize::from(new_slot);
        let len = self.prev.len();
        if deadline && !self.timed {
            let (mut at, mut seq) = (Vec::new(), Vec::new());
            if at.try_reserve(len + n).is_err() || seq.try_reserve(len + n).is_err() {
                return false;
            }
            at.resize(len, f64::INFINITY);
            seq.resize(len, 0);
            (self.deadline, self.seq, self.timed) = (at, seq, true);
        }
        let s3 = self.kind == Kind::S3Fifo;
        self.prev.try_reserve(n).is_ok()
            && self.next.try_reserve(n).is_ok()
            && (!s3 || (self.freq.try_reserve(n).is_ok() && self.hash.try_reserve(n).is_ok()))
            && (!self.timed || (self.deadline.try_reserve(n).is_ok() && self.seq.try_reserve(n).is_ok()))
            && (!deadline || self.dues.try_reserve(1).is_ok())
            && (!s3 || !new_key || self.live < self.max_size || self.ghost.try_reserve_one())
    }

    /// The room a [`set`](Self::set) with these arguments needs, reserved
    /// ahead of it (the JS store does it before it marks the engine busy:
    /// an allocation is the deepest part of a set, and one cut short by a
    /// stack overflow must find the engine unchanged): whether the memory
    /// had room. The set then allocates nothing; it reserves again (then
    /// a few comparisons) and fails with -2 if this failed.
    pub fn prepare_set(&mut self, existing: i64, ttl: f64) -> bool {
        let existing = u32::try_from(existing).ok().filter(|&id| self.is_live(id));
        if existing.is_none() && self.free == NIL && self.prev.len() >= MAX_SLOTS {
            return true; // the set refuses it (-1): nothing to reserve
        }
        let ttl = if ttl.is_nan() { self.default_ttl } else { ttl };
        let views = (self.freq.as_ptr(), self.deadline.as_ptr(), self.prev.len(), self.timed);
        let room = self.reserve(existing.is_none(), ttl != f64::INFINITY);
        if views != (self.freq.as_ptr(), self.deadline.as_ptr(), self.prev.len(), self.timed) {
            self.publish();
        }
        room
    }

    fn push_removed(&mut self, id: u32, reason: u32) {
        let n = self.removed[0] as usize;
        debug_assert!(n < MAX_REMOVED, "a set removes at most MAX_REMOVED entries");
        if n < MAX_REMOVED {
            self.removed[1 + 2 * n] = id;
            self.removed[2 + 2 * n] = reason;
            self.removed[0] = n as u32 + 1;
        }
    }

    fn set_deadline(&mut self, id: u32, deadline: f64) {
        if !self.timed {
            return;
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.deadline[id as usize] = deadline;
        self.seq[id as usize] = seq;
        if deadline != f64::INFINITY {
            self.push_due(Due { at: deadline, seq, id });
        }
    }

    fn insert_new(&mut self, hash: u32, deadline: f64) -> u32 {
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.next[id as usize];
            id
        } else {
            let id = self.prev.len() as u32;
            self.prev.push(NIL);
            self.next.push(NIL);
            if self.kind == Kind::S3Fifo {
                self.freq.push(0);
                self.hash.push(0);
            }
            if self.timed {
                self.deadline.push(f64::INFINITY);
                self.seq.push(0);
            }
            id
        };
        let list = match self.kind {
            Kind::S3Fifo => {
                self.hash[id as usize] = hash;
                if self.ghost.take(hash) {
                    MAIN
                } else if self.evicted_once || self.lists[SMALL as usize].len < self.small_cap {
                    SMALL
                } else {
                    MAIN
                }
            }
            _ => MAIN,
        };
        if self.kind == Kind::S3Fifo {
            self.freq[id as usize] = if list == MAIN { IN_MAIN } else { 0 };
        }
        self.push_head(list, id);
        self.set_deadline(id, deadline);
        self.live += 1;
        id
    }

    /// Frees slot `id` if it is live: whether it was (and not expired at
    /// `now`), counting a delete or an expiration.
    pub fn remove(&mut self, id: u32, now: f64) -> bool {
        if !self.is_live(id) {
            return false;
        }
        let expired = self.expired(id, now);
        self.free_slot(id);
        self.counters[if expired { EXPIRATIONS } else { DELETES }] += 1.0;
        !expired
    }

    /// Frees slot `id`, found expired by the JS layer; counts the expiration.
    pub fn expire(&mut self, id: u32) {
        if self.is_live(id) {
            self.free_slot(id);
            self.counters[EXPIRATIONS] += 1.0;
        }
    }

    /// Frees the live slots in the report, counting them as deletes (the
    /// JS layer reclaimed the expired ones first): how many it freed.
    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn remove_reported(&mut self) -> usize {
        let ids = std::mem::take(&mut self.report);
        let mut n = 0;
        for &id in &ids {
            if self.is_live(id) {
                self.free_slot(id);
                n += 1;
            }
        }
        self.counters[DELETES] += n as f64;
        self.report = ids;
        n
    }

    /// Room in the report for `n` ids, reserved ahead of a call that fills
    /// it, as [`prepare_set`](Self::prepare_set) does (its contents stay):
    /// whether the memory had room. Without it, the call reserves as before.
    #[cfg(any(test, target_arch = "wasm32"))] // the JS store (and the tests)
    pub fn prepare_report(&mut self, n: usize) -> bool {
        let len = self.report.len();
        n <= self.report.capacity() || self.report.try_reserve(n - len).is_ok()
    }

    /// Reclaims every entry expired by `now`; their ids in the report.
    /// `None` when the memory has no room for the report (nothing changed).
    pub fn reclaim(&mut self, now: f64) -> Option<usize> {
        self.report.clear();
        // Without room to report one more, the rest waits for a later call.
        while self.report.try_reserve(1).is_ok()
            && let Some(id) = self.pop_expired(now)
        {
            self.free_slot(id);
            self.counters[EXPIRATIONS] += 1.0;
            self.report.push(id);
        }
        Some(self.report.len())
    }

    /// The live slots in the policy's order, in the report (after [`reclaim`](Self::reclaim)):
    /// LRU most recently used first; TTL most recently set first; S3-FIFO
    /// the small queue newest first, then the main queue newest first.
    pub fn list_live(&mut self) -> Option<usize> {
        self.report.clear();
        if self.report.try_reserve(self.live).is_err() {
            return None;
        }
        for list in [SMALL, MAIN] {
            let mut id = self.lists[list as usize].head;
            while id != NIL {
                self.report.push(id);
                id = self.next[id as usize];
            }
        }
        Some(self.report.len())
    }

    /// Empties the engine, counting the live entries as deletes (reclaim first).
    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn clear(&mut self) {
        self.counters[DELETES] += self.live as f64;
        self.freq = Vec::new();
        self.prev = Vec::new();
        self.next = Vec::new();
        self.deadline = Vec::new();
        self.seq = Vec::new();
        self.timed = false;
        self.hash = Vec::new();
        self.free = NIL;
        self.live = 0;
        self.lists = [List::EMPTY; 2];
        self.dues = Vec::new();
        self.ghost.clear();
        self.evicted_once = false;
        self.report = Vec::new();
        self.publish();
    }

    /// Publishes the per-slot arrays' places again if they moved since
    /// the header last said (see [`publish`](Self::publish)). A call cut
    /// short after an allocation moved an array and before it published
    /// leaves the engine sound but the header naming freed memory, which
    /// the JS layer's views would then read and write: `prepare_set` runs
    /// before the binding marks the engine busy and moves the arrays one
    /// by one, each allocation behind its own probe, and a later one with
    /// a deeper chain (the full S3-FIFO store's ghost: hashbrown's
    /// `reserve_rehash`) can fail its probe where the earlier ones passed
    /// (tests/js/views-moved.test.mjs). Whether it published.
    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn publish_if_moved(&mut self) -> bool {
        let deadline = if self.timed { self.deadline.as_ptr() as usize as u32 } else { 0 };
        let freq = if self.kind == Kind::S3Fifo { self.freq.as_ptr() as usize as u32 } else { 0 };
        let moved = self.header[1..] != [self.prev.len() as u32, freq, deadline];
        if moved {
            self.publish();
        }
        moved
    }

    /// Tells the JS layer where the per-slot arrays are now (see `header`).
    pub fn publish(&mut self) {
        let deadline = if self.timed { self.deadline.as_ptr() as usize as u32 } else { 0 };
        let freq = if self.kind == Kind::S3Fifo { self.freq.as_ptr() as usize as u32 } else { 0 };
        self.header = [self.header[0].wrapping_add(1), self.prev.len() as u32, freq, deadline];
    }

    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn reset_counters(&mut self) {
        self.counters = [0.0; COUNTERS];
        // The JS layer's gets and misses start from zero too.
        if let Some(climber) = &mut self.climber {
            climber.forget_counts();
        }
    }

    fn free_slot(&mut self, id: u32) {
        let list = self.list_of(id);
        self.unlink(list, id);
        if self.timed {
            self.deadline[id as usize] = f64::INFINITY;
            // Its queued deadline, if any, is now stale.
            self.seq[id as usize] = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        self.prev[id as usize] = FREED;
        self.next[id as usize] = self.free;
        self.free = id;
        self.live -= 1;
    }

    /// Removes up to `limit` expired entries, soonest first, reporting them
    /// as removed by a set; whether it removed any. With no deadline queued
    /// (a store without TTLs: every set of an LRU or S3-FIFO store that has
    /// none) it returns at once, inline, without a call.
    #[inline]
    fn reclaim_expired(&mut self, now: f64, limit: usize) -> bool {
        !self.dues.is_empty() && self.reclaim_queued(now, limit)
    }

    /// [`reclaim_expired`](Self::reclaim_expired) once some deadline is queued.
    #[inline(never)]
    fn reclaim_queued(&mut self, now: f64, limit: usize) -> bool {
        let mut n = 0;
        while n < limit {
            let Some(id) = self.pop_expired(now) else { break };
            self.free_slot(id);
            self.push_removed(id, EXPIRED);
            n += 1;
        }
        self.counters[EXPIRATIONS] += n as f64;
        n > 0
    }

    /// The live slot whose deadline passed first, if one has by `now`, taken off the queue.
    fn pop_expired(&mut self, now: f64) -> Option<u32> {
        let due = self.first_due()?;
        if due.at > now {
            return None;
        }
        self.pop_due();
        Some(due.id)
    }

    /// The soonest live deadline, dropping stale entries on the way.
    ///
    /// The JS layer moves the deadline of an entry with a time-to-idle on a
    /// hit, in place and only ever later: a queued deadline earlier than its
    /// slot's is filed again under the slot's, so the queue's first is the
    /// entry that really expires first.
    fn first_due(&mut self) -> Option<Due> {
        while let Some(&due) = self.dues.first() {
            let id = due.id as usize;
            if self.prev[id] != FREED && self.seq[id] == due.seq {
                let at = self.deadline[id];
                if at == due.at {
                    return Some(due);
                }
                self.pop_due();
                self.push_due(Due { at, ..due });
                continue;
            }
            self.pop_due();
        }
        None
    }

    fn push_due(&mut self, due: Due) {
        // Stale entries pile up when the same keys are set again and again.
        if self.dues.len() >= 2 * self.live + 64 {
            let (prev, seq) = (&self.prev, &self.seq);
            self.dues.retain(|d| prev[d.id as usize] != FREED && seq[d.id as usize] == d.seq);
            for i in (0..self.dues.len() / 2).rev() {
                self.sift_down(i);
            }
        }
        self.dues.push(due);
        let mut i = self.dues.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.dues[i].before(&self.dues[parent]) {
                break;
            }
            self.dues.swap(i, parent);
            i = parent;
        }
    }

    fn pop_due(&mut self) {
        let last = self.dues.len() - 1;
        self.dues.swap(0, last);
        self.dues.pop();
        self.sift_down(0);
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.dues.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < n && self.dues[l].before(&self.dues[least]) {
                least = l;
            }
            if r < n && self.dues[r].before(&self.dues[least]) {
                least = r;
            }
            if least == i {
                return;
            }
            self.dues.swap(i, least);
            i = least;
        }
    }

    /// Frees one entry for the JS store's `maxSize` (a total of sizes the
    /// JS layer keeps): an expired entry if there is one, else the policy's
    /// victim, never slot `protect` (the entry just set; `u32::MAX` for
    /// none), which S3-FIFO moves on as if it had been read and TTL passes
    /// over for the oldest set. `id * 4 + reason` (as `f64`: ids go past
    /// `i32`), or -1 when no other entry is left; counts an eviction or an
    /// expiration.
    /// The room an [`evict`](Self::evict) needs (S3-FIFO: one more hash in
    /// the ghost), reserved ahead of it as [`prepare_set`](Self::prepare_set)
    /// does. Without it, the ghost allocates as before.
    #[cfg(target_arch = "wasm32")] // the JS store only
    pub fn prepare_evict(&mut self) {
        if self.kind == Kind::S3Fifo {
            let _ = self.ghost.try_reserve_one();
        }
    }

    pub fn evict(&mut self, now: f64, protect: u32) -> f64 {
        let encode = |id: u32, reason: u32| f64::from(id) * 4.0 + f64::from(reason);
        if let Some(id) = self.pop_expired(now) {
            debug_assert_ne!(id, protect, "the entry just set has not expired");
            self.free_slot(id);
            self.counters[EXPIRATIONS] += 1.0;
            return encode(id, EXPIRED);
        }
        if self.live <= usize::from(self.is_live(protect)) {
            return -1.0;
        }
        let main = self.lists[MAIN as usize];
        // Another entry is live, so a list holding `protect` at its tail has another before it.
        let skip = |tail: u32, prev: &[u32]| if tail == protect && tail != NIL { prev[tail as usize] } else { tail };
        let id = match self.kind {
            Kind::Lru { .. } => skip(main.tail, &self.prev),
            Kind::Ttl => match self.first_due() {
                Some(due) if due.id != protect => due.id,
                _ => skip(main.tail, &self.prev),
            },
            Kind::S3Fifo => match self.evict_s3fifo(protect) {
                Some(id) => {
                    self.counters[EVICTIONS] += 1.0;
                    return encode(id, EVICTED);
                }
                None => return -1.0,
            },
        };
        if id == NIL {
            return -1.0;
        }
        self.free_slot(id);
        self.counters[EVICTIONS] += 1.0;
        encode(id, EVICTED)
    }

    /// Makes room for one entry by the policy's rule: the slot freed.
    fn evict_one(&mut self) -> Option<u32> {
        let id = match self.kind {
            Kind::Lru { .. } => self.lists[MAIN as usize].tail,
            Kind::Ttl => self.first_due().map_or(self.lists[MAIN as usize].tail, |due| due.id),
            Kind::S3Fifo => return self.evict_s3fifo(NIL),
        };
        if id == NIL {
            return None;
        }
        self.free_slot(id);
        Some(id)
    }

    /// S3-FIFO's eviction, as the memory engine's `evict_s3fifo`, passing
    /// over slot `protect` ([`NIL`] for none; see [`evict`](Self::evict)):
    /// from small it moves to main as a read entry would, in main it goes
    /// round again.
    fn evict_s3fifo(&mut self, protect: u32) -> Option<u32> {
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
            let freq = self.freq[id as usize] & COUNT;
            if id == protect {
                self.unlink(list, id);
                self.freq[id as usize] = IN_MAIN | freq;
                self.push_head(MAIN, id);
            } else if from_main && freq > 0 {
                self.freq[id as usize] = IN_MAIN | (freq.min(MAX_FREQ) - 1);
                self.unlink(MAIN, id);
                self.push_head(MAIN, id);
            } else if !from_main && freq >= MOVE_TO_MAIN {
                self.unlink(SMALL, id);
                self.freq[id as usize] = IN_MAIN;
                self.push_head(MAIN, id);
            } else {
                if !from_main {
                    self.ghost.insert(self.hash[id as usize]);
                }
                self.free_slot(id);
                return Some(id);
            }
        }
    }

    #[inline]
    fn bump(&mut self, id: u32) {
        let f = &mut self.freq[id as usize];
        if *f & COUNT < MAX_FREQ {
            *f += 1;
        }
    }

    #[inline]
    fn move_to_head(&mut self, id: u32) {
        let list = self.list_of(id);
        if self.lists[list as usize].head != id {
            self.unlink(list, id);
            self.push_head(list, id);
        }
    }

    fn push_head(&mut self, list: u8, id: u32) {
        let l = &mut self.lists[list as usize];
        let old_head = l.head;
        self.prev[id as usize] = NIL;
        self.next[id as usize] = old_head;
        if old_head != NIL {
            self.prev[old_head as usize] = id;
        } else {
            l.tail = id;
        }
        l.head = id;
        l.len += 1;
    }

    fn unlink(&mut self, list: u8, id: u32) {
        let (prev, next) = (self.prev[id as usize], self.next[id as usize]);
        let l = &mut self.lists[list as usize];
        if prev != NIL {
            self.next[prev as usize] = next;
        } else {
            l.head = next;
        }
        if next != NIL {
            self.prev[next as usize] = prev;
        } else {
            l.tail = prev;
        }
        l.len -= 1;
    }

    /// Checks every invariant (tests).
    #[cfg(test)]
    pub fn validate(&self) {
        let mut seen = 0;
        for list in [SMALL, MAIN] {
            let l = self.lists[list as usize];
            let (mut id, mut prev, mut n) = (l.head, NIL, 0);
            while id != NIL {
                assert_eq!(self.list_of(id), list);
                assert!(self.is_live(id));
                assert_eq!(self.prev[id as usize], prev);
                prev = id;
                id = self.next[id as usize];
                n += 1;
            }
            assert_eq!(l.tail, prev);
            assert_eq!(l.len, n);
            seen += n;
        }
        assert_eq!(seen, self.live);
        let mut free = 0;
        let mut id = self.free;
        while id != NIL {
            assert!(!self.is_live(id));
            id = self.next[id as usize];
            free += 1;
        }
        assert_eq!(free + self.live, self.prev.len());
        assert!(self.live <= self.max_size);
        if self.timed {
            assert_eq!(self.deadline.len(), self.prev.len());
            for id in 0..self.prev.len() {
                if self.prev[id] != FREED && self.deadline[id] != f64::INFINITY {
                    assert!(
                        self.dues.iter().any(|d| d.id as usize == id && d.seq == self.seq[id]),
                        "slot {id}'s deadline is queued"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod weight_tests;
