//! Allocations on the memory store's write path, counted by a global
//! allocator that counts this thread's calls (this file is its own test
//! binary, so the counting allocator serves only these tests).
//!
//! A full store without a removal listener stores a new key in the buffer
//! of the key it evicted for it when the two are as long (nobody is told of
//! the evicted key): churn of keys of one length allocates nothing. The
//! keys must still read back byte for byte, and a store with a listener
//! must still hand the evicted keys over whole.
//!
//! Native only: the JS package's wasm has a global allocator of its own
//! (src/wasm/alloc.rs).
#![cfg(not(all(target_arch = "wasm32", feature = "js")))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, RemovalReason, S3FifoPolicy, SetOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to `System` unchanged; the thread-local
// counter is a const-initialised `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's promises, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Sets `n` new keys `prefix{i:06}` (all as long) into `store`; the
/// allocations this thread made meanwhile.
fn churn(store: &MemoryStore<u64>, prefix: &str, n: u64) -> u64 {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
    let before = allocations();
    for (i, key) in keys.iter().enumerate() {
        store.set(key, i as u64, SetOptions::new()).into_inner().unwrap();
    }
    allocations() - before
}

fn stores() -> Vec<(&'static str, MemoryStore<u64>)> {
    vec![
        // A fixed shard count: the default follows the machine's CPUs.
        ("S3-FIFO, 8 shards", MemoryStore::builder(S3FifoPolicy::new(2_000).unwrap()).shards(8).build()),
        ("S3-FIFO, 1 shard", MemoryStore::builder(S3FifoPolicy::new(2_000).unwrap()).shards(1).build()),
        (
            "S3-FIFO classic, 8 shards",
            MemoryStore::builder(S3FifoPolicy::new(2_000).unwrap().adaptive(false)).shards(8).build(),
        ),
        ("LRU, 8 shards", MemoryStore::builder(LruPolicy::new(2_000).unwrap()).shards(8).build()),
    ]
}

#[test]
fn churn_of_keys_of_one_length_allocates_nothing_once_full() {
    for (name, store) in stores() {
        // Full, every table grown: the steady state.
        churn(&store, "fill:", 20_000);
        let n = 20_000;
        let made = churn(&store, "next:", n);
        // A key's buffer is the evicted key's; the policy's own tables
        // (ghosts, shadows) may still grow now and then.
        assert!(made < n / 20, "{name}: {made} allocations for {n} sets of new keys");
        // The keys held are keys that were set, byte for byte, each with its
        // own value (S3-FIFO's main queue may still hold older keys).
        let held = store.keys(None).into_inner().unwrap();
        assert_eq!(held.len(), 2_000, "{name}");
        let newest = held.iter().filter(|k| k.starts_with("next:")).count();
        assert!(newest >= 100, "{name}: {newest} of the newest keys held");
        for key in &held {
            let i: u64 = key.strip_prefix("next:").or_else(|| key.strip_prefix("fill:")).unwrap().parse().unwrap();
            assert_eq!(store.get(key).into_inner().unwrap(), Some(i), "{name}: {key}");
        }
    }
}

/// Keys of one length in bytes but not in characters: the buffer is
/// refilled byte for byte, and every key reads back as it was set.
#[test]
fn recycled_buffers_hold_multibyte_keys_whole() {
    let store = MemoryStore::<u64>::builder(LruPolicy::new(3).unwrap()).build();
    // Four bytes each, in one to four characters.
    let keys = ["abcd", "\u{20ac}z", "ab\u{e9}", "\u{1f600}", "x\u{20ac}", "wxyz", "\u{e9}\u{e9}"];
    for key in keys {
        assert_eq!(key.len(), 4, "{key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        store.set(key, i as u64, SetOptions::new()).into_inner().unwrap();
    }
    let mut held = store.keys(None).into_inner().unwrap();
    held.sort();
    let mut expected: Vec<String> = keys[keys.len() - 3..].iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(held, expected);
    for (i, key) in keys.iter().enumerate().skip(keys.len() - 3) {
        assert_eq!(store.get(key).into_inner().unwrap(), Some(i as u64), "{key:?}");
    }
    for key in &keys[..keys.len() - 3] {
        assert_eq!(store.get(key).into_inner().unwrap(), None, "{key:?}");
    }
}

/// With a listener the evicted keys are the listener's: each is reported
/// whole, and the new keys are stored whole too.
#[test]
fn a_listener_still_gets_every_evicted_key_whole() {
    for adaptive in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        // One shard: exactly 100 held whatever the machine's CPU count.
        let store = MemoryStore::builder(S3FifoPolicy::new(100).unwrap().adaptive(adaptive))
            .shards(1)
            .on_remove(move |key: &str, value: u64, reason| {
                assert_eq!(reason, RemovalReason::Evicted);
                log.lock().unwrap().push((key.to_string(), value));
            })
            .build();
        let n = 5_000u64;
        for i in 0..n {
            store.set(&format!("k{i:06}"), i, SetOptions::new()).into_inner().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, n - 100);
        for (key, value) in seen.iter() {
            assert_eq!(*key, format!("k{value:06}"), "an evicted entry is reported under its own key");
        }
        for key in store.keys(None).into_inner().unwrap() {
            let i: u64 = key[1..].parse().unwrap();
            assert_eq!(store.get(&key).into_inner().unwrap(), Some(i));
        }
    }
}

