// The types of `pepperpy-caching/init` and `/inline`, checked by tsc --strict
// in a project with neither lib.dom nor @types/node (tsconfig.json here).
import { init, initSync, type Api } from "pepperpy-caching/init";
import * as inline from "pepperpy-caching/inline";

export async function fromUrl(url: URL): Promise<number> {
  const api: Api = await init(url);
  const store = new api.MemoryStore<number>({ policy: new api.LRUPolicy({ maxSize: 10 }) });
  await store.set("k", 1);
  return (await store.get("k")) ?? 0;
}

export function fromBytes(bytes: Uint8Array): boolean {
  const { MemoryStore, TTLPolicy, CacheKeyError } = initSync(bytes);
  const store = new MemoryStore<string>({ policy: new TTLPolicy({ ttl: 5 }) });
  // @ts-expect-error a number is not a string value for MemoryStore<string>
  store.setSync("k", 1);
  return store.hasSync("k") && CacheKeyError.prototype instanceof Error;
}

export const inlineStore: inline.MemoryStore = new inline.MemoryStore({ policy: new inline.LRUPolicy({ maxSize: 1 }) });

// The README's /init recipe as TypeScript: `pepperpy-caching/wasm` is the
// .wasm file; what a bundler's loader makes of it (a URL, a module) is a
// source init() takes.
import wasm from "pepperpy-caching/wasm";

export async function fromTheWasmEntry(): Promise<Api> {
  return init(wasm);
}
