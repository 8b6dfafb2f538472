//! The `get` counts of shared reads, one lane per thread: a `get` under a
//! shard's read lock adds one to its own thread's lane with a plain load and
//! store, not an atomic read-modify-write on a word every thread writes.
//!
//! A read then takes two atomic read-modify-writes (the read lock's acquire
//! and release), as quick_cache's and `Mutex<lru::LruCache>`'s do; before it
//! took a third (the shard's shared `gets` counter), and on two threads that
//! counter kept its cache line moving.
//!
//! A lane counts hits and misses, each once its lookup has ended, never a
//! `get` before its lookup: `stats()` reads every counter it reports as a sum
//! of counters that only grow, so each figure only grows while gets run (a
//! `hits` of `gets - misses`, counted before and after the lookup, showed a
//! miss in flight as a hit and then took it back: a Prometheus counter that
//! goes back reads as a reset). The two loads at the start say, from the
//! lane's `hits + misses`, whether to time the `get`; the store at the end
//! adds one to the one of them it was.
//!
//! A thread claims a lane (one of [`LANES`], process-wide) at its first
//! shared `get` and frees it when it exits; only the lane's owner writes it,
//! so its counts are exact, and [`LaneColumn::totals`] sums them. Threads past
//! the first [`LANES`] at once (and a thread counting from a thread-local
//! destructor, after its own lane was freed) count on the shard's shared
//! counters, as every thread did before; a thread that found no lane free
//! tries again at its first `get` after some thread freed one. Every 4 shards of a store share a
//! group of lanes (1 KB), a cache line per lane with a hit and a miss counter
//! per shard in it, so a thread writes only its own lines whichever shard it
//! reads.
//!
//! A lane is also a thread's read lock on a shard ([`LaneHandle::enter`]):
//! the top bit of its hit counter ([`READING`]), set with one atomic add on
//! the thread's own cache line, says the thread is reading the shard; a
//! writer, holding the shard's lock, raises the shard's writer flag and
//! waits until no lane claimed by a thread has the bit
//! ([`LaneHandle::wait_for_readers`]). A `get` then takes one atomic
//! read-modify-write on a line no other thread writes, instead of a read
//! lock's two on a line every reader of the shard writes (two threads
//! reading one shard moved that line back and forth twice a `get`).

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{self, Acquire, Relaxed, SeqCst};

/// Ends a lane read (`Ordering::Release`; `Release` below is the lane's release on thread exit).
const END: Ordering = Ordering::Release;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::ReadCounters;

/// How many threads at once count on lanes of their own.
pub(crate) const LANES: usize = 16;

/// This thread's lane: not yet claimed.
const UNCLAIMED: u8 = u8::MAX;
/// This thread counts on the shards' shared counters for good (its lane
/// was freed as it exits, or it could not register the release).
const SHARED: u8 = LANES as u8;
/// No lane was free at this thread's last try: it counts on the shared
/// counters, and tries again once a lane has been freed since ([`FREED`]).
const FULL: u8 = LANES as u8 + 1;

/// Shards per cache line (a hit and a miss counter each).
const PER_LINE: usize = 4;

/// The bit of a lane's hit counter that says its thread is reading the
/// shard without the shard's lock ([`LaneHandle::enter`]); the count is the
/// other 63 bits (2^63 gets are centuries away).
const READING: u64 = 1 << 63;

thread_local! {
    /// This thread's lane (below [`LANES`]), or [`UNCLAIMED`] / [`SHARED`] / [`FULL`].
    /// No destructor: readable for the whole life of the thread.
    static LANE: Cell<u8> = const { Cell::new(UNCLAIMED) };
    /// Frees this thread's lane when it exits (touched once, when it claims one).
    static RELEASE: Release = const { Release };
    /// [`FREED`] when this thread last found no free lane ([`FULL`]).
    static SEEN_FREED: Cell<u64> = const { Cell::new(0) };
}

/// Which lanes threads hold (claimed and freed off the read path).
static CLAIMED: Mutex<[bool; LANES]> = Mutex::new([false; LANES]);

/// How many lanes have been freed (written under [`CLAIMED`]'s lock): a
/// [`FULL`] thread tries again when it has moved, so a thread that started
/// while every lane was taken does not count on the shared counters for
/// the rest of its life. One load a `get` for such a thread, none for others.
static FREED: AtomicU64 = AtomicU64::new(0);

