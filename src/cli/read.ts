/**
 * Reads of whole records with their exact types. The typed client turns an int and a double
 * alike into a JS number, so `get` and `export` would lose the difference between `2` and `2.0`;
 * these decoders walk the answer bytes themselves (layouts in proto/featurestore/v1) and keep
 * the FeatureValue field of each value, with its event time and max age.
 */

import { type FeatureStoreClient, type FeatureValue, Method, type ReadOptions } from "../client/index.ts";
import { readEventTime, readFeatureValue, ValueField } from "../codec/features.ts";
import { encodeBatchGetRequest, encodeGetFeaturesRequest } from "../codec/messages.ts";
import { valueMaxAge } from "../codec/value-meta.ts";
import { ProtoReader, ProtoWriter, utf8Slice, WireType } from "../codec/wire.ts";
import type { ReadType } from "./values.ts";

/** One feature with the type it is stored as. */
export interface TypedFeature {
  name: string;
  type: ReadType;
  value: FeatureValue;
  /** FeatureValue.event_time_ms: when the value was true, ms since the epoch; 0 when it has none. */
  eventTimeMs: number;
  /** FeatureValue.max_age_ms: the feature's own max age, ms; 0 when it has none. */
  maxAgeMs: number;
}

export interface TypedRecord {
  entityId: string;
  found: boolean;
  features: TypedFeature[];
  /** Requested names the entity lacks. */
  missing: string[];
  /**
   * Features the entity has but older than their own max age: the server never returns their
   * values (GetFeaturesResponse.stale), so `get` lists them and `export` counts them.
   */
  stale: string[];
}

/** FeatureValue field number (a oneof member) -> type name. */
const TYPE_OF_FIELD: Record<number, ReadType> = {
  [ValueField.Int]: "int",
  [ValueField.Double]: "double",
  [ValueField.String]: "string",
  [ValueField.Bool]: "bool",
  [ValueField.Bytes]: "bytes",
  [ValueField.FloatList]: "float_list",
  [ValueField.IntList]: "int_list",
  [ValueField.StringList]: "string_list",
  [ValueField.Window]: "window",
};

const w = new ProtoWriter(4096);

/** One BatchGet's records and the feature set version they were read in. */
export interface TypedBatch {
  records: TypedRecord[];
  /** BatchGetResponse.version: the version read; "" when the read named no feature set. */
  version: string;
}

/**
 * GetFeatures of one entity (`names` empty: all features), typed exactly. `options` may name a
 * feature set and version (ReadOptions).
 */
export async function getTyped(
  client: FeatureStoreClient,
  id: string,
  names: readonly string[],
  deadlineMs: number,
  options?: ReadOptions,
): Promise<TypedRecord> {
  w.reset();
  encodeGetFeaturesRequest(w, id, names.length > 0 ? names : undefined, options);
  const body = await client.call(Method.GetFeatures, w.view(), deadlineMs);
  const r = new ProtoReader().reset(body);
  return readRecord(r, body);
}

/** BatchGet of `ids` (one record per id, in order), typed exactly. */
export async function batchGetTyped(
  client: FeatureStoreClient,
  ids: readonly string[],
  names: readonly string[],
  deadlineMs: number,
  options?: ReadOptions,
): Promise<TypedRecord[]> {
  return (await batchGetVersioned(client, ids, names, deadlineMs, options)).records;
}

/**
 * BatchGet of `ids` with the version it read: with a feature set and no version, the server
 * resolves the published one once for the whole batch and says which (BatchGetResponse.version,
 * field 4); GetFeaturesResponse has no such field.
 */
export async function batchGetVersioned(
  client: FeatureStoreClient,
  ids: readonly string[],
  names: readonly string[],
  deadlineMs: number,
  options?: ReadOptions,
): Promise<TypedBatch> {
  w.reset();
  encodeBatchGetRequest(w, ids, names.length > 0 ? names : undefined, options);
  const body = await client.call(Method.BatchGet, w.view(), deadlineMs);
  const out: TypedBatch = { records: [], version: "" };
  const r = new ProtoReader().reset(body);
  const inner = new ProtoReader();
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      out.records.push(readRecord(inner.reset(body, r.fieldStart, r.fieldEnd), body));
    } else if (tag === ((4 << 3) | WireType.Bytes)) {
      r.bytesRange();
      out.version = utf8Slice(body, r.fieldStart, r.fieldEnd);
    } else r.skip(tag & 7);
  }
  return out;
}

/**
 * A GetFeaturesResponse: 1 entity_id, 2 map entry { 1 name, 2 FeatureValue }, 3 found, 4 missing,
 * 5 stale (the rest, aggregates and read time, are not asked for here).
 */
function readRecord(r: ProtoReader, buf: Uint8Array): TypedRecord {
  const rec: TypedRecord = { entityId: "", found: false, features: [], missing: [], stale: [] };
  const end = r.end;
  while (r.pos < end) {
    const tag = r.tag();
    switch (tag) {
      case (1 << 3) | WireType.Bytes:
        r.bytesRange();
        rec.entityId = utf8Slice(buf, r.fieldStart, r.fieldEnd);
        break;
      case (2 << 3) | WireType.Bytes: {
        r.bytesRange();
        const after = r.pos;
        rec.features.push(readEntry(buf, r.fieldStart, r.fieldEnd));
        r.pos = after;
        r.end = end;
        break;
      }
      case (3 << 3) | WireType.Varint:
        rec.found = r.varint() !== 0;
        break;
      case (4 << 3) | WireType.Bytes:
        r.bytesRange();
        rec.missing.push(utf8Slice(buf, r.fieldStart, r.fieldEnd));
        break;
      case (5 << 3) | WireType.Bytes:
        r.bytesRange();
        rec.stale.push(utf8Slice(buf, r.fieldStart, r.fieldEnd));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return rec;
}

const entryReader = new ProtoReader();
const valueReader = new ProtoReader();

function readEntry(buf: Uint8Array, start: number, end: number): TypedFeature {
  const r = entryReader.reset(buf, start, end);
  let name = "";
  let vStart = -1;
  let vEnd = -1;
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      name = utf8Slice(buf, r.fieldStart, r.fieldEnd);
    } else if (tag === ((2 << 3) | WireType.Bytes)) {
      r.bytesRange();
      vStart = r.fieldStart;
      vEnd = r.fieldEnd;
    } else r.skip(tag & 7);
  }
  const type = TYPE_OF_FIELD[oneofField(buf, vStart, vEnd)] ?? "bytes";
  const value = readFeatureValue(valueReader.reset(buf, vStart, vEnd), vStart, vEnd);
  const eventTimeMs = readEventTime;
  const maxAgeMs = valueMaxAge(buf, vStart, vEnd);
  // Keep nothing that points into the connection's buffer.
  const kept = value instanceof Float32Array ? value.slice() : value;
  return { name, type, value: kept, eventTimeMs, maxAgeMs };
}

/**
 * The field number of the oneof member of the FeatureValue buf[start,end), which names its type;
 * 0 when it has none. A stored value starts with its time metadata (`0x50 <event_time_ms>
 * [0x58 <max_age_ms>]`, src/codec/value-meta.ts), which is skipped, as is any unknown field.
 */
function oneofField(buf: Uint8Array, start: number, end: number): number {
  const r = valueReader.reset(buf, start, end);
  while (!r.done()) {
    const tag = r.tag();
    const field = tag >>> 3;
    if (TYPE_OF_FIELD[field] !== undefined) return field;
    r.skip(tag & 7);
  }
  return 0;
}
