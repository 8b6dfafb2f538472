//! The shard locks, and the marks that turn a value's `Clone` or `Drop`
//! calling back into the store that runs it into an error instead of a
//! deadlock: while a thread holds a shard's lock, [`HOLDING`] names that
//! shard, and [`MemoryStore::reentered`] refuses a call that would need it.

use std::cell::Cell;

use super::engine::Entered;
use super::shard::{ReadGuard, WriteGuard};
use super::{Engine, MemoryStore, Shard};
use crate::errors::{CacheError, Result};

thread_local! {
    /// The shard (its address) whose lock this thread holds, 0 if none: a
    /// value's `Clone` or `Drop` runs under it, and a call from inside one
    /// into the same store would wait on a lock its own thread holds.
    static HOLDING: Cell<usize> = const { Cell::new(0) };
    /// The shards further up this thread's stack, when a value's `Clone` or
    /// `Drop` called another store (which is allowed) that locked one of its
    /// own: a value of that store calling back into the first one must be
    /// refused too (A's clone reads B, B's clone reads A). Empty, and never
    /// touched, unless stores are nested that way.
    static OUTER: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// How many shard locks this thread has taken (tests count a call's locks).
    pub(super) static LOCKS_TAKEN: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread holds a shard lock for which `held` is true.
#[inline(always)]
fn holding(held: impl Fn(usize) -> bool) -> bool {
    let innermost = HOLDING.get();
    innermost != 0 && (held(innermost) || holding_further_up(held))
}

#[cold]
#[inline(never)]
fn holding_further_up(held: impl Fn(usize) -> bool) -> bool {
    OUTER.with_borrow(|outer| outer.iter().any(|&shard| held(shard)))
}

/// A shard's lock guard that marks the shard as held by this thread
/// ([`HOLDING`]) while it lives.
pub(super) struct Held<G> {
    guard: G,
    outer: usize,
}

impl<G> Held<G> {
    #[inline(always)]
    fn new<V>(shard: &Shard<V>, lock: impl FnOnce() -> G) -> Self {
        let me = shard as *const Shard<V> as usize;
        let outer = HOLDING.get();
        // A last defence for the calls that cannot return an error (the
        // others check `reentered` first): a clear panic, not a deadlock.
        assert!(
            outer == 0 || !holding(|shard| shard == me),
            "a value's Clone or Drop called the MemoryStore that was running it, under the lock it needs: \
             this would deadlock"
        );
        Self::after(shard, Checked(outer), lock)
    }

    /// [`new`](Self::new) for a call that passed its re-entrancy check
    /// just before: the mark it read then (`checked`) is this thread's mark
    /// still (nothing between the check and the lock runs foreign code), and
    /// it names none of this store's shards, so it is neither read nor
    /// checked again (a `get` and a `set` read the thread-local once, not twice).
    #[inline(always)]
    fn after<V>(shard: &Shard<V>, checked: Checked, lock: impl FnOnce() -> G) -> Self {
        let me = shard as *const Shard<V> as usize;
        let outer = checked.0;
        debug_assert_eq!(HOLDING.get(), outer, "the mark changed between the check and the lock");
        let guard = lock();
        #[cfg(test)]
        LOCKS_TAKEN.set(LOCKS_TAKEN.get() + 1);
        if outer != 0 {
            nest(outer);
        }
        HOLDING.set(me);
        Held { guard, outer }
    }
}

/// The mark (the shard lock this thread held, 0 for none) that a call's
/// re-entrancy check read and found to name none of the store's shards
/// ([`MemoryStore::check_reentry`]). Taken by value by the one lock the call
/// takes next ([`read_after`], [`write_after`]): neither `Copy` nor `Clone`,
/// so it cannot outlive that moment.
pub(super) struct Checked(usize);

impl<'a, V> Held<super::shard::WriteGuard<'a, V>> {
    /// What dropping it does (the mark restored, then the write lock
    /// released), inlined: see [`WriteGuard::unlock`](super::shard::WriteGuard::unlock).
    #[inline(always)]
    pub(super) fn unlock(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again: the guard is moved
        // out of it once (first, so that a panic below still releases it).
        let guard = unsafe { std::ptr::read(&this.guard) };
        if this.outer != 0 {
            unnest();
        }
        HOLDING.set(this.outer);
        guard.unlock();
    }
}

impl<G> Drop for Held<G> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.outer != 0 {
            unnest();
        }
        HOLDING.set(self.outer);
    }
}

