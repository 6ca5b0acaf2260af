/**
 * The dense read: features of many entities decoded straight from a BatchGetResponse (or a
 * GetFeaturesResponse) into one row-major Float32Array, the input tensor a model takes, with a
 * presence mask and a status per cell. No JS value is made per feature: numbers go from the
 * answer bytes into the output array, embeddings are copied byte for byte.
 *
 * ```
 * spec: [ clicks_7d | ctr_7d | is_premium | embedding (width 4) ]   width = 7 floats per row
 *
 * values  (rows x width)      row 0: c  r  p  e0 e1 e2 e3
 *                             row 1: c  r  p  e0 e1 e2 e3
 * present (rows x features)   row 0: 1  1  1  1           1 = a stored value, 0 = the default
 * status  (rows x features)   row 0: 0  0  0  0           CellStatus, why a cell holds its default
 * found   (rows)              1 = the entity exists
 * ```
 *
 * A `FeatureVectorSpec` is built once and reused: it validates the names, widths, defaults and
 * mapping functions, and compiles the names into a byte-level lookup table and the request
 * suffix (`feature_names`) every read sends.
 */
import { Method } from "./frame.ts";
import { type ReadOptions, writeReadOptions } from "./messages.ts";
import { Code, FeatureStoreError, invalidArgument } from "./status.ts";
import { encodeUtf8, type ProtoWriter, utf8Slice } from "./wire.ts";

/** Why a cell of a dense read holds what it holds. */
export const CellStatus = {
  /** The stored value. */
  Ok: 0,
  /** The entity exists but has no such feature (or the projection dropped it): the default. */
  Missing: 1,
  /** The entity does not exist (or expired): the default. */
  EntityMissing: 2,
  /** A list feature whose length differs from the declared width: the default. */
  WidthMismatch: 3,
  /** A value of a type the column cannot take (a string for a number, a number for an embedding...): the default. */
  TypeMismatch: 4,
  /** NaN or ±Infinity with `nonFinite: "default"`: the default. */
  NonFinite: 5,
  /**
   * The entity has the feature but it is older than its max age (the read's `maxAgeMs` or the
   * feature's own; the answer lists it in `stale`): the default.
   */
  Stale: 6,
} as const;
export type CellStatus = (typeof CellStatus)[keyof typeof CellStatus];

/** Status names indexed by CellStatus, for messages and logs. */
export const CELL_STATUS_NAMES = [
  "ok",
  "missing",
  "entity_missing",
  "width_mismatch",
  "type_mismatch",
  "non_finite",
  "stale",
] as const;

/**
 * One column group of a spec.
 * - A **number** (the default kind): an int64, a double or a bool (1/0), one float.
 * - A **vector**: `width` floats from a `float_list` (or an `int_list`) of exactly that length.
 * - A **string** or **bytes** value turned into one float by `map`, called once per distinct
 *   value and remembered (up to `maxMappedValues` per feature; past that `map` is called for
 *   each value).
 */
export type FeatureColumn =
  | string
  | {
      name: string;
      kind?: "number";
      /** Used when the value is absent or unusable (default: the spec's `default`, 0). */
      default?: number;
    }
  | {
      name: string;
      kind?: "vector";
      /** Floats per row, 1 to 65,536. */
      width: number;
      /** One number for every element, or exactly `width` numbers (default: the spec's `default`). */
      default?: number | ArrayLike<number>;
    }
  | { name: string; kind: "string"; map: (value: string) => number; default?: number }
  | { name: string; kind: "bytes"; map: (value: Uint8Array) => number; default?: number };

export interface FeatureVectorSpecOptions {
  /** The default of every column that declares none (default 0). */
  default?: number;
  /**
   * NaN and ±Infinity stored in a number or vector feature: `"keep"` them (default) or replace
   * the cell by its default with status NonFinite (a vector with any non-finite element).
   */
  nonFinite?: "keep" | "default";
  /** Distinct values remembered per mapped feature (default 65,536, 0 to 2^24). */
  maxMappedValues?: number;
  /**
   * What a read asks the server for: `"named"` (default) names the spec's features, and the
   * server sends only those; `"all"` names none, the server sends whole records and the decoder
   * skips what the spec does not name. "all" is cheaper when the spec covers most of each
   * record: a projection makes the server walk and compare every stored entry (measured on the
   * benchmark's 20-feature records: ~1 µs of server CPU per entity, BatchGet of 100 at 1×1 234
   * vs 146 µs per request); "named" sends fewer bytes when records are much wider than the spec.
   */
  fetch?: "named" | "all";
}

const KIND_NUMBER = 0;
const KIND_VECTOR = 1;
const KIND_STRING = 2;
const KIND_BYTES = 3;
const MAX_WIDTH = 65536;
const DEFAULT_MAX_MAPPED = 65536;

