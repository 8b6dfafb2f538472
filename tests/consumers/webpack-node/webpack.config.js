// Nothing here is for the package: a bundle for Node, in CommonJS.
export default { mode: "production", entry: "./main.mjs", target: "node", output: { filename: "main.cjs" } };
