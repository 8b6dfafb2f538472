#![cfg(not(target_arch = "wasm32"))]
//! The behavioural suite every store must pass, written once and run against
//! each backend: MemoryStore (LRU, S3-FIFO, sharded) and the dyn store always;
//! RedisStore, RedisStore on a Redis Cluster, NearCache and the dyn store
//! over Redis (on real servers) with the `redis` feature.
//!
//! The cases are grouped in lists, one file per group under
//! tests/store_suite/; a new group is one more file and one more list in
//! [`suite!`]'s call at the bottom. Each test is named `backend::case`.
//!
//! A [`Backend`] makes stores and makes time pass: the memory backends move a
//! `ManualClock` and never sleep; the Redis backends sleep, so their TTLs are
//! short (`SHORT`) and the entries that must survive have long ones (`LONG`).
//! The Redis backends share one redis-server (and one cluster) per test
//! binary, each store under a prefix of its own.

#[path = "store_suite/basics.rs"]
mod basics;
#[path = "store_suite/batch.rs"]
mod batch;
#[path = "store_suite/idle.rs"]
mod idle;
#[path = "store_suite/on_remove.rs"]
mod on_remove;
#[path = "store_suite/read_through.rs"]
mod read_through;
#[path = "store_suite/refresh.rs"]
mod refresh;
mod support;
#[path = "store_suite/tags.rs"]
mod tags;

use std::time::Duration;

use pepperpy_caching::{
    CacheStore, LruPolicy, ManualClock, Policy, RemovalListener, S3FifoPolicy, stores::MemoryStore,
};

/// A TTL that runs out during [`PASS`].
const SHORT: Duration = Duration::from_millis(100);
/// A TTL that never runs out during a test.
const LONG: Duration = Duration::from_secs(60);
/// How much time a test lets pass to expire `SHORT` entries.
const PASS: Duration = Duration::from_millis(400);

trait Backend {
    type Store: CacheStore<String> + 'static;
    /// A new, empty store; `None` is the backend's unbounded default.
    async fn store(&self, policy: Option<Policy>) -> Self::Store;
    /// Lets `by` pass for the stores of this backend.
    async fn pass(&self, by: Duration);
    /// [`store`](Self::store), telling `listener` of what it removes.
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store;
}

/// MemoryStore on a `ManualClock`, with an unbounded default policy (the
/// cases that need LRU or TTL order ask for those policies themselves).
struct Memory {
    clock: ManualClock,
    default: fn() -> Policy,
    /// Shards of a store without a capacity (`None`: the builder's default).
    /// A bounded store keeps the default (one shard under LRU and TTL): the
    /// cases check exact LRU/TTL order over the whole capacity, which a
    /// sharded store keeps per shard (tests/memory_shards.rs tests that).
    shards: Option<usize>,
}

impl Memory {
    /// LRU, one shard.
    fn new() -> Self {
        Memory { clock: ManualClock::new(), default: || LruPolicy::new(1_000_000).unwrap().into(), shards: None }
    }

    /// S3-FIFO (sharded by default, as S3-FIFO is at this size).
    fn s3fifo() -> Self {
        Memory { default: || S3FifoPolicy::new(1_000_000).unwrap().into(), ..Self::new() }
    }

    /// LRU split into 8 shards.
    fn sharded() -> Self {
        Memory { shards: Some(8), ..Self::new() }
    }
}

impl Backend for Memory {
    type Store = MemoryStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let policy = policy.unwrap_or_else(self.default);
        let shards = self.shards.filter(|_| policy.max_size().is_none());
        let mut builder = MemoryStore::builder(policy).clock(self.clock.clone());
        if let Some(shards) = shards {
            builder = builder.shards(shards);
        }
        let store = builder.build();
        if let Some(shards) = shards {
            assert_eq!(store.shard_count(), shards, "a sharded store");
        }
        store
    }
    async fn pass(&self, by: Duration) {
        self.clock.advance(by);
    }
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store {
        let policy = policy.unwrap_or_else(self.default);
        let shards = self.shards.filter(|_| policy.max_size().is_none());
        let mut builder =
            MemoryStore::builder(policy).clock(self.clock.clone()).on_remove(move |k: &str, v, r| listener(k, v, r));
        if let Some(shards) = shards {
            builder = builder.shards(shards);
        }
        builder.build()
    }
}

