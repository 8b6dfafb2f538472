// Types of the npm package `pepperpy-caching` (one file for ESM and CommonJS).

/** Options of {@link LRUPolicy}. */
export interface LRUPolicyOptions {
  /** The most entries the store keeps; a positive integer. */
  maxSize: number;
  /** Seconds until an entry set without its own `ttl` expires; none by default. */
  ttl?: number;
  /** Whether a `get` hit makes the entry the most recently used (default `true`). */
  refreshOnGet?: boolean;
  /**
   * Seconds an entry set without its own `idle` may go without a read
   * (a `get` or `getOrSet` hit) before it leaves, or at its `ttl` if that
   * comes first; none by default. At most 10^12 (about 31,700 years).
   */
  idle?: number;
}

/** Options of {@link S3FIFOPolicy}. */
export interface S3FIFOPolicyOptions {
  /** The most entries the store keeps; a positive integer. */
  maxSize: number;
  /** Seconds until an entry set without its own `ttl` expires; none by default. */
  ttl?: number;
  /**
   * Seconds an entry set without its own `idle` may go without a read
   * (a `get` or `getOrSet` hit) before it leaves, or at its `ttl` if that
   * comes first; none by default. At most 10^12 (about 31,700 years).
   */
  idle?: number;
}

/** Options of {@link TTLPolicy}. */
export interface TTLPolicyOptions {
  /** Seconds until an entry set without its own `ttl` expires; positive and finite. */
  ttl: number;
  /** The most entries the store keeps; at capacity the entry closest to expiry goes. */
  maxSize?: number;
  /**
   * Seconds an entry set without its own `idle` may go without a read
   * (a `get` or `getOrSet` hit) before it leaves, or at its `ttl` if that
   * comes first; none by default. At most 10^12 (about 31,700 years).
   */
  idle?: number;
}

/** Least recently used: at most `maxSize` entries; at capacity the one used longest ago goes. */
export declare class LRUPolicy {
  /** @throws {CachePolicyError} when `maxSize` is not a positive integer or `ttl` not a positive, finite number. */
  constructor(options: LRUPolicyOptions);
  readonly maxSize: number;
  readonly ttl: number | undefined;
  readonly refreshOnGet: boolean;
  /** The idle seconds of entries set without their own. */
  readonly idle: number | undefined;
}

/**
 * S3-FIFO: at most `maxSize` entries, kept by how often and how recently they
 * are read. New keys wait in a small FIFO queue and stay only if read again;
 * one-off keys and scans pass through without flushing the keys read again and
 * again. The policy to use unless you need exact LRU order.
 */
export declare class S3FIFOPolicy {
  /** @throws {CachePolicyError} when `maxSize` is not a positive integer or `ttl` not a positive, finite number. */
  constructor(options: S3FIFOPolicyOptions);
  readonly maxSize: number;
  readonly ttl: number | undefined;
  /** The idle seconds of entries set without their own. */
  readonly idle: number | undefined;
}

/** Every entry expires after `ttl` seconds unless `set` gives its own; optional capacity. */
export declare class TTLPolicy {
  /** @throws {CachePolicyError} when `ttl` is not a positive, finite number or `maxSize` not a positive integer. */
  constructor(options: TTLPolicyOptions);
  readonly ttl: number;
  readonly maxSize: number | undefined;
  /** The idle seconds of entries set without their own. */
  readonly idle: number | undefined;
}

/** Any policy. */
export type Policy = S3FIFOPolicy | LRUPolicy | TTLPolicy;

/** A clock that moves only when told to, so tests of expiry and timeouts need not wait. */
export declare class ManualClock {
  constructor();
  /** Moves the clock forward by `ms` milliseconds, then fires the `getOrSet` timeouts now due on stores with this clock. */
  advance(ms: number): void;
}

