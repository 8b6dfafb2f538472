// js/api/4-metadata.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Metadata: plain copies of JSON values (no getter of the caller's runs twice),
// nested at most MAX_NESTING levels, as in the core.

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
      if (!isWellFormed(value)) throw notJson(path, "a string that is not well-formed Unicode (a lone surrogate)");
      return value;
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      break;
    case "object": {
      if (value === null) return null;
      // The metadata object is level 1, as in the core (MAX_NESTING).
      if (depth >= MAX_NESTING) {
        throw notJson(path, `nesting deeper than ${MAX_NESTING} levels (is it circular?)`);
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
        if (!isWellFormed(key)) throw notJson(path + at, "a key that is not well-formed Unicode (a lone surrogate)");
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

/** A new plain object: `base`'s properties, then `update`'s over them (top-level merge). */
function merged(base, update) {
  const out = {};
  for (const source of [base, update]) {
    if (source === undefined) continue;
    for (const key of Object.keys(source)) {
      // defineProperty, not assignment: a key "__proto__" stays data.
      Object.defineProperty(out, key, { value: source[key], enumerable: true, writable: true, configurable: true });
    }
  }
  return out;
}
// The key of MemoryStore's self-check, for the package's tests.
const AUDIT = Symbol.for("pepperpy-caching.audit");
