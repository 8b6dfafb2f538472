//! The JavaScript bindings behind the npm package (wasm32 only).
//!
//! Owns the boundary and nothing else: turning JS arguments into core calls
//! and `CacheError`s into JS errors. Every rule about keys, TTLs, capacities
//! and patterns stays in the core, so a rule means the same in Rust and in JS.
//! The ergonomic API (option objects, Promises, `Error` subclasses, key type
//! checks) is the hand-written layer in `js/`, which is the only caller of
//! these exports; their names are not a public contract.
//!
//! Speed shapes the signatures: each call crosses the boundary once, with
//! plain arguments (numbers, values) rather than option objects read through
//! `Reflect`; the hot calls take their key from the [`key_buffer`] and report
//! failure in their return value. Values are held as `JsValue`s, the very
//! objects the caller passed, never serialised; dropping one frees its slot
//! in the externref table, so whatever the engine removes is released to the
//! JS garbage collector.
//! Metadata is converted between JS objects and the core's JSON map here,
//! walking the object through `js_sys` rather than through JSON text, which
//! would link a JSON parser and printer into the `.wasm` (about a tenth of it).

mod errors;
mod key_buffer;
mod metadata;

use std::time::Duration;

use wasm_bindgen::prelude::*;

use crate::clock::{Clock, ManualClock};
use crate::errors::CacheError;
use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy, check_ttl};
use crate::refresh::{BoxFuture, RefreshOptions, Runtime};
use crate::store::SetOptions;
use crate::stores::memory::Engine;

use errors::{IntoJs, ToJs};
use key_buffer::failed_marker;

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

/// A clock that moves only when told to, shared by the stores built with it.
#[wasm_bindgen]
pub struct WasmClock(ManualClock);

#[wasm_bindgen]
impl WasmClock {
    /// A clock standing at zero.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> WasmClock {
        WasmClock(ManualClock::new())
    }

    /// Moves the clock forward by `ms` milliseconds (checked finite and
    /// non-negative by the caller).
    pub fn advance(&self, ms: f64) {
        // Saturates: a span too long for a Duration is forever all the same.
        self.0.advance(Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX));
    }
}

/// The store: one engine, owned outright, since a wasm instance has one thread.
///
/// The methods take `&mut self`: wasm-bindgen's own borrow flag already
/// rejects re-entrant calls, so a `RefCell` here would check twice. Nothing
/// inside a call runs user code: values are only cloned or dropped as
/// handles, and metadata arrives as a plain copy the JS layer made (so no
/// getter or Proxy of the caller's runs here), so re-entry cannot happen.
///
/// The hot calls (`get`, `set`, `delete`, `has`) read their key from the
/// [`key_buffer`] and report failure in their return value (see
/// [`WasmStore::take_error`]) instead of returning a `Result`, which
/// wasm-bindgen hands to JS as a fresh array on every call.
#[wasm_bindgen]
pub struct WasmStore {
    engine: Engine<JsValue>,
    error: Option<CacheError>,
    /// What the last [`WasmStore::get_fresh`] found.
    freshness: u32,
}

/// [`WasmStore::freshness`] before any read.
const FRESH: u32 = 0;

/// The [`Runtime`] of the [`RefreshOptions`] the bindings build: never used,
/// since the JS layer runs refreshes and timers itself.
struct NoRuntime;

impl Runtime for NoRuntime {
    fn spawn(&self, _task: BoxFuture<()>) {}

    fn sleep(&self, _duration: Duration) -> BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

/// What `delete` and `has` return when the call failed (else 0 or 1).
const FAILED: u32 = 2;

#[wasm_bindgen]
impl WasmStore {
    /// An empty store run by `policy`, on the system clock.
    #[wasm_bindgen(constructor)]
    pub fn new(policy: &WasmPolicy) -> WasmStore {
        WasmStore { engine: Engine::new(policy.0.clone(), Clock::system()), error: None, freshness: FRESH }
    }

    /// An empty store run by `policy`, on `clock`.
    #[wasm_bindgen(js_name = withClock)]
    pub fn with_clock(policy: &WasmPolicy, clock: &WasmClock) -> WasmStore {
        WasmStore { engine: Engine::new(policy.0.clone(), clock.0.clone().into()), error: None, freshness: FRESH }
    }

    /// The error of the last call that reported failure, as a JS error.
    #[wasm_bindgen(js_name = takeError)]
    pub fn take_error(&mut self) -> JsValue {
        self.error.take().map_or(JsValue::UNDEFINED, |err| err.to_js())
    }

    fn failed(&mut self, err: CacheError) {
        self.error = Some(err);
    }

