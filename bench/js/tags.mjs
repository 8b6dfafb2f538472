// What tags cost the JS store: setSync with 0, 1 and 5 tags (a store at
// capacity: each set of a new key evicts one, whose tags leave the index),
// getSync hits on tagged and untagged entries, and plain getSync/setSync of
// this package against another build (--base DIR, e.g. the package before
// tags) in the same process. Rounds interleaved; median ns per operation.
//
//   node tags.mjs [--quick] [--base DIR]

import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const load = (dir) => import(pathToFileURL(join(resolve(dir), "inline.mjs")).href);
const ours = await load(join(here, "..", "..", "pkg"));
const base = flag("--base") ? await load(flag("--base")) : undefined;

const CAPACITY = 10_000;
const KEYS = 100_000;
const ROUNDS = quick ? 3 : 15;
const OPS = quick ? 20_000 : 400_000;
const keys = Array.from({ length: KEYS }, (_, i) => `key:${String(i).padStart(6, "0")}`);
const TAGS = [undefined, ["user:1"], ["g0", "g1", "g2", "g3", "g4"]];
const store = (pkg) => new pkg.MemoryStore({ policy: new pkg.LRUPolicy({ maxSize: CAPACITY }) });
let sink = 0;

function timeSets(pkg, tags, plain) {
  const s = store(pkg);
  const options = plain ?? (tags === undefined ? undefined : { tags });
  for (let i = 0; i < CAPACITY; i++) s.setSync(keys[i], i, options);
  const t = process.hrtime.bigint();
  for (let i = 0; i < OPS; i++) s.setSync(keys[(CAPACITY + i) % KEYS], i, options);
  return Number(process.hrtime.bigint() - t) / OPS;
}

function timeGets(pkg, tags) {
  const s = store(pkg);
  const options = tags === undefined ? undefined : { tags };
  for (let i = 0; i < 1024; i++) s.setSync(keys[i], i, options);
  const t = process.hrtime.bigint();
  for (let i = 0; i < OPS; i++) sink += s.getSync(keys[i & 1023]);
  return Number(process.hrtime.bigint() - t) / OPS;
}

const cases = [
  ["setSync, 0 tags", () => timeSets(ours, TAGS[0])],
  ["setSync, 1 tag", () => timeSets(ours, TAGS[1])],
  ["setSync, 5 tags", () => timeSets(ours, TAGS[2])],
  ["setSync, { metadata } (no tags)", () => timeSets(ours, undefined, { metadata: { a: 1 } })],
  ["getSync hit, untagged", () => timeGets(ours, TAGS[0])],
  ["getSync hit, 5 tags", () => timeGets(ours, TAGS[2])],
];
if (base !== undefined) {
  cases.push(["base: setSync, no tags option", () => timeSets(base, undefined)]);
  cases.push(["base: getSync hit", () => timeGets(base, undefined)]);
}
const times = cases.map(() => []);
for (let r = 0; r < ROUNDS; r++) cases.forEach(([, run], i) => times[i].push(run()));
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const m = times.map(median);
console.log(`node ${process.version}, LRUPolicy(${CAPACITY}), ${OPS} ops a case, median of ${ROUNDS} interleaved rounds`);
cases.forEach(([name], i) => {
  const against = name.includes("get") ? m[4] : m[0];
  console.log(`  ${name.padEnd(32)} ${m[i].toFixed(1).padStart(7)} ns/op   ${(m[i] / against).toFixed(2)}x of ours untagged`);
});
if (sink === -1) console.log(sink);
