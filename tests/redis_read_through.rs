//! Read-through you can trust, on RedisStore (issue 9): a load stores its
//! value only if nothing wrote, deleted, invalidated or cleared the key since
//! it began, in this instance or another one on the same prefix; an owner
//! whose lease ran out cannot write; a loader asking for its own key gets
//! `CacheError::Reentrant` instead of waiting on itself.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, Policy, SetOptions, stores::RedisStore};
use support::{RedisServer, within};
use tokio::sync::Notify;

const PREFIX: &str = "rt:";
/// A store of this file under its prefix.
async fn store(server: &RedisServer, policy: Option<Policy>, lease: Duration) -> Arc<RedisStore<String>> {
    support::leased_store(server, PREFIX, policy, lease).await
}

const LONG_LEASE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Write {
    Set,
    Delete,
    Invalidate,
    Clear,
}

const WRITES: [Write; 4] = [Write::Set, Write::Delete, Write::Invalidate, Write::Clear];

async fn apply(store: &RedisStore<String>, write: Write, key: &str) {
    match write {
        Write::Set => store.set(key, "newer".into(), SetOptions::new()).await.unwrap(),
        Write::Delete => {
            store.delete(key).await.unwrap();
        }
        Write::Invalidate => {
            store.invalidate("k*").await.unwrap();
        }
        Write::Clear => store.clear().await.unwrap(),
    }
}

