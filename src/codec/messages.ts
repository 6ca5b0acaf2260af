/**
 * Typed requests and results of the service's methods, their protobuf encoding for the client
 * side (what a caller sends, what it gets back), and each method's encode -> call -> decode,
 * written once (`TypedMethod`) and run by the TCP client (`callTypedAsync`, over a transport) and
 * by the embedded store (`callTyped`, in-process).
 */
import {
  buildEventTimes,
  buildFeatures,
  type FeatureInput,
  type Features,
  type FeaturesInput,
  int64Number,
  internName,
  msOption,
  readEntry,
  readFeatureEntry,
  writeFeatureMap,
  writeFeatureValue,
  writeWindowSpec,
} from "./features.ts";
import { Method } from "./frame.ts";
import { Code, FeatureStoreError, invalidArgument } from "./status.ts";
import { ProtoReader, type ProtoWriter, utf8Slice, WireType } from "./wire.ts";

/** A windowed aggregate of a read (GetFeaturesResponse.aggregates), one per `ReadOptions.windows` entry. */
export interface WindowAggregate {
  feature: string;
  windowMs: number;
  /** Events in the window; 0 for an empty window, whose sum, min, max and mean are 0. */
  count: number;
  sum: number;
  min: number;
  max: number;
  mean: number;
}

/** Result of GetFeatures: `found` is false for a missing or expired entity (a miss is not an error). */
export interface GetFeaturesResult {
  entityId: string;
  found: boolean;
  /** Null-prototype object: a feature may be called anything, "__proto__" included. */
  features: Features;
  /** Requested names the entity does not have (all of them when not found). */
  missing: string[];
  /**
   * Features the entity has but that are older than their max age (the read's `maxAgeMs` or the
   * feature's own): never in `features`. Usually empty: then one shared frozen array (copy it
   * before changing it).
   */
  stale: string[];
  /**
   * One per `ReadOptions.windows` entry, in its order (none when not found). Empty: one shared
   * frozen array.
   */
  aggregates: WindowAggregate[];
  /** The server's clock at the read, ms since the epoch, when a max age applied or windows were read; else 0. */
  readTimeMs: number;
  /**
   * The feature set version a getFeatures with `featureSet` read; absent otherwise (a batchGet
   * says it once, in `BatchGetResult.version`).
   */
  version?: string;
  /**
   * The event time of each feature in `features`, ms since the epoch (0: unknown, a value written
   * without one), in a null-prototype object; only when the read asked (`eventTimes: true`) or
   * gave a `maxAgeMs`. The age of a feature is `readTimeMs - eventTimes[name]`.
   */
  eventTimes?: Record<string, number>;
}

export interface BatchGetResult {
  /** One result per requested id, in request order. */
  results: GetFeaturesResult[];
  hits: number;
  misses: number;
  /** The feature set version read ("" when the read named no feature set). */
  version: string;
}

/** One windowed aggregate to read: the tiles of `feature` within `windowMs` of the read time. */
export interface WindowQuery {
  feature: string;
  /** A multiple of the feature's bucket and at most its retention, ms. */
  windowMs: number;
}

/** Where a call reads or writes: a version of a feature set (see publishVersion). */
export interface VersionOptions {
  /** The feature set (1 to 64 of [A-Za-z0-9_.-]); absent: the plain entities. */
  featureSet?: string;
  /**
   * The version within `featureSet`. Reads default to the published one; writes and deletes
   * need both `featureSet` and `version`.
   */
  version?: string;
}

/** Options of a read (GetFeatures, BatchGet). */
export interface ReadOptions extends VersionOptions {
  /**
   * Maximum age in ms (0 or absent: none): a feature whose event time is older is listed in
   * `stale`, not returned. A feature's own max age (written with it) applies as well; the
   * stricter wins. Giving one also fills `eventTimes`.
   */
  maxAgeMs?: number;
  /**
   * Windowed aggregates to compute, answered in `aggregates` in this order. With windows and no
   * feature names the answer holds the aggregates alone (no features).
   */
  windows?: readonly WindowQuery[];
  /** Fill `eventTimes` in the result (default false: no object is built). */
  eventTimes?: boolean;
}

