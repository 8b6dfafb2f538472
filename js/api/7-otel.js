// js/api/7-otel.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// OpenTelemetry export of the stores' counters (OTLP/JSON).

/**
 * A cache in this isolate's memory. Values are kept as they are, not
 * copied: `get` returns the very object that was `set`, as a Map does.
 *
 * Values live here, in `#values` indexed by the entry's slot id, and keys
 * map to slot ids in `#ids`; the wasm engine keeps the policy, expiry,
 * metadata and the keys (for patterns) by slot, and hands back the id of
 * every entry it removes, which `#drop` forgets here. So the garbage
 * collector sees every value, and a hit is a Map lookup and one wasm call
 * with a number.
 */
// When each store's counters started (creation or last resetStats), in ms
// since the epoch: the start of its cumulative OpenTelemetry sums.
const statsSince = new WeakMap();

const OTEL_METRICS = [
  ["hits", "sum", "Gets that found a live entry."],
  ["misses", "sum", "Gets that found nothing, or only an expired entry."],
  ["sets", "sum", "Successful sets."],
  ["deletes", "sum", "Live entries removed by delete, invalidate or clear."],
  ["evictions", "sum", "Live entries removed to make room."],
  ["expirations", "sum", "Entries removed because their TTL had passed."],
  ["loads", "sum", "Loader runs started by getOrSet."],
  ["loadFailures", "sum", "Loader runs that failed."],
  ["staleHits", "sum", "Reads answered with a stale value within the grace period."],
  ["refreshes", "sum", "Background refreshes started."],
  ["refreshFailures", "sum", "Background refreshes that failed or timed out."],
  ["hitRatio", "gauge", "Hits divided by gets since the counters were reset."],
  ["avgGetLatency", "gauge", "Mean time of the sampled gets, in milliseconds."],
  ["totalLoadTime", "gauge", "Time spent in loaders, in milliseconds."],
];

const nanos = (ms) => (BigInt(Math.trunc(ms)) * 1000000n).toString();
const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The counters of `stores` ({ name: MemoryStore }) as an OpenTelemetry
 * metrics export request in OTLP/JSON (the body of POST /v1/metrics), one
 * `store` attribute per series: for edge code that pushes its metrics.
 */
function toOpenTelemetry(stores, options) {
  const { serviceName, time } = readOptions(options ?? {}, "toOpenTelemetry", ["serviceName", "time"]);
  if (stores === null || typeof stores !== "object" || Array.isArray(stores)) {
    throw new CachePolicyError(`toOpenTelemetry needs an object of stores by name, got ${describe(stores)}`);
  }
  const now = time ?? Date.now();
  if (typeof now !== "number" || !Number.isFinite(now) || now < 0) {
    throw new CachePolicyError(`time must be milliseconds since the epoch, got ${describe(now)}`);
  }
  if (serviceName !== undefined && typeof serviceName !== "string") {
    throw new CachePolicyError(`serviceName must be a string, got ${describe(serviceName)}`);
  }
  const rows = Object.entries(stores).map(([name, store]) => {
    if (!(store instanceof MemoryStore)) {
      throw new CachePolicyError(`toOpenTelemetry: ${JSON.stringify(name)} is not a MemoryStore`);
    }
    return [name, store.getStats(), statsSince.get(store) ?? now];
  });
  const metrics = OTEL_METRICS.map(([field, kind, description]) => {
    const dataPoints = rows.map(([name, stats, since]) => {
      const point = {
        attributes: [{ key: "store", value: { stringValue: name } }],
        startTimeUnixNano: nanos(since),
        timeUnixNano: nanos(now),
      };
      if (kind === "sum") point.asInt = String(stats[field]);
      else point.asDouble = stats[field];
      return point;
    });
    const metric = { name: `pepperpy_cache.${snake(field)}`, description, unit: field.endsWith("Time") || field === "avgGetLatency" ? "ms" : "1" };
    if (kind === "sum") metric.sum = { aggregationTemporality: 2, isMonotonic: true, dataPoints };
    else metric.gauge = { dataPoints };
    return metric;
  });
  const resource = {
    attributes: serviceName === undefined ? [] : [{ key: "service.name", value: { stringValue: serviceName } }],
  };
  return { resourceMetrics: [{ resource, scopeMetrics: [{ scope: { name: "pepperpy-caching" }, metrics }] }] };
}
