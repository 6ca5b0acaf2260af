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
import {
  recordFreshUntil,
  TAG_EVENT_TIME,
  TAG_MAX_AGE,
  valueEventTime,
  valueMaxAge,
} from "../codec/value-meta.ts";
import {
  bytesEqual,
  decodeUtf8,
  ProtoReader,
  ProtoWriter,
  utf8Slice,
  varintSize,
  WireType,
} from "../codec/wire.ts";
import type { Logger } from "../log/index.ts";
import {
  isRemote,
  PENDING,
  type PrefixDrop,
  type RecordReader,
  type RecordStore,
  type RemoteStore,
} from "../store/types.ts";
import {
  checkSetName,
  POINTER_NAMES,
  type Pointer,
  pointerChange,
  pointerKey,
  pointerValues,
  readPointer,
  versionPrefix,
  writeSetInfo,
} from "./feature-sets.ts";
import { NameIndex, Ranges } from "./names.ts";
import {
  aggregate,
  applyUpdate,
  checkSpec,
  type ParsedUpdate,
  SKIPPED,
  UpdateOp,
  VALUE_WINDOW,
} from "./ops.ts";
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
  /** How far ahead of the server's clock a write's event time may be, ms. Default 60,000. */
  maxEventTimeSkewMs: number;
  /** Most tiles a windowed feature keeps (retention_ms / bucket_ms). Default 4,096. */
  maxWindowTiles: number;
  /** Largest keep_last of an Append. Default 10,000. */
  maxListItems: number;
  /** Records a dropped version frees per step (one step per event-loop turn). Default 1,000. */
  dropStepRecords: number;
  /**
   * The clock of event times, max ages and windows, ms since the epoch. Default: the store's
   * (`store.now()`, the clock of its TTLs). Tests inject one; Redis keeps TTLs on its own clock.
   */
  clock?: () => number;
  /**
   * Where a version drop that failed is reported (it stays listed as dropping, and is resumed
   * by the next DropVersion or GetFeatureSet of its set). Default: nowhere.
   */
  logger?: Logger;
}

export const DEFAULT_SERVICE_OPTIONS: ServiceOptions = {
  defaultTtlMs: 0,
  maxEntityIdBytes: 1024,
  maxBatchItems: 1_000,
  maxFeatureNames: 1_000,
  maxFeaturesPerEntity: 10_000,
  maxResponseBytes: 1024 * 1024,
  maxEventTimeSkewMs: 60_000,
  maxWindowTiles: 4096,
  maxListItems: 10_000,
  dropStepRecords: 1000,
};

