//! [`MemoryStore`]: entries in this process's memory.

mod engine;
// The adaptive S3-FIFO's parts: not built into the wasm32 engine (see engine.rs).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod ghost;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod shadow;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod sketch;
// The slot-addressed engine of the JS store (src/wasm), and its native tests.
#[cfg(any(test, all(target_arch = "wasm32", target_os = "unknown", feature = "js")))]
pub(crate) mod slots;
// On wasm32 the engine hashes keys with it; natively its tests still run.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod hasher;
// proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod adaptive_model_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod model_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod s3fifo_model_tests;
#[cfg(all(test, not(target_arch = "wasm32"), feature = "redis"))]
pub(crate) use model_tests::fuzz_cases;

pub(crate) use engine::Engine;
#[allow(unused_imports)] // used by the wasm bindings
pub(crate) use engine::{Reason, Removed};

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use engine::{Freshly, KeyHasher, Lookup};
use std::sync::Arc;

use crate::refresh::{RefreshOptions, within};

use crate::clock::Clock;
use crate::errors::Result;
use crate::metrics::{CacheStats, Counters};
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::singleflight::{SingleFlight, loader_error};
use crate::store::{CacheStore, Metadata, SetOptions, check_key};

/// A cache in this process's memory, safe to share between threads and tasks
/// (put it in an `Arc`).
///
/// Every call takes a short lock, does O(1) or O(log n) work, and releases it:
/// the futures of the [`CacheStore`] methods are ready on their first poll, and
/// no lock is ever held across an `.await`. Under
/// [`S3FifoPolicy`](crate::policies::S3FifoPolicy) and
/// [`TtlPolicy`](crate::policies::TtlPolicy) a `get` takes the lock shared, so
/// threads read in parallel; exact LRU reorders its list on every hit and takes
/// it exclusively. `get` returns a clone of the value, so store large values
/// as `Arc<T>`.
///
/// The futures are [`std::future::Ready`]: outside async code, take the result
/// at once with `into_inner()`.
///
/// A value's `Clone` runs under the shard's lock (`get` clones what it
/// returns), and so may the `Drop` of an expired value it reclaims. A call
/// from inside either into the same store would wait for ever on a lock its
/// own thread holds, so it fails at once with
/// [`CacheError::ReentrantValue`](crate::CacheError::ReentrantValue) instead
/// (`len` and `stats`, which return no `Result`, panic with that message).
/// Calls into other stores are fine, but a chain that comes back is refused
/// too (A's value's `Clone` reads B, whose value's `Clone` reads A). Two
/// threads whose values call two stores in opposite orders can still
/// deadlock, as with any two locks taken in opposite orders. Values dropped because a call replaced,
/// removed or evicted them are dropped after the lock is released.
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
    shards: Box<[Shard<V>]>,
    /// log2 of the shard count.
    shard_bits: u32,
    /// The engines' hasher: a key is hashed once, for its shard and its engine.
    hasher: KeyHasher,
    shared_reads: bool,
    policy: Policy,
    flights: SingleFlight<V>,
}

/// One engine on its own cache lines, so two threads working on neighbouring
/// shards do not slow each other down through false sharing.
#[repr(align(128))]
struct Shard<V>(RwLock<Engine<V>>);

/// The most shards a store is split into.
pub const MAX_SHARDS: usize = 1 << 10;

/// With the default sharding, each shard holds at least this many entries
/// (smaller shards would cost hit ratio).
const MIN_AUTO_SHARD_SIZE: usize = 1 << 10;

/// Options for a [`MemoryStore`] beyond its policy.
#[must_use]
pub struct MemoryStoreBuilder<V> {
    policy: Policy,
    clock: Clock,
    shards: Option<usize>,
    _value: std::marker::PhantomData<fn() -> V>,
}

