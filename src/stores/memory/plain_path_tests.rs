//! The short paths of a plain `set` (`Engine::update_plain` for a key held,
//! `Engine::insert_plain` for a new one, which puts the new entry in the
//! evicted entry's slot and, without a listener, its key in the evicted
//! key's buffer) against the full path (`Engine::set`), step by step: two
//! engines with one hasher (the adaptive policy samples keys by hash) and
//! one clock, the same operations, one through the store's order of paths,
//! the other through the full path alone. After every step both must have
//! removed the same entries (key, value, reason: with a listener the keys
//! whole, without one a recycled key empty on both), hold the same keys in
//! the same order, count the same, keep the same loads in flight and pass
//! their invariants. Operations with options, TTLs and refreshes switch the
//! engine between plain and not plain along the way.

use std::time::Duration;

use proptest::prelude::*;

use super::engine::{KeyHasher, Removed};
use super::test_support::StrEngine;
use crate::clock::{Clock, ManualClock};
use crate::key::Key;
use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy};
use crate::refresh::RefreshOptions;
use crate::removal::RemovalReason;
use crate::store::{Metadata, SetOptions};

/// Keys of several lengths: a new key finds an evicted one as long (its
/// buffer reused) or not (a new buffer).
const KEYS: &[&str] = &["a", "b", "kk", "k1", "k2", "key", "k10", "k11", "long-key-1", "long-key-2", "x"];

#[derive(Clone, Debug)]
enum Op {
    /// A plain `set`: the short paths on one engine, the full one on the other.
    Set(usize, u32),
    /// A `set` with a TTL (the full path on both; the engine is then not plain until it leaves).
    SetTtl(usize, u32, u64),
    /// A `set` with metadata (the full path on both).
    SetMeta(usize, u32),
    Get(usize),
    Delete(usize),
    /// A load begins (a placeholder a later write of the key cancels).
    Load(usize),
    /// A `get_or_refresh` load stored: fresh, with a TTL.
    Refresh(usize, u32),
    GetFresh(usize),
    Advance(u64),
    Invalidate,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    prop_oneof![
        12 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Set(k, v)),
        1 => (k.clone(), any::<u32>(), 1u64..4).prop_map(|(k, v, s)| Op::SetTtl(k, v, s)),
        1 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::SetMeta(k, v)),
        6 => k.clone().prop_map(Op::Get),
        1 => k.clone().prop_map(Op::Delete),
        1 => k.clone().prop_map(Op::Load),
        1 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Refresh(k, v)),
        1 => k.prop_map(Op::GetFresh),
        2 => (0u64..5).prop_map(Op::Advance),
        1 => Just(Op::Invalidate),
        1 => Just(Op::Clear),
    ]
}

fn policies(capacity: usize) -> Vec<Policy> {
    vec![
        LruPolicy::new(capacity).unwrap().into(),
        LruPolicy::new(capacity).unwrap().refresh_on_get(false).into(),
        S3FifoPolicy::new(capacity).unwrap().into(),
        S3FifoPolicy::new(capacity).unwrap().adaptive(false).into(),
        TtlPolicy::new(Duration::from_secs(3)).unwrap().with_max_size(capacity).unwrap().into(),
        LruPolicy::new(capacity).unwrap().with_default_ttl(Duration::from_secs(3)).unwrap().into(),
    ]
}

/// A runtime that never runs anything: the refreshes are driven by hand.
struct NoRuntime;

