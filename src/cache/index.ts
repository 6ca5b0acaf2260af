/**
 * A sharded LRU cache of byte strings whose entries live in typed arrays (see `shard.ts` for the
 * byte layouts). Reads allocate nothing: `find` hashes and compares the key bytes in place and
 * returns an integer handle; the value is read through the handle.
 *
 * Handles encode `(slot << shardBits) | shard` and stay valid until the next write (`set`,
 * `delete`, `walk`, `clear`) to the cache. Only a write can move or reuse bytes; a `find` that reclaims
 * an expired entry frees space but never moves or overwrites another entry's bytes.
 */

import { ByteCopier } from "./copy.ts";
import { CacheError } from "./errors.ts";
import { hashBytes } from "./hash.ts";
import {
  C_ARENA,
  C_BYTES,
  C_ENTRIES,
  C_EVICTIONS,
  C_EXPIRATIONS,
  C_HITS,
  C_MISSES,
  COUNTER_STRIDE,
  unsafeExposeInternals as exposeShard,
  type KeyPredicate,
  Shard,
  type ShardGeometry,
  shardGeometry,
} from "./shard.ts";

export { CacheError, type CacheErrorCode } from "./errors.ts";
export { hashBytes } from "./hash.ts";
export type { KeyPredicate } from "./shard.ts";

/** Longest key accepted by `set`, bytes. */
export const MAX_KEY_BYTES = 65535;
/**
 * Default bound on key+value bytes of one entry (`maxEntryBytes`): 16 KiB, three times the largest
 * typical feature payload (5 KB). It makes arena segments 128 KiB, and compacting one a ~0.05 ms step.
 */
export const DEFAULT_MAX_ENTRY_BYTES = 16384;
/** Upper bound for `maxEntryBytes`: 16 MiB (segments are 8x that; compaction copies one). */
export const MAX_MAX_ENTRY_BYTES = 16 * 1024 * 1024;
/** Upper bound for `maxEntries` (handles are non-negative int32: slot * shardCount + shard). */
export const MAX_ENTRIES = 2 ** 30;
/** Upper bound for `shardCount`. */
export const MAX_SHARDS = 65536;
/** A shard's arena is addressed with int32 byte offsets, so it must stay below 2 GiB. */
export const MAX_ARENA_BYTES = 2 ** 31 - 1;
/** Longest TTL accepted by `set`, ms (about 285,000 years; keeps `now + ttl` an exact float). */
export const MAX_TTL_MS = 2 ** 52;

/** Options of `ShardedLruCache`. */
export interface CacheOptions {
  /** Max entries across all shards (split evenly per shard, rounded up). 1..2^30. */
  maxEntries: number;
  /** Max bytes of keys+values across all shards (split evenly per shard, rounded down). */
  maxBytes: number;
  /** Number of shards, a power of two in 1..65536. The shard is `hash & (shardCount - 1)`. */
  shardCount: number;
  /**
   * Clock in ms; default `Date.now`. Read at most once per operation, and only when it matters:
   * by `set` with a TTL and by reads that meet an entry with a TTL. Tests inject a fake clock.
   */
  now?: () => number;
  /**
   * Largest key+value bytes of one entry; default 16 KiB (`DEFAULT_MAX_ENTRY_BYTES`), at most
   * 16 MiB, and never more than one shard's byte budget. Sets the arena segment size (the next
   * power of two >= 8 entries of this size: 128 KiB by default), which bounds the longest
   * compaction pause (~0.1 ms per 256 KiB of 500-byte entries on this machine).
   */
  maxEntryBytes?: number;
}

/** Counters of one shard or of the whole cache. */
export interface CacheTotals {
  /** Live entries. */
  entries: number;
  /** Key+value bytes of live entries (what `maxBytes` bounds). */
  bytesUsed: number;
  /** Arena bytes claimed so far (segments touched x segment size); pages are committed on first touch. */
  arenaBytes: number;
  /** `find`/`get` calls that returned a value. */
  hits: number;
  /** `find`/`get` calls that returned nothing (absent or expired). */
  misses: number;
  /** Entries removed to make room (LRU order), expired or not. */
  evictions: number;
  /** Expired entries reclaimed when met by `find`/`get`/`delete`. */
  expirations: number;
}

