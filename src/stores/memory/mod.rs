//! [`MemoryStore`]: entries in this process's memory.
//!
//! The store (this file) checks each key once into a [`Key`], hashes it once
//! for its shard and its engine, and takes the shard's lock only as long as
//! the call needs it; `reentry.rs` owns the locks and the re-entrancy marks,
//! `refresh.rs` read-through and stale-while-revalidate. Below it, the engine
//! (`engine/`) holds one shard's entries and policy.

mod engine;
mod fifo_ghost;
// The adaptive S3-FIFO's parts: not built into the wasm32 engine (see engine/queues.rs).
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
mod batch;
mod dump;
#[cfg(any(test, target_arch = "wasm32"))]
mod hasher;
mod listen;
mod reentry;
mod refresh;
mod shard;
// proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod adaptive_model_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod model_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod plain_path_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod s3fifo_model_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod weight_model_tests;
// The slot engine's differential test uses it on wasm32 too (wasm-pack test).
#[cfg(test)]
mod test_support;
#[cfg(all(test, not(target_arch = "wasm32"), feature = "redis"))]
pub(crate) use model_tests::fuzz_cases;

pub use dump::{Dump, DumpEntry};

use std::future::{Future, Ready, ready};
use std::hash::BuildHasher;
use std::sync::Arc;

use engine::{Engine, KeyHasher, Lookup, Weigher};
use listen::Locked;
use reentry::{Checked, lane_after, read, read_after, write, write_after};
use shard::Shard;

use crate::clock::Clock;
use crate::errors::{DynError, Result};
use crate::key::{Key, LookupKey, Probe};
use crate::metrics::{CacheStats, Counters};
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::refresh::{RefreshLoader, RefreshOptions};
use crate::removal::{RemovalListener, RemovalReason};
use crate::singleflight::{SingleFlight, loader_error};
use crate::store::{CacheStore, Metadata, SetOptions, check_set_options};

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
/// [`CacheError::ReentrantValue`](crate::errors::CacheError::ReentrantValue) instead
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
    /// 63 - log2 of the shard count: see [`shard_of`](Self::shard_of).
    shard_shift: u32,
    /// The engines' hasher: a key is hashed once, for its shard and its engine.
    hasher: KeyHasher,
    shared_reads: bool,
    policy: Policy,
    /// The engines' clock, for the time a load takes.
    clock: Clock,
    flights: SingleFlight<V>,
    /// Told of every entry that leaves, after the lock (`listen.rs`).
    listener: Option<RemovalListener<V>>,
    /// Whether the engines weigh their entries (`MemoryStoreBuilder::weigher`).
    weighs: bool,
}

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
    weigher: Option<Weigher<V>>,
    listener: Option<RemovalListener<V>>,
}

