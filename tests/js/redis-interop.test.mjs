// Rust and JS on one cache (issue 24): stores in different processes and
// languages with the same prefix and policy share everything. Each check runs
// for every ordered pair of participants: two Rust processes
// (examples/redis_interop.rs, driven by ./redis-interop.mjs) and, once the
// package has it, the JS RedisStore (pepperpy-caching/redis) on node-redis
// and on ioredis. On one redis-server, on one over TLS, and on a 3+3 cluster.
//   - what one writes (values, metadata, TTL, unicode keys) the other reads;
//   - one LRU capacity: their sets together never exceed maxSize, and a read
//     by one keeps an entry the other wrote;
//   - an invalidate (or clear) by one removes the other's entries;
//   - a stampede of getOrSet from both: exactly one loader runs;
//   - stale-while-revalidate: the refresh one starts serves the other.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startCluster, startServer } from "./redis-support.mjs";
import { buildDriver, participants, startRust } from "./redis-interop.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every ordered pair of distinct participants. */
function pairs(list) {
  return list.flatMap((a) => list.filter((b) => b !== a).map((b) => [a, b]));
}

let prefixes = 0;
const freshPrefix = () => `interop${++prefixes}:`;

function suite(name, deploy) {
  describe(name, () => {
    let deployment;
    before(async () => {
      await buildDriver();
      deployment = await deploy();
    });
    after(() => deployment?.stop());

    test("what one writes the other reads: values, metadata, TTL, unicode keys", async (t) => {
      const all = await participants(t, deployment, { prefix: freshPrefix() });
      const values = [
        { name: "Ada", tags: ["x", "y"], nested: { deep: [1, 2, { three: 3 }] } },
        "texte accentué 🙂",
        12345678901234,
        0.1 + 0.2,
        -1.5e-300,
        [true, false, null, "", {}],
      ];
      for (const [w, r] of pairs(all)) {
        const tag = `${w.name}>${r.name}`;
        for (const [i, value] of values.entries()) {
          const key = `ключ:${tag}:${i}:日本`;
          await w.op("set", { key, value, metadata: { by: w.name, i, ü: "✓" }, ttl_ms: 60_000 });
          assert.deepEqual(await r.op("get", { key }), value, `${tag} value ${i}`);
          assert.deepEqual(await r.op("get_metadata", { key }), { by: w.name, i, ü: "✓" }, `${tag} metadata ${i}`);
          assert.equal(await r.op("has", { key }), true);
        }
        const short = `short:${tag}`;
        await w.op("set", { key: short, value: 1, ttl_ms: 300 });
        assert.equal(await r.op("get", { key: short }), 1);
        await sleep(450);
        assert.equal(await r.op("get", { key: short }), null, `${tag}: the TTL one set ends for the other`);
        assert.equal(await r.op("delete", { key: `ключ:${tag}:0:日本` }), true);
        assert.equal(await w.op("get", { key: `ключ:${tag}:0:日本` }), null);
      }
    });

    test("values JSON.stringify and serde_json write differently, set without metadata (the JS store's fast encoding), read alike", async (t) => {
      const all = await participants(t, deployment, { prefix: freshPrefix() });
      const values = [
        -0, 1e21, -1e21, 1e16, 2 ** 53, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 60, 2 ** 64, 5e-324, 1e-7, 1.5e-7, 0.1 + 0.2, 1.7976931348623157e308,
        "a\u2028b\u2029c", "\u0000\u001f\u007f\"\\/\b\f\n\r\t", "😀 日本",
        { b: 1, a: 2, 1: 3, 0: 4, nested: [1e21, { x: 2 ** 60 }] }, [null, true, { n: null }],
        new Date(1732560000123), { at: new Date(0), tojson: { toJSON: () => ({ k: 1e21 }) } },
      ];
      for (const [w, r] of pairs(all)) {
        const tag = `${w.name}>${r.name}`;
        for (const [i, value] of values.entries()) {
          const key = `fast:${tag}:${i}`;
          await w.op("set", { key, value });
          // What every participant reads: the value as JSON holds it.
          const expected = JSON.parse(JSON.stringify(value));
          assert.deepEqual(await r.op("get", { key }), expected, `${tag} value ${i}`);
          assert.deepEqual(await w.op("get", { key }), expected, `${tag} value ${i}, read by its writer`);
        }
      }
    });

    test("one LRU capacity: sets from both never exceed maxSize, the oldest go first, a read by one keeps the other's entry", async (t) => {
      const max = 12;
      // On a cluster, one bucket: the capacity is exact (with several, each bucket keeps its share).
      const all = await participants(t, deployment, { prefix: freshPrefix(), lru: max, buckets: deployment.cluster ? 1 : undefined });
      for (const [a, b] of pairs(all)) {
        const tag = `${a.name}>${b.name}`;
        await a.op("clear");
        for (let i = 0; i < 3 * max; i++) {
          const who = i % 2 === 0 ? a : b;
          await who.op("set", { key: `${tag}:${i}`, value: i });
          const size = await (i % 3 === 0 ? a : b).op("size");
          assert.ok(size <= max, `${tag}: size ${size} after ${i + 1} sets`);
        }
        assert.equal(await a.op("size"), max);
        const kept = await b.op("keys", {});
        const expected = Array.from({ length: max }, (_, j) => `${tag}:${2 * max + j}`).sort();
        assert.deepEqual(kept, expected, `${tag}: the last ${max} writes, whoever made them`);
        // A read by `a` of the oldest entry (written by `a` or `b`) keeps it past `b`'s next set.
        const oldest = `${tag}:${2 * max}`;
        assert.equal(await a.op("get", { key: oldest }), 2 * max);
        await b.op("set", { key: `${tag}:new`, value: "n" });
        assert.equal(await b.op("get", { key: oldest }), 2 * max, `${tag}: the entry read last is kept`);
        assert.equal(await a.op("get", { key: `${tag}:${2 * max + 1}` }), null, `${tag}: the least recently used went`);
      }
    });

    test("an invalidate or clear by one removes the other's entries", async (t) => {
      const all = await participants(t, deployment, { prefix: freshPrefix(), lru: 1000 });
      for (const [a, b] of pairs(all)) {
        const tag = `${a.name}>${b.name}`;
        for (let i = 0; i < 5; i++) await b.op("set", { key: `${tag}:u:${i}`, value: i });
        await a.op("set", { key: `${tag}:u:a`, value: "a" });
        await b.op("set", { key: `${tag}:v:0`, value: "keep" });
        assert.equal(await a.op("invalidate", { pattern: `${tag}:u:*` }), 6);
        for (let i = 0; i < 5; i++) assert.equal(await b.op("get", { key: `${tag}:u:${i}` }), null);
        assert.equal(await b.op("get", { key: `${tag}:v:0` }), "keep");
        assert.deepEqual(await a.op("keys", { pattern: `${tag}:*` }), [`${tag}:v:0`]);
      }
      const [a, b] = all;
      await b.op("set", { key: "last", value: 1 });
      await a.op("clear");
      assert.equal(await b.op("size"), 0);
      assert.equal(await b.op("get", { key: "last" }), null);
    });

    test("a stampede of getOrSet from every participant runs exactly one loader", async (t) => {
      const all = await participants(t, deployment, { prefix: freshPrefix(), leaseMs: 5000 });
      for (let round = 0; round < 3; round++) {
        const key = `stampede:${round}`;
        const calls = [];
        for (const p of all) {
          for (let i = 0; i < 8; i++) calls.push(p.op("get_or_set", { key, value: { by: p.name, round }, sleep_ms: 300, ttl_ms: 60_000 }));
        }
        const results = await Promise.all(calls);
        const loads = all.map((p) => p.loads(key));
        assert.equal(
          loads.reduce((x, y) => x + y, 0),
          1,
          `round ${round}: loaders run ${all.map((p, i) => `${p.name} ${loads[i]}`).join(", ")}`,
        );
        const winner = all[loads.findIndex((n) => n === 1)].name;
        for (const r of results) assert.deepEqual(r, { by: winner, round });
      }
    });

    test("stale-while-revalidate: the refresh one starts is what the other gets", async (t) => {
      const all = await participants(t, deployment, { prefix: freshPrefix(), leaseMs: 5000 });
      for (const [a, b] of pairs(all)) {
        const key = `swr:${a.name}>${b.name}`;
        const fields = { key, fresh_ms: 400, grace_ms: 30_000, retry_ms: 200 };
        assert.equal(await a.op("get_or_refresh", { ...fields, value: 1, sleep_ms: 0 }), 1);
        assert.equal(a.loads(key), 1);
        await sleep(550); // stale now
        const loadsBefore = a.loads(key);
        // `b` is served the stale value at once and starts the one refresh (slow).
        const started = Date.now();
        assert.equal(await b.op("get_or_refresh", { ...fields, value: 2, sleep_ms: 400 }), 1);
        assert.ok(Date.now() - started < 350, `a stale hit waits for no refresh (${Date.now() - started} ms)`);
        // The lock is tried for in the background: once `b`'s loader runs (it
        // holds the lock), `a` is served stale too and starts no refresh of its own.
        const until = Date.now() + 5000;
        while (b.loads(key) === 0 && Date.now() < until) await sleep(5);
        assert.equal(b.loads(key), 1, `${b.name} started the refresh`);
        assert.equal(await a.op("get_or_refresh", { ...fields, value: 3, sleep_ms: 0 }), 1);
        let seen;
        const deadline = Date.now() + 5000;
        do {
          await sleep(50);
          seen = await a.op("get", { key });
        } while (seen !== 2 && Date.now() < deadline);
        assert.equal(seen, 2, "the other's refresh landed");
        assert.equal(await a.op("get_or_refresh", { ...fields, value: 4, sleep_ms: 0 }), 2);
        assert.equal(a.loads(key), loadsBefore, `${a.name} loaded nothing more`);
        assert.equal(b.loads(key), 1, `${b.name} refreshed once`);
      }
    });
  });
}

