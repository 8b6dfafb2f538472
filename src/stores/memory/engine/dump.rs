//! Warm restart, the engine's half: a snapshot of the live entries in the
//! policy's order, coldest first (the entry the policy would evict next
//! comes first), and the restore of one entry at the hot end of the queue it
//! came from, so that restoring a snapshot in order rebuilds that order.

use std::sync::atomic::Ordering::Relaxed;

use super::expiry::expiry;
use super::queues::MAX_FREQ;
use super::slab::{MAIN, NEVER, SMALL};
use super::{Engine, Kind, Removals};
use crate::clock::Nanos;
use crate::key::Key;
use crate::removal::RemovalReason;
use crate::store::Metadata;

/// One live entry of a snapshot.
pub(crate) struct Snapshot<V> {
    pub key: Box<str>,
    pub value: V,
    /// When its TTL runs out on the engine's clock ([`Nanos::MAX`] if never).
    pub expires_at: Nanos,
    /// Its time-to-idle, if it has one.
    pub idle: Option<std::time::Duration>,
    pub metadata: Option<Metadata>,
    /// Its tags, in the order set.
    pub tags: Vec<String>,
    /// S3-FIFO's access count (0 to 3; 0 under LRU and TTL).
    pub hits: u8,
    /// On S3-FIFO's small (probationary) queue.
    pub probation: bool,
}

/// One entry to [`restore`](Engine::restore).
pub(crate) struct Restored<V> {
    pub value: V,
    /// Its TTL from now (checked: not zero).
    pub ttl: Option<std::time::Duration>,
    /// Its time-to-idle (checked), or `None` for the policy's.
    pub idle: Option<std::time::Duration>,
    pub metadata: Option<Metadata>,
    /// Its tags (checked).
    pub tags: Vec<String>,
    pub hits: u8,
    pub probation: bool,
}

impl<V: Clone> Engine<V> {
    /// The live entries, coldest first, with the engine's time: under LRU
    /// the least recently used first, under TTL the soonest to expire first
    /// (the one set first among equals), under
    /// S3-FIFO the small queue oldest first, then the main queue oldest
    /// first. Expired entries are reclaimed first (set aside as orphans for
    /// a listener). Also whether S3-FIFO has evicted yet.
    pub fn snapshot(&mut self) -> (Nanos, bool, Vec<Snapshot<V>>) {
        self.reclaim_all_expired();
        let now = self.clock.now();
        let mut order: Vec<u32> = Vec::with_capacity(self.slab.len());
        if self.kind == Kind::Ttl {
            // TTL evicts the soonest to expire (ties: the one set first), and
            // the entries without a TTL last, least recently set first.
            let ids: Vec<u32> = self.slab.iter(MAIN).filter(|&id| self.slab[id].expires_at == NEVER).collect();
            order.extend(self.expiries.iter().map(|&(_, _, id)| id));
            order.extend(ids.iter().rev());
        } else {
            for list in [SMALL, MAIN] {
                let ids: Vec<u32> = self.slab.iter(list).collect();
                order.extend(ids.iter().rev());
            }
        }
        let mut out = Vec::with_capacity(order.len());
        {
            for id in order {
                let list = self.slab[id].list();
                let idle = self.idle_of(id);
                let slot = &self.slab[id];
                out.push(Snapshot {
                    key: slot.key.clone(),
                    value: slot.value().clone(),
                    // An idle entry is filed under a deadline no later than
                    // its real one: its TTL's is in its idle clock.
                    expires_at: idle.map_or(slot.expires_at, |(_, ttl_at)| ttl_at),
                    idle: idle.map(|(idle, _)| idle),
                    metadata: slot.metadata.as_deref().cloned(),
                    tags: self.tags_of(id),
                    hits: if self.kind == Kind::S3Fifo { slot.freq.load(Relaxed) & MAX_FREQ } else { 0 },
                    probation: list == SMALL,
                });
            }
        }
        (now, self.evicted_once, out)
    }
}

impl<V> Engine<V> {
    /// Marks the engine as one that has evicted (S3-FIFO fills its main
    /// queue directly until its first eviction), as the dumped one had.
    pub fn mark_evicted(&mut self) {
        self.evicted_once = true;
    }

    /// Stores an entry of a snapshot as the hottest of its queue (S3-FIFO:
    /// the small queue if `probation`, else main, with `hits` as its access
    /// count; LRU and TTL: the head of their list), after the key's old
    /// entry (replaced) and, when the engine is full, the entries the
    /// policy evicts; hands back what it removed. With a weigher, the entry
    /// is weighed first: one heavier than the capacity (the caller checked
    /// it with [`check_weight`](Engine::check_weight)) changes nothing.
    pub fn restore(&mut self, key: Key<'_>, hash: u64, entry: Restored<V>) -> crate::errors::Result<Removals<V>> {
        let Restored { value, ttl, idle, metadata, tags, hits, probation } = entry;
        let weighs = self.weighs();
        let weight = if weighs { self.weigh(&key, &value)? } else { 1 };
        let existing = self.find(hash, &key);
        self.cancel_load(&key, existing);
        let now = self.clock.now();
        let mut removed = Removals::new();
        if let Some(id) = existing {
            let gone = if self.has_expired(id, Some(now)) {
                self.expire(id, hash)
            } else {
                self.remove_slot(id, hash, RemovalReason::Replaced)
            };
            removed.push(gone);
        }
        if weighs {
            if !self.evicted_once && !self.fits::<true>(weight, None) {
                self.resize_for_entries(self.slab.len());
            }
            self.make_room::<true>(weight, now, &mut removed);
        } else {
            self.make_room::<false>(weight, now, &mut removed);
        }
        let list = if self.kind == Kind::S3Fifo && probation { SMALL } else { MAIN };
        let ttl_at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
        // An idle time starts again at the load, as if the entry had just been read.
        let idle = idle.or(self.default_idle);
        let expires_at = idle.map_or(ttl_at, |idle| ttl_at.min(expiry(now, idle)));
        let id = self.insert_new(hash, key, value, metadata.map(Box::new), expires_at, list, weight, &mut removed);
        self.start_idle(id, idle, ttl_at, now);
        if !tags.is_empty() {
            self.retag(id, tags);
        }
        if self.kind == Kind::S3Fifo {
            self.slab[id].freq.store(hits.min(MAX_FREQ), Relaxed);
        }
        self.counters.sets += 1;
        Ok(removed)
    }
}
