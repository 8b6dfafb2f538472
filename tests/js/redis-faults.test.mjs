// Faults under the Redis stores, with the guarantees the Rust store documents
// (README "Redis quick start", docs/redis.md "Connection", "Redis eviction and
// a capacity that heals"), for each participant of ./redis-interop.mjs: the
// Rust store (examples/redis_interop.rs) and, once the package has it, the JS
// RedisStore on node-redis and on ioredis. Each test has its own redis-server.
//   - killed: every call fails with CacheBackendError within the response
//     timeout (no hang); after a restart the store works and its capacity holds;
//   - SIGSTOP: calls time out (CacheBackendError, retryable); after SIGCONT they work;
//   - FLUSHALL: entries gone for everyone; the next sets rebuild the index;
//   - maxmemory: allkeys-lru evicts behind the store's back and the capacity
//     heals; noeviction refuses writes (CacheBackendError) and reads go on;
//   - a cluster master killed: calls on its slots fail (CacheBackendError, no
//     hang) until its replica takes over, then the store serves them by itself.

import { test } from "node:test";
import assert from "node:assert/strict";
import { startCluster, startServer } from "./redis-support.mjs";
import { buildDriver, isBackendError, participants } from "./redis-interop.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TIMEOUT_MS = 300;

await buildDriver();

const single = (server) => ({ urls: [server.url], rootNodes: [{ host: "127.0.0.1", port: server.port }], cluster: false });

/** `call()` rejects with a CacheBackendError, within `ms`. */
async function failsFast(what, call, ms = 2500) {
  const started = Date.now();
  let timer;
  const hang = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms + 2000);
  });
  try {
    await Promise.race([assert.rejects(call(), (e) => isBackendError(e) || assert.fail(`${what}: ${e.className} ${e.message}`)), hang]);
  } finally {
    clearTimeout(timer);
  }
  const took = Date.now() - started;
  assert.ok(took < ms, `${what}: failed after ${took} ms`);
}

