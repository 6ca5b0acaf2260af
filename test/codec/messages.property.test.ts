/**
 * The hand-written encoders and decoders of the client's messages against the generated
 * @bufbuild/protobuf types (test/gen): what we write, they read as meant; what they write, we
 * read as meant. Random inputs, fast-check.
 */
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import type { FeatureInput, FeaturesInput } from "../../src/codec/features.ts";
import {
  decodeBatchGetResponse,
  decodeFeatureSetInfo,
  decodeField1Varint,
  decodeGetFeaturesResponse,
  decodeSetFeaturesResponse,
  decodeUpdateFeaturesResponse,
  encodeBatchGetRequest,
  encodeBatchSetRequest,
  encodeDeleteFeaturesRequest,
  encodeFeatureSetRequest,
  encodeGetFeaturesRequest,
  encodeSetFeatures,
  encodeSetVersionRequest,
  encodeUpdateFeaturesRequest,
  type FeatureUpdateInput,
  type ReadOptions,
  type SetFeaturesItem,
  type SetOptions,
} from "../../src/codec/messages.ts";
import { decodeFeatureValue, encodeFeatureValue } from "../../src/codec/value.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import {
  BatchGetRequestSchema,
  BatchGetResponseSchema,
  BatchSetRequestSchema,
  BatchSetResponseSchema,
  DeleteFeaturesRequestSchema,
  FeatureSetInfoSchema,
  FeatureValueSchema,
  GetFeatureSetRequestSchema,
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  type FeatureUpdate as PbUpdate,
  type FeatureValue as PbValue,
  PublishVersionRequestSchema,
  RollbackVersionRequestSchema,
  SetFeaturesRequestSchema,
  SetFeaturesResponseSchema,
  UpdateFeaturesRequestSchema,
  UpdateFeaturesResponseSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { featureName, kindOf, ms, type PbKind, pbKind, pbValue, typedOf } from "./bufbuild.ts";

const RUNS = { numRuns: 300 };

function encoded(write: (w: ProtoWriter) => void): Uint8Array {
  const w = new ProtoWriter(64);
  write(w);
  return w.finish();
}

/**
 * Typed values as `toEqual` compares them well: float arrays as plain arrays, objects (a
 * WindowValue included) as null-prototype objects of their own properties ("__proto__" too).
 */
function plain(x: unknown): unknown {
  if (x instanceof Float32Array || x instanceof Float64Array) return Array.from(x);
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object" && !ArrayBuffer.isView(x)) {
    const out: Record<string, unknown> = Object.create(null);
    for (const k of Object.keys(x)) out[k] = plain((x as Record<string, unknown>)[k]);
    return out;
  }
  return x;
}

const names = fc.uniqueArray(featureName, { maxLength: 5 });
const setName = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/);
const optionalName = fc.option(setName, { nil: undefined });
const windows = fc.array(
  fc.record({ feature: featureName, windowMs: fc.integer({ min: 1, max: 2 ** 45 }) }),
  { maxLength: 3 },
);
const readOptions: fc.Arbitrary<ReadOptions> = fc.record(
  { maxAgeMs: ms, windows, featureSet: setName, version: setName, eventTimes: fc.boolean() },
  { requiredKeys: [] },
);
const inputValue: fc.Arbitrary<FeatureInput> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.double({ noNaN: true }).map((d) => ({ double: d })),
  fc.boolean(),
  fc.string({ maxLength: 8 }),
  fc.uint8Array({ maxLength: 4 }),
  fc.array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 4 }).map((xs) => Float32Array.from(xs)),
  fc
    .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 3 })
    .map((xs) => BigInt64Array.from(xs)),
  fc.array(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 3 }),
);
const features: fc.Arbitrary<FeaturesInput> = fc
  .array(fc.tuple(featureName, inputValue), { maxLength: 6 })
  .map((kv) => {
    const out: FeaturesInput = Object.create(null);
    for (const [k, v] of kv) out[k] = v;
    return out;
  });
const setOptions: fc.Arbitrary<SetOptions> = fc.record(
  {
    ttlMs: ms,
    replace: fc.boolean(),
    eventTimeMs: ms,
    maxAgeMs: ms,
    featureSet: setName,
    version: setName,
  },
  { requiredKeys: [] },
);