/// A loads `k` on one instance; while its loader runs, B (another instance
/// on the same prefix) writes the key. A's caller gets what its loader
/// produced; the store keeps B's write.
async fn a_write_on_another_instance_during_a_load_wins(policy: Option<Policy>) {
    let server = RedisServer::start();
    for write in WRITES {
        let a = store(&server, policy.clone(), LONG_LEASE).await;
        let b = store(&server, policy.clone(), LONG_LEASE).await;
        b.clear().await.unwrap();
        let (load, release) =
            support::load::blocked_load(&a, "k", "read from the database before the write".to_string()).await;
        apply(&b, write, "k").await;
        release.notify_one();
        let got = within("A's caller", load).await.unwrap().unwrap();
        assert_eq!(got, "read from the database before the write", "{write:?}: the caller gets its loader's value");
        let expected = matches!(write, Write::Set).then(|| "newer".to_string());
        assert_eq!(a.get("k").await.unwrap(), expected, "{write:?} during the load wins ({policy:?})");
        assert_eq!(b.get("k").await.unwrap(), expected, "{write:?}: seen from B too");
        let sets = a.stats().sets;
        assert_eq!(sets, 0, "{write:?}: A's refused write is no set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_instance_during_a_load_wins_without_policy() {
    a_write_on_another_instance_during_a_load_wins(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_instance_during_a_load_wins_under_lru() {
    a_write_on_another_instance_during_a_load_wins(Some(LruPolicy::new(100).unwrap().into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_same_instance_during_a_load_wins() {
    let server = RedisServer::start();
    for write in WRITES {
        let a = store(&server, None, LONG_LEASE).await;
        a.clear().await.unwrap();
        let (load, release) = support::load::blocked_load(&a, "k", "old".to_string()).await;
        apply(&a, write, "k").await;
        release.notify_one();
        assert_eq!(within("caller", load).await.unwrap().unwrap(), "old");
        let expected = matches!(write, Write::Set).then(|| "newer".to_string());
        assert_eq!(a.get("k").await.unwrap(), expected, "{write:?} during the load wins");
    }
}

/// While a key is loading it is not an entry: not listed, not counted, not
/// contained, and deleting it reports nothing removed (but cancels the load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_being_loaded_is_no_entry() {
    let server = RedisServer::start();
    for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
        let a = store(&server, policy.clone(), LONG_LEASE).await;
        a.clear().await.unwrap();
        a.set("other", "x".into(), SetOptions::new()).await.unwrap();
        let (load, release) = support::load::blocked_load(&a, "k", "v".to_string()).await;
        assert_eq!(a.get("k").await.unwrap(), None, "{policy:?}");
        assert!(!a.contains("k").await.unwrap(), "{policy:?}");
        assert_eq!(a.get_metadata("k").await.unwrap(), None);
        assert!(!a.update_metadata("k", Default::default()).await.unwrap());
        assert_eq!(a.keys(None).await.unwrap(), vec!["other".to_string()], "{policy:?}");
        assert_eq!(a.size().await.unwrap(), 1, "{policy:?}");
        assert_eq!(a.invalidate("k").await.unwrap(), 0, "{policy:?}: the load's mark is no entry");
        release.notify_one();
        assert_eq!(within("caller", load).await.unwrap().unwrap(), "v");
        assert_eq!(a.get("k").await.unwrap(), None, "the invalidate cancelled the load");
        assert!(!a.delete("k").await.unwrap());
    }
}

/// A owns the load with a short lease and outlives it; nobody else takes
/// the key meanwhile. A's late write is refused all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_whose_lease_ran_out_cannot_write() {
    let server = RedisServer::start();
    for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
        let a = store(&server, policy.clone(), Duration::from_millis(200)).await;
        a.clear().await.unwrap();
        let loader = || async {
            // Redis's clock ends the lease: a real wait.
            tokio::time::sleep(Duration::from_millis(400)).await;
            "late".to_string()
        };
        assert_eq!(within("A", a.get_or_set("k", loader, SetOptions::new())).await.unwrap(), "late");
        assert_eq!(a.get("k").await.unwrap(), None, "{policy:?}: a lease-expired owner wrote");
        assert_eq!(a.stats().sets, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_asking_for_its_own_key_is_reentrant() {
    let server = RedisServer::start();
    let a = store(&server, None, LONG_LEASE).await;
    let inner = Arc::clone(&a);
    let loader = move || async move {
        let nested = inner.get_or_set("k", || async { "inner".to_string() }, SetOptions::new()).await;
        assert!(matches!(&nested, Err(CacheError::Reentrant { .. })), "{nested:?}");
        // Through another key's loader too.
        let inner2 = Arc::clone(&inner);
        let via = inner
            .try_get_or_set(
                "j",
                move || async move { inner2.get_or_set("k", || async { "x".to_string() }, SetOptions::new()).await },
                SetOptions::new(),
            )
            .await;
        assert!(matches!(&via, Err(CacheError::Loader(_))), "{via:?}");
        "outer".to_string()
    };
    assert_eq!(within("outer", a.get_or_set("k", loader, SetOptions::new())).await.unwrap(), "outer");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("outer"));
}

/// Redis stops (SIGSTOP) while A's loader runs: A's store times out and its
/// caller gets a backend error. Once Redis resumes, the store that was
/// queued may run (a timed-out write may still be applied), but no
/// placeholder is left to hold B up until the 60 s lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_paused_mid_load_leaves_no_placeholder_behind() {
    let server = RedisServer::start();
    let a = Arc::new(
        RedisStore::<String>::builder(server.url())
            .prefix(PREFIX)
            .lock_lease(LONG_LEASE)
            .response_timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap(),
    );
    let b = store(&server, None, LONG_LEASE).await;
    let (load, release) = support::load::blocked_load(&a, "k", "from A".to_string()).await;
    support::signal(server.pid(), "STOP");
    release.notify_one();
    let err = within("A's caller", load).await.unwrap().unwrap_err();
    support::signal(server.pid(), "CONT");
    assert!(matches!(err, CacheError::Backend { .. }), "{err:?}");
    let v = within("B", b.get_or_set("k", || async { "from B".to_string() }, SetOptions::new())).await.unwrap();
    // A's queued store ran when Redis resumed (its placeholder was still
    // there), or B loaded: either way, at once.
    assert!(matches!(v.as_str(), "from A" | "from B"), "{v}");
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(v.as_str()));
}

/// Redis is killed while A loads, and restarted empty: A's caller gets a
/// backend error, and the next load works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_fails_the_load_cleanly() {
    let mut server = RedisServer::start();
    let a = Arc::new(
        RedisStore::<String>::builder(server.url())
            .prefix(PREFIX)
            .lock_lease(LONG_LEASE)
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap(),
    );
    let (load, release) = support::load::blocked_load(&a, "k", "from A".to_string()).await;
    server.stop();
    release.notify_one();
    let err = within("A's caller", load).await.unwrap().unwrap_err();
    assert!(matches!(err, CacheError::Backend { .. }), "{err:?}");
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        match a.get_or_set("k", || async { "again".to_string() }, SetOptions::new()).await {
            Ok(v) => break v,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v, "again");
}

/// A's loader panics while B waits on another instance: B takes the key
/// over at once (not after the 60 s lease), and A's store keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_hands_the_key_to_the_next_instance() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, None, LONG_LEASE).await, store(&server, None, LONG_LEASE).await);
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let load = {
        let (a, started, release) = (Arc::clone(&a), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                release.notified().await;
                panic!("loader bug")
            };
            a.get_or_set("k", loader, SetOptions::new()).await
        })
    };
    within("A's loader", started.notified()).await;
    let waiting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.get_or_set("k", || async { "from B".to_string() }, SetOptions::new()).await })
    };
    while b.stats().misses == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.notify_one();
    assert!(within("A's caller", load).await.unwrap_err().is_panic());
    assert_eq!(within("B's caller", waiting).await.unwrap().unwrap(), "from B");
    assert_eq!(a.get_or_set("k", || async { unreachable!() }, SetOptions::new()).await.unwrap(), "from B");
}

