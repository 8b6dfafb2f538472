#![cfg(not(target_arch = "wasm32"))]
//! Hostile review of the memory engine's per-thread get lanes
//! (src/stores/memory/engine/lanes.rs): 16 lanes process-wide, claimed at a
//! thread's first shared read, freed at its exit. Whatever the threads do
//! (more than 16, churned in loops, exiting mid-run, reading two stores,
//! reading from a thread-local destructor, outliving a store), `stats()` must
//! count every get exactly once, and read concurrently it must never go back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use pepperpy_caching::{CacheStore, MemoryStore, S3FifoPolicy, SetOptions};

fn store(shards: usize) -> MemoryStore<u64> {
    let store = MemoryStore::<u64>::builder(S3FifoPolicy::new(10_000).unwrap()).shards(shards).build();
    for i in 0..100u64 {
        store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
    }
    store
}

/// Gets `n` keys starting at `from`; keys >= 100 miss. Returns (hits, misses).
fn read(store: &MemoryStore<u64>, from: u64, n: u64) -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    for i in 0..n {
        let k = (from + i) % 150;
        match store.get(&format!("k{k}")).into_inner().unwrap() {
            Some(v) => {
                assert_eq!(v, k);
                hits += 1
            }
            None => misses += 1,
        }
    }
    (hits, misses)
}

fn counts(store: &MemoryStore<u64>) -> (u64, u64) {
    let s = store.stats();
    (s.hits, s.misses)
}

