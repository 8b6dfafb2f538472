//! Shadow caches that pick the adaptive policy's setting.
//!
//! No fixed setting of S3-FIFO with TinyLFU admission wins every workload: a
//! small queue of 10% suits the ARC paper's disk traces, 1% suits Zipf and
//! loops, and the frequency duel for returning keys wins on frequency-heavy
//! traces but loses on recency-heavy ones. Hill climbing on the live hit rate
//! moves too slowly and too noisily to choose. Instead, four miniature caches
//! (one per [`SETTINGS`]) replay a hash sample of the keys (one key in
//! 2^k, so each holds 1,024 to 2,047 entries, or the whole capacity when it is
//! smaller) and the live cache takes the setting of the one that missed
//! least over the last period, if it beat the current one by more than 1%.
//!
//! The shadows are fed on the write path only ([`Sampler`]): a `set` feeds
//! its own key, and hits of sampled keys are pushed by readers into a small
//! lossy buffer that the next `set` drains. A reader never feeds the shadows:
//! when the buffer is full its hit is dropped (a read-only loop pays a load
//! and a compare per sampled hit, not a shadow access). Keys are their
//! 64-bit hashes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use hashbrown::HashTable;

use super::engine::{MAX_FREQ as MAX_CLOCK, MOVE_TO_MAIN};
use super::ghost::BucketGhost;
use super::sketch::FrequencySketch;

/// One configuration of the policy: the small queue's share of the capacity
/// (in thousandths) and whether a key returning from the ghost must beat
/// main's victim on frequency to enter main.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    pub small_permille: usize,
    pub duel: bool,
}

/// The settings the shadows compare; the live cache starts with the first.
pub(crate) const SETTINGS: [Setting; 4] = [
    Setting { small_permille: 100, duel: false },
    Setting { small_permille: 100, duel: true },
    Setting { small_permille: 10, duel: false },
    Setting { small_permille: 10, duel: true },
];

/// The index of `setting` in [`SETTINGS`].
pub(crate) fn index_of(setting: Setting) -> u8 {
    SETTINGS.iter().position(|&s| s == setting).unwrap_or(0) as u8
}

impl Setting {
    /// The small queue's size in a cache of `cap` entries.
    pub fn small_cap(self, cap: usize) -> usize {
        (cap / 1000 * self.small_permille + cap % 1000 * self.small_permille / 1000).max(1)
    }
}

/// How many evicted keys the ghost of a cache of `cap` entries remembers:
/// 1.5 x the capacity. libCacheSim's S3-FIFO remembers 0.9 x in an exact
/// FIFO; the bucketed ghost forgets some keys sooner and keeps others longer,
/// and 1.5 x did best on the ARC traces (P3 @ 8,192: 4.4 at 0.9 x, 5.3 at
/// 1.5 x; 2 x gained there and lost on Zipf), at 6 bytes a cache entry.
pub(crate) fn ghost_size(cap: usize) -> usize {
    cap.saturating_add(cap / 2)
}

/// Entries a shadow aims for at least: the sample is one key in 2^k with the
/// largest k leaving this many.
const SHADOW_MIN: usize = 1024;
/// A decision every this many x a shadow's capacity sampled accesses.
const PERIOD_PER_ENTRY: u64 = 8;
/// The first decision after this many x a shadow's capacity.
const FIRST_PERIOD_PER_ENTRY: u64 = 2;
/// The hit buffer's cells, at least: it holds one shadow's capacity of hits
/// (so a run of hits between two writes of the leader shard, up to a whole
/// shadow's worth of keys, reaches the shadows in full; with 64 or 256 cells
/// a loop's long runs of hits were dropped and the shadows never saw the
/// duel win it).
const BUFFER_MIN: usize = 64;

