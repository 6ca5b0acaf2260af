/**
 * The consumer loop: read a batch of entries with XREADGROUP, turn them into one BatchSet,
 * write it through the feature store client, then XACK, at least once.
 *
 * ```
 * start ─► XGROUP CREATE (MKSTREAM; an existing group is kept)
 *       ─► own pending list, from id 0: what this consumer name held when it stopped or died
 *       ─► loop: every claimEveryMs, XAUTOCLAIM entries idle > minIdleMs from any consumer
 *                XREADGROUP ... BLOCK blockMs COUNT batchSize STREAMS key >
 *                   (the next batch is read while the previous one is being written)
 *                parse ─► invalid ─────────────────────────────┐
 *                      ─► delivered > maxDeliveries ───────────┤
 *                      ─► BatchSet ─► rejected (bisected) ─────┤
 *                                  ─► acknowledged by server   ▼
 *                MULTI [XADD <dead-letter stream> per dead entry] XACK <every id> EXEC
 * ```
 *
 * - An entry is acknowledged only after the server acknowledged its write (the backend's
 *   durability point) or after it was copied to the dead-letter stream, in the same MULTI:
 *   a crash anywhere leaves it pending, and it is written again (the writes are sets, so a
 *   replay changes nothing that the original did not).
 * - Writes are in stream order, one BatchSet at a time: a later entry of an entity is never
 *   written before an earlier one read in the same pass. (Entries claimed from a dead consumer
 *   are older than what this consumer read meanwhile; a replay of old values is harmless only
 *   when values carry their own event times.)
 * - A transient failure (server unreachable, deadline, Redis down) is retried with a backoff,
 *   without limit and without acknowledging: an outage stalls the stream, it does not empty it
 *   into the dead-letter stream. What the server refuses as the entry's fault (INVALID_ARGUMENT,
 *   RESOURCE_EXHAUSTED, ...) is found by bisecting the batch and dead-lettered alone.
 * - The delivery count comes from Redis (XPENDING): it grows each time an entry is handed out
 *   again after its consumer died, so an entry that crashes its consumer ends in the
 *   dead-letter stream after maxDeliveries attempts instead of crashing every consumer in turn.
 */
import type { RedisClientType } from "@redis/client";
import { RESP_TYPES } from "@redis/client";
import type { FeatureStoreClient } from "../client/index.ts";
import type { SetFeaturesItem } from "../codec/messages.ts";
import { CODE_NAMES, Code, FeatureStoreError } from "../codec/status.ts";
import type { Logger } from "../log/index.ts";
import { InvalidEntryError, parseEntry } from "./entry.ts";
import type { DeadReason, GroupInfo, IngestMetrics } from "./metrics.ts";
import type { ResolvedIngestOptions } from "./options.ts";

/**
 * Replies as bytes (an entry's fields are decoded, strictly, by parseEntry) and RESP3 maps as
 * flat arrays: XREADGROUP answers `{ stream: entries }`, read as `[stream, entries]`.
 */
const BYTES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.MAP]: Array } };

/** Fields of a dead-letter entry, before the original entry's fields. */
export const DEAD_FIELDS = {
  id: "dead:id",
  reason: "dead:reason",
  message: "dead:message",
  deliveries: "dead:deliveries",
  group: "dead:group",
  consumer: "dead:consumer",
} as const;

/**
 * Codes that blame the entry, not the path to the store: the batch is bisected and a single
 * entry answered with one of them is dead-lettered. Every other code is retried.
 */
const REJECTIONS = new Set<number>([
  Code.InvalidArgument,
  Code.ResourceExhausted,
  Code.OutOfRange,
  Code.FailedPrecondition,
  Code.NotFound,
  Code.AlreadyExists,
]);

/** Claim rounds (XAUTOCLAIM of batchSize) per pass at most, so new entries are not starved. */
const MAX_CLAIM_ROUNDS = 20;

/** One entry as read: its id, its fields (null when it was deleted from the stream), deliveries. */
interface Entry {
  id: string;
  fields: Buffer[] | null;
  deliveries: number;
}

interface Parsed {
  entry: Entry;
  item: SetFeaturesItem;
}

interface Dead {
  entry: Entry;
  reason: DeadReason;
  message: string;
}

/** What the consumer did so far; the handle's `stats()`. */
export interface IngestStats {
  /** Entries acknowledged after their write. */
  written: number;
  /** Entries moved to the dead-letter stream (and acknowledged). */
  deadLettered: number;
  /** Entries acknowledged because they had been deleted from the stream. */
  deleted: number;
  /** BatchSet calls acknowledged by the server. */
  batches: number;
  /** Entries whose XACK found them no longer pending for this group (acknowledged elsewhere, e.g. claimed by another consumer meanwhile). */
  ackMisses: number;
  /** Entries taken back from this consumer's own pending list or claimed from others. */
  redelivered: number;
}

