//! The ghost: the keys recently evicted from S3-FIFO's small queue, as 32-bit
//! fingerprints in buckets of four (one 16-byte word each). A key goes to the
//! bucket its hash picks, pushing out the oldest of the four; a fingerprint
//! taken back (its key returned) is cleared at once.
//!
//! With `cap / 4` buckets the ghost remembers about the last `cap` evicted
//! keys (each bucket its last four), at 4 bytes a key, and every insert or
//! lookup touches one bucket: one cache miss, where a FIFO with a hash index
//! took three or four and rehashed its index as it churned. Two keys share a
//! fingerprint with probability about 2^-28 per lookup (a shard's keys share
//! a few hash bits): a stranger is then taken for a returning key, which
//! costs at most one admission decision.
//!
//! The table is allocated by the first insert, i.e. at the first eviction,
//! when the cache already holds its whole capacity: a store sized for far
//! more entries than it ever holds allocates none.

/// The fingerprint of `hash` (never 0, which marks an empty lane).
#[inline]
pub(super) fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32).max(1)
}

/// The bucket of `hash` among `buckets`.
#[inline]
pub(super) fn bucket_of(hash: u64, buckets: usize) -> usize {
    ((u64::from(hash as u32) * buckets as u64) >> 32) as usize
}

/// The buckets a ghost of `cap` keys has.
pub(super) fn buckets_for(cap: usize) -> usize {
    cap.div_ceil(4)
}

/// Four fingerprints, oldest in lane 0; 0 marks an empty lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Bucket([u32; 4]);

#[derive(Clone, Debug)]
pub(crate) struct BucketGhost {
    table: Vec<Bucket>,
    buckets: usize,
}

impl BucketGhost {
    pub fn new(cap: usize) -> Self {
        BucketGhost { table: Vec::new(), buckets: buckets_for(cap) }
    }

    /// Remembers `hash`, forgetting the oldest key of its bucket.
    #[inline]
    pub fn insert(&mut self, hash: u64) {
        if self.table.is_empty() {
            if self.buckets == 0 {
                return;
            }
            self.allocate();
        }
        let b = &mut self.table[bucket_of(hash, self.buckets)].0;
        *b = [b[1], b[2], b[3], fingerprint(hash)];
    }

    /// The table, at the first insert (out of line: once in a ghost's life).
    #[cold]
    #[inline(never)]
    fn allocate(&mut self) {
        self.table = vec![Bucket::default(); self.buckets];
    }

    /// Starts loading the bucket of `hash` into the CPU's cache, for a
    /// [`take`](Self::take) of it soon (see `FrequencySketch::prefetch`).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if !self.table.is_empty() {
            super::sketch::prefetch(self.table.as_ptr().wrapping_add(bucket_of(hash, self.buckets)));
        }
    }

    /// Whether `hash` is remembered; forgets it if so (the oldest lane
    /// holding its fingerprint, if two do).
    #[inline]
    pub fn take(&mut self, hash: u64) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let fp = fingerprint(hash);
        let b = &mut self.table[bucket_of(hash, self.buckets)].0;
        // The four lanes compared at once (no branch per lane).
        let found = u32::from(b[0] == fp)
            | u32::from(b[1] == fp) << 1
            | u32::from(b[2] == fp) << 2
            | u32::from(b[3] == fp) << 3;
        if found == 0 {
            return false;
        }
        b[found.trailing_zeros() as usize] = 0;
        true
    }

    pub fn clear(&mut self) {
        self.table.fill(Bucket::default());
    }

    /// Heap bytes.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.table.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Against a plain reference: per bucket, the last four hashes inserted,
    /// minus those taken back.
    #[test]
    fn matches_a_plain_reference() {
        for cap in [0usize, 1, 3, 4, 5, 17, 100] {
            let mut ghost = BucketGhost::new(cap);
            let buckets = buckets_for(cap);
            let mut model: Vec<std::collections::VecDeque<Option<u64>>> = vec![Default::default(); buckets];
            let mut x = 7u64;
            for step in 0..5_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let key = h((x >> 33) % 300);
                if step % 3 == 0 {
                    let expected = buckets > 0 && {
                        let q = &mut model[bucket_of(key, buckets)];
                        match q.iter_mut().find(|c| **c == Some(key)) {
                            Some(c) => {
                                *c = None;
                                true
                            }
                            None => false,
                        }
                    };
                    assert_eq!(ghost.take(key), expected, "cap {cap} step {step}");
                } else {
                    ghost.insert(key);
                    if buckets > 0 {
                        let q = &mut model[bucket_of(key, buckets)];
                        q.push_back(Some(key));
                        if q.len() > 4 {
                            q.pop_front();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn remembers_about_cap_keys_and_allocates_at_the_first_insert() {
        let mut g = BucketGhost::new(1_000);
        assert_eq!(g.heap_bytes(), 0);
        assert!(!g.take(h(1)));
        for i in 0..1_000 {
            g.insert(h(i));
        }
        assert_eq!(g.heap_bytes(), 250 * 16);
        let kept = (0..1_000).filter(|&i| g.take(h(i))).count();
        // A bucket keeps its last four: some buckets got more than four.
        assert!((600..=1_000).contains(&kept), "{kept}");
        assert!(!g.take(h(5)), "taken once");
        g.clear();
        assert!(!g.take(h(999)));
        // A store far larger than what it holds allocates nothing.
        assert_eq!(BucketGhost::new(usize::MAX / 2).heap_bytes(), 0);
    }
}
