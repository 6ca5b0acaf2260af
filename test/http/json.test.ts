/**
 * The proto3 JSON mapping of src/transport/http/json.ts, checked against @bufbuild/protobuf
 * (the implementation Connect clients use, which passes the protobuf conformance suite): the
 * same JSON must encode to the same bytes, and the same bytes must print as the same JSON.
 */
import { describe, expect, test } from "bun:test";
import {
  create,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import fc from "fast-check";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { binaryToJson, jsonBytesToBinary, jsonToBinary } from "../../src/transport/http/json.ts";
import { loadSchema } from "../../src/transport/http/schema.ts";
import {
  BatchGetResponseSchema,
  type FeatureValue,
  FeatureValueSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";

const schema = loadSchema();
const info = (name: string) => schema.messages.get(`featurestore.v1.${name}`)!;

function encode(name: string, json: unknown): Uint8Array {
  const w = new ProtoWriter(16);
  jsonToBinary(info(name), json, w);
  return w.finish();
}

function decode(name: string, bytes: Uint8Array): unknown {
  return JSON.parse(JSON.stringify(binaryToJson(info(name), bytes, 0, bytes.length)));
}

function errorOf(fn: () => unknown): FeatureStoreError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FeatureStoreError) return err;
    throw err;
  }
  throw new Error("expected an error");
}

const rich = {
  entity_id: "user:1",
  ttlMs: "60000",
  replace: true,
  features: {
    age: { intValue: "-42" },
    big: { int_value: "9223372036854775807" },
    score: { doubleValue: 0.25 },
    nan: { doubleValue: "NaN" },
    inf: { double_value: "-Infinity" },
    name: { stringValue: "Zoë" },
    zero: { intValue: 0 },
    empty: { stringValue: "" },
    off: { boolValue: false },
    raw: { bytesValue: "3q2-7w" },
    emb: { floatList: { values: [0.5, "Infinity", 0.1, -0] } },
    ids: { intList: { values: [1, "-2", "9007199254740993"] } },
    tags: { stringList: { values: ["a", ""] } },
    ["__proto__"]: { boolValue: true },
  },
};

describe("JSON to binary", () => {
  test("encodes to exactly the bytes @bufbuild/protobuf produces from the same JSON", () => {
    const json = JSON.parse(JSON.stringify(rich));
    const reference = toBinary(SetFeaturesRequestSchema, fromJson(SetFeaturesRequestSchema, json));
    expect(encode("SetFeaturesRequest", json)).toEqual(reference);
  });

  test("accepts proto field names and JSON names alike", () => {
    const a = encode("GetFeaturesRequest", { entity_id: "e", feature_names: ["x"] });
    const b = encode("GetFeaturesRequest", { entityId: "e", featureNames: ["x"] });
    expect(a).toEqual(b);
  });

  test("accepts int64 as a string or a number, and keeps values beyond 2^53 exact as strings", () => {
    const fromString = encode("SetFeaturesRequest", { entityId: "e", ttlMs: "9007199254740993" });
    const msg = fromBinary(SetFeaturesRequestSchema, fromString);
    expect(msg.ttlMs).toBe(9007199254740993n);
    expect(encode("SetFeaturesRequest", { entityId: "e", ttlMs: 1000 })).toEqual(
      encode("SetFeaturesRequest", { entityId: "e", ttlMs: "1000" }),
    );
  });

  test("accepts bytes as standard or URL-safe base64, with or without padding", () => {
    const bytes = (s: string) => {
      const m = fromBinary(FeatureValueSchema, encode("FeatureValue", { bytesValue: s }));
      return m.kind.case === "bytesValue" ? [...m.kind.value] : null;
    };
    expect(bytes("+/8=")).toEqual([0xfb, 0xff]);
    expect(bytes("-_8")).toEqual([0xfb, 0xff]);
    expect(bytes("-_8=")).toEqual([0xfb, 0xff]);
  });

  test("treats null as the field's default", () => {
    expect(encode("GetFeaturesRequest", { entityId: null, featureNames: null })).toEqual(new Uint8Array(0));
  });

  test("parses a request body from UTF-8 bytes", () => {
    const w = new ProtoWriter(16);
    jsonBytesToBinary(info("GetFeaturesRequest"), new TextEncoder().encode('{"entityId":"ü"}'), w);
    expect(fromBinary(SetFeaturesRequestSchema, w.finish()).entityId).toBe("ü");
  });

  const invalid: [string, string, unknown, string][] = [
    ["an unknown field", "GetFeaturesRequest", { entityId: "e", bogus: 1 }, 'unknown field "bogus"'],
    [
      "a field given under both names",
      "GetFeaturesRequest",
      { entityId: "a", entity_id: "b" },
      "given twice",
    ],
    [
      "two members of one oneof",
      "FeatureValue",
      { intValue: "1", doubleValue: 2 },
      'oneof "kind" already has "intValue" set',
    ],
    [
      "a number for a string",
      "GetFeaturesRequest",
      { entityId: 5 },
      '"entityId" must be a string, got number 5',
    ],
    [
      "a string for a list",
      "GetFeaturesRequest",
      { featureNames: "x" },
      '"featureNames" must be a JSON array',
    ],
    ["a fractional int64", "SetFeaturesRequest", { ttlMs: 1.5 }, '"ttlMs" must be an integer'],
    [
      "an int64 out of range",
      "SetFeaturesRequest",
      { ttlMs: "9223372036854775808" },
      "out of range for int64",
    ],
    ["a non-numeric int64 string", "SetFeaturesRequest", { ttlMs: "12abc" }, '"ttlMs" must be an integer'],
    ["a string for a bool", "SetFeaturesRequest", { replace: "true" }, '"replace" must be true or false'],
    ["bad base64", "FeatureValue", { bytesValue: "a" }, "not valid base64"],
    ["a float beyond float32", "FloatList", { values: [1e39] }, "out of range for float"],
    ["an array for the message", "GetFeaturesRequest", [], "must be a JSON object"],
    [
      "a null list element",
      "GetFeaturesRequest",
      { featureNames: [null] },
      '"featureNames[0]" must be a string',
    ],
    ["a null map value", "SetFeaturesRequest", { features: { a: null } }, "must not be null"],
    [
      "a wrong type deep inside",
      "SetFeaturesRequest",
      { features: { a: { intList: { values: [true] } } } },
      'features["a"].intList.values[0]',
    ],
    ["an inherited property name", "GetFeaturesRequest", { constructor: 1 }, 'unknown field "constructor"'],
  ];
  for (const [what, type, json, message] of invalid) {
    test(`rejects ${what} with INVALID_ARGUMENT naming the problem`, () => {
      const err = errorOf(() => encode(type, json));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toContain(message);
    });
  }

  test("rejects malformed JSON and malformed UTF-8 with INVALID_ARGUMENT", () => {
    const w = new ProtoWriter(16);
    const i = info("GetFeaturesRequest");
    expect(
      errorOf(() => jsonBytesToBinary(i, new TextEncoder().encode('{"entityId":'), w)).message,
    ).toContain("not valid JSON");
    expect(errorOf(() => jsonBytesToBinary(i, new Uint8Array([0x22, 0xff, 0x22]), w)).message).toContain(
      "not valid UTF-8",
    );
  });
});

