// js/api/9-loads.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// getOrSet's read-through and refresh machinery for one MemoryStore (the JS
// twin of src/refresh.rs and the engine's load placeholders): the loads
// under way and their placeholders (a write meanwhile wins), the runs of
// loaders with their hardTimeout and signal, stale-while-revalidate (grace,
// one background refresh per key, retryAfter's back-off, waitUntil), and
// the load counters. Single flight itself is Flights (8-flights.js).

class Loads {
  // The loads under way by key (the JS twin of the engine's placeholders):
  // { token }. Any write, delete, invalidate, clear or updateMetadata of
  // the key removes it (the store does, straight on this map), so a load
  // that began before them stores nothing.
  placeholders = new SlotMap();
  // The counters of getStats these loads keep (`zero` resets them).
  runs = 0;
  failures = 0;
  time = 0;
  staleHits = 0;
  refreshes = 0;
  refreshFailures = 0;
  #nextToken = 0;
  // The runs under way (loads and refreshes), for `dispose`.
  #runs = new WaiterSet();
  // The keys whose loaders are running synchronously right now, innermost
  // last: a getOrSet for one of them comes from inside its own loader.
  #loading = [];
  #timers;
  #flights;
  // The store's side: { now(), ready(), put(key, value, ttl, meta, fresh, idle),
  // freshOf(key), disposed() }.
  #store;

  constructor(timers, store) {
    this.#timers = timers;
    this.#store = store;
    this.#flights = new Flights(
      timers,
      (key, loader, o, finish) => this.#lead(key, loader, o, finish),
      (run, key, reason) => {
        this.#endRun(run);
        if (run.token !== undefined) this.#endLoad(key, run.token);
        run.controller.abort(reason);
      },
    );
  }

  /** Throws if `key`'s own loader is asking for it (it would wait on itself). */
  checkReentrant(key) {
    if (this.#loading.length !== 0 && this.#loading.includes(key)) throw reentrantError(key);
  }

  /** A getOrSet that missed: the value its flight loads. */
  load(key, loader, o) {
    return this.#flights.join(key, loader, o);
  }

  /**
   * A getOrSet with `grace` that found a live entry with freshness `state`
   * at `now` (as the engine's get_fresh): a stale one counts, and starts a
   * refresh unless one runs or the last failure's back-off is not over.
   */
  served(key, state, loader, o, now) {
    if (now < state.freshUntil) return;
    this.staleHits++;
    if (!state.refreshing && now >= state.retryAt) {
      state.refreshing = true;
      this.refreshes++;
      this.#refresh(key, loader, o);
    }
  }

  zero() {
    this.runs = 0;
    this.failures = 0;
    this.time = 0;
    this.staleHits = 0;
    this.refreshes = 0;
    this.refreshFailures = 0;
  }

  /** The store is disposed: each load and refresh ends as failed with `error`. */
  dispose(error) {
    // Callers reject (their flights settle), and the promise a refresh
    // handed to waitUntil settles.
    this.#runs.forEach((run) => {
      run.controller.abort(error);
      run.end(false, error);
    });
  }

  /** Marks a load of `key` as begun: its token. A newer load of the key replaces it. */
  #beginLoad(key, tagged) {
    const token = ++this.#nextToken;
    // A tagged load's placeholder is removed by any invalidateTags (12-tags.js).
    this.placeholders.set(key, { token, tagged });
    return token;
  }

  /**
   * Ends the load `token` of `key`: its placeholder if nothing wrote,
   * deleted, invalidated, cleared or updated the metadata of the key since
   * it began, so its value may be stored; else undefined.
   */
  #endLoad(key, token) {
    const load = this.placeholders.get(key);
    if (load === undefined || load.token !== token) return undefined;
    this.placeholders.delete(key);
    return load;
  }

  /** A flight's load: runs the loader and stores its value if its placeholder stands. */
  #lead(key, loader, o, finish) {
    return this.#start(key, loader, o, (ok, result, run) => {
      // The placeholder decides whether the value is stored; the callers get it either way.
      const store = this.#store;
      if (!store.disposed()) {
        try {
          if (o.grace === undefined) {
            store.ready();
            const ours = this.#endLoad(key, run.token);
            if (ok && ours !== undefined) store.put(key, result, o.ttl, o.meta, undefined, o.tags, o.idle);
          } else {
            this.#finishRefresh(key, run.token, ok, result, o, false);
          }
        } catch (error) {
          // A store that refuses the value (no room) or fails (the store
          // call already made the engine's error a CacheBackendError).
          [ok, result] = [false, error];
        }
      }
      finish(ok, result);
    });
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
    const store = this.#store;
    const started = store.now();
    const end = (run.end = (ok, result) => {
      if (!run.live) return;
      this.#endRun(run);
      if (ok && result === undefined) [ok, result] = [false, undefinedValueError("the loader returned")];
      if (!store.disposed()) {
        const elapsed = store.now() - started;
        this.runs++;
        if (!ok) this.failures++;
        this.time += elapsed > 0 ? elapsed : 0;
      }
      finish(ok, result, run);
    });
    this.#runs.add(run);
    run.token = this.#beginLoad(key, o.tags !== undefined);
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
   * The background refresh of a stale entry (one per key: `served`
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
      this.#start(key, loader, o, (ok, result, run) => {
        try {
          if (!this.#store.disposed()) this.#finishRefresh(key, run.token, ok, result, o, true);
        } catch {
          // Nobody awaits a refresh: a value the store refuses (it cannot:
          // the options were checked) is dropped, as in Rust. (A listener's
          // error never comes here: the store reports it.)
        }
        done();
      });
    } catch (error) {
      // It could not start: the refresh ends as a failed one (backing
      // off), or the key would stay "refreshing" until its grace ran out.
      this.refreshFailures++;
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

  /**
   * Ends a stale-while-revalidate load or refresh: stores its value if its
   * placeholder stands, fresh for `ttl` and kept `grace` more; on
   * failure keeps the stale value and backs off.
   */
  #finishRefresh(key, token, ok, value, o, background) {
    const store = this.#store;
    store.ready();
    const load = this.#endLoad(key, token);
    if (!ok && background) this.refreshFailures++;
    if (load === undefined) return;
    if (!ok) {
      this.#backOff(key, o);
      return;
    }
    const fresh = { freshUntil: store.now() + o.ttl * 1000, refreshing: false, retryAt: 0, failures: 0 };
    store.put(key, value, o.ttl + o.grace, o.meta, fresh, o.tags, o.idle);
  }

  /**
   * A refresh of `key` failed: the stale value stays, and the next refresh
   * waits what the core's back-off says for this many failures in a row
   * with `retryAfter` (or the core's default): src/wasm/mod.rs
   * `refreshBackoff`, asked once per failure.
   */
  #backOff(key, o) {
    const state = this.#store.freshOf(key);
    if (state === undefined) return;
    state.refreshing = false;
    state.failures++;
    let wait;
    try {
      wait = wasm.refreshBackoff(o.retryAfter ?? NaN, state.failures);
    } catch (error) {
      stackMoved = true; // a plain write: see `stackMoved`
      throw error;
    }
    state.retryAt = this.#store.now() + wait;
  }
}
