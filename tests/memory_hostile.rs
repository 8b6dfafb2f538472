#![cfg(not(target_arch = "wasm32"))]
//! A hostile user against `MemoryStore`: foreign code that panics in `Clone`
//! and `Drop`, absurd shard counts and durations, the end of time, threads
//! hammering one store, S3-FIFO churn, 8 KiB keys and bad input everywhere.
//!
//! Every test states what the store promises and checks it after the attack:
//! each entry it lists reads back with the value last written for it, `len()`,
//! `keys()` and the capacity agree, the counters add up, and later calls work.
//! Each test here first exposed a bug or stood guard against one; all pass now.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pepperpy_caching::stores::MAX_SHARDS;
use pepperpy_caching::{
    CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, MAX_PATTERN_LEN, ManualClock, MemoryStore, Metadata,
    S3FifoPolicy, SetOptions, TtlPolicy,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A value that runs hostile code: its `Clone` and/or its `Drop` may panic.
/// A clone is always tame, so that the caller can drop what `get` returns.
#[derive(Debug)]
struct Hostile {
    val: u64,
    clone_panics: bool,
    drop_panics: bool,
}

impl Hostile {
    fn tame(val: u64) -> Self {
        Hostile { val, clone_panics: false, drop_panics: false }
    }
    fn drop_bomb(val: u64) -> Self {
        Hostile { val, clone_panics: false, drop_panics: true }
    }
    fn clone_bomb(val: u64) -> Self {
        Hostile { val, clone_panics: true, drop_panics: false }
    }
}

impl Clone for Hostile {
    fn clone(&self) -> Self {
        if self.clone_panics {
            panic!("hostile Clone of {}", self.val);
        }
        Hostile::tame(self.val)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        // Never a second panic while unwinding: that would abort the test binary.
        if self.drop_panics && !std::thread::panicking() {
            panic!("hostile Drop of {}", self.val);
        }
    }
}

/// The result of a `MemoryStore` call (its futures are ready at once).
fn r<T>(f: std::future::Ready<T>) -> T {
    f.into_inner()
}

/// Whether `f` panicked in a hostile value's `Clone` or `Drop`; any other
/// panic (a failed check inside `f`, a bug in the store) goes on up.
fn panics<T>(f: impl FnOnce() -> T) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => false,
        Err(payload) => {
            if !is_hostile(&*payload, "hostile ") {
                std::panic::resume_unwind(payload);
            }
            true
        }
    }
}

/// Whether a panic payload is a message starting with `prefix`.
fn is_hostile(payload: &(dyn std::any::Any + Send), prefix: &str) -> bool {
    let message =
        payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    message.is_some_and(|m| m.starts_with(prefix))
}

/// Runs `f` to completion on this thread, parking while it waits.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Polls `f` once with a waker that does nothing: `None` if it is not ready.
/// A `get_or_set` on a `MemoryStore` whose loader is ready at once must be
/// ready on its first poll unless it waits on someone else's load.
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn meta(v: serde_json::Value) -> Metadata {
    v.as_object().cloned().expect("an object")
}

/// `[[[...1...]]]`, `depth` arrays deep.
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!([v]))
}

/// The store configurations every attack runs against.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// S3-FIFO with the default sharding (one shard at these sizes).
    S3Fifo,
    /// S3-FIFO split into 4 shards.
    S3FifoSharded,
    /// Exact LRU: reads take the lock exclusively.
    Lru,
    /// LRU without refresh on get: shared reads.
    LruNoRefresh,
    /// TTL (1 hour) with a capacity: evicts the entry closest to expiry.
    Ttl,
}

/// A capacity no test that uses it reaches, even if all its keys land in one of 4 shards.
const ROOM: usize = 64;

const KINDS: [Kind; 5] = [Kind::S3Fifo, Kind::S3FifoSharded, Kind::Lru, Kind::LruNoRefresh, Kind::Ttl];

