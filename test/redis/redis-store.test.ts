/**
 * The Redis store against a real redis-server: what the contract suite cannot show, because it
 * needs Redis' own clock or a second writer (TTLs in real time, writes by other clients, the
 * coherence pitfalls: an invalidation overtaking a load, a dropped tracking connection, lost
 * invalidations and the staleness bound), the layout a batch job writes directly, and the
 * bounds (the miss queue, the feature limit in the write script).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { decodeFeatureValue, encodeFeatureValue } from "../../src/client/index.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { PENDING } from "../../src/store/types.ts";
import { until as waitUntil } from "../until.ts";
import { openRedisApi, type RedisApi } from "./api.ts";
import { type RedisNode, startRedis } from "./harness.ts";
import { varintFields } from "./store-fixture.ts";

/** Polling step and the longest any bounded wait of this file polls, ms. */
const POLL_MS = 5;
const WAIT_MS = 10_000;

const until = (what: string, f: () => boolean | Promise<boolean>) => waitUntil(what, f, WAIT_MS, POLL_MS);

async function codeOf(f: () => Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await f();
    return { code: Code.OK, message: "" };
  } catch (err) {
    const e = FeatureStoreError.from(err);
    return { code: e.code, message: e.message };
  }
}

let redis: RedisNode;
const opened: RedisApi[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  if (!redis.running) console.log(redis.log);
  await redis.stop();
});
afterEach(async () => {
  for (const api of opened.splice(0)) await api.close();
  await redis.cli("FLUSHALL");
});

async function open(...args: Parameters<typeof openRedisApi> extends [unknown, ...infer R] ? R : never) {
  const api = await openRedisApi({ url: redis.url }, ...args);
  opened.push(api);
  return api;
}

describe("the Redis layout", () => {
  test("an entity written with HSET by another program, values from encodeFeatureValue, reads back typed", async () => {
    const fs = await open();
    const hset = (field: string, value: Uint8Array) =>
      redis.cli("HSET", "fs:job:1", field, Buffer.from(value).toString("latin1"));
    // redis-cli takes arguments as text: these values are ASCII-safe bytes.
    await hset("n", encodeFeatureValue(42));
    await hset("s", encodeFeatureValue("abc"));
    const r = await fs.getFeatures("job:1");
    expect(r.found).toBe(true);
    expect({ ...r.features }).toEqual({ n: 42, s: "abc" });
    expect(decodeFeatureValue(encodeFeatureValue(new Float32Array([0.5, 2])))).toEqual(
      new Float32Array([0.5, 2]),
    );
  });

  test("what the server writes is one hash per entity, one field per feature, the value a FeatureValue", async () => {
    const fs = await open();
    await fs.setFeatures("u:7", { n: 5, d: { double: 0.5 } }, { ttlMs: 60_000 });
    expect(await redis.cli("TYPE", "fs:u:7")).toBe("hash");
    expect((await redis.cli("HKEYS", "fs:u:7")).split("\n").sort()).toEqual(["d", "n"]);
    // Canonical: 0x50 <varint event_time_ms> (stamped by the server), then 0x08 0x05: int_value 5.
    const key = Buffer.from("fs:u:7");
    const n = (await fs.store.connection.send(key, true, ["HGET", key, "n"])) as Buffer;
    expect(n[0]).toBe(0x50);
    expect(varintFields(n).get(10)).toBeGreaterThan(Date.now() - 60_000);
    expect([...n.subarray(n.length - 2)]).toEqual([0x08, 0x05]);
    expect(Number(await redis.cli("PTTL", "fs:u:7"))).toBeGreaterThan(0);
  });

  test("a hash field that is not a FeatureValue is left out of the answer, the rest served", async () => {
    const fs = await open();
    await redis.cli("HSET", "fs:mixed", "good", "\x08\x07", "bad", "not a value");
    const r = await fs.getFeatures("mixed");
    expect({ ...r.features }).toEqual({ good: 7 });
    expect(fs.store.stats.skippedFields).toBe(1);
  });
});

