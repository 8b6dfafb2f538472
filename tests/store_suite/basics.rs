//! The cases every store passes: get, set, delete, TTLs, metadata, LRU and
//! TTL bounds, glob patterns, awkward keys, bad input, counters and clear.

use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, MAX_PATTERN_LEN, Metadata, SetOptions, TtlPolicy,
};

use super::support::meta;
use super::{Backend, LONG, PASS, SHORT, s, sorted_keys, strings};

pub async fn get_set_delete_contains<B: Backend>(b: &B) {
    let store = b.store(None).await;
    assert_eq!(store.get("a").await.unwrap(), None);
    assert!(!store.contains("a").await.unwrap());
    store.set("a", s("1"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s("1")));
    assert!(store.contains("a").await.unwrap());
    store.set("a", s("2"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s("2")), "set replaces");
    assert_eq!(store.size().await.unwrap(), 1);
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap(), "a second delete finds nothing");
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.size().await.unwrap(), 0);
}

pub async fn ttl_expiry<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("short", s("s"), SetOptions::new().ttl(SHORT)).await.unwrap();
    store.set("long", s("l"), SetOptions::new().ttl(LONG)).await.unwrap();
    store.set("forever", s("f"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("short").await.unwrap(), Some(s("s")));
    b.pass(PASS).await;
    assert_eq!(store.get("short").await.unwrap(), None, "expired entries are never returned");
    assert!(!store.contains("short").await.unwrap());
    assert_eq!(store.get_metadata("short").await.unwrap(), None);
    assert!(!store.update_metadata("short", Metadata::new()).await.unwrap());
    assert!(!store.delete("short").await.unwrap());
    assert_eq!(store.get("long").await.unwrap(), Some(s("l")));
    assert_eq!(store.get("forever").await.unwrap(), Some(s("f")));
    assert_eq!(sorted_keys(&store, None).await, strings(&["forever", "long"]));
    assert_eq!(store.size().await.unwrap(), 2);
    // A new set gives the entry a new life.
    store.set("short", s("again"), SetOptions::new().ttl(LONG)).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get("short").await.unwrap(), Some(s("again")));
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (4, 1), "{stats:?}");
}

pub async fn ttl_policy_default_ttl<B: Backend>(b: &B) {
    let store = b.store(Some(TtlPolicy::new(SHORT).unwrap().into())).await;
    store.set("default", s("d"), SetOptions::new()).await.unwrap();
    store.set("own", s("o"), SetOptions::new().ttl(LONG)).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get("default").await.unwrap(), None);
    assert_eq!(store.get("own").await.unwrap(), Some(s("o")), "an entry's own TTL beats the default");
}

