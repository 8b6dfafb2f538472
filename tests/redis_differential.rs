//! Random operation sequences applied to a MemoryStore and a RedisStore must
//! give the same results, patterns included: this is what shows the in-memory
//! glob matcher agrees with Redis's. Each pattern is also sent straight to
//! Redis (a raw `SCAN MATCH`, bypassing the store's own re-check) and must
//! select exactly the keys the crate's matcher selects.
//!
//! Time is not part of it (the memory store's clock and Redis's cannot be
//! compared step by step); TTLs are covered by the shared suite.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::collections::BTreeSet;

use pepperpy_caching::{
    CacheStore, LruPolicy, ManualClock, Metadata, Pattern, SetOptions, escape_pattern,
    stores::{MemoryStore, RedisStore},
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Clone, Debug)]
enum Op {
    Set(String, u8, Option<u8>),
    Get(String),
    Delete(String),
    Contains(String),
    GetMetadata(String),
    UpdateMetadata(String, u8),
    Invalidate(String),
    Keys(Option<String>),
    Size,
    Clear,
}

/// Keys rich in glob metacharacters and multi-byte characters: mostly from a
/// small pool, so that operations meet the same keys and the LRU order matters.
fn key() -> impl Strategy<Value = String> {
    const POOL: &[&str] = &["a", "b", "a*", "?", "[a]", "a\\b", "é", "日 b"];
    prop_oneof![
        6 => prop::sample::select(POOL).prop_map(str::to_string),
        1 => "[ab*?\\[\\]\\\\^é日 -]{1,3}",
    ]
}

/// Patterns over the same alphabet: every glob feature, malformed ones included.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof!["[ab*?\\[\\]\\\\^é-]{1,6}", Just("*".to_string()), "[ab]?\\*", "\\[\\^?[ab]-[ab]\\]\\*",]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => (key(), any::<u8>(), prop::option::of(any::<u8>())).prop_map(|(k, v, m)| Op::Set(k, v, m)),
        16 => key().prop_map(Op::Get),
        3 => key().prop_map(Op::Delete),
        2 => key().prop_map(Op::Contains),
        2 => key().prop_map(Op::GetMetadata),
        2 => (key(), any::<u8>()).prop_map(|(k, m)| Op::UpdateMetadata(k, m)),
        3 => pattern().prop_map(Op::Invalidate),
        3 => prop::option::of(pattern()).prop_map(Op::Keys),
        1 => Just(Op::Size),
        1 => Just(Op::Clear),
    ]
}

/// Metadata that differs with `n`.
fn metadata_of(n: u8) -> Metadata {
    support::meta(serde_json::json!({ "n": n, format!("k{}", n % 3): [n] }))
}

/// The result of one operation, in a form both stores produce.
async fn apply<S: CacheStore<String>>(store: &S, op: &Op) -> String {
    let r = match op {
        Op::Set(k, v, m) => {
            let options = match m {
                Some(m) => SetOptions::new().metadata(metadata_of(*m)),
                None => SetOptions::new(),
            };
            store.set(k, format!("{k}={v}"), options).await.map(|()| String::new())
        }
        Op::Get(k) => store.get(k).await.map(|v| format!("{v:?}")),
        Op::Delete(k) => store.delete(k).await.map(|b| b.to_string()),
        Op::Contains(k) => store.contains(k).await.map(|b| b.to_string()),
        Op::GetMetadata(k) => store.get_metadata(k).await.map(|m| format!("{m:?}")),
        Op::UpdateMetadata(k, m) => store.update_metadata(k, metadata_of(*m)).await.map(|b| b.to_string()),
        Op::Invalidate(p) => store.invalidate(p).await.map(|n| n.to_string()),
        Op::Keys(p) => {
            store.keys(p.as_deref()).await.map(|keys| format!("{:?}", keys.into_iter().collect::<BTreeSet<_>>()))
        }
        Op::Size => store.size().await.map(|n| n.to_string()),
        Op::Clear => store.clear().await.map(|()| String::new()),
    };
    match r {
        Ok(text) => text,
        // Bad input must be the same kind of error on both.
        Err(e) => format!("error: {e}"),
    }
}

