//! One shard of a [`MemoryStore`](super::MemoryStore): an engine, its lock,
//! and its lane reads.
//!
//! A `get` of a thread with a lane (`engine/lanes.rs`) reads the engine
//! without the lock: it marks its lane (one atomic add on a cache line only
//! it writes) and checks the shard's writer flag
//! ([`LaneHandle::enter`]). Every other access takes the lock: reads
//! shared ([`Shard::read`]), writes exclusive ([`Shard::write`]). A writer,
//! once it holds the lock, raises the writer flag and waits for the lane
//! reads in progress to end; a lane read that finds the flag up takes the
//! read lock instead, which waits for the writer. So an `&mut Engine`
//! never coexists with any `&Engine`, as under a plain `RwLock`.
//!
//! Under exact LRU every `get` writes (it reorders its list) and takes the
//! lock exclusively: such a shard has no lane reads, and its writers skip
//! the flag.

use std::cell::UnsafeCell;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Release, SeqCst};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::engine::{Engine, Entered, LaneHandle};

#[cfg(test)]
thread_local! {
    /// How many times this thread took a shard's lock (read or write).
    static RW_LOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One engine on its own cache lines, so two threads working on neighbouring
/// shards do not slow each other down through false sharing. `repr(C)`: what
/// a lane read reads first (the flag, the lanes) shares the first line with
/// the lock and the engine's first fields, not the far end of the engine.
#[repr(C, align(128))]
pub(super) struct Shard<V> {
    /// Held shared by reads without a lane, exclusively by writes.
    lock: RwLock<()>,
    /// Up while a writer holds the lock (lane reads then take the lock).
    writer: AtomicBool,
    /// Whether `get` reads this shard on lanes (every policy whose reads
    /// change no order: see [`Engine::reads_are_shared`]).
    lane_reads: bool,
    /// The engine's lanes (it counts its reads on them), one pointer: with
    /// the fields above and the engine's read counters, the shard's first
    /// cache line.
    lanes: LaneHandle,
    engine: UnsafeCell<Engine<V>>,
}

// SAFETY: the engine is reached only through the guards below, which give
// out `&Engine` to any number of threads (under the read lock or a lane
// read) or `&mut Engine` to one (under the write lock, once every lane read
// has ended), as `RwLock<Engine<V>>` does; so the bounds are `RwLock`'s.
unsafe impl<V> Sync for Shard<V> where Engine<V>: Send + Sync {}

impl<V> Shard<V> {
    /// A shard running `engine`.
    pub fn new(engine: Engine<V>) -> Self {
        Shard {
            lock: RwLock::new(()),
            writer: AtomicBool::new(false),
            lane_reads: engine.reads_are_shared(),
            // The engine owns the column, and lives as long as the shard.
            lanes: engine.lane_handle(),
            engine: UnsafeCell::new(engine),
        }
    }

    /// The engine, shared, under the read lock.
    #[inline(always)]
    pub fn read(&self) -> ReadGuard<'_, V> {
        #[cfg(test)]
        RW_LOCKS.set(RW_LOCKS.get() + 1);
        let lock = self.lock.read().unwrap_or_else(PoisonError::into_inner);
        ReadGuard { shard: self, _lock: lock }
    }

    /// The engine, exclusively, under the write lock, once no lane read is
    /// in progress.
    #[inline(always)]
    pub fn write(&self) -> WriteGuard<'_, V> {
        // Poisoned: the engine finishes its bookkeeping before it runs a
        // value's `Drop`, and a panicking `Clone` changes nothing.
        #[cfg(test)]
        RW_LOCKS.set(RW_LOCKS.get() + 1);
        let lock = self.lock.write().unwrap_or_else(PoisonError::into_inner);
        if self.lane_reads {
            // `SeqCst`, before the look at the lanes: see `LaneHandle::enter`.
            self.writer.store(true, SeqCst);
            self.lanes.wait_for_readers();
        }
        WriteGuard { shard: self, _lock: lock }
    }

    /// Begins a lane read of the engine ([`LaneHandle::enter`]): `None`
    /// (take [`read`](Self::read)) for a thread without a lane, a shard
    /// without lane reads, or while a writer holds the shard.
    #[inline(always)]
    pub fn enter(&self) -> Option<(&Engine<V>, Entered<'_>)> {
        // Without lane reads writers raise no flag: a lane read would race them.
        if !self.lane_reads {
            return None;
        }
        let entered = self.lanes.enter(&self.writer)?;
        // SAFETY: the lane read is in progress and the writer flag was down
        // after it began: no writer holds `&mut` until `entered` ends.
        Some((unsafe { &*self.engine.get() }, entered))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V> Shard<V> {
    /// The address just past the lock, the flag and the lanes' handle.
    pub fn first_line_fields_end(&self) -> usize {
        let ends = [
            &self.lock as *const RwLock<()> as usize + std::mem::size_of::<RwLock<()>>(),
            &self.writer as *const AtomicBool as usize + 1,
            &self.lane_reads as *const bool as usize + 1,
            &self.lanes as *const LaneHandle as usize + std::mem::size_of::<LaneHandle>(),
        ];
        ends.into_iter().max().unwrap_or(0)
    }
}

/// The engine, shared, under the shard's read lock.
pub(super) struct ReadGuard<'a, V> {
    shard: &'a Shard<V>,
    _lock: RwLockReadGuard<'a, ()>,
}

