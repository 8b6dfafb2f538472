// What each entry of the npm package weighs in a browser bundle: esbuild
// --bundle --minify for the browser, then gzip -9, as a JS developer compares
// packages. Run after scripts/build-js.sh:
//
//   node scripts/size.mjs            the table (the README's "Package size" comes from it)
//   node scripts/size.mjs --check    also fails when a bundle is over its budget
//   node scripts/size.mjs --json     the figures as JSON
//
// The budgets are in wasm-pack.toml's [size] (with the .wasm's own); the
// breakdown says where the bytes of each bundle come from (minified, before gzip).
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = path.join(repo, "pkg");
const require = createRequire(path.join(repo, "tests/consumers/package.json"));
const esbuild = require("esbuild");
const args = new Set(process.argv.slice(2));

// gzip -9 itself, as build-js.sh measures the .wasm (zlib's deflate differs by a few hundred bytes).
const gzip = (bytes) => execFileSync("gzip", ["-9c"], { input: bytes, maxBuffer: 64 << 20 }).length;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

/** [size] of wasm-pack.toml: integer keys only (the file's other tables are not needed here). */
function budgets() {
  const text = fs.readFileSync(path.join(repo, "wasm-pack.toml"), "utf8");
  const section = text.slice(text.indexOf("\n[size]")).split(/\n\[(?!size\])/)[0];
  return Object.fromEntries([...section.matchAll(/^([\w-]+)\s*=\s*(\d+)/gm)].map((m) => [m[1], Number(m[2])]));
}

/** Bundles `source` (a module importing the package) for the browser; its size and where it comes from. */
async function bundle(source) {
  const result = await esbuild.build({
    stdin: { contents: source, resolveDir: repo, loader: "js" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    write: false,
    metafile: true,
    logLevel: "silent",
    nodePaths: [path.join(repo, "node_modules")],
  });
  const out = result.outputFiles[0].contents;
  const inputs = Object.values(result.metafile.outputs)[0].inputs;
  const parts = Object.entries(inputs)
    .map(([file, { bytesInOutput }]) => [file === "<stdin>" ? file : path.relative(pkg, fs.realpathSync(path.resolve(repo, file))), bytesInOutput])
    .filter(([, bytes]) => bytes > 0)
    .sort((a, b) => b[1] - a[1]);
  return { min: out.length, gzip: gzip(out), parts };
}

const use = (specifier) => `import * as api from "${specifier}"; globalThis.api = api;`;
const wasm = fs.readFileSync(path.join(pkg, "wasm/pepperpy_caching_bg.wasm"));
const entries = {
  default: await bundle(use("pepperpy-caching")),
  inline: await bundle(use("pepperpy-caching/inline")),
  // /init: the JS only; the .wasm is its own download.
  init: await bundle(`import { init } from "pepperpy-caching/init"; globalThis.init = init;`),
};
const wasmSize = { raw: wasm.length, gzip: gzip(wasm) };
// The JS alone: the default bundle less the inlined bytes.
const jsOnly = (entry) => entry.parts.filter(([file]) => !file.startsWith("wasm/bytes.")).reduce((sum, [, bytes]) => sum + bytes, 0);

const limits = budgets();
const checks = [
  ["default import, browser bundle", entries.default.gzip, limits["max-default-bundle-gzip-bytes"]],
  ["/inline, browser bundle", entries.inline.gzip, limits["max-inline-bundle-gzip-bytes"]],
];

if (args.has("--json")) {
  console.log(JSON.stringify({ entries, wasm: wasmSize, limits }, null, 2));
} else {
  console.log("| what | minified | min + gzip | budget |");
  console.log("| --- | --- | --- | --- |");
  const row = (name, min, gz, limit) => console.log(`| ${name} | ${min === undefined ? "" : kib(min)} | ${kib(gz)} | ${limit ? kib(limit) : ""} |`);
  row('`import "pepperpy-caching"` (browser)', entries.default.min, entries.default.gzip, checks[0][2]);
  row('`import "pepperpy-caching/inline"` (browser)', entries.inline.min, entries.inline.gzip, checks[1][2]);
  row("`pepperpy-caching/init`, JS only", entries.init.min, entries.init.gzip);
  // Its budget is build-js.sh's check (max-gzip-bytes, gzip -9 of the file).
  row("`pepperpy_caching_bg.wasm` (for `/init`)", wasmSize.raw, wasmSize.gzip, limits["max-gzip-bytes"]);
  console.log(`\nJS of the default bundle without the inlined wasm: ${kib(jsOnly(entries.default))} minified`);
  console.log("\nWhere the default bundle's bytes come from (minified, before gzip):");
  for (const [file, bytes] of entries.default.parts) console.log(`  ${kib(bytes).padStart(10)}  ${file}`);
}

if (args.has("--check")) {
  let over = 0;
  for (const [name, size, limit] of checks) {
    if (limit === undefined) continue;
    if (size > limit) {
      console.error(`[size] ${name}: ${size} bytes min+gzip, over the budget of ${limit} in wasm-pack.toml`);
      over++;
    } else {
      console.error(`[size] ${name}: ${size} bytes min+gzip, within ${limit}`);
    }
  }
  console.log(`size: ${checks.length - over} passed, ${over} failed`);
  if (over > 0) process.exit(1);
}
