/**
 * The service over a RedisStore in-process, waiting for its deferred answers: the five methods
 * as the transports run them, without a socket (the contract suite and the store tests).
 */
import type { FeaturesInput } from "../../src/codec/features.ts";
import {
  BATCH_GET,
  BATCH_SET,
  callTypedAsync,
  DELETE_FEATURES,
  GET_FEATURES,
  SET_FEATURES,
  type SetFeaturesItem,
  type SetOptions,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureService, type ServiceOptions, settleDeferred } from "../../src/service/service.ts";
import { RedisStore, type RedisStoreOptions } from "../../src/store/redis/store.ts";

export class RedisApi {
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
  getFeatures(id: string, names?: readonly string[]) {
    return callTypedAsync(GET_FEATURES, this.req, this.caller, id, names, undefined, 0);
  }
  batchGet(ids: readonly string[], names?: readonly string[]) {
    return callTypedAsync(BATCH_GET, this.req, this.caller, ids, names, undefined, 0);
  }
  setFeatures(id: string, features: FeaturesInput, options?: SetOptions) {
    return callTypedAsync(SET_FEATURES, this.req, this.caller, id, features, options, 0);
  }
  batchSet(items: readonly SetFeaturesItem[]) {
    return callTypedAsync(BATCH_SET, this.req, this.caller, items, undefined, undefined, 0);
  }
  deleteFeatures(id: string, names?: readonly string[]) {
    return callTypedAsync(DELETE_FEATURES, this.req, this.caller, id, names, undefined, 0);
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
