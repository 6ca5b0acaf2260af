/**
 * The one place that wires config, store, service, metrics and transports together, and owns
 * the process: signals, graceful shutdown, exit codes. `bun run start` runs it.
 */
import { TlsConfigError, TlsSource } from "./auth/tls.ts";
import { Auth, TokensFileError } from "./auth/tokens.ts";
import { type Config, ConfigError, loadConfig } from "./config/index.ts";
import { createLogger, type Logger } from "./log/index.ts";
import { HotMetrics } from "./metrics/hot.ts";
import { createMetricsRegistry } from "./metrics/prometheus.ts";
import { FeatureService } from "./service/service.ts";
import { MemoryStore } from "./store/memory.ts";
import { RedisStore } from "./store/redis/store.ts";
import { StoreStartError } from "./store/sqlite/backend.ts";
import { TieredStore } from "./store/tiered.ts";
import type { DurableStore, RemoteStore } from "./store/types.ts";
import { type GrpcServer, startGrpcServer } from "./transport/grpc/server.ts";
import { type HttpServer, startHttpServer } from "./transport/http/server.ts";
import { startTcpServer, type TcpServer } from "./transport/tcp/server.ts";

export interface RunningServer {
  readonly tcp: TcpServer;
  readonly http: HttpServer;
  /** Null when GRPC_ENABLED=false. Its port is bound once `grpc.listening` resolves. */
  readonly grpc: GrpcServer | null;
  readonly store: DurableStore | RemoteStore;
  readonly service: FeatureService;
  readonly metrics: HotMetrics;
  /** True once the store serves and until shutdown starts (the readiness probe). */
  readonly ready: boolean;
  /** Graceful shutdown: not ready, stop accepting, answer what was received, close. Idempotent. */
  shutdown(): Promise<void>;
  /** Reads the tokens file and the TLS files again (SIGHUP). */
  reloadSecurity(): void;
}

/**
 * Opens the configured store: the cache alone (memory), the cache in front of the SQLite file
 * in DATA_DIR, warmed with the most recently written entities, or the cache as the near-cache
 * of Redis (connected in the background). Throws StoreStartError.
 */
export function openStore(config: Config, logger: Logger): MemoryStore | TieredStore | RedisStore {
  const cache = {
    maxEntries: config.cacheSize,
    maxBytes: config.cacheMaxBytes,
    maxEntryBytes: config.cacheMaxEntryBytes,
    shardCount: config.shardCount,
  };
  if (config.store === "memory") return new MemoryStore(cache);
  if (config.store === "redis") {
    const cluster = config.redisClusterNodes.length > 0;
    logger.info("connecting to Redis", {
      cluster,
      nodes: cluster ? config.redisClusterNodes : redactUrl(config.redisUrl),
      keyPrefix: config.redisKeyPrefix,
      waitReplicas: config.redisWaitReplicas,
    });
    return RedisStore.create({
      cache,
      url: config.redisUrl,
      clusterNodes: config.redisClusterNodes,
      readFromReplicas: config.redisReadFromReplicas,
      connectTimeoutMs: config.redisConnectTimeoutMs,
      prefix: config.redisKeyPrefix,
      maxStalenessMs: config.nearCacheMaxStalenessMs,
      commandTimeoutMs: config.redisCommandTimeoutMs,
      waitReplicas: config.redisWaitReplicas,
      waitTimeoutMs: config.redisWaitTimeoutMs,
      maxFeaturesPerEntity: config.maxFeaturesPerEntity,
      maxPendingLoads: config.redisMaxPendingLoads,
      logger,
    });
  }
  const store = TieredStore.open({ dir: config.dataDir, durability: config.durability, cache, logger });
  logger.info("store opened", {
    path: store.backend.path,
    durability: config.durability,
    rows: store.backend.count(),
  });
  const limit = Math.min(config.warmEntities, config.cacheSize);
  if (limit > 0) {
    const started = performance.now();
    const n = store.warm(limit, (done) => logger.info("warming the cache", { entities: done, of: limit }));
    logger.info("cache warmed", { entities: n, ms: Math.round(performance.now() - started) });
  }
  return store;
}

