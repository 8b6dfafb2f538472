// The JS RedisStore (pepperpy-caching/redis) against a real redis-server: the
// calls on one key, TTLs, the documents (byte for byte the Rust store's),
// the typed errors (the main entry's classes), the capacity policies, the
// walks, stats and getOrSet's cross-process load.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { before, after, describe, test } from "node:test";
import { createClient } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startServer } from "./redis-support.mjs";

const { CacheKeyError, CachePatternError, CachePolicyError, CacheSerializationError, CacheBackendError, CacheError, LRUPolicy, TTLPolicy, S3FIFOPolicy } =
  main;

let server;
let client;
let raw; // bytes, for what the store wrote
let n = 0;
/** A fresh prefix per test: stores never see each other's keys. */
const fresh = () => `t${++n}:`;

before(async () => {
  server = await startServer();
  client = await createClient({ url: server.url }).connect();
  raw = client.withTypeMapping({ 36: Buffer });
});
after(async () => {
  await client?.quit();
  await server?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("one key", () => {
  test("set, get, has, delete round-trip JSON values; a miss is undefined", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const values = [0, -1.5, "text", "", true, false, null, [1, [2, "x"]], { a: { b: [null] } }, 2 ** 53, 1e300, "日本"];
    for (const [i, value] of values.entries()) {
      await store.set(`k${i}`, value);
      assert.deepEqual(await store.get(`k${i}`), value);
      assert.equal(await store.has(`k${i}`), true);
    }
    assert.equal(await store.get("missing"), undefined);
    assert.equal(await store.has("missing"), false);
    assert.equal(await store.delete("k0"), true);
    assert.equal(await store.delete("k0"), false);
    assert.equal(await store.get("k0"), undefined);
    // A value is a copy: changing what was stored or read changes nothing.
    const object = { a: 1 };
    await store.set("o", object);
    object.a = 2;
    const read = await store.get("o");
    read.a = 3;
    assert.deepEqual(await store.get("o"), { a: 1 });
  });

  test("the documents are the Rust store's, byte for byte", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await store.set("k", "hi");
    assert.equal(await client.get(`${prefix}k`), '{"v":"hi"}');
    await store.set("k", [1, 2], { metadata: { a: 1 } });
    assert.equal(await client.get(`${prefix}k`), '{"v":[1,2],"m":{"a":1}}');
    await store.set("k", 1, { metadata: {} });
    assert.equal(await client.get(`${prefix}k`), '{"v":1}', "empty metadata is not stored");
    await store.set("k", { z: 1.5, a: [true, null] });
    assert.equal(await client.get(`${prefix}k`), '{"v":{"z":1.5,"a":[true,null]}}');
    await store.set("k", new Date(0));
    assert.equal(await client.get(`${prefix}k`), '{"v":"1970-01-01T00:00:00.000Z"}', "toJSON, as JSON.stringify");
  });

  test("set's fast encoding (JSON.stringify's text, vouched for by Rust) writes the Rust walk's bytes, and refuses what it refuses", async () => {
    // wasm.encode is the Rust walk of the value (the reference); set takes
    // the fast way whenever it may, so each value here goes through it or
    // falls back: the bytes must be the walk's either way.
    const wasm = createRequire(import.meta.url)(join(dirname(createRequire(import.meta.url).resolve("pepperpy-caching/redis")), "wasm", "redis.cjs"));
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    class WithToJSON {
      toJSON(key) {
        return { key, at: [1, 2] };
      }
    }
    const good = [
      -0, 0, 1e21, -1e21, 1e20, 1e16, 5e-324, -5e-324, 2 ** 53, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 60, 2 ** 64, 2 ** 70, 1e-7, 1.5e-7, 123e-20,
      0.1 + 0.2, 1.7976931348623157e308, 123456789012345680000, 12345678901234,
      "a\u2028b\u2029c", "\u0000\u0001\u001f\u007f\"\\/\b\f\n\r\t", "😀 日本", "",
      { b: 1, a: 2, 1: 3, 0: 4 }, [1, "x", null, { z: [] }], null, true, false, [undefined, 1], { u: undefined, n: null },
      Object.assign(Object.create(null), { x: [1e21] }), new Date(1732560000123), { when: new Date(0), list: [new Date(1)] },
      new WithToJSON(), { inner: new WithToJSON() }, [new WithToJSON()], { toJSON: 1, x: 2 },
      { get g() { return 5; } }, Object.defineProperty({ a: 1 }, "hidden", { value: 2, enumerable: false }),
      { [Symbol("s")]: 1, kept: 1 },
    ];
    for (const [i, value] of good.entries()) {
      const expected = wasm.encode(value, undefined, []);
      await store.set(`g${i}`, value);
      assert.equal(await client.get(`${prefix}g${i}`), expected, `value ${i}: ${expected}`);
      await store.set(`m${i}`, value, { metadata: { i }, tags: ["t"] });
      assert.equal(await client.get(`${prefix}m${i}`), wasm.encode(value, { i }, ["t"]), `value ${i} with metadata and tags`);
    }
    await store.setMany(good.map((value, i) => [`s${i}`, value]));
    for (const [i, value] of good.entries()) assert.equal(await client.get(`${prefix}s${i}`), wasm.encode(value, undefined, []), `setMany ${i}`);
    // What the walk refuses, set refuses with the walk's words.
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    let deep = 1;
    for (let i = 0; i < 101; i++) deep = [deep];
    const bad = [
      NaN, Infinity, [1, -Infinity], { x: [NaN] }, { n: null, x: Infinity }, "\ud800", ["ok", "\udfff"], { "\udc00": 1 }, { f: () => 1 }, [() => 1], { s: Symbol("s") },
      { b: 5n }, new Map([[1, 2]]), new Set([1]), { m: new Map() }, new Uint8Array(2), new Number(1), [new String("x")], cyclic, deep,
      { toJSON: () => NaN }, { toJSON: () => new Map() }, new (class Point { x = 1; })(),
      { get boom() { throw new Error("getter"); } },
    ];
    for (const [i, value] of bad.entries()) {
      let walk;
      try {
        wasm.encode(value, undefined, []);
      } catch (error) {
        walk = error;
      }
      assert.ok(walk, `bad ${i} is refused by the walk`);
      await assert.rejects(store.set(`b${i}`, value), (error) => error instanceof CacheSerializationError && error.message === walk.message, `bad ${i}: ${walk.message}`);
      assert.equal(await client.exists(`${prefix}b${i}`), 0);
    }
    // A toJSON that stores meanwhile (re-entrance) changes nothing.
    const sneaky = { a: null, b: { toJSON: () => (store.set("inner", [null, null, null]).catch(() => {}), Infinity) } };
    await assert.rejects(store.set("sneaky", sneaky), CacheSerializationError);
  });

  test("it reads what the Rust store writes: stamps, idle headers, tags, other field orders", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    const docs = [
      ['{"f":1732560000123,"v":"a}","m":{"x":1}}', "a}", { x: 1 }],
      ['{"m":{"x":2},"v":3}', 3, { x: 2 }],
      ['{"t":["a","b"],"v":{"m":1}}', { m: 1 }, {}],
      ['{"v":123456789012345678901234567890}', 123456789012345678901234567890, {}],
      ['{"v":1.5545998860365312e215}', 1.5545998860365312e215, {}],
    ];
    for (const [doc, value, metadata] of docs) {
      await client.set(`${prefix}k`, doc);
      assert.deepEqual(await store.get("k"), value, doc);
      assert.deepEqual(await store.getMetadata("k"), metadata, doc);
    }
    // A load's placeholder (a hash at the entry's key) is no entry.
    await client.hSet(`${prefix}p`, "load", "token");
    assert.equal(await store.get("p"), undefined);
    assert.equal(await store.has("p"), false);
    assert.equal(await store.getMetadata("p"), undefined);
  });

  test("a document the Rust store could not read is a CacheSerializationError, not a crash", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    // Deeper than serde_json reads (128 levels): Rust refuses it too.
    const deep = `{"v":${"[".repeat(130)}1${"]".repeat(130)}}`;
    for (const doc of ["not json", '{"x":1}', '{"v":1,}', deep, "\xff"]) {
      await client.set(`${prefix}k`, doc);
      await assert.rejects(store.get("k"), CacheSerializationError, doc.slice(0, 20));
    }
  });

  test("what JSON cannot hold is refused, and nothing is written", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    let deep = 1;
    for (let i = 0; i < 101; i++) deep = [deep];
    let deepest = 1;
    for (let i = 0; i < 100; i++) deepest = [deepest];
    const bad = [NaN, Infinity, -Infinity, { x: [NaN] }, "\ud800", { "\udc00": 1 }, () => 1, Symbol("s"), 5n, new Map(), new Uint8Array(2), cyclic, deep, undefined];
    for (const value of bad) {
      await assert.rejects(store.set("k", value), CacheSerializationError, String(typeof value));
    }
    await assert.rejects(store.set("k", 1, { metadata: { a: NaN } }), CacheSerializationError);
    await assert.rejects(store.set("k", 1, { metadata: [1] }), CacheSerializationError);
    assert.equal(await client.exists(`${prefix}k`), 0);
    assert.equal(store.getStats().sets, 0);
    // The deepest value Rust accepts reads back.
    await store.set("k", deepest);
    assert.deepEqual(await store.get("k"), deepest);
  });

  test("bad keys, prefixes and options are the main entry's error classes", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    for (const key of ["", 1, undefined, "x".repeat(8 * 1024 + 1), "\ud800"]) {
      await assert.rejects(store.get(key), CacheKeyError, String(key).slice(0, 10));
      await assert.rejects(store.set(key, 1), CacheKeyError);
    }
    const error = await store.get("").catch((e) => e);
    assert.ok(error instanceof CacheError && error instanceof main.CacheKeyError);
    for (const prefix of [":", "a", "a:b:", "app_"]) {
      assert.throws(() => new RedisStore({ client, prefix }), CachePolicyError, prefix);
    }
    assert.throws(() => new RedisStore({ client, prefix: "p:", policy: new S3FIFOPolicy({ maxSize: 10 }) }), CachePolicyError);
    assert.throws(() => new RedisStore({ client, prefix: "p:", buckets: 4 }), CachePolicyError, "buckets on one node");
    assert.throws(() => new RedisStore({ client, prefx: "p:" }), CachePolicyError, "a misspelt option");
    assert.throws(() => new RedisStore({ client: {}, prefix: "p:" }), CachePolicyError, "not a client");
    await assert.rejects(store.set("k", 1, { ttl: 0 }), CachePolicyError);
    await assert.rejects(store.set("k", 1, { ttl: -1 }), CachePolicyError);
    await assert.rejects(store.set("k", 1, { tll: 5 }), CachePolicyError);
    await assert.rejects(store.invalidate(""), CachePatternError);
    await assert.rejects(store.keys("x".repeat(1025)), CachePatternError);
    await assert.rejects(store.keys(7), CachePatternError);
  });

  test("metadata: read, merged with the value's text kept byte for byte", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await client.set(`${prefix}k`, '{"v":{"z":123456789012345678901234567890,"a":1.0},"m":{"a":1,"b":2}}');
    assert.equal(await store.updateMetadata("k", { b: 3, c: 4 }), true);
    const doc = await client.get(`${prefix}k`);
    assert.ok(doc.startsWith('{"v":{"z":123456789012345678901234567890,"a":1.0},"m":'), doc);
    assert.deepEqual(await store.getMetadata("k"), { a: 1, b: 3, c: 4 });
    assert.equal(await store.updateMetadata("missing", { a: 1 }), false);
    await store.set("plain", 1);
    assert.deepEqual(await store.getMetadata("plain"), {});
  });

  test("TTLs: seconds, rounded up to whole ms, the policy's or the store's default", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await store.set("short", 1, { ttl: 0.0005 });
    assert.ok((await client.pTTL(`${prefix}short`)) <= 1);
    await store.set("k", 1, { ttl: 0.05 });
    const pttl = await client.pTTL(`${prefix}k`);
    assert.ok(pttl > 0 && pttl <= 50, String(pttl));
    await store.set("forever", 1);
    assert.equal(await client.pTTL(`${prefix}forever`), -1);
    await sleep(80);
    assert.equal(await store.get("k"), undefined);
    const byDefault = new RedisStore({ client, prefix: fresh(), defaultTtl: 30 });
    await byDefault.set("k", 1);
    const t = await client.pTTL(`${byDefault.prefix}k`);
    assert.ok(t > 29_000 && t <= 30_000, String(t));
    const byPolicy = new RedisStore({ client, prefix: fresh(), policy: new TTLPolicy({ ttl: 20 }) });
    await byPolicy.set("k", 1);
    assert.ok((await client.pTTL(`${byPolicy.prefix}k`)) > 19_000);
    await byPolicy.set("own", 1, { ttl: 5 });
    assert.ok((await client.pTTL(`${byPolicy.prefix}own`)) <= 5000);
    assert.throws(() => new RedisStore({ client, prefix: fresh(), defaultTtl: 5, policy: new TTLPolicy({ ttl: 20 }) }), CachePolicyError);
  });

  test("a server that is gone is a CacheBackendError", async () => {
    const own = await startServer();
    const c = await createClient({ url: own.url, socket: { reconnectStrategy: false } }).connect();
    c.on("error", () => {});
    const store = new RedisStore({ client: c, prefix: "gone:" });
    await store.set("k", 1);
    await own.kill();
    await sleep(100);
    await assert.rejects(store.get("k"), CacheBackendError);
    await assert.rejects(store.set("k", 2), CacheBackendError);
  });
});

