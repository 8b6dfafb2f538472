// The JS RedisStore's batched gets (issue 24 item 4), against a real
// redis-server, on node-redis v4, v5 (RESP2 and RESP3) and ioredis: the plain
// gets of one tick on a single node go as one MGET (a lone get as a GET, at
// most 128 keys a command), and every guarantee of one GET per get holds:
// each caller's own answer (a hit, a miss, a load's placeholder or another
// type read as a miss, a document Rust refuses failing only its own get),
// the order of the store's calls (a call of any other kind sends the batch
// first), each caller's own deadline, a lost or closed connection rejecting
// every caller with CacheBackendError, exact stats, a client shared with
// other code. `batch: false` sends one GET per get.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as redis4 from "redis4";
import * as redis5 from "redis5";
import IORedis from "ioredis";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startServer, within } from "./redis-support.mjs";

const { CacheBackendError, CacheKeyError, CachePolicyError, CacheSerializationError } = main;

const quiet = (client) => {
  client.on("error", () => {});
  return client;
};

// open(port, { reconnect: false, username, password }): a connected client.
const nodeRedisOptions = (port, { reconnect = true, username, password } = {}) => ({
  socket: { host: "127.0.0.1", port, ...(reconnect ? {} : { reconnectStrategy: false }) },
  ...(username === undefined ? {} : { username, password }),
});
const KINDS = [
  { name: "node-redis v4", open: (port, o) => quiet(redis4.createClient(nodeRedisOptions(port, o))).connect(), close: (c) => c.disconnect() },
  { name: "node-redis v5", open: (port, o) => quiet(redis5.createClient(nodeRedisOptions(port, o))).connect(), close: (c) => c.destroy() },
  { name: "node-redis v5 RESP3", open: (port, o) => quiet(redis5.createClient({ RESP: 3, ...nodeRedisOptions(port, o) })).connect(), close: (c) => c.destroy() },
  {
    name: "ioredis",
    open: async (port, { reconnect = true, username, password } = {}) => {
      const client = quiet(new IORedis({ host: "127.0.0.1", port, lazyConnect: true, username, password, ...(reconnect ? {} : { retryStrategy: () => null }) }));
      await client.connect();
      return client;
    },
    close: (c) => c.disconnect(),
  },
];

let server;
let admin;
let n = 0;
const fresh = () => `b${++n}:`;

before(async () => {
  server = await startServer();
  admin = await quiet(redis5.createClient({ url: server.url })).connect();
});
after(async () => {
  await admin?.quit().catch(() => {});
  await server?.stop();
});

/** `{ get, mget }`: how many GET and MGET commands Redis ran since `reset()`. */
async function commands() {
  const info = await admin.info("commandstats");
  const calls = (name) => Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return { get: calls("get"), mget: calls("mget"), set: calls("set"), mset: calls("mset") };
}
/** commands() without the zeros. */
const ran = async () => Object.fromEntries(Object.entries(await commands()).filter(([, v]) => v !== 0));
const reset = () => admin.sendCommand(["CONFIG", "RESETSTAT"]);

/** The outcome of each promise: ["ok", value] or ["error", class name, message]. */
const outcomes = (promises) =>
  Promise.allSettled(promises).then((all) => all.map((r) => (r.status === "fulfilled" ? ["ok", r.value] : ["error", r.reason?.constructor?.name, r.reason?.message])));

const statsOf = (store) => {
  const { hits, misses, sets, deletes } = store.getStats();
  return { hits, misses, sets, deletes };
};