/** `stats()` result: totals plus one row per shard. */
export interface CacheStats extends CacheTotals {
  shards: CacheTotals[];
}

/** Column offsets within a shard's row of `ShardedLruCache.counters`. */
export const COUNTER_COLUMNS = {
  hits: C_HITS,
  misses: C_MISSES,
  evictions: C_EVICTIONS,
  expirations: C_EXPIRATIONS,
  entries: C_ENTRIES,
  bytesUsed: C_BYTES,
  arenaBytes: C_ARENA,
  /** Floats per shard row. */
  stride: COUNTER_STRIDE,
} as const;

function invalid(message: string): CacheError {
  return new CacheError("INVALID_OPTION", message);
}

function checkInt(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be an integer in [${min}, ${max}]; got ${String(value)}`);
  }
  return value;
}

function randomSeed(): number {
  return crypto.getRandomValues(new Int32Array(1))[0]!;
}

/** What tests may inspect and set of a cache; see unsafeExposeInternals. */
export interface CacheInternals {
  /** Throws, naming the shard, if any shard's internal invariant is broken. O(capacity + arena). */
  checkInvariants(): void;
  /** Keys of one shard from most to least recently used (copies). */
  shardKeys(shard: number): Uint8Array[];
  /** The shard a key maps to. */
  shardOf(key: Uint8Array, start?: number, end?: number): number;
  /**
   * Fixes the 32-bit hash seed (random per cache otherwise) and ANDs `mask` (default 0xffffffff)
   * into every key hash: 0 makes every key collide. Only while the cache is empty; throws otherwise.
   */
  setHashing(seed: number, mask?: number): void;
}

/**
 * Opens a cache's internal state to tests that check its invariants and force hash collisions
 * (the pattern of node-lru-cache's `unsafeExposeInternals`). Not for production use; it may
 * change at any time.
 */
export function unsafeExposeInternals(cache: ShardedLruCache): CacheInternals {
  return exposeCache(cache);
}

/** Set by ShardedLruCache's static block, the one place outside its methods that reads its private state. */
let exposeCache: (cache: ShardedLruCache) => CacheInternals;

/**
 * Sharded, byte-bounded LRU cache with lazy TTLs. Single-threaded; all storage is in ArrayBuffers.
 *
 * ```ts
 * const cache = new ShardedLruCache({ maxEntries: 1_000_000, maxBytes: 1 << 30, shardCount: 16 });
 * cache.set(keyBytes, valueBytes, 60_000);
 * const h = cache.find(frame, keyStart, keyEnd);
 * if (h >= 0) written += cache.copyValue(h, out, written);
 * ```
 */
export class ShardedLruCache {
  /** Per-shard counters, `COUNTER_COLUMNS.stride` floats per shard; read them at scrape time. */
  readonly counters: Float64Array;
  /** Number of shards. */
  readonly shardCount: number;
  private readonly shards: Shard[];
  private readonly shardMask: number;
  private readonly shardBits: number;
  /** Slots per shard: a walk's cursor is `shard * shardSlots + slot`. */
  private readonly shardSlots: number;
  /** Random per cache, against hash flooding; tests fix it through unsafeExposeInternals. */
  private seed: number;
  /** ANDed into every key hash: -1 except in tests that force collisions. */
  private hashMask: number;
  private readonly maxEntry: number;
  private readonly now: () => number;
  private readonly copier = new ByteCopier();
  private scratch = new Uint8Array(256);

  /** Validates every option eagerly; throws `CacheError` `INVALID_OPTION` naming the option and its bounds. */
  constructor(opts: CacheOptions) {
    if (opts === null || typeof opts !== "object") throw invalid("options object is required");
    const shardCount = checkInt("shardCount", opts.shardCount, 1, MAX_SHARDS);
    if ((shardCount & (shardCount - 1)) !== 0) {
      throw invalid(`shardCount must be a power of two in [1, ${MAX_SHARDS}]; got ${shardCount}`);
    }
    const maxEntries = checkInt("maxEntries", opts.maxEntries, 1, MAX_ENTRIES);
    const maxBytes = checkInt("maxBytes", opts.maxBytes, shardCount, Number.MAX_SAFE_INTEGER);
    const maxEntryBytes = checkInt(
      "maxEntryBytes",
      opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES,
      1,
      MAX_MAX_ENTRY_BYTES,
    );
    if (opts.now !== undefined && typeof opts.now !== "function") {
      throw invalid("now must be a function returning milliseconds (default Date.now)");
    }
    const perShardEntries = Math.ceil(maxEntries / shardCount);
    const perShardBytes = Math.floor(maxBytes / shardCount);
    const geometry: ShardGeometry = shardGeometry(perShardEntries, perShardBytes, maxEntryBytes);
    if (geometry.arenaBytes > MAX_ARENA_BYTES) {
      throw invalid(
        `maxBytes / shardCount must stay below about 1.8 GiB per shard (arena of ${geometry.arenaBytes} bytes ` +
          `needed for ${perShardBytes} bytes per shard); got maxBytes ${maxBytes} over ${shardCount} shards: raise shardCount`,
      );
    }
    this.shardCount = shardCount;
    this.shardMask = shardCount - 1;
    this.shardBits = Math.log2(shardCount);
    this.shardSlots = perShardEntries;
    this.seed = randomSeed();
    this.hashMask = -1;
    this.maxEntry = geometry.maxEntryBytes;
    this.now = opts.now ?? Date.now;
    this.counters = new Float64Array(shardCount * COUNTER_STRIDE);
    this.shards = [];
    for (let i = 0; i < shardCount; i++) {
      const row = this.counters.subarray(i * COUNTER_STRIDE, (i + 1) * COUNTER_STRIDE);
      this.shards.push(new Shard(geometry, row, this.now));
    }
  }

  /** Largest key+value bytes one entry may have (`min(maxEntryBytes, maxBytes / shardCount)`). */
  get maxEntryBytes(): number {
    return this.maxEntry;
  }

  private hash(key: Uint8Array, start: number, end: number): number {
    if (start < 0 || end > key.length || start > end) {
      throw new RangeError(`key range [${start}, ${end}) outside a key of ${key.length} bytes`);
    }
    return hashBytes(key, start, end, this.seed) & this.hashMask;
  }

  /**
   * Looks up key bytes `key[start, end)` (default the whole array). Hit: returns a non-negative
   * handle, valid until the next write (set/delete/clear), counts a hit and moves the entry to MRU.
   * Miss or expired: -1 (counts a miss; an expired entry is reclaimed and counted as an
   * expiration). Allocates nothing.
   */
  find(key: Uint8Array, start = 0, end: number = key.length): number {
    const h = this.hash(key, start, end);
    const si = h & this.shardMask;
    const slot = this.shards[si]!.find(key, start, end, h);
    return slot < 0 ? -1 : (slot << this.shardBits) | si;
  }

  /** Bytes of the value behind a handle. */
  valueLength(handle: number): number {
    return this.shards[handle & this.shardMask]!.valueLength(handle >>> this.shardBits);
  }

  /** The arena holding the value behind a handle; read `valueLength` bytes from `valueOffset`. */
  arenaOf(handle: number): Uint8Array {
    return this.shards[handle & this.shardMask]!.arena;
  }

  /** Byte offset of the value behind a handle within `arenaOf(handle)`. */
  valueOffset(handle: number): number {
    return this.shards[handle & this.shardMask]!.valueOffset(handle >>> this.shardBits);
  }

  /** Absolute expiry time in ms of the entry behind a handle (0 = never). */
  expiresAt(handle: number): number {
    return this.shards[handle & this.shardMask]!.expiresAt(handle >>> this.shardBits);
  }

  /**
   * The fresh-until time `set` stored with the entry behind a handle, ms since the epoch (0 =
   * none). Reads only the slot record `find` already fetched unless the entry has one.
   */
  freshUntil(handle: number): number {
    return this.shards[handle & this.shardMask]!.freshUntil(handle >>> this.shardBits);
  }

  /**
   * Copies the value behind a handle into `out` at `offset`; returns the bytes copied. Throws
   * RangeError if it does not fit. Allocates nothing for values up to 2 KiB while `out`'s
   * ArrayBuffer stays the same from call to call (see `copy.ts`).
   */
  copyValue(handle: number, out: Uint8Array, offset: number): number {
    const shard = this.shards[handle & this.shardMask]!;
    const slot = handle >>> this.shardBits;
    const len = shard.valueLength(slot);
    if (offset < 0 || offset + len > out.length) {
      throw new RangeError(
        `value of ${len} bytes does not fit at offset ${offset} of a ${out.length}-byte buffer`,
      );
    }
    return shard.copyValue(slot, out, offset, this.copier);
  }

  /**
   * Convenience for `find` + `copyValue`: copies the value into `out` at `offset` and returns its
   * length, or -1 on a miss. If `out` is too small it copies nothing and returns `-(length) - 2`
   * (always <= -2): grow `out` to at least `offset + length` and `copyValue` the handle `find`
   * gives (the entry already counted its hit and moved to MRU).
   */
  get(key: Uint8Array, out: Uint8Array, offset = 0): number {
    const handle = this.find(key, 0, key.length);
    if (handle < 0) return -1;
    const shard = this.shards[handle & this.shardMask]!;
    const slot = handle >>> this.shardBits;
    const len = shard.valueLength(slot);
    if (offset < 0 || offset + len > out.length) return -len - 2;
    return shard.copyValue(slot, out, offset, this.copier);
  }

  /**
   * Inserts or overwrites `key[keyStart, keyEnd)` -> `value`, as most recently used, evicting
   * least recently used entries of the key's shard while it is over `maxEntries` or `maxBytes`.
   * The bytes are copied; the caller may reuse its buffers (but must not pass a view into this
   * cache's arenas as `value`). `ttlMs` 0 (default) = no expiry; else the entry expires at
   * `now() + ttlMs`. `freshUntil` is a time (ms since the epoch, 0 = none, the default) kept with
   * the entry for `freshUntil(handle)`; the cache gives it no meaning (it neither expires nor
   * evicts by it). Throws `CacheError` `KEY_TOO_LARGE` (key > 65535 bytes) or `VALUE_TOO_LARGE`
   * (key+value > `maxEntryBytes`), and RangeError for a bad ttl, fresh-until time or key range.
   */
  set(
    key: Uint8Array,
    value: Uint8Array,
    ttlMs = 0,
    keyStart = 0,
    keyEnd: number = key.length,
    freshUntil = 0,
  ): void {
    const h = this.hash(key, keyStart, keyEnd);
    const keyLen = keyEnd - keyStart;
    if (keyLen > MAX_KEY_BYTES) {
      throw new CacheError("KEY_TOO_LARGE", `key of ${keyLen} bytes exceeds the ${MAX_KEY_BYTES}-byte limit`);
    }
    if (keyLen + value.length > this.maxEntry) {
      throw new CacheError(
        "VALUE_TOO_LARGE",
        `entry of ${keyLen + value.length} bytes (key ${keyLen} + value ${value.length}) exceeds the ` +
          `${this.maxEntry}-byte limit per entry (min of maxEntryBytes and maxBytes / shardCount)`,
      );
    }
    let expiresAt = 0;
    if (ttlMs !== 0) {
      if (!(ttlMs > 0 && ttlMs <= MAX_TTL_MS)) {
        throw new RangeError(`ttlMs must be 0 (no expiry) or in (0, ${MAX_TTL_MS}]; got ${ttlMs}`);
      }
      expiresAt = this.now() + ttlMs;
    }
    if (freshUntil !== 0 && !(freshUntil > 0 && freshUntil < Number.POSITIVE_INFINITY)) {
      throw new RangeError(`freshUntil must be 0 (none) or a finite time in ms > 0; got ${freshUntil}`);
    }
    this.shards[h & this.shardMask]!.set(key, keyStart, keyEnd, h, value, expiresAt, freshUntil);
  }

  /**
   * Walks the entries slot by slot, shard after shard, from `cursor` (0 to start), handing each
   * live entry's key bytes `arena[keyStart, keyEnd)` to `remove` (a view into the cache, valid
   * during the call; `remove` must not write to the cache) and removing the entry when it answers
   * true. Stops after walking `maxSlots` slots or removing `maxRemoved` entries, whichever comes
   * first; returns the cursor to resume from, or -1 once every slot has been walked. Slots are
   * walked in id order and an entry keeps its slot while it lives, so removals (the walk's own, or
   * any between calls) never make it skip or revisit an entry; entries set between calls may be
   * walked or not. Expired entries are walked like live ones. Removals count as neither
   * evictions nor expirations. Allocates nothing.
   */
  walk(cursor: number, maxSlots: number, maxRemoved: number, remove: KeyPredicate): number {
    if (!Number.isInteger(cursor) || cursor < 0) {
      throw new RangeError(`cursor must be 0 or a cursor walk returned; got ${cursor}`);
    }
    if (!(maxSlots >= 1 && maxRemoved >= 1)) {
      throw new RangeError(`maxSlots and maxRemoved must be >= 1; got ${maxSlots} and ${maxRemoved}`);
    }
    const per = this.shardSlots;
    let si = Math.floor(cursor / per);
    let slot = cursor - si * per;
    let slotsLeft = maxSlots;
    let removalsLeft = maxRemoved;
    for (; si < this.shardCount; si++, slot = 0) {
      const shard = this.shards[si]!;
      if (slot >= shard.slotsUsed) continue;
      const next = shard.walk(slot, slotsLeft, removalsLeft, remove);
      slotsLeft -= next - slot;
      removalsLeft -= shard.walkRemoved;
      if (slotsLeft <= 0 || removalsLeft <= 0) {
        if (next < shard.slotsUsed) return si * per + next;
        return si + 1 < this.shardCount ? (si + 1) * per : -1;
      }
    }
    return -1;
  }

  /** Removes the key; true if a live entry was removed (an expired one is reclaimed, counted, and gives false). */
  delete(key: Uint8Array, start = 0, end: number = key.length): boolean {
    const h = this.hash(key, start, end);
    return this.shards[h & this.shardMask]!.delete(key, start, end, h);
  }

  /** True if a live entry exists. Counts no hit or miss, does not touch LRU order, reclaims nothing. */
  has(key: Uint8Array, start = 0, end: number = key.length): boolean {
    const h = this.hash(key, start, end);
    return this.shards[h & this.shardMask]!.has(key, start, end, h);
  }

  /** Removes every entry and releases the arenas' memory. Hit/miss/eviction/expiration counters keep counting. */
  clear(): void {
    for (const shard of this.shards) shard.clear();
  }

  /** Live entries (expired entries not yet reclaimed included). */
  get size(): number {
    let n = 0;
    for (let i = 0; i < this.shardCount; i++) n += this.counters[i * COUNTER_STRIDE + C_ENTRIES]!;
    return n;
  }

  private row(i: number): CacheTotals {
    const c = this.counters;
    const o = i * COUNTER_STRIDE;
    return {
      entries: c[o + C_ENTRIES]!,
      bytesUsed: c[o + C_BYTES]!,
      arenaBytes: c[o + C_ARENA]!,
      hits: c[o + C_HITS]!,
      misses: c[o + C_MISSES]!,
      evictions: c[o + C_EVICTIONS]!,
      expirations: c[o + C_EXPIRATIONS]!,
    };
  }

  /** Totals only: one object, for metrics scrapes. */
  totals(): CacheTotals {
    const t: CacheTotals = {
      entries: 0,
      bytesUsed: 0,
      arenaBytes: 0,
      hits: 0,
      misses: 0,
      evictions: 0,
      expirations: 0,
    };
    const c = this.counters;
    for (let i = 0; i < this.shardCount; i++) {
      const o = i * COUNTER_STRIDE;
      t.entries += c[o + C_ENTRIES]!;
      t.bytesUsed += c[o + C_BYTES]!;
      t.arenaBytes += c[o + C_ARENA]!;
      t.hits += c[o + C_HITS]!;
      t.misses += c[o + C_MISSES]!;
      t.evictions += c[o + C_EVICTIONS]!;
      t.expirations += c[o + C_EXPIRATIONS]!;
    }
    return t;
  }

  /** Totals and one row per shard. */
  stats(): CacheStats {
    const shards: CacheTotals[] = [];
    for (let i = 0; i < this.shardCount; i++) shards.push(this.row(i));
    return { ...this.totals(), shards };
  }

  // ---- string conveniences (encode the key into a reused scratch buffer) ----------------------------

  private encodeKey(key: string): number {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (this.scratch.length < key.length * 3) this.scratch = new Uint8Array(key.length * 3);
    return encodeUtf8(key, this.scratch);
  }

  /** `find` with a string key (UTF-8 encoded into a reused buffer). */
  findString(key: string): number {
    const n = this.encodeKey(key);
    return this.find(this.scratch, 0, n);
  }

  /** `get` with a string key. */
  getString(key: string, out: Uint8Array, offset = 0): number {
    const handle = this.findString(key);
    if (handle < 0) return -1;
    const len = this.valueLength(handle);
    if (offset < 0 || offset + len > out.length) return -len - 2;
    return this.copyValue(handle, out, offset);
  }

  /** `set` with a string key. */
  setString(key: string, value: Uint8Array, ttlMs = 0, freshUntil = 0): void {
    const n = this.encodeKey(key);
    this.set(this.scratch, value, ttlMs, 0, n, freshUntil);
  }

  /** `delete` with a string key. */
  deleteString(key: string): boolean {
    const n = this.encodeKey(key);
    return this.delete(this.scratch, 0, n);
  }

  /** `has` with a string key. */
  hasString(key: string): boolean {
    const n = this.encodeKey(key);
    return this.has(this.scratch, 0, n);
  }

  // ---- diagnostics ---------------------------------------------------------------------------------------

  /** Arena usage summed over shards: live block bytes vs. bytes of segments in use (fragmentation). */
  arenaUsage(): { liveBlockBytes: number; segmentBytesInUse: number } {
    let live = 0;
    let inUse = 0;
    for (const shard of this.shards) {
      const u = shard.arenaUsage();
      live += u.liveBlockBytes;
      inUse += u.segmentsInUse * u.segmentBytes;
    }
    return { liveBlockBytes: live, segmentBytesInUse: inUse };
  }

  // ---- testing: reached only through unsafeExposeInternals -----------------------------------------------

  static {
    exposeCache = (c) => ({
      checkInvariants() {
        const hashOf = (k: Uint8Array, s: number, e: number) => hashBytes(k, s, e, c.seed) & c.hashMask;
        c.shards.forEach((shard, i) => {
          try {
            exposeShard(shard).checkInvariants(hashOf);
          } catch (err) {
            throw new Error(`shard ${i}: ${(err as Error).message}`, { cause: err });
          }
        });
      },
      shardKeys(shard) {
        return exposeShard(c.shards[shard]!).keysMruToLru();
      },
      shardOf(key, start = 0, end = key.length) {
        return c.hash(key, start, end) & c.shardMask;
      },
      setHashing(seed, mask = -1) {
        if (c.size !== 0)
          throw new Error(`setHashing: the cache holds ${c.size} entries; call it while empty`);
        c.seed = seed | 0;
        c.hashMask = mask | 0;
      },
    });
  }
}

/**
 * Encodes a JS string as UTF-8 into `out` (which has room for 3 bytes per code unit); returns the
 * byte count. Lone surrogates become U+FFFD, as TextEncoder does. Allocates nothing.
 */
export function encodeUtf8(s: string, out: Uint8Array): number {
  let p = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[p++] = c;
    } else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out[p++] = 0xf0 | (c >> 18);
          out[p++] = 0x80 | ((c >> 12) & 63);
          out[p++] = 0x80 | ((c >> 6) & 63);
          out[p++] = 0x80 | (c & 63);
          continue;
        }
        c = 0xfffd;
      }
      out[p++] = 0xe0 | (c >> 12);
      out[p++] = 0x80 | ((c >> 6) & 63);
      out[p++] = 0x80 | (c & 63);
    }
  }
  return p;
}
