#![cfg(not(target_arch = "wasm32"))]
//! A `set` of a key the store holds, with plain options, takes a short path
//! (`Engine::update_plain`) in a store where nothing expires; every other
//! `set` takes the full one. These tests hold the short path to what the
//! full one does: the value, metadata, tags, expiry, order, counters, the
//! listener, a refresh in flight, and a replaced value whose `Drop` calls
//! back into the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pepperpy_caching::{
    CacheStore, LruPolicy, ManualClock, MemoryStore, Metadata, Policy, RemovalReason, S3FifoPolicy, SetOptions,
    TtlPolicy,
};

fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("lru", LruPolicy::new(4).unwrap().into()),
        ("s3fifo", S3FifoPolicy::new(4).unwrap().into()),
        ("s3fifo classic", S3FifoPolicy::new(4).unwrap().adaptive(false).into()),
        ("ttl max_size", TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(4).unwrap().into()),
        ("lru default ttl", LruPolicy::new(4).unwrap().with_default_ttl(Duration::from_secs(60)).unwrap().into()),
    ]
}

fn plain() -> SetOptions {
    SetOptions::new()
}

fn metadata() -> Metadata {
    let mut m = Metadata::new();
    m.insert("owner".into(), "a".into());
    m
}

#[test]
fn a_plain_update_replaces_the_value_and_drops_metadata_and_tags() {
    for (name, policy) in policies() {
        let store: MemoryStore<u64> = MemoryStore::builder(policy).clock(ManualClock::new()).build();
        store.set("k", 1, plain()).into_inner().unwrap();
        store.set("k", 2, plain()).into_inner().unwrap();
        assert_eq!(store.get("k").into_inner().unwrap(), Some(2), "{name}");
        store.set("m", 1, SetOptions::new().metadata(metadata())).into_inner().unwrap();
        store.set("m", 2, plain()).into_inner().unwrap();
        let meta = store.get_metadata("m").into_inner().unwrap().expect("held");
        assert!(!meta.contains_key("owner"), "{name}: a plain set stores no metadata: {meta:?}");
        store.set("t", 1, SetOptions::new().tags(["red"])).into_inner().unwrap();
        store.set("t", 2, plain()).into_inner().unwrap();
        assert_eq!(store.get_tags("t").into_inner().unwrap(), Some(vec![]), "{name}");
        assert_eq!(store.invalidate_tags(&["red"]).into_inner().unwrap(), 0, "{name}");
        assert_eq!(store.get("t").into_inner().unwrap(), Some(2), "{name}");
        let stats = store.stats();
        assert_eq!((stats.sets, store.len()), (6, 3), "{name}");
    }
}

#[test]
fn a_plain_update_clears_an_own_ttl_and_keeps_a_default_one() {
    for (name, policy) in policies() {
        let clock = ManualClock::new();
        let default_ttl = policy.default_ttl();
        let store: MemoryStore<u64> = MemoryStore::builder(policy).clock(clock.clone()).build();
        store.set("k", 1, SetOptions::new().ttl(Duration::from_secs(5))).into_inner().unwrap();
        store.set("k", 2, plain()).into_inner().unwrap();
        // Another key, never expiring unless by default, held the whole time.
        store.set("other", 1, plain()).into_inner().unwrap();
        store.set("other", 2, plain()).into_inner().unwrap();
        clock.advance(Duration::from_secs(10));
        assert_eq!(store.get("k").into_inner().unwrap(), Some(2), "{name}: the own TTL went with the plain set");
        clock.advance(Duration::from_secs(60));
        let expected = if default_ttl.is_some() { None } else { Some(2) };
        assert_eq!(store.get("k").into_inner().unwrap(), expected, "{name}");
        assert_eq!(store.get("other").into_inner().unwrap(), expected, "{name}");
    }
}

