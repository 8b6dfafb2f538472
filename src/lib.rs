//! # pepperpy-caching
//!
//! One cache API for two worlds: in memory (natively, or compiled to
//! WebAssembly for Node, Deno and Cloudflare Workers) and in Redis, so a
//! service can grow from one process to many by changing the store it builds.
//!
//! - **Stores** implement the async [`CacheStore`] trait:
//!   [`MemoryStore`], and `RedisStore` and `NearCache` (memory in front of
//!   Redis, kept coherent) with the `redis` feature; [`DynCacheStore`] picks
//!   one at run time.
//! - **Policies**: [`S3FifoPolicy`] (capacity, frequency-aware and
//!   scan-resistant: the default choice), [`LruPolicy`] (capacity, least recently
//!   used evicted) and [`TtlPolicy`] (every entry expires;
//!   optional capacity, soonest-to-expire evicted).
//! - **Metrics**: hits, misses, sets, deletes, evictions, expirations, hit
//!   ratio and average `get` latency, the same [`CacheStats`] for every store,
//!   rendered for Prometheus by [`metrics::render_prometheus`].
//! - **Read-through** (`get_or_set`) that never writes back data older than a
//!   write it has seen, and stale-while-revalidate
//!   ([`CacheStore::get_or_refresh`], on every store; [`RefreshOptions`]).
//! - **Pattern invalidation** with Redis glob syntax ([`Pattern`]), matched
//!   exactly as Redis matches, in bounded time.
//! - **Metadata** per entry ([`Metadata`], a JSON object).
//! - **Typed errors**: one [`CacheError`] enum.
//!
//! ```
//! use pepperpy_caching::{CacheStore, SetOptions, stores::MemoryStore, policies::LruPolicy};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> pepperpy_caching::Result<()> {
//! let store = MemoryStore::new(LruPolicy::new(2)?);
//! store.set("user:1", 10, SetOptions::new()).await?;
//! store.set("user:2", 20, SetOptions::new().ttl(Duration::from_secs(60))).await?;
//! store.set("post:1", 30, SetOptions::new()).await?; // evicts user:1, the least recently used
//! assert_eq!(store.get("user:1").await?, None);
//! assert_eq!(store.invalidate("user:*").await?, 1);
//! assert_eq!(store.stats().evictions, 1);
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `redis` | `stores::RedisStore` (native targets only, tokio) |
//! | `tokio` | `TokioRuntime`, to run `get_or_refresh`'s background refreshes and timeouts on tokio |
//! | `js` | the JS bindings of the npm package, and the JS host's clock and randomness (`wasm32-unknown-unknown` only) |
//! | `js-redis` | the JS bindings of the npm entry `pepperpy-caching/redis`, a .wasm of their own (`wasm32-unknown-unknown` only) |
//!
//! The core compiles to every wasm32 target. Without `js` it exports nothing
//! and imports nothing from JS; on `wasm32-unknown-unknown` it then has no
//! system clock (as `std::time::Instant`), so give its stores a [`ManualClock`].
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// README.md's Rust examples run as doctests (they need features redis and tokio).
#[cfg(all(doctest, feature = "redis", feature = "tokio"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod clock;
mod errors;
mod key;
pub mod metrics;
mod pattern;
pub mod policies;
mod refresh;
mod remote;
mod removal;
mod singleflight;
mod store;
pub mod stores;
mod tags;
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "js"))]
mod wasm;
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "js-redis"))]
mod wasm_redis;

pub use clock::{Clock, ManualClock};
pub use errors::{CacheError, DynError, ErrorKind, Result};
pub use metrics::CacheStats;
pub use pattern::{MAX_PATTERN_LEN, Pattern, escape_pattern};
pub use policies::{LruPolicy, MAX_IDLE, Policy, S3FifoPolicy, TtlPolicy};
#[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
pub use refresh::TokioRuntime;
pub use refresh::{BoxFuture, RefreshLoader, RefreshOptions, Runtime};
pub use removal::{RemovalListener, RemovalReason};
pub use store::{CacheStore, MAX_KEY_LEN, Metadata, RESERVED_KEY_CHAR, SetOptions};
pub use stores::MemoryStore;
pub use stores::dyn_store::{DynCacheStore, DynFuture, DynLoader, DynRefreshLoader};
pub use tags::{MAX_INVALIDATE_TAGS, MAX_TAG_LEN, MAX_TAGS};
