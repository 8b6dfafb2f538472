// toOpenTelemetry: the counters of several stores as an OTLP/JSON metrics
// export (ExportMetricsServiceRequest), one `store` attribute per series.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, S3FIFOPolicy, LRUPolicy, toOpenTelemetry, CachePolicyError } from "pepperpy-caching";

test("counters become cumulative sums and ratios gauges, per store", () => {
  const before = Date.now();
  const sessions = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 10 }) });
  const pages = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 }) });
  sessions.setSync("a", 1);
  sessions.getSync("a");
  sessions.getSync("b");
  pages.setSync("x", 1);
  pages.setSync("y", 2); // evicts x
  const body = toOpenTelemetry({ sessions, "we\"ird": pages }, { serviceName: "api", time: 1_700_000_000_123 });
  // A JSON round trip keeps everything: no BigInt, no undefined.
  assert.deepEqual(JSON.parse(JSON.stringify(body)), body);
  const [rm] = body.resourceMetrics;
  assert.deepEqual(rm.resource.attributes, [{ key: "service.name", value: { stringValue: "api" } }]);
  const metrics = new Map(rm.scopeMetrics[0].metrics.map((m) => [m.name, m]));
  const point = (name, store) =>
    (metrics.get(name).sum ?? metrics.get(name).gauge).dataPoints.find((p) => p.attributes[0].value.stringValue === store);
  assert.equal(point("pepperpy_cache.hits", "sessions").asInt, "1");
  assert.equal(point("pepperpy_cache.misses", "sessions").asInt, "1");
  assert.equal(point("pepperpy_cache.evictions", "we\"ird").asInt, "1");
  assert.equal(point("pepperpy_cache.hit_ratio", "sessions").asDouble, 0.5);
  const hits = metrics.get("pepperpy_cache.hits").sum;
  assert.equal(hits.aggregationTemporality, 2, "cumulative");
  assert.equal(hits.isMonotonic, true);
  const p = point("pepperpy_cache.hits", "sessions");
  assert.equal(p.timeUnixNano, "1700000000123000000");
  assert.ok(BigInt(p.startTimeUnixNano) >= BigInt(before) * 1000000n, "starts when the store was made");
  assert.ok(metrics.get("pepperpy_cache.avg_get_latency").gauge, "latency is a gauge");
  for (const m of metrics.values()) {
    assert.match(m.name, /^pepperpy_cache\.[a-z_]+$/);
    assert.equal((m.sum ?? m.gauge).dataPoints.length, 2, m.name);
  }
});

test("resetStats restarts the cumulative sums", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 4 }) });
  store.getSync("x");
  const first = toOpenTelemetry({ s: store }).resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0];
  await new Promise((r) => setTimeout(r, 5));
  store.resetStats();
  const after = toOpenTelemetry({ s: store }).resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0];
  assert.ok(BigInt(after.startTimeUnixNano) > BigInt(first.startTimeUnixNano));
  assert.equal(after.asInt, "0");
});

test("bad input is a CachePolicyError", () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 4 }) });
  for (const bad of [null, [store], "s", 1]) {
    assert.throws(() => toOpenTelemetry(bad), CachePolicyError);
  }
  assert.throws(() => toOpenTelemetry({ s: {} }), CachePolicyError);
  assert.throws(() => toOpenTelemetry({ s: store }, { time: -1 }), CachePolicyError);
  assert.throws(() => toOpenTelemetry({ s: store }, { servicename: "x" }), CachePolicyError);
  assert.deepEqual(toOpenTelemetry({}).resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints, []);
});
