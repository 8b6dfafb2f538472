//! What the integration tests share (each `tests/*.rs` is its own crate and
//! says `mod support;`):
//! - `server`: a real `redis-server` on a free port (plain, password, TLS),
//!   one shared by a whole test binary, a server that never answers, signals;
//! - `cluster`: a real Redis Cluster (3 masters, 3 replicas), one shared by a
//!   binary, and who serves what (slots asked of the server, `CLUSTER KEYSLOT`);
//! - `load`: loaders and load scenarios for read-through and refresh tests;
//! - `hostile`: the attackers of the hostile MemoryStore tests;
//! - `rng`: a seeded generator (also used by examples/soak.rs);
//! - here: small helpers (`meta`, `sorted`, `within`, `until`, `scan`, stores).
#![allow(dead_code)] // each test binary uses a different part of this module

#[cfg(not(target_arch = "wasm32"))]
pub mod cluster;
#[cfg(not(target_arch = "wasm32"))]
pub mod hostile;
#[cfg(not(target_arch = "wasm32"))]
pub mod load;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;

#[cfg(not(target_arch = "wasm32"))]
#[allow(unused_imports)] // each test binary uses a different part of this module
pub use cluster::RedisCluster;
#[cfg(not(target_arch = "wasm32"))]
#[allow(unused_imports)]
pub use server::{Frozen, RedisServer, SilentServer, free_port, shared_server, signal};

#[cfg(not(target_arch = "wasm32"))]
use std::future::Future;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

use pepperpy_caching::Metadata;
#[cfg(feature = "redis")]
use pepperpy_caching::{
    Policy,
    stores::{RedisStore, RedisStoreBuilder},
};
#[cfg(feature = "redis")]
use std::sync::Arc;

/// Metadata from a JSON object literal.
pub fn meta(json: serde_json::Value) -> Metadata {
    json.as_object().cloned().expect("metadata is a JSON object")
}

/// `[[[...1...]]]`, `depth` arrays deep.
pub fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!([v]))
}

/// `items`, sorted (`keys()` promises no order).
pub fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[cfg(not(target_arch = "wasm32"))]
/// Fails a test that would otherwise hang (20 s: only a deadlock, or a wait
/// for a long lease, comes near it).
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    within_for(what, Duration::from_secs(20), f).await
}

#[cfg(not(target_arch = "wasm32"))]
/// [`within`] with its own limit.
pub async fn within_for<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("{what}: timed out after {limit:?}"))
}

#[cfg(not(target_arch = "wasm32"))]
/// Waits until `ready()` holds (for at most 20 s).
pub async fn until(what: &str, ready: impl Fn() -> bool) {
    within(what, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Every key matching `pattern` on one server (SCAN, binary-safe).
#[cfg(feature = "redis")]
pub async fn scan(conn: &mut redis::aio::MultiplexedConnection, pattern: &[u8]) -> Vec<Vec<u8>> {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        out.extend(page);
        cursor = next;
        if cursor == 0 {
            return out;
        }
    }
}

/// What a `RedisStore` can hold (it stores values as JSON).
#[cfg(feature = "redis")]
pub trait Json: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {}
#[cfg(feature = "redis")]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Json for T {}

/// A `RedisStore` builder on `server` under `prefix`, with `policy` if one is given.
#[cfg(feature = "redis")]
pub fn redis_builder<V: Json>(server: &RedisServer, prefix: &str, policy: Option<Policy>) -> RedisStoreBuilder<V> {
    let builder = RedisStore::builder(server.url()).prefix(prefix);
    match policy {
        Some(policy) => builder.policy(policy),
        None => builder,
    }
}

/// The store of [`redis_builder`].
#[cfg(feature = "redis")]
pub async fn redis_store<V: Json>(server: &RedisServer, prefix: &str, policy: Option<Policy>) -> RedisStore<V> {
    redis_builder(server, prefix, policy).build().await.unwrap()
}

/// The store of [`redis_builder`], of strings, with a lock lease, to share between tasks.
#[cfg(feature = "redis")]
pub async fn leased_store(
    server: &RedisServer,
    prefix: &str,
    policy: Option<Policy>,
    lease: Duration,
) -> Arc<RedisStore<String>> {
    Arc::new(redis_builder(server, prefix, policy).lock_lease(lease).build().await.unwrap())
}
