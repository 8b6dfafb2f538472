// A/B of the JS RedisStore's hot path: two builds of the package (`--base
// DIR`, `--pkg DIR`, default ../../pkg) in one process, on the same clients
// and redis-server, rounds interleaved with the raw client's: CPU per op
// (process.cpuUsage) and ops/s, median of the rounds. The figure to read on a
// shared machine is the CPU per op of each build over its raw client's.
//
//   node redis-ab.mjs --base DIR [--pkg DIR] [--rounds 9] [--ops 20000] [--c 64] [--only get|set]

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
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
const OPS = Number(flag("--ops", 20_000));
const CONCURRENCY = flag("--c", "64").split(",").map(Number);
const OPS_KINDS = flag("--only") ? [flag("--only")] : ["get", "set"];
const builds = [
  ["base", resolve(flag("--base"))],
  ["new", resolve(flag("--pkg", join(here, "..", "..", "pkg")))],
];

async function storeClass(dir) {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  return (await import(pathToFileURL(join(dir, entryOf(pkg, "./redis"))).href)).RedisStore;
}

const { url, server } = await redisServer(flag("--url"));
const { nodeRedis, io, rows: raw } = await rawClients(url);
const rows = raw.map((r) => ({ ...r, name: `raw ${r.base}` }));
for (const [tag, dir] of builds) {
  const RedisStore = await storeClass(dir);
  for (const [base, client] of [["node-redis", nodeRedis], ["ioredis", io]]) {
    const store = new RedisStore({ client, prefix: `${tag}-${base}:` });
    rows.push({ name: `${tag} ${base}`, vs: `raw ${base}`, get: (i) => store.get(keys[i % KEYS]), set: (i) => store.set(keys[i % KEYS], value(i)) });
  }
}

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
for (const row of rows) for (const c of CONCURRENCY) for (const op of OPS_KINDS) await run(row[op], c, OPS / 4);

const before = loadavg();
console.log(`redis-ab: ${ROUNDS} rounds (median), ${OPS} ops a round; base ${builds[0][1]}, new ${builds[1][1]}`);
for (const c of CONCURRENCY) {
  const n = c === 1 ? Math.max(1000, Math.floor(OPS / 8)) : OPS;
  for (const op of OPS_KINDS) {
    const samples = new Map(rows.map((r) => [r.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < rows.length; k++) {
        const row = rows[(k + round) % rows.length];
        samples.get(row.name).push(await run(row[op], c, n));
      }
    }
    const rate = (name) => median(samples.get(name).map((s) => s.rate));
    const cpu = (name) => median(samples.get(name).map((s) => s.cpu));
    console.log(`\n${op}, concurrency ${c}`);
    for (const row of rows) {
      const ratio = row.vs ? `  ${(rate(row.name) / rate(row.vs)).toFixed(2)}x ops/s, ${(cpu(row.name) / cpu(row.vs)).toFixed(2)}x CPU/op, +${((cpu(row.name) - cpu(row.vs)) * 1000).toFixed(0)} ns CPU/op` : "";
      console.log(`  ${row.name.padEnd(16)} ${Math.round(rate(row.name)).toLocaleString("en-US").padStart(9)} ops/s ${cpu(row.name).toFixed(2).padStart(6)} µs CPU/op${ratio}`);
    }
  }
}
console.log(`\nload average before ${before.map((x) => x.toFixed(2)).join(" ")}, after ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
await nodeRedis.quit().catch(() => {});
io.disconnect();
await server?.stop();
process.exit(0);
