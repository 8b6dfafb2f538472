//! Model-based tests of S3-FIFO: the engine against a naive reference that
//! keeps its two queues and its ghost in `VecDeque`s (front = oldest),
//! searches them linearly and purges expired entries eagerly at every step.
//! Random operation sequences must give identical answers (keys come back in
//! the documented order: small queue newest first, then main newest first),
//! and the engine's invariants are checked after every step.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;

use super::engine::{Climber, ghost_cap};
use super::model_tests::{Answer, KEYS, Op, PATTERNS, apply_engine, deadline, meta, op, secs};
use super::test_support::{ModelEntry, StrEngine, check_counters, find_in_queues, purge_queues};
use crate::clock::ManualClock;
use crate::metrics::CacheStats;
use crate::pattern::Pattern;
use crate::policies::{Policy, S3FifoPolicy};
use crate::store::Metadata;

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    value: u32,
    expires_at: Option<u64>,
    meta: Option<Metadata>,
    freq: u8,
    ttl_at: Option<u64>,
    idle: Option<u64>,
}

impl ModelEntry for Entry {
    fn key_and_expiry(&self) -> (&str, Option<u64>) {
        (&self.key, self.expires_at)
    }
}

struct Model {
    small: VecDeque<Entry>,
    main: VecDeque<Entry>,
    ghost: VecDeque<String>,
    max: usize,
    small_cap: usize,
    main_cap: usize,
    ghost_cap: usize,
    evicted_once: bool,
    climber: Climber,
    now: u64,
    default_ttl: Option<u64>,
    default_idle: Option<u64>,
    stats: CacheStats,
}

impl Model {
    fn new(max: usize, default_ttl: Option<u64>, default_idle: Option<u64>) -> Self {
        Model {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            max,
            small_cap: (max / 10).max(1),
            main_cap: max.saturating_sub((max / 10).max(1)).max(1),
            ghost_cap: ghost_cap((max / 10).max(1), max),
            evicted_once: false,
            climber: Climber::new(max),
            now: 0,
            default_ttl,
            default_idle,
            stats: CacheStats::default(),
        }
    }

    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }

    fn purge(&mut self) {
        self.stats.expirations += purge_queues(&mut self.small, &mut self.main, self.now);
    }

    fn find(&mut self, key: &str) -> Option<&mut Entry> {
        find_in_queues(&mut self.small, &mut self.main, key)
    }

    /// [`find`](Self::find), with the time.
    fn find_at(&mut self, key: &str) -> Option<(&mut Entry, u64)> {
        let now = self.now;
        self.find(key).map(|e| (e, now))
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        if let Some(i) = self.small.iter().position(|e| e.key == key) {
            return self.small.remove(i);
        }
        let i = self.main.iter().position(|e| e.key == key)?;
        self.main.remove(i)
    }

    fn evict(&mut self) {
        self.evicted_once = true;
        loop {
            if self.main.len() > self.main_cap || self.small.is_empty() {
                let mut t = self.main.pop_front().unwrap();
                if t.freq > 0 {
                    t.freq = t.freq.min(3) - 1;
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
                if self.ghost.len() > self.ghost_cap {
                    self.ghost.pop_front();
                }
            }
            self.stats.evictions += 1;
            return;
        }
    }

    fn insert(&mut self, entry: Entry) {
        if self.len() >= self.max {
            self.evict();
        }
        if let Some(i) = self.ghost.iter().position(|k| *k == entry.key) {
            self.ghost.remove(i);
            self.main.push_back(entry);
        } else if self.evicted_once || self.small.len() < self.small_cap {
            self.small.push_back(entry);
        } else {
            self.main.push_back(entry);
        }
    }

    fn keys(&self) -> impl Iterator<Item = &Entry> {
        self.small.iter().rev().chain(self.main.iter().rev())
    }
}

