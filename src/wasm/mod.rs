//! The JavaScript bindings behind the npm package (wasm32 only).
//!
//! Owns the boundary and nothing else. The JS layer in `js/` (the only caller
//! of these exports; their names are not a public contract) keeps the keys,
//! values and metadata; what it asks of wasm is what the Rust core owns: the
//! policies' checks ([`WasmPolicy`]), the eviction and expiry engine, addressed
//! by slot id only ([`WasmEngines`], over `SlotEngine`), the glob matcher over
//! batches of keys ([`WasmPattern`]), and the limits table ([`limits`]).
//!
//! A hit does not call in here at all: the JS layer reads and writes the
//! engine's per-slot arrays, its access ring and its counters through typed
//! arrays over the wasm memory (the pointers below). Every argument of a
//! store call is a number, and nothing here calls a JS global, so no code a
//! user can reach runs inside a call: a call can only end early by a trap
//! (stack overflow, memory exhausted). A store's engine is a number into a
//! table here, not a wasm-bindgen object: such an object's borrow flag, left
//! taken by a call that trapped, would refuse its free for good (the engine's
//! memory leaked). The engine sits in an [`UnsafeCell`] for the same reason.
//! A call first makes sure the stack holds it, then marks the engine busy
//! while it changes it: a trap that leaves the mark is what
//! [`WasmEngines::intact`] reports, and the JS layer then releases that
//! engine and makes the store a new one.

mod errors;
mod host;
mod tables;

use std::cell::{Cell, RefCell, UnsafeCell};
use std::time::Duration;

use wasm_bindgen::prelude::*;

use crate::errors::CacheError;
use crate::key::Key;
use crate::metrics::LATENCY_SAMPLE_EVERY;
use crate::pattern::{MAX_PATTERN_LEN, Pattern};
use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy, check_ttl};
use crate::refresh;
use crate::store::{MAX_KEY_LEN, MAX_NESTING};
use crate::stores::memory::slots::{self, SlotEngine};

use errors::{IntoJs, ToJs};

type JsResult<T> = Result<T, JsValue>;

/// Keys per batch handed to [`WasmPattern::match_batch`], and the bytes of
/// UTF-8 they may take together (any one key fits: it is at most
/// [`MAX_KEY_LEN`] bytes).
const BATCH_KEYS: usize = 1024;
const BATCH_BYTES: usize = 64 * 1024;

/// The limits and layout the JS layer reads once at load, so that no number
/// the core owns is restated in `js/`: `[MAX_KEY_LEN, MAX_NESTING,
/// LATENCY_SAMPLE_EVERY, MAX_PATTERN_LEN, RING_LEN, MAX_REMOVED, BATCH_KEYS,
/// BATCH_BYTES, batch bytes address, batch ends address, batch results
/// address, the most slots a store holds, SHOWN_CHARS (how much of a key an
/// error message shows), the mask of a slot's access count in its `freq`
/// byte, the count's ceiling, and the reason codes of the removed buffer:
/// evicted, expired, replaced; then the tag limits: MAX_TAGS, MAX_TAG_LEN,
/// MAX_INVALIDATE_TAGS; then the longest time-to-idle in seconds
/// ([`MAX_IDLE`](crate::policies::MAX_IDLE)), the code point no key may hold
/// ([`RESERVED_KEY_CHAR`](crate::RESERVED_KEY_CHAR))]`, then the counter table's layout
/// ([`tables::counter_layout`]: two numbers per figure).
#[wasm_bindgen]
pub fn limits() -> Vec<f64> {
    let (bytes, ends, results) =
        BATCH.with_borrow_mut(|b| (b.bytes.as_mut_ptr(), b.ends.as_mut_ptr(), b.results.as_mut_ptr()));
    let mut limits = vec![
        MAX_KEY_LEN as f64,
        MAX_NESTING as f64,
        LATENCY_SAMPLE_EVERY as f64,
        MAX_PATTERN_LEN as f64,
        slots::RING_LEN as f64,
        slots::MAX_REMOVED as f64,
        BATCH_KEYS as f64,
        BATCH_BYTES as f64,
        bytes as usize as f64,
        ends as usize as f64,
        results as usize as f64,
        slots::MAX_SLOTS as f64,
        crate::errors::SHOWN_CHARS as f64,
        f64::from(slots::COUNT),
        f64::from(slots::MAX_FREQ),
        f64::from(slots::EVICTED),
        f64::from(slots::EXPIRED),
        f64::from(slots::REPLACED),
        crate::tags::MAX_TAGS as f64,
        crate::tags::MAX_TAG_LEN as f64,
        crate::tags::MAX_INVALIDATE_TAGS as f64,
        crate::policies::MAX_IDLE.as_secs_f64(),
        f64::from(u32::from(crate::key::RESERVED_KEY_CHAR)),
    ];
    tables::counter_layout(&mut limits);
    limits
}