/** Options of one write: the fields of SetFeaturesItem beside the entity and its features. */
export interface SetOptions extends VersionOptions {
  /** Time to live of the whole record in ms from this write; 0 or absent = server default. */
  ttlMs?: number;
  /** Replace the record instead of merging into it (default false). */
  replace?: boolean;
  /**
   * Event time of every written value, ms since the epoch; 0 or absent: the server's clock. A
   * feature whose stored event time is newer keeps its value and is reported in `skipped`.
   */
  eventTimeMs?: number;
  /** Default max age of every written feature, ms; 0 or absent: each keeps the one it has. */
  maxAgeMs?: number;
}

/** One write of SetFeatures / BatchSet. */
export interface SetFeaturesItem extends SetOptions {
  entityId: string;
  features: FeaturesInput;
}

/** Result of SetFeatures. */
export interface SetResult {
  /**
   * Features not written because the stored value's event time is newer. Usually empty: then one
   * shared frozen array (and one shared frozen result).
   */
  skipped: string[];
}

/** The time fields every update may carry. */
interface UpdateTimes {
  /** The feature to change. */
  name: string;
  /** Event time of the change, ms since the epoch; 0 or absent: the server's clock. */
  eventTimeMs?: number;
}

/** Sets the feature if the stored value is not newer (else the name is in `skipped`). */
export interface SetUpdate extends UpdateTimes {
  set: FeatureInput;
  /** A new default max age for the feature, ms (0 or absent: keep the stored one). */
  maxAgeMs?: number;
}

/**
 * Adds to an int (a safe integer or a bigint) or double (a fraction, or `{ double: x }`) feature;
 * an absent feature starts at 0. The result is in `values`.
 */
export interface IncrementUpdate extends UpdateTimes {
  increment: number | bigint | { double: number };
  maxAgeMs?: number;
}

/**
 * Pushes items onto the front of a list feature of the same kind (strings, floats, int64s), one at
 * a time (the last given ends up first), then keeps the first `keepLast`.
 */
export interface AppendUpdate extends UpdateTimes {
  append: string[] | number[] | Float32Array | BigInt64Array;
  /** Items kept, newest first: 1 to the server's MAX_LIST_ITEMS. */
  keepLast: number;
  maxAgeMs?: number;
}

/** Tiles of a windowed feature: `bucketMs` wide, kept for `retentionMs` (a multiple of it). */
export interface WindowSpec {
  bucketMs: number;
  retentionMs: number;
}

/**
 * Adds one event (`observe`, at `eventTimeMs`) to a windowed feature; the first creates the
 * feature with `spec`. An event older than the retention is skipped.
 */
export interface ObserveUpdate extends UpdateTimes {
  observe: number;
  spec: WindowSpec;
}

/** One change of an UpdateFeatures call. */
export type FeatureUpdateInput = SetUpdate | IncrementUpdate | AppendUpdate | ObserveUpdate;

/** Options of UpdateFeatures. */
export interface UpdateOptions extends VersionOptions {
  /** Time to live of the record from this call, ms; 0 or absent: the entity keeps its expiry. */
  ttlMs?: number;
}

/** Result of UpdateFeatures. */
export interface UpdateResult {
  /**
   * Updates not applied: a set older than the stored value, an event older than the window's
   * retention. Empty: one shared frozen array.
   */
  skipped: string[];
  /** The value of every incremented feature after its increment (null-prototype object). */
  values: Features;
}

/** A feature set's state (after a publish, rollback or drop, or as read). */
export interface FeatureSetInfo {
  featureSet: string;
  /** What reads without a version get; "" when nothing is published. */
  current: string;
  /** What rollbackVersion returns to; "" when there is none. */
  previous: string;
  /** Versions being dropped (their entities freed in steps in the background). */
  dropping: string[];
}

/** The methods with typed arguments, shared by the TCP client and the embedded store. */
export interface FeatureStoreApi {
  getFeatures(
    entityId: string,
    featureNames?: readonly string[],
    options?: ReadOptions,
  ): MaybePromise<GetFeaturesResult>;
  batchGet(
    entityIds: readonly string[],
    featureNames?: readonly string[],
    options?: ReadOptions,
  ): MaybePromise<BatchGetResult>;
  setFeatures(entityId: string, features: FeaturesInput, options?: SetOptions): MaybePromise<SetResult>;
  batchSet(items: readonly SetFeaturesItem[]): MaybePromise<number>;
  deleteFeatures(
    entityId: string,
    featureNames?: readonly string[],
    options?: VersionOptions,
  ): MaybePromise<boolean>;
  updateFeatures(
    entityId: string,
    updates: readonly FeatureUpdateInput[],
    options?: UpdateOptions,
  ): MaybePromise<UpdateResult>;
  publishVersion(featureSet: string, version: string): MaybePromise<FeatureSetInfo>;
  rollbackVersion(featureSet: string): MaybePromise<FeatureSetInfo>;
  dropVersion(featureSet: string, version: string): MaybePromise<FeatureSetInfo>;
  getFeatureSet(featureSet: string): MaybePromise<FeatureSetInfo>;
}

