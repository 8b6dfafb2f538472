// js/api/1-describe.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order), and a part of
// every entry with a .wasm of its own (scripts/build-entry.cjs puts it before
// js/NAME/*.js), so that a value is described and a plain object recognised
// alike in every error message of the package.

function describe(value) {
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}...` : value)}`;
    case "symbol":
      return value.toString();
    case "bigint":
      return `${value}n`;
    case "function":
      return "a function";
    case "object":
      if (value === null) return "null";
      if (Array.isArray(value)) return "an array";
      return isPlainObject(value) ? "a plain object" : `an object of class ${value.constructor?.name ?? "unknown"}`;
    default:
      return String(value);
  }
}

// Plain: made by `{}`, `Object.create(null)` or JSON.parse, also in another realm.
function isPlainObject(value) {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}