fn build<V: Clone + Send + Sync + 'static>(kind: Kind, cap: usize, clock: &ManualClock) -> MemoryStore<V> {
    match kind {
        Kind::S3Fifo => MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).clock(clock.clone()).build(),
        Kind::S3FifoSharded => {
            MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).shards(4).clock(clock.clone()).build()
        }
        Kind::Lru => MemoryStore::builder(LruPolicy::new(cap).unwrap()).clock(clock.clone()).build(),
        Kind::LruNoRefresh => {
            MemoryStore::builder(LruPolicy::new(cap).unwrap().refresh_on_get(false)).clock(clock.clone()).build()
        }
        Kind::Ttl => {
            let policy = TtlPolicy::new(Duration::from_secs(3600)).unwrap().with_max_size(cap).unwrap();
            MemoryStore::builder(policy).clock(clock.clone()).build()
        }
    }
}

/// What was last written under each key (a key absent here must not be in the store).
type Model = HashMap<String, u64>;

fn set_tame(store: &MemoryStore<Hostile>, model: &mut Model, key: &str, val: u64) {
    r(store.set(key, Hostile::tame(val), SetOptions::new())).unwrap();
    model.insert(key.to_string(), val);
}

/// The store agrees with itself and with `model`: every listed key reads back
/// with the value last written for it, keys() and len() agree, no duplicates,
/// the capacity holds, and every key of `must_have` is there.
/// (It reads with `get`, so take the stats first.)
fn assert_consistent(store: &MemoryStore<Hostile>, model: &Model, cap: usize, must_have: &[&str], ctx: &str) {
    let len = store.len();
    let mut keys = r(store.keys(None)).unwrap();
    assert_eq!(keys.len(), len, "{ctx}: keys() and len() disagree: {keys:?}");
    assert!(len <= cap, "{ctx}: {len} entries > capacity {cap}");
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "{ctx}: a key is listed twice");
    for key in &keys {
        let Some(&want) = model.get(key) else { panic!("{ctx}: {key:?} is in the store but was never written") };
        assert!(r(store.contains(key)).unwrap(), "{ctx}: {key} listed but not contained");
        let got = r(store.get(key)).unwrap().map(|h| h.val);
        assert_eq!(got, Some(want), "{ctx}: {key} reads back wrong");
    }
    for key in must_have {
        assert!(keys.iter().any(|k| k == key), "{ctx}: {key} is lost; the store has {keys:?}");
    }
}

// ---------------------------------------------------------------------------
// Foreign code: a panicking Drop
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_drop_on_replace_keeps_the_new_value_and_every_other_entry() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        let mut model = Model::new();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            set_tame(&store, &mut model, k, i as u64);
        }
        r(store.set("bomb", Hostile::drop_bomb(100), SetOptions::new().metadata(meta(serde_json::json!({"m": 1})))))
            .unwrap();
        let replaced = panics(|| {
            r(store.set("bomb", Hostile::tame(101), SetOptions::new().metadata(meta(serde_json::json!({"m": 2})))))
        });
        assert!(replaced, "{kind:?}: the old value's Drop must have run (and panicked)");
        model.insert("bomb".into(), 101);
        let stats = store.stats();
        assert_eq!((stats.sets, stats.evictions, stats.expirations, stats.deletes), (5, 0, 0, 0), "{kind:?}");
        assert_eq!(store.len(), 4, "{kind:?}");
        assert_eq!(
            r(store.get_metadata("bomb")).unwrap(),
            Some(meta(serde_json::json!({"m": 2}))),
            "{kind:?}: the new metadata"
        );
        assert_consistent(&store, &model, ROOM, &["a", "b", "c", "bomb"], &format!("{kind:?}"));
        // Later calls work, the key included.
        set_tame(&store, &mut model, "bomb", 102);
        set_tame(&store, &mut model, "d", 3);
        assert_consistent(&store, &model, ROOM, &["a", "b", "c", "d", "bomb"], &format!("{kind:?} later"));
    }
}