/**
 * Checks a map<string, FeatureValue> as the generated types read it against what was written with
 * `o`'s times: each value reads as our own decoder reads our encoding of it.
 */
function expectWritten(got: { [k: string]: PbValue }, wrote: FeaturesInput, o: SetOptions | undefined): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(wrote).sort());
  for (const name of Object.keys(wrote)) {
    const v = got[name]!;
    expect(v.eventTimeMs).toBe(BigInt(o?.eventTimeMs ?? 0));
    expect(v.maxAgeMs).toBe(BigInt(o?.maxAgeMs ?? 0));
    expect(plain(typedOf(v.kind))).toEqual(plain(decodeFeatureValue(encodeFeatureValue(wrote[name]!))));
  }
}

describe("requests our encoders write, as the generated types read them", () => {
  test("GetFeaturesRequest carries the read options", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), names, readOptions, (id, ns, o) => {
        const m = fromBinary(
          GetFeaturesRequestSchema,
          encoded((w) => encodeGetFeaturesRequest(w, id, ns, o)),
        );
        expect(m.entityId).toBe(id);
        expect(m.featureNames).toEqual(ns);
        expect(m.maxAgeMs).toBe(BigInt(o.maxAgeMs ?? 0));
        expect(m.windows.map((q) => ({ feature: q.feature, windowMs: Number(q.windowMs) }))).toEqual([
          ...(o.windows ?? []),
        ]);
        expect(m.featureSet).toBe(o.featureSet ?? "");
        expect(m.version).toBe(o.version ?? "");
      }),
      RUNS,
    );
  });

  test("BatchGetRequest carries the read options", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1 }), { maxLength: 4 }),
        names,
        readOptions,
        (ids, ns, o) => {
          const m = fromBinary(
            BatchGetRequestSchema,
            encoded((w) => encodeBatchGetRequest(w, ids, ns, o)),
          );
          expect(m.entityIds).toEqual(ids);
          expect(m.featureNames).toEqual(ns);
          expect(m.maxAgeMs).toBe(BigInt(o.maxAgeMs ?? 0));
          expect(m.windows.map((q) => q.feature)).toEqual((o.windows ?? []).map((q) => q.feature));
          expect(m.featureSet).toBe(o.featureSet ?? "");
          expect(m.version).toBe(o.version ?? "");
        },
      ),
      RUNS,
    );
  });

  test("SetFeaturesRequest puts the event time and max age in every value, before the value", () => {
    fc.assert(
      fc.property(features, fc.option(setOptions, { nil: undefined }), (f, o) => {
        const bytes = encoded((w) => encodeSetFeatures(w, "e", f, o));
        const m = fromBinary(SetFeaturesRequestSchema, bytes);
        expectWritten(m.features, f, o);
        expect(m.ttlMs).toBe(BigInt(o?.ttlMs ?? 0));
        expect(m.replace).toBe(o?.replace ?? false);
        expect(m.featureSet).toBe(o?.featureSet ?? "");
        expect(m.version).toBe(o?.version ?? "");
        // Canonical order: each value starts with 0x50 when it has an event time, else 0x58 when
        // it has a max age, else with its oneof member.
        const first = (o?.eventTimeMs ?? 0) > 0 ? 0x50 : (o?.maxAgeMs ?? 0) > 0 ? 0x58 : -1;
        if (first > 0) for (const v of valueBytes(bytes)) expect(v[0]).toBe(first);
      }),
      RUNS,
    );
  });

  test("BatchSetRequest items carry their own times and versions", () => {
    const item: fc.Arbitrary<SetFeaturesItem> = fc
      .tuple(fc.string({ minLength: 1 }), features, setOptions)
      .map(([entityId, f, o]) => ({ entityId, features: f, ...o }));
    fc.assert(
      fc.property(fc.array(item, { maxLength: 3 }), (items) => {
        const m = fromBinary(
          BatchSetRequestSchema,
          encoded((w) => encodeBatchSetRequest(w, items)),
        );
        expect(m.items.length).toBe(items.length);
        items.forEach((it, i) => {
          const got = m.items[i]!;
          expect(got.entityId).toBe(it.entityId);
          expectWritten(got.features, it.features, it);
          expect(got.featureSet).toBe(it.featureSet ?? "");
          expect(got.version).toBe(it.version ?? "");
        });
      }),
      { numRuns: 100 },
    );
  });

  test("DeleteFeaturesRequest carries the feature set and version", () => {
    fc.assert(
      fc.property(names, optionalName, optionalName, (ns, featureSet, version) => {
        const bytes = encoded((w) => encodeDeleteFeaturesRequest(w, "e", ns, { featureSet, version }));
        const m = fromBinary(DeleteFeaturesRequestSchema, bytes);
        expect([m.entityId, m.featureNames, m.featureSet, m.version]).toEqual([
          "e",
          ns,
          featureSet ?? "",
          version ?? "",
        ]);
      }),
      RUNS,
    );
  });

  test("UpdateFeaturesRequest carries every kind of update with its times", () => {
    const times = { eventTimeMs: ms, maxAgeMs: ms };
    const update: fc.Arbitrary<FeatureUpdateInput> = fc.oneof(
      fc.record({ name: featureName, set: inputValue, ...times }, { requiredKeys: ["name", "set"] }),
      fc.record(
        {
          name: featureName,
          increment: fc.oneof(
            fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
            fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
            fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
            fc.double({ noNaN: true }).map((d) => ({ double: d })),
          ),
          ...times,
        },
        { requiredKeys: ["name", "increment"] },
      ),
      fc.record(
        {
          name: featureName,
          append: fc.oneof(
            fc.array(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 3 }),
            fc
              .array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 3 })
              .map((xs) => Float32Array.from(xs)),
            fc
              .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { minLength: 1, maxLength: 3 })
              .map((xs) => BigInt64Array.from(xs)),
          ),
          keepLast: fc.integer({ min: 1, max: 1000 }),
          ...times,
        },
        { requiredKeys: ["name", "append", "keepLast"] },
      ),
      fc.record(
        {
          name: featureName,
          observe: fc.double({ noNaN: true }),
          spec: fc.record({
            bucketMs: fc.integer({ min: 1, max: 2 ** 30 }),
            retentionMs: fc.integer({ min: 1, max: 2 ** 40 }),
          }),
          eventTimeMs: ms,
        },
        { requiredKeys: ["name", "observe", "spec"] },
      ),
    );
    fc.assert(
      fc.property(
        fc.array(update, { maxLength: 5 }),
        fc.record({ ttlMs: ms, featureSet: setName, version: setName }, { requiredKeys: [] }),
        (updates, o) => {
          const m = fromBinary(
            UpdateFeaturesRequestSchema,
            encoded((w) => encodeUpdateFeaturesRequest(w, "e", updates, o)),
          );
          expect(m.entityId).toBe("e");
          expect(m.ttlMs).toBe(BigInt(o.ttlMs ?? 0));
          expect(m.featureSet).toBe(o.featureSet ?? "");
          expect(m.version).toBe(o.version ?? "");
          expect(m.updates.length).toBe(updates.length);
          updates.forEach((u, i) => {
            expectUpdate(m.updates[i]!, u);
          });
        },
      ),
      RUNS,
    );
  });

  test("the feature set requests carry the set and the version", () => {
    fc.assert(
      fc.property(setName, setName, (s, v) => {
        const pub = fromBinary(
          PublishVersionRequestSchema,
          encoded((w) => encodeSetVersionRequest(w, s, v)),
        );
        expect([pub.featureSet, pub.version]).toEqual([s, v]);
        const back = fromBinary(
          RollbackVersionRequestSchema,
          encoded((w) => encodeFeatureSetRequest(w, s)),
        );
        expect(back.featureSet).toBe(s);
        const get = fromBinary(
          GetFeatureSetRequestSchema,
          encoded((w) => encodeFeatureSetRequest(w, s)),
        );
        expect(get.featureSet).toBe(s);
      }),
      { numRuns: 100 },
    );
  });
});

