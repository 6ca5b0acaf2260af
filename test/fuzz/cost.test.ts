/**
 * The cost of one request grows linearly with the names it carries (issue 8). Before the
 * fix, SetFeatures compared each name with every later one, and a projection, a merge and a
 * partial delete compared every requested name with every stored one: 8,000 names took
 * 0.25-0.7 s per request at 8c44c13 (2-core AMD EPYC VM, bun 1.4.5: set 354 ms, merge
 * 720, projection 610, delete of half 255), and a 4 MiB request of short names would hold the
 * event loop for minutes. Linear work takes 1-10 ms there; the budget leaves room both ways.
 */
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Method } from "../../src/codec/frame.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import {
  DeleteFeaturesRequestSchema,
  type FeatureValue,
  FeatureValueSchema,
  GetFeaturesRequestSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";

/** Names per request: near the default maxFeatureNames (10,000), where quadratic work shows. */
const NAMES = 8000;
/** Best-of-3 budget per request, ms. */
const BUDGET_MS = 100;

describe("cost of many names", () => {
  const store = new MemoryStore({
    maxEntries: 64,
    maxBytes: 64 << 20,
    shardCount: 1,
    maxEntryBytes: 16 << 20,
  });
  const service = new FeatureService(store, { maxFeatureNames: NAMES, maxFeaturesPerEntity: NAMES });
  const out = new ProtoWriter(1 << 20);
  const names = Array.from({ length: NAMES }, (_, i) => `feature_${i}`);
  const features: Record<string, FeatureValue> = {};
  for (const n of names) features[n] = create(FeatureValueSchema, { kind: { case: "intValue", value: 1n } });
  const set = (replace: boolean) =>
    toBinary(
      SetFeaturesRequestSchema,
      create(SetFeaturesRequestSchema, { entityId: "e", features, replace }),
    );
  const replaceBody = set(true);
  const mergeBody = set(false);
  const getBody = toBinary(
    GetFeaturesRequestSchema,
    create(GetFeaturesRequestSchema, { entityId: "e", featureNames: names }),
  );
  const deleteBody = toBinary(
    DeleteFeaturesRequestSchema,
    create(DeleteFeaturesRequestSchema, { entityId: "e", featureNames: names.slice(0, NAMES / 2) }),
  );

  const call = (method: number, body: Uint8Array) => {
    out.reset();
    service.handle(method, body, 0, body.length, out);
  };
  /** Best of three timings of `method` on `body`, each after `before`. */
  const bestOf3 = (method: number, body: Uint8Array, before = () => {}) => {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      before();
      const t0 = performance.now();
      call(method, body);
      best = Math.min(best, performance.now() - t0);
    }
    return best;
  };

  test(`SetFeatures, a merge, GetFeatures and DeleteFeatures of ${NAMES} names each take under ${BUDGET_MS} ms`, () => {
    const reset = () => call(Method.SetFeatures, replaceBody);
    const ms = {
      replace: bestOf3(Method.SetFeatures, replaceBody),
      merge: bestOf3(Method.SetFeatures, mergeBody, reset),
      project: bestOf3(Method.GetFeatures, getBody, reset),
      deleteHalf: bestOf3(Method.DeleteFeatures, deleteBody, reset),
    };
    const over = Object.entries(ms).filter(([, t]) => t > BUDGET_MS);
    expect(over.map(([k, t]) => `${k}: ${t.toFixed(1)} ms`)).toEqual([]);
  });
});