const TAG_ID = (1 << 3) | WireType.Bytes; // entity_id in every request and GetFeaturesResponse
const TAG_NAMES = (2 << 3) | WireType.Bytes; // feature_names; also the features map field
const TAG_FOUND = (3 << 3) | WireType.Varint;
const TAG_TTL = (3 << 3) | WireType.Varint;
const TAG_REPLACE = (4 << 3) | WireType.Varint;
const TAG_ITEM = (1 << 3) | WireType.Bytes;
const TAG_MAX_AGE_REQ = (3 << 3) | WireType.Varint; // GetFeatures/BatchGet max_age_ms
const TAG_WINDOWS = (4 << 3) | WireType.Bytes;
const TAG_SET = (5 << 3) | WireType.Bytes; // feature_set in reads and writes
const TAG_VERSION = (6 << 3) | WireType.Bytes;
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
  /** The server's clock for the request being handled (read once, when it needs it; 0 = not yet). */
  private now = 0;
  /** The read's max age (0 = none) and window queries (name ranges; window_ms in `windowMs`). */
  private maxAge = 0;
  private readonly windows = new Ranges();
  private windowMs = new Float64Array(16);
  /** Names found stale by the answer being built (ranges into the record). */
  private readonly staleNames = new Ranges();
  /** The request's feature set and version ("" = none) and its versions' key prefix (null = plain ids). */
  private setName = "";
  private version = "";
  private prefix: Uint8Array | null = null;
  private readonly prefixes = new Map<string, Uint8Array>();
  /** The key of the entity being handled when it lives in a version: prefix + id. */
  private readonly keys = new ProtoWriter(1200);
  private keyBuf: Uint8Array = this.keys.bytes;
  private keyStart = 0;
  private keyEnd = 0;
  /** Event time of each value of the SetFeatures being applied, by entry (`setNames` order). */
  private setTimes = new Float64Array(64);
  /** 1 for each entry of the SetFeatures being applied that a newer stored value kept out. */
  private skipped = new Uint8Array(64);
  /** What the FeatureValue being canonicalised said: event_time_ms, max_age_ms; where its oneof field starts in `values`. */
  private valueTime = 0;
  private valueAge = 0;
  private oneofStart = 0;
  /** Versions being dropped by this server, by "set\0version". */
  private readonly drops = new Map<string, Promise<void>>();
  /** The clock of event times and freshness (ServiceOptions.clock). */
  private readonly time: () => number;
  /** True when a value of the SetFeatures being applied has a max age. */
  private anyMaxAge = false;
  /** Set by `resolveWrite` on a remote store whose feature-set pointer is loading. */
  private versionCheck: Promise<void> | null = null;

  constructor(store: RecordStore | RemoteStore, options: Partial<ServiceOptions> = {}) {
    this.options = { ...DEFAULT_SERVICE_OPTIONS, ...options };
    this.store = store;
    this.remote = isRemote(store) ? store : null;
    this.local = isRemote(store) ? null : store;
    this.time = this.options.clock ?? (() => store.now());
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
    this.now = 0;
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
        this.writeSkipped(body, out, 1);
        return;
      case Method.BatchSet:
        return this.batchSet(body, start, end, out);
      case Method.DeleteFeatures:
        return this.deleteFeatures(body, start, end, out);
      case Method.UpdateFeatures:
        return this.updateFeatures(body, start, end, out);
      case Method.PublishVersion:
      case Method.RollbackVersion:
      case Method.DropVersion:
        return this.changeFeatureSet(method, body, start, end, out);
      case Method.GetFeatureSet:
        this.getFeatureSet(body, start, end, out);
        return this.waiting ? this.rerun(method, body, start, end) : undefined;
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

  /** The server's clock, read once per request (0 until a request needs it). */
  private clock(): number {
    if (this.now === 0) this.now = this.time();
    return this.now;
  }

  private getFeatures(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    this.waiting = false;
    this.parseIdAndNames(body, start, end);
    if (!this.resolveRead()) return;
    this.scanned = 0;
    this.entity = this.entities = 1;
    this.answerStart = out.pos;
    this.writeResult(body, this.idStart, this.idEnd, out);
    if (this.prefix !== null) out.stringField(8, this.version);
    this.checkAnswerSize(out.pos - this.answerStart, 1, 1);
  }

  /**
   * Parses a GetFeaturesRequest or DeleteFeaturesRequest (the same shape: entity_id = 1,
   * feature_names = 2, feature_set = 5, version = 6; reads also max_age_ms = 3, windows = 4)
   * into idStart/idEnd, `names` (indexed), the read options, and validates the id.
   */
  private parseIdAndNames(body: Uint8Array, start: number, end: number): void {
    const r = this.req.reset(body, start, end);
    this.names.count = 0;
    this.resetReadOptions();
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
      } else if (!this.readOption(tag, body, r)) r.skip(tag & 7);
    }
    this.checkId(body, idStart, idEnd);
    this.idStart = idStart;
    this.idEnd = idEnd;
    this.index.build(body, this.names);
  }

  private resetReadOptions(): void {
    this.maxAge = 0;
    this.windows.count = 0;
    this.setName = "";
    this.version = "";
    this.prefix = null;
  }

  /** Reads max_age_ms, windows, feature_set or version (fields 3-6 of both reads); false for other tags. */
  private readOption(tag: number, body: Uint8Array, r: ProtoReader): boolean {
    switch (tag) {
      case TAG_MAX_AGE_REQ: {
        const v = r.int64();
        if (typeof v !== "number" || v < 0 || v > MAX_TTL_MS)
          throw invalidArgument(`max_age_ms must be in [0, 2^52]; got ${v}`);
        this.maxAge = v;
        return true;
      }
      case TAG_WINDOWS:
        r.bytesRange();
        this.parseWindowQuery(body, r.fieldStart, r.fieldEnd);
        return true;
      case TAG_SET:
        r.bytesRange();
        this.setName = utf8Slice(body, r.fieldStart, r.fieldEnd);
        return true;
      case TAG_VERSION:
        r.bytesRange();
        this.version = utf8Slice(body, r.fieldStart, r.fieldEnd);
        return true;
      default:
        return false;
    }
  }

  /** One WindowQuery { feature = 1, window_ms = 2 }: the name's range and window kept. */
  private parseWindowQuery(body: Uint8Array, start: number, end: number): void {
    const r = this.entry.reset(body, start, end);
    let ns = start;
    let ne = start;
    let ms: number | bigint = 0;
    while (!r.done()) {
      const tag = r.tag();
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        ns = r.fieldStart;
        ne = r.fieldEnd;
      } else if (tag === ((2 << 3) | WireType.Varint)) ms = r.int64();
      else r.skip(tag & 7);
    }
    if (ne === ns) throw invalidArgument("a window query needs a feature name");
    if (!isValidUtf8(body, ns, ne)) throw invalidArgument("feature name is not valid UTF-8");
    if (typeof ms !== "number" || ms <= 0 || ms > MAX_TTL_MS)
      throw this.badValue(body, ns, ne, `window_ms must be in (0, 2^52]; got ${ms}`);
    const w = this.windows;
    if (w.count === this.options.maxFeatureNames)
      throw invalidArgument(
        `a request asks for at most ${this.options.maxFeatureNames} windows (MAX_FEATURE_NAMES)`,
      );
    if (this.windowMs.length === w.count) {
      const g = new Float64Array(w.count * 2);
      g.set(this.windowMs);
      this.windowMs = g;
    }
    this.windowMs[w.count] = ms;
    w.push(ns, ne);
  }

  /**
   * Decides which keys the read's entities live under: the plain ids, or a feature set's version
   * (given, or the published one, read from the set's pointer once for the whole request).
   * False when the pointer is being loaded from a remote store (the request waits).
   */
  private resolveRead(): boolean {
    if (this.setName === "") {
      if (this.version !== "") throw invalidArgument("version needs feature_set");
      return true;
    }
    checkSetName(this.setName, "feature_set");
    if (this.version === "") {
      const p = this.readPointerNow(this.setName);
      if (p === null) {
        this.waiting = true;
        return false;
      }
      if (p.current === "")
        throw new FeatureStoreError(
          Code.FailedPrecondition,
          `feature set "${this.setName}" has no published version`,
        );
      this.version = p.current;
    } else checkSetName(this.version, "version");
    this.prefix = this.prefixOf(this.setName, this.version);
    return true;
  }

  /** The key prefix of a version, encoded once per name pair. */
  private prefixOf(set: string, version: string): Uint8Array {
    const k = `${set}\u0000${version}`;
    let p = this.prefixes.get(k);
    if (p === undefined) {
      if (this.prefixes.size > 1024) this.prefixes.clear();
      p = versionPrefix(set, version);
      this.prefixes.set(k, p);
    }
    return p;
  }

  /** The pointer of `set` as the store holds it now; null when a remote store is loading it. */
  private readPointerNow(set: string): Pointer | null {
    const key = pointerKey(set);
    const h = this.store.find(key, 0, key.length);
    if (h === PENDING) return null;
    const values = POINTER_NAMES.map(() => null as Uint8Array | null);
    if (h >= 0) this.valuesOf(h, POINTER_NAMES, values);
    return readPointer(values);
  }

  /**
   * Fills `values` with views of the values of record `h` named `names` (null when absent), into
   * the store's arena: valid until the next write to the store, so read them at once (a window
   * value can be tens of KB: a copy per update was most of an observe's time).
   * For small name lists (updates, pointers): one walk, a comparison per entry and name.
   */
  private valuesOf(h: number, names: readonly Uint8Array[], values: (Uint8Array | null)[]): void {
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    while (!w.done()) {
      this.nextEntry(w);
      const ns = w.fieldStart;
      const ne = w.fieldEnd;
      for (let i = 0; i < names.length; i++) {
        const n = names[i]!;
        if (bytesEqual(arena, ns, ne, n, 0, n.length)) {
          values[i] = arena.subarray(valueStartOf(arena, ne), w.pos);
          break;
        }
      }
    }
  }

  /** Points keyBuf/keyStart/keyEnd at the key of the entity body[s,e): its id, or prefix + id. */
  private useKey(body: Uint8Array, s: number, e: number): void {
    const prefix = this.prefix;
    if (prefix === null) {
      this.keyBuf = body;
      this.keyStart = s;
      this.keyEnd = e;
      return;
    }
    const k = this.keys;
    k.reset();
    k.raw(prefix);
    k.raw(body, s, e);
    this.keyBuf = k.bytes;
    this.keyStart = 0;
    this.keyEnd = k.pos;
  }

  private batchGet(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    const r = this.req.reset(body, start, end);
    const ids = this.ids;
    ids.count = 0;
    this.names.count = 0;
    this.resetReadOptions();
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
      } else if (!this.readOption(tag, body, r)) r.skip(tag & 7);
    }
    for (let i = 0; i < ids.count; i++) this.checkId(body, ids.starts[i]!, ids.ends[i]!);
    this.index.build(body, this.names);
    this.scanned = 0;
    this.waiting = false;
    if (!this.resolveRead()) return;
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
    if (this.prefix !== null) out.stringField(4, this.version);
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
    let h: number;
    if (this.prefix === null) h = store.find(body, idStart, idEnd);
    else {
      this.useKey(body, idStart, idEnd);
      h = store.find(this.keyBuf, this.keyStart, this.keyEnd);
    }
    if (h === PENDING) {
      // Every miss of the request is started before it waits: one round trip for them all.
      this.waiting = true;
      return false;
    }
    if (h < 0) {
      for (let i = 0; i < names.count; i++) out.bytesField(4, body, names.starts[i]!, names.ends[i]!);
      return false;
    }
    if (this.maxAge > 0 || this.windows.count > 0) this.writeTimed(h, body, out, true);
    else {
      const fu = store.freshUntil(h);
      if (fu !== 0 && fu <= this.clock()) this.writeTimed(h, body, out, false);
      else if (names.count === 0) {
        const len = store.length(h);
        // Checked before the copy: the writer never grows more than one small field past the limit.
        this.checkAnswerSize(out.pos + len - this.answerStart, this.entity, this.entities);
        out.ensure(len);
        out.pos += store.copyTo(h, out.bytes, out.pos);
        out.byte(TAG_FOUND);
        out.byte(1);
      } else {
        this.project(h, body, out);
        out.byte(TAG_FOUND);
        out.byte(1);
      }
    }
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

  /**
   * The answer for record `h` when time matters: a max age was asked for (`asked`), a feature
   * of the record may be past its own max age, or windows were asked for. Each entry (requested,
   * or every one without names unless windows were asked for) is copied when fresh and listed in
   * `stale` when not: stale when
   * now - event_time > the stricter of the read's and the value's max age. Then found, missing,
   * stale, the aggregates and the read time.
   */
  private writeTimed(h: number, body: Uint8Array, out: ProtoWriter, asked: boolean): void {
    const { starts, ends, count: n } = this.names;
    const index = this.index;
    if (this.matched.length < n) this.matched = new Uint8Array(n * 2);
    const matched = this.matched;
    matched.fill(0, 0, n);
    const now = this.clock();
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    const walkStart = w.pos;
    const stale = this.staleNames;
    stale.count = 0;
    // Windows without names: the aggregates alone (the tiles are the aggregates' input, often
    // tens of KB, and a caller who wants features as well names them).
    const entries = n > 0 || this.windows.count === 0;
    while (entries && !w.done()) {
      const entryStart = this.nextEntry(w);
      const ns = w.fieldStart;
      const ne = w.fieldEnd;
      if (n > 0) {
        const k = index.lookup(arena, ns, ne);
        if (k < 0) continue;
        matched[k] = 1;
      }
      const vs = valueStartOf(arena, ne);
      let maxAge = valueMaxAge(arena, vs, w.pos);
      if (this.maxAge > 0 && (maxAge === 0 || this.maxAge < maxAge)) maxAge = this.maxAge;
      if (maxAge > 0 && now - valueEventTime(arena, vs, w.pos) > maxAge) stale.push(ns, ne);
      else out.raw(arena, entryStart, w.pos);
    }
    this.scanned += w.pos - walkStart;
    out.byte(TAG_FOUND);
    out.byte(1);
    const first = index.first;
    for (let i = 0; i < n; i++) if (matched[first[i]!] === 0) out.bytesField(4, body, starts[i]!, ends[i]!);
    for (let i = 0; i < stale.count; i++) out.bytesField(5, arena, stale.starts[i]!, stale.ends[i]!);
    for (let i = 0; i < this.windows.count; i++) this.writeAggregate(h, body, i, now, out);
    if (asked || stale.count > 0) {
      out.tag(7, WireType.Varint);
      out.varint(now);
    }
  }

  /** Writes the WindowAggregate of window query `i` over record `h` (count 0 when the feature is absent). */
  private writeAggregate(h: number, body: Uint8Array, i: number, now: number, out: ProtoWriter): void {
    const ns = this.windows.starts[i]!;
    const ne = this.windows.ends[i]!;
    const windowMs = this.windowMs[i]!;
    const arena = this.store.arena(h);
    const w = this.startWalk(h);
    let count = 0;
    let sum = 0;
    let min = 0;
    let max = 0;
    while (!w.done()) {
      this.nextEntry(w);
      if (!bytesEqual(arena, w.fieldStart, w.fieldEnd, body, ns, ne)) continue;
      const a = aggregate(
        utf8Slice(body, ns, ne),
        arena,
        valueStartOf(arena, w.fieldEnd),
        w.pos,
        windowMs,
        now,
      );
      ({ count, sum, min, max } = a);
      break;
    }
    const at = out.beginLength(6);
    out.bytesField(1, body, ns, ne);
    out.tag(2, WireType.Varint);
    out.varint(windowMs);
    if (count > 0) {
      out.tag(3, WireType.Varint);
      out.varint(count);
      out.tag(4, WireType.Fixed64);
      out.double(sum);
      out.tag(5, WireType.Fixed64);
      out.double(min);
      out.tag(6, WireType.Fixed64);
      out.double(max);
      out.tag(7, WireType.Fixed64);
      out.double(sum / count);
    }
    out.endLength(at);
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
    this.anyMaxAge = false;
    this.resetReadOptions();
    let idStart = -1;
    let idEnd = -1;
    while (!r.done()) {
      const tag = r.tag();
      switch (tag) {
        case TAG_SET:
        case TAG_VERSION:
          this.readOption(tag, body, r);
          break;
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
    this.resolveWrite();
    this.useKey(body, idStart, idEnd);
  }

  /**
   * The version a write goes to: none, or feature_set and version together, not one being
   * dropped (its records would outlive the drop). On a remote store whose pointer is loading,
   * `versionCheck` is left to settle before the write is sent.
   */
  private resolveWrite(): void {
    this.versionCheck = null;
    if (this.setName === "" && this.version === "") return;
    if (this.setName === "" || this.version === "")
      throw invalidArgument("a write into a feature set needs both feature_set and version");
    checkSetName(this.setName, "feature_set");
    checkSetName(this.version, "version");
    this.prefix = this.prefixOf(this.setName, this.version);
    const p = this.readPointerNow(this.setName);
    if (p !== null) checkNotDropping(p, this.setName, this.version);
    else {
      const set = this.setName;
      const version = this.version;
      this.versionCheck = this.pointerLater(set).then((q) => checkNotDropping(q, set, version));
    }
  }

  /** The pointer of `set` from a remote store, once loaded. */
  private async pointerLater(set: string): Promise<Pointer> {
    for (let round = 1; ; round++) {
      await this.remote!.loaded();
      const p = this.readPointerNow(set);
      if (p !== null) return p;
      if (round === MAX_READ_ROUNDS)
        throw new FeatureStoreError(
          Code.Unavailable,
          `the pointer of feature set "${set}" kept changing; retry`,
        );
    }
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
    const i = this.setNames.count;
    if (this.setTimes.length === i) {
      const g = new Float64Array(i * 2);
      g.set(this.setTimes);
      this.setTimes = g;
    }
    this.setTimes[i] = this.valueTime;
    if (this.valueAge > 0) this.anyMaxAge = true;
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
    let eventTime: number | bigint = 0;
    let maxAge: number | bigint = 0;
    for (let p = 0; p < parts.count; p++) {
      r.reset(body, parts.starts[p]!, parts.ends[p]!);
      while (!r.done()) {
        const tag = r.tag();
        const field = tag >>> 3;
        const wt = tag & 7;
        if (tag === TAG_EVENT_TIME) {
          eventTime = r.int64();
          continue;
        }
        if (tag === TAG_MAX_AGE) {
          maxAge = r.int64();
          continue;
        }
        if (field === VALUE_WINDOW)
          throw this.badValue(
            body,
            nameStart,
            nameEnd,
            "is a window: windows are written by observe updates only",
          );
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
    this.stamp(body, nameStart, nameEnd, eventTime, maxAge);
    v.byte(TAG_EVENT_TIME);
    v.varint(this.valueTime);
    if (this.valueAge > 0) {
      v.byte(TAG_MAX_AGE);
      v.varint(this.valueAge);
    }
    this.oneofStart = v.pos;
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

  /**
   * Resolves a written value's event time (0: the server's clock) and max age into valueTime and
   * valueAge: INVALID_ARGUMENT naming the feature when the time is negative or more than
   * MAX_EVENT_TIME_SKEW_MS ahead of the server's clock, or the age negative or past 2^52.
   */
  private stamp(
    body: Uint8Array,
    nameStart: number,
    nameEnd: number,
    eventTime: number | bigint,
    maxAge: number | bigint,
  ): void {
    const now = this.clock();
    if (typeof eventTime !== "number" || eventTime < 0)
      throw this.badValue(body, nameStart, nameEnd, `has a negative or huge event_time_ms ${eventTime}`);
    const skew = this.options.maxEventTimeSkewMs;
    if (eventTime > now + skew)
      throw this.badValue(
        body,
        nameStart,
        nameEnd,
        `has event_time_ms ${eventTime}, ${eventTime - now} ms ahead of the server's clock; ` +
          `the limit is ${skew} ms (MAX_EVENT_TIME_SKEW_MS)`,
      );
    if (typeof maxAge !== "number" || maxAge < 0 || maxAge > MAX_TTL_MS)
      throw this.badValue(body, nameStart, nameEnd, `has max_age_ms ${maxAge}; it must be in [0, 2^52]`);
    this.valueTime = eventTime === 0 ? now : eventTime;
    this.valueAge = maxAge;
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
   * (unless `replace`), then the request's features, the last entry for a name winning; a
   * stored value with a newer event time than the request's keeps its place (`skipped`).
   */
  private applySet(body: Uint8Array): number {
    const store = this.local!; // local stores only: a remote one takes the change (remoteSet)
    const rec = this.record;
    const { starts, ends, count: n } = this.setNames;
    const index = this.index;
    const { first, last } = index;
    const vals = this.values.bytes;
    const vStarts = this.setValues.starts;
    const vEnds = this.setValues.ends;
    if (this.skipped.length < n) this.skipped = new Uint8Array(n * 2);
    const skipped = this.skipped;
    skipped.fill(0, 0, n);
    rec.reset();
    let features = 0;
    let skips = 0;
    let timed = this.anyMaxAge;
    const h = store.find(this.keyBuf, this.keyStart, this.keyEnd);
    if (h >= 0) {
      if (store.freshUntil(h) !== 0) timed = true;
      const arena = store.arena(h);
      const w = this.startWalk(h);
      while (!w.done()) {
        const entryStart = this.nextEntry(w);
        const k = index.lookup(arena, w.fieldStart, w.fieldEnd);
        if (k >= 0) {
          const i = last[k]!;
          const vs = valueStartOf(arena, w.fieldEnd);
          if (valueEventTime(arena, vs, w.pos) <= this.setTimes[i]!) continue;
          skipped[i] = 1;
          skips++;
        } else if (this.replace) continue;
        rec.raw(arena, entryStart, w.pos);
        features++;
      }
    }
    for (let i = 0; i < n; i++) {
      if (last[first[i]!] !== i || skipped[i] === 1) continue; // a later entry for this name wins
      writeEntry(rec, body, starts[i]!, ends[i]!, vals, vStarts[i]!, vEnds[i]!);
      features++;
    }
    if (features > this.options.maxFeaturesPerEntity)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the entity would hold ${features} features; the limit is ${this.options.maxFeaturesPerEntity} (MAX_FEATURES_PER_ENTITY)`,
      );
    const ttl = this.ttlMs > 0 ? this.ttlMs : this.options.defaultTtlMs;
    const fresh = timed ? recordFreshUntil(rec.bytes, 0, rec.pos) : 0;
    store.write(this.keyBuf, this.keyStart, this.keyEnd, rec.view(), ttl, fresh);
    return skips;
  }

  /** Writes the names `applySet` skipped as repeated field `field`. */
  private writeSkipped(body: Uint8Array, out: ProtoWriter, field: number): number {
    const { starts, ends, count: n } = this.setNames;
    let count = 0;
    for (let i = 0; i < n; i++)
      if (this.skipped[i] === 1) {
        out.bytesField(field, body, starts[i]!, ends[i]!);
        count++;
      }
    return count;
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
      const acks: Promise<Uint8Array[]>[] = new Array(n);
      for (let k = 0; k < n; k++) {
        this.parseSet(body, items.starts[k]!, items.ends[k]!);
        acks[k] = this.sendSet(this.remote, body, k);
      }
      let skipped: Uint8Array[][] = [];
      const ready = Promise.all(acks).then((s) => {
        skipped = s;
      });
      return {
        ready,
        answer: (o) => {
          for (let k = 0; k < n; k++) if (skipped[k]!.length > 0) writeSkippedItem(o, k, skipped[k]!);
          return writeCount(o, n);
        },
      };
    }
    try {
      for (i = 0; i < n; i++) {
        this.parseSet(body, items.starts[i]!, items.ends[i]!);
        if (this.applySet(body) > 0) {
          const at = out.beginLength(2);
          out.tag(1, WireType.Varint);
          out.varint(i);
          this.writeSkipped(body, out, 2);
          out.endLength(at);
        }
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
    let skipped: Uint8Array[] = [];
    const ready = this.sendSet(store, body, item).then((s) => {
      skipped = s;
    });
    return {
      ready,
      answer: (o) => {
        for (const name of skipped) o.bytesField(1, name);
        return undefined;
      },
    };
  }

  /** Sends the SetFeatures parsed by `parseSet` (see remoteSet); resolves with the skipped names. */
  private sendSet(store: RemoteStore, body: Uint8Array, item: number): Promise<Uint8Array[]> {
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
    const key = this.keyBuf.slice(this.keyStart, this.keyEnd);
    const replace = this.replace;
    const check = this.versionCheck;
    let ack =
      check === null
        ? store.setFeatures(key, fields, replace, ttl)
        : check.then(() => store.setFeatures(key, fields, replace, ttl));
    if (item >= 0) ack = ack.catch((err) => Promise.reject(atItemError(item, err)));
    return ack;
  }

  private deleteFeatures(
    body: Uint8Array,
    start: number,
    end: number,
    out: ProtoWriter,
  ): Deferred | undefined {
    this.parseIdAndNames(body, start, end);
    this.resolveWrite();
    this.useKey(body, this.idStart, this.idEnd);
    const key = this.keyBuf;
    const idStart = this.keyStart;
    const idEnd = this.keyEnd;
    if (this.remote !== null) {
      const { starts, ends, count } = this.names;
      let names: Uint8Array[] | null = null;
      if (count > 0) {
        names = new Array(count);
        for (let i = 0; i < count; i++) names[i] = body.slice(starts[i]!, ends[i]!);
      }
      let deleted = false;
      const remote = this.remote;
      const id = key.slice(idStart, idEnd);
      const send = () => remote.deleteFeatures(id, names);
      const check = this.versionCheck;
      const ready = (check === null ? send() : check.then(send)).then((d) => {
        deleted = d;
      });
      return { ready, answer: (o) => writeDeleted(o, deleted) };
    }
    const store = this.local!;
    let deleted: boolean;
    if (this.names.count === 0) {
      deleted = store.remove(key, idStart, idEnd);
    } else {
      const h = store.find(key, idStart, idEnd);
      deleted = false;
      if (h >= 0) {
        const expiresAt = store.expiresAt(h);
        const rec = this.record;
        rec.reset();
        if (this.copyEntriesExcept(h, rec).dropped > 0) {
          // The record keeps the expiry it had: deleting names is not a fresh write.
          const ttl = expiresAt === 0 ? 0 : Math.max(1, expiresAt - store.now());
          const fresh = store.freshUntil(h) === 0 ? 0 : recordFreshUntil(rec.bytes, 0, rec.pos);
          store.write(key, idStart, idEnd, rec.view(), ttl, fresh);
          deleted = true;
        }
      }
    }
    return writeDeleted(out, deleted);
  }

  // ---- updates and feature sets -------------------------------------------------------------

  /** UpdateFeatures: parses and validates every update, then applies them all or none. */
  private updateFeatures(
    body: Uint8Array,
    start: number,
    end: number,
    out: ProtoWriter,
  ): Deferred | undefined {
    const r = this.req.reset(body, start, end);
    this.resetReadOptions();
    let idStart = -1;
    let idEnd = -1;
    let ttl = 0;
    const updates: ParsedUpdate[] = [];
    while (!r.done()) {
      const tag = r.tag();
      if (tag === TAG_ID) {
        r.bytesRange();
        idStart = r.fieldStart;
        idEnd = r.fieldEnd;
      } else if (tag === TAG_NAMES) {
        r.bytesRange();
        if (updates.length === this.options.maxFeatureNames)
          throw invalidArgument(
            `an UpdateFeatures carries at most ${this.options.maxFeatureNames} updates (MAX_FEATURE_NAMES)`,
          );
        updates.push(this.parseUpdate(body, r.fieldStart, r.fieldEnd));
      } else if (tag === TAG_TTL) ttl = readTtl(r);
      else if (tag === TAG_SET || tag === TAG_VERSION) this.readOption(tag, body, r);
      else r.skip(tag & 7);
    }
    this.checkId(body, idStart, idEnd);
    if (updates.length === 0) throw invalidArgument("UpdateFeatures needs at least one update");
    const seen = new Set<string>();
    for (const u of updates) {
      if (seen.has(u.label)) throw invalidArgument(`feature "${u.label}" is updated twice in one request`);
      seen.add(u.label);
    }
    this.resolveWrite();
    this.useKey(body, idStart, idEnd);
    const now = this.clock();
    const names = updates.map((u) => u.name);
    let skipped: string[] = [];
    let counters: Uint8Array[] = [];
    const compute = (olds: (Uint8Array | null)[]): (Uint8Array | null | undefined)[] => {
      skipped = [];
      counters = [];
      return updates.map((u, i) => {
        const v = applyUpdate(u, olds[i] ?? null, now);
        if (v === SKIPPED) {
          skipped.push(u.label);
          return undefined;
        }
        if (u.op === UpdateOp.Increment) counters.push(u.name, v);
        return v;
      });
    };
    const answer = (o: ProtoWriter): undefined => {
      for (const name of skipped) o.stringField(1, name);
      for (let i = 0; i < counters.length; i += 2) {
        const name = counters[i]!;
        const value = counters[i + 1]!;
        writeEntry(o, name, 0, name.length, value, 0, value.length);
      }
      return undefined;
    };
    if (this.remote === null) {
      this.localUpdate(
        this.keyBuf,
        this.keyStart,
        this.keyEnd,
        names,
        compute,
        ttl,
        this.options.defaultTtlMs,
      );
      return answer(out);
    }
    const remote = this.remote;
    const key = this.keyBuf.slice(this.keyStart, this.keyEnd);
    const send = () => remote.update(key, names, compute, ttl, this.options.defaultTtlMs);
    const check = this.versionCheck;
    return { ready: check === null ? send() : check.then(send), answer };
  }

  /** One FeatureUpdate { name = 1, op = 2..5, event_time_ms = 6, max_age_ms = 7 }. */
  private parseUpdate(body: Uint8Array, start: number, end: number): ParsedUpdate {
    const r = this.entry.reset(body, start, end);
    let ns = start;
    let ne = start;
    let op = 0;
    let os = 0;
    let oe = 0;
    let eventTime: number | bigint = 0;
    let maxAge: number | bigint = 0;
    while (!r.done()) {
      const tag = r.tag();
      const field = tag >>> 3;
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        ns = r.fieldStart;
        ne = r.fieldEnd;
      } else if (field >= UpdateOp.Set && field <= UpdateOp.Observe && (tag & 7) === WireType.Bytes) {
        r.bytesRange();
        op = field;
        os = r.fieldStart;
        oe = r.fieldEnd;
      } else if (tag === ((6 << 3) | WireType.Varint)) eventTime = r.int64();
      else if (tag === ((7 << 3) | WireType.Varint)) maxAge = r.int64();
      else r.skip(tag & 7);
    }
    if (ne === ns) throw invalidArgument("an update needs a feature name");
    if (!isValidUtf8(body, ns, ne)) throw invalidArgument("feature name is not valid UTF-8");
    const label = utf8Slice(body, ns, ne);
    if (op === 0)
      throw invalidArgument(
        `the update of feature "${label}" has no known op (set, increment, append, observe)`,
      );
    const u = {
      name: body.slice(ns, ne),
      label,
      op: op as UpdateOp,
      eventTime: 0,
      maxAge: 0,
      value: EMPTY,
      listKind: 0,
      keepLast: 0,
      intDelta: null as bigint | null,
      doubleDelta: 0,
      observed: 0,
      bucketMs: 0,
      retentionMs: 0,
    };
    const s = this.walk2.reset(body, os, oe);
    switch (op) {
      case UpdateOp.Set: {
        this.canonicalFrom(body, os, oe, ns, ne);
        if (eventTime === 0) eventTime = this.valueTime;
        if (maxAge === 0) maxAge = this.valueAge;
        u.value = this.values.bytes.slice(this.oneofStart, this.values.pos);
        break;
      }
      case UpdateOp.Increment:
        while (!s.done()) {
          const tag = s.tag();
          if (tag === ((1 << 3) | WireType.Varint)) {
            u.intDelta = s.varint64();
          } else if (tag === ((2 << 3) | WireType.Fixed64)) {
            u.intDelta = null;
            u.doubleDelta = s.double();
          } else s.skip(tag & 7);
        }
        if (u.intDelta === null && !Number.isFinite(u.doubleDelta))
          throw invalidArgument(`the increment of feature "${label}" is not a finite number`);
        if (u.intDelta === null && oe === os)
          throw invalidArgument(`the increment of feature "${label}" has no delta`);
        break;
      case UpdateOp.Append: {
        let vs = -1;
        let ve = -1;
        while (!s.done()) {
          const tag = s.tag();
          if (tag === ((1 << 3) | WireType.Bytes)) {
            s.bytesRange();
            vs = s.fieldStart;
            ve = s.fieldEnd;
          } else if (tag === ((2 << 3) | WireType.Varint)) u.keepLast = s.varint();
          else s.skip(tag & 7);
        }
        if (vs < 0) throw invalidArgument(`the append to feature "${label}" has no values`);
        this.canonicalFrom(body, vs, ve, ns, ne);
        u.listKind = this.values.bytes[this.oneofStart]! >>> 3;
        if (
          u.listKind !== ValueField.StringList &&
          u.listKind !== ValueField.IntList &&
          u.listKind !== ValueField.FloatList
        )
          throw invalidArgument(
            `the append to feature "${label}" needs a string_list, int_list or float_list`,
          );
        if (!(u.keepLast >= 1 && u.keepLast <= this.options.maxListItems))
          throw invalidArgument(
            `the append to feature "${label}" needs keep_last in [1, ${this.options.maxListItems}] (MAX_LIST_ITEMS); got ${u.keepLast}`,
          );
        u.value = this.values.bytes.slice(this.oneofStart, this.values.pos);
        break;
      }
      case UpdateOp.Observe: {
        let hasValue = false;
        while (!s.done()) {
          const tag = s.tag();
          if (tag === ((1 << 3) | WireType.Fixed64)) {
            u.observed = s.double();
            hasValue = true;
          } else if (tag === ((2 << 3) | WireType.Bytes)) {
            s.bytesRange();
            const q = new ProtoReader().reset(body, s.fieldStart, s.fieldEnd);
            while (!q.done()) {
              const t = q.tag();
              if (t === ((1 << 3) | WireType.Varint)) u.bucketMs = q.varint();
              else if (t === ((2 << 3) | WireType.Varint)) u.retentionMs = q.varint();
              else q.skip(t & 7);
            }
          } else s.skip(tag & 7);
        }
        if (!hasValue) u.observed = 0;
        if (!Number.isFinite(u.observed))
          throw invalidArgument(`the observed value of feature "${label}" is not a finite number`);
        checkSpec(label, u.bucketMs, u.retentionMs, this.options.maxWindowTiles);
        break;
      }
    }
    this.stamp(body, ns, ne, eventTime, maxAge);
    u.eventTime = this.valueTime;
    u.maxAge = this.valueAge;
    return u;
  }

  /** Canonicalises the FeatureValue body[vs,ve) of feature body[ns,ne) into `values` (oneof at oneofStart). */
  private canonicalFrom(body: Uint8Array, vs: number, ve: number, ns: number, ne: number): void {
    this.values.reset();
    this.valueParts.count = 0;
    this.valueParts.push(vs, ve);
    this.canonicalValue(body, ns, ne);
  }

  /**
   * The read-modify-write of an update on a local store, all in one synchronous step (so
   * atomic): `compute` gets the current values of `names`, answers the new ones (null: delete,
   * undefined: leave), and the record is rewritten. TTL as RemoteStore.update documents it.
   */
  private localUpdate(
    key: Uint8Array,
    ks: number,
    ke: number,
    names: Uint8Array[],
    compute: (current: (Uint8Array | null)[]) => (Uint8Array | null | undefined)[],
    ttlMs: number,
    defaultTtlMs: number,
  ): void {
    const store = this.local!;
    const h = store.find(key, ks, ke);
    const olds: (Uint8Array | null)[] = names.map(() => null);
    if (h >= 0) this.valuesOf(h, names, olds);
    const news = compute(olds);
    if (h >= 0 && news.every((v) => v === undefined)) return;
    const rec = this.record;
    rec.reset();
    let features = 0;
    let timed = false;
    const done = new Uint8Array(names.length);
    let expiresAt = 0;
    if (h >= 0) {
      expiresAt = store.expiresAt(h);
      if (store.freshUntil(h) !== 0) timed = true;
      const arena = store.arena(h);
      const w = this.startWalk(h);
      while (!w.done()) {
        const entryStart = this.nextEntry(w);
        const i = indexOfName(names, arena, w.fieldStart, w.fieldEnd);
        if (i >= 0) {
          done[i] = 1;
          const v = news[i];
          if (v === null) continue;
          if (v !== undefined) {
            writeEntry(rec, names[i]!, 0, names[i]!.length, v, 0, v.length);
            features++;
            continue;
          }
        }
        rec.raw(arena, entryStart, w.pos);
        features++;
      }
    }
    for (let i = 0; i < names.length; i++) {
      const v = news[i];
      if (done[i] === 1 || v === null || v === undefined) continue;
      writeEntry(rec, names[i]!, 0, names[i]!.length, v, 0, v.length);
      features++;
      if (valueMaxAge(v, 0, v.length) > 0) timed = true;
    }
    if (!timed) for (const v of news) if (v && valueMaxAge(v, 0, v.length) > 0) timed = true;
    if (features > this.options.maxFeaturesPerEntity)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `the entity would hold ${features} features; the limit is ${this.options.maxFeaturesPerEntity} (MAX_FEATURES_PER_ENTITY)`,
      );
    const ttl =
      ttlMs > 0 ? ttlMs : h < 0 ? defaultTtlMs : expiresAt === 0 ? 0 : Math.max(1, expiresAt - store.now());
    if (features === 0) {
      if (h >= 0) store.remove(key, ks, ke);
      return;
    }
    store.write(key, ks, ke, rec.view(), ttl, timed ? recordFreshUntil(rec.bytes, 0, rec.pos) : 0);
  }

  /** PublishVersion, RollbackVersion, DropVersion: a change of the set's pointer, answered with the new state. */
  private changeFeatureSet(
    method: number,
    body: Uint8Array,
    start: number,
    end: number,
    out: ProtoWriter,
  ): Deferred | undefined {
    const [set, version] = this.parseSetRequest(body, start, end, method !== Method.RollbackVersion);
    const now = this.clock();
    let state: Pointer = { current: "", previous: "", dropping: [] };
    const compute = (olds: (Uint8Array | null)[]) => {
      const p = readPointer(olds);
      state =
        method === Method.PublishVersion
          ? pointerChange.publish(p, set, version)
          : method === Method.RollbackVersion
            ? pointerChange.rollback(p, set)
            : pointerChange.drop(p, set, version);
      return pointerValues(state, now);
    };
    const after = (): undefined => {
      if (method === Method.DropVersion) this.startDrop(set, version);
      return undefined;
    };
    const key = pointerKey(set);
    if (this.remote === null) {
      this.localUpdate(key, 0, key.length, POINTER_NAMES, compute, 0, 0);
      after();
      writeSetInfo(out, set, state);
      return;
    }
    return {
      ready: this.remote.update(key, POINTER_NAMES, compute, 0, 0).then(after),
      answer: (o) => {
        writeSetInfo(o, set, state);
        return undefined;
      },
    };
  }

  /** GetFeatureSet: the pointer as the store holds it; drops this server is not running are resumed. */
  private getFeatureSet(body: Uint8Array, start: number, end: number, out: ProtoWriter): void {
    this.waiting = false;
    const [set] = this.parseSetRequest(body, start, end, false);
    const p = this.readPointerNow(set);
    if (p === null) {
      this.waiting = true;
      return;
    }
    for (const v of p.dropping) this.startDrop(set, v);
    writeSetInfo(out, set, p);
  }

  /** A request of { feature_set = 1, version = 2 }, names checked (version when `needsVersion`). */
  private parseSetRequest(
    body: Uint8Array,
    start: number,
    end: number,
    needsVersion: boolean,
  ): [string, string] {
    const r = this.req.reset(body, start, end);
    let set = "";
    let version = "";
    while (!r.done()) {
      const tag = r.tag();
      if (tag === ((1 << 3) | WireType.Bytes)) {
        r.bytesRange();
        set = utf8Slice(body, r.fieldStart, r.fieldEnd);
      } else if (tag === ((2 << 3) | WireType.Bytes)) {
        r.bytesRange();
        version = utf8Slice(body, r.fieldStart, r.fieldEnd);
      } else r.skip(tag & 7);
    }
    checkSetName(set, "feature_set");
    if (needsVersion) checkSetName(version, "version");
    return [set, version];
  }

  /**
   * Frees the records of a dropped version in the background, `dropStepRecords` per event-loop
   * turn, then takes it off the pointer's `dropping` list. A failure leaves it listed: the next
   * DropVersion or GetFeatureSet on any server starts it again.
   */
  private startDrop(set: string, version: string): void {
    const k = `${set}\u0000${version}`;
    if (this.drops.has(k)) return;
    const store = this.remote ?? this.local!;
    const job = (async () => {
      const d: PrefixDrop = store.dropPrefix(versionPrefix(set, version));
      while (!d.done) {
        await d.step(this.options.dropStepRecords);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const key = pointerKey(set);
      const now = this.time();
      const compute = (olds: (Uint8Array | null)[]) =>
        pointerValues(pointerChange.dropped(readPointer(olds), version), now);
      if (this.remote !== null) await this.remote.update(key, POINTER_NAMES, compute, 0, 0);
      else this.localUpdate(key, 0, key.length, POINTER_NAMES, compute, 0, 0);
    })();
    this.drops.set(k, job);
    job.then(
      () => this.drops.delete(k),
      (err: unknown) => {
        this.drops.delete(k);
        this.options.logger?.warn("a version drop stopped; DropVersion or GetFeatureSet resumes it", {
          feature_set: set,
          version,
          error: err instanceof Error ? err.message : String(err),
        });
      },
    );
  }

  /** Settles once every version drop this server runs has finished (tests, shutdown). */
  async dropsSettled(): Promise<void> {
    while (this.drops.size > 0) await Promise.allSettled([...this.drops.values()]);
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

/** Where the value of the canonical entry whose name ends at `nameEnd` starts (past `0x12 <len>`). */
function valueStartOf(b: Uint8Array, nameEnd: number): number {
  let p = nameEnd + 1;
  while (b[p]! >= 0x80) p++;
  return p + 1;
}

const EMPTY = new Uint8Array(0);

/** Index of the name equal to b[s,e) in `names`, -1 if none (update and pointer name lists). */
function indexOfName(names: readonly Uint8Array[], b: Uint8Array, s: number, e: number): number {
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (bytesEqual(b, s, e, n, 0, n.length)) return i;
  }
  return -1;
}

/** FAILED_PRECONDITION for a write into a version being dropped. */
function checkNotDropping(p: Pointer, set: string, version: string): void {
  if (p.dropping.includes(version))
    throw new FeatureStoreError(
      Code.FailedPrecondition,
      `version "${version}" of feature set "${set}" is being dropped; write into another version`,
    );
}

/** One SkippedFeatures entry (BatchSetResponse.skipped, field 2). */
function writeSkippedItem(out: ProtoWriter, item: number, names: readonly Uint8Array[]): void {
  const at = out.beginLength(2);
  out.tag(1, WireType.Varint);
  out.varint(item);
  for (const n of names) out.bytesField(2, n);
  out.endLength(at);
}
