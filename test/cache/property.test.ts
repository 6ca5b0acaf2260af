import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { CacheError, ShardedLruCache, unsafeExposeInternals } from "../../src/cache/index.ts";

/**
 * Reference model: one insertion-ordered Map per shard (first = least recently used), plain counters.
 * It knows nothing about arenas, slots or hashing beyond asking the cache which shard a key is in.
 */
interface ModelEntry {
  value: Uint8Array;
  expiresAt: number;
  freshUntil: number;
}
class ModelShard {
  readonly map = new Map<string, ModelEntry>();
  bytes = 0;
  hits = 0;
  misses = 0;
  evictions = 0;
  expirations = 0;
  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
  ) {}

  private remove(key: string, e: ModelEntry) {
    this.map.delete(key);
    this.bytes -= key.length / 2 + e.value.length;
  }

  get(key: string, now: number): ModelEntry | undefined {
    const e = this.map.get(key);
    if (!e) {
      this.misses++;
      return undefined;
    }
    if (e.expiresAt !== 0 && now >= e.expiresAt) {
      this.remove(key, e);
      this.expirations++;
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, e);
    return e;
  }

  set(key: string, value: Uint8Array, expiresAt: number, freshUntil: number) {
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    const need = key.length / 2 + value.length;
    while (this.map.size >= this.capacity || this.bytes + need > this.maxBytes) {
      const [lruKey, lru] = this.map.entries().next().value as [string, ModelEntry];
      this.remove(lruKey, lru);
      this.evictions++;
    }
    this.map.set(key, { value: value.slice(), expiresAt, freshUntil });
    this.bytes += need;
  }

  delete(key: string, now: number): boolean {
    const e = this.map.get(key);
    if (!e) return false;
    this.remove(key, e);
    if (e.expiresAt !== 0 && now >= e.expiresAt) {
      this.expirations++;
      return false;
    }
    return true;
  }

  has(key: string, now: number): boolean {
    const e = this.map.get(key);
    return e !== undefined && (e.expiresAt === 0 || now < e.expiresAt);
  }

  /** A walk's removal of every key (hex) starting with `prefix`, expired or not: no counter moves. */
  drop(prefix: string) {
    for (const [key, e] of [...this.map]) if (key.startsWith(prefix)) this.remove(key, e);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** A small key pool so keys repeat (overwrites, deletes of present keys); non-ASCII included. */
const KEY_POOL = [
  "a",
  "b",
  "c",
  "user:1",
  "user:2",
  "user:123456",
  "é",
  "日本",
  "😀",
  "",
  "k".repeat(40),
].concat(Array.from({ length: 20 }, (_, i) => `key-${i}`));
const enc = new TextEncoder();
const KEYS = KEY_POOL.map((s) => enc.encode(s));
/** Prefixes a walk removes: some match several pool keys, one matches every key. */
const PREFIXES = ["key-1", "user:", "k", "", "\u65e5"].map((s) => enc.encode(s));

type Op =
  | { op: "get"; key: number; viaFind: boolean }
  | { op: "set"; key: number; len: number; fill: number; ttl: number; fresh: number }
  | { op: "drop"; prefix: number; maxSlots: number; maxRemoved: number }
  | { op: "del"; key: number }
  | { op: "has"; key: number }
  | { op: "tick"; ms: number }
  | { op: "clear" };

const keyArb = fc.integer({ min: 0, max: KEYS.length - 1 });
function opsArb(len: fc.Arbitrary<number>): fc.Arbitrary<Op> {
  return fc.oneof(
    {
      weight: 120,
      arbitrary: fc.record({ op: fc.constant("get" as const), key: keyArb, viaFind: fc.boolean() }),
    },
    {
      weight: 120,
      arbitrary: fc.record({
        op: fc.constant("set" as const),
        key: keyArb,
        len,
        fill: fc.integer({ min: 0, max: 255 }),
        ttl: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 })),
        fresh: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 45 })),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant("drop" as const),
        prefix: fc.integer({ min: 0, max: PREFIXES.length - 1 }),
        maxSlots: fc.integer({ min: 1, max: 8 }),
        maxRemoved: fc.integer({ min: 1, max: 4 }),
      }),
    },
    { weight: 40, arbitrary: fc.record({ op: fc.constant("del" as const), key: keyArb }) },
    { weight: 20, arbitrary: fc.record({ op: fc.constant("has" as const), key: keyArb }) },
    {
      weight: 40,
      arbitrary: fc.record({ op: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 30 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) },
  );
}

/** Mixed sizes: small values, some near the entry bound, some too large. */
const generalOps = opsArb(
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 12 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 600 }) },
  ),
);
/** Small values only, for the arena-stress configuration. */
const smallOps = opsArb(fc.integer({ min: 0, max: 20 }));

const generalConfig = fc.record({
  shardCount: fc.constantFrom(1, 2, 4),
  maxEntries: fc.integer({ min: 1, max: 40 }),
  maxBytes: fc.integer({ min: 4, max: 6000 }),
  maxEntryBytes: fc.constantFrom(undefined, 24, 64, 300, 700),
  hashMask: fc.constantFrom(-1, 0, 1),
});

/** Tiny segments (the entry bound sets them: 8 blocks, 256 bytes here) so compaction runs constantly. */
const arenaStressConfig = fc.record({
  shardCount: fc.constantFrom(1, 2),
  maxEntries: fc.integer({ min: 5, max: 60 }),
  maxBytes: fc.integer({ min: 60, max: 1500 }),
  maxEntryBytes: fc.constantFrom(24, 32),
  hashMask: fc.constantFrom(-1, 0),
});

