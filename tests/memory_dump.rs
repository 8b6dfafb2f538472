#![cfg(not(target_arch = "wasm32"))]
//! Warm restart: `MemoryStore::dump` and `load`. A dump loaded into an equal
//! store gives the same contents and the same order (the next inserts evict
//! the same entries); into a smaller store it keeps what the policy keeps; a
//! dump taken while other threads write is a consistent snapshot of a shard;
//! bad input changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pepperpy_caching::stores::{Dump, DumpEntry};
use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, Metadata, Policy, RemovalReason, S3FifoPolicy,
    SetOptions, TtlPolicy,
};
use proptest::prelude::*;

type Log = Arc<Mutex<Vec<(String, u64, RemovalReason)>>>;

fn logged(policy: Policy, clock: &ManualClock) -> (MemoryStore<u64>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let store = MemoryStore::builder(policy)
        .clock(clock.clone())
        .shards(1)
        .on_remove(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
        .build();
    (store, log)
}

/// The dump as it would come back from disk (JSON), taken "just now".
fn through_json(dump: Dump<u64>) -> Dump<u64> {
    let json = serde_json::to_string(&dump).unwrap();
    let mut back: Dump<u64> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dump);
    // No time passes between the dump and the load of a test.
    back.taken_at_ms = u64::MAX;
    back
}

/// The live entries, sorted; read without counting a get (S3-FIFO's
/// small-queue climber moves with the number of gets).
fn live(store: &MemoryStore<u64>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = store.dump().unwrap().entries.into_iter().map(|e| (e.key, e.value)).collect();
    out.sort();
    out
}

const SECOND: Duration = Duration::from_secs(1);

fn policy_of(which: u8, cap: usize) -> Policy {
    match which {
        0 => LruPolicy::new(cap).unwrap().into(),
        1 => TtlPolicy::new(100 * SECOND).unwrap().with_max_size(cap).unwrap().into(),
        _ => S3FifoPolicy::new(cap).unwrap().adaptive(false).into(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, Option<u8>),
    Get(u8),
    Delete(u8),
    Advance(u8),
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..keys, proptest::option::of(1..20u8)).prop_map(|(k, t)| Op::Set(k, t)),
        6 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Delete),
        2 => (1..4u8).prop_map(Op::Advance),
    ]
}

/// Applies `op` to `store` (value `value` for a set); `fresh` names the keys
/// of sets (S3-FIFO's continuation sets only keys neither store has seen).
fn apply(store: &MemoryStore<u64>, clock: &ManualClock, op: &Op, value: u64, key: impl Fn(u8) -> String) {
    match *op {
        Op::Set(k, ttl) => {
            let options = match ttl {
                Some(t) => SetOptions::new().ttl(Duration::from_secs(t.into())),
                None => SetOptions::new(),
            };
            store.set(&key(k), value, options).into_inner().unwrap();
        }
        Op::Get(k) => {
            store.get(&key(k)).into_inner().unwrap();
        }
        Op::Delete(k) => {
            store.delete(&key(k)).into_inner().unwrap();
        }
        Op::Advance(s) => clock.advance(Duration::from_secs(s.into())),
    }
}

