/**
 * @jest-environment jsdom
 */
// jsdom has no TextEncoder or TextDecoder: the package must load without them.
const cache = require("pepperpy-caching");
const { check, expected } = require("./check.cjs");

test("the package in Jest's jsdom environment", async () => {
  expect(typeof window).toBe("object");
  expect(typeof TextDecoder).toBe("undefined");
  expect(await check(cache)).toEqual(expected);
});
