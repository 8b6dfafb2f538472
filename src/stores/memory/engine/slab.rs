//! The engine's storage: a slab of slots addressed by a `u32` id, and the
//! intrusive doubly linked lists threaded through them.
//!
//! An id stays the same for the life of an entry. Freed slots are chained
//! into a free list and reused, so churn allocates nothing but the key. The
//! lists (one recency list under LRU, set order under TTL; the small and main
//! FIFO queues under S3-FIFO) are linked through each slot's `prev`/`next`:
//! insert, unlink, move to a head: O(1).
//!
//! It also keeps each list's total weight: every entry weighs 1, unless the
//! slab is [`weighted`](Slab::weighted), when each slot's weight is kept in a
//! side vector (so an unweighted slab's slots carry nothing more).
//!
//! This file owns the links, the weights and the free list and nothing else: it never
//! looks at a key, a value or a time. `slab_tests.rs` drives it alone against
//! a plain `VecDeque` per list, checking [`Slab::validate`] after every step.

use std::sync::atomic::AtomicU8;

use crate::clock::Nanos;
use crate::removal::RemovalReason;
use crate::store::Metadata;

/// "No slot": the end of a list, or an empty free list.
pub(super) const NIL: u32 = u32::MAX;
/// The most entries one engine can hold (slot ids are `u32`, `NIL` excluded).
pub(super) const MAX_SLOTS: usize = NIL as usize;
/// The `expires_at` of an entry without a TTL.
pub(super) const NEVER: Nanos = Nanos::MAX;

/// The list an entry is on. LRU and TTL use only `MAIN`.
pub(super) const SMALL: u8 = 0;
pub(super) const MAIN: u8 = 1;
/// The `list` of a free slot.
pub(super) const FREE: u8 = 2;

pub(super) struct Slot<V> {
    pub(super) key: Box<str>,
    /// `None` only on a free slot.
    pub(super) value: Option<V>,
    // Boxed: most entries carry none, and a map is three words.
    pub(super) metadata: Option<Box<Metadata>>,
    pub(super) expires_at: Nanos,
    prev: u32,
    /// The next slot on its list, or on the free list.
    next: u32,
    /// S3-FIFO's access count (bits 0-1, saturating at `MAX_FREQ`) and,
    /// under the adaptive policy, the hits since the entry was last looked at
    /// by the eviction (bits 2-5, saturating at 15), which the sketch takes
    /// in one batch then. Atomic so that a shared read can bump it.
    pub(super) freq: AtomicU8,
    /// The list it is on ([`SMALL`], [`MAIN`]), or [`FREE`].
    list: u8,
    /// When it was last set, wrapping: breaks ties between equal expiry
    /// times (the entry set first goes first). Fits in the slot's padding.
    pub(super) seq: u32,
    /// Whether it has a time-to-idle (its clock is in the engine's idle
    /// table, `idle.rs`). Fits in the slot's padding.
    pub(super) idle: bool,
}

impl<V> Slot<V> {
    /// A new entry, on no list yet.
    #[inline]
    pub(super) fn new(key: Box<str>, value: V, metadata: Option<Box<Metadata>>, expires_at: Nanos, seq: u32) -> Self {
        Slot {
            key,
            value: Some(value),
            metadata,
            expires_at,
            prev: NIL,
            next: NIL,
            freq: AtomicU8::new(0),
            list: FREE,
            seq,
            idle: false,
        }
    }

    /// The list it is on, or [`FREE`].
    #[inline]
    pub(super) fn list(&self) -> u8 {
        self.list
    }

    /// The live value (a free slot has none).
    #[inline]
    pub(super) fn value(&self) -> &V {
        self.value.as_ref().expect("a live slot holds a value")
    }
}

/// An entry taken out of the engine, handed back so the caller drops it (or
/// hands it to a removal listener) after the engine is consistent again (a
/// value's `Drop` may panic), with why it left.
pub(crate) struct Removed<V> {
    key: Box<str>,
    value: V,
    _metadata: Option<Box<Metadata>>,
    reason: RemovalReason,
}

impl<V> Removed<V> {
    /// The old value and metadata of an entry a `set` replaced (the key
    /// stays: it is the key of that `set`, and is left empty here).
    pub(crate) fn replaced(value: Option<V>, metadata: Option<Box<Metadata>>) -> Self {
        Removed {
            key: Box::default(),
            value: value.expect("a live slot holds a value"),
            _metadata: metadata,
            reason: RemovalReason::Replaced,
        }
    }

