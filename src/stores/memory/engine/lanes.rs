//! The `get` counts of shared reads, one lane per thread: a `get` under a
//! shard's read lock adds one to its own thread's lane with a plain load and
//! store, not an atomic read-modify-write on a word every thread writes.
//!
//! A read then takes two atomic read-modify-writes (the read lock's acquire
//! and release), as quick_cache's and `Mutex<lru::LruCache>`'s do; before it
//! took a third (the shard's shared `gets` counter), and on two threads that
//! counter kept its cache line moving.
//!
//! A thread claims a lane (one of [`LANES`], process-wide) at its first
//! shared `get` and frees it when it exits; only the lane's owner writes it,
//! so its counts are exact, and [`LaneColumn::total`] sums them. Threads past
//! the first [`LANES`] at once (and a thread counting from a thread-local
//! destructor, after its own lane was freed) count on the shard's shared
//! counter, as every thread did before. Every 8 shards of a store share a
//! group of lanes (1 KB), a cache line per lane with one counter per shard in
//! it, so a thread writes only its own lines whichever shard it reads.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

/// How many threads at once count on lanes of their own.
pub(crate) const LANES: usize = 16;

/// This thread's lane: not yet claimed.
const UNCLAIMED: u8 = u8::MAX;
/// This thread counts on the shards' shared counters (no lane was free, or
/// its lane was freed as it exits).
const SHARED: u8 = LANES as u8;

/// Counters per cache line.
const PER_LINE: usize = 8;

thread_local! {
    /// This thread's lane (below [`LANES`]), or [`UNCLAIMED`] / [`SHARED`].
    /// No destructor: readable for the whole life of the thread.
    static LANE: Cell<u8> = const { Cell::new(UNCLAIMED) };
    /// Frees this thread's lane when it exits (touched once, when it claims one).
    static RELEASE: Release = const { Release };
}

/// Which lanes threads hold (claimed and freed off the read path).
static CLAIMED: Mutex<[bool; LANES]> = Mutex::new([false; LANES]);

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let lane = LANE.get();
        // Later counts of this thread (from other destructors) go to the
        // shared counters: the lane may be someone else's from now on.
        LANE.set(SHARED);
        if usize::from(lane) < LANES {
            CLAIMED.lock().unwrap_or_else(PoisonError::into_inner)[usize::from(lane)] = false;
        }
    }
}

/// Claims a free lane for this thread, or [`SHARED`] if there is none.
#[cold]
#[inline(never)]
fn claim() -> u8 {
    let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(lane) = claimed.iter().position(|taken| !taken) else {
        drop(claimed);
        LANE.set(SHARED);
        return SHARED;
    };
    // The release must be registered, or the lane would never be freed:
    // a thread already past its thread-local destructors takes none.
    if RELEASE.try_with(|_| ()).is_err() {
        drop(claimed);
        LANE.set(SHARED);
        return SHARED;
    }
    claimed[lane] = true;
    drop(claimed);
    let lane = lane as u8;
    LANE.set(lane);
    lane
}

#[repr(align(64))]
struct Line([AtomicU64; PER_LINE]);

/// The lanes of up to [`PER_LINE`] shards: a cache line per lane, a counter
/// per shard in it.
type Group = [Line; LANES];

/// One shard's column of a store's lanes: the gets its readers counted.
pub(crate) struct LaneColumn {
    group: Arc<Group>,
    /// This shard's counter in each of the group's lines (below [`PER_LINE`]).
    slot: usize,
}

