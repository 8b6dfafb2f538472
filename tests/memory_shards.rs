#![cfg(not(target_arch = "wasm32"))]
//! A sharded MemoryStore behaves like a single-shard one wherever the policy
//! does not have to choose a victim, keeps the capacity bound exactly, and
//! still rejects bad input without touching any shard.

use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy,
};
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "b", "user:1", "user:2", "user:10", "post:1", "x*y", "é", "k1", "k2", "k3", "k4"];
const PATTERNS: &[&str] = &["*", "user:*", "user:?", "[a-b]", "k[13]", "*1", "x\\*y"];

#[derive(Clone, Debug)]
enum Op {
    Set(usize, u32, Option<u64>),
    Get(usize),
    Delete(usize),
    Invalidate(usize),
    Keys(usize),
    Len,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS.len(), any::<u32>(), proptest::option::of(1u64..4)).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        4 => (0..KEYS.len()).prop_map(Op::Get),
        1 => (0..KEYS.len()).prop_map(Op::Delete),
        1 => (0..PATTERNS.len()).prop_map(Op::Invalidate),
        1 => (0..PATTERNS.len()).prop_map(Op::Keys),
        1 => Just(Op::Len),
        2 => (0u64..3).prop_map(Op::Advance),
    ]
}

fn store(shards: usize, clock: &ManualClock) -> MemoryStore<u32> {
    // Room for every key: no shard ever has to evict.
    MemoryStore::builder(LruPolicy::new(1_000).unwrap()).shards(shards).clock(clock.clone()).build()
}

