// js/redis/1-boundary.js: a part of pepperpy-caching/redis (scripts/build-entry.cjs
// concatenates js/redis/*.js into one module, after `main`, the package's
// default entry, and `wasm`, the bindings of src/wasm_redis/).
//
// What the JS RedisStore takes from Rust, read once: the limits, the Lua
// scripts with their SHA1s (src/remote/scripts.rs), the counter table, and
// the error classes, which are the main entry's own (instanceof works
// across both entries).

const [
  MAX_KEY_LEN,
  MAX_NESTING,
  MAX_BUCKETS,
  SAMPLE_EVERY,
  MAX_TAGS,
  MAX_TAG_LEN,
  MAX_INVALIDATE_TAGS,
  // MAX_PATTERN_LEN: a pattern's length is checked by wasm.checkPattern (checkedPattern), not here.
  ,
  DEFAULT_BUCKETS,
  LEASE_MS,
  SLACK_MS,
  LATENCY_SAMPLE_EVERY,
  // The walks' and loads' numbers (src/remote/mod.rs), as the Rust store uses them.
  SCAN_BATCH,
  UPDATE_ATTEMPTS,
  SIZE_CONCURRENCY,
  SLOT_LIST_MAX,
  POLL_FIRST_MS,
  POLL_MAX_MS,
  SCRIPT_CHUNK,
  DELETE_CHUNK,
  MAX_IDLE_MS,
  // How many characters of a key a message shows (js/api/1-shared.js shownKey).
  SHOWN_CHARS,
  // The code point no key and no prefix may hold (U+FFFF, the internal keys' marker; js/api/1-shared.js).
  RESERVED_KEY_CODE,
] = wasm.limits();
const SCAN_COUNT = String(SCAN_BATCH);
const RESERVED_KEY_CHAR = String.fromCharCode(RESERVED_KEY_CODE);
// The idle rule's limit in the MemoryStore's unit (js/api/1-shared.js idleSeconds).
const MAX_IDLE_SECONDS = MAX_IDLE_MS / 1000;

/** The scripts by name: { name, source, sha } (what a Conn's `script` takes). */
const SCRIPTS = Object.create(null);
for (const [name, source, sha] of wasm.scripts()) SCRIPTS[name] = Object.freeze({ name, source, sha });

/** getStats's figures, in the core's order, by their JS names. */
const COUNTER_NAMES = wasm
  .counters()
  .trimEnd()
  .split("\n")
  .map((line) => line.split("\t")[0].replace(/_([a-z])/g, (_, c) => c.toUpperCase()));

const {
  CacheError,
  CacheKeyError,
  CachePatternError,
  CachePolicyError,
  CacheSerializationError,
  CacheBackendError,
  CacheReentrantLoadError,
  CacheTimeoutError,
  LRUPolicy,
  TTLPolicy,
  S3FIFOPolicy,
} = main;

// The main entry's error classes by name: what the wasm names its errors after.
const errorClasses = new Map();
for (const [name, value] of Object.entries(main)) {
  if (typeof value === "function" && (value === CacheError || value.prototype instanceof CacheError)) {
    errorClasses.set(name, value);
  }
}

/** An error thrown by the wasm (an `Error` named after its class) as that class. */
function translate(error) {
  if (error instanceof Error && !(error instanceof CacheError)) {
    const Class = errorClasses.get(error.name);
    if (Class !== undefined) return new Class(error.message);
  }
  return error;
}

/** Runs a call into the wasm, its errors as the main entry's classes. */
function core(thunk) {
  try {
    return thunk();
  } catch (error) {
    throw translate(error);
  }
}


/** A key checked by the rules every store shares (type and Unicode here, the rest in Rust). */
function checkedKey(key) {
  if (typeof key !== "string") throw new CacheKeyError(`a key must be a string, got ${describe(key)}`);
  if (!isWellFormed(key)) throw notUnicode(CacheKeyError, "key", key);
  // U+FFFF (the internal keys' marker): the core's verdict and message.
  if (holdsReserved(key)) core(() => wasm.checkKey(key));
  return key;
}

function checkedPattern(pattern) {
  if (typeof pattern !== "string") throw new CachePatternError(`a pattern must be a string, got ${describe(pattern)}`);
  if (!isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
  core(() => wasm.checkPattern(pattern));
  return pattern;
}

/** A failure of the client or the server, as CacheBackendError (a CacheError passes through). */
function backendError(what, error) {
  if (error instanceof CacheError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new CacheBackendError(`${what} on Redis: ${message}`, { cause: error });
}

/** Whether `error` is Redis's WRONGTYPE reply (a load's placeholder where a string was read). */
function isWrongType(error) {
  return error instanceof Error && error.redisError === true && String(error.message).startsWith("WRONGTYPE");
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** A reply's bytes as text (a cursor, a type name). */
function text(reply) {
  if (reply === null || reply === undefined) return "";
  return typeof reply === "string" ? reply : decoder.decode(reply);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A token no other lock of any process carries: unique, not secret. */
function newToken() {
  const c = globalThis.crypto;
  if (c !== undefined && typeof c.randomUUID === "function") return c.randomUUID().replaceAll("-", "");
  let out = "";
  for (let i = 0; i < 4; i++) out += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  return out;
}

const now = typeof performance === "object" && typeof performance.now === "function" ? () => performance.now() : () => Date.now();
