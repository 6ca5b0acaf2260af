/**
 * The read half of the stores that keep the typed-array cache in front of a backend (the SQLite
 * tier, the Redis near-cache): a handle is a cache handle, or SIDE for the one record held beside
 * the cache (too large for it, or just loaded and not cacheable), valid like any handle until
 * the next store call. Absence is cached as ABSENT, a record no write can produce.
 */
import { type CacheOptions, ShardedLruCache } from "../cache/index.ts";

/** Cached for an entity known to be absent: a record never starts with a 0 byte (tag 0 is invalid). */
export const ABSENT = new Uint8Array([0]);
/** The handle of the record served from beside the cache. */
export const SIDE = 0x7fffffff;
/** What `lookup` answers when the cache knows nothing of the entity. */
export const NOT_CACHED = -3;

export abstract class CacheFront {
  readonly cache: ShardedLruCache;
  private side: Uint8Array = ABSENT;
  private sideExpiresAt = 0;

  constructor(options: CacheOptions) {
    this.cache = new ShardedLruCache(options);
  }

  /** The cache's answer for key[start,end): a handle, -1 (known absent) or NOT_CACHED. */
  protected lookup(key: Uint8Array, start: number, end: number): number {
    const cache = this.cache;
    const h = cache.find(key, start, end);
    if (h < 0) return NOT_CACHED;
    if (cache.valueLength(h) === 1 && cache.arenaOf(h)[cache.valueOffset(h)] === 0) return -1;
    return h;
  }

  /** Serves `record` from beside the cache: returns the SIDE handle. */
  protected serveSide(record: Uint8Array, expiresAt: number): number {
    this.side = record;
    this.sideExpiresAt = expiresAt;
    return SIDE;
  }

  arena(handle: number): Uint8Array {
    return handle === SIDE ? this.side : this.cache.arenaOf(handle);
  }
  offset(handle: number): number {
    return handle === SIDE ? 0 : this.cache.valueOffset(handle);
  }
  length(handle: number): number {
    return handle === SIDE ? this.side.length : this.cache.valueLength(handle);
  }
  copyTo(handle: number, dst: Uint8Array, at: number): number {
    if (handle !== SIDE) return this.cache.copyValue(handle, dst, at);
    dst.set(this.side, at);
    return this.side.length;
  }
  expiresAt(handle: number): number {
    return handle === SIDE ? this.sideExpiresAt : this.cache.expiresAt(handle);
  }
}