impl<V: Clone + Send + Sync + 'static> MemoryStoreBuilder<V> {
    /// The time source for expiry and latency (default: [`Clock::system`]).
    /// Pass a [`ManualClock`](crate::ManualClock) to control time in tests.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Splits the store into `shards` independent parts (rounded up to a power
    /// of two, at most [`MAX_SHARDS`] and at most one per unit of `max_size`),
    /// each with its own lock and an equal share of the capacity. Threads
    /// working on different keys then rarely wait for each other, at a price:
    /// the policy is applied per shard, so LRU evicts the least recently used
    /// entry *of its shard*, not of the whole store (as sharded caches such as
    /// quick_cache and moka do). The total capacity bound stays exact.
    ///
    /// The default: under LRU and TTL, 1 shard, which keeps their order exact;
    /// under S3-FIFO (an approximate policy to begin with), four per CPU
    /// rounded up to a power of two, with at least 1,024 entries a shard.
    /// The shards of an adaptive S3-FIFO store share one setting: the first
    /// shard's shadow caches choose it and the others follow, so a sharded
    /// store adapts as a whole one does (hit ratios sharded and unsharded are
    /// within 0.3 points on the ARC traces, Zipf and loops; see the README).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore<V> {
        let max_size = self.policy.max_size();
        let wanted = self.shards.unwrap_or_else(|| match (&self.policy, max_size) {
            (Policy::S3Fifo(_), Some(max)) => {
                let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                (cpus.saturating_mul(4)).min(max / MIN_AUTO_SHARD_SIZE)
            }
            _ => 1,
        });
        let mut count = wanted.clamp(1, MAX_SHARDS).next_power_of_two();
        if let Some(max) = max_size {
            while count > 1 && count > max {
                count /= 2;
            }
        }
        let hasher = KeyHasher::default();
        let setting = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let shards: Box<[Shard<V>]> = (0..count)
            .map(|i| {
                let mut engine = Engine::with_hasher(self.policy.clone(), self.clock.clone(), hasher.clone());
                if let Some(max) = max_size {
                    // Spread the remainder over the first shards: the total is exactly max.
                    engine.limit_max_size(max / count + usize::from(i < max % count));
                }
                if count > 1 {
                    engine.share_setting(&setting, i == 0);
                }
                Shard(RwLock::new(engine))
            })
            .collect();
        let shared_reads = read(&shards[0]).reads_are_shared();
        MemoryStore {
            shards,
            shard_bits: count.trailing_zeros(),
            hasher,
            shared_reads,
            policy: self.policy,
            flights: SingleFlight::default(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// An empty store run by `policy`
    /// ([`S3FifoPolicy`](crate::policies::S3FifoPolicy),
    /// [`LruPolicy`](crate::policies::LruPolicy) or
    /// [`TtlPolicy`](crate::policies::TtlPolicy)).
    pub fn new(policy: impl Into<Policy>) -> Self {
        Self::builder(policy).build()
    }

    /// A builder, for a custom clock or sharding.
    pub fn builder(policy: impl Into<Policy>) -> MemoryStoreBuilder<V> {
        MemoryStoreBuilder {
            policy: policy.into(),
            clock: Clock::system(),
            shards: None,
            _value: std::marker::PhantomData,
        }
    }

    /// How many live entries there are (expired ones are reclaimed first).
    pub fn len(&self) -> usize {
        self.assert_not_reentered("len");
        self.shards.iter().map(|s| write(s).len()).sum()
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the policy allows, if it sets a limit.
    pub fn capacity(&self) -> Option<usize> {
        self.policy.max_size()
    }

    /// The policy the store was built with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many shards the store has (see [`MemoryStoreBuilder::shards`]).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns a key with this hash. The top bits pick the shard:
    /// the engine's table uses the low bits and the top seven as its tag, and
    /// those stay evenly spread within a shard.
    #[inline(always)]
    fn shard_of(&self, hash: u64) -> &Shard<V> {
        if self.shard_bits == 0 {
            return &self.shards[0];
        }
        &self.shards[((hash << 7) >> (64 - self.shard_bits)) as usize]
    }

    /// The engine that owns `key`, locked exclusively.
    #[inline(always)]
    fn shard(&self, key: &str) -> Held<RwLockWriteGuard<'_, Engine<V>>> {
        write(self.shard_of(self.hasher.hash_one(key)))
    }

    /// `get` under the shard's exclusive lock (exact LRU), out of line so
    /// that the shared read path stays small.
    #[inline(never)]
    fn get_exclusive(&self, hash: u64, key: &str) -> Option<V> {
        write(self.shard_of(hash)).get_exclusive(hash, key, V::clone)
    }

    /// Sums what `f` reports for every shard.
    fn fold<T>(&self, init: T, mut f: impl FnMut(T, &mut Engine<V>) -> Result<T>) -> Result<T> {
        let mut acc = init;
        for shard in self.shards.iter() {
            acc = f(acc, &mut write(shard))?;
        }
        Ok(acc)
    }
}

thread_local! {
    /// The shard (its address) whose lock this thread holds, 0 if none: a
    /// value's `Clone` or `Drop` runs under it, and a call from inside one
    /// into the same store would wait on a lock its own thread holds.
    static HOLDING: Cell<usize> = const { Cell::new(0) };
    /// The shards further up this thread's stack, when a value's `Clone` or
    /// `Drop` called another store (which is allowed) that locked one of its
    /// own: a value of that store calling back into the first one must be
    /// refused too (A's clone reads B, B's clone reads A). Empty, and never
    /// touched, unless stores are nested that way.
    static OUTER: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether this thread holds a shard lock for which `held` is true.
#[inline(always)]
fn holding(held: impl Fn(usize) -> bool) -> bool {
    let innermost = HOLDING.get();
    innermost != 0 && (held(innermost) || holding_further_up(held))
}

#[cold]
#[inline(never)]
fn holding_further_up(held: impl Fn(usize) -> bool) -> bool {
    OUTER.with_borrow(|outer| outer.iter().any(|&shard| held(shard)))
}

/// A shard's lock guard that marks the shard as held by this thread
/// ([`HOLDING`]) while it lives.
struct Held<G> {
    guard: G,
    outer: usize,
}

impl<G> Held<G> {
    #[inline(always)]
    fn new<V>(shard: &Shard<V>, lock: impl FnOnce() -> G) -> Self {
        let me = shard as *const Shard<V> as usize;
        let outer = HOLDING.get();
        // A last defence for the calls that cannot return an error (the
        // others check `reentered` first): a clear panic, not a deadlock.
        assert!(
            !holding(|shard| shard == me),
            "a value's Clone or Drop called the MemoryStore that was running it, under the lock it needs: \
             this would deadlock"
        );
        let guard = lock();
        if outer != 0 {
            nest(outer);
        }
        HOLDING.set(me);
        Held { guard, outer }
    }
}

impl<G> Drop for Held<G> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.outer != 0 {
            unnest();
        }
        HOLDING.set(self.outer);
    }
}