/// The wasm memory, for the JS layer's views.
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// The instance's exports, for the JS layer to find `__stack_pointer` (see build.rs).
#[wasm_bindgen(js_name = wasmExports)]
pub fn wasm_exports() -> JsValue {
    wasm_bindgen::exports()
}

/// The core's error for `key` (`undefined` if it is a valid key): the JS
/// layer checks keys itself and asks here only for the message of a bad one.
#[wasm_bindgen(js_name = keyError)]
pub fn key_error(key: &str) -> JsValue {
    Key::new(key).err().map_or(JsValue::UNDEFINED, |err| err.to_js())
}

/// Where the JS layer writes a batch of keys for [`WasmPattern::match_batch`].
struct Batch {
    bytes: Box<[u8]>,
    /// The end offset of each key in `bytes`.
    ends: Box<[u32]>,
    /// 1 for each key that matched.
    results: Box<[u8]>,
}

thread_local! {
    // Allocated once and never reallocated: their addresses stay what JS was told.
    static BATCH: RefCell<Batch> = RefCell::new(Batch {
        bytes: vec![0; BATCH_BYTES].into_boxed_slice(),
        ends: vec![0; BATCH_KEYS].into_boxed_slice(),
        results: vec![0; BATCH_KEYS].into_boxed_slice(),
    });
}

/// A compiled glob pattern: the same matcher as Rust's and Redis's stores.
#[wasm_bindgen]
pub struct WasmPattern {
    pattern: Pattern,
    kind: u32,
}

#[wasm_bindgen]
impl WasmPattern {
    /// Compiles `pattern`; throws the core's error for a bad one.
    #[wasm_bindgen(constructor)]
    pub fn new(pattern: &str) -> JsResult<WasmPattern> {
        let compiled = Pattern::new(pattern).into_js()?;
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
        let literal = pattern.trim_end_matches('*');
        let kind = if literal.bytes().any(|b| special(&b)) {
            0
        } else if literal.is_empty() {
            3
        } else if literal.len() == pattern.len() {
            2
        } else {
            1
        };
        Ok(WasmPattern { pattern: compiled, kind })
    }

    /// 0: match with [`match_batch`](Self::match_batch); 1: a literal prefix
    /// then `*`, so a match is `key.startsWith(prefix)`; 2: a literal, so a
    /// match is `key === pattern`; 3: every key.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// Matches the `n` keys of the batch, writing the results.
    #[wasm_bindgen(js_name = matchBatch)]
    pub fn match_batch(&self, n: usize) {
        BATCH.with_borrow_mut(|batch| {
            let mut start = 0;
            for i in 0..n.min(BATCH_KEYS) {
                let end = (batch.ends[i] as usize).clamp(start, BATCH_BYTES);
                // The JS layer writes well-formed UTF-8; a key that is not matches nothing.
                let hit = std::str::from_utf8(&batch.bytes[start..end]).is_ok_and(|key| self.pattern.matches(key));
                batch.results[i] = u8::from(hit);
                start = end;
            }
        });
    }
}

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

/// The type of one of `probe_wide`'s arguments (see `probe_frame!`).
macro_rules! probe_word {
    ($w:tt) => {
        u32
    };
}

