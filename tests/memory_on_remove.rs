#![cfg(not(target_arch = "wasm32"))]
//! `MemoryStoreBuilder::on_remove`: every entry that leaves is reported once,
//! with its reason, after the call released its lock; a listener that panics
//! or calls back into the store changes nothing about the store's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use pepperpy_caching::{
    CacheStore, LruPolicy, ManualClock, MemoryStore, Policy, RefreshOptions, RemovalReason, Runtime, S3FifoPolicy,
    SetOptions, TtlPolicy,
};
use proptest::prelude::*;

type Log = Arc<Mutex<Vec<(String, u64, RemovalReason)>>>;

/// A store whose listener logs every notice.
fn logged(policy: impl Into<Policy>, clock: &ManualClock, shards: Option<usize>) -> (MemoryStore<u64>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let mut builder = MemoryStore::builder(policy)
        .clock(clock.clone())
        .on_remove(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)));
    if let Some(shards) = shards {
        builder = builder.shards(shards);
    }
    (builder.build(), log)
}

fn take(log: &Log) -> Vec<(String, u64, RemovalReason)> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn notice(key: &str, value: u64, reason: RemovalReason) -> (String, u64, RemovalReason) {
    (key.to_string(), value, reason)
}

fn set(store: &MemoryStore<u64>, key: &str, value: u64) {
    store.set(key, value, SetOptions::new()).into_inner().unwrap();
}

fn set_ttl(store: &MemoryStore<u64>, key: &str, value: u64, ttl: Duration) {
    store.set(key, value, SetOptions::new().ttl(ttl)).into_inner().unwrap();
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn replaced_deleted_invalidated_cleared() {
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(100).unwrap(), &clock, None);
    set(&store, "a", 1);
    set(&store, "a", 2);
    assert_eq!(take(&log), [notice("a", 1, RemovalReason::Replaced)]);
    assert!(store.delete("a").into_inner().unwrap());
    assert!(!store.delete("a").into_inner().unwrap());
    assert_eq!(take(&log), [notice("a", 2, RemovalReason::Deleted)]);
    for (i, key) in ["user:1", "user:2", "team:1"].into_iter().enumerate() {
        set(&store, key, i as u64);
    }
    assert_eq!(store.invalidate("user:*").into_inner().unwrap(), 2);
    let mut got = take(&log);
    got.sort_by_key(|n| (n.0.clone(), n.1));
    assert_eq!(got, [notice("user:1", 0, RemovalReason::Invalidated), notice("user:2", 1, RemovalReason::Invalidated)]);
    set(&store, "x", 9);
    store.clear().into_inner().unwrap();
    let mut got = take(&log);
    got.sort_by_key(|n| (n.0.clone(), n.1));
    assert_eq!(got, [notice("team:1", 2, RemovalReason::Cleared), notice("x", 9, RemovalReason::Cleared)]);
    store.clear().into_inner().unwrap();
    assert_eq!(take(&log), []);
}

#[test]
fn evictions_by_each_policy() {
    let clock = ManualClock::new();
    // LRU: the least recently used.
    let (store, log) = logged(LruPolicy::new(2).unwrap(), &clock, None);
    set(&store, "a", 1);
    set(&store, "b", 2);
    store.get("a").into_inner().unwrap();
    set(&store, "c", 3);
    assert_eq!(take(&log), [notice("b", 2, RemovalReason::Evicted)]);
    // TTL: the soonest to expire.
    let (store, log) = logged(TtlPolicy::new(1000 * SECOND).unwrap().with_max_size(2).unwrap(), &clock, None);
    set_ttl(&store, "long", 1, 100 * SECOND);
    set_ttl(&store, "short", 2, 10 * SECOND);
    set_ttl(&store, "new", 3, 50 * SECOND);
    assert_eq!(take(&log), [notice("short", 2, RemovalReason::Evicted)]);
    // S3-FIFO: one eviction per new key past the capacity, each reported once.
    let (store, log) = logged(S3FifoPolicy::new(10).unwrap(), &clock, Some(1));
    for i in 0..30 {
        set(&store, &format!("k{i}"), i);
    }
    let got = take(&log);
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(_, _, reason)| *reason == RemovalReason::Evicted));
    let mut values: Vec<u64> = got.iter().map(|n| n.1).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 20, "no entry reported twice");
    assert_eq!(store.len(), 10);
}

