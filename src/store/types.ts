/**
 * The store behind the service. Records are opaque byte strings (the encoded feature map of
 * one entity, see src/service/record.ts) keyed by entity-id bytes.
 *
 * Reads are synchronous by contract: `find` answers from memory (or, on a miss of the tiered
 * store, from its embedded backend) and hands back a handle to bytes that stay valid until the
 * next store call. Writes are applied at once (a later read sees them) and become durable at
 * the next commit: `sync()` is what a transport awaits before it acknowledges a write.
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

/** A store whose writes become durable after they are applied (src/store/tiered.ts), or at once (memory). */
export interface DurableStore extends RecordStore {
  /**
   * Resolves once every write applied so far is durable, rejects with a FeatureStoreError if
   * they could not be made so (none of them is then kept); null when nothing is pending.
   */
  sync(): Promise<void> | null;
  /** Why writes are failing now, for the readiness probe; null while they succeed. */
  readonly writeFailure: string | null;
  /** Makes pending writes durable and releases the store's resources. */
  close(): void;
}
