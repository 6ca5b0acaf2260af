/**
 * The gRPC port's part of authentication and TLS (issue 13): the check of a call's
 * `authorization: Bearer <token>` metadata against its method's scope, and the HTTP/2 server,
 * cleartext or TLS, whose certificate is swapped when TlsSource reloads and whose refused
 * handshakes are counted and logged (rate-limited) with what the client should do instead.
 */
import http2, { type IncomingHttpHeaders } from "node:http2";
import type { TLSSocket } from "node:tls";
import type { TlsMaterial, TlsSource } from "../../auth/tls.ts";
import { type Auth, AuthFailure } from "../../auth/tokens.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";

/** The transport's name in auth failure logs and metrics. */
export const TRANSPORT = "grpc";
/** The metadata key of per-call credentials (grpc-js call credentials, buf curl -H). */
export const headerAuthorization = "authorization";

/**
 * Checks a FeatureStoreService call's credentials before any of its request is read: throws
 * FeatureStoreError UNAUTHENTICATED (no, malformed, unknown or revoked token) or
 * PERMISSION_DENIED (a known token without the method's scope).
 */
export type CallGuard = (headers: IncomingHttpHeaders, method: number) => void;

/** The guard when no tokens file is configured: every call is allowed, at the cost of one empty call. */
export const openGuard: CallGuard = () => {};

/** The guard for `auth`, decided once: `openGuard` when authentication is off. */
export function createCallGuard(auth: Auth | undefined): CallGuard {
  if (auth === undefined || !auth.enabled) return openGuard;
  return (headers, method) => {
    const v = headers[headerAuthorization];
    const value = Array.isArray(v) ? v.join(",") : v;
    auth.authorize(auth.fromHeader(value, TRANSPORT), method, TRANSPORT);
  };
}

/** HTTP/2 settings that are the same with and without TLS. */
export interface Http2Limits {
  /** nghttp2's memory per session, MB. */
  maxSessionMemory: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS. */
  maxConcurrentStreams: number;
}

/** The listening server and, when TLS is on, the same server typed as secure. */
export interface Http2Listener {
  server: http2.Http2Server | http2.Http2SecureServer;
  secure: http2.Http2SecureServer | null;
}

/**
 * An HTTP/2 server: cleartext (prior knowledge) without `tls`; with it, TLS with ALPN `h2` only,
 * client certificates required when `tls.mutual`, the certificate swapped on every reload
 * (connections open keep the one they began with), and refused handshakes reported by
 * `HandshakeFailures`.
 */
export function createHttp2Listener(
  limits: Http2Limits,
  tls: TlsSource | null | undefined,
  auth: Auth | undefined,
  logger: Logger,
): Http2Listener {
  const settings = { maxConcurrentStreams: limits.maxConcurrentStreams };
  if (tls === null || tls === undefined) {
    const server = http2.createServer({ maxSessionMemory: limits.maxSessionMemory, settings });
    return { server, secure: null };
  }
  const mutual = tls.mutual;
  const secure = http2.createSecureServer({
    ...material(tls.current),
    requestCert: mutual,
    rejectUnauthorized: mutual,
    allowHTTP1: false,
    ALPNProtocols: ["h2"],
    maxSessionMemory: limits.maxSessionMemory,
    settings,
  });
  tls.onChange((m) => {
    try {
      secure.setSecureContext(material(m));
    } catch (err) {
      logger.error("grpc: the reloaded TLS certificate was refused; the previous one stays in use", {
        err: (err as Error).message,
      });
    }
  });
  const failures = new HandshakeFailures(logger, auth, mutual);
  secure.on("tlsClientError", (err: Error, socket: TLSSocket) => failures.report(err, socket));
  return { server: secure, secure };
}

function material(m: TlsMaterial): { cert: string; key: string; ca?: string } {
  return m.ca === undefined ? { cert: m.cert, key: m.key } : { cert: m.cert, key: m.key, ca: m.ca };
}

