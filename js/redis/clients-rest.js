// js/redis/clients-rest.js: the REST client adapter of the JS RedisStore
// (issue 24 item 2): `conn(client)` (js/redis/clients.js) hands an
// @upstash/redis `Redis` here, and gets a Conn (the contract:
// /work/notes/redis-js-contract.md, index.d.ts) that speaks Upstash's REST
// protocol through the client's own HTTP layer (its URL, token, fetch, retries,
// agent, read-your-writes token).
//
// How, and why this way:
// - Every call is a POST /pipeline (a JSON array of commands, each a JSON array
//   of strings): its reply is one { result } or { error } per command with a
//   200, so an error reply (NOSCRIPT, WRONGTYPE, OOM) is told apart from a
//   failure of the endpoint (an HTTP error, a body that is no JSON, fetch
//   failing), which the client reports alike for a single command. Not
//   /multi-exec: the store never needs MULTI (its scripts are atomic).
// - Replies come base64-encoded (`Upstash-Encoding: base64`) and are decoded
//   here into bytes, never into text: the client's own decoding turns bytes
//   that are not UTF-8 into U+FFFD, and its `automaticDeserialization` would
//   JSON.parse our documents. So the calls go through a view of the client's
//   HttpClient whose `responseEncoding` is off (it passes the body on as it
//   is) while the header asks for base64; the view shares the client's
//   read-your-writes token.
// - Arguments are JSON strings: a Uint8Array argument must be UTF-8 (every key
//   the store writes is: its internal keys' marker is U+FFFF,
//   src/remote/keyspace.rs) and is sent as its text; anything else is
//   refused before anything is sent.
// - A deadline per call (the Conn's `timeout`, default 1000 ms as the other
//   clients'): an AbortSignal handed to the client (as a function: the
//   client then rejects, rather than answering the aborted request with a
//   made-up result), the call rejected with `.timeout = true`. REST has no
//   connection, so nothing waits for one: the client's retries of a failed
//   fetch run within the deadline.
// - One endpoint: never clustered (Upstash's cluster is behind it), `masters()`
//   is [this]; no hot call (the store takes `command`).
//
// Plain ES, no import (Node, Bun, Deno, workerd); it names nothing of the
// client's package and tells it by shape. scripts/build-entry.cjs puts it
// after clients.js; `conn` calls REDIS_REST only when it is in scope.

