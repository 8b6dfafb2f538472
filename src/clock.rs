//! Time (and, on wasm32, a random seed): the one platform seam of the core.
//!
//! Expiry and latency need a monotonic clock. `std::time::Instant` panics on
//! `wasm32-unknown-unknown`, so [`Clock::system`] reads `Instant` natively and,
//! with the `js` feature, the host's `performance.now()` on wasm32, through a
//! hook the wasm layer fills (no JS call is made from here). Tests, and users testing their own
//! code, swap in a [`ManualClock`] and move time by hand: no test ever sleeps.
//!
//! This module never does I/O and never blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Nanoseconds since the clock's origin.
pub(crate) type Nanos = u64;

/// The latest time a store reads: `u64::MAX - 2` nanoseconds (about 584 years).
pub(crate) const END_OF_TIME: Nanos = Nanos::MAX - 2;

/// The time source of a store. Cheap to clone.
///
/// ```
/// use pepperpy_caching::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let store_clock: Clock = clock.clone().into();
/// # let _ = store_clock;
/// clock.advance(std::time::Duration::from_secs(5));
/// assert_eq!(clock.elapsed(), std::time::Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<ManualState>>,
}

impl Clock {
    /// The platform's monotonic clock: `Instant` natively, `performance.now()` on wasm32.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// The current time in nanoseconds since this clock's origin.
    #[inline]
    pub(crate) fn now(&self) -> Nanos {
        let now = match &self.manual {
            None => system_now(),
            Some(state) => state.read(),
        };
        // Two values above the end of time stay free for "never expires" and
        // for an expiry set at the end of time, so both stay after `now`.
        now.min(END_OF_TIME)
    }
}

/// A clock that moves only when told to, for tests.
///
/// Clones share the same time. Hand one clone to the store (through
/// `MemoryStore::builder(..).clock(..)`) and keep another to call
/// [`advance`](ManualClock::advance).
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    nanos: AtomicU64,
    step: AtomicU64,
}

impl ManualState {
    fn read(&self) -> Nanos {
        let step = self.step.load(Ordering::Relaxed);
        if step == 0 {
            self.nanos.load(Ordering::Acquire)
        } else {
            match self.nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(step))) {
                Ok(t) | Err(t) => t,
            }
        }
    }
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward, stopping at the end of time (`u64::MAX`
    /// nanoseconds, about 584 years): it never wraps back to the past.
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // `fetch_update` with a closure that always returns Some cannot fail.
        let _ = self.state.nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(by)));
    }

    /// Makes every reading of the clock move it forward by `step` afterwards,
    /// so code that times itself sees time pass. `Duration::ZERO` turns it off.
    pub fn set_auto_advance(&self, step: Duration) {
        self.state.step.store(duration_nanos(step), Ordering::Relaxed);
    }

    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.state.nanos.load(Ordering::Acquire))
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Self {
        Clock { manual: Some(clock.state) }
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// std's Instant natively and on WASI; on wasm32-unknown-unknown without the
// `js` feature it panics, as std says ("time not implemented on this platform").
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown", feature = "js")))]
fn system_now() -> Nanos {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    duration_nanos(ORIGIN.get_or_init(Instant::now).elapsed())
}

// On wasm32-unknown-unknown with the `js` feature, the JS host's clock and
// randomness. The wasm layer defines these two functions (src/wasm/host.rs,
// where the JS calls are) and the linker joins them to these declarations:
// the core names a signature, and imports neither JS nor a module of a layer
// above it.
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "js"))]
unsafe extern "Rust" {
    /// Milliseconds of the host's monotonic clock (`performance.now()`).
    safe fn pepperpy_caching_host_now_ms() -> f64;
    /// 64 random bits from the host (`Math.random()`).
    safe fn pepperpy_caching_host_seed() -> u64;
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "js"))]
fn system_now() -> Nanos {
    let ms = pepperpy_caching_host_now_ms();
    if ms.is_finite() && ms > 0.0 { (ms * 1e6) as Nanos } else { 0 }
}

/// A random seed for hashing keys, from the JS host (wasm32 has no other
/// source of randomness without extra crates).
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "js"))]
pub(crate) fn random_seed() -> u64 {
    pepperpy_caching_host_seed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let manual = ManualClock::new();
        let clock: Clock = manual.clone().into();
        assert_eq!(clock.now(), 0);
        manual.advance(Duration::from_millis(3));
        assert_eq!(clock.now(), 3_000_000);
        assert_eq!(clock.now(), 3_000_000);
    }

    #[test]
    fn auto_advance_moves_on_each_reading() {
        let manual = ManualClock::new();
        manual.set_auto_advance(Duration::from_nanos(10));
        let clock: Clock = manual.clone().into();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.now(), 10);
        assert_eq!(manual.elapsed(), Duration::from_nanos(20));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = Clock::system();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[test]
    fn advancing_past_the_end_of_time_saturates() {
        let manual = ManualClock::new();
        let clock: Clock = manual.clone().into();
        manual.advance(Duration::MAX);
        manual.advance(Duration::from_secs(1));
        assert_eq!(manual.elapsed(), Duration::from_nanos(u64::MAX), "never wraps back to the past");
        // A store reads at most END_OF_TIME, two below: room for "never expires".
        assert_eq!(clock.now(), END_OF_TIME);
        manual.set_auto_advance(Duration::from_secs(1));
        assert_eq!(clock.now(), END_OF_TIME);
        assert_eq!(clock.now(), END_OF_TIME);
    }

    #[test]
    fn huge_durations_saturate() {
        assert_eq!(duration_nanos(Duration::MAX), u64::MAX);
    }
}
