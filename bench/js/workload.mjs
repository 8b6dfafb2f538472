// One workload of bench/js/targets.mjs, run once, for bench/js/callgrind.sh
// (instructions per operation: on a shared machine the only steady figure).
//
//   node workload.mjs WORKLOAD PACKAGE OPS
//
// WORKLOAD: hitLRU, hitS3 (getSync hit on 1,024 keys; OPS x 10 gets),
// asideLRU, asideS3 (cache-aside over Zipf 0.99, 100k keys, capacity 10k),
// asideLRUAsync, asideS3Async (the same with await get/set).
// PACKAGE: a directory of the built package (pkg/), or `lru-cache` (the
// same loops over lru-cache 11; its "Async" rows wrap it in async functions).
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [work, pkg, opsArg] = process.argv.slice(2);
const OPS = Number(opsArg ?? 300_000);
const N = 100_000;
const CAP = 10_000;
const require = createRequire(import.meta.url);
const api =
  pkg === "lru-cache" ? { LRUCache: require("lru-cache").LRUCache } : await import(pathToFileURL(resolve(pkg, "inline.mjs")).href);
const keys = Array.from({ length: N }, (_, i) => `item:${i}`);
let seed = 42;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
// Zipf-like ranks by inverse power (no search of a CDF: cheap to make under callgrind), scattered over ids.
const trace = new Uint32Array(OPS);
for (let i = 0; i < OPS; i++) trace[i] = ((Math.floor(Math.pow(N, rand())) - 1) * 2654435761) % N;
const value = { payload: "x" };
const Policy = work.includes("S3") ? "S3FIFOPolicy" : "LRUPolicy";
const awaits = work.endsWith("Async");
if (work.startsWith("hit")) {
  const hot = Array.from({ length: 1024 }, (_, i) => `key:${String(i).padStart(6, "0")}`);
  let get;
  if (api.LRUCache) {
    const c = new api.LRUCache({ max: 10_000 });
    for (const k of hot) c.set(k, k);
    get = (k) => c.get(k);
  } else {
    const s = new api.MemoryStore({ policy: new api[Policy]({ maxSize: 10_000 }) });
    for (const k of hot) s.setSync(k, k);
    get = (k) => s.getSync(k);
  }
  let sink = 0;
  for (let i = 0; i < OPS * 10; i++) sink += get(hot[i & 1023]).length;
  console.log(sink);
} else {
  let get;
  let set;
  if (api.LRUCache) {
    const c = new api.LRUCache({ max: CAP });
    [get, set] = awaits ? [async (k) => c.get(k), async (k, v) => void c.set(k, v)] : [(k) => c.get(k), (k, v) => c.set(k, v)];
  } else {
    const s = new api.MemoryStore({ policy: new api[Policy]({ maxSize: CAP }) });
    [get, set] = awaits ? [(k) => s.get(k), (k, v) => s.set(k, v)] : [(k) => s.getSync(k), (k, v) => s.setSync(k, v)];
  }
  let hits = 0;
  if (awaits) {
    for (let i = 0; i < OPS; i++) {
      const k = keys[trace[i]];
      if ((await get(k)) !== undefined) hits++;
      else await set(k, value);
    }
  } else {
    for (let i = 0; i < OPS; i++) {
      const k = keys[trace[i]];
      if (get(k) !== undefined) hits++;
      else set(k, value);
    }
  }
  console.log(`hit ratio ${(hits / OPS).toFixed(4)}`);
}
