// An example Cloudflare Worker: caches an expensive computation per request
// in a MemoryStore that lives as long as the isolate (read-through, with
// getOrSet), and reports on /stats.
//
//   GET /prime?n=10000   the n-th prime (computed once, then served from the cache)
//   GET /version?name=x  stale-while-revalidate: a value that takes a while to
//                        load, fresh for the TTL, then served stale for a grace
//                        minute while one refresh runs past the response,
//                        kept alive by ctx.waitUntil
//   GET /stats           the cache's counters and size
//
// Workers keep module-level state between requests served by the same
// isolate, so the store is made once, here. Time in a Worker advances only
// across I/O, so entries expire between requests, not within one.
import { MemoryStore, LRUPolicy, CacheError } from "pepperpy-caching";

let cache;
// What /version loads: how many times each name was loaded, and how many
// refresh promises went to ctx.waitUntil (reported on /stats).
const versions = new Map();
let waitedFor = 0;

/** The isolate's cache; its TTL comes from the CACHE_TTL_SECONDS variable (default 60). */
function cacheFor(env) {
  cache ??= new MemoryStore({
    policy: new LRUPolicy({ maxSize: 1000, ttl: Number(env.CACHE_TTL_SECONDS ?? 60) }),
  });
  return cache;
}

/** The n-th prime, by trial division: deliberately slow enough to be worth caching. */
function nthPrime(n) {
  let count = 0;
  for (let candidate = 2; ; candidate++) {
    let prime = true;
    for (let d = 2; d * d <= candidate; d++) {
      if (candidate % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime && ++count === n) return candidate;
  }
}

/** A slow source of truth: each load of `name` is its next version, after some I/O. */
async function loadVersion(name) {
  await scheduler.wait(20);
  const version = (versions.get(name) ?? 0) + 1;
  versions.set(name, version);
  return { name, version };
}

export default {
  async fetch(request, env, ctx) {
    const store = cacheFor(env);
    const url = new URL(request.url);
    try {
      if (url.pathname === "/stats") {
        return Response.json({ ...store.getStats(), size: store.size, waitedFor });
      }
      if (url.pathname === "/version") {
        const name = url.searchParams.get("name") ?? "default";
        const ttl = Number(env.CACHE_TTL_SECONDS ?? 60);
        // Within the grace minute after the TTL, the stale value is returned at
        // once; the refresh runs after the response, so it goes to waitUntil.
        const waitUntil = (promise) => {
          waitedFor++;
          ctx.waitUntil(promise);
        };
        const value = await store.getOrSet(`version:${name}`, () => loadVersion(name), { ttl, grace: 60, waitUntil });
        return Response.json(value);
      }
      if (url.pathname === "/prime") {
        const n = Number(url.searchParams.get("n"));
        if (!Number.isInteger(n) || n < 1 || n > 200_000) {
          return new Response("n must be an integer from 1 to 200000\n", { status: 400 });
        }
        // Computed on a miss only; concurrent requests for the same n share one computation.
        let computed = false;
        const prime = await store.getOrSet(
          `prime:${n}`,
          () => {
            computed = true;
            return nthPrime(n);
          },
          { metadata: { computedAt: Date.now() } },
        );
        return Response.json({ n, prime, cached: !computed }, { headers: { "x-cache": computed ? "MISS" : "HIT" } });
      }
      return new Response("try /prime?n=10000 or /stats\n", { status: 404 });
    } catch (error) {
      if (error instanceof CacheError) return new Response(`${error.name}: ${error.message}\n`, { status: 500 });
      throw error;
    }
  },
};
