#![cfg(all(feature = "redis", feature = "tokio", not(target_arch = "wasm32")))]
//! Hostile review (session 9) of the U+FFFF key rule (`RESERVED_KEY_CHAR`):
//! every operation taking a key refuses one holding U+FFFF with
//! `CacheError::Key` in the memory store and the Redis store alike, nothing
//! written; a pattern or tag holding it gets the same answer from both.

mod support;

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MemoryStore, SetOptions};
use support::{RedisServer, redis_store};

fn verdict<T: std::fmt::Debug>(r: Result<T, CacheError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(CacheError::Key { .. }) => "Key".to_string(),
        Err(e) => format!("Err({e})"),
    }
}

async fn answers<S: CacheStore<i64>>(s: &S) -> Vec<(&'static str, String)> {
    let bad = "a\u{FFFF}b";
    vec![
        ("get", verdict(s.get(bad).await)),
        ("set", verdict(s.set(bad, 1, SetOptions::new()).await)),
        ("delete", verdict(s.delete(bad).await)),
        ("contains", verdict(s.contains(bad).await)),
        ("get_metadata", verdict(s.get_metadata(bad).await)),
        ("get_tags", verdict(s.get_tags(bad).await)),
        ("get_many", verdict(s.get_many(&["ok", bad]).await)),
        ("set_many", verdict(s.set_many(vec![("ok", 1), (bad, 2)], SetOptions::new()).await)),
        ("ok after set_many", verdict(s.contains("ok").await)),
        ("invalidate *\u{FFFF}*", verdict(s.invalidate("*\u{FFFF}*").await)),
        ("keys \u{FFFF}*", verdict(s.keys(Some("\u{FFFF}*")).await)),
        (
            "a tag with U+FFFF",
            verdict(
                async {
                    s.set("tagged", 1, SetOptions::new().tags(["t\u{FFFF}"])).await?;
                    s.invalidate_tags(&["t\u{FFFF}"]).await
                }
                .await,
            ),
        ),
    ]
}

// Expected: a key holding U+FFFF is CacheError::Key for every operation, in
// both stores; set_many writes nothing; patterns and tags answered alike.
#[tokio::test]
async fn u_ffff_is_refused_alike_by_the_memory_and_redis_stores() {
    let memory = MemoryStore::<i64>::new(LruPolicy::new(100).unwrap());
    let server = RedisServer::start();
    let redis = redis_store::<i64>(&server, "rk:", None).await;
    let (m, r) = (answers(&memory).await, answers(&redis).await);
    for op in ["get", "set", "delete", "contains", "get_metadata", "get_tags", "get_many", "set_many"] {
        let got = m.iter().find(|(o, _)| *o == op).map(|(_, v)| v.as_str());
        assert_eq!(got, Some("Key"), "memory {op}");
    }
    assert_eq!(m.iter().find(|(o, _)| *o == "ok after set_many").map(|(_, v)| v.as_str()), Some("Ok(false)"));
    assert_eq!(r, m, "the Redis store answers as the memory store does");
}
