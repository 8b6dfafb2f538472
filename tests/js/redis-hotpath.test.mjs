// The JS RedisStore's hot path (issue 24 item 4) against a real redis-server:
// set's fast encoding (a read-once copy of the value, JSON.stringify, Rust's
// plainText through the scratch buffer) and get's quick read (Rust's
// plainStart through the scratch buffer, the quick JSON check) must write
// and read exactly what Rust's walk and reader do, for values around the
// scratch buffer's size, after the wasm memory grew, and for hostile values.
import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import { before, after, describe, test } from "node:test";
import { createClient } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { conn } from "../../js/redis/clients.js";
import { matchesWalk, wasm } from "./redis-walk.mjs";
import { startServer } from "./redis-support.mjs";

const { CacheBackendError, CacheSerializationError } = main;

let server;
let client;
let n = 0;
const fresh = () => `h${++n}:`;

/** A node-redis v5 lookalike, ready, whose sendCommand does what `next.current(argv)` says. */
const lookalike = (next) => ({
  isReady: true,
  isOpen: true,
  withTypeMapping() {},
  sendCommand: (argv) => next.current(argv),
  once() {},
  on() {},
});

before(async () => {
  server = await startServer();
  client = await createClient({ url: server.url }).connect();
});
after(async () => {
  await client?.quit();
  await server?.stop();
});