describe("capacity (LRU, TTL) shared through Redis's index", () => {
  test("LRU: two stores on one prefix share maxSize; a read keeps an entry; the least recently used goes", async () => {
    const prefix = fresh();
    const a = new RedisStore({ client, prefix, policy: new LRUPolicy({ maxSize: 3 }) });
    const other = await createClient({ url: server.url }).connect();
    try {
      const b = new RedisStore({ client: other, prefix, policy: new LRUPolicy({ maxSize: 3 }) });
      await a.set("1", 1);
      await b.set("2", 2);
      await a.set("3", 3);
      assert.equal(await b.get("1"), 1, "read by b: the most recently used now");
      await b.set("4", 4);
      assert.equal(await a.get("2"), undefined, "2 was the least recently used");
      assert.equal(await a.size(), 3);
      assert.deepEqual((await b.keys()).sort(), ["1", "3", "4"]);
      assert.equal(a.getStats().evictions + b.getStats().evictions, 1);
      // The index keys hold U+FFFF (no key may): never listed, never counted.
      const all = await raw.keys(`${prefix}*`);
      assert.ok(all.some((k) => k.includes(Buffer.from("\uFFFF"))), "the index is there");
    } finally {
      await other.quit();
    }
  });

  test("TTL with a capacity: the soonest to expire goes first", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix, policy: new TTLPolicy({ ttl: 60, maxSize: 2 }) });
    await store.set("long", 1, { ttl: 100 });
    await store.set("short", 2, { ttl: 10 });
    await store.set("new", 3, { ttl: 50 });
    assert.equal(await store.get("short"), undefined);
    assert.equal(await store.get("long"), 1);
    assert.equal(await store.size(), 2);
  });

  test("a lost index (FLUSH of its keys) is rebuilt from the entries, down to the capacity", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix, policy: new LRUPolicy({ maxSize: 4 }) });
    for (let i = 0; i < 4; i++) await store.set(`k${i}`, i);
    for (const key of await raw.keys(`${prefix}*`)) if (key.includes(Buffer.from("\uFFFF"))) await raw.del(key);
    // Entries written behind the store's back, over the capacity.
    await client.set(`${prefix}extra1`, '{"v":1}');
    await client.set(`${prefix}extra2`, '{"v":2}');
    await store.set("after", 1);
    assert.equal(await store.size(), 4);
    assert.equal((await store.keys()).length, 4);
    assert.equal(await store.get("after"), 1, "the write that found the index lost stays");
  });
});