describe("binary to JSON", () => {
  test("prints what @bufbuild/protobuf prints: camelCase, int64 as strings, base64, NaN, defaults omitted", () => {
    const bytes = encode("SetFeaturesRequest", rich);
    expect(decode("SetFeaturesRequest", bytes)).toEqual(roundTrip(SetFeaturesRequestSchema, bytes) as object);
    const out = decode("SetFeaturesRequest", bytes) as { features: Record<string, unknown>; ttlMs: unknown };
    expect(out.ttlMs).toBe("60000");
    expect(out.features.zero).toEqual({ intValue: "0" }); // a set oneof member is printed even at its default
    expect(out.features.raw).toEqual({ bytesValue: "3q2+7w==" });
    expect(JSON.stringify(out.features)).toContain('"__proto__":{"boolValue":true}');
  });

  test("omits fields at their default and keeps a string that merely looks like one", () => {
    const bytes = toBinary(
      GetFeaturesResponseSchema,
      create(GetFeaturesResponseSchema, { entityId: "0", found: false, missing: [] }),
    );
    expect(decode("GetFeaturesResponse", bytes)).toEqual({ entityId: "0" });
  });

  // Property: for any response message, our JSON equals the reference JSON, and our encoding of
  // that JSON decodes back to the same message.
  const featureValue: fc.Arbitrary<FeatureValue["kind"]> = fc.oneof(
    fc
      .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
      .map((value) => ({ case: "intValue" as const, value })),
    fc.double().map((value) => ({ case: "doubleValue" as const, value })),
    fc.string().map((value) => ({ case: "stringValue" as const, value })),
    fc.boolean().map((value) => ({ case: "boolValue" as const, value })),
    fc.uint8Array({ maxLength: 20 }).map((value) => ({ case: "bytesValue" as const, value })),
    fc.array(fc.float(), { maxLength: 5 }).map((values) => ({
      case: "floatList" as const,
      value: { $typeName: "featurestore.v1.FloatList" as const, values },
    })),
    fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 5 }).map((values) => ({
      case: "intList" as const,
      value: { $typeName: "featurestore.v1.Int64List" as const, values },
    })),
    fc.array(fc.string(), { maxLength: 5 }).map((values) => ({
      case: "stringList" as const,
      value: { $typeName: "featurestore.v1.StringList" as const, values },
    })),
  ) as fc.Arbitrary<FeatureValue["kind"]>;
  const response = fc.record({
    entityId: fc.string(),
    found: fc.boolean(),
    missing: fc.array(fc.string(), { maxLength: 3 }),
    features: fc.dictionary(
      fc.string(),
      featureValue.map((kind) => create(FeatureValueSchema, { kind })),
    ),
  });

  test("agrees with @bufbuild/protobuf on random responses, both ways", () => {
    fc.assert(
      fc.property(fc.array(response, { maxLength: 3 }), fc.nat(), fc.nat(), (results, hits, misses) => {
        const msg = create(BatchGetResponseSchema, {
          results: results.map((r) => create(GetFeaturesResponseSchema, r)),
          hits: hits % 2 ** 32,
          misses: misses % 2 ** 32,
        });
        const bytes = toBinary(BatchGetResponseSchema, msg);
        const ours = decode("BatchGetResponse", bytes);
        expect(ours).toEqual(viaText(toJson(BatchGetResponseSchema, msg)) as object);
        const again = encode("BatchGetResponse", ours);
        expect(roundTrip(BatchGetResponseSchema, again)).toEqual(roundTrip(BatchGetResponseSchema, bytes));
      }),
      { numRuns: 200 },
    );
  });
});

function roundTrip(desc: DescMessage, bytes: Uint8Array): JsonValue {
  return viaText(toJson(desc, fromBinary(desc, bytes)));
}

/** What a client receives: JSON text, parsed (-0 prints as 0). */
function viaText(v: unknown): JsonValue {
  return JSON.parse(JSON.stringify(v));
}
