// The package in Node's worker_threads: each thread loads its own copy
// (import and require alike) and its own wasm instance, and a worker that is
// terminated mid-use leaves the main thread's store as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { MemoryStore, LRUPolicy } from "pepperpy-caching";

/** Runs `source` in a worker (ESM unless `cjs`); what it posted. */
function inWorker(source, { cjs = false } = {}) {
  const code = cjs ? source : `import { parentPort } from "node:worker_threads";\n${source}`;
  const worker = new Worker(cjs ? `const { parentPort } = require("node:worker_threads");\n${code}` : new URL(`data:text/javascript,${encodeURIComponent(code)}`), {
    eval: cjs,
  });
  return new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`worker exited (${code}) without an answer`)));
  });
}

const body = (load) => `
  ${load}
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
  store.setSync("ключ", "worker");
  store.setSync("b", 2);
  store.setSync("c", 3);
  parentPort.postMessage({ value: store.getSync("c"), keys: store.keysSync().sort(), evicted: !store.hasSync("ключ") });`;

test("import and require in worker threads, next to the main thread's store", async () => {
  const main = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  main.setSync("ключ", "main");
  // A data: URL module cannot resolve bare names: import the package by its resolved URL.
  const url = import.meta.resolve("pepperpy-caching");
  const expected = { value: 3, keys: ["b", "c"], evicted: true };
  const answers = await Promise.all([
    inWorker(body(`import { MemoryStore, LRUPolicy } from ${JSON.stringify(url)};`)),
    inWorker(body(`const { MemoryStore, LRUPolicy } = require(${JSON.stringify(new URL(url).pathname.replace(/inline\.mjs$/, "inline.cjs"))});`), { cjs: true }),
    inWorker(body(`import { MemoryStore, LRUPolicy } from ${JSON.stringify(url)};`)),
  ]);
  for (const answer of answers) assert.deepEqual(answer, expected);
  assert.equal(main.getSync("ключ"), "main");
  assert.deepEqual(main.keysSync(), ["ключ"]);
});

test("a worker terminated while it uses the package: the main thread's store is untouched", async () => {
  const main = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  main.setSync("k", 1);
  const url = import.meta.resolve("pepperpy-caching");
  const code = `import { parentPort } from "node:worker_threads";
    import { MemoryStore, LRUPolicy } from ${JSON.stringify(url)};
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    parentPort.postMessage("running");
    for (let i = 0; ; i++) store.setSync("k" + (i % 1000), i);`;
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
  await new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  assert.equal(main.getSync("k"), 1);
  main.setSync("k", 2);
  assert.equal(main.getSync("k"), 2);
});