#[test]
fn expiry_found_by_reads_writes_and_walks() {
    for policy in [
        Policy::from(LruPolicy::new(100).unwrap()),
        S3FifoPolicy::new(100).unwrap().into(),
        TtlPolicy::new(1000 * SECOND).unwrap().with_max_size(100).unwrap().into(),
    ] {
        let clock = ManualClock::new();
        let (store, log) = logged(policy, &clock, None);
        // Found by a read: get (shared under S3-FIFO and TTL, exclusive under LRU), contains, get_metadata, delete.
        for (i, key) in ["get", "contains", "meta", "delete", "update"].into_iter().enumerate() {
            set_ttl(&store, key, i as u64, SECOND);
        }
        clock.advance(2 * SECOND);
        assert_eq!(store.get("get").into_inner().unwrap(), None);
        assert_eq!(take(&log), [notice("get", 0, RemovalReason::Expired)]);
        assert!(!store.contains("contains").into_inner().unwrap());
        assert_eq!(take(&log), [notice("contains", 1, RemovalReason::Expired)]);
        assert_eq!(store.get_metadata("meta").into_inner().unwrap(), None);
        assert_eq!(take(&log), [notice("meta", 2, RemovalReason::Expired)]);
        assert!(!store.delete("delete").into_inner().unwrap());
        assert_eq!(take(&log), [notice("delete", 3, RemovalReason::Expired)]);
        assert!(!store.update_metadata("update", Default::default()).into_inner().unwrap());
        assert_eq!(take(&log), [notice("update", 4, RemovalReason::Expired)]);
        // Found by a write's sweep, and by the write of the same key.
        set_ttl(&store, "swept", 5, SECOND);
        set_ttl(&store, "same", 6, SECOND);
        clock.advance(2 * SECOND);
        set(&store, "other", 7);
        set(&store, "same", 8);
        let mut got = take(&log);
        got.sort_by_key(|n| (n.0.clone(), n.1));
        assert_eq!(got, [notice("same", 6, RemovalReason::Expired), notice("swept", 5, RemovalReason::Expired)]);
        // Found by a walk (len, keys), and by invalidate and clear (expired, not invalidated or cleared).
        set_ttl(&store, "len", 9, SECOND);
        clock.advance(2 * SECOND);
        assert_eq!(store.len(), 2);
        assert_eq!(take(&log), [notice("len", 9, RemovalReason::Expired)]);
        set_ttl(&store, "inv", 10, SECOND);
        clock.advance(2 * SECOND);
        assert_eq!(store.invalidate("inv").into_inner().unwrap(), 0);
        assert_eq!(take(&log), [notice("inv", 10, RemovalReason::Expired)]);
        set_ttl(&store, "clr", 11, SECOND);
        clock.advance(2 * SECOND);
        store.clear().into_inner().unwrap();
        let mut got = take(&log);
        got.sort_by_key(|n| (n.0.clone(), n.1));
        assert_eq!(
            got,
            [
                notice("clr", 11, RemovalReason::Expired),
                notice("other", 7, RemovalReason::Cleared),
                notice("same", 8, RemovalReason::Cleared),
            ]
        );
    }
}

/// A runtime that runs a refresh on a thread of its own.
struct Threads;
impl Runtime for Threads {
    fn spawn(&self, task: pepperpy_caching::BoxFuture<()>) {
        std::thread::spawn(move || futures_lite_block_on(task));
    }
    fn sleep(&self, duration: Duration) -> pepperpy_caching::BoxFuture<()> {
        Box::pin(async move { std::thread::sleep(duration) })
    }
}

fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

#[test]
fn removals_inside_read_through() {
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(2).unwrap(), &clock, None);
    let store = Arc::new(store);
    futures_lite_block_on(async {
        set(&store, "a", 1);
        set(&store, "b", 2);
        // A load that stores its value evicts.
        let v = store.get_or_set("c", || async { 3 }, SetOptions::new()).await.unwrap();
        assert_eq!(v, 3);
        assert_eq!(take(&log), [notice("a", 1, RemovalReason::Evicted)]);
        // A miss on an expired entry reports it, then the load stores.
        set_ttl(&store, "t", 4, SECOND);
        assert_eq!(take(&log), [notice("b", 2, RemovalReason::Evicted)]);
        clock.advance(2 * SECOND);
        let v = store.get_or_set("t", || async { 5 }, SetOptions::new()).await.unwrap();
        assert_eq!(v, 5);
        assert_eq!(take(&log), [notice("t", 4, RemovalReason::Expired)]);
        // get_or_refresh: a refresh that stores replaces the stale value.
        store.clear().into_inner().unwrap();
        take(&log);
        let options = RefreshOptions::new(Threads, SECOND, 100 * SECOND);
        let v = store.get_or_refresh("r", || async { Ok::<_, std::io::Error>(6) }, &options).await.unwrap();
        assert_eq!(v, 6);
        assert_eq!(take(&log), []);
        clock.advance(2 * SECOND);
        let v = store.get_or_refresh("r", || async { Ok::<_, std::io::Error>(7) }, &options).await.unwrap();
        assert_eq!(v, 6, "stale, while the refresh runs");
        for _ in 0..500 {
            if !log.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(take(&log), [notice("r", 6, RemovalReason::Replaced)]);
        assert_eq!(store.get("r").await.unwrap(), Some(7));
        // An expired entry found by get_or_refresh (exclusive under LRU).
        clock.advance(200 * SECOND);
        let v = store.get_or_refresh("r", || async { Ok::<_, std::io::Error>(8) }, &options).await.unwrap();
        assert_eq!(v, 8);
        assert_eq!(take(&log), [notice("r", 7, RemovalReason::Expired)]);
    });
}

/// A listener that panics on every notice: the store's state is what it
/// would be without a listener, and every notice is still delivered.
#[test]
fn a_panicking_listener_changes_nothing() {
    for policy in [Policy::from(LruPolicy::new(3).unwrap()), S3FifoPolicy::new(3).unwrap().into()] {
        let calls = Arc::new(Mutex::new(0));
        let count = Arc::clone(&calls);
        let clock = ManualClock::new();
        let panicking = MemoryStore::builder(policy.clone())
            .clock(clock.clone())
            .on_remove(move |_: &str, _: u64, _| {
                *count.lock().unwrap() += 1;
                panic!("a listener that panics");
            })
            .build();
        let plain = MemoryStore::builder(policy).clock(clock.clone()).build();
        for i in 0..20u64 {
            for store in [&panicking, &plain] {
                set(store, &format!("k{}", i % 7), i);
                if i % 3 == 0 {
                    store.set(&format!("t{i}"), i, SetOptions::new().ttl(SECOND)).into_inner().unwrap();
                }
                store.get(&format!("k{}", i % 5)).into_inner().unwrap();
                if i % 4 == 0 {
                    store.delete(&format!("k{}", i % 3)).into_inner().unwrap();
                }
            }
            clock.advance(SECOND / 3);
        }
        let keys = |s: &MemoryStore<u64>| {
            let mut k = s.keys(None).into_inner().unwrap();
            k.sort();
            k
        };
        assert_eq!(keys(&panicking), keys(&plain));
        assert_eq!(panicking.len(), plain.len());
        assert_eq!(panicking.stats().evictions, plain.stats().evictions);
        assert_eq!(panicking.invalidate("k*").into_inner().unwrap(), plain.invalidate("k*").into_inner().unwrap());
        panicking.clear().into_inner().unwrap();
        assert_eq!(panicking.len(), 0);
        set(&panicking, "after", 1);
        assert_eq!(panicking.get("after").into_inner().unwrap(), Some(1));
        let s = panicking.stats();
        let removed = s.evictions + s.expirations + s.deletes;
        assert!(removed > 20);
        assert!(*calls.lock().unwrap() as u64 >= removed, "every removal was delivered");
    }
}

