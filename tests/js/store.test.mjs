// The package as a Node ES module user sees it: import by name, API, errors, values.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import {
  MemoryStore,
  LRUPolicy,
  TTLPolicy,
  ManualClock,
  CacheError,
  CacheKeyError,
  CachePatternError,
  CachePolicyError,
  CacheSerializationError,
  CacheBackendError,
} from "pepperpy-caching";

const lru = (maxSize = 100, more = {}) => new MemoryStore({ policy: new LRUPolicy({ maxSize, ...more }) });

/** Everything observable about a store, to check a failed call changed nothing. */
async function snapshot(store) {
  const keys = (await store.keys()).sort();
  const entries = [];
  for (const key of keys) entries.push([key, store.getSync(key), await store.getMetadata(key)]);
  store.resetStats(); // the reads above counted hits; compare counters separately
  return entries;
}

describe("entry points", () => {
  test("import resolves to the Node build, which require shares", () => {
    // node.mjs where Node sets "module-sync" (20.19+, 22.12+; tests/js/node-entry.test.mjs), else inline.mjs.
    assert.match(import.meta.resolve("pepperpy-caching"), process.features.require_module === true ? /\/node\.mjs$/ : /\/inline\.mjs$/);
    const require = createRequire(import.meta.url);
    const cjs = require("pepperpy-caching");
    assert.equal(cjs.MemoryStore, MemoryStore, "one instance for import and require");
    assert.equal(cjs.CacheKeyError, CacheKeyError);
  });
});

describe("values", () => {
  test("get returns the very object that was set, like a Map", async () => {
    const store = lru();
    const value = { nested: { list: [1, 2, { deep: true }] } };
    await store.set("k", value);
    assert.equal(await store.get("k"), value);
    value.nested.list.push(4); // mutating it mutates the cached entry
    assert.deepEqual((await store.get("k")).nested.list, [1, 2, { deep: true }, 4]);
  });

  test("every kind of JS value comes back the same", async () => {
    const store = lru();
    const date = new Date(1_700_000_000_000);
    const fn = () => 42;
    const sym = Symbol("s");
    const values = [null, 0, -0, NaN, 1.5, "", "text", "é😀", true, false, 10n, date, fn, sym,
      [1, [2, [3]]], { a: { b: { c: null } } }, new Map([[1, 2]]), new Uint8Array([1, 2, 3]), Object.create(null)];
    for (const [i, value] of values.entries()) await store.set(`v${i}`, value);
    for (const [i, value] of values.entries()) assert.ok(Object.is(await store.get(`v${i}`), value), `value ${i}`);
    assert.equal((await store.get("v11")).getTime(), 1_700_000_000_000);
  });

  test("undefined cannot be stored: it is get's miss value", async () => {
    const store = lru();
    await store.set("k", "before");
    await assert.rejects(store.set("k", undefined), (e) => e instanceof CacheSerializationError && /undefined/.test(e.message));
    assert.equal(await store.get("k"), "before");
    assert.equal(await store.get("missing"), undefined);
  });

  test("keys are any non-empty string, unicode included", async () => {
    const store = lru();
    for (const key of ["a", "user:1", "é", "😀 emoji", "a*b?[c]\\", "\n", "x".repeat(8192)]) {
      await store.set(key, key.length);
      assert.equal(await store.get(key), key.length, JSON.stringify(key.slice(0, 10)));
    }
    // 2 UTF-8 bytes each: 4096 of them are exactly the limit.
    await store.set("é".repeat(4096), 1);
    assert.equal(await store.get("é".repeat(4096)), 1);
  });
});