fn apply_model(m: &mut Model, op: &Op) -> Answer {
    m.purge();
    match op {
        Op::Set { key, value, ttl_secs, meta: md, idle_secs } => {
            let (gets, misses) = (m.stats.hits + m.stats.misses, m.stats.misses);
            if m.climber.due()
                && let Some(small) = m.climber.adapt(gets, misses, m.small_cap, m.max)
            {
                m.small_cap = small;
                m.main_cap = m.max.saturating_sub(small).max(1);
                m.ghost_cap = ghost_cap(small, m.max);
                while m.ghost.len() > m.ghost_cap {
                    m.ghost.pop_front();
                }
            }
            let ttl_at = ttl_secs.map(secs).or(m.default_ttl).map(|t| m.now + t);
            let idle = idle_secs.map(secs).or(m.default_idle);
            let expires_at = deadline(ttl_at, idle, m.now);
            if let Some(e) = m.find(KEYS[*key]) {
                e.value = *value;
                e.expires_at = expires_at;
                (e.ttl_at, e.idle) = (ttl_at, idle);
                e.meta = md.map(meta);
                e.freq = (e.freq + 1).min(3);
            } else {
                let entry = Entry {
                    key: KEYS[*key].to_string(),
                    value: *value,
                    expires_at,
                    meta: md.map(meta),
                    freq: 0,
                    ttl_at,
                    idle,
                };
                m.insert(entry);
            }
            m.stats.sets += 1;
            Answer::Unit
        }
        Op::Get(key) => match m.find_at(KEYS[*key]) {
            Some((e, now)) => {
                e.freq = (e.freq + 1).min(3);
                e.expires_at = deadline(e.ttl_at, e.idle, now);
                let v = e.value;
                m.stats.hits += 1;
                Answer::Value(Some(v))
            }
            None => {
                m.stats.misses += 1;
                Answer::Value(None)
            }
        },
        Op::Delete(key) => {
            let removed = m.remove(KEYS[*key]).is_some();
            m.stats.deletes += u64::from(removed);
            Answer::Bool(removed)
        }
        Op::Contains(key) => Answer::Bool(m.find(KEYS[*key]).is_some()),
        Op::GetMetadata(key) => Answer::Meta(m.find(KEYS[*key]).map(|e| e.meta.clone().unwrap_or_default())),
        Op::UpdateMetadata(key, n) => match m.find(KEYS[*key]) {
            Some(e) => {
                e.meta.get_or_insert_default().extend(meta(*n));
                Answer::Bool(true)
            }
            None => Answer::Bool(false),
        },
        Op::Invalidate(p) => {
            let pattern = Pattern::new(PATTERNS[*p]).unwrap();
            let before = m.len();
            m.small.retain(|e| !pattern.matches(&e.key));
            m.main.retain(|e| !pattern.matches(&e.key));
            let removed = before - m.len();
            m.stats.deletes += removed as u64;
            Answer::Count(removed)
        }
        Op::Keys(p) => {
            let pattern = p.map(|p| Pattern::new(PATTERNS[p]).unwrap());
            Answer::Keys(
                m.keys()
                    .filter(|e| pattern.as_ref().is_none_or(|p| p.matches(&e.key)))
                    .map(|e| e.key.clone())
                    .collect(),
            )
        }
        Op::Len => Answer::Count(m.len()),
        Op::Clear => {
            m.stats.deletes += m.len() as u64;
            m.small.clear();
            m.main.clear();
            m.ghost.clear();
            m.evicted_once = false;
            Answer::Unit
        }
        Op::Advance(n) => {
            m.now += secs(*n);
            m.purge();
            Answer::Unit
        }
    }
}

fn check_sequence(max: usize, ttl: Option<u64>, idle: Option<u64>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut policy = S3FifoPolicy::new(max).unwrap().adaptive(false);
    if let Some(ttl) = ttl {
        policy = policy.with_default_ttl(Duration::from_secs(ttl)).unwrap();
    }
    if let Some(idle) = idle {
        policy = policy.with_default_idle(Duration::from_secs(idle)).unwrap();
    }
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(Policy::S3Fifo(policy), clock.clone().into());
    let mut model = Model::new(max, ttl.map(secs), idle.map(secs));
    for (step, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut model, op);
        let got = apply_engine(&mut engine, &clock, op);
        prop_assert_eq!(&got, &expected, "step {} {:?}", step, op);
        engine.validate();
        check_counters(&engine.stats(), &model.stats, step, op, matches!(op, Op::Len | Op::Keys(_) | Op::Clear))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    // Capacities up to 12 over 10 keys, up to 200 steps: both queues, the
    // ghost and its wrap-around, small queues of more than one entry, and the
    // small queue resized by the hill climber (every 20 x capacity gets) are
    // all reached.
    #[test]
    fn s3fifo_engine_matches_the_model(
        max in 1usize..13,
        ttl in proptest::option::of(1u64..6),
        idle in proptest::option::of(1u64..4),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        check_sequence(max, ttl, idle, ops)?;
    }
}

