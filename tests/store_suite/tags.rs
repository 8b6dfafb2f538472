//! Tags on every store: `set` with tags, `get_tags`, `invalidate_tags` and
//! its count; tags that follow replaces, deletes, expiry, eviction, clear and
//! pattern invalidation; bad tags refused with nothing changed; a tagged load
//! or refresh in flight during `invalidate_tags` stores nothing.

use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStore, LruPolicy, MAX_INVALIDATE_TAGS, MAX_TAG_LEN, MAX_TAGS, RefreshOptions, SetOptions,
};

use super::refresh::Tasks;
use super::support::{meta, within};
use super::{Backend, LONG, PASS, SHORT, s, sorted_keys, strings};

fn tagged(tags: &[&str]) -> SetOptions {
    SetOptions::new().tags(tags.iter().copied())
}

fn tag_list(tags: &[&str]) -> Option<Vec<String>> {
    Some(tags.iter().map(|t| t.to_string()).collect())
}

pub async fn invalidate_tags_removes_every_entry_carrying_one<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("page:home", s("h"), tagged(&["user:42", "team:7"])).await.unwrap();
    store.set("page:team", s("t"), tagged(&["team:7"])).await.unwrap();
    store.set("page:user", s("u"), tagged(&["user:42"])).await.unwrap();
    store.set("page:about", s("a"), SetOptions::new()).await.unwrap();
    store.set("page:other", s("o"), tagged(&["user:43"])).await.unwrap();
    assert_eq!(store.get_tags("page:home").await.unwrap(), tag_list(&["user:42", "team:7"]), "in the order set");
    assert_eq!(store.get_tags("page:about").await.unwrap(), tag_list(&[]), "untagged: empty");
    assert_eq!(store.get_tags("missing").await.unwrap(), None, "no entry: None");
    assert_eq!(store.get("page:home").await.unwrap(), Some(s("h")), "a tagged entry reads as any other");

    assert_eq!(store.invalidate_tags(&["nobody"]).await.unwrap(), 0);
    assert_eq!(store.invalidate_tags(&[]).await.unwrap(), 0);
    // An entry carrying both tags counts once; a tag named twice counts once.
    assert_eq!(store.invalidate_tags(&["user:42", "team:7", "user:42"]).await.unwrap(), 3);
    assert_eq!(sorted_keys(&store, None).await, strings(&["page:about", "page:other"]));
    for key in ["page:home", "page:team", "page:user"] {
        assert_eq!(store.get(key).await.unwrap(), None, "{key}");
        assert_eq!(store.get_tags(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(store.invalidate_tags(&["user:42"]).await.unwrap(), 0, "nothing left to remove");
    assert_eq!(store.stats().deletes, 3, "each removed entry is a delete");

    // A key set again after the invalidation is a new entry, tagged afresh.
    store.set("page:home", s("h2"), tagged(&["user:42"])).await.unwrap();
    assert_eq!(store.invalidate_tags(&["user:42"]).await.unwrap(), 1);
    assert_eq!(store.size().await.unwrap(), 2);
}

pub async fn tags_follow_replaces_deletes_and_metadata<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("1"), tagged(&["a", "b"]).metadata(meta(serde_json::json!({"m": 1})))).await.unwrap();
    assert_eq!(store.get_metadata("k").await.unwrap(), Some(meta(serde_json::json!({"m": 1}))));
    assert!(store.update_metadata("k", meta(serde_json::json!({"n": 2}))).await.unwrap());
    assert_eq!(store.get_tags("k").await.unwrap(), tag_list(&["a", "b"]), "a metadata update keeps the tags");
    // A set replaces the tags with its own.
    store.set("k", s("2"), tagged(&["c"])).await.unwrap();
    assert_eq!(store.get_tags("k").await.unwrap(), tag_list(&["c"]));
    assert_eq!(store.invalidate_tags(&["a", "b"]).await.unwrap(), 0, "the old tags no longer reach it");
    assert_eq!(store.get("k").await.unwrap(), Some(s("2")));
    // ... and an untagged set drops them.
    store.set("k", s("3"), SetOptions::new()).await.unwrap();
    assert_eq!(store.invalidate_tags(&["c"]).await.unwrap(), 0);
    assert_eq!(store.get("k").await.unwrap(), Some(s("3")));
    // A deleted entry is not counted.
    store.set("d", s("x"), tagged(&["c"])).await.unwrap();
    assert!(store.delete("d").await.unwrap());
    assert_eq!(store.invalidate_tags(&["c"]).await.unwrap(), 0);
    // Pattern invalidation and clear take tagged entries with their tags.
    store.set("p:1", s("x"), tagged(&["c"])).await.unwrap();
    store.set("q:1", s("x"), tagged(&["c"])).await.unwrap();
    assert_eq!(store.invalidate("p:*").await.unwrap(), 1);
    assert_eq!(store.invalidate_tags(&["c"]).await.unwrap(), 1, "only q:1 is left");
    store.set("r:1", s("x"), tagged(&["c"])).await.unwrap();
    store.clear().await.unwrap();
    assert_eq!(store.invalidate_tags(&["c"]).await.unwrap(), 0);
    assert_eq!(store.get_tags("r:1").await.unwrap(), None);
    store.set("r:1", s("y"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get_tags("r:1").await.unwrap(), tag_list(&[]), "a cleared entry's tags are gone");
}

pub async fn expired_and_evicted_entries_are_not_counted<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("short", s("s"), tagged(&["t"]).ttl(SHORT)).await.unwrap();
    store.set("long", s("l"), tagged(&["t"]).ttl(LONG)).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get_tags("short").await.unwrap(), None, "an expired entry has no tags to read");
    assert_eq!(store.invalidate_tags(&["t"]).await.unwrap(), 1, "the expired entry is not counted");
    assert_eq!(store.size().await.unwrap(), 0);

    let bounded = b.store(Some(LruPolicy::new(2).unwrap().into())).await;
    bounded.set("a", s("1"), tagged(&["t"])).await.unwrap();
    bounded.set("b", s("2"), tagged(&["t"])).await.unwrap();
    bounded.set("c", s("3"), tagged(&["u"])).await.unwrap(); // evicts a
    assert_eq!(bounded.get("a").await.unwrap(), None);
    assert_eq!(bounded.invalidate_tags(&["t"]).await.unwrap(), 1, "the evicted entry is not counted");
    assert_eq!(sorted_keys(&bounded, None).await, strings(&["c"]));
    // The evicted key set again untagged is not reached by its old tag.
    bounded.set("a", s("4"), SetOptions::new()).await.unwrap();
    assert_eq!(bounded.invalidate_tags(&["t"]).await.unwrap(), 0);
    assert_eq!(bounded.get("a").await.unwrap(), Some(s("4")));
}

