/**
 * The feature store client (`import { FeatureStoreClient } from "featurestore/client"`).
 *
 * ```ts
 * const client = await FeatureStoreClient.connect({ servers: ["10.0.0.1:50051", "10.0.0.2:50051"] });
 * await client.setFeatures("user:42", { clicks: 3, embedding: new Float32Array([0.1, 0.2]) });
 * const { found, features } = await client.getFeatures("user:42", ["clicks"]);
 *
 * // A model's input: ids x features as one Float32Array, nothing allocated per read.
 * const spec = new FeatureVectorSpec(["clicks", { name: "embedding", width: 2 }]);
 * const batch = spec.newBatch(64);
 * const { values } = await client.getDense(ids, spec, { out: batch });
 * await client.close();
 * ```
 *
 * The typed methods encode the request, hand the bytes to a ClientTransport (TCP in
 * production, in-memory in tests) and decode the answer (`callTypedAsync` and the method
 * descriptors of codec/messages.ts, which the embedded store runs too). Every failure is a FeatureStoreError
 * whose `code` is a gRPC status code (`Code`).
 */
import {
  type DenseBatch,
  type DenseRequestOptions,
  decodeDenseAnswer,
  encodeDenseRequest,
  type FeatureVectorSpec,
} from "../codec/dense.ts";
import type { FeaturesInput } from "../codec/features.ts";
import { Method } from "../codec/frame.ts";
import {
  BATCH_SET,
  type BatchGetResult,
  batchGetMethod,
  callTypedAsync,
  DELETE_FEATURES,
  DROP_VERSION,
  type FeatureSetInfo,
  type FeatureStoreApi,
  type FeatureUpdateInput,
  GET_FEATURE_SET,
  type GetFeaturesResult,
  getFeaturesMethod,
  PUBLISH_VERSION,
  type ReadOptions,
  ROLLBACK_VERSION,
  SET_FEATURES,
  type SetFeaturesItem,
  type SetOptions,
  type SetResult,
  UPDATE_FEATURES,
  type UpdateOptions,
  type UpdateResult,
  type VersionOptions,
} from "../codec/messages.ts";
import { FeatureStoreError } from "../codec/status.ts";
import { ProtoWriter } from "../codec/wire.ts";
import { type ClientOptions, DEFAULT_DEADLINE_MS, positive } from "./options.ts";
import { TcpTransport } from "./tcp.ts";
import type { ClientTransport } from "./transport.ts";

export {
  CELL_STATUS_NAMES,
  CellStatus,
  DenseBatch,
  type DenseRequestOptions,
  decodeDenseBatchGet,
  decodeDenseGet,
  type FeatureColumn,
  FeatureVectorSpec,
  type FeatureVectorSpecOptions,
} from "../codec/dense.ts";
export {
  type FeatureInput,
  type Features,
  type FeaturesInput,
  type FeatureValue,
  WindowValue,
} from "../codec/features.ts";
export { METHOD_NAMES, Method } from "../codec/frame.ts";
export type {
  AppendUpdate,
  BatchGetResult,
  FeatureSetInfo,
  FeatureStoreApi,
  FeatureUpdateInput,
  GetFeaturesResult,
  IncrementUpdate,
  ObserveUpdate,
  ReadOptions,
  SetFeaturesItem,
  SetOptions,
  SetResult,
  SetUpdate,
  UpdateOptions,
  UpdateResult,
  VersionOptions,
  WindowAggregate,
  WindowQuery,
  WindowSpec,
} from "../codec/messages.ts";
export { CODE_NAMES, Code, FeatureStoreError } from "../codec/status.ts";
export { decodeFeatureValue, encodeFeatureValue, type ValueMeta } from "../codec/value.ts";
export { InMemoryTransport, type RequestHandler } from "./memory.ts";
export {
  type ClientOptions,
  type ClientTlsOptions,
  DEADLINE_TICK_MS,
  DEFAULT_CONNECTIONS_PER_SERVER,
  DEFAULT_DEADLINE_MS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_RECONNECT_INITIAL_MS,
  DEFAULT_RECONNECT_MAX_MS,
  type Endpoint,
} from "./options.ts";
export { TcpTransport, type TransportStats } from "./tcp.ts";
export type { ClientTransport } from "./transport.ts";

/** Per-call options. */
export interface CallOptions {
  /** Deadline of this call, ms from now; overrides the client's default. */
  deadlineMs?: number;
}