/// A listener that uses the store, on the same key: it runs after the call
/// released its lock (no deadlock, no `ReentrantValue`), sees the store as
/// the call left it, and what it writes stays.
#[test]
fn a_listener_may_use_the_store() {
    let slot: Arc<OnceLock<Weak<MemoryStore<u64>>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (slot2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
    let store = Arc::new(
        MemoryStore::builder(LruPolicy::new(2).unwrap())
            .on_remove(move |key: &str, value: u64, reason| {
                let store = slot2.get().unwrap().upgrade().unwrap();
                let now = store.get(key).into_inner().expect("no ReentrantValue: the lock is released");
                seen2.lock().unwrap().push(format!("{reason} {key}={value} now {now:?}"));
                match reason {
                    // Puts a deleted key back, with a new value.
                    RemovalReason::Deleted if key == "a" => set(&store, key, value + 100),
                    // Deletes the new value of a replaced key.
                    RemovalReason::Replaced if value == 10 => {
                        assert!(store.delete(key).into_inner().unwrap());
                    }
                    _ => {}
                }
            })
            .build(),
    );
    slot.set(Arc::downgrade(&store)).unwrap();
    set(&store, "a", 1);
    assert!(store.delete("a").into_inner().unwrap());
    assert_eq!(store.get("a").into_inner().unwrap(), Some(101), "the listener's set stays");
    set(&store, "b", 10);
    set(&store, "b", 11);
    assert_eq!(store.get("b").into_inner().unwrap(), None, "the listener deleted the new value");
    set(&store, "c", 3);
    set(&store, "d", 4);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "deleted a=1 now None",
            "replaced b=10 now Some(11)",
            // The listener's delete of b's new value.
            "deleted b=11 now None",
            "evicted a=101 now None",
        ]
    );
    assert_eq!(store.len(), 2);
    assert_eq!(store.get("a").into_inner().unwrap(), None);
    assert_eq!(store.get("c").into_inner().unwrap(), Some(3));
    assert_eq!(store.get("d").into_inner().unwrap(), Some(4));
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, Option<u8>),
    Get(u8),
    Delete(u8),
    Invalidate(u8),
    Contains(u8),
    Load(u8),
    Len,
    Clear,
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..24u8, proptest::option::of(1..5u8)).prop_map(|(k, t)| Op::Set(k, t)),
        4 => (0..24u8).prop_map(Op::Get),
        2 => (0..24u8).prop_map(Op::Delete),
        1 => (0..3u8).prop_map(Op::Invalidate),
        1 => (0..24u8).prop_map(Op::Contains),
        2 => (0..24u8).prop_map(Op::Load),
        1 => Just(Op::Len),
        1 => Just(Op::Clear),
        2 => (1..4u8).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every value that entered the store (each is unique) is either still
    /// in it or was reported exactly once, under the key it was stored at.
    #[test]
    fn each_entry_is_reported_exactly_once(ops in proptest::collection::vec(op(), 1..200), policy in 0..4u8) {
        let clock = ManualClock::new();
        let (policy, shards) = match policy {
            0 => (Policy::from(LruPolicy::new(8).unwrap()), None),
            1 => (S3FifoPolicy::new(8).unwrap().into(), Some(1)),
            2 => (TtlPolicy::new(Duration::from_secs(1000)).unwrap().with_max_size(8).unwrap().into(), None),
            _ => (LruPolicy::new(64).unwrap().into(), Some(4)),
        };
        let (store, log) = logged(policy, &clock, shards);
        let mut stored: HashMap<u64, String> = HashMap::new();
        let mut next = 0u64;
        let key = |k: u8| format!("{}{k}", ["a:", "b:", "c:"][k as usize % 3]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for op in ops {
            match op {
                Op::Set(k, ttl) => {
                    next += 1;
                    let options = match ttl {
                        Some(t) => SetOptions::new().ttl(Duration::from_secs(t.into())),
                        None => SetOptions::new(),
                    };
                    store.set(&key(k), next, options).into_inner().unwrap();
                    stored.insert(next, key(k));
                }
                Op::Get(k) => { store.get(&key(k)).into_inner().unwrap(); }
                Op::Delete(k) => { store.delete(&key(k)).into_inner().unwrap(); }
                Op::Invalidate(p) => { store.invalidate(&format!("{}*", ["a:", "b:", "c:"][p as usize])).into_inner().unwrap(); }
                Op::Contains(k) => { store.contains(&key(k)).into_inner().unwrap(); }
                Op::Load(k) => {
                    next += 1;
                    let value = next;
                    let got = rt.block_on(store.get_or_set(&key(k), || async move { value }, SetOptions::new())).unwrap();
                    if got == value {
                        stored.insert(value, key(k));
                    }
                }
                Op::Len => { store.len(); }
                Op::Clear => { store.clear().into_inner().unwrap(); }
                Op::Advance(s) => clock.advance(Duration::from_secs(s.into())),
            }
        }
        let mut reported: HashMap<u64, String> = HashMap::new();
        for (key, value, _) in take(&log) {
            prop_assert!(reported.insert(value, key).is_none(), "value {} reported twice", value);
        }
        let mut live: HashMap<u64, String> = HashMap::new();
        for key in store.keys(None).into_inner().unwrap() {
            let value = store.get(&key).into_inner().unwrap().unwrap();
            live.insert(value, key);
        }
        // keys() reclaimed the expired entries: report them too.
        for (key, value, _) in take(&log) {
            prop_assert!(reported.insert(value, key).is_none(), "value {} reported twice", value);
        }
        for (value, key) in &stored {
            let here = live.get(value).or_else(|| reported.get(value));
            prop_assert_eq!(here, Some(key), "value {} ({}) neither live nor reported once", value, key);
            prop_assert!(!(live.contains_key(value) && reported.contains_key(value)), "value {} live and reported", value);
        }
        prop_assert_eq!(live.len() + reported.len(), stored.len());
    }
}

