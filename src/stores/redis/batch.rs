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
use super::format;
use crate::errors::Result;
use crate::key::Key;
use crate::metrics::SharedCounters;

/// The most entries one call of the delete script lists (Lua's `unpack`
/// takes a few thousand at most): a longer batch sends several, pipelined.
const DELETE_CHUNK: usize = 1_000;

/// The most entries one call of a batch script (LRU reads, bounded sets)
/// handles: a script blocks Redis while it runs, so a long batch is cut
/// into calls of at most this many, pipelined (other clients' commands run
/// between them).
const SCRIPT_CHUNK: usize = 100;

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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let groups = self.by_bucket(keys.iter().copied());
        let read = join_all(groups.iter().map(|(index, positions)| self.read_bucket(*index, keys, positions))).await;
        let mut found: Vec<Option<V>> = (0..keys.len()).map(|_| None).collect();
        let mut expired = 0;
        for ((_, positions), group) in groups.iter().zip(read) {
            let (stored, reclaimed) = group?;
            expired += reclaimed;
            for (&pos, bytes) in positions.iter().zip(stored) {
                if let Some(bytes) = bytes {
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
        Ok(found)
    }

    /// The stored bytes of the entries at `positions` of `keys` (all of
    /// bucket `index`), and how many expired entries the LRU script found.
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
                    stored.push(self.read(what, self.space.entry(keys[pos])).await?);
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
        Ok((stored, expired))
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
        let groups = self.by_bucket(entries.iter().map(|(key, _)| *key));
        let written =
            join_all(groups.iter().map(|(index, positions)| self.write_bucket(*index, entries, positions))).await;
        // Tagged entries are listed once written (see `tags.rs`), each, even
        // when a group failed: listing one that was not written is harmless.
        let tagged = entries.iter().filter(|(_, encoded)| !encoded.tags.is_empty());
        let listed =
            join_all(tagged.map(|(key, encoded)| self.register_written("set_many", *key, &encoded.tags, encoded.ttl)))
                .await;
        written.into_iter().chain(listed).collect()
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
                    call.arg(&encoded.stored).arg(encoded.ttl.unwrap_or(0));
                }
                pipe.push(call);
            }
            self.try_round_trip(what, pipe.invoke::<Vec<(u64, u64, u8)>>(&mut conn)).await
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
                    self.write(what, *key, &encoded.stored, encoded.ttl).await?;
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
        let script = if self.listening() { &self.scripts.delete_returning } else { &self.scripts.delete };
        let mut pipe = ScriptPipe::new(script);
        for chunk in full_keys.chunks(DELETE_CHUNK) {
            let page: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut call = ScriptCall::new(script, declared, &page);
            call.arg(flag(capacity.is_some()));
            pipe.push(call);
        }
        let mut conn = self.conn.clone();
        if self.listening() {
            let replies: Vec<Vec<redis::Value>> = self.round_trip("delete_many", pipe.invoke(&mut conn)).await?;
            return Ok(replies.into_iter().map(|reply| self.removed_reply("delete", reply)).sum());
        }
        let counts: Vec<usize> = self.round_trip("delete_many", pipe.invoke(&mut conn)).await?;
        Ok(counts.into_iter().sum())
    }
}