/** Options of a dense read: a max age and the feature set version to read, as in ReadOptions. */
export interface DenseReadOptions extends CallOptions, DenseRequestOptions {
  /**
   * Where to write (`spec.newBatch(rows)`, reused call after call: nothing is allocated per
   * read). Absent: a new batch per call. A batch must not be shared by reads in flight together.
   */
  out?: DenseBatch;
}

export class FeatureStoreClient implements FeatureStoreApi {
  /** Default deadline of a call, ms. */
  readonly deadlineMs: number;
  /** Requests are encoded here; the transport copies them before `call` returns. */
  private readonly w = new ProtoWriter(4096);

  /**
   * Connects a pool of TCP connections (see ClientOptions); resolves once at least one is up,
   * rejects UNAVAILABLE if none is within `deadlineMs` (and releases everything it opened).
   * Connections still down keep retrying in the background.
   */
  static async connect(opts: ClientOptions): Promise<FeatureStoreClient> {
    const transport = new TcpTransport(opts);
    try {
      await transport.ready();
    } catch (err) {
      await transport.close();
      throw err;
    }
    return new FeatureStoreClient(transport, { deadlineMs: transport.options.deadlineMs });
  }

  /**
   * A client over any transport: `new FeatureStoreClient(new InMemoryTransport(service))`.
   * @param opts.deadlineMs default deadline per call, ms (default 1000).
   */
  constructor(
    readonly transport: ClientTransport,
    opts: { deadlineMs?: number } = {},
  ) {
    this.deadlineMs = positive("deadlineMs", opts.deadlineMs, DEFAULT_DEADLINE_MS);
  }

  /**
   * Features of one entity: all of them, or only `featureNames` (the others are listed in
   * `missing`). `options`: a max age (older features are listed in `stale`, not returned),
   * windowed aggregates (`aggregates`), the feature set version to read, and `eventTimes`.
   */
  getFeatures(
    entityId: string,
    featureNames?: readonly string[],
    options?: ReadOptions & CallOptions,
  ): Promise<GetFeaturesResult> {
    const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(
      getFeaturesMethod(options),
      this.w,
      this.transport,
      entityId,
      featureNames,
      options,
      deadlineMs,
    );
  }

  /**
   * Features of several entities (one result per id, in order); `featureNames` and `options`
   * apply to each. With a feature set, every entity is read in the same version (`version`).
   */
  batchGet(
    entityIds: readonly string[],
    featureNames?: readonly string[],
    options?: ReadOptions & CallOptions,
  ): Promise<BatchGetResult> {
    const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(
      batchGetMethod(options),
      this.w,
      this.transport,
      entityIds,
      featureNames,
      options,
      deadlineMs,
    );
  }

  /**
   * The dense read: `spec`'s features of `entityIds` as one row-major Float32Array (row i =
   * entity i), with a presence mask and a status per cell, decoded straight from the BatchGet
   * answer. Missing entities and features get the spec's defaults (`found`, `present`,
   * `status` say which); a list of the wrong length is a WidthMismatch cell, not an error.
   *
   * ```ts
   * const batch = spec.newBatch(64); // once
   * const { values } = await client.getDense(ids, spec, { out: batch }); // 64 x spec.width floats
   * ```
   */
  getDense(
    entityIds: readonly string[],
    spec: FeatureVectorSpec,
    opts?: DenseReadOptions,
  ): Promise<DenseBatch> {
    const rows = entityIds.length;
    const out = opts?.out ?? spec.newBatch(rows);
    const w = this.w;
    let method: number;
    try {
      method = encodeDenseRequest(w, entityIds, spec, out, opts);
    } catch (err) {
      return Promise.reject(FeatureStoreError.from(err));
    }
    return this.transport
      .call(method, w.view(), opts?.deadlineMs ?? this.deadlineMs)
      .then((body) => decodeDenseAnswer(method, spec, body, out, rows));
  }

  /**
   * Writes features of one entity, merged into its record (or replacing it with `replace`).
   * `ttlMs` is the record's time to live from this write (0 or absent: the server default);
   * `eventTimeMs` and `maxAgeMs` go with every value. Resolves with the names not written
   * because the stored value's event time is newer (`skipped`, usually empty).
   */
  setFeatures(
    entityId: string,
    features: FeaturesInput,
    options?: SetOptions & CallOptions,
  ): Promise<SetResult> {
    const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(SET_FEATURES, this.w, this.transport, entityId, features, options, deadlineMs);
  }

