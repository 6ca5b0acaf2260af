/**
 * Regression tests for issue 8's service-side defects: quadratic work, unbounded answers,
 * records standard decoders reject, and client input reported as INTERNAL. Each failed on the
 * code before the fix (the quadratic ones by running past their timeout: the inputs take
 * seconds to minutes with pairwise comparison and well under a second linearly).
 */
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Method } from "../../src/codec/frame.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { encodeUtf8, ProtoWriter, WireType } from "../../src/codec/wire.ts";
import { FeatureService, MAX_TTL_MS, type ServiceOptions } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import {
  BatchGetRequestSchema,
  BatchGetResponseSchema,
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";

function setup(options: Partial<ServiceOptions> = {}, maxEntryBytes = 64 * 1024) {
  const store = new MemoryStore({ maxEntries: 10_000, maxBytes: 256 << 20, shardCount: 4, maxEntryBytes });
  return { store, service: new FeatureService(store, options) };
}

/** Calls the service; returns the answer bytes, or throws the FeatureStoreError. */
function call(
  service: FeatureService,
  method: number,
  body: Uint8Array,
  out = new ProtoWriter(64),
): Uint8Array {
  out.reset();
  service.handle(method, body, 0, body.length, out);
  return out.finish();
}

function errorOf(f: () => unknown): FeatureStoreError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return err as FeatureStoreError;
  }
  throw new Error("expected an error");
}

/** A SetFeaturesRequest with `n` int features named f0..f(n-1). */
function manyFeatures(id: string, n: number): Uint8Array {
  const features: Record<string, { kind: { case: "intValue"; value: bigint } }> = {};
  for (let i = 0; i < n; i++) features[`f${i}`] = { kind: { case: "intValue", value: BigInt(i) } };
  return toBinary(SetFeaturesRequestSchema, create(SetFeaturesRequestSchema, { entityId: id, features }));
}

/** A SetFeaturesRequest whose one feature "v" holds the raw FeatureValue bytes `value`. */
function rawValue(id: string, value: number[]): Uint8Array {
  const w = new ProtoWriter(256);
  w.bytesField(1, encodeUtf8(id));
  const entry = w.beginLength(2);
  w.bytesField(1, encodeUtf8("v"));
  w.bytesField(2, new Uint8Array(value));
  w.endLength(entry);
  return w.finish();
}

function get(service: FeatureService, id: string, names: string[] = []) {
  const body = toBinary(
    GetFeaturesRequestSchema,
    create(GetFeaturesRequestSchema, { entityId: id, featureNames: names }),
  );
  return fromBinary(GetFeaturesResponseSchema, call(service, Method.GetFeatures, body));
}