/** FNV-1a over a byte range, seeded with the length (the same hash as the typed path's name table). */
function hashBytes(buf: Uint8Array, start: number, end: number): number {
  let h = end - start;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

/**
 * An open-addressing table of byte strings -> small integers, in typed arrays: the spec's
 * feature names, and the distinct values of a mapped feature.
 */
class BytesTable {
  private slots: Int32Array;
  private hashes: Uint32Array;
  private starts: Int32Array;
  private ends: Int32Array;
  /** The keys, end to end. */
  arena: Uint8Array;
  private arenaUsed = 0;
  size = 0;

  constructor(capacity: number) {
    let n = 8;
    while (n < capacity * 2) n *= 2;
    this.slots = new Int32Array(n).fill(-1);
    this.hashes = new Uint32Array(capacity);
    this.starts = new Int32Array(capacity);
    this.ends = new Int32Array(capacity);
    this.arena = new Uint8Array(Math.max(64, capacity * 16));
  }

  /** The index of buf[start, end) (hash `h`), or -1. */
  find(buf: Uint8Array, start: number, end: number, h: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    const n = end - start;
    const arena = this.arena;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const i = slots[s]!;
      if (i < 0) return -1;
      if (this.hashes[i] !== h) continue;
      const a = this.starts[i]!;
      if (this.ends[i]! - a !== n) continue;
      let k = 0;
      while (k < n && arena[a + k] === buf[start + k]) k++;
      if (k === n) return i;
    }
  }

  /** Adds buf[start, end) (not present, hash `h`); returns its index. */
  add(buf: Uint8Array, start: number, end: number, h: number): number {
    const i = this.size;
    if (i === this.hashes.length) this.grow();
    const n = end - start;
    if (this.arenaUsed + n > this.arena.length) {
      let cap = this.arena.length * 2;
      while (cap < this.arenaUsed + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.arena.subarray(0, this.arenaUsed));
      this.arena = next;
    }
    this.arena.set(buf.subarray(start, end), this.arenaUsed);
    this.hashes[i] = h;
    this.starts[i] = this.arenaUsed;
    this.ends[i] = this.arenaUsed + n;
    this.arenaUsed += n;
    this.size = i + 1;
    this.place(i);
    return i;
  }

  /** True when entry `i` equals buf[start, end). */
  equals(i: number, buf: Uint8Array, start: number, end: number): boolean {
    const a = this.starts[i]!;
    const n = end - start;
    if (this.ends[i]! - a !== n) return false;
    const arena = this.arena;
    for (let k = 0; k < n; k++) if (arena[a + k] !== buf[start + k]) return false;
    return true;
  }

  private place(i: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let s = this.hashes[i]! & mask;
    while (slots[s]! >= 0) s = (s + 1) & mask;
    slots[s] = i;
  }

  private grow(): void {
    const cap = this.hashes.length * 2;
    const hashes = new Uint32Array(cap);
    hashes.set(this.hashes);
    this.hashes = hashes;
    const starts = new Int32Array(cap);
    starts.set(this.starts);
    this.starts = starts;
    const ends = new Int32Array(cap);
    ends.set(this.ends);
    this.ends = ends;
    this.slots = new Int32Array(this.slots.length * 2).fill(-1);
    for (let i = 0; i < this.size; i++) this.place(i);
  }
}

/** The remembered results of a mapped feature's `map`. */
class MappedValues {
  readonly table: BytesTable;
  results = new Float64Array(64);

  constructor(
    readonly max: number,
    private readonly map: (value: never) => number,
    readonly bytes: boolean,
    readonly name: string,
  ) {
    this.table = new BytesTable(Math.min(max, 64) || 1);
  }

  /** The mapped number of buf[start, end); calls `map` the first time a value is seen. */
  get(buf: Uint8Array, start: number, end: number): number {
    const h = hashBytes(buf, start, end);
    const i = this.table.find(buf, start, end, h);
    if (i >= 0) return this.results[i]!;
    const v = this.call(buf, start, end);
    if (this.table.size < this.max) {
      const at = this.table.add(buf, start, end, h);
      if (at >= this.results.length) {
        const next = new Float64Array(this.results.length * 2);
        next.set(this.results);
        this.results = next;
      }
      this.results[at] = v;
    }
    return v;
  }

  private call(buf: Uint8Array, start: number, end: number): number {
    const arg = this.bytes ? buf.slice(start, end) : utf8Slice(buf, start, end);
    const v = (this.map as (x: unknown) => unknown)(arg);
    if (typeof v !== "number")
      throw invalidArgument(`feature "${this.name}": map returned ${typeof v}, expected a number`);
    return v;
  }
}

/**
 * The features of a dense read, their order and widths, defaults and mappings: validated once,
 * reused by every read (and safe to share between clients and stores).
 *
 * ```ts
 * const spec = new FeatureVectorSpec([
 *   "clicks_7d",                                   // int, double or bool -> 1 float
 *   { name: "ctr_7d", default: -1 },
 *   { name: "embedding", width: 32 },              // float_list of exactly 32
 *   { name: "country", kind: "string", map: (c) => COUNTRY_CODES.indexOf(c) },
 * ]);
 * ```
 * Throws INVALID_ARGUMENT naming the column for a duplicate or empty name, a bad width or
 * default, a string or bytes column without `map`.
 */
export class FeatureVectorSpec {
  /** Feature names in column order. */
  readonly names: readonly string[];
  /** Number of features (cells per row in `status` and `present`). */
  readonly features: number;
  /** Floats per row of `values` (the sum of the widths). */
  readonly width: number;
  /** First float of each feature within a row. */
  readonly offsets: Int32Array;
  /** Floats of each feature. */
  readonly widths: Int32Array;
  /** The row of defaults (`width` floats). */
  readonly defaults: Float32Array;
  /** True when non-finite values are replaced by the default (`nonFinite: "default"`). */
  readonly replaceNonFinite: boolean;
  /** @internal kind of each feature. */
  readonly kinds: Uint8Array;
  /** @internal the names, for the byte-level lookup of answer entries. */
  readonly table: BytesTable;
  /** @internal per feature, the feature most recently seen after it in an answer (features = at the start). */
  readonly nextGuess: Int32Array;
  /** @internal per feature, its mapping (string and bytes features only). */
  readonly mapped: (MappedValues | undefined)[];
  /**
   * @internal `feature_names` of a request (field 2, every name), appended to each BatchGet
   * (empty with `fetch: "all"`).
   */
  readonly requestSuffix: Uint8Array;

