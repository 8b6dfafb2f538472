//! Hostile tests of RedisStore on Redis Cluster, with faults: dead, frozen
//! (SIGSTOP) and restarted nodes, failovers, flushed script caches, killed
//! client connections, a write pause, seeds that are dead.
//! Also: tests/redis_cluster_keys.rs, tests/redis_cluster_migration.rs.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, RefreshOptions, SetOptions, TokioRuntime, stores::RedisStore,
};
use support::cluster::{bucket_of, every_call, within};
use support::{Frozen, RedisCluster, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_on_every_node_is_reloaded() {
    let cluster = RedisCluster::start();
    let store = cluster.lru_store("flush:").await;
    every_call(&store, 0).await;
    for node in &cluster.nodes {
        assert_eq!(RedisCluster::cli(node.port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    every_call(&store, 1).await;
    // Only one master flushed.
    let (masters, _) = cluster.roles();
    RedisCluster::cli(cluster.nodes[masters[1]].port(), &["SCRIPT", "FLUSH"]);
    every_call(&store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_reloaded_while_a_replica_is_dead() {
    let mut cluster = RedisCluster::start();
    let store = cluster.lru_store("flushdead:").await;
    every_call(&store, 0).await;
    let (masters, replicas) = cluster.roles();
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
    let (_, replicas) = cluster.roles();
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
    let (masters, _) = cluster.roles();
    let frozen = masters[0];
    // Keys whose bucket lives on another master.
    let mut masters_of_buckets = Vec::new();
    for tag in cluster.bucket_tags(n).await {
        masters_of_buckets.push(cluster.master_of_key(format!("stop:{tag}")).await);
    }
    let elsewhere: Vec<String> =
        (0..200).map(|i| format!("k{i}")).filter(|k| masters_of_buckets[bucket_of(k, n)] != frozen).collect();
    assert!(elsewhere.len() > 50);
    let guard = Frozen::freeze(cluster.nodes[frozen].pid());
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
    let victim = cluster.master_of_key("rs:\u{FFFF}buckets".as_bytes()).await;
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
    let (masters, replicas) = cluster.roles();
    let _thaw = Frozen::freeze(cluster.nodes[replicas[0]].pid());
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

/// Flushes the script cache of every master, then 50 sets must all succeed:
/// every master is up and answers, and a set under a capacity needs its
/// master only.
async fn flush_scripts_then_set_50(cluster: &RedisCluster, masters: &[usize], store: &RedisStore<String>) {
    for &m in masters {
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
    let (masters, replicas) = cluster.roles();
    let _thaw = Frozen::freeze(cluster.nodes[replicas[0]].pid());
    flush_scripts_then_set_50(&cluster, &masters, &store).await;
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
    let tags = cluster.bucket_tags(16).await;
    let master = cluster.master_of_key(format!("pz:{}", tags[bucket_of(key, 16)])).await;
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
    let (_, replicas) = cluster.roles();
    let _thaw = Frozen::freeze(cluster.nodes[replicas[0]].pid());
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
    let (_, replicas) = cluster.roles();
    let urls = cluster.urls();
    cluster.nodes[replicas[0]].stop();
    // The seeds still name the dead replica, as a static configuration would.
    let built = within("build", RedisStore::<String>::cluster_builder(urls).prefix("bd:").build()).await;
    let store = built.unwrap_or_else(|e| panic!("build failed with every master up: {e:?}"));
    store.set("k", "v".into(), SetOptions::new()).await.unwrap();
}

/// A cluster, a store on it under `prefix` (500 ms response timeout) holding
/// keys `k0`.. of `n` entries, and the shard to take down: its master (the
/// third) and that master's replica.
async fn filled_cluster(prefix: &str, n: u32) -> (RedisCluster, RedisStore<u32>, usize, usize) {
    let cluster = RedisCluster::start();
    let store = RedisStore::<u32>::cluster_builder(cluster.urls())
        .prefix(prefix)
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    for i in 0..n {
        store.set(&format!("k{i}"), i, SetOptions::new()).await.unwrap();
    }
    let (masters, _) = cluster.roles();
    let victim = masters[2];
    let replica = cluster.replica_of(victim);
    (cluster, store, victim, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_fail_rather_than_skip_a_shard_that_is_down() {
    let (mut cluster, store, victim, replica) = filled_cluster("down:", 300).await;
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
    let store = cluster.lru_store("ck:").await;
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
    let (masters, replicas) = cluster.roles();
    cluster.wait_for_replicas(&replicas).await;
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
async fn a_flushed_script_cache_is_reloaded_right_after_a_replica_died() {
    let mut cluster = RedisCluster::start();
    let store = cluster.lru_store("fl2:").await;
    every_call(&store, 0).await;
    let (masters, replicas) = cluster.roles();
    for &r in &replicas {
        cluster.nodes[r].stop();
    }
    flush_scripts_then_set_50(&cluster, &masters, &store).await;
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
    let (masters, replicas) = cluster.roles();
    cluster.wait_for_replicas(&replicas).await;
    for &m in &masters {
        RedisCluster::cli(cluster.nodes[m].port(), &["WAIT", "1", "2000"]);
    }
    let hung = masters[0];
    let _thaw = Frozen::freeze(cluster.nodes[hung].pid());
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

/// A shard with its master and replica down: every call that needs it fails
/// with a kind worth retrying (the shard may come back), and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_is_down_fails_with_a_retryable_kind() {
    let (mut cluster, store, victim, replica) = filled_cluster("kind:", 100).await;
    let tags = cluster.bucket_tags(16).await;
    let mut on_victim = Vec::new();
    for i in 0..100u32 {
        let key = format!("k{i}");
        if cluster.master_of_key(format!("kind:{}", tags[bucket_of(&key, 16)])).await == victim {
            on_victim.push(key);
        }
    }
    assert!(!on_victim.is_empty());
    cluster.nodes[replica].stop();
    cluster.nodes[victim].stop();
    for wait in [Duration::ZERO, Duration::from_secs(4)] {
        tokio::time::sleep(wait).await;
        let mut seen = Vec::new();
        for key in on_victim.iter().take(3) {
            seen.push(("get", store.get(key).await.map(|_| ())));
            seen.push(("set", store.set(key, 1, SetOptions::new()).await));
        }
        seen.push(("keys", store.keys(None).await.map(|_| ())));
        seen.push(("size", store.size().await.map(|_| ())));
        for (what, got) in seen {
            let e = got.expect_err(what);
            assert!(e.is_retryable(), "after {wait:?}, {what}: {:?} {e}", e.kind());
        }
    }
}
