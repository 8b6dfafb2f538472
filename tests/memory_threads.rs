#![cfg(not(target_arch = "wasm32"))]
//! A hostile user against `MemoryStore`, with threads: several hammering one
//! store (S3-FIFO, LRU, TTL; values that panic in `Drop`), and S3-FIFO churn
//! with ghost hits, deletes and clears. Also: tests/memory_hostile.rs and
//! tests/memory_limits.rs.
//!
//! Every test states what the store promises and checks it after the attack:
//! each entry it lists reads back with the value last written for it, `len()`,
//! `keys()` and the capacity agree, the counters add up, and later calls work.
//! Each test here first exposed a bug or stood guard against one; all pass now.
//! The attackers and the consistency check are in tests/support/hostile.rs.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, ManualClock, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};
use support::hostile::*;
use support::meta;
use support::rng::Rng;

// Threads
// ---------------------------------------------------------------------------

const THREADS: u64 = 4;
const OPS: u64 = 15_000;

/// Values say who wrote them: key index, thread, sequence number.
fn value(key: u64, thread: u64, seq: u64) -> u64 {
    (key << 32) | (thread << 24) | seq
}

fn check_value(key: u64, v: u64, ctx: &str) {
    assert_eq!(v >> 32, key, "{ctx}: a value written for another key");
    assert!((v >> 24) & 0xff < THREADS, "{ctx}: no such writer in {v:#x}");
    assert!(v & 0xff_ffff < OPS, "{ctx}: no such write in {v:#x}");
}

fn hammer(name: &str, store: MemoryStore<u64>, cap: Option<usize>, keys: u64, clock: Option<ManualClock>) {
    let store = Arc::new(store);
    let gets = AtomicUsize::new(0);
    let sets = AtomicUsize::new(0);
    let loads = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, gets, sets, loads, clock) = (&store, &gets, &sets, &loads, clock.clone());
            scope.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let (mut my_gets, mut my_sets, mut my_loads) = (0, 0, 0);
                for seq in 0..OPS {
                    // Skewed: a few hot keys, a long tail.
                    let k = if rng.below(2) == 0 { rng.below(16) } else { rng.below(keys) };
                    let key = format!("k{k}");
                    let ctx = format!("{name}: thread {t} op {seq} key {key}");
                    match rng.below(1000) {
                        0..400 => {
                            my_gets += 1;
                            if let Some(v) = r(store.get(&key)).unwrap() {
                                check_value(k, v, &ctx);
                            }
                        }
                        400..450 => {
                            // Counts one get; may wait on another thread's load.
                            my_gets += 1;
                            let v = block_on(store.get_or_set(
                                &key,
                                || async {
                                    my_loads += 1;
                                    value(k, t, seq)
                                },
                                SetOptions::new(),
                            ));
                            check_value(k, v.unwrap(), &ctx);
                        }
                        450..800 => {
                            let mut options = SetOptions::new();
                            if clock.is_some() && rng.below(3) == 0 {
                                options = options.ttl(Duration::from_secs(1 + rng.below(4)));
                            }
                            r(store.set(&key, value(k, t, seq), options)).unwrap();
                            my_sets += 1;
                        }
                        800..880 => {
                            r(store.delete(&key)).unwrap();
                        }
                        880..920 => {
                            r(store.contains(&key)).unwrap();
                        }
                        920..935 => {
                            let pattern = format!("k{}*", rng.below(10));
                            r(store.invalidate(&pattern)).unwrap();
                        }
                        935..937 => r(store.clear()).unwrap(),
                        937..960 => {
                            let len = store.len();
                            if let Some(cap) = cap {
                                assert!(len <= cap, "{ctx}: {len} > {cap}");
                            }
                        }
                        960..975 => {
                            let d = rng.below(10);
                            for found in r(store.keys(Some(&format!("k{d}?")))).unwrap() {
                                assert!(found.starts_with(&format!("k{d}")) && found.len() == 3, "{ctx}: {found}");
                            }
                        }
                        975..985 => {
                            if let Some(clock) = &clock {
                                clock.advance(Duration::from_millis(700));
                            }
                        }
                        _ => {
                            r(store.update_metadata(&key, meta(serde_json::json!({"t": t})))).unwrap();
                            if let Some(m) = r(store.get_metadata(&key)).unwrap() {
                                assert!(m.get("t").is_none_or(|v| v.as_u64().is_some_and(|w| w < THREADS)), "{ctx}");
                            }
                        }
                    }
                }
                gets.fetch_add(my_gets, Ordering::Relaxed);
                sets.fetch_add(my_sets, Ordering::Relaxed);
                loads.fetch_add(my_loads, Ordering::Relaxed);
            });
        }
    });
    let stats = store.stats();
    let gets = gets.into_inner() as u64;
    assert_eq!(stats.hits + stats.misses, gets, "{name}: every get (and get_or_set) counted once: {stats:?}");
    let (sets, loads) = (sets.into_inner() as u64, loads.into_inner() as u64);
    assert_eq!(stats.loads, loads, "{name}: every loader run counted: {stats:?}");
    assert!(loads > 0, "{name}: some get_or_set loaded");
    // A load stores its value unless a write to its key came first.
    assert!(stats.sets >= sets && stats.sets <= sets + loads, "{name}: {sets} sets, {loads} loads: {stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{name}: the workload both hits and misses: {stats:?}");
    let len = store.len();
    if let Some(cap) = cap {
        assert!(len <= cap, "{name}: {len} > {cap}");
    }
    let listed = r(store.keys(None)).unwrap();
    assert_eq!(listed.len(), len, "{name}");
    for key in &listed {
        let k: u64 = key[1..].parse().unwrap();
        let v = r(store.get(key)).unwrap().unwrap_or_else(|| panic!("{name}: {key} listed but not readable"));
        check_value(k, v, name);
    }
    // The store still works.
    r(store.clear()).unwrap();
    assert_eq!(store.len(), 0, "{name}");
    r(store.set("k1", value(1, 0, 0), SetOptions::new())).unwrap();
    assert_eq!(r(store.get("k1")).unwrap(), Some(value(1, 0, 0)), "{name}");
}