  constructor(columns: readonly FeatureColumn[], options: FeatureVectorSpecOptions = {}) {
    if (!Array.isArray(columns) || columns.length === 0)
      throw invalidArgument("FeatureVectorSpec: give at least one feature");
    const dflt = options.default ?? 0;
    if (typeof dflt !== "number") throw invalidArgument(`default must be a number, got ${typeof dflt}`);
    const nonFinite = options.nonFinite ?? "keep";
    if (nonFinite !== "keep" && nonFinite !== "default")
      throw invalidArgument(`nonFinite must be "keep" or "default", got ${String(nonFinite)}`);
    this.replaceNonFinite = nonFinite === "default";
    const fetch = options.fetch ?? "named";
    if (fetch !== "named" && fetch !== "all")
      throw invalidArgument(`fetch must be "named" or "all", got ${String(fetch)}`);
    const maxMapped = options.maxMappedValues ?? DEFAULT_MAX_MAPPED;
    if (!Number.isInteger(maxMapped) || maxMapped < 0 || maxMapped > 2 ** 24)
      throw invalidArgument(`maxMappedValues must be an integer from 0 to ${2 ** 24}, got ${maxMapped}`);

    const n = columns.length;
    const names: string[] = [];
    this.features = n;
    this.offsets = new Int32Array(n);
    this.widths = new Int32Array(n);
    this.kinds = new Uint8Array(n);
    this.mapped = new Array(n).fill(undefined);
    this.table = new BytesTable(n);
    const defaults: number[] = [];
    const seen = new Set<string>();
    let width = 0;
    for (let i = 0; i < n; i++) {
      const c = columns[i];
      const col = typeof c === "string" ? { name: c } : c;
      if (col === null || typeof col !== "object")
        throw invalidArgument(`features[${i}] must be a name or { name, ... }`);
      const name = col.name;
      if (typeof name !== "string" || name.length === 0)
        throw invalidArgument(`features[${i}]: name must be a non-empty string`);
      if (seen.has(name)) throw invalidArgument(`features[${i}]: "${name}" appears twice`);
      seen.add(name);
      const where = `feature "${name}"`;
      const kind = "kind" in col && col.kind !== undefined ? col.kind : "width" in col ? "vector" : "number";
      let w = 1;
      let colDefault: number | ArrayLike<number> | undefined = "default" in col ? col.default : undefined;
      if (kind === "vector") {
        const cw = (col as { width?: unknown }).width;
        if (typeof cw !== "number" || !Number.isInteger(cw) || cw < 1 || cw > MAX_WIDTH)
          throw invalidArgument(
            `${where}: width must be an integer from 1 to ${MAX_WIDTH}, got ${String(cw)}`,
          );
        w = cw;
        this.kinds[i] = KIND_VECTOR;
      } else if (kind === "string" || kind === "bytes") {
        const map = (col as { map?: unknown }).map;
        if (typeof map !== "function")
          throw invalidArgument(
            `${where}: ${kind} values cannot go into a Float32Array; give map: (value) => number, or leave the feature out`,
          );
        this.kinds[i] = kind === "string" ? KIND_STRING : KIND_BYTES;
        this.mapped[i] = new MappedValues(maxMapped, map as (v: never) => number, kind === "bytes", name);
      } else if (kind === "number") {
        if ("width" in col) throw invalidArgument(`${where}: a width needs kind "vector"`);
        this.kinds[i] = KIND_NUMBER;
      } else {
        throw invalidArgument(
          `${where}: kind must be "number", "vector", "string" or "bytes", got ${String(kind)}`,
        );
      }
      colDefault ??= dflt;
      if (typeof colDefault === "number") {
        for (let k = 0; k < w; k++) defaults.push(colDefault);
      } else if (kind === "vector" && colDefault !== null && typeof colDefault === "object") {
        if (colDefault.length !== w)
          throw invalidArgument(`${where}: default has ${colDefault.length} numbers, the width is ${w}`);
        for (let k = 0; k < w; k++) {
          const x = colDefault[k];
          if (typeof x !== "number") throw invalidArgument(`${where}: default[${k}] is not a number`);
          defaults.push(x);
        }
      } else {
        throw invalidArgument(`${where}: default must be a number${kind === "vector" ? " or an array" : ""}`);
      }
      names.push(name);
      this.offsets[i] = width;
      this.widths[i] = w;
      width += w;
      const bytes = encodeUtf8(name);
      this.table.add(bytes, 0, bytes.length, hashBytes(bytes, 0, bytes.length));
    }
    this.names = Object.freeze(names);
    this.width = width;
    this.defaults = Float32Array.from(defaults);
    this.nextGuess = new Int32Array(n + 1).fill(-1);
    this.requestSuffix = fetch === "all" ? new Uint8Array(0) : encodeNames(names);
  }

  /** First float of feature `name` within a row, or -1. */
  columnOf(name: string): number {
    const i = this.names.indexOf(name);
    return i < 0 ? -1 : this.offsets[i]!;
  }

  /**
   * Output arrays for up to `rows` rows, to reuse across reads. `values` may be the caller's
   * (e.g. a tensor's data, a view into a larger one) if it holds `rows * width` floats.
   */
  newBatch(rows: number, values?: Float32Array): DenseBatch {
    if (!Number.isInteger(rows) || rows < 0)
      throw invalidArgument(`rows must be an integer >= 0, got ${rows}`);
    return new DenseBatch(values ?? new Float32Array(rows * this.width), rows * this.features, rows);
  }

