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
  // Per figure: unit 0 count / 1 ratio or level (a gauge) / 2 ms, and engine
  // index or -1 (COUNTER_LAYOUT). Plain loops and objects: this runs at every
  // package load, where a regular expression with a replacer and a frozen
  // object per row cost 0.2 ms (the table is never handed out:
  // getStats and toOpenTelemetry copy from it).
  const kinds = ["sum", "gauge", "gauge"];
  const units = ["1", "1", "ms"];
  const lines = COUNTER_TEXT.trimEnd().split("\n");
  const rows = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const tab = line.indexOf("\t");
    const field = line.slice(0, tab);
    // snake_case -> camelCase
    let name = "";
    for (let j = 0; j < field.length; j++) name += field[j] === "_" ? field[++j].toUpperCase() : field[j];
    const unit = COUNTER_LAYOUT[2 * i];
    rows[i] = { name, field, kind: kinds[unit], unit: units[unit], help: line.slice(tab + 1), engine: COUNTER_LAYOUT[2 * i + 1] };
  }
  return rows;
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
