/**
 * Options of the TCP client: documented defaults as named constants, and one function that
 * validates everything eagerly so that a bad option fails at construction with a message that
 * names it.
 */
import { invalidArgument } from "../codec/status.ts";

/** Where a server listens. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface ClientOptions {
  /**
   * `"host:port"` strings (`"[::1]:50051"` for IPv6) or `{ host, port }`; at least one.
   * Requests are spread round-robin over every connection of every server.
   */
  servers: (string | Endpoint)[];
  /** Connections per server (default 2, 1 to 256). */
  connectionsPerServer?: number;
  /** Default deadline per call, ms (default 1000). A call may override it. */
  deadlineMs?: number;
  /**
   * Reconnect backoff, ms: the first retry waits `initialMs` (default 50), each failed attempt
   * doubles it up to `maxMs` (default 2000); every delay is scaled by a random factor in [0.5, 1)
   * so that clients restarted together do not reconnect in lockstep.
   */
  reconnect?: { initialMs?: number; maxMs?: number };
  /**
   * Max requests in flight per connection (default 4096, 1 to 65536): the size of its pending
   * arrays. A call goes to the next connection that has room; when every live connection is
   * full it waits (FIFO, within its deadline) for a free slot. At most `maxInFlight` calls per
   * connection may wait; past that a call fails at once with RESOURCE_EXHAUSTED.
   */
  maxInFlight?: number;
  /**
   * Largest answer body accepted, bytes (default 64 MiB). A longer length prefix means a broken
   * or hostile server: the connection is closed and its calls fail INTERNAL. Requests longer
   * than this fail RESOURCE_EXHAUSTED without being sent.
   */
  maxFrameBytes?: number;
  /**
   * Token for a server that requires one (AUTH_TOKENS_FILE): sent in an Authenticate frame at
   * the start of every connection, before any request. Calls fail UNAUTHENTICATED (unknown or
   * revoked token) or PERMISSION_DENIED (a scope the token lacks).
   */
  token?: string;
  /** TLS to a server with TLS_CERT_FILE; absent = plaintext. */
  tls?: ClientTlsOptions;
}

/** TLS of the client's connections; PEM strings. The server's certificate is always verified. */
export interface ClientTlsOptions {
  /** CA(s) that signed the server's certificate (default: the system's). */
  ca?: string;
  /** Client certificate and key, for a server that asks for one (TLS_CA_FILE). */
  cert?: string;
  key?: string;
  /** The name the server's certificate must carry (default: the host connected to). */
  serverName?: string;
}

/** Default connections per server: two, so that one slow answer does not hold up a whole server. */
export const DEFAULT_CONNECTIONS_PER_SERVER = 2;
export const DEFAULT_DEADLINE_MS = 1000;
export const DEFAULT_RECONNECT_INITIAL_MS = 50;
export const DEFAULT_RECONNECT_MAX_MS = 2000;
export const DEFAULT_MAX_IN_FLIGHT = 4096;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/**
 * How often deadlines are checked, ms. A call fails between its deadline and one tick after it
 * (plus any event-loop delay). 5 ms keeps the timer cheap (one interval per client, running only
 * while calls are in flight) and is far below any useful deadline.
 */
export const DEADLINE_TICK_MS = 5;

/** Options after validation, every field filled. */
export interface ResolvedClientOptions {
  servers: Endpoint[];
  connectionsPerServer: number;
  deadlineMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  maxInFlight: number;
  maxFrameBytes: number;
  token: string | null;
  tls: ClientTlsOptions | null;
}

/** Validates `opts` and fills defaults; throws INVALID_ARGUMENT naming the bad option. */
export function resolveClientOptions(opts: ClientOptions): ResolvedClientOptions {
  if (!opts || !Array.isArray(opts.servers) || opts.servers.length === 0)
    throw invalidArgument('servers: give at least one server, e.g. { servers: ["127.0.0.1:50051"] }');
  const servers = opts.servers.map((s, i) => parseEndpoint(s, i));
  const initial = int(
    "reconnect.initialMs",
    opts.reconnect?.initialMs,
    DEFAULT_RECONNECT_INITIAL_MS,
    1,
    3.6e6,
  );
  const max = int(
    "reconnect.maxMs",
    opts.reconnect?.maxMs,
    Math.max(DEFAULT_RECONNECT_MAX_MS, initial),
    1,
    3.6e6,
  );
  if (max < initial)
    throw invalidArgument(`reconnect.maxMs (${max}) must be >= reconnect.initialMs (${initial})`);
  return {
    servers,
    connectionsPerServer: int(
      "connectionsPerServer",
      opts.connectionsPerServer,
      DEFAULT_CONNECTIONS_PER_SERVER,
      1,
      256,
    ),
    deadlineMs: positive("deadlineMs", opts.deadlineMs, DEFAULT_DEADLINE_MS),
    reconnectInitialMs: initial,
    reconnectMaxMs: max,
    maxInFlight: int("maxInFlight", opts.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 1, 65536),
    maxFrameBytes: int("maxFrameBytes", opts.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 1024, 0xffffffff),
    token: token(opts.token),
    tls: opts.tls ?? null,
  };
}

function token(t: string | undefined): string | null {
  if (t === undefined) return null;
  if (typeof t !== "string" || t.length === 0) throw invalidArgument("token must be a non-empty string");
  return t;
}

function int(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max)
    throw invalidArgument(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

/** A deadline: a positive number of ms (fractions allowed; Infinity means none). */
export function positive(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !(v > 0))
    throw invalidArgument(`${name} must be a positive number of milliseconds, got ${v}`);
  return v;
}

function parseEndpoint(s: string | Endpoint, i: number): Endpoint {
  let host: string;
  let port: number;
  if (typeof s === "string") {
    const colon = s.lastIndexOf(":");
    if (colon <= 0) throw invalidArgument(`servers[${i}]: "${s}" is not "host:port"`);
    host = s.slice(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    const p = s.slice(colon + 1);
    port = /^\d+$/.test(p) ? Number(p) : Number.NaN;
  } else if (s && typeof s === "object") {
    host = s.host;
    port = s.port;
  } else {
    throw invalidArgument(`servers[${i}] must be "host:port" or { host, port }`);
  }
  if (typeof host !== "string" || host.length === 0) throw invalidArgument(`servers[${i}]: empty host`);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw invalidArgument(`servers[${i}]: port must be an integer from 1 to 65535`);
  return { host, port };
}
