/**
 * The store behind the service. Records are opaque byte strings (the encoded feature map of
 * one entity, see src/service/record.ts) keyed by entity-id bytes.
 *
 * Reads are synchronous by contract: `find` answers from memory and hands back a handle to
 * bytes that stay valid until the next write. A later durable or remote tier (an embedded
 * database, Redis Cluster) stands behind the memory store as a near-cache: its hits stay
 * synchronous here, and only its misses will be resolved asynchronously, by the service,
 * through an optional `loadMiss` that this interface reserves.
 */
export interface RecordStore {
  /** Handle (>= 0) of the live record for key[start,end), or -1. Counts a hit or a miss. */
  find(key: Uint8Array, start: number, end: number): number;
  /** The bytes behind a handle: `arena(h)[offset(h) .. offset(h)+length(h))`. */
  arena(handle: number): Uint8Array;
  offset(handle: number): number;
  length(handle: number): number;
  /** Copies the bytes behind a handle into dst at `at` (dst must have room); returns the count. */
  copyTo(handle: number, dst: Uint8Array, at: number): number;
  /** Absolute expiry of the record in ms since the epoch; 0 = never. */
  expiresAt(handle: number): number;
  /** Inserts or replaces the record; `ttlMs` 0 = no expiry. Throws FeatureStoreError RESOURCE_EXHAUSTED if it can never fit. */
  write(key: Uint8Array, start: number, end: number, record: Uint8Array, ttlMs: number): void;
  /** Removes the record; true if it existed. */
  remove(key: Uint8Array, start: number, end: number): boolean;
  /** Current time in ms, from the same clock as expiry. */
  now(): number;
  /** False until the store can serve (a durable store loading from disk); the readiness probe reads it. */
  readonly ready: boolean;
}
