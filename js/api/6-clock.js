// js/api/6-clock.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Time: the host clock, the ManualClock for tests, and the timers of
// getOrSet's timeouts on either.

// Each ManualClock's time in ms, and the timers of getOrSet's timeouts in
// stores on that clock, fired by `advance`, so tests never sleep.
const clockTimers = new WeakMap();

/** A clock that moves only when told to, for tests of expiry and timeouts. */
class ManualClock {
  constructor() {
    clockTimers.set(this, { now: 0, pending: [] });
  }

  /**
   * Moves the clock forward by `ms` milliseconds, then runs the timeouts
   * of `getOrSet` calls on stores with this clock that are now due, soonest first.
   */
  advance(ms) {
    if (typeof ms !== "number" || !(ms >= 0) || ms === Infinity) {
      throw new RangeError(`ManualClock.advance takes a finite number of milliseconds >= 0, got ${describe(ms)}`);
    }
    const timers = clockTimers.get(this);
    timers.now += ms;
    for (;;) {
      let next;
      for (const timer of timers.pending) if (timer.at <= timers.now && (next === undefined || timer.at < next.at)) next = timer;
      if (next === undefined) break;
      timers.pending.splice(timers.pending.indexOf(next), 1);
      next.run();
    }
  }
}

/** Timers on the host's setTimeout. */
const realTimers = {
  set(seconds, run) {
    return setTimeout(run, Math.min(seconds * 1000, 2 ** 31 - 1));
  },
  clear(id) {
    clearTimeout(id);
  },
};

/** Timers on a ManualClock, fired by its `advance`. */
function manualTimers(clock) {
  const timers = clockTimers.get(clock);
  return {
    set(seconds, run) {
      const timer = { at: timers.now + seconds * 1000, run };
      timers.pending.push(timer);
      return timer;
    },
    clear(timer) {
      const i = timers.pending.indexOf(timer);
      if (i >= 0) timers.pending.splice(i, 1);
    },
  };
}

/** The host's clock in milliseconds, read in JS: never from inside a store call. */
const systemNow = () => performance.now();
