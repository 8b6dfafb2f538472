// js/redis/clients.js: the client adapters of the JS RedisStore (issue 24).
//
// `conn(client)` turns a client the user already has (node-redis v4 or v5,
// single or `createCluster`; ioredis `Redis` or `Cluster`) into the one
// interface the store speaks (a Conn; docs in /work/notes/redis-js-contract.md
// and index.d.ts):
//   kind, clustered,
//   script({ sha, source }, keys, args)  EVALSHA, EVAL again on NOSCRIPT
//   command(args, key?)                  any command, routed by `key` on a cluster
//   pipeline(calls)                      several calls, one round trip; a reply or an Error each
//   masters()                            [this], or one unrouted Conn per cluster master
// Replies are bytes (Buffer), integers (numbers), null, or arrays of them,
// whatever the client's own decoding (node-redis strings, RESP3 maps,
// booleans and doubles are brought back to what RESP2 says). An error reply
// rejects with the client's Error marked `.redisError = true`; a connection
// failure, a closed client or a timeout rejects with an Error without it.
//
// What the clients do not do by themselves, done here:
// - a timeout per call (default 1000 ms, the Rust store's response timeout;
//   `.timeout = true`), one timer per Conn;
// - a call waits for a connecting or reconnecting client's "ready" (within
//   its timeout) rather than sit in the client's offline queue, which would
//   run it after its caller was told it failed; on a cluster, for the node
//   client its key's slot maps to;
// - after a failover: node-redis learns a new slot map only from MOVED, so a
//   cluster call that fails without a Redis error provokes one; ioredis's
//   map is asked for again when it names a node the client dropped;
// - in a pipeline, the calls Redis refused with NOSCRIPT are sent again with
//   EVAL after the others (as the Rust store does): only after a restart or
//   SCRIPT FLUSH can a pipeline's calls run out of order.
//
// No import: this file is plain ES (Node, Bun, Deno, workerd) and names nothing
// of the clients' packages; it tells them apart by shape. It is a module of its
// own (the tests import it) and a part that scripts/build-entry.cjs concatenates
// into pepperpy-caching/redis: its only top-level names are `conn` and
// REDIS_CLIENTS, and it throws the package's CachePolicyError when `main` (the
// default entry) is in scope.

