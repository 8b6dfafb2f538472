#![cfg(not(target_arch = "wasm32"))]
//! Review 4 (native lanes): `reset_stats` clears the READING mark of a `get`
//! that has just begun, which then reads the shard with no writer waiting
//! for it.
//!
//! A writer raises the shard's flag and looks at each lane's READING bit;
//! a reader that marks its lane just after that look (`fetch_add(READING)`)
//! and loads the flag late enough (preempted, or a slow cache line) to see
//! it lowered again reads the engine on its lane. If that writer was
//! `reset_stats`, `LaneColumn::reset` stored 0 into the lane's hit counter
//! in between, clearing the reader's mark: the next writer
//! (`wait_for_readers`) does not wait for the read in progress, and
//! replaces (and frees) the value the reader is cloning. Seen as a `get`
//! returning a value whose checksum fails, and as a whole `set` of the
//! shard running inside a `get`'s `Clone` (which a lock, or a working lane
//! protocol, forbids). Same root as `review4_lane_reset_counts.rs`: the
//! reset and `Entered::drop` store whole counter words instead of leaving
//! the READING bit alone.
//!
//! Without the thread calling `reset_stats` the same load holds (60 s);
//! on ccd1874 (read lock) it holds.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{CacheStore, MemoryStore, S3FifoPolicy, SetOptions};

/// A heap value with a checksum: a clone of a freed or half-written value fails it.
struct Sum(Vec<u64>);

impl Sum {
    fn of(n: u64) -> Sum {
        let mut v: Vec<u64> = (0..256u64).map(|i| n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i).collect();
        let s = v.iter().fold(0u64, |a, &b| a.wrapping_add(b).rotate_left(5));
        v.push(s);
        Sum(v)
    }
    fn ok(&self) -> bool {
        let Some((last, body)) = self.0.split_last() else { return false };
        body.len() == 256 && body.iter().fold(0u64, |a, &b| a.wrapping_add(b).rotate_left(5)) == *last
    }
}

/// Sets begun and ended by the one writer thread (each `set` of the shard
/// is begun after the count is raised and ended before the other is).
static STARTED: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// Clones during which a whole `set` of the shard began and ended.
static OVERLAPS: AtomicU64 = AtomicU64::new(0);

impl Clone for Sum {
    fn clone(&self) -> Self {
        let begun = STARTED.load(Ordering::SeqCst);
        // Word by word, volatile: a slow copy, to widen a broken lock's window.
        let mut out = Vec::with_capacity(self.0.len());
        for w in self.0.iter() {
            // SAFETY: a reference to a live u64 (if the store's lock holds).
            out.push(unsafe { std::ptr::read_volatile(w) });
        }
        // A set that began after this clone did and has ended: it wrote the
        // shard while this get was reading it.
        if FINISHED.load(Ordering::SeqCst) > begun {
            OVERLAPS.fetch_add(1, Ordering::SeqCst);
        }
        Sum(out)
    }
}

#[test]
fn a_get_never_reads_unprotected_after_a_concurrent_reset_stats() {
    let store: Arc<MemoryStore<Sum>> = Arc::new(MemoryStore::builder(S3FifoPolicy::new(64).unwrap()).shards(1).build());
    for k in 0..4 {
        store.set(&format!("k{k}"), Sum::of(k), SetOptions::new()).into_inner().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let torn = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for r in 0..6u64 {
        let (store, stop, torn) = (store.clone(), stop.clone(), torn.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                if let Some(v) = store.get(&format!("k{}", i % 4)).into_inner().unwrap()
                    && !v.ok()
                {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.reset_stats();
            }
        }));
    }
    {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (key, value) = (format!("k{}", n % 4), Sum::of(n));
                STARTED.fetch_add(1, Ordering::SeqCst);
                store.set(&key, value, SetOptions::new()).into_inner().unwrap();
                FINISHED.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && torn.load(Ordering::Relaxed) + OVERLAPS.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let (torn, overlaps) = (torn.load(Ordering::Relaxed), OVERLAPS.load(Ordering::SeqCst));
    assert_eq!(
        (torn, overlaps),
        (0, 0),
        "(gets that cloned a torn value, gets during whose clone a whole set of the shard ran)"
    );
}