#[test]
fn a_panicking_drop_on_eviction_loses_no_live_entry() {
    const CAP: usize = 8;
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, CAP, &clock);
        let mut model = Model::new();
        r(store.set("bomb", Hostile::drop_bomb(999), SetOptions::new())).unwrap();
        model.insert("bomb".into(), 999);
        let mut panicked = 0;
        for i in 0..100u64 {
            let key = format!("k{i}");
            if panics(|| r(store.set(&key, Hostile::tame(i), SetOptions::new())).unwrap()) {
                panicked += 1;
                model.remove("bomb");
            }
            model.insert(key.clone(), i);
            // The entry just set is there whatever was evicted for it (the
            // issue: "today a later, live entry is lost").
            assert!(r(store.contains(&key)).unwrap(), "{kind:?}: {key} lost right after its set");
            assert!(store.len() <= CAP, "{kind:?}: capacity exceeded after {key}");
        }
        assert_eq!(panicked, 1, "{kind:?}: the bomb is evicted exactly once");
        assert!(!r(store.contains("bomb")).unwrap(), "{kind:?}");
        let stats = store.stats();
        assert_eq!(stats.sets, 101, "{kind:?}");
        assert_eq!(store.len(), CAP, "{kind:?}: full");
        assert_eq!(stats.evictions, 101 - CAP as u64, "{kind:?}: every insert beyond the capacity evicted one");
        assert_eq!((stats.deletes, stats.expirations), (0, 0), "{kind:?}");
        assert_consistent(&store, &model, CAP, &["k99"], &format!("{kind:?}"));
        set_tame(&store, &mut model, "after", 1);
        assert_consistent(&store, &model, CAP, &["after"], &format!("{kind:?} later"));
    }
}

#[test]
fn a_panicking_drop_on_delete_removes_only_that_entry_and_counts_it() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        let mut model = Model::new();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            set_tame(&store, &mut model, k, i as u64);
        }
        r(store.set("bomb", Hostile::drop_bomb(7), SetOptions::new())).unwrap();
        assert!(panics(|| r(store.delete("bomb"))), "{kind:?}");
        let stats = store.stats();
        assert_eq!((stats.deletes, stats.sets, stats.evictions, stats.expirations), (1, 4, 0, 0), "{kind:?}");
        assert!(!r(store.delete("bomb")).unwrap(), "{kind:?}: already gone");
        assert_consistent(&store, &model, ROOM, &["a", "b", "c"], &format!("{kind:?}"));
        set_tame(&store, &mut model, "bomb", 8);
        assert_consistent(&store, &model, ROOM, &["a", "b", "c", "bomb"], &format!("{kind:?} later"));
    }
}

/// The calls that can find an expired entry and reclaim it.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Get,
    Contains,
    GetMetadata,
    UpdateMetadata,
    Delete,
    SetSameKey,
    SetOtherKey,
    Len,
    Keys,
    KeysPattern,
    Size,
    InvalidateIt,
    GetOrSet,
}

const TRIGGERS: [Trigger; 13] = [
    Trigger::Get,
    Trigger::Contains,
    Trigger::GetMetadata,
    Trigger::UpdateMetadata,
    Trigger::Delete,
    Trigger::SetSameKey,
    Trigger::SetOtherKey,
    Trigger::Len,
    Trigger::Keys,
    Trigger::KeysPattern,
    Trigger::Size,
    Trigger::InvalidateIt,
    Trigger::GetOrSet,
];

