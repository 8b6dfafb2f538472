// Real redis-server processes for the JS Redis tests (not a test file itself):
// the JS side of tests/support/{server,cluster}.rs.
//   startServer({ args, password, tls })  one redis-server on a free loopback port
//   startCluster()                        3 masters + 3 replicas joined by `redis-cli --cluster create`
//   server.kill() / restart() / freeze() / thaw() / cli(...) / log()
// Every process is killed, and its temp dir removed, however the test process
// ends: stop() from the test, the `exit` hook (a failed test, an uncaught
// error), and a watchdog shell per server that holds a pipe only this process
// has open (a SIGKILLed test runner closes it: the watchdog kills the server).
// A frozen (SIGSTOP) server is sent SIGCONT before it is killed.

import { spawn, execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const live = new Set();

process.once("exit", () => {
  for (const server of live) server.cleanupSync();
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    for (const server of live) server.cleanupSync();
    process.kill(process.pid, signal);
  });
}

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether something on `port` answers a RESP PING (NOAUTH counts: it is up, it wants a password). */
function answersPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.on("data", (d) => done(d.toString().startsWith("+PONG") || d.toString().startsWith("-NOAUTH")));
  });
}

/** A CA and a server certificate for 127.0.0.1 and localhost signed by it, in `dir` (as tests/support/server.rs). */
function makeCertificates(dir) {
  const openssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pepperpy test CA");
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext");
}

/** One redis-server: loopback only, no persistence, its own temp dir. */
export class RedisServer {
  constructor({ args = [], password, tls = false } = {}) {
    this.extra = args;
    this.password = password;
    this.tls = tls;
    this.dir = mkdtempSync(join(tmpdir(), "pepperpy-js-redis-"));
    this.port = 0;
    this.tlsPort = undefined;
    this.child = undefined;
    this.watchdog = undefined;
    this.frozen = false;
    live.add(this);
    if (tls) makeCertificates(this.dir);
  }

  /** `redis://[:password@]127.0.0.1:port`. */
  get url() {
    return this.password ? `redis://:${this.password}@127.0.0.1:${this.port}` : `redis://127.0.0.1:${this.port}`;
  }

  /** The PEM of the CA that signed a TLS server's certificate. */
  get ca() {
    return readFileSync(join(this.dir, "ca.crt"));
  }

  get pid() {
    if (this.child === undefined) throw new Error("the server is not running");
    return this.child.pid;
  }

  get running() {
    return this.child !== undefined;
  }

  log() {
    try {
      return readFileSync(join(this.dir, "redis.log"), "utf8");
    } catch (e) {
      return `(no log: ${e.message})`;
    }
  }

  async start() {
    // Another process may take the probed port before the server binds it: try a few.
    for (let i = 0; i < 5; i++) {
      this.port = await freePort();
      if (this.tls) this.tlsPort = await freePort();
      if (await this.spawn()) return this;
    }
    const log = this.log();
    this.cleanupSync();
    throw new Error(`redis-server did not start; its log:\n${log}`);
  }

  /** Starts the server again on the same port, after kill(). */
  async restart() {
    const deadline = Date.now() + 10_000;
    while (!(await this.spawn())) {
      if (Date.now() > deadline) throw new Error(`redis-server did not restart on port ${this.port}:\n${this.log()}`);
      await sleep(100);
    }
    return this;
  }

