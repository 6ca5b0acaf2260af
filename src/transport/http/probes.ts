/**
 * The operational endpoints, answered to GET and HEAD:
 *
 * ```
 * /health   liveness: 200 while the process serves
 * /ready    readiness: 200 when isReady(), else 503
 * /metrics  Prometheus text format; with METRICS_AUTH, only with a valid token (any scope)
 * ```
 *
 * /health and /ready stay open whatever the authentication: orchestrators probe them without
 * credentials, and they reveal nothing but up/ready.
 */
import { FeatureStoreError } from "../../codec/status.ts";
import { metricsGuard, refusalHeaders, type TokenGuard } from "./auth.ts";
import { connectErrorResponse, JSON_HEADERS } from "./connect/protocol.ts";
import { headerCacheControl, headerContentType } from "./headers.ts";
import type { HttpServerOptions } from "./server.ts";

/** The liveness path. */
export const HEALTH_PATH = "/health";
/** The readiness path. */
export const READY_PATH = "/ready";
/** The Prometheus scrape path. */
export const METRICS_PATH = "/metrics";

const PROBE_HEADERS = { ...JSON_HEADERS, [headerCacheControl]: "no-store" };

/** Answers the probe paths, from the server's registry and readiness check. */
export class Probes {
  /** The /metrics token check, decided once (METRICS_AUTH). */
  private readonly guard: TokenGuard;

  /** Throws when `metricsAuth` is set without an enabled `auth`. */
  constructor(
    private readonly opts: Pick<HttpServerOptions, "registry" | "isReady" | "auth" | "metricsAuth">,
  ) {
    this.guard = metricsGuard(opts.auth, opts.metricsAuth ?? false);
  }

  /** The answer to a GET or HEAD of `path`, or undefined when `path` is no probe. */
  answer(path: string, headers: Headers): Response | Promise<Response> | undefined {
    if (path === HEALTH_PATH) return probe(200, "ok");
    if (path === READY_PATH) return this.opts.isReady() ? probe(200, "ready") : probe(503, "not ready");
    if (path === METRICS_PATH) return this.metrics(headers);
    return undefined;
  }

  /**
   * The registry's metrics in its content type, gathered now (scrape time is when they cost);
   * 401 with a Connect error body when METRICS_AUTH is on and the token is missing or unknown.
   */
  private async metrics(headers: Headers): Promise<Response> {
    try {
      this.guard(headers);
    } catch (err) {
      const e = FeatureStoreError.from(err);
      return connectErrorResponse(e, refusalHeaders(e, false));
    }
    const registry = this.opts.registry;
    const text = await registry.metrics();
    return new Response(text, {
      headers: { [headerContentType]: registry.contentType, [headerCacheControl]: "no-store" },
    });
  }
}

/** A probe answer: `{"status": state}`, never cached. */
function probe(status: number, state: string): Response {
  return new Response(JSON.stringify({ status: state }), { status, headers: PROBE_HEADERS });
}
