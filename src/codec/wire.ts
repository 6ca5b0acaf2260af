/**
 * Hand-written protobuf wire primitives for the hot paths: a growable writer that is reused
 * (never allocated per request) and a reader that hands out byte ranges instead of copies.
 */
import { invalidArgument } from "./status.ts";

/** Protobuf wire types. */
export const WireType = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;

const utf8Encoder = new TextEncoder();
// Scratch for 8-byte floats: copying through it avoids a DataView per read or write.
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Decodes UTF-8 bytes; malformed UTF-8 is INVALID_ARGUMENT. */
export function decodeUtf8(buf: Uint8Array, start: number, end: number): string {
  try {
    return utf8Decoder.decode(buf.subarray(start, end));
  } catch {
    throw invalidArgument("string field is not valid UTF-8");
  }
}

/**
 * Decodes UTF-8 bytes that a trusted peer produced (the client reading the server, which
 * validates UTF-8 on every write): Bun's native `utf8Slice` decodes a range without a subarray
 * view, at half TextDecoder's cost; invalid bytes would become U+FFFD rather than an error.
 */
export function utf8Slice(buf: Uint8Array, start: number, end: number): string {
  return nativeUtf8Slice.call(buf, start, end);
}
const nativeUtf8Slice = (
  Buffer.prototype as unknown as { utf8Slice: (this: Uint8Array, s: number, e: number) => string }
).utf8Slice;

/** Encodes a string as UTF-8 (allocates; not for hot paths). */
export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Bytes a varint of `v` (0 <= v < 2^32) takes. */
export function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/**
 * An append-only byte buffer that grows by doubling and is reused: `reset()` rewinds it.
 * `bytes` may be replaced when it grows, so never keep a reference across writes.
 */
export class ProtoWriter {
  bytes: Uint8Array;
  pos = 0;

  /** @param initial starting capacity in bytes (default 64 KiB). */
  constructor(initial = 65536) {
    this.bytes = new Uint8Array(initial);
  }

