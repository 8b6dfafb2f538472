// js/api/3-options.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Options objects: read once each, unknown names refused, typed errors.


/** Reads an options object, rejecting what is not one and misspelt names. */
function readOptions(options, what, allowed) {
  if (options === undefined) return {};
  if (!isPlainObject(options)) {
    throw new CachePolicyError(`${what} options must be a plain object, got ${describe(options)}`);
  }
  checkNames(options, what, allowed);
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

/**
 * A time-to-idle in seconds under the option `name` (`seconds`' rules, and
 * at most the core's MAX_IDLE), or undefined.
 */
function idleSeconds(value, name) {
  const idle = seconds(value, name);
  if (idle > MAX_IDLE_SECONDS) {
    throw new CachePolicyError(`invalid policy: ${name} must be at most ${MAX_IDLE_SECONDS} seconds, got ${idle}`);
  }
  return idle;
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

/** Refuses option names not in `allowed` (a misspelt `tll` would otherwise be ignored). */
function checkNames(options, what, allowed) {
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new CachePolicyError(`unknown ${what} option ${JSON.stringify(name)} (known: ${allowed.join(", ")})`);
    }
  }
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