    /// The value under the key in the key buffer, `undefined` on a miss, or
    /// [`failed_marker`] when the call failed.
    pub fn get(&mut self, key_len: usize) -> JsValue {
        match key_buffer::with_key(key_len, |key| self.engine.get(key)) {
            Ok(value) => value.unwrap_or(JsValue::UNDEFINED),
            Err(err) => {
                self.failed(err);
                failed_marker()
            }
        }
    }

    /// Stores `value` under the key in the key buffer; `ttl` in seconds
    /// (`undefined` for the policy's default). Whether it succeeded.
    pub fn set(&mut self, key_len: usize, value: JsValue, ttl: Option<f64>) -> bool {
        let result = ttl_option(ttl)
            .and_then(|options| key_buffer::with_key(key_len, |key| self.engine.set(key, value, options)));
        result.map_err(|err| self.failed(err)).is_ok()
    }

    /// `get`, after checking that a `set` of the key in the key buffer with
    /// `ttl` would be accepted: the first step of `getOrSet`, which rejects
    /// bad options before any loader runs (and counts nothing when it does).
    #[wasm_bindgen(js_name = checkedGet)]
    pub fn checked_get(&mut self, key_len: usize, ttl: Option<f64>) -> JsValue {
        let checked = ttl_option(ttl)
            .and_then(|options| key_buffer::with_key(key_len, |key| self.engine.check_set(key, &options)));
        match checked {
            Ok(()) => self.get(key_len),
            Err(err) => {
                self.failed(err);
                failed_marker()
            }
        }
    }

    /// The store's clock, for timing a loader with [`WasmStore::record_load`]:
    /// a ManualClock store times loads on its own clock, as it does in Rust.
    /// (Nanoseconds as an `f64`: exact for 104 days of uptime.)
    #[wasm_bindgen(js_name = loadStarted)]
    pub fn load_started(&self) -> f64 {
        self.engine.clock().now() as f64
    }

    /// A loader run begun at `started` (from `loadStarted`) has ended;
    /// `ok` if its value was stored.
    #[wasm_bindgen(js_name = recordLoad)]
    pub fn record_load(&mut self, ok: bool, started: f64) {
        let elapsed = self.engine.clock().now().saturating_sub(started as u64);
        self.engine.counters.record_load(ok, elapsed);
    }

    /// Marks a load of the key in the key buffer as begun (the engine's
    /// placeholder): the token to hand to [`WasmStore::end_load`]. Any write,
    /// delete, invalidate or clear of the key removes the placeholder.
    /// (An `f64`: tokens count up from 1 and stay exact below 2^53.)
    /// [`FAILED`] as `-1` when the key is refused.
    #[wasm_bindgen(js_name = beginLoad)]
    pub fn begin_load(&mut self, key_len: usize) -> f64 {
        match key_buffer::with_key(key_len, |key| Ok(self.engine.begin_load(key))) {
            Ok(token) => token as f64,
            Err(err) => {
                self.failed(err);
                -1.0
            }
        }
    }

    /// Ends the load `token` of the key in the key buffer: 1 if its value
    /// may be stored (nothing wrote, deleted, invalidated or cleared the key
    /// since it began), 0 if not, [`FAILED`].
    #[wasm_bindgen(js_name = endLoad)]
    pub fn end_load(&mut self, key_len: usize, token: f64) -> u32 {
        match key_buffer::with_key(key_len, |key| Ok(self.engine.end_load(key, token as u64))) {
            Ok(ours) => ours.into(),
            Err(err) => {
                self.failed(err);
                FAILED
            }
        }
    }

    /// The counted read of stale-while-revalidate (`getOrSet` with `grace`):
    /// the value under the key in the key buffer, `undefined` on a miss, or
    /// [`failed_marker`]; how fresh it is is then [`WasmStore::freshness`].
    #[wasm_bindgen(js_name = getFresh)]
    pub fn get_fresh(&mut self, key_len: usize) -> JsValue {
        match key_buffer::with_key(key_len, |key| self.engine.get_fresh_coded(key)) {
            Ok((value, freshness)) => {
                self.freshness = freshness.into();
                value.unwrap_or(JsValue::UNDEFINED)
            }
            Err(err) => {
                self.failed(err);
                failed_marker()
            }
        }
    }

    /// What the last `getFresh` found: 0 fresh (or a miss), 1 stale with a
    /// refresh under way or backing off, 2 stale and this caller is to start
    /// the refresh (the engine has counted it).
    pub fn freshness(&self) -> u32 {
        self.freshness
    }

