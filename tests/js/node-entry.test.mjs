// Issue 19, import to first get: what Node itself loads. `import
// "pepperpy-caching"` in Node resolves to node.mjs (the "node-addons"
// condition, which Node sets and bundlers do not), which loads inline.cjs with
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
`;

test("import resolves to node.mjs in Node, and to inline.mjs under --no-addons; one instance with require either way", () => {
  for (const [flags, entry] of [
    [[], "node.mjs"],
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
  assert.deepEqual(got, ["node.mjs", true]);
});

const hasBuiltinModule = typeof process.getBuiltinModule === "function";

test("Node reads the .wasm from disk: wasm/bytes.cjs is never loaded", { skip: !hasBuiltinModule && "no process.getBuiltinModule (Node < 20.16)" }, () => {
  for (const how of ["import", "require"]) {
    const got = node(`
      import path from "node:path";
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const { MemoryStore, LRUPolicy } = ${how === "import" ? 'await import("pepperpy-caching")' : 'require("pepperpy-caching")'};
      ${works}
      console.log(JSON.stringify([ok, bytesLoaded]));
    `);
    assert.deepEqual(got, [true, false], how);
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
      console.log(JSON.stringify([ok, bytesLoaded]));
      `,
      { cwd: dir },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const wasmFile = (dir) => path.join(dir, "wasm", "pepperpy_caching_bg.wasm");

test("the unchanged copy reads its .wasm from disk (the control for the cases below)", { skip: !hasBuiltinModule && "no process.getBuiltinModule" }, () => {
  assert.deepEqual(inCopy(() => {}), [true, false]);
});

test("a .wasm that is missing, unreadable, of another length or of other bytes: the inlined bytes instead", () => {
  const cases = {
    missing: (dir) => fs.rmSync(wasmFile(dir)),
    "a directory": (dir) => {
      fs.rmSync(wasmFile(dir));
      fs.mkdirSync(wasmFile(dir));
    },
    "one byte shorter": (dir) => fs.truncateSync(wasmFile(dir), fs.statSync(wasmFile(dir)).size - 1),
    "one byte longer": (dir) => fs.appendFileSync(wasmFile(dir), Buffer.from([0])),
    "the same length, another build's bytes": (dir) => {
      const bytes = fs.readFileSync(wasmFile(dir));
      // The bytes the check samples (every 1021st): another build of the same length differs there.
      for (let i = 0; i < bytes.length; i += 1) bytes[i] ^= i % 1021 === 0 ? 0xff : 0;
      fs.writeFileSync(wasmFile(dir), bytes);
    },
    empty: (dir) => fs.writeFileSync(wasmFile(dir), ""),
  };
  for (const [name, change] of Object.entries(cases)) {
    assert.deepEqual(inCopy(change), [true, true], name);
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
    assert.deepEqual(inCopy(() => {}, setup), [true, true], name);
  }
});
