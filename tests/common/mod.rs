//! Test helpers shared by the integration tests: a real `redis-server` on a
//! free loopback port, stopped when dropped.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod rng;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` process for one test: loopback only, no persistence, its
/// own temp dir. Killed on drop; its log is printed if the test panicked.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: PathBuf,
    /// Extra `redis-server` arguments (`{dir}` is replaced by the server's
    /// temp dir, `{tls_port}` by its TLS port).
    extra: Vec<String>,
    tls_port: Option<u16>,
}

impl RedisServer {
    /// A server on a free port.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_string()))
    }

    fn start_with(password: Option<String>) -> Self {
        Self::start_full(password, Vec::new(), false)
    }

    /// A server started with extra arguments (see [`RedisServer::extra`]).
    pub fn start_with_args(extra: &[&str]) -> Self {
        Self::start_full(None, extra.iter().map(|a| a.to_string()).collect(), false)
    }

    /// A server that also listens for TLS on [`tls_port`](Self::tls_port),
    /// with a CA and a server certificate (for `127.0.0.1` and `localhost`)
    /// made by `openssl` in its temp dir; [`tls_ca`](Self::tls_ca) is the CA's PEM.
    pub fn start_tls() -> Self {
        let extra = [
            "--tls-port",
            "{tls_port}",
            "--tls-cert-file",
            "{dir}/server.crt",
            "--tls-key-file",
            "{dir}/server.key",
            "--tls-ca-cert-file",
            "{dir}/ca.crt",
            "--tls-auth-clients",
            "no",
        ];
        Self::start_full(None, extra.iter().map(|a| a.to_string()).collect(), true)
    }

    fn start_full(password: Option<String>, extra: Vec<String>, tls: bool) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pepperpy-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the redis-server temp dir");
        if tls {
            make_certificates(&dir);
        }
        let mut server = RedisServer { child: None, port: 0, password, dir, extra, tls_port: None };
        // Another process may grab the free port between our probe and the
        // server's bind; try a few ports.
        for _ in 0..5 {
            server.port = free_port();
            if tls {
                server.tls_port = Some(free_port());
            }
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start; its log:\n{}", server.log());
    }

    /// Starts the server again on the same port, after [`stop`](Self::stop).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart on port {}:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (as a crash would: no shutdown handshake).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, for signals (`SIGSTOP`, `SIGCONT`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    /// The TLS port of a server from [`start_tls`](Self::start_tls).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("not a TLS server")
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn tls_ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.crt")).expect("no CA certificate")
    }

    /// A plain connection for setting up and inspecting the server.
    #[cfg(feature = "redis")]
    pub async fn admin(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Starts the process and waits until it answers PING; false if it exited.
    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let dir = self.dir.display().to_string();
        let tls_port = self.tls_port.map(|p| p.to_string()).unwrap_or_default();
        for arg in &self.extra {
            command.arg(arg.replace("{dir}", &dir).replace("{tls_port}", &tls_port));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not on PATH: install it (scripts/setup.sh does) to run the Redis tests")
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if answers_ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- redis-server log (port {}) ----\n{}", self.port, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, signed by it,
/// in `dir` (`ca.crt`, `server.crt`, `server.key`), made with `openssl`.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl (scripts/setup.sh installs it): {e}"));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=pepperpy test CA",
    ]);
    // -subj keeps openssl from asking; the SAN is what rustls checks.
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("no free loopback port").port()
}

/// Whether something on `port` answers a RESP PING (a NOAUTH error counts:
/// the server is up, it wants a password).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        Ok(n) => reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

