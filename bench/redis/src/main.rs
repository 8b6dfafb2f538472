//! Redis benchmark: RedisStore against raw redis-rs commands on the same kind
//! of multiplexed connection (the floor), and `invalidate` over a large
//! keyspace with the longest single command it made Redis run.
//!
//! Starts its own `redis-server` (from PATH) on a free loopback port, without
//! persistence, and kills it when done, even on error; it never talks to a
//! server it did not start.
//!
//! `cargo run --release -- [--quick] [--out results.json]`
//! (`--cache FRAGMENT --workload FRAGMENT --repeats N`: one part only, for profilers)
//! `cargo run --release -- tags [--quick]`: what tags cost a set and a get.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pepperpy_caching::stores::RedisStore;
use pepperpy_caching::{CacheStore, LruPolicy, SetOptions};
use redis::aio::ConnectionManager;

mod tags;

type Error = Box<dyn std::error::Error + Send + Sync>;

const OURS: &str = "pepperpy RedisStore (no policy)";
const OURS_LRU: &str = "pepperpy RedisStore (LruPolicy 1,000,000)";
const RAW: &str = "raw redis-rs GET/SET (ConnectionManager)";
/// Every cache under test, in the order they run and are reported.
const CACHES: [&str; 3] = [OURS, OURS_LRU, RAW];
/// The length of every value: a small string.
const VALUE_LEN: usize = 32;
/// Tokio worker threads, shared by all tasks of a run.
const WORKERS: usize = 2;

/// Sizes of one run of the suite.
struct Sizes {
    /// Distinct keys per cache in the throughput runs.
    keys: usize,
    /// Operations timed per measurement, at concurrency 1 and 64.
    ops_c1: usize,
    ops_c64: usize,
    repeats: usize,
    /// Keys in Redis for the invalidate run, and how many of them the pattern matches.
    inv_total: usize,
    inv_matching: usize,
}

const FULL: Sizes =
    Sizes { keys: 10_000, ops_c1: 20_000, ops_c64: 200_000, repeats: 5, inv_total: 1_000_000, inv_matching: 100_000 };
const QUICK: Sizes =
    Sizes { keys: 1_000, ops_c1: 2_000, ops_c64: 2_000, repeats: 1, inv_total: 20_000, inv_matching: 2_000 };

// ---------------------------------------------------------------- the server

/// A `redis-server` this process started: loopback only, no persistence, its
/// own temp dir. Killed and its dir removed on drop (on error and on panic too).
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Result<Server, Error> {
        Self::start_with(&[])
    }

    /// A server started with extra `redis-server` arguments (`{dir}` is
    /// replaced by its temp dir).
    fn start_with(extra: &[&str]) -> Result<Server, Error> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pepperpy-bench-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // Another process may take the free port between our probe and the
        // server's bind: then our server exits, and we try another port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .args(extra.iter().map(|a| a.replace("{dir}", &dir.display().to_string())))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start redis-server (is it on PATH? scripts/setup.sh installs it): {e}"))?;
            let mut server = Server { child, port, dir: dir.clone() };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if server.child.try_wait()?.is_some() {
                    break;
                }
                // Whoever answers on the port must be our own process.
                if server.answers_as_child() {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(server);
            std::fs::create_dir_all(&dir)?;
        }
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        Err(format!("redis-server did not start; its log:\n{log}").into())
    }

    /// Whether the server on our port is the process we spawned (its
    /// `INFO server` reports our child's pid).
    fn answers_as_child(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n").is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        let wanted = format!("process_id:{}\r\n", self.child.id());
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            reply.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&reply).contains(&wanted) {
                return true;
            }
        }
        false
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// CPU time this server has used so far (user + system).
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }
}