/** Embedded calls answer synchronously (a hit never creates a Promise); remote calls return one. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * The shared answer parts for "none", so that the usual answer allocates nothing for them: frozen,
 * so that no caller can fill them for the others (a push throws; sorting an empty one is fine).
 */
const NO_NAMES = Object.freeze([]) as unknown as string[];
const NO_AGGREGATES = Object.freeze([]) as unknown as WindowAggregate[];
const NOTHING_SKIPPED: SetResult = Object.freeze({ skipped: NO_NAMES });

// ---- encoding --------------------------------------------------------------------------------

/** A name argument: a non-empty string (INVALID_ARGUMENT naming `what` otherwise). */
function requireName(what: string, s: unknown): string {
  if (typeof s !== "string" || s.length === 0) throw invalidArgument(`${what} must be a non-empty string`);
  return s;
}

function varintField(w: ProtoWriter, field: number, v: number): void {
  w.tag(field, WireType.Varint);
  w.varint(v);
}

/** An int64 field from a safe integer or a bigint within int64 (always written: oneof members have presence). */
function int64Field(w: ProtoWriter, field: number, v: number | bigint, what: string): void {
  if (typeof v === "bigint") {
    if (v < -(2n ** 63n) || v >= 2n ** 63n) throw invalidArgument(`${what}: ${v} does not fit int64`);
    w.tag(field, WireType.Varint);
    w.varint64(v);
  } else {
    w.tag(field, WireType.Varint);
    if (v >= 0) w.varint(v);
    else w.varint64(BigInt(v));
  }
}

function doubleField(w: ProtoWriter, field: number, v: number): void {
  w.tag(field, WireType.Fixed64);
  w.double(v);
}

/** feature_set (5) and version (6), as every request that has them numbers them; empty ones left out. */
function writeVersion(w: ProtoWriter, o: VersionOptions | undefined): void {
  if (o === undefined) return;
  const { featureSet, version } = o;
  if (featureSet !== undefined && typeof featureSet !== "string")
    throw invalidArgument(`featureSet must be a string, got ${typeof featureSet}`);
  if (version !== undefined && typeof version !== "string")
    throw invalidArgument(`version must be a string, got ${typeof version}`);
  if (featureSet) w.stringField(5, featureSet);
  if (version) w.stringField(6, version);
}

/**
 * max_age_ms (3), windows (4), feature_set (5), version (6) of GetFeatures and BatchGet requests
 * (the same numbers in both), after their ids and names.
 */
export function writeReadOptions(w: ProtoWriter, o: ReadOptions | undefined): void {
  if (o === undefined) return;
  const maxAgeMs = msOption("maxAgeMs", o.maxAgeMs);
  if (maxAgeMs > 0) varintField(w, 3, maxAgeMs);
  const windows = o.windows;
  if (windows !== undefined) {
    if (!Array.isArray(windows)) throw invalidArgument("windows must be an array of { feature, windowMs }");
    for (let i = 0; i < windows.length; i++) {
      const q = windows[i] as WindowQuery;
      if (q === null || typeof q !== "object")
        throw invalidArgument(`windows[${i}] must be { feature, windowMs }`);
      const feature = requireName(`windows[${i}].feature`, q.feature);
      const windowMs = msOption(`windows[${i}].windowMs`, q.windowMs);
      if (windowMs === 0) throw invalidArgument(`windows[${i}].windowMs must be > 0`);
      const at = w.beginLength(4);
      w.stringField(1, feature);
      varintField(w, 2, windowMs);
      w.endLength(at);
    }
  }
  writeVersion(w, o);
}

export function encodeGetFeaturesRequest(
  w: ProtoWriter,
  entityId: string,
  names?: readonly string[],
  options?: ReadOptions,
): void {
  w.stringField(1, entityId);
  if (names) for (const n of names) w.stringField(2, n);
  writeReadOptions(w, options);
}

export function encodeBatchGetRequest(
  w: ProtoWriter,
  ids: readonly string[],
  names?: readonly string[],
  options?: ReadOptions,
): void {
  for (const id of ids) w.stringField(1, id);
  if (names) for (const n of names) w.stringField(2, n);
  writeReadOptions(w, options);
}

