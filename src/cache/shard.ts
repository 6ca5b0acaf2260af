/**
 * One shard of the cache: a hash index, slot records with LRU links, and an arena of key+value
 * blocks, all in typed arrays. No JS object exists per entry; the shard holds a fixed number of
 * typed arrays whatever it stores, so the garbage collector has nothing per entry to trace.
 *
 * ## Slot records (`meta`, Int32Array, 8 ints = 32 bytes per slot)
 *
 * ```
 * int  0-1  expiresAt  f64 ms via the Float64Array view `metaF[slot*4]`; 0 = never
 * int  2    prev       slot towards MRU (head), -1 at the head
 * int  3    next       slot towards LRU (tail), -1 at the tail
 * int  4    bucket     index bucket holding this slot (kept current when deletion shifts entries)
 * int  5    block      byte offset of the entry's block in the arena (also in the bucket)
 * int  6    keyWord    bits 0-15 keyLen (bytes, <= 65535); bit 16 FRESH_FLAG; bits 17-31 zero
 * int  7    valueLen   bytes
 * ```
 * 32 bytes keep a record inside one half of a 64-byte cache line, so a lookup reads one line of
 * metadata for the entry it finds. Every reader of the key length masks `keyWord` with KEY_LEN_MASK.
 *
 * ## Fresh-until times (`freshUntilMs`, Float64Array, 1 float per slot, allocated on first use)
 *
 * `freshUntilMs[slot]` is the entry's fresh-until time (ms since the epoch), meaningful only while
 * FRESH_FLAG is set in the slot's keyWord; a slot without the flag has fresh-until 0. A plain hit
 * reads keyWord anyway (the key compare), so entries without a fresh-until time cost nothing and
 * never touch the array (a cache that never sees one never allocates it; one that does pays
 * 8 bytes per slot, committed by the OS page by page as slots are flagged). It is indexed by slot,
 * and a slot keeps its id while its entry lives (compaction moves blocks, not slots; removals
 * shift index buckets, not slots), so it needs no upkeep when blocks move; a reused slot rewrites
 * its keyWord, which clears a stale flag.
 *
 * ## Index (`table`, Int32Array, 3 ints per bucket)
 *
 * Open addressing with linear probing; bucket b is `[hash, slot + 1, block]` (slot + 1 = 0 means
 * empty), so a probe compares hashes inside the table's own cache line and touches a slot record
 * only on a full 32-bit hash match. The block offset is repeated in the bucket so that the slot
 * record and the arena block are fetched in parallel: a hit costs two dependent cache misses
 * (bucket, then record and block together) instead of three (bucket, record, block); measured
 * here, ~30% off a cold lookup for 4 more bytes per bucket. The home bucket is `floor(hash * buckets / 2^32)` (high bits of the hash; the
 * shard was chosen from the low bits). Load stays at most `MAX_LOAD` because the table is sized
 * from the shard's entry capacity. Deletion shifts later entries back (no tombstones), so probe
 * sequences never grow with churn.
 *
 * ## Arena (`arena`, one ArrayBuffer, split into equal segments)
 *
 * A block is `[i32 header][key bytes][value bytes][0-3 pad]`, 4-byte aligned. The header holds
 * the owning slot id while live and `-blockBytes` once freed, so a segment can be walked from its
 * start. Blocks are bump-allocated in the one open segment. Freed space is reclaimed two ways:
 * a segment whose live bytes reach 0 goes back on the free list whole, and when the open segment
 * is full and garbage is high (or no fresh segment remains) the segment with the fewest live bytes
 * is compacted into a spare one (log-structured cleaning). Compaction copies at most one segment,
 * which bounds the pause; see `shardGeometry` for why the arena always has room.
 */

import type { ByteCopier } from "./copy.ts";

const META_INTS = 8;
const BUCKET_INTS = 3;
const M_PREV = 2;
const M_NEXT = 3;
const M_BUCKET = 4;
const M_BLOCK = 5;
const M_KEYWORD = 6;
const M_VALLEN = 7;
/** keyWord bits holding the key length (keys are at most 65535 bytes, index.ts MAX_KEY_BYTES). */
const KEY_LEN_MASK = 0xffff;
/** keyWord bit set when the entry has a fresh-until time in `freshUntilMs`. */
const FRESH_FLAG = 0x10000;

/** Block header bytes (holds slot id or -blockBytes). */
const HEADER = 4;
/** Max bytes a block adds beyond key+value: the header plus up to 3 bytes of alignment pad. */
const BLOCK_OVERHEAD = 7;

