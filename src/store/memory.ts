/** The in-memory record store: the typed-array sharded LRU of src/cache. */
import { CacheError, type CacheOptions, ShardedLruCache } from "../cache/index.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";
import { CachePrefixDrop } from "./cache-front.ts";
import type { DurableStore, PrefixDrop } from "./types.ts";

/** The cache is the store (STORE=memory): nothing survives the process; writes are "durable" at once. */
export class MemoryStore implements DurableStore {
  readonly cache: ShardedLruCache;
  readonly ready = true;
  readonly writeFailure = null;
  private readonly clock: () => number;

  constructor(options: CacheOptions) {
    this.cache = new ShardedLruCache(options);
    this.clock = options.now ?? Date.now;
  }

  find(key: Uint8Array, start: number, end: number): number {
    return this.cache.find(key, start, end);
  }
  arena(handle: number): Uint8Array {
    return this.cache.arenaOf(handle);
  }
  offset(handle: number): number {
    return this.cache.valueOffset(handle);
  }
  length(handle: number): number {
    return this.cache.valueLength(handle);
  }
  copyTo(handle: number, dst: Uint8Array, at: number): number {
    return this.cache.copyValue(handle, dst, at);
  }
  expiresAt(handle: number): number {
    return this.cache.expiresAt(handle);
  }
  freshUntil(handle: number): number {
    return this.cache.freshUntil(handle);
  }
  /**
   * Cache errors become FeatureStoreErrors in the operator's terms: a record too large for the
   * cache names the variables that set the bound. The service validates TTLs and ids first, so
   * anything else here is a bug of ours and stays INTERNAL.
   */
  write(
    key: Uint8Array,
    start: number,
    end: number,
    record: Uint8Array,
    ttlMs: number,
    freshUntil: number,
  ): void {
    try {
      this.cache.set(key, record, ttlMs, start, end, freshUntil);
    } catch (err) {
      if (err instanceof CacheError && err.code !== "INVALID_OPTION") {
        throw new FeatureStoreError(
          Code.ResourceExhausted,
          `the entity record (id + features) is ${end - start + record.length} bytes; the limit is ` +
            `${this.cache.maxEntryBytes} bytes (CACHE_MAX_ENTRY_BYTES, or CACHE_MAX_BYTES / SHARD_COUNT when smaller)`,
          { cause: err },
        );
      }
      throw err;
    }
  }
  remove(key: Uint8Array, start: number, end: number): boolean {
    return this.cache.delete(key, start, end);
  }
  /** Walks the cache's slots, a bounded stretch per step (see CachePrefixDrop). */
  dropPrefix(prefix: Uint8Array): PrefixDrop {
    return new CachePrefixDrop(this.cache, prefix);
  }
  now(): number {
    return this.clock();
  }
  sync(): null {
    return null;
  }
  close(): void {}
}
