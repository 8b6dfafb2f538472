#![cfg(not(target_arch = "wasm32"))]
//! Review 4 (native lanes): `reset_stats` racing a `get` on a lane.
//!
//! A `get` on a lane marks its lane with `fetch_add(READING)` on the lane's
//! hit counter and remembers the count it read (`Entered::hits`); if it then
//! finds the shard's writer flag up, it backs out by *storing* that
//! remembered count back (`Entered::drop`). A writer that raised the flag
//! and looked at the lane just before the mark went on does not wait for
//! it; if that writer is `reset_stats`, it zeroes the lane
//! (`LaneColumn::reset`) and the backing-out `get` then writes its stale
//! count over the zero. The reset is undone for that lane: `stats()` right
//! after `reset_stats()` reports every hit the reader made before it.
//!
//! The check: between a reading of the reader's own count of finished gets
//! before `reset_stats` and one after `stats`, at most that many gets (+1
//! in flight) can have been counted since the reset. Before the reset the
//! reader's lane holds over a million hits, so a restored count is
//! unmistakable. Under the old `RwLock` read path (ccd1874) every `get`
//! counted under the read lock and the bound always held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{CacheStore, MemoryStore, S3FifoPolicy, SetOptions};

#[test]
fn reset_stats_is_not_undone_by_a_get_backing_out_of_its_lane() {
    let store: Arc<MemoryStore<u64>> = Arc::new(MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build());
    store.set("a", 1, SetOptions::new()).into_inner().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done, stop, warm) = (store.clone(), done.clone(), stop.clone(), warm.clone());
        std::thread::spawn(move || {
            // The first get claims a lane; the next million fill its count.
            for _ in 0..1_000_000 {
                assert_eq!(store.get("a").into_inner().unwrap(), Some(1));
            }
            warm.store(true, Ordering::SeqCst);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(store.get("a").into_inner().unwrap(), Some(1));
                n += 1;
                done.store(n, Ordering::SeqCst);
            }
        })
    };
    while !warm.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bad = Vec::new();
    let mut rounds = 0u64;
    while Instant::now() < deadline && bad.len() < 3 {
        rounds += 1;
        let before = done.load(Ordering::SeqCst);
        store.reset_stats();
        let stats = store.stats();
        let after = done.load(Ordering::SeqCst);
        // Gets finished after `before` was read, plus the one in flight then.
        let bound = after - before + 1;
        if stats.hits > bound {
            bad.push((rounds, stats.hits, bound));
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    assert!(
        bad.is_empty(),
        "after reset_stats, stats() counted more hits than gets ran since (round, hits, at most) in {rounds} rounds: \
         {bad:?}"
    );
}
