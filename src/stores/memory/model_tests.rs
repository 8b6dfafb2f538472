//! Model-based tests: the engine against a deliberately naive reference.
//!
//! The model keeps entries in a `Vec` in recency order and purges expired
//! entries eagerly at every step; the engine does everything lazily and in
//! O(1)/O(log n). Random operation sequences must give identical answers, and
//! the engine's invariants (capacity bound, expiry index) are checked after
//! every step.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::test_support::{StrEngine, check_counters};
use crate::clock::ManualClock;
use crate::metrics::CacheStats;
use crate::pattern::Pattern;
use crate::policies::{LruPolicy, Policy, TtlPolicy};
use crate::store::{Metadata, SetOptions};

pub(super) const KEYS: &[&str] = &["a", "b", "ab", "user:1", "user:2", "user:10", "post:1", "x*y", "é", "a b\nc"];
pub(super) const PATTERNS: &[&str] =
    &["*", "a*", "user:*", "user:?", "user:[12]", "user:[^1]*", "*:1", "x\\*y", "x*y", "?", "??", "[a-b]*", "nomatch"];

#[derive(Clone, Debug)]
pub(super) enum Op {
    Set { key: usize, value: u32, ttl_secs: Option<u64>, meta: Option<u8>, idle_secs: Option<u64> },
    Get(usize),
    Delete(usize),
    Contains(usize),
    GetMetadata(usize),
    UpdateMetadata(usize, u8),
    Invalidate(usize),
    Keys(Option<usize>),
    Len,
    Clear,
    Advance(u64),
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (key.clone(), any::<u32>(), proptest::option::of(1u64..6), proptest::option::of(0u8..4), proptest::option::of(1u64..4))
            .prop_map(|(key, value, ttl_secs, meta, idle_secs)| Op::Set { key, value, ttl_secs, meta, idle_secs }),
        6 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Delete),
        2 => key.clone().prop_map(Op::Contains),
        1 => key.clone().prop_map(Op::GetMetadata),
        1 => (key.clone(), 0u8..4).prop_map(|(k, m)| Op::UpdateMetadata(k, m)),
        1 => (0..PATTERNS.len()).prop_map(Op::Invalidate),
        1 => proptest::option::of(0..PATTERNS.len()).prop_map(Op::Keys),
        1 => Just(Op::Len),
        1 => Just(Op::Clear),
        3 => (0u64..4).prop_map(Op::Advance),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (1usize..6, proptest::option::of(1u64..6), any::<bool>(), proptest::option::of(1u64..4)).prop_map(
            |(max, ttl, refresh, idle)| {
                let mut p = LruPolicy::new(max).unwrap().refresh_on_get(refresh);
                if let Some(ttl) = ttl {
                    p = p.with_default_ttl(Duration::from_secs(ttl)).unwrap();
                }
                if let Some(idle) = idle {
                    p = p.with_default_idle(Duration::from_secs(idle)).unwrap();
                }
                Policy::Lru(p)
            }
        ),
        (1u64..6, proptest::option::of(1usize..6), proptest::option::of(1u64..4)).prop_map(|(ttl, max, idle)| {
            let mut p = TtlPolicy::new(Duration::from_secs(ttl)).unwrap();
            if let Some(max) = max {
                p = p.with_max_size(max).unwrap();
            }
            if let Some(idle) = idle {
                p = p.with_default_idle(Duration::from_secs(idle)).unwrap();
            }
            Policy::Ttl(p)
        }),
    ]
}

pub(super) fn meta(n: u8) -> Metadata {
    json!({ format!("field{}", n % 2): n, "n": n }).as_object().cloned().unwrap()
}

#[derive(Clone, Debug)]
struct ModelEntry {
    key: String,
    value: u32,
    /// Its deadline: the TTL's, or `idle` after its last read if sooner.
    expires_at: Option<u64>,
    meta: Option<Metadata>,
    ttl_at: Option<u64>,
    idle: Option<u64>,
}

