// js/redis/2-options.js: a part of pepperpy-caching/redis (see 1-boundary.js).
//
// Options objects, read once each, unknown names refused, with the JS
// MemoryStore's names, units (seconds), rules and error classes: the
// rules both stores share (checkNames, seconds, idleSeconds, readTags,
// copyMetadata) are js/api/1-shared.js's; Redis's own (whole ms that fit its clock) are
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

const SET_OPTIONS = ["ttl", "metadata", "tags", "idle"];

/** `set`'s options: { ttl (ms), metadata, tags, idle (ms) }, read once each. */
function readSetOptions(options) {
  if (options === undefined) return { ttl: undefined, metadata: undefined, tags: undefined, idle: undefined };
  if (typeof options !== "object" || options === null) {
    throw new CachePolicyError(`set options must be an object like { ttl, metadata }, got ${describe(options)}`);
  }
  // As the MemoryStore's: any object, its own names checked (no prototype read: a Proxy's trap may throw).
  checkNames(options, "set", SET_OPTIONS);
  const { ttl, metadata, tags, idle } = options;
  // The MemoryStore's order (js/api/3-options.js): of two bad options, the same one is named.
  const o = { ttl: millis(ttl, "ttl"), idle: idleMillis(idle, "idle"), metadata: undefined, tags: undefined };
  if (metadata !== undefined) o.metadata = copyMetadata(metadata);
  o.tags = readTags(tags);
  return o;
}

const LOAD_OPTIONS = ["ttl", "metadata", "tags", "idle", "grace", "softTimeout", "hardTimeout", "retryAfter", "waitUntil", "signal"];

/** `getOrSet`'s options: `set`'s, and stale-while-revalidate's and the load's (ms). */
function readLoadOptions(options) {
  const o = readSetOptions(undefined);
  if (options === undefined) return o;
  if (typeof options !== "object" || options === null) {
    throw new CachePolicyError(`getOrSet options must be an object like { ttl, metadata }, got ${describe(options)}`);
  }
  checkNames(options, "getOrSet", LOAD_OPTIONS);
  const { ttl, metadata, tags, idle, grace, softTimeout, hardTimeout, retryAfter, waitUntil, signal } = options;
  o.ttl = millis(ttl, "ttl");
  o.idle = idleMillis(idle, "idle");
  if (metadata !== undefined) o.metadata = copyMetadata(metadata);
  o.tags = readTags(tags);
  o.grace = millis(grace, "grace");
  o.softTimeout = millis(softTimeout, "softTimeout");
  o.hardTimeout = millis(hardTimeout, "hardTimeout");
  o.retryAfter = millis(retryAfter, "retryAfter");
  checkLoadCall(o, waitUntil, signal);
  return o;
}
