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
 *
 * A stored record is canonical: one entry per name, each value one oneof field in its shortest
 * encoding with no unknown fields (see `canonicalValue`). A request's names are indexed once
 * per request (names.ts), so a projection, a merge and a partial delete each walk the record
 * once with one lookup per entry: work is linear in the request and the record, however many
 * names either has.
 *
 * Work per request is bounded by the request's size, MAX_FEATURE_NAMES, MAX_BATCH_ITEMS and
 * MAX_RESPONSE_BYTES (checked after each entity of an answer, so a request that would pass it
 * stops there); the stored bytes a projection may walk are bounded by SCAN_FACTOR times the
 * latter.
 */

import { ValueField } from "../codec/features.ts";
import { Method } from "../codec/frame.ts";
import { Code, FeatureStoreError, invalidArgument } from "../codec/status.ts";
import { VALUE_WIRE_TYPES } from "../codec/value.ts";
import { decodeUtf8, ProtoReader, ProtoWriter, varintSize, WireType } from "../codec/wire.ts";
import { isRemote, PENDING, type RecordReader, type RecordStore, type RemoteStore } from "../store/types.ts";
import { NameIndex, Ranges } from "./names.ts";
import { isValidUtf8 } from "./utf8.ts";

/**
 * An answer that waits for a remote store: a read whose entities were not all in the
 * near-cache, or a write (acknowledged by the store later). Once `ready` settles, `answer(out)`
 * appends the response message to `out` as `handle` would have, or returns another Deferred
 * (what a read waited for was invalidated again before it ran). `ready` rejects with the
 * FeatureStoreError that fails the request.
 */
export interface Deferred {
  readonly ready: Promise<unknown>;
  answer(out: ProtoWriter): Deferred | undefined;
}

/** How many times a read may find what it waited for gone again before it fails UNAVAILABLE. */
const MAX_READ_ROUNDS = 8;

/**
 * Waits for a deferred answer, writes it into `out` from `at` and returns `copy()`, run at once
 * after the answer is written: `out` may be shared, so the answer must be copied out before
 * anything else can run.
 */
export async function settleDeferred<T>(
  d: Deferred,
  out: ProtoWriter,
  at: number,
  copy: () => T | Promise<T>,
): Promise<T> {
  for (let round = 1; ; round++) {
    await d.ready;
    out.pos = at;
    const next = d.answer(out);
    if (next === undefined) return copy();
    if (round === MAX_READ_ROUNDS)
      throw new FeatureStoreError(
        Code.Unavailable,
        `the entities read were changed or evicted ${round} times while loading; retry`,
      );
    d = next;
  }
}

/** Tunables of the service layer. */
export interface ServiceOptions {
  /** TTL in ms applied when a write says 0; 0 = records never expire. Default 0. */
  defaultTtlMs: number;
  /** Longest entity id in UTF-8 bytes. Default 1024. */
  maxEntityIdBytes: number;
  /** Most entity ids in one BatchGet and items in one BatchSet. Default 10,000. */
  maxBatchItems: number;
  /** Most feature names in one request (projection, delete, one SetFeatures' features). Default 1,000. */
  maxFeatureNames: number;
  /** Most features one entity holds; a write past it is RESOURCE_EXHAUSTED. Default 10,000. */
  maxFeaturesPerEntity: number;
  /** Largest answer message, bytes; checked while it is built. Default 1 MiB. */
  maxResponseBytes: number;
}

export const DEFAULT_SERVICE_OPTIONS: ServiceOptions = {
  defaultTtlMs: 0,
  maxEntityIdBytes: 1024,
  maxBatchItems: 1_000,
  maxFeatureNames: 1_000,
  maxFeaturesPerEntity: 10_000,
  maxResponseBytes: 1024 * 1024,
};