for (const kind of KINDS) {
  describe(`batched gets on ${kind.name}`, () => {
    let client;
    before(async () => {
      client = await kind.open(server.port);
    });
    after(async () => {
      await kind.close(client);
    });

    test("the gets of one tick are one MGET, a lone get a GET; with batch: false one GET each", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      const plain = new RedisStore({ client, prefix, batch: false });
      for (let i = 0; i < 40; i++) await store.set(`k${i}`, { i, s: `v${i}` });
      const wanted = Array.from({ length: 64 }, (_, i) => (i < 40 ? { i, s: `v${i}` } : undefined));
      await reset();
      assert.deepEqual(await Promise.all(wanted.map((_, i) => store.get(`k${i}`))), wanted);
      assert.deepEqual(await ran(), { mget: 1 }, "64 gets in one tick: one MGET");
      await reset();
      assert.deepEqual(await store.get("k3"), { i: 3, s: "v3" });
      assert.deepEqual(await ran(), { get: 1 }, "a lone get: one GET (no MGET of one key)");
      await reset();
      assert.deepEqual(await Promise.all(wanted.map((_, i) => plain.get(`k${i}`))), wanted);
      assert.deepEqual(await ran(), { get: 64 }, "batch: false: one GET per get");
      assert.deepEqual(statsOf(store), { hits: 41, misses: 24, sets: 40, deletes: 0 });
      assert.deepEqual(statsOf(plain), { hits: 40, misses: 24, sets: 0, deletes: 0 });
    });

    test("the sets of one tick without a TTL are one MSET, a lone set a SET; a set with a TTL is a SET PX of its own; with batch: false one SET each", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      const plain = new RedisStore({ client, prefix: fresh(), batch: false });
      await reset();
      await Promise.all(Array.from({ length: 64 }, (_, i) => store.set(`k${i}`, { i })));
      assert.deepEqual(await ran(), { mset: 1 }, "64 sets in one tick: one MSET");
      assert.deepEqual(await store.getMany(["k0", "k63", "k64"]), [{ i: 0 }, { i: 63 }, undefined]);
      assert.equal(await admin.pTTL(`${prefix}k5`), -1, "no TTL");
      await reset();
      await store.set("lone", 1);
      assert.deepEqual(await ran(), { set: 1 }, "a lone set: one SET");
      await reset();
      // Sets with a TTL go each as a SET PX, and cut the batch: before them one MSET, after them another.
      await Promise.all([store.set("a", 1), store.set("b", 2), store.set("t", 3, { ttl: 60 }), store.set("c", 4), store.set("d", 5)]);
      assert.deepEqual(await ran(), { set: 1, mset: 2 });
      const ttl = await admin.pTTL(`${prefix}t`);
      assert.ok(ttl > 55_000 && ttl <= 60_000, `TTL ${ttl}`);
      assert.deepEqual(await store.getMany(["a", "b", "t", "c", "d"]), [1, 2, 3, 4, 5]);
      // The same key twice in one batch: the later set wins, as with two SETs.
      await Promise.all([store.set("same", "first"), store.set("same", "second")]);
      assert.equal(await store.get("same"), "second");
      await reset();
      await Promise.all(Array.from({ length: 64 }, (_, i) => plain.set(`k${i}`, { i })));
      assert.deepEqual(await ran(), { set: 64 }, "batch: false: one SET per set");
      assert.equal(store.getStats().sets, 64 + 1 + 5 + 2, "each set counted");
      // A value Rust refuses: that set rejects before anything is sent, the others of the tick are written.
      const mixed = await outcomes([store.set("x", 1), store.set("y", NaN), store.set("z", 3)]);
      assert.deepEqual(mixed[0], ["ok", undefined]);
      assert.equal(mixed[1][1], CacheSerializationError.name);
      assert.deepEqual(await store.getMany(["x", "y", "z"]), [1, undefined, 3]);
    });

    test("each caller gets its own key's answer, as with one GET each: a placeholder or another type is a miss, a refused document fails only its own get", async () => {
      const prefix = fresh();
      const batched = new RedisStore({ client, prefix });
      const plain = new RedisStore({ client, prefix, batch: false });
      await batched.set("hit", { a: [1, 2.5, "x"] });
      await batched.set("meta", "with metadata", { metadata: { by: "t" } });
      await batched.set("idle", { idle: true }, { idle: 60 });
      await batched.set("wide", "žluťoučký 🐎");
      await batched.set("ttl", 7, { ttl: 60 });
      // A load's placeholder is a hash at the entry's key (GET: WRONGTYPE, MGET: nil).
      await admin.hSet(`${prefix}placeholder`, "owner", "x");
      await admin.rPush(`${prefix}list`, "x");
      await admin.set(`${prefix}foreign`, "not a document");
      await admin.set(`${prefix}badjson`, '{"v":1,"value":[1,2');
      const keys = ["hit", "miss", "placeholder", "meta", "foreign", "idle", "list", "wide", "badjson", "ttl", "hit"];
      await reset();
      const got = await outcomes(keys.map((k) => batched.get(k)));
      assert.deepEqual(await ran(), { mget: 1 });
      assert.deepEqual(got, await outcomes(keys.map((k) => plain.get(k))), "the same answers as one GET per get");
      assert.deepEqual(got[0], ["ok", { a: [1, 2.5, "x"] }]);
      assert.deepEqual(got[2], ["ok", undefined], "a load's placeholder (a hash) is a miss");
      assert.deepEqual(got[6], ["ok", undefined], "a list is a miss");
      assert.equal(got[4][0], "error");
      assert.equal(got[4][1], CacheSerializationError.name, "a foreign document fails its own get only");
      assert.equal(got[8][1], CacheSerializationError.name);
      assert.deepEqual(got[7], ["ok", "žluťoučký 🐎"]);
      const counts = (s) => [s.hits, s.misses];
      assert.deepEqual(counts(batched.getStats()), counts(plain.getStats()), "the same hits and misses counted");
      // A bad key in the batch: refused before anything is sent, the others unaffected.
      const mixed = await outcomes([batched.get("hit"), batched.get(42), batched.get(""), batched.get("miss")]);
      assert.deepEqual(mixed[0], ["ok", { a: [1, 2.5, "x"] }]);
      assert.equal(mixed[1][1], CacheKeyError.name);
      assert.equal(mixed[2][1], CacheKeyError.name);
      assert.deepEqual(mixed[3], ["ok", undefined]);
    });

    test("order: a call of any other kind made after a pending get sends the batch first: every sequence reads what one GET per get reads", async () => {
      // Each scenario: calls made in one tick on a store (and another store on
      // the same client and prefix), after `k` was set to 1; its answers with
      // the batch and with batch: false must be the same.
      const scenarios = {
        "get, set": (s) => [s.get("k"), s.set("k", 2)],
        "set, get": (s) => [s.set("k", 2), s.get("k")],
        "get, set, get": (s) => [s.get("k"), s.set("k", 2), s.get("k")],
        "get, another store's set": (s, o) => [s.get("k"), o.set("k", 2)],
        "get, set with a TTL and tags": (s) => [s.get("k"), s.set("k", 2, { ttl: 60, tags: ["t"] })],
        "get, delete, get": (s) => [s.get("k"), s.delete("k"), s.get("k")],
        "get, setMany, get": (s) => [s.get("k"), s.setMany([["k", 2], ["j", 3]]), s.get("k"), s.get("j")],
        "get, getOrSet, get": (s) => [s.get("j"), s.getOrSet("j", async () => "loaded"), s.get("j")],
        "get, clear, get": (s) => [s.get("k"), s.clear(), s.get("k")],
        "get, invalidate, get": (s) => [s.get("k"), s.invalidate("*"), s.get("k")],
        "get, has, getMany": (s) => [s.get("k"), s.has("k"), s.getMany(["k", "j"])],
        "set, set, get": (s) => [s.set("k", 2), s.set("k", 3), s.get("k")],
        "set, get, set, get": (s) => [s.set("k", 2), s.get("k"), s.set("k", 3), s.get("k")],
        "set, set with a TTL, get": (s) => [s.set("k", 2), s.set("k", 3, { ttl: 60 }), s.get("k")],
        "set with a TTL, set, get": (s) => [s.set("k", 2, { ttl: 60 }), s.set("k", 3), s.get("k")],
        "set, delete, get": (s) => [s.set("k", 2), s.delete("k"), s.get("k")],
        "set, another store's get, get": (s, o) => [s.set("k", 2), o.get("k"), s.get("k")],
        "set, getMany, setMany, get": (s) => [s.set("k", 2), s.getMany(["k"]), s.setMany([["k", 3]]), s.get("k")],
      };
      for (const [name, calls] of Object.entries(scenarios)) {
        const answers = [];
        for (const batch of [true, false]) {
          const prefix = fresh();
          const store = new RedisStore({ client, prefix, batch });
          const other = new RedisStore({ client, prefix, batch });
          await store.set("k", 1);
          answers.push(await Promise.all(calls(store, other)));
          answers.push(await Promise.all([store.get("k"), store.get("j")]));
        }
        assert.deepEqual(answers.slice(0, 2), answers.slice(2), name);
        // The get made first always reads the value set before the tick.
        if (name.startsWith("get, ") && name !== "get, getOrSet, get") assert.equal(answers[0][0], 1, name);
      }
    });

    test("getter-only index accessors on Array.prototype and Object.prototype while the calls are made (a polyfill, a hostile library) take nothing from a batch", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      await store.set("a", "A");
      // Made before the accessors are (they would refuse this list's own pushes).
      const polluted = Array.from({ length: 24 }, (_, i) => [i % 2 ? Array.prototype : Object.prototype, String(i >> 1)]);
      /** The calls `calls()` makes (synchronously: the batch is sent at the end of the tick, when the accessors are gone). */
      const under = (calls) => {
        try {
          for (const [proto, i] of polluted) Object.defineProperty(proto, i, { configurable: true, get: () => "hijacked" });
          return outcomes(calls());
        } finally {
          for (const [proto, i] of polluted) delete proto[i];
        }
      };
      const sets = await under(() => [store.set("c", [1, 2]), store.set("d", { x: 1 }), store.set("e", "E"), store.set("f", 1), store.set("g", 2), store.set("h", 3)]);
      assert.deepEqual(sets, Array.from({ length: 6 }, () => ["ok", undefined]));
      const gets = await under(() => ["a", "b", "c", "d", "e", "f", "g", "h"].map((k) => store.get(k)));
      assert.deepEqual(gets.map(([, v]) => v), ["A", undefined, [1, 2], { x: 1 }, "E", 1, 2, 3]);
      assert.equal(await admin.exists("hijacked"), 0);
    });

    test("at most 128 keys a command: a larger batch is sent in parts, a last key alone as a GET", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      await store.setMany(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]));
      await reset();
      assert.deepEqual(await Promise.all(Array.from({ length: 300 }, (_, i) => store.get(`k${i}`))), Array.from({ length: 300 }, (_, i) => i));
      assert.deepEqual(await ran(), { mget: 3 }, "128 + 128 + 44");
      await reset();
      assert.deepEqual(await Promise.all(Array.from({ length: 257 }, (_, i) => store.get(`k${i}`))), Array.from({ length: 257 }, (_, i) => i));
      assert.deepEqual(await ran(), { get: 1, mget: 2 }, "128 + 128 + 1");
      await reset();
      await Promise.all(Array.from({ length: 257 }, (_, i) => store.set(`k${i}`, -i - 1)));
      assert.deepEqual(await ran(), { set: 1, mset: 2 }, "sets: 128 + 128 + 1");
      assert.deepEqual(await store.getMany(Array.from({ length: 257 }, (_, i) => `k${i}`)), Array.from({ length: 257 }, (_, i) => -i - 1));
    });

    test("many callers in a loop (set, get, delete, a set with a TTL, each awaited): every caller reads its own last write, whatever batch its calls fell in", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      const workers = 48;
      const rounds = 40;
      const seen = [];
      await Promise.all(
        Array.from({ length: workers }, async (_, w) => {
          const key = `w${w}`;
          for (let r = 0; r < rounds; r++) {
            const value = { w, r, pad: "x".repeat((w * 7 + r) % 50) };
            if ((w + r) % 5 === 0) await store.set(key, value, { ttl: 60 });
            else await store.set(key, value);
            const got = await store.get(key);
            if (JSON.stringify(got) !== JSON.stringify(value)) seen.push([key, r, got]);
            if ((w + r) % 7 === 0) {
              await store.delete(key);
              const gone = await store.get(key);
              if (gone !== undefined) seen.push([key, r, "after delete", gone]);
            }
          }
        }),
      );
      assert.deepEqual(seen, []);
      const s = store.getStats();
      assert.equal(s.sets, workers * rounds);
      assert.equal(s.hits, workers * rounds);
    });

    test("stats count each get: hits, misses, and its latency (which includes the wait for the end of the tick)", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      await store.set("a", 1);
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.get(i % 4 === 0 ? "a" : `none${i}`)));
      const s = store.getStats();
      assert.deepEqual([s.hits, s.misses, s.hitRatio], [25, 75, 0.25]);
      assert.ok(s.avgGetLatency > 0 && s.avgGetLatency < 5000, `avgGetLatency ${s.avgGetLatency}`);
    });

    test("a client shared with other code: its own commands in the same tick get their own replies", async () => {
      const prefix = fresh();
      const store = new RedisStore({ client, prefix });
      await store.set("a", "A");
      await admin.set(`raw:${prefix}x`, "X");
      const [a, x, setReply, b, y] = await Promise.all([
        store.get("a"),
        client.get(`raw:${prefix}x`),
        client.set(`raw:${prefix}y`, "Y"),
        store.get("b"),
        client.get(`raw:${prefix}y`),
      ]);
      assert.deepEqual([a, x, setReply, b, y], ["A", "X", "OK", undefined, "Y"]);
      // With batch: false a get is sent when it is made, before what the code sends after it.
      const plain = new RedisStore({ client, prefix, batch: false });
      const [old] = await Promise.all([plain.get("a"), client.set(`${prefix}a`, JSON.stringify({ v: 1, value: "B" }))]);
      assert.equal(old, "A");
    });
  });
}