/// The deadline of an entry with TTL deadline `ttl_at` and time-to-idle
/// `idle`, set or last read at `read_at`.
pub(super) fn deadline(ttl_at: Option<u64>, idle: Option<u64>, read_at: u64) -> Option<u64> {
    match (ttl_at, idle.map(|i| read_at + i)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The reference: a `Vec` in recency order (last = most recent), eager expiry.
struct Model {
    entries: Vec<ModelEntry>,
    now: u64,
    max: usize,
    default_ttl: Option<u64>,
    default_idle: Option<u64>,
    lru: bool,
    refresh_on_get: bool,
    stats: CacheStats,
}

impl Model {
    fn new(policy: &Policy) -> Self {
        let (lru, refresh_on_get) = match policy {
            Policy::Lru(p) => (true, p.refreshes_on_get()),
            Policy::Ttl(_) => (false, false),
            _ => unreachable!("S3-FIFO has its own model (s3fifo_model_tests.rs)"),
        };
        Model {
            entries: Vec::new(),
            now: 0,
            max: policy.max_size().unwrap_or(usize::MAX),
            default_ttl: policy.default_ttl().map(|d| d.as_secs() * 1_000_000_000),
            default_idle: policy.default_idle().map(|d| d.as_secs() * 1_000_000_000),
            lru,
            refresh_on_get,
            stats: CacheStats::default(),
        }
    }

    fn purge(&mut self) {
        let now = self.now;
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at.is_none_or(|at| at > now));
        self.stats.expirations += (before - self.entries.len()) as u64;
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn touch(&mut self, i: usize) -> usize {
        let e = self.entries.remove(i);
        self.entries.push(e);
        self.entries.len() - 1
    }
}

pub(super) fn secs(n: u64) -> u64 {
    n * 1_000_000_000
}

/// What each operation answered, comparable between engine and model.
#[derive(Debug, PartialEq)]
pub(super) enum Answer {
    Unit,
    Value(Option<u32>),
    Bool(bool),
    Meta(Option<Metadata>),
    Count(usize),
    Keys(Vec<String>),
}

fn apply_model(m: &mut Model, op: &Op) -> Answer {
    m.purge();
    match op {
        Op::Set { key, value, ttl_secs, meta: md, idle_secs } => {
            let ttl = ttl_secs.map(secs).or(m.default_ttl);
            let idle = idle_secs.map(secs).or(m.default_idle);
            let ttl_at = ttl.map(|t| m.now + t);
            let entry = ModelEntry {
                key: KEYS[*key].to_string(),
                value: *value,
                expires_at: deadline(ttl_at, idle, m.now),
                meta: md.map(meta),
                ttl_at,
                idle,
            };
            if let Some(i) = m.position(KEYS[*key]) {
                m.entries.remove(i);
            } else if m.entries.len() >= m.max {
                let victim = if m.lru {
                    0
                } else {
                    // Soonest to expire; among equals, the one set first.
                    (0..m.entries.len()).min_by_key(|&i| (m.entries[i].expires_at, i)).unwrap()
                };
                m.entries.remove(victim);
                m.stats.evictions += 1;
            }
            m.entries.push(entry);
            m.stats.sets += 1;
            Answer::Unit
        }
        Op::Get(key) => match m.position(KEYS[*key]) {
            Some(i) => {
                m.stats.hits += 1;
                let i = if m.refresh_on_get { m.touch(i) } else { i };
                // A read: the idle clock starts again.
                let (now, e) = (m.now, &mut m.entries[i]);
                e.expires_at = deadline(e.ttl_at, e.idle, now);
                Answer::Value(Some(m.entries[i].value))
            }
            None => {
                m.stats.misses += 1;
                Answer::Value(None)
            }
        },
        Op::Delete(key) => match m.position(KEYS[*key]) {
            Some(i) => {
                m.entries.remove(i);
                m.stats.deletes += 1;
                Answer::Bool(true)
            }
            None => Answer::Bool(false),
        },
        Op::Contains(key) => Answer::Bool(m.position(KEYS[*key]).is_some()),
        Op::GetMetadata(key) => {
            Answer::Meta(m.position(KEYS[*key]).map(|i| m.entries[i].meta.clone().unwrap_or_default()))
        }
        Op::UpdateMetadata(key, n) => match m.position(KEYS[*key]) {
            Some(i) => {
                m.entries[i].meta.get_or_insert_default().extend(meta(*n));
                Answer::Bool(true)
            }
            None => Answer::Bool(false),
        },
        Op::Invalidate(p) => {
            let pattern = Pattern::new(PATTERNS[*p]).unwrap();
            let before = m.entries.len();
            m.entries.retain(|e| !pattern.matches(&e.key));
            let removed = before - m.entries.len();
            m.stats.deletes += removed as u64;
            Answer::Count(removed)
        }
        Op::Keys(p) => {
            let pattern = p.map(|p| Pattern::new(PATTERNS[p]).unwrap());
            Answer::Keys(
                m.entries
                    .iter()
                    .rev()
                    .filter(|e| pattern.as_ref().is_none_or(|p| p.matches(&e.key)))
                    .map(|e| e.key.clone())
                    .collect(),
            )
        }
        Op::Len => Answer::Count(m.entries.len()),
        Op::Clear => {
            m.stats.deletes += m.entries.len() as u64;
            m.entries.clear();
            Answer::Unit
        }
        Op::Advance(n) => {
            m.now += secs(*n);
            m.purge();
            Answer::Unit
        }
    }
}

pub(super) fn apply_engine(e: &mut StrEngine<u32>, clock: &ManualClock, op: &Op) -> Answer {
    match op {
        Op::Set { key, value, ttl_secs, meta: md, idle_secs } => {
            let mut options = SetOptions::new();
            if let Some(t) = ttl_secs {
                options = options.ttl(Duration::from_secs(*t));
            }
            if let Some(i) = idle_secs {
                options = options.idle(Duration::from_secs(*i));
            }
            if let Some(n) = md {
                options = options.metadata(meta(*n));
            }
            e.set(KEYS[*key], *value, options).unwrap();
            Answer::Unit
        }
        Op::Get(key) => Answer::Value(e.get(KEYS[*key]).unwrap()),
        Op::Delete(key) => Answer::Bool(e.delete(KEYS[*key]).unwrap()),
        Op::Contains(key) => Answer::Bool(e.contains(KEYS[*key]).unwrap()),
        Op::GetMetadata(key) => Answer::Meta(e.get_metadata(KEYS[*key]).unwrap()),
        Op::UpdateMetadata(key, n) => Answer::Bool(e.update_metadata(KEYS[*key], meta(*n)).unwrap()),
        Op::Invalidate(p) => Answer::Count(e.invalidate(PATTERNS[*p]).unwrap()),
        Op::Keys(p) => Answer::Keys(e.keys(p.map(|p| PATTERNS[p])).unwrap()),
        Op::Len => Answer::Count(e.len()),
        Op::Clear => {
            e.clear();
            Answer::Unit
        }
        Op::Advance(n) => {
            clock.advance(Duration::from_secs(*n));
            Answer::Unit
        }
    }
}

fn check_sequence(policy: Policy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(policy.clone(), clock.clone().into());
    let mut model = Model::new(&policy);
    for (step, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut model, op);
        let got = apply_engine(&mut engine, &clock, op);
        prop_assert_eq!(&got, &expected, "step {} {:?}", step, op);
        engine.validate();
        prop_assert!(engine.raw_len() <= model.max);
        check_counters(&engine.stats(), &model.stats, step, op, matches!(op, Op::Len | Op::Keys(_) | Op::Clear))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(policy in policy(), ops in proptest::collection::vec(op(), 1..60)) {
        check_sequence(policy, ops)?;
    }
}

#[test]
fn expired_entries_are_reclaimed_by_writes_without_reads() {
    let clock = ManualClock::new();
    let policy = LruPolicy::new(100_000).unwrap();
    let mut engine = StrEngine::<u32>::new(policy.into(), clock.clone().into());
    for i in 0..1_000 {
        engine.set(&format!("k{i}"), i, SetOptions::new().ttl(Duration::from_secs(1))).unwrap();
    }
    clock.advance(Duration::from_secs(2));
    // Overwrites of one unrelated key: no read ever touches the expired entries.
    let writes = 1_000 / super::engine::RECLAIM_PER_WRITE;
    for i in 0..writes {
        engine.set("other", i as u32, SetOptions::new()).unwrap();
    }
    assert_eq!(engine.raw_len(), 1, "every expired entry reclaimed by the writes");
    assert_eq!(engine.stats().expirations, 1_000);
    engine.validate();
}

#[test]
fn a_full_store_reclaims_an_expired_entry_before_evicting_a_live_one() {
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(LruPolicy::new(2).unwrap().into(), clock.clone().into());
    engine.set("live", 1, SetOptions::new()).unwrap();
    engine.set("short", 2, SetOptions::new().ttl(Duration::from_secs(1))).unwrap();
    clock.advance(Duration::from_secs(1));
    engine.set("new", 3, SetOptions::new()).unwrap();
    assert_eq!(engine.get("live").unwrap(), Some(1));
    assert_eq!(engine.counters.evictions, 0);
    assert_eq!(engine.stats().expirations, 1);
}

#[test]
fn latency_is_sampled_with_the_injected_clock() {
    let clock = ManualClock::new();
    clock.set_auto_advance(Duration::from_micros(3));
    let mut engine = StrEngine::<u32>::new(LruPolicy::new(4).unwrap().into(), clock.clone().into());
    for _ in 0..(2 * crate::metrics::LATENCY_SAMPLE_EVERY) {
        engine.get("k").unwrap();
    }
    let stats = engine.stats();
    // Each sampled get reads the clock twice: 3 µs apart.
    assert_eq!(stats.avg_get_latency, Duration::from_micros(3));
    assert_eq!(stats.misses, 2 * crate::metrics::LATENCY_SAMPLE_EVERY);
}

#[test]
fn lru_evicts_exactly_at_capacity() {
    for max in [1, 3, 70_000] {
        let mut engine = StrEngine::<usize>::new(LruPolicy::new(max).unwrap().into(), ManualClock::new().into());
        for i in 0..=max {
            engine.set(&format!("k{i}"), i, SetOptions::new()).unwrap();
        }
        assert_eq!(engine.raw_len(), max);
        assert_eq!(engine.stats().evictions, 1);
        assert_eq!(engine.get("k0").unwrap(), None, "the least recently used went");
        assert_eq!(engine.get(&format!("k{max}")).unwrap(), Some(max));
        engine.validate();
    }
}

/// A value whose `Drop` panics when told to: foreign code the engine must survive.
#[derive(Clone, Debug, PartialEq)]
struct Grenade(u32, bool);

impl Drop for Grenade {
    fn drop(&mut self) {
        if self.1 && !std::thread::panicking() {
            panic!("boom dropping {}", self.0);
        }
    }
}

#[test]
fn a_panicking_drop_leaves_the_engine_consistent() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let policies: Vec<Policy> = vec![
        LruPolicy::new(3).unwrap().into(),
        TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(3).unwrap().into(),
        crate::policies::S3FifoPolicy::new(3).unwrap().into(),
    ];
    for policy in policies {
        let clock = ManualClock::new();
        let mut e = StrEngine::<Grenade>::new(policy.clone(), clock.clone().into());
        let ttl = SetOptions::new().ttl(Duration::from_secs(5));
        e.set("bomb", Grenade(1, true), SetOptions::new()).unwrap();
        e.set("live", Grenade(2, false), ttl.clone()).unwrap();
        // Replaced: the old value's Drop panics after the new one is in place.
        let r = catch_unwind(AssertUnwindSafe(|| e.set("bomb", Grenade(3, true), SetOptions::new())));
        assert!(r.is_err(), "{policy:?}: the drop panicked");
        e.validate();
        assert_eq!(e.get("live").unwrap(), Some(Grenade(2, false)), "{policy:?}");
        assert_eq!(e.peek_with("bomb", |g| g.0).unwrap(), Some(3), "{policy:?}: the new value is stored");
        // Deleted, invalidated, cleared, evicted: each drop panics, nothing else is lost.
        let r = catch_unwind(AssertUnwindSafe(|| e.delete("bomb")));
        assert!(r.is_err());
        e.validate();
        assert_eq!(e.len(), 1, "{policy:?}");
        e.set("bomb", Grenade(4, true), SetOptions::new()).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| e.invalidate("b*")));
        assert!(r.is_err());
        e.validate();
        assert_eq!(e.keys(None).unwrap(), vec!["live".to_string()], "{policy:?}");
        e.set("bomb", Grenade(5, true), SetOptions::new()).unwrap();
        e.set("x", Grenade(6, false), SetOptions::new()).unwrap();
        // Full at 3: the next new key evicts (or, under TTL, takes the soonest to expire).
        let _ = catch_unwind(AssertUnwindSafe(|| e.set("y", Grenade(7, false), SetOptions::new())));
        e.validate();
        assert_eq!(e.peek_with("y", |g| g.0).unwrap(), Some(7), "{policy:?}: the new entry is in");
        assert_eq!(e.raw_len(), 3);
        // Expired: reclaimed by a write, its drop panics, the write still lands.
        clock.advance(Duration::from_secs(10));
        let _ = catch_unwind(AssertUnwindSafe(|| e.set("z", Grenade(8, false), SetOptions::new())));
        e.validate();
        assert_eq!(e.peek_with("z", |g| g.0).unwrap(), Some(8), "{policy:?}");
        let r = catch_unwind(AssertUnwindSafe(|| e.clear()));
        let _ = r;
        e.validate();
        assert_eq!(e.len(), 0);
        e.set("after", Grenade(9, false), SetOptions::new()).unwrap();
        assert_eq!(e.get("after").unwrap(), Some(Grenade(9, false)));
        // Defuse what is left so the test's own drops stay quiet.
        std::mem::forget(e);
    }
}

