/**
 * What every protocol handler shares, built once per server: the service, metrics, logger and
 * body limit, the two reused writers and their shrink, the store's durability hook, the
 * per-RPC bookkeeping (latency, in-flight gauge) and the rate-limited failure log.
 *
 * The writers are shared by every request of the server: an answer is built in `out` and
 * copied out of it before the handler's first `await` after the service call, so a request
 * resumed later never sees another one's bytes.
 */
import type { Auth } from "../../auth/tokens.ts";
import { isWriteMethod } from "../../codec/frame.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { ProtoReader, ProtoWriter, WireType } from "../../codec/wire.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";
import { type HotMetrics, Reject } from "../../metrics/hot.ts";
import type { FeatureService } from "../../service/service.ts";
import { binaryToJson } from "./json.ts";
import type { MethodInfo } from "./schema.ts";
import type { HttpServerOptions } from "./server.ts";

/** Starting size of the reused writers: room for any single-entity answer without growing. */
const WRITER_BYTES = 64 * 1024;
/**
 * A writer grown past this by a large BatchGet is replaced after the answer, so that one big
 * request does not pin its memory for the life of the process (4 MiB: the default MAX_FRAME_BYTES).
 */
const SHRINK_ABOVE_BYTES = 4 * 1024 * 1024;

/** The options a `HandlerContext` is built from. */
export type HandlerContextOptions = Pick<
  HttpServerOptions,
  "service" | "metrics" | "logger" | "maxBodyBytes" | "sync" | "auth"
>;

/** The state and helpers the Connect and gRPC-web handlers share (one per server). */
export class HandlerContext {
  /** Runs every RPC: request bytes in, response bytes written to a writer. */
  readonly service: FeatureService;
  /** Every RPC is recorded; refusals count by reason. */
  readonly metrics: HotMetrics;
  /** Where client mistakes go (debug) and, through the rate-limited log, our own bugs. */
  readonly logger: Logger;
  /** Largest request message, bytes (MAX_FRAME_BYTES). */
  readonly maxBodyBytes: number;
  /** Tokens and scopes; each handler builds its check from it once (auth.ts `rpcGuard`). */
  readonly auth: Auth | undefined;
  /** Response messages are built here; every answer is copied out before the next await. */
  readonly out = new ProtoWriter(WRITER_BYTES);
  /** JSON requests are encoded to binary here. */
  readonly scratch = new ProtoWriter(WRITER_BYTES);
  /** Milliseconds for latency. Decided once: without metrics, no clock reads. */
  readonly clock: () => number;
  /**
   * What to wait for before answering `m`: the commit of a write (the answer is already copied
   * out of the shared writers), or null for a read, so that a read's answer goes out without a
   * promise and an await more.
   */
  readonly durable: (m: MethodInfo) => Promise<void> | null;
  /**
   * Our bugs are logged at error, rate-limited so that a bug hit by every request cannot flood
   * the log; a client's mistakes at debug only.
   */
  private readonly logInternal: LimitedLog;

  constructor(opts: HandlerContextOptions) {
    this.service = opts.service;
    this.metrics = opts.metrics;
    this.logger = opts.logger;
    this.maxBodyBytes = opts.maxBodyBytes;
    this.auth = opts.auth;
    this.clock = opts.metrics.enabled ? () => performance.now() : () => 0;
    const sync = opts.sync ?? (() => null);
    this.durable = (m: MethodInfo): Promise<void> | null => (isWriteMethod(m.number) ? sync() : null);
    this.logInternal = new LimitedLog(opts.logger, "error", "http request failed");
  }

  /** Starts an RPC on `transport`: counts it in flight and returns its start time for `finish`. */
  begin(transport: number): number {
    const t0 = this.clock();
    this.metrics.inFlight(transport, 1);
    return t0;
  }

  /** Runs in `finally` of every RPC, once its answer has been copied out of the writers. */
  finish(transport: number, m: MethodInfo, code: number, t0: number): void {
    this.shrink();
    this.metrics.request(transport, m.number, code, (this.clock() - t0) / 1000);
    this.metrics.inFlight(transport, -1);
  }

  /** After an answer: a writer grown by one huge message goes back to its usual size. */
  shrink(): void {
    if (this.out.bytes.length > SHRINK_ABOVE_BYTES) this.out.bytes = new Uint8Array(WRITER_BYTES);
    if (this.scratch.bytes.length > SHRINK_ABOVE_BYTES) this.scratch.bytes = new Uint8Array(WRITER_BYTES);
  }