describe("work per request is near-linear in its size", () => {
  test("a SetFeatures with more names than MAX_FEATURE_NAMES is INVALID_ARGUMENT naming the limit", () => {
    const { service } = setup({ maxFeatureNames: 1000 });
    const e = errorOf(() => call(service, Method.SetFeatures, manyFeatures("u", 1001)));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.message).toContain("MAX_FEATURE_NAMES");
  });

  test("a projection with more names than MAX_FEATURE_NAMES is INVALID_ARGUMENT", () => {
    const { service } = setup({ maxFeatureNames: 10 });
    const e = errorOf(() =>
      get(
        service,
        "u",
        Array.from({ length: 11 }, (_, i) => `n${i}`),
      ),
    );
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.message).toContain("MAX_FEATURE_NAMES");
  });

  test("an entity past MAX_FEATURES_PER_ENTITY is RESOURCE_EXHAUSTED and keeps what it had", () => {
    const { service } = setup({ maxFeaturesPerEntity: 100 });
    call(service, Method.SetFeatures, manyFeatures("u", 60));
    const more = toBinary(
      SetFeaturesRequestSchema,
      create(SetFeaturesRequestSchema, {
        entityId: "u",
        features: Object.fromEntries(
          Array.from({ length: 60 }, (_, i) => [
            `g${i}`,
            { kind: { case: "boolValue" as const, value: true } },
          ]),
        ),
      }),
    );
    const e = errorOf(() => call(service, Method.SetFeatures, more));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.message).toContain("MAX_FEATURES_PER_ENTITY");
    expect(Object.keys(get(service, "u").features).length).toBe(60);
  });

  test("200,000 names in one SetFeatures, a merge over them, a projection and a delete of all of them finish", () => {
    const n = 200_000;
    const { service } = setup(
      { maxFeatureNames: 1_000_000, maxFeaturesPerEntity: 1_000_000, maxResponseBytes: 64 << 20 },
      16 << 20,
    );
    call(service, Method.SetFeatures, manyFeatures("wide", n));
    call(service, Method.SetFeatures, manyFeatures("wide", n)); // merge: every name overwritten
    const names = Array.from({ length: n }, (_, i) => `f${n - 1 - i}`);
    const r = get(service, "wide", names);
    expect(Object.keys(r.features).length).toBe(n);
    expect(r.features.f12345?.kind).toEqual({ case: "intValue", value: 12345n });
    expect(r.missing).toEqual([]);
    const del = toBinary(
      GetFeaturesRequestSchema,
      create(GetFeaturesRequestSchema, { entityId: "wide", featureNames: names.slice(1) }),
    );
    call(service, Method.DeleteFeatures, del);
    expect(Object.keys(get(service, "wide").features)).toEqual([`f${n - 1}`]);
  }, 20_000);

  test("a BatchGet of 10 ids x 100,000 names finishes, listing every name as missing", () => {
    const { service } = setup({ maxFeatureNames: 1_000_000, maxResponseBytes: 64 << 20 });
    call(service, Method.SetFeatures, manyFeatures("e", 50));
    const names = Array.from({ length: 100_000 }, (_, i) => `name-${i}`);
    const body = toBinary(
      BatchGetRequestSchema,
      create(BatchGetRequestSchema, { entityIds: Array(10).fill("e"), featureNames: names }),
    );
    const r = fromBinary(BatchGetResponseSchema, call(service, Method.BatchGet, body));
    expect(r.results.length).toBe(10);
    expect(r.results[9]!.missing.length).toBe(100_000);
  }, 20_000);

  test("requested names are matched in any order, duplicates included, missing ones in request order", () => {
    const { service } = setup();
    call(service, Method.SetFeatures, manyFeatures("u", 30));
    // 7 names are compared directly; 14 go through the hash index.
    for (const names of [
      ["f29", "zz", "f3", "a", "f3", "f10", "f1"],
      ["f29", "zz", "f3", "a", "f3", "f10", "f1", "f29", "zz", "b", "f0", "f11", "f12", "zz"],
    ]) {
      const r = get(service, "u", names);
      const wanted = [...new Set(names.filter((n) => /^f\d+$/.test(n)))].sort();
      expect(Object.keys(r.features).sort()).toEqual(wanted);
      expect(r.missing).toEqual(names.filter((n) => !/^f\d+$/.test(n)));
    }
  });

  test("a SetFeatures naming a feature several times keeps its last value, with or without the index", () => {
    const { service } = setup();
    for (const n of [3, 40]) {
      const w = new ProtoWriter(1024);
      w.bytesField(1, encodeUtf8(`d${n}`));
      for (let i = 0; i < n; i++) {
        const entry = w.beginLength(2);
        w.bytesField(1, encodeUtf8(`x${i % 3}`));
        w.bytesField(2, new Uint8Array([0x08, i]));
        w.endLength(entry);
      }
      call(service, Method.SetFeatures, w.finish());
      const f = get(service, `d${n}`).features;
      expect(Object.keys(f).sort()).toEqual(["x0", "x1", "x2"]);
      for (let k = 0; k < 3; k++) {
        const lastI = n - 1 - ((n - 1 - k) % 3);
        expect(f[`x${k}`]?.kind).toEqual({ case: "intValue", value: BigInt(lastI) });
      }
    }
  });
});

