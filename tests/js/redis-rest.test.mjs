// The JS RedisStore over REST (issue 24 item 2): an @upstash/redis `Redis`
// as the client, against a local Upstash REST endpoint (./upstash-endpoint.mjs)
// in front of a real redis-server:
//   - the keyspace: every key a store writes is UTF-8 (the internal keys'
//     marker is U+FFFF, which no key and no prefix may hold), so a JSON body
//     carries it; internal keys are never listed, counted or deleted;
//   - the store's behaviour over REST: values and documents byte for byte,
//     metadata, TTLs, walks, tags, capacity, getOrSet (one loader), SWR;
//   - interop with the Rust store on the same prefix (examples/redis_interop.rs);
//   - failures as CacheBackendError: a bad token, an endpoint that is down,
//     hangs, answers 500 or no JSON; NOSCRIPT after SCRIPT FLUSH.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createServer } from "node:net";
import { Redis } from "@upstash/redis";
import { createClient } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startServer, freePort } from "./redis-support.mjs";
import { startEndpoint } from "./upstash-endpoint.mjs";
import { buildDriver, startRust } from "./redis-interop.mjs";

const { CacheKeyError, CachePolicyError, CacheBackendError, LRUPolicy, TTLPolicy, MemoryStore } = main;

let server;
let endpoint;
let raw; // node-redis with Buffers: what is really in Redis
let n = 0;
const fresh = () => `rest${++n}:`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MARK = "\uFFFF";

/** An @upstash/redis client of the local endpoint (no telemetry headers, no retries unless asked). */
function upstash(options = {}) {
  return new Redis({ url: endpoint.url, token: endpoint.token, enableTelemetry: false, ...options });
}

before(async () => {
  server = await startServer();
  endpoint = await startEndpoint({ redisUrl: server.url });
  const c = await createClient({ url: server.url }).connect();
  raw = c.withTypeMapping({ 36: Buffer, 43: Buffer });
});
after(async () => {
  await raw?.quit();
  await endpoint?.stop();
  await server?.stop();
});

/** Every raw key under `prefix`, as bytes. */
async function rawKeys(prefix) {
  return (await raw.keys(`${prefix}*`)).sort(Buffer.compare);
}

