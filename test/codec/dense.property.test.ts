/**
 * The dense decode against the typed decode, on random records and random specs: for every
 * cell, what the typed value says the cell must hold (value, default, status) is what the dense
 * read holds. Both decode the same answer bytes, produced by the real service.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  CellStatus,
  decodeDenseBatchGet,
  type FeatureColumn,
  FeatureVectorSpec,
} from "../../src/codec/dense.ts";
import type { FeatureInput, FeaturesInput, FeatureValue } from "../../src/codec/features.ts";
import { decodeBatchGetResponse, encodeBatchGetRequest } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";

const NAMES = ["a", "b", "c", "emb", "ints", "s", "blob", "__proto__", "ünï", "x".repeat(70)];

const value: fc.Arbitrary<FeatureInput> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.double().map((d) => ({ double: d })),
  fc.boolean(),
  fc.float32Array({ maxLength: 5 }),
  fc
    .array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 4 })
    .map((xs) => new BigInt64Array(xs)),
  fc.constantFrom("US", "DE", "", "héllo"),
  fc.uint8Array({ maxLength: 4 }),
  fc.array(fc.constantFrom("p", "q"), { maxLength: 2 }),
);

const record: fc.Arbitrary<FeaturesInput> = fc
  .dictionary(fc.constantFrom(...NAMES), value, { maxKeys: NAMES.length })
  .map((d) => {
    // fc.dictionary builds with a prototype: copy into a null-prototype object so that
    // "__proto__" is an own key.
    const out: FeaturesInput = Object.create(null);
    for (const k of Object.keys(d)) out[k] = d[k]!;
    return out;
  });

type Kind = "number" | "vector" | "string" | "bytes";
const column: fc.Arbitrary<{ name: string; kind: Kind; width: number; dflt: number }> = fc.record({
  name: fc.constantFrom(...NAMES),
  kind: fc.constantFrom<Kind>("number", "vector", "string", "bytes"),
  width: fc.integer({ min: 1, max: 4 }),
  dflt: fc.constantFrom(0, -1, 2.5),
});

const stringCode = (s: string) => s.length * 10 + (s.charCodeAt(0) || 0);
const bytesCode = (b: Uint8Array) => b.length * 1000 + (b[0] ?? 0);

/** What the cell of a feature must hold, from its typed value. */
function expected(
  col: { kind: Kind; width: number; dflt: number },
  v: FeatureValue | undefined,
  found: boolean,
  nonFinite: boolean,
): { status: number; floats: number[] } {
  const dflt = new Array<number>(col.width).fill(col.dflt);
  const fail = (status: number) => ({ status, floats: col.kind === "vector" ? dflt : [col.dflt] });
  if (!found) return fail(CellStatus.EntityMissing);
  if (v === undefined) return fail(CellStatus.Missing);
  let floats: number[] | null = null;
  if (col.kind === "number") {
    if (typeof v === "number" || typeof v === "bigint") floats = [Math.fround(Number(v))];
    else if (typeof v === "boolean") floats = [v ? 1 : 0];
  } else if (col.kind === "vector") {
    if (v instanceof Float32Array || v instanceof BigInt64Array) {
      if (v.length !== col.width) return fail(CellStatus.WidthMismatch);
      floats = Array.from(v as ArrayLike<number | bigint>, (x) => Math.fround(Number(x)));
    }
  } else if (col.kind === "string") {
    if (typeof v === "string") floats = [Math.fround(stringCode(v))];
  } else if (v instanceof Uint8Array && !(v instanceof Float32Array)) {
    floats = [Math.fround(bytesCode(v))];
  }
  if (floats === null) return fail(CellStatus.TypeMismatch);
  if (nonFinite && col.kind !== "string" && col.kind !== "bytes" && floats.some((x) => !Number.isFinite(x)))
    if (typeof v === "number" ? !Number.isFinite(v) : v instanceof Float32Array)
      // Replaced only where the stored value itself is not finite (a finite double beyond
      // float32 range becomes Infinity in the tensor, and is kept).
      return fail(CellStatus.NonFinite);
  return { status: CellStatus.Ok, floats };
}

describe("dense decode equals the typed decode", () => {
  test("random records, random specs, the same answer bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.option(record, { freq: 4 }), { minLength: 1, maxLength: 6 }),
        fc.uniqueArray(column, { minLength: 1, maxLength: 6, selector: (c) => c.name }),
        fc.boolean(),
        fc.boolean(),
        (records, cols, nonFinite, fetchAll) => {
          const store = EmbeddedFeatureStore.create({ maxEntries: 64, maxBytes: 1 << 20, shardCount: 1 });
          const ids = records.map((_, i) => `e${i}`);
          records.forEach((r, i) => {
            if (r !== null) store.setFeatures(ids[i]!, r, { replace: true });
          });
          const specCols: FeatureColumn[] = cols.map((c) =>
            c.kind === "vector"
              ? { name: c.name, width: c.width, default: c.dflt }
              : c.kind === "string"
                ? { name: c.name, kind: "string", map: stringCode, default: c.dflt }
                : c.kind === "bytes"
                  ? { name: c.name, kind: "bytes", map: bytesCode, default: c.dflt }
                  : { name: c.name, default: c.dflt },
          );
          const spec = new FeatureVectorSpec(specCols, {
            nonFinite: nonFinite ? "default" : "keep",
            fetch: fetchAll ? "all" : "named",
          });
          // One answer (whole records with fetch "all"), decoded both ways.
          const req = new ProtoWriter(256);
          encodeBatchGetRequest(req, ids, fetchAll ? undefined : spec.names);
          const res = new ProtoWriter(1024);
          store.service.handle(2, req.bytes, 0, req.pos, res);
          const bytes = res.finish();
          const typed = decodeBatchGetResponse(bytes);
          const dense = decodeDenseBatchGet(spec, bytes, undefined, ids.length);
          expect(dense.rows).toBe(ids.length);
          for (let r = 0; r < ids.length; r++) {
            const t = typed.results[r]!;
            expect(dense.found[r]).toBe(t.found ? 1 : 0);
            cols.forEach((c, f) => {
              const want = expected(c, t.features[c.name], t.found, nonFinite);
              const cell = r * spec.features + f;
              const at = r * spec.width + spec.offsets[f]!;
              const got = Array.from(dense.values.subarray(at, at + spec.widths[f]!));
              expect({ name: c.name, status: dense.status[cell] }).toEqual({
                name: c.name,
                status: want.status,
              });
              expect(got).toEqual(want.floats);
              expect(dense.present[cell]).toBe(want.status === CellStatus.Ok ? 1 : 0);
            });
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
