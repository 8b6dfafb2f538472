#![cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
//! Stale-while-revalidate on a MemoryStore (`get_or_refresh`): fresh values,
//! stale values served at once with one background refresh, stale-if-error
//! with backoff, timeouts, and no stale write-back. Freshness runs on a
//! ManualClock; timeouts on tokio's paused clock, so nothing sleeps for real.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, RefreshOptions, SetOptions, TokioRuntime,
};
use tokio::sync::Notify;

const FRESH: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(600);

fn setup() -> (Arc<MemoryStore<String>>, ManualClock, RefreshOptions) {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::builder(LruPolicy::new(100).unwrap()).clock(clock.clone()).build());
    (store, clock, RefreshOptions::new(TokioRuntime, FRESH, GRACE))
}

type Failure = std::io::Error;

/// A loader counting its runs, returning `value`.
fn counting(
    runs: &Arc<AtomicUsize>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<Result<String, Failure>> + Send + 'static {
    let (runs, value) = (Arc::clone(runs), value.to_string());
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value))
    }
}

/// Lets spawned refreshes run to completion.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn stale_values_are_served_at_once_while_one_refresh_runs() {
    let (store, clock, options) = setup();
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
    clock.advance(FRESH - Duration::from_secs(1));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v1");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "fresh: no load");

    // Stale: a refresh that is held open until released.
    clock.advance(Duration::from_secs(2));
    let release = Arc::new(Notify::new());
    let slow = {
        let (runs, release) = (Arc::clone(&runs), Arc::clone(&release));
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            Ok::<_, Failure>("v2".to_string())
        }
    };
    assert_eq!(store.get_or_refresh("k", slow, &options).await.unwrap(), "v1", "stale, at once");
    for _ in 0..100 {
        let v = store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap();
        assert_eq!(v, "v1", "still stale while the refresh runs");
    }
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one refresh for 101 stale reads");
    release.notify_one();
    settle().await;
    assert_eq!(store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v2", "refreshed");
    let s = store.stats();
    assert_eq!((s.stale_hits, s.refreshes, s.refresh_failures), (101, 1, 0));
    assert_eq!(s.hits + s.misses, 104, "each call counted one get");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_stale_value_and_backs_off() {
    let (store, clock, options) = setup();
    let options = options.retry_after(Duration::from_secs(10));
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    clock.advance(FRESH);
    let failing = |runs: &Arc<AtomicUsize>| {
        let runs = Arc::clone(runs);
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<String, _>(Failure::other("db down")))
        }
    };
    assert_eq!(store.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    settle().await;
    assert_eq!(store.stats().refresh_failures, 1);
    // Within the backoff: stale served, no new refresh.
    clock.advance(Duration::from_secs(9));
    assert_eq!(store.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "no refresh during the backoff");
    // After it: one more try, which fails again; the backoff doubles.
    clock.advance(Duration::from_secs(1));
    store.get_or_refresh("k", failing(&runs), &options).await.unwrap();
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    clock.advance(Duration::from_secs(19));
    store.get_or_refresh("k", failing(&runs), &options).await.unwrap();
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "20 s after the second failure, not before");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    settle().await;
    assert_eq!(store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v2");
    // Past the grace period a stale value is never served: the miss loads.
    clock.advance(FRESH + GRACE);
    let v = store.get_or_refresh("k", counting(&runs, "v3"), &options).await.unwrap();
    assert_eq!(v, "v3");
}

#[tokio::test(start_paused = true)]
async fn a_write_during_a_refresh_wins() {
    for write in ["set", "delete", "invalidate", "clear"] {
        let (store, clock, options) = setup();
        let runs = Arc::new(AtomicUsize::new(0));
        store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
        clock.advance(FRESH);
        let release = Arc::new(Notify::new());
        let slow = {
            let release = Arc::clone(&release);
            move || async move {
                release.notified().await;
                Ok::<_, Failure>("stale from the database".to_string())
            }
        };
        store.get_or_refresh("k", slow, &options).await.unwrap();
        settle().await;
        match write {
            "set" => store.set("k", "newer".into(), SetOptions::new()).await.unwrap(),
            "delete" => drop(store.delete("k").await.unwrap()),
            "invalidate" => drop(store.invalidate("*").await.unwrap()),
            _ => store.clear().await.unwrap(),
        }
        release.notify_one();
        settle().await;
        let expected = (write == "set").then(|| "newer".to_string());
        assert_eq!(store.get("k").await.unwrap(), expected, "after {write}");
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_bound_waiting_and_loading() {
    let (store, clock, options) = setup();
    let options = options.timeouts(Some(Duration::from_millis(100)), Some(Duration::from_secs(1)));
    let never = || std::future::pending::<Result<String, Failure>>();
    // Soft: the caller of a miss gives up.
    let err = store.get_or_refresh("miss", never, &options).await.unwrap_err();
    assert!(matches!(err, CacheError::Timeout { .. }), "{err:?}");
    // Hard: a refresh that never ends is dropped and counts as failed.
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    clock.advance(FRESH);
    assert_eq!(store.get_or_refresh("k", never, &options).await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.stats().refresh_failures, 1, "the hung refresh timed out");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v1"), "the stale value stayed");
}

#[tokio::test(start_paused = true)]
async fn bad_options_and_keys_fail_before_any_loader() {
    let (store, _, options) = setup();
    let zero = RefreshOptions::new(TokioRuntime, Duration::ZERO, GRACE);
    let loader = || async { unreachable!("no loader runs") as Result<String, Failure> };
    assert!(matches!(store.get_or_refresh("k", loader, &zero).await, Err(CacheError::Policy(_))));
    assert!(matches!(store.get_or_refresh("", loader, &options).await, Err(CacheError::Key { .. })));
    assert_eq!(store.stats().misses, 0, "nothing counted");
}
