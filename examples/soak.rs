//! Soak: a RedisStore, two NearCache instances and a MemoryStore under mixed
//! load for a given time, while their own redis-server is restarted
//! (`SIGKILL`, then started again on its append-only file), stopped
//! (`SIGSTOP` for up to 2.5 s, then `SIGCONT`), flushed (`FLUSHALL`) and
//! swapped away (`SWAPDB 0 n` with an empty database n never used before)
//! at random.
//! Run it with `scripts/soak.sh` (see there for the options).
//!
//! One writer per store family writes increasing versions to 110 keys (100
//! hot, 10 rewritten only about every 20 s) and logs when each write was
//! sent and acknowledged; readers check every read against that log:
//!
//! - **stale**: a version older than one acknowledged more than the
//!   store's window before the read began. Windows: 0 for the MemoryStore,
//!   the RedisStore and the writing NearCache instance reading its own
//!   writes (the docs promise read-your-writes there); two heartbeats plus
//!   250 ms of scheduling slack for the other NearCache instance (the
//!   documented bound for what Redis does not report, which also bounds a
//!   message in flight: the heartbeat's answer follows it on the same
//!   connection). Stale reads within the window are counted and their age
//!   reported (the cross-instance window as seen under this load).
//! - **gone**: a value that a flush or swap removed, still served after it:
//!   at once for the RedisStore, after two heartbeats plus 250 ms for both
//!   NearCache instances (the documented bound for a `SWAPDB`).
//! - **lost**: nothing where an acknowledged write should be, with no flush
//!   or swap since (the server runs with `appendfsync always`, so an
//!   acknowledged write survives `SIGKILL`).
//! - **phantom**: a version that was never written.
//!
//! Every 5 s it samples its own RSS; growth after the warm-up (the first
//! fifth of the run, at most 2 minutes) of more than 25% and 16 MiB fails.
//! Errors are expected while the server is down or stopped: they are
//! counted by store, operation and kind, and fail nothing.