/// The lanes claimed by a thread, one bit each (changed under [`CLAIMED`]'s
/// lock): the only lanes a writer must look at ([`LaneHandle::wait_for_readers`]).
/// A thread sets its bit before its first read on the lane, with an order
/// that every writer's look sees (`SeqCst`).
static ACTIVE: AtomicU32 = AtomicU32::new(0);

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let lane = LANE.get();
        // Later counts of this thread (from other destructors) go to the
        // shared counters: the lane may be someone else's from now on.
        LANE.set(SHARED);
        if usize::from(lane) < LANES {
            let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
            claimed[usize::from(lane)] = false;
            // The thread is reading no shard (it is exiting): its bit goes.
            ACTIVE.fetch_and(!(1 << lane), SeqCst);
            FREED.fetch_add(1, Relaxed);
        }
    }
}

/// The lane of a thread that found none in [`LANE`]: claims one at its first
/// read, or at a read after a lane was freed if none was free before;
/// [`SHARED`] or [`FULL`] if it has none.
#[cold]
#[inline(never)]
fn unclaimed() -> u8 {
    match LANE.get() {
        UNCLAIMED => claim(),
        FULL if FREED.load(Relaxed) != SEEN_FREED.get() => claim(),
        lane => lane,
    }
}

/// Claims a free lane for this thread: [`FULL`] if there is none,
/// [`SHARED`] if the thread is past registering its release.
fn claim() -> u8 {
    let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(lane) = claimed.iter().position(|taken| !taken) else {
        // Read under the lock: a lane freed after this scan moves it.
        SEEN_FREED.set(FREED.load(Relaxed));
        drop(claimed);
        LANE.set(FULL);
        return FULL;
    };
    // The release must be registered, or the lane would never be freed:
    // a thread already past its thread-local destructors takes none.
    if RELEASE.try_with(|_| ()).is_err() {
        drop(claimed);
        LANE.set(SHARED);
        return SHARED;
    }
    claimed[lane] = true;
    // Before this thread's first read on the lane (see `ACTIVE`).
    ACTIVE.fetch_or(1 << lane, SeqCst);
    drop(claimed);
    let lane = lane as u8;
    LANE.set(lane);
    lane
}

/// One shard's counts on one lane: its misses, then its hits (indexed by
/// whether the `get` hit, so that counting one takes no branch).
#[repr(C)]
struct Pair([AtomicU64; 2]);

impl Pair {
    fn misses(&self) -> &AtomicU64 {
        &self.0[0]
    }

    fn hits(&self) -> &AtomicU64 {
        &self.0[1]
    }

    /// The hits counted, without the [`READING`] bit.
    fn hit_count(&self) -> u64 {
        self.hits().load(Relaxed) & !READING
    }
}

#[repr(C, align(64))]
struct Line([Pair; PER_LINE]);

/// The lanes of up to [`PER_LINE`] shards: a cache line per lane, a pair of
/// counters per shard in it.
type Group = [Line; LANES];

/// One shard's column of a store's lanes: the hits and misses its readers
/// counted.
pub(crate) struct LaneColumn {
    /// Keeps the group (which `first` points into) alive.
    _group: Arc<Group>,
    /// This shard's pair in the group's first line; its pair on lane `n` is
    /// `n` lines on. Kept as a pointer so that a read finds its pair with a
    /// shift and an add.
    first: NonNull<Pair>,
    /// The counts of every lane (hits, misses) at the last
    /// [`reset`](Self::reset), which the totals leave out; `None` before
    /// any. A reset never writes the lanes: a lane read the writer passed
    /// over (its mark set just after the writer looked) ends after the
    /// writer, and its count, stored from what it read at the start, would
    /// put back a count the reset had zeroed.
    base: Option<Box<[(u64, u64); LANES]>>,
}

// SAFETY: `first` points into the group the column holds (an `Arc` of
// atomics, `Send` and `Sync`): sharing or moving the column shares or moves
// no more than an `&Group` would.
unsafe impl Send for LaneColumn {}
// SAFETY: as for `Send`.
unsafe impl Sync for LaneColumn {}

