#![cfg(not(target_arch = "wasm32"))]
//! A value whose `Clone` or `Drop` calls back into the store that runs it.
//!
//! `MemoryStore::get` clones the value under its shard's lock, and an expired
//! value may be dropped under it: a call from there into the same store would
//! wait on a lock its own thread holds, for ever (std locks are not
//! re-entrant). The rule: such a call fails at once with
//! `CacheError::ReentrantValue` (the calls that return no `Result`, `len` and
//! `stats`, panic with that message). Every test runs its body on a thread of
//! its own and fails if that thread has not finished within 10 s, so a
//! deadlock is a failure, not a hung test run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, Policy, S3FifoPolicy, SetOptions, TtlPolicy,
};

#[path = "support/deadline.rs"]
mod deadline;

/// Runs `body` on its own thread; fails if it panics or runs for more than 10 s.
fn within_10s(what: &str, body: impl FnOnce() + Send + 'static) {
    deadline::on_thread_within(what, Duration::from_secs(10), body);
}

/// What a value's callback does with the store, and what it got.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    GetSameKey,
    GetOtherKey,
    Set,
    Delete,
    Invalidate,
    Keys,
    Size,
    GetOrSet,
    GetMany,
    SetMany,
    DeleteMany,
}

const CALLS: [Call; 11] = [
    Call::GetSameKey,
    Call::GetOtherKey,
    Call::Set,
    Call::Delete,
    Call::Invalidate,
    Call::Keys,
    Call::Size,
    Call::GetOrSet,
    Call::GetMany,
    Call::SetMany,
    Call::DeleteMany,
];

type Outcomes = Arc<Mutex<Vec<Result<(), CacheError>>>>;

/// Where a value finds the store it lives in.
type Home = Arc<OnceLock<Weak<MemoryStore<Reentrant>>>>;

/// A value whose `Clone` (when `on_clone`) or `Drop` (when `on_drop`) makes
/// `call` on `store`, recording the outcome. Only the first call back fires
/// (a clone made inside it is tame), so nothing recurses.
struct Reentrant {
    store: Home,
    call: Call,
    on_clone: bool,
    on_drop: bool,
    fired: Arc<AtomicBool>,
    outcomes: Outcomes,
}

impl Reentrant {
    /// A value whose first `Clone` (when `on_clone`) or `Drop` (when
    /// `on_drop`) makes `call` on the store in `home`.
    fn armed(home: &Home, call: Call, on_clone: bool, on_drop: bool, outcomes: &Outcomes) -> Self {
        Reentrant {
            store: Arc::clone(home),
            call,
            on_clone,
            on_drop,
            fired: Arc::new(AtomicBool::new(false)),
            outcomes: Arc::clone(outcomes),
        }
    }

    fn call_back(&self) {
        if self.fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(store) = self.store.get().and_then(Weak::upgrade) else { return };
        let outcome = match self.call {
            Call::GetSameKey => store.get("k").into_inner().map(drop),
            Call::GetOtherKey => store.get("other").into_inner().map(drop),
            Call::Set => store.set("other", self.tame(), SetOptions::new()).into_inner(),
            Call::Delete => store.delete("k").into_inner().map(drop),
            Call::Invalidate => store.invalidate("*").into_inner().map(drop),
            Call::Keys => store.keys(None).into_inner().map(drop),
            Call::Size => store.size().into_inner().map(drop),
            Call::GetOrSet => {
                let tame = self.tame();
                let load = store.get_or_set("other", move || async move { tame }, SetOptions::new());
                futures_lite_block_on(load).map(drop)
            }
            Call::GetMany => store.get_many(&["other", "k"]).into_inner().map(drop),
            Call::SetMany => store.set_many(vec![("other", self.tame())], SetOptions::new()).into_inner(),
            Call::DeleteMany => store.delete_many(&["other", "k"]).into_inner().map(drop),
        };
        self.outcomes.lock().unwrap().push(outcome);
    }

    fn tame(&self) -> Reentrant {
        Reentrant {
            store: Arc::clone(&self.store),
            call: self.call,
            on_clone: false,
            on_drop: false,
            fired: Arc::new(AtomicBool::new(true)),
            outcomes: Arc::clone(&self.outcomes),
        }
    }
}

impl Clone for Reentrant {
    fn clone(&self) -> Self {
        if self.on_clone {
            self.call_back();
        }
        self.tame()
    }
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        if self.on_drop {
            self.call_back();
        }
    }
}