#[test]
fn a_plain_update_counts_as_a_use_for_the_policy() {
    // LRU: the updated key becomes the most recent, so another goes first.
    let store: MemoryStore<u64> = MemoryStore::new(LruPolicy::new(2).unwrap());
    store.set("a", 1, plain()).into_inner().unwrap();
    store.set("b", 1, plain()).into_inner().unwrap();
    store.set("a", 2, plain()).into_inner().unwrap();
    store.set("c", 1, plain()).into_inner().unwrap();
    assert_eq!(store.get("a").into_inner().unwrap(), Some(2));
    assert_eq!(store.get("b").into_inner().unwrap(), None);
    // Every policy: the short path leaves the store as the full one does.
    // The full path is forced by metadata (an empty map): the same sequence
    // of sets and gets on both stores keeps the same keys. (Not the adaptive
    // S3-FIFO: each store hashes with its own seed, which its sketch and
    // shadows see, so two such stores part on any path.)
    for (name, policy) in policies().into_iter().filter(|(name, _)| *name != "s3fifo") {
        let short: MemoryStore<u64> = MemoryStore::builder(policy.clone()).clock(ManualClock::new()).shards(1).build();
        let full: MemoryStore<u64> = MemoryStore::builder(policy).clock(ManualClock::new()).shards(1).build();
        let mut x = 7u64;
        for i in 0..2_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = format!("k{}", (x >> 33) % 12);
            if (x >> 20).is_multiple_of(3) {
                assert_eq!(short.get(&key).into_inner().unwrap(), full.get(&key).into_inner().unwrap(), "{name} {i}");
            } else {
                short.set(&key, i, plain()).into_inner().unwrap();
                full.set(&key, i, SetOptions::new().metadata(Metadata::new())).into_inner().unwrap();
            }
        }
        let keys = |s: &MemoryStore<u64>| {
            let mut k = s.keys(None).into_inner().unwrap();
            k.sort();
            k
        };
        assert_eq!(keys(&short), keys(&full), "{name}");
        let (a, b) = (short.stats(), full.stats());
        assert_eq!((a.hits, a.misses, a.sets, a.evictions), (b.hits, b.misses, b.sets, b.evictions), "{name}");
    }
}

#[test]
fn the_listener_hears_each_replaced_value_with_its_key() {
    for (name, policy) in policies() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let store: MemoryStore<u64> = MemoryStore::builder(policy)
            .on_remove(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
            .build();
        store.set("key", 1, plain()).into_inner().unwrap();
        store.set("key", 2, plain()).into_inner().unwrap();
        store.set("key", 3, plain()).into_inner().unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [("key".to_string(), 1, RemovalReason::Replaced), ("key".to_string(), 2, RemovalReason::Replaced)],
            "{name}"
        );
    }
}

/// A value whose `Drop` reads the store it was in: the replaced value is
/// dropped after the lock, so the read succeeds.
struct ReadsOnDrop {
    n: u64,
    store: Arc<Mutex<Option<Arc<MemoryStore<ReadsOnDrop>>>>>,
    drops: Arc<AtomicUsize>,
}

impl Clone for ReadsOnDrop {
    fn clone(&self) -> Self {
        ReadsOnDrop { n: self.n, store: Arc::clone(&self.store), drops: Arc::clone(&self.drops) }
    }
}

impl Drop for ReadsOnDrop {
    fn drop(&mut self) {
        let store = self.store.lock().unwrap().clone();
        if let Some(store) = store {
            // Only the replaced value calls in: a clone handed out by `get`
            // is dropped with `n` 0.
            if self.n != 0 {
                let seen = store.get("k").into_inner().expect("not under the lock").map(|mut v| {
                    let n = v.n;
                    v.n = 0;
                    n
                });
                assert_eq!(seen, Some(self.n + 1), "the new value is in place when the old one drops");
                self.drops.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn a_replaced_value_is_dropped_after_the_lock() {
    for (name, policy) in policies() {
        let slot = Arc::new(Mutex::new(None));
        let drops = Arc::new(AtomicUsize::new(0));
        let store = Arc::new(MemoryStore::builder(policy).build());
        *slot.lock().unwrap() = Some(Arc::clone(&store));
        let value = |n| ReadsOnDrop { n, store: Arc::clone(&slot), drops: Arc::clone(&drops) };
        store.set("k", value(1), plain()).into_inner().unwrap();
        store.set("k", value(2), plain()).into_inner().unwrap();
        store.set("k", value(3), plain()).into_inner().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2, "{name}");
        // Break the cycle (the store holds values that hold the store).
        let mut held = store.get("k").into_inner().unwrap().unwrap();
        held.n = 0;
        slot.lock().unwrap().take();
        store.clear().into_inner().unwrap();
    }
}

#[test]
fn a_bad_key_or_option_on_a_held_key_changes_nothing() {
    for (name, policy) in policies() {
        let store: MemoryStore<u64> = MemoryStore::new(policy);
        store.set("k", 1, plain()).into_inner().unwrap();
        let before = store.stats();
        assert!(store.set("k", 2, SetOptions::new().ttl(Duration::ZERO)).into_inner().is_err(), "{name}");
        assert!(store.set("k\u{FFFF}", 2, plain()).into_inner().is_err(), "{name}");
        assert!(store.set("", 2, plain()).into_inner().is_err(), "{name}");
        assert_eq!(store.get("k").into_inner().unwrap(), Some(1), "{name}");
        let after = store.stats();
        assert_eq!((after.sets, after.misses, store.len()), (before.sets, before.misses, 1), "{name}");
    }
}