#[test]
fn a_panicking_drop_on_expiry_leaves_the_store_consistent_whatever_call_reclaims_it() {
    for kind in KINDS {
        for trigger in TRIGGERS {
            let ctx = format!("{kind:?}/{trigger:?}");
            let clock = ManualClock::new();
            let store = build::<Hostile>(kind, ROOM, &clock);
            let mut model = Model::new();
            for (i, k) in ["a", "b", "c"].iter().enumerate() {
                set_tame(&store, &mut model, k, i as u64);
            }
            r(store.set("bomb", Hostile::drop_bomb(9), SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
            clock.advance(Duration::from_secs(2));
            model.remove("bomb");
            let mut must_have = vec!["a", "b", "c"];
            let loaded = AtomicBool::new(false);
            let first = panics(|| match trigger {
                Trigger::Get => assert!(r(store.get("bomb")).unwrap().is_none()),
                Trigger::Contains => assert!(!r(store.contains("bomb")).unwrap()),
                Trigger::GetMetadata => assert!(r(store.get_metadata("bomb")).unwrap().is_none()),
                Trigger::UpdateMetadata => {
                    assert!(!r(store.update_metadata("bomb", meta(serde_json::json!({"x": 1})))).unwrap())
                }
                Trigger::Delete => assert!(!r(store.delete("bomb")).unwrap()),
                Trigger::SetSameKey => r(store.set("bomb", Hostile::tame(10), SetOptions::new())).unwrap(),
                Trigger::SetOtherKey => r(store.set("d", Hostile::tame(3), SetOptions::new())).unwrap(),
                Trigger::Len => assert_eq!(store.len(), 3),
                Trigger::Keys => assert_eq!(r(store.keys(None)).unwrap().len(), 3),
                Trigger::KeysPattern => assert!(r(store.keys(Some("b*"))).unwrap().is_empty()),
                Trigger::Size => assert_eq!(r(store.size()).unwrap(), 3),
                Trigger::InvalidateIt => assert_eq!(r(store.invalidate("bo*")).unwrap(), 0),
                Trigger::GetOrSet => {
                    let v = poll_once(store.get_or_set(
                        "bomb",
                        || async {
                            loaded.store(true, Ordering::SeqCst);
                            Hostile::tame(11)
                        },
                        SetOptions::new(),
                    ));
                    assert_eq!(v.expect("ready at once").unwrap().val, 11);
                }
            });
            match trigger {
                Trigger::SetSameKey => {
                    model.insert("bomb".into(), 10);
                    must_have.push("bomb");
                }
                Trigger::SetOtherKey => {
                    model.insert("d".into(), 3);
                    must_have.push("d");
                }
                Trigger::GetOrSet if loaded.load(Ordering::SeqCst) => {
                    model.insert("bomb".into(), 11);
                    must_have.push("bomb");
                }
                _ => {}
            }
            // A write reclaims expired entries of its own shard only; anything
            // still there goes now.
            let second = panics(|| store.len());
            assert_eq!(
                u8::from(first) + u8::from(second),
                1,
                "{ctx}: the bomb's Drop runs exactly once (first call panicked: {first})"
            );
            if !matches!((kind, trigger), (Kind::S3FifoSharded, Trigger::SetOtherKey)) {
                assert!(first, "{ctx}: this call reclaims the expired entry");
            }
            let stats = store.stats();
            assert_eq!(stats.expirations, 1, "{ctx}: {stats:?}");
            assert_eq!((stats.deletes, stats.evictions), (0, 0), "{ctx}: {stats:?}");
            let sets = 4
                + u64::from(matches!(trigger, Trigger::SetSameKey | Trigger::SetOtherKey))
                + u64::from(matches!(trigger, Trigger::GetOrSet) && loaded.load(Ordering::SeqCst));
            assert_eq!(stats.sets, sets, "{ctx}: {stats:?}");
            assert_consistent(&store, &model, ROOM, &must_have, &ctx);
            // Later calls work, the key included.
            set_tame(&store, &mut model, "bomb", 12);
            assert_consistent(&store, &model, ROOM, &["a", "b", "c", "bomb"], &format!("{ctx} later"));
        }
    }
}

#[test]
fn a_get_that_reclaims_a_panicking_value_still_counts_its_miss() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        r(store.set("bomb", Hostile::drop_bomb(9), SetOptions::new().ttl(Duration::from_secs(1)))).unwrap();
        clock.advance(Duration::from_secs(2));
        assert!(panics(|| r(store.get("bomb"))), "{kind:?}");
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (0, 1, 1), "{kind:?}: one get performed, a miss");
    }
}

