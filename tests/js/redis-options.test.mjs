// The option rules both JS stores share (js/api/1-shared.js: readOptions,
// seconds, idleSeconds, readTags, the onRemove check): the MemoryStore and the
// RedisStore refuse the same bad option with the same class and the same
// message, and a refused call writes nothing. A Conn of the test's own
// records every call, so no server is needed (but for one test that reads
// back what was accepted).
import assert from "node:assert/strict";
import { test } from "node:test";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { createClient } from "redis5";
import { startServer } from "./redis-support.mjs";

const { MemoryStore, LRUPolicy, CacheError } = main;

/** A Conn that answers nothing and records what it was asked. */
function recording() {
  const calls = [];
  const conn = {
    kind: "recording",
    clustered: false,
    script: async (script, keys, args) => (calls.push(["script", script.name, ...keys]), null),
    command: async (args) => (calls.push(["command", ...args]), null),
    pipeline: async (list) => (calls.push(["pipeline", list.length]), list.map(() => null)),
    masters: async () => [conn],
  };
  return { conn, calls };
}

const lone = "\uD800";
const long = "t".repeat(300);
const bad = {
  set: [
    { ttl: -1 },
    { ttl: 0 },
    { ttl: "1" },
    { ttl: 1e-10 },
    { ttl: 2 ** 64 },
    { ttl: NaN },
    { ttl: Infinity },
    { idle: 0 },
    { idle: 2e15 },
    { idle: 1e300 },
    { idle: "5" },
    { tll: 1 },
    5,
    null,
    "ttl",
    { tags: "a" },
    { tags: [1] },
    { tags: ["a", "a"] },
    { tags: [""] },
    { tags: [long] },
    { tags: [lone] },
    { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) },
    { metadata: 5 },
    { metadata: [] },
  ],
  getOrSet: [
    { grace: 1 },
    { ttl: 1, grace: -1 },
    { ttl: 1, grace: 1e-12 },
    { retryAfter: 1 },
    { ttl: 1, grace: 1, retryAfter: 0 },
    { softTimeout: 0 },
    { hardTimeout: "1" },
    { idle: 2e15 },
    { tags: ["x", "x"] },
    { waitUntil: 1 },
    { signal: {} },
    { bogus: 1 },
    3,
  ],
};

/** What the call threw: its class and message (a name: not a CacheError is a failure of the test). */
async function refusal(call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof CacheError, `not a CacheError: ${error}`);
    return `${error.constructor.name}: ${error.message}`;
  }
  return "accepted";
}

test("set and getOrSet: the MemoryStore and the RedisStore refuse each bad option alike, and the RedisStore sends nothing", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  for (const [method, list] of Object.entries(bad)) {
    for (const options of list) {
      const call = (store) => (method === "set" ? () => store.set("k", 1, options) : () => store.getOrSet("k", () => 1, options));
      const fromMemory = await refusal(call(memory));
      const fromRedis = await refusal(call(redis));
      const shown = `${method} ${typeof options === "object" && options !== null ? JSON.stringify(options).slice(0, 60) : String(options)}`;
      assert.notEqual(fromMemory, "accepted", shown);
      if (/unknown (set|getOrSet) option/.test(fromMemory)) {
        // The known names differ where the stores do (the MemoryStore's `size`): the rest is the same words.
        const head = (m) => m.replace(/ \(known: .*\)$/, "");
        assert.equal(head(fromRedis), head(fromMemory), shown);
      } else {
        assert.equal(fromRedis, fromMemory, shown);
      }
      assert.deepEqual(calls, [], `${shown}: nothing sent to Redis`);
    }
  }
  assert.equal(memory.size, 0);
});

test("the stores' own options: a bad onRemove, a bad ttl, an unknown name, alike", async () => {
  const { conn } = recording();
  const cases = [{ onRemove: "no" }, { onRemove: 1 }, { bogus: true }];
  for (const extra of cases) {
    const fromMemory = await refusal(() => new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 }), ...extra }));
    const fromRedis = await refusal(() => new RedisStore({ client: conn, ...extra }));
    const head = (m) => m.replace(/ \(known: .*\)$/, "").replace(/MemoryStore|RedisStore/, "Store");
    assert.equal(head(fromRedis), head(fromMemory), JSON.stringify(extra));
  }
  // The policy's and the store's TTL: the same rules in seconds.
  for (const ttl of [-1, 0, "1", 1e-10, NaN]) {
    const fromPolicy = await refusal(() => new LRUPolicy({ maxSize: 1, ttl }));
    const fromRedis = await refusal(() => new RedisStore({ client: conn, defaultTtl: ttl }));
    assert.equal(fromRedis.replace("defaultTtl", "ttl"), fromPolicy, String(ttl));
  }
});

