/**
 * Every Prometheus metric of the server, defined in one place. Nothing here runs on the hot
 * path: the server records into the typed arrays of HotMetrics (hot.ts), and the collectors
 * below read those arrays, and the cache's counters, only when /metrics is scraped.
 *
 * The collectors are small custom metric objects rather than prom-client Counters fed in a
 * `collect()` hook: prom-client has no way to *set* a counter or a histogram's buckets, and
 * re-incrementing from zero at each scrape would rebuild its label maps every time. Label
 * objects are created once, at construction.
 *
 * Metric names follow the Prometheus conventions: base units in the name (`_seconds`,
 * `_bytes`), `_total` on counters.
 */
import client, { type Registry } from "prom-client";
import {
  HotMetrics,
  LATENCY_BUCKETS,
  METHOD_LABELS,
  REJECT_REASONS,
  TRANSPORT_NAMES,
  Transport,
} from "./hot.ts";

/** Transports whose requests are counted in flight (TCP answers within one event). */
/** Transports whose in-flight calls are counted (TCP answers within one data event). */
const IN_FLIGHT_TRANSPORTS = [Transport.Connect, Transport.GrpcWeb, Transport.Grpc];
/** Transports that see connections open and close (Bun.serve reports no connection events). */
const CONNECTION_TRANSPORTS = [Transport.Tcp, Transport.Grpc];

import { AUTH_FAILURE_NAMES } from "../auth/tokens.ts";
import { CODE_NAMES } from "../codec/status.ts";

/** What the cache reports; read once per scrape. */
export interface CacheStats {
  entries: number;
  bytesUsed: number;
  hits: number;
  misses: number;
  evictions: number;
  expirations: number;
  /** Bytes of arena allocated (used or not), when the cache reports it. */
  arenaBytes?: number;
}

/** What a Redis store reports (STORE=redis); read at scrape time. */
export interface RedisStats {
  /** Entities loaded from Redis (near-cache misses that went to Redis). */
  loads: number;
  /** Invalidations Redis pushed for our keys. */
  invalidations: number;
  /** Whole near-cache flushes (a tracking connection dropped, a topology refresh). */
  flushes: number;
  /** Hash fields left out of answers because they are not FeatureValues. */
  skippedFields: number;
  /** Loads queued or in flight now. */
  pendingLoads: number;
  /** 1 while every Redis node the store needs answers, else 0. */
  up: number;
}

export interface MetricsRegistryOptions {
  /** The hot-path counters the server records into. */
  hot: HotMetrics;
  /** Snapshot of the cache counters; called at most once per scrape. */
  cacheStats: () => CacheStats;
  /** Refused authentications by reason (AUTH_FAILURE_NAMES order), when authentication is on. */
  authFailures?: Float64Array;
  /** The Redis store's counters, with STORE=redis. */
  redisStats?: () => RedisStats;
  /** Also export prom-client's default process metrics (event-loop lag, GC, memory, CPU). Default true. */
  collectDefault?: boolean;
  /** Prefix of the default process metrics. Default "" (process_cpu_seconds_total, nodejs_eventloop_lag_seconds, ...). */
  defaultMetricsPrefix?: string;
}

/** Names of the metrics this module defines (the default process metrics aside). */
export const METRIC_NAMES = {
  requests: "featurestore_requests_total",
  duration: "featurestore_request_duration_seconds",
  inFlight: "featurestore_in_flight_requests",
  openConnections: "featurestore_open_connections",
  rejected: "featurestore_rejected_total",
  cacheEntries: "featurestore_cache_entries",
  cacheBytes: "featurestore_cache_bytes",
  cacheArenaBytes: "featurestore_cache_arena_bytes",
  cacheHits: "featurestore_cache_hits_total",
  cacheMisses: "featurestore_cache_misses_total",
  cacheEvictions: "featurestore_cache_evictions_total",
  cacheExpirations: "featurestore_cache_expirations_total",
  authFailures: "featurestore_auth_failures_total",
  redisLoads: "featurestore_redis_loads_total",
  redisInvalidations: "featurestore_redis_invalidations_total",
  redisFlushes: "featurestore_redis_near_cache_flushes_total",
  redisSkippedFields: "featurestore_redis_skipped_fields_total",
  redisPendingLoads: "featurestore_redis_pending_loads",
  redisUp: "featurestore_redis_up",
} as const;

type Labels = Record<string, string>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
interface MetricSnapshot {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  aggregator: "sum";
  values: Sample[];
}

