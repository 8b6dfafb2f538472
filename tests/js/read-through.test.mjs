// Read-through you can trust (issue 9), the JS side: a load stores its value
// only if nothing wrote its key meanwhile; a loader asking for its own key
// fails instead of hanging; callers that give up leave nothing behind and
// hand the load on; stale-while-revalidate with grace, stale-if-error,
// backoff and timeouts. Time is a ManualClock everywhere: no test sleeps or
// asserts on elapsed time; "never hangs" is checked by draining the event
// loop and looking at the promise.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { withReported } from "./support.mjs";
import {
  MemoryStore,
  LRUPolicy,
  S3FIFOPolicy,
  ManualClock,
  CacheError,
  CachePolicyError,
  CacheReentrantLoadError,
  CacheTimeoutError,
} from "pepperpy-caching";

const lru = (clock) => new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), clock });

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending callback and timer-free continuation run. */
async function drain() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** "pending", "fulfilled" or "rejected", once the event loop has drained. */
async function state(promise) {
  let s = "pending";
  promise.then(
    () => (s = "fulfilled"),
    () => (s = "rejected"),
  );
  await drain();
  return s;
}

/** A loader that counts its runs and resolves with whatever its test hands it. */
function gated() {
  const gates = [];
  const loader = (context) => {
    const gate = deferred();
    gates.push({ ...gate, context });
    return gate.promise;
  };
  loader.gates = gates;
  return loader;
}

describe("a load never writes back over a newer write", () => {
  const writes = {
    "set": (store) => store.set("k", "written"),
    "setSync": (store) => store.setSync("k", "written"),
    "delete": (store) => store.delete("k"),
    "deleteSync": (store) => store.deleteSync("k"),
    "invalidate": (store) => store.invalidate("k*"),
    "clear": (store) => store.clear(),
  };
  for (const [name, write] of Object.entries(writes)) {
    test(`${name} during a load: the caller gets the loaded value, the store keeps the write`, async () => {
      const store = lru();
      await store.set("other", 1);
      const loader = gated();
      const call = store.getOrSet("k", loader, { ttl: 60 });
      await write(store);
      const expected = store.getSync("k");
      loader.gates[0].resolve("loaded before the write");
      assert.equal(await call, "loaded before the write", "the caller gets what its loader produced");
      assert.equal(store.getSync("k"), expected, `the ${name} wins`);
      assert.equal(store.getStats().loads, 1);
      // The next load stores again.
      await store.delete("k");
      assert.equal(await store.getOrSet("k", () => "next"), "next");
      assert.equal(store.getSync("k"), "next");
    });
  }

  test("with grace too: a refresh that began before a set does not overwrite it", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const options = { ttl: 1, grace: 60 };
    assert.equal(await store.getOrSet("k", () => "v1", options), "v1");
    clock.advance(1000);
    const refresh = gated();
    assert.equal(await store.getOrSet("k", refresh, options), "v1", "stale, served at once");
    assert.equal(refresh.gates.length, 1, "one refresh started");
    store.setSync("k", "written");
    refresh.gates[0].resolve("refreshed");
    await drain();
    assert.equal(store.getSync("k"), "written");
  });
});

