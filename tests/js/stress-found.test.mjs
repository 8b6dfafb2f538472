// Seed ranges of tests/js/stress.test.mjs that fail, found by running it with
// many more seeds (STRESS_SEEDS=7-160) than CI's 1-4. The stress run of a seed
// depends on what the seeds before it left in the one wasm instance (memory
// grown, slots reused), so each range runs in a fresh process, exactly as
// `STRESS_SEEDS=a-b node --test tests/js/stress.test.mjs` does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const STRESS = fileURLToPath(new URL("./stress.test.mjs", import.meta.url));

function stress(seeds) {
  // A child of a test runner that inherits NODE_TEST_CONTEXT reports to it
  // instead of running as a test process of its own (and exits 0).
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const run = spawnSync(process.execPath, ["--test", "--test-reporter=tap", "--test-name-pattern=^stress, seed", STRESS], {
    env: { ...env, STRESS_SEEDS: seeds },
    encoding: "utf8",
    timeout: 120_000,
  });
  const failures = (run.stdout ?? "")
    .split("\n")
    .filter((line) => /^not ok|^\s+error:/.test(line))
    .join("\n");
  assert.equal(run.status, 0, `STRESS_SEEDS=${seeds} failed:\n${failures || run.stderr}`);
}

// Node 20: seed 59, after 57 and 58 in the same instance, traps in `new
// WasmStore` ("memory access out of bounds", wasm-function[8] called from
// the store's constructor), and every store made after it in that instance
// traps too. Node 18: the same seeds end in the model mismatch below.
test("stress seeds 57-59 in one instance: no trap, the model holds", () => stress("57-59"));

// Node 20: right after a dive (a call made at every stack depth), `resync`
// lists the keys and peeks each: the peek of a key keysSync() listed as live
// announces it expired ("store#31 s3 cap 8 ttl undefined: notice expired of
// k11: the model has no such entry"): the engine's list and the JS deadline
// disagree about that entry.
test("stress seeds 91-94 in one instance: a key keysSync() lists is live when peeked", () => stress("91-94"));

// Node 20: seed 59, after 41-58 in the same instance: a store's deadlines
// read another store's slot ids ("store#66 s3 cap 8 ttl undefined: notice
// expired of k2: the model has no such entry"). A set cut short inside its
// reservation (after the per-slot arrays moved, before the engine published
// their places) left the JS views on freed memory: tests/js/views-moved.test.mjs.
test("stress seeds 41-59 in one instance: a set cut short while it grows leaves no view on freed memory", () => stress("41-59"));
