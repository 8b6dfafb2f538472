#![cfg(not(target_arch = "wasm32"))]
//! A hostile user against `MemoryStore`, at the limits: absurd shard counts
//! and capacities, durations past the end of time, keys of exactly 8 KiB,
//! every call that must fail (and must change nothing), load time summed over
//! shards. Also: tests/memory_hostile.rs and tests/memory_threads.rs.
//!
//! Every test states what the store promises and checks it after the attack:
//! each entry it lists reads back with the value last written for it, `len()`,
//! `keys()` and the capacity agree, the counters add up, and later calls work.
//! Each test here first exposed a bug or stood guard against one; all pass now.
//! The attackers and the consistency check are in tests/support/hostile.rs.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pepperpy_caching::stores::MAX_SHARDS;
use pepperpy_caching::{
    CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, MAX_PATTERN_LEN, ManualClock, MemoryStore, Metadata,
    S3FifoPolicy, SetOptions, TtlPolicy,
};
use support::hostile::*;
use support::{meta, nested};

// ---------------------------------------------------------------------------
// Absurd shard counts, exact capacity
// ---------------------------------------------------------------------------

/// Fills `store` with far more distinct keys than it holds; every shard then
/// holds exactly its share, so `len()` is the sum of the shard capacities.
fn fill_and_check_capacity(store: &MemoryStore<u32>, cap: usize, ctx: &str) {
    // Enough keys that every shard, however many, sees far more than its share.
    let n = (4 * cap).max(64 * store.shard_count()) + 64;
    for i in 0..n {
        r(store.set(&format!("key{i}"), i as u32, SetOptions::new())).unwrap();
        if i % 4099 == 0 {
            assert!(store.len() <= cap, "{ctx}: over capacity at {i}");
        }
    }
    assert_eq!(store.len(), cap, "{ctx}: the shard capacities must add up to max_size exactly");
    let stats = store.stats();
    assert_eq!(stats.evictions, (n - cap) as u64, "{ctx}");
    assert_eq!(stats.sets, n as u64, "{ctx}");
    // The last key set is always there.
    assert_eq!(r(store.get(&format!("key{}", n - 1))).unwrap(), Some((n - 1) as u32), "{ctx}");
}

fn assert_sane_shard_count(store: &MemoryStore<u32>, cap: Option<usize>, ctx: &str) {
    let count = store.shard_count();
    assert!(count.is_power_of_two(), "{ctx}: {count} shards");
    assert!(count <= MAX_SHARDS, "{ctx}: {count} shards");
    if let Some(cap) = cap {
        assert!(count <= cap, "{ctx}: {count} shards for {cap} entries");
    }
}

#[test]
fn absurd_shard_counts_neither_panic_nor_wrap_and_the_bound_stays_exact() {
    for cap in [1usize, 2, 3, 7, 1023, 1025] {
        for shards in [0usize, 1, 3, usize::MAX / 2, usize::MAX / 2 + 2, usize::MAX - 1, usize::MAX] {
            let ctx = format!("cap {cap}, shards({shards})");
            let stores: Vec<(&str, MemoryStore<u32>)> = vec![
                ("s3fifo", MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).shards(shards).build()),
                ("lru", MemoryStore::builder(LruPolicy::new(cap).unwrap()).shards(shards).build()),
                (
                    "ttl",
                    MemoryStore::builder(TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(cap).unwrap())
                        .shards(shards)
                        .build(),
                ),
            ];
            for (name, store) in stores {
                let ctx = format!("{name} {ctx}");
                assert_sane_shard_count(&store, Some(cap), &ctx);
                assert_eq!(store.capacity(), Some(cap), "{ctx}");
                fill_and_check_capacity(&store, cap, &ctx);
            }
        }
    }
    // Unbounded: any count is clamped to MAX_SHARDS and works.
    for shards in [0usize, usize::MAX] {
        let store =
            MemoryStore::<u32>::builder(TtlPolicy::new(Duration::from_secs(60)).unwrap()).shards(shards).build();
        assert_sane_shard_count(&store, None, "unbounded");
        for i in 0..5000u32 {
            r(store.set(&format!("k{i}"), i, SetOptions::new())).unwrap();
        }
        assert_eq!(store.len(), 5000);
        assert_eq!(r(store.get("k4321")).unwrap(), Some(4321));
    }
}

