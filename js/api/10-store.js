// js/api/10-store.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// MemoryStore: its state, the JS half of the engine (keys, values and
// metadata by slot id, the views of the engine's memory, the repair after a
// failed call), and the calls on one key. The getSync path comes first,
// right after the constructor: a Map lookup and plain reads and writes of
// the engine's memory, no call into wasm. Then the JS half of the engine,
// the writes, getOrSet's front door
// (its loads are Loads, 9-loads.js, and their single flight Flights,
// 8-flights.js), stats and dispose. The walks (invalidate, keys, entries,
// clear, size) are in 11-walks.js.
//
// Over 800 lines, because a class's private fields can be read only inside
// its body: the getSync path reads them directly (an accessor there would
// cost every hit), and so do the calls that change the engine and must keep
// both halves in step after a trap or a stack overflow (#live, #repair,
// #put, #place). What needs neither lives in the files named above.

/** Appends one removal notice (no Array method: see SlotMap). */
function notify3(notices, value, key, reason) {
  const n = notices.length;
  notices[n] = value;
  notices[n + 1] = key;
  notices[n + 2] = reason;
}

// The largest store maxSize: twice it is still a safe integer.
const MAX_STORE_SIZE = Math.floor(Number.MAX_SAFE_INTEGER / 2);

const STORE_OPTIONS = ["policy", "clock", "onRemove", "maxSize", "sizeCalculation"];

// How many counters the engine keeps (those with an index in the core's counter table).
const ENGINE_COUNTERS = COUNTERS.reduce((n, { engine }) => Math.max(n, engine + 1), 0);

// MemoryStore's state as the walks (11-walks.js) reach it: set by its static field `#walks`.
let inside;

function disposedError() {
  return new CacheError("this MemoryStore was disposed");
}
// A bounded store reserves room for up to this many entries when it is made.
const PREALLOCATE_MAX = 1 << 22;
// How a store tells its engine of a hit (MemoryStore#mode).
const RING = 1;
const FREQ = 2;

class MemoryStore {
  // The engine's number (see NO_ENGINE), and the cell the garbage collector's
  // release of it reads (`engineCells`): both written together.
  #store = NO_ENGINE;
  #cell = { n: NO_ENGINE };
  // How many slots the arrays were made with (see the constructor).
  #prealloc = 0;
  #ids = new SlotMap();
  #values = [];
  #keys = [];
  // Metadata (plain copies) and getOrSet freshness, by slot id: most entries have neither.
  #meta = new SlotMap();
  #fresh = new SlotMap();
  // Time-to-idle: per slot with one, [idle ms, TTL deadline ms] (a hit moves
  // the slot's deadline in the engine's memory to the sooner of now + idle
  // and the TTL deadline); whether any entry has had one (only then does a
  // hit look); the policy's idle seconds and TTL ms.
  #idles = new SlotMap();
  #idling = false;
  #defaultIdle;
  #defaultTtlMs = Infinity;
  // getOrSet's loads (9-loads.js), and their placeholders by key: a write,
  // delete, invalidate, clear or updateMetadata of a key removes its
  // placeholder, so a load that began before it stores nothing.
  #loads;
  #placeholders;
  // Whether any entry may expire: only then is the clock read on a hit.
  #expiring = false;
  #now = systemNow;
  #onRemove;
  #disposed = false;
  // The wasm policy, to start a fresh engine after a trap (`#reset`).
  #policy;
  // A TTLPolicy's: evicts by deadline (dump's order, 15-dump.js).
  #byDeadline = false;
  // Set when a call failed: the next call first makes sure the engine is
  // intact and that no placement was cut short (`#repair`).
  #pending = false;
  // How a hit tells the engine: RING (exact LRU: the access ring), FREQ
  // (S3-FIFO: the slot's access count), or nothing (TTL, LRU without refreshOnGet).
  #mode = 0;
  // Views of the engine's memory (`#view`), valid while #header[0] is #version
  // (a hit under LRU or S3-FIFO trusts the ring's and counts' bounds instead: `#unview`).
  #header = new U32(0);
  #version = -1;
  #counters = NO_DEADLINES;
  #ring = NO_RING;
  #ringN = 0;
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
  // Tags (12-tags.js): slot id -> its tags (a frozen array), and tag -> the
  // ids that carry it; both empty until a tagged set. Declared last, after
  // the fields a hit reads, which keep their places in the object.
  #tags = new SlotMap();
  #byTag = new SlotMap();

  // Capacity in size (lru-cache's `maxSize` and `sizeCalculation`): the
  // bound, undefined when the store is not sized; the function; each slot's
  // size (undefined when not sized); their total.
  #maxSize;
  #sizeCalc;
  #sizes;
  #sizeTotal = 0;

