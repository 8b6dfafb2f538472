#![cfg(not(target_arch = "wasm32"))]
//! Read-through loading on a MemoryStore: one loader run per missing key
//! however many callers, errors shared and not cached, takeover when the
//! leader goes away, and independent keys loading in parallel.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, SetOptions};
use support::load::DbDown;
use support::within;
use tokio::sync::{Barrier, Notify};

fn store() -> Arc<MemoryStore<String>> {
    Arc::new(MemoryStore::new(LruPolicy::new(100).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_run_the_loader_once() {
    let store = store();
    let runs = Arc::new(AtomicUsize::new(0));
    // Every caller is inside get_or_set before the loader can finish.
    let all_in = Arc::new(Barrier::new(101));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (store, runs, all_in) = (Arc::clone(&store), Arc::clone(&runs), Arc::clone(&all_in));
        tasks.push(tokio::spawn(async move {
            let load = store.get_or_set(
                "slow",
                || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    "loaded".to_string()
                },
                SetOptions::new(),
            );
            all_in.wait().await;
            load.await
        }));
    }
    all_in.wait().await;
    for task in tasks {
        assert_eq!(within("caller", task).await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = store.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (1, 0, 1));
    assert_eq!(store.get("slow").await.unwrap().as_deref(), Some("loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_reaches_every_waiter_caches_nothing_and_is_retried() {
    let store = store();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, runs, release) = (Arc::clone(&store), Arc::clone(&runs), Arc::clone(&release));
        tasks.push(tokio::spawn(async move {
            store
                .try_get_or_set(
                    "flaky",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Err::<String, _>(DbDown(7))
                    },
                    SetOptions::new(),
                )
                .await
        }));
    }
    // Let every caller join before the one loader fails.
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    for task in tasks {
        assert_eq!(DbDown::code_in(within("waiter", task).await.unwrap()), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for all waiters");
    assert!(!store.contains("flaky").await.unwrap(), "a failure is not cached");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (1, 1, 0));

    // The next call runs a loader again, and this one succeeds.
    let v = store.try_get_or_set("flaky", || async { Ok::<_, DbDown>("ok".to_string()) }, SetOptions::new()).await;
    assert_eq!(v.unwrap(), "ok");
    assert_eq!(store.stats().loads, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_when_the_leader_is_dropped() {
    let store = store();
    let leader_started = Arc::new(Notify::new());
    let leader = {
        let (store, started) = (Arc::clone(&store), Arc::clone(&leader_started));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "k",
                    || async move {
                        started.notify_one();
                        std::future::pending::<String>().await
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    leader_started.notified().await;
    let follower = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store.get_or_set("k", || async { "from the follower".to_string() }, SetOptions::new()).await
        })
    };
    // The follower is waiting on the leader, which never finishes... until it is aborted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!follower.is_finished());
    leader.abort();
    assert_eq!(within("follower", follower).await.unwrap().unwrap(), "from the follower");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("from the follower"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_load_in_parallel() {
    let store = store();
    // A's loader cannot finish until B's loader has started: if loads of
    // different keys were serialised, this would deadlock.
    let b_started = Arc::new(Notify::new());
    let a = {
        let (store, b_started) = (Arc::clone(&store), Arc::clone(&b_started));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "a",
                    || async move {
                        b_started.notified().await;
                        "A".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = {
        let (store, b_started) = (Arc::clone(&store), Arc::clone(&b_started));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "b",
                    || async move {
                        b_started.notify_one();
                        "B".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    assert_eq!(within("b", b).await.unwrap().unwrap(), "B");
    assert_eq!(within("a", a).await.unwrap().unwrap(), "A");
}

#[tokio::test]
async fn bad_input_fails_before_the_loader_runs() {
    let store = store();
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
}

#[tokio::test]
async fn loaded_entries_get_the_options_and_load_time_is_counted() {
    let clock = ManualClock::new();
    let store: MemoryStore<u32> = MemoryStore::builder(LruPolicy::new(10).unwrap()).clock(clock.clone()).build();
    let loader_clock = clock.clone();
    let v = store
        .get_or_set(
            "k",
            || async move {
                loader_clock.advance(Duration::from_millis(250));
                7
            },
            SetOptions::new().ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(v, 7);
    let stats = store.stats();
    assert_eq!(stats.total_load_time, Duration::from_millis(250));
    assert_eq!((stats.loads, stats.misses, stats.hits), (1, 1, 0));
    // The TTL from the options applies to the loaded entry.
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.get("k").await.unwrap(), None);
    // A hit does not run the loader.
    store.set("h", 1, SetOptions::new()).await.unwrap();
    assert_eq!(store.get_or_set("h", || async { unreachable!() }, SetOptions::new()).await.unwrap(), 1);
}

/// A write of the key while its load is in flight: what the load finally
/// brings is older than that write, so it must not be stored.
async fn write_during_load(write: impl FnOnce(&MemoryStore<String>)) -> (String, Option<String>) {
    let store = store();
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let load = {
        let (store, started, release) = (Arc::clone(&store), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "user:1",
                    || async move {
                        started.notify_one();
                        release.notified().await;
                        "stale from the database".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    within("load start", started.notified()).await;
    write(&store);
    release.notify_one();
    let got = within("load", load).await.unwrap().unwrap();
    (got, store.get("user:1").await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_never_overwrites_a_write_made_while_it_ran() {
    // set: the newer value stays.
    let (got, stored) =
        write_during_load(|s| s.set("user:1", "fresh".into(), SetOptions::new()).into_inner().unwrap()).await;
    assert_eq!(got, "stale from the database", "the caller still gets what its loader produced");
    assert_eq!(stored.as_deref(), Some("fresh"));
    // delete, invalidate, clear: the key stays absent (the next read loads again).
    let (got, stored) = write_during_load(|s| {
        s.delete("user:1").into_inner().unwrap();
    })
    .await;
    assert_eq!((got.as_str(), stored), ("stale from the database", None));
    let (_, stored) = write_during_load(|s| {
        s.invalidate("user:*").into_inner().unwrap();
    })
    .await;
    assert_eq!(stored, None, "invalidate");
    let (_, stored) = write_during_load(|s| s.clear().into_inner().unwrap()).await;
    assert_eq!(stored, None, "clear");
    // A write to another key does not cancel the load.
    let (_, stored) = write_during_load(|s| s.set("user:2", "x".into(), SetOptions::new()).into_inner().unwrap()).await;
    assert_eq!(stored.as_deref(), Some("stale from the database"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_asking_for_its_own_key_fails_instead_of_hanging() {
    let store = store();
    let inner = {
        let store = Arc::clone(&store);
        within(
            "re-entrant load",
            store.clone().try_get_or_set(
                "loop",
                || async move {
                    let nested = store.get_or_set("loop", || async { "never".to_string() }, SetOptions::new()).await;
                    Ok::<_, CacheError>(format!("{nested:?}"))
                },
                SetOptions::new(),
            ),
        )
        .await
        .unwrap()
    };
    assert!(inner.contains("Reentrant"), "the nested call failed with CacheError::Reentrant: {inner}");
    // Through another key's loader too: a -> b -> a.
    let s2 = Arc::clone(&store);
    let cycle = within(
        "cycle",
        store.try_get_or_set(
            "a",
            || async move {
                s2.try_get_or_set(
                    "b",
                    || async {
                        let again = s2.get_or_set("a", || async { "x".to_string() }, SetOptions::new()).await;
                        again.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    },
                    SetOptions::new(),
                )
                .await
            },
            SetOptions::new(),
        ),
    )
    .await;
    assert!(matches!(cycle, Err(CacheError::Loader(_))), "{cycle:?}");
    // The key is not stuck: later calls load normally.
    // The outer load finished and stored what its loader returned.
    assert_eq!(store.get("loop").await.unwrap(), Some(inner));
    let v = within("after", store.get_or_set("a", || async { "ok".to_string() }, SetOptions::new())).await;
    assert_eq!(v.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_load_passes_to_exactly_one_waiter_and_each_call_counts_once() {
    let store = store();
    let runs = Arc::new(AtomicUsize::new(0));
    let leader_in = Arc::new(Notify::new());
    // The leader's loader never finishes; the leader is aborted.
    let leader = {
        let (store, leader_in) = (Arc::clone(&store), Arc::clone(&leader_in));
        tokio::spawn(async move {
            store
                .get_or_set(
                    "k",
                    || async move {
                        leader_in.notify_one();
                        std::future::pending::<String>().await
                    },
                    SetOptions::new(),
                )
                .await
        })
    };
    within("leader", leader_in.notified()).await;
    let mut followers = Vec::new();
    for _ in 0..50 {
        let (store, runs) = (Arc::clone(&store), Arc::clone(&runs));
        followers.push(tokio::spawn(async move {
            store
                .get_or_set(
                    "k",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        "taken over".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        }));
    }
    // Let every follower register before the leader goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    for f in followers {
        assert_eq!(within("follower", f).await.unwrap().unwrap(), "taken over");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly one waiter ran its loader");
    let stats = store.stats();
    assert_eq!(stats.hits + stats.misses, 51, "one get counted per call: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_of_one_missing_key_run_one_loader() {
    let store = store();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..10_000 {
        let (store, runs, gate) = (Arc::clone(&store), Arc::clone(&runs), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            store
                .get_or_set(
                    "hot",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        "v".to_string()
                    },
                    SetOptions::new(),
                )
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.notify_one();
    for t in tasks {
        assert_eq!(within("caller", t).await.unwrap().unwrap(), "v");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
