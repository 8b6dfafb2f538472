// What every consumer runs once it has the package, bundled or not: the
// README quick start in short, with a non-ASCII key and a lone surrogate (the
// calls that died on Node 18) and the error classes. Returns plain data that
// the driver compares with `expected` below.
export const expected = {
  evicted: true,
  value: { name: "Ada" },
  metadata: { version: 2, author: "user" },
  nonAscii: "naïve ключ 🔑",
  keyErrorClass: "CacheKeyError",
  loneSurrogateRefused: true,
  removed: 2,
  stats: { hits: 2, misses: 1, evictions: 1 },
};

export async function check({ MemoryStore, LRUPolicy, CacheError, CacheKeyError }) {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 3 }) });
  await store.set("old", 0);
  await store.set("user:1", { name: "Ada" }, { ttl: 60, metadata: { version: 1, author: "user" } });
  await store.set("usér:ключ:🔑", "naïve ключ 🔑");
  await store.set("post:1", 3); // evicts "old", the least recently used
  const evicted = (await store.get("old")) === undefined;
  const value = await store.get("user:1");
  await store.updateMetadata("user:1", { version: 2 });
  const metadata = await store.getMetadata("user:1");
  const nonAscii = await store.get("usér:ключ:🔑");
  let keyErrorClass;
  try {
    await store.get("");
  } catch (error) {
    keyErrorClass = error instanceof CacheKeyError && error instanceof CacheError ? error.name : String(error);
  }
  let loneSurrogateRefused = false;
  try {
    store.setSync("\uD800", 1);
  } catch (error) {
    loneSurrogateRefused = error instanceof CacheKeyError;
  }
  const removed = await store.invalidate("us*");
  const { hits, misses, evictions } = store.getStats();
  return { evicted, value, metadata, nonAscii, keyErrorClass, loneSurrogateRefused, removed, stats: { hits, misses, evictions } };
}