describe("TTL in Redis' own time", () => {
  test("an entity expires with its key; deleting names keeps the expiry", async () => {
    const fs = await open();
    await fs.setFeatures("t", { a: 1, b: 2 }, { ttlMs: 400 });
    expect((await fs.getFeatures("t")).found).toBe(true);
    expect(await fs.deleteFeatures("t", ["b"])).toBe(true);
    expect(Number(await redis.cli("PTTL", "fs:t"))).toBeGreaterThan(0);
    await until("Redis expired the key", async () => (await redis.cli("EXISTS", "fs:t")) === "0");
    expect((await fs.getFeatures("t")).found).toBe(false);
  });

  test("a write without a TTL removes the one the entity had (PERSIST)", async () => {
    const fs = await open();
    await fs.setFeatures("p", { a: 1 }, { ttlMs: 60_000 });
    await fs.setFeatures("p", { b: 2 });
    expect(await redis.cli("PTTL", "fs:p")).toBe("-1");
  });
});

describe("coherence", () => {
  test("a write by another Redis client invalidates the near-cache", async () => {
    const fs = await open();
    await fs.setFeatures("c", { v: 1 });
    expect((await fs.getFeatures("c")).features.v).toBe(1);
    expect((await fs.getFeatures("c")).features.v).toBe(1); // a near-cache hit now
    await redis.cli("HSET", "fs:c", "v", "\x08\x02");
    await until("the new value is served", async () => (await fs.getFeatures("c")).features.v === 2);
    expect(fs.store.stats.invalidations).toBeGreaterThan(0);
  });

  test("a second server's write is seen by the first", async () => {
    const a = await open();
    const b = await open();
    await a.setFeatures("shared", { v: 1 });
    expect((await b.getFeatures("shared")).features.v).toBe(1);
    await a.setFeatures("shared", { v: 2 });
    await until("b serves the new value", async () => (await b.getFeatures("shared")).features.v === 2);
  });

  test("two servers merging different features into one entity keep both (writes are changes, not records)", async () => {
    const a = await open();
    const b = await open();
    await a.setFeatures("m", { base: 0 });
    expect((await b.getFeatures("m")).found).toBe(true); // b caches the old record
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0 ? a.setFeatures("m", { [`a${i}`]: i }) : b.setFeatures("m", { [`b${i}`]: i }),
      ),
    );
    const r = await a.getFeatures("m");
    expect(Object.keys(r.features).length).toBe(51);
  });

  test("an invalidation that arrives while the entity is being loaded: the load answers its waiters but is not cached", async () => {
    const fs = await open();
    const { store } = fs;
    await fs.setFeatures("race", { v: 1 });
    const key = new TextEncoder().encode("race");
    expect(store.find(key, 0, key.length)).toBe(PENDING);
    const loaded = store.loaded();
    store.invalidate("fs:race"); // as Redis would push it for a write applied meanwhile
    await loaded;
    expect(store.find(key, 0, key.length)).toBeGreaterThanOrEqual(0); // the waiter's answer
    expect(store.cache.find(key, 0, key.length)).toBe(-1); // but nothing was cached
  });

  test("a dropped tracking connection flushes the near-cache, and reads work again after the reconnect", async () => {
    const fs = await open();
    for (let i = 0; i < 20; i++) await fs.setFeatures(`k${i}`, { v: i });
    await fs.batchGet(Array.from({ length: 20 }, (_, i) => `k${i}`));
    expect(fs.store.cache.size).toBe(20);
    await redis.cli("CLIENT", "KILL", "TYPE", "normal");
    await until("the near-cache is flushed", () => fs.store.cache.size === 0);
    expect(fs.store.stats.flushes).toBeGreaterThan(0);
    await until("the store is ready again", () => fs.store.ready);
    expect((await fs.getFeatures("k7")).features.v).toBe(7);
  });

  test("if every invalidation were lost, nothing is served past NEAR_CACHE_MAX_STALENESS_MS", async () => {
    const fs = await open({ maxStalenessMs: 300 });
    fs.store.invalidate = () => {}; // invalidations lost
    await fs.setFeatures("lost", { v: 1 });
    expect((await fs.getFeatures("lost")).features.v).toBe(1);
    await redis.cli("HSET", "fs:lost", "v", "\x08\x02");
    expect((await fs.getFeatures("lost")).features.v).toBe(1); // stale: from the near-cache
    await until(
      "the staleness bound expires it",
      async () => (await fs.getFeatures("lost")).features.v === 2,
    );
  });
});

