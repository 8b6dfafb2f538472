// review4j (session 11): hostile review of the JS RedisStore's batching
// (js/redis/clients.js `batcher`). Each test compares the batched store with
// `batch: false` (one command per call, what the raw client does for the
// same sequence): batching must not change what reaches Redis.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as redis4 from "redis4";
import * as redis5 from "redis5";
import IORedis from "ioredis";
import { CacheBackendError } from "pepperpy-caching";
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
    // sets wait for the end of the tick, after quit() closed the client: no
    // client (node-redis v4/v5, ioredis) tells a library that quit() was
    // called, short of wrapping the user's client's methods, so this stays
    // the documented behaviour (README "Batched gets and sets", redis.d.ts
    // `batch`): await the calls before quit(), or use batch: false. What
    // is tested: none of those calls hangs, each refused one rejects with
    // CacheBackendError, and nothing is half-written (a set answered ok is
    // in Redis, a rejected one is not).
    for (const batch of [false, true]) {
      test(`${kind.name} batch: ${batch}: the calls made in the tick of a graceful quit(): each answered${batch ? " or rejected with CacheBackendError (documented), none pending, none half-written" : ", as on the raw client"}`, async () => {
        const client = await kind.open(server.port);
        const prefix = fresh();
        const store = new RedisStore({ client, prefix, batch });
        await store.set("old", "O");
        const calls = outcomes([store.get("old"), store.get("old"), store.set("a", "A"), store.set("b", "B")]);
        await client.quit().catch(() => {});
        const got = await within("the callers of a quitting client", calls, 3000);
        const reader = new RedisStore({ client: admin, prefix });
        const stored = [await reader.get("a"), await reader.get("b")];
        if (!batch) {
          assert.deepEqual(stored, ["A", "B"], `the sets made before quit() are in Redis (callers got ${JSON.stringify(got)})`);
          assert.deepEqual(got, [["ok", "O"], ["ok", "O"], ["ok", undefined], ["ok", undefined]], "every call made before quit() is answered");
          return;
        }
        // The gets were sent when the first set joined (a batch of another kind goes first): answered.
        assert.deepEqual(got.slice(0, 2), [["ok", "O"], ["ok", "O"]]);
        got.slice(2).forEach((g, i) => {
          if (g[0] === "ok") assert.equal(stored[i], ["A", "B"][i], `a set answered ok is in Redis (${JSON.stringify(got)})`);
          else {
            assert.equal(g[1], CacheBackendError.name, JSON.stringify(g));
            assert.equal(stored[i], undefined, `a rejected set is not in Redis (${JSON.stringify(got)})`);
          }
        });
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