/// A scan of one-off keys larger than the cache must not flush the keys that
/// are read again and again (LRU loses them all).
#[test]
fn a_scan_does_not_flush_the_hot_keys() {
    let mut engine = StrEngine::<u32>::new(S3FifoPolicy::new(100).unwrap().into(), ManualClock::new().into());
    for round in 0..3 {
        for hot in 0..50 {
            let key = format!("hot{hot}");
            if engine.get(&key).unwrap().is_none() {
                engine.set(&key, round, Default::default()).unwrap();
            }
        }
    }
    for i in 0..1_000 {
        engine.set(&format!("scan{i}"), i, Default::default()).unwrap();
    }
    let kept = (0..50).filter(|hot| engine.peek(&format!("hot{hot}")).is_some()).count();
    assert_eq!(kept, 50, "every hot key survived the scan");
    engine.validate();
}

#[test]
fn the_climber_moves_the_small_queue_towards_the_better_hit_rate() {
    let max = 1_000;
    let mut c = Climber::new(max);
    let (mut gets, mut misses, mut small) = (0u64, 0u64, 100usize);
    // No period has passed: no change.
    assert_eq!(c.adapt(19_999, 0, small, max), None);
    // Each period: the hit rate as a function of the small queue's size,
    // best at 40 entries.
    let rate = |small: usize| 0.9 - (small as f64 - 40.0).abs() / 1_000.0;
    let mut seen = Vec::new();
    for _ in 0..300 {
        gets += 20_000;
        misses += (20_000.0 * (1.0 - rate(small))) as u64;
        small = c.adapt(gets, misses, small, max).expect("a period passed");
        assert!((1..=800).contains(&small));
        seen.push(small);
    }
    let settled = &seen[200..];
    assert!(settled.iter().all(|&s| (20..=60).contains(&s)), "hovers near the best size: {settled:?}");
    // A reset of the counters starts a new period instead of underflowing.
    assert_eq!(c.adapt(10, 5, small, max), None);
}

/// The climber sums the shard's get counts (every thread lane) once every
/// 64 writes at most for a large capacity, not on every write; and still
/// decides when a period has passed. A small capacity looks on every write.
#[test]
fn the_climber_reads_the_get_counts_once_every_64_writes() {
    use super::engine::TOTALS_READ;
    let looks = |max: usize, writes: u32| {
        let policy = S3FifoPolicy::new(max).unwrap().adaptive(false);
        let mut engine = StrEngine::<u32>::new(policy.into(), ManualClock::new().into());
        let before = TOTALS_READ.get();
        for i in 0..writes {
            engine.set(&format!("k{}", i % 2_000), i, Default::default()).unwrap();
        }
        (TOTALS_READ.get() - before, engine)
    };
    // A period of 20 x 20,000 gets: a look every 64 writes.
    let (n, mut engine) = looks(20_000, 6_400);
    assert_eq!(n, 100, "one look every 64 writes");
    // A period of 20 x 1,000 gets: every 20,000 / 4,096 = 4 writes.
    assert_eq!(looks(1_000, 400).0, 100, "one look every 4 writes");
    // A period of at most 4,096 gets: every write, as before.
    assert_eq!(looks(204, 300).0, 300, "a look on every write");
    // A period of gets is seen within 64 writes of its end.
    let small = engine.small_cap_for_tests();
    for _ in 0..400_000 {
        engine.get("k1").unwrap();
    }
    let mut writes = 0;
    while engine.small_cap_for_tests() == small {
        engine.set("k1", 0, Default::default()).unwrap();
        writes += 1;
        assert!(writes <= 64, "no decision after {writes} writes past a period");
    }
}
