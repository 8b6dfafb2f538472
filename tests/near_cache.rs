//! NearCache across instances, on a real redis-server: two near caches on
//! one server, as two processes of a service would be. A write of any kind on
//! one takes the key out of the other's memory tier; a lost invalidation
//! connection empties the tier; memory never outlives the Redis TTL; racing
//! writers and invalidations during fills leave no stale value behind.
//!
//! Waits are bounded polls (`eventually`): they check that something happens,
//! never how fast (the benchmark in bench/near measures that).
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::stores::{MemoryStore, NearCache, RedisStore};
use pepperpy_caching::{CacheStore, LruPolicy, SetOptions};
use support::{RedisServer, meta};

const PREFIX: &str = "near:";
/// The longest a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);

async fn near(server: &RedisServer) -> NearCache<String> {
    NearCache::builder(server.url()).prefix(PREFIX).heartbeat(Duration::from_millis(200)).build().await.unwrap()
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads `key` through `cache` until its memory tier holds it (a read can
/// race the message of an earlier write, which refuses its fill).
async fn fill(cache: &NearCache<String>, key: &str) {
    eventually(&format!("{key} filled"), || async {
        cache.get(key).await.unwrap();
        cache.in_memory(key)
    })
    .await;
}

/// The ids of the clients with tracking on (`t` in CLIENT LIST's flags).
async fn tracking_clients(server: &RedisServer) -> Vec<u64> {
    let mut admin = server.admin().await;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin).await.unwrap();
    list.lines()
        .filter(|line| line.split(' ').any(|f| f.strip_prefix("flags=").is_some_and(|flags| flags.contains('t'))))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")).and_then(|id| id.parse().ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_kind_on_one_instance_empties_the_others_memory() {
    let server = RedisServer::start();
    let a = near(&server).await;
    let b = near(&server).await;
    assert!(a.is_coherent() && b.is_coherent());

    // A memory hit does not reach Redis.
    a.set("k", "v0".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    let redis_gets = b.stats().hits + b.stats().misses;
    let memory_hits = b.memory_stats().hits;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v0"));
    assert_eq!(b.memory_stats().hits, memory_hits + 1, "served from memory");
    assert_eq!(b.stats().hits + b.stats().misses, redis_gets + 1, "counted as one get");

    type Write = for<'c> fn(&'c NearCache<String>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'c>>;
    let writes: [(&str, Write, Option<&str>); 5] = [
        ("set", |c| Box::pin(async { c.set("k", "v1".into(), SetOptions::new()).await.unwrap() }), Some("v1")),
        (
            "update_metadata",
            |c| Box::pin(async { assert!(c.update_metadata("k", meta(serde_json::json!({"m": 1}))).await.unwrap()) }),
            Some("v1"),
        ),
        ("delete", |c| Box::pin(async { assert!(c.delete("k").await.unwrap()) }), None),
        ("invalidate", |c| Box::pin(async { assert_eq!(c.invalidate("[jk]").await.unwrap(), 1) }), None),
        ("clear", |c| Box::pin(async { c.clear().await.unwrap() }), None),
    ];
    for (what, write, after) in writes {
        // Every kind starts from the same state: "k" in Redis and in b's memory.
        if what != "update_metadata" {
            a.set("k", "v0".into(), SetOptions::new()).await.unwrap();
        }
        fill(&b, "k").await;
        write(&a).await;
        eventually(&format!("{what} on a reached b's memory"), || async { !b.in_memory("k") }).await;
        assert_eq!(b.get("k").await.unwrap().as_deref(), after, "{what}: b reads the new state");
    }

    // A value b read through get_or_set is in memory too, and a's write takes it out.
    a.set("g", "v0".into(), SetOptions::new()).await.unwrap();
    eventually("g filled by get_or_set", || async {
        let v = b.get_or_set("g", || async { unreachable!("g is in Redis") }, SetOptions::new()).await.unwrap();
        assert_eq!(v, "v0");
        b.in_memory("g")
    })
    .await;
    a.set("g", "v1".into(), SetOptions::new()).await.unwrap();
    eventually("a's set reached b", || async { !b.in_memory("g") }).await;
    // And a load on b writes: b itself never reads an older value after it.
    a.delete("g").await.unwrap();
    let loaded = b.get_or_set("g", || async { "loaded".to_string() }, SetOptions::new()).await.unwrap();
    assert_eq!(loaded, "loaded");
    assert_eq!(b.get("g").await.unwrap().as_deref(), Some("loaded"));
    eventually("b's load reached a", || async { a.get("g").await.unwrap().as_deref() == Some("loaded") }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_outside_any_near_cache_are_seen_too() {
    let server = RedisServer::start();
    let b = near(&server).await;
    let plain: RedisStore<String> = RedisStore::builder(server.url()).prefix(PREFIX).build().await.unwrap();
    let mut admin = server.admin().await;

    plain.set("k", "v0".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    plain.set("k", "v1".into(), SetOptions::new()).await.unwrap();
    eventually("a plain RedisStore's set", || async { !b.in_memory("k") }).await;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v1"));

    fill(&b, "k").await;
    let _: () = redis::cmd("DEL").arg("near:k").query_async(&mut admin).await.unwrap();
    eventually("a DEL from redis-cli", || async { !b.in_memory("k") }).await;

    plain.set("k", "v2".into(), SetOptions::new()).await.unwrap();
    plain.set("j", "j".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    fill(&b, "j").await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut admin).await.unwrap();
    eventually("FLUSHDB", || async { b.memory_len() == 0 }).await;
    assert_eq!(b.get("k").await.unwrap(), None);
    // The flush also took b's database marker: its next heartbeat empties
    // memory once more and marks the database again. Past that point:
    tokio::time::sleep(Duration::from_millis(3 * 200)).await;

    // Keys of another prefix leave memory alone.
    plain.set("k", "v3".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    let other: RedisStore<String> = RedisStore::builder(server.url()).prefix("other:").build().await.unwrap();
    other.set("k", "elsewhere".into(), SetOptions::new()).await.unwrap();
    other.clear().await.unwrap();
    // A marker write after them: once its message is in, theirs would have been too.
    plain.set("marker", "m".into(), SetOptions::new()).await.unwrap();
    fill(&b, "marker").await;
    plain.set("marker", "m2".into(), SetOptions::new()).await.unwrap();
    eventually("the marker's message", || async { !b.in_memory("marker") }).await;
    assert!(b.in_memory("k"), "writes under another prefix do not touch this one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_invalidation_connection_empties_memory_and_reads_go_to_redis_until_it_is_back() {
    let server = RedisServer::start();
    let a = near(&server).await;
    let before = tracking_clients(&server).await;
    let b = near(&server).await;
    let b_tracking: Vec<u64> = tracking_clients(&server).await.into_iter().filter(|id| !before.contains(id)).collect();
    assert_eq!(b_tracking.len(), 1, "b has one tracking connection");
    let mut admin = server.admin().await;

    a.set("k", "v0".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    // New connections cannot authenticate, so b's invalidation connection
    // stays down once killed (the connections already open keep working).
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("sesame").query_async(&mut admin).await.unwrap();
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(b_tracking[0]).query_async(&mut admin).await.unwrap();
    eventually("b notices", || async { !b.is_coherent() }).await;
    assert_eq!(b.memory_len(), 0, "memory was emptied as the loss was noticed");

    // While down: reads go to Redis and fill nothing. A write that b cannot
    // hear about is still seen.
    let _: () =
        redis::cmd("SET").arg("near:k").arg(r#"{"v":"behind b's back"}"#).query_async(&mut admin).await.unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("behind b's back"));
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("behind b's back"));
    assert_eq!(b.memory_len(), 0, "nothing is filled while down");

    // Back: tracking again, memory used again, and a's writes reach it again.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("").query_async(&mut admin).await.unwrap();
    eventually("b reconnects", || async { b.is_coherent() }).await;
    fill(&b, "k").await;
    a.set("k", "v1".into(), SetOptions::new()).await.unwrap();
    eventually("a's set reaches b after the reconnection", || async { !b.in_memory("k") }).await;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_empties_memory_and_nothing_old_is_served_after_it_restarts() {
    let mut server = RedisServer::start();
    let b = near(&server).await;
    b.set("k", "v0".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    server.stop();
    eventually("b notices the server is gone", || async { !b.is_coherent() }).await;
    assert_eq!(b.memory_len(), 0);
    assert!(b.get("k").await.is_err(), "no value from memory while the server is down");
    // A new, empty server on the same port: the old value must not come back.
    server.restart();
    eventually("b reconnects", || async { b.is_coherent() }).await;
    eventually("b reads through again", || async { b.get("k").await.is_ok() }).await;
    assert_eq!(b.get("k").await.unwrap(), None);
    b.set("k", "v1".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_never_outlives_the_redis_ttl() {
    // Redis's active expiry off: Redis deletes (and reports) an expired key
    // only when something touches it, so memory must expire on its own.
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"]);
    let mut admin = server.admin().await;
    let _: () = redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0).query_async(&mut admin).await.unwrap();
    let a = near(&server).await;
    let b = near(&server).await;
    let ttl = Duration::from_millis(600);
    a.set("k", "v".into(), SetOptions::new().ttl(ttl)).await.unwrap();
    fill(&b, "k").await;
    // Once Redis's TTL has passed, memory has let go of the key by itself.
    let pttl: i64 = redis::cmd("PTTL").arg("near:k").query_async(&mut admin).await.unwrap();
    tokio::time::sleep(Duration::from_millis(pttl.max(0) as u64 + 1)).await;
    assert!(!b.in_memory("k"), "the memory entry expired with its Redis key");
    let exists: usize = redis::cmd("DBSIZE").query_async(&mut admin).await.unwrap();
    // The key, and the database markers of the two caches.
    assert_eq!(exists, 1 + markers(&server).await.len(), "Redis still holds the expired key: nothing reported it");
    assert_eq!(b.get("k").await.unwrap(), None);

    // The memory policy's default TTL caps entries, also those without a Redis TTL.
    let capped: NearCache<String> = NearCache::builder(server.url())
        .prefix(PREFIX)
        .memory(MemoryStore::new(LruPolicy::new(100).unwrap().with_default_ttl(Duration::from_millis(300)).unwrap()))
        .build()
        .await
        .unwrap();
    a.set("forever", "f".into(), SetOptions::new()).await.unwrap();
    fill(&capped, "forever").await;
    eventually("the cap", || async { !capped.in_memory("forever") }).await;
    assert_eq!(capped.get("forever").await.unwrap().as_deref(), Some("f"), "still in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_read_back_their_own_older_write_and_converge() {
    let server = RedisServer::start();
    let a = Arc::new(near(&server).await);
    let b = Arc::new(near(&server).await);
    let rounds = 300;
    let writer = |me: Arc<NearCache<String>>, name: &'static str| async move {
        for i in 0..rounds {
            let mine = format!("{name}{i:04}");
            me.set("k", mine.clone(), SetOptions::new()).await.unwrap();
            let got = me.get("k").await.unwrap().unwrap();
            // Mine, or the other writer's: never an older one of mine.
            assert!(got == mine || !got.starts_with(name), "{name} wrote {mine} and read {got}");
        }
    };
    // Readers keep filling both memories while the writers race.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = |me: Arc<NearCache<String>>, stop: Arc<std::sync::atomic::AtomicBool>| async move {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            me.get("k").await.unwrap();
            // A memory hit never waits, so give the writers their turn.
            tokio::task::yield_now().await;
        }
    };
    let readers = [tokio::spawn(reader(a.clone(), stop.clone())), tokio::spawn(reader(b.clone(), stop.clone()))];
    let (wa, wb) = tokio::join!(tokio::spawn(writer(a.clone(), "a")), tokio::spawn(writer(b.clone(), "b")));
    wa.unwrap();
    wb.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let redis: RedisStore<String> = RedisStore::builder(server.url()).prefix(PREFIX).build().await.unwrap();
    let last = redis.get("k").await.unwrap();
    for (name, cache) in [("a", &a), ("b", &b)] {
        eventually(&format!("{name} agrees with Redis"), || async { cache.get("k").await.unwrap() == last }).await;
        // And keeps agreeing once filled from it.
        fill(cache, "k").await;
        assert_eq!(cache.get("k").await.unwrap(), last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_invalidations_during_fills_leave_nothing_stale() {
    let server = RedisServer::start();
    let a = Arc::new(near(&server).await);
    let b = Arc::new(near(&server).await);
    let keys: Vec<String> = (0..16).map(|i| format!("p:{i}")).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // b fills every key again and again.
    let filler = {
        let (b, keys, stop) = (b.clone(), keys.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for k in &keys {
                    b.get(k).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // a writes a new version of every key, then invalidates them all by pattern.
    for round in 0..100 {
        for k in &keys {
            a.set(k, format!("{round}"), SetOptions::new()).await.unwrap();
        }
        a.invalidate("p:*").await.unwrap();
        // The filler must not put back any version: once a's messages are
        // in, every key is missing for b (a fill that lost the race would
        // stay for good).
        for k in &keys {
            eventually(&format!("round {round}: {k} missing for b"), || async { b.get(k).await.unwrap().is_none() })
                .await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    filler.await.unwrap();
    for k in &keys {
        eventually(&format!("{k} missing for b"), || async { b.get(k).await.unwrap().is_none() }).await;
        assert!(!b.in_memory(k));
    }
    // b's own pattern invalidation during a's fills.
    for k in &keys {
        b.set(k, "x".into(), SetOptions::new()).await.unwrap();
    }
    let mut tasks = Vec::new();
    for k in keys.clone() {
        let a = a.clone();
        tasks.push(tokio::spawn(async move { a.get(&k).await.unwrap() }));
    }
    b.invalidate("p:*").await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    for k in &keys {
        eventually(&format!("{k} gone from a"), || async { a.get(k).await.unwrap().is_none() }).await;
        assert_eq!(b.get(k).await.unwrap(), None, "b never reads what it invalidated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_returns_only_after_its_own_memory_forgot_the_old_value() {
    // No other instance: the only thing that can remove the old value in time
    // is the write itself (the message from Redis may come later).
    let server = RedisServer::start();
    let a = near(&server).await;
    for i in 0..200 {
        a.set("k", format!("{i}"), SetOptions::new()).await.unwrap();
        assert_eq!(a.get("k").await.unwrap(), Some(format!("{i}")));
        assert_eq!(a.get("k").await.unwrap(), Some(format!("{i}")));
    }
    fill(&a, "k").await;
    assert!(a.delete("k").await.unwrap());
    assert_eq!(a.get("k").await.unwrap(), None);
    a.set("k", "v".into(), SetOptions::new()).await.unwrap();
    fill(&a, "k").await;
    a.invalidate("*").await.unwrap();
    assert_eq!(a.get("k").await.unwrap(), None);
    a.set("k", "v".into(), SetOptions::new()).await.unwrap();
    fill(&a, "k").await;
    a.clear().await.unwrap();
    assert_eq!(a.get("k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_racing_another_instances_writes_never_stick() {
    let server = RedisServer::start();
    let a = near(&server).await;
    let b = Arc::new(near(&server).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fillers: Vec<_> = (0..2)
        .map(|_| {
            let (b, stop) = (b.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    b.get("k").await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for i in 0..300 {
        let v = format!("{i}");
        a.set("k", v.clone(), SetOptions::new()).await.unwrap();
        // A fill that read the previous value and lost the race to this
        // write's message would stay in b's memory for good.
        eventually(&format!("b reads {v}"), || async { b.get("k").await.unwrap().as_deref() == Some(v.as_str()) })
            .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in fillers {
        f.await.unwrap();
    }
    assert!(b.memory_stats().hits > 0, "the fillers were served from memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_bounded_store_evicts_leave_every_memory_tier() {
    // The eviction happens inside RedisStore's Lua script on a: nothing but
    // Redis's own tracking could tell b.
    let server = RedisServer::start();
    let bounded = |server: &RedisServer| {
        NearCache::<String>::builder(server.url())
            .prefix(PREFIX)
            .redis(|redis| redis.policy(LruPolicy::new(2).unwrap().refresh_on_get(false)))
            .build()
    };
    let a = bounded(&server).await.unwrap();
    let b = bounded(&server).await.unwrap();
    a.set("k1", "1".into(), SetOptions::new()).await.unwrap();
    a.set("k2", "2".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k1").await;
    a.set("k3", "3".into(), SetOptions::new()).await.unwrap();
    assert_eq!(a.stats().evictions, 1);
    eventually("the eviction of k1 reached b", || async { !b.in_memory("k1") }).await;
    assert_eq!(b.get("k1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_noticed_by_the_heartbeat() {
    let server = RedisServer::start();
    let b = near(&server).await; // heartbeat 200 ms
    b.set("k", "v".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill").args([sig, &server.pid().to_string()]).status().unwrap();
        assert!(status.success());
    };
    // Stopped, the server keeps its sockets open: only an unanswered PING tells.
    signal("-STOP");
    eventually("the heartbeat notices", || async { !b.is_coherent() }).await;
    assert_eq!(b.memory_len(), 0);
    signal("-CONT");
    eventually("b tracks again", || async { b.is_coherent() }).await;
    fill(&b, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cache_closes_its_invalidation_connection() {
    let server = RedisServer::start();
    let b = near(&server).await;
    assert_eq!(tracking_clients(&server).await.len(), 1);
    drop(b);
    eventually("the tracking connection is closed", || async { tracking_clients(&server).await.is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_a_server_crash_never_see_the_old_value_once_it_is_noticed() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut server = RedisServer::start();
    let b = Arc::new(near(&server).await);
    b.set("k", "v0".into(), SetOptions::new()).await.unwrap();
    fill(&b, "k").await;
    let (crashed, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let reads_after = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (b, crashed, stop, reads_after) = (b.clone(), crashed.clone(), stop.clone(), reads_after.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let after = crashed.load(Ordering::Acquire);
                    let read = b.get("k").await;
                    // Reads that began after the crash was noticed: an error
                    // or nothing (the new server is empty), never v0.
                    if after {
                        assert!(!matches!(&read, Ok(Some(v)) if v == "v0"), "v0 served after the crash");
                        reads_after.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop();
    // Until b notices (the socket closes), memory may still answer: what it
    // holds was Redis's value when it died.
    eventually("b notices", || async { !b.is_coherent() }).await;
    crashed.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.restart();
    eventually("b tracks again", || async { b.is_coherent() }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Release);
    for r in readers {
        r.await.unwrap();
    }
    assert!(reads_after.load(Ordering::Relaxed) > 0);
    assert_eq!(b.get("k").await.unwrap(), None);
}

/// A third client runs `SWAPDB 0 1` where db 1 holds a newer value of a key
/// the near cache holds. Redis sends tracking clients nothing for it; the
/// heartbeat notices the database marker is gone and empties memory, so the
/// old value is served for at most about two heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapdb_by_a_third_client_ends_stale_reads_within_two_heartbeats() {
    let server = RedisServer::start();
    let heartbeat = Duration::from_millis(200);
    let cache: NearCache<String> =
        NearCache::builder(server.url()).prefix(PREFIX).heartbeat(heartbeat).build().await.unwrap();
    let mut admin = server.admin().await;
    // db 1 first: tracking is per key name, whatever the database, so this
    // write's message must be in before memory is filled.
    let mut db1 =
        redis::Client::open(format!("{}/1", server.url())).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("near:k").arg(r#"{"v":"new"}"#).query_async(&mut db1).await.unwrap();
    cache.set("k", "old".into(), SetOptions::new()).await.unwrap();
    fill(&cache, "k").await;
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("old"));

    let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query_async(&mut admin).await.unwrap();
    let swapped = std::time::Instant::now();
    let mut stale = 0u64;
    loop {
        match cache.get("k").await.unwrap().as_deref() {
            Some("new") => break,
            Some("old") => stale += 1,
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            swapped.elapsed() < 2 * heartbeat + Duration::from_secs(3),
            "still stale after {:?} ({stale} stale reads)",
            swapped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("stale for {:?} after SWAPDB ({stale} stale reads; heartbeat {heartbeat:?})", swapped.elapsed());
    // And memory is used again afterwards.
    fill(&cache, "k").await;
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("new"));
}

/// The README's example, many times over (a new cache every tenth round, so
/// `build` is exercised too): after `set`, the first `get` reads Redis and
/// fills memory, and the second is served from memory, every time. The set
/// waits until its own invalidation, which Redis sends back to the writer,
/// has been handled, so that message can no longer refuse or remove the fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_get_after_a_set_is_served_from_memory_every_time() {
    let server = RedisServer::start();
    // A writer busy all along, so the server is busy. Under another prefix:
    // a write of this prefix to a key sharing a stripe with the key under
    // test would refuse its fill, as documented (a stripe is one of 4096
    // counters, picked by a random hash), and make this test depend on it.
    let other: Arc<RedisStore<String>> =
        Arc::new(RedisStore::builder(server.url()).prefix("noise:").build().await.unwrap());
    let noise = {
        let other = Arc::clone(&other);
        tokio::spawn(async move {
            for i in 0u64.. {
                other.set(&format!("n{}", i % 100), i.to_string(), SetOptions::new()).await.unwrap();
            }
        })
    };
    let mut misses = Vec::new();
    for round in 0..20 {
        let cache = near(&server).await;
        assert!(cache.is_coherent(), "build returns with tracking on");
        for i in 0..10 {
            let key = format!("user:{round}:{i}");
            cache.set(&key, "Ada".into(), SetOptions::new().ttl(Duration::from_secs(60))).await.unwrap();
            let before = cache.memory_stats().hits;
            assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("Ada"));
            assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("Ada"));
            if cache.memory_stats().hits != before + 1 {
                misses.push(key);
            }
        }
    }
    noise.abort();
    assert!(misses.is_empty(), "second get not from memory for {} of 200 keys: {misses:?}", misses.len());
}

/// `sync` waits for other processes' writes that are known to be done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_applies_every_invalidation_sent_before_it() {
    let server = RedisServer::start();
    let cache = near(&server).await;
    let mut admin = server.admin().await;
    for i in 0..50 {
        let _: () =
            redis::cmd("SET").arg("near:k").arg(format!(r#"{{"v":"v{i}"}}"#)).query_async(&mut admin).await.unwrap();
        cache.sync().await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), Some(format!("v{i}")));
        assert!(cache.in_memory("k"), "round {i}: the fill stuck: no message still on its way removed it");
    }
}

/// A value whose `Drop` calls the cache, dropped by the memory tier under the
/// cache's own lock (a write takes the old value out of memory): the call
/// fails with `ReentrantValue` instead of deadlocking. Run on a thread of its
/// own with a 10 s guard.
#[test]
fn a_value_whose_drop_calls_the_cache_gets_an_error_not_a_deadlock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock, Weak};

    static CACHE: OnceLock<Weak<NearCache<Callback>>> = OnceLock::new();
    static ARMED: AtomicBool = AtomicBool::new(false);
    static OUTCOME: Mutex<Option<String>> = Mutex::new(None);

    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Callback(u32);

    impl Drop for Callback {
        fn drop(&mut self) {
            if ARMED.swap(false, Ordering::SeqCst)
                && let Some(cache) = CACHE.get().and_then(Weak::upgrade)
            {
                // Drop cannot await: one poll is as far as a call gets here.
                let mut call = std::pin::pin!(cache.get("other"));
                let polled = call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
                *OUTCOME.lock().unwrap() = Some(format!("{polled:?}"));
            }
        }
    }

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let server = RedisServer::start();
            let cache: Arc<NearCache<Callback>> =
                Arc::new(NearCache::builder(server.url()).prefix(PREFIX).build().await.unwrap());
            CACHE.set(Arc::downgrade(&cache)).unwrap();
            cache.set("k", Callback(1), SetOptions::new()).await.unwrap();
            eventually("k filled", || async {
                cache.get("k").await.unwrap();
                cache.in_memory("k")
            })
            .await;
            ARMED.store(true, Ordering::SeqCst);
            // The write takes k's old value out of memory, under the lock.
            cache.set("k", Callback(2), SetOptions::new()).await.unwrap();
            let outcome = OUTCOME.lock().unwrap().clone();
            assert!(
                outcome.as_deref().is_some_and(|o| o.contains("ReentrantValue")),
                "the call from the Drop: {outcome:?}"
            );
            // The cache still works.
            assert_eq!(cache.get("k").await.unwrap().map(|c| c.0), Some(2));
        });
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("deadlocked (or failed): no answer within 10 s");
}

/// The keys of the database whose name holds `\xffnear:` (the instances'
/// markers).
async fn markers(server: &RedisServer) -> Vec<Vec<u8>> {
    let mut admin = server.admin().await;
    let all: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    let mut markers: Vec<_> =
        all.into_iter().filter(|k| k.windows(8).any(|w| w == "\u{FFFF}near:".as_bytes())).collect();
    markers.sort();
    markers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_are_invisible_to_every_walk_and_to_capacity_and_survive_others_clears() {
    for prefix in ["", PREFIX] {
        let server = RedisServer::start();
        let bounded = |server: &RedisServer| {
            NearCache::<String>::builder(server.url())
                .prefix(prefix)
                // Not so short that a check unanswered on a loaded machine (which takes the
                // connection down and empties memory by design) reads as a lost marker
                // (100 ms: 4 of 45 runs at load 10).
                .heartbeat(Duration::from_secs(1))
                .redis(move |redis| {
                    redis.policy(LruPolicy::new(2).unwrap().refresh_on_get(false)).whole_database(prefix.is_empty())
                })
                .build()
        };
        let a = bounded(&server).await.unwrap();
        let b = bounded(&server).await.unwrap();
        let plain: RedisStore<String> = RedisStore::builder(server.url())
            .prefix(prefix)
            .policy(LruPolicy::new(2).unwrap().refresh_on_get(false))
            .whole_database(prefix.is_empty())
            .build()
            .await
            .unwrap();
        let marked = markers(&server).await;
        assert!(!marked.is_empty(), "prefix {prefix:?}");
        for (size, keys) in [
            (a.size().await.unwrap(), a.keys(None).await.unwrap()),
            (b.size().await.unwrap(), b.keys(None).await.unwrap()),
            (plain.size().await.unwrap(), plain.keys(None).await.unwrap()),
        ] {
            assert_eq!((size, keys), (0, vec![]), "prefix {prefix:?}");
        }
        // Two entries fit: the markers take no place.
        a.set("k1", "1".into(), SetOptions::new()).await.unwrap();
        plain.set("k2", "2".into(), SetOptions::new()).await.unwrap();
        assert_eq!(plain.stats().evictions + a.stats().evictions, 0, "prefix {prefix:?}");
        fill(&b, "k1").await;
        fill(&b, "k2").await;
        assert_eq!(plain.invalidate("*").await.unwrap(), 2, "prefix {prefix:?}");
        assert_eq!(markers(&server).await, marked, "prefix {prefix:?}");
        eventually("b forgot the invalidated keys", || async { b.memory_len() == 0 }).await;
        a.set("k1", "1".into(), SetOptions::new()).await.unwrap();
        fill(&b, "k1").await;
        a.clear().await.unwrap();
        plain.clear().await.unwrap();
        assert_eq!(markers(&server).await, marked, "prefix {prefix:?}");
        // b hears of the clear by a tracking message (coherent within ms, not at once).
        eventually("b forgot k1 after the clears", || async { b.get("k1").await.unwrap().is_none() }).await;
        // Memory is used again at once: no marker was lost, so no flush is pending.
        a.set("k3", "3".into(), SetOptions::new()).await.unwrap();
        fill(&b, "k3").await;
        // Two heartbeats (each checks the markers).
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(b.in_memory("k3"), "prefix {prefix:?}: b emptied its memory with no write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_marker_is_written_again_without_emptying_memory() {
    // Redis under maxmemory evicts a marker like any key; SWAPDB takes all
    // of them at once. Only the latter may empty memory.
    let server = RedisServer::start();
    let cache = near(&server).await;
    cache.set("k", "v".into(), SetOptions::new()).await.unwrap();
    fill(&cache, "k").await;
    let all = markers(&server).await;
    assert!(all.len() > 1, "{} markers", all.len());
    let mut admin = server.admin().await;
    for round in 0..3 {
        let _: () = redis::cmd("DEL").arg(&all[1..]).query_async(&mut admin).await.unwrap();
        eventually("the evicted markers written again", || async { markers(&server).await.len() == all.len() }).await;
        // A heartbeat (200 ms) more, in case the flush came after the repair.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(cache.in_memory("k"), "round {round}: memory was emptied though the database never changed");
    }
    let _: () = redis::cmd("DEL").arg(&all).query_async(&mut admin).await.unwrap();
    eventually("every marker gone: memory emptied", || async { !cache.in_memory("k") }).await;
}

/// Tokio's `spawn` and `sleep`, for `get_or_refresh`.
struct Tasks;

impl pepperpy_caching::Runtime for Tasks {
    fn spawn(&self, task: pepperpy_caching::BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> pepperpy_caching::BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

fn loads(value: &'static str) -> impl FnOnce() -> std::future::Ready<Result<String, std::io::Error>> + Send + 'static {
    move || std::future::ready(Ok(value.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_get_or_refresh_loads_or_refreshes_is_what_every_instance_reads() {
    let server = RedisServer::start();
    let a = Arc::new(near(&server).await);
    let b = near(&server).await;
    let fresh = Duration::from_millis(300);
    let options = pepperpy_caching::RefreshOptions::new(Tasks, fresh, Duration::from_secs(60));
    assert_eq!(a.get_or_refresh("k", loads("v1"), &options).await.unwrap(), "v1");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v1"), "a load is read back at once on its instance");
    fill(&a, "k").await;
    fill(&b, "k").await;
    tokio::time::sleep(fresh * 2).await;
    // Stale: served at once, the refresh stores v2 in the background.
    assert_eq!(a.get_or_refresh("k", loads("v2"), &options).await.unwrap(), "v1");
    eventually("the refresh stored v2", || async { a.stats().refreshes == 1 && !a.in_memory("k") }).await;
    let redis: RedisStore<String> = RedisStore::builder(server.url()).prefix(PREFIX).build().await.unwrap();
    eventually("v2 in Redis", || async { redis.get("k").await.unwrap().as_deref() == Some("v2") }).await;
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v2"));
    // A load past the grace period (the key gone from Redis): read back at
    // once here, and on the other instance once it has caught up.
    fill(&a, "k").await;
    fill(&b, "k").await;
    redis.delete("k").await.unwrap();
    a.sync().await.unwrap();
    assert_eq!(a.get_or_refresh("k", loads("v3"), &options).await.unwrap(), "v3");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v3"));
    b.sync().await.unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_get_or_refresh_loader_asking_for_its_own_key_fails_at_once() {
    let server = RedisServer::start();
    let a = Arc::new(near(&server).await);
    let options = pepperpy_caching::RefreshOptions::new(Tasks, Duration::from_secs(60), Duration::from_secs(60));
    let (inner, inner_options) = (Arc::clone(&a), options.clone());
    let loader = move || async move {
        let again = inner.get_or_refresh("k", loads("inner"), &inner_options).await;
        let set = inner.get_or_set("k", || async { "inner".to_string() }, SetOptions::new()).await;
        let plain = inner.get("k").await;
        Ok::<_, std::io::Error>(format!("{again:?} {set:?} {plain:?}"))
    };
    let got = tokio::time::timeout(PATIENCE, a.get_or_refresh("k", loader, &options)).await.expect("deadlock");
    let got = got.unwrap();
    assert_eq!(got.matches("Reentrant").count(), 2, "{got}");
    assert!(got.ends_with("Ok(None)"), "a plain get while loading misses: {got}");
}

/// Bad input changes nothing, the memory tier included: metadata nested too
/// deep is refused before anything is taken out of memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_metadata_leaves_the_memory_tier_as_it_was() {
    let server = RedisServer::start();
    let a = near(&server).await;
    a.set("k", "v".into(), SetOptions::new()).await.unwrap();
    fill(&a, "k").await;
    let before = a.memory_stats();
    let deep = meta(serde_json::json!({ "a": support::nested(200) }));
    let got = a.update_metadata("k", deep).await;
    assert!(matches!(got, Err(pepperpy_caching::CacheError::Serialization(_))), "{got:?}");
    assert!(a.in_memory("k"), "the refused call took the entry out of memory");
    assert_eq!(a.memory_stats(), before);
}

/// A value that cannot be stored (JSON needs string map keys) is refused
/// before anything is taken out of memory, as bad metadata is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_value_leaves_the_memory_tier_as_it_was() {
    type Map = std::collections::BTreeMap<(u8, u8), u8>;
    let server = RedisServer::start();
    let a: NearCache<Map> = NearCache::builder(server.url()).prefix(PREFIX).build().await.unwrap();
    a.set("k", Map::new(), SetOptions::new()).await.unwrap();
    eventually("k filled", || async {
        a.get("k").await.unwrap();
        a.in_memory("k")
    })
    .await;
    let before = a.memory_stats();
    let got = a.set("k", Map::from([((1, 2), 3)]), SetOptions::new()).await;
    assert!(matches!(got, Err(pepperpy_caching::CacheError::Serialization(_))), "{got:?}");
    assert!(a.in_memory("k"), "the refused call took the entry out of memory");
    assert_eq!(a.memory_stats(), before);
}

/// Entries with a time-to-idle are never kept in memory: each read goes to
/// Redis, where it moves the idle clock every instance shares, so one
/// instance reading an entry keeps it alive for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entries_are_read_from_redis_and_one_instances_reads_keep_them_for_all() {
    let server = RedisServer::start();
    let a = near(&server).await;
    let b = near(&server).await;
    let idle = Duration::from_millis(500);
    a.set("idle", "i".into(), SetOptions::new().idle(idle)).await.unwrap();
    a.set("plain", "p".into(), SetOptions::new()).await.unwrap();
    fill(&b, "plain").await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(b.get("idle").await.unwrap().as_deref(), Some("i"), "b's reads keep it alive");
        assert!(!b.in_memory("idle"), "never filled");
    }
    assert_eq!(a.get("idle").await.unwrap().as_deref(), Some("i"), "alive for a too, after 1.2 s");
    // get_or_set with an idle time fills nothing either.
    let v = b.get_or_set("loaded", || async { "l".to_string() }, SetOptions::new().idle(idle)).await.unwrap();
    assert_eq!(v, "l");
    assert_eq!(b.get_or_set("loaded", || async { unreachable!() }, SetOptions::new().idle(idle)).await.unwrap(), "l");
    assert!(!b.in_memory("loaded"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a.get("idle").await.unwrap(), None, "unread for 0.8 s: gone everywhere");
    assert_eq!(b.get("idle").await.unwrap(), None);
    assert_eq!(b.get("plain").await.unwrap().as_deref(), Some("p"));
}
