//! The batch calls, `get_many`, `set_many` and `delete_many`: results in
//! the order asked, duplicates, counters per key, the shared options, the
//! capacity, loads in flight, and bad input that fails the whole call and
//! changes nothing.

use std::sync::Arc;

use pepperpy_caching::{CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, Metadata, SetOptions};

use super::support::load::blocked_load;
use super::support::{meta, nested, within};
use super::{Backend, LONG, PASS, SHORT, s, sorted_keys, strings};

fn counts(stats: &CacheStats) -> (u64, u64, u64, u64) {
    (stats.hits, stats.misses, stats.sets, stats.deletes)
}

pub async fn get_many_answers_in_the_order_asked<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("a", s("1"), SetOptions::new()).await.unwrap();
    store.set("b", s("2"), SetOptions::new()).await.unwrap();
    let got = store.get_many(&["b", "missing", "a", "b"]).await.unwrap();
    assert_eq!(got, [Some(s("2")), None, Some(s("1")), Some(s("2"))]);
    assert_eq!(counts(&store.stats()), (3, 1, 2, 0), "each key asked counts, a duplicate too");
    assert_eq!(store.get_many(&[]).await.unwrap(), Vec::<Option<String>>::new());
    assert_eq!(counts(&store.stats()), (3, 1, 2, 0), "an empty batch counts nothing");
    // Many keys (across every shard, bucket and master).
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let entries = keys.iter().step_by(2).map(|k| (k.as_str(), k.to_uppercase())).collect();
    store.set_many(entries, SetOptions::new()).await.unwrap();
    let asked: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    let got = store.get_many(&asked).await.unwrap();
    let expected: Vec<Option<String>> = (0..300).rev().map(|i| (i % 2 == 0).then(|| format!("USER:{i}"))).collect();
    assert_eq!(got, expected);
    assert_eq!(counts(&store.stats()), (3 + 150, 1 + 150, 2 + 150, 0));
}

pub async fn set_many_stores_every_entry_with_the_shared_options<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("old", s("kept"), SetOptions::new().ttl(LONG)).await.unwrap();
    let m = meta(serde_json::json!({"source": "batch"}));
    let short = SetOptions::new().ttl(SHORT).metadata(m.clone());
    store.set_many(vec![("a", s("1")), ("b", s("2")), ("a", s("3"))], short).await.unwrap();
    assert_eq!(store.get_many(&["a", "b"]).await.unwrap(), [Some(s("3")), Some(s("2"))], "the last of a key wins");
    assert_eq!(store.get_metadata("b").await.unwrap(), Some(m.clone()));
    assert_eq!(store.stats().sets, 1 + 3, "each entry given counts as a set");
    store.set_many(vec![("c", s("long"))], SetOptions::new().ttl(LONG).metadata(m)).await.unwrap();
    store.set_many(vec![], SetOptions::new().ttl(SHORT)).await.unwrap();
    assert_eq!(store.stats().sets, 1 + 3 + 1, "an empty batch counts nothing");
    b.pass(PASS).await;
    assert_eq!(
        store.get_many(&["a", "b", "c", "old"]).await.unwrap(),
        [None, None, Some(s("long")), Some(s("kept"))],
        "the batch's TTL applies to each of its entries"
    );
    assert_eq!(sorted_keys(&store, None).await, strings(&["c", "old"]));
    // A replaced entry takes the batch's options: no metadata now.
    store.set_many(vec![("c", s("again"))], SetOptions::new()).await.unwrap();
    assert_eq!(store.get_metadata("c").await.unwrap(), Some(Metadata::new()));
}

pub async fn delete_many_counts_each_live_entry_once<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set_many(vec![("a", s("1")), ("b", s("2")), ("c", s("3"))], SetOptions::new()).await.unwrap();
    store.set("gone", s("x"), SetOptions::new().ttl(SHORT)).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.delete_many(&["a", "missing", "a", "c", "gone"]).await.unwrap(), 2);
    assert_eq!(store.stats().deletes, 2, "a delete per live entry removed");
    assert_eq!(sorted_keys(&store, None).await, strings(&["b"]));
    assert_eq!(store.delete_many(&[]).await.unwrap(), 0);
    assert_eq!(store.get_many(&["a", "b", "c"]).await.unwrap(), [None, Some(s("2")), None]);
}

pub async fn a_bad_key_or_bad_options_fail_the_whole_batch_and_change_nothing<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(3).unwrap().into())).await;
    store.set_many(vec![("a", s("a")), ("b", s("b"))], SetOptions::new()).await.unwrap();
    let before = store.stats();
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for bad in ["", too_long.as_str()] {
        let r = store.get_many(&["a", bad, "b"]).await;
        assert!(matches!(r, Err(CacheError::Key { .. })), "{r:?}");
        let r = store.set_many(vec![("a", s("new")), ("c", s("c")), (bad, s("x"))], SetOptions::new()).await;
        assert!(matches!(r, Err(CacheError::Key { .. })), "{r:?}");
        let r = store.delete_many(&["a", "b", bad]).await;
        assert!(matches!(r, Err(CacheError::Key { .. })), "{r:?}");
    }
    let r =
        store.set_many(vec![("a", s("new")), ("c", s("c"))], SetOptions::new().ttl(std::time::Duration::ZERO)).await;
    assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
    let deep = meta(serde_json::json!({ "m": nested(200) }));
    let r = store.set_many(vec![("a", s("new")), ("c", s("c"))], SetOptions::new().metadata(deep)).await;
    assert!(matches!(r, Err(CacheError::Serialization(_))), "{r:?}");
    assert_eq!(store.stats(), before, "failed batches count nothing");
    assert_eq!(sorted_keys(&store, None).await, strings(&["a", "b"]));
    assert_eq!(store.get_many(&["a", "b"]).await.unwrap(), [Some(s("a")), Some(s("b"))]);
}

pub async fn batches_keep_the_capacity_and_the_lru_order<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(3).unwrap().into())).await;
    let entries = ["a", "b", "c", "d", "e"].map(|k| (k, s(k))).to_vec();
    store.set_many(entries, SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["c", "d", "e"]), "written in order, evicted in order");
    assert_eq!(store.stats().evictions, 2);
    // A batch read is a use: c and d become the most recent, e goes next.
    store.get_many(&["c", "d"]).await.unwrap();
    store.set_many(vec![("f", s("f"))], SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["c", "d", "f"]));
    assert_eq!(store.delete_many(&["c", "d", "f"]).await.unwrap(), 3);
    assert_eq!(store.size().await.unwrap(), 0);
}

/// A load of `user:1` that a batch write overtakes stores nothing: the
/// batch's value (or its delete) stays.
pub async fn a_batch_write_cancels_a_load_in_flight<B: Backend>(b: &B) {
    for delete in [false, true] {
        let store = Arc::new(b.store(None).await);
        let (load, release) = blocked_load(&store, "user:1", s("stale from the database")).await;
        if delete {
            assert_eq!(store.delete_many(&["user:0", "user:1"]).await.unwrap(), 0, "nothing stored yet");
        } else {
            store.set_many(vec![("user:0", s("zero")), ("user:1", s("fresh"))], SetOptions::new()).await.unwrap();
        }
        release.notify_one();
        let got = within("the load", load).await.unwrap().unwrap();
        assert_eq!(got, "stale from the database", "the caller gets what its loader produced");
        let stored = store.get("user:1").await.unwrap();
        assert_eq!(stored, (!delete).then(|| s("fresh")), "delete: {delete}");
    }
}
