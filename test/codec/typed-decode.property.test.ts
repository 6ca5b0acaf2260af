/**
 * The typed decode's fast paths (one-field values, interned short strings, generated object
 * shapes) against the general decoder as it was before them (bench/micro/codec.before.ts), on
 * random answers: both must give the same typed values.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodeBatchGetResponseBefore,
  decodeGetFeaturesResponseBefore,
} from "../../bench/micro/codec.before.ts";
import { type FeatureInput, type FeaturesInput, writeFeatureMap } from "../../src/codec/features.ts";
import {
  type BatchGetResult,
  decodeBatchGetResponse,
  decodeGetFeaturesResponse,
  type GetFeaturesResult,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";

const names = fc.oneof(
  fc.constantFrom("a", "b", "clicks_7d", "__proto__", "constructor", "ünï", "x".repeat(130)),
  fc.string({ maxLength: 8 }),
);
const value: fc.Arbitrary<FeatureInput> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.constantFrom(2 ** 49 - 1, 2 ** 49, 2 ** 53 - 1, 2 ** 53 + 2, -1, 0),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.double().map((d) => ({ double: d })),
  fc.boolean(),
  fc.float32Array({ maxLength: 40 }),
  fc.integer({ min: 4000, max: 5000 }).map((n) => new Float32Array(n)),
  fc
    .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 3 })
    .map((xs) => new BigInt64Array(xs)),
  fc.string({ maxLength: 30 }),
  fc.constantFrom("US", "DE", "", "é", "日本", "a".repeat(24), "a".repeat(25)),
  fc.uint8Array({ maxLength: 4 }),
  fc.array(fc.string({ maxLength: 3 }), { maxLength: 2 }),
);
const record: fc.Arbitrary<FeaturesInput> = fc.array(fc.tuple(names, value), { maxLength: 24 }).map((kv) => {
  const out: FeaturesInput = Object.create(null);
  for (const [k, v] of kv) out[k] = v;
  return out;
});

/**
 * A decoded result with every Float32Array as a plain array: the fast path copies a float_list's
 * bytes exactly, NaN payload included, while the general decoder went through getFloat32
 * (canonical NaN), and Bun's toEqual compares typed arrays bit by bit. Plain arrays compare NaN
 * as NaN.
 */
function plain(x: unknown): unknown {
  if (x instanceof Float32Array) return Array.from(x);
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object" && !ArrayBuffer.isView(x)) {
    const out: Record<string, unknown> = Object.create(Object.getPrototypeOf(x));
    for (const k of Object.keys(x)) out[k] = plain((x as Record<string, unknown>)[k]);
    return out;
  }
  return x;
}

/** The fields the decoder before issue 12 had. */
function old(r: GetFeaturesResult) {
  return { entityId: r.entityId, found: r.found, features: r.features, missing: r.missing };
}
function oldBatch(b: BatchGetResult) {
  return { results: b.results.map(old), hits: b.hits, misses: b.misses };
}

/** A GetFeaturesResponse; every value with `eventTimeMs` and `maxAgeMs` (0: left out) first. */
function answer(id: string, f: FeaturesInput, found: boolean, eventTimeMs = 0, maxAgeMs = 0): Uint8Array {
  const w = new ProtoWriter(256);
  w.stringField(1, id);
  writeFeatureMap(w, 2, f, eventTimeMs, maxAgeMs);
  if (found) {
    w.byte(0x18);
    w.byte(1);
  }
  return w.finish();
}

describe("typed decode, fast paths against the general decoder", () => {
  test("GetFeatures answers decode to the same values", () => {
    fc.assert(
      fc.property(record, fc.string({ maxLength: 5 }), fc.boolean(), (f, id, found) => {
        const bytes = answer(id, f, found);
        const now = decodeGetFeaturesResponse(bytes);
        const before = decodeGetFeaturesResponseBefore(bytes);
        expect(plain(old(now))).toEqual(plain(before));
        expect(Object.getPrototypeOf(now.features)).toBe(null);
        expect(Object.keys(now.features)).toEqual(Object.keys(before.features));
      }),
      { numRuns: 500 },
    );
  });

  test("BatchGet answers of repeated shapes decode to the same values", () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 4 }), (recs) => {
        const w = new ProtoWriter(1024);
        // Each record twice: the second decode of a name list goes through its generated shape.
        for (let i = 0; i < recs.length * 2; i++) w.bytesField(1, answer(`e${i}`, recs[i >> 1]!, true));
        const bytes = w.finish();
        expect(plain(oldBatch(decodeBatchGetResponse(bytes)))).toEqual(
          plain(decodeBatchGetResponseBefore(bytes)),
        );
      }),
      { numRuns: 200 },
    );
  });

  test("values that carry an event time and a max age first decode to the same values, with their times", () => {
    // The general decoder before issue 12 skipped fields 10 and 11 as unknown: the fast path
    // stepping over them must give what it gave.
    const time = fc.oneof(
      fc.constantFrom(0, 1, 127, 128, 1_700_000_000_000, 2 ** 49 - 1, 2 ** 49, 2 ** 53 - 1),
      fc.integer({ min: 0, max: 2 ** 45 }),
    );
    fc.assert(
      fc.property(record, time, time, fc.boolean(), (f, t, maxAge, found) => {
        const bytes = answer("e", f, found, t, maxAge);
        const now = decodeGetFeaturesResponse(bytes, 0, bytes.length, true);
        expect(plain(old(now))).toEqual(plain(decodeGetFeaturesResponseBefore(bytes)));
        const times = now.eventTimes!;
        expect(Object.getPrototypeOf(times)).toBe(null);
        expect(Object.keys(times)).toEqual(Object.keys(now.features));
        for (const k of Object.keys(times)) expect(times[k]).toBe(t);
        expect(decodeGetFeaturesResponse(bytes).eventTimes).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });
});
