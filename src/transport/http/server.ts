/**
 * The HTTP port (HTTP_PORT, default 8081), served by Bun.serve: Connect (unary POST with
 * binary or JSON bodies, GET for side-effect-free methods), gRPC-web (binary, text, +json),
 * CORS, /health, /ready and /metrics. It is a thin shell over FeatureService: the binary
 * paths hand the request bytes straight to `service.handle`; JSON is translated to and from
 * binary by json.ts.
 *
 * Routes:
 * ```
 * POST /featurestore.v1.FeatureStoreService/<Method>   Connect or gRPC-web, by content type
 * GET  /featurestore.v1.FeatureStoreService/GetFeatures|BatchGet?encoding=…&message=…  Connect GET
 * OPTIONS *      CORS preflight
 * GET  /health   liveness: 200 while the process serves
 * GET  /ready    readiness: 200 when isReady(), else 503
 * GET  /metrics  Prometheus text format (a token required with METRICS_AUTH)
 * GET  /console[/…]  the web console (console/handler.ts), when a config is given to show
 * ```
 *
 * Security, each part decided once when the server starts: every RPC checks its bearer token
 * (auth.ts), CORS answers only the configured origins (cors.ts), and TLS, with client
 * certificates when a CA is given, is the listener's (listener.ts).
 *
 * Layout, after connect-es (packages/connect/src): this file is the Bun.serve wiring and the
 * router; shared machinery beside it (context.ts, body.ts, headers.ts, probes.ts, cors.ts,
 * auth.ts, listener.ts, json.ts, schema.ts); one folder per wire protocol (connect/,
 * grpcweb/), each with its header names, its framing and error answers (protocol.ts) and its
 * handler (handler.ts).
 */

import type { TlsSource } from "../../auth/tls.ts";
import type { Auth } from "../../auth/tokens.ts";
import { Code } from "../../codec/status.ts";
import type { Config } from "../../config/index.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";
import { type HotMetrics, Reject } from "../../metrics/hot.ts";
import type { FeatureService } from "../../service/service.ts";
import { ConnectHandler } from "./connect/handler.ts";
import { connectBinary, httpRefusal, JSON_HEADERS } from "./connect/protocol.ts";
import { paramEncoding } from "./connect/query-params.ts";
import { ConsoleHandler } from "./console/handler.ts";
import { HandlerContext } from "./context.ts";
import { type Cors, createCors } from "./cors.ts";
import { GrpcWebHandler } from "./grpcweb/handler.ts";
import {
  DEFAULT_VARIANT,
  grpcWebErrorResponse,
  grpcWebVariant,
  looksLikeGrpcWeb,
} from "./grpcweb/protocol.ts";
import { headerAcceptPost, headerAllow, headerContentType } from "./headers.ts";
import { Listener } from "./listener.ts";
import { Probes } from "./probes.ts";
import { loadSchema, type MethodInfo, SERVICE_NAME, type ServiceSchema } from "./schema.ts";

/** What `startHttpServer` needs: where to listen, the service, and the operational hooks. */
export interface HttpServerOptions {
  /** Address to bind, e.g. "0.0.0.0" or "127.0.0.1". */
  host: string;
  /** Port to listen on; 0 picks a free one (see `HttpServer.port`). */
  port: number;
  /** Runs every RPC: request bytes in, response bytes out. */
  service: FeatureService;
  /** Every RPC is recorded (transport connect or grpc-web); refusals count by reason. */
  metrics: HotMetrics;
  /** Served at /metrics. */
  registry: import("prom-client").Registry;
  /**
   * Largest request message, bytes (MAX_FRAME_BYTES). Checked against Content-Length before
   * any byte is buffered, and against the bytes actually read when there is no Content-Length.
   * gRPC-web allows its 5-byte prefix on top, gRPC-web-text the base64 expansion of that.
   */
  maxBodyBytes: number;
  /** Client mistakes at debug; our own failures at error, rate-limited. */
  logger: Logger;
  /**
   * The store's durability point (`DurableStore.sync`): a write is answered once it resolves,
   * with the store's error if it rejects. Absent: writes are durable at once.
   */
  sync?: () => Promise<void> | null;
  /** /ready answers 200 only while this returns true (store loaded, not draining). */
  isReady: () => boolean;
  /**
   * Tokens and scopes (AUTH_TOKENS_FILE): every Connect and gRPC-web call needs
   * `authorization: Bearer <token>` with the method's scope. Absent or disabled = every call
   * allowed, at no cost per request.
   */
  auth?: Auth;
  /** /metrics requires a valid token of any scope (METRICS_AUTH); needs an enabled `auth`. Default false. */
  metricsAuth?: boolean;
  /**
   * TLS on this port (TLS_CERT_FILE, TLS_KEY_FILE; TLS_CA_FILE = client certificates required),
   * a new certificate used for new connections when the files change. Absent or null = plaintext.
   */
  tls?: TlsSource | null;
  /**
   * Origins allowed to call cross-origin (CORS_ORIGINS): empty or absent = none (no CORS
   * headers at all), a list = those origins, ["*"] = any.
   */
  corsOrigins?: readonly string[];
  /**
   * The config in effect: given, the web console is served at /console and shows it, secrets
   * redacted (CONSOLE_ENABLED). Absent or null = no console (its paths are 404).
   */
  console?: Config | null;
}

