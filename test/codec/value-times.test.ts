/**
 * FeatureValues with their time metadata (event_time_ms = 10, max_age_ms = 11) and the window
 * member (9): how the client encodes one on its own, and that every decoder (one value, the typed
 * answer, the dense answer) takes the fields wherever a writer put them.
 */
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { CellStatus, decodeDenseGet, FeatureVectorSpec } from "../../src/codec/dense.ts";
import { WindowValue } from "../../src/codec/features.ts";
import { decodeGetFeaturesResponse } from "../../src/codec/messages.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { decodeFeatureValue, encodeFeatureValue } from "../../src/codec/value.ts";
import { valueEventTime, valueMaxAge } from "../../src/codec/value-meta.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureValueSchema, WindowSchema } from "../gen/featurestore/v1/featurestore_pb.ts";
import { pbValue, pbWindow, windowOf } from "./bufbuild.ts";

function varint(v: number): number[] {
  const out: number[] = [];
  while (v > 0x7f) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const T = 1_700_000_000_123;
const AGE = 60_000;
const EVENT = [0x50, ...varint(T)];
const MAX_AGE = [0x58, ...varint(AGE)];

/** A GetFeaturesResponse of entity "e", found, with one entry per [name, value bytes]. */
function answer(entries: [string, number[]][]): Uint8Array {
  const w = new ProtoWriter(256);
  w.stringField(1, "e");
  for (const [name, value] of entries) {
    const at = w.beginLength(2);
    w.stringField(1, name);
    w.bytesField(2, Uint8Array.from(value));
    w.endLength(at);
  }
  w.byte(0x18);
  w.byte(1);
  return w.finish();
}

describe("encodeFeatureValue", () => {
  test("writes the event time first, then the max age, then the value, as the server stores it", () => {
    const bytes = encodeFeatureValue(42, { eventTimeMs: T, maxAgeMs: AGE });
    expect(Array.from(bytes)).toEqual([...EVENT, ...MAX_AGE, 0x08, 42]);
    expect(valueEventTime(bytes, 0, bytes.length)).toBe(T);
    expect(valueMaxAge(bytes, 0, bytes.length)).toBe(AGE);
    const m = fromBinary(FeatureValueSchema, bytes);
    expect([m.eventTimeMs, m.maxAgeMs, m.kind.case, m.kind.value]).toEqual([
      BigInt(T),
      BigInt(AGE),
      "intValue",
      42n,
    ]);
    expect(decodeFeatureValue(bytes)).toBe(42);
  });

  test("leaves out a time that is 0 or absent", () => {
    expect(Array.from(encodeFeatureValue("x"))).toEqual([0x1a, 1, 0x78]);
    expect(Array.from(encodeFeatureValue("x", {}))).toEqual([0x1a, 1, 0x78]);
    expect(Array.from(encodeFeatureValue("x", { eventTimeMs: 0, maxAgeMs: AGE }))).toEqual([
      ...MAX_AGE,
      0x1a,
      1,
      0x78,
    ]);
  });

  test("rejects a negative, fractional or non-number time naming the option", () => {
    for (const meta of [
      { eventTimeMs: -1 },
      { eventTimeMs: 1.5 },
      { maxAgeMs: Number.NaN },
      { maxAgeMs: 2 ** 53 },
    ]) {
      let err: unknown;
      try {
        encodeFeatureValue(1, meta);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FeatureStoreError);
      expect((err as FeatureStoreError).code).toBe(Code.InvalidArgument);
      expect((err as FeatureStoreError).message).toContain(Object.keys(meta)[0]!);
    }
  });

  test("a window encodes to the bytes the generated types write, and decodes back to itself", () => {
    fc.assert(
      fc.property(pbWindow, (w) => {
        const theirs = toBinary(FeatureValueSchema, pbValue({ case: "window", value: w }));
        const typed = windowOf(w);
        expect(Array.from(encodeFeatureValue(typed))).toEqual(Array.from(theirs));
        const back = decodeFeatureValue(theirs);
        expect(back).toBeInstanceOf(WindowValue);
        expect(back).toEqual(typed);
      }),
      { numRuns: 300 },
    );
  });
});

describe("decoders take the time fields wherever a writer put them", () => {
  // Every order of event time (E), max age (A) and the value (V).
  const value = [0x11, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]; // double_value 1.5
  const orders: [string, number[]][] = [
    ["E A V", [...EVENT, ...MAX_AGE, ...value]],
    ["A E V", [...MAX_AGE, ...EVENT, ...value]],
    ["V E A", [...value, ...EVENT, ...MAX_AGE]],
    ["E V A", [...EVENT, ...value, ...MAX_AGE]],
    ["A V E", [...MAX_AGE, ...value, ...EVENT]],
    ["V A E", [...value, ...MAX_AGE, ...EVENT]],
    ["E V", [...EVENT, ...value]],
    ["V E", [...value, ...EVENT]],
  ];

  for (const [order, bytes] of orders) {
    test(`${order}: one value, the typed answer and the dense answer read 1.5 at its event time`, () => {
      expect(decodeFeatureValue(Uint8Array.from(bytes))).toBe(1.5);
      const a = answer([
        ["x", bytes],
        ["y", [0x08, 7]],
      ]);
      const r = decodeGetFeaturesResponse(a, 0, a.length, true);
      expect({ ...r.features }).toEqual({ x: 1.5, y: 7 });
      expect({ ...r.eventTimes }).toEqual({ x: T, y: 0 });
      const spec = new FeatureVectorSpec(["x", "y"]);
      const d = decodeDenseGet(spec, a);
      expect(Array.from(d.values)).toEqual([1.5, 7]);
      expect(Array.from(d.status)).toEqual([CellStatus.Ok, CellStatus.Ok]);
    });
  }

  test("an event time too long for the fast path (a negative int64) still reads", () => {
    const negative = [0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    const a = answer([["x", [...negative, 0x08, 3]]]);
    const r = decodeGetFeaturesResponse(a, 0, a.length, true);
    expect(r.features.x).toBe(3);
    expect(r.eventTimes?.x).toBe(-1);
    expect(decodeDenseGet(new FeatureVectorSpec(["x"]), a).values[0]).toBe(3);
  });

  test("a value of an event time and a max age but no value is malformed, never a crash", () => {
    const a = answer([["x", [...EVENT, ...MAX_AGE]]]);
    expect(() => decodeGetFeaturesResponse(a)).toThrow(/no value/);
    expect(() => decodeDenseGet(new FeatureVectorSpec(["x"]), a)).toThrow(/no value/);
  });

  test("a truncated event time is malformed, never a crash", () => {
    const a = answer([["x", [0x50, 0xff, 0xff]]]);
    expect(() => decodeGetFeaturesResponse(a)).toThrow(FeatureStoreError);
    expect(() => decodeDenseGet(new FeatureVectorSpec(["x"]), a)).toThrow(FeatureStoreError);
  });
});

describe("window values", () => {
  test("repeated fields packed, unpacked or split in several runs decode alike", () => {
    // spec {1: 60000, 2: 3600000}; starts 0 and 60000 unpacked; counts packed in two runs;
    // sums packed; mins and maxs unpacked.
    const w = new ProtoWriter(128);
    const spec = w.beginLength(1);
    w.tag(1, 0);
    w.varint(60_000);
    w.tag(2, 0);
    w.varint(3_600_000);
    w.endLength(spec);
    w.tag(2, 0);
    w.varint(0);
    w.tag(2, 0);
    w.varint(60_000);
    for (const c of [2, 5]) {
      const at = w.beginLength(3);
      w.varint(c);
      w.endLength(at);
    }
    w.tag(4, 2);
    w.varint(16);
    w.double(3.5);
    w.double(-1);
    for (const field of [5, 6])
      for (const x of [1, 2]) {
        w.tag(field, 1);
        w.double(field === 5 ? -x : x);
      }
    const windowBytes = w.finish();
    const expected = new WindowValue(
      60_000,
      3_600_000,
      [0, 60_000],
      [2, 5],
      Float64Array.of(3.5, -1),
      Float64Array.of(-1, -2),
      Float64Array.of(1, 2),
    );
    // As the generated types read it, then as ours does.
    const theirs = fromBinary(WindowSchema, windowBytes);
    expect(windowOf(theirs)).toEqual(expected);
    const value = [...EVENT, 0x4a, windowBytes.length, ...windowBytes];
    expect(decodeFeatureValue(Uint8Array.from(value))).toEqual(expected);
    const a = answer([["w", value]]);
    expect(decodeGetFeaturesResponse(a).features.w).toEqual(expected);
  });

  test("a WindowValue serialises to JSON with plain arrays", () => {
    const v = new WindowValue(10, 100, [0], [1], Float64Array.of(2), Float64Array.of(2), Float64Array.of(2));
    expect(JSON.parse(JSON.stringify({ w: v }))).toEqual({
      w: { bucketMs: 10, retentionMs: 100, startsMs: [0], counts: [1], sums: [2], mins: [2], maxs: [2] },
    });
  });

  test("a window value in an answer is a per-cell TypeMismatch for every kind of column", () => {
    const win = toBinary(
      FeatureValueSchema,
      create(FeatureValueSchema, {
        kind: {
          case: "window",
          value: {
            spec: { bucketMs: 1000n, retentionMs: 60_000n },
            startsMs: [0n],
            counts: [1n],
            sums: [1],
            mins: [1],
            maxs: [1],
          },
        },
        eventTimeMs: BigInt(T),
      }),
    );
    const a = answer([
      ["n", Array.from(win)],
      ["v", Array.from(win)],
      ["s", Array.from(win)],
      ["b", Array.from(win)],
      ["ok", [0x08, 9]],
    ]);
    const spec = new FeatureVectorSpec(
      [
        { name: "n", default: -1 },
        { name: "v", width: 2, default: -2 },
        { name: "s", kind: "string", map: () => 5, default: -3 },
        { name: "b", kind: "bytes", map: () => 6, default: -4 },
        "ok",
      ],
      {},
    );
    const d = decodeDenseGet(spec, a);
    expect(Array.from(d.status)).toEqual([
      CellStatus.TypeMismatch,
      CellStatus.TypeMismatch,
      CellStatus.TypeMismatch,
      CellStatus.TypeMismatch,
      CellStatus.Ok,
    ]);
    expect(Array.from(d.values)).toEqual([-1, -2, -2, -3, -4, 9]);
    expect(Array.from(d.present)).toEqual([0, 0, 0, 0, 1]);
  });
});
