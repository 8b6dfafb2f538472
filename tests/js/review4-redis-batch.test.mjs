// review4j (session 11): hostile review of the JS RedisStore's batching
// (js/redis/clients.js `batcher`). Each test compares the batched store with
// `batch: false` (one command per call, what the raw client does for the
// same sequence): batching must not change what reaches Redis.

import { after, before, describe, test } from "node:test";
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
const nodeRedisOptions = (port, { username, password } = {}) => ({
  socket: { host: "127.0.0.1", port, reconnectStrategy: false },
  ...(username === undefined ? {} : { username, password }),
});
const KINDS = [
  { name: "node-redis v4", open: (port, o) => quiet(redis4.createClient(nodeRedisOptions(port, o))).connect(), close: (c) => c.disconnect().catch(() => {}) },
  { name: "node-redis v5", open: (port, o) => quiet(redis5.createClient(nodeRedisOptions(port, o))).connect(), close: (c) => c.destroy() },
  {
    name: "ioredis",
    open: async (port, { username, password } = {}) => {
      const client = quiet(new IORedis({ host: "127.0.0.1", port, lazyConnect: true, username, password, retryStrategy: () => null }));
      await client.connect();
      return client;
    },
    close: (c) => c.disconnect(),
  },
];

const outcomes = (promises) =>
  Promise.allSettled(promises).then((all) => all.map((r) => (r.status === "fulfilled" ? ["ok", r.value] : ["error", r.reason?.constructor?.name, r.reason?.message])));

let server;
let admin;
let n = 0;
const fresh = () => `r4j${++n}:`;

before(async () => {
  server = await startServer();
  admin = await quiet(redis5.createClient({ url: server.url })).connect();
});
after(async () => {
  await admin?.quit().catch(() => {});
  await server?.stop();
});

for (const kind of KINDS) {
  describe(`review4j batching on ${kind.name}`, () => {
    // The usual shutdown: fire-and-forget writes, then a graceful quit() in
    // the same tick. The raw client (and batch: false) sends the SET before
    // the QUIT, and QUIT waits for its reply: the write lands. Batched, the
    // SET waits for the end of the tick, after QUIT closed the client: the
    // write is lost (and the caller rejected).
    for (const batch of [false, true]) {
      test(`${kind.name} batch: ${batch}: a set and a get made in the tick of a graceful quit() reach Redis before the QUIT, as on the raw client`, async () => {
        const client = await kind.open(server.port);
        const prefix = fresh();
        const store = new RedisStore({ client, prefix, batch });
        await store.set("old", "O");
        const calls = outcomes([store.get("old"), store.get("old"), store.set("a", "A"), store.set("b", "B")]);
        await client.quit().catch(() => {});
        const got = await within("the callers of a quitting client", calls, 3000);
        // What the raw client does with the same sequence: every command answered.
        const raw = await kind.open(server.port);
        const rawCalls = outcomes([raw.set(`${prefix}raw`, "R"), raw.get(`${prefix}raw`)]);
        await raw.quit().catch(() => {});
        assert.deepEqual((await rawCalls).map((o) => o[0]), ["ok", "ok"], "the raw client answers the calls made before quit()");
        const reader = new RedisStore({ client: admin, prefix });
        assert.deepEqual([await reader.get("a"), await reader.get("b")], ["A", "B"], `the sets made before quit() are in Redis (callers got ${JSON.stringify(got)})`);
        assert.deepEqual(got, [["ok", "O"], ["ok", "O"], ["ok", undefined], ["ok", undefined]], "every call made before quit() is answered");
      });
    }

    // MSET refused by an ACL: the refusal comes back after the calls sent
    // behind the MSET ran, and the batch's sets are then re-sent one by one:
    // a delete made after the sets (in the same tick) runs BEFORE them, and the
    // deleted key comes back. With batch: false the key stays deleted.
    for (const batch of [false, true]) {
      test(`${kind.name} batch: ${batch}: ACL without MSET: set a, set b, delete a in one tick leaves a deleted (the refused MSET's re-sent SETs must not pass the DEL)`, async (t) => {
        const own = await startServer(t);
        await own.cli("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-mget", "-mset");
        const client = await kind.open(own.port, { username: "limited", password: "secret" });
        try {
          const store = new RedisStore({ client, prefix: "p:", batch });
          const got = await within("set, set, delete", outcomes([store.set("a", 1), store.set("b", 2), store.delete("a")]), 3000);
          assert.deepEqual(got.map((o) => o[0]), ["ok", "ok", "ok"]);
          assert.equal(await store.get("a"), undefined, "a was deleted after it was set: it must stay deleted");
          assert.equal(await store.get("b"), 2);
        } finally {
          await kind.close(client);
        }
      });
    }
  });
}