/** Retries `call()` until it succeeds (for at most `ms`). */
async function eventually(what, call, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await call();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${ms} ms: ${e.message}`);
      await sleep(100);
    }
  }
}

const OPS = [
  ["get", { key: "k0" }],
  ["set", { key: "k0", value: 1 }],
  ["delete", { key: "k1" }],
  ["has", { key: "k2" }],
  ["size", {}],
  ["keys", {}],
  ["invalidate", { pattern: "k*" }],
];

test("a killed server: every call is a CacheBackendError within the timeout; after a restart the store works and its capacity holds", async (t) => {
  const server = await startServer(t);
  const all = await participants(t, single(server), { prefix: "killed:", lru: 20, responseTimeoutMs: TIMEOUT_MS }, { rust: 1 });
  for (const p of all) for (let i = 0; i < 5; i++) await p.op("set", { key: `${p.name}:${i}`, value: i });
  await server.kill();
  for (const p of all) for (const [op, f] of OPS) await failsFast(`${p.name} ${op} on a killed server`, () => p.op(op, f));
  await server.restart(); // empty: no persistence
  for (const p of all) {
    await eventually(`${p.name}: a set after the restart`, () => p.op("set", { key: `${p.name}:back`, value: "back" }));
    assert.equal(await p.op("get", { key: `${p.name}:0` }), null, "the restarted server is empty");
  }
  const [a] = all;
  for (let i = 0; i < 30; i++) await all[i % all.length].op("set", { key: `after:${i}`, value: i });
  assert.equal(await a.op("size"), 20);
  assert.deepEqual(await a.op("keys", {}), Array.from({ length: 20 }, (_, i) => `after:${i + 10}`).sort());
});

test("a frozen server (SIGSTOP): calls time out as CacheBackendError (retryable); after SIGCONT they work", async (t) => {
  const server = await startServer(t);
  const all = await participants(t, single(server), { prefix: "frozen:", lru: 20, responseTimeoutMs: TIMEOUT_MS }, { rust: 1 });
  for (const p of all) await p.op("set", { key: "k0", value: p.name });
  server.freeze();
  try {
    for (const p of all) {
      for (const [op, f] of OPS) await failsFast(`${p.name} ${op} on a frozen server`, () => p.op(op, f));
      await assert.rejects(p.op("get", { key: "k0" }), (e) => isBackendError(e) && e.retryable !== false);
    }
  } finally {
    server.thaw();
  }
  for (const p of all) await eventually(`${p.name}: a get after SIGCONT`, () => p.op("get", { key: "k0" }));
  for (const p of all) {
    await p.op("set", { key: `${p.name}:after`, value: 2 });
    assert.equal(await p.op("get", { key: `${p.name}:after` }), 2);
  }
});

test("FLUSHALL: every store sees its entries gone; the next sets rebuild the index and the capacity holds", async (t) => {
  const server = await startServer(t);
  const all = await participants(t, single(server), { prefix: "flushed:", lru: 10 }, { rust: 2 });
  for (let i = 0; i < 10; i++) await all[i % all.length].op("set", { key: `before:${i}`, value: i });
  assert.equal(await all[0].op("size"), 10);
  assert.equal((await server.cli("FLUSHALL")).trim(), "OK");
  for (const p of all) {
    for (let i = 0; i < 10; i++) assert.equal(await p.op("get", { key: `before:${i}` }), null, `${p.name} before:${i}`);
    assert.deepEqual(await p.op("keys", {}), []);
  }
  for (let i = 0; i < 15; i++) await all[(i + 1) % all.length].op("set", { key: `after:${i}`, value: i });
  for (const p of all) {
    assert.equal(await p.op("size"), 10, `${p.name}: the index was rebuilt`);
    assert.deepEqual(await p.op("keys", {}), Array.from({ length: 10 }, (_, i) => `after:${i + 5}`).sort());
  }
});

test("maxmemory with allkeys-lru: Redis evicts behind the stores' backs, no call fails, and the capacity heals once the pressure ends", async (t) => {
  const server = await startServer(t, { args: ["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"] });
  const all = await participants(t, single(server), { prefix: "evicted:", lru: 60 }, { rust: 2 });
  const big = "x".repeat(40_000);
  // About 12 MB into 3 MB: Redis evicts entries, and index keys too.
  for (let i = 0; i < 300; i++) await all[i % all.length].op("set", { key: `big:${i}`, value: big });
  const info = await server.cli("INFO", "stats");
  assert.ok(Number(/evicted_keys:(\d+)/.exec(info)[1]) > 0, "Redis evicted keys");
  // The pressure ends: small entries only.
  for (let i = 0; i < 150; i++) await all[i % all.length].op("set", { key: `small:${i}`, value: i });
  for (const p of all) {
    const size = await p.op("size");
    assert.ok(size <= 60, `${p.name}: size ${size} is back within the capacity`);
    const keys = await p.op("keys", {});
    assert.ok(keys.length <= 60, `${p.name}: ${keys.length} keys`);
    for (let i = 140; i < 150; i++) assert.equal(await p.op("get", { key: `small:${i}` }), i, `${p.name}: the latest writes are there`);
  }
});

test("maxmemory with noeviction: a write that does not fit is a CacheBackendError, reads go on, and a delete makes room", async (t) => {
  const server = await startServer(t, { args: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"] });
  const all = await participants(t, single(server), { prefix: "full:", lru: 1000 }, { rust: 1 });
  const big = "y".repeat(40_000);
  for (const p of all) {
    let refused;
    let written = 0;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      try {
        await p.op("set", { key: `${p.name}:${i}`, value: big });
        written++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused !== undefined, `${p.name}: Redis refused a write once full`);
    assert.ok(isBackendError(refused), `${p.name}: ${refused.className}: ${refused.message}`);
    assert.match(refused.message, /OOM|maxmemory/i);
    assert.ok(written > 0);
    assert.equal(await p.op("get", { key: `${p.name}:0` }), big, `${p.name}: reads go on`);
    for (let i = 0; i < written; i++) await p.op("delete", { key: `${p.name}:${i}` });
    await p.op("set", { key: `${p.name}:again`, value: "fits" });
    assert.equal(await p.op("get", { key: `${p.name}:again` }), "fits");
  }
});

test("a cluster master killed: calls on its slots fail in time, and once its replica took over the store serves them by itself", async (t) => {
  const cluster = await startCluster(t);
  const deployment = { urls: cluster.urls, rootNodes: cluster.rootNodes, cluster: true };
  const all = await participants(t, deployment, { prefix: "failover:", lru: 1000, responseTimeoutMs: TIMEOUT_MS }, { rust: 1 });
  const keys = Array.from({ length: 48 }, (_, i) => `k${i}`);
  for (const p of all) for (const key of keys) await p.op("set", { key: `${p.name}:${key}`, value: key });
  await cluster.waitForReplication();
  const [victim] = await cluster.masters();
  await victim.kill();
  let failed = 0;
  for (const p of all) {
    for (const key of keys) {
      const started = Date.now();
      try {
        await p.op("set", { key: `${p.name}:${key}`, value: "during" });
      } catch (e) {
        assert.ok(isBackendError(e), `${p.name} ${key}: ${e.className} ${e.message}`);
        failed++;
      }
      assert.ok(Date.now() - started < 3000, `${p.name} ${key}: answered after ${Date.now() - started} ms`);
    }
  }
  assert.ok(failed > 0, "some keys live on the killed master");
  await cluster.waitUntilOk();
  for (const p of all) {
    for (const key of keys) {
      await eventually(`${p.name} ${key} after the failover`, () => p.op("set", { key: `${p.name}:${key}`, value: "after" }), 20_000);
      assert.equal(await p.op("get", { key: `${p.name}:${key}` }), "after");
    }
    assert.ok((await p.op("size")) >= keys.length);
  }
});