describe("set's fast encoding", () => {
  test("a plain value is written and read on the fast path: Rust's walk and reader are not called (they are for a value with metadata)", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const calls = { encode: 0, decodeValue: 0 };
    const original = { encode: wasm.encode, decodeValue: wasm.decodeValue };
    for (const name of Object.keys(calls)) {
      wasm[name] = function (...args) {
        calls[name]++;
        return original[name].apply(this, args);
      };
    }
    try {
      // The control: the walk writes a value with metadata, and the reader reads it back.
      await store.set("m", { a: 1 }, { metadata: { by: "test" } });
      assert.equal(calls.encode, 1, "a value with metadata goes to the walk (the counters see the store's calls)");
      assert.deepEqual(await store.get("m"), { a: 1 });
      const value = { a: [1, "x", null, 2.5], b: { c: true } };
      const before = { ...calls };
      await store.set("k", value);
      assert.deepEqual(await store.get("k"), value);
      assert.deepEqual(calls, before, "neither the walk nor the reader ran for a plain value");
      assert.equal(await client.get(`${store.prefix}k`), original.encode(value, undefined, []), "and the document is the walk's");
    } finally {
      Object.assign(wasm, original);
    }
  });

  test("reads each property of the value once, as Rust's walk does", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    let reads = 0;
    const value = {
      get counted() {
        reads++;
        return { nested: [1, 2.5, "x"] };
      },
      plain: 1,
    };
    await store.set("k", value);
    assert.equal(reads, 1, "the getter ran once");
    assert.equal(await client.get(`${store.prefix}k`), '{"v":{"counted":{"nested":[1,2.5,"x"]},"plain":1}}');
    // A Proxy's traps, likewise: one `get` per property.
    const gets = new Map();
    const proxy = new Proxy(
      { a: 1, b: [true, null] },
      {
        get(target, name, receiver) {
          if (typeof name === "string") gets.set(name, (gets.get(name) ?? 0) + 1);
          return Reflect.get(target, name, receiver);
        },
      },
    );
    await store.set("p", proxy);
    assert.equal(await client.get(`${store.prefix}p`), '{"v":{"a":1,"b":[true,null]}}');
    assert.equal(gets.get("a"), 1);
    assert.equal(gets.get("b"), 1);
  });

  test("a getter that answers differently each time is stored as read once: never a text Rust's walk would refuse", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    let turn = 0;
    // Plain the first time, a Map after: JSON.stringify would write `{}` for the Map, which the walk refuses.
    const shifty = {
      get x() {
        return turn++ === 0 ? { ok: 1 } : new Map([[1, 2]]);
      },
    };
    await store.set("k", shifty);
    assert.equal(await client.get(`${store.prefix}k`), '{"v":{"x":{"ok":1}}}');
    // A function the first time: the walk decides on that reading (a function: refused), never
    // reading the getter again (a 1 then), nor JSON.stringify's `{}` (which leaves a function out).
    let calls = 0;
    const sly = {
      get f() {
        return calls++ === 0 ? () => 1 : 1;
      },
    };
    await assert.rejects(store.set("f", sly), (e) => e instanceof CacheSerializationError && /function/.test(e.message));
    assert.equal(calls, 1, "read once, by the copy");
    assert.equal(await client.exists(`${store.prefix}f`), 0);
    // Inside an object the copy keeps as read (a class instance), the walk reads for the first time.
    let inner = 0;
    class Box {
      get v() {
        inner++;
        return 1;
      }
    }
    await assert.rejects(store.set("box", { b: new Box() }), CacheSerializationError);
    assert.equal(inner, 0, "the walk refuses the instance without reading it");
  });

  test("a getter that stores meanwhile (re-entrance) changes neither write", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    let inner;
    const value = {
      a: null,
      get b() {
        inner ??= store.set("inner", [null, { n: null }]);
        return [1, null];
      },
    };
    await store.set("outer", value);
    await inner;
    assert.equal(await client.get(`${store.prefix}outer`), '{"v":{"a":null,"b":[1,null]}}');
    assert.equal(await client.get(`${store.prefix}inner`), '{"v":[null,{"n":null}]}');
  });

  test("shapes the copy leaves to the walk are stored as the walk writes them", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const ownProto = JSON.parse('{"__proto__":{"x":1},"a":2}');
    // eslint-disable-next-line no-sparse-arrays
    const holes = [1, , 3];
    const arrayWithToJSON = Object.assign([1, 2], { toJSON: () => "replaced" });
    const proxiedArray = new Proxy([1, { b: [2] }], {});
    const nullProto = Object.assign(Object.create(null), { z: 1, a: [null] });
    const shapes = [ownProto, holes, [undefined, null], arrayWithToJSON, { inner: arrayWithToJSON }, proxiedArray, nullProto, { 2: "b", 1: "a", x: 0 }];
    for (const [i, value] of shapes.entries()) {
      await store.set(`s${i}`, value);
      assert.equal(await client.get(`${store.prefix}s${i}`), wasm.encode(value, undefined, []), `shape ${i}`);
    }
    // A toJSON on Object.prototype (a polluted realm): every plain object has one, the walk calls it.
    Object.prototype.toJSON = function () {
      return "polluted";
    };
    try {
      const value = { a: 1 };
      const expected = wasm.encode(value, undefined, []);
      await store.set("polluted", value);
      assert.equal(await client.get(`${store.prefix}polluted`), expected);
    } finally {
      delete Object.prototype.toJSON;
    }
  });

  test("a toJSON that is a getter is read once (was twice: by the copy, then by the walk), and its toJSON's result stored as the walk stores it", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    let reads = 0;
    const make = () => ({
      get toJSON() {
        reads++;
        return function () {
          return { by: "toJSON", self: this.plain };
        };
      },
      plain: 1,
    });
    reads = 0;
    const expected = wasm.encode(make(), undefined, []);
    assert.equal(reads, 1, "the walk alone reads it once");
    assert.equal(expected, '{"v":{"by":"toJSON","self":1}}');
    for (const [name, value, doc] of [
      ["top", make(), expected],
      ["nested", { inner: make() }, '{"v":{"inner":{"by":"toJSON","self":1}}}'],
      ["in an array", [make()], '{"v":[{"by":"toJSON","self":1}]}'],
    ]) {
      reads = 0;
      await store.set(name, value);
      assert.equal(reads, 1, `${name}: the getter ran once`);
      assert.equal(await client.get(`${store.prefix}${name}`), doc, name);
    }
    // A toJSON that is no function is a property as any other: read once too.
    let dataReads = 0;
    const data = {
      get toJSON() {
        dataReads++;
        return 5;
      },
      b: 1,
    };
    await store.set("data", data);
    assert.equal(dataReads, 1);
    assert.equal(await client.get(`${store.prefix}data`), '{"v":{"toJSON":5,"b":1}}');
  });

  test("undefined array elements and holes take the fast path (both write null), a long sparse array too; the document is the walk's", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const original = wasm.encode;
    let walks = 0;
    wasm.encode = function (...args) {
      walks++;
      return original.apply(this, args);
    };
    try {
      // eslint-disable-next-line no-sparse-arrays
      const shapes = [[undefined], [1, , 3], [null, undefined, [undefined, { a: undefined, b: null }]], new Array(100_000)];
      for (const [i, value] of shapes.entries()) {
        await store.set(`u${i}`, value);
        assert.equal(await client.get(`${store.prefix}u${i}`), original(value, undefined, []), `shape ${i}`);
        assert.deepEqual(await store.get(`u${i}`), JSON.parse(JSON.stringify(value)), `shape ${i} read back`);
      }
      assert.equal(walks, 0, "none went to the walk");
      // What the copy still sends to the walk: NaN where JSON.stringify writes null (the walk refuses it).
      await assert.rejects(store.set("nan", [undefined, NaN]), CacheSerializationError);
      assert.equal(walks, 1);
      assert.equal(await client.get(`${store.prefix}nan`), null);
    } finally {
      wasm.encode = original;
    }
  });

  test("numbers of every size and precision are written as the walk writes them", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    // A fixed pseudo-random sequence (xorshift): the same numbers every run.
    let seed = 0x9e3779b9;
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const bits = new DataView(new ArrayBuffer(8));
    for (let round = 0; round < 8; round++) {
      const numbers = [];
      for (let i = 0; i < 500; i++) {
        const digits = 1 + Math.floor(random() * 17);
        const scale = Math.floor(random() * 30) - 12;
        numbers.push(Number((random() * 10 ** scale).toPrecision(digits)) * (random() < 0.5 ? -1 : 1));
        bits.setUint32(0, (random() * 2 ** 32) >>> 0);
        bits.setUint32(4, (random() * 2 ** 32) >>> 0);
        const any = bits.getFloat64(0);
        if (Number.isFinite(any)) numbers.push(any);
      }
      numbers.push(0.00001, 0.000015, 0.000001, 1e-7, 99999999999999.9, 999999999999999.9, 0.1 + 0.2, 1 / 3);
      await store.set(`n${round}`, numbers);
      assert.equal(await client.get(`${store.prefix}n${round}`), wasm.encode(numbers, undefined, []), `round ${round}`);
      assert.deepEqual(await store.get(`n${round}`), numbers);
    }
  });

  test("values around and past the scratch buffer's size, ASCII or not, are Rust's bytes and read back", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const size = wasm.scratchLength();
    const values = [];
    for (const length of [size - 12, size - 11, size - 10, size, size + 1, 3 * size]) {
      values.push("a".repeat(length), `${"é".repeat(Math.floor(length / 2))}`, { s: "日".repeat(Math.floor(length / 3)) });
    }
    for (const [i, value] of values.entries()) {
      await store.set(`k${i}`, value);
      assert.equal(await client.get(`${store.prefix}k${i}`), wasm.encode(value, undefined, []), `value ${i}`);
      assert.deepEqual(await store.get(`k${i}`), value, `value ${i} reads back`);
    }
    assert.deepEqual(await store.getMany(values.map((_, i) => `k${i}`)), values);
  });

  test("after the wasm memory grew (its views detached), set and get still go through the scratch buffer", async () => {
    // A long response timeout: the large write below is slow on a loaded machine.
    const store = new RedisStore({ client, prefix: fresh(), responseTimeout: 30 });
    const memory = wasm.wasmMemory();
    await store.set("small", { a: [1, 2] });
    const before = memory.buffer.byteLength;
    // The walk (metadata) of a large value allocates in the wasm: the memory grows.
    const big = { blob: "x".repeat(4 * memory.buffer.byteLength) };
    await store.set("big", big, { metadata: { m: 1 } });
    assert.ok(memory.buffer.byteLength > before, "the memory grew");
    for (let i = 0; i < 3; i++) {
      await store.set(`after${i}`, { i, s: "é" });
      assert.deepEqual(await store.get(`after${i}`), { i, s: "é" });
    }
    assert.deepEqual(await store.get("small"), { a: [1, 2] });
    assert.equal((await store.get("big")).blob.length, big.blob.length);
  });
});