describe("re-entrancy", () => {
  test("a loader asking for its own key synchronously gets CacheReentrantLoadError, and the key still works", async () => {
    const store = lru();
    let inner;
    const outer = store.getOrSet("k", () => {
      inner = store.getOrSet("k", () => "never");
      return "outer";
    });
    assert.equal(await state(inner), "rejected", "never hangs");
    await assert.rejects(inner, (e) => e instanceof CacheReentrantLoadError && e instanceof CacheError && /"k"/.test(e.message));
    assert.equal(await outer, "outer");
    assert.equal(await store.getOrSet("k", () => "unused"), "outer");
    await store.delete("k");
    assert.equal(await store.getOrSet("k", () => "again"), "again", "later calls load normally");
    const { hits, misses } = store.getStats();
    assert.deepEqual({ hits, misses }, { hits: 1, misses: 2 }, "the refused call counted nothing");
  });

  test("through another key's loader: a -> b -> a fails instead of deadlocking", async () => {
    const store = lru();
    const a = store.getOrSet("a", () =>
      store.getOrSet("b", () => store.getOrSet("a", () => "inner a")).then((b) => `a after ${b}`),
    );
    assert.equal(await state(a), "rejected");
    await assert.rejects(a, CacheReentrantLoadError);
    assert.equal(await store.getOrSet("a", () => "a2"), "a2", "a loads again");
    assert.equal(await store.getOrSet("b", () => "b2"), "b2");
  });

  test("after its first await a loader's call for its own key joins the load: a hardTimeout bounds it", async () => {
    // Documented limit: without async context tracking in every runtime, the
    // call cannot tell it comes from the loader; hardTimeout ends the wait.
    const clock = new ManualClock();
    const store = lru(clock);
    const outer = store.getOrSet(
      "k",
      async () => {
        await null;
        return store.getOrSet("k", () => "never");
      },
      { hardTimeout: 5 },
    );
    assert.equal(await state(outer), "pending");
    clock.advance(5000);
    await assert.rejects(outer, CacheTimeoutError);
    assert.equal(await store.getOrSet("k", () => "later"), "later", "the key works afterwards");
  });
});

