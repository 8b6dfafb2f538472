#![cfg(not(target_arch = "wasm32"))]
//! A hostile user's attack on the memory store's weigher, batch calls and
//! warm restart: a weigher that changes its mind, panics or re-enters the
//! store inside a batch; each key of a batch counted as its single call
//! would count it; hostile dumps.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use pepperpy_caching::stores::{Dump, DumpEntry};
use pepperpy_caching::{
    CacheStats, CacheStore, ErrorKind, LruPolicy, MemoryStore, Policy, RemovalReason, S3FifoPolicy, SetOptions,
};

type Log = Arc<Mutex<Vec<(String, u64, RemovalReason)>>>;

fn counts(stats: &CacheStats) -> [u64; 6] {
    [stats.hits, stats.misses, stats.sets, stats.deletes, stats.evictions, stats.total_weight]
}

/// A weigher that weighs `b` 1 the first time and more than the capacity
/// after: set_many's check passes, the write then refuses `b`. Whatever
/// set_many then does, every entry that left the store is reported, once.
#[test]
fn set_many_with_a_weigher_that_changes_its_mind_reports_what_it_removed() {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let weighed_b = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&weighed_b);
    let store = MemoryStore::<u64>::builder(LruPolicy::new(100).unwrap())
        .shards(1)
        .weigher(move |key, _| if key == "b" && w.fetch_add(1, Ordering::SeqCst) > 0 { u64::MAX } else { 1 })
        .on_remove(move |key, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
        .build();
    store.set("a", 1, SetOptions::new()).into_inner().unwrap();
    let result = store.set_many(vec![("a", 2), ("b", 3)], SetOptions::new()).into_inner();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::EntryTooLarge);
    let a = store.get("a").into_inner().unwrap();
    let log = log.lock().unwrap().clone();
    match a {
        Some(1) => assert!(log.is_empty(), "nothing left: {log:?}"),
        Some(2) => assert_eq!(log, [("a".to_string(), 1, RemovalReason::Replaced)], "a's old value left: reported"),
        other => panic!("a is {other:?}"),
    }
    assert_eq!(store.get("b").into_inner().unwrap(), None);
}

/// A weigher that panics in the middle of a batch: the panic reaches the
/// caller, nothing changed, and the store works after.
#[test]
fn a_weigher_that_panics_inside_set_many_changes_nothing() {
    let store = MemoryStore::<u64>::builder(LruPolicy::new(100).unwrap())
        .shards(4)
        .weigher(|key, _| if key == "boom" { panic!("weigher") } else { 2 })
        .build();
    store.set("a", 1, SetOptions::new()).into_inner().unwrap();
    let before = counts(&store.stats());
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        store.set_many(vec![("x", 1), ("boom", 2), ("y", 3)], SetOptions::new()).into_inner()
    }));
    assert!(panicked.is_err());
    assert_eq!(counts(&store.stats()), before);
    assert_eq!(store.len(), 1);
    store.set_many(vec![("x", 1), ("y", 3)], SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.get_many(&["a", "x", "y"]).into_inner().unwrap(), [Some(1), Some(1), Some(3)]);
    assert_eq!(store.stats().total_weight, 6);
}

/// A weigher that reads the store it weighs for (from set_many's check and
/// its write) gets an error or a value, never a deadlock.
#[test]
fn a_weigher_that_reads_its_own_store_inside_set_many_does_not_deadlock() {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let me: Arc<OnceLock<Weak<MemoryStore<u64>>>> = Arc::default();
        let inner = Arc::clone(&me);
        let store = Arc::new(
            MemoryStore::<u64>::builder(LruPolicy::new(100).unwrap())
                .shards(2)
                .weigher(move |key, _| {
                    if let Some(store) = inner.get().and_then(Weak::upgrade) {
                        let _ = store.get(key).into_inner();
                        let _ = store.get_many(&[key, "other"]).into_inner();
                    }
                    1
                })
                .build(),
        );
        me.set(Arc::downgrade(&store)).unwrap();
        store.set_many(vec![("a", 1), ("b", 2), ("c", 3)], SetOptions::new()).into_inner().unwrap();
        store.set("d", 4, SetOptions::new()).into_inner().unwrap();
        done.send(store.len()).unwrap();
    });
    assert_eq!(wait.recv_timeout(Duration::from_secs(20)).expect("no deadlock"), 4);
}

fn policies() -> Vec<(Policy, usize)> {
    vec![
        (LruPolicy::new(1000).unwrap().into(), 1),
        (S3FifoPolicy::new(1000).unwrap().into(), 1),
        (S3FifoPolicy::new(1000).unwrap().into(), 8),
        (LruPolicy::new(3).unwrap().into(), 1),
    ]
}

