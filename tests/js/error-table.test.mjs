// The error classes and the counters come from the core's tables (src/wasm/tables.rs):
// the package's classes, index.d.ts and the OpenTelemetry export must agree with them.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const api = require("pepperpy-caching");
// The wasm glue the package binds (its exports are not the package's API).
const wasm = require(join(dirname(require.resolve("pepperpy-caching/package.json")), "wasm/pepperpy_caching.cjs"));
// The tables are text, a line a row (src/wasm/tables.rs `tables`: the
// counters, a NUL, the error classes); the counters' units and engine
// indexes are numbers at the end of `limits()`, two per figure.
const [counterText, errorText] = wasm.tables().split("\0");
const errorRows = () => errorText.trimEnd().split("\n").map((name) => ({ name }));
const counterRows = () => {
  const lines = counterText.trimEnd().split("\n");
  const layout = wasm.limits().slice(-2 * lines.length);
  const units = [["sum", "1"], ["gauge", "1"], ["gauge", "ms"]];
  return lines.map((line, i) => {
    const [field, help] = line.split("\t");
    const [kind, unit] = units[layout[2 * i]];
    return { name: field.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), field, kind, unit, help, engine: layout[2 * i + 1] };
  });
};
const types = fs.readFileSync(new URL("../../js/index.d.ts", import.meta.url), "utf8");

test("one class per class of the error table, each a CacheError, exported and declared", () => {
  const table = errorRows();
  assert.ok(table.length >= 12, "a row per ErrorKind");
  const names = new Set(["CacheError", ...table.map((row) => row.name)]);
  const exported = Object.keys(api).filter((name) => /^Cache\w*Error$/.test(name));
  assert.deepEqual(exported.sort(), [...names].sort(), "the package exports exactly the table's classes");
  const declared = [...types.matchAll(/export declare class (Cache\w*Error) extends (\w+)/g)];
  assert.deepEqual(declared.map(([, name]) => name).sort(), [...names].sort(), "index.d.ts declares exactly them");
  for (const [, name, base] of declared) {
    assert.equal(base, name === "CacheError" ? "Error" : "CacheError", `${name} extends ${base}`);
  }
  for (const name of names) {
    const Class = api[name];
    const error = new Class("m");
    assert.equal(Class.name, name);
    assert.equal(error.name, name);
    assert.equal(error.message, "m");
    assert.ok(error instanceof api.CacheError && error instanceof Error, name);
  }
});

test("an error from the core is thrown as its kind's class", () => {
  assert.throws(() => new api.LRUPolicy({ maxSize: 1, ttl: -1 }), api.CachePolicyError);
  const store = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 1 }) });
  assert.throws(() => store.setSync("", 1), api.CacheKeyError);
  assert.throws(() => store.invalidateSync(""), api.CachePatternError);
  // The one message the core once worded with a Rust name (max_size).
  assert.throws(() => new api.S3FIFOPolicy({ maxSize: 0 }), {
    name: "CachePolicyError",
    message: "invalid policy: maxSize must be at least 1, got 0",
  });
});

test("getStats and index.d.ts have a key per row of the counter table, in its order; the export names each", () => {
  const table = counterRows();
  const store = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 4 }) });
  store.setSync("a", 1);
  store.getSync("a");
  assert.deepEqual(Object.keys(store.getStats()), table.map((row) => row.name));
  const metrics = api.toOpenTelemetry({ s: store }).resourceMetrics[0].scopeMetrics[0].metrics;
  assert.deepEqual(metrics.map((m) => m.name).sort(), table.map((row) => `pepperpy_cache.${row.field}`).sort());
  for (const row of table) {
    const metric = metrics.find((m) => m.name === `pepperpy_cache.${row.field}`);
    assert.equal(metric.description, row.help);
    assert.equal(metric.unit, row.unit);
    assert.ok(metric[row.kind], `${row.name} is a ${row.kind}`);
  }
  // The types declare the same figures, in the same order.
  const declared = types.match(/export interface CacheStats \{([^}]*)\}/)[1].match(/^\s*(\w+): number;$/gm);
  assert.deepEqual(declared.map((line) => line.trim().split(":")[0]), table.map((row) => row.name));
  assert.deepEqual(table.filter((row) => row.engine >= 0).map((row) => row.name).sort(), [
    "deletes", "evictions", "expirations", "sets",
  ]);
});
