// The targets of issues 11 and 19, as ratios measured in one run on one machine
// (each row the median of ROUNDS rounds, ours and theirs interleaved round by
// round, so a change of load hits both; the load average is printed):
//   getSync hit against lru-cache's get;
//   cache-aside over a Zipf trace (100k keys, capacity 10k): getSync, and
//     setSync on a miss, against lru-cache; hits of S3FIFOPolicy and LRUPolicy;
//     the same with awaits, and lru-cache itself behind async functions (the
//     awaits' own cost, which no store can take off);
//   async get against cache-manager (its default in-memory store);
//   import (and require) to first get in a fresh Node process, each package
//     by its name, against lru-cache;
//   memory (RSS) per entry for 1M entries, against lru-cache.
//
//   node targets.mjs [--quick] [--pkg DIR]
//
// Nothing here is a test: numbers to read (and to paste into the README).

import { spawnSync } from "node:child_process";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { loadavg, cpus, tmpdir } from "node:os";
import { mkdtempSync, mkdirSync, symlinkSync, realpathSync, rmSync } from "node:fs";

import { LRUCache } from "lru-cache";
import { createCache } from "cache-manager";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const pkgFlag = args.indexOf("--pkg");
const pkgDir = resolve(pkgFlag >= 0 ? args[pkgFlag + 1] : join(here, "..", "..", "pkg"));
const entry = pathToFileURL(join(pkgDir, "inline.mjs")).href;
const { MemoryStore, LRUPolicy, S3FIFOPolicy } = await import(entry);

