// JS benchmark: the npm package's MemoryStore (async API and its sync fast
// path) against lru-cache, quick-lru, keyv (in memory) and cache-manager (its
// default in-memory store), measured with mitata in the same process.
//
//   node bench.mjs [--quick] [--out results.json] [--pkg DIR]
//
// DIR is the built npm package (default: ../../pkg, made by scripts/build-js.sh).

import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { measure, do_not_optimize } from "mitata";
import { LRUCache } from "lru-cache";
import QuickLRU from "quick-lru";
import Keyv from "keyv";
import { createCache } from "cache-manager";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const out = flag("--out");
const pkgDir = resolve(flag("--pkg") ?? join(here, "..", "..", "pkg"));
const nodeEntry = pathToFileURL(join(pkgDir, "inline.mjs")).href; // what Node loads by default
const { MemoryStore, LRUPolicy } = await import(nodeEntry);

const CAPACITY = 10_000;
const KEYS = 1024; // a power of two: `i & (KEYS - 1)` rotates through them
const REPEATS = quick ? 1 : 5;
const MEASURE = quick
  ? { min_cpu_time: 5e6, warmup_samples: 2, max_samples: 50 }
  : { min_cpu_time: 300e6, warmup_samples: 64 };

const keys = Array.from({ length: KEYS }, (_, i) => `key:${String(i).padStart(6, "0")}`);
const missing = Array.from({ length: KEYS }, (_, i) => `absent:${i}`);
const values = {
  "small string": (i) => `value-${i}`,
  "small object": (i) => ({ id: i, name: `user ${i}`, tags: ["a", "b"] }),
};

// Each contender: how to make it and its get/set, sync or async.
const contenders = {
  "pepperpy MemoryStore (async)": {
    make: () => new MemoryStore({ policy: new LRUPolicy({ maxSize: CAPACITY }) }),
    get: (c, k) => c.get(k),
    set: (c, k, v) => c.set(k, v),
    async: true,
  },
  "pepperpy MemoryStore (sync: getSync/setSync)": {
    make: () => new MemoryStore({ policy: new LRUPolicy({ maxSize: CAPACITY }) }),
    get: (c, k) => c.getSync(k),
    set: (c, k, v) => c.setSync(k, v),
    async: false,
  },
  "lru-cache": {
    make: () => new LRUCache({ max: CAPACITY }),
    get: (c, k) => c.get(k),
    set: (c, k, v) => c.set(k, v),
    async: false,
  },
  "quick-lru": {
    make: () => new QuickLRU({ maxSize: CAPACITY }),
    get: (c, k) => c.get(k),
    set: (c, k, v) => c.set(k, v),
    async: false,
  },
  "keyv (in memory)": {
    make: () => new Keyv(),
    get: (c, k) => c.get(k),
    set: (c, k, v) => c.set(k, v),
    async: true,
  },
  "cache-manager (memory)": {
    make: () => createCache(),
    get: (c, k) => c.get(k),
    set: (c, k, v) => c.set(k, v),
    async: true,
  },
};
const OURS = "pepperpy MemoryStore (async)";

async function fill(c, impl, makeValue) {
  for (let i = 0; i < KEYS; i++) {
    const r = impl.set(c, keys[i], makeValue(i));
    if (impl.async) await r;
  }
}

function body(c, impl, op, makeValue) {
  let i = 0;
  const mask = KEYS - 1;
  if (op === "get hit") {
    return impl.async
      ? async () => do_not_optimize(await impl.get(c, keys[i++ & mask]))
      : () => do_not_optimize(impl.get(c, keys[i++ & mask]));
  }
  if (op === "get miss") {
    return impl.async
      ? async () => do_not_optimize(await impl.get(c, missing[i++ & mask]))
      : () => do_not_optimize(impl.get(c, missing[i++ & mask]));
  }
  const pool = Array.from({ length: KEYS }, (_, j) => makeValue(j));
  return impl.async
    ? async () => {
        const j = i++ & mask;
        await impl.set(c, keys[j], pool[j]);
      }
    : () => {
        const j = i++ & mask;
        impl.set(c, keys[j], pool[j]);
      };
}