#[test]
fn s3fifo_default_sharding_keeps_the_bound_exact_for_odd_sizes() {
    for cap in [1usize, 2, 3, 7, 1023, 1025, 2049, 65537] {
        let store = MemoryStore::<u32>::new(S3FifoPolicy::new(cap).unwrap());
        let ctx = format!("S3-FIFO default sharding, cap {cap}, {} shards", store.shard_count());
        assert_sane_shard_count(&store, Some(cap), &ctx);
        fill_and_check_capacity(&store, cap, &ctx);
    }
    // And with as many shards as allowed on an odd size.
    let store = MemoryStore::<u32>::builder(S3FifoPolicy::new(65537).unwrap()).shards(usize::MAX).build();
    assert_eq!(store.shard_count(), MAX_SHARDS);
    fill_and_check_capacity(&store, 65537, "S3-FIFO, 65537 over 1024 shards");
}

#[test]
fn the_largest_capacities_do_not_overflow() {
    for cap in [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1] {
        let stores: Vec<MemoryStore<u32>> = vec![
            MemoryStore::new(S3FifoPolicy::new(cap).unwrap()),
            MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).shards(usize::MAX).build(),
            MemoryStore::new(LruPolicy::new(cap).unwrap()),
            MemoryStore::builder(LruPolicy::new(cap).unwrap()).shards(7).build(),
        ];
        for store in stores {
            assert_eq!(store.capacity(), Some(cap));
            for i in 0..300u32 {
                r(store.set(&format!("k{i}"), i, SetOptions::new())).unwrap();
            }
            assert_eq!(store.len(), 300);
            assert_eq!(store.stats().evictions, 0);
            assert_eq!(r(store.get("k7")).unwrap(), Some(7));
        }
    }
}

// ---------------------------------------------------------------------------
// The end of time
// ---------------------------------------------------------------------------

#[test]
fn advancing_past_the_end_of_time_saturates_and_never_revives_an_entry() {
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<u32>(kind, ROOM, &clock);
        r(store.set("short", 1, SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
        r(store.set("max", 2, SetOptions::new().ttl(Duration::MAX))).unwrap();
        clock.advance(Duration::MAX);
        // Nothing touched the store in between: a clock that wrapped would be
        // back at 1.5 s and bring "max" (and, at 0.5 s, "short") back.
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX), "{ctx}: saturates");
        assert_eq!(r(store.get("short")).unwrap(), None, "{ctx}");
        assert_eq!(r(store.get("max")).unwrap(), None, "{ctx}: a TTL of Duration::MAX ends at the end of time");
        for _ in 0..5 {
            clock.advance(Duration::MAX);
        }
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX), "{ctx}");
        assert_eq!(store.len(), 0, "{ctx}");
        assert_eq!(store.stats().expirations, 2, "{ctx}");
    }
}

