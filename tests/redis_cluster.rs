//! RedisStore on a real Redis Cluster (three masters, three replicas): what
//! only a cluster has. Entries spread over the masters, a capacity holds
//! across them, `invalidate`/`keys`/`clear` see every master, loads and
//! refreshes keep their guarantees, and the store survives slot moves and a
//! master's death. The shared suite and the differential test also run on a
//! cluster (tests/store_suite.rs, tests/redis_differential.rs).
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, RefreshOptions, SetOptions, TokioRuntime, TtlPolicy, stores::RedisStore,
};
use support::cluster::within;
use support::{Frozen, RedisCluster, sorted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_store_spreads_over_the_masters_and_keeps_its_capacity() {
    let cluster = RedisCluster::shared();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("bound:")
        .buckets(8)
        .policy(LruPolicy::new(400).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..2000 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    // 2,000 keys over 8 buckets fill every bucket's share (50): the store
    // holds exactly its capacity, and evicted the rest.
    assert_eq!(store.size().await.unwrap(), 400);
    let keys = store.keys(None).await.unwrap();
    assert_eq!(keys.len(), 400);
    assert_eq!(store.stats().evictions, 1600);
    for key in &keys {
        let n = &key[1..];
        assert_eq!(store.get(key).await.unwrap(), Some(format!("v{n}")));
    }
    // The last key written is never the one evicted.
    assert_eq!(store.get("k1999").await.unwrap(), Some("v1999".into()));
    let per_master = cluster.raw_keys(b"bound:").await;
    assert_eq!(per_master.len(), 3);
    for (node, keys) in &per_master {
        assert!(keys.len() >= 50, "master {node} holds {} keys: the buckets did not spread", keys.len());
    }
    // Entries live only under the store's tags: one bucket's hash tag each.
    let tags: BTreeSet<String> = per_master
        .iter()
        .flat_map(|(_, keys)| keys.iter())
        .filter_map(|k| {
            String::from_utf8_lossy(k).strip_prefix("bound:{")?.split_once('}').map(|(tag, _)| tag.to_owned())
        })
        .collect();
    assert_eq!(tags.len(), 8, "{tags:?}");
    // A TTL-bounded store too.
    let ttl = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("ttl:")
        .buckets(4)
        .policy(TtlPolicy::new(Duration::from_secs(60)).unwrap().with_max_size(40).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..400 {
        ttl.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    assert_eq!(ttl.size().await.unwrap(), 40);
    assert_eq!(ttl.keys(None).await.unwrap().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_keys_and_clear_cover_every_master() {
    let cluster = RedisCluster::shared();
    let store = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix("walk:").build().await.unwrap();
    let other = RedisStore::<u32>::cluster_builder(cluster.urls()).prefix("other:").build().await.unwrap();
    for i in 0..600u32 {
        store.set(&format!("user:{i}"), i, SetOptions::new()).await.unwrap();
        store.set(&format!("post:{i}"), i, SetOptions::new()).await.unwrap();
    }
    other.set("user:1", 1, SetOptions::new()).await.unwrap();
    for (node, keys) in cluster.raw_keys(b"walk:").await {
        assert!(keys.len() > 100, "master {node} holds {} entries", keys.len());
    }
    assert_eq!(store.size().await.unwrap(), 1200);
    let users = sorted(store.keys(Some("user:1?")).await.unwrap());
    assert_eq!(users, sorted((10..20).map(|i| format!("user:{i}")).collect()));
    assert_eq!(store.invalidate("user:*").await.unwrap(), 600);
    assert_eq!(store.keys(Some("user:*")).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.size().await.unwrap(), 600);
    assert_eq!(store.get("post:599").await.unwrap(), Some(599));
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
    let left: usize = cluster.raw_keys(b"walk:").await.iter().map(|(_, keys)| keys.len()).sum();
    // Only the record of the bucket count is left.
    assert_eq!(left, 1);
    assert_eq!(other.get("user:1").await.unwrap(), Some(1), "another prefix is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_are_refused() {
    let cluster = RedisCluster::shared();
    let builder = || RedisStore::<String>::cluster_builder(cluster.urls());
    let policy = |e: Result<RedisStore<String>, CacheError>| match e {
        Err(CacheError::Policy(message)) => message,
        other => panic!("expected a Policy error, got {other:?}"),
    };
    assert!(policy(builder().prefix("{app}:").build().await).contains("must not contain"));
    assert!(policy(builder().prefix("a}:").build().await).contains("must not contain"));
    assert!(policy(builder().prefix("a:").buckets(0).build().await).contains("1..=16384"));
    assert!(policy(builder().prefix("a:").buckets(16_385).build().await).contains("1..=16384"));
    let small = builder().prefix("a:").buckets(8).policy(LruPolicy::new(4).unwrap()).build().await;
    assert!(policy(small).contains("buckets(4)"));
    // A single-node store has no buckets.
    let single = RedisStore::<String>::builder(cluster.urls()[0].clone()).buckets(4).build().await;
    assert!(policy(single).contains("cluster_builder"));
    // No node URL at all.
    assert!(matches!(
        RedisStore::<String>::cluster_builder(Vec::<String>::new()).build().await,
        Err(CacheError::Backend { .. })
    ));
    // Two processes that disagree on the bucket count would look for a key in
    // different places: the second is refused, the same count is accepted.
    builder().prefix("shared:").buckets(16).build().await.unwrap();
    let message = policy(builder().prefix("shared:").buckets(8).build().await);
    assert!(message.contains("buckets(16)"), "{message}");
    builder().prefix("shared:").build().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_keeps_its_guarantees_across_instances() {
    let cluster = RedisCluster::shared();
    let make = || async { cluster.lru_store("rt:").await };
    let (a, b) = (make().await, make().await);
    // Many callers on two instances: one load.
    let loads = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let loads = Arc::clone(&loads);
        calls.push(tokio::spawn(async move {
            let loader = || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, std::io::Error>("loaded".to_string())
            };
            store.try_get_or_set("hot", loader, SetOptions::new()).await
        }));
    }
    for call in calls {
        assert_eq!(within("a caller", call).await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // A write on another instance during a load wins over the load's value.
    let (load, release) = support::load::blocked_load(&a, "k", "older".to_string()).await;
    b.set("k", "newer".into(), SetOptions::new()).await.unwrap();
    release.notify_one();
    assert_eq!(within("the load", load).await.unwrap().unwrap(), "older");
    assert_eq!(a.get("k").await.unwrap(), Some("newer".into()));
    assert_eq!(b.get("k").await.unwrap(), Some("newer".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_value_is_served_while_one_refresh_runs() {
    let cluster = RedisCluster::shared();
    let store = Arc::new(RedisStore::<String>::cluster_builder(cluster.urls()).prefix("swr:").build().await.unwrap());
    let options = RefreshOptions::new(TokioRuntime, Duration::from_millis(100), Duration::from_secs(60));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let load = |value: &'static str| {
        let refreshes = Arc::clone(&refreshes);
        move || async move {
            refreshes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(value.to_string())
        }
    };
    assert_eq!(store.get_or_refresh("k", load("first"), &options).await.unwrap(), "first");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stale now: every caller gets the stale value at once; one refresh runs.
    for _ in 0..10 {
        assert_eq!(store.get_or_refresh("k", load("second"), &options).await.unwrap(), "first");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get("k").await.unwrap().as_deref() != Some("second") {
        assert!(Instant::now() < deadline, "the refresh never stored its value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refreshes.load(Ordering::SeqCst), 2, "one load, then one refresh");
    assert_eq!(store.stats().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_during_a_load_returns_nothing_wrong_and_the_store_recovers() {
    let mut cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("fail:")
            .policy(LruPolicy::new(1000).unwrap())
            .response_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap(),
    );
    for i in 0..100 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    // Let the replicas catch up before a master dies (replication is async).
    cluster.wait_for_replication();
    let (load, release) = support::load::blocked_load(&store, "victim", "loaded".to_string()).await;
    // The placeholder of the load sits on the master to kill.
    let master = cluster
        .raw_keys(b"fail:")
        .await
        .into_iter()
        .find(|(_, keys)| keys.iter().any(|k| k.ends_with(b"}victim")))
        .map(|(node, _)| node)
        .expect("the load's placeholder is on some master");
    cluster.nodes[master].stop();
    release.notify_one();
    match within("the load", load).await.unwrap() {
        Ok(value) => assert_eq!(value, "loaded"),
        Err(CacheError::Backend { .. }) => {}
        Err(other) => panic!("a load on a dead master: {other:?}"),
    }
    // Reads while the cluster fails over: the right value or a backend error.
    // The bound is liveness, not speed: on 2 shared cores under a loaded CI
    // run, failover plus the client's slot-map refresh passed 30 s once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recovered = false;
    while Instant::now() < deadline {
        let mut all_ok = true;
        for i in 0..100 {
            match store.get(&format!("k{i}")).await {
                Ok(Some(v)) => assert_eq!(v, format!("v{i}")),
                // Lost with the master (written after the last replication).
                Ok(None) => {}
                Err(CacheError::Backend { .. }) => all_ok = false,
                Err(other) => panic!("{other:?}"),
            }
        }
        if all_ok && store.set("after", "x".into(), SetOptions::new()).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not work again within 60 s of the master's death");
    cluster.wait_until_ok(Duration::from_secs(30));
    // Works again everywhere: every key can be written and read back.
    for i in 0..100 {
        let key = format!("k{i}");
        store.set(&key, format!("w{i}"), SetOptions::new()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Some(format!("w{i}")));
    }
    let got = store.get_or_set("victim", || async { "again".to_string() }, SetOptions::new()).await.unwrap();
    assert!(got == "again" || got == "loaded", "{got}");
    assert!(store.keys(None).await.unwrap().len() >= 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moving_under_traffic_are_followed() {
    let cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::<String>::cluster_builder(cluster.urls())
            .prefix("move:")
            .policy(LruPolicy::new(10_000).unwrap())
            .build()
            .await
            .unwrap(),
    );
    for i in 0..300 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    // Readers and writers run while half of one master's slots move to another.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (store, stop, errors) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&errors));
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..300 {
                    match store.get(&format!("k{i}")).await {
                        Ok(Some(v)) => assert_eq!(v, format!("v{i}"), "a wrong value during the move"),
                        Ok(None) => panic!("k{i} vanished during the move"),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                round += 1;
            }
            round
        })
    };
    // Invalidations during the move: each one deletes every matching key, or
    // fails; none may leave a key behind (the keys of a migrating slot are on
    // two masters at once).
    let invalidations = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut complete, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                for i in 0..100 {
                    while store.set(&format!("inv:{i}"), "x".into(), SetOptions::new()).await.is_err() {}
                }
                match store.invalidate("inv:*").await {
                    Ok(n) => {
                        assert_eq!(n, 100, "an invalidation during the move missed keys");
                        complete += 1;
                    }
                    Err(CacheError::Backend { .. }) => failed += 1,
                    Err(other) => panic!("{other:?}"),
                }
            }
            (complete, failed)
        })
    };
    let (masters, _) = cluster.roles();
    let mut command = cluster.reshard_command(masters[0], masters[1], 2730);
    let reshard = tokio::task::spawn_blocking(move || command.output().expect("cannot run redis-cli"));
    let out = within("the reshard", reshard).await.unwrap();
    assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stderr));
    cluster.wait_until_ok(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let rounds = within("the traffic", traffic).await.unwrap();
    assert!(rounds >= 1);
    let (complete, failed) = within("the invalidations", invalidations).await.unwrap();
    eprintln!("{complete} complete and {failed} failed invalidations during the move");
    store.invalidate("inv:*").await.unwrap();
    // After the move: every entry is found, listed, counted and deletable.
    let keys = store.keys(None).await.unwrap();
    assert_eq!(keys.len(), 300);
    assert_eq!(store.size().await.unwrap(), 300);
    for i in 0..300 {
        assert_eq!(store.get(&format!("k{i}")).await.unwrap(), Some(format!("v{i}")));
    }
    assert_eq!(store.invalidate("k1*").await.unwrap(), 111);
    store.set("new", "n".into(), SetOptions::new()).await.unwrap();
    assert_eq!(store.size().await.unwrap(), 190);
    eprintln!("{rounds} read rounds during the move, {} backend errors", errors.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bucket_index_is_rebuilt_from_its_master() {
    let cluster = RedisCluster::shared();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("heal:")
        .buckets(4)
        .policy(LruPolicy::new(40).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.size().await.unwrap(), 40);
    // Delete every bucket's recency index, behind the store's back.
    let mut lost = 0;
    for (node, keys) in cluster.raw_keys(b"heal:").await {
        let mut admin = cluster.nodes[node].admin().await;
        for key in keys.iter().filter(|k| k.ends_with("\u{FFFF}lru".as_bytes())) {
            let _: () = redis::cmd("DEL").arg(key).query_async(&mut admin).await.unwrap();
            lost += 1;
        }
    }
    assert_eq!(lost, 4, "one recency index per bucket");
    // The next sets notice and rebuild each index from its master's entries:
    // the entries are adopted, so the bound holds again.
    for i in 200..400 {
        store.set(&format!("k{i}"), "v".into(), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.keys(None).await.unwrap().len(), 40);
    assert_eq!(store.size().await.unwrap(), 40);
    assert_eq!(store.get("k399").await.unwrap(), Some("v".into()));
}

/// A master that stops answering without closing its connections (SIGSTOP,
/// as a hung host would): its replica takes over, and the store must follow
/// to the new master while the old one still hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_failed_over_and_the_store_follows() {
    let cluster = RedisCluster::start();
    let store = RedisStore::<String>::cluster_builder(cluster.urls())
        .prefix("hang:")
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    for i in 0..100 {
        store.set(&format!("k{i}"), format!("v{i}"), SetOptions::new()).await.unwrap();
    }
    cluster.wait_for_replication();
    let victim = cluster.keys_per_master()[0].0;
    let resume = Frozen::freeze(cluster.nodes[victim].pid());
    // Until the failover, calls on the hung master's slots time out; after it,
    // every key is served again, with the old master still stopped. A pass
    // over the keys takes up to ~17 s while a third of them time out (500 ms
    // each), so the bound (liveness, not speed) leaves room for several
    // passes on a loaded machine: 30 s failed there 2 runs in 6.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ok = 0;
        for i in 0..100 {
            match store.get(&format!("k{i}")).await {
                Ok(Some(v)) => {
                    assert_eq!(v, format!("v{i}"));
                    ok += 1;
                }
                Ok(None) => panic!("k{i} was replicated before the master hung"),
                Err(CacheError::Backend { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        if ok == 100 && store.set("after", "x".into(), SetOptions::new()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the store did not follow the failover ({ok} of 100 keys served)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(resume);
}