/// Each key of a batch counts what its single call counts: hits, misses,
/// sets, deletes, evictions and the total weight after each call, with
/// duplicate keys, on a twin store driven one key at a time.
#[test]
fn a_batch_counts_what_its_single_calls_count() {
    for weighed in [false, true] {
        for (policy, shards) in policies() {
            let build = || {
                let builder = MemoryStore::<u64>::builder(policy.clone()).shards(shards);
                if weighed { builder.weigher(|_, v| v % 3 + 1).build() } else { builder.build() }
            };
            let (batch, single) = (build(), build());
            let keys = ["a", "b", "a", "c", "d", "b", "e"];
            let entries: Vec<(&str, u64)> = keys.iter().enumerate().map(|(i, k)| (*k, i as u64)).collect();
            batch.set_many(entries.clone(), SetOptions::new()).into_inner().unwrap();
            for (k, v) in &entries {
                single.set(k, *v, SetOptions::new()).into_inner().unwrap();
            }
            let what = format!("weighed {weighed}, {policy:?} x{shards}");
            assert_eq!(counts(&batch.stats()), counts(&single.stats()), "set_many: {what}");
            let got = batch.get_many(&["a", "a", "zz", "e", "zz"]).into_inner().unwrap();
            let want: Vec<_> =
                ["a", "a", "zz", "e", "zz"].iter().map(|k| single.get(k).into_inner().unwrap()).collect();
            assert_eq!(got, want, "{what}");
            assert_eq!(counts(&batch.stats()), counts(&single.stats()), "get_many: {what}");
            let n = batch.delete_many(&["a", "a", "zz", "b"]).into_inner().unwrap();
            let m = ["a", "a", "zz", "b"].iter().filter(|k| single.delete(k).into_inner().unwrap()).count();
            assert_eq!(n, m, "{what}");
            assert_eq!(counts(&batch.stats()), counts(&single.stats()), "delete_many: {what}");
            // A bad key anywhere changes and counts nothing.
            let before = counts(&batch.stats());
            assert!(batch.get_many(&["c", ""]).into_inner().is_err());
            assert!(batch.set_many(vec![("c", 1), ("", 2)], SetOptions::new()).into_inner().is_err());
            assert!(batch.delete_many(&["c", ""]).into_inner().is_err());
            assert_eq!(counts(&batch.stats()), before, "{what}");
        }
    }
}

/// A hostile dump: hits far above S3-FIFO's counter, probation on LRU,
/// duplicate keys, a TTL that ran out; then the store keeps its
/// invariants. With an entry too heavy besides, nothing loads.
#[test]
fn a_hostile_dump_loads_within_the_stores_rules() {
    let dump = |heavy: bool| {
        let mut hot = DumpEntry::new("hot", 5u64);
        hot.hits = u8::MAX;
        let mut gone = DumpEntry::new("gone", 6u64);
        gone.ttl = Some(Duration::from_millis(1));
        let mut entries = vec![DumpEntry::new("dup", 1), hot, gone, DumpEntry::new("dup", 2)];
        if heavy {
            entries.insert(2, DumpEntry::new("heavy", 1000));
        }
        let mut dump = Dump::new(entries);
        dump.taken_at_ms -= 10_000;
        dump
    };
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let store = MemoryStore::<u64>::builder(S3FifoPolicy::new(100).unwrap())
        .weigher(|_, v| *v)
        .on_remove(move |key, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
        .build();
    assert_eq!(store.load(dump(true)).unwrap_err().kind(), ErrorKind::EntryTooLarge);
    assert_eq!((store.len(), store.stats().sets, store.stats().total_weight), (0, 0, 0));
    assert!(log.lock().unwrap().is_empty());
    let stored = store.load(dump(false)).unwrap();
    assert_eq!(store.len(), 2);
    let values: HashMap<_, _> = store.dump().unwrap().entries.into_iter().map(|e| (e.key, (e.value, e.hits))).collect();
    assert_eq!(values["dup"].0, 2);
    assert!(values["hot"].1 <= 3, "hits {} fit S3-FIFO's counter", values["hot"].1);
    assert_eq!(store.stats().total_weight, 7);
    assert_eq!(*log.lock().unwrap(), [("dup".to_string(), 1, RemovalReason::Replaced)]);
    assert_eq!(stored as u64, store.stats().sets, "load returns what it counted as sets");
}

/// Dumps taken while four threads write (and a listener watches): each is a
/// consistent snapshot per shard (no key twice, every value its key's,
/// within the capacity and its weight), and loads into a fresh store.
#[test]
fn dumps_taken_while_threads_write_are_consistent() {
    for weighed in [false, true] {
        let builder = MemoryStore::<u64>::builder(S3FifoPolicy::new(800).unwrap()).shards(8).on_remove(|_, _, _| {});
        let store = Arc::new(if weighed { builder.weigher(|_, v| v % 4).build() } else { builder.build() });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % 3000;
                        let key = format!("k{k}");
                        match i % 7 {
                            0 => drop(store.delete(&key).into_inner()),
                            1 => {
                                drop(store.set_many(vec![(key.as_str(), k), ("k1", 1)], SetOptions::new()).into_inner())
                            }
                            _ => store.set(&key, k, SetOptions::new()).into_inner().unwrap(),
                        }
                        let _ = store.get(&format!("k{}", (i * 7) % 3000)).into_inner();
                        i += 4;
                    }
                })
            })
            .collect();
        for _ in 0..40 {
            let dump = store.dump().unwrap();
            let mut seen = HashSet::new();
            for e in &dump.entries {
                assert!(seen.insert(e.key.clone()), "{} twice", e.key);
                assert_eq!(e.key, format!("k{}", e.value), "a value under its own key");
            }
            let weight: u64 = dump.entries.iter().map(|e| if weighed { e.value % 4 } else { 1 }).sum();
            assert!(weight <= 800, "{weight} within the capacity");
            // One shard: a store of 8 shards seeds its hasher afresh, so
            // the same keys fall in other shards and a full dump loses the
            // entries of the shards that get more than their share.
            let fresh = MemoryStore::<u64>::builder(S3FifoPolicy::new(800).unwrap()).shards(1);
            let fresh = if weighed { fresh.weigher(|_, v| v % 4).build() } else { fresh.build() };
            let n = dump.entries.len();
            assert_eq!(fresh.load(dump).unwrap(), n);
            assert_eq!(fresh.len(), n);
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
}

