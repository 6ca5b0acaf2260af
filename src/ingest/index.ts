/**
 * Streaming ingestion from a Redis Stream into the feature store.
 *
 * ```ts
 * const ingest = await startIngest({
 *   redisUrl: "redis://127.0.0.1:6379",
 *   stream: "features",
 *   group: "featurestore",
 *   consumer: "ingest-1",
 *   client: { servers: ["127.0.0.1:50051"] },
 *   metricsPort: 9465,
 * });
 * // ... on SIGTERM:
 * await ingest.stop();
 * ```
 *
 * Writes go to a server over the TCP protocol with the product's client, not into a store
 * opened in this process: the server owns its store (a SQLite DATA_DIR admits one writer; its
 * cache and, with STORE=redis, its near-cache are coherent only with writes it makes or that
 * Redis tells it about), so a write through the server is visible to readers at once, acknowledged
 * at the backend's durability point, and checked by the server's own validation. It also keeps
 * the consumer a separate process that can be killed, scaled and restarted without touching the
 * server. The price is one network round trip per batch, paid once per `batchSize` entries.
 *
 * The entry format is in entry.ts; the loop and its guarantees in consumer.ts.
 */
import { createClient, type RedisClientType } from "@redis/client";
import type { Registry } from "prom-client";
import { FeatureStoreClient } from "../client/index.ts";
import { createLogger, type Logger } from "../log/index.ts";
import { type IngestStats, StreamConsumer } from "./consumer.ts";
import { IngestMetrics } from "./metrics.ts";
import { IngestOptionError, type IngestOptions, resolveIngestOptions } from "./options.ts";

export { DEAD_FIELDS, type IngestStats } from "./consumer.ts";
export { ENTRY_FIELDS, InvalidEntryError, parseEntry } from "./entry.ts";
export { INGEST_METRIC_NAMES } from "./metrics.ts";
export * from "./options.ts";

/** Options of `startIngest`: the consumer's, and where its metrics are served. */
export interface StartIngestOptions extends IngestOptions {
  /** Serve the consumer's metrics at `http://<metricsHost>:<port>/metrics` (0 = a free port). Absent: not served (read `handle.registry`). */
  metricsPort?: number;
  /** Address the metrics listener binds to (default 0.0.0.0, like the server's HOST). */
  metricsHost?: string;
}

/** A running consumer. */
export interface IngestHandle {
  /** The consumer's metrics (also served on `metricsPort` when given). */
  readonly registry: Registry;
  /** The port the metrics are served on, or null. */
  readonly metricsPort: number | null;
  /** What it did so far. */
  stats(): IngestStats;
  /**
   * Graceful stop: finishes and acknowledges the batch in flight, reads nothing more, closes the
   * Redis connections, the client it opened and the metrics listener. Idempotent.
   */
  stop(): Promise<void>;
}

/** Redis reconnects: fast at first, then every 2 s; the loop backs off on its own meanwhile. */
const reconnectStrategy = (retries: number) => Math.min(50 * 2 ** retries, 2000);

/**
 * Starts consuming `options.stream` in `options.group` as `options.consumer`. Resolves once
 * Redis and the feature store server are reachable and the loop runs; rejects (and releases
 * what it opened) if either is not, or with IngestOptionError for a bad option.
 */
export async function startIngest(options: StartIngestOptions): Promise<IngestHandle> {
  const o = resolveIngestOptions(options);
  if (
    options.metricsPort !== undefined &&
    !(Number.isInteger(options.metricsPort) && options.metricsPort >= 0)
  )
    throw new IngestOptionError(`metricsPort must be an integer from 0 to 65535, got ${options.metricsPort}`);
  const logger: Logger = options.logger ?? createLogger("info");
  const closers: (() => unknown)[] = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
    closers.length = 0;
  };
  try {
    const owned = !(options.client instanceof FeatureStoreClient);
    const writer =
      options.client instanceof FeatureStoreClient
        ? options.client
        : await FeatureStoreClient.connect(options.client);
    if (owned) closers.push(() => writer.close());

    const cmd = createClient({
      url: o.redisUrl,
      RESP: 3,
      disableOfflineQueue: true,
      socket: { reconnectStrategy },
    }) as unknown as RedisClientType;
    const reader = cmd.duplicate() as RedisClientType;
    for (const c of [cmd, reader]) {
      // Errors surface in the calls (and are retried there); the event only must not go unhandled.
      c.on("error", () => {});
      closers.push(() => c.destroy());
    }
    await Promise.all([cmd.connect(), reader.connect()]);

    let consumer: StreamConsumer | null = null;
    const metrics = new IngestMetrics({ stream: o.stream, group: o.group, consumer: o.consumer }, () =>
      consumer === null ? Promise.resolve(null) : consumer.groupInfo(),
    );
    consumer = new StreamConsumer(o, cmd, reader, writer, metrics, logger);

    let metricsPort: number | null = null;
    if (options.metricsPort !== undefined) {
      const server = Bun.serve({
        hostname: options.metricsHost ?? "0.0.0.0",
        port: options.metricsPort,
        fetch: async (req) => {
          if (new URL(req.url).pathname !== "/metrics") return new Response("not found\n", { status: 404 });
          return new Response(await metrics.registry.metrics(), {
            headers: { "content-type": metrics.registry.contentType },
          });
        },
      });
      metricsPort = server.port ?? null;
      closers.push(() => server.stop(true));
    }

    consumer.start();
    logger.info("ingest started", {
      stream: o.stream,
      group: o.group,
      consumer: o.consumer,
      deadLetterStream: o.deadLetterStream,
      batchSize: o.batchSize,
      metricsPort,
    });
    let stopping: Promise<void> | null = null;
    const c = consumer;
    return {
      registry: metrics.registry,
      metricsPort,
      stats: () => ({ ...c.stats }),
      stop: () => {
        stopping ??= (async () => {
          await c.stop();
          await closeAll();
          logger.info("ingest stopped", { ...c.stats });
        })();
        return stopping;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
