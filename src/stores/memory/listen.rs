//! The memory store's removal listener: what a call removed is collected
//! under the shard's lock (the engine hands it back, or keeps it aside as
//! orphans) and handed to the listener after the lock is released, once the
//! engine is consistent. A store without a listener drops it there instead:
//! its hot paths pay one test of an empty `Vec` (the orphans) at most.

use super::MemoryStore;
use super::engine::{Removals, Removed};
use super::reentry::Held;
use super::shard::WriteGuard;
use crate::removal::notify;

/// A shard's engine under its exclusive lock.
pub(super) type Locked<'a, V> = Held<WriteGuard<'a, V>>;

impl<V> MemoryStore<V> {
    /// Releases `engine`'s lock, then hands what it set aside (expired
    /// entries a read or a walk found) to the listener.
    #[inline(always)]
    pub(super) fn release(&self, mut engine: Locked<'_, V>) {
        // One place where the lock is released, whatever the branch: with
        // two, LLVM put the guard's drop out of line (~20 instructions a
        // `set`); `unlock` is that drop, inlined.
        let orphans = if engine.has_orphans() { Some(engine.take_orphans()) } else { None };
        engine.unlock();
        if let Some(orphans) = orphans {
            self.dispose(orphans, "");
        }
    }

    /// Hands `removed` (which a call on `key` removed; no lock is held) to
    /// the listener, or drops it.
    #[inline]
    pub(super) fn dispose(&self, removed: impl IntoIterator<Item = Removed<V>>, key: &str) {
        match &self.listener {
            None => drop(removed.into_iter()),
            Some(listener) => notify(listener, removed.into_iter().map(|r| r.into_notice(key))),
        }
    }

    /// [`dispose`](Self::dispose) for what one write removed.
    #[inline(always)]
    pub(super) fn dispose_write(&self, removed: Removals<V>, key: &str) {
        if self.listener.is_some() {
            self.dispose(removed.into_entries(), key);
        } else {
            removed.drop_entries();
        }
    }
}
