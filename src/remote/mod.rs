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

use std::time::Duration;

/// How long a load's placeholder (and a refresh lock) lives unless its owner
/// removes it first.
pub(crate) const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(10);

/// How much longer than its entries a tag set lives: a tagged entry is
/// written after its registration, so its TTL starts a little later.
pub(crate) const SLACK_MS: u64 = 60_000;

/// Longest TTL sent to Redis, in ms (about 31,700 years): longer ones would
/// overflow Redis's expiry time and are the same as this in practice.
pub(crate) const MAX_TTL_MS: u128 = 1_000_000_000_000_000;

/// The TTL in whole milliseconds for Redis: rounded up (a TTL is never
/// shortened to 0), capped at [`MAX_TTL_MS`].
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(250)), 250);
        assert_eq!(ttl_millis(Duration::from_micros(250_001)), 251);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS as u64);
    }
}
