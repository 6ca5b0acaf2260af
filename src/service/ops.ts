/**
 * The atomic updates of UpdateFeatures (increment, append, observe into a window, set if newer)
 * and the windowed aggregates of reads, as pure functions on canonical FeatureValue bytes:
 *
 * ```
 * 0x50 <varint event_time_ms>  [0x58 <varint max_age_ms>]  <oneof field>
 * ```
 *
 * The service runs them inside one synchronous read-modify-write on a local store, and as the
 * `compute` of a compare-and-set on Redis (which may run them again on newer values): they must
 * not depend on anything but their arguments.
 */
import { ValueField } from "../codec/features.ts";
import { Code, FeatureStoreError, invalidArgument } from "../codec/status.ts";
import { TAG_EVENT_TIME, TAG_MAX_AGE } from "../codec/value-meta.ts";
import { ProtoReader, ProtoWriter, WireType } from "../codec/wire.ts";

/** FeatureUpdate's op field numbers. */
export const UpdateOp = { Set: 2, Increment: 3, Append: 4, Observe: 5 } as const;
export type UpdateOp = (typeof UpdateOp)[keyof typeof UpdateOp];

/** FeatureValue.window (field 9). */
export const VALUE_WINDOW = 9;

/** One parsed FeatureUpdate, validated against the request's own bounds. */
export interface ParsedUpdate {
  /** The feature name's bytes and text (for messages). */
  readonly name: Uint8Array;
  readonly label: string;
  readonly op: UpdateOp;
  /** Resolved: the update's, else (set) the value's, else the server's clock. */
  readonly eventTime: number;
  /** 0 keeps the stored max age. */
  readonly maxAge: number;
  /** Set: the canonical oneof field; Append: the canonical list field (its kind is `listKind`). */
  readonly value: Uint8Array;
  readonly listKind: number;
  readonly keepLast: number;
  readonly intDelta: bigint | null;
  readonly doubleDelta: number;
  readonly observed: number;
  readonly bucketMs: number;
  readonly retentionMs: number;
}

/** What an update produced: the new value, or SKIPPED (stored value newer, event past retention). */
export const SKIPPED = null;

/** The parts of a stored value `parseValue` found. */
interface ValueParts {
  eventTime: number;
  maxAge: number;
  /** Oneof field number (0: none) and where its bytes are: the field's tag to its end. */
  kind: number;
  fieldStart: number;
  /** The field's payload: a length-delimited body, or the varint/fixed64 bytes. */
  payloadStart: number;
  end: number;
}

const parts: ValueParts = { eventTime: 0, maxAge: 0, kind: 0, fieldStart: 0, payloadStart: 0, end: 0 };
const reader = new ProtoReader();
const out = new ProtoWriter(256);

/** Splits the FeatureValue b[start,end) into its time metadata and its (last) oneof field. */
function parseValue(b: Uint8Array, start: number, end: number): ValueParts {
  const r = reader.reset(b, start, end);
  parts.eventTime = 0;
  parts.maxAge = 0;
  parts.kind = 0;
  while (!r.done()) {
    const at = r.pos;
    const tag = r.tag();
    const field = tag >>> 3;
    if (tag === TAG_EVENT_TIME) parts.eventTime = r.varint();
    else if (tag === TAG_MAX_AGE) parts.maxAge = r.varint();
    else if (field >= 1 && field <= VALUE_WINDOW) {
      parts.kind = field;
      parts.fieldStart = at;
      const wt = tag & 7;
      if (wt === WireType.Bytes) {
        r.bytesRange();
        parts.payloadStart = r.fieldStart;
      } else {
        parts.payloadStart = r.pos;
        r.skip(wt);
      }
      parts.end = r.pos;
    } else r.skip(tag & 7);
  }
  return parts;
}

/** Starts a canonical value in `out`: event time, max age when > 0. */
function beginValue(eventTime: number, maxAge: number): void {
  out.reset();
  out.byte(TAG_EVENT_TIME);
  out.varint(eventTime);
  if (maxAge > 0) {
    out.byte(TAG_MAX_AGE);
    out.varint(maxAge);
  }
}

