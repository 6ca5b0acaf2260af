/** Starts the HTTP adapter over a real store on an ephemeral loopback port. */
import { silentLogger } from "../../src/log/index.ts";
import { HotMetrics } from "../../src/metrics/hot.ts";
import { createMetricsRegistry } from "../../src/metrics/prometheus.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import { type HttpServerOptions, startHttpServer } from "../../src/transport/http/server.ts";

export const SERVICE_PATH = "/featurestore.v1.FeatureStoreService";

/**
 * The service clock of the test servers (ms since the epoch): values written without an event
 * time are stamped with it, so answers are exact. Stores keep real time for TTLs.
 */
export const T0 = 1_700_000_000_000;
/** T0 as a Connect JSON answer spells an event time (int64 as a string). */
export const T0_JSON = String(T0);

export function startTestHttpServer(overrides: Partial<HttpServerOptions> = {}) {
  const store = new MemoryStore({ maxEntries: 10000, maxBytes: 64 << 20, shardCount: 4 });
  const service = new FeatureService(store, { defaultTtlMs: 0, clock: () => T0 });
  const metrics = new HotMetrics(true);
  const registry = createMetricsRegistry({ hot: metrics, cacheStats: () => store.cache.stats() });
  let ready = true;
  const server = startHttpServer({
    host: "127.0.0.1",
    port: 0,
    service,
    metrics,
    registry,
    maxBodyBytes: 64 * 1024,
    logger: silentLogger,
    isReady: () => ready,
    ...overrides,
  });
  const base = `http://127.0.0.1:${server.port}`;
  return {
    server,
    store,
    service,
    metrics,
    registry,
    base,
    /** URL of a method of the service. */
    rpc: (method: string) => `${base}${SERVICE_PATH}/${method}`,
    setReady(v: boolean) {
      ready = v;
    },
  };
}

export type TestHttpServer = ReturnType<typeof startTestHttpServer>;

/** POSTs a JSON body with the Connect protocol; returns status, parsed body and headers. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json: json as Record<string, unknown>, text, headers: res.headers };
}
