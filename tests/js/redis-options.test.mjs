// The option rules both JS stores share (js/api/1-shared.js: readOptions,
// seconds, idleSeconds, readTags, the onRemove check): the MemoryStore and the
// RedisStore refuse the same bad option with the same class and the same
// message, and a refused call writes nothing. A Conn of the test's own
// records every call, so no server is needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";

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
