//! Classic S3-FIFO's ghost, shared by the memory engine (64-bit key hashes)
//! and the JS store's slot engine (32-bit ones): the hashes of the keys
//! recently evicted from the small queue, a FIFO of at most `cap`. A hash
//! taken back (its key came back) frees its place at once, as in
//! libCacheSim; its queue cell stays behind as a tombstone until it reaches
//! the front or the queue is compacted (tombstones stay under 2 x `cap`).
//! Insert, take: O(1) amortized.
//!
//! The adaptive policy uses a fixed-size ghost instead (`ghost.rs`).

use std::collections::VecDeque;

use hashbrown::HashTable;

/// A hash the ghost remembers, and the hash its index files it under.
pub(crate) trait GhostHash: Copy + Eq {
    fn table_hash(self) -> u64;
}

impl GhostHash for u64 {
    /// The engine's key hashes are already mixed.
    #[inline]
    fn table_hash(self) -> u64 {
        self
    }
}

impl GhostHash for u32 {
    /// A multiply, then the high half folded down: the table picks a bucket
    /// from the low bits (of a 32-bit word on wasm32), and the low bits of a
    /// product depend only on the low bits of the hash.
    #[inline]
    fn table_hash(self) -> u64 {
        let x = u64::from(self).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29) ^ (x >> 47)
    }
}

pub(crate) struct FifoGhost<H> {
    /// Hashes in eviction order; `queue[i]` has sequence number `front + i`.
    queue: VecDeque<H>,
    front: u64,
    /// The sequence numbers of the remembered (non-tombstone) cells.
    index: HashTable<u64>,
    cap: usize,
}

impl<H: GhostHash> FifoGhost<H> {
    pub(crate) fn new(cap: usize) -> Self {
        FifoGhost { queue: VecDeque::new(), front: 0, index: HashTable::new(), cap }
    }

    fn hash_at(queue: &VecDeque<H>, front: u64, seq: u64) -> H {
        queue[(seq - front) as usize]
    }

    /// Remembers `hash`, forgetting the oldest remembered if it is full.
    pub(crate) fn insert(&mut self, hash: H) {
        if self.cap == 0 {
            return;
        }
        while self.index.len() >= self.cap {
            self.pop_front();
        }
        if self.queue.len() >= 2 * self.cap {
            self.compact();
        }
        let seq = self.front + self.queue.len() as u64;
        self.queue.push_back(hash);
        Self::file(&mut self.index, &self.queue, self.front, seq);
    }

    /// Makes room for one [`insert`](Self::insert), so that it allocates
    /// nothing: whether the memory had room. The JS store's engine reserves
    /// this before a call changes anything (an allocation cut short half-way
    /// through a set, by a stack overflow or the memory exhausted, would
    /// leave the engine half-updated). `insert` only removes before it adds
    /// one cell and one index entry (a removal never takes the table's room:
    /// hashbrown counts room, not tombstones, down).
    #[cfg(any(test, all(target_arch = "wasm32", target_os = "unknown", feature = "js")))] // the slot engine
    pub(crate) fn try_reserve_one(&mut self) -> bool {
        if self.cap == 0 {
            return true;
        }
        if self.queue.try_reserve(1).is_err() {
            return false;
        }
        let (queue, front) = (&self.queue, self.front);
        self.index.try_reserve(1, |&s| Self::hash_at(queue, front, s).table_hash()).is_ok()
    }

    /// Files the cell `seq` of `queue` in `index`. The one insert into the
    /// table, so that one growth path (hashbrown's `reserve_rehash`, 1.6 KB
    /// of wasm per hasher closure) is compiled, not one per call site.
    fn file(index: &mut HashTable<u64>, queue: &VecDeque<H>, front: u64, seq: u64) {
        let hash = Self::hash_at(queue, front, seq).table_hash();
        index.insert_unique(hash, seq, |&s| Self::hash_at(queue, front, s).table_hash());
    }

    fn pop_front(&mut self) {
        let Some(hash) = self.queue.pop_front() else { return };
        let seq = self.front;
        self.front += 1;
        if let Ok(entry) = self.index.find_entry(hash.table_hash(), |&s| s == seq) {
            entry.remove();
        }
    }

    /// Drops the tombstones, renumbering the remembered cells.
    fn compact(&mut self) {
        let (index, mut seq) = (&self.index, self.front);
        self.queue.retain(|&hash| {
            let live = index.find(hash.table_hash(), |&s| s == seq).is_some();
            seq += 1;
            live
        });
        self.index.clear();
        self.front = 0;
        for seq in 0..self.queue.len() as u64 {
            Self::file(&mut self.index, &self.queue, 0, seq);
        }
    }

    /// Whether `hash` is remembered; forgets it if so.
    pub(crate) fn take(&mut self, hash: H) -> bool {
        let (queue, front) = (&self.queue, self.front);
        match self.index.find_entry(hash.table_hash(), |&s| Self::hash_at(queue, front, s) == hash) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = FifoGhost::new(self.cap);
    }

    /// Resizes to `cap`, forgetting the oldest beyond it.
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        while self.index.len() > cap {
            self.pop_front();
        }
        // Tombstones stay bounded by twice the (new) capacity.
        if self.queue.len() > 2 * cap.max(1) {
            self.compact();
        }
    }

    /// The capacity of its queue and the bytes its table holds (a test sees
    /// whether a call allocated: a removal lowers the table's `capacity`).
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> [usize; 2] {
        [self.queue.capacity(), self.index.allocation_size()]
    }

    /// Panics unless the ghost is within its bounds.
    #[cfg(test)]
    pub(crate) fn validate(&self) {
        assert!(self.index.len() <= self.cap && self.index.len() <= self.queue.len());
        assert!(self.queue.len() <= 2 * self.cap.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain reference, a `VecDeque` of the remembered hashes,
    /// oldest first, for both hash widths, through capacity changes.
    fn matches_a_plain_reference<H: GhostHash + std::fmt::Debug>(hash: impl Fn(u64) -> H) {
        for cap in [0usize, 1, 2, 5, 40] {
            let mut ghost = FifoGhost::new(cap);
            let mut model: VecDeque<H> = VecDeque::new();
            let mut model_cap = cap;
            let mut x = 11u64;
            for step in 0..4_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let h = hash((x >> 33) % 60);
                match step % 7 {
                    0..=2 => {
                        let expected = model.iter().position(|&m| m == h).map(|at| model.remove(at)).is_some();
                        assert_eq!(ghost.take(h), expected, "cap {model_cap} step {step}");
                    }
                    3 if step % 500 == 3 => {
                        model_cap = (x >> 40) as usize % 50;
                        ghost.set_cap(model_cap);
                        while model.len() > model_cap {
                            model.pop_front();
                        }
                    }
                    _ if !model.contains(&h) => {
                        ghost.insert(h);
                        if model_cap > 0 {
                            if model.len() >= model_cap {
                                model.pop_front();
                            }
                            model.push_back(h);
                        }
                    }
                    _ => {}
                }
                ghost.validate();
            }
        }
    }

    #[test]
    fn matches_a_plain_reference_64() {
        matches_a_plain_reference(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }

    #[test]
    fn matches_a_plain_reference_32() {
        matches_a_plain_reference(|i| i as u32);
    }
}
