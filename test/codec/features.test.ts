import { describe, expect, test } from "bun:test";
import { writeFeatureMap } from "../../src/codec/features.ts";
import { decodeGetFeaturesResponse } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";

function answer(features: Parameters<typeof writeFeatureMap>[2]): Uint8Array {
  const w = new ProtoWriter(64);
  w.stringField(1, "e");
  writeFeatureMap(w, 2, features);
  return w.finish();
}

describe("typed decode", () => {
  test("embeddings decoded one after another are separate arrays with their own values", () => {
    const decoded = Array.from({ length: 2000 }, (_, i) =>
      decodeGetFeaturesResponse(answer({ emb: new Float32Array([i, i + 0.5, -i]) })),
    );
    decoded.forEach((d, i) => {
      expect(d.features.emb).toEqual(new Float32Array([i, i + 0.5, -i]));
    });
  });

  test("-0 is written as a double and reads back as -0; 0 stays an int", () => {
    const got = decodeGetFeaturesResponse(answer({ neg: -0, zero: 0 })).features;
    expect(Object.is(got.neg, -0)).toBe(true);
    expect(Object.is(got.zero, 0)).toBe(true);
  });

  test("a large embedding (past the slab's share) reads back whole", () => {
    const big = Float32Array.from({ length: 4096 }, (_, i) => i / 7);
    expect(decodeGetFeaturesResponse(answer({ big })).features.big).toEqual(big);
  });

  test("names that collide in the intern table still decode to themselves", () => {
    const names = Array.from({ length: 5000 }, (_, i) => `feature_${i}_é`);
    const features = Object.fromEntries(names.map((n, i) => [n, i]));
    for (let round = 0; round < 2; round++) {
      const d = decodeGetFeaturesResponse(answer(features));
      expect(Object.keys(d.features)).toEqual(names);
      names.forEach((n, i) => {
        expect(d.features[n]).toBe(i);
      });
    }
  });
});
