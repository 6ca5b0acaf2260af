/**
 * Server configuration from environment variables, validated eagerly: a bad value stops the
 * process at start with a message that names the variable, its bounds and its default.
 * Combinations that lower layers would refuse (the cache's per-shard arena) are checked here
 * too, so that every configuration mistake is reported in terms of variables, with exit code 2.
 */
import { MAX_ARENA_BYTES } from "../cache/index.ts";
import { shardGeometry } from "../cache/shard.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const STORES = ["sqlite", "memory", "redis"] as const;
export type StoreKind = (typeof STORES)[number];
export const DURABILITIES = ["sync", "async"] as const;
export type Durability = (typeof DURABILITIES)[number];

export interface Config {
  /**
   * Where records live: sqlite (durable, default), memory (the cache is the store) or redis
   * (shared by several servers; the cache is a near-cache). STORE.
   */
  store: StoreKind;
  /** STORE=redis, standalone: `redis://[user:password@]host:port[/db]` or `rediss://`. REDIS_URL. */
  redisUrl: string;
  /** STORE=redis, Cluster: seed nodes `host:port`, comma-separated (wins over REDIS_URL). REDIS_CLUSTER_NODES. */
  redisClusterNodes: string[];
  /** Prefix of every entity's key in Redis. REDIS_KEY_PREFIX, default "fs:". */
  redisKeyPrefix: string;
  /** Cluster: read from replicas too (READONLY connections, tracked as well). REDIS_READ_FROM_REPLICAS, default false. */
  redisReadFromReplicas: boolean;
  /** Acknowledge a write once WAIT confirms this many replicas have it; 0 = once the master has it. REDIS_WAIT_REPLICAS, default 0. */
  redisWaitReplicas: number;
  /** How long WAIT waits for REDIS_WAIT_REPLICAS, ms; a write short of them fails UNAVAILABLE. REDIS_WAIT_TIMEOUT_MS, default 500. */
  redisWaitTimeoutMs: number;
  /** Connecting to a Redis node gives up after this long, ms (then retries). REDIS_CONNECT_TIMEOUT_MS, default 2,000. */
  redisConnectTimeoutMs: number;
  /** A read or write Redis has not answered by then fails UNAVAILABLE, ms. REDIS_COMMAND_TIMEOUT_MS, default 1,000. */
  redisCommandTimeoutMs: number;
  /** Entities loaded from Redis at once at most; a miss past it is RESOURCE_EXHAUSTED. REDIS_MAX_PENDING_LOADS, default 10,000. */
  redisMaxPendingLoads: number;
  /**
   * The longest a server serves a near-cached value after it changed in Redis even if every
   * invalidation were lost, ms. NEAR_CACHE_MAX_STALENESS_MS, default 60,000.
   */
  nearCacheMaxStalenessMs: number;
  /** Directory of the SQLite file, created if missing. DATA_DIR, default ./data. */
  dataDir: string;
  /**
   * When a write is acknowledged with STORE=sqlite: sync (after fsync, default) or async (once
   * the OS has it; fsync at least once a second). DURABILITY.
   */
  durability: Durability;
  /** Most recently written entities loaded into the cache at start; 0 = none. WARM_ENTITIES, default 100,000. */
  warmEntities: number;
  /** Address both listeners bind to. HOST, default 0.0.0.0. */
  host: string;
  /**
   * Tokens with scopes, one `<name> <scopes> sha256:<hex>` per line; unset = no authentication
   * (the server runs open and warns at start). AUTH_TOKENS_FILE.
   */
  authTokensFile: string | null;
  /** /metrics requires a token (any scope) when authentication is on. METRICS_AUTH, default false. */
  metricsAuth: boolean;
  /** PEM certificate chain: with TLS_KEY_FILE, TLS on the TCP, HTTP and gRPC ports. TLS_CERT_FILE. */
  tlsCertFile: string | null;
  /** PEM private key of TLS_CERT_FILE. TLS_KEY_FILE. */
  tlsKeyFile: string | null;
  /** PEM CA bundle: clients must present a certificate it signed (mTLS). TLS_CA_FILE. */
  tlsCaFile: string | null;
  /**
   * Origins a browser may call the HTTP port from (CORS), comma-separated; `*` = any (for
   * read-only open deployments); empty (default) = no cross-origin access. CORS_ORIGINS.
   */
  corsOrigins: string[];
  /** Binary TCP protocol port; 0 picks a free one. TCP_PORT, default 50051. */
  tcpPort: number;
  /** Connect / gRPC-web / health / metrics port; 0 picks a free one. HTTP_PORT, default 8081. */
  httpPort: number;
  /** Native gRPC (HTTP/2 cleartext) port; 0 picks a free one. GRPC_PORT, default 50052. */
  grpcPort: number;
  /** Serve native gRPC at all. GRPC_ENABLED, default true. */
  grpcEnabled: boolean;
  /** Most entities held; LRU eviction past it. CACHE_SIZE, default 1,000,000. */
  cacheSize: number;
  /** Most bytes of ids and records held; LRU eviction past it. CACHE_MAX_BYTES, default 1 GiB. */
  cacheMaxBytes: number;
  /**
   * Largest entity record (id + encoded features) the cache takes, bytes; a larger write is
   * RESOURCE_EXHAUSTED. Arena segments are 8x this, and compaction copies one segment at a time,
   * so a larger bound means longer worst-case write pauses. CACHE_MAX_ENTRY_BYTES, default 64 KiB.
   */
  cacheMaxEntryBytes: number;
  /** Cache shards, a power of two. SHARD_COUNT, default 16. */
  shardCount: number;
  /** TTL for writes that give none, ms; 0 = never expire. DEFAULT_TTL_MS, default 0. */
  defaultTtlMs: number;
  /** LOG_LEVEL: debug, info, warn, error. Default info. */
  logLevel: LogLevel;
  /** Log every request (debug level, costs throughput). LOG_REQUESTS, default false. */
  logRequests: boolean;
  /** Largest request body, bytes, on TCP and HTTP. MAX_FRAME_BYTES, default 4 MiB. */
  maxFrameBytes: number;
  /** Answers a TCP client may leave unread before it is disconnected, bytes. MAX_PENDING_OUTPUT_BYTES, default 16 MiB. */
  maxPendingOutputBytes: number;
  /** Longest entity id, UTF-8 bytes. MAX_ENTITY_ID_BYTES, default 1024. */
  maxEntityIdBytes: number;
  /** Most ids in a BatchGet / items in a BatchSet. MAX_BATCH_ITEMS, default 10,000. */
  maxBatchItems: number;
  /** Most open TCP connections; past it new ones are closed at once. MAX_CONNECTIONS, default 10,000. */
  maxConnections: number;
  /**
   * Most feature names in one request: the projection of a GetFeatures or BatchGet, the names of
   * a DeleteFeatures, the features of one SetFeatures. MAX_FEATURE_NAMES, default 1,000: a
   * request with 10,000 names held the event loop for 2.5-30 ms (binary, JSON) in bench/abuse.
   */
  maxFeatureNames: number;
  /** Most features one entity may hold; a write past it is RESOURCE_EXHAUSTED. MAX_FEATURES_PER_ENTITY, default 10,000. */
  maxFeaturesPerEntity: number;
  /**
   * Largest answer message, bytes, on every transport; checked while the answer is built, so a
   * request that would pass it is RESOURCE_EXHAUSTED before more is built. MAX_RESPONSE_BYTES, default
   * 1 MiB: building a 4 MiB answer (7,300 entities) took 5.5 ms of event-loop time at best here.
   */
  maxResponseBytes: number;
  /**
   * How far ahead of the server's clock a write's event time may be, ms (clocks of producers
   * drift; an event "from the future" would win every later write). MAX_EVENT_TIME_SKEW_MS,
   * default 60,000.
   */
  maxEventTimeSkewMs: number;
  /**
   * Most tiles a windowed feature keeps: retention_ms / bucket_ms of an Observe is at most this.
   * A tile costs ~36 bytes stored (start, count, sum, min, max), so one windowed feature holds at
   * most ~36 x MAX_WINDOW_TILES bytes. MAX_WINDOW_TILES, default 4,096.
   */
  maxWindowTiles: number;
  /** Largest keep_last of an Append. MAX_LIST_ITEMS, default 10,000. */
  maxListItems: number;
  /** A TCP connection that sends nothing for this long is closed, ms; 0 = never. TCP_IDLE_TIMEOUT_MS, default 300,000. */
  tcpIdleTimeoutMs: number;
  /** A TCP frame must arrive whole within this long of its first byte, ms. TCP_FRAME_TIMEOUT_MS, default 10,000. */
  tcpFrameTimeoutMs: number;
  /**
   * Server-wide bound on bytes held for TCP clients (unfinished input frames plus unsent answers);
   * past it the connections holding the most are cut. MAX_CLIENT_MEMORY_BYTES, default 256 MiB.
   */
  maxClientMemoryBytes: number;
  /** Longest graceful shutdown before connections are cut, ms. SHUTDOWN_TIMEOUT_MS, default 10,000. */
  shutdownTimeoutMs: number;
  /** Record request counts and latencies. METRICS_ENABLED, default true. */
  metricsEnabled: boolean;
  /**
   * Serve the web console on the HTTP port at /console: its page is public, its calls (lookups,
   * /metrics, /console/config.json) need a token when AUTH_TOKENS_FILE is set. CONSOLE_ENABLED,
   * default true.
   */
  consoleEnabled: boolean;
}

