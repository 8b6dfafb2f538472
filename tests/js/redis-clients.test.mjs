// The client adapters of the JS RedisStore (js/redis/clients.js), against a
// real redis-server for every client kind: node-redis v4 and v5 (RESP2 and
// RESP3; single, TLS, createCluster), ioredis (Redis, TLS, Cluster).
// Each: a script's reply types, the EVAL fallback after SCRIPT FLUSH (alone
// and inside a pipeline), keys and values with 0xFF bytes, a pipeline with a
// failing call, error replies marked `.redisError`, cluster routing and
// masters(), and a killed or frozen server rejecting in time (no hang).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as redis4 from "redis4";
import * as redis5 from "redis5";
import IORedis from "ioredis";
import { conn } from "../../js/redis/clients.js";
import { startCluster, startServer, within } from "./redis-support.mjs";

const bytes = (...b) => Buffer.from(b);
const text = (r) => Buffer.from(r).toString("utf8");
const script = (source) => ({ source, sha: createHash("sha1").update(source).digest("hex") });

// A reply of every type a script gives: bulk (a binary key, an argument),
// integer, nil (Lua false), a status reply, a nested array.
const ECHO = script(`
local set = redis.call('SET', KEYS[1], ARGV[1])
return { KEYS[1], ARGV[1], 42, false, set, { redis.call('GET', KEYS[1]), -7 } }
`);

// node-redis' and ioredis' error events must have a listener (a killed
// server makes them emit); the tests look at what the Conn answers.
const quiet = (client) => {
  client.on("error", () => {});
  return client;
};

const KINDS = [
  {
    name: "node-redis v4",
    kind: "node-redis",
    single: async ({ port }, tls) => quiet(redis4.createClient({ socket: tls ? { host: "127.0.0.1", port: tls.port, tls: true, ca: tls.ca } : { host: "127.0.0.1", port } })).connect(),
    cluster: async (c) => {
      const client = quiet(redis4.createCluster({ rootNodes: c.urls.map((url) => ({ url })) }));
      await client.connect();
      return client;
    },
    close: (client) => client.disconnect(),
  },
  {
    name: "node-redis v5",
    kind: "node-redis",
    single: async ({ port }, tls) => quiet(redis5.createClient({ socket: tls ? { host: "127.0.0.1", port: tls.port, tls: true, ca: tls.ca } : { host: "127.0.0.1", port } })).connect(),
    cluster: async (c) => {
      const client = quiet(redis5.createCluster({ rootNodes: c.urls.map((url) => ({ url })) }));
      await client.connect();
      return client;
    },
    close: (client) => client.destroy(),
  },
  {
    name: "node-redis v5 RESP3",
    kind: "node-redis",
    single: async ({ port }, tls) =>
      quiet(redis5.createClient({ RESP: 3, socket: tls ? { host: "127.0.0.1", port: tls.port, tls: true, ca: tls.ca } : { host: "127.0.0.1", port } })).connect(),
    cluster: async (c) => {
      const client = quiet(redis5.createCluster({ RESP: 3, rootNodes: c.urls.map((url) => ({ url })) }));
      await client.connect();
      return client;
    },
    close: (client) => client.destroy(),
  },
  {
    name: "ioredis",
    kind: "ioredis",
    single: async ({ port }, tls) => {
      const client = quiet(new IORedis(tls ? { host: "127.0.0.1", port: tls.port, tls: { ca: tls.ca }, lazyConnect: true } : { host: "127.0.0.1", port, lazyConnect: true }));
      await client.connect();
      return client;
    },
    cluster: async (c) => {
      const client = quiet(new IORedis.Cluster(c.rootNodes, { lazyConnect: true }));
      await client.connect();
      return client;
    },
    close: (client) => client.disconnect(),
  },
];

/** Every key under `prefix` on one Conn (SCAN, as bytes). */
async function scan(c, pattern) {
  const out = [];
  let cursor = "0";
  do {
    const [next, keys] = await c.command(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]);
    cursor = text(next);
    out.push(...keys);
  } while (cursor !== "0");
  return out;
}

