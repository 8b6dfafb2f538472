//! The removal listener every store has: what a call of this process
//! removed is reported once, with the old value and the reason (replaced,
//! deleted, invalidated, cleared), and a listener that panics changes
//! nothing; a bounded store reports what its capacity evicted for this
//! process's `set`. (The memory store also reports expiry, which Redis does
//! by itself, unseen: tests/memory_on_remove.rs.)

use std::sync::{Arc, Mutex};

use pepperpy_caching::{CacheStore, RemovalListener, RemovalReason, SetOptions};

use super::{Backend, PASS, SHORT, s};

type Log = Arc<Mutex<Vec<(String, String, RemovalReason)>>>;

fn logger() -> (RemovalListener<String>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let listener: RemovalListener<String> =
        Arc::new(move |key: &str, value, reason| sink.lock().unwrap().push((key.to_string(), value, reason)));
    (listener, log)
}

fn take(log: &Log) -> Vec<(String, String, RemovalReason)> {
    let mut got = std::mem::take(&mut *log.lock().unwrap());
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    got
}

fn notice(key: &str, value: &str, reason: RemovalReason) -> (String, String, RemovalReason) {
    (key.to_string(), value.to_string(), reason)
}

pub async fn each_removal_is_reported_once_with_its_reason<B: Backend>(b: &B) {
    let (listener, log) = logger();
    let store = b.listened(None, listener).await;
    store.set("a", s("1"), SetOptions::new()).await.unwrap();
    assert_eq!(take(&log), [], "a new key replaces nothing");
    store.set("a", s("2"), SetOptions::new()).await.unwrap();
    assert_eq!(take(&log), [notice("a", "1", RemovalReason::Replaced)]);
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap());
    assert_eq!(take(&log), [notice("a", "2", RemovalReason::Deleted)]);
    for (key, value) in [("user:1", "u1"), ("user:2", "u2"), ("team:1", "t1")] {
        store.set(key, s(value), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.invalidate("user:*").await.unwrap(), 2);
    assert_eq!(
        take(&log),
        [notice("user:1", "u1", RemovalReason::Invalidated), notice("user:2", "u2", RemovalReason::Invalidated)]
    );
    assert_eq!(store.invalidate("user:*").await.unwrap(), 0);
    store.clear().await.unwrap();
    assert_eq!(take(&log), [notice("team:1", "t1", RemovalReason::Cleared)]);
    store.clear().await.unwrap();
    assert_eq!(take(&log), []);
}

pub async fn a_panicking_listener_changes_nothing<B: Backend>(b: &B) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let listener: RemovalListener<String> = Arc::new(move |key: &str, _, reason| {
        seen.lock().unwrap().push((key.to_string(), reason));
        panic!("a listener that panics on {key}");
    });
    let store = b.listened(None, listener).await;
    store.set("a", s("1"), SetOptions::new()).await.unwrap();
    store.set("a", s("2"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s("2")));
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    store.set("c", s("c"), SetOptions::new()).await.unwrap();
    assert!(store.delete("a").await.unwrap());
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.invalidate("[bc]").await.unwrap(), 2, "both removed, though the first notice panicked");
    assert_eq!(store.size().await.unwrap(), 0);
    store.set("d", s("d"), SetOptions::new()).await.unwrap();
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
    store.set("e", s("e"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("e").await.unwrap(), Some(s("e")), "the store still works");
    let mut calls = calls.lock().unwrap().clone();
    calls.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        calls,
        [
            (s("a"), RemovalReason::Replaced),
            (s("a"), RemovalReason::Deleted),
            (s("b"), RemovalReason::Invalidated),
            (s("c"), RemovalReason::Invalidated),
            (s("d"), RemovalReason::Cleared),
        ]
    );
}

pub async fn a_set_over_an_expired_entry_replaces_nothing<B: Backend>(b: &B) {
    let (listener, log) = logger();
    let store = b.listened(None, listener).await;
    store.set("k", s("old"), SetOptions::new().ttl(SHORT)).await.unwrap();
    b.pass(PASS).await;
    store.set("k", s("new"), SetOptions::new()).await.unwrap();
    // The memory store finds the expired entry and reports it; Redis expired it itself.
    let got = take(&log);
    assert!(got.iter().all(|n| n.2 == RemovalReason::Expired), "{got:?}");
    assert!(got.len() <= 1);
    assert_eq!(store.get("k").await.unwrap(), Some(s("new")));
}

