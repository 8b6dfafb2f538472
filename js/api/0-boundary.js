// js/api/0-boundary.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// The boundary with the wasm bindings (src/wasm): the limits table the core
// exports, the views of the wasm memory, the built-ins taken at load time, the
// stack guards (a trap or an overflow must never split a call), and the
// reasons the engine reports removals with.

const { WasmEngines, WasmPolicy } = wasm;

// The engine in wasm knows entries by slot id only: keys, values and
// metadata live here (keys in a Map to slot ids, values and metadata in
// arrays and maps by id). Its per-slot arrays, access ring and counters
// are read and written here through typed-array views of its memory, so
// a hit never calls into wasm (see MemoryStore#getSync).
// The limits and layout the core owns, read once (src/wasm/mod.rs `limits`).
const [
  MAX_KEY_LEN, MAX_NESTING, LATENCY_SAMPLE_EVERY, , RING_LEN, MAX_REMOVED,
  BATCH_KEYS, BATCH_BYTES, BATCH_BYTES_AT, BATCH_ENDS_AT, BATCH_RESULTS_AT, MAX_SLOTS, SHOWN_CHARS,
  FREQ_COUNT, MAX_FREQ, EVICTED, EXPIRED, REPLACED,
  MAX_TAGS, MAX_TAG_LEN, MAX_INVALIDATE_TAGS, MAX_IDLE_SECONDS,
  // The code point no key may hold (U+FFFF: the Redis stores' internal keys; js/api/1-shared.js).
  RESERVED_KEY_CODE,
  // Then, per figure of the counter table, its unit and engine index (7-otel.js).
  ...COUNTER_LAYOUT
] = wasm.limits();
// The core's tables as text (src/wasm/tables.rs `tables`): the counter table
// (a line per figure: Rust name, tab, help), a NUL, the error classes (a line each).
const RESERVED_KEY_CHAR = String.fromCharCode(RESERVED_KEY_CODE);
const [COUNTER_TEXT, ERROR_TEXT] = wasm.tables().split("\0");
const { WasmPattern } = wasm;
// The latency sample is taken when the get count is a multiple of it (a power of two).
const SAMPLE_MASK = LATENCY_SAMPLE_EVERY - 1;
const memory = wasm.wasmMemory();
const encoder = new TextEncoder();
// What runs between a store call and the bookkeeping it needs on this side
// (forgetting the ids the engine freed, placing a value) uses only these,
// taken when the package loads: a global or prototype method a user
// replaces later cannot throw in between and leave the two sides apart.
const { apply } = Reflect;
const NativePromise = Promise;
const promiseThen = Promise.prototype.then;
const U32 = Uint32Array;
const U8 = Uint8Array;
const F64 = Float64Array;
const NO_DEADLINES = new F64(0);
const NO_COUNTS = new U8(0);
const NO_RING = new U32(0);
const { RuntimeError } = WebAssembly;
const memoryBuffer = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, "buffer").get;
const NO_ARGS = [];
const buffer = () => apply(memoryBuffer, memory, NO_ARGS);
/** A Map whose methods are the built-ins as they were when the package loaded. */
class SlotMap extends Map {}
for (const name of ["get", "set", "delete", "clear", "has", "forEach"]) {
  Object.defineProperty(SlotMap.prototype, name, { value: Map.prototype[name], writable: true, configurable: true });
}
Object.defineProperty(SlotMap.prototype, "size", Object.getOwnPropertyDescriptor(Map.prototype, "size"));
/** A Set, likewise with the built-in methods of load time (getOrSet's waiters). */
class WaiterSet extends Set {}
for (const name of ["add", "delete", "clear", "forEach", "values"]) {
  Object.defineProperty(WaiterSet.prototype, name, { value: Set.prototype[name], writable: true, configurable: true });
}
Object.defineProperty(WaiterSet.prototype, "size", Object.getOwnPropertyDescriptor(Set.prototype, "size"));