#[cold]
#[inline(never)]
fn nest(outer: usize) {
    OUTER.with_borrow_mut(|stack| stack.push(outer));
}

#[cold]
#[inline(never)]
fn unnest() {
    OUTER.with_borrow_mut(|stack| stack.pop());
}

impl<G: std::ops::Deref> std::ops::Deref for Held<G> {
    type Target = G::Target;
    #[inline(always)]
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Held<G> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

impl<V> MemoryStore<V> {
    /// Fails if this thread is running a value's `Clone` or `Drop` under a
    /// lock of this store: the call `call` comes from inside it and would
    /// deadlock on that lock (or, through another shard, with a thread
    /// doing the same the other way round).
    #[inline(always)]
    fn reentered(&self, call: &'static str) -> Result<()> {
        let shards = self.shards.as_ptr_range();
        if holding(|held| shards.contains(&(held as *const Shard<V>))) {
            return Err(crate::CacheError::ReentrantValue { call });
        }
        Ok(())
    }

    /// [`reentered`](Self::reentered) for the calls that return no `Result`.
    fn assert_not_reentered(&self, call: &'static str) {
        if let Err(e) = self.reentered(call) {
            panic!("{e}");
        }
    }
}

// The engine finishes its bookkeeping before it runs a value's `Drop`, and a
// panicking `Clone` changes nothing, so a poisoned lock is still consistent.
#[inline(always)]
fn write<V>(shard: &Shard<V>) -> Held<RwLockWriteGuard<'_, Engine<V>>> {
    Held::new(shard, || shard.0.write().unwrap_or_else(PoisonError::into_inner))
}

/// Reclaims the expired entry a shared read found: off the hit path, which
/// then keeps fewer registers.
#[cold]
#[inline(never)]
fn reclaim<V>(shard: &Shard<V>, hash: u64, key: &str) {
    write(shard).reclaim_if_expired(hash, key);
}

