/**
 * The connections to Redis, standalone or Cluster, through node-redis (`@redis/client`).
 *
 * Chosen over ioredis (its Cluster client drops RESP3 invalidation pushes, so tracking would
 * need a second, REDIRECT connection per node) and Bun's RedisClient (no Cluster, no tracking):
 * node-redis speaks RESP3, routes by slot (MOVED/ASK, replica reads) and calls a client-side
 * cache provider on every node connection: with tracking turned on in each connection's
 * handshake, for invalidation pushes, and on errors and topology changes. Its own object cache
 * is not used (a cached HGETALL costs a structuredClone per hit): `Tracking` below only relays
 * those events to our typed-array near-cache.
 *
 * Tracking runs in default mode (`CLIENT TRACKING ON`): Redis remembers the keys each
 * connection read and invalidates only those, and the push travels on the connection that read
 * the key, after the reply (RESP3 keeps them in order). Broadcast mode would send every
 * server every write under the prefix.
 */
import {
  createClient,
  createCluster,
  RESP_TYPES,
  type RedisClientType,
  type RedisClusterType,
} from "@redis/client";
import { PooledClientSideCacheProvider } from "@redis/client/dist/lib/client/cache.js";
import calculateSlot from "@redis/client/dist/lib/utils/calculate-slot.js";
import type { Logger } from "../../log/index.ts";

/** Where invalidations go: a key (as Redis sent it), or null for "everything". */
export interface InvalidationSink {
  invalidate(key: Uint8Array | string): void;
  /** Everything cached may be stale (a tracking connection dropped, the topology changed). */
  flush(reason: string): void;
  /** While paused (Cluster rediscovery), loads must not fill the near-cache. */
  pause(paused: boolean): void;
}

export interface RedisLinkOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://` (standalone). */
  url?: string;
  /** Cluster seed nodes, `host:port`; takes precedence over `url`. */
  clusterNodes?: string[];
  /** Cluster: send reads to replicas too (each replica connection is tracked as well). */
  readFromReplicas: boolean;
  connectTimeoutMs: number;
  /**
   * Broadcast tracking on this key prefix instead of default mode (bench/redis/tracking.ts
   * compares them); null = default mode, what the server uses.
   */
  broadcastPrefix?: string | null;
  sink: InvalidationSink;
  logger: Logger;
}

/** Replies as bytes: bulk strings as Buffers, maps (HGETALL) as flat [field, value, ...] arrays. */
const BYTES = {
  [RESP_TYPES.BLOB_STRING]: Buffer,
  [RESP_TYPES.SIMPLE_STRING]: Buffer,
  [RESP_TYPES.MAP]: Array,
};
const BYTES_OPTIONS = { typeMapping: BYTES };

type Arg = string | Buffer;

/** One master of the Cluster (or the standalone server), for commands sent to each (SCAN). */
export interface MasterNode {
  /** Its address (empty standalone). */
  readonly id: string;
  send(args: Arg[]): Promise<unknown>;
}

/**
 * Relays node-redis' client-side-cache events to our near-cache; caches nothing itself. The
 * sink is a private field: node-redis copies its options deeply, and a copy of the whole store
 * behind an enumerable field cost 9.5 s at start.
 */
class Tracking extends PooledClientSideCacheProvider {
  readonly #sink: InvalidationSink;
  readonly #on: string[];
  constructor(sink: InvalidationSink, broadcastPrefix: string | null) {
    super({ maxEntries: 1 });
    this.#sink = sink;
    this.#on =
      broadcastPrefix === null
        ? ["CLIENT", "TRACKING", "ON"]
        : ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", broadcastPrefix];
  }
  override trackingOn(): string[] {
    return this.#on;
  }
  override invalidate(key: Uint8Array | string | null): void {
    if (key === null) this.#sink.flush("Redis flushed the tracking table");
    else this.#sink.invalidate(key);
  }
  override clear(): void {
    this.#sink.flush("the Redis topology is being refreshed");
  }
  override onError(): void {
    this.#sink.flush("a Redis connection failed");
  }
  override onClose(): void {
    this.#sink.flush("a Redis connection closed");
  }
  override disable(): void {
    this.#sink.pause(true);
  }
  override enable(): void {
    this.#sink.pause(false);
  }
}

/** How soon after a node's connection fails the Cluster's slot map is read again, ms. */
const TOPOLOGY_REFRESH_MS = 500;
/** How often every master is pinged for the readiness probe, ms. */
const PROBE_EVERY_MS = 1000;

/**
 * One standalone server or one Cluster, with key routing and tracking on every connection.
 * Created unconnected: `start()` connects in the background and keeps trying until it can (the
 * server starts and stays up while Redis is down, not ready).
 */
export class RedisLink {
  private readonly client: RedisClientType | null;
  private readonly cluster: RedisClusterType | null;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private connected = false;
  private closing = false;
  private probeTimer: ReturnType<typeof setInterval> | null = null;
  /** Why the link is down, for the readiness probe; null while it is up. */
  lastError: string | null = "connecting";

