import { describe, expect, test } from "bun:test";
import {
  CellStatus,
  Code,
  DenseBatch,
  FeatureStoreClient,
  FeatureStoreError,
  FeatureVectorSpec,
  InMemoryTransport,
} from "../../src/client/index.ts";
import { decodeDenseBatchGet, decodeDenseGet } from "../../src/codec/dense.ts";
import type { FeaturesInput } from "../../src/codec/features.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";

const CACHE = { maxEntries: 1000, maxBytes: 1 << 22, shardCount: 4 };

function store(): EmbeddedFeatureStore {
  return EmbeddedFeatureStore.create(CACHE);
}

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return (err as FeatureStoreError).code;
  }
  throw new Error("expected a throw");
}

describe("FeatureVectorSpec", () => {
  test("lays features out in order, vectors at their declared width", () => {
    const spec = new FeatureVectorSpec(["a", { name: "emb", width: 3 }, { name: "b", default: 7 }]);
    expect(spec.names).toEqual(["a", "emb", "b"]);
    expect(spec.width).toBe(5);
    expect(spec.features).toBe(3);
    expect(Array.from(spec.offsets)).toEqual([0, 1, 4]);
    expect(spec.columnOf("b")).toBe(4);
    expect(spec.columnOf("nope")).toBe(-1);
    expect(Array.from(spec.defaults)).toEqual([0, 0, 0, 0, 7]);
  });

  test("refuses bad specs at construction with a message naming the feature", () => {
    const bad: [unknown, string][] = [
      [[], "at least one"],
      [["a", "a"], '"a" appears twice'],
      [[""], "non-empty"],
      [[{ name: "e", width: 0 }], 'feature "e": width'],
      [[{ name: "e", width: 2.5 }], 'feature "e": width'],
      [[{ name: "e", kind: "vector", width: 70000 }], 'feature "e": width'],
      [[{ name: "s", kind: "string" }], 'feature "s": string values cannot go into a Float32Array'],
      [[{ name: "s", kind: "bytes" }], 'feature "s": bytes values cannot go into a Float32Array'],
      [[{ name: "e", width: 2, default: [1, 2, 3] }], 'feature "e": default has 3 numbers'],
      [[{ name: "n", default: "0" }], 'feature "n": default must be a number'],
      [[{ name: "n", kind: "tensor" }], 'feature "n": kind must be'],
    ];
    for (const [cols, msg] of bad) {
      let err: unknown;
      try {
        new FeatureVectorSpec(cols as never);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FeatureStoreError);
      expect((err as FeatureStoreError).code).toBe(Code.InvalidArgument);
      expect((err as FeatureStoreError).message).toContain(msg);
    }
    expect(() => new FeatureVectorSpec(["a"], { nonFinite: "drop" as never })).toThrow("nonFinite");
    expect(() => new FeatureVectorSpec(["a"], { maxMappedValues: -1 })).toThrow("maxMappedValues");
  });
});

