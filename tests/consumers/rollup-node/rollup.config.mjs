// Rollup with node-resolve as its README shows it: no exportConditions, no
// commonjs plugin. The bundle then runs in Node on its own.
import { nodeResolve } from "@rollup/plugin-node-resolve";

export default { input: "main.mjs", output: { file: "dist/main.mjs", format: "es" }, plugins: [nodeResolve()] };