  /** A BatchGetRequest for `entityIds` and this spec's names (for fetching over Connect or gRPC). */
  batchGetRequest(entityIds: readonly string[]): Uint8Array {
    const parts: Uint8Array[] = [];
    let len = this.requestSuffix.length;
    for (const id of entityIds) {
      const b = encodeUtf8(id);
      const head = lengthPrefix(0x0a, b.length);
      parts.push(head, b);
      len += head.length + b.length;
    }
    const out = new Uint8Array(len);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    out.set(this.requestSuffix, at);
    return out;
  }
}

/**
 * Encodes the request of a dense read into `w` and returns its method: the ids, then the spec's
 * names (encoded once, at construction), then `options`. One id is a GetFeatures (the same bytes:
 * the fields of both requests have the same numbers), which costs the server less than a
 * BatchGet of one (measured: 4.8 vs 5.9 µs of server CPU at 8×8); more are a BatchGet. Checks
 * first that `out` holds the rows (INVALID_ARGUMENT otherwise).
 */
export function encodeDenseRequest(
  w: ProtoWriter,
  entityIds: readonly string[],
  spec: FeatureVectorSpec,
  out: DenseBatch,
  options?: DenseRequestOptions,
): typeof Method.GetFeatures | typeof Method.BatchGet {
  checkFits(spec, out, entityIds.length);
  w.reset();
  for (const id of entityIds) w.stringField(1, id);
  w.raw(spec.requestSuffix);
  writeReadOptions(w, options);
  return entityIds.length === 1 ? Method.GetFeatures : Method.BatchGet;
}

/**
 * What a dense read may ask beside its ids: a max age (features older than it are `Stale` cells)
 * and the feature set version to read (see ReadOptions).
 */
export type DenseRequestOptions = Pick<ReadOptions, "maxAgeMs" | "featureSet" | "version">;

/**
 * Decodes the answer to a request made by `encodeDenseRequest` (`method` is what it returned)
 * into `out`, `rows` rows. Returns `out`.
 */
export function decodeDenseAnswer(
  method: number,
  spec: FeatureVectorSpec,
  body: Uint8Array,
  out: DenseBatch,
  rows: number,
): DenseBatch {
  if (method === Method.BatchGet) return decodeDenseBatchGet(spec, body, out, rows);
  decodeDenseGet(spec, body, out, 0);
  out.rows = 1;
  return out;
}

function lengthPrefix(tag: number, n: number): Uint8Array {
  const out: number[] = [tag];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}

function encodeNames(names: readonly string[]): Uint8Array {
  const parts: number[] = [];
  for (const name of names) {
    const b = encodeUtf8(name);
    parts.push(...lengthPrefix(0x12, b.length), ...b);
  }
  return Uint8Array.from(parts);
}

/**
 * The output of a dense read: arrays sized for a number of rows, reused across reads (a read
 * fills the first `rows` rows and says so in `rows`). Reusable with any spec whose rows fit.
 */
export class DenseBatch {
  /** Rows filled by the last read. */
  rows = 0;
  /** Floats per row and features per row of the last read (its spec's `width` and `features`). */
  width = 0;
  features = 0;
  /** Row-major, `rows x width`. */
  readonly values: Float32Array;
  /** `rows x features`: 1 where the cell holds a stored value, 0 where it holds its default. */
  readonly present: Uint8Array;
  /** `rows x features`: a CellStatus per cell. */
  readonly status: Uint8Array;
  /** `rows`: 1 where the entity exists. */
  readonly found: Uint8Array;
  /** @internal the bytes of `values`, for copying embeddings without a view per copy. */
  readonly valueBytes: Uint8Array;

  /**
   * @param values the output floats (any Float32Array, a caller's tensor buffer included)
   * @param cells capacity of `present` and `status` (rows x features)
   * @param rows capacity of `found`
   */
  constructor(values: Float32Array, cells: number, rows: number) {
    if (!(values instanceof Float32Array)) throw invalidArgument("values must be a Float32Array");
    this.values = values;
    this.valueBytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.present = new Uint8Array(cells);
    this.status = new Uint8Array(cells);
    this.found = new Uint8Array(rows);
  }

  /** How many rows of `spec` fit. */
  capacity(spec: FeatureVectorSpec): number {
    return Math.min(
      Math.floor(this.values.length / spec.width),
      Math.floor(this.status.length / spec.features),
      this.found.length,
    );
  }

  /** The floats of row `row` (a view: allocates; for convenience, not for hot loops). */
  row(row: number): Float32Array {
    return this.values.subarray(row * this.width, (row + 1) * this.width);
  }

  /** The value of feature `name` in row `row`: a number, or a view of a vector's floats. */
  get(row: number, spec: FeatureVectorSpec, name: string): number | Float32Array {
    const i = spec.names.indexOf(name);
    if (i < 0) throw invalidArgument(`feature "${name}" is not in the spec`);
    const at = row * spec.width + spec.offsets[i]!;
    const w = spec.widths[i]!;
    return spec.kinds[i] === KIND_VECTOR ? this.values.subarray(at, at + w) : this.values[at]!;
  }
}

// ---- decoding --------------------------------------------------------------------------------
//
// The answer bytes are walked with a module-level cursor `p` (one decode runs at a time: the
// only code called during one is a spec's `map`, around which the cursor is saved). Every
// length is checked against its message's end; a malformed answer is INTERNAL, as it is on the
// typed path.

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

function malformed(what: string): FeatureStoreError {
  return new FeatureStoreError(Code.Internal, `malformed answer: ${what}`);
}

/**
 * A length of one or two varint bytes at buf[p] (every name, value and embedding under 16 KiB),
 * or -1 for a longer or truncated one, which the general walk then takes. It takes
 * `buf[p] < 0x80 ? 1 : 2` bytes; callers check where it ends against their own bounds.
 */
