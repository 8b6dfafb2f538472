//! Read-through loading on RedisStore: one loader run per missing key across
//! separate store instances (stand-ins for separate servers), errors shared
//! within an instance and never cached, takeover from a lock owner that died
//! or outlived its lease, independent keys loading in parallel, and the load
//! counters.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, Metadata, SetOptions, stores::RedisStore};
use redis::aio::MultiplexedConnection;
use support::load::DbDown;
use support::{RedisServer, until, within};
use tokio::sync::{Barrier, Notify};

const PREFIX: &str = "gos:";
/// A lease longer than any test: a lock that ends sooner was released.
const LONG_LEASE: Duration = Duration::from_secs(60);

async fn store(server: &RedisServer, lease: Option<Duration>) -> Arc<RedisStore<String>> {
    let mut builder = RedisStore::builder(server.url()).prefix(PREFIX);
    if let Some(lease) = lease {
        builder = builder.lock_lease(lease);
    }
    Arc::new(builder.build().await.unwrap())
}

/// The Redis key of `key`'s entry, which holds the load's placeholder (a
/// hash) while a load is in progress (documented on RedisStore).
fn entry_key(key: &str) -> Vec<u8> {
    [PREFIX.as_bytes(), key.as_bytes()].concat()
}

/// The remaining lease of `key`'s load placeholder in ms; -2 if there is none.
async fn lock_ttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    let kind: String = redis::cmd("TYPE").arg(entry_key(key)).query_async(conn).await.unwrap();
    if kind != "hash" {
        return -2;
    }
    redis::cmd("PTTL").arg(entry_key(key)).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_callers_on_two_instances_run_the_loader_once() {
    let server = RedisServer::start();
    let stores = vec![store(&server, None).await, store(&server, None).await];
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (stores, runs, start) = (stores.clone(), Arc::clone(&runs), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let store = Arc::clone(&stores[i % 2]);
            store
                .get_or_set(
                    "hot",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Every caller has missed (and is waiting) before the value is stored.
                        until("every caller waits", || stores.iter().map(|s| s.stats().misses).sum::<u64>() >= 100)
                            .await;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        "loaded".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        }));
    }
    for task in tasks {
        assert_eq!(within("caller", task).await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let (a, b) = (stores[0].stats(), stores[1].stats());
    assert_eq!((a.loads + b.loads, a.sets + b.sets, a.misses + b.misses), (1, 1, 100));
    let mut conn = server.admin().await;
    assert_eq!(lock_ttl(&mut conn, "hot").await, -2, "the lock is released");
}

/// Calls of a Redis command (such as `set`, `hset`) so far, those run by
/// scripts included.
async fn calls(conn: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    let head = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(head.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_on_one_instance_make_one_lock_attempt() {
    let server = RedisServer::start();
    let store = store(&server, None).await;
    let mut conn = server.admin().await;
    redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(&mut conn).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let watched = Arc::clone(&store);
            let loader = || async move {
                until("every caller waits", || watched.stats().misses >= 50).await;
                "loaded".to_string()
            };
            store.get_or_set("hot", loader, SetOptions::new()).await
        }));
    }
    for task in tasks {
        assert_eq!(within("caller", task).await.unwrap().unwrap(), "loaded");
    }
    // One HSET for the load's placeholder, one SET for the value.
    assert_eq!((calls(&mut conn, "hset").await, calls(&mut conn, "set").await), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_load_reaches_every_waiter_and_other_instances_load_themselves() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, LONG_LEASE.into()).await, store(&server, LONG_LEASE.into()).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (store, runs, fail) = (Arc::clone(&a), Arc::clone(&runs), Arc::clone(&fail));
        tasks.push(tokio::spawn(async move {
            store
                .try_get_or_set(
                    "flaky",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        fail.notified().await;
                        Err::<String, _>(DbDown(7))
                    },
                    SetOptions::new(),
                )
                .await
        }));
    }
    // Every caller on A has missed, and A's loader holds the lock.
    until("A's callers", || a.stats().misses >= 20 && runs.load(Ordering::SeqCst) == 1).await;
    // Meanwhile a caller on B waits for A's load; when it fails, B loads itself.
    let b_runs = Arc::new(AtomicUsize::new(0));
    let on_b = {
        let (b, b_runs) = (Arc::clone(&b), Arc::clone(&b_runs));
        tokio::spawn(async move {
            let loader = || async move {
                b_runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, DbDown>("from B".to_string())
            };
            b.try_get_or_set("flaky", loader, SetOptions::new()).await
        })
    };
    until("B's caller waiting", || b.stats().misses == 1).await;
    fail.notify_one();
    for task in tasks {
        assert_eq!(DbDown::code_in(within("waiter", task).await.unwrap()), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for all of A's waiters");
    let stats = a.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (1, 1, 0));

    // B's caller found the lock released without a value and loaded (A's
    // lease is 60 s, so an unreleased lock would have timed this out).
    assert_eq!(within("B's caller", on_b).await.unwrap().unwrap(), "from B");
    assert_eq!(b_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_load_is_not_cached_and_the_next_call_retries() {
    let server = RedisServer::start();
    let store = store(&server, LONG_LEASE.into()).await;
    let failed = store.try_get_or_set("k", || async { Err::<String, _>(DbDown(1)) }, SetOptions::new()).await;
    assert!(matches!(failed, Err(CacheError::Loader(_))), "{failed:?}");
    assert!(!store.contains("k").await.unwrap());
    let mut conn = server.admin().await;
    assert_eq!(lock_ttl(&mut conn, "k").await, -2, "the lock is released");
    // The next call retries at once (an unreleased lock would hold it for 60 s).
    let v = store.try_get_or_set("k", || async { Ok::<_, DbDown>("ok".to_string()) }, SetOptions::new());
    assert_eq!(within("retry", v).await.unwrap(), "ok");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_owner_releases_its_lock() {
    let server = RedisServer::start();
    // Long leases: B finishing before they end proves A released its lock.
    let (a, b) = (store(&server, LONG_LEASE.into()).await, store(&server, LONG_LEASE.into()).await);
    let started = Arc::new(Notify::new());
    let owner = {
        let (a, started) = (Arc::clone(&a), Arc::clone(&started));
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                std::future::pending::<String>().await
            };
            a.get_or_set("k", loader, SetOptions::new()).await
        })
    };
    within("A's loader", started.notified()).await;
    let mut conn = server.admin().await;
    assert!(lock_ttl(&mut conn, "k").await > 0, "A holds the lock");
    let taker = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.get_or_set("k", || async { "from B".to_string() }, SetOptions::new()).await })
    };
    until("B's caller waiting", || b.stats().misses == 1).await;
    owner.abort();
    assert!(owner.await.unwrap_err().is_cancelled());
    assert_eq!(within("B's caller", taker).await.unwrap().unwrap(), "from B");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("from B"));
    // A's loader run started (and was dropped unfinished: no failure), as
    // MemoryStore counts it.
    assert_eq!((a.stats().loads, a.stats().load_failures, b.stats().loads), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_left_by_a_dead_process_ends_with_its_lease() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    // What a process that died mid-load leaves behind: a placeholder it will
    // never remove, which ends with its lease.
    redis::pipe()
        .cmd("HSET")
        .arg(entry_key("k"))
        .arg("load")
        .arg("token of a dead process")
        .cmd("PEXPIRE")
        .arg(entry_key("k"))
        .arg(300)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(lock_ttl(&mut conn, "k").await > 0);
    let b = store(&server, None).await;
    let v = b.get_or_set("k", || async { "from B".to_string() }, SetOptions::new());
    assert_eq!(within("B's caller", v).await.unwrap(), "from B");
    assert_eq!(b.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loader_slower_than_its_lease_does_not_block_others() {
    let server = RedisServer::start();
    let a = store(&server, Some(Duration::from_millis(300))).await;
    let b = store(&server, LONG_LEASE.into()).await;
    let (a_started, a_finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = {
        let (a, a_started, a_finish) = (Arc::clone(&a), Arc::clone(&a_started), Arc::clone(&a_finish));
        tokio::spawn(async move {
            let loader = || async move {
                a_started.notify_one();
                a_finish.notified().await;
                "from A".to_string()
            };
            a.get_or_set("k", loader, SetOptions::new()).await
        })
    };
    within("A's loader", a_started.notified()).await;
    let mut conn = server.admin().await;
    let ttl = lock_ttl(&mut conn, "k").await;
    assert!((1..=300).contains(&ttl), "A's lock has the configured lease: {ttl}");

    // B waits out A's lease, takes the lock and loads while A is still loading.
    let (b_started, b_finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let other = {
        let (b, b_started, b_finish) = (Arc::clone(&b), Arc::clone(&b_started), Arc::clone(&b_finish));
        tokio::spawn(async move {
            let loader = || async move {
                b_started.notify_one();
                b_finish.notified().await;
                "from B".to_string()
            };
            b.get_or_set("k", loader, SetOptions::new()).await
        })
    };
    within("B's loader", b_started.notified()).await;
    assert!(!slow.is_finished());

    // A finishes late: its caller gets its value, but its lease ran out, so
    // it may neither store it nor remove B's placeholder.
    a_finish.notify_one();
    assert_eq!(within("A's caller", slow).await.unwrap().unwrap(), "from A");
    assert!(lock_ttl(&mut conn, "k").await > 0, "B's placeholder survives A's late finish");
    assert_eq!(a.stats().sets, 0, "A's late write was refused");
    b_finish.notify_one();
    assert_eq!(within("B's caller", other).await.unwrap().unwrap(), "from B");
    assert_eq!(lock_ttl(&mut conn, "k").await, -2, "B's value replaced its placeholder");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("from B"));
    assert_eq!((a.stats().loads, b.stats().loads), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_keys_load_in_parallel() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, LONG_LEASE.into()).await, store(&server, LONG_LEASE.into()).await);
    // Key x's loader cannot finish until key y's has run: if loads of
    // different keys waited on each other (in one instance or across two),
    // this would deadlock.
    let (x_started, y_ran) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let x = {
        let (a, x_started, y_ran) = (Arc::clone(&a), Arc::clone(&x_started), Arc::clone(&y_ran));
        tokio::spawn(async move {
            let loader = || async move {
                x_started.notify_one();
                y_ran.notified().await;
                "X".to_string()
            };
            a.get_or_set("x", loader, SetOptions::new()).await
        })
    };
    within("x's loader", x_started.notified()).await;
    for store in [&a, &b] {
        let y_ran = Arc::clone(&y_ran);
        let key = if Arc::ptr_eq(store, &a) { "y-here" } else { "y-there" };
        let loader = || async move {
            y_ran.notify_one();
            "Y".to_string()
        };
        assert_eq!(within(key, store.get_or_set(key, loader, SetOptions::new())).await.unwrap(), "Y");
    }
    assert_eq!(within("x", x).await.unwrap().unwrap(), "X");
}

#[tokio::test]
async fn loads_are_counted_and_options_applied_on_the_instance_that_loaded() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, None).await, store(&server, None).await);
    let metadata: Metadata = serde_json::json!({"source": "db"}).as_object().cloned().unwrap();
    let options = SetOptions::new().ttl(Duration::from_secs(100)).metadata(metadata.clone());
    let loader = || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        "v".to_string()
    };
    assert_eq!(a.get_or_set("k", loader, options).await.unwrap(), "v");
    let stats = a.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.misses, stats.sets), (1, 0, 1, 1));
    assert!(stats.total_load_time >= Duration::from_millis(50), "{:?}", stats.total_load_time);

    // The options apply to the stored entry.
    assert_eq!(b.get_metadata("k").await.unwrap(), Some(metadata));
    let mut conn = server.admin().await;
    let ttl: i64 = redis::cmd("PTTL").arg("gos:k").query_async(&mut conn).await.unwrap();
    assert!((1..=100_000).contains(&ttl), "{ttl}");

    // A hit on another instance: counted there as a hit, no load.
    assert_eq!(b.get_or_set("k", || async { unreachable!() }, SetOptions::new()).await.unwrap(), "v");
    let stats = b.stats();
    assert_eq!((stats.hits, stats.loads, stats.total_load_time), (1, 0, Duration::ZERO));

    let failed = a.try_get_or_set("f", || async { Err::<String, _>(DbDown(1)) }, SetOptions::new()).await;
    assert!(matches!(failed, Err(CacheError::Loader(_))));
    let stats = a.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (2, 1, 1));
    assert_eq!(b.stats().loads, 0);
}

