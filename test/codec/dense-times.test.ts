/**
 * The dense read and issue 12's answers: values carrying event times and max ages read into the
 * same cells as without them, names the answer holds back as stale are Stale cells, and a dense
 * request carries the read's max age and feature set version.
 */
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import {
  CELL_STATUS_NAMES,
  CellStatus,
  type DenseBatch,
  decodeDenseBatchGet,
  decodeDenseGet,
  encodeDenseRequest,
  FeatureVectorSpec,
} from "../../src/codec/dense.ts";
import {
  type FeatureInput,
  type FeaturesInput,
  writeFeatureValue,
  writeValueMeta,
} from "../../src/codec/features.ts";
import { Method } from "../../src/codec/frame.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import {
  BatchGetRequestSchema,
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { ms } from "./bufbuild.ts";

const NAMES = ["a", "b", "emb", "s", "blob", "__proto__"];
const value: fc.Arbitrary<FeatureInput> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.double().map((d) => ({ double: d })),
  fc.boolean(),
  fc.float32Array({ maxLength: 3 }),
  fc
    .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 3 })
    .map((xs) => new BigInt64Array(xs)),
  fc.constantFrom("US", "DE", ""),
  fc.uint8Array({ maxLength: 3 }),
);
const record: fc.Arbitrary<FeaturesInput> = fc
  .dictionary(fc.constantFrom(...NAMES), value, { maxKeys: NAMES.length })
  .map((d) => {
    const out: FeaturesInput = Object.create(null);
    for (const k of Object.keys(d)) out[k] = d[k]!;
    return out;
  });

const spec = new FeatureVectorSpec([
  { name: "a", default: -1 },
  "b",
  { name: "emb", width: 3, default: 0.5 },
  { name: "s", kind: "string", map: (s) => s.length + 100 },
  { name: "blob", kind: "bytes", map: (b) => b.length + 200 },
  "__proto__",
]);

type Place = "none" | "first" | "last";

/** A GetFeaturesResponse of `f`, every value's time metadata placed `where`. */
function answer(f: FeaturesInput, where: Place, t: number, maxAge: number): Uint8Array {
  const w = new ProtoWriter(256);
  w.stringField(1, "e");
  for (const name of Object.keys(f)) {
    const entry = w.beginLength(2);
    w.stringField(1, name);
    const v = w.beginLength(2);
    if (where === "first") writeValueMeta(w, t, maxAge);
    writeFeatureValue(w, name, f[name]!);
    if (where === "last") writeValueMeta(w, t, maxAge);
    w.endLength(v);
    w.endLength(entry);
  }
  w.byte(0x18);
  w.byte(1);
  return w.finish();
}

/** Everything a read wrote, bit for bit (NaN payloads included). */
function cells(d: DenseBatch): number[][] {
  return [
    Array.from(new Uint8Array(d.values.buffer, d.values.byteOffset, d.values.byteLength)),
    Array.from(d.present),
    Array.from(d.status),
    Array.from(d.found),
  ];
}

describe("dense read of values with event times", () => {
  test("values with times before or after them read into the same cells as without", () => {
    fc.assert(
      fc.property(record, ms, ms, (f, t, maxAge) => {
        const plain = cells(decodeDenseGet(spec, answer(f, "none", 0, 0)));
        expect(cells(decodeDenseGet(spec, answer(f, "first", t, maxAge)))).toEqual(plain);
        expect(cells(decodeDenseGet(spec, answer(f, "last", t, maxAge)))).toEqual(plain);
      }),
      { numRuns: 500 },
    );
  });

  test("a name the answer lists as stale is a Stale cell with its default; missing ones stay Missing", () => {
    const bytes = toBinary(
      GetFeaturesResponseSchema,
      create(GetFeaturesResponseSchema, {
        entityId: "e",
        found: true,
        features: { b: { kind: { case: "intValue", value: 4n }, eventTimeMs: 10n } },
        stale: ["a", "emb", "not-in-spec"],
        readTimeMs: 99n,
      }),
    );
    const d = decodeDenseGet(spec, bytes);
    const status = Array.from(d.status, (s) => CELL_STATUS_NAMES[s]);
    expect(status).toEqual(["stale", "ok", "stale", "missing", "missing", "missing"]);
    expect(Array.from(d.values.subarray(0, 5))).toEqual([-1, 4, 0.5, 0.5, 0.5]);
    expect(Array.from(d.present)).toEqual([0, 1, 0, 0, 0, 0]);
    expect(CellStatus.Stale).toBe(6);
  });

  test("in a BatchGet answer, stale names apply to their own row only", () => {
    const row = (stale: string[]) =>
      create(GetFeaturesResponseSchema, {
        entityId: "e",
        found: true,
        features: {
          a: { kind: { case: "intValue", value: 1n } },
          b: { kind: { case: "intValue", value: 2n } },
        },
        stale,
      });
    const w = new ProtoWriter(256);
    for (const r of [row(["emb"]), row([])]) w.bytesField(1, toBinary(GetFeaturesResponseSchema, r));
    const d = decodeDenseBatchGet(spec, w.finish());
    expect(d.status[2]).toBe(CellStatus.Stale);
    expect(d.status[spec.features + 2]).toBe(CellStatus.Missing);
  });
});

describe("dense requests", () => {
  test("carry the max age and the feature set version after the spec's names", () => {
    const out = spec.newBatch(2);
    const w = new ProtoWriter(64);
    const opts = { maxAgeMs: 5000, featureSet: "ranker", version: "v2" };
    expect(encodeDenseRequest(w, ["x", "y"], spec, out, opts)).toBe(Method.BatchGet);
    const batch = fromBinary(BatchGetRequestSchema, w.finish());
    expect([batch.entityIds, batch.featureNames, batch.maxAgeMs, batch.featureSet, batch.version]).toEqual([
      ["x", "y"],
      [...spec.names],
      5000n,
      "ranker",
      "v2",
    ]);
    expect(encodeDenseRequest(w, ["x"], spec, out, opts)).toBe(Method.GetFeatures);
    const one = fromBinary(GetFeaturesRequestSchema, w.finish());
    expect([one.entityId, one.maxAgeMs, one.featureSet, one.version]).toEqual(["x", 5000n, "ranker", "v2"]);
  });

  test("without options are the bytes they were", () => {
    const out = spec.newBatch(2);
    const w = new ProtoWriter(64);
    encodeDenseRequest(w, ["x", "y"], spec, out);
    const before = w.finish();
    encodeDenseRequest(w, ["x", "y"], spec, out, {});
    expect(w.finish()).toEqual(before);
  });
});
