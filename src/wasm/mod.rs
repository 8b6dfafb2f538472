//! The JavaScript bindings behind the npm package (wasm32 only).
//!
//! Owns the boundary and nothing else: turning JS arguments into core calls
//! and `CacheError`s into JS errors. Every rule about keys, TTLs, capacities
//! and patterns stays in the core, so a rule means the same in Rust and in JS.
//! The ergonomic API (option objects, Promises, `Error` subclasses, key type
//! checks) is the hand-written layer in `js/`, which is the only caller of
//! these exports; their names are not a public contract.
//!
//! Values never enter wasm. They live in JS, in an array indexed by the
//! entry's slot id, and keys map to slot ids in a JS `Map`, so the garbage
//! collector sees every value and a hit is a `Map` lookup plus
//! [`WasmStore::touch`] with a number. The engine here keeps the policy,
//! expiry, metadata and keys (for patterns) by slot (see the slot-addressed
//! methods of `Engine<u32>`) and hands back the id of every entry it removes.
//!
//! No code a user can reach runs inside a call: every argument is a number or
//! a string the JS layer made (the clock is read in JS and passed in as
//! `now`, in milliseconds; metadata crosses as JSON text the JS layer wrote
//! from its own plain copy), errors come back as text for the JS layer to
//! turn into its classes, and nothing here calls a JS global. So a call can
//! only end early by a trap (stack overflow, memory exhausted); the methods
//! take `&self` over an [`UnsafeCell`], so a trap cannot leave a borrow flag
//! set that would refuse every later call. The shared borrow it does leave
//! is what [`WasmStore::intact`] detects: a trap may stop the engine half-way
//! through an update, and the JS layer then replaces that store's engine.

mod errors;
mod key_buffer;
mod metadata;

use std::time::Duration;

use wasm_bindgen::prelude::*;

use std::cell::UnsafeCell;

use crate::clock::ManualClock;
use crate::errors::CacheError;
use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy, check_ttl};
use crate::refresh::{BoxFuture, RefreshOptions, Runtime};
use crate::store::SetOptions;
use crate::stores::memory::{Engine, Reason};

use errors::IntoJs;

type JsResult<T> = Result<T, JsValue>;

/// A validated policy, made by the JS `LRUPolicy` / `S3FIFOPolicy` /
/// `TTLPolicy` classes. The JS layer has checked the types and ranges of the
/// numbers (and worded those messages, so no float is ever formatted here);
/// the core checks the rest.
#[wasm_bindgen]
pub struct WasmPolicy(Policy);

#[wasm_bindgen]
impl WasmPolicy {
    /// An LRU policy: `max_size` a whole number, `ttl` seconds.
    pub fn lru(max_size: f64, ttl: Option<f64>, refresh_on_get: Option<bool>) -> JsResult<WasmPolicy> {
        let build = || {
            let mut policy = LruPolicy::new(max_size as usize)?;
            if let Some(ttl) = ttl {
                policy = policy.with_default_ttl(ttl_from_secs(ttl)?)?;
            }
            if let Some(refresh) = refresh_on_get {
                policy = policy.refresh_on_get(refresh);
            }
            Ok(WasmPolicy(policy.into()))
        };
        build().into_js()
    }

    /// An S3-FIFO policy: `max_size` a whole number, `ttl` seconds.
    pub fn s3fifo(max_size: f64, ttl: Option<f64>) -> JsResult<WasmPolicy> {
        let build = || {
            let mut policy = S3FifoPolicy::new(max_size as usize)?;
            if let Some(ttl) = ttl {
                policy = policy.with_default_ttl(ttl_from_secs(ttl)?)?;
            }
            Ok(WasmPolicy(policy.into()))
        };
        build().into_js()
    }

    /// A TTL policy: `ttl` seconds, `max_size` a whole number.
    pub fn ttl(ttl: f64, max_size: Option<f64>) -> JsResult<WasmPolicy> {
        let build = || {
            let mut policy = TtlPolicy::new(ttl_from_secs(ttl)?)?;
            if let Some(max_size) = max_size {
                policy = policy.with_max_size(max_size as usize)?;
            }
            Ok(WasmPolicy(policy.into()))
        };
        build().into_js()
    }
}

/// The store: one engine, owned outright, since a wasm instance has one thread.
///
/// The engine's clock is a [`ManualClock`] that each call moves to the `now`
/// the JS layer read (`performance.now()`, or the JS `ManualClock`'s time).
#[wasm_bindgen]
pub struct WasmStore {
    inner: UnsafeCell<Inner>,
}