// Found by the hostile review (rreview's tests/js/redis-hostile3.test.mjs, session 8): the copy is a
// `{}` or `[]`, which inherits from the realm's prototypes where the value itself may not.
describe("set's fast encoding on a realm with polluted prototypes", () => {
  test("a toJSON on Array.prototype or Object.prototype: the walk's document, not the inherited toJSON's", async () => {
    Array.prototype.toJSON = () => "X";
    try {
      await matchesWalk(client, fresh(), () => [1, 2], "[1,2] with Array.prototype.toJSON");
      await matchesWalk(client, fresh(), () => ({ a: [1, 2] }), "{a:[1,2]} with Array.prototype.toJSON");
    } finally {
      delete Array.prototype.toJSON;
    }
    Object.defineProperty(Object.prototype, "toJSON", { value: () => "Y", configurable: true, writable: true });
    try {
      await matchesWalk(client, fresh(), () => Object.assign(Object.create(null), { a: 1 }), "null-prototype {a:1}");
      await matchesWalk(client, fresh(), () => ({ a: 1 }), "{a:1} with Object.prototype.toJSON");
    } finally {
      delete Object.prototype.toJSON;
    }
  });

  test("an accessor on Object.prototype or Array.prototype does not swallow a property or an element of the copy", async () => {
    Object.defineProperty(Object.prototype, "a", { set() {}, get: () => undefined, configurable: true });
    try {
      await matchesWalk(client, fresh(), () => ({ a: 1, b: 2 }), "{a:1,b:2} with an Object.prototype accessor `a`");
    } finally {
      delete Object.prototype.a;
    }
    // An index accessor breaks the clients themselves (they push into arrays): a Conn that records what set sends.
    const sent = [];
    const recorder = {
      kind: "recorder",
      clustered: false,
      command: async (args) => void sent.push(args[2]),
      script: async () => null,
      pipeline: async () => [],
      masters: async () => [recorder],
    };
    const store = new RedisStore({ client: recorder, prefix: "r:" });
    const expected = wasm.encode([1, 2, 3], undefined, []);
    Object.defineProperty(Array.prototype, "1", { set() {}, get: () => undefined, configurable: true });
    try {
      await store.set("k", [1, 2, 3]);
    } finally {
      delete Array.prototype[1];
    }
    assert.deepEqual(sent, [expected], "[1,2,3] with an Array.prototype accessor `1`");
  });

  test("a getter that throws once: the set is refused with the walk's words, the getter read once, nothing written", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    let reads = 0;
    const value = {
      get x() {
        if (reads++ === 0) throw new Error("closed");
        return 1;
      },
    };
    await assert.rejects(store.set("k", value), (e) => e instanceof CacheSerializationError && /reading it threw: closed/.test(e.message));
    assert.equal(reads, 1);
    assert.equal(await client.get(`${store.prefix}k`), null);
    // A Proxy trap likewise, and a thrown non-Error: the walk's words for it.
    const trapped = new Proxy({}, { ownKeys() { throw "no keys"; } });
    await matchesWalk(client, fresh(), () => trapped, "a Proxy whose ownKeys throws a string");
  });
});

