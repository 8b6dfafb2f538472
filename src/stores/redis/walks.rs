//! The calls over many keys of [`RedisStore`] (`keys`, `size`, `invalidate`,
//! `clear`: walks of the prefix a SCAN page at a time, on every master of a
//! cluster), and the rebuild of a bucket's lost index (a walk of the
//! bucket). Patterns never reach Redis: see `keyspace`.

use std::collections::HashSet;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::call::{Capacity, Report, ScriptCall};
use super::conn::{self, Node, Topology};
use crate::errors::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;
use crate::remote::keyspace;

use crate::remote::{SIZE_CONCURRENCY, SLOT_LIST_MAX, WALK_BATCH as BATCH};
/// How often a walk over a cluster's masters starts again because slots
/// moved while it ran (or waits for a slot's migration to end), before it
/// fails: with [`WALK_RETRY_WAIT`], about 8 s of migrations.
const WALK_ATTEMPTS: usize = 40;
/// The first wait for a slot's migration to end; later ones are longer.
const WALK_RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Acts on what a bounded write's script reported about its bucket's
    /// index: counts what it expired and evicted, and rebuilds the index if
    /// it was lost.
    pub(super) async fn settle(&self, capacity: &Capacity<'_>, report: Report) {
        self.count(report);
        if report.lost {
            self.rebuild_index(capacity).await;
        }
    }

    /// Rebuilds the lost index of `capacity`'s bucket: adopts every entry of the
    /// bucket, a SCAN page at a time (on a cluster, on the master of the
    /// bucket's slot only: the bucket's keys are all there), and evicts down
    /// to its share of the capacity. Best effort: the `set` that asked has
    /// been applied, so a failure here is not its failure; the sentinel is
    /// removed again so that a later `set` retries.
    pub(super) async fn rebuild_index(&self, capacity: &Capacity<'_>) {
        let bucket = capacity.bucket;
        let scan_match = self.space.scan_match(None, Some(capacity.index));
        let slot = keyspace::slot(&bucket.recency);
        let outcome: Result<()> = async {
            // On a cluster the bucket's keys are exactly its slot's (with
            // other stores' keys whose tags share the slot): a slot holding
            // few keys is listed directly, so a new bucket (its first set
            // finds no index either) costs two small commands, not a walk of
            // the master.
            let mut conn = self.conn.clone();
            if let Some(count) = self.round_trip("set", conn.count_keys_in_slot(slot)).await?
                && count <= SLOT_LIST_MAX
            {
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("GETKEYSINSLOT").arg(slot).arg(count);
                let listed: Vec<Vec<u8>> = self.round_trip("set", conn.on_slot(slot, &cmd)).await?;
                let mine: Vec<&[u8]> =
                    listed.iter().filter(|raw| self.space.user_key(raw, None).is_some()).map(Vec::as_slice).collect();
                for page in mine.chunks(BATCH) {
                    if self.adopt(capacity, page).await? {
                        return Ok(());
                    }
                }
                return Ok(());
            }
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(&scan_match).arg("COUNT").arg(BATCH).arg("TYPE").arg("string");
                let mut conn = self.conn.clone();
                let (next, page): (u64, Vec<Vec<u8>>) = self.round_trip("set", conn.on_slot(slot, &cmd)).await?;
                let mine: Vec<&[u8]> =
                    page.iter().filter(|raw| self.space.user_key(raw, None).is_some()).map(Vec::as_slice).collect();
                if !mine.is_empty() && self.adopt(capacity, &mine).await? {
                    return Ok(());
                }
                cursor = next;
                if cursor == 0 {
                    return Ok(());
                }
            }
        }
        .await;
        if outcome.is_err() {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("ZREM");
            let forget = cmd.arg(capacity.members()).arg("").query_async::<redis::Value>(&mut conn);
            let _ = tokio::time::timeout(self.round_trip_timeout, forget).await;
        }
    }

    /// Adopts a page of bucket `index`'s entries into its rebuilt index
    /// (`ADOPT`); whether the index was lost again meanwhile (the rebuild
    /// then stops: the set that notices starts a new one).
    async fn adopt(&self, capacity: &Capacity<'_>, page: &[&[u8]]) -> Result<bool> {
        let mut call = ScriptCall::new(&self.scripts.adopt, &capacity.indexes(), page);
        call.capacity(capacity);
        let mut conn = self.conn.clone();
        let (_adopted, evicted, expired, lost): (u64, u64, u64, u8) =
            self.round_trip("set", call.invoke(&mut conn)).await?;
        let report = Report::new((expired, evicted, lost));
        self.count(report);
        Ok(report.lost)
    }

    /// Who serves which slots (empty for a single Redis), under the timeout.
    async fn topology(&self, what: &str) -> Result<Topology> {
        let mut conn = self.conn.clone();
        self.round_trip(what, conn.topology()).await
    }

    /// One SCAN page on `node` (a cluster's master; `None` for a single
    /// Redis): the next cursor and the raw keys. With `entries_only`, only
    /// strings (`TYPE string`): entries, not the placeholders of loads in
    /// progress (hashes); deleting walks see both.
    async fn scan_page(
        &self,
        what: &str,
        node: Option<&Node>,
        cursor: u64,
        scan_match: &[u8],
        entries_only: bool,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(scan_match).arg("COUNT").arg(BATCH);
        if entries_only {
            cmd.arg("TYPE").arg("string");
        }
        self.round_trip(what, conn.on_node(node, &cmd)).await
    }

    /// Deletes a SCAN page's entries that match `pattern`: one call per
    /// bucket among them (a cluster's buckets are in different slots).
    async fn unlink_page(&self, what: &str, page: &[Vec<u8>], pattern: Option<&Pattern>) -> Result<usize> {
        let mut by_bucket: Vec<(usize, Vec<&[u8]>)> = Vec::new();
        for raw in page {
            let Some(key) = self.space.user_key(raw, pattern) else { continue };
            let index = self.space.bucket_index(key);
            match by_bucket.iter_mut().find(|(i, _)| *i == index) {
                Some((_, keys)) => keys.push(raw),
                None => by_bucket.push((index, vec![raw.as_slice()])),
            }
        }
        let mut removed = 0;
        for (index, keys) in &by_bucket {
            removed += self.unlink(what, *index, keys).await?;
        }
        Ok(removed)
    }

    /// Refuses `invalidate` and `clear` on an empty prefix unless the
    /// builder allowed the whole database.
    pub(super) fn check_may_delete_many(&self, what: &str) -> Result<()> {
        if self.space.prefix().is_empty() && !self.whole_database {
            return Err(CacheError::Policy(format!(
                "{what} on a RedisStore without a prefix could delete keys that are not the store's; give the store \
                 a prefix, or allow it with RedisStoreBuilder::whole_database(true) if the database is its alone"
            )));
        }
        Ok(())
    }

    /// Walks the entries matching `pattern` (all when `None`) a SCAN page at a
    /// time, on every master of a cluster; with `delete`, deletes each page
    /// and returns how many existed, otherwise collects the user keys into
    /// `found`. On a cluster, a walk during which slots moved (a SCAN cursor
    /// does not follow them) is done again, up to [`WALK_ATTEMPTS`] times.
    pub(super) async fn walk(
        &self,
        what: &str,
        pattern: Option<&Pattern>,
        delete: bool,
        found: &mut HashSet<String>,
    ) -> Result<usize> {
        let mut removed = 0;
        let mut topology = self.topology(what).await?;
        for attempt in 0..WALK_ATTEMPTS {
            if topology.moving {
                // Keys of a migrating slot are on two masters, moving from one
                // to the other: a walk could pass both without seeing them.
                tokio::time::sleep(WALK_RETRY_WAIT.saturating_mul(attempt.min(10) as u32 + 1)).await;
                topology = self.topology(what).await?;
                continue;
            }
            // Every master at once: a walk costs the slowest master's pages.
            let masters = conn::masters(&topology);
            let walks = masters.iter().map(|node| async move {
                let mut found = HashSet::new();
                let removed = self.walk_node(what, node.as_ref(), pattern, delete, &mut found).await?;
                Ok::<_, CacheError>((removed, found))
            });
            for walked in futures_util::future::join_all(walks).await {
                let (count, keys) = walked?;
                removed += count;
                found.extend(keys);
            }
            let now = self.topology(what).await?;
            if now == topology {
                return Ok(removed);
            }
            topology = now;
        }
        Err(CacheError::backend(
            ErrorKind::ServerBusy,
            format!(
                "{what} on Redis at {}: the cluster's slots kept moving during {WALK_ATTEMPTS} attempts",
                self.addr
            ),
            None,
        ))
    }

    /// [`walk`](Self::walk) on one node. A page's delete and the next SCAN go
    /// out together on the multiplexed connection, so a walk costs one round
    /// trip per page, not two.
    async fn walk_node(
        &self,
        what: &str,
        node: Option<&Node>,
        pattern: Option<&Pattern>,
        delete: bool,
        found: &mut HashSet<String>,
    ) -> Result<usize> {
        let scan_match = self.space.scan_match(pattern, None);
        let mut removed = 0;
        let (mut cursor, mut page) = self.scan_page(what, node, 0, &scan_match, !delete).await?;
        loop {
            let next_page = async {
                if cursor == 0 {
                    Ok((0, Vec::new()))
                } else {
                    self.scan_page(what, node, cursor, &scan_match, !delete).await
                }
            };
            if delete {
                let (unlinked, next) = tokio::join!(self.unlink_page(what, &page, pattern), next_page);
                removed += unlinked?;
                (cursor, page) = next?;
            } else {
                found.extend(
                    page.iter().filter_map(|raw| self.space.user_key(raw, pattern)).map(|key| key.as_str().to_owned()),
                );
                if cursor == 0 {
                    return Ok(removed);
                }
                (cursor, page) = next_page.await?;
                continue;
            }
            if cursor == 0 && page.is_empty() {
                return Ok(removed);
            }
        }
    }

    /// [`CacheStore::size`](crate::store::CacheStore::size): with a capacity,
    /// by every bucket's index; without one (or with an index missing), by a
    /// walk.
    pub(super) async fn count_entries(&self) -> Result<usize> {
        if let Some((_, lru)) = self.bound {
            // Every bucket's index, [`SIZE_CONCURRENCY`] at a time (one on a
            // single Redis): each call's timer starts when it is sent.
            let mut total = Some(0usize);
            for chunk in self.space.buckets().chunks(SIZE_CONCURRENCY) {
                let counts = chunk.iter().map(|bucket| async move {
                    let members = if lru { &bucket.recency } else { &bucket.expiry };
                    let call =
                        ScriptCall::new(&self.scripts.size_bounded, &[members.into(), (&bucket.expiry).into()], &[]);
                    let mut conn = self.conn.clone();
                    self.round_trip("size", call.invoke::<i64>(&mut conn)).await
                });
                for counted in futures_util::future::join_all(counts).await {
                    // -1: no index (new, or lost until the next set rebuilds it): count by walking.
                    total = total.zip(usize::try_from(counted?).ok()).map(|(a, b)| a + b);
                }
                if total.is_none() {
                    break;
                }
            }
            if let Some(n) = total {
                return Ok(n);
            }
        }
        let mut found = HashSet::new();
        self.walk("size", None, false, &mut found).await?;
        Ok(found.len())
    }
}
