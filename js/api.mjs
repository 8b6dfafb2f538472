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

  // The calls that name a key take it from a buffer in wasm memory (see
  // src/wasm/key_buffer.rs); they report refusal in their return value (2,
  // or -2 for those returning a slot id) and the error is then fetched, as
  // text, with takeError(). Entries are addressed by slot id: values live
  // here, in arrays indexed by it.
  const FAILED = 2;
  const NONE = -1;
  const REFUSED = -2;
  const KEY_BUFFER = wasm.keyBuffer();
  const REMOVED_BUFFER = wasm.removedBuffer();
  const REMOVED_LEN = wasm.removedBufferLen();
  const KEY_CAPACITY = wasm.keyBufferLen();
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
  const { RuntimeError } = WebAssembly;
  const enqueue = queueMicrotask;
  const memoryBuffer = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, "buffer").get;
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
  const NO_ARGS = [];
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
  const HEADROOM = 4;
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

  let keyBytes = new U8(0);
  let removedWords = new U32(0);

  /** The removed buffer: [count, id, reason, id, reason, ...] of the last call that stored. */
  function removedView() {
    // A view goes empty when the memory grows; take a new one then.
    if (removedWords.length === 0) removedWords = new U32(apply(memoryBuffer, memory, NO_ARGS), REMOVED_BUFFER, REMOVED_LEN);
    return removedWords;
  }

  /** The `n` slot ids in `store`'s report. */
  function reportOf(store, n) {
    return new U32(apply(memoryBuffer, memory, NO_ARGS), store.report(), n);
  }

  // Why an entry left, by the engine's reason code (src/wasm/mod.rs).
  const REASONS = ["evicted", "expired", "deleted", "replaced", "invalidated", "cleared"];
  const EXPIRED = 1;
  const DELETED = 2;
  const REPLACED = 3;
  const INVALIDATED = 4;
  const CLEARED = 5;

  /**
   * Writes `key` into the key buffer as UTF-8; its length in bytes, or -1 when
   * it does not fit or is not well-formed Unicode (see `unwritableKeyError`).
   */
  function writeKey(key) {
    const n = key.length;
    if (n > KEY_CAPACITY) return -1;
    let bytes = keyBytes;
    // A view goes empty when the memory grows; take a new one then.
    if (bytes.byteLength === 0) bytes = keyBytes = new U8(apply(memoryBuffer, memory, NO_ARGS), KEY_BUFFER, KEY_CAPACITY);
    let i = 0;
    for (; i < n; i++) {
      const code = key.charCodeAt(i);
      if (code > 0x7f) break;
      bytes[i] = code;
    }
    if (i === n) return n;
    // A lone surrogate has no UTF-8 form: encodeInto would write U+FFFD and
    // two different keys would become one.
    if (!isWellFormed(key)) return -1;
    const { read, written } = encoder.encodeInto(key.slice(i), bytes.subarray(i));
    return read === n - i ? i + written : -1;
  }

  /** Writes `key` into the key buffer; its length in bytes. Throws when it cannot. */
  function placeKey(key) {
    const len = writeKey(key);
    if (len < 0) throw unwritableKeyError(key);
    return len;
  }

  /**
   * Checks `key` as the core would, without writing it anywhere, for the
   * calls that answer from the JS side (a miss needs no key in wasm).
   */
  function checkKey(key) {
    if (typeof key !== "string") throw keyError(key);
    // Up to 2,730 UTF-16 units a well-formed key has at most 8,190 bytes of UTF-8.
    if (key.length !== 0 && key.length <= 2730 && isWellFormed(key)) return;
    if (placeKey(key) === 0) throw translate(wasm.keyError(key));
  }

  /** Why `writeKey` refused `key`: a lone surrogate, or the core's error for a key too long. */
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

  /** A store call's refusal, handed back as "ClassName:message" text. */
  function fromText(text) {
    const colon = text.indexOf(":");
    const Class = errorClasses.get(text.slice(0, colon)) ?? CacheError;
    return new Class(text.slice(colon + 1));
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

  const MAX_METADATA_DEPTH = 64;

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

  /**
   * `metadata` as the text the store takes (the format is described in
   * src/wasm/metadata.rs): of a plain copy, so no getter runs twice.
   */
  function metadataText(metadata) {
    const parts = [];
    encodeJson(copyMetadata(metadata), parts);
    return parts.join("");
  }

  // Numbers cross as the 16 hex digits of their f64 bits: no float is
  // parsed or printed in wasm, and every double comes back exactly.
  const numberView = new DataView(new ArrayBuffer(8));

  function encodeJson(value, parts) {
    switch (typeof value) {
      case "string":
        parts[parts.length] = `s${value.length};${value}`;
        return;
      case "number": {
        numberView.setFloat64(0, value);
        const high = numberView.getUint32(0).toString(16).padStart(8, "0");
        parts[parts.length] = `n${high}${numberView.getUint32(4).toString(16).padStart(8, "0")}`;
        return;
      }
      case "boolean":
        parts[parts.length] = value ? "t" : "f";
        return;
    }
    if (value === null) {
      parts[parts.length] = "z";
    } else if (Array.isArray(value)) {
      parts[parts.length] = `a${value.length};`;
      for (let i = 0; i < value.length; i++) encodeJson(value[i], parts);
    } else {
      const keys = Object.keys(value);
      parts[parts.length] = `o${keys.length};`;
      for (const key of keys) {
        parts[parts.length] = `s${key.length};${key}`;
        encodeJson(value[key], parts);
      }
    }
  }

  /** Reads metadata the store wrote in that format. */
  function decodeJson(text) {
    let at = 0;
    const count = () => {
      const end = text.indexOf(";", at);
      const n = Number(text.slice(at, end));
      at = end + 1;
      return n;
    };
    const string = () => {
      const n = count();
      at += n;
      return text.slice(at - n, at);
    };
    const value = () => {
      const tag = text[at++];
      switch (tag) {
        case "z":
          return null;
        case "t":
          return true;
        case "f":
          return false;
        case "n":
          numberView.setUint32(0, Number.parseInt(text.slice(at, at + 8), 16));
          numberView.setUint32(4, Number.parseInt(text.slice(at + 8, at + 16), 16));
          at += 16;
          return numberView.getFloat64(0);
        case "s":
          return string();
        case "a": {
          const n = count();
          const out = new Array(n);
          for (let i = 0; i < n; i++) out[i] = value();
          return out;
        }
        default: {
          const n = count();
          const out = {};
          for (let i = 0; i < n; i++) {
            at++; // the key's "s"
            const key = string();
            // defineProperty, not assignment: a key "__proto__" stays data.
            Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
          }
          return out;
        }
      }
    };
    return value();
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
        if (depth >= MAX_METADATA_DEPTH) {
          throw notJson(path, `nesting deeper than ${MAX_METADATA_DEPTH} levels (is it circular?)`);
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
  const setOptions = { ttl: undefined, json: undefined };
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
      if (metadata !== undefined) metadata = metadataText(metadata);
    }
    setOptions.ttl = ttl;
    setOptions.json = metadata;
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
      json: undefined,
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
    if (metadata !== undefined) o.json = metadataText(metadata);
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
  // The store whose placement a stack overflow cut short, if any. The
  // removed buffer its set filled is the wasm instance's, shared by every
  // store: another store's call would overwrite it, so any store's next
  // call first lets this one finish (`#live`).
  let cutOwner;

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
      this.#store = new WasmStore(wasmPolicy);
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
      if (cutOwner !== undefined && cutOwner !== this) cutOwner.#repair();
      if (this.#pending) this.#repair();
      return this.#store;
    }

    /**
     * After a failed call. A trap inside the engine (a stack overflow deep
     * in wasm, memory exhausted where nothing reserved it) may have stopped
     * it half-way through an update, an entry inserted and not linked, a
     * table mid-resize: nothing it holds can be trusted, so the store starts
     * again empty (`#reset`). Otherwise the engine is as it was, and only a
     * placement cut short after it stored an entry is finished. Done here,
     * by the next call, rather than in the failed one: that one may have
     * no stack left to ask the engine with. If this fails too, the next call
     * tries again.
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
      try {
        broken.free();
      } catch {
        // Still borrowed by the trapped call: wasm-bindgen keeps it, unfreed.
      }
      statsSince.set(this, Date.now());
      this.#cutKey = undefined;
      this.#cutValue = undefined;
      if (cutOwner === this) cutOwner = undefined;
      const notices = this.#notices();
      if (notices !== undefined) this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
      this.#ids.clear();
      this.#values.length = 0;
      this.#keys.length = 0;
      // Their placeholders were in the old engine; token 0 is never issued.
      this.#runs.forEach((run) => {
        run.token = 0;
      });
      this.#pending = false;
      try {
        this.#notify(notices);
      } catch (error) {
        reportLater(error);
      }
    }

    #refused() {
      return fromText(this.#store.takeError());
    }

    /**
     * Forgets slot `id` (the engine removed its entry) and, with a listener,
     * queues (value, key, reason) on `notices` for `#notify`.
     */
    #drop(id, reason, notices) {
      const key = this.#keys[id];
      const value = this.#values[id];
      if (key === undefined) return;
      if (this.#ids.get(key) === id) this.#ids.delete(key);
      this.#values[id] = undefined;
      this.#keys[id] = undefined;
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

    /** Forgets the ids of the entries that expired by `now`. */
    #reclaim(now, notices) {
      let n;
      try {
        n = this.#store.reclaim(now);
      } catch (error) {
        throw this.#failed(error);
      }
      if (n === 0) return;
      const ids = reportOf(this.#store, n);
      for (let i = 0; i < n; i++) this.#drop(ids[i], EXPIRED, notices);
    }

    // The synchronous fast path; the async methods below are thin wrappers.

    /** The value under `key`, or undefined. */
    getSync(key) {
      if (--this.#untilTimed === 0) return this.#timedGet(key);
      try {
        if (this.#pending) this.#live();
        const now = this.#expiring ? this.#now() : 0;
        const id = this.#ids.get(key);
        if (id !== undefined && this.#store.touch(id, now)) return this.#values[id];
        return this.#missed(key, id);
      } catch (error) {
        throw this.#failed(error);
      }
    }

    // One get in 32 is timed (on the store's clock) for `avgGetLatency`.
    #untilTimed = 32;

    #timedGet(key) {
      this.#untilTimed = 32;
      const started = this.#now();
      const value = this.getSync(key);
      try {
        if (!this.#disposed) this.#store.latency(this.#now() - started);
      } catch (error) {
        throw this.#failed(error);
      }
      return value;
    }

    #missed(key, id) {
      if (id !== undefined) {
        // It expired: the engine reclaimed it and counted the miss.
        const notices = this.#notices();
        this.#drop(id, EXPIRED, notices);
        this.#notify(notices);
        return undefined;
      }
      checkKey(key);
      if (this.#disposed) this.#live();
      this.#store.miss();
      return undefined;
    }

    /** Stores `value` under `key`. */
    setSync(key, value, options) {
      if (typeof key !== "string") throw keyError(key);
      if (value === undefined) throw undefinedValueError("cannot store");
      let ttl;
      let json;
      if (options !== undefined) {
        readSetOptions(options);
        ({ ttl, json } = setOptions);
      }
      this.#put(key, value, ttl, json);
    }

    /**
     * Stores `value` under `key` (checked a string) with a ttl and metadata
     * text; throws if refused. `later`: see `#notify`.
     */
    #put(key, value, ttl, json, later) {
      if (ttl !== undefined) this.#expiring = true;
      const now = this.#time();
      // Nothing of the caller's runs from here to the end of the call into
      // wasm. The headroom probe comes first: a stack overflow in `#place`,
      // after the engine stored the entry, would leave the engine holding an
      // entry this side has no value for (taking room, missed by getSync).
      const store = this.#live();
      const len = placeKey(key);
      let id;
      try {
        id = json === undefined ? store.set(len, ttl, now) : store.setWithMetadata(len, ttl, now, json);
      } catch (error) {
        unwind();
        throw this.#failed(error);
      }
      if (id < 0) throw this.#refused();
      // No call between the engine's and this `try` (a first call compiles).
      let notices;
      try {
        notices = this.#place(id, key, value);
      } catch (error) {
        // Cut short past the probe (V8 may need far more stack to compile or
        // tier up a function than the probe reserves): the engine holds the
        // entry, so the next call finishes placing it (`#finishPlacing`)
        // before anything reads either side. Plain field writes: no call.
        this.#cutId = id;
        this.#cutValue = value;
        this.#cutKey = key;
        this.#pending = true;
        cutOwner = this;
        throw error;
      }
      this.#notify(notices, later);
    }

    // An entry the engine stored whose placement here was cut short (see
    // `#put`): its slot, value and key (undefined when there is none).
    #cutId = 0;
    #cutValue;
    #cutKey;

    /**
     * Finishes placing the entry a stack overflow cut short, before any
     * other call: the removed buffer still holds that set's report, since
     * only the calls that store write it, and each of them comes here first.
     * Parts of `#place` already done are skipped (`#drop` of a forgotten id
     * does nothing). Its notices, if any, go out as the set's would have.
     */
    #finishPlacing() {
      // Forgotten only once done: cut short again, the next call retries.
      const notices = this.#place(this.#cutId, this.#cutKey, this.#cutValue);
      this.#cutKey = undefined;
      this.#cutValue = undefined;
      if (cutOwner === this) cutOwner = undefined;
      // The cut set already threw to its caller, and this may be another
      // store's call: a listener's error is reported, not thrown here.
      this.#notify(notices, true);
    }

    /** `store[method]()`, for the calls with no argument and no hurry. */
    #engineCall(store, method) {
      try {
        return store[method]();
      } catch (error) {
        throw this.#failed(error);
      }
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
     * what the store removed for it: the removal notices, for `#notify`.
     */
    #place(id, key, value) {
      const removed = removedView();
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
      return notices;
    }

    /** Removes `key`; whether a live entry was there. */
    deleteSync(key) {
      if (typeof key !== "string") throw keyError(key);
      const now = this.#time();
      const store = this.#live();
      let existed;
      try {
        existed = store.delete(placeKey(key), now);
      } catch (error) {
        throw this.#failed(error);
      }
      if (existed === FAILED) throw this.#refused();
      const id = this.#ids.get(key);
      if (id !== undefined) {
        const notices = this.#notices();
        this.#drop(id, existed === 1 ? DELETED : EXPIRED, notices);
        this.#notify(notices);
      }
      return existed === 1;
    }

    /** The slot of the live entry under `key`, without counting or reordering; undefined if none. */
    #peekSlot(key) {
      if (this.#pending) this.#live();
      const now = this.#time();
      const id = this.#ids.get(key);
      if (id === undefined) {
        checkKey(key);
        this.#live();
        return undefined;
      }
      let alive;
      try {
        alive = this.#store.alive(id, now);
      } catch (error) {
        throw this.#failed(error);
      }
      if (alive) return id;
      const notices = this.#notices();
      this.#drop(id, EXPIRED, notices);
      this.#notify(notices);
      return undefined;
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
      const store = this.#live();
      let ms;
      try {
        ms = store.remainingTtl(placeKey(key), now);
      } catch (error) {
        throw this.#failed(error);
      }
      if (ms === -2) throw this.#refused();
      if (ms >= 0) return ms / 1000;
      this.#forget(key);
      return undefined;
    }

    /** The engine no longer has `key` (it expired): forget its slot here too. */
    #forget(key) {
      const id = this.#ids.get(key);
      if (id === undefined) return;
      const notices = this.#notices();
      this.#drop(id, EXPIRED, notices);
      this.#notify(notices);
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
      const store = this.#live();
      const len = placeKey(key);
      let id;
      let freshness = 0;
      try {
        if (o.grace === undefined) {
          id = store.checkedGet(len, o.ttl, now);
        } else {
          // The slot id times 4 plus how fresh the entry is: one crossing.
          const found = store.getFresh(len, now);
          id = found < 0 ? found : Math.floor(found / 4);
          freshness = found < 0 ? 0 : found % 4;
        }
      } catch (error) {
        throw this.#failed(error);
      }
      if (id === REFUSED) throw this.#refused();
      if (id >= 0) {
        const value = this.#values[id];
        // Stale, and this call is the one to refresh it (the engine counted it).
        if (freshness === 2) this.#refresh(key, loader, o);
        return value;
      }
      this.#forget(key);
      return this.#join(key, loader, o);
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
      try {
        if (this.#pending) this.#live();
        if (run.token !== undefined) this.#store.endLoad(placeKey(flight.key), run.token);
      } catch (error) {
        // The placeholder stays (a trap, or no stack): a later write of the key clears it.
        this.#failed(error);
      }
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
              const ours = this.#store.endLoad(placeKey(key), run.token);
              if (ok && ours) this.#put(key, result, o.ttl, o.json, true);
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

    /** Ends a stale-while-revalidate load or refresh in the engine (which stores it if its placeholder stands). */
    #finishRefresh(key, token, ok, value, o, background) {
      const now = this.#now();
      // As every call that may write the removed buffer: a store whose
      // placement was cut short finishes first (see `cutOwner`).
      if (this.#pending || (cutOwner !== undefined && cutOwner !== this)) this.#live();
      const store = this.#store;
      let id;
      try {
        id = store.finishRefresh(placeKey(key), token, ok, now, o.ttl, o.grace, o.retryAfter, o.json, background);
      } catch (error) {
        throw this.#failed(error);
      }
      if (id === REFUSED) throw this.#refused();
      if (id < 0) return;
      let notices;
      try {
        notices = this.#place(id, key, value);
      } catch (error) {
        // As in `#put`.
        this.#cutId = id;
        this.#cutValue = value;
        this.#cutKey = key;
        this.#pending = true;
        cutOwner = this;
        throw error;
      }
      // A load's callers get its value; nobody awaits a refresh.
      this.#notify(notices, true);
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
        try {
          if (!this.#disposed) this.#store.recordLoad(ok, this.#now() - started);
        } catch (error) {
          this.#failed(error); // only a count is lost
        }
        finish(ok, result, run);
      });
      this.#runs.add(run);
      try {
        run.token = this.#store.beginLoad(placeKey(key));
      } catch (error) {
        this.#endRun(run);
        throw this.#failed(error);
      }
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
        this.#store.endLoad(placeKey(key), run.token);
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
        // It could not start: the engine's refresh ends as a failed one
        // (backing off), or the key would stay "refreshing" until its grace
        // ran out. The engine ends a refresh only under its own load's
        // token, and any the failed start took is gone: a fresh one. (An
        // older load of the key lost its placeholder when the entry it
        // found was stored.)
        try {
          const token = this.#store.beginLoad(placeKey(key));
          this.#finishRefresh(key, token, false, undefined, o, true);
        } catch (trap) {
          this.#failed(trap); // the next call repairs the engine
        }
        done();
        throw error;
      }
      o.waitUntil?.(finished);
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
      if (typeof key !== "string") throw keyError(key);
      const now = this.#now();
      const store = this.#live();
      let json;
      try {
        json = store.getMetadata(placeKey(key), now);
      } catch (error) {
        throw this.#failed(error);
      }
      if (json === undefined) {
        const error = store.takeError();
        if (error !== undefined) throw fromText(error);
        this.#forget(key);
        return undefined;
      }
      return decodeJson(json);
    }

    /** Merges `metadata` into the entry's (top-level keys replaced); whether the entry exists. */
    async updateMetadata(key, metadata) {
      if (typeof key !== "string") throw keyError(key);
      const json = metadataText(metadata);
      const now = this.#now();
      const store = this.#live();
      let found;
      try {
        found = store.updateMetadata(placeKey(key), now, json);
      } catch (error) {
        throw this.#failed(error);
      }
      if (found === FAILED) throw this.#refused();
      if (found === 0) this.#forget(key);
      return found === 1;
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
      this.#reclaim(now, notices);
      let n;
      try {
        n = store.invalidate(pattern, now);
      } catch (error) {
        const failure = this.#failed(error);
        this.#notify(notices);
        throw failure;
      }
      if (n < 0) {
        this.#notify(notices);
        throw this.#refused();
      }
      const ids = reportOf(store, n);
      for (let i = 0; i < n; i++) this.#drop(ids[i], INVALIDATED, notices);
      this.#notify(notices);
      return n;
    }

    /** The slot ids of the live entries, all or those matching `pattern`, in the documented order. */
    #slots(pattern) {
      if (pattern !== undefined && typeof pattern !== "string") throw patternError(pattern);
      if (pattern !== undefined && !isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
      const now = this.#now();
      const store = this.#live(DEEP);
      const notices = this.#notices();
      this.#reclaim(now, notices);
      let n;
      try {
        n = store.slots(pattern, now);
      } catch (error) {
        const failure = this.#failed(error);
        this.#notify(notices);
        throw failure;
      }
      const ids = n < 0 ? undefined : Array.from(reportOf(store, n));
      this.#notify(notices);
      if (ids === undefined) throw this.#refused();
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
      this.#reclaim(now, notices);
      try {
        store.clear(now);
      } catch (error) {
        const failure = this.#failed(error);
        this.#notify(notices);
        throw failure;
      }
      if (notices !== undefined) {
        this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
      }
      this.#ids.clear();
      this.#values.length = 0;
      this.#keys.length = 0;
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
      for (const id of ids) {
        const key = this.#keys[id];
        if (key === undefined) problems.push(`slot ${id}: no key on the JS side`);
        else if (this.#ids.get(key) !== id) problems.push(`slot ${id}: ${shownKey(key)} maps to ${this.#ids.get(key)}`);
        if (this.#values[id] === undefined) problems.push(`slot ${id}: no value on the JS side`);
      }
      return problems;
    }

    /** How many live entries there are. */
    get size() {
      const now = this.#now();
      this.#live(DEEP);
      const notices = this.#notices();
      this.#reclaim(now, notices);
      this.#notify(notices);
      return this.#ids.size;
    }

    /** The counters so far; `avgGetLatency` and `totalLoadTime` in milliseconds. */
    getStats() {
      const [
        hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency,
        loads, loadFailures, totalLoadTime, staleHits, refreshes, refreshFailures,
      ] = this.#engineCall(this.#live(), "stats");
      return {
        hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency,
        loads, loadFailures, totalLoadTime, staleHits, refreshes, refreshFailures,
      };
    }

    /** Sets every counter back to zero. */
    resetStats() {
      this.#engineCall(this.#live(), "resetStats");
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
      if (cutOwner === this) cutOwner = undefined;
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
      this.#ids.clear();
      this.#values = [];
      this.#keys = [];
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