describe("the store's caches under a polluted prototype", () => {
  test("an index accessor on Object.prototype is never read as a cached key head (the entry lands under its own key, was under the accessor's)", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    Object.defineProperty(Object.prototype, "0", { configurable: true, get: () => "hijacked:" });
    let pending;
    try {
      // The synchronous part of a fresh store's first set (its caches are made there).
      pending = store.set("k", [1, 2]);
    } finally {
      delete Object.prototype[0];
    }
    await pending;
    assert.equal(await client.get(`${store.prefix}k`), '{"v":[1,2]}');
    assert.equal(await client.exists("hijacked:k"), 0);
    assert.deepEqual(await store.get("k"), [1, 2]);
  });
});

describe("get's quick read", () => {
  test("reads what Rust reads and refuses what it refuses, whichever check answers", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    const deepest = `${"[".repeat(100)}1${"]".repeat(100)}`;
    const readable = [
      ['{"v":{"id":5,"name":"user 5","tags":["a","b"],"score":7.5}}', { id: 5, name: "user 5", tags: ["a", "b"], score: 7.5 }],
      ['{"v": [1, 2] }', [1, 2]],
      ['{"v":"\\u00e9\\ud83d\\ude00\\n\\/"}', "é😀\n/"],
      ['{"v":1e300}', 1e300],
      ['{"v":1e-400}', 0],
      ['{"v":-0.0}', -0],
      [`{"v":1${"0".repeat(120)}}`, 1e120],
      [`{"v":${deepest}}`, JSON.parse(deepest)],
      ['{"v":{"a":1,"a":2}}', { a: 2 }],
      ['{"v":"日本"}', "日本"],
    ];
    for (const [doc, value] of readable) {
      await client.set(`${store.prefix}k`, doc);
      assert.deepEqual(await store.get("k"), value, doc.slice(0, 60));
      assert.deepEqual(await store.getMany(["k"]), [value], doc.slice(0, 60));
    }
    const refused = ['{"v":"\\ud800"}', '{"v":1e400}', '{"v":[1,]}', '{"v":01}', '{"v":"a\tb"}', `{"v":${"[".repeat(130)}1${"]".repeat(130)}}`];
    for (const doc of refused) {
      await client.set(`${store.prefix}k`, doc);
      await assert.rejects(store.get("k"), CacheSerializationError, doc.slice(0, 60));
      assert.throws(() => wasm.decodeValue("k", Buffer.from(doc)), (e) => e.name === "CacheSerializationError", `Rust refuses ${doc.slice(0, 60)} too`);
    }
    // Bytes that are no UTF-8 inside a string: Rust refuses them, get too.
    await client.set(`${store.prefix}k`, Buffer.from([...Buffer.from('{"v":"'), 0xff, ...Buffer.from('"}')]));
    await assert.rejects(store.get("k"), CacheSerializationError);
  });

  test("a document plainStart declines (metadata, an idle header, a refused one) is copied into the wasm once: read where the scratch buffer holds it", async () => {
    const store = new RedisStore({ client, prefix: fresh() });
    // The calls that take the document's bytes as an argument (a malloc and a copy each).
    const copying = ["plainStart", "valueStart", "idleHeader", "decodeValue"].filter((name) => typeof wasm[name] === "function");
    const original = Object.fromEntries(copying.map((name) => [name, wasm[name]]));
    const calls = [];
    for (const name of copying) {
      wasm[name] = function (...args) {
        calls.push(name);
        return original[name].apply(this, args);
      };
    }
    try {
      await store.set("meta", { a: [1, 2.5] }, { metadata: { by: "t" } });
      await store.set("idle", { b: "x" }, { idle: 60 });
      await client.set(`${store.prefix}foreign`, '{"v":{"a":1,"a":2},"z":1}');
      await client.set(`${store.prefix}bad`, '{"v":1e400,"m":{}}');
      calls.length = 0;
      assert.deepEqual(await store.get("meta"), { a: [1, 2.5] });
      assert.deepEqual(await store.get("idle"), { b: "x" });
      assert.deepEqual(await store.get("foreign"), { a: 2 });
      await assert.rejects(store.get("bad"), CacheSerializationError);
      assert.deepEqual(calls, [], "no call took the bytes again");
      // Longer than the scratch buffer: read in a longer one (no copying call:
      // the bytes go into the wasm once; were copied by each of the four), given back after.
      const fits = [];
      const fit = wasm.scratchFit;
      wasm.scratchFit = (length) => {
        fits.push(length);
        return fit(length);
      };
      try {
        const big = "é".repeat(40_000);
        const size = wasm.scratchLength();
        await store.set("big", big, { metadata: { by: "t" } });
        // Plain, but not ASCII: Rust's plainStart answers (an ASCII one is read without the wasm: redis-quick.test.mjs).
        await store.set("bigPlain", ["é".repeat(size / 2 + 8), 1.5]);
        await store.set("bigIdle", { s: "y".repeat(size) }, { idle: 60 });
        await client.set(`${store.prefix}bigBad`, `{"v":[${"1,".repeat(size)}1e400]}`);
        calls.length = 0;
        for (const [key, expected] of [
          ["big", big],
          ["bigPlain", ["é".repeat(size / 2 + 8), 1.5]],
          ["bigIdle", { s: "y".repeat(size) }],
          ["meta", { a: [1, 2.5] }],
        ]) {
          fits.length = 0;
          assert.deepEqual(await store.get(key), expected, key);
          if (key !== "meta") assert.deepEqual(fits.slice(1), [0], `${key}: the longer buffer given back (${fits})`);
          assert.ok(fits[0] === undefined || fits[0] > size, `${key}: made longer only for a longer document (${fits})`);
        }
        fits.length = 0;
        await assert.rejects(store.get("bigBad"), CacheSerializationError);
        assert.deepEqual(fits.slice(1), [0], `a refused document: the longer buffer given back too (${fits})`);
        assert.deepEqual(calls, [], "no call took the bytes of a longer document again");
      } finally {
        wasm.scratchFit = fit;
      }
    } finally {
      Object.assign(wasm, original);
    }
    // The idle entry was touched: its TTL is the idle time again.
    const pttl = await client.pTTL(`${store.prefix}idle`);
    assert.ok(pttl > 50_000 && pttl <= 60_000, `pttl ${pttl}`);
  });
});