/** One FeatureUpdate as read by the generated types against the update it came from. */
function expectUpdate(got: PbUpdate, u: FeatureUpdateInput): void {
  expect(got.name).toBe(u.name);
  expect(got.eventTimeMs).toBe(BigInt(u.eventTimeMs ?? 0));
  expect(got.maxAgeMs).toBe(BigInt("maxAgeMs" in u ? (u.maxAgeMs ?? 0) : 0));
  const op = got.op;
  if ("set" in u) {
    expect(op.case).toBe("set");
    const v = op.value as PbValue;
    expect(plain(typedOf(v.kind))).toEqual(plain(decodeFeatureValue(encodeFeatureValue(u.set))));
  } else if ("increment" in u) {
    expect(op.case).toBe("increment");
    const d = (op.value as { delta: { case: string; value: unknown } }).delta;
    const inc = u.increment;
    if (typeof inc === "bigint") expect(d).toEqual({ case: "intDelta", value: inc });
    else if (typeof inc === "number" && Number.isSafeInteger(inc))
      expect(d).toEqual({ case: "intDelta", value: BigInt(inc) });
    else expect(d).toEqual({ case: "doubleDelta", value: typeof inc === "number" ? inc : inc.double });
  } else if ("append" in u) {
    expect(op.case).toBe("append");
    const a = op.value as { values?: PbValue; keepLast: number };
    expect(a.keepLast).toBe(u.keepLast);
    expect(plain(typedOf(a.values!.kind))).toEqual(plain(u.append));
  } else {
    expect(op.case).toBe("observe");
    const o = op.value as { value: number; spec?: { bucketMs: bigint; retentionMs: bigint } };
    expect(o.value).toBe(u.observe === 0 ? 0 : u.observe);
    expect(o.spec?.bucketMs).toBe(BigInt(u.spec.bucketMs));
    expect(o.spec?.retentionMs).toBe(BigInt(u.spec.retentionMs));
  }
}