export function encodeSetFeaturesRequest(w: ProtoWriter, item: SetFeaturesItem): void {
  encodeSetFeatures(w, item.entityId, item.features, item);
}

/**
 * SetFeaturesRequest from the arguments of `setFeatures`, without building a SetFeaturesItem.
 * Every value carries the options' event time and max age (FeatureValue fields 10 and 11).
 */
export function encodeSetFeatures(
  w: ProtoWriter,
  entityId: string,
  features: FeaturesInput,
  options: SetOptions | undefined,
): void {
  w.stringField(1, entityId);
  if (options === undefined) {
    writeFeatureMap(w, 2, features);
    return;
  }
  writeFeatureMap(
    w,
    2,
    features,
    msOption("eventTimeMs", options.eventTimeMs),
    msOption("maxAgeMs", options.maxAgeMs),
  );
  const ttlMs = msOption("ttlMs", options.ttlMs);
  if (ttlMs > 0) varintField(w, 3, ttlMs);
  if (options.replace) {
    w.tag(4, WireType.Varint);
    w.byte(1);
  }
  writeVersion(w, options);
}

export function encodeBatchSetRequest(w: ProtoWriter, items: readonly SetFeaturesItem[]): void {
  for (const item of items) {
    const at = w.beginLength(1);
    encodeSetFeaturesRequest(w, item);
    w.endLength(at);
  }
}

/** DeleteFeaturesRequest: entity_id (1), feature_names (2), feature_set (5), version (6). */
export function encodeDeleteFeaturesRequest(
  w: ProtoWriter,
  entityId: string,
  names?: readonly string[],
  options?: VersionOptions,
): void {
  w.stringField(1, entityId);
  if (names) for (const n of names) w.stringField(2, n);
  writeVersion(w, options);
}

/**
 * UpdateFeaturesRequest: entity_id (1), one FeatureUpdate (2) per update, ttl_ms (3),
 * feature_set (5), version (6). Checked here: every update has a non-empty name and exactly one
 * of set / increment / append / observe, times are whole ms >= 0, keepLast is >= 1; the server
 * checks the rest (kinds, bounds, duplicates).
 */
export function encodeUpdateFeaturesRequest(
  w: ProtoWriter,
  entityId: string,
  updates: readonly FeatureUpdateInput[],
  options?: UpdateOptions,
): void {
  w.stringField(1, entityId);
  if (!Array.isArray(updates)) throw invalidArgument("updates must be an array");
  for (let i = 0; i < updates.length; i++) encodeUpdate(w, updates[i]!, i);
  if (options !== undefined) {
    const ttlMs = msOption("ttlMs", options.ttlMs);
    if (ttlMs > 0) varintField(w, 3, ttlMs);
    writeVersion(w, options);
  }
}

/**
 * One FeatureUpdate (field 2 of the request):
 *
 * ```
 * 1 name   2 set FeatureValue | 3 increment { 1 int_delta | 2 double_delta }
 *          | 4 append { 1 values FeatureValue, 2 keep_last } | 5 observe { 1 value, 2 spec }
 * 6 event_time_ms   7 max_age_ms
 * ```
 */
