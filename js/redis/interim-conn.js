// js/redis/interim-conn.js (rcore, temporary): a minimal Conn over a node-redis
// v5 single-node client, for the store's own tests until rharness's
// js/redis/clients.js lands (scripts/build-entry.cjs takes that one when it
// exists; this file is then deleted). The contract: /work/notes/redis-js-contract.md.

const INTERIM_REPLY_ERRORS = new Set(["ErrorReply", "SimpleError", "BlobError"]);

function interimMark(error) {
  if (error instanceof Error && INTERIM_REPLY_ERRORS.has(error.constructor?.name)) error.redisError = true;
  return error;
}

export function conn(client) {
  if (client === null || typeof client !== "object" || typeof client.sendCommand !== "function") {
    throw new main.CachePolicyError("RedisStore's client must be a connected node-redis v5 client (interim adapter)");
  }
  // '$' (bulk) and '+' (simple string) as bytes.
  const options = { typeMapping: { 36: Buffer, 43: Buffer } };
  const send = (args) =>
    client.sendCommand(args.map((a) => (typeof a === "string" ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength))), options).then(
      (reply) => reply,
      (error) => {
        throw interimMark(error);
      },
    );
  const script = async (s, keys, args) => {
    try {
      return await send(["EVALSHA", s.sha, String(keys.length), ...keys, ...args]);
    } catch (error) {
      if (error.redisError && String(error.message).startsWith("NOSCRIPT")) {
        return send(["EVAL", s.source, String(keys.length), ...keys, ...args]);
      }
      throw error;
    }
  };
  const self = {
    kind: "node-redis",
    clustered: false,
    script,
    command: (args) => send(args),
    pipeline: (calls) =>
      Promise.all(
        calls.map((c) =>
          (c.script ? script(c.script, c.keys, c.args) : send(c.args)).catch((error) => {
            if (error.redisError) return error;
            throw error;
          }),
        ),
      ),
    masters: async () => [self],
  };
  return self;
}