/// Polls a future that needs no waking (every MemoryStore future is ready
/// or finishes without waiting here).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("lru", LruPolicy::new(100).unwrap().into()),
        ("s3fifo", S3FifoPolicy::new(100).unwrap().into()),
        ("ttl", TtlPolicy::new(Duration::from_secs(3600)).unwrap().into()),
    ]
}

fn store_with(policy: Policy, shards: usize, clock: &ManualClock) -> (Arc<MemoryStore<Reentrant>>, Home) {
    let store = Arc::new(MemoryStore::builder(policy).shards(shards).clock(clock.clone()).build());
    let cell = Arc::new(OnceLock::new());
    cell.set(Arc::downgrade(&store)).ok().unwrap();
    (store, cell)
}

fn is_reentrant_error(outcome: &Result<(), CacheError>) -> bool {
    outcome.is_err()
}

#[test]
fn a_clone_that_calls_the_same_store_gets_an_error_not_a_deadlock() {
    for (name, policy) in policies() {
        for shards in [1, 8] {
            for call in CALLS {
                let what = format!("{name}, {shards} shards, Clone calls {call:?}");
                let what2 = what.clone();
                let policy = policy.clone();
                within_10s(&what, move || {
                    let clock = ManualClock::new();
                    let (store, cell) = store_with(policy, shards, &clock);
                    let outcomes: Outcomes = Arc::default();
                    let value = Reentrant::armed(&cell, call, true, false, &outcomes);
                    store.set("k", value, SetOptions::new()).into_inner().unwrap();
                    // The get clones the value under the shard's lock; the clone calls back.
                    let got = store.get("k").into_inner().unwrap();
                    assert!(got.is_some(), "{what2}: the get itself still answers");
                    let outcomes = outcomes.lock().unwrap();
                    assert_eq!(outcomes.len(), 1, "{what2}: the callback ran once");
                    assert!(is_reentrant_error(&outcomes[0]), "{what2}: {:?}", outcomes[0]);
                    let message = outcomes[0].as_ref().unwrap_err().to_string();
                    assert!(message.contains("Clone or Drop") && message.contains("deadlock"), "{message}");
                    drop(outcomes);
                    // Nothing changed and the store works afterwards, from outside a value.
                    assert_eq!(store.len(), 1, "{what2}");
                    assert!(store.get("k").into_inner().unwrap().is_some());
                    store.set("other", got.unwrap(), SetOptions::new()).into_inner().unwrap();
                    assert_eq!(store.len(), 2, "{what2}");
                });
            }
        }
    }
}

#[test]
fn a_drop_of_an_expired_value_under_the_lock_that_calls_the_store_gets_an_error() {
    for (name, policy) in policies() {
        let what = format!("{name}: Drop of a value reclaimed by get calls get");
        let what2 = what.clone();
        within_10s(&what, move || {
            let clock = ManualClock::new();
            let (store, cell) = store_with(policy, 1, &clock);
            let outcomes: Outcomes = Arc::default();
            let value = Reentrant::armed(&cell, Call::GetOtherKey, false, true, &outcomes);
            store.set("k", value, SetOptions::new().ttl(Duration::from_secs(1))).into_inner().unwrap();
            clock.advance(Duration::from_secs(2));
            // Either the get drops the expired value under its lock (the call
            // back fails) or after it (the call back works): never a deadlock.
            assert!(store.get("k").into_inner().unwrap().is_none(), "{what2}");
            let outcomes = outcomes.lock().unwrap();
            assert_eq!(outcomes.len(), 1, "{what2}: the Drop ran once");
            assert!(outcomes[0].is_ok() || is_reentrant_error(&outcomes[0]), "{what2}: {:?}", outcomes[0]);
        });
    }
}

