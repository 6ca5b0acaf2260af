/**
 * The Connect protocol, unary only (https://connectrpc.com/docs/protocol): content types,
 * the code-to-HTTP-status table, `connect-timeout-ms`, and error responses. The rules follow
 * what connect-es servers do (packages/connect/src/protocol-connect/).
 */
import { CODE_NAMES, Code, FeatureStoreError } from "../../../codec/status.ts";
import { headerContentType } from "../headers.ts";
import { headerTimeout } from "./headers.ts";

/** `application/proto` and `application/json` (charset utf-8 allowed); streaming types are not unary. */
const UNARY_CONTENT_TYPE = /^application\/(?:(proto)|json(?:;\s*charset=["']?utf-?8["']?)?)\s*$/i;

/** 1 for `application/proto`, 0 for `application/json`, -1 for anything else. */
export function connectBinary(contentType: string): number {
  const m = UNARY_CONTENT_TYPE.exec(contentType);
  return m === null ? -1 : m[1] !== undefined ? 1 : 0;
}

/** Headers of a binary answer, built once. */
export const PROTO_HEADERS = { [headerContentType]: "application/proto" };
/** Headers of a JSON answer (and of every error answer), built once. */
export const JSON_HEADERS = { [headerContentType]: "application/json" };

/** The HTTP status the Connect spec maps each code to (https://connectrpc.com/docs/protocol#error-codes). */
const HTTP_STATUS: readonly number[] = (() => {
  const s: number[] = [];
  s[Code.OK] = 200;
  s[Code.Canceled] = 499;
  s[Code.Unknown] = 500;
  s[Code.InvalidArgument] = 400;
  s[Code.DeadlineExceeded] = 504;
  s[Code.NotFound] = 404;
  s[Code.AlreadyExists] = 409;
  s[Code.PermissionDenied] = 403;
  s[Code.ResourceExhausted] = 429;
  s[Code.FailedPrecondition] = 400;
  s[Code.Aborted] = 409;
  s[Code.OutOfRange] = 400;
  s[Code.Unimplemented] = 501;
  s[Code.Internal] = 500;
  s[Code.Unavailable] = 503;
  s[Code.DataLoss] = 500;
  s[Code.Unauthenticated] = 401;
  return s;
})();

/** The HTTP status of a Connect error answer with `code`; 500 for a code outside the table. */
export function httpStatusOf(code: number): number {
  return HTTP_STATUS[code] ?? 500;
}

/**
 * `connect-timeout-ms`: up to 10 digits of milliseconds. Returns undefined when absent; a
 * malformed value is INVALID_ARGUMENT (as connect-es).
 */
export function parseConnectTimeout(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^\d{1,10}$/.test(value))
    throw new FeatureStoreError(
      Code.InvalidArgument,
      `invalid ${headerTimeout} value: ${JSON.stringify(value)}`,
    );
  return Number(value);
}

/** The Connect error body: `{"code": "invalid_argument", "message": "..."}`. */
export function connectErrorBody(code: number, message: string): string {
  return JSON.stringify({ code: CODE_NAMES[code] ?? "unknown", message });
}

/** A Connect unary error: the mapped HTTP status, a JSON body, `content-type: application/json`. */
export function connectErrorResponse(
  err: FeatureStoreError,
  extraHeaders?: Record<string, string>,
): Response {
  return new Response(connectErrorBody(err.code, err.message), {
    status: httpStatusOf(err.code),
    headers: extraHeaders ? { ...JSON_HEADERS, ...extraHeaders } : JSON_HEADERS,
  });
}

/**
 * A refusal at the HTTP level, before any RPC: 404 unknown procedure, 405 wrong HTTP method,
 * 415 unsupported media type. connect-es answers these with a bare status; the JSON body is
 * added for people reading it with curl, with the code a Connect client infers from the status.
 */
export function httpRefusal(
  status: number,
  code: number,
  message: string,
  headers?: Record<string, string>,
): Response {
  return new Response(connectErrorBody(code, message), {
    status,
    headers: headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS,
  });
}