fn sorted(mut v: Vec<(String, u64, RemovalReason)>) -> Vec<(String, u64, RemovalReason)> {
    v.sort_by_key(|n| (n.0.clone(), n.1));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Dump, then load into an equal empty store: the same entries (values,
    /// TTLs, metadata), the same order, and the same evictions for whatever
    /// comes next. (S3-FIFO's learned state is not dumped: the ghost of keys
    /// it evicted, so only new keys are set after the load, and the size its
    /// climber gives the small queue, which moves every 20 x capacity gets,
    /// more than a case makes. Whether it has evicted yet is.)
    #[test]
    fn a_dump_loaded_into_an_equal_store_behaves_the_same(
        which in 0..3u8,
        before in proptest::collection::vec(op(24), 0..120),
        after in proptest::collection::vec(op(40), 1..120),
    ) {
        let cap = 16;
        let (clock_a, clock_b) = (ManualClock::new(), ManualClock::new());
        let (a, log_a) = logged(policy_of(which, cap), &clock_a);
        let (b, log_b) = logged(policy_of(which, cap), &clock_b);
        let mut value = 0;
        for op in &before {
            value += 1;
            // S3-FIFO: no deletes (a full store's queues are what the dump keeps).
            if which == 2 && matches!(op, Op::Delete(_)) {
                continue;
            }
            apply(&a, &clock_a, op, value, |k| format!("k{k}"));
        }
        if which == 2 {
            // A full S3-FIFO store that has evicted (the warm-restart case).
            for i in 0..=cap {
                value += 1;
                a.set(&format!("fill{i}"), value, SetOptions::new()).into_inner().unwrap();
            }
        }
        let mut metadata = Metadata::new();
        metadata.insert("m".into(), serde_json::json!([1, {"x": "y"}]));
        if let Some(k) = a.keys(None).into_inner().unwrap().first() {
            a.update_metadata(k, metadata).into_inner().unwrap();
        }
        let dump = a.dump().unwrap();
        let order_a = a.keys(None).into_inner().unwrap();
        let loaded = b.load(through_json(dump.clone())).unwrap();
        prop_assert_eq!(loaded, dump.entries.len());
        prop_assert_eq!(b.dump().unwrap().entries, dump.entries.clone(), "a dump of the loaded store is the same");
        prop_assert_eq!(live(&a), live(&b));
        // TTL's order is its expiry order (the dumps above); keys() lists the set order.
        if which != 1 {
            prop_assert_eq!(&order_a, &b.keys(None).into_inner().unwrap(), "the same order");
        }
        for key in &order_a {
            prop_assert_eq!(a.get_metadata(key).into_inner().unwrap(), b.get_metadata(key).into_inner().unwrap());
        }
        log_a.lock().unwrap().clear();
        prop_assert!(log_b.lock().unwrap().is_empty());
        for op in &after {
            value += 1;
            // Keys of 40 values: some the stores hold, some new (S3-FIFO: only new
            // ones are set, as its ghost of past evictions is not dumped).
            let key = |k: u8| if which == 2 && matches!(op, Op::Set(..)) { format!("new{value}") } else { format!("k{k}") };
            apply(&a, &clock_a, op, value, key);
            apply(&b, &clock_b, op, value, key);
            prop_assert_eq!(live(&a), live(&b), "after {:?}", op);
            let evicted = |log: &Log| {
                log.lock().unwrap().iter().filter(|n| n.2 == RemovalReason::Evicted).cloned().collect::<Vec<_>>()
            };
            prop_assert_eq!(evicted(&log_a), evicted(&log_b), "the same evictions, in order");
        }
        if which != 1 {
            prop_assert_eq!(a.keys(None).into_inner().unwrap(), b.keys(None).into_inner().unwrap(), "the same order");
        }
        let entries = |d: Dump<u64>| d.entries.into_iter().map(|e| (e.key, e.value, e.ttl)).collect::<Vec<_>>();
        prop_assert_eq!(entries(a.dump().unwrap()), entries(b.dump().unwrap()), "the same order");
        a.len();
        b.len();
        prop_assert_eq!(sorted(log_a.lock().unwrap().clone()), sorted(log_b.lock().unwrap().clone()));
    }

    /// Into a smaller store, a dump keeps what the policy keeps: under LRU
    /// the most recently used, under TTL the entries that expire last.
    #[test]
    fn a_smaller_store_keeps_what_its_policy_keeps(
        which in 0..2u8,
        ops in proptest::collection::vec(op(40), 0..200),
    ) {
        let clock = ManualClock::new();
        let (a, _) = logged(policy_of(which, 24), &clock);
        for (value, op) in ops.iter().enumerate() {
            apply(&a, &clock, op, value as u64, |k| format!("k{k}"));
        }
        let dump = a.dump().unwrap();
        let (b, log_b) = logged(policy_of(which, 8), &ManualClock::new());
        b.load(through_json(dump.clone())).unwrap();
        let kept: Vec<String> = match which {
            // keys() lists LRU most recently used first.
            0 => a.keys(None).into_inner().unwrap().into_iter().take(8).collect(),
            _ => {
                let mut by_expiry: Vec<&DumpEntry<u64>> = dump.entries.iter().collect();
                // The soonest to expire are evicted first; equal expiries, the one set first.
                by_expiry.sort_by_key(|e| e.ttl);
                by_expiry.iter().rev().take(8).map(|e| e.key.clone()).collect()
            }
        };
        let mut kept = kept;
        kept.sort();
        let mut got = b.keys(None).into_inner().unwrap();
        got.sort();
        prop_assert_eq!(got, kept);
        let evicted = log_b.lock().unwrap().iter().filter(|n| n.2 == RemovalReason::Evicted).count();
        prop_assert_eq!(evicted, dump.entries.len().saturating_sub(8));
    }
}

/// S3-FIFO: the entries read often (in main, with hits) survive a load into
/// a store a fifth of the size; the ones never read go first.
#[test]
fn s3fifo_into_a_smaller_store_keeps_the_hot_entries() {
    for adaptive in [false, true] {
        let a = MemoryStore::builder(S3FifoPolicy::new(100).unwrap().adaptive(adaptive)).shards(1).build();
        for round in 0..5u64 {
            for i in 0..150u64 {
                a.set(&format!("cold{i}:{round}"), i, SetOptions::new()).into_inner().unwrap();
                if i % 10 == 0 {
                    for h in 0..15 {
                        let hot = format!("hot{h}");
                        if a.get(&hot).into_inner().unwrap().is_none() {
                            a.set(&hot, i, SetOptions::new()).into_inner().unwrap();
                        }
                    }
                }
            }
        }
        let hot: Vec<String> = (0..15).map(|i| format!("hot{i}")).collect();
        let missing: Vec<&String> = hot.iter().filter(|k| !a.contains(k).into_inner().unwrap()).collect();
        assert!(missing.is_empty(), "adaptive {adaptive}: the hot keys are in the big store, missing {missing:?}");
        let b = MemoryStore::builder(S3FifoPolicy::new(20).unwrap().adaptive(adaptive)).shards(1).build();
        b.load(a.dump().unwrap()).unwrap();
        let kept = hot.iter().filter(|k| b.contains(k).into_inner().unwrap()).count();
        assert_eq!(kept, 15, "adaptive {adaptive}: every hot key kept, got {:?}", b.keys(None).into_inner().unwrap());
        assert_eq!(b.len(), 20);
    }
}

/// A writer sets `a` then `b` to the same rising number, over and over: any
/// snapshot of the (one-shard) store sees `a == b` or `a == b + 1`. A dump
/// that read the entries one lock at a time could see `b` ahead of `a`.
#[test]
fn a_dump_while_threads_write_is_a_consistent_snapshot() {
    let store = Arc::new(MemoryStore::<u64>::builder(LruPolicy::new(1000).unwrap()).shards(1).build());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    store.set(&format!("a{w}"), i, SetOptions::new()).into_inner().unwrap();
                    // Churn between the two, so a dump's walk has work to race with.
                    store.set(&format!("churn{w}:{}", i % 50), i, SetOptions::new()).into_inner().unwrap();
                    store.set(&format!("b{w}"), i, SetOptions::new()).into_inner().unwrap();
                }
            })
        })
        .collect();
    let mut checked = 0;
    let started = std::time::Instant::now();
    while checked < 300 || started.elapsed() < Duration::from_millis(200) {
        let dump = store.dump().unwrap();
        let value = |key: &str| dump.entries.iter().find(|e| e.key == key).map(|e| e.value);
        for w in 0..2 {
            if let (Some(a), Some(b)) = (value(&format!("a{w}")), value(&format!("b{w}"))) {
                assert!(a == b || a == b + 1, "a{w} = {a}, b{w} = {b}: not a snapshot");
                checked += 1;
            }
        }
        let mut keys: Vec<&str> = dump.entries.iter().map(|e| e.key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), dump.entries.len(), "no key twice");
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(checked >= 300);
}

