/**
 * The operational endpoints, answered to GET and HEAD:
 *
 * ```
 * /health   liveness: 200 while the process serves
 * /ready    readiness: 200 when isReady(), else 503
 * /metrics  Prometheus text format
 * ```
 */
import { JSON_HEADERS } from "./connect/protocol.ts";
import { CORS_HEADERS } from "./cors.ts";
import { headerCacheControl, headerContentType } from "./headers.ts";
import type { HttpServerOptions } from "./server.ts";

/** The liveness path. */
export const HEALTH_PATH = "/health";
/** The readiness path. */
export const READY_PATH = "/ready";
/** The Prometheus scrape path. */
export const METRICS_PATH = "/metrics";

const PROBE_HEADERS = { ...JSON_HEADERS, [headerCacheControl]: "no-store" };
const TEXT_HEADERS = {
  [headerContentType]: "text/plain; charset=utf-8",
  [headerCacheControl]: "no-store",
  ...CORS_HEADERS,
};

/** Answers the probe paths, from the server's registry and readiness check. */
export class Probes {
  constructor(private readonly opts: Pick<HttpServerOptions, "registry" | "isReady">) {}

  /** The answer to a GET or HEAD of `path`, or undefined when `path` is no probe. */
  answer(path: string): Response | Promise<Response> | undefined {
    if (path === HEALTH_PATH) return probe(200, "ok");
    if (path === READY_PATH) return this.opts.isReady() ? probe(200, "ready") : probe(503, "not ready");
    if (path === METRICS_PATH) return this.metrics();
    return undefined;
  }

  /** The registry's metrics in its content type, gathered now (scrape time is when they cost). */
  private async metrics(): Promise<Response> {
    const registry = this.opts.registry;
    const text = await registry.metrics();
    return new Response(text, { headers: { ...TEXT_HEADERS, [headerContentType]: registry.contentType } });
  }
}

/** A probe answer: `{"status": state}`, never cached. */
function probe(status: number, state: string): Response {
  return new Response(JSON.stringify({ status: state }), { status, headers: PROBE_HEADERS });
}