impl crate::refresh::Runtime for NoRuntime {
    fn spawn(&self, _task: crate::refresh::BoxFuture<()>) {}
    fn sleep(&self, _duration: Duration) -> crate::refresh::BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

type Notice = (Box<str>, u32, RemovalReason);

fn notices(removed: impl IntoIterator<Item = Removed<u32>>, key: &str) -> Vec<Notice> {
    removed.into_iter().map(|r| r.into_notice(key)).collect()
}

/// The store's order of paths for a plain `set`; what it removed.
fn set_short(e: &mut StrEngine<u32>, key: &str, value: u32) -> Vec<Notice> {
    let k = Key::new(key).unwrap();
    let hash = e.hash(&k);
    let (value, absent) = match e.update_plain(k, hash, value) {
        Ok((old, metadata)) => return notices(old.map(|old| Removed::replaced(Some(old), metadata)), key),
        Err((value, true)) => match e.insert_plain(k, hash, value) {
            Ok(evicted) => return notices(evicted, key),
            Err(value) => (value, true),
        },
        Err(back) => back,
    };
    let mut removed = super::engine::Removals::new();
    e.set_into_known(k, hash, value, SetOptions::new(), &mut removed, absent).unwrap();
    notices(removed.into_entries(), key)
}

/// The full path; what it removed.
fn set_full(e: &mut StrEngine<u32>, key: &str, value: u32) -> Vec<Notice> {
    let k = Key::new(key).unwrap();
    let hash = e.hash(&k);
    let engine: &mut super::engine::Engine<u32> = e;
    notices(engine.set(k, hash, value, SetOptions::new()).unwrap().into_entries(), key)
}

fn check(short: &mut StrEngine<u32>, full: &mut StrEngine<u32>, at: &str) -> Result<(), TestCaseError> {
    short.validate();
    full.validate();
    prop_assert_eq!(short.keys(None).unwrap(), full.keys(None).unwrap(), "keys and their order after {}", at);
    prop_assert_eq!(short.stats(), full.stats(), "counters after {}", at);
    prop_assert_eq!(short.loads_in_progress(), full.loads_in_progress(), "loads after {}", at);
    prop_assert_eq!(short.take_orphans().len(), full.take_orphans().len(), "orphans after {}", at);
    Ok(())
}

fn run(policy: Policy, listening: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let hasher = KeyHasher::default();
    let engine = || {
        let mut e = StrEngine::with_hasher(policy.clone(), Clock::from(clock.clone()), hasher.clone());
        if listening {
            e.keep_orphans();
        }
        e
    };
    let (mut short, mut full) = (engine(), engine());
    let refresh = RefreshOptions::new(NoRuntime, Duration::from_secs(2), Duration::from_secs(2));
    for (step, op) in ops.iter().enumerate() {
        let at = format!("step {step} {op:?} ({policy:?}, listening {listening})");
        match *op {
            Op::Set(k, v) => {
                prop_assert_eq!(set_short(&mut short, KEYS[k], v), set_full(&mut full, KEYS[k], v), "{}", at);
            }
            Op::SetTtl(k, v, secs) => {
                let options = || SetOptions::new().ttl(Duration::from_secs(secs));
                short.set(KEYS[k], v, options()).unwrap();
                full.set_full(KEYS[k], v, options()).unwrap();
            }
            Op::SetMeta(k, v) => {
                let options = || SetOptions::new().metadata(Metadata::new());
                short.set(KEYS[k], v, options()).unwrap();
                full.set_full(KEYS[k], v, options()).unwrap();
            }
            Op::Get(k) => prop_assert_eq!(short.get(KEYS[k]).unwrap(), full.get(KEYS[k]).unwrap(), "{}", at),
            Op::Delete(k) => prop_assert_eq!(short.delete(KEYS[k]).unwrap(), full.delete(KEYS[k]).unwrap(), "{}", at),
            Op::Load(k) => prop_assert_eq!(short.begin_load(KEYS[k]), full.begin_load(KEYS[k]), "{}", at),
            Op::Refresh(k, v) => {
                let (a, b) = (short.begin_load(KEYS[k]), full.begin_load(KEYS[k]));
                let a = notices(short.finish_refresh(KEYS[k], a, Ok(v), &refresh, false).unwrap().into_entries(), "");
                let b = notices(full.finish_refresh(KEYS[k], b, Ok(v), &refresh, false).unwrap().into_entries(), "");
                prop_assert_eq!(a, b, "{}", at);
            }
            Op::GetFresh(k) => {
                let read = |e: &mut StrEngine<u32>| match e.get_fresh(KEYS[k]).unwrap() {
                    super::engine::Freshly::Fresh(v) => Some((v, None)),
                    super::engine::Freshly::Stale { value, refresh } => Some((value, Some(refresh))),
                    super::engine::Freshly::Miss => None,
                };
                prop_assert_eq!(read(&mut short), read(&mut full), "{}", at);
            }
            Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
            Op::Invalidate => {
                prop_assert_eq!(short.invalidate("k*").unwrap(), full.invalidate("k*").unwrap(), "{}", at)
            }
            Op::Clear => {
                short.clear();
                full.clear();
            }
        }
        check(&mut short, &mut full, &at)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(super::model_tests::fuzz_cases(256)))]

    #[test]
    fn the_short_paths_do_what_the_full_path_does(
        capacity in 1usize..6,
        listening in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        for policy in policies(capacity) {
            run(policy, listening, &ops)?;
        }
    }
}

/// Churn of new keys into a full engine without a listener: each new key
/// takes the evicted entry's slot and, when as long, its key's buffer.
#[test]
fn churn_reuses_the_victims_slot_and_key_buffer() {
    for policy in policies(4).into_iter().take(4) {
        let mut e = StrEngine::<u32>::new(policy.clone(), ManualClock::new().into());
        for i in 0..4 {
            e.set(&format!("old-{i}"), i, SetOptions::new()).unwrap();
        }
        for i in 0..100u32 {
            let key = format!("new-{i:02}");
            let before = e.keys(None).unwrap();
            let k = Key::new(&key).unwrap();
            let hash = e.hash(&k);
            let Err((value, true)) = e.update_plain(k, hash, i) else { panic!("a new key") };
            let Ok(Some(evicted)) = e.insert_plain(k, hash, value) else { panic!("{policy:?}: an eviction") };
            let after = e.keys(None).unwrap();
            let gone: Vec<&String> = before.iter().filter(|k| !after.contains(k)).collect();
            assert_eq!(gone.len(), 1, "{policy:?} {i}");
            let (old_key, _, reason) = evicted.into_notice("");
            assert_eq!(reason, RemovalReason::Evicted, "{policy:?}");
            // "old-N" and "new-NN" differ in length: a new buffer; two new keys are as long: reused.
            if gone[0].len() == key.len() {
                assert_eq!(&*old_key, "", "{policy:?} {i}");
            } else {
                assert_eq!(&*old_key, gone[0].as_str(), "{policy:?} {i}");
            }
            assert_eq!(e.peek(&key), Some(i));
            e.validate();
        }
        assert_eq!(e.raw_len(), 4);
        assert_eq!(e.stats().evictions, 100);
    }
}
