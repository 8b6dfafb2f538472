// js/api/8-store.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// MemoryStore. The getSync path is at the top of the class: a Map lookup and
// plain reads and writes of the engine's memory, no call into wasm. Below it
// the writes, then getOrSet's flights (the JS twin of src/singleflight.rs and
// src/refresh.rs: one load per key, leader hand-off, timeouts, stale-while-
// revalidate), then the walks (invalidate, keys, entries, clear) and stats.

/** Appends one removal notice (no Array method: see SlotMap). */
function notify3(notices, value, key, reason) {
  const n = notices.length;
  notices[n] = value;
  notices[n + 1] = key;
  notices[n + 2] = reason;
}

const STORE_OPTIONS = ["policy", "clock", "onRemove"];

function disposedError() {
  return new CacheError("this MemoryStore was disposed");
}
// A bounded store reserves room for up to this many entries when it is made.
const PREALLOCATE_MAX = 1 << 22;
// How a store tells its engine of a hit (MemoryStore#mode).
const RING = 1;
const FREQ = 2;

class MemoryStore {
  #store;
  // How many slots the arrays were made with (see the constructor).
  #prealloc = 0;
  #ids = new SlotMap();
  #values = [];
  #keys = [];
  // Metadata (plain copies) and getOrSet freshness, by slot id: most entries have neither.
  #meta = new SlotMap();
  #fresh = new SlotMap();
  // The loads under way by key (the JS twin of the engine's placeholders):
  // { token }. Any write, delete, invalidate, clear or updateMetadata of
  // the key removes it, so a load that began before them stores nothing.
  #loads = new SlotMap();
  #nextToken = 0;
  // Whether any entry may expire: only then is the clock read on a hit.
  #expiring = false;
  #now = systemNow;
  #onRemove;
  #disposed = false;
  // The getOrSet loads under way, by key: what makes concurrent calls share one.
  #flights = new SlotMap();
  // The keys whose loaders are running synchronously right now, innermost
  // last: a getOrSet for one of them comes from inside its own loader.
  #loading = [];
  // Where getOrSet's timeouts wait: setTimeout, or the store's ManualClock.
  #timers = realTimers;
  // The wasm policy, to start a fresh engine after a trap (`#reset`).
  #policy;
  // Set when a call failed: the next call first makes sure the engine is
  // intact and that no placement was cut short (`#repair`).
  #pending = false;
  // How a hit tells the engine: RING (exact LRU: the access ring), FREQ
  // (S3-FIFO: the slot's access count), or nothing (TTL, LRU without refreshOnGet).
  #mode = 0;
  // Views of the engine's memory (`#view`), valid while #header[0] is #version.
  #header = new U32(0);
  #version = -1;
  #counters = NO_DEADLINES;
  #ring = new U32(0);
  #ringN = 0;
  #lastHit = -1;
  #removed = new U32(0);
  #freq = new U8(0);
  #deadline = NO_DEADLINES;
  // The read counters, kept here (a hit never enters wasm); the engine
  // counts sets, deletes, evictions and expirations in its own.
  // Gets counted (hits are gets - misses: a hit then only bumps this).
  #gets = 0;
  #misses = 0;
  #latencyTotal = 0;
  #latencySamples = 0;
  #loadsRun = 0;
  #loadFailures = 0;
  #loadTime = 0;
  #staleHits = 0;
  #refreshes = 0;
  #refreshFailures = 0;

  constructor(options) {
    statsSince.set(this, Date.now());
    const { policy, clock, onRemove } = readOptions(options, "MemoryStore", STORE_OPTIONS);
    const wasmPolicy = wasmPolicies.get(policy);
    if (wasmPolicy === undefined) {
      throw new CachePolicyError(
        `MemoryStore needs { policy: new S3FIFOPolicy({ maxSize }) }, an LRUPolicy or a TTLPolicy, got policy ${describe(policy)}`,
      );
    }
    if (clock !== undefined) {
      const state = clockTimers.get(clock);
      if (state === undefined) throw new CachePolicyError(`clock must be a ManualClock, got ${describe(clock)}`);
      this.#now = () => state.now;
      this.#timers = manualTimers(clock);
    }
    if (onRemove !== undefined && typeof onRemove !== "function") {
      throw new CachePolicyError(`onRemove must be a function (value, key, reason), got ${describe(onRemove)}`);
    }
    this.#onRemove = onRemove;
    this.#expiring = policy.ttl !== undefined;
    this.#policy = wasmPolicy;
    this.#mode = policy instanceof S3FIFOPolicy ? FREQ : policy instanceof LRUPolicy && policy.refreshOnGet ? RING : 0;
    // Bounded stores reserve their arrays up front, as lru-cache does.
    this.#prealloc = Math.min(policy.maxSize ?? 0, PREALLOCATE_MAX);
    this.#values = new Array(this.#prealloc);
    this.#keys = new Array(this.#prealloc);
    try {
      this.#store = new WasmStore(wasmPolicy, this.#prealloc);
      this.#locate();
    } catch (error) {
      wasmThrew();
      throw error;
    }
    this.#view();
  }

  // Where the engine's fixed buffers are (they never move), read once.
  #at;

