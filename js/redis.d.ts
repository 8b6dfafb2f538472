// pepperpy-caching/redis: RedisStore, the JS face of the Rust RedisStore's
// keyspace (the same documents, keys and Lua scripts: a Rust process and a
// JS process with the same prefix, policy and buckets share every entry).
import type { LRUPolicy, TTLPolicy, CacheStats, RemovalReason } from "pepperpy-caching";

/** A reply as a Conn gives it: integers as numbers, strings as bytes. */
export type RedisReply = null | number | Uint8Array | RedisReply[];

/** A script as a Conn sends it: EVALSHA `sha`, EVAL `source` on NOSCRIPT. */
export interface RedisScript {
  readonly name?: string;
  readonly sha: string;
  readonly source: string;
}

/** What a client adapter gives the store (see the README's RedisStore section). */
export interface RedisConn {
  readonly kind: string;
  readonly clustered: boolean;
  script(script: RedisScript, keys: Array<string | Uint8Array>, args: Array<string | Uint8Array>): Promise<RedisReply>;
  command(args: Array<string | Uint8Array>, key?: string | Uint8Array): Promise<RedisReply>;
  pipeline(
    calls: Array<
      | { script: RedisScript; keys: Array<string | Uint8Array>; args: Array<string | Uint8Array> }
      | { args: Array<string | Uint8Array>; key?: string | Uint8Array }
    >,
  ): Promise<Array<RedisReply | Error>>;
  masters(): Promise<RedisConn[]>;
}

export interface RedisStoreOptions {
  /**
   * A connected node-redis (v4, v5, or its cluster) or ioredis (Redis or Cluster) client, an
   * @upstash/redis `Redis` (REST, made with { url, token }: one made with a custom Requester is
   * refused, CachePolicyError), or a RedisConn.
   * An ioredis client with `keyPrefix` is refused (CachePolicyError): ioredis does not prefix SCAN
   * patterns or script arguments, so walks and tags would miss the entries; use `prefix` instead.
   */
  client: unknown;
  /** "" or a name without ':' (nor U+FFFF) followed by one ':' (the Rust prefix rule). Default "". */
  prefix?: string;
  /** Unbounded when omitted. S3FIFOPolicy is refused (as in Rust). */
  policy?: LRUPolicy | TTLPolicy;
  /** The TTL in seconds of entries set without one (when the policy gives none). */
  defaultTtl?: number;
  /** Cluster only: the buckets entries are spread over (default 16; every process sharing the prefix must agree). */
  buckets?: number;
  /** How long a load's placeholder lives unless released, in seconds (default 10). */
  lockLease?: number;
  /** Allows invalidate and clear with an empty prefix (the database is the store's alone). */
  wholeDatabase?: boolean;
  /**
   * Seconds to wait for each reply from Redis (default 1, as the Rust builder's response_timeout);
   * a call not answered by then fails with CacheBackendError (Redis may still carry it out).
   * Positive and finite, else CachePolicyError; not for a RedisConn client (it keeps its own).
   */
  responseTimeout?: number;
  /**
   * Called with each value this store removed, its key and why, as the MemoryStore's `onRemove`:
   * `delete`/`deleteMany` ("deleted"), `invalidate`/`invalidateTags` ("invalidated"), `clear` ("cleared"),
   * the value a `set`/`setMany` or a `getOrSet` refresh replaced ("replaced"), what a bounded store's
   * capacity script evicted for this store's write or load ("evicted"). Not other processes' calls,
   * Redis's own TTL expiry (never "expired"), `maxmemory` evictions, or values it cannot decode.
   * It runs after the round trip that removed the entry and may use the store. If it throws, the other
   * notices still run and the call, which has completed, rejects with the first error; when no caller
   * waits (a load or refresh storing its value) the error is reported as uncaught errors are.
   */
  onRemove?: (value: unknown, key: string, reason: RemovalReason) => void;
  /**
   * Default true: on a single node (node-redis or ioredis, not a cluster or a RedisConn), the plain
   * `get`s made in one tick are sent together at its end as one MGET (a lone one as a GET), and the
   * plain `set`s without a TTL as one MSET, at most 128 keys a command; each call keeps its own
   * answer, error, deadline and stats, and the store's calls keep their order (any other call sends a
   * pending batch first). A command your code sends on the same client itself in that tick (`quit()`
   * included) goes before the batch: await the calls before `quit()` (a batch pending at the close
   * rejects its calls with CacheBackendError). Never on a server in cluster mode or one that refuses
   * `INFO` (asked once a client, before its first batch); the client's first MGET and MSET are probes
   * (later calls wait for them; a refused one's calls go one by one first, and that command is never
   * batched there again). `false`: each `get` and `set` is sent when it is made.
   * A boolean, else CachePolicyError.
   */
  batch?: boolean;
}

