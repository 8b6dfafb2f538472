//! The hash function for keys on wasm32.
//!
//! Natively the engine uses hashbrown's default (foldhash), whose mixing step
//! is a 64x64->128-bit multiply: one instruction on x86-64 and ARM, a library
//! call on wasm32, where it took about a tenth of a whole `get` from JS. This
//! hasher mixes with 64-bit multiplies only, which wasm has natively, and is
//! keyed by a random seed per store so that keys chosen by an attacker cannot
//! be made to collide without knowing it.

use std::hash::{BuildHasher, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Makes [`SeededHasher`]s that share one seed.
#[derive(Clone, Debug)]
pub(crate) struct SeededState {
    seed: u64,
}

impl SeededState {
    pub fn with_seed(seed: u64) -> Self {
        SeededState { seed }
    }
}

#[cfg(target_arch = "wasm32")]
impl Default for SeededState {
    /// From the JS host's `Math.random()` with the `js` feature; otherwise
    /// from std's `RandomState` (the WASI host's randomness; fixed keys on
    /// wasm32-unknown-unknown, which has no source without JS).
    fn default() -> Self {
        #[cfg(all(target_os = "unknown", feature = "js"))]
        let seed = crate::clock::random_seed();
        #[cfg(not(all(target_os = "unknown", feature = "js")))]
        let seed = std::collections::hash_map::RandomState::new().hash_one(K);
        Self::with_seed(seed)
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;

    #[inline]
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.seed)
    }
}

/// Multiply-rotate over 8-byte words, with a final avalanche so that both the
/// low bits (bucket) and the high bits (hashbrown's tag) depend on every byte.
pub(crate) struct SeededHasher(u64);

impl Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
            h = (h ^ w).wrapping_mul(K).rotate_left(29);
        }
        let mut tail = 0u64;
        for (i, b) in words.remainder().iter().enumerate() {
            tail |= u64::from(*b) << (8 * i);
        }
        self.0 = (h ^ tail ^ (bytes.len() as u64).rotate_left(56)).wrapping_mul(K);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(K).rotate_left(29);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // splitmix64's finaliser.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash(seed: u64, key: &str) -> u64 {
        SeededState::with_seed(seed).hash_one(key)
    }

    #[test]
    fn the_seed_changes_every_hash() {
        for key in ["", "a", "user:1", "a longer key than eight bytes"] {
            assert_ne!(hash(1, key), hash(2, key), "{key:?}");
        }
    }

    #[test]
    fn similar_keys_spread_over_buckets_and_tags() {
        // 4096 keys that differ in one or two characters, as cache keys do.
        let keys: Vec<String> = (0..4096).map(|i| format!("user:{i:06}")).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(0x5eed, k)).collect();
        assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), keys.len(), "no full collisions");
        // Low 10 bits pick a bucket among 1024: each should get about 4.
        let mut buckets = [0u32; 1024];
        for h in &hashes {
            buckets[(h & 1023) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n <= 16), "a bucket got {}", buckets.iter().max().unwrap());
        // The top 7 bits are hashbrown's tag: all 128 values should occur.
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn length_is_part_of_the_hash() {
        // Zero bytes in the tail must not make keys of different lengths equal.
        let a = SeededState::with_seed(9).hash_one([0u8; 3].as_slice());
        let b = SeededState::with_seed(9).hash_one([0u8; 4].as_slice());
        assert_ne!(a, b);
    }
}