// The shadow stack pointer of the wasm code (exported by build.rs): a trap
// skips the epilogues that move it back, so `unwind` puts it back where it
// rests between calls (no wasm frame is ever active while this file runs).
const stackPointer = wasm.wasmExports().__stack_pointer;
const restingStack = stackPointer?.value;
// Reading the global costs as much as a whole set (~85 ns, a call into the
// engine's C++), so it is read only after a call into wasm threw: every
// catch around such a call sets `stackMoved` first, as a plain write, never
// through a call: the catch may have no stack left for one (a call cut short
// deep in the engine unwinds to a frame that had just enough for the call
// into wasm, and a function's first call also compiles it), and a call that
// failed there would leave the pointer below its resting place for good
// (tests/js/stack-leak.test.mjs: ~1.5 KB a store, until the instance traps).
let stackMoved = false;
// It runs before a store call, where a replaced getter could only fail
// the call, not split it: the plain property is enough. Engines whose
// release is still to do (`orphans`) are released first: `stackMoved` is
// also set while there are any.
function unwind() {
  if (!stackMoved) return;
  if (orphans.length !== 0) freeOrphans();
  stackMoved = orphans.length !== 0;
  if (stackPointer !== undefined && stackPointer.value !== restingStack) stackPointer.value = restingStack;
}

// A store's engine is a number in the wasm's table (WasmEngines: no
// wasm-bindgen object, whose borrow flag a call cut short would leave taken,
// refusing its free for good). NO_ENGINE is none: released, or not made yet.
const NO_ENGINE = 0xffffffff;
// Engines to release: a store disposed, or one whose broken engine was
// replaced (#reset), lists its engine here with a plain write, then
// releases the list; a release cut short (a stack overflow) leaves its
// number listed, and the next `unwind` releases it (a release frees the
// engine whatever state a call left it in; see src/wasm/mod.rs).
const orphans = [];

/** Releases the listed engines; cut short, it leaves the rest listed and `stackMoved` set. */
function freeOrphans() {
  try {
    for (let n = orphans.length; n !== 0; n = orphans.length) {
      WasmEngines.release(orphans[n - 1]);
      orphans.length = n - 1;
    }
  } catch {
    stackMoved = true;
  }
}

/** Lists engine `n` for release and releases the list (see `orphans`); never throws. */
function releaseEngine(n) {
  if (n === NO_ENGINE) return;
  orphans[orphans.length] = n;
  stackMoved = true;
  try {
    freeOrphans();
  } catch {
    // No stack even to begin: the engine stays listed, for the next `unwind`.
  }
}

// The engine of a store that was garbage collected without dispose():
// each store registers a cell { n } with its engine's number (a reset
// changes it; dispose sets NO_ENGINE), and its engine is released here.
const engineCells =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry((cell) => {
        const n = cell.n;
        cell.n = NO_ENGINE;
        releaseEngine(n);
      })
    : undefined;

/**
 * Throws RangeError unless a few more frames fit on the stack: called
 * before a store call whose bookkeeping here (forgetting what the engine
 * removed, placing the value) must not then fail for want of stack.
 */
function headroom(n) {
  return n === 0 ? 0 : headroom(n - 1) + 1;
}
const HEADROOM = 4;
// The calls that walk or remove many entries go deeper into the engine.
const DEEP = 24;

// reportLater: js/api/1-shared.js (the redis entry's store reports there too).

// Why an entry left, by reason code: the engine's codes for what a set
// removed (from the limits table), then the JS side's own removals.
const REASONS = [];
REASONS[EVICTED] = "evicted";
REASONS[EXPIRED] = "expired";
REASONS[REPLACED] = "replaced";
const DELETED = REASONS.length;
REASONS[DELETED] = "deleted";
const INVALIDATED = REASONS.length;
REASONS[INVALIDATED] = "invalidated";
