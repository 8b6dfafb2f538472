//! Model-based tests of capacity in weight (`MemoryStoreBuilder::weigher`).
//!
//! - Every bounded policy (LRU with and without refresh on get, TTL with a
//!   `max_size`, classic S3-FIFO) against a naive weighted reference: the
//!   entries in `VecDeque`s with their weights, expired ones purged eagerly,
//!   victims found by a linear search. Same answers, same order of keys, same
//!   counters; after every step the engine's invariants (each list's weight
//!   is the sum of its entries', the total within the capacity) and, once
//!   the expired entries are reclaimed, the total weight equal to the model's.
//! - The adaptive S3-FIFO (whose sketch and shadows the reference above does
//!   not model): the same invariants, and the rules every policy keeps: a
//!   `set` that succeeds leaves its key held with its value, one heavier than
//!   the capacity fails with `EntryTooLarge` and changes nothing.
//! - A weigher that weighs every entry 1 gives exactly the unweighted engine,
//!   for every policy (so the weighted code paths are the policy itself).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::engine::{Climber, Weigher, ghost_cap};
use super::model_tests::{self, KEYS, secs};
use super::test_support::{StrEngine, check_counters};
use crate::clock::ManualClock;
use crate::errors::CacheError;
use crate::metrics::CacheStats;
use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy};
use crate::store::SetOptions;

/// The weight of a value: its last two decimal digits.
fn weight_of(value: u32) -> u64 {
    u64::from(value % 100)
}

fn weigher() -> Weigher<u32> {
    Arc::new(|_key: &str, value: &u32| weight_of(*value))
}

#[derive(Clone, Debug)]
enum Op {
    /// Sets `key` to a value weighing `weight` (`n` tells values apart).
    Set {
        key: usize,
        weight: u64,
        n: u32,
        ttl_secs: Option<u64>,
    },
    Get(usize),
    Delete(usize),
    Keys,
    Len,
    Clear,
    Advance(u64),
}

fn op(max_weight: u64, ttl: bool) -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let ttl_secs = if ttl { proptest::option::of(1u64..6).boxed() } else { Just(None).boxed() };
    prop_oneof![
        // Weights up to a bit over the capacity: some sets are refused.
        8 => (key.clone(), 0..=max_weight + 2, 0u32..1000, ttl_secs)
            .prop_map(|(key, weight, n, ttl_secs)| Op::Set { key, weight, n, ttl_secs }),
        6 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Delete),
        1 => Just(Op::Keys),
        1 => Just(Op::Len),
        1 => Just(Op::Clear),
        2 => (0u64..4).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Unit,
    TooLarge,
    Value(Option<u32>),
    Bool(bool),
    Count(usize),
    Keys(Vec<String>),
}

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    value: u32,
    weight: u64,
    expires_at: Option<u64>,
    /// When it was set: TTL's tie-break between equal expiry times.
    seq: u64,
    /// S3-FIFO's CLOCK count.
    freq: u8,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Lru { refresh_on_get: bool },
    Ttl,
    S3Fifo,
}

/// The reference. LRU and TTL keep one queue, `main`, newest at the back;
/// S3-FIFO its small and main queues and its ghost, oldest at the front.
struct Model {
    rule: Rule,
    max: u64,
    small: VecDeque<Entry>,
    main: VecDeque<Entry>,
    ghost: VecDeque<String>,
    small_cap: usize,
    /// The entries the capacity holds, as the engine guesses them.
    entries_hint: usize,
    evicted_once: bool,
    climber: Climber,
    now: u64,
    next_seq: u64,
    default_ttl: Option<u64>,
    stats: CacheStats,
}

impl Model {
    fn new(policy: &Policy) -> Self {
        let max = policy.max_size().unwrap();
        let rule = match policy {
            Policy::Lru(p) => Rule::Lru { refresh_on_get: p.refreshes_on_get() },
            Policy::Ttl(_) => Rule::Ttl,
            Policy::S3Fifo(_) => Rule::S3Fifo,
        };
        let mut climber = Climber::new(max);
        let entries_hint = max.min(1024);
        climber.set_period_for(entries_hint);
        Model {
            rule,
            max: max as u64,
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            small_cap: (max / 10).max(1),
            entries_hint,
            evicted_once: false,
            climber,
            now: 0,
            next_seq: 0,
            default_ttl: policy.default_ttl().map(|t| secs(t.as_secs())),
            stats: CacheStats::default(),
        }
    }