/// The keys under `prefix` that Redis itself selects for `pattern`.
async fn redis_selects(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, pattern: &str) -> BTreeSet<String> {
    let scan_match = format!("{}{pattern}", escape_pattern(prefix));
    let mut found = BTreeSet::new();
    for raw in support::scan(conn, scan_match.as_bytes()).await {
        let rest = raw.strip_prefix(prefix.as_bytes()).expect("SCAN returned a key outside the prefix");
        // The store's own index keys hold U+FFFF (`RESERVED_KEY_CHAR`), which
        // no key may; the prefix alone is no entry.
        if let Ok(key) = std::str::from_utf8(rest)
            && !key.is_empty()
            && !key.contains(pepperpy_caching::RESERVED_KEY_CHAR)
        {
            found.insert(key.to_string());
        }
    }
    found
}

/// Applies `ops` to both stores; with `raw`, also checks each pattern against
/// Redis's own SCAN MATCH under the prefix (single node only: on a cluster
/// the entries carry a hash tag after the prefix).
async fn same_results<R: CacheStore<String>>(
    memory: &MemoryStore<String>,
    redis: &R,
    ops: &[Op],
    mut raw: Option<(&mut redis::aio::MultiplexedConnection, &str)>,
) -> Result<(), TestCaseError> {
    for (step, op) in ops.iter().enumerate() {
        if let Op::Invalidate(p) | Op::Keys(Some(p)) = op
            && let Ok(compiled) = Pattern::new(p)
            && let Some((conn, prefix)) = raw.as_mut()
        {
            let expected: BTreeSet<String> =
                memory.keys(None).into_inner().unwrap().into_iter().filter(|k| compiled.matches(k)).collect();
            let selected = redis_selects(conn, prefix, p).await;
            prop_assert_eq!(&selected, &expected, "step {}: Redis MATCH {:?} disagrees", step, p);
        }
        let (m, r) = (apply(memory, op).await, apply(redis, op).await);
        prop_assert_eq!(&m, &r, "step {}: {:?}", step, op);
    }
    let (ms, rs) = (memory.stats(), redis.stats());
    prop_assert_eq!(
        (ms.hits, ms.misses, ms.sets, ms.deletes, ms.evictions, ms.expirations),
        (rs.hits, rs.misses, rs.sets, rs.deletes, rs.evictions, rs.expirations)
    );
    let mut keys = redis.keys(None).await.unwrap();
    keys.sort();
    let mut expected = memory.keys(None).into_inner().unwrap();
    expected.sort();
    prop_assert_eq!(keys, expected);
    Ok(())
}

#[test]
fn memory_and_redis_agree() {
    let server = support::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conn = runtime.block_on(async {
        redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    });
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let strategy = (prop::option::of(1usize..6), prop::collection::vec(op(), 1..40));
    let result = runner.run(&strategy, |(max_size, ops)| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conn = conn.clone();
        // A fresh prefix per case (and per shrinking step), with metacharacters.
        let prefix = format!("d[{case}]*?\\:");
        runtime.block_on(async {
            let policy = LruPolicy::new(max_size.unwrap_or(1_000_000)).unwrap();
            let memory: MemoryStore<String> = MemoryStore::builder(policy.clone()).clock(ManualClock::new()).build();
            let mut builder = RedisStore::<String>::builder(server.url()).prefix(prefix.as_str());
            if max_size.is_some() {
                builder = builder.policy(policy);
            }
            let redis = builder.build().await.unwrap();
            same_results(&memory, &redis, &ops, Some((&mut conn, &prefix))).await
        })
    });
    if let Err(e) = result {
        panic!("{e}\n---- redis-server log ----\n{}", server.log());
    }
}

/// The same against a RedisStore on a real cluster: an unbounded store
/// spreads the keys over its buckets (and so over the masters); a bounded
/// one keeps them in one bucket, where its LRU order is exact.
#[test]
fn memory_and_redis_cluster_agree() {
    let cluster = support::RedisCluster::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let strategy = (prop::option::of(1usize..6), prop::collection::vec(op(), 1..40));
    let result = runner.run(&strategy, |(max_size, ops)| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("d[{case}]*?\\:");
        runtime.block_on(async {
            let policy = LruPolicy::new(max_size.unwrap_or(1_000_000)).unwrap();
            let memory: MemoryStore<String> = MemoryStore::builder(policy.clone()).clock(ManualClock::new()).build();
            let mut builder = RedisStore::<String>::cluster_builder(cluster.urls()).prefix(prefix.as_str());
            if max_size.is_some() {
                builder = builder.policy(policy).buckets(1);
            }
            let redis = builder.build().await.unwrap();
            same_results(&memory, &redis, &ops, None).await
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