/// `probe` and its callee, with one argument for each token given.
macro_rules! probe_frame {
    ($($w:tt)*) => {
        /// Fails with a stack overflow (a `RangeError` in JS) before a call
        /// into the engine has changed anything, unless the native stack
        /// holds what the chain of calls a set makes needs: one call of
        /// `probe_wide` with this many arguments, which V8 passes on the
        /// native stack (all but the first few, 8 bytes each, pushed by the
        /// caller: one instruction each), through a pointer neither LLVM nor
        /// wasm-opt sees through (so no argument is dropped as unused); the
        /// callee's own check of the stack, at its entry, is where it fails.
        /// It replaced a recursion of 8 frames with a `black_box` each (~40
        /// instructions a frame, 40% of a wasm set's samples): an empty
        /// guarded call 430 -> 237 instructions (callgrind), and as much
        /// stack or more on Node 18, 20 and 22, Liftoff and TurboFan alike
        /// (`node bench/js/stack-reach.cjs`: 64 words reach 8-17 depths of
        /// its recursion where the 8 frames reached 7-13; 32 words fell
        /// short). A lean recursion (a call and a subtraction a frame, 12-14
        /// frames) had failed Node 22's stress test (tests/js/stress.test.mjs
        /// seed 1); the battery passes with this one (stress seeds 1-6 on
        /// Node 18, 20, 22, also --liftoff-only and --no-liftoff).
        #[inline(never)]
        fn probe() -> u32 {
            let wide: fn(u32, $(probe_word!($w)),*) -> u32 = std::hint::black_box(probe_wide);
            let x = std::hint::black_box(0u32);
            wide(x, $({ let _: probe_word!($w); x }),*)
        }

        /// The callee of `probe`: its arguments reserved the stack. It
        /// has a call (never made: `x` is 0), so that it is no leaf: V8
        /// checks the stack at the entry of a function that calls, and
        /// leaves the check out of a leaf (seen: a leaf callee reserved
        /// nothing once optimized).
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn probe_wide(x: u32, $(_: probe_word!($w)),*) -> u32 {
            if x != 0 {
                return probe();
            }
            0
        }
    };
}

probe_frame!(
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
);

// After `probe_frame!`, which it uses (a macro is in scope below its definition).
mod alloc;

/// One store's engine, addressed by slot id (see `SlotEngine`), in the
/// table of engines ([`WasmEngines`]).
struct Engine {
    engine: UnsafeCell<SlotEngine>,
    /// Set while a call may be changing the engine (see [`Engine::guarded`]).
    busy: Cell<bool>,
}

impl Engine {
    /// Runs `f` on the engine, marked busy: a trap inside `f` (a stack
    /// overflow, memory exhausted where nothing reserved it) leaves the mark,
    /// and [`WasmEngines::intact`] then says so. The probe first, so that a
    /// call the stack cannot hold fails before it changes anything.
    #[inline]
    fn guarded<T>(&self, f: impl FnOnce(&mut SlotEngine) -> T) -> T {
        probe();
        self.busy.set(true);
        let out = f(self.engine());
        self.busy.set(false);
        out
    }

    /// [`guarded`](Self::guarded) with a first step, `prepare`, run after
    /// the probe but before the engine is marked busy: it may only reserve
    /// memory (an allocation, the deepest thing a call does, cut short by a
    /// stack overflow there leaves the engine as it was, and intact).
    #[inline]
    fn guarded_after<P, T>(
        &self,
        prepare: impl FnOnce(&mut SlotEngine) -> P,
        f: impl FnOnce(&mut SlotEngine, P) -> T,
    ) -> T {
        probe();
        let prepared = prepare(self.engine());
        self.busy.set(true);
        let out = f(self.engine(), prepared);
        self.busy.set(false);
        out
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    fn engine(&self) -> &mut SlotEngine {
        // SAFETY: a wasm instance has one thread, and no function here calls
        // into JS (or into another export) while it holds this reference, so
        // it is the only one alive. A trap abandons it without unwinding,
        // which an UnsafeCell, unlike a RefCell, survives.
        unsafe { &mut *self.engine.get() }
    }
}

/// The engines of the instance's stores, by number: a store's number
/// indexes `engines`; a released number waits in `free` for the next store.
struct Table {
    engines: Vec<Option<Box<Engine>>>,
    /// Released numbers. Its capacity is kept at least `engines.len()`, so
    /// that a release never allocates.
    free: Vec<u32>,
}

/// [`Table`] as a static.
struct Engines(UnsafeCell<Table>);

// SAFETY: the `js` bindings are built for wasm32-unknown-unknown without
// the atomics feature: the instance has one thread.
unsafe impl Sync for Engines {}

static ENGINES: Engines = Engines(UnsafeCell::new(Table { engines: Vec::new(), free: Vec::new() }));

/// The table. No export holds it across a call into another export or
/// into JS (none calls either), so a reference is the only one alive.
#[inline]
#[allow(clippy::mut_from_ref)]
fn table() -> &'static mut Table {
    // SAFETY: see above; one thread (see `Engines`).
    unsafe { &mut *ENGINES.0.get() }
}

