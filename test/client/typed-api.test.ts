/**
 * The client's typed methods of issue 12 over a scripted transport: each sends its method's
 * request (read back with the generated types) and decodes the answer it is given. No server:
 * these pin the client's half of the protocol.
 */
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type ClientTransport,
  Code,
  FeatureStoreClient,
  FeatureStoreError,
  FeatureVectorSpec,
  Method,
} from "../../src/client/index.ts";
import {
  BatchGetRequestSchema,
  BatchGetResponseSchema,
  DeleteFeaturesRequestSchema,
  DropVersionRequestSchema,
  FeatureSetInfoSchema,
  GetFeatureSetRequestSchema,
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  PublishVersionRequestSchema,
  RollbackVersionRequestSchema,
  SetFeaturesRequestSchema,
  SetFeaturesResponseSchema,
  UpdateFeaturesRequestSchema,
  UpdateFeaturesResponseSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";

/** Records every call and answers with the next scripted body (an empty message when none is left). */
class ScriptedTransport implements ClientTransport {
  readonly calls: { method: number; body: Uint8Array }[] = [];
  readonly answers: Uint8Array[] = [];
  call(method: number, body: Uint8Array): Promise<Uint8Array> {
    this.calls.push({ method, body: body.slice() });
    return Promise.resolve(this.answers.shift() ?? new Uint8Array(0));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function scripted(...answers: Uint8Array[]): { client: FeatureStoreClient; t: ScriptedTransport } {
  const t = new ScriptedTransport();
  t.answers.push(...answers);
  return { client: new FeatureStoreClient(t), t };
}

const T = 1_700_000_000_000;

const GET_ANSWER = toBinary(
  GetFeaturesResponseSchema,
  create(GetFeaturesResponseSchema, {
    entityId: "u",
    found: true,
    features: {
      clicks: { kind: { case: "intValue", value: 3n }, eventTimeMs: BigInt(T) },
      plan: { kind: { case: "stringValue", value: "pro" }, eventTimeMs: BigInt(T - 500), maxAgeMs: 60_000n },
    },
    stale: ["ctr"],
    aggregates: [{ feature: "spend", windowMs: 3_600_000n, count: 2n, sum: 5, min: 1, max: 4, mean: 2.5 }],
    readTimeMs: BigInt(T + 10),
  }),
);

async function rejection(p: Promise<unknown>): Promise<FeatureStoreError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return err as FeatureStoreError;
  }
  throw new Error("expected a rejection");
}

describe("FeatureStoreClient, issue 12's typed API over a scripted transport", () => {
  test("getFeatures sends the read options and decodes stale names, aggregates and the read time", async () => {
    const { client, t } = scripted(GET_ANSWER);
    const r = await client.getFeatures("u", ["clicks", "plan", "ctr"], {
      maxAgeMs: 30_000,
      windows: [{ feature: "spend", windowMs: 3_600_000 }],
      featureSet: "ranker",
      version: "v7",
    });
    expect(t.calls[0]!.method).toBe(Method.GetFeatures);
    const req = fromBinary(GetFeaturesRequestSchema, t.calls[0]!.body);
    expect(req.entityId).toBe("u");
    expect(req.featureNames).toEqual(["clicks", "plan", "ctr"]);
    expect(req.maxAgeMs).toBe(30_000n);
    expect(req.windows.map((q) => [q.feature, q.windowMs])).toEqual([["spend", 3_600_000n]]);
    expect([req.featureSet, req.version]).toEqual(["ranker", "v7"]);
    expect({ ...r.features }).toEqual({ clicks: 3, plan: "pro" });
    expect(r.stale).toEqual(["ctr"]);
    expect(r.aggregates).toEqual([
      { feature: "spend", windowMs: 3_600_000, count: 2, sum: 5, min: 1, max: 4, mean: 2.5 },
    ]);
    expect(r.readTimeMs).toBe(T + 10);
    // A max age was given: the event times come with the features.
    expect({ ...r.eventTimes }).toEqual({ clicks: T, plan: T - 500 });
  });

  test("getFeatures fills eventTimes only when asked or given a max age", async () => {
    const { client } = scripted(GET_ANSWER, GET_ANSWER, GET_ANSWER);
    expect((await client.getFeatures("u")).eventTimes).toBeUndefined();
    expect((await client.getFeatures("u", undefined, { maxAgeMs: 0 })).eventTimes).toBeUndefined();
    expect((await client.getFeatures("u", undefined, { eventTimes: true })).eventTimes?.clicks).toBe(T);
  });

  test("batchGet sends the read options and returns the version read", async () => {
    const answer = toBinary(
      BatchGetResponseSchema,
      create(BatchGetResponseSchema, {
        results: [fromBinary(GetFeaturesResponseSchema, GET_ANSWER), { entityId: "v", missing: ["clicks"] }],
        hits: 1,
        misses: 1,
        version: "v7",
      }),
    );
    const { client, t } = scripted(answer);
    const r = await client.batchGet(["u", "v"], ["clicks"], { featureSet: "ranker", eventTimes: true });
    expect(t.calls[0]!.method).toBe(Method.BatchGet);
    const req = fromBinary(BatchGetRequestSchema, t.calls[0]!.body);
    expect([req.entityIds, req.featureSet, req.version]).toEqual([["u", "v"], "ranker", ""]);
    expect([r.hits, r.misses, r.version]).toEqual([1, 1, "v7"]);
    expect(r.results[0]!.eventTimes?.plan).toBe(T - 500);
    expect(r.results[1]!.found).toBe(false);
    expect({ ...r.results[1]!.eventTimes }).toEqual({});
  });

  test("setFeatures writes the event time and max age into every value and resolves with what was skipped", async () => {
    const skipped = toBinary(
      SetFeaturesResponseSchema,
      create(SetFeaturesResponseSchema, { skipped: ["b"] }),
    );
    const { client, t } = scripted(skipped, new Uint8Array(0));
    const r = await client.setFeatures(
      "u",
      { a: 1, b: "x" },
      { eventTimeMs: T, maxAgeMs: 60_000, featureSet: "ranker", version: "v8", ttlMs: 5000 },
    );
    expect(r).toEqual({ skipped: ["b"] });
    const req = fromBinary(SetFeaturesRequestSchema, t.calls[0]!.body);
    expect(Object.values(req.features).map((v) => [v.eventTimeMs, v.maxAgeMs])).toEqual([
      [BigInt(T), 60_000n],
      [BigInt(T), 60_000n],
    ]);
    expect([req.featureSet, req.version, req.ttlMs]).toEqual(["ranker", "v8", 5000n]);
    // Nothing skipped: one shared frozen result, no allocation.
    const none = await client.setFeatures("u", { a: 2 });
    expect(none.skipped).toEqual([]);
    expect(Object.isFrozen(none)).toBe(true);
  });

  test("deleteFeatures sends the feature set and version", async () => {
    const { client, t } = scripted(Uint8Array.of(0x08, 1));
    expect(await client.deleteFeatures("u", ["a"], { featureSet: "ranker", version: "v8" })).toBe(true);
    const req = fromBinary(DeleteFeaturesRequestSchema, t.calls[0]!.body);
    expect([req.entityId, req.featureNames, req.featureSet, req.version]).toEqual([
      "u",
      ["a"],
      "ranker",
      "v8",
    ]);
  });

  test("updateFeatures sends method 7 with every update and decodes skipped names and values", async () => {
    const answer = toBinary(
      UpdateFeaturesResponseSchema,
      create(UpdateFeaturesResponseSchema, {
        skipped: ["old"],
        values: { clicks: { kind: { case: "intValue", value: 8n }, eventTimeMs: BigInt(T) } },
      }),
    );
    const { client, t } = scripted(answer);
    const r = await client.updateFeatures(
      "u",
      [
        { name: "clicks", increment: 1 },
        { name: "spend", increment: { double: 2 } },
        { name: "recent", append: ["sku-1", "sku-2"], keepLast: 5, maxAgeMs: 1000 },
        { name: "amount", observe: 12.5, spec: { bucketMs: 60_000, retentionMs: 3_600_000 }, eventTimeMs: T },
        { name: "old", set: "x", eventTimeMs: T - 1 },
      ],
      { ttlMs: 10_000, featureSet: "ranker", version: "v8" },
    );
    expect(t.calls[0]!.method).toBe(Method.UpdateFeatures);
    expect(r.skipped).toEqual(["old"]);
    expect({ ...r.values }).toEqual({ clicks: 8 });
    const req = fromBinary(UpdateFeaturesRequestSchema, t.calls[0]!.body);
    expect([req.entityId, req.ttlMs, req.featureSet, req.version]).toEqual(["u", 10_000n, "ranker", "v8"]);
    expect(req.updates.map((u) => [u.name, u.op.case, u.eventTimeMs, u.maxAgeMs])).toEqual([
      ["clicks", "increment", 0n, 0n],
      ["spend", "increment", 0n, 0n],
      ["recent", "append", 0n, 1000n],
      ["amount", "observe", BigInt(T), 0n],
      ["old", "set", BigInt(T - 1), 0n],
    ]);
  });

  test("the feature set methods send their method numbers and decode FeatureSetInfo", async () => {
    const info = toBinary(
      FeatureSetInfoSchema,
      create(FeatureSetInfoSchema, { featureSet: "ranker", current: "v8", previous: "v7", dropping: ["v6"] }),
    );
    const { client, t } = scripted(info, info, info, info);
    const want = { featureSet: "ranker", current: "v8", previous: "v7", dropping: ["v6"] };
    expect(await client.publishVersion("ranker", "v8")).toEqual(want);
    expect(await client.rollbackVersion("ranker")).toEqual(want);
    expect(await client.dropVersion("ranker", "v6")).toEqual(want);
    expect(await client.getFeatureSet("ranker")).toEqual(want);
    expect(t.calls.map((c) => c.method)).toEqual([
      Method.PublishVersion,
      Method.RollbackVersion,
      Method.DropVersion,
      Method.GetFeatureSet,
    ]);
    const [pub, back, drop, get] = t.calls.map((c) => c.body);
    expect(fromBinary(PublishVersionRequestSchema, pub!)).toMatchObject({
      featureSet: "ranker",
      version: "v8",
    });
    expect(fromBinary(RollbackVersionRequestSchema, back!)).toMatchObject({ featureSet: "ranker" });
    expect(fromBinary(DropVersionRequestSchema, drop!)).toMatchObject({
      featureSet: "ranker",
      version: "v6",
    });
    expect(fromBinary(GetFeatureSetRequestSchema, get!)).toMatchObject({ featureSet: "ranker" });
  });

  test("getDense sends the max age and version and marks stale features", async () => {
    const answer = toBinary(
      GetFeaturesResponseSchema,
      create(GetFeaturesResponseSchema, {
        entityId: "u",
        found: true,
        features: { clicks: { kind: { case: "intValue", value: 3n }, eventTimeMs: BigInt(T) } },
        stale: ["ctr"],
      }),
    );
    const { client, t } = scripted(answer);
    const spec = new FeatureVectorSpec(["clicks", { name: "ctr", default: -1 }]);
    const d = await client.getDense(["u"], spec, { maxAgeMs: 1000, featureSet: "ranker", version: "v8" });
    const req = fromBinary(GetFeaturesRequestSchema, t.calls[0]!.body);
    expect([req.maxAgeMs, req.featureSet, req.version]).toEqual([1000n, "ranker", "v8"]);
    expect(Array.from(d.values)).toEqual([3, -1]);
    expect(Array.from(d.status)).toEqual([0, 6]);
  });

  test("input the client can check is rejected INVALID_ARGUMENT before anything is sent", async () => {
    const { client, t } = scripted();
    const bad: [string, Promise<unknown>][] = [
      ["eventTimeMs", client.setFeatures("u", { a: 1 }, { eventTimeMs: -5 })],
      ["maxAgeMs", client.setFeatures("u", { a: 1 }, { maxAgeMs: 1.5 })],
      ["maxAgeMs", client.getFeatures("u", undefined, { maxAgeMs: -1 })],
      ["windowMs", client.getFeatures("u", undefined, { windows: [{ feature: "w", windowMs: 0 }] })],
      ["feature", client.batchGet(["u"], undefined, { windows: [{ feature: "", windowMs: 60_000 }] })],
      ["name", client.updateFeatures("u", [{ name: "", increment: 1 }])],
      ["exactly one", client.updateFeatures("u", [{ name: "a", increment: 1, set: 2 } as never])],
      ["exactly one", client.updateFeatures("u", [{ name: "a" } as never])],
      ["keepLast", client.updateFeatures("u", [{ name: "a", append: ["x"], keepLast: 0 }])],
      ["append", client.updateFeatures("u", [{ name: "a", append: 3 as never, keepLast: 1 }])],
      [
        "observe",
        client.updateFeatures("u", [
          { name: "a", observe: "1" as never, spec: { bucketMs: 1, retentionMs: 1 } },
        ]),
      ],
      ["spec", client.updateFeatures("u", [{ name: "a", observe: 1 } as never])],
      ["increment", client.updateFeatures("u", [{ name: "a", increment: "1" as never }])],
      ["int64", client.updateFeatures("u", [{ name: "a", increment: 2n ** 63n }])],
      ["ttlMs", client.updateFeatures("u", [], { ttlMs: -1 })],
      ["featureSet", client.publishVersion("", "v1")],
      ["version", client.dropVersion("ranker", "")],
      ["featureSet", client.getFeatureSet(undefined as never)],
      ["featureSet", client.getFeatures("u", undefined, { featureSet: 7 as never })],
    ];
    for (const [what, p] of bad) {
      const err = await rejection(p);
      expect({ what, code: err.code }).toEqual({ what, code: Code.InvalidArgument });
      expect(err.message).toContain(what);
    }
    expect(t.calls).toEqual([]);
  });
});
