//! A count-min sketch of how often keys were seen recently, for TinyLFU
//! admission (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
//! Admission Policy", ACM TOS 2017), laid out as Caffeine's `FrequencySketch`:
//! 4-bit counters, sixteen to a `u64`, four counters per key, all four in one
//! 64-byte block of eight words (one cache miss per key, as Caffeine's
//! current layout: row i uses word 2i or 2i+1 of the block; the blocks are
//! aligned to 64 bytes, so that a block is one cache line, not two), and every
//! counter halved once `10 x capacity` increments have been counted, so that
//! what was popular long ago fades.
//!
//! Unlike Caffeine's (one word per cache entry), the table has one word per two
//! entries: eight counters per entry keep the error small enough to rank a
//! returning key against an eviction victim, at 4 bytes an entry.
//!
//! The table grows with the cache, as Caffeine's `ensureCapacity`: it starts
//! for [`START`] entries and doubles (forgetting its counts) whenever as many
//! new keys have been admitted as it was sized for, up to the cache's
//! capacity; a store sized for billions of entries that holds a few thousand
//! keeps a small sketch.
//!
//! Keys are given by their 64-bit hash; the engine never hands it a key.

const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;
/// A counter's ceiling.
pub(super) const MAX_COUNT: u8 = 15;

/// The entries a new sketch is sized for.
pub(super) const START: usize = 4096;
/// The most entries a sketch is sized for (a 4 GiB table).
const MOST: usize = 1 << 30;

/// Eight words: one key's four counters, on one cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
struct Block([u64; 8]);