    fn weight(&self) -> u64 {
        self.small.iter().chain(&self.main).map(|e| e.weight).sum()
    }

    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }

    fn ghost_cap(&self) -> usize {
        let max = self.max as usize;
        let cap = ghost_cap(self.small_cap, max);
        if self.entries_hint == max { cap } else { (cap * self.entries_hint / max).max(1) }
    }

    fn trim_ghost(&mut self) {
        while self.ghost.len() > self.ghost_cap() {
            self.ghost.pop_front();
        }
    }

    fn purge(&mut self) {
        let now = self.now;
        for q in [&mut self.small, &mut self.main] {
            let before = q.len();
            q.retain(|e| e.expires_at.is_none_or(|at| at > now));
            self.stats.expirations += (before - q.len()) as u64;
        }
    }

    /// The queue and position of `key`.
    fn find(&self, key: &str) -> Option<(bool, usize)> {
        if let Some(i) = self.small.iter().position(|e| e.key == key) {
            return Some((true, i));
        }
        self.main.iter().position(|e| e.key == key).map(|i| (false, i))
    }

    fn take(&mut self, (small, i): (bool, usize)) -> Entry {
        if small { self.small.remove(i).unwrap() } else { self.main.remove(i).unwrap() }
    }

    fn entry(&mut self, (small, i): (bool, usize)) -> &mut Entry {
        if small { &mut self.small[i] } else { &mut self.main[i] }
    }

    /// Removes one entry by the policy's rule.
    fn evict(&mut self) {
        self.stats.evictions += 1;
        match self.rule {
            Rule::Lru { .. } => {
                self.main.pop_front();
            }
            Rule::Ttl => {
                let i = (0..self.main.len())
                    .min_by_key(|&i| (self.main[i].expires_at.unwrap_or(u64::MAX), self.main[i].seq))
                    .unwrap();
                self.main.remove(i);
            }
            Rule::S3Fifo => {
                self.evicted_once = true;
                let main_cap = self.max.saturating_sub(self.small_cap as u64).max(1);
                loop {
                    let main_weight: u64 = self.main.iter().map(|e| e.weight).sum();
                    if main_weight > main_cap || self.small.is_empty() {
                        let mut t = self.main.pop_front().unwrap();
                        if t.freq > 0 {
                            t.freq -= 1;
                            self.main.push_back(t);
                            continue;
                        }
                    } else {
                        let mut t = self.small.pop_front().unwrap();
                        if t.freq >= 2 {
                            t.freq = 0;
                            self.main.push_back(t);
                            continue;
                        }
                        self.ghost.push_back(t.key);
                        self.trim_ghost();
                    }
                    return;
                }
            }
        }
    }

    fn make_room(&mut self, weight: u64) {
        while self.weight() + weight > self.max && self.len() > 0 {
            self.evict();
        }
    }

    fn set(&mut self, key: &str, value: u32, ttl_secs: Option<u64>) -> Answer {
        let weight = weight_of(value);
        if weight > self.max {
            return Answer::TooLarge;
        }
        if self.rule == Rule::S3Fifo {
            let (gets, misses) = (self.stats.hits + self.stats.misses, self.stats.misses);
            let max = self.max as usize;
            if self.climber.due()
                && let Some(small) = self.climber.adapt(gets, misses, self.small_cap, max)
            {
                self.small_cap = small;
                self.trim_ghost();
            }
        }
        let expires_at = ttl_secs.map(secs).or(self.default_ttl).map(|t| self.now + t);
        let seq = self.next_seq;
        self.next_seq += 1;
        let existing = self.find(key);
        let old_weight = existing.map_or(0, |at| self.entry(at).weight);
        if !self.evicted_once && self.weight() - old_weight + weight > self.max {
            let entries = self.len().max(1);
            if entries != self.entries_hint {
                self.entries_hint = entries;
                self.climber.set_period_for(entries);
                self.trim_ghost();
            }
        }
        let bumped = |freq: u8| (freq + 1).min(3);
        match existing {
            Some(at) if self.weight() - old_weight + weight <= self.max => {
                // In place: LRU and TTL move it to the head, S3-FIFO bumps it.
                let e = self.entry(at);
                (e.value, e.weight, e.expires_at, e.seq) = (value, weight, expires_at, seq);
                e.freq = bumped(e.freq);
                if self.rule != Rule::S3Fifo {
                    let e = self.take(at);
                    self.main.push_back(e);
                }
            }
            Some(at) => {
                // Heavier and no room: it leaves, room is made, it comes back
                // at the head of its queue.
                let in_small = at.0;
                let old = self.take(at);
                self.make_room(weight);
                let e = Entry { key: key.to_string(), value, weight, expires_at, seq, freq: bumped(old.freq) };
                if in_small { self.small.push_back(e) } else { self.main.push_back(e) }
            }
            None => {
                self.make_room(weight);
                let e = Entry { key: key.to_string(), value, weight, expires_at, seq, freq: 0 };
                if self.rule != Rule::S3Fifo {
                    self.main.push_back(e);
                } else if let Some(i) = self.ghost.iter().position(|k| k == key) {
                    self.ghost.remove(i);
                    self.main.push_back(e);
                } else if self.evicted_once || self.small.iter().map(|e| e.weight).sum::<u64>() < self.small_cap as u64
                {
                    self.small.push_back(e);
                } else {
                    self.main.push_back(e);
                }
            }
        }
        self.stats.sets += 1;
        Answer::Unit
    }

    fn apply(&mut self, op: &Op) -> Answer {
        self.purge();
        match op {
            Op::Set { key, weight, n, ttl_secs } => self.set(KEYS[*key], n * 100 + *weight as u32, *ttl_secs),
            Op::Get(key) => match self.find(KEYS[*key]) {
                Some(at) => {
                    self.stats.hits += 1;
                    let rule = self.rule;
                    let e = self.entry(at);
                    e.freq = (e.freq + 1).min(3);
                    let value = e.value;
                    if rule == (Rule::Lru { refresh_on_get: true }) {
                        let e = self.take(at);
                        self.main.push_back(e);
                    }
                    Answer::Value(Some(value))
                }
                None => {
                    self.stats.misses += 1;
                    Answer::Value(None)
                }
            },
            Op::Delete(key) => match self.find(KEYS[*key]) {
                Some(at) => {
                    self.take(at);
                    self.stats.deletes += 1;
                    Answer::Bool(true)
                }
                None => Answer::Bool(false),
            },
            Op::Keys => {
                Answer::Keys(self.small.iter().rev().chain(self.main.iter().rev()).map(|e| e.key.clone()).collect())
            }
            Op::Len => Answer::Count(self.len()),
            Op::Clear => {
                self.stats.deletes += self.len() as u64;
                self.small.clear();
                self.main.clear();
                self.ghost.clear();
                self.evicted_once = false;
                Answer::Unit
            }
            Op::Advance(n) => {
                self.now += secs(*n);
                self.purge();
                Answer::Unit
            }
        }
    }
}