    /// Takes the key's buffer if the key is `len` bytes long (never for an
    /// entry a `set` replaced, whose key is left empty), leaving an empty
    /// key: for a new key of that length, when nobody will be told of this
    /// entry (the store has no removal listener).
    #[inline]
    pub(super) fn take_key_of_len(&mut self, len: usize) -> Option<Box<str>> {
        (len != 0 && self.key.len() == len).then(|| std::mem::take(&mut self.key))
    }

    /// What a removal listener is told: the key (`call_key`, the key of the
    /// call that removed it, for an entry a `set` replaced), the value and why.
    pub(crate) fn into_notice(self, call_key: &str) -> (Box<str>, V, RemovalReason) {
        let key = if self.reason == RemovalReason::Replaced { call_key.into() } else { self.key };
        (key, self.value, self.reason)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: usize,
    /// The sum of its entries' weights (`len` in an unweighted slab).
    pub(super) weight: u64,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL, len: 0, weight: 0 };
}

pub(super) struct Slab<V> {
    slots: Vec<Slot<V>>,
    /// The first free slot, chained through `next`.
    free: u32,
    lists: [List; 2],
    live: usize,
    /// Each slot's weight, by id, in a weighted slab; empty otherwise (every
    /// entry then weighs 1).
    weights: Vec<u64>,
    weighted: bool,
}

impl<V> Slab<V> {
    /// Slot `id`, without the bounds check of `slab[id]`.
    ///
    /// # Safety
    /// `id` is a slot of this slab (`slab[id]` would not panic).
    #[inline(always)]
    pub(super) unsafe fn get_unchecked(&self, id: u32) -> &Slot<V> {
        debug_assert!((id as usize) < self.slots.len());
        // SAFETY: the caller's promise.
        unsafe { self.slots.get_unchecked(id as usize) }
    }
}

impl<V> std::ops::Index<u32> for Slab<V> {
    type Output = Slot<V>;
    #[inline(always)]
    fn index(&self, id: u32) -> &Slot<V> {
        &self.slots[id as usize]
    }
}

impl<V> std::ops::IndexMut<u32> for Slab<V> {
    #[inline(always)]
    fn index_mut(&mut self, id: u32) -> &mut Slot<V> {
        &mut self.slots[id as usize]
    }
}

impl<V> Slab<V> {
    pub(super) fn new() -> Self {
        Slab { slots: Vec::new(), free: NIL, lists: [List::EMPTY; 2], live: 0, weights: Vec::new(), weighted: false }
    }

    /// Makes the slab keep a weight per slot (while it is empty).
    pub(super) fn weigh(&mut self) {
        debug_assert_eq!(self.live, 0);
        self.weighted = true;
    }

    /// Whether each slot has its own weight.
    #[inline]
    pub(super) fn weighted(&self) -> bool {
        self.weighted
    }

    /// The weight of live slot `id` (1 in an unweighted slab).
    #[inline]
    pub(super) fn weight_of(&self, id: u32) -> u64 {
        if self.weighted { self.weights[id as usize] } else { 1 }
    }

    /// The total weight of the live slots (their count in an unweighted slab).
    #[inline]
    pub(super) fn weight(&self) -> u64 {
        self.lists[0].weight + self.lists[1].weight
    }

    /// Gives live slot `id` of a weighted slab a new weight.
    pub(super) fn set_weight(&mut self, id: u32, weight: u64) {
        debug_assert!(self.weighted);
        let list = &mut self.lists[self.slots[id as usize].list as usize];
        list.weight = list.weight - self.weights[id as usize] + weight;
        self.weights[id as usize] = weight;
    }

    /// How many slots are live.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Whether a new entry would need a slot past [`MAX_SLOTS`].
    pub(super) fn is_full(&self) -> bool {
        self.free == NIL && self.slots.len() as u64 >= MAX_SLOTS as u64
    }

    /// `list`'s head, tail and length.
    #[inline]
    pub(super) fn list(&self, list: u8) -> List {
        self.lists[list as usize]
    }