/// Tags: `invalidate_tags` reports its entries as invalidated, and an
/// expired entry found by `get_tags` is reported by that call.
#[test]
fn tags_report_too() {
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(100).unwrap(), &clock, None);
    store.set("a", 1, SetOptions::new().tags(["t"])).into_inner().unwrap();
    store.set("b", 2, SetOptions::new().tags(["t", "u"]).ttl(SECOND)).into_inner().unwrap();
    store.set("c", 3, SetOptions::new().tags(["u"]).ttl(SECOND)).into_inner().unwrap();
    assert_eq!(store.invalidate_tags(&["t"]).into_inner().unwrap(), 2);
    let mut got = take(&log);
    got.sort_by_key(|n| (n.0.clone(), n.1));
    assert_eq!(got, [notice("a", 1, RemovalReason::Invalidated), notice("b", 2, RemovalReason::Invalidated)]);
    clock.advance(2 * SECOND);
    assert_eq!(store.get_tags("c").into_inner().unwrap(), None);
    assert_eq!(take(&log), [notice("c", 3, RemovalReason::Expired)]);
}

/// Time-to-idle meets the listener: an entry left unread past its idle time
/// is reported as expired, by whatever finds it (a read, a batch read, a
/// write's sweep, a walk), once; an entry kept read is not; an idle entry's
/// TTL still ends it. Per-entry idle times and a policy's default.
#[test]
fn idle_expiry_is_reported_as_expired() {
    let idle = |secs: u64| SetOptions::new().idle(Duration::from_secs(secs));
    for policy in [
        Policy::from(LruPolicy::new(100).unwrap()),
        S3FifoPolicy::new(100).unwrap().into(),
        TtlPolicy::new(1000 * SECOND).unwrap().with_max_size(100).unwrap().into(),
    ] {
        let clock = ManualClock::new();
        let (store, log) = logged(policy, &clock, None);
        store.set("read", 1, idle(2)).into_inner().unwrap();
        store.set("unread", 2, idle(2)).into_inner().unwrap();
        store.set("ttl", 3, idle(10).ttl(3 * SECOND)).into_inner().unwrap();
        store.set("walked", 4, idle(2)).into_inner().unwrap();
        clock.advance(1500 * Duration::from_millis(1));
        assert_eq!(store.get("read").into_inner().unwrap(), Some(1));
        assert_eq!(store.get_many(&["ttl"]).into_inner().unwrap(), [Some(3)]);
        clock.advance(1500 * Duration::from_millis(1)); // 3 s: read is due at 3.5 s, ttl at 3 s
        assert_eq!(take(&log), [], "nothing is reported before something finds it");
        assert_eq!(store.get("unread").into_inner().unwrap(), None);
        assert_eq!(take(&log), [notice("unread", 2, RemovalReason::Expired)]);
        assert_eq!(store.get_many(&["read", "ttl"]).into_inner().unwrap(), [Some(1), None]);
        assert_eq!(take(&log), [notice("ttl", 3, RemovalReason::Expired)], "reads do not outlive the TTL");
        assert_eq!(store.len(), 1, "walked expired at 2 s: only read is left");
        assert_eq!(take(&log), [notice("walked", 4, RemovalReason::Expired)]);
        clock.advance(2500 * Duration::from_millis(1)); // 5.5 s: read was due at 5 s
        set(&store, "other", 5); // the write's sweep finds it
        assert_eq!(take(&log), [notice("read", 1, RemovalReason::Expired)]);
        assert_eq!(store.get("read").into_inner().unwrap(), None);
        assert_eq!(take(&log), [], "reported once");
    }
    // A policy's default idle time: the entries left unread leave as expired.
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(100).unwrap().with_default_idle(2 * SECOND).unwrap(), &clock, None);
    set(&store, "a", 1);
    set(&store, "b", 2);
    clock.advance(SECOND);
    assert_eq!(store.get("a").into_inner().unwrap(), Some(1));
    clock.advance(1500 * Duration::from_millis(1));
    assert_eq!(store.len(), 1);
    assert_eq!(take(&log), [notice("b", 2, RemovalReason::Expired)]);
}

