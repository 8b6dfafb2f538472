// js/redis/3-store.js: a part of pepperpy-caching/redis (see 1-boundary.js).
//
// RedisStore: the JS MemoryStore's API over Redis, on the Rust RedisStore's
// keyspace, documents and scripts (all from src/remote/, through the wasm),
// sent with the same KEYS and ARGV as src/stores/redis/{entries,load,walks}.rs
// send them, through a Conn (js/redis/clients.js) over the user's client. A
// Rust store and a JS store with the same prefix, policy and buckets share
// every entry, the capacity index and the loads.

const STORE_OPTIONS = ["client", "prefix", "policy", "defaultTtl", "buckets", "lockLease", "wholeDatabase", "responseTimeout", "onRemove", "batch"];

const HOT = REDIS_CLIENTS.HOT;
const HOT_GET = REDIS_CLIENTS.HOT_GET;
const HOT_SET = REDIS_CLIENTS.HOT_SET;

function isConn(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.script === "function" &&
    typeof value.command === "function" &&
    typeof value.pipeline === "function" &&
    typeof value.masters === "function"
  );
}

const FLAG = (on) => (on ? "1" : "0");

/**
 * `table[i]`, made by `make(i)` the first time. `table` is a cache() (an
 * object without a prototype), so an index accessor on Array.prototype or
 * Object.prototype (a polyfill, a hostile library) is never read as a
 * cached key or number, nor can it take or refuse the caching.
 */
function cachedAt(table, i, make) {
  const cached = table[i];
  return cached !== undefined ? cached : (table[i] = make(i));
}

/** A table for cachedAt: no prototype. */
const cache = () => Object.create(null);

/**
 * A GET's failure: null when Redis answered WRONGTYPE (a load's
 * placeholder, a hash at the key: no entry yet, a miss), else thrown as
 * CacheBackendError of `what`.
 */
function missOnWrongType(what, error) {
  if (isWrongType(error)) return null;
  throw backendError(what, error);
}

/** A plain SET of a stored document, with its TTL in ms (PX) when it has one. */
const setArgv = (entry, stored, ttl) => (ttl === undefined ? ["SET", entry, stored] : ["SET", entry, stored, "PX", String(ttl)]);

// The fast ways to and from a stored document (encodeEntry, intoScratch,
// decodeDocument): js/redis/2-hot.js.

class RedisStore {
  #conn;
  /** The Conn's hot call (clients.js `sequential`), on a single node, for a Conn `conn` made; else undefined. */
  #hot;
  /** The Conn's batched get (clients.js `batcher`: the plain gets of one tick as one MGET), unless `batch: false`; else undefined. */
  #batched;
  /** The Conn's batched set without a TTL (MSET), as #batched. */
  #batchedSet;
  #space;
  #prefix;
  #clustered;
  /** undefined, or { maxSize, lru } under a capacity. */
  #bound;
  #refreshOnGet;
  #defaultTtl;
  #defaultIdle;
  #wholeDatabase;
  #lease;
  #setsSeen = 0;
  // The bucket index keys, made once each.
  #recency = cache();
  // What precedes the user key in a bucket's entry keys, by bucket.
  #heads = cache();
  #buckets;
  // Each bucket's share of the capacity, as the set script takes it (text), made once each.
  #shares = cache();
  // #read's handler of a failure, by the name of the call (made once each).
  #readFailed = Object.create(null);
  #commandFailed = Object.create(null);
  #expiry = cache();
  // This instance's loads in progress, by key: their promise of { value, bytes }.
  #flights = new Map();
  // The keys whose loaders run in this instance right now (a getOrSet for one
  // of them from inside its loader would wait on itself).
  #loading = new Set();
  // The keys whose refresh this instance is trying to start or running.
  #refreshing = new Set();
  // A cluster store's record of its bucket count: checked before the first call.
  #record;
  // The removal listener (value, key, reason), or undefined (see "removals" below).
  #onRemove;
  #c = RedisStore.#zero();