#[test]
fn huge_ttls_saturate_instead_of_wrapping() {
    let clock = ManualClock::new();
    let year = Duration::from_secs(365 * 24 * 3600);
    let stores: Vec<(&str, MemoryStore<u32>)> = vec![
        (
            "lru",
            MemoryStore::builder(LruPolicy::new(8).unwrap().with_default_ttl(Duration::MAX).unwrap())
                .clock(clock.clone())
                .build(),
        ),
        (
            "s3fifo",
            MemoryStore::builder(S3FifoPolicy::new(8).unwrap().with_default_ttl(Duration::MAX).unwrap())
                .clock(clock.clone())
                .build(),
        ),
        ("ttl", MemoryStore::builder(TtlPolicy::new(Duration::MAX).unwrap()).clock(clock.clone()).build()),
    ];
    clock.advance(100 * year);
    for (name, store) in &stores {
        // At t = 100 years, a TTL of Duration::MAX (or 1000 years) would wrap if added naively.
        r(store.set("default", 1, SetOptions::new())).unwrap();
        r(store.set("own", 2, SetOptions::new().ttl(Duration::MAX))).unwrap();
        r(store.set("1000y", 3, SetOptions::new().ttl(1000 * year))).unwrap();
        assert_eq!(r(store.get("default")).unwrap(), Some(1), "{name}");
        assert_eq!(r(store.get("own")).unwrap(), Some(2), "{name}");
        assert_eq!(r(store.get("1000y")).unwrap(), Some(3), "{name}");
    }
    clock.advance(400 * year);
    for (name, store) in &stores {
        assert_eq!(store.len(), 3, "{name}: 500 years in, nothing has expired");
    }
    clock.advance(1000 * year);
    for (name, store) in &stores {
        assert_eq!(store.len(), 0, "{name}: past the end of time, every TTL is over");
        assert_eq!(store.stats().expirations, 3, "{name}");
    }
    // Nonsense TTLs are errors, not panics.
    assert!(matches!(TtlPolicy::from_secs_f64(f64::MAX), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::from_secs_f64(1e300), Err(CacheError::Policy(_))));
}

#[test]
fn an_auto_advancing_clock_at_its_limit_breaks_nothing() {
    let clock = ManualClock::new();
    clock.set_auto_advance(Duration::MAX);
    for kind in KINDS {
        let store = build::<u32>(kind, 16, &clock);
        for i in 0..100u32 {
            r(store.set(&format!("k{}", i % 20), i, SetOptions::new())).unwrap();
            let _ = r(store.get(&format!("k{}", i % 23))).unwrap();
        }
        let v = poll_once(store.get_or_set("load", || async { 5 }, SetOptions::new()));
        assert_eq!(v.expect("ready").unwrap(), 5);
        let stats = store.stats();
        assert_eq!(stats.hits + stats.misses, 101, "{kind:?}");
        assert!(stats.avg_get_latency <= Duration::from_nanos(u64::MAX), "{kind:?}");
        assert!(store.len() <= 16, "{kind:?}");
    }
    assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
}

#[test]
fn an_entry_set_at_the_end_of_time_is_readable() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<u32>(kind, ROOM, &clock);
        clock.advance(Duration::MAX);
        r(store.set("k", 1, SetOptions::new().ttl(Duration::from_secs(3600)))).unwrap();
        assert_eq!(r(store.get("k")).unwrap(), Some(1), "{kind:?}: its hour has not passed");
    }
}

