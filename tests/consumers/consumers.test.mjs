// The packed npm package (`npm pack` of pkg/) in the hands of each toolchain
// a JS user ships with. Each consumer is a fresh project under
// target/consumers/<name>/: its sources from tests/consumers/<name>/, the
// shared check.mjs, and the tarball installed with npm. It is built once and
// run once, and must print (or, in a page, set) exactly what check.mjs expects.
// Bundles meant to stand alone run from a fresh temporary directory, with no
// node_modules anywhere above them.
//
// The toolchains come from this directory's package-lock.json; Deno and
// miniflare from the repository root's; the browser is Debian's chromium,
// driven by playwright-core.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expected } from "./check.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const work = path.join(repo, "target/consumers");
const tools = path.join(here, "node_modules/.bin");
const deno = path.join(repo, "node_modules/.bin/deno");
const CHROMIUM = "/usr/bin/chromium";

// PEPPERPY_PACKAGE_DIR: another build of the package to try (e.g. an older one).
const pkgDir = process.env.PEPPERPY_PACKAGE_DIR ?? path.join(repo, "pkg");
let tarball;
const scratch = [];

before(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], pkgDir));
  tarball = path.join(work, packed[0].filename);
});

after(() => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs a command; its stdout. A failure shows the command and everything it printed. */
function run(command, args, cwd, env = {}) {
  try {
    return execFileSync(command, args, {
      cwd,
      env: { ...process.env, NO_COLOR: "1", ...env },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 64 << 20,
    });
  } catch (error) {
    throw new Error(`${command} ${args.join(" ")} (in ${cwd}) failed:\n${error.stdout ?? ""}\n${error.stderr ?? error.message}`);
  }
}

/** Runs a command; everything it printed, stdout and stderr. */
function runAll(command, args, cwd, env = {}) {
  return run("sh", ["-c", '"$0" "$@" 2>&1', command, ...args], cwd, env);
}

/**
 * A fresh project for consumer `name`, with the packed package installed, and
 * `links`, packages of this directory's node_modules that the tool looks for
 * in the project (a test environment, a config's plugin, Next.js and React),
 * linked into its node_modules as an install would put them; `manifest`, the
 * fields of its package.json besides name and private.
 */
function project(name, { links = [], manifest: extra = { type: "module" } } = {}) {
  const dir = path.join(work, name);
  fs.cpSync(path.join(here, name), dir, { recursive: true });
  fs.copyFileSync(path.join(here, "check.mjs"), path.join(dir, "check.mjs"));
  // The same check for a CommonJS test file (Jest runs CommonJS by default).
  const source = fs.readFileSync(path.join(here, "check.mjs"), "utf8");
  const cjs = source.replace(/^export (const|async function) (\w+)/gm, "$1 $2");
  fs.writeFileSync(path.join(dir, "check.cjs"), `"use strict";\n${cjs}\nmodule.exports = { expected, check };\n`);
  const manifest = { name: `consumer-${name}`, private: true, ...extra };
  fs.writeFileSync(path.join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  run("npm", ["install", "--no-audit", "--no-fund", "--offline", "--loglevel=error", tarball], dir);
  for (const link of links) {
    const at = path.join(dir, "node_modules", link);
    fs.mkdirSync(path.dirname(at), { recursive: true });
    fs.symlinkSync(path.join(here, "node_modules", link), at);
  }
  return dir;
}

/** A free TCP port on 127.0.0.1. */
async function freePort() {
  const probe = http.createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Starts `command` in the background until `ready` appears in its output; returns a stop function. */
async function serve(command, args, cwd, ready, env = {}) {
  const child = spawn(command, args, { cwd, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} ${args.join(" ")}: not ready after 60 s:\n${output}`)), 60_000);
    const seen = (chunk) => {
      output += chunk;
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args.join(" ")} exited (${code}):\n${output}`));
    });
  });
  return {
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        child.removeAllListeners("exit");
        child.on("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

/** A fresh directory outside the repository (no node_modules above it). */
function elsewhere(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pepperpy-consumer-"));
  scratch.push(dir);
  for (const file of files) fs.copyFileSync(file, path.join(dir, path.basename(file)));
  return dir;
}

/** The one JSON line a consumer printed. */
function printed(stdout) {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

test("the tarball holds exactly the files its README lists, each loaded by an entry point", () => {
  const packed = JSON.parse(run("npm", ["pack", "--dry-run", "--json"], pkgDir))[0].files.map((f) => f.path).sort();
  const readme = fs.readFileSync(path.join(pkgDir, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## What is in the package")).split(/\n## /)[0];
  const listed = [...section.matchAll(/^\| ([^|]+) \|/gm)]
    .flatMap((row) => [...row[1].matchAll(/`([^`]+)`/g)].map((m) => m[1]))
    .sort();
  assert.deepEqual(listed, packed, "the README's table of files");

  // Every file some entry point reaches: the targets in package.json, then
  // the relative imports, requires and `new URL(..., import.meta.url)` of each.
  const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  const targets = (value) => (typeof value === "string" ? [value] : Object.values(value ?? {}).flatMap(targets));
  const pending = [...targets(manifest.exports), manifest.main, manifest.module, manifest.types].map((t) => path.posix.normalize(t));
  const reached = new Set(["package.json", "README.md", "LICENSE"]);
  // TypeScript's node10 resolution ignores `exports`: it takes `<subpath>.d.ts` at the root.
  for (const subpath of Object.keys(manifest.exports)) {
    if (packed.includes(`${subpath.slice(2)}.d.ts`)) pending.push(`${subpath.slice(2)}.d.ts`);
  }
  const reference = /(?:from|import|require\()\s*["'](\.{1,2}\/[^"']+)["']|new URL\(\s*["']([^"']+)["'],\s*import\.meta\.url\)/g;
  while (pending.length > 0) {
    const file = pending.pop();
    if (reached.has(file)) continue;
    reached.add(file);
    if (!/\.(mjs|cjs|js)$/.test(file)) continue;
    for (const m of fs.readFileSync(path.join(pkgDir, file), "utf8").matchAll(reference)) {
      pending.push(path.posix.join(path.posix.dirname(file), m[1] ?? m[2]));
    }
  }
  assert.deepEqual([...reached].sort(), packed, "files reached from package.json");
});

test("esbuild --platform=node: ESM and CommonJS bundles run on their own", () => {
  const dir = project("esbuild-node");
  for (const format of ["esm", "cjs"]) {
    const out = path.join(dir, `dist/main.${format === "esm" ? "mjs" : "cjs"}`);
    run(path.join(tools, "esbuild"), ["main.mjs", "--bundle", "--platform=node", `--format=${format}`, `--outfile=${out}`], dir);
    const alone = elsewhere([out]);
    assert.deepEqual(printed(run(process.execPath, [path.basename(out)], alone)), expected, format);
  }
});

test('webpack target "node": the bundle runs on its own', () => {
  const dir = project("webpack-node");
  run(path.join(tools, "webpack"), [], dir);
  const alone = elsewhere([path.join(dir, "dist/main.cjs")]);
  assert.deepEqual(printed(run(process.execPath, ["main.cjs"], alone)), expected);
});

test("bun: run, and bun build bundles (target bun and node) that run on their own", () => {
  const dir = project("bun");
  const bun = path.join(tools, "bun");
  assert.deepEqual(printed(run(bun, ["main.mjs"], dir)), expected, "bun main.mjs");
  for (const target of ["bun", "node"]) {
    const out = path.join(dir, `dist/${target}.mjs`);
    run(bun, ["build", "main.mjs", `--target=${target}`, `--outfile=${out}`], dir);
    assert.ok(!fs.readFileSync(out, "utf8").includes(dir), `bun build --target=${target} baked the path ${dir} into the bundle`);
    const alone = elsewhere([out]);
    const runtime = target === "bun" ? bun : process.execPath;
    assert.deepEqual(printed(run(runtime, [path.basename(out)], alone)), expected, `bun build --target=${target}`);
  }
});

test("Deno: deno run with no permission", () => {
  const dir = project("deno");
  assert.deepEqual(printed(run(deno, ["run", "--no-lock", "main.mjs"], dir)), expected);
});

test("wrangler deploy --dry-run, then the bundle in workerd", async () => {
  const dir = project("wrangler");
  run(path.join(tools, "wrangler"), ["deploy", "--dry-run", "--outdir", "dist"], dir, {
    WRANGLER_SEND_METRICS: "false",
    CI: "true",
  });
  const outputs = fs.readdirSync(path.join(dir, "dist"));
  assert.ok(outputs.some((f) => f.endsWith(".wasm")), `wrangler shipped the .wasm: ${outputs}`);
  const { Miniflare } = await import("miniflare");
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(dir, "dist/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2026-04-01",
  });
  try {
    const response = await mf.dispatchFetch("http://localhost/");
    assert.deepEqual(await response.json(), expected);
  } finally {
    await mf.dispose();
  }
});

test("Jest 30, with no configuration: the node environment and jsdom (no TextEncoder/TextDecoder there)", () => {
  const dir = project("jest", { links: ["jest-environment-jsdom"] });
  const report = JSON.parse(run(path.join(tools, "jest"), ["--ci", "--json"], dir));
  assert.equal(report.numFailedTests, 0);
  assert.equal(report.numPassedTests, 2, "node.test.cjs and jsdom.test.cjs");
});

test("Jest 30 in ES module mode (--experimental-vm-modules), no configuration: node and jsdom", () => {
  const dir = project("jest-esm", { links: ["jest-environment-jsdom"] });
  const report = JSON.parse(
    run(process.execPath, ["--experimental-vm-modules", path.join(here, "node_modules/jest/bin/jest.js"), "--ci", "--json"], dir),
  );
  assert.equal(report.numFailedTests, 0, JSON.stringify(report.testResults.map((r) => r.message)));
  assert.equal(report.numPassedTests, 2, "node.test.js and jsdom.test.js");
});

test("Rollup + node-resolve with its default conditions: the bundle runs in Node on its own", () => {
  const dir = project("rollup-node", { links: ["@rollup/plugin-node-resolve"] });
  run(path.join(tools, "rollup"), ["-c"], dir);
  const alone = elsewhere([path.join(dir, "dist/main.mjs")]);
  assert.deepEqual(printed(run(process.execPath, ["main.mjs"], alone)), expected);
});

test("Node 22: import and require give one instance that works", () => {
  const dir = project("node22");
  const node22 = path.join(here, "node_modules/node22/bin/node");
  assert.match(run(node22, ["--version"], dir), /^v22\./);
  assert.deepEqual(printed(run(node22, ["main.mjs"], dir)), expected);
});

test("are-the-types-wrong (every resolution mode) and publint --strict find nothing", () => {
  // ./wasm is the .wasm file itself, for bundlers' asset imports: no types to find (README).
  run(path.join(tools, "attw"), [tarball, "--exclude-entrypoints", "./wasm", "--format", "table-flipped"], work);
  assert.match(run(path.join(tools, "publint"), ["--strict", pkgDir], work), /All good/);
});

describe("in a real browser (chromium)", () => {
  let browser;
  let server;
  let origin;

  before(async () => {
    server = http.createServer((request, response) => {
      const file = path.join(work, decodeURIComponent(new URL(request.url, "http://x").pathname));
      if (!file.startsWith(work + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        response.writeHead(404).end();
        return;
      }
      const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".wasm": "application/wasm" };
      response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
      fs.createReadStream(file).pipe(response);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${server.address().port}`;
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  });

  after(async () => {
    await browser?.close();
    server?.close();
  });

  /**
   * Opens `page` (a path under target/consumers, or under `at`) and checks what it set, or
   * fails with what went wrong; with `fails`, returns what went wrong instead.
   */
  async function visit(page, { fails = false, at = `${origin}/` } = {}) {
    const tab = await browser.newPage();
    const problems = [];
    tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    tab.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
    tab.on("response", (response) => response.status() >= 400 && problems.push(`${response.status()} ${response.url()}`));
    try {
      await tab.goto(new URL(page, at).href);
      if (fails) {
        // The module graph has failed once an error is out and no result came.
        if (!problems.some((p) => p.startsWith("page error"))) {
          await tab.waitForEvent("pageerror", { timeout: 30_000 }).catch(() => {});
        }
        assert.equal(await tab.evaluate(() => globalThis.consumerResult), undefined, `${page} was expected to fail`);
        return problems;
      }
      try {
        await tab.waitForFunction(() => globalThis.consumerResult !== undefined, null, { timeout: 30_000 });
      } catch {
        assert.fail(`${page} never reported a result:\n${problems.join("\n")}`);
      }
      const result = await tab.evaluate(() => globalThis.consumerResult);
      assert.deepEqual(result, expected, problems.join("\n"));
    } finally {
      await tab.close();
    }
  }

  test("esbuild for the browser: /inline, and the default import (the same build)", async () => {
    const dir = project("esbuild-browser");
    const esbuild = path.join(tools, "esbuild");
    run(esbuild, ["main.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=out.js"], dir);
    await visit("esbuild-browser/index.html");
    run(esbuild, ["default.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=default.js"], dir);
    await visit("esbuild-browser/default.html");
  });

  test("esbuild for the browser, handing the wasm to init", async () => {
    const dir = project("esbuild-init");
    run(path.join(tools, "esbuild"), ["main.mjs", "--bundle", "--format=esm", "--loader:.wasm=file", "--outdir=dist"], dir);
    fs.copyFileSync(path.join(dir, "index.html"), path.join(dir, "dist/index.html"));
    await visit("esbuild-init/dist/index.html");
  });

  test('webpack target "web": the default import, with no asset to ship', async () => {
    const dir = project("webpack-web");
    run(path.join(tools, "webpack"), [], dir);
    await visit("webpack-web/index.html");
  });

  for (const [name, module] of [
    ["vite", "vite"],
    ["vite6", "vite6"],
  ]) {
    test(`${name === "vite" ? "Vite (current)" : "Vite 6"}: vite build and the dev server, with no configuration`, async () => {
      const dir = project(name);
      const vite = await import(module);
      // base "./" only because the test server serves the build under /<name>/dist/.
      await vite.build({ root: dir, configFile: false, logLevel: "error", base: "./", build: { outDir: "dist", emptyOutDir: true } });
      await visit(`${name}/dist/index.html`);
      const server = await vite.createServer({ root: dir, configFile: false, logLevel: "error", server: { host: "127.0.0.1", port: 0 } });
      try {
        await server.listen();
        await visit("index.html", { at: server.resolvedUrls.local[0] });
      } finally {
        await server.close();
      }
    });
  }

  test("Rollup + node-resolve for the browser, no other plugin: the default import", async () => {
    const dir = project("rollup-browser", { links: ["@rollup/plugin-node-resolve"] });
    run(path.join(tools, "rollup"), ["-c"], dir);
    await visit("rollup-browser/index.html");
  });

  test("bun build --target=browser: the default import", async () => {
    const dir = project("bun-browser");
    run(path.join(tools, "bun"), ["build", "main.mjs", "--target=browser", "--outdir=dist"], dir);
    await visit("bun-browser/index.html");
  });

  test("Parcel 2, no configuration: the default import and /inline", async () => {
    const dir = project("parcel");
    run(path.join(tools, "parcel"), ["build", "index.html", "--no-cache", "--public-url", "./", "--dist-dir", "dist"], dir);
    // Parcel installs a polyfill package by itself for a free `Buffer` (and fails offline).
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    assert.deepEqual(Object.keys({ ...manifest.dependencies, ...manifest.devDependencies }), ["pepperpy-caching"], "Parcel added no package");
    await visit("parcel/dist/index.html");
  });

  test("Vite (current): a web worker in Vite's default worker format (iife), vite build", async () => {
    const dir = project("vite-worker");
    const vite = await import("vite");
    await vite.build({ root: dir, configFile: false, logLevel: "error", base: "./", build: { outDir: "dist", emptyOutDir: true } });
    await visit("vite-worker/dist/index.html");
  });

  test("Next.js 16, Turbopack then webpack: next build, next start; a server component, Node and Edge route handlers, a client component", async () => {
    // As create-next-app makes it: no "type": "module" (with it, next build --webpack
    // fails on any Edge route handler, the package's or not: Next.js 16.5's own bug).
    const dir = project("next", { links: ["next", "react", "react-dom"], manifest: {} });
    const next = path.join(tools, "next");
    const env = { NEXT_TELEMETRY_DISABLED: "1" };
    for (const bundler of ["turbopack", "webpack"]) {
      fs.rmSync(path.join(dir, ".next"), { recursive: true, force: true });
      const log = runAll(next, ["build", ...(bundler === "webpack" ? ["--webpack"] : [])], dir, env);
      assert.doesNotMatch(log, /topLevelAwait|instantiateStreaming|pepperpy/i, `${bundler}: next build warned about the package`);
      const port = await freePort();
      const server = await serve(next, ["start", "-p", String(port), "-H", "127.0.0.1"], dir, /Ready in/, env);
      try {
        const base = `http://127.0.0.1:${port}`;
        for (const route of ["/node", "/edge"]) {
          const response = await fetch(`${base}${route}`);
          assert.deepEqual(await response.json(), expected, `${bundler} ${route}`);
        }
        const html = await (await fetch(`${base}/`)).text();
        const rendered = html.match(/<pre id="server">(.*?)<\/pre>/s);
        assert.ok(rendered, `${bundler}: the server component rendered:\n${html.slice(0, 2000)}`);
        const unescape = (text) => text.replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
        assert.deepEqual(JSON.parse(unescape(rendered[1])), expected, `${bundler}: server component`);
        await visit("/", { at: `${base}/` });
        assert.doesNotMatch(server.output(), /error/i, `${bundler}: next start logged an error`);
      } finally {
        await server.stop();
      }
    }
  });

  test("a plain page with an import map, no bundler", async () => {
    project("browser-page");
    await visit("browser-page/index.html");
  });
});
