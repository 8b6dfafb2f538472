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
  const { WasmStore, WasmPolicy, WasmClock } = wasm;

  // The hot calls take their key from a buffer in wasm memory (see
  // src/wasm/key_buffer.rs) and return FAILED (get) or 2 (the others) when
  // the core refused; the error is then fetched with takeError().
  const FAILED = wasm.failedMarker();
  const KEY_BUFFER = wasm.keyBuffer();
  const KEY_CAPACITY = wasm.keyBufferLen();
  const memory = wasm.wasmMemory();
  const encoder = new TextEncoder();
  // Whether `text` has no lone surrogate. String.prototype.isWellFormed is
  // ES2024 (Node 20); Node 18 and older browsers get the regular expression.
  const isWellFormed =
    typeof String.prototype.isWellFormed === "function"
      ? (text) => text.isWellFormed()
      : (text) => !/\p{Cs}/u.test(text);
  let keyBytes = new Uint8Array(0);

  /**
   * Writes `key` into the key buffer as UTF-8; its length in bytes, or -1 when
   * it does not fit or is not well-formed Unicode (see `unwritableKeyError`).
   */
  function writeKey(key) {
    const n = key.length;
    if (n > KEY_CAPACITY) return -1;
    let bytes = keyBytes;
    // A view goes empty when the memory grows; take a new one then.
    if (bytes.byteLength === 0) bytes = keyBytes = new Uint8Array(memory.buffer, KEY_BUFFER, KEY_CAPACITY);
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
  /** The backend failed (not thrown by MemoryStore; here for the shared API). */
  class CacheBackendError extends CacheError {}
  /** A `getOrSet` loader asked the same store for the key it is loading: it would wait on itself. */
  class CacheReentrantLoadError extends CacheError {}

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
  })) {
    Object.defineProperty(Class.prototype, "name", { value: name, writable: true, configurable: true });
    errorClasses.set(name, Class);
  }

  // The bindings throw plain `Error`s named after the class they stand for.
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

  function copyJson(value, depth, path) {
    switch (typeof value) {
      case "string":
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
   * Reads `set` options into `setOptions`, checking their types (the core
   * checks the TTL's value). Each option is read once, so a getter cannot
   * pass the check with one value and be stored with another; the result goes
   * to a shared object, not a fresh one, so `setSync` allocates nothing.
   */
  const setOptions = { ttl: undefined, metadata: undefined };
  function readSetOptions(options) {
    let ttl;
    let metadata;
    if (options !== undefined) {
      if (typeof options !== "object" || options === null) {
        throw new CachePolicyError(`set options must be an object like { ttl, metadata }, got ${describe(options)}`);
      }
      ttl = options.ttl;
      if (ttl !== undefined && typeof ttl !== "number") {
        throw new CachePolicyError(`ttl must be a number of seconds, got ${describe(ttl)}`);
      }
      metadata = options.metadata;
      if (metadata !== undefined) metadata = copyMetadata(metadata);
    }
    setOptions.ttl = ttl;
    setOptions.metadata = metadata;
  }

  function undefinedValueError(what) {
    return new CacheSerializationError(`${what} undefined: get() returns undefined for a miss (store null instead)`);
  }

  // The wasm side of each policy and clock, out of the users' reach.
  const wasmPolicies = new WeakMap();
  const wasmClocks = new WeakMap();

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
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.lru(maxSize, ttl, refreshOnGet)),
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
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.s3fifo(maxSize, ttl)),
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
      wasmPolicies.set(
        this,
        call(() => WasmPolicy.ttl(ttl, maxSize)),
      );
      this.ttl = ttl;
      this.maxSize = maxSize;
      Object.freeze(this);
    }
  }

  /** A clock that moves only when told to, for tests of expiry. */
  class ManualClock {
    constructor() {
      wasmClocks.set(this, new WasmClock());
    }

    /** Moves the clock forward by `ms` milliseconds. */
    advance(ms) {
      if (typeof ms !== "number" || !(ms >= 0) || ms === Infinity) {
        throw new RangeError(`ManualClock.advance takes a finite number of milliseconds >= 0, got ${describe(ms)}`);
      }
      wasmClocks.get(this).advance(ms);
    }
  }

  const STORE_OPTIONS = ["policy", "clock"];

  /**
   * A cache in this isolate's memory. Values are kept as they are, not
   * copied: `get` returns the very object that was `set`, as a Map does.
   */
  class MemoryStore {
    #store;
    // The getOrSet loads under way, by key: what makes concurrent calls share one.
    #flights = new Map();

    constructor(options) {
      const { policy, clock } = readOptions(options, "MemoryStore", STORE_OPTIONS);
      const wasmPolicy = wasmPolicies.get(policy);
      if (wasmPolicy === undefined) {
        throw new CachePolicyError(
          `MemoryStore needs { policy: new S3FIFOPolicy({ maxSize }) }, an LRUPolicy or a TTLPolicy, got policy ${describe(policy)}`,
        );
      }
      if (clock === undefined) {
        this.#store = new WasmStore(wasmPolicy);
      } else {
        const wasmClock = wasmClocks.get(clock);
        if (wasmClock === undefined) {
          throw new CachePolicyError(`clock must be a ManualClock, got ${describe(clock)}`);
        }
        this.#store = WasmStore.withClock(wasmPolicy, wasmClock);
      }
    }

    // The synchronous fast path; the async methods below are thin wrappers.

    /** The value under `key`, or undefined. */
    getSync(key) {
      if (typeof key !== "string") throw keyError(key);
      const len = placeKey(key);
      const value = this.#store.get(len);
      if (value === FAILED) throw translate(this.#store.takeError());
      return value;
    }

    /** Stores `value` under `key`. */
    setSync(key, value, options) {
      if (typeof key !== "string") throw keyError(key);
      if (value === undefined) throw undefinedValueError("cannot store");
      let ttl;
      let metadata;
      if (options !== undefined) {
        readSetOptions(options);
        ({ ttl, metadata } = setOptions);
      }
      const len = placeKey(key);
      this.#write(len, value, ttl, metadata);
    }

    /** Stores `value` under the key already in the key buffer. */
    #write(len, value, ttl, metadata) {
      const ok =
        metadata === undefined
          ? this.#store.set(len, value, ttl)
          : this.#store.setWithMetadata(len, value, ttl, metadata);
      if (!ok) throw translate(this.#store.takeError());
    }

    /** Removes `key`; whether a live entry was there. */
    deleteSync(key) {
      if (typeof key !== "string") throw keyError(key);
      const len = placeKey(key);
      const existed = this.#store.delete(len);
      if (existed > 1) throw translate(this.#store.takeError());
      return existed === 1;
    }

    /** Whether a live entry is under `key`; counts no hit or miss. */
    hasSync(key) {
      if (typeof key !== "string") throw keyError(key);
      const len = placeKey(key);
      const found = this.#store.has(len);
      if (found > 1) throw translate(this.#store.takeError());
      return found === 1;
    }

    async get(key) {
      return this.getSync(key);
    }

    /**
     * The live value under `key`, or else the value of `loader()` (sync or
     * async), stored with `options` and returned. Concurrent calls for a key
     * being loaded wait for that one load; if it fails, they all reject with
     * its error, nothing is stored, and the next call loads again.
     */
    async getOrSet(key, loader, options) {
      if (typeof key !== "string") throw keyError(key);
      if (typeof loader !== "function") {
        throw new TypeError(`getOrSet's loader must be a function, got ${describe(loader)}`);
      }
      let ttl;
      let metadata;
      if (options !== undefined) {
        readSetOptions(options);
        ({ ttl, metadata } = setOptions);
      }
      const len = placeKey(key);
      const value = this.#store.checkedGet(len, ttl);
      if (value === FAILED) throw translate(this.#store.takeError());
      if (value !== undefined) return value;
      let flight = this.#flights.get(key);
      if (flight === undefined) {
        flight = this.#load(key, loader, ttl, metadata);
        this.#flights.set(key, flight);
      }
      return flight;
    }

    /** Runs `loader` once for `key`, stores its value, and leaves #flights however it ends. */
    async #load(key, loader, ttl, metadata) {
      const store = this.#store;
      const started = store.loadStarted();
      let stored = false;
      try {
        // Yield first, so the caller has put this load in #flights before the
        // loader runs: a loader that throws at once still finds it to remove.
        await undefined;
        const value = await loader();
        if (value === undefined) throw undefinedValueError("the loader returned");
        // Other calls used the key buffer while the loader ran.
        this.#write(placeKey(key), value, ttl, metadata);
        stored = true;
        return value;
      } finally {
        // In the same step as the write: no caller sees the value missing and no load under way.
        this.#flights.delete(key);
        store.recordLoad(stored, started);
      }
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
      if (!isWellFormed(key)) throw notUnicode(CacheKeyError, "key", key);
      return call(() => this.#store.getMetadata(key));
    }

    /** Merges `metadata` into the entry's (top-level keys replaced); whether the entry exists. */
    async updateMetadata(key, metadata) {
      if (typeof key !== "string") throw keyError(key);
      if (!isWellFormed(key)) throw notUnicode(CacheKeyError, "key", key);
      const copy = copyMetadata(metadata);
      return call(() => this.#store.updateMetadata(key, copy));
    }

    /** Removes the live entries whose keys match the Redis glob `pattern`; how many. */
    async invalidate(pattern) {
      if (typeof pattern !== "string") throw patternError(pattern);
      if (!isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
      return call(() => this.#store.invalidate(pattern));
    }

    /** The keys of live entries, all or those matching `pattern`. */
    async keys(pattern) {
      if (pattern !== undefined && typeof pattern !== "string") throw patternError(pattern);
      if (pattern !== undefined && !isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
      return call(() => this.#store.keys(pattern));
    }

    /** Removes every entry. */
    async clear() {
      this.#store.clear();
    }

    /** How many live entries there are. */
    get size() {
      return this.#store.size();
    }

    /** The counters so far; `avgGetLatency` and `totalLoadTime` in milliseconds. */
    getStats() {
      const [
        hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency,
        loads, loadFailures, totalLoadTime,
      ] = this.#store.stats();
      return {
        hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency,
        loads, loadFailures, totalLoadTime,
      };
    }

    /** Sets every counter back to zero. */
    resetStats() {
      this.#store.resetStats();
    }
  }

  return {
    MemoryStore,
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
  };
}
