/**
 * The Connect unary handler: a POST with a binary or JSON body, or a GET of a side-effect-free
 * method with the message in the query (https://connectrpc.com/docs/protocol#unary-request).
 * The router (server.ts) has already chosen the method and the codec.
 *
 * Binary messages go straight to `service.handle`; JSON is translated to binary in the shared
 * scratch writer first, and the answer back to JSON (json.ts).
 *
 * The caller's token is checked first, before any other header or the body (auth.ts): a
 * refusal is a Connect error, 401 UNAUTHENTICATED or 403 PERMISSION_DENIED.
 */
import { Code, FeatureStoreError } from "../../../codec/status.ts";
import { Transport } from "../../../metrics/hot.ts";
import { settleDeferred } from "../../../service/service.ts";
import { isAuthRefusal, type RpcGuard, refusalHeaders, rpcGuard } from "../auth.ts";
import { decodeBase64 } from "../base64.ts";
import { checkDeadline, closeAfter, deadlineAfter, readBody, tooLarge } from "../body.ts";
import { type HandlerContext, jsonAnswer } from "../context.ts";
import { encodingIdentity } from "../headers.ts";
import { jsonBytesToBinary } from "../json.ts";
import type { MethodInfo } from "../schema.ts";
import {
  headerProtocolVersion,
  headerStreamEncoding,
  headerTimeout,
  headerUnaryEncoding,
  protocolVersion,
} from "./headers.ts";
import { connectErrorResponse, JSON_HEADERS, PROTO_HEADERS, parseConnectTimeout } from "./protocol.ts";
import {
  paramBase64,
  paramCompression,
  paramConnectVersion,
  paramMessage,
  queryVersion,
} from "./query-params.ts";

const textEncoder = new TextEncoder();
/** What a bad base64 `message` parameter is called in the INVALID_ARGUMENT message. */
const MESSAGE_PARAM = `the ${paramMessage} parameter`;

/** Answers Connect unary calls; one per server, over the server's `HandlerContext`. */
export class ConnectHandler {
  /** The token check, decided once: a no-op when authentication is off. */
  private readonly guard: RpcGuard;

  constructor(private readonly ctx: HandlerContext) {
    this.guard = rpcGuard(ctx.auth, "connect");
  }

  /**
   * Runs one call and answers it: the response message, or a Connect error (JSON body, the
   * code's HTTP status). `query` is the GET's parameters, null for a POST.
   */
  async unary(
    req: Request,
    m: MethodInfo,
    binary: boolean,
    query: URLSearchParams | null,
  ): Promise<Response> {
    const ctx = this.ctx;
    const t0 = ctx.begin(Transport.Connect);
    let code: number = Code.OK;
    try {
      const h = req.headers;
      this.guard(h, m);
      checkVersion(h, query);
      const encoding = query
        ? query.get(paramCompression)
        : (h.get(headerUnaryEncoding) ?? h.get(headerStreamEncoding));
      if (encoding !== null && encoding !== encodingIdentity)
        throw ctx.unsupportedEncoding(query ? paramCompression : headerUnaryEncoding, encoding);
      const deadline = deadlineAfter(parseConnectTimeout(h.get(headerTimeout)));
      const body = query
        ? this.queryMessage(query)
        : await readBody(req, ctx.maxBodyBytes, deadline, ctx.metrics);
      checkDeadline(deadline);
      let result = this.call(m, binary, body);
      if (result instanceof Promise) result = await result;
      const commit = ctx.durable(m);
      if (commit !== null) await commit;
      return new Response(result, { headers: binary ? PROTO_HEADERS : JSON_HEADERS });
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      ctx.logFailure(m, "connect", e);
      // Only the guard refuses a caller, and it runs before a POST's body is read.
      return connectErrorResponse(e, isAuthRefusal(e) ? refusalHeaders(e, query === null) : closeAfter(e));
    } finally {
      ctx.finish(Transport.Connect, m, code, t0);
    }
  }

  /** The request message of a GET: the `message` parameter, base64 or JSON text. */
  private queryMessage(query: URLSearchParams): Uint8Array {
    const message = query.get(paramMessage) ?? "";
    const body =
      query.get(paramBase64) === "1" ? decodeBase64(message, MESSAGE_PARAM) : textEncoder.encode(message);
    const limit = this.ctx.maxBodyBytes;
    if (body.length > limit) throw tooLarge(this.ctx.metrics, body.length, limit);
    return body;
  }

  /**
   * Runs the method on a message already read: binary straight through, JSON via the
   * mapping. Returns the response body, copied out of the shared writer.
   */
  private call(
    m: MethodInfo,
    binary: boolean,
    body: Uint8Array,
  ): Uint8Array | string | Promise<Uint8Array | string> {
    const { service, out, scratch } = this.ctx;
    if (binary) {
      out.reset();
      const deferred = service.handle(m.number, body, 0, body.length, out);
      if (deferred === undefined) return out.finish();
      return settleDeferred(deferred, out, 0, () => out.finish());
    }
    scratch.reset();
    jsonBytesToBinary(m.input, body, scratch);
    out.reset();
    const deferred = service.handle(m.number, scratch.bytes, 0, scratch.pos, out);
    if (deferred === undefined) return jsonAnswer(m, out);
    return settleDeferred(deferred, out, 0, () => jsonAnswer(m, out));
  }
}

/** A version, when given, must be v1: `connect-protocol-version: 1`, or `connect=v1` on a GET. */
function checkVersion(h: Headers, query: URLSearchParams | null): void {
  const version = query ? query.get(paramConnectVersion) : h.get(headerProtocolVersion);
  if (version !== null && version !== (query ? queryVersion : protocolVersion))
    throw new FeatureStoreError(
      Code.InvalidArgument,
      query
        ? `${paramConnectVersion} must be "${queryVersion}", got "${version}"`
        : `${headerProtocolVersion} must be "${protocolVersion}", got "${version}"`,
    );
}