/// The sample mask for a cache of `cap` entries: a key is sampled when
/// `(hash >> 32) & mask == 0`; and the shadows' capacity.
pub(crate) fn sampling(cap: usize) -> (u32, usize) {
    let mut k = 0;
    while k < 31 && (cap >> (k + 1)) >= SHADOW_MIN {
        k += 1;
    }
    (((1u64 << k) - 1) as u32, (cap >> k).max(1))
}

/// Whether a key with this hash is sampled under `mask`.
#[inline(always)]
pub(crate) fn sampled(hash: u64, mask: u32) -> bool {
    (hash >> 32) as u32 & mask == 0
}

/// The hashes of hits on sampled keys, pushed by readers (under a shared
/// lock, so possibly by several threads at once) and drained by the next
/// writer. Lossy by design: a full buffer drops the hit, and two readers
/// racing for a cell may overwrite each other's; the shadows then see a few
/// hits fewer, all of them alike.
pub(crate) struct HitBuffer {
    cells: Box<[AtomicU64]>,
    len: AtomicU32,
}

impl HitBuffer {
    /// A buffer of `cells` hits (at most `u32::MAX`).
    pub fn new(cells: usize) -> Self {
        HitBuffer { cells: (0..cells).map(|_| AtomicU64::new(0)).collect(), len: AtomicU32::new(0) }
    }

    /// Records a hit, if there is room.
    #[inline]
    pub fn push(&self, hash: u64) {
        let n = self.len.load(Relaxed) as usize;
        if let Some(cell) = self.cells.get(n) {
            cell.store(hash, Relaxed);
            self.len.store(n as u32 + 1, Relaxed);
        }
    }

    /// Hands every recorded hit to `f`, oldest first, and empties the buffer
    /// (readers pushing meanwhile may lose their hit, or see it twice).
    pub fn drain(&self, mut f: impl FnMut(u64)) {
        let n = (self.len.load(Relaxed) as usize).min(self.cells.len());
        if n == 0 {
            // Nearly every write of a write-heavy load: no store to a line readers write.
            return;
        }
        for cell in &self.cells[..n] {
            f(cell.load(Relaxed));
        }
        self.len.store(0, Relaxed);
    }
}

/// The shadows and the buffer of sampled hits that feeds them.
pub(crate) struct Sampler {
    hits: HitBuffer,
    // Reached only by the writer (holding the engine exclusively).
    shadows: Shadows,
}

impl Sampler {
    pub fn new(shadow_cap: usize) -> Self {
        let cells = shadow_cap.clamp(BUFFER_MIN, 1 << 16);
        Sampler { hits: HitBuffer::new(cells), shadows: Shadows::new(shadow_cap) }
    }

    /// Makes `setting` the one the shadows hold to until they find a better
    /// one (new shadows start from the first of [`SETTINGS`]; a cache that
    /// already runs another, and starts new shadows, keeps it).
    pub fn start_from(&mut self, setting: Setting) {
        self.shadows.current = usize::from(index_of(setting));
    }

    /// A hit on a sampled key, from a reader: appended to the buffer, or
    /// dropped when it is full (the next write drains it).
    #[inline]
    pub fn record_hit(&self, hash: u64) {
        self.hits.push(hash);
    }

    /// A write of `hash` (sampled or not): feeds the buffered hits, then the
    /// write if its key is sampled under `mask`; the setting to use.
    pub fn record_write(&mut self, hash: u64, mask: u32) -> Setting {
        let shadows = &mut self.shadows;
        self.hits.drain(|h| shadows.access(h));
        if sampled(hash, mask) {
            shadows.access(hash);
        }
        shadows.current()
    }
}

/// The entries of the four shadows, in one table: a sampled access finds
/// its key once for all of them, not once per shadow.
struct Entry {
    hash: u64,
    /// Bit `i`: shadow `i` holds the key.
    held: u8,
    /// Shadow `i`'s CLOCK count of the key (meaningful while it holds it).
    clocks: [u8; SHADOWS],
}

