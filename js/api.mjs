// The JavaScript face of pepperpy-caching: option objects, Promises, Error
// classes and key type checks, over the wasm bindings in src/wasm.
//
// This file is the one implementation for every runtime. It is a factory
// over the wasm-bindgen glue: inline.cjs (Node, Bun, `/inline`) binds the
// CommonJS glue, and init.mjs (behind web.mjs, workerd.mjs, deno.mjs and
// `/init`) the ES module glue, once each runtime's way has instantiated it.
// scripts/build-js.sh also emits it as CommonJS (api.cjs) by rewriting the
// single `export` below; keep it the only import/export statement in the file.
//
// Rules about keys, TTLs, capacities and patterns live in the Rust core: this
// layer only checks what is cheap and JS-specific (types), so that a number
// is never coerced into a key and a string never into a TTL.

/** @param {typeof import("./wasm/pepperpy_caching.mjs")} wasm */
export function bind(wasm) {
  const { WasmStore, WasmPolicy } = wasm;

  // The engine in wasm knows entries by slot id only: keys, values and
  // metadata live here (keys in a Map to slot ids, values and metadata in
  // arrays and maps by id). Its per-slot arrays, access ring and counters
  // are read and written here through typed-array views of its memory, so
  // a hit never calls into wasm (see MemoryStore#getSync).
  // The limits and layout the core owns, read once (src/wasm/mod.rs `limits`).
  const [
    MAX_KEY_LEN, MAX_NESTING, LATENCY_SAMPLE_EVERY, , RING_LEN, MAX_REMOVED,
    BATCH_KEYS, BATCH_BYTES, BATCH_BYTES_AT, BATCH_ENDS_AT, BATCH_RESULTS_AT,
  ] = wasm.limits();
  const { WasmPattern } = wasm;
  const memory = wasm.wasmMemory();
  const encoder = new TextEncoder();
  // Whether `text` has no lone surrogate. String.prototype.isWellFormed is
  // ES2024 (Node 20); Node 18 and older browsers get the regular expression.
  const isWellFormed =
    typeof String.prototype.isWellFormed === "function"
      ? (text) => text.isWellFormed()
      : (text) => !/\p{Cs}/u.test(text);
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
  const { RuntimeError } = WebAssembly;
  const enqueue = queueMicrotask;
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
  // It runs before a store call, where a replaced getter could only fail
  // the call, not split it: the plain property is enough.
  function unwind() {
    if (stackPointer !== undefined && stackPointer.value !== restingStack) stackPointer.value = restingStack;
  }

  /**
   * Throws RangeError unless a few more frames fit on the stack: called
   * before a store call whose bookkeeping here (forgetting what the engine
   * removed, placing the value) must not then fail for want of stack.
   */
  function headroom(n) {
    return n === 0 ? 0 : headroom(n - 1) + 1;
  }
  const HEADROOM = 12;
  // The calls that walk or remove many entries go deeper into the engine.
  const DEEP = 24;

  /**
   * Surfaces an error that has no caller to go to (an `onRemove` listener's,
   * thrown while a load stored its value or while a broken engine was
   * replaced) as the host surfaces an uncaught error: `reportError` where
   * there is one (browsers, Deno, Workers, Bun), else thrown from a microtask
   * (Node: `uncaughtException`), as an EventTarget does with its listeners'.
   */
  function reportLater(error) {
    enqueue(() => {
      if (typeof globalThis.reportError === "function") globalThis.reportError(error);
      else throw error;
    });
  }

  // Why an entry left, by reason code (the engine's: src/stores/memory/slots.rs).
  const REASONS = ["evicted", "expired", "deleted", "replaced", "invalidated", "cleared"];
  const EXPIRED = 1;
  const DELETED = 2;
  const REPLACED = 3;
  const INVALIDATED = 4;

  // Up to this many UTF-16 units, a well-formed key has at most MAX_KEY_LEN bytes of UTF-8.
  const SAFE_KEY_UNITS = Math.floor(MAX_KEY_LEN / 3);

  /** Checks `key` as the core would (a non-empty string of at most MAX_KEY_LEN bytes of UTF-8). */
  function checkKey(key) {
    if (typeof key !== "string") throw keyError(key);
    const n = key.length;
    if (n !== 0 && n <= SAFE_KEY_UNITS && isWellFormed(key)) return;
    if (!isWellFormed(key)) throw notUnicode(CacheKeyError, "key", key);
    // The core's own message (and verdict) for an empty or long key.
    const error = wasm.keyError(key);
    if (error !== undefined) throw translate(error);
  }

  // Random per load: S3-FIFO's ghost is filed by these hashes.
  const HASH_SEED = (Math.random() * 0x100000000) >>> 0;
  /** FNV-1a of the key's UTF-16 units, seeded: what the engine's ghost remembers a key by. */
  function hashKey(key) {
    let h = 0x811c9dc5 ^ HASH_SEED;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return h >>> 0;
  }

  /**
   * Which of `keys` match `pattern` (checked a well-formed string): the
   * core's glob matcher (src/pattern.rs), fed in batches; a literal prefix
   * costs a startsWith per key. Returns the indexes of the matches.
   */
  function matching(pattern, keys) {
    let matcher;
    try {
      matcher = new WasmPattern(pattern);
    } catch (error) {
      throw translate(error);
    }
    try {
      const kind = matcher.kind();
      const out = [];
      if (kind !== 0) {
        const literal = kind === 1 ? pattern.replace(/\*+$/, "") : pattern;
        for (let i = 0; i < keys.length; i++) {
          if (kind === 3 || (kind === 1 ? keys[i].startsWith(literal) : keys[i] === literal)) out[out.length] = i;
        }
        return out;
      }
      let bytes = new U8(buffer(), BATCH_BYTES_AT, BATCH_BYTES);
      let ends = new U32(buffer(), BATCH_ENDS_AT, BATCH_KEYS);
      let first = 0;
      let n = 0;
      let at = 0;
      const flush = () => {
        matcher.matchBatch(n);
        const results = new U8(buffer(), BATCH_RESULTS_AT, BATCH_KEYS);
        for (let j = 0; j < n; j++) if (results[j] === 1) out[out.length] = first + j;
        first += n;
        n = 0;
        at = 0;
        bytes = new U8(buffer(), BATCH_BYTES_AT, BATCH_BYTES);
        ends = new U32(buffer(), BATCH_ENDS_AT, BATCH_KEYS);
      };
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (n === BATCH_KEYS || at + 3 * key.length > BATCH_BYTES) flush();
        let j = 0;
        for (; j < key.length; j++) {
          const code = key.charCodeAt(j);
          if (code > 0x7f) break;
          bytes[at + j] = code;
        }
        if (j === key.length) at += j;
        else at += j + encoder.encodeInto(key.slice(j), bytes.subarray(at + j)).written;
        ends[n++] = at;
      }
      if (n > 0) flush();
      return out;
    } finally {
      matcher.free();
    }
  }

  /** Why `key` cannot be a key (the core's message). */
  function unwritableKeyError(key) {
    if (!isWellFormed(key)) return notUnicode(CacheKeyError, "key", key);
    return translate(wasm.keyError(key) ?? new Error(`key of ${key.length} characters does not fit`));
  }

  function notUnicode(ErrorClass, what, text) {
    return new ErrorClass(
      `${what} ${describe(text)} is not well-formed Unicode (it has a lone surrogate), so it has no UTF-8 form`,
    );
  }

  /** The base of every error the store throws. */
  class CacheError extends Error {}
  /** A key that is not a string, is empty or is too long. */
  class CacheKeyError extends CacheError {}
  /** A glob pattern that is not a string or is too long. */
  class CachePatternError extends CacheError {}
  /** Options that make no sense: a capacity of 0, a negative TTL, a missing policy. */
  class CachePolicyError extends CacheError {}
  /** A value or metadata the store cannot hold. */
  class CacheSerializationError extends CacheError {}
  /** The backend failed; from a MemoryStore: wasm memory is exhausted, or the engine trapped. */
  class CacheBackendError extends CacheError {}
  /** A `getOrSet` loader asked the same store for the key it is loading: it would wait on itself. */
  class CacheReentrantLoadError extends CacheError {}
  /** A `getOrSet` load took longer than its `softTimeout` (this caller) or `hardTimeout` (the load). */
  class CacheTimeoutError extends CacheError {}

  // Names on the prototypes, not `new.target.name`, so minifiers cannot rename them.
  const errorClasses = new Map();
  for (const [name, Class] of Object.entries({
    CacheError,
    CacheKeyError,
    CachePatternError,
    CachePolicyError,
    CacheSerializationError,
    CacheBackendError,
    CacheReentrantLoadError,
    CacheTimeoutError,
  })) {
    Object.defineProperty(Class.prototype, "name", { value: name, writable: true, configurable: true });
    errorClasses.set(name, Class);
  }

  // The policy constructors throw plain `Error`s named after the class they stand for.
  function translate(error) {
    if (error instanceof Error && !(error instanceof CacheError)) {
      const Class = errorClasses.get(error.name);
      if (Class !== undefined) return new Class(error.message);
    }
    return error;
  }

  function describe(value) {
    switch (typeof value) {
      case "string":
        return `the string ${JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}...` : value)}`;
      case "symbol":
        return value.toString();
      case "bigint":
        return `${value}n`;
      case "function":
        return "a function";
      case "object":
        if (value === null) return "null";
        if (Array.isArray(value)) return "an array";
        return isPlainObject(value) ? "a plain object" : `an object of class ${value.constructor?.name ?? "unknown"}`;
      default:
        return String(value);
    }
  }

  function keyError(key) {
    return new CacheKeyError(`a key must be a string, got ${describe(key)}`);
  }

  function patternError(pattern) {
    return new CachePatternError(`a pattern must be a string, got ${describe(pattern)}`);
  }

  // Plain: made by `{}`, `Object.create(null)` or JSON.parse, also in another realm.
  function isPlainObject(value) {
    if (typeof value !== "object" || value === null) return false;
    const proto = Object.getPrototypeOf(value);
    return proto === null || Object.getPrototypeOf(proto) === null;
  }

  /** Reads an options object, rejecting what is not one and misspelt names. */
  function readOptions(options, what, allowed) {
    if (options === undefined) return {};
    if (!isPlainObject(options)) {
      throw new CachePolicyError(`${what} options must be a plain object, got ${describe(options)}`);
    }
    for (const name of Object.keys(options)) {
      if (!allowed.includes(name)) {
        throw new CachePolicyError(`unknown ${what} option ${JSON.stringify(name)} (known: ${allowed.join(", ")})`);
      }
    }
    return options;
  }

  // Above this a number of seconds does not fit the core's Duration (u64 seconds).
  const MAX_SECONDS = 2 ** 64;

  /**
   * A positive, finite number of seconds under the option `name`, or
   * undefined. The messages are worded here, in JS: formatting a float inside
   * the .wasm would link Rust's float printer into it (about 15 KB).
   */
  function seconds(value, name) {
    if (value === undefined) return undefined;
    if (typeof value !== "number") {
      throw new CachePolicyError(`invalid policy: ${name} must be a number of seconds, got ${describe(value)}`);
    }
    if (!(value > 0) || value === Infinity) {
      throw new CachePolicyError(`invalid policy: ${name} must be a positive, finite number of seconds, got ${value}`);
    }
    if (value >= MAX_SECONDS) throw new CachePolicyError(`invalid policy: ${name} of ${value} seconds is too large`);
    // The core counts whole nanoseconds: less would be a zero it refuses,
    // and only once a loader has run (getOrSet's grace and retryAfter).
    if (value < 1e-9) {
      throw new CachePolicyError(`invalid policy: ${name} must be at least one nanosecond (1e-9 seconds), got ${value}`);
    }
    return value;
  }

  /** A capacity: undefined, or a whole number the core then checks (0 gets its message). */
  function maxSizeOption(value) {
    if (value === undefined) return undefined;
    if (typeof value !== "number") {
      throw new CachePolicyError(`invalid policy: maxSize must be a number, got ${describe(value)}`);
    }
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new CachePolicyError(`invalid policy: maxSize must be a positive integer, got ${value}`);
    }
    return value;
  }


  /** The first place where `value` is not JSON, as { path, why }, or undefined. */
  /**
   * A fresh copy of `metadata` made only of plain objects, arrays and JSON
   * primitives, reading each property of the caller's object exactly once.
   * Only the copy reaches wasm: no getter or Proxy of the caller's can run
   * inside a store call, where it could see a half-done call or throw through
   * it. Anything else is refused with the path to it.
   */
  function copyMetadata(metadata) {
    if (!isPlainObject(metadata)) {
      throw new CacheSerializationError(`metadata must be a plain object, got ${describe(metadata)}`);
    }
    return copyJson(metadata, 0, "");
  }

  function copyJson(value, depth, path) {
    switch (typeof value) {
      case "string":
        if (!isWellFormed(value)) throw notJson(path, "a string that is not well-formed Unicode (a lone surrogate)");
        return value;
      case "boolean":
        return value;
      case "number":
        if (Number.isFinite(value)) return value;
        break;
      case "object": {
        if (value === null) return null;
        // The metadata object is level 1, as in the core (MAX_NESTING).
        if (depth >= MAX_NESTING) {
          throw notJson(path, `nesting deeper than ${MAX_NESTING} levels (is it circular?)`);
        }
        if (Array.isArray(value)) {
          const n = value.length;
          const out = new Array(n);
          for (let i = 0; i < n; i++) out[i] = copyJson(value[i], depth + 1, `${path}[${i}]`);
          return out;
        }
        if (!isPlainObject(value)) break;
        if (Object.getOwnPropertySymbols(value).length > 0) throw notJson(path, "an object with symbol keys");
        const out = {};
        for (const key of Object.keys(value)) {
          const at = /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
          if (!isWellFormed(key)) throw notJson(path + at, "a key that is not well-formed Unicode (a lone surrogate)");
          // defineProperty, not assignment: a key "__proto__" stays data.
          Object.defineProperty(out, key, {
            value: copyJson(value[key], depth + 1, path + at),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
        return out;
      }
    }
    throw notJson(path, describe(value));
  }

  function notJson(path, why) {
    return new CacheSerializationError(
      `metadata${path} cannot be stored: metadata holds only JSON values ` +
        `(plain objects, arrays, strings, finite numbers, booleans, null), got ${why}`,
    );
  }

  /**
   * Reads `set` options into `setOptions`, checking their names and types
   * (the core checks the TTL's value again). Each option is read once, so a
   * getter cannot pass the check with one value and be stored with another;
   * the result goes to a shared object, not a fresh one, so `setSync`
   * allocates nothing.
   */
  const setOptions = { ttl: undefined, meta: undefined };
  const SET_OPTIONS = ["ttl", "metadata"];
  function readSetOptions(options) {
    let ttl;
    let metadata;
    if (options !== undefined) {
      if (typeof options !== "object" || options === null) {
        throw new CachePolicyError(`set options must be an object like { ttl, metadata }, got ${describe(options)}`);
      }
      checkNames(options, "set", SET_OPTIONS);
      ttl = seconds(options.ttl, "ttl");
      metadata = options.metadata;
      if (metadata !== undefined) metadata = copyMetadata(metadata);
    }
    setOptions.ttl = ttl;
    setOptions.meta = metadata;
  }

  /** Refuses option names not in `allowed` (a misspelt `tll` would otherwise be ignored). */
  function checkNames(options, what, allowed) {
    for (const name of Object.keys(options)) {
      if (!allowed.includes(name)) {
        throw new CachePolicyError(`unknown ${what} option ${JSON.stringify(name)} (known: ${allowed.join(", ")})`);
      }
    }
  }

  const LOAD_OPTIONS = ["ttl", "metadata", "grace", "softTimeout", "hardTimeout", "retryAfter", "waitUntil", "signal"];

  /**
   * The options of `getOrSet`, read once each into a fresh object: those of
   * `set`, and for stale-while-revalidate `grace` and `retryAfter`, the
   * timeouts, `waitUntil` and `signal`. Seconds throughout, like `ttl`.
   */
  function readLoadOptions(options) {
    const o = {
      ttl: undefined,
      meta: undefined,
      grace: undefined,
      softTimeout: undefined,
      hardTimeout: undefined,
      retryAfter: 1,
      waitUntil: undefined,
      signal: undefined,
    };
    if (options === undefined) return o;
    if (typeof options !== "object" || options === null) {
      throw new CachePolicyError(`getOrSet options must be an object like { ttl, metadata }, got ${describe(options)}`);
    }
    checkNames(options, "getOrSet", LOAD_OPTIONS);
    const { ttl, metadata, grace, softTimeout, hardTimeout, retryAfter, waitUntil, signal } = options;
    o.ttl = seconds(ttl, "ttl");
    if (metadata !== undefined) o.meta = copyMetadata(metadata);
    o.grace = seconds(grace, "grace");
    if (o.grace !== undefined && o.ttl === undefined) {
      throw new CachePolicyError("invalid policy: grace needs a ttl, the period during which a loaded value is fresh");
    }
    o.softTimeout = seconds(softTimeout, "softTimeout");
    o.hardTimeout = seconds(hardTimeout, "hardTimeout");
    if (retryAfter !== undefined) {
      if (o.grace === undefined) throw new CachePolicyError("invalid policy: retryAfter applies only with grace");
      o.retryAfter = seconds(retryAfter, "retryAfter");
    }
    if (waitUntil !== undefined && typeof waitUntil !== "function") {
      throw new CachePolicyError(`waitUntil must be a function, like ctx.waitUntil.bind(ctx), got ${describe(waitUntil)}`);
    }
    o.waitUntil = waitUntil;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw new CachePolicyError(`signal must be an AbortSignal, got ${describe(signal)}`);
    }
    o.signal = signal;
    return o;
  }

  function isAbortSignal(value) {
    return typeof AbortSignal === "function" ? value instanceof AbortSignal : typeof value?.aborted === "boolean";
  }

  function undefinedValueError(what) {
    return new CacheSerializationError(`${what} undefined: get() returns undefined for a miss (store null instead)`);
  }

  // The wasm side of each policy, out of the users' reach.
  const wasmPolicies = new WeakMap();

  function call(thunk) {
    try {
      return thunk();
    } catch (error) {
      throw translate(error);
    }
  }

  /** Least recently used: at most `maxSize` entries. */
  class LRUPolicy {
    constructor(options) {
      const { maxSize, ttl, refreshOnGet } = readOptions(options, "LRUPolicy", ["maxSize", "ttl", "refreshOnGet"]);
      if (maxSize === undefined) throw new CachePolicyError("invalid policy: maxSize is required for an LRUPolicy");
      if (refreshOnGet !== undefined && typeof refreshOnGet !== "boolean") {
        throw new CachePolicyError(`invalid policy: refreshOnGet must be a boolean, got ${describe(refreshOnGet)}`);
      }
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.lru(maxSizeOption(maxSize), seconds(ttl, "ttl"), refreshOnGet)),
      );
      this.maxSize = maxSize;
      this.ttl = ttl;
      this.refreshOnGet = refreshOnGet ?? true;
      Object.freeze(this);
    }
  }

  /**
   * S3-FIFO: at most `maxSize` entries, kept by how often and how recently
   * they are read; scan-resistant. The policy to use unless you need exact LRU.
   */
  class S3FIFOPolicy {
    constructor(options) {
      const { maxSize, ttl } = readOptions(options, "S3FIFOPolicy", ["maxSize", "ttl"]);
      if (maxSize === undefined) throw new CachePolicyError("invalid policy: maxSize is required for an S3FIFOPolicy");
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.s3fifo(maxSizeOption(maxSize), seconds(ttl, "ttl"))),
      );
      this.maxSize = maxSize;
      this.ttl = ttl;
      Object.freeze(this);
    }
  }

  /** Every entry expires after `ttl` seconds unless set with its own; optional capacity. */
  class TTLPolicy {
    constructor(options) {
      const { ttl, maxSize } = readOptions(options, "TTLPolicy", ["ttl", "maxSize"]);
      if (ttl === undefined) throw new CachePolicyError("invalid policy: ttl is required for a TTLPolicy");
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.ttl(seconds(ttl, "ttl"), maxSizeOption(maxSize))),
      );
      this.ttl = ttl;
      this.maxSize = maxSize;
      Object.freeze(this);
    }
  }

  // Each ManualClock's time in ms, and the timers of getOrSet's timeouts in
  // stores on that clock, fired by `advance`, so tests never sleep.
  const clockTimers = new WeakMap();

  /** A clock that moves only when told to, for tests of expiry and timeouts. */
  class ManualClock {
    constructor() {
      clockTimers.set(this, { now: 0, pending: [] });
    }

    /**
     * Moves the clock forward by `ms` milliseconds, then runs the timeouts
     * of `getOrSet` calls on stores with this clock that are now due, soonest first.
     */
    advance(ms) {
      if (typeof ms !== "number" || !(ms >= 0) || ms === Infinity) {
        throw new RangeError(`ManualClock.advance takes a finite number of milliseconds >= 0, got ${describe(ms)}`);
      }
      const timers = clockTimers.get(this);
      timers.now += ms;
      for (;;) {
        let next;
        for (const timer of timers.pending) if (timer.at <= timers.now && (next === undefined || timer.at < next.at)) next = timer;
        if (next === undefined) break;
        timers.pending.splice(timers.pending.indexOf(next), 1);
        next.run();
      }
    }
  }

  /** Timers on the host's setTimeout. */
  const realTimers = {
    set(seconds, run) {
      return setTimeout(run, Math.min(seconds * 1000, 2 ** 31 - 1));
    },
    clear(id) {
      clearTimeout(id);
    },
  };

  /** Timers on a ManualClock, fired by its `advance`. */
  function manualTimers(clock) {
    const timers = clockTimers.get(clock);
    return {
      set(seconds, run) {
        const timer = { at: timers.now + seconds * 1000, run };
        timers.pending.push(timer);
        return timer;
      },
      clear(timer) {
        const i = timers.pending.indexOf(timer);
        if (i >= 0) timers.pending.splice(i, 1);
      },
    };
  }

  /** Appends one removal notice (no Array method: see SlotMap). */
  function notify3(notices, value, key, reason) {
    const n = notices.length;
    notices[n] = value;
    notices[n + 1] = key;
    notices[n + 2] = reason;
  }

  /** How a key is shown in an error message. */
  function shownKey(key) {
    return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}...` : key);
  }

  function reentrantError(key) {
    return new CacheReentrantLoadError(
      `the loader of ${shownKey(key)} asked for ${shownKey(key)} itself: a load cannot wait on its own result`,
    );
  }

  function timeoutError(key, what, after) {
    return new CacheTimeoutError(`the load of ${shownKey(key)} took longer than its ${what} of ${after} s`);
  }

  const STORE_OPTIONS = ["policy", "clock", "onRemove"];
  // How a store tells its engine of a hit (MemoryStore#mode).
  const RING = 1;
  const FREQ = 2;

  function noRoom() {
    return new CacheBackendError("wasm memory is exhausted: the call changed nothing");
  }

  /** A new plain object: `base`'s properties, then `update`'s over them (top-level merge). */
  function merged(base, update) {
    const out = {};
    for (const source of [base, update]) {
      if (source === undefined) continue;
      for (const key of Object.keys(source)) {
        // defineProperty, not assignment: a key "__proto__" stays data.
        Object.defineProperty(out, key, { value: source[key], enumerable: true, writable: true, configurable: true });
      }
    }
    return out;
  }
  // The key of MemoryStore's self-check, for the package's tests.
  const AUDIT = Symbol.for("pepperpy-caching.audit");

  /** The host's clock in milliseconds, read in JS: never from inside a store call. */
  const systemNow = () => performance.now();

  /**
   * A cache in this isolate's memory. Values are kept as they are, not
   * copied: `get` returns the very object that was `set`, as a Map does.
   *
   * Values live here, in `#values` indexed by the entry's slot id, and keys
   * map to slot ids in `#ids`; the wasm engine keeps the policy, expiry,
   * metadata and the keys (for patterns) by slot, and hands back the id of
   * every entry it removes, which `#drop` forgets here. So the garbage
   * collector sees every value, and a hit is a Map lookup and one wasm call
   * with a number.
   */
  // When each store's counters started (creation or last resetStats), in ms
  // since the epoch: the start of its cumulative OpenTelemetry sums.
  const statsSince = new WeakMap();

  const OTEL_METRICS = [
    ["hits", "sum", "Gets that found a live entry."],
    ["misses", "sum", "Gets that found nothing, or only an expired entry."],
    ["sets", "sum", "Successful sets."],
    ["deletes", "sum", "Live entries removed by delete, invalidate or clear."],
    ["evictions", "sum", "Live entries removed to make room."],
    ["expirations", "sum", "Entries removed because their TTL had passed."],
    ["loads", "sum", "Loader runs started by getOrSet."],
    ["loadFailures", "sum", "Loader runs that failed."],
    ["staleHits", "sum", "Reads answered with a stale value within the grace period."],
    ["refreshes", "sum", "Background refreshes started."],
    ["refreshFailures", "sum", "Background refreshes that failed or timed out."],
    ["hitRatio", "gauge", "Hits divided by gets since the counters were reset."],
    ["avgGetLatency", "gauge", "Mean time of the sampled gets, in milliseconds."],
    ["totalLoadTime", "gauge", "Time spent in loaders, in milliseconds."],
  ];

  const nanos = (ms) => (BigInt(Math.trunc(ms)) * 1000000n).toString();
  const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

  /**
   * The counters of `stores` ({ name: MemoryStore }) as an OpenTelemetry
   * metrics export request in OTLP/JSON (the body of POST /v1/metrics), one
   * `store` attribute per series: for edge code that pushes its metrics.
   */
  function toOpenTelemetry(stores, options) {
    const { serviceName, time } = readOptions(options ?? {}, "toOpenTelemetry", ["serviceName", "time"]);
    if (stores === null || typeof stores !== "object" || Array.isArray(stores)) {
      throw new CachePolicyError(`toOpenTelemetry needs an object of stores by name, got ${describe(stores)}`);
    }
    const now = time ?? Date.now();
    if (typeof now !== "number" || !Number.isFinite(now) || now < 0) {
      throw new CachePolicyError(`time must be milliseconds since the epoch, got ${describe(now)}`);
    }
    if (serviceName !== undefined && typeof serviceName !== "string") {
      throw new CachePolicyError(`serviceName must be a string, got ${describe(serviceName)}`);
    }
    const rows = Object.entries(stores).map(([name, store]) => {
      if (!(store instanceof MemoryStore)) {
        throw new CachePolicyError(`toOpenTelemetry: ${JSON.stringify(name)} is not a MemoryStore`);
      }
      return [name, store.getStats(), statsSince.get(store) ?? now];
    });
    const metrics = OTEL_METRICS.map(([field, kind, description]) => {
      const dataPoints = rows.map(([name, stats, since]) => {
        const point = {
          attributes: [{ key: "store", value: { stringValue: name } }],
          startTimeUnixNano: nanos(since),
          timeUnixNano: nanos(now),
        };
        if (kind === "sum") point.asInt = String(stats[field]);
        else point.asDouble = stats[field];
        return point;
      });
      const metric = { name: `pepperpy_cache.${snake(field)}`, description, unit: field.endsWith("Time") || field === "avgGetLatency" ? "ms" : "1" };
      if (kind === "sum") metric.sum = { aggregationTemporality: 2, isMonotonic: true, dataPoints };
      else metric.gauge = { dataPoints };
      return metric;
    });
    const resource = {
      attributes: serviceName === undefined ? [] : [{ key: "service.name", value: { stringValue: serviceName } }],
    };
    return { resourceMetrics: [{ resource, scopeMetrics: [{ scope: { name: "pepperpy-caching" }, metrics }] }] };
  }

  class MemoryStore {
    #store;
    #ids = new SlotMap();
    #values = [];
    #keys = [];
    // Metadata (plain copies) and getOrSet freshness, by slot id: most entries have neither.
    #meta = new SlotMap();
    #fresh = new SlotMap();
    // The loads under way by key (the JS twin of the engine's placeholders):
    // { token, updates }. Any write, delete, invalidate or clear of the key
    // removes it, so a load that began before them stores nothing; an
    // updateMetadata of the live entry is kept in `updates`, for a refresh
    // to store with its value instead of erasing it.
    #loads = new SlotMap();
    #nextToken = 0;
    // Whether any entry may expire: only then is the clock read on a hit.
    #expiring = false;
    #now = systemNow;
    #onRemove;
    #disposed = false;
    // The getOrSet loads under way, by key: what makes concurrent calls share one.
    #flights = new SlotMap();
    // The keys whose loaders are running synchronously right now, innermost
    // last: a getOrSet for one of them comes from inside its own loader.
    #loading = [];
    // Where getOrSet's timeouts wait: setTimeout, or the store's ManualClock.
    #timers = realTimers;
    // The wasm policy, to start a fresh engine after a trap (`#reset`).
    #policy;
    // Set when a call failed: the next call first makes sure the engine is
    // intact and that no placement was cut short (`#repair`).
    #pending = false;
    // How a hit tells the engine: RING (exact LRU: the access ring), FREQ
    // (S3-FIFO: the slot's access count), or nothing (TTL, LRU without refreshOnGet).
    #mode = 0;
    // Views of the engine's memory (`#view`), valid while #header[0] is #version.
    #header = new U32(0);
    #version = -1;
    #counters = NO_DEADLINES;
    #ring = new U32(0);
    #ringN = 0;
    #removed = new U32(0);
    #freq = new U8(0);
    #deadline = NO_DEADLINES;
    // The read counters, kept here (a hit never enters wasm); the engine
    // counts sets, deletes, evictions and expirations in its own.
    #hits = 0;
    #misses = 0;
    #latencyTotal = 0;
    #latencySamples = 0;
    #loadsRun = 0;
    #loadFailures = 0;
    #loadTime = 0;
    #staleHits = 0;
    #refreshes = 0;
    #refreshFailures = 0;

    constructor(options) {
      statsSince.set(this, Date.now());
      const { policy, clock, onRemove } = readOptions(options, "MemoryStore", STORE_OPTIONS);
      const wasmPolicy = wasmPolicies.get(policy);
      if (wasmPolicy === undefined) {
        throw new CachePolicyError(
          `MemoryStore needs { policy: new S3FIFOPolicy({ maxSize }) }, an LRUPolicy or a TTLPolicy, got policy ${describe(policy)}`,
        );
      }
      if (clock !== undefined) {
        const state = clockTimers.get(clock);
        if (state === undefined) throw new CachePolicyError(`clock must be a ManualClock, got ${describe(clock)}`);
        this.#now = () => state.now;
        this.#timers = manualTimers(clock);
      }
      if (onRemove !== undefined && typeof onRemove !== "function") {
        throw new CachePolicyError(`onRemove must be a function (value, key, reason), got ${describe(onRemove)}`);
      }
      this.#onRemove = onRemove;
      this.#expiring = policy.ttl !== undefined;
      this.#policy = wasmPolicy;
      this.#mode = policy instanceof S3FIFOPolicy ? FREQ : policy instanceof LRUPolicy && policy.refreshOnGet ? RING : 0;
      this.#store = new WasmStore(wasmPolicy);
      this.#locate();
      this.#view();
    }

    // Where the engine's fixed buffers are (they never move), read once.
    #at;

    /** The engine's addresses, asked once per engine. */
    #locate() {
      const store = this.#store;
      this.#at = { header: store.header(), counters: store.counters(), ring: store.ring(), removed: store.removed() };
      this.#version = -1;
    }

    /**
     * Takes new views of the engine's memory (it grew, or the engine's
     * arrays moved, as its header says). No call into wasm: this runs at
     * the start of calls, where a stack overflow inside wasm would leave
     * the engine looking broken.
     */
    #view() {
      const memory = buffer();
      const at = this.#at;
      const header = new U32(memory, at.header, 4);
      const slots = header[1];
      this.#counters = new F64(memory, at.counters, 4);
      this.#ring = new U32(memory, at.ring, RING_LEN);
      this.#removed = new U32(memory, at.removed, 1 + 2 * MAX_REMOVED);
      this.#freq = new U8(memory, header[2], slots);
      this.#deadline = header[3] === 0 ? NO_DEADLINES : new F64(memory, header[3], slots);
      this.#header = header;
      this.#version = header[0];
    }

    /** The clock for a call: read only when some entry may expire. */
    #time() {
      return this.#expiring ? this.#now() : 0;
    }

    /**
     * The wasm store, once the stack is as it rests (see `unwind`) and
     * `depth` more frames fit; throws once disposed.
     */
    #live(depth = HEADROOM) {
      if (this.#disposed) throw new CacheError("this MemoryStore was disposed");
      unwind();
      headroom(depth);
      if (this.#pending) this.#repair();
      if (this.#header[0] !== this.#version) this.#view();
      return this.#store;
    }

    /**
     * After a failed call. A trap inside the engine (a stack overflow deep
     * in wasm, memory exhausted where nothing reserved it) may have stopped
     * it half-way through an update: nothing it holds can be trusted, so the
     * store starts again empty (`#reset`). Otherwise the engine is as it
     * was, and only a placement cut short after it stored an entry is
     * finished. Done here, by the next call, rather than in the failed one:
     * that one may have no stack left to ask the engine with. If this fails
     * too, the next call tries again.
     */
    #repair() {
      let intact;
      try {
        intact = this.#store.intact();
      } catch (error) {
        if (error instanceof RangeError) throw error; // no stack to tell: ask again next time
        intact = false;
      }
      if (!intact) {
        try {
          this.#reset();
        } catch (error) {
          throw this.#failed(error); // no memory even for an empty engine
        }
      } else if (this.#cutKey !== undefined) {
        if (this.#header[0] !== this.#version) this.#view();
        this.#finishPlacing();
      }
      this.#pending = false;
    }

    /**
     * Replaces a broken engine with a fresh empty one: every entry leaves
     * with the reason "cleared" (the listener is told once the store is
     * consistent; its error, with no caller to go to, is reported), the
     * counters start again from zero, and the loads under way will not
     * store their values (their callers still get them). The broken engine
     * is never freed: its memory could not be walked safely.
     */
    #reset() {
      const broken = this.#store;
      this.#store = new WasmStore(this.#policy);
      this.#ringN = 0;
      this.#locate();
      this.#view();
      try {
        broken.free();
      } catch {
        // Still borrowed by the trapped call: wasm-bindgen keeps it, unfreed.
      }
      statsSince.set(this, Date.now());
      this.#zeroCounters();
      this.#cutKey = undefined;
      this.#cutValue = undefined;
      this.#cutMeta = undefined;
      const notices = this.#notices();
      if (notices !== undefined) this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
      this.#forgetAll();
      this.#pending = false;
      try {
        this.#notify(notices);
      } catch (error) {
        reportLater(error);
      }
    }

    #forgetAll() {
      this.#ids.clear();
      this.#values.length = 0;
      this.#keys.length = 0;
      this.#meta.clear();
      this.#fresh.clear();
      this.#loads.clear();
    }

    #zeroCounters() {
      this.#hits = 0;
      this.#misses = 0;
      this.#latencyTotal = 0;
      this.#latencySamples = 0;
      this.#loadsRun = 0;
      this.#loadFailures = 0;
      this.#loadTime = 0;
      this.#staleHits = 0;
      this.#refreshes = 0;
      this.#refreshFailures = 0;
    }

    /**
     * Forgets slot `id` (the engine freed it) and, with a listener,
     * queues (value, key, reason) on `notices` for `#notify`.
     */
    #drop(id, reason, notices) {
      const key = this.#keys[id];
      const value = this.#values[id];
      if (key === undefined) return;
      if (this.#ids.get(key) === id) this.#ids.delete(key);
      this.#values[id] = undefined;
      this.#keys[id] = undefined;
      if (this.#meta.size !== 0) this.#meta.delete(id);
      if (this.#fresh.size !== 0) this.#fresh.delete(id);
      if (notices !== undefined) notify3(notices, value, key, REASONS[reason]);
    }

    /** The removal notices of one call, or undefined without a listener. */
    #notices() {
      return this.#onRemove === undefined ? undefined : [];
    }

    /**
     * Calls the listener for each notice, once the store is consistent. A
     * listener may use the store; if one throws, the others still run and
     * the first error is thrown after them: the call itself has completed.
     * With `later` (a load storing its value: its callers get the value) the
     * error has no caller to go to and is reported instead (`reportLater`).
     */
    #notify(notices, later) {
      if (notices === undefined || notices.length === 0) return;
      const listener = this.#onRemove;
      let failed = false;
      let error;
      for (let i = 0; i < notices.length; i += 3) {
        try {
          listener(notices[i], notices[i + 1], notices[i + 2]);
        } catch (e) {
          if (!failed) [failed, error] = [true, e];
        }
      }
      if (!failed) return;
      if (later) reportLater(error);
      else throw error;
    }

    /** The `n` slot ids in the engine's report. */
    #report(n) {
      return new U32(buffer(), this.#store.report(0), n);
    }

    /** Forgets the ids of the entries that expired by `now`. */
    #reclaim(now, notices) {
      let n;
      try {
        n = this.#store.reclaim(this.#ringN, now);
        this.#ringN = 0;
      } catch (error) {
        throw this.#failed(error);
      }
      if (n < 0) throw noRoom();
      if (n === 0) return;
      const ids = this.#report(n);
      for (let i = 0; i < n; i++) this.#drop(ids[i], EXPIRED, notices);
    }

    // The synchronous fast path; the async methods below are thin wrappers.

    /**
     * The value under `key`, or undefined. A hit is a Map lookup and plain
     * reads and writes of the engine's memory: the deadline, when entries
     * may expire; then the access ring (exact LRU, replayed by the engine
     * before anything that evicts, reorders or lists) or the access count
     * (S3-FIFO). No call into wasm.
     */
    getSync(key) {
      if (--this.#untilTimed === 0) return this.#timedGet(key);
      const id = this.#ids.get(key);
      if (id === undefined || this.#pending) return this.#missed(key, id);
      if (this.#header[0] !== this.#version) this.#view();
      if (this.#expiring && this.#deadline[id] <= this.#now()) return this.#missed(key, id);
      this.#hit(id);
      return this.#values[id];
    }

    /** Tells the engine of a hit on slot `id` (the views are current). */
    #hit(id) {
      this.#hits++;
      const mode = this.#mode;
      if (mode === RING) {
        this.#ring[this.#ringN] = id;
        if (++this.#ringN === RING_LEN) this.#drain();
      } else if (mode === FREQ) {
        const f = this.#freq[id];
        if (f < 3) this.#freq[id] = f + 1;
      }
    }

    /** Replays the full access ring. */
    #drain() {
      try {
        unwind();
        this.#store.replay(this.#ringN);
      } catch (error) {
        throw this.#failed(error);
      }
      this.#ringN = 0;
    }

    // One get in LATENCY_SAMPLE_EVERY is timed (on the store's clock) for `avgGetLatency`.
    #untilTimed = LATENCY_SAMPLE_EVERY;

    #timedGet(key) {
      this.#untilTimed = LATENCY_SAMPLE_EVERY;
      const started = this.#now();
      const value = this.getSync(key);
      const elapsed = this.#now() - started;
      if (!this.#disposed) {
        this.#latencyTotal += elapsed > 0 ? elapsed : 0;
        this.#latencySamples++;
      }
      return value;
    }

    /** A get that found no live entry here (or a call to repair first). */
    #missed(key, id) {
      if (this.#pending || this.#disposed) {
        this.#live();
        return this.getSync(key);
      }
      if (id !== undefined) {
        // Expired: the engine frees it, and it counts as a miss.
        const notices = this.#notices();
        this.#expire(id, notices);
        this.#misses++;
        this.#notify(notices);
        return undefined;
      }
      checkKey(key);
      this.#misses++;
      return undefined;
    }

    /** Frees slot `id`, found expired, in the engine and here. */
    #expire(id, notices) {
      try {
        unwind();
        this.#store.expire(this.#ringN, id);
        this.#ringN = 0;
      } catch (error) {
        throw this.#failed(error);
      }
      this.#drop(id, EXPIRED, notices);
    }

    /** The live slot under `key` at `now`, counting nothing; reclaims it if expired. */
    #liveSlot(key, now, notices) {
      const id = this.#ids.get(key);
      if (id === undefined) return undefined;
      if (this.#header[0] !== this.#version) this.#view();
      if (this.#deadline[id] <= now) {
        this.#expire(id, notices);
        return undefined;
      }
      return id;
    }

    /** Stores `value` under `key`. */
    setSync(key, value, options) {
      if (typeof key !== "string") throw keyError(key);
      if (value === undefined) throw undefinedValueError("cannot store");
      let ttl;
      let meta;
      if (options !== undefined) {
        readSetOptions(options);
        ({ ttl, meta } = setOptions);
      }
      this.#put(key, value, ttl, meta);
    }

    /**
     * Stores `value` under `key` (checked a string) with a ttl in seconds and
     * metadata (a plain copy); throws if refused. `later`: see `#notify`.
     */
    #put(key, value, ttl, meta, later, fresh) {
      if (ttl !== undefined) this.#expiring = true;
      const now = this.#time();
      // Nothing of the caller's runs from here to the end of the call into
      // wasm. The headroom probe comes first: a stack overflow in `#place`,
      // after the engine stored the entry, would leave the engine holding an
      // entry this side has no value for (taking room, missed by getSync).
      const store = this.#live();
      const existing = this.#ids.get(key);
      let hash = 0;
      if (existing === undefined) {
        checkKey(key);
        if (this.#mode === FREQ) hash = hashKey(key);
      }
      let id;
      try {
        id = store.set(
          this.#ringN, existing ?? -1, hash, ttl === undefined ? NaN : ttl * 1000, now, this.#hits + this.#misses, this.#misses,
        );
        this.#ringN = 0;
      } catch (error) {
        unwind();
        throw this.#failed(error);
      }
      if (id < 0) {
        throw id === -1
          ? new CachePolicyError("a memory store holds at most 4294967294 entries")
          : noRoom();
      }
      // No call between the engine's and this `try` (a first call compiles).
      let notices;
      try {
        if (this.#header[0] !== this.#version) this.#view();
        notices = this.#place(id, key, value, meta, fresh);
      } catch (error) {
        // Cut short past the probe (V8 may need far more stack to compile or
        // tier up a function than the probe reserves): the engine holds the
        // entry, so the next call finishes placing it (`#finishPlacing`)
        // before anything reads either side. Plain field writes: no call.
        this.#cutId = id;
        this.#cutValue = value;
        this.#cutMeta = meta;
        this.#cutFresh = fresh;
        this.#cutKey = key;
        this.#pending = true;
        throw error;
      }
      this.#notify(notices, later);
    }

    // An entry the engine stored whose placement here was cut short (see
    // `#put`): its slot, value, metadata and key (undefined when there is none).
    #cutId = 0;
    #cutValue;
    #cutMeta;
    #cutFresh;
    #cutKey;

    /**
     * Finishes placing the entry a stack overflow cut short, before any
     * other call: the removed buffer still holds that set's report, since
     * only a set writes it, and each call comes here first. Parts of
     * `#place` already done are skipped (`#drop` of a forgotten id does
     * nothing). Its notices, if any, go out as the set's would have.
     */
    #finishPlacing() {
      // Forgotten only once done: cut short again, the next call retries.
      const notices = this.#place(this.#cutId, this.#cutKey, this.#cutValue, this.#cutMeta, this.#cutFresh);
      this.#cutKey = undefined;
      this.#cutValue = undefined;
      this.#cutMeta = undefined;
      // The cut set already threw to its caller: a listener's error is reported.
      this.#notify(notices, true);
    }

    /** What a call rethrows after `error` (and the next call checks the engine: `#repair`). */
    #failed(error) {
      this.#pending = true;
      return error instanceof RuntimeError
        ? new CacheBackendError(`the wasm engine trapped: ${error.message}`, { cause: error })
        : error;
    }

    /**
     * Puts the value of the entry just stored in slot `id`, after forgetting
     * what the engine removed for it: the removal notices, for `#notify`.
     */
    #place(id, key, value, meta, fresh) {
      const removed = this.#removed;
      const n = removed[0];
      let notices;
      if (n !== 0) {
        notices = this.#notices();
        for (let i = 1; i <= 2 * n; i += 2) {
          const rid = removed[i];
          const reason = removed[i + 1];
          if (reason === REPLACED) {
            if (notices !== undefined) notify3(notices, this.#values[rid], key, "replaced");
          } else {
            this.#drop(rid, reason, notices);
          }
        }
      }
      // A slot another key still maps to here (its bookkeeping was cut short
      // by a stack overflow after the engine freed it): that key is gone.
      const previous = this.#keys[id];
      if (previous !== undefined && previous !== key && this.#ids.get(previous) === id) this.#ids.delete(previous);
      this.#values[id] = value;
      this.#keys[id] = key;
      this.#ids.set(key, id);
      if (meta !== undefined) this.#meta.set(id, meta);
      else if (this.#meta.size !== 0) this.#meta.delete(id);
      if (fresh !== undefined) this.#fresh.set(id, fresh);
      else if (this.#fresh.size !== 0) this.#fresh.delete(id);
      // A write moves the key on: a load that began before it stores nothing.
      if (this.#loads.size !== 0) this.#loads.delete(key);
      return notices;
    }

    /** Removes `key`; whether a live entry was there. */
    deleteSync(key) {
      if (typeof key !== "string") throw keyError(key);
      const now = this.#time();
      const store = this.#live();
      const id = this.#ids.get(key);
      if (id === undefined) checkKey(key);
      if (this.#loads.size !== 0) this.#loads.delete(key);
      if (id === undefined) return false;
      let existed;
      try {
        existed = store.remove(this.#ringN, id, now);
        this.#ringN = 0;
      } catch (error) {
        throw this.#failed(error);
      }
      const notices = this.#notices();
      this.#drop(id, existed ? DELETED : EXPIRED, notices);
      this.#notify(notices);
      return existed;
    }

    /** The slot of the live entry under `key`, without counting or reordering; undefined if none. */
    #peekSlot(key) {
      if (typeof key !== "string") throw keyError(key);
      const now = this.#time();
      this.#live();
      const notices = this.#notices();
      const id = this.#liveSlot(key, now, notices);
      if (id === undefined) {
        this.#notify(notices);
        checkKey(key);
      }
      return id;
    }

    /** Whether a live entry is under `key`; counts no hit or miss. */
    hasSync(key) {
      return this.#peekSlot(key) !== undefined;
    }

    /** The live value under `key`, without counting a hit or miss or changing the policy's order. */
    peek(key) {
      const id = this.#peekSlot(key);
      return id === undefined ? undefined : this.#values[id];
    }

    /**
     * Seconds until the entry under `key` expires: `Infinity` if it never
     * does, undefined without a live entry.
     */
    remainingTtl(key) {
      if (typeof key !== "string") throw keyError(key);
      const now = this.#now();
      this.#live();
      const notices = this.#notices();
      const id = this.#liveSlot(key, now, notices);
      this.#notify(notices);
      if (id === undefined) {
        checkKey(key);
        return undefined;
      }
      const deadline = this.#deadline[id];
      return deadline === undefined || deadline === Infinity ? Infinity : (deadline - now) / 1000;
    }

    async get(key) {
      return this.getSync(key);
    }

    /**
     * The live value under `key`, or else the value `loader({ key, signal })`
     * returns or resolves to, stored with `options` and returned; with
     * `grace`, stale-while-revalidate. The rules, as in Rust's `get_or_set`
     * and `get_or_refresh`, are in index.d.ts.
     */
    async getOrSet(key, loader, options) {
      if (typeof key !== "string") throw keyError(key);
      if (typeof loader !== "function") {
        throw new TypeError(`getOrSet's loader must be a function, got ${describe(loader)}`);
      }
      const o = readLoadOptions(options);
      // Checked before the counted read, as in Rust: a refused call counts nothing.
      if (this.#loading.length !== 0 && this.#loading.includes(key)) throw reentrantError(key);
      if (o.signal?.aborted) throw o.signal.reason;
      if (o.ttl !== undefined) this.#expiring = true;
      const now = this.#time();
      this.#live();
      checkKey(key);
      const notices = this.#notices();
      const id = this.#liveSlot(key, now, notices);
      this.#notify(notices);
      if (id === undefined) {
        this.#misses++;
        return this.#join(key, loader, o);
      }
      this.#hit(id);
      const value = this.#values[id];
      if (o.grace !== undefined && this.#fresh.size !== 0) {
        // Stale-while-revalidate: as the engine's get_fresh.
        const state = this.#fresh.get(id);
        if (state !== undefined && now >= state.freshUntil) {
          this.#staleHits++;
          if (!state.refreshing && now >= state.retryAt) {
            state.refreshing = true;
            this.#refreshes++;
            this.#refresh(key, loader, o);
          }
        }
      }
      return value;
    }

    /** Marks a load of `key` as begun: its token. A newer load of the key replaces it. */
    #beginLoad(key) {
      const token = ++this.#nextToken;
      this.#loads.set(key, { token, updates: undefined });
      return token;
    }

    /**
     * Ends the load `token` of `key`: its placeholder (with the metadata
     * updates made meanwhile) if nothing wrote, deleted, invalidated or
     * cleared the key since it began, so its value may be stored; else undefined.
     */
    #endLoad(key, token) {
      const load = this.#loads.get(key);
      if (load === undefined || load.token !== token) return undefined;
      this.#loads.delete(key);
      return load;
    }

    /** A caller that missed: leads a new load of `key`, or waits for the one under way. */
    #join(key, loader, o) {
      let resolve;
      let reject;
      const promise = new NativePromise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      const call = { loader, o, resolve, reject, done: false, onAbort: undefined, timer: undefined };
      let flight = this.#flights.get(key);
      const leads = flight === undefined;
      if (leads) flight = { key, waiters: new WaiterSet(), leader: undefined, run: undefined };
      // The caller's listener and timer first: if its signal or the host
      // refuses one, nothing is registered and the call just fails.
      try {
        if (o.signal !== undefined) {
          call.onAbort = () => this.#leave(flight, call, o.signal.reason);
          o.signal.addEventListener("abort", call.onAbort, { once: true });
        }
        if (o.softTimeout !== undefined) {
          call.timer = this.#timers.set(o.softTimeout, () => {
            call.timer = undefined;
            this.#leave(flight, call, timeoutError(key, "softTimeout", o.softTimeout));
          });
        }
      } catch (error) {
        this.#detach(call);
        throw error;
      }
      if (!leads) {
        flight.waiters.add(call); // a Set: O(1) to add and to remove
        return promise;
      }
      this.#flights.set(key, flight);
      try {
        this.#lead(flight, call);
      } catch (error) {
        // The load could not start (#start undid its part): no flight is left.
        if (this.#flights.get(key) === flight) this.#flights.delete(key);
        this.#detach(call);
        throw error;
      }
      return promise;
    }

    /** Ends a call that will not be settled: its listener and timer go. */
    #detach(call) {
      call.done = true;
      try {
        if (call.onAbort !== undefined) call.o.signal.removeEventListener("abort", call.onAbort);
      } finally {
        if (call.timer !== undefined) this.#timers.clear(call.timer);
      }
    }

    /** Settles one caller's promise, once, dropping its listener and timer. */
    #settle(call, ok, result) {
      if (call.done) return;
      call.done = true;
      // Settled first: a caller's signal whose removeEventListener throws
      // must not leave this caller, or the ones settled after it, hanging.
      if (ok) call.resolve(result);
      else call.reject(result);
      try {
        if (call.onAbort !== undefined) call.o.signal.removeEventListener("abort", call.onAbort);
      } catch {
        // The listener stays on the caller's own signal; nothing of ours is left half-done.
      } finally {
        if (call.timer !== undefined) this.#timers.clear(call.timer);
      }
    }

    /**
     * A caller gives up (its signal aborted, or its softTimeout passed): it
     * rejects with `reason`. A waiter just leaves; a leader abandons its load
     * (its loader's signal aborts, its placeholder goes) and the load passes
     * to exactly one waiter, which runs its own loader.
     */
    #leave(flight, call, reason) {
      if (call.done) return;
      if (flight.leader !== call) {
        flight.waiters.delete(call);
        this.#settle(call, false, reason);
        return;
      }
      const run = flight.run;
      this.#endRun(run);
      if (run.token !== undefined) this.#endLoad(flight.key, run.token);
      run.controller.abort(reason);
      this.#settle(call, false, reason);
      // The first waiter (a scan, once per abandoned load, as in Rust). Its
      // load may fail to start (the host refuses its timer, say): it then
      // fails, and the next one tries, so the key is never left with a load
      // that nothing runs.
      for (;;) {
        let next;
        flight.waiters.forEach((waiter) => {
          next ??= waiter;
        });
        if (next === undefined) {
          if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
          return;
        }
        flight.waiters.delete(next);
        try {
          this.#lead(flight, next);
          return;
        } catch (error) {
          this.#settle(next, false, error);
        }
      }
    }

    /** Makes `call` the leader of `flight` and starts its loader. */
    #lead(flight, call) {
      const { key } = flight;
      const { o } = call;
      flight.leader = call;
      const run = (flight.run = this.#start(key, call.loader, o, (ok, result, run) => {
        // The placeholder decides whether the value is stored; the callers get it either way.
        if (!this.#disposed) {
          try {
            if (this.#pending) this.#live();
            if (o.grace === undefined) {
              const ours = this.#endLoad(key, run.token);
              if (ok && ours !== undefined) this.#put(key, result, o.ttl, o.meta, true);
            } else {
              this.#finishRefresh(key, run.token, ok, result, o, false);
            }
          } catch (error) {
            [ok, result] = [false, this.#failed(error)];
          }
        }
        if (this.#flights.get(key) === flight) this.#flights.delete(key);
        this.#settle(flight.leader, ok, result);
        flight.waiters.forEach((waiter) => this.#settle(waiter, ok, result));
        flight.waiters.clear();
      }));
      return run;
    }

    /**
     * Ends a stale-while-revalidate load or refresh: stores its value if its
     * placeholder stands (with the metadata updates made meanwhile merged
     * over the options' metadata), fresh for `ttl` and kept `grace` more; on
     * failure keeps the stale value and backs off.
     */
    #finishRefresh(key, token, ok, value, o, background) {
      if (this.#pending) this.#live();
      const load = this.#endLoad(key, token);
      if (!ok && background) this.#refreshFailures++;
      if (load === undefined) return;
      if (!ok) {
        this.#backOff(key, o);
        return;
      }
      const meta = load.updates === undefined ? o.meta : merged(o.meta, load.updates);
      const fresh = { freshUntil: this.#now() + o.ttl * 1000, refreshing: false, retryAt: 0, failures: 0 };
      this.#put(key, value, o.ttl + o.grace, meta, true, fresh);
    }

    /**
     * A refresh of `key` failed: the stale value stays and the next refresh
     * waits `retryAfter`, doubling with each failure in a row up to a minute
     * (as RefreshOptions::backoff in src/refresh.rs).
     */
    #backOff(key, o) {
      const id = this.#ids.get(key);
      const state = id === undefined ? undefined : this.#fresh.get(id);
      if (state === undefined) return;
      state.refreshing = false;
      state.failures++;
      const factor = 2 ** Math.min(state.failures - 1, 16);
      state.retryAt = this.#now() + Math.min(o.retryAfter * factor, Math.max(60, o.retryAfter)) * 1000;
    }

    /**
     * Runs `loader({ key, signal })` for `key` under a fresh placeholder, and
     * calls `finish(ok, result, run)` once when it settles, fails, returns
     * undefined or passes its hardTimeout; never if the run is ended first
     * (`#endRun`). The loader is called synchronously, with `key` marked as
     * loading, so that a getOrSet of `key` from inside it (directly, or from
     * the loader of another key it started) fails at once.
     */
    #start(key, loader, o, finish) {
      const run = { live: true, token: undefined, controller: new AbortController(), timer: undefined, end: undefined };
      const started = this.#now();
      const end = (run.end = (ok, result) => {
        if (!run.live) return;
        this.#endRun(run);
        if (ok && result === undefined) [ok, result] = [false, undefinedValueError("the loader returned")];
        if (!this.#disposed) {
          const elapsed = this.#now() - started;
          this.#loadsRun++;
          if (!ok) this.#loadFailures++;
          this.#loadTime += elapsed > 0 ? elapsed : 0;
        }
        finish(ok, result, run);
      });
      this.#runs.add(run);
      run.token = this.#beginLoad(key);
      try {
        if (o.hardTimeout !== undefined) {
          run.timer = this.#timers.set(o.hardTimeout, () => {
            run.timer = undefined;
            const error = timeoutError(key, "hardTimeout", o.hardTimeout);
            run.controller.abort(error);
            end(false, error);
          });
        }
      } catch (error) {
        this.#endRun(run);
        this.#endLoad(key, run.token);
        throw error;
      }
      let result;
      let threw = false;
      const loading = this.#loading;
      const depth = loading.length;
      loading[depth] = key;
      try {
        result = loader({ key, signal: run.controller.signal });
      } catch (error) {
        [threw, result] = [true, error];
      } finally {
        loading.length = depth;
      }
      // `new Promise` rather than Promise.resolve: a thenable whose `then`
      // getter throws rejects here instead of throwing.
      const settled = threw ? new NativePromise((_, reject) => reject(result)) : new NativePromise((resolve) => resolve(result));
      apply(promiseThen, settled, [(value) => end(true, value), (error) => end(false, error)]);
      return run;
    }

    // The runs under way (loads and refreshes), for dispose().
    #runs = new WaiterSet();

    /** Ends a run: its outcome will be ignored and its timer is stopped. */
    #endRun(run) {
      run.live = false;
      this.#runs.delete(run);
      if (run.timer !== undefined) {
        this.#timers.clear(run.timer);
        run.timer = undefined;
      }
    }

    /**
     * The background refresh of a stale entry (one per key: the engine
     * decided this call starts it). A failure keeps the stale value and backs
     * off; a write meanwhile wins. Its promise, which never rejects, goes to
     * `waitUntil` so a Worker stays alive for it.
     */
    #refresh(key, loader, o) {
      let done;
      const finished = new NativePromise((resolve) => {
        done = resolve;
      });
      try {
        this.#startRefresh(key, loader, o, done);
      } catch (error) {
        // It could not start: the refresh ends as a failed one (backing
        // off), or the key would stay "refreshing" until its grace ran out.
        this.#refreshFailures++;
        this.#backOff(key, o);
        done();
        throw error;
      }
      if (o.waitUntil !== undefined) {
        // The stale value is this caller's answer either way, and the
        // refresh runs on: a waitUntil that throws is reported, not thrown.
        try {
          o.waitUntil(finished);
        } catch (error) {
          reportLater(error);
        }
      }
    }

    #startRefresh(key, loader, o, done) {
      this.#start(key, loader, o, (ok, result, run) => {
        try {
          if (!this.#disposed) this.#finishRefresh(key, run.token, ok, result, o, true);
        } catch {
          // Nobody awaits a refresh: a value the store refuses (it cannot:
          // the options were checked) is dropped, as in Rust. (A listener's
          // error never comes here: `#notify` reports it.)
        }
        done();
      });
    }

    async set(key, value, options) {
      this.setSync(key, value, options);
    }

    async delete(key) {
      return this.deleteSync(key);
    }

    async has(key) {
      return this.hasSync(key);
    }

    /** A fresh copy of the entry's metadata ({} when it has none), or undefined. */
    async getMetadata(key) {
      const id = this.#peekSlot(key);
      if (id === undefined) return undefined;
      const meta = this.#meta.get(id);
      return meta === undefined ? {} : copyJson(meta, 0, "");
    }

    /** Merges `metadata` into the entry's (top-level keys replaced); whether the entry exists. */
    async updateMetadata(key, metadata) {
      if (typeof key !== "string") throw keyError(key);
      const update = copyMetadata(metadata);
      const id = this.#peekSlot(key);
      if (id === undefined) return false;
      this.#meta.set(id, merged(this.#meta.get(id), update));
      // A refresh under way stores these too (issue 22: it erased them).
      const load = this.#loads.size === 0 ? undefined : this.#loads.get(key);
      if (load !== undefined) load.updates = merged(load.updates, update);
      return true;
    }

    /** Removes the live entries whose keys match the Redis glob `pattern`; how many. */
    async invalidate(pattern) {
      return this.invalidateSync(pattern);
    }

    /** {@link invalidate} without the Promise. */
    invalidateSync(pattern) {
      if (typeof pattern !== "string") throw patternError(pattern);
      if (!isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
      const now = this.#now();
      const store = this.#live(DEEP);
      const notices = this.#notices();
      let ids;
      try {
        this.#reclaim(now, notices);
        const keys = [];
        const slots = [];
        this.#ids.forEach((id, key) => {
          keys[keys.length] = key;
          slots[slots.length] = id;
        });
        const hits = matching(pattern, keys);
        // Loads of matching keys store nothing (those with no entry too).
        if (this.#loads.size !== 0) {
          const loading = [];
          this.#loads.forEach((_, key) => {
            loading[loading.length] = key;
          });
          for (const i of matching(pattern, loading)) this.#loads.delete(loading[i]);
        }
        const n = hits.length;
        if (n === 0) {
          this.#notify(notices);
          return 0;
        }
        const at = store.report(n);
        if (at === 0) throw noRoom();
        const room = new U32(buffer(), at, n);
        for (let i = 0; i < n; i++) room[i] = slots[hits[i]];
        ids = new U32(n);
        ids.set(room);
        store.removeReported(this.#ringN);
        this.#ringN = 0;
      } catch (error) {
        const failure = error instanceof RuntimeError ? this.#failed(error) : error;
        this.#notify(notices);
        throw failure;
      }
      for (let i = 0; i < ids.length; i++) this.#drop(ids[i], INVALIDATED, notices);
      this.#notify(notices);
      return ids.length;
    }

    /** The slot ids of the live entries, all or those matching `pattern`, in the documented order. */
    #slots(pattern) {
      if (pattern !== undefined && typeof pattern !== "string") throw patternError(pattern);
      if (pattern !== undefined && !isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
      const now = this.#now();
      const store = this.#live(DEEP);
      const notices = this.#notices();
      let ids;
      try {
        this.#reclaim(now, notices);
        let n;
        try {
          n = store.list(this.#ringN);
          this.#ringN = 0;
        } catch (error) {
          throw this.#failed(error);
        }
        if (n < 0) throw noRoom();
        ids = Array.from(this.#report(n));
        if (pattern !== undefined) {
          const keys = ids.map((id) => this.#keys[id] ?? "");
          ids = matching(pattern, keys).map((i) => ids[i]);
        }
      } finally {
        this.#notify(notices);
      }
      return ids;
    }

    /**
     * The keys of live entries, all or those matching `pattern`, in the
     * documented order (see `entries`).
     */
    async keys(pattern) {
      return this.keysSync(pattern);
    }

    /** {@link keys} without the Promise. */
    keysSync(pattern) {
      const ids = this.#slots(pattern);
      const keys = [];
      for (let i = 0; i < ids.length; i++) {
        const key = this.#keys[ids[i]];
        if (key !== undefined) keys[keys.length] = key;
      }
      return keys;
    }

    /**
     * The live entries as [key, value] pairs, counting nothing and changing
     * no order. Order: LRUPolicy, most recently used first; TTLPolicy, most
     * recently set first; S3FIFOPolicy, the probationary queue newest first,
     * then the main queue newest first. The entries are those live when the
     * iteration starts; one removed meanwhile is skipped.
     */
    *entries() {
      for (const id of this.#slots(undefined)) {
        const key = this.#keys[id];
        if (key !== undefined) yield [key, this.#values[id]];
      }
    }

    /** The values of {@link entries}, in its order. */
    *values() {
      for (const [, value] of this.entries()) yield value;
    }

    [Symbol.iterator]() {
      return this.entries();
    }

    /** Removes every entry. */
    async clear() {
      this.clearSync();
    }

    /** {@link clear} without the Promise. */
    clearSync() {
      const now = this.#now();
      const store = this.#live(DEEP);
      const notices = this.#notices();
      try {
        this.#reclaim(now, notices);
        try {
          store.clear();
          this.#ringN = 0;
        } catch (error) {
          throw this.#failed(error);
        }
      } catch (error) {
        this.#notify(notices);
        throw error;
      }
      if (notices !== undefined) {
        this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
      }
      this.#forgetAll();
      this.#notify(notices);
    }

    /**
     * For the package's tests, not part of the API: where the two halves
     * disagree, as messages ([] when they agree). The engine's live entries
     * (after reclaiming the expired ones) must be exactly the slots this side
     * holds a key and a value for.
     */
    [AUDIT]() {
      const ids = this.#slots(undefined);
      const problems = [];
      if (ids.length !== this.#ids.size) problems.push(`the engine holds ${ids.length} entries, JS ${this.#ids.size}`);
      if (this.#store.live() !== ids.length) problems.push(`the engine counts ${this.#store.live()} live entries, lists ${ids.length}`);
      for (const id of ids) {
        const key = this.#keys[id];
        if (key === undefined) problems.push(`slot ${id}: no key on the JS side`);
        else if (this.#ids.get(key) !== id) problems.push(`slot ${id}: ${shownKey(key)} maps to ${this.#ids.get(key)}`);
        if (this.#values[id] === undefined) problems.push(`slot ${id}: no value on the JS side`);
      }
      this.#meta.forEach((_, id) => {
        if (this.#keys[id] === undefined) problems.push(`slot ${id}: metadata without an entry`);
      });
      this.#fresh.forEach((_, id) => {
        if (this.#keys[id] === undefined) problems.push(`slot ${id}: freshness without an entry`);
      });
      return problems;
    }

    /** How many live entries there are. */
    get size() {
      const now = this.#now();
      this.#live(DEEP);
      const notices = this.#notices();
      try {
        this.#reclaim(now, notices);
      } finally {
        this.#notify(notices);
      }
      return this.#ids.size;
    }

    /** The counters so far; `avgGetLatency` and `totalLoadTime` in milliseconds. */
    getStats() {
      this.#live();
      const [sets, deletes, evictions, expirations] = this.#counters;
      const hits = this.#hits;
      const misses = this.#misses;
      const gets = hits + misses;
      return {
        hits,
        misses,
        sets,
        deletes,
        evictions,
        expirations,
        hitRatio: gets === 0 ? 0 : hits / gets,
        avgGetLatency: this.#latencySamples === 0 ? 0 : this.#latencyTotal / this.#latencySamples,
        loads: this.#loadsRun,
        loadFailures: this.#loadFailures,
        totalLoadTime: this.#loadTime,
        staleHits: this.#staleHits,
        refreshes: this.#refreshes,
        refreshFailures: this.#refreshFailures,
      };
    }

    /** Sets every counter back to zero. */
    resetStats() {
      const store = this.#live();
      try {
        store.resetCounters();
      } catch (error) {
        throw this.#failed(error);
      }
      this.#zeroCounters();
      statsSince.set(this, Date.now());
    }

    /**
     * Ends the store: pending `getOrSet` calls reject with a CacheError and
     * their loaders' signals abort, entries are released without notices,
     * the wasm memory is freed, and every later call throws a CacheError.
     * Calling it again does nothing.
     */
    dispose() {
      if (this.#disposed) return;
      this.#disposed = true;
      const error = new CacheError("this MemoryStore was disposed");
      // Each load and refresh ends as failed: callers reject, and the
      // promise a refresh handed to waitUntil settles.
      this.#runs.forEach((run) => {
        run.controller.abort(error);
        run.end(false, error);
      });
      this.#flights.forEach((flight) => {
        this.#settle(flight.leader, false, error);
        flight.waiters.forEach((waiter) => this.#settle(waiter, false, error));
        flight.waiters.clear();
      });
      this.#flights.clear();
      this.#forgetAll();
      this.#values = [];
      this.#keys = [];
      this.#header = new U32(0);
      this.#version = -1;
      try {
        this.#store.free();
      } catch {
        // Left borrowed by a trap: the engine's memory is then leaked, not reused.
      }
    }
  }


  // `using store = new MemoryStore(...)` where the runtime has explicit resource management.
  if (typeof Symbol.dispose === "symbol") {
    Object.defineProperty(MemoryStore.prototype, Symbol.dispose, {
      value: function dispose() {
        this.dispose();
      },
      writable: true,
      configurable: true,
    });
  }

  return {
    MemoryStore,
    toOpenTelemetry,
    S3FIFOPolicy,
    LRUPolicy,
    TTLPolicy,
    ManualClock,
    CacheError,
    CacheKeyError,
    CachePatternError,
    CachePolicyError,
    CacheSerializationError,
    CacheBackendError,
    CacheReentrantLoadError,
    CacheTimeoutError,
  };
}
