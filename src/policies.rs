//! Which entries a store keeps: [`S3FifoPolicy`] (recommended for general
//! use), [`LruPolicy`] and [`TtlPolicy`].
//!
//! A policy is plain configuration, validated when it is made: a capacity of
//! zero or a TTL that is zero, negative or not finite is a
//! [`CacheError::Policy`], never a panic later. The stores carry the policies
//! out (see `stores::MemoryStore` for the data structures and their costs).

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::errors::{CacheError, Result};

/// Least recently used: at most `max_size` entries; when a new key arrives at
/// capacity the entry used longest ago goes.
///
/// ```
/// use pepperpy_caching::policies::LruPolicy;
/// use std::time::Duration;
/// let policy = LruPolicy::new(1_000)?
///     .with_default_ttl(Duration::from_secs(60))?
///     .refresh_on_get(true);
/// assert_eq!(policy.max_size(), 1_000);
/// assert!(LruPolicy::new(0).is_err());
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LruPolicy {
    max_size: NonZeroUsize,
    default_ttl: Option<Duration>,
    refresh_on_get: bool,
    default_idle: Option<Duration>,
}

impl LruPolicy {
    /// At most `max_size` entries, no default TTL, `get` refreshes recency.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `max_size` is 0.
    pub fn new(max_size: usize) -> Result<Self> {
        Ok(LruPolicy {
            max_size: max_size_from(max_size)?,
            default_ttl: None,
            refresh_on_get: true,
            default_idle: None,
        })
    }

    /// Entries set without their own TTL expire after `ttl`.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `ttl` is zero.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Result<Self> {
        self.default_ttl = Some(check_ttl(ttl)?);
        Ok(self)
    }

    /// Whether a `get` hit makes the entry the most recently used (default
    /// `true`). With `false`, only `set` does, and reads never reorder.
    pub fn refresh_on_get(mut self, refresh: bool) -> Self {
        self.refresh_on_get = refresh;
        self
    }

    /// The capacity.
    pub fn max_size(&self) -> usize {
        self.max_size.get()
    }

    /// The TTL of entries set without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl
    }

    /// Whether `get` refreshes recency.
    pub fn refreshes_on_get(&self) -> bool {
        self.refresh_on_get
    }
}

/// Time to live: every entry expires `ttl` after it was set, unless `set` gives
/// its own TTL. With a `max_size`, a new key at capacity evicts the entry
/// closest to expiry (Redis's `volatile-ttl`).
///
/// ```
/// use pepperpy_caching::policies::TtlPolicy;
/// use std::time::Duration;
/// let policy = TtlPolicy::new(Duration::from_secs(30))?.with_max_size(500)?;
/// assert_eq!(policy.max_size(), Some(500));
/// assert!(TtlPolicy::new(Duration::ZERO).is_err());
/// assert!(TtlPolicy::from_secs_f64(f64::NAN).is_err());
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlPolicy {
    ttl: Duration,
    max_size: Option<NonZeroUsize>,
    default_idle: Option<Duration>,
}

impl TtlPolicy {
    /// Entries live for `ttl`; no capacity limit.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `ttl` is zero.
    pub fn new(ttl: Duration) -> Result<Self> {
        Ok(TtlPolicy { ttl: check_ttl(ttl)?, max_size: None, default_idle: None })
    }

    /// Entries live for `secs` seconds.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `secs` is zero, negative, NaN or infinite.
    pub fn from_secs_f64(secs: f64) -> Result<Self> {
        Self::new(ttl_from_secs_f64(secs)?)
    }

    /// At most `max_size` entries.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `max_size` is 0.
    pub fn with_max_size(mut self, max_size: usize) -> Result<Self> {
        self.max_size = Some(max_size_from(max_size)?);
        Ok(self)
    }

    /// The TTL of entries set without one.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The capacity, if there is one.
    pub fn max_size(&self) -> Option<usize> {
        self.max_size.map(NonZeroUsize::get)
    }
}