describe("dense read on the embedded store", () => {
  test("every value type equals the typed read, value for value", () => {
    const s = store();
    const bytes = new Uint8Array([9, 8, 7]);
    s.setFeatures("e", {
      small: 42,
      negative: -7,
      big: 2n ** 60n + 1n,
      bigNegative: -(2n ** 62n) - 3n,
      minInt: -(2n ** 63n),
      double: 1.5,
      tiny: { double: 1e-40 },
      huge: { double: 1e300 },
      yes: true,
      no: false,
      emb: new Float32Array([0.1, -2.5, 3e-8]),
      ints: new BigInt64Array([1n, -1n, 2n ** 62n]),
      text: "héllo",
      blob: bytes,
    });
    const textCodes: string[] = [];
    const blobCodes: number[][] = [];
    const spec = new FeatureVectorSpec([
      "small",
      "negative",
      "big",
      "bigNegative",
      "minInt",
      "double",
      "tiny",
      "huge",
      "yes",
      "no",
      { name: "emb", width: 3 },
      { name: "ints", width: 3 },
      { name: "text", kind: "string", map: (v) => textCodes.push(v) },
      { name: "blob", kind: "bytes", map: (v) => blobCodes.push(Array.from(v)) + 100 },
    ]);
    const typed = s.getFeatures("e").features;
    const b = s.getDense(["e"], spec);
    const f = (name: string) => b.get(0, spec, name);
    for (const name of ["small", "negative", "double", "tiny", "huge"])
      expect(f(name)).toBe(Math.fround(typed[name] as number));
    for (const name of ["big", "bigNegative", "minInt"])
      expect(f(name)).toBe(Math.fround(Number(typed[name] as bigint)));
    expect(f("yes")).toBe(1);
    expect(f("no")).toBe(0);
    expect(f("huge")).toBe(Number.POSITIVE_INFINITY); // a double beyond float32 range, as Math.fround
    expect(f("emb")).toEqual(typed.emb as Float32Array);
    expect(f("ints")).toEqual(Float32Array.from(typed.ints as BigInt64Array, (x) => Number(x)));
    expect(textCodes).toEqual(["héllo"]);
    expect(f("text")).toBe(1);
    expect(blobCodes).toEqual([[9, 8, 7]]);
    expect(f("blob")).toBe(101);
    expect(Array.from(b.status)).toEqual(new Array(14).fill(CellStatus.Ok));
    expect(Array.from(b.present)).toEqual(new Array(14).fill(1));
    expect(Array.from(b.found)).toEqual([1]);
    expect(b.rows).toBe(1);
    expect(b.width).toBe(spec.width);
  });

  test("missing entities and features get the defaults, and the mask and status say so", () => {
    const s = store();
    s.setFeatures("has-a", { a: 5 });
    s.setFeatures("has-both", { a: 1, v: new Float32Array([1, 2]) });
    const spec = new FeatureVectorSpec(["a", { name: "v", width: 2, default: [-1, -2] }], { default: 9 });
    const b = s.getDense(["has-a", "nobody", "has-both"], spec);
    expect(b.rows).toBe(3);
    expect(Array.from(b.values)).toEqual([5, -1, -2, 9, -1, -2, 1, 1, 2]);
    expect(Array.from(b.found)).toEqual([1, 0, 1]);
    expect(Array.from(b.present)).toEqual([1, 0, 0, 0, 1, 1]);
    expect(Array.from(b.status)).toEqual([
      CellStatus.Ok,
      CellStatus.Missing,
      CellStatus.EntityMissing,
      CellStatus.EntityMissing,
      CellStatus.Ok,
      CellStatus.Ok,
    ]);
  });

  test("the README's scorer over a dense batch equals the same sum over the typed values", () => {
    // The function the README shows feeding a model, verbatim.
    function score(b: DenseBatch, weights: Float32Array, bias: number, out: Float32Array): Float32Array {
      for (let r = 0; r < b.rows; r++) {
        let z = bias;
        for (let c = 0; c < b.width; c++) z += b.values[r * b.width + c]! * weights[c]!;
        out[r] = 1 / (1 + Math.exp(-z));
      }
      return out;
    }
    const s = store();
    const ids = Array.from({ length: 20 }, (_, i) => `u${i}`);
    ids.forEach((id, i) => {
      if (i % 7 !== 3) s.setFeatures(id, { clicks: i, ctr: { double: i / 40 }, emb: [i / 10, -i / 20] });
    });
    const spec = new FeatureVectorSpec(["clicks", { name: "ctr", default: -1 }, { name: "emb", width: 2 }]);
    const weights = new Float32Array([0.05, 2, -0.3, 0.7]);
    const batch = spec.newBatch(64);
    const got = score(s.getDense(ids, spec, batch), weights, -1.5, new Float32Array(64));
    const typed = s.batchGet(ids).results;
    typed.forEach((r, i) => {
      const f = r.features;
      const x = r.found ? [f.clicks as number, f.ctr as number, ...(f.emb as Float32Array)] : [0, -1, 0, 0]; // an unknown entity's row: the defaults
      let z = -1.5;
      x.forEach((v, c) => {
        z += Math.fround(v) * weights[c]!;
      });
      expect(got[i]).toBeCloseTo(1 / (1 + Math.exp(-z)), 6);
    });
    expect(Array.from(batch.found.subarray(0, batch.rows))).toEqual(ids.map((_, i) => (i % 7 === 3 ? 0 : 1)));
  });

  test("a list of the wrong width is a WidthMismatch cell with its default; the row's other cells are read", () => {
    const s = store();
    s.setFeatures("short", { v: new Float32Array([1, 2]), n: 3 });
    s.setFeatures("long", { v: new Float32Array([1, 2, 3, 4]), n: 4 });
    s.setFeatures("empty", { v: new Float32Array(0), n: 5 });
    s.setFeatures("ints", { v: new BigInt64Array([1n, 2n]), n: 6 });
    const spec = new FeatureVectorSpec([{ name: "v", width: 3, default: 0.5 }, "n"]);
    const b = s.getDense(["short", "long", "empty", "ints"], spec);
    for (let r = 0; r < 4; r++) {
      expect(Array.from(b.row(r).subarray(0, 3))).toEqual([0.5, 0.5, 0.5]);
      expect(b.status[r * 2]).toBe(CellStatus.WidthMismatch);
      expect(b.present[r * 2]).toBe(0);
      expect(b.status[r * 2 + 1]).toBe(CellStatus.Ok);
      expect(b.values[r * 4 + 3]).toBe(3 + r);
    }
  });

  test("a value of a type the column cannot take is a TypeMismatch cell, not an error", () => {
    const s = store();
    s.setFeatures("e", { n: "text", v: 3, s: 4, l: ["x", "y"] });
    const spec = new FeatureVectorSpec(
      ["n", { name: "v", width: 1 }, { name: "s", kind: "string", map: () => 1 }, "l"],
      { default: -1 },
    );
    const b = s.getDense(["e"], spec);
    expect(Array.from(b.values)).toEqual([-1, -1, -1, -1]);
    expect(Array.from(b.status)).toEqual(new Array(4).fill(CellStatus.TypeMismatch));
    expect(Array.from(b.present)).toEqual([0, 0, 0, 0]);
  });

  test("NaN and ±Infinity are kept by default, or replaced by the default with nonFinite: 'default'", () => {
    const s = store();
    s.setFeatures("e", {
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      ninf: Number.NEGATIVE_INFINITY,
      v: new Float32Array([1, Number.NaN]),
      ok: 2.5,
    });
    const cols = ["nan", "inf", "ninf", { name: "v", width: 2 }, "ok"] as const;
    const keep = s.getDense(["e"], new FeatureVectorSpec(cols));
    expect(Number.isNaN(keep.values[0]!)).toBe(true);
    expect(keep.values[1]).toBe(Number.POSITIVE_INFINITY);
    expect(keep.values[2]).toBe(Number.NEGATIVE_INFINITY);
    expect(keep.values[3]).toBe(1);
    expect(Number.isNaN(keep.values[4]!)).toBe(true);
    expect(Array.from(keep.status)).toEqual(new Array(5).fill(CellStatus.Ok));

    const replace = s.getDense(["e"], new FeatureVectorSpec(cols, { nonFinite: "default", default: 7 }));
    expect(Array.from(replace.values)).toEqual([7, 7, 7, 7, 7, 2.5]);
    expect(Array.from(replace.status)).toEqual([
      CellStatus.NonFinite,
      CellStatus.NonFinite,
      CellStatus.NonFinite,
      CellStatus.NonFinite,
      CellStatus.Ok,
    ]);
  });

  test("a reused output batch is overwritten completely: no value of an earlier read survives", () => {
    const s = store();
    s.setFeatures("full", { a: 1, v: new Float32Array([1, 2]) });
    s.setFeatures("partial", { a: 2 });
    const spec = new FeatureVectorSpec(["a", { name: "v", width: 2 }]);
    const out = spec.newBatch(2);
    const first = s.getDense(["full", "full"], spec, out);
    expect(first).toBe(out);
    expect(Array.from(out.values)).toEqual([1, 1, 2, 1, 1, 2]);
    s.getDense(["partial", "nobody"], spec, out);
    expect(Array.from(out.values)).toEqual([2, 0, 0, 0, 0, 0]);
    expect(Array.from(out.present)).toEqual([1, 0, 0, 0]);
    expect(Array.from(out.found)).toEqual([1, 0]);
    // Fewer rows than the batch holds: `rows` says how many were written.
    s.getDense(["full"], spec, out);
    expect(out.rows).toBe(1);
    expect(Array.from(out.row(0))).toEqual([1, 1, 2]);
  });

  test("a caller's Float32Array (a view into a larger tensor) is written in place and nothing around it", () => {
    const s = store();
    s.setFeatures("e", { a: 3, b: 4 });
    const spec = new FeatureVectorSpec(["a", "b"]);
    const tensor = new Float32Array(8).fill(-9);
    const out = spec.newBatch(2, tensor.subarray(2, 6));
    s.getDense(["e", "e"], spec, out);
    expect(Array.from(tensor)).toEqual([-9, -9, 3, 4, 3, 4, -9, -9]);
  });

  test("specs can change between calls on the same store and the same batch", () => {
    const s = store();
    s.setFeatures("e", { a: 1, b: 2, c: 3, v: new Float32Array([4, 5]) });
    const ab = new FeatureVectorSpec(["a", "b"]);
    const cv = new FeatureVectorSpec(["c", { name: "v", width: 2 }]);
    const ba = new FeatureVectorSpec(["b", "a"]);
    const out = new DenseBatch(new Float32Array(6), 4, 2);
    expect(Array.from(s.getDense(["e", "e"], ab, out).values)).toEqual([1, 2, 1, 2, 0, 0]);
    expect(Array.from(s.getDense(["e", "e"], cv, out).values)).toEqual([3, 4, 5, 3, 4, 5]);
    expect(out.width).toBe(3);
    expect(Array.from(s.getDense(["e"], ba, out).values.subarray(0, 2))).toEqual([2, 1]);
    expect(Array.from(s.getDense(["e"], ab).values)).toEqual([1, 2]);
  });

  test("a batch too small for the read is INVALID_ARGUMENT before anything is sent", () => {
    const s = store();
    const spec = new FeatureVectorSpec(["a"]);
    expect(codeOf(() => s.getDense(["x", "y"], spec, spec.newBatch(1)))).toBe(Code.InvalidArgument);
  });

  test("map is called once per distinct value, and for every value past maxMappedValues", () => {
    const s = store();
    for (let i = 0; i < 6; i++) s.setFeatures(`e${i}`, { c: i % 2 ? "odd" : "even" });
    let calls = 0;
    const map = (v: string) => {
      calls++;
      return v.length;
    };
    const ids = ["e0", "e1", "e2", "e3", "e4", "e5"];
    const spec = new FeatureVectorSpec([{ name: "c", kind: "string", map }]);
    s.getDense(ids, spec);
    s.getDense(ids, spec);
    expect(calls).toBe(2);
    const unbounded = new FeatureVectorSpec([{ name: "c", kind: "string", map }], { maxMappedValues: 0 });
    calls = 0;
    expect(Array.from(s.getDense(ids, unbounded).values)).toEqual([4, 3, 4, 3, 4, 3]);
    expect(calls).toBe(6);
  });

  test("a map that returns something other than a number is INVALID_ARGUMENT naming the feature", () => {
    const s = store();
    s.setFeatures("e", { c: "x" });
    const spec = new FeatureVectorSpec([{ name: "c", kind: "string", map: () => "1" as unknown as number }]);
    let err: unknown;
    try {
      s.getDense(["e"], spec);
    } catch (e) {
      err = e;
    }
    expect((err as FeatureStoreError).code).toBe(Code.InvalidArgument);
    expect((err as FeatureStoreError).message).toContain('feature "c"');
  });

  test("a spec of many features (names hashed into one table) reads every one", () => {
    const s = store();
    const features: FeaturesInput = {};
    const names: string[] = [];
    for (let i = 0; i < 300; i++) {
      names.push(`feature_${i}_${"x".repeat(i % 40)}`);
      features[names[i]!] = i;
    }
    s.setFeatures("wide", features);
    const spec = new FeatureVectorSpec([...names].reverse());
    const b = s.getDense(["wide"], spec);
    expect(Array.from(b.values)).toEqual(names.map((_, i) => 299 - i));
  });

  test("duplicate ids give duplicate rows; an empty id list gives zero rows", () => {
    const s = store();
    s.setFeatures("e", { a: 1 });
    const spec = new FeatureVectorSpec(["a"]);
    expect(Array.from(s.getDense(["e", "e", "e"], spec).values)).toEqual([1, 1, 1]);
    expect(s.getDense([], spec).rows).toBe(0);
  });
});