/** The shared checks, on a Conn of a single server or of a cluster; `tag` keeps a test's keys in one slot. */
function commonTests(name, setup) {
  const key = (t, rest) => Buffer.concat([Buffer.from(`{${name}:${t}}`), rest === undefined ? Buffer.alloc(0) : Buffer.from(rest)]);

  test("a script answers bytes, integers and nil, and sees binary keys and arguments as they are", async () => {
    const { c } = setup();
    const k = key("echo", [0x3a, 0xff, 0x00, 0x80]);
    const r = await c.script(ECHO, [new Uint8Array(k)], [new Uint8Array([0xff, 0xfe, 0x00])]);
    assert.deepEqual(r, [k, bytes(0xff, 0xfe, 0x00), 42, null, Buffer.from("OK"), [bytes(0xff, 0xfe, 0x00), -7]]);
    assert.ok(r[0] instanceof Uint8Array && r[4] instanceof Uint8Array);
  });

  test("EVALSHA first; after SCRIPT FLUSH the call falls back to EVAL and succeeds", async () => {
    const { c, flush, stats } = setup();
    const s = script(`return ARGV[1] .. '${name}'`);
    assert.equal(text(await c.script(s, [key("sha")], ["a"])), `a${name}`);
    const before = await stats();
    assert.equal(text(await c.script(s, [key("sha")], ["b"])), `b${name}`);
    const middle = await stats();
    assert.equal(middle.evalsha, before.evalsha + 1, "a known script is sent by its sha");
    assert.equal(middle.eval, before.eval, "and not by its source");
    await flush();
    assert.equal(text(await c.script(s, [key("sha")], ["c"])), `c${name}`);
    const last = await stats();
    assert.equal(last.evalsha, middle.evalsha + 1, "the sha was tried");
    assert.equal(last.eval, middle.eval + 1, "then the source");
    assert.equal(text(await c.script(s, [key("sha")], ["d"])), `d${name}`);
    assert.equal((await stats()).eval, last.eval, "EVAL loaded it again: the next call goes by sha");
  });

  test("a script error and a command error reject with Redis's text and .redisError; the Conn still works", async () => {
    const { c } = setup();
    await assert.rejects(c.script(script("return redis.error_reply('BOOM no')"), [key("err")], []), (e) => e.redisError === true && e.message.startsWith("BOOM no"));
    await assert.rejects(c.command(["SET", key("err")]), (e) => e.redisError === true && /^ERR wrong number of arguments/i.test(e.message));
    await c.command(["SET", key("err"), "x"], key("err"));
    await assert.rejects(c.command(["INCR", key("err")], key("err")), (e) => e.redisError === true && e.message.startsWith("ERR value is not an integer"));
    await assert.rejects(c.script({ sha: "0".repeat(40), source: "return +" }, [key("err")], []), (e) => e.redisError === true && /^ERR/.test(e.message));
    assert.deepEqual(await c.command(["GET", key("err")], key("err")), Buffer.from("x"));
  });

  test("keys and values with 0xFF bytes round-trip through SET, GET, SCAN and UNLINK (Uint8Array or Buffer)", async () => {
    const { c, each } = setup();
    const k = new Uint8Array([...Buffer.from(`{${name}:bin}`), 0xff, 0xff, 0x00, 0xc3]);
    const v = new Uint8Array([0xff, 0x00, 0xfe, 0x80]);
    assert.deepEqual(await c.command(["SET", k, v], k), Buffer.from("OK"));
    assert.deepEqual(await c.command(["GET", Buffer.from(k)], k), Buffer.from(v));
    const found = (await each((m) => scan(m, `{${name}:bin}*`))).flat();
    assert.deepEqual(found, [Buffer.from(k)], "SCAN gives the key's bytes, not a decoded string");
    assert.equal(await c.command(["UNLINK", k], k), 1);
    assert.equal(await c.command(["GET", k], k), null);
  });

  test("a pipeline answers each call: a reply, or the Error of the one failing call", async () => {
    const { c } = setup();
    const k = key("pipe");
    const n = key("pipe", ":n");
    await c.script(ECHO, [n], ["w"]); // known to Redis: no NOSCRIPT retry reorders the calls below
    const r = await c.pipeline([
      { args: ["SET", k, "v"], key: k },
      { args: ["INCR", k], key: k },
      { script: ECHO, keys: [n], args: ["w"] },
      { args: ["GET", k], key: k },
      { args: ["DEL", k, n], key: k },
    ]);
    assert.equal(r.length, 5);
    assert.deepEqual(r[0], Buffer.from("OK"));
    assert.ok(r[1] instanceof Error && r[1].redisError === true && r[1].message.startsWith("ERR value is not an integer"), String(r[1]));
    assert.deepEqual(r[2], [n, Buffer.from("w"), 42, null, Buffer.from("OK"), [Buffer.from("w"), -7]]);
    assert.deepEqual(r[3], Buffer.from("v"));
    assert.equal(r[4], 2);
    assert.deepEqual(await c.pipeline([]), []);
  });

  test("a pipeline after SCRIPT FLUSH sends the refused script calls again with their source", async () => {
    const { c, flush } = setup();
    const s = script("return redis.call('INCR', KEYS[1])");
    const k = key("pipe-ns");
    await c.command(["DEL", k], k);
    assert.deepEqual(await c.pipeline([{ script: s, keys: [k], args: [] }]), [1]);
    await flush();
    const r = await c.pipeline([
      { script: s, keys: [k], args: [] },
      { args: ["GET", k], key: k },
      { script: s, keys: [k], args: [] },
      { script: script("return redis.error_reply('NOPE no')"), keys: [k], args: [] },
    ]);
    // Each script call ran once: the refused ones again, after the others.
    assert.equal(r[0] + r[2], 2 + 3, `INCR results ${r[0]}, ${r[2]}`);
    assert.ok([2, 3].includes(r[0]) && [2, 3].includes(r[2]));
    assert.ok(Buffer.isBuffer(r[1]));
    assert.ok(r[3] instanceof Error && r[3].redisError === true && r[3].message.startsWith("NOPE no"));
    assert.deepEqual(await c.command(["GET", k], k), Buffer.from("3"));
  });

  test("unknown commands and bad arguments", async () => {
    const { c } = setup();
    await assert.rejects(c.command(["NOSUCHCOMMAND", "x"]), (e) => e.redisError === true && /unknown command/i.test(e.message));
    await assert.rejects(() => c.command(["GET", { not: "bytes" }]), TypeError);
    await assert.rejects(() => c.script({ sha: "x" }, [], []), TypeError);
    await assert.rejects(() => c.command("GET"), TypeError);
  });
}