struct Inner {
    engine: Engine<u32>,
    clock: ManualClock,
    /// The clock's reading in nanoseconds.
    now: u64,
    error: Option<CacheError>,
    /// The slot ids the last listing call (`reclaim`, `invalidate`,
    /// `slots`) found, read by the JS layer straight from wasm memory
    /// ([`WasmStore::report`]): a returned `Vec` would be copied out by glue
    /// code that calls JS methods a user may have replaced, after the engine
    /// has already forgotten the ids.
    report: Vec<u32>,
}

impl Inner {
    /// Puts `ids` in the report; their count.
    fn report(&mut self, ids: Vec<u32>) -> u32 {
        self.report = ids;
        self.report.len() as u32
    }
}

impl Inner {
    /// Moves the engine's clock to `now_ms`; time never goes back.
    #[inline]
    fn tick(&mut self, now_ms: f64) {
        // `as` saturates (and NaN is 0): a bad reading only fails to move the clock.
        let ns = (now_ms * 1e6) as u64;
        if ns > self.now {
            self.clock.advance(Duration::from_nanos(ns - self.now));
            self.now = ns;
        }
    }

    fn failed(&mut self, err: CacheError) {
        self.error = Some(err);
    }
}

/// What the status-returning calls return when the core refused the call
/// (the error is then [`WasmStore::take_error`]).
const FAILED: u32 = 2;
/// What the id-returning calls return for "no entry", and when the core refused.
const NONE: i32 = -1;
const REFUSED: i32 = -2;

/// The [`RefreshOptions`] the bindings build carry this [`Runtime`]: never
/// used, since the JS layer runs refreshes and timers itself.
struct NoRuntime;

impl Runtime for NoRuntime {
    fn spawn(&self, _task: BoxFuture<()>) {}

    fn sleep(&self, _duration: Duration) -> BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

/// A [`Reason`] as the number the JS layer reads.
fn reason_code(reason: Reason) -> u32 {
    match reason {
        Reason::Evicted => 0,
        Reason::Expired => 1,
        Reason::Deleted => 2,
        Reason::Replaced => 3,
        Reason::Invalidated => 4,
        Reason::Cleared => 5,
    }
}

/// Writes what a call removed (`Removals<u32>`, whose type the memory
/// module keeps to itself) into the removed buffer for the JS layer.
macro_rules! report {
    ($removed:expr) => {
        key_buffer::write_removed(|push| $removed.for_each(|r, reason| push(r.value, reason_code(reason))))
    };
}

#[wasm_bindgen]
impl WasmStore {
    /// An empty store run by `policy`.
    #[wasm_bindgen(constructor)]
    pub fn new(policy: &WasmPolicy) -> WasmStore {
        let clock = ManualClock::new();
        let engine = Engine::new(policy.0.clone(), clock.clone().into());
        let inner = Inner { engine, clock, now: 0, error: None, report: Vec::new() };
        WasmStore { inner: UnsafeCell::new(inner) }
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    fn inner(&self) -> &mut Inner {
        // SAFETY: a wasm instance has one thread, and no method here calls
        // into JS (or into another method) while it holds this reference, so
        // it is the only one alive. A trap abandons it without unwinding,
        // which an UnsafeCell, unlike a RefCell, survives.
        unsafe { &mut *self.inner.get() }
    }

    /// True, unless a call was cut short inside this store. A trap (stack
    /// overflow, memory exhausted, `unreachable`) leaves behind the shared
    /// borrow wasm-bindgen took for that call, so this `&mut self` call is
    /// then refused with a thrown error, without running. The JS layer asks
    /// after a call failed, and replaces a store found half-updated.
    pub fn intact(&mut self) -> bool {
        true
    }

    /// The error of the last call that reported failure, as
    /// `"ClassName:message"`, or `undefined`.
    #[wasm_bindgen(js_name = takeError)]
    pub fn take_error(&self) -> Option<String> {
        self.inner().error.take().map(|err| errors::encode(&err))
    }

    /// A counted `get` of slot `id` (the JS `Map` had the key): whether the
    /// entry is live. If not, it expired and is gone: the JS layer drops the id.
    pub fn touch(&self, id: u32, now: f64) -> bool {
        let inner = self.inner();
        inner.tick(now);
        inner.engine.get_slot(id)
    }

    /// A counted `get` that missed without asking (the JS `Map` lacks the key).
    pub fn miss(&self) {
        self.inner().engine.count_miss();
    }

    /// A `get` the JS layer timed, in milliseconds, for `avgGetLatency`.
    pub fn latency(&self, ms: f64) {
        self.inner().engine.record_get_latency((ms.max(0.0) * 1e6) as u64);
    }

    /// Whether slot `id` is live, counting nothing; if not, the JS layer drops it.
    pub fn alive(&self, id: u32, now: f64) -> bool {
        let inner = self.inner();
        inner.tick(now);
        inner.engine.peek_slot(id)
    }

    /// Stores an entry under the key in the key buffer, `ttl` in seconds
    /// (`undefined` for the policy's default): its slot id, or [`REFUSED`].
    /// What it removed is in the [`key_buffer::removed`] buffer.
    pub fn set(&self, key_len: usize, ttl: Option<f64>, now: f64) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        let result = ttl_option(ttl).and_then(|options| store(inner, key_len, options));
        result.unwrap_or_else(|err| {
            inner.failed(err);
            REFUSED
        })
    }

