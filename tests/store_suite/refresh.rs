//! Stale-while-revalidate (`get_or_refresh`, part of `CacheStore`) on every
//! store: a fresh value served without a load, a stale one served at once
//! while one refresh runs in the background, a load in the foreground past
//! the grace period, stale-if-error with a backoff, and bad input refused
//! before any loader runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{BoxFuture, CacheError, CacheStore, RefreshOptions, Runtime};

use super::support::load::{counting, failing};
use super::support::within;
use super::{Backend, LONG, PASS, SHORT, s};

/// Tokio's `spawn` and `sleep`, so the suite needs no crate feature.
pub struct Tasks;

impl Runtime for Tasks {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Fresh for `SHORT`, then stale for `grace`; a failed refresh is not
/// retried within a test.
fn options(grace: Duration) -> RefreshOptions {
    RefreshOptions::new(Tasks, SHORT, grace).retry_after(LONG)
}

/// Waits until `get(key)` on `store` gives `value`.
async fn until_stored<S: CacheStore<String>>(store: &S, key: &str, value: &str) {
    within("the refresh to store its value", async {
        while store.get(key).await.unwrap().as_deref() != Some(value) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

pub async fn a_fresh_value_is_served_without_a_load<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one load, then the fresh value");
    let stats = store.stats();
    assert_eq!((stats.loads, stats.stale_hits, stats.refreshes), (1, 0, 0), "{stats:?}");
    // The loaded value is an entry like any other.
    assert_eq!(store.get("k").await.unwrap(), Some(s("v1")));
}

pub async fn a_stale_value_is_served_at_once_while_one_refresh_runs<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    b.pass(PASS).await;
    // The refresh's loader waits for `release`: every read meanwhile is stale.
    let release = Arc::new(tokio::sync::Notify::new());
    for _ in 0..5 {
        let (runs, release) = (Arc::clone(&runs), Arc::clone(&release));
        let slow = move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            Ok::<_, std::io::Error>(s("v2"))
        };
        let got = within("a stale read", store.get_or_refresh("k", slow, &options)).await;
        assert_eq!(got.unwrap(), "v1", "the stale value, at once");
    }
    within("the refresh to start", async {
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    release.notify_waiters();
    until_stored(&*store, "k", "v2").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one load, then one refresh for five stale reads");
    let stats = store.stats();
    assert_eq!((stats.refreshes, stats.refresh_failures), (1, 0), "{stats:?}");
    assert!(stats.stale_hits >= 5, "{stats:?}");
    // Fresh again: served without a load.
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v3"), &options).await.unwrap(), "v2");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

pub async fn past_the_grace_period_a_read_waits_for_a_new_load<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    // Fresh for SHORT, stale for SHORT more: PASS is past both.
    let options = options(SHORT);
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v2", "no stale value");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let stats = store.stats();
    assert_eq!((stats.loads, stats.stale_hits, stats.refreshes), (2, 0, 0), "{stats:?}");
}

pub async fn a_failed_refresh_keeps_the_stale_value<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    within("the refresh to fail", async {
        while store.stats().refresh_failures < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Stale-if-error: the stale value stays, and the backoff (LONG) holds
    // the next refresh back.
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    assert_eq!(store.get("k").await.unwrap(), Some(s("v1")));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the load and the failed refresh, no retry yet");
    let stats = store.stats();
    assert_eq!((stats.refreshes, stats.refresh_failures), (1, 1), "{stats:?}");
}

pub async fn get_or_refresh_checks_its_input_before_any_loader_runs<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let got = store.get_or_refresh("", counting(&runs, "v"), &options(LONG)).await;
    assert!(matches!(got, Err(CacheError::Key { .. })), "{got:?}");
    let no_grace = RefreshOptions::new(Tasks, SHORT, Duration::ZERO);
    let got = store.get_or_refresh("k", counting(&runs, "v"), &no_grace).await;
    assert!(matches!(got, Err(CacheError::Policy(_))), "{got:?}");
    let no_fresh_period = RefreshOptions::new(Tasks, Duration::ZERO, LONG);
    let got = store.get_or_refresh("k", counting(&runs, "v"), &no_fresh_period).await;
    assert!(matches!(got, Err(CacheError::Policy(_))), "{got:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no loader ran");
    assert!(!store.contains("k").await.unwrap());
    let stats = store.stats();
    assert_eq!((stats.loads, stats.misses, stats.sets), (0, 0, 0), "bad input counts nothing: {stats:?}");
}

pub async fn get_or_refresh_refuses_long_keys_and_deep_metadata<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let too_long = "k".repeat(pepperpy_caching::MAX_KEY_LEN + 1);
    let got = store.get_or_refresh(&too_long, counting(&runs, "v"), &options(LONG)).await;
    assert!(matches!(got, Err(CacheError::Key { .. })), "{got:?}");
    let deep = super::support::meta(serde_json::json!({ "a": super::support::nested(200) }));
    let got = store.get_or_refresh("k", counting(&runs, "v"), &options(LONG).metadata(deep)).await;
    assert!(matches!(got, Err(CacheError::Serialization(_))), "{got:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no loader ran");
    assert!(!store.contains("k").await.unwrap());
    let stats = store.stats();
    assert_eq!((stats.loads, stats.misses, stats.sets), (0, 0, 0), "bad input counts nothing: {stats:?}");
}

pub async fn a_refresh_loader_asking_for_its_own_key_fails_at_once<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (inner, inner_options, record) = (Arc::clone(&store), options.clone(), Arc::clone(&seen));
    let loader = move || async move {
        let again = inner.get_or_refresh("k", || async { Ok::<_, std::io::Error>(s("inner")) }, &inner_options).await;
        let set = inner.get_or_set("k", || async { s("inner") }, pepperpy_caching::SetOptions::new()).await;
        record.lock().unwrap().extend([again, set]);
        Ok::<_, std::io::Error>(s("outer"))
    };
    let got = within("a re-entrant load", store.get_or_refresh("k", loader, &options)).await;
    assert_eq!(got.unwrap(), "outer");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 2);
    for inner in seen.iter() {
        assert!(matches!(inner, Err(CacheError::Reentrant { .. })), "{seen:?}");
    }
    assert_eq!(store.get("k").await.unwrap(), Some(s("outer")));
}