/** A running HTTP server, as `startHttpServer` returns it. */
export interface HttpServer {
  /** The port listened on (the chosen one when `port` was 0). */
  readonly port: number;
  /**
   * Stops accepting connections, lets requests in flight finish, and resolves once every
   * connection is closed. After `forceAfterMs` (default 10 s) the remaining ones are cut.
   */
  stop(forceAfterMs?: number): Promise<void>;
}

/** The prefix of every RPC path, to tell an unknown method from an unknown path. */
const SERVICE_PREFIX = `/${SERVICE_NAME}/`;
/** Content types a POST accepts, for the `accept-post` header of a 415 answer. */
const ACCEPT_POST =
  "application/proto, application/json, application/grpc-web+proto, application/grpc-web-text+proto";

/**
 * Starts the HTTP server. Throws if the port cannot be bound, or when `metricsAuth` is set
 * without an enabled `auth`.
 */
export function startHttpServer(opts: HttpServerOptions): HttpServer {
  const ctx = new HandlerContext(opts);
  const cors = createCors(opts.corsOrigins ?? []);
  const consolePage = opts.console ? new ConsoleHandler(opts.console, opts.auth, opts.logger) : null;
  const router = new Router(ctx, loadSchema(), new Probes(opts), cors, consolePage);
  const logHandlerFailure = new LimitedLog(opts.logger, "error", "http handler failed");

  const server = new Listener({
    host: opts.host,
    port: opts.port,
    logger: opts.logger,
    tls: opts.tls,
    fetch: cors.wrap((req) => router.route(req)),
    error(err) {
      logHandlerFailure.log({ err });
      return new Response(JSON.stringify({ code: "internal", message: "internal error" }), {
        status: 500,
        headers: JSON_HEADERS,
      });
    },
  });

  let stopping: Promise<void> | null = null;
  return {
    port: server.port,
    stop(forceAfterMs = 10_000) {
      if (stopping === null) {
        ctx.flushLog();
        logHandlerFailure.flush();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const forced = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            opts.logger.warn("http server: requests still in flight at the shutdown deadline; closing them");
            server.stop(true).then(resolve, resolve);
          }, forceAfterMs);
        });
        stopping = Promise.race([server.stop(false), forced]).finally(() => clearTimeout(timer));
      }
      return stopping;
    },
  };
}

/**
 * Chooses the handler of a request: an RPC path goes to Connect or gRPC-web by HTTP method and
 * content type; any other path to a probe, the CORS preflight, or a 404. Refusals made here,
 * before any RPC, are answered in the terms of the protocol the request looks like.
 */
class Router {
  private readonly connect: ConnectHandler;
  private readonly grpcWeb: GrpcWebHandler;

  constructor(
    private readonly ctx: HandlerContext,
    private readonly schema: ServiceSchema,
    private readonly probes: Probes,
    private readonly cors: Cors,
    private readonly console: ConsoleHandler | null,
  ) {
    this.connect = new ConnectHandler(ctx);
    this.grpcWeb = new GrpcWebHandler(ctx);
  }