  constructor(opts: RedisLinkOptions) {
    this.logger = opts.logger;
    this.timeoutMs = opts.connectTimeoutMs;
    const tracking = new Tracking(opts.sink, opts.broadcastPrefix ?? null);
    const socket = {
      connectTimeout: opts.connectTimeoutMs,
      // Retry fast, then every second: the server recovers by itself when Redis returns.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000),
    };
    // Calls fail at once while a connection is down (UNAVAILABLE), instead of queueing.
    const common = { RESP: 3 as const, disableOfflineQueue: true, clientSideCache: tracking };
    const onError = (err: Error) => this.failed(err.message);
    if (opts.clusterNodes !== undefined && opts.clusterNodes.length > 0) {
      this.client = null;
      this.cluster = createCluster({
        ...common,
        rootNodes: opts.clusterNodes.map((n) => ({ url: `redis://${n}` })),
        defaults: { socket, disableOfflineQueue: true },
        useReplicas: opts.readFromReplicas,
        // After a node's connection fails, the slot map is read again this soon (default 5 s):
        // a failover moves its slots to a replica within the cluster's node timeout.
        topologyRefreshOnReconnectionAttemptStrategy: TOPOLOGY_REFRESH_MS,
      }) as unknown as RedisClusterType;
      this.cluster.on("error", onError);
      this.cluster.on("node-error", onError);
    } else {
      this.cluster = null;
      this.client = createClient({ ...common, url: opts.url, socket }) as unknown as RedisClientType;
      this.client.on("error", onError);
    }
  }

  /** Connects in the background, retrying until it succeeds; then probes every second. */
  start(): void {
    void this.connectLoop();
  }

  /** Resolves once connected (tests, benchmarks); rejects after `ms`. */
  async whenConnected(ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (!this.ready) {
      if (performance.now() > until) throw new Error(`Redis not ready after ${ms} ms: ${this.lastError}`);
      await Bun.sleep(10);
    }
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        if (this.cluster !== null) await this.cluster.connect();
        else await this.client!.connect();
        this.connected = true;
        break;
      } catch (err) {
        this.failed((err as Error).message);
        await Bun.sleep(Math.min(100 * 2 ** attempt, 1000));
      }
    }
    if (this.closing) return;
    await this.probe();
    this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.probeTimer.unref();
  }

  /** PINGs every master (the standalone server): the link is ready when all answer in time. */
  private async probe(): Promise<void> {
    try {
      const clients =
        this.cluster !== null
          ? await Promise.all(this.cluster.masters.map((m) => this.cluster!.nodeClient(m)))
          : [this.client!];
      await withTimeout(Promise.all(clients.map((c) => c.sendCommand(["PING"]))), this.timeoutMs, "a PING");
      if (this.lastError !== null) this.logger.info("Redis ready", { was: this.lastError });
      this.lastError = null;
    } catch (err) {
      this.failed((err as Error).message);
    }
  }

  private failed(message: string): void {
    if (this.closing) return;
    if (this.lastError === null) this.logger.warn("Redis unavailable", { err: message });
    this.lastError = message;
  }

  /** True while every master answers (and, standalone, the connection is up). */
  get ready(): boolean {
    if (!this.connected || this.lastError !== null) return false;
    return this.cluster !== null ? this.cluster.isReady : this.client!.isReady;
  }

  /** Sends one command about `key` (routed by its slot in Cluster); replies as bytes. */
  send(key: Buffer, readonly: boolean, args: Arg[]): Promise<unknown> {
    if (this.cluster !== null) return this.cluster.sendCommand(key, readonly, args, BYTES_OPTIONS);
    return this.client!.sendCommand(args, BYTES_OPTIONS);
  }

  /**
   * Sends a keyless command (WAIT) to the master serving `key`, on the connection that carried
   * its writes. (Through the Cluster client, WAIT would go to every shard: its request policy is
   * all_shards, and one paused master would hold every write.)
   */
  async sendToMasterOf(key: Buffer, args: Arg[]): Promise<unknown> {
    if (this.cluster === null) return this.client!.sendCommand(args);
    const master = this.cluster.getSlotMaster(calculateSlot(key));
    const client = await this.cluster.nodeClient(master);
    return client.sendCommand(args);
  }

  /**
   * Every master now (the standalone server): an id of each (its address) and a way to send it
   * a keyless command (SCAN), replies as bytes.
   */
  async masterNodes(): Promise<MasterNode[]> {
    if (this.cluster === null) {
      const client = this.client!;
      return [{ id: "", send: (args) => client.sendCommand(args, BYTES_OPTIONS) }];
    }
    const cluster = this.cluster;
    return Promise.all(
      cluster.masters.map(async (m): Promise<MasterNode> => {
        const client = await cluster.nodeClient(m);
        return { id: m.address, send: (args) => client.sendCommand(args, BYTES_OPTIONS) };
      }),
    );
  }

  /** The hash slot of `key` in a Cluster (commands with several keys need one slot); 0 standalone. */
  slotOf(key: Buffer): number {
    return this.cluster === null ? 0 : calculateSlot(key);
  }

  /** An id of the master that serves `key` (the same for every key of that master). */
  masterOf(key: Buffer): string {
    if (this.cluster === null) return "";
    return this.cluster.getSlotMaster(calculateSlot(key))?.address ?? "";
  }

  /** Closes every connection (commands in flight are answered first). */
  async close(): Promise<void> {
    this.closing = true;
    if (this.probeTimer !== null) clearInterval(this.probeTimer);
    try {
      if (this.cluster !== null) {
        if (this.connected) await this.cluster.close();
        else this.cluster.destroy();
      } else if (this.client!.isOpen) await this.client!.close();
    } catch {
      // Closing a link that never connected.
    }
  }
}

/** `p`, or a rejection after `ms` naming `what`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
