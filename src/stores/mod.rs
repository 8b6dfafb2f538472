//! The stores: [`MemoryStore`] everywhere; natively with the `redis` feature,
//! `RedisStore` and `NearCache` (a `MemoryStore` in front of a `RedisStore`).
//! Each implements [`CacheStore`](crate::CacheStore), and any of them can be
//! held as a `DynCacheStore` chosen at run time (`dyn_store.rs`).

pub(crate) mod dyn_store;
pub(crate) mod memory;

pub use memory::{Dump, DumpEntry, MAX_SHARDS, MemoryStore, MemoryStoreBuilder};

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{DEFAULT_CLUSTER_BUCKETS, RedisStore, RedisStoreBuilder};

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod near;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::near::{NearCache, NearCacheBuilder};