#[test]
fn len_and_stats_from_inside_a_clone_panic_with_a_clear_message() {
    for (name, policy) in policies() {
        let what = format!("{name}: Clone calls len");
        within_10s(&what, move || {
            #[derive(Debug)]
            struct CallsLen(Arc<OnceLock<Weak<MemoryStore<CallsLen>>>>, Arc<AtomicBool>);
            impl Clone for CallsLen {
                fn clone(&self) -> Self {
                    if !self.1.swap(true, Ordering::SeqCst)
                        && let Some(store) = self.0.get().and_then(Weak::upgrade)
                    {
                        let _ = store.len();
                    }
                    CallsLen(Arc::clone(&self.0), Arc::clone(&self.1))
                }
            }
            let store = Arc::new(MemoryStore::builder(policy).clock(ManualClock::new()).build());
            let cell = Arc::new(OnceLock::new());
            cell.set(Arc::downgrade(&store)).ok().unwrap();
            store.set("k", CallsLen(cell, Arc::new(AtomicBool::new(false))), SetOptions::new()).into_inner().unwrap();
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.get("k").into_inner()))
                .expect_err("len from inside a Clone panics");
            let message = panicked
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panicked.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert!(message.contains("len") && message.contains("deadlock"), "{message}");
            // The store still works (the panic left the lock consistent).
            assert_eq!(store.len(), 1);
            assert!(store.get("k").into_inner().unwrap().is_some());
        });
    }
}

/// Two threads, two shards: each value's Clone calls into the other's shard.
/// Allowed, the two could wait on each other for ever; refused, they cannot.
#[test]
fn clones_calling_across_shards_on_two_threads_never_deadlock() {
    within_10s("cross-shard clones on two threads", || {
        let clock = ManualClock::new();
        let (store, cell) = store_with(S3FifoPolicy::new(1000).unwrap().into(), 16, &clock);
        let outcomes: Outcomes = Arc::default();
        for key in ["k", "other"] {
            let value = Reentrant::armed(&cell, Call::Set, true, false, &outcomes);
            store.set(key, value, SetOptions::new()).into_inner().unwrap();
        }
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _ = store.get(if i == 0 { "k" } else { "other" }).into_inner();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(outcomes.lock().unwrap().iter().all(is_reentrant_error));
    });
}

/// A value whose first `Clone` makes a `get` of `"k"` on `target` (another
/// store, or the one it lives in further down a chain) and records the
/// outcome; the clones it hands out are tame.
/// Where a `Hop` finds the store its `Clone` reads.
type HopTarget = Arc<OnceLock<Weak<MemoryStore<Hop>>>>;

struct Hop {
    target: HopTarget,
    fired: Arc<AtomicBool>,
    outcomes: Outcomes,
    panic_on_clone: bool,
}

impl Hop {
    fn new(target: &HopTarget, outcomes: &Outcomes) -> Self {
        Hop {
            target: Arc::clone(target),
            fired: Arc::new(AtomicBool::new(false)),
            outcomes: Arc::clone(outcomes),
            panic_on_clone: false,
        }
    }
}

impl Clone for Hop {
    fn clone(&self) -> Self {
        assert!(!self.panic_on_clone, "a Clone that panics");
        if !self.fired.swap(true, Ordering::SeqCst)
            && let Some(store) = self.target.get().and_then(Weak::upgrade)
        {
            let outcome = store.get("k").into_inner().map(drop);
            self.outcomes.lock().unwrap().push(outcome);
        }
        Hop {
            target: Arc::clone(&self.target),
            fired: Arc::new(AtomicBool::new(true)),
            outcomes: Arc::clone(&self.outcomes),
            panic_on_clone: false,
        }
    }
}

fn hop_store() -> (Arc<MemoryStore<Hop>>, HopTarget) {
    let store = Arc::new(MemoryStore::builder(LruPolicy::new(100).unwrap()).shards(1).build());
    let cell = Arc::new(OnceLock::new());
    cell.set(Arc::downgrade(&store)).ok().unwrap();
    (store, cell)
}

/// Stores A and B, one entry `"k"` each; A's value's `Clone` reads B, and
/// B's reads A when `b_reads_a` (else it calls nothing). Reads A's entry;
/// returns what the clones' calls got, innermost first.
fn read_a_whose_clone_reads_b(b_reads_a: bool) -> Vec<Result<(), CacheError>> {
    let outcomes: Outcomes = Arc::default();
    let (a, a_cell) = hop_store();
    let (b, b_cell) = hop_store();
    let b_target = if b_reads_a { a_cell } else { Arc::new(OnceLock::new()) };
    b.set("k", Hop::new(&b_target, &outcomes), SetOptions::new()).into_inner().unwrap();
    a.set("k", Hop::new(&b_cell, &outcomes), SetOptions::new()).into_inner().unwrap();
    assert!(a.get("k").into_inner().unwrap().is_some());
    std::mem::take(&mut *outcomes.lock().unwrap())
}

#[test]
fn a_clone_that_calls_another_store_on_the_same_thread_is_not_refused() {
    within_10s("a clone calling another store", || {
        let outcomes = read_a_whose_clone_reads_b(false);
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0].is_ok(), "a call into another store was refused: {:?}", outcomes[0]);
    });
}

