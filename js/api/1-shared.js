// js/api/1-shared.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order), and a part of
// every entry with a .wasm of its own (scripts/build-entry.cjs puts it before
// js/NAME/*.js), so that what every store checks alike is written once: how a value is
// described in a message, what a plain object is, getOrSet's rules past
// its numbers, and how a removal listener (`onRemove`) is checked and called.

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

// Plain: made by `{}`, `Object.create(null)` or JSON.parse, also in another realm.
function isPlainObject(value) {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
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
  return typeof AbortSignal === "function" ? value instanceof AbortSignal : typeof value?.aborted === "boolean";
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
