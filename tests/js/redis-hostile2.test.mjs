// A hostile user of the JS RedisStore (pepperpy-caching/redis), round 2:
// each test is a confirmed bug, asserting the behaviour the store promises
// (the JS MemoryStore's API, the Rust RedisStore's semantics). Each fails on
// main 6aa6065 and passes once the bug is fixed.
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { after, before, describe, test } from "node:test";
import { createClient, createCluster } from "redis5";
import IORedis from "ioredis";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startCluster, startServer } from "./redis-support.mjs";
import { conn } from "../../js/redis/clients.js";

const { LRUPolicy, MemoryStore } = main;

let server;
let client;
let n = 0;
const fresh = () => `h2_${++n}:`;
// A redis-server of the test's own (rharness's support module: stopped by the test, or when the process exits).
const startRedis = () => startServer();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  server = await startRedis();
  client = await createClient({ url: server.url }).connect();
});
after(async () => {
  await client?.quit();
  await server?.stop();
});

test("a leader whose signal aborts does not fail the callers waiting on its load (the MemoryStore hands the load over)", async () => {
  const stores = [
    ["memory", new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) })],
    ["redis", new RedisStore({ client, prefix: fresh() })],
  ];
  for (const [name, store] of stores) {
    const controller = new AbortController();
    const leader = store.getOrSet("k", () => sleep(200).then(() => "leader's"), { signal: controller.signal });
    const follower = store.getOrSet("k", () => sleep(10).then(() => "follower's"));
    await sleep(30);
    controller.abort(new Error("the leader's caller went away"));
    await assert.rejects(leader, /went away/, name);
    // The follower never gave up: it gets a value, not another caller's abort reason.
    const value = await follower.catch((error) => assert.fail(`${name}: the follower failed with ${error}`));
    assert.ok(value === "follower's" || value === "leader's", `${name}: ${value}`);
  }
});

test("getOrSet's signal listeners are removed when the call ends: a long-lived signal does not collect one per call", async () => {
  const stores = [
    ["memory", new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) })],
    ["redis", new RedisStore({ client, prefix: fresh() })],
  ];
  for (const [name, store] of stores) {
    // One signal for the whole server's life (a shutdown signal), passed to every call.
    const shutdown = new AbortController();
    for (let i = 0; i < 20; i++) {
      assert.equal(await store.getOrSet(`k${i}`, () => i, { signal: shutdown.signal }), i);
    }
    // Followers too.
    await Promise.all([0, 1, 2].map(() => store.getOrSet("shared", () => sleep(20).then(() => 1), { signal: shutdown.signal })));
    assert.equal(getEventListeners(shutdown.signal, "abort").length, 0, `${name}: listeners left on the caller's signal`);
  }
});

test("a hole in getMany's or setMany's array is the MemoryStore's typed error, not an internal TypeError; nothing is written", async () => {
  const prefix = fresh();
  const redis = new RedisStore({ client, prefix });
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  // eslint-disable-next-line no-sparse-arrays
  const holeyKeys = () => [, "a"];
  // eslint-disable-next-line no-sparse-arrays
  const holeyPairs = () => [, ["a", 1]];
  for (const [name, store] of [["memory", memory], ["redis", redis]]) {
    await assert.rejects(store.getMany(holeyKeys()), main.CacheKeyError, `${name}: getMany with a hole`);
    await assert.rejects(
      store.setMany(holeyPairs()),
      (error) => error instanceof TypeError && /pairs/.test(error.message),
      `${name}: setMany with a hole`,
    );
  }
  assert.deepEqual(await client.keys(`${prefix}*`), []);
  assert.equal(redis.getStats().sets, 0);
});

