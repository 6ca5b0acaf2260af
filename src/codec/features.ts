/**
 * Typed feature values and their protobuf encoding: what the client and the embedded store
 * hand to users, and what they send. The server's hot path never uses this file; it works on
 * the encoded bytes (src/service/record.ts).
 */
import { FeatureStoreError, invalidArgument } from "./status.ts";
import { type ProtoReader, type ProtoWriter, utf8Slice, WireType } from "./wire.ts";

/**
 * The stored tiles of a windowed feature (FeatureValue.window), as the server keeps them from
 * Observe updates: tile i starts at `startsMs[i]` (ms since the epoch, a multiple of `bucketMs`)
 * and holds `counts[i]` events whose values sum to `sums[i]`, with least `mins[i]` and greatest
 * `maxs[i]`; oldest first. A read's `windows` option rolls tiles up on the server; this is the
 * raw state, for export and inspection. Only the server writes one (a SetFeatures carrying a
 * window is INVALID_ARGUMENT); the client encodes it so that a decoded value encodes back.
 */
export class WindowValue {
  constructor(
    /** Tile width, ms. */
    readonly bucketMs: number,
    /** How far back tiles are kept, ms (a multiple of bucketMs). */
    readonly retentionMs: number,
    readonly startsMs: number[],
    readonly counts: number[],
    readonly sums: Float64Array,
    readonly mins: Float64Array,
    readonly maxs: Float64Array,
  ) {}

  /** Plain arrays for JSON (typed arrays would serialise as objects keyed by index). */
  toJSON(): {
    bucketMs: number;
    retentionMs: number;
    startsMs: number[];
    counts: number[];
    sums: number[];
    mins: number[];
    maxs: number[];
  } {
    return {
      bucketMs: this.bucketMs,
      retentionMs: this.retentionMs,
      startsMs: this.startsMs,
      counts: this.counts,
      sums: Array.from(this.sums),
      mins: Array.from(this.mins),
      maxs: Array.from(this.maxs),
    };
  }
}

/**
 * A feature value as users see it.
 * - `int_value` reads as `number` when it is a safe integer, else `bigint`.
 * - `double_value` reads as `number`, `float_list` as `Float32Array`, `int_list` as `BigInt64Array`,
 *   `string_list` as `string[]`, `bytes_value` as `Uint8Array`, `window` as a `WindowValue`.
 */
export type FeatureValue =
  | number
  | bigint
  | string
  | boolean
  | Uint8Array
  | Float32Array
  | BigInt64Array
  | string[]
  | WindowValue;

/**
 * What users may write. A plain `number` is stored as `int_value` when it is a safe integer (not
 * -0) and as `double_value` otherwise; wrap it as `{ double: 2 }` to force a double (or `{ int: 2 }`).
 * A `number[]` is stored as a `float_list`.
 */
export type FeatureInput = FeatureValue | number[] | { double: number } | { int: number | bigint };

/** The features of one entity, by name. */
export type Features = Record<string, FeatureValue>;
/** Features to write, by name. */
export type FeaturesInput = Record<string, FeatureInput>;

/**
 * FeatureValue field numbers (proto/featurestore/v1/featurestore.proto): the oneof members 1-9,
 * then the value's time metadata, which the server stores first (see `writeValueMeta`).
 */
export const ValueField = {
  Int: 1,
  Double: 2,
  String: 3,
  Bool: 4,
  Bytes: 5,
  FloatList: 6,
  IntList: 7,
  StringList: 8,
  Window: 9,
  EventTime: 10,
  MaxAge: 11,
} as const;

/** Tags of FeatureValue.event_time_ms and max_age_ms (varints): 0x50, 0x58. */
const TAG_EVENT_TIME = (ValueField.EventTime << 3) | WireType.Varint;
const TAG_MAX_AGE = (ValueField.MaxAge << 3) | WireType.Varint;

