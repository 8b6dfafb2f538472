//! The slot engine against the memory engine (`engine/`), which it must
//! match decision for decision: random operations on both, the same live
//! keys in the same order after every step, and every invariant checked.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::policies::{LruPolicy, S3FifoPolicy, TtlPolicy};
use crate::store::SetOptions;
use crate::stores::memory::test_support::StrEngine;

/// The JS layer's side of a store, as js/api/8-store.js keeps it.
struct Js {
    engine: SlotEngine,
    ids: HashMap<String, u32>,
    keys: Vec<Option<String>>,
    ring: usize,
    hits: u64,
    misses: u64,
    /// As the JS layer's `#idles`: per slot with a time-to-idle, its idle
    /// time and TTL deadline (ms).
    idles: HashMap<u32, (f64, f64)>,
    default_ttl_ms: f64,
}

impl Js {
    fn forget(&mut self, id: u32) {
        self.idles.remove(&id);
        if let Some(key) = self.keys[id as usize].take()
            && self.ids.get(&key) == Some(&id)
        {
            self.ids.remove(&key);
        }
    }

    fn set(&mut self, key: &str, ttl_ms: Option<u64>, idle_ms: Option<u64>, now: f64) {
        let existing = self.ids.get(key).map_or(-1, |&id| i64::from(id));
        // As the JS layer does: no hash for a key it has a slot for.
        let hash = if existing >= 0 {
            0
        } else {
            key.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
        };
        self.engine.replay(self.ring);
        self.ring = 0;
        let mut ttl = ttl_ms.map_or(f64::NAN, |ms| ms as f64);
        // As `#put`: the engine gets the sooner of the idle time and the TTL.
        let clock = idle_ms.map(|idle| {
            let ttl_ms = if ttl.is_nan() { self.default_ttl_ms } else { ttl };
            ttl = ttl_ms.min(idle as f64);
            (idle as f64, now + ttl_ms)
        });
        // As the JS store's wasm binding does (src/wasm/mod.rs): the room
        // first, then a set that allocates nothing (an allocation cut short
        // by a stack overflow inside the set would leave it half-done).
        assert!(self.engine.prepare_set(existing, ttl));
        let before = capacities(&self.engine);
        let id =
            self.engine.set_reserved(existing, hash, ttl, now, (self.hits + self.misses) as f64, self.misses as f64);
        assert_eq!(capacities(&self.engine), before, "the set allocated after its room was reserved");
        assert!(id >= 0);
        let removed = self.engine.removed.clone();
        for i in 0..removed[0] as usize {
            let (rid, reason) = (removed[1 + 2 * i], removed[2 + 2 * i]);
            if reason != REPLACED {
                self.forget(rid);
            }
        }
        let id = id as u32;
        if self.keys.len() <= id as usize {
            self.keys.resize(id as usize + 1, None);
        }
        self.keys[id as usize] = Some(key.to_string());
        self.ids.insert(key.to_string(), id);
        match clock {
            Some(clock) => self.idles.insert(id, clock),
            None => self.idles.remove(&id),
        };
    }

    fn get(&mut self, key: &str, now: f64) -> bool {
        let Some(&id) = self.ids.get(key) else {
            self.misses += 1;
            return false;
        };
        if self.engine.timed && self.engine.deadline[id as usize] <= now {
            self.engine.replay(self.ring);
            self.ring = 0;
            self.engine.expire(id);
            self.forget(id);
            self.misses += 1;
            return false;
        }
        self.hits += 1;
        // As `#idleRead`: the deadline moves, in place, to now + idle or the TTL's.
        if let Some(&(idle, ttl_at)) = self.idles.get(&id) {
            let at = &mut self.engine.deadline[id as usize];
            *at = at.max((now + idle).min(ttl_at));
        }
        if self.engine.hits_reorder() {
            self.engine.ring[self.ring] = id;
            self.ring += 1;
            if self.ring == RING_LEN {
                self.engine.replay(self.ring);
                self.ring = 0;
            }
        } else if self.engine.kind == Kind::S3Fifo {
            self.engine.bump(id);
        }
        true
    }

    fn delete(&mut self, key: &str, now: f64) -> bool {
        let Some(&id) = self.ids.get(key) else { return false };
        self.engine.replay(self.ring);
        self.ring = 0;
        let live = self.engine.remove(id, now);
        self.forget(id);
        live
    }