function shortLength(buf: Uint8Array, p: number): number {
  const l = buf[p]!;
  if (l < 0x80) return l;
  const b2 = buf[p + 1]!;
  return b2 < 0x80 ? (l & 0x7f) | (b2 << 7) : -1;
}

/**
 * Where the value field of the FeatureValue at buf[s, end) starts: after the event time (0x50)
 * and max age (0x58) varints the server stores first, which a dense read does not use. May
 * return a position past `end` for a truncated value (callers check).
 */
function skipValueMeta(buf: Uint8Array, s: number, end: number): number {
  if (buf[s] === 0x50) {
    s++;
    while (s < end && buf[s]! >= 0x80) s++;
    s++;
  }
  if (buf[s] === 0x58) {
    s++;
    while (s < end && buf[s]! >= 0x80) s++;
    s++;
  }
  return s;
}

/** Counts the results (field 1) of a BatchGetResponse. */
export function countBatchResults(buf: Uint8Array, start = 0, end = buf.length): number {
  const d = decoder;
  d.p = start;
  let n = 0;
  while (d.p < end) {
    const t = d.tag(buf, end);
    if (t === 0x0a) n++;
    d.skip(buf, end, t & 7);
  }
  return n;
}

function checkFits(spec: FeatureVectorSpec, out: DenseBatch, rows: number): void {
  if (out.capacity(spec) < rows)
    throw invalidArgument(
      `the output batch holds ${out.capacity(spec)} rows of this spec (${spec.width} floats, ${spec.features} features each), the read has ${rows}`,
    );
}

/**
 * Decodes a BatchGetResponse in buf[start, end) into `out` (allocated when absent), one row
 * per result, in order. With `expectRows`, an answer with another number of results is
 * INTERNAL. Returns `out`.
 */
export function decodeDenseBatchGet(
  spec: FeatureVectorSpec,
  buf: Uint8Array,
  out?: DenseBatch,
  expectRows = -1,
  start = 0,
  end = buf.length,
): DenseBatch {
  const d = decoder;
  const rows = countBatchResults(buf, start, end);
  if (expectRows >= 0 && rows !== expectRows)
    throw malformed(`BatchGetResponse has ${rows} results for ${expectRows} entities`);
  const o = out ?? spec.newBatch(rows);
  checkFits(spec, o, rows);
  o.rows = rows;
  o.width = spec.width;
  o.features = spec.features;
  d.p = start;
  let row = 0;
  while (d.p < end) {
    const t = d.tag(buf, end);
    if (t === 0x0a) {
      const e = d.lengthEnd(buf, end);
      d.decodeResult(spec, buf, d.p, e, o, row++);
      d.p = e;
    } else d.skip(buf, end, t & 7);
  }
  return o;
}

/**
 * Decodes a GetFeaturesResponse in buf[start, end) into row `row` of `out` (allocated with one
 * row when absent). Returns `out`.
 */
export function decodeDenseGet(
  spec: FeatureVectorSpec,
  buf: Uint8Array,
  out?: DenseBatch,
  row = 0,
  start = 0,
  end = buf.length,
): DenseBatch {
  const d = decoder;
  const o = out ?? spec.newBatch(1);
  checkFits(spec, o, row + 1);
  o.rows = o.width === spec.width && o.features === spec.features ? Math.max(o.rows, row + 1) : row + 1;
  o.width = spec.width;
  o.features = spec.features;
  d.decodeResult(spec, buf, start, end, o, row);
  return o;
}

/**
 * The cursor and the walk over one answer. A class rather than functions around a module-level
 * `let`: the cursor as a property of `this` stays in a register-held object, where a top-level
 * binding cost a scope load and a TDZ check per byte (measured: 1.2 us -> see codec.bench.ts).
 */
class DenseDecoder {
  /** The position in the answer being decoded. */
  p = 0;

  varint(buf: Uint8Array, end: number): number {
    const p = this.p;
    if (p < end) {
      // One byte: every tag and every length below 128 (names, values, most entries).
      const b = buf[p]!;
      if (b < 0x80) {
        this.p = p + 1;
        return b;
      }
    }
    return this.varintSlow(buf, end);
  }