/// `clocks` with the count of every shadow in `held` bumped, saturating at
/// [`MAX_CLOCK`]: the four counts as the bytes of one word (each at most 3,
/// so adding 1 carries into no other byte).
#[inline(always)]
fn bump_held(clocks: [u8; SHADOWS], held: u8) -> [u8; SHADOWS] {
    const _: () = assert!(MAX_CLOCK == 3 && SHADOWS == 4);
    // A 1 in the byte of each shadow named in a 4-bit mask.
    const SPREAD: [u32; 16] = {
        let mut table = [0u32; 16];
        let mut mask = 0;
        while mask < 16 {
            let mut i = 0;
            while i < 4 {
                if mask & (1 << i) != 0 {
                    table[mask] |= 1 << (8 * i);
                }
                i += 1;
            }
            mask += 1;
        }
        table
    };
    let c = u32::from_le_bytes(clocks);
    // A 1 in each byte that is already 3.
    let saturated = ((c + 0x0101_0101) & 0x0404_0404) >> 2;
    (c + (SPREAD[usize::from(held & 15)] & !saturated)).to_le_bytes()
}

/// The shadows' common table of [`Entry`]s, by hash.
type Entries = HashTable<Entry>;

/// How many shadows there are: one per [`SETTINGS`].
const SHADOWS: usize = SETTINGS.len();

/// A miniature S3-FIFO with TinyLFU admission under one [`Setting`]: the
/// live engine's rules on hashes, without values, TTLs or deletes. Its
/// entries are the ones of the shared [`Entries`] whose bit `me` is set.
pub(crate) struct Mini {
    setting: Setting,
    /// Its bit in [`Entry::held`], its index in [`Entry::clocks`].
    me: usize,
    cap: usize,
    small_cap: usize,
    /// The entries it holds.
    len: usize,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghost: BucketGhost,
    evicted_once: bool,
    pub misses: u64,
}

/// The entry of `hash`, which some shadow holds.
fn held(entries: &mut Entries, hash: u64) -> &mut Entry {
    entries.find_mut(hash, |e| e.hash == hash).expect("a queued hash is held")
}

/// [`held`], as a table entry (to update or remove).
fn held_entry(entries: &mut Entries, hash: u64) -> hashbrown::hash_table::OccupiedEntry<'_, Entry> {
    let Ok(entry) = entries.find_entry(hash, |e| e.hash == hash) else { unreachable!("a queued hash is held") };
    entry
}

impl Mini {
    pub fn new(setting: Setting, me: usize, cap: usize) -> Self {
        Mini {
            setting,
            me,
            cap,
            small_cap: setting.small_cap(cap),
            len: 0,
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: BucketGhost::new(ghost_size(cap)),
            evicted_once: false,
            misses: 0,
        }
    }

