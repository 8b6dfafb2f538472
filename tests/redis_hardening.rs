//! Issue 13, against real redis-server processes: nothing accepted that
//! cannot be read back, no pattern that stalls Redis, a capacity that holds
//! under Redis's own eviction, prefixes that keep stores apart, errors that
//! state their cause once, `size` from the index, timeouts that cannot
//! overflow, what a timed-out write means, and TLS with a provider chosen by
//! features.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, Metadata, Policy, SetOptions, TtlPolicy, stores::RedisStore,
};
use redis::aio::MultiplexedConnection;
use support::{RedisServer, free_port, nested, redis_store as store};

async fn dbsize(conn: &mut MultiplexedConnection) -> usize {
    redis::cmd("DBSIZE").query_async(conn).await.unwrap()
}

/// Every Redis key under `prefix` that is an entry (not an index key).
async fn entries_under(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<Vec<u8>> {
    let keys = support::scan(conn, format!("{prefix}*").as_bytes()).await;
    // Internal keys (indexes, locks, tag sets) hold U+FFFF, which no entry's key may.
    keys.into_iter().filter(|k| std::str::from_utf8(k).is_ok_and(|k| !k.contains('\u{FFFF}'))).collect()
}

/// Metadata `{"a": value}`.
fn meta_under_a(value: serde_json::Value) -> Metadata {
    support::meta(serde_json::json!({ "a": value }))
}

fn assert_serialization<T: std::fmt::Debug>(r: pepperpy_caching::Result<T>, what: &str) {
    assert!(matches!(r, Err(CacheError::Serialization(_))), "{what}: {r:?}");
}

#[tokio::test]
async fn what_json_cannot_give_back_is_refused_and_nothing_is_written() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let floats: RedisStore<f64> = store(&server, "f:", None).await;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_serialization(floats.set("x", bad, SetOptions::new()).await, "f64");
    }
    let options: RedisStore<Option<f64>> = store(&server, "o:", Some(LruPolicy::new(10).unwrap().into())).await;
    assert_serialization(options.set("x", Some(f64::NAN), SetOptions::new()).await, "Some(NaN)");
    options.set("none", None, SetOptions::new()).await.unwrap();
    assert_eq!(options.get("none").await.unwrap(), Some(None), "a real None still round-trips");
    options.delete("none").await.unwrap();

    let json: RedisStore<serde_json::Value> = store(&server, "j:", None).await;
    assert_serialization(json.set("deep", nested(130), SetOptions::new()).await, "value 130 deep");
    assert_serialization(json.set("deep", nested(101), SetOptions::new()).await, "value 101 deep");
    let deep_meta = SetOptions::new().metadata(meta_under_a(nested(100)));
    assert_serialization(json.set("m", serde_json::json!(1), deep_meta).await, "metadata 101 deep");
    assert_eq!(floats.stats().sets + options.stats().sets + json.stats().sets, 1, "only the None was counted");
    assert_eq!(dbsize(&mut conn).await, 1, "nothing written but the bounded store's index");

    // At the limit, everything reads back as written.
    json.set("ok", nested(100), SetOptions::new().metadata(meta_under_a(nested(99)))).await.unwrap();
    assert_eq!(json.get("ok").await.unwrap(), Some(nested(100)));
    assert_eq!(json.get_metadata("ok").await.unwrap(), Some(meta_under_a(nested(99))));
    // update_metadata refuses too, and leaves the entry as it was.
    assert_serialization(json.update_metadata("ok", meta_under_a(nested(100))).await, "update_metadata");
    assert_eq!(json.get_metadata("ok").await.unwrap(), Some(meta_under_a(nested(99))));

    // A loader's Infinity is refused, caches nothing, and does not poison the key.
    let r = floats.get_or_set("loaded", || async { f64::INFINITY }, SetOptions::new()).await;
    assert_serialization(r, "loader's Infinity");
    assert!(!floats.contains("loaded").await.unwrap());
    assert_eq!(floats.get_or_set("loaded", || async { 2.5 }, SetOptions::new()).await.unwrap(), 2.5);
}

/// The SCAN MATCH arguments Redis received, from SLOWLOG with a threshold of 0.
async fn scan_matches(conn: &mut MultiplexedConnection) -> Vec<Vec<u8>> {
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(100_000).query_async(conn).await.unwrap();
    let mut out = Vec::new();
    for entry in log {
        let redis::Value::Array(fields) = entry else { panic!("{entry:?}") };
        let redis::Value::Array(args) = &fields[3] else { panic!("{fields:?}") };
        let args: Vec<Vec<u8>> = args.iter().map(|a| redis::from_redis_value_ref::<Vec<u8>>(a).unwrap()).collect();
        if args[0].eq_ignore_ascii_case(b"SCAN") {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"MATCH")).expect("SCAN without MATCH");
            out.push(args[at + 1].clone());
        }
    }
    out
}