/// A column's pairs without the column's hold on them (one pointer): the
/// shard's way to its lanes for the lane reads and the writer's wait
/// (`shard.rs`), next to its lock. Valid while the column it came from
/// lives: the shard keeps it beside the engine that owns that column, and
/// both go together.
#[derive(Clone, Copy)]
pub(crate) struct LaneHandle {
    first: NonNull<Pair>,
}

// SAFETY: as for `LaneColumn` (a pointer into a group of atomics).
unsafe impl Send for LaneHandle {}
// SAFETY: as for `Send`.
unsafe impl Sync for LaneHandle {}

/// Where a shared `get` is counted, once its lookup has ended: this thread's
/// lane, or the shard's shared counters for a thread without one.
pub(crate) trait Tally {
    /// Whether to time this `get`: every
    /// [`LATENCY_SAMPLE_EVERY`](crate::metrics::LATENCY_SAMPLE_EVERY)th,
    /// hits and misses alike.
    fn sampled(&self) -> bool;

    /// Counts the `get`, as a hit or a miss.
    fn close(self, hit: bool);
}

impl Tally for &ReadCounters {
    #[inline(always)]
    fn sampled(&self) -> bool {
        self.sample_next_get()
    }

    #[inline(always)]
    fn close(self, hit: bool) {
        if hit { self.count_hit() } else { self.count_miss() }
    }
}

/// A shared `get` on this thread's lane, opened before its lookup and closed
/// (counted) after it. Only this thread writes the lane. One pointer, so it
/// stays in a register across the lookup.
pub(crate) struct LaneRead<'a> {
    pair: &'a Pair,
}

impl Tally for LaneRead<'_> {
    #[inline(always)]
    fn sampled(&self) -> bool {
        crate::metrics::sampled(self.pair.0[0].load(Relaxed).wrapping_add(self.pair.0[1].load(Relaxed)))
    }

    /// A plain load and store (only this thread writes the lane, so they
    /// are exact).
    #[inline(always)]
    fn close(self, hit: bool) {
        let counter = &self.pair.0[usize::from(hit)];
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// A `get` reading a shard without its lock, on this thread's lane
/// ([`LaneHandle::enter`]): the lane's [`READING`] bit is set until it is
/// closed (counted) or dropped (a value's `Clone` panicked: nothing is
/// counted, as under a lock).
pub(crate) struct Entered<'a> {
    pair: &'a Pair,
    /// The hit count when the read began (the bit clear).
    hits: u64,
}

impl Tally for Entered<'_> {
    #[inline(always)]
    fn sampled(&self) -> bool {
        crate::metrics::sampled(self.hits.wrapping_add(self.pair.misses().load(Relaxed)))
    }

    /// Counts the `get` and ends the read: the store that clears the bit
    /// releases everything the read did to the writer waiting for it, so
    /// the caller holds no reference into the engine any more.
    #[inline(always)]
    fn close(self, hit: bool) {
        let (pair, hits) = (self.pair, self.hits);
        std::mem::forget(self);
        if hit {
            pair.hits().store(hits.wrapping_add(1) & !READING, END);
        } else {
            let misses = pair.misses();
            misses.store(misses.load(Relaxed).wrapping_add(1), Relaxed);
            pair.hits().store(hits, END);
        }
    }
}

impl Drop for Entered<'_> {
    /// A read that ends uncounted: backed out (the writer flag was up), cut
    /// short (a panic in a value's `Clone`), or refused. Only the bit is
    /// cleared, atomically: a read backing out may have been passed over by
    /// the writer (which looked at the lane before the bit was set) and the
    /// writer may be `reset_stats`, which zeroes the lane meanwhile; storing
    /// the count read at the start would undo that reset.
    #[cold]
    fn drop(&mut self) {
        self.pair.hits().fetch_and(!READING, END);
    }
}