pub async fn bad_tags_change_nothing<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("old"), tagged(&["keep"])).await.unwrap();
    store.reset_stats();
    let long = "t".repeat(MAX_TAG_LEN + 1);
    let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
    let bad: Vec<SetOptions> = vec![
        tagged(&[""]),
        tagged(&["ok", ""]),
        tagged(&[&long]),
        SetOptions::new().tags(many.clone()),
        tagged(&["dup", "dup"]),
    ];
    for options in bad {
        let err = store.set("k", s("new"), options.clone()).await.unwrap_err();
        assert!(matches!(err, CacheError::Policy(_)), "{options:?}: {err:?}");
        let err = store.set("other", s("new"), options.clone()).await.unwrap_err();
        assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
        let err = store.get_or_set("other", || async { unreachable!("no loader runs") }, options).await.unwrap_err();
        assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    }
    let refresh = RefreshOptions::new(Tasks, LONG, LONG).tags([""]);
    let err = Arc::new(b.store(None).await)
        .get_or_refresh("k", || async { Ok::<_, std::io::Error>(s("x")) }, &refresh)
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    for tags in [vec![""], vec!["keep", ""], vec![long.as_str()], vec!["keep"; MAX_INVALIDATE_TAGS + 1]] {
        let err = store.invalidate_tags(&tags).await.unwrap_err();
        assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    }
    assert_eq!(store.get_tags("k").await.unwrap(), tag_list(&["keep"]));
    assert_eq!(store.get("k").await.unwrap(), Some(s("old")));
    assert_eq!(sorted_keys(&store, None).await, strings(&["k"]));
    let stats = store.stats();
    assert_eq!((stats.sets, stats.deletes, stats.loads), (0, 0, 0), "{stats:?}");
    // At the limits, accepted.
    let at_limit: Vec<String> =
        many[..MAX_TAGS].iter().map(|t| format!("{t}{}", "x".repeat(MAX_TAG_LEN - t.len()))).collect();
    store.set("full", s("f"), SetOptions::new().tags(at_limit.clone())).await.unwrap();
    assert_eq!(store.get_tags("full").await.unwrap(), Some(at_limit.clone()));
    assert_eq!(store.invalidate_tags(&[at_limit[MAX_TAGS - 1].as_str()]).await.unwrap(), 1);
    // Awkward tags are tags like any other.
    let awkward = ["*", "a\"b\\c", "],\"v\":", "ключ", "{tag}", "\u{0}", "a b"];
    store.set("odd", s("o"), tagged(&awkward)).await.unwrap();
    assert_eq!(store.get_tags("odd").await.unwrap(), tag_list(&awkward));
    assert_eq!(store.invalidate_tags(&["a"]).await.unwrap(), 0, "a tag is no pattern and no prefix");
    assert_eq!(store.invalidate_tags(&["],\"v\":"]).await.unwrap(), 1);
}