    fn clock<'e>(&self, entries: &'e mut Entries, hash: u64) -> &'e mut u8 {
        &mut held(entries, hash).clocks[self.me]
    }

    /// Drops `hash` from this shadow (and from the table if no other holds it).
    fn forget(&mut self, entries: &mut Entries, hash: u64) {
        self.forget_entry(held_entry(entries, hash));
    }

    /// [`forget`](Self::forget) of an entry found already.
    fn forget_entry(&mut self, entry: hashbrown::hash_table::OccupiedEntry<'_, Entry>) {
        self.len -= 1;
        let left = entry.get().held & !(1 << self.me);
        if left == 0 {
            entry.remove();
        } else {
            entry.into_mut().held = left;
        }
    }

    /// An access to `hash`, which this shadow does not hold (already counted
    /// in `sketch`): it is inserted, by the policy's rules.
    #[inline(never)]
    fn miss(&mut self, entries: &mut Entries, hash: u64, sketch: &FrequencySketch) {
        self.misses += 1;
        let returning = self.ghost.take(hash);
        let full = self.len >= self.cap;
        let to_main = if !full {
            // Before the first eviction, what does not fit in small fills main.
            returning || (!self.evicted_once && self.small.len() >= self.small_cap)
        } else if returning && self.setting.duel && self.main.len() >= self.cap.saturating_sub(self.small_cap).max(1) {
            let victim = self.main_victim(entries);
            if sketch.frequency(hash) > sketch.frequency(victim) {
                self.main.pop_front();
                self.forget(entries, victim);
                self.evicted_once = true;
                true
            } else {
                self.evict(entries);
                false
            }
        } else {
            self.evict(entries);
            returning
        };
        if to_main {
            self.main.push_back(hash);
        } else {
            self.small.push_back(hash);
        }
        self.len += 1;
        let bit = 1 << self.me;
        match entries.find_mut(hash, |e| e.hash == hash) {
            Some(entry) => {
                entry.held |= bit;
                entry.clocks[self.me] = 0;
            }
            None => {
                entries.insert_unique(hash, Entry { hash, held: bit, clocks: [0; SHADOWS] }, |e| e.hash);
            }
        }
    }

    /// Turns main's CLOCK until its oldest entry has a count of zero: that entry.
    fn main_victim(&mut self, entries: &mut Entries) -> u64 {
        loop {
            let front = *self.main.front().expect("main is not empty");
            let clock = self.clock(entries, front);
            if *clock == 0 {
                return front;
            }
            *clock -= 1;
            self.main.pop_front();
            self.main.push_back(front);
        }
    }

    /// S3-FIFO's eviction of one entry.
    fn evict(&mut self, entries: &mut Entries) {
        self.evicted_once = true;
        let main_cap = self.cap.saturating_sub(self.small_cap).max(1);
        loop {
            // Each entry looked at is found once: for its count, and to forget it.
            if self.main.len() > main_cap || self.small.is_empty() {
                let Some(front) = self.main.pop_front() else { return };
                let mut entry = held_entry(entries, front);
                let clock = &mut entry.get_mut().clocks[self.me];
                if *clock > 0 {
                    *clock -= 1;
                    self.main.push_back(front);
                    continue;
                }
                self.forget_entry(entry);
                return;
            }
            let front = self.small.pop_front().expect("small is not empty");
            let mut entry = held_entry(entries, front);
            let clock = &mut entry.get_mut().clocks[self.me];
            if *clock >= MOVE_TO_MAIN {
                *clock = 0;
                self.main.push_back(front);
                continue;
            }
            self.forget_entry(entry);
            self.ghost.insert(front);
            return;
        }
    }
}

/// The four shadows and the choice between them.
pub(crate) struct Shadows {
    minis: Vec<Mini>,
    /// Their entries, in one table.
    entries: Entries,
    /// How often each sampled key was seen: the minis see the same stream,
    /// so one sketch serves the two that duel (and costs one update).
    sketch: FrequencySketch,
    current: usize,
    period: u64,
    seen: u64,
}

impl Shadows {
    pub fn new(shadow_cap: usize) -> Self {
        let period = PERIOD_PER_ENTRY * shadow_cap as u64;
        Shadows {
            minis: SETTINGS.iter().enumerate().map(|(i, &s)| Mini::new(s, i, shadow_cap)).collect(),
            entries: HashTable::new(),
            sketch: FrequencySketch::new(shadow_cap),
            current: 0,
            period,
            // The first decision comes sooner, as soon as the shadows have
            // filled about twice: until then the store runs the first setting
            // whatever the workload (a loop loses a quarter of its hits under
            // it).
            seen: period - FIRST_PERIOD_PER_ENTRY * shadow_cap as u64,
        }
    }

    /// The setting the live cache should use.
    pub fn current(&self) -> Setting {
        SETTINGS[self.current]
    }

