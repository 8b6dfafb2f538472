// An example Cloudflare Worker: caches an expensive computation per request
// in a MemoryStore that lives as long as the isolate (read-through, with
// getOrSet), and reports on /stats.
//
//   GET /prime?n=10000   the n-th prime (computed once, then served from the cache)
//   GET /stats           the cache's counters and size
//
// Workers keep module-level state between requests served by the same
// isolate, so the store is made once, here. Time in a Worker advances only
// across I/O, so entries expire between requests, not within one.
import { MemoryStore, LRUPolicy, CacheError } from "pepperpy-caching";

let cache;

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

export default {
  async fetch(request, env) {
    const store = cacheFor(env);
    const url = new URL(request.url);
    try {
      if (url.pathname === "/stats") {
        return Response.json({ ...store.getStats(), size: store.size });
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