describe("the keyspace a JSON body can carry", () => {
  test("a bounded store's index keys and a refresh lock are UTF-8: prefix, U+FFFF, name", async () => {
    // Through node-redis: the keyspace itself, whatever the client.
    const c = await createClient({ url: server.url }).connect();
    try {
      const prefix = fresh();
      const store = new RedisStore({ client: c, prefix, policy: new LRUPolicy({ maxSize: 10 }) });
      await store.set("k", 1, { ttl: 60 });
      await store.getOrSet("s", async () => 1, { ttl: 0.05, grace: 60 });
      await sleep(80);
      await store.getOrSet("s", async () => 2, { ttl: 0.05, grace: 60 });
      const keys = await rawKeys(prefix);
      for (const key of keys) {
        assert.doesNotThrow(() => new TextDecoder("utf-8", { fatal: true }).decode(key), `${JSON.stringify(key.toString("latin1"))} is UTF-8`);
      }
      const names = keys.map((k) => k.toString("utf8"));
      assert.ok(names.includes(`${prefix}${MARK}lru`), names.join(" "));
      assert.ok(names.includes(`${prefix}${MARK}expiry`), names.join(" "));
    } finally {
      await c.quit();
    }
  });

  test("a key or prefix holding U+FFFF is refused by both stores, with the core's message, and nothing is written", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix });
    const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    for (const key of [MARK, `a${MARK}`, `${MARK}lru`, `x${MARK}y`, `😀${MARK}`]) {
      for (const s of [store, memory]) {
        await assert.rejects(s.set(key, 1), (e) => e instanceof CacheKeyError && /U\+FFFF/.test(e.message), `${JSON.stringify(key)}`);
        await assert.rejects(s.get(key), CacheKeyError);
        await assert.rejects(s.getOrSet(key, async () => 1), CacheKeyError);
      }
      assert.throws(() => memory.setSync(key, 1), CacheKeyError);
      assert.throws(() => memory.getSync(key), CacheKeyError);
    }
    // Its neighbours are keys.
    for (const key of ["\uFFFE", "\uFFFD", "\uEFFF", "\u{10FFFF}", "\u{1FFFF}"]) {
      await store.set(key, key);
      assert.equal(await store.get(key), key);
      memory.setSync(key, key);
      assert.equal(memory.getSync(key), key);
    }
    assert.equal(await store.size(), 5);
    assert.equal(memory.size, 5);
    for (const bad of [`a${MARK}:`, `${MARK}:`]) {
      assert.throws(() => new RedisStore({ client: upstash(), prefix: bad }), (e) => e instanceof CachePolicyError && /U\+FFFF/.test(e.message));
    }
  });

  test("internal keys are never listed, counted or deleted: indexes, locks, tag sets, and 0xFF keys an earlier version left", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix, policy: new LRUPolicy({ maxSize: 100 }) });
    await store.set("a", 1, { tags: ["t"], ttl: 60 });
    await store.set("b", 2);
    await store.getOrSet("s", async () => 1, { ttl: 0.05, grace: 60 });
    await sleep(80);
    await store.getOrSet("s", async () => 2, { ttl: 0.05, grace: 60, retryAfter: 30 });
    // What 0.2 wrote (0xFF marker): orphaned, not this version's.
    await raw.set(Buffer.concat([Buffer.from(prefix), Buffer.from([0xff]), Buffer.from("lru")]), "x");
    await raw.set(Buffer.concat([Buffer.from(prefix), Buffer.from([0xff]), Buffer.from("lock:a")]), "x");
    const internal = (await rawKeys(prefix)).filter((k) => k.includes(Buffer.from(MARK)) || k.includes(0xff));
    assert.ok(internal.length >= 4, `${internal.length} internal keys`);
    assert.deepEqual((await store.keys()).sort(), ["a", "b", "s"]);
    assert.equal(await store.size(), 3);
    assert.deepEqual(await store.keys("*lru*"), []);
    assert.deepEqual(await store.keys(`*lock*`), []);
    assert.equal(await store.invalidate("*"), 3);
    assert.equal(await store.size(), 0);
    // The old 0xFF keys are still there (the README's upgrade note says how to remove them).
    const left = (await rawKeys(prefix)).filter((k) => k.includes(0xff));
    assert.equal(left.length, 2);
    await store.clear();
    assert.equal((await rawKeys(prefix)).filter((k) => k.includes(0xff)).length, 2, "clear() does not see them");
  });
});