export class StreamConsumer {
  private stopping = false;
  private wake: () => void = () => {};
  private readonly stopped: Promise<void>;
  private readerId: number | null = null;
  private running: Promise<void> | null = null;
  /** The XACK of the last batch written, still in flight; awaited before the next and at the end. */
  private acking: Promise<void> = Promise.resolve();
  private failing: string | null = null;
  readonly stats: IngestStats = {
    written: 0,
    deadLettered: 0,
    deleted: 0,
    batches: 0,
    ackMisses: 0,
    redelivered: 0,
  };

  constructor(
    private readonly o: ResolvedIngestOptions,
    /** Commands that never block: XACK, XAUTOCLAIM, XPENDING, XINFO, MULTI. */
    private readonly cmd: RedisClientType,
    /** The blocking XREADGROUP, on a connection of its own. */
    private readonly reader: RedisClientType,
    private readonly writer: FeatureStoreClient,
    private readonly metrics: IngestMetrics,
    private readonly logger: Logger,
  ) {
    this.stopped = new Promise((resolve) => {
      this.wake = resolve;
    });
    reader.on("ready", () => {
      reader.sendCommand<number>(["CLIENT", "ID"]).then(
        (id) => {
          this.readerId = id;
        },
        () => {},
      );
    });
  }

  /** Starts the loop; it runs until `stop()`. */
  start(): void {
    this.running = this.run().catch((err) => {
      this.logger.error("ingest loop failed", { err });
    });
  }

  /**
   * Graceful stop: no new reads; the batch being written (and one read ahead) is finished and
   * acknowledged; a blocked read is released (CLIENT UNBLOCK). A write still failing when the
   * stop comes is given up without an acknowledgement: its entries stay pending.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    if (this.readerId !== null)
      await this.cmd.sendCommand(["CLIENT", "UNBLOCK", String(this.readerId)]).catch(() => {});
    await this.running;
  }

  /** The group's lag and pending count (XINFO GROUPS), for the metrics. */
  async groupInfo(): Promise<GroupInfo | null> {
    let reply: Record<string, unknown>[];
    try {
      reply = await this.cmd.sendCommand<Record<string, unknown>[]>(["XINFO", "GROUPS", this.o.stream]);
    } catch (err) {
      this.metrics.redisFailed("info");
      throw err;
    }
    const g = reply.find((info) => String(info.name) === this.o.group);
    if (g === undefined) return null;
    return { lag: typeof g.lag === "number" ? g.lag : null, pending: Number(g.pending) };
  }

  // ---- the loop ---------------------------------------------------------------------------------

