/**
 * The one place that wires config, store, service, metrics and transports together, and owns
 * the process: signals, graceful shutdown, exit codes. `bun run start` runs it.
 */
import { type Config, ConfigError, loadConfig } from "./config/index.ts";
import { createLogger, type Logger } from "./log/index.ts";
import { HotMetrics } from "./metrics/hot.ts";
import { createMetricsRegistry } from "./metrics/prometheus.ts";
import { FeatureService } from "./service/service.ts";
import { MemoryStore } from "./store/memory.ts";
import { type HttpServer, startHttpServer } from "./transport/http/server.ts";
import { startTcpServer, type TcpServer } from "./transport/tcp/server.ts";

export interface RunningServer {
  readonly tcp: TcpServer;
  readonly http: HttpServer;
  readonly store: MemoryStore;
  readonly service: FeatureService;
  readonly metrics: HotMetrics;
  /** True once the store serves and until shutdown starts (the readiness probe). */
  readonly ready: boolean;
  /** Graceful shutdown: not ready, stop accepting, answer what was received, close. Idempotent. */
  shutdown(): Promise<void>;
}

/** Starts both transports over one store. Ports 0 pick free ports (tests). */
export function startServer(config: Config, logger: Logger): RunningServer {
  const store = new MemoryStore({
    maxEntries: config.cacheSize,
    maxBytes: config.cacheMaxBytes,
    maxEntryBytes: config.cacheMaxEntryBytes,
    shardCount: config.shardCount,
  });
  const service = new FeatureService(store, {
    defaultTtlMs: config.defaultTtlMs,
    maxEntityIdBytes: config.maxEntityIdBytes,
    maxBatchItems: config.maxBatchItems,
    maxFeatureNames: config.maxFeatureNames,
    maxFeaturesPerEntity: config.maxFeaturesPerEntity,
    maxResponseBytes: config.maxResponseBytes,
  });
  const metrics = new HotMetrics(config.metricsEnabled);
  const registry = createMetricsRegistry({ hot: metrics, cacheStats: () => store.cache.stats() });
  let draining = false;
  const isReady = () => store.ready && !draining;
  const tcp = startTcpServer({
    host: config.host,
    port: config.tcpPort,
    service,
    metrics,
    logger,
    maxFrameBytes: config.maxFrameBytes,
    maxPendingOutputBytes: config.maxPendingOutputBytes,
    maxConnections: config.maxConnections,
    idleTimeoutMs: config.tcpIdleTimeoutMs,
    frameTimeoutMs: config.tcpFrameTimeoutMs,
    maxClientMemoryBytes: config.maxClientMemoryBytes,
    logRequests: config.logRequests,
  });
  const http = startHttpServer({
    host: config.host,
    port: config.httpPort,
    service,
    metrics,
    registry,
    maxBodyBytes: config.maxFrameBytes,
    logger,
    isReady,
  });
  let stopping: Promise<void> | null = null;
  return {
    tcp,
    http,
    store,
    service,
    metrics,
    get ready() {
      return isReady();
    },
    shutdown() {
      if (stopping === null) {
        draining = true;
        stopping = Promise.all([
          tcp.drain(config.shutdownTimeoutMs),
          http.stop(config.shutdownTimeoutMs),
        ]).then(() => {});
      }
      return stopping;
    },
  };
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(
        `${JSON.stringify({ time: new Date().toISOString(), level: "error", msg: err.message })}\n`,
      );
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  let server: RunningServer;
  try {
    server = startServer(config, logger);
  } catch (err) {
    logger.error("failed to start", { err });
    process.exit(1);
  }
  logger.info("feature store listening", {
    tcpPort: server.tcp.port,
    httpPort: server.http.port,
    cacheSize: config.cacheSize,
    cacheMaxBytes: config.cacheMaxBytes,
    shardCount: config.shardCount,
    bun: Bun.version,
  });
  const stop = (signal: string) => {
    logger.info("shutting down", { signal, openConnections: server.tcp.connectionCount });
    const started = performance.now();
    server.shutdown().then(
      () => {
        logger.info("stopped", { ms: Math.round(performance.now() - started) });
        process.exit(0);
      },
      (err) => {
        logger.error("shutdown failed", { err });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

if (import.meta.main) await main();
