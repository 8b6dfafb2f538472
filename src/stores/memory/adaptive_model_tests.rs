//! Model-based tests of the adaptive S3-FIFO (the default `S3FifoPolicy`):
//! the engine against a naive reference that keeps its two queues and its
//! ghost in `VecDeque`s (front = oldest), searches them linearly and purges
//! expired entries eagerly at every step.
//!
//! The reference shares only the parts that have tests of their own: the
//! frequency sketch (`sketch.rs`) and the shadow caches with their hit buffer
//! (`shadow.rs`). It feeds them by the policy's rules (a new key is counted
//! when it is stored; an entry's hits when the eviction looks at it; a
//! sampled hit into the buffer; every write to the shadows), so a wrong call
//! from the engine (a missed count, a hit fed to the sketch on the read path,
//! a setting not applied) changes later evictions and fails the comparison.
//! Keys come back in the documented order (small newest first, then main
//! newest first), counters must agree, and the engine's invariants are
//! checked after every step.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;

use super::engine::{MAX_FREQ, MOVE_TO_MAIN};
use super::ghost;
use super::shadow::{self, Sampler, Setting};
use super::sketch::{FrequencySketch, MAX_COUNT};
use super::test_support::{ModelEntry, StrEngine, check_counters, find_in_queues, purge_queues};
use crate::clock::ManualClock;
use crate::metrics::CacheStats;
use crate::pattern::Pattern;
use crate::policies::{Policy, S3FifoPolicy};
use crate::store::SetOptions;

const PATTERNS: &[&str] = &["*", "k1*", "k?", "k[0-4]*"];

#[derive(Clone, Debug)]
enum Op {
    Set { key: usize, value: u32, ttl_secs: Option<u64> },
    Get(usize),
    Delete(usize),
    Invalidate(usize),
    Keys,
    Len,
    Clear,
    Advance(u64),
}

fn op(keys: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..keys, any::<u32>(), proptest::option::of(1u64..8))
            .prop_map(|(key, value, ttl_secs)| Op::Set { key, value, ttl_secs }),
        10 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Delete),
        1 => (0..PATTERNS.len()).prop_map(Op::Invalidate),
        1 => Just(Op::Keys),
        1 => Just(Op::Len),
        1 => Just(Op::Clear),
        2 => (0u64..3).prop_map(Op::Advance),
    ]
}

fn key(i: usize) -> String {
    format!("k{i}")
}

const SECOND: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    hash: u64,
    value: u32,
    expires_at: Option<u64>,
    clock: u8,
    pending: u8,
}

impl ModelEntry for Entry {
    fn key_and_expiry(&self) -> (&str, Option<u64>) {
        (&self.key, self.expires_at)
    }
}

struct Model {
    small: VecDeque<Entry>,
    main: VecDeque<Entry>,
    /// Per ghost bucket, the last four keys evicted from small that hashed
    /// to it; `None` once taken back.
    ghost: Vec<VecDeque<Option<u64>>>,
    max: usize,
    setting: Setting,
    evicted_once: bool,
    sketch: FrequencySketch,
    sampler: Sampler,
    mask: u32,
    now: u64,
    stats: CacheStats,
}

impl Model {
    fn new(max: usize) -> Self {
        let (mask, shadow_cap) = shadow::sampling(max);
        Model {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: vec![VecDeque::new(); ghost::buckets_for(shadow::ghost_size(max))],
            max,
            setting: shadow::SETTINGS[0],
            evicted_once: false,
            sketch: FrequencySketch::new(max),
            sampler: Sampler::new(shadow_cap),
            mask,
            now: 0,
            stats: CacheStats::default(),
        }
    }

    fn small_cap(&self) -> usize {
        self.setting.small_cap(self.max)
    }

