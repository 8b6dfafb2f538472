//! Time-to-idle: an entry leaves after a period without a read, or at its
//! TTL, whichever comes first; per entry (`SetOptions::idle`) and per policy
//! (`with_default_idle`). Reads are `get`, `get_or_set` and `get_or_refresh`
//! hits; `contains` and `get_metadata` are not.

use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MAX_IDLE, SetOptions};

use super::support::meta;
use super::{Backend, LONG, PASS, SHORT, s, sorted_keys, strings};

/// The idle time of the entries under test.
const IDLE: Duration = Duration::from_millis(400);
/// Time between reads that keep an idle entry alive (well under `IDLE`).
const STEP: Duration = Duration::from_millis(150);
/// Enough time without a read for an `IDLE` entry to leave.
const GONE: Duration = Duration::from_millis(650);

pub async fn an_idle_entry_lives_while_read_and_leaves_when_not<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("idle", s("i"), SetOptions::new().idle(IDLE).ttl(LONG)).await.unwrap();
    store.set("plain", s("p"), SetOptions::new()).await.unwrap();
    // Read every STEP for longer than IDLE in all: each read pushes the deadline.
    for _ in 0..5 {
        b.pass(STEP).await;
        assert_eq!(store.get("idle").await.unwrap(), Some(s("i")));
    }
    b.pass(GONE).await;
    assert_eq!(store.get("idle").await.unwrap(), None, "IDLE without a read: gone");
    assert!(!store.contains("idle").await.unwrap());
    assert_eq!(store.get_metadata("idle").await.unwrap(), None);
    assert_eq!(sorted_keys(&store, None).await, strings(&["plain"]));
    assert_eq!(store.size().await.unwrap(), 1);
    assert_eq!(store.get("plain").await.unwrap(), Some(s("p")));
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (6, 1), "{stats:?}");
}

pub async fn the_ttl_or_the_idle_time_whichever_comes_first<B: Backend>(b: &B) {
    let store = b.store(None).await;
    // The TTL first: reads do not extend past it.
    store.set("ttl-first", s("t"), SetOptions::new().ttl(SHORT).idle(LONG)).await.unwrap();
    // The idle time first, without a TTL at all.
    store.set("idle-first", s("i"), SetOptions::new().idle(IDLE)).await.unwrap();
    assert_eq!(store.get("ttl-first").await.unwrap(), Some(s("t")));
    b.pass(PASS).await;
    assert_eq!(store.get("ttl-first").await.unwrap(), None, "the TTL came first");
    b.pass(GONE).await;
    assert_eq!(store.get("idle-first").await.unwrap(), None, "the idle time came first");
    assert_eq!(store.size().await.unwrap(), 0);
}

pub async fn contains_and_get_metadata_are_not_reads<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let options = SetOptions::new().idle(IDLE).metadata(meta(serde_json::json!({ "a": 1 })));
    store.set("k", s("v"), options).await.unwrap();
    b.pass(IDLE * 3 / 4).await;
    assert!(store.contains("k").await.unwrap());
    assert_eq!(store.get_metadata("k").await.unwrap().unwrap()["a"], 1);
    b.pass(IDLE * 3 / 4).await;
    assert!(!store.contains("k").await.unwrap(), "neither call counted as a read");
    assert_eq!(store.get("k").await.unwrap(), None);
}

pub async fn the_policy_gives_a_default_idle_time<B: Backend>(b: &B) {
    let policy = LruPolicy::new(100).unwrap().with_default_idle(IDLE).unwrap();
    let store = b.store(Some(policy.into())).await;
    store.set("default", s("d"), SetOptions::new()).await.unwrap();
    store.set("own", s("o"), SetOptions::new().idle(LONG)).await.unwrap();
    b.pass(STEP).await;
    assert_eq!(store.get("default").await.unwrap(), Some(s("d")));
    b.pass(GONE).await;
    assert_eq!(store.get("default").await.unwrap(), None, "the policy's idle time");
    assert_eq!(store.get("own").await.unwrap(), Some(s("o")), "an entry's own idle time beats the default");
}

pub async fn a_set_starts_the_idle_clock_again_and_may_drop_it<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("1"), SetOptions::new().idle(IDLE)).await.unwrap();
    b.pass(IDLE * 3 / 4).await;
    // Set again without an idle time: a plain entry from now on.
    store.set("k", s("2"), SetOptions::new()).await.unwrap();
    b.pass(GONE).await;
    assert_eq!(store.get("k").await.unwrap(), Some(s("2")));
    store.set("k", s("3"), SetOptions::new().idle(IDLE)).await.unwrap();
    b.pass(GONE).await;
    assert_eq!(store.get("k").await.unwrap(), None);
}

pub async fn get_or_set_hits_are_reads<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let options = SetOptions::new().idle(IDLE);
    let v = store.get_or_set("k", || async { s("loaded") }, options.clone()).await.unwrap();
    assert_eq!(v, "loaded");
    for _ in 0..4 {
        b.pass(STEP).await;
        let v = store.get_or_set("k", || async { s("again") }, options.clone()).await.unwrap();
        assert_eq!(v, "loaded", "a hit, which keeps the entry");
    }
    b.pass(GONE).await;
    let v = store.get_or_set("k", || async { s("reloaded") }, options.clone()).await.unwrap();
    assert_eq!(v, "reloaded", "idle: loaded again");
}

pub async fn a_zero_or_absurd_idle_time_changes_nothing<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("old"), SetOptions::new()).await.unwrap();
    store.reset_stats();
    for bad in [Duration::ZERO, MAX_IDLE + Duration::from_millis(1), Duration::MAX] {
        for key in ["k", "new"] {
            let r = store.set(key, s("bad"), SetOptions::new().idle(bad)).await;
            assert!(matches!(r, Err(CacheError::Policy(_))), "{bad:?}: {r:?}");
            let r = store.get_or_set(key, || async { unreachable!() }, SetOptions::new().idle(bad)).await;
            assert!(matches!(r, Err(CacheError::Policy(_))), "{bad:?}: {r:?}");
        }
        assert!(LruPolicy::new(1).unwrap().with_default_idle(bad).is_err());
    }
    assert_eq!(store.get("k").await.unwrap(), Some(s("old")));
    assert_eq!(store.get("new").await.unwrap(), None);
    let stats = store.stats();
    assert_eq!((stats.sets, stats.hits, stats.misses), (0, 1, 1), "{stats:?}");
    // The longest accepted idle time works.
    store.set("k", s("max"), SetOptions::new().idle(MAX_IDLE)).await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(s("max")));
}
