#![cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
//! get_or_refresh's shared fresh hit counted on the reading thread's lane
//! and the lanes' retry after a lane is freed: waves of more than 16 short-lived threads mixing `get`
//! and `get_or_refresh` hits, lanes freed and taken again every wave, some
//! threads finding none free. `stats()` read meanwhile must never go back,
//! and once the threads have exited it must count every hit exactly once.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pepperpy_caching::{CacheStore, MemoryStore, RefreshOptions, S3FifoPolicy, TokioRuntime};

/// Polls a future that must be ready at once (a fresh hit answers under the shared lock).
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a fresh hit was not answered at once"),
    }
}

// Expected: hits never go back while read, and equal the hits made once every thread exited.
#[test]
fn get_or_refresh_hits_on_lanes_past_sixteen_churned_threads_never_go_back_and_are_exact() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Arc::new(MemoryStore::<u64>::builder(S3FifoPolicy::new(10_000).unwrap()).shards(4).build());
    let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(3_600), Duration::from_secs(3_600));
    rt.block_on(async {
        for i in 0..64u64 {
            let key = format!("k{i}");
            let v = store.get_or_refresh(&key, move || async move { Ok::<_, std::io::Error>(i) }, &options);
            assert_eq!(v.await.unwrap(), i);
        }
    });
    let base = store.stats().hits;
    let made = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut back = None;
    std::thread::scope(|scope| {
        let (store, options, made, stop) = (&store, &options, &made, &stop);
        // The churn: waves of 20 threads, each a few hundred hits, then exits.
        scope.spawn(move || {
            for wave in 0..40u64 {
                std::thread::scope(|inner| {
                    for t in 0..20u64 {
                        inner.spawn(move || {
                            let mut n = 0;
                            for i in 0..(50 + (wave * 7 + t * 13) % 200) {
                                let k = (t + i) % 64;
                                let key = format!("k{k}");
                                let v = if i % 2 == 0 {
                                    now(store.get_or_refresh(
                                        &key,
                                        || async { Ok::<_, std::io::Error>(u64::MAX) },
                                        options,
                                    ))
                                    .unwrap()
                                } else {
                                    store.get(&key).into_inner().unwrap().unwrap()
                                };
                                assert_eq!(v, k);
                                n += 1;
                            }
                            made.fetch_add(n, Ordering::Relaxed);
                        });
                    }
                });
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut last = base;
        while !stop.load(Ordering::Relaxed) {
            let hits = store.stats().hits;
            if hits < last && back.is_none() {
                back = Some((last, hits));
            }
            last = hits;
        }
    });
    assert_eq!(back, None, "hits went back while the threads ran");
    assert_eq!(store.stats().hits - base, made.into_inner(), "exact once every thread exited");
}