    fn main_cap(&self) -> usize {
        self.max.saturating_sub(self.small_cap()).max(1)
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

    fn bump(e: &mut Entry) {
        e.clock = (e.clock + 1).min(MAX_FREQ);
        e.pending = (e.pending + 1).min(MAX_COUNT);
    }

    fn flush(sketch: &mut FrequencySketch, e: &mut Entry) {
        if e.pending > 0 {
            sketch.increment_by(e.hash, e.pending);
            e.pending = 0;
        }
    }

    fn ghost_take(&mut self, hash: u64) -> bool {
        if self.ghost.is_empty() {
            return false;
        }
        let bucket = ghost::bucket_of(hash, self.ghost.len());
        let fp = ghost::fingerprint(hash);
        match self.ghost[bucket].iter_mut().find(|g| g.is_some_and(|h| ghost::fingerprint(h) == fp)) {
            Some(cell) => {
                *cell = None;
                true
            }
            None => false,
        }
    }

    fn ghost_insert(&mut self, hash: u64) {
        if self.ghost.is_empty() {
            return;
        }
        let bucket = ghost::bucket_of(hash, self.ghost.len());
        let queue = &mut self.ghost[bucket];
        queue.push_back(Some(hash));
        if queue.len() > 4 {
            queue.pop_front();
        }
    }

    /// Turns main's CLOCK until its front has a count of zero.
    fn main_victim(&mut self) -> u64 {
        loop {
            let front = self.main.front_mut().unwrap();
            Self::flush(&mut self.sketch, front);
            if front.clock == 0 {
                return front.hash;
            }
            front.clock -= 1;
            let e = self.main.pop_front().unwrap();
            self.main.push_back(e);
        }
    }

    fn evict(&mut self) {
        self.evicted_once = true;
        self.stats.evictions += 1;
        loop {
            if self.main.len() > self.main_cap() || self.small.is_empty() {
                if self.main.is_empty() {
                    self.stats.evictions -= 1;
                    return;
                }
                self.main_victim();
                self.main.pop_front();
                return;
            }
            let front = self.small.front_mut().unwrap();
            Self::flush(&mut self.sketch, front);
            if front.clock >= MOVE_TO_MAIN {
                let mut e = self.small.pop_front().unwrap();
                e.clock = 0;
                self.main.push_back(e);
                continue;
            }
            let e = self.small.pop_front().unwrap();
            self.ghost_insert(e.hash);
            return;
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.sketch.admit(entry.hash);
        let returning = self.ghost_take(entry.hash);
        let to_main = if self.len() < self.max {
            returning || (!self.evicted_once && self.small.len() >= self.small_cap())
        } else if returning && self.setting.duel && self.main.len() >= self.main_cap() {
            let victim = self.main_victim();
            if self.sketch.frequency(entry.hash) > self.sketch.frequency(victim) {
                self.main.pop_front();
                self.evicted_once = true;
                self.stats.evictions += 1;
                true
            } else {
                self.evict();
                false
            }
        } else {
            self.evict();
            returning
        };
        if to_main {
            self.main.push_back(entry);
        } else {
            self.small.push_back(entry);
        }
    }

    fn keys(&self) -> Vec<String> {
        self.small.iter().rev().chain(self.main.iter().rev()).map(|e| e.key.clone()).collect()
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    Unit,
    Value(Option<u32>),
    Bool(bool),
    Count(usize),
    Keys(Vec<String>),
}

fn apply_model(m: &mut Model, hash_of: &dyn Fn(&str) -> u64, op: &Op) -> Answer {
    m.purge();
    match op {
        Op::Set { key: k, value, ttl_secs } => {
            let (k, hash) = (key(*k), hash_of(&key(*k)));
            let setting = m.sampler.record_write(hash, m.mask);
            m.setting = setting;
            let expires_at = ttl_secs.map(|t| m.now + t * SECOND);
            if let Some(e) = m.find(&k) {
                e.value = *value;
                e.expires_at = expires_at;
                Model::bump(e);
            } else {
                m.insert(Entry { key: k, hash, value: *value, expires_at, clock: 0, pending: 0 });
            }
            m.stats.sets += 1;
            Answer::Unit
        }
        Op::Get(k) => {
            let (mask, hash) = (m.mask, hash_of(&key(*k)));
            match m.find(&key(*k)) {
                Some(e) => {
                    Model::bump(e);
                    let v = e.value;
                    if shadow::sampled(hash, mask) {
                        m.sampler.record_hit(hash);
                    }
                    m.stats.hits += 1;
                    Answer::Value(Some(v))
                }
                None => {
                    m.stats.misses += 1;
                    Answer::Value(None)
                }
            }
        }
        Op::Delete(k) => {
            let k = key(*k);
            let before = m.len();
            m.small.retain(|e| e.key != k);
            m.main.retain(|e| e.key != k);
            let removed = before != m.len();
            m.stats.deletes += u64::from(removed);
            Answer::Bool(removed)
        }
        Op::Invalidate(p) => {
            let pattern = Pattern::new(PATTERNS[*p]).unwrap();
            let before = m.len();
            m.small.retain(|e| !pattern.matches(&e.key));
            m.main.retain(|e| !pattern.matches(&e.key));
            let removed = before - m.len();
            m.stats.deletes += removed as u64;
            Answer::Count(removed)
        }
        Op::Keys => Answer::Keys(m.keys()),
        Op::Len => Answer::Count(m.len()),
        Op::Clear => {
            m.stats.deletes += m.len() as u64;
            m.small.clear();
            m.main.clear();
            m.ghost.iter_mut().for_each(VecDeque::clear);
            m.evicted_once = false;
            Answer::Unit
        }
        Op::Advance(n) => {
            m.now += n * SECOND;
            m.purge();
            Answer::Unit
        }
    }
}

fn apply_engine(e: &mut StrEngine<u32>, clock: &ManualClock, op: &Op) -> Answer {
    match op {
        Op::Set { key: k, value, ttl_secs } => {
            let mut options = SetOptions::new();
            if let Some(t) = ttl_secs {
                options = options.ttl(Duration::from_secs(*t));
            }
            e.set(&key(*k), *value, options).unwrap();
            Answer::Unit
        }
        Op::Get(k) => Answer::Value(e.get(&key(*k)).unwrap()),
        Op::Delete(k) => Answer::Bool(e.delete(&key(*k)).unwrap()),
        Op::Invalidate(p) => Answer::Count(e.invalidate(PATTERNS[*p]).unwrap()),
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

/// Runs `ops` on the engine and the model; the settings the engine took.
fn check_sequence(max: usize, ops: &[Op]) -> Result<Vec<Setting>, TestCaseError> {
    let mut seen = vec![shadow::SETTINGS[0]];
    let clock = ManualClock::new();
    let mut engine = StrEngine::<u32>::new(Policy::S3Fifo(S3FifoPolicy::new(max).unwrap()), clock.clone().into());
    let hasher = engine.hasher_for_tests();
    let hash_of = move |k: &str| std::hash::BuildHasher::hash_one(&hasher, k);
    let mut model = Model::new(max);
    for (step, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut model, &hash_of, op);
        let got = apply_engine(&mut engine, &clock, op);
        prop_assert_eq!(&got, &expected, "step {} {:?}", step, op);
        engine.validate();
        prop_assert_eq!(engine.adaptive_setting(), Some(model.setting), "setting after step {}", step);
        if !seen.contains(&model.setting) {
            seen.push(model.setting);
        }
        check_counters(&engine.stats(), &model.stats, step, op, matches!(op, Op::Len | Op::Keys | Op::Clear))?;
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    // Capacities 1-24 over 40 keys, up to 400 steps: both queues, the ghost
    // buckets overflowing, duels won and lost, hits handed to the sketch, the hit
    // buffer overflowing, and the shadows switching settings (their first
    // decision comes after 2 x capacity writes and sampled hits) are reached.
    #[test]
    fn adaptive_engine_matches_the_model(
        max in 1usize..25,
        ops in proptest::collection::vec(op(40), 1..400),
    ) {
        check_sequence(max, &ops)?;
    }
}

/// A long skewed sequence over many keys: every setting is taken at some
/// point and the duel decides, and the engine still matches the model.
#[test]
fn a_long_skewed_run_matches_the_model_through_setting_changes() {
    let mut ops = Vec::new();
    let mut x = 12345u64;
    for i in 0..60_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Phases: a loop over 75 keys (1.5 x capacity), then Zipf-like skew, then a scan.
        let k = match (i / 20_000) % 3 {
            0 => (i % 75) as usize,
            1 => ((x % 1000) as f64).sqrt() as usize % 200,
            _ => (200 + i % 400) as usize,
        };
        ops.push(Op::Get(k));
        ops.push(Op::Set { key: k, value: i as u32, ttl_secs: None });
    }
    let seen = check_sequence(50, &ops).unwrap();
    assert!(seen.len() >= 2, "the shadows switched the setting at least once: {seen:?}");
}

/// A set of a key whose entry has expired but was not among the entries
/// the set's reclaim took (it takes at most `RECLAIM_PER_WRITE`, soonest
/// first) sets the key as a new one, as when the reclaim took it: here the
/// ninth expired entry, rewritten. It kept its queue place before (found by
/// `adaptive_engine_matches_the_model`).
#[test]
fn a_set_of_an_expired_entry_the_reclaim_missed_is_a_new_entry() {
    let set = |key: usize, ttl_secs: Option<u64>| Op::Set { key, value: 0, ttl_secs };
    let ops = [
        set(3, Some(3)),
        set(4, Some(3)),
        set(5, Some(3)),
        set(6, Some(3)),
        set(0, Some(2)),
        set(7, Some(2)),
        set(18, Some(5)),
        set(20, Some(2)),
        Op::Advance(1),
        set(8, Some(1)),
        Op::Advance(4),
        set(18, None),
        set(19, None),
        Op::Keys,
    ];
    check_sequence(17, &ops).unwrap();
}
