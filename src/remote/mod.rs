//! What the Redis store keeps and sends, without I/O: the stored form of an
//! entry ([`format`]), where a store's data lives in Redis and how a user's
//! pattern is confined to it ([`keyspace`]), and the Lua scripts
//! ([`scripts`]). Core layer: compiled on every target, with or without
//! features, so that two stores in two languages share one source for it:
//! the Rust `RedisStore` (`stores/redis`, which adds the I/O) and the JS
//! `RedisStore` of the npm entry `pepperpy-caching/redis` (`wasm_redis`).

// Used by the Redis store (feature `redis`) and the JS bindings (`js-redis`);
// a build with neither compiles it (checked) and uses none of it.
#![cfg_attr(not(any(feature = "redis", feature = "js-redis")), allow(dead_code))]

pub(crate) mod format;
pub(crate) mod keyspace;
pub(crate) mod scripts;