/** The FeatureValue bytes of every map entry (field 2) of a SetFeaturesRequest. */
function valueBytes(req: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let p = 0;
  const varint = () => {
    let x = 0;
    let mul = 1;
    for (;;) {
      const b = req[p++]!;
      x += (b & 0x7f) * mul;
      if (b < 0x80) return x;
      mul *= 128;
    }
  };
  while (p < req.length) {
    const tag = varint();
    const wt = tag & 7;
    if (wt === 0) varint();
    else if (wt === 2) {
      const len = varint();
      if (tag === 0x12) {
        // entry: 0a <len> name 12 <len> value
        let q = p + 1;
        const nameLen = req[q++]!; // names here are under 128 bytes
        q += nameLen + 1;
        let vl = 0;
        let mul = 1;
        for (;;) {
          const b = req[q++]!;
          vl += (b & 0x7f) * mul;
          if (b < 0x80) break;
          mul *= 128;
        }
        out.push(req.subarray(q, q + vl));
      }
      p += len;
    } else throw new Error(`unexpected wire type ${wt}`);
  }
  return out;
}

// ---- answers ---------------------------------------------------------------------------------

const valueEntry = fc.record({ kind: pbKind, eventTimeMs: ms, maxAgeMs: ms });
const valueMap = fc.dictionary(featureName, valueEntry, { maxKeys: 6 }).map((d) => {
  const out: Record<string, { kind: PbKind; eventTimeMs: number; maxAgeMs: number }> = Object.create(null);
  for (const k of Object.keys(d)) out[k] = d[k]!;
  return out;
});
const aggregate = fc.record({
  feature: featureName,
  windowMs: fc.integer({ min: 0, max: 2 ** 45 }),
  count: fc.integer({ min: 0, max: 2 ** 40 }),
  sum: fc.double({ noNaN: true }),
  min: fc.double({ noNaN: true }),
  max: fc.double({ noNaN: true }),
  mean: fc.double({ noNaN: true }),
});
const answerParts = fc.record({
  entityId: fc.string({ maxLength: 6 }),
  values: valueMap,
  found: fc.boolean(),
  missing: fc.array(featureName, { maxLength: 3 }),
  stale: fc.array(featureName, { maxLength: 3 }),
  aggregates: fc.array(aggregate, { maxLength: 3 }),
  readTimeMs: ms,
});
type AnswerParts = typeof answerParts extends fc.Arbitrary<infer T> ? T : never;

