// pepperpy-caching/redis's types (js/redis.d.ts) as a user meets them: compiled
// strictly by tsc (scripts/test-js.sh), with a Conn of its own (no client package needed).
import { LRUPolicy, CacheError, type CacheStats, type RemovalReason } from "pepperpy-caching";
import { RedisStore, type RedisConn, type RedisReply, type RedisStoreOptions } from "pepperpy-caching/redis";

// For a node-redis or ioredis client (a RedisConn keeps its own timeouts): seconds.
export const withTimeout: Omit<RedisStoreOptions, "client"> = { prefix: "app:", responseTimeout: 30 };
// One GET or SET per call (no batching of one tick's calls).
export const unbatched: Omit<RedisStoreOptions, "client"> = { prefix: "app:", batch: false };

const conn: RedisConn = {
  kind: "memory",
  clustered: false,
  script: async (_script, _keys, _args): Promise<RedisReply> => null,
  command: async (_args, _key): Promise<RedisReply> => null,
  pipeline: async (calls) => calls.map((): RedisReply => null),
  masters: async () => [conn],
};

// onRemove: the MemoryStore's listener shape, its reasons typed.
export const listened = new RedisStore({
  client: conn,
  prefix: "app:",
  onRemove: (value: unknown, key: string, reason: RemovalReason) => {
    const known: "evicted" | "expired" | "deleted" | "replaced" | "invalidated" | "cleared" = reason;
    void [value, key.length, known];
  },
});

export async function typed(): Promise<number> {
  const store = new RedisStore({ client: conn, prefix: "app:", policy: new LRUPolicy({ maxSize: 10 }), defaultTtl: 60 });
  await store.set("k", { a: 1 }, { ttl: 5, metadata: { by: "ts" }, tags: ["t"], idle: 10 });
  const value: unknown = await store.get("k");
  const loaded: number = await store.getOrSet("n", async ({ key, signal }) => key.length + (signal.aborted ? 0 : 1), {
    ttl: 60,
    grace: 600,
    retryAfter: 1,
    softTimeout: 1,
    hardTimeout: 5,
    waitUntil: (p: Promise<unknown>) => void p,
  });
  const many: unknown[] = await store.getMany(["a", "b"]);
  await store.setMany([["a", 1]], { ttl: 1 });
  const removed: number = (await store.deleteMany(["a"])) + (await store.invalidate("a*")) + (await store.invalidateTags(["t"]));
  const tags: string[] | undefined = await store.getTags("k");
  const meta: Record<string, unknown> | undefined = await store.getMetadata("k");
  const stats: CacheStats = store.getStats();
  const keys: string[] = await store.keys();
  const size: number = await store.size();
  const prefix: string = store.prefix;
  void [value, many, tags, meta, keys, prefix, await store.has("k"), await store.delete("k"), await store.updateMetadata("k", {})];
  await store.clear();
  store.resetStats();
  const failure: unknown = new Error();
  if (failure instanceof CacheError) return 0;
  return loaded + removed + size + stats.hits;
}
