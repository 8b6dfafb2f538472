//! The stores: [`MemoryStore`] everywhere, `RedisStore` natively with the
//! `redis` feature. Each implements [`CacheStore`](crate::CacheStore).

pub(crate) mod memory;

pub use memory::{MemoryStore, MemoryStoreBuilder};