/** Why an entry left the store, as the `onRemove` listener is told. */
export type RemovalReason = "evicted" | "expired" | "deleted" | "replaced" | "invalidated" | "cleared";

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions<V = unknown> {
  /** Which entries the store keeps. */
  policy: Policy;
  /**
   * Called with each value that leaves the store, its key and why (lru-cache
   * calls its equivalent `dispose`; here `dispose()` ends the store itself).
   * It runs once the store is consistent again, after the call that removed
   * the entry, and may use the store. A replaced value is reported with the
   * key that now holds the new one. If it throws, the other notices still
   * run and the first error is then thrown by the call, which has completed.
   * When a `getOrSet` load or refresh storing its value removed the entry,
   * its callers get the value and the error, with no call to be thrown from,
   * is reported as uncaught errors are (`reportError`; in Node, thrown from a
   * microtask). `clear()` reports every entry; `dispose()` none.
   */
  onRemove?: (value: V, key: string, reason: RemovalReason) => void;
  /** The time source for expiry, freshness and `getOrSet` timeouts (default: `performance.now()` and `setTimeout`). */
  clock?: ManualClock;
  /**
   * Capacity in size, as lru-cache's `maxSize`: the most total size the
   * store holds (a positive integer, at most half of
   * `Number.MAX_SAFE_INTEGER`, so the total stays exact), beside the policy's `maxSize` (its
   * most entries, lru-cache's `max`); both hold. Each entry's size is set's
   * `size` option or else `sizeCalculation(value, key)`; one or the other is
   * required for every entry. A set whose size is more than `maxSize` throws
   * `CacheEntryTooLargeError` and changes nothing (lru-cache drops the entry
   * and the key's old one instead). A new entry evicts, by the policy's
   * rule, as many entries as it takes, never itself. `getStats().totalWeight`
   * is the total size held.
   */
  maxSize?: number;
  /**
   * The size of an entry (needs `maxSize`): a positive integer, or the set
   * throws `CachePolicyError`. It runs before the set changes anything: if
   * it throws, the store is unchanged. Also sizes the values `getOrSet` loads.
   */
  sizeCalculation?: (value: V, key: string) => number;
}

/** Metadata: a plain object of JSON values. */
export type Metadata = { [key: string]: JsonValue };
/** What metadata may hold. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** One entry of {@link MemoryStore.dump}, as lru-cache's `Entry`. */
export interface DumpEntry<V = unknown> {
  value: V;
  /** Milliseconds of TTL left at `start` (none, or lru-cache's 0: the entry never expires, or takes the policy's TTL on load). */
  ttl?: number;
  /** When `ttl` was measured: `Date.now()` milliseconds. */
  start?: number;
  /** The entry's size in a store with `maxSize` (lru-cache writes it too): used by such a store, else ignored. */
  size?: number;
  /** The entry's metadata, if it has any. */
  metadata?: Metadata;
  /** S3FIFOPolicy's access count (0 to 3), when not 0. */
  hits?: number;
  /** S3FIFOPolicy: on the small (probationary) queue rather than the main one. */
  probation?: boolean;
  /**
   * The entry's time-to-idle in milliseconds, if it has one (its clock
   * starts again at the load; `ttl` is then what was left of its TTL).
   */
  idle?: number;
  /** The entry's tags, if it has any (see {@link SetOptions.tags}). */
  tags?: string[];
}

/** Options of {@link MemoryStore.set}. */
export interface SetOptions {
  /** Seconds until the entry expires (default: the policy's `ttl`, if any). */
  ttl?: number;
  /** Data stored beside the value, read back with `getMetadata`. */
  metadata?: Metadata;
  /**
   * Time-to-idle: seconds the entry may go without a read before it leaves,
   * or at its `ttl` if that comes first (default: the policy's `idle`, if
   * any). A read is a `get`/`getSync` or `getOrSet` hit; `has`, `peek`,
   * `getMetadata` and `remainingTtl` are not (as lru-cache's `has` without
   * `updateAgeOnHas`). A `set` starts the clock again. Positive, finite and
   * at most 10^12, else a CachePolicyError and nothing changes.
   */
  idle?: number;
  /**
   * The entry's size in a store with `maxSize` (a positive integer; it wins
   * over `sizeCalculation`). A store without `maxSize` refuses it.
   */
  size?: number;
  /**
   * Tags for {@link MemoryStore.invalidateTags}, read back with `getTags`: at
   * most `MAX_TAGS` (32) non-empty strings of at most 256 bytes of UTF-8,
   * none twice (else {@link CachePolicyError}, nothing stored). A set
   * replaces the entry's tags with these (none: no tags).
   */
  tags?: readonly string[];
}