test("both stores read a batch's array alike: by index, up to its length at the call (its own iterator not asked; a getter that grows it adds nothing)", async () => {
  const prefix = fresh();
  const redis = new RedisStore({ client, prefix });
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  for (const [name, store] of [["memory", memory], ["redis", redis]]) {
    await store.setMany([["a", 1], ["b", 2]]);
    // An array whose own iterator says something else: its elements are the list.
    const keys = ["a"];
    keys[Symbol.iterator] = function* () {
      yield "b";
    };
    assert.deepEqual(await store.getMany(keys), [1], `${name}: getMany read the array's elements`);
    // A pair whose reading grows the array: the list is what the array held when the call began.
    const pairs = [];
    Object.defineProperty(pairs, 0, {
      get() {
        pairs.push(["late", 3]);
        return ["c", 4];
      },
      enumerable: true,
      configurable: true,
    });
    pairs.length = 1;
    await store.setMany(pairs);
    assert.deepEqual(await store.getMany(["c", "late"]), [4, undefined], `${name}: setMany stored what the array held`);
    const gone = ["a"];
    gone[Symbol.iterator] = function* () {
      yield "b";
    };
    assert.equal(await store.deleteMany(gone), 1, name);
    assert.deepEqual(await store.getMany(["a", "b"]), [undefined, 2], `${name}: deleteMany removed the array's element`);
  }
});

test("getMany and deleteMany of a non-array throw the MemoryStore's class (TypeError), as setMany does", async () => {
  const redis = new RedisStore({ client, prefix: fresh() });
  const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  for (const [name, store] of [["memory", memory], ["redis", redis]]) {
    for (const method of ["getMany", "deleteMany"]) {
      const error = await Promise.resolve()
        .then(() => store[method]("ab"))
        .then(
          () => undefined,
          (e) => e,
        );
      assert.equal(error?.constructor, TypeError, `${name}.${method}("ab") threw ${error}`);
    }
  }
});

test("the response timeout is the user's to set, as the Rust builder's response_timeout: a 32 MB value is not reported failed while Redis stores it", async () => {
  const prefix = fresh();
  // The Rust store: RedisStoreBuilder::response_timeout. The JS store has no
  // such option and a fixed 1000 ms: a set that takes longer is a
  // CacheBackendError, yet Redis writes the value all the same.
  const store = new RedisStore({ client, prefix, responseTimeout: 60 });
  const value = "x".repeat(32 << 20);
  await store.set("big", value);
  assert.equal((await store.get("big"))?.length, value.length);
  await client.del(`${prefix}big`);
  for (const bad of [-1, 0, NaN, Infinity, "5", null]) {
    assert.throws(() => new RedisStore({ client, prefix, responseTimeout: bad }), main.CachePolicyError, String(bad));
  }
  // A Conn keeps its own timeouts: refused rather than ignored.
  assert.throws(() => new RedisStore({ client: conn(client), prefix, responseTimeout: 5 }), main.CachePolicyError);
  // And a short one is applied: a 32 MB value cannot cross in a millisecond.
  const hasty = new RedisStore({ client, prefix, responseTimeout: 0.001 });
  await assert.rejects(hasty.set("big2", value), (error) => error instanceof main.CacheBackendError && /no answer/.test(error.message));
});

/** `promise`, or a rejection saying it hung for `ms`. */
function orHang(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms (deadlocked on itself)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

test("a loader that asks for its own key through another key's loader gets CacheReentrantLoadError, not a deadlock (the MemoryStore's and Rust's rule)", async () => {
  const stores = [
    ["memory", new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) })],
    ["redis", new RedisStore({ client, prefix: fresh() })],
  ];
  for (const [name, store] of stores) {
    // a's loader asks for b, whose loader asks for a: a waits on b waits on a.
    const call = store.getOrSet("a", () => store.getOrSet("b", () => store.getOrSet("a", () => 1)));
    await assert.rejects(orHang(call, 3000, name), (error) => error instanceof main.CacheReentrantLoadError || assert.fail(`${name}: ${error}`));
  }
});

