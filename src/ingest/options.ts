/**
 * Options of the stream consumer: documented defaults as named constants and one function that
 * validates everything eagerly, so that a bad option fails at start with a message naming it.
 */
import type { FeatureStoreClient } from "../client/index.ts";
import type { ClientOptions } from "../client/options.ts";
import type { Logger } from "../log/index.ts";

export interface IngestOptions {
  /** Redis holding the stream, `redis://[user:password@]host:port[/db]` or `rediss://` (standalone). */
  redisUrl: string;
  /** Key of the stream. */
  stream: string;
  /** Consumer group; created (with MKSTREAM) at `startId` if it does not exist. */
  group: string;
  /**
   * Name of this consumer in the group. A consumer restarted under the same name first takes
   * back the entries it held when it stopped (its pending list); give every live consumer its
   * own name.
   */
  consumer: string;
  /**
   * Where writes go: a connected FeatureStoreClient (the caller keeps it and closes it), or the
   * options to connect one (`{ servers: ["127.0.0.1:50051"], token, tls }`; the consumer closes it).
   */
  client: FeatureStoreClient | ClientOptions;
  /** Entries read per XREADGROUP and written per BatchSet (default 500, 1 to 10,000; keep it at or below the server's MAX_BATCH_ITEMS). */
  batchSize?: number;
  /** How long one XREADGROUP waits for new entries, ms (default 1000). Also bounds how long `stop()` may wait for a read. */
  blockMs?: number;
  /** Entries pending longer than this are claimed from their consumer (XAUTOCLAIM), ms (default 30,000). */
  minIdleMs?: number;
  /** How often pending entries of other (dead) consumers are looked for, ms (default 5,000). */
  claimEveryMs?: number;
  /** An entry delivered more than this many times goes to the dead-letter stream (default 5). */
  maxDeliveries?: number;
  /** Stream where entries that keep failing or are invalid go (default `<stream>:dead`). */
  deadLetterStream?: string;
  /** Where a new group starts: "0" (the whole stream, default) or "$" (only entries added from now). */
  startId?: string;
  /** Deadline of one BatchSet, ms (default 10,000). */
  writeDeadlineMs?: number;
  /** First and last wait between retries of a write or a Redis call that failed for a transient reason, ms (default 100 and 5,000). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Where log lines go (default: JSON lines at info level). */
  logger?: Logger;
}

export const DEFAULT_BATCH_SIZE = 500;
export const DEFAULT_BLOCK_MS = 1000;
export const DEFAULT_MIN_IDLE_MS = 30_000;
export const DEFAULT_CLAIM_EVERY_MS = 5000;
export const DEFAULT_MAX_DELIVERIES = 5;
export const DEFAULT_WRITE_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_INITIAL_MS = 100;
export const DEFAULT_RETRY_MAX_MS = 5000;
/** Suffix of the default dead-letter stream's key. */
export const DEAD_LETTER_SUFFIX = ":dead";

/** Options after validation, every field filled. */
export interface ResolvedIngestOptions {
  redisUrl: string;
  stream: string;
  group: string;
  consumer: string;
  batchSize: number;
  blockMs: number;
  minIdleMs: number;
  claimEveryMs: number;
  maxDeliveries: number;
  deadLetterStream: string;
  startId: string;
  writeDeadlineMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

/** Thrown for a bad option; the message names it, its bounds and what was given. */
export class IngestOptionError extends Error {
  override readonly name = "IngestOptionError";
}

export function resolveIngestOptions(o: IngestOptions): ResolvedIngestOptions {
  if (!o || typeof o !== "object") throw new IngestOptionError("startIngest needs an options object");
  const url = str("redisUrl", o.redisUrl);
  if (!/^rediss?:\/\//.test(url))
    throw new IngestOptionError(`redisUrl must be redis://host:port or rediss://host:port, got "${url}"`);
  const stream = str("stream", o.stream);
  const retryInitialMs = int("retryInitialMs", o.retryInitialMs, DEFAULT_RETRY_INITIAL_MS, 1, 3.6e6);
  const retryMaxMs = int("retryMaxMs", o.retryMaxMs, DEFAULT_RETRY_MAX_MS, retryInitialMs, 3.6e6);
  const startId = o.startId ?? "0";
  if (startId !== "$" && !/^\d+(-\d+)?$/.test(startId))
    throw new IngestOptionError(
      `startId must be "0", "$" or a stream id like 1700000000000-0, got "${startId}"`,
    );
  const deadLetterStream = o.deadLetterStream ?? `${stream}${DEAD_LETTER_SUFFIX}`;
  if (deadLetterStream === stream)
    throw new IngestOptionError(
      "deadLetterStream must differ from stream (dead letters would be read again)",
    );
  return {
    redisUrl: url,
    stream,
    group: str("group", o.group),
    consumer: str("consumer", o.consumer),
    batchSize: int("batchSize", o.batchSize, DEFAULT_BATCH_SIZE, 1, 10_000),
    blockMs: int("blockMs", o.blockMs, DEFAULT_BLOCK_MS, 1, 60_000),
    minIdleMs: int("minIdleMs", o.minIdleMs, DEFAULT_MIN_IDLE_MS, 1, 2 ** 31),
    claimEveryMs: int("claimEveryMs", o.claimEveryMs, DEFAULT_CLAIM_EVERY_MS, 1, 2 ** 31),
    maxDeliveries: int("maxDeliveries", o.maxDeliveries, DEFAULT_MAX_DELIVERIES, 1, 1_000_000),
    deadLetterStream: str("deadLetterStream", deadLetterStream),
    startId,
    writeDeadlineMs: int("writeDeadlineMs", o.writeDeadlineMs, DEFAULT_WRITE_DEADLINE_MS, 1, 3.6e6),
    retryInitialMs,
    retryMaxMs,
  };
}

function str(name: string, v: unknown): string {
  if (typeof v !== "string" || v.length === 0)
    throw new IngestOptionError(`${name} must be a non-empty string`);
  return v;
}

function int(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max)
    throw new IngestOptionError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}