/// 40 keys `a0..a39` and `b0..b19`, with a Drop bomb among the a's.
fn populated_with_bomb(kind: Kind, clock: &ManualClock) -> (MemoryStore<Hostile>, Model) {
    let store = build::<Hostile>(kind, 256, clock);
    let mut model = Model::new();
    for i in 0..40 {
        set_tame(&store, &mut model, &format!("a{i}"), i);
    }
    for i in 0..20 {
        set_tame(&store, &mut model, &format!("b{i}"), 100 + i);
    }
    r(store.set("a-bomb", Hostile::drop_bomb(999), SetOptions::new())).unwrap();
    (store, model)
}

#[test]
fn a_panicking_drop_in_invalidate_leaves_the_store_consistent_and_a_retry_finishes_the_job() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let (store, mut model) = populated_with_bomb(kind, &clock);
        assert!(panics(|| r(store.invalidate("a*"))), "{kind:?}");
        let after = r(store.keys(None)).unwrap();
        let removed = 61 - after.len() as u64;
        assert!(!after.iter().any(|k| k == "a-bomb"), "{kind:?}: the bomb was taken out before its Drop ran");
        assert_eq!(store.stats().deletes, removed, "{kind:?}: deletes counts exactly the entries removed");
        assert_eq!(store.stats().sets, 61, "{kind:?}");
        // Whatever is left is right: the b's all there, the a's with their values.
        model.remove("a-bomb");
        let b_keys: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
        let b_refs: Vec<&str> = b_keys.iter().map(String::as_str).collect();
        assert_consistent(&store, &model, 256, &b_refs, &format!("{kind:?}"));
        // A retry removes the rest of the a's and nothing else.
        let rest = after.iter().filter(|k| k.starts_with('a')).count();
        assert_eq!(r(store.invalidate("a*")).unwrap(), rest, "{kind:?}");
        for i in 0..40 {
            model.remove(&format!("a{i}"));
        }
        assert_eq!(store.len(), 20, "{kind:?}");
        assert_eq!(store.stats().deletes, 41, "{kind:?}: every a counted once, the bomb included");
        assert_consistent(&store, &model, 256, &b_refs, &format!("{kind:?} after retry"));
    }
}

#[test]
fn a_panicking_drop_in_clear_leaves_the_store_consistent_and_a_retry_empties_it() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let (store, model) = populated_with_bomb(kind, &clock);
        assert!(panics(|| r(store.clear())), "{kind:?}");
        let left = store.len() as u64;
        assert!(!r(store.contains("a-bomb")).unwrap(), "{kind:?}");
        assert_eq!(store.stats().deletes, 61 - left, "{kind:?}: deletes counts exactly the entries removed");
        assert_consistent(&store, &model, 256, &[], &format!("{kind:?}"));
        r(store.clear()).unwrap();
        assert_eq!(store.len(), 0, "{kind:?}");
        assert!(r(store.keys(None)).unwrap().is_empty(), "{kind:?}");
        assert_eq!(store.stats().deletes, 61, "{kind:?}");
        let mut model = Model::new();
        set_tame(&store, &mut model, "x", 1);
        assert_consistent(&store, &model, 256, &["x"], &format!("{kind:?} later"));
    }
}

#[test]
fn a_panicking_drop_does_not_stop_clear_or_invalidate_halfway_through_the_shards() {
    // std's collections finish a clear even when a Drop panics (Vec::clear,
    // HashMap::clear end up empty); a sharded store should not be half cleared.
    for shards in [4, 64] {
        let clock = ManualClock::new();
        let store =
            MemoryStore::<Hostile>::builder(S3FifoPolicy::new(4096).unwrap()).shards(shards).clock(clock).build();
        for i in 0..200 {
            r(store.set(&format!("a{i}"), Hostile::tame(i), SetOptions::new())).unwrap();
        }
        r(store.set("a-bomb", Hostile::drop_bomb(999), SetOptions::new())).unwrap();
        assert!(panics(|| r(store.invalidate("a*"))));
        assert_eq!(
            r(store.keys(Some("a*"))).unwrap(),
            Vec::<String>::new(),
            "{shards} shards: invalidate stopped halfway"
        );

        for i in 0..200 {
            r(store.set(&format!("a{i}"), Hostile::tame(i), SetOptions::new())).unwrap();
        }
        r(store.set("a-bomb", Hostile::drop_bomb(999), SetOptions::new())).unwrap();
        assert!(panics(|| r(store.clear())));
        assert_eq!(store.len(), 0, "{shards} shards: clear stopped halfway");
    }
}

