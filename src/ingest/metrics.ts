/**
 * The consumer's Prometheus metrics, in a registry of its own (it runs beside a server, or in
 * its own process with `--metrics-port`). Counters move once per batch, never per entry, so
 * prom-client's own Counter objects cost nothing that matters here. Lag and pending are read
 * from Redis (XINFO GROUPS) only when the registry is scraped.
 *
 * Every series carries the `stream` and `group` labels, and `consumer` (one process, one name).
 */
import client, { type Registry } from "prom-client";

/** Names of the consumer's metrics. */
export const INGEST_METRIC_NAMES = {
  entries: "featurestore_ingest_entries_total",
  batches: "featurestore_ingest_batches_total",
  writeDuration: "featurestore_ingest_write_duration_seconds",
  writeFailures: "featurestore_ingest_write_failures_total",
  deadLetters: "featurestore_ingest_dead_letters_total",
  redeliveries: "featurestore_ingest_redeliveries_total",
  redisErrors: "featurestore_ingest_redis_errors_total",
  lag: "featurestore_ingest_lag_entries",
  pending: "featurestore_ingest_pending_entries",
  lastAck: "featurestore_ingest_last_ack_timestamp_seconds",
} as const;

/** How an acknowledged entry ended, the `outcome` label. */
export type Outcome = "written" | "dead_lettered" | "deleted";
/** Why an entry went to the dead-letter stream, the `reason` label. */
export type DeadReason = "invalid" | "rejected" | "max_deliveries";
/** How an entry came back to this consumer, the `source` label. */
export type RedeliverySource = "own_pending" | "claimed";
/** Which Redis call failed, the `op` label. */
export type RedisOp = "read" | "claim" | "ack" | "info";

/** What the lag and pending gauges read at scrape time. */
export interface GroupInfo {
  /** Entries in the stream the group has not read yet (XINFO GROUPS `lag`); null when Redis cannot tell. */
  lag: number | null;
  /** Entries read by the group and not acknowledged yet. */
  pending: number;
}

/**
 * Write latency buckets, seconds: a BatchSet of a few hundred entries answers in about a
 * millisecond from memory and a few with an fsync; 10 s is the default deadline.
 */
const WRITE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class IngestMetrics {
  readonly registry: Registry = new client.Registry();
  private readonly entries: client.Counter<"outcome">;
  private readonly batches: client.Counter;
  private readonly writeDuration: client.Histogram;
  private readonly writeFailures: client.Counter<"code">;
  private readonly deadLetters: client.Counter<"reason">;
  private readonly redeliveries: client.Counter<"source">;
  private readonly redisErrors: client.Counter<"op">;
  private readonly lastAck: client.Gauge;

  /**
   * @param labels the `stream`, `group` and `consumer` of every series.
   * @param groupInfo reads the group's lag and pending count (XINFO GROUPS), once per scrape.
   */
  constructor(
    labels: { stream: string; group: string; consumer: string },
    groupInfo: () => Promise<GroupInfo | null>,
  ) {
    const r = this.registry;
    r.setDefaultLabels(labels);
    const registers = [r];
    this.entries = new client.Counter({
      name: INGEST_METRIC_NAMES.entries,
      help: "Stream entries acknowledged (XACK), by outcome: written to the store, dead-lettered, or deleted from the stream before they were processed.",
      labelNames: ["outcome"],
      registers,
    });
    for (const outcome of ["written", "dead_lettered", "deleted"]) this.entries.labels(outcome).inc(0);
    this.batches = new client.Counter({
      name: INGEST_METRIC_NAMES.batches,
      help: "BatchSet writes acknowledged by the server.",
      registers,
    });
    this.writeDuration = new client.Histogram({
      name: INGEST_METRIC_NAMES.writeDuration,
      help: "Time of one successful BatchSet round trip to the server, in seconds.",
      buckets: WRITE_BUCKETS,
      registers,
    });
    this.writeFailures = new client.Counter({
      name: INGEST_METRIC_NAMES.writeFailures,
      help: "BatchSet attempts that failed, by status code; transient ones are retried, rejected entries dead-lettered.",
      labelNames: ["code"],
      registers,
    });
    this.deadLetters = new client.Counter({
      name: INGEST_METRIC_NAMES.deadLetters,
      help: "Entries moved to the dead-letter stream, by reason: invalid entry, rejected by the server, delivered too many times.",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["invalid", "rejected", "max_deliveries"]) this.deadLetters.labels(reason).inc(0);
    this.redeliveries = new client.Counter({
      name: INGEST_METRIC_NAMES.redeliveries,
      help: "Entries delivered again: this consumer's own pending entries after a restart, or entries claimed from idle consumers (XAUTOCLAIM).",
      labelNames: ["source"],
      registers,
    });
    for (const source of ["own_pending", "claimed"]) this.redeliveries.labels(source).inc(0);
    this.redisErrors = new client.Counter({
      name: INGEST_METRIC_NAMES.redisErrors,
      help: "Redis calls that failed, by operation (read, claim, ack, info); each is retried after a backoff.",
      labelNames: ["op"],
      registers,
    });
    for (const op of ["read", "claim", "ack", "info"]) this.redisErrors.labels(op).inc(0);
    this.lastAck = new client.Gauge({
      name: INGEST_METRIC_NAMES.lastAck,
      help: "Unix time of the last acknowledgement (XACK) of this consumer, in seconds; 0 before the first.",
      registers,
    });
    // One XINFO GROUPS per scrape, shared by both gauges (they are collected one after the other).
    let info: Promise<GroupInfo | null> | null = null;
    const read = (): Promise<GroupInfo | null> => {
      if (info === null) {
        info = groupInfo().catch(() => null);
        void info.then(() => {
          setTimeout(() => {
            info = null;
          }, 0);
        });
      }
      return info;
    };
    new client.Gauge({
      name: INGEST_METRIC_NAMES.lag,
      help: "Entries of the stream the group has not read yet (XINFO GROUPS lag); absent when Redis cannot tell (after XDEL or trimming).",
      registers,
      async collect() {
        const i = await read();
        if (i !== null && i.lag !== null) this.set(i.lag);
        else this.reset();
      },
    });
    new client.Gauge({
      name: INGEST_METRIC_NAMES.pending,
      help: "Entries the group has read and not acknowledged yet, all consumers together (XINFO GROUPS pending).",
      registers,
      async collect() {
        const i = await read();
        if (i !== null) this.set(i.pending);
        else this.reset();
      },
    });
  }

  acked(outcome: Outcome, n: number): void {
    if (n > 0) this.entries.labels(outcome).inc(n);
  }

  ackedNow(): void {
    this.lastAck.set(Date.now() / 1000);
  }

  batchWritten(seconds: number): void {
    this.batches.inc();
    this.writeDuration.observe(seconds);
  }

  writeFailed(code: string): void {
    this.writeFailures.labels(code).inc();
  }

  deadLettered(reason: DeadReason, n = 1): void {
    this.deadLetters.labels(reason).inc(n);
  }

  redelivered(source: RedeliverySource, n: number): void {
    if (n > 0) this.redeliveries.labels(source).inc(n);
  }

  redisFailed(op: RedisOp): void {
    this.redisErrors.labels(op).inc();
  }
}