impl LaneColumn {
    /// The columns of a store of `shards` shards: every [`PER_LINE`] shards
    /// share a group of lines, so a thread writes one line per group.
    pub fn table(shards: usize) -> impl Iterator<Item = LaneColumn> {
        let mut group = None;
        (0..shards).map(move |column| {
            let slot = column % PER_LINE;
            if slot == 0 {
                group = Some(Arc::new(std::array::from_fn(|_| {
                    Line(std::array::from_fn(|_| Pair([AtomicU64::new(0), AtomicU64::new(0)])))
                })));
            }
            let group: Arc<Group> = Arc::clone(group.as_ref().expect("made at slot 0"));
            // From a reference to the whole group, so the pointer may reach
            // every line of it; `repr(C)` places line `n` at `n` lines in and
            // the pair `slot` at `slot` pairs into a line.
            // SAFETY: `slot` < PER_LINE: the pair stays inside line 0.
            let first = unsafe { NonNull::from(&*group).cast::<Pair>().add(slot) };
            LaneColumn { _group: group, first, base: None }
        })
    }

    /// A table of one column, for an engine of its own (the engine's tests:
    /// a store gives each engine its column of one table).
    #[cfg(test)]
    pub fn single() -> LaneColumn {
        LaneColumn::table(1).next().expect("one column")
    }

    /// This shard's pair on `lane` (below [`LANES`]).
    #[inline(always)]
    fn pair(&self, lane: usize) -> &Pair {
        debug_assert!(lane < LANES);
        // SAFETY: `first` is this shard's pair in line 0 of the group the
        // column holds (so it lives as long as `self`), and `lane` lines on
        // (`lane` < LANES, the group's length) is its pair in line `lane`.
        unsafe { self.first.byte_add(lane * std::mem::size_of::<Line>()).as_ref() }
    }

    /// Opens a shared `get` on this thread's lane, to count it once its
    /// lookup has ended; `None` for a thread without a lane, which counts on
    /// the shard's shared counters.
    #[inline(always)]
    pub fn open(&self) -> Option<LaneRead<'_>> {
        // One compare for the path every read takes: a claimed lane.
        let mut lane = usize::from(LANE.get());
        if lane >= LANES {
            lane = usize::from(unclaimed());
            if lane >= LANES {
                return None;
            }
        }
        Some(LaneRead { pair: self.pair(lane) })
    }

    /// The handle of this column, for its shard (see [`LaneHandle`]).
    pub fn handle(&self) -> LaneHandle {
        LaneHandle { first: self.first }
    }

    /// The hits and the misses counted on every lane since the last
    /// [`reset`](Self::reset).
    pub fn totals(&self) -> (u64, u64) {
        (0..LANES).fold((0u64, 0u64), |(hits, misses), lane| {
            let pair = self.pair(lane);
            let (h, m) = (pair.hit_count(), pair.misses().load(Relaxed));
            let (h0, m0) = self.base.as_ref().map_or((0, 0), |base| base[lane]);
            (hits.wrapping_add(h.wrapping_sub(h0)), misses.wrapping_add(m.wrapping_sub(m0)))
        })
    }

    /// Counts from zero again: the counts now become the base the totals
    /// leave out (the caller holds the shard exclusively; see `base`).
    pub fn reset(&mut self) {
        let now: [(u64, u64); LANES] = std::array::from_fn(|lane| {
            let pair = self.pair(lane);
            (pair.hit_count(), pair.misses().load(Relaxed))
        });
        self.base = Some(Box::new(now));
    }
}

impl LaneHandle {
    /// This shard's pair on `lane` (below [`LANES`]).
    #[inline(always)]
    fn pair(&self, lane: usize) -> &Pair {
        debug_assert!(lane < LANES);
        // SAFETY: as `LaneColumn::pair`: the column this handle came from
        // lives (see `LaneHandle`).
        unsafe { self.first.byte_add(lane * std::mem::size_of::<Line>()).as_ref() }
    }