const TAG_ID = (1 << 3) | WireType.Bytes; // entity_id in every request and GetFeaturesResponse
const TAG_NAMES = (2 << 3) | WireType.Bytes; // feature_names; also the features map field
const TAG_FOUND = (3 << 3) | WireType.Varint;
const TAG_TTL = (3 << 3) | WireType.Varint;
const TAG_REPLACE = (4 << 3) | WireType.Varint;
const TAG_ITEM = (1 << 3) | WireType.Bytes;
/** Largest ttl_ms: the cache's expiry clock is exact to 2^52 ms (about 142,000 years). */
export const MAX_TTL_MS = 2 ** 52;
/**
 * A projection may walk at most this many times MAX_RESPONSE_BYTES of stored records per
 * request (a BatchGet of 10,000 ids of 64 KiB records asking for one name would walk 655 MB).
 */
export const SCAN_FACTOR = 8;
export class FeatureService {
  readonly options: ServiceOptions;
  private readonly req = new ProtoReader();
  private readonly entry = new ProtoReader();
  private readonly walk = new ProtoReader();
  private readonly walk2 = new ProtoReader();
  /** Requested feature names (GetFeatures, BatchGet, DeleteFeatures). */
  private readonly names = new Ranges();
  /** The index of `names` or of `setNames`, whichever the request being handled parsed last. */
  private readonly index = new NameIndex();
  private matched = new Uint8Array(64);
  /** Entity ids of a BatchGet, items of a BatchSet. */
  private readonly ids = new Ranges();
  /** Features of the SetFeatures being applied: names (in the body) and canonical values (in `values`). */
  private readonly setNames = new Ranges();
  private readonly setValues = new Ranges();
  /** Canonical value fields of the SetFeatures being applied. */
  private readonly values = new ProtoWriter(4096);
  /** Oneof occurrences of the FeatureValue being canonicalised (field number in `extra`). */
  private readonly occurrences = new Ranges();
  /** The `value` fields of the map entry being parsed (a repeated message field merges). */
  private readonly valueParts = new Ranges();
  private idStart = 0;
  private idEnd = 0;
  private ttlMs = 0;
  private replace = false;
  /** Stored bytes walked by projections in the current request (bounded by SCAN_FACTOR). */
  private scanned = 0;
  /** The entity of the answer being built, and how many it has (for limit messages). */
  private entity = 1;
  private entities = 1;
  /** Where the answer being built starts in its writer: records are checked against MAX_RESPONSE_BYTES before they are copied. */
  private answerStart = 0;
  /** The record being built by a write. */
  private readonly record = new ProtoWriter(4096);
  /** What `copyEntriesExcept` returns, reused. */
  private readonly counts = { kept: 0, dropped: 0 };
  /** The store when it is remote (decided once): writes go to it as changes, reads may wait. */
  private readonly remote: RemoteStore | null;
  /** The store when it is local (decided once): writes are whole records, merged here. */
  private readonly local: RecordStore | null;
  /** Reads, on either. */
  readonly store: RecordReader;
  /** Set by a read that met an entity being loaded: the answer is deferred. */
  private waiting = false;

  constructor(store: RecordStore | RemoteStore, options: Partial<ServiceOptions> = {}) {
    this.options = { ...DEFAULT_SERVICE_OPTIONS, ...options };
    this.store = store;
    this.remote = isRemote(store) ? store : null;
    this.local = isRemote(store) ? null : store;
  }

