/**
 * What each method means, written once on encoded bytes: a request body goes in, a response
 * message comes out in the caller's writer. The TCP server, the HTTP adapter and the embedded
 * store are thin shells around `handle`.
 *
 * A stored record is the run of `features` map entries (field 2 of GetFeaturesResponse) of one
 * entity, each written by this file in one canonical shape:
 *
 * ```
 * 0x12 <entry len>  0x0a <name len> <name utf-8>  0x12 <value len> <FeatureValue: one oneof field>
 * ```
 *
 * so a full GetFeatures answer is the entity id field, the stored bytes copied once, and
 * `found = true`: no decode, no objects, no re-encode. A projection walks the entries and
 * copies the wanted ones.
 */

import { ValueField } from "../codec/features.ts";
import { Method } from "../codec/frame.ts";
import { Code, FeatureStoreError, invalidArgument } from "../codec/status.ts";
import { bytesEqual, decodeUtf8, ProtoReader, ProtoWriter, varintSize, WireType } from "../codec/wire.ts";
import type { RecordStore } from "../store/types.ts";
import { isValidUtf8 } from "./utf8.ts";

/** Tunables of the service layer. */
export interface ServiceOptions {
  /** TTL in ms applied when a write says 0; 0 = records never expire. Default 0. */
  defaultTtlMs: number;
  /** Longest entity id in UTF-8 bytes. Default 1024. */
  maxEntityIdBytes: number;
  /** Most entity ids in one BatchGet and items in one BatchSet. Default 10,000. */
  maxBatchItems: number;
  /** Most feature names in one request (projection, delete, one SetFeatures' features). Default 10,000. */
  maxFeatureNames: number;
  /** Most features one entity holds; a write past it is RESOURCE_EXHAUSTED. Default 10,000. */
  maxFeaturesPerEntity: number;
  /** Largest answer message, bytes; checked while it is built. Default 4 MiB. */
  maxResponseBytes: number;
}

export const DEFAULT_SERVICE_OPTIONS: ServiceOptions = {
  defaultTtlMs: 0,
  maxEntityIdBytes: 1024,
  maxBatchItems: 10_000,
  maxFeatureNames: 10_000,
  maxFeaturesPerEntity: 10_000,
  maxResponseBytes: 4 * 1024 * 1024,
};

const TAG_ID = (1 << 3) | WireType.Bytes; // entity_id in every request and GetFeaturesResponse
const TAG_NAMES = (2 << 3) | WireType.Bytes; // feature_names; also the features map field
const TAG_FOUND = (3 << 3) | WireType.Varint;
const TAG_TTL = (3 << 3) | WireType.Varint;
const TAG_REPLACE = (4 << 3) | WireType.Varint;
const TAG_ITEM = (1 << 3) | WireType.Bytes;

/** Growable list of [start, end) ranges into one buffer, reused across requests. */
class Ranges {
  starts = new Int32Array(64);
  ends = new Int32Array(64);
  count = 0;
  push(start: number, end: number): void {
    if (this.count === this.starts.length) {
      const s = new Int32Array(this.count * 2);
      s.set(this.starts);
      this.starts = s;
      const e = new Int32Array(this.count * 2);
      e.set(this.ends);
      this.ends = e;
    }
    this.starts[this.count] = start;
    this.ends[this.count++] = end;
  }
}

export class FeatureService {
  readonly options: ServiceOptions;
  private readonly req = new ProtoReader();
  private readonly entry = new ProtoReader();
  private readonly walk = new ProtoReader();
  /** Requested feature names (GetFeatures, BatchGet, DeleteFeatures). */
  private readonly names = new Ranges();
  private matched = new Uint8Array(64);
  /** Entity ids of a BatchGet. */
  private readonly ids = new Ranges();
  /** Features of the SetFeatures being applied: names and canonical value fields. */
  private readonly setNames = new Ranges();
  private readonly setValues = new Ranges();
  private idStart = 0;
  private idEnd = 0;
  private ttlMs = 0;
  private replace = false;
  /** The record being built by a write. */
  private readonly record = new ProtoWriter(4096);

  constructor(
    readonly store: RecordStore,
    options: Partial<ServiceOptions> = {},
  ) {
    this.options = { ...DEFAULT_SERVICE_OPTIONS, ...options };
  }

