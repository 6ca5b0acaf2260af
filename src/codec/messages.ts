/**
 * Typed requests and results of the five methods, and their protobuf encoding for the client
 * side (what a caller sends, what it gets back). Shared by the TCP client and the embedded store.
 */
import {
  type Features,
  type FeaturesInput,
  internName,
  readFeatureEntry,
  writeFeatureMap,
} from "./features.ts";
import { ProtoReader, type ProtoWriter, utf8Slice, WireType } from "./wire.ts";

/** Result of GetFeatures: `found` is false for a missing or expired entity (a miss is not an error). */
export interface GetFeaturesResult {
  entityId: string;
  found: boolean;
  /** Null-prototype object: a feature may be called anything, "__proto__" included. */
  features: Features;
  /** Requested names the entity does not have (all of them when not found). */
  missing: string[];
}

export interface BatchGetResult {
  /** One result per requested id, in request order. */
  results: GetFeaturesResult[];
  hits: number;
  misses: number;
}

/** One write of SetFeatures / BatchSet. */
export interface SetFeaturesItem {
  entityId: string;
  features: FeaturesInput;
  /** Time to live of the whole record in ms from this write; 0 or absent = server default. */
  ttlMs?: number;
  /** Replace the record instead of merging into it (default false). */
  replace?: boolean;
}

/** The five methods with typed arguments, shared by the TCP client and the embedded store. */
export interface FeatureStoreApi {
  getFeatures(entityId: string, featureNames?: readonly string[]): MaybePromise<GetFeaturesResult>;
  batchGet(entityIds: readonly string[], featureNames?: readonly string[]): MaybePromise<BatchGetResult>;
  setFeatures(
    entityId: string,
    features: FeaturesInput,
    options?: { ttlMs?: number; replace?: boolean },
  ): MaybePromise<void>;
  batchSet(items: readonly SetFeaturesItem[]): MaybePromise<number>;
  deleteFeatures(entityId: string, featureNames?: readonly string[]): MaybePromise<boolean>;
}

/** Embedded calls answer synchronously (a hit never creates a Promise); remote calls return one. */
export type MaybePromise<T> = T | Promise<T>;

export function encodeGetFeaturesRequest(w: ProtoWriter, entityId: string, names?: readonly string[]): void {
  w.stringField(1, entityId);
  if (names) for (const n of names) w.stringField(2, n);
}

export function encodeBatchGetRequest(
  w: ProtoWriter,
  ids: readonly string[],
  names?: readonly string[],
): void {
  for (const id of ids) w.stringField(1, id);
  if (names) for (const n of names) w.stringField(2, n);
}

export function encodeSetFeaturesRequest(w: ProtoWriter, item: SetFeaturesItem): void {
  w.stringField(1, item.entityId);
  writeFeatureMap(w, 2, item.features);
  if (item.ttlMs) {
    w.tag(3, WireType.Varint);
    w.varint(item.ttlMs);
  }
  if (item.replace) {
    w.tag(4, WireType.Varint);
    w.byte(1);
  }
}

export function encodeBatchSetRequest(w: ProtoWriter, items: readonly SetFeaturesItem[]): void {
  for (const item of items) {
    const at = w.beginLength(1);
    encodeSetFeaturesRequest(w, item);
    w.endLength(at);
  }
}

export const encodeDeleteFeaturesRequest = encodeGetFeaturesRequest;

const reader = new ProtoReader();

/** Decodes a GetFeaturesResponse in buf[start,end). */
export function decodeGetFeaturesResponse(buf: Uint8Array, start = 0, end = buf.length): GetFeaturesResult {
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

export function decodeBatchGetResponse(buf: Uint8Array): BatchGetResult {
  const r = reader.reset(buf);
  const out: BatchGetResult = { results: [], hits: 0, misses: 0 };
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const next = r.pos;
      out.results.push(decodeGetFeaturesResponse(buf, r.fieldStart, r.fieldEnd));
      r.reset(buf, next, buf.length);
    } else if (tag === ((2 << 3) | WireType.Varint)) out.hits = r.varint();
    else if (tag === ((3 << 3) | WireType.Varint)) out.misses = r.varint();
    else r.skip(tag & 7);
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