describe("walks", () => {
  test("keys, invalidate, clear and size see only the store's entries", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    const neighbour = new RedisStore({ client, prefix: fresh() });
    await neighbour.set("user:1", 1);
    await client.set("nope", "x");
    for (const key of ["user:1", "user:2", "post:1", "a*b", "[x]"]) await store.set(key, key);
    await client.hSet(`${prefix}user:3`, "load", "t"); // a load's placeholder: no entry
    assert.deepEqual((await store.keys()).sort(), ["[x]", "a*b", "post:1", "user:1", "user:2"]);
    assert.deepEqual((await store.keys("user:*")).sort(), ["user:1", "user:2"]);
    assert.deepEqual(await store.keys("a\\*b"), ["a*b"]);
    assert.equal(await store.size(), 5);
    assert.equal(await store.invalidate("user:*"), 2);
    assert.equal(await client.exists(`${prefix}user:3`), 0, "the placeholder went too (its load is cancelled)");
    assert.equal(await store.invalidate("\\[x\\]"), 1);
    assert.equal(await store.size(), 2);
    await store.clear();
    assert.equal(await store.size(), 0);
    assert.equal(await neighbour.get("user:1"), 1);
    assert.equal(await client.get("nope"), "x");
    assert.equal(store.getStats().deletes, 5);
    const bare = new RedisStore({ client });
    await assert.rejects(bare.clear(), CachePolicyError);
    await assert.rejects(bare.invalidate("*"), CachePolicyError);
    assert.equal(await client.get("nope"), "x");
  });

  test("a walk over many pages", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await Promise.all(Array.from({ length: 2500 }, (_, i) => store.set(`k${i}`, i)));
    assert.equal(await store.size(), 2500);
    assert.equal((await store.keys("k1*")).length, 1 + 10 + 100 + 1000);
    assert.equal(await store.invalidate("k*"), 2500);
    assert.equal(await store.size(), 0);
  });
});