describe("a Conn call's quick way (a connected client, no script)", () => {
  test("a client that throws at once, never answers, or answers late: one settlement each, the deadline gone", async () => {
    const next = { current: undefined };
    const fake = lookalike(next);
    const c = conn(fake, { timeout: 50 });
    next.current = () => {
      throw new Error("boom");
    };
    await assert.rejects(c.command(["GET", "k"], "k"), (e) => e.message === "boom" && e.redisError !== true);
    next.current = () => new Promise(() => {});
    const started = Date.now();
    await assert.rejects(c.command(["GET", "k"], "k"), (e) => e.timeout === true && /within 50 ms/.test(e.message));
    assert.ok(Date.now() - started < 1000);
    // Answered after its deadline: the caller was told once (the timeout), the late reply changes nothing.
    let answer;
    next.current = () => new Promise((resolve) => (answer = resolve));
    const late = c.command(["GET", "k"], "k");
    await assert.rejects(late, (e) => e.timeout === true);
    answer(Buffer.from("x"));
    // An error reply is marked, and the next call goes through as usual.
    next.current = () => Promise.reject(Object.assign(new Error("ERR bad"), { redisError: true }));
    await assert.rejects(c.command(["GET", "k"], "k"), (e) => e.redisError === true && e.message === "ERR bad");
    next.current = () => Promise.resolve("v");
    assert.deepEqual(await c.command(["GET", "k"], "k"), Buffer.from("v"));
    // Nothing is left to time out later (an unhandled rejection would fail the run).
    await new Promise((r) => setTimeout(r, 150));
  });

  test("the hot call with timeouts off (timeout 0 or Infinity): replies, errors and a late reply each settle once, nothing is timed out", async () => {
    for (const timeout of [0, Infinity]) {
      const next = { current: undefined };
      const fake = lookalike(next);
      const c = conn(fake, { timeout });
      const hot = c[Object.getOwnPropertySymbols(c).find((s) => typeof c[s] === "function")];
      assert.equal(typeof hot, "function", "a Conn conn made has its hot call");
      /** The hot call of `argv`, as a promise of ["reply", r] or ["error", e]; every settlement recorded in `seen`. */
      const seen = [];
      const call = (argv) =>
        new Promise((resolve) => {
          const sent = hot(
            argv,
            argv[1],
            (r) => {
              seen.push("reply");
              resolve(["reply", r]);
            },
            (e) => {
              seen.push("error");
              resolve(["error", e]);
            },
          );
          assert.equal(sent, true, "a ready single client takes the call");
        });
      next.current = () => Promise.resolve("v");
      assert.deepEqual(await call(["GET", "k"]), ["reply", Buffer.from("v")]);
      next.current = () => {
        throw new Error("boom");
      };
      const [thrownKind, thrown] = await call(["GET", "k"]);
      assert.equal(thrownKind, "error");
      assert.ok(thrown.message === "boom" && thrown.redisError !== true);
      next.current = () => Promise.reject(Object.assign(new Error("ERR bad"), { redisError: true }));
      const [refusedKind, refused] = await call(["GET", "k"]);
      assert.ok(refusedKind === "error" && refused.redisError === true && refused.message === "ERR bad");
      // No deadline: a reply after what would have been the default timeout's tick still arrives, once.
      let answer;
      next.current = () => new Promise((resolve) => (answer = resolve));
      const late = call(["GET", "k"]);
      await new Promise((r) => setTimeout(r, 30));
      answer(Buffer.from("late"));
      assert.deepEqual(await late, ["reply", Buffer.from("late")]);
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(seen, ["reply", "error", "error", "reply"], `timeout ${timeout}`);
    }
  });
});

