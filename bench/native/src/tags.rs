//! `tags`: what tags cost the memory store. `set` with 0, 1 and 5 tags (a
//! store at capacity, so each `set` of a new key also evicts one, whose tags
//! leave the index), `get` hits on tagged and untagged entries, and
//! `invalidate_tags` of 1,000 entries; rounds interleaved so that noise hits
//! every case alike; median ns per operation over the rounds.

use std::hint::black_box;
use std::time::Instant;

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions};

const CAPACITY: usize = 10_000;
const KEYS: usize = 100_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn main(args: &[String]) {
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, ops) = if quick { (3, 20_000) } else { (15, 200_000) };
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key:{i:06}")).collect();
    let tag_sets: [Vec<String>; 3] =
        [vec![], vec!["user:1".into()], (0..5).map(|i| format!("group:{i}")).collect::<Vec<String>>()];
    let names = ["set, 0 tags", "set, 1 tag", "set, 5 tags", "get hit, untagged", "get hit, 5 tags"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut invalidations = Vec::new();
    for _ in 0..rounds {
        for (case, tags) in tag_sets.iter().enumerate() {
            let store = MemoryStore::<u64>::new(LruPolicy::new(CAPACITY).unwrap());
            for (i, key) in keys.iter().take(CAPACITY).enumerate() {
                store.set(key, i as u64, SetOptions::new().tags(tags.iter().cloned())).into_inner().unwrap();
            }
            let t = Instant::now();
            for i in 0..ops {
                let key = &keys[(CAPACITY + i) % KEYS];
                // The options are built in each case alike (the tags cloned once per set).
                let options = SetOptions::new().tags(tags.iter().cloned());
                store.set(key, i as u64, options).into_inner().unwrap();
            }
            times[case].push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        for (case, tags) in [(3, &tag_sets[0]), (4, &tag_sets[2])] {
            let store = MemoryStore::<u64>::new(LruPolicy::new(CAPACITY).unwrap());
            for (i, key) in keys.iter().take(1024).enumerate() {
                store.set(key, i as u64, SetOptions::new().tags(tags.iter().cloned())).into_inner().unwrap();
            }
            let t = Instant::now();
            for i in 0..ops {
                black_box(store.get(&keys[i & 1023]).into_inner().unwrap());
            }
            times[case].push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        let store = MemoryStore::<u64>::new(LruPolicy::new(CAPACITY).unwrap());
        for (i, key) in keys.iter().take(CAPACITY).enumerate() {
            let tag = if i % 10 == 0 { "hot" } else { "cold" };
            store.set(key, i as u64, SetOptions::new().tags([tag])).into_inner().unwrap();
        }
        let t = Instant::now();
        assert_eq!(store.invalidate_tags(&["hot"]).into_inner().unwrap(), CAPACITY / 10);
        invalidations.push(t.elapsed().as_nanos() as f64);
    }
    let base = median(times[0].clone());
    let base_get = median(times[3].clone());
    println!("MemoryStore<u64>, LruPolicy({CAPACITY}), {ops} ops a case, median of {rounds} interleaved rounds");
    for (i, name) in names.iter().enumerate() {
        let m = median(times[i].clone());
        let against = if i < 3 { base } else { base_get };
        println!("  {name:<20} {m:>8.1} ns/op   {:.2}x", m / against);
    }
    println!("  invalidate_tags of {} entries among {CAPACITY}: {:.0} us", CAPACITY / 10, median(invalidations) / 1000.0);
}