describe("errors", () => {
  test("classes, names and instanceof", () => {
    for (const Class of [CacheKeyError, CachePatternError, CachePolicyError, CacheSerializationError, CacheBackendError]) {
      const e = new Class("msg");
      assert.ok(e instanceof Class && e instanceof CacheError && e instanceof Error);
      assert.equal(e.name, Class.name);
      assert.equal(String(e), `${Class.name}: msg`);
    }
    assert.equal(new CacheError("m").name, "CacheError");
  });

  test("a key that is not a non-empty string rejects with CacheKeyError, store unchanged", async () => {
    const store = lru();
    await store.set("k", 1, { metadata: { a: 1 } });
    const before = await snapshot(store);
    const bad = [123, null, undefined, Symbol("k"), { toString: () => "k" }, ["k"], true, 1n, () => "k", "", "k".repeat(8193), "é".repeat(4097)];
    for (const key of bad) {
      for (const call of [
        () => store.get(key), () => store.set(key, 1), () => store.delete(key), () => store.has(key),
        () => store.getMetadata(key), () => store.updateMetadata(key, {}),
      ]) {
        const promise = call();
        assert.ok(promise instanceof Promise, "async methods never throw synchronously");
        await assert.rejects(promise, CacheKeyError);
      }
      assert.throws(() => store.getSync(key), CacheKeyError);
      assert.throws(() => store.setSync(key, 1), CacheKeyError);
    }
    assert.deepEqual(await snapshot(store), before);
    assert.deepEqual(store.getStats(), {
      hits: 0, misses: 0, sets: 0, deletes: 0, evictions: 0, expirations: 0, hitRatio: 0, avgGetLatency: 0,
      loads: 0, loadFailures: 0, totalLoadTime: 0, staleHits: 0, refreshes: 0, refreshFailures: 0, totalWeight: 0,
    });
  });

  test("messages say what was wrong and with what", async () => {
    const store = lru();
    await assert.rejects(store.get(123), { name: "CacheKeyError", message: "a key must be a string, got 123" });
    await assert.rejects(store.get(Symbol("s")), { message: "a key must be a string, got Symbol(s)" });
    await assert.rejects(store.get(""), { message: 'invalid cache key "": a key must not be empty' });
    await assert.rejects(store.get("k".repeat(9000)), { message: /9000 bytes is longer than the limit of 8192 bytes/ });
    await assert.rejects(store.invalidate(5), { name: "CachePatternError", message: "a pattern must be a string, got 5" });
    await assert.rejects(store.invalidate("*".repeat(100_000)), CachePatternError);
    await assert.rejects(store.keys(null), CachePatternError);
  });

  test("nonsense policies throw CachePolicyError", () => {
    for (const maxSize of [0, -1, 1.5, "10", NaN, Infinity, null, undefined]) {
      assert.throws(() => new LRUPolicy({ maxSize }), CachePolicyError, `maxSize ${String(maxSize)}`);
      if (maxSize !== undefined) assert.throws(() => new TTLPolicy({ ttl: 1, maxSize }), CachePolicyError);
    }
    for (const ttl of [NaN, -5, 0, Infinity, -Infinity, "10", null, 1e300]) {
      assert.throws(() => new TTLPolicy({ ttl }), CachePolicyError, `ttl ${String(ttl)}`);
      assert.throws(() => new LRUPolicy({ maxSize: 1, ttl }), CachePolicyError);
    }
    assert.throws(() => new LRUPolicy({ maxSize: 1, refreshOnGet: "yes" }), CachePolicyError);
    assert.throws(() => new LRUPolicy({ maxsize: 1 }), { name: "CachePolicyError", message: /unknown LRUPolicy option "maxsize"/ });
    assert.throws(() => new LRUPolicy(1000), CachePolicyError);
    assert.throws(() => new LRUPolicy(), { message: /maxSize is required/ });
    assert.throws(() => new TTLPolicy({}), { message: /ttl is required/ });
    assert.throws(() => new LRUPolicy({ maxSize: 0 }), { message: "invalid policy: maxSize must be at least 1, got 0" });
    assert.throws(() => new LRUPolicy({ maxSize: "10" }), { message: 'invalid policy: maxSize must be a number, got the string "10"' });
    assert.throws(() => new MemoryStore(), { name: "CachePolicyError", message: /needs \{ policy/ });
    assert.throws(() => new MemoryStore({ policy: { maxSize: 10 } }), CachePolicyError);
    assert.throws(() => new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 }), clock: Date }), CachePolicyError);
  });

  test("a bad ttl on set rejects with CachePolicyError and changes nothing", async () => {
    const store = lru();
    await store.set("k", "old", { ttl: 60, metadata: { v: 1 } });
    const before = await snapshot(store);
    for (const ttl of [NaN, -5, 0, Infinity, "10", null]) {
      await assert.rejects(store.set("k", "new", { ttl }), CachePolicyError, `ttl ${String(ttl)}`);
      await assert.rejects(store.set("fresh", "new", { ttl }), CachePolicyError);
    }
    await assert.rejects(store.set("k", "new", 60), CachePolicyError);
    assert.deepEqual(await snapshot(store), before);
    assert.equal(store.getStats().sets, 0);
  });

  test("metadata must be a plain object of JSON values; a bad one changes nothing", async () => {
    const store = lru();
    await store.set("k", "old", { metadata: { v: 1 } });
    const before = await snapshot(store);
    const circular = { a: {} };
    circular.a.self = circular;
    const cases = [
      [[1, 2], /metadata must be a plain object, got an array/],
      ["text", /got the string "text"/],
      [null, /got null/],
      [new Map(), /got an object of class Map/],
      [{ when: new Date() }, /metadata\.when cannot be stored.*got an object of class Date/],
      [{ n: NaN }, /metadata\.n .*got NaN/],
      [{ list: [1, undefined] }, /metadata\.list\[1\] .*got undefined/],
      [{ f: () => 1 }, /got a function/],
      [{ big: 1n }, /got 1n/],
      [{ [Symbol("s")]: 1 }, /symbol keys/],
      [circular, /nesting deeper than 100 levels/],
    ];
    for (const [metadata, message] of cases) {
      await assert.rejects(store.set("k", "new", { metadata }), { name: "CacheSerializationError", message });
      await assert.rejects(store.updateMetadata("k", metadata), CacheSerializationError);
    }
    assert.deepEqual(await snapshot(store), before);
  });

  test("after any error the store keeps working", async () => {
    const store = lru(2);
    await assert.rejects(store.get(""));
    await store.set("a", 1);
    assert.equal(await store.get("a"), 1);
  });
});