  varintSlow(buf: Uint8Array, end: number): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.p >= end) throw malformed("truncated varint");
      const b = buf[this.p++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw malformed("varint longer than 10 bytes");
  }

  /** An int64 varint as the nearest double (what Number(bigint) gives), without BigInt. */
  int64(buf: Uint8Array, end: number): number {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.p >= end) throw malformed("truncated varint");
      const b = buf[this.p++]!;
      const v = b & 0x7f;
      if (i < 4) lo |= v << (7 * i);
      else if (i === 4) {
        lo |= v << 28;
        hi |= v >>> 4;
      } else hi |= v << (7 * i - 32);
      if (b < 0x80) return (hi | 0) * 4294967296 + (lo >>> 0);
    }
    throw malformed("varint longer than 10 bytes");
  }

  /** Reads a length prefix at `this.p`; returns the end of the field (this.p is its start). */
  lengthEnd(buf: Uint8Array, end: number): number {
    const n = this.varint(buf, end);
    if (n > end - this.p) throw malformed("length-delimited field runs past the end of its message");
    return this.p + n;
  }

  skip(buf: Uint8Array, end: number, wt: number): void {
    switch (wt) {
      case 0:
        this.varint(buf, end);
        return;
      case 1:
        if (end - this.p < 8) throw malformed("truncated field");
        this.p += 8;
        return;
      case 2:
        this.p = this.lengthEnd(buf, end);
        return;
      case 5:
        if (end - this.p < 4) throw malformed("truncated field");
        this.p += 4;
        return;
      default:
        throw malformed(`invalid wire type ${wt}`);
    }
  }

  tag(buf: Uint8Array, end: number): number {
    const p = this.p;
    if (p < end) {
      const b = buf[p]!;
      if (b < 0x80 && b >= 8) {
        this.p = p + 1;
        return b;
      }
    }
    const t = this.varintSlow(buf, end);
    if (t < 8 || t > 0xffffffff) throw malformed(`invalid field number ${Math.floor(t / 8)}`);
    return t;
  }

  /**
   * One GetFeaturesResponse into one row: every entry the spec names writes its floats and
   * status; then the cells left without a usable value get their defaults (cheaper than
   * writing the default row first when, as usual, most cells have a value).
   */
  decodeResult(
    spec: FeatureVectorSpec,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    row: number,
  ): void {
    if (this.fastResult(spec, buf, start, end, out, row)) return;
    const features = spec.features;
    const cell0 = row * features;
    const status = out.status;
    for (let k = 0; k < features; k++) status[cell0 + k] = CellStatus.Missing;
    let found = false;
    let prev = features;
    this.p = start;
    while (this.p < end) {
      const t = this.tag(buf, end);
      if (t === 0x12) {
        const e = this.lengthEnd(buf, end);
        prev = this.decodeEntry(spec, buf, this.p, e, out, row, prev);
        this.p = e;
      } else if (t === 0x18) {
        found = this.varint(buf, end) !== 0;
      } else if (t === 0x2a) {
        // stale (5): a name the answer holds back for its age (never also in features).
        const e = this.lengthEnd(buf, end);
        const f = spec.table.find(buf, this.p, e, hashBytes(buf, this.p, e));
        if (f >= 0) status[cell0 + f] = CellStatus.Stale;
        this.p = e;
      } else this.skip(buf, end, t & 7);
    }
    this.finishRow(spec, out, row, found);
  }

  /**
   * `decodeResult` for an answer as the server writes it, in one loop over local positions:
   * entity id, entries laid out `0a <len> name 12 <len> [50 <event time>] [58 <max age>]
   * <value>` (lengths of one or two bytes), `found`, missing names and the read time; each
   * value the one field its column reads without a conversion that can fail (an int of up to
   * 7 varint bytes, a double, a bool, a packed float list of the declared width, a short
   * string or bytes value). Anything else (stale names, aggregates, a wrong width or type,
   * a non-finite value with `nonFinite: "default"`) returns false before the row is finished,
   * and the general walk decodes the row again from its start: it writes every cell, so what
   * this wrote first does not matter. Measured (issue 15): the general walk spent ~70 ns per
   * feature in calls and cursor writes; a loop of this shape ~20.
   */
  fastResult(
    spec: FeatureVectorSpec,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    row: number,
  ): boolean {
    const features = spec.features;
    const cell0 = row * features;
    const at0 = row * spec.width;
    const status = out.status;
    const values = out.values;
    const kinds = spec.kinds;
    const offsets = spec.offsets;
    const table = spec.table;
    const nextGuess = spec.nextGuess;
    for (let k = 0; k < features; k++) status[cell0 + k] = CellStatus.Missing;
    let found = false;
    let prev = features;
    let p = start;
    while (p < end) {
      const t = buf[p]!;
      if (t === 0x38) {
        // read_time_ms (7): a varint
        p++;
        while (p < end && buf[p]! >= 0x80) p++;
        p++;
        continue;
      }
      if (t === 0x18) {
        // found (3): one varint byte
        const b = buf[p + 1]!;
        if (b >= 0x80) return false;
        found = b !== 0;
        p += 2;
        continue;
      }
      if (t !== 0x12 && t !== 0x0a && t !== 0x22) return false;
      // A length-delimited field: features (2), entity_id (1) or a missing name (4).
      const l = shortLength(buf, p + 1);
      const q = p + (buf[p + 1]! < 0x80 ? 2 : 3);
      const e = q + l;
      if (l < 0 || e > end) return false;
      p = e;
      if (t !== 0x12) continue;
      // The entry: 0a <kl> name 12 <vl> value.
      const kl = buf[q + 1]!;
      const ks = q + 2;
      const ke = ks + kl;
      if (buf[q] !== 0x0a || kl >= 0x80 || ke + 2 > e || buf[ke] !== 0x12) return false;
      const vl = shortLength(buf, ke + 1);
      const vs = ke + (buf[ke + 1]! < 0x80 ? 2 : 3);
      if (vl < 0 || vs + vl !== e) return false;
      let f = nextGuess[prev]!;
      if (f < 0 || !table.equals(f, buf, ks, ke)) {
        f = table.find(buf, ks, ke, hashBytes(buf, ks, ke));
        if (f < 0) continue;
        nextGuess[prev] = f;
      }
      prev = f;
      const s = skipValueMeta(buf, vs, e);
      if (s >= e) return false;
      const t0 = buf[s]!;
      const at = at0 + offsets[f]!;
      const kind = kinds[f]!;
      if (kind === KIND_NUMBER) {
        let x: number;
        if (t0 === 0x08) {
          x = 0;
          let mul = 1;
          let q2 = s + 1;
          for (;;) {
            if (q2 >= e || q2 > s + 7) return false;
            const b = buf[q2++]!;
            x += (b & 0x7f) * mul;
            if (b < 0x80) break;
            mul *= 128;
          }
          if (q2 !== e) return false;
        } else if (t0 === 0x11 && s + 9 === e) {
          for (let i = 0; i < 8; i++) f64Bytes[i] = buf[s + 1 + i]!;
          x = f64[0]!;
          if (spec.replaceNonFinite && !Number.isFinite(x)) return false;
        } else if (t0 === 0x20 && s + 2 === e && buf[s + 1]! < 0x80) {
          x = buf[s + 1] !== 0 ? 1 : 0;
        } else return false;
        values[at] = x;
      } else if (kind === KIND_VECTOR) {
        // 32 <len> 0a <len> floats: exactly the declared width.
        if (t0 !== 0x32) return false;
        const ol = shortLength(buf, s + 1);
        const list = s + (buf[s + 1]! < 0x80 ? 2 : 3);
        if (ol < 0 || list + ol !== e || buf[list] !== 0x0a) return false;
        const fl = shortLength(buf, list + 1);
        const d = list + (buf[list + 1]! < 0x80 ? 2 : 3);
        const w = spec.widths[f]!;
        if (d + fl !== e || fl !== w * 4) return false;
        const bytes = out.valueBytes;
        let o = at * 4;
        for (let i = d; i < e; i++) bytes[o++] = buf[i]!;
        if (spec.replaceNonFinite)
          for (let k = 0; k < w; k++) if (!Number.isFinite(values[at + k]!)) return false;
      } else {
        // A string (1a) or bytes (2a) value with a one-byte length, through the column's map.
        if (t0 !== (kind === KIND_STRING ? 0x1a : 0x2a)) return false;
        const sl = buf[s + 1]!;
        if (sl >= 0x80 || s + 2 + sl !== e) return false;
        values[at] = spec.mapped[f]!.get(buf, s + 2, e);
      }
      status[cell0 + f] = CellStatus.Ok;
    }
    if (p !== end) return false;
    this.finishRow(spec, out, row, found);
    return true;
  }

  /**
   * Ends row `row` once its entries are read: `found`, then the mask, and the defaults put back
   * in every cell without a usable value (an unknown entity's cells become EntityMissing).
   */
  finishRow(spec: FeatureVectorSpec, out: DenseBatch, row: number, found: boolean): void {
    out.found[row] = found ? 1 : 0;
    const features = spec.features;
    const cell0 = row * features;
    const at0 = row * spec.width;
    const status = out.status;
    const present = out.present;
    for (let k = 0; k < features; k++) {
      const cell = cell0 + k;
      if (!found) status[cell] = CellStatus.EntityMissing;
      if (status[cell] === CellStatus.Ok) present[cell] = 1;
      else {
        present[cell] = 0;
        this.restore(spec, k, out, at0 + spec.offsets[k]!);
      }
    }
  }

  /**
   * One map entry (name = 1, FeatureValue = 2). Returns the feature it set (the guess for the
   * next entry), or `prev` when the spec does not name it.
   */
  decodeEntry(
    spec: FeatureVectorSpec,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    row: number,
    prev: number,
  ): number {
    let ks = -1;
    let ke = -1;
    let vs = -1;
    let ve = -1;
    // The usual layout, as every encoder writes it: 0a <len> name 12 <len> value, a name shorter
    // than 128 bytes and a value shorter than 16 KiB (an embedding's length takes two bytes).
    const kl = buf[start + 1]!;
    if (buf[start] === 0x0a && kl < 0x80 && start + 2 + kl + 2 <= end) {
      const k2 = start + 2 + kl;
      const vl = shortLength(buf, k2 + 1);
      const v0 = k2 + (buf[k2 + 1]! < 0x80 ? 2 : 3);
      if (buf[k2] === 0x12 && vl >= 0 && v0 + vl === end) {
        ks = start + 2;
        ke = k2;
        vs = v0;
        ve = end;
      }
    }
    this.p = vs < 0 ? start : end;
    while (this.p < end) {
      const t = this.tag(buf, end);
      if (t === 0x0a) {
        ke = this.lengthEnd(buf, end);
        ks = this.p;
        this.p = ke;
      } else if (t === 0x12) {
        ve = this.lengthEnd(buf, end);
        vs = this.p;
        this.p = ve;
      } else this.skip(buf, end, t & 7);
    }
    if (ks < 0) ks = ke = start;
    // Answers list features in the same order entity after entity: try the feature that followed
    // the previous one last time before hashing.
    const table = spec.table;
    let f = spec.nextGuess[prev]!;
    if (f < 0 || !table.equals(f, buf, ks, ke)) {
      f = table.find(buf, ks, ke, hashBytes(buf, ks, ke));
      if (f < 0) return prev;
      spec.nextGuess[prev] = f;
    }
    if (vs < 0) throw malformed(`feature "${spec.names[f]}" has no value`);
    const at = row * spec.width + spec.offsets[f]!;
    // A cell that is not Ok gets its defaults once the row is done (decodeResult).
    out.status[row * spec.features + f] = this.decodeValue(spec, f, buf, vs, ve, out, at);
    return f;
  }

  /**
   * A FeatureValue in buf[start, end) into the floats of feature `f` at `at`. The last value field
   * wins (a oneof). Returns the cell's status; the floats of a cell that is not Ok are undefined
   * until the caller restores its defaults.
   */
  decodeValue(
    spec: FeatureVectorSpec,
    f: number,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    at: number,
  ): CellStatus {
    let field = 0;
    let fs = 0;
    let fe = 0;
    this.p = start;
    // A stored value starts with its event time and maybe its max age: stepped over. Other
    // orders take the loop.
    const s = skipValueMeta(buf, start, end);
    // Then one field that fills the value, as every encoder writes it: read it without the loop.
    const t0 = s < end ? buf[s]! : 0;
    if (t0 === 0x11 && s + 9 === end) {
      field = 2;
      fs = s + 1;
      fe = end;
      this.p = end;
    } else if (t0 === 0x08 || t0 === 0x20) {
      let q = s + 1;
      while (q < end && buf[q]! >= 0x80) q++;
      if (q + 1 === end) {
        field = t0 >>> 3;
        fs = s + 1;
        fe = end;
        this.p = end;
      }
    } else if (t0 === 0x1a || t0 === 0x2a || t0 === 0x32 || t0 === 0x3a) {
      const l = shortLength(buf, s + 1);
      const d = s + (buf[s + 1]! < 0x80 ? 2 : 3);
      if (l >= 0 && d + l === end) {
        field = t0 >>> 3;
        fs = d;
        fe = end;
        this.p = end;
      }
    }
    while (this.p < end) {
      const t = this.tag(buf, end);
      const wt = t & 7;
      const num = t >>> 3;
      // 1-9: the oneof members (9, a window, is a TypeMismatch for every column); 10 and 11,
      // the event time and max age, are skipped as unknown fields.
      if (num >= 1 && num <= 9) {
        const expected = num === 1 || num === 4 ? 0 : num === 2 ? 1 : 2;
        if (wt !== expected) throw malformed(`feature value field ${num} has wire type ${wt}`);
        field = num;
        if (wt === 2) {
          fe = this.lengthEnd(buf, end);
          fs = this.p;
          this.p = fe;
        } else {
          fs = this.p;
          this.skip(buf, end, wt);
          fe = this.p;
        }
      } else this.skip(buf, end, wt);
    }
    if (field === 0) throw malformed(`feature "${spec.names[f]}" has no value set`);
    const values = out.values;
    switch (spec.kinds[f]) {
      case KIND_NUMBER: {
        let x: number;
        this.p = fs;
        if (field === 1) x = this.int64(buf, fe);
        else if (field === 2) {
          for (let i = 0; i < 8; i++) f64Bytes[i] = buf[fs + i]!;
          x = f64[0]!;
        } else if (field === 4) x = this.varint(buf, fe) !== 0 ? 1 : 0;
        else return CellStatus.TypeMismatch;
        if (spec.replaceNonFinite && !Number.isFinite(x)) return CellStatus.NonFinite;
        values[at] = x;
        return CellStatus.Ok;
      }
      case KIND_VECTOR:
        if (field === 6) return this.floatList(spec, f, buf, fs, fe, out, at);
        if (field === 7) return this.intList(spec, f, buf, fs, fe, out, at);
        return CellStatus.TypeMismatch;
      case KIND_STRING:
      case KIND_BYTES: {
        if (field !== (spec.kinds[f] === KIND_STRING ? 3 : 5)) return CellStatus.TypeMismatch;
        const saved = this.p;
        const x = spec.mapped[f]!.get(buf, fs, fe);
        this.p = saved;
        values[at] = x;
        return CellStatus.Ok;
      }
    }
    return CellStatus.TypeMismatch;
  }

  /** Puts the defaults of feature `f` back at `at` (after an unusable or partly written value). */
  restore(spec: FeatureVectorSpec, f: number, out: DenseBatch, at: number): void {
    const values = out.values;
    const d = spec.defaults;
    const from = spec.offsets[f]!;
    const w = spec.widths[f]!;
    for (let k = 0; k < w; k++) values[at + k] = d[from + k]!;
  }

  /** A FloatList (packed or not) into exactly `width` floats. */
  floatList(
    spec: FeatureVectorSpec,
    f: number,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    at: number,
  ): CellStatus {
    const w = spec.widths[f]!;
    const bytes = out.valueBytes;
    let n = 0;
    this.p = start;
    while (this.p < end) {
      const t = this.tag(buf, end);
      if (t === 0x0a) {
        const e = this.lengthEnd(buf, end);
        const len = e - this.p;
        if (len % 4 !== 0) throw malformed("packed float list length is not a multiple of 4");
        const k = len >>> 2;
        if (n + k <= w) {
          // The usual case: one packed run, copied byte for byte into the output.
          let d = (at + n) * 4;
          for (let s = this.p; s < e; s++) bytes[d++] = buf[s]!;
        }
        n += k;
        this.p = e;
      } else if (t === 0x0d) {
        if (end - this.p < 4) throw malformed("truncated float");
        if (n < w) {
          const d = (at + n) * 4;
          bytes[d] = buf[this.p]!;
          bytes[d + 1] = buf[this.p + 1]!;
          bytes[d + 2] = buf[this.p + 2]!;
          bytes[d + 3] = buf[this.p + 3]!;
        }
        n++;
        this.p += 4;
      } else this.skip(buf, end, t & 7);
    }
    if (n !== w) return CellStatus.WidthMismatch;
    if (spec.replaceNonFinite) {
      const values = out.values;
      for (let k = 0; k < w; k++) if (!Number.isFinite(values[at + k]!)) return CellStatus.NonFinite;
    }
    return CellStatus.Ok;
  }

  /** An Int64List (packed or not) into exactly `width` floats. */
  intList(
    spec: FeatureVectorSpec,
    f: number,
    buf: Uint8Array,
    start: number,
    end: number,
    out: DenseBatch,
    at: number,
  ): CellStatus {
    const w = spec.widths[f]!;
    const values = out.values;
    let n = 0;
    this.p = start;
    while (this.p < end) {
      const t = this.tag(buf, end);
      if (t === 0x0a) {
        const e = this.lengthEnd(buf, end);
        while (this.p < e) {
          const x = this.int64(buf, e);
          if (n < w) values[at + n] = x;
          n++;
        }
      } else if (t === 0x08) {
        const x = this.int64(buf, end);
        if (n < w) values[at + n] = x;
        n++;
      } else this.skip(buf, end, t & 7);
    }
    return n === w ? CellStatus.Ok : CellStatus.WidthMismatch;
  }
}

const decoder = new DenseDecoder();