pub async fn metadata<B: Backend>(b: &B) {
    let store = b.store(None).await;
    assert_eq!(store.get_metadata("k").await.unwrap(), None, "no entry, no metadata");
    store.set("plain", s("p"), SetOptions::new()).await.unwrap();
    assert_eq!(
        store.get_metadata("plain").await.unwrap(),
        Some(Metadata::new()),
        "an entry without metadata has an empty map"
    );
    let m = meta(
        serde_json::json!({"version": 1, "author": "ann", "tags": ["x", "y"], "nested": {"n": null}, "big": 12345678901234567u64}),
    );
    store.set("k", s("v"), SetOptions::new().metadata(m.clone())).await.unwrap();
    assert_eq!(store.get_metadata("k").await.unwrap(), Some(m));
    assert!(store.update_metadata("k", meta(serde_json::json!({"version": 2, "extra": true}))).await.unwrap());
    let merged = store.get_metadata("k").await.unwrap().unwrap();
    assert_eq!(
        merged,
        meta(
            serde_json::json!({"version": 2, "author": "ann", "tags": ["x", "y"], "nested": {"n": null}, "big": 12345678901234567u64, "extra": true})
        ),
        "top-level keys are replaced or added, the rest kept"
    );
    // A nested object is replaced whole, not merged.
    assert!(store.update_metadata("k", meta(serde_json::json!({"nested": {"m": 1}}))).await.unwrap());
    assert_eq!(store.get_metadata("k").await.unwrap().unwrap()["nested"], serde_json::json!({"m": 1}));
    assert!(store.update_metadata("plain", meta(serde_json::json!({"a": 1}))).await.unwrap());
    assert_eq!(store.get_metadata("plain").await.unwrap(), Some(meta(serde_json::json!({"a": 1}))));
    assert!(!store.update_metadata("absent", meta(serde_json::json!({"a": 1}))).await.unwrap());
    assert!(!store.contains("absent").await.unwrap(), "update_metadata never creates an entry");
    // set replaces the metadata with its own (none here).
    store.set("k", s("v2"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get_metadata("k").await.unwrap(), Some(Metadata::new()));
    // Metadata leaves with its entry.
    store.set("k", s("v3"), SetOptions::new().metadata(meta(serde_json::json!({"a": 1})))).await.unwrap();
    store.delete("k").await.unwrap();
    store.set("k", s("v4"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get_metadata("k").await.unwrap(), Some(Metadata::new()));
}

pub async fn metadata_update_keeps_value_and_ttl<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let m = meta(serde_json::json!({"a": 1}));
    store.set("short", s("value"), SetOptions::new().ttl(SHORT).metadata(m.clone())).await.unwrap();
    store.set("long", s("value"), SetOptions::new().ttl(LONG).metadata(m)).await.unwrap();
    assert!(store.update_metadata("short", meta(serde_json::json!({"b": 2}))).await.unwrap());
    assert!(store.update_metadata("long", meta(serde_json::json!({"b": 2}))).await.unwrap());
    assert_eq!(store.get("short").await.unwrap(), Some(s("value")), "the value is untouched");
    b.pass(PASS).await;
    assert_eq!(store.get("short").await.unwrap(), None, "the TTL is untouched");
    assert_eq!(store.get_metadata("short").await.unwrap(), None, "metadata expires with its entry");
    assert_eq!(store.get("long").await.unwrap(), Some(s("value")));
    assert_eq!(store.get_metadata("long").await.unwrap(), Some(meta(serde_json::json!({"a": 1, "b": 2}))));
}

pub async fn lru_bound_evicts_least_recently_used<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(3).unwrap().into())).await;
    for k in ["a", "b", "c"] {
        store.set(k, s(k), SetOptions::new()).await.unwrap();
    }
    assert_eq!(store.get("a").await.unwrap(), Some(s("a")), "a is now the most recently used");
    store.set("d", s("d"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["a", "c", "d"]), "b was the least recently used");
    assert_eq!(store.stats().evictions, 1);
    // Replacing an entry at capacity evicts nothing, and makes it the most recent.
    store.set("c", s("c2"), SetOptions::new()).await.unwrap();
    assert_eq!(store.stats().evictions, 1);
    store.set("e", s("e"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["c", "d", "e"]), "a was the least recently used");
    // contains and metadata calls do not refresh recency.
    assert!(store.contains("d").await.unwrap());
    store.get_metadata("d").await.unwrap();
    store.update_metadata("d", meta(serde_json::json!({"x": 1}))).await.unwrap();
    store.set("f", s("f"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["c", "e", "f"]));
    assert_eq!(store.size().await.unwrap(), 3);
    assert_eq!(store.stats().evictions, 3);
    // A deleted entry frees its slot.
    assert!(store.delete("c").await.unwrap());
    store.set("g", s("g"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["e", "f", "g"]));
    assert_eq!(store.stats().evictions, 3);
    // So do invalidated and cleared ones.
    assert_eq!(store.invalidate("[ef]").await.unwrap(), 2);
    store.set("h", s("h"), SetOptions::new()).await.unwrap();
    store.set("i", s("i"), SetOptions::new()).await.unwrap();
    assert_eq!(store.stats().evictions, 3);
    store.clear().await.unwrap();
    for k in ["1", "2", "3"] {
        store.set(k, s(k), SetOptions::new()).await.unwrap();
    }
    assert_eq!(sorted_keys(&store, None).await, strings(&["1", "2", "3"]));
    assert_eq!(store.stats().evictions, 3);
}

pub async fn lru_without_refresh_on_get<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(2).unwrap().refresh_on_get(false).into())).await;
    store.set("a", s("a"), SetOptions::new()).await.unwrap();
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s("a")));
    store.set("c", s("c"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["b", "c"]), "get did not refresh a");
}

pub async fn lru_reclaims_expired_before_evicting<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(2).unwrap().into())).await;
    store.set("old", s("o"), SetOptions::new().ttl(SHORT)).await.unwrap();
    store.set("keep", s("k"), SetOptions::new().ttl(LONG)).await.unwrap();
    b.pass(PASS).await;
    store.set("new", s("n"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["keep", "new"]));
    let stats = store.stats();
    assert_eq!((stats.evictions, stats.expirations), (0, 1), "the expired entry made room: {stats:?}");
    // With a default TTL from the policy.
    let store = b.store(Some(LruPolicy::new(1).unwrap().with_default_ttl(SHORT).unwrap().into())).await;
    store.set("x", s("x"), SetOptions::new()).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get("x").await.unwrap(), None);
    store.set("y", s("y"), SetOptions::new()).await.unwrap();
    assert_eq!(store.stats().evictions, 0);
}