  /**
   * Handles one request: `body[start,end)` is the request message of `method`; the response
   * message is appended to `out`. Throws FeatureStoreError; `out` may then hold a partial
   * answer, which the caller discards (rewind to where it started). With a remote store the
   * answer may come later: a Deferred is returned (`out` then holds nothing to keep), and the
   * request's bytes may be reused at once.
   */
  handle(
    method: number,
    body: Uint8Array,
    start: number,
    end: number,
    out: ProtoWriter,
  ): Deferred | undefined {
    switch (method) {
      case Method.GetFeatures:
        this.getFeatures(body, start, end, out);
        return this.waiting ? this.rerun(method, body, start, end) : undefined;
      case Method.BatchGet:
        this.batchGet(body, start, end, out);
        return this.waiting ? this.rerun(method, body, start, end) : undefined;
      case Method.SetFeatures:
        this.parseSet(body, start, end);
        if (this.remote !== null) return this.remoteSet(this.remote, body, -1);
        this.applySet(body);
        return;
      case Method.BatchSet:
        return this.batchSet(body, start, end, out);
      case Method.DeleteFeatures:
        return this.deleteFeatures(body, start, end, out);
      case Method.Ping:
        return;
      default:
        throw new FeatureStoreError(Code.Unimplemented, `unknown method ${method}`);
    }
  }

  // ---- reads ------------------------------------------------------------------------------

  /** A read that met entities being loaded: runs again on a copy of the request once they landed. */
  private rerun(method: number, body: Uint8Array, start: number, end: number): Deferred {
    this.waiting = false;
    const copy = body.slice(start, end);
    return {
      ready: this.remote!.loaded(),
      answer: (out) => this.handle(method, copy, 0, copy.length, out),
    };
  }

  private getFeatures(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    this.waiting = false;
    this.parseIdAndNames(body, start, end);
    this.scanned = 0;
    this.entity = this.entities = 1;
    this.answerStart = out.pos;
    this.writeResult(body, this.idStart, this.idEnd, out);
    this.checkAnswerSize(out.pos - this.answerStart, 1, 1);
  }

