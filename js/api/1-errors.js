// js/api/1-errors.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// The error classes (their names are the core's, src/wasm/errors.rs) and the
// messages the JS layer words itself.

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
  // It came from a call into wasm (see wasmThrew).
  wasmThrew();
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

function undefinedValueError(what) {
  return new CacheSerializationError(`${what} undefined: get() returns undefined for a miss (store null instead)`);
}

function reentrantError(key) {
  return new CacheReentrantLoadError(
    `the loader of ${shownKey(key)} asked for ${shownKey(key)} itself: a load cannot wait on its own result`,
  );
}

function timeoutError(key, what, after) {
  return new CacheTimeoutError(`the load of ${shownKey(key)} took longer than its ${what} of ${after} s`);
}

function noRoom() {
  return new CacheBackendError("wasm memory is exhausted: the call changed nothing");
}
