//! Native benchmark: pepperpy-caching's MemoryStore against the caches people
//! already use, on the same traces in the same run, printing ratios.
//!
//! `cargo run --release -- [--quick] [--out results.json]`: every suite.
//! `cargo run --release -- trace --trace FILE --capacity N --policy NAME [--shards N] [--weight]`:
//! replays one ARC trace (`.lis` or `.lis.zst`) cache-aside and prints one JSON line.
//! `cargo run --release -- trace --list-policies`: the names `--policy` accepts.
//! `cargo run --release -- memory [--entries N]`: heap bytes per entry, ours against the lru crate.
//! `cargo run --release -- swr [--quick]`: latency of a stale read with a refresh in flight against a plain hit.
//! `cargo run --release -- tags [--quick]`: set with 0, 1 and 5 tags, get on tagged and untagged entries.
//! `cargo run --release -- instr --cache NAME --op get|set|churn [--ops N]`: one cache, one operation,
//! for callgrind (see instr.rs for the command line).

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

mod instr;
mod memory;
mod swr;
mod tags;
mod trace;

/// One operation of a trace: a key index and whether it is a read.
#[derive(Clone, Copy)]
struct Op {
    key: u32,
    get: bool,
}

/// A small, fast, seeded generator (xorshift64*), so every cache sees the
/// same trace.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over `n` keys by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}
impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32
    }
}