/// A tagged load of `key` on `store`, blocked in its loader until released.
async fn blocked_tagged_load<S: CacheStore<String> + 'static>(
    store: &Arc<S>,
    key: &str,
    tags: &[&str],
) -> (tokio::task::JoinHandle<pepperpy_caching::Result<String>>, Arc<tokio::sync::Notify>) {
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let task = {
        let (store, key, started, release) =
            (Arc::clone(store), key.to_string(), Arc::clone(&started), Arc::clone(&release));
        let options = tagged(tags);
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                release.notified().await;
                s("loaded before the invalidation")
            };
            store.get_or_set(&key, loader, options).await
        })
    };
    within("the loader to start", started.notified()).await;
    (task, release)
}

pub async fn a_tagged_load_in_flight_stores_nothing<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let (load, release) = blocked_tagged_load(&store, "user:1", &["user:1", "team:7"]).await;
    let (other, release_other) = blocked_tagged_load(&store, "user:2", &["user:2"]).await;
    assert_eq!(store.invalidate_tags(&["team:7"]).await.unwrap(), 0, "nothing stored yet");
    release.notify_one();
    release_other.notify_one();
    let got = within("the load", load).await.unwrap().unwrap();
    assert_eq!(got, "loaded before the invalidation", "the caller gets what its loader produced");
    assert_eq!(store.get("user:1").await.unwrap(), None, "but it is not stored");
    let other = within("the other load", other).await.unwrap().unwrap();
    assert_eq!(other, "loaded before the invalidation");
    // A load of another tag may or may not be stored (a store may cancel every tagged load);
    // a load that begins after the call is stored.
    let after = store.get_or_set("user:1", || async { s("after") }, tagged(&["team:7"])).await.unwrap();
    assert_eq!(after, "after");
    assert_eq!(store.get("user:1").await.unwrap(), Some(s("after")));
    assert_eq!(store.get_tags("user:1").await.unwrap(), tag_list(&["team:7"]));
    assert_eq!(store.invalidate_tags(&["team:7"]).await.unwrap(), 1);
}