impl<V> std::ops::Deref for ReadGuard<'_, V> {
    type Target = Engine<V>;
    #[inline(always)]
    fn deref(&self) -> &Engine<V> {
        // SAFETY: the read lock is held: no writer holds `&mut` (see `write`).
        unsafe { &*self.shard.engine.get() }
    }
}

/// The engine, exclusively, under the shard's write lock (the flag up and
/// no lane read in progress: see [`Shard::write`]).
pub(super) struct WriteGuard<'a, V> {
    shard: &'a Shard<V>,
    _lock: RwLockWriteGuard<'a, ()>,
}

impl<V> WriteGuard<'_, V> {
    /// What dropping the guard does (the flag lowered, then the lock
    /// released), inlined: the guard's drop glue, called from many places,
    /// was put out of line by LLVM (~28 instructions a `set` and an
    /// exclusive `get`).
    #[inline(always)]
    pub(super) fn unlock(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again: the lock guard is
        // moved out of it once, and dropped last.
        let lock = unsafe { std::ptr::read(&this._lock) };
        if this.shard.lane_reads {
            this.shard.writer.store(false, Release);
        }
        drop(lock);
    }
}

impl<V> Drop for WriteGuard<'_, V> {
    /// Lowers the writer flag (under the lock, released after: the fields drop after this).
    #[inline(always)]
    fn drop(&mut self) {
        if self.shard.lane_reads {
            self.shard.writer.store(false, Release);
        }
    }
}

impl<V> std::ops::Deref for WriteGuard<'_, V> {
    type Target = Engine<V>;
    #[inline(always)]
    fn deref(&self) -> &Engine<V> {
        // SAFETY: the write lock is held (see `deref_mut`).
        unsafe { &*self.shard.engine.get() }
    }
}

impl<V> std::ops::DerefMut for WriteGuard<'_, V> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Engine<V> {
        // SAFETY: the write lock excludes every other writer and every read
        // under the lock; the flag is up and no lane read is in progress, and
        // none begins until the guard lowers it. The `&mut` borrows the
        // guard, so it ends before the guard does.
        unsafe { &mut *self.shard.engine.get() }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::RW_LOCKS;
    use crate::policies::{LruPolicy, S3FifoPolicy, TtlPolicy};
    use crate::store::{CacheStore, SetOptions};
    use crate::stores::memory::MemoryStore;

    /// The shard locks `f` took on this thread.
    fn locks_in(f: impl FnOnce()) -> usize {
        let before = RW_LOCKS.get();
        f();
        RW_LOCKS.get() - before
    }

    #[test]
    fn a_get_on_a_lane_takes_no_lock_and_a_write_takes_one() {
        std::thread::spawn(|| {
            let store = MemoryStore::<u32>::new(S3FifoPolicy::new(4096).unwrap());
            store.set("a", 1, SetOptions::new()).into_inner().unwrap();
            // The thread's first get claims its lane (under the read lock).
            store.get("a").into_inner().unwrap();
            let gets = locks_in(|| {
                for key in ["a", "b", "a", "c"] {
                    store.get(key).into_inner().unwrap();
                }
            });
            assert_eq!(gets, 0, "hits and misses on the lane");
            assert_eq!(locks_in(|| store.set("a", 2, SetOptions::new()).into_inner().unwrap()), 1);
            assert_eq!(store.get("a").into_inner().unwrap(), Some(2));
            let stats = store.stats();
            assert_eq!((stats.hits, stats.misses), (4, 2), "{stats:?}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ttl_reads_on_lanes_and_exact_lru_takes_the_lock() {
        std::thread::spawn(|| {
            let ttl = MemoryStore::<u32>::new(TtlPolicy::new(std::time::Duration::from_secs(60)).unwrap());
            ttl.set("a", 1, SetOptions::new()).into_inner().unwrap();
            ttl.get("a").into_inner().unwrap();
            assert_eq!(locks_in(|| assert_eq!(ttl.get("a").into_inner().unwrap(), Some(1))), 0);
            let lru = MemoryStore::<u32>::new(LruPolicy::new(16).unwrap());
            lru.set("a", 1, SetOptions::new()).into_inner().unwrap();
            lru.get("a").into_inner().unwrap();
            assert_eq!(locks_in(|| assert_eq!(lru.get("a").into_inner().unwrap(), Some(1))), 1, "exact LRU reorders");
        })
        .join()
        .unwrap();
    }
}