    /// Begins a `get` of this shard without its lock, on this thread's
    /// lane: `None` if the thread has no lane, or if a writer holds the
    /// shard (`writer`, raised by [`wait_for_readers`](Self::wait_for_readers)'s
    /// caller before it looks): the caller then takes the shard's read lock.
    /// Until the returned read is closed or dropped, no writer of the shard
    /// runs.
    #[inline(always)]
    pub fn enter<'a>(&'a self, writer: &AtomicBool) -> Option<Entered<'a>> {
        let lane = usize::from(LANE.get());
        if lane >= LANES {
            return None;
        }
        let pair = self.pair(lane);
        // One atomic add on this thread's own line (the bit is clear: only
        // this thread sets it, and it clears it before it returns). `SeqCst`
        // with the writer's flag and its look at the lanes: either the
        // writer sees the bit and waits, or this read sees the flag.
        let hits = pair.hits().fetch_add(READING, SeqCst);
        debug_assert_eq!(hits & READING, 0, "a lane read inside a lane read of the same shard");
        let entered = Entered { pair, hits };
        if writer.load(SeqCst) {
            // Dropped: the bit is cleared, nothing is counted.
            return None;
        }
        Some(entered)
    }

    /// Waits until no thread reads this shard on its lane: called by a
    /// writer that holds the shard's lock and has raised its writer flag
    /// (`SeqCst`), so no lane read begins until it lowers it. Only the
    /// lanes threads hold are looked at; a read in progress ends without
    /// waiting on anything (unless a value's `Clone` blocks), so the wait
    /// spins, then yields.
    #[inline]
    pub fn wait_for_readers(&self) {
        // Not this thread's own lane: a call from inside its own lane read
        // of the shard is refused before it locks (`reentry.rs`). A thread
        // without a lane clears a bit no lane has (16 and up: the shift
        // wraps at 32).
        let own = 1u32.wrapping_shl(u32::from(LANE.get()));
        debug_assert!(
            usize::from(LANE.get()) >= LANES || self.pair(usize::from(LANE.get())).hits().load(Relaxed) & READING == 0,
            "a writer inside its own lane read of the shard"
        );
        let mut active = ACTIVE.load(SeqCst) & !own;
        while active != 0 {
            let lane = active.trailing_zeros() as usize;
            active &= active - 1;
            let hits = self.pair(lane).hits();
            if hits.load(SeqCst) & READING != 0 {
                wait_for_lane(hits);
            }
        }
    }
}

