#![cfg(not(target_arch = "wasm32"))]
//! `MemoryStore::get` looks a key up before it checks it for U+FFFF (a key
//! held passed every rule when it was set) and checks it on a miss, before
//! the miss is counted. These tests hold it to "a bad key is a
//! `CacheError::Key` and changes nothing" at every point of the read
//! counters' cycle (every 32nd `get` is timed), on every policy and shard
//! count, with keys held and near the refused ones.

use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, Policy, RESERVED_KEY_CHAR, S3FifoPolicy, SetOptions,
    TtlPolicy,
};

fn stores() -> Vec<(&'static str, MemoryStore<u64>)> {
    let build =
        |policy: Policy, shards: usize| MemoryStore::builder(policy).clock(ManualClock::new()).shards(shards).build();
    vec![
        ("s3fifo", build(S3FifoPolicy::new(4_096).unwrap().into(), 1)),
        ("s3fifo 8 shards", build(S3FifoPolicy::new(4_096).unwrap().into(), 8)),
        ("s3fifo classic", build(S3FifoPolicy::new(4_096).unwrap().adaptive(false).into(), 1)),
        ("lru", build(LruPolicy::new(4_096).unwrap().into(), 1)),
        ("ttl", build(TtlPolicy::new(Duration::from_secs(60)).unwrap().into(), 1)),
    ]
}

/// Keys that fail the rules, each beside a held key it nearly matches.
fn refused() -> Vec<String> {
    let r = RESERVED_KEY_CHAR;
    vec![
        format!("{r}"),
        format!("user:1{r}"),
        format!("{r}user:1"),
        format!("user{r}:1"),
        format!("a-key-of-twenty-bytes{r}"),
        String::new(),
        "k".repeat(pepperpy_caching::MAX_KEY_LEN + 1),
    ]
}

#[test]
fn a_refused_get_changes_no_counter_at_any_point_of_the_sample_cycle() {
    for (name, store) in stores() {
        for key in ["user:1", "user", ":1", "a-key-of-twenty-bytes", "\u{FFFE}"] {
            store.set(key, 1, SetOptions::new()).into_inner().unwrap();
        }
        // 64 rounds: each puts the refused gets at another point of the
        // 32-get sample cycle, after a hit or after a miss.
        for round in 0..64 {
            let probe = if round % 2 == 0 { "user:1" } else { "absent" };
            store.get(probe).into_inner().unwrap();
            for bad in refused() {
                let before = store.stats();
                let err = store.get(&bad).into_inner().unwrap_err();
                assert!(matches!(err, CacheError::Key { .. }), "{name} {bad:?}: {err}");
                assert_eq!(store.stats(), before, "{name} round {round}: a refused get changed a counter");
            }
        }
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses), (32, 32), "{name}");
        // The neighbours of the refused keys are still held, and read as keys.
        assert_eq!(store.get("\u{FFFE}").into_inner().unwrap(), Some(1), "{name}");
        assert_eq!(store.get("user:1").into_inner().unwrap(), Some(1), "{name}");
    }
}

#[test]
fn a_refused_get_of_an_expired_neighbour_reclaims_nothing() {
    for (name, store) in stores() {
        store.set("user:1", 1, SetOptions::new().ttl(Duration::from_secs(1))).into_inner().unwrap();
        let before = store.stats();
        assert!(store.get(&format!("user:1{RESERVED_KEY_CHAR}")).into_inner().is_err(), "{name}");
        assert_eq!(store.stats(), before, "{name}");
        assert_eq!(store.len(), 1, "{name}");
    }
}

#[test]
fn a_get_from_inside_a_values_clone_is_refused_before_the_key_is_looked_at() {
    // The re-entrancy check still comes first: a bad key from inside a
    // value's Clone is a ReentrantValue, as before.
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Calls(Mutex<Option<Arc<MemoryStore<Reader>>>>, Mutex<Vec<String>>);
    struct Reader(Arc<Calls>);
    impl Clone for Reader {
        fn clone(&self) -> Self {
            if let Some(store) = self.0.0.lock().unwrap().clone() {
                for key in ["k".to_string(), format!("k{RESERVED_KEY_CHAR}"), String::new()] {
                    let err = store.get(&key).into_inner().err().map(|e| e.to_string()).unwrap_or_default();
                    self.0.1.lock().unwrap().push(err);
                }
            }
            Reader(Arc::clone(&self.0))
        }
    }
    let calls = Arc::new(Calls::default());
    let store = Arc::new(MemoryStore::new(S3FifoPolicy::new(10).unwrap()));
    store.set("k", Reader(Arc::clone(&calls)), SetOptions::new()).into_inner().unwrap();
    *calls.0.lock().unwrap() = Some(Arc::clone(&store));
    let before = store.stats();
    drop(store.get("k").into_inner().unwrap());
    calls.0.lock().unwrap().take();
    let seen = calls.1.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for err in &seen {
        assert!(err.contains("Clone or Drop"), "{err}");
    }
    let after = store.stats();
    assert_eq!((after.hits, after.misses), (before.hits + 1, before.misses));
}