// ---------------------------------------------------------------------------
// Foreign code: a panicking Clone
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_clone_in_get_changes_nothing_and_later_calls_work() {
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        let mut model = Model::new();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            set_tame(&store, &mut model, k, i as u64);
        }
        r(store.set("cb", Hostile::clone_bomb(5), SetOptions::new())).unwrap();
        for _ in 0..3 {
            assert!(panics(|| r(store.get("cb"))), "{ctx}");
        }
        // Still there, untouched (checked without cloning it).
        assert!(r(store.contains("cb")).unwrap(), "{ctx}");
        assert_eq!(store.len(), 4, "{ctx}");
        let stats = store.stats();
        assert!(stats.hits + stats.misses <= 3, "{ctx}: more gets counted than performed: {stats:?}");
        assert_eq!(stats.misses, 0, "{ctx}: the entry was there: {stats:?}");
        assert_eq!(stats.sets, 4, "{ctx}");
        // Every other entry reads back (the lock may be poisoned: it must not matter).
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(r(store.get(k)).unwrap().map(|h| h.val), Some(i as u64), "{ctx}: {k}");
        }
        // Replace it: the old value's Drop is harmless, the new one reads back.
        set_tame(&store, &mut model, "cb", 6);
        assert_consistent(&store, &model, ROOM, &["a", "b", "c", "cb"], &ctx);
        let v = poll_once(store.get_or_set("cb", || async { unreachable!("cached") }, SetOptions::new()));
        assert_eq!(v.expect("ready at once").unwrap().val, 6, "{ctx}");
    }
}

#[test]
fn a_panicking_clone_in_get_or_set_neither_wedges_the_key_nor_stores_anything() {
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        let mut model = Model::new();
        set_tame(&store, &mut model, "a", 1);

        // A hit whose clone panics.
        r(store.set("cb", Hostile::clone_bomb(5), SetOptions::new())).unwrap();
        assert!(
            panics(|| poll_once(store.get_or_set("cb", || async { Hostile::tame(0) }, SetOptions::new()))),
            "{ctx}"
        );
        assert!(r(store.contains("cb")).unwrap(), "{ctx}: the entry stays");
        set_tame(&store, &mut model, "cb", 6);
        let v = poll_once(store.get_or_set("cb", || async { unreachable!("cached") }, SetOptions::new()));
        assert_eq!(v.expect("ready at once: no flight left behind").unwrap().val, 6, "{ctx}");

        // A loader whose value panics when the store clones it.
        assert!(
            panics(|| poll_once(store.get_or_set("lb", || async { Hostile::clone_bomb(7) }, SetOptions::new()))),
            "{ctx}"
        );
        // The flight is over: the next caller leads its own load at once.
        let v = poll_once(store.get_or_set("lb", || async { Hostile::tame(8) }, SetOptions::new()));
        assert_eq!(v.expect("ready at once: the panicked load must not wedge the key").unwrap().val, 8, "{ctx}");
        model.insert("lb".into(), 8);
        assert_eq!(store.stats().loads, 2, "{ctx}");
        assert_consistent(&store, &model, ROOM, &["a", "cb", "lb"], &ctx);
    }
}

