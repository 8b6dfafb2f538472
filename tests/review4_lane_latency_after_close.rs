#![cfg(not(target_arch = "wasm32"))]
//! Review 4 (native lanes): a `get` on a lane touches the engine after its
//! lane read has ended.
//!
//! `Engine::get_counted` closes the read (`tally.close`, which clears the
//! lane's READING bit and lets a waiting writer in) and only then, for a
//! sampled `get` (one in 32), reads the engine's clock and adds the time to
//! the engine's `reads` counters (`record_latency_since`). The engine is
//! reached through a plain `&Engine` obtained without the lock: once the
//! bit is clear a writer may hold `&mut Engine` and, in `reset_stats`,
//! overwrite `self.reads` with a plain store while the reader does
//! `fetch_add` on it (a data race: undefined behaviour; Miri would report
//! it). What shows: a sample recorded by a `get` that ended before
//! `reset_stats` lands after it, so `stats()` reports a mean get latency with
//! no get counted. Under the old read path (ccd1874, and still for a thread
//! without a lane) the whole `get_counted` ran under the read lock, which
//! `reset_stats` waits for.
//!
//! Each round: the reader's `get` of a value whose `Clone` waits until the
//! main thread is about to call `reset_stats` (then spins a varying short
//! while), so the reset meets the end of the read; once both are done,
//! `stats()` must not show a latency without a get.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{CacheStore, MemoryStore, S3FifoPolicy, SetOptions};

#[derive(Default)]
struct Sync {
    /// The reader's round (its clone is inside the lane read).
    inside: AtomicU64,
    /// The round the main thread is about to reset in.
    resetting: AtomicU64,
    /// Spins the clone waits after `resetting` (varied by the main thread).
    spins: AtomicU64,
    /// Whether the clones wait at all (off for the warm-up).
    armed: AtomicBool,
}

/// Spins a little, then yields (the machine may have fewer free cores than threads).
fn pause(spins: &mut u32) {
    *spins += 1;
    if *spins < 200 { std::hint::spin_loop() } else { std::thread::yield_now() }
}

struct Slow(Arc<Sync>);

impl Clone for Slow {
    fn clone(&self) -> Self {
        let s = &self.0;
        if s.armed.load(Ordering::SeqCst) {
            let round = s.inside.load(Ordering::SeqCst) + 1;
            s.inside.store(round, Ordering::SeqCst);
            let give_up = Instant::now() + Duration::from_millis(50);
            let mut n = 0;
            while s.resetting.load(Ordering::SeqCst) < round && Instant::now() < give_up {
                pause(&mut n);
            }
            for _ in 0..s.spins.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
        Slow(self.0.clone())
    }
}

#[test]
fn no_latency_sample_lands_after_reset_stats_from_a_get_that_ended_before_it() {
    let sync = Arc::new(Sync::default());
    let store: Arc<MemoryStore<Slow>> =
        Arc::new(MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build());
    store.set("a", Slow(sync.clone()), SetOptions::new()).into_inner().unwrap();
    let go = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, go, finished, stop) = (store.clone(), go.clone(), finished.clone(), stop.clone());
        std::thread::spawn(move || {
            // Claims this thread's lane.
            assert!(store.get("a").into_inner().unwrap().is_some());
            finished.store(0, Ordering::SeqCst);
            let mut round = 0;
            loop {
                let mut n = 0;
                while go.load(Ordering::SeqCst) == round {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    pause(&mut n);
                }
                round += 1;
                assert!(store.get("a").into_inner().unwrap().is_some());
                finished.store(round, Ordering::SeqCst);
            }
        })
    };
    // The warm-up get has claimed the lane once the reader waits for round 1.
    std::thread::sleep(Duration::from_millis(50));
    sync.armed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bad = Vec::new();
    let mut round = 0u64;
    while Instant::now() < deadline && bad.len() < 3 {
        store.reset_stats();
        round += 1;
        sync.spins.store(round % 64, Ordering::SeqCst);
        go.store(round, Ordering::SeqCst);
        let mut n = 0;
        while sync.inside.load(Ordering::SeqCst) < round {
            pause(&mut n);
        }
        sync.resetting.store(round, Ordering::SeqCst);
        store.reset_stats();
        let mut n = 0;
        while finished.load(Ordering::SeqCst) < round {
            pause(&mut n);
        }
        let stats = store.stats();
        if stats.hits + stats.misses == 0 && stats.avg_get_latency > Duration::ZERO {
            bad.push((round, stats.avg_get_latency));
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    assert!(
        bad.is_empty(),
        "stats() after reset_stats shows a get latency but no get, in {round} rounds (round, mean latency): {bad:?}"
    );
}