// ---- metadata's content, the options object itself, invalidateTags' list and
// the key/pattern Unicode rule: one rule and one message (js/api/1-shared.js
// copyMetadata, readOptions, readInvalidateTags, notUnicode) for both stores.

const deepMeta = (levels) => {
  let v = 1;
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
};
const cyclicMeta = () => {
  const o = { a: {} };
  o.a.b = o;
  return o;
};
const trapProto = (target) =>
  new Proxy(target, {
    getPrototypeOf() {
      throw new Error("trap");
    },
  });
const revoked = () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
};
const badMetadata = {
  NaN: () => ({ a: NaN }),
  Infinity: () => ({ a: [1, -Infinity] }),
  bigint: () => ({ a: 1n }),
  "lone surrogate name": () => ({ "\uD800": 1 }),
  "lone surrogate value": () => ({ a: { b: "x\uDC00" } }),
  "101 levels": () => deepMeta(101),
  cyclic: cyclicMeta,
  "undefined property": () => ({ a: undefined }),
  "undefined in an array": () => ({ a: [undefined] }),
  function: () => ({ a: () => 1 }),
  Map: () => ({ a: new Map() }),
  Date: () => ({ when: new Date(0) }),
  "symbol key": () => ({ [Symbol("s")]: 1 }),
  "nested symbol key": () => ({ a: { [Symbol("s")]: 1 } }),
  "not an object": () => 5,
  "an array": () => [1],
  "a class instance": () => new (class Meta {})(),
};

test("metadata: the same content refused by both stores with the same class and message, on every call that takes it, nothing sent", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  await memory.set("k", 1);
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  const calling = {
    set: (store, metadata) => store.set("k", 1, { metadata }),
    getOrSet: (store, metadata) => store.getOrSet("k2", () => 1, { metadata }),
    setMany: (store, metadata) => store.setMany([["k", 1]], { metadata }),
    updateMetadata: (store, metadata) => store.updateMetadata("k", metadata),
  };
  const mismatches = [];
  for (const [what, make] of Object.entries(badMetadata)) {
    for (const [method, call] of Object.entries(calling)) {
      const fromMemory = await refusal(() => call(memory, make()));
      const fromRedis = await refusal(() => call(redis, make()));
      assert.match(fromMemory, /^CacheSerializationError: /, `${method} ${what}: memory`);
      if (fromRedis !== fromMemory) mismatches.push(`${method} ${what}: memory "${fromMemory}" / redis "${fromRedis}"`);
      assert.deepEqual(calls, [], `${method} ${what}: nothing sent to Redis`);
    }
  }
  assert.deepEqual(mismatches, []);
  // What the caller's object throws while it is read (a getter, a Proxy's
  // trap, a revoked Proxy): a CacheSerializationError with the thrown error
  // as its cause, the same words from both stores, before anything is sent.
  const thrown = {
    "a getter": (boom) => ({
      get a() {
        throw boom;
      },
    }),
    "a nested getter": (boom) => ({
      a: [
        {
          get b() {
            throw boom;
          },
        },
      ],
    }),
    "a getPrototypeOf trap": (boom) =>
      new Proxy({ a: 1 }, {
        getPrototypeOf() {
          throw boom;
        },
      }),
    "a nested ownKeys trap": (boom) => ({
      a: new Proxy({}, {
        ownKeys() {
          throw boom;
        },
      }),
    }),
  };
  for (const [what, make] of Object.entries(thrown)) {
    for (const [method, call] of Object.entries(calling)) {
      const messages = [];
      for (const store of [memory, redis]) {
        const boom = new Error(what);
        await assert.rejects(
          async () => call(store, make(boom)),
          (e) => e instanceof main.CacheSerializationError && e.cause === boom && messages.push(e.message) > 0,
          `${method} ${what}`,
        );
      }
      assert.equal(messages[1], messages[0], `${method} ${what}`);
    }
  }
  for (const [method, call] of Object.entries(calling)) {
    const fromMemory = await refusal(() => call(memory, revoked()));
    assert.match(fromMemory, /^CacheSerializationError: reading the metadata threw: /, method);
    assert.equal(await refusal(() => call(redis, revoked())), fromMemory, `${method} a revoked Proxy`);
  }
  assert.deepEqual(calls, []);
  // updateMetadata without metadata: refused alike (the RedisStore took it as {}).
  assert.equal(await refusal(() => redis.updateMetadata("k")), await refusal(() => memory.updateMetadata("k")));
  assert.deepEqual(calls, []);
  assert.deepEqual(await memory.getMetadata("k"), {}, "the MemoryStore's entry kept its metadata");
});