/** `INFO commandstats` calls of EVAL and EVALSHA, summed over `conns`. */
async function evalStats(conns) {
  let evalsha = 0;
  let evals = 0;
  for (const c of conns) {
    const info = text(await c.command(["INFO", "commandstats"]));
    evalsha += Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0);
    evals += Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
  }
  return { evalsha, eval: evals };
}

describe("conn() of what is no client", () => {
  class PolicyError extends Error {}
  for (const [what, value] of [["null", null], ["undefined", undefined], ["a number", 42], ["a string", "redis://x"], ["an empty object", {}], ["a promise", Promise.resolve()]]) {
    test(`${what}: the given PolicyError (TypeError by default), nothing sent`, () => {
      assert.throws(() => conn(value, { PolicyError }), PolicyError);
      assert.throws(() => conn(value), TypeError);
    });
  }
  test("a bad timeout is refused; a node-redis pool is refused", () => {
    const fake = { kind: "x", clustered: false, script() {}, command() {}, pipeline() {}, masters() {} };
    for (const timeout of [-1, Number.NaN, "1000", null]) assert.throws(() => conn(fake, { timeout, PolicyError }), PolicyError);
    assert.equal(conn(fake, { timeout: 0 }), fake);
    assert.throws(() => conn(redis5.createClientPool({ url: "redis://127.0.0.1:1" }), { PolicyError }), PolicyError);
  });
});