describe("behaviour", () => {
  test("delete, has, size, keys and clear", async () => {
    const store = lru();
    await store.set("user:1", 1);
    await store.set("user:2", 2);
    await store.set("post:1", 3);
    assert.equal(store.size, 3);
    assert.equal(await store.has("user:1"), true);
    assert.equal(await store.has("nope"), false);
    assert.deepEqual((await store.keys()).sort(), ["post:1", "user:1", "user:2"]);
    assert.deepEqual((await store.keys("user:*")).sort(), ["user:1", "user:2"]);
    assert.equal(await store.delete("user:1"), true);
    assert.equal(await store.delete("user:1"), false);
    await store.clear();
    assert.equal(store.size, 0);
    assert.deepEqual(await store.keys(), []);
  });

  test("invalidate uses Redis glob rules and returns a count", async () => {
    const store = lru();
    for (const key of ["user:1", "user:2", "user:10", "userX", "post:1", "a*b"]) await store.set(key, 1);
    assert.equal(await store.invalidate("user:?"), 2);
    assert.equal(await store.invalidate("a\\*b"), 1);
    assert.equal(await store.invalidate("[pu]*"), 3);
    assert.deepEqual(await store.keys(), []);
  });

  test("LRU evicts the least recently used; get refreshes unless refreshOnGet is false", async () => {
    const store = lru(2);
    await store.set("a", 1);
    await store.set("b", 2);
    await store.get("a");
    await store.set("c", 3);
    assert.deepEqual((await store.keys()).sort(), ["a", "c"]);
    assert.equal(store.getStats().evictions, 1);

    const fifo = lru(2, { refreshOnGet: false });
    await fifo.set("a", 1);
    await fifo.set("b", 2);
    await fifo.get("a");
    await fifo.set("c", 3);
    assert.deepEqual((await fifo.keys()).sort(), ["b", "c"]);
  });

  test("TTLs expire on a ManualClock, per entry or from the policy", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 10, maxSize: 100 }), clock });
    await store.set("default", 1);
    await store.set("short", 2, { ttl: 0.5 });
    clock.advance(499);
    assert.equal(await store.get("short"), 2);
    clock.advance(1);
    assert.equal(await store.get("short"), undefined);
    assert.equal(await store.has("default"), true);
    clock.advance(9_500);
    assert.equal(await store.get("default"), undefined);
    const stats = store.getStats();
    assert.equal(stats.expirations, 2);
    assert.equal(stats.misses, 2);
    assert.throws(() => clock.advance(-1), RangeError);
    assert.throws(() => clock.advance(NaN), RangeError);
  });

  test("an LRUPolicy ttl is the default for entries set without one", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10, ttl: 1 }), clock });
    await store.set("k", 1);
    await store.set("long", 1, { ttl: 100 });
    clock.advance(1000);
    assert.equal(await store.get("k"), undefined);
    assert.equal(await store.get("long"), 1);
  });

  test("a TTLPolicy with maxSize evicts the entry closest to expiry", async () => {
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 100, maxSize: 2 }) });
    await store.set("soon", 1, { ttl: 5 });
    await store.set("late", 2, { ttl: 50 });
    await store.set("new", 3);
    assert.deepEqual((await store.keys()).sort(), ["late", "new"]);
  });

  test("metadata: a fresh plain object, merged by updateMetadata, replaced by set", async () => {
    const store = lru();
    const metadata = { version: 1, author: "user", tags: ["a", null, true, 2.5], nested: { x: { y: [] } } };
    await store.set("k", "v", { metadata });
    const got = await store.getMetadata("k");
    assert.deepEqual(got, metadata);
    assert.notEqual(got, metadata);
    assert.equal(Object.getPrototypeOf(got), Object.prototype);
    got.version = 99;
    assert.equal((await store.getMetadata("k")).version, 1, "a copy, not the stored map");
    assert.equal(await store.updateMetadata("k", { version: 2 }), true);
    assert.deepEqual(await store.getMetadata("k"), { ...metadata, version: 2 });
    assert.equal(await store.updateMetadata("missing", { version: 2 }), false);
    assert.equal(await store.getMetadata("missing"), undefined);
    await store.set("plain", "v");
    assert.deepEqual(await store.getMetadata("plain"), {});
    await store.set("k", "v2");
    assert.deepEqual(await store.getMetadata("k"), {}, "set replaces metadata");
    const odd = JSON.parse('{"__proto__": {"polluted": true}}');
    await store.set("odd", 1, { metadata: odd });
    const back = await store.getMetadata("odd");
    assert.deepEqual(Object.keys(back), ["__proto__"]);
    assert.equal({}.polluted, undefined);
  });

  test("stats count what happened; resetStats zeroes them", async () => {
    const store = lru(1);
    await store.set("a", 1);
    await store.get("a");
    await store.get("b");
    await store.set("b", 2); // evicts a
    await store.delete("b");
    const stats = store.getStats();
    assert.deepEqual({ ...stats, avgGetLatency: 0 }, {
      hits: 1, misses: 1, sets: 2, deletes: 1, evictions: 1, expirations: 0, hitRatio: 0.5, avgGetLatency: 0,
      loads: 0, loadFailures: 0, totalLoadTime: 0, staleHits: 0, refreshes: 0, refreshFailures: 0, totalWeight: 0,
    });
    assert.ok(stats.avgGetLatency >= 0 && stats.avgGetLatency < 10, `latency in ms: ${stats.avgGetLatency}`);
    store.resetStats();
    assert.equal(store.getStats().hits, 0);
  });

  test("the sync methods match the async ones", async () => {
    const store = lru();
    store.setSync("k", 1, { ttl: 60, metadata: { a: 1 } });
    assert.equal(store.getSync("k"), 1);
    assert.equal(store.hasSync("k"), true);
    assert.deepEqual(await store.getMetadata("k"), { a: 1 });
    assert.equal(store.deleteSync("k"), true);
    assert.equal(store.deleteSync("k"), false);
    assert.equal(store.getSync("k"), undefined);
  });

  test("stores are independent", async () => {
    const a = lru();
    const b = lru();
    await a.set("k", "a");
    assert.equal(await b.get("k"), undefined);
  });

  test("many keys through the key buffer while memory grows", async () => {
    const store = lru(50_000);
    for (let i = 0; i < 50_000; i++) store.setSync(`key:${i}:${"é".repeat(i % 7)}`, i);
    for (let i = 0; i < 50_000; i += 997) assert.equal(store.getSync(`key:${i}:${"é".repeat(i % 7)}`), i);
    assert.equal(store.size, 50_000);
  });
});

test("getStats reads each counter where the core's counter table says it is kept", () => {
  // The engine's counters at their indexes in its counter array, the others from the JS side.
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
  store.setSync("a", 1);
  store.setSync("b", 2);
  store.setSync("c", 3); // evicts a
  store.setSync("c", 4);
  assert.equal(store.deleteSync("b"), true);
  store.getSync("c");
  store.getSync("a");
  const stats = store.getStats();
  for (const [name, value] of Object.entries(stats)) assert.equal(typeof value, "number", `${name} is a number`);
  assert.deepEqual(
    { sets: stats.sets, deletes: stats.deletes, evictions: stats.evictions, expirations: stats.expirations },
    { sets: 4, deletes: 1, evictions: 1, expirations: 0 },
  );
  assert.deepEqual({ hits: stats.hits, misses: stats.misses, hitRatio: stats.hitRatio }, { hits: 1, misses: 1, hitRatio: 0.5 });
});