#[test]
fn threads_hammering_an_s3fifo_store_keep_it_consistent() {
    // The default sharding: at 4096 entries, up to 4 shards.
    hammer("s3fifo default shards", MemoryStore::new(S3FifoPolicy::new(4096).unwrap()), Some(4096), 9000, None);
    hammer(
        "s3fifo 8 shards, small",
        MemoryStore::builder(S3FifoPolicy::new(61).unwrap()).shards(8).build(),
        Some(61),
        400,
        None,
    );
    let clock = ManualClock::new();
    let store = MemoryStore::builder(S3FifoPolicy::new(97).unwrap()).shards(4).clock(clock.clone()).build();
    hammer("s3fifo with ttls", store, Some(97), 400, Some(clock));
}

#[test]
fn threads_hammering_an_lru_store_keep_it_consistent() {
    hammer("lru", MemoryStore::new(LruPolicy::new(61).unwrap()), Some(61), 400, None);
    hammer(
        "lru no refresh, 4 shards",
        MemoryStore::builder(LruPolicy::new(61).unwrap().refresh_on_get(false)).shards(4).build(),
        Some(61),
        400,
        None,
    );
    let clock = ManualClock::new();
    let store = MemoryStore::builder(LruPolicy::new(61).unwrap()).clock(clock.clone()).build();
    hammer("lru with ttls", store, Some(61), 400, Some(clock));
}

#[test]
fn threads_hammering_a_ttl_store_keep_it_consistent() {
    let clock = ManualClock::new();
    let policy = TtlPolicy::new(Duration::from_secs(2)).unwrap().with_max_size(61).unwrap();
    let store = MemoryStore::builder(policy).clock(clock.clone()).build();
    hammer("ttl", store, Some(61), 400, Some(clock));
    let clock = ManualClock::new();
    let store =
        MemoryStore::builder(TtlPolicy::new(Duration::from_secs(2)).unwrap()).shards(4).clock(clock.clone()).build();
    hammer("ttl unbounded, 4 shards", store, None, 400, Some(clock));
}

