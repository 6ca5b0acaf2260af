/**
 * The backends every contract suite runs against (store.contract.test.ts: the five methods;
 * realtime.contract.test.ts: event time, freshness, updates, windows, feature sets), and the
 * harness that opens a fresh store per test.
 * Memory is the cache alone; the SQLite variants put the cache in front of a file, once with a
 * cache large enough for everything and once with a cache of 4 entities, so that nearly every
 * read goes to the file; the Redis variants run against real redis-server processes (one
 * standalone server, one 3 masters + 3 replicas Cluster), the cache as their near-cache, once
 * with 4 entities. The durable ones also run the restart tests (for Redis: a new store over the
 * same Redis, as a restarted or second server).
 */
import { afterEach, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CacheOptions } from "../../src/cache/index.ts";
import type { FeatureStoreApi } from "../../src/codec/messages.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import type { FeatureService } from "../../src/service/service.ts";
import { openRedisApi } from "../redis/api.ts";
import { type RedisCluster, type RedisNode, startCluster, startRedis } from "../redis/harness.ts";

/** The typed API, answered now (local stores) or later (Redis), and the service behind it. */
export type Api = FeatureStoreApi & {
  readonly service: FeatureService;
  close(): void | Promise<void>;
};

export interface Backend {
  name: string;
  durable: boolean;
  /**
   * Expiry follows the injected clock (Redis keeps its own: its TTL tests use real time, in
   * test/redis). Event times, max ages and windows follow it on every backend.
   */
  clocked: boolean;
  /** Opens the store on `dir` (the same dir again = a restart) with the given clock. */
  open(dir: string, clock: { t: number }): Api | Promise<Api>;
  setUp?(): Promise<void>;
  tearDown?(): Promise<void>;
}

const cache = (maxEntries: number, clock?: { t: number }): CacheOptions => ({
  maxEntries,
  maxBytes: 1 << 22,
  shardCount: 2,
  now: clock === undefined ? undefined : () => clock.t,
});

/** A backend over Redis: each test's store gets its own key prefix (its dir's name). */
function redisBackend(
  name: string,
  entries: number,
  start: () => Promise<{ url?: string; nodes?: string[] }>,
) {
  let target: { url?: string; nodes?: string[] } = {};
  const backend: Backend = {
    name,
    durable: true,
    clocked: false,
    async setUp() {
      target = await start();
    },
    async open(dir, clock) {
      // The service's clock (event times, max ages, windows) is the test's; TTLs are Redis's.
      return openRedisApi(
        { url: target.url, clusterNodes: target.nodes },
        { entries, prefix: `${dir.slice(-8)}:` },
        { clock: () => clock.t },
      );
    },
  };
  return backend;
}

let standalone: RedisNode | null = null;
let cluster: RedisCluster | null = null;

export const BACKENDS: Backend[] = [
  {
    name: "memory",
    durable: false,
    clocked: true,
    open: (_dir, clock) => EmbeddedFeatureStore.create(cache(1000, clock)),
  },
  {
    name: "sqlite",
    durable: true,
    clocked: true,
    open: (dir, clock) => EmbeddedFeatureStore.open({ path: dir, cache: cache(1000, clock) }),
  },
  {
    name: "sqlite behind a 4-entity cache",
    durable: true,
    clocked: true,
    open: (dir, clock) =>
      EmbeddedFeatureStore.open({ path: dir, durability: "async", cache: cache(4, clock) }),
  },
  redisBackend("redis standalone", 1000, async () => {
    standalone ??= await startRedis();
    return { url: standalone.url };
  }),
  redisBackend("redis standalone behind a 4-entity near-cache", 4, async () => {
    standalone ??= await startRedis();
    return { url: standalone.url };
  }),
  redisBackend("redis cluster (3 masters + 3 replicas)", 1000, async () => {
    cluster ??= await startCluster();
    return { nodes: cluster.seeds.split(",") };
  }),
];

/**
 * Stops the Redis processes the backends started. Each suite file calls it in its own afterAll:
 * this module is loaded once per test process, so a module-level hook would run after the
 * first file only, and the next file would find the servers gone.
 */
export async function stopBackends(): Promise<void> {
  const s = standalone;
  const c = cluster;
  standalone = null;
  cluster = null;
  await s?.stop();
  await c?.stop();
}

/** The clock every store of a suite starts at (ms since the epoch). */
export const START = 1_000_000;

/**
 * Opens fresh stores of `backend` for the tests of one describe block, on the injected `clock`
 * (reset to START after each test), and closes and deletes them after each test.
 */
export function harness(backend: Backend) {
  const dirs: string[] = [];
  const opened: Api[] = [];
  const clock = { t: START };
  beforeAll(async () => {
    await backend.setUp?.();
  }, 60_000);
  afterEach(async () => {
    for (const fs of opened.splice(0)) await fs.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    clock.t = START;
  });
  async function fresh(): Promise<{ fs: Api; dir: string; reopen(): Promise<Api> }> {
    const dir = mkdtempSync(join(tmpdir(), "fs-contract-"));
    dirs.push(dir);
    let fs = await backend.open(dir, clock);
    opened.push(fs);
    return {
      get fs() {
        return fs;
      },
      dir,
      async reopen() {
        await fs.close();
        fs = await backend.open(dir, clock);
        opened.push(fs);
        return fs;
      },
    };
  }
  return { clock, fresh };
}
