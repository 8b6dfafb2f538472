// The client adapters (js/redis/clients.js) inside workerd, the Cloudflare
// Workers runtime (through miniflare, `nodejs_compat`): node-redis v5 and
// ioredis, bundled with the adapters by esbuild as wrangler would, talking
// TCP to a real redis-server. A Worker request per check: a script's reply
// types, the EVAL fallback after SCRIPT FLUSH, keys with 0xFF, a pipeline
// with a failing call, and a killed server rejecting within the timeout.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import { startServer } from "./redis-support.mjs";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const esbuild = join(repo, "tests/consumers/node_modules/.bin/esbuild");
const dir = join(repo, "target/js-tests/redis-workerd");

// The Worker: each request makes its own client (workerd ties I/O to a request).
const WORKER = `
import { createClient } from "redis5";
import IORedis from "ioredis";
import { createHash } from "node:crypto";
import { conn } from "../../../js/redis/clients.js";

const script = (source) => ({ source, sha: createHash("sha1").update(source).digest("hex") });
const ECHO = script("local s = redis.call('SET', KEYS[1], ARGV[1]) return { KEYS[1], ARGV[1], 42, false, s }");
const show = (r) => (r instanceof Uint8Array ? { bytes: [...r] } : Array.isArray(r) ? r.map(show) : r instanceof Error ? { error: r.message, redisError: r.redisError === true } : r);

async function client(kind, port) {
  if (kind === "node-redis") {
    const c = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false } });
    c.on("error", () => {});
    await c.connect();
    return { c, close: () => c.destroy() };
  }
  const c = new IORedis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0 });
  c.on("error", () => {});
  await c.connect();
  return { c, close: () => c.disconnect() };
}

const checks = {
  async script(c) {
    const k = new Uint8Array([0x77, 0xff, 0x00]);
    return show(await c.script(ECHO, [k], [new Uint8Array([0xff, 0x01])]));
  },
  async noscript(c) {
    const s = script("return ARGV[1] .. '!'");
    await c.script(s, ["n"], ["a"]);
    await c.command(["SCRIPT", "FLUSH"]);
    const alone = await c.script(s, ["n"], ["b"]);
    await c.command(["SCRIPT", "FLUSH"]);
    const piped = await c.pipeline([{ script: s, keys: ["n"], args: ["c"] }, { args: ["GET", "n"], key: "n" }]);
    return show([alone, piped[0]]);
  },
  async binary(c) {
    const k = new Uint8Array([0x62, 0xff, 0xff, 0x00]);
    await c.command(["SET", k, new Uint8Array([0xff, 0x00, 0xfe])], k);
    const [cursor, found] = await c.command(["SCAN", "0", "MATCH", "b*", "COUNT", "1000"]);
    return show([await c.command(["GET", k], k), found]);
  },
  async pipeline(c) {
    return show(await c.pipeline([{ args: ["SET", "p", "v"], key: "p" }, { args: ["INCR", "p"], key: "p" }, { args: ["GET", "p"], key: "p" }]));
  },
  async killed(c, { kill }) {
    await c.command(["SET", "x", "1"], "x");
    await kill();
    const started = Date.now();
    try {
      await c.command(["GET", "x"], "x");
      return { rejected: false };
    } catch (e) {
      return { rejected: true, redisError: e.redisError === true, ms: Date.now() - started, message: e.message };
    }
  },
};

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const kind = url.searchParams.get("client");
    const port = Number(url.searchParams.get("port"));
    const { c: raw, close } = await client(kind, port);
    try {
      const c = conn(raw, { timeout: 500 });
      const result = await checks[url.searchParams.get("check")](c, { kill: () => env.CONTROL.fetch("http://control/kill") });
      return Response.json({ kind: c.kind, result });
    } catch (e) {
      return Response.json({ thrown: e.message, redisError: e.redisError === true }, { status: 500 });
    } finally {
      try { await close(); } catch {}
    }
  },
};
`;

let mf;
let control;

before(async () => {
  assert.ok(existsSync(esbuild), `${esbuild} missing: run scripts/setup.sh (npm ci in tests/consumers)`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "entry.mjs"), WORKER);
  // As wrangler bundles for nodejs_compat: Node built-ins stay imports, CommonJS requires of them go through createRequire.
  await promisify(execFile)(esbuild, [
    join(dir, "entry.mjs"),
    "--bundle",
    "--format=esm",
    "--platform=node",
    "--target=es2022",
    "--log-level=error",
    '--banner:js=import { createRequire as __createRequire } from "node:module"; const require = __createRequire("/");',
    `--outfile=${join(dir, "worker.mjs")}`,
  ]);
  mf = new Miniflare({
    workers: [
      {
        name: "main",
        modules: [{ type: "ESModule", path: "worker.mjs", contents: readFileSync(join(dir, "worker.mjs"), "utf8") }],
        compatibilityDate: "2026-04-01",
        compatibilityFlags: ["nodejs_compat"],
        serviceBindings: {
          // The Worker asks the test to kill its server (the "killed" check).
          CONTROL: async () => {
            await control?.();
            return new Response("ok");
          },
        },
      },
    ],
  });
});

after(async () => {
  await mf?.dispose();
});

async function check(kind, port, name) {
  const res = await mf.dispatchFetch(`http://worker/?client=${kind}&port=${port}&check=${name}`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

const bytes = (...b) => ({ bytes: b });
const text = (s) => ({ bytes: [...Buffer.from(s)] });

for (const kind of ["node-redis", "ioredis"]) {
  describe(`${kind} in workerd`, () => {
    let server;
    before(async () => {
      server = await startServer();
    });
    after(() => server?.stop());

    test("a script's replies: bytes (0xFF kept), integers, nil, status", async () => {
      const { kind: k, result } = await check(kind, server.port, "script");
      assert.equal(k, kind);
      assert.deepEqual(result, [bytes(0x77, 0xff, 0x00), bytes(0xff, 0x01), 42, null, text("OK")]);
    });

    test("after SCRIPT FLUSH: EVAL alone and in a pipeline", async () => {
      const { result } = await check(kind, server.port, "noscript");
      assert.deepEqual(result, [text("b!"), text("c!")]);
    });

    test("binary keys and values through SET, GET and SCAN", async () => {
      const { result } = await check(kind, server.port, "binary");
      assert.deepEqual(result, [bytes(0xff, 0x00, 0xfe), [bytes(0x62, 0xff, 0xff, 0x00)]]);
    });

    test("a pipeline with a failing call", async () => {
      const { result } = await check(kind, server.port, "pipeline");
      assert.deepEqual(result[0], text("OK"));
      assert.equal(result[1].redisError, true);
      assert.match(result[1].error, /^ERR value is not an integer/);
      assert.deepEqual(result[2], text("v"));
    });

    test("a server killed mid-request: the call rejects in time, without .redisError", async () => {
      const victim = await startServer();
      control = () => victim.kill();
      try {
        const { result } = await check(kind, victim.port, "killed");
        assert.equal(result.rejected, true, JSON.stringify(result));
        assert.equal(result.redisError, false);
        assert.ok(result.ms < 2000, `rejected after ${result.ms} ms`);
      } finally {
        control = undefined;
        await victim.stop();
      }
    });
  });
}
