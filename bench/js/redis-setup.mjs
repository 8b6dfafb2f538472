// What bench/js/redis.mjs and bench/js/redis-hot.mjs share: the server
// (`--url`, or a redis-server of their own as the tests start it), the keys
// and values every row reads and writes, the two raw clients and their rows
// (GET + JSON.parse, JSON.stringify + SET: what a user caching an object with
// the bare client writes), and how a package.json `exports` entry resolves.

import { createClient } from "redis";
import IORedis from "ioredis";

export const KEYS = 1000;
export const keys = Array.from({ length: KEYS }, (_, i) => `k:${String(i).padStart(6, "0")}`);
export const value = (i) => ({ id: i, name: `user ${i}`, tags: ["a", "b"], score: i * 1.5 });

/** { url, server }: `url` if given, else a redis-server of our own (stop it with `server.stop()`). */
export async function redisServer(url) {
  if (url !== undefined) return { url, server: undefined };
  const { startServer } = await import("../../tests/js/redis-support.mjs");
  const server = await startServer();
  return { url: server.url, server };
}

/** A connected node-redis v5 client and an ioredis client on `url`, and the raw rows on them. */
export async function rawClients(url) {
  const nodeRedis = createClient({ url });
  nodeRedis.on("error", () => {});
  await nodeRedis.connect();
  const io = new IORedis(url);
  io.on("error", () => {});
  await new Promise((resolve) => (io.status === "ready" ? resolve() : io.once("ready", resolve)));
  const rows = [
    {
      name: "node-redis v5 raw GET/SET (+JSON)",
      base: "node-redis",
      get: (i) => nodeRedis.get(`raw:${keys[i % KEYS]}`).then((s) => (s === null ? undefined : JSON.parse(s))),
      set: (i) => nodeRedis.set(`raw:${keys[i % KEYS]}`, JSON.stringify(value(i))),
    },
    {
      name: "ioredis raw GET/SET (+JSON)",
      base: "ioredis",
      get: (i) => io.get(`rio:${keys[i % KEYS]}`).then((s) => (s === null ? undefined : JSON.parse(s))),
      set: (i) => io.set(`rio:${keys[i % KEYS]}`, JSON.stringify(value(i))),
    },
  ];
  return { nodeRedis, io, rows };
}

/** The file a package.json `exports` entry resolves to for Node's import. */
export function entryOf(pkg, sub) {
  let target = pkg.exports?.[sub];
  for (let depth = 0; target && typeof target === "object" && depth < 8; depth++) {
    target = target.node ?? target.import ?? target.default;
  }
  return typeof target === "string" ? target : undefined;
}
