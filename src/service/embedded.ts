/**
 * The store in-process: a Bun inference service holds the cache itself and calls the same five
 * methods as over the network, with the same semantics (the requests go through
 * FeatureService.handle), but synchronously and without a socket.
 */
import type { CacheOptions } from "../cache/index.ts";
import {
  type DenseBatch,
  decodeDenseAnswer,
  encodeDenseRequest,
  type FeatureVectorSpec,
} from "../codec/dense.ts";
import type { FeaturesInput } from "../codec/features.ts";
import { isWriteMethod } from "../codec/frame.ts";
import {
  BATCH_GET,
  BATCH_SET,
  type BatchGetResult,
  callTyped,
  DELETE_FEATURES,
  type FeatureStoreApi,
  GET_FEATURES,
  type GetFeaturesResult,
  SET_FEATURES,
  type SetFeaturesItem,
  type SetOptions,
  type SyncCaller,
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

  getFeatures(entityId: string, featureNames?: readonly string[]): GetFeaturesResult {
    return callTyped(GET_FEATURES, this.req, this.local, entityId, featureNames, undefined);
  }

  batchGet(entityIds: readonly string[], featureNames?: readonly string[]): BatchGetResult {
    return callTyped(BATCH_GET, this.req, this.local, entityIds, featureNames, undefined);
  }

  /**
   * The dense read (as `FeatureStoreClient.getDense`), synchronously: `spec`'s features of
   * `entityIds` into `out` (or a new batch), decoded straight from the service's answer.
   */
  getDense(entityIds: readonly string[], spec: FeatureVectorSpec, out?: DenseBatch): DenseBatch {
    const rows = entityIds.length;
    const o = out ?? spec.newBatch(rows);
    const w = this.req;
    const method = encodeDenseRequest(w, entityIds, spec, o);
    return decodeDenseAnswer(method, spec, this.local.call(method, w.bytes, 0, w.pos), o, rows);
  }

  setFeatures(entityId: string, features: FeaturesInput, options: SetOptions = {}): void {
    callTyped(SET_FEATURES, this.req, this.local, entityId, features, options);
  }

  batchSet(items: readonly SetFeaturesItem[]): number {
    return callTyped(BATCH_SET, this.req, this.local, items, undefined, undefined);
  }

  deleteFeatures(entityId: string, featureNames?: readonly string[]): boolean {
    return callTyped(DELETE_FEATURES, this.req, this.local, entityId, featureNames, undefined);
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
