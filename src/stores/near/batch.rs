//! The batch calls of [`NearCache`]: `get_many` answers what it can from
//! memory (one lock per shard) and asks Redis for the rest in one round
//! trip (with their remaining TTLs, pipelined on the invalidation
//! connection alongside), filling memory under the same tickets as `get`;
//! `set_many` and `delete_many` write through as `set` and `delete` do,
//! taking the batch's keys out of memory before the write and again after.

use std::time::Instant;

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::NearCache;
use super::local::Scope;
use crate::errors::Result;
use crate::key::Key;
use crate::metrics::SharedCounters;
use crate::store::{CacheStore, SetOptions};

use std::sync::atomic::Ordering;

impl<V> NearCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// [`CacheStore::get_many`].
    pub(super) async fn get_many_through(&self, keys: &[&str]) -> Result<Vec<Option<V>>> {
        self.shared.reentered("get_many")?;
        let checked = keys.iter().map(|key| Key::new(key)).collect::<Result<Vec<_>>>()?;
        if checked.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut found = if self.shared.up.load(Ordering::Acquire) {
            self.shared.memory.get_many(keys).into_inner()?
        } else {
            vec![None; checked.len()]
        };
        let missing: Vec<usize> = (0..found.len()).filter(|&pos| found[pos].is_none()).collect();
        // Counted once the batch succeeds: a failed batch counts nothing.
        let (hits, misses) = ((found.len() - missing.len()) as u64, missing.len() as u64);
        if !missing.is_empty() {
            let asking: Vec<Key<'_>> = missing.iter().map(|&pos| checked[pos]).collect();
            // Taken before Redis is read, as `get` does: an invalidation
            // between the read and the fill refuses the fill.
            let tickets: Vec<_> = asking.iter().map(|key| self.shared.ticket(key)).collect();
            let conn = tickets.iter().flatten().next().map(|(_, conn)| conn.clone());
            let asked = Instant::now();
            let (values, pttls) = tokio::join!(self.redis.get_many_checked_idle(&asking), self.pttls(conn, &asking));
            let (values, idle) = values?;
            for (i, value) in values.into_iter().enumerate() {
                // An entry with a time-to-idle is not kept in memory (see `get_uncounted`).
                if let (Some(value), Some((ticket, _)), false) = (&value, tickets[i].as_ref(), idle[i]) {
                    self.fill(asking[i], *ticket, value.clone(), pttls[i], asked);
                }
                found[missing[i]] = value;
            }
        }
        SharedCounters::add(&self.own.hits, hits);
        SharedCounters::add(&self.own.misses, misses);
        let per_key = started.elapsed().as_nanos() / checked.len() as u128;
        self.own.record_latency(u64::try_from(per_key).unwrap_or(u64::MAX));
        Ok(found)
    }

    /// The remaining TTLs of `keys` in Redis (as [`pttl`](Self::pttl)), one
    /// pipeline on the invalidation connection; `None` for each without a
    /// connection or an answer in time.
    async fn pttls(&self, conn: Option<MultiplexedConnection>, keys: &[Key<'_>]) -> Vec<Option<i64>> {
        let none = || vec![None; keys.len()];
        let Some(mut conn) = conn else { return none() };
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("PTTL").arg([&*self.shared.prefix, key.as_bytes()].concat());
        }
        match tokio::time::timeout(self.response_timeout, pipe.query_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(pttls)) if pttls.len() == keys.len() => pttls.into_iter().map(Some).collect(),
            _ => none(),
        }
    }

    /// [`CacheStore::set_many`].
    pub(super) async fn set_many_through(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Result<()> {
        self.shared.reentered("set_many")?;
        // Checked and encoded before the write-through takes the keys out of memory.
        let encoded = entries
            .iter()
            .map(|(key, value)| Ok((Key::new(key)?, self.redis.encode_set(value, &options)?)))
            .collect::<Result<Vec<_>>>()?;
        if encoded.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
        let write = async {
            drop(entries);
            self.redis.set_many_encoded(&encoded).await
        };
        self.write_through(Scope::Keys(&keys), write, |_| true).await
    }

    /// [`CacheStore::delete_many`].
    pub(super) async fn delete_many_through(&self, keys: &[&str]) -> Result<usize> {
        self.shared.reentered("delete_many")?;
        let checked = keys.iter().map(|key| Key::new(key)).collect::<Result<Vec<_>>>()?;
        if checked.is_empty() {
            return Ok(0);
        }
        // Nothing deleted, nothing for Redis to invalidate: no wait.
        let delete = self.redis.delete_many_checked(&checked);
        self.write_through(Scope::Keys(keys), delete, |done| !matches!(done, Ok(0))).await
    }
}