/// A sharded store: every shard's part is taken under its lock once, and
/// the shards are merged so each keeps its own order.
#[test]
fn a_sharded_dump_keeps_each_shards_order() {
    let store = MemoryStore::<u64>::builder(LruPolicy::new(4000).unwrap()).shards(8).build();
    for i in 0..3000 {
        store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
    }
    let dump = store.dump().unwrap();
    assert_eq!(dump.entries.len(), 3000);
    // Set in order, never read: coldest first means rising values within a
    // shard, and, merged by rank, roughly rising overall.
    let values: Vec<u64> = dump.entries.iter().map(|e| e.value).collect();
    let first_half: u64 = values[..1500].iter().sum();
    let second_half: u64 = values[1500..].iter().sum();
    assert!(first_half * 2 < second_half, "the cold half first: {first_half} vs {second_half}");
    let restored = MemoryStore::<u64>::builder(LruPolicy::new(1000).unwrap()).shards(1).build();
    restored.load(dump).unwrap();
    let kept = restored.keys(None).into_inner().unwrap();
    let newest = kept.iter().filter(|k| k[1..].parse::<u64>().unwrap() >= 1800).count();
    assert!(newest > 900, "mostly the 1000 most recent: {newest}");
}

#[test]
fn ttls_run_on_while_the_process_is_down() {
    let clock = ManualClock::new();
    let (a, _) = logged(LruPolicy::new(10).unwrap().into(), &clock);
    a.set("short", 1, SetOptions::new().ttl(3 * SECOND)).into_inner().unwrap();
    a.set("long", 2, SetOptions::new().ttl(10 * SECOND)).into_inner().unwrap();
    a.set("forever", 3, SetOptions::new()).into_inner().unwrap();
    a.set("gone", 4, SetOptions::new().ttl(SECOND)).into_inner().unwrap();
    clock.advance(2 * SECOND);
    let mut dump = a.dump().unwrap();
    assert_eq!(dump.entries.len(), 3, "expired entries are not dumped");
    let ttl = |key: &str| dump.entries.iter().find(|e| e.key == key).unwrap().ttl;
    assert_eq!(ttl("short"), Some(SECOND));
    assert_eq!(ttl("long"), Some(8 * SECOND));
    assert_eq!(ttl("forever"), None);
    // Down for 5 seconds.
    dump.taken_at_ms -= 5_000;
    let clock_b = ManualClock::new();
    let (b, _) = logged(LruPolicy::new(10).unwrap().into(), &clock_b);
    assert_eq!(b.load(dump).unwrap(), 2, "short ran out while the process was down");
    assert_eq!(live(&b), [("forever".to_string(), 3), ("long".to_string(), 2)]);
    clock_b.advance(2900 * Duration::from_millis(1));
    assert!(b.contains("long").into_inner().unwrap());
    clock_b.advance(100 * Duration::from_millis(1) + Duration::from_millis(50));
    assert!(!b.contains("long").into_inner().unwrap(), "8 s left at the dump, minus 5 s down, minus 3 s");
    assert!(b.contains("forever").into_inner().unwrap());
}

