// The JS RedisStore's hot path against its raw client, finer than
// redis.mjs (issue 24 item 4): only the rows the 0.9x target compares
// (raw node-redis v5 / ioredis GET+JSON.parse, SET+JSON.stringify, and the
// store on each), more and shorter rounds interleaved, and besides ops/s the
// CPU time this process spent per operation (process.cpuUsage: the client
// side's cost, the figure that decides the ratio once the client's core is
// the bottleneck, and much steadier than ops/s on a shared machine).
//
//   node redis-hot.mjs [--rounds 9] [--ops 20000] [--only get|set] [--c 1,64] [--lru] [--pkg DIR] [--url URL]
//
// Without --url it starts its own redis-server (tests/js/redis-support.mjs).

import { readFileSync } from "node:fs";
import { loadavg, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { createClient } from "redis";
import IORedis from "ioredis";

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
const KEYS = 1000;
const pkgDir = resolve(flag("--pkg", join(here, "..", "..", "pkg")));

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const entry = (sub) => {
  let t = pkg.exports?.[sub];
  for (let d = 0; t && typeof t === "object" && d < 8; d++) t = t.node ?? t.import ?? t.default;
  return t;
};
const { RedisStore } = await import(pathToFileURL(join(pkgDir, entry("./redis"))).href);
const { LRUPolicy } = await import(pathToFileURL(join(pkgDir, entry(".") ?? "index.mjs")).href);

let server;
let url = flag("--url");
if (url === undefined) {
  const { startServer } = await import("../../tests/js/redis-support.mjs");
  server = await startServer();
  url = server.url;
}

const keys = Array.from({ length: KEYS }, (_, i) => `k:${String(i).padStart(6, "0")}`);
const value = (i) => ({ id: i, name: `user ${i}`, tags: ["a", "b"], score: i * 1.5 });

const nodeRedis = createClient({ url });
nodeRedis.on("error", () => {});
await nodeRedis.connect();
const io = new IORedis(url);
io.on("error", () => {});
await new Promise((r) => (io.status === "ready" ? r() : io.once("ready", r)));

const rows = [
  {
    name: "raw node-redis",
    base: "node-redis",
    get: (i) => nodeRedis.get(`raw:${keys[i % KEYS]}`).then((s) => (s === null ? undefined : JSON.parse(s))),
    set: (i) => nodeRedis.set(`raw:${keys[i % KEYS]}`, JSON.stringify(value(i))),
  },
  {
    name: "raw ioredis",
    base: "ioredis",
    get: (i) => io.get(`rio:${keys[i % KEYS]}`).then((s) => (s === null ? undefined : JSON.parse(s))),
    set: (i) => io.set(`rio:${keys[i % KEYS]}`, JSON.stringify(value(i))),
  },
];
const stores = [
  ["node-redis", "store node-redis", new RedisStore({ client: nodeRedis, prefix: "ps:" })],
  ["ioredis", "store ioredis", new RedisStore({ client: io, prefix: "pi:" })],
];
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
      console.log(`  ${row.name.padEnd(22)} ${Math.round(rate(row.name)).toLocaleString("en-US").padStart(9)} ops/s ${cpu(row.name).toFixed(2).padStart(6)} µs CPU/op${ratio}`);
    }
  }
}
console.log(`\nload average before ${before.map((x) => x.toFixed(2)).join(" ")}, after ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);

await nodeRedis.quit().catch(() => {});
io.disconnect();
await server?.stop();
process.exit(0);
