//! The batch calls of [`RedisStore`]: `get_many`, `set_many` and
//! `delete_many`, on checked keys (the near cache's interface too).
//!
//! The keys are grouped by bucket: a single Redis has one, so a batch is one
//! pipeline, one round trip; on a cluster each bucket is one slot, so each
//! group is one pipeline (redis-rs routes a pipeline to one slot, and no
//! command spans two), and the groups are all sent at once: redis-rs writes
//! those of one master on its one connection to it, so the batch takes
//! about one round trip per master, the masters in parallel.
//!
//! Each group runs what the single-key calls run: `GET`s as one `MGET`,
//! `SET`s, the delete script over many keys, and the batch forms of the LRU
//! read script and the bounded set script (the same Lua, run for each entry
//! in turn, `SCRIPT_CHUNK` entries a call): so the capacity, the indexes
//! and the loads in flight are kept exactly as by those calls. Measured
//! against a pipeline of the single-key scripts (100 keys, one run, load
//! average 10 on 2 cores): bounded `set_many` 7.8-8.0 µs a key against
//! 19.8-25.6, LRU `get_many` 14.3-15.0 against 14.9-15.9 (each key's Lua
//! work dominates there). While a slot migrates, a group that Redis refuses
//! or redirects falls back to the single-key calls, one key at a time, as
//! those calls do.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::call::{Name, Report, ScriptCall, ScriptPipe, flag};
use super::entries::EncodedSet;
use crate::errors::Result;
use crate::key::Key;
use crate::metrics::SharedCounters;
use crate::remote::format;