export const DEFAULTS: Config = {
  store: "sqlite",
  redisUrl: "",
  redisClusterNodes: [],
  redisKeyPrefix: "fs:",
  redisReadFromReplicas: false,
  redisWaitReplicas: 0,
  redisWaitTimeoutMs: 500,
  redisConnectTimeoutMs: 2_000,
  redisCommandTimeoutMs: 1_000,
  redisMaxPendingLoads: 10_000,
  nearCacheMaxStalenessMs: 60_000,
  dataDir: "./data",
  durability: "sync",
  warmEntities: 100_000,
  host: "0.0.0.0",
  authTokensFile: null,
  metricsAuth: false,
  tlsCertFile: null,
  tlsKeyFile: null,
  tlsCaFile: null,
  corsOrigins: [],
  tcpPort: 50051,
  httpPort: 8081,
  grpcPort: 50052,
  grpcEnabled: true,
  cacheSize: 1_000_000,
  cacheMaxBytes: 1024 * 1024 * 1024,
  cacheMaxEntryBytes: 64 * 1024,
  shardCount: 16,
  defaultTtlMs: 0,
  logLevel: "info",
  logRequests: false,
  maxFrameBytes: 4 * 1024 * 1024,
  maxPendingOutputBytes: 16 * 1024 * 1024,
  maxEntityIdBytes: 1024,
  maxBatchItems: 1_000,
  maxConnections: 10_000,
  maxFeatureNames: 1_000,
  maxFeaturesPerEntity: 10_000,
  maxResponseBytes: 1024 * 1024,
  maxEventTimeSkewMs: 60_000,
  maxWindowTiles: 4096,
  maxListItems: 10_000,
  tcpIdleTimeoutMs: 300_000,
  tcpFrameTimeoutMs: 10_000,
  maxClientMemoryBytes: 256 * 1024 * 1024,
  shutdownTimeoutMs: 10_000,
  metricsEnabled: true,
  consoleEnabled: true,
};

