/**
 * The store in-process: a Bun inference service holds the cache itself and calls the same five
 * methods as over the network, with the same semantics (the requests go through
 * FeatureService.handle), but synchronously and without a socket.
 */
import type { CacheOptions } from "../cache/index.ts";
import type { FeaturesInput } from "../codec/features.ts";
import { Method } from "../codec/frame.ts";
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
import { FeatureService, type ServiceOptions } from "./service.ts";

/** Synchronous implementation of FeatureStoreApi over an in-process FeatureService. */
export class EmbeddedFeatureStore implements FeatureStoreApi {
  private readonly req = new ProtoWriter(4096);
  private readonly res = new ProtoWriter(4096);

  constructor(readonly service: FeatureService) {}

  /** A store over a fresh in-memory cache. */
  static create(cache: CacheOptions, service: Partial<ServiceOptions> = {}): EmbeddedFeatureStore {
    return new EmbeddedFeatureStore(new FeatureService(new MemoryStore(cache), service));
  }

  private run(method: number): Uint8Array {
    this.res.reset();
    this.service.handle(method, this.req.bytes, 0, this.req.pos, this.res);
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
