// Hostile review (session 8, helper rreview) of the JS RedisStore's new work
// (issue 24): set's fast encoding (js/redis/2-hot.js plainCopy +
// JSON.stringify + Rust's plainText), get's quick read (plainStart, the
// quick JSON check), onRemove, and the option rules shared with the
// MemoryStore. Against a real redis-server.
//
// The references:
// - a value: Rust's walk (wasm.encode, what `set` with metadata or tags
//   uses) decides what is stored, or refuses it with its words; the fast
//   path "only notices, it judges nothing" (js/redis/2-hot.js), so its
//   document must be byte for byte the walk's, or it must hand over to it.
// - a stored document: Rust's reader (wasm.decodeValue) decides what it
//   holds; get's quick read must give what it gives.
// - an option: the MemoryStore's class and message (commit 7112a7e: "both
//   stores refuse each bad option with the same class and message, and
//   nothing is sent"), and what it accepts the RedisStore accepts.
// - onRemove: the MemoryStore's notices for the same calls (js/redis.d.ts:
//   "as the MemoryStore's onRemove").
//
// Tests marked "FAILS" below fail on main e26b9b1: each is a bug for the
// owners (rharness: the hot path; rcore: options); the others are probes
// that held and check something real.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { before, after, describe, test } from "node:test";
import { createClient, createCluster } from "redis5";
import Redis from "ioredis";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { matchesWalk, wasm } from "./redis-walk.mjs";
import { startCluster, startServer } from "./redis-support.mjs";

const { CacheError, MemoryStore, LRUPolicy } = main;

let server;
let client;
let io;
let n = 0;
const fresh = () => `x${++n}:`;

before(async () => {
  server = await startServer();
  client = await createClient({ url: server.url }).connect();
  io = new Redis(server.url, { lazyConnect: true });
  await io.connect();
});
after(async () => {
  await client?.quit();
  io?.disconnect();
  await server?.stop();
});

