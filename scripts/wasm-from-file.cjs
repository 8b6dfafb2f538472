// scripts/wasm-from-file.cjs: the source of `wasmFromFile()`, which a nodejs
// glue of the package (wasm/pepperpy_caching.cjs, wasm/NAME.cjs) calls before
// its inlined bytes (issue 19, import to first get). In Node (20.16+, 22.3+:
// process.getBuiltinModule) it reads the .wasm beside the glue, FILE in wasm/
// (the web build's, the same bytes: each build script checks), in 0.1-0.4 ms,
// so the glue never loads the base64 module, whose parse and decode cost
// 0.5-0.75 ms (the default entry's 109 KB) to 1.5 ms (redis's 383 KB).
// Anywhere else it gives undefined and the glue takes the inlined bytes as
// before: a bundle (no such file beside it), Node 18, Bun without
// getBuiltinModule, a host whose `process` is not Node's or throws, a file
// missing or of another build (its length and a sample of its bytes are
// checked against WASM's). The directory is `module.path`, which Node's (and
// Jest's) CommonJS modules have and a bundle's module objects do not:
// `__dirname` is a literal that bun build bakes in (the build machine's
// path). No free `process` (Parcel would bundle a polyfill for it).
"use strict";

// FNV-1a over every 1021st byte: cheap in a cold process (80 reads for 81 KB).
const STRIDE = 1021;
const sample = (bytes) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i += STRIDE) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
};

/** The JS source of `function wasmFromFile()` for the .wasm `wasm` (a Buffer), named `file` beside the glue. */
function wasmFromFileSource(wasm, file) {
  if (!/^[\w.-]+\.wasm$/.test(file)) throw new Error(`wasm-from-file: not a plain file name: ${file}`);
  return `function wasmFromFile() {
  try {
    const host = globalThis.process;
    const dir = typeof module === "object" && module !== null ? module.path : undefined;
    if (typeof host !== "object" || host === null || typeof host.getBuiltinModule !== "function" || typeof dir !== "string") return undefined;
    const bytes = host.getBuiltinModule("fs").readFileSync(dir + "/${file}");
    if (bytes.length !== ${wasm.length}) return undefined;
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i += ${STRIDE}) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h === ${sample(wasm)} ? bytes : undefined;
  } catch {
    return undefined;
  }
}
`;
}

module.exports = { wasmFromFileSource, STRIDE };