fn apply_engine(e: &mut StrEngine<u32>, clock: &ManualClock, op: &Op) -> Answer {
    match op {
        Op::Set { key, weight, n, ttl_secs } => {
            let mut options = SetOptions::new();
            if let Some(t) = ttl_secs {
                options = options.ttl(Duration::from_secs(*t));
            }
            let value = n * 100 + *weight as u32;
            match e.set(KEYS[*key], value, options) {
                Ok(()) => Answer::Unit,
                Err(CacheError::EntryTooLarge { weight: w, .. }) if w == *weight => Answer::TooLarge,
                Err(err) => panic!("{err}"),
            }
        }
        Op::Get(key) => Answer::Value(e.get(KEYS[*key]).unwrap()),
        Op::Delete(key) => Answer::Bool(e.delete(KEYS[*key]).unwrap()),
        Op::Keys => Answer::Keys(e.keys(None).unwrap()),
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

fn weighted_engine(policy: Policy, clock: &ManualClock) -> StrEngine<u32> {
    let mut engine = StrEngine::<u32>::new(policy, clock.clone().into());
    engine.weigh_with(weigher());
    engine
}

fn check_against_model(policy: Policy, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let mut engine = weighted_engine(policy.clone(), &clock);
    let mut model = Model::new(&policy);
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let got = apply_engine(&mut engine, &clock, op);
        prop_assert_eq!(&got, &expected, "step {} {:?}", step, op);
        engine.validate();
        let reclaimed = matches!(op, Op::Len | Op::Keys | Op::Clear);
        check_counters(&engine.stats(), &model.stats, step, op, reclaimed)?;
        if reclaimed {
            prop_assert_eq!(engine.stats().total_weight, model.weight(), "step {}: total weight", step);
        }
    }
    Ok(())
}

fn weighted_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (1usize..40, proptest::option::of(1u64..6), any::<bool>()).prop_map(|(max, ttl, refresh)| {
            let mut p = LruPolicy::new(max).unwrap().refresh_on_get(refresh);
            if let Some(ttl) = ttl {
                p = p.with_default_ttl(Duration::from_secs(ttl)).unwrap();
            }
            Policy::Lru(p)
        }),
        (1u64..6, 1usize..40).prop_map(|(ttl, max)| Policy::Ttl(
            TtlPolicy::new(Duration::from_secs(ttl)).unwrap().with_max_size(max).unwrap()
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_tests::fuzz_cases(3_000)))]

    #[test]
    fn weighted_lru_and_ttl_match_the_model(
        (policy, ops) in weighted_policy().prop_flat_map(|p| {
            let max = p.max_size().unwrap() as u64;
            (Just(p), proptest::collection::vec(op(max, true), 1..80))
        }),
    ) {
        check_against_model(policy, &ops)?;
    }

    // No TTLs: the engine sizes S3-FIFO's ghost by the entries it holds when
    // it first fills, expired ones it has not reclaimed yet included, which
    // the eager model cannot see.
    #[test]
    fn weighted_s3fifo_matches_the_model(
        (max, ops) in (1usize..60).prop_flat_map(|max| (Just(max), proptest::collection::vec(op(max as u64, false), 1..200))),
    ) {
        check_against_model(Policy::S3Fifo(S3FifoPolicy::new(max).unwrap().adaptive(false)), &ops)?;
    }

    #[test]
    fn weighted_adaptive_s3fifo_keeps_the_rules(
        (max, ops) in (1usize..60).prop_flat_map(|max| (Just(max), proptest::collection::vec(op(max as u64, true), 1..200))),
    ) {
        let clock = ManualClock::new();
        let mut engine = weighted_engine(S3FifoPolicy::new(max).unwrap().into(), &clock);
        for (step, op) in ops.iter().enumerate() {
            let before = (engine.keys(None).unwrap(), engine.stats());
            let got = apply_engine(&mut engine, &clock, op);
            engine.validate();
            match (op, got) {
                (Op::Set { .. }, Answer::TooLarge) => {
                    prop_assert_eq!(&engine.keys(None).unwrap(), &before.0, "step {}: a refused set changed nothing", step);
                    let after = engine.stats();
                    prop_assert_eq!((after.sets, after.evictions, after.total_weight), (before.1.sets, before.1.evictions, before.1.total_weight));
                }
                (Op::Set { key, weight, n, ttl_secs }, Answer::Unit) => {
                    prop_assert!(*weight <= max as u64);
                    // Held right after its set (unless it expires at once: it cannot, TTLs are >= 1 s).
                    let _ = ttl_secs;
                    prop_assert_eq!(engine.peek(KEYS[*key]), Some(n * 100 + *weight as u32), "step {}: the set key is held", step);
                }
                _ => {}
            }
            engine.len();
            let total: u64 = engine.keys(None).unwrap().iter().map(|k| weight_of(engine.peek(k).unwrap())).sum();
            prop_assert_eq!(engine.stats().total_weight, total, "step {}: the total is the sum of the weights", step);
            prop_assert!(total <= max as u64);
        }
    }

    /// Every entry weighing 1: exactly the unweighted engine, every policy.
    #[test]
    fn weight_one_is_the_unweighted_engine(
        policy in prop_oneof![
            weighted_policy(),
            (1usize..30, any::<bool>()).prop_map(|(max, adaptive)| Policy::S3Fifo(S3FifoPolicy::new(max).unwrap().adaptive(adaptive))),
        ],
        ops in proptest::collection::vec(model_tests::op(), 1..150),
    ) {
        let clock = ManualClock::new();
        let mut plain = StrEngine::<u32>::new(policy.clone(), clock.clone().into());
        // The same hasher: the adaptive policy's shadows sample keys by hash,
        // so two seeds could switch settings at different steps.
        let mut weighed = StrEngine::<u32>::with_hasher(policy, clock.clone().into(), plain.hasher_for_tests());
        weighed.weigh_with(Arc::new(|_: &str, _: &u32| 1));
        for (step, op) in ops.iter().enumerate() {
            let a = model_tests::apply_engine(&mut plain, &clock, op);
            let b = model_tests::apply_engine(&mut weighed, &clock, op);
            prop_assert_eq!(&a, &b, "step {} {:?}", step, op);
            let weighed_stats = weighed.stats();
            prop_assert_eq!(weighed_stats.total_weight, weighed.raw_len() as u64, "step {}", step);
            prop_assert_eq!(plain.stats(), CacheStats { total_weight: 0, ..weighed_stats }, "step {}", step);
            weighed.validate();
        }
        prop_assert_eq!(plain.keys(None).unwrap(), weighed.keys(None).unwrap());
    }
}