for (const kind of KINDS) {
  describe(`${kind.name}, one server`, () => {
    let server;
    let client;
    let c;
    before(async () => {
      server = await startServer();
      client = await kind.single(server);
      c = conn(client);
    });
    after(async () => {
      await kind.close(client);
      await server?.stop();
    });
    const setup = () => ({
      c,
      flush: () => c.command(["SCRIPT", "FLUSH"]),
      stats: () => evalStats([c]),
      each: async (f) => [await f(c)],
    });
    commonTests(kind.name.replaceAll(" ", "-"), setup);

    test("kind, clustered, masters() is itself, conn() of a Conn is that Conn", async () => {
      assert.equal(c.kind, kind.kind);
      assert.equal(c.clustered, false);
      assert.deepEqual(await c.masters(), [c]);
      assert.equal(conn(c), c);
    });
  });

  describe(`${kind.name}, TLS`, () => {
    let server;
    let client;
    before(async () => {
      server = await startServer(undefined, { tls: true });
      client = await kind.single(server, { port: server.tlsPort, ca: server.ca });
    });
    after(async () => {
      await kind.close(client);
      await server?.stop();
    });
    test("scripts, binary keys and pipelines over TLS", async () => {
      const c = conn(client);
      const k = bytes(0x74, 0xff, 0x01);
      assert.deepEqual(await c.script(ECHO, [k], ["v"]), [k, Buffer.from("v"), 42, null, Buffer.from("OK"), [Buffer.from("v"), -7]]);
      const r = await c.pipeline([{ args: ["GET", k], key: k }, { args: ["INCR", k], key: k }]);
      assert.deepEqual(r[0], Buffer.from("v"));
      assert.equal(r[1].redisError, true);
    });
  });

  describe(`${kind.name}, faults`, () => {
    test("a killed server: calls reject within the timeout, without .redisError; after a restart they work", async (t) => {
      const server = await startServer(t);
      const client = await kind.single(server);
      t.after(() => kind.close(client));
      const c = conn(client, { timeout: 300 });
      await c.command(["SET", "k", "v"], "k");
      await server.kill();
      for (const call of [
        () => c.command(["GET", "k"], "k"),
        () => c.script(ECHO, ["k"], ["v"]),
        () => c.command(["SET", "late", "1"], "late"),
        () => c.pipeline([{ args: ["GET", "k"], key: "k" }, { script: ECHO, keys: ["k"], args: ["v"] }]),
      ]) {
        const started = Date.now();
        await within("a call on a killed server", assert.rejects(call(), (e) => e instanceof Error && e.redisError !== true), 5000);
        assert.ok(Date.now() - started < 2000, `rejected after ${Date.now() - started} ms`);
      }
      await server.restart();
      // The client reconnects by itself; NOSCRIPT after the restart is the EVAL fallback's.
      await within(
        "the reconnection",
        (async () => {
          for (;;) {
            try {
              return await c.script(ECHO, ["k"], ["back"]);
            } catch {
              await new Promise((r) => setTimeout(r, 50));
            }
          }
        })(),
        10_000,
      );
      assert.deepEqual(await c.command(["GET", "k"], "k"), Buffer.from("back"));
      // No call that was refused while the server was down runs later (an
      // offline queue flushed at the reconnection would write "v" again).
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await c.command(["GET", "k"], "k"), Buffer.from("back"));
      assert.equal(await c.command(["EXISTS", "late"], "late"), 0);
    });

    test("a call made while the client reconnects waits for it (within the timeout) and is sent once, after", async (t) => {
      const server = await startServer(t);
      const client = await kind.single(server);
      t.after(() => kind.close(client));
      const c = conn(client, { timeout: 8000 });
      await c.command(["PING"]);
      await server.kill();
      await new Promise((r) => setTimeout(r, 100)); // the client has seen the connection go
      const pending = c.command(["INCR", "n"], "n");
      const piped = c.pipeline([{ args: ["INCR", "n"], key: "n" }]);
      await new Promise((r) => setTimeout(r, 300));
      await server.restart();
      const results = [await within("the call made during the reconnection", pending, 10_000), ...(await within("the pipeline", piped, 10_000))];
      assert.deepEqual(results.sort(), [1, 2]);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(await c.command(["GET", "n"], "n"), Buffer.from("2"), "each call ran once");
    });

    test("a frozen server (SIGSTOP): calls time out (.timeout, no .redisError); after SIGCONT they work", async (t) => {
      const server = await startServer(t);
      const client = await kind.single(server);
      t.after(() => kind.close(client));
      const c = conn(client, { timeout: 200 });
      server.freeze();
      try {
        const started = Date.now();
        await assert.rejects(c.command(["PING"]), (e) => e.timeout === true && e.redisError !== true);
        const took = Date.now() - started;
        assert.ok(took >= 200 && took < 1000, `timed out after ${took} ms (timeout 200 ms)`);
        await assert.rejects(c.pipeline([{ args: ["PING"] }]), (e) => e.timeout === true);
        assert.ok(Date.now() - started < 1500);
      } finally {
        server.thaw();
      }
      await within("the thawed server", c.command(["SET", "a", "b"], "a"), 10_000);
    });

    if (kind.kind === "ioredis") {
      test("a client still making its first connection (new Redis(), not awaited) serves calls once connected", async (t) => {
        const server = await startServer(t);
        const client = quiet(new IORedis({ host: "127.0.0.1", port: server.port }));
        t.after(() => client.disconnect());
        assert.notEqual(client.status, "ready");
        const c = conn(client);
        assert.deepEqual(await c.command(["SET", "first", "1"], "first"), Buffer.from("OK"));
        assert.deepEqual(await c.pipeline([{ args: ["GET", "first"], key: "first" }]), [Buffer.from("1")]);
      });
    }

    test("a closed client rejects without .redisError", async (t) => {
      const server = await startServer(t);
      const client = await kind.single(server);
      await kind.close(client);
      const c = conn(client, { timeout: 500 });
      await assert.rejects(c.command(["PING"]), (e) => e instanceof Error && e.redisError !== true);
    });
  });
}