#[tokio::test]
async fn hostile_patterns_reach_redis_only_as_a_plain_prefix() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let store: RedisStore<u32> = store(&server, "h:", None).await;
    // 200 keys of 8 KiB, all `a`: the worst case for a backtracking matcher.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        let key = format!("{i:03}{}", "a".repeat(pepperpy_caching::MAX_KEY_LEN - 3));
        pipe.set(format!("h:{key}"), r#"{"v":1}"#).ignore();
    }
    pipe.exec_async(&mut conn).await.unwrap();
    for (name, value) in [("slowlog-log-slower-than", "0"), ("slowlog-max-len", "100000")] {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).exec_async(&mut conn).await.unwrap();
    }
    redis::cmd("SLOWLOG").arg("RESET").exec_async(&mut conn).await.unwrap();

    let hostile = format!("*{}b", "a".repeat(1022));
    assert_eq!(store.invalidate(&hostile).await.unwrap(), 0);
    let five_stars = format!("*a*a*a*{}b", "a".repeat(1000));
    assert_eq!(store.keys(Some(&five_stars)).await.unwrap().len(), 0);
    assert_eq!(store.invalidate(&format!("1*{}", "a".repeat(1022))).await.unwrap(), 100, "keys 100..199");
    assert_eq!(store.invalidate(&format!("0?[0-9]{}", "*a".repeat(400))).await.unwrap(), 100, "keys 000..099");

    let sent = scan_matches(&mut conn).await;
    assert!(sent.len() >= 4, "{} SCANs logged", sent.len());
    for m in &sent {
        // The escaped prefix, the pattern's literal head, one star: nothing Redis could backtrack on.
        assert!(m == b"h:*" || m == b"h:1*" || m == b"h:0*", "SCAN MATCH {:?}", String::from_utf8_lossy(m));
    }
    assert_eq!(dbsize(&mut conn).await, 0);
}