    /// One sampled access: the key is looked up once for the four shadows;
    /// each that holds it bumps its count, each that does not takes the miss.
    pub fn access(&mut self, hash: u64) {
        self.sketch.admit(hash);
        let missed = match self.entries.find_mut(hash, |e| e.hash == hash) {
            None => (1 << SHADOWS) - 1,
            Some(entry) => {
                entry.clocks = bump_held(entry.clocks, entry.held);
                !entry.held & ((1 << SHADOWS) - 1)
            }
        };
        if missed != 0 {
            // Each shadow touches only its own bit and count: the order does not matter.
            for mini in &mut self.minis {
                if missed & (1 << mini.me) != 0 {
                    mini.miss(&mut self.entries, hash, &self.sketch);
                }
            }
        }
        self.seen += 1;
        if self.seen < self.period {
            return;
        }
        self.seen = 0;
        let best = (0..self.minis.len()).min_by_key(|&i| (self.minis[i].misses, i != self.current)).unwrap_or(0);
        let (best_misses, current_misses) = (self.minis[best].misses, self.minis[self.current].misses);
        for mini in &mut self.minis {
            mini.misses = 0;
        }
        // Switch only for a clear gain: fewer misses by more than 1%.
        if best != self.current && best_misses * 100 < current_misses * 99 {
            self.current = best;
        }
    }
}