#[test]
fn threads_whose_values_panic_in_drop_poison_no_shard_for_good() {
    let stores: Vec<(&str, MemoryStore<Hostile>, usize)> = vec![
        ("s3fifo 4 shards", MemoryStore::builder(S3FifoPolicy::new(61).unwrap()).shards(4).build(), 61),
        ("lru", MemoryStore::new(LruPolicy::new(61).unwrap()), 61),
        ("lru no refresh", MemoryStore::new(LruPolicy::new(61).unwrap().refresh_on_get(false)), 61),
        (
            "ttl",
            MemoryStore::builder(TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(61).unwrap()).build(),
            61,
        ),
    ];
    for (name, store, cap) in stores {
        let gets = AtomicUsize::new(0);
        let panicked = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (store, gets, panicked) = (&store, &gets, &panicked);
                scope.spawn(move || {
                    let mut rng = Rng(7 + t);
                    for seq in 0..4_000u64 {
                        let k = rng.below(300);
                        let key = format!("k{k}");
                        let op = rng.below(100);
                        let outcome = catch_unwind(AssertUnwindSafe(|| match op {
                            0..40 => {
                                gets.fetch_add(1, Ordering::Relaxed);
                                if let Some(h) = r(store.get(&key)).unwrap() {
                                    check_value(k, h.val, name);
                                }
                            }
                            40..90 => {
                                // One value in 20 panics when it is dropped (replaced, evicted, deleted, cleared).
                                let v = value(k, t, seq);
                                let h = if rng.below(20) == 0 { Hostile::drop_bomb(v) } else { Hostile::tame(v) };
                                r(store.set(&key, h, SetOptions::new())).unwrap();
                            }
                            90..96 => drop(r(store.delete(&key)).unwrap()),
                            96..98 => drop(r(store.invalidate(&format!("k{}*", rng.below(10)))).unwrap()),
                            98 => assert!(store.len() <= cap, "{name}"),
                            _ => {
                                if rng.below(20) == 0 {
                                    r(store.clear()).unwrap();
                                }
                            }
                        }));
                        if let Err(payload) = outcome {
                            // Only the values' own panics are expected; a failed check is re-raised.
                            if !is_hostile(&*payload, "hostile Drop") {
                                std::panic::resume_unwind(payload);
                            }
                            panicked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(panicked.load(Ordering::Relaxed) > 0, "{name}: some Drop panicked");
        let stats = store.stats();
        assert_eq!(stats.hits + stats.misses, gets.load(Ordering::Relaxed) as u64, "{name}: {stats:?}");
        let len = store.len();
        assert!(len <= cap, "{name}");
        let listed = r(store.keys(None)).unwrap();
        assert_eq!(listed.len(), len, "{name}");
        for key in &listed {
            let h = r(store.get(key)).unwrap().unwrap_or_else(|| panic!("{name}: {key} listed, not readable"));
            check_value(key[1..].parse().unwrap(), h.val, name);
        }
        // Defuse what is left, so that the store can be dropped.
        for key in &listed {
            let _ = catch_unwind(AssertUnwindSafe(|| r(store.set(key, Hostile::tame(0), SetOptions::new()))));
        }
        r(store.clear()).unwrap();
        assert_eq!(store.len(), 0, "{name}");
    }
}

// ---------------------------------------------------------------------------
// S3-FIFO specifics
// ---------------------------------------------------------------------------

#[test]
fn s3fifo_churn_with_ghost_hits_deletes_and_clears_keeps_every_count_exact() {
    for (cap, shards, steps) in
        [(50usize, 1usize, 20_000u64), (50, 4, 20_000), (1, 1, 3_000), (2, 2, 3_000), (3, 1, 3_000)]
    {
        let ctx = format!("S3-FIFO, cap {cap}, {shards} shard(s)");
        let store = MemoryStore::<Hostile>::builder(S3FifoPolicy::new(cap).unwrap()).shards(shards).build();
        let mut model = Model::new();
        let mut rng = Rng(42 + (cap * shards) as u64);
        let (mut inserts, mut deletes, mut gets) = (0u64, 0u64, 0u64);
        for step in 0..steps {
            // A working set of 40 hot keys, a scan over 2000 others.
            let k = if rng.below(3) == 0 { rng.below(40) } else { 40 + rng.below(2000) };
            let key = format!("k{k}");
            match rng.below(100) {
                0..45 => {
                    gets += 1;
                    let got = r(store.get(&key)).unwrap().map(|h| h.val);
                    if let Some(v) = got {
                        assert_eq!(Some(&v), model.get(&key), "{ctx}: {key} at step {step}");
                    }
                }
                45..93 => {
                    if !r(store.contains(&key)).unwrap() {
                        inserts += 1;
                    }
                    set_tame(&store, &mut model, &key, step);
                    // Re-set after an eviction (a ghost hit) or not, it reads back at once.
                    assert!(r(store.contains(&key)).unwrap(), "{ctx}: {key} not there right after its set");
                }
                93..97 => deletes += u64::from(r(store.delete(&key)).unwrap()),
                97..99 => deletes += r(store.invalidate(&format!("k{}*", rng.below(10)))).unwrap() as u64,
                _ => {
                    if rng.below(10) == 0 {
                        deletes += store.len() as u64;
                        r(store.clear()).unwrap();
                    }
                }
            }
            let stats = store.stats();
            let len = store.len() as u64;
            assert!(len <= cap as u64, "{ctx}: step {step}");
            assert_eq!(stats.deletes, deletes, "{ctx}: step {step}");
            assert_eq!(
                inserts,
                len + stats.evictions + stats.deletes,
                "{ctx}: every new entry is here, evicted or deleted (step {step})"
            );
            assert_eq!(stats.hits + stats.misses, gets, "{ctx}: step {step}");
        }
        let stats = store.stats();
        assert!(stats.evictions > steps / 20, "{ctx}: the test did churn: {stats:?}");
        if cap >= 50 {
            assert!(stats.hits > steps / 20, "{ctx}: the hot keys were kept: {stats:?}");
        }
        assert_consistent(&store, &model, cap, &[], &ctx);
    }
}

#[test]
fn s3fifo_a_key_evicted_and_set_again_is_readable_at_once_and_protected() {
    let store = MemoryStore::<u32>::new(S3FifoPolicy::new(10).unwrap());
    assert_eq!(store.shard_count(), 1);
    for i in 0..10 {
        r(store.set(&format!("w{i}"), i, SetOptions::new())).unwrap();
    }
    // A few one-off keys push "victim" through the small queue and out (into
    // the ghost, which remembers the last 9 evicted keys).
    r(store.set("victim", 1, SetOptions::new())).unwrap();
    for i in 0..3 {
        r(store.set(&format!("scan{i}"), i, SetOptions::new())).unwrap();
    }
    assert!(!r(store.contains("victim")).unwrap(), "evicted by the scan");
    // Back (a ghost hit): readable at once, with the new value.
    r(store.set("victim", 2, SetOptions::new())).unwrap();
    assert_eq!(r(store.get("victim")).unwrap(), Some(2));
    // A ghost hit goes to the main queue: a second scan of one-off keys
    // passes through the small queue without evicting it.
    for i in 0..5 {
        r(store.set(&format!("scan2-{i}"), i, SetOptions::new())).unwrap();
    }
    assert_eq!(r(store.get("victim")).unwrap(), Some(2), "ghost hits enter main and survive a short scan");
    assert!(store.len() <= 10);
}

#[test]
fn s3fifo_keys_len_and_invalidate_never_show_expired_entries() {
    for shards in [1usize, 4] {
        let clock = ManualClock::new();
        let store =
            MemoryStore::<u32>::builder(S3FifoPolicy::new(4096).unwrap()).shards(shards).clock(clock.clone()).build();
        for i in 0..1000u32 {
            let options = if i % 2 == 1 { SetOptions::new().ttl(Duration::from_secs(1)) } else { SetOptions::new() };
            r(store.set(&format!("k{i}"), i, options)).unwrap();
        }
        clock.advance(Duration::from_secs(1));
        let mut keys = r(store.keys(None)).unwrap();
        keys.sort();
        let mut want: Vec<String> = (0..1000).step_by(2).map(|i| format!("k{i}")).collect();
        want.sort();
        assert_eq!(keys, want, "{shards}: expiry at exactly the TTL");
        assert_eq!(store.stats().expirations, 500);
        let mut matching = r(store.keys(Some("k1*"))).unwrap();
        matching.sort();
        let mut want: Vec<String> = want.into_iter().filter(|k| k.starts_with("k1")).collect();
        want.sort();
        assert_eq!(matching, want, "{shards}");
        assert_eq!(store.len(), 500, "{shards}");
        assert_eq!(r(store.get("k1")).unwrap(), None);
        // Already reclaimed: counted once.
        assert_eq!(store.stats().expirations, 500, "{shards}");
        // invalidate counts live entries only.
        r(store.set("k1", 1, SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
        clock.advance(Duration::from_secs(5));
        assert_eq!(r(store.invalidate("k1*")).unwrap(), want.len(), "{shards}: the expired k1 is not counted");
        assert_eq!(store.stats().deletes, want.len() as u64, "{shards}");
        assert_eq!(store.stats().expirations, 501, "{shards}");
    }
}
