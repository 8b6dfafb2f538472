// js/api/1-shared.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order), and a part of
// every entry with a .wasm of its own (scripts/build-entry.cjs puts it before
// js/NAME/*.js), so that what every store checks alike is written once: how a value is
// described in a message and a key shown, what a plain object and a
// well-formed string are, getOrSet's rules past its numbers, how a removal
// listener (`onRemove`) is checked and called, the options' rules (names,
// seconds, idle times, tags, invalidateTags' list) and metadata's (copyMetadata).
// It uses names each entry declares: the limits (MAX_IDLE_SECONDS, MAX_TAGS,
// MAX_TAG_LEN, MAX_INVALIDATE_TAGS, MAX_NESTING, SHOWN_CHARS, RESERVED_KEY_CHAR), the error
// classes, encoder.

// Whether `text` has no lone surrogate. String.prototype.isWellFormed is
// ES2024 (Node 20); Node 18 and older browsers get the regular expression.
const isWellFormed =
  typeof String.prototype.isWellFormed === "function"
    ? (text) => text.isWellFormed()
    : (text) => !/\p{Cs}/u.test(text);

/**
 * Gives `object` the own, enumerable, writable data property `key` holding
 * `value`: defined, not assigned, so a key "__proto__" stays data and an
 * accessor on a prototype (a polyfill, a hostile library) neither takes
 * nor refuses it.
 */
function defineOwn(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

/**
 * Whether `text` holds the one character no key (and no Redis prefix) may
 * hold: the core's RESERVED_KEY_CHAR, U+FFFF, the marker of the Redis stores'
 * internal keys (each entry reads its code from its wasm's `limits()` into
 * RESERVED_KEY_CHAR). The verdict's message is then the core's.
 */
function holdsReserved(text) {
  return text.indexOf(RESERVED_KEY_CHAR) !== -1;
}

/** How a key is shown in an error message: its first SHOWN_CHARS characters (the core's). */
function shownKey(key) {
  return JSON.stringify(key.length > SHOWN_CHARS ? `${key.slice(0, SHOWN_CHARS)}...` : key);
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
      try {
        return isPlainObject(value) ? "a plain object" : `an object of class ${value.constructor?.name ?? "unknown"}`;
      } catch {
        // A Proxy whose getPrototypeOf or get trap throws, or a revoked one:
        // describing a bad argument must not throw something else.
        return "an object whose prototype or constructor cannot be read (a Proxy?)";
      }
    default:
      return String(value);
  }
}

// Plain: made by `{}`, `Object.create(null)` or JSON.parse, also in another realm.
function isPlainObject(value) {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** A value that cannot be stored (`what`: "cannot store", "the loader returned"...): undefined, a miss's answer. */
function undefinedValueError(what) {
  return new CacheSerializationError(`${what} undefined: get() returns undefined for a miss (store null instead)`);
}

/** An iterable (not a string) as an array; else a TypeError, a programming error. */
function iterableOrThrow(items, what, expected) {
  if (items === null || typeof items !== "object" || typeof items[Symbol.iterator] !== "function") {
    throw new TypeError(`${what} takes ${expected}, got ${describe(items)}`);
  }
  return Array.from(items);
}

/**
 * A batch call's list, the one rule of both stores (MemoryStore's
 * js/api/13-batch.js, RedisStore's): an array is copied by index, up to the
 * length it has when the call starts (a hole read as undefined; neither its
 * iterator nor its species asked), so what is checked is what is used,
 * whatever a getter or a listener does to it meanwhile; any other iterable
 * that is not a string goes through its iterator; anything else is a
 * TypeError (`what` takes `expected`).
 */
function listOf(items, what, expected) {
  if (!Array.isArray(items)) return iterableOrThrow(items, what, expected);
  const n = items.length;
  const list = [];
  for (let i = 0; i < n; i++) list.push(items[i]);
  return list;
}

/**
 * getOrSet's rules past the numbers (`o` holds them, in the store's unit):
 * stale-while-revalidate's, from the core (`refreshError`: RefreshOptions'
 * rules), then `waitUntil` and `signal`, which it stores into `o`.
 */
function checkLoadCall(o, waitUntil, signal) {
  if (o.grace !== undefined || o.retryAfter !== undefined) {
    const error = wasm.refreshError(o.ttl !== undefined, o.grace !== undefined, o.retryAfter !== undefined);
    if (error !== undefined) throw translate(error);
  }
  if (waitUntil !== undefined && typeof waitUntil !== "function") {
    throw new CachePolicyError(`waitUntil must be a function, like ctx.waitUntil.bind(ctx), got ${describe(waitUntil)}`);
  }
  o.waitUntil = waitUntil;
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw new CachePolicyError(`signal must be an AbortSignal, got ${describe(signal)}`);
  }
  o.signal = signal;
}