test("an ioredis client with keyPrefix: refused (CachePolicyError), or every call sees the same keys; never a store whose invalidate, invalidateTags, clear and keys silently miss its entries", async () => {
  const ioredis = new IORedis(server.url, { keyPrefix: "kp:" });
  try {
    let store;
    try {
      store = new RedisStore({ client: ioredis, prefix: fresh() });
    } catch (error) {
      assert.ok(error instanceof main.CachePolicyError, `refused, but with ${error}`);
      return;
    }
    await store.set("tagged", 1, { tags: ["t"] });
    await store.set("plain", 2);
    assert.deepEqual((await store.keys()).sort(), ["plain", "tagged"], "keys lists what set wrote");
    assert.equal(await store.invalidateTags(["t"]), 1, "invalidateTags removes the tagged entry");
    assert.equal(await store.get("tagged"), undefined);
    assert.equal(await store.invalidate("pl*"), 1, "invalidate removes the matching entry");
    assert.equal(await store.get("plain"), undefined);
    await store.set("again", 3);
    await store.clear();
    assert.equal(await store.get("again"), undefined, "clear removes it");
  } finally {
    ioredis.disconnect();
  }
});

test("a caller's signal and softTimeout hold while Redis does not answer (SIGSTOP): it leaves at once with its own reason, not a CacheBackendError a second later", async () => {
  const frozen = await startRedis();
  const other = await createClient({ url: frozen.url }).connect();
  try {
    const store = new RedisStore({ client: other, prefix: fresh() });
    await store.set("warm", 1);
    frozen.child.kill("SIGSTOP");
    try {
      const controller = new AbortController();
      const started = Date.now();
      const call = store.getOrSet("k", () => 1, { signal: controller.signal });
      setTimeout(() => controller.abort(new Error("the client hung up")), 50);
      await assert.rejects(call, (error) => /hung up/.test(error.message) || assert.fail(`got ${error}`));
      assert.ok(Date.now() - started < 500, `left after ${Date.now() - started} ms`);
      const soft = Date.now();
      await assert.rejects(
        store.getOrSet("k2", () => 1, { softTimeout: 0.05 }),
        (error) => error instanceof main.CacheTimeoutError || assert.fail(`got ${error}`),
      );
      assert.ok(Date.now() - soft < 500, `softTimeout of 50 ms left after ${Date.now() - soft} ms`);
    } finally {
      frozen.child.kill("SIGCONT");
    }
  } finally {
    await other.quit().catch(() => {});
    await frozen.stop();
  }
});

test("a value whose reading throws (a Proxy trap, a revoked Proxy) is a CacheSerializationError, as a throwing getter is; nothing is written", async () => {
  const prefix = fresh();
  const store = new RedisStore({ client, prefix });
  const trapped = () => new Proxy({}, { ownKeys() { throw new Error("trap"); } });
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const isSerialization = (what) => (error) => error instanceof main.CacheSerializationError || assert.fail(`${what}: ${error}`);
  // The reference: a getter that throws is already reported this way.
  await assert.rejects(store.set("k", { get a() { throw new Error("getter"); } }), isSerialization("getter"));
  await assert.rejects(store.set("k", trapped()), isSerialization("value"));
  await assert.rejects(store.set("k", [trapped()]), isSerialization("in an array"));
  await assert.rejects(store.set("k", 1, { metadata: trapped() }), isSerialization("metadata"));
  await assert.rejects(store.set("k", revoked()), isSerialization("revoked"));
  await assert.rejects(store.getOrSet("k", () => trapped()), isSerialization("loaded"));
  // The other reads of a value: an array's element or length, its prototype; a revoked Proxy as metadata.
  const arrayGet = new Proxy([1, 2], { get(target, name) { if (name === "0") throw new Error("get"); return Reflect.get(target, name); } });
  await assert.rejects(store.set("k", { a: arrayGet }), isSerialization("an array's element"));
  await assert.rejects(store.set("k", new Proxy([], { get() { throw new Error("length"); } })), isSerialization("an array's length"));
  await assert.rejects(store.set("k", new Proxy({}, { getPrototypeOf() { throw new Error("proto"); } })), isSerialization("prototype"));
  await assert.rejects(store.set("k", 1, { metadata: revoked() }), isSerialization("revoked metadata"));
  await assert.rejects(store.set("k", 1, { metadata: { m: trapped() } }), isSerialization("in metadata"));
  assert.deepEqual(await client.keys(`${prefix}*`), []);
  assert.equal(store.getStats().sets, 0);
  // A Proxy that reads fine is stored as what it reads as, and the store works on after all those throws.
  await store.set("ok", new Proxy({ a: [1] }, {}));
  assert.deepEqual(await store.get("ok"), { a: [1] });
  await store.delete("ok");
});

