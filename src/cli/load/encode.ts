/**
 * Rows to BatchSet request bytes, written straight into one reused buffer: no FeaturesInput
 * object per row, names encoded once per column. The layout (proto/featurestore/v1):
 *
 * ```
 * BatchSetRequest   { 1: SetFeaturesRequest item (repeated) }
 * SetFeaturesRequest{ 1: entity_id, 2: map entry (repeated), 3: ttl_ms, 4: replace }
 * map entry         { 1: name, 2: FeatureValue }
 * FeatureValue      { 10 event_time_ms, 11 max_age_ms (from the time columns, when a row has them),
 *                     then one of 1 int | 2 double | 3 string | 4 bool | 5 bytes | 6 float_list
 *                     | 7 int_list | 8 string_list }
 * ```
 */
import { writeFeatureValue, writeValueMeta } from "../../codec/features.ts";
import { ProtoWriter, WireType } from "../../codec/wire.ts";
import { describe, type FeatureType, inferType, Rejection, toInput } from "../values.ts";
import { EVENT_TIME_SUFFIX, isTimeColumn, MAX_AGE_SUFFIX } from "./columns.ts";

interface Column {
  type: FeatureType;
  /** From the schema: values that do not fit are rejected, never widened. */
  strict: boolean;
  /** The map entry's name field, `0a <len> <utf-8 name>`, encoded once. */
  nameField: Uint8Array;
  name: string;
  /** Its time columns (see EVENT_TIME_SUFFIX). */
  eventTimeColumn: string;
  maxAgeColumn: string;
}

export interface EncoderOptions {
  /** The entity id column. */
  key: string;
  /** Replace each entity's record instead of merging into it. */
  replace: boolean;
  /** TTL of every record written, ms; 0 = the server default. */
  ttlMs: number;
  /** Largest entity id, UTF-8 bytes (the server's MAX_ENTITY_ID_BYTES default). */
  maxIdBytes: number;
  /** Write into this version of this feature set (both or neither; "" = the plain entities). */
  featureSet?: string;
  version?: string;
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const f32 = new Float32Array(1);
// (writeVarint53 and the entry header assume lengths < 2^53, far above MAX_FRAME_BYTES.)
const f32Bytes = new Uint8Array(f32.buffer);
const encoder = new TextEncoder();

/**
 * Encodes rows as the items of one BatchSet. `add` appends a row or says why it cannot (the
 * writer is then rewound to before it); `body` is the request so far, `itemEnds` where each
 * item ends (to split a batch the server refused because of one item).
 */
export class BatchEncoder {
  readonly w = new ProtoWriter(1 << 20);
  /** Offset in `w` where item i ends; item i starts where item i-1 ends (or at 0). */
  itemEnds: number[] = [];
  private readonly columns = new Map<string, Column>();
  private readonly strictTypes: ReadonlySet<string>;
  /**
   * Whether rows have time columns: set on the first one seen, so that a file without any pays
   * nothing for looking them up.
   */
  private timed = false;

  constructor(
    types: Map<string, FeatureType>,
    strict: Iterable<string>,
    private readonly opts: EncoderOptions,
  ) {
    this.strictTypes = new Set(strict);
    for (const [name, type] of types) this.addColumn(name, type);
  }

  get items(): number {
    return this.itemEnds.length;
  }

  get bytes(): number {
    return this.w.pos;
  }

  /** The request body (a view valid until the next `add`/`reset`). */
  body(): Uint8Array {
    return this.w.view();
  }

  reset(): void {
    this.w.reset();
    this.itemEnds.length = 0;
  }

  /** Column names -> types, as inferred so far (for the summary and `--schema-out`). */
  types(): Record<string, FeatureType> {
    const out: Record<string, FeatureType> = {};
    for (const [name, c] of this.columns) out[name] = c.type;
    return out;
  }

  private addColumn(name: string, type: FeatureType): Column {
    const utf8 = encoder.encode(name);
    const w = new ProtoWriter(utf8.length + 8);
    w.bytesField(1, utf8);
    const col: Column = {
      type,
      strict: this.strictTypes.has(name),
      nameField: w.finish(),
      name,
      eventTimeColumn: name + EVENT_TIME_SUFFIX,
      maxAgeColumn: name + MAX_AGE_SUFFIX,
    };
    this.columns.set(name, col);
    return col;
  }

