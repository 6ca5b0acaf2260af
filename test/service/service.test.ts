import { describe, expect, test } from "bun:test";
import { Method } from "../../src/codec/frame.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";

function setup(defaultTtlMs = 0) {
  const clock = { t: 1_000_000 };
  const store = new MemoryStore({ maxEntries: 1000, maxBytes: 1 << 22, shardCount: 4, now: () => clock.t });
  const service = new FeatureService(store, { defaultTtlMs });
  return { clock, store, service, fs: new EmbeddedFeatureStore(service) };
}

/** Calls the service with a raw request body; returns the error code or OK. */
function rawCall(service: FeatureService, method: number, body: Uint8Array): number {
  try {
    service.handle(method, body, 0, body.length, new ProtoWriter(64));
    return Code.OK;
  } catch (err) {
    return FeatureStoreError.from(err).code;
  }
}

function codeOf(f: () => unknown): number {
  try {
    f();
    return Code.OK;
  } catch (err) {
    return FeatureStoreError.from(err).code;
  }
}

describe("FeatureService", () => {
  test("a set entity reads back with every value type intact", () => {
    const { fs } = setup();
    const emb = new Float32Array([0.5, -1.25, 3]);
    fs.setFeatures("user:1", {
      clicks: 42,
      neg: -7,
      big: 2n ** 60n,
      ratio: 0.25,
      forcedDouble: { double: 2 },
      country: "DE",
      name: "Zoë 🚀",
      premium: true,
      blob: new Uint8Array([0, 255, 7]),
      emb,
      ids: new BigInt64Array([1n, -2n]),
      tags: ["a", "b"],
    });
    const r = fs.getFeatures("user:1");
    expect(r.found).toBe(true);
    expect(r.entityId).toBe("user:1");
    expect(r.missing).toEqual([]);
    expect(r.features.clicks).toBe(42);
    expect(r.features.neg).toBe(-7);
    expect(r.features.big).toBe(2n ** 60n);
    expect(r.features.ratio).toBe(0.25);
    expect(r.features.forcedDouble).toBe(2);
    expect(r.features.country).toBe("DE");
    expect(r.features.name).toBe("Zoë 🚀");
    expect(r.features.premium).toBe(true);
    expect(r.features.blob).toEqual(new Uint8Array([0, 255, 7]));
    expect(r.features.emb).toEqual(emb);
    expect(r.features.ids).toEqual(new BigInt64Array([1n, -2n]));
    expect(r.features.tags).toEqual(["a", "b"]);
  });

  test("a missing entity is found=false with every requested name missing, not an error", () => {
    const { fs } = setup();
    expect(fs.getFeatures("nobody")).toEqual({
      entityId: "nobody",
      found: false,
      features: {},
      missing: [],
      stale: [],
      aggregates: [],
      readTimeMs: 0,
    });
    expect(fs.getFeatures("nobody", ["a", "b"]).missing).toEqual(["a", "b"]);
  });

  test("SetFeatures merges by default: new names added, existing overwritten, others kept", () => {
    const { fs } = setup();
    fs.setFeatures("u", { a: 1, b: 2 });
    fs.setFeatures("u", { b: 20, c: 30 });
    expect({ ...fs.getFeatures("u").features }).toEqual({ a: 1, b: 20, c: 30 });
  });

  test("SetFeatures with replace drops the names it does not repeat", () => {
    const { fs } = setup();
    fs.setFeatures("u", { a: 1, b: 2 });
    fs.setFeatures("u", { c: 3 }, { replace: true });
    expect({ ...fs.getFeatures("u").features }).toEqual({ c: 3 });
  });

  test("a projection returns only the requested names and lists the absent ones as missing", () => {
    const { fs } = setup();
    fs.setFeatures("u", { a: 1, b: "x", c: true });
    const r = fs.getFeatures("u", ["c", "zz", "a", "c"]);
    expect({ ...r.features }).toEqual({ a: 1, c: true });
    expect(r.missing).toEqual(["zz"]);
    expect(r.found).toBe(true);
  });

  test("TTL counts from the write and an expired entity reads as not found", () => {
    const { fs, clock } = setup();
    fs.setFeatures("u", { a: 1 }, { ttlMs: 1000 });
    clock.t += 999;
    expect(fs.getFeatures("u").found).toBe(true);
    fs.setFeatures("u", { b: 2 }, { ttlMs: 1000 }); // a merge is a write: TTL restarts
    clock.t += 999;
    expect({ ...fs.getFeatures("u").features }).toEqual({ a: 1, b: 2 });
    clock.t += 2;
    expect(fs.getFeatures("u").found).toBe(false);
  });

  test("ttl_ms 0 uses the server default TTL", () => {
    const { fs, clock } = setup(500);
    fs.setFeatures("u", { a: 1 });
    clock.t += 499;
    expect(fs.getFeatures("u").found).toBe(true);
    clock.t += 2;
    expect(fs.getFeatures("u").found).toBe(false);
  });

  test("DeleteFeatures removes the entity, or only the named features keeping the expiry", () => {
    const { fs, clock } = setup();
    fs.setFeatures("u", { a: 1, b: 2, c: 3 }, { ttlMs: 1000 });
    expect(fs.deleteFeatures("u", ["b", "nope"])).toBe(true);
    expect({ ...fs.getFeatures("u").features }).toEqual({ a: 1, c: 3 });
    expect(fs.deleteFeatures("u", ["nope"])).toBe(false);
    clock.t += 1001;
    expect(fs.getFeatures("u").found).toBe(false);
    fs.setFeatures("v", { a: 1 });
    expect(fs.deleteFeatures("v")).toBe(true);
    expect(fs.deleteFeatures("v")).toBe(false);
    expect(fs.getFeatures("v").found).toBe(false);
  });

  test("BatchGet answers in request order with hit and miss counts", () => {
    const { fs } = setup();
    const items = Array.from({ length: 50 }, (_, i) => ({ entityId: `e${i}`, features: { i, s: `v${i}` } }));
    expect(fs.batchSet(items)).toBe(50);
    const ids = ["e3", "missing", "e49", "e0", "e3"];
    const r = fs.batchGet(ids, ["i"]);
    expect(r.results.map((x) => x.entityId)).toEqual(ids);
    expect(r.results.map((x) => x.features.i)).toEqual([3, undefined, 49, 0, 3]);
    expect(r.hits).toBe(4);
    expect(r.misses).toBe(1);
    expect(r.results[1]!.missing).toEqual(["i"]);
  });

  test("an invalid BatchSet item rejects the whole batch before anything is written", () => {
    const { fs } = setup();
    const err = (() => {
      try {
        fs.batchSet([
          { entityId: "ok", features: { a: 1 } },
          { entityId: "", features: { a: 1 } },
        ]);
      } catch (e) {
        return e as FeatureStoreError;
      }
      return undefined;
    })();
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.message).toContain("items[1]");
    expect(fs.getFeatures("ok").found).toBe(false);
  });

  test.each([
    ["an empty entity id", () => setup().fs.getFeatures("")],
    ["an empty entity id on write", () => setup().fs.setFeatures("", { a: 1 })],
    ["an over-long entity id", () => setup().fs.getFeatures("x".repeat(1025))],
    ["an empty feature name", () => setup().fs.setFeatures("u", { "": 1 })],
  ])("%s is INVALID_ARGUMENT", (_, f) => {
    expect(codeOf(f)).toBe(Code.InvalidArgument);
  });

  test.each([
    // SetFeaturesRequest{entity_id:"u", features:{"a": FeatureValue{int_value as a length-delimited field}}}
    ["a value of the wrong wire type", [0x0a, 1, 0x75, 0x12, 8, 0x0a, 1, 0x61, 0x12, 3, 0x0a, 1, 0x00]],
    // FeatureValue with no field set
    ["a value with nothing set", [0x0a, 1, 0x75, 0x12, 5, 0x0a, 1, 0x61, 0x12, 0]],
    // a map entry without a value
    ["an entry without a value", [0x0a, 1, 0x75, 0x12, 3, 0x0a, 1, 0x61]],
    // a float list whose packed length is not a multiple of 4
    ["a malformed float list", [0x0a, 1, 0x75, 0x12, 11, 0x0a, 1, 0x61, 0x12, 6, 0x32, 4, 0x0a, 2, 0, 0]],
    // invalid UTF-8 in a string value
    ["a string value that is not UTF-8", [0x0a, 1, 0x75, 0x12, 8, 0x0a, 1, 0x61, 0x12, 3, 0x1a, 1, 0xff]],
    // truncated body: a length prefix past the end
    ["a truncated body", [0x0a, 9, 0x75]],
    // a negative ttl_ms (10-byte varint)
    ["a negative ttl", [0x0a, 1, 0x75, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    // an entity id that is not UTF-8
    ["an entity id that is not UTF-8", [0x0a, 2, 0xc3, 0x28]],
  ])("SetFeatures with %s is INVALID_ARGUMENT", (_, bytes) => {
    expect(rawCall(setup().service, Method.SetFeatures, new Uint8Array(bytes))).toBe(Code.InvalidArgument);
  });

  test("an unknown method is UNIMPLEMENTED", () => {
    expect(rawCall(setup().service, 99, new Uint8Array(0))).toBe(Code.Unimplemented);
  });

  test("unknown fields in requests are ignored, as protobuf requires", () => {
    const { service, fs } = setup();
    fs.setFeatures("u", { a: 1 });
    // GetFeaturesRequest{entity_id:"u", field 9 (varint) = 5}
    expect(rawCall(service, Method.GetFeatures, new Uint8Array([0x0a, 1, 0x75, 0x48, 5]))).toBe(Code.OK);
  });

  test("a record too large for the cache is RESOURCE_EXHAUSTED and the old value stays", () => {
    const store = new MemoryStore({ maxEntries: 10, maxBytes: 64 * 1024, shardCount: 1 });
    const fs = new EmbeddedFeatureStore(new FeatureService(store));
    fs.setFeatures("u", { a: 1 });
    expect(codeOf(() => fs.setFeatures("u", { blob: new Uint8Array(200 * 1024) }))).toBe(
      Code.ResourceExhausted,
    );
    expect(fs.getFeatures("u").features.a).toBe(1);
  });
});
