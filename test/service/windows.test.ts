/**
 * Windows stored in another layout than the server writes (a column split into several packed
 * chunks, as another program writing the Redis layout may do) take the full decode instead of
 * the in-place path; both must give the same tiles and aggregates.
 */
import { describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { ProtoWriter, WireType } from "../../src/codec/wire.ts";
import { aggregate, applyUpdate, type ParsedUpdate, UpdateOp, VALUE_WINDOW } from "../../src/service/ops.ts";
import { FeatureValueSchema } from "../gen/featurestore/v1/featurestore_pb.ts";

const MIN = 60_000;
const SPEC = { bucketMs: MIN, retentionMs: 60 * MIN };
const NOW = 1_000 * MIN + 30_000;

function observe(v: number, eventTime: number): ParsedUpdate {
  return {
    name: new TextEncoder().encode("w"),
    label: "w",
    op: UpdateOp.Observe,
    eventTime,
    maxAge: 0,
    value: new Uint8Array(0),
    listKind: 0,
    keepLast: 0,
    intDelta: null,
    doubleDelta: 0,
    observed: v,
    bucketMs: SPEC.bucketMs,
    retentionMs: SPEC.retentionMs,
  };
}

/** A window value of the given tiles with every column split in one chunk per tile. */
function chunked(tiles: [start: number, count: number, sum: number, min: number, max: number][]): Uint8Array {
  const w = new ProtoWriter(256);
  w.byte((10 << 3) | WireType.Varint);
  w.varint(NOW - MIN);
  const win = w.beginLength(VALUE_WINDOW);
  const spec = w.beginLength(1);
  w.byte(0x08);
  w.varint(SPEC.bucketMs);
  w.byte(0x10);
  w.varint(SPEC.retentionMs);
  w.endLength(spec);
  for (const [col, f] of [
    [0, 2],
    [1, 3],
  ] as const)
    for (const t of tiles) {
      const c = w.beginLength(f);
      w.varint(t[col]);
      w.endLength(c);
    }
  for (const [col, f] of [
    [2, 4],
    [3, 5],
    [4, 6],
  ] as const)
    for (const t of tiles) {
      w.tag(f, WireType.Bytes);
      w.varint(8);
      w.double(t[col]);
    }
  w.endLength(win);
  return w.finish();
}

const tileOf = (t: number) => t - (t % MIN);

describe("windows in another layout take the full decode, with the same results", () => {
  test("an observe merges into its tile, drops expired tiles, and rewrites the window canonically", () => {
    const old = chunked([
      [tileOf(NOW - 61 * MIN), 1, 100, 100, 100], // past the retention: dropped
      [tileOf(NOW - 10 * MIN), 2, 5, 1, 4],
      [tileOf(NOW), 1, 7, 7, 7],
    ]);
    const next = applyUpdate(observe(3, NOW - 10 * MIN + 1), old, NOW)!;
    const win = fromBinary(FeatureValueSchema, next).kind;
    expect(win.case).toBe("window");
    const v = win.value as {
      startsMs: bigint[];
      counts: bigint[];
      sums: number[];
      mins: number[];
      maxs: number[];
    };
    expect(v.startsMs).toEqual([BigInt(tileOf(NOW - 10 * MIN)), BigInt(tileOf(NOW))]);
    expect(v.counts).toEqual([3n, 1n]);
    expect(v.sums).toEqual([8, 7]);
    expect(v.mins).toEqual([1, 7]);
    expect(v.maxs).toEqual([4, 7]);
    // What it wrote is canonical: the next observe and read take the in-place path and agree.
    const again = applyUpdate(observe(10, NOW), next, NOW)!;
    expect({ ...aggregate("w", again, 0, again.length, 60 * MIN, NOW) }).toEqual({
      count: 5,
      sum: 25,
      min: 1,
      max: 10,
    });
  });

  test("a window read sums the tiles in its window only", () => {
    const old = chunked([
      [tileOf(NOW - 30 * MIN), 2, 5, 1, 4],
      [tileOf(NOW - MIN), 1, 7, 7, 7],
      [tileOf(NOW), 4, 2, -1, 3],
    ]);
    expect({ ...aggregate("w", old, 0, old.length, 2 * MIN, NOW) }).toEqual({
      count: 5,
      sum: 9,
      min: -1,
      max: 7,
    });
    expect({ ...aggregate("w", old, 0, old.length, 60 * MIN, NOW) }).toEqual({
      count: 7,
      sum: 14,
      min: -1,
      max: 7,
    });
    expect({ ...aggregate("w", old, 0, old.length, MIN, NOW + MIN) }).toEqual({
      count: 0,
      sum: 0,
      min: 0,
      max: 0,
    });
  });
});
