/**
 * Competitors of the cache benchmark behind one small interface, and the shared workload data.
 *
 * The workload is server-shaped: a key arrives as UTF-8 bytes inside a request buffer and the value
 * must end up as bytes in an output buffer. Our cache hashes the key bytes in place and copies from
 * its arena; the others decode the key to a string (with Buffer#utf8Slice, the fastest decoder we
 * measured in Bun: 37 ns vs 47 ns for toString and 83 ns for TextDecoder) and copy a stored
 * Uint8Array into the output.
 */

import { LRUCache as IsaacsLru } from "lru-cache";
import { LRUCache as MnemonistLru } from "mnemonist";
import { ShardedLruCache } from "../../src/cache/index.ts";

/** What every competitor does; `keys[start, end)` are the key's UTF-8 bytes. */
export interface Competitor {
  readonly name: string;
  /** Insert or overwrite; the competitor must own a copy of `value` afterwards. */
  set(keys: Uint8Array, start: number, end: number, value: Uint8Array): void;
  /** Copies the value into `out` at `offset`; returns its length or -1 on a miss. */
  get(keys: Uint8Array, start: number, end: number, out: Uint8Array, offset: number): number;
}

/** Entities in the cache for every benchmark. */
export const ENTITIES = 1_000_000;
/** Key length: `user:` + 6 digits, like `user:123456`. */
export const KEY_BYTES = 11;
/** Values are 480..520 bytes (about 500), so overwrites change size as real feature payloads do. */
export const VALUE_MIN = 480;
export const VALUE_MAX = 520;
/** Distinct value payloads reused across entities (the cache copies them anyway). */
export const VALUE_POOL = 256;

type Utf8Slicer = { utf8Slice(start: number, end: number): string };

function asBuffer(keys: Uint8Array): Utf8Slicer {
  return Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength) as unknown as Utf8Slicer;
}

/** Keys decode through a Buffer view of the same bytes, made once per key buffer. */
class Decoder {
  private keys: Uint8Array | null = null;
  private buf: Utf8Slicer | null = null;
  decode(keys: Uint8Array, start: number, end: number): string {
    if (keys !== this.keys) {
      this.keys = keys;
      this.buf = asBuffer(keys);
    }
    return this.buf!.utf8Slice(start, end);
  }
}

/**
 * Entry bound of our cache. The bound is split per shard, and 1M random keys over 16 shards land
 * 62,500 +- 250 per shard, so an exact 1M bound would evict ~1,500 entities of the fullest shards
 * during the fill. 1/64 of headroom lets all 1M stay (it costs ~0.7 B per entity of slot records).
 */
export const OUR_MAX_ENTRIES = ENTITIES + ENTITIES / 64;

export function ours(shardCount = 16): Competitor & { cache: ShardedLruCache } {
  const cache = new ShardedLruCache({ maxEntries: OUR_MAX_ENTRIES, maxBytes: 1 << 30, shardCount });
  return {
    name: "ShardedLruCache",
    cache,
    set: (keys, start, end, value) => cache.set(keys, value, 0, start, end),
    get: (keys, start, end, out, offset) => {
      const h = cache.find(keys, start, end);
      return h < 0 ? -1 : cache.copyValue(h, out, offset);
    },
  };
}

export function lruCache(): Competitor {
  const lru = new IsaacsLru<string, Uint8Array>({ max: ENTITIES });
  const d = new Decoder();
  return {
    name: "lru-cache",
    set: (keys, start, end, value) => {
      lru.set(d.decode(keys, start, end), value.slice());
    },
    get: (keys, start, end, out, offset) => {
      const v = lru.get(d.decode(keys, start, end));
      if (v === undefined) return -1;
      out.set(v, offset);
      return v.length;
    },
  };
}

export function mnemonist(): Competitor {
  const lru = new MnemonistLru<string, Uint8Array>(ENTITIES);
  const d = new Decoder();
  return {
    name: "mnemonist",
    set: (keys, start, end, value) => {
      lru.set(d.decode(keys, start, end), value.slice());
    },
    get: (keys, start, end, out, offset) => {
      const v = lru.get(d.decode(keys, start, end));
      if (v === undefined) return -1;
      out.set(v, offset);
      return v.length;
    },
  };
}

export const COMPETITORS: Record<string, () => Competitor> = {
  ShardedLruCache: () => ours(),
  "lru-cache": lruCache,
  mnemonist,
};

/** Deterministic xorshift32 so every run and every process sees the same workload. */
export function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** `count` keys of `prefix` + zero-padded number, back to back in one buffer, KEY_BYTES each. */
export function keyBlock(prefix: string, count: number, first = 0): Uint8Array {
  const digits = KEY_BYTES - prefix.length;
  const out = new Uint8Array(count * KEY_BYTES);
  const enc = new TextEncoder();
  for (let i = 0; i < count; i++) {
    enc.encodeInto(prefix + String(first + i).padStart(digits, "0"), out.subarray(i * KEY_BYTES));
  }
  return out;
}

/** Value payloads of VALUE_MIN..VALUE_MAX random bytes. */
export function valuePool(seed = 7): Uint8Array[] {
  const r = rng(seed);
  return Array.from({ length: VALUE_POOL }, () => {
    const v = new Uint8Array(VALUE_MIN + Math.floor(r() * (VALUE_MAX - VALUE_MIN + 1)));
    for (let i = 0; i < v.length; i++) v[i] = Math.floor(r() * 256);
    return v;
  });
}

/** Random entity ids (uniform; every lookup is a cold one at 1M entities). */
export function randomIds(count: number, seed = 11): Int32Array {
  const r = rng(seed);
  const ids = new Int32Array(count);
  for (let i = 0; i < count; i++) ids[i] = Math.floor(r() * ENTITIES);
  return ids;
}

/** Fills a competitor with ENTITIES entries `user:000000..`. */
export function fill(c: Competitor, keys: Uint8Array, values: Uint8Array[]): void {
  for (let i = 0; i < ENTITIES; i++)
    c.set(keys, i * KEY_BYTES, i * KEY_BYTES + KEY_BYTES, values[i % VALUE_POOL]!);
}

/** Average key+value bytes per entity of `fill` (what "overhead" is measured against). */
export function payloadBytesPerEntity(values: Uint8Array[]): number {
  let sum = 0;
  for (let i = 0; i < ENTITIES; i++) sum += values[i % VALUE_POOL]!.length;
  return KEY_BYTES + sum / ENTITIES;
}

/** Machine description for result files. */
export async function machine(): Promise<{
  cpu: string;
  cores: number;
  memGiB: number;
  bun: string;
  os: string;
}> {
  let cpu = "unknown";
  let cores = 0;
  try {
    const info = await Bun.file("/proc/cpuinfo").text();
    cpu = /model name\s*:\s*(.+)/.exec(info)?.[1]?.trim() ?? cpu;
    cores = (info.match(/^processor\s*:/gm) ?? []).length;
  } catch {}
  let memGiB = 0;
  try {
    const mem = await Bun.file("/proc/meminfo").text();
    memGiB = Math.round(Number(/MemTotal:\s*(\d+)/.exec(mem)?.[1] ?? 0) / 1048576);
  } catch {}
  return { cpu, cores, memGiB, bun: Bun.version, os: `${process.platform} ${process.arch}` };
}
