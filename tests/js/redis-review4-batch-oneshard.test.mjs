// review4j (session 11): the JS RedisStore's batching on a single-node
// client connected to a cluster-mode server that owns every slot (a managed
// Redis "cluster mode enabled" with one shard, reached through its one
// endpoint with a plain client). There GET and SET of any key work, but a
// multi-key command whose keys hash to different slots is refused with
// CROSSSLOT: every batched get (MGET) and plain set (MSET) of a tick fails,
// where batch: false (one GET/SET each) works. js/redis/clients.js
// `isRefusal` knows NOPERM and unknown command only, so the store never
// falls back: each tick's batch fails again.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as redis4 from "redis4";
import * as redis5 from "redis5";
import IORedis from "ioredis";
import { RedisStore } from "pepperpy-caching/redis";
import { startServer, within } from "./redis-support.mjs";

const quiet = (client) => {
  client.on("error", () => {});
  return client;
};
const socket = (port) => ({ socket: { host: "127.0.0.1", port, reconnectStrategy: false } });
const KINDS = [
  { name: "node-redis v4", open: (port) => quiet(redis4.createClient(socket(port))).connect(), close: (c) => c.disconnect().catch(() => {}) },
  { name: "node-redis v5", open: (port) => quiet(redis5.createClient(socket(port))).connect(), close: (c) => c.destroy() },
  {
    name: "ioredis",
    open: async (port) => {
      const client = quiet(new IORedis({ host: "127.0.0.1", port, lazyConnect: true, retryStrategy: () => null }));
      await client.connect();
      return client;
    },
    close: (c) => c.disconnect(),
  },
];

const outcomes = (promises) =>
  Promise.allSettled(promises).then((all) => all.map((r) => (r.status === "fulfilled" ? ["ok", r.value] : ["error", r.reason?.constructor?.name, r.reason?.message])));

for (const kind of KINDS) {
  for (const batch of [false, true]) {
    test(`${kind.name} batch: ${batch}: a one-shard cluster-mode server through a plain client: the gets and sets of one tick work as one at a time`, async (t) => {
      const own = await startServer(t, { args: ["--cluster-enabled", "yes", "--cluster-config-file", `nodes-r4j-${process.pid}-${kind.name.replace(/\W/g, "")}-${batch}.conf`] });
      await own.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383");
      // Wait until the node serves its slots.
      for (let i = 0; i < 100 && !String(await own.cli("CLUSTER", "INFO")).includes("cluster_state:ok"); i++) await new Promise((r) => setTimeout(r, 50));
      const client = await kind.open(own.port);
      try {
        const store = new RedisStore({ client, prefix: "app:", batch });
        // One at a time: works on this server whatever the batching.
        await store.set("a", 1);
        await store.set("b", 2);
        assert.deepEqual([await store.get("a"), await store.get("b")], [1, 2], "one at a time");
        const sets = await within("sets of one tick", outcomes([store.set("c", 3), store.set("d", 4), store.set("e", 5)]), 3000);
        assert.deepEqual(sets, [["ok", undefined], ["ok", undefined], ["ok", undefined]], "three sets in one tick");
        const gets = await within("gets of one tick", outcomes(["a", "b", "c", "d", "e", "z"].map((k) => store.get(k))), 3000);
        assert.deepEqual(gets, [["ok", 1], ["ok", 2], ["ok", 3], ["ok", 4], ["ok", 5], ["ok", undefined]], "six gets in one tick");
      } finally {
        await kind.close(client);
      }
    });
  }
}