/**
 * A time or duration option in ms: absent is 0; otherwise a non-negative safe integer (a varint
 * of a negative or fractional number would be garbage on the wire). Throws INVALID_ARGUMENT
 * naming the option.
 */
export function msOption(name: string, v: number | undefined): number {
  if (v === undefined) return 0;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalidArgument(`${name} must be a whole number of milliseconds >= 0, got ${String(v)}`);
  return v;
}

/**
 * Writes the time metadata of a FeatureValue, in the order the server stores it (canonical):
 *
 * ```
 * 0x50 <varint event_time_ms>   when eventTimeMs > 0 (0: the server stamps its clock)
 * 0x58 <varint max_age_ms>      when maxAgeMs > 0
 * <the oneof field>             written next by writeFeatureValue
 * ```
 * Both must be checked already (`msOption`).
 */
export function writeValueMeta(w: ProtoWriter, eventTimeMs: number, maxAgeMs: number): void {
  if (eventTimeMs > 0) {
    w.byte(TAG_EVENT_TIME);
    w.varint(eventTimeMs);
  }
  if (maxAgeMs > 0) {
    w.byte(TAG_MAX_AGE);
    w.varint(maxAgeMs);
  }
}

/** Writes the body of a FeatureValue message (the oneof field only). */
export function writeFeatureValue(w: ProtoWriter, name: string, v: FeatureInput): void {
  if (typeof v === "number") {
    // -0 is a safe integer, but as an int it would read back as 0: it stays a double.
    if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
      w.tag(ValueField.Int, WireType.Varint);
      if (v >= 0) w.varint(v);
      else w.varint64(BigInt(v));
    } else {
      w.tag(ValueField.Double, WireType.Fixed64);
      w.double(v);
    }
  } else if (typeof v === "bigint") {
    if (v < -(2n ** 63n) || v >= 2n ** 63n)
      throw invalidArgument(`feature "${name}": ${v} does not fit int64`);
    w.tag(ValueField.Int, WireType.Varint);
    w.varint64(v);
  } else if (typeof v === "string") {
    w.stringField(ValueField.String, v);
  } else if (typeof v === "boolean") {
    w.tag(ValueField.Bool, WireType.Varint);
    w.byte(v ? 1 : 0);
  } else if (v instanceof Float32Array || (Array.isArray(v) && v.every((x) => typeof x === "number"))) {
    const floats = v instanceof Float32Array ? v : Float32Array.from(v as number[]);
    const at = w.beginLength(ValueField.FloatList);
    if (floats.length > 0) {
      w.tag(1, WireType.Bytes);
      w.varint(floats.length * 4);
      w.raw(new Uint8Array(floats.buffer, floats.byteOffset, floats.length * 4));
    }
    w.endLength(at);
  } else if (v instanceof BigInt64Array) {
    const at = w.beginLength(ValueField.IntList);
    if (v.length > 0) {
      const inner = w.beginLength(1);
      for (const x of v) w.varint64(x);
      w.endLength(inner);
    }
    w.endLength(at);
  } else if (Array.isArray(v)) {
    const at = w.beginLength(ValueField.StringList);
    for (const s of v) {
      if (typeof s !== "string")
        throw invalidArgument(`feature "${name}": a list must hold only numbers or strings`);
      w.stringField(1, s);
    }
    w.endLength(at);
  } else if (v instanceof Uint8Array) {
    w.bytesField(ValueField.Bytes, v);
  } else if (v instanceof WindowValue) {
    writeWindow(w, v);
  } else if (typeof v === "object" && v !== null && "double" in v && typeof v.double === "number") {
    w.tag(ValueField.Double, WireType.Fixed64);
    w.double(v.double);
  } else if (typeof v === "object" && v !== null && "int" in v) {
    const n = v.int;
    if (typeof n === "number" && !Number.isSafeInteger(n))
      throw invalidArgument(`feature "${name}": { int: ${n} } is not a safe integer`);
    writeFeatureValue(w, name, typeof n === "number" ? n : BigInt.asIntN(64, n));
  } else {
    throw invalidArgument(`feature "${name}": unsupported value type ${describe(v)}`);
  }
}

