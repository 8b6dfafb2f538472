//! Read-through (`get_or_set`, `try_get_or_set`) on every store: one load for
//! concurrent callers of a missing key, a failure that reaches every waiter
//! and caches nothing, options checked before any loader runs, the loaded
//! value stored with the options' TTL and metadata, and no write-back over a
//! write made while the load ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, MAX_KEY_LEN, SetOptions};

use super::support::load::{DbDown, blocked_load};
use super::support::{meta, nested, until, within};
use super::{Backend, LONG, PASS, SHORT, s};

/// How many callers ask for one missing key at once.
const CALLERS: u64 = 20;

/// `CALLERS` tasks calling `try_get_or_set(key)` on `store` at once. The
/// loader that runs (counted in `runs`) waits until every caller has missed
/// (and so waits for this load), then gives `outcome`. Returns what each
/// caller got.
async fn concurrent_callers<S: CacheStore<String> + 'static>(
    store: &Arc<S>,
    key: &'static str,
    runs: &Arc<AtomicUsize>,
    outcome: fn() -> Result<String, DbDown>,
) -> Vec<pepperpy_caching::Result<String>> {
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (store, runs) = (Arc::clone(store), Arc::clone(runs));
        tasks.push(tokio::spawn(async move {
            let watched = Arc::clone(&store);
            let loader = || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                until("every caller waits for the load", || watched.stats().misses >= CALLERS).await;
                outcome()
            };
            store.try_get_or_set(key, loader, SetOptions::new()).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(within("a caller", task).await.unwrap());
    }
    results
}

pub async fn get_or_set_runs_one_load_for_concurrent_callers<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let runs = Arc::new(AtomicUsize::new(0));
    for got in concurrent_callers(&store, "hot", &runs, || Ok(s("loaded"))).await {
        assert_eq!(got.unwrap(), "loaded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for every caller");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets, stats.misses), (1, 0, 1, CALLERS), "{stats:?}");
    assert_eq!(store.get("hot").await.unwrap(), Some(s("loaded")));
    // Stored: the next caller's loader never runs.
    assert_eq!(store.get_or_set("hot", || async { unreachable!() }, SetOptions::new()).await.unwrap(), "loaded");
}

pub async fn a_failed_load_reaches_every_waiter_and_caches_nothing<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let runs = Arc::new(AtomicUsize::new(0));
    for got in concurrent_callers(&store, "flaky", &runs, || Err(DbDown(7))).await {
        assert_eq!(DbDown::code_in(got), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for every caller");
    assert!(!store.contains("flaky").await.unwrap(), "a failure is not cached");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (1, 1, 0), "{stats:?}");
    // The next call runs a loader again, and this one succeeds.
    let v = store.try_get_or_set("flaky", || async { Ok::<_, DbDown>(s("ok")) }, SetOptions::new());
    assert_eq!(within("the retry", v).await.unwrap(), "ok");
    assert_eq!(store.stats().loads, 2);
    assert_eq!(store.get("flaky").await.unwrap(), Some(s("ok")));
}

pub async fn get_or_set_checks_the_options_before_any_loader_runs<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let runs = AtomicUsize::new(0);
    let loader = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        s("v")
    };
    let fallible = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, DbDown>(s("v"))
    };
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", too_long.as_str()] {
        let err = store.get_or_set(key, loader, SetOptions::new()).await.unwrap_err();
        assert!(matches!(err, CacheError::Key { .. }), "{err:?}");
        let err = store.try_get_or_set(key, fallible, SetOptions::new()).await.unwrap_err();
        assert!(matches!(err, CacheError::Key { .. }), "{err:?}");
    }
    let zero = || SetOptions::new().ttl(Duration::ZERO);
    let err = store.get_or_set("k", loader, zero()).await.unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    let err = store.try_get_or_set("k", fallible, zero()).await.unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    let deep = || SetOptions::new().metadata(meta(serde_json::json!({ "a": nested(200) })));
    let err = store.get_or_set("k", loader, deep()).await.unwrap_err();
    assert!(matches!(err, CacheError::Serialization(_)), "{err:?}");
    let err = store.try_get_or_set("k", fallible, deep()).await.unwrap_err();
    assert!(matches!(err, CacheError::Serialization(_)), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no loader ran");
    assert_eq!(store.stats(), Default::default(), "failed calls count nothing");
    assert_eq!(store.size().await.unwrap(), 0, "nothing written");
}