/// A runtime that never runs anything: the engine-level tests drive refreshes by hand.
struct NoRuntime;

impl crate::refresh::Runtime for NoRuntime {
    fn spawn(&self, _task: crate::refresh::BoxFuture<()>) {}
    fn sleep(&self, _duration: Duration) -> crate::refresh::BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn a_late_failure_of_an_overtaken_refresh_leaves_the_running_one_alone() {
    use super::engine::Freshly;
    use crate::refresh::RefreshOptions;
    let options = RefreshOptions::new(NoRuntime, Duration::from_secs(10), Duration::from_secs(100));
    let clock = ManualClock::new();
    let mut e = StrEngine::<u32>::new(LruPolicy::new(10).unwrap().into(), clock.clone().into());
    let stale = |e: &mut StrEngine<u32>| match e.get_fresh("k").unwrap() {
        Freshly::Stale { refresh, .. } => refresh,
        _ => panic!("expected a stale entry"),
    };
    let t = e.begin_load("k");
    drop(e.finish_refresh("k", t, Ok(1), &options, false).unwrap());
    clock.advance(Duration::from_secs(11));
    assert!(stale(&mut e), "the first stale read starts refresh A");
    let a = e.begin_load("k");
    // A write moves the key on; a load stores it fresh again; it goes stale and refresh C starts.
    e.set("k", 2, SetOptions::new()).unwrap();
    let t = e.begin_load("k");
    drop(e.finish_refresh("k", t, Ok(3), &options, false).unwrap());
    clock.advance(Duration::from_secs(11));
    assert!(stale(&mut e), "refresh C starts");
    let _c = e.begin_load("k");
    // A fails late: counted, but C is still the running refresh.
    drop(e.finish_refresh("k", a, Err(()), &options, true).unwrap());
    assert_eq!(e.stats().refresh_failures, 1);
    clock.advance(Duration::from_secs(5));
    assert!(!stale(&mut e), "no second refresh while C runs");
}

/// The case count of a fuzz test: `PROPTEST_CASES` if set (CI's fuzz step
/// and longer runs on demand set it), else `base`.
pub(crate) fn fuzz_cases(base: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(base)
}

/// A value whose `Clone` and/or `Drop` panic: foreign code under the engine.
#[derive(Debug)]
struct Hostile {
    v: u32,
    clone_panics: bool,
    drop_panics: bool,
}

impl Clone for Hostile {
    fn clone(&self) -> Self {
        if self.clone_panics {
            panic!("hostile Clone of {}", self.v);
        }
        // A copy is tame, so that what a read returns can be dropped.
        Hostile { v: self.v, clone_panics: false, drop_panics: false }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if self.drop_panics && !std::thread::panicking() {
            panic!("hostile Drop of {}", self.v);
        }
    }
}

#[derive(Clone, Debug)]
enum HostileOp {
    Set {
        key: usize,
        value: u32,
        clone_panics: bool,
        drop_panics: bool,
        ttl_secs: Option<u64>,
    },
    Get(usize),
    Peek(usize),
    Delete(usize),
    UpdateMetadata(usize, u8),
    Invalidate(usize),
    Keys,
    Len,
    Clear,
    Advance(u64),
    /// `get_or_refresh`'s engine side: the counted read, a load begun, and
    /// (maybe after other steps) its end.
    GetFresh(usize),
    BeginLoad(usize),
    FinishLoad {
        key: usize,
        value: u32,
        ok: bool,
        drop_panics: bool,
    },
}

fn hostile_op() -> impl Strategy<Value = HostileOp> {
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (key.clone(), any::<u32>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2),
              proptest::option::of(1u64..6))
            .prop_map(|(key, value, clone_panics, drop_panics, ttl_secs)| {
                HostileOp::Set { key, value, clone_panics, drop_panics, ttl_secs }
            }),
        5 => key.clone().prop_map(HostileOp::Get),
        2 => key.clone().prop_map(HostileOp::Peek),
        2 => key.clone().prop_map(HostileOp::Delete),
        1 => (key.clone(), 0u8..4).prop_map(|(k, m)| HostileOp::UpdateMetadata(k, m)),
        1 => (0..PATTERNS.len()).prop_map(HostileOp::Invalidate),
        1 => Just(HostileOp::Keys),
        1 => Just(HostileOp::Len),
        1 => Just(HostileOp::Clear),
        3 => (0u64..4).prop_map(HostileOp::Advance),
        2 => key.clone().prop_map(HostileOp::GetFresh),
        2 => key.clone().prop_map(HostileOp::BeginLoad),
        2 => (key, any::<u32>(), any::<bool>(), proptest::bool::weighted(0.2))
            .prop_map(|(key, value, ok, drop_panics)| HostileOp::FinishLoad { key, value, ok, drop_panics }),
    ]
}