describe("set's fast encoding vs Rust's walk", () => {
  // Bugs 1 and 4 of the review (an inherited toJSON or accessor on Object/Array.prototype
  // changed what the fast path stored; a getter that threw once was read again by the
  // walk) are fixed and tested in redis-hotpath.test.mjs ("set's fast encoding on a realm
  // with polluted prototypes"), which holds the tests that were here.

  // Probes that held: each value is stored as the walk stores it, or refused
  // with its words and nothing written.
  test("hostile values: the fast path's document is the walk's, or the walk's refusal", async () => {
    const { runInNewContext } = await import("node:vm");
    class Klass {
      constructor() {
        this.a = 1;
      }
    }
    const deep = (levels) => {
      let v = 1;
      for (let i = 0; i < levels; i++) v = [v];
      return v;
    };
    const shared = { s: 1 };
    const cases = {
      "nesting 100": () => deep(100),
      "nesting 101": () => deep(101),
      sparse: () => [1, , 3],
      "array with extra props": () => Object.assign([1, 2], { x: 1 }),
      "null prototype": () => Object.assign(Object.create(null), { a: 1, b: null }),
      "class instance": () => new Klass(),
      Date: () => new Date(0),
      RegExp: () => /x/,
      Map: () => new Map([[1, 2]]),
      Uint8Array: () => new Uint8Array(2),
      Buffer: () => Buffer.from("ab"),
      "boxed number": () => new Number(1),
      "boxed string": () => new String("s"),
      "-0": () => [-0, 0.1, -1.5e-7],
      "1e21": () => 1e21,
      "5e-324": () => 5e-324,
      "MAX_VALUE": () => Number.MAX_VALUE,
      "around 2^53": () => [2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 60, 1e16, 123456789012345.6],
      "lone surrogate value": () => "a\uD800",
      "lone surrogate key": () => ({ "\uDC00": 1 }),
      "pairs and controls": () => ({ "😀": "😀\u2028\u0000\u001f\u007f" }),
      "own __proto__": () => JSON.parse('{"__proto__":{"a":1},"b":2}'),
      "constructor key": () => ({ constructor: 1, toString: 2 }),
      "symbol key": () => ({ [Symbol("s")]: 1, a: 2 }),
      "symbol value": () => ({ a: Symbol("s") }),
      "function value": () => ({ a: () => 1 }),
      "undefined element": () => [undefined],
      "non-enumerable": () => Object.defineProperty({ a: 1 }, "b", { value: 2, enumerable: false }),
      "shared sub-objects": () => ({ x: shared, y: shared, z: [shared, shared] }),
      cycle: () => {
        const o = { a: 1 };
        o.self = o;
        return o;
      },
      "toJSON getter": () => ({
        get toJSON() {
          return () => 7;
        },
      }),
      "toJSON not a function": () => ({ toJSON: 5, a: 1 }),
      "integer keys": () => ({ b: 1, 2: 2, a: 3, 1: 4 }),
      bigint: () => ({ a: 1n }),
      NaN: () => [NaN],
      "Array subclass": () => {
        class A extends Array {}
        const a = new A();
        a.push(1, 2);
        return a;
      },
      "Proxy of an array": () => new Proxy([1, 2], {}),
      "Proxy lying about its prototype": () => new Proxy(new Klass(), { getPrototypeOf: () => Object.prototype }),
      "Proxy ownKeys adding a key": () =>
        new Proxy(
          { a: 1 },
          {
            ownKeys: () => ["a", "zz"],
            getOwnPropertyDescriptor: (t, k) => (k === "zz" ? { value: 5, enumerable: true, configurable: true } : Reflect.getOwnPropertyDescriptor(t, k)),
          },
        ),
      "Proxy get trap throws": () =>
        new Proxy(
          { a: 1 },
          {
            get() {
              throw new Error("trap!");
            },
          },
        ),
      "revoked Proxy": () => {
        const r = Proxy.revocable({}, {});
        r.revoke();
        return r.proxy;
      },
      "strings like null": () => ["null", "nul", null],
      "escapes as text": () => ["\\u0000", "\\", '"', "\b\f\n\r\t", "/"],
      empties: () => [{}, [], ""],
      // JSON.stringify's text exactly the scratch's 64 KiB, and one more.
      "text the scratch's length": () => "x".repeat(64 * 1024 - 2),
      "text one past the scratch": () => "x".repeat(64 * 1024 - 1),
      "a null at the scratch's end": () => ["x".repeat(64 * 1024 - 10), null],
      "UTF-8 over the scratch, UTF-16 under": () => "é".repeat(40_000),
      "another realm's object": () => runInNewContext("({a:[1,{b:2}]})"),
      "another realm's array": () => runInNewContext("[1,2]"),
    };
    for (const [what, make] of Object.entries(cases)) await matchesWalk(client, fresh(), make, what);
  });

  test("a getter that stores (a huge value: the wasm memory grows) into the same store during the copy", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const big = "z".repeat(3_000_000);
    const value = {
      a: null,
      get b() {
        // Re-enters encodeEntry (resets its null count) and grows the wasm memory (detaches the scratch view).
        store.set("inner", { big, n: null, m: [null, null] }).catch(() => {});
        return [null, 1];
      },
      c: "after",
    };
    await store.set("k", value);
    assert.equal(await client.get(`${store.prefix}k`), '{"v":{"a":null,"b":[null,1],"c":"after"}}');
    // The inner set lands too, whole.
    for (let i = 0; i < 50 && (await client.exists(`${store.prefix}inner`)) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(await store.get("inner"), { big, n: null, m: [null, null] });
    assert.deepEqual(await store.get("k"), { a: null, b: [null, 1], c: "after" });
  });
});