describe("callers that give up", () => {
  test("10,000 waiters abort: each rejects with its reason, leaves no listener, and the load goes on", async () => {
    const store = lru();
    const loader = gated();
    const leader = store.getOrSet("k", loader);
    const controllers = Array.from({ length: 10_000 }, () => new AbortController());
    const waiters = controllers.map((c) => store.getOrSet("k", () => "unused", { signal: c.signal }));
    const staying = store.getOrSet("k", () => "unused");
    await drain();
    controllers.forEach((c, i) => c.abort(new Error(`gave up ${i}`)));
    const outcomes = await Promise.allSettled(waiters);
    assert.ok(outcomes.every((o, i) => o.status === "rejected" && o.reason.message === `gave up ${i}`));
    assert.ok(controllers.every((c) => getEventListeners(c.signal, "abort").length === 0), "listeners removed");
    loader.gates[0].resolve("v");
    assert.deepEqual(await Promise.all([leader, staying]), ["v", "v"]);
    assert.equal(loader.gates.length, 1, "one loader run");
    const { misses, loads } = store.getStats();
    assert.deepEqual({ misses, loads }, { misses: 10_002, loads: 1 }, "one miss per call, one load");
  });

  test("a settled call leaves no listener on its signal", async () => {
    const store = lru();
    const c = new AbortController();
    assert.equal(await store.getOrSet("k", () => 1, { signal: c.signal }), 1);
    assert.equal(await store.getOrSet("k", () => 2, { signal: c.signal }), 1);
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
  });

  test("a signal that refuses a listener fails its call and leaves no load behind", async () => {
    const store = lru();
    const { signal } = new AbortController();
    Object.defineProperty(signal, "addEventListener", {
      value() {
        throw new Error("no listeners here");
      },
    });
    await assert.rejects(store.getOrSet("k", () => 1, { signal }), /no listeners here/);
    const next = store.getOrSet("k", () => 2);
    assert.equal(await state(next), "fulfilled", "no flight was left for the next call to wait on");
    assert.equal(await next, 2);
  });

  test("an already aborted signal rejects at once and counts nothing", async () => {
    const store = lru();
    const reason = new Error("too late");
    await assert.rejects(store.getOrSet("k", () => 1, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    assert.equal(store.getStats().misses, 0);
  });

  test("a leader that aborts passes the load to exactly one waiter; its own late value is not stored", async () => {
    const store = lru();
    const first = gated();
    const second = gated();
    const third = gated();
    const c = new AbortController();
    const leader = store.getOrSet("k", first, { signal: c.signal, ttl: 60 });
    const w1 = store.getOrSet("k", second);
    const w2 = store.getOrSet("k", third);
    assert.equal(first.gates[0].context.key, "k", "the loader gets { key, signal }");
    const loaderSignal = first.gates[0].context.signal;
    assert.equal(loaderSignal.aborted, false);
    c.abort(new Error("leader left"));
    await assert.rejects(leader, /leader left/);
    assert.equal(loaderSignal.aborted, true, "the abandoned loader is told to stop");
    assert.equal(second.gates.length, 1, "the first waiter runs its own loader");
    assert.equal(third.gates.length, 0, "and only it");
    first.gates[0].resolve("late");
    await drain();
    assert.equal(store.hasSync("k"), false, "the abandoned load stores nothing");
    second.gates[0].resolve("taken over");
    assert.deepEqual(await Promise.all([w1, w2]), ["taken over", "taken over"]);
    assert.equal(store.getSync("k"), "taken over");
    const { loads, misses, hits } = store.getStats();
    assert.deepEqual({ loads, misses, hits }, { loads: 1, misses: 3, hits: 1 }, "each call one miss; one load finished");
  });

  test("a leader that aborts with nobody waiting ends the load; the next call loads again", async () => {
    const store = lru();
    const c = new AbortController();
    const loader = gated();
    const call = store.getOrSet("k", loader, { signal: c.signal });
    c.abort();
    await assert.rejects(call, { name: "AbortError" });
    assert.equal(await store.getOrSet("k", () => "fresh"), "fresh");
    loader.gates[0].resolve("stale");
    await drain();
    assert.equal(store.getSync("k"), "fresh");
  });
});

describe("timeouts (on the store's ManualClock)", () => {
  test("softTimeout: the caller gives up with CacheTimeoutError and a waiter takes the load over", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const slow = gated();
    const next = gated();
    const leader = store.getOrSet("k", slow, { softTimeout: 0.5 });
    const waiter = store.getOrSet("k", next);
    clock.advance(499);
    assert.equal(await state(leader), "pending");
    clock.advance(1);
    await assert.rejects(leader, (e) => e instanceof CacheTimeoutError && /softTimeout of 0.5 s/.test(e.message));
    assert.equal(slow.gates[0].context.signal.aborted, true);
    assert.equal(next.gates.length, 1);
    next.gates[0].resolve("v");
    assert.equal(await waiter, "v");
  });

  test("hardTimeout: the load fails for every caller, counts as a failure, and the next call loads again", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const hung = gated();
    const calls = [store.getOrSet("k", hung, { hardTimeout: 2 }), store.getOrSet("k", () => "unused")];
    clock.advance(2000);
    const outcomes = await Promise.allSettled(calls);
    assert.ok(outcomes.every((o) => o.status === "rejected" && o.reason instanceof CacheTimeoutError));
    assert.equal(hung.gates[0].context.signal.aborted, true);
    hung.gates[0].resolve("too late");
    await drain();
    assert.equal(store.getSync("k"), undefined, "a timed-out load stores nothing");
    assert.equal(store.getStats().loadFailures, 1);
    assert.equal(await store.getOrSet("k", () => "v"), "v");
  });

  test("timers are cleared when the load settles in time", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    assert.equal(await store.getOrSet("k", () => "v", { softTimeout: 1, hardTimeout: 1 }), "v");
    clock.advance(5000);
    assert.equal(store.getSync("k"), "v");
    assert.equal(store.getStats().loadFailures, 0);
  });
});