impl LaneColumn {
    /// The columns of a store of `shards` shards: every [`PER_LINE`] shards
    /// share a group of lines, so a thread writes one line per group.
    pub fn table(shards: usize) -> impl Iterator<Item = LaneColumn> {
        let mut group = None;
        (0..shards).map(move |column| {
            let slot = column % PER_LINE;
            if slot == 0 {
                group = Some(Arc::new(std::array::from_fn(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))));
            }
            LaneColumn { group: Arc::clone(group.as_ref().expect("made at slot 0")), slot }
        })
    }

    /// A table of one column, for an engine of its own.
    pub fn single() -> LaneColumn {
        LaneColumn::table(1).next().expect("one column")
    }

    /// This shard's counter on `lane` (below [`LANES`]).
    #[inline(always)]
    fn cell(&self, lane: usize) -> &AtomicU64 {
        // Masked: no bounds check on the hit path (`slot` < PER_LINE, a power of two).
        &self.group[lane].0[self.slot & (PER_LINE - 1)]
    }

    /// Counts one `get` on this thread's lane; whether to time it (every
    /// [`LATENCY_SAMPLE_EVERY`](crate::metrics::LATENCY_SAMPLE_EVERY)th get
    /// of the thread on the shard). A thread without a lane counts with
    /// `shared` (the shard's shared counter), which says whether to time it.
    #[inline(always)]
    pub fn count(&self, shared: impl FnOnce() -> bool) -> bool {
        // One compare for the path every read takes: a claimed lane.
        let lane = usize::from(LANE.get());
        if lane >= LANES {
            return self.count_unclaimed(shared);
        }
        // Only this thread writes this lane: a load and a store are exact.
        let cell = self.cell(lane);
        let n = cell.load(Relaxed);
        cell.store(n + 1, Relaxed);
        crate::metrics::sampled(n)
    }

    /// [`count`](Self::count) for a thread without a lane: claims one at its
    /// first read.
    #[cold]
    #[inline(never)]
    fn count_unclaimed(&self, shared: impl FnOnce() -> bool) -> bool {
        if LANE.get() == UNCLAIMED && usize::from(claim()) < LANES { self.count(shared) } else { shared() }
    }

    /// The gets counted on every lane.
    pub fn total(&self) -> u64 {
        (0..LANES).map(|lane| self.cell(lane).load(Relaxed)).fold(0, u64::wrapping_add)
    }

    /// Sets the column back to zero (no reader of the shard runs: the
    /// caller holds it exclusively).
    pub fn reset(&mut self) {
        for lane in 0..LANES {
            self.cell(lane).store(0, Relaxed);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn each_thread_counts_on_its_own_lane_and_the_total_is_exact() {
        let columns: Vec<LaneColumn> = LaneColumn::table(3).collect();
        let shared = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for t in 0..(LANES + 4) {
                let (columns, shared) = (&columns, &shared);
                scope.spawn(move || {
                    for i in 0..1_000 {
                        columns[(t + i) % 3].count(|| shared.fetch_add(1, Relaxed) == 0);
                    }
                });
            }
        });
        let sum: u64 = columns.iter().map(LaneColumn::total).sum();
        assert_eq!(sum + shared.load(Relaxed), (LANES as u64 + 4) * 1_000, "every count, once");
    }

    #[test]
    fn an_exited_threads_lane_is_freed_for_the_next_thread() {
        let column = LaneColumn::single();
        // Four times as many threads, one after the other, as there are
        // lanes: if an exiting thread kept its lane, at most LANES of them
        // would count on a lane (other tests' threads may hold some lanes
        // for a while, so not all of them need to find one).
        let mut on_lanes = 0;
        for _ in 0..(4 * LANES) {
            let mut shared = false;
            std::thread::scope(|scope| {
                scope.spawn(|| column.count(|| std::mem::replace(&mut shared, true)));
            });
            on_lanes += u32::from(!shared);
        }
        assert!(on_lanes > LANES as u32, "{on_lanes} of {} threads found a free lane", 4 * LANES);
        assert_eq!(column.total(), u64::from(on_lanes), "every lane's count kept across owners");
    }

    #[test]
    fn reset_zeroes_one_column_only() {
        let mut columns: Vec<LaneColumn> = LaneColumn::table(9).collect();
        for column in &columns {
            column.count(|| false);
        }
        let on_lanes = columns.iter().filter(|c| c.total() == 1).count();
        columns[8].reset();
        assert_eq!(columns[8].total(), 0);
        let kept = columns[..8].iter().filter(|c| c.total() == 1).count();
        assert_eq!(kept, on_lanes.min(8), "the other shards keep their counts");
    }
}