/// The future of [`MemoryStore::get_or_refresh`]: its answer when the fast
/// path had it, or the rest of the call.
enum Refreshing<T, B> {
    Done(Option<T>),
    Later(std::pin::Pin<Box<B>>),
}

// `T` is never pinned (it is moved out by `take`), `B` is boxed.
impl<T, B> Unpin for Refreshing<T, B> {}

impl<T, B: Future<Output = T>> Future for Refreshing<T, B> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            Refreshing::Done(answer) => {
                std::task::Poll::Ready(answer.take().expect("get_or_refresh's future polled after it was done"))
            }
            Refreshing::Later(rest) => rest.as_mut().poll(cx),
        }
    }
}

#[inline(always)]
fn read<V>(shard: &Shard<V>) -> Held<RwLockReadGuard<'_, Engine<V>>> {
    Held::new(shard, || shard.0.read().unwrap_or_else(PoisonError::into_inner))
}

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// Read-through with stale-while-revalidate: the fresh value under `key`;
    /// within the grace period after it went stale, the stale value at once
    /// while one refresh runs in the background on the options' [`Runtime`](crate::Runtime)
    /// (one per key in this store); on a miss, the value `loader` produces,
    /// loaded once for all concurrent callers as in
    /// [`try_get_or_set`](CacheStore::try_get_or_set).
    ///
    /// - A failed or timed-out refresh keeps the stale value until the grace
    ///   period ends (stale-if-error) and the next refresh waits for the
    ///   backoff of [`RefreshOptions::retry_after`].
    /// - A refresh or load stores its value only if nothing wrote, deleted,
    ///   invalidated or cleared the key, or updated its metadata, since it
    ///   began: [`update_metadata`](CacheStore::update_metadata) is a write
    ///   too, so a refresh running when it lands stores nothing (it would
    ///   erase the update) and the next stale read starts another. A refresh
    ///   that stores replaces the entry as a `set` does, metadata included
    ///   (the options' metadata), as `RedisStore` does.
    /// - Entries stored by other calls count as fresh until they expire.
    /// - Stats count `stale_hits`, `refreshes` and `refresh_failures`.
    /// - Under S3-FIFO and TTL, a hit that needs no exclusive work (fresh, or
    ///   stale with its refresh already running or backing off) is answered,
    ///   and counted, when the call is made, under the shard's shared lock,
    ///   as [`get`](CacheStore::get) is; the returned future only hands it
    ///   over. Everything else happens when the future is polled.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{MemoryStore, RefreshOptions, S3FifoPolicy, TokioRuntime};
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store = Arc::new(MemoryStore::new(S3FifoPolicy::new(10_000)?));
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600));
    /// let price = store
    ///     .get_or_refresh("price:42", || async { Ok::<_, std::io::Error>(1999u64) }, &options)
    ///     .await?;
    /// assert_eq!(price, 1999);
    /// # Ok(()) }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Key`](crate::CacheError::Key) or `Policy` for bad input
    /// (before any loader runs), `Loader` when the loader of a miss fails,
    /// `Timeout` after the soft timeout of a miss, `Reentrant` when a loader
    /// asks for its own key.
    pub fn get_or_refresh<'a, F, Fut, E>(
        self: &'a Arc<Self>,
        key: &'a str,
        loader: F,
        options: &'a RefreshOptions,
    ) -> impl Future<Output = Result<V>> + Send + 'a
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + 'a,
    {
        // A hit that needs no exclusive work (fresh, or stale with its
        // refresh running) is answered at once under the shared lock, as
        // `get` is; only the rest becomes a future of its own.
        let checked = self.reentered("get_or_refresh").and_then(|()| check_key(key)).and_then(|()| options.check());
        let hash = self.hasher.hash_one(key);
        let shared = if checked.is_ok() && self.shared_reads {
            read(self.shard_of(hash)).get_fresh_shared(hash, key)
        } else {
            None
        };
        if let Some(Freshly::Fresh(value) | Freshly::Stale { value, refresh: false }) = shared {
            return Refreshing::Done(Some(Ok(value)));
        }
        Refreshing::Later(Box::pin(self.get_or_refresh_slow(key, hash, checked, loader, options)))
    }

    /// [`get_or_refresh`](Self::get_or_refresh) past its shared fast path.
    async fn get_or_refresh_slow<F, Fut, E>(
        self: &Arc<Self>,
        key: &str,
        hash: u64,
        checked: Result<()>,
        loader: F,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        checked?;
        let found = write(self.shard_of(hash)).get_fresh_at(hash, key);
        let loader = match found {
            Freshly::Fresh(value) => return Ok(value),
            Freshly::Stale { value, refresh } => {
                if refresh {
                    self.spawn_refresh(key, loader, options);
                }
                return Ok(value);
            }
            Freshly::Miss => loader,
        };
        let lead = || async move {
            if let Some(value) = self.shard(key).peek(key) {
                return Ok((value.clone(), value));
            }
            let token = self.shard(key).begin_load(key);
            let pending = PendingLoad { store: &**self, key, token: Some(token) };
            let clock = self.shard(key).clock().clone();
            let started = clock.now();
            let loaded =
                within(&*options.runtime, key, options.hard_timeout, async { loader().await.map_err(loader_error) })
                    .await;
            let elapsed = clock.now().saturating_sub(started);
            std::mem::forget(pending);
            let mut engine = self.shard(key);
            engine.counters.record_load(loaded.is_ok(), elapsed);
            let outcome = loaded.clone().map_err(drop);
            let removed = engine.finish_refresh(key, token, outcome, options, false)?;
            // What the store replaced or evicted is dropped after the lock.
            drop(engine);
            drop(removed);
            let value = loaded?;
            Ok((value.clone(), value))
        };
        // The lookup above was this call's counted get.
        let load = self.flights.read_through(key, || ready(Ok(None)), Ok, lead);
        within(&*options.runtime, key, options.soft_timeout, load).await
    }

    /// Starts the background refresh of `key` on the options' runtime.
    fn spawn_refresh<F, Fut, E>(self: &Arc<Self>, key: &str, loader: F, options: &RefreshOptions)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let token = self.shard(key).begin_load(key);
        // Fails the refresh if the runtime drops the task unfinished, so the
        // key does not stay "refreshing" for ever.
        let mut refresh =
            Refresh { store: Arc::clone(self), key: key.into(), token, options: options.clone(), done: false };
        let task = async move {
            let clock = refresh.store.shard(&refresh.key).clock().clone();
            let started = clock.now();
            let loaded = within(&*refresh.options.runtime, &refresh.key, refresh.options.hard_timeout, async {
                loader().await.map_err(loader_error)
            })
            .await;
            let elapsed = clock.now().saturating_sub(started);
            refresh.store.shard(&refresh.key).counters.record_load(loaded.is_ok(), elapsed);
            refresh.finish(loaded.map_err(drop));
        };
        options.runtime.spawn(Box::pin(task));
    }
}