describe("stale-while-revalidate", () => {
  const options = { ttl: 1, grace: 10 };

  test("within grace the stale value comes back at once and one refresh runs for many callers", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 100 }), clock });
    assert.equal(await store.getOrSet("k", () => "v1", options), "v1");
    assert.equal(await store.getOrSet("k", () => "unused", options), "v1", "fresh: no refresh");
    clock.advance(1000);
    const refresh = gated();
    const stale = await Promise.all(Array.from({ length: 5 }, () => store.getOrSet("k", refresh, options)));
    assert.deepEqual(stale, ["v1", "v1", "v1", "v1", "v1"], "served stale without waiting");
    assert.equal(refresh.gates.length, 1, "one refresh");
    refresh.gates[0].resolve("v2");
    await drain();
    assert.equal(await store.getOrSet("k", () => "unused", options), "v2", "refreshed and fresh");
    const { staleHits, refreshes, refreshFailures, loads } = store.getStats();
    assert.deepEqual({ staleHits, refreshes, refreshFailures, loads }, { staleHits: 5, refreshes: 1, refreshFailures: 0, loads: 2 });
  });

  test("past grace the entry is gone: the caller waits for a load", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    await store.getOrSet("k", () => "v1", options);
    clock.advance(11_000);
    const loader = gated();
    const call = store.getOrSet("k", loader, options);
    assert.equal(await state(call), "pending");
    loader.gates[0].resolve("v2");
    assert.equal(await call, "v2");
  });

  test("stale-if-error: a failed refresh keeps the stale value and backs off, doubling", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const swr = { ttl: 1, grace: 600, retryAfter: 2 };
    await store.getOrSet("k", () => "v1", swr);
    clock.advance(1000);
    let runs = 0;
    const failing = () => {
      runs++;
      throw new Error("db down");
    };
    assert.equal(await store.getOrSet("k", failing, swr), "v1");
    await drain();
    assert.equal(runs, 1);
    assert.equal(await store.getOrSet("k", failing, swr), "v1", "still stale, still served");
    assert.equal(runs, 1, "backing off: no refresh before retryAfter");
    clock.advance(2000);
    await store.getOrSet("k", failing, swr);
    await drain();
    assert.equal(runs, 2, "retried after 2 s");
    clock.advance(2000);
    await store.getOrSet("k", failing, swr);
    assert.equal(runs, 2, "the second failure doubled the wait to 4 s");
    clock.advance(2000);
    assert.equal(await store.getOrSet("k", () => "v2", swr), "v1");
    await drain();
    assert.equal(await store.getOrSet("k", failing, swr), "v2", "a successful refresh ends the backoff");
    const { refreshes, refreshFailures } = store.getStats();
    assert.deepEqual({ refreshes, refreshFailures }, { refreshes: 3, refreshFailures: 2 });
  });

  test("a refresh past its hardTimeout counts as a failure and keeps the stale value", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const swr = { ttl: 1, grace: 600, hardTimeout: 3 };
    await store.getOrSet("k", () => "v1", swr);
    clock.advance(1000);
    const hung = gated();
    assert.equal(await store.getOrSet("k", hung, swr), "v1");
    clock.advance(3000);
    await drain();
    assert.equal(hung.gates[0].context.signal.aborted, true);
    assert.equal(store.getStats().refreshFailures, 1);
    hung.gates[0].resolve("too late");
    await drain();
    assert.equal(store.getSync("k"), "v1");
  });

  test("waitUntil receives the refresh's promise, which settles once the refresh is stored", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const kept = [];
    const waitUntil = (promise) => kept.push(promise);
    await store.getOrSet("k", () => "v1", { ...options, waitUntil });
    assert.equal(kept.length, 0, "a plain load is awaited by its caller");
    clock.advance(1000);
    const refresh = gated();
    assert.equal(await store.getOrSet("k", refresh, { ...options, waitUntil }), "v1");
    assert.equal(kept.length, 1);
    assert.ok(kept[0] instanceof Promise);
    assert.equal(await state(kept[0]), "pending", "still refreshing");
    refresh.gates[0].resolve("v2");
    await kept[0];
    assert.equal(store.getSync("k"), "v2");
    // A failing refresh's promise resolves too: waitUntil never sees a rejection.
    clock.advance(1000);
    await store.getOrSet("k", () => Promise.reject(new Error("no")), { ...options, waitUntil });
    assert.equal(await state(kept[1]), "fulfilled");
  });

  test("option checks: names, types, grace needs ttl", async () => {
    const store = lru();
    const bad = [
      { tll: 60 },
      { ttl: 1, grace: 0 },
      { grace: 5 },
      { ttl: 1, retryAfter: 1 },
      { softTimeout: -1 },
      { hardTimeout: "1" },
      { waitUntil: "no" },
      { signal: {} },
    ];
    for (const options of bad) {
      await assert.rejects(store.getOrSet("k", () => 1, options), CachePolicyError, JSON.stringify(options));
    }
    assert.throws(() => store.setSync("k", 1, { tll: 60 }), CachePolicyError);
    assert.equal(store.size, 0);
    assert.equal(store.getStats().misses, 0);
  });
});