/// Time-to-idle in a store weighed by a weigher: an expired idle entry is
/// what makes room for a new one (reported expired, no eviction), its
/// weight leaves with it, and a heavier value set over an idle entry (the
/// replacement that needs room) keeps its own idle time.
#[test]
fn idle_entries_in_a_weighted_store() {
    for policy in [
        Policy::from(LruPolicy::new(10).unwrap()),
        S3FifoPolicy::new(10).unwrap().into(),
        TtlPolicy::new(1000 * SECOND).unwrap().with_max_size(10).unwrap().into(),
    ] {
        let clock = ManualClock::new();
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let store: MemoryStore<u64> = MemoryStore::builder(policy)
            .clock(clock.clone())
            .weigher(|_, value: &u64| *value)
            .on_remove(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
            .build();
        store.set("idle", 4, SetOptions::new().idle(2 * SECOND)).into_inner().unwrap();
        set(&store, "kept", 4);
        assert_eq!(store.stats().total_weight, 8);
        clock.advance(3 * SECOND);
        set(&store, "new", 4); // 12 > 10: the expired idle entry makes the room
        assert_eq!(take(&log), [notice("idle", 4, RemovalReason::Expired)]);
        assert_eq!(store.stats().evictions, 0);
        assert_eq!(store.stats().total_weight, 8);
        assert_eq!(store.get("kept").into_inner().unwrap(), Some(4));

        // A heavier value over an idle entry that needs room: the old one
        // leaves as replaced, the evicted ones as evicted, and the new one
        // has its idle time.
        store.delete("new").into_inner().unwrap();
        set(&store, "z", 3);
        store.set("h", 1, SetOptions::new().idle(2 * SECOND)).into_inner().unwrap();
        take(&log);
        store.set("h", 6, SetOptions::new().idle(2 * SECOND)).into_inner().unwrap(); // 4 + 3 + 6 > 10
        let heard = take(&log);
        assert_eq!(heard[0], notice("h", 1, RemovalReason::Replaced), "{heard:?}");
        assert!(heard.len() > 1 && heard[1..].iter().all(|n| n.2 == RemovalReason::Evicted), "{heard:?}");
        let live = |store: &MemoryStore<u64>| -> u64 {
            // The weigher weighs a value as itself.
            store.dump().unwrap().entries.iter().map(|entry| entry.value).sum()
        };
        assert_eq!(store.stats().total_weight, live(&store));
        assert!(store.stats().total_weight <= 10);
        clock.advance(1500 * Duration::from_millis(1));
        assert_eq!(store.get("h").into_inner().unwrap(), Some(6)); // due at 3.5 s now
        clock.advance(1500 * Duration::from_millis(1));
        assert_eq!(store.get("h").into_inner().unwrap(), Some(6), "the read moved its deadline");
        clock.advance(2500 * Duration::from_millis(1));
        assert_eq!(store.get("h").into_inner().unwrap(), None, "unread for 2.5 s: gone");
        assert_eq!(take(&log), [notice("h", 6, RemovalReason::Expired)]);
        assert_eq!(store.stats().total_weight, live(&store));
        // An idle set over a plain entry, and a plain one over an idle one.
        set(&store, "p", 3);
        store.set("p", 3, SetOptions::new().idle(SECOND)).into_inner().unwrap();
        clock.advance(2 * SECOND);
        assert_eq!(store.get("p").into_inner().unwrap(), None, "the idle set started a clock");
        set(&store, "p", 3);
        store.set("p", 2, SetOptions::new().idle(SECOND)).into_inner().unwrap();
        set(&store, "p", 2);
        clock.advance(10 * SECOND);
        assert_eq!(store.get("p").into_inner().unwrap(), Some(2), "a set without an idle time stops the clock");
        assert_eq!(store.stats().total_weight, live(&store));
    }
}

/// Tags and time-to-idle on one entry in memory: an idle entry's expiry
/// takes it out of the tag index (invalidate_tags then counts only the live
/// ones), a read keeps it, and invalidate_tags reports it as invalidated.
#[test]
fn idle_tagged_entries() {
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(100).unwrap(), &clock, None);
    let options = || SetOptions::new().idle(2 * SECOND).tags(["t"]);
    store.set("a", 1, options()).into_inner().unwrap();
    store.set("b", 2, options()).into_inner().unwrap();
    clock.advance(1500 * Duration::from_millis(1));
    assert_eq!(store.get("a").into_inner().unwrap(), Some(1));
    clock.advance(SECOND);
    assert_eq!(store.get_tags("b").into_inner().unwrap(), None, "b: unread for 2.5 s");
    assert_eq!(take(&log), [notice("b", 2, RemovalReason::Expired)]);
    assert_eq!(store.invalidate_tags(&["t"]).into_inner().unwrap(), 1);
    assert_eq!(take(&log), [notice("a", 1, RemovalReason::Invalidated)]);
    assert_eq!(store.len(), 0);
}
