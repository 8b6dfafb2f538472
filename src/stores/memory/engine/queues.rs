//! The policy's side of the lists: which list a new key goes on, what a hit
//! does to an entry, and which entry leaves for room. S3-FIFO's small and
//! main queues with their ghost and the small queue's climber; the adaptive
//! policy's admission, with its sketch, bucket ghost and shadow caches
//! (`sketch.rs`, `ghost.rs`, `shadow.rs`); LRU's tail and TTL's soonest.
//!
//! The hit path ([`Engine::touch`]) touches only the entry's own frequency
//! byte and, for a sampled key, a lossy buffer; everything else here runs on
//! the write path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::slab::{MAIN, NIL, Removed, SMALL};
use super::{Engine, Kind};
use crate::removal::RemovalReason;
use crate::stores::memory::fifo_ghost::FifoGhost;
use crate::stores::memory::ghost::BucketGhost;
use crate::stores::memory::shadow::{self, Sampler, Setting};
use crate::stores::memory::sketch::FrequencySketch;

/// S3-FIFO's parameters. As in the paper and libCacheSim, the small queue
/// starts at a tenth of the capacity and an entry read twice while in it moves
/// to main. The ghost remembers nine times as many evicted keys as the small
/// queue holds (0.9 x capacity at the start). Unlike plain S3-FIFO, the small
/// queue's size then adapts to the workload (see [`Climber`]).
const SMALL_SHARE: usize = 10;
pub(crate) const MOVE_TO_MAIN: u8 = 2;
const GHOST_PER_SMALL: usize = 9;
/// The CLOCK count's ceiling (the low two bits of a slot's `freq`).
pub(crate) const MAX_FREQ: u8 = 3;
const CLOCK_BITS: u8 = 0b11;
/// The hits not yet handed to the adaptive policy's sketch: bits 2-5 of `freq`.
const PENDING_SHIFT: u8 = 2;
#[cfg(not(target_arch = "wasm32"))]
const MAX_PENDING: u8 = 15;
/// `freq` with both counts saturated.
#[cfg(not(target_arch = "wasm32"))]
const SATURATED: u8 = MAX_FREQ | (MAX_PENDING << PENDING_SHIFT);

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
pub(crate) struct Climber {
    period: u64,
    last_gets: u64,
    last_misses: u64,
    prev: Option<(u64, u64)>,
    step: usize,
    initial_step: usize,
    down: bool,
    /// Writes left until [`due`](Self::due) says yes again.
    countdown: u32,
}

/// The climber looks at the get counts at most once every this many writes
/// (more often for a small capacity, see [`Climber::due`]): summing them
/// reads every thread lane of the shard (16 cache lines), about 95
/// instructions, which on every write was a sixth of a classic `set`. A
/// decision then comes at most this many writes after its period's last
/// get, against a period of 20 x capacity gets.
const WRITES_PER_LOOK: u64 = 64;

/// A period of this many gets or fewer is looked at on every write, as
/// before [`Climber::due`]: the climber's course at a small capacity turns on
/// the exact write that ends a period (looking every 1/64 of a period moved
/// classic S3-FIFO's hit % on a loop of 1,500 keys at capacity 1,000 from
/// 63.6 to 59.5, and OLTP at 250 from 23.3 to 22.3; up or down by chance,
/// not by design, but there for no gain).
const LOOK_EVERY_WRITE: u64 = 4096;

impl Climber {
    pub(crate) fn new(max: usize) -> Self {
        let step = (max / 32).max(1);
        Climber {
            period: 20u64.saturating_mul(max as u64),
            last_gets: 0,
            last_misses: 0,
            prev: None,
            step,
            initial_step: step,
            down: true,
            countdown: 0,
        }
    }

    /// Whether this write should read the get counts and call
    /// [`adapt`](Self::adapt): every write while a period is at most
    /// [`LOOK_EVERY_WRITE`] gets; above, once every period / 4,096 writes, at
    /// most every [`WRITES_PER_LOOK`] (from a period of 262,144 gets, a
    /// shard of 13,108 entries). The first write looks.
    #[inline(always)]
    pub(crate) fn due(&mut self) -> bool {
        if self.countdown > 0 {
            self.countdown -= 1;
            return false;
        }
        // At least 1: a short period looks on every write.
        self.countdown = (self.period / LOOK_EVERY_WRITE).clamp(1, WRITES_PER_LOOK) as u32 - 1;
        true
    }