use crate::remote::{DELETE_CHUNK, SCRIPT_CHUNK};

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The positions of `keys` grouped by bucket, in the order given within
    /// a group (so that of a key written twice, the last write stays).
    fn by_bucket<'k>(&self, keys: impl ExactSizeIterator<Item = Key<'k>>) -> Vec<(usize, Vec<usize>)> {
        if self.space.buckets().len() == 1 {
            return vec![(0, (0..keys.len()).collect())];
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (pos, key) in keys.enumerate() {
            groups.entry(self.space.bucket_index(key)).or_default().push(pos);
        }
        groups.into_iter().collect()
    }

    /// [`CacheStore::get_many`](crate::store::CacheStore::get_many) on checked keys.
    pub(crate) async fn get_many_checked(&self, keys: &[Key<'_>]) -> Result<Vec<Option<V>>> {
        self.get_many_checked_idle(keys).await.map(|(found, _)| found)
    }

    /// [`get_many_checked`](Self::get_many_checked), and for each key
    /// whether the entry found has a time-to-idle (the near cache keeps no
    /// copy of those, as for `get_checked_idle`).
    pub(crate) async fn get_many_checked_idle(&self, keys: &[Key<'_>]) -> Result<(Vec<Option<V>>, Vec<bool>)> {
        if keys.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let started = Instant::now();
        let groups = self.by_bucket(keys.iter().copied());
        let read = join_all(groups.iter().map(|(index, positions)| self.read_bucket(*index, keys, positions))).await;
        let mut found: Vec<Option<V>> = (0..keys.len()).map(|_| None).collect();
        let mut idle = vec![false; keys.len()];
        let mut expired = 0;
        for ((_, positions), group) in groups.iter().zip(read) {
            let (stored, reclaimed) = group?;
            expired += reclaimed;
            for (&pos, bytes) in positions.iter().zip(stored) {
                if let Some(bytes) = bytes {
                    idle[pos] = format::idle_header(&bytes).is_some();
                    found[pos] = Some(format::decode_value(&keys[pos], &bytes)?);
                }
            }
        }
        let hits = found.iter().filter(|v| v.is_some()).count() as u64;
        SharedCounters::add(&self.counters.hits, hits);
        SharedCounters::add(&self.counters.misses, keys.len() as u64 - hits);
        SharedCounters::add(&self.counters.expirations, expired);
        // Each key's share of the batch's time, as one sample.
        let per_key = started.elapsed().as_nanos() / keys.len() as u128;
        self.counters.record_latency(u64::try_from(per_key).unwrap_or(u64::MAX));
        Ok((found, idle))
    }

    /// The stored bytes of the entries at `positions` of `keys` (all of
    /// bucket `index`), and how many expired entries the LRU script found.
    /// Each entry found is read as `get` reads it: an entry with an idle
    /// time has its expiry moved (the LRU script and, under a policy's
    /// default idle time, the idle read script do it in the same call; after
    /// an `MGET`, the entries found with an idle header are touched in one
    /// more round trip, which a batch without them does not make).
    async fn read_bucket(
        &self,
        index: usize,
        keys: &[Key<'_>],
        positions: &[usize],
    ) -> Result<(Vec<Option<Vec<u8>>>, u64)> {
        let what = "get_many";
        let mut conn = self.conn.clone();
        let mut expired = 0;
        let sent = if self.refresh_on_get {
            // The LRU read script over the group, SCRIPT_CHUNK entries a call.
            let bucket = &self.space.buckets()[index];
            let script = &self.scripts.get_lru_many;
            let mut pipe = ScriptPipe::new(script);
            for chunk in positions.chunks(SCRIPT_CHUNK) {
                let mut names: Vec<Name<'_>> = vec![(&bucket.recency).into(), (&bucket.expiry).into()];
                names.extend(chunk.iter().map(|&pos| Name::from(self.space.entry(keys[pos]))));
                pipe.push(ScriptCall::new(script, &names, &[]));
            }
            let calls = self.try_round_trip(what, pipe.invoke::<Vec<Vec<redis::Value>>>(&mut conn)).await;
            calls.map(|calls| {
                let mut replies = Vec::with_capacity(positions.len());
                for call in calls {
                    let mut call = call.into_iter();
                    if let Some(redis::Value::Int(dropped)) = call.next() {
                        expired += dropped.unsigned_abs();
                    }
                    replies.extend(call);
                }
                replies
            })
        } else if self.default_idle.is_some() {
            // Every entry has an idle time: each read with its touch (as `get`).
            let capacity = self.capacity(index);
            let expiry = capacity.as_ref().map(|c| c.indexes()[1]);
            let script = &self.scripts.get_idle;
            let mut pipe = ScriptPipe::new(script);
            for &pos in positions {
                let names: Vec<Name<'_>> =
                    std::iter::once(Name::from(self.space.entry(keys[pos]))).chain(expiry).collect();
                pipe.push(ScriptCall::new(script, &names, &[]));
            }
            self.try_round_trip(what, pipe.invoke::<Vec<redis::Value>>(&mut conn)).await
        } else {
            // MGET answers nil for a load's placeholder (a hash): a miss, as for `get`.
            let mut cmd = redis::cmd("MGET");
            for &pos in positions {
                cmd.arg(self.space.entry(keys[pos]));
            }
            self.try_round_trip(what, cmd.query_async::<Vec<redis::Value>>(&mut conn)).await
        };
        let replies = match sent {
            // A slot migrating (see `get_checked`): plain GETs, one key at a
            // time, which follow the migration.
            Err(failure) if self.conn.may_be_migrating(&failure) => {
                let mut stored = Vec::with_capacity(positions.len());
                for &pos in positions {
                    let bytes = self.read(what, self.space.entry(keys[pos])).await?;
                    if let Some(head) = bytes.as_deref().and_then(format::idle_header) {
                        self.touch(keys[pos], head).await?;
                    }
                    stored.push(bytes);
                }
                return Ok((stored, 0));
            }
            other => other?,
        };
        if replies.len() != positions.len() {
            return Err(self.unexpected(what, replies));
        }
        let mut stored = Vec::with_capacity(positions.len());
        for reply in replies {
            stored.push(match reply {
                redis::Value::BulkString(bytes) => Some(bytes),
                redis::Value::Int(n) => {
                    expired += n.unsigned_abs();
                    None
                }
                redis::Value::Nil => None,
                other => return Err(self.unexpected(what, other)),
            });
        }
        if !self.refresh_on_get && self.default_idle.is_none() {
            self.touch_many(index, keys, positions, &stored).await?;
        }
        Ok((stored, expired))
    }

    /// After an `MGET` of the entries at `positions` of `keys` (bucket
    /// `index`) read as `stored`: moves the expiry of each found with an
    /// idle-time header, as `get`'s touch does, in one pipeline; nothing
    /// sent if none has one.
    async fn touch_many(
        &self,
        index: usize,
        keys: &[Key<'_>],
        positions: &[usize],
        stored: &[Option<Vec<u8>>],
    ) -> Result<()> {
        let heads: Vec<(usize, &[u8])> = positions
            .iter()
            .zip(stored)
            .filter_map(|(&pos, bytes)| Some((pos, format::idle_header(bytes.as_deref()?)?)))
            .collect();
        if heads.is_empty() {
            return Ok(());
        }
        let capacity = self.capacity(index);
        let expiry = capacity.as_ref().map(|c| c.indexes()[1]);
        let script = &self.scripts.touch_idle;
        let mut pipe = ScriptPipe::new(script);
        for &(pos, head) in &heads {
            let names: Vec<Name<'_>> = std::iter::once(Name::from(self.space.entry(keys[pos]))).chain(expiry).collect();
            let mut call = ScriptCall::new(script, &names, &[]);
            call.arg(head);
            pipe.push(call);
        }
        let mut conn = self.conn.clone();
        match self.try_round_trip("get_many", pipe.invoke::<Vec<u8>>(&mut conn)).await {
            // The slot migrates: the values were read, their clocks not moved (as `touch`).
            Err(failure) if self.conn.may_be_migrating(&failure) => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// [`CacheStore::set_many`](crate::store::CacheStore::set_many) on
    /// checked keys and encoded values ([`encode_set`](Self::encode_set)).
    /// Every group is written (or fails) before the call returns; the first
    /// failure is reported.
    pub(crate) async fn set_many_encoded(&self, entries: &[(Key<'_>, EncodedSet)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.check_record(false);
        if entries.iter().any(|(_, encoded)| !encoded.tags.is_empty()) {
            // Tagged (every entry, as they share the options): each written and
            // listed in one pipeline, as a tagged `set` is (`write_tagged`). A
            // batch written first and listed after left a window in which an
            // `invalidate_tags` missed entries readers already saw. In the
            // order given, every entry tried; the first failure is reported.
            let mut first = Ok(());
            for (key, encoded) in entries {
                let written = self
                    .write_tagged("set_many", *key, &encoded.stored, encoded.ttl, encoded.idle, &encoded.tags)
                    .await;
                if first.is_ok() {
                    first = written;
                }
            }
            return first;
        }
        let groups = self.by_bucket(entries.iter().map(|(key, _)| *key));
        let written =
            join_all(groups.iter().map(|(index, positions)| self.write_bucket(*index, entries, positions))).await;
        written.into_iter().collect()
    }

    /// Writes the entries at `positions` (all of bucket `index`) in one
    /// pipeline; counts a set for each once the pipeline succeeded.
    async fn write_bucket(&self, index: usize, entries: &[(Key<'_>, EncodedSet)], positions: &[usize]) -> Result<()> {
        if self.listening() {
            return self.write_bucket_reporting(index, entries, positions).await;
        }
        let what = "set_many";
        let mut conn = self.conn.clone();
        let capacity = self.capacity(index);
        let sent = if let Some(capacity) = &capacity {
            // The bounded set script over the group, in order, SCRIPT_CHUNK entries a call.
            let [recency, expiry] = capacity.indexes();
            let script = &self.scripts.set_bounded_many;
            let mut pipe = ScriptPipe::new(script);
            for chunk in positions.chunks(SCRIPT_CHUNK) {
                let mut names: Vec<Name<'_>> = vec![recency, expiry];
                names.extend(chunk.iter().map(|&pos| Name::from(self.space.entry(entries[pos].0))));
                let samples: String = chunk.iter().map(|_| flag(self.sample())).collect();
                let mut call = ScriptCall::new(script, &names, &[]);
                call.capacity(capacity).arg(samples);
                for &pos in chunk {
                    let encoded = &entries[pos].1;
                    call.arg(&encoded.stored).arg(encoded.ttl.unwrap_or(0)).arg(encoded.idle.unwrap_or(0));
                }
                pipe.push(call);
            }
            self.try_round_trip(what, pipe.invoke::<Vec<(u64, u64, u8)>>(&mut conn)).await
        } else if positions.iter().any(|&pos| entries[pos].1.idle.is_some()) {
            // Entries with an idle time get their header where Redis's clock
            // is (`set_idle`, which writes the others as `SET` does).
            let script = &self.scripts.set_idle;
            let mut pipe = ScriptPipe::new(script);
            for &pos in positions {
                let (key, encoded) = &entries[pos];
                let mut call = ScriptCall::new(script, &[self.space.entry(*key).into()], &[]);
                call.arg(&encoded.stored).arg(encoded.ttl.unwrap_or(0)).arg(encoded.idle.unwrap_or(0));
                pipe.push(call);
            }
            self.try_round_trip(what, pipe.invoke::<Vec<u8>>(&mut conn)).await.map(|_| Vec::new())
        } else {
            let mut pipe = redis::pipe();
            for &pos in positions {
                let (key, encoded) = &entries[pos];
                let cmd = pipe.cmd("SET").arg(self.space.entry(*key)).arg(&encoded.stored);
                if let Some(ms) = encoded.ttl {
                    cmd.arg("PX").arg(ms);
                }
                cmd.ignore();
            }
            self.try_round_trip(what, pipe.query_async::<()>(&mut conn)).await.map(|()| Vec::new())
        };
        let reports = match sent {
            // A slot migrating: the single-key writes, in the order given.
            Err(failure) if self.conn.may_be_migrating(&failure) => {
                for &pos in positions {
                    let (key, encoded) = &entries[pos];
                    self.write(what, *key, &encoded.stored, encoded.ttl, encoded.idle).await?;
                }
                return Ok(());
            }
            other => other?,
        };
        SharedCounters::add(&self.counters.sets, positions.len() as u64);
        if let Some(capacity) = &capacity {
            let mut lost = false;
            for report in reports {
                let report = Report::new(report);
                self.count(report);
                lost |= report.lost;
            }
            // One rebuild for the group, however many of its writes found the index lost.
            if lost {
                self.settle(capacity, Report { lost, ..Report::default() }).await;
            }
        }
        Ok(())
    }

    /// [`CacheStore::delete_many`](crate::store::CacheStore::delete_many)
    /// on checked keys: how many entries existed. Every group is deleted
    /// (or fails) before the call returns; the first failure is reported.
    pub(crate) async fn delete_many_checked(&self, keys: &[Key<'_>]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        // A key listed twice would be counted twice by the script.
        let mut seen = HashSet::with_capacity(keys.len());
        let keys: Vec<Key<'_>> = keys.iter().copied().filter(|key| seen.insert(key.as_str())).collect();
        let groups = self.by_bucket(keys.iter().copied());
        let deleted = join_all(groups.iter().map(|(index, positions)| {
            let full: Vec<Vec<u8>> = positions.iter().map(|&pos| self.space.entry(keys[pos]).to_vec()).collect();
            async move { self.unlink_many(*index, &full).await }
        }))
        .await;
        let mut existed = 0;
        let mut first_failure = None;
        for group in deleted {
            match group {
                Ok(n) => existed += n,
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        }
        // What was deleted counts, even when another group failed.
        SharedCounters::add(&self.counters.deletes, existed as u64);
        match first_failure {
            Some(e) => Err(e),
            None => Ok(existed),
        }
    }

    /// Deletes `full_keys` (all of bucket `index`) with the delete script,
    /// [`DELETE_CHUNK`] a call, the calls pipelined; how many entries existed.
    async fn unlink_many(&self, index: usize, full_keys: &[Vec<u8>]) -> Result<usize> {
        let capacity = self.capacity(index);
        let indexes = capacity.as_ref().map(|capacity| capacity.indexes());
        let declared: &[Name<'_>] = indexes.as_ref().map_or(&[], |indexes| indexes);
        let script = &self.scripts.delete;
        let listening = self.listening();
        let mut pipe = ScriptPipe::new(script);
        for chunk in full_keys.chunks(DELETE_CHUNK) {
            let page: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut call = ScriptCall::new(script, declared, &page);
            call.arg(flag(capacity.is_some())).arg(flag(listening));
            pipe.push(call);
        }
        let mut conn = self.conn.clone();
        if listening {
            let replies: Vec<Vec<redis::Value>> = self.round_trip("delete_many", pipe.invoke(&mut conn)).await?;
            return Ok(replies.into_iter().map(|reply| self.removed_reply("delete", reply)).sum());
        }
        let counts: Vec<usize> = self.round_trip("delete_many", pipe.invoke(&mut conn)).await?;
        Ok(counts.into_iter().sum())
    }
}