fn any_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![policy(), (1usize..8).prop_map(|max| Policy::S3Fifo(crate::policies::S3FifoPolicy::new(max).unwrap())),]
}

/// Runs `f`, which may panic (a hostile value's Clone or Drop); the
/// expected panics are not printed.
fn survive<R>(f: impl FnOnce() -> R) -> Option<R> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>().map_or("", String::as_str);
            if !message.starts_with("hostile ") {
                previous(info);
            }
        }));
    });
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// The engine under random operations with values whose Clone and Drop
/// panic, on a manual clock: after every step its invariants hold
/// (`validate`), every live entry holds the value last written for its key
/// (a panicking Drop never undoes or half-does the write, delete, invalidate,
/// clear, eviction or reclaim that ran it; a panicking Clone changes
/// nothing), no removed key comes back, and the capacity holds.
fn check_hostile_sequence(policy: Policy, ops: Vec<HostileOp>) -> Result<(), TestCaseError> {
    use std::collections::HashMap;
    let clock = ManualClock::new();
    let mut engine = StrEngine::<Hostile>::new(policy.clone(), clock.clone().into());
    let max = policy.max_size().unwrap_or(usize::MAX);
    let options = crate::refresh::RefreshOptions::new(NoRuntime, Duration::from_secs(2), Duration::from_secs(3));
    // The value last written under each key (an entry may be gone: evicted, expired).
    let mut written: HashMap<&str, u32> = HashMap::new();
    // Loads begun: their token, and whether it may still store (nothing
    // wrote, deleted, invalidated, cleared, updated the key or began another
    // load of it since).
    let mut tokens: HashMap<usize, (u64, bool)> = HashMap::new();
    let cancel = |tokens: &mut HashMap<usize, (u64, bool)>, key: &str| {
        for (k, t) in tokens.iter_mut() {
            if KEYS[*k] == key {
                t.1 = false;
            }
        }
    };
    // Panics are expected here; keep the test output readable.
    for (step, op) in ops.iter().enumerate() {
        match op {
            HostileOp::Set { key, value, clone_panics, drop_panics, ttl_secs } => {
                let mut set = SetOptions::new();
                if let Some(t) = ttl_secs {
                    set = set.ttl(Duration::from_secs(*t));
                }
                let h = Hostile { v: *value, clone_panics: *clone_panics, drop_panics: *drop_panics };
                // The write lands even when dropping what it replaced or evicted panics.
                let _ = survive(|| engine.set(KEYS[*key], h, set));
                written.insert(KEYS[*key], *value);
                cancel(&mut tokens, KEYS[*key]);
                prop_assert_eq!(engine.peek_with(KEYS[*key], |h| h.v).unwrap(), Some(*value), "step {}", step);
            }
            HostileOp::Get(key) => {
                if let Some(Ok(Some(h))) = survive(|| engine.get(KEYS[*key])) {
                    prop_assert_eq!(Some(&h.v), written.get(KEYS[*key]), "step {}", step);
                }
            }
            HostileOp::Peek(key) => {
                if let Some(v) = survive(|| engine.peek_with(KEYS[*key], |h| h.v).unwrap()).flatten() {
                    prop_assert_eq!(Some(&v), written.get(KEYS[*key]), "step {}", step);
                }
            }
            HostileOp::Delete(key) => {
                let _ = survive(|| engine.delete(KEYS[*key]));
                written.remove(KEYS[*key]);
                cancel(&mut tokens, KEYS[*key]);
            }
            HostileOp::UpdateMetadata(key, n) => {
                if let Some(Ok(true)) = survive(|| engine.update_metadata(KEYS[*key], meta(*n))) {
                    cancel(&mut tokens, KEYS[*key]);
                }
            }
            HostileOp::Invalidate(p) => {
                let _ = survive(|| engine.invalidate(PATTERNS[*p]));
                let pattern = Pattern::new(PATTERNS[*p]).unwrap();
                written.retain(|k, _| !pattern.matches(k));
                for k in KEYS.iter().filter(|k| pattern.matches(k)) {
                    cancel(&mut tokens, k);
                }
            }
            HostileOp::Keys => {
                if let Some(keys) = survive(|| engine.keys(None).unwrap()) {
                    for k in keys {
                        prop_assert!(written.contains_key(k.as_str()), "step {}: {} was removed", step, k);
                    }
                }
            }
            HostileOp::Len => {
                if let Some(n) = survive(|| engine.len()) {
                    prop_assert!(n <= max && n <= written.len(), "step {}: len {}", step, n);
                }
            }
            HostileOp::Clear => {
                let _ = survive(|| engine.clear());
                written.clear();
                tokens.clear();
            }
            HostileOp::Advance(n) => clock.advance(Duration::from_secs(*n)),
            HostileOp::GetFresh(key) => {
                if let Some(super::engine::Freshly::Fresh(h) | super::engine::Freshly::Stale { value: h, .. }) =
                    survive(|| engine.get_fresh(KEYS[*key]).unwrap())
                {
                    prop_assert_eq!(Some(&h.v), written.get(KEYS[*key]), "step {}", step);
                }
            }
            HostileOp::BeginLoad(key) => {
                tokens.insert(*key, (engine.begin_load(KEYS[*key]), true));
            }
            HostileOp::FinishLoad { key, value, ok, drop_panics } => {
                let Some((token, valid)) = tokens.remove(key) else { continue };
                let outcome = if *ok {
                    Ok(Hostile { v: *value, clone_panics: false, drop_panics: *drop_panics })
                } else {
                    Err(())
                };
                let stores = *ok && valid;
                let _ = survive(|| drop(engine.finish_refresh(KEYS[*key], token, outcome, &options, true)));
                if stores {
                    written.insert(KEYS[*key], *value);
                    prop_assert_eq!(engine.peek_with(KEYS[*key], |h| h.v).unwrap(), Some(*value), "step {}", step);
                }
            }
        }
        engine.validate();
        prop_assert!(engine.raw_len() <= max, "step {}", step);
        // Every live entry holds the value last written for its key.
        // (Listing reclaims expired entries first: their Drop may panic;
        // then once more, with nothing left to reclaim.)
        let mut wrong = Vec::new();
        let mut list = |engine: &mut StrEngine<Hostile>| {
            wrong.clear();
            engine.for_each_live(|k, h| {
                if written.get(k) != Some(&h.v) {
                    wrong.push((k.to_string(), h.v));
                }
            })
        };
        if survive(|| list(&mut engine)).is_none() {
            engine.validate();
            list(&mut engine);
        }
        prop_assert!(wrong.is_empty(), "step {} {:?}: entries that should not be: {:?}", step, op, wrong);
    }
    // Defuse what is left, so the test's own drop stays quiet.
    std::mem::forget(engine);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(2_000), ..ProptestConfig::default() })]

    #[test]
    fn fuzz_engine_with_panicking_values(policy in any_policy(), ops in proptest::collection::vec(hostile_op(), 1..80)) {
        check_hostile_sequence(policy, ops)?;
    }
}

