/** The stream entry format (src/ingest/entry.ts): what each field becomes, and what is refused. */
import { describe, expect, test } from "bun:test";
import { InvalidEntryError, parseEntry } from "../../src/ingest/entry.ts";

const b = (s: string) => Buffer.from(s);
const entry = (...kv: string[]) => parseEntry(kv.map(b));
function refusal(...kv: (string | Buffer)[]): string {
  try {
    parseEntry(kv.map((x) => (typeof x === "string" ? b(x) : x)));
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidEntryError);
    return (err as Error).message;
  }
  throw new Error("the entry was accepted");
}

describe("an entry's flat f:<name> fields", () => {
  test("are typed by their text: int, double, bool, lists, quoted and bare strings", () => {
    const item = entry(
      "entity_id",
      "user:1",
      "f:int",
      "42",
      "f:neg",
      "-7",
      "f:big",
      "9223372036854775807",
      "f:dbl",
      "0.5",
      "f:exp",
      "1e3",
      "f:yes",
      "true",
      "f:emb",
      "[0.25, -1]",
      "f:tags",
      '["a","b"]',
      "f:quoted",
      '"42"',
      "f:bare",
      "FR",
      "f:dash",
      "-",
    );
    expect(item.entityId).toBe("user:1");
    const f = item.features;
    expect(f.int).toBe(42n);
    expect(f.neg).toBe(-7n);
    expect(f.big).toBe(2n ** 63n - 1n);
    expect(f.dbl).toEqual({ double: 0.5 });
    expect(f.exp).toEqual({ double: 1000 });
    expect(f.yes).toBe(true);
    expect(f.emb).toEqual(new Float32Array([0.25, -1]));
    expect(f.tags).toEqual(["a", "b"]);
    expect(f.quoted).toBe("42");
    expect(f.bare).toBe("FR");
    expect(f.dash).toBe("-");
    expect(item.ttlMs).toBeUndefined();
    expect(item.replace).toBeUndefined();
  });

  test("an int beyond int64 and a mixed list are refused, naming the field", () => {
    expect(refusal("entity_id", "e", "f:x", "9223372036854775808")).toContain("f:x");
    expect(refusal("entity_id", "e", "f:x", '[1, "a"]')).toContain("f:x");
    expect(refusal("entity_id", "e", "f:x", "[1, ")).toContain("f:x is not valid JSON");
    expect(refusal("entity_id", "e", "f:", "1")).toContain("feature name must not be empty");
  });
});

describe("an entry's features field (proto3 JSON of the map)", () => {
  test("takes every FeatureValue member in both spellings", () => {
    const item = entry(
      "entity_id",
      "e",
      "features",
      JSON.stringify({
        i: { intValue: "-9007199254740993" },
        i2: { int_value: 5 },
        d: { doubleValue: "NaN" },
        d2: { double_value: 2 },
        s: { stringValue: "x" },
        t: { boolValue: false },
        by: { bytesValue: "AAH/" },
        by2: { bytes_value: "AAH_" },
        fl: { floatList: { values: [1.5, "Infinity"] } },
        il: { int_list: { values: ["1", 2] } },
        sl: { stringList: { values: ["a"] } },
        empty: { floatList: {} },
      }),
      "ttl_ms",
      "60000",
      "replace",
      "true",
    );
    const f = item.features;
    expect(f.i).toBe(-9007199254740993n);
    expect(f.i2).toBe(5n);
    expect(Number.isNaN((f.d as { double: number }).double)).toBe(true);
    expect(f.d2).toEqual({ double: 2 });
    expect(f.s).toBe("x");
    expect(f.t).toBe(false);
    expect(f.by).toEqual(new Uint8Array([0, 1, 255]));
    expect(f.by2).toEqual(new Uint8Array([0, 1, 255]));
    expect(f.fl).toEqual(new Float32Array([1.5, Number.POSITIVE_INFINITY]));
    expect(f.il).toEqual(new BigInt64Array([1n, 2n]));
    expect(f.sl).toEqual(["a"]);
    expect(f.empty).toEqual(new Float32Array(0));
    expect(item.ttlMs).toBe(60000);
    expect(item.replace).toBe(true);
  });

  test("a value with two members, an unknown member or the wrong JSON type is refused, naming the feature", () => {
    const bad = (v: unknown) => refusal("entity_id", "e", "features", JSON.stringify({ x: v }));
    expect(bad({ intValue: "1", stringValue: "a" })).toContain('features["x"]');
    expect(bad({ integer: 1 })).toContain('unknown member "integer"');
    expect(bad({ intValue: 1.5 })).toContain('features["x"].intValue');
    expect(bad({ stringValue: 3 })).toContain("must be a string");
    expect(bad({ floatList: [1, 2] })).toContain('{"values": [...]}');
    expect(bad({ bytesValue: "a" })).toContain("base64");
    expect(bad(3)).toContain("FeatureValue object");
    expect(refusal("entity_id", "e", "features", "[1]")).toContain("JSON object");
    expect(refusal("entity_id", "e", "features", "{")).toContain("features is not JSON");
  });
});

describe("an entry as a whole", () => {
  test("meta: fields are ignored; a feature given in features and as f: is refused", () => {
    const item = entry("entity_id", "e", "meta:trace", "abc", "f:a", "1");
    expect(Object.keys(item.features)).toEqual(["a"]);
    expect(refusal("entity_id", "e", "f:a", "1", "features", '{"a":{"intValue":"2"}}')).toContain(
      'feature "a" is given twice',
    );
  });

  test("a missing or empty entity_id, no features, unknown or repeated fields, bad ttl_ms or replace are refused", () => {
    expect(refusal("f:a", "1")).toBe("entity_id is missing");
    expect(refusal("entity_id", "", "f:a", "1")).toBe("entity_id must not be empty");
    expect(refusal("entity_id", "e")).toContain("no features");
    expect(refusal("entity_id", "e", "f:a", "1", "colour", "red")).toContain('unknown field "colour"');
    expect(refusal("entity_id", "e", "entity_id", "e", "f:a", "1")).toContain('"entity_id" is given twice');
    expect(refusal("entity_id", "e", "f:a", "1", "ttl_ms", "-1")).toContain("ttl_ms");
    expect(refusal("entity_id", "e", "f:a", "1", "ttl_ms", String(2 ** 53))).toContain("ttl_ms");
    expect(refusal("entity_id", "e", "f:a", "1", "replace", "yes")).toContain("replace");
  });

  test("bytes that are not UTF-8 are refused rather than turned into U+FFFD", () => {
    expect(refusal("entity_id", Buffer.from([0x75, 0xff]), "f:a", "1")).toBe(
      'field "entity_id" is not valid UTF-8',
    );
    expect(refusal(Buffer.from([0xc3]), "1")).toBe("field #0 is not valid UTF-8");
  });
});
