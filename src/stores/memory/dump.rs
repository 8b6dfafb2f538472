//! Warm restart: [`MemoryStore::dump`] and [`MemoryStore::load`], and the
//! serde form they share ([`Dump`], [`DumpEntry`]).

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::MemoryStore;
use super::engine::{Restored, Snapshot};
use super::reentry::{read, write};
use crate::errors::Result;
use crate::key::Key;
use crate::store::{Metadata, check_metadata, effective_ttl};

/// The live entries of a [`MemoryStore`], coldest first, as
/// [`MemoryStore::dump`] takes them and [`MemoryStore::load`] puts them
/// back: serialize it with any serde format (JSON, bincode, ...).
///
/// Fields an entry may lack (TTL, idle time, metadata, tags, ...) get serde
/// defaults, so a dump written before they existed still loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Dump<V> {
    /// When the dump was taken, in milliseconds since the Unix epoch (the
    /// wall clock): [`load`](MemoryStore::load) takes the time since then
    /// off every entry's TTL.
    pub taken_at_ms: u64,
    /// The entries, coldest first: the entry the policy would evict first
    /// comes first, the one it would keep longest comes last.
    pub entries: Vec<DumpEntry<V>>,
    /// Whether the store had evicted an entry yet (S3-FIFO fills its main
    /// queue directly until its first eviction).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evicted: bool,
}

/// One entry of a [`Dump`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DumpEntry<V> {
    /// The key.
    pub key: String,
    /// The value.
    pub value: V,
    /// The TTL left when the dump was taken; `None` if the entry never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Its time-to-idle, if it has one (its idle clock starts again at the
    /// load, as if just read); `None` takes the policy's, as a `set` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    /// Its metadata, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Its tags, in the order set (see [`SetOptions::tags`](crate::store::SetOptions::tags)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// S3-FIFO's access count (0 to 3: reads since it entered its queue, as
    /// far as the policy counts them); 0 under LRU and TTL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hits: u8,
    /// On S3-FIFO's small (probationary) queue rather than its main one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probation: bool,
}

/// An entry of a load, with its hash and its TTL from now.
type ToRestore<V> = (u64, Option<Duration>, DumpEntry<V>);

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl<V> DumpEntry<V> {
    /// An entry with no TTL, no metadata, not yet read: set it up with the
    /// public fields (`ttl`, `metadata`, ...), for a dump made by hand.
    pub fn new(key: impl Into<String>, value: V) -> Self {
        DumpEntry {
            key: key.into(),
            value,
            ttl: None,
            idle: None,
            metadata: None,
            tags: Vec::new(),
            hits: 0,
            probation: false,
        }
    }
}

impl<V> Dump<V> {
    /// A dump of `entries` (coldest first) taken now.
    pub fn new(entries: Vec<DumpEntry<V>>) -> Self {
        Dump { taken_at_ms: wall_ms(), entries, evicted: false }
    }
}

