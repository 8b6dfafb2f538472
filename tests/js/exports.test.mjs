// Every entry file of the package holds an export list (ESM exports must be
// static names), which scripts/build-js.sh writes from js/api/exports.txt:
// each must name exactly what the package's API object holds, and the types
// must declare each of them.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const api = Object.keys(require("pepperpy-caching")).sort();
const js = new URL("../../js/", import.meta.url);
const pkg = new URL(`file://${fs.realpathSync(require.resolve("pepperpy-caching/package.json"))}`);

test("every entry file exports exactly the API", () => {
  for (const file of ["inline.mjs", "node.mjs", "web.mjs", "deno.mjs", "workerd.mjs"]) {
    const text = fs.readFileSync(new URL(file, pkg), "utf8");
    const list = text.match(/export const \{([^}]*)\}/);
    assert.ok(list, `${file}: an export list`);
    const names = list[1].split(",").map((n) => n.trim()).filter(Boolean).sort();
    assert.deepEqual(names, api, file);
  }
});

test("index.d.ts declares every export", () => {
  const types = fs.readFileSync(new URL("index.d.ts", js), "utf8");
  for (const name of api) {
    assert.match(types, new RegExp(`export declare (class|function) ${name}\\b`), name);
  }
});