  /**
   * Parses a GetFeaturesRequest or DeleteFeaturesRequest (the same shape: entity_id = 1,
   * feature_names = 2) into idStart/idEnd and `names` (indexed), and validates the id.
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
    this.index.build(body, this.names);
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
          throw invalidArgument(
            `BatchGet takes at most ${this.options.maxBatchItems} entity ids (MAX_BATCH_ITEMS)`,
          );
        ids.push(r.fieldStart, r.fieldEnd);
      } else if (tag === TAG_NAMES) {
        r.bytesRange();
        this.pushName(body, r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    for (let i = 0; i < ids.count; i++) this.checkId(body, ids.starts[i]!, ids.ends[i]!);
    this.index.build(body, this.names);
    this.scanned = 0;
    this.waiting = false;
    const answerStart = out.pos;
    this.answerStart = answerStart;
    let hits = 0;
    for (let i = 0; i < ids.count; i++) {
      const at = out.beginLength(1);
      this.entity = i + 1;
      this.entities = ids.count;
      if (this.writeResult(body, ids.starts[i]!, ids.ends[i]!, out)) hits++;
      out.endLength(at);
      this.checkAnswerSize(out.pos - answerStart, i + 1, ids.count);
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

  /** RESOURCE_EXHAUSTED once an answer passes MAX_RESPONSE_BYTES, after `done` of `total` entities. */
  private checkAnswerSize(bytes: number, done: number, total: number): void {
    const limit = this.options.maxResponseBytes;
    if (bytes > limit)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the answer passes MAX_RESPONSE_BYTES (${limit} bytes) at entity ${done} of ${total}: ` +
          "ask for fewer entities or features per request",
      );
    if (this.scanned > limit * SCAN_FACTOR)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the projection walks more than ${limit * SCAN_FACTOR} bytes of stored records ` +
          `(${SCAN_FACTOR} x MAX_RESPONSE_BYTES) by entity ${done} of ${total}: ask for fewer entities per request`,
      );
  }

  private pushName(body: Uint8Array, start: number, end: number): void {
    if (this.names.count === this.options.maxFeatureNames)
      throw invalidArgument(
        `a request names at most ${this.options.maxFeatureNames} features (MAX_FEATURE_NAMES)`,
      );
    if (!isValidUtf8(body, start, end)) throw invalidArgument("feature name is not valid UTF-8");
    this.names.push(start, end);
  }

  /** Writes one GetFeaturesResponse for the id at body[idStart,idEnd); returns found. */
  private writeResult(body: Uint8Array, idStart: number, idEnd: number, out: ProtoWriter): boolean {
    const store = this.store;
    const names = this.names;
    out.bytesField(1, body, idStart, idEnd);
    const h = store.find(body, idStart, idEnd);
    if (h === PENDING) {
      // Every miss of the request is started before it waits: one round trip for them all.
      this.waiting = true;
      return false;
    }
    if (h < 0) {
      for (let i = 0; i < names.count; i++) out.bytesField(4, body, names.starts[i]!, names.ends[i]!);
      return false;
    }
    if (names.count === 0) {
      const len = store.length(h);
      // Checked before the copy: the writer never grows more than one small field past the limit.
      this.checkAnswerSize(out.pos + len - this.answerStart, this.entity, this.entities);
      out.ensure(len);
      out.pos += store.copyTo(h, out.bytes, out.pos);
    } else {
      this.project(h, body, out);
    }
    out.byte(TAG_FOUND);
    out.byte(1);
    return true;
  }

  /**
   * Copies the entries of record `h` whose names were requested; lists the others as missing,
   * in request order. One walk of the record, one index lookup per entry; it stops once every
   * requested name is found.
   */
  private project(h: number, body: Uint8Array, out: ProtoWriter): void {
    const { starts, ends, count: n } = this.names;
    const index = this.index;
    if (this.matched.length < n) this.matched = new Uint8Array(n * 2);
    const matched = this.matched;
    matched.fill(0, 0, n);
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    const walkStart = w.pos;
    let found = 0;
    while (found < index.unique && !w.done()) {
      const entryStart = this.nextEntry(w);
      const k = index.lookup(arena, w.fieldStart, w.fieldEnd);
      if (k < 0) continue;
      out.raw(arena, entryStart, w.pos);
      matched[k] = 1;
      found++;
    }
    this.scanned += w.pos - walkStart;
    const first = index.first;
    for (let i = 0; i < n; i++) if (matched[first[i]!] === 0) out.bytesField(4, body, starts[i]!, ends[i]!);
  }

  // ---- writes -----------------------------------------------------------------------------

  /**
   * Parses and validates one SetFeaturesRequest into the scratch state (names indexed, values
   * canonical in `values`); writes nothing to the store.
   */
  private parseSet(body: Uint8Array, start: number, end: number): void {
    const r = this.req.reset(body, start, end);
    this.setNames.count = 0;
    this.setValues.count = 0;
    this.values.reset();
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
          if (this.setNames.count === this.options.maxFeatureNames)
            throw invalidArgument(
              `a SetFeatures carries at most ${this.options.maxFeatureNames} features (MAX_FEATURE_NAMES)`,
            );
          this.parseEntry(body, r.fieldStart, r.fieldEnd);
          break;
        case TAG_TTL:
          this.ttlMs = readTtl(r);
          break;
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
    this.index.build(body, this.setNames);
  }

  /** Parses one map entry; records the name range and writes its canonical value to `values`. */
  private parseEntry(body: Uint8Array, start: number, end: number): void {
    const r = this.entry.reset(body, start, end);
    const parts = this.valueParts;
    parts.count = 0;
    let nameStart = start;
    let nameEnd = start;
    while (!r.done()) {
      const tag = r.tag();
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        nameStart = r.fieldStart;
        nameEnd = r.fieldEnd;
      } else if (tag === ((2 << 3) | WireType.Bytes)) {
        // A message field given twice is merged, as if its encodings were concatenated.
        r.bytesRange();
        parts.push(r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    if (!isValidUtf8(body, nameStart, nameEnd)) throw invalidArgument("feature name is not valid UTF-8");
    if (nameEnd === nameStart) throw invalidArgument("feature name must not be empty");
    if (parts.count === 0) throw this.badValue(body, nameStart, nameEnd, "has no value");
    const valueStart = this.values.pos;
    this.canonicalValue(body, nameStart, nameEnd);
    this.setValues.push(valueStart, this.values.pos);
    this.setNames.push(nameStart, nameEnd);
  }

  /**
   * Validates the FeatureValue whose encoding is the concatenation of `valueParts` and appends
   * its canonical form to `values`: the oneof member a conformant decoder ends with, alone, in
   * its shortest encoding. As protobuf reads it: of several members the last wins, a list given
   * several times in a row is merged (its items concatenated), unknown fields are dropped
   * (after their tags are checked).
   */
  private canonicalValue(body: Uint8Array, nameStart: number, nameEnd: number): void {
    const parts = this.valueParts;
    const occ = this.occurrences;
    occ.count = 0;
    const r = this.walk;
    for (let p = 0; p < parts.count; p++) {
      r.reset(body, parts.starts[p]!, parts.ends[p]!);
      while (!r.done()) {
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
        const payload = r.pos;
        r.skip(wt);
        occ.push(wt === WireType.Bytes ? r.fieldStart : payload, r.pos, field);
      }
    }
    if (occ.count === 0) throw this.badValue(body, nameStart, nameEnd, "has no value set");
    const last = occ.count - 1;
    const kind = occ.extra[last]!;
    const v = this.values;
    try {
      switch (kind) {
        case ValueField.Int:
          v.byte((ValueField.Int << 3) | WireType.Varint);
          copyVarint(body, occ.starts[last]!, v);
          return;
        case ValueField.Bool:
          v.byte((ValueField.Bool << 3) | WireType.Varint);
          v.byte(isZeroVarint(body, occ.starts[last]!, occ.ends[last]!) ? 0 : 1);
          return;
        case ValueField.Double:
          v.byte((ValueField.Double << 3) | WireType.Fixed64);
          v.raw(body, occ.starts[last]!, occ.ends[last]!);
          return;
        case ValueField.String:
          if (!isValidUtf8(body, occ.starts[last]!, occ.ends[last]!))
            throw invalidArgument("string_value is not valid UTF-8");
          v.bytesField(ValueField.String, body, occ.starts[last]!, occ.ends[last]!);
          return;
        case ValueField.Bytes:
          v.bytesField(ValueField.Bytes, body, occ.starts[last]!, occ.ends[last]!);
          return;
      }
      // A list: the run of occurrences of this member since another member was last set.
      let first = last;
      while (first > 0 && occ.extra[first - 1] === kind) first--;
      const at = v.beginLength(kind);
      const inner = kind === ValueField.StringList ? -1 : v.beginLength(1);
      for (let i = first; i <= last; i++) this.canonicalList(kind, body, occ.starts[i]!, occ.ends[i]!);
      if (inner >= 0) {
        if (v.pos === inner + 1)
          v.pos = inner - 1; // an empty packed field is omitted
        else v.endLength(inner);
      }
      v.endLength(at);
    } catch (err) {
      const e = FeatureStoreError.from(err);
      throw this.badValue(
        body,
        nameStart,
        nameEnd,
        `field ${VALUE_FIELD_NAMES[kind]} is malformed: ${e.message}`,
      );
    }
  }

  /**
   * Appends the items of a FloatList, Int64List or StringList message in body[start,end) to
   * `values`: floats and ints as the payload of one packed field (opened by the caller),
   * strings as repeated fields. Items may arrive packed or not; other fields are dropped.
   */
  private canonicalList(kind: number, body: Uint8Array, start: number, end: number): void {
    const r = this.walk2.reset(body, start, end);
    const v = this.values;
    while (!r.done()) {
      const tag = r.tag();
      const wt = tag & 7;
      if (tag >>> 3 !== 1) {
        r.skip(wt);
        continue;
      }
      if (kind === ValueField.FloatList) {
        if (wt === WireType.Bytes) {
          r.bytesRange();
          if ((r.fieldEnd - r.fieldStart) % 4 !== 0)
            throw invalidArgument("packed floats are not a multiple of 4 bytes");
          v.raw(body, r.fieldStart, r.fieldEnd);
        } else if (wt === WireType.Fixed32) {
          const at = r.pos;
          r.skip(wt);
          v.raw(body, at, r.pos);
        } else throw invalidArgument(`wire type ${wt} for a float`);
      } else if (kind === ValueField.IntList) {
        if (wt === WireType.Bytes) {
          r.bytesRange();
          let p = r.fieldStart;
          while (p < r.fieldEnd) p = copyVarint(body, p, v, r.fieldEnd);
        } else if (wt === WireType.Varint) {
          r.pos = copyVarint(body, r.pos, v, r.end);
        } else throw invalidArgument(`wire type ${wt} for an int64`);
      } else {
        if (wt !== WireType.Bytes) throw invalidArgument(`wire type ${wt} for a string`);
        r.bytesRange();
        if (!isValidUtf8(body, r.fieldStart, r.fieldEnd))
          throw invalidArgument("a string is not valid UTF-8");
        v.bytesField(1, body, r.fieldStart, r.fieldEnd);
      }
    }
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

  /**
   * Writes the record parsed by `parseSet`: the stored entries the request does not name
   * (unless `replace`), then the request's features, the last entry for a name winning.
   */
  private applySet(body: Uint8Array): void {
    const store = this.local!; // local stores only: a remote one takes the change (remoteSet)
    const rec = this.record;
    const { starts, ends, count: n } = this.setNames;
    const { first, last } = this.index;
    const vals = this.values.bytes;
    const vStarts = this.setValues.starts;
    const vEnds = this.setValues.ends;
    rec.reset();
    let features = 0;
    if (!this.replace) {
      const h = store.find(body, this.idStart, this.idEnd);
      if (h >= 0) features = this.copyEntriesExcept(h, rec).kept;
    }
    for (let i = 0; i < n; i++) {
      if (last[first[i]!] !== i) continue; // a later entry for this name wins
      writeEntry(rec, body, starts[i]!, ends[i]!, vals, vStarts[i]!, vEnds[i]!);
      features++;
    }
    if (features > this.options.maxFeaturesPerEntity)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the entity would hold ${features} features; the limit is ${this.options.maxFeaturesPerEntity} (MAX_FEATURES_PER_ENTITY)`,
      );
    const ttl = this.ttlMs > 0 ? this.ttlMs : this.options.defaultTtlMs;
    store.write(body, this.idStart, this.idEnd, rec.view(), ttl);
  }

  /** Appends to `rec` the entries of record `h` whose names the request's index does not hold. */
  private copyEntriesExcept(h: number, rec: ProtoWriter): { kept: number; dropped: number } {
    const index = this.index;
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    const counts = this.counts;
    counts.kept = 0;
    counts.dropped = 0;
    while (!w.done()) {
      const entryStart = this.nextEntry(w);
      if (index.lookup(arena, w.fieldStart, w.fieldEnd) >= 0) counts.dropped++;
      else {
        rec.raw(arena, entryStart, w.pos);
        counts.kept++;
      }
    }
    return counts;
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

  private batchSet(body: Uint8Array, start: number, end: number, out: ProtoWriter): Deferred | undefined {
    // Pass 1 validates every item so that an invalid one rejects the batch before anything is written.
    const items = this.ids;
    items.count = 0;
    const r = this.req.reset(body, start, end);
    while (!r.done()) {
      const tag = r.tag();
      if (tag === TAG_ITEM) {
        r.bytesRange();
        if (items.count === this.options.maxBatchItems)
          throw invalidArgument(
            `BatchSet takes at most ${this.options.maxBatchItems} items (MAX_BATCH_ITEMS)`,
          );
        items.push(r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    const n = items.count;
    let i = 0;
    try {
      for (; i < n; i++) this.parseSet(body, items.starts[i]!, items.ends[i]!);
    } catch (err) {
      throw atItemError(i, err);
    }
    if (this.remote !== null) {
      // Sent together (pipelined, grouped by node by the store); answered once all are acknowledged.
      const acks: Promise<unknown>[] = new Array(n);
      for (let k = 0; k < n; k++) {
        this.parseSet(body, items.starts[k]!, items.ends[k]!);
        acks[k] = this.remoteSet(this.remote, body, k).ready;
      }
      return { ready: Promise.all(acks), answer: (o) => writeCount(o, n) };
    }
    try {
      for (i = 0; i < n; i++) {
        this.parseSet(body, items.starts[i]!, items.ends[i]!);
        this.applySet(body);
      }
    } catch (err) {
      throw atItemError(i, err);
    }
    return writeCount(out, n);
  }

  /**
   * Sends the SetFeatures parsed by `parseSet` to a remote store as the change it asks for:
   * its features (the last entry for a name winning), merge or replace, and the TTL. `item` is
   * the BatchSet item (-1 for a SetFeatures), named in the error.
   */
  private remoteSet(store: RemoteStore, body: Uint8Array, item: number): Deferred {
    const { starts, ends, count: n } = this.setNames;
    const { first, last } = this.index;
    const vals = this.values.bytes;
    const vStarts = this.setValues.starts;
    const vEnds = this.setValues.ends;
    const fields: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      if (last[first[i]!] !== i) continue;
      fields.push(body.slice(starts[i]!, ends[i]!), vals.slice(vStarts[i]!, vEnds[i]!));
    }
    if (fields.length / 2 > this.options.maxFeaturesPerEntity)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `${item >= 0 ? `items[${item}]: ` : ""}the entity would hold ${fields.length / 2} features; ` +
          `the limit is ${this.options.maxFeaturesPerEntity} (MAX_FEATURES_PER_ENTITY)`,
      );
    const ttl = this.ttlMs > 0 ? this.ttlMs : this.options.defaultTtlMs;
    let ack: Promise<unknown> = store.setFeatures(
      body.slice(this.idStart, this.idEnd),
      fields,
      this.replace,
      ttl,
    );
    if (item >= 0) ack = ack.catch((err) => Promise.reject(atItemError(item, err)));
    return { ready: ack, answer: noAnswer };
  }

  private deleteFeatures(
    body: Uint8Array,
    start: number,
    end: number,
    out: ProtoWriter,
  ): Deferred | undefined {
    this.parseIdAndNames(body, start, end);
    const idStart = this.idStart;
    const idEnd = this.idEnd;
    if (this.remote !== null) {
      const { starts, ends, count } = this.names;
      let names: Uint8Array[] | null = null;
      if (count > 0) {
        names = new Array(count);
        for (let i = 0; i < count; i++) names[i] = body.slice(starts[i]!, ends[i]!);
      }
      let deleted = false;
      const ready = this.remote.deleteFeatures(body.slice(idStart, idEnd), names).then((d) => {
        deleted = d;
      });
      return { ready, answer: (o) => writeDeleted(o, deleted) };
    }
    const store = this.local!;
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
        if (this.copyEntriesExcept(h, rec).dropped > 0) {
          // The record keeps the expiry it had: deleting names is not a fresh write.
          const ttl = expiresAt === 0 ? 0 : Math.max(1, expiresAt - store.now());
          store.write(body, idStart, idEnd, rec.view(), ttl);
          deleted = true;
        }
      }
    }
    return writeDeleted(out, deleted);
  }

  private checkId(body: Uint8Array, start: number, end: number): void {
    if (start < 0 || end === start) throw invalidArgument("entity_id must not be empty");
    if (end - start > this.options.maxEntityIdBytes)
      throw invalidArgument(
        `entity_id is ${end - start} bytes; the limit is ${this.options.maxEntityIdBytes} (MAX_ENTITY_ID_BYTES)`,
      );
    if (!isValidUtf8(body, start, end)) throw invalidArgument("entity_id is not valid UTF-8");
  }
}

/** BatchSetResponse.count (field 1), when not 0. */
function writeCount(out: ProtoWriter, n: number): undefined {
  if (n > 0) {
    out.tag(1, WireType.Varint);
    out.varint(n);
  }
  return undefined;
}

/** DeleteFeaturesResponse.deleted (field 1), when true. */
function writeDeleted(out: ProtoWriter, deleted: boolean): undefined {
  if (deleted) {
    out.byte((1 << 3) | WireType.Varint);
    out.byte(1);
  }
  return undefined;
}

/** The answer of a write with nothing to say (SetFeaturesResponse is empty). */
function noAnswer(): undefined {
  return undefined;
}

/** The error of BatchSet item `i`: the item named in the message, the code kept. */
function atItemError(i: number, err: unknown): FeatureStoreError {
  const e = FeatureStoreError.from(err);
  return new FeatureStoreError(e.code, `items[${i}]: ${e.message}`, { cause: err });
}

/** Reads ttl_ms (int64): negative, or beyond what the expiry clock holds, is INVALID_ARGUMENT. */
function readTtl(r: ProtoReader): number {
  const ttl = r.int64();
  if (ttl < 0) throw invalidArgument(`ttl_ms must be >= 0; got ${ttl}`);
  if (ttl > MAX_TTL_MS) throw invalidArgument(`ttl_ms must be at most ${MAX_TTL_MS} (2^52 ms); got ${ttl}`);
  return Number(ttl);
}

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

/**
 * Appends the varint at b[at] to `w` in its shortest form and returns where it ended. A
 * 64-bit varint takes at most 10 bytes, the tenth holding bit 63 only: higher bits are dropped
 * (as decoders do), and zero groups a writer padded with are removed, so equal values are
 * stored as equal bytes. Longer or truncated varints are INVALID_ARGUMENT.
 */
function copyVarint(b: Uint8Array, at: number, w: ProtoWriter, end = b.length): number {
  let n = 0;
  while (true) {
    if (at + n >= end) throw invalidArgument("truncated varint");
    if (n === 10) throw invalidArgument("varint longer than 10 bytes");
    if (b[at + n++]! < 0x80) break;
  }
  const stop = at + n;
  // Significant groups: the last one with a non-zero payload (the tenth keeps bit 63 only).
  let len = n;
  while (len > 1 && (len === 10 ? b[at + 9]! & 1 : b[at + len - 1]! & 0x7f) === 0) len--;
  w.ensure(len);
  const o = w.bytes;
  let p = w.pos;
  for (let i = 0; i < len - 1; i++) o[p++] = b[at + i]! | 0x80;
  o[p++] = len === 10 ? b[at + 9]! & 1 : b[at + len - 1]! & 0x7f;
  w.pos = p;
  return stop;
}

/** True when the varint in b[start,end) (already bounds-checked) is 0. */
function isZeroVarint(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if ((b[i]! & 0x7f) !== 0) return false;
  return true;
}

/** Appends one canonical map entry: the name from body[ns,ne), the value field from vals[vs,ve). */
function writeEntry(
  rec: ProtoWriter,
  body: Uint8Array,
  ns: number,
  ne: number,
  vals: Uint8Array,
  vs: number,
  ve: number,
): void {
  const nameLen = ne - ns;
  const valueLen = ve - vs;
  rec.byte((2 << 3) | WireType.Bytes);
  rec.varint(1 + varintSize(nameLen) + nameLen + 1 + varintSize(valueLen) + valueLen);
  rec.bytesField(1, body, ns, ne);
  rec.bytesField(2, vals, vs, ve);
}
