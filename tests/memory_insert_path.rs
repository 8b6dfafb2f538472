#![cfg(not(target_arch = "wasm32"))]
//! A plain `set` of a new key into a full store takes a short path
//! (`Engine::insert_plain`): the new entry takes the evicted entry's slot
//! and, when the store has no listener and the keys are as long, the evicted
//! key's buffer. These tests hold the store to what it promises on that
//! path: the evicted value is dropped after the lock (its `Drop` may call
//! the store), a listener hears every evicted key whole (never a buffer
//! reused for the new key) and may call the store, and the counters and
//! contents stay exact under churn on several threads.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, Policy, RemovalReason, S3FifoPolicy, SetOptions};

fn policies(capacity: usize) -> Vec<(&'static str, Policy)> {
    vec![
        ("lru", LruPolicy::new(capacity).unwrap().into()),
        ("s3fifo", S3FifoPolicy::new(capacity).unwrap().into()),
        ("s3fifo classic", S3FifoPolicy::new(capacity).unwrap().adaptive(false).into()),
    ]
}

/// A value whose `Drop` reads and writes the store it was in.
struct CallsBack {
    n: u64,
    store: Arc<Mutex<Option<Arc<MemoryStore<CallsBack>>>>>,
    drops: Arc<AtomicUsize>,
}

impl Clone for CallsBack {
    fn clone(&self) -> Self {
        // A clone handed out by `get` calls nothing back (n 0).
        CallsBack { n: 0, store: Arc::clone(&self.store), drops: Arc::clone(&self.drops) }
    }
}

impl Drop for CallsBack {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let store = self.store.lock().unwrap().clone();
        if let Some(store) = store {
            // Not under the lock: both calls succeed (a call under it would
            // be refused as re-entrant, or deadlock).
            store.get("k0").into_inner().expect("the evicted value is dropped after the lock");
            let fresh = CallsBack { n: 0, store: Arc::clone(&self.store), drops: Arc::clone(&self.drops) };
            store.set(&format!("from-drop-{}", self.n), fresh, SetOptions::new()).into_inner().expect("after the lock");
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn an_evicted_value_is_dropped_after_the_lock_and_may_call_the_store() {
    for (name, policy) in policies(8) {
        let slot = Arc::new(Mutex::new(None));
        let drops = Arc::new(AtomicUsize::new(0));
        let store = Arc::new(MemoryStore::builder(policy).shards(1).build());
        *slot.lock().unwrap() = Some(Arc::clone(&store));
        for i in 1..=200u64 {
            let value = CallsBack { n: i, store: Arc::clone(&slot), drops: Arc::clone(&drops) };
            store.set(&format!("k{i}"), value, SetOptions::new()).into_inner().unwrap();
            assert!(store.len() <= 8, "{name}");
        }
        // Every value set with n > 0 that left was dropped once, after the lock.
        let evicted = store.stats().evictions as usize;
        assert!(evicted >= 190, "{name}: {evicted}");
        let held_calling_back = store.keys(None).into_inner().unwrap().iter().filter(|k| k.starts_with('k')).count();
        assert_eq!(drops.load(Ordering::SeqCst), 200 - held_calling_back, "{name}");
        slot.lock().unwrap().take();
        store.clear().into_inner().unwrap();
    }
}

#[test]
fn a_listener_hears_every_evicted_key_whole_and_may_call_the_store() {
    for (name, policy) in policies(16) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let slot: Arc<Mutex<Option<Arc<MemoryStore<u64>>>>> = Arc::new(Mutex::new(None));
        let (sink, back) = (Arc::clone(&heard), Arc::clone(&slot));
        let store = Arc::new(
            MemoryStore::builder(policy)
                .shards(1)
                .on_remove(move |key: &str, value: u64, reason| {
                    // The listener runs after the lock: the store answers
                    // (under it, the call would be refused as re-entrant;
                    // a listener's panic would be caught, so it is recorded).
                    let store = back.lock().unwrap().clone();
                    let answered = store.is_none_or(|store| store.get(key).into_inner().is_ok());
                    sink.lock().unwrap().push((key.to_string(), value, reason, answered));
                })
                .build(),
        );
        *slot.lock().unwrap() = Some(Arc::clone(&store));
        // Keys all as long: without a listener each would reuse the evicted key's buffer.
        let keys: Vec<String> = (0..500).map(|i| format!("key-{i:05}")).collect();
        for (i, key) in keys.iter().enumerate() {
            store.set(key, i as u64, SetOptions::new()).into_inner().unwrap();
        }
        let heard = heard.lock().unwrap();
        let evictions = store.stats().evictions as usize;
        assert_eq!(heard.len(), evictions, "{name}");
        let mut seen = HashSet::new();
        for (key, value, reason, answered) in heard.iter() {
            assert!(answered, "{name}: the store refused a call from the listener for {key}");
            assert_eq!(*reason, RemovalReason::Evicted, "{name}");
            assert_eq!(key, &keys[*value as usize], "{name}: the key heard is the key the value was set under");
            assert!(seen.insert(key.clone()), "{name}: {key} heard twice");
        }
        let held: HashSet<String> = store.keys(None).into_inner().unwrap().into_iter().collect();
        assert_eq!(held.len() + seen.len(), keys.len(), "{name}: every key held or heard");
        assert!(held.is_disjoint(&seen), "{name}");
        slot.lock().unwrap().take();
    }
}

#[test]
fn churn_on_two_threads_keeps_the_counts_and_every_key_readable() {
    for (name, policy) in policies(1_000) {
        let store: Arc<MemoryStore<u64>> = Arc::new(MemoryStore::builder(policy).shards(4).build());
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    for i in 0..20_000u64 {
                        let key = format!("t{t}-{i:06}");
                        store.set(&key, i, SetOptions::new()).into_inner().unwrap();
                        // Either value or gone (the other thread may have evicted it), never another.
                        assert!(store.get(&key).into_inner().unwrap().is_none_or(|v| v == i));
                    }
                });
            }
        });
        let stats = store.stats();
        assert_eq!(stats.sets, 40_000, "{name}");
        assert_eq!(stats.evictions as usize + store.len(), 40_000, "{name}: {stats:?}");
        assert!(store.len() <= 1_000, "{name}");
        for key in store.keys(None).into_inner().unwrap() {
            let (_, i) = key.split_once('-').unwrap();
            assert_eq!(store.get(&key).into_inner().unwrap(), Some(i.parse::<u64>().unwrap()), "{name}: {key}");
        }
    }
}