  static #zero() {
    return {
      hits: 0,
      misses: 0,
      sets: 0,
      deletes: 0,
      evictions: 0,
      expirations: 0,
      loads: 0,
      loadFailures: 0,
      totalLoadTime: 0,
      staleHits: 0,
      refreshes: 0,
      refreshFailures: 0,
      gets: 0,
      latencyTotal: 0,
      latencySamples: 0,
    };
  }

  constructor(options) {
    const { client, prefix = "", policy, defaultTtl, buckets, lockLease, wholeDatabase, responseTimeout, onRemove, batch } = readOptions(
      options,
      "RedisStore",
      STORE_OPTIONS,
    );
    if (client === undefined) {
      throw new CachePolicyError("RedisStore needs { client }: a connected node-redis or ioredis client (or cluster)");
    }
    if (typeof prefix !== "string") throw new CachePolicyError(`prefix must be a string, got ${describe(prefix)}`);
    if (!isWellFormed(prefix)) throw new CachePolicyError("prefix is not well-formed Unicode (it has a lone surrogate)");
    // The Rust builder's response_timeout: seconds, positive (default 1 s, the Conn's own default).
    const timeout = millis(responseTimeout, "responseTimeout");
    if (batch !== undefined && typeof batch !== "boolean") throw new CachePolicyError(`batch must be a boolean, got ${describe(batch)}`);
    if (isConn(client)) {
      if (timeout !== undefined) {
        throw new CachePolicyError("responseTimeout is for a node-redis or ioredis client: a Conn given as the client keeps its own timeouts");
      }
      this.#conn = client;
    } else {
      this.#conn = conn(client, timeout === undefined ? undefined : { timeout });
      // The hot call of a Conn `conn` made (never read from a Conn the user gave).
      if (this.#conn.clustered !== true) {
        this.#hot = this.#conn[HOT];
        if (batch !== false && this.#hot !== undefined) {
          this.#batched = this.#conn[HOT_GET];
          this.#batchedSet = this.#conn[HOT_SET];
        }
      }
    }
    this.#clustered = this.#conn.clustered === true;
    this.#prefix = prefix;
    if (policy !== undefined) {
      if (policy instanceof S3FIFOPolicy) {
        throw new CachePolicyError(
          "RedisStore does not implement S3FIFOPolicy (its queues would need a script per read); use LRUPolicy",
        );
      }
      if (!(policy instanceof LRUPolicy) && !(policy instanceof TTLPolicy)) {
        throw new CachePolicyError(`RedisStore's policy must be an LRUPolicy or a TTLPolicy, got ${describe(policy)}`);
      }
      if (policy.maxSize !== undefined) this.#bound = { maxSize: policy.maxSize, lru: policy instanceof LRUPolicy };
      this.#refreshOnGet = policy instanceof LRUPolicy && policy.refreshOnGet;
      this.#defaultTtl = millis(policy.ttl, "ttl");
      this.#defaultIdle = idleMillis(policy.idle, "idle");
    }
    if (defaultTtl !== undefined) {
      if (this.#defaultTtl !== undefined) {
        throw new CachePolicyError("defaultTtl and the policy's ttl both give entries a TTL: give one");
      }
      this.#defaultTtl = millis(defaultTtl, "defaultTtl");
    }
    if (buckets !== undefined && !this.#clustered) {
      throw new CachePolicyError(
        `buckets(${buckets}) is for stores on Redis Cluster; a store on one Redis keeps its entries in one keyspace`,
      );
    }
    if (buckets !== undefined && (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS)) {
      throw new CachePolicyError(`buckets must be in 1..=${MAX_BUCKETS}, got ${describe(buckets)}`);
    }
    this.#space = core(() => new wasm.RedisSpace(prefix, this.#clustered, buckets ?? DEFAULT_BUCKETS, this.#bound?.maxSize));
    this.#buckets = this.#space.bucketCount();
    this.#lease = lockLease === undefined ? LEASE_MS : millis(lockLease, "lockLease");
    if (wholeDatabase !== undefined && typeof wholeDatabase !== "boolean") {
      throw new CachePolicyError(`wholeDatabase must be a boolean, got ${describe(wholeDatabase)}`);
    }
    this.#wholeDatabase = wholeDatabase === true;
    this.#onRemove = checkListener(onRemove);
  }

  /** The prefix of every key of this store. */
  get prefix() {
    return this.#prefix;
  }

  // ---- the Conn, under the store's error rules

  /** Before a cluster store's first call: its bucket count recorded, or the same as recorded (builder.rs). */
  #ready() {
    if (!this.#clustered) return undefined;
    if (this.#record === undefined) {
      const key = this.#space.recordKey();
      const count = String(this.#space.bucketCount());
      this.#record = (async () => {
        await this.#conn.command(["SET", key, count, "NX"], key);
        const recorded = text(await this.#conn.command(["GET", key], key));
        if (recorded !== "" && recorded !== count) {
          throw new CachePolicyError(
            `the prefix ${JSON.stringify(this.#prefix)} is used on this cluster with buckets(${recorded}), not ${count}: every process sharing a prefix must use the same count (or use a new prefix)`,
          );
        }
      })().catch((error) => {
        this.#record = undefined;
        throw backendError("recording the bucket count", error);
      });
    }
    return this.#record;
  }

  async #script(what, script, keys, args) {
    if (this.#clustered) await this.#ready(); // a single node's is nothing: no await (a tick per call)
    try {
      return await this.#conn.script(script, keys, args);
    } catch (error) {
      throw backendError(what, error);
    }
  }

  /**
   * A command, its failure as CacheBackendError. A promise chain rather
   * than an async function: a call's path has one promise of ours fewer.
   */
  #command(what, args, key) {
    return this.#send(args, key, (this.#commandFailed[what] ??= (error) => {
      throw backendError(what, error);
    }));
  }

  /** The stored bytes of an entry; null for none, or a load's placeholder (missOnWrongType). */
  #read(what, entry) {
    return this.#send(["GET", entry], entry, (this.#readFailed[what] ??= (error) => missOnWrongType(what, error)));
  }

  /** `args` sent (after a cluster store's #ready), its failure through `failed`. */
  #send(args, key, failed) {
    if (this.#clustered) return this.#ready().then(() => this.#conn.command(args, key)).then(undefined, failed);
    let sent;
    try {
      sent = this.#conn.command(args, key);
    } catch (error) {
      return Promise.reject(error).then(undefined, failed);
    }
    return Promise.resolve(sent).then(undefined, failed);
  }

  #recencyOf(i) {
    return cachedAt(this.#recency, i, (j) => this.#space.recency(j));
  }

  #expiryOf(i) {
    return cachedAt(this.#expiry, i, (j) => this.#space.expiry(j));
  }

  /**
   * The checked key's Redis key (as text: prefix, bucket tag and key are
   * UTF-8), and its bucket. The key rules are Rust's: a key that may break
   * them (empty, or maybe too long in bytes) is checked by the wasm.
   */
  #locate(key) {
    checkedKey(key);
    if (key.length === 0 || key.length * 3 > MAX_KEY_LEN) core(() => wasm.checkKey(key));
    const index = this.#buckets === 1 ? 0 : this.#space.bucketIndex(key);
    // What precedes the key in an entry's Redis key, from Rust (Entry::parts).
    const head = cachedAt(this.#heads, index, (j) => this.#space.entryHead(j));
    return { entry: head + key, index };
  }

  /** The value stored in `bytes`: its text parsed here when Rust says it reads as it is, else Rust's reading of it. */
  #decode(key, bytes) {
    // A follower of this instance's load decodes the document its leader stored (text).
    return decodeDocument(key, bytes, -1);
  }

  // ---- the calls on one key (entries.rs)

  /** The value under `key`, or undefined. */
  get(key) {
    const hot = this.#hotGet();
    if (hot === undefined) return this.#getScripted(key);
    // The usual get (one GET on a single node): the Conn's hot call, and no promise but get's own.
    let located;
    try {
      located = this.#locate(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const { entry, index } = located;
    const c = this.#c;
    const started = ++c.gets % LATENCY_SAMPLE_EVERY === 1 ? now() : undefined;
    return new Promise((resolve, reject) => {
      const done = (stored) => {
        try {
          resolve(this.#gotten(key, entry, index, stored, started));
        } catch (error) {
          reject(error);
        }
      };
      const failed = (error) => {
        let stored;
        try {
          stored = missOnWrongType("get", error);
        } catch (refused) {
          reject(refused);
          return;
        }
        done(stored);
      };
      const batched = this.#batched;
      const sent = batched !== undefined ? batched(entry, done, failed) : hot(["GET", entry], entry, done, failed);
      if (!sent) this.#read("get", entry).then(done, reject);
    });
  }

  /** The Conn's hot call when a get is one GET (a single node, no recency, no idle default, a Conn of `conn`'s), else undefined. */
  #hotGet() {
    if (this.#refreshOnGet || this.#defaultIdle !== undefined) return undefined;
    return this.#hot;
  }

  /** A GET's reply read: the value (or a promise of it, when the entry has an idle header to touch), counted. */
  #gotten(key, entry, index, stored, started) {
    let fast;
    if (stored !== null) fast = quickValue(stored);
    if (stored !== null && fast === undefined) {
      // A document the quick yes leaves to Rust: one call into the wasm when it is plain.
      // Its bytes into the wasm once (the scratch buffer), for every call below.
      const n = intoScratch(stored);
      const start = wasm.plainStartIn(n);
      if (start >= 0) {
        releaseScratch();
        fast = JSON.parse(valueText(stored, start, n));
      } else {
        // An idle header, or a document only Rust reads (decodeDocument gives the scratch buffer back).
        const head = wasm.idleHeaderIn(n);
        fast = decodeDocument(key, stored, n);
        if (head !== undefined) return this.#touch(entry, index, head).then(() => this.#counted(key, stored, fast, 0, started));
      }
    }
    return this.#counted(key, stored, fast, 0, started);
  }

  /** The value of a get that read `stored` (`fast`: its value when already parsed), its counters and latency sample added. */
  #counted(key, stored, fast, expired, started) {
    const value = stored === null ? undefined : fast !== undefined ? fast : this.#decode(key, stored);
    const c = this.#c;
    if (value === undefined) c.misses++;
    else c.hits++;
    c.expirations += expired;
    if (started !== undefined) {
      c.latencyTotal += now() - started;
      c.latencySamples++;
    }
    return value;
  }

  /** get through the Conn's promises: a script (recency, idle), a cluster, or a Conn given as the client. */
  async #getScripted(key) {
    const { entry, index } = this.#locate(key);
    const c = this.#c;
    const started = ++c.gets % LATENCY_SAMPLE_EVERY === 1 ? now() : undefined;
    let stored = null;
    let expired = 0;
    if (this.#refreshOnGet) {
      const reply = await this.#script("get", SCRIPTS.get_lru, [entry, this.#recencyOf(index), this.#expiryOf(index)], []);
      if (typeof reply === "number") expired = reply;
      else stored = reply;
      return this.#counted(key, stored, undefined, expired, started);
    }
    if (this.#defaultIdle !== undefined) {
      // Every entry has an idle time: the read and its touch in one script.
      stored = await this.#script("get", SCRIPTS.get_idle, this.#withExpiry(entry, index), []);
      return this.#counted(key, stored, undefined, 0, started);
    }
    stored = await this.#read("get", entry);
    return this.#gotten(key, entry, index, stored, started);
  }

  /** The entry's key, then a bounded store's expiry index (the idle scripts' KEYS). */
  #withExpiry(entry, index) {
    return this.#bound === undefined ? [entry] : [entry, this.#expiryOf(index)];
  }

  /** Moves the expiry of an entry read with the idle header `head`, if it still has it. */
  async #touch(entry, index, head) {
    await this.#script("get", SCRIPTS.touch_idle, this.#withExpiry(entry, index), [head]);
  }

  /** Stores `value` under `key` with { ttl, metadata, tags, idle }. */
  set(key, value, options) {
    let entry;
    let index;
    let o;
    let stored;
    try {
      // The MemoryStore's order: the key's type, the value, the rest of the key, then the options.
      if (value === undefined && typeof key === "string") throw undefinedValueError("cannot store");
      ({ entry, index } = this.#locate(key));
      if (value === undefined) throw undefinedValueError("cannot store");
      o = readSetOptions(options);
      stored = encodeEntry(value, o.metadata, o.tags ?? []);
    } catch (error) {
      return Promise.reject(error);
    }
    const ttl = o.ttl ?? this.#defaultTtl;
    const idle = o.idle ?? this.#defaultIdle;
    const hot = this.#hot;
    if (hot === undefined || this.#onRemove !== undefined || o.tags !== undefined || this.#bound !== undefined || idle !== undefined) {
      return this.#setRest(key, entry, index, stored, ttl, idle, o.tags);
    }
    // The usual set (one SET on a single node): the Conn's hot call, and no promise but set's own.
    return new Promise((resolve, reject) => {
      const done = () => {
        this.#c.sets++;
        resolve();
      };
      const failed = (error) => reject(backendError("set", error));
      const batched = this.#batchedSet;
      if (ttl === undefined && batched !== undefined && batched(entry, stored, done, failed)) return;
      const argv = setArgv(entry, stored, ttl);
      if (!hot(argv, entry, done, failed)) this.#conn.command(argv, entry).then(done, failed);
    });
  }

  /** set's other ways: with a listener, tags, a capacity or an idle time, on a cluster, or through a Conn given as the client. */
  async #setRest(key, entry, index, stored, ttl, idle, tags) {
    if (this.#onRemove !== undefined) return this.#setReporting(key, entry, index, stored, ttl, idle, tags);
    if (tags !== undefined) await this.#writeTagged("set", entry, index, stored, ttl, idle, tags);
    else await this.#write("set", entry, index, stored, ttl, idle);
  }

  // ---- removals: what this process removes, told to the listener (listen.rs)

  /** The removal notices of one call (value, key, reason, flat), or undefined without a listener. */
  #notices() {
    return this.#onRemove === undefined ? undefined : [];
  }

  /** Calls the listener with the notices (js/api/1-shared.js `deliver`); `later`: its error has no caller (a load, a failed call). */
  #notify(notices, later) {
    deliver(this.#onRemove, notices, later);
  }

  /**
   * Queues the entries a script removed, `[key, bytes, ...]` from `reply[from]`
   * (Redis keys and stored bytes), decoded, with `reason`; those that are not
   * this store's or do not decode (written by something else) are skipped.
   */
  #noteRemoved(notices, reason, reply, from) {
    if (notices === undefined || !Array.isArray(reply)) return;
    const raws = [];
    const docs = [];
    for (let i = from; i + 1 < reply.length; i += 2) {
      if (reply[i] instanceof Uint8Array && reply[i + 1] instanceof Uint8Array) {
        raws.push(reply[i]);
        docs.push(reply[i + 1]);
      }
    }
    if (raws.length === 0) return;
    const keys = this.#userKeys(raws, undefined);
    for (let i = 0; i < raws.length; i++) {
      if (keys[i] === null) continue;
      let value;
      try {
        value = this.#decode(keys[i], docs[i]);
      } catch {
        continue;
      }
      notices.push(value, keys[i], reason);
    }
  }

  /** Queues the value a write of `key` replaced (its stored bytes, or null: none). */
  #noteReplaced(notices, key, bytes) {
    if (notices === undefined || !(bytes instanceof Uint8Array)) return;
    let value;
    try {
      value = this.#decode(key, bytes);
    } catch {
      return;
    }
    notices.push(value, key, "replaced");
  }

  /**
   * The write of an entry by the script that also returns what it replaced
   * and, under a capacity, what it evicted (SET_RETURNING,
   * SET_BOUNDED_RETURNING_CALL): a call for a Conn.
   */
  #returningCall(entry, index, stored, ttl, idle) {
    const bound = this.#bound;
    if (bound === undefined) {
      return { script: SCRIPTS.set_returning, keys: [entry], args: [stored, String(ttl ?? 0), String(idle ?? 0)] };
    }
    const sample = this.#setsSeen++ % SAMPLE_EVERY === 0;
    return {
      script: SCRIPTS.set_bounded_returning,
      keys: [entry, this.#recencyOf(index), this.#expiryOf(index)],
      args: [stored, String(ttl ?? 0), this.#shareOf(index), FLAG(bound.lru), FLAG(sample), String(idle ?? 0)],
    };
  }

  /** Bucket `index`'s share of a bounded store's capacity (as the scripts take it). */
  #shareOf(index) {
    return cachedAt(this.#shares, index, (j) => String(this.#space.share(this.#bound.maxSize, j)));
  }

  /**
   * The write of an entry (entries.rs `write`), a call for a Conn: under a
   * capacity the bounded script, with an idle time the idle script (its
   * header holds the TTL deadline on Redis's clock), else one SET.
   */
  #writeCall(entry, index, stored, ttl, idle) {
    const bound = this.#bound;
    if (bound !== undefined) {
      const sample = this.#setsSeen++ % SAMPLE_EVERY === 0;
      return {
        script: SCRIPTS.set_bounded,
        keys: [entry, this.#recencyOf(index), this.#expiryOf(index)],
        args: [stored, String(ttl ?? 0), this.#shareOf(index), FLAG(bound.lru), FLAG(sample), String(idle ?? 0)],
      };
    }
    if (idle !== undefined) return { script: SCRIPTS.set_idle, keys: [entry], args: [stored, String(ttl ?? 0), String(idle)] };
    return { args: setArgv(entry, stored, ttl), key: entry };
  }

  /** Reads a #returningCall's reply: counts and settles a bounded write, queues the replaced and evicted entries. */
  async #noteSet(what, notices, key, index, reply) {
    if (this.#bound === undefined) {
      this.#noteReplaced(notices, key, reply);
      return;
    }
    if (!Array.isArray(reply) || reply.length < 4) throw new CacheBackendError(`${what} on Redis: unexpected reply ${describe(reply)}`);
    await this.#settle(index, reply);
    this.#noteReplaced(notices, key, reply[3]);
    this.#noteRemoved(notices, "evicted", reply, 4);
  }

  /** `set` with a listener: the write that returns what it replaced and evicted, then the listener. */
  async #setReporting(key, entry, index, stored, ttl, idle, tags) {
    const notices = [];
    if (tags !== undefined) {
      await this.#writeTagged("set", entry, index, stored, ttl, idle, tags, notices, key);
    } else {
      const call = this.#returningCall(entry, index, stored, ttl, idle);
      const reply = await this.#script("set", call.script, call.keys, call.args);
      this.#c.sets++;
      await this.#noteSet("set", notices, key, index, reply);
    }
    this.#notify(notices);
  }

  /** Writes an entry's bytes, under the capacity if there is one (#writeCall). */
  async #write(what, entry, index, stored, ttl, idle) {
    const call = this.#writeCall(entry, index, stored, ttl, idle);
    if (call.script === undefined) {
      await this.#command(what, call.args, call.key);
      this.#c.sets++;
      return;
    }
    const reply = await this.#script(what, call.script, call.keys, call.args);
    this.#c.sets++;
    if (this.#bound === undefined) return;
    // #settle, without its await unless the index was lost (the usual reply).
    if (reply[2] === 1) await this.#settle(index, reply);
    else {
      this.#c.expirations += reply[0];
      this.#c.evictions += reply[1];
    }
  }

  // ---- tags (tags.rs): a tag set per tag and bucket lists the entries tagged with it

  /** The listing call of `entry` (bucket `index`) in the tag sets of `tags`, for an entry living `ttl` ms (undefined: for ever). */
  #registerCall(entry, index, tags, ttl) {
    const sets = tags.map((tag) => this.#space.tagSet(index, tag));
    // The set outlives the entry: its TTL starts after the registration, and a load's entry after its lease at most.
    const setTtl = ttl === undefined ? 0 : ttl + SLACK_MS + this.#lease;
    return { script: SCRIPTS.register_tags, keys: sets, args: [entry, String(setTtl), ...tags] };
  }

  /**
   * A tagged write: the write and the listing of its key in one pipeline
   * (one round trip), in that order. If it fails, the entry is unlinked
   * (best effort): an entry carrying a tag that no set lists must not stay.
   */
  async #writeTagged(what, entry, index, stored, ttl, idle, tags, notices, key) {
    await this.#ready();
    const bound = this.#bound;
    const write = notices !== undefined ? this.#returningCall(entry, index, stored, ttl, idle) : this.#writeCall(entry, index, stored, ttl, idle);
    let replies;
    try {
      replies = await this.#conn.pipeline([write, this.#registerCall(entry, index, tags, ttl)]);
      for (const reply of replies) if (reply instanceof Error) throw reply;
    } catch (error) {
      await this.#unlink(what, index, [entry]).catch(() => {});
      throw backendError(what, error);
    }
    this.#c.sets++;
    if (notices !== undefined) await this.#noteSet(what, notices, key, index, replies[0]);
    else if (bound !== undefined) await this.#settle(index, replies[0]);
  }

  /** Lists an entry just written in its tag sets; on failure unlinks it again (best effort) and throws. */
  async #registerWritten(what, entry, index, tags, ttl) {
    const call = this.#registerCall(entry, index, tags, ttl);
    try {
      await this.#script(what, call.script, call.keys, call.args);
    } catch (error) {
      await this.#unlink(what, index, [entry]).catch(() => {});
      throw error;
    }
  }

  /**
   * Removes every entry carrying one of `tags`, in every process's view:
   * one script per bucket (a cluster's in parallel). How many it removed.
   */
  async invalidateTags(tags) {
    const wanted = readInvalidateTags(tags);
    const unique = [...new Set(wanted)].sort();
    if (unique.length === 0) return 0;
    const bounded = this.#bound !== undefined;
    const notices = this.#notices();
    let removed = 0;
    const n = this.#space.bucketCount();
    try {
      for (let from = 0; from < n; from += SIZE_CONCURRENCY) {
        const calls = [];
        for (let i = from; i < Math.min(n, from + SIZE_CONCURRENCY); i++) {
          const sets = unique.map((tag) => this.#space.tagSet(i, tag));
          const keys = bounded ? [this.#recencyOf(i), this.#expiryOf(i), ...sets] : sets;
          // With a listener the script also returns what it removed: {removed, key, bytes, ...}.
          calls.push(this.#script("invalidateTags", SCRIPTS.invalidate_tags, keys, [FLAG(bounded), FLAG(notices !== undefined), ...unique]));
        }
        const replies = await Promise.allSettled(calls);
        for (const reply of replies) {
          if (reply.status !== "fulfilled") continue;
          if (notices === undefined) removed += reply.value;
          else {
            removed += reply.value[0];
            this.#noteRemoved(notices, "invalidated", reply.value, 1);
          }
        }
        for (const reply of replies) if (reply.status === "rejected") throw reply.reason;
      }
    } catch (error) {
      this.#c.deletes += removed;
      this.#notify(notices, true);
      throw error;
    }
    this.#c.deletes += removed;
    this.#notify(notices);
    return removed;
  }

  /** The tags of the entry under `key` ([] when it has none), or undefined. */
  async getTags(key) {
    const { entry } = this.#locate(key);
    const stored = await this.#read("getTags", entry);
    return stored === null ? undefined : core(() => wasm.decodeTags(key, stored));
  }

  /** Removes the entry under `key`; whether it existed (a load's placeholder is removed, and is no entry). */
  async delete(key) {
    const { entry, index } = this.#locate(key);
    const notices = this.#notices();
    const existed = (await this.#unlink("delete", index, [entry], this.#conn, notices, "deleted")) > 0;
    if (existed) this.#c.deletes++;
    this.#notify(notices);
    return existed;
  }

  /**
   * Deletes entries of bucket `index` (and load placeholders among them); how
   * many entries existed. With `notices`, the script also returns the
   * removed entries' bytes, queued there with `reason`.
   */
  async #unlink(what, index, entries, via = this.#conn, notices = undefined, reason = undefined) {
    if (entries.length === 0) return 0;
    const bounded = this.#bound !== undefined;
    const keys = bounded ? [this.#recencyOf(index), this.#expiryOf(index), ...entries] : entries;
    await this.#ready();
    let reply;
    try {
      reply = await via.script(SCRIPTS.delete, keys, [FLAG(bounded), FLAG(notices !== undefined)]);
    } catch (error) {
      throw backendError(what, error);
    }
    if (notices === undefined) return reply;
    if (!Array.isArray(reply) || typeof reply[0] !== "number") throw new CacheBackendError(`${what} on Redis: unexpected reply ${describe(reply)}`);
    this.#noteRemoved(notices, reason, reply, 1);
    return reply[0];
  }

  /** Whether a live entry is under `key`. */
  async has(key) {
    const { entry } = this.#locate(key);
    // TYPE, not EXISTS: a load's placeholder (a hash) is no entry.
    return text(await this.#command("has", ["TYPE", entry], entry)) === "string";
  }

  /** The entry's metadata ({} when it has none), or undefined. */
  async getMetadata(key) {
    const { entry } = this.#locate(key);
    const stored = await this.#read("getMetadata", entry);
    return stored === null ? undefined : JSON.parse(core(() => wasm.decodeMetadata(key, stored)));
  }

  /** Merges `metadata` into the entry's (top-level keys replaced); whether the entry exists. */
  async updateMetadata(key, metadata) {
    const { entry } = this.#locate(key);
    const update = copyMetadata(metadata);
    for (let attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
      const current = await this.#read("updateMetadata", entry);
      if (current === null) return false;
      const updated = core(() => wasm.mergeMetadata(key, current, update));
      const written = await this.#script("updateMetadata", SCRIPTS.replace_if_unchanged, [entry], [current, updated]);
      if (written === 1) return true;
    }
    throw new CacheBackendError(`updateMetadata on Redis: the entry changed under every one of ${UPDATE_ATTEMPTS} attempts`);
  }

  // ---- the batch calls (batch.rs): one round trip per bucket

  /**
   * The keys, checked, with their entries, grouped by bucket: Map index ->
   * positions. `check(pos)`, if given, runs after each key is checked (the
   * caller's check of what goes with it, in the MemoryStore's order).
   */
  #group(keys, what, check) {
    const list = listOf(keys, what, "an array of keys");
    // A loop, not map: a hole is a key (undefined: CacheKeyError), as the MemoryStore's.
    const located = new Array(list.length);
    for (let pos = 0; pos < list.length; pos++) {
      located[pos] = this.#locate(list[pos]);
      check?.(pos);
    }
    const groups = new Map();
    for (let pos = 0; pos < located.length; pos++) {
      const list = groups.get(located[pos].index);
      if (list === undefined) groups.set(located[pos].index, [pos]);
      else list.push(pos);
    }
    return { list, located, groups };
  }

  /** The values under `keys` (undefined for each miss), in order. */
  async getMany(keys) {
    const { list, located, groups } = this.#group(keys, "getMany");
    const out = new Array(list.length).fill(undefined);
    if (list.length === 0) return out;
    const started = now();
    let expired = 0;
    await Promise.all(
      [...groups].map(async ([index, positions]) => {
        const entries = positions.map((pos) => located[pos].entry);
        let stored;
        if (this.#refreshOnGet) {
          stored = [];
          const calls = [];
          for (let at = 0; at < entries.length; at += SCRIPT_CHUNK) {
            const chunk = entries.slice(at, at + SCRIPT_CHUNK);
            calls.push({ script: SCRIPTS.get_lru_many, keys: [this.#recencyOf(index), this.#expiryOf(index), ...chunk], args: [] });
          }
          for (const reply of await this.#pipeline("getMany", calls)) {
            expired += reply[0];
            for (let i = 1; i < reply.length; i++) stored.push(reply[i] instanceof Uint8Array ? reply[i] : null);
          }
        } else if (this.#defaultIdle !== undefined) {
          const calls = entries.map((entry) => ({ script: SCRIPTS.get_idle, keys: this.#withExpiry(entry, index), args: [] }));
          stored = await this.#pipeline("getMany", calls);
        } else {
          // MGET answers nil for a load's placeholder (a hash): a miss, as for get.
          stored = await this.#command("getMany", ["MGET", ...entries], entries[0]);
          const touches = [];
          for (let i = 0; i < stored.length; i++) {
            const head = stored[i] === null ? undefined : wasm.idleHeader(stored[i]);
            if (head !== undefined) touches.push({ script: SCRIPTS.touch_idle, keys: this.#withExpiry(entries[i], index), args: [head] });
          }
          if (touches.length !== 0) await this.#pipeline("getMany", touches);
        }
        for (let i = 0; i < positions.length; i++) {
          if (stored[i] !== null) out[positions[i]] = this.#decode(list[positions[i]], stored[i]);
        }
      }),
    );
    const c = this.#c;
    const hits = out.filter((v) => v !== undefined).length;
    c.hits += hits;
    c.misses += out.length - hits;
    c.expirations += expired;
    c.latencyTotal += (now() - started) / out.length;
    c.latencySamples++;
    return out;
  }

  /** Stores every [key, value] pair with the same options; everything checked and encoded before anything is sent. */
  async setMany(entries, options) {
    const list = listOf(entries, "setMany", "[key, value] pairs");
    // A loop, not map: a hole is no pair (TypeError), as the MemoryStore's.
    const pairs = new Array(list.length);
    for (let i = 0; i < list.length; i++) {
      const pair = list[i];
      if (!Array.isArray(pair)) throw new TypeError(`setMany takes [key, value] pairs, got ${describe(pair)} at ${i}`);
      pairs[i] = [pair[0], pair[1]];
    }
    // The MemoryStore's order: each key then its value, then the options.
    const { located, groups } = this.#group(
      pairs.map(([key]) => key),
      "setMany",
      (pos) => {
        if (pairs[pos][1] === undefined) throw undefinedValueError("setMany cannot store");
      },
    );
    const o = readSetOptions(options);
    const ttl = o.ttl ?? this.#defaultTtl;
    const idle = o.idle ?? this.#defaultIdle;
    const stored = pairs.map(([, value]) => encodeEntry(value, o.metadata, o.tags ?? []));
    const notices = this.#notices();
    if (o.tags !== undefined) {
      // Each written and listed in one pipeline, as a tagged set; every entry tried, the first failure reported.
      let first;
      for (let i = 0; i < pairs.length; i++) {
        try {
          await this.#writeTagged("setMany", located[i].entry, located[i].index, stored[i], ttl, idle, o.tags, notices, pairs[i][0]);
        } catch (error) {
          first ??= error;
        }
      }
      this.#notify(notices, first !== undefined);
      if (first !== undefined) throw first;
      return;
    }
    const bound = this.#bound;
    const written = await Promise.allSettled(
      [...groups].map(async ([index, positions]) => {
        if (notices !== undefined) {
          // The scripts that also return what each write replaced and evicted, one pipeline per bucket.
          const calls = positions.map((pos) => this.#returningCall(located[pos].entry, index, stored[pos], ttl, idle));
          const replies = await this.#pipeline("setMany", calls);
          this.#c.sets += positions.length;
          for (let i = 0; i < positions.length; i++) await this.#noteSet("setMany", notices, pairs[positions[i]][0], index, replies[i]);
          return;
        }
        if (bound !== undefined) {
          const calls = [];
          for (let at = 0; at < positions.length; at += SCRIPT_CHUNK) {
            const chunk = positions.slice(at, at + SCRIPT_CHUNK);
            let samples = "";
            const args = [];
            for (const pos of chunk) {
              samples += FLAG(this.#setsSeen++ % SAMPLE_EVERY === 0);
              args.push(stored[pos], String(ttl ?? 0), String(idle ?? 0));
            }
            calls.push({
              script: SCRIPTS.set_bounded_many,
              keys: [this.#recencyOf(index), this.#expiryOf(index), ...chunk.map((pos) => located[pos].entry)],
              args: [this.#shareOf(index), FLAG(bound.lru), samples, ...args],
            });
          }
          const replies = await this.#pipeline("setMany", calls);
          this.#c.sets += positions.length;
          for (const reply of replies) await this.#settle(index, reply);
          return;
        }
        const calls = positions.map((pos) => {
          const entry = located[pos].entry;
          if (idle !== undefined) return { script: SCRIPTS.set_idle, keys: [entry], args: [stored[pos], String(ttl ?? 0), String(idle)] };
          return { args: setArgv(entry, stored[pos], ttl), key: entry };
        });
        await this.#pipeline("setMany", calls);
        this.#c.sets += positions.length;
      }),
    );
    const failed = written.find((result) => result.status === "rejected");
    this.#notify(notices, failed !== undefined);
    if (failed !== undefined) throw failed.reason;
  }

  /** Removes the entries under `keys`; how many existed. */
  async deleteMany(keys) {
    // A key listed twice would be counted twice by the script.
    const unique = [...new Set(listOf(keys, "deleteMany", "an array of keys"))];
    const { located, groups } = this.#group(unique, "deleteMany");
    const notices = this.#notices();
    const counts = await Promise.allSettled(
      [...groups].map(async ([index, positions]) => {
        let removed = 0;
        for (let at = 0; at < positions.length; at += DELETE_CHUNK) {
          const chunk = positions.slice(at, at + DELETE_CHUNK).map((pos) => located[pos].entry);
          removed += await this.#unlink("deleteMany", index, chunk, this.#conn, notices, "deleted");
        }
        return removed;
      }),
    );
    // What was deleted counts (and is told), even when another bucket failed.
    let removed = 0;
    for (const count of counts) if (count.status === "fulfilled") removed += count.value;
    this.#c.deletes += removed;
    const failed = counts.find((count) => count.status === "rejected");
    this.#notify(notices, failed !== undefined);
    if (failed !== undefined) throw failed.reason;
    return removed;
  }

  /** Several calls in one round trip; the first error reply (or failure) thrown. */
  async #pipeline(what, calls) {
    await this.#ready();
    let replies;
    try {
      replies = await this.#conn.pipeline(calls);
    } catch (error) {
      throw backendError(what, error);
    }
    for (const reply of replies) if (reply instanceof Error && !isWrongType(reply)) throw backendError(what, reply);
    return replies.map((reply) => (reply instanceof Error ? null : reply));
  }

  // ---- a bounded store's index (walks.rs `settle`, `rebuild_index`)

  /** Counts what a bounded write's script reported, and rebuilds the index if it was lost. */
  async #settle(index, [expired, evicted, lost]) {
    this.#c.expirations += expired;
    this.#c.evictions += evicted;
    if (lost === 1) await this.#rebuild(index);
  }

  /**
   * Rebuilds bucket `index`'s lost index: adopts every entry of the bucket,
   * a page at a time, and evicts down to its share. Best effort: the write
   * that asked was applied; on failure the sentinel is removed again so a
   * later write retries.
   */
  async #rebuild(index) {
    const bound = this.#bound;
    const recency = this.#recencyOf(index);
    const expiry = this.#expiryOf(index);
    const adopt = async (page) => {
      const [, evicted, expired, lost] = await this.#conn.script(SCRIPTS.adopt, [recency, expiry, ...page], [
        this.#shareOf(index),
        FLAG(bound.lru),
      ]);
      this.#c.evictions += evicted;
      this.#c.expirations += expired;
      return lost === 1;
    };
    try {
      if (this.#clustered) {
        // A bucket's keys are its slot's: a slot holding few keys is listed directly.
        const slot = String(wasm.slot(recency));
        const count = await this.#conn.command(["CLUSTER", "COUNTKEYSINSLOT", slot], recency);
        if (count <= SLOT_LIST_MAX) {
          const listed = await this.#conn.command(["CLUSTER", "GETKEYSINSLOT", slot, String(count)], recency);
          const mine = this.#entriesOf(listed, undefined).map(([raw]) => raw);
          for (let at = 0; at < mine.length; at += Number(SCAN_COUNT)) {
            if (await adopt(mine.slice(at, at + Number(SCAN_COUNT)))) return;
          }
          return;
        }
      }
      const match = this.#space.scanMatch(undefined, index);
      let cursor = "0";
      do {
        const [next, page] = await this.#conn.command(["SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT, "TYPE", "string"], recency);
        const mine = this.#entriesOf(page, undefined).map(([raw]) => raw);
        if (mine.length !== 0 && (await adopt(mine))) return;
        cursor = text(next);
      } while (cursor !== "0");
    } catch {
      try {
        await this.#conn.command(["ZREM", bound.lru ? recency : expiry, ""], recency);
      } catch {
        // The next write finds the index incomplete again: nothing else to do.
      }
    }
  }

  // ---- the calls over many keys (walks.rs)

  /** The entries of a page of Redis keys that are this store's and match `pattern`: [raw, key] each. */
  #entriesOf(page, pattern) {
    if (page.length === 0) return [];
    const keys = this.#userKeys(page, pattern);
    const out = [];
    for (let i = 0; i < page.length; i++) if (keys[i] !== null) out.push([page[i], keys[i]]);
    return out;
  }

  /** The user key of each Redis key of `page` (bytes), or null where it is not this store's entry matching `pattern`. */
  #userKeys(page, pattern) {
    let total = 0;
    for (const raw of page) total += raw.length;
    const bytes = new Uint8Array(total);
    const ends = new Uint32Array(page.length);
    let at = 0;
    for (let i = 0; i < page.length; i++) {
      bytes.set(page[i], at);
      at += page[i].length;
      ends[i] = at;
    }
    return core(() => this.#space.userKeys(bytes, ends, pattern));
  }

  /**
   * Walks the entries matching `pattern` (all if undefined) a SCAN page at
   * a time, on every master at once; with `remove`, deletes each page and
   * returns how many existed, else adds the user keys to `found`.
   */
  async #walk(what, pattern, remove, found, notices) {
    await this.#ready();
    const match = core(() => this.#space.scanMatch(pattern, undefined));
    let masters;
    try {
      masters = await this.#conn.masters();
    } catch (error) {
      throw backendError(what, error);
    }
    const counts = await Promise.all(masters.map((node) => this.#walkNode(what, node, match, pattern, remove, found, notices)));
    return counts.reduce((a, b) => a + b, 0);
  }

  async #walkNode(what, node, match, pattern, remove, found, notices) {
    const scan = async (cursor) => {
      const args = ["SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT];
      // Entries only when listing: a deleting walk removes load placeholders too.
      if (!remove) args.push("TYPE", "string");
      try {
        const [next, page] = await node.command(args);
        return [text(next), page];
      } catch (error) {
        throw backendError(what, error);
      }
    };
    let removed = 0;
    let [cursor, page] = await scan("0");
    for (;;) {
      const entries = this.#entriesOf(page, pattern);
      const next = cursor === "0" ? undefined : scan(cursor);
      // If this page's deletes fail first, the walk ends with their error and
      // never awaits `next`: its rejection must not go unhandled (it would
      // end a Node process). Awaited below, it still rejects there.
      next?.catch(() => {});
      if (remove) {
        // A page's deletes and the next SCAN go out together: one round trip per page.
        const byBucket = new Map();
        for (const [raw, key] of entries) {
          const index = this.#buckets === 1 ? 0 : this.#space.bucketIndex(key);
          const list = byBucket.get(index);
          if (list === undefined) byBucket.set(index, [raw]);
          else list.push(raw);
        }
        const reason = what === "clear" ? "cleared" : "invalidated";
        const deleted = await Promise.all([...byBucket].map(([index, raws]) => this.#unlink(what, index, raws, node, notices, reason)));
        for (const n of deleted) removed += n;
      } else {
        for (const [, key] of entries) found.add(key);
      }
      if (next === undefined) return removed;
      [cursor, page] = await next;
    }
  }

  #checkMayDeleteMany(what) {
    if (this.#prefix === "" && !this.#wholeDatabase) {
      throw new CachePolicyError(
        `${what} on a RedisStore without a prefix could delete keys that are not the store's; give the store a prefix, or allow it with { wholeDatabase: true } if the database is its alone`,
      );
    }
  }

  /** Removes every entry whose key matches the glob `pattern`; how many. */
  async invalidate(pattern) {
    checkedPattern(pattern);
    return this.#removeMatching("invalidate", pattern);
  }

  /**
   * The deleting walk of `invalidate` and `clear` (`pattern` undefined):
   * counts what it removed and tells the listener, after the walk, or
   * (its errors reported, not thrown) when the walk failed part way.
   */
  async #removeMatching(what, pattern) {
    this.#checkMayDeleteMany(what);
    const notices = this.#notices();
    let removed;
    try {
      removed = await this.#walk(what, pattern, true, undefined, notices);
    } catch (error) {
      this.#notify(notices, true);
      throw error;
    }
    this.#c.deletes += removed;
    this.#notify(notices);
    return removed;
  }

  /** The keys of the live entries, those matching `pattern` if given. */
  async keys(pattern) {
    if (pattern !== undefined) checkedPattern(pattern);
    const found = new Set();
    await this.#walk("keys", pattern, false, found);
    return [...found];
  }

  /** Removes every entry of the store. */
  async clear() {
    await this.#removeMatching("clear", undefined);
  }

  /** How many entries the store holds: by the capacity index if bounded, else by a walk. */
  async size() {
    const bound = this.#bound;
    if (bound !== undefined) {
      let total = 0;
      const n = this.#space.bucketCount();
      for (let from = 0; from < n && total >= 0; from += SIZE_CONCURRENCY) {
        const calls = [];
        for (let i = from; i < Math.min(n, from + SIZE_CONCURRENCY); i++) {
          const members = bound.lru ? this.#recencyOf(i) : this.#expiryOf(i);
          calls.push(this.#script("size", SCRIPTS.size_bounded, [members, this.#expiryOf(i)], []));
        }
        for (const count of await Promise.all(calls)) {
          // -1: no index (new, or lost until the next set rebuilds it): count by walking.
          total = total < 0 || count < 0 ? -1 : total + count;
        }
      }
      if (total >= 0) return total;
    }
    const found = new Set();
    await this.#walk("size", undefined, false, found);
    return found.size;
  }

  // ---- read-through (load.rs) and stale-while-revalidate (refresh.rs)

  /**
   * The live value under `key`, or else the value `loader({ key, signal })`
   * returns or resolves to, stored with `options` and returned. One loader
   * runs per key across every process sharing the store (Rust's too): the
   * others wait for its value. With `grace`, stale-while-revalidate: a value
   * older than `ttl` is served within the grace period while one refresh
   * runs in the background, one per key across every process.
   */
  async getOrSet(key, loader, options) {
    checkedKey(key);
    if (typeof loader !== "function") throw new TypeError(`getOrSet's loader must be a function, got ${describe(loader)}`);
    const o = readLoadOptions(options);
    // A loader asking for its own key, directly or through other keys' loaders, would wait on itself.
    const chain = LOADING?.getStore();
    if (this.#loading.has(key) || loadsUnder(chain, this, key)) throw reentrantError(key);
    const { entry, index } = this.#locate(key);
    if (o.signal?.aborted) throw o.signal.reason;
    const idle = o.idle ?? this.#defaultIdle;
    const how =
      o.grace !== undefined
        ? // Stored to live until the grace ends, stamped fresh for `ttl`.
          { ttl: o.ttl + o.grace, fresh: o.ttl, idle, metadata: o.metadata, tags: o.tags }
        : { ttl: o.ttl ?? this.#defaultTtl, fresh: 0, idle, metadata: o.metadata, tags: o.tags };
    const call = this.#call(key, loader, o, how, chain);
    try {
      return await call.race(o.grace !== undefined ? this.#getOrRefresh(key, entry, index, call) : this.#getOrLoad(key, entry, index, call));
    } finally {
      call.end();
    }
  }

  /** getOrSet without `grace`: the live value, or this instance's load of the key. */
  async #getOrLoad(key, entry, index, call) {
    if (!this.#flights.has(key)) {
      const value = await this.get(key);
      if (value !== undefined) return value;
    }
    return this.#lead(key, entry, index, call);
  }

  /**
   * One getOrSet caller: its loader and options, and its way out for the
   * whole call (its signal, its softTimeout): `race(promise)` rejects with
   * its reason when it leaves (what it waited on goes on); `end()` removes
   * its listener and timer.
   */
  #call(key, loader, o, how, chain) {
    const call = { loader, o, how, chain, leave: undefined, resolve: undefined, reject: undefined, race: (p) => p, end: () => {} };
    if (o.signal === undefined && o.softTimeout === undefined) return call;
    let timer;
    let onAbort;
    const gone = new Promise((_, reject) => {
      const out = (reason, abandon) => {
        call.end();
        reject(reason);
        call.leave?.(reason, abandon);
      };
      if (o.signal !== undefined) {
        onAbort = () => out(o.signal.reason, true);
        o.signal.addEventListener("abort", onAbort, { once: true });
      }
      if (o.softTimeout !== undefined) {
        timer = setTimeout(
          () => out(new CacheTimeoutError(`the load of ${shownKey(key)} took longer than its softTimeout of ${o.softTimeout / 1000} s`), false),
          o.softTimeout,
        );
      }
    });
    gone.catch(() => {});
    call.end = () => {
      clearTimeout(timer);
      if (onAbort !== undefined) o.signal.removeEventListener("abort", onAbort);
    };
    call.race = (promise) => Promise.race([promise, gone]);
    return call;
  }

  /**
   * A miss: `call` joins this instance's load of `key`, or leads a new one
   * (one per key: later callers wait for it; the leader gets the loaded
   * value, the others a copy from the stored bytes). A leader that leaves
   * abandons its run (its loader's signal aborts, its placeholder is
   * released) and the load passes to one waiter, which runs its own loader,
   * as the MemoryStore's Flights do.
   */
  #lead(key, entry, index, call) {
    let flight = this.#flights.get(key);
    const leads = flight === undefined;
    if (leads) {
      flight = { key, entry, index, leader: undefined, waiters: new Set(), controller: undefined };
      this.#flights.set(key, flight);
    }
    return new Promise((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
      call.leave = (reason, abandon) => this.#leave(flight, call, reason, abandon);
      if (leads) this.#run(flight, call);
      else flight.waiters.add(call);
    });
  }

  /** Runs `leader`'s load for `flight`, under a signal of the flight's own. */
  #run(flight, leader) {
    flight.leader = leader;
    const controller = new AbortController();
    flight.controller = controller;
    // The leader's options, but the flight's signal (the caller's way out is its `race`), and the leader's chain of loads.
    const o = { ...leader.o, signal: controller.signal, softTimeout: undefined, chain: leader.chain };
    const land = (ok, result) => {
      if (flight.controller !== controller) return; // abandoned: a waiter runs the load now
      flight.controller = undefined;
      if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
      if (ok) leader.resolve(result.value);
      else leader.reject(result);
      for (const waiter of flight.waiters) {
        if (!ok) waiter.reject(result);
        else {
          try {
            waiter.resolve(this.#decode(flight.key, result.bytes));
          } catch (error) {
            waiter.reject(error);
          }
        }
      }
      flight.waiters.clear();
    };
    this.#loadShared(flight.key, flight.entry, flight.index, leader.loader, o, leader.how).then(
      (result) => land(true, result),
      (error) => land(false, error),
    );
  }

  /**
   * `call` left with `reason` (its rejection is its own `race`'s): a waiter
   * just goes. A leader whose softTimeout passed leaves its load running (the
   * other callers, here and in other processes, wait for it, and it stores
   * its value); a leader whose signal aborted (`abandon`) hands the load over.
   */
  #leave(flight, call, reason, abandon) {
    if (flight.leader !== call) {
      flight.waiters.delete(call);
      return;
    }
    if (!abandon) return;
    const controller = flight.controller;
    if (controller === undefined) return; // the load had ended
    flight.controller = undefined;
    // Its loader's signal aborts with the leader's reason, as the MemoryStore's.
    controller.abort(reason);
    const [next] = flight.waiters;
    if (next === undefined) {
      if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
      return;
    }
    flight.waiters.delete(next);
    this.#run(flight, next);
  }

  /**
   * The value under `key` once one caller in any process has loaded and
   * stored it: found, or loaded here under the key's placeholder (the hash
   * `{load = token}` in the entry's own Redis key, for the lease).
   */
  async #loadShared(key, entry, index, loader, o, how) {
    const token = newToken();
    let armed = false;
    let pause = POLL_FIRST_MS;
    try {
      for (;;) {
        if (o.signal?.aborted) throw o.signal.reason;
        // From before the attempt: a lost reply may have taken the placeholder all the same.
        armed = true;
        // A tagged load lists its key in the tag sets with its placeholder, atomically:
        // an invalidateTags from then on deletes the placeholder, and the load stores nothing.
        const sets = (how.tags ?? []).map((tag) => this.#space.tagSet(index, tag));
        const args = sets.length === 0 ? [token, String(this.#lease)] : [token, String(this.#lease), String(this.#lease + SLACK_MS)];
        const reply = await this.#script("getOrSet", SCRIPTS.get_or_lock, [entry, ...sets], args);
        if (reply === 1) break;
        armed = false;
        if (reply === 0) {
          // Another caller's load: its value, its release or its lease ends this wait.
          await (o.signal === undefined ? sleep(pause) : abortable(sleep(pause), o.signal));
          pause = Math.min(pause * 2, POLL_MAX_MS);
          continue;
        }
        if (reply === -1) {
          throw new CacheBackendError("getOrSet on Redis: the key holds a value of another type that this store did not write");
        }
        if (reply instanceof Uint8Array) return { value: this.#decode(key, reply), bytes: reply };
        throw new CacheBackendError(`getOrSet on Redis: unexpected reply ${describe(reply)}`);
      }
      const value = await this.#runLoader(key, loader, o);
      const stored = core(() => wasm.encode(value, how.metadata, how.tags ?? []));
      // Stored only if the placeholder is still ours: nothing wrote, deleted,
      // invalidated or cleared the key, and the lease has not run out.
      const notices = this.#notices();
      const written = await this.#storeLoaded(key, entry, index, "p", token, "", stored, how, notices);
      armed = false;
      // What the value evicted: its callers get the value, a listener's error goes to reportLater.
      this.#notify(notices, true);
      // Listed with its placeholder already; this keeps its tag sets as long as the entry.
      if (written && how.tags !== undefined) await this.#registerWritten("getOrSet", entry, index, how.tags, how.ttl);
      return { value, bytes: stored };
    } finally {
      // EVAL with the source, never EVALSHA: rare, and it must work in one command.
      if (armed) await this.#unlock(SCRIPTS.unlock_load, entry, token);
    }
  }

  /** Deletes a lock (a placeholder, a refresh lock) if it still holds `token`. Best effort: its lease ends it anyway. */
  async #unlock(script, lock, token) {
    try {
      await this.#conn.command(["EVAL", script.source, "1", lock, token], lock);
    } catch {
      // The lease ends it.
    }
  }

  /** Runs the loader with its hardTimeout and signal; counts it (loads, loadFailures, totalLoadTime). */
  async #runLoader(key, loader, o) {
    const c = this.#c;
    const controller = new AbortController();
    let onAbort;
    const aborted =
      o.signal === undefined
        ? undefined
        : new Promise((_, reject) => {
            // Rejected before the loader hears of it: a loader that settles on its abort must not win the race.
            onAbort = () => {
              reject(o.signal.reason);
              controller.abort(o.signal.reason);
            };
            o.signal.addEventListener("abort", onAbort, { once: true });
          });
    aborted?.catch(() => {});
    let timer;
    // This load in the chain of loads its loader's calls run inside; no longer there once it ends.
    let node;
    const started = now();
    c.loads++;
    this.#loading.add(key);
    try {
      let result;
      try {
        // The loader runs inside its chain of loads (where the host has AsyncLocalStorage): a getOrSet
        // of this key from any of its async calls, through other keys' loaders too, is refused.
        const run = () => loader({ key, signal: controller.signal });
        const up = "chain" in o ? o.chain : LOADING?.getStore();
        node = LOADING === undefined ? undefined : { store: this, key, up, live: true };
        result = node === undefined ? run() : LOADING.run(node, run);
      } finally {
        this.#loading.delete(key);
      }
      const races = [Promise.resolve(result)];
      if (o.hardTimeout !== undefined) {
        races.push(
          new Promise((_, reject) => {
            timer = setTimeout(() => {
              const error = new CacheTimeoutError(`the load of ${shownKey(key)} took longer than its hardTimeout of ${o.hardTimeout / 1000} s`);
              reject(error);
              controller.abort(error);
            }, o.hardTimeout);
          }),
        );
      }
      if (aborted !== undefined) races.push(aborted);
      const value = await Promise.race(races);
      if (value === undefined) {
        throw undefinedValueError("the loader returned");
      }
      c.totalLoadTime += now() - started;
      return value;
    } catch (error) {
      c.loadFailures++;
      c.totalLoadTime += now() - started;
      throw error;
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) o.signal.removeEventListener("abort", onAbort);
      if (node !== undefined) node.live = false;
    }
  }

  /**
   * Writes a loaded value if the load may (load.rs `store_loaded`): mode
   * "p", a load whose placeholder still holds `token`; mode "r", a refresh
   * whose lock holds `token` and whose entry still has the bytes of SHA1
   * `sha`. Whether written.
   */
  async #storeLoaded(key, entry, index, mode, token, sha, stored, how, notices) {
    const bound = this.#bound;
    const lock = this.#space.lock(key);
    // The lock is declared where it is held (mode "r"), or where Redis
    // tolerates a declared key that does not exist (not a cluster, whose
    // migrating slots refuse it).
    const usesLock = mode === "r" || !this.#clustered;
    const held = usesLock ? [lock] : [];
    const head = [mode, token, sha, String(how.fresh), stored, String(how.ttl ?? 0)];
    let reply;
    if (bound !== undefined) {
      const sample = this.#setsSeen++ % SAMPLE_EVERY === 0;
      reply = await this.#script(
        "getOrSet",
        SCRIPTS.store_loaded_bounded,
        [entry, this.#recencyOf(index), this.#expiryOf(index), ...held],
        [...head, this.#shareOf(index), FLAG(bound.lru), FLAG(sample), String(how.idle ?? 0), FLAG(notices !== undefined)],
      );
      await this.#settle(index, reply);
      // With a listener, what it evicted for the value follows: {expired, evicted, lost, stored, key, bytes, ...}.
      this.#noteRemoved(notices, "evicted", reply, 4);
    } else {
      reply = await this.#script("getOrSet", SCRIPTS.store_loaded, [entry, ...held], [...head, String(how.idle ?? 0)]);
    }
    const written = reply[3] === 1;
    if (written && !usesLock && how.fresh > 0) {
      // A fresh value stored on a cluster without declaring the lock: no back-off of an earlier failure stays.
      try {
        await this.#conn.command(["DEL", lock], lock);
      } catch {
        // A back-off ends by itself.
      }
    }
    if (written) this.#c.sets++;
    return written;
  }

  /** getOrSet with `grace` (refresh.rs `get_or_refresh`). */
  async #getOrRefresh(key, entry, index, call) {
    const { loader, o, how } = call;
    const c = this.#c;
    const lock = this.#space.lock(key);
    const started = ++c.gets % LATENCY_SAMPLE_EVERY === 1 ? now() : undefined;
    let found;
    if (this.#refreshOnGet) {
      // One script reads, marks the entry used, and takes the lock when due.
      const token = newToken();
      try {
        found = await this.#readFresh(entry, index, lock, token, true);
      } catch (error) {
        // It may have taken the lock all the same.
        await this.#unlock(SCRIPTS.unlock, lock, token);
        throw error;
      }
      found.token = token;
    } else {
      found = await this.#readPlain(entry, index, lock);
    }
    if (started !== undefined) {
      c.latencyTotal += now() - started;
      c.latencySamples++;
    }
    if (found.kind === "miss") {
      c.misses++;
      return this.#lead(key, entry, index, call);
    }
    c.hits++;
    if (found.kind !== "serve" || found.stale) c.staleHits++;
    let value;
    try {
      value = this.#decode(key, found.stored);
    } catch (error) {
      if (found.kind === "refresh") await this.#unlock(SCRIPTS.unlock, lock, found.token);
      throw error;
    }
    // The refresh runs with its own signal: this caller going away does not stop it.
    // Nor is it in this caller's chain of loads: nothing waits on it, so its loader may ask for any key.
    const refreshOptions = { ...o, signal: undefined, chain: undefined };
    if (found.kind === "refresh") {
      this.#background(o, this.#refresh(key, entry, index, lock, found, loader, refreshOptions, how));
    } else if (found.kind === "attempt" && !this.#refreshing.has(key)) {
      // This instance's one attempt at the key: the script checks again, atomically.
      this.#refreshing.add(key);
      const attempt = async () => {
        try {
          const token = newToken();
          let again;
          try {
            again = await this.#readFresh(entry, index, lock, token, false);
          } catch {
            await this.#unlock(SCRIPTS.unlock, lock, token);
            return;
          }
          if (again.kind === "refresh") {
            again.token = token;
            await this.#refresh(key, entry, index, lock, again, loader, refreshOptions, how);
          }
        } finally {
          this.#refreshing.delete(key);
        }
      };
      this.#background(o, attempt());
    }
    return value;
  }

  /** A background task: its errors go nowhere (a refresh's failure backs off), waitUntil keeps a Worker alive for it. */
  #background(o, task) {
    const quiet = task.catch(() => {});
    if (o.waitUntil !== undefined) {
      try {
        o.waitUntil(quiet);
      } catch {
        // The caller's waitUntil is its own business.
      }
    }
  }

  /** The read script (READ_FRESH): the entry, how fresh, and the refresh lock if this caller is to refresh. */
  async #readFresh(entry, index, lock, token, markUsed) {
    const reply = await this.#script("getOrSet", SCRIPTS.read_fresh, [entry, lock, this.#recencyOf(index)], [
      token,
      String(this.#lease),
      FLAG(markUsed && this.#refreshOnGet),
    ]);
    if (reply === null) return { kind: "miss" };
    if (Array.isArray(reply) && reply[0] instanceof Uint8Array) {
      if (reply[1] === 0 || reply[1] === 1) return { kind: "serve", stored: reply[0], stale: reply[1] === 1 };
      if (reply[1] === 2) return { kind: "refresh", stored: reply[0], failures: reply[2], sha: text(reply[3]) };
    }
    throw new CacheBackendError(`getOrSet on Redis: unexpected reply ${describe(reply)}`);
  }

  /**
   * The plain read: GET of the entry, TIME and GET of the refresh lock in
   * one round trip. Not atomic: it only decides whether to try for the
   * lock; the script that takes it checks again.
   */
  async #readPlain(entry, index, lock) {
    await this.#ready();
    let replies;
    try {
      replies = await this.#conn.pipeline([
        { args: ["GET", entry], key: entry },
        { args: ["TIME"], key: entry },
        { args: ["GET", lock], key: lock },
      ]);
    } catch (error) {
      throw backendError("getOrSet", error);
    }
    const [doc, time, held] = replies;
    if (doc === null || isWrongType(doc)) return { kind: "miss" };
    if (doc instanceof Error) throw backendError("getOrSet", doc);
    if (time instanceof Error) throw backendError("getOrSet", time);
    // A read: an entry with an idle time is touched.
    const head = wasm.idleHeader(doc);
    if (head !== undefined) await this.#touch(entry, index, head);
    const freshUntil = wasm.freshUntil(doc);
    if (freshUntil === undefined) return { kind: "serve", stored: doc, stale: false };
    const nowMs = Number(text(time[0])) * 1000 + Math.floor(Number(text(time[1])) / 1000);
    if (nowMs < freshUntil) return { kind: "serve", stored: doc, stale: false };
    const free = held === null || (held instanceof Uint8Array && wasm.backoffOver(held, nowMs));
    return free ? { kind: "attempt", stored: doc } : { kind: "serve", stored: doc, stale: true };
  }

  /** A background refresh holding the key's refresh lock: stores what it loads if it still may, or backs off. */
  async #refresh(key, entry, index, lock, found, loader, o, how) {
    const c = this.#c;
    c.refreshes++;
    let stored;
    try {
      const value = await this.#runLoader(key, loader, o);
      stored = core(() => wasm.encode(value, how.metadata, how.tags ?? []));
    } catch {
      c.refreshFailures++;
      const failures = found.failures + 1;
      const backoff = wasm.refreshBackoff(o.retryAfter ?? NaN, failures);
      // Best effort: if Redis does not answer, the lease ends the lock.
      await this.#script("getOrSet", SCRIPTS.refresh_failed, [lock, entry], [found.token, String(failures), String(backoff)]);
      return;
    }
    // Refused, the script released the lock; failed, the lease ends it.
    const notices = this.#notices();
    const written = await this.#storeLoaded(key, entry, index, "r", found.token, found.sha, stored, how, notices);
    // Written, it replaced the very bytes the refresh was started on (the script checked their SHA1).
    if (written) this.#noteReplaced(notices, key, found.stored);
    this.#notify(notices, true);
    if (written && how.tags !== undefined) await this.#registerWritten("getOrSet", entry, index, how.tags, how.ttl);
  }

  // ---- counters

  /** The counters since the store was made or `resetStats`: the MemoryStore's figures. */
  getStats() {
    const c = this.#c;
    const gets = c.hits + c.misses;
    const kept = {
      ...c,
      hitRatio: gets === 0 ? 0 : c.hits / gets,
      avgGetLatency: c.latencySamples === 0 ? 0 : c.latencyTotal / c.latencySamples,
      totalWeight: 0,
    };
    const stats = {};
    for (const name of COUNTER_NAMES) stats[name] = kept[name] ?? 0;
    return stats;
  }

  /** Sets every counter back to zero. */
  resetStats() {
    this.#c = RedisStore.#zero();
  }
}

/** `promise`, or the signal's reason once it aborts. */
function abortable(promise, signal) {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * The loads an async call runs inside, where the host has AsyncLocalStorage
 * (Node, Bun, Deno; not the workerd entry: `hostAsyncLocalStorage`, which
 * scripts/build-entry.cjs declares for each form of the entry): a list
 * { store, key, up } of the loaders it is nested in, innermost first.
 */
const LOADING = (() => {
  try {
    return typeof hostAsyncLocalStorage === "function" ? new hostAsyncLocalStorage() : undefined;
  } catch {
    return undefined;
  }
})();

/** Whether `chain` (LOADING's) has the loader of `key` in `store`. */
function loadsUnder(chain, store, key) {
  for (let at = chain; at !== undefined; at = at.up) if (at.live && at.store === store && at.key === key) return true;
  return false;
}

function reentrantError(key) {
  return new CacheReentrantLoadError(
    `the loader of ${shownKey(key)} asked for ${shownKey(key)} itself (directly or through other keys' loaders): a load cannot wait on its own result`,
  );
}
