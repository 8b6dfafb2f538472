//! Read-through you can trust, on RedisStore (issue 9): a load stores its
//! value only if nothing wrote, deleted, invalidated or cleared the key since
//! it began, in this instance or another one on the same prefix; an owner
//! whose lease ran out cannot write; a loader asking for its own key gets
//! `CacheError::Reentrant` instead of waiting on itself.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use pepperpy_caching::{CacheError, CacheStore, LruPolicy, Policy, SetOptions, stores::RedisStore};
use tokio::sync::Notify;

const PREFIX: &str = "rt:";
const LONG_LEASE: Duration = Duration::from_secs(60);

async fn store(server: &RedisServer, policy: Option<Policy>, lease: Duration) -> Arc<RedisStore<String>> {
    let mut builder = RedisStore::builder(server.url()).prefix(PREFIX).lock_lease(lease);
    if let Some(policy) = policy {
        builder = builder.policy(policy);
    }
    Arc::new(builder.build().await.unwrap())
}

/// Fails a test that would otherwise hang.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f).await.unwrap_or_else(|_| panic!("{what}: timed out"))
}

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
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let load = {
            let (a, started, release) = (Arc::clone(&a), Arc::clone(&started), Arc::clone(&release));
            tokio::spawn(async move {
                let loader = || async move {
                    started.notify_one();
                    release.notified().await;
                    "read from the database before the write".to_string()
                };
                a.get_or_set("k", loader, SetOptions::new()).await
            })
        };
        within("A's loader", started.notified()).await;
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
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let load = {
            let (a, started, release) = (Arc::clone(&a), Arc::clone(&started), Arc::clone(&release));
            tokio::spawn(async move {
                let loader = || async move {
                    started.notify_one();
                    release.notified().await;
                    "old".to_string()
                };
                a.get_or_set("k", loader, SetOptions::new()).await
            })
        };
        within("loader", started.notified()).await;
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
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let load = {
            let (a, started, release) = (Arc::clone(&a), Arc::clone(&started), Arc::clone(&release));
            tokio::spawn(async move {
                let loader = || async move {
                    started.notify_one();
                    release.notified().await;
                    "v".to_string()
                };
                a.get_or_set("k", loader, SetOptions::new()).await
            })
        };
        within("loader", started.notified()).await;
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