function isAbortSignal(value) {
  try {
    return typeof AbortSignal === "function" ? value instanceof AbortSignal : typeof value?.aborted === "boolean";
  } catch {
    // A Proxy whose getPrototypeOf (or get) trap throws: no AbortSignal.
    return false;
  }
}

/** The `onRemove` option, checked: a function (value, key, reason), or undefined. */
function checkListener(onRemove) {
  if (onRemove !== undefined && typeof onRemove !== "function") {
    throw new CachePolicyError(`onRemove must be a function (value, key, reason), got ${describe(onRemove)}`);
  }
  return onRemove;
}

/**
 * Calls `listener` with each removal notice of one call (`notices`: value,
 * key, reason, flat), once the store is consistent. A listener may use the
 * store; if one throws, the others still run and the first error is thrown
 * after them: the call itself has completed. With `later` (a load storing
 * its value: its callers get the value) the error has no caller to go to
 * and is reported instead (`reportLater`).
 */
function deliver(listener, notices, later) {
  if (notices === undefined || notices.length === 0) return;
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

const laterQueue = queueMicrotask;
/**
 * Surfaces an error that has no caller to go to (an `onRemove` listener's,
 * thrown while a load stored its value or while a broken engine was
 * replaced) as the host surfaces an uncaught error: `reportError` where
 * there is one (browsers, Deno, Workers, Bun), else thrown from a microtask
 * (Node: `uncaughtException`), as an EventTarget does with its listeners'.
 */
function reportLater(error) {
  laterQueue(() => {
    if (typeof globalThis.reportError === "function") globalThis.reportError(error);
    else throw error;
  });
}

// ---- options: the rules both stores' option readers share (js/api/3-options.js,
// js/redis/2-options.js): names, seconds, tags.

/** Reads an options object, rejecting what is not one and misspelt names. */
function readOptions(options, what, allowed) {
  if (options === undefined) return {};
  let plain = false;
  try {
    plain = isPlainObject(options);
  } catch {
    // A Proxy whose getPrototypeOf trap throws: not a plain object (describe says so).
  }
  if (!plain) {
    throw new CachePolicyError(`${what} options must be a plain object, got ${describe(options)}`);
  }
  checkNames(options, what, allowed);
  return options;
}

/** Refuses option names not in `allowed` (a misspelt `tll` would otherwise be ignored). */
function checkNames(options, what, allowed) {
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new CachePolicyError(`unknown ${what} option ${JSON.stringify(name)} (known: ${allowed.join(", ")})`);
    }
  }
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

function notUnicode(ErrorClass, what, text) {
  return new ErrorClass(
    `${what} ${describe(text)} is not well-formed Unicode (it has a lone surrogate), so it has no UTF-8 form`,
  );
}

/** A tag's length in bytes of UTF-8 (the core's unit for MAX_TAG_LEN). */
function utf8Length(text) {
  // Three bytes a UTF-16 unit at most: short tags need no count.
  if (text.length * 3 <= MAX_TAG_LEN) return text.length;
  return encoder.encode(text).length;
}

/** Throws unless `tag` (at `what`) is a non-empty, well-formed string of at most MAX_TAG_LEN bytes. */
function checkTag(tag, what) {
  if (typeof tag !== "string") throw new CachePolicyError(`${what} must be a string, got ${describe(tag)}`);
  if (tag.length === 0) throw new CachePolicyError("invalid policy: a tag must not be empty");
  if (!isWellFormed(tag)) throw notUnicode(CachePolicyError, "tag", tag);
  const bytes = utf8Length(tag);
  if (bytes > MAX_TAG_LEN) {
    throw new CachePolicyError(
      `invalid policy: the tag ${shownKey(tag)} is ${bytes} bytes long, more than the ${MAX_TAG_LEN} a tag may have`,
    );
  }
}

/**
 * The `tags` option, read once into a frozen copy (undefined when absent or
 * empty): an array of at most MAX_TAGS tags, none given twice.
 */
function readTags(tags) {
  if (tags === undefined) return undefined;
  if (!Array.isArray(tags)) throw new CachePolicyError(`tags must be an array of strings, got ${describe(tags)}`);
  const n = tags.length;
  if (n > MAX_TAGS) throw new CachePolicyError(`invalid policy: an entry carries at most ${MAX_TAGS} tags, ${n} were given`);
  if (n === 0) return undefined;
  const copy = new Array(n);
  for (let i = 0; i < n; i++) {
    const tag = tags[i];
    checkTag(tag, `tags[${i}]`);
    for (let j = 0; j < i; j++) {
      if (copy[j] === tag) throw new CachePolicyError(`invalid policy: the tag ${shownKey(tag)} is given twice`);
    }
    copy[i] = tag;
  }
  return Object.freeze(copy);
}