describe("the store over REST", () => {
  test("a bounded store round-trips over @upstash/redis: capacity, index, eviction", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix, policy: new LRUPolicy({ maxSize: 3 }) });
    for (let i = 0; i < 5; i++) await store.set(`k${i}`, { i });
    assert.equal(await store.size(), 3);
    assert.deepEqual((await store.keys()).sort(), ["k2", "k3", "k4"]);
    assert.deepEqual(await store.get("k2"), { i: 2 });
    await store.set("k5", 5);
    assert.deepEqual((await store.keys()).sort(), ["k2", "k4", "k5"], "k2 was read: k3 went");
    const index = await raw.zRange(Buffer.from(`${prefix}${MARK}lru`), 0, -1);
    assert.deepEqual(
      index.map(String).filter((m) => m.startsWith(prefix)).sort(),
      [`${prefix}k2`, `${prefix}k4`, `${prefix}k5`],
    );
    const ttl = new RedisStore({ client: upstash(), prefix: fresh(), policy: new TTLPolicy({ maxSize: 2, ttl: 60 }) });
    for (let i = 0; i < 4; i++) await ttl.set(`t${i}`, i, { ttl: 10 + i });
    assert.deepEqual((await ttl.keys()).sort(), ["t2", "t3"]);
  });

  test("values and documents byte for byte; automaticDeserialization does not touch them", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix });
    const values = [0, -1.5, "text", "", "123", "true", "null", '{"a":1}', true, null, [1, [2, "x"]], { a: { b: [null] } }, 2 ** 53, 1e300, "日本", "😀\u0000\uFFFD\uFFFF", "x".repeat(200_000)];
    for (const [i, value] of values.entries()) {
      await store.set(`k${i}`, value);
      assert.deepEqual(await store.get(`k${i}`), value, `value ${i}`);
      assert.equal(await store.has(`k${i}`), true);
    }
    await store.set("d", { z: 1.5, a: [true, null] }, { metadata: { who: "rest" } });
    assert.equal((await raw.get(`${prefix}d`)).toString(), '{"v":{"z":1.5,"a":[true,null]},"m":{"who":"rest"}}');
    assert.deepEqual(await store.getMetadata("d"), { who: "rest" });
    // A document written by another client with bytes that are not UTF-8 in a string: read as the node-redis store reads it.
    const c = await createClient({ url: server.url }).connect();
    try {
      const other = new RedisStore({ client: c, prefix });
      await raw.set(`${prefix}bin`, Buffer.from([...Buffer.from('{"v":"'), 0xc3, 0xa9, ...Buffer.from('"}')]));
      assert.equal(await store.get("bin"), await other.get("bin"));
      await raw.set(`${prefix}bad`, Buffer.from([...Buffer.from('{"v":"'), 0xff, ...Buffer.from('"}')]));
      const viaRest = await store.get("bad").then((v) => ({ v }), (e) => ({ e: e.constructor.name }));
      const viaTcp = await other.get("bad").then((v) => ({ v }), (e) => ({ e: e.constructor.name }));
      assert.deepEqual(viaRest, viaTcp, "the same bytes reach the store by REST and by TCP");
    } finally {
      await c.quit();
    }
    assert.equal(await store.delete("k0"), true);
    assert.equal(await store.delete("k0"), false);
    assert.equal(await store.get("k0"), undefined);
    // A client with responseEncoding off and automaticDeserialization off: the same.
    const plain = new RedisStore({ client: upstash({ responseEncoding: false, automaticDeserialization: false }), prefix });
    assert.equal(await plain.get("k4"), "123");
    assert.deepEqual(await plain.get("k11"), { a: { b: [null] } });
    assert.equal(await plain.get("k15"), "😀\u0000\uFFFD\uFFFF");
  });

  test("TTLs, walks, tags, clear", async () => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix });
    await store.set("short", 1, { ttl: 0.05 });
    await store.set("u:1", 1, { tags: ["users"] });
    await store.set("u:2", 2, { tags: ["users", "admins"] });
    await store.set("p:1", 3);
    await sleep(80);
    assert.equal(await store.get("short"), undefined);
    assert.deepEqual((await store.keys("u:*")).sort(), ["u:1", "u:2"]);
    assert.equal(await store.invalidateTags(["admins"]), 1);
    assert.deepEqual((await store.keys()).sort(), ["p:1", "u:1"]);
    assert.equal(await store.invalidate("u:*"), 1);
    assert.equal(await store.size(), 1);
    // The batch calls, metadata updates, tags read back, idle times, a removal listener: every script path over REST.
    const removed = [];
    const bounded = new RedisStore({ client: upstash(), prefix: fresh(), policy: new LRUPolicy({ maxSize: 3 }), onRemove: (v, k, r) => removed.push(`${k}:${r}`) });
    await bounded.setMany([["a", 1], ["b", 2], ["c", 3]], { tags: ["batch"], idle: 60 });
    assert.deepEqual(await bounded.getMany(["a", "b", "x", "c"]), [1, 2, undefined, 3]);
    assert.equal(await bounded.updateMetadata("a", { n: 1 }), true);
    assert.deepEqual(await bounded.getMetadata("a"), { n: 1 });
    assert.deepEqual(await bounded.getTags("b"), ["batch"]);
    await bounded.set("d", 4); // evicts one of a, b, c
    const kept = (await bounded.keys()).sort();
    assert.equal(kept.length, 3);
    const evicted = ["a", "b", "c"].filter((k) => !kept.includes(k));
    assert.deepEqual(removed, [`${evicted[0]}:evicted`]);
    assert.equal(await bounded.deleteMany([...kept, "zz"]), 3);
    assert.equal(await bounded.size(), 0);
    assert.deepEqual(removed.slice(1).sort(), kept.map((k) => `${k}:deleted`));
    await store.clear();
    assert.equal(await store.size(), 0);
    const left = (await rawKeys(prefix)).map(String);
    assert.deepEqual(left.filter((k) => !k.includes(MARK)), [], `no entry left: ${left}`);
  });

  test("getOrSet: one loader for concurrent callers, stale-while-revalidate", async () => {
    const store = new RedisStore({ client: upstash(), prefix: fresh() });
    let loads = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        store.getOrSet("k", async () => {
          loads++;
          await sleep(100);
          return { loaded: loads };
        }),
      ),
    );
    assert.equal(loads, 1);
    for (const r of results) assert.deepEqual(r, { loaded: 1 });
    // Two stores (two "processes") on one prefix: one loader between them.
    const prefix = fresh();
    const a = new RedisStore({ client: upstash(), prefix });
    const b = new RedisStore({ client: upstash(), prefix });
    let ran = 0;
    const loader = async () => {
      ran++;
      await sleep(200);
      return "v";
    };
    assert.deepEqual(await Promise.all([a.getOrSet("x", loader), b.getOrSet("x", loader), b.getOrSet("x", loader)]), ["v", "v", "v"]);
    assert.equal(ran, 1);
    assert.equal(await a.getOrSet("swr", async () => 1, { ttl: 0.05, grace: 60 }), 1);
    await sleep(80);
    assert.equal(await a.getOrSet("swr", async () => 2, { ttl: 0.05, grace: 60 }), 1, "stale, refreshed behind");
    await sleep(100);
    assert.equal(await b.get("swr"), 2);
  });

  test("NOSCRIPT after SCRIPT FLUSH: the scripts are sent again (EVAL) and work", async () => {
    const store = new RedisStore({ client: upstash(), prefix: fresh(), policy: new LRUPolicy({ maxSize: 5 }) });
    await store.set("a", 1);
    await raw.sendCommand(["SCRIPT", "FLUSH"]);
    await store.set("b", 2);
    assert.deepEqual(await store.get("a"), 1);
    await raw.sendCommand(["SCRIPT", "FLUSH"]);
    await store.setMany([["c", 3], ["d", 4]]);
    assert.equal(await store.size(), 4);
  });

  test("an error reply reaches the store as Redis's: WRONGTYPE (a load's placeholder) is a miss, OOM a CacheBackendError", async (t) => {
    const prefix = fresh();
    const store = new RedisStore({ client: upstash(), prefix });
    await raw.sendCommand(["LPUSH", `${prefix}list`, "x"]);
    assert.equal(await store.get("list"), undefined, "as over TCP: WRONGTYPE is read as a load's placeholder");
    const own = await startServer(t, { args: ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"] });
    const ep = await startEndpoint({ redisUrl: own.url });
    t.after(() => ep.stop());
    const full = new RedisStore({ client: new Redis({ url: ep.url, token: ep.token, enableTelemetry: false }), prefix, policy: new LRUPolicy({ maxSize: 100 }) });
    const big = "x".repeat(300_000);
    let error;
    let written = 0;
    for (; written < 40 && error === undefined; written++) await full.set(`big${written}`, big).catch((e) => (error = e));
    assert.ok(error instanceof CacheBackendError && /OOM/.test(error.message), String(error));
    assert.ok(!/command was/.test(error.message), "the client's echo of the command is cut");
    assert.ok(written > 1, `${written}`);
    assert.equal(await full.get("big0"), big, "what was written before is read");
    await full.clear();
    await full.set("small", 1);
    assert.equal(await full.get("small"), 1);
  });

  test("statuses sent as they are (TYPE's \"string\", not base64) read as the client reads them: has() is right either way", async (t) => {
    const ep = await startEndpoint({ redisUrl: server.url, rawStatus: true });
    t.after(() => ep.stop());
    const prefix = fresh();
    const store = new RedisStore({ client: new Redis({ url: ep.url, token: ep.token, enableTelemetry: false }), prefix });
    await store.set("k", "v");
    assert.equal(await store.has("k"), true);
    assert.equal(await store.has("missing"), false);
    assert.equal(await store.get("k"), "v");
    assert.equal(await new RedisStore({ client: upstash(), prefix }).has("k"), true, "and with every status in base64");
  });

  test("a custom Requester is refused at construction, and so is nothing that is a client", () => {
    const custom = new Redis({ request: async () => ({ result: null }) });
    assert.throws(() => new RedisStore({ client: custom, prefix: "x:" }), (e) => e instanceof CachePolicyError && /custom Requester/.test(e.message));
    assert.throws(() => new RedisStore({ client: { client: {} }, prefix: "x:" }), (e) => e instanceof CachePolicyError && /@upstash\/redis/.test(e.message));
  });
});