/** A canonical value from its metadata and its oneof field bytes f[fs,fe). */
export function canonicalValue(
  eventTime: number,
  maxAge: number,
  f: Uint8Array,
  fs = 0,
  fe = f.length,
): Uint8Array {
  beginValue(eventTime, maxAge);
  out.raw(f, fs, fe);
  return out.finish();
}

const KIND_NAMES = [
  "no value",
  "an int_value",
  "a double_value",
  "a string_value",
  "a bool_value",
  "a bytes_value",
  "a float_list",
  "an int_list",
  "a string_list",
  "a window",
];

function precondition(u: ParsedUpdate, what: string): FeatureStoreError {
  return new FeatureStoreError(Code.FailedPrecondition, `feature "${u.label}" ${what}`);
}

/**
 * Applies update `u` to the stored value `old` (canonical bytes, or null when the entity has no
 * such feature) at server time `now`: the new canonical value, or SKIPPED. Throws
 * FAILED_PRECONDITION when the stored value does not suit the update (an increment of a string,
 * an append to another kind, a window of another spec, an int64 overflow).
 */
export function applyUpdate(u: ParsedUpdate, old: Uint8Array | null, now: number): Uint8Array | null {
  const p = old === null ? null : parseValue(old, 0, old.length);
  const oldTime = p === null ? 0 : p.eventTime;
  const maxAge = u.maxAge > 0 ? u.maxAge : p === null ? 0 : p.maxAge;
  const eventTime = Math.max(oldTime, u.eventTime);
  switch (u.op) {
    case UpdateOp.Set:
      if (oldTime > u.eventTime) return SKIPPED;
      return canonicalValue(u.eventTime, maxAge, u.value);
    case UpdateOp.Increment:
      return increment(u, old, p, eventTime, maxAge);
    case UpdateOp.Append:
      return append(u, old, p, eventTime, maxAge);
    case UpdateOp.Observe:
      return observe(u, old, p, now, eventTime, maxAge);
  }
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function increment(
  u: ParsedUpdate,
  old: Uint8Array | null,
  p: ValueParts | null,
  eventTime: number,
  maxAge: number,
): Uint8Array {
  const kind = p === null ? 0 : p.kind;
  if (u.intDelta !== null) {
    if (kind !== 0 && kind !== ValueField.Int)
      throw precondition(u, `holds ${KIND_NAMES[kind]}; an int increment needs an int_value`);
    let sum = u.intDelta;
    if (kind === ValueField.Int) sum += reader.reset(old!, p!.payloadStart, p!.end).varint64();
    if (sum < INT64_MIN || sum > INT64_MAX) throw precondition(u, "would overflow int64 with this increment");
    beginValue(eventTime, maxAge);
    out.byte((ValueField.Int << 3) | WireType.Varint);
    out.varint64(sum);
    return out.finish();
  }
  if (kind !== 0 && kind !== ValueField.Double)
    throw precondition(u, `holds ${KIND_NAMES[kind]}; a double increment needs a double_value`);
  let sum = u.doubleDelta;
  if (kind === ValueField.Double) sum += reader.reset(old!, p!.payloadStart, p!.end).double();
  beginValue(eventTime, maxAge);
  out.byte((ValueField.Double << 3) | WireType.Fixed64);
  out.double(sum);
  return out.finish();
}

/** Item ranges of a list payload, reused (starts/ends into the bytes they were read from). */
const itemStarts: number[] = [];
const itemEnds: number[] = [];

/**
 * Pushes the ranges of the items of canonical list field `f` (tag at fs, payload from ps to fe)
 * of kind `kind`, last item first when `reverse`.
 */
function listItems(kind: number, f: Uint8Array, ps: number, fe: number, reverse: boolean): number {
  const from = itemStarts.length;
  if (kind === ValueField.StringList) {
    const r = new ProtoReader().reset(f, ps, fe);
    while (!r.done()) {
      const at = r.pos;
      r.tag();
      r.bytesRange();
      itemStarts.push(at);
      itemEnds.push(r.pos);
    }
  } else if (ps < fe) {
    // One packed field 1: 0x0a <len> <items>
    const r = new ProtoReader().reset(f, ps, fe);
    r.tag();
    r.bytesRange();
    let q = r.fieldStart;
    const stop = r.fieldEnd;
    while (q < stop) {
      let next = q + 4;
      if (kind === ValueField.IntList) {
        next = q;
        while (f[next]! >= 0x80) next++;
        next++;
      }
      itemStarts.push(q);
      itemEnds.push(next);
      q = next;
    }
  }
  const n = itemStarts.length - from;
  if (reverse) {
    for (let i = 0, j = n - 1; i < j; i++, j--) {
      const s = itemStarts[from + i]!;
      const e = itemEnds[from + i]!;
      itemStarts[from + i] = itemStarts[from + j]!;
      itemEnds[from + i] = itemEnds[from + j]!;
      itemStarts[from + j] = s;
      itemEnds[from + j] = e;
    }
  }
  return n;
}

function append(
  u: ParsedUpdate,
  old: Uint8Array | null,
  p: ValueParts | null,
  eventTime: number,
  maxAge: number,
): Uint8Array {
  const kind = u.listKind;
  if (p !== null && p.kind !== kind)
    throw precondition(u, `holds ${KIND_NAMES[p.kind]}; appending needs ${KIND_NAMES[kind]}`);
  itemStarts.length = 0;
  itemEnds.length = 0;
  // The update's field: tag, length, payload.
  const nr = reader.reset(u.value, 0, u.value.length);
  nr.tag();
  nr.bytesRange();
  const fresh = listItems(kind, u.value, nr.fieldStart, nr.fieldEnd, true);
  const oldStart = p === null ? 0 : p.payloadStart;
  const oldEnd = p === null ? 0 : p.end;
  let stored = 0;
  if (p !== null && fresh < u.keepLast) stored = listItems(kind, old!, oldStart, oldEnd, false);
  const total = Math.min(u.keepLast, fresh + stored);
  beginValue(eventTime, maxAge);
  const at = out.beginLength(kind);
  const inner = kind === ValueField.StringList || total === 0 ? -1 : out.beginLength(1);
  for (let i = 0; i < total; i++) out.raw(i < fresh ? u.value : old!, itemStarts[i]!, itemEnds[i]!);
  if (inner >= 0) out.endLength(inner);
  out.endLength(at);
  return out.finish();
}

/** The window of a stored value, tile by tile (scratch, reused; valid until the next call). */
class Tiles {
  count = 0;
  bucketMs = 0;
  retentionMs = 0;
  starts = new Float64Array(64);
  counts = new Float64Array(64);
  sums = new Float64Array(64);
  mins = new Float64Array(64);
  maxs = new Float64Array(64);

  grow(n: number): void {
    if (n <= this.starts.length) return;
    let cap = this.starts.length * 2;
    while (cap < n) cap *= 2;
    for (const k of ["starts", "counts", "sums", "mins", "maxs"] as const) {
      const next = new Float64Array(cap);
      next.set(this[k]);
      this[k] = next;
    }
  }

  /**
   * Reads a Window message b[start,end). Columns are decoded in tight loops (a day of minute
   * tiles is ~1,400 tiles x 5 columns, read on every observe and window read): varints inline,
   * packed doubles copied in one go.
   */
  read(b: Uint8Array, start: number, end: number): void {
    const r = tileReader.reset(b, start, end);
    this.count = 0;
    this.bucketMs = 0;
    this.retentionMs = 0;
    const lens = this.lens;
    lens.fill(0);
    while (!r.done()) {
      const tag = r.tag();
      const field = tag >>> 3;
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        const s = specReader.reset(b, r.fieldStart, r.fieldEnd);
        while (!s.done()) {
          const t = s.tag();
          if (t === ((1 << 3) | WireType.Varint)) this.bucketMs = s.varint();
          else if (t === ((2 << 3) | WireType.Varint)) this.retentionMs = s.varint();
          else s.skip(t & 7);
        }
      } else if (field >= 2 && field <= 6 && (tag & 7) === WireType.Bytes) {
        r.bytesRange();
        const fs = r.fieldStart;
        const fe = r.fieldEnd;
        const i = lens[field - 2]!;
        if (field <= 3) {
          this.grow(i + (fe - fs)); // each varint takes at least a byte
          lens[field - 2] = readVarints(b, fs, fe, this.column(field), i);
        } else {
          const n = (fe - fs) >>> 3;
          this.grow(i + n);
          lens[field - 2] = i + n;
          if (scratch.length < n * 8) scratch = new Uint8Array(n * 16);
          scratch.set(b.subarray(fs, fs + n * 8));
          this.column(field).set(new Float64Array(scratch.buffer, 0, n), i);
        }
      } else r.skip(tag & 7);
    }
    this.count = Math.min(lens[0]!, lens[1]!, lens[2]!, lens[3]!, lens[4]!);
  }

  private readonly lens = new Float64Array(5);

  private column(field: number): Float64Array {
    return field === 2
      ? this.starts
      : field === 3
        ? this.counts
        : field === 4
          ? this.sums
          : field === 5
            ? this.mins
            : this.maxs;
  }

  /**
   * Appends the Window message (as field `field`) to w, every length computed first so that
   * nothing is moved after it is written.
   */
  write(w: ProtoWriter, field: number): void {
    const n = this.count;
    const specBytes = 2 + varint53Size(this.bucketMs) + varint53Size(this.retentionMs);
    let startsBytes = 0;
    let countsBytes = 0;
    for (let i = 0; i < n; i++) {
      startsBytes += varint53Size(this.starts[i]!);
      countsBytes += varint53Size(this.counts[i]!);
    }
    const column = (bytes: number) => (n === 0 ? 0 : 1 + varint53Size(bytes) + bytes);
    const total =
      1 + varint53Size(specBytes) + specBytes + column(startsBytes) + column(countsBytes) + 3 * column(n * 8);
    w.tag(field, WireType.Bytes);
    w.varint(total);
    w.ensure(total);
    w.byte((1 << 3) | WireType.Bytes);
    w.varint(specBytes);
    w.byte((1 << 3) | WireType.Varint);
    w.varint(this.bucketMs);
    w.byte((2 << 3) | WireType.Varint);
    w.varint(this.retentionMs);
    if (n === 0) return;
    w.tag(2, WireType.Bytes);
    w.varint(startsBytes);
    for (let i = 0; i < n; i++) w.varint(this.starts[i]!);
    w.tag(3, WireType.Bytes);
    w.varint(countsBytes);
    for (let i = 0; i < n; i++) w.varint(this.counts[i]!);
    for (const [f, col] of [
      [4, this.sums],
      [5, this.mins],
      [6, this.maxs],
    ] as const) {
      w.tag(f, WireType.Bytes);
      w.varint(n * 8);
      w.ensure(n * 8);
      w.bytes.set(new Uint8Array(col.buffer, 0, n * 8), w.pos);
      w.pos += n * 8;
    }
  }
}

