import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { codeOf } from "../codes.ts";
import { startTestTcpServer } from "./fixture.ts";

let srv: ReturnType<typeof startTestTcpServer>;
let client: FeatureStoreClient;

beforeAll(async () => {
  srv = startTestTcpServer();
  client = await FeatureStoreClient.connect({ servers: [`127.0.0.1:${srv.port}`], connectionsPerServer: 2 });
});
afterAll(async () => {
  await client.close();
  await srv.server.drain(1000);
});

describe("every method over real sockets", () => {
  test("SetFeatures then GetFeatures returns typed values", async () => {
    await client.setFeatures("user:1", {
      age: 31,
      score: 0.75,
      big: -(2n ** 62n),
      country: "FR",
      vip: false,
      raw: new Uint8Array([1, 2, 3]),
      emb: new Float32Array([0.1, 0.2, 0.3]),
    });
    const r = await client.getFeatures("user:1");
    expect(r.found).toBe(true);
    expect(r.features.age).toBe(31);
    expect(r.features.score).toBe(0.75);
    expect(r.features.big).toBe(-(2n ** 62n));
    expect(r.features.country).toBe("FR");
    expect(r.features.vip).toBe(false);
    expect(r.features.raw).toEqual(new Uint8Array([1, 2, 3]));
    expect(r.features.emb).toEqual(new Float32Array([0.1, 0.2, 0.3]));
  });

  test("merge keeps other names; replace drops them", async () => {
    await client.setFeatures("user:2", { a: 1, b: 2 });
    await client.setFeatures("user:2", { b: 3, c: 4 });
    expect({ ...(await client.getFeatures("user:2")).features }).toEqual({ a: 1, b: 3, c: 4 });
    await client.setFeatures("user:2", { z: 9 }, { replace: true });
    expect({ ...(await client.getFeatures("user:2")).features }).toEqual({ z: 9 });
  });

  test("a projection lists the requested names the entity lacks as missing", async () => {
    await client.setFeatures("user:3", { a: 1, b: 2, c: 3 });
    const r = await client.getFeatures("user:3", ["c", "x", "a"]);
    expect({ ...r.features }).toEqual({ a: 1, c: 3 });
    expect(r.missing).toEqual(["x"]);
  });

  test("an entity expires after its TTL and then reads as not found", async () => {
    await client.setFeatures("user:ttl", { a: 1 }, { ttlMs: 30 });
    expect((await client.getFeatures("user:ttl")).found).toBe(true);
    await Bun.sleep(80);
    const r = await client.getFeatures("user:ttl", ["a"]);
    expect(r.found).toBe(false);
    expect(r.missing).toEqual(["a"]);
  });

  test("DeleteFeatures removes names, then the entity", async () => {
    await client.setFeatures("user:4", { a: 1, b: 2 });
    expect(await client.deleteFeatures("user:4", ["a"])).toBe(true);
    expect({ ...(await client.getFeatures("user:4")).features }).toEqual({ b: 2 });
    expect(await client.deleteFeatures("user:4")).toBe(true);
    expect(await client.deleteFeatures("user:4")).toBe(false);
    expect((await client.getFeatures("user:4")).found).toBe(false);
  });

  test("BatchSet then a 1,000-entity BatchGet answers every entity in order", async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({
      entityId: `batch:${i}`,
      features: { i, name: `n${i}`, emb: new Float32Array([i, i + 0.5]) },
    }));
    expect(await client.batchSet(items)).toBe(1000);
    const ids = items.map((x) => x.entityId);
    ids[500] = "batch:absent";
    const r = await client.batchGet(ids);
    expect(r.results).toHaveLength(1000);
    expect(r.hits).toBe(999);
    expect(r.misses).toBe(1);
    r.results.forEach((res, i) => {
      expect(res.entityId).toBe(ids[i]!);
      if (i !== 500) {
        expect(res.features.i).toBe(i);
        expect(res.features.emb).toEqual(new Float32Array([i, i + 0.5]));
      }
    });
    expect(r.results[500]!.found).toBe(false);
  });

  test("bad input is an error with its status code", async () => {
    expect(await codeOf(client.getFeatures(""))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.setFeatures("u", { "": 1 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.call(42, new Uint8Array(0)))).toBe(Code.Unimplemented);
  });

  test("5,000 requests in flight on one connection are each answered with their own result", async () => {
    const one = await FeatureStoreClient.connect({
      servers: [`127.0.0.1:${srv.port}`],
      connectionsPerServer: 1,
    });
    try {
      await one.batchSet(
        Array.from({ length: 100 }, (_, i) => ({ entityId: `fl:${i}`, features: { v: i } })),
      );
      const calls = Array.from({ length: 5000 }, (_, k) => one.getFeatures(`fl:${k % 100}`, ["v"]));
      const results = await Promise.all(calls);
      results.forEach((r, k) => {
        expect(r.entityId).toBe(`fl:${k % 100}`);
        expect(r.features.v).toBe(k % 100);
      });
    } finally {
      await one.close();
    }
  });
});

describe("limits seen through the client", () => {
  test("a request over MAX_FRAME_BYTES fails RESOURCE_EXHAUSTED and the client reconnects for the next call", async () => {
    const small = startTestTcpServer({ maxFrameBytes: 4096 });
    const c = await FeatureStoreClient.connect({
      servers: [`127.0.0.1:${small.port}`],
      connectionsPerServer: 1,
      reconnect: { initialMs: 5, maxMs: 20 },
    });
    try {
      const err = await c
        .setFeatures("big", { blob: new Uint8Array(10_000) })
        .catch((e) => e as FeatureStoreError);
      expect(err).toBeInstanceOf(FeatureStoreError);
      expect((err as FeatureStoreError).code).toBe(Code.ResourceExhausted);
      expect((err as FeatureStoreError).message).toContain("MAX_FRAME_BYTES");
      let ok = false;
      for (let i = 0; i < 200 && !ok; i++) {
        ok = await c.setFeatures("small", { v: 1 }).then(
          () => true,
          () => Bun.sleep(5).then(() => false),
        );
      }
      expect(ok).toBe(true);
    } finally {
      await c.close();
      await small.server.drain(1000);
    }
  });
});
