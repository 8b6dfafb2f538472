//! The public Rust API compiled to wasm32 and run in Node (`wasm-pack test --node`):
//! the core behaves there as natively, on the `performance.now()` clock.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use pepperpy_caching::policies::{LruPolicy, TtlPolicy};
use pepperpy_caching::{CacheError, CacheStore, SetOptions, stores::MemoryStore};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: i32);
}

/// Waits `ms` of real time, letting the JS event loop run.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| set_timeout(&resolve, ms));
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
fn lru_eviction_metadata_and_invalidation() {
    let store = MemoryStore::new(LruPolicy::new(2).unwrap());
    store.set("user:1", "a".to_string(), SetOptions::new()).into_inner().unwrap();
    store.set("user:2", "b".to_string(), SetOptions::new()).into_inner().unwrap();
    assert_eq!(store.get("user:1").into_inner().unwrap().as_deref(), Some("a"));
    store.set("post:1", "c".to_string(), SetOptions::new()).into_inner().unwrap(); // evicts user:2
    assert_eq!(store.get("user:2").into_inner().unwrap(), None);
    assert_eq!(store.invalidate("user:*").into_inner().unwrap(), 1);
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions, stats.deletes), (1, 1, 1, 1));
    assert!(matches!(store.get("").into_inner(), Err(CacheError::Key { .. })));
}

#[wasm_bindgen_test]
async fn entries_expire_on_the_system_clock() {
    let store = MemoryStore::new(TtlPolicy::new(Duration::from_millis(30)).unwrap());
    store.set("k", 1u32, SetOptions::new()).into_inner().unwrap();
    store.set("long", 2u32, SetOptions::new().ttl(Duration::from_secs(60))).into_inner().unwrap();
    assert_eq!(store.get("k").into_inner().unwrap(), Some(1));
    sleep(80).await;
    assert_eq!(store.get("k").into_inner().unwrap(), None);
    assert_eq!(store.get("long").into_inner().unwrap(), Some(2));
    assert_eq!(store.stats().expirations, 1);
}

#[wasm_bindgen_test]
fn get_latency_is_measured() {
    let store = MemoryStore::new(LruPolicy::new(10).unwrap());
    store.set("k", 1u8, SetOptions::new()).into_inner().unwrap();
    for _ in 0..100 {
        store.get("k").into_inner().unwrap();
    }
    // performance.now() may be coarse, so the mean can be zero, never negative or NaN.
    let latency = store.stats().avg_get_latency;
    assert!(latency < Duration::from_millis(50), "{latency:?}");
}

/// Gives way to the other tasks once: a `Send` pause for a loader, where a
/// JS timer's future is not `Send`.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[wasm_bindgen_test]
async fn concurrent_get_or_set_runs_one_load_on_the_js_event_loop() {
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU32, Ordering};
    // A static: the loader must be `Send`, which an `Rc` is not.
    static RUNS: AtomicU32 = AtomicU32::new(0);

    let store = Rc::new(MemoryStore::new(LruPolicy::new(10).unwrap()));
    let calls = js_sys::Array::new();
    for _ in 0..100 {
        let store = Rc::clone(&store);
        let call = async move {
            let loader = || async {
                RUNS.fetch_add(1, Ordering::Relaxed);
                YieldOnce(false).await; // the other 99 calls arrive meanwhile
                7u32
            };
            let value = store.get_or_set("k", loader, SetOptions::new()).await.map_err(|e| e.to_string())?;
            Ok(JsValue::from(value))
        };
        calls.push(&wasm_bindgen_futures::future_to_promise(call));
    }
    let values = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::all(&calls)).await.unwrap();
    let values: Vec<f64> = js_sys::Array::from(&values).iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(values, vec![7.0; 100]);
    assert_eq!(RUNS.load(Ordering::Relaxed), 1);
    let stats = store.stats();
    // Every call missed, so all 100 were waiting on the one load.
    assert_eq!((stats.misses, stats.hits), (100, 0));
    assert_eq!((stats.loads, stats.load_failures, stats.sets), (1, 0, 1));
}
