//! Read-through loading for [`RedisStore`]: one loader run per missing key
//! across every process sharing the prefix. The design is documented under
//! "Read-through loading" on [`RedisStore`].
//!
//! Two layers. In this instance, a [`SingleFlight`] lets one caller per key
//! (the leader) talk to Redis while the others wait for the stored bytes it
//! hands them. Between instances, a lock in Redis (`SET NX PX` with a token)
//! picks one loader; everyone else polls until the value or a free lock
//! appears. Nothing here waits without a bound other than a loader itself:
//! every round trip has the store's timeout and every lock its lease.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use redis::Script;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keyspace::Entry;
use super::{RedisStore, format, ttl_millis};
use crate::errors::{CacheError, Result};
use crate::singleflight::loader_error;
use crate::store::{CacheStore, Metadata, SetOptions, check_key, check_set_options};

/// How long a load lock lives unless its owner releases it first.
pub(super) const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(10);
/// The first pause of a caller waiting on another instance's load; each
/// further pause doubles, up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(50);

/// What [`RedisStore::get_or_lock`] found.
enum Step {
    /// The entry is there: its stored bytes.
    Found(Vec<u8>),
    /// The lock is ours now, and the entry was not there when we took it.
    Locked,
    /// Another caller holds the lock.
    Busy,
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// [`CacheStore::try_get_or_set`] for Redis.
    pub(super) async fn get_or_load<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        check_key(key)?;
        let ttl = check_set_options(&options, self.default_ttl)?.map(ttl_millis);
        let follow = |stored: Arc<[u8]>| format::decode_value(key, &stored);
        let lead = || self.load_shared(key, loader, ttl, options.metadata.as_ref());
        self.flights.read_through(key, || self.get(key), follow, lead).await
    }

    /// The value under `key` once one caller in any instance has loaded and
    /// stored it: found, or loaded here under the lock. Also returns the
    /// stored bytes, for this instance's followers.
    async fn load_shared<F, Fut, E>(
        &self,
        key: &str,
        load: F,
        ttl: Option<u64>,
        metadata: Option<&Metadata>,
    ) -> Result<(V, Arc<[u8]>)>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let entry = self.space.entry(key);
        // The guard owns the token from before the first attempt: an attempt
        // whose reply is lost (an error, a timeout, this future dropped) may
        // have taken the lock on Redis all the same, so it is released then too.
        let mut guard = Held::new(Unlock {
            lock: Lock::new(self.space.lock(key)),
            conn: self.conn.clone(),
            script: self.scripts.unlock.clone(),
            timeout: self.round_trip_timeout,
        });
        let mut pause = POLL_FIRST;
        loop {
            guard.arm();
            // An error returns with the guard armed: its drop releases.
            match self.get_or_lock(entry, guard.lock()).await? {
                Step::Found(stored) => {
                    guard.disarm();
                    return Ok((format::decode_value(key, &stored)?, stored.into()));
                }
                // Armed it stays: the lock is ours until `release`.
                Step::Locked => break,
                // The owner stores the value before releasing, and a lock whose
                // owner died expires with its lease: either ends this wait.
                Step::Busy => {
                    guard.disarm();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
            }
        }

        let started = Instant::now();
        let loaded = load().await.map_err(loader_error);
        self.counters.record_load(loaded.is_ok(), u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let result = match loaded {
            Ok(value) => match format::encode(&value, metadata) {
                Ok(stored) => self.write("get_or_set", entry, &stored, ttl).await.map(|()| (value, stored.into())),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        // After the write, so a caller that finds the lock free finds the value too.
        guard.release().await;
        result
    }

    /// One atomic step: the entry if present, else the lock if free.
    async fn get_or_lock(&self, entry: Entry<'_>, lock: &Lock) -> Result<Step> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = self
            .round_trip(
                "get_or_set",
                self.scripts
                    .get_or_lock
                    .key(entry)
                    .key(&lock.key)
                    .arg(&lock.token)
                    .arg(ttl_millis(self.lock_lease))
                    .invoke_async(&mut conn),
            )
            .await?;
        match reply {
            redis::Value::BulkString(stored) => Ok(Step::Found(stored)),
            redis::Value::Int(1) => Ok(Step::Locked),
            redis::Value::Int(0) => Ok(Step::Busy),
            other => Err(CacheError::Backend {
                message: format!("get_or_set on Redis at {}: unexpected reply {other:?}", self.addr),
                source: None,
            }),
        }
    }
}

/// A load lock's Redis key and the token that proves who owns it.
struct Lock {
    key: Vec<u8>,
    token: String,
}

impl Lock {
    fn new(key: Vec<u8>) -> Self {
        Lock { key, token: new_token() }
    }
}

/// Releases this caller's lock while armed: from just before a lock attempt
/// until its reply says the lock is not ours ([`disarm`](Self::disarm)), or
/// while it is ours, until [`release`](Self::release). Dropped armed (an
/// attempt that failed or timed out, the caller's future dropped mid-attempt
/// or mid-load, a panicking loader), it spawns the release on the current
/// tokio runtime; without one, the lease ends the lock. Releasing a lock we
/// never got is harmless: the compare-and-delete only matches our token, and
/// on the shared multiplexed connection it runs after the attempt it follows.
struct Held {
    unlock: Option<Unlock>,
    armed: bool,
}

impl Held {
    fn new(unlock: Unlock) -> Self {
        Held { unlock: Some(unlock), armed: false }
    }

    fn lock(&self) -> &Lock {
        let Some(unlock) = &self.unlock else { unreachable!("taken only by release and drop") };
        &unlock.lock
    }

    /// Before a lock attempt: from now on the lock may be ours.
    fn arm(&mut self) {
        self.armed = true;
    }

    /// The attempt's reply says the lock is not ours: nothing to release.
    fn disarm(&mut self) {
        self.armed = false;
    }

    async fn release(mut self) {
        if self.armed
            && let Some(unlock) = &self.unlock
        {
            unlock.run().await;
        }
        // Only now: if this future is dropped mid-release, `drop` tries again.
        self.armed = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.armed
            && let Some(unlock) = self.unlock.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { unlock.run().await });
        }
    }
}

/// What releasing a lock takes, owned so it can outlive the caller.
struct Unlock {
    lock: Lock,
    conn: ConnectionManager,
    script: Script,
    timeout: Duration,
}

impl Unlock {
    /// Deletes the lock if it still holds our token. Best effort: if Redis
    /// does not answer, the lease ends the lock anyway.
    async fn run(&self) {
        let mut conn = self.conn.clone();
        let mut call = self.script.key(&self.lock.key);
        call.arg(&self.lock.token);
        let _ = tokio::time::timeout(self.timeout, call.invoke_async::<i64>(&mut conn)).await;
    }
}

/// A token no other lock of any process will carry: unique, not secret.
/// Two independently seeded hashes of the process id, the time and a counter.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let half = || RandomState::new().hash_one((std::process::id(), now, n));
    format!("{:016x}{:016x}", half(), half())
}
