/**
 * The connection flags every command shares (`--server`, `--token`, TLS, `--timeout`), each with
 * its environment variable, and the client they make.
 */
import { readFileSync } from "node:fs";
import { type ClientTlsOptions, FeatureStoreClient } from "../client/index.ts";
import { usage } from "./errors.ts";

/** Default server: the server's default TCP_PORT on this machine. */
export const DEFAULT_SERVER = "127.0.0.1:50051";
/** Default deadline of one call, ms: long enough for a durable write under load. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/** The global flags as commander hands them over. */
export interface ConnectionFlags {
  server: string;
  token?: string;
  tls?: boolean;
  cacert?: string;
  cert?: string;
  key?: string;
  tlsServerName?: string;
  timeout: string;
}

/** `--timeout` in ms, validated. */
export function timeoutMs(flags: ConnectionFlags): number {
  const ms = Number(flags.timeout);
  if (!(ms > 0)) throw usage(`--timeout must be a positive number of milliseconds, got "${flags.timeout}"`);
  return ms;
}

/** TLS options from the flags: any of --tls, --cacert, --cert, --key turns TLS on. */
export function tlsOptions(flags: ConnectionFlags): ClientTlsOptions | undefined {
  if (!flags.tls && !flags.cacert && !flags.cert && !flags.key) return undefined;
  if (Boolean(flags.cert) !== Boolean(flags.key)) throw usage("--cert and --key go together (mTLS)");
  const tls: ClientTlsOptions = {};
  if (flags.cacert) tls.ca = readPem("--cacert", flags.cacert);
  if (flags.cert) tls.cert = readPem("--cert", flags.cert);
  if (flags.key) tls.key = readPem("--key", flags.key);
  if (flags.tlsServerName) tls.serverName = flags.tlsServerName;
  return tls;
}

function readPem(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw usage(`${flag} ${path}: ${(err as Error).message}`);
  }
}

/**
 * A client of `connections` connections to `--server`. Authentication and TLS failures surface
 * on the first call (the server answers the Authenticate frame then), as UNAUTHENTICATED.
 */
export function connect(flags: ConnectionFlags, connections = 1): Promise<FeatureStoreClient> {
  const deadlineMs = timeoutMs(flags);
  if (!/^(\[[^\]]+\]|[^:]+):\d+$/.test(flags.server))
    throw usage(`--server must be host:port (or FEATURESTORE_SERVER), got "${flags.server}"`);
  return FeatureStoreClient.connect({
    servers: [flags.server],
    connectionsPerServer: connections,
    deadlineMs,
    token: flags.token || undefined,
    tls: tlsOptions(flags),
    reconnect: { initialMs: 50, maxMs: 1000 },
  });
}
