/**
 * The typed decode as it was before issue 15 (commit e10809c), frozen here so that
 * codec.bench.ts measures before and after side by side in one run. Not used by src/.
 */
import type { GetFeaturesResult as Result } from "../../src/codec/messages.ts";
import { FeatureStoreError, invalidArgument } from "../../src/codec/status.ts";
import { ProtoReader, utf8Slice, WireType } from "../../src/codec/wire.ts";

/** The results as they were then (issue 12 added stale, aggregates, times and a version). */
type GetFeaturesResult = Pick<Result, "entityId" | "found" | "features" | "missing">;
type BatchGetResult = { results: GetFeaturesResult[]; hits: number; misses: number };

type FeatureValue = GetFeaturesResult["features"][string];
type Features = GetFeaturesResult["features"];
const ValueField = {
  Int: 1,
  Double: 2,
  String: 3,
  Bool: 4,
  Bytes: 5,
  FloatList: 6,
  IntList: 7,
  StringList: 8,
} as const;

/**
 * Feature names repeat in every answer: a small direct-mapped table of the names seen recently
 * turns each into one hash and one byte compare instead of a decode and a new string.
 */
const NAME_SLOTS = 1024;
const MAX_INTERNED = 64;
const internedBytes: (Uint8Array | undefined)[] = new Array(NAME_SLOTS);
const internedNames: string[] = new Array(NAME_SLOTS);

function internName(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n > MAX_INTERNED) return utf8Slice(buf, start, end);
  let h = n;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  const slot = (h >>> 22) & (NAME_SLOTS - 1);
  const seen = internedBytes[slot];
  if (seen !== undefined && seen.length === n) {
    let i = 0;
    while (i < n && seen[i] === buf[start + i]) i++;
    if (i === n) return internedNames[slot]!;
  }
  const name = utf8Slice(buf, start, end);
  internedBytes[slot] = buf.slice(start, end);
  internedNames[slot] = name;
  return name;
}

/**
 * Embeddings are carved out of 64 KiB slabs, as Node pools small Buffers: one ArrayBuffer per
 * answer's embedding costs more than decoding the rest of the answer. A slab lives as long as
 * any array cut from it; `.buffer` of a returned array is the slab (use byteOffset/length).
 */
const SLAB_BYTES = 64 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabBytes = new Uint8Array(slab);
let slabUsed = 0;

function floatsFromSlab(src: Uint8Array, start: number, n: number): Float32Array {
  if (n > SLAB_BYTES / 8) {
    const own = new ArrayBuffer(n);
    new Uint8Array(own).set(src.subarray(start, start + n));
    return new Float32Array(own);
  }
  if (slabUsed + n > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabBytes = new Uint8Array(slab);
    slabUsed = 0;
  }
  const at = slabUsed;
  slabBytes.set(src.subarray(start, start + n), at);
  slabUsed = at + ((n + 7) & ~7);
  return new Float32Array(slab, at, n >>> 2);
}

const f32 = new Float32Array(1);
const f32Bytes = new Uint8Array(f32.buffer);

/** Reads a FeatureValue message in r.buf[start,end) into its typed form. */
function readFeatureValue(r: ProtoReader, start: number, end: number): FeatureValue {
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  let value: FeatureValue | undefined;
  while (!r.done()) {
    const tag = r.tag();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case ValueField.Int:
        expectWire(wt, WireType.Varint, "int_value");
        value = r.int64();
        break;
      case ValueField.Double:
        expectWire(wt, WireType.Fixed64, "double_value");
        value = r.double();
        break;
      case ValueField.String:
        expectWire(wt, WireType.Bytes, "string_value");
        r.bytesRange();
        value = utf8Slice(r.buf, r.fieldStart, r.fieldEnd);
        break;
      case ValueField.Bool:
        expectWire(wt, WireType.Varint, "bool_value");
        value = r.varint() !== 0;
        break;
      case ValueField.Bytes:
        expectWire(wt, WireType.Bytes, "bytes_value");
        r.bytesRange();
        value = r.buf.slice(r.fieldStart, r.fieldEnd);
        break;
      case ValueField.FloatList:
        expectWire(wt, WireType.Bytes, "float_list");
        r.bytesRange();
        value = readFloatList(r, r.fieldStart, r.fieldEnd);
        break;
      case ValueField.IntList:
        expectWire(wt, WireType.Bytes, "int_list");
        r.bytesRange();
        value = readIntList(r, r.fieldStart, r.fieldEnd);
        break;
      case ValueField.StringList:
        expectWire(wt, WireType.Bytes, "string_list");
        r.bytesRange();
        value = readStringList(r, r.fieldStart, r.fieldEnd);
        break;
      default:
        r.skip(wt);
    }
  }
  r.end = outerEnd;
  if (value === undefined) throw invalidArgument("FeatureValue has no value set");
  return value;
}