describe("a store's get and set on the Conn's hot call (one GET or SET on a single node)", () => {
  /** The promises made while `call()` runs (synchronously: the ones it starts with). */
  const promisesMadeBy = (call) => {
    let made = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === "PROMISE") made++;
      },
    }).enable();
    let result;
    try {
      result = call();
    } finally {
      hook.disable();
    }
    return { made, result };
  };

  test("get and set make one promise of their own over the client's (before: an async function's, a wrapper's and its then's)", async () => {
    const docs = new Map();
    const next = {
      current: (argv) => {
        if (argv[0] === "SET") docs.set(argv[1], Buffer.from(argv[2]));
        return Promise.resolve(argv[0] === "GET" ? (docs.get(argv[1]) ?? null) : "OK");
      },
    };
    const fake = lookalike(next);
    const store = new RedisStore({ client: fake, prefix: "p:" });
    await store.set("k", { a: 1 });
    // What the raw client costs: its promise and the caller's then.
    const raw = promisesMadeBy(() => fake.sendCommand(["GET", "p:k"]).then((b) => JSON.parse(b)));
    await raw.result;
    const set = promisesMadeBy(() => store.set("k", { a: 2 }));
    assert.equal(await set.result, undefined);
    const get = promisesMadeBy(() => store.get("k"));
    assert.deepEqual(await get.result, { a: 2 });
    const miss = promisesMadeBy(() => store.get("none"));
    assert.equal(await miss.result, undefined);
    assert.ok(raw.made >= 2, `raw ${raw.made}`);
    for (const [name, { made }] of Object.entries({ set, get, miss })) {
      assert.ok(made <= raw.made + 1, `${name} made ${made} promises, the raw client ${raw.made}`);
    }
    assert.deepEqual([store.getStats().hits, store.getStats().misses, store.getStats().sets], [1, 1, 2]);
  });

  test("a client that throws, never answers, answers late or refuses: each get and set settles once, counted only when it succeeded", async () => {
    const docs = new Map();
    const store = new RedisStore({ client: lookalike({ current: () => Promise.resolve(null) }), prefix: "p:" });
    const next = { current: undefined };
    const fakeStore = new RedisStore({ client: lookalike(next), prefix: "p:", responseTimeout: 0.05 });
    next.current = () => {
      throw new Error("boom");
    };
    await assert.rejects(fakeStore.get("k"), (e) => e instanceof CacheBackendError && /boom/.test(e.message));
    await assert.rejects(fakeStore.set("k", 1), (e) => e instanceof CacheBackendError && /boom/.test(e.message));
    // No answer: the deadline refuses, a late answer changes nothing (no hit, no set counted, no second settlement).
    const answers = [];
    next.current = () => new Promise((resolve) => answers.push(resolve));
    await assert.rejects(fakeStore.get("k"), (e) => e instanceof CacheBackendError && /within 50 ms/.test(e.message));
    await assert.rejects(fakeStore.set("k", 1), (e) => e instanceof CacheBackendError && /within 50 ms/.test(e.message));
    docs.set("p:k", Buffer.from('{"v":1,"value":1}'));
    for (const answer of answers) answer(answer === answers[0] ? Buffer.from('{"v":1,"value":1}') : "OK");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([fakeStore.getStats().hits, fakeStore.getStats().misses, fakeStore.getStats().sets], [0, 0, 0]);
    // An error reply: CacheBackendError; WRONGTYPE (a load's placeholder) reads as a miss.
    next.current = () => Promise.reject(Object.assign(new Error("ERR bad"), { redisError: true }));
    await assert.rejects(fakeStore.get("k"), (e) => e instanceof CacheBackendError && /ERR bad/.test(e.message));
    await assert.rejects(fakeStore.set("k", 1), (e) => e instanceof CacheBackendError && /ERR bad/.test(e.message));
    next.current = () => Promise.reject(Object.assign(new Error("WRONGTYPE Operation against a key holding the wrong kind of value"), { redisError: true }));
    assert.equal(await fakeStore.get("k"), undefined);
    // A document Rust refuses: the walk's error, no hit counted.
    next.current = () => Promise.resolve(Buffer.from("not a document"));
    await assert.rejects(fakeStore.get("k"));
    // Bad input: refused before any call, as a rejection (never a throw).
    let calls = 0;
    next.current = () => {
      calls++;
      return Promise.resolve("OK");
    };
    const bad = fakeStore.get(42);
    assert.ok(bad instanceof Promise);
    await assert.rejects(bad, main.CacheKeyError);
    await assert.rejects(fakeStore.set("k", undefined));
    await assert.rejects(fakeStore.set("k", () => 1), CacheSerializationError);
    await assert.rejects(fakeStore.set("k", 1, { ttl: -1 }));
    assert.equal(calls, 0);
    assert.deepEqual([fakeStore.getStats().hits, fakeStore.getStats().misses, fakeStore.getStats().sets], [0, 1, 0]);
    assert.equal(await store.get("k"), undefined);
    // Nothing is left to time out later (an unhandled rejection would fail the run).
    await new Promise((r) => setTimeout(r, 150));
  });

  test("a client not ready yet: get and set wait for its ready event (the hot call declines), then go through", async () => {
    let ready = false;
    let onReady;
    const docs = new Map();
    const fake = {
      get isReady() {
        return ready;
      },
      isOpen: true,
      withTypeMapping() {},
      sendCommand: (argv) => {
        assert.ok(ready, "sent before ready");
        if (argv[0] === "SET") docs.set(argv[1], Buffer.from(argv[2]));
        return Promise.resolve(argv[0] === "GET" ? (docs.get(argv[1]) ?? null) : "OK");
      },
      once: (event, f) => {
        if (event === "ready") onReady = f;
      },
      on() {},
    };
    const store = new RedisStore({ client: fake, prefix: "p:" });
    const set = store.set("k", [1, 2]);
    const get = store.get("k");
    await new Promise((r) => setTimeout(r, 10));
    ready = true;
    onReady();
    await set;
    // Sent in the order they were called: the get reads the set's value.
    assert.deepEqual(await get, [1, 2]);
    assert.deepEqual(store.getStats().sets, 1);
  });
});