pub async fn a_refresh_loader_that_panics_leaves_the_key_loadable<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let (panicking, panic_options) = (Arc::clone(&store), options.clone());
    let task = tokio::spawn(async move {
        let loader = || async { if true { panic!("hostile loader") } else { Ok::<_, std::io::Error>(s("never")) } };
        panicking.get_or_refresh("k", loader, &panic_options).await
    });
    let joined = within("the panicking call", task).await;
    assert!(joined.unwrap_err().is_panic());
    let runs = Arc::new(AtomicUsize::new(0));
    let got = within("the next load", store.get_or_refresh("k", counting(&runs, "v"), &options)).await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.get("k").await.unwrap(), Some(s("v")));
}

pub async fn a_dropped_refresh_caller_leaves_the_key_loadable<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&started);
    let never = move || async move {
        signal.notify_one();
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(s("never"))
    };
    {
        let call = store.get_or_refresh("k", never, &options);
        tokio::pin!(call);
        tokio::select! {
            _ = &mut call => panic!("the load never ends"),
            _ = started.notified() => {}
        }
        // The caller goes away mid-load.
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let got = within("the next load", store.get_or_refresh("k", counting(&runs, "v"), &options)).await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(store.get("k").await.unwrap(), Some(s("v")));
}

pub async fn a_background_refresh_whose_loader_reads_its_own_key_completes<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    b.pass(PASS).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (inner, inner_options, record) = (Arc::clone(&store), options.clone(), Arc::clone(&seen));
    let loader = move || async move {
        let again = inner.get_or_refresh("k", || async { Ok::<_, std::io::Error>(s("inner")) }, &inner_options).await;
        let set = inner.get_or_set("k", || async { s("inner") }, pepperpy_caching::SetOptions::new()).await;
        let plain = inner.get("k").await;
        record.lock().unwrap().extend([again.map(Some), set.map(Some), plain]);
        Ok::<_, std::io::Error>(s("v2"))
    };
    assert_eq!(store.get_or_refresh("k", loader, &options).await.unwrap(), "v1", "stale, at once");
    until_stored(&*store, "k", "v2").await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // The refresh's own reads see the stale value (it is still the entry), never wait on themselves.
    assert_eq!(seen.len(), 3, "{seen:?}");
    for inner in &seen {
        assert!(matches!(inner, Ok(Some(v)) if v == "v1"), "{seen:?}");
    }
}

pub async fn a_refresh_whose_loader_panics_counts_as_failed_and_backs_off<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG);
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    b.pass(PASS).await;
    let panicking = || async { if true { panic!("hostile refresh") } else { Ok::<_, std::io::Error>(s("never")) } };
    assert_eq!(store.get_or_refresh("k", panicking, &options).await.unwrap(), "v1", "stale, at once");
    within("the panicked refresh to count as failed", async {
        while store.stats().refresh_failures < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Stale-if-error: the backoff (LONG) holds the next refresh back.
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "no refresh within the backoff");
    assert_eq!(store.get("k").await.unwrap(), Some(s("v1")));
}

pub async fn a_miss_past_its_soft_timeout_fails_and_the_key_stays_loadable<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = options(LONG).timeouts(Some(Duration::from_millis(50)), None);
    let never = || async {
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(s("never"))
    };
    let got = within("the soft timeout", store.get_or_refresh("k", never, &options)).await;
    assert!(matches!(&got, Err(e @ CacheError::Timeout { .. }) if e.is_timeout() && e.is_retryable()), "{got:?}");
    let runs = Arc::new(AtomicUsize::new(0));
    let got = within("the next load", store.get_or_refresh("k", counting(&runs, "v"), &options)).await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(store.get("k").await.unwrap(), Some(s("v")));
}