function encodeUpdate(w: ProtoWriter, u: FeatureUpdateInput, i: number): void {
  if (u === null || typeof u !== "object") throw invalidArgument(`updates[${i}] must be an object`);
  const name = requireName(`updates[${i}].name`, u.name);
  const where = `updates[${i}] ("${name}")`;
  const ops = +("set" in u) + +("increment" in u) + +("append" in u) + +("observe" in u);
  if (ops !== 1)
    throw invalidArgument(`${where}: give exactly one of set, increment, append, observe (got ${ops})`);
  const eventTimeMs = msOption(`${where} eventTimeMs`, u.eventTimeMs);
  const maxAgeMs = msOption(`${where} maxAgeMs`, (u as { maxAgeMs?: number }).maxAgeMs);
  const at = w.beginLength(2);
  w.stringField(1, name);
  if ("set" in u) {
    const v = w.beginLength(2);
    writeFeatureValue(w, name, u.set);
    w.endLength(v);
  } else if ("increment" in u) {
    const d = u.increment;
    const m = w.beginLength(3);
    if (typeof d === "bigint" || (typeof d === "number" && Number.isSafeInteger(d)))
      int64Field(w, 1, d, where);
    else if (typeof d === "number") doubleField(w, 2, d);
    else if (d !== null && typeof d === "object" && typeof d.double === "number") doubleField(w, 2, d.double);
    else throw invalidArgument(`${where}: increment must be a number, a bigint or { double: number }`);
    w.endLength(m);
  } else if ("append" in u) {
    const items = u.append;
    if (!(Array.isArray(items) || items instanceof Float32Array || items instanceof BigInt64Array))
      throw invalidArgument(
        `${where}: append must be an array of strings or numbers, a Float32Array or a BigInt64Array`,
      );
    const keepLast = u.keepLast;
    if (!Number.isInteger(keepLast) || keepLast < 1 || keepLast > 0xffffffff)
      throw invalidArgument(`${where}: keepLast must be an integer >= 1, got ${String(keepLast)}`);
    const m = w.beginLength(4);
    const v = w.beginLength(1);
    writeFeatureValue(w, name, items);
    w.endLength(v);
    varintField(w, 2, keepLast);
    w.endLength(m);
  } else {
    const value = u.observe;
    if (typeof value !== "number") throw invalidArgument(`${where}: observe must be a number`);
    const spec = u.spec;
    if (spec === null || typeof spec !== "object")
      throw invalidArgument(`${where}: observe needs spec { bucketMs, retentionMs }`);
    const bucketMs = msOption(`${where} spec.bucketMs`, spec.bucketMs);
    const retentionMs = msOption(`${where} spec.retentionMs`, spec.retentionMs);
    const m = w.beginLength(5);
    if (value !== 0) doubleField(w, 1, value);
    const s = w.beginLength(2);
    writeWindowSpec(w, bucketMs, retentionMs);
    w.endLength(s);
    w.endLength(m);
  }
  if (eventTimeMs > 0) varintField(w, 6, eventTimeMs);
  if (maxAgeMs > 0) varintField(w, 7, maxAgeMs);
  w.endLength(at);
}

/** PublishVersionRequest and DropVersionRequest: feature_set (1), version (2). */
export function encodeSetVersionRequest(w: ProtoWriter, featureSet: string, version: string): void {
  w.stringField(1, requireName("featureSet", featureSet));
  w.stringField(2, requireName("version", version));
}

/** RollbackVersionRequest and GetFeatureSetRequest: feature_set (1). */
export function encodeFeatureSetRequest(w: ProtoWriter, featureSet: string): void {
  w.stringField(1, requireName("featureSet", featureSet));
}

// ---- decoding --------------------------------------------------------------------------------

const reader = new ProtoReader();

/**
 * Decodes a GetFeaturesResponse in buf[start,end). With `eventTimes`, the result's `eventTimes`
 * is filled (else undefined).
 */
export function decodeGetFeaturesResponse(
  buf: Uint8Array,
  start = 0,
  end = buf.length,
  eventTimes = false,
): GetFeaturesResult {
  return decodeResult(reader.reset(buf, start, end), buf, eventTimes);
}