/// LRU frees enough weight for a heavy entry: several victims, oldest first.
#[test]
fn a_heavy_entry_evicts_as_many_as_it_needs_and_a_too_heavy_one_none() {
    let clock = ManualClock::new();
    let mut engine = weighted_engine(LruPolicy::new(10).unwrap().into(), &clock);
    for (key, value) in [("a", 3), ("b", 3), ("c", 3)] {
        engine.set(key, value, SetOptions::new()).unwrap();
    }
    engine.get("a").unwrap();
    engine.set("d", 107, SetOptions::new()).unwrap(); // weighs 7: b and c go
    assert_eq!(engine.keys(None).unwrap(), ["d", "a"]);
    assert_eq!((engine.stats().evictions, engine.stats().total_weight), (2, 10));
    let err = engine.set("a", 11, SetOptions::new()).unwrap_err();
    assert!(matches!(err, CacheError::EntryTooLarge { weight: 11, capacity: 10, .. }), "{err}");
    assert_eq!(err.kind(), crate::errors::ErrorKind::EntryTooLarge);
    assert_eq!(engine.peek("a"), Some(3), "the refused set left the old entry");
    assert_eq!((engine.stats().evictions, engine.stats().sets, engine.stats().total_weight), (2, 4, 10));
    // Growing an entry in place: the others make room, it stays.
    engine.set("a", 210, SetOptions::new()).unwrap();
    assert_eq!(engine.keys(None).unwrap(), ["a"]);
    engine.validate();
}