export interface RedisSetOptions {
  /** Seconds. */
  ttl?: number;
  metadata?: Record<string, unknown>;
  /** Seconds without a read after which the entry expires. */
  idle?: number;
  /** Tags for invalidateTags (at most 32, each at most 256 bytes of UTF-8). */
  tags?: string[];
}

export interface RedisLoadOptions extends RedisSetOptions {
  /** Stale-while-revalidate: seconds after `ttl` (the fresh period) during which the stale value is served while one refresh runs (one per key across every process). */
  grace?: number;
  /** The back-off after a failed refresh, in seconds, doubling with each failure in a row (needs grace). */
  retryAfter?: number;
  /** Seconds after which this caller gets a CacheTimeoutError (the load goes on and stores its value). */
  softTimeout?: number;
  /** Seconds after which the loader is abandoned (CacheTimeoutError) and its placeholder released. */
  hardTimeout?: number;
  /** Given the background refresh's promise (Workers: ctx.waitUntil.bind(ctx)). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /**
   * Stops this caller's wait at once (even while Redis does not answer). If it was running this
   * instance's load of the key, the loader's signal aborts and the load passes to one caller of this
   * instance waiting on it, which runs its own loader (as the MemoryStore's). Listeners are removed
   * when the call ends.
   */
  signal?: AbortSignal;
}

export declare class RedisStore {
  constructor(options: RedisStoreOptions);
  readonly prefix: string;
  /** The value under `key` (decoded from JSON), or undefined. */
  get(key: string): Promise<unknown>;
  /** Stores `value`, which must be what JSON holds (no NaN or Infinity; depth at most 100): else CacheSerializationError. */
  set(key: string, value: unknown, options?: RedisSetOptions): Promise<void>;
  delete(key: string): Promise<boolean>;
  has(key: string): Promise<boolean>;
  getMetadata(key: string): Promise<Record<string, unknown> | undefined>;
  updateMetadata(key: string, metadata: Record<string, unknown>): Promise<boolean>;
  /** The values under `keys` (undefined for each miss), in order: one round trip per bucket. */
  getMany(keys: Iterable<string>): Promise<unknown[]>;
  /** Stores every [key, value] pair with the same options (all checked first): one round trip per bucket. */
  setMany(entries: Iterable<readonly [string, unknown]>, options?: RedisSetOptions): Promise<void>;
  /** Removes the entries under `keys`; how many existed. */
  deleteMany(keys: Iterable<string>): Promise<number>;
  keys(pattern?: string): Promise<string[]>;
  invalidate(pattern: string): Promise<number>;
  clear(): Promise<void>;
  /** Removes every entry carrying one of `tags` (in every process's view); how many. */
  invalidateTags(tags: string[]): Promise<number>;
  /** The entry's tags ([] when it has none), or undefined. */
  getTags(key: string): Promise<string[] | undefined>;
  size(): Promise<number>;
  /**
   * One loader per key across every process sharing the store, Rust's included.
   * A loader that asks for its own key, directly or through other keys' loaders (a -> b -> a),
   * gets CacheReentrantLoadError instead of waiting on itself: tracked across `await`s where the
   * host has AsyncLocalStorage (Node, Bun, Deno); in the workerd entry only before the loader's first `await`.
   */
  getOrSet<T>(key: string, loader: (context: { key: string; signal: AbortSignal }) => T | Promise<T>, options?: RedisLoadOptions): Promise<T>;
  getStats(): CacheStats;
  resetStats(): void;
}
