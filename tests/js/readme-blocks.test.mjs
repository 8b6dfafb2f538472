// Every code block of README.md and js/README.md, so that none can rot:
//   js     runs in Node against the built package (pkg/, which build-js.sh
//          links as node_modules/pepperpy-caching), each block a module of
//          its own, exactly as written (CommonJS when it `require`s and
//          imports nothing). A block that exports a Worker (`{ fetch }`) then
//          gets one request, with an `env` whose OTLP_URL is a server here
//          and a `ctx` whose waitUntil promises are awaited. A block that
//          imports the `.wasm` itself is a bundler's recipe (Node has no
//          loader for it): its imports must be those of the consumer that
//          builds it and runs it in chromium (tests/consumers/esbuild-init).
//   rust   README.md's blocks are doctests (src/lib.rs includes the file under
//          cfg(doctest) with features redis and tokio, as CI's `cargo test
//          --features redis,tokio` builds it); here, each fence is checked to
//          be `rust` (compiled and run) or `rust,no_run` (compiled: it needs a
//          Redis server), and a whole program a user can paste.
//   toml   the dependency lines name this crate's version and real features.
//   sh, html, text: commands and pages, run by tests/consumers (each recipe,
//          from the packed tarball) or not code at all.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startServer } from "./redis-support.mjs";
import { startEndpoint } from "./upstash-endpoint.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const work = path.join(repo, "target/readme-blocks");

