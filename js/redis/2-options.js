// js/redis/2-options.js: a part of pepperpy-caching/redis (see 1-boundary.js).
//
// Options objects, read once each, unknown names refused, with the JS
// MemoryStore's names, units (seconds), rules and error classes: the
// rules both stores share (readOptions, seconds, idleSeconds, readTags)
// are js/api/1-shared.js's; Redis's own (whole ms that fit its clock) are
// Rust's (wasm.ttlMillis, wasm.idleMillis, wasm.encode).

/** A positive, finite number of seconds under `name` (the MemoryStore's rules) as whole ms for Redis, or undefined. */
function millis(value, name) {
  if (value === undefined) return undefined;
  return checkedMillis(wasm.ttlMillis(seconds(value, name)), value, name);
}

/** The wasm's milliseconds of `value` seconds, or the error its code stands for (worded here, in JS). */
function checkedMillis(ms, value, name) {
  if (ms >= 0) return ms;
  if (ms === -1) {
    throw new CachePolicyError(`invalid policy: ${name} must be at least one nanosecond (1e-9 seconds), got ${value}`);
  }
  if (ms === -3) throw new CachePolicyError(`invalid policy: ${name} must be at most ${MAX_IDLE_MS / 1000} seconds, got ${value}`);
  throw new CachePolicyError(`invalid policy: ${name} of ${value} seconds is too large`);
}

/** A time-to-idle in seconds (the MemoryStore's rules, idleSeconds) as whole ms for Redis, or undefined. */
function idleMillis(value, name) {
  if (value === undefined) return undefined;
  return checkedMillis(wasm.idleMillis(idleSeconds(value, name)), value, name);
}

function readMetadata(metadata) {
  if (metadata === undefined) return undefined;
  let plain;
  try {
    plain = isPlainObject(metadata);
  } catch (error) {
    // A Proxy whose getPrototypeOf trap throws, or a revoked one.
    throw new CacheSerializationError(`reading the metadata threw: ${error instanceof Error ? error.message : "an exception"}`, { cause: error });
  }
  if (!plain) {
    throw new CacheSerializationError(`metadata must be a plain object, got ${describe(metadata)}`);
  }
  return metadata;
}

const SET_OPTIONS = ["ttl", "metadata", "tags", "idle"];

/** `set`'s options: { ttl (ms), metadata, tags, idle (ms) }, read once each. */
function readSetOptions(options) {
  if (options === undefined) return { ttl: undefined, metadata: undefined, tags: undefined, idle: undefined };
  if (typeof options !== "object" || options === null) {
    throw new CachePolicyError(`set options must be an object like { ttl, metadata }, got ${describe(options)}`);
  }
  readOptions(isPlainObject(options) ? options : { ...options }, "set", SET_OPTIONS);
  const { ttl, metadata, tags, idle } = options;
  return { ttl: millis(ttl, "ttl"), metadata: readMetadata(metadata), tags: readTags(tags), idle: idleMillis(idle, "idle") };
}

const LOAD_OPTIONS = ["ttl", "metadata", "tags", "idle", "grace", "softTimeout", "hardTimeout", "retryAfter", "waitUntil", "signal"];

/** `getOrSet`'s options: `set`'s, and stale-while-revalidate's and the load's (ms). */
function readLoadOptions(options) {
  const o = readSetOptions(undefined);
  if (options === undefined) return o;
  if (typeof options !== "object" || options === null) {
    throw new CachePolicyError(`getOrSet options must be an object like { ttl, metadata }, got ${describe(options)}`);
  }
  readOptions(isPlainObject(options) ? options : { ...options }, "getOrSet", LOAD_OPTIONS);
  const { ttl, metadata, tags, idle, grace, softTimeout, hardTimeout, retryAfter, waitUntil, signal } = options;
  o.ttl = millis(ttl, "ttl");
  o.metadata = readMetadata(metadata);
  o.tags = readTags(tags);
  o.idle = idleMillis(idle, "idle");
  o.grace = millis(grace, "grace");
  o.softTimeout = millis(softTimeout, "softTimeout");
  o.hardTimeout = millis(hardTimeout, "hardTimeout");
  o.retryAfter = millis(retryAfter, "retryAfter");
  checkLoadCall(o, waitUntil, signal);
  return o;
}

/**
 * The batch calls' list: an array (a copy, holes read as undefined) or any
 * other iterable that is not a string, as the MemoryStore's; else a
 * TypeError, a programming error (the MemoryStore's class).
 */
function listOf(items, what, expected) {
  if (Array.isArray(items)) return Array.from(items);
  if (items === null || typeof items !== "object" || typeof items[Symbol.iterator] !== "function") {
    throw new TypeError(`${what} takes ${expected}, got ${describe(items)}`);
  }
  return Array.from(items);
}