test("metadata: a getter is read once, and what is stored is that one read (RedisStore, real server)", async () => {
  const server = await startServer();
  const client = await createClient({ url: server.url }).connect();
  try {
    const redis = new RedisStore({ client, prefix: "once:" });
    let reads = 0;
    const metadata = {
      get a() {
        reads++;
        return reads === 1 ? "first" : { bad: NaN };
      },
    };
    await redis.set("k", 1, { metadata });
    assert.equal(reads, 1);
    assert.deepEqual(await redis.getMetadata("k"), { a: "first" });
    // At the nesting limit: accepted by both and read back as given.
    const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    for (const store of [memory, redis]) {
      await store.set("deep", 1, { metadata: deepMeta(100) });
      assert.deepEqual(await store.getMetadata("deep"), deepMeta(100));
      await store.getOrSet("deep2", () => 2, { metadata: { a: [null, true, "s", 1.5, { b: [] }] } });
      assert.deepEqual(await store.getMetadata("deep2"), { a: [null, true, "s", 1.5, { b: [] }] });
      assert.equal(await store.updateMetadata("deep2", { c: 1 }), true);
      assert.deepEqual(await store.getMetadata("deep2"), { a: [null, true, "s", 1.5, { b: [] }], c: 1 });
      const refused = await refusal(() => store.updateMetadata("deep2", { c: NaN }));
      assert.match(refused, /^CacheSerializationError: metadata\.c cannot be stored/);
      assert.deepEqual(await store.getMetadata("deep2"), { a: [null, true, "s", 1.5, { b: [] }], c: 1 }, "a refused update changed nothing");
    }
  } finally {
    await client.quit();
    await server.stop();
  }
});

test("an options object that is a Proxy whose getPrototypeOf trap throws: the MemoryStore's outcome on every call, never a raw Error", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  // Accepted by the MemoryStore (it reads only the options' own names): the
  // RedisStore gets past its options and reaches Redis.
  for (const [method, call] of [
    ["set", (store) => store.set("k", 1, trapProto({ ttl: 5 }))],
    ["getOrSet", (store) => store.getOrSet("k3", () => 1, trapProto({ ttl: 5 }))],
    ["setMany", (store) => store.setMany([["k", 1]], trapProto({ ttl: 5 }))],
  ]) {
    calls.length = 0;
    assert.equal(await refusal(() => call(memory)), "accepted", method);
    try {
      await call(redis);
    } catch (error) {
      assert.ok(error instanceof CacheError, `${method}: not a CacheError: ${error}`);
    }
    assert.notEqual(calls.length, 0, `${method}: the options were read and Redis was asked`);
  }
  // A bad option inside such a Proxy: refused alike.
  calls.length = 0;
  assert.equal(await refusal(() => redis.set("k", 1, trapProto({ ttl: -1 }))), await refusal(() => memory.set("k", 1, trapProto({ ttl: -1 }))));
  assert.equal(
    await refusal(() => redis.set("k", 1, trapProto({ tll: 1 }))).then((m) => m.replace(/ \(known: .*\)$/, "")),
    await refusal(() => memory.set("k", 1, trapProto({ tll: 1 }))).then((m) => m.replace(/ \(known: .*\)$/, "")),
  );
  assert.deepEqual(calls, []);
  // A `signal` that is such a Proxy: not an AbortSignal, the same CachePolicyError.
  const signalMemory = await refusal(() => memory.getOrSet("k4", () => 1, { signal: trapProto({}) }));
  assert.match(signalMemory, /^CachePolicyError: signal must be an AbortSignal, got an object whose prototype/);
  assert.equal(await refusal(() => redis.getOrSet("k4", () => 1, { signal: trapProto({}) })), signalMemory);
  assert.deepEqual(calls, []);
  // The stores' and the policies' own options read the prototype (a plain
  // object only): a CachePolicyError, the same words.
  const fromMemory = await refusal(() => new MemoryStore(trapProto({ policy: new LRUPolicy({ maxSize: 1 }) })));
  const fromRedis = await refusal(() => new RedisStore(trapProto({ client: conn })));
  assert.match(fromMemory, /^CachePolicyError: MemoryStore options must be a plain object, got /);
  assert.equal(fromRedis.replace("RedisStore", "MemoryStore"), fromMemory);
  assert.match(await refusal(() => new LRUPolicy(trapProto({ maxSize: 1 }))), /^CachePolicyError: LRUPolicy options must be a plain object/);
});

