/**
 * Every transport over STORE=redis: the answers that wait for Redis (a near-cache miss, every
 * write) come back right on Connect (binary and JSON), gRPC-web and native gRPC, as they do on
 * TCP (the e2e tests), including errors raised by Redis' side (the feature limit in the write
 * script) and many concurrent calls whose answers come out of order.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type * as grpc from "@grpc/grpc-js";
import {
  call,
  type FeatureStoreTarget,
  featureStoreClient,
  type GetFeaturesResponse,
  ok,
  SERVICE,
  startFeatureStore,
} from "../grpc/fixture.ts";
import { type RedisNode, startRedis } from "./harness.ts";

let redis: RedisNode;
let target: FeatureStoreTarget;
let grpcClient: grpc.Client;

beforeAll(async () => {
  redis = await startRedis();
  target = await startFeatureStore({
    STORE: "redis",
    REDIS_URL: redis.url,
    CACHE_SIZE: "16",
    MAX_FEATURES_PER_ENTITY: "5",
  });
  const until = performance.now() + 10_000;
  while (!target.server.ready && performance.now() < until) await Bun.sleep(10);
  grpcClient = featureStoreClient(target.port);
}, 30_000);

afterAll(async () => {
  grpcClient?.close();
  await target?.shutdown();
  await redis?.stop();
});

/** A Connect JSON call: status and parsed body. */
async function connectJson(
  method: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${target.httpPort}/${SERVICE}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("transports over Redis", () => {
  test("Connect JSON: set, a read that misses the near-cache, a BatchGet of more entities than it holds, delete", async () => {
    expect(
      (
        await connectJson("SetFeatures", {
          entityId: "j1",
          features: { a: { intValue: "7", eventTimeMs: "5000" } },
        })
      ).status,
    ).toBe(200);
    const got = await connectJson("GetFeatures", { entityId: "j1" });
    expect(got.json).toEqual({
      entityId: "j1",
      features: { a: { intValue: "7", eventTimeMs: "5000" } },
      found: true,
    });
    const items = Array.from({ length: 40 }, (_, i) => ({
      entityId: `jb${i}`,
      features: { v: { intValue: String(i) } },
    }));
    expect((await connectJson("BatchSet", { items })).json).toEqual({ written: 40 });
    const batch = await connectJson("BatchGet", { entityIds: items.map((x) => x.entityId).reverse() });
    const results = batch.json.results as { entityId: string; features: { v: { intValue: string } } }[];
    expect(results.map((r) => r.features.v.intValue)).toEqual(items.map((_, i) => String(39 - i)));
    expect((await connectJson("DeleteFeatures", { entityId: "j1" })).json).toEqual({ deleted: true });
    expect((await connectJson("GetFeatures", { entityId: "j1" })).json).toEqual({ entityId: "j1" });
  });

  test("Connect: the feature limit enforced by Redis' write script is RESOURCE_EXHAUSTED (HTTP 429), not INTERNAL", async () => {
    await connectJson("SetFeatures", {
      entityId: "lim",
      features: { a: { intValue: "1" }, b: { intValue: "1" } },
    });
    const features = Object.fromEntries(["c", "d", "e", "f"].map((n) => [n, { intValue: "1" }]));
    const r = await connectJson("SetFeatures", { entityId: "lim", features });
    expect(r.status).toBe(429);
    expect(r.json.code).toBe("resource_exhausted");
    expect(String(r.json.message)).toContain("MAX_FEATURES_PER_ENTITY");
  });

  test("gRPC-web binary: a read that waits for Redis", async () => {
    await connectJson("SetFeatures", { entityId: "w1", features: { s: { stringValue: "web" } } });
    await redis.cli("HSET", "fs:w1", "t", "\x08\x03"); // invalidates the near-cache too
    // GetFeaturesRequest { entity_id: "w1" } = 0a 02 77 31, in a gRPC-web frame.
    const msg = new Uint8Array([0x0a, 0x02, 0x77, 0x31]);
    const frame = new Uint8Array(5 + msg.length);
    new DataView(frame.buffer).setUint32(1, msg.length);
    frame.set(msg, 5);
    const res = await fetch(`http://127.0.0.1:${target.httpPort}/${SERVICE}/GetFeatures`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: frame,
    });
    const body = new Uint8Array(await res.arrayBuffer());
    const text = new TextDecoder().decode(body);
    expect(text).toContain("web");
    expect(text).toContain("grpc-status: 0");
  });

  test("native gRPC: 200 concurrent reads of entities not in the near-cache all answer right", async () => {
    const items = Array.from({ length: 200 }, (_, i) => ({
      entity_id: `g${i}`,
      features: { v: { int_value: String(i) } },
    }));
    await ok(grpcClient, "BatchSet", { items });
    const answers = await Promise.all(
      items.map((x) => ok<GetFeaturesResponse>(grpcClient, "GetFeatures", { entity_id: x.entity_id })),
    );
    expect(answers.map((a) => a.features.v?.int_value)).toEqual(items.map((_, i) => String(i)));
    const over = await call(grpcClient, "SetFeatures", {
      entity_id: "g0",
      features: Object.fromEntries(["a", "b", "c", "d", "e"].map((n) => [n, { int_value: "1" }])),
    });
    expect(over.ok).toBe(false);
    if (!over.ok) expect(over.details).toContain("MAX_FEATURES_PER_ENTITY");
  });
});
