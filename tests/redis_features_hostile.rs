//! A hostile user's review of the Redis batch calls and removal listener:
//! duplicate keys in a batch, every removal reported exactly once on a real
//! cluster across slots, evictions reported as counted, and a master killed
//! before a batch (what was deleted is what was reported and counted).
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use pepperpy_caching::stores::RedisStore;
use pepperpy_caching::{CacheStore, LruPolicy, Policy, RemovalReason, SetOptions};
use support::{RedisCluster, RedisServer, redis_builder};

type Log = Arc<Mutex<Vec<(String, String, RemovalReason)>>>;

fn take(log: &Log) -> Vec<(String, String, RemovalReason)> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn n(key: &str, value: &str, reason: RemovalReason) -> (String, String, RemovalReason) {
    (key.to_string(), value.to_string(), reason)
}

fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("key:{i}")).collect()
}

#[tokio::test]
async fn duplicate_keys_in_a_batch_are_reported_once_per_value() {
    let server = RedisServer::start();
    for (i, policy) in [None::<Policy>, Some(LruPolicy::new(100).unwrap().into())].into_iter().enumerate() {
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let store: RedisStore<String> = redis_builder(&server, &format!("dup{i}:"), policy)
            .on_remove(move |k, v, r| sink.lock().unwrap().push((k.to_string(), v, r)))
            .build()
            .await
            .unwrap();
        store.set("a", "0".into(), SetOptions::new()).await.unwrap();
        store.set_many(vec![("a", "1".into()), ("a", "2".into())], SetOptions::new()).await.unwrap();
        assert_eq!(take(&log), [n("a", "0", RemovalReason::Replaced), n("a", "1", RemovalReason::Replaced)]);
        assert_eq!(store.get_many(&["a", "a"]).await.unwrap(), [Some("2".into()), Some("2".into())]);
        assert_eq!(store.delete_many(&["a", "a", "zz"]).await.unwrap(), 1);
        assert_eq!(take(&log), [n("a", "2", RemovalReason::Deleted)]);
        let stats = store.stats();
        assert_eq!((stats.sets, stats.hits, stats.deletes), (3, 2, 1), "{stats:?}");
    }
}

#[tokio::test]
async fn a_cluster_reports_each_removal_once_across_slots() {
    let cluster = RedisCluster::shared();
    for (i, policy) in [None::<Policy>, Some(LruPolicy::new(250).unwrap().into())].into_iter().enumerate() {
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let mut builder = RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix(format!("review-once{i}:"))
            .on_remove(move |k, v, r| sink.lock().unwrap().push((k.to_string(), v, r)));
        let bounded = policy.is_some();
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        let store = builder.build().await.unwrap();
        let keys = keys(600);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        store.set_many(refs.iter().map(|k| (*k, format!("old:{k}"))).collect(), SetOptions::new()).await.unwrap();
        let first = take(&log);
        let evicted = store.stats().evictions as usize;
        assert_eq!(first.len(), evicted, "each eviction reported once: {}", first.len());
        assert!(first.iter().all(|(k, v, r)| *r == RemovalReason::Evicted && *v == format!("old:{k}")));
        assert_eq!(first.iter().map(|e| &e.0).collect::<HashSet<_>>().len(), first.len(), "no key twice");
        let held = store.size().await.unwrap() as usize;
        assert_eq!(held + evicted, 600, "what is not held was reported evicted (bounded {bounded})");
        let got = store.get_many(&refs).await.unwrap();
        for (k, v) in refs.iter().zip(&got) {
            let reported = first.iter().any(|e| e.0 == *k);
            assert_eq!(v.is_none(), reported, "{k}: missing exactly when reported evicted");
        }
        store.set_many(refs.iter().map(|k| (*k, format!("new:{k}"))).collect(), SetOptions::new()).await.unwrap();
        let second = take(&log);
        let replaced: Vec<_> = second.iter().filter(|e| e.2 == RemovalReason::Replaced).collect();
        let replaced_keys: HashSet<_> = replaced.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(replaced.len(), replaced_keys.len(), "no replaced key twice");
        if !bounded {
            assert_eq!(replaced.len(), 600);
        }
        let before = store.stats().deletes;
        let removed = store.delete_many(&refs).await.unwrap();
        let third = take(&log);
        assert!(third.iter().all(|(k, v, r)| *r == RemovalReason::Deleted && *v == format!("new:{k}")));
        assert_eq!(third.len(), removed, "each delete reported once");
        assert_eq!(store.stats().deletes - before, removed as u64);
        assert_eq!(store.size().await.unwrap(), 0);
    }
}