/// User + system CPU time of the process whose `/proc/.../stat` is at `path`
/// (zero if it cannot be read).
fn cpu_of(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else { return Duration::ZERO };
    // The fields after the command name (which may hold spaces), from field 3 on.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return Duration::ZERO };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    // Clock ticks: 100 per second on Linux.
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// A three-master Redis Cluster (no replicas) this process started.
struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    fn start() -> Result<Cluster, Error> {
        let args = ["--cluster-enabled", "yes", "--cluster-config-file", "{dir}/nodes.conf"];
        let nodes = (0..3).map(|_| Server::start_with(&args)).collect::<Result<Vec<_>, _>>()?;
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout)).into());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return Ok(Cluster { nodes });
            }
            if Instant::now() > deadline {
                return Err("the benchmark's cluster did not become ok".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    fn cpu(&self) -> Duration {
        self.nodes.iter().map(Server::cpu).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- throughput

/// One cache under test, cheap to clone into each task.
#[derive(Clone)]
enum Target {
    Store(Arc<RedisStore<String>>),
    /// The floor: the connection type RedisStore uses, with plain commands.
    Raw(ConnectionManager),
    /// The floor on a cluster: redis-rs's cluster client, plain commands.
    RawCluster(redis::cluster_async::ClusterConnection),
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Get,
    Set,
}

/// Everything one task needs: the cache, its keys (user keys for a store,
/// full Redis keys for raw), the value, and the bytes the store would write.
#[derive(Clone)]
struct Job {
    target: Target,
    keys: Arc<Vec<String>>,
    value: Arc<String>,
    document: Arc<Vec<u8>>,
}

impl Job {
    /// Runs `ops` operations from key `first` on; how many gets missed.
    async fn run(self, op: Op, first: usize, ops: usize) -> Result<usize, Error> {
        let mut misses = 0;
        let n = self.keys.len();
        match &self.target {
            Target::Store(store) => {
                for i in 0..ops {
                    let key = &self.keys[(first + i) % n];
                    match op {
                        Op::Get => misses += usize::from(store.get(key).await?.is_none()),
                        Op::Set => store.set(key, String::clone(&self.value), SetOptions::new()).await?,
                    }
                }
            }
            Target::Raw(conn) => misses += self.run_raw(&mut conn.clone(), op, first, ops).await?,
            Target::RawCluster(conn) => misses += self.run_raw(&mut conn.clone(), op, first, ops).await?,
        }
        Ok(misses)
    }

    /// [`run`](Self::run) with plain `GET`/`SET` on a raw connection.
    async fn run_raw(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        op: Op,
        first: usize,
        ops: usize,
    ) -> Result<usize, Error> {
        let mut misses = 0;
        let n = self.keys.len();
        for i in 0..ops {
            let key = &self.keys[(first + i) % n];
            match op {
                Op::Get => {
                    let got: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await?;
                    misses += usize::from(got.is_none());
                }
                Op::Set => redis::cmd("SET").arg(key).arg(self.document.as_slice()).query_async::<()>(conn).await?,
            }
        }
        Ok(misses)
    }
}

/// Runs `ops` operations split over `tasks` tasks; operations per second.
async fn measure(job: &Job, op: Op, tasks: usize, ops: usize) -> Result<f64, Error> {
    let n = job.keys.len();
    // Task t runs its share of `ops` from key t*n/tasks on: with `ops == n`, every key once.
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| tokio::spawn(job.clone().run(op, t * n / tasks, (t + 1) * ops / tasks - t * ops / tasks)))
        .collect();
    let mut misses = 0;
    for handle in handles {
        misses += handle.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    if misses > 0 {
        return Err(format!("{misses} gets missed in a get-hit run").into());
    }
    Ok(ops as f64 / secs)
}

/// `--cache FRAGMENT --workload FRAGMENT`: run only the matching throughput
/// measurements and skip the invalidate run, for profilers; `--repeats N`.
#[derive(Default)]
struct Filter {
    cache: Option<String>,
    workload: Option<String>,
}

impl Filter {
    fn is_set(&self) -> bool {
        self.cache.is_some() || self.workload.is_some()
    }
}

struct Row {
    workload: String,
    cache: &'static str,
    median: f64,
    min: f64,
    max: f64,
}

async fn throughput(url: &str, sizes: &Sizes, filter: &Filter) -> Result<Vec<Row>, Error> {
    let value = Arc::new("x".repeat(VALUE_LEN));
    // What RedisStore writes for this value; the floor sends the same bytes.
    let document = Arc::new(serde_json::to_vec(&serde_json::json!({ "v": value.as_str() }))?);
    let user_keys = |prefix: &str| Arc::new((0..sizes.keys).map(|i| format!("{prefix}key:{i:06}")).collect::<Vec<_>>());
    let mut jobs = Vec::new();
    for cache in CACHES {
        let (target, keys) = match cache {
            OURS => (Target::Store(Arc::new(RedisStore::builder(url).prefix("s0:").build().await?)), user_keys("")),
            OURS_LRU => {
                let store = RedisStore::builder(url).prefix("s1:").policy(LruPolicy::new(1_000_000)?).build().await?;
                (Target::Store(Arc::new(store)), user_keys(""))
            }
            _ => {
                let client = redis::Client::open(url)?;
                (Target::Raw(ConnectionManager::new(client).await?), user_keys("rw:"))
            }
        };
        let job = Job { target, keys, value: value.clone(), document: document.clone() };
        // Every key exists before any get-hit run.
        measure(&job, Op::Set, 64.min(sizes.keys), sizes.keys).await?;
        jobs.push(job);
    }

    let workloads = [
        ("get hit, concurrency 1", Op::Get, 1, sizes.ops_c1),
        ("get hit, concurrency 64", Op::Get, 64, sizes.ops_c64),
        ("set, concurrency 1", Op::Set, 1, sizes.ops_c1),
        ("set, concurrency 64", Op::Set, 64, sizes.ops_c64),
    ];
    let mut rows = Vec::new();
    for (name, op, tasks, ops) in workloads {
        if filter.workload.as_ref().is_some_and(|w| !name.contains(w.as_str())) {
            continue;
        }
        // Runs interleave the caches, so a slow spell on the shared machine
        // is spread over all of them instead of landing on one.
        let mut samples = vec![Vec::new(); jobs.len()];
        for _ in 0..sizes.repeats {
            for ((job, samples), cache) in jobs.iter().zip(&mut samples).zip(CACHES) {
                if filter.cache.as_ref().is_some_and(|c| !cache.contains(c.as_str())) {
                    continue;
                }
                measure(job, op, tasks, (ops / 5).max(tasks)).await?;
                samples.push(measure(job, op, tasks, ops).await?);
            }
        }
        let first = rows.len();
        for (cache, mut s) in CACHES.into_iter().zip(samples) {
            if s.is_empty() {
                continue;
            }
            s.sort_by(f64::total_cmp);
            rows.push(Row { workload: name.into(), cache, median: s[s.len() / 2], min: s[0], max: s[s.len() - 1] });
        }
        let rows = &rows[first..];
        let raw = rows.iter().find(|r| r.cache == RAW).map_or(f64::NAN, |r| r.median);
        println!("\n{name}");
        for r in rows {
            println!(
                "  {:44} {:>9.1} k ops/s  [{:.1}-{:.1}]  / raw {:.2}x",
                r.cache,
                r.median / 1e3,
                r.min / 1e3,
                r.max / 1e3,
                r.median / raw
            );
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------- cluster

const SINGLE: &str = "RedisStore, one redis-server";
const CLUSTER_OURS: &str = "RedisStore, 3-master cluster";
const CLUSTER_RAW: &str = "raw redis-rs cluster client, 3-master cluster";

/// RedisStore on a three-master cluster against the same store on one
/// server and the raw cluster client, at concurrency 64, with the CPU time
/// each spent per operation (client process and servers): Markdown lines.
async fn cluster_throughput(single: &Server, cluster: &Cluster, sizes: &Sizes) -> Result<Vec<String>, Error> {
    let value = Arc::new("x".repeat(VALUE_LEN));
    let document = Arc::new(serde_json::to_vec(&serde_json::json!({ "v": value.as_str() }))?);
    let keys = Arc::new((0..sizes.keys).map(|i| format!("key:{i:06}")).collect::<Vec<_>>());
    let raw_keys = Arc::new(keys.iter().map(|k| format!("rw:{k}")).collect::<Vec<_>>());
    let urls = cluster.urls();
    let single_store = RedisStore::builder(single.url()).prefix("cs:").build().await?;
    let cluster_store = RedisStore::cluster_builder(urls.clone()).prefix("cs:").build().await?;
    let raw = redis::cluster::ClusterClient::new(urls)?.get_async_connection().await?;
    let caches = [
        (SINGLE, Target::Store(Arc::new(single_store)), keys.clone()),
        (CLUSTER_OURS, Target::Store(Arc::new(cluster_store)), keys.clone()),
        (CLUSTER_RAW, Target::RawCluster(raw), raw_keys),
    ];
    let jobs: Vec<(&str, Job)> = caches
        .into_iter()
        .map(|(name, target, keys)| (name, Job { target, keys, value: value.clone(), document: document.clone() }))
        .collect();
    for (_, job) in &jobs {
        measure(job, Op::Set, 64.min(sizes.keys), sizes.keys).await?;
    }
    let mut lines = vec![
        format!(
            "**Redis Cluster against one server** (concurrency 64, {} operations per run, median of {} runs, \
             interleaved; three masters without replicas and one single server, all on this machine's 2 cores; \
             CPU µs/op is the CPU time the client process and the servers used per operation in those runs)",
            group_digits(sizes.ops_c64),
            sizes.repeats
        ),
        String::new(),
        "| workload | cache | ops/s | / one server | client CPU µs/op | server CPU µs/op |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    println!("\nRedis Cluster (3 masters) against one server, concurrency 64");
    for (name, op) in [("get hit", Op::Get), ("set", Op::Set)] {
        let mut samples = vec![Vec::new(); jobs.len()];
        let mut cpu = vec![(Duration::ZERO, Duration::ZERO, 0usize); jobs.len()];
        for _ in 0..sizes.repeats {
            for (i, (cache, job)) in jobs.iter().enumerate() {
                measure(job, op, 64, (sizes.ops_c64 / 5).max(64)).await?;
                let servers = || if *cache == SINGLE { single.cpu() } else { cluster.cpu() };
                let (client0, servers0) = (cpu_of("/proc/self/stat"), servers());
                samples[i].push(measure(job, op, 64, sizes.ops_c64).await?);
                cpu[i].0 += cpu_of("/proc/self/stat").saturating_sub(client0);
                cpu[i].1 += servers().saturating_sub(servers0);
                cpu[i].2 += sizes.ops_c64;
            }
        }
        let medians: Vec<f64> = samples
            .iter_mut()
            .map(|s| {
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            })
            .collect();
        for (i, (cache, _)) in jobs.iter().enumerate() {
            let per_op = |d: Duration| d.as_secs_f64() * 1e6 / cpu[i].2 as f64;
            let line = format!(
                "| {name}, concurrency 64 | {cache} | {:.1} k | {:.2}x | {:.1} | {:.1} |",
                medians[i] / 1e3,
                medians[i] / medians[0],
                per_op(cpu[i].0),
                per_op(cpu[i].1)
            );
            println!("  {line}");
            lines.push(line);
        }
    }
    lines.push(String::new());
    Ok(lines)
}

// ---------------------------------------------------------------- invalidate

/// The Redis commands run between a `SLOWLOG RESET` and now, except the
/// benchmark's own SLOWLOG and CONFIG calls: (how many, longest in µs and its
/// command name).
async fn slowlog(conn: &mut ConnectionManager) -> Result<(usize, u64, String), Error> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(1_000_000).query_async(conn).await?;
    let (mut count, mut longest, mut name) = (0, 0, String::new());
    for entry in entries {
        // [id, unix time, duration µs, [command, args...], client, client name]
        let redis::Value::Array(fields) = entry else { continue };
        let (Some(redis::Value::Int(micros)), Some(redis::Value::Array(args))) = (fields.get(2), fields.get(3)) else {
            continue;
        };
        let command = match args.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_uppercase(),
            _ => String::new(),
        };
        if command == "SLOWLOG" || command == "CONFIG" {
            continue;
        }
        count += 1;
        if *micros as u64 >= longest {
            longest = *micros as u64;
            name = command;
        }
    }
    Ok((count, longest, name))
}

/// Writes `prefix + key` for every key, with `document`, in pipelined MSETs.
async fn populate(conn: &mut ConnectionManager, keys: &[String], document: &[u8]) -> Result<(), Error> {
    for batch in keys.chunks(10_000) {
        let mut pipe = redis::pipe();
        for chunk in batch.chunks(1_000) {
            let cmd = pipe.cmd("MSET");
            for key in chunk {
                cmd.arg(key).arg(document);
            }
            cmd.ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

struct Invalidation {
    how: &'static str,
    secs: f64,
    removed: usize,
    commands: usize,
    longest_us: u64,
    longest_cmd: String,
}

async fn invalidation(url: &str, sizes: &Sizes) -> Result<Vec<Invalidation>, Error> {
    // No response timeout: the naive KEYS over a million keys may take seconds on a loaded machine.
    let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(None);
    let mut admin = ConnectionManager::new_with_config(redis::Client::open(url)?, config).await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut admin).await?;
    let prefix = "inv:";
    let groups = sizes.inv_total / sizes.inv_matching;
    let pattern = "grp0:*";
    // The store's layout: entry `prefix + key`, value `{"v":<JSON>}`.
    let keys: Vec<String> = (0..sizes.inv_total).map(|i| format!("{prefix}grp{}:item:{i:07}", i % groups)).collect();
    let matching: Vec<String> = keys.iter().step_by(groups).cloned().collect();
    let document = serde_json::to_vec(&serde_json::json!({ "v": "x".repeat(VALUE_LEN) }))?;
    let started = Instant::now();
    populate(&mut admin, &keys, &document).await?;
    println!("\npopulated {} keys in {:.2} s", keys.len(), started.elapsed().as_secs_f64());
    drop(keys);
    let store: RedisStore<String> = RedisStore::builder(url).prefix(prefix).build().await?;

    redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query_async::<()>(&mut admin).await?;
    redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(1_000_000).query_async::<()>(&mut admin).await?;
    let mut results = Vec::new();

    redis::cmd("SLOWLOG").arg("RESET").query_async::<()>(&mut admin).await?;
    let started = Instant::now();
    let removed = store.invalidate(pattern).await?;
    let secs = started.elapsed().as_secs_f64();
    let (commands, longest_us, longest_cmd) = slowlog(&mut admin).await?;
    results.push(Invalidation {
        how: "RedisStore::invalidate (SCAN COUNT 1000, a delete script per page sent with the next SCAN)",
        secs,
        removed,
        commands,
        longest_us,
        longest_cmd,
    });

    // The naive way, on the same keyspace: one KEYS, one DEL of everything it found.
    populate(&mut admin, &matching, &document).await?;
    redis::cmd("SLOWLOG").arg("RESET").query_async::<()>(&mut admin).await?;
    let started = Instant::now();
    let found: Vec<Vec<u8>> = redis::cmd("KEYS").arg(format!("{prefix}{pattern}")).query_async(&mut admin).await?;
    let removed: usize = redis::cmd("DEL").arg(&found).query_async(&mut admin).await?;
    let secs = started.elapsed().as_secs_f64();
    let (commands, longest_us, longest_cmd) = slowlog(&mut admin).await?;
    results.push(Invalidation { how: "naive KEYS + one DEL", secs, removed, commands, longest_us, longest_cmd });

    redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(10_000).query_async::<()>(&mut admin).await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut admin).await?;
    for r in &results {
        if r.removed != sizes.inv_matching {
            return Err(format!("{} removed {} keys, expected {}", r.how, r.removed, sizes.inv_matching).into());
        }
        println!(
            "  {:58} {:>8.3} s  {:>6} commands, longest {:.2} ms ({})",
            r.how,
            r.secs,
            r.commands,
            r.longest_us as f64 / 1e3,
            r.longest_cmd
        );
    }
    Ok(results)
}

// ---------------------------------------------------------------- hostile patterns

/// The patterns of issue 13 against 200 keys of 8 KiB (all `a` after a
/// three-digit number): `invalidate` in a MemoryStore (wall time, the target
/// is 50 ms) and in a RedisStore (the longest command Redis ran, from SLOWLOG;
/// the target is 10 ms). Each pattern matches nothing, so every key is
/// tried in full.
async fn hostile(url: &str) -> Result<Vec<String>, Error> {
    let patterns = [
        ("`*` + `a` x 1022 + `b`", format!("*{}b", "a".repeat(1022))),
        ("`*a` x 511 + `b`", format!("{}b", "*a".repeat(511))),
        ("`*` + `?a` x 511 + `b`", format!("*{}b", "?a".repeat(511))),
    ];
    let keys: Vec<String> =
        (0..200).map(|i| format!("{i:03}{}", "a".repeat(pepperpy_caching::MAX_KEY_LEN - 3))).collect();
    let mut admin = ConnectionManager::new(redis::Client::open(url)?).await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut admin).await?;
    redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query_async::<()>(&mut admin).await?;
    let redis_store: RedisStore<u32> = RedisStore::builder(url).prefix("hostile:").build().await?;
    let mut lines = vec![
        "**Hostile patterns** (issue 13): `invalidate` over 200 keys of 8 KiB that the pattern does not match; \
         memory: wall time of the call (target 50 ms); Redis: the longest single command from `SLOWLOG` (target \
         10 ms)"
            .to_string(),
        String::new(),
        "| pattern | MemoryStore | RedisStore, longest command |".to_string(),
        "| --- | --- | --- |".to_string(),
    ];
    println!("\nhostile patterns, 200 keys of 8 KiB");
    for (name, pattern) in &patterns {
        let memory = pepperpy_caching::MemoryStore::new(LruPolicy::new(1_000)?);
        for key in &keys {
            memory.set(key, 1u32, SetOptions::new()).await?;
            redis_store.set(key, 1, SetOptions::new()).await?;
        }
        let started = Instant::now();
        let removed = memory.invalidate(pattern).await?;
        let memory_ms = started.elapsed().as_secs_f64() * 1e3;
        redis::cmd("SLOWLOG").arg("RESET").query_async::<()>(&mut admin).await?;
        let removed_redis = redis_store.invalidate(pattern).await?;
        let (_, longest_us, longest_cmd) = slowlog(&mut admin).await?;
        if removed + removed_redis != 0 {
            return Err(format!("{name} removed {removed} / {removed_redis} keys, expected none").into());
        }
        println!(
            "  {name:28} memory {memory_ms:8.3} ms   Redis longest {:.3} ms ({longest_cmd})",
            longest_us as f64 / 1e3
        );
        lines.push(format!("| {name} | {memory_ms:.2} ms | {:.3} ms (`{longest_cmd}`) |", longest_us as f64 / 1e3));
    }
    redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(10_000).query_async::<()>(&mut admin).await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut admin).await?;
    lines.push(String::new());
    Ok(lines)
}

// ---------------------------------------------------------------- main

async fn redis_version(url: &str) -> Result<String, Error> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
    Ok(info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string())
}

/// p50 and p99 of a latency sample, in µs.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// Stale-while-revalidate on one hot key, concurrency 1: the latency of a
/// plain `get` hit, of a fresh `get_or_refresh`, and of a stale one while
/// its refresh is in flight (a loader that never returns during the run).
/// The target: p99 of the stale read within 1.2x of a plain hit.
/// Returns the report's markdown lines.
async fn stale_while_revalidate(url: &str, sizes: &Sizes) -> Result<Vec<String>, Error> {
    use pepperpy_caching::{RefreshOptions, TokioRuntime};
    let store = Arc::new(RedisStore::<String>::builder(url).prefix("swr:").build().await?);
    let value = "x".repeat(VALUE_LEN);
    let long = RefreshOptions::new(TokioRuntime, Duration::from_secs(3600), Duration::from_secs(3600));
    let short = RefreshOptions::new(TokioRuntime, Duration::from_millis(1), Duration::from_secs(3600));
    store.set("plain", value.clone(), SetOptions::new()).await?;
    let v = value.clone();
    store.get_or_refresh("fresh", move || async move { Ok::<_, std::io::Error>(v) }, &long).await?;
    let v = value.clone();
    store.get_or_refresh("stale", move || async move { Ok::<_, std::io::Error>(v) }, &short).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The first stale read starts the refresh, which stays in flight.
    let hold = Arc::new(tokio::sync::Notify::new());
    let held = Arc::clone(&hold);
    let v = value.clone();
    let hung = move || async move {
        held.notified().await;
        Ok::<_, std::io::Error>(v)
    };
    store.get_or_refresh("stale", hung, &short).await?;
    let ops = sizes.ops_c1 / 4;
    let (mut plain, mut fresh, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    let never = || async { unreachable!("hits only") as Result<String, std::io::Error> };
    for _ in 0..sizes.repeats {
        for _ in 0..ops {
            let t = Instant::now();
            store.get("plain").await?.ok_or("plain missed")?;
            plain.push(t.elapsed());
            let t = Instant::now();
            store.get_or_refresh("fresh", never, &long).await?;
            fresh.push(t.elapsed());
            let t = Instant::now();
            store.get_or_refresh("stale", never, &short).await?;
            stale.push(t.elapsed());
        }
    }
    hold.notify_one();
    let s = store.stats();
    if s.refreshes != 1 || s.stale_hits < (ops * sizes.repeats) as u64 {
        return Err(format!("expected one refresh in flight: {s:?}").into());
    }
    let n = plain.len();
    let (p, f, st) = (percentiles(plain), percentiles(fresh), percentiles(stale));
    println!("\nstale-while-revalidate, one hot key, concurrency 1 ({} calls each, interleaved)", group_digits(n));
    let mut lines = vec![
        format!(
            "**Stale-while-revalidate on one hot key** (RedisStore, concurrency 1, {} calls of each kind \
             interleaved; the stale reads all happen while one refresh is in flight; target: p99 of a stale read \
             within 1.2x of a plain hit)",
            group_digits(n)
        ),
        String::new(),
        "| call | p50 | p99 | p99 / plain hit |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    for (name, (p50, p99)) in
        [("get, plain hit", p), ("get_or_refresh, fresh", f), ("get_or_refresh, stale, refresh in flight", st)]
    {
        println!("  {name:<45} p50 {p50:7.1} us   p99 {p99:7.1} us   p99 {:.2}x plain", p99 / p.1);
        lines.push(format!("| {name} | {p50:.1} µs | {p99:.1} µs | {:.2}x |", p99 / p.1));
    }
    lines.push(String::new());
    Ok(lines)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("tags") {
        return tags::main(&args[2..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value_of = |flag: &str| -> Result<Option<String>, Error> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(Some(args.get(i + 1).ok_or(format!("{flag} needs a value"))?.clone())),
            None => Ok(None),
        }
    };
    let out = value_of("--out")?;
    let filter = Filter { cache: value_of("--cache")?, workload: value_of("--workload")? };
    let mut sizes = if quick { QUICK } else { FULL };
    if let Some(n) = value_of("--repeats")? {
        sizes.repeats = n.parse()?;
    }
    // Declared before the runtime, so it is dropped (killed) after the runtime's
    // tasks and connections are gone, whatever happens in between.
    let server = Server::start()?;
    // `--workload cluster`: only the cluster table, for profilers.
    let cluster_only = filter.workload.as_deref() == Some("cluster");
    let cluster = if filter.is_set() && !cluster_only { None } else { Some(Cluster::start()?) };
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(WORKERS).enable_all().build()?;
    let work = async {
        let version = redis_version(&url).await?;
        println!("redis-server {version} on {url}, tokio multi-thread runtime with {WORKERS} workers");
        let rows = if cluster_only { Vec::new() } else { throughput(&url, &sizes, &filter).await? };
        let hostile = if filter.is_set() { Vec::new() } else { hostile(&url).await? };
        let swr = if filter.is_set() { Vec::new() } else { stale_while_revalidate(&url, &sizes).await? };
        let invalidations = if filter.is_set() { Vec::new() } else { invalidation(&url, &sizes).await? };
        let clustered = match &cluster {
            Some(cluster) => cluster_throughput(&server, cluster, &sizes).await?,
            None => Vec::new(),
        };
        Ok::<_, Error>((version, rows, hostile, swr, invalidations, clustered))
    };
    // Ctrl-C or SIGTERM ends the run through the same path as an error, so the
    // server is killed then too.
    let (version, rows, hostile, swr, invalidations, clustered) = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = term.recv() => Err("terminated".into()),
        }
    })?;
    drop(runtime);
    drop(server);
    drop(cluster);

    let Some(path) = out.filter(|_| !filter.is_set()) else { return Ok(()) };
    let workloads: Vec<&str> = rows.iter().filter(|r| r.cache == RAW).map(|r| r.workload.as_str()).collect();
    let median =
        |w: &str, c: &str| rows.iter().find(|r| r.workload == w && r.cache == c).map_or(f64::NAN, |r| r.median);
    let mut extra = vec![
        String::new(),
        "**Ratio to the floor** (median ops/s of each RedisStore row / raw redis-rs, same run; the target is 0.9x)"
            .to_string(),
        String::new(),
        format!("| workload | {OURS} | {OURS_LRU} |"),
        "| --- | --- | --- |".to_string(),
    ];
    for w in &workloads {
        let raw = median(w, RAW);
        extra.push(format!("| {w} | {:.2}x | {:.2}x |", median(w, OURS) / raw, median(w, OURS_LRU) / raw));
    }
    extra.push(String::new());
    extra.extend(hostile);
    extra.extend(swr);
    extra.extend(clustered);
    extra.push(format!(
        "**`invalidate` of {} keys among {}** (pattern `grp0:*`, one key in {} matches; commands and durations \
         from `SLOWLOG` with `slowlog-log-slower-than 0`, so every command counts; durations are Redis's own \
         execution time)",
        group_digits(sizes.inv_matching),
        group_digits(sizes.inv_total),
        sizes.inv_total / sizes.inv_matching
    ));
    extra.push(String::new());
    extra.push("| how | total time | Redis commands | longest single command |".to_string());
    extra.push("| --- | --- | --- | --- |".to_string());
    for r in &invalidations {
        extra.push(format!(
            "| {} | {:.3} s | {} | {:.2} ms (`{}`) |",
            r.how,
            r.secs,
            group_digits(r.commands),
            r.longest_us as f64 / 1e3,
            r.longest_cmd
        ));
    }
    let description = format!(
        "redis-server {version}, started by the benchmark on a loopback port without persistence; the client is \
         one process with a multi-thread tokio runtime of {WORKERS} workers, on the same machine. Values are \
         {VALUE_LEN}-byte strings: RedisStore writes each as the JSON document `{{\"v\":\"...\"}}` ({doc} bytes), and \
         the floor, plain `GET`/`SET` through a redis-rs `ConnectionManager` (default config, the connection type \
         RedisStore holds), sends the same {doc} bytes. {keys} keys per cache, all written before the get-hit runs. \
         Each measurement times {c1} operations at concurrency 1 and {c64} at concurrency 64 (64 tokio tasks sharing \
         one store, or one connection manager), after a warm-up of a fifth of that; median of {repeats} runs with \
         min-max, the caches interleaved in each run. The LRU row is RedisStore with `LruPolicy::new(1_000_000)`: \
         its get and set are one Lua script call (`EVALSHA`) each instead of one plain command.",
        doc = VALUE_LEN + 8,
        keys = group_digits(sizes.keys),
        c1 = group_digits(sizes.ops_c1),
        c64 = group_digits(sizes.ops_c64),
        repeats = sizes.repeats,
    );
    let report = serde_json::json!({
        "suite": "redis",
        "ours": OURS,
        // Another configuration of ours: in the tables, not compared as a peer.
        "variants": [OURS_LRU],
        "description": description,
        "throughput": rows.iter().map(|r| serde_json::json!({
            "workload": r.workload, "cache": r.cache, "ops_per_sec": r.median, "min": r.min, "max": r.max,
        })).collect::<Vec<_>>(),
        "extra_markdown": extra,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("\nwrote {path}");
    Ok(())
}

/// `1000000` as `1,000,000`.
fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
