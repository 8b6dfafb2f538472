/**
 * @jest-environment jsdom
 */
// Jest's ES module mode (node --experimental-vm-modules) in jsdom: the
// "browser" condition gives the default import, the ES module glue, and
// jsdom has no TextEncoder or TextDecoder.
import * as cache from "pepperpy-caching";
import { check, expected } from "./check.mjs";

test("the package as an ES module in Jest's jsdom environment", async () => {
  expect(typeof window).toBe("object");
  expect(typeof TextDecoder).toBe("undefined");
  expect(await check(cache)).toEqual(expected);
});