use std::collections::{BTreeMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pepperpy_caching::stores::{MemoryStore, NearCache, RedisStore};
use pepperpy_caching::{CacheError, CacheStore, LruPolicy, SetOptions};

/// Keys per family: 100 hot ones, written about every 100 ms each, and 10
/// cold ones, written about every 20 s (a stale value of a cold key is not
/// soon replaced by a newer write, so a missed invalidation shows).
const KEYS: usize = 110;
const HOT: u64 = 100;

/// A key to write or read: a cold one one time in `cold_one_in`.
fn pick(rng: &mut Rng, cold_one_in: u64) -> usize {
    if rng.below(cold_one_in) == 0 { (HOT + rng.below(KEYS as u64 - HOT)) as usize } else { rng.below(HOT) as usize }
}
const HEARTBEAT: Duration = Duration::from_millis(500);
/// What the other NearCache instance may lag by: two heartbeats, plus slack
/// for a machine whose cores are shared.
const NEAR_WINDOW: Duration = Duration::from_millis(2 * 500 + 250);

/// How long a reader may lag: behind an acknowledged write (`stale`), and
/// behind a flush or swap of the database (`gone`).
#[derive(Clone, Copy)]
struct Windows {
    stale: Duration,
    gone: Duration,
}

const EXACT: Windows = Windows { stale: Duration::ZERO, gone: Duration::ZERO };

// The tests' xorshift generator: the run's choices follow from its seed.
#[path = "../tests/support/rng.rs"]
#[allow(dead_code)]
mod rng;
use rng::Rng;

impl Rng {
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// What the writer of one key did.
#[derive(Default)]
struct KeyLog {
    /// The highest version a write was started for.
    started: u64,
    /// Recent acknowledged writes, oldest first: (version, acknowledged at).
    /// (version, sent at, acknowledged at).
    acked: VecDeque<(u64, Instant, Instant)>,
}

/// The writers' logs of one store family, and the flushes and swaps.
struct Family {
    name: &'static str,
    keys: Vec<Mutex<KeyLog>>,
    /// Whether its data lives in Redis (flushes and swaps remove it).
    in_redis: bool,
}

impl Family {
    fn new(name: &'static str, in_redis: bool) -> Self {
        Family { name, keys: (0..KEYS).map(|_| Mutex::default()).collect(), in_redis }
    }
}

/// Everything the tasks report.
#[derive(Default)]
struct Report {
    ops: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Failures: what, and an example.
    failures: BTreeMap<String, (u64, String)>,
    /// Ages of stale reads within their window (µs), by reader.
    within: BTreeMap<String, Vec<u64>>,
    chaos: BTreeMap<&'static str, u64>,
}

struct World {
    began: Instant,
    /// What the chaos task did and when (seconds into the run).
    events: Mutex<Vec<(f64, &'static str)>>,
    report: Mutex<Report>,
    /// Flushes and swaps: (began, ended); `None` while one is running.
    wipes: Mutex<Vec<(Instant, Option<Instant>)>>,
    stop: AtomicBool,
    version: AtomicU64,
}

impl World {
    fn count(&self, what: String) {
        *self.report.lock().unwrap().ops.entry(what).or_default() += 1;
    }
    fn error(&self, store: &str, op: &str, e: &CacheError) {
        let kind = match e {
            CacheError::Backend { .. } => "backend",
            CacheError::Timeout { .. } => "timeout",
            CacheError::Serialization(_) => "serialization",
            CacheError::Loader(_) => "loader",
            other => return self.fail("unexpected error", format!("{store} {op}: {other}")),
        };
        *self.report.lock().unwrap().errors.entry(format!("{store} {op}: {kind}")).or_default() += 1;
    }
    fn fail(&self, what: &str, example: String) {
        let mut report = self.report.lock().unwrap();
        let entry = report.failures.entry(what.to_string()).or_insert((0, example));
        entry.0 += 1;
    }

    /// Checks a read of key `i` of `family` that began at `began` and got `got`.
    fn check(&self, reader: &str, family: &Family, i: usize, began: Instant, got: Option<u64>, windows: Windows) {
        let Windows { stale: window, gone } = windows;
        let log = family.keys[i].lock().unwrap();
        let cutoff = began.checked_sub(window);
        // The newest write acknowledged before the cutoff.
        let newest = cutoff.and_then(|c| log.acked.iter().rev().find(|(_, _, at)| *at <= c).copied());
        let since = |at: Instant| at.duration_since(self.began).as_secs_f64();
        let context = || {
            let events = self.events.lock().unwrap();
            let recent: Vec<_> = events.iter().rev().take(3).collect();
            format!(
                "{reader} key {i}: read at {:.3} s got {got:?}; newest acknowledged before it (less {window:?}): {:?}; \
                 last chaos: {recent:?}",
                since(began),
                newest.map(|(v, sent, at)| (v, since(sent), since(at)))
            )
        };
        if got.is_some_and(|v| v > log.started) {
            return self.fail("phantom", context());
        }
        let none = Vec::new();
        let all = self.wipes.lock().unwrap();
        let wipes = if family.in_redis { &*all } else { &none };
        // A flush or swap that began after `at` and ended before the cutoff.
        let gone_cutoff = began.checked_sub(gone);
        let wiped_after =
            |at: Instant| gone_cutoff.is_some_and(|c| wipes.iter().any(|&(b, e)| b > at && e.is_some_and(|e| e <= c)));
        // One that may have happened after `at` (it had not ended by then).
        let maybe_wiped_after = |at: Instant| wipes.iter().any(|&(_, e)| e.is_none_or(|e| e > at));
        match (got, newest) {
            (Some(v), Some((w, _, _))) if v < w => self.fail(&format!("stale ({})", family.name), context()),
            // A wipe that ended after the write was sent may have come after it.
            (None, Some((_, sent, _))) if !maybe_wiped_after(sent) => {
                self.fail(&format!("lost ({})", family.name), context())
            }
            (Some(v), _) => {
                if let Some(&(_, _, at)) = log.acked.iter().find(|(version, _, _)| *version == v)
                    && wiped_after(at)
                {
                    return self.fail(&format!("gone ({})", family.name), context());
                }
                // Within the window: older than what was acknowledged before the read began?
                if let Some(&(w, _, at)) = log.acked.iter().rev().find(|(_, _, at)| *at <= began)
                    && v < w
                {
                    let age = began.duration_since(at).as_micros() as u64;
                    self.report.lock().unwrap().within.entry(reader.to_string()).or_default().push(age);
                }
            }
            _ => {}
        }
    }
}

/// The redis-server this run owns.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
    binary: String,
}

impl Server {
    fn start(binary: &str, dir: std::path::PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Server { child: spawn(binary, port, &dir), port, dir, binary: binary.to_string() };
        server.wait_up();
        server
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
    }
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.binary, self.port, &self.dir);
        self.wait_up();
    }
    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(c) = redis::Client::open(self.url())
                && let Ok(mut c) = c.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &str, port: u16, dir: &std::path::Path) -> Child {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir"])
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync", "always", "--logfile", "redis.log", "--databases", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start redis-server")
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let duration = Duration::from_secs(arg("--seconds").map_or(600, |s| s.parse().expect("--seconds N")));
    let seed: u64 = arg("--seed").map_or(1, |s| s.parse().expect("--seed N")).max(1);
    let binary = arg("--redis-server").unwrap_or_else(|| "redis-server".into());
    let dir = std::env::temp_dir().join(format!("pepperpy-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Arc::new(Mutex::new(Server::start(&binary, dir.clone())));
    let url = server.lock().unwrap().url();
    println!("soak: {duration:?}, seed {seed}, redis-server on {url}, data in {}", dir.display());

    let redis: Arc<RedisStore<u64>> = Arc::new(
        RedisStore::builder(&url).prefix("soak:").response_timeout(Duration::from_millis(500)).build().await.unwrap(),
    );
    let near = |_| async {
        NearCache::<u64>::builder(&url)
            .prefix("soakn:")
            .memory(MemoryStore::new(LruPolicy::new(KEYS * 2).unwrap()))
            .heartbeat(HEARTBEAT)
            .response_timeout(Duration::from_millis(500))
            .redis(|r| r.response_timeout(Duration::from_millis(500)))
            .build()
            .await
            .unwrap()
    };
    let near_a = Arc::new(near(0).await);
    let near_b = Arc::new(near(1).await);
    let memory: Arc<MemoryStore<u64>> = Arc::new(MemoryStore::new(LruPolicy::new(KEYS * 2).unwrap()));

    let world = Arc::new(World {
        began: Instant::now(),
        events: Mutex::default(),
        report: Mutex::default(),
        wipes: Mutex::default(),
        stop: AtomicBool::new(false),
        version: AtomicU64::new(0),
    });
    let families = Arc::new([Family::new("redis", true), Family::new("near", true), Family::new("memory", false)]);
    let mut tasks = Vec::new();

    // Writers: one per family, through the RedisStore, NearCache A and the MemoryStore.
    type Writer = Arc<dyn Fn(String, u64) -> futures_like::BoxFut<Result<(), CacheError>> + Send + Sync>;
    let writers: [(usize, &'static str, Writer); 3] = [
        (0, "redis", {
            let s = Arc::clone(&redis);
            Arc::new(move |k, v| {
                let s = Arc::clone(&s);
                Box::pin(async move { s.set(&k, v, SetOptions::new()).await })
            })
        }),
        (1, "near-a", {
            let s = Arc::clone(&near_a);
            Arc::new(move |k, v| {
                let s = Arc::clone(&s);
                Box::pin(async move { s.set(&k, v, SetOptions::new()).await })
            })
        }),
        (2, "memory", {
            let s = Arc::clone(&memory);
            Arc::new(move |k, v| {
                let s = Arc::clone(&s);
                Box::pin(async move { s.set(&k, v, SetOptions::new()).await })
            })
        }),
    ];
    for (f, name, write) in writers {
        let (world, families) = (Arc::clone(&world), Arc::clone(&families));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(f as u64 + 7));
            while !world.stop.load(Ordering::Relaxed) {
                let i = pick(&mut rng, 2000);
                let v = world.version.fetch_add(1, Ordering::Relaxed) + 1;
                families[f].keys[i].lock().unwrap().started = v;
                let sent = Instant::now();
                match write(format!("k{i}"), v).await {
                    Ok(()) => {
                        let now = Instant::now();
                        let mut log = families[f].keys[i].lock().unwrap();
                        log.acked.push_back((v, sent, now));
                        while log.acked.len() > 2 && log.acked[0].2 + Duration::from_secs(30) < now {
                            log.acked.pop_front();
                        }
                        world.count(format!("{name} set"));
                    }
                    Err(e) => world.error(name, "set", &e),
                }
                // About 1,000 writes a second per family.
                tokio::time::sleep(Duration::from_micros(rng.below(2000))).await;
            }
        }));
    }

    // Readers: (family, reader name, store, window).
    type Reader = Arc<dyn Fn(String) -> futures_like::BoxFut<Result<Option<u64>, CacheError>> + Send + Sync>;
    fn reader<S: CacheStore<u64> + Send + Sync + 'static>(s: &Arc<S>) -> Reader {
        let s = Arc::clone(s);
        Arc::new(move |k| {
            let s = Arc::clone(&s);
            Box::pin(async move { s.get(&k).await })
        })
    }
    // The NearCache instances: memory may hold what a swap (unreported)
    // took away for two heartbeats; the writer reads its own writes at once.
    let own = Windows { stale: Duration::ZERO, gone: NEAR_WINDOW };
    let other = Windows { stale: NEAR_WINDOW, gone: NEAR_WINDOW };
    let readers: [(usize, &'static str, Reader, Windows); 4] = [
        (0, "redis", reader(&redis), EXACT),
        (1, "near-a (own writes)", reader(&near_a), own),
        (1, "near-b (other instance)", reader(&near_b), other),
        (2, "memory", reader(&memory), EXACT),
    ];
    for (n, (f, name, read, window)) in readers.into_iter().enumerate() {
        let (world, families) = (Arc::clone(&world), Arc::clone(&families));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(17).wrapping_add(n as u64 + 101));
            let mut reads = 0u64;
            while !world.stop.load(Ordering::Relaxed) {
                let i = pick(&mut rng, 5);
                let began = Instant::now();
                match read(format!("k{i}")).await {
                    Ok(got) => {
                        world.check(name, &families[f], i, began, got, window);
                        world.count(format!("{name} get"));
                    }
                    Err(e) => world.error(name, "get", &e),
                }
                reads += 1;
                if reads.is_multiple_of(4) {
                    tokio::time::sleep(Duration::from_micros(rng.below(1000))).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    // Chaos: one action every 2-8 s.
    let chaos = {
        let (world, server) = (Arc::clone(&world), Arc::clone(&server));
        let url = url.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(3));
            let mut swaps = 0u32;
            loop {
                let pause = rng.millis(2000, 8000);
                let deadline = Instant::now() + pause;
                while Instant::now() < deadline {
                    if world.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let action = ["restart", "stop", "flushall", "swapdb"][rng.below(4) as usize];
                *world.report.lock().unwrap().chaos.entry(action).or_default() += 1;
                world.events.lock().unwrap().push((world.began.elapsed().as_secs_f64(), action));
                match action {
                    "restart" => {
                        let server = Arc::clone(&server);
                        tokio::task::spawn_blocking(move || server.lock().unwrap().restart()).await.unwrap();
                        world.events.lock().unwrap().push((world.began.elapsed().as_secs_f64(), "restarted"));
                    }
                    "stop" => {
                        let hold = rng.millis(200, 2500);
                        server.lock().unwrap().signal("STOP");
                        tokio::time::sleep(hold).await;
                        server.lock().unwrap().signal("CONT");
                    }
                    _ => {
                        let began = Instant::now();
                        let slot = {
                            let mut wipes = world.wipes.lock().unwrap();
                            wipes.push((began, None));
                            wipes.len() - 1
                        };
                        let wiped = async {
                            let client = redis::Client::open(url.as_str())?;
                            let mut c = client.get_multiplexed_async_connection().await?;
                            if action == "flushall" {
                                redis::cmd("FLUSHALL").query_async::<()>(&mut c).await
                            } else {
                                // A database never used before: an empty one comes in, and
                                // the old data stays out of reach (a flush of it would send
                                // tracking clients a flush message, hiding what is tested).
                                swaps += 1;
                                redis::cmd("SWAPDB").arg(0).arg(swaps).query_async::<()>(&mut c).await
                            }
                        };
                        let result = tokio::time::timeout(Duration::from_secs(5), wiped).await;
                        // Recorded even if it failed: it may have happened.
                        world.wipes.lock().unwrap()[slot].1 = Some(Instant::now());
                        if !matches!(result, Ok(Ok(()))) {
                            *world.report.lock().unwrap().chaos.entry("wipe failed").or_default() += 1;
                        }
                    }
                }
            }
        })
    };

    // RSS, every 5 s.
    let started = Instant::now();
    let warmup = (duration / 5).min(Duration::from_secs(120));
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(5).min(duration.saturating_sub(started.elapsed()))).await;
        samples.push((started.elapsed(), rss_kib()));
        let ops: u64 = world.report.lock().unwrap().ops.values().sum();
        let failures: u64 = world.report.lock().unwrap().failures.values().map(|f| f.0).sum();
        if samples.len().is_multiple_of(12) {
            println!("  {:>5.0?}: {ops} ops, {failures} failures, RSS {} KiB", started.elapsed(), rss_kib());
        }
    }
    world.stop.store(true, Ordering::Relaxed);
    let _ = chaos.await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }

    // The figures.
    let report = world.report.lock().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("== soak: {:?}, seed {seed}, load average {}", started.elapsed(), load.trim());
    println!("chaos: {:?}", report.chaos);
    let total: u64 = report.ops.values().sum();
    println!("ops: {total} ({:.0}/s)", total as f64 / started.elapsed().as_secs_f64());
    for (what, n) in &report.ops {
        println!("  {what:32} {n}");
    }
    println!("errors by kind (expected while the server is down or stopped):");
    for (what, n) in &report.errors {
        println!("  {what:32} {n}");
    }
    println!("stale reads within their window (allowed), by reader: count, p50 / p99 / max age");
    for (reader, ages) in &report.within {
        let mut ages = ages.clone();
        ages.sort_unstable();
        let q = |p: f64| ages[((ages.len() - 1) as f64 * p) as usize];
        println!("  {reader:28} {:>7}  {} / {} / {} µs", ages.len(), q(0.5), q(0.99), ages[ages.len() - 1]);
    }
    let at_warmup = samples.iter().find(|(t, _)| *t >= warmup).map_or(0, |s| s.1);
    let after = samples.iter().filter(|(t, _)| *t >= warmup).map(|s| s.1).max().unwrap_or(0);
    let last = samples.last().map_or(0, |s| s.1);
    let growth = after.saturating_sub(at_warmup);
    println!(
        "RSS: {} KiB at the end of warm-up ({warmup:?}), at most {after} KiB after it, {last} KiB at the end: growth {growth} KiB",
        at_warmup
    );
    let mut failed = false;
    if growth > 16 * 1024 && growth * 4 > at_warmup {
        println!("FAIL: RSS grew by {growth} KiB after warm-up");
        failed = true;
    }
    for (what, (n, example)) in &report.failures {
        println!("FAIL: {n} {what}, e.g. {example}");
        failed = true;
    }
    if report.failures.is_empty() {
        println!("no stale read beyond its window, no lost acknowledged write, no phantom");
    }
    drop(report);
    drop(server);
    if failed {
        println!("redis-server's log and data kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::process::exit(i32::from(failed));
}

mod futures_like {
    /// A boxed future, as the writer and reader closures return.
    pub type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}
