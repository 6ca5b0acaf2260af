/**
 * The store behind the service. Records are opaque byte strings (the encoded feature map of
 * one entity, see src/service/record.ts) keyed by entity-id bytes.
 *
 * Local stores (memory, the SQLite tier) answer `find` synchronously, from memory or from their
 * embedded backend, with a handle to bytes that stay valid until the next store call; their
 * writes are applied at once (a later read sees them) and become durable at the next commit:
 * `sync()` is what a transport awaits before it acknowledges a write.
 *
 * A remote store (Redis, `RemoteStore`) answers `find` from its near-cache when it can; on a
 * miss it starts a load and answers PENDING, and the service answers the request later (a
 * `Deferred`), once `loaded()` settles. Its writes are not records but the request's own
 * change (merge, replace, delete names), so that servers sharing the store never overwrite
 * each other's features with a stale copy.
 */

/** `find` of a remote store: not in memory, a load has been started; wait for `loaded()`. */
export const PENDING = -2;

/** What every store answers reads with. */
export interface RecordReader {
  /**
   * Handle (>= 0) of the live record for key[start,end), -1 if there is none, or PENDING (remote
   * stores only). Counts a hit or a miss.
   */
  find(key: Uint8Array, start: number, end: number): number;
  /** The bytes behind a handle: `arena(h)[offset(h) .. offset(h)+length(h))`. */
  arena(handle: number): Uint8Array;
  offset(handle: number): number;
  length(handle: number): number;
  /** Copies the bytes behind a handle into dst at `at` (dst must have room); returns the count. */
  copyTo(handle: number, dst: Uint8Array, at: number): number;
  /** Absolute expiry of the record in ms since the epoch; 0 = never. */
  expiresAt(handle: number): number;
  /**
   * When the record's first feature goes stale by its own max age (`recordFreshUntil` of
   * src/codec/value-meta.ts), ms since the epoch; 0 = no feature has a max age. Kept beside the
   * record so that a plain read tests one number.
   */
  freshUntil(handle: number): number;
  /** Current time in ms, from the same clock as expiry. */
  now(): number;
  /** False until the store can serve (a durable store loading from disk); the readiness probe reads it. */
  readonly ready: boolean;
}

/**
 * Frees every record whose key starts with a prefix (a dropped feature-set version), a bounded
 * step at a time so that serving goes on between steps. Records written under the prefix after
 * the drop started may survive it (the service refuses such writes).
 */
export interface PrefixDrop {
  /** Removes up to `max` records, scanning a bounded amount; answers how many it removed. */
  step(max: number): number | Promise<number>;
  /** True once the scan has covered every record (no step is needed any more). */
  readonly done: boolean;
}

/** A local store: the service writes whole records (merged in memory) into it. */
export interface RecordStore extends RecordReader {
  /**
   * Inserts or replaces the record; `ttlMs` 0 = no expiry; `freshUntil` as `freshUntil()` answers
   * it for this record (the service computes it while building the record). Throws
   * FeatureStoreError RESOURCE_EXHAUSTED if it can never fit.
   */
  write(
    key: Uint8Array,
    start: number,
    end: number,
    record: Uint8Array,
    ttlMs: number,
    freshUntil: number,
  ): void;
  /** Removes the record; true if it existed. */
  remove(key: Uint8Array, start: number, end: number): boolean;
  /** Starts freeing the records whose key starts with `prefix`. */
  dropPrefix(prefix: Uint8Array): PrefixDrop;
}

/** What the server's life cycle needs of any store: the durability point, failures, closing. */
export interface StoreLifecycle {
  /**
   * Resolves once every write applied so far is durable, rejects with a FeatureStoreError if
   * they could not be made so (none of them is then kept); null when nothing is pending.
   */
  sync(): Promise<void> | null;
  /** Why writes are failing now, for the readiness probe; null while they succeed. */
  readonly writeFailure: string | null;
  /** Makes pending writes durable and releases the store's resources (a remote store: once closed). */
  close(): void | Promise<void>;
}

/** A local store whose writes become durable after they are applied (src/store/tiered.ts), or at once (memory). */
export interface DurableStore extends RecordStore, StoreLifecycle {}

/**
 * A store whose truth is elsewhere (Redis), shared with other servers. The service sends it the
 * change a write asks for; each call resolves once the store acknowledged it (at its durability
 * point) and rejects with a FeatureStoreError.
 */
export interface RemoteStore extends RecordReader, StoreLifecycle {
  readonly remote: true;
  /**
   * Merges the features into the entity (or replaces all of them when `replace`) and sets its
   * TTL (0 = none). `fields` alternates name and canonical FeatureValue bytes, names unique;
   * both are the caller's to give away. A field whose stored value has a newer event time
   * (`valueEventTime`, read at the canonical place by the store's script) keeps it: resolves with
   * the names so skipped. With `replace`, the names not given are deleted. Fails
   * RESOURCE_EXHAUSTED past MAX_FEATURES_PER_ENTITY.
   */
  setFeatures(id: Uint8Array, fields: Uint8Array[], replace: boolean, ttlMs: number): Promise<Uint8Array[]>;
  /** Deletes the named features (the whole entity when `names` is null); true if any existed. */
  deleteFeatures(id: Uint8Array, names: Uint8Array[] | null): Promise<boolean>;
  /**
   * Changes the named features of one entity atomically, compare-and-set: `compute` gets the
   * current canonical value of each name (null: absent) and answers the new one for each (null:
   * delete it, `undefined`: leave it). The store writes the answer only if no name changed since
   * the values it gave were read (checked by a script), else calls `compute` again with the
   * values found; `compute` must therefore be pure, and may throw a FeatureStoreError that fails
   * the update. Updates of one key from this server run one at a time, in call order. TTL:
   * `ttlMs` > 0 sets it; 0 keeps the entity's expiry, and gives an entity that did not exist
   * `defaultTtlMs` (0 = none). Fails UNAVAILABLE after too many conflicting rounds.
   */
  update(
    id: Uint8Array,
    names: Uint8Array[],
    compute: (current: (Uint8Array | null)[]) => (Uint8Array | null | undefined)[],
    ttlMs: number,
    defaultTtlMs: number,
  ): Promise<void>;
  /** Starts freeing the records whose key starts with `prefix` (on every master of a Cluster). */
  dropPrefix(prefix: Uint8Array): PrefixDrop;
  /**
   * Settles once every load started by a `find` that answered PENDING so far has landed; what
   * landed stays readable by `find` until the requests waiting for it have run again.
   * Rejects (UNAVAILABLE, RESOURCE_EXHAUSTED) when a load failed.
   */
  loaded(): Promise<void>;
}

/** True for a store that answers some reads and every write later (Redis). */
export function isRemote(store: RecordStore | RemoteStore): store is RemoteStore {
  return (store as Partial<RemoteStore>).remote === true;
}
