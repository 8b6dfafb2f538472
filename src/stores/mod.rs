//! The stores: [`MemoryStore`] everywhere, `RedisStore` natively with the
//! `redis` feature. Each implements [`CacheStore`](crate::CacheStore).

pub(crate) mod memory;

pub use memory::{MAX_SHARDS, MemoryStore, MemoryStoreBuilder};

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisStore, RedisStoreBuilder};
