// Hostile review (session 9) of the REST Conn (js/redis/clients-rest.js) and
// the U+FFFF key rule: an endpoint that answers 200 with garbage (a reply of
// the wrong type or count, no base64, truncated JSON) is a CacheBackendError
// (never a TypeError, never a value) and the store works afterwards; values of
// every code point through REST and node-redis are the same bytes; a key
// holding U+FFFF is refused alike by every JS store and every operation.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "@upstash/redis";
import { createClient } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startServer } from "./redis-support.mjs";
import { startEndpoint } from "./upstash-endpoint.mjs";

const { CacheKeyError, CacheBackendError, LRUPolicy, MemoryStore } = main;

let server;
let endpoint;
let redis; // node-redis
let raw; // node-redis with Buffers
let n = 0;
const fresh = () => `rr${++n}:`;

const upstash = () => new Redis({ url: endpoint.url, token: endpoint.token, enableTelemetry: false, retry: false });

before(async () => {
  server = await startServer();
  endpoint = await startEndpoint({ redisUrl: server.url });
  redis = await createClient({ url: server.url }).connect();
  raw = redis.withTypeMapping({ 36: Buffer, 43: Buffer });
});
after(async () => {
  endpoint?.respond(undefined);
  await redis?.quit();
  await endpoint?.stop();
  await server?.stop();
});

describe("an endpoint answering 200 with garbage", () => {
  const garbage = {
    "a number for GET's bytes": [{ result: 5 }],
    "a list for GET's bytes": [{ result: ["YQ=="] }],
    "an object for GET's bytes": [{ result: { a: 1 } }],
    "a boolean": [{ result: true }],
    "no base64": [{ result: "not base64!" }],
    "two replies to one command": [{ result: null }, { result: null }],
    "no reply": [],
    "an entry that is no object": ["x"],
    "an entry with neither result nor error": [{}],
    "an object, not a list": { result: null },
    "truncated JSON": '[{"result":"YQ=',
    "JSON null": "null",
  };
  // Replies Redis may send to some commands (an integer to DEL, to the set's
  // script): only the calls whose command never answers so are checked.
  const readsOnly = new Set(["a number for GET's bytes", "a list for GET's bytes", "an object for GET's bytes", "a boolean"]);
  // Expected: each call rejects with CacheBackendError (the endpoint
  // misbehaved: never a TypeError, never a value read as a document), the
  // counters do not move, and once the endpoint answers right again the store
  // reads and writes. Actual: a number or a list as GET's reply is read as a
  // stored document (get: CacheSerializationError "cannot be decoded"; has: a
  // raw TypeError from Buffer.concat).
  for (const [what, body] of Object.entries(garbage)) {
    test(what, async () => {
      const store = new RedisStore({ client: upstash(), prefix: fresh() });
      await store.set("k", { v: 1 });
      store.resetStats();
      endpoint.respond(200, body);
      const outcomes = {};
      try {
        for (const [op, call] of [
          ["get", () => store.get("k")],
          ["set", () => store.set("k", { v: 2 })],
          ["has", () => store.has("k")],
          ["delete", () => store.delete("k")],
        ]) {
          if (readsOnly.has(what) && (op === "set" || op === "delete")) continue;
          try {
            outcomes[op] = `resolved ${JSON.stringify(await call())}`;
          } catch (error) {
            outcomes[op] = error instanceof CacheBackendError ? "CacheBackendError" : `${error?.constructor?.name}: ${error?.message}`;
          }
        }
      } finally {
        endpoint.respond(undefined);
      }
      assert.deepEqual(outcomes, Object.fromEntries(Object.keys(outcomes).map((op) => [op, "CacheBackendError"])));
      assert.ok(outcomes.get !== undefined && outcomes.has !== undefined);
      const stats = store.getStats();
      assert.deepEqual([stats.hits, stats.misses, stats.sets, stats.deletes], [0, 0, 0, 0], "a failed call counts nothing");
      assert.deepEqual(await store.get("k"), { v: 1 });
      await store.set("k", { v: 3 });
      assert.deepEqual(await store.get("k"), { v: 3 });
    });
  }
});

// Expected: a value holding every code point (but the lone surrogates),
// U+FFFF and NUL included, is stored as the same bytes by the store over REST
// and over node-redis, and each reads the other's back.
test("every code point in values: the same bytes over REST and node-redis", async () => {
  const prefix = fresh();
  const overRest = new RedisStore({ client: upstash(), prefix });
  const overTcp = new RedisStore({ client: redis, prefix });
  const chunks = [];
  for (let start = 0; start < 0x110000; start += 0x8000) {
    let s = "";
    for (let c = start; c < start + 0x8000 && c < 0x110000; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      s += String.fromCodePoint(c);
    }
    chunks.push(s);
  }
  const values = [...chunks, { "\uFFFF": "\uFFFF\u0000", "\u0000": ["\uFFFE", "\u2028\u2029"] }, "OK", "", "\"", "\\"];
  for (let i = 0; i < values.length; i++) {
    await overRest.set(`r${i}`, values[i]);
    await overTcp.set(`t${i}`, values[i]);
    const [a, b] = [await raw.get(`${prefix}r${i}`), await raw.get(`${prefix}t${i}`)];
    assert.ok(Buffer.isBuffer(a) && a.equals(b), `value ${i}: the same document`);
    assert.deepEqual(await overTcp.get(`r${i}`), values[i], `value ${i}: node-redis reads REST's`);
    assert.deepEqual(await overRest.get(`t${i}`), values[i], `value ${i}: REST reads node-redis's`);
  }
  const got = await overRest.getMany(values.map((_, i) => `t${i}`));
  assert.deepEqual(got, values, "getMany over REST");
});

