/**
 * The feature store as a library: the embedded store and the service for in-process use, and
 * the typed values and errors shared with the client ("featurestore/client").
 */
export type { CacheOptions } from "./cache/index.ts";
export {
  CELL_STATUS_NAMES,
  CellStatus,
  DenseBatch,
  decodeDenseBatchGet,
  decodeDenseGet,
  type FeatureColumn,
  FeatureVectorSpec,
  type FeatureVectorSpecOptions,
} from "./codec/dense.ts";
export {
  type FeatureInput,
  type Features,
  type FeaturesInput,
  type FeatureValue,
  WindowValue,
} from "./codec/features.ts";
export { Method } from "./codec/frame.ts";
export type {
  AppendUpdate,
  BatchGetResult,
  FeatureSetInfo,
  FeatureStoreApi,
  FeatureUpdateInput,
  GetFeaturesResult,
  IncrementUpdate,
  MaybePromise,
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
} from "./codec/messages.ts";
export { Code, FeatureStoreError } from "./codec/status.ts";
export { type Config, loadConfig } from "./config/index.ts";
export { type RunningServer, startServer } from "./main.ts";
export { EmbeddedFeatureStore } from "./service/embedded.ts";
export { FeatureService, type ServiceOptions } from "./service/service.ts";
export { MemoryStore } from "./store/memory.ts";