  /** Logs a failed RPC: INTERNAL and UNKNOWN at error (rate-limited), the rest at debug. */
  logFailure(m: MethodInfo, transport: string, err: FeatureStoreError): void {
    if (err.code === Code.Internal || err.code === Code.Unknown)
      this.logInternal.log({
        method: m.name,
        transport,
        code: err.code,
        err: err.cause ?? err,
      });
    else if (this.logger.debugEnabled)
      this.logger.debug("http request refused", {
        method: m.name,
        transport,
        code: err.code,
        message: err.message,
      });
  }

  /** Writes the count of failure lines the rate limit held back (at shutdown). */
  flushLog(): void {
    this.logInternal.flush();
  }

  /** Counts the refusal and returns UNIMPLEMENTED for a compressed message. */
  unsupportedEncoding(header: string, value: string): FeatureStoreError {
    this.metrics.reject(Reject.HttpUnsupportedEncoding);
    return new FeatureStoreError(
      Code.Unimplemented,
      `unsupported ${header} "${value}": this server accepts only identity (uncompressed) messages`,
    );
  }
}

/** Decodes the response message in w[start, pos) to its JSON object; a failure is our bug. */
export function outputJson(m: MethodInfo, w: ProtoWriter, start = 0): Record<string, unknown> {
  try {
    return binaryToJson(m.output, w.bytes, start, w.pos);
  } catch (err) {
    throw new FeatureStoreError(Code.Internal, `cannot encode the ${m.name} response as JSON`, {
      cause: err,
    });
  }
}

/**
 * Results of a BatchGet turned into JSON per slice: converting 1,000 entities of 20 features
 * (a 0.9 MB answer) took ~25 ms plus ~12 ms of JSON.stringify, and one such request held
 * another client's p99 at 120 ms in bench/abuse. Between slices the handler yields to the
 * event loop, so other requests are answered meanwhile.
 */
const JSON_RESULTS_PER_SLICE = 64;

/**
 * The JSON text of the answer in w[start, pos): the same text as `JSON.stringify(outputJson(...))`.
 * A BatchGet answer with many results is converted a slice at a time, yielding between slices
 * (the answer is copied out of the shared writer first); anything else synchronously.
 */
export function jsonAnswer(m: MethodInfo, w: ProtoWriter, start = 0): string | Promise<string> {
  const results = m.output.byNumber[1];
  if (m.name !== "BatchGet" || results?.type.message === undefined)
    return JSON.stringify(outputJson(m, w, start));
  const bytes = w.bytes.slice(start, w.pos);
  const ranges: number[] = [];
  let hits = 0;
  let misses = 0;
  const r = new ProtoReader().reset(bytes);
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      ranges.push(r.fieldStart, r.fieldEnd);
    } else if (tag === ((2 << 3) | WireType.Varint)) hits = r.varint();
    else if (tag === ((3 << 3) | WireType.Varint)) misses = r.varint();
    else r.skip(tag & 7);
  }
  if (ranges.length / 2 <= JSON_RESULTS_PER_SLICE) return JSON.stringify(outputJson(m, w, start));
  return batchGetJson(m, results.type.message, bytes, ranges, hits, misses);
}

async function batchGetJson(
  m: MethodInfo,
  result: NonNullable<MethodInfo["output"]["fields"][number]["type"]["message"]>,
  bytes: Uint8Array,
  ranges: number[],
  hits: number,
  misses: number,
): Promise<string> {
  const parts: string[] = [];
  for (let i = 0; i < ranges.length; i += 2) {
    if (i > 0 && (i / 2) % JSON_RESULTS_PER_SLICE === 0)
      await new Promise((resolve) => setImmediate(resolve));
    try {
      parts.push(JSON.stringify(binaryToJson(result, bytes, ranges[i]!, ranges[i + 1]!)));
    } catch (err) {
      throw new FeatureStoreError(Code.Internal, `cannot encode the ${m.name} response as JSON`, {
        cause: err,
      });
    }
  }
  // Field order and defaults as binaryToJson writes them: results, hits, misses; zeros omitted.
  let text = `{"results":[${parts.join(",")}]`;
  if (hits !== 0) text += `,"hits":${hits}`;
  if (misses !== 0) text += `,"misses":${misses}`;
  return `${text}}`;
}