fn answer(store: &MemoryStore<u32>, clock: &ManualClock, op: &Op) -> String {
    match op {
        Op::Set(k, v, ttl) => {
            let mut options = SetOptions::new();
            if let Some(t) = ttl {
                options = options.ttl(Duration::from_secs(*t));
            }
            format!("{:?}", store.set(KEYS[*k], *v, options).into_inner())
        }
        Op::Get(k) => format!("{:?}", store.get(KEYS[*k]).into_inner()),
        Op::Delete(k) => format!("{:?}", store.delete(KEYS[*k]).into_inner()),
        Op::Invalidate(p) => format!("{:?}", store.invalidate(PATTERNS[*p]).into_inner()),
        Op::Keys(p) => {
            let mut keys = store.keys(Some(PATTERNS[*p])).into_inner().unwrap();
            keys.sort();
            format!("{keys:?}")
        }
        Op::Len => format!("{}", store.len()),
        Op::Advance(n) => {
            clock.advance(Duration::from_secs(*n));
            String::new()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn sharded_agrees_with_single_shard(ops in proptest::collection::vec(op(), 1..80)) {
        let (c1, c8) = (ManualClock::new(), ManualClock::new());
        let (one, eight) = (store(1, &c1), store(8, &c8));
        prop_assert_eq!(eight.shard_count(), 8);
        for op in &ops {
            prop_assert_eq!(answer(&one, &c1, op), answer(&eight, &c8, op), "{:?}", op);
        }
        let (a, b) = (one.stats(), eight.stats());
        prop_assert_eq!((a.hits, a.misses, a.sets, a.deletes), (b.hits, b.misses, b.sets, b.deletes));
    }
}

#[test]
fn the_capacity_bound_is_exact_across_shards() {
    for policy_is_lru in [true, false] {
        let store: MemoryStore<u32> = if policy_is_lru {
            MemoryStore::builder(LruPolicy::new(10).unwrap()).shards(4).build()
        } else {
            let policy = TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(10).unwrap();
            MemoryStore::builder(policy).shards(4).build()
        };
        for i in 0..1_000u32 {
            store.set(&format!("key{i}"), i, SetOptions::new()).into_inner().unwrap();
            assert!(store.len() <= 10);
        }
        // Each shard fills its share (2 or 3 of 10) before evicting.
        assert_eq!(store.len(), 10);
        assert_eq!(store.stats().evictions, 990);
        assert_eq!(store.capacity(), Some(10));
    }
}

#[test]
fn shard_counts_are_powers_of_two_within_the_capacity() {
    let make = |max, shards| MemoryStore::<u8>::builder(LruPolicy::new(max).unwrap()).shards(shards).build();
    assert_eq!(make(100, 3).shard_count(), 4);
    assert_eq!(make(100, 0).shard_count(), 1);
    assert_eq!(make(5, 16).shard_count(), 4);
    assert_eq!(make(1, 16).shard_count(), 1);
    let unbounded = MemoryStore::<u8>::builder(TtlPolicy::new(Duration::from_secs(1)).unwrap()).shards(5).build();
    assert_eq!(unbounded.shard_count(), 8);
}

#[test]
fn absurd_shard_counts_are_clamped_not_wrapped() {
    // usize::MAX has no next power of two: it is clamped, never wrapped to 0 or a panic.
    let unbounded = || TtlPolicy::new(Duration::from_secs(1)).unwrap();
    let store = MemoryStore::<u8>::builder(unbounded()).shards(usize::MAX).build();
    assert_eq!(store.shard_count(), pepperpy_caching::stores::MAX_SHARDS);
    store.set("k", 1, SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.get("k").into_inner().unwrap(), Some(1));
    let bounded = MemoryStore::<u8>::builder(LruPolicy::new(3).unwrap()).shards(usize::MAX).build();
    assert_eq!(bounded.shard_count(), 2);
    assert_eq!(
        MemoryStore::<u8>::builder(LruPolicy::new(3).unwrap()).shards(usize::MAX / 2 + 2).build().shard_count(),
        2
    );
}

#[test]
fn s3fifo_shards_by_default_and_keeps_the_exact_bound() {
    for max in [1, 7, 1023, 5_000, 65_537] {
        let store = MemoryStore::<u32>::new(S3FifoPolicy::new(max).unwrap());
        assert!(store.shard_count() <= (max / 1024).max(1), "{max}: {} shards", store.shard_count());
        for i in 0..(2 * max as u32 + 10) {
            store.set(&format!("key{i}"), i, SetOptions::new()).into_inner().unwrap();
        }
        assert_eq!(store.len(), max, "every shard filled its share and no more");
    }
    // Small stores stay one shard, so the policy is exact for them.
    assert_eq!(MemoryStore::<u8>::new(S3FifoPolicy::new(1_000).unwrap()).shard_count(), 1);
    // LRU stays one exact list unless asked.
    assert_eq!(MemoryStore::<u8>::new(LruPolicy::new(1 << 20).unwrap()).shard_count(), 1);
}

#[test]
fn a_bad_pattern_changes_no_shard() {
    // Which keys each shard holds depends on the store's random hash seed (a
    // shard may get more than its share of the 50 and evict some), so the
    // test compares the store with itself before and after, whatever the seed.
    let store = MemoryStore::builder(LruPolicy::new(100).unwrap()).shards(8).build();
    for i in 0..50u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
    }
    let mut before = store.keys(None).into_inner().unwrap();
    before.sort();
    let stats = store.stats();
    assert!(before.len() > 8, "most of the 50 keys are there: {}", before.len());
    let too_long = "k".repeat(pepperpy_caching::MAX_PATTERN_LEN + 1);
    for bad in ["", too_long.as_str()] {
        let err = store.invalidate(bad).into_inner().unwrap_err();
        assert!(matches!(err, CacheError::Pattern { .. }), "{bad:?}: {err:?}");
    }
    let mut after = store.keys(None).into_inner().unwrap();
    after.sort();
    assert_eq!(after, before, "no shard changed");
    assert_eq!(store.stats().deletes, stats.deletes);
    assert_eq!(store.stats().deletes, 0);
}

#[test]
fn threads_share_a_sharded_store() {
    let store = Arc::new(MemoryStore::builder(LruPolicy::new(64).unwrap()).shards(4).build());
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                for i in 0..10_000u32 {
                    let key = format!("k{}", i % 100);
                    store.set(&key, t * 1_000_000 + i, SetOptions::new()).into_inner().unwrap();
                    if let Some(v) = store.get(&key).into_inner().unwrap() {
                        // Whoever wrote it, it was written for this key.
                        assert_eq!(v % 1_000_000 % 100, i % 100);
                    }
                }
            });
        }
    });
    assert!(store.len() <= 64);
}
