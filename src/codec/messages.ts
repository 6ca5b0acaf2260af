/**
 * Typed requests and results of the five methods, their protobuf encoding for the client side
 * (what a caller sends, what it gets back), and each method's encode -> call -> decode, written
 * once (`TypedMethod`) and run by the TCP client (`callTypedAsync`, over a transport) and by the
 * embedded store (`callTyped`, in-process).
 */
import {
  buildFeatures,
  type Features,
  type FeaturesInput,
  internName,
  readEntry,
  writeFeatureMap,
} from "./features.ts";
import { Method } from "./frame.ts";
import { Code, FeatureStoreError } from "./status.ts";
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

/** Options of one write: the fields of SetFeaturesItem beside the entity and its features. */
export interface SetOptions {
  /** Time to live of the whole record in ms from this write; 0 or absent = server default. */
  ttlMs?: number;
  /** Replace the record instead of merging into it (default false). */
  replace?: boolean;
}

/** One write of SetFeatures / BatchSet. */
export interface SetFeaturesItem extends SetOptions {
  entityId: string;
  features: FeaturesInput;
}

/** The five methods with typed arguments, shared by the TCP client and the embedded store. */
export interface FeatureStoreApi {
  getFeatures(entityId: string, featureNames?: readonly string[]): MaybePromise<GetFeaturesResult>;
  batchGet(entityIds: readonly string[], featureNames?: readonly string[]): MaybePromise<BatchGetResult>;
  setFeatures(entityId: string, features: FeaturesInput, options?: SetOptions): MaybePromise<void>;
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
  encodeSetFeatures(w, item.entityId, item.features, item);
}

/** SetFeaturesRequest from the arguments of `setFeatures`, without building a SetFeaturesItem. */
export function encodeSetFeatures(
  w: ProtoWriter,
  entityId: string,
  features: FeaturesInput,
  options: SetOptions | undefined,
): void {
  w.stringField(1, entityId);
  writeFeatureMap(w, 2, features);
  const ttlMs = options?.ttlMs;
  if (ttlMs) {
    w.tag(3, WireType.Varint);
    w.varint(ttlMs);
  }
  if (options?.replace) {
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
  return decodeResult(reader.reset(buf, start, end), buf);
}

/** The GetFeaturesResponse under `r` (whose range is the message). */
function decodeResult(r: ProtoReader, buf: Uint8Array): GetFeaturesResult {
  let entityId = "";
  let found = false;
  let n = 0;
  const missing: string[] = [];
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
        missing.push(internName(buf, r.fieldStart, r.fieldEnd));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return { entityId, found, features: buildFeatures(n), missing };
}

export function decodeBatchGetResponse(buf: Uint8Array): BatchGetResult {
  const r = reader.reset(buf);
  const out: BatchGetResult = { results: [], hits: 0, misses: 0 };
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | WireType.Bytes)) {
      r.bytesRange();
      const next = r.pos;
      out.results.push(decodeResult(r.reset(buf, r.fieldStart, r.fieldEnd), buf));
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

function decodeDeleted(body: Uint8Array): boolean {
  return decodeField1Varint(body) !== 0;
}

function toVoid(): void {}

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

export const GET_FEATURES: TypedMethod<string, Names, undefined, GetFeaturesResult> = typedMethod(
  Method.GetFeatures,
  "GetFeaturesResponse",
  encodeGetFeaturesRequest,
  decodeGetFeaturesResponse,
);
export const BATCH_GET: TypedMethod<readonly string[], Names, undefined, BatchGetResult> = typedMethod(
  Method.BatchGet,
  "BatchGetResponse",
  encodeBatchGetRequest,
  decodeBatchGetResponse,
);
export const SET_FEATURES: TypedMethod<string, FeaturesInput, SetOptions | undefined, void> = typedMethod(
  Method.SetFeatures,
  "SetFeaturesResponse",
  encodeSetFeatures,
  toVoid,
);
/** Resolves with the count written (BatchSetResponse.written). */
export const BATCH_SET: TypedMethod<readonly SetFeaturesItem[], undefined, undefined, number> = typedMethod(
  Method.BatchSet,
  "BatchSetResponse",
  encodeBatchSetRequest,
  decodeField1Varint,
);
/** Resolves true if anything was deleted (DeleteFeaturesResponse.deleted). */
export const DELETE_FEATURES: TypedMethod<string, Names, undefined, boolean> = typedMethod(
  Method.DeleteFeatures,
  "DeleteFeaturesResponse",
  encodeDeleteFeaturesRequest,
  decodeDeleted,
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
