// js/api/7-otel.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// OpenTelemetry export of the stores' counters (OTLP/JSON).

// When each store's counters started (creation or last resetStats), in ms
// since the epoch: the start of its cumulative OpenTelemetry sums.
const statsSince = new WeakMap();

// The counters, one row per figure of getStats() in its order (the core's
// counter table, src/wasm/tables.rs `tables`): `name` (the getStats
// key), `field` (the Rust name), `kind` ("sum" or "gauge"), `unit`, `help`,
// and `engine` (its index in the engine's counters, or -1 when the store
// keeps or computes it itself).
const COUNTERS = (() => {
  // Per figure: unit 0 count / 1 ratio or level (a gauge) / 2 ms, and engine index or -1 (COUNTER_LAYOUT).
  const units = [["sum", "1"], ["gauge", "1"], ["gauge", "ms"]];
  return Object.freeze(
    COUNTER_TEXT.trimEnd()
      .split("\n")
      .map((line, i) => {
        const [field, help] = line.split("\t");
        const [kind, unit] = units[COUNTER_LAYOUT[2 * i]];
        const name = field.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
        return Object.freeze({ name, field, kind, unit, help, engine: COUNTER_LAYOUT[2 * i + 1] });
      }),
  );
})();
// The exported metrics: the sums, then the gauges, each in table order.
const OTEL_METRICS = [...COUNTERS.filter((c) => c.kind === "sum"), ...COUNTERS.filter((c) => c.kind !== "sum")];

const nanos = (ms) => (BigInt(Math.trunc(ms)) * 1000000n).toString();

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
  const metrics = OTEL_METRICS.map(({ name, field, kind, unit, help: description }) => {
    const dataPoints = rows.map(([store, stats, since]) => {
      const point = {
        attributes: [{ key: "store", value: { stringValue: store } }],
        startTimeUnixNano: nanos(since),
        timeUnixNano: nanos(now),
      };
      if (kind === "sum") point.asInt = String(stats[name]);
      else point.asDouble = stats[name];
      return point;
    });
    const metric = { name: `pepperpy_cache.${field}`, description, unit };
    if (kind === "sum") metric.sum = { aggregationTemporality: 2, isMonotonic: true, dataPoints };
    else metric.gauge = { dataPoints };
    return metric;
  });
  const resource = {
    attributes: serviceName === undefined ? [] : [{ key: "service.name", value: { stringValue: serviceName } }],
  };
  return { resourceMetrics: [{ resource, scopeMetrics: [{ scope: { name: "pepperpy-caching" }, metrics }] }] };
}
