//! A tour of pepperpy-caching: LRU eviction, TTL expiry, metadata, pattern
//! invalidation and stats.
//!
//! ```text
//! cargo run --example demo                                           # in memory
//! cargo run --example demo --features redis -- redis://127.0.0.1:6379/0
//! ```

#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, Metadata, Result, SetOptions};

fn meta(value: serde_json::Value) -> Metadata {
    value.as_object().cloned().unwrap_or_default()
}

async fn tour<S: CacheStore<String>>(store: &S) -> Result<()> {
    println!("-- LRU eviction (max_size = 3)");
    for id in 1..=3 {
        store.set(&format!("user:{id}"), format!("User {id}"), SetOptions::new()).await?;
    }
    store.get("user:1").await?; // user:1 is now the most recently used
    store.set("user:4", "User 4".into(), SetOptions::new()).await?;
    for id in 1..=4 {
        let key = format!("user:{id}");
        println!("   {key:8} -> {:?}", store.get(&key).await?);
    }

    println!("-- TTL expiry");
    store.set("session:abc", "token".into(), SetOptions::new().ttl(Duration::from_millis(300))).await?;
    println!("   session:abc now        -> {:?}", store.get("session:abc").await?);
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!("   session:abc after 0.4s -> {:?}", store.get("session:abc").await?);

    println!("-- Metadata");
    let options = SetOptions::new().metadata(meta(serde_json::json!({ "version": 1, "author": "user" })));
    store.set("doc:1", "contents".into(), options).await?;
    store.update_metadata("doc:1", meta(serde_json::json!({ "version": 2 }))).await?;
    println!(
        "   doc:1 metadata -> {}",
        serde_json::Value::Object(store.get_metadata("doc:1").await?.unwrap_or_default())
    );

    println!("-- Pattern invalidation");
    println!("   keys before          -> {:?}", sorted(store.keys(None).await?));
    println!("   invalidate(\"user:*\") -> removed {}", store.invalidate("user:*").await?);
    println!("   keys after           -> {:?}", sorted(store.keys(None).await?));

    println!("-- Errors are typed");
    match store.get("").await {
        Err(e) => println!("   get(\"\") -> {e}"),
        Ok(v) => println!("   get(\"\") -> unexpectedly {v:?}"),
    }

    let s = store.stats();
    println!("-- Stats");
    println!(
        "   hits {} misses {} sets {} deletes {} evictions {} expirations {} hit ratio {:.2} avg get {:?}",
        s.hits, s.misses, s.sets, s.deletes, s.evictions, s.expirations, s.hit_ratio, s.avg_get_latency
    );
    Ok(())
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// The demo is a native program; for the edge, see examples/worker.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match std::env::args().nth(1) {
        #[cfg(feature = "redis")]
        Some(url) => {
            println!("RedisStore at {url} (prefix \"pepperpy-demo:\")");
            let store = pepperpy_caching::stores::RedisStore::<String>::builder(&url)
                .prefix("pepperpy-demo:")
                .policy(LruPolicy::new(3)?)
                .build()
                .await?;
            store.clear().await?;
            tour(&store).await
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            eprintln!("built without the `redis` feature: cargo run --example demo --features redis -- URL");
            std::process::exit(2);
        }
        None => {
            println!("MemoryStore (give a redis:// URL to use Redis instead)");
            tour(&MemoryStore::new(LruPolicy::new(3)?)).await
        }
    }
}