describe("getOrSet", () => {
  test("a stampede from two stores (two clients) runs one loader; every caller gets the value", async () => {
    const prefix = fresh();
    const other = await createClient({ url: server.url }).connect();
    try {
      const stores = [new RedisStore({ client, prefix }), new RedisStore({ client: other, prefix })];
      let runs = 0;
      const loader = async () => {
        runs++;
        await sleep(50);
        return { loaded: true };
      };
      const got = await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % 2].getOrSet("k", loader)));
      assert.equal(runs, 1);
      for (const value of got) assert.deepEqual(value, { loaded: true });
      assert.notEqual(got[0], got[2], "a follower gets its own copy");
      assert.equal(await client.get(`${prefix}k`), '{"v":{"loaded":true}}');
      assert.equal(stores[0].getStats().loads + stores[1].getStats().loads, 1);
    } finally {
      await other.quit();
    }
  });

  test("a failing loader: its error to every caller, the placeholder removed, the next call loads", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    const boom = new Error("boom");
    const calls = await Promise.allSettled([1, 2, 3].map(() => store.getOrSet("k", async () => Promise.reject(boom))));
    for (const call of calls) assert.equal(call.reason, boom);
    assert.equal(await client.exists(`${prefix}k`), 0);
    assert.equal(await store.getOrSet("k", () => 7), 7);
    assert.equal(store.getStats().loadFailures, 1);
    await assert.rejects(store.getOrSet("u", () => undefined), CacheSerializationError);
    await assert.rejects(store.getOrSet("n", () => NaN), CacheSerializationError);
    assert.equal(await client.exists(`${prefix}n`), 0, "nothing stored, the placeholder removed");
  });

  test("a write during the load wins: the loaded value is not stored over it", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    const value = await store.getOrSet("k", async () => {
      await store.set("k", "written");
      return "loaded";
    });
    assert.equal(value, "loaded");
    assert.equal(await store.get("k"), "written");
  });

  test("hardTimeout, softTimeout, signal, re-entrance", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    await assert.rejects(store.getOrSet("slow", () => sleep(500).then(() => 1), { hardTimeout: 0.05 }), main.CacheTimeoutError);
    assert.equal(await store.getOrSet("slow", () => 2), 2, "the timed-out load's placeholder was released");
    await assert.rejects(store.getOrSet("soft", () => sleep(200).then(() => 3), { softTimeout: 0.05 }), main.CacheTimeoutError);
    await sleep(250);
    assert.equal(await store.get("soft"), 3, "the load went on and stored");
    const controller = new AbortController();
    const aborted = store.getOrSet("sig", () => sleep(200).then(() => 4), { signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(aborted, /stop/);
    await assert.rejects(
      store.getOrSet("self", () => store.getOrSet("self", () => 1)),
      main.CacheReentrantLoadError,
    );
    await assert.rejects(store.getOrSet("x", "not a function"), TypeError);
  });

  test("a load's placeholder is in the Rust store's form, with the lease", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix, lockLease: 2 });
    let seen;
    await store.getOrSet("k", async () => {
      seen = { type: await client.type(`${prefix}k`), pttl: await client.pTTL(`${prefix}k`), fields: await client.hKeys(`${prefix}k`) };
      return 1;
    });
    assert.equal(seen.type, "hash");
    assert.deepEqual(seen.fields, ["load"]);
    assert.ok(seen.pttl > 1000 && seen.pttl <= 2000, String(seen.pttl));
  });
});

