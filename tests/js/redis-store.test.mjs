// The JS RedisStore (pepperpy-caching/redis) against a real redis-server: the
// calls on one key, TTLs, the documents (byte for byte the Rust store's),
// the typed errors (the main entry's classes), the capacity policies, the
// walks, stats and getOrSet's cross-process load.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { before, after, describe, test } from "node:test";
import { createClient } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startRedis } from "./redis-server.mjs";

const { CacheKeyError, CachePatternError, CachePolicyError, CacheSerializationError, CacheBackendError, CacheError, LRUPolicy, TTLPolicy, S3FIFOPolicy } =
  main;

let server;
let client;
let raw; // bytes, for what the store wrote
let n = 0;
/** A fresh prefix per test: stores never see each other's keys. */
const fresh = () => `t${++n}:`;

before(async () => {
  server = await startRedis();
  client = await createClient({ url: server.url }).connect();
  raw = client.withTypeMapping({ 36: Buffer });
});
after(async () => {
  await client?.quit();
  server?.stop();
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
    const own = await startRedis();
    const c = await createClient({ url: own.url, socket: { reconnectStrategy: false } }).connect();
    c.on("error", () => {});
    const store = new RedisStore({ client: c, prefix: "gone:" });
    await store.set("k", 1);
    own.stop();
    await sleep(100);
    await assert.rejects(store.get("k"), CacheBackendError);
    await assert.rejects(store.set("k", 2), CacheBackendError);
  });
});
