//! What only RedisStore has: the stored format, serialization errors, prefix
//! isolation on a shared server, a capacity shared between instances, many
//! SCAN pages, and 64 concurrent tasks on one store.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, Metadata, SetOptions, stores::RedisStore};
use redis::aio::MultiplexedConnection;
use support::{RedisServer, meta, redis_store as store, sorted};

async fn raw_get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn stored_format_is_documented_json_with_redis_ttl() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let store: RedisStore<serde_json::Value> = store(&server, "fmt:", None).await;
    store.set("plain", serde_json::json!({"b": [1, 2], "a": "x"}), SetOptions::new()).await.unwrap();
    assert_eq!(raw_get(&mut conn, "fmt:plain").await.as_deref(), Some(r#"{"v":{"a":"x","b":[1,2]}}"#));
    let ttl: i64 = redis::cmd("PTTL").arg("fmt:plain").query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "no TTL, no expiry");

    let m = meta(serde_json::json!({"v": 1}));
    store.set("meta", serde_json::json!(3), SetOptions::new().ttl(Duration::from_secs(100)).metadata(m)).await.unwrap();
    assert_eq!(raw_get(&mut conn, "fmt:meta").await.as_deref(), Some(r#"{"v":3,"m":{"v":1}}"#));
    let ttl: i64 = redis::cmd("PTTL").arg("fmt:meta").query_async(&mut conn).await.unwrap();
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");

    // Written by another program: the value text is kept byte for byte by update_metadata.
    let foreign = r#"{"m":{"a":1},  "v":{"z":1e400,"big":123456789012345678901234567890}}"#;
    redis::cmd("SET").arg("fmt:foreign").arg(foreign).arg("PX").arg(100_000).exec_async(&mut conn).await.unwrap();
    assert!(store.update_metadata("foreign", meta(serde_json::json!({"b": 2}))).await.unwrap());
    let after = raw_get(&mut conn, "fmt:foreign").await.unwrap();
    assert_eq!(after, r#"{"v":{"z":1e400,"big":123456789012345678901234567890},"m":{"a":1,"b":2}}"#);
    let ttl: i64 = redis::cmd("PTTL").arg("fmt:foreign").query_async(&mut conn).await.unwrap();
    assert!(ttl > 90_000, "update_metadata keeps the TTL: {ttl}");
}

#[tokio::test]
async fn serialization_errors_write_nothing_and_never_panic() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    // JSON object keys must be strings: a map keyed by tuples cannot be encoded.
    let maps: RedisStore<HashMap<(u8, u8), u8>> = store(&server, "ser:", None).await;
    let r = maps.set("m", HashMap::from([((1, 2), 3)]), SetOptions::new()).await;
    assert!(matches!(r, Err(CacheError::Serialization(_))), "{r:?}");
    assert_eq!(maps.size().await.unwrap(), 0, "nothing written");
    assert_eq!(maps.stats().sets, 0);

    let numbers: RedisStore<u32> = store(&server, "ser:", None).await;
    let strings: RedisStore<String> = store(&server, "ser:", None).await;
    strings.set("text", "not a number".into(), SetOptions::new()).await.unwrap();
    let r = numbers.get("text").await;
    assert!(matches!(r, Err(CacheError::Serialization(_))), "{r:?}");
    redis::cmd("SET").arg("ser:garbage").arg(b"\xff\x00 not json").exec_async(&mut conn).await.unwrap();
    for r in [numbers.get("garbage").await.map(|_| ()), numbers.get_metadata("garbage").await.map(|_| ())] {
        assert!(matches!(r, Err(CacheError::Serialization(_))), "{r:?}");
    }
    let r = numbers.update_metadata("garbage", Metadata::new()).await;
    assert!(matches!(r, Err(CacheError::Serialization(_))), "{r:?}");
    // A key of another Redis type is what a load in progress looks like (its
    // placeholder is a hash): no entry, not listed, nothing to decode.
    redis::cmd("HSET").arg("ser:hash").arg("f").arg("v").exec_async(&mut conn).await.unwrap();
    assert_eq!(strings.get("hash").await.unwrap(), None);
    assert!(!strings.contains("hash").await.unwrap());
    assert!(!strings.keys(None).await.unwrap().contains(&"hash".to_string()));
    assert!(strings.delete("garbage").await.unwrap(), "a bad entry can still be deleted");
}

#[tokio::test]
async fn prefixes_isolate_stores_whatever_they_contain() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let prefixes = ["a*[:", "\\:", "app:", "b?]:", "c\\*:", "[^x]:", "日本:"];
    let mut stores = Vec::new();
    for (i, prefix) in prefixes.iter().enumerate() {
        let policy = (i % 2 == 0).then(|| LruPolicy::new(100).unwrap().into());
        stores.push(store::<String>(&server, prefix, policy).await);
    }
    let keys = ["1", "*", "[", "x]", "\\", "k y"];
    for s in &stores {
        for k in keys {
            s.set(k, format!("{}{k}", s.prefix()), SetOptions::new()).await.unwrap();
        }
    }
    // Neighbours that a sloppy pattern would catch: the prefixes themselves, and near misses.
    let neighbours = [
        "a*[", "a*", "aX[:1", "a*X:", "\\", "\\x:1", "app", "apq:1", "b?]", "bX]:1", "c\\", "[^x", "[^x]", "x", "日本",
    ];
    for n in neighbours {
        redis::cmd("SET").arg(n).arg("neighbour").exec_async(&mut conn).await.unwrap();
    }

    for s in &stores {
        assert_eq!(sorted(s.keys(None).await.unwrap()), sorted(keys.iter().map(|k| k.to_string()).collect()));
        for k in keys {
            assert_eq!(s.get(k).await.unwrap(), Some(format!("{}{k}", s.prefix())));
        }
    }
    // invalidate("*") and clear remove only their own store's entries.
    assert_eq!(stores[0].invalidate("*").await.unwrap(), keys.len());
    stores[1].clear().await.unwrap();
    assert_eq!(stores[2].invalidate("[^1]*").await.unwrap(), keys.len() - 1);
    assert_eq!(stores[3].invalidate("\\**").await.unwrap(), 1);
    for (i, s) in stores.iter().enumerate() {
        let expected = match i {
            0 | 1 => 0,
            2 => 1,
            3 => keys.len() - 1,
            _ => keys.len(),
        };
        assert_eq!(s.size().await.unwrap(), expected, "store {i} ({:?})", s.prefix());
    }
    for n in neighbours {
        assert_eq!(raw_get(&mut conn, n).await.as_deref(), Some("neighbour"), "{n:?} was touched");
    }
    for s in &stores {
        s.clear().await.unwrap();
    }
    let left: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    // Internal keys (U+FFFF) may stay behind a clear (tag sets); entries may not.
    let left: Vec<String> =
        left.into_iter().filter_map(|k| String::from_utf8(k).ok()).filter(|k| !k.contains('\u{FFFF}')).collect();
    assert_eq!(sorted(left), sorted(neighbours.iter().map(|n| n.to_string()).collect()));
}

#[tokio::test]
async fn capacity_is_shared_by_every_instance_on_a_prefix() {
    let server = RedisServer::start();
    let a: RedisStore<String> = store(&server, "shared:", Some(LruPolicy::new(3).unwrap().into())).await;
    let b: RedisStore<String> = store(&server, "shared:", Some(LruPolicy::new(3).unwrap().into())).await;
    a.set("1", "1".into(), SetOptions::new()).await.unwrap();
    a.set("2", "2".into(), SetOptions::new()).await.unwrap();
    b.set("3", "3".into(), SetOptions::new()).await.unwrap();
    assert_eq!(b.get("1").await.unwrap().as_deref(), Some("1"), "b refreshes a's entry");
    b.set("4", "4".into(), SetOptions::new()).await.unwrap();
    assert_eq!(sorted(a.keys(None).await.unwrap()), ["1", "3", "4"]);
    assert_eq!((a.stats().evictions, b.stats().evictions), (0, 1), "counted by the instance that evicted");
    assert_eq!((a.stats().sets, b.stats().sets), (2, 2), "counters are per instance");
}

#[tokio::test]
async fn many_scan_pages() {
    let server = RedisServer::start();
    for policy in [None, Some(LruPolicy::new(5_000).unwrap().into())] {
        let s: RedisStore<u32> = store(&server, "pages:", policy).await;
        let mut conn = server.admin().await;
        let mut pipe = redis::pipe();
        for i in 0..2_500u32 {
            pipe.set(format!("pages:{i}"), format!(r#"{{"v":{i}}}"#)).ignore();
        }
        pipe.exec_async(&mut conn).await.unwrap();
        for i in 0..10u32 {
            s.set(&format!("x{i}"), i, SetOptions::new()).await.unwrap();
        }
        assert_eq!(s.size().await.unwrap(), 2_510);
        assert_eq!(s.keys(Some("1??")).await.unwrap().len(), 100);
        assert_eq!(s.invalidate("[0-9]*").await.unwrap(), 2_500);
        assert_eq!(s.invalidate("*").await.unwrap(), 10);
        assert_eq!(s.size().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_share_one_store() {
    let server = RedisServer::start();
    for (prefix, policy, max) in
        [("conc:", None, usize::MAX), ("conc-lru:", Some(LruPolicy::new(40).unwrap().into()), 40)]
    {
        let s: Arc<RedisStore<String>> = Arc::new(store(&server, prefix, policy).await);
        let deadline = Instant::now() + Duration::from_secs(3);
        // Every value any task wrote (recorded before the write), so a read
        // can prove it returned a real write for its key, not just a lookalike.
        let written = Arc::new(std::sync::Mutex::new(std::collections::HashSet::<String>::new()));
        let mut tasks = Vec::new();
        for task in 0..64u64 {
            let s = Arc::clone(&s);
            let written = Arc::clone(&written);
            tasks.push(tokio::spawn(async move {
                let mut rng = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let (mut ops, mut hits) = (0u64, 0u64);
                while ops < 300 && Instant::now() < deadline {
                    let key = format!("k{}", next() % 100);
                    match next() % 10 {
                        0..=3 => {
                            let m = meta(serde_json::json!({ "by": task }));
                            let value = format!("{key}|{task}|{ops}");
                            written.lock().unwrap().insert(value.clone());
                            s.set(&key, value, SetOptions::new().metadata(m)).await.unwrap();
                        }
                        4..=6 => {
                            if let Some(v) = s.get(&key).await.unwrap() {
                                assert!(v.starts_with(&format!("{key}|")), "{key} returned {v}");
                                assert!(written.lock().unwrap().contains(&v), "{key} returned {v}, never written");
                                hits += 1;
                            }
                        }
                        7 => {
                            s.delete(&key).await.unwrap();
                        }
                        8 => {
                            if s.update_metadata(&key, meta(serde_json::json!({ "seen": task }))).await.unwrap() {
                                // The entry may be replaced or deleted in between: only check a live one.
                                if let Some(m) = s.get_metadata(&key).await.unwrap() {
                                    assert!(m.contains_key("by") || m.contains_key("seen"), "{m:?}");
                                }
                            }
                        }
                        _ => {
                            s.invalidate(&format!("{key}?")).await.unwrap();
                        }
                    }
                    ops += 1;
                }
                (ops, hits)
            }));
        }
        let (mut ops, mut hits) = (0, 0);
        for t in tasks {
            let (o, h) = t.await.unwrap();
            ops += o;
            hits += h;
        }
        assert!(ops >= 64 * 50, "only {ops} operations ran");
        assert!(hits > 0, "no get ever found a value");
        let size = s.size().await.unwrap();
        assert!(size <= max, "{size} entries under a capacity of {max}");
        for key in s.keys(None).await.unwrap() {
            let v = s.get(&key).await.unwrap().unwrap();
            assert!(v.starts_with(&format!("{key}|")), "{key} -> {v}");
        }
        let stats = s.stats();
        assert_eq!(stats.hits, hits + s.keys(None).await.unwrap().len() as u64);
    }
}

/// Time-to-idle on Redis: the header written with Redis's clock, the key's
/// expiry moved by reads only (a read of a plain entry, as v0.2 wrote it,
/// changes nothing), capped by the TTL deadline; metadata updates keep the
/// header; a bounded store's expiry index moves with the key.
#[tokio::test]
async fn idle_entries_slide_their_expiry_on_reads_and_old_entries_read_as_before() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let store: RedisStore<u32> = store(&server, "idle:", None).await;
    let pttl_conn = conn.clone();
    let pttl = |key: &'static str| {
        let mut conn = pttl_conn.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.unwrap() }
    };
    store.set("k", 1, SetOptions::new().idle(Duration::from_secs(10)).ttl(Duration::from_secs(30))).await.unwrap();
    let raw = raw_get(&mut conn, "idle:k").await.unwrap();
    let now_ms = |conn: &mut MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
            s * 1000 + us / 1000
        }
    };
    let t: u64 = raw.strip_prefix(r#"{"i":10000,"d":"#).and_then(|r| r.split(',').next()).unwrap().parse().unwrap();
    let now = now_ms(&mut conn).await;
    assert!((now + 29_000..=now + 30_000).contains(&t), "the TTL deadline on Redis's clock: {raw}");
    assert!(pttl("idle:k").await <= 10_000, "the idle time first");
    // Age the key, as if unread for 5 s: a read moves it back to 10 s.
    let _: () = redis::cmd("PEXPIRE").arg("idle:k").arg(5_000).query_async(&mut conn).await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(1));
    assert!(pttl("idle:k").await > 9_000);
    // contains and get_metadata are no reads.
    let _: () = redis::cmd("PEXPIRE").arg("idle:k").arg(5_000).query_async(&mut conn).await.unwrap();
    assert!(store.contains("k").await.unwrap());
    assert!(store.get_metadata("k").await.unwrap().is_some());
    assert!(pttl("idle:k").await <= 5_000);
    // update_metadata keeps the header (and the TTL); reads still slide it.
    assert!(store.update_metadata("k", meta(serde_json::json!({"a": 1}))).await.unwrap());
    let raw = raw_get(&mut conn, "idle:k").await.unwrap();
    assert!(raw.starts_with(r#"{"i":10000,"d":"#) && raw.ends_with(r#","v":1,"m":{"a":1}}"#), "{raw}");
    assert_eq!(store.get("k").await.unwrap(), Some(1));
    assert!(pttl("idle:k").await > 9_000);
    // Near the TTL deadline, a read moves the expiry no further than it.
    let near_deadline: u64 = now_ms(&mut conn).await + 2_000;
    let header = format!(r#"{{"i":10000,"d":{near_deadline},"v":7}}"#);
    redis::cmd("SET").arg("idle:capped").arg(&header).arg("PX").arg(1_000).exec_async(&mut conn).await.unwrap();
    assert_eq!(store.get("capped").await.unwrap(), Some(7));
    let left = pttl("idle:capped").await;
    assert!((1_000..=2_000).contains(&left), "capped by the TTL deadline: {left}");

    // What v0.2 wrote: no header. It reads, and a read changes nothing.
    redis::cmd("SET")
        .arg("idle:old")
        .arg(r#"{"v":5,"m":{"i":1}}"#)
        .arg("PX")
        .arg(4_000)
        .exec_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.get("old").await.unwrap(), Some(5));
    assert!(pttl("idle:old").await <= 4_000);
    redis::cmd("SET").arg("idle:forever").arg(r#"{"v":6}"#).exec_async(&mut conn).await.unwrap();
    assert_eq!(store.get("forever").await.unwrap(), Some(6));
    assert_eq!(pttl("idle:forever").await, -1);

    // A write after the read but before the touch is not touched (the header guard).
    store.set("g", 1, SetOptions::new()).await.unwrap();
    assert_eq!(pttl("idle:g").await, -1);

    // A bounded store: the expiry index moves with the key.
    let bounded: RedisStore<u32> = support::redis_store(
        &server,
        "idleb:",
        Some(pepperpy_caching::TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(2).unwrap().into()),
    )
    .await;
    bounded.set("a", 1, SetOptions::new().idle(Duration::from_secs(2))).await.unwrap(); // due at 2 s
    bounded.set("b", 2, SetOptions::new().ttl(Duration::from_secs(3))).await.unwrap(); // due at 3 s
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(bounded.get("a").await.unwrap(), Some(1)); // due at 3.5 s now
    // Under TTL the soonest to expire goes: b, now that a's index score moved with its read.
    bounded.set("c", 3, SetOptions::new()).await.unwrap();
    assert_eq!(bounded.get("b").await.unwrap(), None, "b was due first");
    assert_eq!(bounded.get("a").await.unwrap(), Some(1));
    assert_eq!(bounded.stats().evictions, 1);
}

/// Tags and time-to-idle on one entry: the document carries both (idle
/// header, then the tags), `invalidate_tags` finds it (the tag scripts read
/// past the idle header), `get_tags` reads the tags back, and a read
/// slides its expiry; with a capacity, a `get_or_refresh` stamp first, and
/// through a batch too.
#[tokio::test]
async fn tagged_idle_entries_are_found_by_invalidate_tags() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    for (prefix, policy) in
        [("ti:", None), ("tib:", Some(pepperpy_caching::Policy::from(LruPolicy::new(100).unwrap())))]
    {
        let store: RedisStore<u32> = store(&server, prefix, policy).await;
        let options = || SetOptions::new().idle(Duration::from_secs(10)).tags(["t1", "t2"]);
        store.set("a", 1, options()).await.unwrap();
        store.set_many(vec![("b", 2)], options()).await.unwrap();
        store.set("other", 3, SetOptions::new().idle(Duration::from_secs(10)).tags(["t3"])).await.unwrap();
        let raw = raw_get(&mut conn, &format!("{prefix}a")).await.unwrap();
        assert!(raw.starts_with(r#"{"i":10000,"d":0,"t":["t1","t2"],"v":1"#), "{prefix}: {raw}");
        assert_eq!(store.get_tags("a").await.unwrap(), Some(vec!["t1".to_string(), "t2".to_string()]));
        let _: () = redis::cmd("PEXPIRE").arg(format!("{prefix}a")).arg(3_000).query_async(&mut conn).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(1));
        let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}a")).query_async(&mut conn).await.unwrap();
        assert!(pttl > 9_000, "{prefix}: the read slid it: {pttl}");
        assert_eq!(store.invalidate_tags(&["t2"]).await.unwrap(), 2, "{prefix}");
        assert_eq!(store.get_many(&["a", "b", "other"]).await.unwrap(), [None, None, Some(3)], "{prefix}");
    }
}
