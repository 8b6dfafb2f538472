#![cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
//! Stale-while-revalidate on a MemoryStore (`get_or_refresh`): fresh values,
//! stale values served at once with one background refresh, stale-if-error
//! with backoff, timeouts, and no stale write-back. Freshness runs on a
//! ManualClock; timeouts on tokio's paused clock, so nothing sleeps for real.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, ManualClock, MemoryStore, Policy, RefreshOptions, S3FifoPolicy, SetOptions,
    TokioRuntime, TtlPolicy,
};
use support::load::{Failure, counting};
use support::meta;
use tokio::sync::Notify;

const FRESH: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(600);

/// Every policy: LRU answers `get_or_refresh` under the exclusive lock,
/// S3-FIFO and TTL under the shared one when nothing is to change.
fn policies() -> [Policy; 3] {
    [
        LruPolicy::new(100).unwrap().into(),
        S3FifoPolicy::new(100).unwrap().into(),
        TtlPolicy::new(Duration::from_secs(3600)).unwrap().into(),
    ]
}

fn setup(policy: Policy) -> (Arc<MemoryStore<String>>, ManualClock, RefreshOptions) {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::builder(policy).clock(clock.clone()).build());
    (store, clock, RefreshOptions::new(TokioRuntime, FRESH, GRACE))
}

/// A loader that waits until `release` is notified, then returns `value`.
fn released_by(
    release: &Arc<Notify>,
    value: &str,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, Failure>> + Send>> + Send + 'static
{
    let (release, value) = (Arc::clone(release), value.to_string());
    move || {
        Box::pin(async move {
            release.notified().await;
            Ok(value)
        })
    }
}

/// Lets spawned refreshes run to completion.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn stale_values_are_served_at_once_while_one_refresh_runs(policy: Policy) {
    let (store, clock, options) = setup(policy.clone());
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

async fn a_failed_refresh_keeps_the_stale_value_and_backs_off(policy: Policy) {
    let (store, clock, options) = setup(policy.clone());
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

async fn a_write_during_a_refresh_wins(policy: Policy) {
    for write in ["set", "delete", "invalidate", "clear"] {
        let (store, clock, options) = setup(policy.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
        clock.advance(FRESH);
        let release = Arc::new(Notify::new());
        let slow = released_by(&release, "stale from the database");
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

/// `update_metadata` is a write: a refresh that began before it stores
/// nothing (it would erase the update), and the next stale read starts
/// another, which replaces the entry as a `set` would.
async fn a_metadata_update_during_a_refresh_wins(policy: Policy) {
    let (store, clock, options) = setup(policy.clone());
    let options = options.metadata(meta(serde_json::json!({"source": "loader"})));
    let runs = Arc::new(AtomicUsize::new(0));
    store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap();
    clock.advance(FRESH);
    let release = Arc::new(Notify::new());
    let slow = released_by(&release, "v2");
    assert_eq!(store.get_or_refresh("k", slow, &options).await.unwrap(), "v1");
    settle().await;
    assert!(store.update_metadata("k", meta(serde_json::json!({"tag": "hot"}))).await.unwrap());
    release.notify_one();
    settle().await;
    let metadata = store.get_metadata("k").await.unwrap().expect("the entry is there");
    assert_eq!(metadata.get("tag"), Some(&serde_json::json!("hot")), "the update survived the refresh: {metadata:?}");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v1"), "the refresh stored nothing");
    // Still stale, and not stuck "refreshing": the next stale read refreshes.
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v3"), &options).await.unwrap(), "v1");
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a new refresh ran");
    assert_eq!(store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v3", "fresh again");
    assert_eq!(store.stats().refresh_failures, 0, "a cancelled refresh is not a failure");
}

async fn timeouts_bound_waiting_and_loading(policy: Policy) {
    let (store, clock, options) = setup(policy.clone());
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

async fn bad_options_and_keys_fail_before_any_loader(policy: Policy) {
    let (store, _, options) = setup(policy.clone());
    let zero = RefreshOptions::new(TokioRuntime, Duration::ZERO, GRACE);
    let loader = || async { unreachable!("no loader runs") as Result<String, Failure> };
    assert!(matches!(store.get_or_refresh("k", loader, &zero).await, Err(CacheError::Policy(_))));
    assert!(matches!(store.get_or_refresh("", loader, &options).await, Err(CacheError::Key { .. })));
    assert_eq!(store.stats().misses, 0, "nothing counted");
}

/// Each test once per policy, on tokio's paused clock.
macro_rules! every_policy {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(start_paused = true)]
                async fn lru() {
                    super::$test(super::policies()[0].clone()).await
                }
                #[tokio::test(start_paused = true)]
                async fn s3fifo() {
                    super::$test(super::policies()[1].clone()).await
                }
                #[tokio::test(start_paused = true)]
                async fn ttl() {
                    super::$test(super::policies()[2].clone()).await
                }
            }
        )*
    };
}

every_policy!(
    stale_values_are_served_at_once_while_one_refresh_runs,
    a_failed_refresh_keeps_the_stale_value_and_backs_off,
    a_write_during_a_refresh_wins,
    a_metadata_update_during_a_refresh_wins,
    timeouts_bound_waiting_and_loading,
    bad_options_and_keys_fail_before_any_loader
);

/// Threads reading one stale key at once under S3-FIFO (shared reads): every
/// call gets the stale value, exactly one refresh starts, every stale hit is
/// counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stale_reads_start_one_refresh() {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::builder(S3FifoPolicy::new(100).unwrap()).clock(clock.clone()).build());
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
    store.get_or_refresh("k", || async { Ok::<_, Failure>("v1".to_string()) }, &options).await.unwrap();
    clock.advance(FRESH + Duration::from_secs(1));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, options, runs) = (Arc::clone(&store), options.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                for _ in 0..1000 {
                    let runs = Arc::clone(&runs);
                    // A refresh that never ends: the key stays stale and refreshing.
                    let never = move || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<Result<String, Failure>>()
                    };
                    assert_eq!(store.get_or_refresh("k", never, &options).await.unwrap(), "v1");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    settle().await;
    let s = store.stats();
    assert_eq!((s.stale_hits, s.refreshes, s.hits, s.misses), (4000, 1, 4000, 1));
    assert!(runs.load(Ordering::SeqCst) <= 1);
}