#[test]
fn get_or_set_survives_panicking_reentrant_and_overtaken_loaders() {
    type Load<'a> = Pin<Box<dyn Future<Output = pepperpy_caching::Result<Hostile>> + 'a>>;
    let mut cx = Context::from_waker(Waker::noop());
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);

        // A loader that panics: the key is not wedged, the next caller loads at once.
        let loader_panics = || async { panic!("hostile loader {}", 1) };
        assert!(panics(|| poll_once(store.get_or_set("p", loader_panics, SetOptions::new()))), "{ctx}");
        let v = poll_once(store.get_or_set("p", || async { Hostile::tame(2) }, SetOptions::new()));
        assert_eq!(v.expect("ready at once").unwrap().val, 2, "{ctx}");
        assert_eq!(r(store.get("p")).unwrap().map(|h| h.val), Some(2), "{ctx}");

        // A loader asking for its own key fails at once instead of waiting on itself.
        let store_ref = &store;
        let v = poll_once(store.get_or_set(
            "self",
            move || async move {
                let inner = store_ref.get_or_set("self", || async { Hostile::tame(0) }, SetOptions::new()).await;
                assert!(matches!(inner, Err(CacheError::Reentrant { .. })), "inner call: {inner:?}");
                Hostile::tame(3)
            },
            SetOptions::new(),
        ));
        assert_eq!(v.expect("ready at once, no deadlock").unwrap().val, 3, "{ctx}");
        assert_eq!(r(store.get("self")).unwrap().map(|h| h.val), Some(3), "{ctx}");

        // A leader whose loader panics with a follower waiting: the follower takes over.
        let open = AtomicBool::new(false);
        let gate = &open;
        let mut leader: Load = Box::pin(store.get_or_set(
            "f",
            move || async move {
                Gate(gate).await;
                panic!("hostile loader {}", 2)
            },
            SetOptions::new(),
        ));
        let mut follower: Load = Box::pin(store.get_or_set("f", || async { Hostile::tame(5) }, SetOptions::new()));
        assert!(leader.as_mut().poll(&mut cx).is_pending(), "{ctx}");
        assert!(follower.as_mut().poll(&mut cx).is_pending(), "{ctx}: waits on the leader");
        open.store(true, Ordering::SeqCst);
        assert!(panics(|| leader.as_mut().poll(&mut cx)), "{ctx}");
        drop(leader);
        match follower.as_mut().poll(&mut cx) {
            Poll::Ready(v) => assert_eq!(v.unwrap().val, 5, "{ctx}"),
            Poll::Pending => panic!("{ctx}: the follower was not handed the load"),
        }
        assert_eq!(r(store.get("f")).unwrap().map(|h| h.val), Some(5), "{ctx}");

        // A write during a load wins: the load returns its value but does not overwrite.
        let open = AtomicBool::new(false);
        let gate = &open;
        let mut load: Load = Box::pin(store.get_or_set(
            "w",
            move || async move {
                Gate(gate).await;
                Hostile::tame(7)
            },
            SetOptions::new(),
        ));
        assert!(load.as_mut().poll(&mut cx).is_pending(), "{ctx}");
        r(store.set("w", Hostile::tame(9), SetOptions::new())).unwrap();
        open.store(true, Ordering::SeqCst);
        match load.as_mut().poll(&mut cx) {
            Poll::Ready(v) => assert_eq!(v.unwrap().val, 7, "{ctx}"),
            Poll::Pending => panic!("{ctx}: the load did not finish"),
        }
        assert_eq!(r(store.get("w")).unwrap().map(|h| h.val), Some(9), "{ctx}: the newer write stays");
        let stats = store.stats();
        assert_eq!(stats.load_failures, 2, "{ctx}: the two panicking loaders failed: {stats:?}");
        assert_eq!(stats.sets, 4, "{ctx}: p, self, f and the write to w: {stats:?}");
        assert!(store.len() <= ROOM, "{ctx}");
    }
}