/** What a failed handshake was, from the error's code. */
export const Handshake = {
  Plaintext: 0,
  ClientCertificate: 1,
  /** The client does not trust this server's certificate (its alert). */
  ServerCertificate: 2,
  PeerGone: 3,
  Other: 4,
} as const;

/**
 * BoringSSL's codes for a first record that is not TLS: `PRI * HTTP/2.0` (h2c prior knowledge)
 * and most other bytes give WRONG_VERSION_NUMBER, an HTTP/1 request line HTTP_REQUEST.
 */
const NOT_TLS = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_HTTPS_PROXY_REQUEST",
]);
/** No certificate sent while one is required; or one that fails verification. */
const NO_CERTIFICATE = new Set([
  "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE",
  "ERR_SSL_CERTIFICATE_VERIFY_FAILED",
]);
/** Alerts a client sends when it does not accept the server's certificate. */
const CLIENT_DISTRUSTS = /^ERR_SSL_(SSLV3|TLSV1)_ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN)$/;

/**
 * Classifies a `tlsClientError`. Verification failures of the client's certificate carry
 * OpenSSL's X509 names (UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED...), without the
 * `ERR_` prefix of library errors; they only happen when client certificates are asked for.
 */
export function classifyHandshakeError(err: Error, mutual: boolean): number {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string") return Handshake.Other;
  if (NOT_TLS.has(code)) return Handshake.Plaintext;
  if (mutual && (NO_CERTIFICATE.has(code) || !code.startsWith("ERR_"))) return Handshake.ClientCertificate;
  if (CLIENT_DISTRUSTS.test(code)) return Handshake.ServerCertificate;
  if (code === "ECONNRESET" || code === "EPIPE") return Handshake.PeerGone;
  return Handshake.Other;
}

/**
 * Refused TLS handshakes on the gRPC port: a plaintext client and other failures are logged
 * (rate-limited, with the remote address and what to do), a refused client certificate is an
 * authentication failure (`auth.fail(AuthFailure.Tls, "grpc", ...)`: counted in
 * featurestore_auth_failures_total{reason="tls"} and logged by Auth, with the reason at debug).
 * A peer that hung up without an alert (a port scan, a Bun or Node client that does not trust
 * this certificate) is logged at debug only.
 */
export class HandshakeFailures {
  private readonly plaintext: LimitedLog;
  private readonly other: LimitedLog;
  private readonly certificate: LimitedLog | null;

  constructor(
    private readonly logger: Logger,
    private readonly auth: Auth | undefined,
    private readonly mutual: boolean,
  ) {
    this.plaintext = new LimitedLog(logger, "warn", "grpc: plaintext connection refused on the TLS port");
    this.other = new LimitedLog(logger, "warn", "grpc: TLS handshake failed");
    this.certificate =
      auth === undefined ? new LimitedLog(logger, "warn", "grpc: client certificate refused") : null;
  }

  report(err: Error, socket: TLSSocket | undefined): void {
    const remote = socket?.remoteAddress;
    const code = (err as { code?: unknown }).code;
    switch (classifyHandshakeError(err, this.mutual)) {
      case Handshake.Plaintext:
        this.plaintext.log({
          remote,
          hint: "this port speaks gRPC over TLS only: connect with TLS (grpc-js credentials.createSsl, buf curl https://)",
        });
        break;
      case Handshake.ClientCertificate: {
        const message = `client certificate refused (${code}): present one signed by TLS_CA_FILE`;
        if (this.auth !== undefined) {
          this.auth.fail(AuthFailure.Tls, TRANSPORT, message);
          if (this.logger.debugEnabled) this.logger.debug(`grpc: ${message}`, { remote });
        } else this.certificate?.log({ remote, code });
        break;
      }
      case Handshake.ServerCertificate:
        this.other.log({
          remote,
          code,
          hint: "the client does not trust this server's certificate (TLS_CERT_FILE): give it the CA that signed it",
        });
        break;
      case Handshake.PeerGone:
        if (this.logger.debugEnabled)
          this.logger.debug("grpc: TLS handshake ended by the peer", { remote, code });
        break;
      default:
        this.other.log({ remote, code, message: err.message });
    }
  }
}