#[cold]
#[inline(never)]
fn nest(outer: usize) {
    OUTER.with_borrow_mut(|stack| stack.push(outer));
}

#[cold]
#[inline(never)]
fn unnest() {
    OUTER.with_borrow_mut(|stack| stack.pop());
}

impl<G: std::ops::Deref> std::ops::Deref for Held<G> {
    type Target = G::Target;
    #[inline(always)]
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Held<G> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

impl<V> MemoryStore<V> {
    /// Fails if this thread is running a value's `Clone` or `Drop` under a
    /// lock of this store: the call `call` comes from inside it and would
    /// deadlock on that lock (or, through another shard, with a thread
    /// doing the same the other way round).
    #[inline(always)]
    pub(super) fn reentered(&self, call: &'static str) -> Result<()> {
        self.check_reentry(call).map(drop)
    }

    /// [`reentered`](Self::reentered), handing on the mark it read for the
    /// lock the call takes next ([`read_after`], [`write_after`]).
    #[inline(always)]
    pub(super) fn check_reentry(&self, call: &'static str) -> Result<Checked> {
        let shards = self.shards.as_ptr_range();
        let innermost = HOLDING.get();
        let held = |held: usize| shards.contains(&(held as *const Shard<V>));
        if innermost != 0 && (held(innermost) || holding_further_up(held)) {
            return Err(CacheError::ReentrantValue { call });
        }
        Ok(Checked(innermost))
    }

    /// [`reentered`](Self::reentered) for the calls that return no `Result`.
    pub(super) fn assert_not_reentered(&self, call: &'static str) {
        if let Err(e) = self.reentered(call) {
            panic!("{e}");
        }
    }
}

// The locks themselves (and the lane reads) are `shard.rs`'s.
#[inline(always)]
pub(super) fn write<V>(shard: &Shard<V>) -> Held<WriteGuard<'_, V>> {
    Held::new(shard, || shard.write())
}

#[inline(always)]
pub(super) fn read<V>(shard: &Shard<V>) -> Held<ReadGuard<'_, V>> {
    Held::new(shard, || shard.read())
}

/// [`write`] right after the call's re-entrancy check (see [`Held::after`]).
#[inline(always)]
pub(super) fn write_after<V>(shard: &Shard<V>, checked: Checked) -> Held<WriteGuard<'_, V>> {
    Held::after(shard, checked, || shard.write())
}

/// [`read`] right after the call's re-entrancy check (see [`Held::after`]).
#[inline(always)]
pub(super) fn read_after<V>(shard: &Shard<V>, checked: Checked) -> Held<ReadGuard<'_, V>> {
    Held::after(shard, checked, || shard.read())
}

/// A lane read of the shard ([`Shard::enter`]) right after the call's
/// re-entrancy check, marked as a lock is (a value's `Clone` calling back
/// into the store is refused: a write from inside would wait for this very
/// read); the mark back if the thread cannot read on its lane now, for
/// [`read_after`].
#[inline(always)]
pub(super) fn lane_after<V>(
    shard: &Shard<V>,
    checked: Checked,
) -> std::result::Result<(Held<&Engine<V>>, Entered<'_>), Checked> {
    match shard.enter() {
        Some((engine, entered)) => Ok((Held::after(shard, checked, || engine), entered)),
        None => Err(checked),
    }
}