describe("stale-while-revalidate (grace)", () => {
  test("a stale value is served at once while one refresh runs; then the new value", async () => {
    for (const policy of [undefined, new LRUPolicy({ maxSize: 100 })]) {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy });
      let version = 0;
      let runs = 0;
      const loader = async () => {
        runs++;
        await sleep(30);
        return ++version;
      };
      const options = { ttl: 0.3, grace: 10 };
      assert.equal(await store.getOrSet("k", loader, options), 1);
      assert.match(await client.get(`${prefix}k`), /^\{"f":\d+,"v":1\}$/, "stamped as the Rust store stamps");
      await sleep(350);
      const stale = await Promise.all([1, 2, 3].map(() => store.getOrSet("k", loader, options)));
      assert.deepEqual(stale, [1, 1, 1], "served stale at once");
      await sleep(100);
      assert.equal(await store.getOrSet("k", loader, options), 2, "the refresh stored its value");
      assert.equal(runs, 2, "one refresh");
      const stats = store.getStats();
      assert.equal(stats.refreshes, 1);
      assert.ok(stats.staleHits >= 3);
    }
  });

  test("a failing refresh keeps the stale value and backs off (the lock holds the back-off marker)", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await store.getOrSet("k", () => "old", { ttl: 0.05, grace: 10 });
    await sleep(80);
    let waited;
    const value = await store.getOrSet("k", () => Promise.reject(new Error("down")), {
      ttl: 0.05,
      grace: 10,
      retryAfter: 5,
      waitUntil: (p) => (waited = p),
    });
    assert.equal(value, "old");
    await waited;
    assert.equal(store.getStats().refreshFailures, 1);
    const lock = await raw.get(Buffer.from(`${prefix}\uFFFFlock:k`));
    assert.match(String(lock), /^backoff:1:\d+$/);
    assert.equal(await store.getOrSet("k", () => "new", { ttl: 0.05, grace: 10 }), "old", "no refresh during the back-off");
    await assert.rejects(store.getOrSet("k", () => 1, { grace: 5 }), CachePolicyError, "grace needs a ttl");
  });
});

