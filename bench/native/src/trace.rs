//! `trace`: replays a block trace from the ARC paper (Megiddo and Modha,
//! FAST 2003) cache-aside, get and set on a miss, and prints one JSON line.
//!
//! Format: one line per run of requests, `start count ...`, standing for the
//! blocks `start..start+count`; `.zst` files are decompressed on the fly.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

/// `--policy` names: ours through `MemoryStore`, then the peers on the same replay.
pub const POLICIES: &[&str] = &["s3-fifo", "s3-fifo-classic", "lru", "ttl", "quick_cache", "moka"];

trait Replay {
    fn get(&mut self, key: &str) -> bool;
    fn set(&mut self, key: &str);
}

struct Ours(MemoryStore<u64>);
impl Replay for Ours {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).into_inner().unwrap().is_some()
    }
    fn set(&mut self, key: &str) {
        self.0.set(key, 0, SetOptions::new()).into_inner().unwrap();
    }
}

struct Quick(quick_cache::unsync::Cache<String, u64>);
impl Replay for Quick {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&mut self, key: &str) {
        self.0.insert(key.to_string(), 0);
    }
}

struct Moka(moka::sync::Cache<String, u64>);
impl Replay for Moka {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&mut self, key: &str) {
        self.0.insert(key.to_string(), 0);
        // moka applies writes in batches; replaying without this measures its buffers.
        self.0.run_pending_tasks();
    }
}

fn make(policy: &str, capacity: usize, shards: Option<usize>) -> Box<dyn Replay> {
    let ours = |p: pepperpy_caching::Policy| {
        let mut b = MemoryStore::builder(p);
        if let Some(n) = shards {
            b = b.shards(n);
        }
        Box::new(Ours(b.build())) as Box<dyn Replay>
    };
    match policy {
        "s3-fifo" => ours(S3FifoPolicy::new(capacity).unwrap().into()),
        "s3-fifo-classic" => ours(S3FifoPolicy::new(capacity).unwrap().adaptive(false).into()),
        "lru" => ours(LruPolicy::new(capacity).unwrap().into()),
        // With one long TTL for all, soonest-to-expire is first-in, first-out.
        "ttl" => ours(TtlPolicy::new(Duration::from_secs(1 << 30)).unwrap().with_max_size(capacity).unwrap().into()),
        "quick_cache" => Box::new(Quick(quick_cache::unsync::Cache::new(capacity))),
        "moka" => Box::new(Moka(moka::sync::Cache::new(capacity as u64))),
        other => {
            eprintln!("unknown policy {other}; try --list-policies");
            std::process::exit(2);
        }
    }
}

fn open(path: &str) -> Box<dyn BufRead> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(2);
    });
    let reader: Box<dyn Read> = if path.ends_with(".zst") {
        Box::new(ruzstd::decoding::StreamingDecoder::new(file).expect("not a zstd stream"))
    } else {
        Box::new(file)
    };
    Box::new(BufReader::with_capacity(1 << 16, reader))
}

/// A synthetic trace named like a file: `zipf:S[:KEYS[:REQUESTS]]` (Zipf with
/// exponent S over KEYS keys, default 100,000 keys and 2,000,000 requests,
/// ranks scattered over the key space, seeded) or `loop:N[:REQUESTS]` (keys
/// 0..N in a loop). `None` for a file name.
fn synthetic(path: &str) -> Option<Vec<u64>> {
    let mut parts = path.split(':');
    let kind = parts.next()?;
    let nums: Vec<f64> = parts.map(|p| p.parse().expect("a synthetic trace's parameters are numbers")).collect();
    let arg = |i: usize, default: f64| nums.get(i).copied().unwrap_or(default) as usize;
    match kind {
        "zipf" => {
            let (keys, requests) = (arg(1, 100_000.0), arg(2, 2_000_000.0));
            let zipf = crate::Zipf::new(keys, nums[0]);
            let mut rng = crate::Rng(0x5EED ^ keys as u64);
            let mut scatter: Vec<u64> = (0..keys as u64).collect();
            for i in (1..scatter.len()).rev() {
                scatter.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            Some((0..requests).map(|_| scatter[zipf.sample(&mut rng) as usize]).collect())
        }
        "loop" => {
            let (n, requests) = (arg(0, 1.0).max(1), arg(1, 2_000_000.0));
            Some((0..requests).map(|i| (i % n) as u64).collect())
        }
        _ => None,
    }
}

/// Calls `f` with every block id the trace requests, in order.
pub fn for_each_block(path: &str, mut f: impl FnMut(u64)) {
    if let Some(blocks) = synthetic(path) {
        blocks.into_iter().for_each(f);
        return;
    }
    for (n, line) in open(path).lines().enumerate() {
        let line = line.expect("unreadable trace");
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else { continue };
        let parse = |s: &str| {
            s.parse::<u64>().unwrap_or_else(|_| {
                eprintln!("{path}:{}: not a number: {s:?}", n + 1);
                std::process::exit(2)
            })
        };
        let (start, count) = (parse(start), parse(count));
        for block in start..start + count {
            f(block);
        }
    }
}

pub fn main(args: &[String]) {
    if args.iter().any(|a| a == "--list-policies") {
        for p in POLICIES {
            println!("{p}");
        }
        return;
    }
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (Some(path), Some(capacity), Some(policy)) = (value("--trace"), value("--capacity"), value("--policy")) else {
        eprintln!("usage: trace --trace FILE --capacity N --policy NAME [--shards N] | trace --list-policies");
        std::process::exit(2);
    };
    let capacity: usize = capacity.parse().ok().filter(|&c| c > 0).unwrap_or_else(|| {
        eprintln!("--capacity must be a positive integer");
        std::process::exit(2)
    });
    let shards = value("--shards").map(|s| s.parse::<usize>().expect("--shards must be an integer"));
    let mut cache = make(&policy, capacity, shards);
    let (mut requests, mut hits) = (0u64, 0u64);
    let mut key = String::with_capacity(24);
    for_each_block(&path, |block| {
        use std::fmt::Write;
        key.clear();
        write!(key, "{block}").unwrap();
        requests += 1;
        if cache.get(&key) {
            hits += 1;
        } else {
            cache.set(&key);
        }
    });
    let ratio = if requests == 0 { 0.0 } else { hits as f64 / requests as f64 };
    println!(
        "{}",
        serde_json::json!({
            "policy": policy, "capacity": capacity, "requests": requests, "hits": hits, "hit_ratio": ratio,
        })
    );
}