fn zipf_trace(len: usize, keys: usize, get_share: f64, seed: u64) -> Vec<Op> {
    let zipf = Zipf::new(keys, 0.99);
    let mut rng = Rng(seed);
    // Scatter ranks over the key space so popularity is not key order.
    let scatter: Vec<u32> = {
        let mut v: Vec<u32> = (0..keys as u32).collect();
        for i in (1..v.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    };
    (0..len).map(|_| Op { key: scatter[zipf.sample(&mut rng) as usize], get: rng.unit() < get_share }).collect()
}

/// A loop over more keys than fit: each is read, and set when missing.
fn loop_trace(len: usize, loop_len: usize) -> Vec<Op> {
    (0..len).map(|i| Op { key: (i % loop_len) as u32, get: true }).collect()
}

/// What every cache under test offers the benchmark.
trait Bench: Send + Sync {
    fn get(&self, key: &str) -> bool;
    fn set(&self, key: &str, value: u64);
}

struct Ours(MemoryStore<u64>);
impl Bench for Ours {
    fn get(&self, key: &str) -> bool {
        self.0.get(key).into_inner().unwrap().is_some()
    }
    fn set(&self, key: &str, value: u64) {
        self.0.set(key, value, SetOptions::new()).into_inner().unwrap();
    }
}

struct MutexLru(Mutex<lru::LruCache<String, u64>>);
impl Bench for MutexLru {
    fn get(&self, key: &str) -> bool {
        self.0.lock().unwrap().get(key).is_some()
    }
    fn set(&self, key: &str, value: u64) {
        let mut cache = self.0.lock().unwrap();
        if let Some(v) = cache.get_mut(key) {
            *v = value;
        } else {
            cache.put(key.to_string(), value);
        }
    }
}

struct Moka(moka::sync::Cache<String, u64>);
impl Bench for Moka {
    fn get(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&self, key: &str, value: u64) {
        self.0.insert(key.to_string(), value);
    }
}

struct Quick(quick_cache::sync::Cache<String, u64>);
impl Bench for Quick {
    fn get(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&self, key: &str, value: u64) {
        self.0.insert(key.to_string(), value);
    }
}

const OURS: &str = "pepperpy MemoryStore (S3-FIFO)";
const CACHES: &[&str] = &[
    OURS,
    "pepperpy MemoryStore (S3-FIFO, 1 shard)",
    "pepperpy MemoryStore (LRU)",
    "pepperpy MemoryStore (LRU, 8 shards)",
    "Mutex<lru::LruCache>",
    "moka::sync::Cache",
    "quick_cache::sync::Cache",
];

/// The configurations `make` builds beyond [`CACHES`] (churn, hit-ratio curve).
const EXTRA_CACHES: &[&str] = &["pepperpy MemoryStore (S3-FIFO classic)", "pepperpy MemoryStore (TTL, max_size)"];

fn make(name: &str, capacity: usize) -> Arc<dyn Bench> {
    match name {
        "pepperpy MemoryStore (S3-FIFO)" => Arc::new(Ours(MemoryStore::new(S3FifoPolicy::new(capacity).unwrap()))),
        "pepperpy MemoryStore (S3-FIFO, 1 shard)" => {
            Arc::new(Ours(MemoryStore::builder(S3FifoPolicy::new(capacity).unwrap()).shards(1).build()))
        }
        "pepperpy MemoryStore (S3-FIFO classic)" => {
            Arc::new(Ours(MemoryStore::new(S3FifoPolicy::new(capacity).unwrap().adaptive(false))))
        }
        "pepperpy MemoryStore (LRU)" => Arc::new(Ours(MemoryStore::new(LruPolicy::new(capacity).unwrap()))),
        "pepperpy MemoryStore (LRU, 8 shards)" => {
            Arc::new(Ours(MemoryStore::builder(LruPolicy::new(capacity).unwrap()).shards(8).build()))
        }
        "pepperpy MemoryStore (TTL, max_size)" => Arc::new(Ours(MemoryStore::new(
            TtlPolicy::new(std::time::Duration::from_secs(3600)).unwrap().with_max_size(capacity).unwrap(),
        ))),
        "Mutex<lru::LruCache>" => {
            Arc::new(MutexLru(Mutex::new(lru::LruCache::new(NonZeroUsize::new(capacity).unwrap()))))
        }
        "moka::sync::Cache" => Arc::new(Moka(moka::sync::Cache::new(capacity as u64))),
        "quick_cache::sync::Cache" => Arc::new(Quick(quick_cache::sync::Cache::new(capacity))),
        other => panic!("unknown cache {other}"),
    }
}

/// Runs `trace` split over `threads` threads; (ops per second, hit ratio).
/// With `fill`, a miss is followed by a set (cache-aside), as for hit-ratio runs.
fn run(cache: &Arc<dyn Bench>, keys: &[String], trace: &[Op], threads: usize, fill: bool) -> (f64, f64) {
    let chunk = trace.len().div_ceil(threads);
    let start = Instant::now();
    let (hits, gets) = std::thread::scope(|scope| {
        let handles: Vec<_> = trace
            .chunks(chunk)
            .map(|part| {
                let cache = Arc::clone(cache);
                scope.spawn(move || {
                    let (mut hits, mut gets) = (0u64, 0u64);
                    for (i, op) in part.iter().enumerate() {
                        let key = &keys[op.key as usize];
                        if op.get {
                            gets += 1;
                            if cache.get(key) {
                                hits += 1;
                            } else if fill {
                                cache.set(key, i as u64);
                            }
                        } else {
                            cache.set(key, i as u64);
                        }
                    }
                    (hits, gets)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let secs = start.elapsed().as_secs_f64();
    black_box(&cache);
    (trace.len() as f64 / secs, if gets == 0 { 0.0 } else { hits as f64 / gets as f64 })
}

/// `churn [--keys N] [--capacity C] [--only NAME]`: sets of N distinct new
/// keys (default 10M) into a full cache of C (default 100k), one thread; every
/// set past the first C evicts. Prints ops/s and the ratio to the lru crate.
fn churn(args: &[String]) {
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let keys: usize = value("--keys").map_or(10_000_000, |s| s.parse().unwrap());
    let capacity: usize = value("--capacity").map_or(100_000, |s| s.parse().unwrap());
    let only = value("--only");
    let mut results = Vec::new();
    for name in [
        "Mutex<lru::LruCache>",
        OURS,
        "pepperpy MemoryStore (S3-FIFO classic)",
        "pepperpy MemoryStore (LRU)",
        "quick_cache::sync::Cache",
        "moka::sync::Cache",
    ] {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let cache = make(name, capacity);
        let mut key = String::with_capacity(24);
        let start = Instant::now();
        for i in 0..keys {
            use std::fmt::Write;
            key.clear();
            write!(key, "churn:{i}").unwrap();
            cache.set(&key, i as u64);
        }
        let ops = keys as f64 / start.elapsed().as_secs_f64();
        results.push((name, ops));
    }
    let lru = results.iter().find(|r| r.0 == "Mutex<lru::LruCache>").map(|r| r.1);
    for (name, ops) in &results {
        let ratio = lru.map_or(String::new(), |l| format!("  this/lru {:.2}x", ops / l));
        println!("  {name:40} {:>8.2} M sets/s{ratio}", ops / 1e6);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("trace") => return trace::main(&args[2..]),
        Some("memory") => return memory::main(&args[2..]),
        Some("swr") => return swr::main(&args[2..]),
        Some("churn") => return churn(&args[2..]),
        Some("tags") => return tags::main(&args[2..]),
        Some("instr") => return instr::main(&args[2..]),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args.iter().position(|a| a == "--out").map(|i| args[i + 1].clone());
    // `--only NAME-FRAGMENT --workload N`: one cache on one workload, for profilers.
    let only = args.iter().position(|a| a == "--only").map(|i| args[i + 1].clone());
    let only_workload: Option<usize> =
        args.iter().position(|a| a == "--workload").map(|i| args[i + 1].parse().unwrap());
    let (key_space, capacity, trace_len, repeats) =
        if quick { (2_000, 200, 20_000, 1) } else { (100_000, 10_000, 2_000_000, 5) };
    // `--repeats N`: fewer timed runs (for callgrind).
    let repeats = args.iter().position(|a| a == "--repeats").map_or(repeats, |i| args[i + 1].parse().unwrap());
    let keys: Vec<String> = (0..key_space).map(|i| format!("key:{i:08}")).collect();

    let workloads: Vec<(&str, Vec<Op>, usize, bool)> = vec![
        ("zipf read-heavy 90/10, 1 thread", zipf_trace(trace_len, key_space, 0.9, 1), 1, false),
        ("zipf read-heavy 90/10, 2 threads", zipf_trace(trace_len, key_space, 0.9, 1), 2, false),
        ("zipf write-heavy 50/50, 1 thread", zipf_trace(trace_len, key_space, 0.5, 2), 1, false),
        ("zipf write-heavy 50/50, 2 threads", zipf_trace(trace_len, key_space, 0.5, 2), 2, false),
        ("loop over 1.5x capacity (get, set on miss), 1 thread", loop_trace(trace_len, capacity * 3 / 2), 1, true),
    ];

    let mut report = serde_json::Map::new();
    report.insert("ours".into(), OURS.into());
    // The machine is shared: the load average says how much the figures mean.
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
    };
    report.insert("load_average_start".into(), loadavg().into());
    // Another configuration of ours: shown in the tables, not compared as a peer.
    report.insert(
        "variants".into(),
        serde_json::json!([
            "pepperpy MemoryStore (S3-FIFO, 1 shard)",
            "pepperpy MemoryStore (LRU)",
            "pepperpy MemoryStore (LRU, 8 shards)"
        ]),
    );
    report.insert("capacity".into(), capacity.into());
    report.insert("key_space".into(), key_space.into());
    report.insert("trace_len".into(), trace_len.into());
    report.insert("repeats".into(), repeats.into());
    let mut rows = Vec::new();
    for (w, (name, trace, threads, fill)) in workloads.iter().enumerate() {
        if only_workload.is_some_and(|o| o != w) {
            continue;
        }
        println!("\n{name}");
        let mut results = Vec::new();
        for cache_name in CACHES {
            if only.as_ref().is_some_and(|o| !cache_name.contains(o.as_str())) {
                continue;
            }
            let mut ops = Vec::new();
            let mut ratio = 0.0;
            for _ in 0..repeats {
                let cache = make(cache_name, capacity);
                // Warm up: one pass fills the cache, the timed pass measures.
                run(&cache, &keys, trace, *threads, *fill);
                let (o, h) = run(&cache, &keys, trace, *threads, *fill);
                ops.push(o);
                ratio = h;
            }
            let (lo, hi) = (ops.iter().cloned().fold(f64::MAX, f64::min), ops.iter().cloned().fold(0.0, f64::max));
            let med = median(&mut ops);
            results.push((cache_name.to_string(), med, lo, hi, ratio));
        }
        let ours = results[0].1;
        for (cache_name, med, lo, hi, ratio) in &results {
            println!(
                "  {cache_name:38} {:>8.2} M ops/s  [{:.2}-{:.2}]  hit ratio {ratio:.3}  ours/this {:.2}x",
                med / 1e6,
                lo / 1e6,
                hi / 1e6,
                ours / med
            );
            rows.push(serde_json::json!({
                "workload": name, "cache": cache_name, "ops_per_sec": med, "min": lo, "max": hi,
                "hit_ratio": ratio, "ours_over_this": ours / med,
            }));
        }
    }
    report.insert("throughput".into(), rows.into());
    if only.is_some() || only_workload.is_some() {
        return;
    }

    // Hit ratio against cache size, cache-aside on the read-heavy Zipf trace.
    let trace = zipf_trace(trace_len, key_space, 1.0, 3);
    let sizes: Vec<usize> =
        [0.01, 0.025, 0.05, 0.1, 0.2, 0.4].iter().map(|f| (key_space as f64 * f) as usize).collect();
    let mut curve = Vec::new();
    println!("\nhit ratio against cache size (zipf, cache-aside)");
    for cache_name in [
        OURS,
        "pepperpy MemoryStore (LRU)",
        "pepperpy MemoryStore (TTL, max_size)",
        "moka::sync::Cache",
        "quick_cache::sync::Cache",
    ] {
        let mut points = Vec::new();
        for &size in &sizes {
            let cache = make(cache_name, size);
            run(&cache, &keys, &trace, 1, true);
            let (_, ratio) = run(&cache, &keys, &trace, 1, true);
            points.push(serde_json::json!({ "size": size, "hit_ratio": ratio }));
        }
        println!(
            "  {cache_name:38} {}",
            points.iter().map(|p| format!("{:.3}", p["hit_ratio"].as_f64().unwrap())).collect::<Vec<_>>().join("  ")
        );
        curve.push(serde_json::json!({ "cache": cache_name, "points": points }));
    }
    report.insert("hit_ratio_curve".into(), curve.into());
    report.insert("load_average_end".into(), loadavg().into());

    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&serde_json::Value::Object(report)).unwrap()).unwrap();
        println!("\nwrote {path}");
    }
}