/** The GetFeaturesResponse under `r` (whose range is the message). */
function decodeResult(r: ProtoReader, buf: Uint8Array, eventTimes: boolean): GetFeaturesResult {
  let entityId = "";
  let found = false;
  let n = 0;
  let missing: string[] | undefined;
  let stale: string[] | undefined;
  let aggregates: WindowAggregate[] | undefined;
  let readTimeMs = 0;
  let version: string | undefined;
  const end = r.end;
  while (r.pos < end) {
    const tag = r.tag();
    switch (tag) {
      case (1 << 3) | WireType.Bytes:
        r.bytesRange();
        entityId = utf8Slice(buf, r.fieldStart, r.fieldEnd);
        break;
      case (2 << 3) | WireType.Bytes:
        r.bytesRange();
        readEntry(r, r.fieldStart, r.fieldEnd, n++);
        break;
      case (3 << 3) | WireType.Varint:
        found = r.varint() !== 0;
        break;
      case (4 << 3) | WireType.Bytes:
        r.bytesRange();
        if (missing === undefined) missing = [];
        missing.push(internName(buf, r.fieldStart, r.fieldEnd));
        break;
      case (5 << 3) | WireType.Bytes:
        r.bytesRange();
        if (stale === undefined) stale = [];
        stale.push(internName(buf, r.fieldStart, r.fieldEnd));
        break;
      case (6 << 3) | WireType.Bytes:
        r.bytesRange();
        if (aggregates === undefined) aggregates = [];
        aggregates.push(readAggregate(r, r.fieldStart, r.fieldEnd));
        break;
      case (7 << 3) | WireType.Varint:
        readTimeMs = int64Number(r);
        break;
      case (8 << 3) | WireType.Bytes:
        r.bytesRange();
        version = utf8Slice(buf, r.fieldStart, r.fieldEnd);
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return {
    entityId,
    found,
    features: buildFeatures(n),
    missing: missing ?? NO_NAMES,
    stale: stale ?? NO_NAMES,
    aggregates: aggregates ?? NO_AGGREGATES,
    readTimeMs,
    eventTimes: eventTimes ? buildEventTimes(n) : undefined,
    version,
  };
}

/** A WindowAggregate message in r.buf[start,end); leaves `r` after it. */
function readAggregate(r: ProtoReader, start: number, end: number): WindowAggregate {
  const outerEnd = r.end;
  r.pos = start;
  r.end = end;
  const a: WindowAggregate = { feature: "", windowMs: 0, count: 0, sum: 0, min: 0, max: 0, mean: 0 };
  while (r.pos < end) {
    const tag = r.tag();
    switch (tag) {
      case (1 << 3) | WireType.Bytes:
        r.bytesRange();
        a.feature = internName(r.buf, r.fieldStart, r.fieldEnd);
        break;
      case (2 << 3) | WireType.Varint:
        a.windowMs = int64Number(r);
        break;
      case (3 << 3) | WireType.Varint:
        a.count = int64Number(r);
        break;
      case (4 << 3) | WireType.Fixed64:
        a.sum = r.double();
        break;
      case (5 << 3) | WireType.Fixed64:
        a.min = r.double();
        break;
      case (6 << 3) | WireType.Fixed64:
        a.max = r.double();
        break;
      case (7 << 3) | WireType.Fixed64:
        a.mean = r.double();
        break;
      default:
        r.skip(tag & 7);
    }
  }
  r.end = outerEnd;
  return a;
}

/** Decodes a BatchGetResponse; with `eventTimes`, every result's `eventTimes` is filled. */
export function decodeBatchGetResponse(buf: Uint8Array, eventTimes = false): BatchGetResult {
  const r = reader.reset(buf);
  const out: BatchGetResult = { results: [], hits: 0, misses: 0, version: "" };
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const next = r.pos;
      out.results.push(decodeResult(r.reset(buf, r.fieldStart, r.fieldEnd), buf, eventTimes));
      r.reset(buf, next, buf.length);
    } else if (tag === ((2 << 3) | WireType.Varint)) out.hits = r.varint();
    else if (tag === ((3 << 3) | WireType.Varint)) out.misses = r.varint();
    else if (tag === ((4 << 3) | WireType.Bytes)) {
      r.bytesRange();
      out.version = utf8Slice(buf, r.fieldStart, r.fieldEnd);
    } else r.skip(tag & 7);
  }
  return out;
}

/** Decodes a message whose only field of interest is varint field 1 (BatchSet's `written`, Delete's `deleted`). */
export function decodeField1Varint(buf: Uint8Array): number {
  const r = reader.reset(buf);
  let v = 0;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Varint)) v = r.varint();
    else r.skip(tag & 7);
  }
  return v;
}

function decodeDeleted(body: Uint8Array): boolean {
  return decodeField1Varint(body) !== 0;
}

/** The string field whose length prefix is at r.pos: a feature name. */
function readName(r: ProtoReader): string {
  r.bytesRange();
  return internName(r.buf, r.fieldStart, r.fieldEnd);
}

/** Decodes a SetFeaturesResponse (skipped = 1); nothing skipped is one shared frozen result. */
export function decodeSetFeaturesResponse(buf: Uint8Array): SetResult {
  const r = reader.reset(buf);
  let skipped: string[] | undefined;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      if (skipped === undefined) skipped = [];
      skipped.push(readName(r));
    } else r.skip(tag & 7);
  }
  return skipped === undefined ? NOTHING_SKIPPED : { skipped };
}

/** Decodes an UpdateFeaturesResponse: skipped (1), values (2, a map). */
export function decodeUpdateFeaturesResponse(buf: Uint8Array): UpdateResult {
  const r = reader.reset(buf);
  let skipped: string[] | undefined;
  const values = Object.create(null) as Features;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      if (skipped === undefined) skipped = [];
      skipped.push(readName(r));
    } else if (tag === ((2 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const next = r.pos;
      readFeatureEntry(r, r.fieldStart, r.fieldEnd, values);
      r.reset(buf, next, buf.length);
    } else r.skip(tag & 7);
  }
  return { skipped: skipped ?? NO_NAMES, values };
}