/** The fenced blocks of a Markdown file: { lang, code, line, section }. */
function blocks(file) {
  const text = fs.readFileSync(path.join(repo, file), "utf8");
  const found = [];
  let section = "";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (/^#{1,6} /.test(lines[i])) section = lines[i];
    const open = lines[i].match(/^```(\S*)\s*$/);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]);
    assert.ok(i < lines.length, `${file}:${start + 1}: an unclosed code block`);
    found.push({ lang: open[1], code: `${body.join("\n")}\n`, line: start + 1, section, file });
  }
  return found;
}

const all = ["README.md", "js/README.md"].flatMap(blocks);

let otlp;
let received = [];
before(async () => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  // (rcore) The README's JS Redis blocks import node-redis as users do, "redis": the root's redis5.
  fs.mkdirSync(path.join(work, "node_modules"), { recursive: true });
  fs.symlinkSync(path.join(repo, "node_modules/redis5"), path.join(work, "node_modules/redis"), "dir");
  otlp = http.createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      received.push({ method: request.method, url: request.url, type: request.headers["content-type"], body });
      response.writeHead(200).end("{}");
    });
  });
  await new Promise((resolve) => otlp.listen(0, "127.0.0.1", resolve));
});

after(() => otlp?.close());

// Imports the block, then, for a Worker module, sends it one request.
const RUNNER = `
const block = await import(process.argv[2]);
const worker = block.default;
if (worker && typeof worker.fetch === "function") {
  const pending = [];
  const ctx = { waitUntil: (promise) => pending.push(promise), passThroughOnException() {} };
  const response = await worker.fetch(new Request("http://localhost/?n=10"), { OTLP_URL: process.env.OTLP_URL }, ctx);
  if (!(response instanceof Response) || !response.ok) throw new Error("the Worker's fetch did not answer 2xx: " + response?.status);
  await Promise.all(pending);
  console.log("worker answered:", await response.text());
}
`;

function node(args, env) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: work, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    );
  });
}

const runner = () => {
  const file = path.join(work, "runner.mjs");
  if (!fs.existsSync(file)) fs.writeFileSync(file, RUNNER);
  return file;
};

for (const block of all.filter((b) => b.lang === "js")) {
  test(`${block.file}:${block.line} (${block.section.replace(/^#+ /, "")}) runs as written`, async (t) => {
    if (/from "pepperpy-caching\/wasm"/.test(block.code)) {
      const consumer = fs.readFileSync(path.join(repo, "tests/consumers/esbuild-init/main.mjs"), "utf8");
      for (const line of block.code.split("\n").filter((l) => l.startsWith("import "))) {
        assert.ok(consumer.includes(line), `tests/consumers/esbuild-init/main.mjs has \`${line}\``);
      }
      assert.match(block.code, /await init\(wasmUrl\)/);
      assert.match(consumer, /init\(wasmUrl\)/);
      return;
    }
    const commonjs = /\brequire\(/.test(block.code) && !/^\s*(import|export)\b/m.test(block.code);
    const name = `${block.file.replace(/\W/g, "_")}_${block.line}.${commonjs ? "cjs" : "mjs"}`;
    fs.writeFileSync(path.join(work, name), block.code);
    received = [];
    const url = `http://127.0.0.1:${otlp.address().port}`;
    // (rcore) A block of pepperpy-caching/redis gets a redis-server of its own, as REDIS_URL.
    const redis = /"pepperpy-caching\/redis"/.test(block.code) ? { REDIS_URL: (await startServer(t)).url } : {};
    // (rest) A block of @upstash/redis gets a local Upstash REST endpoint in front of that server.
    if (/"@upstash\/redis"/.test(block.code)) {
      const endpoint = await startEndpoint({ redisUrl: redis.REDIS_URL });
      t.after(() => endpoint.stop());
      Object.assign(redis, { UPSTASH_REDIS_REST_URL: endpoint.url, UPSTASH_REDIS_REST_TOKEN: endpoint.token, UPSTASH_DISABLE_TELEMETRY: "1" });
    }
    if (commonjs) {
      await node([name], redis);
    } else {
      await node([runner(), pathToFileURL(path.join(work, name)).href], { OTLP_URL: url, ...redis });
    }
    if (/toOpenTelemetry/.test(block.code)) {
      assert.equal(received.length, 1, "the Worker posted its metrics once");
      assert.equal(received[0].url, "/v1/metrics");
      assert.ok(JSON.parse(received[0].body).resourceMetrics, "an OTLP/JSON export request");
    }
  });
}

test("README.md's Rust blocks are doctests: compiled, and run unless they need Redis", () => {
  const lib = fs.readFileSync(path.join(repo, "src/lib.rs"), "utf8");
  assert.match(lib, /#\[doc = include_str!\("\.\.\/README\.md"\)\]/, "src/lib.rs includes README.md as doc");
  const rust = blocks("README.md").filter((b) => /^rust/.test(b.lang) || b.lang === "");
  assert.ok(rust.length >= 8, `README.md has its Rust blocks (${rust.length})`);
  for (const block of rust) {
    const where = `README.md:${block.line} (${block.section})`;
    assert.notEqual(block.lang, "", `${where}: an unlabeled block is a doctest too: label it`);
    assert.ok(["rust", "rust,no_run"].includes(block.lang), `${where}: \`${block.lang}\` is not compiled`);
    if (block.lang === "rust,no_run") {
      assert.match(block.code, /Redis|redis:\/\//, `${where}: no_run is for the blocks that need a Redis server`);
    }
    assert.match(block.code, /^use pepperpy_caching::|^\/\/.*\nuse pepperpy_caching::/m, `${where}: says what it uses`);
    assert.match(block.code, /fn main\(\)/, `${where}: a whole program, as a user would paste it`);
  }
  // js/README.md is the npm package's: JavaScript only.
  assert.deepEqual(blocks("js/README.md").filter((b) => /^rust/.test(b.lang)), []);
});

test("the Cargo.toml snippets name this crate's version and its real features", () => {
  const cargo = fs.readFileSync(path.join(repo, "Cargo.toml"), "utf8");
  const version = cargo.match(/^version = "(\d+\.\d+)\.\d+"/m)[1];
  const features = new Set([...cargo.slice(cargo.indexOf("[features]")).split("\n[")[0].matchAll(/^([\w-]+) = /gm)].map((m) => m[1]));
  const toml = blocks("README.md").filter((b) => b.lang === "toml");
  assert.ok(toml.length >= 2);
  for (const block of toml) {
    const line = block.code.match(/^pepperpy-caching = (.*)$/m);
    assert.ok(line, `README.md:${block.line}: names pepperpy-caching`);
    assert.match(line[1], new RegExp(`"${version.replace(".", "\\.")}"`), `README.md:${block.line}: version ${version}`);
    for (const [, feature] of (line[1].match(/features = \[([^\]]*)\]/)?.[1] ?? "").matchAll(/"([^"]+)"/g)) {
      assert.ok(features.has(feature), `README.md:${block.line}: no feature "${feature}" in Cargo.toml`);
    }
  }
});

test("every block has a language this test knows", () => {
  for (const block of all) {
    assert.ok(["js", "sh", "html", "toml", "text", "rust", "rust,no_run"].includes(block.lang), `${block.file}:${block.line}: \`${block.lang}\``);
  }
});