describe("failures are CacheBackendError, within the deadline", () => {
  test("a wrong token", async () => {
    const store = new RedisStore({ client: new Redis({ url: endpoint.url, token: "wrong", enableTelemetry: false }), prefix: fresh() });
    await assert.rejects(store.get("k"), (e) => e instanceof CacheBackendError && /WRONGPASS|auth/i.test(e.message) && !/command was/.test(e.message));
    await assert.rejects(store.set("k", 1), CacheBackendError);
  });

  test("an endpoint that is not there: refused within the response timeout, retries included", async () => {
    const port = await freePort();
    const store = new RedisStore({ client: new Redis({ url: `http://127.0.0.1:${port}`, token: "t", enableTelemetry: false }), prefix: fresh(), responseTimeout: 0.5 });
    const start = Date.now();
    await assert.rejects(store.get("k"), CacheBackendError);
    assert.ok(Date.now() - start < 1500, `${Date.now() - start} ms`);
  });

  test("an endpoint that hangs: a timeout (CacheBackendError) after responseTimeout, and the store works when it answers again", async () => {
    const store = new RedisStore({ client: upstash(), prefix: fresh(), responseTimeout: 0.3 });
    await store.set("k", 1);
    endpoint.hang();
    try {
      const start = Date.now();
      await assert.rejects(store.get("k"), (e) => e instanceof CacheBackendError && /300 ms|timed out|no answer/i.test(e.message));
      const took = Date.now() - start;
      assert.ok(took >= 250 && took < 1500, `${took} ms`);
    } finally {
      endpoint.resume();
    }
    assert.equal(await store.get("k"), 1);
  });

  test("an endpoint that is not there, while the client backs off between retries: rejected at the deadline, not after the backoff", async () => {
    // @upstash/redis retries a failed fetch after exp(i) * 50 ms (50, 136, 369,
    // 1004 ms): at 600 ms it sleeps until ~1560 ms, which no abort interrupts.
    const port = await freePort();
    const client = new Redis({ url: `http://127.0.0.1:${port}`, token: "t", enableTelemetry: false });
    const store = new RedisStore({ client, prefix: fresh(), responseTimeout: 0.6 });
    const start = Date.now();
    await assert.rejects(store.get("k"), (e) => e instanceof CacheBackendError && /600 ms/.test(e.message));
    const took = Date.now() - start;
    assert.ok(took >= 550 && took < 1300, `${took} ms`);
  });

  test("an endpoint that answers 500, or no JSON (a proxy's error page)", async () => {
    const store = new RedisStore({ client: upstash({ retry: false }), prefix: fresh() });
    for (const [status, body] of [
      [500, { error: "SRH: Unable to connect to the Redis server" }],
      [502, "<html>Bad gateway</html>"],
      [200, { result: "not a pipeline" }],
      [200, [{}]],
      [200, [{ result: { not: "a reply" } }]],
      [200, [{ result: "%%%not base64" }]],
    ]) {
      endpoint.respond(status, body);
      try {
        await assert.rejects(store.get("k"), (e) => e instanceof CacheBackendError, `${status} ${JSON.stringify(body)}`);
      } finally {
        endpoint.respond(undefined);
      }
    }
    await store.set("k", 1);
    assert.equal(await store.get("k"), 1);
  });

  test("redis-server killed behind the endpoint: CacheBackendError; restarted: works again", async (t) => {
    const own = await startServer(t);
    const ep = await startEndpoint({ redisUrl: own.url });
    t.after(() => ep.stop());
    const store = new RedisStore({
      client: new Redis({ url: ep.url, token: ep.token, enableTelemetry: false, retry: false }),
      prefix: fresh(),
      policy: new LRUPolicy({ maxSize: 10 }),
    });
    await store.set("k", 1);
    await own.kill();
    await assert.rejects(store.get("k"), CacheBackendError);
    await assert.rejects(store.set("j", 1), CacheBackendError);
    await own.restart();
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = await store.set("j", 2).then(() => true, () => false);
      if (!ok) await sleep(100);
    }
    assert.ok(ok, "a set works again after the restart");
    assert.equal(await store.get("j"), 2);
  });
});

