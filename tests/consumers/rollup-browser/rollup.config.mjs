// Rollup for the browser: node-resolve with `browser: true`, nothing else.
import { nodeResolve } from "@rollup/plugin-node-resolve";

export default { input: "main.mjs", output: { dir: "dist", format: "es" }, plugins: [nodeResolve({ browser: true })] };
