/**
 * Hot-path counters: plain numbers in preallocated typed arrays, indexed by transport, method
 * and status code. Recording is a few array writes; prom-client collectors
 * (src/metrics/prometheus.ts) turn them into metrics only when /metrics is scraped.
 */
import { METHOD_COUNT, METHOD_NAMES } from "../codec/frame.ts";

/** Method label values: the protocol's methods, then "unknown" for numbers no method has. */
export const METHOD_LABELS = [...METHOD_NAMES, "unknown"] as const;
const METHODS = METHOD_LABELS.length;

/** Transports, as the `transport` label values. */
export const TRANSPORT_NAMES = ["tcp", "connect", "grpc-web", "grpc"] as const;
export const Transport = { Tcp: 0, Connect: 1, GrpcWeb: 2, Grpc: 3 } as const;
const TRANSPORTS = TRANSPORT_NAMES.length;

/**
 * Why a request, frame or connection was refused, as the `reason` label values. On TCP,
 * `bad_request` counts requests answered with a client-error code (INVALID_ARGUMENT,
 * UNIMPLEMENTED, RESOURCE_EXHAUSTED, ...), `idle_timeout` and `frame_timeout` connections cut
 * by TCP_IDLE_TIMEOUT_MS and TCP_FRAME_TIMEOUT_MS, `client_memory` connections cut to keep
 * MAX_CLIENT_MEMORY_BYTES, `max_connections` connections refused at MAX_CONNECTIONS.
 */
export const REJECT_REASONS = [
  "frame_too_large",
  "bad_header",
  "output_overflow",
  "bad_request",
  "shutting_down",
  "http_bad_content_type",
  "http_body_too_large",
  "http_not_found",
  "http_method_not_allowed",
  "http_unsupported_encoding",
  "idle_timeout",
  "frame_timeout",
  "client_memory",
  "max_connections",
] as const;
export const Reject = {
  FrameTooLarge: 0,
  BadHeader: 1,
  OutputOverflow: 2,
  BadRequest: 3,
  ShuttingDown: 4,
  HttpBadContentType: 5,
  HttpBodyTooLarge: 6,
  HttpNotFound: 7,
  HttpMethodNotAllowed: 8,
  HttpUnsupportedEncoding: 9,
  IdleTimeout: 10,
  FrameTimeout: 11,
  ClientMemory: 12,
  MaxConnections: 13,
} as const;

/** Status codes 0..16. */
const CODES = 17;

/**
 * Latency bucket upper bounds in seconds: 10 us steps at the bottom, because a memory hit over
 * loopback takes tens of microseconds, up to 2.5 s for anything pathological.
 */
export const LATENCY_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01,
  0.025, 0.05, 0.1, 0.25, 1, 2.5,
];
const BUCKETS = LATENCY_BUCKETS.length + 1; // + Inf

export class HotMetrics {
  /** requests[(transport * METHODS + method) * CODES + code] */
  readonly requests = new Float64Array(TRANSPORTS * METHODS * CODES);
  /** Non-cumulative bucket counts: latency[(transport * METHODS + method) * BUCKETS + bucket] */
  readonly latency = new Float64Array(TRANSPORTS * METHODS * BUCKETS);
  /** latencySum[transport * METHODS + method], seconds */
  readonly latencySum = new Float64Array(TRANSPORTS * METHODS);
  readonly rejected = new Float64Array(REJECT_REASONS.length);
  readonly openConnections = new Float64Array(TRANSPORTS);
  /**
   * Requests being handled, by transport. The HTTP adapter records it because Bun.serve does
   * not report connection opens and closes; a TCP request is never in flight across events.
   */
  readonly inFlightRequests = new Float64Array(TRANSPORTS);

  /**
   * @param enabled false turns every recording method into a no-op, decided here once so that
   * callers never branch on it (METRICS_ENABLED=false; for measuring what metrics cost).
   */
  constructor(readonly enabled = true) {
    if (!enabled) {
      this.request = noop;
      this.reject = noop;
      this.connection = noop;
      this.inFlight = noop;
    }
  }

  /** Counts one answered request and its latency in seconds. Unknown method numbers count as "unknown". */
  request(transport: number, method: number, code: number, seconds: number): void {
    const m = Math.min(method, METHOD_COUNT);
    const tm = transport * METHODS + m;
    this.requests[tm * CODES + code]!++;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]!) b++;
    this.latency[tm * BUCKETS + b]!++;
    this.latencySum[tm]! += seconds;
  }

  reject(reason: number): void {
    this.rejected[reason]!++;
  }

  /** +1 on open, -1 on close. */
  connection(transport: number, delta: number): void {
    this.openConnections[transport]! += delta;
  }

  /** +1 when a request starts being handled, -1 when its answer is ready. */
  inFlight(transport: number, delta: number): void {
    this.inFlightRequests[transport]! += delta;
  }

  static readonly CODES = CODES;
  static readonly BUCKETS = BUCKETS;
  static readonly TRANSPORTS = TRANSPORTS;
  static readonly METHODS = METHODS;
}

function noop(): void {}