/** Window message as field 9: spec, then the tiles as packed lists (empty ones left out). */
function writeWindow(w: ProtoWriter, v: WindowValue): void {
  const at = w.beginLength(ValueField.Window);
  const bucketMs = msOption("window bucketMs", v.bucketMs);
  const retentionMs = msOption("window retentionMs", v.retentionMs);
  if (bucketMs > 0 || retentionMs > 0) {
    const spec = w.beginLength(1);
    writeWindowSpec(w, bucketMs, retentionMs);
    w.endLength(spec);
  }
  packedInt64s(w, 2, v.startsMs);
  packedInt64s(w, 3, v.counts);
  packedDoubles(w, 4, v.sums);
  packedDoubles(w, 5, v.mins);
  packedDoubles(w, 6, v.maxs);
  w.endLength(at);
}

/** The fields of a WindowSpec message (bucket_ms = 1, retention_ms = 2), zeros left out. */
export function writeWindowSpec(w: ProtoWriter, bucketMs: number, retentionMs: number): void {
  if (bucketMs > 0) {
    w.tag(1, WireType.Varint);
    w.varint(bucketMs);
  }
  if (retentionMs > 0) {
    w.tag(2, WireType.Varint);
    w.varint(retentionMs);
  }
}

function packedInt64s(w: ProtoWriter, field: number, xs: readonly number[]): void {
  if (xs.length === 0) return;
  const at = w.beginLength(field);
  for (const x of xs) {
    if (!Number.isSafeInteger(x)) throw invalidArgument(`window: ${x} is not a safe integer`);
    if (x >= 0) w.varint(x);
    else w.varint64(BigInt(x));
  }
  w.endLength(at);
}

function packedDoubles(w: ProtoWriter, field: number, xs: Float64Array): void {
  if (xs.length === 0) return;
  w.tag(field, WireType.Bytes);
  w.varint(xs.length * 8);
  w.raw(new Uint8Array(xs.buffer, xs.byteOffset, xs.length * 8));
}

function describe(v: unknown): string {
  return v === null ? "null" : typeof v === "object" ? (v.constructor?.name ?? "object") : typeof v;
}

/**
 * Writes a `map<string, FeatureValue>` as repeated entries of field `field`, every value with the
 * same event time and max age (ms, checked by `msOption`; 0 leaves them out).
 */
export function writeFeatureMap(
  w: ProtoWriter,
  field: number,
  features: FeaturesInput,
  eventTimeMs = 0,
  maxAgeMs = 0,
): void {
  for (const name of Object.keys(features)) {
    const entry = w.beginLength(field);
    w.stringField(1, name);
    const value = w.beginLength(2);
    writeValueMeta(w, eventTimeMs, maxAgeMs);
    writeFeatureValue(w, name, features[name]!);
    w.endLength(value);
    w.endLength(entry);
  }
}

/**
 * Feature names repeat in every answer: a small direct-mapped table of the names seen recently
 * turns each into one hash and one byte compare instead of a decode and a new string.
 */
const NAME_SLOTS = 1024;
const MAX_INTERNED = 64;
const internedBytes: (Uint8Array | undefined)[] = new Array(NAME_SLOTS);
const internedNames: string[] = new Array(NAME_SLOTS);

export function internName(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n > MAX_INTERNED) return utf8Slice(buf, start, end);
  let h = n;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  const slot = (h >>> 22) & (NAME_SLOTS - 1);
  const seen = internedBytes[slot];
  if (seen !== undefined && sameBytes(seen, buf, start, end)) return internedNames[slot]!;
  const name = utf8Slice(buf, start, end);
  internedBytes[slot] = buf.slice(start, end);
  internedNames[slot] = name;
  return name;
}