pub async fn a_loaded_value_is_stored_with_the_options_ttl_and_metadata<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let m = meta(serde_json::json!({ "source": "db" }));
    let short = SetOptions::new().ttl(SHORT).metadata(m.clone());
    assert_eq!(store.get_or_set("short", || async { s("s") }, short).await.unwrap(), "s");
    let long = || async { Ok::<_, DbDown>(s("l")) };
    assert_eq!(store.try_get_or_set("long", long, SetOptions::new().ttl(LONG)).await.unwrap(), "l");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.misses, stats.sets), (2, 2, 2), "{stats:?}");
    assert_eq!(store.get("short").await.unwrap(), Some(s("s")));
    assert_eq!(store.get_metadata("short").await.unwrap(), Some(m));
    assert_eq!(store.get_metadata("long").await.unwrap(), Some(Default::default()));
    // A hit runs no loader.
    assert_eq!(store.get_or_set("long", || async { unreachable!() }, SetOptions::new()).await.unwrap(), "l");
    b.pass(PASS).await;
    assert_eq!(store.get("short").await.unwrap(), None, "the options' TTL applies to the loaded entry");
    assert_eq!(store.get_metadata("short").await.unwrap(), None);
    assert_eq!(store.get("long").await.unwrap(), Some(s("l")));
}

/// What is written to the store while a load of `user:1` runs.
#[derive(Clone, Copy, Debug)]
enum Write {
    Set,
    Delete,
    Invalidate,
    Clear,
    /// A write of another key.
    SetOther,
}

/// A load of `user:1` on a new store of `b`, with `write` made while its
/// loader runs: what the caller got, and what the store holds after.
async fn write_during_load<B: Backend>(b: &B, write: Write) -> (String, Option<String>) {
    let store = Arc::new(b.store(None).await);
    let (load, release) = blocked_load(&store, "user:1", s("stale from the database")).await;
    match write {
        Write::Set => store.set("user:1", s("fresh"), SetOptions::new()).await.unwrap(),
        Write::Delete => assert!(!store.delete("user:1").await.unwrap(), "nothing stored yet"),
        Write::Invalidate => assert_eq!(store.invalidate("user:*").await.unwrap(), 0, "nothing stored yet"),
        Write::Clear => store.clear().await.unwrap(),
        Write::SetOther => store.set("user:2", s("x"), SetOptions::new()).await.unwrap(),
    }
    release.notify_one();
    let got = within("the load", load).await.unwrap().unwrap();
    (got, store.get("user:1").await.unwrap())
}

pub async fn a_load_never_writes_over_a_write_made_while_it_ran<B: Backend>(b: &B) {
    // set: the newer value stays; the caller still gets what its loader produced.
    let (got, stored) = write_during_load(b, Write::Set).await;
    assert_eq!(got, "stale from the database");
    assert_eq!(stored.as_deref(), Some("fresh"));
    // delete, invalidate, clear: the key stays absent (the next read loads again).
    for write in [Write::Delete, Write::Invalidate, Write::Clear] {
        let (got, stored) = write_during_load(b, write).await;
        assert_eq!((got.as_str(), stored), ("stale from the database", None), "{write:?}");
    }
    // A write to another key does not cancel the load.
    let (_, stored) = write_during_load(b, Write::SetOther).await;
    assert_eq!(stored.as_deref(), Some("stale from the database"));
}