  reset(): void {
    this.pos = 0;
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.bytes.subarray(0, this.pos));
    this.bytes = next;
  }

  /** A view of what was written (valid until the next write). */
  view(start = 0): Uint8Array {
    return this.bytes.subarray(start, this.pos);
  }

  /** A copy of what was written. */
  finish(start = 0): Uint8Array {
    return this.bytes.slice(start, this.pos);
  }

  byte(b: number): void {
    this.ensure(1);
    this.bytes[this.pos++] = b;
  }

  /** Unsigned varint for 0 <= v < 2^53. */
  varint(v: number): void {
    this.ensure(10);
    const b = this.bytes;
    let p = this.pos;
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v = v > 0xffffffff ? Math.floor(v / 128) : v >>> 7;
    }
    b[p++] = v;
    this.pos = p;
  }

  /** Varint of a signed 64-bit integer in two's complement (int64 encoding). */
  varint64(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.ensure(10);
    while (u > 0x7fn) {
      this.bytes[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.bytes[this.pos++] = Number(u);
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  raw(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    this.ensure(n);
    if (n < 64) {
      // Short runs (names, ids, single features): a loop beats allocating a subarray view.
      const b = this.bytes;
      let p = this.pos;
      for (let i = start; i < end; i++) b[p++] = src[i]!;
    } else {
      this.bytes.set(src.subarray(start, end), this.pos);
    }
    this.pos += n;
  }

  /** Length-delimited field from a byte range. */
  bytesField(field: number, src: Uint8Array, start = 0, end = src.length): void {
    this.tag(field, WireType.Bytes);
    this.varint(end - start);
    this.raw(src, start, end);
  }

  /** Raw UTF-8 of `s`, no tag or length (error frame bodies). */
  utf8(s: string): void {
    this.ensure(s.length * 3);
    this.pos += utf8Encoder.encodeInto(s, this.bytes.subarray(this.pos)).written;
  }

  /**
   * Length-delimited string field, encoded in place (no intermediate buffer). Short ASCII
   * strings (entity ids, feature names: nearly every string sent) are copied char by char:
   * `encodeInto` and the `subarray` it needs cost ~0.3 us per call, which made encoding the ids
   * of a BatchGet of 100 a third of the client's CPU per request (profile of bench/e2e/client.ts).
   */
  stringField(field: number, s: string): void {
    this.tag(field, WireType.Bytes);
    const n = s.length;
    if (n < 0x80) {
      this.ensure(n + 1);
      const b = this.bytes;
      const at = this.pos + 1;
      let i = 0;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[at + i++] = c;
      }
      if (i === n) {
        b[at - 1] = n;
        this.pos = at + n;
        return;
      }
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit; reserve the longest varint for it.
    const max = s.length * 3;
    this.ensure(max + 5);
    const lenAt = this.pos;
    const lenSize = varintSize(max);
    const written = utf8Encoder.encodeInto(s, this.bytes.subarray(lenAt + lenSize)).written;
    const realSize = varintSize(written);
    if (realSize !== lenSize)
      this.bytes.copyWithin(lenAt + realSize, lenAt + lenSize, lenAt + lenSize + written);
    writeVarintAt(this.bytes, lenAt, written);
    this.pos = lenAt + realSize + written;
  }

  double(v: number): void {
    this.ensure(8);
    f64[0] = v;
    this.bytes.set(f64Bytes, this.pos);
    this.pos += 8;
  }

  /**
   * Starts a length-delimited field whose length is not known yet; pair with `endLength`.
   * One byte is reserved for the length; a longer body is moved up once at the end.
   */
  beginLength(field: number): number {
    this.tag(field, WireType.Bytes);
    this.ensure(1);
    return this.pos++;
  }

  endLength(at: number): void {
    const len = this.pos - at - 1;
    const size = varintSize(len);
    if (size > 1) {
      this.ensure(size - 1);
      this.bytes.copyWithin(at + size, at + 1, this.pos);
      this.pos += size - 1;
    }
    writeVarintAt(this.bytes, at, len);
  }
}

/**
 * Writes a varint (0 <= v < 2^32) at `at` into room already made: rewinding `pos` and calling
 * `varint()` instead could grow the buffer and copy only the bytes before `at`.
 */
function writeVarintAt(b: Uint8Array, at: number, v: number): void {
  while (v > 0x7f) {
    b[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[at] = v;
}

/**
 * A cursor over protobuf bytes. It is reused: `reset(buf, start, end)` points it at a new
 * message. Length-delimited fields are returned as ranges (`fieldStart`, `fieldEnd`) into
 * `buf`, never copied. Every read is bounds-checked; a malformed body is INVALID_ARGUMENT.
 */
export class ProtoReader {
  buf: Uint8Array = new Uint8Array(0);
  pos = 0;
  end = 0;
  /** Range of the last length-delimited field read by `bytesRange`. */
  fieldStart = 0;
  fieldEnd = 0;

  reset(buf: Uint8Array, start = 0, end = buf.length): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Unsigned varint up to 2^53 (larger values lose precision; use varint64). */
  varint(): number {
    const b = this.buf;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw invalidArgument("truncated varint");
      const byte = b[this.pos++]!;
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) return result;
      mul *= 128;
    }
    throw invalidArgument("varint longer than 10 bytes");
  }

  /**
   * int64 as a `number` when it is a safe integer, else a `bigint`. Positive values below 2^53
   * (counters, ids, timestamps) take a float fast path; BigInt arithmetic only for the rest.
   */
  int64(): number | bigint {
    const b = this.buf;
    const start = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8 && this.pos < this.end; i++) {
      const byte = b[this.pos++]!;
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) {
        if (result <= Number.MAX_SAFE_INTEGER) return result;
        break;
      }
      mul *= 128;
    }
    this.pos = start;
    const big = this.varint64();
    return big >= Number.MIN_SAFE_INTEGER && big <= Number.MAX_SAFE_INTEGER ? Number(big) : big;
  }

  /** Signed 64-bit varint (int64) as a bigint. */
  varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw invalidArgument("truncated varint");
      const byte = this.buf[this.pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return BigInt.asIntN(64, result);
      shift += 7n;
    }
    throw invalidArgument("varint longer than 10 bytes");
  }

  /**
   * Reads a tag; returns field number * 8 + wire type, as on the wire. Field number 0 and
   * numbers above 2^29-1 are INVALID_ARGUMENT, as conformant decoders reject them.
   */
  tag(): number {
    const t = this.varint();
    if (t < 8 || t > 0xffffffff) throw invalidArgument(`invalid field number ${Math.floor(t / 8)}`);
    return t;
  }

  /** Reads a length prefix and sets fieldStart/fieldEnd to the field's bytes. */
  bytesRange(): void {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start)
      throw invalidArgument("length-delimited field runs past the end of the message");
    this.fieldStart = start;
    this.fieldEnd = start + len;
    this.pos = start + len;
  }

  double(): number {
    if (this.end - this.pos < 8) throw invalidArgument("truncated double");
    for (let i = 0; i < 8; i++) f64Bytes[i] = this.buf[this.pos + i]!;
    this.pos += 8;
    return f64[0]!;
  }

  /** Skips a field of the given wire type (unknown fields are ignored, as protobuf requires). */
  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.advance(8);
        return;
      case WireType.Bytes:
        this.bytesRange();
        return;
      case WireType.Fixed32:
        this.advance(4);
        return;
      default:
        throw invalidArgument(`invalid wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.end - this.pos < n) throw invalidArgument("truncated field");
    this.pos += n;
  }
}

/** True when buf[aStart,aEnd) equals buf2[bStart,bEnd). */
export function bytesEqual(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  bEnd: number,
): boolean {
  const n = aEnd - aStart;
  if (n !== bEnd - bStart) return false;
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}