const rows = [];
const workloads = [];
for (const [valueName, makeValue] of Object.entries(values)) {
  for (const op of ["get hit", "get miss", "set"]) {
    if (valueName !== "small string" && op === "get miss") continue;
    workloads.push([`${op}, ${valueName}`, op, makeValue]);
  }
}
for (const [workload, op, makeValue] of workloads) {
  console.log(`\n${workload}`);
  const results = [];
  for (const [name, impl] of Object.entries(contenders)) {
    const rates = [];
    for (let r = 0; r < REPEATS; r++) {
      const c = impl.make();
      await fill(c, impl, makeValue);
      const stats = await measure(body(c, impl, op, makeValue), MEASURE);
      rates.push(1e9 / stats.avg);
    }
    rates.sort((a, b) => a - b);
    results.push({ workload, cache: name, ops_per_sec: rates[rates.length >> 1], min: rates[0], max: rates[rates.length - 1] });
  }
  const ours = results.find((r) => r.cache === OURS).ops_per_sec;
  for (const r of results) {
    const ns = 1e9 / r.ops_per_sec;
    console.log(`  ${r.cache.padEnd(46)} ${ns.toFixed(1).padStart(8)} ns/op  ours(async)/this ${(ours / r.ops_per_sec).toFixed(2)}x`);
  }
  rows.push(...results);
}

// Size of the .wasm the package ships, and the cost of a cold start.
function wasmFiles(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...wasmFiles(path));
    else if (entry.endsWith(".wasm")) found.push(path);
  }
  return found;
}
const sizes = wasmFiles(pkgDir).map((path) => {
  const bytes = readFileSync(path);
  return { file: path.slice(pkgDir.length + 1), raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
});
const coldStarts = [];
for (let r = 0; r < (quick ? 1 : 10); r++) {
  const script = `const t0 = performance.now();
const m = await import(${JSON.stringify(nodeEntry)});
new m.MemoryStore({ policy: new m.LRUPolicy({ maxSize: 10 }) });
console.log(performance.now() - t0);`;
  const res = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(res.stderr);
  coldStarts.push(Number(res.stdout.trim()));
}
coldStarts.sort((a, b) => a - b);
const coldMs = coldStarts[coldStarts.length >> 1];
console.log("\nwasm:", sizes.map((s) => `${s.file} ${s.raw} B raw, ${s.gzip} B gzipped`).join("; "));
console.log(`import + instantiate + first store (Node, cold process): median ${coldMs.toFixed(2)} ms`);

if (out) {
  const extra = [
    "",
    "**Package size and start-up**",
    "",
    "| file | raw | gzipped (level 9) |",
    "| --- | --- | --- |",
    ...sizes.map((s) => `| ${s.file} | ${(s.raw / 1024).toFixed(1)} KiB | ${(s.gzip / 1024).toFixed(1)} KiB |`),
    "",
    `Importing the package, instantiating the module and making a first store in a fresh Node process: median ${coldMs.toFixed(2)} ms over ${coldStarts.length} processes (min ${coldStarts[0].toFixed(2)}, max ${coldStarts[coldStarts.length - 1].toFixed(2)}).`,
  ];
  const report = {
    suite: "js",
    ours: OURS,
    // Like with like: the async API against async caches, the sync one against sync caches.
    comparisons: [
      { ours: OURS, peers: ["keyv (in memory)", "cache-manager (memory)"] },
      { ours: "pepperpy MemoryStore (sync: getSync/setSync)", peers: ["lru-cache", "quick-lru"] },
    ],
    description:
      `Node ${process.version}, mitata \`measure\` per case (warm-up, then samples for at least ${MEASURE.min_cpu_time / 1e6} ms of CPU); ` +
      `median of ${REPEATS} measurements, each on a fresh cache of capacity ${CAPACITY.toLocaleString()} filled with ${KEYS} keys that the loop rotates through. ` +
      "Async contenders are awaited on every call. keyv and cache-manager use their default in-memory stores (a Map, no eviction).",
    throughput: rows,
    wasm: sizes,
    cold_start_ms: coldStarts,
    extra_markdown: extra,
  };
  writeFileSync(out, JSON.stringify(report, null, 2));
  console.log(`wrote ${out}`);
}