pub async fn a_tagged_refresh_in_flight_stores_nothing<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = RefreshOptions::new(Tasks, SHORT, LONG).retry_after(LONG).tags(["product:1"]);
    let first = store.get_or_refresh("p", || async { Ok::<_, std::io::Error>(s("v1")) }, &options).await;
    assert_eq!(first.unwrap(), "v1");
    assert_eq!(store.get_tags("p").await.unwrap(), tag_list(&["product:1"]), "a loaded entry carries the tags");
    b.pass(PASS).await;
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let loader = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        move || async move {
            started.notify_one();
            release.notified().await;
            Ok::<_, std::io::Error>(s("v2"))
        }
    };
    let stale = store.get_or_refresh("p", loader, &options).await.unwrap();
    assert_eq!(stale, "v1", "served stale while the refresh runs");
    within("the refresh to start", started.notified()).await;
    assert_eq!(store.invalidate_tags(&["product:1"]).await.unwrap(), 1);
    release.notify_one();
    // The refresh finishes in the background; give it time to (wrongly) store.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get("p").await.unwrap(), None, "the refresh that began before the call stored nothing");
}

pub async fn set_many_tags_every_entry<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let entries: Vec<(&str, String)> = (0..20).map(|i| (["a", "b", "c", "d"][i % 4], s("x"))).take(4).collect();
    store.set_many(entries, tagged(&["batch"])).await.unwrap();
    let many: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    store.set_many(many.iter().map(|k| (k.as_str(), s("v"))).collect(), tagged(&["batch", "more"])).await.unwrap();
    assert_eq!(store.get_tags("k7").await.unwrap(), tag_list(&["batch", "more"]));
    let err = store.set_many(vec![("z", s("z"))], tagged(&[""])).await.unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    assert_eq!(store.get("z").await.unwrap(), None);
    assert_eq!(store.invalidate_tags(&["batch"]).await.unwrap(), 34, "every entry of both batches");
    assert_eq!(store.size().await.unwrap(), 0);
}

pub async fn invalidate_tags_at_its_limits<B: Backend>(b: &B) {
    let store = b.store(None).await;
    // 40 entries of MAX_TAGS tags each, unicode and long ones among them.
    let tags_of = |i: usize| -> Vec<String> {
        (0..MAX_TAGS).map(|j| if j == 0 { format!("ü{i}:{}", "ß".repeat(100)) } else { format!("t{i}:{j}") }).collect()
    };
    for i in 0..40 {
        store.set(&format!("k{i}"), s("v"), SetOptions::new().tags(tags_of(i))).await.unwrap();
    }
    assert_eq!(store.get_tags("k7").await.unwrap(), Some(tags_of(7)));
    // MAX_INVALIDATE_TAGS tags: one tag of each even entry, the same tags
    // again, and tags nobody carries.
    let mut wanted: Vec<String> = (0..40).step_by(2).map(|i| tags_of(i)[i % MAX_TAGS].clone()).collect();
    wanted.extend(wanted.clone());
    while wanted.len() < MAX_INVALIDATE_TAGS {
        wanted.push(format!("nobody:{}", wanted.len()));
    }
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_eq!(store.invalidate_tags(&wanted).await.unwrap(), 20);
    let left: Vec<String> = (1..40).step_by(2).map(|i| format!("k{i}")).collect();
    let mut expected = left.clone();
    expected.sort();
    assert_eq!(sorted_keys(&store, None).await, expected);
    assert_eq!(store.invalidate_tags(&wanted).await.unwrap(), 0);
    // Every tag of the odd entries still reaches them, the long unicode one too.
    let firsts: Vec<String> = (1..40).step_by(2).map(|i| tags_of(i)[0].clone()).collect();
    let firsts: Vec<&str> = firsts.iter().map(String::as_str).collect();
    assert_eq!(store.invalidate_tags(&firsts).await.unwrap(), 20);
    assert_eq!(store.size().await.unwrap(), 0);
}
