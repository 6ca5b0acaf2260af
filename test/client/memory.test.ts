import { describe, expect, test } from "bun:test";
import {
  Code,
  FeatureStoreClient,
  FeatureStoreError,
  InMemoryTransport,
  Method,
} from "../../src/client/index.ts";
import { encodeGetFeaturesRequest } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";

function makeClient(): FeatureStoreClient {
  const store = new MemoryStore({ maxEntries: 1000, maxBytes: 1 << 22, shardCount: 4 });
  return new FeatureStoreClient(new InMemoryTransport(new FeatureService(store)));
}

async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return (err as FeatureStoreError).code;
  }
  throw new Error("expected a rejection");
}

describe("FeatureStoreClient over the in-memory transport", () => {
  test("a missing entity is found=false with every requested name missing", async () => {
    const c = makeClient();
    const r = await c.getFeatures("nobody", ["a", "b"]);
    expect(r).toEqual({
      entityId: "nobody",
      found: false,
      features: Object.create(null),
      missing: ["a", "b"],
      stale: [],
      aggregates: [],
      readTimeMs: 0,
    });
    expect(r.eventTimes).toBeUndefined();
  });

  test("every value type round-trips with its type", async () => {
    const c = makeClient();
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const emb = new Float32Array([0.5, -1.25, 3e-8, 1e30]);
    const ints = new BigInt64Array([0n, -1n, 2n ** 63n - 1n, -(2n ** 63n)]);
    await c.setFeatures("user:1", {
      small: 42,
      negative: -7,
      big: 2n ** 60n + 1n,
      bigNegative: -(2n ** 62n),
      safeBigint: 5n,
      double: 1.5,
      forcedDouble: { double: 2 },
      forcedInt: { int: 9007199254740993n },
      text: "héllo wörld ✓ 日本語 🎉",
      empty: "",
      yes: true,
      no: false,
      bytes,
      emb,
      plainList: [1, 2.5],
      ints,
      tags: ["a", "ü", ""],
      noTags: [],
    });
    const r = await c.getFeatures("user:1");
    expect(r.found).toBe(true);
    expect(r.entityId).toBe("user:1");
    expect(r.missing).toEqual([]);
    const f = r.features;
    expect(f.small).toBe(42);
    expect(f.negative).toBe(-7);
    expect(f.big).toBe(2n ** 60n + 1n);
    expect(f.bigNegative).toBe(-(2n ** 62n));
    // An int64 that fits a safe integer reads back as a number.
    expect(f.safeBigint).toBe(5);
    expect(f.double).toBe(1.5);
    expect(f.forcedDouble).toBe(2);
    expect(f.forcedInt).toBe(9007199254740993n);
    expect(f.text).toBe("héllo wörld ✓ 日本語 🎉");
    expect(f.empty).toBe("");
    expect(f.yes).toBe(true);
    expect(f.no).toBe(false);
    expect(f.bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(f.bytes as Uint8Array)).toEqual([0, 1, 2, 255]);
    expect(f.emb).toBeInstanceOf(Float32Array);
    expect(Array.from(f.emb as Float32Array)).toEqual(Array.from(emb));
    expect(f.plainList).toBeInstanceOf(Float32Array);
    expect(Array.from(f.plainList as Float32Array)).toEqual([1, 2.5]);
    expect(f.ints).toBeInstanceOf(BigInt64Array);
    expect(Array.from(f.ints as BigInt64Array)).toEqual(Array.from(ints));
    expect(f.tags).toEqual(["a", "ü", ""]);
    // An empty list has no type on the wire; it reads back as an empty float list.
    expect((f.noTags as Float32Array).length).toBe(0);
  });

  test("results do not alias buffers the client reuses", async () => {
    const c = makeClient();
    await c.setFeatures("e", { b: new Uint8Array([1, 2, 3]) });
    const first = await c.getFeatures("e");
    await c.setFeatures("e", { b: new Uint8Array([9, 9, 9]) });
    await c.getFeatures("e");
    expect(Array.from(first.features.b as Uint8Array)).toEqual([1, 2, 3]);
  });

  test("setFeatures merges by default and replaces with replace: true", async () => {
    const c = makeClient();
    await c.setFeatures("e", { a: 1, b: "two" });
    await c.setFeatures("e", { b: "deux", c: true });
    expect({ ...(await c.getFeatures("e")).features }).toEqual({ a: 1, b: "deux", c: true });
    await c.setFeatures("e", { z: 26 }, { replace: true });
    expect({ ...(await c.getFeatures("e")).features }).toEqual({ z: 26 });
  });

  test("a projection returns the wanted names and lists the others as missing", async () => {
    const c = makeClient();
    await c.setFeatures("e", { a: 1, b: 2, c: 3 });
    const r = await c.getFeatures("e", ["c", "a", "nope"]);
    expect({ ...r.features }).toEqual({ a: 1, c: 3 });
    expect(r.missing).toEqual(["nope"]);
  });

  test("a feature called __proto__ is an ordinary key", async () => {
    const c = makeClient();
    await c.setFeatures("e", JSON.parse('{"__proto__": 5}'));
    const r = await c.getFeatures("e");
    expect(Object.keys(r.features)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(r.features, "__proto__")?.value).toBe(5);
  });

  test("batchGet answers in request order with hit and miss counts", async () => {
    const c = makeClient();
    await c.setFeatures("a", { x: 1, y: 2 });
    await c.setFeatures("c", { x: 3 });
    const r = await c.batchGet(["a", "b", "c"], ["x"]);
    expect(r.hits).toBe(2);
    expect(r.misses).toBe(1);
    expect(r.results.map((x) => [x.entityId, x.found, { ...x.features }, x.missing])).toEqual([
      ["a", true, { x: 1 }, []],
      ["b", false, {}, ["x"]],
      ["c", true, { x: 3 }, []],
    ]);
    const all = await c.batchGet(["a"]);
    expect({ ...all.results[0]!.features }).toEqual({ x: 1, y: 2 });
  });

  test("batchSet writes every item and returns the count", async () => {
    const c = makeClient();
    await c.setFeatures("b", { keep: 1, old: 0 });
    const n = await c.batchSet([
      { entityId: "a", features: { v: 1 } },
      { entityId: "b", features: { old: 2 } },
      { entityId: "c", features: { only: "me" }, replace: true, ttlMs: 60_000 },
    ]);
    expect(n).toBe(3);
    const r = await c.batchGet(["a", "b", "c"]);
    expect(r.results.map((x) => ({ ...x.features }))).toEqual([
      { v: 1 },
      { keep: 1, old: 2 },
      { only: "me" },
    ]);
    expect(await c.batchSet([])).toBe(0);
  });

  test("an invalid item rejects the whole batch before anything is written", async () => {
    const c = makeClient();
    const code = await codeOf(
      c.batchSet([
        { entityId: "ok", features: { v: 1 } },
        { entityId: "", features: { v: 1 } },
      ]),
    );
    expect(code).toBe(Code.InvalidArgument);
    expect((await c.getFeatures("ok")).found).toBe(false);
  });

  test("deleteFeatures deletes names or the whole entity and says whether anything went", async () => {
    const c = makeClient();
    await c.setFeatures("e", { a: 1, b: 2 });
    expect(await c.deleteFeatures("e", ["a", "zzz"])).toBe(true);
    expect({ ...(await c.getFeatures("e")).features }).toEqual({ b: 2 });
    expect(await c.deleteFeatures("e", ["zzz"])).toBe(false);
    expect(await c.deleteFeatures("e")).toBe(true);
    expect((await c.getFeatures("e")).found).toBe(false);
    expect(await c.deleteFeatures("e")).toBe(false);
  });

  test("ping resolves", async () => {
    const c = makeClient();
    expect(await c.ping()).toBeUndefined();
  });

  test("raw call returns the encoded response body", async () => {
    const c = makeClient();
    await c.setFeatures("e", { a: 1 });
    const w = new ProtoWriter(64);
    encodeGetFeaturesRequest(w, "e");
    const body = await c.call(Method.GetFeatures, w.finish());
    // field 1 "e", one map entry, found = true
    expect(body[0]).toBe(0x0a);
    expect(body[body.length - 2]).toBe(0x18);
    expect(body[body.length - 1]).toBe(1);
  });

  test("server-side errors carry their status code and message", async () => {
    const c = makeClient();
    const err = await c.getFeatures("").catch((e) => e);
    expect(err).toBeInstanceOf(FeatureStoreError);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message).toContain("entity_id");
    expect(await codeOf(c.getFeatures("x".repeat(2000)))).toBe(Code.InvalidArgument);
    expect(await codeOf(c.call(99, new Uint8Array(0)))).toBe(Code.Unimplemented);
  });

  test("values the encoder rejects fail the call with INVALID_ARGUMENT instead of throwing", async () => {
    const c = makeClient();
    const p = c.setFeatures("e", { bad: 2n ** 64n });
    expect(p).toBeInstanceOf(Promise);
    expect(await codeOf(p)).toBe(Code.InvalidArgument);
    expect(await codeOf(c.setFeatures("e", { bad: null as never }))).toBe(Code.InvalidArgument);
    expect(await codeOf(c.setFeatures("e", { bad: ["a", 1] as never }))).toBe(Code.InvalidArgument);
  });

  test("calls after close() fail CANCELED; close() is idempotent", async () => {
    const c = makeClient();
    await c.close();
    await c.close();
    expect(await codeOf(c.ping())).toBe(Code.Canceled);
  });

  test("the deadline option is validated", () => {
    const t = new InMemoryTransport(
      new FeatureService(new MemoryStore({ maxEntries: 10, maxBytes: 1 << 16, shardCount: 1 })),
    );
    expect(() => new FeatureStoreClient(t, { deadlineMs: 0 })).toThrow(/deadlineMs/);
    expect(() => new FeatureStoreClient(t, { deadlineMs: Number.NaN })).toThrow(/deadlineMs/);
  });
});