/// Engine number `n`: a number the JS layer was given by
/// [`WasmEngines::create`] and has not released; any other traps.
#[inline]
fn engine(n: u32) -> &'static Engine {
    match table().engines.get(n as usize) {
        Some(Some(engine)) => engine,
        _ => std::arch::wasm32::unreachable(),
    }
}

/// The JS stores' engines, addressed by number (static functions only: no
/// wasm-bindgen object). A wasm-bindgen object keeps a borrow flag that a
/// call cut short inside wasm (a trap, a stack overflow) never gives back,
/// and that object could never be freed again (each such store leaked its
/// whole engine); a number holds no borrow: [`release`](Self::release)
/// frees the engine whatever a call left behind. Calls that can evict,
/// reorder, remove or list first replay the first `ring` hits of the access
/// ring (the JS layer's count since the last call).
#[wasm_bindgen]
pub struct WasmEngines {}

#[wasm_bindgen]
impl WasmEngines {
    /// A new empty engine run by `policy`: its number. Room for
    /// `preallocate` slots is reserved where the memory has it.
    pub fn create(policy: &WasmPolicy, preallocate: usize) -> u32 {
        // The deep probe: an allocation cut short would leak what it made so far.
        alloc::deep_probe();
        let mut engine = SlotEngine::new(&policy.0);
        engine.preallocate(preallocate);
        engine.publish();
        let engine = Box::new(Engine { engine: UnsafeCell::new(engine), busy: Cell::new(false) });
        let table = table();
        if let Some(n) = table.free.pop() {
            table.engines[n as usize] = Some(engine);
            return n;
        }
        // Room for every number in `free` first (see `Table::free`).
        let n = table.engines.len();
        table.free.reserve(n + 1);
        table.engines.push(Some(engine));
        n as u32
    }

    /// Frees engine `n` and everything it holds, whatever state a call cut
    /// short left it in (its arrays are each whole: an allocation is never
    /// cut half-way, `alloc.rs`). Nothing for a number not in use. Out of
    /// the table first: a release cut short (by a stack overflow while it
    /// frees) leaks the rest of that engine, never frees it twice, and
    /// its number is then never given out again.
    pub fn release(n: u32) {
        alloc::deep_probe();
        let table = table();
        let Some(Some(engine)) = table.engines.get_mut(n as usize).map(Option::take) else {
            return;
        };
        drop(engine);
        // Never allocates: see `Table::free`.
        table.free.push(n);
    }

    /// True, unless a call was cut short while it was changing engine `n`
    /// (see [`Engine::guarded`]) or `n` is no engine. The JS layer asks after
    /// a call failed, and replaces an engine found half-updated.
    ///
    /// An intact engine first publishes its arrays' places again if a call
    /// cut short before the busy mark moved one without publishing it
    /// (see `SlotEngine::publish_if_moved`): the JS layer takes new views
    /// after it asked (the version moved).
    pub fn intact(n: u32) -> bool {
        let Some(Some(engine)) = table().engines.get(n as usize) else {
            return false;
        };
        if engine.busy.get() {
            return false;
        }
        engine.engine().publish_if_moved();
        true
    }

    /// Whether a hit reorders (exact LRU): the JS layer then records hits in the ring.
    #[wasm_bindgen(js_name = hitsReorder)]
    pub fn hits_reorder(n: u32) -> bool {
        engine(n).engine().hits_reorder()
    }

