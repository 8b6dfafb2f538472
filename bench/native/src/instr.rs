//! `instr --cache NAME --op get|set|churn [--ops N] [--capacity C]`: one
//! cache, one kind of operation, for counting instructions per operation
//! with callgrind.
//!
//! The cache (capacity C, default 10,000 as in the main suite) is first warmed by two
//! cache-aside passes of the read-heavy Zipf trace (100,000 keys); then
//! `measured` runs N operations (default 1,000,000): `get` reads the trace's
//! keys (hits and misses as the trace gives them), `set` writes them (new
//! keys evict), `update` writes only the ones the cache holds, `churn` sets N keys never seen before (after 2 x C others,
//! so that the cache is full and evicting). Only `measured` is
//! counted when run as
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*instr*measured*' \
//!     bench/native/target/release/pepperpy-bench-native instr --cache quick_cache --op get
//! ```
//!
//! so the instructions per operation are callgrind's total over N (the `dyn`
//! call per operation is the same for every cache). `--list` names the caches.

use std::hint::black_box;
use std::sync::Arc;

use crate::{Bench, CACHES, Op, make, run, zipf_trace};

const KEY_SPACE: usize = 100_000;

/// The counted loop: out of line, so callgrind's `--toggle-collect` can name it.
#[inline(never)]
fn measured(cache: &dyn Bench, keys: &[String], trace: &[Op], op: &str) -> u64 {
    let mut found = 0u64;
    match op {
        "get" => {
            for o in trace {
                found += u64::from(cache.get(&keys[o.key as usize]));
            }
        }
        // `update`'s trace holds only keys the cache holds (found before the
        // loop): the update path alone, no admission, no eviction.
        "set" | "update" => {
            for (i, o) in trace.iter().enumerate() {
                cache.set(&keys[o.key as usize], i as u64);
            }
        }
        // The keys are made before the loop, so only the sets are counted.
        "churn" => {
            for (i, key) in keys.iter().enumerate() {
                cache.set(key, i as u64);
            }
        }
        other => panic!("unknown op {other} (get, set, update, churn)"),
    }
    found
}

pub fn main(args: &[String]) {
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if args.iter().any(|a| a == "--list") {
        for name in CACHES.iter().chain(crate::EXTRA_CACHES) {
            println!("{name}");
        }
        return;
    }
    let fragment = value("--cache").expect("--cache NAME (a fragment of a name from --list)");
    let name = CACHES
        .iter()
        .chain(crate::EXTRA_CACHES)
        .find(|n| n.contains(fragment.as_str()))
        .unwrap_or_else(|| panic!("no cache named like {fragment} (see --list)"));
    let op = value("--op").unwrap_or_else(|| "get".into());
    let ops: usize = value("--ops").map_or(1_000_000, |s| s.parse().unwrap());
    let capacity: usize = value("--capacity").map_or(10_000, |s| s.parse().unwrap());
    let keys: Vec<String> = (0..KEY_SPACE).map(|i| format!("key:{i:08}")).collect();
    let cache: Arc<dyn Bench> = make(name, capacity);
    let warm = zipf_trace(2 * KEY_SPACE, KEY_SPACE, 0.9, 1);
    run(&cache, &keys, &warm, 1, true);
    run(&cache, &keys, &warm, 1, true);
    if op == "churn" {
        // Steady state: the cache full and evicting (and its tables grown) before the count.
        for i in 0..2 * capacity {
            cache.set(&format!("fill:{i}"), i as u64);
        }
    }
    let (trace, keys) = if op == "churn" {
        (Vec::new(), (0..ops).map(|i| format!("churn:{i}")).collect())
    } else if op == "update" {
        // The held keys of the Zipf trace, in its order, `ops` of them.
        let held: Vec<Op> =
            zipf_trace(4 * ops, KEY_SPACE, 0.9, 1).into_iter().filter(|o| cache.get(&keys[o.key as usize])).collect();
        (held.into_iter().take(ops).collect(), keys)
    } else {
        (zipf_trace(ops, KEY_SPACE, 0.9, 1), keys)
    };
    let start = std::time::Instant::now();
    let found = measured(&*cache, &keys, &trace, &op);
    // Wall clock too, for ratios within one run (meaningless under callgrind).
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!("{name}: {ops} x {op}, {found} found, {ns:.1} ns each");
    black_box(cache);
}