const tileReader = new ProtoReader();
const specReader = new ProtoReader();
/** Packed doubles are copied here first: a Float64Array view needs an aligned offset. */
let scratch = new Uint8Array(8192);

/** Decodes the packed varints b[p,end) into col from index i; returns the index after the last. */
function readVarints(b: Uint8Array, p: number, end: number, col: Float64Array, i: number): number {
  while (p < end) {
    let x = b[p++]!;
    if (x < 0x80) {
      col[i++] = x;
      continue;
    }
    let v = x & 0x7f;
    let mul = 128;
    do {
      x = b[p++]!;
      v += (x & 0x7f) * mul;
      mul *= 128;
    } while (x >= 0x80 && p < end);
    col[i++] = v;
  }
  return i;
}

/** Bytes of the varint of v (0 <= v < 2^53). */
function varint53Size(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

const tiles = new Tiles();

/**
 * Where the parts of a canonical Window message lie (each column one packed field, as the server
 * writes them): the spec field (tag to end) and columns 2..6 (payload ranges). Observes and
 * window reads work on these bytes in place, touching only the tiles they need: the newest ones
 * (a late event walks back to its tile) and the expired ones at the front.
 */
const layout = {
  specStart: 0,
  specEnd: 0,
  bucketMs: 0,
  retentionMs: 0,
  /** Tiles: the length of each double column / 8. */
  n: 0,
  starts: new Int32Array(7),
  ends: new Int32Array(7),
};
const VAR = new Float64Array(2); // [value, end] of the last varint read

/** Reads the varint at b[p] (before `end`) into VAR; false when it runs past `end`. */
function varintAt(b: Uint8Array, p: number, end: number): boolean {
  let v = 0;
  let mul = 1;
  while (p < end) {
    const x = b[p++]!;
    v += (x & 0x7f) * mul;
    if (x < 0x80) {
      VAR[0] = v;
      VAR[1] = p;
      return true;
    }
    mul *= 128;
  }
  return false;
}

/** Start of the varint that ends at e, not before lo; -1 when b[e-1] does not end one. */
function varintStartBefore(b: Uint8Array, lo: number, e: number): number {
  if (e <= lo || b[e - 1]! >= 0x80) return -1;
  let p = e - 1;
  while (p > lo && b[p - 1]! >= 0x80) p--;
  return p;
}

const F64 = new Float64Array(1);
const F64B = new Uint8Array(F64.buffer);
function doubleAt(b: Uint8Array, p: number): number {
  for (let i = 0; i < 8; i++) F64B[i] = b[p + i]!;
  return F64[0]!;
}

/** Fills `layout` from the Window message b[start,end); false when it is not canonical. */
function readLayout(b: Uint8Array, start: number, end: number): boolean {
  const L = layout;
  L.starts.fill(-1);
  L.specStart = -1;
  const r = tileReader.reset(b, start, end);
  while (!r.done()) {
    const at = r.pos;
    const tag = r.tag();
    const field = tag >>> 3;
    if ((tag & 7) !== WireType.Bytes || field < 1 || field > 6) return false;
    r.bytesRange();
    if (field === 1) {
      if (L.specStart >= 0) return false;
      L.specStart = at;
      L.specEnd = r.fieldEnd;
      const s = specReader.reset(b, r.fieldStart, r.fieldEnd);
      L.bucketMs = 0;
      L.retentionMs = 0;
      while (!s.done()) {
        const t = s.tag();
        if (t === ((1 << 3) | WireType.Varint)) L.bucketMs = s.varint();
        else if (t === ((2 << 3) | WireType.Varint)) L.retentionMs = s.varint();
        else s.skip(t & 7);
      }
    } else {
      if (L.starts[field]! >= 0) return false;
      L.starts[field] = r.fieldStart;
      L.ends[field] = r.fieldEnd;
    }
  }
  if (L.specStart < 0) return false;
  for (let f = 2; f <= 6; f++)
    if (L.starts[f]! < 0) {
      // an empty window has no columns at all
      L.starts[f] = end;
      L.ends[f] = end;
    }
  const len = L.ends[4]! - L.starts[4]!;
  if (len % 8 !== 0 || L.ends[5]! - L.starts[5]! !== len || L.ends[6]! - L.starts[6]! !== len) return false;
  L.n = len / 8;
  return true;
}

/**
 * The fast observe on a canonical window b (its Window message at [ws,we)): drops the expired
 * tiles at the front, merges the event into its tile (or inserts one), and writes the new value
 * to `out` copying every untouched byte. Null when the bytes are not canonical (the caller
 * decodes them all instead).
 */
function observeInPlace(
  u: ParsedUpdate,
  b: Uint8Array,
  oldest: number,
  tile: number,
  eventTime: number,
  maxAge: number,
): Uint8Array | null {
  const L = layout;
  const n = L.n;
  const S = 2;
  const C = 3;
  // Expired tiles at the front: k of them, ending at sp (starts) and cp (counts).
  let k = 0;
  let sp = L.starts[S]!;
  let cp = L.starts[C]!;
  while (k < n) {
    if (!varintAt(b, sp, L.ends[S]!)) return null;
    if (VAR[0]! >= oldest) break;
    sp = VAR[1]!;
    if (!varintAt(b, cp, L.ends[C]!)) return null;
    cp = VAR[1]!;
    k++;
  }
  // The event's place, walking back from the newest tile: j = the last tile at or before it.
  let j = n - 1;
  let se = L.ends[S]!;
  let ce = L.ends[C]!;
  let found = false;
  let ss = se;
  let cs = ce;
  while (j >= k) {
    ss = varintStartBefore(b, sp, se);
    cs = varintStartBefore(b, cp, ce);
    if (ss < 0 || cs < 0 || !varintAt(b, ss, se)) return null;
    if (VAR[0]! <= tile) {
      found = VAR[0] === tile;
      break;
    }
    se = ss;
    ce = cs;
    j--;
  }
  if (j < k && (se !== sp || ce !== cp)) return null; // more starts or counts than tiles
  const v = u.observed;
  let count = 1;
  if (found) {
    if (!varintAt(b, cs, ce)) return null;
    count = VAR[0]! + 1;
  }
  const kept = n - k + (found ? 0 : 1);
  // starts: [sp, se) + (new tile) + [se, end); counts: [cp, cs) + count + [ce, end) when found,
  // [cp, ce) + 1 + [ce, end) when inserted.
  const startsBytes = L.ends[S]! - sp + (found ? 0 : varint53Size(tile));
  const countsBytes = found ? cs - cp + varint53Size(count) + (L.ends[C]! - ce) : L.ends[C]! - cp + 1;
  const column = (bytes: number) => 1 + varint53Size(bytes) + bytes;
  const specBytes = L.specEnd - L.specStart;
  const total = specBytes + column(startsBytes) + column(countsBytes) + 3 * column(kept * 8);
  beginValue(eventTime, maxAge);
  out.tag(VALUE_WINDOW, WireType.Bytes);
  out.varint(total);
  out.ensure(total);
  out.raw(b, L.specStart, L.specEnd);
  out.tag(2, WireType.Bytes);
  out.varint(startsBytes);
  if (found) out.raw(b, sp, L.ends[S]!);
  else {
    out.raw(b, sp, se);
    out.varint(tile);
    out.raw(b, se, L.ends[S]!);
  }
  out.tag(3, WireType.Bytes);
  out.varint(countsBytes);
  if (found) {
    out.raw(b, cp, cs);
    out.varint(count);
    out.raw(b, ce, L.ends[C]!);
  } else {
    out.raw(b, cp, ce);
    out.byte(1);
    out.raw(b, ce, L.ends[C]!);
  }
  // sums, mins, maxs: tile j changed (found) or a tile inserted after j.
  for (let f = 4; f <= 6; f++) {
    const base = L.starts[f]!;
    out.tag(f, WireType.Bytes);
    out.varint(kept * 8);
    const at = base + (j + 1) * 8; // end of tile j
    if (found) {
      const old = doubleAt(b, at - 8);
      out.raw(b, base + k * 8, at - 8);
      out.double(f === 4 ? old + v : f === 5 ? Math.min(old, v) : Math.max(old, v));
    } else {
      out.raw(b, base + k * 8, at);
      out.double(v);
    }
    out.raw(b, at, L.ends[f]!);
  }
  return out.finish();
}

/**
 * Rolls up, from a canonical window (`layout` read), the tiles whose start is in [first, last]
 * into `agg`, walking back from the newest tile; false when the bytes are not canonical.
 */
function aggregateInPlace(b: Uint8Array, first: number, last: number): boolean {
  const L = layout;
  let j = L.n - 1;
  let se = L.ends[2]!;
  let ce = L.ends[3]!;
  let hi = -1;
  let lo = 0;
  let count = 0;
  while (j >= 0) {
    const ss = varintStartBefore(b, L.starts[2]!, se);
    const cs = varintStartBefore(b, L.starts[3]!, ce);
    if (ss < 0 || cs < 0 || !varintAt(b, ss, se)) return false;
    const start = VAR[0]!;
    if (start < first) break;
    if (start <= last) {
      if (!varintAt(b, cs, ce)) return false;
      count += VAR[0]!;
      if (hi < 0) hi = j;
      lo = j;
    }
    se = ss;
    ce = cs;
    j--;
  }
  agg.count = count;
  agg.sum = 0;
  agg.min = 0;
  agg.max = 0;
  if (hi < 0) return true;
  // in tile order, as the full decode sums them
  agg.min = doubleAt(b, L.starts[5]! + lo * 8);
  agg.max = doubleAt(b, L.starts[6]! + lo * 8);
  for (let i = lo; i <= hi; i++) {
    agg.sum += doubleAt(b, L.starts[4]! + i * 8);
    const mn = doubleAt(b, L.starts[5]! + i * 8);
    const mx = doubleAt(b, L.starts[6]! + i * 8);
    if (mn < agg.min) agg.min = mn;
    if (mx > agg.max) agg.max = mx;
  }
  return true;
}

/** Start of the tile holding time t. */
function tileOf(t: number, bucketMs: number): number {
  return t - (t % bucketMs);
}

/** FAILED_PRECONDITION unless the stored window has the update's spec. */
function checkSameSpec(u: ParsedUpdate, bucketMs: number, retentionMs: number): void {
  if (bucketMs !== u.bucketMs || retentionMs !== u.retentionMs)
    throw precondition(
      u,
      `is a window of bucket_ms ${bucketMs} and retention_ms ${retentionMs}; ` +
        `the update says ${u.bucketMs} and ${u.retentionMs}`,
    );
}

/**
 * Adds the event of `u` to the window `old` (or a new one): in place on canonical bytes
 * (observeInPlace), else by decoding every tile.
 */
function observe(
  u: ParsedUpdate,
  old: Uint8Array | null,
  p: ValueParts | null,
  now: number,
  eventTime: number,
  maxAge: number,
): Uint8Array | null {
  const b = u.bucketMs;
  const oldest = tileOf(now, b) - u.retentionMs + b;
  const tile = tileOf(u.eventTime, b);
  if (p !== null) {
    if (p.kind !== VALUE_WINDOW)
      throw precondition(u, `holds ${KIND_NAMES[p.kind]}; observing needs a window`);
    if (readLayout(old!, p.payloadStart, p.end)) {
      checkSameSpec(u, layout.bucketMs, layout.retentionMs);
      if (tile < oldest) return SKIPPED;
      const v = observeInPlace(u, old!, oldest, tile, eventTime, maxAge);
      if (v !== null) return v;
    }
    tiles.read(old!, p.payloadStart, p.end);
    checkSameSpec(u, tiles.bucketMs, tiles.retentionMs);
  } else {
    tiles.count = 0;
    tiles.bucketMs = b;
    tiles.retentionMs = u.retentionMs;
  }
  if (tile < oldest) return SKIPPED;
  // Drop tiles past retention, then merge the event into its tile (kept in ascending order).
  let drop = 0;
  while (drop < tiles.count && tiles.starts[drop]! < oldest) drop++;
  const n = tiles.count - drop;
  if (drop > 0)
    for (const col of [tiles.starts, tiles.counts, tiles.sums, tiles.mins, tiles.maxs])
      col.copyWithin(0, drop, drop + n);
  tiles.count = n;
  let i = n;
  while (i > 0 && tiles.starts[i - 1]! > tile) i--;
  const v = u.observed;
  if (i > 0 && tiles.starts[i - 1] === tile) {
    const k = i - 1;
    tiles.counts[k]! += 1;
    tiles.sums[k]! += v;
    if (v < tiles.mins[k]!) tiles.mins[k] = v;
    if (v > tiles.maxs[k]!) tiles.maxs[k] = v;
  } else {
    tiles.grow(n + 1);
    for (const col of [tiles.starts, tiles.counts, tiles.sums, tiles.mins, tiles.maxs])
      col.copyWithin(i + 1, i, n);
    tiles.starts[i] = tile;
    tiles.counts[i] = 1;
    tiles.sums[i] = v;
    tiles.mins[i] = v;
    tiles.maxs[i] = v;
    tiles.count = n + 1;
  }
  beginValue(eventTime, maxAge);
  tiles.write(out, VALUE_WINDOW);
  return out.finish();
}

/** A windowed aggregate as reads answer it (WindowAggregate). */
export interface Aggregate {
  count: number;
  sum: number;
  min: number;
  max: number;
}

const agg: Aggregate = { count: 0, sum: 0, min: 0, max: 0 };

/**
 * Rolls up the tiles of the stored window value b[start,end) (feature `label`) that lie in the
 * `windowMs` before `now`: the tile holding `now` and the windowMs / bucket_ms - 1 before it.
 * Throws FAILED_PRECONDITION when the value is not a window, or the window is not a multiple of
 * its bucket or longer than its retention. The answer is reused by the next call.
 */
export function aggregate(
  label: string,
  b: Uint8Array,
  start: number,
  end: number,
  windowMs: number,
  now: number,
): Aggregate {
  const p = parseValue(b, start, end);
  if (p.kind !== VALUE_WINDOW)
    throw new FeatureStoreError(
      Code.FailedPrecondition,
      `feature "${label}" holds ${KIND_NAMES[p.kind]}; a window query needs a window`,
    );
  const inPlace = readLayout(b, p.payloadStart, p.end);
  if (!inPlace) tiles.read(b, p.payloadStart, p.end);
  const bucket = inPlace ? layout.bucketMs : tiles.bucketMs;
  const retention = inPlace ? layout.retentionMs : tiles.retentionMs;
  if (windowMs > retention)
    throw new FeatureStoreError(
      Code.FailedPrecondition,
      `window_ms ${windowMs} of feature "${label}" is longer than its retention_ms ${retention}`,
    );
  if (windowMs % bucket !== 0)
    throw new FeatureStoreError(
      Code.FailedPrecondition,
      `window_ms ${windowMs} of feature "${label}" is not a multiple of its bucket_ms ${bucket}`,
    );
  const last = tileOf(now, bucket);
  const first = last - windowMs + bucket;
  if (inPlace && aggregateInPlace(b, first, last)) return agg;
  if (inPlace) tiles.read(b, p.payloadStart, p.end);
  agg.count = 0;
  agg.sum = 0;
  agg.min = 0;
  agg.max = 0;
  for (let i = 0; i < tiles.count; i++) {
    const s = tiles.starts[i]!;
    if (s < first || s > last) continue;
    if (agg.count === 0) {
      agg.min = tiles.mins[i]!;
      agg.max = tiles.maxs[i]!;
    } else {
      if (tiles.mins[i]! < agg.min) agg.min = tiles.mins[i]!;
      if (tiles.maxs[i]! > agg.max) agg.max = tiles.maxs[i]!;
    }
    agg.count += tiles.counts[i]!;
    agg.sum += tiles.sums[i]!;
  }
  return agg;
}

/** Validates a WindowSpec of an Observe: bucket and retention positive, tiles bounded. */
export function checkSpec(label: string, bucketMs: number, retentionMs: number, maxTiles: number): void {
  if (!(bucketMs > 0) || !(retentionMs > 0))
    throw invalidArgument(`feature "${label}": observe needs spec.bucket_ms and spec.retention_ms > 0`);
  if (retentionMs % bucketMs !== 0)
    throw invalidArgument(
      `feature "${label}": retention_ms ${retentionMs} is not a multiple of bucket_ms ${bucketMs}`,
    );
  if (retentionMs / bucketMs > maxTiles)
    throw invalidArgument(
      `feature "${label}": retention_ms / bucket_ms is ${retentionMs / bucketMs} tiles; the limit is ${maxTiles} (MAX_WINDOW_TILES)`,
    );
}