/// The wall clock, in milliseconds since the Unix epoch.
fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// Takes every live entry (its value cloned), coldest first: under LRU
    /// the least recently used first; under TTL the least recently set first
    /// (TTL evicts the soonest to expire; the set order breaks ties); under
    /// S3-FIFO the small queue oldest first, then the main queue oldest
    /// first, each with its access count. Each entry carries the TTL it has
    /// left, its idle time, its metadata and its tags; expired entries are
    /// left out (and reclaimed).
    ///
    /// Each shard's lock is taken once, so the dump of a shard is a
    /// consistent snapshot even while other threads write (a store of one
    /// shard: of the whole store); the shards are merged by rank (the
    /// coldest part of each first). Loading the dump in order into a store
    /// with the same policy rebuilds that order
    /// ([`load`](Self::load)). Nothing is counted as a read.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions, stores::Dump};
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::new(LruPolicy::new(100)?);
    /// store.set("a", 1u32, SetOptions::new()).into_inner()?;
    /// store.set("b", 2u32, SetOptions::new().ttl(Duration::from_secs(60))).into_inner()?;
    /// store.get("a").into_inner()?; // now the most recently used
    ///
    /// let json = serde_json::to_string(&store.dump()?).unwrap();
    /// let dump: Dump<u32> = serde_json::from_str(&json).unwrap();
    /// let keys: Vec<&str> = dump.entries.iter().map(|e| e.key.as_str()).collect();
    /// assert_eq!(keys, ["b", "a"], "coldest first");
    ///
    /// let restarted = MemoryStore::new(LruPolicy::new(100)?);
    /// assert_eq!(restarted.load(dump)?, 2);
    /// assert_eq!(restarted.get("a").into_inner()?, Some(1));
    /// assert!(restarted.get_metadata("b").into_inner()?.is_some());
    /// # Ok::<(), pepperpy_caching::CacheError>(())
    /// ```
    ///
    /// # Errors
    /// [`CacheError::ReentrantValue`](crate::errors::CacheError::ReentrantValue) when called from a value's `Clone` or
    /// `Drop` run by this store.
    pub fn dump(&self) -> Result<Dump<V>> {
        self.reentered("dump")?;
        let taken_at_ms = wall_ms();
        let mut shards: Vec<(crate::clock::Nanos, bool, Vec<Snapshot<V>>)> = Vec::with_capacity(self.shards.len());
        for shard in self.shards.iter() {
            let mut engine = write(shard);
            let snapshot = engine.snapshot();
            self.release(engine);
            shards.push(snapshot);
        }
        // Merged by rank: the i-th of a shard of n entries at (i + 1) / n.
        let mut ranked: Vec<(f64, DumpEntry<V>)> = Vec::with_capacity(shards.iter().map(|s| s.2.len()).sum());
        let mut evicted = false;
        for (now, evicted_here, entries) in shards {
            evicted |= evicted_here;
            let n = entries.len() as f64;
            for (i, e) in entries.into_iter().enumerate() {
                let ttl = (e.expires_at != crate::clock::Nanos::MAX)
                    .then(|| Duration::from_nanos(e.expires_at.saturating_sub(now).max(1)));
                let entry = DumpEntry {
                    key: e.key.into(),
                    value: e.value,
                    ttl,
                    idle: e.idle,
                    metadata: e.metadata,
                    tags: e.tags,
                    hits: e.hits,
                    probation: e.probation,
                };
                ranked.push(((i + 1) as f64 / n, entry));
            }
        }
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Dump { taken_at_ms, entries: ranked.into_iter().map(|(_, e)| e).collect(), evicted })
    }

    /// Puts the entries of `dump` back, in order (coldest first, as
    /// [`dump`](Self::dump) takes them), each as the hottest entry of its
    /// queue so far; how many it stored. Into a store with the same policy
    /// and capacity this rebuilds the dumped order (which entry the next
    /// insert evicts); into a smaller one, each entry past the capacity
    /// evicts as the policy does, so the store keeps the entries the policy
    /// would keep (under LRU, the most recently used). A key the store holds
    /// already is replaced.
    ///
    /// The time since the dump was taken ([`Dump::taken_at_ms`], by the wall
    /// clock) is taken off every TTL: an entry whose TTL ran out meanwhile
    /// is skipped. An entry without a TTL gets the policy's default TTL, as
    /// a `set` does. A store of several shards splits its capacity between
    /// them and seeds its key hash afresh, so a full sharded store's dump
    /// loaded into a store built the same way may not fit every shard: the
    /// over-full shards evict (about 2% of 800 entries over 8 shards in one
    /// test); a store with some headroom, or one shard, keeps them all.
    /// Entries are counted as sets; a removal listener hears
    /// of what the load replaced or evicted.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, stores::{Dump, DumpEntry}};
    ///
    /// let mut entry = DumpEntry::new("greeting", "hello".to_string());
    /// entry.ttl = Some(std::time::Duration::from_secs(60));
    /// let store = MemoryStore::new(LruPolicy::new(10)?);
    /// assert_eq!(store.load(Dump::new(vec![entry]))?, 1);
    /// assert_eq!(store.get("greeting").into_inner()?.as_deref(), Some("hello"));
    ///
    /// // Bad input changes nothing.
    /// let bad = Dump::new(vec![DumpEntry::new("ok", "x".to_string()), DumpEntry::new("", "y".to_string())]);
    /// assert!(store.load(bad).is_err());
    /// assert_eq!(store.get("ok").into_inner()?, None);
    /// # Ok::<(), pepperpy_caching::CacheError>(())
    /// ```
    ///
    /// # Errors
    /// Checked for every entry before any is stored, so that a failed load
    /// changes nothing: [`CacheError::Key`](crate::errors::CacheError::Key) for a bad key, `Policy` for a
    /// zero TTL or idle time and for bad tags (as [`SetOptions::tags`](crate::store::SetOptions::tags)
    /// refuses them), `Serialization` for metadata nested too deep, and
    /// `ReentrantValue` as for any call.
    pub fn load(&self, dump: Dump<V>) -> Result<usize> {
        self.reentered("load")?;
        let default_ttl = self.policy.default_ttl();
        for entry in &dump.entries {
            Key::new(&entry.key)?;
            // The checks of a `set`: a zero TTL, metadata nested too deep.
            effective_ttl(entry.ttl, default_ttl)?;
            if let Some(idle) = entry.idle {
                crate::policies::check_idle(idle)?;
            }
            if let Some(metadata) = &entry.metadata {
                check_metadata(metadata)?;
            }
            if !entry.tags.is_empty() {
                crate::tags::check_entry_tags(&entry.tags)?;
            }
        }
        let down = Duration::from_millis(wall_ms().saturating_sub(dump.taken_at_ms));
        let evicted = dump.evicted;
        // Grouped by shard, in order, so each shard's lock is taken once.
        let mut by_shard: Vec<Vec<ToRestore<V>>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for entry in dump.entries {
            let ttl = match entry.ttl.or(default_ttl) {
                Some(ttl) if ttl <= down && entry.ttl.is_some() => continue,
                Some(ttl) if entry.ttl.is_some() => Some(ttl - down),
                ttl => ttl,
            };
            let hash = self.hasher.hash_one(entry.key.as_str());
            by_shard[self.shard_index(hash)].push((hash, ttl, entry));
        }
        // A weighed store: every entry weighed first (under its shard's read
        // lock, as `set_many` does), so one heavier than the capacity fails
        // the load before anything changed.
        for (index, entries) in by_shard.iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            let engine = read(&self.shards[index]);
            if engine.weighs() {
                for (_, _, e) in entries {
                    engine.check_weight(&e.key, &e.value)?;
                }
            }
        }
        let mut stored = 0;
        let mut failed = None;
        for (index, entries) in by_shard.into_iter().enumerate() {
            if entries.is_empty() || failed.is_some() {
                continue;
            }
            let mut removed = Vec::new();
            let mut engine = write(&self.shards[index]);
            if evicted {
                engine.mark_evicted();
            }
            for (hash, ttl, e) in entries {
                let key = Key::new(&e.key).expect("checked above");
                let entry = Restored {
                    value: e.value,
                    ttl,
                    idle: e.idle,
                    metadata: e.metadata,
                    tags: e.tags,
                    hits: e.hits,
                    probation: e.probation,
                };
                // Fails only if the weigher answers otherwise than when
                // checked: what was loaded stays, as with `set`s.
                match engine.restore(key, hash, entry) {
                    Ok(gone) => removed.push((e.key, gone)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                stored += 1;
            }
            self.release(engine);
            for (key, gone) in removed {
                self.dispose_write(gone, &key);
            }
        }
        failed.map_or(Ok(stored), Err)
    }
}
