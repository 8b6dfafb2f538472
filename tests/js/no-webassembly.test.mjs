// A runtime with no WebAssembly at all: `node --jitless` (Safari's Lockdown
// Mode is the same for a page). Every entry fails at load with an error that
// names the package and the cause, not "WebAssembly is not defined" from
// inside the glue.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

const loads = {
  "import (Node build)": ["--input-type=module", "-e", 'await import("pepperpy-caching")'],
  "require (Node build)": ["--input-type=commonjs", "-e", 'require("pepperpy-caching")'],
  "the browser build (web.mjs)": ["--input-type=module", "-e", 'await import("./pkg/web.mjs")'],
  "/init, initSync": ["--input-type=module", "-e", 'const { initSync } = await import("pepperpy-caching/init"); initSync(new Uint8Array(8))'],
  "/init, init()": ["--input-type=module", "-e", 'const { init } = await import("pepperpy-caching/init"); await init(new Uint8Array(8))'],
  "/init under require": ["--input-type=commonjs", "-e", 'require("pepperpy-caching/init").initSync(new Uint8Array(8))'],
};

for (const [name, args] of Object.entries(loads)) {
  test(`node --jitless, ${name}: says the runtime has no WebAssembly`, () => {
    const out = spawnSync(process.execPath, ["--jitless", "--no-warnings", ...args], { cwd: repo, encoding: "utf8" });
    assert.notEqual(out.status, 0);
    assert.match(out.stderr, /pepperpy-caching needs WebAssembly, which this runtime does not have/, out.stderr);
  });
}