    /// `set` with metadata, the JSON text of a plain object.
    #[wasm_bindgen(js_name = setWithMetadata)]
    pub fn set_with_metadata(&self, key_len: usize, ttl: Option<f64>, now: f64, metadata: &str) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        let result = ttl_option(ttl)
            .and_then(|options| Ok(options.metadata(metadata::parse(metadata)?)))
            .and_then(|options| store(inner, key_len, options));
        result.unwrap_or_else(|err| {
            inner.failed(err);
            REFUSED
        })
    }

    /// A counted `get` of the key in the key buffer, after checking that a
    /// `set` of it with `ttl` would be accepted (the first step of
    /// `getOrSet`, which refuses bad options before any loader runs and then
    /// counts nothing): the live entry's slot id, [`NONE`] or [`REFUSED`].
    #[wasm_bindgen(js_name = checkedGet)]
    pub fn checked_get(&self, key_len: usize, ttl: Option<f64>, now: f64) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        let engine = &mut inner.engine;
        let found = ttl_option(ttl).and_then(|options| {
            key_buffer::with_key(key_len, |key| {
                engine.check_set(key, &options)?;
                engine.get(key)
            })
        });
        match found {
            Ok(id) => id.map_or(NONE, |id| id as i32),
            Err(err) => {
                inner.failed(err);
                REFUSED
            }
        }
    }

    /// Removes the key in the key buffer: 1 if a live entry was there, 0 if
    /// not, [`FAILED`]. The JS layer drops the key's slot either way.
    pub fn delete(&self, key_len: usize, now: f64) -> u32 {
        let inner = self.inner();
        inner.tick(now);
        match key_buffer::with_key(key_len, |key| inner.engine.delete(key)) {
            Ok(existed) => existed.into(),
            Err(err) => {
                inner.failed(err);
                FAILED
            }
        }
    }

    /// Marks a load of the key in the key buffer as begun (the engine's
    /// placeholder): the token for [`WasmStore::end_load`]. Any write,
    /// delete, invalidate or clear of the key removes the placeholder.
    /// (An `f64`: tokens count up from 1 and stay exact below 2^53.) The JS
    /// layer wrote the key, so it is valid; were it not, the token is 0,
    /// which is never issued: that load would store nothing.
    #[wasm_bindgen(js_name = beginLoad)]
    pub fn begin_load(&self, key_len: usize) -> f64 {
        let engine = &mut self.inner().engine;
        key_buffer::with_key(key_len, |key| Ok(engine.begin_load(key))).map_or(0.0, |token| token as f64)
    }

    /// Ends the load `token` of the key in the key buffer: whether its value
    /// may be stored (nothing wrote, deleted, invalidated or cleared the key
    /// since it began).
    #[wasm_bindgen(js_name = endLoad)]
    pub fn end_load(&self, key_len: usize, token: f64) -> bool {
        let engine = &mut self.inner().engine;
        key_buffer::with_key(key_len, |key| Ok(engine.end_load(key, token as u64))).unwrap_or(false)
    }

    /// The counted read of stale-while-revalidate (`getOrSet` with `grace`)
    /// of the key in the key buffer: [`NONE`], [`REFUSED`], or the entry's
    /// slot id times 4 plus how fresh it is: 0 fresh, 1 stale with a refresh
    /// under way or backing off, 2 stale and this caller is to start the
    /// refresh (the engine has counted it). One number, so a hit is one
    /// crossing; an `f64`, exact for every slot id.
    #[wasm_bindgen(js_name = getFresh)]
    pub fn get_fresh(&self, key_len: usize, now: f64) -> f64 {
        let inner = self.inner();
        inner.tick(now);
        match key_buffer::with_key(key_len, |key| inner.engine.get_fresh_coded(key)) {
            Ok((id, freshness)) => id.map_or(f64::from(NONE), |id| f64::from(id) * 4.0 + f64::from(freshness)),
            Err(err) => {
                inner.failed(err);
                f64::from(REFUSED)
            }
        }
    }

    /// Ends a stale-while-revalidate load or refresh of the key in the key
    /// buffer begun with `token`: on success (`ok`) stores an entry if the
    /// placeholder is still there, fresh for `fresh` seconds and kept `grace`
    /// seconds more, with `metadata` (JSON text, or `undefined`): its slot
    /// id (what it removed is in the removed buffer), or [`NONE`]. On failure
    /// keeps the stale value and backs off from `retry_after` seconds
    /// (doubling up to a minute); [`NONE`]. `background` counts a failure as
    /// a refresh failure. [`REFUSED`] if the core refused.
    #[wasm_bindgen(js_name = finishRefresh)]
    #[allow(clippy::too_many_arguments)]
    pub fn finish_refresh(
        &self,
        key_len: usize,
        token: f64,
        ok: bool,
        now: f64,
        fresh: f64,
        grace: f64,
        retry_after: f64,
        metadata: Option<String>,
        background: bool,
    ) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        let engine = &mut inner.engine;
        let result = (|| {
            let mut options = RefreshOptions::new(NoRuntime, ttl_from_secs(fresh)?, ttl_from_secs(grace)?)
                .retry_after(ttl_from_secs(retry_after)?);
            if let Some(metadata) = &metadata {
                options = options.metadata(metadata::parse(metadata)?);
            }
            engine.try_reserve_set(key_len)?;
            let (id, removed) = key_buffer::with_key(key_len, |key| {
                engine.finish_refresh_slot(key, token as u64, ok, &options, background)
            })?;
            report!(removed);
            Ok(id.map_or(NONE, |id| id as i32))
        })();
        result.unwrap_or_else(|err| {
            inner.failed(err);
            REFUSED
        })
    }

    /// Times a loader run for the stats: `elapsed` in milliseconds (measured
    /// by the JS layer on the store's clock); `ok` if it produced a value.
    #[wasm_bindgen(js_name = recordLoad)]
    pub fn record_load(&self, ok: bool, elapsed: f64) {
        self.inner().engine.counters.record_load(ok, (elapsed.max(0.0) * 1e6) as u64);
    }

    /// The JSON text of the metadata of the live entry under the key in the
    /// key buffer (`{}` when it has none), or `undefined` when there is no
    /// entry or the call failed ([`WasmStore::take_error`] tells).
    #[wasm_bindgen(js_name = getMetadata)]
    pub fn get_metadata(&self, key_len: usize, now: f64) -> Option<String> {
        let inner = self.inner();
        inner.tick(now);
        match key_buffer::with_key(key_len, |key| inner.engine.get_metadata(key)) {
            Ok(found) => found.map(|m| metadata::print(&m)),
            Err(err) => {
                inner.failed(err);
                None
            }
        }
    }

    /// Merges `metadata` (JSON text of a plain object) into the metadata of
    /// the entry under the key in the key buffer: 1 if a live entry was
    /// there, 0 if not, [`FAILED`].
    #[wasm_bindgen(js_name = updateMetadata)]
    pub fn update_metadata(&self, key_len: usize, now: f64, metadata: &str) -> u32 {
        let inner = self.inner();
        inner.tick(now);
        let engine = &mut inner.engine;
        let result =
            metadata::parse(metadata).and_then(|m| key_buffer::with_key(key_len, |key| engine.update_metadata(key, m)));
        match result {
            Ok(found) => found.into(),
            Err(err) => {
                inner.failed(err);
                FAILED
            }
        }
    }

    /// How long the live entry under the key in the key buffer has left, in
    /// milliseconds: `Infinity` if it never expires, -1 if there is no such
    /// entry, -2 if the call failed.
    #[wasm_bindgen(js_name = remainingTtl)]
    pub fn remaining_ttl(&self, key_len: usize, now: f64) -> f64 {
        let inner = self.inner();
        inner.tick(now);
        match key_buffer::with_key(key_len, |key| inner.engine.remaining_ttl(key)) {
            Ok(Some(Some(ns))) => ns as f64 / 1e6,
            Ok(Some(None)) => f64::INFINITY,
            Ok(None) => -1.0,
            Err(err) => {
                inner.failed(err);
                -2.0
            }
        }
    }

    /// The address of the report: the slot ids the last `reclaim`,
    /// `invalidate` or `slots` call found (it returned their count).
    pub fn report(&self) -> *const u32 {
        self.inner().report.as_ptr()
    }

    /// Reclaims every expired entry: how many, their slot ids in the report.
    /// The JS layer calls it before the calls that would reclaim them without
    /// saying which.
    pub fn reclaim(&self, now: f64) -> u32 {
        let inner = self.inner();
        inner.tick(now);
        let ids = inner.engine.reclaim_expired_slots();
        inner.report(ids)
    }

    /// Removes the live entries whose keys match the glob `pattern`: how
    /// many, their slot ids in the report; -1 if the pattern was refused.
    /// Call after [`WasmStore::reclaim`] with the same `now`, so none has expired.
    pub fn invalidate(&self, pattern: &str, now: f64) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        let engine = &mut inner.engine;
        // The ids first: with nothing expired, `invalidate` removes exactly these.
        match engine.live_slots(Some(pattern)).and_then(|ids| engine.invalidate(pattern).map(|_| ids)) {
            Ok(ids) => inner.report(ids) as i32,
            Err(err) => {
                inner.failed(err);
                NONE
            }
        }
    }

    /// The live entries, all or those whose keys match `pattern`, in the
    /// engine's order (`for_each_live`): how many, their slot ids in the
    /// report; -1 if the pattern was refused. Call after
    /// [`WasmStore::reclaim`] with the same `now`.
    pub fn slots(&self, pattern: Option<String>, now: f64) -> i32 {
        let inner = self.inner();
        inner.tick(now);
        match inner.engine.live_slots(pattern.as_deref()) {
            Ok(ids) => inner.report(ids) as i32,
            Err(err) => {
                inner.failed(err);
                NONE
            }
        }
    }

    /// Removes every entry. Call after [`WasmStore::reclaim`] with the same
    /// `now`: the JS layer's slots are then exactly the live entries removed.
    pub fn clear(&self, now: f64) {
        let inner = self.inner();
        inner.tick(now);
        inner.engine.clear_slots();
    }

    /// `[hits, misses, sets, deletes, evictions, expirations, hitRatio,
    /// avgGetLatency in ms, loads, loadFailures, totalLoadTime in ms,
    /// staleHits, refreshes, refreshFailures]`: one array, so reading stats
    /// is one crossing.
    pub fn stats(&self) -> Vec<f64> {
        let s = self.inner().engine.stats();
        vec![
            s.hits as f64,
            s.misses as f64,
            s.sets as f64,
            s.deletes as f64,
            s.evictions as f64,
            s.expirations as f64,
            s.hit_ratio,
            s.avg_get_latency.as_secs_f64() * 1e3,
            s.loads as f64,
            s.load_failures as f64,
            s.total_load_time.as_secs_f64() * 1e3,
            s.stale_hits as f64,
            s.refreshes as f64,
            s.refresh_failures as f64,
        ]
    }

    /// Sets every counter back to zero.
    #[wasm_bindgen(js_name = resetStats)]
    pub fn reset_stats(&self) {
        self.inner().engine.reset_stats();
    }
}