/** Columns of one shard's row in the cache's counter array (Float64Array, `COUNTER_STRIDE` per shard). */
export const C_HITS = 0;
export const C_MISSES = 1;
export const C_EVICTIONS = 2;
export const C_EXPIRATIONS = 3;
export const C_ENTRIES = 4;
export const C_BYTES = 5;
export const C_ARENA = 6;
export const COUNTER_STRIDE = 8;

/**
 * Highest index load. At 0.6 linear probing expects ~1.75 buckets per hit and ~3.6 per miss, all
 * 12-byte buckets, so most lookups read a single table cache line; the index costs
 * 12 / 0.6 = 20 bytes per entry of capacity.
 */
const MAX_LOAD = 0.6;
/** Floor on the segment size (tiny caches, e.g. in tests, get tiny segments and compact often). */
const MIN_SEGMENT_BYTES = 64;
/**
 * A segment holds at least this many maximal entries. With the 16 KiB default entry bound a segment
 * is 128 KiB: compacting one moves at most ~250 blocks of 500 B. Measured on the 1M-entity mixed
 * workload: 256 KiB segments took 0.1 ms per compaction on average (0.5 ms worst), 1 MiB segments
 * 0.5 ms; each moved block costs a cold read of its slot record (~250 ns) on top of the copy.
 */
const ENTRIES_PER_SEGMENT = 8;
/**
 * Compact instead of opening a fresh segment once garbage reaches 1/2^GARBAGE_SHIFT of the closed
 * segments (12.5%): the arena stays within ~14% of its live bytes plus a segment or two, and each
 * compaction copies at most 7 bytes per byte it frees.
 */
const GARBAGE_SHIFT = 3;

const SEG_FREE = 0;
const SEG_OPEN = 1;
const SEG_CLOSED = 2;

/**
 * Most bytes of a block that `lookup` touches ahead of the key compare. Measured on 500-byte
 * values at 1M entities: a get went from ~930-1050 ns to ~870-930 ns. Larger values are fetched by
 * the copy's own prefetch (copy.ts). The arena is padded by this much so the touches stay in bounds.
 */
const PREFETCH_MAX_BYTES = 512;

/** 2^-32, to map a 32-bit hash onto [0, buckets) with a multiply instead of a modulo. */
const TWO_POW_NEG_32 = 2.3283064365386963e-10;

/** Decides, from an entry's key bytes `arena[keyStart, keyEnd)`, whether a walk removes it. */
export type KeyPredicate = (arena: Uint8Array, keyStart: number, keyEnd: number) => boolean;

/** Sizes derived from a shard's bounds; computed once, validated by the cache before allocating. */
export interface ShardGeometry {
  /** Entry capacity of the shard. */
  capacity: number;
  /** Byte budget for key+value bytes. */
  maxBytes: number;
  /** Largest key+value bytes one entry may have. */
  maxEntryBytes: number;
  /** Largest block (entry + header + pad), bytes. */
  blockMax: number;
  /** Garbage per closed segment, bytes, past which compaction is preferred to a fresh segment. */
  compactGarbage: number;
  /** Segment size, bytes, a power of two. */
  segmentBytes: number;
  /** Segments in the arena, the spare included. */
  segmentCount: number;
  /** Arena size, bytes (segments plus read padding for prefetches and word copies). */
  arenaBytes: number;
  /** Index buckets. */
  buckets: number;
}

