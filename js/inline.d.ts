// Types of `pepperpy-caching/inline` for TypeScript's node10 resolution
// ("moduleResolution": "node"), which does not read package.json `exports`
// and looks for this file instead; every other resolution takes index.d.ts.
export * from "./index.js";
