// The export list is written in every entry file (ESM exports must be static
// names): each must name exactly what the package's API object holds, and
// the types must declare each of them.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const api = Object.keys(require("pepperpy-caching")).sort();
const js = new URL("../../js/", import.meta.url);

test("every entry file exports exactly the API", () => {
  for (const file of ["inline.mjs", "web.mjs", "deno.mjs", "workerd.mjs"]) {
    const text = fs.readFileSync(new URL(file, js), "utf8");
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