#[tokio::test]
async fn capacity_holds_under_allkeys_lru_once_pressure_ends() {
    let server = RedisServer::start_with_args(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut conn = server.admin().await;
    let capacity = 2_000;
    let store: RedisStore<String> = store(&server, "cap:", Some(LruPolicy::new(capacity).unwrap().into())).await;
    let value = "x".repeat(1_000);
    // About 12 MB of entries into 2 MB: Redis evicts behind the store's back,
    // the index keys included now and then (its LRU clock ticks once a second).
    for i in 0..12_000 {
        // Under pressure a write may be refused (OOM) if Redis cannot free enough: fine.
        let _ = store.set(&format!("k{i}"), value.clone(), SetOptions::new()).await;
        let _ = store.get(&format!("k{}", i / 2)).await;
    }
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").exec_async(&mut conn).await.unwrap();
    for i in 12_000..15_000 {
        store.set(&format!("k{i}"), value.clone(), SetOptions::new()).await.unwrap();
        if i % 250 == 0 {
            let n = entries_under(&mut conn, "cap:").await.len();
            assert!(n <= capacity, "{n} entries for a capacity of {capacity} after set {i}");
        }
    }
    let n = entries_under(&mut conn, "cap:").await.len();
    assert_eq!(n, capacity, "the whole capacity is usable again (no member left for an evicted entry)");
    assert_eq!(store.size().await.unwrap(), n, "the index counts what is there");
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_by_the_next_set() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let ttl = TtlPolicy::new(Duration::from_secs(600)).unwrap().with_max_size(100).unwrap();
    for (prefix, policy, index) in [
        ("lost:", Policy::from(LruPolicy::new(100).unwrap()), "lost:\u{FFFF}lru"),
        ("lostt:", Policy::from(ttl), "lostt:\u{FFFF}expiry"),
    ] {
        let s: RedisStore<u32> = store(&server, prefix, Some(policy)).await;
        for i in 0..100 {
            s.set(&format!("old{i}"), i, SetOptions::new()).await.unwrap();
        }
        // The index key as the store names it: prefix, U+FFFF, name.
        let raw_index =
            [prefix.as_bytes(), "\u{FFFF}".as_bytes(), index.split('\u{FFFF}').nth(1).unwrap().as_bytes()].concat();
        let removed: usize = redis::cmd("DEL").arg(&raw_index).query_async(&mut conn).await.unwrap();
        assert_eq!(removed, 1, "{prefix}: the index was where the docs say");
        // A longer TTL than the old entries', so that under TTL too the old are first to go.
        let later = SetOptions::new().ttl(Duration::from_secs(1_200));
        for i in 0..100 {
            s.set(&format!("new{i}"), i, later.clone()).await.unwrap();
            let n = entries_under(&mut conn, prefix).await.len();
            assert!(n <= 100, "{prefix}: {n} entries for a capacity of 100 after new{i}");
        }
        assert_eq!(s.size().await.unwrap(), 100);
        for i in 0..100 {
            assert_eq!(s.get(&format!("new{i}")).await.unwrap(), Some(i), "{prefix}: the newest entries stay");
        }
    }
}

#[tokio::test]
async fn ghost_members_do_not_shrink_the_capacity() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let s: RedisStore<u32> = store(&server, "ghost:", Some(LruPolicy::new(50).unwrap().into())).await;
    for i in 0..50 {
        s.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    // Behind the store's back, as maxmemory eviction would.
    let mut pipe = redis::pipe();
    for i in 0..40 {
        pipe.del(format!("ghost:k{i}")).ignore();
    }
    pipe.exec_async(&mut conn).await.unwrap();
    for i in 0..40 {
        s.set(&format!("n{i}"), i, SetOptions::new()).await.unwrap();
    }
    // 10 old + 40 new: nothing real had to go.
    assert_eq!(entries_under(&mut conn, "ghost:").await.len(), 50);
    assert_eq!(s.stats().evictions, 0, "members of vanished entries are not evictions");
    assert_eq!(s.size().await.unwrap(), 50);
}

#[tokio::test]
async fn prefixes_that_could_overlap_are_refused() {
    let server = RedisServer::start();
    for bad in ["a:b:", "a", "app_", ":", "a::"] {
        let r = RedisStore::<u32>::builder(server.url()).prefix(bad).build().await;
        assert!(matches!(r, Err(CacheError::Policy(_))), "{bad:?}: {r:?}");
    }
    // Stores on "a:" and "ab:" never see each other's entries, keys with ':' included.
    let a: RedisStore<u32> = store(&server, "a:", Some(LruPolicy::new(10).unwrap().into())).await;
    let ab: RedisStore<u32> = store(&server, "ab:", Some(LruPolicy::new(10).unwrap().into())).await;
    a.set("b:x", 1, SetOptions::new()).await.unwrap();
    ab.set("x", 2, SetOptions::new()).await.unwrap();
    assert_eq!(a.invalidate("*").await.unwrap(), 1);
    assert_eq!(ab.get("x").await.unwrap(), Some(2));
    assert_eq!(ab.size().await.unwrap(), 1);
}

#[tokio::test]
async fn an_empty_prefix_refuses_to_delete_the_database() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    redis::cmd("SET").arg("other-app:key").arg("theirs").exec_async(&mut conn).await.unwrap();
    let s: RedisStore<u32> = store(&server, "", None).await;
    s.set("mine", 1, SetOptions::new()).await.unwrap();
    assert!(matches!(s.clear().await, Err(CacheError::Policy(_))));
    assert!(matches!(s.invalidate("*").await, Err(CacheError::Policy(_))));
    assert!(matches!(s.invalidate("other-app:*").await, Err(CacheError::Policy(_))));
    let theirs: Option<String> = redis::cmd("GET").arg("other-app:key").query_async(&mut conn).await.unwrap();
    assert_eq!(theirs.as_deref(), Some("theirs"));
    assert_eq!(s.get("mine").await.unwrap(), Some(1), "reads and single deletes still work");
    assert!(s.delete("mine").await.unwrap());
}

#[tokio::test]
async fn the_whole_database_can_be_allowed_explicitly() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    redis::cmd("SET").arg("other").arg("x").exec_async(&mut conn).await.unwrap();
    let s: RedisStore<u32> = RedisStore::builder(server.url()).whole_database(true).build().await.unwrap();
    s.set("mine", 1, SetOptions::new()).await.unwrap();
    s.clear().await.unwrap();
    assert_eq!(dbsize(&mut conn).await, 0, "told it owns the database, it clears all of it");
}

#[tokio::test]
async fn errors_state_their_cause_once() {
    let port = free_port();
    let err = RedisStore::<u32>::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    let source = std::error::Error::source(&err).expect("the cause is the source").to_string();
    let shown = err.to_string();
    assert!(!shown.contains(&source), "the message repeats its source: {shown:?} / {source:?}");
    assert!(shown.contains(&port.to_string()), "{shown}");

    let server = RedisServer::start();
    let s: RedisStore<u32> = store(&server, "e:", None).await;
    let err = s.try_get_or_set("k", || async { Err(std::io::Error::other("db down")) }, SetOptions::new()).await;
    let err = err.unwrap_err();
    assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "db down");
    assert!(!err.to_string().contains("db down"), "{err}");
}

