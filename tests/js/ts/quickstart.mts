// The README's JavaScript quick start as TypeScript: compiled with
// `tsc --strict` against the package's types, then run by node.
import { MemoryStore, LRUPolicy, TTLPolicy, CacheError, CacheKeyError, CachePolicyError } from "pepperpy-caching";
import type { CacheStats, Metadata, SetOptions } from "pepperpy-caching";

// --- README quick start, verbatim ---
const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1000 }) });
await store.set("key", "value", { ttl: 60 });          // ttl in seconds
const value = await store.get("key");                   // undefined on a miss
await store.delete("key");                              // true if it existed
await store.set("key", { any: ["JS", "value"] }, { metadata: { version: 1, author: "user" } });
const meta = await store.getMetadata("key");            // a plain object, or undefined
await store.updateMetadata("key", { version: 2 });      // merges: { version: 2, author: "user" }
const removed = await store.invalidate("user:*");       // Redis glob syntax, returns a count
await store.has("key"); await store.keys("user:*"); await store.clear(); store.size;
const stats = store.getStats();  // { hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency } (ms)
new TTLPolicy({ ttl: 30, maxSize: 500 });
// --- end of quick start ---

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`);
}

// The inferred types are the precise ones.
const v: unknown = value;
const m: Metadata | undefined = meta;
const n: number = removed;
const s: CacheStats = stats;
const ratio: number = s.hitRatio;
check(v === "value", "value");
check(m?.["author"] === "user" && m["version"] === 1, "metadata");
check(n === 0 && ratio === 1, "counts");

// A typed store.
const users = new MemoryStore<{ name: string }>({ policy: new TTLPolicy({ ttl: 30, maxSize: 500 }) });
const options: SetOptions = { ttl: 5, metadata: { tags: ["a", 1, null, { nested: true }] } };
await users.set("user:1", { name: "Ada" }, options);
const user = await users.get("user:1");
check(user?.name === "Ada", "typed get");
const sync: { name: string } | undefined = users.getSync("user:1");
check(sync === user, "same object");

// getOrSet: the loader produces the store's value type, sync or async.
const loaded: { name: string } = await users.getOrSet("user:2", async () => ({ name: "Grace" }), { ttl: 5 });
const again = await users.getOrSet("user:2", () => ({ name: "never used" }));
check(loaded.name === "Grace" && again === loaded, "getOrSet");
const { loads, loadFailures, totalLoadTime }: CacheStats = users.getStats();
check(loads === 1 && loadFailures === 0 && totalLoadTime >= 0, "load stats");

try {
  // @ts-expect-error: keys are strings
  await users.get(1);
  check(false, "unreachable");
} catch (e) {
  check(e instanceof CacheKeyError && e instanceof CacheError, "CacheKeyError");
}
try {
  new LRUPolicy({ maxSize: 0 });
} catch (e) {
  check(e instanceof CachePolicyError && e.message.includes("maxSize"), "CachePolicyError");
}

// Misuse the types reject.
// @ts-expect-error: maxSize is required
void (() => new LRUPolicy({}));
// @ts-expect-error: ttl is a number of seconds
void (() => users.set("k", { name: "x" }, { ttl: "10" }));
// @ts-expect-error: metadata holds JSON values only
void (() => users.set("k", { name: "x" }, { metadata: { when: new Date() } }));
// @ts-expect-error: values of a typed store are checked
void (() => users.set("k", { nom: "x" }));
// @ts-expect-error: a loader returns the store's value type
void (() => users.getOrSet("k", async () => ({ nom: "x" })));
// @ts-expect-error: the loader is a function, not a value
void (() => users.getOrSet("k", { name: "x" }));
// @ts-expect-error: size is read-only
void (() => { store.size = 3; });

// Issues 9 and 11: stale-while-revalidate options, the loader's context,
// lifecycle and iteration, typed.
import { ManualClock, CacheTimeoutError, CacheReentrantLoadError } from "pepperpy-caching";
import type { DumpEntry, GetOrSetOptions, LoadContext, RemovalReason } from "pepperpy-caching";
{
  const clock = new ManualClock();
  const removals: [string, RemovalReason][] = [];
  const typed = new MemoryStore<number>({
    policy: new LRUPolicy({ maxSize: 10 }),
    clock,
    onRemove: (value: number, key: string, reason: RemovalReason) => void removals.push([key, reason]),
  });
  const kept: Promise<void>[] = [];
  const swr: GetOrSetOptions = { ttl: 1, grace: 10, retryAfter: 1, softTimeout: 5, hardTimeout: 5, waitUntil: (p) => void kept.push(p) };
  const first: number = await typed.getOrSet("n", ({ key, signal }: LoadContext) => (signal.aborted ? 0 : key.length), swr);
  clock.advance(1000);
  const stale: number = await typed.getOrSet("n", () => 2, swr);
  await Promise.all(kept);
  check(first === 1 && stale === 1 && typed.peek("n") === 2, "stale-while-revalidate");
  check(typed.remainingTtl("n") === 11 && typed.getStats().refreshes === 1, "remainingTtl and stats");
  const entries: [string, number][] = [...typed.entries()];
  const values: number[] = [...typed.values()];
  check(entries.length === 1 && values[0] === 2 && typed.keysSync()[0] === "n", "iteration");
  await typed.setMany([["b1", 1], ["b2", 2]], { ttl: 60 });
  const many: (number | undefined)[] = await typed.getMany(["b1", "nope", "b2"]);
  const gone: number = typed.deleteManySync(new Set(["b1", "b2"]));
  check(many[0] === 1 && many[1] === undefined && many[2] === 2 && gone === 2, "batch calls");
  const dumped: Array<[string, DumpEntry<number>]> = typed.dump();
  const restored = new MemoryStore<number>({ policy: new LRUPolicy({ maxSize: 10 }) });
  check(restored.load(dumped) === 1 && restored.peek("n") === 2 && dumped[0]?.[1].ttl === 11_000, "dump and load");
  typed.deleteSync("n");
  check(removals.length === 4 && removals[1]?.[1] === "deleted", "onRemove");
  typed.dispose();
  check(new CacheTimeoutError("t") instanceof CacheError && new CacheReentrantLoadError("r") instanceof CacheError, "classes");
}

// Capacity in size: the store's maxSize, sizeCalculation (value, key), set's { size }.
import { CacheEntryTooLargeError } from "pepperpy-caching";
{
  const sized = new MemoryStore<string>({
    policy: new LRUPolicy({ maxSize: 100 }),
    maxSize: 10,
    sizeCalculation: (value: string, key: string) => value.length + key.length - 1,
  });
  sized.setSync("a", "xxxx");
  sized.setSync("b", "yy", { size: 6 });
  let refused = false;
  try {
    sized.setSync("c", "z".repeat(20));
  } catch (error) {
    refused = error instanceof CacheEntryTooLargeError;
  }
  const total: number = sized.getStats().totalWeight;
  check(refused && total === 10, "capacity in size");
}