#[test]
fn at_the_end_of_time_entries_without_a_ttl_are_not_expired() {
    for kind in [Kind::S3Fifo, Kind::S3FifoSharded, Kind::Lru, Kind::LruNoRefresh] {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<u32>(kind, 256, &clock);
        // Entries with a TTL that nothing has reclaimed yet, in every shard
        // (a set reclaims at most 8).
        for i in 0..64 {
            r(store.set(&format!("ttl{i}"), i, SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
        }
        r(store.set("forever", 1, SetOptions::new())).unwrap();
        r(store.set("f2", 2, SetOptions::new())).unwrap();
        r(store.set("f3", 3, SetOptions::new())).unwrap();
        clock.advance(Duration::MAX);
        assert_eq!(r(store.get("forever")).unwrap(), Some(1), "{ctx}: get is right");
        r(store.set("f3", 4, SetOptions::new())).unwrap();
        assert_eq!(r(store.invalidate("f2")).unwrap(), 1, "{ctx}: invalidate found a live entry");
        assert!(r(store.delete("forever")).unwrap(), "{ctx}: delete found a live entry");
        assert_eq!(store.len(), 1, "{ctx}: f3 is left");
        assert_eq!(r(store.get("f3")).unwrap(), Some(4), "{ctx}");
        let stats = store.stats();
        assert_eq!(stats.expirations, 64, "{ctx}: only the 64 entries with a TTL expired");
        assert_eq!(stats.deletes, 2, "{ctx}");
    }
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Keys at and over the limit
// ---------------------------------------------------------------------------

#[test]
fn keys_of_exactly_8_kib_work_everywhere() {
    let long = "k".repeat(MAX_KEY_LEN);
    let wide = "é".repeat(MAX_KEY_LEN / 2); // 8192 bytes, 4096 chars
    assert_eq!(wide.len(), MAX_KEY_LEN);
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<u32>(kind, ROOM, &clock);
        for (i, key) in [&long, &wide].into_iter().enumerate() {
            r(store.set(key, i as u32, SetOptions::new().metadata(meta(serde_json::json!({"i": i}))))).unwrap();
            assert_eq!(r(store.get(key)).unwrap(), Some(i as u32), "{ctx}");
            assert!(r(store.contains(key)).unwrap(), "{ctx}");
            assert!(r(store.update_metadata(key, meta(serde_json::json!({"j": 1})))).unwrap(), "{ctx}");
            assert_eq!(r(store.get_metadata(key)).unwrap(), Some(meta(serde_json::json!({"i": i, "j": 1}))), "{ctx}");
            let v = poll_once(store.get_or_set(key, || async { unreachable!("cached") }, SetOptions::new()));
            assert_eq!(v.unwrap().unwrap(), i as u32, "{ctx}");
        }
        let mut keys = r(store.keys(Some("k*"))).unwrap();
        assert_eq!(keys, vec![long.clone()], "{ctx}");
        keys = r(store.keys(Some("é*"))).unwrap();
        assert_eq!(keys, vec![wide.clone()], "{ctx}");
        assert_eq!(r(store.invalidate("*k")).unwrap(), 1, "{ctx}");
        assert!(r(store.delete(&wide)).unwrap(), "{ctx}");
        assert_eq!(store.len(), 0, "{ctx}");
        let v = poll_once(store.get_or_set(&long, || async { 9 }, SetOptions::new()));
        assert_eq!(v.unwrap().unwrap(), 9, "{ctx}");
    }
}

/// Everything a test can see of a store, read without counting or reordering
/// anything: the sorted keys with their values and metadata.
fn snapshot(store: &MemoryStore<u32>) -> BTreeMap<String, (Option<Metadata>, bool)> {
    r(store.keys(None))
        .unwrap()
        .into_iter()
        .map(|k| {
            let m = r(store.get_metadata(&k)).unwrap();
            let c = r(store.contains(&k)).unwrap();
            (k, (m, c))
        })
        .collect()
}

/// The values, read after the stats were checked.
fn values(store: &MemoryStore<u32>) -> BTreeMap<String, Option<u32>> {
    r(store.keys(None))
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = r(store.get(&k)).unwrap();
            (k, v)
        })
        .collect()
}

type Bad<'a> = (&'a str, Box<dyn Fn(&MemoryStore<u32>, &AtomicBool) -> CacheError + 'a>);

