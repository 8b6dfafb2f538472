// Hostile review (session 9) of the JS RedisStore set's fast path
// (js/redis/2-hot.js plainCopy: holes and undefined array elements on the
// fast path, a toJSON read once): for each value the bytes stored must be
// what Rust's walk (wasm.encode) writes for it, or the set refused with the
// walk's words (matchesWalk in redis-walk.mjs).
import assert from "node:assert/strict";
import { before, after, test } from "node:test";
import { createClient } from "redis5";
import { RedisStore } from "pepperpy-caching/redis";
import { matchesWalk } from "./redis-walk.mjs";
import { startServer } from "./redis-support.mjs";

let server;
let client;
let n = 0;
const fresh = () => `rv${++n}:`;

before(async () => {
  server = await startServer();
  client = await createClient({ url: server.url }).connect();
});
after(async () => {
  await client?.quit();
  await server?.stop();
});

/**
 * matchesWalk with `key` defined on `proto` as `descriptor` only for the
 * synchronous part of the set (the copy and the encoding run there;
 * node-redis and the test runner must not see the accessor).
 */
function matchesWalkUnder(proto, key, descriptor, make, what) {
  return matchesWalk(client, fresh(), make, what, (run) => {
    Object.defineProperty(proto, key, { configurable: true, ...descriptor });
    try {
      run();
    } finally {
      delete proto[key];
    }
  });
}

// Expected: a getter-only accessor for an index on Array.prototype (a polyfill,
// a hostile library) reads through the holes as the walk reads them; the walk
// stores [0,"p",2] for [0, , 2]. Actual: the copy's push hits the setter-less
// accessor and throws a TypeError, and the set is refused.
test("a hole under a getter-only index accessor on Array.prototype: the walk's document", async () => {
  // eslint-disable-next-line no-sparse-arrays
  await matchesWalkUnder(Array.prototype, "1", { get: () => "p" }, () => [0, , 2], "hole under a getter on Array.prototype[1]");
});

// Expected: a dense array under a getter-only accessor for "0" on
// Object.prototype is stored as the walk stores it ([1,2]). Actual: the
// copy's push throws (no setter) and the set is refused.
test("a dense array under a getter-only index accessor on Object.prototype: the walk's document", async () => {
  await matchesWalkUnder(Object.prototype, "0", { get: () => "o" }, () => [1, 2], "array under a getter on Object.prototype[0]");
});

// Expected: a plain object whose key has a getter-only accessor on
// Object.prototype is stored as the walk stores it ({"a":1}). Actual: the
// copy's assignment throws in the module's strict mode before defineOwn runs.
test("a plain object key under a getter-only accessor on Object.prototype: the walk's document", async () => {
  await matchesWalkUnder(Object.prototype, "a", { get: () => "o" }, () => ({ a: 1, b: [1, , 3] }), "object key under a getter on Object.prototype.a");
});

// Cases that held (kept: no other test has them): own index getters on a
// sparse array, extra non-index properties, Array subclasses (with a toJSON
// on their prototype, which both the walk and the copy ignore for arrays),
// typed arrays, a Proxy whose length getter throws, a toJSON getter on a
// nested object, undefined/holes nested in objects.
test("held: sparse/odd arrays and toJSON getters store the walk's document", async () => {
  class Tagged extends Array {
    toJSON() {
      return "tagged";
    }
  }
  let reads = 0;
  const cases = {
    "own index getter on a sparse array": () => {
      const a = [1, , , 4];
      Object.defineProperty(a, 2, { get: () => ({ deep: [undefined, null] }), enumerable: true });
      return a;
    },
    "extra properties on an array": () => Object.assign([1, undefined, 3], { extra: "x", 10.5: 1 }),
    "array subclass with toJSON": () => Tagged.from([1, 2, undefined]),
    "typed array": () => ({ t: new Uint8Array([1, 2]) }),
    "length getter throws": () =>
      new Proxy([1, 2], {
        get(target, key) {
          if (key === "length") throw new Error("no length");
          return target[key];
        },
      }),
    "toJSON getter nested": () => ({
      a: {
        get toJSON() {
          reads++;
          return () => [undefined, , 1];
        },
      },
    }),
    "holes and undefined nested": () => ({ x: [[, undefined], { y: undefined }, [null, , null]] }),
    "sparse array of 10": () => {
      const a = [];
      a[9] = "last";
      return a;
    },
  };
  for (const [what, make] of Object.entries(cases)) {
    await matchesWalk(client, fresh(), make, what);
  }
  assert.ok(reads > 0);
});

// A toJSON (called by Rust's walk, from inside the wasm) that sets into the
// same store, whose value has a toJSON of its own (a nested walk): both
// documents are the walk's.
test("held: a toJSON that re-enters the store's set (a nested walk) stores both documents", async () => {
  const prefix = fresh();
  const store = new RedisStore({ client, prefix });
  let inner;
  const outer = {
    a: {
      toJSON() {
        inner = store.set("inner", { b: { toJSON: () => [1, undefined] }, c: [, 2] });
        return { ok: [undefined, 3] };
      },
    },
  };
  await store.set("outer", outer);
  await inner;
  assert.deepEqual(await store.get("outer"), { a: { ok: [null, 3] } });
  assert.deepEqual(await store.get("inner"), { b: [1, null], c: [null, 2] });
});