/// A background refresh in flight.
struct Refresh<V: Clone + Send + Sync + 'static> {
    store: Arc<MemoryStore<V>>,
    key: Box<str>,
    token: u64,
    options: RefreshOptions,
    done: bool,
}

impl<V: Clone + Send + Sync + 'static> Refresh<V> {
    fn finish(&mut self, outcome: std::result::Result<V, ()>) {
        self.done = true;
        // A value the store refuses (it cannot: the options were checked) is dropped.
        let removed = self.store.shard(&self.key).finish_refresh(&self.key, self.token, outcome, &self.options, true);
        // Dropped after the lock (a statement of its own ends the guard first).
        drop(removed);
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Refresh<V> {
    fn drop(&mut self) {
        if !self.done {
            count_unfinished(&mut self.store.shard(&self.key));
            self.finish(Err(()));
        }
    }
}

/// Counts a loader run that never finished: it started, so `loads` counts
/// it; if its loader panicked (this runs while the panic unwinds), it failed
/// too. One dropped unfinished (a timeout, a cancelled task) is no failure.
fn count_unfinished<V>(engine: &mut Engine<V>) {
    if std::thread::panicking() {
        engine.counters.record_load(false, 0);
    } else {
        engine.counters.count_unfinished_load();
    }
}

/// A load in progress; ends it (drops its placeholder) if the load goes away
/// before it finished.
struct PendingLoad<'a, V: Clone + Send + Sync + 'static> {
    store: &'a MemoryStore<V>,
    key: &'a str,
    token: Option<u64>,
}

impl<V: Clone + Send + Sync + 'static> Drop for PendingLoad<'_, V> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let mut engine = self.store.shard(self.key);
            engine.end_load(self.key, token);
            count_unfinished(&mut engine);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// Loads in progress in every shard.
    pub(crate) fn loads_in_progress(&self) -> usize {
        self.shards.iter().map(|s| read(s).loads_in_progress()).sum()
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
impl<V: Clone + Send + Sync + 'static> CacheStore<V> for MemoryStore<V> {
    #[inline]
    fn get(&self, key: &str) -> Ready<Result<Option<V>>> {
        if let Err(e) = self.reentered("get").and_then(|()| check_key(key)) {
            return ready(Err(e));
        }
        let hash = self.hasher.hash_one(key);
        if !self.shared_reads {
            return ready(Ok(self.get_exclusive(hash, key)));
        }
        let shard = self.shard_of(hash);
        let found = read(shard).get_shared(hash, key, V::clone);
        ready(Ok(match found {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss => None,
            Lookup::Expired => {
                reclaim(shard, hash, key);
                None
            }
        }))
    }

    fn set(&self, key: &str, value: V, options: SetOptions) -> Ready<Result<()>> {
        if let Err(e) = self.reentered("set") {
            return ready(Err(e));
        }
        // What the set removed is dropped after the lock is released: a value's
        // Drop may panic, or use this store.
        let hash = self.hasher.hash_one(key);
        let removed = write(self.shard_of(hash)).set_returning_at(hash, key, value, options);
        ready(removed.map(drop))
    }

    fn delete(&self, key: &str) -> Ready<Result<bool>> {
        if let Err(e) = self.reentered("delete") {
            return ready(Err(e));
        }
        let removed = self.shard(key).delete_returning(key);
        ready(removed.map(|removed| removed.is_some()))
    }

    fn contains(&self, key: &str) -> Ready<Result<bool>> {
        ready(self.reentered("contains").and_then(|()| self.shard(key).contains(key)))
    }

    fn get_metadata(&self, key: &str) -> Ready<Result<Option<Metadata>>> {
        ready(self.reentered("get_metadata").and_then(|()| self.shard(key).get_metadata(key)))
    }

    fn update_metadata(&self, key: &str, metadata: Metadata) -> Ready<Result<bool>> {
        ready(self.reentered("update_metadata").and_then(|()| self.shard(key).update_metadata(key, metadata)))
    }

    fn invalidate(&self, pattern: &str) -> Ready<Result<usize>> {
        // Validate once up front, so a bad pattern fails before any shard changes.
        if let Err(e) = self.reentered("invalidate").and_then(|()| Pattern::new(pattern).map(drop)) {
            return ready(Err(e));
        }
        // Every shard first, then the values are dropped, outside the locks:
        // a panicking Drop cannot stop the call halfway through the shards.
        let mut removed = Vec::new();
        let result = self.fold(0, |n, engine| {
            let gone = engine.invalidate_returning(pattern)?;
            let n = n + gone.len();
            removed.push(gone);
            Ok(n)
        });
        drop(removed);
        ready(result)
    }

    fn keys(&self, pattern: Option<&str>) -> Ready<Result<Vec<String>>> {
        if let Err(e) = self.reentered("keys") {
            return ready(Err(e));
        }
        if let Some(Err(e)) = pattern.map(Pattern::new) {
            return ready(Err(e));
        }
        ready(self.fold(Vec::new(), |mut keys, engine| {
            keys.extend(engine.keys(pattern)?);
            Ok(keys)
        }))
    }

    fn size(&self) -> Ready<Result<usize>> {
        ready(self.reentered("size").map(|()| self.len()))
    }

    fn clear(&self) -> Ready<Result<()>> {
        if let Err(e) = self.reentered("clear") {
            return ready(Err(e));
        }
        let mut removed = Vec::new();
        let result = self.fold((), |(), engine| {
            removed.push(engine.clear_returning());
            Ok(())
        });
        drop(removed);
        ready(result)
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.reentered("get_or_set")?;
        self.shard(key).check_set(key, &options)?;
        let lead = || async move {
            // A leader that finished after this caller's get has stored its value.
            if let Some(value) = self.shard(key).peek(key) {
                return Ok((value.clone(), value));
            }
            let token = self.shard(key).begin_load(key);
            // Ends the load if this future is dropped or the loader panics.
            let pending = PendingLoad { store: self, key, token: Some(token) };
            let clock = self.shard(key).clock().clone();
            let started = clock.now();
            let loaded = loader().await.map_err(loader_error);
            let elapsed = clock.now().saturating_sub(started);
            let mut engine = self.shard(key);
            let still_ours = engine.end_load(key, token);
            std::mem::forget(pending);
            engine.counters.record_load(loaded.is_ok(), elapsed);
            let value = loaded?;
            // Stored only if nothing wrote, deleted, invalidated or cleared
            // the key meanwhile; the callers get the loaded value either way.
            if still_ours {
                let removed = engine.set_returning(key, value.clone(), options)?;
                // What the store replaced or evicted is dropped after the lock.
                drop(engine);
                drop(removed);
            }
            Ok((value.clone(), value))
        };
        self.flights.read_through(key, || CacheStore::get(self, key), Ok, lead).await
    }

    fn stats(&self) -> CacheStats {
        self.assert_not_reentered("stats");
        let mut total = Counters::default();
        for shard in self.shards.iter() {
            read(shard).add_counters_to(&mut total);
        }
        total.snapshot()
    }

    fn reset_stats(&self) {
        self.assert_not_reentered("reset_stats");
        for shard in self.shards.iter() {
            write(shard).reset_stats();
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::policies::LruPolicy;
    use std::pin::pin;
    use std::task::{Context, Waker};

    /// One set of shadows per store: the first shard chooses the adaptive
    /// setting and the other shards take it on their next write.
    #[test]
    fn the_shards_follow_the_first_shards_setting() {
        let store = MemoryStore::<u32>::builder(crate::S3FifoPolicy::new(4 * 2_000).unwrap()).shards(4).build();
        let settings = || store.shards.iter().map(|s| read(s).adaptive_setting().unwrap()).collect::<Vec<_>>();
        let shadows: Vec<bool> = store.shards.iter().map(|s| read(s).runs_shadows()).collect();
        assert_eq!(shadows, [true, false, false, false], "one set of shadows, in the first shard");
        let initial = settings();
        assert!(initial.iter().all(|&s| s == initial[0]));
        // A loop over 1.5 x the capacity: the duel with a 1% small queue wins it.
        for round in 0..14 {
            if round == 12 {
                store.reset_stats();
            }
            for i in 0..12_000u32 {
                let key = format!("k{i}");
                if store.get(&key).into_inner().unwrap().is_none() {
                    store.set(&key, round, SetOptions::new()).into_inner().unwrap();
                }
            }
        }
        let now = settings();
        assert_ne!(now[0], initial[0], "the leader's shadows switched");
        assert!(now[0].duel);
        assert!(now.iter().all(|&s| s == now[0]), "every shard follows: {now:?}");
        let ratio = store.stats().hit_ratio;
        assert!(ratio > 0.55, "a frozen main holds most of the loop (LRU: none of it): {ratio}");
    }

    #[test]
    fn a_dropped_or_finished_load_leaves_no_placeholder() {
        let store = MemoryStore::<u32>::new(LruPolicy::new(10).unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        {
            let load = pin!(store.get_or_set("k", std::future::pending::<u32>, SetOptions::new()));
            assert!(load.poll(&mut cx).is_pending());
            assert_eq!(store.loads_in_progress(), 1, "the load is in progress");
        }
        assert_eq!(store.loads_in_progress(), 0, "dropping the load removed its placeholder");
        let done = pin!(store.get_or_set("k", || async { 5 }, SetOptions::new()));
        assert!(matches!(done.poll(&mut cx), std::task::Poll::Ready(Ok(5))));
        assert_eq!(store.loads_in_progress(), 0);
        // A load cancelled by a delete leaves none either.
        let mut load = Box::pin(store.get_or_set("j", || async { 1 }, SetOptions::new()));
        assert!(load.as_mut().poll(&mut cx).is_ready());
        assert_eq!(store.loads_in_progress(), 0);
    }
}