  private async run(): Promise<void> {
    await this.retrying("read", () => this.ensureGroup());
    await this.drainOwnPending();
    let nextClaim = 0;
    let writing: Promise<void> | null = null;
    while (!this.stopping) {
      if (Date.now() >= nextClaim) {
        if (writing !== null) await writing;
        writing = null;
        await this.claimPass();
        nextClaim = Date.now() + this.o.claimEveryMs;
      }
      const batch = await this.readNew();
      if (writing !== null) await writing;
      writing = batch.length > 0 ? this.process(batch, null) : null;
    }
    if (writing !== null) await writing;
    await this.acking;
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.cmd.sendCommand([
        "XGROUP",
        "CREATE",
        this.o.stream,
        this.o.group,
        this.o.startId,
        "MKSTREAM",
      ]);
      this.logger.info("created consumer group", { stream: this.o.stream, group: this.o.group });
    } catch (err) {
      if (!String((err as Error).message).startsWith("BUSYGROUP")) throw err;
    }
  }

  /** Entries this consumer name read before and never acknowledged (it was killed or stopped mid-write). */
  private async drainOwnPending(): Promise<void> {
    let cursor = "0";
    while (!this.stopping) {
      const batch = await this.retrying("read", () => this.readGroup(cursor, false));
      if (batch === null || batch.length === 0) return;
      cursor = batch[batch.length - 1]!.id;
      await this.process(batch, "own_pending");
    }
  }

  /** Entries of other consumers (or of this one) idle longer than minIdleMs: theirs died. */
  private async claimPass(): Promise<void> {
    let cursor = "0-0";
    for (let round = 0; round < MAX_CLAIM_ROUNDS && !this.stopping; round++) {
      const reply = await this.retrying("claim", () =>
        this.cmd.sendCommand<[Buffer, ([Buffer, Buffer[] | null] | null)[], Buffer[]]>(
          [
            "XAUTOCLAIM",
            this.o.stream,
            this.o.group,
            this.o.consumer,
            String(this.o.minIdleMs),
            cursor,
            "COUNT",
            String(this.o.batchSize),
          ],
          BYTES,
        ),
      );
      if (reply === null) return;
      const entries: Entry[] = [];
      for (const e of reply[1]) if (e !== null) entries.push(toEntry(e));
      if (entries.length > 0) await this.process(entries, "claimed");
      cursor = String(reply[0]);
      if (cursor === "0-0") return;
    }
  }

  private async readNew(): Promise<Entry[]> {
    const batch = await this.retrying("read", () => this.readGroup(">", true));
    return batch ?? [];
  }

  /** XREADGROUP from `id` (">" for new entries, an id for this consumer's own pending ones). */
  private async readGroup(id: string, block: boolean): Promise<Entry[]> {
    const args = ["XREADGROUP", "GROUP", this.o.group, this.o.consumer, "COUNT", String(this.o.batchSize)];
    if (block) args.push("BLOCK", String(this.o.blockMs));
    args.push("STREAMS", this.o.stream, id);
    const reply = await (block ? this.reader : this.cmd).sendCommand<
      [Buffer, [Buffer, Buffer[] | null][]] | null
    >(args, BYTES);
    if (reply === null || reply.length < 2) return [];
    return reply[1].map(toEntry);
  }

  // ---- one batch --------------------------------------------------------------------------------

  /**
   * Writes what can be written, dead-letters what cannot, acknowledges both. `source` is null for
   * entries delivered for the first time (their delivery count is 1 without asking Redis).
   */
  private async process(entries: Entry[], source: "own_pending" | "claimed" | null): Promise<void> {
    try {
      if (source !== null) {
        this.metrics.redelivered(source, entries.length);
        this.stats.redelivered += entries.length;
        await this.retrying("claim", () => this.readDeliveries(entries));
      }
      const dead: Dead[] = [];
      const deleted: string[] = [];
      const toWrite: Parsed[] = [];
      for (const entry of entries) {
        if (entry.fields === null) deleted.push(entry.id);
        else if (entry.deliveries > this.o.maxDeliveries)
          dead.push({
            entry,
            reason: "max_deliveries",
            message: `delivered ${entry.deliveries} times (max ${this.o.maxDeliveries})`,
          });
        else {
          try {
            toWrite.push({ entry, item: parseEntry(entry.fields) });
          } catch (err) {
            if (!(err instanceof InvalidEntryError)) throw err;
            dead.push({ entry, reason: "invalid", message: err.message });
          }
        }
      }
      const written: string[] = [];
      if (toWrite.length > 0 && !(await this.write(toWrite, written, dead))) return;
      // The acknowledgement overlaps the next batch's write; at most one is outstanding.
      await this.acking;
      this.acking = this.acknowledge(written, dead, deleted).catch((err) => {
        this.logger.error("ingest acknowledgement failed; its entries stay pending", { err });
      });
    } catch (err) {
      // Only a bug lands here; the entries stay pending and come back by XAUTOCLAIM.
      this.logger.error("ingest batch failed; its entries stay pending", { err });
    }
  }

  /** Delivery counts of entries handed out again, from this consumer's pending list (XPENDING). */
  private async readDeliveries(entries: Entry[]): Promise<void> {
    const first = entries[0]!.id;
    const last = entries[entries.length - 1]!.id;
    const reply = await this.cmd.sendCommand<[string, string, number, number][]>([
      "XPENDING",
      this.o.stream,
      this.o.group,
      first,
      last,
      String(entries.length * 2),
      this.o.consumer,
    ]);
    const counts = new Map<string, number>();
    for (const [id, , , n] of reply) counts.set(String(id), n);
    for (const e of entries) e.deliveries = counts.get(e.id) ?? e.deliveries;
  }

  /**
   * One BatchSet of `batch` (in stream order); on a rejection, each half alone, down to the
   * entry the server refuses, which joins `dead`. Returns false if stopped while the write kept
   * failing (nothing of the unwritten rest is acknowledged).
   */
  private async write(batch: Parsed[], written: string[], dead: Dead[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const t0 = performance.now();
      try {
        await this.writer.batchSet(
          batch.map((p) => p.item),
          { deadlineMs: this.o.writeDeadlineMs },
        );
        this.metrics.batchWritten((performance.now() - t0) / 1000);
        this.stats.batches++;
        for (const p of batch) written.push(p.entry.id);
        this.recovered("write");
        return true;
      } catch (err) {
        const e = FeatureStoreError.from(err);
        this.metrics.writeFailed(CODE_NAMES[e.code] ?? String(e.code));
        if (REJECTIONS.has(e.code)) {
          if (batch.length === 1) {
            dead.push({
              entry: batch[0]!.entry,
              reason: "rejected",
              message: `${CODE_NAMES[e.code]}: ${e.message}`,
            });
            return true;
          }
          const mid = batch.length >> 1;
          return (
            (await this.write(batch.slice(0, mid), written, dead)) &&
            (await this.write(batch.slice(mid), written, dead))
          );
        }
        this.failed("write", e);
        if (this.stopping) return false;
        await this.backoff(attempt);
      }
    }
  }

  /** MULTI: XADD each dead entry to the dead-letter stream, XACK every id; EXEC. Retried until it succeeds or a stop. */
  private async acknowledge(written: string[], dead: Dead[], deleted: string[]): Promise<void> {
    const ids = [...written, ...dead.map((d) => d.entry.id), ...deleted];
    if (ids.length === 0) return;
    const acked = await this.retrying("ack", async () => {
      const m = this.cmd.multi();
      for (const d of dead)
        m.addCommand([
          "XADD",
          this.o.deadLetterStream,
          "*",
          DEAD_FIELDS.id,
          d.entry.id,
          DEAD_FIELDS.reason,
          d.reason,
          DEAD_FIELDS.message,
          d.message,
          DEAD_FIELDS.deliveries,
          String(d.entry.deliveries),
          DEAD_FIELDS.group,
          this.o.group,
          DEAD_FIELDS.consumer,
          this.o.consumer,
          ...(d.entry.fields ?? []),
        ]);
      m.addCommand(["XACK", this.o.stream, this.o.group, ...ids]);
      const replies = await m.exec();
      return Number(replies[replies.length - 1]);
    });
    if (acked === null) return; // stopped while Redis was failing: the entries stay pending
    this.metrics.acked("written", written.length);
    this.metrics.acked("dead_lettered", dead.length);
    this.metrics.acked("deleted", deleted.length);
    this.metrics.ackedNow();
    for (const d of dead) {
      this.metrics.deadLettered(d.reason);
      this.logger.warn("entry moved to the dead-letter stream", {
        id: d.entry.id,
        reason: d.reason,
        message: d.message,
        deadLetterStream: this.o.deadLetterStream,
      });
    }
    this.stats.written += written.length;
    this.stats.deadLettered += dead.length;
    this.stats.deleted += deleted.length;
    if (acked < ids.length) {
      this.stats.ackMisses += ids.length - acked;
      this.logger.warn("entries were no longer pending for the group when acknowledged", {
        expected: ids.length,
        acked,
      });
    }
  }

  // ---- retries ------------------------------------------------------------------------------------

  /** Runs `f` until it succeeds (its result) or the consumer stops (null), backing off between tries. */
  private async retrying<T>(op: "read" | "claim" | "ack", f: () => Promise<T>): Promise<T | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await f();
        this.recovered(op);
        return r;
      } catch (err) {
        if (this.stopping && op === "read") return null; // CLIENT UNBLOCK or a closing connection
        this.metrics.redisFailed(op);
        this.failed(op, err);
        if (String((err as Error).message).startsWith("NOGROUP")) await this.ensureGroup().catch(() => {});
        if (this.stopping) return null;
        await this.backoff(attempt);
      }
    }
  }

  /** Waits before retry `attempt` (exponential, jittered), or less if the consumer stops. */
  private backoff(attempt: number): Promise<void> {
    const ms = Math.min(this.o.retryInitialMs * 2 ** Math.min(attempt, 30), this.o.retryMaxMs);
    return Promise.race([Bun.sleep(ms * (0.5 + Math.random() / 2)), this.stopped]);
  }

  /** Logs the first failure of a streak (the rest are counted in metrics), not every retry. */
  private failed(op: string, err: unknown): void {
    if (this.failing === op) return;
    this.failing = op;
    this.logger.warn(`ingest ${op} failed; retrying with backoff`, { message: (err as Error).message });
  }

  private recovered(op: string): void {
    if (this.failing !== op) return;
    this.failing = null;
    this.logger.info(`ingest ${op} recovered`);
  }
}

function toEntry(raw: [Buffer, Buffer[] | null]): Entry {
  return { id: String(raw[0]), fields: raw[1], deliveries: 1 };
}