/// The shadows as they were before they shared one table (a table per
/// shadow), kept to check that the shared table changes no decision.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod reference {
    use super::*;

    /// A miniature S3-FIFO with TinyLFU admission under one [`Setting`]: the
    /// live engine's rules on hashes, without values, TTLs or deletes.
    pub(super) struct Mini {
        setting: Setting,
        cap: usize,
        small_cap: usize,
        /// (hash, CLOCK count) of the entries held.
        entries: HashTable<(u64, u8)>,
        pub small: VecDeque<u64>,
        pub main: VecDeque<u64>,
        ghost: BucketGhost,
        evicted_once: bool,
        pub misses: u64,
    }

    impl Mini {
        pub fn len(&self) -> usize {
            self.entries.len()
        }

        pub fn new(setting: Setting, cap: usize) -> Self {
            Mini {
                setting,
                cap,
                small_cap: setting.small_cap(cap),
                entries: HashTable::new(),
                small: VecDeque::new(),
                main: VecDeque::new(),
                ghost: BucketGhost::new(ghost_size(cap)),
                evicted_once: false,
                misses: 0,
            }
        }

        fn clock(&mut self, hash: u64) -> &mut u8 {
            &mut self.entries.find_mut(hash, |e| e.0 == hash).expect("a queued hash is held").1
        }

        /// One access to `hash` (already counted in `sketch`): a hit bumps its
        /// count, a miss inserts it.
        #[inline(always)]
        pub fn access(&mut self, hash: u64, sketch: &FrequencySketch) {
            if let Some(e) = self.entries.find_mut(hash, |e| e.0 == hash) {
                e.1 = (e.1 + 1).min(MAX_CLOCK);
                return;
            }
            self.miss(hash, sketch);
        }

        /// [`access`](Self::access) of a hash the shadow does not hold: out of
        /// line, so that a hit (most accesses) does not set up what a miss needs.
        #[inline(never)]
        fn miss(&mut self, hash: u64, sketch: &FrequencySketch) {
            self.misses += 1;
            let returning = self.ghost.take(hash);
            let full = self.entries.len() >= self.cap;
            let to_main = if !full {
                // Before the first eviction, what does not fit in small fills main.
                returning || (!self.evicted_once && self.small.len() >= self.small_cap)
            } else if returning
                && self.setting.duel
                && self.main.len() >= self.cap.saturating_sub(self.small_cap).max(1)
            {
                let victim = self.main_victim();
                if sketch.frequency(hash) > sketch.frequency(victim) {
                    self.main.pop_front();
                    self.entries.find_entry(victim, |e| e.0 == victim).expect("held").remove();
                    self.evicted_once = true;
                    true
                } else {
                    self.evict();
                    false
                }
            } else {
                self.evict();
                returning
            };
            if to_main {
                self.main.push_back(hash);
            } else {
                self.small.push_back(hash);
            }
            self.entries.insert_unique(hash, (hash, 0), |e| e.0);
        }

        /// Turns main's CLOCK until its oldest entry has a count of zero: that entry.
        fn main_victim(&mut self) -> u64 {
            loop {
                let front = *self.main.front().expect("main is not empty");
                let clock = self.clock(front);
                if *clock == 0 {
                    return front;
                }
                *clock -= 1;
                self.main.pop_front();
                self.main.push_back(front);
            }
        }

        /// S3-FIFO's eviction of one entry.
        fn evict(&mut self) {
            self.evicted_once = true;
            let main_cap = self.cap.saturating_sub(self.small_cap).max(1);
            loop {
                if self.main.len() > main_cap || self.small.is_empty() {
                    let Some(front) = self.main.pop_front() else { return };
                    let clock = self.clock(front);
                    if *clock > 0 {
                        *clock -= 1;
                        self.main.push_back(front);
                        continue;
                    }
                    self.entries.find_entry(front, |e| e.0 == front).expect("held").remove();
                    return;
                }
                let front = self.small.pop_front().expect("small is not empty");
                let clock = self.clock(front);
                if *clock >= MOVE_TO_MAIN {
                    *clock = 0;
                    self.main.push_back(front);
                    continue;
                }
                self.entries.find_entry(front, |e| e.0 == front).expect("held").remove();
                self.ghost.insert(front);
                return;
            }
        }
    }

    /// The four shadows and the choice between them.
    pub(super) struct Shadows {
        pub minis: Vec<Mini>,
        /// How often each sampled key was seen: the minis see the same stream,
        /// so one sketch serves the two that duel (and costs one update).
        sketch: FrequencySketch,
        current: usize,
        period: u64,
        seen: u64,
    }

    impl Shadows {
        pub fn new(shadow_cap: usize) -> Self {
            let period = PERIOD_PER_ENTRY * shadow_cap as u64;
            Shadows {
                minis: SETTINGS.iter().map(|&s| Mini::new(s, shadow_cap)).collect(),
                sketch: FrequencySketch::new(shadow_cap),
                current: 0,
                period,
                // The first decision comes sooner, as soon as the shadows have
                // filled about twice: until then the store runs the first setting
                // whatever the workload (a loop loses a quarter of its hits under
                // it).
                seen: period - FIRST_PERIOD_PER_ENTRY * shadow_cap as u64,
            }
        }

        /// The setting the live cache should use.
        pub fn current(&self) -> Setting {
            SETTINGS[self.current]
        }

        /// One sampled access.
        pub fn access(&mut self, hash: u64) {
            self.sketch.admit(hash);
            for mini in &mut self.minis {
                mini.access(hash, &self.sketch);
            }
            self.seen += 1;
            if self.seen < self.period {
                return;
            }
            self.seen = 0;
            let best = (0..self.minis.len()).min_by_key(|&i| (self.minis[i].misses, i != self.current)).unwrap_or(0);
            let (best_misses, current_misses) = (self.minis[best].misses, self.minis[self.current].misses);
            for mini in &mut self.minis {
                mini.misses = 0;
            }
            // Switch only for a clear gain: fewer misses by more than 1%.
            if best != self.current && best_misses * 100 < current_misses * 99 {
                self.current = best;
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// The get path's share of the shadow work is one append to the lossy
    /// buffer: a reader that finds it full drops its hit and never feeds
    /// the shadows itself; the next write feeds them what the buffer holds.
    #[test]
    fn readers_only_append_and_the_writer_feeds_the_shadows() {
        let mut sampler = Sampler::new(SHADOW_MIN);
        let start = sampler.shadows.seen;
        let cells = sampler.hits.cells.len() as u64;
        assert_eq!(cells, SHADOW_MIN as u64, "a shadow's capacity of cells");
        // One full buffer and as many again: readers of a read-only loop.
        for i in 0..2 * cells {
            sampler.record_hit(spread(i));
        }
        assert_eq!(sampler.shadows.seen, start, "a reader fed the shadows");
        assert_eq!(sampler.hits.len.load(Relaxed) as usize, cells as usize);
        // A write of a sampled key (mask 0 samples every key): the buffered
        // hits, the first `cells` in order, nothing of the dropped ones, then
        // the write.
        sampler.record_write(spread(0), 0);
        assert_eq!(sampler.shadows.seen, start + cells + 1, "the buffered hits and the write");
        let mut reference = Shadows::new(SHADOW_MIN);
        (0..cells).for_each(|i| reference.access(spread(i)));
        reference.access(spread(0));
        let held = |s: &Shadows| {
            let mut held: Vec<(u64, u8)> = s.entries.iter().map(|e| (e.hash, e.held)).collect();
            held.sort_unstable();
            held
        };
        assert_eq!(held(&sampler.shadows), held(&reference));
        assert_eq!(sampler.hits.len.load(Relaxed), 0, "drained");
        // A write whose key is not sampled under the mask feeds nothing more.
        sampler.record_write(u64::MAX, u32::MAX);
        assert_eq!(sampler.shadows.seen, start + cells + 1);
    }

    fn spread(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn bump_held_bumps_the_held_counts_and_saturates() {
        for held in 0..16u8 {
            for word in 0..256u32 {
                let clocks = [0, 1, 2, 3].map(|i| ((word >> (2 * i)) & 3) as u8);
                let mut expected = clocks;
                for (i, clock) in expected.iter_mut().enumerate() {
                    if held & (1 << i) != 0 {
                        *clock = (*clock + 1).min(MAX_CLOCK);
                    }
                }
                assert_eq!(bump_held(clocks, held), expected, "{clocks:?} held {held:#06b}");
            }
        }
    }

    /// The shared table is an implementation detail: on every stream each
    /// shadow misses exactly when its own table did, and the choice follows.
    #[test]
    fn one_table_for_the_four_shadows_changes_no_decision() {
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for cap in [1, 2, 7, 64, 300, 1_250] {
            let mut shared = Shadows::new(cap);
            let mut separate = reference::Shadows::new(cap);
            let mut switches = 0;
            let n = 40 * cap as u64 + 4_000;
            for step in 0..n {
                // Phases: a skewed working set, a loop 1.5 x the capacity, a scan.
                let key = match (step / (n / 4)) % 4 {
                    0 | 3 => {
                        let r = next() % 1_000;
                        (r * r / 1_000) % (3 * cap as u64 + 3)
                    }
                    1 => step % (cap as u64 * 3 / 2 + 1),
                    _ => 1_000_000 + step,
                };
                let hash = spread(key);
                let before = shared.current();
                shared.access(hash);
                separate.access(hash);
                switches += usize::from(before != shared.current());
                let misses: Vec<u64> = shared.minis.iter().map(|m| m.misses).collect();
                let expected: Vec<u64> = separate.minis.iter().map(|m| m.misses).collect();
                assert_eq!(misses, expected, "cap {cap}, step {step}");
                assert_eq!(shared.current(), separate.current(), "cap {cap}, step {step}");
                for (mini, reference) in shared.minis.iter().zip(&separate.minis) {
                    assert_eq!(mini.len, reference.len(), "cap {cap}, step {step}");
                    assert_eq!((&mini.small, &mini.main), (&reference.small, &reference.main));
                }
                let held: usize = shared.entries.iter().map(|e| e.held.count_ones() as usize).sum();
                assert_eq!(held, shared.minis.iter().map(|m| m.len).sum::<usize>());
                assert!(shared.entries.iter().all(|e| e.held != 0), "an entry no shadow holds was left");
            }
            if cap >= 64 {
                assert!(switches > 0, "cap {cap}: the streams made the shadows switch at least once");
            }
        }
    }
}