/// Known, not fixed: a full sharded store's dump loaded into a store built
/// the same way loses entries, as the new store's hasher (seeded afresh)
/// spreads the keys over its shards differently and the shards that get
/// more than their share evict (19 of 800 over 8 shards in one run). Run
/// with `--ignored` to see it.
#[test]
#[ignore = "known: a sharded store's warm restart loses the entries of over-full shards"]
fn a_full_sharded_store_restarts_with_every_entry() {
    let build = || MemoryStore::<u64>::builder(S3FifoPolicy::new(800).unwrap()).shards(8).build();
    let store = build();
    for i in 0..5000 {
        store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
    }
    let dump = store.dump().unwrap();
    let n = dump.entries.len();
    let fresh = build();
    fresh.load(dump).unwrap();
    assert_eq!(fresh.len(), n, "every entry of the dump is held after the restart");
}

/// A weigher returning garbage (u64::MAX) on a store whose policy has no
/// bound, over several shards: stats() still answers (no overflow panic,
/// no wrapped total).
#[test]
fn total_weight_of_garbage_weights_on_an_unbounded_sharded_store_does_not_overflow() {
    let store = MemoryStore::<u64>::builder(pepperpy_caching::TtlPolicy::new(Duration::from_secs(60)).unwrap())
        .shards(4)
        .weigher(|_, _| u64::MAX)
        .build();
    for i in 0..64 {
        let _ = store.set(&format!("k{i}"), i, SetOptions::new()).into_inner();
    }
    let held = store.len() as u64;
    let total = catch_unwind(AssertUnwindSafe(|| store.stats().total_weight)).expect("stats() answers");
    assert!(held >= 2, "an entry of weight u64::MAX in several shards: {held}");
    assert_eq!(total, u64::MAX, "{held} entries of u64::MAX: the total saturates");
}

/// A load (get_or_set / get_or_refresh) whose value is heavier than the
/// capacity: an error or the value, never a panic or a hang, nothing stored
/// or counted as set; the waiters of the same key get the same answer.
#[test]
fn a_load_too_heavy_for_a_weighted_store() {
    let store = Arc::new(MemoryStore::<u64>::builder(LruPolicy::new(10).unwrap()).weigher(|_, v| *v).build());
    store.set("small", 3, SetOptions::new()).into_inner().unwrap();
    let got = futures_block_on(store.get_or_set("big", || async { 50 }, SetOptions::new()));
    match got {
        Ok(v) => assert_eq!(v, 50),
        Err(e) => assert_eq!(e.kind(), ErrorKind::EntryTooLarge),
    }
    assert_eq!(store.get("big").into_inner().unwrap(), None);
    assert_eq!(store.get("small").into_inner().unwrap(), Some(3), "nothing evicted for it");
    let stats = store.stats();
    assert_eq!((stats.sets, stats.total_weight), (1, 3), "{stats:?}");
    // Then a load that fits is stored.
    assert_eq!(futures_block_on(store.get_or_set("big", || async { 5 }, SetOptions::new())).unwrap(), 5);
    assert_eq!(store.stats().total_weight, 8);
}

fn futures_block_on<F: std::future::Future>(future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}
