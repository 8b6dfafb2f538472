//! Stale-while-revalidate on RedisStore (`get_or_refresh`, issue 9): a stale
//! value is served at once while one refresh runs across every instance on
//! the prefix; stale-if-error with a backoff shared by the instances; soft
//! and hard timeouts; no stale write-back.
//!
//! Freshness and the backoff run on Redis's clock, so those tests wait for
//! real (a few hundred ms at most; a longer backoff is skipped by rewriting
//! its marker). Timeouts run on a manual timer ([`ManualTimers`]), which the
//! tests move by hand.
#![cfg(all(feature = "redis", feature = "tokio", not(target_arch = "wasm32")))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{
    BoxFuture, CacheError, CacheStore, LruPolicy, Policy, RefreshOptions, Runtime, SetOptions, TokioRuntime,
    stores::RedisStore,
};
use redis::aio::MultiplexedConnection;
use support::load::{Failure, counting, failing};
use support::{RedisServer, until, within};
use tokio::sync::{Notify, watch};

const PREFIX: &str = "swr:";
/// Short, so that a test can wait for an entry to go stale.
const FRESH: Duration = Duration::from_millis(250);
const GRACE: Duration = Duration::from_secs(60);
/// A store of this file under its prefix.
async fn store(server: &RedisServer, policy: Option<Policy>, lease: Duration) -> Arc<RedisStore<String>> {
    support::leased_store(server, PREFIX, policy, lease).await
}

const LONG_LEASE: Duration = Duration::from_secs(60);

fn lock_key(key: &str) -> Vec<u8> {
    [PREFIX.as_bytes(), "\u{FFFF}lock:".as_bytes(), key.as_bytes()].concat()
}

async fn lock_value(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(lock_key(key)).query_async(conn).await.unwrap()
}

/// Redis's clock in ms.
async fn redis_now(conn: &mut MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s * 1000 + us / 1000
}

