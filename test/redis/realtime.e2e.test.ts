/**
 * Real-time features through real server processes (`bun src/main.ts`) and real TCP clients:
 * 50 connections incrementing and appending to one entity lose no update (one server over
 * memory; two servers over one Redis, so the compare-and-set meets contention from both), and a
 * feature-set publish and rollback through one server are seen by the other within the near-cache
 * staleness bound while its BatchGets never mix versions. The time until the other server reads
 * the new version is printed (a measurement, not an assertion).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import {
  connect,
  removeDir,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { until as waitUntil } from "../until.ts";
import { type RedisNode, startRedis } from "./harness.ts";

const CONNECTIONS = 50;
const UPDATES_PER_CONNECTION = 20;
/** NEAR_CACHE_MAX_STALENESS_MS of the Redis servers: the bound a publish must be seen within. */
const STALENESS_MS = 2000;
/** The longest a bounded wait polls, ms (a liveness bound, not a timing). */
const WAIT_MS = 30_000;

const servers: ServerProcess[] = [];
const clients: FeatureStoreClient[] = [];
const dirs: string[] = [];
let redis: RedisNode;

const until = (what: string, f: () => boolean | Promise<boolean>) => waitUntil(what, f, WAIT_MS, 2);

async function serve(extra: Record<string, string>): Promise<ServerProcess> {
  const dir = tempDir("realtime");
  dirs.push(dir);
  const s = await startServer(serverEnv(dir, extra), (p) => servers.push(p));
  await until("server ready", async () => (await s.httpStatus("/ready")) === 200);
  return s;
}

async function clientsOf(targets: ServerProcess[], n: number): Promise<FeatureStoreClient[]> {
  const made = await Promise.all(
    Array.from({ length: n }, (_, i) => connect(targets[i % targets.length]!, 1)),
  );
  clients.push(...made);
  return made;
}

/** 50 connections x 20 atomic updates of one entity: a counter, a double sum, a capped list. */
async function hammer(cs: FeatureStoreClient[], id: string): Promise<void> {
  await Promise.all(
    cs.map(async (c, i) => {
      for (let k = 0; k < UPDATES_PER_CONNECTION; k++)
        await c.updateFeatures(id, [
          { name: "n", increment: 1 },
          { name: "sum", increment: { double: 0.25 } },
          { name: "recent", append: [`${i}:${k}`], keepLast: 100 },
        ]);
    }),
  );
}

async function expectExact(c: FeatureStoreClient, id: string): Promise<void> {
  const r = await c.getFeatures(id);
  const total = CONNECTIONS * UPDATES_PER_CONNECTION;
  expect(r.features.n).toBe(total);
  expect(r.features.sum).toBe(total * 0.25);
  const recent = r.features.recent as string[];
  expect(recent.length).toBe(100);
  expect(new Set(recent).size).toBe(100);
}

beforeAll(async () => {
  redis = await startRedis();
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.stop();
  await redis?.stop();
  for (const d of dirs) removeDir(d);
});

describe("50 connections updating one entity", () => {
  test("over one memory server: every increment and append is counted", async () => {
    const s = await serve({ STORE: "memory" });
    const cs = await clientsOf([s], CONNECTIONS);
    await hammer(cs, "hot");
    await expectExact(cs[0]!, "hot");
  }, 60_000);

  test("over two servers sharing one Redis: the compare-and-set loses no update", async () => {
    const env = { STORE: "redis", REDIS_URL: redis.url, NEAR_CACHE_MAX_STALENESS_MS: String(STALENESS_MS) };
    const [a, b] = [await serve(env), await serve(env)];
    const cs = await clientsOf([a!, b!], CONNECTIONS);
    await hammer(cs, "hot-redis");
    await expectExact(cs[0]!, "hot-redis");
    await expectExact(cs[1]!, "hot-redis");
  }, 120_000);
});

describe("feature-set versions over two servers sharing one Redis", () => {
  test("publish and rollback through A are seen by B within the staleness bound, never mixed", async () => {
    const env = { STORE: "redis", REDIS_URL: redis.url, NEAR_CACHE_MAX_STALENESS_MS: String(STALENESS_MS) };
    const [sa, sb] = [await serve(env), await serve(env)];
    const [a, b] = await clientsOf([sa, sb], 2);
    const ids = Array.from({ length: 200 }, (_, i) => `m${i}`);
    for (const version of ["v1", "v2"])
      await a!.batchSet(
        ids.map((id) => ({ entityId: id, features: { model: version }, featureSet: "rank", version })),
      );
    await a!.publishVersion("rank", "v1");
    await until(
      "B reads v1",
      async () => (await b!.batchGet(ids, [], { featureSet: "rank" })).version === "v1",
    );

    // B reads in a loop while A publishes v2 then rolls back to v1: every answer is one version.
    let reads = 0;
    let mixed = 0;
    const seen = new Set<string>();
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        const r = await b!.batchGet(ids, [], { featureSet: "rank" });
        reads++;
        seen.add(r.version);
        if (r.results.some((x) => x.features.model !== r.version)) mixed++;
      }
    })();
    await a!.publishVersion("rank", "v2");
    const seenAfter = await until("B reads v2", () => seen.has("v2"));
    await a!.rollbackVersion("rank");
    await until(
      "B reads v1 again",
      async () => (await b!.batchGet(ids, [], { featureSet: "rank" })).version === "v1",
    );
    stop = true;
    await reader;
    console.log(
      `B saw the publish ${seenAfter.toFixed(1)} ms after A acknowledged it; ${reads} BatchGets of 200, ${mixed} mixed`,
    );
    expect(mixed).toBe(0);
    expect(reads).toBeGreaterThan(0);
    expect(await b!.getFeatureSet("rank")).toMatchObject({ current: "v1", previous: "v2" });
  }, 120_000);
});