type Config = {
  shardCount: number;
  maxEntries: number;
  maxBytes: number;
  maxEntryBytes?: number;
  hashMask: number;
};

describe("property: the cache behaves like a map-per-shard LRU model (fresh-until times and prefix walks included)", () => {
  const check = (cfg: Config, ops: Op[]) => {
    let now = 1_000;
    const { hashMask, ...opts } = cfg;
    const cache = new ShardedLruCache({ ...opts, now: () => now });
    const internals = unsafeExposeInternals(cache);
    internals.setHashing(9, hashMask);
    if (cfg.shardCount > cfg.maxBytes) return;
    const cap = Math.ceil(cfg.maxEntries / cfg.shardCount);
    const budget = Math.floor(cfg.maxBytes / cfg.shardCount);
    const model = Array.from({ length: cfg.shardCount }, () => new ModelShard(cap, budget));
    const out = new Uint8Array(1024);
    const value = new Uint8Array(1024);
    for (const op of ops) {
      if (op.op === "tick") {
        now += op.ms;
        continue;
      }
      if (op.op === "clear") {
        cache.clear();
        for (const m of model) {
          m.map.clear();
          m.bytes = 0;
        }
        continue;
      }
      if (op.op === "drop") {
        const prefix = PREFIXES[op.prefix]!;
        const matches = (arena: Uint8Array, s: number, e: number) =>
          e - s >= prefix.length && prefix.every((b, i) => arena[s + i] === b);
        let cursor = 0;
        do cursor = cache.walk(cursor, op.maxSlots, op.maxRemoved, matches);
        while (cursor >= 0);
        for (const m of model) m.drop(hex(prefix));
        internals.checkInvariants();
        continue;
      }
      const key = KEYS[op.key]!;
      const m = model[internals.shardOf(key)]!;
      const mk = hex(key);
      if (op.op === "get") {
        const expected = m.get(mk, now);
        let n: number;
        if (op.viaFind) {
          const h = cache.find(key);
          n = h < 0 ? -1 : cache.copyValue(h, out, 0);
          if (h >= 0) expect(cache.freshUntil(h)).toBe(expected?.freshUntil ?? -1);
        } else n = cache.get(key, out, 0);
        if (expected === undefined) expect(n).toBe(-1);
        else {
          expect(n).toBe(expected.value.length);
          expect(hex(out.subarray(0, n))).toBe(hex(expected.value));
        }
      } else if (op.op === "set") {
        const v = value.subarray(0, op.len).fill(op.fill);
        if (key.length + v.length > cache.maxEntryBytes) {
          expect(() => cache.set(key, v, op.ttl, 0, key.length, op.fresh)).toThrow(CacheError);
        } else {
          m.set(mk, v, op.ttl === 0 ? 0 : now + op.ttl, op.fresh);
          cache.set(key, v, op.ttl, 0, key.length, op.fresh);
        }
      } else if (op.op === "del") {
        expect(cache.delete(key)).toBe(m.delete(mk, now));
      } else {
        expect(cache.has(key)).toBe(m.has(mk, now));
      }
      internals.checkInvariants();
    }
    const stats = cache.stats();
    stats.shards.forEach((s, i) => {
      const ms = model[i]!;
      expect(s).toMatchObject({
        entries: ms.map.size,
        bytesUsed: ms.bytes,
        hits: ms.hits,
        misses: ms.misses,
        evictions: ms.evictions,
        expirations: ms.expirations,
      });
      // LRU order: the cache lists MRU first, the model's Map lists LRU first.
      expect(internals.shardKeys(i).map(hex)).toEqual([...ms.map.keys()].reverse());
    });
  };

  test("random get/set/delete/has/clock sequences show no difference", () => {
    fc.assert(fc.property(generalConfig, fc.array(generalOps, { minLength: 50, maxLength: 600 }), check), {
      numRuns: 300,
    });
  });

  test("the same holds with tiny arena segments that compact constantly", () => {
    fc.assert(
      fc.property(arenaStressConfig, fc.array(smallOps, { minLength: 200, maxLength: 1000 }), check),
      {
        numRuns: 150,
      },
    );
  });

  test("long churn with variable sizes under a tight byte budget compacts without losing data", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 199 }), fc.integer({ min: 0, max: 300 })), {
          minLength: 2000,
          maxLength: 4000,
        }),
        (writes) => {
          const cache = new ShardedLruCache({
            maxEntries: 1000,
            maxBytes: 20_000,
            shardCount: 2,
            maxEntryBytes: 400,
          });
          const internals = unsafeExposeInternals(cache);
          internals.setHashing(3);
          const model = new Map<number, number>();
          const out = new Uint8Array(400);
          for (const [key, len] of writes) {
            cache.setString(`key:${key}`, new Uint8Array(len).fill(key));
            model.set(key, len);
          }
          internals.checkInvariants();
          for (const [key, len] of model) {
            const n = cache.getString(`key:${key}`, out);
            if (n >= 0) {
              expect(n).toBe(len);
              expect(out.subarray(0, n).every((b) => b === (key & 255))).toBe(true);
            }
          }
          expect(cache.stats().bytesUsed).toBeLessThanOrEqual(20_000);
        },
      ),
      { numRuns: 30 },
    );
  });
});