describe("clusters (3 masters + 3 replicas)", () => {
  let cluster;
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  for (const kind of KINDS) {
    describe(kind.name, () => {
      let client;
      let c;
      before(async () => {
        client = await kind.cluster(cluster);
        c = conn(client);
      });
      after(() => kind.close(client));
      const setup = () => ({
        c,
        flush: async () => {
          for (const m of await c.masters()) await m.command(["SCRIPT", "FLUSH"]);
        },
        stats: async () => evalStats(await c.masters()),
        each: async (f) => Promise.all((await c.masters()).map(f)),
      });
      commonTests(`c-${kind.name.replaceAll(" ", "-")}`, setup);

      test("kind and clustered; masters() are the running masters, one unrouted Conn each", async () => {
        assert.equal(c.kind, `${kind.kind}-cluster`);
        assert.equal(c.clustered, true);
        const masters = await c.masters();
        assert.equal(masters.length, 3);
        const seen = [];
        for (const m of masters) {
          assert.equal(m.clustered, false);
          assert.equal(m.kind, kind.kind);
          assert.equal(text((await m.command(["ROLE"]))[0]), "master");
          seen.push(Number(/tcp_port:(\d+)/.exec(text(await m.command(["INFO", "server"])))[1]));
        }
        assert.deepEqual(seen.sort(), (await cluster.masters()).map((n) => n.port).sort());
      });

      test("commands and scripts go to the master of their key's slot (binary keys too)", async () => {
        // A key on each of the three masters: their slots asked of the server.
        const owners = new Map();
        for (let i = 0; owners.size < 3 && i < 1000; i++) {
          const k = Buffer.concat([Buffer.from(`{r-${kind.name}-${i}}`), bytes(0xff)]);
          const slot = await c.command(["CLUSTER", "KEYSLOT", k]);
          const master = await cluster.masterOf(slot);
          if (!owners.has(master.port)) owners.set(master.port, k);
        }
        assert.equal(owners.size, 3);
        for (const [port, k] of owners) {
          await c.command(["SET", k, `on ${port}`], k);
          await c.script(script("return redis.call('SET', KEYS[1] .. ':s', ARGV[1])"), [k], [`s ${port}`]);
          // Asked of that master alone, on a connection of its own (no redirection).
          const direct = await kind.single(cluster.nodes.find((n) => n.port === port));
          try {
            const d = conn(direct);
            assert.deepEqual(await d.command(["GET", k]), Buffer.from(`on ${port}`));
            assert.deepEqual(await d.command(["GET", Buffer.concat([k, Buffer.from(":s")])]), Buffer.from(`s ${port}`));
          } finally {
            await kind.close(direct);
          }
        }
      });
    });
  }
});