describe("misses", () => {
  test("concurrent misses of one entity share one Redis read (single-flight), absence included", async () => {
    const fs = await open();
    await fs.setFeatures("hot", { v: 1 });
    const before = fs.store.stats.loads;
    const results = await Promise.all(Array.from({ length: 100 }, () => fs.getFeatures("hot")));
    expect(results.every((r) => r.features.v === 1)).toBe(true);
    expect(fs.store.stats.loads - before).toBe(1);
    await Promise.all(Array.from({ length: 100 }, () => fs.getFeatures("nobody")));
    expect(fs.store.stats.loads - before).toBe(2);
    await fs.getFeatures("nobody"); // cached absence
    expect(fs.store.stats.loads - before).toBe(2);
  });

  test("a BatchGet of 1,000 ids is answered in order from one round of loads", async () => {
    const fs = await open({ entries: 4 });
    const items = Array.from({ length: 1000 }, (_, i) => ({ entityId: `b${i}`, features: { v: i } }));
    expect(await fs.batchSet(items)).toBe(1000);
    const before = fs.store.stats.loads;
    const ids = items.map((x) => x.entityId).reverse();
    const r = await fs.batchGet(ids);
    expect(r.hits).toBe(1000);
    expect(r.results.map((x) => x.features.v)).toEqual(ids.map((id) => Number(id.slice(1))));
    expect(fs.store.stats.loads - before).toBe(1000);
  });

  test("past REDIS_MAX_PENDING_LOADS a read fails RESOURCE_EXHAUSTED naming the limit; the store keeps serving", async () => {
    const fs = await open({ maxPendingLoads: 10 });
    const r = await codeOf(() => fs.batchGet(Array.from({ length: 50 }, (_, i) => `q${i}`)));
    expect(r.code).toBe(Code.ResourceExhausted);
    expect(r.message).toContain("REDIS_MAX_PENDING_LOADS");
    await fs.setFeatures("after", { v: 1 });
    await until(
      "the queue drained",
      async () => (await codeOf(() => fs.getFeatures("after"))).code === Code.OK,
    );
    expect((await fs.getFeatures("after")).features.v).toBe(1);
  });
});

describe("writes", () => {
  test("MAX_FEATURES_PER_ENTITY is enforced atomically by the write script, the entity unchanged", async () => {
    const fs = await open({ maxFeaturesPerEntity: 3 }, { maxFeaturesPerEntity: 3 });
    await fs.setFeatures("lim", { a: 1, b: 2 });
    const r = await codeOf(() => fs.setFeatures("lim", { c: 3, d: 4 }));
    expect(r.code).toBe(Code.ResourceExhausted);
    expect(r.message).toContain("MAX_FEATURES_PER_ENTITY");
    expect({ ...(await fs.getFeatures("lim")).features }).toEqual({ a: 1, b: 2 });
    await fs.setFeatures("lim", { a: 10, c: 3 }); // one new name: 3 in all
    expect({ ...(await fs.getFeatures("lim")).features }).toEqual({ a: 10, b: 2, c: 3 });
    const batch = await codeOf(() =>
      fs.batchSet([
        { entityId: "ok", features: { x: 1 } },
        { entityId: "lim", features: { z: 1 } },
      ]),
    );
    expect(batch.code).toBe(Code.ResourceExhausted);
    expect(batch.message).toStartWith("items[1]: ");
  });

  test("the write script survives a SCRIPT FLUSH (NOSCRIPT: sent again in full)", async () => {
    const fs = await open();
    await fs.setFeatures("s1", { v: 1 });
    await redis.cli("SCRIPT", "FLUSH");
    await fs.setFeatures("s1", { w: 2 });
    expect({ ...(await fs.getFeatures("s1")).features }).toEqual({ v: 1, w: 2 });
  });

  test("REDIS_WAIT_REPLICAS without a replica: the write is refused UNAVAILABLE, not acknowledged", async () => {
    const fs = await open({ waitReplicas: 1, waitTimeoutMs: 50 });
    const r = await codeOf(() => fs.setFeatures("w", { v: 1 }));
    expect(r.code).toBe(Code.Unavailable);
    expect(r.message).toContain("REDIS_WAIT_REPLICAS");
  });
});