    /// Stores `slot`, weighing `weight` (1 in an unweighted slab), in a free
    /// slot (or a new one) at the head of `list`; its id.
    #[inline]
    pub(super) fn insert(&mut self, mut slot: Slot<V>, list: u8, weight: u64) -> u32 {
        debug_assert!(self.weighted || weight == 1);
        slot.list = list;
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.slots[id as usize].next;
            // A free slot holds nothing to drop (`remove` took its key,
            // value and metadata): overwritten without its drop glue.
            let old = std::mem::replace(&mut self.slots[id as usize], slot);
            debug_assert!(old.key.is_empty() && old.value.is_none() && old.metadata.is_none());
            std::mem::forget(old);
            id
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        if self.weighted {
            if self.weights.len() <= id as usize {
                self.weights.resize(id as usize + 1, 0);
            }
            self.weights[id as usize] = weight;
        }
        self.push_head(list, id);
        self.lists[list as usize].weight += weight;
        self.live += 1;
        id
    }

    /// Takes live slot `id` off its list and frees it; its entry, leaving
    /// for `reason`.
    #[inline]
    pub(super) fn remove(&mut self, id: u32, reason: RemovalReason) -> Removed<V> {
        let list = self.slots[id as usize].list;
        self.unlink(list, id);
        self.lists[list as usize].weight -= self.weight_of(id);
        let slot = &mut self.slots[id as usize];
        let removed = Removed {
            key: std::mem::take(&mut slot.key),
            value: slot.value.take().expect("a live slot holds a value"),
            _metadata: slot.metadata.take(),
            reason,
        };
        slot.expires_at = NEVER;
        slot.list = FREE;
        slot.prev = NIL;
        slot.next = self.free;
        self.free = id;
        self.live -= 1;
        removed
    }