/** The shape prom-client's Registry reads from a metric: name, help, type and `get()`. */
class ScrapeTimeMetric {
  readonly aggregator = "sum" as const;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
    private readonly read: () => Sample[],
  ) {}
  get(): Promise<MetricSnapshot> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.read(),
    });
  }
  /** prom-client calls it on `registry.resetMetrics()`; these values are owned by HotMetrics. */
  reset(): void {}
}

/**
 * Creates the registry served at /metrics: request counts and latencies by method, transport
 * and code; in-flight requests and open connections by transport; rejections by reason; the
 * cache's size and counters; and (by default) prom-client's process metrics.
 */
export function createMetricsRegistry(opts: MetricsRegistryOptions): Registry {
  const { hot } = opts;
  const registry = new client.Registry();
  const add = (m: ScrapeTimeMetric) => registry.registerMetric(m as unknown as client.Metric);

  const M = HotMetrics.METHODS;
  const C = HotMetrics.CODES;
  const B = HotMetrics.BUCKETS;
  const T = HotMetrics.TRANSPORTS;

  // Label objects, built once; a scrape only reads the arrays and picks the non-zero series.
  const requestLabels: Labels[] = [];
  for (let t = 0; t < T; t++)
    for (let m = 0; m < M; m++)
      for (let c = 0; c < C; c++)
        requestLabels.push({
          method: METHOD_LABELS[m]!,
          transport: TRANSPORT_NAMES[t]!,
          code: CODE_NAMES[c]!,
        });
  const seriesLabels: Labels[] = [];
  const bucketLabels: Labels[][] = [];
  for (let t = 0; t < T; t++)
    for (let m = 0; m < M; m++) {
      const base = { method: METHOD_LABELS[m]!, transport: TRANSPORT_NAMES[t]! };
      seriesLabels.push(base);
      bucketLabels.push([...LATENCY_BUCKETS.map(String), "+Inf"].map((le) => ({ ...base, le })));
    }
  const transportLabels = TRANSPORT_NAMES.map((transport) => ({ transport }));
  const reasonLabels = REJECT_REASONS.map((reason) => ({ reason }));

  add(
    new ScrapeTimeMetric(
      METRIC_NAMES.requests,
      "RPCs answered, by method, transport and status code (Connect code names; ok for success).",
      "counter",
      () => {
        const out: Sample[] = [];
        const a = hot.requests;
        for (let i = 0; i < a.length; i++)
          if (a[i]! > 0) out.push({ value: a[i]!, labels: requestLabels[i]! });
        return out;
      },
    ),
  );

  const bucketName = `${METRIC_NAMES.duration}_bucket`;
  const sumName = `${METRIC_NAMES.duration}_sum`;
  const countName = `${METRIC_NAMES.duration}_count`;
  add(
    new ScrapeTimeMetric(
      METRIC_NAMES.duration,
      "Time from a request's arrival (its body read, for HTTP) to its answer being ready, in seconds.",
      "histogram",
      () => {
        const out: Sample[] = [];
        const lat = hot.latency;
        for (let s = 0; s < T * M; s++) {
          let count = 0;
          for (let b = 0; b < B; b++) count += lat[s * B + b]!;
          if (count === 0) continue;
          // hot.latency holds per-bucket counts; Prometheus buckets are cumulative.
          let cumulative = 0;
          const labels = bucketLabels[s]!;
          for (let b = 0; b < B; b++) {
            cumulative += lat[s * B + b]!;
            out.push({ metricName: bucketName, value: cumulative, labels: labels[b]! });
          }
          out.push({ metricName: sumName, value: hot.latencySum[s]!, labels: seriesLabels[s]! });
          out.push({ metricName: countName, value: count, labels: seriesLabels[s]! });
        }
        return out;
      },
    ),
  );

  add(
    new ScrapeTimeMetric(
      METRIC_NAMES.inFlight,
      "Requests being handled now, by transport (connect, grpc-web, grpc).",
      "gauge",
      () =>
        IN_FLIGHT_TRANSPORTS.map((t) => ({ value: hot.inFlightRequests[t]!, labels: transportLabels[t]! })),
    ),
  );
  add(
    new ScrapeTimeMetric(
      METRIC_NAMES.openConnections,
      "Open client connections of the binary TCP protocol and native gRPC, by transport.",
      "gauge",
      () =>
        CONNECTION_TRANSPORTS.map((t) => ({ value: hot.openConnections[t]!, labels: transportLabels[t]! })),
    ),
  );
  add(
    new ScrapeTimeMetric(
      METRIC_NAMES.rejected,
      "Requests, frames and connections refused: client mistakes, limits and timeouts, by reason.",
      "counter",
      () => reasonLabels.map((labels, r) => ({ value: hot.rejected[r]!, labels })),
    ),
  );

  // One cache snapshot per scrape: prom-client asks every metric for its values in the same
  // synchronous pass, so the snapshot is dropped at the next microtask.
  let snapshot: CacheStats | null = null;
  const stats = (): CacheStats => {
    if (snapshot === null) {
      snapshot = opts.cacheStats();
      queueMicrotask(() => {
        snapshot = null;
      });
    }
    return snapshot;
  };
  const noLabels: Labels = {};
  const cacheMetric = (
    name: string,
    help: string,
    type: "counter" | "gauge",
    read: (s: CacheStats) => number | undefined,
  ) =>
    add(
      new ScrapeTimeMetric(name, help, type, () => {
        const v = read(stats());
        return v === undefined ? [] : [{ value: v, labels: noLabels }];
      }),
    );
  cacheMetric(METRIC_NAMES.cacheEntries, "Entities held in the cache.", "gauge", (s) => s.entries);
  cacheMetric(
    METRIC_NAMES.cacheBytes,
    "Bytes of entity ids and records held in the cache (what CACHE_MAX_BYTES bounds).",
    "gauge",
    (s) => s.bytesUsed,
  );
  if (opts.cacheStats().arenaBytes !== undefined)
    cacheMetric(
      METRIC_NAMES.cacheArenaBytes,
      "Bytes of arena the cache has allocated, used or free.",
      "gauge",
      (s) => s.arenaBytes,
    );
  cacheMetric(METRIC_NAMES.cacheHits, "Cache lookups that found a live entity.", "counter", (s) => s.hits);
  cacheMetric(
    METRIC_NAMES.cacheMisses,
    "Cache lookups that found nothing (or an expired entity).",
    "counter",
    (s) => s.misses,
  );
  cacheMetric(
    METRIC_NAMES.cacheEvictions,
    "Entities evicted to stay within CACHE_SIZE or CACHE_MAX_BYTES.",
    "counter",
    (s) => s.evictions,
  );
  cacheMetric(
    METRIC_NAMES.cacheExpirations,
    "Entities dropped because their TTL had passed.",
    "counter",
    (s) => s.expirations,
  );

  const authFailures = opts.authFailures;
  if (authFailures !== undefined) {
    const labels = AUTH_FAILURE_NAMES.map((reason) => ({ reason }));
    add(
      new ScrapeTimeMetric(
        METRIC_NAMES.authFailures,
        "Calls and connections refused by authentication: missing, malformed, unknown (or revoked) token, missing scope, TLS.",
        "counter",
        () => labels.map((l, i) => ({ value: authFailures[i]!, labels: l })),
      ),
    );
  }

  const redisStats = opts.redisStats;
  if (redisStats !== undefined) {
    const redisMetric = (name: string, help: string, type: "counter" | "gauge", key: keyof RedisStats) =>
      add(new ScrapeTimeMetric(name, help, type, () => [{ value: redisStats()[key], labels: noLabels }]));
    redisMetric(
      METRIC_NAMES.redisLoads,
      "Entities loaded from Redis on near-cache misses.",
      "counter",
      "loads",
    );
    redisMetric(
      METRIC_NAMES.redisInvalidations,
      "Invalidations Redis pushed for keys this server read (CLIENT TRACKING).",
      "counter",
      "invalidations",
    );
    redisMetric(
      METRIC_NAMES.redisFlushes,
      "Whole near-cache flushes: a tracking connection dropped or the Cluster topology was refreshed.",
      "counter",
      "flushes",
    );
    redisMetric(
      METRIC_NAMES.redisSkippedFields,
      "Redis hash fields left out of answers because they are not encoded FeatureValues.",
      "counter",
      "skippedFields",
    );
    redisMetric(
      METRIC_NAMES.redisPendingLoads,
      "Entity loads from Redis queued or in flight.",
      "gauge",
      "pendingLoads",
    );
    redisMetric(
      METRIC_NAMES.redisUp,
      "1 while every Redis node the store needs answers, else 0.",
      "gauge",
      "up",
    );
  }

  if (opts.collectDefault !== false) {
    client.collectDefaultMetrics({
      register: registry,
      prefix: opts.defaultMetricsPrefix ?? "",
      // Event-loop lag resolution: 10 ms (prom-client's default), in the same base unit (seconds).
      eventLoopMonitoringPrecision: 10,
    });
    // Gauges named *_total, which `promtool check metrics` rejects; the same figures are
    // exported per type as nodejs_active_handles{type} etc.
    const prefix = opts.defaultMetricsPrefix ?? "";
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ])
      registry.removeSingleMetric(`${prefix}${name}`);
  }
  return registry;
}