pub async fn ttl_policy_max_size_evicts_soonest_to_expire<B: Backend>(b: &B) {
    let store = b.store(Some(TtlPolicy::new(LONG).unwrap().with_max_size(2).unwrap().into())).await;
    store.set("a", s("a"), SetOptions::new().ttl(LONG - Duration::from_secs(10))).await.unwrap();
    store.set("b", s("b"), SetOptions::new().ttl(LONG - Duration::from_secs(20))).await.unwrap();
    assert_eq!(store.get("b").await.unwrap(), Some(s("b")), "reads do not matter under TTL");
    store.set("c", s("c"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["a", "c"]), "b was closest to expiry");
    assert_eq!(store.stats().evictions, 1);
    store.set("c", s("c2"), SetOptions::new()).await.unwrap();
    assert_eq!(store.stats().evictions, 1, "replacing evicts nothing");
}

const PATTERN_KEYS: &[&str] = &[
    "user:1",
    "user:2",
    "user:10",
    "user:a",
    "users",
    "post:1",
    "a*b",
    "a?b",
    "a[b]",
    "a\\b",
    "axb",
    "x y",
    "café",
    "cafe",
    "line\nbreak",
    "日本",
];

pub async fn patterns_with_every_glob_feature<B: Backend>(b: &B) {
    let store = b.store(None).await;
    for k in PATTERN_KEYS {
        store.set(k, s(k), SetOptions::new()).await.unwrap();
    }
    let cases: &[(&str, &[&str])] = &[
        ("*", PATTERN_KEYS),
        ("user:*", &["user:1", "user:2", "user:10", "user:a"]),
        ("user:?", &["user:1", "user:2", "user:a"]),
        ("user:[12]", &["user:1", "user:2"]),
        ("user:[^1]", &["user:2", "user:a"]),
        ("user:[0-9]*", &["user:1", "user:2", "user:10"]),
        ("user:[9-0]", &["user:1", "user:2"]),
        ("user:[a-z]", &["user:a"]),
        ("a?b", &["a*b", "a?b", "a\\b", "axb"]),
        ("a\\*b", &["a*b"]),
        ("a\\?b", &["a?b"]),
        ("a\\[b]", &["a[b]"]),
        ("a[\\[]b]", &["a[b]"]),
        ("a\\\\b", &["a\\b"]),
        ("caf?", &["cafe"]),
        ("caf??", &["café"]),
        ("*\n*", &["line\nbreak"]),
        ("* *", &["x y"]),
        ("日*", &["日本"]),
        ("[^uapcx]*", &["line\nbreak", "日本"]),
        ("*1*", &["user:1", "user:10", "post:1"]),
        ("user", &[]),
        ("nothing*", &[]),
        ("*a*a*a*a*a*a*", &[]),
        ("u*s*e*r*:*1*", &["user:1", "user:10"]),
    ];
    for (pattern, expected) in cases {
        assert_eq!(sorted_keys(&store, Some(pattern)).await, strings(expected), "keys({pattern:?})");
    }
    assert_eq!(store.invalidate("user:[0-9]*").await.unwrap(), 3);
    assert_eq!(store.invalidate("user:[0-9]*").await.unwrap(), 0);
    assert_eq!(store.invalidate("a?b").await.unwrap(), 4);
    assert_eq!(store.invalidate("u*s*e*r*:*").await.unwrap(), 1, "many stars, matched locally on Redis");
    let rest = strings(&["users", "post:1", "a[b]", "x y", "café", "cafe", "line\nbreak", "日本"]);
    assert_eq!(sorted_keys(&store, None).await, rest);
    assert_eq!(store.invalidate("*").await.unwrap(), rest.len());
    assert_eq!(store.size().await.unwrap(), 0);
    assert_eq!(store.stats().deletes, 16);
}