function expectWire(actual: number, expected: number, field: string): void {
  if (actual !== expected) throw invalidArgument(`${field} has wire type ${actual}, expected ${expected}`);
}

function readFloatList(r: ProtoReader, start: number, end: number): Float32Array {
  const buf = r.buf;
  const values: number[] = [];
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const n = r.fieldEnd - r.fieldStart;
      if (n % 4 !== 0) throw invalidArgument("packed float list length is not a multiple of 4");
      if (values.length === 0 && r.done()) {
        // The usual case: one packed run, copied once into an aligned slice of a shared slab.
        r.end = outerEnd;
        return floatsFromSlab(buf, r.fieldStart, n);
      }
      for (let p = r.fieldStart; p < r.fieldEnd; p += 4) values.push(readF32(buf, p));
    } else if (tag === ((1 << 3) | WireType.Fixed32)) {
      if (end - r.pos < 4) throw invalidArgument("truncated float");
      values.push(readF32(buf, r.pos));
      r.pos += 4;
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outerEnd;
  return Float32Array.from(values);
}

function readF32(buf: Uint8Array, p: number): number {
  f32Bytes[0] = buf[p]!;
  f32Bytes[1] = buf[p + 1]!;
  f32Bytes[2] = buf[p + 2]!;
  f32Bytes[3] = buf[p + 3]!;
  return f32[0]!;
}

function readIntList(r: ProtoReader, start: number, end: number): BigInt64Array {
  const values: bigint[] = [];
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const after = r.pos;
      const listEnd = r.end;
      r.pos = r.fieldStart;
      r.end = r.fieldEnd;
      while (!r.done()) values.push(r.varint64());
      r.pos = after;
      r.end = listEnd;
    } else if (tag === ((1 << 3) | WireType.Varint)) {
      values.push(r.varint64());
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outerEnd;
  return BigInt64Array.from(values);
}

function readStringList(r: ProtoReader, start: number, end: number): string[] {
  const values: string[] = [];
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      values.push(utf8Slice(r.buf, r.fieldStart, r.fieldEnd));
    } else {
      r.skip(tag & 7);
    }
  }
  r.end = outerEnd;
  return values;
}

/** Reads one `map<string, FeatureValue>` entry in r.buf[start,end) into `into`. */
function readFeatureEntry(r: ProtoReader, start: number, end: number, into: Features): void {
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  let name = "";
  let valueStart = -1;
  let valueEnd = -1;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      name = internName(r.buf, r.fieldStart, r.fieldEnd);
    } else if (tag === ((2 << 3) | WireType.Bytes)) {
      r.bytesRange();
      valueStart = r.fieldStart;
      valueEnd = r.fieldEnd;
    } else {
      r.skip(tag & 7);
    }
  }
  if (valueStart < 0) throw invalidArgument(`feature "${name}" has no value`);
  try {
    into[name] = readFeatureValue(r, valueStart, valueEnd);
  } catch (err) {
    const e = FeatureStoreError.from(err);
    throw new FeatureStoreError(e.code, `feature "${name}": ${e.message}`, { cause: err });
  }
  r.pos = end;
  r.end = outerEnd;
}

const reader = new ProtoReader();

/** Decodes a GetFeaturesResponse in buf[start,end). */
export function decodeGetFeaturesResponseBefore(
  buf: Uint8Array,
  start = 0,
  end = buf.length,
): GetFeaturesResult {
  const r = new ProtoReader().reset(buf, start, end);
  const result: GetFeaturesResult = {
    entityId: "",
    found: false,
    features: Object.create(null) as Features,
    missing: [],
  };
  while (!r.done()) {
    const tag = r.tag();
    switch (tag) {
      case (1 << 3) | WireType.Bytes:
        r.bytesRange();
        result.entityId = utf8Slice(buf, r.fieldStart, r.fieldEnd);
        break;
      case (2 << 3) | WireType.Bytes:
        r.bytesRange();
        readFeatureEntry(r, r.fieldStart, r.fieldEnd, result.features);
        break;
      case (3 << 3) | WireType.Varint:
        result.found = r.varint() !== 0;
        break;
      case (4 << 3) | WireType.Bytes:
        r.bytesRange();
        result.missing.push(internName(buf, r.fieldStart, r.fieldEnd));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return result;
}

export function decodeBatchGetResponseBefore(buf: Uint8Array): BatchGetResult {
  const r = reader.reset(buf);
  const out: BatchGetResult = { results: [], hits: 0, misses: 0 };
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const next = r.pos;
      out.results.push(decodeGetFeaturesResponseBefore(buf, r.fieldStart, r.fieldEnd));
      r.reset(buf, next, buf.length);
    } else if (tag === ((2 << 3) | WireType.Varint)) out.hits = r.varint();
    else if (tag === ((3 << 3) | WireType.Varint)) out.misses = r.varint();
    else r.skip(tag & 7);
  }
  return out;
}
