#![cfg(not(target_arch = "wasm32"))]
//! `get` on a thread with a lane reads its shard without the shard's lock
//! (`src/stores/memory/shard.rs`): the thread marks its own lane, and a
//! writer raises the shard's flag and waits for the marked lanes. These
//! tests hold that protocol to what a lock gives: a writer never changes a
//! value while a `get` clones it, a `get` cut short by a panicking `Clone`
//! leaves no mark behind, and a value's `Clone` calling back into the store
//! is refused, not left waiting for itself. Every body runs on a thread of
//! its own and fails if it has not finished within 20 s (a writer waiting
//! for a mark that is never cleared is a failure, not a hung test run).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

#[path = "support/deadline.rs"]
mod deadline;

/// Runs `body` on its own thread; fails if it panics or runs for more than 20 s.
fn within_20s(what: &str, body: impl FnOnce() + Send + 'static) {
    deadline::on_thread_within(what, Duration::from_secs(20), body);
}

/// A value of many words, all equal: a clone that overlaps a write of the
/// same slot (a torn read) sees two different words. Its `Clone` reads the
/// words one by one, volatile, with a pause in the middle, to widen the
/// window a broken lock would leave open.
struct Words([u64; 32]);

impl Words {
    fn of(n: u64) -> Self {
        Words([n; 32])
    }
}

impl Clone for Words {
    fn clone(&self) -> Self {
        let mut out = [0u64; 32];
        for (i, word) in self.0.iter().enumerate() {
            // SAFETY: a reference to a live u64.
            out[i] = unsafe { std::ptr::read_volatile(word) };
            if i == 16 {
                std::hint::spin_loop();
            }
        }
        Words(out)
    }
}

#[test]
fn a_get_never_sees_a_value_a_writer_is_replacing() {
    for policy in ["s3-fifo", "ttl"] {
        within_20s(policy, move || {
            // One shard, few keys: readers and writers meet on the same slots.
            let store: Arc<MemoryStore<Words>> = Arc::new(match policy {
                "s3-fifo" => MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build(),
                _ => MemoryStore::builder(TtlPolicy::new(Duration::from_secs(3600)).unwrap()).shards(1).build(),
            });
            for k in 0..8 {
                store.set(&format!("k{k}"), Words::of(0), SetOptions::new()).into_inner().unwrap();
            }
            let stop = Arc::new(AtomicBool::new(false));
            let torn = Arc::new(AtomicU64::new(0));
            let reads = Arc::new(AtomicU64::new(0));
            let mut threads = Vec::new();
            for r in 0..2 {
                let (store, stop, torn, reads) = (store.clone(), stop.clone(), torn.clone(), reads.clone());
                threads.push(std::thread::spawn(move || {
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(words) = store.get(&format!("k{}", i % 8)).into_inner().unwrap()
                            && words.0.iter().any(|&w| w != words.0[0])
                        {
                            torn.fetch_add(1, Ordering::Relaxed);
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                }));
            }
            let writer = {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 1..=200_000u64 {
                        store.set(&format!("k{}", n % 8), Words::of(n), SetOptions::new()).into_inner().unwrap();
                    }
                })
            };
            writer.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            assert!(reads.load(Ordering::Relaxed) > 0);
            assert_eq!(torn.load(Ordering::Relaxed), 0, "{policy}: a get cloned a value while it was written");
        });
    }
}

/// A value whose `Clone` blocks until told to go on: a `get` stays inside
/// its read of the shard for as long as the test wants.
#[derive(Default)]
struct Gate {
    inside: AtomicBool,
    open: AtomicBool,
}

struct Held(Arc<Gate>);

impl Clone for Held {
    fn clone(&self) -> Self {
        self.0.inside.store(true, Ordering::SeqCst);
        while !self.0.open.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        Held(self.0.clone())
    }
}

#[test]
fn a_writer_waits_for_a_get_in_progress_on_its_shard() {
    within_20s("writer waits", || {
        let store: Arc<MemoryStore<Held>> =
            Arc::new(MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build());
        let gate = Arc::new(Gate::default());
        store.set("held", Held(gate.clone()), SetOptions::new()).into_inner().unwrap();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                // A first get claims this thread's lane; the second reads on it.
                let warm = Arc::new(Gate::default());
                warm.open.store(true, Ordering::SeqCst);
                store.set("warm", Held(warm), SetOptions::new()).into_inner().unwrap();
                store.get("warm").into_inner().unwrap().expect("warm");
                store.get("held").into_inner().unwrap().is_some()
            })
        };
        while !gate.inside.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let wrote = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, wrote) = (store.clone(), wrote.clone());
            std::thread::spawn(move || {
                let other = Arc::new(Gate::default());
                store.set("other", Held(other), SetOptions::new()).into_inner().unwrap();
                wrote.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!wrote.load(Ordering::SeqCst), "a set ran while a get was reading the shard");
        gate.open.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap(), "the get found its value");
        writer.join().unwrap();
        assert!(wrote.load(Ordering::SeqCst));
    });
}