/** The answer as the generated types write it: each value's oneof first, then fields 10 and 11. */
function pbAnswer(a: AnswerParts) {
  const features: Record<string, PbValue> = Object.create(null);
  for (const k of Object.keys(a.values)) {
    const v = a.values[k]!;
    features[k] = pbValue(v.kind, v.eventTimeMs, v.maxAgeMs);
  }
  return create(GetFeaturesResponseSchema, {
    entityId: a.entityId,
    features,
    found: a.found,
    missing: a.missing,
    stale: a.stale,
    aggregates: a.aggregates.map((g) => ({ ...g, windowMs: BigInt(g.windowMs), count: BigInt(g.count) })),
    readTimeMs: BigInt(a.readTimeMs),
  });
}

/**
 * The same answer with every value as the server stores it (event time, max age, then the
 * oneof): map entries written by hand, the rest by the generated types (protobuf merges them).
 */
function canonicalAnswer(a: AnswerParts): Uint8Array {
  const rest = toBinary(
    GetFeaturesResponseSchema,
    create(GetFeaturesResponseSchema, { ...pbAnswer(a), features: {} }),
  );
  const w = new ProtoWriter(256);
  for (const k of Object.keys(a.values)) {
    const v = a.values[k]!;
    const entry = w.beginLength(2);
    w.stringField(1, k);
    const value = w.beginLength(2);
    if (v.eventTimeMs > 0) {
      w.byte(0x50);
      w.varint(v.eventTimeMs);
    }
    if (v.maxAgeMs > 0) {
      w.byte(0x58);
      w.varint(v.maxAgeMs);
    }
    w.raw(toBinary(FeatureValueSchema, pbValue(v.kind)));
    w.endLength(value);
    w.endLength(entry);
  }
  w.raw(rest);
  return w.finish();
}

function expectAnswer(
  got: ReturnType<typeof decodeGetFeaturesResponse>,
  a: AnswerParts,
  times: boolean,
): void {
  expect(got.entityId).toBe(a.entityId);
  expect(got.found).toBe(a.found);
  expect(got.missing).toEqual(a.missing);
  expect(got.stale).toEqual(a.stale);
  expect(got.aggregates).toEqual(a.aggregates);
  expect(got.readTimeMs).toBe(a.readTimeMs);
  const want: Record<string, unknown> = Object.create(null);
  const wantTimes: Record<string, number> = Object.create(null);
  for (const k of Object.keys(a.values)) {
    want[k] = plain(typedOf(a.values[k]!.kind));
    wantTimes[k] = a.values[k]!.eventTimeMs;
  }
  expect(plain(got.features)).toEqual(want);
  if (times) expect(plain(got.eventTimes)).toEqual(wantTimes);
  else expect(got.eventTimes).toBeUndefined();
}