describe("dense read on the client", () => {
  function client() {
    const svc = new FeatureService(new MemoryStore(CACHE));
    return new FeatureStoreClient(new InMemoryTransport(svc));
  }

  test("getDense resolves with the batch it filled, equal to the embedded store's", async () => {
    const c = client();
    await c.setFeatures("e", { a: 1.25, v: new Float32Array([1, 2, 3]) });
    const spec = new FeatureVectorSpec(["a", { name: "v", width: 3 }, "gone"]);
    const out = spec.newBatch(2);
    const b = await c.getDense(["e", "x"], spec, { out });
    expect(b).toBe(out);
    expect(Array.from(b.values)).toEqual([1.25, 1, 2, 3, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(b.status)).toEqual([0, 0, 1, 2, 2, 2]);
  });

  test("a batch too small rejects INVALID_ARGUMENT without a request", async () => {
    const c = client();
    const spec = new FeatureVectorSpec(["a"]);
    let err: unknown;
    await c.getDense(["a", "b"], spec, { out: spec.newBatch(1) }).catch((e) => {
      err = e;
    });
    expect((err as FeatureStoreError).code).toBe(Code.InvalidArgument);
  });
});

describe("dense decode of answer bytes", () => {
  test("an answer with another number of results than ids is INTERNAL", () => {
    const w = new ProtoWriter(64);
    w.bytesField(1, new Uint8Array([0x18, 1]));
    const spec = new FeatureVectorSpec(["a"]);
    expect(codeOf(() => decodeDenseBatchGet(spec, w.finish(), undefined, 2))).toBe(Code.Internal);
  });

  test("malformed bytes are INTERNAL, never a crash or a RangeError", () => {
    const spec = new FeatureVectorSpec(["a", { name: "v", width: 2 }]);
    const cases = [
      [0x0a, 0x05, 0x12],
      [0x0a, 0x04, 0x12, 0x02, 0x0a, 0x01],
      [0x0a, 0x80],
      [0x0a, 0x06, 0x12, 0x04, 0x0a, 0x01, 0x61, 0x12],
      [0x0a, 0x08, 0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x09],
      [0x07],
    ];
    for (const c of cases)
      expect(codeOf(() => decodeDenseBatchGet(spec, Uint8Array.from(c), spec.newBatch(4)))).toBe(
        Code.Internal,
      );
  });

  test("decodeDenseGet reads a GetFeaturesResponse into the row asked for", () => {
    const s = store();
    s.setFeatures("e", { a: 8 });
    const w = new ProtoWriter(64);
    w.stringField(1, "e");
    const answer = s.service;
    const res = new ProtoWriter(64);
    answer.handle(1, w.bytes, 0, w.pos, res);
    const spec = new FeatureVectorSpec(["a"]);
    const out = spec.newBatch(3);
    decodeDenseGet(spec, res.finish(), out, 2);
    expect(out.values[2]).toBe(8);
    expect(out.found[2]).toBe(1);
  });
});

describe("fetch: what a dense read asks the server for", () => {
  test('"all" reads the same cells as "named", skipping the features the spec does not name', () => {
    const s = store();
    s.setFeatures("e", { a: 1, other: "text", v: new Float32Array([2, 3]), more: [1, 2, 3] });
    const cols = [{ name: "v", width: 2 }, "a", "absent"] as const;
    const named = s.getDense(["e", "x"], new FeatureVectorSpec(cols));
    const all = s.getDense(["e", "x"], new FeatureVectorSpec(cols, { fetch: "all" }));
    expect(Array.from(all.values)).toEqual(Array.from(named.values));
    expect(Array.from(all.status)).toEqual(Array.from(named.status));
    expect(Array.from(all.values.subarray(0, 4))).toEqual([2, 3, 1, 0]);
  });
});

describe("a read of one entity", () => {
  test("fills row 0 (found or not) and sets rows to 1 on a batch that held more", async () => {
    const svc = new FeatureService(new MemoryStore(CACHE));
    const c = new FeatureStoreClient(new InMemoryTransport(svc));
    await c.setFeatures("e", { a: 4 });
    const spec = new FeatureVectorSpec(["a", { name: "b", default: 6 }]);
    const out = spec.newBatch(3);
    await c.getDense(["e", "e", "e"], spec, { out });
    expect(out.rows).toBe(3);
    await c.getDense(["nobody"], spec, { out });
    expect(out.rows).toBe(1);
    expect(Array.from(out.row(0))).toEqual([0, 6]);
    expect(Array.from(out.status.subarray(0, 2))).toEqual([
      CellStatus.EntityMissing,
      CellStatus.EntityMissing,
    ]);
    await c.getDense(["e"], spec, { out });
    expect(Array.from(out.row(0))).toEqual([4, 6]);
    expect(Array.from(out.status.subarray(0, 2))).toEqual([CellStatus.Ok, CellStatus.Missing]);
  });
});