/**
 * invalidateTags' list, read once into a copy: an array of at most
 * MAX_INVALIDATE_TAGS tags, each as `checkTag` wants it (duplicates allowed).
 */
function readInvalidateTags(tags) {
  if (!Array.isArray(tags)) throw new CachePolicyError(`invalidateTags takes an array of tags, got ${describe(tags)}`);
  const n = tags.length;
  if (n > MAX_INVALIDATE_TAGS) {
    throw new CachePolicyError(`invalid policy: invalidateTags takes at most ${MAX_INVALIDATE_TAGS} tags, ${n} were given`);
  }
  const wanted = new Array(n);
  for (let i = 0; i < n; i++) {
    const tag = tags[i];
    checkTag(tag, `tags[${i}]`);
    wanted[i] = tag;
  }
  return wanted;
}

// ---- metadata: plain copies of JSON values (no getter of the caller's runs
// twice), nested at most MAX_NESTING levels, as in the core. Both stores
// refuse the same metadata with these words before anything is written.

/**
 * A fresh copy of `metadata` made only of plain objects, arrays and JSON
 * primitives, reading each property of the caller's object exactly once.
 * Only the copy reaches wasm (or Redis): no getter or Proxy of the caller's
 * can run inside a store call, where it could see a half-done call or throw
 * through it. Anything else is refused with the path to it. What the
 * caller's object throws while it is read (a getter, a Proxy's trap, a
 * revoked Proxy) is a CacheSerializationError too, the thrown error its
 * `cause` (as the RedisStore reports a value whose reading throws), and
 * nothing changes.
 */
function copyMetadata(metadata) {
  try {
    if (!isPlainObject(metadata)) {
      throw new CacheSerializationError(`metadata must be a plain object, got ${describe(metadata)}`);
    }
    return copyJson(metadata, 0, "");
  } catch (error) {
    if (error instanceof CacheError) throw error;
    const why = error instanceof Error ? error.message : describe(error);
    throw new CacheSerializationError(`reading the metadata threw: ${why}`, { cause: error });
  }
}

/**
 * copyMetadata's copy of `value` (`depth` levels down, the metadata object
 * at 0); what it refuses is a CacheSerializationError naming the path to it
 * after `path`. The path is put together only for an error, while the
 * refusal goes back up (copyJsonAt): the usual metadata builds no text.
 */
function copyJson(value, depth, path) {
  try {
    return copyJsonAt(value, depth);
  } catch (error) {
    if (error instanceof NotJson) throw notJson(path + error.path, error.why);
    throw error;
  }
}

/** A value metadata cannot hold, on its way up to copyJson: `path` grows by a step in each frame it leaves. */
class NotJson {
  constructor(why) {
    this.why = why;
    this.path = "";
  }
}

/** `error` with the step into `step` put before its path, when it is a NotJson; thrown on. */
function fromStep(error, step) {
  if (error instanceof NotJson) error.path = step() + error.path;
  return error;
}

function copyJsonAt(value, depth) {
  switch (typeof value) {
    case "string":
      if (!isWellFormed(value)) throw new NotJson("a string that is not well-formed Unicode (a lone surrogate)");
      return value;
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      break;
    case "object": {
      if (value === null) return null;
      // The metadata object is level 1, as in the core (MAX_NESTING).
      if (depth >= MAX_NESTING) throw new NotJson(`nesting deeper than ${MAX_NESTING} levels (is it circular?)`);
      if (Array.isArray(value)) {
        const n = value.length;
        const out = new Array(n);
        for (let i = 0; i < n; i++) {
          try {
            out[i] = copyJsonAt(value[i], depth + 1);
          } catch (error) {
            throw fromStep(error, () => `[${i}]`);
          }
        }
        return out;
      }
      if (!isPlainObject(value)) break;
      if (Object.getOwnPropertySymbols(value).length > 0) throw new NotJson("an object with symbol keys");
      const out = {};
      for (const key of Object.keys(value)) {
        try {
          if (!isWellFormed(key)) throw new NotJson("a key that is not well-formed Unicode (a lone surrogate)");
          defineOwn(out, key, copyJsonAt(value[key], depth + 1));
        } catch (error) {
          throw fromStep(error, () => (/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`));
        }
      }
      return out;
    }
  }
  throw new NotJson(describe(value));
}

function notJson(path, why) {
  return new CacheSerializationError(
    `metadata${path} cannot be stored: metadata holds only JSON values ` +
      `(plain objects, arrays, strings, finite numbers, booleans, null), got ${why}`,
  );
}
