//! Hostile tests of RedisStore on Redis Cluster: odd keys and prefixes,
//! lost indexes, a flushed script cache, dead or frozen nodes, a node
//! restarted empty, the largest bucket count, stores pointed at a cluster
//! node by the single-node builder.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{RedisCluster, free_port};
use pepperpy_caching::{
    CacheError, CacheStore, DynCacheStore, LruPolicy, Metadata, RefreshOptions, SetOptions, TokioRuntime,
    stores::{NearCache, RedisStore},
};

/// Fails a test that would otherwise hang.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    within_for(what, Duration::from_secs(30), f).await
}

async fn within_for<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("{what}: timed out after {limit:?}"))
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// Redis Cluster's CRC16 (XMODEM) slot of a key, hash tags included.
fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let inner = &key[open + 1..];
        inner.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &inner[..close])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(key) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

/// The store's documented bucket of `key` among `n`: FNV-1a modulo `n`.
fn bucket_of(key: &str, n: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % n as u64) as usize
}

/// The hash tag of bucket `i` of `n` (as the store picks it: the first
/// `i.k` whose slot is in the i-th of n equal slot ranges), braces included.
fn tag_of(i: usize, n: usize) -> String {
    // The smallest decimal number whose slot is in bucket i's range, and
    // that no lower bucket took first: the first number landing in the range.
    let (lo, hi) = (i * 16384 / n, (i + 1) * 16384 / n);
    let tag = (0u64..).find(|k| (lo..hi).contains(&usize::from(slot(k.to_string().as_bytes())))).unwrap();
    format!("{{{tag}}}")
}

/// The slot of a one-bucket store under `prefix`, put in the middle of a
/// migration as redis-cli does it: IMPORTING on another master, then
/// MIGRATING on its own. The tests then MIGRATE some keys through `src`.
struct Migration {
    tag: String,
    slot: u16,
    source: usize,
    target: usize,
    target_id: String,
    src: redis::aio::MultiplexedConnection,
    dst: redis::aio::MultiplexedConnection,
}

async fn start_migration(cluster: &RedisCluster, prefix: &str) -> Migration {
    let tag = tag_of(0, 1);
    let s = slot(format!("{prefix}{tag}").as_bytes());
    let source = cluster.master_of(s);
    let (masters, _) = roles(cluster);
    let target = *masters.iter().find(|&&m| m != source).unwrap();
    let id = |i: usize| RedisCluster::cli(cluster.nodes[i].port(), &["CLUSTER", "MYID"]).trim().to_string();
    let mut src = cluster.nodes[source].admin().await;
    let mut dst = cluster.nodes[target].admin().await;
    let setslot = |state: &str, node: String| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(s).arg(state).arg(node);
        cmd
    };
    let target_id = id(target);
    let _: () = setslot("IMPORTING", id(source)).query_async(&mut dst).await.unwrap();
    let _: () = setslot("MIGRATING", target_id.clone()).query_async(&mut src).await.unwrap();
    Migration { tag, slot: s, source, target, target_id, src, dst }
}

/// Ends a migration begun by [`start_migration`]: the slot's remaining keys
/// move to the target, both masters are told the slot is the target's, and
/// the cluster settles.
async fn finish_migration(
    cluster: &RedisCluster,
    src: &mut redis::aio::MultiplexedConnection,
    slot: u16,
    source: usize,
    target: usize,
    target_id: &str,
) {
    let rest: Vec<Vec<u8>> =
        redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(1000).query_async(src).await.unwrap();
    if !rest.is_empty() {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1").arg(cluster.nodes[target].port()).arg("").arg(0).arg(5000).arg("KEYS").arg(rest);
        let _: () = cmd.query_async(src).await.unwrap();
    }
    for node in [target, source] {
        let mut conn = cluster.nodes[node].admin().await;
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg("NODE").arg(target_id);
        let _: () = cmd.query_async(&mut conn).await.unwrap();
    }
    cluster.wait_until_ok(Duration::from_secs(30));
}

/// MIGRATEs `keys` from the source of a migration (`src`) to `target`.
async fn migrate_keys(
    cluster: &RedisCluster,
    src: &mut redis::aio::MultiplexedConnection,
    target: usize,
    keys: impl IntoIterator<Item = String>,
) {
    let mut cmd = redis::cmd("MIGRATE");
    cmd.arg("127.0.0.1").arg(cluster.nodes[target].port()).arg("").arg(0).arg(5000).arg("KEYS");
    for key in keys {
        cmd.arg(key);
    }
    let _: () = cmd.query_async(src).await.unwrap();
}

/// A raw cluster connection for setting up and inspecting.
async fn raw(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls()).unwrap().get_async_connection().await.unwrap()
}

