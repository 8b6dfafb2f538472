//! The single-threaded heart of the memory store.
//!
//! [`Engine`] holds the entries and carries out the policy. It takes `&mut self`
//! and never blocks, never does I/O and never reads a clock it was not given.
//! `MemoryStore` puts it behind a `Mutex` for threads; the wasm binding owns one
//! directly, since a wasm instance has a single thread.
//!
//! Data structures and costs (n = entries):
//! - `entries`: a hash map threaded by a recency list (`lru::LruCache`, kept
//!   unbounded: capacity is enforced here, so a large `max_size` reserves no
//!   memory up front). Lookup, insert, remove, evict LRU: O(1).
//! - `expiries`: the entries that have a TTL, ordered by expiry time. Insert,
//!   remove, and "soonest to expire": O(log n).
//!
//! Expired entries are never returned. They are reclaimed when a call touches
//! them, up to [`RECLAIM_PER_WRITE`] more on every `set`, all of them when the
//! entry count is asked for, and before any live entry is evicted for room:
//! without a timer (edge runtimes have none), memory stays bounded by the live
//! entries plus whatever expired since the last writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use lru::LruCache;

use crate::clock::{Clock, Nanos, duration_nanos};
use crate::errors::Result;
use crate::metrics::Counters;
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::store::{Metadata, SetOptions, check_key, effective_ttl};

/// How many expired entries each `set` reclaims beyond the one it touches.
pub(crate) const RECLAIM_PER_WRITE: usize = 8;

/// The entry list: under LRU with a capacity small enough to reserve up
/// front, a bounded `LruCache`, which recycles the evicted entry's node;
/// otherwise unbounded (capacity is enforced by the engine, and a huge
/// `max_size` reserves nothing).
fn list_for<V>(evict_lru: bool, max_size: Option<usize>) -> LruCache<Arc<str>, Entry<V>, KeyHasher> {
    match max_size.and_then(std::num::NonZeroUsize::new) {
        Some(cap) if evict_lru && cap.get() <= PRESIZED_MAX => LruCache::with_hasher(cap, KeyHasher::default()),
        _ => LruCache::unbounded_with_hasher(KeyHasher::default()),
    }
}

/// The largest capacity whose hash table is reserved when the store is made
/// (about 2 MiB of table natively at this size, half that on wasm32; lru-cache
/// reserves its arrays up front too).
pub(crate) const PRESIZED_MAX: usize = 1 << 16;

#[cfg(not(target_arch = "wasm32"))]
type KeyHasher = lru::DefaultHasher;
#[cfg(target_arch = "wasm32")]
type KeyHasher = super::hasher::SeededState;

struct Entry<V> {
    value: V,
    expires_at: Option<Nanos>,
    // Boxed: most entries carry none, and a map is three words.
    metadata: Option<Box<Metadata>>,
}

impl<V> Entry<V> {
    #[inline]
    fn expired(&self, now: Nanos) -> bool {
        matches!(self.expires_at, Some(at) if at <= now)
    }
}

pub(crate) struct Engine<V> {
    entries: LruCache<Arc<str>, Entry<V>, KeyHasher>,
    expiries: BTreeSet<(Nanos, Arc<str>)>,
    max_size: usize,
    default_ttl: Option<std::time::Duration>,
    evict_lru: bool,
    refresh_on_get: bool,
    clock: Clock,
    pub counters: Counters,
}

impl<V: Clone> Engine<V> {
    pub fn new(policy: Policy, clock: Clock) -> Self {
        let (evict_lru, refresh_on_get) = match &policy {
            Policy::Lru(p) => (true, p.refreshes_on_get()),
            Policy::Ttl(_) => (false, false),
        };
        Engine {
            entries: list_for(evict_lru, policy.max_size()),
            expiries: BTreeSet::new(),
            max_size: policy.max_size().unwrap_or(usize::MAX),
            default_ttl: policy.default_ttl(),
            evict_lru,
            refresh_on_get,
            clock,
            counters: Counters::default(),
        }
    }

    /// Narrows the capacity, for one shard of a sharded store (before any entry is set).
    pub fn limit_max_size(&mut self, max_size: usize) {
        self.max_size = self.max_size.min(max_size.max(1));
        if self.evict_lru {
            self.entries = list_for(true, Some(self.max_size));
        }
    }

