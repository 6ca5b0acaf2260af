/**
 * Authentication on the HTTP port: every Connect and gRPC-web RPC presents
 * `authorization: Bearer <token>`, checked before the method runs (and before its body is
 * read); /metrics may require any valid token (METRICS_AUTH). The tokens, scopes, caching and
 * failure counting live in src/auth/tokens.ts; this file only reads the header and decides,
 * once per server, whether there is anything to check.
 *
 * With authentication off the check is a function that does nothing, chosen at construction,
 * so a request pays no branch on options. With it on, a request pays one header read and one
 * Map lookup (`Auth` caches the principal of each token string).
 */
import type { Auth } from "../../auth/tokens.ts";
import { Code, type FeatureStoreError } from "../../codec/status.ts";
import { CLOSE } from "./body.ts";
import { headerAuthorization, headerWwwAuthenticate } from "./headers.ts";
import type { MethodInfo } from "./schema.ts";

/** Throws UNAUTHENTICATED or PERMISSION_DENIED unless the request may call `m`. */
export type RpcGuard = (headers: Headers, m: MethodInfo) => void;

/** Throws UNAUTHENTICATED unless the request carries a valid token (any scope). */
export type TokenGuard = (headers: Headers) => void;

const open = (): void => {};

/**
 * The check every RPC of `transport` ("connect", "grpc-web": the label of the failure log)
 * runs first. A no-op when `auth` is absent or has no tokens file.
 */
export function rpcGuard(auth: Auth | undefined, transport: string): RpcGuard {
  if (auth === undefined || !auth.enabled) return open;
  return (headers, m) => {
    auth.authorize(auth.fromHeader(headers.get(headerAuthorization), transport), m.number, transport);
  };
}

/**
 * The check of /metrics: any valid token when `required` (METRICS_AUTH), else none. Throws
 * when `required` but `auth` checks nothing, since that would leave /metrics open while the
 * operator asked for it closed.
 */
export function metricsGuard(auth: Auth | undefined, required: boolean): TokenGuard {
  if (!required) return open;
  if (auth === undefined || !auth.enabled)
    throw new Error("metricsAuth needs an enabled auth (METRICS_AUTH=true needs AUTH_TOKENS_FILE)");
  return (headers) => {
    auth.fromHeader(headers.get(headerAuthorization), "metrics");
  };
}

const UNAUTHENTICATED_HEADERS = { [headerWwwAuthenticate]: "Bearer" };
const UNAUTHENTICATED_CLOSE = { ...UNAUTHENTICATED_HEADERS, ...CLOSE };

/** True for the codes an authentication or authorisation refusal carries. */
export function isAuthRefusal(err: FeatureStoreError): boolean {
  return err.code === Code.Unauthenticated || err.code === Code.PermissionDenied;
}

/**
 * The extra headers of an answer refusing a caller with `err` (`isAuthRefusal`): on
 * UNAUTHENTICATED, `www-authenticate: Bearer`, and `connection: close` when a request body is
 * still unread on the wire (the check runs before the body is read), so that a caller without
 * a valid token cannot keep the server reading and discarding bodies on one connection. A
 * known caller refused PERMISSION_DENIED keeps its connection.
 */
export function refusalHeaders(
  err: FeatureStoreError,
  bodyUnread: boolean,
): Record<string, string> | undefined {
  if (err.code !== Code.Unauthenticated) return undefined;
  return bodyUnread ? UNAUTHENTICATED_CLOSE : UNAUTHENTICATED_HEADERS;
}