/** What a `getOrSet` loader is called with. */
export interface LoadContext {
  /** The key being loaded. */
  key: string;
  /**
   * Aborted when nobody wants the result any more: the caller running this
   * load gave up (its `signal` aborted or its `softTimeout` passed; the load
   * then passes to one waiting caller, which runs its own loader) or the
   * load passed its `hardTimeout`. Pass it on to `fetch` and the like.
   */
  signal: AbortSignal;
}

/**
 * Options of {@link MemoryStore.getOrSet}: those of `set`, and
 * stale-while-revalidate, timeouts and cancellation. All times in seconds.
 */
export interface GetOrSetOptions extends Omit<SetOptions, "size"> {
  /**
   * Stale-while-revalidate: after its `ttl` (the fresh period, then required)
   * a loaded entry is served stale for `grace` more seconds: the stale value
   * returns at once and one refresh per key runs in the background. A failed
   * or timed-out refresh keeps the stale value (stale-if-error) and the next
   * waits `retryAfter`, doubling on each failure in a row up to 60 s.
   */
  grace?: number;
  /** With `grace`: the wait before retrying a failed refresh (default 1 s). */
  retryAfter?: number;
  /**
   * How long this caller waits for a load when there is no value to serve;
   * then it rejects with {@link CacheTimeoutError}, and if it was running the
   * load, the load passes to one waiting caller.
   */
  softTimeout?: number;
  /**
   * How long a load or a background refresh may run; then it fails with
   * {@link CacheTimeoutError} for every caller waiting on it (a refresh: it
   * counts as failed and the stale value stays), and its loader's signal aborts.
   */
  hardTimeout?: number;
  /**
   * Receives the promise of a background refresh (it never rejects), e.g.
   * `ctx.waitUntil.bind(ctx)` in a Cloudflare Worker, so the runtime keeps
   * running it after the response. If it throws, the error is reported
   * (`reportError`; in Node an uncaught exception) and the caller still gets
   * the stale value.
   */
  waitUntil?: (promise: Promise<void>) => void;
  /**
   * This caller gives up when it aborts: it rejects with the signal's reason
   * and leaves nothing behind; if it was running the load, the load passes to
   * one waiting caller.
   */
  signal?: AbortSignal;
}

/** The counters since the store was made or since `resetStats()`. */
export interface CacheStats {
  /** `get` calls that found a live entry. */
  hits: number;
  /** `get` calls that found nothing, or only an expired entry. */
  misses: number;
  /** Successful `set` calls. */
  sets: number;
  /** Live entries removed by `delete`, `invalidate` or `clear`. */
  deletes: number;
  /** Entries removed to make room under the policy's `maxSize`. */
  evictions: number;
  /** Entries removed because their TTL had passed. */
  expirations: number;
  /** `hits / (hits + misses)`, or 0 before the first `get`. */
  hitRatio: number;
  /** Mean time of a sample of `get` calls, in milliseconds. */
  avgGetLatency: number;
  /** Loader runs started by `getOrSet`: one per load, however many calls waited on it. */
  loads: number;
  /** Loader runs that stored nothing: the loader threw, rejected or returned `undefined`. */
  loadFailures: number;
  /** Time spent in loaders, in milliseconds, on the store's clock. */
  totalLoadTime: number;
  /** `getOrSet` calls with `grace` that were served a stale value. */
  staleHits: number;
  /** Background refreshes started by stale hits. */
  refreshes: number;
  /** Background refreshes that failed or timed out (the stale value stayed). */
  refreshFailures: number;
  /** The total size of the entries held, by `size` or `sizeCalculation` (0 without the store's `maxSize`). */
  totalWeight: number;
}

/**
 * A cache in this isolate's memory.
 *
 * Values are kept as they are, never copied or serialised: `get` returns the
 * very object that was `set` (as `Map` and lru-cache do), so mutating it
 * mutates the cached entry. Any value but `undefined` can be stored.
 *
 * Keys are non-empty strings of at most 8 KiB of UTF-8 without U+FFFF (reserved
 * for the Redis stores' internal keys, in every store). Anything else throws
 * (or, from the async methods, rejects with) a {@link CacheKeyError}. A call
 * that is refused leaves the store exactly as it was; after a trap inside
 * the wasm engine the store starts again empty (see the package README).
 *
 * The async methods never wait on anything (but `getOrSet` on its loader):
 * they exist so code can move to a remote store unchanged. The `*Sync`
 * methods are the same calls without the Promise, for hot paths.
 */
