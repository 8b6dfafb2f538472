// The JS RedisStore's hot path against its raw client, finer than
// redis.mjs (issue 24 item 4): only the rows the 0.9x target compares
// (raw node-redis v5 / ioredis GET+JSON.parse, SET+JSON.stringify, and the
// store on each), more and shorter rounds interleaved, and besides ops/s the
// CPU time this process spent per operation (process.cpuUsage: the client
// side's cost, the figure that decides the ratio once the client's core is
// the bottleneck, and much steadier than ops/s on a shared machine).
//
//   node redis-hot.mjs [--rounds 9] [--ops 20000] [--only get|set] [--c 1,64] [--lru] [--unbatched] [--pkg DIR] [--base DIR] [--url URL]
//
// Without --url it starts its own redis-server (tests/js/redis-support.mjs).
// --base DIR: an A/B, the store of another build of the package (DIR: its
// pkg/, copied before the change) in the same process and rounds, rows
// "base store ...", each against its raw client as the others.

import { readFileSync } from "node:fs";
import { loadavg, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { KEYS, entryOf, keys, rawClients, redisServer, value } from "./redis-setup.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const ROUNDS = Number(flag("--rounds", 9));
const OPS64 = Number(flag("--ops", 20_000));
const OPS = { 1: Math.max(1000, Math.floor(OPS64 / 8)), 64: OPS64 };
const CONCURRENCY = flag("--c", "1,64").split(",").map(Number);
const OPS_KINDS = flag("--only") ? [flag("--only")] : ["get", "set"];
const pkgDir = resolve(flag("--pkg", join(here, "..", "..", "pkg")));

/** The RedisStore and LRUPolicy of the package built in `dir`. */
async function classesOf(dir) {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const { RedisStore } = await import(pathToFileURL(join(dir, entryOf(pkg, "./redis"))).href);
  const { LRUPolicy } = await import(pathToFileURL(join(dir, entryOf(pkg, ".") ?? "index.mjs")).href);
  return { RedisStore, LRUPolicy };
}
const { RedisStore, LRUPolicy } = await classesOf(pkgDir);
const baseDir = flag("--base");

const { url, server } = await redisServer(flag("--url"));
const { nodeRedis, io, rows: rawRows } = await rawClients(url);
const rows = rawRows.map((row) => ({ ...row, name: row.base === "node-redis" ? "raw node-redis" : "raw ioredis" }));
const stores = [
  ["node-redis", "store node-redis", new RedisStore({ client: nodeRedis, prefix: "ps:" })],
  ["ioredis", "store ioredis", new RedisStore({ client: io, prefix: "pi:" })],
];
// --unbatched: the store with batch: false too (one GET or SET per call: its own cost per call).
if (argv.includes("--unbatched")) {
  stores.push(["node-redis", "store node-redis unbatched", new RedisStore({ client: nodeRedis, prefix: "pu:", batch: false })]);
  stores.push(["ioredis", "store ioredis unbatched", new RedisStore({ client: io, prefix: "pv:", batch: false })]);
}
if (baseDir !== undefined) {
  const { RedisStore: BaseStore } = await classesOf(resolve(baseDir));
  stores.push(["node-redis", "base store node-redis", new BaseStore({ client: nodeRedis, prefix: "bs:" })]);
  stores.push(["ioredis", "base store ioredis", new BaseStore({ client: io, prefix: "bi:" })]);
}
if (argv.includes("--lru")) stores.push(["node-redis", "store node-redis LRU", new RedisStore({ client: nodeRedis, prefix: "pl:", policy: new LRUPolicy({ maxSize: 10_000 }) })]);
for (const [base, name, store] of stores) rows.push({ name, vs: base, get: (i) => store.get(keys[i % KEYS]), set: (i) => store.set(keys[i % KEYS], value(i)) });

/** { ops/s, CPU µs per op } of `op` run `total` times by `concurrency` callers at once. */
async function run(op, concurrency, total) {
  const per = Math.ceil(total / concurrency);
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let j = 0; j < per; j++) await op(w * per + j);
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  const n = concurrency * per;
  return { rate: n / secs, cpu: (used.user + used.system) / n };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const row of rows) for (let i = 0; i < KEYS; i++) await row.set(i);
for (const row of rows) for (const c of CONCURRENCY) for (const op of OPS_KINDS) await run(row[op], c, OPS[c] / 4);

const before = loadavg();
console.log(`redis-hot: ${cpus().length} cores, Node ${process.version}, ${ROUNDS} rounds (median), ${OPS64} ops at c=64`);
for (const c of CONCURRENCY) {
  for (const op of OPS_KINDS) {
    const samples = new Map(rows.map((r) => [r.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < rows.length; k++) {
        const row = rows[(k + round) % rows.length];
        samples.get(row.name).push(await run(row[op], c, OPS[c]));
      }
    }
    const rate = (name) => median(samples.get(name).map((s) => s.rate));
    const cpu = (name) => median(samples.get(name).map((s) => s.cpu));
    console.log(`\n${op}, concurrency ${c}`);
    for (const row of rows) {
      const vs = row.vs ? rows.find((r) => r.base === row.vs).name : undefined;
      const ratio = vs ? `  ${(rate(row.name) / rate(vs)).toFixed(2)}x ops/s, ${(cpu(row.name) / cpu(vs)).toFixed(2)}x CPU/op` : "";
      console.log(`  ${row.name.padEnd(28)} ${Math.round(rate(row.name)).toLocaleString("en-US").padStart(9)} ops/s ${cpu(row.name).toFixed(2).padStart(6)} µs CPU/op${ratio}`);
    }
  }
}
console.log(`\nload average before ${before.map((x) => x.toFixed(2)).join(" ")}, after ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);

await nodeRedis.quit().catch(() => {});
io.disconnect();
await server?.stop();
process.exit(0);
