// Nothing here is for the package: webpack's defaults (target "web", dist/main.js).
export default { mode: "production", entry: "./main.mjs" };