    fn keys(&mut self, now: f64) -> Vec<String> {
        self.engine.replay(self.ring);
        self.ring = 0;
        // The room first, as the binding does: the reclaim and the listing allocate nothing.
        assert!(self.engine.prepare_report(self.engine.live() + 1));
        let before = capacities(&self.engine);
        self.engine.reclaim(now).unwrap();
        assert_eq!(capacities(&self.engine), before, "the reclaim allocated after its room was reserved");
        for id in self.engine.report.clone() {
            self.forget(id);
        }
        assert!(self.engine.prepare_report(self.engine.live()));
        let before = capacities(&self.engine);
        self.engine.list_live().unwrap();
        assert_eq!(capacities(&self.engine), before, "the listing allocated after its room was reserved");
        self.engine.report.iter().map(|&id| self.keys[id as usize].clone().unwrap()).collect()
    }
}

/// The capacity of every buffer the engine grows: equal before and after a
/// call, the call allocated nothing.
fn capacities(engine: &SlotEngine) -> Vec<usize> {
    let e = engine;
    let mut all = vec![
        e.freq.capacity(),
        e.prev.capacity(),
        e.next.capacity(),
        e.deadline.capacity(),
        e.seq.capacity(),
        e.hash.capacity(),
        e.dues.capacity(),
        e.report.capacity(),
    ];
    all.extend(e.ghost.capacities());
    all
}

fn run(policy: Policy, seed: u64, steps: usize, keys: u64) {
    let clock = ManualClock::new();
    let mut reference: StrEngine<u32> = StrEngine::new(policy.clone(), clock.clone().into());
    let mut js = Js {
        engine: SlotEngine::new(&policy),
        ids: HashMap::new(),
        keys: Vec::new(),
        ring: 0,
        hits: 0,
        misses: 0,
        idles: HashMap::new(),
        default_ttl_ms: policy.default_ttl().map_or(f64::INFINITY, |ttl| ttl.as_millis() as f64),
    };
    let idling = policy.default_idle().is_some();
    let policy_idle = policy.default_idle().map(|idle| idle.as_millis() as u64);
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut now = 0u64;
    for step in 0..steps {
        let key = format!("k{}", next() % keys);
        match next() % 10 {
            0..=3 => {
                let ttl = (next() % 3 == 0).then(|| 1 + next() % 50);
                let mut options =
                    ttl.map_or_else(SetOptions::new, |ms| SetOptions::new().ttl(Duration::from_millis(ms)));
                // Under a policy with an idle time, a third of the entries have their own.
                let own_idle = (idling && next() % 3 == 0).then(|| 1 + next() % 30);
                if let Some(ms) = own_idle {
                    options = options.idle(Duration::from_millis(ms));
                }
                reference.set(&key, 0, options).unwrap();
                js.set(&key, ttl, own_idle.or(policy_idle), now as f64);
            }
            4..=7 => {
                let hit = reference.get(&key).unwrap().is_some();
                assert_eq!(js.get(&key, now as f64), hit, "step {step}: get {key}");
            }
            8 => {
                let live = reference.delete(&key).unwrap();
                assert_eq!(js.delete(&key, now as f64), live, "step {step}: delete {key}");
            }
            _ => {
                let by = next() % 10;
                clock.advance(Duration::from_millis(by));
                now += by;
            }
        }
        js.engine.validate();
        if step % 16 == 0 {
            assert_eq!(js.keys(now as f64), reference.keys(None).unwrap(), "step {step}: the live keys, in order");
            let stats = reference.stats();
            assert_eq!(js.engine.counters[SETS], stats.sets as f64);
            assert_eq!(js.engine.counters[EVICTIONS], stats.evictions as f64, "step {step}: evictions");
        }
    }
}

#[test]
fn lru_matches_the_memory_engine() {
    for seed in 1..4 {
        run(LruPolicy::new(20).unwrap().into(), seed, 4000, 60);
    }
    run(LruPolicy::new(20).unwrap().refresh_on_get(false).into(), 9, 4000, 60);
    run(LruPolicy::new(20).unwrap().with_default_ttl(Duration::from_millis(30)).unwrap().into(), 5, 4000, 60);
}

// The slot engine runs classic S3-FIFO (a hill-climbed small queue, no
// sketch or shadows): the memory engine's `adaptive(false)`.
#[test]
fn s3fifo_matches_the_memory_engine() {
    for seed in 1..4 {
        run(S3FifoPolicy::new(30).unwrap().adaptive(false).into(), seed, 6000, 120);
    }
    run(
        S3FifoPolicy::new(30).unwrap().adaptive(false).with_default_ttl(Duration::from_millis(40)).unwrap().into(),
        7,
        4000,
        120,
    );
}

#[test]
fn ttl_matches_the_memory_engine() {
    run(TtlPolicy::new(Duration::from_millis(25)).unwrap().into(), 3, 4000, 60);
    run(TtlPolicy::new(Duration::from_millis(25)).unwrap().with_max_size(15).unwrap().into(), 4, 4000, 60);
}