/// S3-FIFO with TinyLFU admission, adapting to the workload: at most
/// `max_size` entries, chosen by how often and how recently they were read;
/// the policy to pick when you don't know your workload.
///
/// New keys enter a small probationary FIFO queue. A key read twice while
/// there moves to the main queue; a key read less leaves soon, and is
/// remembered in a *ghost* list of recently evicted keys, so that if it comes
/// back it can go straight to main. The main queue is a CLOCK with a 2-bit
/// counter per entry: the oldest entry is evicted unless it was read since it
/// last came round. One-off keys and scans therefore pass through without
/// flushing the entries that are read again and again, where LRU lets every
/// new key push out the least recently used one.
///
/// Adaptive (the default): a count-min sketch (4-bit counters, halved every
/// 10 x capacity counts, as Caffeine's `FrequencySketch`) estimates how often
/// each key was seen recently, and four miniature shadow caches, fed with a
/// hash sample of the keys, try the small queue at 10% and at 1% of the
/// capacity, with and without a *duel*: a key coming back from the ghost
/// enters main only if the sketch counts it more often than main's eviction
/// victim. The store takes the setting of the shadow that misses least. No
/// fixed setting wins every workload: 10% suits the ARC paper's disk traces,
/// 1% Zipf and loops, the duel frequency-heavy traces.
///
/// [`adaptive(false)`](Self::adaptive) gives the previous algorithm: plain
/// S3-FIFO whose small queue starts at a tenth of the capacity, as in the
/// paper, and is moved by a hill climber on the hit rate every 20 x capacity
/// reads.
///
/// A hit only bumps the entry's counter (and, for one key in a sample, drops
/// its hash in a small lossy buffer for the shadows): it changes no shared
/// order, so threads read a store in parallel (under a read lock). The
/// sketch, the ghost and the shadows change on writes only. S3-FIFO was
/// designed by Juncheng Yang et al., "FIFO queues are all you need for cache
/// eviction", SOSP 2023; TinyLFU by Gil Einziger, Roy Friedman and Ben Manes,
/// ACM TOS 2017. The hit ratios on the ARC paper's traces are in the README.
///
/// ```
/// use pepperpy_caching::policies::S3FifoPolicy;
/// use std::time::Duration;
/// let policy = S3FifoPolicy::new(10_000)?.with_default_ttl(Duration::from_secs(300))?;
/// assert_eq!(policy.max_size(), 10_000);
/// assert!(S3FifoPolicy::new(0).is_err());
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3FifoPolicy {
    max_size: NonZeroUsize,
    default_ttl: Option<Duration>,
    adaptive: bool,
    default_idle: Option<Duration>,
}

impl S3FifoPolicy {
    /// At most `max_size` entries, no default TTL.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `max_size` is 0.
    pub fn new(max_size: usize) -> Result<Self> {
        Ok(S3FifoPolicy { max_size: max_size_from(max_size)?, default_ttl: None, adaptive: true, default_idle: None })
    }

    /// Entries set without their own TTL expire after `ttl`.
    ///
    /// # Errors
    /// [`CacheError::Policy`] when `ttl` is zero.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Result<Self> {
        self.default_ttl = Some(check_ttl(ttl)?);
        Ok(self)
    }

    /// Whether to adapt with a frequency sketch and shadow caches (`true`,
    /// the default), or to run the previous, classic S3-FIFO with a
    /// hill-climbed small queue (`false`), which keeps no sketch or shadows
    /// but loses up to 8-10 points on loops and 1.3 on the ARC paper's P3
    /// trace at 8,192 entries.
    ///
    /// The wasm32 build (the npm package) runs the classic policy whatever
    /// this says: the adaptive one does not fit the package's size budget.
    ///
    /// ```
    /// use pepperpy_caching::policies::S3FifoPolicy;
    /// let classic = S3FifoPolicy::new(1_000)?.adaptive(false);
    /// assert!(!classic.is_adaptive());
    /// assert!(S3FifoPolicy::new(1_000)?.is_adaptive());
    /// # Ok::<(), pepperpy_caching::CacheError>(())
    /// ```
    pub fn adaptive(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    /// The capacity.
    pub fn max_size(&self) -> usize {
        self.max_size.get()
    }

    /// The TTL of entries set without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl
    }

    /// Whether the policy adapts (see [`adaptive`](Self::adaptive)).
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }
}

/// Any policy; what a store is built with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// See [`LruPolicy`].
    Lru(LruPolicy),
    /// See [`TtlPolicy`].
    Ttl(TtlPolicy),
    /// See [`S3FifoPolicy`].
    S3Fifo(S3FifoPolicy),
}

impl Policy {
    /// The capacity, if there is one.
    pub fn max_size(&self) -> Option<usize> {
        match self {
            Policy::Lru(p) => Some(p.max_size()),
            Policy::Ttl(p) => p.max_size(),
            Policy::S3Fifo(p) => Some(p.max_size()),
        }
    }

    /// The TTL given to entries set without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        match self {
            Policy::Lru(p) => p.default_ttl(),
            Policy::Ttl(p) => Some(p.ttl()),
            Policy::S3Fifo(p) => p.default_ttl(),
        }
    }

    /// The time-to-idle given to entries set without one (see
    /// [`SetOptions::idle`](crate::SetOptions::idle)).
    pub fn default_idle(&self) -> Option<Duration> {
        match self {
            Policy::Lru(p) => p.default_idle,
            Policy::Ttl(p) => p.default_idle,
            Policy::S3Fifo(p) => p.default_idle,
        }
    }
}

impl From<LruPolicy> for Policy {
    fn from(p: LruPolicy) -> Self {
        Policy::Lru(p)
    }
}

impl From<S3FifoPolicy> for Policy {
    fn from(p: S3FifoPolicy) -> Self {
        Policy::S3Fifo(p)
    }
}

impl From<TtlPolicy> for Policy {
    fn from(p: TtlPolicy) -> Self {
        Policy::Ttl(p)
    }
}

/// The longest time-to-idle accepted (10^15 ms, about 31,700 years, the
/// longest expiry Redis keeps): a longer one is a mistake, refused as
/// [`CacheError::Policy`]. Exact as a JS number of milliseconds.
pub const MAX_IDLE: Duration = Duration::from_millis(1_000_000_000_000_000);

