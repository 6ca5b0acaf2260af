/**
 * The store in-process: a Bun inference service holds the cache itself and calls the same
 * methods as over the network, with the same semantics (the requests go through
 * FeatureService.handle), but synchronously and without a socket.
 */
import type { CacheOptions } from "../cache/index.ts";
import {
  type DenseBatch,
  type DenseRequestOptions,
  decodeDenseAnswer,
  encodeDenseRequest,
  type FeatureVectorSpec,
} from "../codec/dense.ts";
import type { FeaturesInput } from "../codec/features.ts";
import { isWriteMethod } from "../codec/frame.ts";
import {
  BATCH_SET,
  type BatchGetResult,
  batchGetMethod,
  callTyped,
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
  type SyncCaller,
  UPDATE_FEATURES,
  type UpdateOptions,
  type UpdateResult,
  type VersionOptions,
} from "../codec/messages.ts";
import { ProtoWriter } from "../codec/wire.ts";
import { MemoryStore } from "../store/memory.ts";
import type { Durability } from "../store/sqlite/backend.ts";
import { TieredStore } from "../store/tiered.ts";
import { FeatureService, type ServiceOptions } from "./service.ts";

/** Synchronous implementation of FeatureStoreApi over an in-process FeatureService. */
export class EmbeddedFeatureStore implements FeatureStoreApi {
  private readonly req = new ProtoWriter(4096);
  private readonly local: InProcessCall;

  /**
   * @param durable the store behind `service` when it keeps files: every write call returns
   *   only once its commit is durable, and `close()` releases the files.
   */
  constructor(
    readonly service: FeatureService,
    private readonly durable: TieredStore | null = null,
  ) {
    this.local = new InProcessCall(service, durable);
  }

  /** A store over a fresh in-memory cache: nothing survives the process. */
  static create(cache: CacheOptions, service: Partial<ServiceOptions> = {}): EmbeddedFeatureStore {
    return new EmbeddedFeatureStore(new FeatureService(new MemoryStore(cache), service));
  }

  /**
   * A durable store: the cache in front of the SQLite file in `path` (a directory, created if
   * missing), as the server's default. A write call returns once it is committed (and fsynced
   * with durability "sync", the default). Throws StoreStartError for a file that is locked by
   * another process, foreign or corrupt.
   */
  static open(opts: {
    path: string;
    durability?: Durability;
    cache: CacheOptions;
    service?: Partial<ServiceOptions>;
  }): EmbeddedFeatureStore {
    const store = TieredStore.open({
      dir: opts.path,
      durability: opts.durability ?? "sync",
      cache: opts.cache,
    });
    return new EmbeddedFeatureStore(new FeatureService(store, opts.service), store);
  }

  /** Releases the files of a durable store (pending writes are committed first). */
  close(): void {
    this.durable?.close();
  }

  /** Features of one entity (see FeatureStoreClient.getFeatures for `options`). */
  getFeatures(entityId: string, featureNames?: readonly string[], options?: ReadOptions): GetFeaturesResult {
    return callTyped(getFeaturesMethod(options), this.req, this.local, entityId, featureNames, options);
  }

  /** Features of several entities, one result per id in order, all read in one feature set version. */
  batchGet(
    entityIds: readonly string[],
    featureNames?: readonly string[],
    options?: ReadOptions,
  ): BatchGetResult {
    return callTyped(batchGetMethod(options), this.req, this.local, entityIds, featureNames, options);
  }

  /**
   * The dense read (as `FeatureStoreClient.getDense`), synchronously: `spec`'s features of
   * `entityIds` into `out` (or a new batch), decoded straight from the service's answer.
   */
  getDense(
    entityIds: readonly string[],
    spec: FeatureVectorSpec,
    out?: DenseBatch,
    options?: DenseRequestOptions,
  ): DenseBatch {
    const rows = entityIds.length;
    const o = out ?? spec.newBatch(rows);
    const w = this.req;
    const method = encodeDenseRequest(w, entityIds, spec, o, options);
    return decodeDenseAnswer(method, spec, this.local.call(method, w.bytes, 0, w.pos), o, rows);
  }

  /** Writes features of one entity; returns the names not written because stored values were newer. */
  setFeatures(entityId: string, features: FeaturesInput, options?: SetOptions): SetResult {
    return callTyped(SET_FEATURES, this.req, this.local, entityId, features, options);
  }

  batchSet(items: readonly SetFeaturesItem[]): number {
    return callTyped(BATCH_SET, this.req, this.local, items, undefined, undefined);
  }

  deleteFeatures(entityId: string, featureNames?: readonly string[], options?: VersionOptions): boolean {
    return callTyped(DELETE_FEATURES, this.req, this.local, entityId, featureNames, options);
  }

  /** Applies `updates` to one entity atomically (see FeatureStoreClient.updateFeatures). */
  updateFeatures(
    entityId: string,
    updates: readonly FeatureUpdateInput[],
    options?: UpdateOptions,
  ): UpdateResult {
    return callTyped(UPDATE_FEATURES, this.req, this.local, entityId, updates, options);
  }

  publishVersion(featureSet: string, version: string): FeatureSetInfo {
    return callTyped(PUBLISH_VERSION, this.req, this.local, featureSet, version, undefined);
  }

  rollbackVersion(featureSet: string): FeatureSetInfo {
    return callTyped(ROLLBACK_VERSION, this.req, this.local, featureSet, undefined, undefined);
  }

  dropVersion(featureSet: string, version: string): FeatureSetInfo {
    return callTyped(DROP_VERSION, this.req, this.local, featureSet, version, undefined);
  }

  getFeatureSet(featureSet: string): FeatureSetInfo {
    return callTyped(GET_FEATURE_SET, this.req, this.local, featureSet, undefined, undefined);
  }
}

/**
 * One request through the service, answered into a reused writer (the answer is a view of it,
 * valid until the next call). On a durable store, a write returns only once its commit is
 * durable, and throws the commit's error.
 */
class InProcessCall implements SyncCaller {
  private readonly res = new ProtoWriter(4096);

  constructor(
    private readonly service: FeatureService,
    private readonly durable: TieredStore | null,
  ) {}

  call(method: number, buf: Uint8Array, start: number, end: number): Uint8Array {
    this.res.reset();
    this.service.handle(method, buf, start, end, this.res);
    if (this.durable !== null && isWriteMethod(method)) {
      const err = this.durable.commit();
      if (err !== null) throw err;
    }
    return this.res.view();
  }
}
