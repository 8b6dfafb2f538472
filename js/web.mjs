// The default import wherever Node, Bun, workerd or Deno is not the runtime:
// browsers and every bundler for them (webpack, Vite, Rollup, Parcel,
// esbuild, bun build, Next.js's client and Edge builds), web workers, and
// `pepperpy-caching/inline` there. Plain ES modules with the wasm inlined
// (wasm/bytes.mjs) and instantiated synchronously: no asset for a bundler to
// ship, no fetch, no top-level await (an iife worker bundle cannot hold one).
// To ship the .wasm as a file of its own, use `pepperpy-caching/init`.
import { initSync } from "./init.mjs";
import bytes from "./wasm/bytes.mjs";

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = initSync(bytes);