/// A prefix no other store in this binary has, with glob metacharacters in
/// it so that escaping is exercised by every case.
#[cfg(feature = "redis")]
fn prefix(backend: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static STORES: AtomicUsize = AtomicUsize::new(0);
    format!("{backend}*[?\\{}]:", STORES.fetch_add(1, Ordering::Relaxed))
}

/// RedisStore on the binary's shared redis-server.
#[cfg(feature = "redis")]
struct Redis;

#[cfg(feature = "redis")]
impl Backend for Redis {
    type Store = pepperpy_caching::stores::RedisStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let mut builder = Self::Store::builder(support::shared_server().url()).prefix(prefix("s"));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        builder.build().await.expect("cannot connect to the test redis-server")
    }
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store {
        let mut builder = Self::Store::builder(support::shared_server().url())
            .prefix(prefix("s"))
            .on_remove(move |k: &str, v, r| listener(k, v, r));
        if let Some(policy) = policy {
            builder = builder.policy(policy);
        }
        builder.build().await.expect("cannot connect to the test redis-server")
    }
}

/// RedisStore on the binary's shared Redis Cluster (three masters, three
/// replicas). Unbounded stores spread over the default buckets, so every
/// case of patterns, TTLs and metadata runs across masters. A bounded store
/// keeps one bucket: the cases check exact LRU/TTL order over the whole
/// capacity, which a store holds per bucket (the spread of a bounded store
/// is tested in tests/redis_cluster.rs).
#[cfg(feature = "redis")]
struct Cluster;

#[cfg(feature = "redis")]
impl Backend for Cluster {
    type Store = pepperpy_caching::stores::RedisStore<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        let urls = support::RedisCluster::shared().urls();
        let mut builder = Self::Store::cluster_builder(urls).prefix(prefix("c"));
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
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store {
        let urls = support::RedisCluster::shared().urls();
        let mut builder =
            Self::Store::cluster_builder(urls).prefix(prefix("c")).on_remove(move |k: &str, v, r| listener(k, v, r));
        if let Some(policy) = policy {
            if policy.max_size().is_some() {
                builder = builder.buckets(1);
            }
            builder = builder.policy(policy);
        }
        builder.build().await.expect("cannot connect to the test cluster")
    }
}

/// NearCache: a memory tier in front of a RedisStore on the binary's shared
/// redis-server.
#[cfg(feature = "redis")]
struct Near;

#[cfg(feature = "redis")]
impl Backend for Near {
    type Store = pepperpy_caching::stores::NearCache<String>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        Self::Store::builder(support::shared_server().url())
            .prefix(prefix("n"))
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
    /// The listener goes on the Redis tier, which makes every removal.
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store {
        Self::Store::builder(support::shared_server().url())
            .prefix(prefix("n"))
            .redis(move |redis| {
                let redis = redis.on_remove(move |k: &str, v, r| listener(k, v, r));
                match policy {
                    Some(policy) => redis.policy(policy),
                    None => redis,
                }
            })
            .build()
            .await
            .expect("cannot connect to the test redis-server")
    }
}

/// Any backend's stores, held as `Arc<dyn DynCacheStore>` (chosen at run time).
struct Dynamic<B>(B);