  /** Appends `row` as one item; null, or why the row is rejected. */
  add(row: unknown): string | null {
    if (typeof row !== "object" || row === null || Array.isArray(row)) return "not an object";
    const r = row as Record<string, unknown>;
    const key = this.opts.key;
    let id = r[key];
    if (typeof id === "number" || typeof id === "bigint") id = String(id);
    if (id === null) return `"${key}" is empty`; // an empty CSV cell
    if (typeof id !== "string") return id === undefined ? `no "${key}" column` : `"${key}" is not a string`;
    if (id.length === 0) return `"${key}" is empty`;
    if (id.length * 3 > this.opts.maxIdBytes && utf8Length(id) > this.opts.maxIdBytes)
      return `"${key}" is longer than ${this.opts.maxIdBytes} bytes`;
    const w = this.w;
    const start = w.pos;
    const item = w.beginLength(1);
    if (id.length < 128 && isAscii(id)) {
      const n = id.length;
      w.ensure(n + 2);
      const b = w.bytes;
      let p = w.pos;
      b[p++] = 0x0a;
      b[p++] = n;
      for (let i = 0; i < n; i++) b[p++] = id.charCodeAt(i);
      w.pos = p;
    } else w.stringField(1, id);
    for (const name in r) {
      if (name === key) continue;
      const v = r[name];
      if (v === null || v === undefined) continue;
      let col = this.columns.get(name);
      if (col === undefined) {
        if (isTimeColumn(name)) {
          if (this.timed) continue; // read with the feature it goes with
          // The first time column of the load: this row again, its features with their times.
          this.timed = true;
          w.pos = start;
          return this.add(row);
        }
        const t = inferType(v, false);
        if (t === null) continue;
        col = this.addColumn(name, t);
      }
      const err = this.timed ? this.timedCell(col, v, r) : this.cell(col, v, 0, 0);
      if (err !== null) {
        w.pos = start;
        return `column "${name}" (${col.type}): ${err}`;
      }
    }
    if (this.opts.ttlMs > 0) {
      w.tag(3, WireType.Varint);
      w.varint(this.opts.ttlMs);
    }
    if (this.opts.replace) {
      w.byte(0x20);
      w.byte(1);
    }
    if (this.opts.featureSet) w.stringField(5, this.opts.featureSet);
    if (this.opts.version) w.stringField(6, this.opts.version);
    w.endLength(item);
    this.itemEnds.push(w.pos);
    return null;
  }

  /** One map entry with the event time and max age of the row's time columns for it. */
  private timedCell(col: Column, v: unknown, r: Record<string, unknown>): string | null {
    const eventTimeMs = timeMs(r[col.eventTimeColumn]);
    if (typeof eventTimeMs === "string") return `${col.eventTimeColumn} ${eventTimeMs}`;
    const maxAgeMs = timeMs(r[col.maxAgeColumn]);
    if (typeof maxAgeMs === "string") return `${col.maxAgeColumn} ${maxAgeMs}`;
    return this.cell(col, v, eventTimeMs, maxAgeMs);
  }

