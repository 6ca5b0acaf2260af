import { describe, expect, test } from "bun:test";
import { ProtoReader, ProtoWriter } from "../../src/codec/wire.ts";

describe("ProtoWriter", () => {
  test("a length-delimited field closed at the edge of the buffer keeps its body", () => {
    for (let fill = 0; fill < 40; fill++) {
      const w = new ProtoWriter(32);
      w.raw(new Uint8Array(fill));
      const at = w.beginLength(1);
      w.byte(7);
      w.endLength(at);
      expect([...w.view(fill)]).toEqual([0x0a, 1, 7]);
    }
  });

  test("a short string written at the edge of the buffer keeps its bytes", () => {
    for (let fill = 0; fill < 40; fill++) {
      const w = new ProtoWriter(32);
      w.raw(new Uint8Array(fill));
      w.stringField(1, "é");
      expect([...w.view(fill)]).toEqual([0x0a, 2, 0xc3, 0xa9]);
    }
  });

  test("strings of every length and script are written as TextEncoder's bytes after their length", () => {
    const enc = new TextEncoder();
    const strings = ["", "a", "user:42", "x".repeat(127), "x".repeat(128), "y".repeat(300)];
    // A non-ASCII char at the start, the middle and the end of ASCII runs around the 128 edge.
    for (const n of [1, 5, 42, 126, 127, 128, 129]) {
      strings.push(`é${"a".repeat(n)}`, `${"a".repeat(n)}é`, `${"a".repeat(n >> 1)}日${"b".repeat(n >> 1)}`);
    }
    strings.push("🙂", "a🙂b", "\u007f\u0080", "\ud800"); // a lone surrogate becomes U+FFFD
    for (const s of strings) {
      const w = new ProtoWriter(8);
      w.byte(0xff); // not at the start of the buffer
      w.stringField(3, s);
      const field = w.view(1);
      const r = new ProtoReader().reset(field);
      expect(r.tag()).toBe(0x1a);
      r.bytesRange();
      expect(r.done()).toBe(true);
      expect([...field.subarray(r.fieldStart, r.fieldEnd)]).toEqual([...enc.encode(s)]);
    }
  });

  test("bodies of 127, 128 and 20,000 bytes get 1-, 2- and 3-byte length prefixes", () => {
    for (const [n, prefix] of [
      [127, 1],
      [128, 2],
      [20_000, 3],
    ] as const) {
      const w = new ProtoWriter(16);
      const at = w.beginLength(2);
      w.raw(new Uint8Array(n).fill(9));
      w.endLength(at);
      expect(w.pos).toBe(1 + prefix + n);
      const r = new ProtoReader().reset(w.view());
      expect(r.tag()).toBe(0x12);
      r.bytesRange();
      expect(r.fieldEnd - r.fieldStart).toBe(n);
      expect(w.bytes[r.fieldEnd - 1]).toBe(9);
    }
  });

  test("varints round-trip up to 2^53 and int64 negatives through 10 bytes", () => {
    const w = new ProtoWriter(8);
    const values = [0, 1, 127, 128, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];
    for (const v of values) w.varint(v);
    w.varint64(-1n);
    w.varint64(-(2n ** 63n));
    const r = new ProtoReader().reset(w.view());
    for (const v of values) expect(r.varint()).toBe(v);
    expect(r.varint64()).toBe(-1n);
    expect(r.varint64()).toBe(-(2n ** 63n));
    expect(r.done()).toBe(true);
  });
});

describe("ProtoReader.int64", () => {
  test.each([
    0n,
    1n,
    127n,
    2n ** 49n - 1n,
    2n ** 49n,
    2n ** 53n - 1n,
    2n ** 53n,
    2n ** 56n - 1n,
    2n ** 56n,
    2n ** 63n - 1n,
    -1n,
    -(2n ** 53n) + 1n,
    -(2n ** 53n),
    -(2n ** 63n),
  ])("%p reads back as a number when safe, else a bigint", (v) => {
    const w = new ProtoWriter(16);
    w.varint64(v);
    const got = new ProtoReader().reset(w.view()).int64();
    const safe = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
    expect(got).toBe(safe ? Number(v) : v);
  });
});
