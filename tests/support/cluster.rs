//! A real Redis Cluster (three masters, three replicas on free loopback
//! ports) and the helpers the cluster tests share: who serves what, which
//! slot a key is in (asked of the server, `CLUSTER KEYSLOT`: a copy of the
//! algorithm would be no oracle), a store's bucket tags, resharding, and
//! signals for freezing a node.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server::RedisServer;

/// A Redis Cluster: three masters and three replicas, each a
/// [`RedisServer`] with `--cluster-enabled yes`, joined by
/// `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    password: Option<String>,
}

/// How long a master may be unreachable before its replica takes over.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster whose nodes require `password` (of clients and of each other).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Self {
        let timeout = CLUSTER_NODE_TIMEOUT_MS.to_string();
        let mut args = vec![
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
        ];
        if let Some(password) = password {
            args.extend(["--masterauth", password]);
        }
        let nodes: Vec<RedisServer> =
            (0..6).map(|_| RedisServer::start_with_password_and_args(password, &args)).collect();
        let cluster = RedisCluster { nodes, password: password.map(str::to_string) };
        let mut create = cluster.redis_cli();
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
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
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// One cluster for every test of a binary that asks for it (each test
    /// keeps to its own key prefix and changes nothing else): started by the
    /// first, killed when the binary exits.
    pub fn shared() -> &'static RedisCluster {
        static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(|| {
            let cluster = RedisCluster::start();
            cluster.nodes.iter().for_each(RedisServer::reap_at_exit);
            cluster
        })
    }

    /// `redis-cli`, logged in when the cluster has a password.
    fn redis_cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        if let Some(password) = &self.password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        command
    }

    /// The node URLs (every running node: masters and replicas).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.is_running()).map(RedisServer::url).collect()
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

    /// [`cli`](Self::cli) on the node at index `node`, logged in if need be.
    pub fn node_cli(&self, node: usize, args: &[&str]) -> String {
        let out = self
            .redis_cli()
            .args(["-h", "127.0.0.1", "-p", &self.nodes[node].port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Indexes of the running nodes.
    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running())
    }

    /// Waits until every running node reports `cluster_state:ok` with all
    /// slots served and agrees on who serves them.
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let infos: Vec<String> = self.running().map(|n| self.node_cli(n, &["CLUSTER", "INFO"])).collect();
            let ok = infos.iter().all(|i| i.contains("cluster_state:ok") && i.contains("cluster_slots_ok:16384"));
            let views: Vec<String> = self.running().map(|n| self.slot_owners(n)).collect();
            if ok && views.windows(2).all(|w| w[0] == w[1]) && !views[0].is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok:\n{infos:#?}\n{views:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `start-end port` lines of the masters, as the node at index `node` sees them.
    fn slot_owners(&self, node: usize) -> String {
        let mut lines: Vec<String> = self
            .node_cli(node, &["CLUSTER", "NODES"])
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

    /// The index in [`nodes`](Self::nodes) of the node listening on `port`.
    fn node_on(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port() == port).unwrap()
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> usize {
        let running = self.running().next().expect("no node is running");
        let nodes = self.node_cli(running, &["CLUSTER", "NODES"]);
        for line in nodes.lines().filter(|l| l.contains("master") && !l.contains("fail")) {
            let fields: Vec<&str> = line.split(' ').collect();
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else { continue };
                if (lo..=hi).contains(&slot) {
                    return self.node_on(port_of(fields[1]));
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// How many keys each running master holds, by node index.
    pub fn keys_per_master(&self) -> Vec<(usize, u64)> {
        self.running()
            .filter(|&n| self.node_cli(n, &["ROLE"]).starts_with("master"))
            .map(|n| (n, self.node_cli(n, &["DBSIZE"]).trim().parse().unwrap_or(0)))
            .collect()
    }

    /// Node indexes of the running masters and of the other nodes (replicas).
    pub fn roles(&self) -> (Vec<usize>, Vec<usize>) {
        let masters: Vec<usize> = self.keys_per_master().into_iter().map(|(i, _)| i).collect();
        let replicas = (0..self.nodes.len()).filter(|i| !masters.contains(i)).collect();
        (masters, replicas)
    }

    /// The cluster id of the node at index `node`.
    pub fn id(&self, node: usize) -> String {
        self.node_cli(node, &["CLUSTER", "MYID"]).trim().to_string()
    }

    /// The node index of a replica of the master at node index `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let id = self.id(master);
        let nodes = self.node_cli(master, &["CLUSTER", "NODES"]);
        let line = nodes.lines().find(|l| l.split(' ').nth(3) == Some(id.as_str())).expect("the master has a replica");
        self.node_on(port_of(line.split(' ').nth(1).unwrap()))
    }

    /// Waits until every replica's link to its master is up (the first sync
    /// happens a few seconds after the cluster is created).
    pub async fn wait_for_replicas(&self, replicas: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &r in replicas {
            while !self.node_cli(r, &["INFO", "replication"]).contains("master_link_status:up") {
                assert!(Instant::now() < deadline, "replica {r} never synced");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Lets every master's replica catch up (replication is asynchronous)
    /// before a test kills or freezes a master.
    /// A replica still in its first sync answers `WAIT` with 0: under load
    /// that can last seconds, and a master stopped then cannot be failed
    /// over (its replica was never in sync), so ask again until it is.
    pub fn wait_for_replication(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (node, _) in self.keys_per_master() {
            while self.node_cli(node, &["WAIT", "1", "2000"]).trim() != "1" {
                assert!(Instant::now() < deadline, "node {node}'s replica did not acknowledge within 60 s");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The `redis-cli --cluster reshard` command that moves `slots` slots
    /// from node index `from` to node index `to`; run it with `.output()`
    /// (from `spawn_blocking` in async code).
    pub fn reshard_command(&self, from: usize, to: usize, slots: usize) -> Command {
        let mut command = self.redis_cli();
        command
            .args(["--cluster", "reshard", &format!("127.0.0.1:{}", self.nodes[from].port())])
            .args(["--cluster-from", &self.id(from), "--cluster-to", &self.id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null());
        command
    }
}

/// The port of a `CLUSTER NODES` address field (`ip:port@cport[,hostname]`).
fn port_of(address: &str) -> u16 {
    address.split('@').next().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

/// The Redis Cluster slot of each of `keys`, asked of the server
/// (`CLUSTER KEYSLOT`, pipelined): the tests take no copy of the algorithm.
#[cfg(feature = "redis")]
pub async fn keyslots<K: redis::ToRedisArgs>(conn: &mut redis::aio::MultiplexedConnection, keys: &[K]) -> Vec<u16> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
    }
    pipe.query_async(conn).await.expect("CLUSTER KEYSLOT")
}

#[cfg(feature = "redis")]
impl RedisCluster {
    /// A plain connection to a running node, for commands that concern no key.
    pub async fn admin(&self) -> redis::aio::MultiplexedConnection {
        self.nodes[self.running().next().expect("no node is running")].admin().await
    }

    /// A cluster connection for setting up and inspecting keys.
    pub async fn raw(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls()).unwrap().get_async_connection().await.unwrap()
    }

    /// A store of strings under `prefix` that holds at most 1,000 entries
    /// (LRU), to share between tasks.
    pub async fn lru_store(&self, prefix: &str) -> std::sync::Arc<pepperpy_caching::stores::RedisStore<String>> {
        let builder = pepperpy_caching::stores::RedisStore::cluster_builder(self.urls()).prefix(prefix);
        let store = builder.policy(pepperpy_caching::LruPolicy::new(1000).unwrap()).build().await.unwrap();
        std::sync::Arc::new(store)
    }

    /// The slot of `key`, asked of the server.
    pub async fn keyslot(&self, key: impl AsRef<[u8]>) -> u16 {
        keyslots(&mut self.admin().await, &[key.as_ref()]).await[0]
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `key`.
    pub async fn master_of_key(&self, key: impl AsRef<[u8]>) -> usize {
        self.master_of(self.keyslot(key).await)
    }

    /// The hash tags (braces included) of a store's `n` buckets, as the
    /// store picks them: bucket `i`'s is the first decimal number whose slot
    /// is in the i-th of `n` equal slot ranges. The slots come from the server.
    pub async fn bucket_tags(&self, n: usize) -> Vec<String> {
        let mut conn = self.admin().await;
        let mut slots: Vec<u16> = Vec::new();
        let mut tags = Vec::new();
        for i in 0..n {
            let range = i * 16384 / n..(i + 1) * 16384 / n;
            let tag = loop {
                if let Some(k) = slots.iter().position(|&s| range.contains(&usize::from(s))) {
                    break k;
                }
                let more: Vec<String> = (slots.len()..slots.len() + 4096).map(|k| k.to_string()).collect();
                slots.extend(keyslots(&mut conn, &more).await);
            };
            tags.push(format!("{{{tag}}}"));
        }
        tags
    }

    /// The raw keys under `prefix` on each running master, by node index
    /// (binary-safe).
    pub async fn raw_keys(&self, prefix: &[u8]) -> Vec<(usize, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for (node, _) in self.keys_per_master() {
            let mut pattern = prefix.to_vec();
            pattern.push(b'*');
            out.push((node, super::scan(&mut self.nodes[node].admin().await, &pattern).await));
        }
        out
    }

    /// The raw keys under `prefix` on every running master, together.
    pub async fn all_raw_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.raw_keys(prefix).await.into_iter().flat_map(|(_, keys)| keys).collect()
    }

    /// Runs [`reshard_command`](Self::reshard_command) and waits until the
    /// cluster has settled.
    pub async fn reshard(&self, from: usize, to: usize, slots: usize) {
        let mut command = self.reshard_command(from, to, slots);
        let out = super::within_for(
            "the reshard",
            Duration::from_secs(120),
            tokio::task::spawn_blocking(move || command.output().expect("cannot run redis-cli")),
        )
        .await
        .unwrap();
        assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stderr));
        self.wait_until_ok(Duration::from_secs(30));
    }
}

/// The store's documented bucket of `key` among `n`: FNV-1a modulo `n`.
pub fn bucket_of(key: &str, n: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % n as u64) as usize
}

/// Fails a cluster test that would otherwise hang: 30 s, for failovers and
/// slot moves on two shared cores (see also [`super::within`]).
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    super::within_for(what, Duration::from_secs(30), f).await
}

/// Every kind of call, once: none may fail on a healthy cluster.
#[cfg(all(feature = "redis", feature = "tokio"))]
pub async fn every_call(store: &std::sync::Arc<pepperpy_caching::stores::RedisStore<String>>, round: usize) {
    use pepperpy_caching::CacheStore;
    let options = pepperpy_caching::RefreshOptions::new(
        pepperpy_caching::TokioRuntime,
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    for i in 0..20 {
        let key = format!("r{round}:{i}");
        store
            .set(&key, "v".into(), pepperpy_caching::SetOptions::new())
            .await
            .unwrap_or_else(|e| panic!("set {key}: {e:?}"));
        assert_eq!(store.get(&key).await.unwrap_or_else(|e| panic!("get {key}: {e:?}")), Some("v".into()));
        let mut m = pepperpy_caching::Metadata::new();
        m.insert("a".into(), 1.into());
        assert!(store.update_metadata(&key, m).await.unwrap_or_else(|e| panic!("update_metadata {key}: {e:?}")));
        let loaded = store
            .get_or_set(&format!("l{round}:{i}"), || async { "l".to_string() }, pepperpy_caching::SetOptions::new())
            .await
            .unwrap_or_else(|e| panic!("get_or_set: {e:?}"));
        assert_eq!(loaded, "l");
        let refreshed = store
            .get_or_refresh(&format!("f{round}:{i}"), || async { Ok::<_, std::io::Error>("f".to_string()) }, &options)
            .await
            .unwrap_or_else(|e| panic!("get_or_refresh: {e:?}"));
        assert_eq!(refreshed, "f");
        assert!(store.delete(&key).await.unwrap_or_else(|e| panic!("delete {key}: {e:?}")));
    }
    store.size().await.unwrap_or_else(|e| panic!("size: {e:?}"));
    assert_eq!(store.invalidate(&format!("l{round}:*")).await.unwrap_or_else(|e| panic!("invalidate: {e:?}")), 20);
}
