/**
 * The read half of the stores that keep the typed-array cache in front of a backend (the SQLite
 * tier, the Redis near-cache): a handle is a cache handle, or SIDE for the one record held beside
 * the cache (too large for it, or just loaded and not cacheable), valid like any handle until
 * the next store call. Absence is cached as ABSENT, a record no write can produce.
 */
import { type CacheOptions, type KeyPredicate, ShardedLruCache } from "../cache/index.ts";
import { recordFreshUntil } from "../codec/value-meta.ts";
import type { PrefixDrop } from "./types.ts";

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
  private sideFreshUntil = 0;

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

  /**
   * Serves `record` from beside the cache: returns the SIDE handle. `freshUntil` as
   * `freshUntil()` answers it; computed from the record when not given.
   */
  protected serveSide(
    record: Uint8Array,
    expiresAt: number,
    freshUntil: number = recordFreshUntil(record, 0, record.length),
  ): number {
    this.side = record;
    this.sideExpiresAt = expiresAt;
    this.sideFreshUntil = freshUntil;
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
  freshUntil(handle: number): number {
    return handle === SIDE ? this.sideFreshUntil : this.cache.freshUntil(handle);
  }
}

/**
 * Slots a cache prefix drop walks per record it may remove: a step of `max` walks at most
 * `max * DROP_SLOTS_PER_RECORD` slots. At 8 a step of 256 walks ~2k slot records (64 KiB of
 * metadata, well under 1 ms) and a prefix holding a tenth of the cache needs no more steps than
 * its records require.
 */
export const DROP_SLOTS_PER_RECORD = 8;

/**
 * Frees a cache's entries whose key starts with a prefix, walking its slots a bounded stretch
 * per step (the memory store's `dropPrefix`; the cache is the whole store there).
 */
export class CachePrefixDrop implements PrefixDrop {
  private cursor = 0;
  /** Entries the current step removed (counted by `matches`, which the walk obeys). */
  private removed = 0;
  private readonly matches: KeyPredicate;

  constructor(
    private readonly cache: ShardedLruCache,
    prefix: Uint8Array,
  ) {
    const p = prefix.slice();
    const n = p.length;
    this.matches = (arena, start, end) => {
      if (end - start < n) return false;
      for (let i = 0; i < n; i++) if (arena[start + i] !== p[i]) return false;
      this.removed++;
      return true;
    };
  }

  get done(): boolean {
    return this.cursor < 0;
  }

  /** Removes up to `max` (>= 1) entries, walking at most `max * DROP_SLOTS_PER_RECORD` slots. */
  step(max: number): number {
    if (this.cursor < 0) return 0;
    const limit = Math.max(1, Math.floor(max));
    this.removed = 0;
    this.cursor = this.cache.walk(this.cursor, limit * DROP_SLOTS_PER_RECORD, limit, this.matches);
    return this.removed;
  }
}
