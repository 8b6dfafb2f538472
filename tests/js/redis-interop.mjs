// Drives the Rust half of the interop tests, examples/redis_interop.rs (a
// RedisStore<serde_json::Value> answering JSON lines), from JS (not a test
// file itself). See that file for the protocol.
//
//   const rust = await startRust(t, { urls: [server.url], prefix: "app:", lru: 100 });
//   await rust.call("set", { key: "k", value: { a: 1 }, ttl_ms: 60_000 });
//   await rust.call("get", { key: "k" })          // { a: 1 }
//   rust.loads("k")                               // how many loaders this process ran for "k"
// A call whose answer is an error rejects with an Error carrying `.kind`
// (the Rust ErrorKind: "Connection", "Key", "Loader"...), `.className` (the
// JS class the package throws for it) and `.retryable`.
// participants() gives the same operations on the JS RedisStore (in this
// process) once the package has it, so one test covers both languages.

import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import * as redis5 from "redis5";
import IORedis from "ioredis";
import { conn } from "../../js/redis/clients.js";

const repo = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, "target");
const binary = join(targetDir, "debug", "examples", "redis_interop");
const live = new Set();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

let built;
/** Builds the driver once per test process (`cargo build` is quick when it is up to date). */
export function buildDriver() {
  built ??= promisify(execFile)("cargo", ["build", "--quiet", "--example", "redis_interop", "--features", "redis,tokio"], {
    cwd: repo,
    maxBuffer: 64 << 20,
  }).then(
    () => {
      if (!existsSync(binary)) throw new Error(`cargo built no ${binary}`);
      return binary;
    },
    (e) => {
      throw new Error(`cannot build examples/redis_interop.rs: ${e.stderr || e.message}`);
    },
  );
  return built;
}

/** A running driver process. */
export class RustStore {
  constructor(child) {
    this.child = child;
    this.next = 1;
    this.pending = new Map();
    this.events = [];
    this.listeners = new Set();
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.stderr = "";
    child.stderr.on("data", (d) => {
      this.stderr += d;
    });
    createInterface({ input: child.stdout }).on("line", (line) => this.onLine(line));
    this.exited.then(({ code, signal }) => {
      live.delete(child);
      for (const { reject } of this.pending.values()) reject(new Error(`the Rust driver exited (${code ?? signal}) with calls pending:\n${this.stderr}`));
      this.pending.clear();
    });
  }

