// The CommonJS typings (index.d.cts) through `require`.
import cache = require("pepperpy-caching");

const store = new cache.MemoryStore<number>({ policy: new cache.LRUPolicy({ maxSize: 2, ttl: 60, refreshOnGet: false }) });
store.setSync("a", 1);
const a: number | undefined = store.getSync("a");
if (a !== 1) throw new Error("require: get");
const clock = new cache.ManualClock();
clock.advance(10);
const error: cache.CacheError = new cache.CacheSerializationError("x");
if (!(error instanceof Error)) throw new Error("require: errors");