describe("tags", () => {
  test("tagged sets and loads; invalidateTags removes them (and cancels a load in flight); getTags", async () => {
    for (const policy of [undefined, new LRUPolicy({ maxSize: 100 })]) {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy });
      await store.set("a", 1, { tags: ["red", "big"] });
      await store.set("b", 2, { tags: ["red"], ttl: 60 });
      await store.set("c", 3, { tags: ["blue"] });
      await store.set("d", 4);
      assert.equal(await client.get(`${prefix}a`), '{"t":["red","big"],"v":1}', "the Rust store's tagged form");
      assert.deepEqual(await store.getTags("a"), ["red", "big"]);
      assert.deepEqual(await store.getTags("d"), []);
      assert.equal(await store.getTags("none"), undefined);
      // Re-set without the tag: the tag set's stale member is left alone.
      await store.set("b", 2.5);
      assert.equal(await store.invalidateTags(["red", "red"]), 1);
      assert.equal(await store.get("a"), undefined);
      assert.equal(await store.get("b"), 2.5);
      assert.equal(await store.get("c"), 3);
      // A tagged load: an invalidateTags while it runs cancels its write.
      const loaded = await store.getOrSet(
        "e",
        async () => {
          assert.equal(await store.invalidateTags(["blue"]), 1);
          return 5;
        },
        { tags: ["blue"] },
      );
      assert.equal(loaded, 5);
      assert.equal(await store.get("e"), undefined, "the load stored nothing");
      assert.equal(await store.get("c"), undefined);
      assert.equal(await store.getOrSet("f", () => 6, { tags: ["green"] }), 6);
      assert.equal(await store.invalidateTags(["green"]), 1);
      if (policy !== undefined) assert.equal(await store.size(), 2);
    }
    const store = new RedisStore({ client, prefix: fresh() });
    await assert.rejects(store.set("k", 1, { tags: "red" }), CachePolicyError);
    await assert.rejects(store.set("k", 1, { tags: ["x".repeat(257)] }), CachePolicyError);
    await assert.rejects(store.set("k", 1, { tags: ["a", "a"] }), CachePolicyError);
    await assert.rejects(store.invalidateTags("red"), CachePolicyError);
    await assert.rejects(store.invalidateTags([""]), CachePolicyError);
    assert.equal(await store.invalidateTags([]), 0);
  });
});

