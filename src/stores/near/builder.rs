//! Building a [`NearCache`]: the `RedisStore` first, then the invalidation
//! connection, which must be tracking before the memory tier serves.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::NearCache;
use super::local::Shared;
use super::tracking::{Link, keep_tracking, sentinel_names};
use crate::errors::{CacheError, ErrorKind, Result};
use crate::metrics::SharedCounters;
use crate::policies::S3FifoPolicy;
use crate::stores::redis::{backend, check_durations, setters, tracking_client};
use crate::stores::{MemoryStore, RedisStore, RedisStoreBuilder};

/// How to build a [`NearCache`]: made by [`NearCache::builder`].
#[must_use]
pub struct NearCacheBuilder<V> {
    url: String,
    prefix: String,
    memory: Option<MemoryStore<V>>,
    #[allow(clippy::type_complexity)]
    redis: Option<Box<dyn FnOnce(RedisStoreBuilder<V>) -> RedisStoreBuilder<V> + Send>>,
    root_certificates: Option<Vec<u8>>,
    connect_timeout: Duration,
    response_timeout: Duration,
    heartbeat: Duration,
}

impl<V> NearCacheBuilder<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    setters! {
        /// The prefix of the `RedisStore` (see [`RedisStoreBuilder::prefix`]), and
        /// the prefix whose writes Redis reports to this instance.
        prefix(prefix: impl Into<String>) => prefix = prefix.into();

        /// The memory tier (default: `S3FifoPolicy::new(10_000)`). Anything in it
        /// is removed at `build`. Its policy's default TTL, if any, caps how long
        /// an entry stays in memory.
        memory(store: MemoryStore<V>) => memory = Some(store);

        /// Sets up the `RedisStore` beyond its URL, prefix and TLS roots: a
        /// policy, timeouts, a lock lease.
        redis(configure: impl FnOnce(RedisStoreBuilder<V>) -> RedisStoreBuilder<V> + Send + 'static)
            => redis = Some(Box::new(configure));

        /// For `rediss://`: trust the CA certificates in `pem`, on both
        /// connections (see [`RedisStoreBuilder::tls_root_certificates`]).
        tls_root_certificates(pem: impl Into<Vec<u8>>) => root_certificates = Some(pem.into());

        /// How long opening the invalidation connection may take, TLS included
        /// (default 2 s).
        connect_timeout(timeout: Duration) => connect_timeout = timeout;

        /// How long a command on the invalidation connection may take: turning
        /// tracking on, and a fill's `PTTL` (default 1 s; a fill whose `PTTL`
        /// does not answer in time is skipped, the read still succeeds).
        response_timeout(timeout: Duration) => response_timeout = timeout;

        /// How often the invalidation connection is checked, with a round trip
        /// that also checks the database marker, and how long the answer may
        /// take (default 1 s). A connection that closes is noticed at once; this
        /// bounds how long a silently dead one, or a `SWAPDB`, goes unnoticed
        /// (about two heartbeats).
        heartbeat(period: Duration) => heartbeat = period;
    }

    /// Builds the `RedisStore`, opens the invalidation connection, turns
    /// tracking on and marks the database; returns only once all of that is
    /// done, so the memory tier serves, coherently, from the start.
    ///
    /// # Errors
    /// What [`RedisStoreBuilder::build`] returns; [`CacheError::Policy`] for
    /// a zero timeout or heartbeat; [`CacheError::Backend`] if the
    /// invalidation connection cannot be opened or Redis refuses
    /// `CLIENT TRACKING` (before 6.0, or an ACL that denies it).
    pub async fn build(self) -> Result<NearCache<V>> {
        check_durations([
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("heartbeat", self.heartbeat),
        ])?;
        let mut redis = RedisStore::builder(self.url.clone()).prefix(self.prefix);
        if let Some(pem) = &self.root_certificates {
            redis = redis.tls_root_certificates(pem.clone());
        }
        if let Some(configure) = self.redis {
            redis = configure(redis);
        }
        // Builds first: it checks the prefix and URL, and installs the TLS provider.
        let redis = redis.build().await?;
        let prefix = redis.prefix().to_string();

        let (client, addr) = tracking_client(&self.url, self.root_certificates)?;
        let token = RandomState::new().hash_one((std::process::id(), Instant::now()));
        let link = Link {
            client,
            prefix: prefix.as_bytes().to_vec(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            sentinels: sentinel_names(prefix.as_bytes(), token),
        };

        let memory = match self.memory {
            Some(memory) => memory,
            None => MemoryStore::new(S3FifoPolicy::new(10_000)?),
        };
        let shared = Arc::new(Shared::new(memory, &prefix));
        let session = 1;
        let conn = link.connect(Arc::downgrade(&shared), session).await.map_err(|e| {
            backend(format!("cannot open the invalidation connection (CLIENT TRACKING) to Redis at {addr}"), e)
        })?;
        if !shared.go_up(session, conn.clone()) {
            return Err(CacheError::backend(
                ErrorKind::Connection,
                format!("the invalidation connection to Redis at {addr} closed as it opened"),
                None,
            ));
        }
        let task = tokio::spawn(keep_tracking(shared.clone(), link, conn, session, self.heartbeat)).abort_handle();
        Ok(NearCache {
            shared,
            redis: Arc::new(redis),
            own: SharedCounters::default(),
            response_timeout: self.response_timeout,
            task,
        })
    }
}

impl<V> NearCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a near cache on the Redis at `url` (as for
    /// [`RedisStore::builder`]).
    pub fn builder(url: impl Into<String>) -> NearCacheBuilder<V> {
        NearCacheBuilder {
            url: url.into(),
            prefix: String::new(),
            memory: None,
            redis: None,
            root_certificates: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
        }
    }
}