describe("answers the generated types write, as our decoders read them", () => {
  test("GetFeaturesResponse: values with times after the oneof, stale names, aggregates, read time", () => {
    fc.assert(
      fc.property(answerParts, fc.boolean(), (a, times) => {
        const bytes = toBinary(GetFeaturesResponseSchema, pbAnswer(a));
        expectAnswer(decodeGetFeaturesResponse(bytes, 0, bytes.length, times), a, times);
      }),
      RUNS,
    );
  });

  test("GetFeaturesResponse: values as the server stores them (times first) read the same", () => {
    fc.assert(
      fc.property(answerParts, (a) => {
        const bytes = canonicalAnswer(a);
        expectAnswer(decodeGetFeaturesResponse(bytes, 0, bytes.length, true), a, true);
      }),
      RUNS,
    );
  });

  test("an answer with nothing stale and no aggregates shares one frozen empty array of each", () => {
    const bytes = toBinary(GetFeaturesResponseSchema, create(GetFeaturesResponseSchema, { entityId: "e" }));
    const a = decodeGetFeaturesResponse(bytes);
    const b = decodeGetFeaturesResponse(bytes);
    expect(a.stale).toBe(b.stale);
    expect(a.aggregates).toBe(b.aggregates);
    expect(Object.isFrozen(a.stale)).toBe(true);
    expect(Object.isFrozen(a.aggregates)).toBe(true);
    expect(a.readTimeMs).toBe(0);
  });

  test("BatchGetResponse: results in order, counts and the version read", () => {
    fc.assert(
      fc.property(fc.array(answerParts, { maxLength: 3 }), setName, fc.boolean(), (parts, version, times) => {
        const bytes = toBinary(
          BatchGetResponseSchema,
          create(BatchGetResponseSchema, { results: parts.map(pbAnswer), hits: 7, misses: 2, version }),
        );
        const got = decodeBatchGetResponse(bytes, times);
        expect([got.hits, got.misses, got.version]).toEqual([7, 2, version]);
        expect(got.results.length).toBe(parts.length);
        parts.forEach((a, i) => {
          expectAnswer(got.results[i]!, a, times);
        });
      }),
      { numRuns: 150 },
    );
  });

  test("SetFeaturesResponse: the skipped names; none is one shared frozen result", () => {
    fc.assert(
      fc.property(fc.array(featureName, { maxLength: 4 }), (skipped) => {
        const got = decodeSetFeaturesResponse(
          toBinary(SetFeaturesResponseSchema, create(SetFeaturesResponseSchema, { skipped })),
        );
        expect(got.skipped).toEqual(skipped);
      }),
      RUNS,
    );
    const empty = decodeSetFeaturesResponse(new Uint8Array(0));
    expect(decodeSetFeaturesResponse(new Uint8Array(0))).toBe(empty);
    expect(Object.isFrozen(empty)).toBe(true);
    expect(Object.isFrozen(empty.skipped)).toBe(true);
  });

  test("BatchSetResponse: the count written, whatever was skipped", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.array(fc.record({ item: fc.nat(100), names: fc.array(featureName, { maxLength: 2 }) }), {
          maxLength: 3,
        }),
        (written, skipped) => {
          const bytes = toBinary(
            BatchSetResponseSchema,
            create(BatchSetResponseSchema, { written, skipped }),
          );
          expect(decodeField1Varint(bytes)).toBe(written);
        },
      ),
      RUNS,
    );
  });

  test("UpdateFeaturesResponse: skipped names and the values after their increments", () => {
    fc.assert(
      fc.property(fc.array(featureName, { maxLength: 3 }), valueMap, (skipped, values) => {
        const pb: Record<string, PbValue> = Object.create(null);
        for (const k of Object.keys(values)) {
          const v = values[k]!;
          pb[k] = pbValue(v.kind, v.eventTimeMs, v.maxAgeMs);
        }
        const got = decodeUpdateFeaturesResponse(
          toBinary(
            UpdateFeaturesResponseSchema,
            create(UpdateFeaturesResponseSchema, { skipped, values: pb }),
          ),
        );
        expect(got.skipped).toEqual(skipped);
        expect(Object.getPrototypeOf(got.values)).toBe(null);
        const want: Record<string, unknown> = Object.create(null);
        for (const k of Object.keys(values)) want[k] = plain(typedOf(values[k]!.kind));
        expect(plain(got.values)).toEqual(want);
      }),
      RUNS,
    );
  });

  test("FeatureSetInfo: the set, current, previous and dropping versions", () => {
    fc.assert(
      fc.property(
        setName,
        fc.string(),
        fc.string(),
        fc.array(setName, { maxLength: 3 }),
        (s, cur, prev, dropping) => {
          const bytes = toBinary(
            FeatureSetInfoSchema,
            create(FeatureSetInfoSchema, { featureSet: s, current: cur, previous: prev, dropping }),
          );
          expect(decodeFeatureSetInfo(bytes)).toEqual({
            featureSet: s,
            current: cur,
            previous: prev,
            dropping,
          });
        },
      ),
      RUNS,
    );
  });
});

describe("values our encoders write, as the generated types read them", () => {
  test("every kind, a window included, round-trips through the generated FeatureValue", () => {
    fc.assert(
      fc.property(pbKind, (kind) => {
        const typed = typedOf(kind);
        // Ours -> theirs: the value's kind as it was.
        const bytes = encoded((w) => encodeSetFeatures(w, "e", { v: typed }, undefined));
        const m = fromBinary(SetFeaturesRequestSchema, bytes);
        expect(plain(typedOf(m.features.v!.kind))).toEqual(plain(typed));
        // Theirs -> ours, through our encoding of the typed form. A whole double reads back as
        // a number, which the typed API writes as an int unless wrapped as { double: x } (or -0,
        // which stays a double so that its sign survives).
        const whole =
          kind.case === "doubleValue" && Number.isSafeInteger(kind.value) && !Object.is(kind.value, -0);
        expect(kindOf(typed)).toEqual(whole ? { case: "intValue", value: BigInt(kind.value) } : kind);
      }),
      RUNS,
    );
  });
});
