// A local Upstash REST endpoint in front of a real redis-server, for the
// tests of the REST Conn (js/redis/clients-rest.js): no Upstash emulator is on
// npm. It speaks the protocol as @upstash/redis 1.x expects it and as
// Upstash's own local server (hiett/serverless-redis-http, lib/srh/http/*)
// serves it:
//   POST /            a JSON array [command, ...args]  -> 200 {"result": r} | 400 {"error": "ERR ..."}
//   POST /pipeline    a JSON array of such arrays      -> 200 [{"result": r} | {"error": "..."}, ...]
//   POST /multi-exec  the same, in MULTI/EXEC           -> 200 [{"result": r}, ...] | 400 {"error": ...}
//   Authorization: Bearer <token>, else 401 {"error": "..."}; a body that is no JSON array: 400.
//   `Upstash-Encoding: base64`: every string of a result base64 (the status "OK"
//   as it is, as Upstash sends it); integers as numbers, nil as null.
//   The redis-server unreachable: 500 {"error": "..."}.
// Arguments reach Redis as the UTF-8 bytes of the JSON strings, as Upstash
// stores them; replies are forwarded as bytes (node-redis with Buffers).
//
// Faults for the tests: `hang()` (requests wait, unanswered, until
// `resume()`), `respond(status, body)` (the next requests get that answer
// instead), and `requests` (what was sent: path, headers, body).
import http from "node:http";
import { createClient } from "redis5";

export async function startEndpoint({ redisUrl, token = "local-token" }) {
  const client = await createClient({ url: redisUrl, disableOfflineQueue: true, socket: { reconnectStrategy: 50 } }).connect();
  client.on("error", () => {});
  // Bulk and simple strings as bytes, however deep in a reply.
  const BYTES = { typeMapping: { 36: Buffer, 43: Buffer } };
  const requests = [];
  let hanging = [];
  let hang = false;
  let forced;

  const encodeResult = (r, base64) => {
    if (r === null || r === undefined) return null;
    if (typeof r === "number") return r;
    if (Buffer.isBuffer(r)) {
      if (!base64) return r.toString("utf8");
      return r.length === 2 && r[0] === 0x4f && r[1] === 0x4b ? "OK" : r.toString("base64");
    }
    if (Array.isArray(r)) return r.map((x) => encodeResult(x, base64));
    if (typeof r === "string") return base64 && r !== "OK" ? Buffer.from(r).toString("base64") : r;
    return String(r);
  };

  /** One command: { result } or { error } (a Redis error reply), or throws when Redis cannot be reached. */
  const one = async (command, base64) => {
    if (!Array.isArray(command) || command.length === 0) return { error: "ERR Invalid command array" };
    const argv = command.map((a) => Buffer.from(typeof a === "string" ? a : JSON.stringify(a), "utf8"));
    try {
      return { result: encodeResult(await client.sendCommand(argv, BYTES), base64) };
    } catch (error) {
      if (["ErrorReply", "SimpleError", "BlobError"].includes(error?.constructor?.name)) {
        return { error: String(error.message) };
      }
      throw error;
    }
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const send = (status, body) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(typeof body === "string" ? body : JSON.stringify(body));
      };
      const text = Buffer.concat(chunks).toString("utf8");
      requests.push({ path: req.url, headers: req.headers, body: text });
      if (hang) {
        hanging.push(() => send(500, { error: "SRH: the test endpoint was resumed" }));
        return;
      }
      if (forced !== undefined) return send(forced.status, forced.body);
      if (req.method !== "POST") return send(405, { error: "method not allowed" });
      const auth = req.headers.authorization ?? "";
      if (auth !== `Bearer ${token}`) return send(401, { error: "WRONGPASS invalid or missing auth token" });
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        return send(400, { error: "ERR failed to parse the request body as JSON" });
      }
      const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
      try {
        if (req.url === "/" || req.url === "") {
          if (!Array.isArray(body)) return send(400, { error: "ERR Invalid command array" });
          const r = await one(body, base64);
          return send(r.error !== undefined ? 400 : 200, r);
        }
        if (req.url === "/pipeline") {
          if (!Array.isArray(body) || !body.every(Array.isArray)) return send(400, { error: "ERR Invalid command array" });
          // Sent at once: node-redis writes them in order on its one connection.
          return send(200, await Promise.all(body.map((c) => one(c, base64))));
        }
        if (req.url === "/multi-exec") {
          if (!Array.isArray(body) || !body.every(Array.isArray)) return send(400, { error: "ERR Invalid command array" });
          const multi = client.withTypeMapping(BYTES.typeMapping).multi();
          for (const c of body) multi.addCommand(c.map((a) => Buffer.from(String(a), "utf8")));
          const replies = await multi.exec();
          return send(200, replies.map((r) => ({ result: encodeResult(r, base64) })));
        }
        return send(404, { error: "SRH: Endpoint not found" });
      } catch (error) {
        return send(500, { error: `SRH: Unable to connect to the Redis server (${error?.message ?? error})` });
      }
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    token,
    requests,
    hang() {
      hang = true;
    },
    resume() {
      hang = false;
      const waiting = hanging;
      hanging = [];
      for (const answer of waiting) answer();
    },
    respond(status, body) {
      forced = status === undefined ? undefined : { status, body };
    },
    async stop() {
      this.resume();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
      // destroy, not quit: quit waits for a server that may be gone.
      client.destroy();
    },
  };
}