const ROUNDS = quick ? 3 : 5;
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model}), load average ${load()}, median of ${ROUNDS} rounds`);

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * CPU ns per op of each of `runs` ({ name: (n) => void | Promise }), the
 * median of ROUNDS rounds, each round running every one of them once in turn.
 */
async function timeAll(runs, n) {
  const times = Object.fromEntries(Object.keys(runs).map((name) => [name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run] of Object.entries(runs)) {
      // CPU time of this process, not wall time: on a shared machine the
      // wall clock also counts the time other processes had the core.
      const t = process.cpuUsage();
      await run(n);
      const { user, system } = process.cpuUsage(t);
      times[name].push(((user + system) * 1000) / n);
    }
  }
  return Object.fromEntries(Object.entries(times).map(([name, xs]) => [name, median(xs)]));
}

const report = [];
const line = (name, ours, theirs, unit = "ns/op") => {
  const ratio = theirs / ours;
  report.push({ name, ours, theirs, ratio });
  console.log(`${name.padEnd(58)} ours ${ours.toFixed(1).padStart(8)} ${unit}, theirs ${theirs.toFixed(1).padStart(8)} ${unit}: ${ratio.toFixed(2)}x`);
};

// 1. getSync hit.
{
  const KEYS = 1024;
  const keys = Array.from({ length: KEYS }, (_, i) => `key:${String(i).padStart(6, "0")}`);
  const ours = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10_000 }) });
  const lru = new LRUCache({ max: 10_000 });
  for (const k of keys) {
    ours.setSync(k, k);
    lru.set(k, k);
  }
  let sink = 0;
  const n = quick ? 1e6 : 5e6;
  const s3 = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 10_000 }) });
  for (const k of keys) s3.setSync(k, k);
  const t = await timeAll(
    {
      lru: (n) => {
        for (let i = 0; i < n; i++) sink += ours.getSync(keys[i & 1023]).length;
      },
      s3: (n) => {
        for (let i = 0; i < n; i++) sink += s3.getSync(keys[i & 1023]).length;
      },
      theirs: (n) => {
        for (let i = 0; i < n; i++) sink += lru.get(keys[i & 1023]).length;
      },
    },
    n,
  );
  line("getSync hit (LRUPolicy) vs lru-cache get", t.lru, t.theirs);
  line("getSync hit (S3FIFOPolicy) vs lru-cache get", t.s3, t.theirs);
  if (sink === 42) console.log();
}

// 2. Cache-aside over Zipf (s = 0.99), 100k keys, capacity 10k.
{
  const N = 100_000;
  const CAP = 10_000;
  const OPS = quick ? 400_000 : 2_000_000;
  const keys = Array.from({ length: N }, (_, i) => `item:${i}`);
  // Zipf by inverse CDF over precomputed weights, a fixed seed.
  const cdf = new Float64Array(N);
  let sum = 0;
  for (let i = 0; i < N; i++) cdf[i] = sum += 1 / Math.pow(i + 1, 0.99);
  let seed = 42;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const trace = new Uint32Array(OPS);
  for (let i = 0; i < OPS; i++) {
    const u = rand() * sum;
    let lo = 0;
    let hi = N - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    // Scatter ranks over ids so popularity is not ordered by key.
    trace[i] = (lo * 2654435761) % N;
  }
  const value = { payload: "x" };
  // A fresh copy of the loop per cache (new Function): a loop shared by
  // all of them would make its get/set call sites polymorphic, slowing
  // each by what the others are.
  const loop = (awaits) =>
    new Function(
      "keys",
      "trace",
      "value",
      `return ${awaits ? "async " : ""}(get, set, n) => {
        let hits = 0;
        for (let i = 0; i < n; i++) {
          const k = keys[trace[i]];
          if ((${awaits ? "await " : ""}get(k)) !== undefined) hits++;
          else ${awaits ? "await " : ""}set(k, value);
        }
        return hits;
      };`,
    )(keys, trace, value);
  const aside = (get, set) => {
    const run = loop(false);
    return (n) => run(get, set, n);
  };
  const asideAsync = (get, set) => {
    const run = loop(true);
    return (n) => run(get, set, n);
  };
  // Each round starts from an empty cache; the hits of the last round are reported.
  const hits = {};
  const fresh = (name, make, async) => async (n) => {
    const { get, set } = make();
    hits[name] = await (async ? asideAsync : aside)(get, set)(n);
  };
  const store = (Policy) => () => {
    const s = new MemoryStore({ policy: new Policy({ maxSize: CAP }) });
    return { get: (k) => s.getSync(k), set: (k, v) => s.setSync(k, v) };
  };
  const storeAsync = (Policy) => () => {
    const s = new MemoryStore({ policy: new Policy({ maxSize: CAP }) });
    return { get: (k) => s.get(k), set: (k, v) => s.set(k, v) };
  };
  const t = await timeAll(
    {
      lru: fresh("lru", store(LRUPolicy)),
      s3: fresh("s3", store(S3FIFOPolicy)),
      lruAsync: fresh("lruAsync", storeAsync(LRUPolicy), true),
      s3Async: fresh("s3Async", storeAsync(S3FIFOPolicy), true),
      theirs: fresh("theirs", () => {
        const c = new LRUCache({ max: CAP });
        return { get: (k) => c.get(k), set: (k, v) => c.set(k, v) };
      }),
      // lru-cache behind async functions: what the awaits alone cost any
      // promise API over a synchronous peer (the await rows' floor).
      theirsAsync: fresh(
        "theirsAsync",
        () => {
          const c = new LRUCache({ max: CAP });
          return { get: async (k) => c.get(k), set: async (k, v) => void c.set(k, v) };
        },
        true,
      ),
    },
    OPS,
  );
  line("cache-aside Zipf (LRUPolicy) vs lru-cache", t.lru, t.theirs);
  line("cache-aside Zipf (S3FIFOPolicy) vs lru-cache", t.s3, t.theirs);
  line("cache-aside Zipf, await get/set (LRUPolicy) vs lru-cache", t.lruAsync, t.theirs);
  line("cache-aside Zipf, await get/set (S3FIFOPolicy) vs lru-cache", t.s3Async, t.theirs);
  line("cache-aside Zipf, lru-cache behind async get/set vs lru-cache", t.theirsAsync, t.theirs);
  const ours = { hits: hits.lru };
  const s3 = { hits: hits.s3 };
  const lru = { hits: hits.theirs };
  console.log(
    `  hit ratio: LRUPolicy ${(ours.hits / OPS).toFixed(4)}, S3FIFOPolicy ${(s3.hits / OPS).toFixed(4)}, lru-cache ${(lru.hits / OPS).toFixed(4)}`,
  );
  report.push({ name: "zipf hit ratio", lru: ours.hits / OPS, s3fifo: s3.hits / OPS, lruCache: lru.hits / OPS });
}

// 3. Async get hit against cache-manager.
{
  const keys = Array.from({ length: 1024 }, (_, i) => `key:${i}`);
  const ours = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10_000 }) });
  const cm = createCache();
  for (const k of keys) {
    await ours.set(k, k);
    await cm.set(k, k);
  }
  const n = quick ? 2e5 : 1e6;
  const t = await timeAll(
    {
      ours: async (n) => {
        for (let i = 0; i < n; i++) await ours.get(keys[i & 1023]);
      },
      theirs: async (n) => {
        for (let i = 0; i < n; i++) await cm.get(keys[i & 1023]);
      },
    },
    n,
  );
  const [a, b] = [t.ours, t.theirs];
  line("async get hit vs cache-manager get", a, b);
}

// 4. Import to first get, fresh processes: each package imported by its name
// from a project that has both in node_modules, as an application does, so
// Node picks the entry its `exports` give it (ours: node.mjs for `import`,
// inline.cjs for `require`; lru-cache: its ES module build for `import`, its
// CommonJS build for `require`). Until session 9 this row imported our
// inline.mjs and lru-cache's CommonJS file by path: lru-cache then paid Node's
// ES-module-to-CommonJS translation (2-4 ms) that its own `import` never does.
// Ours and theirs alternate process by process (a change of load hits both);
// the median of IMPORTS processes each.
{
  const IMPORTS = quick ? 9 : 21;
  const project = mkdtempSync(join(tmpdir(), "pepperpy-import-"));
  mkdirSync(join(project, "node_modules"));
  symlinkSync(pkgDir, join(project, "node_modules", "pepperpy-caching"));
  symlinkSync(realpathSync(join(here, "node_modules", "lru-cache")), join(project, "node_modules", "lru-cache"));
  const cold = (codes) => {
    const ms = codes.map(() => []);
    for (let i = 0; i < IMPORTS; i++) {
      codes.forEach((code, c) => {
        const out = spawnSync(process.execPath, ["--input-type=module", "-e", code], { cwd: project, encoding: "utf8" });
        if (out.status !== 0) throw new Error(`import bench failed: ${out.stderr}`);
        ms[c].push(Number(out.stdout.trim()));
      });
    }
    return ms.map(median);
  };
  const timed = (body) => `const t = performance.now(); ${body} console.log(performance.now() - t);`;
  const ourGet = ` const s = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) }); s.getSync("k");`;
  const theirGet = ` const c = new LRUCache({ max: 10 }); c.get("k");`;
  const require = `const { createRequire } = await import("node:module"); const require = createRequire(process.cwd() + "/");`;
  try {
    const [ours, theirs, oursCjs, theirsCjs] = cold([
      timed(`const { MemoryStore, LRUPolicy } = await import("pepperpy-caching");${ourGet}`),
      timed(`const { LRUCache } = await import("lru-cache");${theirGet}`),
      `${require} ${timed(`const { MemoryStore, LRUPolicy } = require("pepperpy-caching");${ourGet}`)}`,
      `${require} ${timed(`const { LRUCache } = require("lru-cache");${theirGet}`)}`,
    ]);
    line(`import to first get (ms, median of ${IMPORTS} processes)`, ours, theirs, "ms");
    line(`require to first get (ms, median of ${IMPORTS} processes)`, oursCjs, theirsCjs, "ms");
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

// 5. Memory per entry: RSS growth for 1M entries, in a fresh process each.
{
  const N = quick ? 200_000 : 1_000_000;
  const require = createRequire(import.meta.url);
  const lruEntry = pathToFileURL(require.resolve("lru-cache")).href;
  const measureRss = (setup) => {
    const code =
      `${setup}; globalThis.gc(); const before = process.memoryUsage().rss;` +
      ` for (let i = 0; i < ${N}; i++) put("key:" + i, i);` +
      ` globalThis.gc(); console.log((process.memoryUsage().rss - before) / ${N});`;
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const out = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", code], { encoding: "utf8" });
      runs.push(Number(out.stdout.trim()));
    }
    return median(runs);
  };
  const ours = measureRss(
    `const { MemoryStore, LRUPolicy } = await import(${JSON.stringify(entry)});` +
      ` const s = new MemoryStore({ policy: new LRUPolicy({ maxSize: ${N} }) }); const put = (k, v) => s.setSync(k, v)`,
  );
  const theirs = measureRss(
    `const { LRUCache } = await import(${JSON.stringify(lruEntry)});` +
      ` const c = new LRUCache({ max: ${N} }); const put = (k, v) => c.set(k, v)`,
  );
  line(`RSS per entry, ${N} entries (bytes)`, ours, theirs, "B");
}

console.log(`load average at the end: ${load()}`);
console.log(JSON.stringify({ node: process.version, quick, load: loadavg(), report }));