export declare class MemoryStore<V = unknown> {
  /** @throws {CachePolicyError} when `policy` is missing or not a policy, or an option name is unknown. */
  constructor(options: MemoryStoreOptions<V>);

  /** The value under `key`, or `undefined` on a miss. */
  get(key: string): Promise<V | undefined>;
  /** Stores `value` under `key`, replacing any entry (and its metadata) there. */
  set(key: string, value: V, options?: SetOptions): Promise<void>;
  /**
   * The live value under `key`; on a miss, the value `loader({ key, signal })`
   * returns (or resolves to), stored with `options` and returned:
   * read-through caching. With `grace`, stale-while-revalidate (see
   * {@link GetOrSetOptions}).
   *
   * - One load per key: concurrent calls for a key being loaded share that
   *   one run of a loader, and so its value, or its error: if the loader
   *   throws or rejects, every waiting call rejects with that very error,
   *   nothing is stored, and the next call runs a loader again.
   * - No stale write-back: a load stores its value only if nothing set,
   *   deleted, invalidated, cleared or updated the metadata of the key since
   *   the load began; its
   *   callers still receive what the loader produced.
   * - Callers that give up (`signal`, `softTimeout`) reject at once and leave
   *   nothing registered; if the one running the load gives up, the load
   *   passes to exactly one waiting caller, which runs its own loader.
   * - Re-entrancy: a call for a key made while that key's loader runs
   *   synchronously (before its first `await`), directly or from the loader
   *   of another key it started, rejects with {@link CacheReentrantLoadError}.
   *   A call for its own key made by a loader after an `await` cannot be told
   *   apart from any other caller's: it waits on the load, which then waits
   *   on it. Give loaders that may do this a `hardTimeout`.
   *
   * The key and options are checked before any loader runs (they reject with
   * {@link CacheKeyError}, {@link CachePolicyError} for an unknown option name
   * or a bad value, or {@link CacheSerializationError}); a `loader` that is
   * not a function rejects with a `TypeError`, a programming error rather
   * than a cache one. A loader that returns `undefined` rejects with
   * {@link CacheSerializationError} and stores nothing (store `null` instead).
   *
   * Stats: every call counts one hit or one miss as `get` does; each loader
   * run that finishes counts in `loads`, `loadFailures` and `totalLoadTime`;
   * with `grace`, in `staleHits`, `refreshes` and `refreshFailures`.
   */
  getOrSet(key: string, loader: (context: LoadContext) => V | PromiseLike<V>, options?: GetOrSetOptions): Promise<V>;
  /** Removes `key`; `true` if a live entry was there. */
  delete(key: string): Promise<boolean>;
  /** Whether a live entry is under `key`; counts no hit or miss. */
  has(key: string): Promise<boolean>;
  /** A fresh copy of the entry's metadata (`{}` when it has none), or `undefined` without an entry. */
  getMetadata(key: string): Promise<Metadata | undefined>;
  /**
   * Merges `metadata` into the entry's (top-level keys replaced); `true` if
   * the entry exists. A write like `set`: a load or refresh of the entry
   * under way (`getOrSet` with `grace`) stores nothing, so the update is
   * never erased; the next stale read starts another refresh.
   */
  updateMetadata(key: string, metadata: Metadata): Promise<boolean>;
  /** Removes the live entries whose keys match the Redis glob `pattern`; how many. */
  invalidate(pattern: string): Promise<number>;
  /**
   * Removes every live entry carrying at least one of `tags`; how many (an
   * entry with two of them counts once). A `getOrSet` with `tags` whose load
   * is under way stores nothing (its callers still get the value). A tag
   * that is not a non-empty string of at most 256 bytes, or more than 1024
   * tags, is {@link CachePolicyError} and removes nothing.
   */
  invalidateTags(tags: readonly string[]): Promise<number>;
  /** The tags of the live entry under `key`, in the order set (`[]` when it has none), or `undefined` without an entry; counts no hit or miss. */
  getTags(key: string): Promise<string[] | undefined>;
  /** The keys of live entries, all or those matching the Redis glob `pattern`, in the order of {@link entries}. */
  keys(pattern?: string): Promise<string[]>;
  /** Removes every entry. */
  clear(): Promise<void>;