test("a signal whose removeEventListener throws cannot leave a load's callers hanging", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const signal = new AbortController().signal;
  Object.defineProperty(signal, "removeEventListener", {
    value() {
      throw new Error("hostile removeEventListener");
    },
  });
  const leader = store.getOrSet("k", async () => 1, { signal });
  const waiter = store.getOrSet("k", async () => 2);
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("a caller hangs")), 2000).unref());
  assert.deepEqual(await Promise.race([Promise.all([leader, waiter]), timeout]), [1, 1]);
  assert.equal(await store.get("k"), 1);
});

describe("a load handed over to a waiter that cannot start it", () => {
  // The waiter's start fails (here the host refuses what the load needs);
  // that waiter rejects, the next one takes over, and the key is never left
  // with a load that nothing runs.
  test("on a ManualClock: a hostile AbortController when the leader's softTimeout passes", async () => {
    const clock = new ManualClock();
    const store = lru(clock);
    const slow = gated();
    const leader = store.getOrSet("k", slow, { softTimeout: 0.5 });
    const first = store.getOrSet("k", () => "first");
    const second = store.getOrSet("k", () => "second");
    const settled = Promise.allSettled([leader, first, second]);
    const boom = new Error("hostile AbortController");
    const { AbortController: Real } = globalThis;
    globalThis.AbortController = function hostile() {
      throw boom;
    };
    try {
      clock.advance(500);
    } catch {
      // Whether the timer's error reaches advance() is not the point here.
    } finally {
      globalThis.AbortController = Real;
    }
    assert.equal(await state(first), "rejected");
    const [l, f, s] = await settled;
    assert.ok(l.reason instanceof CacheTimeoutError);
    assert.equal(f.reason, boom);
    assert.equal(s.reason, boom);
    const after = store.getOrSet("k", () => "after");
    assert.equal(await state(after), "fulfilled", "the key is not stuck");
    assert.equal(await after, "after");
    assert.equal(store.getSync("k"), "after");
  });

  test("on real timers: a hostile setTimeout for the next waiter's hardTimeout when the leader aborts", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    const controller = new AbortController();
    const leader = store.getOrSet("k", gated(), { signal: controller.signal });
    const waiter = store.getOrSet("k", () => "waiter", { hardTimeout: 5 });
    const settled = Promise.allSettled([leader, waiter]);
    const boom = new Error("hostile setTimeout");
    const { setTimeout: real } = globalThis;
    globalThis.setTimeout = () => {
      throw boom;
    };
    try {
      controller.abort(new Error("gave up"));
    } finally {
      globalThis.setTimeout = real;
    }
    assert.equal(await state(waiter), "rejected");
    const [l, w] = await settled;
    assert.match(l.reason.message, /gave up/);
    assert.equal(w.reason, boom);
    const after = store.getOrSet("k", () => "after");
    assert.equal(await state(after), "fulfilled", "the key is not stuck");
    assert.equal(store.getSync("k"), "after");
  });
});