/// A replaced entry's key is the key being set: its buffer is not reused
/// for another key, and an update of a held key allocates nothing new.
#[test]
fn updates_of_held_keys_allocate_nothing() {
    let store = MemoryStore::<u64>::new(S3FifoPolicy::new(1_000).unwrap());
    let keys: Vec<String> = (0..500).map(|i| format!("held:{i:04}")).collect();
    for key in &keys {
        store.set(key, 0, SetOptions::new()).into_inner().unwrap();
    }
    let before = allocations();
    for round in 1..5u64 {
        for key in &keys {
            store.set(key, round, SetOptions::new()).into_inner().unwrap();
        }
    }
    let made = allocations() - before;
    assert!(made < 50, "{made} allocations for 2,000 updates");
    for key in &keys {
        assert_eq!(store.get(key).into_inner().unwrap(), Some(4));
    }
}

/// A full store whose entries expire one at a time: each `set` of a new key
/// reclaims the one expired entry (no live entry is evicted) and stores the
/// new key in its buffer, so the churn allocates nothing; every new key
/// reads back whole with its own value, and no expired key comes back.
#[test]
fn a_new_key_takes_the_buffer_of_the_expired_entry_reclaimed_for_it() {
    let ms = std::time::Duration::from_millis;
    for (name, policy) in [
        ("LRU", pepperpy_caching::Policy::from(LruPolicy::new(1_000).unwrap())),
        ("S3-FIFO", S3FifoPolicy::new(1_000).unwrap().into()),
        ("S3-FIFO classic", S3FifoPolicy::new(1_000).unwrap().adaptive(false).into()),
    ] {
        let clock = pepperpy_caching::ManualClock::new();
        let store = MemoryStore::<u64>::builder(policy).shards(1).clock(clock.clone()).build();
        let n = 1_000u64;
        // Full, the i-th entry expiring i + 1 ms from now.
        for i in 0..n {
            store.set(&format!("old:{i:06}"), i, SetOptions::new().ttl(ms(i + 1))).into_inner().unwrap();
        }
        let keys: Vec<String> = (0..n).map(|i| format!("new:{i:06}")).collect();
        let before = allocations();
        for (i, key) in keys.iter().enumerate() {
            clock.advance(ms(1));
            store.set(key, i as u64, SetOptions::new()).into_inner().unwrap();
        }
        let made = allocations() - before;
        assert!(made < n / 20, "{name}: {made} allocations for {n} sets that each reclaimed an expired entry");
        let stats = store.stats();
        assert_eq!((stats.expirations, stats.evictions), (n, 0), "{name}: each set reclaimed one expired entry");
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(store.get(key).into_inner().unwrap(), Some(i as u64), "{name}: {key}");
        }
        for i in 0..n {
            assert_eq!(store.get(&format!("old:{i:06}")).into_inner().unwrap(), None, "{name}");
        }
        let mut held = store.keys(None).into_inner().unwrap();
        held.sort();
        assert_eq!(held, keys, "{name}");
    }
}

/// Many entries expired at once: a `set` reclaims up to eight of them, and
/// the new key takes one of their buffers only if as long; a listener gets
/// every expired key whole (its buffers are never taken), and the new keys,
/// of several lengths, read back whole.
#[test]
fn expired_entries_reclaimed_in_a_batch_keep_their_keys_and_lend_their_buffers() {
    let ms = std::time::Duration::from_millis;
    for listening in [false, true] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let clock = pepperpy_caching::ManualClock::new();
        let mut builder = MemoryStore::<u64>::builder(S3FifoPolicy::new(300).unwrap()).shards(1).clock(clock.clone());
        if listening {
            builder = builder.on_remove(move |key: &str, value: u64, reason| {
                assert_eq!(reason, RemovalReason::Expired);
                log.lock().unwrap().push((key.to_string(), value));
            });
        }
        let store = builder.build();
        for i in 0..300u64 {
            store.set(&format!("e{i:05}"), i, SetOptions::new().ttl(ms(10))).into_inner().unwrap();
        }
        clock.advance(ms(10));
        // Keys as long as the expired ones (6 bytes), shorter and longer.
        let keys: Vec<String> = (0..100u64)
            .map(|i| match i % 3 {
                0 => format!("n{i:05}"),
                1 => format!("s{i}"),
                _ => format!("long-key-{i:08}"),
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            store.set(key, i as u64, SetOptions::new()).into_inner().unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(store.get(key).into_inner().unwrap(), Some(i as u64), "{key}");
        }
        let mut held = store.keys(None).into_inner().unwrap();
        held.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(held, expected, "listening {listening}: the new keys and nothing expired");
        if listening {
            let mut seen = seen.lock().unwrap().clone();
            seen.sort();
            let expired: Vec<(String, u64)> = (0..300u64).map(|i| (format!("e{i:05}"), i)).collect();
            assert_eq!(seen, expired, "every expired key reported whole, once");
        }
    }
}