    /// Address of `[version, slots, freq address, deadline address or 0]`:
    /// the version moves whenever the per-slot arrays moved or grew (take
    /// new views then). Its own address never changes.
    pub fn header(n: u32) -> *const u32 {
        engine(n).engine().header.as_ptr()
    }

    /// Address of the engine's counters: `[sets, deletes, evictions, expirations]` (f64).
    pub fn counters(n: u32) -> *const f64 {
        engine(n).engine().counters.as_ptr()
    }

    /// Address of the access ring (`RING_LEN` u32 slot ids).
    pub fn ring(n: u32) -> *const u32 {
        engine(n).engine().ring.as_ptr()
    }

    /// Address of the removed buffer: `[count, id, reason, ...]` of the last set.
    pub fn removed(n: u32) -> *const u32 {
        engine(n).engine().removed.as_ptr()
    }

    /// Address of the report: the ids the last listing call found, or room
    /// for the `len` ids the JS layer then writes for [`WasmEngines::remove_reported`].
    /// Null when the memory has no room for `len` ids.
    ///
    /// With `len` 0 it only reads the address, without the probe: the JS layer
    /// asks right after a call that changed the engine (a reclaim), with no
    /// more stack than that call's probe left it; a probe here could fail
    /// where nothing else would, and cut the layer off from what the engine
    /// just removed (tests/js/never-broken.test.mjs, "a walk that reclaims").
    pub fn report(n: u32, len: usize) -> *mut u32 {
        let engine = engine(n);
        if len == 0 {
            return engine.engine().report.as_mut_ptr();
        }
        // The room first, outside the busy mark (see `guarded_after`).
        engine.guarded_after(
            |engine| engine.prepare_report(len),
            |engine, room| {
                let report = &mut engine.report;
                report.clear();
                if !room {
                    return std::ptr::null_mut();
                }
                report.resize(len, u32::MAX);
                report.as_mut_ptr()
            },
        )
    }

    /// Stores an entry in slot `existing` (the key's live slot) or, when it is
    /// -1, in a new slot for a key of hash `hash`, with a TTL of `ttl` ms
    /// (`NaN`: the policy's default). The slot id; -1 when the store holds
    /// the most slots it can. What it removed is in the removed buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn set(n: u32, ring: usize, existing: i32, hash: u32, ttl: f64, now: f64, gets: f64, misses: f64) -> i32 {
        // The room first, outside the busy mark (see `guarded_after`).
        engine(n).guarded_after(
            |engine| engine.prepare_set(i64::from(existing), ttl),
            |engine, room| {
                engine.replay(ring);
                if room { engine.set_reserved(i64::from(existing), hash, ttl, now, gets, misses) as i32 } else { -2 }
            },
        )
    }

    /// Frees one entry for the JS store's `maxSize`: an expired one, else
    /// the policy's victim, never slot `protect` (the entry just set;
    /// `u32::MAX` for none). `id * 4 + reason`, or -1 when no other is left.
    pub fn evict(n: u32, ring: usize, now: f64, protect: u32) -> f64 {
        engine(n).guarded_after(SlotEngine::prepare_evict, |engine, ()| {
            engine.replay(ring);
            engine.evict(now, protect)
        })
    }

    /// Replays the first `ring` hits of the access ring (it was full).
    pub fn replay(n: u32, ring: usize) {
        engine(n).guarded(|engine| engine.replay(ring));
    }

    /// Frees slot `id`, whose deadline the JS layer found passed.
    pub fn expire(n: u32, ring: usize, id: u32) {
        engine(n).guarded(|engine| {
            engine.replay(ring);
            engine.expire(id);
        });
    }

    /// Frees slot `id` (`delete`): whether it held a live entry at `now`.
    pub fn remove(n: u32, ring: usize, id: u32, now: f64) -> bool {
        engine(n).guarded(|engine| {
            engine.replay(ring);
            engine.remove(id, now)
        })
    }

    /// Frees the slots the JS layer wrote into the report (`invalidate`): how many were live.
    #[wasm_bindgen(js_name = removeReported)]
    pub fn remove_reported(n: u32, ring: usize) -> usize {
        engine(n).guarded(|engine| {
            engine.replay(ring);
            engine.remove_reported()
        })
    }

    /// Reclaims every entry expired by `now`: how many, their ids in the
    /// report; -1 when the memory has no room for the report.
    pub fn reclaim(n: u32, ring: usize, now: f64) -> i32 {
        // Room to report every live entry first (see `guarded_after`): the
        // reclaim then allocates nothing between the slots it frees (it asks
        // for room for one more before each pop, the last one included).
        engine(n).guarded_after(
            |engine| engine.prepare_report(engine.live() + 1),
            |engine, _| {
                engine.replay(ring);
                engine.reclaim(now).map_or(-1, |n| n as i32)
            },
        )
    }

    /// The live slots in the policy's order: how many, their ids in the
    /// report (-1 when the memory has no room for it). Call after [`WasmEngines::reclaim`].
    pub fn list(n: u32, ring: usize) -> i32 {
        engine(n).guarded_after(
            |engine| engine.prepare_report(engine.live()),
            |engine, _| {
                engine.replay(ring);
                engine.list_live().map_or(-1, |n| n as i32)
            },
        )
    }

    /// Whether live slot `id` is on S3-FIFO's small (probationary) queue.
    pub fn probation(n: u32, id: u32) -> bool {
        engine(n).engine().on_probation(id)
    }

    /// Moves live slot `id` to the head of S3-FIFO's small queue
    /// (`probation`) or main queue (a loaded dump's entry); nothing under
    /// LRU and TTL.
    pub fn place(n: u32, id: u32, probation: bool) {
        engine(n).guarded(|engine| engine.place(id, probation));
    }

    /// How many live entries the engine holds (after [`WasmEngines::reclaim`]).
    pub fn live(n: u32) -> usize {
        engine(n).engine().live()
    }

    /// Removes every entry. Call after [`WasmEngines::reclaim`].
    pub fn clear(n: u32) {
        engine(n).guarded(SlotEngine::clear);
    }

    /// Sets the engine's counters back to zero.
    #[wasm_bindgen(js_name = resetCounters)]
    pub fn reset_counters(n: u32) {
        engine(n).guarded(SlotEngine::reset_counters);
    }
}