/// Waits for the read in progress on a lane (its [`READING`] bit) to end.
#[cold]
#[inline(never)]
fn wait_for_lane(hits: &AtomicU64) {
    let mut spins = 0u32;
    while hits.load(Acquire) & READING != 0 {
        if spins < 100 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// One `get` on `column` (a hit or a miss), as the engine counts it; on
    /// `shared` for a thread without a lane. Whether it counted on a lane.
    fn count(column: &LaneColumn, hit: bool, shared: &AtomicU64) -> bool {
        match column.open() {
            Some(read) => {
                read.close(hit);
                true
            }
            None => {
                shared.fetch_add(1, Relaxed);
                false
            }
        }
    }

    #[test]
    fn each_thread_counts_on_its_own_lane_and_the_totals_are_exact() {
        let columns: Vec<LaneColumn> = LaneColumn::table(5).collect();
        let (shared_hits, shared_misses) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|scope| {
            for t in 0..(LANES + 4) {
                let (columns, shared_hits, shared_misses) = (&columns, &shared_hits, &shared_misses);
                scope.spawn(move || {
                    for i in 0..1_000 {
                        // One get in three misses.
                        let hit = i % 3 != 0;
                        count(&columns[(t + i) % 5], hit, if hit { shared_hits } else { shared_misses });
                    }
                });
            }
        });
        let (hits, misses) =
            columns.iter().map(LaneColumn::totals).fold((0, 0), |(h, m), (hits, misses)| (h + hits, m + misses));
        let threads = LANES as u64 + 4;
        assert_eq!(hits + shared_hits.load(Relaxed), threads * 666, "every hit, once");
        assert_eq!(misses + shared_misses.load(Relaxed), threads * 334, "every miss, once");
    }

    #[test]
    fn the_lane_samples_every_nth_get_hit_or_miss() {
        let column = LaneColumn::single();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let every = crate::metrics::LATENCY_SAMPLE_EVERY;
                let Some(first) = column.open() else { return };
                assert!(first.sampled(), "the first get is timed");
                first.close(false);
                let mut sampled = 0;
                for i in 1..(4 * every) {
                    let read = column.open().expect("this thread's lane");
                    sampled += u64::from(read.sampled());
                    read.close(i % 2 == 0);
                }
                assert_eq!(sampled, 3, "one get in {every}, hits and misses alike");
            });
        });
    }

    #[test]
    fn a_thread_that_found_no_free_lane_takes_one_once_one_is_freed() {
        use std::sync::mpsc;
        use std::sync::{Condvar, Mutex as StdMutex};
        let column = LaneColumn::single();
        // Holders take lanes and keep them until `done`; the first thread
        // that finds none free (the late one) waits too, then retries.
        let done = (StdMutex::new(false), Condvar::new());
        let wait_done = || {
            let mut finished = done.0.lock().unwrap();
            while !*finished {
                finished = done.1.wait(finished).unwrap();
            }
        };
        let (tx, rx) = mpsc::channel();
        let late_found_one = std::thread::scope(|scope| {
            let mut late = None;
            // Other tests' threads may hold lanes, or free them, meanwhile:
            // spawn until one thread finds none (at most LANES holders of ours).
            for _ in 0..(4 * LANES) {
                let tx = tx.clone();
                let (column, wait_done) = (&column, &wait_done);
                let handle = scope.spawn(move || {
                    let got = column.open().is_some();
                    tx.send(got).unwrap();
                    wait_done();
                    if got {
                        return true;
                    }
                    // Every holder of ours is exiting and frees its lane.
                    (0..100_000).any(|_| {
                        std::thread::yield_now();
                        column.open().is_some()
                    })
                });
                if !rx.recv().unwrap() {
                    late = Some(handle);
                    break;
                }
            }
            let late = late.expect("a thread past the lanes held found none free");
            *done.0.lock().unwrap() = true;
            done.1.notify_all();
            late.join().unwrap()
        });
        assert!(late_found_one, "the late thread took a lane once the holders had freed theirs");
    }

    #[test]
    fn an_exited_threads_lane_is_freed_for_the_next_thread() {
        let column = LaneColumn::single();
        // Four times as many threads, one after the other, as there are
        // lanes: if an exiting thread kept its lane, at most LANES of them
        // would count on a lane (other tests' threads may hold some lanes
        // for a while, so not all of them need to find one).
        let shared = AtomicU64::new(0);
        let mut on_lanes = 0;
        for t in 0..(4 * LANES) {
            std::thread::scope(|scope| {
                on_lanes += u64::from(scope.spawn(|| count(&column, t % 2 == 0, &shared)).join().unwrap());
            });
        }
        assert!(on_lanes > LANES as u64, "{on_lanes} of {} threads found a free lane", 4 * LANES);
        let (hits, misses) = column.totals();
        assert_eq!(hits + misses, on_lanes, "every lane's count kept across owners");
    }

    #[test]
    fn every_column_and_lane_has_a_pair_of_its_own() {
        let columns: Vec<LaneColumn> = LaneColumn::table(9).collect();
        let mut seen = std::collections::HashSet::new();
        for (c, column) in columns.iter().enumerate() {
            for lane in 0..LANES {
                let pair = column.pair(lane);
                assert!(seen.insert(pair as *const Pair as usize), "column {c} lane {lane} shares a pair");
                // Its own line: columns of one group share a line per lane.
                let line = &column._group[lane] as *const Line as usize;
                let at = pair as *const Pair as usize - line;
                assert_eq!(at, (c % PER_LINE) * std::mem::size_of::<Pair>(), "column {c} lane {lane}");
                pair.hits().store((c * LANES + lane) as u64, Relaxed);
                pair.misses().store(1, Relaxed);
            }
        }
        for (c, column) in columns.iter().enumerate() {
            let want: u64 = (0..LANES).map(|lane| (c * LANES + lane) as u64).sum();
            assert_eq!(column.totals(), (want, LANES as u64), "column {c} reads back its own counts");
        }
    }

    #[test]
    fn reset_zeroes_one_column_only() {
        let mut columns: Vec<LaneColumn> = LaneColumn::table(9).collect();
        let shared = AtomicU64::new(0);
        for (i, column) in columns.iter().enumerate() {
            count(column, i % 2 == 0, &shared);
        }
        let on_lanes = columns.iter().filter(|c| c.totals().0 + c.totals().1 == 1).count();
        columns[8].reset();
        assert_eq!(columns[8].totals(), (0, 0));
        let kept = columns[..8].iter().filter(|c| c.totals().0 + c.totals().1 == 1).count();
        assert_eq!(kept, on_lanes.min(8), "the other shards keep their counts");
    }
}
