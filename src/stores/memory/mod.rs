//! [`MemoryStore`]: entries in this process's memory.

mod engine;
// proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod model_tests;

pub(crate) use engine::Engine;

use std::future::{Ready, ready};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::clock::Clock;
use crate::errors::Result;
use crate::metrics::{CacheStats, Counters};
use crate::policies::Policy;
use crate::store::{CacheStore, Metadata, SetOptions};

/// A cache in this process's memory, safe to share between threads and tasks
/// (put it in an `Arc`).
///
/// Every call takes a short lock, does O(1) or O(log n) work, and releases it:
/// the futures of the [`CacheStore`] methods are ready on their first poll, and
/// no lock is ever held across an `.await`. `get` returns a clone of the value,
/// so store large values as `Arc<T>`.
///
/// The futures are [`std::future::Ready`]: outside async code, take the result
/// at once with `into_inner()`.
///
/// ```
/// use pepperpy_caching::{CacheStore, SetOptions, stores::MemoryStore, policies::LruPolicy};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pepperpy_caching::Result<()> {
/// let store = MemoryStore::new(LruPolicy::new(1000)?);
/// store.set("key", "value".to_string(), SetOptions::new().ttl(Duration::from_secs(60))).await?;
/// assert_eq!(store.get("key").await?, Some("value".to_string()));
/// assert!(store.delete("key").await?);
/// assert_eq!(store.stats().hits, 1);
///
/// // Without an executor:
/// store.set("n", "1".to_string(), SetOptions::new()).into_inner()?;
/// assert_eq!(store.get("n").into_inner()?.as_deref(), Some("1"));
/// # Ok(()) }
/// ```
pub struct MemoryStore<V> {
    engine: Mutex<Engine<V>>,
}

/// Options for a [`MemoryStore`] beyond its policy.
#[must_use]
pub struct MemoryStoreBuilder<V> {
    policy: Policy,
    clock: Clock,
    _value: std::marker::PhantomData<fn() -> V>,
}

impl<V: Clone + Send + 'static> MemoryStoreBuilder<V> {
    /// The time source for expiry and latency (default: [`Clock::system`]).
    /// Pass a [`ManualClock`](crate::ManualClock) to control time in tests.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore<V> {
        MemoryStore { engine: Mutex::new(Engine::new(self.policy, self.clock)) }
    }
}

impl<V: Clone + Send + 'static> MemoryStore<V> {
    /// An empty store run by `policy` ([`LruPolicy`](crate::policies::LruPolicy)
    /// or [`TtlPolicy`](crate::policies::TtlPolicy)).
    pub fn new(policy: impl Into<Policy>) -> Self {
        Self::builder(policy).build()
    }

    /// A builder, for a custom clock.
    pub fn builder(policy: impl Into<Policy>) -> MemoryStoreBuilder<V> {
        MemoryStoreBuilder { policy: policy.into(), clock: Clock::system(), _value: std::marker::PhantomData }
    }

    /// How many live entries there are (expired ones are reclaimed first).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the policy allows, if it sets a limit.
    pub fn capacity(&self) -> Option<usize> {
        self.lock().policy().max_size()
    }

    /// The policy the store was built with.
    pub fn policy(&self) -> Policy {
        self.lock().policy().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Engine<V>> {
        // The engine keeps its invariants across a panic in a value's `clone`
        // (the only foreign code it runs), so a poisoned lock is still usable.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> std::fmt::Debug for MemoryStore<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

// The futures are `std::future::Ready` on purpose: code holding a concrete
// `MemoryStore` can take a result without an executor, `store.get(k).into_inner()`.
#[allow(refining_impl_trait)]
impl<V: Clone + Send + 'static> CacheStore<V> for MemoryStore<V> {
    fn get(&self, key: &str) -> Ready<Result<Option<V>>> {
        ready(self.lock().get(key))
    }

    fn set(&self, key: &str, value: V, options: SetOptions) -> Ready<Result<()>> {
        ready(self.lock().set(key, value, options))
    }

    fn delete(&self, key: &str) -> Ready<Result<bool>> {
        ready(self.lock().delete(key))
    }

    fn contains(&self, key: &str) -> Ready<Result<bool>> {
        ready(self.lock().contains(key))
    }

    fn get_metadata(&self, key: &str) -> Ready<Result<Option<Metadata>>> {
        ready(self.lock().get_metadata(key))
    }

    fn update_metadata(&self, key: &str, metadata: Metadata) -> Ready<Result<bool>> {
        ready(self.lock().update_metadata(key, metadata))
    }

    fn invalidate(&self, pattern: &str) -> Ready<Result<usize>> {
        ready(self.lock().invalidate(pattern))
    }

    fn keys(&self, pattern: Option<&str>) -> Ready<Result<Vec<String>>> {
        ready(self.lock().keys(pattern))
    }

    fn size(&self) -> Ready<Result<usize>> {
        ready(Ok(self.len()))
    }

    fn clear(&self) -> Ready<Result<()>> {
        self.lock().clear();
        ready(Ok(()))
    }

    fn stats(&self) -> CacheStats {
        self.lock().counters.snapshot()
    }

    fn reset_stats(&self) {
        self.lock().counters = Counters::default();
    }
}