describe("get's quick read vs Rust's reader", () => {
  /** What Rust's reader makes of `doc` (the JSON text of the value, or its error). */
  const bytesOf = (doc) => (/[^\x00-\xff]/.test(doc) ? Buffer.from(doc) : Buffer.from(doc, "latin1"));
  const rust = (key, doc) => {
    try {
      return JSON.parse(wasm.decodeValue(key, bytesOf(doc)));
    } catch (error) {
      return new Error(error.message);
    }
  };

  // Held: a document whose value is the token `-0` (no store writes it; a
  // hand-written or another language's writer may) is -0 for Rust's reader
  // (serde_json: -0.0), the quick read and the slow path alike.
  test("`-0` reads as Rust reads it, whatever the envelope", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    await client.set(`${store.prefix}quick`, '{"v":-0}');
    await client.set(`${store.prefix}slow`, '{"v":-0,"m":{"a":1}}');
    const slow = await store.get("slow");
    const quick = await store.get("quick");
    assert.ok(Object.is(rust("quick", '{"v":-0}'), -0), "Rust's reader: -0");
    assert.ok(Object.is(slow, -0), `the slow path: ${slow}`);
    assert.ok(Object.is(quick, -0), `the quick read: ${quick}`);
  });

  // Probes that held, with node-redis (Buffer replies) and ioredis alike.
  test("corrupt, foreign and odd documents read as Rust's reader reads them (node-redis and ioredis)", async () => {
    const prefix = fresh();
    const stores = [new RedisStore({ client, prefix }), new RedisStore({ client: io, prefix })];
    const docs = [
      '{"v":1}',
      '{"v":1,"m":{"a":1}}',
      '{"m":{"a":1},"v":[1]}',
      '{"v":01}',
      '{"v":1',
      '{"v":1}x',
      '{"v":1}}',
      '{"v": 1}',
      ' {"v":1}',
      '{"v":"\xff"}',
      '{"v":"\\ud800"}',
      '{"v":"\\udbff\\udfff"}',
      '{"v":1e400}',
      '{"v":1e-400}',
      '{"v":{"a":1},"v":2}',
      '{"f":123,"v":1}',
      '{"f":0123,"v":1}',
      '{"t":["a"],"v":1}',
      '{"t":["\xff"],"v":1}',
      '{"v":1,"t":["a"]}',
      '{"x":1,"v":2}',
      '{"v":1.0}',
      '{"v":1E5}',
      '{"v":1e+005}',
      `{"v":1${"0".repeat(120)}}`,
      `{"v":${"[".repeat(101)}${"]".repeat(101)}}`,
      `{"v":${"[".repeat(128)}${"]".repeat(128)}}`,
      "[1]",
      '"x"',
      "null",
      "",
      "{}",
      '{"v":}',
      '{"v":null}',
      '{"v":"a\u2028b"}',
      '{"v":{"__proto__":{"x":1}}}',
      '{"v":12345678901234567890}',
      '{"v":"\\u0000"}',
      '{"V":1}',
      '{"v":true,"v":false}',
      '{"v":[1,2,]}',
      '{"v":"x","f":1}',
      '{"f":1.5,"v":1}',
      '{"t":"notarray","v":1}',
      '{"v":{"a":1,"a":2}}',
      // Documents of the scratch's 64 KiB, one less and one more.
      `{"v":"${"y".repeat(64 * 1024 - 9)}"}`,
      `{"v":"${"y".repeat(64 * 1024 - 8)}"}`,
      `{"v":"${"y".repeat(64 * 1024 - 7)}"}`,
      `{"v":"${"y".repeat(64 * 1024 - 9)}\\u0000"}`,
    ];
    for (let i = 0; i < docs.length; i++) {
      const key = `k${i}`;
      await client.set(Buffer.from(`${prefix}${key}`), bytesOf(docs[i]));
      const expected = rust(key, docs[i]);
      for (const store of stores) {
        let got;
        try {
          got = await store.get(key);
        } catch (error) {
          got = error;
        }
        const shown = `${JSON.stringify(docs[i].slice(0, 60))} via ${store === stores[0] ? "node-redis" : "ioredis"}`;
        if (expected instanceof Error) {
          assert.ok(got instanceof main.CacheSerializationError, `${shown}: ${got}`);
          assert.equal(got.message, expected.message, shown);
        } else {
          assert.deepEqual(got, expected, shown);
        }
      }
    }
  });
});

