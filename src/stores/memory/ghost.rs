//! A ghost of fixed size: the 32-bit fingerprints of the last `cap` keys
//! evicted from the small queue, in a ring, with a hash index of the ring
//! cells still remembered. A fingerprint taken back (its key returned) is
//! forgotten at once; its cell stays until the ring comes round to it.
//!
//! About 10 bytes a remembered key (4 in the ring, a 4-byte bucket and its
//! control byte in the index), against 25-35 for 64-bit hashes in a queue
//! that also keeps tombstones. Two keys share a fingerprint with probability
//! `cap / 2^32` per lookup: a stranger is then taken for a returning key,
//! which costs at most one admission decision.

use hashbrown::HashTable;

#[derive(Clone, Debug)]
pub(crate) struct RingGhost {
    ring: Vec<u32>,
    /// The next cell to write (the oldest once the ring is full).
    head: usize,
    /// Ring positions of the remembered cells, hashed by their fingerprint.
    index: HashTable<u32>,
    cap: usize,
}

#[inline]
fn fingerprint(hash: u64) -> u32 {
    (hash ^ (hash >> 29)) as u32
}

#[inline]
fn spread(fp: u32) -> u64 {
    u64::from(fp).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl RingGhost {
    pub fn new(cap: usize) -> Self {
        RingGhost { ring: Vec::new(), head: 0, index: HashTable::new(), cap }
    }

    /// Remembers `hash`, forgetting the oldest cell if the ring is full.
    pub fn insert(&mut self, hash: u64) {
        if self.cap == 0 {
            return;
        }
        let fp = fingerprint(hash);
        let pos = self.head;
        if self.ring.len() < self.cap {
            self.ring.push(fp);
        } else {
            let old = self.ring[pos];
            if let Ok(entry) = self.index.find_entry(spread(old), |&p| p as usize == pos) {
                entry.remove();
            }
            self.ring[pos] = fp;
        }
        let ring = &self.ring;
        self.index.insert_unique(spread(fp), pos as u32, |&p| spread(ring[p as usize]));
        self.head = if pos + 1 == self.cap { 0 } else { pos + 1 };
    }

    /// Whether `hash` is remembered; forgets it if so.
    pub fn take(&mut self, hash: u64) -> bool {
        let fp = fingerprint(hash);
        let ring = &self.ring;
        match self.index.find_entry(spread(fp), |&p| ring[p as usize] == fp) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub fn clear(&mut self) {
        *self = RingGhost::new(self.cap);
    }

    /// How many keys are remembered.
    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Reserves room for one more cell (the wasm engine fails a `set` cleanly
    /// when memory is exhausted instead of aborting half-way).
    #[allow(dead_code)]
    pub fn try_reserve_one(&mut self) -> Result<(), hashbrown::TryReserveError> {
        if self.ring.len() < self.cap {
            self.ring.try_reserve(1).map_err(|_| hashbrown::TryReserveError::CapacityOverflow)?;
        }
        let ring = &self.ring;
        self.index.try_reserve(1, |&p| spread(ring[p as usize]))
    }

    /// Panics unless the index describes exactly the remembered ring cells.
    #[cfg(test)]
    pub fn validate(&self) {
        assert!(self.ring.len() <= self.cap && self.index.len() <= self.ring.len());
        for &p in self.index.iter() {
            let fp = self.ring[p as usize];
            assert!(self.index.find(spread(fp), |&q| q == p).is_some(), "cell {p} filed under its fingerprint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_cap_and_forgets_what_is_taken() {
        let mut g = RingGhost::new(3);
        let h = |i: u64| i.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        for i in 0..5 {
            g.insert(h(i));
            g.validate();
        }
        assert!(!g.take(h(0)) && !g.take(h(1)), "pushed out by the ring");
        assert!(g.take(h(3)));
        assert!(!g.take(h(3)), "taken once");
        assert_eq!(g.len(), 2);
        // The taken cell stays until the ring reaches it: the next insert overwrites 2.
        g.insert(h(5));
        assert!(!g.take(h(2)));
        assert!(g.take(h(4)) && g.take(h(5)));
        g.validate();
        g.clear();
        assert_eq!(g.len(), 0);
        let mut none = RingGhost::new(0);
        none.insert(h(1));
        assert!(!none.take(h(1)));
    }
}
