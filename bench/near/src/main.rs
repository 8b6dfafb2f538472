//! NearCache against RedisStore on loopback, printed, never asserted:
//!
//! - **hit**: a `get` answered by the memory tier against a `RedisStore` `get`
//!   of the same key (one task, one call at a time), median of 5 runs; the
//!   target is a ratio of at least 50.
//! - **invalidation**: instance A sets a key that instance B holds in memory;
//!   the time from the start of A's `set` until B's memory no longer holds
//!   it (a thread polls B's memory tier), p50/p99/max over 2,000 writes; the
//!   target is p99 at most 5 ms.
//!
//! Starts its own `redis-server` (from PATH) on a free loopback port without
//! persistence. `cargo run --release --manifest-path bench/near/Cargo.toml [-- --quick]`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::stores::{NearCache, RedisStore};
use pepperpy_caching::{CacheStore, SetOptions};

struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_server() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("pepperpy-bench-near-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start redis-server (scripts/setup.sh installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_connection().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Server(child, dir), url)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (near_ops, redis_ops, repeats, writes) =
        if quick { (20_000, 2_000, 1, 200) } else { (1_000_000, 20_000, 5, 2_000) };
    let (_server, url) = start_server();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cpus} CPUs, load average before: {}", load_average());

    let prefix = "bench:";
    let redis: RedisStore<String> = RedisStore::builder(url.clone()).prefix(prefix).build().await.unwrap();
    let a: NearCache<String> = NearCache::builder(url.clone()).prefix(prefix).build().await.unwrap();
    let b = Arc::new(NearCache::<String>::builder(url.clone()).prefix(prefix).build().await.unwrap());

    // ---- hit
    let keys: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
    let value = "x".repeat(100);
    for k in &keys {
        redis.set(k, value.clone(), SetOptions::new()).await.unwrap();
    }
    for k in &keys {
        while !a.in_memory(k) {
            a.get(k).await.unwrap();
        }
    }
    let mut ratios = Vec::new();
    let (mut near_ns, mut redis_ns) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let started = Instant::now();
        for i in 0..near_ops {
            std::hint::black_box(a.get(&keys[i % keys.len()]).await.unwrap());
        }
        let near = started.elapsed().as_nanos() as f64 / near_ops as f64;
        let started = Instant::now();
        for i in 0..redis_ops {
            std::hint::black_box(redis.get(&keys[i % keys.len()]).await.unwrap());
        }
        let remote = started.elapsed().as_nanos() as f64 / redis_ops as f64;
        near_ns.push(near);
        redis_ns.push(remote);
        ratios.push(remote / near);
    }
    assert_eq!(a.memory_len(), keys.len(), "every near get was a memory hit");
    println!(
        "hit: NearCache memory hit {:.0} ns, RedisStore get {:.0} ns: {:.0}x (median of {repeats}; runs: {})",
        median(near_ns),
        median(redis_ns),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.0}x")).collect::<Vec<_>>().join(" ")
    );

    // ---- invalidation
    let mut latencies = Vec::with_capacity(writes);
    let mut after_ack = Vec::with_capacity(writes);
    let base = Instant::now();
    for i in 0..writes {
        let key = format!("inv:{}", i % 100);
        a.set(&key, format!("{i}"), SetOptions::new()).await.unwrap();
        while !b.in_memory(&key) {
            b.get(&key).await.unwrap();
        }
        // A thread watches B's memory tier; it notes when the key is gone.
        let gone_at = Arc::new(AtomicU64::new(0));
        let watching = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (b, key, gone_at, watching) = (b.clone(), key.clone(), gone_at.clone(), watching.clone());
            std::thread::spawn(move || {
                watching.store(true, Ordering::Release);
                // Yields rather than spins: on a small machine a spinning
                // watcher would take the CPU the reader of B's messages needs.
                while b.in_memory(&key) {
                    std::thread::yield_now();
                }
                gone_at.store(base.elapsed().as_nanos() as u64, Ordering::Release);
            })
        };
        while !watching.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let started = base.elapsed();
        a.set(&key, format!("{i}'"), SetOptions::new()).await.unwrap();
        let acked = base.elapsed();
        watcher.join().unwrap();
        let gone = Duration::from_nanos(gone_at.load(Ordering::Acquire));
        latencies.push(gone.saturating_sub(started));
        after_ack.push(gone.saturating_sub(acked));
    }
    latencies.sort();
    after_ack.sort();
    println!(
        "invalidation (start of A's set -> gone from B's memory), {writes} writes: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "  after A's set returned: p50 {:?}, p99 {:?}, max {:?} (0: B had it out before A heard back)",
        percentile(&after_ack, 0.5),
        percentile(&after_ack, 0.99),
        after_ack[after_ack.len() - 1]
    );
    println!("load average after: {}", load_average());
}