  async spawn() {
    const argv = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir, "--logfile", join(this.dir, "redis.log")];
    if (this.password) argv.push("--requirepass", this.password);
    if (this.tls) {
      argv.push("--tls-port", String(this.tlsPort), "--tls-cert-file", join(this.dir, "server.crt"), "--tls-key-file", join(this.dir, "server.key"));
      argv.push("--tls-ca-cert-file", join(this.dir, "ca.crt"), "--tls-auth-clients", "no");
    }
    for (const a of this.extra) argv.push(a.replaceAll("{dir}", this.dir));
    const child = spawn("redis-server", argv, { stdio: "ignore" });
    let exited = false;
    let spawnError;
    child.on("exit", () => {
      exited = true;
    });
    child.on("error", (e) => {
      spawnError = e;
      exited = true;
    });
    child.unref();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (spawnError?.code === "ENOENT") throw new Error("redis-server is not on PATH: scripts/setup.sh installs it");
      if (exited) return false;
      if (await answersPing(this.port)) {
        this.child = child;
        this.frozen = false;
        this.guard(child.pid);
        return true;
      }
      await sleep(10);
    }
    child.kill("SIGKILL");
    return false;
  }

  /** A watchdog shell that kills `pid` (and removes the dir) when this process's end closes its stdin. */
  guard(pid) {
    this.dismissWatchdog();
    const script = 'read line; [ "$line" = quit ] && exit 0; kill -CONT "$1" 2>/dev/null; kill -9 "$1" 2>/dev/null; rm -rf "$2"';
    const watchdog = spawn("sh", ["-c", script, "watchdog", String(pid), this.dir], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    watchdog.unref();
    watchdog.stdin.on("error", () => {});
    watchdog.stdin.unref?.();
    watchdog.stdin._handle?.unref?.();
    this.watchdog = watchdog;
  }

  /** Sends the watchdog away without it doing anything (the server it guards is gone already). */
  dismissWatchdog() {
    if (this.watchdog === undefined) return;
    this.watchdog.stdin.end("quit\n");
    this.watchdog = undefined;
  }

  /** Kills the server as a crash would (no shutdown), and waits until it is gone. */
  async kill() {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    const gone = new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", resolve)));
    child.ref(); // until it is gone: an unref'd child would let the process end here
    if (this.frozen) child.kill("SIGCONT");
    child.kill("SIGKILL");
    await gone;
    child.unref();
    this.frozen = false;
    this.dismissWatchdog();
  }

  /** SIGSTOP: the process is there, its socket accepts, nothing answers (a hung host). */
  freeze() {
    process.kill(this.pid, "SIGSTOP");
    this.frozen = true;
  }

  /** SIGCONT after freeze(). */
  thaw() {
    if (!this.frozen) return;
    process.kill(this.pid, "SIGCONT");
    this.frozen = false;
  }

  /** `redis-cli -p port args...` (logged in if need be); its stdout. */
  async cli(...args) {
    const auth = this.password ? ["-a", this.password, "--no-auth-warning"] : [];
    const { stdout } = await run("redis-cli", [...auth, "-h", "127.0.0.1", "-p", String(this.port), ...args]);
    return stdout;
  }

  /** Kills the server and removes its temp dir. */
  async stop() {
    await this.kill();
    this.cleanupSync();
  }

  cleanupSync() {
    if (this.child !== undefined) {
      try {
        if (this.frozen) this.child.kill("SIGCONT");
        this.child.kill("SIGKILL");
      } catch {}
      this.child = undefined;
    }
    this.dismissWatchdog();
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

/**
 * A started server; with `t` (a node:test context) stopped when the test
 * ends, its log printed if it failed. Options: `args` (extra redis-server
 * arguments; `{dir}` is its temp dir), `password`, `tls`.
 */
export async function startServer(t, options = {}) {
  const server = await new RedisServer(options).start();
  if (t) afterTest(t, server);
  return server;
}

function afterTest(t, server) {
  t.after(async () => {
    if (t.passed === false) process.stderr.write(`---- redis-server log (port ${server.port}) ----\n${server.log()}\n`);
    await server.stop();
  });
}

/** How long a master may be unreachable before its replica takes over (as tests/support/cluster.rs). */
export const CLUSTER_NODE_TIMEOUT_MS = 1000;

/** A Redis Cluster: three masters and three replicas. */
export class RedisCluster {
  constructor(nodes, password) {
    this.nodes = nodes;
    this.password = password;
  }

  /** Every running node, as `{ host, port }`. */
  get rootNodes() {
    return this.nodes.filter((n) => n.running).map((n) => ({ host: "127.0.0.1", port: n.port }));
  }

  get urls() {
    return this.nodes.filter((n) => n.running).map((n) => n.url);
  }

  async stop() {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** Waits until every running node says cluster_state:ok with all slots served, and they agree on who serves them. */
  async waitUntilOk(within = 30_000) {
    const deadline = Date.now() + within;
    for (;;) {
      const running = this.nodes.filter((n) => n.running);
      const infos = await Promise.all(running.map((n) => n.cli("CLUSTER", "INFO").catch((e) => e.message)));
      const views = await Promise.all(running.map((n) => this.slotOwners(n).catch(() => "")));
      const ok = infos.every((i) => i.includes("cluster_state:ok") && i.includes("cluster_slots_ok:16384"));
      if (ok && views[0] !== "" && views.every((v) => v === views[0])) return;
      if (Date.now() > deadline) throw new Error(`the cluster did not become ok:\n${infos.join("\n")}\n${views.join("\n")}`);
      await sleep(100);
    }
  }

  async slotOwners(node) {
    const lines = (await node.cli("CLUSTER", "NODES"))
      .split("\n")
      .filter((l) => l.includes("master") && !l.includes("fail"))
      .map((l) => {
        const f = l.split(" ");
        return `${f[1].split("@")[0]} ${f.slice(8).join(",")}`;
      })
      .filter((l) => !l.endsWith(" "));
    return lines.sort().join("\n");
  }

  /** The slot of `key`, asked of the server (CLUSTER KEYSLOT): no copy of the algorithm. */
  async keyslot(key) {
    return Number((await this.nodes.find((n) => n.running).cli("CLUSTER", "KEYSLOT", key)).trim());
  }

  /** The node serving `slot` as master. */
  async masterOf(slot) {
    const nodes = await this.nodes.find((n) => n.running).cli("CLUSTER", "NODES");
    for (const line of nodes.split("\n").filter((l) => l.includes("master") && !l.includes("fail"))) {
      const f = line.split(" ");
      for (const range of f.slice(8)) {
        const [lo, hi = lo] = range.split("-").map(Number);
        if (slot >= lo && slot <= hi) {
          const port = Number(f[1].split("@")[0].split(":").pop());
          return this.nodes.find((n) => n.port === port);
        }
      }
    }
    throw new Error(`no master serves slot ${slot}:\n${nodes}`);
  }

  /**
   * Waits until every replica's link to its master is up and has caught up
   * (`WAIT 1` on each master): before a test kills or freezes a master, else
   * a replica whose data is too old never takes over.
   */
  async waitForReplication(within = 30_000) {
    const deadline = Date.now() + within;
    const masters = await this.masters();
    for (const node of this.nodes.filter((n) => n.running && !masters.includes(n))) {
      while (!(await node.cli("INFO", "replication")).includes("master_link_status:up")) {
        if (Date.now() > deadline) throw new Error(`the replica on port ${node.port} never synced`);
        await sleep(100);
      }
    }
    for (const master of masters) await master.cli("WAIT", "1", "2000");
  }

  /** The running masters. */
  async masters() {
    const roles = await Promise.all(this.nodes.map(async (n) => (n.running && (await n.cli("ROLE")).startsWith("master") ? n : undefined)));
    return roles.filter(Boolean);
  }
}

/** A started cluster (3 masters + 3 replicas); with `t`, stopped when the test (or suite) ends. */
export async function startCluster(t, { password } = {}) {
  const args = ["--cluster-enabled", "yes", "--cluster-config-file", "{dir}/nodes.conf", "--cluster-node-timeout", String(CLUSTER_NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "no"];
  if (password) args.push("--masterauth", password);
  const nodes = [];
  try {
    for (let i = 0; i < 6; i++) nodes.push(await new RedisServer({ args, password }).start());
    const auth = password ? ["-a", password, "--no-auth-warning"] : [];
    await run("redis-cli", [...auth, "--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "1", "--cluster-yes"]);
    const cluster = new RedisCluster(nodes, password);
    await cluster.waitUntilOk();
    if (t) {
      t.after(async () => {
        await cluster.stop();
      });
    }
    return cluster;
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
}

/** A TCP server that accepts connections and never answers (for timeouts). */
export async function silentServer(t) {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  const close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  if (t) t.after(close);
  return { port: server.address().port, close };
}

/** Fails a call that would otherwise hang: rejects after `ms`. */
export function within(what, promise, ms = 20_000) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
