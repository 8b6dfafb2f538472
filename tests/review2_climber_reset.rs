#![cfg(not(target_arch = "wasm32"))]
//! Hostile review (session 10, `review2`) of the classic S3-FIFO climber
//! (src/stores/memory/engine/queues.rs, `Climber::due`/`adapt`, 98ce32d):
//! `reset_stats` sets the get and miss counters back to zero, and the
//! climber notices it only if a total it reads is below the one it kept. A
//! store that was all hits before the reset and all misses after it passes
//! that test with more misses since the period's start than gets:
//! `period_gets - (misses - last_misses)` underflows (a panic under debug
//! assertions, inside a `set` holding the shard's lock; a wrapped, huge hit
//! count under `--release`, which steers the small queue the wrong way).

use pepperpy_caching::{CacheStore, MemoryStore, S3FifoPolicy, SetOptions};

// Expected: every call succeeds; the sets after the reset do not panic.
#[test]
fn a_set_after_reset_stats_from_all_hits_to_all_misses_does_not_panic() {
    let store = MemoryStore::<u64>::builder(S3FifoPolicy::new(16).unwrap().adaptive(false)).shards(1).build();
    for i in 0..16u64 {
        store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
    }
    // A period (20 x 16 gets) of hits, then a write: the climber keeps these totals.
    for i in 0..400u64 {
        assert!(store.get(&format!("k{}", i % 16)).into_inner().unwrap().is_some());
    }
    store.set("k0", 0, SetOptions::new()).into_inner().unwrap();
    store.reset_stats();
    // More misses than the gets the climber kept, and a period more.
    for i in 0..800u64 {
        assert!(store.get(&format!("absent{i}")).into_inner().unwrap().is_none());
    }
    let set =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.set("k1", 1, SetOptions::new()).into_inner()));
    assert!(matches!(set, Ok(Ok(()))), "the set after reset_stats panicked or failed: {set:?}");
    assert_eq!(store.get("k1").into_inner().unwrap(), Some(1));
    // Today every later write panics the same way (the climber's totals are
    // not moved on by the panicking one): the store takes no more writes.
    let next =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.set("k2", 2, SetOptions::new()).into_inner()));
    assert!(matches!(next, Ok(Ok(()))), "a later set panicked or failed: {next:?}");
}