  /** {@link get} without the Promise. */
  getSync(key: string): V | undefined;
  /** {@link set} without the Promise. */
  setSync(key: string, value: V, options?: SetOptions): void;
  /** {@link delete} without the Promise. */
  deleteSync(key: string): boolean;
  /** {@link has} without the Promise. */
  hasSync(key: string): boolean;
  /** {@link invalidate} without the Promise. */
  invalidateSync(pattern: string): number;
  /** {@link invalidateTags} without the Promise. */
  invalidateTagsSync(tags: readonly string[]): number;
  /** {@link keys} without the Promise. */
  keysSync(pattern?: string): string[];
  /** {@link clear} without the Promise. */
  clearSync(): void;

  /**
   * The values under `keys` (an array or any iterable of keys, not a
   * string), in their order: `undefined` for a miss. Each key counts one
   * hit or miss, as `get` does; a key given twice is read and counted twice.
   * Every key is checked first: one bad key rejects with
   * {@link CacheKeyError} and nothing is read or counted. If the `onRemove`
   * listener throws (for an expired entry met), the other keys are still
   * read and its first error is thrown after them.
   */
  getMany(keys: Iterable<string>): Promise<(V | undefined)[]>;
  /**
   * Stores each `[key, value]` of `entries` (an array of pairs, a `Map`, any
   * iterable of pairs) with the same `options` (one TTL and metadata for
   * all: call it once per set of options), as that many `set`s in order
   * would: of a key given twice, the last value stays, and each entry counts
   * one set. Every key, value and option is checked before anything is
   * written: bad input rejects ({@link CacheKeyError},
   * {@link CachePolicyError}, {@link CacheSerializationError} for an
   * `undefined` value, a `TypeError` for something that is not a pair) and
   * changes nothing. In a store with `maxSize`, every entry's size is
   * checked first too (`sizeCalculation` then runs twice per entry), so an
   * entry too large, or a `sizeCalculation` that throws, writes nothing.
   */
  setMany(entries: Iterable<readonly [string, V]>, options?: SetOptions): Promise<void>;
  /**
   * Removes every key of `keys`; how many live entries were there (a key
   * given twice counts once). Every key is checked first, as in
   * {@link getMany}.
   */
  deleteMany(keys: Iterable<string>): Promise<number>;
  /** {@link getMany} without the Promise. */
  getManySync(keys: Iterable<string>): (V | undefined)[];
  /** {@link setMany} without the Promise. */
  setManySync(entries: Iterable<readonly [string, V]>, options?: SetOptions): void;
  /** {@link deleteMany} without the Promise. */
  deleteManySync(keys: Iterable<string>): number;

  /** The live value under `key`, counting no hit or miss and changing no order (lru-cache's `peek`). */
  peek(key: string): V | undefined;
  /** Seconds until the entry under `key` expires: `Infinity` if it never does, `undefined` without a live entry. */
  remainingTtl(key: string): number | undefined;
  /**
   * The live entries as `[key, value]`, counting nothing and changing no
   * order. Order: LRUPolicy, most recently used first; TTLPolicy, most
   * recently set first; S3FIFOPolicy, the probationary queue newest first,
   * then the main queue newest first. `keys()` and `values()` follow it.
   */
  entries(): IterableIterator<[string, V]>;
  /** The values of {@link entries}, in its order. */
  values(): IterableIterator<V>;
  [Symbol.iterator](): IterableIterator<[string, V]>;
  /**
   * Warm restart: the live entries as `[key, entry]` pairs, coldest first
   * (the entry the policy would evict first comes first; TTLPolicy: the
   * soonest to expire), in lru-cache's format, for {@link load}. Counts
   * nothing, changes no order, leaves expired entries out.
   */
  dump(): Array<[string, DumpEntry<V>]>;
  /**
   * Stores a {@link dump}'s entries (or lru-cache's) in order; how many it
   * stored. Into a store with the same policy the order comes back; into a
   * smaller one the policy keeps the hottest. `ttl` counts from `start`, so
   * entries whose TTL ran out meanwhile are skipped; a key already held is
   * replaced (the store is not cleared first, unlike lru-cache's `load`).
   * Every entry is checked first: bad input throws and changes nothing.
   */
  load(entries: ReadonlyArray<readonly [string, DumpEntry<V>]>): number;
  /**
   * Ends the store: pending `getOrSet` calls reject with a {@link CacheError}
   * and their loaders' signals abort, its memory is released (no `onRemove`
   * notices), and every later call throws a {@link CacheError}. Also
   * `[Symbol.dispose]` where the runtime has it (`using store = ...`).
   */
  dispose(): void;