/// Time-to-idle under the TTL policy: the entry evicted for room is the one
/// whose real deadline is soonest, not the one filed soonest before a read
/// pushed its deadline.
#[test]
fn the_ttl_policy_evicts_by_the_deadline_reads_pushed() {
    let clock = ManualClock::new();
    let policy = TtlPolicy::new(Duration::from_secs(100)).unwrap().with_max_size(2).unwrap();
    let mut e = StrEngine::<u32>::new(policy.into(), clock.clone().into());
    e.set("idle", 1, SetOptions::new().idle(Duration::from_secs(3))).unwrap(); // due at 3
    clock.advance(Duration::from_secs(2));
    assert_eq!(e.get("idle").unwrap(), Some(1)); // due at 5 now, filed at 3
    e.set("short", 2, SetOptions::new().ttl(Duration::from_secs(2))).unwrap(); // due at 4
    e.set("new", 3, SetOptions::new()).unwrap();
    e.validate();
    assert_eq!(e.peek("short"), None, "the soonest real deadline went");
    assert_eq!(e.peek("idle"), Some(1));
    // At 4.5 the idle entry is live, at 5 it has gone, and it counts as expired.
    clock.advance(Duration::from_millis(2_500));
    assert_eq!(e.keys(None).unwrap().len(), 2);
    clock.advance(Duration::from_millis(500));
    assert_eq!(e.len(), 1);
    assert_eq!(e.stats().expirations, 1);
    e.validate();
}

