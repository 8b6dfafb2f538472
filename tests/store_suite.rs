#![cfg(not(target_arch = "wasm32"))]
//! The behavioural suite every store must pass, written once and run against
//! each backend: MemoryStore always, RedisStore and NearCache (on a real
//! redis-server) with the `redis` feature.
//!
//! A [`Backend`] makes stores and makes time pass: the memory backend moves a
//! `ManualClock` and never sleeps; the Redis backend sleeps, so its TTLs are
//! short (`SHORT`) and the entries that must survive have long ones (`LONG`).

mod support;

use std::time::Duration;

use pepperpy_caching::{
    CacheError, CacheStats, CacheStore, LruPolicy, MAX_KEY_LEN, MAX_PATTERN_LEN, ManualClock, Metadata, Policy,
    SetOptions, TtlPolicy, stores::MemoryStore,
};

/// A TTL that runs out during [`PASS`].
const SHORT: Duration = Duration::from_millis(100);
/// A TTL that never runs out during a test.
const LONG: Duration = Duration::from_secs(60);
/// How much time a test lets pass to expire `SHORT` entries.
const PASS: Duration = Duration::from_millis(400);

trait Backend {
    type Store: CacheStore<String>;
    /// A new, empty store; `None` is the backend's unbounded default.
    async fn store(&self, policy: Option<Policy>) -> Self::Store;
    /// Lets `by` pass for the stores of this backend.
    async fn pass(&self, by: Duration);
}

struct Memory {
    clock: ManualClock,
}

impl Memory {
    fn new() -> Self {
        Memory { clock: ManualClock::new() }
    }
}