/** Decodes a FeatureSetInfo: feature_set (1), current (2), previous (3), dropping (4). */
export function decodeFeatureSetInfo(buf: Uint8Array): FeatureSetInfo {
  const r = reader.reset(buf);
  const info: FeatureSetInfo = { featureSet: "", current: "", previous: "", dropping: [] };
  while (!r.done()) {
    const tag = r.tag();
    if ((tag & 7) === WireType.Bytes && tag >>> 3 >= 1 && tag >>> 3 <= 4) {
      r.bytesRange();
      const s = utf8Slice(buf, r.fieldStart, r.fieldEnd);
      switch (tag >>> 3) {
        case 1:
          info.featureSet = s;
          break;
        case 2:
          info.current = s;
          break;
        case 3:
          info.previous = s;
          break;
        default:
          info.dropping.push(s);
      }
    } else r.skip(tag & 7);
  }
  return info;
}

// ---- each method's encode -> call -> decode, once -------------------------------------------

/**
 * One method as a caller runs it: how its typed arguments (up to three; unused ones are
 * `undefined`) become a request body, and how the answer body becomes the result.
 */
export interface TypedMethod<A, B, C, R> {
  readonly method: Method;
  /** Name of the answer message, for the error about an undecodable one. */
  readonly answer: string;
  encode(w: ProtoWriter, a: A, b: B, c: C): void;
  /** Reads an answer made in this process; whatever it throws propagates as is. */
  decode(body: Uint8Array): R;
  /**
   * Reads an answer from a server: an undecodable one throws FeatureStoreError INTERNAL
   * "malformed <answer> from the server". Made once per method, so that `then` gets no new
   * function per call.
   */
  readonly decodeAnswer: (body: Uint8Array) => R;
}

function typedMethod<A, B, C, R>(
  method: Method,
  answer: string,
  encode: (w: ProtoWriter, a: A, b: B, c: C) => void,
  decode: (body: Uint8Array) => R,
): TypedMethod<A, B, C, R> {
  return {
    method,
    answer,
    encode,
    decode,
    decodeAnswer: (body) => {
      try {
        return decode(body);
      } catch (err) {
        throw malformedAnswer(answer, err);
      }
    },
  };
}

function malformedAnswer(answer: string, err: unknown): FeatureStoreError {
  const e = FeatureStoreError.from(err);
  return new FeatureStoreError(Code.Internal, `malformed ${answer} from the server: ${e.message}`, {
    cause: err,
  });
}

type Names = readonly string[] | undefined;
type Read = ReadOptions | undefined;

/** GetFeatures; its result's `eventTimes` is undefined (see `getFeaturesMethod`). */
export const GET_FEATURES: TypedMethod<string, Names, Read, GetFeaturesResult> = typedMethod(
  Method.GetFeatures,
  "GetFeaturesResponse",
  encodeGetFeaturesRequest,
  (body) => decodeGetFeaturesResponse(body, 0, body.length, false),
);
/** GetFeatures whose result carries `eventTimes`. */
export const GET_FEATURES_TIMED: TypedMethod<string, Names, Read, GetFeaturesResult> = typedMethod(
  Method.GetFeatures,
  "GetFeaturesResponse",
  encodeGetFeaturesRequest,
  (body) => decodeGetFeaturesResponse(body, 0, body.length, true),
);
export const BATCH_GET: TypedMethod<readonly string[], Names, Read, BatchGetResult> = typedMethod(
  Method.BatchGet,
  "BatchGetResponse",
  encodeBatchGetRequest,
  (body) => decodeBatchGetResponse(body, false),
);
export const BATCH_GET_TIMED: TypedMethod<readonly string[], Names, Read, BatchGetResult> = typedMethod(
  Method.BatchGet,
  "BatchGetResponse",
  encodeBatchGetRequest,
  (body) => decodeBatchGetResponse(body, true),
);

/** True when a read's results carry event times: asked for, or a max age was given. */
function wantsEventTimes(options: Read): boolean {
  return options !== undefined && (options.eventTimes === true || (options.maxAgeMs ?? 0) > 0);
}

/** The GetFeatures descriptor for a read with `options`. */
export function getFeaturesMethod(options: Read): typeof GET_FEATURES {
  return wantsEventTimes(options) ? GET_FEATURES_TIMED : GET_FEATURES;
}

