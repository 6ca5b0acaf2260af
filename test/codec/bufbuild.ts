/**
 * The generated @bufbuild/protobuf types (test/gen) as the reference for the hand-written codec:
 * random FeatureValues in their form, and the conversion between their form and ours.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import fc from "fast-check";
import { type FeatureValue, WindowValue } from "../../src/codec/features.ts";
import {
  FeatureValueSchema,
  FloatListSchema,
  Int64ListSchema,
  type FeatureValue as PbValue,
  type Window as PbWindow,
  StringListSchema,
  WindowSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";

export type PbKind = PbValue["kind"];

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
/** Doubles that survive any reader bit for bit (NaN payloads may not). */
const double = fc.double({ noNaN: true });
const float32 = fc.float({ noNaN: true });

/** A window as the server stores it: up to 4 tiles. */
export const pbWindow: fc.Arbitrary<PbWindow> = fc
  .record({
    bucketMs: fc.bigInt({ min: 0n, max: 2n ** 40n }),
    retentionMs: fc.bigInt({ min: 0n, max: 2n ** 45n }),
    tiles: fc.array(
      fc.tuple(
        fc.bigInt({ min: 0n, max: 2n ** 45n }),
        fc.bigInt({ min: 0n, max: 2n ** 40n }),
        double,
        double,
        double,
      ),
      { maxLength: 4 },
    ),
  })
  .map(({ bucketMs, retentionMs, tiles }) =>
    create(WindowSchema, {
      spec: bucketMs === 0n && retentionMs === 0n ? undefined : { bucketMs, retentionMs },
      startsMs: tiles.map((t) => t[0]),
      counts: tiles.map((t) => t[1]),
      sums: tiles.map((t) => t[2]),
      mins: tiles.map((t) => t[3]),
      maxs: tiles.map((t) => t[4]),
    }),
  );

/** Every member of the FeatureValue oneof. */
export const pbKind: fc.Arbitrary<PbKind> = fc.oneof(
  int64.map((value) => ({ case: "intValue" as const, value })),
  double.map((value) => ({ case: "doubleValue" as const, value })),
  fc.string({ maxLength: 12 }).map((value) => ({ case: "stringValue" as const, value })),
  fc.boolean().map((value) => ({ case: "boolValue" as const, value })),
  fc.uint8Array({ maxLength: 6 }).map((value) => ({ case: "bytesValue" as const, value })),
  fc
    .array(float32, { minLength: 1, maxLength: 6 })
    .map((values) => ({ case: "floatList" as const, value: create(FloatListSchema, { values }) })),
  fc
    .array(int64, { minLength: 1, maxLength: 4 })
    .map((values) => ({ case: "intList" as const, value: create(Int64ListSchema, { values }) })),
  fc
    .array(fc.string({ maxLength: 4 }), { minLength: 1, maxLength: 3 })
    .map((values) => ({ case: "stringList" as const, value: create(StringListSchema, { values }) })),
  pbWindow.map((value) => ({ case: "window" as const, value })),
) as fc.Arbitrary<PbKind>;

/** An event time or max age: 0 (absent), small, today's, and the largest the fast path takes and past it. */
export const ms: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 16_384, 1_700_000_000_000, 2 ** 49 - 1, 2 ** 49, 2 ** 53 - 1),
  fc.integer({ min: 0, max: 2 ** 45 }),
);

/** A FeatureValue in the generated form. */
export function pbValue(kind: PbKind, eventTimeMs = 0, maxAgeMs = 0): PbValue {
  return create(FeatureValueSchema, {
    kind,
    eventTimeMs: BigInt(eventTimeMs),
    maxAgeMs: BigInt(maxAgeMs),
  } as MessageInitShape<typeof FeatureValueSchema>);
}

function int64Typed(x: bigint): number | bigint {
  return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
}

/** The typed value our decoder must give for a generated one. */
export function typedOf(kind: PbKind): FeatureValue {
  switch (kind.case) {
    case "intValue":
      return int64Typed(kind.value);
    case "doubleValue":
    case "stringValue":
    case "boolValue":
    case "bytesValue":
      return kind.value;
    case "floatList":
      return Float32Array.from(kind.value.values);
    case "intList":
      return BigInt64Array.from(kind.value.values);
    case "stringList":
      return kind.value.values;
    case "window":
      return windowOf(kind.value);
    default:
      throw new Error("a value with no kind");
  }
}

export function windowOf(w: PbWindow): WindowValue {
  return new WindowValue(
    Number(w.spec?.bucketMs ?? 0n),
    Number(w.spec?.retentionMs ?? 0n),
    w.startsMs.map(Number),
    w.counts.map(Number),
    Float64Array.from(w.sums),
    Float64Array.from(w.mins),
    Float64Array.from(w.maxs),
  );
}

/** A typed value (as decoded) in the generated form, for comparing what our encoder wrote. */
export function kindOf(v: FeatureValue): PbKind {
  const k = (c: string, value: unknown) => ({ case: c, value }) as PbKind;
  if (typeof v === "number") return Number.isSafeInteger(v) ? k("intValue", BigInt(v)) : k("doubleValue", v);
  if (typeof v === "bigint") return k("intValue", v);
  if (typeof v === "string") return k("stringValue", v);
  if (typeof v === "boolean") return k("boolValue", v);
  if (v instanceof Float32Array) return k("floatList", create(FloatListSchema, { values: Array.from(v) }));
  if (v instanceof BigInt64Array) return k("intList", create(Int64ListSchema, { values: Array.from(v) }));
  if (v instanceof Uint8Array) return k("bytesValue", v);
  if (v instanceof WindowValue)
    return k(
      "window",
      create(WindowSchema, {
        spec:
          v.bucketMs === 0 && v.retentionMs === 0
            ? undefined
            : { bucketMs: BigInt(v.bucketMs), retentionMs: BigInt(v.retentionMs) },
        startsMs: v.startsMs.map(BigInt),
        counts: v.counts.map(BigInt),
        sums: Array.from(v.sums),
        mins: Array.from(v.mins),
        maxs: Array.from(v.maxs),
      }),
    );
  return k("stringList", create(StringListSchema, { values: v }));
}

/** A map key arbitrary: any short name, "__proto__" included. */
export const featureName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("a", "clicks_7d", "__proto__", "ünï", "x".repeat(70)),
  fc.string({ minLength: 1, maxLength: 8 }),
);