describe("time-to-idle", () => {
  test("an entry read within its idle time lives on; one left alone expires; the Rust store's header", async () => {
    for (const policy of [undefined, new LRUPolicy({ maxSize: 10 }), new TTLPolicy({ ttl: 60, idle: 0.3 })]) {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy });
      const idle = policy instanceof TTLPolicy ? undefined : 0.3;
      await store.set("read", 1, { idle });
      await store.set("left", 2, { idle });
      assert.match(await client.get(`${prefix}read`), /^\{"i":300,"d":\d+,"v":1\}$/);
      for (let i = 0; i < 4; i++) {
        await sleep(120);
        assert.equal(await store.get("read"), 1, `read ${i}`);
      }
      assert.equal(await store.get("left"), undefined, "not read for 480 ms");
      await assert.rejects(store.set("k", 1, { idle: 0 }), CachePolicyError);
    }
  });
});

describe("batch calls", () => {
  test("getMany, setMany, deleteMany: one round trip per bucket, the single-key calls' results", async () => {
    for (const policy of [undefined, new LRUPolicy({ maxSize: 1000 }), new TTLPolicy({ ttl: 60, idle: 30 })]) {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy });
      const pairs = Array.from({ length: 250 }, (_, i) => [`k${i}`, { i }]);
      await store.setMany(pairs, { ttl: 60 });
      const doc = await client.get(`${prefix}k7`);
      if (policy instanceof TTLPolicy) assert.match(doc, /^\{"i":30000,"d":\d+,"v":\{"i":7\}\}$/, "the policy's idle header");
      else assert.equal(doc, '{"v":{"i":7}}');
      const got = await store.getMany(["k0", "missing", "k249", "k0"]);
      assert.deepEqual(got, [{ i: 0 }, undefined, { i: 249 }, { i: 0 }]);
      assert.equal(store.getStats().hits, 3);
      assert.equal(store.getStats().misses, 1);
      assert.equal(await store.deleteMany(["k0", "k1", "missing", "k1"]), 2);
      assert.equal(await store.size(), 248);
      await assert.rejects(store.setMany([["ok", 1], ["bad", NaN]]), CacheSerializationError);
      assert.equal(await store.has("ok"), false, "nothing written when one value is refused");
      await assert.rejects(store.getMany(["ok", ""]), CacheKeyError);
      // Not a list of keys at all: a programming error, the MemoryStore's TypeError (as setMany's); any iterable works, as there.
      await assert.rejects(store.getMany("k"), TypeError);
      assert.deepEqual(await store.getMany(new Set(["k0", "missing"])), [await store.get("k0"), undefined]);
      assert.deepEqual(await store.getMany([]), []);
      await store.setMany([["t1", 1], ["t2", 2]], { tags: ["batch"] });
      assert.equal(await store.invalidateTags(["batch"]), 2);
    }
  });
});

describe("hostile", () => {
  test("keys holding what the store did not write; loaders that throw synchronously; a killed server mid-load", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client, prefix });
    await client.rPush(`${prefix}list`, "x");
    await client.hSet(`${prefix}hash`, "other", "1");
    assert.equal(await store.get("list"), undefined, "another type reads as a miss, as in Rust");
    assert.equal(await store.has("list"), false);
    await assert.rejects(store.getOrSet("hash", () => 1), CacheBackendError, "a foreign hash: no load waits on it for ever");
    const sync = new Error("sync");
    await assert.rejects(
      store.getOrSet("s", () => {
        throw sync;
      }),
      (e) => e === sync,
    );
    assert.equal(await client.exists(`${prefix}s`), 0, "its placeholder released");
    // A server killed while a loader runs: the load's store fails as CacheBackendError; a restarted server serves again.
    const own = await startServer();
    const c = await createClient({ url: own.url, socket: { reconnectStrategy: () => 50 } }).connect();
    c.on("error", () => {});
    try {
      const s = new RedisStore({ client: c, prefix: "mid:" });
      await assert.rejects(
        s.getOrSet("k", async () => {
          await own.kill();
          await sleep(50);
          return 1;
        }),
        CacheBackendError,
      );
    } finally {
      c.destroy();
    }
  });
});