#[derive(Clone, Debug)]
pub(crate) struct FrequencySketch {
    table: Box<[Block]>,
    /// Blocks minus one.
    mask: usize,
    /// The entries the table is sized for now, and at most.
    sized_for: usize,
    capacity: usize,
    /// New keys admitted since the table was last sized.
    admitted: usize,
    /// Increments counted since the last halving (Caffeine's `size`).
    size: u64,
    /// Halve every counter once `size` reaches this.
    sample_size: u64,
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MOST);
        Self::sized(capacity.min(START), capacity)
    }

    fn sized(sized_for: usize, capacity: usize) -> Self {
        let words = (sized_for.max(2).next_power_of_two() / 2).max(8);
        FrequencySketch {
            table: vec![Block::default(); words / 8].into_boxed_slice(),
            mask: words / 8 - 1,
            sized_for,
            capacity,
            admitted: 0,
            size: 0,
            sample_size: (sized_for as u64).saturating_mul(10),
        }
    }

    /// A new key enters the cache: counts it, first doubling the table if
    /// as many keys were admitted as it is sized for.
    #[inline]
    pub fn admit(&mut self, hash: u64) {
        self.admitted += 1;
        if self.admitted > self.sized_for && self.sized_for < self.capacity {
            self.grow();
        }
        self.increment(hash);
    }

    /// Doubles the table (up to the capacity), forgetting every count.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        *self = Self::sized(self.sized_for.saturating_mul(2).min(self.capacity), self.capacity);
    }

    /// Where `hash`'s counters are: its block, and the bits that pick a
    /// word and a counter in it for each row.
    #[inline(always)]
    fn place(&self, hash: u64) -> (usize, u32) {
        let block = (hash ^ (hash >> 32)) as usize & self.mask;
        // Another mix of the hash picks the words and the counters in them.
        (block, (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32)
    }

    /// Row `row`'s counter: a word of the block (2 x row or the next) and
    /// the counter's bit shift in it.
    #[inline(always)]
    fn lane(bits: u32, row: usize) -> (usize, u32) {
        let b = bits >> (row * 8);
        ((row << 1) + (b & 1) as usize, ((b >> 1) & 15) << 2)
    }

    /// The estimated count of `hash` (at most [`MAX_COUNT`]): never below the
    /// true count since the last halving, halved with it.
    pub fn frequency(&self, hash: u64) -> u8 {
        let (at, bits) = self.place(hash);
        let block = &self.table[at].0;
        let mut min = u64::from(MAX_COUNT);
        for row in 0..4 {
            let (word, shift) = Self::lane(bits, row);
            min = min.min((block[word] >> shift) & 0xF);
        }
        min as u8
    }

    /// Starts loading the block `hash` counts in into the CPU's cache, for
    /// an [`admit`](Self::admit) of it soon: a new key's block is nearly
    /// always a cache miss in a large sketch.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        prefetch(self.table.as_ptr().wrapping_add(self.place(hash).0));
    }

    /// Counts one more occurrence of `hash`.
    #[inline]
    pub fn increment(&mut self, hash: u64) {
        // `increment_by(hash, 1)` without its clamps: each of the four
        // counters gains one unless it is saturated (every new key and every
        // shadow access comes here; a test checks both give the same table).
        let (at, bits) = self.place(hash);
        let block = &mut self.table[at].0;
        let mut added = 0;
        for row in 0..4 {
            let (word, shift) = Self::lane(bits, row);
            let add = u64::from((block[word] >> shift) & 0xF != u64::from(MAX_COUNT));
            block[word] += add << shift;
            added |= add;
        }
        self.size += added;
        if self.size >= self.sample_size {
            self.halve();
        }
    }

    /// Counts `n` more occurrences of `hash` (the hits an entry gathered
    /// since it was last looked at, handed over in one batch), in one pass
    /// over the four counters: as `n` calls of [`increment`](Self::increment),
    /// except that a halving due in the middle of the batch comes after it.
    #[inline]
    pub fn increment_by(&mut self, hash: u64, n: u8) {
        let n = u64::from(n.min(MAX_COUNT));
        let (at, bits) = self.place(hash);
        let block = &mut self.table[at].0;
        let mut added = 0;
        for row in 0..4 {
            let (word, shift) = Self::lane(bits, row);
            let add = n.min(u64::from(MAX_COUNT) - ((block[word] >> shift) & 0xF));
            block[word] += add << shift;
            added = added.max(add);
        }
        self.size += added;
        if self.size >= self.sample_size {
            self.halve();
        }
    }

    /// Halves every counter (the aging step), correcting `size` for the odd
    /// counters' lost halves as Caffeine does.
    #[cold]
    #[inline(never)]
    fn halve(&mut self) {
        let mut odd = 0u64;
        for word in self.table.iter_mut().flat_map(|block| block.0.iter_mut()) {
            odd += u64::from((*word & ONE_MASK).count_ones());
            *word = (*word >> 1) & RESET_MASK;
        }
        self.size = (self.size - (odd >> 2).min(self.size)) >> 1;
    }

    /// Forgets every count.
    #[cfg(test)]
    pub fn clear(&mut self) {
        self.table.fill(Block::default());
        self.size = 0;
    }

    /// Heap bytes.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.table.len() * 64
    }

    /// Where the table is (its blocks must be on cache-line boundaries).
    #[cfg(test)]
    pub fn table_address(&self) -> usize {
        self.table.as_ptr() as usize
    }
}