describe("an ioredis Cluster whose nodes all die and come back", () => {
  test("a call that timed out while the cluster was down never runs later", async (t) => {
    const cluster = await startCluster(t);
    const kind = KINDS.find((k) => k.kind === "ioredis");
    const client = await kind.cluster(cluster);
    t.after(() => kind.close(client));
    const c = conn(client, { timeout: 300 });
    await c.command(["SET", "{z}ok", "1"], "{z}ok");
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    await new Promise((r) => setTimeout(r, 500)); // the client has seen the nodes go
    await assert.rejects(c.command(["SET", "{z}late", "late"], "{z}late"), (e) => e.redisError !== true);
    for (const n of cluster.nodes) await n.restart();
    await cluster.waitUntilOk();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await c.command(["SET", "{z}probe", "1"], "{z}probe");
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await c.command(["GET", "{z}late"], "{z}late"), null, "the SET refused while the cluster was down ran later");
  });
});

describe("a cluster whose every node is killed", () => {
  test("every client kind's calls reject within the timeout (no hang), without .redisError", async (t) => {
    const cluster = await startCluster(t);
    const clients = [];
    t.after(async () => {
      for (const [kind, client] of clients) await kind.close(client);
    });
    for (const kind of KINDS) clients.push([kind, await kind.cluster(cluster)]);
    const conns = clients.map(([kind, client]) => [kind, conn(client, { timeout: 300 })]);
    for (const [, c] of conns) await c.command(["SET", "{k}a", "v"], "{k}a");
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    for (const [kind, c] of conns) {
      for (const call of [
        () => c.command(["GET", "{k}a"], "{k}a"),
        () => c.script(ECHO, ["{k}a"], ["v"]),
        () => c.pipeline([{ args: ["GET", "{k}a"], key: "{k}a" }]),
      ]) {
        const started = Date.now();
        await within(`${kind.name}: a call on a dead cluster`, assert.rejects(call(), (e) => e instanceof Error && e.redisError !== true), 5000);
        assert.ok(Date.now() - started < 2000, `${kind.name}: rejected after ${Date.now() - started} ms`);
      }
    }
  });
});

describe("a cluster master killed: failover", () => {
  test("every cluster kind: calls on its slots fail in time, then succeed once the replica took over (the client learns the new map)", async (t) => {
    const cluster = await startCluster(t);
    for (const kind of KINDS) {
      const client = await kind.cluster(cluster);
      t.after(() => kind.close(client));
      const c = conn(client, { timeout: 300 });
      const key = `{fo}:${kind.name}`;
      await c.command(["SET", key, "before"], key);
      await cluster.waitForReplication();
      const victim = await cluster.masterOf(await cluster.keyslot(key));
      await victim.kill();
      const started = Date.now();
      await within(`${kind.name}: a call on the dead master`, assert.rejects(c.command(["GET", key], key), (e) => e.redisError !== true), 5000);
      assert.ok(Date.now() - started < 2000);
      await cluster.waitUntilOk();
      const deadline = Date.now() + 15_000;
      let last;
      for (;;) {
        try {
          await c.command(["SET", key, "after"], key);
          break;
        } catch (e) {
          last = e;
          if (Date.now() > deadline) assert.fail(`${kind.name}: still failing 15 s after the failover: ${last.message}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.deepEqual(await c.command(["GET", key], key), Buffer.from("after"));
      // The old master comes back as a replica of the new one.
      await victim.restart();
      await cluster.waitUntilOk();
    }
  });
});