  /** Writes several entities atomically with respect to validation (one invalid item rejects all); resolves with the count written. */
  batchSet(items: readonly SetFeaturesItem[], callOpts?: CallOptions): Promise<number> {
    const deadlineMs = callOpts?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(BATCH_SET, this.w, this.transport, items, undefined, undefined, deadlineMs);
  }

  /** Deletes an entity, or only `featureNames` of it; resolves true if anything was deleted. */
  deleteFeatures(
    entityId: string,
    featureNames?: readonly string[],
    options?: VersionOptions & CallOptions,
  ): Promise<boolean> {
    const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(
      DELETE_FEATURES,
      this.w,
      this.transport,
      entityId,
      featureNames,
      options,
      deadlineMs,
    );
  }

  /**
   * Changes features of one entity atomically, all or none: sets if newer, increments, appends
   * keeping the last N, windowed events. Resolves with the updates skipped (older than the
   * stored value, or than a window's retention) and the value of every incremented feature.
   *
   * ```ts
   * const { values } = await client.updateFeatures("user:42", [
   *   { name: "clicks", increment: 1 },
   *   { name: "recent", append: ["sku-9"], keepLast: 5 },
   *   { name: "spend", observe: 12.5, spec: { bucketMs: 60_000, retentionMs: 86_400_000 } },
   * ]);
   * ```
   */
  updateFeatures(
    entityId: string,
    updates: readonly FeatureUpdateInput[],
    options?: UpdateOptions & CallOptions,
  ): Promise<UpdateResult> {
    const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(UPDATE_FEATURES, this.w, this.transport, entityId, updates, options, deadlineMs);
  }

  /** Makes `version` of `featureSet` what every reader gets; the current one becomes `previous`. */
  publishVersion(featureSet: string, version: string, callOpts?: CallOptions): Promise<FeatureSetInfo> {
    return this.setCall(PUBLISH_VERSION, featureSet, version, callOpts);
  }

  /** Makes `previous` current again (FAILED_PRECONDITION when there is none). */
  rollbackVersion(featureSet: string, callOpts?: CallOptions): Promise<FeatureSetInfo> {
    return this.setCall(ROLLBACK_VERSION, featureSet, undefined, callOpts);
  }

  /**
   * Drops a version that is not current (FAILED_PRECONDITION otherwise); its entities are freed
   * in the background and it is listed in `dropping` until then.
   */
  dropVersion(featureSet: string, version: string, callOpts?: CallOptions): Promise<FeatureSetInfo> {
    return this.setCall(DROP_VERSION, featureSet, version, callOpts);
  }

  /** The state of a feature set: current, previous and dropping versions. */
  getFeatureSet(featureSet: string, callOpts?: CallOptions): Promise<FeatureSetInfo> {
    return this.setCall(GET_FEATURE_SET, featureSet, undefined, callOpts);
  }

  /** One of the four feature set calls: they differ only in the method and whether a version goes. */
  private setCall(
    method: typeof PUBLISH_VERSION | typeof ROLLBACK_VERSION | typeof DROP_VERSION | typeof GET_FEATURE_SET,
    featureSet: string,
    version: string | undefined,
    callOpts: CallOptions | undefined,
  ): Promise<FeatureSetInfo> {
    const deadlineMs = callOpts?.deadlineMs ?? this.deadlineMs;
    return callTypedAsync(method, this.w, this.transport, featureSet, version, undefined, deadlineMs);
  }

  /** A round trip that touches no data. */
  ping(callOpts?: CallOptions): Promise<void> {
    return this.transport.call(Method.Ping, EMPTY, callOpts?.deadlineMs ?? this.deadlineMs).then(toVoid);
  }

  /**
   * Raw mode: sends an encoded request body of `method` and resolves with the encoded response
   * body, undecoded. The body is a view into the connection's input, valid in the continuation
   * that receives it (until the next answer arrives on that connection): read it there, or
   * `.slice()` it to keep it. `body` may be reused as soon as this returns.
   */
  call(method: number, body: Uint8Array, deadlineMs: number = this.deadlineMs): Promise<Uint8Array> {
    return this.transport.call(method, body, deadlineMs);
  }

  /**
   * Closes the client: pending calls fail CANCELED at once (they are not awaited), sockets are
   * closed and reconnect timers stopped. Resolves when the sockets are closed; idempotent. Calls
   * made afterwards fail CANCELED.
   */
  close(): Promise<void> {
    return this.transport.close();
  }
}

const EMPTY = new Uint8Array(0);

function toVoid(): void {}