/// A value whose `Clone` panics while `PANIC` says so.
static PANIC: AtomicBool = AtomicBool::new(false);

struct Brittle(u64);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        if PANIC.load(Ordering::SeqCst) {
            panic!("clone refused");
        }
        Brittle(self.0)
    }
}

#[test]
fn a_get_whose_clone_panics_leaves_its_shard_writable() {
    within_20s("panicking clone", || {
        let store: Arc<MemoryStore<Brittle>> =
            Arc::new(MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build());
        store.set("a", Brittle(1), SetOptions::new()).into_inner().unwrap();
        let before = store.stats();
        let (to_main, from_reader) = std::sync::mpsc::channel();
        let (to_reader, from_main) = std::sync::mpsc::channel::<()>();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                assert_eq!(
                    store.get("a").into_inner().unwrap().map(|b| b.0),
                    Some(1),
                    "on the slow path, claims a lane"
                );
                PANIC.store(true, Ordering::SeqCst);
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.get("a").into_inner()));
                PANIC.store(false, Ordering::SeqCst);
                assert!(caught.is_err(), "the clone panicked through get");
                // Another thread writes the shard before this one reads it again.
                to_main.send(()).unwrap();
                from_main.recv().unwrap();
                assert_eq!(store.get("a").into_inner().unwrap().map(|b| b.0), Some(2));
                store.set("a", Brittle(3), SetOptions::new()).into_inner().unwrap();
            })
        };
        from_reader.recv().unwrap();
        store.set("a", Brittle(2), SetOptions::new()).into_inner().unwrap();
        to_reader.send(()).unwrap();
        reader.join().unwrap();
        assert_eq!(store.get("a").into_inner().unwrap().map(|b| b.0), Some(3));
        let after = store.stats();
        // The cut-short get counted nothing: two hits on the reader, one here.
        assert_eq!(after.hits - before.hits, 3, "{after:?}");
        assert_eq!(after.misses, before.misses);
    });
}

/// A value whose `Clone` calls back into the store that is cloning it.
struct Caller {
    store: Arc<Mutex<Option<std::sync::Weak<MemoryStore<Caller>>>>>,
    seen: Arc<Mutex<Vec<(bool, bool)>>>,
}

impl Clone for Caller {
    fn clone(&self) -> Self {
        if let Some(store) = self.store.lock().unwrap().as_ref().and_then(std::sync::Weak::upgrade) {
            let set = store.set("x", Caller { store: Arc::default(), seen: Arc::default() }, SetOptions::new());
            let get = store.get("other").into_inner();
            let refused = |e: Option<CacheError>| matches!(e, Some(CacheError::ReentrantValue { .. }));
            self.seen.lock().unwrap().push((refused(set.into_inner().err()), refused(get.err())));
        }
        Caller { store: Arc::default(), seen: self.seen.clone() }
    }
}

#[test]
fn a_clone_calling_back_into_the_store_from_a_lane_read_is_refused() {
    within_20s("re-entrant clone", || {
        let store: Arc<MemoryStore<Caller>> = Arc::new(MemoryStore::new(S3FifoPolicy::new(4096).unwrap()));
        let link = Arc::new(Mutex::new(None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        store.set("a", Caller { store: link.clone(), seen: seen.clone() }, SetOptions::new()).into_inner().unwrap();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                // The first get claims a lane (its clone does nothing yet).
                store.get("a").into_inner().unwrap().expect("a");
                *link.lock().unwrap() = Some(Arc::downgrade(&store));
                store.get("a").into_inner().unwrap().expect("a, on the lane");
            })
        };
        reader.join().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0], (true, true), "set and get from inside the clone are refused");
        // Nothing was written from inside the clone.
        assert!(store.get("x").into_inner().unwrap().is_none());
    });
}

#[test]
fn threads_reading_and_writing_count_every_get_once() {
    within_20s("exact counts", || {
        let store: Arc<MemoryStore<u64>> = Arc::new(MemoryStore::new(S3FifoPolicy::new(100_000).unwrap()));
        for k in 0..1_000u64 {
            store.set(&format!("k{k}"), k, SetOptions::new()).into_inner().unwrap();
        }
        let start = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let (mut hits, mut misses) = (0u64, 0u64);
                    for i in 0..20_000u64 {
                        if t == 3 && i % 4 == 0 {
                            store.set(&format!("k{}", i % 1_000), i, SetOptions::new()).into_inner().unwrap();
                            continue;
                        }
                        // One key in ten is never set: a miss.
                        let k = (i * 7 + t) % 1_100;
                        match store.get(&format!("k{k}")).into_inner().unwrap() {
                            Some(_) => hits += 1,
                            None => misses += 1,
                        }
                    }
                    (hits, misses)
                })
            })
            .collect();
        let (hits, misses) = threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses), (hits, misses), "{stats:?}");
        assert!(misses > 0 && hits > 0);
    });
}
