//! The batch calls of [`MemoryStore`]: `get_many`, `set_many` and
//! `delete_many`. Every key is checked and hashed first (a bad key or bad
//! options fail the call before any lock is taken), then the keys are
//! grouped by shard and each shard's lock is taken once for all of its
//! keys, running the engine's single-key entry points (`get_shared` /
//! `get_exclusive`, `set`, `delete`) under it: the same counters, capacity,
//! expiry and load cancellation as the single-key calls. Never two locks at
//! once; what the calls remove is dropped after the last lock is released.

use std::hash::BuildHasher;

use super::MemoryStore;
use super::engine::{Lookup, Removals};
use super::reentry::{read, write};
use crate::errors::Result;
use crate::key::Key;
use crate::store::{SetOptions, check_set_options};

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// Checks and hashes every key (the first bad one fails the call), after
    /// checking that `call` does not come from inside a value's `Clone` or `Drop`.
    fn checked_all<'k>(&self, call: &'static str, keys: impl Iterator<Item = &'k str>) -> Result<Vec<(Key<'k>, u64)>> {
        self.reentered(call)?;
        keys.map(|key| Key::new(key).map(|key| (key, self.hasher.hash_one(&*key)))).collect()
    }

    /// The positions of `checked` grouped by shard: `(shard, position)`,
    /// sorted by shard and, within a shard, in the order given (so that of
    /// a key written twice, the last write stays).
    fn by_shard(&self, checked: &[(Key<'_>, u64)]) -> Vec<(usize, usize)> {
        let mut order: Vec<(usize, usize)> =
            checked.iter().enumerate().map(|(pos, &(_, hash))| (self.shard_index(hash), pos)).collect();
        if self.shards.len() > 1 {
            // Stable: the input order within a shard stays.
            order.sort_by_key(|&(shard, _)| shard);
        }
        order
    }

    /// [`CacheStore::get_many`](crate::store::CacheStore::get_many).
    pub(super) fn get_many_now(&self, keys: &[&str]) -> Result<Vec<Option<V>>> {
        let checked = self.checked_all("get_many", keys.iter().copied())?;
        let mut found: Vec<Option<V>> = vec![None; checked.len()];
        let order = self.by_shard(&checked);
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let shard = &self.shards[group[0].0];
            if !self.shared_reads {
                let mut engine = write(shard);
                for &(_, pos) in group {
                    let (key, hash) = checked[pos];
                    found[pos] = engine.get_exclusive(key, hash, None, V::clone);
                }
                // What expired goes to the listener after the lock.
                self.release(engine);
                continue;
            }
            let mut expired = Vec::new();
            {
                let engine = read(shard);
                for &(_, pos) in group {
                    let (key, hash) = checked[pos];
                    match engine.get_shared(key, hash, None, V::clone) {
                        Lookup::Hit(value) => found[pos] = Some(value),
                        Lookup::Miss | Lookup::Refused => {}
                        Lookup::Expired => expired.push(pos),
                    }
                }
            }
            // As a single `get` does: the expired entries found under the
            // read lock are reclaimed under the write lock, off the hit path.
            if !expired.is_empty() {
                let mut engine = write(shard);
                for pos in expired {
                    let (key, hash) = checked[pos];
                    engine.reclaim_if_expired(key, hash);
                }
                self.release(engine);
            }
        }
        Ok(found)
    }

    /// [`CacheStore::set_many`](crate::store::CacheStore::set_many).
    pub(super) fn set_many_now(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Result<()> {
        let checked = self.checked_all("set_many", entries.iter().map(|(key, _)| *key))?;
        // Once for all: the engine's `set` checks them again, and cannot
        // fail on them then.
        check_set_options(&options, self.policy.default_ttl())?;
        let mut values: Vec<Option<V>> = entries.into_iter().map(|(_, value)| Some(value)).collect();
        // Weighed: an entry too heavy for the store fails the batch before
        // anything is written (its weigher then runs twice per entry).
        if self.weighs {
            for (&(key, hash), value) in checked.iter().zip(&values) {
                read(self.shard_of(hash)).check_weight(&key, value.as_ref().expect("not taken yet"))?;
            }
        }
        let order = self.by_shard(&checked);
        // Dropped after the last lock is released (a value's Drop may panic
        // or use this store).
        let mut removed: Vec<(Key<'_>, Removals<V>)> = Vec::new();
        let mut orphans = Vec::new();
        let mut failed = Ok(());
        'groups: for group in order.chunk_by(|a, b| a.0 == b.0) {
            let mut engine = write(&self.shards[group[0].0]);
            for &(_, pos) in group {
                let (key, hash) = checked[pos];
                let value = values[pos].take().expect("each position is written once");
                // Fails only when a shard holds the most entries a slab can
                // (about 4 billion), or a weigher weighs differently than at
                // the check: what was written stays, as with `set`s, and
                // what it removed is still reported below.
                match engine.set(key, hash, value, options.clone()) {
                    Ok(gone) => removed.push((key, gone)),
                    Err(error) => {
                        failed = Err(error);
                        if engine.has_orphans() {
                            orphans.extend(engine.take_orphans());
                        }
                        break 'groups;
                    }
                }
            }
            if engine.has_orphans() {
                orphans.extend(engine.take_orphans());
            }
        }
        // Told to the listener (or dropped) once every lock is released.
        self.dispose(orphans, "");
        for (key, gone) in removed {
            self.dispose_write(gone, &key);
        }
        failed
    }

    /// [`CacheStore::delete_many`](crate::store::CacheStore::delete_many).
    pub(super) fn delete_many_now(&self, keys: &[&str]) -> Result<usize> {
        let checked = self.checked_all("delete_many", keys.iter().copied())?;
        let order = self.by_shard(&checked);
        let mut removed = Vec::new();
        let mut orphans = Vec::new();
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let mut engine = write(&self.shards[group[0].0]);
            for &(_, pos) in group {
                let (key, hash) = checked[pos];
                removed.extend(engine.delete(key, hash));
            }
            if engine.has_orphans() {
                orphans.extend(engine.take_orphans());
            }
        }
        let count = removed.len();
        // Told to the listener (or dropped) once every lock is released.
        self.dispose(orphans, "");
        self.dispose(removed, "");
        Ok(count)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::reentry::LOCKS_TAKEN;
    use super::*;
    use crate::policies::{LruPolicy, S3FifoPolicy};
    use crate::store::CacheStore;

    fn locks_taken_by<T>(f: impl FnOnce() -> T) -> (usize, T) {
        let before = LOCKS_TAKEN.get();
        let out = f();
        (LOCKS_TAKEN.get() - before, out)
    }

    /// One lock per shard the keys fall in, whatever the number of keys;
    /// the same keys one by one take one lock each.
    #[test]
    fn a_batch_takes_each_shards_lock_once() {
        for policy in [
            LruPolicy::new(1 << 16).unwrap().into(),
            crate::policies::Policy::from(S3FifoPolicy::new(1 << 16).unwrap()),
        ] {
            let store = MemoryStore::<u32>::builder(policy).shards(8).build();
            assert_eq!(store.shard_count(), 8);
            let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let entries = keys.iter().enumerate().map(|(i, k)| (*k, i as u32)).collect();
            let (locks, done) = locks_taken_by(|| store.set_many(entries, SetOptions::new()).into_inner());
            done.unwrap();
            assert_eq!(locks, 8, "100 keys over 8 shards: one lock each");
            let (locks, got) = locks_taken_by(|| store.get_many(&keys).into_inner().unwrap());
            assert_eq!(locks, 8);
            assert_eq!(got, (0..100).map(Some).collect::<Vec<_>>());
            let (locks, ()) = locks_taken_by(|| {
                for key in &keys {
                    store.get(key).into_inner().unwrap();
                }
            });
            assert_eq!(locks, 100, "single gets: one lock each");
            let (locks, n) = locks_taken_by(|| store.delete_many(&keys).into_inner().unwrap());
            assert_eq!((locks, n), (8, 100));
            let (locks, got) = locks_taken_by(|| store.get_many(&[]).into_inner().unwrap());
            assert_eq!((locks, got), (0, vec![]), "an empty batch takes no lock");
        }
    }

    /// The removal listener hears of everything a batch removed, after the
    /// batch (it can use the store), with the key and reason a single call
    /// would give.
    #[test]
    fn the_removal_listener_hears_what_a_batch_removed() {
        use crate::removal::RemovalReason::{self, Deleted, Evicted, Expired, Replaced};
        use std::sync::{Arc, Mutex, OnceLock, Weak};
        for shards in [1, 4] {
            let clock = crate::clock::ManualClock::new();
            let seen: Arc<Mutex<Vec<(String, u32, RemovalReason)>>> = Arc::default();
            let home: Arc<OnceLock<Weak<MemoryStore<u32>>>> = Arc::default();
            let (log, back) = (Arc::clone(&seen), Arc::clone(&home));
            let store = Arc::new(
                // Sharded, each shard gets a share of the capacity: room for all.
                MemoryStore::<u32>::builder(LruPolicy::new(if shards == 1 { 4 } else { 64 }).unwrap())
                    .clock(clock.clone())
                    .shards(shards)
                    .on_remove(move |key: &str, value, reason| {
                        // Called outside every lock: the store answers.
                        let store = back.get().and_then(Weak::upgrade).unwrap();
                        assert!(store.get_many(&[key]).into_inner().is_ok());
                        log.lock().unwrap().push((key.to_string(), value, reason));
                    })
                    .build(),
            );
            home.set(Arc::downgrade(&store)).unwrap();
            let take = || std::mem::take(&mut *seen.lock().unwrap());
            store.set_many(vec![("a", 1), ("b", 2), ("a", 3)], SetOptions::new()).into_inner().unwrap();
            assert_eq!(take(), [("a".into(), 1, Replaced)], "{shards} shards");
            store.delete_many(&["a", "x", "b", "a"]).into_inner().unwrap();
            let mut gone = take();
            gone.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(gone, [("a".into(), 3, Deleted), ("b".into(), 2, Deleted)]);
            let short = SetOptions::new().ttl(std::time::Duration::from_secs(1));
            store.set_many(vec![("t", 9)], short).into_inner().unwrap();
            clock.advance(std::time::Duration::from_secs(2));
            assert_eq!(store.get_many(&["t"]).into_inner().unwrap(), [None]);
            assert_eq!(take(), [("t".into(), 9, Expired)]);
            if shards == 1 {
                let entries = (0..6).map(|i| (["k0", "k1", "k2", "k3", "k4", "k5"][i], i as u32)).collect();
                store.set_many(entries, SetOptions::new()).into_inner().unwrap();
                assert_eq!(take(), [("k0".into(), 0, Evicted), ("k1".into(), 1, Evicted)], "LRU order");
            }
        }
    }

    /// A batch's shared options carry tags and an idle time to each entry
    /// (the engine's `set`), and a batch read is a read for the idle clock;
    /// bad tags fail the whole batch.
    #[test]
    fn batches_carry_tags_and_idle_times() {
        use std::time::Duration;
        let clock = crate::clock::ManualClock::new();
        let store = MemoryStore::<u32>::builder(S3FifoPolicy::new(1 << 12).unwrap()).clock(clock.clone()).build();
        let options = SetOptions::new().tags(["team:7"]).idle(Duration::from_secs(10));
        store.set_many(vec![("a", 1), ("b", 2)], options).into_inner().unwrap();
        store.set("c", 3, SetOptions::new()).into_inner().unwrap();
        clock.advance(Duration::from_secs(8));
        assert_eq!(store.get_many(&["a"]).into_inner().unwrap(), [Some(1)], "a read: 10 s more");
        clock.advance(Duration::from_secs(8));
        assert_eq!(store.get_many(&["a", "b", "c"]).into_inner().unwrap(), [Some(1), None, Some(3)], "b sat idle");
        assert_eq!(store.invalidate_tags(&["team:7"]).into_inner().unwrap(), 1);
        assert_eq!(store.get_many(&["a", "c"]).into_inner().unwrap(), [None, Some(3)]);
        let bad = store.set_many(vec![("d", 4), ("e", 5)], SetOptions::new().tags([""]));
        assert!(matches!(bad.into_inner(), Err(crate::errors::CacheError::Policy(_))));
        assert_eq!(store.get_many(&["d", "e"]).into_inner().unwrap(), [None, None], "nothing stored");
    }

    /// Expired entries met by a shared-read batch are reclaimed (one more
    /// lock, the write lock, only for shards that had one).
    #[test]
    fn a_batch_reclaims_what_expired() {
        let clock = crate::clock::ManualClock::new();
        let store =
            MemoryStore::<u32>::builder(S3FifoPolicy::new(1 << 12).unwrap()).clock(clock.clone()).shards(1).build();
        let short = SetOptions::new().ttl(std::time::Duration::from_secs(1));
        store.set_many(vec![("a", 1), ("b", 2)], short).into_inner().unwrap();
        store.set("c", 3, SetOptions::new()).into_inner().unwrap();
        clock.advance(std::time::Duration::from_secs(2));
        let (locks, got) = locks_taken_by(|| store.get_many(&["a", "b", "c"]).into_inner().unwrap());
        assert_eq!(got, [None, None, Some(3)]);
        assert_eq!(locks, 2, "the read lock, then the write lock to reclaim");
        assert_eq!(super::super::reentry::read(&store.shards[0]).raw_len(), 1, "the expired entries are gone");
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 2, 2), "{stats:?}");
    }
}
