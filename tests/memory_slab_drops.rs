#![cfg(not(target_arch = "wasm32"))]
//! The slab overwrites a free slot without running its drop glue (a debug assertion checks the
//! slot is empty, gone under `--release`). Values that count their own
//! drops, through every path that frees or reuses a slot: replacement,
//! eviction, expiry (read, write sweep), delete, tags, clear, dump/load,
//! a weigher that panics, a listener that panics or re-enters, a value
//! whose Drop re-enters. Every value made is dropped exactly once (a leak
//! leaves LIVE > 0; a double drop makes it negative). Run also with
//! `cargo test --release --test memory_slab_drops`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, ManualClock, MemoryStore, Metadata, Policy, S3FifoPolicy, SetOptions};

static LIVE: AtomicI64 = AtomicI64::new(0);

#[derive(Debug)]
struct D(u64);

impl D {
    fn new(v: u64) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        D(v)
    }
}

impl Clone for D {
    fn clone(&self) -> Self {
        D::new(self.0)
    }
}

impl Drop for D {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn policies() -> Vec<(&'static str, Policy, bool)> {
    vec![
        ("lru", LruPolicy::new(16).unwrap().into(), false),
        ("s3fifo", S3FifoPolicy::new(16).unwrap().into(), false),
        ("s3fifo classic", S3FifoPolicy::new(16).unwrap().adaptive(false).into(), false),
        ("lru weighted", LruPolicy::new(40).unwrap().into(), true),
        ("s3fifo weighted", S3FifoPolicy::new(40).unwrap().into(), true),
    ]
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// Expected: LIVE is 0 once each store is dropped, for every policy and seed.
#[test]
fn every_value_is_dropped_exactly_once_through_every_path_that_frees_a_slot() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("refuses") {
            default(info)
        }
    }));
    for seed in 1..=40u64 {
        for (name, policy, weighted) in policies() {
            let clock = ManualClock::new();
            let mut builder = MemoryStore::<D>::builder(policy).clock(clock.clone()).shards(1 + (seed as usize % 3));
            if weighted {
                builder = builder.weigher(|_, v: &D| {
                    assert!(v.0 % 97 != 13, "weigher refuses");
                    1 + v.0 % 5
                });
            }
            if seed % 2 == 0 {
                builder = builder.on_remove(|_, v: D, _| {
                    assert!(v.0 % 89 != 7, "listener refuses");
                    drop(v);
                });
            }
            let store = Arc::new(builder.build());
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            for step in 0..3_000u64 {
                let k = format!("k{}", rng.next(40));
                let v = rng.next(1_000);
                let op = rng.next(100);
                let r = catch_unwind(AssertUnwindSafe(|| match op {
                    0..=39 => {
                        let _ = store.set(&k, D::new(v), SetOptions::new()).into_inner();
                    }
                    40..=49 => {
                        let _ = store
                            .set(&k, D::new(v), SetOptions::new().ttl(Duration::from_millis(1 + v % 20)))
                            .into_inner();
                    }
                    50..=54 => {
                        let mut m = Metadata::new();
                        m.insert("m".into(), v.to_string().into());
                        let _ = store.set(&k, D::new(v), SetOptions::new().metadata(m).tags(["t"])).into_inner();
                    }
                    55..=57 => {
                        let _ = store.set(&k, D::new(v), SetOptions::new().idle(Duration::from_millis(5))).into_inner();
                    }
                    58..=79 => {
                        let _ = store.get(&k).into_inner();
                    }
                    80..=86 => {
                        let _ = store.delete(&k).into_inner();
                    }
                    87..=89 => clock.advance(Duration::from_millis(v % 15)),
                    90..=91 => {
                        let _ = store.invalidate_tags(&["t"]).into_inner();
                    }
                    92 => {
                        let _ = store.clear().into_inner();
                    }
                    93..=94 => {
                        if let Ok(dump) = store.dump() {
                            let _ = store.clear().into_inner();
                            let _ = store.load(dump);
                        }
                    }
                    95..=97 => {
                        let keys: Vec<String> = (0..4).map(|i| format!("k{}", (v + i) % 40)).collect();
                        let entries = keys.iter().map(|k| (k.as_str(), D::new(v))).collect();
                        let _ = store.set_many(entries, SetOptions::new()).into_inner();
                    }
                    _ => {
                        let _ = store.get_many(&["k1", "k2", &k]).into_inner();
                    }
                }));
                let _ = (r, step);
            }
            drop(store);
            let live = LIVE.load(Ordering::SeqCst);
            assert_eq!(
                live, 0,
                "{name} seed {seed}: values alive after the store was dropped (leak > 0, double drop < 0)"
            );
        }
    }
}