/// Cache-aside under fire: writers bump a "database" version and then
/// delete the key (on either instance); readers on both instances load the
/// version they read at the start of their load, slowly. Once everything has
/// settled, the cache holds nothing or the latest version: never one a
/// delete overtook. (Without conditional stores this keeps an old version.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_loads_and_invalidations_never_leave_an_old_version() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let server = RedisServer::start();
    for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
        let stores =
            [store(&server, policy.clone(), LONG_LEASE).await, store(&server, policy.clone(), LONG_LEASE).await];
        stores[0].clear().await.unwrap();
        for round in 0..5 {
            let db = Arc::new(AtomicU64::new(0));
            let writing = Arc::new(AtomicUsize::new(2));
            let mut tasks = Vec::new();
            // Readers run until both writers are done, so loads straddle the
            // last deletes too.
            for i in 0..8 {
                let (store, db, writing) = (Arc::clone(&stores[i % 2]), Arc::clone(&db), Arc::clone(&writing));
                tasks.push(tokio::spawn(async move {
                    while writing.load(Ordering::SeqCst) > 0 {
                        let db = Arc::clone(&db);
                        let loader = || async move {
                            let version = db.load(Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            version.to_string()
                        };
                        store.get_or_set("k", loader, SetOptions::new()).await.unwrap();
                    }
                }));
            }
            for store in &stores {
                let (store, db, writing) = (Arc::clone(store), Arc::clone(&db), Arc::clone(&writing));
                tasks.push(tokio::spawn(async move {
                    for _ in 0..20 {
                        db.fetch_add(1, Ordering::SeqCst);
                        store.delete("k").await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    writing.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            for task in tasks {
                within("racers", task).await.unwrap();
            }
            let latest = db.load(Ordering::SeqCst).to_string();
            let cached = stores[0].get("k").await.unwrap();
            assert!(
                cached.is_none() || cached == Some(latest.clone()),
                "round {round} ({policy:?}): {cached:?} but the database is at {latest}"
            );
            stores[0].delete("k").await.unwrap();
        }
    }
}

/// A key under the prefix that holds something of another type (a list, a
/// hash without a load): get_or_set fails at once instead of waiting for a
/// load that does not exist, and runs no loader.
#[tokio::test]
async fn get_or_set_on_a_foreign_value_fails_instead_of_waiting() {
    let server = RedisServer::start();
    let store = store(&server, None, LONG_LEASE).await;
    let mut admin = server.admin().await;
    let _: () = redis::cmd("RPUSH").arg(format!("{PREFIX}list")).arg("x").query_async(&mut admin).await.unwrap();
    let _: () =
        redis::cmd("HSET").arg(format!("{PREFIX}hash")).arg("f").arg("v").query_async(&mut admin).await.unwrap();
    for key in ["list", "hash"] {
        let got = within(
            "get_or_set on a foreign value",
            store.get_or_set(key, || async { unreachable!("no loader runs") as String }, SetOptions::new()),
        )
        .await;
        assert!(matches!(got, Err(CacheError::Backend { .. })), "{key}: {got:?}");
    }
    // The foreign values are untouched.
    let kind: String = redis::cmd("TYPE").arg(format!("{PREFIX}list")).query_async(&mut admin).await.unwrap();
    assert_eq!(kind, "list");
}