test("invalidateTags: the same list refused by both stores with the same class and message, nothing sent", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  await memory.set("k", 1, { tags: ["a"] });
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  const cases = [
    "a",
    null,
    undefined,
    [1],
    ["a", undefined],
    [""],
    [lone],
    ["ok", `x${lone}`],
    [long],
    Array.from({ length: 1025 }, () => "a"),
    trapProto(["a", 2]),
  ];
  for (const tags of cases) {
    const fromMemory = await refusal(() => memory.invalidateTags(tags));
    const fromRedis = await refusal(() => redis.invalidateTags(tags));
    const shown = Array.isArray(tags) ? `[${tags.length}] ${String(tags).slice(0, 40)}` : String(tags);
    assert.match(fromMemory, /^CachePolicyError: /, shown);
    assert.equal(fromRedis, fromMemory, shown);
    assert.deepEqual(calls, [], `${shown}: nothing sent`);
  }
  assert.equal(memory.size, 1, "nothing removed");
  // At the limit (duplicates included): accepted by both.
  const many = Array.from({ length: 1024 }, () => "a");
  assert.equal(await memory.invalidateTags(many), 1);
  await redis.invalidateTags(many).catch((error) => assert.ok(error instanceof CacheError, String(error)));
  assert.notEqual(calls.length, 0);
});

test("a key or a pattern with a lone surrogate: the same class and message from both stores", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  for (const [what, call] of [
    ["get", (store) => store.get(`a${lone}`)],
    ["set", (store) => store.set(lone, 1)],
    ["delete", (store) => store.delete(lone)],
    ["invalidate", (store) => store.invalidate(`a*${lone}`)],
    ["keys", (store) => store.keys(lone)],
  ]) {
    const fromMemory = await refusal(() => call(memory));
    assert.match(fromMemory, /^Cache(Key|Pattern)Error: /, what);
    assert.equal(await refusal(() => call(redis)), fromMemory, what);
  }
  assert.deepEqual(calls, []);
});

test("the same bad argument gets the same words, whichever is checked first (set, setMany, getOrSet's loader, deleteMany)", async () => {
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const { conn, calls } = recording();
  const redis = new RedisStore({ client: conn, prefix: "p:" });
  const cases = {
    "set of undefined": (s) => s.set("k", undefined),
    "set of undefined with a bad option": (s) => s.set("k", undefined, { ttl: -1 }),
    "set of undefined under a bad key": (s) => s.set("", undefined),
    "setMany of [key]": (s) => s.setMany([["a"]]),
    "setMany of a string": (s) => s.setMany("ab"),
    "setMany of 5": (s) => s.setMany(5),
    "setMany: an undefined value before a bad key": (s) => s.setMany([["a", undefined], [lone, 1]]),
    "setMany: a bad key before an undefined value": (s) => s.setMany([["a", 1], [lone, 1], ["b", undefined]]),
    "setMany: an undefined value and a bad option": (s) => s.setMany([["a", undefined]], { ttl: -1 }),
    "setMany: a bad option, good pairs": (s) => s.setMany([["a", 1]], { ttl: -1 }),
    "deleteMany of a lone-surrogate key": (s) => s.deleteMany(["a", lone]),
    "getMany of null": (s) => s.getMany(null),
    "invalidateTags of a 300-byte tag": (s) => s.invalidateTags(["x".repeat(300)]),
  };
  // A list that is no list is a TypeError (a programming error) in both: any class here.
  const outcome = async (call) => {
    try {
      await call();
      return "accepted";
    } catch (error) {
      return `${error.constructor.name}: ${error.message}`;
    }
  };
  for (const [what, call] of Object.entries(cases)) {
    const fromMemory = await outcome(() => call(memory));
    assert.notEqual(fromMemory, "accepted", what);
    assert.equal(await outcome(() => call(redis)), fromMemory, what);
    assert.deepEqual(calls, [], `${what}: nothing sent`);
  }
  assert.equal(memory.size, 0);
});
