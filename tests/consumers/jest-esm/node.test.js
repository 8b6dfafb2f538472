// Jest's ES module mode (node --experimental-vm-modules), node environment.
import * as cache from "pepperpy-caching";
import { check, expected } from "./check.mjs";

test("the package as an ES module in Jest's node environment", async () => {
  expect(typeof window).toBe("undefined");
  expect(await check(cache)).toEqual(expected);
});