  /**
   * One map entry, its value with an event time and max age when they are > 0; null, or why the
   * value does not fit the column.
   */
  private cell(col: Column, v: unknown, eventTimeMs: number, maxAgeMs: number): string | null {
    // The common cases of a JSON row are written whole, their lengths known up front: an entry
    // `12 <len> 0a <len> name 12 <len> value`. The general path below nests beginLength/endLength;
    // a value with time metadata always takes it.
    if (eventTimeMs === 0 && maxAgeMs === 0)
      switch (col.type) {
        case "int":
          if (typeof v === "number" && v >= 0 && Number.isSafeInteger(v)) {
            const p = this.entryHeader(col, 1 + varintSize53(v));
            this.w.bytes[p] = 0x08;
            this.w.pos = writeVarint53(this.w.bytes, p + 1, v);
            return null;
          }
          break;
        case "double":
          if (typeof v === "number") {
            const p = this.entryHeader(col, 9);
            const b = this.w.bytes;
            b[p] = 0x11;
            f64[0] = v;
            for (let i = 0; i < 8; i++) b[p + 1 + i] = f64Bytes[i]!;
            this.w.pos = p + 9;
            return null;
          }
          break;
        case "bool":
          if (typeof v === "boolean") {
            const p = this.entryHeader(col, 2);
            this.w.bytes[p] = 0x20;
            this.w.bytes[p + 1] = v ? 1 : 0;
            this.w.pos = p + 2;
            return null;
          }
          break;
        case "string":
          if (typeof v === "string" && v.length < 128 && isAscii(v)) {
            const n = v.length;
            const p = this.entryHeader(col, 2 + n);
            const b = this.w.bytes;
            b[p] = 0x1a;
            b[p + 1] = n;
            for (let i = 0; i < n; i++) b[p + 2 + i] = v.charCodeAt(i);
            this.w.pos = p + 2 + n;
            return null;
          }
          break;
        case "float_list":
          if (Array.isArray(v)) return this.floatList(col, v);
          break;
      }
    const w = this.w;
    const entry = w.beginLength(2);
    w.raw(col.nameField);
    const value = w.beginLength(2);
    const input = toInput(col.type, v, col.strict);
    if (input === undefined) {
      // An absent value (an empty CSV cell): no entry.
      w.pos = entry - 1;
      return null;
    }
    if (input instanceof Rejection) return input.reason;
    writeValueMeta(w, eventTimeMs, maxAgeMs);
    writeFeatureValue(w, col.name, input);
    w.endLength(value);
    w.endLength(entry);
    return null;
  }

  /**
   * Writes `12 <entry len> <name field> 12 <valueLen>` with room for the value after it; returns
   * where the value goes.
   */
  private entryHeader(col: Column, valueLen: number): number {
    const name = col.nameField;
    const entryLen = name.length + 1 + varintSize53(valueLen) + valueLen;
    const w = this.w;
    w.ensure(entryLen + 6);
    const b = w.bytes;
    let p = w.pos;
    b[p++] = 0x12;
    p = writeVarint53(b, p, entryLen);
    for (let i = 0; i < name.length; i++) b[p++] = name[i]!;
    b[p++] = 0x12;
    return writeVarint53(b, p, valueLen);
  }

  /** A float_list of a JSON array: `32 <len> 0a <len> <floats, little-endian>`. */
  private floatList(col: Column, v: unknown[]): string | null {
    const n = v.length;
    const packed = n * 4;
    const inner = n === 0 ? 0 : 1 + varintSize53(packed) + packed;
    const valueLen = 1 + varintSize53(inner) + inner;
    const start = this.w.pos;
    let p = this.entryHeader(col, valueLen);
    const b = this.w.bytes;
    b[p++] = 0x32;
    p = writeVarint53(b, p, inner);
    if (n > 0) {
      b[p++] = 0x0a;
      p = writeVarint53(b, p, packed);
      for (let i = 0; i < n; i++) {
        const x = v[i];
        if (typeof x !== "number") {
          this.w.pos = start;
          return `element ${i} (${describe(x)}) is not a number`;
        }
        f32[0] = x;
        b[p] = f32Bytes[0]!;
        b[p + 1] = f32Bytes[1]!;
        b[p + 2] = f32Bytes[2]!;
        b[p + 3] = f32Bytes[3]!;
        p += 4;
      }
    }
    this.w.pos = p;
    return null;
  }
}

/**
 * A time column's cell as ms (0 when absent or empty), or why it is not a whole number of ms >= 0.
 * JSON numbers, Parquet INT64 (bigint) and CSV text are taken alike.
 */
function timeMs(v: unknown): number | string {
  if (v === null || v === undefined || v === "") return 0;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : typeof v === "bigint" ? Number(v) : v;
  if (typeof n === "number" && Number.isSafeInteger(n) && n >= 0) return n;
  return `${describe(v)} is not a whole number of ms >= 0`;
}

/** Bytes of the varint of 0 <= v < 2^53. */
function varintSize53(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes the varint of 0 <= v < 2^53 at `p` (room made by the caller); returns the end. */
function writeVarint53(b: Uint8Array, p: number, v: number): number {
  while (v > 0x7f) {
    b[p++] = (v & 0x7f) | 0x80;
    v = v > 0xffffffff ? Math.floor(v / 128) : v >>> 7;
  }
  b[p++] = v;
  return p;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}