test("invalidate/clear failing mid-walk (the connection lost under a page's deletes and the next SCAN) rejects once, and leaves no unhandled rejection to crash the process", async () => {
  const unhandled = [];
  const onUnhandled = (error) => unhandled.push(error);
  process.on("unhandledRejection", onUnhandled);
  try {
    // A Conn (the store takes one, see the contract) over the real client, whose connection "drops" on demand:
    // the next SCAN page fails at once, the deletes of the page in hand a moment later.
    const real = conn(client);
    let dropped = false;
    const flaky = {
      kind: real.kind,
      clustered: false,
      script: async (script, keys, args) => {
        if (dropped) {
          await sleep(50);
          throw new Error("connection lost (a delete)");
        }
        return real.script(script, keys, args);
      },
      command: async (args, key) => {
        if (dropped && args[0] === "SCAN" && String(args[1]) !== "0") throw new Error("connection lost (a SCAN)");
        return real.command(args, key);
      },
      pipeline: (calls) => real.pipeline(calls),
      masters: async () => [flaky],
    };
    for (const method of ["invalidate", "clear"]) {
      const prefix = fresh();
      const store = new RedisStore({ client: flaky, prefix });
      dropped = false;
      await store.setMany(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i]));
      dropped = true;
      await assert.rejects(method === "invalidate" ? store.invalidate("*") : store.clear(), main.CacheBackendError, method);
      await sleep(200);
      assert.deepEqual(unhandled.map(String), [], `${method}: unhandled rejections`);
      const left = await client.keys(`${prefix}*`);
      if (left.length !== 0) await client.del(left);
    }
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a leader's abort (rfix): its loader's signal aborts with the reason; with no waiter its placeholder is released at once; a softTimeout leader's load goes on for its waiters", async () => {
  const prefix = fresh();
  const store = new RedisStore({ client, prefix });
  // No waiter: the next caller loads at once (not after the 10 s lease).
  const controller = new AbortController();
  let seen;
  const lonely = store.getOrSet("k", ({ signal }) => new Promise((resolve) => {
    signal.addEventListener("abort", () => {
      seen = signal.reason;
      resolve("too late");
    });
  }), { signal: controller.signal });
  await sleep(20);
  const reason = new Error("gone");
  controller.abort(reason);
  await assert.rejects(lonely, /gone/);
  assert.equal(seen, reason, "the loader's signal carries the leader's reason");
  const started = Date.now();
  assert.equal(await store.getOrSet("k", () => "next"), "next");
  assert.ok(Date.now() - started < 1000, `the next load waited ${Date.now() - started} ms`);
  assert.equal(await store.get("k"), "next", "the abandoned load stored nothing over it");
  // Likewise a hardTimeout: a loader that settles when told to stop does not win over the timeout.
  const obliging = ({ signal }) => new Promise((resolve) => signal.addEventListener("abort", () => resolve("late")));
  await assert.rejects(store.getOrSet("h", obliging, { hardTimeout: 0.03 }), main.CacheTimeoutError);
  assert.equal(await store.get("h"), undefined, "the timed-out load stored nothing");
  // softTimeout: the leader leaves, its loader runs on, the waiter gets its value and it is stored; one loader ran.
  let runs = 0;
  const slow = () => {
    runs++;
    return sleep(150).then(() => "slow");
  };
  const leader = store.getOrSet("s", slow, { softTimeout: 0.03 });
  const waiter = store.getOrSet("s", slow);
  await assert.rejects(leader, main.CacheTimeoutError);
  assert.equal(await waiter, "slow");
  assert.equal(runs, 1);
  assert.equal(await store.get("s"), "slow");
});