/** Starts every transport over one store. Ports 0 pick free ports (tests). */
export function startServer(config: Config, logger: Logger): RunningServer {
  const auth = new Auth({ tokensFile: config.authTokensFile, logger });
  if (!auth.enabled)
    logger.warn(
      "AUTH_TOKENS_FILE is not set: every client that reaches a port can read and write everything",
    );
  const tls =
    config.tlsCertFile === null || config.tlsKeyFile === null
      ? null
      : new TlsSource(
          { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, caFile: config.tlsCaFile },
          logger,
        );
  const store = openStore(config, logger);
  const service = new FeatureService(store, {
    defaultTtlMs: config.defaultTtlMs,
    maxEntityIdBytes: config.maxEntityIdBytes,
    maxBatchItems: config.maxBatchItems,
    maxFeatureNames: config.maxFeatureNames,
    maxFeaturesPerEntity: config.maxFeaturesPerEntity,
    maxResponseBytes: config.maxResponseBytes,
    maxEventTimeSkewMs: config.maxEventTimeSkewMs,
    maxWindowTiles: config.maxWindowTiles,
    maxListItems: config.maxListItems,
    logger,
  });
  const metrics = new HotMetrics(config.metricsEnabled);
  const registry = createMetricsRegistry({
    hot: metrics,
    cacheStats: () => store.cache.stats(),
    redisStats: store instanceof RedisStore ? () => store.metrics() : undefined,
    authFailures: auth.enabled ? auth.failures : undefined,
  });
  let draining = false;
  // Not ready while the store cannot take writes (disk full, I/O errors): reads still work.
  const isReady = () => store.ready && store.writeFailure === null && !draining;
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
    sync: () => store.sync(),
    logRequests: config.logRequests,
    auth,
    tls,
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
    sync: () => store.sync(),
    auth,
    metricsAuth: config.metricsAuth,
    tls,
    corsOrigins: config.corsOrigins,
    console: config.consoleEnabled ? config : null,
  });
  const grpc = config.grpcEnabled
    ? startGrpcServer({
        host: config.host,
        port: config.grpcPort,
        service,
        metrics,
        logger,
        maxMessageBytes: config.maxFrameBytes,
        maxBufferedBytes: config.maxClientMemoryBytes,
        sync: () => store.sync(),
        isServing: isReady,
        auth,
        tls,
      })
    : null;
  let stopping: Promise<void> | null = null;
  return {
    tcp,
    http,
    grpc,
    store,
    service,
    metrics,
    get ready() {
      return isReady();
    },
    reloadSecurity() {
      auth.reload();
      tls?.reload();
    },
    shutdown() {
      if (stopping === null) {
        draining = true;
        stopping = Promise.all([
          tcp.drain(config.shutdownTimeoutMs),
          http.stop(config.shutdownTimeoutMs),
          grpc?.stop(config.shutdownTimeoutMs),
        ]).then(() => {
          auth.close();
          tls?.close();
          return store.close();
        });
      }
      return stopping;
    },
  };
}

/** The URL without its password, for the log. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
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
    await server.grpc?.listening;
  } catch (err) {
    if (err instanceof StoreStartError || err instanceof TokensFileError || err instanceof TlsConfigError) {
      logger.error(err.message);
      process.exit(2);
    }
    logger.error("failed to start", { err });
    process.exit(1);
  }
  logger.info("feature store listening", {
    tcpPort: server.tcp.port,
    httpPort: server.http.port,
    grpcPort: server.grpc?.port ?? null,
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
  process.on("SIGHUP", () => {
    logger.info("SIGHUP: reloading the tokens and TLS files");
    server.reloadSecurity();
  });
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

if (import.meta.main) await main();