fn bad_calls<'a>(over: &'a str, deep: &'a Metadata) -> Vec<Bad<'a>> {
    let loader = |ran: &AtomicBool| {
        ran.store(true, Ordering::SeqCst);
        async { 1u32 }
    };
    let gos = move |s: &MemoryStore<u32>, ran: &AtomicBool, key: &str, options: SetOptions| -> CacheError {
        poll_once(s.get_or_set(key, || loader(ran), options)).expect("fails at once").unwrap_err()
    };
    let long_pattern = "*".repeat(MAX_PATTERN_LEN + 1);
    vec![
        ("get 8 KiB + 1", Box::new(move |s, _| r(s.get(over)).unwrap_err())),
        ("get empty", Box::new(|s, _| r(s.get("")).unwrap_err())),
        ("set 8 KiB + 1", Box::new(move |s, _| r(s.set(over, 1, SetOptions::new())).unwrap_err())),
        ("set empty", Box::new(|s, _| r(s.set("", 1, SetOptions::new())).unwrap_err())),
        (
            "set zero ttl, new key",
            Box::new(|s, _| r(s.set("new", 1, SetOptions::new().ttl(Duration::ZERO))).unwrap_err()),
        ),
        (
            "set zero ttl, live key",
            Box::new(|s, _| r(s.set("live", 1, SetOptions::new().ttl(Duration::ZERO))).unwrap_err()),
        ),
        (
            "set zero ttl, expired key",
            Box::new(|s, _| r(s.set("gone", 1, SetOptions::new().ttl(Duration::ZERO))).unwrap_err()),
        ),
        (
            "set too deep, live key",
            Box::new(move |s, _| r(s.set("live", 1, SetOptions::new().metadata(deep.clone()))).unwrap_err()),
        ),
        (
            "set too deep, new key",
            Box::new(move |s, _| r(s.set("new", 1, SetOptions::new().metadata(deep.clone()))).unwrap_err()),
        ),
        ("delete 8 KiB + 1", Box::new(move |s, _| r(s.delete(over)).unwrap_err())),
        ("delete empty", Box::new(|s, _| r(s.delete("")).unwrap_err())),
        ("contains 8 KiB + 1", Box::new(move |s, _| r(s.contains(over)).unwrap_err())),
        ("get_metadata 8 KiB + 1", Box::new(move |s, _| r(s.get_metadata(over)).unwrap_err())),
        ("update_metadata 8 KiB + 1", Box::new(move |s, _| r(s.update_metadata(over, Metadata::new())).unwrap_err())),
        ("update_metadata empty", Box::new(|s, _| r(s.update_metadata("", Metadata::new())).unwrap_err())),
        ("invalidate empty", Box::new(|s, _| r(s.invalidate("")).unwrap_err())),
        ("invalidate 1 KiB + 1", Box::new(move |s, _| r(s.invalidate(&long_pattern)).unwrap_err())),
        ("keys empty pattern", Box::new(|s, _| r(s.keys(Some(""))).unwrap_err())),
        ("get_or_set 8 KiB + 1", Box::new(move |s, ran| gos(s, ran, over, SetOptions::new()))),
        ("get_or_set empty", Box::new(move |s, ran| gos(s, ran, "", SetOptions::new()))),
        (
            "get_or_set zero ttl, live key",
            Box::new(move |s, ran| gos(s, ran, "live", SetOptions::new().ttl(Duration::ZERO))),
        ),
        (
            "get_or_set zero ttl, expired key",
            Box::new(move |s, ran| gos(s, ran, "gone", SetOptions::new().ttl(Duration::ZERO))),
        ),
        ("get_or_set too deep", Box::new(move |s, ran| gos(s, ran, "new", SetOptions::new().metadata(deep.clone())))),
    ]
}