const REDIS_REST = (() => {
  const NOSCRIPT = "NOSCRIPT";
  const BufferClass = globalThis.Buffer;
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const encoder = new TextEncoder();
  const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const OK = encoder.encode("OK");
  /** Redis's own type names (TYPE's replies). */
  const TYPE_NAMES = new Set(["string", "list", "set", "zset", "hash", "stream", "none", "vectorset"]);

  /** Whether `client` is an @upstash/redis `Redis` (any platform build): its HTTP layer at `.client`, its own command methods. */
  function isRest(client) {
    let http;
    try {
      http = client.client;
    } catch {
      return false;
    }
    return (
      http !== null &&
      typeof http === "object" &&
      typeof http.request === "function" &&
      typeof client.evalsha === "function" &&
      typeof client.pipeline === "function" &&
      typeof client.multi === "function"
    );
  }

  /**
   * Bytes of a base64 reply string. "OK" is a status Upstash sends as it is
   * (as the client itself expects); with `status` (TYPE's reply), so is a
   * type's name that is no (padded) base64 ("string", "hash"), read as its text.
   * Anything else that is no base64 is the endpoint's fault.
   */
  function fromBase64(s, status) {
    if (s === "OK") return OK.slice();
    // A type's name sent as it is: before the base64 test, which "hash",
    // "list", "none" and "zset" (4 letters) would pass as junk bytes. (No
    // base64 form of a type's name is itself one: "string" is "c3RyaW5n".)
    if (status && TYPE_NAMES.has(s)) return encoder.encode(s);
    if (!BASE64.test(s)) {
      if (status && /^[A-Za-z][\w-]*$/.test(s)) return encoder.encode(s); // a module's type ("ReJSON-RL")
      throw badReply(`a reply string that is not base64 (${JSON.stringify(s.slice(0, 40))})`);
    }
    if (BufferClass !== undefined) return BufferClass.from(s, "base64");
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(s);
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  /** A reply in the contract's shape: null | number | bytes | array of them. */
  function decode(r, status = false) {
    if (r === null) return null;
    if (typeof r === "number") return r;
    if (typeof r === "string") return fromBase64(r, status);
    if (Array.isArray(r)) return r.map((x) => decode(x));
    throw badReply(`a reply of type ${typeof r}`);
  }

  function badReply(what) {
    return new Error(`the REST endpoint sent ${what}: is it an Upstash REST endpoint, and does it honour Upstash-Encoding: base64?`);
  }

  // What Redis answers to each plain command the store sends: a reply of
  // another type is the endpoint's fault (CacheBackendError through the store),
  // never read as a document or a count.
  const isBytes = (r) => r instanceof Uint8Array;
  const isBulk = (r) => r === null || isBytes(r);
  const isInt = (r) => typeof r === "number" && Number.isInteger(r);
  const listOf = (ok) => (r) => Array.isArray(r) && r.every(ok);
  const SHAPES = new Map([
    ["GET", isBulk],
    ["SET", isBulk],
    ["TYPE", isBytes],
    ["MGET", listOf(isBulk)],
    ["DEL", isInt],
    ["EXISTS", isInt],
    ["ZREM", isInt],
    ["TIME", (r) => Array.isArray(r) && r.length === 2 && r.every(isBytes)],
    ["SCAN", (r) => Array.isArray(r) && r.length === 2 && isBytes(r[0]) && listOf(isBytes)(r[1])],
  ]);

  /** An argument as JSON carries it: a string (bytes must be UTF-8). */
  function arg(a) {
    if (typeof a === "string") return a;
    if (a instanceof Uint8Array) {
      try {
        return utf8.decode(a);
      } catch {
        throw new TypeError("a REST client sends its arguments as JSON strings: an argument that is not UTF-8 cannot be sent");
      }
    }
    if (typeof a === "number" || typeof a === "bigint") return String(a);
    throw new TypeError(`a Redis argument must be a string or a Uint8Array, got ${a === null ? "null" : typeof a}`);
  }

  function argv(list) {
    if (!Array.isArray(list)) throw new TypeError("Redis arguments must be an array");
    return list.map(arg);
  }

  function checkScript(script) {
    if (script === null || typeof script !== "object" || typeof script.sha !== "string" || typeof script.source !== "string") {
      throw new TypeError("a script is { sha: string, source: string }");
    }
  }

  function evalArgs(name, what, keys, extra) {
    const k = argv(keys);
    return [name, what, String(k.length), ...k, ...argv(extra)];
  }

  /** An error reply: Redis's text, `.redisError = true`. */
  function replyError(message) {
    const error = new Error(String(message));
    error.redisError = true;
    return error;
  }

  /** What the client threw, as a failure of the endpoint (no `.redisError`): its message without the echo of our command. */
  function failure(error) {
    const message = error instanceof Error ? String(error.message) : String(error);
    const cut = message.indexOf(", command was: ");
    const out = new Error(`the REST endpoint failed: ${cut >= 0 ? message.slice(0, cut) : message}`);
    out.cause = error;
    return out;
  }

  /** A view of the client's HttpClient that passes replies on undecoded, sharing its read-your-writes token. */
  function rawRequester(http, PolicyError) {
    const options = http.options;
    if (options === null || typeof options !== "object" || !("responseEncoding" in options)) {
      throw new PolicyError(
        "an @upstash/redis Redis made with a custom Requester is not supported: pass one made with { url, token } (its replies must be bytes, not the requester's decoding)",
      );
    }
    return Object.create(http, {
      options: { value: { ...options, responseEncoding: false } },
      upstashSyncToken: {
        get: () => http.upstashSyncToken,
        set: (token) => {
          http.upstashSyncToken = token;
        },
      },
    });
  }

  function rest(client, timeout, PolicyError) {
    const http = rawRequester(client.client, PolicyError);

    /**
     * Sends `calls` ({ argv: an array of strings, type: whether it is TYPE,
     * whose reply is a name }) as one POST /pipeline; resolves to one entry
     * per call: its decoded reply, or an Error (`.redisError`). Rejects on a
     * failure of the endpoint or the deadline.
     */
    const send = (calls) => {
      const commands = calls.map((c) => c.argv);
      let controller;
      let timer;
      let expired;
      // Rejects the call when the deadline passes, whatever the client still
      // does (its retries wait out a backoff no abort interrupts).
      let rejectNow;
      if (timeout > 0 && timeout !== Infinity) {
        controller = new AbortController();
        timer = setTimeout(() => {
          expired = new Error(`${commands[0][0]}: no answer from the REST endpoint within ${timeout} ms`);
          expired.timeout = true;
          controller.abort(expired);
          rejectNow?.(expired);
        }, timeout);
      }
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
      };
      let sent;
      try {
        sent = http.request({
          path: ["pipeline"],
          body: commands,
          headers: { "Upstash-Encoding": "base64" },
          signal: controller === undefined ? undefined : () => controller.signal,
        });
      } catch (error) {
        done();
        return Promise.reject(failure(error));
      }
      const answer = Promise.resolve(sent).then(
        (body) => {
          done();
          if (expired !== undefined) throw expired;
          if (!Array.isArray(body) || body.length !== commands.length) {
            throw badReply(`${Array.isArray(body) ? `${body.length} replies` : "no list of replies"} to a pipeline of ${commands.length}`);
          }
          return body.map((entry, i) => {
            if (entry === null || typeof entry !== "object") throw badReply("a pipeline entry that is no object");
            if (entry.error !== undefined && entry.error !== null) return replyError(entry.error);
            if (!("result" in entry)) throw badReply("a pipeline entry without result or error");
            return decode(entry.result, calls[i].type === true);
          });
        },
        (error) => {
          done();
          throw expired ?? failure(error);
        },
      );
      if (controller === undefined) return answer;
      return new Promise((resolve, reject) => {
        rejectNow = reject;
        answer.then(resolve, reject);
      });
    };

    /** Sends `calls` ({ argv, fallback? }) in one pipeline, then the scripts refused with NOSCRIPT again with EVAL, in one more. */
    const run = async (calls) => {
      const out = await send(calls);
      const again = [];
      for (let i = 0; i < calls.length; i++) {
        const r = out[i];
        const shape = calls[i].shape;
        if (shape !== undefined && !(r instanceof Error) && !shape(r)) {
          throw badReply(`a reply of the wrong type to ${calls[i].argv[0]} (${Array.isArray(r) ? "a list" : r === null ? "nil" : typeof r})`);
        }
        if (calls[i].fallback !== undefined && r instanceof Error && r.message.startsWith(NOSCRIPT)) again.push(i);
      }
      if (again.length > 0) {
        const replies = await send(again.map((i) => ({ argv: calls[i].fallback() })));
        again.forEach((i, j) => {
          out[i] = replies[j];
        });
      }
      return out;
    };

    const prepare = (call) => {
      if (call === null || typeof call !== "object") throw new TypeError("a pipeline call is { script, keys, args } or { args, key }");
      if (call.script !== undefined) {
        const { script } = call;
        checkScript(script);
        const keys = call.keys ?? [];
        const extra = call.args ?? [];
        return { argv: evalArgs("EVALSHA", script.sha, keys, extra), fallback: () => evalArgs("EVAL", script.source, keys, extra) };
      }
      const args = argv(call.args);
      // The command's name, upper-cased once per call.
      const name = args.length > 0 ? args[0].toUpperCase() : undefined;
      return { argv: args, shape: name === undefined ? undefined : SHAPES.get(name), type: name === "TYPE" };
    };

    const single = (call) => {
      let prepared;
      try {
        prepared = prepare(call);
      } catch (error) {
        return Promise.reject(error);
      }
      return run([prepared]).then(([r]) => {
        if (r instanceof Error) throw r;
        return r;
      });
    };

    const self = {
      kind: "upstash",
      clustered: false,
      script: (script, keys, args) => single({ script, keys, args }),
      command: (args) => single({ args }),
      pipeline: (calls) => {
        try {
          if (!Array.isArray(calls)) throw new TypeError("a pipeline is an array of calls");
          if (calls.length === 0) return Promise.resolve([]);
          return run(calls.map(prepare));
        } catch (error) {
          return Promise.reject(error);
        }
      },
      masters: async () => [self],
    };
    return self;
  }

  return { isRest, rest };
})();
