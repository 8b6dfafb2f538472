// Jest's default environment (node), CommonJS as Jest runs it by default.
const cache = require("pepperpy-caching");
const { check, expected } = require("./check.cjs");

test("the package in Jest's node environment", async () => {
  expect(typeof window).toBe("undefined");
  expect(await check(cache)).toEqual(expected);
});
