/**
 * Native gRPC over HTTP/2 (GRPC_PORT: cleartext with prior knowledge, or TLS with ALPN `h2` when
 * TLS_CERT_FILE is set), on `node:http2`: the same FeatureService as the other transports,
 * request bytes in and answer bytes out, plus the standard health (`grpc.health.v1.Health`) and
 * reflection (`grpc.reflection.v1`, `v1alpha`) services. With AUTH_TOKENS_FILE, every
 * FeatureStoreService call needs `authorization: Bearer <token>` metadata with its method's
 * scope, checked before its request is read; health and reflection stay open (security.ts). gRPC framing is small enough to write here (grpc-wire.ts); `@grpc/grpc-js` served
 * ~3-4.6k calls/s on this machine, and a stock grpc-js server is what bench/e2e compares with.
 *
 * A call: HEADERS (`:path` = /package.Service/Method, `content-type: application/grpc[+proto]`,
 * optional `grpc-timeout`, `grpc-encoding: identity|gzip`), then length-prefixed messages in
 * DATA frames; the answer: HEADERS, messages, then trailers with `grpc-status` and
 * `grpc-message`. Errors before any message are "trailers-only" (status in the one HEADERS
 * frame). The limits: a message over MAX_FRAME_BYTES is RESOURCE_EXHAUSTED from its prefix,
 * before its bytes are kept; bytes held for calls still arriving are bounded server-wide; a
 * deadline that passes before a write is applied means it is not applied.
 */
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { gunzipSync } from "node:zlib";
import type { TlsSource } from "../../auth/tls.ts";
import type { Auth } from "../../auth/tokens.ts";
import { isWriteMethod, METHOD_NAMES, Method } from "../../codec/frame.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { decodeUtf8, ProtoReader, ProtoWriter, WireType } from "../../codec/wire.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";
import { type HotMetrics, Transport } from "../../metrics/hot.ts";
import { type FeatureService, settleDeferred } from "../../service/service.ts";
import {
  FLAG_COMPRESSED,
  headerGrpcAcceptEncoding,
  headerGrpcEncoding,
  headerGrpcMessage,
  headerGrpcStatus,
  headerGrpcTimeout,
  PREFIX_BYTES,
  parseGrpcTimeout,
  percentEncode,
  readU32BE,
  writeU32BE,
} from "../grpc-wire.ts";
import { DescriptorIndex } from "./reflection.ts";
import { type CallGuard, createCallGuard, createHttp2Listener } from "./security.ts";

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  service: FeatureService;
  metrics: HotMetrics;
  logger: Logger;
  /** Largest request message, bytes, after decompression (MAX_FRAME_BYTES). */
  maxMessageBytes: number;
  /** Bytes held for request messages still arriving, over all calls (MAX_CLIENT_MEMORY_BYTES). */
  maxBufferedBytes: number;
  /** The store's durability point: a write is answered once it resolves (see DurableStore.sync). */
  sync?: () => Promise<void> | null;
  /** SERVING while this is true (ready, not draining, the store healthy); the health service reports it. */
  isServing: () => boolean;
  /** Tokens and scopes (AUTH_TOKENS_FILE): `authorization: Bearer` metadata; absent or disabled = open. */
  auth?: Auth;
  /** TLS on this port (TLS_CERT_FILE ...); absent = HTTP/2 cleartext. */
  tls?: TlsSource | null;
}

export interface GrpcServer {
  /** The port listened on, once `listening` resolved (the chosen one when `port` was 0). */
  readonly port: number;
  /** Resolves once the port is bound; rejects if it cannot be. */
  readonly listening: Promise<void>;
  /**
   * Graceful stop: no new connections, GOAWAY to every session, calls in flight finish;
   * sessions still open after `timeoutMs` are destroyed. Resolves when all are closed.
   */
  stop(timeoutMs: number): Promise<void>;
}