    /// Makes live slot `id` a new entry weighing `weight` at the head of
    /// `list` (`value`, no metadata, no expiry, `seq`, its counts at zero,
    /// not idle), handing back the entry it held, leaving for `reason`: what
    /// [`remove`](Self::remove) then [`insert`](Self::insert) do when the
    /// insert takes the slot the remove freed (an eviction for a new key),
    /// without the round trip through the free list. Its key becomes `key`,
    /// or with `None` stays the buffer the slot holds (which the caller has
    /// just written the new key into; the entry handed back then has an
    /// empty key).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn replace(
        &mut self,
        id: u32,
        key: Option<Box<str>>,
        value: V,
        seq: u32,
        list: u8,
        weight: u64,
        reason: RemovalReason,
    ) -> Removed<V> {
        debug_assert!(self.weighted || weight == 1);
        let from = self.slots[id as usize].list;
        debug_assert!(from != FREE, "slot {id} is live");
        self.unlink(from, id);
        self.lists[from as usize].weight -= self.weight_of(id);
        if self.weighted {
            self.weights[id as usize] = weight;
        }
        let slot = &mut self.slots[id as usize];
        let removed = Removed {
            key: key.map_or_else(Box::default, |key| std::mem::replace(&mut slot.key, key)),
            value: slot.value.replace(value).expect("a live slot holds a value"),
            _metadata: slot.metadata.take(),
            reason,
        };
        slot.expires_at = NEVER;
        slot.seq = seq;
        *slot.freq.get_mut() = 0;
        slot.idle = false;
        slot.list = list;
        self.push_head(list, id);
        self.lists[list as usize].weight += weight;
        removed
    }

    /// Empties the slab, handing back the live entries for the caller to
    /// drop once the rest of the engine is consistent.
    pub(super) fn take_all(&mut self, reason: RemovalReason) -> Vec<Removed<V>> {
        let slots = std::mem::take(&mut self.slots);
        *self = Slab { weighted: self.weighted, ..Slab::new() };
        slots
            .into_iter()
            .filter(|slot| slot.list != FREE)
            .map(|slot| Removed {
                key: slot.key,
                value: slot.value.expect("a live slot holds a value"),
                _metadata: slot.metadata,
                reason,
            })
            .collect()
    }

    /// Moves `id` to the head of its own list (every exact-LRU hit: inlined).
    ///
    /// Written out rather than as `unlink` + `push_head`: the list's length
    /// and weight stay as they are, the slot is indexed once, and a slot
    /// that is not the head has a `prev` (fewer bounds checks and branches
    /// on every LRU hit; the slab model test drives it against a `VecDeque`).
    #[inline(always)]
    pub(super) fn move_to_head(&mut self, id: u32) {
        let Slab { slots, lists, .. } = self;
        let slot = &slots[id as usize];
        let (list, prev, next) = (slot.list, slot.prev, slot.next);
        let l = &mut lists[list as usize];
        let old_head = l.head;
        if old_head == id {
            return;
        }
        // Not the head: it has a previous slot, and the old head is another slot.
        slots[prev as usize].next = next;
        if next != NIL {
            slots[next as usize].prev = prev;
        } else {
            l.tail = prev;
        }
        slots[old_head as usize].prev = id;
        let slot = &mut slots[id as usize];
        slot.prev = NIL;
        slot.next = old_head;
        l.head = id;
    }

    /// Starts loading the first bytes of slot `id`'s key (if `id` is a
    /// slot) into the CPU's cache, for a read of them soon.
    #[inline(always)]
    pub(super) fn prefetch_key(&self, id: u32) {
        if let Some(slot) = self.slots.get(id as usize) {
            crate::stores::memory::sketch::prefetch(slot.key.as_ptr());
        }
    }

    /// Moves `id` from its list to the head of `list`.
    #[inline]
    pub(super) fn move_to(&mut self, id: u32, list: u8) {
        let from = self.slots[id as usize].list;
        self.unlink(from, id);
        self.slots[id as usize].list = list;
        self.push_head(list, id);
        let weight = self.weight_of(id);
        self.lists[from as usize].weight -= weight;
        self.lists[list as usize].weight += weight;
    }

    /// The live ids on `list`, head first.
    pub(super) fn iter(&self, list: u8) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(self.lists[list as usize].head).filter(|&id| id != NIL), move |&id| {
            Some(self.slots[id as usize].next).filter(|&next| next != NIL)
        })
    }

    /// The live ids, in slot order.
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&id| self.slots[id as usize].list != FREE)
    }

    #[inline]
    fn push_head(&mut self, list: u8, id: u32) {
        let l = &mut self.lists[list as usize];
        let old_head = l.head;
        self.slots[id as usize].prev = NIL;
        self.slots[id as usize].next = old_head;
        if old_head != NIL {
            self.slots[old_head as usize].prev = id;
        } else {
            l.tail = id;
        }
        l.head = id;
        l.len += 1;
    }

    #[inline]
    fn unlink(&mut self, list: u8, id: u32) {
        let (prev, next) = (self.slots[id as usize].prev, self.slots[id as usize].next);
        let l = &mut self.lists[list as usize];
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            l.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            l.tail = prev;
        }
        l.len -= 1;
    }

    /// Panics unless the lists and the free list describe exactly the slots:
    /// every live slot on the list it names, once, with matching links and
    /// lengths; every other slot free, without a value, on the free list.
    #[cfg(all(test, not(target_arch = "wasm32")))] // the slab model test runs natively (proptest)
    pub(super) fn validate(&self) {
        let mut on_lists = 0;
        for list in [SMALL, MAIN] {
            let l = self.lists[list as usize];
            let (mut id, mut prev, mut n, mut weight) = (l.head, NIL, 0, 0);
            while id != NIL {
                let slot = &self.slots[id as usize];
                weight += self.weight_of(id);
                assert_eq!(slot.list, list, "slot {id} on the wrong list");
                assert_eq!(slot.prev, prev, "broken prev link at {id}");
                assert!(slot.value.is_some(), "live slot {id} without a value");
                prev = id;
                id = slot.next;
                n += 1;
                assert!(n <= self.slots.len(), "a cycle on list {list}");
            }
            assert_eq!(l.tail, prev, "tail");
            assert_eq!(l.len, n, "list length");
            assert_eq!(l.weight, weight, "list weight is the sum of its entries' weights");
            on_lists += n;
        }
        assert_eq!(on_lists, self.live, "every live entry is on exactly one list");
        let (mut id, mut free) = (self.free, 0);
        while id != NIL {
            let slot = &self.slots[id as usize];
            assert_eq!(slot.list, FREE);
            assert!(slot.value.is_none() && slot.metadata.is_none());
            id = slot.next;
            free += 1;
            assert!(free <= self.slots.len(), "a cycle on the free list");
        }
        assert_eq!(free + self.live, self.slots.len(), "free list");
    }
}
