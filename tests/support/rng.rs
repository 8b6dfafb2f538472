//! A tiny deterministic generator (xorshift): a run's choices follow from
//! its seed. Shared by the tests and examples/soak.rs (which includes this
//! file by path).

/// Xorshift64; a seed of 0 stays 0, so seed with anything else.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