// Expected: after rounds of 24 short-lived threads (more than 16 at once,
// lanes freed and reclaimed every round, some threads reading once and
// exiting), stats equal the gets made, exactly.
#[test]
fn churned_threads_past_sixteen_count_every_get_once() {
    let store = store(5);
    let (hits, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    for round in 0..30u64 {
        std::thread::scope(|scope| {
            for t in 0..24u64 {
                let (store, hits, misses) = (&store, &hits, &misses);
                scope.spawn(move || {
                    // Threads exiting at different points of the round.
                    let n = if t % 3 == 0 { 1 } else { 37 * (t + 1) + round };
                    let (h, m) = read(store, t * 7 + round, n);
                    hits.fetch_add(h, Ordering::Relaxed);
                    misses.fetch_add(m, Ordering::Relaxed);
                });
            }
        });
    }
    assert_eq!(counts(&store), (hits.into_inner(), misses.into_inner()), "every get counted once");
}

// Expected: one thread reading two stores counts on each store's own column:
// each store's stats hold its own gets only.
#[test]
fn one_thread_two_stores_keep_their_own_counts() {
    let (a, b) = (store(3), store(9));
    std::thread::scope(|scope| {
        for t in 0..20u64 {
            let (a, b) = (&a, &b);
            scope.spawn(move || {
                read(a, t, 100);
                read(b, t, 250);
                read(a, t, 50);
            });
        }
    });
    assert_eq!(a.stats().hits + a.stats().misses, 20 * 150);
    assert_eq!(b.stats().hits + b.stats().misses, 20 * 250);
}

struct ReadOnExit {
    store: Arc<MemoryStore<u64>>,
    done: Arc<AtomicU64>,
}

impl Drop for ReadOnExit {
    fn drop(&mut self) {
        let (h, m) = read(&self.store, 3, 40);
        self.done.fetch_add(h + m, Ordering::Relaxed);
    }
}

thread_local! {
    static ON_EXIT: std::cell::RefCell<Option<ReadOnExit>> = const { std::cell::RefCell::new(None) };
}

// Expected: gets made from a thread-local destructor (before or after the
// thread's lane is freed, by threads that read before and threads whose
// first read is there) are counted, and the lanes freed stay usable: a later
// wave of threads still counts exactly.
#[test]
fn gets_from_thread_local_destructors_are_counted() {
    let store = Arc::new(store(4));
    let done = Arc::new(AtomicU64::new(0));
    for round in 0..10u64 {
        let handles: Vec<_> = (0..20u64)
            .map(|t| {
                let (store, done) = (Arc::clone(&store), Arc::clone(&done));
                std::thread::spawn(move || {
                    // 0: reads, then registers the destructor; 1: the reverse;
                    // 2: reads only in the destructor (claims its lane there).
                    let how = (t + round) % 3;
                    let read_first = how == 0;
                    if read_first {
                        // Claims a lane before the destructor is registered.
                        let (h, m) = read(&store, t, 10);
                        done.fetch_add(h + m, Ordering::Relaxed);
                    }
                    ON_EXIT.with(|slot| {
                        *slot.borrow_mut() = Some(ReadOnExit { store: Arc::clone(&store), done: Arc::clone(&done) })
                    });
                    if how == 1 {
                        // Claims a lane after the destructor is registered.
                        let (h, m) = read(&store, t, 5);
                        done.fetch_add(h + m, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let s = store.stats();
    assert_eq!(s.hits + s.misses, done.load(Ordering::Relaxed), "every get counted, destructors' too");
    // The lanes were all freed: 16 threads at once still count exactly.
    let before = store.stats().hits + store.stats().misses;
    let barrier = Barrier::new(16);
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let (store, barrier) = (&store, &barrier);
            scope.spawn(move || {
                barrier.wait();
                read(store, t, 300);
            });
        }
    });
    let s = store.stats();
    assert_eq!(s.hits + s.misses - before, 16 * 300);
}

// Expected: threads holding lanes outlive the store they counted on; a new
// store read by the same threads (and reset_stats meanwhile) counts exactly.
#[test]
fn a_store_dropped_while_threads_hold_lanes() {
    let barrier = Barrier::new(21);
    let first = std::sync::RwLock::new(Some(store(8)));
    let second = store(8);
    std::thread::scope(|scope| {
        for t in 0..20u64 {
            let (first, second, barrier) = (&first, &second, &barrier);
            scope.spawn(move || {
                read(first.read().unwrap().as_ref().unwrap(), t, 100);
                barrier.wait(); // the store is dropped
                barrier.wait();
                read(second, t, 200);
                barrier.wait(); // reset_stats
                barrier.wait();
                read(second, t, 70);
            });
        }
        barrier.wait();
        let dropped = first.write().unwrap().take().unwrap();
        assert_eq!(dropped.stats().hits + dropped.stats().misses, 20 * 100);
        drop(dropped);
        barrier.wait();
        barrier.wait();
        assert_eq!(second.stats().hits + second.stats().misses, 20 * 200);
        second.reset_stats();
        assert_eq!(counts(&second), (0, 0), "reset clears every lane");
        barrier.wait();
    });
    assert_eq!(second.stats().hits + second.stats().misses, 20 * 70);
}

// Expected: `hits` is a counter (Prometheus `hits_total`): read while gets
// run, it never goes back. A get is counted on its lane before the lookup and
// as a miss after it, and stats read the lanes and then the misses: an
// in-flight miss shows as a hit, and then the hit disappears.
#[test]
fn hits_read_while_gets_run_never_go_back() {
    let store = store(1);
    let stop = AtomicBool::new(false);
    let mut back = None;
    std::thread::scope(|scope| {
        let (s, stop_ref) = (&store, &stop);
        scope.spawn(move || {
            let mut i = 0u64;
            while !stop_ref.load(Ordering::Relaxed) {
                // Mostly misses (keys past 100).
                read(s, 100 + (i % 50), 1);
                i += 1;
            }
        });
        let mut last = (0, 0);
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(3) {
            let now = counts(&store);
            if now.0 < last.0 || now.1 < last.1 {
                back = Some((last, now));
                break;
            }
            last = now;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(back, None, "(hits, misses) went back while only misses ran");
}

// Expected (reads2, the fix's own attack): hits and misses mixed, on 20
// threads at once (past the 16 lanes: some count on the shards' shared
// counters), on a store of 4 shards: read concurrently, hits, misses and
// gets never go back; once the gets stop, stats equal the gets made.
#[test]
fn hits_misses_and_gets_past_sixteen_threads_never_go_back() {
    let store = store(4);
    let stop = AtomicBool::new(false);
    let (hits, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut back = None;
    std::thread::scope(|scope| {
        for t in 0..20u64 {
            let (store, stop, hits, misses) = (&store, &stop, &hits, &misses);
            scope.spawn(move || {
                let mut i = t * 13;
                while !stop.load(Ordering::Relaxed) {
                    // Keys past 100 miss: a third of the gets.
                    let (h, m) = read(store, i, 7);
                    hits.fetch_add(h, Ordering::Relaxed);
                    misses.fetch_add(m, Ordering::Relaxed);
                    i += 7;
                }
            });
        }
        let mut last = (0, 0);
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(1500) {
            let now = counts(&store);
            if now.0 < last.0 || now.1 < last.1 || now.0 + now.1 < last.0 + last.1 {
                back = Some((last, now));
                break;
            }
            last = now;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(back, None, "(hits, misses) went back while gets ran");
    assert_eq!(counts(&store), (hits.into_inner(), misses.into_inner()), "exact once the gets stopped");
}