/** A configuration error: the message is meant for the operator as it is. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return def;
  const s = raw.trim().replaceAll("_", "");
  const v = Number(s);
  if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(
      `${name}=${JSON.stringify(raw)} is invalid: expected an integer from ${min} to ${max} (default ${def})`,
    );
  }
  return v;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return def;
  const s = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(s)) return true;
  if (["0", "false", "no", "off"].includes(s)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected true or false (default ${def})`);
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], def: T): T {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return def;
  if (!(values as readonly string[]).includes(raw))
    throw new ConfigError(
      `${name}=${JSON.stringify(env[name])} is invalid: expected one of ${values.join(", ")} (default ${def})`,
    );
  return raw as T;
}

/** Reads and validates the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const shardCount = int(env, "SHARD_COUNT", DEFAULTS.shardCount, 1, 1024);
  if ((shardCount & (shardCount - 1)) !== 0) {
    throw new ConfigError(
      `SHARD_COUNT=${shardCount} is invalid: expected a power of two from 1 to 1024 (default 16)`,
    );
  }
  const logLevel = (env.LOG_LEVEL?.trim().toLowerCase() || DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `LOG_LEVEL=${JSON.stringify(env.LOG_LEVEL)} is invalid: expected one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const cacheSize = int(env, "CACHE_SIZE", DEFAULTS.cacheSize, 1, 1 << 30);
  const cacheMaxBytes = int(env, "CACHE_MAX_BYTES", DEFAULTS.cacheMaxBytes, 1024, 2 ** 46);
  if (cacheSize < shardCount) {
    throw new ConfigError(
      `CACHE_SIZE=${cacheSize} is invalid: it must be at least SHARD_COUNT (${shardCount})`,
    );
  }
  const cacheMaxEntryBytes = int(
    env,
    "CACHE_MAX_ENTRY_BYTES",
    DEFAULTS.cacheMaxEntryBytes,
    64,
    16 * 1024 * 1024,
  );
  checkShardArena(cacheSize, cacheMaxBytes, cacheMaxEntryBytes, shardCount);
  const maxFrameBytes = int(env, "MAX_FRAME_BYTES", DEFAULTS.maxFrameBytes, 1024, 1024 * 1024 * 1024);
  const maxPendingOutputBytes = int(
    env,
    "MAX_PENDING_OUTPUT_BYTES",
    DEFAULTS.maxPendingOutputBytes,
    65536,
    2 ** 32,
  );
  const maxResponseBytes = int(
    env,
    "MAX_RESPONSE_BYTES",
    DEFAULTS.maxResponseBytes,
    1024,
    1024 * 1024 * 1024,
  );
  const maxClientMemoryBytes = int(
    env,
    "MAX_CLIENT_MEMORY_BYTES",
    DEFAULTS.maxClientMemoryBytes,
    1024 * 1024,
    2 ** 40,
  );
  if (maxClientMemoryBytes < maxFrameBytes + maxPendingOutputBytes) {
    throw new ConfigError(
      `MAX_CLIENT_MEMORY_BYTES=${maxClientMemoryBytes} is invalid: it must be at least MAX_FRAME_BYTES + ` +
        `MAX_PENDING_OUTPUT_BYTES (${maxFrameBytes + maxPendingOutputBytes}), or one legitimate client could be cut`,
    );
  }
  const host = env.HOST?.trim() || DEFAULTS.host;
  const store = oneOf(env, "STORE", STORES, DEFAULTS.store);
  const redis = redisConfig(env, store === "redis");
  return {
    store,
    ...redis,
    dataDir: env.DATA_DIR?.trim() || DEFAULTS.dataDir,
    durability: oneOf(env, "DURABILITY", DURABILITIES, DEFAULTS.durability),
    warmEntities: int(env, "WARM_ENTITIES", DEFAULTS.warmEntities, 0, 1 << 30),
    host,
    ...securityConfig(env),
    tcpPort: int(env, "TCP_PORT", DEFAULTS.tcpPort, 0, 65535),
    httpPort: int(env, "HTTP_PORT", DEFAULTS.httpPort, 0, 65535),
    grpcPort: int(env, "GRPC_PORT", DEFAULTS.grpcPort, 0, 65535),
    grpcEnabled: bool(env, "GRPC_ENABLED", DEFAULTS.grpcEnabled),
    cacheSize,
    cacheMaxBytes,
    cacheMaxEntryBytes,
    shardCount,
    defaultTtlMs: int(env, "DEFAULT_TTL_MS", DEFAULTS.defaultTtlMs, 0, 2 ** 42),
    logLevel,
    logRequests: bool(env, "LOG_REQUESTS", DEFAULTS.logRequests),
    maxFrameBytes,
    maxPendingOutputBytes,
    maxEntityIdBytes: int(env, "MAX_ENTITY_ID_BYTES", DEFAULTS.maxEntityIdBytes, 1, 65535),
    maxBatchItems: int(env, "MAX_BATCH_ITEMS", DEFAULTS.maxBatchItems, 1, 1_000_000),
    maxConnections: int(env, "MAX_CONNECTIONS", DEFAULTS.maxConnections, 1, 1_000_000),
    maxFeatureNames: int(env, "MAX_FEATURE_NAMES", DEFAULTS.maxFeatureNames, 1, 1_000_000),
    maxFeaturesPerEntity: int(env, "MAX_FEATURES_PER_ENTITY", DEFAULTS.maxFeaturesPerEntity, 1, 1_000_000),
    maxResponseBytes,
    maxEventTimeSkewMs: int(
      env,
      "MAX_EVENT_TIME_SKEW_MS",
      DEFAULTS.maxEventTimeSkewMs,
      0,
      31 * 24 * 3600 * 1000,
    ),
    maxWindowTiles: int(env, "MAX_WINDOW_TILES", DEFAULTS.maxWindowTiles, 1, 1_000_000),
    maxListItems: int(env, "MAX_LIST_ITEMS", DEFAULTS.maxListItems, 1, 1_000_000),
    tcpIdleTimeoutMs: int(env, "TCP_IDLE_TIMEOUT_MS", DEFAULTS.tcpIdleTimeoutMs, 0, 86_400_000),
    tcpFrameTimeoutMs: int(env, "TCP_FRAME_TIMEOUT_MS", DEFAULTS.tcpFrameTimeoutMs, 100, 3_600_000),
    maxClientMemoryBytes,
    shutdownTimeoutMs: int(env, "SHUTDOWN_TIMEOUT_MS", DEFAULTS.shutdownTimeoutMs, 0, 600_000),
    metricsEnabled: bool(env, "METRICS_ENABLED", DEFAULTS.metricsEnabled),
    consoleEnabled: bool(env, "CONSOLE_ENABLED", DEFAULTS.consoleEnabled),
  };
}

/** AUTH_TOKENS_FILE, METRICS_AUTH, TLS_*, CORS_ORIGINS. */
function securityConfig(env: Env) {
  const path = (name: string) => env[name]?.trim() || null;
  const tlsCertFile = path("TLS_CERT_FILE");
  const tlsKeyFile = path("TLS_KEY_FILE");
  const tlsCaFile = path("TLS_CA_FILE");
  if ((tlsCertFile === null) !== (tlsKeyFile === null))
    throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both (TLS on) or neither");
  if (tlsCaFile !== null && tlsCertFile === null)
    throw new ConfigError("TLS_CA_FILE (client certificates) needs TLS_CERT_FILE and TLS_KEY_FILE");
  const corsOrigins = (env.CORS_ORIGINS ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const o of corsOrigins)
    if (o !== "*" && !/^https?:\/\/[^/\s]+$/.test(o))
      throw new ConfigError(
        `CORS_ORIGINS is invalid: "${o}" is not an origin (scheme://host[:port], no path) or *`,
      );
  const authTokensFile = path("AUTH_TOKENS_FILE");
  const metricsAuth = bool(env, "METRICS_AUTH", DEFAULTS.metricsAuth);
  if (metricsAuth && authTokensFile === null)
    throw new ConfigError("METRICS_AUTH=true needs AUTH_TOKENS_FILE (there are no tokens to check)");
  return { authTokensFile, metricsAuth, tlsCertFile, tlsKeyFile, tlsCaFile, corsOrigins };
}