describe("answers are bounded by MAX_RESPONSE_BYTES", () => {
  test("a BatchGet repeating one large entity is RESOURCE_EXHAUSTED naming the limit, and the writer stays near it", () => {
    const limit = 1 << 20;
    const { service } = setup({ maxResponseBytes: limit, maxBatchItems: 10_000 });
    const big = toBinary(
      SetFeaturesRequestSchema,
      create(SetFeaturesRequestSchema, {
        entityId: "big",
        features: { s: { kind: { case: "stringValue", value: "x".repeat(30_000) } } },
      }),
    );
    call(service, Method.SetFeatures, big);
    const body = toBinary(
      BatchGetRequestSchema,
      create(BatchGetRequestSchema, { entityIds: Array(10_000).fill("big") }),
    );
    const out = new ProtoWriter(64);
    const e = errorOf(() => call(service, Method.BatchGet, body, out));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.message).toContain("MAX_RESPONSE_BYTES");
    // Before the fix the whole 300 MB answer was built; now it stops one record past the limit.
    expect(out.bytes.length).toBeLessThanOrEqual(2 * limit);
    // Under the limit the same request is served.
    const fewer = toBinary(
      BatchGetRequestSchema,
      create(BatchGetRequestSchema, { entityIds: Array(30).fill("big") }),
    );
    expect(fromBinary(BatchGetResponseSchema, call(service, Method.BatchGet, fewer)).hits).toBe(30);
  });

  test("a projection that would walk more than SCAN_FACTOR x MAX_RESPONSE_BYTES of records is RESOURCE_EXHAUSTED", () => {
    const { service } = setup({ maxResponseBytes: 64 * 1024, maxFeatureNames: 3000 });
    call(service, Method.SetFeatures, manyFeatures("wide", 3000)); // ~30 KB record
    const body = toBinary(
      BatchGetRequestSchema,
      create(BatchGetRequestSchema, { entityIds: Array(1000).fill("wide"), featureNames: ["zzz"] }),
    );
    const e = errorOf(() => call(service, Method.BatchGet, body));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.message).toContain("MAX_RESPONSE_BYTES");
  });
});

