//! `trace`: replays a block trace from the ARC paper (Megiddo and Modha,
//! FAST 2003) cache-aside, get and set on a miss, and prints one JSON line.
//!
//! Format: one line per run of requests, `start count ...`, standing for the
//! blocks `start..start+count`; `.zst` files are decompressed on the fly.
//!
//! `--weight`: capacity in weight instead of entries. The traces carry no
//! sizes, so each block gets a deterministic one from a hash of its id
//! ([`size_of`]: 1 to 16 units, mean 6); `--capacity` is then
//! the total weight, our stores get a weigher (`MemoryStoreBuilder::weigher`),
//! quick_cache a `Weighter` and moka a `weigher`. The line adds the byte hit
//! ratio (the weight of the hits over the weight requested).

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

/// `--policy` names: ours through `MemoryStore`, then the peers on the same replay.
pub const POLICIES: &[&str] = &["s3-fifo", "s3-fifo-classic", "lru", "ttl", "quick_cache", "moka"];

/// The size (weight) of a block in `--weight` mode, from a hash of its id:
/// a quarter of the blocks each weigh 1, 2-4, 5-9 and 10-16 units (mean 6),
/// so small blocks are the most common and a few are 16 times the smallest.
pub fn size_of(block: u64) -> u64 {
    let mut z = block.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let r = z % 4; // 0..4
    1 + (r * r) + (z >> 8) % (2 * r + 1) // 1, 2..3, 5..9, 10..16
}

/// The values stored are the entries' weights (1 when not weighing).
trait Replay {
    fn get(&mut self, key: &str) -> bool;
    fn set(&mut self, key: &str, weight: u64);
}

struct Ours(MemoryStore<u64>);
impl Replay for Ours {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).into_inner().unwrap().is_some()
    }
    fn set(&mut self, key: &str, weight: u64) {
        self.0.set(key, weight, SetOptions::new()).into_inner().unwrap();
    }
}

#[derive(Clone)]
struct ByValue;
impl quick_cache::Weighter<String, u64> for ByValue {
    fn weight(&self, _key: &String, value: &u64) -> u64 {
        *value
    }
}

struct Quick(quick_cache::unsync::Cache<String, u64, ByValue>);
impl Replay for Quick {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&mut self, key: &str, weight: u64) {
        self.0.insert(key.to_string(), weight);
    }
}

struct Moka(moka::sync::Cache<String, u64>);
impl Replay for Moka {
    fn get(&mut self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&mut self, key: &str, weight: u64) {
        self.0.insert(key.to_string(), weight);
        // moka applies writes in batches; replaying without this measures its buffers.
        self.0.run_pending_tasks();
    }
}

fn make(policy: &str, capacity: usize, shards: Option<usize>, weighted: bool) -> Box<dyn Replay> {
    let ours = |p: pepperpy_caching::Policy| {
        let mut b = MemoryStore::builder(p);
        if let Some(n) = shards {
            b = b.shards(n);
        }
        if weighted {
            b = b.weigher(|_: &str, weight: &u64| *weight);
        }
        Box::new(Ours(b.build())) as Box<dyn Replay>
    };
    // quick_cache's estimate of the entries (a sizing hint): the weight over the mean size.
    let items = if weighted { (capacity / 6).max(1) } else { capacity };
    match policy {
        "s3-fifo" => ours(S3FifoPolicy::new(capacity).unwrap().into()),
        "s3-fifo-classic" => ours(S3FifoPolicy::new(capacity).unwrap().adaptive(false).into()),
        "lru" => ours(LruPolicy::new(capacity).unwrap().into()),
        // With one long TTL for all, soonest-to-expire is first-in, first-out.
        "ttl" => ours(TtlPolicy::new(Duration::from_secs(1 << 30)).unwrap().with_max_size(capacity).unwrap().into()),
        "quick_cache" => Box::new(Quick(quick_cache::unsync::Cache::with_weighter(items, capacity as u64, ByValue))),
        "moka" => Box::new(Moka(
            moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .weigher(|_: &String, weight: &u64| u32::try_from(*weight).unwrap_or(u32::MAX))
                .build(),
        )),
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
        eprintln!(
            "usage: trace --trace FILE --capacity N --policy NAME [--shards N] [--weight] | trace --list-policies"
        );
        std::process::exit(2);
    };
    let capacity: usize = capacity.parse().ok().filter(|&c| c > 0).unwrap_or_else(|| {
        eprintln!("--capacity must be a positive integer");
        std::process::exit(2)
    });
    let shards = value("--shards").map(|s| s.parse::<usize>().expect("--shards must be an integer"));
    let weighted = args.iter().any(|a| a == "--weight");
    let mut cache = make(&policy, capacity, shards, weighted);
    let (mut requests, mut hits) = (0u64, 0u64);
    let (mut requested_weight, mut hit_weight) = (0u64, 0u64);
    let mut key = String::with_capacity(24);
    for_each_block(&path, |block| {
        use std::fmt::Write;
        key.clear();
        write!(key, "{block}").unwrap();
        let weight = if weighted { size_of(block) } else { 1 };
        requests += 1;
        requested_weight += weight;
        if cache.get(&key) {
            hits += 1;
            hit_weight += weight;
        } else {
            cache.set(&key, weight);
        }
    });
    let ratio = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    let mut line = serde_json::json!({
        "policy": policy, "capacity": capacity, "requests": requests, "hits": hits, "hit_ratio": ratio(hits, requests),
    });
    if weighted {
        line["weight"] = true.into();
        line["byte_hit_ratio"] = ratio(hit_weight, requested_weight).into();
    }
    println!("{line}");
}
