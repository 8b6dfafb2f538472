// How much native stack a call into the engine makes sure of before it
// changes anything (src/wasm/mod.rs `probe`), in depths of a small JS
// recursion: near the end of the stack, a guarded call (`replay(0)`, which
// is little more than the probe) is made at every depth on the way back up
// until one succeeds; the count of depths where it failed is the reach.
// Five rounds cold, then five after 200k calls (the wasm tiered up). Compare
// two builds under the same flags (--liftoff-only, --no-liftoff, Node 18,
// 20, 22): a probe that reaches less than the one the battery passed with
// lets an overflow land inside the engine (the store then starts empty).
//   usage: node [flags] bench/js/stack-reach.cjs PKGDIR
const { resolve } = require("node:path");
const glue = require(resolve(process.argv[2] ?? "pkg", "wasm/pepperpy_caching.cjs"));
const store = glue.WasmEngines.create(glue.WasmPolicy.lru(1000, undefined, true), 100);

function reach() {
  let failed = 0;
  let done = false;
  const attempt = () => {
    try {
      glue.WasmEngines.replay(store, 0);
      done = true;
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      failed++;
    }
  };
  const dive = () => {
    try {
      dive();
    } catch {}
    if (!done) attempt();
  };
  attempt(); // compiled here, not near the end of the stack
  done = false;
  failed = 0;
  dive();
  return failed;
}

const cold = Array.from({ length: 5 }, reach);
for (let i = 0; i < 200_000; i++) glue.WasmEngines.replay(store, 0);
const hot = Array.from({ length: 5 }, reach);
console.log(`${process.version} ${process.execArgv.join(" ")}: cold ${cold.join(" ")}, hot ${hot.join(" ")}`);