  /** How many live entries there are. */
  readonly size: number;
  /** The counters so far. */
  getStats(): CacheStats;
  /** Sets every counter back to zero. */
  resetStats(): void;
}

// The error classes: CacheError and the JS class of each of the core's error
// kinds (ErrorKind::js_class in src/errors.rs, the wasm export tables());
// tests/js/error-table.test.mjs checks that these are exactly those.
/** The base of every error the store throws. */
export declare class CacheError extends Error {}
/** A key that is not a string, is empty, is longer than 8 KiB of UTF-8, or holds U+FFFF (reserved). */
export declare class CacheKeyError extends CacheError {}
/** A glob pattern that is not a string or is too long. */
export declare class CachePatternError extends CacheError {}
/** Options that make no sense: `maxSize` 0 or fractional, a TTL that is not positive and finite, a missing policy. */
export declare class CachePolicyError extends CacheError {}
/** A value the store cannot hold (`undefined`) or metadata that is not a plain object of JSON values. */
export declare class CacheSerializationError extends CacheError {}
/** A storage backend failed; from a MemoryStore: wasm memory is exhausted, or its wasm engine trapped. */
export declare class CacheBackendError extends CacheError {}
/** A `getOrSet` loader asked the same store for the key it is loading: it would wait on itself for ever. */
export declare class CacheReentrantLoadError extends CacheError {}
/** A `getOrSet` load passed its `softTimeout` (this caller gave up) or `hardTimeout` (the load failed). */
export declare class CacheTimeoutError extends CacheError {}
/** An entry whose `size` (or `sizeCalculation`'s result) is more than the store's whole `maxSize`: refused, and the store is left as it was. */
export declare class CacheEntryTooLargeError extends CacheError {}

declare global {
  // Declared by lib.dom, lib.webworker, @types/node, Bun and Deno; merged here
  // (with the two members a loader needs, typed as they all type them) so
  // that these types also check in a project with none of them.
  interface AbortSignal {
    readonly aborted: boolean;
    readonly reason: any;
  }
}

/** One attribute of an OTLP/JSON data point or resource. */
export interface OtlpAttribute {
  key: string;
  value: { stringValue: string };
}

/** A data point of an OTLP/JSON metric: `asInt` for counters (a decimal string), `asDouble` for gauges. */
export interface OtlpDataPoint {
  attributes: OtlpAttribute[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  asInt?: string;
  asDouble?: number;
}

/** A metric of an OTLP/JSON export: a cumulative monotonic sum or a gauge. */
export interface OtlpMetric {
  name: string;
  description: string;
  unit: string;
  sum?: { aggregationTemporality: 2; isMonotonic: true; dataPoints: OtlpDataPoint[] };
  gauge?: { dataPoints: OtlpDataPoint[] };
}

/** The body of an OTLP/HTTP `POST /v1/metrics` (ExportMetricsServiceRequest) in JSON. */
export interface OtlpMetricsRequest {
  resourceMetrics: {
    resource: { attributes: OtlpAttribute[] };
    scopeMetrics: { scope: { name: string }; metrics: OtlpMetric[] }[];
  }[];
}

/**
 * The counters of `stores` (by name) as an OpenTelemetry metrics export in
 * OTLP/JSON, one `store` attribute per series: counters as cumulative sums
 * since each store was made or reset, ratios and times as gauges.
 * @throws {CachePolicyError} when `stores` is not an object of MemoryStores or an option is wrong.
 */
export declare function toOpenTelemetry(
  stores: Record<string, MemoryStore<unknown>>,
  options?: { serviceName?: string; time?: number },
): OtlpMetricsRequest;