function blockSize(keyLen: number, valueLen: number): number {
  return (HEADER + keyLen + valueLen + 3) & ~3;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Why the arena never runs out while the byte budget holds: live block bytes L never exceed
 * `Lmax = min(maxBytes + 7 * capacity, capacity * blockMax)` (each block adds at most 7 bytes to
 * its key+value). With M data segments of S bytes, the emptiest one holds at most L/M live bytes,
 * so compacting it into the spare leaves at least S - Lmax/M free. Choosing
 * M = ceil(Lmax / (S - blockMax)) makes that at least `blockMax`, enough for any new block. When
 * compaction is chosen early, garbage averages at least `compactGarbage` >= blockMax per closed
 * segment, so the emptiest one frees enough too.
 */
export function shardGeometry(capacity: number, maxBytes: number, maxEntryBytes: number): ShardGeometry {
  const entryMax = Math.min(maxBytes, maxEntryBytes);
  const blockMax = blockSize(0, entryMax);
  const segmentBytes = Math.max(MIN_SEGMENT_BYTES, nextPow2(entryMax * ENTRIES_PER_SEGMENT));
  const liveMax = Math.min(maxBytes + BLOCK_OVERHEAD * capacity, capacity * blockMax);
  const dataSegments = Math.max(1, Math.ceil(liveMax / (segmentBytes - blockMax)));
  const segmentCount = dataSegments + 1;
  const buckets = Math.max(capacity + 1, Math.ceil(capacity / MAX_LOAD));
  return {
    capacity,
    maxBytes,
    maxEntryBytes: entryMax,
    blockMax,
    compactGarbage: Math.max(segmentBytes >> GARBAGE_SHIFT, blockMax),
    segmentBytes,
    segmentCount,
    arenaBytes: segmentCount * segmentBytes + PREFETCH_MAX_BYTES,
    buckets,
  };
}

/** What the cache's test exposure reaches in a shard; see unsafeExposeInternals. */
export interface ShardInternals {
  /** Keys from most to least recently used, as byte copies (allocates). */
  keysMruToLru(): Uint8Array[];
  /** Throws if any internal invariant is broken. `hashOf` recomputes a key's hash. O(capacity + arena). */
  checkInvariants(hashOf: (key: Uint8Array, start: number, end: number) => number): void;
}

/**
 * Opens a shard's internal state to the cache's test exposure (index.ts `unsafeExposeInternals`,
 * the pattern of node-lru-cache). Not for production use.
 */
export function unsafeExposeInternals(shard: Shard): ShardInternals {
  return exposeShard(shard);
}

/** Set by Shard's static block, the one place outside its methods that reaches its private state. */
let exposeShard: (shard: Shard) => ShardInternals;

/** One shard. Methods take slot ids; the cache maps handles and validates arguments. */
export class Shard {
  readonly capacity: number;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly segmentCount: number;
  private readonly segShift: number;
  private readonly arenaBytes: number;
  private readonly buckets: number;
  private readonly bucketScale: number;
  private readonly compactGarbage: number;

  /** Slot records, see the file comment. */
  readonly meta: Int32Array;
  /** Float64 view of `meta`: `metaF[slot * 4]` is the expiry time. */
  readonly metaF: Float64Array;
  /** Fresh-until time per slot, read only under FRESH_FLAG (see the file comment); null until first needed. */
  private freshUntilMs: Float64Array | null = null;
  private readonly table: Int32Array;
  /** Key+value blocks. Replaced by `clear()`. */
  arena: Uint8Array;
  private a32: Int32Array;

  private readonly segLive: Int32Array;
  private readonly segTop: Int32Array;
  private readonly segState: Uint8Array;
  private readonly freeSegs: Int32Array;
  private freeSegCount = 0;
  private touched = 0;
  private open = -1;
  private top = 0;
  private openEnd = 0;
  private liveBlockBytes = 0;
  private closedCount = 0;

  private readonly freeSlots: Int32Array;
  private freeSlotCount = 0;
  /** Slots ever used: slots at and above it have never held an entry. */
  private fresh = 0;
  private head = -1;
  private tail = -1;
  /** Sink for prefetching loads, so the JIT cannot drop them. */
  prefetched = 0;
  /** Bucket of the last successful `lookup`, so removal needs no second probe. */
  private lastBucket = -1;
  /** Entries the last `walk` removed. */
  walkRemoved = 0;

  /** This shard's counter row (a view into the cache's counter array). */
  private readonly c: Float64Array;
  private readonly now: () => number;

  constructor(g: ShardGeometry, counters: Float64Array, now: () => number) {
    this.capacity = g.capacity;
    this.maxBytes = g.maxBytes;
    this.segmentBytes = g.segmentBytes;
    this.segmentCount = g.segmentCount;
    this.segShift = Math.log2(g.segmentBytes);
    this.arenaBytes = g.arenaBytes;
    this.buckets = g.buckets;
    this.compactGarbage = g.compactGarbage;
    this.bucketScale = g.buckets * TWO_POW_NEG_32;
    this.meta = new Int32Array(g.capacity * META_INTS);
    this.metaF = new Float64Array(this.meta.buffer);
    this.table = new Int32Array(g.buckets * BUCKET_INTS);
    // The OS commits ArrayBuffer pages on first touch, so an arena sized for the byte budget costs
    // only what the bump pointer has reached.
    this.arena = new Uint8Array(g.arenaBytes);
    this.a32 = new Int32Array(this.arena.buffer);
    this.segLive = new Int32Array(g.segmentCount);
    this.segTop = new Int32Array(g.segmentCount);
    this.segState = new Uint8Array(g.segmentCount);
    this.freeSegs = new Int32Array(g.segmentCount);
    this.freeSlots = new Int32Array(g.capacity);
    this.c = counters;
    this.now = now;
  }

  // ---- index ------------------------------------------------------------------------------------

  private home(hash: number): number {
    return ((hash >>> 0) * this.bucketScale) | 0;
  }

  /** Bytes worth prefetching from a block: the shard's average entry, at most PREFETCH_MAX_BYTES. */
  private prefetchBytes(): number {
    const c = this.c;
    const avg = c[C_BYTES]! / c[C_ENTRIES]!;
    return Math.min(avg, PREFETCH_MAX_BYTES);
  }

  /** Slot holding key[start,end) with this hash, or -1. Sets `lastBucket` on a hit. */
  lookup(key: Uint8Array, start: number, end: number, hash: number): number {
    const table = this.table;
    const meta = this.meta;
    const arena = this.arena;
    const len = end - start;
    const buckets = this.buckets;
    let b = this.home(hash);
    for (;;) {
      const t = b * BUCKET_INTS;
      const sp = table[t + 1]!;
      if (sp === 0) return -1;
      if (table[t] === hash) {
        // The block offset comes from the bucket, not the record, so both loads start together.
        let p = table[t + 2]! + HEADER;
        // Touch the lines an average entry of this shard spans now, so they load in parallel with
        // the slot record and the first block line instead of after the key compare.
        let touch = 0;
        for (let q = p + 64, qEnd = p + this.prefetchBytes(); q < qEnd; q += 64) touch |= arena[q]!;
        this.prefetched = touch;
        if ((meta[(sp - 1) * META_INTS + M_KEYWORD]! & KEY_LEN_MASK) === len) {
          let j = start;
          while (j < end && arena[p] === key[j]) {
            p++;
            j++;
          }
          if (j === end) {
            this.lastBucket = b;
            return sp - 1;
          }
        }
      }
      if (++b === buckets) b = 0;
    }
  }

  private tableInsert(hash: number, slot: number, block: number): void {
    const table = this.table;
    let b = this.home(hash);
    while (table[b * BUCKET_INTS + 1] !== 0) {
      if (++b === this.buckets) b = 0;
    }
    const t = b * BUCKET_INTS;
    table[t] = hash;
    table[t + 1] = slot + 1;
    table[t + 2] = block;
    this.meta[slot * META_INTS + M_BUCKET] = b;
  }

  /** Empties bucket `i`, shifting back later entries of its run that may move (no tombstones). */
  private tableRemoveAt(i: number): void {
    const table = this.table;
    const buckets = this.buckets;
    let j = i;
    for (;;) {
      if (++j === buckets) j = 0;
      const tj = j * BUCKET_INTS;
      const sp = table[tj + 1]!;
      if (sp === 0) break;
      const h = table[tj]!;
      const k = this.home(h);
      // The entry at j stays if its home lies cyclically in (i, j]; otherwise it moves into the hole.
      if (i <= j ? i < k && k <= j : i < k || k <= j) continue;
      const ti = i * BUCKET_INTS;
      table[ti] = h;
      table[ti + 1] = sp;
      table[ti + 2] = table[tj + 2]!;
      this.meta[(sp - 1) * META_INTS + M_BUCKET] = i;
      i = j;
    }
    const t = i * BUCKET_INTS;
    table[t] = 0;
    table[t + 1] = 0;
    table[t + 2] = 0;
  }

  // ---- LRU list (head = most recently used) -------------------------------------------------------

  private linkFront(slot: number): void {
    const meta = this.meta;
    const m = slot * META_INTS;
    meta[m + M_PREV] = -1;
    meta[m + M_NEXT] = this.head;
    if (this.head >= 0) meta[this.head * META_INTS + M_PREV] = slot;
    else this.tail = slot;
    this.head = slot;
  }

  private unlink(slot: number): void {
    const meta = this.meta;
    const m = slot * META_INTS;
    const p = meta[m + M_PREV]!;
    const n = meta[m + M_NEXT]!;
    if (p >= 0) meta[p * META_INTS + M_NEXT] = n;
    else this.head = n;
    if (n >= 0) meta[n * META_INTS + M_PREV] = p;
    else this.tail = p;
  }

  private touch(slot: number): void {
    if (slot !== this.head) {
      this.unlink(slot);
      this.linkFront(slot);
    }
  }

  // ---- arena ---------------------------------------------------------------------------------------

  private allocBlock(size: number): number {
    const at = this.top;
    if (at + size <= this.openEnd) {
      this.top = at + size;
      return at;
    }
    return this.allocSlow(size);
  }

  private takeSegment(): number {
    if (this.freeSegCount > 0) return this.freeSegs[--this.freeSegCount]!;
    const seg = this.touched++;
    this.c[C_ARENA] = this.touched * this.segmentBytes;
    return seg;
  }

  private releaseSegment(seg: number): void {
    this.segState[seg] = SEG_FREE;
    this.segLive[seg] = 0;
    this.segTop[seg] = 0;
    this.freeSegs[this.freeSegCount++] = seg;
  }

  private openSegment(seg: number, top: number): void {
    this.segState[seg] = SEG_OPEN;
    this.open = seg;
    this.top = top;
    this.openEnd = seg * this.segmentBytes + this.segmentBytes;
  }

  private allocSlow(size: number): number {
    const S = this.segmentBytes;
    for (let attempt = 0; attempt <= this.segmentCount; attempt++) {
      const open = this.open;
      if (open >= 0) {
        this.open = -1;
        this.segTop[open] = this.top;
        if (this.segLive[open] === 0) this.releaseSegment(open);
        else {
          this.segState[open] = SEG_CLOSED;
          this.closedCount++;
        }
      }
      // One segment always stays spare so compaction has somewhere to copy to.
      const available = this.freeSegCount + (this.segmentCount - this.touched);
      const garbage = this.closedCount * S - this.liveBlockBytes;
      if (available >= 2 && (this.closedCount === 0 || garbage < this.closedCount * this.compactGarbage)) {
        const seg = this.takeSegment();
        this.openSegment(seg, seg * S);
      } else {
        this.compact();
      }
      const at = this.top;
      if (at + size <= this.openEnd) {
        this.top = at + size;
        return at;
      }
    }
    throw new Error("cache arena: no room after compaction (invariant violated)");
  }

  /** Copies the live blocks of the emptiest closed segment into a spare one, which becomes open. */
  private compact(): void {
    const S = this.segmentBytes;
    const segLive = this.segLive;
    const segState = this.segState;
    let victim = -1;
    let least = S + 1;
    for (let s = 0; s < this.touched; s++) {
      if (segState[s] === SEG_CLOSED && segLive[s]! < least) {
        least = segLive[s]!;
        victim = s;
      }
    }
    const dest = this.takeSegment();
    const meta = this.meta;
    const table = this.table;
    const a32 = this.a32;
    const arena = this.arena;
    let src = victim * S;
    const end = this.segTop[victim]!;
    let dst = dest * S;
    // Copy runs of adjacent live blocks with one copyWithin each.
    let runStart = -1;
    let runDst = dst;
    while (src < end) {
      const h = a32[src >> 2]!;
      if (h < 0) {
        if (runStart >= 0) {
          arena.copyWithin(runDst, runStart, src);
          runStart = -1;
        }
        src -= h;
        continue;
      }
      if (runStart < 0) {
        runStart = src;
        runDst = dst;
      }
      const m = h * META_INTS;
      const size = blockSize(meta[m + M_KEYWORD]! & KEY_LEN_MASK, meta[m + M_VALLEN]!);
      meta[m + M_BLOCK] = dst;
      table[meta[m + M_BUCKET]! * BUCKET_INTS + 2] = dst;
      src += size;
      dst += size;
    }
    if (runStart >= 0) arena.copyWithin(runDst, runStart, src);
    segLive[dest] = segLive[victim]!;
    this.closedCount--;
    this.releaseSegment(victim);
    this.openSegment(dest, dst);
  }

  private freeBlock(block: number, size: number): void {
    this.a32[block >> 2] = -size;
    const seg = block >>> this.segShift;
    const live = this.segLive[seg]! - size;
    this.segLive[seg] = live;
    this.liveBlockBytes -= size;
    if (live === 0) {
      if (seg === this.open) {
        this.top = seg * this.segmentBytes;
      } else if (this.segState[seg] === SEG_CLOSED) {
        this.closedCount--;
        this.releaseSegment(seg);
      }
    }
  }

  // ---- entries -------------------------------------------------------------------------------------

  /** Unlinks an entry everywhere and frees its block and slot. Counts nothing but entries/bytes. */
  private removeEntry(slot: number, bucket: number): void {
    const meta = this.meta;
    const m = slot * META_INTS;
    const keyLen = meta[m + M_KEYWORD]! & KEY_LEN_MASK;
    const valueLen = meta[m + M_VALLEN]!;
    this.tableRemoveAt(bucket);
    this.unlink(slot);
    this.freeBlock(meta[m + M_BLOCK]!, blockSize(keyLen, valueLen));
    this.freeSlots[this.freeSlotCount++] = slot;
    const c = this.c;
    c[C_ENTRIES]!--;
    c[C_BYTES]! -= keyLen + valueLen;
  }

  private evictTail(): void {
    const slot = this.tail;
    this.removeEntry(slot, this.meta[slot * META_INTS + M_BUCKET]!);
    this.c[C_EVICTIONS]!++;
  }

  /** Lookup that counts a hit or miss, reclaims an expired entry, and moves a hit to MRU. */
  find(key: Uint8Array, start: number, end: number, hash: number): number {
    const slot = this.lookup(key, start, end, hash);
    const c = this.c;
    if (slot < 0) {
      c[C_MISSES]!++;
      return -1;
    }
    const exp = this.metaF[slot << 2]!;
    if (exp !== 0 && this.now() >= exp) {
      this.removeEntry(slot, this.lastBucket);
      c[C_EXPIRATIONS]!++;
      c[C_MISSES]!++;
      return -1;
    }
    c[C_HITS]!++;
    this.touch(slot);
    return slot;
  }

  /** True if a live entry exists; counts nothing, moves nothing, reclaims nothing. */
  has(key: Uint8Array, start: number, end: number, hash: number): boolean {
    const slot = this.lookup(key, start, end, hash);
    if (slot < 0) return false;
    const exp = this.metaF[slot << 2]!;
    return exp === 0 || this.now() < exp;
  }

  /** Removes the entry; true if a live one was there (an expired one is reclaimed and counted). */
  delete(key: Uint8Array, start: number, end: number, hash: number): boolean {
    const slot = this.lookup(key, start, end, hash);
    if (slot < 0) return false;
    const exp = this.metaF[slot << 2]!;
    this.removeEntry(slot, this.lastBucket);
    if (exp !== 0 && this.now() >= exp) {
      this.c[C_EXPIRATIONS]!++;
      return false;
    }
    return true;
  }

  /**
   * Inserts or overwrites. The cache has checked that key+value fits `maxEntryBytes`.
   * An overwrite that keeps the block size is done in place; otherwise the old block is freed first.
   */
  set(
    key: Uint8Array,
    start: number,
    end: number,
    hash: number,
    value: Uint8Array,
    expiresAt: number,
    freshUntil: number,
  ): void {
    const keyLen = end - start;
    const valueLen = value.length;
    const need = keyLen + valueLen;
    const size = blockSize(keyLen, valueLen);
    const meta = this.meta;
    const c = this.c;
    let slot = this.lookup(key, start, end, hash);
    if (slot >= 0) {
      const m = slot * META_INTS;
      const oldLen = meta[m + M_VALLEN]!;
      const oldSize = blockSize(keyLen, oldLen);
      if (size <= oldSize && c[C_BYTES]! - oldLen + valueLen <= this.maxBytes) {
        // Same size or smaller: overwrite in place; a smaller block leaves a free filler block
        // behind it so segment walks stay exact, and the filler is ordinary garbage.
        const block = meta[m + M_BLOCK]!;
        this.arena.set(value, block + HEADER + keyLen);
        if (size < oldSize) {
          const gap = oldSize - size;
          this.a32[(block + size) >> 2] = -gap;
          this.segLive[block >>> this.segShift]! -= gap;
          this.liveBlockBytes -= gap;
        }
        meta[m + M_KEYWORD] = freshUntil === 0 ? keyLen : this.flagFresh(slot, keyLen, freshUntil);
        meta[m + M_VALLEN] = valueLen;
        this.metaF[slot << 2] = expiresAt;
        c[C_BYTES]! += valueLen - oldLen;
        this.touch(slot);
        return;
      }
      this.removeEntry(slot, this.lastBucket);
    }
    while (c[C_ENTRIES]! >= this.capacity || c[C_BYTES]! + need > this.maxBytes) this.evictTail();

    const block = this.allocBlock(size);
    slot = this.freeSlotCount > 0 ? this.freeSlots[--this.freeSlotCount]! : this.fresh++;
    const arena = this.arena;
    this.a32[block >> 2] = slot;
    const keyAt = block + HEADER;
    for (let i = 0; i < keyLen; i++) arena[keyAt + i] = key[start + i]!;
    arena.set(value, keyAt + keyLen);
    const seg = block >>> this.segShift;
    this.segLive[seg]! += size;
    this.liveBlockBytes += size;

    const m = slot * META_INTS;
    this.metaF[slot << 2] = expiresAt;
    meta[m + M_BLOCK] = block;
    meta[m + M_KEYWORD] = freshUntil === 0 ? keyLen : this.flagFresh(slot, keyLen, freshUntil);
    meta[m + M_VALLEN] = valueLen;
    this.linkFront(slot);
    this.tableInsert(hash, slot, block);
    c[C_ENTRIES]!++;
    c[C_BYTES]! += need;
  }

  /** Stores a slot's fresh-until time (> 0) and answers its keyWord with FRESH_FLAG set. */
  private flagFresh(slot: number, keyLen: number, freshUntil: number): number {
    if (this.freshUntilMs === null) this.freshUntilMs = new Float64Array(this.capacity);
    this.freshUntilMs[slot] = freshUntil;
    return keyLen | FRESH_FLAG;
  }

  /**
   * Walks slots from `from`, at most `maxSlots` of them and never past the last slot ever used,
   * handing each live entry's key `arena[keyStart, keyEnd)` to `remove` and removing the entry
   * when it answers true, until `maxRemoved` removals. Returns the slot to resume from and leaves
   * the removal count in `walkRemoved`. A live entry's slot id never changes (removals shift index
   * buckets, compaction moves blocks), so removals during or between walks cannot make one skip
   * or revisit an entry. `remove` must not write to the cache.
   */
  walk(from: number, maxSlots: number, maxRemoved: number, remove: KeyPredicate): number {
    const meta = this.meta;
    const table = this.table;
    const end = Math.min(from + maxSlots, this.fresh);
    let removed = 0;
    let s = from;
    for (; s < end && removed < maxRemoved; s++) {
      const m = s * META_INTS;
      const bucket = meta[m + M_BUCKET]!;
      // Live iff the index holds the slot, and then at its recorded bucket (kept current on shifts);
      // a freed slot's bucket field is stale, but no bucket names a freed slot.
      if (table[bucket * BUCKET_INTS + 1] !== s + 1) continue;
      const at = meta[m + M_BLOCK]! + HEADER;
      if (remove(this.arena, at, at + (meta[m + M_KEYWORD]! & KEY_LEN_MASK))) {
        this.removeEntry(s, bucket);
        removed++;
      }
    }
    this.walkRemoved = removed;
    return s;
  }

  /** Slots ever used since the last `clear` (a walk is done with the shard once it reaches it). */
  get slotsUsed(): number {
    return this.fresh;
  }

  // ---- handle accessors ------------------------------------------------------------------------------

  valueLength(slot: number): number {
    return this.meta[slot * META_INTS + M_VALLEN]!;
  }

  valueOffset(slot: number): number {
    const m = slot * META_INTS;
    return this.meta[m + M_BLOCK]! + HEADER + (this.meta[m + M_KEYWORD]! & KEY_LEN_MASK);
  }

  expiresAt(slot: number): number {
    return this.metaF[slot << 2]!;
  }

  freshUntil(slot: number): number {
    return (this.meta[slot * META_INTS + M_KEYWORD]! & FRESH_FLAG) === 0 ? 0 : this.freshUntilMs![slot]!;
  }

  /** Copies the value of `slot` into out[offset, ...) (bounds checked by the caller). */
  copyValue(slot: number, out: Uint8Array, offset: number, copier: ByteCopier): number {
    const m = slot * META_INTS;
    const meta = this.meta;
    const len = meta[m + M_VALLEN]!;
    const at = meta[m + M_BLOCK]! + HEADER + (meta[m + M_KEYWORD]! & KEY_LEN_MASK);
    copier.copy(this.arena, this.a32, at, out, offset, len);
    return len;
  }

  /** Drops every entry and the arena's memory (a fresh, uncommitted arena replaces it). */
  clear(): void {
    this.table.fill(0);
    this.arena = new Uint8Array(this.arenaBytes);
    this.a32 = new Int32Array(this.arena.buffer);
    this.segLive.fill(0);
    this.segTop.fill(0);
    this.segState.fill(SEG_FREE);
    this.freeSegCount = 0;
    this.touched = 0;
    this.open = -1;
    this.top = 0;
    this.openEnd = 0;
    this.liveBlockBytes = 0;
    this.closedCount = 0;
    this.freeSlotCount = 0;
    this.fresh = 0;
    this.head = -1;
    this.tail = -1;
    const c = this.c;
    c[C_ENTRIES] = 0;
    c[C_BYTES] = 0;
    c[C_ARENA] = 0;
  }

  /** Bytes of the arena holding live blocks vs. segments in use, for fragmentation reports. */
  arenaUsage(): { liveBlockBytes: number; segmentsInUse: number; segmentBytes: number } {
    return {
      liveBlockBytes: this.liveBlockBytes,
      segmentsInUse: this.touched - this.freeSegCount,
      segmentBytes: this.segmentBytes,
    };
  }

  // ---- testing: reached only through unsafeExposeInternals -------------------------------------------

  static {
    exposeShard = (shard) => ({
      keysMruToLru: () => shard.keysMruToLru(),
      checkInvariants: (hashOf) => shard.checkInvariants(hashOf),
    });
  }

  /** Keys from most to least recently used, as byte copies (allocates). */
  private keysMruToLru(): Uint8Array[] {
    const keys: Uint8Array[] = [];
    for (let s = this.head; s >= 0; s = this.meta[s * META_INTS + M_NEXT]!) {
      const at = this.meta[s * META_INTS + M_BLOCK]! + HEADER;
      keys.push(this.arena.slice(at, at + (this.meta[s * META_INTS + M_KEYWORD]! & KEY_LEN_MASK)));
    }
    return keys;
  }

  /** Throws if any internal invariant is broken. `hashOf` recomputes a key's hash. O(capacity + arena). */
  private checkInvariants(hashOf: (key: Uint8Array, start: number, end: number) => number): void {
    const fail = (msg: string): never => {
      throw new Error(`shard invariant: ${msg}`);
    };
    const meta = this.meta;
    const c = this.c;
    const inList = new Uint8Array(this.capacity);
    let count = 0;
    let bytes = 0;
    let prev = -1;
    for (let s = this.head; s >= 0; s = meta[s * META_INTS + M_NEXT]!) {
      if (count++ > this.capacity) fail("LRU list has a cycle");
      if (inList[s]) fail(`slot ${s} twice in LRU list`);
      inList[s] = 1;
      const m = s * META_INTS;
      if (meta[m + M_PREV] !== prev) fail(`slot ${s} prev link ${meta[m + M_PREV]} != ${prev}`);
      const word = meta[m + M_KEYWORD]!;
      if ((word & ~(KEY_LEN_MASK | FRESH_FLAG)) !== 0) fail(`slot ${s}: stray bits in keyWord ${word}`);
      if ((word & FRESH_FLAG) !== 0 && !(this.freshUntilMs !== null && this.freshUntilMs[s]! > 0))
        fail(`slot ${s}: flagged fresh-until without a time`);
      const k = word & KEY_LEN_MASK;
      const block = meta[m + M_BLOCK]!;
      bytes += k + meta[m + M_VALLEN]!;
      if (this.a32[block >> 2] !== s) fail(`block header at ${block} != slot ${s}`);
      const h = hashOf(this.arena, block + HEADER, block + HEADER + k);
      const t = meta[m + M_BUCKET]! * BUCKET_INTS;
      if (this.table[t] !== h) fail(`slot ${s}: bucket hash differs from key hash`);
      if (this.table[t + 1] !== s + 1) fail(`slot ${s}: bucket points elsewhere`);
      if (this.table[t + 2] !== block) fail(`slot ${s}: bucket block offset stale`);
      if (this.lookup(this.arena, block + HEADER, block + HEADER + k, h) !== s)
        fail(`slot ${s} not found by lookup`);
      prev = s;
    }
    if (prev !== this.tail) fail("tail mismatch");
    if (count !== c[C_ENTRIES]) fail(`entries ${c[C_ENTRIES]} != listed ${count}`);
    if (count > this.capacity) fail("over entry capacity");
    if (bytes !== c[C_BYTES]) fail(`bytes ${c[C_BYTES]} != listed ${bytes}`);
    if (bytes > this.maxBytes) fail("over byte budget");
    let tableCount = 0;
    for (let b = 0; b < this.buckets; b++) {
      const sp = this.table[b * BUCKET_INTS + 1]!;
      if (sp === 0) continue;
      tableCount++;
      if (!inList[sp - 1]) fail(`bucket ${b} points at unlisted slot ${sp - 1}`);
    }
    if (tableCount !== count) fail(`table holds ${tableCount} != ${count}`);
    if (this.freeSlotCount + count !== this.fresh) fail("slot accounting");

    const S = this.segmentBytes;
    let liveTotal = 0;
    let closed = 0;
    for (let seg = 0; seg < this.touched; seg++) {
      const state = this.segState[seg]!;
      if (state === SEG_FREE) {
        if (this.segLive[seg] !== 0) fail(`free segment ${seg} has live bytes`);
        continue;
      }
      if (state === SEG_CLOSED) closed++;
      else if (seg !== this.open) fail(`segment ${seg} open but not the open one`);
      const end = state === SEG_OPEN ? this.top : this.segTop[seg]!;
      if (end > seg * S + S || end < seg * S) fail(`segment ${seg} top out of range`);
      let live = 0;
      for (let p = seg * S; p < end; ) {
        const h = this.a32[p >> 2]!;
        if (h < 0) {
          p -= h;
          continue;
        }
        const m = h * META_INTS;
        if (meta[m + M_BLOCK] !== p || !inList[h]) fail(`stale live block at ${p}`);
        const size = blockSize(meta[m + M_KEYWORD]! & KEY_LEN_MASK, meta[m + M_VALLEN]!);
        live += size;
        p += size;
      }
      if (live !== this.segLive[seg]) fail(`segment ${seg} live ${this.segLive[seg]} != walked ${live}`);
      liveTotal += live;
    }
    if (liveTotal !== this.liveBlockBytes) fail("live block bytes mismatch");
    if (closed !== this.closedCount) fail("closed segment count mismatch");
    if (this.freeSegCount + (this.segmentCount - this.touched) < 1) fail("no spare segment");
    if (this.c[C_ARENA] !== this.touched * S) fail("arena counter mismatch");
  }
}