/**
 * Short string values repeat too (countries, devices, plans: categories). ASCII ones are kept in
 * a direct-mapped table of strings and compared against the bytes char by char, so a repeated
 * value costs a hash and a compare, and a new one costs no more than before (no byte copy is
 * kept). The profile of a 20-feature answer had utf8Slice at 18 % of the decode.
 */
const VALUE_SLOTS = 4096;
const MAX_INTERNED_VALUE = 24;
const internedValues: (string | undefined)[] = new Array(VALUE_SLOTS).fill(undefined);

export function internValue(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n > MAX_INTERNED_VALUE) return utf8Slice(buf, start, end);
  let h = n;
  let high = 0;
  for (let i = start; i < end; i++) {
    const b = buf[i]!;
    high |= b;
    h = Math.imul(h ^ b, 0x01000193);
  }
  if (high >= 0x80) return utf8Slice(buf, start, end);
  const slot = (h >>> 20) & (VALUE_SLOTS - 1);
  const seen = internedValues[slot];
  if (seen !== undefined && seen.length === n) {
    let i = 0;
    while (i < n && seen.charCodeAt(i) === buf[start + i]) i++;
    if (i === n) return seen;
  }
  const value = utf8Slice(buf, start, end);
  internedValues[slot] = value;
  return value;
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
  if (n <= 512) {
    // A loop beats `set(subarray)` here: the view cost as much as copying 128 bytes.
    const b = slabBytes;
    for (let i = 0; i < n; i++) b[at + i] = src[start + i]!;
  } else slabBytes.set(src.subarray(start, start + n), at);
  slabUsed = at + ((n + 7) & ~7);
  return new Float32Array(slab, at, n >>> 2);
}

const f32 = new Float32Array(1);
const f32Bytes = new Uint8Array(f32.buffer);

/**
 * The event time (FeatureValue.event_time_ms) of the value `readFeatureValue` read last; 0 when it
 * had none. Read it right after the call (the next one overwrites it).
 */
export let readEventTime = 0;

/**
 * Reads a FeatureValue message in r.buf[start,end) into its typed form. Its event time is left in
 * `readEventTime`; its max age is skipped.
 */
export function readFeatureValue(r: ProtoReader, start: number, end: number): FeatureValue {
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  let value: FeatureValue | undefined;
  readEventTime = 0;
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
        value = internValue(r.buf, r.fieldStart, r.fieldEnd);
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
      case ValueField.Window:
        expectWire(wt, WireType.Bytes, "window");
        r.bytesRange();
        value = readWindow(r, r.fieldStart, r.fieldEnd);
        break;
      case ValueField.EventTime:
        expectWire(wt, WireType.Varint, "event_time_ms");
        readEventTime = int64Number(r);
        break;
      case ValueField.MaxAge:
        expectWire(wt, WireType.Varint, "max_age_ms");
        r.varint();
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

/** An int64 field as a number (the nearest one beyond 2^53; times and counts never get there). */
export function int64Number(r: ProtoReader): number {
  const x = r.int64();
  return typeof x === "number" ? x : Number(x);
}

/** Reads a Window message in r.buf[start,end). Repeated fields packed or not, as protobuf allows. */
function readWindow(r: ProtoReader, start: number, end: number): WindowValue {
  let bucketMs = 0;
  let retentionMs = 0;
  const startsMs: number[] = [];
  const counts: number[] = [];
  const sums: number[] = [];
  const mins: number[] = [];
  const maxs: number[] = [];
  const outerEnd = r.end;
  r.end = end;
  r.pos = start;
  while (!r.done()) {
    const tag = r.tag();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1: {
        expectWire(wt, WireType.Bytes, "window spec");
        r.bytesRange();
        const after = r.pos;
        r.end = r.fieldEnd;
        r.pos = r.fieldStart;
        while (!r.done()) {
          const t = r.tag();
          if (t === ((1 << 3) | WireType.Varint)) bucketMs = int64Number(r);
          else if (t === ((2 << 3) | WireType.Varint)) retentionMs = int64Number(r);
          else r.skip(t & 7);
        }
        r.pos = after;
        r.end = end;
        break;
      }
      case 2:
        readInt64s(r, wt, startsMs);
        break;
      case 3:
        readInt64s(r, wt, counts);
        break;
      case 4:
        readDoubles(r, wt, sums);
        break;
      case 5:
        readDoubles(r, wt, mins);
        break;
      case 6:
        readDoubles(r, wt, maxs);
        break;
      default:
        r.skip(wt);
    }
  }
  r.end = outerEnd;
  return new WindowValue(
    bucketMs,
    retentionMs,
    startsMs,
    counts,
    Float64Array.from(sums),
    Float64Array.from(mins),
    Float64Array.from(maxs),
  );
}

