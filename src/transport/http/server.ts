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
 * GET  /metrics  Prometheus text format
 * ```
 */
import { isWriteMethod } from "../../codec/frame.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { ProtoWriter } from "../../codec/wire.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";
import { type HotMetrics, Reject, Transport } from "../../metrics/hot.ts";
import type { FeatureService } from "../../service/service.ts";
import { decodeBase64, decodeBase64Chunks } from "./base64.ts";
import {
  connectBinary,
  connectErrorResponse,
  httpRefusal,
  JSON_HEADERS,
  PROTO_HEADERS,
  parseConnectTimeout,
} from "./connect.ts";
import { CORS_HEADERS, preflight } from "./cors.ts";
import {
  DEFAULT_VARIANT,
  FLAG_COMPRESSED,
  FLAG_TRAILERS,
  type GrpcWebVariant,
  grpcWebErrorResponse,
  grpcWebVariant,
  looksLikeGrpcWeb,
  OK_TRAILERS,
  PREFIX_BYTES,
  parseGrpcTimeout,
  readU32BE,
  writeU32BE,
} from "./grpcweb.ts";
import { binaryToJson, jsonBytesToBinary } from "./json.ts";
import { loadSchema, type MethodInfo } from "./schema.ts";

export interface HttpServerOptions {
  /** Address to bind, e.g. "0.0.0.0" or "127.0.0.1". */
  host: string;
  /** Port to listen on; 0 picks a free one (see `HttpServer.port`). */
  port: number;
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
  logger: Logger;
  /**
   * The store's durability point (`DurableStore.sync`): a write is answered once it resolves,
   * with the store's error if it rejects. Absent: writes are durable at once.
   */
  sync?: () => Promise<void> | null;
  /** /ready answers 200 only while this returns true (store loaded, not draining). */
  isReady: () => boolean;
}

export interface HttpServer {
  /** The port listened on (the chosen one when `port` was 0). */
  readonly port: number;
  /**
   * Stops accepting connections, lets requests in flight finish, and resolves once every
   * connection is closed. After `forceAfterMs` (default 10 s) the remaining ones are cut.
   */
  stop(forceAfterMs?: number): Promise<void>;
}

const SERVICE_PREFIX = "/featurestore.v1.FeatureStoreService/";
const TEXT_HEADERS = {
  "content-type": "text/plain; charset=utf-8",
  "cache-control": "no-store",
  ...CORS_HEADERS,
};
const PROBE_HEADERS = { ...JSON_HEADERS, "cache-control": "no-store" };
const EMPTY = new Uint8Array(0);
/** Starting size of the reused writers: room for any single-entity answer without growing. */
const WRITER_BYTES = 64 * 1024;
/**
 * A writer grown past this by a large BatchGet is replaced after the answer, so that one big
 * request does not pin its memory for the life of the process (4 MiB: the default MAX_FRAME_BYTES).
 */
const SHRINK_ABOVE_BYTES = 4 * 1024 * 1024;
/**
 * On answers to a body that was refused unread: the rest of it is still on the wire, so the
 * connection closes rather than make Bun read (and discard) up to Content-Length bytes.
 */
const CLOSE = { connection: "close" };

/** RESOURCE_EXHAUSTED for a body over the limit (answered with CLOSE). */
class BodyTooLarge extends FeatureStoreError {}
const textEncoder = new TextEncoder();

/** Starts the HTTP server. Throws if the port cannot be bound. */
export function startHttpServer(opts: HttpServerOptions): HttpServer {
  const { service, metrics, logger, maxBodyBytes } = opts;
  const sync = opts.sync ?? (() => null);
  /** Waits until a write is durable (the answer is already copied out of the shared writers). */
  const durable = async (m: MethodInfo): Promise<void> => {
    const pending = isWriteMethod(m.number) ? sync() : null;
    if (pending !== null) await pending;
  };
  const schema = loadSchema();
  const methods = schema.methods;
  /** Response messages are built here; every answer is copied out before the next await. */
  const out = new ProtoWriter(WRITER_BYTES);
  /** JSON requests are encoded to binary here. */
  const scratch = new ProtoWriter(WRITER_BYTES);
  /** After an answer: a writer grown by one huge message goes back to its usual size. */
  const shrink = (): void => {
    if (out.bytes.length > SHRINK_ABOVE_BYTES) out.bytes = new Uint8Array(WRITER_BYTES);
    if (scratch.bytes.length > SHRINK_ABOVE_BYTES) scratch.bytes = new Uint8Array(WRITER_BYTES);
  };
  // Decided once: without metrics, no clock reads.
  const clock = metrics.enabled ? () => performance.now() : () => 0;
  const grpcWebLimit = maxBodyBytes + PREFIX_BYTES;
  const grpcWebTextLimit = Math.ceil(grpcWebLimit / 3) * 4 + 64; // + slack for chunk padding and newlines

  /** Runs in `finally` of every RPC, once its answer has been copied out of the writers. */
  const finish = (transport: number, m: MethodInfo, code: number, t0: number): void => {
    shrink();
    metrics.request(transport, m.number, code, (clock() - t0) / 1000);
    metrics.inFlight(transport, -1);
  };

  // Our bugs are logged at error, rate-limited so that a bug hit by every request cannot flood
  // the log; a client's mistakes at debug only.
  const logInternal = new LimitedLog(logger, "error", "http request failed");
  const logHandlerFailure = new LimitedLog(logger, "error", "http handler failed");
  const logFailure = (m: MethodInfo, transport: string, err: FeatureStoreError): void => {
    if (err.code === Code.Internal || err.code === Code.Unknown)
      logInternal.log({
        method: m.name,
        transport,
        code: err.code,
        err: err.cause ?? err,
      });
    else if (logger.debugEnabled)
      logger.debug("http request refused", {
        method: m.name,
        transport,
        code: err.code,
        message: err.message,
      });
  };

  /**
   * Reads a request body of at most `limit` bytes. A Content-Length over the limit is refused
   * before anything is buffered; without one the stream is read until it passes the limit.
   */
  const readBody = async (req: Request, limit: number, deadline: number | undefined): Promise<Uint8Array> => {
    const declared = req.headers.get("content-length");
    if (declared !== null && Number(declared) > limit) throw tooLarge(Number(declared), limit);
    if (req.body === null) return EMPTY;
    const reading = declared !== null ? req.bytes() : readCapped(req.body, limit, tooLarge);
    const body = deadline === undefined ? await reading : await beforeDeadline(reading, deadline);
    if (body.length > limit) throw tooLarge(body.length, limit);
    return body;
  };

  const tooLarge = (n: number, limit: number): FeatureStoreError => {
    metrics.reject(Reject.HttpBodyTooLarge);
    return new BodyTooLarge(
      Code.ResourceExhausted,
      `request body of ${n} bytes exceeds the limit of ${limit} bytes (MAX_FRAME_BYTES)`,
    );
  };

  const unsupportedEncoding = (header: string, value: string): FeatureStoreError => {
    metrics.reject(Reject.HttpUnsupportedEncoding);
    return new FeatureStoreError(
      Code.Unimplemented,
      `unsupported ${header} "${value}": this server accepts only identity (uncompressed) messages`,
    );
  };

  /**
   * Runs one Connect unary call on a message already read: binary straight through, JSON via
   * the mapping. Returns the response body.
   */
  const callConnect = (m: MethodInfo, binary: boolean, body: Uint8Array): Uint8Array | string => {
    if (binary) {
      out.reset();
      service.handle(m.number, body, 0, body.length, out);
      return out.finish();
    }
    scratch.reset();
    jsonBytesToBinary(m.input, body, scratch);
    out.reset();
    service.handle(m.number, scratch.bytes, 0, scratch.pos, out);
    return JSON.stringify(outputJson(m, out));
  };

  const connectUnary = async (
    req: Request,
    m: MethodInfo,
    binary: boolean,
    query: URLSearchParams | null,
  ) => {
    const t0 = clock();
    metrics.inFlight(Transport.Connect, 1);
    let code: number = Code.OK;
    try {
      const h = req.headers;
      const version = query ? query.get("connect") : h.get("connect-protocol-version");
      if (version !== null && version !== (query ? "v1" : "1"))
        throw new FeatureStoreError(
          Code.InvalidArgument,
          query
            ? `connect must be "v1", got "${version}"`
            : `connect-protocol-version must be "1", got "${version}"`,
        );
      const encoding = query
        ? query.get("compression")
        : (h.get("content-encoding") ?? h.get("connect-content-encoding"));
      if (encoding !== null && encoding !== "identity")
        throw unsupportedEncoding(query ? "compression" : "content-encoding", encoding);
      const timeout = parseConnectTimeout(h.get("connect-timeout-ms"));
      const deadline = timeout === undefined ? undefined : Date.now() + timeout;
      if (timeout === 0) throw deadlineExceeded();
      let body: Uint8Array;
      if (query) {
        const message = query.get("message") ?? "";
        body =
          query.get("base64") === "1"
            ? decodeBase64(message, "the message parameter")
            : textEncoder.encode(message);
        if (body.length > maxBodyBytes) throw tooLarge(body.length, maxBodyBytes);
      } else body = await readBody(req, maxBodyBytes, deadline);
      if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
      const result = callConnect(m, binary, body);
      await durable(m);
      return new Response(result, { headers: binary ? PROTO_HEADERS : JSON_HEADERS });
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      logFailure(m, "connect", e);
      return connectErrorResponse(e, e instanceof BodyTooLarge ? CLOSE : undefined);
    } finally {
      finish(Transport.Connect, m, code, t0);
    }
  };

  const grpcWeb = async (req: Request, m: MethodInfo, v: GrpcWebVariant) => {
    const t0 = clock();
    metrics.inFlight(Transport.GrpcWeb, 1);
    let code: number = Code.OK;
    try {
      const h = req.headers;
      const encoding = h.get("grpc-encoding");
      if (encoding !== null && encoding !== "identity") throw unsupportedEncoding("grpc-encoding", encoding);
      const timeout = parseGrpcTimeout(h.get("grpc-timeout"));
      if (Number.isNaN(timeout))
        throw new FeatureStoreError(
          Code.InvalidArgument,
          `invalid grpc-timeout value: "${h.get("grpc-timeout")}"`,
        );
      const deadline = timeout === undefined ? undefined : Date.now() + timeout;
      if (timeout === 0) throw deadlineExceeded();
      let body = await readBody(req, v.text ? grpcWebTextLimit : grpcWebLimit, deadline);
      if (v.text) body = decodeBase64Chunks(body, "gRPC-web-text body");
      if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
      // One length-prefixed message: flags, u32 big-endian length, message.
      if (body.length < PREFIX_BYTES)
        throw new FeatureStoreError(
          Code.InvalidArgument,
          "gRPC-web request carries no message (expected a 5-byte prefix and a message)",
        );
      const flags = body[0]!;
      if (flags & FLAG_TRAILERS)
        throw new FeatureStoreError(Code.InvalidArgument, "gRPC-web request starts with a trailers frame");
      if (flags & FLAG_COMPRESSED)
        throw new FeatureStoreError(
          Code.InvalidArgument,
          "gRPC-web message is flagged compressed, but grpc-encoding is identity",
        );
      const len = readU32BE(body, 1);
      if (len > maxBodyBytes) throw tooLarge(len, maxBodyBytes);
      if (PREFIX_BYTES + len > body.length)
        throw new FeatureStoreError(
          Code.InvalidArgument,
          `gRPC-web message is truncated: prefix says ${len} bytes, ${body.length - PREFIX_BYTES} arrived`,
        );
      if (PREFIX_BYTES + len < body.length)
        throw new FeatureStoreError(
          Code.InvalidArgument,
          "a unary gRPC-web request carries exactly one message",
        );
      // The answer: data frame (prefix filled in once its length is known), then trailers.
      out.reset();
      out.ensure(PREFIX_BYTES);
      out.pos = PREFIX_BYTES;
      if (v.json) {
        scratch.reset();
        jsonBytesToBinary(m.input, body.subarray(PREFIX_BYTES), scratch);
        service.handle(m.number, scratch.bytes, 0, scratch.pos, out);
        const json = textEncoder.encode(JSON.stringify(outputJson(m, out, PREFIX_BYTES)));
        out.pos = PREFIX_BYTES;
        out.raw(json);
      } else {
        service.handle(m.number, body, PREFIX_BYTES, PREFIX_BYTES + len, out);
      }
      out.bytes[0] = 0;
      writeU32BE(out.bytes, 1, out.pos - PREFIX_BYTES);
      out.raw(OK_TRAILERS);
      const answer = v.text ? out.view().toBase64() : out.finish();
      await durable(m);
      return new Response(answer, { headers: v.headers });
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      logFailure(m, "grpc-web", e);
      return grpcWebErrorResponse(v, e.code, e.message, 200, e instanceof BodyTooLarge ? CLOSE : undefined);
    } finally {
      finish(Transport.GrpcWeb, m, code, t0);
    }
  };

  /** Decodes the response message in out[start, pos) to its JSON object; a failure is our bug. */
  const outputJson = (m: MethodInfo, w: ProtoWriter, start = 0): Record<string, unknown> => {
    try {
      return binaryToJson(m.output, w.bytes, start, w.pos);
    } catch (err) {
      throw new FeatureStoreError(Code.Internal, `cannot encode the ${m.name} response as JSON`, {
        cause: err,
      });
    }
  };

  const rpc = (req: Request, m: MethodInfo, url: string): Response | Promise<Response> => {
    const verb = req.method;
    const contentType = req.headers.get("content-type");
    if (verb === "POST") {
      const ct = contentType ?? "";
      const binary = connectBinary(ct);
      if (binary >= 0) return connectUnary(req, m, binary === 1, null);
      const v = grpcWebVariant(ct);
      if (v !== undefined) return grpcWeb(req, m, v);
      metrics.reject(Reject.HttpBadContentType);
      return httpRefusal(
        415,
        Code.InvalidArgument,
        `unsupported content-type ${JSON.stringify(ct)}: use application/proto or application/json (Connect), or application/grpc-web[-text][+proto|+json]`,
        {
          "accept-post":
            "application/proto, application/json, application/grpc-web+proto, application/grpc-web-text+proto",
        },
      );
    }
    if (verb === "GET") {
      if (!m.sideEffectFree) {
        metrics.reject(Reject.HttpMethodNotAllowed);
        return httpRefusal(405, Code.Unimplemented, `${m.name} has side effects: use POST`, {
          allow: "POST",
        });
      }
      const query = new URL(url).searchParams;
      const encoding = query.get("encoding");
      if (encoding !== "proto" && encoding !== "json") {
        metrics.reject(Reject.HttpBadContentType);
        return httpRefusal(
          415,
          Code.InvalidArgument,
          `GET needs encoding=proto or encoding=json, got ${encoding === null ? "none" : JSON.stringify(encoding)}`,
        );
      }
      return connectUnary(req, m, encoding === "proto", query);
    }
    if (verb === "OPTIONS") return preflight(req);
    metrics.reject(Reject.HttpMethodNotAllowed);
    const allow = m.sideEffectFree ? "GET, POST" : "POST";
    return looksLikeGrpcWeb(contentType)
      ? grpcWebErrorResponse(DEFAULT_VARIANT, Code.Unimplemented, `${verb} is not allowed: use ${allow}`, 405)
      : httpRefusal(405, Code.Unimplemented, `${verb} is not allowed: use ${allow}`, { allow });
  };

  const other = async (req: Request, path: string): Promise<Response> => {
    const verb = req.method;
    if (verb === "OPTIONS") return preflight(req);
    const read = verb === "GET" || verb === "HEAD";
    if (read && path === "/health") return probe(200, "ok");
    if (read && path === "/ready") return opts.isReady() ? probe(200, "ready") : probe(503, "not ready");
    if (read && path === "/metrics") {
      const text = await opts.registry.metrics();
      return new Response(text, { headers: { ...TEXT_HEADERS, "content-type": opts.registry.contentType } });
    }
    metrics.reject(Reject.HttpNotFound);
    const message = path.startsWith(SERVICE_PREFIX)
      ? `unknown method ${path.slice(SERVICE_PREFIX.length)} of ${schema.serviceName}`
      : `no route for ${verb} ${path}`;
    if (looksLikeGrpcWeb(req.headers.get("content-type")))
      return grpcWebErrorResponse(DEFAULT_VARIANT, Code.Unimplemented, message, 404);
    return httpRefusal(404, Code.Unimplemented, message);
  };

  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    development: false,
    // Bun's own limit would answer 413 with no protocol body before our handler runs; ours
    // (readBody) answers in Connect or gRPC-web terms, from Content-Length before anything is
    // buffered, and stops reading a body without one as soon as it passes the limit.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    fetch(req) {
      const url = req.url;
      const path = pathOf(url);
      const m = methods.get(path);
      return m !== undefined ? rpc(req, m, url) : other(req, path);
    },
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
    port: server.port ?? opts.port,
    stop(forceAfterMs = 10_000) {
      if (stopping === null) {
        logInternal.flush();
        logHandlerFailure.flush();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const forced = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            logger.warn("http server: requests still in flight at the shutdown deadline; closing them");
            server.stop(true).then(resolve, resolve);
          }, forceAfterMs);
        });
        stopping = Promise.race([server.stop(false), forced]).finally(() => clearTimeout(timer));
      }
      return stopping;
    },
  };
}

function probe(status: number, state: string): Response {
  return new Response(JSON.stringify({ status: state }), { status, headers: PROBE_HEADERS });
}

function deadlineExceeded(): FeatureStoreError {
  return new FeatureStoreError(
    Code.DeadlineExceeded,
    "the request's deadline passed before it could be handled",
  );
}

/** The path of an absolute request URL, without scanning it with the URL parser. */
export function pathOf(url: string): string {
  const slash = url.indexOf("/", url.indexOf("//") + 2);
  if (slash < 0) return "/";
  const q = url.indexOf("?", slash);
  return q < 0 ? url.slice(slash) : url.slice(slash, q);
}

/** Resolves with the body, or rejects DEADLINE_EXCEEDED when the deadline passes first. */
function beforeDeadline(reading: Promise<Uint8Array>, deadline: number): Promise<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(deadlineExceeded()), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([reading, expired]).finally(() => clearTimeout(timer));
}

/**
 * Reads a body stream of unknown length, giving up (cancelling the stream and throwing
 * `tooLarge`) as soon as it passes `limit`: nothing past the limit is kept.
 */
async function readCapped(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  tooLarge: (n: number, limit: number) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge(total, limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return body;
}