describe("options: the MemoryStore's rules, classes and messages", () => {
  /** The call's outcome: "accepted", or the class and message it threw. */
  async function outcome(call) {
    try {
      await call();
      return "accepted";
    } catch (error) {
      return `${error instanceof CacheError ? error.constructor.name : `not a CacheError: ${error?.constructor?.name}`}: ${error?.message}`;
    }
  }

  const deepMeta = (levels) => {
    let v = 1;
    for (let i = 0; i < levels; i++) v = { a: v };
    return v;
  };

  // FAILS (bug 2). The metadata's content: the MemoryStore refuses with
  // "metadata.a cannot be stored: metadata holds only JSON values (...), got
  // NaN", the RedisStore with the wasm walk's "serialization failed: the
  // metadata holds NaN or an infinite number ...": same class, other words,
  // for every bad metadata content (NaN, bigint, lone surrogate name, too
  // deep); and `{ a: undefined }` the MemoryStore refuses while the
  // RedisStore stores it (the walk leaves it out). Expected: one rule, one
  // message, as for the other options (7112a7e moved those to
  // js/api/1-shared.js; metadata's check was left in each store).
  test("set and getOrSet: bad metadata content is refused alike, and what one refuses the other refuses", async () => {
    const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    const redis = new RedisStore({ client, prefix: fresh() });
    const cases = [{ a: NaN }, { a: 1n }, { "\uD800": 1 }, deepMeta(101), { a: undefined }, { a: () => 1 }, { a: new Map() }];
    const mismatches = [];
    for (const metadata of cases) {
      for (const method of ["set", "getOrSet"]) {
        const call = (store) => (method === "set" ? () => store.set("k", 1, { metadata }) : () => store.getOrSet("k", async () => 1, { metadata }));
        await redis.delete("k");
        const fromMemory = await outcome(call(memory));
        const fromRedis = await outcome(call(redis));
        if (fromRedis !== "accepted") assert.equal(await client.exists(`${redis.prefix}k`), 0, "a refused call wrote nothing");
        if (fromMemory !== fromRedis) mismatches.push(`${method} ${Object.keys(metadata)[0]}: memory "${fromMemory}" / redis "${fromRedis}"`);
      }
    }
    assert.deepEqual(mismatches, []);
  });

  // FAILS (bug 3). An options object that is a Proxy whose getPrototypeOf
  // trap throws: the MemoryStore reads only its properties and stores the
  // entry; the RedisStore's readSetOptions/readLoadOptions call
  // isPlainObject(options) outside any try, and the trap's raw Error escapes
  // (not a CacheError). Expected: the MemoryStore's outcome (accepted), or
  // at least a CachePolicyError, as readMetadata already does for metadata.
  test("a Proxy options object whose getPrototypeOf trap throws: the MemoryStore's outcome, never a raw Error", async () => {
    const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    const redis = new RedisStore({ client, prefix: fresh() });
    const options = () =>
      new Proxy(
        { ttl: 5 },
        {
          getPrototypeOf() {
            throw new Error("trap");
          },
        },
      );
    for (const method of ["set", "getOrSet"]) {
      const call = (store) => (method === "set" ? () => store.set("k", 1, options()) : () => store.getOrSet("k", async () => 1, options()));
      const fromMemory = await outcome(call(memory));
      const fromRedis = await outcome(call(redis));
      assert.equal(fromRedis, fromMemory, method);
    }
  });
});

describe("the other methods' refusals: the MemoryStore's words", () => {
  // FAILS (bug 5, words only: same classes). Refusals both stores make of
  // the same bad argument, worded differently: invalidateTags's too-long tag
  // (the RedisStore's comes from Rust's check_invalidate, with "(300 bytes)
  // is 300 bytes long", not js/api/1-shared.js checkTag's), setMany of
  // undefined, a loader that returned undefined, and a lone-surrogate key in
  // deleteMany (here the MemoryStore's "key the string" is the odd one out:
  // every other key message says "the key"). Expected: one wording each, as
  // 7112a7e did for the options.
  test("same bad argument, same message", async () => {
    const memory = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    const redis = new RedisStore({ client, prefix: fresh() });
    const calls = {
      "invalidateTags of a 300-byte tag": (s) => s.invalidateTags(["x".repeat(300)]),
      "setMany of [key] (undefined value)": (s) => s.setMany([["a"]]),
      "setMany of a string": (s) => s.setMany("ab"),
      "a loader returning undefined": (s) => s.getOrSet("k", async () => undefined),
      "deleteMany of a lone-surrogate key": (s) => s.deleteMany(["a", "\uD800"]),
    };
    const mismatches = [];
    for (const [what, call] of Object.entries(calls)) {
      const words = async (store) => {
        try {
          await call(store);
          return "accepted";
        } catch (error) {
          return `${error.constructor.name}: ${error.message}`;
        }
      };
      const fromMemory = await words(memory);
      const fromRedis = await words(redis);
      assert.notEqual(fromMemory, "accepted", what);
      assert.equal(fromRedis.split(":")[0], fromMemory.split(":")[0], `${what}: the same class`);
      if (fromRedis !== fromMemory) mismatches.push(`${what}: memory "${fromMemory}" / redis "${fromRedis}"`);
    }
    assert.deepEqual(mismatches, []);
  });
});