const REDIS_CLIENTS = (() => {
  const NOSCRIPT = "NOSCRIPT";
  /** The Rust store's default response timeout (src/stores/redis/builder.rs). */
  const DEFAULT_TIMEOUT_MS = 1000;
  const BufferClass = globalThis.Buffer;
  const encoder = new TextEncoder();

  // node-redis v5: every RESP type the store may meet, as RESP2 bytes
  // (RESP_TYPES codes of @redis/client: '$', '+', '=', ',', '(', '%', '~').
  const V5_TYPES = Object.freeze({ 36: BufferClass, 43: BufferClass, 61: BufferClass, 44: String, 40: String, 37: Array, 126: Array });

  /** The class names the clients give an error reply (node-redis: ErrorReply and its SimpleError/BlobError; ioredis: ReplyError). */
  const REPLY_ERRORS = new Set(["ErrorReply", "SimpleError", "BlobError", "ReplyError", "MultiErrorReply"]);

  function isReplyError(error) {
    if (!(error instanceof Error)) return false;
    if (error.redisError === true) return true;
    for (let p = Object.getPrototypeOf(error); p && p !== Error.prototype; p = Object.getPrototypeOf(p)) {
      if (REPLY_ERRORS.has(p.constructor?.name)) return true;
    }
    return false;
  }

  /** Marks an error reply (`.redisError = true`) and passes anything else through. */
  function mark(error) {
    if (isReplyError(error)) {
      try {
        error.redisError = true;
      } catch {
        const copy = new Error(error.message);
        copy.redisError = true;
        return copy;
      }
      return error;
    }
    if (error instanceof Error) return error;
    return new Error(`the Redis client failed: ${String(error)}`);
  }

  /** An argument as the clients take it: a string, or bytes as a Buffer (ioredis would print a bare Uint8Array as "1,2,3"). */
  function arg(a) {
    if (typeof a === "string") return a;
    if (a instanceof Uint8Array) {
      if (BufferClass === undefined || BufferClass.isBuffer(a)) return a;
      return BufferClass.from(a.buffer, a.byteOffset, a.byteLength);
    }
    if (typeof a === "number" || typeof a === "bigint") return String(a);
    throw new TypeError(`a Redis argument must be a string or a Uint8Array, got ${a === null ? "null" : typeof a}`);
  }

  function args(list) {
    if (!Array.isArray(list)) throw new TypeError("Redis arguments must be an array");
    const out = new Array(list.length);
    for (let i = 0; i < list.length; i++) out[i] = arg(list[i]);
    return out;
  }

  function bytes(s) {
    return BufferClass !== undefined ? BufferClass.from(s, "utf8") : encoder.encode(s);
  }

  /** A reply in the contract's shape: null | number | bytes | array of them. */
  function reply(r) {
    if (r === null || r === undefined) return null;
    if (typeof r === "number" || r instanceof Uint8Array) return r;
    if (typeof r === "string") return bytes(r);
    if (Array.isArray(r)) {
      for (let i = 0; i < r.length; i++) {
        const x = r[i];
        if (!(x instanceof Uint8Array || typeof x === "number" || x === null)) {
          const out = new Array(r.length);
          for (let j = 0; j < r.length; j++) out[j] = reply(r[j]);
          return out;
        }
      }
      return r;
    }
    // RESP3 booleans: RESP2 (and a Lua script for a RESP2 client) says 1 and nil.
    if (r === true) return 1;
    if (r === false) return null;
    if (typeof r === "bigint") return Number.isSafeInteger(Number(r)) ? Number(r) : bytes(String(r));
    if (r instanceof Map) return [...r].flatMap(([k, v]) => [reply(k), reply(v)]);
    if (r instanceof Set) return [...r].map(reply);
    if (typeof r === "object") return Object.entries(r).flatMap(([k, v]) => [bytes(k), reply(v)]);
    return bytes(String(r));
  }

  /** The key of a Conn's hot-path call (`sequential`), on the Conns `conn` makes only. */
  const HOT = Symbol("pepperpy-caching hot call");
  /** The key of a Conn's batched get (`sequential` on a single node): see `batcher`. */
  const HOT_GET = Symbol("pepperpy-caching batched get");
  /** The key of a Conn's batched set (`sequential` on a single node): see `batcher`. */
  const HOT_SET = Symbol("pepperpy-caching batched set");

  /** The most calls one batch sends as one command (MGET, MSET); the call that fills a batch sends it at once. */
  const BATCH_LIMIT = 128;

  /**
   * The gets and sets of one tick as one command (issue 24 item 4): on a
   * single node, the store's plain gets (one GET each) made in the same tick
   * are sent together at its end (a microtask) as one MGET, its plain sets
   * without a TTL as one MSET, a lone one as its GET or SET, at most
   * BATCH_LIMIT calls a command; each caller is answered with its key's
   * reply. Redis pays its per-command cost once for the batch, and the
   * client encodes and parses one command and one reply, with one promise.
   *
   * One batcher per client, shared by every Conn `conn` makes on it (every
   * store on that client), whose every other command goes through `send`
   * here, which sends a pending batch first (as does a call of the other
   * kind): so the calls of those stores reach Redis in the order they were
   * made (a get then a set of one key in the same tick reads the old value,
   * as on the raw client). A command that code sends on the client itself in
   * between is not seen: it goes before the batch (the store's `batch:
   * false` sends each call at once).
   *
   * Each caller keeps its own deadline (its Conn's clock: `call`), its own
   * reply, and its own error: a connection failure or an error reply to the
   * batch's command rejects every caller still waiting with it. MGET
   * answers nil for a key that holds no string (a hash: a load's
   * placeholder), where GET answers WRONGTYPE, which the store reads as a
   * miss: the same miss. `send(argv, key)`: the client's own sending.
   *
   * Probes (review4j): before the first batch, one `INFO cluster` (a
   * cluster-enabled server, even one owning every slot, refuses an MGET of
   * keys in different slots: CROSSSLOT; INFO refused: unsure, so never
   * batch); then the first MGET and the first MSET. While a probe is
   * unanswered every later call and command on the client waits here (in
   * order: `gate`), so a refused probe's calls, re-sent one by one, still
   * run before anything made after them. Once per client and kind.
   */
  function batcher(send) {
    // The batch being gathered: its command ("GET", "SET" or undefined: none)
    // and its calls, a list of { key, value, call, clock, onReply, onError,
    // next } (object literals, and arrays made only when it is sent, by
    // definition: an index accessor on Array.prototype or Object.prototype,
    // a polyfill's or a hostile library's, takes nothing from a call).
    let kind;
    let head = null;
    let tail = null;
    let count = 0;
    // Whether each batch command may be sent: true (a batch of it answered),
    // false (never: the server is cluster-enabled, INFO was refused, or Redis
    // refused that command: an ACL without MGET or MSET, a renamed command;
    // its calls then go one by one, as with batch: false), undefined (not
    // known yet: the next batch of it is a probe).
    const allowed = { GET: undefined, SET: undefined };
    // Whether `INFO cluster` was asked (once per client, before the first batch).
    let asked = false;
    // While a probe (that INFO, or the first MGET or MSET) is unanswered: the
    // later calls and commands, in order (thunks); else null. So a refused
    // probe's calls are sent again one by one BEFORE anything made after them.
    let gate = null;
    const isRefusal = (error) => error.redisError === true && /^(NOPERM|ERR unknown command|CROSSSLOT)/.test(String(error.message));
    /** The probe answered: the calls that waited go, in order (until another probe starts: the rest wait again). */
    const open = () => {
      const waiting = gate;
      gate = null;
      let thrown;
      let threw = false;
      for (let i = 0; i < waiting.length; i++) {
        if (gate !== null) {
          for (let j = i; j < waiting.length; j++) gate.push(waiting[j]);
          break;
        }
        try {
          waiting[i]();
        } catch (error) {
          if (!threw) thrown = error;
          threw = true;
        }
      }
      if (threw) throw thrown;
    };
    /** Asks `INFO cluster` (calls wait meanwhile): batches only on a server that says cluster_enabled:0. */
    const ask = () => {
      asked = true;
      gate = [];
      const done = (r) => {
        const text = r instanceof Uint8Array ? new TextDecoder().decode(r) : "";
        if (!/^cluster_enabled:0\s*$/m.test(text)) allowed.GET = allowed.SET = false;
        open();
      };
      const failed = (error) => {
        // Refused (an ACL without INFO, a renamed INFO): never batch. Not
        // answered (a lost connection): ask again before the next batch.
        if (mark(error).redisError === true) allowed.GET = allowed.SET = false;
        else asked = false;
        open();
      };
      let sent;
      try {
        sent = send(["INFO", "cluster"]);
      } catch (error) {
        failed(error);
        return;
      }
      sent.then((r) => done(reply(r)), failed);
    };
    /** `fn()` (a command's sending) after any pending batch; while a probe is unanswered, once it is (its promise then). */
    const later = (fn) => {
      if (gate === null && head !== null) flush();
      if (gate === null) return fn();
      return waitFor(fn);
    };
    /** The batcher's `send` while a probe is unanswered (apart, as `wait`). */
    const waitToSend = (argv, key) => waitFor(() => send(argv, key));
    /** `later`'s promise while a probe is unanswered. */
    const waitFor = (fn) =>
      new Promise((resolve, reject) => {
        gate.push(() => {
          let p;
          try {
            p = later(fn);
          } catch (error) {
            reject(error);
            return;
          }
          p.then(resolve, reject);
        });
      });
    // Each call of the list from `first` still waiting (not timed out) settled by `settle(i, w)`.
    const each = (first, settle) => {
      let thrown;
      let threw = false;
      for (let w = first, i = 0; w !== null; w = w.next, i++) {
        const call = w.call;
        // Timed out meanwhile: its caller was told; a late reply is dropped.
        if (call !== undefined && call.prev === null) continue;
        w.clock.remove(call);
        try {
          settle(i, w);
        } catch (error) {
          if (!threw) thrown = error;
          threw = true;
        }
      }
      if (threw) throw thrown;
    };
    /** One call sent alone (its GET or SET), answered as in a batch. */
    const single = (w, command) => {
      const settle = (ok, value) => {
        const call = w.call;
        if (call !== undefined && call.prev === null) return;
        w.clock.remove(call);
        if (ok) w.onReply(reply(value));
        else w.onError(mark(value));
      };
      let sent;
      try {
        sent = send(command === "GET" ? ["GET", w.key] : ["SET", w.key, w.value], w.key);
      } catch (error) {
        settle(false, error);
        return;
      }
      sent.then(
        (r) => settle(true, r),
        (error) => settle(false, error),
      );
    };
    /** The batch's command: GET or SET for one call, else MGET or MSET of every key (and value). */
    const argvOf = (first, n, isGet) => {
      if (n === 1) return isGet ? ["GET", first.key] : ["SET", first.key, first.value];
      let w = first;
      let value = false;
      return Array.from({ length: isGet ? n + 1 : 2 * n + 1 }, (_, i) => {
        if (i === 0) return isGet ? "MGET" : "MSET";
        if (value) {
          value = false;
          const v = w.value;
          w = w.next;
          return v;
        }
        const k = w.key;
        if (isGet) w = w.next;
        else value = true;
        return k;
      });
    };
    const flush = () => {
      if (head === null) return;
      const first = head;
      const n = count;
      const isGet = kind === "GET";
      kind = undefined;
      head = tail = null;
      count = 0;
      const command = isGet ? "GET" : "SET";
      // The first MGET (MSET) on this client is a probe: later calls wait for its answer.
      const probe = n > 1 && allowed[command] === undefined;
      // After a probe's callers are answered: the waiting calls go.
      const opened = (settle) => {
        if (!probe) {
          settle();
          return;
        }
        try {
          settle();
        } finally {
          open();
        }
      };
      const failAll = (error) =>
        opened(() => {
          const marked = mark(error);
          if (n > 1 && isRefusal(marked)) {
            // MGET or MSET refused (none of it ran): this batch's calls, and the
            // later ones of its kind, go one by one, these first (a probe's
            // refusal: before anything made after them, which waited). A
            // refusal after that command was once answered (an ACL changed at
            // runtime) may let a call made after the batch pass these.
            allowed[command] = false;
            for (let w = first; w !== null; w = w.next) if (w.call === undefined || w.call.prev !== null) single(w, command);
            return;
          }
          each(first, (_, w) => w.onError(marked));
        });
      let sent;
      try {
        sent = send(argvOf(first, n, isGet), first.key);
      } catch (error) {
        if (probe) gate = [];
        failAll(error);
        return;
      }
      if (probe) gate = [];
      if (n === 1 || !isGet) {
        sent.then(
          (r) =>
            opened(() => {
              if (probe) allowed[command] = true;
              const answer = reply(r);
              each(first, (_, w) => w.onReply(answer));
            }),
          failAll,
        );
        return;
      }
      sent.then((r) => {
        if (!Array.isArray(r) || r.length !== n) {
          failAll(new Error(`MGET of ${n} keys answered ${Array.isArray(r) ? `${r.length} values` : "no array"}`));
          return;
        }
        opened(() => {
          if (probe) allowed[command] = true;
          each(first, (i, w) => w.onReply(reply(r[i])));
        });
      }, failAll);
    };
    /** A probe is unanswered: this call waits (dropped if it timed out meanwhile: its caller was told). Apart from `join`, whose arguments a closure there would make every call allocate. */
    const wait = (command, key, value, call, clock, onReply, onError) => {
      gate.push(() => {
        if (call === undefined || call.prev !== null) join(command, key, value, call, clock, onReply, onError);
      });
    };
    /** Adds a call to the batch of `command` (another pending one is sent first; a full one is sent at once). */
    const join = (command, key, value, call, clock, onReply, onError) => {
      if (gate === null && head !== null && kind !== command) flush();
      if (gate === null && !asked) ask();
      if (gate !== null) {
        wait(command, key, value, call, clock, onReply, onError);
        return;
      }
      const w = { key, value, call, clock, onReply, onError, next: null };
      if (allowed[command] === false) {
        single(w, command);
        return;
      }
      if (head === null) {
        kind = command;
        head = tail = w;
        count = 1;
        queueMicrotask(flush);
        return;
      }
      tail.next = w;
      tail = w;
      if (++count >= BATCH_LIMIT) flush();
    };
    return {
      /** `key`'s GET, in the batch of this tick: then `onReply(reply)` or `onError(error)`, unless `call` (of `clock`) timed out. */
      get(key, clock, call, onReply, onError) {
        join("GET", key, undefined, call, clock, onReply, onError);
      },
      /** The SET of `value` (no TTL) at `key`, in the batch of this tick (MSET): as `get`. */
      set(key, value, clock, call, onReply, onError) {
        join("SET", key, value, call, clock, onReply, onError);
      },
      /** Any other command: the pending batch sent first. */
      send(argv, key) {
        if (gate === null && head !== null) flush();
        if (gate === null) return send(argv, key);
        return waitToSend(argv, key);
      },
      /** `fn()` (a pipeline's sending: a promise) after the pending batch, and after any unanswered probe. */
      later,
    };
  }

  const batchers = new WeakMap();
  /** The batcher of `client` (made with `send` the first time), shared by the Conns made on it. */
  function batcherOf(client, send) {
    let b = batchers.get(client);
    if (b === undefined) batchers.set(client, (b = batcher(send)));
    return b;
  }

  /**
   * The deadlines of a Conn's calls: `add(reject, what)` when a call starts
   * (`what`: its name, or its arguments, the first naming it; undefined when
   * there is no timeout), `remove(call)` when it settles. A
   * call still there after `ms` is rejected with a timeout error (no
   * `.redisError`, `.timeout = true`), between `ms` and 1.2 `ms` after it
   * began. This is on every call's path, so it costs a few pointer writes:
   * no timer per call (a timer and a Promise.race per call cost a third of a
   * pipelined GET; a Set and a Date.now() per call still a fifth). The calls
   * wait in a doubly linked list in the order they began, which is the order
   * of their deadlines; one timer per Conn ticks every tenth of `ms` (at
   * least 5 ms) while calls wait, reads the clock, and rejects the expired
   * calls from the head. A call's deadline is taken from the clock the last
   * tick read (at most a tick old, hence one tick added).
   */
  function deadlines(ms) {
    if (!(ms > 0) || ms === Infinity) return { add: () => undefined, remove: () => {} };
    const tick = Math.max(5, Math.min(ms / 10, 1000));
    // A sentinel: head.next is the oldest call, head.prev the newest.
    const head = { prev: null, next: null };
    head.prev = head;
    head.next = head;
    let now = 0;
    let timer;
    const expire = () => {
      now = Date.now();
      for (let call = head.next; call !== head && call.deadline <= now; call = head.next) {
        unlink(call);
        const error = new Error(`${Array.isArray(call.what) ? String(call.what[0]) : call.what}: no answer from Redis within ${ms} ms`);
        error.timeout = true;
        call.reject(error);
      }
      timer = head.next !== head ? setTimeout(expire, tick) : undefined;
    };
    const unlink = (call) => {
      call.prev.next = call.next;
      call.next.prev = call.prev;
      call.prev = call.next = null;
    };
    return {
      add(reject, what) {
        if (timer === undefined) {
          now = Date.now();
          timer = setTimeout(expire, tick);
        }
        const call = { prev: head.prev, next: head, deadline: now + ms + tick, reject, what };
        head.prev.next = call;
        head.prev = call;
        return call;
      },
      remove(call) {
        if (call !== undefined && call.prev !== null) unlink(call);
      },
    };
  }

  function checkScript(script) {
    if (script === null || typeof script !== "object" || typeof script.sha !== "string" || typeof script.source !== "string") {
      throw new TypeError("a script is { sha: string, source: string }");
    }
  }

  function evalArgs(name, what, keys, extra) {
    const k = args(keys);
    const a = args(extra);
    return [name, what, String(k.length), ...k, ...a];
  }

  /**
   * The Conn of a client whose commands are sent one by one (`send(argv, key)`
   * resolves to the raw reply or rejects with the client's error): node-redis
   * pipelines by itself everything sent in one tick, so `pipeline` sends each
   * call at once and waits for them together. Each call is one promise of
   * ours around the client's (a get is on the hot path).
   */
  function sequential(kind, clustered, send, masters, timeout, ready, clock = deadlines(timeout), onLost = undefined, batch = undefined) {
    const isNoScript = (error) => error.redisError === true && String(error.message).startsWith(NOSCRIPT);
    // A call failed: its deadline removed, its error marked (a lost connection reported).
    const fail = (call, key, reject, error) => {
      clock.remove(call);
      const marked = mark(error);
      if (onLost !== undefined && marked.redisError !== true) onLost(key);
      reject(marked);
    };
    // Sends `argv` at once, then `onReply(reply)` or `onError(error)` once, unless
    // its deadline `call` (undefined: none) already rejected: the usual call's
    // way, `run`'s and the hot call's.
    const sendOnce = (argv, key, call, onReply, onError) => {
      let sent;
      try {
        sent = send(argv, key);
      } catch (error) {
        fail(call, key, onError, error);
        return;
      }
      sent.then(
        (r) => {
          // Timed out meanwhile: its caller was told; a late reply is dropped.
          if (call !== undefined && call.prev === null) return;
          clock.remove(call);
          onReply(reply(r));
        },
        (error) => {
          if (call !== undefined && call.prev === null) return;
          fail(call, key, onError, error);
        },
      );
    };
    // Sends `argv` (and, for a script refused with NOSCRIPT, `fallback()`'s EVAL).
    const run = (argv, key, fallback, what) =>
      new Promise((resolve, reject) => {
        const gate = ready === undefined ? true : ready(key);
        if (gate === false) {
          reject(offline(kind));
          return;
        }
        const call = clock.add(
          onLost === undefined
            ? reject
            : (error) => {
                onLost(key);
                reject(error);
              },
          what,
        );
        if (gate === true && fallback === undefined) {
          // The usual call (a connected client, a plain command): two closures of ours, no more.
          sendOnce(argv, key, call, resolve, reject);
          return;
        }
        const settle = (r) => {
          clock.remove(call);
          resolve(reply(r));
        };
        const failed = (error) => fail(call, key, reject, error);
        const sendNow = (a, onError) => {
          let sent;
          try {
            sent = send(a, key);
          } catch (error) {
            failed(error);
            return;
          }
          sent.then(settle, onError);
        };
        const start = () =>
          sendNow(
            argv,
            fallback === undefined
              ? failed
              : (error) => {
                  const marked = mark(error);
                  if (!isNoScript(marked)) return failed(marked);
                  let again;
                  try {
                    again = fallback();
                  } catch (e) {
                    return failed(e);
                  }
                  sendNow(again, failed);
                },
          );
        if (gate === true) start();
        else whenReady(gate, call, start);
      });
    const runScript = (script, keys, extra) => {
      try {
        checkScript(script);
        const argv = evalArgs("EVALSHA", script.sha, keys, extra);
        const key = keys.length > 0 ? argv[3] : undefined;
        return run(argv, key, () => evalArgs("EVAL", script.source, keys, extra), "EVALSHA");
      } catch (error) {
        return Promise.reject(error);
      }
    };
    const runCommand = (argv, key) => {
      try {
        return run(args(argv), key === undefined ? undefined : arg(key), undefined, argv);
      } catch (error) {
        return Promise.reject(error);
      }
    };
    const one = (call) => (call.script !== undefined ? runScript(call.script, call.keys ?? [], call.args ?? []) : runCommand(call.args, call.key));
    const keepReplyErrors = (error) => {
      if (error.redisError === true) return error;
      throw error;
    };
    // The store's hot path (a get's GET, a set's SET on a connected single
    // node): `argv` (strings, as the clients take them) sent at once, then
    // `onReply(reply)` or `onError(error)`, once, within the deadline, and
    // no promise of ours: the caller's is the only one (a wrapper promise
    // and its callbacks cost about a tenth of a pipelined GET). Returns
    // false, having done nothing, when the client is not ready or the Conn
    // is a cluster's: the caller then takes `command`.
    const hot = (argv, key, onReply, onError) => {
      if (clustered || onLost !== undefined || (ready !== undefined && ready(key) !== true)) return false;
      sendOnce(argv, key, clock.add(onError, argv), onReply, onError);
      return true;
    };
    // The store's plain get on a single node: the batch of this tick (`batcher`), within this Conn's deadline. False as `hot`.
    const hotGet =
      batch === undefined
        ? undefined
        : (key, onReply, onError) => {
            if (ready !== undefined && ready(key) !== true) return false;
            batch.get(key, clock, clock.add(onError, "GET"), onReply, onError);
            return true;
          };
    // The store's plain set without a TTL: as hotGet, in a batch of sets (MSET).
    const hotSet =
      batch === undefined
        ? undefined
        : (key, value, onReply, onError) => {
            if (ready !== undefined && ready(key) !== true) return false;
            batch.set(key, value, clock, clock.add(onError, "SET"), onReply, onError);
            return true;
          };
    const self = {
      kind,
      clustered,
      [HOT]: hot,
      [HOT_GET]: hotGet,
      [HOT_SET]: hotSet,
      script: runScript,
      command: runCommand,
      pipeline: (calls) => {
        try {
          return Promise.all(calls.map((call) => one(call).catch(keepReplyErrors)));
        } catch (error) {
          return Promise.reject(error);
        }
      },
      masters: async () => (masters === undefined ? [self] : masters()),
    };
    return self;
  }

  /**
   * Calls on a client that is not connected right now (its first connection
   * or a reconnection under way) are not handed to it, whose offline queue
   * would keep them and run them at the reconnection, possibly after their
   * caller was told they failed (a set landing over a later write or
   * invalidation): they wait here for the client's "ready", within their
   * timeout, and are sent then, or never. A closed client refuses at once.
   * `gate()` is `true` (ready: send), `false` (closed) or a promise of ready.
   */
  function offline(kind) {
    const error = new Error(`the ${kind} client is closed, or has no connection to the node serving the key`);
    error.offline = true;
    return error;
  }

  /** Runs `start` once `gate` resolves, unless the call timed out meanwhile (its deadline gone from the list). */
  function whenReady(gate, call, start) {
    gate.then(
      () => {
        if (call === undefined || call.prev !== null) start();
      },
      () => {},
    );
  }

  /** One promise of the client's next "ready" event, shared by the calls that wait. */
  function readyEvent(client) {
    let waiting;
    return () =>
      (waiting ??= new Promise((resolve) => {
        client.once("ready", () => {
          waiting = undefined;
          resolve();
        });
      }));
  }

  const nodeGates = new WeakMap();
  /** The gate of a cluster's node client, made once per node client. */
  function gateOf(client, make) {
    let gate = nodeGates.get(client);
    if (gate === undefined) nodeGates.set(client, (gate = make(client)));
    return gate;
  }

  /**
   * A cluster's gate for a call on `key`: the gate of the node client its
   * slot map sends the key to (a cluster client keeps one client per node,
   * each with an offline queue of its own), or open when it has none yet or
   * that node client is closed (the cluster replaces it; none is reconnecting).
   */
  function clusterGate(nodeClient, make) {
    return (key) => {
      if (key === undefined) return true;
      let node;
      try {
        node = nodeClient(slotOf(key));
      } catch {
        return true;
      }
      // false: the map gives the slot a node the client has no connection to (all lost): refused.
      if (node === false) return false;
      if (node === undefined || node === null || typeof node.once !== "function") return true;
      const gate = gateOf(node, make)();
      return gate === false ? true : gate;
    };
  }

  /** node-redis v4/v5: ready, closed (`isOpen` false: never connected, or quit), or wait for "ready". */
  function nodeRedisGate(client) {
    const next = readyEvent(client);
    return () => (client.isReady ? true : client.isOpen ? next() : false);
  }

  /** ioredis: ready, closed ("end"), or wait for "ready" (a lazy client in "wait", as a Cluster's node clients are, is told to connect). */
  function ioredisGate(client) {
    const next = readyEvent(client);
    return () => {
      const status = client.status;
      if (status === "ready") return true;
      if (status === "end") return false;
      if (status === "wait") client.connect().catch(() => {});
      return next();
    };
  }

  // A single client only reads the options it is given (v5 copies them into its own): one object for every call.
  const V4_OPTIONS = { returnBuffers: true };
  const V5_OPTIONS = { typeMapping: V5_TYPES };

  /** node-redis v4: `sendCommand(args, { returnBuffers: true })`; a legacy-mode client's promise API is `client.v4`. */
  function nodeRedis4(client, timeout) {
    const target = client.options?.legacyMode && client.v4 ? client.v4 : client;
    const batch = batcherOf(client, (argv) => target.sendCommand(argv, V4_OPTIONS));
    return sequential("node-redis", false, batch.send, undefined, timeout, nodeRedisGate(client), undefined, undefined, batch);
  }

  /** node-redis v5 (and later): a type mapping per command for bytes. */
  function nodeRedis5(client, timeout) {
    const batch = batcherOf(client, (argv) => client.sendCommand(argv, V5_OPTIONS));
    return sequential("node-redis", false, batch.send, undefined, timeout, nodeRedisGate(client), undefined, undefined, batch);
  }

  /** CRC16 (XMODEM) of `bytes`: Redis Cluster's key hash. */
  function crc16(bytes) {
    let crc = 0;
    for (let i = 0; i < bytes.length; i++) {
      crc ^= bytes[i] << 8;
      for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  }

  /** The Redis Cluster slot of `key` (a string or bytes): the CRC16 of its hash tag if it has one, else of all of it. */
  function slotOf(key) {
    const b = typeof key === "string" ? encoder.encode(key) : key;
    const open = b.indexOf(0x7b);
    if (open >= 0) {
      const close = b.indexOf(0x7d, open + 1);
      if (close > open + 1) return crc16(b.subarray(open + 1, close)) & 0x3fff;
    }
    return crc16(b) & 0x3fff;
  }

  /**
   * node-redis's cluster client learns a new slot map only from a MOVED or
   * ASK reply. A master that died (or hangs) gives none: its node client
   * keeps reconnecting and the calls for its slots wait in that client's
   * queue, even once a replica has taken over. So after a call on `key`
   * fails without a Redis error (a timeout, a lost connection), one probe,
   * at most every 500 ms, sends `EXISTS key` routed by a key of a master the
   * client's map does not give `key`'s slot to: its MOVED makes the client
   * read the slot map again (as the Rust store provokes one for redis-rs).
   */
  function slotMapRefresher(cluster) {
    let last = 0;
    let running = false;
    return (key) => {
      if (key === undefined || running || Date.now() - last < 500) return;
      last = Date.now();
      let stale;
      try {
        stale = cluster.getSlotMaster(slotOf(key));
      } catch {
        return;
      }
      let probe;
      for (let i = 0; i < 1000 && probe === undefined; i++) {
        const candidate = `{pepperpy-probe-${i}}`;
        const master = cluster.slots?.[slotOf(candidate)]?.master;
        if (master !== undefined && master !== stale) probe = candidate;
      }
      if (probe === undefined) return;
      running = true;
      Promise.resolve()
        .then(() => cluster.sendCommand(probe, false, ["EXISTS", key]))
        .catch(() => {})
        .finally(() => {
          running = false;
        });
    };
  }

  function nodeRedisCluster(cluster, v5, timeout) {
    // The cluster writes the slot into the options it is given: one object per call.
    const send = v5
      ? (argv, key) => cluster.sendCommand(key, false, argv, { typeMapping: V5_TYPES })
      : (argv, key) => cluster.sendCommand(key, false, argv, { returnBuffers: true });
    const onLost = slotMapRefresher(cluster);
    const masters = async () => {
      const nodes = cluster.masters;
      const clients = await Promise.all(nodes.map((node) => cluster.nodeClient(node)));
      return clients.map((c) => (v5 ? nodeRedis5(c, timeout) : nodeRedis4(c, timeout)));
    };
    // The node client of a slot's master, once the cluster made it (v4 and v5: `client`, or a promise of it).
    const gate = clusterGate((slot) => cluster.slots?.[slot]?.master?.client, nodeRedisGate);
    return sequential("node-redis-cluster", true, send, masters, timeout, gate, deadlines(timeout), onLost);
  }

  /** ioredis (Redis or Cluster): `callBuffer` for bytes, a real pipeline for `pipeline`; a Cluster routes by the keys it finds in the arguments. */
  function ioredis(client, clustered, timeout) {
    const kind = clustered ? "ioredis-cluster" : "ioredis";
    // A Cluster has the same statuses (and offline queue) as a Redis; once
    // ready, it sends each call to a node client of its own, which queues
    // while it reconnects: a call waits for both.
    const own = ioredisGate(client);
    let refreshed = 0;
    const node = clustered
      ? clusterGate((slot) => {
          const keys = client.slots?.[slot];
          if (keys === undefined || typeof client.connectionPool?.getInstanceByKey !== "function") return undefined;
          const instance = client.connectionPool.getInstanceByKey(keys[0]);
          if (instance !== undefined) return instance;
          // ioredis drops a node's client when its connection closes and
          // keeps the calls for that node until it reconnects (after the
          // caller was told they failed): refused, and the slot map asked for
          // again (at most every 500 ms), which brings the new master of a
          // failover, or the nodes back.
          if (Date.now() - refreshed > 500 && typeof client.refreshSlotsCache === "function") {
            refreshed = Date.now();
            try {
              client.refreshSlotsCache(() => {});
            } catch {}
          }
          return false;
        }, ioredisGate)
      : undefined;
    const ready = !clustered
      ? own
      : (key) => {
          const first = own();
          if (first !== true) return first;
          return node(key);
        };
    const clock = deadlines(timeout);
    // A single node's gets and sets of one tick are batched (`batcher`); a Cluster's go one by one.
    const batch = clustered ? undefined : batcherOf(client, (argv) => client.callBuffer(...argv));
    const base = sequential(kind, clustered, batch === undefined ? (argv) => client.callBuffer(...argv) : batch.send, undefined, timeout, ready, clock, undefined, batch);
    const exec = async (calls, build) => {
      // The first exec waited for ready (below); a second one (NOSCRIPT) goes only on a connected client.
      if (ready !== undefined && client.status !== "ready") throw new Error(`the ${kind} client lost its connection`);
      const run = () => {
        const pipe = client.pipeline();
        for (const call of calls) build(pipe, call);
        return pipe.exec();
      };
      let results;
      try {
        // A batch (gets, sets) made before this pipeline goes first (and a probe's answer is waited for).
        results = await (batch === undefined ? run() : batch.later(run));
      } catch (error) {
        throw mark(error);
      }
      if (!Array.isArray(results) || results.length !== calls.length) {
        throw new Error("the ioredis pipeline was not run (the client is closed?)");
      }
      return results.map(([error, value]) => {
        if (error == null) return reply(value);
        const marked = mark(error);
        if (marked.redisError !== true) throw marked;
        return marked;
      });
    };
    const argvOf = (call, sha) =>
      call.script !== undefined ? evalArgs(sha ? "EVALSHA" : "EVAL", sha ? call.script.sha : call.script.source, call.keys ?? [], call.args ?? []) : args(call.args);
    const pipeline = async (calls) => {
      for (const call of calls) if (call.script !== undefined) checkScript(call.script);
      const out = await exec(calls, (pipe, call) => pipe.callBuffer(...argvOf(call, true)));
      // Calls refused for a script Redis did not know (restart, SCRIPT FLUSH):
      // none of them ran; they are sent again, in order, with the source.
      const again = [];
      calls.forEach((call, i) => {
        const r = out[i];
        if (call.script !== undefined && r instanceof Error && String(r.message).startsWith(NOSCRIPT)) again.push(i);
      });
      if (again.length > 0) {
        const retried = await exec(
          again.map((i) => calls[i]),
          (pipe, call) => pipe.callBuffer(...argvOf(call, false)),
        );
        again.forEach((i, j) => {
          out[i] = retried[j];
        });
      }
      return out;
    };
    const masters = clustered ? async () => client.nodes("master").map((node) => ioredis(node, false, timeout)) : undefined;
    const self = {
      ...base,
      pipeline: (calls) =>
        new Promise((resolve, reject) => {
          const first = calls[0];
          const key = first === undefined ? undefined : first.script !== undefined ? first.keys?.[0] : first.key;
          const gate = ready === undefined ? true : ready(key === undefined ? undefined : arg(key));
          if (gate === false) {
            reject(offline(kind));
            return;
          }
          const call = clock.add(reject, "a pipeline");
          const start = () =>
            pipeline(calls).then(
              (out) => {
                clock.remove(call);
                resolve(out);
              },
              (error) => {
                clock.remove(call);
                reject(error);
              },
            );
          if (gate === true) start();
          else whenReady(gate, call, start);
        }),
      masters: async () => (masters === undefined ? [self] : masters()),
    };
    return self;
  }

  function looksLikeConn(c) {
    return (
      typeof c.kind === "string" &&
      typeof c.clustered === "boolean" &&
      typeof c.script === "function" &&
      typeof c.command === "function" &&
      typeof c.pipeline === "function" &&
      typeof c.masters === "function"
    );
  }

  /** The package's CachePolicyError inside pepperpy-caching/redis; TypeError in the module alone. */
  const DEFAULT_POLICY_ERROR = typeof main !== "undefined" && typeof main?.CachePolicyError === "function" ? main.CachePolicyError : TypeError;

  /**
   * The Conn of `client`: a node-redis v4/v5 client or cluster, an ioredis
   * Redis or Cluster, already connected (or connecting: their commands wait
   * in the client's offline queue, within the timeout); a Conn is returned as it is.
   * Options: `timeout` (ms, default 1000: the Rust store's response timeout;
   * 0 for none): a call with no answer by then rejects (`.timeout = true`);
   * `PolicyError`: the class thrown for something that is no client (the store
   * passes CachePolicyError; TypeError by default).
   */
  function conn(client, { timeout = DEFAULT_TIMEOUT_MS, PolicyError = DEFAULT_POLICY_ERROR } = {}) {
    if (!(typeof timeout === "number" && timeout >= 0 && !Number.isNaN(timeout))) {
      throw new PolicyError(`timeout must be a number of milliseconds >= 0, got ${String(timeout)}`);
    }
    if (client === null || (typeof client !== "object" && typeof client !== "function")) {
      throw new PolicyError(`client must be a node-redis or ioredis client, got ${client === null ? "null" : typeof client}`);
    }
    if (looksLikeConn(client)) return client;
    // ioredis: Redis and Cluster say which they are.
    if (typeof client.callBuffer === "function" && typeof client.pipeline === "function" && typeof client.isCluster === "boolean") {
      // ioredis's keyPrefix is put before the keys of a command, not before
      // SCAN's MATCH nor the entry names scripts take as arguments: walks and
      // tags would miss every entry, and other processes (Rust's) on the same
      // store prefix would not see them. (A Cluster copies redisOptions'
      // keyPrefix into its own options.)
      const keyPrefix = client.options?.keyPrefix ?? client.options?.redisOptions?.keyPrefix;
      if (keyPrefix !== undefined && keyPrefix !== null && keyPrefix !== "") {
        throw new PolicyError(
          `an ioredis client with keyPrefix (${JSON.stringify(String(keyPrefix))}) is not supported: ioredis does not prefix SCAN patterns or script arguments, so the store's walks and tags would miss its entries; pass a client without keyPrefix and give the store { prefix } instead`,
        );
      }
      return ioredis(client, client.isCluster, timeout);
    }
    if (typeof client.sendCommand === "function") {
      // node-redis: a cluster has masters and nodeClient; v5 and later have withTypeMapping.
      const v5 = typeof client.withTypeMapping === "function";
      if (typeof client.nodeClient === "function" && "masters" in client) return nodeRedisCluster(client, v5, timeout);
      if ("totalClients" in client) {
        throw new PolicyError("a node-redis client pool is not supported: pass a client (createClient) or a cluster (createCluster)");
      }
      return v5 ? nodeRedis5(client, timeout) : nodeRedis4(client, timeout);
    }
    // @upstash/redis (REST): js/redis/clients-rest.js, in scope inside pepperpy-caching/redis.
    if (typeof REDIS_REST !== "undefined" && REDIS_REST.isRest(client)) return REDIS_REST.rest(client, timeout, PolicyError);
    throw new PolicyError(
      "client must be a node-redis (v4, v5: createClient, createCluster), ioredis (Redis, Cluster) or @upstash/redis (Redis) client",
    );
  }

  return { conn, HOT, HOT_GET, HOT_SET };
})();

/**
 * The Conn of `client` (a node-redis v4/v5 client or cluster, an ioredis
 * Redis or Cluster; a Conn as it is). Options: `timeout` (ms, default 1000;
 * 0 for none), `PolicyError` (the class thrown for anything else).
 */
export function conn(client, options) {
  return REDIS_CLIENTS.conn(client, options);
}
