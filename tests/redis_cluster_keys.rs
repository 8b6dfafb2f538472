//! Hostile tests of RedisStore on Redis Cluster, about keys and layout: odd
//! keys and prefixes, foreign keys under the prefix, lost and rebuilt bucket
//! indexes, tiny and huge bucket counts, the bucket count record, hostnames
//! and unknown endpoints, passwords, stores pointed at a cluster node by the
//! single-node builder or at a standalone server by the cluster builder.
//! Also: tests/redis_cluster_faults.rs, tests/redis_cluster_migration.rs.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{
    CacheError, CacheStore, DynCacheStore, LruPolicy, Metadata, SetOptions,
    stores::{NearCache, RedisStore},
};
use support::cluster::{bucket_of, every_call, within};
use support::{RedisCluster, sorted, within_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_braces_and_forged_tags_round_trip() {
    let cluster = RedisCluster::shared();
    let store = RedisStore::<String>::cluster_builder(cluster.urls()).prefix("odd:").build().await.unwrap();
    let n = 16;
    let mut keys: Vec<String> =
        ["{", "}", "{}", "}{", "{{}}", "{a}", "a{b}c", "x}y{z", "{}{}", " {", "\u{7f}}", "日本{x}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    // Keys that start with another bucket's tag, or with their own.
    let tags = cluster.bucket_tags(n).await;
    for tag in &tags {
        keys.push(format!("{tag}k"));
        keys.push(tag.clone());
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
        let full = format!("odd:{}{key}", tags[bucket_of(key, n)]);
        let own = format!("odd:{}", tags[bucket_of(key, n)]);
        assert_eq!(cluster.keyslot(&full).await, cluster.keyslot(&own).await);
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
    let mut conn = cluster.raw().await;
    // Keys of someone else under the same prefix but without a tag, with a
    // wrong bucket's tag, with a tag that is not the store's.
    let tags = cluster.bucket_tags(n).await;
    let tag3 = &tags[3];
    let wrong = (0..n).find(|&i| i != bucket_of("victim", n)).unwrap();
    let foreign: Vec<String> = vec![
        "sp:victim".into(),
        format!("sp:{}victim", tags[wrong]),
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
    let cluster = RedisCluster::shared();
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
    let mut conn = cluster.raw().await;
    let tags = cluster.bucket_tags(n).await;
    let tag = tags[0].clone();
    let index = [b"lost:".as_slice(), tag.as_bytes(), "\u{FFFF}lru".as_bytes()].concat();
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
        cluster.all_raw_keys(format!("lost:{tag}").as_bytes()).await.into_iter().filter(|k| !has_marker(k)).count();
    assert_eq!(in_bucket0, cap / n, "bucket 0 holds exactly its share");
    // The other buckets were not disturbed.
    for (i, t) in tags.iter().enumerate().skip(1) {
        let count =
            cluster.all_raw_keys(format!("lost:{t}").as_bytes()).await.into_iter().filter(|k| !has_marker(k)).count();
        assert_eq!(count, cap / n, "bucket {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_bucket_count_works() {
    let cluster = RedisCluster::shared();
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
    let cluster = RedisCluster::shared();
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
    let cluster = RedisCluster::shared();
    let url = cluster.urls()[0].clone();
    match RedisStore::<String>::builder(url.clone()).prefix("single:").build().await {
        Err(CacheError::Policy(message)) => assert!(message.contains("cluster_builder"), "{message}"),
        Err(other) => panic!("expected a Policy error naming cluster_builder, got {other:?}"),
        Ok(_) => panic!("a single-node store was built on a cluster node"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_pointed_at_a_cluster_node_is_refused_or_works() {
    let cluster = RedisCluster::shared();
    let url = cluster.urls()[0].clone();
    match NearCache::<String>::builder(url).prefix("near:").build().await {
        Err(CacheError::Policy(message)) => assert!(message.contains("cluster_builder"), "{message}"),
        Err(other) => panic!("expected a Policy error naming cluster_builder, got {other:?}"),
        Ok(_) => panic!("a single-node store was built on a cluster node"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_shares_keep_the_capacity_and_the_index_in_step() {
    let cluster = RedisCluster::shared();
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
    let mut conn = cluster.raw().await;
    let tags = cluster.bucket_tags(16).await;
    for tag in &tags {
        let index = [b"tiny:".as_slice(), tag.as_bytes(), "\u{FFFF}lru".as_bytes()].concat();
        let list: Vec<Vec<u8>> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        for m in list.iter().filter(|m| !m.is_empty()) {
            let exists: i64 = redis::cmd("EXISTS").arg(m).query_async(&mut conn).await.unwrap();
            assert_eq!(exists, 1, "index member {:?} has no entry", String::from_utf8_lossy(m));
            members += 1;
        }
    }
    assert_eq!(members, size);
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
    let (masters, _) = cluster.roles();
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
async fn the_bucket_count_record_survives_allkeys_lru_eviction() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("ev:")
        .buckets(8)
        .policy(LruPolicy::new(1000).unwrap())
        .build()
        .await
        .unwrap();
    let master = cluster.master_of_key("ev:\u{FFFF}buckets".as_bytes()).await;
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
    let mut tag = String::new();
    for i in 0.. {
        tag = format!("f{i}");
        if cluster.master_of_key(&tag).await == master {
            break;
        }
    }
    let mut conn = cluster.raw().await;
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
    let _: () = redis::cmd("DEL").arg("ev:\u{FFFF}buckets".as_bytes()).query_async(&mut conn).await.unwrap();
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

/// 100 entries under `prefix` are listed, counted and invalidated.
async fn walks_work(cluster: &RedisCluster, prefix: &str) {
    let store = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix(prefix).build().await.unwrap();
    for i in 0..100u32 {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.keys(None).await.unwrap().len(), 100);
    assert_eq!(store.size().await.unwrap(), 100);
    assert_eq!(store.invalidate("k1*").await.unwrap(), 11);
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
    walks_work(&cluster, "hn:").await;
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
    walks_work(&cluster, "ue:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_password_works_everywhere() {
    let password = "s3cret-pw";
    let cluster = RedisCluster::start_with_password(password);
    let urls = cluster.urls();
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
    let wrong =
        RedisStore::<String>::cluster_builder(vec![format!("redis://:nope-pw@127.0.0.1:{}", cluster.nodes[0].port())])
            .prefix("pw:")
            .build()
            .await;
    match wrong {
        Err(e @ CacheError::Backend { .. }) => {
            let text = format!("{e:?} {e}");
            assert!(!text.contains("nope-pw"), "{text}");
            // Retrying with the same password fails the same way (the
            // cluster client reports it as I/O; the store asks a seed).
            assert!(!e.is_retryable(), "{:?}: {text}", e.kind());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_buckets_count_and_walk_within_the_default_timeouts() {
    let cluster = RedisCluster::shared();
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
    let server = support::RedisServer::start();
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

/// Whether a raw Redis key is one of the store's internal keys (index,
/// lock, tag set, bucket count: `prefix + tag + U+FFFF + name`).
fn has_marker(key: &[u8]) -> bool {
    key.windows(3).any(|w| w == "\u{FFFF}".as_bytes())
}
