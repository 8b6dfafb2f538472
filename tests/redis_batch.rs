//! The batch calls on Redis beyond the shared suite (tests/store_suite/batch.rs):
//! a batch is one round trip on a single Redis, counted by a proxy between
//! the store and the server; a batch spread over a cluster's masters; a
//! near cache's memory tier kept coherent through batches; a server gone
//! mid-call.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::stores::{NearCache, RedisStore};
use pepperpy_caching::{CacheError, CacheStore, LruPolicy, Policy, SetOptions};
use support::{RedisCluster, RedisServer, redis_store};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of a redis-server that counts round trips: a burst
/// of bytes from the client that follows an answer from the server (or
/// opens the connection) is one.
struct Proxy {
    port: u16,
    trips: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let trips = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&trips);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                let answered = Arc::new(AtomicBool::new(true));
                let (up_answered, trips) = (Arc::clone(&answered), Arc::clone(&counted));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(n @ 1..) = read(&from_client, &mut buf).await {
                        if up_answered.swap(false, Ordering::SeqCst) {
                            trips.fetch_add(1, Ordering::SeqCst);
                        }
                        if write_all(&to_server, &buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(n @ 1..) = read(&from_server, &mut buf).await {
                        // Before the bytes go on: the client's next request
                        // cannot arrive before this is marked.
                        answered.store(true, Ordering::SeqCst);
                        if write_all(&to_client, &buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, trips }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The round trips `f` makes.
    async fn trips_of<T>(&self, f: impl Future<Output = T>) -> (usize, T) {
        let before = self.trips.load(Ordering::SeqCst);
        let out = f.await;
        (self.trips.load(Ordering::SeqCst) - before, out)
    }
}

/// Reads what is there (tokio's `io-util` is not a dependency).
async fn read(from: &OwnedReadHalf, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

async fn write_all(to: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

/// get_many, set_many and delete_many of 100 keys each take one round trip
/// on a single Redis, unbounded (MGET, SETs, the delete script) and under
/// LRU (the read and bounded-set scripts); 100 single gets take 100.
#[tokio::test]
async fn a_batch_is_one_round_trip_on_a_single_redis() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let policies: [Option<Policy>; 2] = [None, Some(LruPolicy::new(10_000).unwrap().into())];
    for (i, policy) in policies.into_iter().enumerate() {
        let bounded = policy.is_some();
        let mut builder = RedisStore::<String>::builder(proxy.url()).prefix(format!("trips{i}:"));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        let store = builder.build().await.unwrap();
        // Warm up: the scripts loaded (the first use of a script Redis does
        // not know costs two more round trips: NOSCRIPT, SCRIPT LOAD), the index made.
        store.set("warm", "w".into(), SetOptions::new()).await.unwrap();
        store.get("warm").await.unwrap();
        store.delete("warm").await.unwrap();
        store.set_many(vec![("warm", "w".into())], SetOptions::new()).await.unwrap();
        store.get_many(&["warm"]).await.unwrap();
        store.delete_many(&["warm"]).await.unwrap();
        let keys = keys(100);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let entries = refs.iter().map(|k| (*k, k.to_uppercase())).collect();
        let ttl = SetOptions::new().ttl(Duration::from_secs(60));
        let (trips, done) = proxy.trips_of(store.set_many(entries, ttl)).await;
        done.unwrap();
        assert_eq!(trips, 1, "set_many of 100 (bounded: {bounded})");
        let (trips, got) = proxy.trips_of(store.get_many(&refs)).await;
        assert_eq!(trips, 1, "get_many of 100 (bounded: {bounded})");
        assert_eq!(got.unwrap(), keys.iter().map(|k| Some(k.to_uppercase())).collect::<Vec<_>>());
        let (trips, ()) = proxy
            .trips_of(async {
                for key in &refs {
                    store.get(key).await.unwrap();
                }
            })
            .await;
        assert_eq!(trips, 100, "100 single gets");
        let (trips, n) = proxy.trips_of(store.delete_many(&refs)).await;
        assert_eq!((trips, n.unwrap()), (1, 100), "delete_many of 100 (bounded: {bounded})");
        let stats = store.stats();
        assert_eq!((stats.hits, stats.sets, stats.deletes), (202, 102, 102), "{stats:?}");
        // Longer batches (several script calls, pipelined) are one round trip too.
        let keys = self::keys(2_500);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let entries = refs.iter().map(|k| (*k, k.to_string())).collect();
        let short = SetOptions::new().ttl(Duration::from_millis(500));
        let (trips, done) = proxy.trips_of(store.set_many(entries, short)).await;
        done.unwrap();
        assert_eq!(trips, 1, "set_many of 2,500 (bounded: {bounded})");
        let (trips, got) = proxy.trips_of(store.get_many(&refs)).await;
        assert_eq!(trips, 1, "get_many of 2,500 (bounded: {bounded})");
        assert!(got.unwrap().iter().all(Option::is_some));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(store.get_many(&refs).await.unwrap().iter().all(Option::is_none), "expired");
        if bounded {
            // The LRU script drops the index members of what Redis expired, counted as expirations.
            assert_eq!(store.stats().expirations, 2_500);
        }
    }
}

/// A batch over a cluster's masters: the keys spread over every bucket,
/// read, written and deleted in one call each, bounded and not.
#[tokio::test]
async fn a_batch_spans_every_master_of_a_cluster() {
    let cluster = RedisCluster::shared();
    for (i, policy) in [None, Some(Policy::from(LruPolicy::new(10_000).unwrap()))].into_iter().enumerate() {
        let mut builder = RedisStore::<String>::cluster_builder(cluster.urls()).prefix(format!("spread{i}:"));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        let store = builder.build().await.unwrap();
        let keys = keys(1_000);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        store.set_many(refs.iter().map(|k| (*k, k.to_string())).collect(), SetOptions::new()).await.unwrap();
        assert_eq!(store.size().await.unwrap(), 1_000);
        let spread = cluster.keys_per_master();
        assert!(spread.iter().all(|&(_, n)| n > 0), "every master holds some: {spread:?}");
        let got = store.get_many(&refs).await.unwrap();
        assert_eq!(got, keys.iter().map(|k| Some(k.clone())).collect::<Vec<_>>());
        assert_eq!(store.delete_many(&refs).await.unwrap(), 1_000);
        assert_eq!(store.size().await.unwrap(), 0);
        let stats = store.stats();
        assert_eq!((stats.hits, stats.sets, stats.deletes), (1_000, 1_000, 1_000), "{stats:?}");
    }
}

/// The near cache's memory tier through batches: a get_many fills memory
/// with what Redis gave; a batch write on another instance takes its keys
/// out of this one's memory; a batch answers from memory what it holds.
#[tokio::test]
async fn a_near_cache_stays_coherent_through_batches() {
    let server = RedisServer::start();
    let near = || NearCache::<String>::builder(server.url()).prefix("nb:").build();
    let (a, b) = (near().await.unwrap(), near().await.unwrap());
    a.set_many(vec![("x", "1".into()), ("y", "2".into())], SetOptions::new()).await.unwrap();
    assert!(!a.in_memory("x"), "a write fills no memory");
    assert_eq!(b.get_many(&["x", "y", "z"]).await.unwrap(), [Some("1".into()), Some("2".into()), None]);
    assert!(b.in_memory("x") && b.in_memory("y"), "the misses filled memory");
    let redis_gets = |s: &NearCache<String>| s.stats().hits + s.stats().misses;
    let before = redis_gets(&b);
    assert_eq!(b.get_many(&["y", "x"]).await.unwrap(), [Some("2".into()), Some("1".into())]);
    assert_eq!(b.memory_stats().hits, 2, "answered from memory");
    assert_eq!(redis_gets(&b), before + 2, "each key counted once");
    a.set_many(vec![("x", "new".into())], SetOptions::new()).await.unwrap();
    b.sync().await.unwrap();
    assert!(!b.in_memory("x") && b.in_memory("y"), "the other instance's write took x out");
    assert_eq!(b.get_many(&["x", "y"]).await.unwrap(), [Some("new".into()), Some("2".into())]);
    assert_eq!(a.delete_many(&["x", "y", "x"]).await.unwrap(), 2);
    b.sync().await.unwrap();
    assert!(!b.in_memory("x") && !b.in_memory("y"));
    assert_eq!(b.get_many(&["x", "y"]).await.unwrap(), [None, None]);
    // A batch write on this instance takes its own keys out too.
    b.set("own", "1".into(), SetOptions::new()).await.unwrap();
    b.get("own").await.unwrap();
    assert!(b.in_memory("own"));
    b.set_many(vec![("own", "2".into())], SetOptions::new()).await.unwrap();
    assert!(!b.in_memory("own"));
    assert_eq!(b.get_many(&["own"]).await.unwrap(), [Some("2".into())]);
}

/// A server gone: every batch fails with a backend error (never a panic,
/// never a hang past the timeout) and counts nothing; back, they work.
#[tokio::test]
async fn a_batch_on_a_server_gone_fails_and_counts_nothing() {
    let mut server = RedisServer::start();
    for policy in [None, Some(LruPolicy::new(100).unwrap().into())] {
        let store: RedisStore<String> = redis_store(&server, "gone:", policy).await;
        store.set_many(vec![("a", "1".into())], SetOptions::new()).await.unwrap();
        let before = store.stats();
        server.stop();
        let r = store.get_many(&["a", "b"]).await;
        assert!(matches!(r, Err(CacheError::Backend { .. })), "{r:?}");
        let r = store.set_many(vec![("a", "2".into()), ("b", "2".into())], SetOptions::new()).await;
        assert!(matches!(r, Err(CacheError::Backend { .. })), "{r:?}");
        let r = store.delete_many(&["a"]).await;
        assert!(matches!(r, Err(CacheError::Backend { .. })), "{r:?}");
        assert_eq!(store.stats(), before, "failed batches count nothing");
        server.restart();
        support::within("the store reconnects", async {
            while store.get_many(&["a"]).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

/// A server that hangs mid-use (SIGSTOP): a batch fails with a timeout
/// within about the response timeout, counts nothing, and once the server
/// answers again the store works; what a failed set_many wrote is whole
/// entries only (each key holds its old value or the batch's).
#[tokio::test]
async fn a_batch_on_a_hung_server_times_out_and_leaves_whole_entries() {
    let server = RedisServer::start();
    for (i, policy) in [None, Some(Policy::from(LruPolicy::new(10_000).unwrap()))].into_iter().enumerate() {
        let mut builder = RedisStore::<String>::builder(server.url())
            .prefix(format!("hung{i}:"))
            .response_timeout(Duration::from_millis(300));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        let store = builder.build().await.unwrap();
        let keys = keys(500);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        store.set_many(refs.iter().map(|k| (*k, "old".to_string())).collect(), SetOptions::new()).await.unwrap();
        let before = store.stats();
        {
            let _frozen = support::Frozen::freeze(server.pid());
            let started = std::time::Instant::now();
            let r = store.set_many(refs.iter().map(|k| (*k, "new".to_string())).collect(), SetOptions::new()).await;
            assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
            let r = store.get_many(&refs).await;
            assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
            assert!(started.elapsed() < Duration::from_secs(5), "bounded by the timeout: {:?}", started.elapsed());
        }
        assert_eq!(store.stats(), before, "failed batches count nothing");
        // The set_many sent before the freeze may or may not have been applied: whole entries either way.
        let got = support::within("the store answers again", async {
            loop {
                if let Ok(got) = store.get_many(&refs).await {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(got.iter().all(|v| matches!(v.as_deref(), Some("old" | "new"))), "{got:?}");
    }
}

/// The speed of a batch against single calls, in memory and on a single
/// Redis: `cargo test --release --features redis,tokio --test redis_batch
/// -- --ignored --nocapture`. Prints ns per key; asserts nothing about speed.
#[tokio::test]
#[ignore]
async fn measure_get_many_against_single_gets() {
    use pepperpy_caching::{S3FifoPolicy, stores::MemoryStore};
    use std::time::Instant;
    let keys = keys(100);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let entries = || refs.iter().map(|k| (*k, k.to_string())).collect::<Vec<_>>();
    for (name, policy, shards) in [
        ("memory LRU", Policy::from(LruPolicy::new(10_000).unwrap()), 1),
        ("memory S3-FIFO, 8 shards", Policy::from(S3FifoPolicy::new(10_000).unwrap()), 8),
    ] {
        let store = MemoryStore::<String>::builder(policy).shards(shards).build();
        store.set_many(entries(), SetOptions::new()).await.unwrap();
        let rounds = 20_000;
        let (mut single, mut batch) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..rounds {
                for key in &refs {
                    std::hint::black_box(store.get(key).into_inner().unwrap());
                }
            }
            single = single.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(store.get_many(&refs).into_inner().unwrap());
            }
            batch = batch.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
        }
        println!("{name}: 100 gets {single:.1} ns/key, get_many(100) {batch:.1} ns/key, ratio {:.2}", single / batch);
    }
    // Values that allocate nothing when cloned: the batch's own cost.
    let store = MemoryStore::<u64>::new(LruPolicy::new(10_000).unwrap());
    store.set_many(refs.iter().map(|k| (*k, 7)).collect(), SetOptions::new()).await.unwrap();
    let rounds = 20_000;
    let (mut single, mut batch) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..rounds {
            for key in &refs {
                std::hint::black_box(store.get(key).into_inner().unwrap());
            }
        }
        single = single.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(store.get_many(&refs).into_inner().unwrap());
        }
        batch = batch.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
    }
    println!(
        "memory LRU, u64 values: 100 gets {single:.1} ns/key, get_many(100) {batch:.1} ns/key, ratio {:.2}",
        single / batch
    );
    let server = RedisServer::start();
    for (name, policy) in [("redis", None), ("redis LRU", Some(Policy::from(LruPolicy::new(10_000).unwrap())))] {
        let store: RedisStore<String> = redis_store(&server, "speed:", policy).await;
        store.set_many(entries(), SetOptions::new()).await.unwrap();
        let rounds = 50;
        let (mut single, mut batch) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..rounds {
                for key in &refs {
                    std::hint::black_box(store.get(key).await.unwrap());
                }
            }
            single = single.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(store.get_many(&refs).await.unwrap());
            }
            batch = batch.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
        }
        println!("{name}: 100 gets {single:.0} ns/key, get_many(100) {batch:.0} ns/key, ratio {:.1}", single / batch);
        let (mut single, mut batch) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..rounds {
                for (key, value) in entries() {
                    store.set(key, value, SetOptions::new()).await.unwrap();
                }
            }
            single = single.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
            let started = Instant::now();
            for _ in 0..rounds {
                store.set_many(entries(), SetOptions::new()).await.unwrap();
            }
            batch = batch.min(started.elapsed().as_nanos() as f64 / (rounds * 100) as f64);
        }
        println!("{name}: 100 sets {single:.0} ns/key, set_many(100) {batch:.0} ns/key, ratio {:.1}", single / batch);
        store.clear().await.unwrap();
    }
    // A cluster: 1,000 keys over 16 buckets (a pipeline each, all at once,
    // over 3 masters) against the same keys in 1 bucket (one pipeline to
    // one master), and 100 single gets.
    let cluster = RedisCluster::shared();
    let keys = self::keys(1_000);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut per_batch = Vec::new();
    for buckets in [16, 1] {
        let store = RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix(format!("speed{buckets}:"))
            .buckets(buckets)
            .build()
            .await
            .unwrap();
        store.set_many(refs.iter().map(|k| (*k, k.to_string())).collect(), SetOptions::new()).await.unwrap();
        let rounds = 20;
        let mut batch = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(store.get_many(&refs).await.unwrap());
            }
            batch = batch.min(started.elapsed().as_nanos() as f64 / rounds as f64 / 1e3);
        }
        let started = Instant::now();
        for key in &refs[..100] {
            std::hint::black_box(store.get(key).await.unwrap());
        }
        let single = started.elapsed().as_nanos() as f64 / 100.0 / 1e3;
        println!("cluster, {buckets} buckets: get_many(1,000) {batch:.0} us, a single get {single:.0} us");
        per_batch.push(batch);
        store.clear().await.unwrap();
    }
    println!("cluster: 16 buckets / 1 bucket, time of get_many(1,000): {:.2}", per_batch[0] / per_batch[1]);
}