  /** The engine's addresses, asked once per engine. */
  #locate() {
    const store = this.#store;
    this.#at = { header: store.header(), counters: store.counters(), ring: store.ring(), removed: store.removed() };
    this.#version = -1;
  }

  /**
   * Takes new views of the engine's memory (it grew, or the engine's
   * arrays moved, as its header says). No call into wasm: this runs at
   * the start of calls, where a stack overflow inside wasm would leave
   * the engine looking broken.
   */
  #view() {
    const memory = buffer();
    const at = this.#at;
    const header = new U32(memory, at.header, 4);
    const slots = header[1];
    this.#counters = new F64(memory, at.counters, 4);
    this.#ring = new U32(memory, at.ring, RING_LEN);
    this.#removed = new U32(memory, at.removed, 1 + 2 * MAX_REMOVED);
    this.#freq = header[2] === 0 ? NO_COUNTS : new U8(memory, header[2], slots);
    this.#deadline = header[3] === 0 ? NO_DEADLINES : new F64(memory, header[3], slots);
    this.#header = header;
    this.#version = header[0];
  }

  /** The clock for a call: read only when some entry may expire. */
  #time() {
    return this.#expiring ? this.#now() : 0;
  }

  /**
   * The wasm store, once the stack is as it rests (see `unwind`) and
   * `depth` more frames fit; throws once disposed.
   */
  #live(depth = HEADROOM) {
    if (this.#disposed) throw disposedError();
    unwind();
    headroom(depth);
    if (this.#pending) {
      this.#repair();
      // The repair told the listener of what it removed, and it may have disposed the store.
      if (this.#disposed) throw disposedError();
    }
    if (this.#header[0] !== this.#version) this.#view();
    return this.#store;
  }

  /**
   * After a failed call. A trap inside the engine (a stack overflow deep
   * in wasm, memory exhausted where nothing reserved it) may have stopped
   * it half-way through an update: nothing it holds can be trusted, so the
   * store starts again empty (`#reset`). Otherwise the engine is as it
   * was, and only a placement cut short after it stored an entry is
   * finished. Done here, by the next call, rather than in the failed one:
   * that one may have no stack left to ask the engine with. If this fails
   * too, the next call tries again.
   */
  #repair() {
    let intact;
    try {
      intact = this.#store.intact();
    } catch (error) {
      if (error instanceof RangeError) throw error; // no stack to tell: ask again next time
      intact = false;
    }
    if (!intact) {
      try {
        this.#reset();
      } catch (error) {
        throw this.#failed(error); // no memory even for an empty engine
      }
    } else if (this.#cutKey !== undefined) {
      if (this.#header[0] !== this.#version) this.#view();
      this.#finishPlacing();
    }
    this.#pending = false;
  }

  /**
   * Replaces a broken engine with a fresh empty one: every entry leaves
   * with the reason "cleared" (the listener is told once the store is
   * consistent; its error, with no caller to go to, is reported), the
   * counters start again from zero, and the loads under way will not
   * store their values (their callers still get them). The broken engine
   * is never freed: its memory could not be walked safely.
   */
  #reset() {
    const broken = this.#store;
    this.#store = new WasmStore(this.#policy, 0);
    this.#ringN = 0;
    this.#locate();
    this.#view();
    try {
      broken.free();
    } catch {
      // Still borrowed by the trapped call: wasm-bindgen keeps it, unfreed.
    }
    statsSince.set(this, Date.now());
    this.#zeroCounters();
    this.#clearCut();
    const notices = this.#notices();
    if (notices !== undefined) this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
    this.#forgetAll();
    this.#pending = false;
    try {
      this.#notify(notices);
    } catch (error) {
      reportLater(error);
    }
  }

  #forgetAll() {
    this.#ids.clear();
    this.#values = new Array(this.#prealloc);
    this.#keys = new Array(this.#prealloc);
    this.#meta.clear();
    this.#fresh.clear();
    this.#loads.clear();
  }

  #zeroCounters() {
    this.#gets = 0;
    this.#misses = 0;
    this.#latencyTotal = 0;
    this.#latencySamples = 0;
    this.#loadsRun = 0;
    this.#loadFailures = 0;
    this.#loadTime = 0;
    this.#staleHits = 0;
    this.#refreshes = 0;
    this.#refreshFailures = 0;
  }

  /**
   * Forgets slot `id` (the engine freed it) and, with a listener,
   * queues (value, key, reason) on `notices` for `#notify`.
   */
  #drop(id, reason, notices) {
    const key = this.#keys[id];
    const value = this.#values[id];
    if (key === undefined) return;
    // Every live slot's key maps to it (a new mapping is made only after
    // the drops of the set that made it), so no lookup is needed first.
    this.#ids.delete(key);
    this.#values[id] = undefined;
    this.#keys[id] = undefined;
    if (this.#meta.size !== 0) this.#meta.delete(id);
    if (this.#fresh.size !== 0) this.#fresh.delete(id);
    if (notices !== undefined) notify3(notices, value, key, REASONS[reason]);
  }

  /** The removal notices of one call, or undefined without a listener. */
  #notices() {
    return this.#onRemove === undefined ? undefined : [];
  }

  /**
   * Calls the listener for each notice, once the store is consistent. A
   * listener may use the store; if one throws, the others still run and
   * the first error is thrown after them: the call itself has completed.
   * With `later` (a load storing its value: its callers get the value) the
   * error has no caller to go to and is reported instead (`reportLater`).
   */
  #notify(notices, later) {
    if (notices === undefined || notices.length === 0) return;
    const listener = this.#onRemove;
    let failed = false;
    let error;
    for (let i = 0; i < notices.length; i += 3) {
      try {
        listener(notices[i], notices[i + 1], notices[i + 2]);
      } catch (e) {
        if (!failed) [failed, error] = [true, e];
      }
    }
    if (!failed) return;
    if (later) reportLater(error);
    else throw error;
  }

  /** The `n` slot ids in the engine's report. */
  #report(n) {
    return new U32(buffer(), this.#store.report(0), n);
  }

  /** Forgets the ids of the entries that expired by `now`. */
  #reclaim(now, notices) {
    let n;
    try {
      n = this.#store.reclaim(this.#ringN, now);
      this.#ringN = 0;
    } catch (error) {
      throw this.#failed(error);
    }
    if (n < 0) throw noRoom();
    if (n === 0) return;
    const ids = this.#report(n);
    for (let i = 0; i < n; i++) this.#drop(ids[i], EXPIRED, notices);
  }

  // The synchronous fast path; the async methods below are thin wrappers.

  /**
   * The value under `key`, or undefined. A hit is a Map lookup and plain
   * reads and writes of the engine's memory: the deadline, when entries
   * may expire; then the access ring (exact LRU, replayed by the engine
   * before anything that evicts, reorders or lists) or the access count
   * (S3-FIFO). No call into wasm.
   */
  getSync(key) {
    if ((++this.#gets & SAMPLE_MASK) === 0) return this.#timedGet(key);
    try {
      return this.#read(key);
    } catch (error) {
      this.#gets--; // a call that fails counts nothing
      throw error;
    }
  }

  /** getSync without the latency sampling (which calls this: no recursion on the hot path). */
  #read(key) {
    const id = this.#ids.get(key);
    if (id === undefined) return this.#missed(key, id);
    // Also false while a failed call awaits repair (`#failed` clears the version).
    if (this.#header[0] !== this.#version) return this.#stale(key);
    if (this.#expiring && this.#deadline[id] <= this.#now()) return this.#missed(key, id);
    this.#hit(id);
    return this.#values[id];
  }

  /** Tells the engine of a hit on slot `id` (the views are current). */
  #hit(id) {
    const mode = this.#mode;
    if (mode === RING) {
      // A hit on the slot the ring ends with changes no order.
      if (this.#ringN !== 0 && this.#lastHit === id) return;
      // A full ring is replayed before the hit is written, not after: a
      // drain cut short (a stack overflow in the engine's probe) leaves it
      // full, and the next hit retries it, where writing first would have
      // run past the ring's end and lost every hit until the next write.
      if (this.#ringN === RING_LEN) this.#drain();
      this.#lastHit = id;
      this.#ring[this.#ringN++] = id;
    } else if (mode === FREQ) {
      // The low two bits count accesses, up to 3 (the engine keeps its queue in the high bit).
      const f = this.#freq[id];
      if ((f & 3) !== 3) this.#freq[id] = f + 1;
    }
  }

  /** Replays the full access ring. */
  #drain() {
    try {
      unwind();
      this.#store.replay(this.#ringN);
    } catch (error) {
      throw this.#failed(error);
    }
    this.#ringN = 0;
  }

  // One get in LATENCY_SAMPLE_EVERY is timed (on the store's clock) for `avgGetLatency`.
  #timedGet(key) {
    let started;
    let value;
    try {
      started = this.#now();
      value = this.#read(key);
    } catch (error) {
      this.#gets--; // a call that fails counts nothing
      throw error;
    }
    const elapsed = this.#now() - started;
    if (!this.#disposed) {
      this.#latencyTotal += elapsed > 0 ? elapsed : 0;
      this.#latencySamples++;
    }
    return value;
  }

  /** A get that found no live entry here (or a call to repair first). */
  /** getSync when the views are out of date, or a failed call awaits repair. */
  #stale(key) {
    if (this.#pending || this.#disposed) this.#live();
    else this.#view();
    return this.#read(key);
  }

  #missed(key, id) {
    if (this.#pending || this.#disposed) {
      this.#live();
      return this.#read(key);
    }
    if (id !== undefined) {
      // Expired: the engine frees it, and it counts as a miss.
      const notices = this.#notices();
      this.#expire(id, notices);
      // Counted once the listener returned: if it throws, so does this get,
      // which then counts nothing (getSync takes its get back).
      this.#notify(notices);
      this.#misses++;
      return undefined;
    }
    checkKey(key);
    this.#misses++;
    return undefined;
  }

  /** Frees slot `id`, found expired, in the engine and here. */
  #expire(id, notices) {
    try {
      unwind();
      this.#store.expire(this.#ringN, id);
      this.#ringN = 0;
    } catch (error) {
      throw this.#failed(error);
    }
    this.#drop(id, EXPIRED, notices);
  }

  /** The live slot under `key` at `now`, counting nothing; reclaims it if expired. */
  #liveSlot(key, now, notices) {
    const id = this.#ids.get(key);
    if (id === undefined) return undefined;
    if (this.#header[0] !== this.#version) this.#view();
    if (this.#deadline[id] <= now) {
      this.#expire(id, notices);
      return undefined;
    }
    return id;
  }

  /** Stores `value` under `key`. */
  setSync(key, value, options) {
    if (typeof key !== "string") throw keyError(key);
    if (value === undefined) throw undefinedValueError("cannot store");
    let ttl;
    let meta;
    if (options !== undefined) {
      readSetOptions(options);
      ({ ttl, meta } = setOptions);
    }
    this.#put(key, value, ttl, meta);
  }

  /**
   * Stores `value` under `key` (checked a string) with a ttl in seconds and
   * metadata (a plain copy); throws if refused. `later`: see `#notify`.
   */
  #put(key, value, ttl, meta, later, fresh) {
    if (ttl !== undefined) this.#expiring = true;
    const now = this.#time();
    // Nothing of the caller's runs from here to the end of the call into
    // wasm. The headroom probe comes first: a stack overflow in `#place`,
    // after the engine stored the entry, would leave the engine holding an
    // entry this side has no value for (taking room, missed by getSync).
    const store = this.#live();
    const existing = this.#ids.get(key);
    let hash = 0;
    if (existing === undefined) {
      checkKey(key);
      if (this.#mode === FREQ) hash = hashKey(key);
    }
    let id;
    try {
      id = store.set(
        this.#ringN, existing ?? -1, hash, ttl === undefined ? NaN : ttl * 1000, now, this.#gets, this.#misses,
      );
      this.#ringN = 0;
    } catch (error) {
      throw this.#failed(error);
    }
    if (id < 0) {
      throw id === -1
        ? new CachePolicyError(`a memory store holds at most ${MAX_SLOTS} entries`)
        : noRoom();
    }
    // No call between the engine's and this `try` (a first call compiles).
    let notices;
    try {
      if (this.#header[0] !== this.#version) this.#view();
      notices = this.#place(id, key, value, meta, fresh);
    } catch (error) {
      // Cut short past the probe (V8 may need far more stack to compile or
      // tier up a function than the probe reserves): the engine holds the
      // entry, so the next call finishes placing it (`#finishPlacing`)
      // before anything reads either side. Plain field writes: no call.
      this.#cutId = id;
      this.#cutValue = value;
      this.#cutMeta = meta;
      this.#cutFresh = fresh;
      this.#cutKey = key;
      this.#pending = true;
      this.#version = -1;
      throw error;
    }
    this.#notify(notices, later);
  }

  // An entry the engine stored whose placement here was cut short (see
  // `#put`): its slot, value, metadata and key (undefined when there is none).
  #cutId = 0;
  #cutValue;
  #cutMeta;
  #cutFresh;
  #cutKey;

  /**
   * Finishes placing the entry a stack overflow cut short, before any
   * other call: the removed buffer still holds that set's report, since
   * only a set writes it, and each call comes here first. Parts of
   * `#place` already done are skipped (`#drop` of a forgotten id does
   * nothing). Its notices, if any, go out as the set's would have.
   */
  #finishPlacing() {
    // Forgotten only once done: cut short again, the next call retries.
    const notices = this.#place(this.#cutId, this.#cutKey, this.#cutValue, this.#cutMeta, this.#cutFresh);
    this.#clearCut();
    // The cut set already threw to its caller: a listener's error is reported.
    this.#notify(notices, true);
  }

  /** Forgets a cut placement's fields, so they keep nothing of the caller's alive. */
  #clearCut() {
    this.#cutKey = undefined;
    this.#cutValue = undefined;
    this.#cutMeta = undefined;
    this.#cutFresh = undefined;
  }

  /** What a call rethrows after `error` (and the next call checks the engine: `#repair`). */
  #failed(error) {
    wasmThrew();
    this.#pending = true;
    this.#version = -1;
    return error instanceof RuntimeError
      ? new CacheBackendError(`the wasm engine trapped: ${error.message}`, { cause: error })
      : error;
  }

  /**
   * Puts the value of the entry just stored in slot `id`, after forgetting
   * what the engine removed for it: the removal notices, for `#notify`.
   */
  #place(id, key, value, meta, fresh) {
    const removed = this.#removed;
    const n = removed[0];
    let notices;
    if (n !== 0) {
      notices = this.#notices();
      for (let i = 1; i <= 2 * n; i += 2) {
        const rid = removed[i];
        const reason = removed[i + 1];
        if (reason === REPLACED) {
          if (notices !== undefined) notify3(notices, this.#values[rid], key, "replaced");
        } else {
          this.#drop(rid, reason, notices);
        }
      }
    }
    // A slot another key still maps to here (its bookkeeping was cut short
    // by a stack overflow after the engine freed it): that key is gone.
    const previous = this.#keys[id];
    if (previous !== undefined && previous !== key && this.#ids.get(previous) === id) this.#ids.delete(previous);
    this.#values[id] = value;
    this.#keys[id] = key;
    this.#ids.set(key, id);
    if (meta !== undefined) this.#meta.set(id, meta);
    else if (this.#meta.size !== 0) this.#meta.delete(id);
    if (fresh !== undefined) this.#fresh.set(id, fresh);
    else if (this.#fresh.size !== 0) this.#fresh.delete(id);
    // A write moves the key on: a load that began before it stores nothing.
    if (this.#loads.size !== 0) this.#loads.delete(key);
    return notices;
  }

  /** Removes `key`; whether a live entry was there. */
  deleteSync(key) {
    if (typeof key !== "string") throw keyError(key);
    const now = this.#time();
    const store = this.#live();
    const id = this.#ids.get(key);
    if (id === undefined) checkKey(key);
    if (this.#loads.size !== 0) this.#loads.delete(key);
    if (id === undefined) return false;
    let existed;
    try {
      existed = store.remove(this.#ringN, id, now);
      this.#ringN = 0;
    } catch (error) {
      throw this.#failed(error);
    }
    const notices = this.#notices();
    this.#drop(id, existed ? DELETED : EXPIRED, notices);
    this.#notify(notices);
    return existed;
  }

  /** The slot of the live entry under `key`, without counting or reordering; undefined if none. */
  #peekSlot(key) {
    if (typeof key !== "string") throw keyError(key);
    const now = this.#time();
    this.#live();
    const notices = this.#notices();
    const id = this.#liveSlot(key, now, notices);
    if (id === undefined) {
      this.#notify(notices);
      checkKey(key);
    }
    return id;
  }

  /** Whether a live entry is under `key`; counts no hit or miss. */
  hasSync(key) {
    return this.#peekSlot(key) !== undefined;
  }

  /** The live value under `key`, without counting a hit or miss or changing the policy's order. */
  peek(key) {
    const id = this.#peekSlot(key);
    return id === undefined ? undefined : this.#values[id];
  }

  /**
   * Seconds until the entry under `key` expires: `Infinity` if it never
   * does, undefined without a live entry.
   */
  remainingTtl(key) {
    if (typeof key !== "string") throw keyError(key);
    const now = this.#now();
    this.#live();
    const notices = this.#notices();
    const id = this.#liveSlot(key, now, notices);
    this.#notify(notices);
    if (id === undefined) {
      checkKey(key);
      return undefined;
    }
    const deadline = this.#deadline[id];
    return deadline === undefined || deadline === Infinity ? Infinity : (deadline - now) / 1000;
  }

  async get(key) {
    return this.getSync(key);
  }

  /**
   * The live value under `key`, or else the value `loader({ key, signal })`
   * returns or resolves to, stored with `options` and returned; with
   * `grace`, stale-while-revalidate. The rules, as in Rust's `get_or_set`
   * and `get_or_refresh`, are in index.d.ts.
   */
  async getOrSet(key, loader, options) {
    if (typeof key !== "string") throw keyError(key);
    if (typeof loader !== "function") {
      throw new TypeError(`getOrSet's loader must be a function, got ${describe(loader)}`);
    }
    const o = readLoadOptions(options);
    // Checked before the counted read, as in Rust: a refused call counts nothing.
    if (this.#loading.length !== 0 && this.#loading.includes(key)) throw reentrantError(key);
    if (o.signal?.aborted) throw o.signal.reason;
    if (o.ttl !== undefined) this.#expiring = true;
    const now = this.#time();
    this.#live();
    checkKey(key);
    const notices = this.#notices();
    const id = this.#liveSlot(key, now, notices);
    this.#notify(notices);
    this.#gets++;
    if (id === undefined) {
      this.#misses++;
      return this.#join(key, loader, o);
    }
    this.#hit(id);
    const value = this.#values[id];
    if (o.grace !== undefined && this.#fresh.size !== 0) {
      // Stale-while-revalidate: as the engine's get_fresh.
      const state = this.#fresh.get(id);
      if (state !== undefined && now >= state.freshUntil) {
        this.#staleHits++;
        if (!state.refreshing && now >= state.retryAt) {
          state.refreshing = true;
          this.#refreshes++;
          this.#refresh(key, loader, o);
        }
      }
    }
    return value;
  }

  /** Marks a load of `key` as begun: its token. A newer load of the key replaces it. */
  #beginLoad(key) {
    const token = ++this.#nextToken;
    this.#loads.set(key, { token });
    return token;
  }

  /**
   * Ends the load `token` of `key`: its placeholder if nothing wrote,
   * deleted, invalidated, cleared or updated the metadata of the key since
   * it began, so its value may be stored; else undefined.
   */
  #endLoad(key, token) {
    const load = this.#loads.get(key);
    if (load === undefined || load.token !== token) return undefined;
    this.#loads.delete(key);
    return load;
  }

  /** A caller that missed: leads a new load of `key`, or waits for the one under way. */
  #join(key, loader, o) {
    let resolve;
    let reject;
    const promise = new NativePromise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const call = { loader, o, resolve, reject, done: false, onAbort: undefined, timer: undefined };
    let flight = this.#flights.get(key);
    const leads = flight === undefined;
    if (leads) flight = { key, waiters: new WaiterSet(), leader: undefined, run: undefined };
    // The caller's listener and timer first: if its signal or the host
    // refuses one, nothing is registered and the call just fails.
    try {
      if (o.signal !== undefined) {
        call.onAbort = () => this.#leave(flight, call, o.signal.reason);
        o.signal.addEventListener("abort", call.onAbort, { once: true });
      }
      if (o.softTimeout !== undefined) {
        call.timer = this.#timers.set(o.softTimeout, () => {
          call.timer = undefined;
          this.#leave(flight, call, timeoutError(key, "softTimeout", o.softTimeout));
        });
      }
    } catch (error) {
      this.#detach(call);
      throw error;
    }
    if (!leads) {
      flight.waiters.add(call); // a Set: O(1) to add and to remove
      return promise;
    }
    this.#flights.set(key, flight);
    try {
      this.#lead(flight, call);
    } catch (error) {
      // The load could not start (#start undid its part): no flight is left.
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
      this.#detach(call);
      throw error;
    }
    return promise;
  }

  /** Ends a call that will not be settled: its listener and timer go. */
  #detach(call) {
    call.done = true;
    try {
      if (call.onAbort !== undefined) call.o.signal.removeEventListener("abort", call.onAbort);
    } finally {
      if (call.timer !== undefined) this.#timers.clear(call.timer);
    }
  }

  /** Settles one caller's promise, once, dropping its listener and timer. */
  #settle(call, ok, result) {
    if (call.done) return;
    call.done = true;
    // Settled first: a caller's signal whose removeEventListener throws
    // must not leave this caller, or the ones settled after it, hanging.
    if (ok) call.resolve(result);
    else call.reject(result);
    try {
      if (call.onAbort !== undefined) call.o.signal.removeEventListener("abort", call.onAbort);
    } catch {
      // The listener stays on the caller's own signal; nothing of ours is left half-done.
    } finally {
      if (call.timer !== undefined) this.#timers.clear(call.timer);
    }
  }

  /**
   * A caller gives up (its signal aborted, or its softTimeout passed): it
   * rejects with `reason`. A waiter just leaves; a leader abandons its load
   * (its loader's signal aborts, its placeholder goes) and the load passes
   * to exactly one waiter, which runs its own loader.
   */
  #leave(flight, call, reason) {
    if (call.done) return;
    if (flight.leader !== call) {
      flight.waiters.delete(call);
      this.#settle(call, false, reason);
      return;
    }
    const run = flight.run;
    this.#endRun(run);
    if (run.token !== undefined) this.#endLoad(flight.key, run.token);
    run.controller.abort(reason);
    this.#settle(call, false, reason);
    // The first waiter (a scan, once per abandoned load, as in Rust). Its
    // load may fail to start (the host refuses its timer, say): it then
    // fails, and the next one tries, so the key is never left with a load
    // that nothing runs.
    for (;;) {
      let next;
      flight.waiters.forEach((waiter) => {
        next ??= waiter;
      });
      if (next === undefined) {
        if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
        return;
      }
      flight.waiters.delete(next);
      try {
        this.#lead(flight, next);
        return;
      } catch (error) {
        this.#settle(next, false, error);
      }
    }
  }

  /** Makes `call` the leader of `flight` and starts its loader. */
  #lead(flight, call) {
    const { key } = flight;
    const { o } = call;
    flight.leader = call;
    const run = (flight.run = this.#start(key, call.loader, o, (ok, result, run) => {
      // The placeholder decides whether the value is stored; the callers get it either way.
      if (!this.#disposed) {
        try {
          if (this.#pending) this.#live();
          if (o.grace === undefined) {
            const ours = this.#endLoad(key, run.token);
            if (ok && ours !== undefined) this.#put(key, result, o.ttl, o.meta, true);
          } else {
            this.#finishRefresh(key, run.token, ok, result, o, false);
          }
        } catch (error) {
          [ok, result] = [false, this.#failed(error)];
        }
      }
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
      this.#settle(flight.leader, ok, result);
      flight.waiters.forEach((waiter) => this.#settle(waiter, ok, result));
      flight.waiters.clear();
    }));
    return run;
  }

  /**
   * Ends a stale-while-revalidate load or refresh: stores its value if its
   * placeholder stands, fresh for `ttl` and kept `grace` more; on
   * failure keeps the stale value and backs off.
   */
  #finishRefresh(key, token, ok, value, o, background) {
    if (this.#pending) this.#live();
    const load = this.#endLoad(key, token);
    if (!ok && background) this.#refreshFailures++;
    if (load === undefined) return;
    if (!ok) {
      this.#backOff(key, o);
      return;
    }
    const fresh = { freshUntil: this.#now() + o.ttl * 1000, refreshing: false, retryAt: 0, failures: 0 };
    this.#put(key, value, o.ttl + o.grace, o.meta, true, fresh);
  }

  /**
   * A refresh of `key` failed: the stale value stays and the next refresh
   * waits `retryAfter`, doubling with each failure in a row up to a minute
   * (as RefreshOptions::backoff in src/refresh.rs).
   */
  #backOff(key, o) {
    const id = this.#ids.get(key);
    const state = id === undefined ? undefined : this.#fresh.get(id);
    if (state === undefined) return;
    state.refreshing = false;
    state.failures++;
    const factor = 2 ** Math.min(state.failures - 1, 16);
    state.retryAt = this.#now() + Math.min(o.retryAfter * factor, Math.max(60, o.retryAfter)) * 1000;
  }

  /**
   * Runs `loader({ key, signal })` for `key` under a fresh placeholder, and
   * calls `finish(ok, result, run)` once when it settles, fails, returns
   * undefined or passes its hardTimeout; never if the run is ended first
   * (`#endRun`). The loader is called synchronously, with `key` marked as
   * loading, so that a getOrSet of `key` from inside it (directly, or from
   * the loader of another key it started) fails at once.
   */
  #start(key, loader, o, finish) {
    const run = { live: true, token: undefined, controller: new AbortController(), timer: undefined, end: undefined };
    const started = this.#now();
    const end = (run.end = (ok, result) => {
      if (!run.live) return;
      this.#endRun(run);
      if (ok && result === undefined) [ok, result] = [false, undefinedValueError("the loader returned")];
      if (!this.#disposed) {
        const elapsed = this.#now() - started;
        this.#loadsRun++;
        if (!ok) this.#loadFailures++;
        this.#loadTime += elapsed > 0 ? elapsed : 0;
      }
      finish(ok, result, run);
    });
    this.#runs.add(run);
    run.token = this.#beginLoad(key);
    try {
      if (o.hardTimeout !== undefined) {
        run.timer = this.#timers.set(o.hardTimeout, () => {
          run.timer = undefined;
          const error = timeoutError(key, "hardTimeout", o.hardTimeout);
          run.controller.abort(error);
          end(false, error);
        });
      }
    } catch (error) {
      this.#endRun(run);
      this.#endLoad(key, run.token);
      throw error;
    }
    let result;
    let threw = false;
    const loading = this.#loading;
    const depth = loading.length;
    loading[depth] = key;
    try {
      result = loader({ key, signal: run.controller.signal });
    } catch (error) {
      [threw, result] = [true, error];
    } finally {
      loading.length = depth;
    }
    // `new Promise` rather than Promise.resolve: a thenable whose `then`
    // getter throws rejects here instead of throwing.
    const settled = threw ? new NativePromise((_, reject) => reject(result)) : new NativePromise((resolve) => resolve(result));
    apply(promiseThen, settled, [(value) => end(true, value), (error) => end(false, error)]);
    return run;
  }

  // The runs under way (loads and refreshes), for dispose().
  #runs = new WaiterSet();

  /** Ends a run: its outcome will be ignored and its timer is stopped. */
  #endRun(run) {
    run.live = false;
    this.#runs.delete(run);
    if (run.timer !== undefined) {
      this.#timers.clear(run.timer);
      run.timer = undefined;
    }
  }

  /**
   * The background refresh of a stale entry (one per key: the engine
   * decided this call starts it). A failure keeps the stale value and backs
   * off; a write meanwhile wins. Its promise, which never rejects, goes to
   * `waitUntil` so a Worker stays alive for it.
   */
  #refresh(key, loader, o) {
    let done;
    const finished = new NativePromise((resolve) => {
      done = resolve;
    });
    try {
      this.#startRefresh(key, loader, o, done);
    } catch (error) {
      // It could not start: the refresh ends as a failed one (backing
      // off), or the key would stay "refreshing" until its grace ran out.
      this.#refreshFailures++;
      this.#backOff(key, o);
      done();
      throw error;
    }
    if (o.waitUntil !== undefined) {
      // The stale value is this caller's answer either way, and the
      // refresh runs on: a waitUntil that throws is reported, not thrown.
      try {
        o.waitUntil(finished);
      } catch (error) {
        reportLater(error);
      }
    }
  }

  #startRefresh(key, loader, o, done) {
    this.#start(key, loader, o, (ok, result, run) => {
      try {
        if (!this.#disposed) this.#finishRefresh(key, run.token, ok, result, o, true);
      } catch {
        // Nobody awaits a refresh: a value the store refuses (it cannot:
        // the options were checked) is dropped, as in Rust. (A listener's
        // error never comes here: `#notify` reports it.)
      }
      done();
    });
  }

  async set(key, value, options) {
    this.setSync(key, value, options);
  }

  async delete(key) {
    return this.deleteSync(key);
  }

  async has(key) {
    return this.hasSync(key);
  }

  /** A fresh copy of the entry's metadata ({} when it has none), or undefined. */
  async getMetadata(key) {
    const id = this.#peekSlot(key);
    if (id === undefined) return undefined;
    const meta = this.#meta.get(id);
    return meta === undefined ? {} : copyJson(meta, 0, "");
  }

  /** Merges `metadata` into the entry's (top-level keys replaced); whether the entry exists. */
  async updateMetadata(key, metadata) {
    if (typeof key !== "string") throw keyError(key);
    const update = copyMetadata(metadata);
    const id = this.#peekSlot(key);
    if (id === undefined) return false;
    this.#meta.set(id, merged(this.#meta.get(id), update));
    // A write like any other (as in Rust and Redis): a load or refresh of the
    // key that began before it stores nothing (it would erase the update). A
    // refresh it cancels is no longer running: the next stale read starts another.
    if (this.#loads.size !== 0 && this.#loads.delete(key)) {
      const state = this.#fresh.get(id);
      if (state !== undefined) state.refreshing = false;
    }
    return true;
  }

  /** Removes the live entries whose keys match the Redis glob `pattern`; how many. */
  async invalidate(pattern) {
    return this.invalidateSync(pattern);
  }

  /** {@link invalidate} without the Promise. */
  invalidateSync(pattern) {
    if (typeof pattern !== "string") throw patternError(pattern);
    if (!isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
    const now = this.#now();
    const store = this.#live(DEEP);
    const notices = this.#notices();
    let ids;
    try {
      this.#reclaim(now, notices);
      const keys = [];
      const slots = [];
      this.#ids.forEach((id, key) => {
        keys[keys.length] = key;
        slots[slots.length] = id;
      });
      const hits = matching(pattern, keys);
      // Loads of matching keys store nothing (those with no entry too),
      // cancelled once the removal has happened: an invalidation that fails
      // changes nothing, so a refresh it would have cancelled still ends it.
      let loading;
      let cancelled;
      if (this.#loads.size !== 0) {
        loading = [];
        this.#loads.forEach((_, key) => {
          loading[loading.length] = key;
        });
        cancelled = matching(pattern, loading);
      }
      const n = hits.length;
      if (n === 0) {
        if (cancelled !== undefined) for (const i of cancelled) this.#loads.delete(loading[i]);
        this.#notify(notices);
        return 0;
      }
      const at = store.report(n);
      if (at === 0) throw noRoom();
      const room = new U32(buffer(), at, n);
      for (let i = 0; i < n; i++) room[i] = slots[hits[i]];
      ids = new U32(n);
      ids.set(room);
      store.removeReported(this.#ringN);
      this.#ringN = 0;
      if (cancelled !== undefined) for (const i of cancelled) this.#loads.delete(loading[i]);
    } catch (error) {
      wasmThrew();
      const failure = error instanceof RuntimeError ? this.#failed(error) : error;
      this.#notify(notices);
      throw failure;
    }
    for (let i = 0; i < ids.length; i++) this.#drop(ids[i], INVALIDATED, notices);
    this.#notify(notices);
    return ids.length;
  }

  /** The slot ids of the live entries, all or those matching `pattern`, in the documented order. */
  #slots(pattern) {
    if (pattern !== undefined && typeof pattern !== "string") throw patternError(pattern);
    if (pattern !== undefined && !isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
    const now = this.#now();
    const store = this.#live(DEEP);
    const notices = this.#notices();
    let ids;
    try {
      this.#reclaim(now, notices);
      let n;
      try {
        n = store.list(this.#ringN);
        this.#ringN = 0;
      } catch (error) {
        throw this.#failed(error);
      }
      if (n < 0) throw noRoom();
      ids = Array.from(this.#report(n));
      if (pattern !== undefined) {
        const keys = ids.map((id) => this.#keys[id] ?? "");
        ids = matching(pattern, keys).map((i) => ids[i]);
      }
    } finally {
      this.#notify(notices);
    }
    return ids;
  }

  /**
   * The keys of live entries, all or those matching `pattern`, in the
   * documented order (see `entries`).
   */
  async keys(pattern) {
    return this.keysSync(pattern);
  }

  /** {@link keys} without the Promise. */
  keysSync(pattern) {
    const ids = this.#slots(pattern);
    const keys = [];
    for (let i = 0; i < ids.length; i++) {
      const key = this.#keys[ids[i]];
      if (key !== undefined) keys[keys.length] = key;
    }
    return keys;
  }

  /**
   * The live entries as [key, value] pairs, counting nothing and changing
   * no order. Order: LRUPolicy, most recently used first; TTLPolicy, most
   * recently set first; S3FIFOPolicy, the probationary queue newest first,
   * then the main queue newest first. The entries are those live when the
   * iteration starts; one removed meanwhile is skipped.
   */
  *entries() {
    const ids = this.#slots(undefined);
    // The keys as they were: a slot freed meanwhile and taken by another
    // key (or by the same key set again after a later slot was freed) is
    // not the entry the iteration started with.
    const keys = [];
    for (let i = 0; i < ids.length; i++) keys[i] = this.#keys[ids[i]];
    for (let i = 0; i < ids.length; i++) {
      const key = keys[i];
      if (key !== undefined && this.#keys[ids[i]] === key) yield [key, this.#values[ids[i]]];
    }
  }

  /** The values of {@link entries}, in its order. */
  *values() {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator]() {
    return this.entries();
  }

  /** Removes every entry. */
  async clear() {
    this.clearSync();
  }

  /** {@link clear} without the Promise. */
  clearSync() {
    const now = this.#now();
    const store = this.#live(DEEP);
    const notices = this.#notices();
    try {
      this.#reclaim(now, notices);
      try {
        store.clear();
        this.#ringN = 0;
      } catch (error) {
        throw this.#failed(error);
      }
    } catch (error) {
      this.#notify(notices);
      throw error;
    }
    if (notices !== undefined) {
      this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
    }
    this.#forgetAll();
    this.#notify(notices);
  }

  /**
   * For the package's tests, not part of the API: where the two halves
   * disagree, as messages ([] when they agree). The engine's live entries
   * (after reclaiming the expired ones) must be exactly the slots this side
   * holds a key and a value for.
   */
  [AUDIT]() {
    const ids = this.#slots(undefined);
    const problems = [];
    if (ids.length !== this.#ids.size) problems.push(`the engine holds ${ids.length} entries, JS ${this.#ids.size}`);
    if (this.#store.live() !== ids.length) problems.push(`the engine counts ${this.#store.live()} live entries, lists ${ids.length}`);
    for (const id of ids) {
      const key = this.#keys[id];
      if (key === undefined) problems.push(`slot ${id}: no key on the JS side`);
      else if (this.#ids.get(key) !== id) problems.push(`slot ${id}: ${shownKey(key)} maps to ${this.#ids.get(key)}`);
      if (this.#values[id] === undefined) problems.push(`slot ${id}: no value on the JS side`);
    }
    this.#meta.forEach((_, id) => {
      if (this.#keys[id] === undefined) problems.push(`slot ${id}: metadata without an entry`);
    });
    this.#fresh.forEach((_, id) => {
      if (this.#keys[id] === undefined) problems.push(`slot ${id}: freshness without an entry`);
    });
    return problems;
  }

  /** How many live entries there are. */
  get size() {
    const now = this.#now();
    this.#live(DEEP);
    const notices = this.#notices();
    try {
      this.#reclaim(now, notices);
    } finally {
      this.#notify(notices);
    }
    return this.#ids.size;
  }

  /** The counters so far; `avgGetLatency` and `totalLoadTime` in milliseconds. */
  getStats() {
    this.#live();
    const [sets, deletes, evictions, expirations] = this.#counters;
    const misses = this.#misses;
    const hits = this.#gets - misses;
    const gets = hits + misses;
    return {
      hits,
      misses,
      sets,
      deletes,
      evictions,
      expirations,
      hitRatio: gets === 0 ? 0 : hits / gets,
      avgGetLatency: this.#latencySamples === 0 ? 0 : this.#latencyTotal / this.#latencySamples,
      loads: this.#loadsRun,
      loadFailures: this.#loadFailures,
      totalLoadTime: this.#loadTime,
      staleHits: this.#staleHits,
      refreshes: this.#refreshes,
      refreshFailures: this.#refreshFailures,
    };
  }

  /** Sets every counter back to zero. */
  resetStats() {
    const store = this.#live();
    try {
      store.resetCounters();
    } catch (error) {
      throw this.#failed(error);
    }
    this.#zeroCounters();
    statsSince.set(this, Date.now());
  }

  /**
   * Ends the store: pending `getOrSet` calls reject with a CacheError and
   * their loaders' signals abort, entries are released without notices,
   * the wasm memory is freed, and every later call throws a CacheError.
   * Calling it again does nothing.
   */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    const error = disposedError();
    // Each load and refresh ends as failed: callers reject, and the
    // promise a refresh handed to waitUntil settles.
    this.#runs.forEach((run) => {
      run.controller.abort(error);
      run.end(false, error);
    });
    this.#flights.forEach((flight) => {
      this.#settle(flight.leader, false, error);
      flight.waiters.forEach((waiter) => this.#settle(waiter, false, error));
      flight.waiters.clear();
    });
    this.#flights.clear();
    this.#forgetAll();
    this.#values = [];
    this.#keys = [];
    this.#header = new U32(0);
    this.#version = -1;
    try {
      this.#store.free();
    } catch {
      // Left borrowed by a trap: the engine's memory is then leaked, not reused.
    }
  }
}

// `using store = new MemoryStore(...)` where the runtime has explicit resource management.
if (typeof Symbol.dispose === "symbol") {
  Object.defineProperty(MemoryStore.prototype, Symbol.dispose, {
    value: function dispose() {
      this.dispose();
    },
    writable: true,
    configurable: true,
  });
}