/** One occurrence of a repeated int64 field (a packed run, or one varint) appended to `into`. */
function readInt64s(r: ProtoReader, wt: number, into: number[]): void {
  if (wt === WireType.Varint) {
    into.push(int64Number(r));
    return;
  }
  expectWire(wt, WireType.Bytes, "packed int64 list");
  r.bytesRange();
  const after = r.pos;
  const outerEnd = r.end;
  r.pos = r.fieldStart;
  r.end = r.fieldEnd;
  while (!r.done()) into.push(int64Number(r));
  r.pos = after;
  r.end = outerEnd;
}

/** One occurrence of a repeated double field (a packed run, or one fixed64) appended to `into`. */
function readDoubles(r: ProtoReader, wt: number, into: number[]): void {
  if (wt === WireType.Fixed64) {
    into.push(r.double());
    return;
  }
  expectWire(wt, WireType.Bytes, "packed double list");
  r.bytesRange();
  const after = r.pos;
  const outerEnd = r.end;
  if ((r.fieldEnd - r.fieldStart) % 8 !== 0)
    throw invalidArgument("packed double list length is not a multiple of 8");
  r.pos = r.fieldStart;
  r.end = r.fieldEnd;
  while (!r.done()) into.push(r.double());
  r.pos = after;
  r.end = outerEnd;
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
export function readFeatureEntry(r: ProtoReader, start: number, end: number, into: Features): void {
  readEntry(r, start, end, 0);
  into[entryNames[0]!] = entryValues[0]!;
  entryValues[0] = undefined;
}

/**
 * The entries of the answer being decoded: names, values and event times (0: none) side by side,
 * reused from answer to answer (one decode runs at a time), turned into the features object by
 * `buildFeatures` and the event times object by `buildEventTimes`.
 */
const entryNames: string[] = [];
const entryValues: (FeatureValue | undefined)[] = [];
const entryTimes: number[] = [];

/** The event time read by `afterMeta`. */
let metaTime = 0;

/**
 * Where the oneof field starts in the FeatureValue buf[start,end) that starts with its event time
 * (0x50, the order the server stores): after the event time and the max age (0x58) if any. The
 * event time is left in `metaTime`. -1 when the event time takes more than 7 bytes (2^49 ms is
 * the year 19,800: a negative or garbage value) or the value ends first: the general reader
 * then takes the value.
 */
function afterMeta(buf: Uint8Array, start: number, end: number): number {
  let p = start + 1;
  let x = 0;
  let mul = 1;
  for (;;) {
    if (p >= end || mul > 2 ** 42) return -1;
    const b = buf[p++]!;
    x += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  metaTime = x;
  if (buf[p] === TAG_MAX_AGE) {
    p++;
    while (p < end && buf[p]! >= 0x80) p++;
    p++;
  }
  return p < end ? p : -1;
}

/** Reads one map entry in r.buf[start,end) as entry `i` of the answer being decoded. */
export function readEntry(r: ProtoReader, start: number, end: number, i: number): void {
  const buf = r.buf;
  // The layout every encoder writes: 0a <len> name 12 <len> value, a name under 128 bytes and a
  // value under 16 KiB. Read it without the general loop; anything else takes the loop below.
  const kl = buf[start + 1]!;
  if (buf[start] === 0x0a && kl < 0x80 && start + 4 + kl <= end) {
    const k2 = start + 2 + kl;
    let vl = buf[k2 + 1]!;
    let vs = k2 + 2;
    if (vl >= 0x80 && vs < end) {
      const b2 = buf[vs]!;
      vl = b2 < 0x80 ? (vl & 0x7f) | (b2 << 7) : -1;
      vs++;
    }
    if (buf[k2] === 0x12 && vl >= 0 && vs + vl === end) {
      // Answers list the same names in the same order entity after entity: the name the last
      // shape has at this position, when its bytes match, costs a compare and no hash.
      const shape = lastShape;
      const name =
        shape !== undefined && i < shape.names.length && sameBytes(shape.bytes[i]!, buf, start + 2, k2)
          ? shape.names[i]!
          : internName(buf, start + 2, k2);
      // A stored value starts with its event time (and max age): step over them to the oneof.
      let s = vs;
      let time = 0;
      if (buf[vs] === TAG_EVENT_TIME) {
        s = afterMeta(buf, vs, end);
        time = metaTime;
      }
      const v = s < 0 ? undefined : simpleValue(buf, s, end);
      entryNames[i] = name;
      if (v !== undefined) {
        entryValues[i] = v;
        entryTimes[i] = time;
      } else {
        const outerEnd = r.end;
        try {
          entryValues[i] = readFeatureValue(r, vs, end);
        } catch (err) {
          const e = FeatureStoreError.from(err);
          throw new FeatureStoreError(e.code, `feature "${name}": ${e.message}`, { cause: err });
        }
        entryTimes[i] = readEventTime;
        r.end = outerEnd;
      }
      r.pos = end;
      return;
    }
  }
  readEntrySlow(r, start, end, i);
}

/**
 * A FeatureValue in buf[start, end) made of one int, double, short string, bool or one packed
 * float list, read directly; undefined for anything else (the general reader then takes it).
 */
function simpleValue(buf: Uint8Array, start: number, end: number): FeatureValue | undefined {
  const t = buf[start]!;
  const n = end - start;
  switch (t) {
    case 0x08: {
      // int_value: up to 7 varint bytes (< 2^49) is a safe integer without BigInt.
      let x = 0;
      let mul = 1;
      for (let p = start + 1; p < end && p < start + 8; p++) {
        const b = buf[p]!;
        x += (b & 0x7f) * mul;
        if (b < 0x80) return p + 1 === end ? x : undefined;
        mul *= 128;
      }
      return undefined;
    }
    case 0x11:
      if (n !== 9) return undefined;
      for (let k = 0; k < 8; k++) f64Bytes[k] = buf[start + 1 + k]!;
      return f64[0]!;
    case 0x1a: {
      const l = buf[start + 1]!;
      return l < 0x80 && l + 2 === n ? internValue(buf, start + 2, end) : undefined;
    }
    case 0x20:
      return n === 2 && buf[start + 1]! < 0x80 ? buf[start + 1] !== 0 : undefined;
    case 0x32: {
      // float_list: 32 <len> 0a <len> floats, lengths of one or two bytes.
      let p = start + 1;
      let l = buf[p++]!;
      if (l >= 0x80) {
        const b2 = buf[p++]!;
        if (b2 >= 0x80) return undefined;
        l = (l & 0x7f) | (b2 << 7);
      }
      if (p + l !== end) return undefined;
      if (l === 0) return new Float32Array(0);
      if (buf[p++] !== 0x0a) return undefined;
      let fl = buf[p++]!;
      if (fl >= 0x80) {
        const b2 = buf[p++]!;
        if (b2 >= 0x80) return undefined;
        fl = (fl & 0x7f) | (b2 << 7);
      }
      if (p + fl !== end || (fl & 3) !== 0) return undefined;
      return floatsFromSlab(buf, p, fl);
    }
    default:
      return undefined;
  }
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

function readEntrySlow(r: ProtoReader, start: number, end: number, i: number): void {
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
    entryValues[i] = readFeatureValue(r, valueStart, valueEnd);
  } catch (err) {
    const e = FeatureStoreError.from(err);
    throw new FeatureStoreError(e.code, `feature "${name}": ${e.message}`, { cause: err });
  }
  entryTimes[i] = readEventTime;
  entryNames[i] = name;
  r.pos = end;
  r.end = outerEnd;
}

/**
 * The features objects of answers with the same names in the same order (every answer of a
 * store whose records are written alike) are built by one generated function per name list,
 * an object literal with a fixed layout: storing 20 names one by one into a null-prototype object
 * was 39 % of the decode in the profile (a dictionary-mode store per name). Up to MAX_SHAPES
 * name lists get a function; others are built name by name.
 */
type Shape = {
  names: string[];
  /** The names' UTF-8 bytes, for `readEntry`'s positional guess. */
  bytes: Uint8Array[];
  build: <T>(values: readonly T[]) => Record<string, T>;
};
const MAX_SHAPES = 64;
/** Shapes with fewer names than this are built name by name: a function would not pay off. */
const MIN_SHAPE_NAMES = 4;
const shapes: Shape[] = [];
let lastShape: Shape | undefined;

function sameNames(shape: Shape, n: number): boolean {
  const names = shape.names;
  if (names.length !== n) return false;
  for (let i = 0; i < n; i++) if (names[i] !== entryNames[i]) return false;
  return true;
}

function makeShape(n: number): Shape {
  const names = entryNames.slice(0, n);
  // JSON.stringify quotes any name safely; "__proto__" must be a computed key to be a property.
  const props = names.map((name, i) =>
    name === "__proto__" ? `["__proto__"]: v[${i}]` : `${JSON.stringify(name)}: v[${i}]`,
  );
  const build = new Function("v", `return { __proto__: null, ${props.join(", ")} };`) as Shape["build"];
  const encoder = new TextEncoder();
  return { names, bytes: names.map((name) => encoder.encode(name)), build };
}

/** True when buf[start, end) holds exactly `bytes`. */
function sameBytes(bytes: Uint8Array, buf: Uint8Array, start: number, end: number): boolean {
  const n = bytes.length;
  if (end - start !== n) return false;
  for (let k = 0; k < n; k++) if (bytes[k] !== buf[start + k]) return false;
  return true;
}

function findShape(n: number): Shape | undefined {
  if (lastShape !== undefined && sameNames(lastShape, n)) return lastShape;
  for (const s of shapes)
    if (sameNames(s, n)) {
      lastShape = s;
      return s;
    }
  if (shapes.length >= MAX_SHAPES) return undefined;
  const s = makeShape(n);
  shapes.push(s);
  lastShape = s;
  return s;
}

/** The features object of the `n` entries read by `readEntry` (a null-prototype object). */
export function buildFeatures(n: number): Features {
  let features: Features;
  const shape = n >= MIN_SHAPE_NAMES ? findShape(n) : undefined;
  if (shape !== undefined) features = shape.build(entryValues) as Features;
  else {
    features = Object.create(null) as Features;
    for (let i = 0; i < n; i++) features[entryNames[i]!] = entryValues[i]!;
  }
  entryValues.fill(undefined, 0, n);
  return features;
}

/**
 * The event times of the `n` entries read by `readEntry`, by name (0: the value has none): a
 * null-prototype object with the features object's names, built the same way.
 */
export function buildEventTimes(n: number): Record<string, number> {
  const shape = n >= MIN_SHAPE_NAMES ? findShape(n) : undefined;
  if (shape !== undefined) return shape.build(entryTimes);
  const times = Object.create(null) as Record<string, number>;
  for (let i = 0; i < n; i++) times[entryNames[i]!] = entryTimes[i]!;
  return times;
}
