// Drives the Rust half of the interop tests, examples/redis_interop.rs (a
// RedisStore<serde_json::Value> answering JSON lines), from JS (not a test
// file itself). See that file for the protocol.
//
//   const rust = await startRust(t, { urls: [server.url], prefix: "app:", lru: 100 });
//   await rust.call("set", { key: "k", value: { a: 1 }, ttl_ms: 60_000 });
//   await rust.call("get", { key: "k" })          // { a: 1 }
//   rust.loads("k")                               // how many loaders this process ran for "k"
// A call whose answer is an error rejects with an Error carrying `.kind`
// (the Rust ErrorKind: "Backend", "Key", "Loader"...) and `.retryable`.

import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

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
export async function startRust(t, { urls, cluster = false, prefix, lru, ttlPolicy, maxSize, buckets, leaseMs, responseTimeoutMs } = {}) {
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
