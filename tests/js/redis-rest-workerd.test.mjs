// The JS RedisStore over REST inside workerd (the Cloudflare Workers runtime,
// through miniflare): a Worker with @upstash/redis's Cloudflare build, over
// fetch to a local Upstash REST endpoint (./upstash-endpoint.mjs) in front of a
// real redis-server, shares one store with a Node process on node-redis (TCP).
// Bundled by esbuild with the `workerd` condition as wrangler bundles it, the
// .wasm files imported as compiled modules; no `nodejs_compat`: REST needs
// only fetch.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "redis5";
import { startServer } from "./redis-support.mjs";
import { redisEntryWorker } from "./workerd-support.mjs";
import { startEndpoint } from "./upstash-endpoint.mjs";


const WORKER = `
import { Redis } from "@upstash/redis/cloudflare";
import { LRUPolicy, CacheKeyError, CacheBackendError } from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";

export default {
  async fetch(request) {
    const params = new URL(request.url).searchParams;
    const redis = new Redis({ url: params.get("url"), token: params.get("token"), enableTelemetry: false });
    const store = new RedisStore({ client: redis, prefix: "edge:", policy: new LRUPolicy({ maxSize: 100 }) });
    await store.set("from-worker", { at: "edge", text: "日本😀" }, { ttl: 60, metadata: { by: "worker" } });
    let badKey = false;
    try {
      await store.set("a\\uFFFFb", 1);
    } catch (e) {
      badKey = e instanceof CacheKeyError;
    }
    let runs = 0;
    const loaded = await Promise.all([1, 2, 3].map(() => store.getOrSet("loaded", async () => ++runs)));
    const wrong = new RedisStore({ client: new Redis({ url: params.get("url"), token: "wrong", enableTelemetry: false }), prefix: "edge:" });
    let refused = "";
    try {
      await wrong.get("from-node");
    } catch (e) {
      refused = e instanceof CacheBackendError ? "CacheBackendError" : String(e);
    }
    return Response.json({
      fromNode: await store.get("from-node"),
      loaded,
      runs,
      badKey,
      refused,
      keys: (await store.keys()).sort(),
      size: await store.size(),
    });
  },
};
`;

let mf;

before(async () => {
  mf = await redisEntryWorker({
    name: "redis-rest-workerd",
    source: WORKER,
    esbuildArgs: ["--platform=neutral", "--main-fields=module,main", "--external:node:*"],
  });
});

after(async () => {
  await mf?.dispose();
});

test("a Worker's RedisStore over @upstash/redis (fetch) shares the store of a Node process on TCP", async (t) => {
  const server = await startServer();
  const endpoint = await startEndpoint({ redisUrl: server.url });
  const client = await createClient({ url: server.url }).connect();
  t.after(async () => {
    client.destroy();
    await endpoint.stop();
    await server.stop();
  });
  const { RedisStore } = await import("pepperpy-caching/redis");
  const { LRUPolicy } = await import("pepperpy-caching");
  const node = new RedisStore({ client, prefix: "edge:", policy: new LRUPolicy({ maxSize: 100 }) });
  await node.set("from-node", [1, "two", { u: "é" }]);
  const res = await mf.dispatchFetch(`http://worker/?url=${encodeURIComponent(endpoint.url)}&token=${endpoint.token}`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const body = JSON.parse(text);
  assert.deepEqual(body.fromNode, [1, "two", { u: "é" }]);
  assert.deepEqual(body.loaded, [1, 1, 1]);
  assert.equal(body.runs, 1);
  assert.equal(body.badKey, true, "U+FFFF refused in workerd too");
  assert.equal(body.refused, "CacheBackendError", "a wrong token");
  assert.deepEqual(body.keys, ["from-node", "from-worker", "loaded"]);
  assert.equal(body.size, 3);
  assert.deepEqual(await node.get("from-worker"), { at: "edge", text: "日本😀" });
  assert.deepEqual(await node.getMetadata("from-worker"), { by: "worker" });
  assert.equal(await node.size(), 3, "one capacity index");
  assert.ok(endpoint.requests.some((r) => r.path === "/pipeline" && r.headers["upstash-encoding"] === "base64"), "the Worker went through the endpoint");
});