/// The raw keys under `prefix` on each running master (binary-safe).
async fn raw_keys(cluster: &RedisCluster, prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, _) in cluster.keys_per_master() {
        let mut conn = cluster.nodes[i].admin().await;
        let mut cursor = 0u64;
        loop {
            let mut pattern = prefix.to_vec();
            pattern.push(b'*');
            let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.extend(page);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    out
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Node indexes of the running masters and replicas.
fn roles(cluster: &RedisCluster) -> (Vec<usize>, Vec<usize>) {
    let masters: Vec<usize> = cluster.keys_per_master().into_iter().map(|(i, _)| i).collect();
    let replicas = (0..cluster.nodes.len()).filter(|i| !masters.contains(i)).collect();
    (masters, replicas)
}

fn port_of_slot(cluster: &RedisCluster, s: u16) -> usize {
    cluster.master_of(s)
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_braces_and_forged_tags_round_trip() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("odd:").build().await.unwrap();
    let n = 16;
    let mut keys: Vec<String> =
        ["{", "}", "{}", "}{", "{{}}", "{a}", "a{b}c", "x}y{z", "{}{}", " {", "\u{7f}}", "日本{x}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    // Keys that start with another bucket's tag, or with their own.
    for i in 0..n {
        keys.push(format!("{}k", tag_of(i, n)));
        keys.push(tag_of(i, n));
    }
    keys.push("}".repeat(300));
    keys.push(format!("{}{}", "{".repeat(200), "x"));
    for (i, key) in keys.iter().enumerate() {
        store.set(key, format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(store.get(key).await.unwrap(), Some(format!("v{i}")), "{key:?}");
        assert!(store.contains(key).await.unwrap(), "{key:?}");
        let mut m = Metadata::new();
        m.insert("i".into(), i.into());
        assert!(store.update_metadata(key, m.clone()).await.unwrap(), "{key:?}");
        assert_eq!(store.get_metadata(key).await.unwrap(), Some(m), "{key:?}");
    }
    let expected = sorted(keys.clone());
    let mut dedup = expected.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), keys.len(), "test keys are distinct");
    assert_eq!(sorted(store.keys(None).await.unwrap()), expected);
    assert_eq!(store.size().await.unwrap(), keys.len());
    // Patterns whose literal head has braces.
    let braced: Vec<String> = keys.iter().filter(|k| k.starts_with('{')).cloned().collect();
    assert_eq!(sorted(store.keys(Some("{*")).await.unwrap()), sorted(braced.clone()));
    assert_eq!(
        sorted(store.keys(Some("}*")).await.unwrap()),
        sorted(keys.iter().filter(|k| k.starts_with('}')).cloned().collect())
    );
    // Raw keys: every entry sits in its own bucket's slot, with its own bucket's tag.
    for key in &keys {
        let full = format!("odd:{}{key}", tag_of(bucket_of(key, n), n));
        assert_eq!(slot(full.as_bytes()), slot(format!("odd:{}", tag_of(bucket_of(key, n), n)).as_bytes()));
    }
    assert_eq!(store.invalidate("{*").await.unwrap(), braced.len());
    for key in &keys {
        assert_eq!(store.get(key).await.unwrap().is_some(), !key.starts_with('{'), "{key:?}");
    }
    let rest = keys.len() - braced.len();
    let mut deleted = 0;
    for key in &keys {
        deleted += usize::from(store.delete(key).await.unwrap());
    }
    assert_eq!(deleted, rest);
    assert_eq!(store.size().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_that_look_like_entries_are_not_touched() {
    let cluster = RedisCluster::start();
    let n = 16;
    let mut conn = raw(&cluster).await;
    // Keys of someone else under the same prefix but without a tag, with a
    // wrong bucket's tag, with a tag that is not the store's.
    let tag3 = tag_of(3, n);
    let wrong = (0..n).find(|&i| i != bucket_of("victim", n)).unwrap();
    let foreign: Vec<String> = vec![
        "sp:victim".into(),
        format!("sp:{}victim", tag_of(wrong, n)),
        "sp:{zzz}victim".into(),
        format!("sp:{tag3}"),
        "sp:{}victim".into(),
    ];
    for key in &foreign {
        let _: () = redis::cmd("SET").arg(key).arg(r#"{"v":"foreign"}"#).query_async(&mut conn).await.unwrap();
    }
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("sp:")
        .policy(LruPolicy::new(100).unwrap())
        .build()
        .await
        .unwrap();
    store.set("victim", "mine".into(), SetOptions::new()).await.unwrap();
    assert_eq!(store.keys(None).await.unwrap(), vec!["victim".to_string()]);
    assert_eq!(store.size().await.unwrap(), 1);
    assert_eq!(store.invalidate("*").await.unwrap(), 1);
    store.set("victim", "mine".into(), SetOptions::new()).await.unwrap();
    store.clear().await.unwrap();
    for key in &foreign {
        let v: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
        assert_eq!(v.as_deref(), Some(r#"{"v":"foreign"}"#), "{key} was touched");
    }
    // An empty prefix over the whole database ignores other stores' entries.
    let other = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("keep:").build().await.unwrap();
    other.set("a", "x".into(), SetOptions::new()).await.unwrap();
    let whole = RedisStore::<String>::cluster_builder(cluster.urls()).whole_database(true).build().await.unwrap();
    whole.set("w", "y".into(), SetOptions::new()).await.unwrap();
    assert_eq!(whole.keys(None).await.unwrap(), vec!["w".to_string()]);
    whole.clear().await.unwrap();
    assert_eq!(other.get("a").await.unwrap(), Some("x".into()));
    // A prefix full of glob characters and a backslash.
    let globby = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("g*?[]\\^-:").build().await.unwrap();
    let plain = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("gx:").build().await.unwrap();
    for i in 0..50 {
        globby.set(&format!("k{i}"), "g".into(), SetOptions::new()).await.unwrap();
        plain.set(&format!("k{i}"), "p".into(), SetOptions::new()).await.unwrap();
    }
    assert_eq!(globby.invalidate("k1*").await.unwrap(), 11);
    assert_eq!(globby.size().await.unwrap(), 39);
    assert_eq!(plain.size().await.unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bucket_index_is_counted_and_rebuilt_within_the_share() {
    let cluster = RedisCluster::start();
    let n = 4;
    let cap = 40; // a share of 10 per bucket
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("lost:")
        .buckets(n)
        .policy(LruPolicy::new(cap).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.size().await.unwrap(), cap);
    let mut conn = raw(&cluster).await;
    let tag = tag_of(0, n);
    let index = [b"lost:".as_slice(), tag.as_bytes(), b"\xfflru"].concat();
    let removed: i64 = redis::cmd("DEL").arg(&index).query_async(&mut conn).await.unwrap();
    assert_eq!(removed, 1, "bucket 0's index exists at the computed name");
    // Entries written behind the store's back into bucket 0.
    let extra: Vec<String> = (0..).map(|i| format!("x{i}")).filter(|k| bucket_of(k, n) == 0).take(25).collect();
    for key in &extra {
        let full = format!("lost:{tag}{key}");
        let _: () = redis::cmd("SET").arg(full).arg(r#"{"v":"x"}"#).query_async(&mut conn).await.unwrap();
    }
    // Counted by walking while the index is lost.
    assert_eq!(store.size().await.unwrap(), cap + extra.len());
    assert_eq!(store.keys(None).await.unwrap().len(), cap + extra.len());
    // One set in bucket 0 rebuilds it down to its share.
    let key = (0..).map(|i| format!("n{i}")).find(|k| bucket_of(k, n) == 0).unwrap();
    store.set(&key, "new".into(), SetOptions::new()).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some("new".into()), "the set that rebuilt keeps its entry");
    let size = store.size().await.unwrap();
    let listed = store.keys(None).await.unwrap().len();
    assert_eq!(size, listed, "the index and the keyspace agree after the rebuild");
    assert!(size <= cap, "{size} entries over a capacity of {cap}");
    let in_bucket0 =
        raw_keys(&cluster, format!("lost:{tag}").as_bytes()).await.into_iter().filter(|k| !k.contains(&0xff)).count();
    assert_eq!(in_bucket0, cap / n, "bucket 0 holds exactly its share");
    // The other buckets were not disturbed.
    for i in 1..n {
        let t = tag_of(i, n);
        let count =
            raw_keys(&cluster, format!("lost:{t}").as_bytes()).await.into_iter().filter(|k| !k.contains(&0xff)).count();
        assert_eq!(count, cap / n, "bucket {i}");
    }
}

/// Every kind of call, once: none may fail on a healthy cluster.
async fn every_call(store: &Arc<RedisStore<String>>, round: usize) {
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(60));
    for i in 0..20 {
        let key = format!("r{round}:{i}");
        store.set(&key, "v".into(), SetOptions::new()).await.unwrap_or_else(|e| panic!("set {key}: {e:?}"));
        assert_eq!(store.get(&key).await.unwrap_or_else(|e| panic!("get {key}: {e:?}")), Some("v".into()));
        let mut m = Metadata::new();
        m.insert("a".into(), 1.into());
        assert!(store.update_metadata(&key, m).await.unwrap_or_else(|e| panic!("update_metadata {key}: {e:?}")));
        let loaded = store
            .get_or_set(&format!("l{round}:{i}"), || async { "l".to_string() }, SetOptions::new())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_on_every_node_is_reloaded() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("flush:")
            .policy(LruPolicy::new(1000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    for node in &cluster.nodes {
        assert_eq!(RedisCluster::cli(node.port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    every_call(&store, 1).await;
    // Only one master flushed.
    let (masters, _) = roles(&cluster);
    RedisCluster::cli(cluster.nodes[masters[1]].port(), &["SCRIPT", "FLUSH"]);
    every_call(&store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_reloaded_while_a_replica_is_dead() {
    let mut cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("flushdead:")
            .policy(LruPolicy::new(1000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    let (masters, replicas) = roles(&cluster);
    cluster.nodes[replicas[0]].stop();
    // The cluster notices the replica is gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    every_call(&store, 1).await;
    for &m in &masters {
        assert_eq!(RedisCluster::cli(cluster.nodes[m].port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    // The masters are all healthy: a script call needs only its own master.
    every_call(&store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_keep_working_with_a_replica_dead() {
    let mut cluster = RedisCluster::start();
    let store = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix("rep:").build().await.unwrap();
    for i in 0..100u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    let (_, replicas) = roles(&cluster);
    cluster.nodes[replicas[0]].stop();
    let mut failures = Vec::new();
    for round in 0..30 {
        match store.keys(None).await {
            Ok(keys) => assert_eq!(keys.len(), 100),
            Err(e) => failures.push(format!("round {round} keys: {e:?}")),
        }
        match store.size().await {
            Ok(n) => assert_eq!(n, 100),
            Err(e) => failures.push(format!("round {round} size: {e:?}")),
        }
        if round == 5 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    assert!(failures.is_empty(), "walks failed with every master up: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_through_one_live_seed_among_dead_ones() {
    let cluster = RedisCluster::start();
    let dead = |_| format!("redis://127.0.0.1:{}", free_port());
    let mut urls: Vec<String> = (0..3).map(dead).collect();
    urls.push(cluster.urls()[4].clone());
    let store =
        within("build", RedisStore::<String>::cluster_builder(urls.clone()).prefix("seed:").build()).await.unwrap();
    for i in 0..50 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.keys(None).await.unwrap().len(), 50);
    // The live seed last and first: the same.
    urls.rotate_right(1);
    let again = within("build", RedisStore::<String>::cluster_builder(urls).prefix("seed:").build()).await.unwrap();
    assert_eq!(again.size().await.unwrap(), 50);
    // Only dead seeds: a backend error within the timeouts, no hang.
    let none: Vec<String> = (0..3).map(dead).collect();
    let result = within(
        "a build with no live seed",
        RedisStore::<String>::cluster_builder(none).connect_timeout(Duration::from_millis(300)).build(),
    )
    .await;
    assert!(matches!(result, Err(CacheError::Backend { .. })), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_does_not_stop_the_others() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("stop:")
            .response_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap(),
    );
    let n = 16;
    for i in 0..200 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let (masters, _) = roles(&cluster);
    let frozen = masters[0];
    // Keys whose bucket lives on another master.
    let elsewhere: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .filter(|k| port_of_slot(&cluster, slot(format!("stop:{}", tag_of(bucket_of(k, n), n)).as_bytes())) != frozen)
        .collect();
    assert!(elsewhere.len() > 50);
    let pid = cluster.nodes[frozen].pid();
    signal(pid, "STOP");
    struct Cont(u32);
    impl Drop for Cont {
        fn drop(&mut self) {
            signal(self.0, "CONT");
        }
    }
    let guard = Cont(pid);
    // Within the node timeout (no failover yet): the other masters answer.
    let started = Instant::now();
    let mut failures = Vec::new();
    for key in elsewhere.iter().take(60) {
        match store.get(key).await {
            Ok(Some(_)) => {}
            other => failures.push(format!("{key}: {other:?} after {:?}", started.elapsed())),
        }
    }
    // Leave it frozen long enough for its replica to take over, then thaw.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(guard);
    cluster.wait_until_ok(Duration::from_secs(30));
    // Recovers: every call works again within 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = async {
            for i in 0..200 {
                let key = format!("k{i}");
                store.set(&key, format!("w{i}"), SetOptions::new()).await?;
                if store.get(&key).await? != Some(format!("w{i}")) {
                    return Err(CacheError::Policy(format!("{key} reads back wrong")));
                }
            }
            if store.keys(None).await?.len() != 200 {
                return Err(CacheError::Policy("keys".into()));
            }
            Ok::<_, CacheError>(())
        }
        .await;
        match ok {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "the store did not recover: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failures.is_empty(), "reads of keys on healthy masters failed while one master was frozen: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_is_healed() {
    let mut cluster = RedisCluster::start();
    let n = 8;
    let cap = 80;
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("rs:")
            .buckets(n)
            .policy(LruPolicy::new(cap).unwrap())
            .build()
            .await
            .unwrap(),
    );
    for i in 0..300 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    // The master holding the record of the bucket count.
    let victim = cluster.master_of(slot(b"rs:\xffbuckets"));
    // Restart at once, before the cluster fails it over: it comes back with
    // its cluster config (nodes.conf) and no data.
    cluster.nodes[victim].stop();
    cluster.nodes[victim].restart();
    cluster.wait_until_ok(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = async {
            for i in 0..300 {
                store.set(&format!("k{i}"), format!("w{i}"), SetOptions::new()).await?;
            }
            Ok::<_, CacheError>(())
        }
        .await;
        match ok {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "writes did not recover: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let size = store.size().await.unwrap();
    let keys = store.keys(None).await.unwrap();
    assert_eq!(size, keys.len(), "index and keyspace agree");
    assert!(size <= cap, "{size} over {cap}");
    for key in &keys {
        assert_eq!(store.get(key).await.unwrap(), Some(format!("w{}", &key[1..])));
    }
    // The recorded bucket count still guards the prefix.
    let other = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("rs:").buckets(4).build().await;
    assert!(matches!(other, Err(CacheError::Policy(_))), "a different bucket count was accepted: {other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_bucket_count_works() {
    let cluster = RedisCluster::start();
    let started = Instant::now();
    let store = within_for(
        "build with buckets(16384)",
        Duration::from_secs(60),
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("max:")
            .buckets(16_384)
            .policy(LruPolicy::new(16_384).unwrap())
            .build(),
    )
    .await
    .unwrap();
    eprintln!("build with 16384 buckets took {:?}", started.elapsed());
    for i in 0..300 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let started = Instant::now();
    let size = within_for("size", Duration::from_secs(120), store.size()).await.unwrap();
    eprintln!("size with 16384 buckets took {:?}", started.elapsed());
    // One entry per bucket: keys sharing a bucket evicted each other.
    let keys = store.keys(None).await.unwrap();
    assert_eq!(size, keys.len());
    let buckets: BTreeSet<usize> = (0..300).map(|i| bucket_of(&format!("k{i}"), 16_384)).collect();
    assert_eq!(size, buckets.len());
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dyn_store_over_a_cluster() {
    let cluster = RedisCluster::start();
    let store: Arc<dyn DynCacheStore<String>> =
        Arc::new(RedisStore::<String>::cluster_builder(cluster.urls()).prefix("dyn:").build().await.unwrap());
    for i in 0..100 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.size().await.unwrap(), 100);
    assert_eq!(store.invalidate("k1*").await.unwrap(), 11);
    let loaded = store.get_or_set("loaded", || async { "x".to_string() }, SetOptions::new()).await.unwrap();
    assert_eq!(loaded, "x");
    assert!(store.contains("loaded").await.unwrap());
    assert_eq!(store.keys(Some("load*")).await.unwrap(), vec!["loaded".to_string()]);
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_store_pointed_at_a_cluster_node_is_refused_or_works() {
    let cluster = RedisCluster::start();
    let url = cluster.urls()[0].clone();
    match RedisStore::<String>::builder(url.clone()).prefix("single:").build().await {
        Err(CacheError::Policy(message)) => assert!(message.contains("cluster_builder"), "{message}"),
        Err(other) => panic!("expected a Policy error naming cluster_builder, got {other:?}"),
        Ok(_) => panic!("a single-node store was built on a cluster node"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_pointed_at_a_cluster_node_is_refused_or_works() {
    let cluster = RedisCluster::start();
    let url = cluster.urls()[0].clone();
    match NearCache::<String>::builder(url).prefix("near:").build().await {
        Err(CacheError::Policy(message)) => assert!(message.contains("cluster_builder"), "{message}"),
        Err(other) => panic!("expected a Policy error naming cluster_builder, got {other:?}"),
        Ok(_) => panic!("a single-node store was built on a cluster node"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_shares_keep_the_capacity_and_the_index_in_step() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("tiny:")
            .policy(LruPolicy::new(16).unwrap())
            .build()
            .await
            .unwrap(),
    );
    let other = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("tiny:")
            .policy(LruPolicy::new(16).unwrap())
            .build()
            .await
            .unwrap(),
    );
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = if t % 2 == 0 { Arc::clone(&store) } else { Arc::clone(&other) };
        let loads = Arc::clone(&loads);
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let key = format!("k{}", (i * 7 + t) % 60);
                if i % 3 == 0 {
                    let loads = Arc::clone(&loads);
                    s.get_or_set(
                        &key,
                        || async move {
                            loads.fetch_add(1, Ordering::Relaxed);
                            "l".to_string()
                        },
                        SetOptions::new(),
                    )
                    .await
                    .unwrap();
                } else if i % 3 == 1 {
                    s.set(&key, "s".into(), SetOptions::new().ttl(Duration::from_secs(60))).await.unwrap();
                } else {
                    let _ = s.get(&key).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        within("a writer", t).await.unwrap();
    }
    let size = store.size().await.unwrap();
    let keys = store.keys(None).await.unwrap();
    assert_eq!(size, keys.len(), "index says {size}, keyspace holds {keys:?}");
    assert!(size <= 16);
    // Every index member is an entry, and every entry is a member.
    let mut members = 0usize;
    let mut conn = raw(&cluster).await;
    for i in 0..16 {
        let index = [b"tiny:".as_slice(), tag_of(i, 16).as_bytes(), b"\xfflru"].concat();
        let list: Vec<Vec<u8>> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        for m in list.iter().filter(|m| !m.is_empty()) {
            let exists: i64 = redis::cmd("EXISTS").arg(m).query_async(&mut conn).await.unwrap();
            assert_eq!(exists, 1, "index member {:?} has no entry", String::from_utf8_lossy(m));
            members += 1;
        }
    }
    assert_eq!(members, size);
}

struct Thaw(u32);
impl Drop for Thaw {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_does_not_fail_calls_on_healthy_masters() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("frz:")
            .response_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap(),
    );
    for i in 0..100 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    let (masters, replicas) = roles(&cluster);
    let _thaw = Thaw(cluster.nodes[replicas[0]].pid());
    signal(cluster.nodes[replicas[0]].pid(), "STOP");
    let mut failures = Vec::new();
    for round in 0..20 {
        if let Err(e) = store.keys(None).await {
            failures.push(format!("round {round} keys: {e:?}"));
        }
        if let Err(e) = store.size().await {
            failures.push(format!("round {round} size: {e:?}"));
        }
    }
    assert!(failures.is_empty(), "{} walks failed with every master up: {:#?}", failures.len(), failures.first());
    let _ = masters;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_reloaded_while_a_replica_is_frozen() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("frzs:")
            .policy(LruPolicy::new(1000).unwrap())
            .response_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    let (masters, replicas) = roles(&cluster);
    let _thaw = Thaw(cluster.nodes[replicas[0]].pid());
    signal(cluster.nodes[replicas[0]].pid(), "STOP");
    for &m in &masters {
        assert_eq!(RedisCluster::cli(cluster.nodes[m].port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    // Every master is up and answers: a set under a capacity needs its master only.
    let mut failures = Vec::new();
    for i in 0..50 {
        if let Err(e) = store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await {
            failures.push(format!("k{i}: {e:?}"));
        }
    }
    assert!(failures.is_empty(), "{} sets failed with every master up: {:#?}", failures.len(), failures.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_writes_and_loads_on_two_instances_during_a_reshard_keep_the_index_true() {
    let cluster = RedisCluster::start();
    let cap = 160;
    let make = || async {
        Arc::new(
            RedisStore::<String>::cluster_builder(cluster.urls())
                .prefix("mv:")
                .policy(LruPolicy::new(cap).unwrap())
                .lock_lease(Duration::from_secs(3))
                .build()
                .await
                .unwrap(),
        )
    };
    let (a, b) = (make().await, make().await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = if t % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", (i * 13 + t) % 400);
                let r = match i % 4 {
                    0 => s.get_or_set(&key, || async { "l".to_string() }, SetOptions::new()).await.map(|_| ()),
                    1 => s.set(&key, "s".into(), SetOptions::new()).await,
                    2 => s.delete(&key).await.map(|_| ()),
                    _ => s.get(&key).await.map(|_| ()),
                };
                match r {
                    Ok(()) => {}
                    Err(CacheError::Backend { .. }) => errors += 1,
                    Err(other) => panic!("{other:?}"),
                }
                i += 1;
            }
            (i, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (masters, _) = roles(&cluster);
    let id = |i: usize| RedisCluster::cli(cluster.nodes[i].port(), &["CLUSTER", "MYID"]).trim().to_string();
    let (from, to) = (id(masters[0]), id(masters[1]));
    let from_port = cluster.nodes[masters[0]].port();
    let reshard = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from_port}")])
            .args(["--cluster-from", &from, "--cluster-to", &to, "--cluster-slots", "5461", "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cannot run redis-cli")
    });
    let out = within_for("the reshard", Duration::from_secs(120), reshard).await.unwrap();
    assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stderr));
    cluster.wait_until_ok(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let (ops, errors) = within("a worker", t).await.unwrap();
        eprintln!("{ops} ops, {errors} backend errors");
    }
    // Placeholders of loads cut short end with their lease.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let size = a.size().await.unwrap();
    let keys = a.keys(None).await.unwrap();
    assert!(size <= cap, "{size} over {cap}");
    let mut conn = raw(&cluster).await;
    let mut members = 0usize;
    for i in 0..16 {
        let index = [b"mv:".as_slice(), tag_of(i, 16).as_bytes(), b"\xfflru"].concat();
        let list: Vec<Vec<u8>> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        for m in list.iter().filter(|m| !m.is_empty()) {
            let exists: i64 = redis::cmd("EXISTS").arg(m).query_async(&mut conn).await.unwrap();
            assert_eq!(exists, 1, "index member {:?} has no entry", String::from_utf8_lossy(m));
            members += 1;
        }
    }
    assert_eq!(members, keys.len(), "every entry is indexed");
    assert_eq!(size, keys.len());
    // Everything still works on the new layout.
    for i in 0..400 {
        let key = format!("k{i}");
        a.set(&key, "z".into(), SetOptions::new()).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), Some("z".into()));
    }
    assert!(a.size().await.unwrap() <= cap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_across_instances_survive_a_write_pause_on_their_master() {
    let cluster = RedisCluster::start();
    let make = || async {
        Arc::new(
            RedisStore::<String>::cluster_builder(cluster.urls())
                .prefix("pz:")
                .response_timeout(Duration::from_millis(300))
                .lock_lease(Duration::from_secs(2))
                .build()
                .await
                .unwrap(),
        )
    };
    let (a, b) = (make().await, make().await);
    let key = "paused";
    let master = cluster.master_of(slot(format!("pz:{}", tag_of(bucket_of(key, 16), 16)).as_bytes()));
    RedisCluster::cli(cluster.nodes[master].port(), &["CLIENT", "PAUSE", "1500", "WRITE"]);
    let loads = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for i in 0..10 {
        let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let loads = Arc::clone(&loads);
        calls.push(tokio::spawn(async move {
            s.get_or_set(
                key,
                || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    "loaded".to_string()
                },
                SetOptions::new(),
            )
            .await
        }));
    }
    for c in calls {
        match within("a caller", c).await.unwrap() {
            Ok(v) => assert_eq!(v, "loaded"),
            Err(CacheError::Backend { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    // After the pause and the lease: the key can be loaded and read everywhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = within("a load after the pause", a.get_or_set(key, || async { "again".to_string() }, SetOptions::new()))
        .await
        .unwrap();
    assert!(got == "loaded" || got == "again", "{got}");
    assert_eq!(b.get(key).await.unwrap(), Some(got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_builds_while_a_replica_is_frozen() {
    let cluster = RedisCluster::start();
    let (_, replicas) = roles(&cluster);
    let _thaw = Thaw(cluster.nodes[replicas[0]].pid());
    signal(cluster.nodes[replicas[0]].pid(), "STOP");
    // Every master answers; a replica does not.
    let built = within(
        "build",
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("bf:")
            .response_timeout(Duration::from_millis(500))
            .build(),
    )
    .await;
    let store = built.unwrap_or_else(|e| panic!("build failed with every master up: {e:?}"));
    store.set("k", "v".into(), SetOptions::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_builds_just_after_a_replica_died() {
    let mut cluster = RedisCluster::start();
    let (_, replicas) = roles(&cluster);
    let urls = cluster.urls();
    cluster.nodes[replicas[0]].stop();
    // The seeds still name the dead replica, as a static configuration would.
    let built = within("build", RedisStore::<String>::cluster_builder(urls).prefix("bd:").build()).await;
    let store = built.unwrap_or_else(|e| panic!("build failed with every master up: {e:?}"));
    store.set("k", "v".into(), SetOptions::new()).await.unwrap();
}

/// Moves `slots` slots from the first master to the second (redis-cli reshard).
async fn reshard(cluster: &RedisCluster, slots: usize) {
    let (masters, _) = roles(cluster);
    reshard_between(cluster, masters[0], masters[1], slots).await;
}

/// Moves `slots` slots from node `from` to node `to` (redis-cli reshard).
async fn reshard_between(cluster: &RedisCluster, from: usize, to: usize, slots: usize) {
    let masters = [from, to];
    let id = |i: usize| RedisCluster::cli(cluster.nodes[i].port(), &["CLUSTER", "MYID"]).trim().to_string();
    let (from, to) = (id(masters[0]), id(masters[1]));
    let from_port = cluster.nodes[masters[0]].port();
    let slots = slots.to_string();
    let out = within_for(
        "the reshard",
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("redis-cli")
                .args(["--cluster", "reshard", &format!("127.0.0.1:{from_port}")])
                .args(["--cluster-from", &from, "--cluster-to", &to, "--cluster-slots", &slots, "--cluster-yes"])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("cannot run redis-cli")
        }),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stderr));
    cluster.wait_until_ok(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_refresh_follows_slots_that_moved() {
    let cluster = RedisCluster::start();
    let store = Arc::new(RedisStore::<String>::cluster_builder(cluster.urls()).prefix("gr:").build().await.unwrap());
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(60));
    for i in 0..100 {
        let v = store
            .get_or_refresh(&format!("k{i}"), move || async move { Ok::<_, std::io::Error>(format!("v{i}")) }, &options)
            .await
            .unwrap();
        assert_eq!(v, format!("v{i}"));
    }
    reshard(&cluster, 5461).await;
    let mut failures = Vec::new();
    for i in 0..100 {
        match store
            .get_or_refresh(&format!("k{i}"), || async { Ok::<_, std::io::Error>("reloaded".to_string()) }, &options)
            .await
        {
            Ok(v) => assert_eq!(v, format!("v{i}"), "a fresh entry was loaded again"),
            Err(e) => failures.push(format!("k{i}: {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{} reads failed after the slots moved: {:#?}", failures.len(), failures.first());
}

/// Waits until every replica's link to its master is up (the first sync
/// happens a few seconds after the cluster is created).
async fn wait_for_replicas(cluster: &RedisCluster, replicas: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for &r in replicas {
        while !RedisCluster::cli(cluster.nodes[r].port(), &["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "replica {r} never synced");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The node index of a replica of the master at node index `master`.
fn replica_of(cluster: &RedisCluster, master: usize) -> usize {
    let id = RedisCluster::cli(cluster.nodes[master].port(), &["CLUSTER", "MYID"]).trim().to_string();
    let nodes = RedisCluster::cli(cluster.nodes[master].port(), &["CLUSTER", "NODES"]);
    let line = nodes.lines().find(|l| l.split(' ').nth(3) == Some(id.as_str())).expect("the master has a replica");
    let port: u16 =
        line.split(' ').nth(1).unwrap().split('@').next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    cluster.nodes.iter().position(|n| n.port() == port).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_fail_rather_than_skip_a_shard_that_is_down() {
    let mut cluster = RedisCluster::start();
    let store = RedisStore::<u32>::cluster_builder(cluster.urls())
        .prefix("down:")
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    for i in 0..300u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    let (masters, _) = roles(&cluster);
    let victim = masters[2];
    let replica = replica_of(&cluster, victim);
    cluster.nodes[replica].stop();
    cluster.nodes[victim].stop();
    // Long enough for the cluster to mark the shard failed (nobody can take over).
    tokio::time::sleep(Duration::from_secs(4)).await;
    for round in 0..5 {
        match store.keys(None).await {
            Ok(keys) => assert_eq!(keys.len(), 300, "round {round}: keys skipped a shard that is down"),
            Err(CacheError::Backend { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
        match store.size().await {
            Ok(n) => assert_eq!(n, 300, "round {round}: size skipped a shard that is down"),
            Err(CacheError::Backend { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
        match store.invalidate("k1*").await {
            Ok(n) => panic!("round {round}: invalidate reported success ({n}) with a shard down"),
            Err(CacheError::Backend { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_connections_are_reopened_without_failing_calls() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("ck:")
            .policy(LruPolicy::new(1000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    for round in 1..4 {
        for node in &cluster.nodes {
            RedisCluster::cli(node.port(), &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        }
        every_call(&store, round).await;
        assert!(store.keys(None).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_on_two_instances_through_a_failover() {
    let mut cluster = RedisCluster::start();
    let make = || async {
        Arc::new(
            RedisStore::<String>::cluster_builder(cluster.urls())
                .prefix("rf:")
                .response_timeout(Duration::from_millis(500))
                .lock_lease(Duration::from_secs(2))
                .build()
                .await
                .unwrap(),
        )
    };
    let (a, b) = (make().await, make().await);
    let options = RefreshOptions::new(TokioRuntime, Duration::from_millis(200), Duration::from_secs(120))
        .timeouts(Some(Duration::from_secs(1)), Some(Duration::from_secs(2)))
        .retry_after(Duration::from_millis(200));
    let generation = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = if t % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let (options, generation, stop) = (options.clone(), Arc::clone(&generation), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..30 {
                    let generation = Arc::clone(&generation);
                    let r = s
                        .get_or_refresh(
                            &format!("k{i}"),
                            move || async move {
                                let g = generation.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, std::io::Error>(format!("g{g}"))
                            },
                            &options,
                        )
                        .await;
                    match r {
                        Ok(v) => assert!(v.starts_with('g'), "{v}"),
                        Err(CacheError::Backend { .. }) => errors += 1,
                        Err(other) => panic!("{other:?}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (masters, replicas) = roles(&cluster);
    wait_for_replicas(&cluster, &replicas).await;
    cluster.nodes[masters[0]].stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.wait_until_ok(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let errors = within("a refresher", t).await.unwrap();
        eprintln!("{errors} backend errors");
    }
    // After the failover, every key is refreshed again within a few leases.
    let before = generation.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..30 {
        let key = format!("k{i}");
        loop {
            let seen = a.get(&key).await;
            let g = generation.clone();
            let r = a
                .get_or_refresh(
                    &key,
                    move || async move { Ok::<_, std::io::Error>(format!("g{}", g.fetch_add(1, Ordering::SeqCst))) },
                    &options,
                )
                .await;
            if let (Ok(Some(old)), Ok(_)) = (&seen, &r) {
                let n: usize = old[1..].parse().unwrap();
                if n >= before {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{key} was not refreshed after the failover: {seen:?} {r:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_timeouts_work_on_a_cluster() {
    let cluster = RedisCluster::start();
    let store = within(
        "build",
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("max:")
            .policy(LruPolicy::new(100).unwrap())
            .response_timeout(Duration::MAX)
            .connect_timeout(Duration::MAX)
            .lock_lease(Duration::MAX)
            .build(),
    )
    .await
    .unwrap();
    within("calls", async {
        every_call(&Arc::new(store), 0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_reloaded_right_after_a_replica_died() {
    let mut cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("fl2:")
            .policy(LruPolicy::new(1000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    let (masters, replicas) = roles(&cluster);
    for &r in &replicas {
        cluster.nodes[r].stop();
    }
    for &m in &masters {
        assert_eq!(RedisCluster::cli(cluster.nodes[m].port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    let mut failures = Vec::new();
    for i in 0..50 {
        if let Err(e) = store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await {
            failures.push(format!("k{i}: {e:?}"));
        }
    }
    assert!(failures.is_empty(), "{} sets failed with every master up: {:#?}", failures.len(), failures.first());
}

fn scan_calls(port: u16) -> u64 {
    let stats = RedisCluster::cli(port, &["INFO", "commandstats"]);
    stats
        .lines()
        .find(|l| l.starts_with("cmdstat_scan:"))
        .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_rebuild_walks_only_the_master_that_holds_it() {
    let cluster = RedisCluster::start();
    let n = 16;
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("rb:")
        .buckets(n)
        .policy(LruPolicy::new(1000).unwrap())
        .build()
        .await
        .unwrap();
    let (masters, _) = roles(&cluster);
    for &m in &masters {
        RedisCluster::cli(cluster.nodes[m].port(), &["CONFIG", "RESETSTAT"]);
    }
    // The first set in each bucket finds no index and rebuilds it: from its
    // slot's own key list (a few keys), so no master is walked at all.
    for i in 0..200 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    for &m in &masters {
        let calls = scan_calls(cluster.nodes[m].port());
        assert_eq!(calls, 0, "master {m} was walked {calls} times by the rebuilds of new buckets");
    }
    assert_eq!(store.size().await.unwrap(), 200);
    assert_eq!(store.keys(None).await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_rebuild_after_its_slot_moved_adopts_every_entry() {
    let cluster = RedisCluster::start();
    let (n, cap) = (4, 40);
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("st:")
        .buckets(n)
        .policy(LruPolicy::new(cap).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let tag = tag_of(0, n);
    let from = cluster.master_of(slot(format!("st:{tag}").as_bytes()));
    let (masters, _) = roles(&cluster);
    let to = *masters.iter().find(|&&m| m != from).unwrap();
    // Every slot of bucket 0's master moves; the store does not call in between.
    reshard_between(&cluster, from, to, 5461).await;
    let mut conn = raw(&cluster).await;
    let index = [b"st:".as_slice(), tag.as_bytes(), b"\xfflru"].concat();
    let removed: i64 = redis::cmd("DEL").arg(&index).query_async(&mut conn).await.unwrap();
    assert_eq!(removed, 1);
    let key = (0..).map(|i| format!("n{i}")).find(|k| bucket_of(k, n) == 0).unwrap();
    store.set(&key, "new".into(), SetOptions::new()).await.unwrap();
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    let entries =
        raw_keys(&cluster, format!("st:{tag}").as_bytes()).await.into_iter().filter(|k| !k.contains(&0xff)).count();
    assert_eq!(members.iter().filter(|m| !m.is_empty()).count(), entries, "bucket 0's rebuilt index lists every entry");
    assert_eq!(entries, cap / n, "bucket 0 is back to its share");
    assert_eq!(store.size().await.unwrap(), store.keys(None).await.unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_count_record_survives_allkeys_lru_eviction() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("ev:")
        .buckets(8)
        .policy(LruPolicy::new(1000).unwrap())
        .build()
        .await
        .unwrap();
    let master = cluster.master_of(slot(b"ev:\xffbuckets"));
    let port = cluster.nodes[master].port();
    let used: u64 = RedisCluster::cli(port, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    RedisCluster::cli(port, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    RedisCluster::cli(port, &["CONFIG", "SET", "maxmemory", &(used + 4_000_000).to_string()]);
    // The store is in use: its entries are read and written all along.
    let tag = (0..).map(|i| format!("f{i}")).find(|t| cluster.master_of(slot(t.as_bytes())) == master).unwrap();
    let mut conn = raw(&cluster).await;
    let filler = "x".repeat(4096);
    for i in 0..4000 {
        let _: () = redis::cmd("SET").arg(format!("{{{tag}}}:{i}")).arg(&filler).query_async(&mut conn).await.unwrap();
        if i % 20 == 0 {
            store.set(&format!("k{}", i % 200), "v".into(), SetOptions::new()).await.unwrap();
            let _ = store.get(&format!("k{}", (i + 7) % 200)).await.unwrap();
        }
    }
    // A running store writes the record again within a second of a write.
    for i in 0..15 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("ev:")
        .buckets(4)
        .policy(LruPolicy::new(1000).unwrap())
        .build()
        .await;
    assert!(
        matches!(other, Err(CacheError::Policy(_))),
        "a different bucket count was accepted after eviction: {other:?}"
    );
    // A process with another count that got in while the record was gone:
    // the running store finds the other count at its next check and stops
    // serving, with a Policy error, rather than share the prefix in two layouts.
    let _: () = redis::cmd("DEL").arg(b"ev:\xffbuckets".as_slice()).query_async(&mut conn).await.unwrap();
    let intruder = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("ev:")
        .buckets(4)
        .policy(LruPolicy::new(1000).unwrap())
        .build()
        .await
        .expect("the record was gone: nothing to refuse it");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.set("after", "v".into(), SetOptions::new()).await {
            Err(CacheError::Policy(message)) => {
                assert!(message.contains("buckets(4)"), "{message}");
                break;
            }
            Ok(()) => assert!(Instant::now() < deadline, "the store kept serving beside another bucket count"),
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(store.get("k1").await, Err(CacheError::Policy(_))), "every call fails from then on");
    intruder.set("x", "v".into(), SetOptions::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_work_when_the_cluster_announces_hostnames() {
    let cluster = RedisCluster::start();
    for node in &cluster.nodes {
        assert_eq!(
            RedisCluster::cli(node.port(), &["CONFIG", "SET", "cluster-announce-hostname", "localhost"]).trim(),
            "OK"
        );
        assert_eq!(
            RedisCluster::cli(node.port(), &["CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname"]).trim(),
            "OK"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let store = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix("hn:").build().await.unwrap();
    for i in 0..100u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.keys(None).await.unwrap().len(), 100);
    assert_eq!(store.size().await.unwrap(), 100);
    assert_eq!(store.invalidate("k1*").await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_work_when_the_cluster_announces_unknown_endpoints() {
    let cluster = RedisCluster::start();
    for node in &cluster.nodes {
        assert_eq!(
            RedisCluster::cli(node.port(), &["CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint"])
                .trim(),
            "OK"
        );
    }
    let slots = RedisCluster::cli(cluster.nodes[0].port(), &["CLUSTER", "SLOTS"]);
    eprintln!("CLUSTER SLOTS:\n{slots}");
    // Reached through one node, as behind a single endpoint.
    let store = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix("ue:").build().await.unwrap();
    for i in 0..100u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.keys(None).await.unwrap().len(), 100);
    assert_eq!(store.size().await.unwrap(), 100);
    assert_eq!(store.invalidate("k1*").await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_password_works_everywhere() {
    let password = "s3cret-pw";
    let nodes: Vec<common::RedisServer> = (0..6)
        .map(|_| {
            common::RedisServer::start_with_args(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "{dir}/nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--requirepass",
                password,
                "--masterauth",
                password,
            ])
        })
        .collect();
    let mut create = std::process::Command::new("redis-cli");
    create.args(["-a", password, "--no-auth-warning", "--cluster", "create"]);
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port()));
    }
    create.args(["--cluster-replicas", "1", "--cluster-yes"]);
    let out = create.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://:{password}@127.0.0.1:{}", n.port())).collect();
    // Wait for the cluster to be ok.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = nodes.iter().all(|n| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &n.port().to_string(), "-a", password, "--no-auth-warning", "CLUSTER", "INFO"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
        });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not become ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Only one seed: the client learns the other nodes and must log in to them too.
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(vec![urls[0].clone()])
            .prefix("pw:")
            .policy(LruPolicy::new(1000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    every_call(&store, 0).await;
    assert_eq!(store.keys(Some("r0:*")).await.unwrap().len(), 0);
    store.set("x", "y".into(), SetOptions::new()).await.unwrap();
    assert!(store.keys(None).await.unwrap().contains(&"x".to_string()));
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
    // A wrong password is a backend error naming no password.
    let wrong = RedisStore::<String>::cluster_builder(vec![format!("redis://:nope-pw@127.0.0.1:{}", nodes[0].port())])
        .prefix("pw:")
        .build()
        .await;
    match wrong {
        Err(e @ CacheError::Backend { .. }) => {
            let text = format!("{e:?} {e}");
            assert!(!text.contains("nope-pw"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_buckets_count_and_walk_within_the_default_timeouts() {
    let cluster = RedisCluster::start();
    let n = 4096;
    let started = Instant::now();
    let store = within_for(
        "build",
        Duration::from_secs(120),
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("many:")
            .buckets(n)
            .policy(LruPolicy::new(2 * n).unwrap())
            .build(),
    )
    .await
    .unwrap();
    eprintln!("build with {n} buckets: {:?}", started.elapsed());
    for i in 0..500 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    let per_bucket = |i: usize| (0..500).filter(|&k| bucket_of(&format!("k{k}"), n) == i).count().min(2);
    let expected: usize = (0..n).map(per_bucket).sum();
    for _ in 0..3 {
        assert_eq!(store.size().await.unwrap(), expected);
    }
    assert_eq!(store.keys(None).await.unwrap().len(), expected);
    assert!(store.invalidate("k1*").await.unwrap() > 0);
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_store_on_a_standalone_redis_is_refused() {
    let server = common::RedisServer::start();
    let built = within("build", RedisStore::<String>::cluster_builder(vec![server.url()]).prefix("sa:").build()).await;
    match built {
        Err(CacheError::Backend { .. } | CacheError::Policy(_)) => {}
        Ok(store) => {
            // If it builds, it must work as a store.
            store.set("k", "v".into(), SetOptions::new()).await.unwrap();
            assert_eq!(store.keys(None).await.unwrap(), vec!["k".to_string()]);
        }
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_work_again_after_a_hung_master_was_replaced() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("hung:")
            .policy(LruPolicy::new(1000).unwrap())
            .response_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap(),
    );
    for i in 0..100 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    let (masters, replicas) = roles(&cluster);
    wait_for_replicas(&cluster, &replicas).await;
    for &m in &masters {
        RedisCluster::cli(cluster.nodes[m].port(), &["WAIT", "1", "2000"]);
    }
    let hung = masters[0];
    let _thaw = Thaw(cluster.nodes[hung].pid());
    signal(cluster.nodes[hung].pid(), "STOP");
    // The other nodes replace it: wait until a node that answers reports every slot served.
    let watcher = cluster.nodes[masters[1]].port();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !RedisCluster::cli(watcher, &["CLUSTER", "INFO"]).contains("cluster_slots_ok:16384") {
        assert!(Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still hung: the store gets going again on the new layout.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streak = 0;
    let mut last = String::new();
    while streak < 10 {
        let ok = async {
            assert_eq!(store.keys(None).await?.len(), 100);
            assert_eq!(store.size().await?, 100);
            store.set("probe", "p".into(), SetOptions::new()).await?;
            store.delete("probe").await?;
            Ok::<_, CacheError>(())
        }
        .await;
        match ok {
            Ok(()) => streak += 1,
            Err(e) => {
                streak = 0;
                last = format!("{e:?}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "walks did not work 10 times in a row after the failover; last error: {last}"
        );
    }
    every_call(&store, 1).await;
    assert_eq!(store.invalidate("r1:*").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_during_a_slot_migration_keep_every_moved_entry_indexed() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("mig:")
        .buckets(1)
        .policy(LruPolicy::new(50).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    // An entry with a TTL: the expiry index exists (a script whose declared
    // keys are all on the source runs there during the migration).
    store.set("t", "t".into(), SetOptions::new().ttl(Duration::from_secs(3600))).await.unwrap();
    let Migration { tag, slot: s, source, target, target_id, mut src, mut dst } =
        start_migration(&cluster, "mig:").await;
    let migrate = |keys: Vec<Vec<u8>>| {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1").arg(cluster.nodes[target].port()).arg("").arg(0).arg(5000).arg("KEYS");
        for k in keys {
            cmd.arg(k);
        }
        cmd
    };
    // Part of the entries move (redis-cli moves a slot's keys in their
    // sorted order: entries before the `\xff` index keys).
    let moved: Vec<Vec<u8>> = (1..20).map(|i| format!("mig:{tag}k{i}").into_bytes()).collect();
    let _: () = migrate(moved).query_async(&mut src).await.unwrap();
    // Updates of an entry still on the source run there, with the indexes.
    let mut errors = 0;
    for round in 0..80 {
        if let Err(e) = store.set("k0", format!("w{round}"), SetOptions::new()).await {
            if errors == 0 {
                eprintln!("an update during the migration: {e:?}");
            }
            errors += 1;
        }
    }
    eprintln!("{errors} failed updates during the migration");
    // The rest moves, and the slot is the target's.
    finish_migration(&cluster, &mut src, s, source, target, &target_id).await;
    let index = [b"mig:".as_slice(), tag.as_bytes(), b"\xfflru"].concat();
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut dst).await.unwrap();
    let members = members.iter().filter(|m| !m.is_empty()).count();
    let keys = store.keys(None).await.unwrap();
    assert_eq!(keys.len(), 21, "every entry is still there");
    assert_eq!(members, 21, "entries that had moved were dropped from the index while the slot migrated");
    assert_eq!(store.size().await.unwrap(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_during_a_slot_migration_keeps_the_capacity() {
    let cluster = RedisCluster::start();
    let cap = 21;
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("mev:")
            .buckets(1)
            .policy(LruPolicy::new(cap).unwrap())
            .build()
            .await
            .unwrap(),
    );
    // Full: k0 is the least recently used; k20 has a TTL (the expiry index exists).
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    store.set("k20", "v20".into(), SetOptions::new().ttl(Duration::from_secs(3600))).await.unwrap();
    // A load of a new key holds its placeholder.
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let load = {
        let (store, started, release) = (Arc::clone(&store), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "p",
                    || async move {
                        started.notify_one();
                        release.notified().await;
                        "loaded".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    within("the loader", started.notified()).await;
    // The bucket's slot starts migrating; the least recently used entry has moved.
    let Migration { tag, slot: s, source, target, target_id, mut src, .. } = start_migration(&cluster, "mev:").await;
    let migrate = |keys: Vec<Vec<u8>>| {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1").arg(cluster.nodes[target].port()).arg("").arg(0).arg(5000).arg("KEYS");
        for k in keys {
            cmd.arg(k);
        }
        cmd
    };
    let _: () = migrate(vec![format!("mev:{tag}k0").into_bytes()]).query_async(&mut src).await.unwrap();
    // A set of the key being loaded: its declared keys are all on the source.
    let during = store.set("p", "set".into(), SetOptions::new()).await;
    eprintln!("the set during the migration: {during:?}");
    // The migration ends.
    finish_migration(&cluster, &mut src, s, source, target, &target_id).await;
    release.notify_one();
    let _ = within("the load", load).await.unwrap();
    store.set("after", "a".into(), SetOptions::new()).await.unwrap();
    let keys = store.keys(None).await.unwrap();
    let size = store.size().await.unwrap();
    assert!(keys.len() <= cap, "{} entries over a capacity of {cap}: {:?}", keys.len(), sorted(keys.clone()));
    assert_eq!(size, keys.len(), "the index lost an entry that still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_under_lru_succeed_while_their_bucket_migrates() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("mrd:")
        .buckets(1)
        .policy(LruPolicy::new(100).unwrap())
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let plain = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("mrd:").buckets(1).build().await.unwrap();
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let Migration { tag, target, mut src, .. } = start_migration(&cluster, "mrd:").await;
    // Half the entries have moved, the indexes not yet (redis-cli's order).
    migrate_keys(&cluster, &mut src, target, (10..20).map(|i| format!("mrd:{tag}k{i}"))).await;
    let mut failures = Vec::new();
    for i in [0, 15] {
        let key = format!("k{i}");
        // A store without a capacity reads them all (plain GET follows ASK).
        assert_eq!(plain.get(&key).await.unwrap(), Some(format!("v{i}")));
        match store.get(&key).await {
            Ok(v) => assert_eq!(v, Some(format!("v{i}"))),
            Err(e) => {
                failures.push(format!("get {key}: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string())))
            }
        }
        match store.contains(&key).await {
            Ok(found) => assert!(found),
            Err(e) => failures.push(format!("contains {key}: {e}")),
        }
    }
    assert!(failures.is_empty(), "reads failed while the bucket's slot migrated: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_without_a_capacity_succeed_while_their_bucket_migrates() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("mdl:")
        .buckets(1)
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let Migration { tag, target, mut src, .. } = start_migration(&cluster, "mdl:").await;
    migrate_keys(&cluster, &mut src, target, (10..20).map(|i| format!("mdl:{tag}k{i}"))).await;
    let mut failures = Vec::new();
    for i in [0, 15] {
        let key = format!("k{i}");
        assert_eq!(store.get(&key).await.unwrap(), Some(format!("v{i}")), "plain reads follow the migration");
        store.set(&key, "w".into(), SetOptions::new()).await.unwrap();
        match store.delete(&key).await {
            Ok(existed) => assert!(existed),
            Err(e) => {
                failures.push(format!("delete {key}: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string())))
            }
        }
    }
    assert!(failures.is_empty(), "deletes failed while the bucket's slot migrated: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_without_a_capacity_succeed_while_their_bucket_migrates() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("mld:")
            .buckets(1)
            .response_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap(),
    );
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(60));
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let Migration { tag, target, mut src, .. } = start_migration(&cluster, "mld:").await;
    migrate_keys(&cluster, &mut src, target, (10..20).map(|i| format!("mld:{tag}k{i}"))).await;
    let mut failures = Vec::new();
    for key in ["k0", "k15", "new1", "new2"] {
        match store.get_or_set(key, || async { "loaded".to_string() }, SetOptions::new()).await {
            Ok(_) => {}
            Err(e) => failures
                .push(format!("get_or_set {key}: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string()))),
        }
    }
    for key in ["k1", "k16", "new3"] {
        let r = store.get_or_refresh(key, || async { Ok::<_, std::io::Error>("loaded".to_string()) }, &options).await;
        if let Err(e) = r {
            failures
                .push(format!("get_or_refresh {key}: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string())));
        }
    }
    assert!(failures.is_empty(), "loads failed while the bucket's slot migrated: {failures:#?}");
}

/// Under an LruPolicy, `get_or_refresh` reads through a script (it marks the
/// entry used): while the bucket's slot migrates Redis refuses it, and the
/// store falls back to the plain read, for keys still on the source and
/// keys already moved alike (a review finding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_refresh_reads_succeed_while_their_bucket_migrates() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("mlr:")
            .buckets(1)
            .policy(LruPolicy::new(100).unwrap())
            .response_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap(),
    );
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(60));
    for i in 0..20 {
        let value = format!("v{i}");
        store
            .get_or_refresh(&format!("k{i}"), move || async move { Ok::<_, std::io::Error>(value) }, &options)
            .await
            .unwrap();
    }
    let Migration { tag, target, mut src, .. } = start_migration(&cluster, "mlr:").await;
    migrate_keys(&cluster, &mut src, target, (10..20).map(|i| format!("mlr:{tag}k{i}"))).await;
    let mut failures = Vec::new();
    for i in [0, 5, 15, 19] {
        let key = format!("k{i}");
        let never = || async { Ok::<_, std::io::Error>("reloaded".to_string()) };
        match store.get_or_refresh(&key, never, &options).await {
            Ok(value) => assert_eq!(value, format!("v{i}"), "{key}: fresh, so the stored value"),
            Err(e) => failures.push(format!("{key}: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string()))),
        }
    }
    assert!(failures.is_empty(), "LRU get_or_refresh failed while the bucket's slot migrated: {failures:#?}");
}

/// A slot left migrating (a reshard interrupted half-way) keeps its keys on
/// two masters: a walk waits for the migration to end, and when it does not
/// end, fails with a backend error saying so, rather than list or delete a
/// part of the keys. Single-key calls keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_fails_rather_than_miss_keys_of_a_slot_left_migrating() {
    let cluster = RedisCluster::start();
    let store =
        RedisStore::<String>::cluster_builder(cluster.urls()).prefix("stuck:").buckets(1).build().await.unwrap();
    for i in 0..20 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    let Migration { tag, target, mut src, .. } = start_migration(&cluster, "stuck:").await;
    migrate_keys(&cluster, &mut src, target, (10..20).map(|i| format!("stuck:{tag}k{i}"))).await;
    let started = Instant::now();
    for (what, outcome) in
        [("keys", store.keys(None).await.map(|k| k.len())), ("invalidate", store.invalidate("k*").await)]
    {
        match outcome {
            Err(CacheError::Backend { message, .. }) => {
                assert!(message.contains("kept moving"), "{what}: {message}")
            }
            other => panic!("{what} during a migration that never ends: {other:?}"),
        }
    }
    eprintln!("two walks gave up after {:?}", started.elapsed());
    // Nothing was deleted, and every key still reads (GET follows ASK).
    for i in 0..20 {
        assert_eq!(store.get(&format!("k{i}")).await.unwrap(), Some(format!("v{i}")));
    }
}