describe("whatever is stored, a conformant decoder reads back", () => {
  test("a list value with a field number 0 or above 2^29-1 is INVALID_ARGUMENT", () => {
    const { service } = setup();
    // float_list { <field 0, fixed32> }: tag 0x05.
    for (const list of [
      [0x05, 1, 2, 3, 4],
      // field 2^29 (tag varint 0x80 0x80 0x80 0x80 0x10 = 2^32), varint 1
      [0x80, 0x80, 0x80, 0x80, 0x10, 1],
    ]) {
      for (const field of [6, 7, 8]) {
        const e = errorOf(() =>
          call(service, Method.SetFeatures, rawValue("u", [(field << 3) | 2, list.length, ...list])),
        );
        expect(e.code).toBe(Code.InvalidArgument);
      }
    }
    expect(get(service, "u").found).toBe(false);
  });

  test("unknown fields are dropped and values stored in canonical form that @bufbuild/protobuf decodes", () => {
    const { service } = setup();
    const cases: [number[], unknown][] = [
      // int_value 1 as a padded 3-byte varint, then an unknown field 15 (varint 9)
      [[0x08, 0x81, 0x80, 0x00, 0x78, 9], { case: "intValue", value: 1n }],
      // bool_value 7 reads as true
      [[0x20, 7], { case: "boolValue", value: true }],
      // float_list with an unpacked float, an unknown field 2, then a packed run
      [
        [0x32, 17, 0x0d, 0, 0, 0x80, 0x3f, 0x10, 5, 0x0a, 8, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40],
        { case: "floatList", value: [1, 2, 3] },
      ],
      // int_list: unpacked 5, packed [1, padded 2]
      [[0x3a, 7, 0x08, 5, 0x0a, 3, 1, 0x82, 0x00], { case: "intList", value: [5n, 1n, 2n] }],
      // two oneof members: the last wins
      [[0x08, 3, 0x1a, 1, 0x61], { case: "stringValue", value: "a" }],
    ];
    for (const [i, [value, expected]] of cases.entries()) {
      const id = `c${i}`;
      call(service, Method.SetFeatures, rawValue(id, value));
      const kind = get(service, id).features.v?.kind as { case: string; value: unknown };
      expect(kind.case).toBe((expected as { case: string }).case);
      const v = kind.value as { values?: unknown };
      expect(v.values !== undefined ? Array.from(v.values as number[]) : kind.value).toEqual(
        (expected as { value: unknown }).value,
      );
    }
    // Canonical: the padded int is stored as its 1-byte varint.
    const answer = call(
      service,
      Method.GetFeatures,
      toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "c0" })),
    );
    expect(Array.from(answer)).toContain(0x08);
    // id field, entry, name, value, found, as before event times; then the value's event time:
    // 0x50 and 6 varint bytes of today's ms
    expect(answer.length).toBe(2 + 2 + 2 + 3 + 2 + 2 + 2 + 7);
  });

  test("a FeatureValue given twice in one map entry is merged, as protobuf reads it", () => {
    const { service } = setup();
    const w = new ProtoWriter(64);
    w.bytesField(1, encodeUtf8("m"));
    const entry = w.beginLength(2);
    w.bytesField(1, encodeUtf8("v"));
    w.bytesField(2, new Uint8Array([0x32, 6, 0x0a, 4, 0, 0, 0x80, 0x3f])); // float_list [1]
    w.bytesField(2, new Uint8Array([0x32, 6, 0x0a, 4, 0, 0, 0, 0x40])); // float_list [2]: merged
    w.endLength(entry);
    call(service, Method.SetFeatures, w.finish());
    const kind = get(service, "m").features.v!.kind;
    expect(kind.case).toBe("floatList");
    expect(Array.from((kind.value as { values: number[] }).values)).toEqual([1, 2]);
  });

  test("a request with a field number 0 anywhere is INVALID_ARGUMENT", () => {
    const { service } = setup();
    const body = new Uint8Array([0x0a, 1, 0x61, 0x00, 0x01]); // entity_id "a", then field 0 varint
    expect(errorOf(() => call(service, Method.GetFeatures, body)).code).toBe(Code.InvalidArgument);
  });
});

describe("client input is never INTERNAL", () => {
  function ttlRequest(ttl: bigint): Uint8Array {
    const w = new ProtoWriter(64);
    w.bytesField(1, encodeUtf8("t"));
    const entry = w.beginLength(2);
    w.bytesField(1, encodeUtf8("v"));
    w.bytesField(2, new Uint8Array([0x20, 1]));
    w.endLength(entry);
    w.tag(3, WireType.Varint);
    w.varint64(ttl);
    return w.finish();
  }

  test("ttl_ms between 2^52 and 2^63 is INVALID_ARGUMENT saying the bound, a negative one saying >= 0", () => {
    const { service } = setup();
    for (const ttl of [2n ** 52n + 1n, 2n ** 53n - 1n, 2n ** 60n, 2n ** 63n - 1n]) {
      const e = errorOf(() => call(service, Method.SetFeatures, ttlRequest(ttl)));
      expect(e.code).toBe(Code.InvalidArgument);
      expect(e.message).toContain(`at most ${MAX_TTL_MS}`);
    }
    for (const ttl of [-1n, -(2n ** 63n)]) {
      const e = errorOf(() => call(service, Method.SetFeatures, ttlRequest(ttl)));
      expect(e.code).toBe(Code.InvalidArgument);
      expect(e.message).toContain(">= 0");
    }
    call(service, Method.SetFeatures, ttlRequest(BigInt(MAX_TTL_MS)));
    expect(get(service, "t").found).toBe(true);
  });

  test("a record over the cache's entry bound is RESOURCE_EXHAUSTED naming CACHE_MAX_ENTRY_BYTES", () => {
    const { service } = setup({}, 1024);
    const e = errorOf(() => call(service, Method.SetFeatures, manyFeatures("u", 500)));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.message).toContain("CACHE_MAX_ENTRY_BYTES");
  });
});
