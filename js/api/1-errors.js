// js/api/1-errors.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// The error classes (from the core's error table) and the messages the JS
// layer words itself.

// The classes are made from the core's error table (src/wasm/tables.rs
// `tables`: the JS class of each ErrorKind), so the names the wasm
// exports throw with and the classes here cannot differ. `CacheError` is the
// base of them all; index.d.ts declares each class with its documentation
// (tests/js/error-table.test.mjs checks it against the table).
const errorClasses = new Map();

function errorClass(name, Base) {
  const Class = class extends Base {};
  // Names set here, not taken from `new.target.name`, so minifiers cannot rename them.
  Object.defineProperty(Class, "name", { value: name, configurable: true });
  Object.defineProperty(Class.prototype, "name", { value: name, writable: true, configurable: true });
  errorClasses.set(name, Class);
  return Class;
}

const CacheError = errorClass("CacheError", Error);
// One line per ErrorKind: its class.
for (const name of ERROR_TEXT.trimEnd().split("\n")) {
  if (!errorClasses.has(name)) errorClass(name, CacheError);
}

// The classes this layer throws itself, by name (a name the table lacks fails at load).
function tableClass(name) {
  const Class = errorClasses.get(name);
  if (Class === undefined) throw new Error(`pepperpy-caching: the core's error table has no ${name}`);
  return Class;
}
const CacheKeyError = tableClass("CacheKeyError");
const CachePatternError = tableClass("CachePatternError");
const CachePolicyError = tableClass("CachePolicyError");
const CacheSerializationError = tableClass("CacheSerializationError");
const CacheBackendError = tableClass("CacheBackendError");
const CacheReentrantLoadError = tableClass("CacheReentrantLoadError");
const CacheTimeoutError = tableClass("CacheTimeoutError");
const CacheEntryTooLargeError = tableClass("CacheEntryTooLargeError");

// The policy constructors throw plain `Error`s named after the class they stand for.
function translate(error) {
  // It came from a call into wasm: the catch that calls this set `stackMoved` first.
  stackMoved = true;
  if (error instanceof Error && !(error instanceof CacheError)) {
    const Class = errorClasses.get(error.name);
    if (Class !== undefined) return new Class(error.message);
  }
  return error;
}


function keyError(key) {
  return new CacheKeyError(`a key must be a string, got ${describe(key)}`);
}

function patternError(pattern) {
  return new CachePatternError(`a pattern must be a string, got ${describe(pattern)}`);
}

function reentrantError(key) {
  return new CacheReentrantLoadError(
    `the loader of ${shownKey(key)} asked for ${shownKey(key)} itself: a load cannot wait on its own result`,
  );
}

function timeoutError(key, what, after) {
  return new CacheTimeoutError(`the load of ${shownKey(key)} took longer than its ${what} of ${after} s`);
}

function tooLargeError(key, size, maxSize) {
  return new CacheEntryTooLargeError(
    `the entry ${shownKey(key)} has a size of ${size}, more than the store's maxSize of ${maxSize}`,
  );
}

function unsizedError(what) {
  return new CachePolicyError(`${what} needs the store's maxSize`);
}

/** `size` if it is a positive (safe) integer; else a CachePolicyError naming `what`. */
function positiveSize(size, what) {
  if (Number.isSafeInteger(size) && size > 0) return size;
  throw new CachePolicyError(`${what} must be a positive integer, got ${describe(size)}`);
}

function noRoom() {
  return new CacheBackendError("wasm memory is exhausted: the call changed nothing");
}