/// A master killed: the batch fails; what it did delete (on the live
/// masters) is exactly what was reported and counted.
#[tokio::test]
async fn a_cluster_batch_with_a_master_down_reports_what_it_deleted() {
    let mut cluster = RedisCluster::start();
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("review-down:")
        .on_remove(move |k, v, r| sink.lock().unwrap().push((k.to_string(), v, r)))
        .build()
        .await
        .unwrap();
    let keys = keys(300);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.set_many(refs.iter().map(|k| (*k, k.to_string())).collect(), SetOptions::new()).await.unwrap();
    assert!(take(&log).is_empty());
    let (masters, _) = cluster.roles();
    cluster.nodes[masters[0]].stop();
    let before = store.stats();
    let result = store.delete_many(&refs).await;
    let reported = take(&log);
    let deleted = store.stats().deletes - before.deletes;
    assert_eq!(reported.len() as u64, deleted, "reported {} counted {deleted} ({result:?})", reported.len());
    assert_eq!(reported.iter().map(|e| &e.0).collect::<HashSet<_>>().len(), reported.len());
    assert!(result.is_err(), "a master is down: {result:?}");
    assert!(0 < deleted && deleted < 300, "the live masters' keys went, the dead one's stayed: {deleted}");
    // The get_many of the same keys fails too, and counts nothing.
    let before = store.stats();
    assert!(store.get_many(&refs).await.is_err());
    let after = store.stats();
    assert_eq!((after.hits, after.misses), (before.hits, before.misses), "a failed batch counts nothing");
}

/// A near cache's batch that fails (a value under one key does not decode)
/// counts nothing, as a RedisStore's failed batch does: not even the hits
/// its memory tier answered.
#[tokio::test]
async fn a_near_cache_batch_that_fails_counts_nothing() {
    let server = RedisServer::start();
    let near = pepperpy_caching::stores::NearCache::<u64>::builder(server.url()).prefix("nf:").build().await.unwrap();
    let other: RedisStore<String> = redis_builder(&server, "nf:", None).build().await.unwrap();
    near.set("x", 1, SetOptions::new()).await.unwrap();
    assert_eq!(near.get("x").await.unwrap(), Some(1));
    assert_eq!(near.get_many(&["x"]).await.unwrap(), [Some(1)]);
    assert!(near.in_memory("x"), "x is answered from memory");
    other.set("bad", "not a number".into(), SetOptions::new()).await.unwrap();
    assert!(near.get("bad").await.is_err(), "a single get of it fails");
    let before = near.stats();
    assert!(near.get_many(&["x", "bad"]).await.is_err());
    let after = near.stats();
    assert_eq!((after.hits, after.misses), (before.hits, before.misses), "a failed batch counts nothing");
}

/// A bounded batch with duplicate keys and evictions inside it reports and
/// counts what the same single calls report and count.
#[tokio::test]
async fn a_bounded_batch_reports_what_its_single_calls_report() {
    let server = RedisServer::start();
    let make = |prefix: &'static str| {
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let builder = redis_builder::<String>(&server, prefix, Some(LruPolicy::new(3).unwrap().into()))
            .on_remove(move |k, v, r| sink.lock().unwrap().push((k.to_string(), v, r)));
        (builder, log)
    };
    let (b, batch_log) = make("bb:");
    let (s, single_log) = make("bs:");
    let (batch, single) = (b.build().await.unwrap(), s.build().await.unwrap());
    let ops = ["a", "b", "c", "a", "d", "e", "b", "a"];
    batch
        .set_many(ops.iter().enumerate().map(|(i, k)| (*k, format!("{k}{i}"))).collect(), SetOptions::new())
        .await
        .unwrap();
    for (i, k) in ops.iter().enumerate() {
        single.set(k, format!("{k}{i}"), SetOptions::new()).await.unwrap();
    }
    assert_eq!(take(&batch_log), take(&single_log));
    let keys = ["a", "b", "c", "d", "e", "a"];
    assert_eq!(batch.get_many(&keys).await.unwrap(), {
        let mut v = Vec::new();
        for k in keys {
            v.push(single.get(k).await.unwrap());
        }
        v
    });
    assert_eq!(batch.delete_many(&keys).await.unwrap(), {
        let mut n = 0;
        for k in keys {
            n += usize::from(single.delete(k).await.unwrap());
        }
        n
    });
    assert_eq!(take(&batch_log), take(&single_log));
    let (x, y) = (batch.stats(), single.stats());
    assert_eq!(
        (x.hits, x.misses, x.sets, x.deletes, x.evictions),
        (y.hits, y.misses, y.sets, y.deletes, y.evictions),
        "{x:?} {y:?}"
    );
}