describe("onRemove: the MemoryStore's notices for the same calls", () => {
  // Held: the listener runs before the awaited call resolves, may re-enter
  // the store on the same key (its calls see the removal done), and a throw
  // rejects the call after the removal, as the MemoryStore does.
  test("ordering, re-entry and a throwing listener, as the MemoryStore", async () => {
    const results = [];
    for (const make of [(o) => new MemoryStore(o), (o) => new RedisStore({ client, prefix: fresh(), ...o })]) {
      const log = [];
      let store;
      let loads = 0;
      const onRemove = (value, key, reason) => {
        log.push(`${reason} ${key}=${JSON.stringify(value)}`);
        if (reason === "deleted") {
          // Re-enters on the same key: a load (the entry is gone, so it runs) and a set.
          store.getOrSet(key, async () => `reloaded${++loads}`).then((v) => log.push(`reload ${v}`));
        }
        if (reason === "replaced" && value === "boom") throw new Error("listener");
      };
      store = make({ policy: new LRUPolicy({ maxSize: 10 }), onRemove });
      await store.set("a", 1);
      const deleted = store.delete("a").then((r) => log.push(`delete resolved ${r}`));
      await deleted;
      // The re-entrant load runs after delete resolved; let it land.
      for (let i = 0; i < 100 && !log.some((l) => l.startsWith("reload")); i++) await new Promise((r) => setTimeout(r, 5));
      log.push(`after reload: ${JSON.stringify(await store.get("a"))}`);
      await store.set("b", "boom");
      let thrown;
      try {
        await store.set("b", "next");
      } catch (error) {
        thrown = error.message;
      }
      log.push(`set threw ${thrown}, b=${JSON.stringify(await store.get("b"))}`);
      results.push(log);
    }
    assert.deepEqual(results[1], results[0]);
    // What both did (so that the comparison cannot pass on two empty logs).
    assert.deepEqual(results[0], [
      "deleted a=1",
      "delete resolved true",
      "reload reloaded1",
      'after reload: "reloaded1"',
      'replaced b="boom"',
      'set threw listener, b="next"',
    ]);
  });

  // Held: a listener that throws on what a load evicted: getOrSet's callers
  // get the value, and the error is reported as uncaught (js/redis.d.ts:
  // "when no caller waits (a load or refresh storing its value) the error is
  // reported as uncaught errors are"), in Node an uncaughtException. Run in
  // a child process: the test runner would take the uncaught error as its own.
  test("a listener throwing on a load's eviction: the caller gets the value, the error is uncaught", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const script = `
      import { createClient, createCluster } from "redis5";
      import { LRUPolicy } from "pepperpy-caching";
      import { RedisStore } from "pepperpy-caching/redis";
      const client = await createClient({ url: process.env.URL }).connect();
      process.on("uncaughtException", (e) => console.log("uncaught " + e.message));
      const store = new RedisStore({ client, prefix: process.env.PREFIX, policy: new LRUPolicy({ maxSize: 1 }),
        onRemove: (v, k, r) => { throw new Error("listener " + r + " " + k); } });
      await store.set("a", 1);
      console.log("loaded " + await store.getOrSet("b", async () => 2));
      console.log("a " + await store.get("a"));
      await new Promise((r) => setTimeout(r, 50));
      await client.quit();
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
      cwd: dirname(new URL(import.meta.url).pathname),
      env: { ...process.env, URL: server.url, PREFIX: fresh() },
      timeout: 20_000,
    });
    assert.deepEqual(stdout.trim().split("\n").sort(), ["a undefined", "loaded 2", "uncaught listener evicted a"].sort());
  });

  // Probes that held (single node): duplicates in batches, tagged replaces,
  // evictions, a listener that throws.
  test("duplicates, tags, capacity: the same notices and results as the MemoryStore", async () => {
    const runs = {
      "deleteMany of a key twice": async (s) => {
        await s.set("a", 1);
        return await s.deleteMany(["a", "a", "a"]);
      },
      "setMany of a key twice": async (s) => {
        await s.set("a", 0);
        await s.setMany([
          ["a", 1],
          ["a", 2],
        ]);
        return await s.get("a");
      },
      "setMany of a key twice with tags": async (s) => {
        await s.setMany(
          [
            ["a", 1],
            ["a", 2],
          ],
          { tags: ["t"] },
        );
        return await s.invalidateTags(["t"]);
      },
      "a tagged entry replaced by an untagged one": async (s) => {
        await s.set("a", 1, { tags: ["t"] });
        await s.set("a", 2);
        return await s.invalidateTags(["t"]);
      },
      "invalidateTags naming two tags of one entry": async (s) => {
        await s.set("a", 1, { tags: ["t", "u"] });
        return await s.invalidateTags(["t", "u"]);
      },
      "LRU eviction by set": async (s) => {
        await s.set("a", 1);
        await s.set("b", 2);
        await s.get("a");
        await s.set("c", 3);
        return (await s.keys()).sort();
      },
      "LRU eviction by setMany": async (s) => {
        await s.setMany([
          ["a", 1],
          ["b", 2],
          ["c", 3],
        ]);
        return (await s.keys()).sort();
      },
      "LRU eviction by a load": async (s) => {
        await s.set("a", 1);
        await s.set("b", 2);
        return await s.getOrSet("c", async () => 3);
      },
      "null replaced": async (s) => {
        await s.set("a", null);
        await s.set("a", 1);
      },
    };
    for (const [what, run] of Object.entries(runs)) {
      const results = [];
      for (const make of [(o) => new MemoryStore(o), (o) => new RedisStore({ client, prefix: fresh(), ...o })]) {
        const seen = [];
        const store = make({ policy: new LRUPolicy({ maxSize: 2 }), onRemove: (v, k, r) => seen.push([v, k, r]) });
        results.push({ result: await run(store), seen });
      }
      assert.deepEqual(results[1], results[0], what);
    }
  });
});

// Held on a 3+3 cluster (16 buckets, node-redis and ioredis): batches over
// many buckets with duplicates, glob invalidation, clear and tags give the
// MemoryStore's notices and results.
test("onRemove on a cluster: the MemoryStore's notices for batches over every bucket", async (t) => {
  const cluster = await startCluster();
  const nr = createCluster({ rootNodes: cluster.urls.map((url) => ({ url })) });
  nr.on("error", () => {});
  await nr.connect();
  const ioc = new Redis.Cluster(cluster.rootNodes, { lazyConnect: true });
  ioc.on("error", () => {});
  await ioc.connect();
  // The clients first, then the servers (an ioredis Cluster left open retries for ever).
  t.after(async () => {
    await nr.quit().catch(() => {});
    ioc.disconnect();
    await cluster.stop();
  });
  const keys = Array.from({ length: 40 }, (_, i) => `key${i}`);
  const runs = {
    "deleteMany with every key twice": async (s) => {
      await s.setMany(keys.map((k, i) => [k, i]));
      return await s.deleteMany([...keys, ...keys]);
    },
    "setMany with every key twice": async (s) => {
      await s.setMany(keys.map((k, i) => [k, i]));
      await s.setMany([...keys, ...keys].map((k, i) => [k, i]));
      return await s.getMany(keys);
    },
    invalidate: async (s) => {
      await s.setMany(keys.map((k, i) => [k, i]));
      return await s.invalidate("key1*");
    },
    "clear, then its tags": async (s) => {
      await s.setMany(
        keys.map((k, i) => [k, i]),
        { tags: ["t"] },
      );
      await s.clear();
      return await s.invalidateTags(["t"]);
    },
    invalidateTags: async (s) => {
      await s.setMany(
        keys.map((k, i) => [k, i]),
        { tags: ["t"] },
      );
      return await s.invalidateTags(["t", "t2"]);
    },
  };
  for (const [name, c] of [
    ["node-redis", nr],
    ["ioredis", ioc],
  ]) {
    for (const [what, run] of Object.entries(runs)) {
      const out = [];
      for (const make of [(o) => new MemoryStore({ policy: new LRUPolicy({ maxSize: 1000 }), ...o }), (o) => new RedisStore({ client: c, prefix: fresh(), ...o })]) {
        const seen = [];
        const store = make({ onRemove: (v, k, r) => seen.push(`${r} ${k}=${v}`) });
        out.push({ result: await run(store), seen: seen.sort() });
      }
      assert.ok(out[0].seen.length > 0, `${what}: something removed`);
      assert.deepEqual(out[1], out[0], `${name} ${what}`);
    }
  }
});
