// js/api/3-options.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Options objects: read once each, unknown names refused, typed errors.


/** A capacity: undefined, or a whole number the core then checks (0 gets its message). */
function maxSizeOption(value) {
  if (value === undefined) return undefined;
  if (typeof value !== "number") {
    throw new CachePolicyError(`invalid policy: maxSize must be a number, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new CachePolicyError(`invalid policy: maxSize must be a positive integer, got ${value}`);
  }
  // The core refuses 0 too, naming the Rust option (max_size).
  if (value === 0) throw new CachePolicyError("invalid policy: maxSize must be at least 1, got 0");
  return value;
}

/**
 * Reads `set` options into `setOptions`, checking their names and types
 * (the core checks the TTL's value again). Each option is read once, so a
 * getter cannot pass the check with one value and be stored with another;
 * the result goes to a shared object, not a fresh one, so `setSync`
 * allocates nothing.
 */
const setOptions = { ttl: undefined, meta: undefined, size: undefined, tags: undefined, idle: undefined };
const SET_OPTIONS = ["ttl", "metadata", "size", "tags", "idle"];
function readSetOptions(options) {
  let ttl;
  let metadata;
  let size;
  let tags;
  let idle;
  if (options !== undefined) {
    if (typeof options !== "object" || options === null) {
      throw new CachePolicyError(`set options must be an object like { ttl, metadata }, got ${describe(options)}`);
    }
    checkNames(options, "set", SET_OPTIONS);
    ttl = seconds(options.ttl, "ttl");
    idle = idleSeconds(options.idle, "idle");
    metadata = options.metadata;
    if (metadata !== undefined) metadata = copyMetadata(metadata);
    size = options.size;
    tags = readTags(options.tags);
  }
  setOptions.ttl = ttl;
  setOptions.meta = metadata;
  setOptions.size = size;
  setOptions.tags = tags;
  setOptions.idle = idle;
}

const LOAD_OPTIONS = ["ttl", "metadata", "tags", "idle", "grace", "softTimeout", "hardTimeout", "retryAfter", "waitUntil", "signal"];

/**
 * The options of `getOrSet`, read once each into a fresh object: those of
 * `set`, and for stale-while-revalidate `grace` and `retryAfter`, the
 * timeouts, `waitUntil` and `signal`. Seconds throughout, like `ttl`.
 */
function readLoadOptions(options) {
  const o = {
    ttl: undefined,
    meta: undefined,
    tags: undefined,
    idle: undefined,
    grace: undefined,
    softTimeout: undefined,
    hardTimeout: undefined,
    retryAfter: undefined,
    waitUntil: undefined,
    signal: undefined,
  };
  if (options === undefined) return o;
  if (typeof options !== "object" || options === null) {
    throw new CachePolicyError(`getOrSet options must be an object like { ttl, metadata }, got ${describe(options)}`);
  }
  checkNames(options, "getOrSet", LOAD_OPTIONS);
  const { ttl, metadata, tags, idle, grace, softTimeout, hardTimeout, retryAfter, waitUntil, signal } = options;
  o.ttl = seconds(ttl, "ttl");
  o.idle = idleSeconds(idle, "idle");
  if (metadata !== undefined) o.meta = copyMetadata(metadata);
  o.tags = readTags(tags);
  o.grace = seconds(grace, "grace");
  o.softTimeout = seconds(softTimeout, "softTimeout");
  o.hardTimeout = seconds(hardTimeout, "hardTimeout");
  o.retryAfter = seconds(retryAfter, "retryAfter");
  checkLoadCall(o, waitUntil, signal);
  return o;
}
