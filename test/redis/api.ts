/**
 * The service over a RedisStore in-process, waiting for its deferred answers: the typed API
 * (every method) as the transports run it, without a socket (the contract suites and the store
 * tests).
 */
import type { FeaturesInput } from "../../src/codec/features.ts";
import {
  BATCH_SET,
  batchGetMethod,
  callTypedAsync,
  DELETE_FEATURES,
  DROP_VERSION,
  type FeatureStoreApi,
  type FeatureUpdateInput,
  GET_FEATURE_SET,
  getFeaturesMethod,
  PUBLISH_VERSION,
  type ReadOptions,
  ROLLBACK_VERSION,
  SET_FEATURES,
  type SetFeaturesItem,
  type SetOptions,
  UPDATE_FEATURES,
  type UpdateOptions,
  type VersionOptions,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureService, type ServiceOptions, settleDeferred } from "../../src/service/service.ts";
import { RedisStore, type RedisStoreOptions } from "../../src/store/redis/store.ts";

export class RedisApi implements FeatureStoreApi {
  readonly service: FeatureService;
  private readonly req = new ProtoWriter(4096);
  private readonly caller = {
    call: (method: number, body: Uint8Array): Promise<Uint8Array> => {
      const out = new ProtoWriter(4096);
      const d = this.service.handle(method, body, 0, body.length, out);
      if (d === undefined) return Promise.resolve(out.view());
      return settleDeferred(d, out, 0, () => out.view());
    },
  };
  constructor(
    readonly store: RedisStore,
    service: Partial<ServiceOptions> = {},
  ) {
    this.service = new FeatureService(store, service);
  }
  getFeatures(id: string, names?: readonly string[], options?: ReadOptions) {
    return callTypedAsync(getFeaturesMethod(options), this.req, this.caller, id, names, options, 0);
  }
  batchGet(ids: readonly string[], names?: readonly string[], options?: ReadOptions) {
    return callTypedAsync(batchGetMethod(options), this.req, this.caller, ids, names, options, 0);
  }
  setFeatures(id: string, features: FeaturesInput, options?: SetOptions) {
    return callTypedAsync(SET_FEATURES, this.req, this.caller, id, features, options, 0);
  }
  batchSet(items: readonly SetFeaturesItem[]) {
    return callTypedAsync(BATCH_SET, this.req, this.caller, items, undefined, undefined, 0);
  }
  deleteFeatures(id: string, names?: readonly string[], options?: VersionOptions) {
    return callTypedAsync(DELETE_FEATURES, this.req, this.caller, id, names, options, 0);
  }
  updateFeatures(id: string, updates: readonly FeatureUpdateInput[], options?: UpdateOptions) {
    return callTypedAsync(UPDATE_FEATURES, this.req, this.caller, id, updates, options, 0);
  }
  publishVersion(featureSet: string, version: string) {
    return callTypedAsync(PUBLISH_VERSION, this.req, this.caller, featureSet, version, undefined, 0);
  }
  rollbackVersion(featureSet: string) {
    return callTypedAsync(ROLLBACK_VERSION, this.req, this.caller, featureSet, undefined, undefined, 0);
  }
  dropVersion(featureSet: string, version: string) {
    return callTypedAsync(DROP_VERSION, this.req, this.caller, featureSet, version, undefined, 0);
  }
  getFeatureSet(featureSet: string) {
    return callTypedAsync(GET_FEATURE_SET, this.req, this.caller, featureSet, undefined, undefined, 0);
  }
  close() {
    return this.store.close();
  }
}

/** Options of a test store: a near-cache of `entries`, generous timeouts, the given overrides. */
export function redisStoreOptions(
  target: { url?: string; clusterNodes?: string[] },
  overrides: Partial<RedisStoreOptions> & { entries?: number } = {},
) {
  return {
    cache: { maxEntries: overrides.entries ?? 1000, maxBytes: 1 << 22, shardCount: 2 },
    url: target.url,
    clusterNodes: target.clusterNodes,
    readFromReplicas: false,
    connectTimeoutMs: 2000,
    prefix: "fs:",
    maxStalenessMs: 60_000,
    commandTimeoutMs: 5000,
    waitReplicas: 0,
    waitTimeoutMs: 100,
    maxFeaturesPerEntity: 10_000,
    maxPendingLoads: 10_000,
    ...overrides,
  };
}

/** A connected store and its API. */
export async function openRedisApi(
  target: { url?: string; clusterNodes?: string[] },
  overrides: Partial<RedisStoreOptions> & { entries?: number } = {},
  service: Partial<ServiceOptions> = {},
): Promise<RedisApi> {
  const store = RedisStore.create(redisStoreOptions(target, overrides));
  await store.connection.whenConnected(10_000);
  return new RedisApi(store, service);
}
