//! Read-through loading for [`RedisStore`]: one loader run per missing key
//! across every process sharing the prefix. The design is documented under
//! "Read-through loading" on [`RedisStore`].
//!
//! Two layers. In this instance, a [`SingleFlight`] lets one caller per key
//! (the leader) talk to Redis while the others wait for the stored bytes it
//! hands them. Between instances, the load's placeholder (a hash holding a
//! token, with the lease as TTL, in the entry's own Redis key) picks one
//! loader; everyone else polls until the value or a free key appears. The
//! loaded value is stored only while the placeholder is still the loader's:
//! every write to the key replaces or removes it. Nothing here waits
//! without a bound other than a loader itself: every round trip has the
//! store's timeout and every placeholder and lock its lease.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Capacity, Name, Report, ScriptCall, flag};
use super::conn::Conn;
use super::{RedisStore, ttl_millis};
use crate::errors::{CacheError, ErrorKind, Result};
use crate::key::Key;
use crate::metrics::SharedCounters;
use crate::remote::format;
use crate::remote::keyspace::Entry;
use crate::singleflight::loader_error;
use crate::store::{Metadata, SetOptions, check_set_options};

/// How long a load's placeholder (and a refresh lock) lives unless its owner
/// removes it first.
pub(super) use crate::remote::DEFAULT_LOCK_LEASE;
use crate::remote::{POLL_FIRST, POLL_MAX};

/// What [`RedisStore::get_or_lock`] found.
enum Step {
    /// The entry is there: its stored bytes.
    Found(Vec<u8>),
    /// The lock is ours now, and the entry was not there when we took it.
    Locked,
    /// Another caller holds the lock.
    Busy,
}

/// How a loaded value is stored: its TTL in ms, its metadata, and, for
/// `get_or_refresh`, its fresh period in ms.
#[derive(Clone, Copy)]
pub(super) struct StoreAs<'a> {
    pub ttl: Option<u64>,
    pub metadata: Option<&'a Metadata>,
    pub fresh_for: Option<u64>,
    /// The time-to-idle in ms, if any.
    pub idle: Option<u64>,
    /// The entry's tags (checked), registered before the placeholder is taken.
    pub tags: &'a [String],
}

