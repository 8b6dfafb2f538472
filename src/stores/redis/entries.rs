//! The [`CacheStore`] calls of [`RedisStore`]: each checks its input once
//! (the key into a [`Key`], a pattern into a [`Pattern`]) and runs on
//! checked input from there. The calls on checked input (`*_checked`, and
//! `get_or_load` in `load`) are also the near cache's interface to the
//! store. The walks over many keys are in `walks`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Capacity, Name, Report, ScriptCall, flag};
use super::{RedisStore, ttl_millis};
use crate::errors::{CacheError, DynError, ErrorKind, Result};
use crate::key::Key;
use crate::metrics::{CacheStats, SharedCounters};
use crate::pattern::Pattern;
use crate::refresh::{RefreshLoader, RefreshOptions};
use crate::remote::format;
use crate::remote::keyspace::Entry;
use crate::store::{CacheStore, Metadata, SetOptions, check_metadata, check_set_options};

use crate::remote::UPDATE_ATTEMPTS;

/// A `set` checked and encoded, not yet written ([`RedisStore::encode_set`]).
pub(crate) struct EncodedSet {
    pub(super) stored: Vec<u8>,
    pub(super) ttl: Option<u64>,
    /// The time-to-idle in ms, if any.
    pub(super) idle: Option<u64>,
    /// The entry's tags, listed after the write (`tags.rs`).
    pub(super) tags: Vec<String>,
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// [`CacheStore::get`] on a checked key.
    pub(crate) async fn get_checked(&self, key: Key<'_>) -> Result<Option<V>> {
        self.get_checked_idle(key).await.map(|(value, _)| value)
    }