pub async fn a_bounded_store_reports_what_a_set_replaced<B: Backend>(b: &B) {
    let (listener, log) = logger();
    let store = b.listened(Some(pepperpy_caching::LruPolicy::new(2).unwrap().into()), listener).await;
    store.set("a", s("1"), SetOptions::new()).await.unwrap();
    store.set("a", s("2"), SetOptions::new()).await.unwrap();
    assert_eq!(take(&log), [notice("a", "1", RemovalReason::Replaced)]);
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    store.set("c", s("c"), SetOptions::new()).await.unwrap();
    // A Redis store's capacity script returns what it evicted for this process.
    assert_eq!(take(&log), [notice("a", "2", RemovalReason::Evicted)]);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert!(store.delete("b").await.unwrap());
    assert_eq!(take(&log), [notice("b", "b", RemovalReason::Deleted)]);
}

pub async fn batches_report_what_they_remove<B: Backend>(b: &B) {
    for policy in [None, Some(pepperpy_caching::LruPolicy::new(3).unwrap().into())] {
        let (listener, log) = logger();
        let store = b.listened(policy, listener).await;
        store.set("a", s("1"), SetOptions::new()).await.unwrap();
        store.set_many(vec![("a", s("2")), ("b", s("b"))], SetOptions::new()).await.unwrap();
        assert_eq!(take(&log), [notice("a", "1", RemovalReason::Replaced)]);
        assert_eq!(store.delete_many(&["a", "b", "missing"]).await.unwrap(), 2);
        assert_eq!(take(&log), [notice("a", "2", RemovalReason::Deleted), notice("b", "b", RemovalReason::Deleted)]);
        assert_eq!(store.get_many(&["a", "b"]).await.unwrap(), [None, None]);
    }
}

/// A tagged `set` reports what it replaced and evicted as an untagged one
/// does (on Redis it is another write path: the entry and its tag listing
/// in one round trip), unbounded and under a capacity; `invalidate_tags`
/// reports what it removed as invalidated.
pub async fn tagged_sets_report_what_they_remove<B: Backend>(b: &B) {
    for policy in [None, Some(pepperpy_caching::LruPolicy::new(2).unwrap().into())] {
        let (listener, log) = logger();
        let bounded = policy.is_some();
        let store = b.listened(policy, listener).await;
        let tagged = || SetOptions::new().tags(["team:7"]);
        store.set("a", s("1"), tagged()).await.unwrap();
        assert_eq!(take(&log), [], "a new key replaces nothing");
        store.set("a", s("2"), tagged()).await.unwrap();
        assert_eq!(take(&log), [notice("a", "1", RemovalReason::Replaced)], "bounded: {bounded}");
        if bounded {
            store.set("b", s("b"), tagged()).await.unwrap();
            store.set("c", s("c"), tagged()).await.unwrap();
            assert_eq!(take(&log), [notice("a", "2", RemovalReason::Evicted)]);
            assert_eq!(store.invalidate_tags(&["team:7"]).await.unwrap(), 2);
            assert_eq!(
                take(&log),
                [notice("b", "b", RemovalReason::Invalidated), notice("c", "c", RemovalReason::Invalidated)]
            );
        } else {
            assert_eq!(store.invalidate_tags(&["team:7"]).await.unwrap(), 1);
            assert_eq!(take(&log), [notice("a", "2", RemovalReason::Invalidated)]);
        }
    }
}

/// What a read-through load stores may evict (a bounded store reports it as
/// a `set`'s), and a stale-while-revalidate refresh that stores its value
/// replaced the stale one: both reported, the refresh's from its task.
pub async fn loads_and_refreshes_report_what_they_remove<B: Backend>(b: &B) {
    let (listener, log) = logger();
    let store = b.listened(Some(pepperpy_caching::LruPolicy::new(1).unwrap().into()), listener).await;
    store.set("old", s("o"), SetOptions::new()).await.unwrap();
    let loaded = store.get_or_set("k", || async { s("loaded") }, SetOptions::new()).await;
    assert_eq!(loaded.unwrap(), "loaded");
    assert_eq!(take(&log), [notice("old", "o", RemovalReason::Evicted)]);

    let (listener, log) = logger();
    let store = Arc::new(b.listened(None, listener).await);
    let options = super::refresh::Tasks;
    let options = pepperpy_caching::RefreshOptions::new(options, SHORT, std::time::Duration::from_secs(60));
    let v = |value: &'static str| move || async move { Ok::<_, std::io::Error>(s(value)) };
    assert_eq!(store.get_or_refresh("r", v("v1"), &options).await.unwrap(), "v1");
    assert_eq!(take(&log), [], "a first load replaces nothing");
    b.pass(PASS).await;
    assert_eq!(store.get_or_refresh("r", v("v2"), &options).await.unwrap(), "v1", "stale, served at once");
    super::support::within("the refresh to report", async {
        while log.lock().unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(take(&log), [notice("r", "v1", RemovalReason::Replaced)]);
    assert_eq!(store.get("r").await.unwrap(), Some(s("v2")));
}
