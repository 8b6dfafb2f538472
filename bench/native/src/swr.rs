//! `swr`: a hot key inside its grace period. p50/p99 of `get_or_refresh`
//! answering with the stale value while a refresh is in flight (its loader
//! never finishes), against a plain `get` hit on the same key (an entry with
//! a TTL: its expiry is checked against the clock too) and a fresh
//! `get_or_refresh`, interleaved in one loop so that noise hits all alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pepperpy_caching::{CacheStore, ManualClock, MemoryStore, RefreshOptions, S3FifoPolicy, TokioRuntime};

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

pub fn main(args: &[String]) {
    let calls = if args.iter().any(|a| a == "--quick") { 2_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let clock = ManualClock::new();
        let store: Arc<MemoryStore<u64>> =
            Arc::new(MemoryStore::builder(S3FifoPolicy::new(10_000).unwrap()).clock(clock.clone()).build());
        let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(3600));
        let never = || std::future::pending::<Result<u64, std::io::Error>>();
        store.get_or_refresh("fresh", || async { Ok::<_, std::io::Error>(1) }, &options).await.unwrap();
        store.get_or_refresh("stale", || async { Ok::<_, std::io::Error>(2) }, &options).await.unwrap();
        // "stale" goes stale; the first stale read starts a refresh that never ends.
        clock.advance(Duration::from_secs(61));
        store.get_or_refresh("fresh", || async { Ok::<_, std::io::Error>(1) }, &options).await.unwrap();
        store.get_or_refresh("stale", never, &options).await.unwrap();
        tokio::task::yield_now().await;
        // Keep "fresh" fresh: it was refreshed at 61 s by the call above (stale, then refreshed).
        tokio::task::yield_now().await;
        let (mut plain, mut fresh, mut stale) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..calls {
            let t = Instant::now();
            std::hint::black_box(store.get("stale").into_inner().unwrap());
            plain.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            std::hint::black_box(store.get_or_refresh("fresh", never, &options).await.unwrap());
            fresh.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            std::hint::black_box(store.get_or_refresh("stale", never, &options).await.unwrap());
            stale.push(t.elapsed().as_nanos() as u64);
        }
        let s = store.stats();
        assert_eq!(s.refreshes, 2, "one refresh per key, none started again while in flight");
        let p = |v: &mut Vec<u64>| (percentile(v, 0.5), percentile(v, 0.99));
        let (pp, fp, sp) = (p(&mut plain), p(&mut fresh), p(&mut stale));
        println!("{calls} calls each, interleaved (ns)          p50     p99");
        println!("  plain get hit, same key              {:>6}  {:>6}", pp.0, pp.1);
        println!("  get_or_refresh, fresh                {:>6}  {:>6}", fp.0, fp.1);
        println!(
            "  get_or_refresh, stale, refresh running {:>4}  {:>6}   p99 {:.2}x of a plain hit",
            sp.0,
            sp.1,
            sp.1 as f64 / pp.1 as f64
        );
        println!("  stale hits counted: {}", s.stale_hits);
    });
}