describe("interop with the Rust store on the same prefix", () => {
  before(() => buildDriver());

  test("Rust writes, JS over REST reads (and back); one LRU capacity; one loader across languages; invalidate", async (t) => {
    const prefix = fresh();
    const rust = await startRust(t, { urls: [server.url], prefix, lru: 6 });
    const store = new RedisStore({ client: upstash(), prefix, policy: new LRUPolicy({ maxSize: 6 }) });
    const values = [{ a: [1, 2.5, "日本"] }, "😀\u0000", 1e300, null, [true, { x: "" }]];
    for (const [i, value] of values.entries()) {
      await rust.call("set", { key: `r${i}`, value, metadata: { by: "rust" } });
      assert.deepEqual(await store.get(`r${i}`), value, `rust -> js ${i}`);
      assert.deepEqual(await store.getMetadata(`r${i}`), { by: "rust" });
    }
    await store.set("j", { from: "js", u: "\u{1F600}é" }, { metadata: { by: "js" } });
    assert.deepEqual(await rust.call("get", { key: "j" }), { from: "js", u: "\u{1F600}é" });
    assert.deepEqual(await rust.call("get_metadata", { key: "j" }), { by: "js" });
    // One capacity: 6 entries now (5 + 1); more from both sides never exceed it.
    for (let i = 0; i < 6; i++) {
      if (i % 2 === 0) await store.set(`n${i}`, i);
      else await rust.call("set", { key: `n${i}`, value: i });
      assert.ok((await store.size()) <= 6);
      assert.ok((await rust.call("size", {})) <= 6);
    }
    assert.deepEqual((await store.keys()).sort(), ["n0", "n1", "n2", "n3", "n4", "n5"]);
    // A stampede from both languages: one loader.
    let jsLoads = 0;
    const calls = [];
    for (let i = 0; i < 4; i++) {
      calls.push(rust.call("get_or_set", { key: "stampede", value: "rust", sleep_ms: 300, ttl_ms: 60_000 }));
      calls.push(
        store.getOrSet(
          "stampede",
          async () => {
            jsLoads++;
            await sleep(300);
            return "js";
          },
          { ttl: 60 },
        ),
      );
    }
    const results = await Promise.all(calls);
    assert.equal(jsLoads + rust.loads("stampede"), 1, `js ${jsLoads}, rust ${rust.loads("stampede")}`);
    assert.equal(new Set(results).size, 1);
    // One's invalidate removes the other's entries.
    await rust.call("set", { key: "u:r", value: 1 });
    await store.set("u:j", 2);
    assert.equal(await store.invalidate("u:*"), 2);
    assert.equal(await rust.call("get", { key: "u:r" }), null);
    await rust.call("set", { key: "u:r", value: 1 });
    assert.equal(await rust.call("invalidate", { pattern: "u:*" }), 1);
    assert.equal(await store.get("u:r"), undefined);
  });
});