  /** The answer to `req` (Bun.serve's `fetch`). */
  route(req: Request): Response | Promise<Response> {
    const url = req.url;
    const path = pathOf(url);
    const m = this.schema.methods.get(path);
    return m !== undefined ? this.rpc(req, m, url) : this.other(req, path);
  }

  /** A request to the path of method `m`. */
  private rpc(req: Request, m: MethodInfo, url: string): Response | Promise<Response> {
    const verb = req.method;
    const contentType = req.headers.get(headerContentType);
    if (verb === "POST") {
      const ct = contentType ?? "";
      const binary = connectBinary(ct);
      if (binary >= 0) return this.connect.unary(req, m, binary === 1, null);
      const v = grpcWebVariant(ct);
      if (v !== undefined) return this.grpcWeb.unary(req, m, v);
      this.ctx.metrics.reject(Reject.HttpBadContentType);
      return httpRefusal(
        415,
        Code.InvalidArgument,
        `unsupported content-type ${JSON.stringify(ct)}: use application/proto or application/json (Connect), or application/grpc-web[-text][+proto|+json]`,
        { [headerAcceptPost]: ACCEPT_POST },
      );
    }
    if (verb === "GET") return this.connectGet(req, m, url);
    if (verb === "OPTIONS") return this.cors.preflight(req);
    this.ctx.metrics.reject(Reject.HttpMethodNotAllowed);
    const allow = m.sideEffectFree ? "GET, POST" : "POST";
    return looksLikeGrpcWeb(contentType)
      ? grpcWebErrorResponse(DEFAULT_VARIANT, Code.Unimplemented, `${verb} is not allowed: use ${allow}`, 405)
      : httpRefusal(405, Code.Unimplemented, `${verb} is not allowed: use ${allow}`, {
          [headerAllow]: allow,
        });
  }

  /** A Connect GET: only side-effect-free methods, the codec named by `encoding`. */
  private connectGet(req: Request, m: MethodInfo, url: string): Response | Promise<Response> {
    if (!m.sideEffectFree) {
      this.ctx.metrics.reject(Reject.HttpMethodNotAllowed);
      return httpRefusal(405, Code.Unimplemented, `${m.name} has side effects: use POST`, {
        [headerAllow]: "POST",
      });
    }
    const query = new URL(url).searchParams;
    const encoding = query.get(paramEncoding);
    if (encoding !== "proto" && encoding !== "json") {
      this.ctx.metrics.reject(Reject.HttpBadContentType);
      return httpRefusal(
        415,
        Code.InvalidArgument,
        `GET needs ${paramEncoding}=proto or ${paramEncoding}=json, got ${encoding === null ? "none" : JSON.stringify(encoding)}`,
      );
    }
    return this.connect.unary(req, m, encoding === "proto", query);
  }

  /**
   * A request to any other path: a preflight, a probe, the console, or 404 (UNIMPLEMENTED for
   * an unknown method).
   */
  private async other(req: Request, path: string): Promise<Response> {
    const verb = req.method;
    if (verb === "OPTIONS") return this.cors.preflight(req);
    if (verb === "GET" || verb === "HEAD") {
      const answer = this.probes.answer(path, req.headers);
      if (answer !== undefined) return answer;
      if (this.console !== null && ConsoleHandler.owns(path)) {
        const page = await this.console.answer(path, req.headers);
        if (page !== undefined) return page;
      }
    }
    this.ctx.metrics.reject(Reject.HttpNotFound);
    const message = path.startsWith(SERVICE_PREFIX)
      ? `unknown method ${path.slice(SERVICE_PREFIX.length)} of ${this.schema.serviceName}`
      : `no route for ${verb} ${path}`;
    if (looksLikeGrpcWeb(req.headers.get(headerContentType)))
      return grpcWebErrorResponse(DEFAULT_VARIANT, Code.Unimplemented, message, 404);
    return httpRefusal(404, Code.Unimplemented, message);
  }
}

/** The path of an absolute request URL, without scanning it with the URL parser. */
export function pathOf(url: string): string {
  const slash = url.indexOf("/", url.indexOf("//") + 2);
  if (slash < 0) return "/";
  const q = url.indexOf("?", slash);
  return q < 0 ? url.slice(slash) : url.slice(slash, q);
}