impl<B: Backend> Backend for Dynamic<B> {
    type Store = std::sync::Arc<dyn pepperpy_caching::DynCacheStore<String>>;
    async fn store(&self, policy: Option<Policy>) -> Self::Store {
        std::sync::Arc::new(self.0.store(policy).await)
    }
    async fn pass(&self, by: Duration) {
        self.0.pass(by).await
    }
    async fn listened(&self, policy: Option<Policy>, listener: RemovalListener<String>) -> Self::Store {
        std::sync::Arc::new(self.0.listened(policy, listener).await)
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

async fn sorted_keys<S: CacheStore<String>>(store: &S, pattern: Option<&str>) -> Vec<String> {
    support::sorted(store.keys(pattern).await.unwrap())
}

fn strings(items: &[&str]) -> Vec<String> {
    support::sorted(items.iter().map(|k| k.to_string()).collect())
}

/// A module of tests per backend (`$backend`, made by `$make`), each with a
/// test per case of every list: `list: [case, ...]` runs `list::case`.
macro_rules! suite {
    (cases: $cases:tt, backends: { $($(#[$only:meta])* $backend:ident => $make:expr,)* }) => {
        $(
            $(#[$only])*
            mod $backend {
                use super::*;
                suite!(@cases $make, $cases);
            }
        )*
    };
    (@cases $make:expr, { $($list:ident: [$($case:ident),* $(,)?],)* }) => {
        $($(
            #[tokio::test]
            async fn $case() {
                super::$list::$case(&$make).await
            }
        )*)*
    };
}

suite!(
    cases: {
        basics: [
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
        ],
        batch: [
            get_many_answers_in_the_order_asked,
            set_many_stores_every_entry_with_the_shared_options,
            delete_many_counts_each_live_entry_once,
            a_bad_key_or_bad_options_fail_the_whole_batch_and_change_nothing,
            batches_keep_the_capacity_and_the_lru_order,
            a_batch_write_cancels_a_load_in_flight,
        ],
        on_remove: [
            each_removal_is_reported_once_with_its_reason,
            a_panicking_listener_changes_nothing,
            a_set_over_an_expired_entry_replaces_nothing,
            a_bounded_store_reports_what_a_set_replaced,
            batches_report_what_they_remove,
            tagged_sets_report_what_they_remove,
            loads_and_refreshes_report_what_they_remove,
        ],
        read_through: [
            get_or_set_runs_one_load_for_concurrent_callers,
            a_failed_load_reaches_every_waiter_and_caches_nothing,
            get_or_set_checks_the_options_before_any_loader_runs,
            a_loaded_value_is_stored_with_the_options_ttl_and_metadata,
            a_load_never_writes_over_a_write_made_while_it_ran,
        ],
        idle: [
            an_idle_entry_lives_while_read_and_leaves_when_not,
            the_ttl_or_the_idle_time_whichever_comes_first,
            contains_and_get_metadata_are_not_reads,
            the_policy_gives_a_default_idle_time,
            a_set_starts_the_idle_clock_again_and_may_drop_it,
            get_or_set_hits_are_reads,
            a_zero_or_absurd_idle_time_changes_nothing,
            get_or_refresh_hits_are_reads,
            idle_entries_with_tags_metadata_and_stamps,
            get_many_hits_are_reads_and_set_many_gives_idle_times,
        ],
        refresh: [
            a_fresh_value_is_served_without_a_load,
            a_stale_value_is_served_at_once_while_one_refresh_runs,
            past_the_grace_period_a_read_waits_for_a_new_load,
            a_failed_refresh_keeps_the_stale_value,
            get_or_refresh_checks_its_input_before_any_loader_runs,
            get_or_refresh_refuses_long_keys_and_deep_metadata,
            a_refresh_loader_asking_for_its_own_key_fails_at_once,
            a_refresh_loader_that_panics_leaves_the_key_loadable,
            a_dropped_refresh_caller_leaves_the_key_loadable,
            a_background_refresh_whose_loader_reads_its_own_key_completes,
            a_refresh_whose_loader_panics_counts_as_failed_and_backs_off,
            a_miss_past_its_soft_timeout_fails_and_the_key_stays_loadable,
        ],
        tags: [
            invalidate_tags_removes_every_entry_carrying_one,
            tags_follow_replaces_deletes_and_metadata,
            expired_and_evicted_entries_are_not_counted,
            bad_tags_change_nothing,
            a_tagged_load_in_flight_stores_nothing,
            a_tagged_refresh_in_flight_stores_nothing,
            set_many_tags_every_entry,
            invalidate_tags_at_its_limits,
        ],
    },
    backends: {
        memory => Memory::new(),
        memory_s3fifo => Memory::s3fifo(),
        memory_sharded => Memory::sharded(),
        dynamic_memory => Dynamic(Memory::new()),
        #[cfg(feature = "redis")]
        redis => Redis,
        #[cfg(feature = "redis")]
        cluster => Cluster,
        #[cfg(feature = "redis")]
        near => Near,
        #[cfg(feature = "redis")]
        dynamic_redis => Dynamic(Redis),
    }
);

/// A store chosen at run time is held as `Arc<dyn DynCacheStore<V>>` (as
/// DynCacheStore's docs show): `get_or_refresh` works on it as held, like
/// every other `CacheStore` method, with no second `Arc` around it.
#[tokio::test]
async fn get_or_refresh_on_a_dyn_store_as_it_is_held() {
    use pepperpy_caching::{DynCacheStore, RefreshOptions};
    use std::sync::Arc;
    let store: Arc<dyn DynCacheStore<String>> = Arc::new(Memory::new().store(None).await);
    let options = RefreshOptions::new(refresh::Tasks, LONG, LONG);
    let got = store.get_or_refresh("k", || async { Ok::<_, std::io::Error>(s("v")) }, &options).await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(store.get("k").await.unwrap(), Some(s("v")));
}