const SERVICE = "featurestore.v1.FeatureStoreService";
const HEALTH = "grpc.health.v1.Health";
const CONTENT_TYPE = "application/grpc";
const ACCEPT_ENCODING = "identity,gzip";
/** Concurrent calls per connection; more wait in the client (SETTINGS_MAX_CONCURRENT_STREAMS). */
const MAX_STREAMS = 1000;
/** nghttp2's memory per session, MB: room for a few MAX_FRAME_BYTES messages in flight. */
const SESSION_MEMORY_MB = 64;
/** How often health watchers are told of a change, ms. */
const HEALTH_POLL_MS = 250;
/** HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

/** What a path routes to. */
type Route =
  | { kind: "unary"; method: number }
  | { kind: "health-check" }
  | { kind: "health-list" }
  | { kind: "health-watch" }
  | { kind: "reflection" };

const ROUTES = new Map<string, Route>();
METHOD_NAMES.forEach((name, method) => {
  if (method !== Method.Authenticate) ROUTES.set(`/${SERVICE}/${name}`, { kind: "unary", method });
});
ROUTES.set(`/${HEALTH}/Check`, { kind: "health-check" });
ROUTES.set(`/${HEALTH}/Watch`, { kind: "health-watch" });
ROUTES.set(`/${HEALTH}/List`, { kind: "health-list" });
ROUTES.set("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", { kind: "reflection" });
ROUTES.set("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", { kind: "reflection" });

/** Codes a client causes: answered and counted, logged at debug only. */
const CLIENT_FAULT = new Set<number>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.Unimplemented,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Canceled,
  Code.Unauthenticated,
  Code.PermissionDenied,
]);

/** Starts the gRPC server; `listening` says when the port is bound. */
export function startGrpcServer(opts: GrpcServerOptions): GrpcServer {
  return new GrpcServerCore(opts);
}

/** Reads length-prefixed messages from a stream's DATA, within the limits. */
class MessageReader {
  private chunks: Buffer[] = [];
  private held = 0;
  constructor(
    private readonly core: GrpcServerCore,
    private readonly compressed: boolean,
  ) {}

  /**
   * Adds a chunk; returns the complete messages it finished (decompressed), or throws a
   * FeatureStoreError (a message over the limit from its prefix, before its bytes are kept).
   */
  push(chunk: Buffer): Uint8Array[] {
    this.core.reserve(chunk.length);
    this.chunks.push(chunk);
    this.held += chunk.length;
    const messages: Uint8Array[] = [];
    for (;;) {
      if (this.held < PREFIX_BYTES) return messages;
      const head = this.peek(PREFIX_BYTES);
      const length = readU32BE(head, 1);
      if (length > this.core.maxMessageBytes)
        throw new FeatureStoreError(
          Code.ResourceExhausted,
          `message of ${length} bytes exceeds MAX_FRAME_BYTES (${this.core.maxMessageBytes})`,
        );
      if (this.held < PREFIX_BYTES + length) return messages;
      const all = this.take(PREFIX_BYTES + length);
      messages.push(this.message(all[0]!, all.subarray(PREFIX_BYTES)));
    }
  }

  /** Returns what is held to the server-wide budget. */
  release(): void {
    this.core.unreserve(this.held);
    this.held = 0;
    this.chunks = [];
  }

  /** True when bytes of an unfinished message remain. */
  get partial(): boolean {
    return this.held > 0;
  }

  private message(flags: number, payload: Uint8Array): Uint8Array {
    if ((flags & FLAG_COMPRESSED) === 0) return payload;
    if (!this.compressed)
      throw new FeatureStoreError(
        Code.InvalidArgument,
        "message is flagged compressed, but grpc-encoding is identity",
      );
    try {
      return gunzipSync(payload, { maxOutputLength: this.core.maxMessageBytes });
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
        throw new FeatureStoreError(
          Code.ResourceExhausted,
          `decompressed message exceeds MAX_FRAME_BYTES (${this.core.maxMessageBytes})`,
        );
      throw new FeatureStoreError(
        Code.InvalidArgument,
        `message is not valid gzip: ${(err as Error).message}`,
      );
    }
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, Math.min(this.held, Math.max(n, first.length)));
  }

  private take(n: number): Buffer {
    const whole = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.held);
    const out = whole.subarray(0, n);
    const rest = whole.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.held -= n;
    this.core.unreserve(n);
    return out;
  }
}