/// Refuses a time-to-idle of zero or longer than [`MAX_IDLE`].
pub(crate) fn check_idle(idle: Duration) -> Result<Duration> {
    if idle.is_zero() || idle > MAX_IDLE {
        return Err(CacheError::Policy(format!(
            "idle must be greater than zero and at most {} ms, got {idle:?}",
            MAX_IDLE.as_millis()
        )));
    }
    Ok(idle)
}

macro_rules! with_default_idle {
    ($($policy:ident: $example:expr;)*) => {$(
        impl $policy {
            /// Entries set without their own time-to-idle leave after `idle`
            /// without a read (a `get` hit, a `get_or_set` or
            /// `get_or_refresh` hit), or at their TTL, whichever comes first.
            /// `contains` and `get_metadata` are no reads.
            ///
            /// # Errors
            /// [`CacheError::Policy`] when `idle` is zero or longer than [`MAX_IDLE`].
            ///
            /// ```
            #[doc = concat!("use pepperpy_caching::policies::", stringify!($policy), ";")]
            /// use std::time::Duration;
            #[doc = concat!("let policy = ", $example, ".with_default_idle(Duration::from_secs(30))?;")]
            /// assert_eq!(policy.default_idle(), Some(Duration::from_secs(30)));
            #[doc = concat!("assert!(", $example, ".with_default_idle(Duration::ZERO).is_err());")]
            /// # Ok::<(), pepperpy_caching::CacheError>(())
            /// ```
            pub fn with_default_idle(mut self, idle: Duration) -> Result<Self> {
                self.default_idle = Some(check_idle(idle)?);
                Ok(self)
            }

            /// The time-to-idle of entries set without one.
            pub fn default_idle(&self) -> Option<Duration> {
                self.default_idle
            }
        }
    )*};
}

with_default_idle! {
    LruPolicy: "LruPolicy::new(100)?";
    TtlPolicy: "TtlPolicy::new(Duration::from_secs(60))?";
    S3FifoPolicy: "S3FifoPolicy::new(100)?";
}

/// Converts a TTL in seconds, as JS and config files give it, to a `Duration`.
///
/// ```
/// use pepperpy_caching::policies::ttl_from_secs_f64;
/// assert_eq!(ttl_from_secs_f64(1.5)?, std::time::Duration::from_millis(1500));
/// assert!(ttl_from_secs_f64(-5.0).is_err());
/// assert!(ttl_from_secs_f64(f64::INFINITY).is_err());
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
///
/// # Errors
/// [`CacheError::Policy`] when `secs` is zero, negative, NaN, infinite, or
/// too large for a `Duration`.
pub fn ttl_from_secs_f64(secs: f64) -> Result<Duration> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err(CacheError::Policy(format!("ttl must be a positive, finite number of seconds, got {secs}")));
    }
    let ttl = Duration::try_from_secs_f64(secs)
        .map_err(|_| CacheError::Policy(format!("ttl of {secs} seconds is too large")))?;
    check_ttl(ttl)
}

/// Rejects a zero TTL (which would make an entry expire before it could be read).
pub(crate) fn check_ttl(ttl: Duration) -> Result<Duration> {
    if ttl.is_zero() {
        return Err(CacheError::Policy(format!("ttl must be greater than zero, got {ttl:?}")));
    }
    Ok(ttl)
}

fn max_size_from(max_size: usize) -> Result<NonZeroUsize> {
    NonZeroUsize::new(max_size).ok_or_else(|| CacheError::Policy("max_size must be at least 1, got 0".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_policy_error<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(CacheError::Policy(_)))
    }

    #[test]
    fn nonsense_is_a_policy_error() {
        assert!(is_policy_error(LruPolicy::new(0)));
        assert!(is_policy_error(LruPolicy::new(1).unwrap().with_default_ttl(Duration::ZERO)));
        assert!(is_policy_error(TtlPolicy::new(Duration::ZERO)));
        assert!(is_policy_error(S3FifoPolicy::new(0)));
        assert!(is_policy_error(S3FifoPolicy::new(1).unwrap().with_default_ttl(Duration::ZERO)));
        assert!(is_policy_error(TtlPolicy::new(Duration::from_secs(1)).unwrap().with_max_size(0)));
        for secs in [0.0, -0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, 1e-12] {
            assert!(is_policy_error(ttl_from_secs_f64(secs)), "{secs}");
        }
    }

    #[test]
    fn messages_name_the_value() {
        let err = ttl_from_secs_f64(-5.0).unwrap_err().to_string();
        assert!(err.contains("-5"), "{err}");
        let err = LruPolicy::new(0).unwrap_err().to_string();
        assert!(err.contains("got 0"), "{err}");
    }

    #[test]
    fn defaults() {
        let lru = LruPolicy::new(3).unwrap();
        assert_eq!((lru.max_size(), lru.default_ttl(), lru.refreshes_on_get()), (3, None, true));
        let ttl: Policy = TtlPolicy::new(Duration::from_secs(2)).unwrap().into();
        assert_eq!((ttl.max_size(), ttl.default_ttl()), (None, Some(Duration::from_secs(2))));
    }
}