    /// Ends a stale-while-revalidate load or refresh of the key in the key
    /// buffer begun with `token`: on success (`ok`) stores `value` if the
    /// placeholder is still there, fresh for `fresh` seconds and kept `grace`
    /// seconds more, with `metadata` (a plain copy, or `undefined`); on
    /// failure keeps the stale value and backs off from `retry_after` seconds
    /// (doubling up to a minute). `background` counts a failure as a refresh
    /// failure. Seconds are checked positive and finite by the caller.
    #[wasm_bindgen(js_name = finishRefresh)]
    #[allow(clippy::too_many_arguments)]
    pub fn finish_refresh(
        &mut self,
        key_len: usize,
        token: f64,
        ok: bool,
        value: JsValue,
        fresh: f64,
        grace: f64,
        retry_after: f64,
        metadata: JsValue,
        background: bool,
    ) -> bool {
        let result = (|| {
            let secs = |s: f64| ttl_from_secs(s);
            let mut options =
                RefreshOptions::new(NoRuntime, secs(fresh)?, secs(grace)?).retry_after(secs(retry_after)?);
            if !metadata.is_undefined() {
                options = options.metadata(metadata::from_js(&metadata)?);
            }
            let outcome = if ok { Ok(value) } else { Err(()) };
            key_buffer::with_key(key_len, |key| {
                self.engine.finish_refresh(key, token as u64, outcome, &options, background)
            })
        })();
        result.map_err(|err| self.failed(err)).is_ok()
    }

    /// `set` with metadata, a plain object of JSON values.
    #[wasm_bindgen(js_name = setWithMetadata)]
    pub fn set_with_metadata(&mut self, key_len: usize, value: JsValue, ttl: Option<f64>, metadata: JsValue) -> bool {
        let result = ttl_option(ttl).and_then(|options| {
            let options = options.metadata(metadata::from_js(&metadata)?);
            key_buffer::with_key(key_len, |key| self.engine.set(key, value, options))
        });
        result.map_err(|err| self.failed(err)).is_ok()
    }

    /// Removes the key in the key buffer: 1 if a live entry was there, 0 if
    /// not, [`FAILED`].
    pub fn delete(&mut self, key_len: usize) -> u32 {
        match key_buffer::with_key(key_len, |key| self.engine.delete(key)) {
            Ok(existed) => existed.into(),
            Err(err) => {
                self.failed(err);
                FAILED
            }
        }
    }

    /// Whether a live entry is under the key in the key buffer (no hit or
    /// miss counted): 1, 0, or [`FAILED`].
    pub fn has(&mut self, key_len: usize) -> u32 {
        match key_buffer::with_key(key_len, |key| self.engine.contains(key)) {
            Ok(found) => found.into(),
            Err(err) => {
                self.failed(err);
                FAILED
            }
        }
    }

    /// A fresh object holding the entry's metadata, or `undefined` when there
    /// is no entry.
    #[wasm_bindgen(js_name = getMetadata)]
    pub fn get_metadata(&mut self, key: &str) -> JsResult<JsValue> {
        let metadata = self.engine.get_metadata(key).into_js()?;
        Ok(metadata.map_or(JsValue::UNDEFINED, |m| metadata::to_js(&m)))
    }

    /// Merges the plain object `metadata` into the entry's metadata; whether
    /// a live entry was there.
    #[wasm_bindgen(js_name = updateMetadata)]
    pub fn update_metadata(&mut self, key: &str, metadata: &JsValue) -> JsResult<bool> {
        metadata::from_js(metadata).and_then(|m| self.engine.update_metadata(key, m)).into_js()
    }

    /// Removes the live entries whose keys match the glob `pattern`; how many.
    pub fn invalidate(&mut self, pattern: &str) -> JsResult<usize> {
        self.engine.invalidate(pattern).into_js()
    }

    /// Live keys, all or those matching `pattern`.
    pub fn keys(&mut self, pattern: Option<String>) -> JsResult<Vec<String>> {
        self.engine.keys(pattern.as_deref()).into_js()
    }

    /// How many live entries there are.
    pub fn size(&mut self) -> usize {
        self.engine.len()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.engine.clear();
    }

    /// `[hits, misses, sets, deletes, evictions, expirations, hitRatio,
    /// avgGetLatency in ms, loads, loadFailures, totalLoadTime in ms,
    /// staleHits, refreshes, refreshFailures]`: one
    /// array, so reading stats is one crossing.
    pub fn stats(&self) -> Vec<f64> {
        let s = self.engine.stats();
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
    pub fn reset_stats(&mut self) {
        self.engine.reset_stats();
    }
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