/// Reads under a shared borrow push the deadline without reordering the
/// index; the writes that follow take expired entries in deadline order.
#[test]
fn idle_entries_leave_in_the_order_of_their_real_deadlines() {
    let clock = ManualClock::new();
    let mut e = StrEngine::<u32>::new(LruPolicy::new(10).unwrap().refresh_on_get(false).into(), clock.clone().into());
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        e.set(key, i as u32, SetOptions::new().idle(Duration::from_secs(2))).unwrap();
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get("a").unwrap(), Some(0)); // a due at 3, b and c at 2
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get("b").unwrap(), None, "b went idle at 2");
    assert_eq!(e.keys(None).unwrap(), vec!["a".to_string()]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get("a").unwrap(), None);
    assert_eq!(e.stats().expirations, 3);
    e.validate();
    // The policy's default, an entry's own, and a TTL sooner than the idle time.
    let policy = LruPolicy::new(10).unwrap().with_default_idle(Duration::from_secs(5)).unwrap();
    let mut e = StrEngine::<u32>::new(policy.into(), clock.clone().into());
    e.set("default", 1, SetOptions::new()).unwrap();
    e.set("own", 2, SetOptions::new().idle(Duration::from_secs(1))).unwrap();
    e.set("ttl", 3, SetOptions::new().ttl(Duration::from_secs(2))).unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_millis(900));
        e.get("own").unwrap();
        e.get("ttl").unwrap();
    }
    assert_eq!(e.get("own").unwrap(), Some(2), "read every 0.9 s: never idle for 1 s");
    assert_eq!(e.get("ttl").unwrap(), None, "its TTL came first");
    assert_eq!(e.get("default").unwrap(), Some(1));
    // contains and get_metadata are no reads.
    clock.advance(Duration::from_millis(600));
    assert!(e.contains("own").unwrap());
    assert!(e.get_metadata("own").unwrap().is_some());
    clock.advance(Duration::from_millis(600));
    assert!(!e.contains("own").unwrap());
    // Zero and absurd idle times are refused and change nothing.
    for bad in [Duration::ZERO, crate::policies::MAX_IDLE + Duration::from_millis(1), Duration::MAX] {
        let r = e.set("own", 9, SetOptions::new().idle(bad));
        assert!(matches!(r, Err(crate::errors::CacheError::Policy(_))), "{bad:?}: {r:?}");
        assert!(LruPolicy::new(1).unwrap().with_default_idle(bad).is_err());
    }
    assert_eq!(e.peek("own"), None);
    assert_eq!(e.stats().sets, 3);
    e.validate();
}