impl Backend for Memory {
    type Store = MemoryStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let policy = policy.unwrap_or_else(|| LruPolicy::new(1_000_000).unwrap().into());
        MemoryStore::builder(policy).clock(self.clock.clone()).build()
    }
    async fn pass(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// MemoryStore whose unbounded default is an S3-FIFO store (the tests that
/// need LRU or TTL order ask for those policies themselves).
struct MemoryS3Fifo {
    clock: ManualClock,
}

impl MemoryS3Fifo {
    fn new() -> Self {
        MemoryS3Fifo { clock: ManualClock::new() }
    }
}

impl Backend for MemoryS3Fifo {
    type Store = MemoryStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let policy = policy.unwrap_or_else(|| pepperpy_caching::S3FifoPolicy::new(1_000_000).unwrap().into());
        MemoryStore::builder(policy).clock(self.clock.clone()).build()
    }
    async fn pass(&self, by: Duration) {
        self.clock.advance(by);
    }
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
struct Redis {
    server: support::RedisServer,
    stores: std::sync::atomic::AtomicUsize,
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Redis {
    fn new() -> Self {
        Redis { server: support::RedisServer::start(), stores: Default::default() }
    }
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Backend for Redis {
    type Store = pepperpy_caching::stores::RedisStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let n = self.stores.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Glob metacharacters in every prefix: escaping is exercised by every test.
        let mut builder = Self::Store::builder(self.server.url()).prefix(format!("s*[?\\{n}]:"));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        builder.build().await.expect("cannot connect to the test redis-server")
    }
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// RedisStore on a real Redis Cluster (three masters, three replicas).
/// Unbounded stores spread over the default buckets, so every test of
/// patterns, TTLs and metadata runs across masters. A bounded store keeps
/// one bucket: these tests check exact LRU/TTL order over the whole capacity,
/// which a store holds per bucket (the spread of a bounded store is tested
/// in tests/redis_cluster.rs).
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
struct Cluster {
    cluster: support::RedisCluster,
    stores: std::sync::atomic::AtomicUsize,
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Cluster {
    fn new() -> Self {
        Cluster { cluster: support::RedisCluster::start(), stores: Default::default() }
    }
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Backend for Cluster {
    type Store = pepperpy_caching::stores::RedisStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let n = self.stores.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut builder = Self::Store::cluster_builder(self.cluster.urls()).prefix(format!("c*[?\\{n}]:"));
        if let Some(policy) = policy {
            if policy.max_size().is_some() {
                builder = builder.buckets(1);
            }
            builder = builder.policy(policy);
        }
        builder.build().await.expect("cannot connect to the test cluster")
    }
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// NearCache: a memory tier in front of a RedisStore on a real redis-server.
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
struct Near(Redis);

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Backend for Near {
    type Store = pepperpy_caching::stores::NearCache<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let n = self.0.stores.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::Store::builder(self.0.server.url())
            .prefix(format!("n*[?\\{n}]:"))
            .redis(move |redis| match policy {
                Some(policy) => redis.policy(policy),
                None => redis,
            })
            .build()
            .await
            .expect("cannot connect to the test redis-server")
    }
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// Any backend's stores, held as `Arc<dyn DynCacheStore>` (chosen at run time).
struct Dynamic<B>(B);

impl<B: Backend> Backend for Dynamic<B>
where
    B::Store: 'static,
{
    type Store = std::sync::Arc<dyn pepperpy_caching::DynCacheStore<String>>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        std::sync::Arc::new(self.0.store(policy).await)
    }
    async fn pass(&self, by: Duration) {
        self.0.pass(by).await
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $test() { super::$test(&super::Memory::new()).await })*
        }
        mod memory_s3fifo {
            $(#[tokio::test] async fn $test() { super::$test(&super::MemoryS3Fifo::new()).await })*
        }
        mod dynamic_memory {
            $(#[tokio::test] async fn $test() { super::$test(&super::Dynamic(super::Memory::new())).await })*
        }
        #[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
        mod dynamic_redis {
            $(#[tokio::test] async fn $test() { super::$test(&super::Dynamic(super::Redis::new())).await })*
        }
        #[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
        mod near {
            $(#[tokio::test] async fn $test() { super::$test(&super::Near(super::Redis::new())).await })*
        }
        #[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
        mod cluster {
            $(#[tokio::test] async fn $test() { super::$test(&super::Cluster::new()).await })*
        }
        #[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
        mod redis {
            $(#[tokio::test] async fn $test() { super::$test(&super::Redis::new()).await })*
        }
    };
}

suite!(
    get_set_delete_contains,
    ttl_expiry,
    ttl_policy_default_ttl,
    metadata,
    metadata_update_keeps_value_and_ttl,
    lru_bound_evicts_least_recently_used,
    lru_without_refresh_on_get,
    lru_reclaims_expired_before_evicting,
    ttl_policy_max_size_evicts_soonest_to_expire,
    patterns_with_every_glob_feature,
    awkward_keys,
    bad_input_changes_nothing,
    stats_and_clear,
);

fn s(text: &str) -> String {
    text.to_string()
}

fn meta(json: serde_json::Value) -> Metadata {
    json.as_object().cloned().expect("an object")
}

async fn sorted_keys<S: CacheStore<String>>(store: &S, pattern: Option<&str>) -> Vec<String> {
    let mut keys = store.keys(pattern).await.unwrap();
    keys.sort();
    keys
}

fn strings(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

async fn get_set_delete_contains<B: Backend>(b: &B) {
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

async fn ttl_expiry<B: Backend>(b: &B) {
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

async fn ttl_policy_default_ttl<B: Backend>(b: &B) {
    let store = b.store(Some(TtlPolicy::new(SHORT).unwrap().into())).await;
    store.set("default", s("d"), SetOptions::new()).await.unwrap();
    store.set("own", s("o"), SetOptions::new().ttl(LONG)).await.unwrap();
    b.pass(PASS).await;
    assert_eq!(store.get("default").await.unwrap(), None);
    assert_eq!(store.get("own").await.unwrap(), Some(s("o")), "an entry's own TTL beats the default");
}

async fn metadata<B: Backend>(b: &B) {
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

async fn metadata_update_keeps_value_and_ttl<B: Backend>(b: &B) {
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

async fn lru_bound_evicts_least_recently_used<B: Backend>(b: &B) {
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

async fn lru_without_refresh_on_get<B: Backend>(b: &B) {
    let store = b.store(Some(LruPolicy::new(2).unwrap().refresh_on_get(false).into())).await;
    store.set("a", s("a"), SetOptions::new()).await.unwrap();
    store.set("b", s("b"), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s("a")));
    store.set("c", s("c"), SetOptions::new()).await.unwrap();
    assert_eq!(sorted_keys(&store, None).await, strings(&["b", "c"]), "get did not refresh a");
}

async fn lru_reclaims_expired_before_evicting<B: Backend>(b: &B) {
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

async fn ttl_policy_max_size_evicts_soonest_to_expire<B: Backend>(b: &B) {
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

async fn patterns_with_every_glob_feature<B: Backend>(b: &B) {
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

async fn awkward_keys<B: Backend>(b: &B) {
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

async fn bad_input_changes_nothing<B: Backend>(b: &B) {
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

async fn stats_and_clear<B: Backend>(b: &B) {
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