/// What a loaded value's write is conditional on (see `STORE_LOADED_FN` in
/// the scripts).
pub(super) enum Condition<'a> {
    /// A load of a missing key: its placeholder still holds this token.
    Placeholder(&'a str),
    /// A refresh: the refresh lock holds `token` and the entry still has the
    /// bytes whose SHA1 is `sha`.
    Refresh { token: &'a str, sha: &'a str },
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// [`CacheStore::try_get_or_set`](crate::store::CacheStore::try_get_or_set)
    /// on a checked key (also the near cache's).
    pub(crate) async fn get_or_load<F, Fut, E>(&self, key: Key<'_>, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let ttl = check_set_options(&options, self.default_ttl)?.map(ttl_millis);
        let follow = |stored: Arc<[u8]>| format::decode_value(&key, &stored);
        let idle = options.idle.or(self.default_idle).map(ttl_millis);
        let how = StoreAs { ttl, metadata: options.metadata.as_ref(), fresh_for: None, idle, tags: &options.tags };
        let load = || async move { loader().await.map_err(loader_error) };
        let lead = || self.load_shared(key, load, how);
        // The singleflight runs `lead` (and so the loader) with the key
        // marked as loading on this thread: a loader asking for its own key
        // gets `CacheError::Reentrant` instead of waiting on itself.
        self.flights.read_through(&key, || self.get_checked(key), follow, lead).await
    }

    /// The value under `key` once one caller in any instance has loaded and
    /// stored it: found, or loaded here under the key's placeholder. Also
    /// returns the stored bytes, for this instance's followers.
    pub(super) async fn load_shared<F, Fut>(&self, key: Key<'_>, load: F, how: StoreAs<'_>) -> Result<(V, Arc<[u8]>)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let entry = self.space.entry(key);
        // The guard owns the token from before the first attempt: an attempt
        // whose reply is lost (an error, a timeout, this future dropped) may
        // have taken the placeholder on Redis all the same, so it is removed
        // then too.
        let mut guard = Held::new(Unlock {
            lock: Lock::new(entry.to_vec()),
            conn: self.conn.clone(),
            script: super::scripts::UNLOCK_LOAD,
            timeout: self.round_trip_timeout,
        });
        let mut pause = POLL_FIRST;
        loop {
            guard.arm();
            // An error returns with the guard armed: its drop releases.
            match self.get_or_lock(key, entry, guard.lock(), how.tags).await? {
                Step::Found(stored) => {
                    guard.disarm();
                    return Ok((format::decode_value(&key, &stored)?, stored.into()));
                }
                // Armed it stays: the placeholder is ours until stored or released.
                Step::Locked => break,
                // The owner stores the value (replacing its placeholder), or
                // removes the placeholder, or its lease ends: each ends this wait.
                Step::Busy => {
                    guard.disarm();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
            }
        }

        let started = Instant::now();
        let unfinished = Unfinished(&self.counters);
        let loaded = load().await;
        std::mem::forget(unfinished);
        self.counters.record_load(loaded.is_ok(), u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let stored = match loaded.and_then(|value| Ok((format::encode_tagged(&value, how.metadata, how.tags)?, value)))
        {
            Ok((stored, value)) => (stored, value),
            Err(e) => {
                guard.release().await;
                return Err(e);
            }
        };
        let (stored, value) = stored;
        let token = guard.lock().token.clone();
        // Stored only if the placeholder is still ours: nothing wrote,
        // deleted, invalidated or cleared the key, and the lease has not run
        // out. Either way the callers get the loaded value.
        let written = self.store_loaded(key, Condition::Placeholder(&token), &stored, how).await?;
        // Stored, the value replaced the placeholder; refused, it is not ours.
        guard.disarm();
        if written && !how.tags.is_empty() {
            // Listed with its placeholder already; this keeps its tag sets as long as the entry.
            self.register_written("get_or_set", key, how.tags, how.ttl).await?;
        }
        Ok((value, stored.into()))
    }

    /// Writes a loaded value if `condition` still holds, in one script with
    /// the check (with the capacity's bookkeeping if there is one); whether
    /// it was written. Counts a set if so.
    pub(super) async fn store_loaded(
        &self,
        key: Key<'_>,
        condition: Condition<'_>,
        stored: &[u8],
        how: StoreAs<'_>,
    ) -> Result<bool> {
        let what = "get_or_set";
        self.check_record(false);
        let (mode, token, sha) = match condition {
            Condition::Placeholder(token) => ("p", token, ""),
            Condition::Refresh { token, sha } => ("r", token, sha),
        };
        let lock = self.space.lock(key);
        let capacity = self.capacity(self.space.bucket_index(key));
        // The lock last, and where a declared key must exist (a cluster) only
        // in mode 'r', which holds it (see `STORE_LOADED_CALL`).
        let uses_lock = mode == "r" || self.conn.declares_absent_keys();
        let (entry, held) = (self.space.entry(key).into(), lock.as_slice().into());
        let (script, keys): (_, &[Name<'_>]) = match (capacity.as_ref().map(Capacity::indexes), uses_lock) {
            (Some([recency, expiry]), true) => (&self.scripts.store_loaded_bounded, &[entry, recency, expiry, held]),
            (Some([recency, expiry]), false) => (&self.scripts.store_loaded_bounded, &[entry, recency, expiry]),
            (None, true) => (&self.scripts.store_loaded, &[entry, held]),
            (None, false) => (&self.scripts.store_loaded, &[entry]),
        };
        let mut call = ScriptCall::new(script, keys, &[]);
        call.arg(mode).arg(token).arg(sha).arg(how.fresh_for.unwrap_or(0)).arg(stored).arg(how.ttl.unwrap_or(0));
        if let Some(capacity) = &capacity {
            call.capacity(capacity).arg(flag(self.sample()));
        }
        call.arg(how.idle.unwrap_or(0));
        let mut conn = self.conn.clone();
        // With a listener, a bounded write also returns what it evicted.
        let listening = capacity.is_some() && self.listening();
        let ((expired, evicted, lost, written), gone) = if listening {
            call.arg(flag(true));
            let reply: Vec<redis::Value> = self.round_trip(what, call.invoke(&mut conn)).await?;
            self.loaded_reply(what, reply)?
        } else {
            let counts: (u64, u64, u8, u8) = self.round_trip(what, call.invoke(&mut conn)).await?;
            (counts, Vec::new())
        };
        if let Some(capacity) = &capacity {
            self.settle(capacity, Report::new((expired, evicted, lost))).await;
        }
        self.report_removed(crate::removal::RemovalReason::Evicted, gone);
        if written == 1 && !uses_lock && how.fresh_for.is_some_and(|ms| ms > 0) {
            clear_backoff(self, what, &lock).await;
        }
        let written = written == 1;
        if written {
            SharedCounters::add(&self.counters.sets, 1);
        }
        Ok(written)
    }

    /// One atomic step: the entry if present, else the placeholder if free
    /// (listed in the tag sets of `tags` with it).
    async fn get_or_lock(&self, key: Key<'_>, entry: Entry<'_>, lock: &Lock, tags: &[String]) -> Result<Step> {
        let mut conn = self.conn.clone();
        let index = self.space.bucket_index(key);
        let sets: Vec<Vec<u8>> = tags.iter().map(|tag| self.space.tag_set(index, tag)).collect();
        let mut keys: Vec<Name<'_>> = vec![entry.into()];
        keys.extend(sets.iter().map(Name::from));
        let mut call = ScriptCall::new(&self.scripts.get_or_lock, &keys, &[]);
        let lease = ttl_millis(self.lock_lease);
        call.arg(&lock.token).arg(lease);
        if !tags.is_empty() {
            call.arg(lease.saturating_add(super::tags::SLACK_MS));
        }
        let reply: redis::Value = self.round_trip("get_or_set", call.invoke(&mut conn)).await?;
        match reply {
            redis::Value::BulkString(stored) => Ok(Step::Found(stored)),
            redis::Value::Int(1) => Ok(Step::Locked),
            redis::Value::Int(0) => Ok(Step::Busy),
            redis::Value::Int(-1) => Err(CacheError::backend(
                ErrorKind::Command,
                format!(
                    "get_or_set on Redis at {}: the key holds a value of another type that this store did not write",
                    self.addr
                ),
                None,
            )),
            other => Err(self.unexpected("get_or_set", other)),
        }
    }
}

/// A lock's Redis key (a load's placeholder: the entry's own key; a
/// refresh: the refresh lock) and the token that proves who owns it.
pub(super) struct Lock {
    pub key: Vec<u8>,
    pub token: String,
}

impl Lock {
    pub fn new(key: Vec<u8>) -> Self {
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
pub(super) struct Held {
    unlock: Option<Unlock>,
    armed: bool,
}

impl Held {
    pub fn new(unlock: Unlock) -> Self {
        Held { unlock: Some(unlock), armed: false }
    }

    pub fn lock(&self) -> &Lock {
        let Some(unlock) = &self.unlock else { unreachable!("taken only by release and drop") };
        &unlock.lock
    }

    /// Before a lock attempt: from now on the lock may be ours.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The attempt's reply says the lock is not ours: nothing to release.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    pub async fn release(mut self) {
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

/// After a load on a cluster stored a fresh value without declaring the
/// refresh lock: no backoff of an earlier failed refresh stays. Best effort
/// (a backoff ends by itself).
async fn clear_backoff<V>(store: &RedisStore<V>, what: &str, lock: &[u8])
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut conn = store.conn.clone();
    let mut cmd = redis::cmd("DEL");
    cmd.arg(lock);
    let _ = store.round_trip(what, cmd.query_async::<redis::Value>(&mut conn)).await;
}

/// What releasing a lock takes, owned so it can outlive the caller.
pub(super) struct Unlock {
    pub lock: Lock,
    pub conn: Conn,
    /// The Lua source of the compare-and-delete.
    pub script: &'static str,
    pub timeout: Duration,
}

impl Unlock {
    /// Deletes the lock if it still holds our token. Best effort: if Redis
    /// does not answer, the lease ends the lock anyway.
    ///
    /// Sent as `EVAL` with the source, never `EVALSHA`: it is rare, and it
    /// must work in one command. If Redis does not know the script yet and
    /// is paused, the `NOSCRIPT` answer would come too late for the load that
    /// follows it, and the release would be lost.
    async fn run(&self) {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(self.script).arg(1).arg(&self.lock.key).arg(&self.lock.token);
        let _ = tokio::time::timeout(self.timeout, cmd.query_async::<redis::Value>(&mut conn)).await;
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

/// Counts a loader run that never finished: it started, so `loads` counts
/// it; if the loader panicked (this runs while the panic unwinds), it failed
/// too. One dropped unfinished (a timeout, a cancelled caller) is no failure.
struct Unfinished<'a>(&'a crate::metrics::SharedCounters);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.0.record_load(!std::thread::panicking(), 0);
    }
}