/// The core's error for getOrSet's stale-while-revalidate options (which
/// of `ttl`, `grace` and `retryAfter` were given), `undefined` if they fit
/// [`RefreshOptions`](crate::refresh::RefreshOptions): `grace` needs a fresh
/// period (`ttl`), and `retryAfter` needs `grace`. The JS layer has checked
/// each value.
#[wasm_bindgen(js_name = refreshError)]
pub fn refresh_error(ttl: bool, grace: bool, retry_after: bool) -> JsValue {
    match refresh::js_option_rules(ttl, grace, retry_after) {
        Some(message) => CacheError::Policy(message.into()).to_js(),
        None => JsValue::UNDEFINED,
    }
}

/// The wait in milliseconds before the next refresh after `failures` failed
/// refreshes in a row, with `retry_after` seconds (`NaN`: the core's
/// default): the back-off of [`RefreshOptions`](crate::refresh::RefreshOptions).
#[wasm_bindgen(js_name = refreshBackoff)]
pub fn refresh_backoff(retry_after: f64, failures: u32) -> f64 {
    let retry_after = if retry_after.is_nan() {
        refresh::DEFAULT_RETRY_AFTER
    } else {
        duration(retry_after).unwrap_or(Duration::MAX)
    };
    refresh::backoff(retry_after, failures).as_secs_f64() * 1000.0
}

/// A TTL in seconds as a `Duration`. The JS layer has refused what is not a
/// positive finite number with a message naming it; the core's
/// `ttl_from_secs_f64` would format the float, which links the float printer
/// (about 15 KB) into the `.wasm`.
fn ttl_from_secs(secs: f64) -> crate::errors::Result<Duration> {
    let ttl = duration(secs)
        .ok_or_else(|| CacheError::Policy("ttl must be a positive, finite number of seconds that fits".into()))?;
    check_ttl(ttl)
}

/// `secs` seconds as a `Duration`, if it is one. Not inlined: the
/// conversion is large, and both of its callers would carry a copy.
#[inline(never)]
fn duration(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests;