pub async fn awkward_keys<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let keys = [
        "*",
        "?",
        "[",
        "]",
        "\\",
        "[a-z]",
        "a b",
        " ",
        "\n",
        "\r\n",
        "\t",
        "日本語",
        "😀",
        "\"quoted\"",
        "\0nul",
        "{tag}",
    ];
    for (i, k) in keys.iter().enumerate() {
        store.set(k, format!("{i}:{k}"), SetOptions::new()).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(store.get(k).await.unwrap(), Some(format!("{i}:{k}")), "{k:?}");
    }
    assert_eq!(sorted_keys(&store, None).await, strings(&keys));
    // The escaped key is a pattern that matches exactly that key.
    for k in keys {
        let pattern = pepperpy_caching::escape_pattern(k);
        assert_eq!(store.keys(Some(&pattern)).await.unwrap(), vec![k.to_string()], "{k:?}");
    }
    assert_eq!(store.invalidate(&pepperpy_caching::escape_pattern("[a-z]")).await.unwrap(), 1);
    assert!(store.contains("[").await.unwrap());
    assert!(store.delete("*").await.unwrap());
    assert_eq!(store.size().await.unwrap(), keys.len() - 2);
    let longest = "k".repeat(MAX_KEY_LEN);
    store.set(&longest, s("long"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get(&longest).await.unwrap(), Some(s("long")));
}

fn is_key_error<T: std::fmt::Debug>(r: pepperpy_caching::Result<T>) -> bool {
    matches!(r, Err(CacheError::Key { .. }))
}

fn is_pattern_error<T: std::fmt::Debug>(r: pepperpy_caching::Result<T>) -> bool {
    matches!(r, Err(CacheError::Pattern { .. }))
}

pub async fn bad_input_changes_nothing<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(2).unwrap().into())).await;
    store.set("a", s("a"), SetOptions::new().metadata(meta(serde_json::json!({"m": 1})))).await.unwrap();
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    let stats_before = store.stats();
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", too_long.as_str()] {
        assert!(is_key_error(store.get(key).await), "get {key:.10}");
        assert!(is_key_error(store.set(key, s("x"), SetOptions::new()).await));
        assert!(is_key_error(store.delete(key).await));
        assert!(is_key_error(store.contains(key).await));
        assert!(is_key_error(store.get_metadata(key).await));
        assert!(is_key_error(store.update_metadata(key, Metadata::new()).await));
    }
    let long_pattern = "*".repeat(MAX_PATTERN_LEN + 1);
    for pattern in ["", long_pattern.as_str()] {
        assert!(is_pattern_error(store.invalidate(pattern).await));
        assert!(is_pattern_error(store.keys(Some(pattern)).await));
    }
    assert!(store.keys(Some(&"*".repeat(MAX_PATTERN_LEN))).await.is_ok(), "a pattern at the limit is fine");
    for ttl in [Duration::ZERO] {
        let r = store.set("a", s("replaced"), SetOptions::new().ttl(ttl)).await;
        assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
        let r = store.set("c", s("new"), SetOptions::new().ttl(ttl)).await;
        assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
    }
    assert_eq!(store.stats(), stats_before, "failed calls count nothing");
    assert_eq!(sorted_keys(&store, None).await, strings(&["a", "b"]));
    assert_eq!(store.get("a").await.unwrap(), Some(s("a")));
    assert_eq!(store.get_metadata("a").await.unwrap(), Some(meta(serde_json::json!({"m": 1}))));
    assert_eq!(store.stats().evictions, 0);
}

pub async fn stats_and_clear<B: Backend>(b: &B) {
    let store = b.store(None).await;
    assert_eq!(store.stats(), CacheStats::default());
    store.set("a", s("a"), SetOptions::new()).await.unwrap();
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    store.get("a").await.unwrap();
    store.get("b").await.unwrap();
    store.get("x").await.unwrap();
    store.contains("a").await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses, stats.sets, stats.deletes), (2, 1, 2, 0), "{stats:?}");
    assert!((stats.hit_ratio - 2.0 / 3.0).abs() < 1e-9);
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap());
    assert_eq!(store.stats().deletes, 1);
    for k in ["c", "d", "e"] {
        store.set(k, s(k), SetOptions::new()).await.unwrap();
    }
    store.clear().await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
    assert_eq!(store.keys(None).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.get("b").await.unwrap(), None);
    let stats = store.stats();
    assert_eq!((stats.sets, stats.deletes, stats.evictions), (5, 5, 0), "clear counts what it removed: {stats:?}");
    store.reset_stats();
    assert_eq!(store.stats(), CacheStats::default());
    store.clear().await.unwrap();
    assert_eq!(store.stats().deletes, 0, "clearing an empty store removes nothing");
}
