// A Worker that imports the package's main and redis entries, bundled by
// esbuild with the `workerd` condition as wrangler bundles it, its .wasm files
// left as imports and given to miniflare as compiled modules (a Worker may not
// compile wasm from bytes): what redis-store-workerd and redis-rest-workerd
// run their Worker source in.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const esbuild = join(repo, "tests/consumers/node_modules/.bin/esbuild");
const WASM = ["pepperpy_caching_bg.wasm", "redis_bg.wasm"];

/**
 * A Miniflare running `source` (an ES module with a default `fetch`) in
 * target/js-tests/`name`. `esbuildArgs`: the platform flags of the bundle
 * (with or without nodejs_compat); `compatibilityFlags`: the Worker's.
 */
export async function redisEntryWorker({ name, source, esbuildArgs, compatibilityFlags = [] }) {
  assert.ok(existsSync(esbuild), `${esbuild} missing: run scripts/setup.sh (npm ci in tests/consumers)`);
  const dir = join(repo, "target/js-tests", name);
  mkdirSync(join(dir, "wasm"), { recursive: true });
  writeFileSync(join(dir, "entry.mjs"), source);
  const outfile = join(dir, "worker.mjs");
  const common = ["--bundle", "--format=esm", "--target=es2022", "--conditions=workerd,worker", "--external:*.wasm", "--log-level=error"];
  await promisify(execFile)(esbuild, [join(dir, "entry.mjs"), ...common, ...esbuildArgs, `--outfile=${outfile}`], { cwd: repo });
  // The .wasm imports stay imports ("./wasm/NAME_bg.wasm"): the files beside the bundle, as modules.
  const pkg = realpathSync(join(repo, "node_modules/pepperpy-caching"));
  for (const file of WASM) copyFileSync(join(pkg, "wasm", file), join(dir, "wasm", file));
  const bundle = readFileSync(outfile, "utf8");
  for (const file of WASM) assert.ok(bundle.includes(`"./wasm/${file}"`), `the bundle imports ./wasm/${file}`);
  return new Miniflare({
    modulesRoot: dir,
    modules: [
      { type: "ESModule", path: outfile, contents: bundle },
      ...WASM.map((file) => ({ type: "CompiledWasm", path: join(dir, "wasm", file), contents: readFileSync(join(dir, "wasm", file)) })),
    ],
    compatibilityDate: "2026-04-01",
    compatibilityFlags,
  });
}