#[tokio::test]
async fn bad_input_fails_before_anything_runs() {
    let server = RedisServer::start();
    let store = store(&server, None).await;
    let runs = AtomicUsize::new(0);
    let loader = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        "v".to_string()
    };
    let err = store.get_or_set("", loader, SetOptions::new()).await.unwrap_err();
    assert!(matches!(err, CacheError::Key { .. }), "{err:?}");
    let loader = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        "v".to_string()
    };
    let err = store.get_or_set("k", loader, SetOptions::new().ttl(Duration::ZERO)).await.unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(store.stats(), Default::default());
    let mut conn = server.admin().await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(keys.is_empty(), "nothing written, no lock taken: {keys:?}");

    let zero = RedisStore::<String>::builder(server.url()).lock_lease(Duration::ZERO).build().await;
    assert!(matches!(zero, Err(CacheError::Policy(_))), "{zero:?}");
}

/// How A's `get_or_set` loses the reply of its lock attempt.
#[derive(Clone, Copy, Debug)]
enum LostReply {
    /// The store's response timeout fires.
    ResponseTimeout,
    /// The caller drops the future (here by `tokio::time::timeout`).
    DroppedFuture,
}

/// A's lock attempt runs on Redis but A never sees the reply: the lock it
/// took must not stay until its (30 s) lease ends.
async fn a_lock_taken_without_a_reply_is_released(lost: LostReply) {
    const LEASE: Duration = Duration::from_secs(30);
    const PAUSE: Duration = Duration::from_millis(700);
    let server = RedisServer::start();
    let mut builder = RedisStore::<String>::builder(server.url()).prefix(PREFIX).lock_lease(LEASE);
    if let LostReply::ResponseTimeout = lost {
        builder = builder.response_timeout(Duration::from_millis(100));
    }
    let a = builder.build().await.unwrap();
    let b = store(&server, LEASE.into()).await;
    let mut conn = server.admin().await;
    // Loads both scripts into Redis's cache, so A's attempt is one EVALSHA.
    assert_eq!(a.get_or_set("warm", || async { "w".to_string() }, SetOptions::new()).await.unwrap(), "w");
    redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(&mut conn).await.unwrap();

    // Reads still run, but A's script waits for the pause to end.
    let paused = tokio::time::Instant::now();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("WRITE")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let call =
        a.get_or_set("k", || async { unreachable!("A never holds the lock while Redis answers") }, SetOptions::new());
    match lost {
        LostReply::ResponseTimeout => {
            let err = within("A's caller", call).await.unwrap_err();
            assert!(matches!(err, CacheError::Backend { .. }), "{err:?}");
        }
        LostReply::DroppedFuture => {
            assert!(tokio::time::timeout(Duration::from_millis(100), call).await.is_err(), "A's call was dropped");
        }
    }
    assert!(paused.elapsed() < PAUSE, "A gave up while its script was still waiting");

    // Once the pause is over, A's script has run: it took the lock...
    tokio::time::sleep_until(paused + PAUSE + Duration::from_millis(300)).await;
    assert_eq!(calls(&mut conn, "hset").await, 1, "A's script ran after the pause and took the placeholder");
    // ...and the lock is gone well before its lease ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let ttl = lock_ttl(&mut conn, "k").await;
        if ttl == -2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lost:?}: A's lock is still there, PTTL {ttl} ms");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B does not wait for the lease.
    let v = b.get_or_set("k", || async { "from B".to_string() }, SetOptions::new());
    let v = tokio::time::timeout(Duration::from_secs(5), v).await.expect("B waited for A's lease");
    assert_eq!(v.unwrap(), "from B");
    assert_eq!((a.stats().loads, b.stats().loads), (1, 1), "A loaded only the warm-up key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_taken_by_a_timed_out_attempt_is_released() {
    a_lock_taken_without_a_reply_is_released(LostReply::ResponseTimeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_taken_by_a_dropped_attempt_is_released() {
    a_lock_taken_without_a_reply_is_released(LostReply::DroppedFuture).await;
}

/// 16 callers of one key; the leader's loader panics: its lock is released,
/// one follower loads, and the panic counts as a failed load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_loader_counts_as_a_failed_load() {
    let server = RedisServer::start();
    let store = store(&server, Some(LONG_LEASE)).await;
    let (results, runs) =
        support::load::sixteen_callers_and_a_panicking_leader(Arc::clone(&store), "v".to_string()).await;
    let mut panicked = 0;
    for result in results {
        match result {
            Err(_) => panicked += 1,
            Ok(v) => assert_eq!(v.unwrap(), "v"),
        }
    }
    assert_eq!(panicked, 1, "only the leader's task panicked");
    assert_eq!(runs, 2, "one follower took the load over");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.load_failures), (2, 1), "the panic is a failed load: {stats:?}");
}