  onLine(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      this.events.push({ event: "noise", line });
      return;
    }
    if (msg.event !== undefined) {
      this.events.push(msg);
      for (const listener of this.listeners) listener(msg);
      return;
    }
    const waiter = this.pending.get(msg.id);
    if (waiter === undefined) return;
    this.pending.delete(msg.id);
    if (msg.ok) waiter.resolve(msg.value);
    else {
      const error = new Error(`${msg.error.kind}: ${msg.error.message}`);
      error.kind = msg.error.kind;
      error.className = msg.error.class;
      error.retryable = msg.error.retryable;
      waiter.reject(error);
    }
  }

  /** Sends one request; resolves to its `value`, rejects with its error. */
  call(op, fields = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ ...fields, id, op })}\n`);
    });
  }

  /** How many loaders (get_or_set, get_or_refresh) this process started, for `key` or in all. */
  loads(key) {
    return this.events.filter((e) => e.event === "loaded" && (key === undefined || e.key === key)).length;
  }

  /** Resolves on the first event for which `pred` holds (already seen or to come). */
  waitFor(pred) {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const listener = (e) => {
        if (pred(e)) {
          this.listeners.delete(listener);
          resolve(e);
        }
      };
      this.listeners.add(listener);
    });
  }

  /** Ends its input (it finishes the calls in flight) and waits for it to exit. */
  async close() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * A started driver on `urls` (several, or `cluster: true`: a cluster store)
 * with `prefix`, `lru` (max size) or `ttlPolicy` (seconds) and `maxSize`,
 * `buckets`, `leaseMs`, `responseTimeoutMs`. With `t`, closed when the test ends.
 * Rejects with the build error (`.kind`) if the store cannot be built.
 */
export async function startRust(t, { urls, cluster = false, prefix, lru, ttlPolicy, maxSize, buckets, leaseMs, responseTimeoutMs, tlsCaFile } = {}) {
  const bin = await buildDriver();
  const args = [];
  for (const url of urls) args.push("--url", url);
  if (cluster) args.push("--cluster");
  if (prefix !== undefined) args.push("--prefix", prefix);
  if (lru !== undefined) args.push("--lru", String(lru));
  if (ttlPolicy !== undefined) args.push("--ttl-policy", String(ttlPolicy));
  if (maxSize !== undefined) args.push("--max-size", String(maxSize));
  if (buckets !== undefined) args.push("--buckets", String(buckets));
  if (leaseMs !== undefined) args.push("--lease-ms", String(leaseMs));
  if (responseTimeoutMs !== undefined) args.push("--response-timeout-ms", String(responseTimeoutMs));
  if (tlsCaFile !== undefined) args.push("--tls-ca", tlsCaFile);
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  child.stdin.on("error", () => {});
  const store = new RustStore(child);
  const first = await Promise.race([store.waitFor((e) => e.event === "ready" || e.event === "error"), store.exited.then((x) => ({ event: "exit", ...x }))]);
  if (first.event !== "ready") {
    await store.close();
    const error = new Error(`the Rust store was not built: ${JSON.stringify(first.error ?? first)}\n${store.stderr}`);
    error.kind = first.error?.kind;
    error.retryable = first.error?.retryable;
    throw error;
  }
  if (t) t.after(() => store.close());
  return store;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The JS RedisStore, if the built package has it (rcore's half of issue 24).
let js;
try {
  js = { ...(await import("pepperpy-caching/redis")), ...(await import("pepperpy-caching")) };
} catch (e) {
  js = undefined;
  process.stderr.write(`[redis-interop] no JS RedisStore in the package (${e.message.split("\n")[0]}): Rust-Rust only\n`);
}

/** A participant: a store in some process, with the driver's operations. */
export class Participant {
  constructor(name) {
    this.name = name;
  }
}

class RustParticipant extends Participant {
  constructor(name, driver) {
    super(name);
    this.driver = driver;
  }
  op(op, fields) {
    return this.driver.call(op, fields);
  }
  loads(key) {
    return this.driver.loads(key);
  }
  close() {
    return this.driver.close();
  }
}

/** The JS RedisStore with the driver's operations, in this process. */
class JsParticipant extends Participant {
  constructor(name, store) {
    super(name);
    this.store = store;
    this.loaded = [];
  }
  loads(key) {
    return this.loaded.filter((k) => key === undefined || k === key).length;
  }
  loader(f) {
    return async () => {
      this.loaded.push(f.key);
      await sleep(f.sleep_ms ?? 0);
      if (f.fail) throw new Error(f.fail);
      return f.value;
    };
  }
  /** The operation; an error gets `.className`, its class's name, as the driver's do. */
  async op(op, f) {
    try {
      return await this.run(op, f);
    } catch (e) {
      if (e instanceof Error) e.className ??= e.constructor?.name;
      throw e;
    }
  }
  async run(op, f) {
    const s = this.store;
    const secs = (ms) => (ms === undefined ? undefined : ms / 1000);
    const setOptions = () => ({ ttl: secs(f.ttl_ms), metadata: f.metadata, tags: f.tags, idle: secs(f.idle_ms) });
    switch (op) {
      case "set":
        await s.set(f.key, f.value, setOptions());
        return null;
      case "get":
        return (await s.get(f.key)) ?? null;
      case "has":
        return s.has(f.key);
      case "delete":
        return s.delete(f.key);
      case "get_metadata":
        return (await s.getMetadata(f.key)) ?? null;
      case "keys":
        return (await s.keys(f.pattern)).sort();
      case "size":
        return s.size();
      case "clear":
        await s.clear();
        return null;
      case "invalidate":
        return s.invalidate(f.pattern);
      case "get_or_set":
        return s.getOrSet(f.key, this.loader(f), setOptions());
      case "get_or_refresh":
        return s.getOrSet(f.key, this.loader(f), { ttl: secs(f.fresh_ms), grace: secs(f.grace_ms), retryAfter: secs(f.retry_ms) });
      default:
        throw new Error(`no JS form of ${op}`);
    }
  }
  close() {}
}

/**
 * The participants for one test: `rust` Rust processes (default 2), and the
 * JS store on node-redis and on ioredis when the package has one; all on
 * `deployment` ({ urls, rootNodes, cluster, tls: { port, ca, caFile } for a
 * TLS server }) with `options` (prefix, lru,
 * buckets, leaseMs, responseTimeoutMs: the JS store gets the last as its
 * Conn's timeout).
 */
export async function participants(t, deployment, options, { rust = 2 } = {}) {
  const rustOptions = { ...options, urls: deployment.urls, cluster: deployment.cluster, tlsCaFile: deployment.tls?.caFile };
  const out = [];
  for (let i = 0; i < rust; i++) out.push(new RustParticipant(`rust-${"abcdefgh"[i]}`, await startRust(t, rustOptions)));
  if (js !== undefined) {
    const policy = options.lru !== undefined ? new js.LRUPolicy({ maxSize: options.lru }) : undefined;
    const timeout = options.responseTimeoutMs;
    const make = (client) =>
      new js.RedisStore({ client: timeout === undefined ? client : conn(client, { timeout }), prefix: options.prefix, policy, buckets: options.buckets });
    const tls = deployment.tls;
    const nodeRedis = deployment.cluster
      ? redis5.createCluster({ rootNodes: deployment.urls.map((url) => ({ url })) })
      : tls
        ? redis5.createClient({ socket: { host: "127.0.0.1", port: tls.port, tls: true, ca: tls.ca } })
        : redis5.createClient({ url: deployment.urls[0] });
    nodeRedis.on("error", () => {});
    await nodeRedis.connect();
    t.after(() => nodeRedis.destroy());
    out.push(new JsParticipant("js-node-redis", make(nodeRedis)));
    const io = deployment.cluster
      ? new IORedis.Cluster(deployment.rootNodes)
      : tls
        ? new IORedis({ host: "127.0.0.1", port: tls.port, tls: { ca: tls.ca } })
        : new IORedis(deployment.urls[0]);
    io.on("error", () => {});
    t.after(() => io.disconnect());
    out.push(new JsParticipant("js-ioredis", make(io)));
  }
  return out;
}

/** Whether `e` is what the JS package throws as CacheBackendError (from either language). */
export function isBackendError(e) {
  return e instanceof Error && e.className === "CacheBackendError";
}