#[test]
fn bad_input_changes_nothing() {
    let clock = ManualClock::new();
    let (store, log) = logged(LruPolicy::new(10).unwrap().into(), &clock);
    store.set("there", 1, SetOptions::new()).into_inner().unwrap();
    let good = DumpEntry::new("good", 2);
    let replacing = DumpEntry::new("there", 3);
    let mut zero = DumpEntry::new("zero", 4);
    zero.ttl = Some(Duration::ZERO);
    let mut deep = DumpEntry::new("deep", 5);
    let mut nested = serde_json::json!(1);
    for _ in 0..100 {
        nested = serde_json::json!([nested]);
    }
    deep.metadata = Some([("m".to_string(), nested)].into_iter().collect());
    let mut empty_tag = DumpEntry::new("tagged", 6);
    empty_tag.tags = vec!["ok".to_string(), String::new()];
    let mut twice = DumpEntry::new("tagged", 7);
    twice.tags = vec!["a".to_string(), "a".to_string()];
    let cases = [
        (DumpEntry::new("", 9), "an empty key"),
        (empty_tag, "an empty tag"),
        (twice, "a tag given twice"),
        (DumpEntry::new("x".repeat(100_000), 9), "a key too long"),
        (zero, "a zero TTL"),
        (deep, "metadata nested too deep"),
    ];
    for (bad, what) in cases {
        let dump = Dump::new(vec![good.clone(), replacing.clone(), bad]);
        let err = store.load(dump).expect_err(what);
        assert!(
            matches!(err, CacheError::Key { .. } | CacheError::Policy(_) | CacheError::Serialization(_)),
            "{what}: {err:?}"
        );
        assert_eq!(live(&store), [("there".to_string(), 1)], "{what}: nothing changed");
        assert!(log.lock().unwrap().is_empty());
        assert_eq!(store.stats().sets, 1);
    }
    // A dump from JSON with a wrong shape is serde's error, before the store sees it.
    assert!(serde_json::from_str::<Dump<u64>>(r#"{"taken_at_ms": 1, "entries": [{"key": "k"}]}"#).is_err());
    // The good entries load, replacing what is there (reported as replaced).
    assert_eq!(store.load(Dump::new(vec![good, replacing])).unwrap(), 2);
    assert_eq!(live(&store), [("good".to_string(), 2), ("there".to_string(), 3)]);
    assert_eq!(*log.lock().unwrap(), [("there".to_string(), 1, RemovalReason::Replaced)]);
}

/// Tags go through a dump and a load: read back, found by
/// `invalidate_tags` after the restart, kept through JSON, and absent from
/// the JSON of an untagged entry (so older dumps and newer ones read alike).
#[test]
fn tags_survive_a_restart() {
    for policy in [0u8, 1, 2] {
        let clock = ManualClock::new();
        let (store, _) = logged(policy_of(policy, 100), &clock);
        store.set("page:1", 1, SetOptions::new().tags(["user:42", "team:7"])).into_inner().unwrap();
        store.set("page:2", 2, SetOptions::new().tags(["team:7"])).into_inner().unwrap();
        store.set("plain", 3, SetOptions::new()).into_inner().unwrap();
        let dump = store.dump().unwrap();
        let json = serde_json::to_string(&dump).unwrap();
        assert_eq!(json.matches("\"tags\"").count(), 2, "{json}");
        let (restarted, _) = logged(policy_of(policy, 100), &clock);
        assert_eq!(restarted.load(through_json(dump)).unwrap(), 3);
        let tags = restarted.get_tags("page:1").into_inner().unwrap();
        assert_eq!(tags.as_deref(), Some(&["user:42".to_string(), "team:7".to_string()][..]));
        assert_eq!(restarted.get_tags("plain").into_inner().unwrap(), Some(vec![]));
        assert_eq!(restarted.invalidate_tags(&["team:7"]).into_inner().unwrap(), 2);
        assert_eq!(live(&restarted), [("plain".to_string(), 3)]);
    }
}

/// The default TTL of a TTL policy applies to an entry dumped without one.
#[test]
fn an_entry_without_a_ttl_gets_the_policys_default() {
    let clock = ManualClock::new();
    let (store, _) = logged(TtlPolicy::new(10 * SECOND).unwrap().into(), &clock);
    store.load(Dump::new(vec![DumpEntry::new("k", 1)])).unwrap();
    clock.advance(9 * SECOND);
    assert!(store.contains("k").into_inner().unwrap());
    clock.advance(SECOND);
    assert!(!store.contains("k").into_inner().unwrap());
}

/// Time-to-idle: a dump keeps an idle entry's TTL (not the earlier deadline
/// it is filed under) and its idle time, whose clock starts again at the load.
#[test]
fn idle_entries_keep_their_ttl_and_idle_time() {
    let clock = ManualClock::new();
    let (a, _) = logged(LruPolicy::new(10).unwrap().into(), &clock);
    a.set("k", 1, SetOptions::new().ttl(100 * SECOND).idle(10 * SECOND)).into_inner().unwrap();
    clock.advance(5 * SECOND);
    assert_eq!(a.get("k").into_inner().unwrap(), Some(1), "a read: idle until 15 s");
    clock.advance(8 * SECOND);
    let mut dump = a.dump().unwrap();
    assert_eq!(dump.entries.len(), 1, "filed under 10 s, read at 5 s: still live at 13 s");
    assert_eq!(dump.entries[0].ttl, Some(87 * SECOND));
    assert_eq!(dump.entries[0].idle, Some(10 * SECOND));
    dump.taken_at_ms = u64::MAX;
    let clock_b = ManualClock::new();
    let (b, _) = logged(LruPolicy::new(10).unwrap().into(), &clock_b);
    b.load(through_json(dump)).unwrap();
    clock_b.advance(9 * SECOND);
    assert!(b.contains("k").into_inner().unwrap(), "contains is no read");
    clock_b.advance(2 * SECOND);
    assert!(!b.contains("k").into_inner().unwrap(), "10 s without a read since the load");
    let mut zero = DumpEntry::new("z", 1);
    zero.idle = Some(Duration::ZERO);
    assert!(b.load(Dump::new(vec![zero])).is_err(), "a zero idle time is refused");
}

/// An idle entry without a TTL dumps with no `ttl` and its idle time; a
/// store whose policy has a default idle time dumps it on each entry; a
/// load into a weighted store weighs the idle entries and restarts their
/// clocks (a read after the load keeps one, the other leaves as expired).
#[test]
fn idle_entries_without_a_ttl_and_into_a_weighted_store() {
    let clock = ManualClock::new();
    let (a, _) = logged(LruPolicy::new(10).unwrap().with_default_idle(30 * SECOND).unwrap().into(), &clock);
    a.set("own", 4, SetOptions::new().idle(10 * SECOND)).into_inner().unwrap();
    a.set("default", 5, SetOptions::new()).into_inner().unwrap();
    let dump = through_json(a.dump().unwrap());
    let idle_of = |key: &str| dump.entries.iter().find(|e| e.key == key).map(|e| (e.ttl, e.idle));
    assert_eq!(idle_of("own"), Some((None, Some(10 * SECOND))));
    assert_eq!(idle_of("default"), Some((None, Some(30 * SECOND))));

    let clock_b = ManualClock::new();
    let log: Arc<Mutex<Vec<(String, u64, RemovalReason)>>> = Arc::default();
    let sink = Arc::clone(&log);
    let b: MemoryStore<u64> = MemoryStore::builder(LruPolicy::new(9).unwrap())
        .clock(clock_b.clone())
        .weigher(|_, value: &u64| *value)
        .on_remove(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)))
        .build();
    assert_eq!(b.load(dump).unwrap(), 2);
    assert_eq!(b.stats().total_weight, 9);
    clock_b.advance(8 * SECOND);
    assert_eq!(b.get("own").into_inner().unwrap(), Some(4));
    clock_b.advance(8 * SECOND); // own: read at 8 s, due at 18 s
    assert_eq!(b.get("own").into_inner().unwrap(), Some(4));
    clock_b.advance(20 * SECOND); // default: loaded at 0, due at 30 s; own due at 26 s
    assert_eq!(b.len(), 0);
    let mut heard = std::mem::take(&mut *log.lock().unwrap());
    heard.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(heard, [("default".into(), 5, RemovalReason::Expired), ("own".into(), 4, RemovalReason::Expired)]);
    assert_eq!(b.stats().total_weight, 0);
}