  /**
   * Handles one request: `body[start,end)` is the request message of `method`; the response
   * message is appended to `out`. Throws FeatureStoreError; `out` may then hold a partial
   * answer, which the caller discards (rewind to where it started).
   */
  handle(method: number, body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    switch (method) {
      case Method.GetFeatures:
        this.getFeatures(body, start, end, out);
        return;
      case Method.BatchGet:
        this.batchGet(body, start, end, out);
        return;
      case Method.SetFeatures:
        this.parseSet(body, start, end);
        this.applySet(body);
        return;
      case Method.BatchSet:
        this.batchSet(body, start, end, out);
        return;
      case Method.DeleteFeatures:
        this.deleteFeatures(body, start, end, out);
        return;
      case Method.Ping:
        return;
      default:
        throw new FeatureStoreError(Code.Unimplemented, `unknown method ${method}`);
    }
  }

  // ---- reads ------------------------------------------------------------------------------

  private getFeatures(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    this.parseIdAndNames(body, start, end);
    this.writeResult(body, this.idStart, this.idEnd, out);
  }

  /**
   * Parses a GetFeaturesRequest or DeleteFeaturesRequest (the same shape: entity_id = 1,
   * feature_names = 2) into idStart/idEnd and `names`, and validates the id.
   */
  private parseIdAndNames(body: Uint8Array, start: number, end: number): void {
    const r = this.req.reset(body, start, end);
    this.names.count = 0;
    let idStart = -1;
    let idEnd = -1;
    while (!r.done()) {
      const tag = r.tag();
      if (tag === TAG_ID) {
        r.bytesRange();
        idStart = r.fieldStart;
        idEnd = r.fieldEnd;
      } else if (tag === TAG_NAMES) {
        r.bytesRange();
        this.pushName(body, r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    this.checkId(body, idStart, idEnd);
    this.idStart = idStart;
    this.idEnd = idEnd;
  }

  private batchGet(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    const r = this.req.reset(body, start, end);
    const ids = this.ids;
    ids.count = 0;
    this.names.count = 0;
    while (!r.done()) {
      const tag = r.tag();
      if (tag === TAG_ID) {
        r.bytesRange();
        if (ids.count === this.options.maxBatchItems)
          throw invalidArgument(`BatchGet takes at most ${this.options.maxBatchItems} entity ids`);
        ids.push(r.fieldStart, r.fieldEnd);
      } else if (tag === TAG_NAMES) {
        r.bytesRange();
        this.pushName(body, r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    for (let i = 0; i < ids.count; i++) this.checkId(body, ids.starts[i]!, ids.ends[i]!);
    let hits = 0;
    for (let i = 0; i < ids.count; i++) {
      const at = out.beginLength(1);
      if (this.writeResult(body, ids.starts[i]!, ids.ends[i]!, out)) hits++;
      out.endLength(at);
    }
    if (hits > 0) {
      out.tag(2, WireType.Varint);
      out.varint(hits);
    }
    if (ids.count - hits > 0) {
      out.tag(3, WireType.Varint);
      out.varint(ids.count - hits);
    }
  }

  private pushName(body: Uint8Array, start: number, end: number): void {
    if (!isValidUtf8(body, start, end)) throw invalidArgument("feature name is not valid UTF-8");
    this.names.push(start, end);
  }

  /** Writes one GetFeaturesResponse for the id at body[idStart,idEnd); returns found. */
  private writeResult(body: Uint8Array, idStart: number, idEnd: number, out: ProtoWriter): boolean {
    const store = this.store;
    const names = this.names;
    out.bytesField(1, body, idStart, idEnd);
    const h = store.find(body, idStart, idEnd);
    if (h < 0) {
      for (let i = 0; i < names.count; i++) out.bytesField(4, body, names.starts[i]!, names.ends[i]!);
      return false;
    }
    if (names.count === 0) {
      const len = store.length(h);
      out.ensure(len);
      out.pos += store.copyTo(h, out.bytes, out.pos);
    } else {
      this.project(h, body, out);
    }
    out.byte(TAG_FOUND);
    out.byte(1);
    return true;
  }

  /** Copies the entries of record `h` whose names were requested; lists the others as missing. */
  private project(h: number, body: Uint8Array, out: ProtoWriter): void {
    const names = this.names;
    const n = names.count;
    if (this.matched.length < n) this.matched = new Uint8Array(n * 2);
    const matched = this.matched;
    matched.fill(0, 0, n);
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    while (!w.done()) {
      const entryStart = this.nextEntry(w);
      let wanted = false;
      for (let i = 0; i < n; i++) {
        if (bytesEqual(arena, w.fieldStart, w.fieldEnd, body, names.starts[i]!, names.ends[i]!)) {
          matched[i] = 1;
          wanted = true;
        }
      }
      if (wanted) out.raw(arena, entryStart, w.pos);
    }
    for (let i = 0; i < n; i++)
      if (matched[i] === 0) out.bytesField(4, body, names.starts[i]!, names.ends[i]!);
  }

  // ---- writes -----------------------------------------------------------------------------

  /** Parses and validates one SetFeaturesRequest into the scratch state; writes nothing. */
  private parseSet(body: Uint8Array, start: number, end: number): void {
    const r = this.req.reset(body, start, end);
    this.setNames.count = 0;
    this.setValues.count = 0;
    this.ttlMs = 0;
    this.replace = false;
    let idStart = -1;
    let idEnd = -1;
    while (!r.done()) {
      const tag = r.tag();
      switch (tag) {
        case TAG_ID:
          r.bytesRange();
          idStart = r.fieldStart;
          idEnd = r.fieldEnd;
          break;
        case TAG_NAMES:
          r.bytesRange();
          this.parseEntry(body, r.fieldStart, r.fieldEnd);
          break;
        case TAG_TTL: {
          const ttl = r.varint();
          // A negative int64 arrives as a 10-byte varint >= 2^63.
          if (ttl > Number.MAX_SAFE_INTEGER) throw invalidArgument("ttl_ms must be >= 0");
          this.ttlMs = ttl;
          break;
        }
        case TAG_REPLACE:
          this.replace = r.varint() !== 0;
          break;
        default:
          r.skip(tag & 7);
      }
    }
    this.checkId(body, idStart, idEnd);
    this.idStart = idStart;
    this.idEnd = idEnd;
  }

  /** Parses one map entry; records the name range and the range of its canonical value field. */
  private parseEntry(body: Uint8Array, start: number, end: number): void {
    const r = this.entry.reset(body, start, end);
    let nameStart = start;
    let nameEnd = start;
    let valueStart = -1;
    let valueEnd = -1;
    while (!r.done()) {
      const tag = r.tag();
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        nameStart = r.fieldStart;
        nameEnd = r.fieldEnd;
      } else if (tag === ((2 << 3) | WireType.Bytes)) {
        r.bytesRange();
        valueStart = r.fieldStart;
        valueEnd = r.fieldEnd;
      } else r.skip(tag & 7);
    }
    if (!isValidUtf8(body, nameStart, nameEnd)) throw invalidArgument("feature name is not valid UTF-8");
    if (nameEnd === nameStart) throw invalidArgument("feature name must not be empty");
    if (valueStart < 0) throw this.badValue(body, nameStart, nameEnd, "has no value");
    this.canonicalValue(body, nameStart, nameEnd, valueStart, valueEnd);
    this.setNames.push(nameStart, nameEnd);
  }

  /**
   * Validates a FeatureValue in body[start,end) and records the range of the oneof field it
   * holds (tag through payload). With several oneof fields, the last wins, as protobuf says;
   * unknown fields are dropped.
   */
  private canonicalValue(
    body: Uint8Array,
    nameStart: number,
    nameEnd: number,
    start: number,
    end: number,
  ): void {
    const r = this.walk.reset(body, start, end);
    let kindStart = -1;
    let kindEnd = -1;
    while (!r.done()) {
      const fieldStart = r.pos;
      const tag = r.tag();
      const field = tag >>> 3;
      const wt = tag & 7;
      const expected = VALUE_WIRE_TYPES[field];
      if (expected === undefined) {
        r.skip(wt);
        continue;
      }
      if (wt !== expected)
        throw this.badValue(
          body,
          nameStart,
          nameEnd,
          `field ${VALUE_FIELD_NAMES[field]} has the wrong wire type ${wt}`,
        );
      r.skip(wt);
      if (wt === WireType.Bytes) {
        const ok =
          field === ValueField.String
            ? isValidUtf8(body, r.fieldStart, r.fieldEnd)
            : field === ValueField.Bytes || validList(field, body, r.fieldStart, r.fieldEnd);
        if (!ok)
          throw this.badValue(body, nameStart, nameEnd, `field ${VALUE_FIELD_NAMES[field]} is malformed`);
      }
      kindStart = fieldStart;
      kindEnd = r.pos;
    }
    if (kindStart < 0) throw this.badValue(body, nameStart, nameEnd, "has no value set");
    this.setValues.push(kindStart, kindEnd);
  }

  private badValue(body: Uint8Array, nameStart: number, nameEnd: number, what: string): FeatureStoreError {
    let name: string;
    try {
      name = decodeUtf8(body, nameStart, nameEnd);
    } catch {
      name = "?";
    }
    return invalidArgument(`feature "${name}" ${what}`);
  }

  /** Writes the record parsed by `parseSet`, merging into the existing one unless `replace`. */
  private applySet(body: Uint8Array): void {
    const store = this.store;
    const rec = this.record;
    const names = this.setNames;
    const values = this.setValues;
    rec.reset();
    if (!this.replace) {
      const h = store.find(body, this.idStart, this.idEnd);
      if (h >= 0) this.copyEntriesExcept(h, body, names, rec);
    }
    for (let i = 0; i < names.count; i++) {
      const ns = names.starts[i]!;
      const ne = names.ends[i]!;
      let later = false;
      for (let j = i + 1; j < names.count && !later; j++)
        later = bytesEqual(body, ns, ne, body, names.starts[j]!, names.ends[j]!);
      if (later) continue; // a map's last entry for a key wins
      writeEntry(rec, body, ns, ne, values.starts[i]!, values.ends[i]!);
    }
    const ttl = this.ttlMs > 0 ? this.ttlMs : this.options.defaultTtlMs;
    store.write(body, this.idStart, this.idEnd, rec.view(), ttl);
  }

  /** Appends to `rec` the entries of record `h` whose names are not in `drop`; returns how many were dropped. */
  private copyEntriesExcept(h: number, body: Uint8Array, drop: Ranges, rec: ProtoWriter): number {
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    let dropped = 0;
    while (!w.done()) {
      const entryStart = this.nextEntry(w);
      let keep = true;
      for (let i = 0; i < drop.count && keep; i++)
        keep = !bytesEqual(arena, w.fieldStart, w.fieldEnd, body, drop.starts[i]!, drop.ends[i]!);
      if (keep) rec.raw(arena, entryStart, w.pos);
      else dropped++;
    }
    return dropped;
  }

  /** Points the walk reader at the stored record behind handle `h`. */
  private startWalk(h: number): ProtoReader {
    const off = this.store.offset(h);
    return this.walk.reset(this.store.arena(h), off, off + this.store.length(h));
  }

  /**
   * Steps over one canonical entry (`0x12 <len> 0x0a <len> name ...`, see the file comment):
   * returns where it starts, leaves `w.pos` at its end and fieldStart/fieldEnd on its name.
   */
  private nextEntry(w: ProtoReader): number {
    const entryStart = w.pos;
    w.tag();
    w.bytesRange();
    const entryEnd = w.fieldEnd;
    w.pos = w.fieldStart + 1;
    w.bytesRange();
    w.pos = entryEnd;
    return entryStart;
  }

  private batchSet(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    // Pass 1 validates every item so that an invalid one rejects the batch before anything is written.
    const items = this.ids;
    items.count = 0;
    const r = this.req.reset(body, start, end);
    while (!r.done()) {
      const tag = r.tag();
      if (tag === TAG_ITEM) {
        r.bytesRange();
        if (items.count === this.options.maxBatchItems)
          throw invalidArgument(`BatchSet takes at most ${this.options.maxBatchItems} items`);
        items.push(r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    for (let i = 0; i < items.count; i++) {
      try {
        this.parseSet(body, items.starts[i]!, items.ends[i]!);
      } catch (err) {
        const e = FeatureStoreError.from(err);
        throw new FeatureStoreError(e.code, `items[${i}]: ${e.message}`, { cause: err });
      }
    }
    for (let i = 0; i < items.count; i++) {
      this.parseSet(body, items.starts[i]!, items.ends[i]!);
      this.applySet(body);
    }
    if (items.count > 0) {
      out.tag(1, WireType.Varint);
      out.varint(items.count);
    }
  }

  private deleteFeatures(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    this.parseIdAndNames(body, start, end);
    const idStart = this.idStart;
    const idEnd = this.idEnd;
    const store = this.store;
    let deleted: boolean;
    if (this.names.count === 0) {
      deleted = store.remove(body, idStart, idEnd);
    } else {
      const h = store.find(body, idStart, idEnd);
      deleted = false;
      if (h >= 0) {
        const expiresAt = store.expiresAt(h);
        const rec = this.record;
        rec.reset();
        if (this.copyEntriesExcept(h, body, this.names, rec) > 0) {
          // The record keeps the expiry it had: deleting names is not a fresh write.
          const ttl = expiresAt === 0 ? 0 : Math.max(1, expiresAt - store.now());
          store.write(body, idStart, idEnd, rec.view(), ttl);
          deleted = true;
        }
      }
    }
    if (deleted) {
      out.byte((1 << 3) | WireType.Varint);
      out.byte(1);
    }
  }

  private checkId(body: Uint8Array, start: number, end: number): void {
    if (start < 0 || end === start) throw invalidArgument("entity_id must not be empty");
    if (end - start > this.options.maxEntityIdBytes)
      throw invalidArgument(
        `entity_id is ${end - start} bytes; the limit is ${this.options.maxEntityIdBytes}`,
      );
    if (!isValidUtf8(body, start, end)) throw invalidArgument("entity_id is not valid UTF-8");
  }
}

/** Expected wire type of each FeatureValue field, by field number. */
const VALUE_WIRE_TYPES: (number | undefined)[] = [];
VALUE_WIRE_TYPES[ValueField.Int] = WireType.Varint;
VALUE_WIRE_TYPES[ValueField.Double] = WireType.Fixed64;
VALUE_WIRE_TYPES[ValueField.String] = WireType.Bytes;
VALUE_WIRE_TYPES[ValueField.Bool] = WireType.Varint;
VALUE_WIRE_TYPES[ValueField.Bytes] = WireType.Bytes;
VALUE_WIRE_TYPES[ValueField.FloatList] = WireType.Bytes;
VALUE_WIRE_TYPES[ValueField.IntList] = WireType.Bytes;
VALUE_WIRE_TYPES[ValueField.StringList] = WireType.Bytes;

const VALUE_FIELD_NAMES = [
  "",
  "int_value",
  "double_value",
  "string_value",
  "bool_value",
  "bytes_value",
  "float_list",
  "int_list",
  "string_list",
];

const listReader = new ProtoReader();

/** Checks the structure of a FloatList, Int64List or StringList message. */
function validList(field: number, b: Uint8Array, start: number, end: number): boolean {
  const r = listReader.reset(b, start, end);
  try {
    while (!r.done()) {
      const tag = r.tag();
      const wt = tag & 7;
      if (tag >>> 3 !== 1) {
        r.skip(wt);
        continue;
      }
      if (field === ValueField.FloatList) {
        if (wt === WireType.Bytes) {
          r.bytesRange();
          if ((r.fieldEnd - r.fieldStart) % 4 !== 0) return false;
        } else if (wt === WireType.Fixed32) r.skip(wt);
        else return false;
      } else if (field === ValueField.IntList) {
        if (wt === WireType.Bytes) {
          r.bytesRange();
          const after = r.pos;
          r.reset(b, r.fieldStart, r.fieldEnd);
          while (!r.done()) r.varint();
          r.reset(b, after, end);
        } else if (wt === WireType.Varint) r.varint();
        else return false;
      } else {
        if (wt !== WireType.Bytes) return false;
        r.bytesRange();
        if (!isValidUtf8(b, r.fieldStart, r.fieldEnd)) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

/** Appends one canonical map entry: name from body[ns,ne), value field from body[vs,ve). */
function writeEntry(
  rec: ProtoWriter,
  body: Uint8Array,
  ns: number,
  ne: number,
  vs: number,
  ve: number,
): void {
  const nameLen = ne - ns;
  const valueLen = ve - vs;
  rec.byte((2 << 3) | WireType.Bytes);
  rec.varint(1 + varintSize(nameLen) + nameLen + 1 + varintSize(valueLen) + valueLen);
  rec.bytesField(1, body, ns, ne);
  rec.bytesField(2, body, vs, ve);
}
