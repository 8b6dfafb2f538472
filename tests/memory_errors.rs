//! Bad input gets the exact error kind and leaves a MemoryStore as it was:
//! same entries, same values, same metadata, same order, same counters.

mod support;

use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, MAX_PATTERN_LEN, MemoryStore, Metadata, SetOptions,
    TtlPolicy,
};
use support::meta;

/// A call that must fail.
type BadCall<'a> = Box<dyn Fn(&MemoryStore<String>) -> CacheError + 'a>;

type Snapshot = (Vec<String>, Vec<(Option<String>, Option<Metadata>)>);

fn populated() -> MemoryStore<String> {
    // No recency refresh on get, so reading a snapshot does not reorder.
    let store = MemoryStore::new(LruPolicy::new(8).unwrap().refresh_on_get(false));
    for (i, key) in ["a", "user:1", "user:2", "x*y"].iter().enumerate() {
        store
            .set(key, format!("v{i}"), SetOptions::new().metadata(meta(serde_json::json!({ "v": i }))))
            .into_inner()
            .unwrap();
    }
    store.get("a").into_inner().unwrap();
    store.get("missing").into_inner().unwrap();
    store
}

/// Keys in recency order, then each value and its metadata.
fn snapshot(store: &MemoryStore<String>) -> Snapshot {
    let keys = store.keys(None).into_inner().unwrap();
    let content = keys
        .iter()
        .map(|k| (store.get(k).into_inner().unwrap(), store.get_metadata(k).into_inner().unwrap()))
        .collect();
    (keys, content)
}

fn assert_unchanged(store: &MemoryStore<String>, bad: impl FnOnce(&MemoryStore<String>) -> CacheError) -> CacheError {
    let before = snapshot(store);
    store.reset_stats();
    let err = bad(store);
    assert_eq!(store.stats(), CacheStats::default(), "a rejected call must not count anything");
    assert_eq!(before, snapshot(store), "keys, their order, values or metadata changed");
    err
}

fn bad_keys() -> Vec<String> {
    vec![String::new(), "k".repeat(MAX_KEY_LEN + 1)]
}

#[test]
fn bad_keys_are_key_errors_on_every_call_and_change_nothing() {
    let store = populated();
    for key in bad_keys() {
        let k = key.as_str();
        let calls: Vec<BadCall> = vec![
            Box::new(move |s| s.get(k).into_inner().unwrap_err()),
            Box::new(move |s| s.set(k, "x".into(), SetOptions::new()).into_inner().unwrap_err()),
            Box::new(move |s| s.delete(k).into_inner().unwrap_err()),
            Box::new(move |s| s.contains(k).into_inner().unwrap_err()),
            Box::new(move |s| s.get_metadata(k).into_inner().unwrap_err()),
            Box::new(move |s| s.update_metadata(k, meta(serde_json::json!({ "v": 9 }))).into_inner().unwrap_err()),
        ];
        for call in calls {
            let err = assert_unchanged(&store, call);
            assert!(matches!(err, CacheError::Key { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("invalid cache key"), "{text}");
            if key.is_empty() {
                assert!(text.contains("must not be empty"), "{text}");
            } else {
                assert!(text.contains(&format!("{} bytes", MAX_KEY_LEN + 1)), "{text}");
            }
        }
    }
}

#[test]
fn bad_patterns_are_pattern_errors_and_change_nothing() {
    let store = populated();
    for pattern in [String::new(), "*".repeat(MAX_PATTERN_LEN + 1)] {
        let p = pattern.as_str();
        let err = assert_unchanged(&store, |s| s.invalidate(p).into_inner().unwrap_err());
        assert!(matches!(err, CacheError::Pattern { .. }), "{err:?}");
        let err = assert_unchanged(&store, |s| s.keys(Some(p)).into_inner().unwrap_err());
        assert!(matches!(err, CacheError::Pattern { .. }), "{err:?}");
    }
}

#[test]
fn a_zero_ttl_is_a_policy_error_and_keeps_the_old_entry() {
    let store = populated();
    let err = assert_unchanged(&store, |s| {
        s.set(
            "user:1",
            "replaced".into(),
            SetOptions::new().ttl(Duration::ZERO).metadata(meta(serde_json::json!({ "v": 99 }))),
        )
        .into_inner()
        .unwrap_err()
    });
    assert!(matches!(err, CacheError::Policy(_)), "{err:?}");
    assert_eq!(store.get("user:1").into_inner().unwrap().as_deref(), Some("v1"));
    assert_eq!(store.get_metadata("user:1").into_inner().unwrap(), Some(meta(serde_json::json!({ "v": 1 }))));
}

#[test]
fn a_zero_ttl_on_a_new_key_writes_nothing_and_evicts_nothing() {
    let store = MemoryStore::new(LruPolicy::new(1).unwrap());
    store.set("only", "1".to_string(), SetOptions::new()).into_inner().unwrap();
    let err = store.set("new", "2".to_string(), SetOptions::new().ttl(Duration::ZERO)).into_inner().unwrap_err();
    assert!(matches!(err, CacheError::Policy(_)));
    assert_eq!(store.keys(None).into_inner().unwrap(), vec!["only".to_string()]);
    assert_eq!(store.stats().evictions, 0);
}

#[test]
fn nonsense_policies_are_policy_errors() {
    assert!(matches!(LruPolicy::new(0), Err(CacheError::Policy(_))));
    assert!(matches!(LruPolicy::new(5).unwrap().with_default_ttl(Duration::ZERO), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::new(Duration::ZERO), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::from_secs_f64(-1.0), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::from_secs_f64(f64::NAN), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::from_secs_f64(f64::INFINITY), Err(CacheError::Policy(_))));
    assert!(matches!(TtlPolicy::from_secs_f64(1.0).unwrap().with_max_size(0), Err(CacheError::Policy(_))));
}

#[test]
fn keys_at_the_limit_and_of_any_characters_are_accepted() {
    let store = MemoryStore::new(LruPolicy::new(8).unwrap());
    for key in
        ["k".repeat(MAX_KEY_LEN), "a*b?[c]\\".into(), " spaced key ".into(), "line\nbreak".into(), "日本😀".into()]
    {
        store.set(&key, key.clone(), SetOptions::new()).into_inner().unwrap();
        assert_eq!(store.get(&key).into_inner().unwrap(), Some(key.clone()));
    }
}
