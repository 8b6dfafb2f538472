// JS Redis benchmark (issue 24): the package's RedisStore get/set against the
// raw client's GET/SET on the same server in the same run (the ratio is the
// figure: the issue asks for at least 0.9x), and against keyv with
// @keyv/redis and cache-manager (on keyv) on that server. At concurrency 1
// (one call at a time: latency-bound) and 64 (64 callers at once: the
// client pipelines).
//
//   node redis.mjs [--quick] [--url redis://127.0.0.1:6379] [--pkg DIR] [--out results.json]
//
// Without --url it starts its own redis-server on a free port (as the tests
// do). DIR is the built npm package (default ../../pkg, scripts/build-js.sh);
// if it has no pepperpy-caching/redis entry yet, the other rows still run.
// Each row is the median of ROUNDS rounds; the rows of a round run in turn
// (a different order each round), so a slow spell of the machine hits all.
// "raw" is what a user caching an object with the bare client writes:
// JSON.stringify + SET, GET + JSON.parse, on keys of the same length.

import { readFileSync, writeFileSync } from "node:fs";
import { loadavg, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { createKeyv } from "@keyv/redis";
import { createCache } from "cache-manager";

import { KEYS, entryOf, keys, rawClients, redisServer, value } from "./redis-setup.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes("--quick");
const pkgDir = resolve(flag("--pkg") ?? join(here, "..", "..", "pkg"));
const ROUNDS = quick ? 1 : 5;
const OPS = { 1: quick ? 1000 : 5000, 64: quick ? 4000 : 40_000 };

async function loadStore() {
  try {
    const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    const entry = entryOf(pkg, "./redis");
    if (entry === undefined) return { missing: `${pkgDir}/package.json has no "./redis" export` };
    return { ...(await import(pathToFileURL(join(pkgDir, entry)).href)), ...(await import(pathToFileURL(join(pkgDir, entryOf(pkg, ".") ?? "index.mjs")).href)) };
  } catch (e) {
    return { missing: e.message.split("\n")[0] };
  }
}

const { url, server } = await redisServer(flag("--url"));
const { nodeRedis, io, rows: rawRows } = await rawClients(url);
const keyv = createKeyv(url, { namespace: "kv" });
const cacheManager = createCache({ stores: [createKeyv(url, { namespace: "cm" })] });

// Each row: get(i) and set(i) of key i % KEYS, and which raw row it is compared with.
const rows = [
  ...rawRows,
  { name: "keyv + @keyv/redis", get: (i) => keyv.get(keys[i % KEYS]), set: (i) => keyv.set(keys[i % KEYS], value(i)) },
  { name: "cache-manager (keyv redis)", get: (i) => cacheManager.get(keys[i % KEYS]), set: (i) => cacheManager.set(keys[i % KEYS], value(i)) },
];

const pepper = await loadStore();
if (pepper.missing === undefined) {
  const { RedisStore, LRUPolicy } = pepper;
  const stores = [
    ["node-redis", "RedisStore on node-redis v5", new RedisStore({ client: nodeRedis, prefix: "ps:" })],
    ["ioredis", "RedisStore on ioredis", new RedisStore({ client: io, prefix: "pi:" })],
    // Without the batching of one tick's gets and sets (MGET, MSET): the store's own cost per call.
    ["node-redis", "RedisStore on node-redis v5, batch: false", new RedisStore({ client: nodeRedis, prefix: "pu:", batch: false })],
    ["ioredis", "RedisStore on ioredis, batch: false", new RedisStore({ client: io, prefix: "pv:", batch: false })],
    ["node-redis", "RedisStore on node-redis v5, LRU 10k", new RedisStore({ client: nodeRedis, prefix: "pl:", policy: new LRUPolicy({ maxSize: 10_000 }) })],
  ];
  for (const [base, name, store] of stores) rows.push({ name, vs: base, get: (i) => store.get(keys[i % KEYS]), set: (i) => store.set(keys[i % KEYS], value(i)) });
} else {
  console.log(`(no RedisStore rows: ${pepper.missing})`);
}

/** Ops per second of `op` run `total` times by `concurrency` callers at once. */
async function run(op, concurrency, total) {
  const per = Math.ceil(total / concurrency);
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let j = 0; j < per; j++) await op(w * per + j);
    }),
  );
  return (concurrency * per) / (Number(process.hrtime.bigint() - started) / 1e9);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Every row's keys exist before the get rows run (gets are hits).
for (const row of rows) for (let i = 0; i < KEYS; i++) await row.set(i);
// Warm-up: each row, each op, both concurrencies.
for (const row of rows) for (const c of [1, 64]) for (const op of ["set", "get"]) await run(row[op], c, OPS[c] / 5);

const load = { before: loadavg() };
const results = {};
for (const c of [1, 64]) {
  for (const op of ["get", "set"]) {
    const samples = new Map(rows.map((r) => [r.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = rows.map((_, i) => rows[(i + round) % rows.length]);
      for (const row of order) samples.get(row.name).push(await run(row[op], c, OPS[c]));
    }
    for (const row of rows) results[`${op} c=${c} ${row.name}`] = { op, concurrency: c, name: row.name, base: row.base, vs: row.vs, opsPerSec: median(samples.get(row.name)) };
  }
}
load.after = loadavg();

const fmt = (n) => Math.round(n).toLocaleString("en-US").padStart(9);
console.log(`JS Redis bench: ${cpus().length} cores, Node ${process.version}, ${ROUNDS} rounds (median), server ${server ? "own" : url}`);
console.log(`load average before ${load.before.map((x) => x.toFixed(2)).join(" ")}, after ${load.after.map((x) => x.toFixed(2)).join(" ")}`);
for (const c of [1, 64]) {
  for (const op of ["get", "set"]) {
    console.log(`\n${op}, concurrency ${c}`);
    const here = Object.values(results).filter((r) => r.op === op && r.concurrency === c);
    const raw = Object.fromEntries(here.filter((r) => r.base).map((r) => [r.base, r.opsPerSec]));
    const rawNode = raw["node-redis"];
    for (const r of here) {
      const vsRaw = r.vs ? `  ${(r.opsPerSec / raw[r.vs]).toFixed(2)}x its raw client` : "";
      const vsNode = r.base === "node-redis" ? "" : `  ${(r.opsPerSec / rawNode).toFixed(2)}x raw node-redis`;
      r.ratioToRaw = r.vs ? r.opsPerSec / raw[r.vs] : undefined;
      console.log(`  ${r.name.padEnd(42)} ${fmt(r.opsPerSec)} ops/s${vsNode}${vsRaw}`);
    }
  }
}

const out = flag("--out");
if (out) writeFileSync(out, `${JSON.stringify({ load, rounds: ROUNDS, results }, null, 2)}\n`);

await nodeRedis.quit().catch(() => {});
io.disconnect();
await keyv.disconnect?.().catch?.(() => {});
await cacheManager.disconnect?.().catch?.(() => {});
await server?.stop();
process.exit(0);
