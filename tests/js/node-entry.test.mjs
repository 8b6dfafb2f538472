// Issue 19, import to first get: what Node itself loads. `import
// "pepperpy-caching"` in Node resolves to node.mjs (the "node", "module-sync"
// and "node-addons" conditions together: Node 20.19+ and 22.12+ set all three;
// webpack sets "module-sync" and Bun "node-addons", never both, and esbuild,
// Rollup, Jest neither), which loads inline.cjs with
// Node's own `require` (no pass through the ES module translator, one instance
// for import and require); and in Node the nodejs glue reads the .wasm beside
// it instead of decoding wasm/bytes.cjs's base64, falling back to those bytes
// wherever that file is not there, not this build's, or not readable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { STRIDE } = require("../../scripts/wasm-from-file.cjs");
const repo = fileURLToPath(new URL("../..", import.meta.url));
const pkg = path.dirname(fs.realpathSync(require.resolve("pepperpy-caching/package.json")));

/** Runs `script` as an ES module in a fresh Node (cwd: the repository); its last line, parsed. */
function node(script, { flags = [], cwd = repo } = {}) {
  const out = execFileSync(process.execPath, [...flags, "--input-type=module", "-e", script], { cwd, encoding: "utf8" });
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

// The body of a check: a store that works, and whether wasm/bytes.cjs was loaded.
const works = `
  const s = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
  s.setSync("a", 1); s.setSync("b", 2); s.setSync("c", 3);
  const ok = s.getSync("a") === undefined && s.getSync("c") === 3 && s.getStats().evictions === 1;
  const bytesLoaded = Object.keys(require.cache).some((f) => f.endsWith(path.join("wasm", "bytes.cjs")));
  // The redis entry's glue does the same with its own .wasm (instantiated as
  // the entry loads: a wrong module would throw here).
  const redis = require("pepperpy-caching/redis");
  const redisOk = typeof redis.RedisStore === "function";
  const redisBytesLoaded = Object.keys(require.cache).some((f) => f.endsWith(path.join("wasm", "redis_bytes.cjs")));
`;

// Node sets "module-sync" where it can require an ES module (20.19+, 22.12+).
const moduleSync = process.features.require_module === true;

test("import resolves to node.mjs in Node, and to inline.mjs under --no-addons; one instance with require either way", () => {
  for (const [flags, entry] of [
    [[], moduleSync ? "node.mjs" : "inline.mjs"],
    [["--no-addons"], "inline.mjs"],
  ]) {
    const got = node(
      `
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const esm = await import("pepperpy-caching");
      const cjs = require("pepperpy-caching");
      const s = new esm.MemoryStore({ policy: new cjs.LRUPolicy({ maxSize: 10 }) });
      s.setSync("k", 1);
      console.log(JSON.stringify([import.meta.resolve("pepperpy-caching").split("/").pop(), esm.MemoryStore === cjs.MemoryStore,
        s instanceof cjs.MemoryStore, s.getSync("k"), Object.keys(esm).sort().join() === Object.keys(cjs).sort().join()]));
      `,
      { flags },
    );
    assert.deepEqual(got, [entry, true, true, 1, true], flags.join(" ") || "no flags");
  }
});

test("pepperpy-caching/inline resolves to node.mjs too, the same instance as the package", () => {
  const got = node(`
    const a = await import("pepperpy-caching/inline");
    const b = await import("pepperpy-caching");
    console.log(JSON.stringify([import.meta.resolve("pepperpy-caching/inline").split("/").pop(), a.MemoryStore === b.MemoryStore]));
  `);
  assert.deepEqual(got, [moduleSync ? "node.mjs" : "inline.mjs", true]);
});

const hasBuiltinModule = typeof process.getBuiltinModule === "function";

test("Node reads the .wasm from disk: wasm/bytes.cjs (and the redis entry's redis_bytes.cjs) never loaded", { skip: !hasBuiltinModule && "no process.getBuiltinModule (Node < 20.16)" }, () => {
  for (const how of ["import", "require"]) {
    const got = node(`
      import path from "node:path";
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const { MemoryStore, LRUPolicy } = ${how === "import" ? 'await import("pepperpy-caching")' : 'require("pepperpy-caching")'};
      ${works}
      console.log(JSON.stringify([ok, bytesLoaded, redisOk, redisBytesLoaded]));
    `);
    assert.deepEqual(got, [true, false, true, false], how);
  }
});

/** A copy of the package in a temporary directory, changed by `change(dir)`, then loaded there by name. */
function inCopy(change, setup = "") {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pepperpy-node-entry-"));
  try {
    const copy = path.join(dir, "node_modules", "pepperpy-caching");
    fs.cpSync(pkg, copy, { recursive: true, dereference: true });
    change(copy);
    return node(
      `
      import path from "node:path";
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      ${setup}
      const { MemoryStore, LRUPolicy } = await import("pepperpy-caching");
      ${works}
      console.log(JSON.stringify([ok, bytesLoaded, redisOk, redisBytesLoaded]));
      `,
      { cwd: dir },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Each case changes both entries' .wasm files the same way.
const wasmFiles = (dir) => [path.join(dir, "wasm", "pepperpy_caching_bg.wasm"), path.join(dir, "wasm", "redis_bg.wasm")];

test("the unchanged copy reads its .wasm from disk (the control for the cases below)", { skip: !hasBuiltinModule && "no process.getBuiltinModule" }, () => {
  assert.deepEqual(inCopy(() => {}), [true, false, true, false]);
});

test("a .wasm that is missing, unreadable, of another length or of other bytes: the inlined bytes instead", () => {
  const cases = {
    missing: (file) => fs.rmSync(file),
    "a directory": (file) => {
      fs.rmSync(file);
      fs.mkdirSync(file);
    },
    "one byte shorter": (file) => fs.truncateSync(file, fs.statSync(file).size - 1),
    "one byte longer": (file) => fs.appendFileSync(file, Buffer.from([0])),
    "the same length, another build's bytes": (file) => {
      const bytes = fs.readFileSync(file);
      // The bytes the check samples: another build of the same length differs there.
      for (let i = 0; i < bytes.length; i += STRIDE) bytes[i] ^= 0xff;
      fs.writeFileSync(file, bytes);
    },
    empty: (file) => fs.writeFileSync(file, ""),
  };
  for (const [name, change] of Object.entries(cases)) {
    assert.deepEqual(inCopy((dir) => wasmFiles(dir).forEach(change)), [true, true, true, true], name);
  }
});

test("a host without process.getBuiltinModule, or whose process throws, takes the inlined bytes", () => {
  const hosts = {
    "no getBuiltinModule": "delete process.getBuiltinModule;",
    "getBuiltinModule throws": 'process.getBuiltinModule = () => { throw new Error("no"); };',
    "getBuiltinModule gives a broken fs": "process.getBuiltinModule = () => ({ readFileSync: () => 42 });",
    "process is a throwing Proxy": `
      const real = globalThis.process;
      Object.defineProperty(globalThis, "process", { configurable: true, get() { return new Proxy(real, { get() { throw new Error("trap"); } }); } });`,
  };
  for (const [name, setup] of Object.entries(hosts)) {
    assert.deepEqual(inCopy(() => {}, setup), [true, true, true, true], name);
  }
});