    /// Given the engine's get and miss counts so far, the small queue's new
    /// size when a period has passed.
    /// Decides every 20 x `entries` gets instead (a weighted engine's
    /// capacity is no count of entries).
    pub(crate) fn set_period_for(&mut self, entries: usize) {
        self.period = 20u64.saturating_mul(entries as u64);
    }

    /// The get and miss counters went back to zero (`reset_stats`): the
    /// current period starts over from zero, with no period to compare with.
    pub(crate) fn forget_counts(&mut self) {
        (self.last_gets, self.last_misses, self.prev) = (0, 0, None);
    }

    pub(crate) fn adapt(&mut self, gets: u64, misses: u64, small: usize, max: usize) -> Option<usize> {
        // Counters reset by `reset_stats` (which also calls `forget_counts`;
        // the JS slot engine's counts come from JS): start a new period
        // from here. More misses than gets since the marks can only follow a
        // reset the totals outgrew (all hits before it, all misses after).
        if gets < self.last_gets || misses < self.last_misses || misses - self.last_misses > gets - self.last_gets {
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

#[cfg(test)]
thread_local! {
    /// How many times this thread's writes summed the get counts for the climber.
    pub(crate) static TOTALS_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The ghost's size for a small queue of `small` entries.
pub(crate) fn ghost_cap(small: usize, max: usize) -> usize {
    small.saturating_mul(GHOST_PER_SMALL).min(max.saturating_mul(3))
}

/// The adaptive S3-FIFO's state beyond the queues (see `S3FifoPolicy`): the
/// frequency sketch, the fixed-size ghost, the shadow caches choosing the
/// setting, and the buffer of sampled hits that readers fill for them.
/// Everything here changes on the write path only.
pub(super) struct Adaptive {
    sketch: FrequencySketch,
    pub(super) ghost: BucketGhost,
    /// The shadows; `None` in a shard that follows another's choice.
    pub(super) sampler: Option<Sampler>,
    pub(super) setting: Setting,
    /// The setting shared by the shards of a store (an index in
    /// [`shadow::SETTINGS`]): the first shard's shadows choose it, the
    /// others read it on their writes.
    shared: Option<Arc<AtomicU8>>,
    /// A follower's last reading of `shared`, whose setting it runs;
    /// [`UNREAD`] until it reads one (and after anything else sets
    /// `setting`): a write that finds `shared` unchanged stops there.
    followed: u8,
}

/// [`Adaptive::followed`] before a reading.
const UNREAD: u8 = u8::MAX;

/// Whether the adaptive policy is built: not on wasm32, for the npm
/// package's size budget (stores there run the classic policy). Every use of
/// `Engine::adaptive` tests this constant first, so that its code is
/// compiled out there.
pub(super) const ADAPTIVE_BUILT: bool = cfg!(not(target_arch = "wasm32"));

pub(super) type AdaptiveBox = Box<Adaptive>;

impl Adaptive {
    /// The state for a capacity of `max_size`, and the sample mask; `None`
    /// where the adaptive policy is not built.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn new(max_size: usize) -> Option<(AdaptiveBox, u32)> {
        let (mask, shadow_cap) = shadow::sampling(max_size);
        let adaptive = Adaptive {
            sketch: FrequencySketch::new(max_size),
            ghost: BucketGhost::new(shadow::ghost_size(max_size)),
            sampler: Some(Sampler::new(shadow_cap)),
            setting: shadow::SETTINGS[0],
            shared: None,
            followed: UNREAD,
        };
        Some((Box::new(adaptive), mask))
    }

    /// After `setting` was set other than from `shared`: the next write of
    /// a follower reads `shared` in full.
    pub(super) fn forget_followed(&mut self) {
        self.followed = UNREAD;
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn new(_max_size: usize) -> Option<(AdaptiveBox, u32)> {
        None
    }
}

/// A weighted engine's guess at the entries its capacity holds, until it
/// first fills and knows (see [`Engine::resize_for_entries`]).
const INITIAL_ENTRIES: usize = 1024;

impl<V> Engine<V> {
    /// Sets the capacity (entries, or total weight with a weigher) and sizes
    /// the policy's state for it.
    ///
    /// Weighted, the queues' shares (the small queue's 10% or 1%, main's
    /// rest) are shares of the weight, as libCacheSim's S3-FIFO does with
    /// object sizes, but what is kept per entry (the ghost, the sketch, the
    /// shadows, the climber's period) is sized by a number of entries, which
    /// a capacity in bytes does not give: [`INITIAL_ENTRIES`] at most until
    /// the engine first fills, then the number of entries it held then.
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size.max(1);
        self.entries_hint = if self.slab.weighted() { self.max_size.min(INITIAL_ENTRIES) } else { self.max_size };
        if ADAPTIVE_BUILT
            && self.adaptive.is_some()
            && let Some((adaptive, mask)) = Adaptive::new(self.entries_hint)
        {
            self.small_cap = adaptive.setting.small_cap(self.max_size);
            self.adaptive = Some(adaptive);
            self.sample_mask = mask;
        } else if self.kind == Kind::S3Fifo {
            self.small_cap = (self.max_size / SMALL_SHARE).max(1);
            self.ghost = FifoGhost::new(self.ghost_entries(self.small_cap));
            let mut climber = Climber::new(self.max_size);
            climber.set_period_for(self.entries_hint);
            self.climber = Some(climber);
        }
    }

    /// The ghost's size (entries) for a small queue of `small` (weight).
    fn ghost_entries(&self, small: usize) -> usize {
        let cap = ghost_cap(small, self.max_size);
        if self.entries_hint == self.max_size {
            return cap;
        }
        // Weighted: as many entries as the share of the capacity holds.
        let scaled = cap as u128 * self.entries_hint as u128 / self.max_size as u128;
        (scaled as usize).max(1)
    }

    /// A weighted engine about to make room for the first time: sizes the
    /// per-entry state for the `entries` it holds (the adaptive policy starts
    /// a new sketch, ghost and shadows, keeping its setting; nothing was
    /// evicted yet, so no ghost is lost).
    #[cold]
    pub(super) fn resize_for_entries(&mut self, entries: usize) {
        let entries = entries.max(1);
        if entries == self.entries_hint {
            return;
        }
        self.entries_hint = entries;
        if ADAPTIVE_BUILT
            && let Some(old) = &self.adaptive
            && let Some((mut adaptive, mask)) = Adaptive::new(entries)
        {
            adaptive.setting = old.setting;
            adaptive.shared = old.shared.clone();
            match &mut adaptive.sampler {
                // The new shadows go on from the setting the store runs.
                Some(sampler) if old.sampler.is_some() => {
                    sampler.start_from(old.setting);
                    self.sample_mask = mask;
                }
                _ => adaptive.sampler = None,
            }
            self.adaptive = Some(adaptive);
        } else if let Some(climber) = &mut self.climber {
            climber.set_period_for(entries);
            self.ghost.set_cap(self.ghost_entries(self.small_cap));
        }
    }

    /// Makes this engine one shard of a store whose shards share one
    /// adaptive setting in `shared`: the `leader` runs the shadow caches and
    /// publishes their choice, the others drop theirs and follow it (one set
    /// of shadows per store, whatever the shard count). No effect on other
    /// policies. Call after [`limit_max_size`](Self::limit_max_size), on the
    /// leader before the others (they start from the setting it publishes).
    pub fn share_setting(&mut self, shared: &Arc<AtomicU8>, leader: bool) {
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            adaptive.shared = Some(Arc::clone(shared));
            if leader {
                // The leader publishes a setting only when it changes: the
                // one it starts from is published here, whatever it is.
                shared.store(shadow::index_of(adaptive.setting), Relaxed);
            } else {
                adaptive.sampler = None;
                self.sample_mask = u32::MAX;
                // Followers start from the leader's setting (it is set up first).
                adaptive.setting = shadow::SETTINGS[usize::from(shared.load(Relaxed))];
                adaptive.forget_followed();
                self.small_cap = adaptive.setting.small_cap(self.max_size);
            }
        }
    }

    /// What a hit does to the policy: S3-FIFO bumps the entry's own counter,
    /// and the adaptive policy records a sampled key's hit in its lossy
    /// buffer for the shadows. Nothing else is touched.
    #[inline(always)]
    pub(super) fn touch(&self, freq: &AtomicU8, hash: u64) {
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

    /// Before a write of the key with `hash`: the climber resizes the small
    /// queue when a period has passed; the adaptive policy's shadows see the
    /// sampled hits since the last write, then this write, and a follower
    /// shard takes the leader's latest choice.
    #[inline(always)]
    pub(super) fn adapt_before_write(&mut self, hash: u64) {
        // The totals sum the thread lanes: only for a climber (classic
        // S3-FIFO), and only on the writes it looks at.
        if self.climber.as_mut().is_some_and(Climber::due) {
            #[cfg(test)]
            TOTALS_READ.set(TOTALS_READ.get() + 1);
            let (gets, misses) = self.read_totals();
            if let Some(climber) = &mut self.climber
                && let Some(small) = climber.adapt(gets, misses, self.small_cap, self.max_size)
            {
                self.small_cap = small;
                self.ghost.set_cap(self.ghost_entries(small));
            }
        }
        if ADAPTIVE_BUILT && let Some(adaptive) = &mut self.adaptive {
            let setting = match (&mut adaptive.sampler, &adaptive.shared) {
                (Some(sampler), shared) => {
                    let setting = sampler.record_write(hash, self.sample_mask);
                    // Published when it changes (`share_setting` published
                    // the one the leader started from, and the followers
                    // took it): no search of the table on every write.
                    if setting != adaptive.setting
                        && let Some(shared) = shared
                    {
                        shared.store(shadow::index_of(setting), Relaxed);
                    }
                    setting
                }
                (None, Some(shared)) => {
                    let index = shared.load(Relaxed);
                    // Unchanged since this follower last read it: nearly every write.
                    if index == adaptive.followed {
                        return;
                    }
                    adaptive.followed = index;
                    shadow::SETTINGS[usize::from(index)]
                }
                (None, None) => adaptive.setting,
            };
            if setting != adaptive.setting {
                adaptive.setting = setting;
                self.small_cap = setting.small_cap(self.max_size);
            }
        }
    }

    /// A new key with `hash` is about to be admitted: starts loading the
    /// adaptive policy's sketch block and ghost bucket for it (each nearly
    /// always a cache miss in a large store), so that those loads run while
    /// the rest of the write does.
    #[inline(always)]
    pub(super) fn prefetch_admission(&self, hash: u64) {
        if ADAPTIVE_BUILT && let Some(adaptive) = &self.adaptive {
            adaptive.sketch.prefetch(hash);
            adaptive.ghost.prefetch(hash);
        }
    }

    /// After an eviction: starts loading the key of the entry the next
    /// eviction most likely takes (the tail of small under S3-FIFO, of main
    /// otherwise), which it must hash: the eviction has just linked that
    /// entry's slot as its list's tail, so reading where its key is costs no
    /// miss, and the next write finds the key's bytes in the cache.
    #[inline(always)]
    pub(super) fn prefetch_next_victim(&self) {
        let small = self.slab.list(SMALL);
        let tail = if self.kind == Kind::S3Fifo && small.len > 0 { small.tail } else { self.slab.list(MAIN).tail };
        self.slab.prefetch_key(tail);
    }

    /// The list a new key with `hash` goes on under the classic policies:
    /// under S3-FIFO, main for a key the ghost remembers, else small (main
    /// is filled directly until the first eviction); main for the others.
    #[inline(always)]
    pub(super) fn classic_list_for(&mut self, hash: u64) -> u8 {
        match self.kind {
            Kind::S3Fifo if self.ghost.take(hash) => MAIN,
            Kind::S3Fifo if self.evicted_once || self.slab.list(SMALL).weight < self.small_cap as u64 => SMALL,
            _ => MAIN,
        }
    }

    /// Makes room for one entry, by the policy's rule.
    #[inline(always)]
    pub(super) fn evict_one(&mut self) -> Option<Removed<V>> {
        let (id, hash) = self.victim()?;
        Some(self.remove_slot(id, hash, RemovalReason::Evicted))
    }

    /// The entry the policy's rule evicts next (its slot and the hash it is
    /// filed under), with the policy's bookkeeping of that eviction done (the
    /// queues turned, the ghost told): the caller takes it out at once, by
    /// [`remove_slot`](Self::remove_slot) or by putting a new entry in its
    /// place ([`insert_plain`](Self::insert_plain)).
    #[inline(always)]
    pub(super) fn victim(&mut self) -> Option<(u32, u64)> {
        let id = match self.kind {
            Kind::Lru { .. } => self.slab.list(MAIN).tail,
            Kind::Ttl => {
                // The soonest to expire by its real deadline (idle entries' may have moved).
                self.settle();
                self.expiries.first().map_or(self.slab.list(MAIN).tail, |&(_, _, id)| id)
            }
            Kind::S3Fifo if ADAPTIVE_BUILT && self.adaptive.is_some() => return self.adaptive_victim(),
            Kind::S3Fifo => return self.s3fifo_victim(),
        };
        if id == NIL {
            return None;
        }
        Some((id, self.hash(&self.slab[id].key)))
    }

    /// S3-FIFO (Yang et al., SOSP 2023): new keys enter the small queue; its
    /// oldest entry moves to main if it was read since it came in, else it
    /// leaves and its hash goes to the ghost (a key found in the ghost enters
    /// main directly). Main is a CLOCK with 2-bit counters: its oldest entry
    /// goes round again with its count lowered while the count is not zero.
    /// The victim, as [`victim`](Self::victim).
    fn s3fifo_victim(&mut self) -> Option<(u32, u64)> {
        self.evicted_once = true;
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        loop {
            let small = self.slab.list(SMALL);
            let from_main = self.slab.list(MAIN).weight > main_cap as u64 || small.len == 0;
            let list = if from_main { MAIN } else { SMALL };
            let id = self.slab.list(list).tail;
            if id == NIL {
                return None;
            }
            let freq = self.slab[id].freq.load(Relaxed) & CLOCK_BITS;
            if from_main && freq > 0 {
                self.slab[id].freq.store(freq.min(MAX_FREQ) - 1, Relaxed);
                self.slab.move_to_head(id);
            } else if !from_main && freq >= MOVE_TO_MAIN {
                self.slab[id].freq.store(0, Relaxed);
                self.slab.move_to(id, MAIN);
            } else {
                let hash = self.hash(&self.slab[id].key);
                if !from_main {
                    self.ghost.insert(hash);
                }
                return Some((id, hash));
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
    /// starts in small like a new one. Every other new key starts in small,
    /// except that main is filled directly until the first eviction.
    pub(super) fn admit(&mut self, hash: u64, full: bool) -> (u8, Option<Removed<V>>) {
        let (list, victim) = self.admit_victim(hash, full);
        (list, victim.map(|(id, hash)| self.remove_slot(id, hash, RemovalReason::Evicted)))
    }

    /// [`admit`](Self::admit), handing back the victim (its slot and hash)
    /// in place, for the caller to take out at once, as [`victim`](Self::victim).
    #[inline(always)]
    pub(super) fn admit_victim(&mut self, hash: u64, full: bool) -> (u8, Option<(u32, u64)>) {
        let adaptive = self.adaptive.as_mut().expect("the adaptive policy");
        adaptive.sketch.admit(hash);
        let returning = adaptive.ghost.take(hash);
        let duel = adaptive.setting.duel;
        if !full {
            let fill_main = !self.evicted_once && self.slab.list(SMALL).weight >= self.small_cap as u64;
            return (if returning || fill_main { MAIN } else { SMALL }, None);
        }
        // Main below its share has room: a returning key needs no duel then.
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        if returning && duel && self.slab.list(MAIN).weight >= main_cap as u64 {
            let (victim, victim_hash) = self.main_victim();
            let sketch = &self.adaptive.as_ref().expect("the adaptive policy").sketch;
            if sketch.frequency(hash) > sketch.frequency(victim_hash) {
                self.evicted_once = true;
                return (MAIN, Some((victim, victim_hash)));
            }
            return (SMALL, self.adaptive_victim());
        }
        (if returning { MAIN } else { SMALL }, self.adaptive_victim())
    }

    /// Hands the hits slot `id` gathered since it was last looked at to the
    /// sketch (hashing its key, unless `hash` is given, only if there were
    /// any), keeping its CLOCK count; the count, and the hash if it has it.
    #[inline(always)]
    fn flush_hits(&mut self, id: u32, hash: Option<u64>) -> (u8, Option<u64>) {
        let freq = self.slab[id].freq.load(Relaxed);
        let pending = freq >> PENDING_SHIFT;
        if pending == 0 {
            return (freq & CLOCK_BITS, hash);
        }
        let hash = hash.unwrap_or_else(|| self.hash(&self.slab[id].key));
        self.adaptive.as_mut().expect("the adaptive policy").sketch.increment_by(hash, pending);
        self.slab[id].freq.store(freq & CLOCK_BITS, Relaxed);
        (freq & CLOCK_BITS, Some(hash))
    }

    /// Turns main's CLOCK until its oldest entry has a count of zero: that
    /// entry (left in place) and its hash. Main must not be empty.
    fn main_victim(&mut self) -> (u32, u64) {
        loop {
            let id = self.slab.list(MAIN).tail;
            let (clock, hash) = self.flush_hits(id, None);
            if clock == 0 {
                // Hashed once: `flush_hits` did if the entry had hits.
                return (id, hash.unwrap_or_else(|| self.hash(&self.slab[id].key)));
            }
            self.slab[id].freq.store(clock - 1, Relaxed);
            self.slab.move_to_head(id);
        }
    }

    /// S3-FIFO's eviction under the adaptive policy: as [`s3fifo_victim`],
    /// with the hits an entry gathered handed to the sketch whenever the
    /// eviction looks at it, and the fixed-size ghost. The victim, as
    /// [`victim`](Self::victim).
    ///
    /// [`s3fifo_victim`]: Self::s3fifo_victim
    fn adaptive_victim(&mut self) -> Option<(u32, u64)> {
        self.evicted_once = true;
        let main_cap = self.max_size.saturating_sub(self.small_cap).max(1);
        loop {
            let small = self.slab.list(SMALL);
            if self.slab.list(MAIN).weight > main_cap as u64 || small.len == 0 {
                if self.slab.list(MAIN).len == 0 {
                    return None;
                }
                return Some(self.main_victim());
            }
            let id = small.tail;
            // Hashed only if it had hits to hand over or leaves (an entry
            // moving to main needs no hash otherwise).
            let (clock, hash) = self.flush_hits(id, None);
            if clock >= MOVE_TO_MAIN {
                self.slab[id].freq.store(0, Relaxed);
                self.slab.move_to(id, MAIN);
            } else {
                let hash = hash.unwrap_or_else(|| self.hash(&self.slab[id].key));
                self.adaptive.as_mut().expect("the adaptive policy").ghost.insert(hash);
                return Some((id, hash));
            }
        }
    }

    /// The small queue's capacity now.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub(crate) fn small_cap_for_tests(&self) -> usize {
        self.small_cap
    }

    /// Panics unless the policy's state is within its bounds: the ghost,
    /// and under the adaptive policy the small queue's size and every main
    /// entry's pending hits.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub(super) fn validate_queues(&self) {
        self.ghost.validate();
        if let Some(adaptive) = &self.adaptive {
            assert_eq!(self.small_cap, adaptive.setting.small_cap(self.max_size));
            assert!(
                adaptive.followed == UNREAD || adaptive.setting == shadow::SETTINGS[usize::from(adaptive.followed)]
            );
            for list in [SMALL, MAIN] {
                for id in self.slab.iter(list) {
                    let freq = self.slab[id].freq.load(Relaxed);
                    // Hits are handed over whenever the CLOCK count drops to zero.
                    assert!(
                        freq & CLOCK_BITS != 0 || freq >> PENDING_SHIFT == 0 || list == SMALL,
                        "slot {id}: {freq:#b}"
                    );
                }
            }
        }
    }
}

/// Bumps an S3-FIFO access count, writing only when it changes (a hot key's
/// count saturates at once, and its cache line is then only read).
#[inline]
#[cfg(target_arch = "wasm32")]
pub(super) fn bump(freq: &AtomicU8) {
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
pub(super) fn bump(freq: &AtomicU8) {
    let f = freq.load(Relaxed);
    // A hot key's counts are saturated: one compare and done.
    if f == SATURATED {
        return;
    }
    let (clock, pending) = (f & CLOCK_BITS, f >> PENDING_SHIFT);
    let bumped = (clock + u8::from(clock < MAX_FREQ)) | ((pending + u8::from(pending < MAX_PENDING)) << PENDING_SHIFT);
    if bumped != f {
        freq.store(bumped, Relaxed);
    }
}