/** The REDIS_* variables; with STORE=redis, REDIS_URL or REDIS_CLUSTER_NODES must be set. */
function redisConfig(env: Env, required: boolean) {
  const redisUrl = env.REDIS_URL?.trim() ?? "";
  if (redisUrl !== "" && !/^rediss?:\/\//.test(redisUrl))
    throw new ConfigError(
      `REDIS_URL is invalid: expected redis://[user:password@]host:port[/db] or rediss://... (got a ${redisUrl.split(":")[0]}: URL)`,
    );
  const redisClusterNodes = (env.REDIS_CLUSTER_NODES ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  for (const n of redisClusterNodes)
    if (!/^[^\s:/]+:\d{1,5}$/.test(n))
      throw new ConfigError(`REDIS_CLUSTER_NODES is invalid: "${n}" is not host:port`);
  if (required && redisUrl === "" && redisClusterNodes.length === 0)
    throw new ConfigError("STORE=redis needs REDIS_URL (standalone) or REDIS_CLUSTER_NODES (Cluster)");
  const redisCommandTimeoutMs = int(
    env,
    "REDIS_COMMAND_TIMEOUT_MS",
    DEFAULTS.redisCommandTimeoutMs,
    10,
    600_000,
  );
  const redisWaitTimeoutMs = int(env, "REDIS_WAIT_TIMEOUT_MS", DEFAULTS.redisWaitTimeoutMs, 1, 600_000);
  const redisWaitReplicas = int(env, "REDIS_WAIT_REPLICAS", DEFAULTS.redisWaitReplicas, 0, 64);
  if (redisWaitReplicas > 0 && redisWaitTimeoutMs >= redisCommandTimeoutMs)
    throw new ConfigError(
      `REDIS_WAIT_TIMEOUT_MS=${redisWaitTimeoutMs} is invalid: it must be below REDIS_COMMAND_TIMEOUT_MS (${redisCommandTimeoutMs})`,
    );
  return {
    redisUrl,
    redisClusterNodes,
    redisKeyPrefix: env.REDIS_KEY_PREFIX ?? DEFAULTS.redisKeyPrefix,
    redisReadFromReplicas: bool(env, "REDIS_READ_FROM_REPLICAS", DEFAULTS.redisReadFromReplicas),
    redisWaitReplicas,
    redisWaitTimeoutMs,
    redisConnectTimeoutMs: int(env, "REDIS_CONNECT_TIMEOUT_MS", DEFAULTS.redisConnectTimeoutMs, 10, 600_000),
    redisCommandTimeoutMs,
    redisMaxPendingLoads: int(env, "REDIS_MAX_PENDING_LOADS", DEFAULTS.redisMaxPendingLoads, 1, 10_000_000),
    nearCacheMaxStalenessMs: int(
      env,
      "NEAR_CACHE_MAX_STALENESS_MS",
      DEFAULTS.nearCacheMaxStalenessMs,
      1,
      86_400_000,
    ),
  };
}

/**
 * The cache splits CACHE_MAX_BYTES evenly over SHARD_COUNT shards, and one shard's arena is one
 * ArrayBuffer of at most 2 GiB: a large cache needs enough shards. Reported here, naming the
 * variables and the smallest SHARD_COUNT that fits, rather than as the cache's option error.
 */
function checkShardArena(entries: number, bytes: number, entryBytes: number, shards: number): void {
  const arena = (n: number) =>
    shardGeometry(Math.ceil(entries / n), Math.floor(bytes / n), entryBytes).arenaBytes;
  if (arena(shards) <= MAX_ARENA_BYTES) return;
  let need = shards * 2;
  while (need <= 1024 && arena(need) > MAX_ARENA_BYTES) need *= 2;
  throw new ConfigError(
    `CACHE_MAX_BYTES=${bytes} with SHARD_COUNT=${shards} is invalid: one shard would need a ` +
      `${arena(shards)}-byte arena, over the ${MAX_ARENA_BYTES}-byte limit per shard; ` +
      (need <= 1024
        ? `use SHARD_COUNT=${need} or more, or a smaller CACHE_MAX_BYTES`
        : "use a smaller CACHE_MAX_BYTES"),
  );
}