/// Time-to-idle: the JS layer moves deadlines in place on hits; the slot
/// engine's expiry queue must still reclaim, and the TTL policy evict, in
/// the order of the real deadlines, as the memory engine does.
#[test]
fn idle_entries_match_the_memory_engine() {
    let idle = Duration::from_millis(12);
    for seed in 1..3 {
        run(LruPolicy::new(20).unwrap().with_default_idle(idle).unwrap().into(), seed, 4000, 40);
    }
    let ttl = Duration::from_millis(25);
    run(TtlPolicy::new(ttl).unwrap().with_max_size(15).unwrap().with_default_idle(idle).unwrap().into(), 4, 6000, 40);
    run(TtlPolicy::new(ttl).unwrap().with_default_idle(idle).unwrap().into(), 5, 4000, 40);
    let s3 = S3FifoPolicy::new(30).unwrap().adaptive(false);
    run(s3.with_default_ttl(Duration::from_millis(40)).unwrap().with_default_idle(idle).unwrap().into(), 6, 6000, 80);
    run(LruPolicy::new(20).unwrap().refresh_on_get(false).with_default_idle(idle).unwrap().into(), 8, 4000, 40);
}

#[test]
fn a_set_the_memory_refuses_changes_nothing_and_a_full_ring_replays_in_order() {
    let mut engine = SlotEngine::new(&LruPolicy::new(4).unwrap().into());
    let ids: Vec<i64> = (0..4).map(|i| engine.set(-1, i, f64::NAN, 0.0, 0.0, 0.0)).collect();
    // Hits on 0, then 1, then 0 again: 0 is the most recent, 2 the least.
    engine.ring[..3].copy_from_slice(&[ids[0] as u32, ids[1] as u32, ids[0] as u32]);
    engine.replay(3);
    engine.list_live().unwrap();
    assert_eq!(engine.report, [ids[0] as u32, ids[1] as u32, ids[3] as u32, ids[2] as u32]);
    engine.validate();
}

#[test]
fn the_header_tells_where_the_deadlines_are() {
    let mut engine = SlotEngine::new(&TtlPolicy::new(Duration::from_secs(10)).unwrap().into());
    engine.publish();
    assert_eq!(engine.header[3], 0, "no deadline array yet");
    let id = engine.set(-1, 0, f64::NAN, 0.0, 0.0, 0.0);
    assert_eq!(id, 0);
    assert_eq!(engine.header[1], 1);
    assert_ne!(engine.header[3], 0, "the first deadline made the array");
    assert_eq!(engine.deadline[0], 10_000.0);
}

/// `place` puts a slot at the head of the queue a dump says it came from,
/// keeping its access count; `on_probation` reads it back. LRU ignores it.
#[test]
fn place_moves_a_slot_to_the_head_of_its_queue() {
    let mut engine = SlotEngine::new(&S3FifoPolicy::new(100).unwrap().into());
    let ids: Vec<u32> = (0..5u32).map(|i| engine.set(-1, i, f64::NAN, 0.0, 0.0, 0.0) as u32).collect();
    let listed = |engine: &mut SlotEngine| {
        let n = engine.list_live().unwrap();
        engine.report[..n].to_vec()
    };
    let before = listed(&mut engine);
    assert_eq!(before.len(), 5);
    engine.freq[ids[2] as usize] |= 2;
    let was = engine.on_probation(ids[2]);
    engine.place(ids[2], !was);
    engine.validate();
    assert_eq!(engine.on_probation(ids[2]), !was, "moved to the other queue");
    assert_eq!(engine.freq[ids[2] as usize] & COUNT, 2, "its access count kept");
    engine.place(ids[0], true);
    engine.place(ids[1], true);
    engine.validate();
    let after = listed(&mut engine);
    assert_eq!(&after[..2], &[ids[1], ids[0]], "the small queue, newest first");
    assert!(engine.on_probation(ids[0]) && engine.on_probation(ids[1]));
    engine.place(ids[0], false);
    engine.validate();
    assert!(!engine.on_probation(ids[0]));
    assert_eq!(listed(&mut engine).len(), 5);
    // Freed and out-of-range slots, and other policies: nothing happens.
    engine.place(1_000, true);
    assert!(!engine.on_probation(1_000));
    let mut lru = SlotEngine::new(&LruPolicy::new(10).unwrap().into());
    let id = lru.set(-1, 1, f64::NAN, 0.0, 0.0, 0.0) as u32;
    lru.place(id, true);
    lru.validate();
    assert!(!lru.on_probation(id));
}
