//! Loaders and load scenarios for the read-through (`get_or_set`) and
//! stale-while-revalidate (`get_or_refresh`) tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A loader's own error, to check that callers get it back.
#[derive(Debug, thiserror::Error)]
#[error("database down ({0})")]
pub struct DbDown(pub u32);

impl DbDown {
    /// The code of the `DbDown` a caller got back from a failed load; panics
    /// on any other outcome.
    pub fn code_in<T: std::fmt::Debug>(got: pepperpy_caching::Result<T>) -> u32 {
        match got {
            Err(pepperpy_caching::CacheError::Loader(source)) => {
                source.downcast_ref::<DbDown>().expect("the loader's own error type").0
            }
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
}

/// The error type of the loaders below.
pub type Failure = std::io::Error;

/// A loader counting its runs, returning `value`.
pub fn counting(
    runs: &Arc<AtomicUsize>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<Result<String, Failure>> + Send + 'static {
    let (runs, value) = (Arc::clone(runs), value.to_string());
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value))
    }
}

/// A loader counting its runs, failing each time.
pub fn failing(
    runs: &Arc<AtomicUsize>,
) -> impl FnOnce() -> std::future::Ready<Result<String, Failure>> + Send + 'static {
    let runs = Arc::clone(runs);
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(Failure::other("database down")))
    }
}

/// A `get_or_set` of `key` on `store`, in a task, whose loader has started
/// and waits: notifying the returned `Notify` lets it return `value`.
pub async fn blocked_load<S, V>(
    store: &Arc<S>,
    key: &str,
    value: V,
) -> (tokio::task::JoinHandle<pepperpy_caching::Result<V>>, Arc<tokio::sync::Notify>)
where
    S: pepperpy_caching::CacheStore<V> + 'static,
    V: Send + 'static,
{
    use pepperpy_caching::SetOptions;
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let load = {
        let (store, key, started, release) =
            (Arc::clone(store), key.to_string(), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                release.notified().await;
                value
            };
            store.get_or_set(&key, loader, SetOptions::new()).await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .unwrap_or_else(|_| panic!("the loader of {key:?} did not start within 20 s"));
    (load, release)
}

/// 16 callers of `get_or_set("k")` on `store`, each in a task; the first
/// loader to run waits until every caller has joined (and 50 ms more), then
/// panics; any other returns `value`. Returns what the tasks gave (a panic
/// as a `JoinError`) and how many loaders ran.
pub async fn sixteen_callers_and_a_panicking_leader<S, V>(
    store: Arc<S>,
    value: V,
) -> (Vec<Result<pepperpy_caching::Result<V>, tokio::task::JoinError>>, usize)
where
    S: pepperpy_caching::CacheStore<V> + 'static,
    V: Clone + Send + Sync + 'static,
{
    use pepperpy_caching::SetOptions;
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, runs, release, value) =
            (Arc::clone(&store), Arc::clone(&runs), Arc::clone(&release), value.clone());
        tasks.push(tokio::spawn(async move {
            let loader = move || async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    release.notified().await;
                    panic!("hostile loader");
                }
                value
            };
            store.get_or_set("k", loader, SetOptions::new()).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no loader started within 20 s");
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    let mut results = Vec::new();
    for task in tasks {
        results.push(tokio::time::timeout(Duration::from_secs(20), task).await.expect("a caller hung"));
    }
    (results, runs.load(Ordering::SeqCst))
}