impl<V: Clone + Send + Sync + 'static> MemoryStoreBuilder<V> {
    /// The time source for expiry and latency (default: [`Clock::system`]).
    /// Pass a [`ManualClock`](crate::clock::ManualClock) to control time in tests.
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
    /// rounded up to a power of two, with at least 1,024 entries a shard;
    /// with a [`weigher`](Self::weigher), 1 (see there).
    /// The shards of an adaptive S3-FIFO store share one setting: the first
    /// shard's shadow caches choose it and the others follow, so a sharded
    /// store adapts as a whole one does (hit ratios sharded and unsharded are
    /// within 0.3 points on the ARC traces, Zipf and loops; see the README).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Bounds the store by weight instead of by entries, as moka's `weigher`
    /// and quick_cache's `Weighter` do: `weigher(key, value)` gives each entry
    /// its weight (its size in bytes, say) when it is set, and the policy's
    /// `max_size` becomes the most **total weight** the store holds. A new
    /// entry evicts as many entries as it takes, by the policy's own rule,
    /// for the total to fit. Every bounded policy weighs: LRU, S3-FIFO (its
    /// small queue is then a share of the weight), TTL with a `max_size`.
    ///
    /// - An entry heavier than the whole capacity is refused with
    ///   [`CacheError::EntryTooLarge`](crate::errors::CacheError::EntryTooLarge):
    ///   nothing is evicted for it and the store is left as it was (the
    ///   key's old entry too). A weight of 0 is allowed: such an entry makes
    ///   no room and takes none.
    /// - A weight is taken when the entry is set and never again (`set_many`
    ///   weighs each entry twice: it checks the whole batch fits before it
    ///   writes any).
    /// - The weigher runs under the shard's lock, before anything changes:
    ///   if it panics, the `set` panics and the store is as it was; if it
    ///   calls the same store, that call fails with
    ///   [`CacheError::ReentrantValue`](crate::errors::CacheError::ReentrantValue).
    ///   Keep it cheap.
    /// - [`stats`](crate::store::CacheStore::stats)`().total_weight` is the
    ///   total weight held.
    /// - Sharding: a weighted store has **one shard** unless
    ///   [`shards`](Self::shards) asks for more. With `n` shards each holds
    ///   `max_size / n` of the weight, and an entry heavier than its shard's
    ///   share is refused (`EntryTooLarge`, whose `capacity` is the shard's),
    ///   never silently dropped: give a sharded weighted store room for
    ///   `n` of your largest entries.
    ///
    /// ```
    /// use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MemoryStore, SetOptions};
    ///
    /// // At most 1,000 bytes of strings.
    /// let store = MemoryStore::<String>::builder(LruPolicy::new(1_000)?)
    ///     .weigher(|key, value: &String| (key.len() + value.len()) as u64)
    ///     .build();
    /// store.set("a", "x".repeat(600), SetOptions::new()).into_inner()?;
    /// store.set("b", "y".repeat(300), SetOptions::new()).into_inner()?;
    /// // 601 + 301 bytes held; 501 more evicts "a", the least recently used.
    /// store.set("c", "z".repeat(500), SetOptions::new()).into_inner()?;
    /// assert_eq!(store.get("a").into_inner()?, None);
    /// assert_eq!(store.stats().total_weight, 301 + 501);
    /// // Heavier than the whole capacity: refused, nothing evicted.
    /// let err = store.set("d", "w".repeat(1_000), SetOptions::new()).into_inner().unwrap_err();
    /// assert!(matches!(err, CacheError::EntryTooLarge { weight: 1_001, capacity: 1_000, .. }));
    /// assert_eq!(store.len(), 2);
    /// # Ok::<(), CacheError>(())
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&str, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Calls `listener` with the key, the value and the [`RemovalReason`] of
    /// every entry that leaves the store: evicted by the policy, expired
    /// (found by a read, a write's sweep or a walk), replaced by a `set` or a
    /// load storing its value (the old value, under the key that now holds
    /// the new one), deleted, invalidated, cleared. Each entry is reported
    /// once, by the call that removed it.
    ///
    /// The listener runs on the thread of that call, after the call has
    /// released every lock and the store is consistent again, so it may use
    /// the store (read, write, delete the same key). A listener that panics
    /// changes nothing either: the panic is caught (the panic hook still
    /// reports it), the call's other removals are still reported, and the
    /// call returns its own result. (Under `panic = "abort"` a panic ends the
    /// process, as any panic does.) A store built without a listener pays
    /// nothing for this.
    ///
    /// ```
    /// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, RemovalReason, SetOptions};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let store = MemoryStore::builder(LruPolicy::new(2)?)
    ///     .on_remove(move |key: &str, value: u32, reason| log.lock().unwrap().push((key.to_string(), value, reason)))
    ///     .build();
    /// for (key, value) in [("a", 1), ("b", 2), ("a", 3), ("c", 4)] {
    ///     store.set(key, value, SetOptions::new()).into_inner()?;
    /// }
    /// store.delete("a").into_inner()?;
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [
    ///         ("a".to_string(), 1, RemovalReason::Replaced),
    ///         ("b".to_string(), 2, RemovalReason::Evicted),
    ///         ("a".to_string(), 3, RemovalReason::Deleted),
    ///     ]
    /// );
    /// # Ok::<(), pepperpy_caching::CacheError>(())
    /// ```
    pub fn on_remove(mut self, listener: impl Fn(&str, V, RemovalReason) + Send + Sync + 'static) -> Self {
        self.listener = Some(std::sync::Arc::new(listener));
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore<V> {
        let max_size = self.policy.max_size();
        let weighted = self.weigher.is_some();
        let wanted = self.shards.unwrap_or_else(|| match (&self.policy, max_size) {
            // A capacity in weight says nothing of how many entries a shard would hold.
            _ if weighted => 1,
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
            .zip(engine::LaneColumn::table(count))
            .map(|(i, lanes)| {
                let mut engine = Engine::with_hasher(self.policy.clone(), self.clock.clone(), hasher.clone(), lanes);
                if let Some(weigher) = &self.weigher {
                    engine.weigh_with(Arc::clone(weigher));
                }
                if let Some(max) = max_size {
                    // Spread the remainder over the first shards: the total is exactly max.
                    engine.limit_max_size(max / count + usize::from(i < max % count));
                }
                if count > 1 {
                    engine.share_setting(&setting, i == 0);
                }
                if self.listener.is_some() {
                    engine.keep_orphans();
                }
                Shard::new(engine)
            })
            .collect();
        let shared_reads = read(&shards[0]).reads_are_shared();
        MemoryStore {
            shards,
            shard_shift: 63 - count.trailing_zeros(),
            hasher,
            shared_reads,
            policy: self.policy,
            clock: self.clock,
            flights: SingleFlight::default(),
            listener: self.listener,
            weighs: weighted,
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
            weigher: None,
            listener: None,
        }
    }

    /// How many live entries there are (expired ones are reclaimed first).
    pub fn len(&self) -> usize {
        self.assert_not_reentered("len");
        self.fold(0, |n, engine| n + engine.len())
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the policy allows, if it sets a limit (with a
    /// [`weigher`](MemoryStoreBuilder::weigher): the most total weight).
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
}

impl<V> MemoryStore<V> {
    /// The shard that owns a key with this hash. The top bits pick the shard:
    /// the engine's table uses the low bits and the top seven as its tag, and
    /// those stay evenly spread within a shard.
    ///
    /// With `b` = log2 of the shard count, the index is the `b` bits below
    /// the top seven: `(hash << 7) >> (64 - b)`, written as `>> 1 >> (63 - b)`
    /// so that one shard (b = 0) needs no branch (it shifts out every bit).
    #[inline(always)]
    fn shard_of(&self, hash: u64) -> &Shard<V> {
        let i = self.shard_index(hash);
        debug_assert!(i < self.shards.len());
        // SAFETY: `i` < 2^b = `shards.len()` (a power of two): the shift
        // leaves b bits.
        unsafe { self.shards.get_unchecked(i) }
    }

    /// The index of [`shard_of`](Self::shard_of)'s shard.
    #[inline(always)]
    fn shard_index(&self, hash: u64) -> usize {
        (((hash << 7) >> 1) >> self.shard_shift) as usize
    }

    /// Checks `key` (once, for the whole call) and hashes it (once, for its
    /// shard and its engine), after checking that the call `call` does not
    /// come from inside a value's `Clone` or `Drop` run by this store.
    #[inline(always)]
    fn checked<'k>(&self, call: &'static str, key: &'k str) -> Result<(Key<'k>, u64)> {
        self.checked_for_lock(call, key).map(|(key, hash, _)| (key, hash))
    }

    /// [`checked`](Self::checked), with the re-entrancy mark it read for
    /// the one lock the call takes next (`get`, `set`).
    #[inline(always)]
    fn checked_for_lock<'k>(&self, call: &'static str, key: &'k str) -> Result<(Key<'k>, u64, Checked)> {
        let checked = self.check_reentry(call)?;
        let key = Key::new(key)?;
        Ok((key, self.hasher.hash_one(&*key), checked))
    }

    /// Sums what `f` reports for every shard. What the engines set aside
    /// (expired entries) goes to the listener after the last shard.
    fn fold<T>(&self, init: T, mut f: impl FnMut(T, &mut Engine<V>) -> T) -> T {
        let mut acc = init;
        let mut orphans = Vec::new();
        for shard in self.shards.iter() {
            let mut engine = write(shard);
            acc = f(acc, &mut engine);
            if engine.has_orphans() {
                orphans.push(engine.take_orphans());
            }
        }
        if !orphans.is_empty() {
            self.dispose(orphans.into_iter().flatten(), "");
        }
        acc
    }

    /// Runs `f` on the engine of the key with this hash, under its lock;
    /// what the engine set aside goes to the listener after the lock.
    #[inline(always)]
    fn on_shard<T>(&self, hash: u64, f: impl FnOnce(&mut Engine<V>) -> T) -> T {
        let mut engine = write(self.shard_of(hash));
        let out = f(&mut engine);
        self.release(engine);
        out
    }
}

impl<V> MemoryStore<V> {
    /// `set`'s short path for a new key ([`Engine::insert_plain`]), under
    /// the lock `engine`, which it releases before the evicted entry is
    /// dropped or handed to the listener. Out of line: `set` inlines the
    /// update path, and with this one too it grew past what LLVM inlines
    /// into it (the lock guard's drop went out of line, ~25 instructions a
    /// `set`). The value and the lock back if the engine is at `MAX_SLOTS`.
    #[inline(never)]
    fn insert_plain<'a>(
        &'a self,
        mut engine: Locked<'a, V>,
        key: Key<'_>,
        hash: u64,
        value: V,
    ) -> std::result::Result<(), (V, Locked<'a, V>)> {
        match engine.insert_plain(key, hash, value) {
            Ok(evicted) => {
                self.release(engine);
                // Dropped (or handed to the listener) after the lock.
                if self.listener.is_some() {
                    self.dispose(evicted, &key);
                } else {
                    drop(evicted);
                }
                Ok(())
            }
            Err(value) => Err((value, engine)),
        }
    }
}

impl<V: Clone> MemoryStore<V> {
    /// `get` of a checked key with its hash.
    #[inline(always)]
    fn get_hashed(&self, key: Key<'_>, hash: u64) -> Option<V> {
        self.get_after(key, hash, None)
    }

    /// [`get_hashed`](Self::get_hashed), taking the lock with the mark the
    /// call's check read if it has it.
    #[inline(always)]
    fn get_after(&self, key: Key<'_>, hash: u64, checked: Option<Checked>) -> Option<V> {
        if !self.shared_reads {
            return self.get_exclusive(key, hash, checked);
        }
        let shard = self.shard_of(hash);
        let engine = match checked {
            Some(checked) => read_after(shard, checked),
            None => read(shard),
        };
        let found = engine.get_shared(key, hash, None, V::clone);
        drop(engine);
        match found {
            Lookup::Hit(value) => Some(value),
            // `Refused` only for a `Probe`.
            Lookup::Miss | Lookup::Refused => None,
            Lookup::Expired => {
                self.reclaim(key, hash);
                None
            }
        }
    }

    /// `get`: the key is looked up before it is checked for U+FFFF (only
    /// its length is checked first), and checked only on a miss, before the
    /// miss is counted ([`Probe`]): a key held passed every rule when it was
    /// set. A refused key changes nothing, as before.
    #[inline(always)]
    fn get_probed(&self, key: &str) -> Result<Option<V>> {
        if !self.shared_reads {
            return self.get_checked_exclusive(key);
        }
        let checked = self.check_reentry("get")?;
        let probe = Probe::new(key)?;
        let hash = self.hasher.hash_one(&*probe);
        let shard = self.shard_of(hash);
        // On this thread's lane, without the lock (`shard.rs`), or under the read lock.
        let found = match lane_after(shard, checked) {
            Ok((engine, entered)) => engine.get_entered(entered, probe, hash, V::clone),
            Err(checked) => Self::get_locked(shard, checked, probe, hash),
        };
        match found {
            Lookup::Hit(value) => Ok(Some(value)),
            Lookup::Miss => Ok(None),
            rare => self.get_rare(rare, probe, hash),
        }
    }

    /// [`get_probed`](Self::get_probed) under exact LRU (exclusive reads):
    /// the key checked first, as every other call does.
    #[inline(never)]
    fn get_checked_exclusive(&self, key: &str) -> Result<Option<V>> {
        let (key, hash, checked) = self.checked_for_lock("get", key)?;
        let mut engine = write_after(self.shard_of(hash), checked);
        let found = engine.get_exclusive(key, hash, None, V::clone);
        self.release(engine);
        Ok(found)
    }

    /// [`get_probed`](Self::get_probed)'s read under the shard's read lock
    /// (a thread without a lane, or a writer holds the shard): out of line,
    /// so that the lane read keeps its registers.
    #[cold]
    #[inline(never)]
    fn get_locked(shard: &Shard<V>, checked: Checked, probe: Probe<'_>, hash: u64) -> Lookup<V> {
        read_after(shard, checked).get_shared(probe, hash, None, V::clone)
    }

    /// What [`get_probed`](Self::get_probed) does after an expired entry
    /// (reclaims it) or a refused key (its error).
    #[cold]
    #[inline(never)]
    fn get_rare(&self, found: Lookup<V>, probe: Probe<'_>, hash: u64) -> Result<Option<V>> {
        match found {
            Lookup::Expired => {
                self.reclaim(probe.found(), hash);
                Ok(None)
            }
            Lookup::Refused => Err(probe.error()),
            Lookup::Hit(value) => Ok(Some(value)),
            Lookup::Miss => Ok(None),
        }
    }

    /// `get` under the shard's exclusive lock (exact LRU), out of line so
    /// that the shared read path stays small.
    #[inline(never)]
    fn get_exclusive(&self, key: Key<'_>, hash: u64, checked: Option<Checked>) -> Option<V> {
        let shard = self.shard_of(hash);
        let mut engine = match checked {
            Some(checked) => write_after(shard, checked),
            None => write(shard),
        };
        let found = engine.get_exclusive(key, hash, None, V::clone);
        self.release(engine);
        found
    }

    /// Reclaims the expired entry a shared read found: off the hit path, which
    /// then keeps fewer registers.
    #[cold]
    #[inline(never)]
    fn reclaim(&self, key: Key<'_>, hash: u64) {
        self.on_shard(hash, |engine| engine.reclaim_if_expired(key, hash));
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
// What a call removes is dropped after the lock is released: a value's Drop
// may panic, or use this store.
#[allow(refining_impl_trait)]
impl<V: Clone + Send + Sync + 'static> CacheStore<V> for MemoryStore<V> {
    #[inline]
    fn get(&self, key: &str) -> Ready<Result<Option<V>>> {
        ready(self.get_probed(key))
    }

    fn set(&self, key: &str, value: V, options: SetOptions) -> Ready<Result<()>> {
        let (key, hash, checked) = match self.checked_for_lock("set", key) {
            Ok(checked) => checked,
            Err(e) => return ready(Err(e)),
        };
        let mut engine = write_after(self.shard_of(hash), checked);
        // The common case first: a new value for a key held, plain options.
        let (value, absent) =
            if options.ttl.is_none() && options.idle.is_none() && options.metadata.is_none() && options.tags.is_empty()
            {
                match engine.update_plain(key, hash, value) {
                    Ok((old_value, old_metadata)) => {
                        self.release(engine);
                        if self.listener.is_some() {
                            self.dispose(Some(engine::Removed::replaced(old_value, old_metadata)), &key);
                        } else {
                            // The metadata's drop glue is a call even for `None`, the common case.
                            if old_metadata.is_some() {
                                drop(old_metadata);
                            } else {
                                std::mem::forget(old_metadata);
                            }
                            drop(old_value);
                        }
                        return ready(Ok(()));
                    }
                    // A new key: stored on the short path too, unless the engine is at `MAX_SLOTS`.
                    Err((value, true)) => match self.insert_plain(engine, key, hash, value) {
                        Ok(()) => return ready(Ok(())),
                        Err((back, engine_back)) => {
                            engine = engine_back;
                            (back, true)
                        }
                    },
                    // `absent`: it missed the key, which `set_into_known` then does not look up again.
                    Err(back) => back,
                }
            } else {
                (value, false)
            };
        // What the set removes lands here, in place, and is dropped (or
        // handed to the listener) after the lock.
        let mut removed = engine::Removals::new();
        let result = engine.set_into_known(key, hash, value, options, &mut removed, absent);
        self.release(engine);
        self.dispose_write(removed, &key);
        ready(result)
    }

    fn delete(&self, key: &str) -> Ready<Result<bool>> {
        ready(self.checked("delete", key).map(|(key, hash)| {
            let removed = self.on_shard(hash, |engine| engine.delete(key, hash));
            let found = removed.is_some();
            self.dispose(removed, &key);
            found
        }))
    }

    fn get_many(&self, keys: &[&str]) -> Ready<Result<Vec<Option<V>>>> {
        ready(self.get_many_now(keys))
    }

    fn set_many(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Ready<Result<()>> {
        ready(self.set_many_now(entries, options))
    }

    fn delete_many(&self, keys: &[&str]) -> Ready<Result<usize>> {
        ready(self.delete_many_now(keys))
    }

    fn contains(&self, key: &str) -> Ready<Result<bool>> {
        ready(self.checked("contains", key).map(|(key, hash)| self.on_shard(hash, |e| e.contains(key, hash))))
    }

    fn get_metadata(&self, key: &str) -> Ready<Result<Option<Metadata>>> {
        ready(self.checked("get_metadata", key).map(|(key, hash)| self.on_shard(hash, |e| e.get_metadata(key, hash))))
    }

    fn update_metadata(&self, key: &str, metadata: Metadata) -> Ready<Result<bool>> {
        ready(
            self.checked("update_metadata", key)
                .and_then(|(key, hash)| self.on_shard(hash, |e| e.update_metadata(key, hash, metadata))),
        )
    }

    fn invalidate(&self, pattern: &str) -> Ready<Result<usize>> {
        // Parsed once up front, so a bad pattern fails before any shard changes.
        let pattern = match self.reentered("invalidate").and_then(|()| Pattern::new(pattern)) {
            Ok(pattern) => pattern,
            Err(e) => return ready(Err(e)),
        };
        // Every shard first, then the values are dropped, outside the locks:
        // a panicking Drop cannot stop the call halfway through the shards.
        let mut removed = Vec::new();
        let n = self.fold(0, |n, engine| {
            let gone = engine.invalidate(&pattern);
            let n = n + gone.len();
            removed.push(gone);
            n
        });
        self.dispose(removed.into_iter().flatten(), "");
        ready(Ok(n))
    }

    fn invalidate_tags(&self, tags: &[&str]) -> Ready<Result<usize>> {
        // Checked once up front, so a bad tag fails before any shard changes.
        if let Err(e) = self.reentered("invalidate_tags").and_then(|()| crate::tags::check_invalidate_tags(tags)) {
            return ready(Err(e));
        }
        // As `invalidate`: every shard first, the values dropped after.
        let mut removed = Vec::new();
        let n = self.fold(0, |n, engine| {
            let gone = engine.invalidate_tags(tags);
            let n = n + gone.len();
            removed.push(gone);
            n
        });
        self.dispose(removed.into_iter().flatten(), "");
        ready(Ok(n))
    }

    fn get_tags(&self, key: &str) -> Ready<Result<Option<Vec<String>>>> {
        ready(self.checked("get_tags", key).map(|(key, hash)| self.on_shard(hash, |e| e.get_tags(key, hash))))
    }

    fn keys(&self, pattern: Option<&str>) -> Ready<Result<Vec<String>>> {
        if let Err(e) = self.reentered("keys") {
            return ready(Err(e));
        }
        let pattern = match pattern.map(Pattern::new).transpose() {
            Ok(pattern) => pattern,
            Err(e) => return ready(Err(e)),
        };
        ready(Ok(self.fold(Vec::new(), |mut keys, engine| {
            keys.extend(engine.keys(pattern.as_ref()));
            keys
        })))
    }

    fn size(&self) -> Ready<Result<usize>> {
        ready(self.reentered("size").map(|()| self.len()))
    }

    fn clear(&self) -> Ready<Result<()>> {
        if let Err(e) = self.reentered("clear") {
            return ready(Err(e));
        }
        let mut removed = Vec::new();
        self.fold((), |(), engine| removed.push(engine.clear()));
        self.dispose(removed.into_iter().flatten(), "");
        ready(Ok(()))
    }

    async fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        E: Into<DynError> + 'static,
    {
        // The inherent method (same name; inherent methods come first).
        // Through the trait a hit is answered when the future is first
        // polled, not when the call is made.
        MemoryStore::get_or_refresh(self, key, loader, options).await
    }

    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let (key, hash) = self.checked("get_or_set", key)?;
        // Bad options fail before any loader runs (the engine's `set` checks them again).
        check_set_options(&options, self.policy.default_ttl())?;
        let lead = || {
            let load = async { loader().await.map_err(loader_error) };
            // Stored only if nothing wrote, deleted, invalidated or cleared
            // the key meanwhile; the callers get the loaded value either way.
            self.lead_load(key, hash, load, |engine, token, loaded| {
                let still_ours = engine.end_load(key, token) && engine.tagged_load_may_store(token, &options.tags);
                match loaded {
                    Ok(value) if still_ours => engine.set(key, hash, value.clone(), options),
                    _ => Ok(engine::Removals::new()),
                }
            })
        };
        self.flights.read_through(&key, || ready(Ok(self.get_hashed(key, hash))), Ok, lead).await
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

    /// A `set` looks its key up in the index once: a new key that the
    /// update fast path missed is not looked up again (it was twice, ~40
    /// instructions a churn set).
    #[test]
    fn a_set_looks_its_key_up_once() {
        use super::engine::FINDS;
        for policy in [
            Policy::from(crate::policies::S3FifoPolicy::new(2).unwrap()),
            Policy::from(crate::policies::LruPolicy::new(2).unwrap()),
        ] {
            let store = MemoryStore::<u32>::new(policy);
            for (i, key) in ["a", "b", "c", "c", "a"].into_iter().enumerate() {
                let before = FINDS.get();
                store.set(key, i as u32, SetOptions::new()).into_inner().unwrap();
                assert_eq!(FINDS.get() - before, 1, "set {i} of {key}");
            }
            assert_eq!(store.get("a").into_inner().unwrap(), Some(4), "the last set is held");
        }
    }

    /// One set of shadows per store: the first shard chooses the adaptive
    /// setting and the other shards take it on their next write.
    #[test]
    fn the_shards_follow_the_first_shards_setting() {
        let store =
            MemoryStore::<u32>::builder(crate::policies::S3FifoPolicy::new(4 * 2_000).unwrap()).shards(4).build();
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

    /// A weighted store sizes its adaptive state for the entries it holds
    /// when it first fills: new shadows, the setting kept. The new shadows
    /// start from that setting, not from the first one, or the next write
    /// would switch the store back to the first setting without evidence.
    #[test]
    fn a_weighted_store_keeps_its_adaptive_setting_when_it_first_fills() {
        let store = MemoryStore::<u64>::builder(crate::policies::S3FifoPolicy::new(1_000_000).unwrap())
            .shards(1)
            .weigher(|_, v: &u64| *v)
            .build();
        let setting = || read(&store.shards[0]).adaptive_setting().unwrap();
        let initial = setting();
        // Until it fills, the shadows model 1,024 entries: a loop of 3,000
        // keys, every one held by the store, thrashes them, and the duel
        // with a 1% small queue wins it.
        for _ in 0..40 {
            for i in 0..3_000 {
                store.set(&format!("k{i}"), 1, SetOptions::new()).into_inner().unwrap();
            }
        }
        let chosen = setting();
        assert_ne!(chosen, initial, "the shadows switched before the store filled");
        // The first fill: an entry that does not fit beside the 3,000.
        store.set("heavy", 1_000_000 - 1_000, SetOptions::new()).into_inner().unwrap();
        assert!(store.stats().evictions > 0, "the store made room");
        for i in 0..10 {
            store.set(&format!("n{i}"), 1, SetOptions::new()).into_inner().unwrap();
        }
        assert_eq!(setting(), chosen, "the setting chosen before the fill is kept");
    }

    /// The shards agree on the adaptive setting from the start, whichever
    /// setting the leader starts from (the leader publishes only changes).
    #[test]
    fn followers_start_from_the_leaders_setting_whatever_it_is() {
        let policy: Policy = crate::policies::S3FifoPolicy::new(4_000).unwrap().into();
        let hasher = KeyHasher::default();
        let new = || {
            Engine::<u32>::with_hasher(policy.clone(), Clock::system(), hasher.clone(), engine::LaneColumn::single())
        };
        for start in crate::stores::memory::shadow::SETTINGS {
            let shared = Arc::new(std::sync::atomic::AtomicU8::new(0));
            let (mut leader, mut follower) = (new(), new());
            leader.start_from_setting_for_tests(start);
            leader.share_setting(&shared, true);
            follower.share_setting(&shared, false);
            assert_eq!(follower.adaptive_setting(), Some(start));
            // Writes change nothing: the leader's shadows hold to their start.
            for i in 0..100 {
                let key = format!("k{i}");
                let (key, hash) = (Key::new(&key).unwrap(), hasher.hash_one(key.as_str()));
                leader.set(key, hash, i, SetOptions::new()).unwrap().drop_entries();
                follower.set(key, hash, i, SetOptions::new()).unwrap().drop_entries();
            }
            assert_eq!((leader.adaptive_setting(), follower.adaptive_setting()), (Some(start), Some(start)));
        }
    }

    /// Reads of idle entries from many threads at once, under the shards'
    /// read locks (S3-FIFO), while the clock moves and other keys are
    /// written: every read is recorded (the latest wins), so entries read
    /// more often than their idle time never leave, and the engines stay
    /// consistent; unread, they all leave.
    #[test]
    fn idle_entries_read_by_many_threads_stay_and_then_leave() {
        let clock = crate::clock::ManualClock::new();
        let store = MemoryStore::<u32>::builder(crate::policies::S3FifoPolicy::new(4_000).unwrap())
            .shards(4)
            .clock(clock.clone())
            .build();
        let idle = std::time::Duration::from_millis(100);
        for i in 0..64u32 {
            store.set(&format!("idle{i}"), i, SetOptions::new().idle(idle)).into_inner().unwrap();
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        let mut misses = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            for i in 0..64u32 {
                                misses += usize::from(store.get(&format!("idle{i}")).into_inner().unwrap().is_none());
                            }
                        }
                        misses
                    })
                })
                .collect();
            // The clock moves 10 ms at a time, and only after a full round of
            // reads has seen the time before: no entry goes 100 ms unread.
            for step in 0..200u32 {
                for i in 0..64u32 {
                    assert!(store.get(&format!("idle{i}")).into_inner().unwrap().is_some(), "step {step}: idle{i}");
                }
                clock.advance(std::time::Duration::from_millis(10));
                store.set(&format!("other{}", step % 50), step, SetOptions::new()).into_inner().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for reader in readers {
                assert_eq!(reader.join().unwrap(), 0, "no reader missed");
            }
        });
        for shard in store.shards.iter() {
            write(shard).validate();
        }
        clock.advance(idle);
        assert_eq!(store.len(), 50, "only the plain entries are left");
        assert_eq!(store.stats().expirations, 64);
        for shard in store.shards.iter() {
            write(shard).validate();
        }
    }

    /// A `get` counts itself on its thread's lane (a plain load and store),
    /// not on the shard's shared counter (an atomic add every reading thread
    /// makes on one word): a read takes two atomic read-modify-writes, the
    /// read lock's, as quick_cache's does. The counts stay exact, from any
    /// number of threads, and `reset_stats` clears the lanes too.
    #[test]
    fn a_shared_get_counts_on_its_threads_lane_and_stats_stay_exact() {
        let store = MemoryStore::<u64>::builder(crate::policies::S3FifoPolicy::new(4_000).unwrap()).shards(4).build();
        for i in 0..100 {
            store.set(&format!("k{i}"), i, SetOptions::new()).into_inner().unwrap();
        }
        let threads = 24;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..1_000u64 {
                        // 100 of 150 keys held.
                        store.get(&format!("k{}", (i + t) % 150)).into_inner().unwrap();
                    }
                });
            }
        });
        let stats = store.stats();
        assert_eq!(stats.hits + stats.misses, threads * 1_000, "every get counted once");
        let missing = (0..threads).flat_map(|t| (0..1_000).map(move |i| (i + t) % 150)).filter(|k| *k >= 100).count();
        assert_eq!(stats.misses, missing as u64, "the gets of the keys never set missed");
        // One thread alone: its gets land on its lane, not the shared word.
        let before: Vec<u64> = store.shards.iter().map(|s| read(s).shared_gets_for_tests()).collect();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..100 {
                    store.get(&format!("k{i}")).into_inner().unwrap();
                }
            });
        });
        let after: Vec<u64> = store.shards.iter().map(|s| read(s).shared_gets_for_tests()).collect();
        assert_eq!(before, after, "no get wrote a shard's shared counter");
        assert_eq!(store.stats().hits, stats.hits + 100);
        store.reset_stats();
        let zero = store.stats();
        assert_eq!((zero.hits, zero.misses), (0, 0), "reset clears the lanes");
        store.get("k1").into_inner().unwrap();
        assert_eq!(store.stats().hits, 1);
    }

    /// A lane read reads the shard's writer flag and its lanes' pointer, a
    /// thread without a lane changes the read lock's state and the engine's
    /// read counters: all of them sit in the shard's first 64-byte line, so
    /// a `get` begins on one line of the shard, and two threads reading one
    /// shard without lanes pass one line back and forth, not two.
    #[test]
    fn the_lock_the_flag_the_lanes_and_the_read_counters_share_a_cache_line() {
        let store = MemoryStore::<u64>::builder(crate::policies::S3FifoPolicy::new(4_000).unwrap()).shards(2).build();
        for shard in store.shards.iter() {
            let base = shard as *const Shard<u64> as usize;
            assert_eq!(base % 64, 0, "a shard starts a cache line");
            let engine = read(shard);
            let reads = engine.read_counters_address() - base;
            let end = reads + std::mem::size_of::<crate::metrics::ReadCounters>();
            assert!(end <= 64, "the read counters end {end} bytes into the shard, past its first line");
            assert!(shard.first_line_fields_end() - base <= reads, "the lock, flag and lanes come before them");
        }
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
