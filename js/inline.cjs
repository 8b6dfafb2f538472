// Node (require and import): the nodejs glue reads the .wasm with fs and
// instantiates it synchronously. node.mjs re-exports this module, so `import`
// and `require` in one process share one instance and one set of classes.
"use strict";
const { bind } = require("./api.cjs");
module.exports = bind(require("./wasm/nodejs/pepperpy_caching.js"));