/// Asks the CPU to start loading the cache line at `at` (a hint: it changes
/// nothing any code reads; nothing on targets without the instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(at: *const T) {
    // SAFETY: SSE is in every x86_64 target's baseline, and a prefetch reads
    // nothing: any address, even an invalid one, is allowed.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(i: u64) -> u64 {
        // A well-mixed 64-bit hash of i (splitmix64's finaliser).
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn never_underestimates_and_saturates() {
        let mut s = FrequencySketch::new(1_000);
        // Fewer increments than a sample: no halving.
        for i in 0..500u64 {
            for _ in 0..(i % 7) {
                s.increment(spread(i));
            }
        }
        for i in 0..500u64 {
            assert!(s.frequency(spread(i)) >= (i % 7) as u8, "key {i}");
        }
        for _ in 0..40 {
            s.increment(spread(9_999));
        }
        assert_eq!(s.frequency(spread(9_999)), MAX_COUNT);
        // Most keys never seen read as (near) zero: the sketch is not saturated.
        let zero = (10_000..11_000u64).filter(|&i| s.frequency(spread(i)) == 0).count();
        assert!(zero > 700, "{zero} of 1000 unseen keys read zero");
    }

    #[test]
    fn every_block_is_one_cache_line() {
        // A block across two lines cost a new key two cache misses (churn:
        // 1.9 a key in callgrind's cache simulation, against 1.0 aligned).
        let mut sketches: Vec<FrequencySketch> =
            [1, 64, 100, 1_000, 4_096, 100_000, 1 << 20].into_iter().map(FrequencySketch::new).collect();
        let mut grown = FrequencySketch::new(usize::MAX);
        for i in 0..(START as u64 + 1) {
            grown.admit(spread(i));
        }
        sketches.push(grown.clone());
        sketches.push(grown);
        for s in &sketches {
            assert_eq!(s.table_address() % 64, 0, "a sketch of {} bytes", s.heap_bytes());
        }
    }

    #[test]
    fn grows_with_the_keys_admitted_up_to_the_capacity() {
        let mut s = FrequencySketch::new(usize::MAX);
        assert_eq!(s.heap_bytes(), START / 2 * 8, "starts small whatever the capacity");
        for i in 0..(START as u64 + 1) {
            s.admit(spread(i));
        }
        assert_eq!(s.heap_bytes(), START * 8, "doubled after START admissions");
        assert_eq!(s.frequency(spread(START as u64)), 1, "the admission that grew it is counted");
        let mut small = FrequencySketch::new(100);
        for i in 0..10_000 {
            small.admit(spread(i));
        }
        assert_eq!(small.heap_bytes(), 64 * 8, "never beyond the capacity");
    }

    #[test]
    fn a_batch_counts_as_many_single_increments() {
        let (mut one, mut batch) = (FrequencySketch::new(1_000), FrequencySketch::new(1_000));
        for i in 0..300u64 {
            let n = (i % 20) as u8;
            for _ in 0..n {
                one.increment(spread(i));
            }
            batch.increment_by(spread(i), n);
        }
        assert_eq!(one.table, batch.table);
        assert_eq!(one.size, batch.size);
        // Against exact counts: a key's four counters each hold at least its count.
        let mut exact = std::collections::HashMap::new();
        for i in 0..300u64 {
            *exact.entry(i).or_insert(0u64) += i % 20;
        }
        for (&i, &n) in &exact {
            assert!(u64::from(batch.frequency(spread(i))) >= n.min(15), "key {i}");
        }
    }

    #[test]
    fn halves_after_ten_times_capacity_increments() {
        let mut s = FrequencySketch::new(64);
        for _ in 0..12 {
            s.increment(spread(1));
        }
        assert_eq!(s.frequency(spread(1)), 12);
        // 640 increments in all trigger one halving.
        for i in 0..(640 - 12) {
            s.increment(spread(1_000 + i));
        }
        let f = s.frequency(spread(1));
        assert!((6..=7).contains(&f), "halved from 12 (plus collisions): {f}");
        s.clear();
        assert_eq!(s.frequency(spread(1)), 0);
    }

    #[test]
    fn ranks_a_frequent_key_above_a_rare_one() {
        let mut s = FrequencySketch::new(100);
        for round in 0..5u64 {
            for i in 0..50u64 {
                s.increment(spread(i));
                s.increment(spread(1_000 + round * 50 + i));
            }
        }
        let frequent = (0..50u64).filter(|&i| s.frequency(spread(i)) > s.frequency(spread(1_000 + i))).count();
        assert!(frequent >= 45, "{frequent}");
    }
}