// Expected: every operation taking a key refuses one holding U+FFFF with
// CacheKeyError, in the MemoryStore (sync and async) and the RedisStore over
// REST and node-redis alike; a pattern or tag holding it is treated alike.
test("U+FFFF in keys, patterns and tags: the same answer from every JS store", async () => {
  const prefix = fresh();
  const stores = {
    memory: new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) }),
    rest: new RedisStore({ client: upstash(), prefix }),
    tcp: new RedisStore({ client: redis, prefix: fresh() }),
  };
  const bad = "a\uFFFFb";
  const ops = {
    get: (s) => s.get(bad),
    set: (s) => s.set(bad, 1),
    has: (s) => s.has(bad),
    delete: (s) => s.delete(bad),
    getMetadata: (s) => s.getMetadata(bad),
    updateMetadata: (s) => s.updateMetadata(bad, { a: 1 }),
    getTags: (s) => s.getTags(bad),
    getMany: (s) => s.getMany(["ok", bad]),
    setMany: (s) => s.setMany([["ok", 1], [bad, 2]]),
    deleteMany: (s) => s.deleteMany(["ok", bad]),
    getOrSet: (s) => s.getOrSet(bad, () => 1),
    "invalidate a pattern with U+FFFF": (s) => s.invalidate("*\uFFFF*"),
    "keys of a pattern with U+FFFF": (s) => s.keys("\uFFFF*"),
    "a tag with U+FFFF": (s) => s.set("tagged", 1, { tags: ["t\uFFFF"] }).then(() => s.invalidateTags(["t\uFFFF"])),
  };
  const answers = {};
  for (const [name, store] of Object.entries(stores)) {
    answers[name] = {};
    for (const [op, call] of Object.entries(ops)) {
      try {
        answers[name][op] = `resolved ${JSON.stringify(await call(store))}`;
      } catch (error) {
        answers[name][op] = error?.constructor?.name;
      }
    }
  }
  for (const op of ["get", "set", "has", "delete", "getMetadata", "updateMetadata", "getTags", "getMany", "setMany", "deleteMany", "getOrSet"]) {
    assert.equal(answers.memory[op], "CacheKeyError", `memory ${op}`);
  }
  assert.deepEqual(answers.rest, answers.memory, "REST answers as the MemoryStore does");
  assert.deepEqual(answers.tcp, answers.memory, "node-redis answers as the MemoryStore does");
  assert.equal(await stores.memory.has("ok"), false, "a refused setMany wrote nothing");
  for (const s of [stores.rest, stores.tcp]) assert.equal(await s.has("ok"), false, "a refused setMany wrote nothing");
  // Sync calls of the MemoryStore too.
  for (const [op, call] of Object.entries({ getSync: (s) => s.getSync(bad), hasSync: (s) => s.hasSync(bad), peek: (s) => s.peek(bad), deleteSync: (s) => s.deleteSync(bad), remainingTtl: (s) => s.remainingTtl(bad) })) {
    assert.throws(() => call(stores.memory), CacheKeyError, op);
  }
});

/** Renames every internal key under `prefix` to what 0.2 wrote: the marker U+FFFF (EF BF BF) as the byte 0xFF. */
async function asWrittenBy02(prefix) {
  const MARK = Buffer.from("\uFFFF");
  let renamed = 0;
  for (const key of await raw.keys(`${prefix}*`)) {
    const at = key.indexOf(MARK);
    if (at < 0) continue;
    await raw.rename(key, Buffer.concat([key.subarray(0, at), Buffer.from([0xff]), key.subarray(at + MARK.length)]));
    renamed++;
  }
  return renamed;
}

describe("upgrading from 0.2 (internal keys with the byte 0xFF)", () => {
  // Expected (README's upgrade note: "a bounded store starts with an empty
  // index (rebuilt from the entries, as after a lost index)"): the entries 0.2
  // wrote count against maxSize, so after three more sets a store of 3 holds 3.
  test("a bounded store's capacity still holds over the entries 0.2 left", async () => {
    const prefix = fresh();
    const old = new RedisStore({ client: redis, prefix, policy: new LRUPolicy({ maxSize: 3 }) });
    for (const k of ["a", "b", "c"]) await old.set(k, k);
    assert.ok((await asWrittenBy02(prefix)) >= 1, "the index was renamed");
    const store = new RedisStore({ client: redis, prefix, policy: new LRUPolicy({ maxSize: 3 }) });
    for (const k of ["d", "e", "f"]) await store.set(k, k);
    assert.ok((await store.size()) <= 3, `size ${await store.size()} (keys ${(await store.keys()).sort()}) in a store of 3`);
  });

  // Expected: an entry tagged under 0.2 is removed by invalidateTags of its
  // tag after the upgrade (its document still lists the tag: getTags says so),
  // or refused loudly; not silently kept as if it had no tag. Actual: 0
  // removed, the entry stays (its tag set has the old 0xFF name; the README's
  // upgrade note speaks of orphaned keys and the index, not of tags).
  test("an entry tagged under 0.2: invalidateTags still removes it", async () => {
    const prefix = fresh();
    const old = new RedisStore({ client: redis, prefix });
    await old.set("x", 1, { tags: ["t"] });
    assert.ok((await asWrittenBy02(prefix)) >= 1, "the tag set was renamed");
    const store = new RedisStore({ client: redis, prefix });
    assert.deepEqual(await store.getTags("x"), ["t"], "the entry says it has the tag");
    const removed = await store.invalidateTags(["t"]);
    assert.deepEqual([removed, await store.has("x")], [1, false], "the tagged entry is invalidated");
  });
});