/// The backoff marker of `key`: (failures in a row, retry at in ms).
async fn backoff(conn: &mut MultiplexedConnection, key: &str) -> (u32, u64) {
    let marker = lock_value(conn, key).await.expect("a backoff marker");
    let mut parts = marker.strip_prefix("backoff:").unwrap_or_else(|| panic!("not a backoff: {marker}")).split(':');
    (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
}

/// Ends the backoff of `key` now, keeping its count (instead of waiting).
async fn end_backoff(conn: &mut MultiplexedConnection, key: &str) {
    let (failures, _) = backoff(conn, key).await;
    redis::cmd("SET")
        .arg(lock_key(key))
        .arg(format!("backoff:{failures}:0"))
        .arg("KEEPTTL")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// Waits until no refresh holds `key`'s lock (it stored, was refused, or
/// left a backoff marker).
async fn until_no_refresh_runs(conn: &mut MultiplexedConnection, key: &str) {
    within("the refresh to end", async {
        while lock_value(conn, key).await.is_some_and(|v| !v.starts_with("backoff:")) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Waits until `key` reads back as `value` (a background refresh stored it).
async fn until_value(store: &RedisStore<String>, key: &str, value: &str) {
    within("the refreshed value", async {
        while store.get(key).await.unwrap().as_deref() != Some(value) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Gives a wrongly started background refresh the time to show itself
/// before a test checks that none started (correctness, not speed).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A loader that signals when it starts and returns `value` when released.
fn held(
    started: &Arc<Notify>,
    release: &Arc<Notify>,
    value: &str,
) -> impl FnOnce() -> BoxFuture<Result<String, Failure>> + Send + 'static {
    let (started, release, value) = (Arc::clone(started), Arc::clone(release), value.to_string());
    move || {
        Box::pin(async move {
            started.notify_one();
            release.notified().await;
            Ok(value)
        })
    }
}

/// Stores `v1` through `get_or_refresh` and waits until it is stale.
async fn stale_entry(store: &Arc<RedisStore<String>>, options: &RefreshOptions) {
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v1"), options).await.unwrap(), "v1");
    tokio::time::sleep(FRESH + Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_at_once_while_one_refresh_runs_across_instances() {
    let server = RedisServer::start();
    for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
        let (a, b) = (store(&server, policy.clone(), LONG_LEASE).await, store(&server, policy, LONG_LEASE).await);
        a.clear().await.unwrap();
        let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(a.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
        assert_eq!(b.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v1", "fresh on B");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "fresh: no load");
        tokio::time::sleep(FRESH + Duration::from_millis(100)).await;

        // Stale: A starts the one refresh, held open until released.
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        assert_eq!(a.get_or_refresh("k", held(&started, &release, "v2"), &options).await.unwrap(), "v1");
        within("the refresh", started.notified()).await;
        for i in 0..50 {
            let store = if i % 2 == 0 { &a } else { &b };
            let v = store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap();
            assert_eq!(v, "v1", "stale while the refresh runs");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one refresh for 51 stale reads on two instances");
        release.notify_one();
        let mut conn = server.admin().await;
        until_no_refresh_runs(&mut conn, "k").await;
        for store in [&a, &b] {
            assert_eq!(store.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v2");
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.refreshes, sb.refreshes, sa.refresh_failures), (1, 0, 0));
        assert_eq!(sa.stale_hits + sb.stale_hits, 51);
        assert_eq!((sa.hits + sa.misses, sb.hits + sb.misses), (1 + 1 + 25 + 1, 1 + 25 + 1), "one get per call");
        assert_eq!(sa.misses, 1);
        // A refreshed entry is an ordinary one to the other calls.
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v2"));
        let ttl: i64 = redis::cmd("PTTL").arg(format!("{PREFIX}k")).query_async(&mut conn).await.unwrap();
        assert!(ttl > (GRACE - Duration::from_secs(5)).as_millis() as i64, "lives for fresh + grace: {ttl}");
        assert_eq!(lock_value(&mut conn, "k").await, None, "the refresh lock is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_stale_value_and_every_instance_backs_off() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, None, LONG_LEASE).await, store(&server, None, LONG_LEASE).await);
    let retry = Duration::from_secs(2);
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE).retry_after(retry);
    let mut conn = server.admin().await;
    stale_entry(&a, &options).await;
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(a.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    until("the failure", || a.stats().refresh_failures == 1).await;
    until_no_refresh_runs(&mut conn, "k").await;
    let (failures, at) = backoff(&mut conn, "k").await;
    let left = at.saturating_sub(redis_now(&mut conn).await);
    assert_eq!(failures, 1);
    assert!(left > 0 && left <= retry.as_millis() as u64, "{left} ms");

    // Within the backoff: stale served on both instances, no refresh.
    for store in [&a, &b] {
        assert_eq!(store.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    }
    settle().await;
    assert_eq!(backoff(&mut conn, "k").await.0, 1, "no refresh took the lock during the backoff");
    assert_eq!((a.stats().refreshes, b.stats().refreshes), (1, 0), "no refresh during the backoff");

    // After it: B tries once more, fails again; the backoff doubles.
    end_backoff(&mut conn, "k").await;
    assert_eq!(b.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v1");
    until("B's failure", || b.stats().refresh_failures == 1).await;
    until_no_refresh_runs(&mut conn, "k").await;
    let (failures, at) = backoff(&mut conn, "k").await;
    let left = at.saturating_sub(redis_now(&mut conn).await);
    assert_eq!((failures, runs.load(Ordering::SeqCst)), (2, 2));
    assert!(left > retry.as_millis() as u64 && left <= 2 * retry.as_millis() as u64, "{left} ms");

    // Then a refresh that works: fresh again, backoff forgotten.
    end_backoff(&mut conn, "k").await;
    assert_eq!(a.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    until_value(&a, "k", "v2").await;
    until_no_refresh_runs(&mut conn, "k").await;
    assert_eq!(b.get_or_refresh("k", failing(&runs), &options).await.unwrap(), "v2");
    assert_eq!(lock_value(&mut conn, "k").await, None);
    assert_eq!((a.stats().refreshes, b.stats().refreshes), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_ends_by_redis_time() {
    let server = RedisServer::start();
    let a = store(&server, None, LONG_LEASE).await;
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE).retry_after(Duration::from_millis(200));
    let mut conn = server.admin().await;
    stale_entry(&a, &options).await;
    let runs = Arc::new(AtomicUsize::new(0));
    a.get_or_refresh("k", failing(&runs), &options).await.unwrap();
    until("the failure", || a.stats().refresh_failures == 1).await;
    until_no_refresh_runs(&mut conn, "k").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1");
    // The backoff ended: this read's refresh runs and stores.
    until_value(&a, "k", "v2").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Set,
    Update,
    Delete,
    Invalidate,
    Clear,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_instance_during_a_refresh_wins() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    for write in [Write::Set, Write::Update, Write::Delete, Write::Invalidate, Write::Clear] {
        for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
            let (a, b) = (store(&server, policy.clone(), LONG_LEASE).await, store(&server, policy, LONG_LEASE).await);
            a.clear().await.unwrap();
            let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
            stale_entry(&a, &options).await;
            let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            a.get_or_refresh("k", held(&started, &release, "stale from the database"), &options).await.unwrap();
            within("the refresh", started.notified()).await;
            match write {
                Write::Set => b.set("k", "newer".into(), SetOptions::new()).await.unwrap(),
                Write::Update => {
                    let meta = serde_json::json!({"by": "b"}).as_object().cloned().unwrap();
                    assert!(b.update_metadata("k", meta).await.unwrap());
                }
                Write::Delete => assert!(b.delete("k").await.unwrap()),
                Write::Invalidate => assert_eq!(b.invalidate("k").await.unwrap(), 1),
                Write::Clear => b.clear().await.unwrap(),
            }
            release.notify_one();
            until("the refresh's load", || a.stats().loads == 2).await;
            until_no_refresh_runs(&mut conn, "k").await;
            let expected = match write {
                Write::Set => Some("newer"),
                Write::Update => Some("v1"),
                _ => None,
            };
            assert_eq!(a.get("k").await.unwrap().as_deref(), expected, "{write:?} during the refresh wins");
            if let Write::Update = write {
                assert_eq!(a.get_metadata("k").await.unwrap().unwrap()["by"], "b");
            }
            assert_eq!(lock_value(&mut conn, "k").await, None, "{write:?}: the refused refresh released its lock");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_outlived_its_lease_stores_nothing() {
    let server = RedisServer::start();
    let a = store(&server, None, Duration::from_millis(200)).await;
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
    let mut conn = server.admin().await;
    stale_entry(&a, &options).await;
    let late = || async {
        // Redis's clock ends the lease: a real wait.
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok::<_, Failure>("late".to_string())
    };
    assert_eq!(a.get_or_refresh("k", late, &options).await.unwrap(), "v1");
    until("the refresh's load", || a.stats().loads == 2).await;
    until_no_refresh_runs(&mut conn, "k").await;
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v1"), "a lease-expired refresh wrote");
    assert_eq!(a.stats().sets, 1, "only the first load stored");
}

/// A `Runtime` whose timers move only when the test says: timeouts with no
/// real waiting.
#[derive(Clone)]
struct ManualTimers {
    now: Arc<watch::Sender<Duration>>,
}

impl ManualTimers {
    fn new() -> Self {
        ManualTimers { now: Arc::new(watch::channel(Duration::ZERO).0) }
    }

    fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Runtime for ManualTimers {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let mut now = self.now.subscribe();
        let deadline = *now.borrow() + duration;
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_bound_waiting_and_refreshing() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, None, LONG_LEASE).await, store(&server, None, LONG_LEASE).await);
    let timers = ManualTimers::new();
    let options = RefreshOptions::new(timers.clone(), FRESH, GRACE)
        .timeouts(Some(Duration::from_millis(100)), Some(Duration::from_secs(1)))
        .retry_after(Duration::from_secs(30));

    // Soft: the caller of a miss gives up, and its placeholder goes with it
    // (B loads at once, not after the 60 s lease).
    let started = Arc::new(Notify::new());
    let waiting = {
        let (a, options, started) = (Arc::clone(&a), options.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            let never = move || async move {
                started.notify_one();
                std::future::pending::<Result<String, Failure>>().await
            };
            a.get_or_refresh("miss", never, &options).await
        })
    };
    within("the loader", started.notified()).await;
    timers.advance(Duration::from_millis(100));
    let err = within("the soft timeout", waiting).await.unwrap().unwrap_err();
    assert!(matches!(err, CacheError::Timeout { .. }), "{err:?}");
    let runs = Arc::new(AtomicUsize::new(0));
    let v = within("B's load", b.get_or_refresh("miss", counting(&runs, "from B"), &options)).await.unwrap();
    assert_eq!(v, "from B");

    // Hard: a refresh that never ends is dropped and counts as failed; the
    // stale value stays and the backoff starts.
    stale_entry(&a, &options).await;
    let started = Arc::new(Notify::new());
    let never = {
        let started = Arc::clone(&started);
        move || async move {
            started.notify_one();
            std::future::pending::<Result<String, Failure>>().await
        }
    };
    assert_eq!(a.get_or_refresh("k", never, &options).await.unwrap(), "v1");
    within("the refresh", started.notified()).await;
    timers.advance(Duration::from_secs(1));
    until("the hard timeout", || a.stats().refresh_failures == 1).await;
    let mut conn = server.admin().await;
    until_no_refresh_runs(&mut conn, "k").await;
    assert_eq!(backoff(&mut conn, "k").await.0, 1);
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v1"), "the stale value stayed");

    // Hard, on a miss: the caller gets the timeout, nothing is stored.
    let options = options.timeouts(None, Some(Duration::from_secs(1)));
    let started = Arc::new(Notify::new());
    let loading = {
        let (a, options, started) = (Arc::clone(&a), options.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            let never = move || async move {
                started.notify_one();
                std::future::pending::<Result<String, Failure>>().await
            };
            a.get_or_refresh("other", never, &options).await
        })
    };
    within("the loader", started.notified()).await;
    timers.advance(Duration::from_secs(1));
    let err = within("the hard timeout", loading).await.unwrap().unwrap_err();
    assert!(matches!(err, CacheError::Timeout { .. }), "{err:?}");
    assert!(!a.contains("other").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_loader_panics_counts_as_failed_and_backs_off() {
    let server = RedisServer::start();
    let a = store(&server, None, LONG_LEASE).await;
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE).retry_after(Duration::from_secs(30));
    let mut conn = server.admin().await;
    stale_entry(&a, &options).await;
    let panics = || async { panic!("loader bug") as Result<String, Failure> };
    assert_eq!(a.get_or_refresh("k", panics, &options).await.unwrap(), "v1");
    until("the failure", || a.stats().refresh_failures == 1).await;
    until_no_refresh_runs(&mut conn, "k").await;
    assert_eq!(backoff(&mut conn, "k").await.0, 1, "no retry on every stale read");
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(a.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v1");
    // Had that read started a refresh, it would hold the lock or have stored.
    settle().await;
    until_no_refresh_runs(&mut conn, "k").await;
    assert_eq!(backoff(&mut conn, "k").await.0, 1);
    assert_eq!((runs.load(Ordering::SeqCst), a.stats().refreshes), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_asking_for_its_own_key_is_reentrant() {
    let server = RedisServer::start();
    let a = store(&server, None, LONG_LEASE).await;
    let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
    let (inner, inner_options) = (Arc::clone(&a), options.clone());
    let loader = move || async move {
        let nested =
            inner.get_or_refresh("k", || async { Ok::<_, Failure>("inner".to_string()) }, &inner_options).await;
        assert!(matches!(&nested, Err(CacheError::Reentrant { .. })), "{nested:?}");
        Ok::<_, Failure>("outer".to_string())
    };
    assert_eq!(within("outer", a.get_or_refresh("k", loader, &options)).await.unwrap(), "outer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_entries_read_as_usual_and_keep_their_freshness() {
    let server = RedisServer::start();
    let a = store(&server, None, LONG_LEASE).await;
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), GRACE);
    let runs = Arc::new(AtomicUsize::new(0));
    let meta = serde_json::json!({"source": "db"}).as_object().cloned().unwrap();
    let options = options.metadata(meta.clone());
    assert_eq!(a.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(a.get_metadata("k").await.unwrap(), Some(meta));
    let extra = serde_json::json!({"seen": true}).as_object().cloned().unwrap();
    assert!(a.update_metadata("k", extra).await.unwrap());
    let mut conn = server.admin().await;
    let doc: String = redis::cmd("GET").arg(format!("{PREFIX}k")).query_async(&mut conn).await.unwrap();
    assert!(doc.starts_with(r#"{"f":"#), "the freshness stamp stays first: {doc}");
    assert_eq!(a.get_or_refresh("k", counting(&runs, "never"), &options).await.unwrap(), "v1");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(a.keys(None).await.unwrap(), vec!["k".to_string()]);

    // Entries stored otherwise are fresh until they expire.
    a.set("plain", "p".into(), SetOptions::new()).await.unwrap();
    assert_eq!(a.get_or_refresh("plain", counting(&runs, "never"), &options).await.unwrap(), "p");

    // Bad input fails before any loader and counts nothing.
    a.reset_stats();
    let zero = RefreshOptions::new(TokioRuntime, Duration::ZERO, GRACE);
    let never = || async { unreachable!("no loader runs") as Result<String, Failure> };
    assert!(matches!(a.get_or_refresh("k", never, &zero).await, Err(CacheError::Policy(_))));
    assert!(matches!(a.get_or_refresh("", never, &options).await, Err(CacheError::Key { .. })));
    assert_eq!(a.stats().hits + a.stats().misses, 0);
}

/// A refresh whose script Redis forgot (SCRIPT FLUSH, a restart) still
/// writes through EVAL and still reports the value it replaced to a
/// listener, bounded or not; a listened unbounded `get_or_set` of a missing
/// key reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listened_refresh_after_a_script_flush_reports_what_it_replaced() {
    use pepperpy_caching::RemovalReason;
    use std::sync::Mutex;
    let server = RedisServer::start();
    for policy in [None, Some(Policy::from(LruPolicy::new(100).unwrap()))] {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let store = Arc::new(
            support::redis_builder(&server, PREFIX, policy.clone())
                .lock_lease(LONG_LEASE)
                .on_remove(move |key: &str, value: String, reason| {
                    sink.lock().unwrap().push((key.to_owned(), value, reason))
                })
                .build()
                .await
                .unwrap(),
        );
        store.clear().await.unwrap();
        log.lock().unwrap().clear();
        let options = RefreshOptions::new(TokioRuntime, FRESH, GRACE);
        let loaded = store.get_or_set("fresh", || async { "loaded".to_owned() }, SetOptions::new()).await;
        assert_eq!(loaded.unwrap(), "loaded");
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
        assert!(log.lock().unwrap().is_empty(), "loads of missing keys replace nothing ({policy:?})");
        tokio::time::sleep(FRESH + Duration::from_millis(100)).await;
        let mut conn = server.admin().await;
        redis::cmd("SCRIPT").arg("FLUSH").exec_async(&mut conn).await.unwrap();
        assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1", "stale");
        until_no_refresh_runs(&mut conn, "k").await;
        until_value(&store, "k", "v2").await;
        let removed = log.lock().unwrap().clone();
        assert_eq!(removed, [("k".to_owned(), "v1".to_owned(), RemovalReason::Replaced)], "{policy:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