    /// [`get_checked`](Self::get_checked), and whether the entry found has
    /// a time-to-idle (the near cache keeps no copy of those: see
    /// `docs/near.md`).
    pub(crate) async fn get_checked_idle(&self, key: Key<'_>) -> Result<(Option<V>, bool)> {
        let started = self.counters.sample_next_get().then(Instant::now);
        let full = self.space.entry(key);
        let (stored, expired) = if self.refresh_on_get {
            let bucket = self.space.bucket(key);
            let call = ScriptCall::new(
                &self.scripts.get_lru,
                &[full.into(), (&bucket.recency).into(), (&bucket.expiry).into()],
                &[],
            );
            let mut conn = self.conn.clone();
            let reply = match self.try_round_trip("get", call.invoke(&mut conn)).await {
                // On a cluster, while the bucket's slot migrates, its keys are
                // split between two masters and Redis refuses the script
                // (TRYAGAIN, retried by the client until the timeout): read
                // the entry with a plain GET, which follows the migration,
                // without marking it used.
                Err(failure) if self.conn.may_be_migrating(&failure) => match self.read("get", full).await? {
                    Some(bytes) => redis::Value::BulkString(bytes),
                    None => redis::Value::Nil,
                },
                other => other?,
            };
            match reply {
                redis::Value::BulkString(bytes) => (Some(bytes), 0),
                redis::Value::Int(n) => (None, n.unsigned_abs()),
                redis::Value::Nil => (None, 0),
                other => return Err(self.unexpected("get", other)),
            }
        } else if self.default_idle.is_some() {
            // Every entry has an idle time: the read and its touch in one script.
            (self.read_idle(key).await?, 0)
        } else {
            let stored = self.read("get", full).await?;
            if let Some(head) = stored.as_deref().and_then(format::idle_header) {
                self.touch(key, head).await?;
            }
            (stored, 0)
        };
        let idle = stored.as_deref().is_some_and(|bytes| format::idle_header(bytes).is_some());
        let value = stored.map(|bytes| format::decode_value(&key, &bytes)).transpose()?;
        let counter = if value.is_some() { &self.counters.hits } else { &self.counters.misses };
        SharedCounters::add(counter, 1);
        SharedCounters::add(&self.counters.expirations, expired);
        if let Some(started) = started {
            self.counters.record_latency(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok((value, idle))
    }

    /// [`CacheStore::set`] on a checked key.
    pub(crate) async fn set_checked(&self, key: Key<'_>, value: V, options: SetOptions) -> Result<()> {
        let encoded = self.encode_set(&value, &options)?;
        drop(value);
        self.set_encoded(key, encoded).await
    }

    /// The first half of [`set_checked`](Self::set_checked): the options
    /// checked and the value encoded, nothing sent (so a caller can refuse
    /// bad input before it changes anything of its own).
    pub(crate) fn encode_set(&self, value: &V, options: &SetOptions) -> Result<EncodedSet> {
        let ttl = check_set_options(options, self.default_ttl)?.map(ttl_millis);
        let idle = options.idle.or(self.default_idle).map(ttl_millis);
        let stored = format::encode_tagged(value, options.metadata.as_ref(), &options.tags)?;
        Ok(EncodedSet { stored, ttl, idle, tags: options.tags.clone() })
    }

    /// The second half of [`set_checked`](Self::set_checked): the write.
    pub(crate) async fn set_encoded(&self, key: Key<'_>, encoded: EncodedSet) -> Result<()> {
        if !encoded.tags.is_empty() {
            // Written, then listed, in one round trip (see `tags.rs`).
            return self.write_tagged("set", key, &encoded.stored, encoded.ttl, encoded.idle, &encoded.tags).await;
        }
        self.write("set", key, &encoded.stored, encoded.ttl, encoded.idle).await
    }

    /// [`CacheStore::delete`] on a checked key.
    pub(crate) async fn delete_checked(&self, key: Key<'_>) -> Result<bool> {
        // A script, not UNLINK: a load's placeholder is deleted (cancelling
        // the load) but is no entry that existed.
        let full = self.space.entry(key).to_vec();
        let existed = self.unlink("delete", self.space.bucket_index(key), &[&full]).await? > 0;
        SharedCounters::add(&self.counters.deletes, u64::from(existed));
        Ok(existed)
    }

    /// [`CacheStore::contains`] on a checked key.
    pub(crate) async fn contains_checked(&self, key: Key<'_>) -> Result<bool> {
        let mut conn = self.conn.clone();
        // TYPE, not EXISTS: a load's placeholder (a hash) is no entry.
        let kind: String =
            self.round_trip("contains", redis::cmd("TYPE").arg(self.space.entry(key)).query_async(&mut conn)).await?;
        Ok(kind == "string")
    }

    /// [`CacheStore::update_metadata`] on a checked key.
    pub(crate) async fn update_metadata_checked(&self, key: Key<'_>, metadata: Metadata) -> Result<bool> {
        check_metadata(&metadata)?;
        let full = self.space.entry(key);
        let mut conn = self.conn.clone();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(current) = self.read("update_metadata", full).await? else {
                return Ok(false);
            };
            let updated = format::merge_metadata(&key, &current, metadata.clone())?;
            let mut call = ScriptCall::new(&self.scripts.replace_if_unchanged, &[full.into()], &[]);
            call.arg(current).arg(updated);
            let written: bool = self.round_trip("update_metadata", call.invoke(&mut conn)).await?;
            if written {
                return Ok(true);
            }
        }
        Err(CacheError::backend(
            ErrorKind::ServerBusy,
            format!(
                "update_metadata on Redis at {}: the entry changed under every one of {UPDATE_ATTEMPTS} attempts",
                self.addr
            ),
            None,
        ))
    }

    /// [`CacheStore::invalidate`] on a checked pattern.
    pub(crate) async fn invalidate_checked(&self, pattern: &Pattern) -> Result<usize> {
        self.check_may_delete_many("invalidate")?;
        let removed = self.walk("invalidate", Some(pattern), true, &mut HashSet::new()).await?;
        SharedCounters::add(&self.counters.deletes, removed as u64);
        Ok(removed)
    }

    /// A counted read's `GET` and the touch of an entry with an idle time
    /// (see `IDLE_FN` in the scripts), in one script. On a cluster whose
    /// slot migrates, a plain `GET` that touches nothing.
    async fn read_idle(&self, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        let full = self.space.entry(key);
        let capacity = self.capacity(self.space.bucket_index(key));
        let expiry = capacity.as_ref().map(|c| c.indexes()[1]);
        let keys: Vec<super::call::Name<'_>> = std::iter::once(full.into()).chain(expiry).collect();
        let call = ScriptCall::new(&self.scripts.get_idle, &keys, &[]);
        let mut conn = self.conn.clone();
        match self.try_round_trip("get", call.invoke::<Option<Vec<u8>>>(&mut conn)).await {
            Err(failure) if self.conn.may_be_migrating(&failure) => self.read("get", full).await,
            other => Ok(other?),
        }
    }

    /// Moves the expiry of the entry under `key`, read with the idle-time
    /// header `head`, if it still has it (a read: see `IDLE_FN`).
    pub(super) async fn touch(&self, key: Key<'_>, head: &[u8]) -> Result<()> {
        let full = self.space.entry(key);
        let capacity = self.capacity(self.space.bucket_index(key));
        let expiry = capacity.as_ref().map(|c| c.indexes()[1]);
        let keys: Vec<super::call::Name<'_>> = std::iter::once(full.into()).chain(expiry).collect();
        let mut call = ScriptCall::new(&self.scripts.touch_idle, &keys, &[]);
        call.arg(head);
        let mut conn = self.conn.clone();
        match self.try_round_trip("get", call.invoke::<u8>(&mut conn)).await {
            // The slot migrates: the value was read, its clock not moved.
            Err(failure) if self.conn.may_be_migrating(&failure) => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// The stored bytes of an entry; `None` if there is none, or only a
    /// load's placeholder (a hash: Redis answers WRONGTYPE, which costs the
    /// usual `GET` nothing).
    pub(super) async fn read(&self, what: &str, full: Entry<'_>) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        match self.try_round_trip(what, redis::cmd("GET").arg(full).query_async(&mut conn)).await {
            Err(failure) if failure.cause == super::failure::Cause::WrongType => Ok(None),
            other => Ok(other?),
        }
    }

    /// Writes the stored bytes of `key`'s entry with its TTL in ms, under the
    /// capacity if there is one: one round trip, and a rebuild of the index
    /// if the write found it lost. Counts a set.
    pub(super) async fn write(
        &self,
        what: &str,
        key: Key<'_>,
        stored: &[u8],
        ttl: Option<u64>,
        idle: Option<u64>,
    ) -> Result<()> {
        self.check_record(false);
        let full = self.space.entry(key);
        let mut conn = self.conn.clone();
        if let Some(capacity) = self.capacity(self.space.bucket_index(key)) {
            let sample = self.sample();
            let [recency, expiry] = capacity.indexes();
            let listening = self.listening();
            let script = if listening { &self.scripts.set_bounded_returning } else { &self.scripts.set_bounded };
            let mut call = ScriptCall::new(script, &[full.into(), recency, expiry], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).capacity(&capacity).arg(flag(sample)).arg(idle.unwrap_or(0));
            if listening {
                let reply: Vec<redis::Value> = self.round_trip(what, call.invoke(&mut conn)).await?;
                let (report, old, evicted) = self.set_reply(what, reply)?;
                SharedCounters::add(&self.counters.sets, 1);
                self.settle(&capacity, report).await;
                self.report_replaced(&key, old);
                self.report_removed(crate::removal::RemovalReason::Evicted, evicted);
                return Ok(());
            }
            let report = Report::new(self.round_trip(what, call.invoke(&mut conn)).await?);
            SharedCounters::add(&self.counters.sets, 1);
            self.settle(&capacity, report).await;
            return Ok(());
        }
        if self.listening() {
            // The idle header too, if any (see `WRITE_ENTRY`).
            let mut call = ScriptCall::new(&self.scripts.set_returning, &[full.into()], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).arg(idle.unwrap_or(0));
            let old: Option<Vec<u8>> = self.round_trip(what, call.invoke(&mut conn)).await?;
            SharedCounters::add(&self.counters.sets, 1);
            self.report_replaced(&key, old);
            return Ok(());
        }
        if let Some(idle) = idle {
            // The idle header holds the TTL deadline on Redis's clock: a script.
            let mut call = ScriptCall::new(&self.scripts.set_idle, &[full.into()], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).arg(idle);
            self.round_trip(what, call.invoke::<()>(&mut conn)).await?;
            SharedCounters::add(&self.counters.sets, 1);
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(full).arg(stored);
        if let Some(ms) = ttl {
            cmd.arg("PX").arg(ms);
        }
        self.round_trip(what, cmd.query_async::<()>(&mut conn)).await?;
        SharedCounters::add(&self.counters.sets, 1);
        Ok(())
    }

    /// Deletes entries (Redis keys, all of bucket `index`), and the
    /// placeholders of loads in progress among them (which cancels those
    /// loads); how many entries existed.
    pub(super) async fn unlink(&self, what: &str, index: usize, full_keys: &[&[u8]]) -> Result<usize> {
        if full_keys.is_empty() {
            return Ok(0);
        }
        // Only a bounded store has indexes to declare (see `DELETE`).
        let capacity = self.capacity(index);
        let indexes = capacity.as_ref().map(Capacity::indexes);
        let declared: &[Name<'_>] = indexes.as_ref().map_or(&[], |indexes| indexes);
        let mut conn = self.conn.clone();
        let listening = self.listening();
        let mut call = ScriptCall::new(&self.scripts.delete, declared, full_keys);
        call.arg(flag(capacity.is_some())).arg(flag(listening));
        if listening {
            let reply: Vec<redis::Value> = self.round_trip(what, call.invoke(&mut conn)).await?;
            return Ok(self.removed_reply(what, reply));
        }
        self.round_trip(what, call.invoke(&mut conn)).await
    }
}

impl<V> CacheStore<V> for RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn get(&self, key: &str) -> Result<Option<V>> {
        self.get_checked(Key::new(key)?).await
    }

    async fn set(&self, key: &str, value: V, options: SetOptions) -> Result<()> {
        self.set_checked(Key::new(key)?, value, options).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.delete_checked(Key::new(key)?).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>> {
        let keys = keys.iter().map(|key| Key::new(key)).collect::<Result<Vec<_>>>()?;
        self.get_many_checked(&keys).await
    }

    async fn set_many(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Result<()> {
        // Every key checked and every value encoded before anything is sent.
        let encoded = entries
            .iter()
            .map(|(key, value)| Ok((Key::new(key)?, self.encode_set(value, &options)?)))
            .collect::<Result<Vec<_>>>()?;
        drop(entries);
        self.set_many_encoded(&encoded).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<usize> {
        let keys = keys.iter().map(|key| Key::new(key)).collect::<Result<Vec<_>>>()?;
        self.delete_many_checked(&keys).await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.contains_checked(Key::new(key)?).await
    }

    async fn get_metadata(&self, key: &str) -> Result<Option<Metadata>> {
        let key = Key::new(key)?;
        let stored = self.read("get_metadata", self.space.entry(key)).await?;
        stored.map(|bytes| format::decode_metadata(&key, &bytes)).transpose()
    }

    async fn update_metadata(&self, key: &str, metadata: Metadata) -> Result<bool> {
        self.update_metadata_checked(Key::new(key)?, metadata).await
    }

    async fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.invalidate_checked(&Pattern::new(pattern)?).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<usize> {
        crate::tags::check_invalidate_tags(tags)?;
        self.invalidate_tags_checked(tags).await
    }

    async fn get_tags(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.get_tags_checked(Key::new(key)?).await
    }

    async fn keys(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        let mut found = HashSet::new();
        self.walk("keys", pattern.as_ref(), false, &mut found).await?;
        Ok(found.into_iter().collect())
    }

    async fn size(&self) -> Result<usize> {
        self.count_entries().await
    }

    async fn clear(&self) -> Result<()> {
        self.check_may_delete_many("clear")?;
        let removed = self.walk("clear", None, true, &mut HashSet::new()).await?;
        SharedCounters::add(&self.counters.deletes, removed as u64);
        Ok(())
    }

    fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> impl Future<Output = Result<V>> + Send
    where
        E: Into<DynError> + 'static,
    {
        // The inherent method (same name; inherent methods come first).
        RedisStore::get_or_refresh(self, key, loader, options)
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_load(Key::new(key)?, loader, options).await
    }

    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    fn reset_stats(&self) {
        self.counters.reset();
    }
}