/// A TCP server that accepts connections and never answers: for timeouts.
/// Stops accepting (and closes everything) when dropped.
pub struct SilentServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    // Keep the socket open and read nothing.
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentServer { port, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A Redis Cluster for one test: three masters and three replicas, each a
/// [`RedisServer`] with `--cluster-enabled yes`, joined by
/// `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// How long a master may be unreachable before its replica takes over.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    pub fn start() -> Self {
        let timeout = CLUSTER_NODE_TIMEOUT_MS.to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "{dir}/nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    // A master that lost its replica keeps serving: a test
                    // kills masters one at a time.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// The node URLs (every node: masters and replicas).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(RedisServer::url).collect()
    }

    /// Runs `redis-cli -p port args...` and returns its output.
    pub fn cli(port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until every running node reports `cluster_state:ok` with all
    /// slots served and agrees on who serves them.
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
            let infos: Vec<String> = running.iter().map(|n| Self::cli(n.port(), &["CLUSTER", "INFO"])).collect();
            let ok = infos.iter().all(|i| i.contains("cluster_state:ok") && i.contains("cluster_slots_ok:16384"));
            let views: Vec<String> = running.iter().map(|n| Self::slot_owners(n.port())).collect();
            if ok && views.windows(2).all(|w| w[0] == w[1]) && !views[0].is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok:\n{infos:#?}\n{views:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `start-end port` lines of the masters, as the node on `port` sees them.
    fn slot_owners(port: u16) -> String {
        let mut lines: Vec<String> = Self::cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                let addr = fields.get(1)?.split('@').next()?;
                let slots = fields.get(8..)?.join(",");
                (!slots.is_empty()).then(|| format!("{addr} {slots}"))
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> usize {
        let running = self.nodes.iter().find(|n| n.child.is_some()).expect("no node is running");
        let nodes = Self::cli(running.port(), &["CLUSTER", "NODES"]);
        for line in nodes.lines().filter(|l| l.contains("master") && !l.contains("fail")) {
            let fields: Vec<&str> = line.split(' ').collect();
            let port: u16 = fields[1].split('@').next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else { continue };
                if (lo..=hi).contains(&slot) {
                    return self.nodes.iter().position(|n| n.port() == port).unwrap();
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// How many keys each running master holds, by node index.
    pub fn keys_per_master(&self) -> Vec<(usize, u64)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
            .filter(|(_, n)| Self::cli(n.port(), &["ROLE"]).starts_with("master"))
            .map(|(i, n)| (i, Self::cli(n.port(), &["DBSIZE"]).trim().parse().unwrap_or(0)))
            .collect()
    }
}

/// A `get_or_set` of `key` on `store`, in a task, whose loader has started
/// and waits: notifying the returned `Notify` lets it return `value`.
#[cfg(feature = "redis")]
pub async fn blocked_load(
    store: &std::sync::Arc<pepperpy_caching::stores::RedisStore<String>>,
    key: &str,
    value: String,
) -> (tokio::task::JoinHandle<pepperpy_caching::Result<String>>, std::sync::Arc<tokio::sync::Notify>) {
    use pepperpy_caching::{CacheStore, SetOptions};
    let (started, release) =
        (std::sync::Arc::new(tokio::sync::Notify::new()), std::sync::Arc::new(tokio::sync::Notify::new()));
    let load = {
        let (store, key, started, release) = (
            std::sync::Arc::clone(store),
            key.to_string(),
            std::sync::Arc::clone(&started),
            std::sync::Arc::clone(&release),
        );
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                release.notified().await;
                value
            };
            store.get_or_set(&key, loader, SetOptions::new()).await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .unwrap_or_else(|_| panic!("the loader of {key:?} did not start within 20 s"));
    (load, release)
}

/// 16 callers of `get_or_set("k")` on `store`, each in a task; the first
/// loader to run waits until every caller has joined (and 50 ms more), then
/// panics; any other returns `value`. Returns what the tasks gave (a panic
/// as a `JoinError`) and how many loaders ran.
pub async fn sixteen_callers_and_a_panicking_leader<S, V>(
    store: std::sync::Arc<S>,
    value: V,
) -> (Vec<Result<pepperpy_caching::Result<V>, tokio::task::JoinError>>, usize)
where
    S: pepperpy_caching::CacheStore<V> + 'static,
    V: Clone + Send + Sync + 'static,
{
    use pepperpy_caching::SetOptions;
    use std::sync::Arc;
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, runs, release, value) =
            (Arc::clone(&store), Arc::clone(&runs), Arc::clone(&release), value.clone());
        tasks.push(tokio::spawn(async move {
            let loader = move || async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    release.notified().await;
                    panic!("hostile loader");
                }
                value
            };
            store.get_or_set("k", loader, SetOptions::new()).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no loader started within 20 s");
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    let mut results = Vec::new();
    for task in tasks {
        results.push(tokio::time::timeout(Duration::from_secs(20), task).await.expect("a caller hung"));
    }
    (results, runs.load(Ordering::SeqCst))
}
