// The example Worker (examples/worker) on workerd, the Cloudflare Workers
// runtime, through miniflare: the package's `workerd` build loads there, the
// cache persists across requests in the isolate, entries expire, /stats reports.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const TTL_SECONDS = 1;

/** The first target `exports` gives for `conditions`, as a bundler for Workers (wrangler) resolves it. */
function resolveExports(target, conditions) {
  if (typeof target === "string") return target;
  for (const [condition, next] of Object.entries(target)) {
    if (condition === "default" || conditions.includes(condition)) {
      const found = resolveExports(next, conditions);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/**
 * The package's modules for workerd, found by following the relative imports
 * of its `workerd` entry, under node_modules/ as a bundler would lay them out,
 * plus the bare name `pepperpy-caching` mapped to that entry.
 */
function packageModules() {
  const dir = realpathSync(join(repo, "node_modules/pepperpy-caching"));
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const entry = resolveExports(pkg.exports["."], ["workerd", "worker", "browser", "import"]);
  assert.equal(entry, "./workerd.mjs", "the exports map sends workerd to its own build");
  const modules = [];
  const seen = new Set();
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    const name = posix.join("node_modules/pepperpy-caching", file);
    if (file.endsWith(".wasm")) {
      modules.push({ type: "CompiledWasm", path: name, contents: readFileSync(join(dir, file)) });
      return;
    }
    const code = readFileSync(join(dir, file), "utf8");
    modules.push({ type: "ESModule", path: name, contents: code });
    for (const [, spec] of code.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s*["']([^"']+)["']/gm)) {
      assert.ok(spec.startsWith("."), `${file} imports ${spec}: the workerd build must be self-contained`);
      visit(posix.join(posix.dirname(file), spec));
    }
  };
  visit(posix.normalize(entry));
  modules.push({ type: "ESModule", path: "pepperpy-caching", contents: `export * from "./node_modules/pepperpy-caching/workerd.mjs";` });
  return modules;
}

let mf;

before(async () => {
  mf = new Miniflare({
    compatibilityDate: "2026-04-01",
    modulesRoot: "/",
    modules: [
      { type: "ESModule", path: "worker.mjs", contents: readFileSync(join(repo, "examples/worker/worker.mjs"), "utf8") },
      ...packageModules(),
    ],
    bindings: { CACHE_TTL_SECONDS: String(TTL_SECONDS) },
  });
  await mf.ready;
});

after(() => mf?.dispose());

async function get(path) {
  const response = await mf.dispatchFetch(`http://localhost${path}`);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  return { status: response.status, cache: response.headers.get("x-cache"), body };
}

test("the cache persists across requests, expires, and reports stats", async () => {
  const first = await get("/prime?n=5000");
  assert.deepEqual(first, { status: 200, cache: "MISS", body: { n: 5000, prime: 48611, cached: false } });
  const second = await get("/prime?n=5000");
  assert.deepEqual(second, { status: 200, cache: "HIT", body: { n: 5000, prime: 48611, cached: true } });
  assert.equal((await get("/prime?n=10")).cache, "MISS");

  let stats = (await get("/stats")).body;
  assert.deepEqual({ ...stats, avgGetLatency: 0, totalLoadTime: 0 }, {
    hits: 1, misses: 2, sets: 2, deletes: 0, evictions: 0, expirations: 0, hitRatio: 1 / 3, avgGetLatency: 0,
    loads: 2, loadFailures: 0, totalLoadTime: 0, staleHits: 0, refreshes: 0, refreshFailures: 0, totalWeight: 0, size: 2, waitedFor: 0,
  });
  assert.ok(stats.totalLoadTime >= 0, "time in a Worker moves only across I/O, so loads may take 0 ms");

  // Time in a Worker moves only across I/O: between these requests it does.
  await new Promise((resolve) => setTimeout(resolve, TTL_SECONDS * 1000 + 300));
  const expired = await get("/prime?n=5000");
  assert.equal(expired.cache, "MISS", "the entry expired");
  assert.equal(expired.body.prime, 48611);

  stats = (await get("/stats")).body;
  assert.equal(stats.expirations, 2, "both entries expired: one read, one reclaimed when counting");
  assert.equal(stats.size, 1);
  assert.equal(stats.hits, 1);
  assert.equal(stats.misses, 3);
  assert.equal(stats.loads, 3, "one computation per miss");
});

test("stale-while-revalidate: a stale value at once, one refresh kept alive by ctx.waitUntil", async () => {
  const first = await get("/version?name=a");
  assert.deepEqual(first.body, { name: "a", version: 1 });
  assert.deepEqual((await get("/version?name=a")).body, { name: "a", version: 1 }, "fresh");
  const before = (await get("/stats")).body;
  assert.equal(before.waitedFor, 0, "nothing to keep alive yet");

  await new Promise((resolve) => setTimeout(resolve, TTL_SECONDS * 1000 + 300));
  const stale = await get("/version?name=a");
  assert.deepEqual(stale.body, { name: "a", version: 1 }, "the stale value, without waiting for the load");
  // The refresh (20 ms of I/O in the Worker) finishes after that response,
  // only because it was handed to ctx.waitUntil. Poll for it.
  let refreshed;
  for (let i = 0; i < 50 && refreshed?.version !== 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    refreshed = (await get("/version?name=a")).body;
  }
  assert.deepEqual(refreshed, { name: "a", version: 2 }, "refreshed in the background");
  const stats = (await get("/stats")).body;
  assert.equal(stats.waitedFor, 1, "one refresh, handed to waitUntil");
  assert.equal(stats.refreshes, 1);
  assert.equal(stats.refreshFailures, 0);
  assert.ok(stats.staleHits >= 1);
});

test("bad input gets a clear answer", async () => {
  assert.equal((await get("/prime?n=0")).status, 400);
  assert.equal((await get("/nope")).status, 404);
});
