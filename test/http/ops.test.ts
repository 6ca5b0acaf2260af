/** What operators see: /health, /ready, /metrics, and a graceful stop (CORS: cors.test.ts). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { HotMetrics } from "../../src/metrics/hot.ts";
import { postJson, startTestHttpServer, T0_JSON, type TestHttpServer } from "./fixture.ts";

let s: TestHttpServer;
beforeAll(() => {
  s = startTestHttpServer({ maxBodyBytes: 4096 });
});
afterAll(() => s.server.stop());

describe("probes", () => {
  test("/health answers 200 while the process serves", async () => {
    const res = await fetch(`${s.base}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    expect((await fetch(`${s.base}/health`, { method: "HEAD" })).status).toBe(200);
  });

  test("/ready follows isReady: 200 when ready, 503 when not (loading or draining)", async () => {
    expect((await fetch(`${s.base}/ready`)).status).toBe(200);
    s.setReady(false);
    const down = await fetch(`${s.base}/ready`);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ status: "not ready" });
    // Liveness does not depend on readiness.
    expect((await fetch(`${s.base}/health`)).status).toBe(200);
    s.setReady(true);
    expect((await fetch(`${s.base}/ready`)).status).toBe(200);
  });
});

/** The value of one sample line of the exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(): Promise<string> {
  const res = await fetch(`${s.base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return res.text();
}

describe("/metrics", () => {
  test("counts requests by method, transport and code, and their latency, once they happen", async () => {
    const before = await scrape();
    const okSeries = 'featurestore_requests_total{method="GetFeatures",transport="connect",code="ok"}';
    const badSeries =
      'featurestore_requests_total{method="GetFeatures",transport="connect",code="invalid_argument"}';
    const ok0 = sample(before, okSeries) ?? 0;
    const bad0 = sample(before, badSeries) ?? 0;
    await postJson(s.rpc("SetFeatures"), { entityId: "m", features: { a: { intValue: 1 } } });
    await postJson(s.rpc("GetFeatures"), { entityId: "m" });
    await postJson(s.rpc("GetFeatures"), { entityId: "nobody" });
    await postJson(s.rpc("GetFeatures"), { entityId: "" });
    const after = await scrape();
    expect(sample(after, okSeries)).toBe(ok0 + 2);
    expect(sample(after, badSeries)).toBe(bad0 + 1);
    expect(
      sample(after, 'featurestore_requests_total{method="SetFeatures",transport="connect",code="ok"}'),
    ).toBeGreaterThan(0);
    const count = sample(
      after,
      'featurestore_request_duration_seconds_count{method="GetFeatures",transport="connect"}',
    );
    expect(count).toBeGreaterThanOrEqual(3);
    expect(
      sample(
        after,
        'featurestore_request_duration_seconds_bucket{method="GetFeatures",transport="connect",le="+Inf"}',
      ),
    ).toBe(count);
    // Buckets resolve tens of microseconds.
    expect(after).toContain('le="0.00001"');
    expect(after).toContain('le="0.000025"');
    expect(after).toContain("# TYPE featurestore_request_duration_seconds histogram");
    expect(after).toContain("# TYPE featurestore_requests_total counter");
  });

  test("reports the cache: entries, bytes, hits, misses", async () => {
    const before = await scrape();
    await postJson(s.rpc("SetFeatures"), { entityId: "c1", features: { a: { stringValue: "v" } } });
    await postJson(s.rpc("GetFeatures"), { entityId: "c1" });
    await postJson(s.rpc("GetFeatures"), { entityId: "c-missing" });
    const after = await scrape();
    expect(sample(after, "featurestore_cache_entries")).toBeGreaterThan(0);
    expect(sample(after, "featurestore_cache_bytes")).toBeGreaterThan(0);
    expect(sample(after, "featurestore_cache_hits_total")).toBeGreaterThan(
      sample(before, "featurestore_cache_hits_total")!,
    );
    expect(sample(after, "featurestore_cache_misses_total")).toBeGreaterThan(
      sample(before, "featurestore_cache_misses_total")!,
    );
    for (const name of ["featurestore_cache_evictions_total", "featurestore_cache_expirations_total"])
      expect(sample(after, name)).toBeGreaterThanOrEqual(0);
  });

  test("counts refused requests by reason", async () => {
    const series = (r: string) => `featurestore_rejected_total{reason="${r}"}`;
    const before = await scrape();
    await fetch(s.rpc("GetFeatures"), {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "x",
    });
    await fetch(s.rpc("GetFeatures"), {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: new Uint8Array(5000),
    });
    await fetch(`${s.base}/nope`);
    await fetch(`${s.rpc("SetFeatures")}?encoding=json&message=%7B%7D`);
    const after = await scrape();
    for (const r of [
      "http_bad_content_type",
      "http_body_too_large",
      "http_not_found",
      "http_method_not_allowed",
    ])
      expect(sample(after, series(r))).toBe(sample(before, series(r))! + 1);
  });

  test("includes in-flight requests, open TCP connections and the default process metrics", async () => {
    const text = await scrape();
    expect(text).toContain('featurestore_in_flight_requests{transport="connect"}');
    expect(text).toContain('featurestore_open_connections{transport="tcp"}');
    for (const name of [
      "process_resident_memory_bytes",
      "process_cpu_seconds_total",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
    ])
      expect(text).toContain(`# TYPE ${name} `);
  });

  test("records nothing when metrics are switched off, and still serves /metrics", async () => {
    const off = startTestHttpServer({ metrics: new HotMetrics(false) });
    try {
      await postJson(off.rpc("GetFeatures"), { entityId: "x" });
      const res = await fetch(`${off.base}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).not.toContain("featurestore_requests_total{");
    } finally {
      await off.server.stop();
    }
  });
});

describe("stop", () => {
  test("lets a request in flight finish, then refuses new connections", async () => {
    const t = startTestHttpServer();
    await postJson(t.rpc("SetFeatures"), { entityId: "s", features: { a: { boolValue: true } } });
    // A request whose body is still arriving when stop() is called.
    let send!: (chunk: Uint8Array) => void;
    let end!: () => void;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        send = (chunk) => c.enqueue(chunk);
        end = () => c.close();
      },
    });
    const inFlight = fetch(t.rpc("GetFeatures"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    send(new TextEncoder().encode('{"entityId":'));
    await Bun.sleep(20); // let the request reach the handler (ordering only, no timing assertion)
    const stopped = t.server.stop();
    send(new TextEncoder().encode('"s"}'));
    end();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      entityId: "s",
      features: { a: { boolValue: true, eventTimeMs: T0_JSON } },
      found: true,
    });
    await stopped;
    await expect(fetch(`${t.base}/health`)).rejects.toThrow();
  });
});