/// A value whose clone panics once, when armed (shared by all its clones).
#[derive(Debug)]
struct Tripwire {
    val: u64,
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Clone for Tripwire {
    fn clone(&self) -> Self {
        if self.armed.load(Ordering::SeqCst) && !self.fired.swap(true, Ordering::SeqCst) {
            panic!("hostile Clone of {}", self.val);
        }
        Tripwire { val: self.val, armed: Arc::clone(&self.armed), fired: Arc::clone(&self.fired) }
    }
}

#[test]
fn a_follower_whose_copy_panics_does_not_break_the_other_followers() {
    type Load<'a> = Pin<Box<dyn Future<Output = pepperpy_caching::Result<Tripwire>> + 'a>>;
    let mut cx = Context::from_waker(Waker::noop());
    for kind in KINDS {
        let ctx = format!("{kind:?}");
        let clock = ManualClock::new();
        let store = build::<Tripwire>(kind, ROOM, &clock);
        let (armed, fired) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let open = AtomicBool::new(false);
        let gate = &open;
        let wire = Tripwire { val: 1, armed: Arc::clone(&armed), fired: Arc::clone(&fired) };
        let mut leader: Load = Box::pin(store.get_or_set(
            "k",
            move || async move {
                Gate(gate).await;
                wire
            },
            SetOptions::new(),
        ));
        let never = || async { unreachable!("the followers wait for the leader") };
        let mut followers: Vec<Load> =
            (0..3).map(|_| Box::pin(store.get_or_set("k", never, SetOptions::new())) as Load).collect();
        assert!(leader.as_mut().poll(&mut cx).is_pending(), "{ctx}");
        for f in &mut followers {
            assert!(f.as_mut().poll(&mut cx).is_pending(), "{ctx}");
        }
        open.store(true, Ordering::SeqCst);
        match leader.as_mut().poll(&mut cx) {
            Poll::Ready(v) => assert_eq!(v.unwrap().val, 1, "{ctx}"),
            Poll::Pending => panic!("{ctx}: the leader did not finish"),
        }
        // The next copy of the shared value panics: the first follower's.
        armed.store(true, Ordering::SeqCst);
        let mut first = followers.remove(0);
        assert!(panics(|| first.as_mut().poll(&mut cx)), "{ctx}");
        drop(first);
        assert!(fired.load(Ordering::SeqCst), "{ctx}");
        for mut f in followers {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(v) => assert_eq!(v.unwrap().val, 1, "{ctx}"),
                Poll::Pending => panic!("{ctx}: a follower was left waiting"),
            }
        }
        assert_eq!(r(store.get("k")).unwrap().map(|w| w.val), Some(1), "{ctx}");
        let v = poll_once(store.get_or_set("k", never, SetOptions::new()));
        assert_eq!(v.expect("ready at once").unwrap().val, 1, "{ctx}");
        let stats = store.stats();
        assert_eq!((stats.loads, stats.sets), (1, 1), "{ctx}: one load for all: {stats:?}");
    }
}

#[test]
fn loads_counts_every_loader_run_started() {
    let mut cx = Context::from_waker(Waker::noop());
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = build::<Hostile>(kind, ROOM, &clock);
        assert!(panics(|| poll_once(store.get_or_set(
            "p",
            || async { panic!("hostile loader {}", 1) },
            SetOptions::new()
        ))));
        {
            let mut load = Box::pin(store.get_or_set("d", std::future::pending::<Hostile>, SetOptions::new()));
            assert!(load.as_mut().poll(&mut cx).is_pending());
        } // dropped mid-load (a timeout, a cancelled request)
        let stats = store.stats();
        assert_eq!(stats.loads, 2, "{kind:?}: two loader runs were started: {stats:?}");
    }
}

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
// Threads
// ---------------------------------------------------------------------------

use common::rng::Rng;

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

/// A future that is pending until `open` is set (the test polls by hand).
struct Gate<'a>(&'a AtomicBool);
impl Future for Gate<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
    }
}

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

/// 16 callers of one key; the leader's loader panics. The load passes to one
/// follower, whose loader succeeds: two loader runs, one of them failed.
#[test]
fn a_panicking_loader_counts_as_a_failed_load() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let store = Arc::new(build::<u64>(kind, ROOM, &clock));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (results, runs) =
            runtime.block_on(common::sixteen_callers_and_a_panicking_leader(Arc::clone(&store), 7u64));
        let panicked = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(panicked, 1, "{kind:?}: only the leader's task panicked");
        assert!(results.iter().flatten().all(|v| matches!(v, Ok(7))), "{kind:?}");
        let stats = store.stats();
        assert_eq!(runs, 2, "{kind:?}: one follower took the load over");
        assert_eq!((stats.loads, stats.load_failures), (2, 1), "{kind:?}: the panic is a failed load: {stats:?}");
    }
}
