// The JS RedisStore (pepperpy-caching/redis) inside workerd, the Cloudflare
// Workers runtime (through miniflare, `nodejs_compat`), on node-redis v5 over
// TCP to a real redis-server: bundled by esbuild with the `workerd` condition
// as wrangler bundles it, its .wasm files imported as compiled modules (a
// Worker may not compile wasm from bytes). A Worker request per check.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "redis5";
import { startServer } from "./redis-support.mjs";
import { redisEntryWorker } from "./workerd-support.mjs";

const WORKER = `
import { createClient } from "redis5";
import { LRUPolicy, CacheSerializationError } from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";

export default {
  async fetch(request, env, ctx) {
    const port = Number(new URL(request.url).searchParams.get("port"));
    const client = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false } });
    client.on("error", () => {});
    await client.connect();
    try {
      const store = new RedisStore({ client, prefix: "edge:", policy: new LRUPolicy({ maxSize: 100 }) });
      await store.set("from-worker", { at: "edge" }, { ttl: 60 });
      let refused = false;
      try {
        await store.set("bad", NaN);
      } catch (e) {
        refused = e instanceof CacheSerializationError;
      }
      let runs = 0;
      const loaded = await Promise.all([1, 2, 3].map(() => store.getOrSet("loaded", async () => ++runs)));
      // A store without recency: the gets and sets of one tick batched (MGET, MSET), in order.
      const plain = new RedisStore({ client, prefix: "plain:" });
      await Promise.all([plain.set("a", 1), plain.set("b", 2)]);
      const [before] = await Promise.all([plain.get("a"), plain.set("a", 3)]);
      const batched = [before, ...(await Promise.all(["a", "b", "c"].map((k) => plain.get(k))))];
      return Response.json({
        fromNode: await store.get("from-node"),
        batched,
        loaded,
        runs,
        refused,
        keys: (await store.keys()).sort(),
        size: await store.size(),
      });
    } finally {
      await client.quit();
    }
  },
};
`;

let mf;

before(async () => {
  mf = await redisEntryWorker({
    name: "redis-store-workerd",
    source: WORKER,
    esbuildArgs: [
      "--platform=node",
      '--banner:js=import { createRequire as __createRequire } from "node:module"; const require = __createRequire("/");',
    ],
    compatibilityFlags: ["nodejs_compat"],
  });
});

after(async () => {
  await mf?.dispose();
});

test("a Worker's RedisStore shares the store of a Node process: entries, one loader, the capacity index", async (t) => {
  const server = await startServer();
  const client = await createClient({ url: server.url }).connect();
  t.after(async () => {
    client.destroy();
    await server.stop();
  });
  const { RedisStore } = await import("pepperpy-caching/redis");
  const { LRUPolicy } = await import("pepperpy-caching");
  const node = new RedisStore({ client, prefix: "edge:", policy: new LRUPolicy({ maxSize: 100 }) });
  await node.set("from-node", [1, "two"]);
  const res = await mf.dispatchFetch(`http://worker/?port=${server.port}`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.deepEqual(body.fromNode, [1, "two"]);
  assert.deepEqual(body.batched, [1, 3, 2, null], "batched gets and sets in workerd: each its own answer, in order");
  const stats = await client.info("commandstats");
  assert.match(stats, /^cmdstat_mget:calls=[1-9]/m, "the gets of one tick were one MGET");
  assert.match(stats, /^cmdstat_mset:calls=[1-9]/m, "the sets of one tick were one MSET");
  assert.deepEqual(body.loaded, [1, 1, 1]);
  assert.equal(body.runs, 1);
  assert.equal(body.refused, true, "CacheSerializationError, the main entry's class, in workerd too");
  assert.deepEqual(body.keys, ["from-node", "from-worker", "loaded"]);
  assert.equal(body.size, 3);
  assert.deepEqual(await node.get("from-worker"), { at: "edge" });
  assert.equal(await node.size(), 3, "one capacity index");
});