class GrpcServerCore implements GrpcServer {
  readonly maxMessageBytes: number;
  private readonly maxBuffered: number;
  private buffered = 0;
  private readonly service: FeatureService;
  private readonly metrics: HotMetrics;
  private readonly logger: Logger;
  private readonly sync: () => Promise<void> | null;
  private readonly isServing: () => boolean;
  private readonly server: http2.Http2Server | http2.Http2SecureServer;
  /** Checks a FeatureStoreService call's token; a no-op without AUTH_TOKENS_FILE. */
  private readonly guard: CallGuard;
  private readonly sessions = new Set<Http2Session>();
  private readonly out = new ProtoWriter(64 * 1024);
  private readonly reflection = DescriptorIndex.load();
  private readonly watchers = new Set<{ stream: ServerHttp2Stream; service: string; last: number }>();
  private watchTimer: ReturnType<typeof setInterval> | null = null;
  private readonly clock: () => number;
  private readonly logInternal: LimitedLog;
  private stopping: Promise<void> | null = null;
  port = 0;
  readonly listening: Promise<void>;

  constructor(opts: GrpcServerOptions) {
    this.service = opts.service;
    this.metrics = opts.metrics;
    this.logger = opts.logger;
    this.maxMessageBytes = opts.maxMessageBytes;
    this.maxBuffered = opts.maxBufferedBytes;
    this.sync = opts.sync ?? (() => null);
    this.isServing = opts.isServing;
    this.clock = opts.metrics.enabled ? () => performance.now() : () => 0;
    this.logInternal = new LimitedLog(opts.logger, "error", "grpc call failed");
    this.guard = createCallGuard(opts.auth);
    this.server = createHttp2Listener(
      { maxSessionMemory: SESSION_MEMORY_MB, maxConcurrentStreams: MAX_STREAMS },
      opts.tls,
      opts.auth,
      opts.logger,
    ).server;
    this.server.on("session", (session: Http2Session) => {
      this.sessions.add(session);
      this.metrics.connection(Transport.Grpc, 1);
      session.on("close", () => {
        this.sessions.delete(session);
        this.metrics.connection(Transport.Grpc, -1);
      });
      // A peer that sends garbage or resets is the peer's problem: no stack, no log flood.
      session.on("error", (err) => {
        if (this.logger.debugEnabled) this.logger.debug("grpc session error", { message: err.message });
      });
    });
    this.server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) =>
      this.onStream(stream, headers),
    );
    this.listening = this.listen(opts.host, opts.port);
  }

  private listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        const address = this.server.address();
        this.port = typeof address === "object" && address !== null ? address.port : port;
        resolve();
      });
    });
  }

  /** Takes `n` bytes of the server-wide budget for messages still arriving. */
  reserve(n: number): void {
    if (this.buffered + n > this.maxBuffered)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the server holds ${this.buffered} bytes of unfinished gRPC messages; the limit is ${this.maxBuffered} (MAX_CLIENT_MEMORY_BYTES)`,
      );
    this.buffered += n;
  }

  unreserve(n: number): void {
    this.buffered -= n;
  }

  // ---- calls --------------------------------------------------------------------------------

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", () => {}); // a reset by the client: the call is simply over
    const path = headers[":path"] ?? "";
    const contentType = headers["content-type"] ?? "";
    if (!contentType.startsWith(CONTENT_TYPE)) {
      // Not gRPC at all: an HTTP answer (the spec's 415), so a browser or curl sees why.
      stream.respond({ ":status": 415, "content-type": "text/plain; charset=utf-8" });
      stream.end(`unsupported content-type "${contentType}": this port speaks gRPC (${CONTENT_TYPE})`);
      return;
    }
    const route = ROUTES.get(path);
    try {
      if (headers[":method"] !== "POST")
        throw new FeatureStoreError(Code.Unimplemented, "gRPC calls are POST");
      if (
        contentType !== CONTENT_TYPE &&
        !contentType.startsWith(`${CONTENT_TYPE}+proto`) &&
        !contentType.startsWith(`${CONTENT_TYPE};`)
      )
        throw new FeatureStoreError(
          Code.Unimplemented,
          `unsupported content-type "${contentType}": use ${CONTENT_TYPE}+proto`,
        );
      if (route === undefined) throw new FeatureStoreError(Code.Unimplemented, `unknown method ${path}`);
      // Credentials first: a refused call is answered before any of its request is read.
      if (route.kind === "unary") this.guard(headers, route.method);
      const encoding = header(headers, headerGrpcEncoding);
      if (encoding !== null && encoding !== "identity" && encoding !== "gzip")
        throw new FeatureStoreError(
          Code.Unimplemented,
          `unsupported grpc-encoding "${encoding}": this server accepts ${ACCEPT_ENCODING}`,
        );
      const timeout = parseGrpcTimeout(header(headers, headerGrpcTimeout));
      const deadline = timeout === undefined ? undefined : Date.now() + timeout;
      const reader = new MessageReader(this, encoding === "gzip");
      switch (route.kind) {
        case "unary":
          this.unary(stream, reader, route.method, deadline);
          break;
        case "health-check":
          this.unaryWith(stream, reader, deadline, (m) => this.healthCheck(m));
          break;
        case "health-list":
          this.unaryWith(stream, reader, deadline, () => this.healthList());
          break;
        case "health-watch":
          this.healthWatch(stream, reader);
          break;
        case "reflection":
          this.reflect(stream, reader);
          break;
      }
    } catch (err) {
      this.fail(stream, route?.kind === "unary" ? route.method : -1, FeatureStoreError.from(err));
    }
  }

  /** A FeatureStoreService method: one message in, the service's answer out. */
  private unary(
    stream: ServerHttp2Stream,
    reader: MessageReader,
    method: number,
    deadline: number | undefined,
  ): void {
    const t0 = this.clock();
    this.metrics.inFlight(Transport.Grpc, 1);
    const done = (code: number) => {
      this.metrics.request(Transport.Grpc, method, code, (this.clock() - t0) / 1000);
      this.metrics.inFlight(Transport.Grpc, -1);
    };
    this.readOne(stream, reader, deadline, method, done, (message) => {
      const out = this.out;
      out.reset();
      out.ensure(PREFIX_BYTES);
      out.pos = PREFIX_BYTES;
      const deferred = this.service.handle(method, message, 0, message.length, out);
      const pending = deferred !== undefined ? null : isWriteMethod(method) ? this.sync() : null;
      const answer =
        deferred === undefined
          ? frameAnswer(out)
          : settleDeferred(deferred, out, PREFIX_BYTES, () => frameAnswer(out));
      if (pending === null && !(answer instanceof Promise)) {
        this.succeed(stream, answer);
        done(Code.OK);
        return;
      }
      Promise.all([answer, pending]).then(
        ([bytes]) => {
          this.succeed(stream, bytes);
          done(Code.OK);
        },
        (err: unknown) => {
          const e = FeatureStoreError.from(err);
          this.fail(stream, method, e);
          done(e.code);
        },
      );
    });
  }

  /** A unary call of the health service. */
  private unaryWith(
    stream: ServerHttp2Stream,
    reader: MessageReader,
    deadline: number | undefined,
    handle: (message: Uint8Array) => Uint8Array,
  ): void {
    this.readOne(
      stream,
      reader,
      deadline,
      -1,
      () => {},
      (message) => this.succeed(stream, handle(message)),
    );
  }

  /**
   * Reads exactly one request message, then runs `handle` on it (before the deadline);
   * answers errors itself and reports the final code to `done` for those.
   */
  private readOne(
    stream: ServerHttp2Stream,
    reader: MessageReader,
    deadline: number | undefined,
    method: number,
    done: (code: number) => void,
    handle: (message: Uint8Array) => void,
  ): void {
    let message: Uint8Array | null = null;
    let failed = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const fail = (e: FeatureStoreError) => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      reader.release();
      this.fail(stream, method, e);
      done(e.code);
    };
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        fail(deadlineExceeded());
        return;
      }
      timer = setTimeout(() => fail(deadlineExceeded()), left);
    }
    stream.on("data", (chunk: Buffer) => {
      if (failed) return;
      try {
        for (const m of reader.push(chunk)) {
          if (message !== null)
            throw new FeatureStoreError(Code.InvalidArgument, "a unary call carries exactly one message");
          message = m;
        }
      } catch (err) {
        fail(FeatureStoreError.from(err));
      }
    });
    stream.on("end", () => {
      if (failed) return;
      clearTimeout(timer);
      if (reader.partial)
        return fail(new FeatureStoreError(Code.InvalidArgument, "the request ended inside a message"));
      reader.release();
      if (message === null)
        return fail(new FeatureStoreError(Code.InvalidArgument, "the request carries no message"));
      if (deadline !== undefined && Date.now() >= deadline) return fail(deadlineExceeded());
      try {
        handle(message);
      } catch (err) {
        fail(FeatureStoreError.from(err));
      }
    });
    stream.on("close", () => {
      clearTimeout(timer);
      reader.release();
    });
  }

  private succeed(stream: ServerHttp2Stream, answer: Uint8Array): void {
    if (stream.destroyed || stream.closed) return;
    stream.respond(
      { ":status": 200, "content-type": CONTENT_TYPE, [headerGrpcAcceptEncoding]: ACCEPT_ENCODING },
      { waitForTrailers: true },
    );
    stream.once("wantTrailers", () => stream.sendTrailers({ [headerGrpcStatus]: "0" }));
    stream.end(answer);
  }

  /** A trailers-only error answer; the rest of the request, if any, is not read. */
  private fail(stream: ServerHttp2Stream, method: number, e: FeatureStoreError): void {
    if (CLIENT_FAULT.has(e.code)) {
      if (this.logger.debugEnabled)
        this.logger.debug("grpc call refused", {
          method: METHOD_NAMES[method] ?? method,
          code: e.code,
          message: e.message,
        });
    } else if (e.code === Code.Internal || e.code === Code.Unknown) {
      this.logInternal.log({ method: METHOD_NAMES[method] ?? method, code: e.code, err: e.cause ?? e });
    }
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const headers: Record<string, string | number> = {
      ":status": 200,
      "content-type": CONTENT_TYPE,
      [headerGrpcAcceptEncoding]: ACCEPT_ENCODING,
      [headerGrpcStatus]: String(e.code),
    };
    if (e.message) headers[headerGrpcMessage] = percentEncode(e.message);
    stream.respond(headers, { endStream: true });
    // Tell the client to stop sending whatever is left of the request.
    stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }

  // ---- health -------------------------------------------------------------------------------

  private status(service: string): number {
    if (service !== "" && service !== SERVICE && service !== HEALTH) return SERVICE_UNKNOWN;
    return this.isServing() ? SERVING : NOT_SERVING;
  }

  private healthCheck(message: Uint8Array): Uint8Array {
    const service = healthService(message);
    const status = this.status(service);
    if (status === SERVICE_UNKNOWN)
      throw new FeatureStoreError(Code.NotFound, `unknown service "${service}"`);
    return healthAnswer(status);
  }

  /** HealthListResponse { map<string, HealthCheckResponse> statuses = 1 }: every service this server reports. */
  private healthList(): Uint8Array {
    const out = new ProtoWriter(128);
    out.pos = PREFIX_BYTES;
    for (const name of ["", SERVICE, HEALTH]) {
      const entry = out.beginLength(1);
      out.stringField(1, name);
      const value = out.beginLength(2);
      out.tag(1, WireType.Varint);
      out.varint(this.status(name));
      out.endLength(value);
      out.endLength(entry);
    }
    const answer = out.finish();
    writeU32BE(answer, 1, answer.length - PREFIX_BYTES);
    return answer;
  }

  /** Server streaming: the status now, then each change, until the client cancels. */
  private healthWatch(stream: ServerHttp2Stream, reader: MessageReader): void {
    this.readOne(
      stream,
      reader,
      undefined,
      -1,
      () => {},
      (message) => {
        const service = healthService(message);
        const watcher = { stream, service, last: this.status(service) };
        stream.respond(
          { ":status": 200, "content-type": CONTENT_TYPE, [headerGrpcAcceptEncoding]: ACCEPT_ENCODING },
          { waitForTrailers: true },
        );
        stream.once("wantTrailers", () =>
          stream.sendTrailers({
            [headerGrpcStatus]: String(Code.Unavailable),
            [headerGrpcMessage]: "the server is stopping",
          }),
        );
        stream.write(healthAnswer(watcher.last));
        this.watchers.add(watcher);
        stream.on("close", () => this.watchers.delete(watcher));
        if (this.watchTimer === null) {
          this.watchTimer = setInterval(() => this.pollHealth(), HEALTH_POLL_MS);
          this.watchTimer.unref();
        }
      },
    );
  }

  private pollHealth(): void {
    for (const w of this.watchers) {
      const now = this.status(w.service);
      if (now === w.last) continue;
      w.last = now;
      if (!w.stream.destroyed) w.stream.write(healthAnswer(now));
    }
    if (this.watchers.size === 0 && this.watchTimer !== null) {
      clearInterval(this.watchTimer);
      this.watchTimer = null;
    }
  }

  // ---- reflection ---------------------------------------------------------------------------

  /** Bidirectional: one response per request message, trailers when the client is done. */
  private reflect(stream: ServerHttp2Stream, reader: MessageReader): void {
    stream.respond(
      { ":status": 200, "content-type": CONTENT_TYPE, [headerGrpcAcceptEncoding]: ACCEPT_ENCODING },
      { waitForTrailers: true },
    );
    let status = "0";
    let statusMessage = "";
    stream.once("wantTrailers", () =>
      stream.sendTrailers(
        statusMessage
          ? { [headerGrpcStatus]: status, [headerGrpcMessage]: percentEncode(statusMessage) }
          : { [headerGrpcStatus]: status },
      ),
    );
    stream.on("data", (chunk: Buffer) => {
      if (status !== "0") return;
      try {
        for (const m of reader.push(chunk)) {
          const out = new ProtoWriter(1024);
          out.pos = PREFIX_BYTES;
          this.reflection.answer(m, 0, m.length, out);
          const answer = out.finish();
          writeU32BE(answer, 1, answer.length - PREFIX_BYTES);
          stream.write(answer);
        }
      } catch (err) {
        const e = FeatureStoreError.from(err);
        status = String(e.code);
        statusMessage = e.message;
        reader.release();
        stream.end();
      }
    });
    stream.on("end", () => {
      reader.release();
      if (!stream.writableEnded) stream.end();
    });
    stream.on("close", () => reader.release());
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  stop(timeoutMs: number): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    // Watchers hear NOT_SERVING (the server is draining) before their streams end.
    this.pollHealth();
    if (this.watchTimer !== null) clearInterval(this.watchTimer);
    this.watchTimer = null;
    for (const w of this.watchers) if (!w.stream.destroyed) w.stream.end();
    this.stopping = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (this.sessions.size > 0)
          this.logger.warn("grpc: calls still in flight at the shutdown deadline; closing them", {
            sessions: this.sessions.size,
          });
        for (const s of this.sessions) s.destroy();
      }, timeoutMs);
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      // GOAWAY: no new calls on existing connections; the ones in flight finish.
      for (const s of this.sessions) s.close();
    });
    return this.stopping;
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | null {
  const v = headers[name];
  return v === undefined ? null : Array.isArray(v) ? v.join(",") : v;
}

function deadlineExceeded(): FeatureStoreError {
  return new FeatureStoreError(
    Code.DeadlineExceeded,
    "the call's deadline passed before it could be handled",
  );
}

/** HealthCheckRequest.service (field 1); malformed bytes are INVALID_ARGUMENT. */
function healthService(message: Uint8Array): string {
  const r = new ProtoReader().reset(message);
  let service = "";
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      service = decodeUtf8(message, r.fieldStart, r.fieldEnd);
    } else r.skip(tag & 7);
  }
  return service;
}

/** A length-prefixed HealthCheckResponse { status = 1 }. */
function healthAnswer(status: number): Uint8Array {
  return new Uint8Array([0, 0, 0, 0, 2, (1 << 3) | WireType.Varint, status]);
}

/** The message in `out` after its prefix, copied out with the prefix filled in (uncompressed). */
function frameAnswer(out: ProtoWriter): Uint8Array {
  const answer = out.finish();
  answer[0] = 0;
  writeU32BE(answer, 1, answer.length - PREFIX_BYTES);
  return answer;
}
