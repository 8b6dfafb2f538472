//! Processes the Redis tests talk to: a real `redis-server` on a free
//! loopback port (plain, with a password, with TLS, or with extra arguments),
//! one shared by a whole test binary, and a TCP server that never answers.

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

    /// A server started with extra arguments that may also require a password.
    pub fn start_with_password_and_args(password: Option<&str>, extra: &[&str]) -> Self {
        Self::start_full(password.map(str::to_string), extra.iter().map(|a| a.to_string()).collect(), false)
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

    /// Whether the process runs (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Has this server killed, and its temp dir removed, when the test
    /// binary exits, however it exits: for servers kept in a `static`,
    /// which is never dropped. A watchdog shell reads a pipe that only this
    /// process holds open; the kernel closes it at exit.
    pub fn reap_at_exit(&self) {
        // The watchdogs and their pipes live as long as the process.
        static WATCHDOGS: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());
        let watchdog = Command::new("sh")
            .args(["-c", "read _; kill -9 \"$1\"; rm -rf \"$2\"", "watchdog", &self.pid().to_string()])
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the watchdog shell");
        WATCHDOGS.lock().unwrap().push(watchdog);
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

/// One `redis-server` for every test of a binary that asks for it (each
/// test keeps to its own key prefix): started by the first, killed when the
/// binary exits.
pub fn shared_server() -> &'static RedisServer {
    static SERVER: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let server = RedisServer::start();
        server.reap_at_exit();
        server
    })
}

/// Sends `kill -sig` to a process (`STOP`, `CONT`).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Stops (SIGSTOP) a process, as a hung host would, until dropped: then
/// sends SIGCONT, so that a failing test leaves no stopped redis-server.
pub struct Frozen(u32);

impl Frozen {
    pub fn freeze(pid: u32) -> Self {
        signal(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
        } else {
            signal(self.0, "CONT");
        }
    }
}