#[tokio::test]
async fn size_of_a_bounded_store_reads_the_index_without_scanning() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let s: RedisStore<u32> = store(&server, "sz:", Some(LruPolicy::new(1_000).unwrap().into())).await;
    for i in 0..50 {
        s.set(&format!("k{i}"), i, SetOptions::new().ttl(Duration::from_secs(60))).await.unwrap();
    }
    s.set("short", 0, SetOptions::new().ttl(Duration::from_millis(20))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    redis::cmd("CONFIG").arg("RESETSTAT").exec_async(&mut conn).await.unwrap();
    assert_eq!(s.size().await.unwrap(), 50, "the expired entry is not counted");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    assert!(!info.contains("cmdstat_scan"), "size walked the database:\n{info}");
}

#[tokio::test]
async fn the_longest_timeouts_do_not_overflow() {
    let server = RedisServer::start();
    let s = RedisStore::<u32>::builder(server.url())
        .prefix("t:")
        .connect_timeout(Duration::MAX)
        .response_timeout(Duration::MAX)
        .lock_lease(Duration::MAX)
        .policy(LruPolicy::new(10).unwrap())
        .build()
        .await
        .unwrap();
    s.set("k", 1, SetOptions::new().ttl(Duration::MAX)).await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), Some(1));
    assert_eq!(s.get_or_set("l", || async { 2 }, SetOptions::new()).await.unwrap(), 2);
}

/// What the docs say of a timed-out write: it may still be applied.
#[tokio::test]
async fn a_timed_out_write_may_still_be_applied() {
    let server = RedisServer::start();
    let s = RedisStore::<u32>::builder(server.url())
        .prefix("w:")
        .response_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &server.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let r = s.set("k", 7, SetOptions::new()).await;
    signal("-CONT");
    assert!(matches!(r, Err(CacheError::Backend { .. })), "{r:?}");
    // The command was in the server's socket buffer: it ran on resume.
    let mut conn = server.admin().await;
    let stored: Option<String> = redis::cmd("GET").arg("w:k").query_async(&mut conn).await.unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"v":7}"#));
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let server = RedisServer::start_tls();
    let port = server.tls_port();
    for host in ["127.0.0.1", "localhost"] {
        let s = RedisStore::<String>::builder(format!("rediss://{host}:{port}"))
            .prefix("tls:")
            .tls_root_certificates(server.tls_ca())
            .build()
            .await;
        #[cfg(any(feature = "tls-ring", feature = "tls-aws-lc"))]
        {
            let s = s.unwrap_or_else(|e| panic!("{host}: {e} ({:?})", std::error::Error::source(&e)));
            s.set("k", host.to_string(), SetOptions::new()).await.unwrap();
            assert_eq!(s.get("k").await.unwrap().as_deref(), Some(host));
            assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        }
        #[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc")))]
        {
            // No provider compiled in and none installed: an error that says so, not a panic.
            let e = s.unwrap_err();
            assert!(matches!(e, CacheError::Backend { .. }) && e.to_string().contains("provider"), "{e}");
        }
    }
    // Without the CA, the server's certificate is not trusted.
    let r = RedisStore::<String>::builder(format!("rediss://localhost:{port}"))
        .connect_timeout(Duration::from_millis(1_000))
        .build()
        .await;
    assert!(matches!(r, Err(CacheError::Backend { .. })), "{r:?}");
}