describe("an onRemove listener that throws while a load stores its value", () => {
  // The value is stored and every caller gets it; the listener's error has
  // no caller to go to, so it is reported as the host reports uncaught
  // errors (reportError, stubbed here; Node has none and gets it thrown from
  // a microtask).
  for (const grace of [undefined, 60]) {
    test(`a load (grace ${grace}) that evicts: callers get the value, the error is reported`, () =>
      withReported(async (reported) => {
        const boom = new Error("listener");
        const seen = [];
        const store = new MemoryStore({
          policy: new LRUPolicy({ maxSize: 1 }),
          onRemove: (value, key, reason) => {
            seen.push([key, reason]);
            throw boom;
          },
        });
        store.setSync("old", 1);
        const options = grace === undefined ? { ttl: 60 } : { ttl: 60, grace };
        const a = store.getOrSet("new", async () => "v", options);
        const b = store.getOrSet("new", async () => "x", options);
        const [ra, rb] = await Promise.allSettled([a, b]);
        assert.deepEqual([ra.value, rb.value], ["v", "v"], `${ra.reason ?? ""}`);
        assert.equal(store.getSync("new"), "v");
        assert.equal(store.hasSync("old"), false);
        assert.deepEqual(seen, [["old", "evicted"]]);
        await drain();
        assert.deepEqual(reported, [boom]);
      }));
  }

  test("a background refresh that replaces the stale value: the error is reported, not swallowed", () =>
    withReported(async (reported) => {
      const boom = new Error("listener");
      const clock = new ManualClock();
      const store = new MemoryStore({
        policy: new LRUPolicy({ maxSize: 10 }),
        clock,
        onRemove: () => {
          throw boom;
        },
      });
      assert.equal(await store.getOrSet("k", () => 1, { ttl: 1, grace: 60 }), 1);
      clock.advance(2000);
      let done;
      assert.equal(await store.getOrSet("k", () => 2, { ttl: 1, grace: 60, waitUntil: (p) => (done = p) }), 1);
      await done;
      assert.equal(store.getSync("k"), 2);
      await drain();
      assert.deepEqual(reported, [boom]);
    }));
});

test("a refresh that cannot start backs off like a failed one: the key is refreshed again later", async () => {
  const clock = new ManualClock();
  const store = lru(clock);
  const options = { ttl: 1, grace: 600, retryAfter: 1 };
  assert.equal(await store.getOrSet("k", () => 1, options), 1);
  clock.advance(2000); // stale
  const boom = new Error("hostile AbortController");
  const { AbortController: Real } = globalThis;
  globalThis.AbortController = function hostile() {
    throw boom;
  };
  let outcome;
  try {
    outcome = store.getOrSet("k", () => 2, options);
  } finally {
    globalThis.AbortController = Real;
  }
  await assert.rejects(outcome, (e) => e === boom);
  clock.advance(1000); // past the backoff
  let refresh;
  assert.equal(await store.getOrSet("k", () => 3, { ...options, waitUntil: (p) => (refresh = p) }), 1);
  assert.ok(refresh !== undefined, "this stale read started a refresh: the key was not left refreshing");
  await refresh;
  assert.equal(store.getSync("k"), 3);
  assert.equal(store.getStats().refreshFailures, 1);
});

test("durations below a nanosecond are refused before any loader runs, and leave no load or refresh behind", async () => {
  const clock = new ManualClock();
  const store = lru(clock);
  let runs = 0;
  const loader = () => {
    runs++;
    return 1;
  };
  for (const options of [{ ttl: 1, grace: 1e-10 }, { ttl: 1e-10 }, { ttl: 1, grace: 1, retryAfter: 1e-10 }]) {
    await assert.rejects(store.getOrSet("a", loader, options), CachePolicyError, JSON.stringify(options));
    assert.throws(() => store.setSync("b", 1, { ttl: 1e-10 }), CachePolicyError);
  }
  assert.equal(runs, 0, "no loader ran");
  // A stale key refreshes as before with sound options.
  const options = { ttl: 1, grace: 600 };
  assert.equal(await store.getOrSet("k", () => 1, options), 1);
  clock.advance(2000);
  await assert.rejects(store.getOrSet("k", loader, { ...options, retryAfter: 1e-10 }), CachePolicyError);
  let refresh;
  assert.equal(await store.getOrSet("k", () => 2, { ...options, waitUntil: (p) => (refresh = p) }), 1);
  assert.ok(refresh !== undefined, "the stale key starts a refresh: none was left running");
  await refresh;
  assert.equal(store.getSync("k"), 2);
  assert.equal(store.getStats().refreshes, 1);
});