/// A weigher that panics leaves the engine as it was.
#[test]
fn a_panicking_weigher_changes_nothing() {
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(LruPolicy::new(10).unwrap().into(), clock.clone().into());
    engine.weigh_with(Arc::new(|key: &str, v: &u32| if key == "boom" { panic!("weigher") } else { u64::from(*v) }));
    engine.set("a", 4, SetOptions::new()).unwrap();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.set("boom", 9, SetOptions::new())));
    std::panic::set_hook(hook);
    assert!(outcome.is_err());
    engine.validate();
    assert_eq!(engine.keys(None).unwrap(), ["a"]);
    assert_eq!((engine.stats().sets, engine.stats().total_weight), (1, 4));
}

/// The store: one shard by default when weighted; with shards asked for, an
/// entry that fits the store but not its shard is refused, never dropped;
/// a weigher that calls its own store fails that call.
#[test]
fn the_weighted_store_shards_and_reentry() {
    use super::MemoryStore;
    use crate::store::CacheStore;
    let store = MemoryStore::<u32>::builder(S3FifoPolicy::new(1 << 20).unwrap())
        .weigher(|_: &str, v: &u32| u64::from(*v))
        .build();
    assert_eq!(store.shard_count(), 1, "weighted: one shard unless asked");
    store.set("big", 1 << 19, SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.stats().total_weight, 1 << 19);

    let sharded = MemoryStore::<u32>::builder(LruPolicy::new(1000).unwrap())
        .weigher(|_: &str, v: &u32| u64::from(*v))
        .shards(4)
        .build();
    assert_eq!(sharded.shard_count(), 4);
    let err = sharded.set("k", 400, SetOptions::new()).into_inner().unwrap_err();
    assert!(matches!(err, CacheError::EntryTooLarge { weight: 400, capacity: 250, .. }), "{err}");
    assert_eq!((sharded.len(), sharded.stats().sets), (0, 0));
    sharded.set("k", 250, SetOptions::new()).into_inner().unwrap();
    assert_eq!(sharded.get("k").into_inner().unwrap(), Some(250));

    let store = Arc::new(std::sync::OnceLock::<MemoryStore<u32>>::new());
    let inner = Arc::clone(&store);
    let built = MemoryStore::<u32>::builder(LruPolicy::new(10).unwrap())
        .weigher(move |key: &str, _: &u32| {
            let reentered = inner.get().unwrap().get(key).into_inner();
            assert!(matches!(reentered, Err(CacheError::ReentrantValue { .. })), "{reentered:?}");
            1
        })
        .build();
    assert!(store.set(built).is_ok());
    store.get().unwrap().set("a", 1, SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.get().unwrap().len(), 1);
}