#[cfg(feature = "tls-aws-lc")]
#[tokio::test]
async fn tls_aws_lc_is_the_chosen_provider() {
    let server = RedisServer::start_tls();
    let s = RedisStore::<u32>::builder(format!("rediss://localhost:{}", server.tls_port()))
        .prefix("tls:")
        .tls_root_certificates(server.tls_ca())
        .build()
        .await
        .unwrap();
    s.set("k", 1, SetOptions::new()).await.unwrap();
    let provider = rustls::crypto::CryptoProvider::get_default().unwrap();
    let aws = rustls::crypto::aws_lc_rs::default_provider();
    assert_eq!(
        format!("{:?}", provider.cipher_suites.iter().map(|c| c.suite()).collect::<Vec<_>>()),
        format!("{:?}", aws.cipher_suites.iter().map(|c| c.suite()).collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn every_known_eviction_setting_is_accepted_for_a_capacity() {
    // Redis itself refuses an unknown maxmemory-policy, so the refusal of one
    // cannot be shown against a real server; the known ones must all build.
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    for setting in [
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg(setting).exec_async(&mut conn).await.unwrap();
        let s = RedisStore::<u32>::builder(server.url()).prefix("ev:").policy(LruPolicy::new(10).unwrap()).build();
        let s = s.await.unwrap_or_else(|e| panic!("{setting}: {e}"));
        s.set("k", 1, SetOptions::new()).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_denied_config_can_still_build_a_bounded_store() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all", "-config"])
        .exec_async(&mut conn)
        .await
        .unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let s = RedisStore::<u32>::builder(url).prefix("acl:").policy(LruPolicy::new(10).unwrap()).build().await;
    let s = s.unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    s.set("k", 1, SetOptions::new()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), Some(1));
}

/// Metadata depth is one shared rule: both stores give the same answer.
#[tokio::test]
async fn both_stores_give_the_same_answer_on_metadata_depth() {
    let server = RedisServer::start();
    let redis_store: RedisStore<u32> = store(&server, "md:", None).await;
    let memory = pepperpy_caching::MemoryStore::new(LruPolicy::new(10).unwrap());
    for depth in [1, 50, 98, 99, 100, 130] {
        let options = SetOptions::new().metadata(meta_under_a(nested(depth)));
        let in_memory = memory.set("k", 1u32, options.clone()).await.map_err(|e| format!("{e:?}"));
        let in_redis = redis_store.set("k", 1, options).await.map_err(|e| format!("{e:?}"));
        assert_eq!(in_memory.is_ok(), in_redis.is_ok(), "depth {depth}: {in_memory:?} / {in_redis:?}");
        assert_eq!(in_memory.is_ok(), depth < 100, "depth {depth}: {in_memory:?}");
        let in_memory = memory.update_metadata("k", meta_under_a(nested(depth))).await.map_err(|e| format!("{e:?}"));
        let in_redis =
            redis_store.update_metadata("k", meta_under_a(nested(depth))).await.map_err(|e| format!("{e:?}"));
        assert_eq!(in_memory, in_redis, "update_metadata, depth {depth}");
    }
}

/// The index key deleted again and again while 32 tasks on two instances
/// write: once the writes are over (and one more set has noticed the last
/// loss), the entries are within the capacity and the index lists them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_capacity_holds_when_the_index_is_lost_under_concurrent_writers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = RedisServer::start();
    // Other keys, so that a rebuild's walk takes several SCAN pages and the
    // index can be lost again in the middle of one.
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.set(format!("other:{i}"), i).ignore();
    }
    pipe.exec_async(&mut server.admin().await).await.unwrap();
    let ttl = TtlPolicy::new(Duration::from_secs(600)).unwrap().with_max_size(50).unwrap();
    for (prefix, policy, index) in
        [("cl:", Policy::from(LruPolicy::new(50).unwrap()), "lru"), ("ct:", Policy::from(ttl), "expiry")]
    {
        let a: Arc<RedisStore<u32>> = Arc::new(store(&server, prefix, Some(policy.clone())).await);
        let b: Arc<RedisStore<u32>> = Arc::new(store(&server, prefix, Some(policy)).await);
        let stop = Arc::new(AtomicBool::new(false));
        let raw_index = [prefix.as_bytes(), "\u{FFFF}".as_bytes(), index.as_bytes()].concat();
        let deleter = {
            let stop = Arc::clone(&stop);
            let mut conn = server.admin().await;
            tokio::spawn(async move {
                let mut deleted = 0;
                while !stop.load(Ordering::Relaxed) {
                    deleted += redis::cmd("DEL").arg(&raw_index).query_async::<usize>(&mut conn).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                deleted
            })
        };
        let mut writers = Vec::new();
        for task in 0..32u32 {
            let s = Arc::clone(if task % 2 == 0 { &a } else { &b });
            writers.push(tokio::spawn(async move {
                for i in 0..100u32 {
                    s.set(&format!("t{task}k{}", i % 30), i, SetOptions::new()).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let deleted = deleter.await.unwrap();
        assert!(deleted > 0, "{prefix}: the index was never there to delete");
        a.set("last", 0, SetOptions::new()).await.unwrap();
        let mut conn = server.admin().await;
        let n = entries_under(&mut conn, prefix).await.len();
        assert!(n <= 50, "{prefix}: {n} entries for a capacity of 50 ({deleted} index deletions)");
        assert_eq!(a.size().await.unwrap(), n, "{prefix}: the index lists every entry");
    }
}
