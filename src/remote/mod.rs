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
// The quick check of a stored value's text (the JS store's read path).
#[cfg_attr(not(any(test, feature = "js-redis")), allow(dead_code))]
pub(crate) mod plain_json;
pub(crate) mod scripts;

use std::time::Duration;

/// How long a load's placeholder (and a refresh lock) lives unless its owner
/// removes it first.
pub(crate) const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(10);

/// How much longer than its entries a tag set lives: a tagged entry is
/// written after its registration, so its TTL starts a little later.
pub(crate) const SLACK_MS: u64 = 60_000;

/// Keys per SCAN page of a walk (`keys`, `invalidate`, `clear`, `size`, an
/// index rebuild).
pub(crate) const WALK_BATCH: usize = 1000;
/// How often `update_metadata` retries when the entry keeps changing under it.
pub(crate) const UPDATE_ATTEMPTS: usize = 32;
/// How many buckets' sizes `size` (and `invalidate_tags`) asks for at once.
pub(crate) const SIZE_CONCURRENCY: usize = 64;
/// The most keys a cluster store's rebuild lists straight from a slot
/// (`CLUSTER GETKEYSINSLOT`); a fuller slot is walked with SCAN.
pub(crate) const SLOT_LIST_MAX: u64 = 10_000;
/// The first pause of a caller waiting on another instance's load; each
/// further pause doubles, up to [`POLL_MAX`].
pub(crate) const POLL_FIRST: Duration = Duration::from_millis(10);
/// The longest pause of a caller waiting on another instance's load.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(50);
/// The most entries one call of a batch script (LRU reads, bounded sets)
/// handles: a script blocks Redis while it runs, so a long batch is cut
/// into calls of at most this many, pipelined (other clients' commands run
/// between them).
pub(crate) const SCRIPT_CHUNK: usize = 100;
/// The most entries one call of the delete script lists (Lua's `unpack`
/// takes a few thousand at most): a longer batch sends several, pipelined.
pub(crate) const DELETE_CHUNK: usize = 1_000;

/// Longest TTL sent to Redis, in ms (about 31,700 years): longer ones would
/// overflow Redis's expiry time and are the same as this in practice.
pub(crate) const MAX_TTL_MS: u128 = 1_000_000_000_000_000;

/// The TTL in whole milliseconds for Redis: rounded up (a TTL is never
/// shortened to 0), capped at [`MAX_TTL_MS`].
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Whether a refresh lock's value is a backoff marker whose retry time has
/// come (a running refresh's token is not).
pub(crate) fn backoff_over(held: &[u8], now: u64) -> bool {
    let Some(rest) = held.strip_prefix(b"backoff:") else { return false };
    let Some(at) = rest.iter().position(|&b| b == b':').map(|i| &rest[i + 1..]) else { return false };
    std::str::from_utf8(at).ok().and_then(|at| at.parse::<u64>().ok()).is_some_and(|at| now >= at)
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

    #[test]
    fn only_a_backoff_whose_time_has_come_frees_the_lock() {
        assert!(backoff_over(b"backoff:2:1000", 1000));
        assert!(!backoff_over(b"backoff:2:1000", 999));
        assert!(!backoff_over(b"0123456789abcdef", u64::MAX), "a running refresh's token");
        assert!(!backoff_over(b"backoff:2", u64::MAX));
    }
}
