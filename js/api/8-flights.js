// js/api/8-flights.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// One load per key at a time for getOrSet: the JS twin of src/singleflight.rs,
// with its rules. The first caller that misses a key leads: its loader runs.
// Callers that miss the key meanwhile wait for the leader's result instead of
// running their own. A waiter that gives up (its signal aborts, its
// softTimeout passes) just leaves, rejecting. A leader that gives up abandons
// its load (its loader's signal aborts) and the load passes to exactly one
// waiter, which runs its own loader; the others keep waiting. Joining and
// leaving are O(1) (a Set); the hand-over scans once per abandoned load, and
// finishing settles every waiter once.
// (Re-entrancy, a loader asking for its own key, is refused before a caller
// joins: see Loads#checkReentrant.)

class Flights {
  // The flights under way by key: { key, leader, waiters, run }.
  #byKey = new SlotMap();
  // Where the callers' softTimeouts wait (the store's timers).
  #timers;
  // (key, loader, o, finish) -> run: starts a load; `finish(ok, result)`
  // is called once with what every caller of the flight gets.
  #start;
  // (run, key, reason): a leader gave up on its load.
  #abandon;

  constructor(timers, start, abandon) {
    this.#timers = timers;
    this.#start = start;
    this.#abandon = abandon;
  }

  /** A caller that missed: leads a new load of `key`, or waits for the one under way. */
  join(key, loader, o) {
    let resolve;
    let reject;
    const promise = new NativePromise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const call = { loader, o, resolve, reject, done: false, onAbort: undefined, timer: undefined };
    let flight = this.#byKey.get(key);
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
      flight.waiters.add(call);
      return promise;
    }
    this.#byKey.set(key, flight);
    try {
      this.#lead(flight, call);
    } catch (error) {
      // The load could not start (the loads undid their part): no flight is left.
      if (this.#byKey.get(key) === flight) this.#byKey.delete(key);
      this.#detach(call);
      throw error;
    }
    return promise;
  }

  /** Makes `call` the leader of `flight` and starts its loader. */
  #lead(flight, call) {
    const { key } = flight;
    flight.leader = call;
    flight.run = this.#start(key, call.loader, call.o, (ok, result) => {
      if (this.#byKey.get(key) === flight) this.#byKey.delete(key);
      this.#settle(flight.leader, ok, result);
      flight.waiters.forEach((waiter) => this.#settle(waiter, ok, result));
      flight.waiters.clear();
    });
  }

  /** Ends a call: its listener and timer go (the timer even if the signal throws). */
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
      this.#detach(call);
    } catch {
      // The listener stays on the caller's own signal; nothing of ours is left half-done.
    }
  }

  /**
   * A caller gives up (its signal aborted, or its softTimeout passed): it
   * rejects with `reason`. A waiter just leaves; a leader abandons its load
   * and the load passes to exactly one waiter, which runs its own loader.
   */
  #leave(flight, call, reason) {
    if (call.done) return;
    if (flight.leader !== call) {
      flight.waiters.delete(call);
      this.#settle(call, false, reason);
      return;
    }
    this.#abandon(flight.run, flight.key, reason);
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
        if (this.#byKey.get(flight.key) === flight) this.#byKey.delete(flight.key);
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
}
