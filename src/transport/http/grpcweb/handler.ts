/**
 * The gRPC-web unary handler: one length-prefixed message in (binary, base64 text, or +json),
 * one data frame and the OK trailers frame out, or a trailers-only error answer (framing in
 * protocol.ts). The router (server.ts) has already chosen the method and the variant.
 *
 * The caller's token is checked first, before any other header or the body (auth.ts): a
 * refusal is a trailers-only answer with grpc-status 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED).
 */
import { Code, FeatureStoreError } from "../../../codec/status.ts";
import { Transport } from "../../../metrics/hot.ts";
import { type Deferred, settleDeferred } from "../../../service/service.ts";
import { type RpcGuard, rpcGuard } from "../auth.ts";
import { decodeBase64Chunks } from "../base64.ts";
import { CLOSE, checkDeadline, closeAfter, deadlineAfter, readBody, tooLarge } from "../body.ts";
import { type HandlerContext, outputJson } from "../context.ts";
import { encodingIdentity } from "../headers.ts";
import { jsonBytesToBinary } from "../json.ts";
import type { MethodInfo } from "../schema.ts";
import { headerGrpcEncoding, headerGrpcTimeout } from "./headers.ts";
import {
  FLAG_COMPRESSED,
  FLAG_TRAILERS,
  type GrpcWebVariant,
  grpcWebErrorResponse,
  OK_TRAILERS,
  PREFIX_BYTES,
  parseGrpcTimeout,
  readU32BE,
  writeU32BE,
} from "./protocol.ts";

const textEncoder = new TextEncoder();

/** Answers gRPC-web unary calls; one per server, over the server's `HandlerContext`. */
export class GrpcWebHandler {
  /** Largest binary body, bytes: one message of at most maxBodyBytes and its prefix. */
  private readonly limit: number;
  /** Largest gRPC-web-text body, bytes: the base64 of `limit`, + slack for chunk padding and newlines. */
  private readonly textLimit: number;
  /** The token check, decided once: a no-op when authentication is off. */
  private readonly guard: RpcGuard;

  constructor(private readonly ctx: HandlerContext) {
    this.guard = rpcGuard(ctx.auth, "grpc-web");
    this.limit = ctx.maxBodyBytes + PREFIX_BYTES;
    this.textLimit = Math.ceil(this.limit / 3) * 4 + 64;
  }

  /**
   * Runs one call and answers it, HTTP 200 either way: the message and OK trailers, or a
   * trailers-only error answer.
   */
  async unary(req: Request, m: MethodInfo, v: GrpcWebVariant): Promise<Response> {
    const ctx = this.ctx;
    const t0 = ctx.begin(Transport.GrpcWeb);
    let code: number = Code.OK;
    try {
      const h = req.headers;
      this.guard(h, m);
      const encoding = h.get(headerGrpcEncoding);
      if (encoding !== null && encoding !== encodingIdentity)
        throw ctx.unsupportedEncoding(headerGrpcEncoding, encoding);
      const deadline = deadlineAfter(parseGrpcTimeout(h.get(headerGrpcTimeout)));
      let body = await readBody(req, v.text ? this.textLimit : this.limit, deadline, ctx.metrics);
      if (v.text) body = decodeBase64Chunks(body, "gRPC-web-text body");
      checkDeadline(deadline);
      const len = this.messageLength(body);
      let answer = this.call(m, v, body, len);
      if (answer instanceof Promise) answer = await answer;
      const commit = ctx.durable(m);
      if (commit !== null) await commit;
      return new Response(answer, { headers: v.headers });
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      ctx.logFailure(m, "grpc-web", e);
      // Only the guard answers UNAUTHENTICATED, before the body is read: see auth.ts.
      return grpcWebErrorResponse(
        v,
        e.code,
        e.message,
        200,
        e.code === Code.Unauthenticated ? CLOSE : closeAfter(e),
      );
    } finally {
      ctx.finish(Transport.GrpcWeb, m, code, t0);
    }
  }

  /**
   * Checks that the body is exactly one uncompressed length-prefixed message (flags, u32
   * big-endian length, message) and returns the message's length.
   */
  private messageLength(body: Uint8Array): number {
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
        `gRPC-web message is flagged compressed, but ${headerGrpcEncoding} is ${encodingIdentity}`,
      );
    const len = readU32BE(body, 1);
    if (len > this.ctx.maxBodyBytes) throw tooLarge(this.ctx.metrics, len, this.ctx.maxBodyBytes);
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
    return len;
  }

  /**
   * Runs the method on the message body[5, 5 + len) and returns the answer, copied out of the
   * shared writer: the data frame (its prefix filled in once its length is known), then the
   * OK trailers; base64 for gRPC-web-text.
   */
  private call(
    m: MethodInfo,
    v: GrpcWebVariant,
    body: Uint8Array,
    len: number,
  ): Uint8Array | string | Promise<Uint8Array | string> {
    const { service, out, scratch } = this.ctx;
    out.reset();
    out.ensure(PREFIX_BYTES);
    out.pos = PREFIX_BYTES;
    let deferred: Deferred | undefined;
    if (v.json) {
      scratch.reset();
      jsonBytesToBinary(m.input, body.subarray(PREFIX_BYTES), scratch);
      deferred = service.handle(m.number, scratch.bytes, 0, scratch.pos, out);
    } else {
      deferred = service.handle(m.number, body, PREFIX_BYTES, PREFIX_BYTES + len, out);
    }
    if (deferred === undefined) return this.frame(m, v);
    return settleDeferred(deferred, out, PREFIX_BYTES, () => this.frame(m, v));
  }

  /** The answer message in `out` after its prefix, as the response body: framed, trailers after. */
  private frame(m: MethodInfo, v: GrpcWebVariant): Uint8Array | string {
    const out = this.ctx.out;
    if (v.json) {
      const json = textEncoder.encode(JSON.stringify(outputJson(m, out, PREFIX_BYTES)));
      out.pos = PREFIX_BYTES;
      out.raw(json);
    }
    out.bytes[0] = 0;
    writeU32BE(out.bytes, 1, out.pos - PREFIX_BYTES);
    out.raw(OK_TRAILERS);
    return v.text ? out.view().toBase64() : out.finish();
  }
}