describe("batched gets under faults", () => {
  for (const kind of KINDS.filter((k) => k.name !== "node-redis v5 RESP3")) {
    test(`${kind.name}: one batch, two deadlines: the callers of a store with a short responseTimeout are rejected by theirs, the others answered once the server answers`, async (t) => {
      const own = await startServer(t);
      const client = await kind.open(own.port);
      try {
        const prefix = fresh();
        const quick = new RedisStore({ client, prefix, responseTimeout: 0.15 });
        const patient = new RedisStore({ client, prefix, responseTimeout: 5 });
        // Two sets and two gets in one tick each first: the client's first MSET and MGET (probes: later calls wait for their answer) are answered.
        await Promise.all([patient.set("a", "A"), patient.set("b", "B")]);
        assert.deepEqual(await Promise.all([patient.get("a"), patient.get("b")]), ["A", "B"]);
        own.freeze();
        const started = Date.now();
        const quickGets = [quick.get("a"), quick.get("b")].map((p) => p.then(() => "resolved", (e) => [e.constructor.name, Date.now() - started, e.message]));
        const patientGets = [patient.get("a"), patient.get("b"), patient.get("c")];
        // The sets of that tick, one MSET for both stores.
        const quickSets = [quick.set("q1", 1), quick.set("q2", 2)].map((p) => p.then(() => "resolved", (e) => [e.constructor.name, Date.now() - started, e.message]));
        const patientSets = [patient.set("p1", 1), patient.set("p2", 2)];
        const quickOnes = await within("the quick callers' deadline", Promise.all([...quickGets, ...quickSets]), 3000);
        for (const q of quickOnes) {
          assert.equal(q[0], CacheBackendError.name);
          assert.match(q[2], /within 150 ms/);
          assert.ok(q[1] >= 140 && q[1] < 1500, `rejected after ${q[1]} ms`);
        }
        await new Promise((r) => setTimeout(r, 200));
        own.thaw();
        assert.deepEqual(await within("the patient callers", Promise.all(patientGets)), ["A", "B", undefined]);
        assert.deepEqual(await within("the patient sets", Promise.all(patientSets)), [undefined, undefined]);
        const qs = quick.getStats();
        assert.deepEqual([qs.hits, qs.misses, qs.sets], [0, 0, 0], "a call that timed out counts nothing; the late reply is dropped");
        const ps = patient.getStats();
        assert.deepEqual([ps.hits, ps.misses, ps.sets], [4, 1, 4]);
        // The timed-out sets were written once the server answered (as a timed-out SET may be): the caller was told it failed.
        assert.deepEqual(await patient.getMany(["q1", "q2", "p1", "p2"]), [1, 2, 1, 2]);
      } finally {
        own.thaw();
        await kind.close(client);
      }
    });

    test(`${kind.name}: a server killed under a batch rejects every caller with CacheBackendError; after a restart the gets go through`, async (t) => {
      const own = await startServer(t);
      const client = await kind.open(own.port);
      try {
        const store = new RedisStore({ client, prefix: fresh(), responseTimeout: 2 });
        await store.set("a", "A");
        own.freeze();
        const gets = outcomes([...Array.from({ length: 10 }, (_, i) => store.get(i % 2 ? "a" : `none${i}`)), store.set("s1", 1), store.set("s2", 2)]);
        await new Promise((r) => setTimeout(r, 50));
        // Killed while stopped, so that it never answers (kill() would SIGCONT it first).
        process.kill(own.pid, "SIGKILL");
        await own.kill();
        const got = await within("the callers of a killed server", gets, 5000);
        for (const g of got) assert.equal(g[1], CacheBackendError.name, JSON.stringify(g));
        const s = store.getStats();
        assert.deepEqual([s.hits, s.misses, s.sets], [0, 0, 1]);
        await own.restart();
        // The client reconnects by itself; a get then reads (the data went with the killed server).
        const deadline = Date.now() + 10_000;
        for (;;) {
          try {
            await store.set("a", "again");
            break;
          } catch (e) {
            if (Date.now() > deadline) throw e;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        assert.deepEqual(await Promise.all([store.get("a"), store.get("none")]), ["again", undefined]);
      } finally {
        own.thaw();
        try {
          await kind.close(client);
        } catch {
          // Closed already.
        }
      }
    });

    test(`${kind.name}: an error reply to a batch's command (OOM) rejects each of its callers with CacheBackendError, and only them`, async (t) => {
      const own = await startServer(t);
      const client = await kind.open(own.port);
      try {
        const store = new RedisStore({ client, prefix: fresh() });
        await store.set("a", "A");
        await own.cli("CONFIG", "SET", "maxmemory-policy", "noeviction");
        await own.cli("CONFIG", "SET", "maxmemory", "1");
        const got = await outcomes([store.get("a"), store.set("s1", 1), store.set("s2", 2), store.set("s3", 3), store.get("a"), store.get("b")]);
        assert.deepEqual(got[0], ["ok", "A"]);
        for (const g of got.slice(1, 4)) {
          assert.equal(g[1], CacheBackendError.name, JSON.stringify(g));
          assert.match(g[2], /OOM/);
        }
        assert.deepEqual(got.slice(4), [["ok", "A"], ["ok", undefined]]);
        await own.cli("CONFIG", "SET", "maxmemory", "0");
        assert.deepEqual(await store.getMany(["s1", "s2", "s3"]), [undefined, undefined, undefined]);
        assert.equal(store.getStats().sets, 1);
      } finally {
        await kind.close(client);
      }
    });

    test(`${kind.name}: a user whose ACL refuses MGET and MSET: the refused batch is sent again one call at a time, and later calls go one by one`, async (t) => {
      const own = await startServer(t);
      await own.cli("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-mget", "-mset");
      const client = await kind.open(own.port, { username: "limited", password: "secret" });
      try {
        const store = new RedisStore({ client, prefix: fresh() });
        assert.deepEqual(await outcomes([store.set("a", 1), store.set("b", 2), store.set("c", 3)]), [["ok", undefined], ["ok", undefined], ["ok", undefined]]);
        assert.deepEqual(await Promise.all(["a", "b", "c", "d"].map((k) => store.get(k))), [1, 2, 3, undefined]);
        await Promise.all([store.set("a", 10), store.set("b", 20)]);
        assert.deepEqual(await Promise.all(["a", "b"].map((k) => store.get(k))), [10, 20]);
        const stats = await own.cli("INFO", "commandstats");
        const calls = (name) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
        const rejected = (name) => Number(new RegExp(`cmdstat_${name}:.*rejected_calls=(\\d+)`).exec(stats)?.[1] ?? 0);
        assert.deepEqual([rejected("mget"), rejected("mset")], [1, 1], "each refused once, then never sent again");
        assert.deepEqual([calls("mget"), calls("mset")], [0, 0]);
        assert.equal(calls("get"), 6);
        assert.deepEqual(statsOf(store), { hits: 5, misses: 1, sets: 5, deletes: 0 });
      } finally {
        await kind.close(client);
      }
    });

    test(`${kind.name}: a user whose ACL refuses INFO (cluster mode unknown): never batched, every call answered one by one, in order`, async (t) => {
      const own = await startServer(t);
      await own.cli("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-info");
      const client = await kind.open(own.port, { username: "limited", password: "secret" });
      try {
        const store = new RedisStore({ client, prefix: fresh() });
        assert.deepEqual(await outcomes([store.set("a", 1), store.set("b", 2), store.get("a"), store.set("a", 3), store.get("a")]), [["ok", undefined], ["ok", undefined], ["ok", 1], ["ok", undefined], ["ok", 3]]);
        assert.deepEqual(await Promise.all(["a", "b", "c"].map((k) => store.get(k))), [3, 2, undefined]);
        const stats = await own.cli("INFO", "commandstats");
        const calls = (name) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
        assert.deepEqual([calls("mget"), calls("mset"), calls("get"), calls("set")], [0, 0, 5, 3]);
      } finally {
        await kind.close(client);
      }
    });

    test(`${kind.name}: a client closed in the tick of a batch rejects its callers with CacheBackendError (none hangs)`, async () => {
      const client = await kind.open(server.port, { reconnect: false });
      const store = new RedisStore({ client, prefix: fresh() });
      await store.set("a", "A");
      const gets = outcomes([store.get("a"), store.get("b"), store.get("a"), store.set("c", 1), store.set("d", 1)]);
      await kind.close(client);
      const got = await within("the callers of a closed client", gets, 3000);
      // The gets were sent when the first set joined (a batch of another kind goes first): answered, or refused by the closing client.
      const wanted = ["A", undefined, "A"];
      got.slice(0, 3).forEach((g, i) => assert.ok(g[1] === CacheBackendError.name || (g[0] === "ok" && g[1] === wanted[i]), JSON.stringify(g)));
      // The sets, still pending at the close: refused.
      for (const g of got.slice(3)) assert.equal(g[1], CacheBackendError.name, JSON.stringify(g));
    });
  }
});

test("batch must be a boolean", () => {
  const client = { isReady: true, isOpen: true, withTypeMapping() {}, sendCommand: async () => null, once() {}, on() {} };
  for (const bad of [1, "no", null, {}]) assert.throws(() => new RedisStore({ client, batch: bad }), CachePolicyError);
  assert.ok(new RedisStore({ client, batch: false }));
  assert.ok(new RedisStore({ client, batch: true }));
});

describe("batched calls on a client that misbehaves (a node-redis v5 lookalike)", () => {
  /** A ready node-redis v5 lookalike of a server without cluster mode (its INFO cluster) whose sendCommand is `next.current(argv)`; `sent` lists each argv. */
  const lookalike = (next, sent = []) => ({
    isReady: true,
    isOpen: true,
    withTypeMapping() {},
    sendCommand: (argv) => {
      if (argv[0] === "INFO") return Promise.resolve(Buffer.from("# Cluster\r\ncluster_enabled:0\r\n"));
      sent.push(argv);
      return next.current(argv);
    },
    once() {},
    on() {},
  });
  const doc = (v) => Buffer.from(JSON.stringify({ v }));

  test("a client that throws, answers the wrong number of values, or no array, or rejects with a non-Error: every caller of the batch a CacheBackendError, nothing counted", async () => {
    const next = { current: undefined };
    const sent = [];
    const store = new RedisStore({ client: lookalike(next, sent), prefix: "p:" });
    const three = () => outcomes([store.get("a"), store.get("b"), store.get("c")]);
    const failedAll = (got, pattern) => {
      for (const g of got) {
        assert.equal(g[1], CacheBackendError.name, JSON.stringify(g));
        assert.match(g[2], pattern);
      }
    };
    next.current = () => {
      throw new Error("boom");
    };
    failedAll(await three(), /boom/);
    next.current = (argv) => Promise.resolve(argv.slice(2).map(() => doc(1)));
    failedAll(await three(), /MGET of 3 keys answered 2 values/);
    next.current = () => Promise.resolve(doc(1));
    failedAll(await three(), /MGET of 3 keys answered no array/);
    next.current = () => Promise.reject("a string");
    failedAll(await three(), /a string/);
    failedAll(await outcomes([store.set("a", 1), store.set("b", 2)]), /a string/);
    const s = store.getStats();
    assert.deepEqual([s.hits, s.misses, s.sets], [0, 0, 0]);
    assert.deepEqual(
      sent.map((argv) => argv[0]),
      ["MGET", "MGET", "MGET", "MGET", "MSET"],
      "one command a batch",
    );
    // Then a good answer: each its own value.
    next.current = (argv) => Promise.resolve(argv.slice(1).map((k) => (k === "p:b" ? null : doc(k))));
    assert.deepEqual(await Promise.all([store.get("a"), store.get("b"), store.get("c")]), ["p:a", undefined, "p:c"]);
  });

  test("an answer after the deadline is dropped: each caller settles once, by its deadline, and a batch that answers in time is unaffected", async () => {
    const next = { current: undefined };
    const store = new RedisStore({ client: lookalike(next), prefix: "p:", responseTimeout: 0.05 });
    const answers = [];
    next.current = () => new Promise((resolve) => answers.push(resolve));
    const late = outcomes([store.get("a"), store.get("b"), store.set("c", 1)]);
    const got = await late;
    for (const g of got) assert.match(g[2], /within 50 ms/);
    // The set waited behind the client's first MGET (a probe) and timed out there: never sent.
    assert.equal(answers.length, 1);
    // The late reply: dropped (no second settlement, nothing counted).
    answers[0]([doc(1), doc(2)]);
    await new Promise((r) => setTimeout(r, 20));
    const s = store.getStats();
    assert.deepEqual([s.hits, s.misses, s.sets], [0, 0, 0]);
    next.current = (argv) => Promise.resolve(argv[0] === "MGET" ? [doc(1), null] : Buffer.from("OK"));
    assert.deepEqual(await Promise.all([store.get("a"), store.get("b")]), [1, undefined]);
    // Nothing is left to time out later.
    await new Promise((r) => setTimeout(r, 120));
  });
});
