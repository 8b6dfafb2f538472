// js/api/4-metadata.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Metadata merges. The metadata rule itself (copyMetadata: what may be
// stored, with which words) is js/api/1-shared.js's, shared with the RedisStore.

/** A new plain object: `base`'s properties, then `update`'s over them (top-level merge). */
function merged(base, update) {
  const out = {};
  for (const source of [base, update]) {
    if (source === undefined) continue;
    for (const key of Object.keys(source)) {
      defineOwn(out, key, source[key]);
    }
  }
  return out;
}
// The key of MemoryStore's self-check, for the package's tests.
const AUDIT = Symbol.for("pepperpy-caching.audit");