#[test]
fn a_chain_of_clones_back_into_the_first_store_gets_an_error_not_a_deadlock() {
    // A's value's Clone reads B, whose value's Clone reads A again: A's
    // shard is still held by this thread, two locks further up.
    within_10s("A -> B -> A through clones", || {
        let outcomes = read_a_whose_clone_reads_b(true);
        // Innermost first: B's clone calling A is refused; A's call into B is fine.
        assert_eq!(outcomes.len(), 2);
        assert!(matches!(outcomes[0], Err(CacheError::ReentrantValue { .. })), "{:?}", outcomes[0]);
        assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    });
}

#[test]
fn a_clone_that_panics_leaves_the_thread_free_to_call_the_store_again() {
    within_10s("a panicking clone, then more calls on the same thread", || {
        let outcomes: Outcomes = Arc::default();
        let (a, _) = hop_store();
        let (b, _) = hop_store();
        let mut bad = Hop::new(&Arc::new(OnceLock::new()), &outcomes);
        bad.panic_on_clone = true;
        a.set("bad", bad, SetOptions::new()).into_inner().unwrap();
        let tame = Hop::new(&Arc::new(OnceLock::new()), &outcomes);
        a.set("k", tame.clone(), SetOptions::new()).into_inner().unwrap();
        b.set("k", tame, SetOptions::new()).into_inner().unwrap();
        a.set("x", Hop::new(&Arc::new(OnceLock::new()), &outcomes), SetOptions::new()).into_inner().unwrap();
        for _ in 0..3 {
            let a = Arc::clone(&a);
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.get("bad").into_inner()));
            assert!(unwound.is_err());
            // The mark the shard guard set was taken down by the unwind.
            assert!(a.get("k").into_inner().unwrap().is_some());
            assert!(b.get("k").into_inner().unwrap().is_some());
            assert_eq!(a.len(), 3);
            assert!(a.delete("x").into_inner().unwrap());
            a.set("x", Hop::new(&Arc::new(OnceLock::new()), &outcomes), SetOptions::new()).into_inner().unwrap();
        }
    });
}

/// The batch calls as the outer call: a value's `Clone` run by `get_many`
/// runs under the shard's lock (a call back is refused, the batch still
/// answers); the values `set_many` replaces and `delete_many` removes are
/// dropped after every lock is released (a call back from their `Drop`
/// succeeds).
#[test]
fn batch_calls_clone_under_the_lock_and_drop_after_it() {
    for (name, policy) in policies() {
        for shards in [1, 8] {
            let what = format!("{name}, {shards} shards");
            let policy = policy.clone();
            within_10s(&what.clone(), move || {
                let clock = ManualClock::new();
                let (store, cell) = store_with(policy, shards, &clock);
                let outcomes: Outcomes = Arc::default();
                let value = Reentrant::armed(&cell, Call::GetOtherKey, true, false, &outcomes);
                store.set("k", value, SetOptions::new()).into_inner().unwrap();
                let got = store.get_many(&["k", "missing", "k"]).into_inner().unwrap();
                assert!(got[0].is_some() && got[1].is_none() && got[2].is_some(), "{what}");
                let tame = got.into_iter().flatten().next().unwrap();
                {
                    let outcomes = outcomes.lock().unwrap();
                    assert_eq!(outcomes.len(), 1, "{what}: the callback ran once");
                    assert!(is_reentrant_error(&outcomes[0]), "{what}: {:?}", outcomes[0]);
                }
                for replace in [true, false] {
                    let outcomes: Outcomes = Arc::default();
                    let value = Reentrant::armed(&cell, Call::GetOtherKey, false, true, &outcomes);
                    store.set("d", value, SetOptions::new()).into_inner().unwrap();
                    if replace {
                        let entries = vec![("d", tame.clone()), ("e", tame.clone())];
                        store.set_many(entries, SetOptions::new()).into_inner().unwrap();
                    } else {
                        assert_eq!(store.delete_many(&["d", "e"]).into_inner().unwrap(), 2, "{what}");
                    }
                    let outcomes = outcomes.lock().unwrap();
                    assert_eq!(outcomes.len(), 1, "{what}: the Drop called back");
                    assert!(outcomes[0].is_ok(), "{what}, replace {replace}: {:?}", outcomes[0]);
                }
            });
        }
    }
}
