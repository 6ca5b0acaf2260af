/**
 * The store in-process: a Bun inference service holds the cache itself and calls the same five
 * methods as over the network, with the same semantics (the requests go through
 * FeatureService.handle), but synchronously and without a socket.
 */
import type { CacheOptions } from "../cache/index.ts";
import type { FeaturesInput } from "../codec/features.ts";
import { isWriteMethod, Method } from "../codec/frame.ts";
import {
  type BatchGetResult,
  decodeBatchGetResponse,
  decodeField1Varint,
  decodeGetFeaturesResponse,
  encodeBatchGetRequest,
  encodeBatchSetRequest,
  encodeDeleteFeaturesRequest,
  encodeGetFeaturesRequest,
  encodeSetFeaturesRequest,
  type FeatureStoreApi,
  type GetFeaturesResult,
  type SetFeaturesItem,
} from "../codec/messages.ts";
import { ProtoWriter } from "../codec/wire.ts";
import { MemoryStore } from "../store/memory.ts";
import type { Durability } from "../store/sqlite/backend.ts";
import { TieredStore } from "../store/tiered.ts";
import { FeatureService, type ServiceOptions } from "./service.ts";

/** Synchronous implementation of FeatureStoreApi over an in-process FeatureService. */
export class EmbeddedFeatureStore implements FeatureStoreApi {
  private readonly req = new ProtoWriter(4096);
  private readonly res = new ProtoWriter(4096);

  /**
   * @param durable the store behind `service` when it keeps files: every write call returns
   *   only once its commit is durable, and `close()` releases the files.
   */
  constructor(
    readonly service: FeatureService,
    private readonly durable: TieredStore | null = null,
  ) {}

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

  private run(method: number): Uint8Array {
    this.res.reset();
    this.service.handle(method, this.req.bytes, 0, this.req.pos, this.res);
    if (this.durable !== null && isWriteMethod(method)) {
      const err = this.durable.commit();
      if (err !== null) throw err;
    }
    return this.res.view();
  }

  getFeatures(entityId: string, featureNames?: readonly string[]): GetFeaturesResult {
    this.req.reset();
    encodeGetFeaturesRequest(this.req, entityId, featureNames);
    return decodeGetFeaturesResponse(this.run(Method.GetFeatures));
  }

  batchGet(entityIds: readonly string[], featureNames?: readonly string[]): BatchGetResult {
    this.req.reset();
    encodeBatchGetRequest(this.req, entityIds, featureNames);
    return decodeBatchGetResponse(this.run(Method.BatchGet));
  }

  setFeatures(
    entityId: string,
    features: FeaturesInput,
    options: { ttlMs?: number; replace?: boolean } = {},
  ): void {
    this.req.reset();
    encodeSetFeaturesRequest(this.req, { entityId, features, ...options });
    this.run(Method.SetFeatures);
  }

  batchSet(items: readonly SetFeaturesItem[]): number {
    this.req.reset();
    encodeBatchSetRequest(this.req, items);
    return decodeField1Varint(this.run(Method.BatchSet));
  }

  deleteFeatures(entityId: string, featureNames?: readonly string[]): boolean {
    this.req.reset();
    encodeDeleteFeaturesRequest(this.req, entityId, featureNames);
    return decodeField1Varint(this.run(Method.DeleteFeatures)) !== 0;
  }
}