    /// The time, read only when some entry could have expired.
    #[inline]
    fn now_if_expiring(&self) -> Nanos {
        if self.expiries.is_empty() { 0 } else { self.clock.now() }
    }

    #[inline]
    pub fn get(&mut self, key: &str) -> Result<Option<V>> {
        self.get_with(key, V::clone)
    }

    /// `get`, handing the live value to `read` instead of cloning it.
    #[inline]
    pub fn get_with<R>(&mut self, key: &str, read: impl FnOnce(&V) -> R) -> Result<Option<R>> {
        check_key(key)?;
        let started = self.counters.sample_next_get().then(|| self.clock.now());
        let found = if self.refresh_on_get { self.entries.get(key) } else { self.entries.peek(key) };
        let (value, expired) = match found {
            None => (None, false),
            Some(entry) => match entry.expires_at {
                Some(at) if at <= started.unwrap_or_else(|| self.clock.now()) => (None, true),
                _ => (Some(read(&entry.value)), false),
            },
        };
        if expired {
            self.remove(key);
            self.counters.expirations += 1;
        }
        if value.is_some() {
            self.counters.hits += 1;
        } else {
            self.counters.misses += 1;
        }
        if let Some(started) = started {
            self.counters.record_latency(self.clock.now().saturating_sub(started));
        }
        Ok(value)
    }

    /// The live value under `key`, counting nothing and leaving recency alone.
    pub fn peek(&mut self, key: &str) -> Option<V> {
        self.peek_live(key).map(|entry| entry.value.clone())
    }

    /// Checks what `set` would check, changing nothing.
    pub fn check_set(&self, key: &str, options: &SetOptions) -> Result<()> {
        check_key(key)?;
        effective_ttl(options.ttl, self.default_ttl).map(drop)
    }

    /// The clock the engine reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn set(&mut self, key: &str, value: V, options: SetOptions) -> Result<()> {
        check_key(key)?;
        let ttl = effective_ttl(options.ttl, self.default_ttl)?;
        // Nothing below can fail: a rejected call has changed nothing.
        let now = if ttl.is_some() { self.clock.now() } else { self.now_if_expiring() };
        let expires_at = ttl.map(|ttl| now.saturating_add(duration_nanos(ttl)));
        let metadata = options.metadata.map(Box::new);
        self.reclaim_expired(now, RECLAIM_PER_WRITE);

