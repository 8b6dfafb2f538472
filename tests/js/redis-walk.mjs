// tests/js/redis-walk.mjs: the check that the JS RedisStore's fast set path
// (js/redis/2-hot.js) stores what Rust's walk stores, shared by
// redis-hotpath.test.mjs and redis-hostile3.test.mjs.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { CacheSerializationError } from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";

const require = createRequire(import.meta.url);
/** The redis entry's wasm bindings (Rust's walk `encode` and reader `decodeValue`). */
export const wasm = require(join(dirname(require.resolve("pepperpy-caching/redis")), "wasm", "redis.cjs"));

/**
 * Stores `make()` with a plain set (the fast path) in a store on `client`
 * under `prefix`, and asks Rust's walk (wasm.encode, no metadata, no tags)
 * for the same value: the document must be the walk's and read back as
 * Rust's reader reads it, or the set refused with the walk's words and
 * nothing written. `during(run)`, if given, runs the synchronous part (the
 * walk and the start of the set, where the copy and the encoding happen)
 * inside whatever set-up it needs, such as a prototype accessor installed
 * and removed around it.
 */
export async function matchesWalk(client, prefix, make, what, during = (run) => run()) {
  const store = new RedisStore({ client, prefix });
  let expected;
  let refusal;
  let pending;
  during(() => {
    try {
      expected = wasm.encode(make(), undefined, []);
    } catch (error) {
      refusal = error.message;
    }
    try {
      pending = store.set("k", make());
    } catch (error) {
      pending = Promise.reject(error);
    }
  });
  let thrown;
  try {
    await pending;
  } catch (error) {
    thrown = error;
  }
  const stored = await client.get(`${prefix}k`);
  if (refusal !== undefined) {
    assert.ok(thrown instanceof CacheSerializationError && thrown.message.includes(refusal), `${what}: ${thrown} vs the walk's ${refusal}`);
    assert.equal(stored, null, `${what}: nothing written`);
  } else {
    assert.equal(thrown, undefined, `${what}: ${thrown}`);
    assert.equal(stored, expected, `${what}: the fast path's document is the walk's`);
    assert.deepEqual(await store.get("k"), JSON.parse(wasm.decodeValue("k", Buffer.from(expected))), `${what}: read back`);
  }
}
