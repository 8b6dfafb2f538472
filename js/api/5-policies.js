// js/api/5-policies.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// The policy classes, each backed by the core's checked policy (WasmPolicy).

// The wasm side of each policy, out of the users' reach.
const wasmPolicies = new WeakMap();

function call(thunk) {
  try {
    return thunk();
  } catch (error) {
    stackMoved = true; // a plain write: see `stackMoved`
    throw translate(error);
  }
}

/** Least recently used: at most `maxSize` entries. */
class LRUPolicy {
  constructor(options) {
    const { maxSize, ttl, refreshOnGet, idle } = readOptions(options, "LRUPolicy", [
      "maxSize",
      "ttl",
      "refreshOnGet",
      "idle",
    ]);
    if (maxSize === undefined) throw new CachePolicyError("invalid policy: maxSize is required for an LRUPolicy");
    if (refreshOnGet !== undefined && typeof refreshOnGet !== "boolean") {
      throw new CachePolicyError(`invalid policy: refreshOnGet must be a boolean, got ${describe(refreshOnGet)}`);
    }
    const idleS = idleSeconds(idle, "idle");
    wasmPolicies.set(
      this,
      call(() => WasmPolicy.lru(maxSizeOption(maxSize), seconds(ttl, "ttl"), refreshOnGet)),
    );
    this.maxSize = maxSize;
    this.ttl = ttl;
    this.refreshOnGet = refreshOnGet ?? true;
    this.idle = idleS;
    Object.freeze(this);
  }
}

/**
 * S3-FIFO: at most `maxSize` entries, kept by how often and how recently
 * they are read; scan-resistant. The policy to use unless you need exact LRU.
 */
class S3FIFOPolicy {
  constructor(options) {
    const { maxSize, ttl, idle } = readOptions(options, "S3FIFOPolicy", ["maxSize", "ttl", "idle"]);
    if (maxSize === undefined) throw new CachePolicyError("invalid policy: maxSize is required for an S3FIFOPolicy");
    const idleS = idleSeconds(idle, "idle");
    wasmPolicies.set(
      this,
      call(() => WasmPolicy.s3fifo(maxSizeOption(maxSize), seconds(ttl, "ttl"))),
    );
    this.maxSize = maxSize;
    this.ttl = ttl;
    this.idle = idleS;
    Object.freeze(this);
  }
}

/** Every entry expires after `ttl` seconds unless set with its own; optional capacity. */
class TTLPolicy {
  constructor(options) {
    const { ttl, maxSize, idle } = readOptions(options, "TTLPolicy", ["ttl", "maxSize", "idle"]);
    if (ttl === undefined) throw new CachePolicyError("invalid policy: ttl is required for a TTLPolicy");
    const idleS = idleSeconds(idle, "idle");
    wasmPolicies.set(
      this,
      call(() => WasmPolicy.ttl(seconds(ttl, "ttl"), maxSizeOption(maxSize))),
    );
    this.ttl = ttl;
    this.maxSize = maxSize;
    this.idle = idleS;
    Object.freeze(this);
  }
}