describe("the Rust driver", () => {
  test("answers errors as errors: a bad key, a failing loader, a server that is not there", async (t) => {
    const server = await startServer(t);
    const rust = await startRust(t, { urls: [server.url], prefix: "drv:" });
    await assert.rejects(rust.call("get", { key: "" }), (e) => e.kind === "Key");
    await assert.rejects(rust.call("set", { key: "k".repeat(100_000), value: 1 }), (e) => e.kind === "Key");
    await assert.rejects(rust.call("get_or_set", { key: "f", value: 1, fail: "db down" }), (e) => e.kind === "Loader" && /db down/.test(e.message));
    assert.equal(rust.loads("f"), 1);
    assert.equal(await rust.call("get", { key: "f" }), null);
    await assert.rejects(rust.call("nonsense"), (e) => e.kind === "Usage");
    assert.equal(await rust.call("ping"), "pong");
    const port = server.port;
    await server.stop();
    await assert.rejects(startRust(t, { urls: [`redis://127.0.0.1:${port}`] }), (e) => ["Connection", "Backend", "Timeout"].includes(e.kind) && e.retryable === true);
  });
});

suite("one redis-server", async () => {
  const server = await startServer();
  return { urls: [server.url], rootNodes: [{ host: "127.0.0.1", port: server.port }], cluster: false, stop: () => server.stop() };
});

suite("one redis-server over TLS (a throwaway CA)", async () => {
  const server = await startServer(undefined, { tls: true });
  const caFile = join(server.dir, "ca.crt");
  return {
    urls: [`rediss://127.0.0.1:${server.tlsPort}`],
    rootNodes: [],
    cluster: false,
    tls: { port: server.tlsPort, ca: server.ca, caFile },
    stop: () => server.stop(),
  };
});

suite("a 3+3 cluster", async () => {
  const cluster = await startCluster();
  return { urls: cluster.urls, rootNodes: cluster.rootNodes, cluster: true, stop: () => cluster.stop() };
});