/// Weights near `u64::MAX` under a capacity of `usize::MAX`: sums never wrap.
#[test]
fn huge_weights_do_not_wrap() {
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(LruPolicy::new(usize::MAX).unwrap().into(), clock.clone().into());
    engine.weigh_with(Arc::new(|_: &str, _: &u32| u64::MAX / 2 + 1));
    engine.set("a", 1, SetOptions::new()).unwrap();
    engine.set("b", 2, SetOptions::new()).unwrap();
    assert_eq!(engine.keys(None).unwrap(), ["b"], "two halves and one more do not fit: a went");
    assert_eq!(engine.stats().evictions, 1);
    engine.validate();
}

/// The removal listener hears every entry a weighed set removed: the old
/// value of a key that grew (replaced) and each entry evicted for it.
#[test]
fn the_listener_hears_a_heavy_set_and_its_evictions() {
    use super::MemoryStore;
    use crate::removal::RemovalReason;
    use crate::store::CacheStore;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let store = MemoryStore::<u32>::builder(LruPolicy::new(10).unwrap())
        .weigher(|_: &str, v: &u32| u64::from(*v))
        .on_remove(move |key: &str, value, reason| log.lock().unwrap().push((key.to_string(), value, reason)))
        .build();
    for key in ["a", "b", "c"] {
        store.set(key, 3, SetOptions::new()).into_inner().unwrap();
    }
    store.set("c", 9, SetOptions::new()).into_inner().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [
            ("c".to_string(), 3, RemovalReason::Replaced),
            ("a".to_string(), 3, RemovalReason::Evicted),
            ("b".to_string(), 3, RemovalReason::Evicted),
        ]
    );
    assert_eq!(store.keys(None).into_inner().unwrap(), ["c"]);
    assert_eq!(store.stats().total_weight, 9);
}

/// A batch with one entry too heavy writes nothing.
#[test]
fn set_many_with_a_too_heavy_entry_writes_nothing() {
    use super::MemoryStore;
    use crate::store::CacheStore;
    let store =
        MemoryStore::<u32>::builder(LruPolicy::new(10).unwrap()).weigher(|_: &str, v: &u32| u64::from(*v)).build();
    store.set("a", 4, SetOptions::new()).into_inner().unwrap();
    let err = store.set_many(vec![("b", 3), ("c", 11), ("d", 2)], SetOptions::new()).into_inner().unwrap_err();
    assert!(matches!(err, CacheError::EntryTooLarge { weight: 11, .. }), "{err}");
    assert_eq!(store.keys(None).into_inner().unwrap(), ["a"]);
    assert_eq!((store.stats().sets, store.stats().total_weight), (1, 4));
    store.set_many(vec![("b", 3), ("d", 2)], SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.stats().total_weight, 9);
}

/// Threads setting, reading and deleting weighted entries at once, on a
/// sharded store: the total stays within the capacity and equals the sum of
/// the weights held.
#[test]
fn concurrent_weighted_writes_keep_the_total() {
    use super::MemoryStore;
    use crate::store::CacheStore;
    for policy in [Policy::from(S3FifoPolicy::new(4_000).unwrap()), LruPolicy::new(4_000).unwrap().into()] {
        let store = Arc::new(
            MemoryStore::<u32>::builder(policy).weigher(|_: &str, v: &u32| u64::from(*v % 97)).shards(4).build(),
        );
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    let mut x = t.wrapping_mul(2_654_435_761).wrapping_add(1);
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let key = format!("k{}", x % 3_000);
                        match x % 7 {
                            0 => drop(store.delete(&key).into_inner().unwrap()),
                            1 | 2 => drop(store.get(&key).into_inner().unwrap()),
                            _ => store.set(&key, x, SetOptions::new()).into_inner().unwrap(),
                        }
                    }
                });
            }
        });
        let keys = store.keys(None).into_inner().unwrap();
        let sum: u64 = keys.iter().map(|k| u64::from(store.get(k).into_inner().unwrap().unwrap() % 97)).sum();
        assert_eq!(store.stats().total_weight, sum);
        assert!(sum <= 4_000, "{sum}");
        for shard in store.shards.iter() {
            super::reentry::read(shard).validate();
        }
    }
}
