"use client";
import { useEffect } from "react";
import * as cache from "pepperpy-caching";
import { check } from "../check.mjs";

export default function Client() {
  useEffect(() => {
    check(cache).then(
      (result) => (globalThis.consumerResult = result),
      (error) => (globalThis.consumerResult = { error: String(error) }),
    );
  }, []);
  return <p>client</p>;
}