/** The BatchGet descriptor for a read with `options`. */
export function batchGetMethod(options: Read): typeof BATCH_GET {
  return wantsEventTimes(options) ? BATCH_GET_TIMED : BATCH_GET;
}

/** Resolves with the features not written (SetFeaturesResponse.skipped). */
export const SET_FEATURES: TypedMethod<string, FeaturesInput, SetOptions | undefined, SetResult> =
  typedMethod(Method.SetFeatures, "SetFeaturesResponse", encodeSetFeatures, decodeSetFeaturesResponse);
/** Resolves with the count written (BatchSetResponse.written). */
export const BATCH_SET: TypedMethod<readonly SetFeaturesItem[], undefined, undefined, number> = typedMethod(
  Method.BatchSet,
  "BatchSetResponse",
  encodeBatchSetRequest,
  decodeField1Varint,
);
/** Resolves true if anything was deleted (DeleteFeaturesResponse.deleted). */
export const DELETE_FEATURES: TypedMethod<string, Names, VersionOptions | undefined, boolean> = typedMethod(
  Method.DeleteFeatures,
  "DeleteFeaturesResponse",
  encodeDeleteFeaturesRequest,
  decodeDeleted,
);
export const UPDATE_FEATURES: TypedMethod<
  string,
  readonly FeatureUpdateInput[],
  UpdateOptions | undefined,
  UpdateResult
> = typedMethod(
  Method.UpdateFeatures,
  "UpdateFeaturesResponse",
  encodeUpdateFeaturesRequest,
  decodeUpdateFeaturesResponse,
);
export const PUBLISH_VERSION: TypedMethod<string, string, undefined, FeatureSetInfo> = typedMethod(
  Method.PublishVersion,
  "FeatureSetInfo",
  encodeSetVersionRequest,
  decodeFeatureSetInfo,
);
export const ROLLBACK_VERSION: TypedMethod<string, undefined, undefined, FeatureSetInfo> = typedMethod(
  Method.RollbackVersion,
  "FeatureSetInfo",
  encodeFeatureSetRequest,
  decodeFeatureSetInfo,
);
export const DROP_VERSION: TypedMethod<string, string, undefined, FeatureSetInfo> = typedMethod(
  Method.DropVersion,
  "FeatureSetInfo",
  encodeSetVersionRequest,
  decodeFeatureSetInfo,
);
export const GET_FEATURE_SET: TypedMethod<string, undefined, undefined, FeatureSetInfo> = typedMethod(
  Method.GetFeatureSet,
  "FeatureSetInfo",
  encodeFeatureSetRequest,
  decodeFeatureSetInfo,
);

/** What `callTyped` runs a request through: request body `buf[start, end)` of `method` in, answer body out. */
export interface SyncCaller {
  call(method: number, buf: Uint8Array, start: number, end: number): Uint8Array;
}

/** What `callTypedAsync` runs a request through (a client transport is one). */
export interface AsyncCaller {
  call(method: number, body: Uint8Array, deadlineMs: number): Promise<Uint8Array>;
}

/**
 * Runs `m` synchronously: encodes the request into `w` (reset first), hands it to `caller`,
 * decodes the answer. Encoding and caller errors are thrown as they are.
 */
export function callTyped<A, B, C, R>(
  m: TypedMethod<A, B, C, R>,
  w: ProtoWriter,
  caller: SyncCaller,
  a: A,
  b: B,
  c: C,
): R {
  w.reset();
  m.encode(w, a, b, c);
  return m.decode(caller.call(m.method, w.bytes, 0, w.pos));
}

/**
 * Runs `m` through an asynchronous `caller`: encodes the request into `w` (reset first; the
 * caller copies the body before it returns), calls, decodes the answer. Never throws: a request
 * that cannot be encoded rejects with FeatureStoreError.from of the error, an undecodable answer
 * rejects INTERNAL. Allocates the request view and the `then` promise, nothing else.
 */
export function callTypedAsync<A, B, C, R>(
  m: TypedMethod<A, B, C, R>,
  w: ProtoWriter,
  caller: AsyncCaller,
  a: A,
  b: B,
  c: C,
  deadlineMs: number,
): Promise<R> {
  w.reset();
  try {
    m.encode(w, a, b, c);
  } catch (err) {
    return Promise.reject(FeatureStoreError.from(err));
  }
  return caller.call(m.method, w.view(), deadlineMs).then(m.decodeAnswer);
}