        if let Some((stored_key, entry)) = self.entries.get_key_value_mut(key) {
            if entry.expired(now) {
                self.counters.expirations += 1;
            }
            let old_expiry = std::mem::replace(&mut entry.expires_at, expires_at);
            entry.value = value;
            entry.metadata = metadata;
            if old_expiry != expires_at {
                let stored_key = Arc::clone(stored_key);
                if let Some(at) = old_expiry {
                    self.expiries.remove(&(at, Arc::clone(&stored_key)));
                }
                if let Some(at) = expires_at {
                    self.expiries.insert((at, stored_key));
                }
            }
        } else {
            let full = self.entries.len() >= self.max_size && self.reclaim_expired(now, 1) == 0;
            // Unless the list is bounded at max_size and will evict by itself.
            if full && self.entries.cap().get() > self.max_size {
                self.evict_one();
            }
            let key: Arc<str> = Arc::from(key);
            if let Some(at) = expires_at {
                self.expiries.insert((at, Arc::clone(&key)));
            }
            // A full LRU list evicts its least recently used entry itself,
            // reusing that entry's node for the new one.
            if let Some((old_key, old)) = self.entries.push(key, Entry { value, expires_at, metadata }) {
                if let Some(at) = old.expires_at {
                    self.expiries.remove(&(at, old_key));
                }
                self.counters.evictions += 1;
            }
        }
        self.counters.sets += 1;
        Ok(())
    }

    pub fn delete(&mut self, key: &str) -> Result<bool> {
        check_key(key)?;
        let now = self.now_if_expiring();
        Ok(match self.remove(key) {
            None => false,
            Some(entry) if entry.expired(now) => {
                self.counters.expirations += 1;
                false
            }
            Some(_) => {
                self.counters.deletes += 1;
                true
            }
        })
    }

    pub fn contains(&mut self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(self.peek_live(key).is_some())
    }

    pub fn get_metadata(&mut self, key: &str) -> Result<Option<Metadata>> {
        check_key(key)?;
        Ok(self.peek_live(key).map(|entry| entry.metadata.as_deref().cloned().unwrap_or_default()))
    }

    pub fn update_metadata(&mut self, key: &str, metadata: Metadata) -> Result<bool> {
        check_key(key)?;
        if self.peek_live(key).is_none() {
            return Ok(false);
        }
        if let Some(entry) = self.entries.peek_mut(key) {
            entry.metadata.get_or_insert_default().extend(metadata);
        }
        Ok(true)
    }

    pub fn invalidate(&mut self, pattern: &str) -> Result<usize> {
        let pattern = Pattern::new(pattern)?;
        let now = self.now_if_expiring();
        let doomed: Vec<Arc<str>> =
            self.entries.iter().filter(|(key, _)| pattern.matches(key)).map(|(key, _)| Arc::clone(key)).collect();
        let mut removed = 0;
        for key in doomed {
            if let Some(entry) = self.remove(&key) {
                if entry.expired(now) {
                    self.counters.expirations += 1;
                } else {
                    removed += 1;
                }
            }
        }
        self.counters.deletes += removed as u64;
        Ok(removed)
    }

    /// Live keys, most recently used first, all or those matching `pattern`.
    pub fn keys(&mut self, pattern: Option<&str>) -> Result<Vec<String>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        self.reclaim_all_expired();
        Ok(self
            .entries
            .iter()
            .filter(|(key, _)| pattern.as_ref().is_none_or(|p| p.matches(key)))
            .map(|(key, _)| key.to_string())
            .collect())
    }

    /// The number of live entries.
    pub fn len(&mut self) -> usize {
        self.reclaim_all_expired();
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.reclaim_all_expired();
        self.counters.deletes += self.entries.len() as u64;
        self.entries.clear();
        self.expiries.clear();
    }

    /// The entry under `key` if it is live; reclaims it if it has expired.
    fn peek_live(&mut self, key: &str) -> Option<&Entry<V>> {
        let expired = self.entries.peek(key)?.expires_at.is_some_and(|at| at <= self.clock.now());
        if expired {
            self.remove(key);
            self.counters.expirations += 1;
            return None;
        }
        self.entries.peek(key)
    }

    fn remove(&mut self, key: &str) -> Option<Entry<V>> {
        let (key, entry) = self.entries.pop_entry(key)?;
        if let Some(at) = entry.expires_at {
            self.expiries.remove(&(at, key));
        }
        Some(entry)
    }

    /// Removes up to `limit` expired entries, soonest-expired first; how many.
    #[inline]
    fn reclaim_expired(&mut self, now: Nanos, limit: usize) -> usize {
        if self.expiries.is_empty() {
            return 0;
        }
        self.reclaim_expired_slow(now, limit)
    }

    fn reclaim_expired_slow(&mut self, now: Nanos, limit: usize) -> usize {
        let mut reclaimed = 0;
        while reclaimed < limit {
            match self.expiries.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.entries.pop(&*key);
                reclaimed += 1;
            }
        }
        self.counters.expirations += reclaimed as u64;
        reclaimed
    }

    fn reclaim_all_expired(&mut self) {
        let now = self.now_if_expiring();
        self.reclaim_expired(now, usize::MAX);
    }

    /// Makes room for one entry: the least recently used under LRU, the one
    /// closest to expiry under TTL.
    fn evict_one(&mut self) {
        let evicted = if self.evict_lru {
            self.entries.pop_lru().map(|(key, entry)| {
                if let Some(at) = entry.expires_at {
                    self.expiries.remove(&(at, key));
                }
            })
        } else {
            self.expiries.pop_first().map(|(_, key)| {
                self.entries.pop(&*key);
            })
        };
        if evicted.is_some() {
            self.counters.evictions += 1;
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V> Engine<V> {
    /// Entries held, expired or not.
    pub fn raw_len(&self) -> usize {
        self.entries.len()
    }

    /// Panics unless the internal invariants hold: the capacity bound (counting
    /// expired entries too) and the expiry index mirroring the entries exactly.
    pub fn validate(&self) {
        assert!(self.entries.len() <= self.max_size, "{} entries > max {}", self.entries.len(), self.max_size);
        let expected: BTreeSet<(Nanos, Arc<str>)> =
            self.entries.iter().filter_map(|(key, entry)| entry.expires_at.map(|at| (at, Arc::clone(key)))).collect();
        assert_eq!(self.expiries, expected, "expiry index out of step with the entries");
    }
}