  /** Reads the store's `maxSize` and `sizeCalculation` (lru-cache's rules). */
  #sized(maxSize, sizeCalculation) {
    if (sizeCalculation !== undefined) {
      if (typeof sizeCalculation !== "function") {
        throw new CachePolicyError(`sizeCalculation must be a function (value, key) => size, got ${describe(sizeCalculation)}`);
      }
      if (maxSize === undefined) throw unsizedError("sizeCalculation");
    }
    if (maxSize === undefined) return;
    this.#maxSize = positiveSize(maxSize, "the store's maxSize");
    // The total can reach maxSize plus one entry's size before evicting:
    // above this it would not be a safe integer, and would drift.
    if (this.#maxSize > MAX_STORE_SIZE) {
      throw new CachePolicyError(`the store's maxSize must be at most ${MAX_STORE_SIZE}, got ${maxSize}`);
    }
    this.#sizeCalc = sizeCalculation;
    this.#sizes = [];
  }

  /**
   * The size of `value` under `key` in a sized store: `size` if given, else
   * what sizeCalculation returns; a positive integer at most `maxSize`, or
   * it throws (nothing has changed yet).
   */
  #sizeOf(key, value, size) {
    // A bad key fails as one before the caller's sizeCalculation runs.
    checkKey(key);
    if (size !== undefined) positiveSize(size, "size");
    else if (this.#sizeCalc !== undefined) size = positiveSize(this.#sizeCalc(value, key), "sizeCalculation's result");
    else throw new CachePolicyError("a store with maxSize needs each entry's size: a sizeCalculation or set's { size }");
    if (size > this.#maxSize) throw tooLargeError(key, size, this.#maxSize);
    return size;
  }

  /**
   * Evicts, by the policy's rule, until the sizes fit `maxSize` again, never
   * slot `id` (the entry just set); the removal notices, for `#notify`.
   */
  #fit(id, now, notices) {
    const store = this.#store;
    while (this.#sizeTotal > this.#maxSize) {
      let got;
      try {
        got = WasmEngines.evict(store, this.#ringN, now, id);
        this.#ringN = 0;
      } catch (error) {
        // Plain writes first: no stack may be left for a call here (see `#failed`).
        stackMoved = true;
        this.#pending = true;
        this.#version = -1;
        this.#ring = NO_RING;
        this.#freq = NO_COUNTS;
        throw this.#failed(error);
      }
      if (got < 0) break;
      const reason = got % 4;
      try {
        if (notices === undefined) notices = this.#notices();
        this.#drop((got - reason) / 4, reason, notices);
      } catch (error) {
        // Cut short after the engine freed the slot: the next call finishes
        // forgetting it (`#finishDrop`). Plain field writes: no call.
        this.#dropId = (got - reason) / 4;
        this.#dropReason = reason;
        this.#pending = true;
        this.#version = -1;
        this.#ring = NO_RING;
        this.#freq = NO_COUNTS;
        throw error;
      }
    }
    return notices;
  }

  constructor(options) {
    statsSince.set(this, Date.now());
    const { policy, clock, onRemove, maxSize, sizeCalculation } = readOptions(options, "MemoryStore", STORE_OPTIONS);
    this.#sized(maxSize, sizeCalculation);
    const wasmPolicy = wasmPolicies.get(policy);
    if (wasmPolicy === undefined) {
      throw new CachePolicyError(
        `MemoryStore needs { policy: new S3FIFOPolicy({ maxSize }) }, an LRUPolicy or a TTLPolicy, got policy ${describe(policy)}`,
      );
    }
    // Where getOrSet's timeouts wait: setTimeout, or the store's ManualClock.
    let timers = realTimers;
    if (clock !== undefined) {
      const state = clockTimers.get(clock);
      if (state === undefined) throw new CachePolicyError(`clock must be a ManualClock, got ${describe(clock)}`);
      this.#now = () => state.now;
      timers = manualTimers(clock);
    }
    this.#onRemove = checkListener(onRemove);
    this.#loads = new Loads(timers, {
      now: this.#now,
      // A failed call is repaired before a load stores its value.
      ready: () => {
        if (this.#pending) this.#live();
      },
      put: (key, value, ttl, meta, fresh, tags, idle) =>
        this.#put(key, value, ttl, meta, true, fresh, undefined, tags, idle),
      freshOf: (key) => {
        const id = this.#ids.get(key);
        return id === undefined ? undefined : this.#fresh.get(id);
      },
      disposed: () => this.#disposed,
    });
    this.#placeholders = this.#loads.placeholders;
    this.#expiring = policy.ttl !== undefined || policy.idle !== undefined;
    this.#defaultIdle = policy.idle;
    if (policy.ttl !== undefined) this.#defaultTtlMs = policy.ttl * 1000;
    this.#policy = wasmPolicy;
    this.#byDeadline = policy instanceof TTLPolicy;
    // Bounded stores reserve their arrays up front, as lru-cache does.
    this.#prealloc = Math.min(policy.maxSize ?? 0, PREALLOCATE_MAX);
    this.#values = new Array(this.#prealloc);
    this.#keys = new Array(this.#prealloc);
    let reorders;
    // Registered before the engine is made: a constructor that fails after
    // it leaves the engine to the garbage collector's release.
    engineCells?.register(this, this.#cell);
    try {
      this.#store = this.#cell.n = WasmEngines.create(wasmPolicy, this.#prealloc);
      this.#locate();
      reorders = WasmEngines.hitsReorder(this.#store);
    } catch (error) {
      stackMoved = true; // a plain write: see `stackMoved`
      throw error;
    }
    this.#view();
    // How a hit tells the engine, as the engine says: in the ring if a hit
    // reorders (exact LRU), in its access count if it keeps them (S3-FIFO).
    this.#mode = reorders ? RING : this.#header[2] !== 0 ? FREQ : 0;
  }

  // The getSync path (a hit never calls into wasm); the async get below is a thin wrapper.

  /**
   * The value under `key`, or undefined. A hit is a Map lookup and plain
   * reads and writes of the engine's memory: the deadline, when entries
   * may expire; then the access ring (exact LRU, replayed by the engine
   * before anything that evicts, reorders or lists) or the access count
   * (S3-FIFO). No call into wasm.
   */
  getSync(key) {
    // The sampled get inside the try too: a stack overflow at its call
    // (before its body runs) must also take the get back.
    try {
      if ((++this.#gets & SAMPLE_MASK) === 0) return this.#timedGet(key);
      return this.#read(key);
    } catch (error) {
      this.#gets--; // a call that fails counts nothing
      throw error;
    }
  }

  /**
   * getSync without the latency sampling (which calls this: no recursion on
   * the hot path). The views' version is checked only where the deadline is
   * read, or where a hit writes nothing: the ring's and the access counts'
   * own bounds check stands for it (see `#unview`).
   */
  #read(key) {
    const id = this.#ids.get(key);
    if (id === undefined) return this.#missed(key, id);
    if (this.#expiring) {
      // Also false while a failed call awaits repair (`#failed` clears the version).
      if (this.#header[0] !== this.#version) return this.#stale(key);
      const now = this.#now();
      if (this.#deadline[id] <= now) return this.#missed(key, id);
      if (this.#idling) this.#idleRead(id, now);
    }
    if (!this.#tell(id)) return this.#slowHit(key, id);
    return this.#values[id];
  }

  /**
   * Tells the engine of a hit on slot `id` (the one place a hit is
   * written): in the access ring (exact LRU, replayed by the engine before
   * anything that evicts, reorders or lists) or in the slot's access count
   * (S3-FIFO). False, with nothing written, when the view is out of its
   * bounds: its memory grew (a detached view has length 0), a failed call
   * awaits repair or the store was disposed (`#unview` empties the views),
   * or the ring is full. A store whose hits write nothing (TTL, LRU without
   * refreshOnGet) checks the views' version instead, which stops a read
   * after dispose or before a repair.
   */
  #tell(id) {
    const mode = this.#mode;
    if (mode === RING) {
      // A repeated hit is written again, not compared with the last: the
      // comparison (a read of the ring) cost more on every hit, 30
      // instructions of ~400, than the replay of a repeat costs (the engine
      // passes over a hit on the slot already at the head).
      const ring = this.#ring;
      const n = this.#ringN;
      if (n >= ring.length) return false;
      ring[n] = id;
      this.#ringN = n + 1;
    } else if (mode === FREQ) {
      // The access count, in the byte's FREQ_COUNT bits, saturates at
      // MAX_FREQ (the engine keeps the slot's queue in another bit).
      const freq = this.#freq;
      if (id >= freq.length) return false;
      const f = freq[id];
      if ((f & FREQ_COUNT) < MAX_FREQ) freq[id] = f + 1;
    } else if (this.#header[0] !== this.#version) {
      return false;
    }
    return true;
  }

  /** Tells the engine of a hit on slot `id` when the views are current (getOrSet, after `#live`): a full ring is replayed first. */
  #hit(id) {
    if (!this.#tell(id)) {
      this.#drain();
      this.#tell(id);
    }
  }

  /**
   * A hit on live slot `id` whose view was out of bounds: stale views or
   * a call to repair first (`#stale` reads again), else a full ring,
   * replayed before the hit is written: a drain cut short (a stack
   * overflow in the engine's probe) leaves it full, and the next hit
   * retries it, where writing first would have run past the ring's end.
   */
  #slowHit(key, id) {
    if (this.#header[0] !== this.#version) return this.#stale(key);
    if (this.#mode === RING && this.#ringN === RING_LEN && this.#ring.length === RING_LEN) {
      this.#drain();
      this.#tell(id);
    }
    return this.#values[id];
  }

  /**
   * A read of live slot `id` at `now`: if its entry has an idle time, its
   * deadline in the engine's memory moves to the sooner of `now + idle`
   * and its TTL deadline (only ever later: the engine's expiry queue,
   * which holds the deadline as it was, files it again when it comes up).
   */
  #idleRead(id, now) {
    const clock = this.#idles.get(id);
    if (clock === undefined) return;
    const idle = now + clock[0];
    const deadline = idle < clock[1] ? idle : clock[1];
    if (deadline > this.#deadline[id]) this.#deadline[id] = deadline;
  }

  /** Replays the full access ring. */
  #drain() {
    try {
      unwind();
      WasmEngines.replay(this.#store, this.#ringN);
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    this.#ringN = 0;
  }

  // One get in LATENCY_SAMPLE_EVERY is timed (on the store's clock) for
  // `avgGetLatency`. A get that throws here is taken back by getSync, so
  // nothing may throw once the read is done (it has counted its miss).
  #timedGet(key) {
    const started = this.#now();
    const value = this.#read(key);
    let elapsed;
    try {
      elapsed = this.#now() - started;
    } catch {
      return value; // no stack left to read the clock again: the get stands, untimed
    }
    if (!this.#disposed) {
      this.#latencyTotal += elapsed > 0 ? elapsed : 0;
      this.#latencySamples++;
    }
    return value;
  }

  /** getSync when the views are out of date, or a failed call awaits repair. */
  #stale(key) {
    if (this.#pending || this.#disposed) this.#live();
    else this.#view();
    return this.#read(key);
  }

  /** A get that found no live entry here (or a call to repair first). */
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
      WasmEngines.expire(this.#store, this.#ringN, id);
      this.#ringN = 0;
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    try {
      this.#drop(id, EXPIRED, notices);
    } catch (error) {
      // Cut short after the engine freed the slot: the next call finishes
      // forgetting it (`#finishDrop`). Plain field writes: no call.
      this.#dropId = id;
      this.#dropReason = EXPIRED;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
  }

  // The JS half of the engine: views of its memory, the repair after a failed
  // call, and forgetting what it removed.

  // Where the engine's fixed buffers are (they never move), read once.
  #at;

  /** The engine's addresses, asked once per engine. */
  #locate() {
    const store = this.#store;
    this.#at = { header: WasmEngines.header(store), counters: WasmEngines.counters(store), ring: WasmEngines.ring(store), removed: WasmEngines.removed(store) };
    this.#unview();
  }

  /**
   * Marks the views out of date, and empties the two a hit writes without
   * checking the version (the ring and the access counts, see `#read`): a
   * hit then finds itself out of bounds and takes the slow way, which
   * repairs or takes new views first. Any call that may move the engine's
   * arrays (a set, clear) takes new views right after it, so between calls
   * a view in bounds is a current one, or one whose memory grew (detached:
   * length 0).
   */
  #unview() {
    this.#version = -1;
    this.#ring = NO_RING;
    this.#freq = NO_COUNTS;
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
    this.#counters = new F64(memory, at.counters, ENGINE_COUNTERS);
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
    // A reset cut short (see #reset) is done again: its new engine may be in
    // place with this side still holding the broken one's entries.
    let intact = !this.#resetting;
    if (intact) {
      try {
        intact = WasmEngines.intact(this.#store);
      } catch (error) {
        if (error instanceof RangeError) throw error; // no stack to tell: ask again next time
        intact = false;
      }
    }
    if (!intact) {
      try {
        this.#reset();
      } catch (error) {
        // Plain writes first: no stack may be left for a call here (see `#failed`).
        stackMoved = true;
        this.#pending = true;
        this.#version = -1;
        this.#ring = NO_RING;
        this.#freq = NO_COUNTS;
        throw this.#failed(error); // no memory even for an empty engine
      }
    } else {
      if (this.#header[0] !== this.#version) this.#view();
      if (this.#dropId >= 0 || this.#dropIds !== undefined) this.#finishDrop();
      if (this.#clearing) this.#finishClear();
      if (this.#cutKey !== undefined) this.#finishPlacing();
      if (this.#reclaimCut !== 0) this.#finishReclaim();
    }
    this.#pending = false;
  }

  /**
   * Replaces a broken engine with a fresh empty one: every entry leaves
   * with the reason "cleared" (the listener is told once the store is
   * consistent; its error, with no caller to go to, is reported), the
   * counters start again from zero, and the loads under way will not
   * store their values (their callers still get them). The broken engine
   * is released before the new one is made (its memory is the new one's to
   * take); a release cut short is finished by a later call (`orphans`).
   */
  #reset() {
    // Until this side has forgotten the broken engine's entries: a stack
    // overflow in between leaves the flag, and the next call resets again.
    this.#resetting = true;
    const broken = this.#store;
    if (broken !== NO_ENGINE) {
      // Plain writes: listed for release before this store lets go of it.
      orphans[orphans.length] = broken;
      this.#store = this.#cell.n = NO_ENGINE;
      stackMoved = true;
    }
    freeOrphans();
    this.#store = this.#cell.n = WasmEngines.create(this.#policy, 0);
    this.#ringN = 0;
    this.#locate();
    this.#view();
    statsSince.set(this, Date.now());
    this.#zeroCounters();
    this.#clearCut();
    this.#reclaimCut = 0;
    this.#dropId = -1;
    this.#dropIds = undefined;
    this.#clearing = false;
    // The notices are made once, from the entries as they were: a retry
    // finds this side already emptied and sends these.
    if (this.#resetNotices === null) {
      const notices = this.#notices();
      if (notices !== undefined) this.#ids.forEach((id, key) => notify3(notices, this.#values[id], key, "cleared"));
      this.#resetNotices = notices;
    }
    this.#forgetAll();
    this.#pending = false;
    const notices = this.#resetNotices;
    this.#resetNotices = null;
    this.#resetting = false;
    try {
      this.#notify(notices);
    } catch (error) {
      reportLater(error);
    }
  }

  // A reset under way (#reset), and its removal notices once made (null before).
  #resetting = false;
  #resetNotices = null;

  #forgetAll() {
    if (this.#sizes !== undefined) {
      this.#sizes = [];
      this.#sizeTotal = 0;
    }
    this.#ids.clear();
    this.#values = new Array(this.#prealloc);
    this.#keys = new Array(this.#prealloc);
    this.#meta.clear();
    this.#fresh.clear();
    this.#idles.clear();
    this.#tags.clear();
    this.#byTag.clear();
    this.#placeholders.clear();
  }

  #zeroCounters() {
    this.#gets = 0;
    this.#misses = 0;
    this.#latencyTotal = 0;
    this.#latencySamples = 0;
    this.#loads.zero();
  }

  /**
   * Forgets slot `id` (the engine freed it) and, with a listener,
   * queues (value, key, reason) on `notices` for `#notify`.
   */
  #drop(id, reason, notices) {
    const key = this.#keys[id];
    if (key === undefined) return;
    const value = this.#values[id];
    // Every live slot's key maps to it (a new mapping is made only after
    // the drops of the set that made it), so no lookup is needed first.
    // Each step can be done again (a stack overflow may cut this anywhere:
    // `#finishDrop` runs it again), and the key and value are forgotten
    // last, with no call after them: until then, this slot is not done.
    this.#ids.delete(key);
    if (this.#sizes !== undefined) {
      this.#sizeTotal -= this.#sizes[id] ?? 0;
      this.#sizes[id] = 0;
    }
    if (this.#meta.size !== 0) this.#meta.delete(id);
    if (this.#fresh.size !== 0) this.#fresh.delete(id);
    if (this.#idling) this.#idles.delete(id);
    if (this.#tags.size !== 0) untag(this.#tags, this.#byTag, id);
    if (notices !== undefined) notify3(notices, value, key, REASONS[reason]);
    this.#values[id] = undefined;
    this.#keys[id] = undefined;
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
    deliver(this.#onRemove, notices, later);
  }

  /** The `n` slot ids in the engine's report. */
  #report(n) {
    return new U32(buffer(), WasmEngines.report(this.#store, 0), n);
  }

  /** Forgets the ids of the entries that expired by `now`. */
  #reclaim(now, notices) {
    let n;
    try {
      n = WasmEngines.reclaim(this.#store, this.#ringN, now);
      this.#ringN = 0;
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    if (n < 0) throw noRoom();
    if (n === 0) return;
    try {
      const ids = this.#report(n);
      for (let i = 0; i < n; i++) this.#drop(ids[i], EXPIRED, notices);
    } catch (error) {
      // Cut short after the engine freed the slots (reading its report and
      // forgetting them can need more stack than the call's headroom
      // reserved): the next call forgets the rest first (`#finishReclaim`;
      // the notices made so far are the cut call's to send). Plain field
      // writes: no call.
      this.#reclaimCut = n;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
  }

  // How many slots a reclaim cut short had freed in the engine (0: none),
  // their ids still in the engine's report (only this store's calls write
  // it, and each repairs first).
  #reclaimCut = 0;

  /** Forgets the slots a reclaim cut short had freed (see `#reclaim`); their notices go out. */
  #finishReclaim() {
    const n = this.#reclaimCut;
    const notices = this.#notices();
    const ids = this.#report(n);
    // Cut short again, the next call retries: `#drop` of a forgotten id does nothing.
    for (let i = 0; i < n; i++) this.#drop(ids[i], EXPIRED, notices);
    this.#reclaimCut = 0;
    // The cut call already threw to its caller: a listener's error is reported.
    this.#notify(notices, true);
  }

  // A slot (or slots) the engine freed whose forgetting here (`#drop`) a
  // stack overflow cut short, and why (deleteSync, an expired entry's
  // read, an eviction for maxSize, invalidate): -1 and undefined for none.
  #dropId = -1;
  #dropIds;
  #dropReason = 0;
  // Set from the engine's clear until this side has forgotten every entry.
  #clearing = false;

  /** Finishes forgetting the slots a cut `#drop` left (see `#dropId`); their notices go out. */
  #finishDrop() {
    const notices = this.#notices();
    // Cut short again, the next call retries: each step of `#drop` can be done again.
    if (this.#dropId >= 0) this.#drop(this.#dropId, this.#dropReason, notices);
    const ids = this.#dropIds;
    if (ids !== undefined) for (let i = 0; i < ids.length; i++) this.#drop(ids[i], this.#dropReason, notices);
    this.#dropId = -1;
    this.#dropIds = undefined;
    // The cut call already threw to its caller: a listener's error is reported.
    this.#notify(notices, true);
  }

  /** Forgets every entry after the engine's clear was cut short here (see `#clearAll`). */
  #finishClear() {
    this.#forgetAll();
    this.#clearing = false;
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
    let size;
    let tags;
    let idle;
    if (options !== undefined) {
      readSetOptions(options);
      ({ ttl, meta, size, tags, idle } = setOptions);
    }
    this.#put(key, value, ttl, meta, undefined, undefined, size, tags, idle);
  }

  /**
   * Stores `value` under `key` (checked a string) with a ttl in seconds and
   * metadata (a plain copy); throws if refused. `later`: see `#notify`.
   */
  #put(key, value, ttl, meta, later, fresh, size, tags, idle = this.#defaultIdle) {
    // The caller's sizeCalculation runs first: if it throws, nothing changed.
    if (this.#maxSize !== undefined) size = this.#sizeOf(key, value, size);
    else if (size !== undefined) throw unsizedError("size");
    if (ttl !== undefined || idle !== undefined) this.#expiring = true;
    const now = this.#time();
    // With an idle time the engine gets the sooner of it and the TTL: the
    // deadline until the first read.
    let engineTtl = ttl === undefined ? NaN : ttl * 1000;
    let clock;
    if (idle !== undefined) {
      const ttlMs = ttl === undefined ? this.#defaultTtlMs : ttl * 1000;
      const idleMs = idle * 1000;
      clock = [idleMs, now + ttlMs];
      engineTtl = idleMs < ttlMs ? idleMs : ttlMs;
    }
    // Nothing of the caller's runs from here to the end of the call into
    // wasm. No headroom probe here (4 calls: 130 instructions, a quarter of
    // what this side adds to a set): the engine's own probe, inside the
    // call, has just found room below this frame, and a stack overflow in
    // `#place` after the engine stored the entry is finished by the next
    // call (`#finishPlacing`), so the engine never holds an entry this side
    // has no value for.
    const store = this.#live(0);
    const existing = this.#ids.get(key);
    let hash = 0;
    if (existing === undefined) {
      checkKey(key);
      if (this.#mode === FREQ) hash = hashKey(key);
    }
    let id;
    try {
      id = WasmEngines.set(store, this.#ringN, existing ?? -1, hash, engineTtl, now, this.#gets, this.#misses);
      this.#ringN = 0;
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
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
      notices = this.#place(id, key, value, meta, fresh, size, tags, clock);
    } catch (error) {
      // Cut short past the probe (V8 may need far more stack to compile or
      // tier up a function than the probe reserves): the engine holds the
      // entry, so the next call finishes placing it (`#finishPlacing`)
      // before anything reads either side. Plain field writes: no call.
      this.#cutId = id;
      this.#cutValue = value;
      this.#cutMeta = meta;
      this.#cutFresh = fresh;
      this.#cutIdle = clock;
      this.#cutTags = tags;
      this.#cutKey = key;
      this.#cutSize = size;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
    if (this.#maxSize !== undefined && this.#sizeTotal > this.#maxSize) notices = this.#fit(id, now, notices);
    this.#notify(notices, later);
  }

  // An entry the engine stored whose placement here was cut short (see
  // `#put`): its slot, value, metadata and key (undefined when there is none).
  #cutId = 0;
  #cutValue;
  #cutMeta;
  #cutFresh;
  #cutIdle;
  #cutTags;
  #cutKey;
  #cutSize;

  /**
   * Finishes placing the entry a stack overflow cut short, before any
   * other call: the removed buffer still holds that set's report, since
   * only a set writes it, and each call comes here first. Parts of
   * `#place` already done are skipped (`#drop` of a forgotten id does
   * nothing). Its notices, if any, go out as the set's would have.
   */
  #finishPlacing() {
    // Forgotten only once done: cut short again, the next call retries.
    let notices = this.#place(
      this.#cutId, this.#cutKey, this.#cutValue, this.#cutMeta, this.#cutFresh, this.#cutSize, this.#cutTags,
      this.#cutIdle,
    );
    this.#clearCut();
    if (this.#maxSize !== undefined && this.#sizeTotal > this.#maxSize) {
      notices = this.#fit(this.#cutId, this.#time(), notices);
    }
    // The cut set already threw to its caller: a listener's error is reported.
    this.#notify(notices, true);
  }

  /** Forgets a cut placement's fields, so they keep nothing of the caller's alive. */
  #clearCut() {
    this.#cutKey = undefined;
    this.#cutValue = undefined;
    this.#cutMeta = undefined;
    this.#cutFresh = undefined;
    this.#cutIdle = undefined;
    this.#cutTags = undefined;
  }

  /**
   * What a call rethrows after `error` (and the next call checks the engine:
   * `#repair`). Each catch that calls it has already made its writes (the
   * stack moved, a repair pending, the views out of date) as plain writes:
   * the call itself may fail for want of stack, and a call cut short whose
   * state it did not mark would leave the shadow stack pointer off and a
   * half-changed engine unchecked.
   */
  #failed(error) {
    stackMoved = true;
    this.#pending = true;
    this.#unview();
    return error instanceof RuntimeError
      ? new CacheBackendError(`the wasm engine trapped: ${error.message}`, { cause: error })
      : error;
  }

  /**
   * Puts the value of the entry just stored in slot `id`, after forgetting
   * what the engine removed for it: the removal notices, for `#notify`.
   */
  #place(id, key, value, meta, fresh, size, tags, clock) {
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
    if (clock !== undefined) {
      this.#idles.set(id, clock);
      this.#idling = true;
    } else if (this.#idling) this.#idles.delete(id);
    if (this.#tags.size !== 0) untag(this.#tags, this.#byTag, id);
    if (tags !== undefined) tag(this.#tags, this.#byTag, id, tags);
    // A write moves the key on: a load that began before it stores nothing.
    if (this.#placeholders.size !== 0) this.#placeholders.delete(key);
    // Sized: a replaced entry is in the same slot, its old size still there.
    if (this.#sizes !== undefined) {
      this.#sizeTotal += size - (this.#sizes[id] ?? 0);
      this.#sizes[id] = size;
    }
    return notices;
  }

  /** Removes `key`; whether a live entry was there. */
  deleteSync(key) {
    if (typeof key !== "string") throw keyError(key);
    const now = this.#time();
    const store = this.#live();
    const id = this.#ids.get(key);
    if (id === undefined) checkKey(key);
    if (this.#placeholders.size !== 0) this.#placeholders.delete(key);
    if (id === undefined) return false;
    let existed;
    try {
      existed = WasmEngines.remove(store, this.#ringN, id, now);
      this.#ringN = 0;
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    let notices;
    try {
      notices = this.#notices();
      this.#drop(id, existed ? DELETED : EXPIRED, notices);
    } catch (error) {
      // Cut short after the engine freed the slot: the next call finishes
      // forgetting it (`#finishDrop`). Plain field writes: no call.
      this.#dropId = id;
      this.#dropReason = existed ? DELETED : EXPIRED;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
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
    const loads = this.#loads;
    loads.checkReentrant(key);
    if (o.signal?.aborted) throw o.signal.reason;
    if (o.ttl !== undefined || o.idle !== undefined) this.#expiring = true;
    const now = this.#time();
    this.#live();
    checkKey(key);
    const notices = this.#notices();
    const id = this.#liveSlot(key, now, notices);
    this.#notify(notices);
    this.#gets++;
    if (id === undefined) {
      this.#misses++;
      return loads.load(key, loader, o);
    }
    this.#hit(id);
    if (this.#idling) this.#idleRead(id, now);
    const value = this.#values[id];
    if (o.grace !== undefined && this.#fresh.size !== 0) {
      // Stale-while-revalidate: a stale value is served, and refreshed.
      const state = this.#fresh.get(id);
      if (state !== undefined) loads.served(key, state, loader, o, now);
    }
    return value;
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
    if (this.#placeholders.size !== 0 && this.#placeholders.delete(key)) {
      const state = this.#fresh.get(id);
      if (state !== undefined) state.refreshing = false;
    }
    return true;
  }

  // What the walks (11-walks.js) do to the store's state, which they reach
  // through `inside` (the static field `#walks` below).

  /**
   * Starts a walk: the store ready for a deep call, the entries that
   * expired reclaimed. The removal notices so far, for `#notify`.
   */
  #beginWalk() {
    const now = this.#now();
    this.#live(DEEP);
    const notices = this.#notices();
    try {
      this.#reclaim(now, notices);
    } catch (error) {
      this.#notify(notices);
      throw error;
    }
    return notices;
  }

  /** The slot ids of the live entries, in the policy's order (see `entries`). */
  #liveSlots() {
    const notices = this.#beginWalk();
    try {
      let n;
      try {
        n = WasmEngines.list(this.#store, this.#ringN);
        this.#ringN = 0;
      } catch (error) {
        // Plain writes first: no stack may be left for a call here (see `#failed`).
        stackMoved = true;
        this.#pending = true;
        this.#version = -1;
        this.#ring = NO_RING;
        this.#freq = NO_COUNTS;
        throw this.#failed(error);
      }
      if (n < 0) throw noRoom();
      return Array.from(this.#report(n));
    } finally {
      this.#notify(notices);
    }
  }

  /** Removes the live entries in `slots` (invalidate), queuing their notices: how many. */
  #removeSlots(slots, notices) {
    const n = slots.length;
    let at;
    try {
      at = WasmEngines.report(this.#store, n);
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    if (at === 0) throw noRoom();
    const room = new U32(buffer(), at, n);
    for (let i = 0; i < n; i++) room[i] = slots[i];
    // A copy: the report is the engine's, and the removal may move it.
    const ids = new U32(n);
    ids.set(room);
    try {
      WasmEngines.removeReported(this.#store, this.#ringN);
      this.#ringN = 0;
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    try {
      for (let i = 0; i < n; i++) this.#drop(ids[i], INVALIDATED, notices);
    } catch (error) {
      // Cut short after the engine freed the slots: the next call finishes
      // forgetting them (`#finishDrop`; those forgotten here have their
      // notices in `notices`, which the caller sends). Plain field writes.
      this.#dropIds = ids;
      this.#dropReason = INVALIDATED;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
    return n;
  }

  /** Removes every entry, queuing their notices. */
  #clearAll(notices) {
    // The notices first, while nothing has changed (cut short here, the call
    // changed nothing); moved to the caller's list with plain writes as soon
    // as the engine has emptied, so a cut after that loses none of them.
    let told;
    if (notices !== undefined) {
      told = [];
      this.#ids.forEach((id, key) => notify3(told, this.#values[id], key, "cleared"));
    }
    try {
      WasmEngines.clear(this.#store);
      this.#ringN = 0;
      // Until this side has forgotten every entry too (`#finishClear`).
      this.#clearing = true;
      if (told !== undefined) for (let i = 0; i < told.length; i++) notices[notices.length] = told[i];
      // Its arrays are new (and empty): no hit may write to the old ones.
      this.#unview();
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw this.#failed(error);
    }
    try {
      this.#forgetAll();
    } catch (error) {
      // Cut short after the engine emptied: the next call forgets the rest
      // (`#finishClear`); the caller sends the notices.
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
      throw error;
    }
    this.#clearing = false;
  }

  // (A static field's initializer rather than a static block: ES2022's
  // blocks need Safari 16.4, private class fields Safari 15.)
  static #walks = (inside = {
    begin: (store) => store.#beginWalk(),
    // Throws once disposed; repairs a failed call first (the batch calls, 13-batch.js).
    live: (store) => store.#live(),
    // A sized store's check of one entry's size (it throws if refused), before a batch writes any.
    checkSize: (store, key, value, size) => {
      if (store.#maxSize !== undefined) store.#sizeOf(key, value, size);
    },
    notify: (store, notices) => store.#notify(notices),
    failed: (store, error) => store.#failed(error),
    liveSlots: (store) => store.#liveSlots(),
    removeSlots: (store, slots, notices) => store.#removeSlots(slots, notices),
    clearAll: (store, notices) => store.#clearAll(notices),
    // Key -> slot id of every entry (read only).
    ids: (store) => store.#ids,
    // The key and value by slot id (read only; replaced when the store empties).
    keys: (store) => store.#keys,
    values: (store) => store.#values,
    placeholders: (store) => store.#placeholders,
    // For dump and load (15-dump.js): metadata by slot id, the current views
    // of the access counts and deadlines, the clock, and a plain set.
    meta: (store) => store.#meta,
    views: (store) => {
      if (store.#header[0] !== store.#version) store.#view();
      return [store.#freq, store.#deadline];
    },
    now: (store) => store.#now(),
    byDeadline: (store) => store.#byDeadline,
    // Idle clocks by slot id ([idle ms, TTL deadline ms]).
    idles: (store) => store.#idles,
    // S3-FIFO's queues: whether a slot is on the small one, and a move to one.
    queues: (store) => store.#mode === FREQ,
    probation: (store, id) => WasmEngines.probation(store.#store, id),
    place: (store, id, probation) => {
      try {
        WasmEngines.place(store.#store, id, probation);
      } catch (error) {
        // Plain writes first: no stack may be left for a call here (see `#failed`).
        stackMoved = true;
        store.#pending = true;
        store.#version = -1;
        store.#ring = NO_RING;
        store.#freq = NO_COUNTS;
        throw store.#failed(error);
      }
    },
    // `idle` (seconds) undefined: the policy's, as for a set.
    put: (store, key, value, ttl, meta, size, idle, tags) =>
      store.#put(key, value, ttl, meta, undefined, undefined, size, tags, idle),
    // A store with maxSize: an entry's size (given, or its sizeCalculation's), checked.
    sized: (store) => store.#maxSize !== undefined,
    sizeOf: (store, key, value, size) => store.#sizeOf(key, value, size),
    sizes: (store) => store.#sizes,
    // Slot id -> tags, and tag -> ids (read only; 12-tags.js).
    tags: (store) => store.#tags,
    byTag: (store) => store.#byTag,
  });

  /**
   * For the package's tests, not part of the API: where the two halves
   * disagree, as messages ([] when they agree). The engine's live entries
   * (after reclaiming the expired ones) must be exactly the slots this side
   * holds a key and a value for.
   */
  [AUDIT]() {
    const ids = this.#liveSlots();
    const problems = [];
    if (ids.length !== this.#ids.size) problems.push(`the engine holds ${ids.length} entries, JS ${this.#ids.size}`);
    if (WasmEngines.live(this.#store) !== ids.length) problems.push(`the engine counts ${WasmEngines.live(this.#store)} live entries, lists ${ids.length}`);
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
    this.#idles.forEach((_, id) => {
      if (this.#keys[id] === undefined) problems.push(`slot ${id}: an idle clock without an entry`);
    });
    auditTags(this.#tags, this.#byTag, this.#keys, problems);
    return problems;
  }

  /** The counters so far; `avgGetLatency` and `totalLoadTime` in milliseconds. */
  getStats() {
    this.#live();
    const misses = this.#misses;
    const hits = this.#gets - misses;
    const gets = hits + misses;
    const loads = this.#loads;
    // The figures this side keeps, by getStats name; the engine's own are
    // read at their index in its counters. Which is which, and the order of
    // the keys, is the core's counter table (COUNTERS, 7-otel.js).
    const kept = {
      hits,
      misses,
      hitRatio: gets === 0 ? 0 : hits / gets,
      avgGetLatency: this.#latencySamples === 0 ? 0 : this.#latencyTotal / this.#latencySamples,
      loads: loads.runs,
      loadFailures: loads.failures,
      totalLoadTime: loads.time,
      staleHits: loads.staleHits,
      refreshes: loads.refreshes,
      refreshFailures: loads.refreshFailures,
      totalWeight: this.#sizeTotal,
    };
    const counters = this.#counters;
    const stats = {};
    for (let i = 0; i < COUNTERS.length; i++) {
      const { name, engine } = COUNTERS[i];
      stats[name] = engine >= 0 ? counters[engine] : kept[name];
    }
    return stats;
  }

  /** Sets every counter back to zero. */
  resetStats() {
    const store = this.#live();
    try {
      WasmEngines.resetCounters(store);
    } catch (error) {
      // Plain writes first: no stack may be left for a call here (see `#failed`).
      stackMoved = true;
      this.#pending = true;
      this.#version = -1;
      this.#ring = NO_RING;
      this.#freq = NO_COUNTS;
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
    // First, with plain writes only (a stack overflow may cut what follows,
    // and a second dispose() does nothing more): no hit reads the engine's
    // memory again (the views out of bounds), and the engine is listed for
    // release (`orphans`), so a dispose cut short leaks nothing of it.
    this.#version = -1;
    this.#ring = NO_RING;
    this.#freq = NO_COUNTS;
    this.#header = NO_RING;
    const engine = this.#store;
    if (engine !== NO_ENGINE) {
      this.#store = this.#cell.n = NO_ENGINE;
      orphans[orphans.length] = engine;
      stackMoved = true;
    }
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      freeOrphans();
    } catch {
      // No stack even to begin: the next `unwind` releases it.
    }
    // Each load and refresh ends as failed: every flight settles with it.
    this.#loads.dispose(disposedError());
    this.#forgetAll();
    this.#values = [];
    this.#keys = [];
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
