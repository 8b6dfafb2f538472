// review4j (session 11): the JS RedisStore's batching on a user whose ACL
// refuses MSET (or a server where MSET is renamed away). The refused MSET
// comes back after the calls sent behind it ran, and only then are its sets
// re-sent one by one (js/redis/clients.js `failAll`): a get of the same
// key made after the sets, in the same tick, reads the OLD value, and a set
// made after them is overwritten by the older re-sent one. The comment in
// clients.js accepts this "once per client, on a server that refuses"; a
// store's caller sees a lost write (read-your-writes broken, the last write
// not winning). With batch: false (and the raw client) both hold.

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
const nodeRedisOptions = (port) => ({ socket: { host: "127.0.0.1", port, reconnectStrategy: false }, username: "limited", password: "secret" });
const KINDS = [
  { name: "node-redis v4", open: (port) => quiet(redis4.createClient(nodeRedisOptions(port))).connect(), close: (c) => c.disconnect().catch(() => {}) },
  { name: "node-redis v5", open: (port) => quiet(redis5.createClient(nodeRedisOptions(port))).connect(), close: (c) => c.destroy() },
  {
    name: "ioredis",
    open: async (port) => {
      const client = quiet(new IORedis({ host: "127.0.0.1", port, lazyConnect: true, username: "limited", password: "secret", retryStrategy: () => null }));
      await client.connect();
      return client;
    },
    close: (c) => c.disconnect(),
  },
];

for (const kind of KINDS) {
  for (const batch of [false, true]) {
    test(`${kind.name} batch: ${batch}: ACL without MSET: set a, set b, then get a in one tick reads the new a`, async (t) => {
      const own = await startServer(t);
      await own.cli("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-mset");
      const client = await kind.open(own.port);
      try {
        const store = new RedisStore({ client, prefix: "p:", batch });
        await store.set("a", "old");
        const got = await within("set, set, get", Promise.all([store.set("a", "new"), store.set("b", "B"), store.get("a")]), 3000);
        assert.equal(got[2], "new", "a get made after the set of the same key reads it (read-your-writes)");
      } finally {
        await kind.close(client);
      }
    });

    test(`${kind.name} batch: ${batch}: ACL without MSET: set a=1, set b, then set a=2 with a TTL in one tick leaves a=2 (the last write wins)`, async (t) => {
      const own = await startServer(t);
      await own.cli("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-mset");
      const client = await kind.open(own.port);
      try {
        const store = new RedisStore({ client, prefix: "p:", batch });
        await within("set, set, set", Promise.all([store.set("a", 1), store.set("b", 2), store.set("a", 2, { ttl: 60 })]), 3000);
        assert.equal(await store.get("a"), 2, "a was last set to 2");
      } finally {
        await kind.close(client);
      }
    });
  }
}