#[test]
fn every_failing_call_changes_nothing_no_entry_no_counter_no_reclaim() {
    let over = "k".repeat(MAX_KEY_LEN + 1);
    let over_wide = format!("{}😀", "é".repeat(MAX_KEY_LEN / 2 - 1)); // 8194 bytes, fewer chars than 8192
    assert!(over_wide.len() > MAX_KEY_LEN && over_wide.chars().count() < MAX_KEY_LEN);
    let deep = meta(serde_json::json!({ "a": nested(100) }));
    for over in [&over, &over_wide] {
        for kind in KINDS {
            for (what, call) in bad_calls(over, &deep) {
                let ctx = format!("{kind:?}: {what}");
                let clock = ManualClock::new();
                let store = build::<u32>(kind, ROOM, &clock);
                r(store.set("live", 1, SetOptions::new().metadata(meta(serde_json::json!({"m": 1}))))).unwrap();
                r(store.set("other", 2, SetOptions::new().ttl(Duration::from_secs(100)))).unwrap();
                r(store.set("gone", 3, SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
                clock.advance(Duration::from_secs(2));
                // "gone" has expired but is still held: a failing call must not reclaim it.
                store.reset_stats();
                let ran = AtomicBool::new(false);
                let err = call(&store, &ran);
                assert!(!ran.load(Ordering::SeqCst), "{ctx}: the loader ran");
                let expected_kind = match what {
                    w if w.contains("8 KiB")
                        || w.contains("empty") && !w.contains("pattern") && !w.starts_with("invalidate") =>
                    {
                        "key"
                    }
                    w if w.contains("zero ttl") => "policy",
                    w if w.contains("too deep") => "serialization",
                    _ => "pattern",
                };
                let matches_kind = match expected_kind {
                    "key" => matches!(err, CacheError::Key { .. }),
                    "policy" => matches!(err, CacheError::Policy(_)),
                    "serialization" => matches!(err, CacheError::Serialization(_)),
                    _ => matches!(err, CacheError::Pattern { .. }),
                };
                assert!(matches_kind, "{ctx}: expected a {expected_kind} error, got {err:?}");
                assert_eq!(store.stats(), CacheStats::default(), "{ctx}: a rejected call counted something");
                // The expired entry was still there to reclaim.
                assert_eq!(store.len(), 2, "{ctx}");
                assert_eq!(store.stats().expirations, 1, "{ctx}: the failing call reclaimed the expired entry");
                let snap = snapshot(&store);
                assert_eq!(snap.len(), 2, "{ctx}");
                assert_eq!(snap["live"].0, Some(meta(serde_json::json!({"m": 1}))), "{ctx}: metadata changed");
                assert_eq!(snap["other"].0, Some(Metadata::new()), "{ctx}");
                let vals = values(&store);
                assert_eq!(vals["live"], Some(1), "{ctx}");
                assert_eq!(vals["other"], Some(2), "{ctx}");
                // The TTL of "other" is untouched: alive at 99 s, gone at 100 s after its set.
                clock.advance(Duration::from_secs(97));
                assert!(r(store.contains("other")).unwrap(), "{ctx}");
                clock.advance(Duration::from_secs(1));
                assert!(!r(store.contains("other")).unwrap(), "{ctx}");
                assert!(r(store.contains("live")).unwrap(), "{ctx}: live never expires");
            }
        }
    }
}

#[test]
fn update_metadata_rejects_metadata_that_set_rejects() {
    let deep = meta(serde_json::json!({ "a": nested(100) }));
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<u32>(kind, ROOM, &clock);
        let err = r(store.set("k", 1, SetOptions::new().metadata(deep.clone()))).unwrap_err();
        assert!(matches!(err, CacheError::Serialization(_)), "{kind:?}: {err:?}");
        r(store.set("k", 1, SetOptions::new().metadata(meta(serde_json::json!({"m": 1}))))).unwrap();
        let got = r(store.update_metadata("k", deep.clone()));
        assert!(matches!(got, Err(CacheError::Serialization(_))), "{kind:?}: update_metadata gave {got:?}");
        assert_eq!(r(store.get_metadata("k")).unwrap(), Some(meta(serde_json::json!({"m": 1}))), "{kind:?}");
    }
}

// ---------------------------------------------------------------------------
// Load time summed over shards
// ---------------------------------------------------------------------------

#[test]
fn total_load_time_saturates_across_shards() {
    let clock = ManualClock::new();
    let store = MemoryStore::<u32>::builder(LruPolicy::new(1000).unwrap()).shards(64).clock(clock.clone()).build();
    let open = AtomicBool::new(false);
    let keys: Vec<String> = (0..8).map(|i| format!("load{i}")).collect();
    let mut loads: Vec<Pin<Box<dyn Future<Output = pepperpy_caching::Result<u32>> + '_>>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let open = &open;
            Box::pin(store.get_or_set(
                key,
                move || async move {
                    Gate(open).await;
                    i as u32
                },
                SetOptions::new(),
            )) as Pin<Box<dyn Future<Output = _> + '_>>
        })
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    // Every load starts at t = 0 ...
    for load in &mut loads {
        assert!(load.as_mut().poll(&mut cx).is_pending());
    }
    // ... and ends at the end of time: each took u64::MAX ns, in (almost surely) several shards.
    clock.advance(Duration::MAX);
    open.store(true, Ordering::SeqCst);
    for (i, load) in loads.iter_mut().enumerate() {
        match load.as_mut().poll(&mut cx) {
            Poll::Ready(v) => assert_eq!(v.unwrap(), i as u32),
            Poll::Pending => panic!("load {i} still pending"),
        }
    }
    let stats = store.stats();
    assert_eq!(stats.loads, 8);
    assert_eq!(stats.total_load_time, Duration::from_nanos(u64::MAX), "saturates, as each shard does");
}