test("re-entrancy (rfix): only loads still running count; a task a loader left behind may ask for its key once the load is over", async () => {
  const store = new RedisStore({ client, prefix: fresh() });
  let later;
  assert.equal(
    await store.getOrSet("a", () => {
      later = sleep(50).then(() => store.getOrSet("a", () => "again"));
      return "first";
    }),
    "first",
  );
  assert.equal(await later, "first", "the load of a was over: no CacheReentrantLoadError");
  // Three keys deep, still refused; and the store is usable after it.
  const call = store.getOrSet("x", () => store.getOrSet("y", () => store.getOrSet("z", () => store.getOrSet("x", () => 1))));
  await assert.rejects(call, main.CacheReentrantLoadError);
  assert.equal(await store.getOrSet("x", () => 2), 2);
});

// ---- The same hostile input over TLS and on a 3+3 cluster, with node-redis v5 and
// ioredis (session 8): bad keys, values and options leave nothing written, not even
// a bounded store's index or a load's placeholder; a value Rust refuses is refused
// alike; a server (a cluster master) killed mid-call fails the call in bounded time
// with CacheBackendError, and the store serves again once the server is back.
describe("TLS and cluster cells", () => {
  let tls;
  let cluster;
  const clients = [];
  const quiet = (c) => {
    c.on("error", () => {});
    clients.push(c);
    return c;
  };
  const cells = [
    {
      name: "TLS, node-redis v5",
      connect: () => quiet(createClient({ socket: { host: "127.0.0.1", port: tls.tlsPort, tls: true, ca: tls.ca, reconnectStrategy: 50 } })).connect(),
      nodes: async () => [tls],
    },
    {
      name: "TLS, ioredis",
      connect: async () => {
        const c = quiet(new IORedis({ host: "127.0.0.1", port: tls.tlsPort, tls: { ca: tls.ca }, lazyConnect: true }));
        await c.connect();
        return c;
      },
      nodes: async () => [tls],
    },
    {
      name: "cluster, node-redis v5",
      connect: async () => {
        const c = quiet(createCluster({ rootNodes: cluster.urls.map((url) => ({ url })) }));
        await c.connect();
        return c;
      },
      nodes: () => cluster.masters(),
      cluster: true,
    },
    {
      name: "cluster, ioredis",
      connect: async () => {
        const c = quiet(new IORedis.Cluster(cluster.rootNodes, { lazyConnect: true }));
        await c.connect();
        return c;
      },
      nodes: () => cluster.masters(),
      cluster: true,
    },
  ];

  before(async () => {
    tls = await startServer(undefined, { tls: true });
    cluster = await startCluster();
  });
  after(async () => {
    for (const c of clients) {
      try {
        c.disconnect();
      } catch {
        // closed already
      }
    }
    await cluster?.stop();
    await tls?.stop();
  });

  /** Every key holding `prefix` on the cell's servers (entries, indexes, placeholders, tag sets). */
  async function leftovers(cell, prefix) {
    const out = [];
    for (const node of await cell.nodes()) {
      const keys = (await node.cli("--scan", "--pattern", `*${prefix}*`)).split("\n").filter(Boolean);
      out.push(...keys);
    }
    return out;
  }

  /** A load through `store` once it succeeds (within 20 s), or undefined. */
  async function servedAgain(store) {
    for (let i = 0; i < 200; i++) {
      try {
        return await store.getOrSet("after", () => "back");
      } catch {
        await sleep(100);
      }
    }
    return undefined;
  }

  const deep = () => {
    let v = 1;
    for (let i = 0; i < 200; i++) v = [v];
    return v;
  };
  const cyclic = () => {
    const o = {};
    o.self = o;
    return o;
  };

  for (const cell of cells) {
    test(`${cell.name}: bad keys, values and options are typed errors, and nothing is written (bounded or not, set, setMany, getOrSet)`, async () => {
      const client = await cell.connect();
      for (const policy of [undefined, new LRUPolicy({ maxSize: 10 })]) {
        const prefix = fresh();
        const store = new RedisStore({ client, prefix, ...(policy === undefined ? {} : { policy }), ...(cell.cluster ? { buckets: 2 } : {}) });
        const refused = async (call, Class, what) => {
          await assert.rejects(call, (error) => error instanceof Class || assert.fail(`${cell.name} ${what}: ${error}`));
        };
        for (const key of ["", 1, null, "\uD800", "k".repeat(9000)]) {
          await refused(store.set(key, 1), main.CacheKeyError, `key ${String(key).slice(0, 9)}`);
          await refused(store.getOrSet(key, () => 1), main.CacheKeyError, `load key ${String(key).slice(0, 9)}`);
        }
        // Values Rust refuses: what JSON cannot hold, and what it could but the Rust store would not read back.
        for (const [what, value] of [["NaN", NaN], ["Infinity", [Infinity]], ["bigint", 1n], ["deep", deep()], ["cyclic", cyclic()], ["lone surrogate", "a\uDC00"], ["Map", new Map([[1, 2]])], ["undefined", undefined]]) {
          await refused(store.set("k", value), main.CacheSerializationError, what);
          await refused(store.setMany([["a", 1], ["b", value]]), main.CacheSerializationError, `setMany ${what}`);
        }
        for (const options of [{ ttl: -1 }, { ttl: "1" }, { tll: 1 }, { tags: ["a", "a"] }, { tags: ["x".repeat(300)] }, { idle: 0 }, 7]) {
          await refused(store.set("k", 1, options), main.CachePolicyError, JSON.stringify(options));
          await refused(store.setMany([["a", 1]], options), main.CachePolicyError, `setMany ${JSON.stringify(options)}`);
        }
        await refused(store.set("k", 1, { metadata: [1] }), main.CacheSerializationError, "metadata");
        for (const options of [{ grace: 1 }, { ttl: 1, retryAfter: 1 }, { softTimeout: 0 }, { signal: {} }]) {
          await refused(store.getOrSet("k", () => 1, options), main.CachePolicyError, `getOrSet ${JSON.stringify(options)}`);
        }
        await refused(store.setMany([["a", 1], [2, 1]]), main.CacheKeyError, "setMany key");
        assert.deepEqual(await leftovers(cell, prefix), [], `${cell.name}: nothing written`);
        assert.equal(store.getStats().sets, 0);
        // The store works after all that.
        await store.set("ok", { fine: true });
        assert.deepEqual(await store.get("ok"), { fine: true });
        await store.clear();
      }
    });

    test(`${cell.name}: a loader whose value Rust refuses fails every caller with CacheSerializationError, its placeholder released, and the next load runs at once`, async () => {
      const client = await cell.connect();
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy: new LRUPolicy({ maxSize: 10 }), ...(cell.cluster ? { buckets: 2 } : {}) });
      const other = new RedisStore({ client, prefix, policy: new LRUPolicy({ maxSize: 10 }), ...(cell.cluster ? { buckets: 2 } : {}) });
      const leader = store.getOrSet("k", () => sleep(30).then(() => NaN));
      const follower = store.getOrSet("k", () => 2);
      await assert.rejects(leader, main.CacheSerializationError);
      await assert.rejects(follower, main.CacheSerializationError);
      const started = Date.now();
      assert.equal(await other.getOrSet("k", () => "next"), "next");
      assert.ok(Date.now() - started < 1000, `${cell.name}: the next load waited ${Date.now() - started} ms`);
      await store.clear();
    });
  }

  test("TLS: a server killed mid-call (a load storing, a set, a walk) fails each call with CacheBackendError in bounded time; restarted, the store serves again", async () => {
    for (const cell of cells.filter((c) => !c.cluster)) {
      const client = await cell.connect();
      const prefix = fresh();
      const store = new RedisStore({ client, prefix, policy: new LRUPolicy({ maxSize: 100 }) });
      await store.setMany(Array.from({ length: 50 }, (_, i) => [`k${i}`, i]));
      const load = store.getOrSet("loaded", () => sleep(200).then(() => "late"));
      await sleep(50);
      await tls.kill();
      const started = Date.now();
      await assert.rejects(load, (error) => error instanceof main.CacheBackendError || assert.fail(`${cell.name} load: ${error}`));
      await assert.rejects(store.set("k", 1), (error) => error instanceof main.CacheBackendError || assert.fail(`${cell.name} set: ${error}`));
      await assert.rejects(store.invalidate("k*"), (error) => error instanceof main.CacheBackendError || assert.fail(`${cell.name} walk: ${error}`));
      assert.ok(Date.now() - started < 8000, `${cell.name}: the calls took ${Date.now() - started} ms to fail`);
      await tls.restart();
      assert.equal(await servedAgain(store), "back", `${cell.name}: serves again after the restart`);
      await store.clear();
    }
  });

  test("cluster: the master of a store's bucket killed mid-load fails the call with CacheBackendError in bounded time; after the failover the store serves again", async () => {
    for (const cell of cells.filter((c) => c.cluster)) {
      const client = await cell.connect();
      const prefix = fresh();
      // One bucket: every key of the store on one master, the one killed.
      const store = new RedisStore({ client, prefix, buckets: 1, policy: new LRUPolicy({ maxSize: 100 }) });
      await store.set("seed", 1);
      await cluster.waitForReplication();
      // The master of the bucket's slot: the one holding the entry (the bucket-count record may live elsewhere).
      const holders = [];
      for (const node of await cluster.masters()) {
        if ((await node.cli("--scan", "--pattern", `*${prefix}*seed`)).trim() !== "") holders.push(node);
      }
      assert.equal(holders.length, 1, `${cell.name}: one master holds the bucket`);
      // Its replica has the entry (waitForReplication's WAIT, from a connection of its own, waits for no write).
      const masters = await cluster.masters();
      const replicated = async () => {
        for (const node of cluster.nodes.filter((n) => n.running && !masters.includes(n))) {
          if ((await node.cli("--scan", "--pattern", `*${prefix}*seed`)).trim() !== "") return true;
        }
        return false;
      };
      for (let i = 0; i < 100 && !(await replicated()); i++) await sleep(100);
      assert.ok(await replicated(), `${cell.name}: a replica has the entry`);
      const load = store.getOrSet("loaded", () => sleep(200).then(() => "late"));
      await sleep(50);
      await holders[0].kill();
      const started = Date.now();
      await assert.rejects(load, (error) => error instanceof main.CacheBackendError || assert.fail(`${cell.name} load: ${error}`));
      assert.ok(Date.now() - started < 8000, `${cell.name}: the load took ${Date.now() - started} ms to fail`);
      await cluster.waitUntilOk();
      assert.equal(await servedAgain(store), "back", `${cell.name}: serves again after the failover`);
      const seed = await store.get("seed");
      assert.equal(seed, 1, `${cell.name}: the replica had the entry`);
      // Back as a replica of the master that took over: the next cell's victim has a replica too.
      await holders[0].restart();
      await cluster.waitUntilOk();
      await cluster.waitForReplication();
    }
  });
});