/// A weighed store: loaded entries are weighed, the capacity is a total
/// weight (the coldest go until the rest fit), and an entry heavier than the
/// whole capacity fails the load before anything changed.
#[test]
fn a_weighed_store_loads_by_weight() {
    let a = MemoryStore::<u64>::builder(LruPolicy::new(100).unwrap()).build();
    for (i, key) in ["w1", "w2", "w3", "w4"].into_iter().enumerate() {
        a.set(key, 3 + i as u64 % 2, SetOptions::new()).into_inner().unwrap();
    }
    let weighed = || MemoryStore::<u64>::builder(LruPolicy::new(10).unwrap()).weigher(|_, v| *v).build();
    let b = weighed();
    assert_eq!(b.load(a.dump().unwrap()).unwrap(), 4);
    // w1=3 w2=4 w3=3 w4=4: the newest that fit in 10 are w3 and w4 (7), and w2 (11) did not.
    let mut kept = b.keys(None).into_inner().unwrap();
    kept.sort();
    assert_eq!(kept, ["w3", "w4"]);
    let c = weighed();
    c.set("there", 1, SetOptions::new()).into_inner().unwrap();
    let heavy = Dump::new(vec![DumpEntry::new("light", 2), DumpEntry::new("heavy", 11)]);
    let err = c.load(heavy).expect_err("heavier than the capacity");
    assert!(matches!(err, CacheError::EntryTooLarge { .. }), "{err:?}");
    assert_eq!(live(&c), [("there".to_string(), 1)], "nothing changed");
}