/// Stores the entry under the key in the key buffer; its slot id, with what
/// it removed in the removed buffer.
fn store(inner: &mut Inner, key_len: usize, options: SetOptions) -> crate::Result<i32> {
    inner.engine.try_reserve_set(key_len)?;
    let (id, removed) = key_buffer::with_key(key_len, |key| inner.engine.set_slot(key, options))?;
    report!(removed);
    Ok(id as i32)
}

/// The [`SetOptions`] for a TTL in seconds from JS (already checked positive
/// and finite there), checked again by the core.
fn ttl_option(ttl: Option<f64>) -> crate::Result<SetOptions> {
    Ok(match ttl {
        Some(secs) => SetOptions::new().ttl(ttl_from_secs(secs)?),
        None => SetOptions::new(),
    })
}

/// A TTL in seconds as a `Duration`. The JS layer has refused what is not a
/// positive finite number with a message naming it; the core's
/// `ttl_from_secs_f64` would format the float, which links the float printer
/// (about 15 KB) into the `.wasm`.
fn ttl_from_secs(secs: f64) -> crate::Result<Duration> {
    let ttl = Duration::try_from_secs_f64(secs)
        .map_err(|_| CacheError::Policy("ttl must be a positive, finite number of seconds that fits".into()))?;
    check_ttl(ttl)
}

#[cfg(test)]
mod tests;
