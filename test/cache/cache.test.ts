import { describe, expect, test } from "bun:test";
import {
  CacheError,
  type CacheOptions,
  encodeUtf8,
  ShardedLruCache,
  unsafeExposeInternals,
} from "../../src/cache/index.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const k = (s: string) => enc.encode(s);

/** Cache options plus the hashing a test fixes through unsafeExposeInternals (seed, and a mask to force collisions). */
type TestCacheOptions = CacheOptions & { hashSeed?: number; hashMask?: number };

/** A cache whose hash seed (and mask) is fixed, so that a failure replays. */
function seededCache({ hashSeed, hashMask, ...opts }: TestCacheOptions): ShardedLruCache {
  const cache = new ShardedLruCache(opts);
  unsafeExposeInternals(cache).setHashing(hashSeed ?? 42, hashMask);
  return cache;
}

/** Throws if an internal invariant of the cache is broken. */
function checkInvariants(cache: ShardedLruCache): void {
  unsafeExposeInternals(cache).checkInvariants();
}

/** A cache with a fake clock the test advances. */
function makeCache(opts: Partial<TestCacheOptions> = {}) {
  const clock = { t: 1_000 };
  const cache = seededCache({
    maxEntries: 100,
    maxBytes: 1 << 20,
    shardCount: 1,
    hashSeed: 42,
    now: () => clock.t,
    ...opts,
  });
  return { cache, clock };
}

/** The value of a key as a string, or undefined on a miss. */
function read(cache: ShardedLruCache, key: string): string | undefined {
  const out = new Uint8Array(8192);
  const n = cache.getString(key, out, 0);
  if (n === -1) return undefined;
  return dec.decode(out.subarray(0, n));
}

function keysOf(cache: ShardedLruCache, shard = 0): string[] {
  return unsafeExposeInternals(cache)
    .shardKeys(shard)
    .map((b) => dec.decode(b));
}

/** Applies a tiny op language: "set a=xx", "set a=xx ttl=5", "get a", "del a", "tick 5". */
function run(cache: ShardedLruCache, clock: { t: number }, ops: string[]): void {
  for (const op of ops) {
    const [verb, arg = "", extra] = op.split(" ");
    if (verb === "set") {
      const [key = "", value = ""] = arg.split("=");
      const ttl = extra?.startsWith("ttl=") ? Number(extra.slice(4)) : 0;
      cache.setString(key, k(value), ttl);
    } else if (verb === "get") read(cache, arg);
    else if (verb === "del") cache.deleteString(arg);
    else if (verb === "tick") clock.t += Number(arg);
    else throw new Error(`bad op ${op}`);
    checkInvariants(cache);
  }
}

describe("eviction order", () => {
  const cases: { name: string; maxEntries: number; ops: string[]; mruToLru: string[]; evictions: number }[] =
    [
      {
        name: "the least recently inserted entry goes first",
        maxEntries: 3,
        ops: ["set a=1", "set b=2", "set c=3", "set d=4"],
        mruToLru: ["d", "c", "b"],
        evictions: 1,
      },
      {
        name: "a read saves an entry from eviction",
        maxEntries: 3,
        ops: ["set a=1", "set b=2", "set c=3", "get a", "set d=4"],
        mruToLru: ["d", "a", "c"],
        evictions: 1,
      },
      {
        name: "an overwrite counts as a use",
        maxEntries: 3,
        ops: ["set a=1", "set b=2", "set c=3", "set a=9", "set d=4", "set e=5"],
        mruToLru: ["e", "d", "a"],
        evictions: 2,
      },
      {
        name: "a delete frees room so nothing is evicted",
        maxEntries: 2,
        ops: ["set a=1", "set b=2", "del a", "set c=3"],
        mruToLru: ["c", "b"],
        evictions: 0,
      },
      {
        name: "a miss does not change the order",
        maxEntries: 2,
        ops: ["set a=1", "set b=2", "get zz", "set c=3"],
        mruToLru: ["c", "b"],
        evictions: 1,
      },
      {
        name: "capacity one keeps only the last write",
        maxEntries: 1,
        ops: ["set a=1", "set b=2", "set c=3"],
        mruToLru: ["c"],
        evictions: 2,
      },
    ];
  for (const c of cases) {
    test(c.name, () => {
      const { cache, clock } = makeCache({ maxEntries: c.maxEntries });
      run(cache, clock, c.ops);
      expect(keysOf(cache)).toEqual(c.mruToLru);
      expect(cache.stats().evictions).toBe(c.evictions);
    });
  }

  test("has() neither counts nor reorders", () => {
    const { cache, clock } = makeCache({ maxEntries: 2 });
    run(cache, clock, ["set a=1", "set b=2"]);
    expect(cache.hasString("a")).toBe(true);
    expect(cache.hasString("x")).toBe(false);
    run(cache, clock, ["set c=3"]);
    expect(keysOf(cache)).toEqual(["c", "b"]);
    const s = cache.stats();
    expect(s.hits + s.misses).toBe(0);
  });
});

describe("TTL", () => {
  const cases: { name: string; ttl: number; advance: number; alive: boolean }[] = [
    { name: "an entry is returned before its expiry", ttl: 100, advance: 99, alive: true },
    { name: "an entry expires at exactly now + ttl", ttl: 100, advance: 100, alive: false },
    { name: "an entry is gone long after its expiry", ttl: 1, advance: 1e9, alive: false },
    { name: "ttl 0 never expires", ttl: 0, advance: 1e12, alive: true },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { cache, clock } = makeCache();
      cache.setString("key", k("value"), c.ttl);
      const h = cache.findString("key");
      expect(cache.expiresAt(h)).toBe(c.ttl === 0 ? 0 : 1_000 + c.ttl);
      clock.t += c.advance;
      expect(cache.hasString("key")).toBe(c.alive);
      expect(read(cache, "key")).toBe(c.alive ? "value" : undefined);
      const s = cache.stats();
      expect(s.expirations).toBe(c.alive ? 0 : 1);
      expect(s.entries).toBe(c.alive ? 1 : 0);
      expect(s.bytesUsed).toBe(c.alive ? 8 : 0);
      checkInvariants(cache);
    });
  }

  test("has() reports an expired entry absent but leaves reclaiming to reads", () => {
    const { cache, clock } = makeCache();
    cache.setString("a", k("1"), 10);
    clock.t += 10;
    expect(cache.hasString("a")).toBe(false);
    expect(cache.size).toBe(1);
    expect(cache.findString("a")).toBe(-1);
    expect(cache.size).toBe(0);
    expect(cache.stats()).toMatchObject({ misses: 1, expirations: 1 });
  });

  test("delete of an expired entry reclaims it and returns false", () => {
    const { cache, clock } = makeCache();
    cache.setString("a", k("1"), 10);
    clock.t += 11;
    expect(cache.deleteString("a")).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 0, expirations: 1 });
  });

  test("overwriting resets the ttl", () => {
    const { cache, clock } = makeCache();
    cache.setString("a", k("1"), 10);
    clock.t += 5;
    cache.setString("a", k("2"), 0);
    clock.t += 100;
    expect(read(cache, "a")).toBe("2");
  });

  test("the clock is read only for entries with a ttl", () => {
    let reads = 0;
    const cache = new ShardedLruCache({
      maxEntries: 10,
      maxBytes: 1000,
      shardCount: 1,
      now: () => {
        reads++;
        return 0;
      },
    });
    cache.setString("a", k("1"));
    read(cache, "a");
    cache.hasString("a");
    cache.deleteString("a");
    expect(reads).toBe(0);
    cache.setString("b", k("1"), 5);
    read(cache, "b");
    expect(reads).toBe(2);
  });

  test("bad ttls are rejected", () => {
    const { cache } = makeCache();
    for (const ttl of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => cache.setString("a", k("1"), ttl)).toThrow(RangeError);
    }
  });
});

describe("byte budget", () => {
  test("inserting past maxBytes evicts least recently used entries until it fits", () => {
    // Each entry is 1 key byte + 9 value bytes = 10 bytes; the budget holds 3.
    const { cache, clock } = makeCache({ maxBytes: 30 });
    run(cache, clock, ["set a=111111111", "set b=222222222", "set c=333333333", "get a", "set d=444444444"]);
    expect(keysOf(cache)).toEqual(["d", "a", "c"]);
    expect(cache.stats()).toMatchObject({ bytesUsed: 30, evictions: 1 });
    // A 20-byte entry needs two evictions.
    cache.setString("e", k("5".repeat(19)));
    expect(keysOf(cache)).toEqual(["e", "d"]);
    expect(cache.stats()).toMatchObject({ bytesUsed: 30, evictions: 3 });
    checkInvariants(cache);
  });

  const tooLarge: {
    name: string;
    opts: Partial<CacheOptions>;
    keyLen: number;
    valueLen: number;
    code: string;
  }[] = [
    {
      name: "over the shard's byte budget",
      opts: { maxBytes: 100 },
      keyLen: 1,
      valueLen: 100,
      code: "VALUE_TOO_LARGE",
    },
    {
      name: "over the budget of one of many shards",
      opts: { maxBytes: 400, shardCount: 4 },
      keyLen: 1,
      valueLen: 100,
      code: "VALUE_TOO_LARGE",
    },
    {
      name: "over maxEntryBytes",
      opts: { maxEntryBytes: 64 },
      keyLen: 4,
      valueLen: 61,
      code: "VALUE_TOO_LARGE",
    },
    {
      name: "a key over 65535 bytes",
      opts: { maxEntryBytes: 200_000 },
      keyLen: 65536,
      valueLen: 1,
      code: "KEY_TOO_LARGE",
    },
  ];
  for (const c of tooLarge) {
    test(`an entry ${c.name} is rejected with ${c.code} and changes nothing`, () => {
      const { cache } = makeCache(c.opts);
      cache.set(k("x"), k("y"));
      let err: unknown;
      try {
        cache.set(new Uint8Array(c.keyLen).fill(97), new Uint8Array(c.valueLen));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CacheError);
      expect((err as CacheError).code).toBe(c.code as CacheError["code"]);
      expect(cache.size).toBe(1);
      expect(cache.stats().evictions).toBe(0);
    });
  }

  test("an entry of exactly the per-shard budget fits and evicts everything else", () => {
    const { cache } = makeCache({ maxBytes: 64 });
    cache.setString("a", k("1"));
    cache.set(k("b"), new Uint8Array(63).fill(7));
    expect(keysOf(cache)).toEqual(["b"]);
    checkInvariants(cache);
  });
});

describe("overwrite", () => {
  const sizes: [number, number][] = [
    [10, 10],
    [10, 11],
    [10, 13],
    [10, 3000],
    [3000, 10],
    [500, 499],
    [500, 0],
    [0, 500],
  ];
  for (const [from, to] of sizes) {
    test(`overwriting a ${from}-byte value with a ${to}-byte value keeps one entry with the new bytes`, () => {
      const { cache } = makeCache({ maxEntries: 10 });
      cache.setString("before", k("x"));
      cache.setString("key", new Uint8Array(from).fill(1));
      cache.setString("after", k("y"));
      const v = new Uint8Array(to).map((_, i) => i & 255);
      cache.setString("key", v);
      const out = new Uint8Array(4096);
      expect(cache.getString("key", out)).toBe(to);
      expect(out.subarray(0, to)).toEqual(v);
      expect(read(cache, "before")).toBe("x");
      expect(read(cache, "after")).toBe("y");
      expect(cache.stats()).toMatchObject({ entries: 3, bytesUsed: 6 + 1 + 5 + 1 + 3 + to });
      checkInvariants(cache);
    });
  }

  test("an overwrite that grows past the byte budget evicts others, not itself", () => {
    const { cache } = makeCache({ maxBytes: 40 });
    cache.set(k("a"), new Uint8Array(9));
    cache.set(k("b"), new Uint8Array(9));
    cache.set(k("c"), new Uint8Array(9));
    cache.set(k("a"), new Uint8Array(29));
    expect(keysOf(cache)).toEqual(["a", "c"]);
    checkInvariants(cache);
  });
});

describe("delete", () => {
  const cases: { name: string; ops: string[]; del: string; result: boolean; left: string[] }[] = [
    { name: "removes a present key", ops: ["set a=1", "set b=2"], del: "a", result: true, left: ["b"] },
    { name: "returns false for an absent key", ops: ["set a=1"], del: "zz", result: false, left: ["a"] },
    { name: "returns false the second time", ops: ["set a=1", "del a"], del: "a", result: false, left: [] },
    {
      name: "removes the LRU tail",
      ops: ["set a=1", "set b=2", "set c=3"],
      del: "a",
      result: true,
      left: ["c", "b"],
    },
    {
      name: "removes the MRU head",
      ops: ["set a=1", "set b=2", "set c=3"],
      del: "c",
      result: true,
      left: ["b", "a"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { cache, clock } = makeCache();
      run(cache, clock, c.ops);
      expect(cache.deleteString(c.del)).toBe(c.result);
      expect(keysOf(cache)).toEqual(c.left);
      checkInvariants(cache);
    });
  }
});

describe("hash collisions", () => {
  for (const mask of [0, 1, 0xff]) {
    test(`keys whose hashes agree on all but mask ${mask} stay distinct through set, get and delete`, () => {
      const { cache } = makeCache({ hashMask: mask, maxEntries: 400, shardCount: 2 });
      const keys = Array.from({ length: 150 }, (_, i) => `key-${i}`);
      keys.forEach((key, i) => {
        cache.setString(key, k(`v${i}`));
      });
      checkInvariants(cache);
      keys.forEach((key, i) => {
        expect(read(cache, key)).toBe(`v${i}`);
      });
      // Deleting every third key exercises backward-shift deletion inside one long probe run.
      keys.forEach((key, i) => {
        if (i % 3 === 0) expect(cache.deleteString(key)).toBe(true);
      });
      checkInvariants(cache);
      keys.forEach((key, i) => {
        expect(read(cache, key)).toBe(i % 3 === 0 ? undefined : `v${i}`);
      });
      expect(read(cache, "key-1000")).toBeUndefined();
    });
  }

  test("keys with equal hashes but different lengths or bytes are told apart", () => {
    const { cache } = makeCache({ hashMask: 0 });
    for (const key of ["", "a", "aa", "ab", "ba", "a\u0000"]) cache.setString(key, k(`<${key}>`));
    for (const key of ["", "a", "aa", "ab", "ba", "a\u0000"]) expect(read(cache, key)).toBe(`<${key}>`);
  });
});

describe("keys as bytes", () => {
  const keys = ["user:123456", "ユーザー:42", "naïve-café", "emoji:😀🚀", "\u0000nul", "", "a".repeat(300)];
  for (const key of keys) {
    test(`key ${JSON.stringify(key.slice(0, 20))} round-trips as a string and as its UTF-8 bytes`, () => {
      const { cache } = makeCache();
      cache.setString(key, k(`v:${key}`));
      expect(read(cache, key)).toBe(`v:${key}`);
      const bytes = enc.encode(key);
      const frame = new Uint8Array(bytes.length + 10);
      frame.set(bytes, 7);
      const h = cache.find(frame, 7, 7 + bytes.length);
      expect(h).toBeGreaterThanOrEqual(0);
      const arena = cache.arenaOf(h);
      const off = cache.valueOffset(h);
      expect(dec.decode(arena.subarray(off, off + cache.valueLength(h)))).toBe(`v:${key}`);
      expect(cache.has(bytes)).toBe(true);
      expect(cache.delete(frame, 7, 7 + bytes.length)).toBe(true);
      expect(cache.hasString(key)).toBe(false);
    });
  }

  test("encodeUtf8 matches TextEncoder, lone surrogates included", () => {
    const samples = [
      "",
      "abc",
      "é",
      "€",
      "😀",
      "\ud800",
      "a\udc00b",
      "\ud83d",
      "x\ud83d\ude00y",
      "日本語テキスト",
    ];
    let seed = 7;
    for (let i = 0; i < 300; i++) {
      let s = "";
      for (let j = 0; j < 12; j++) {
        seed = (Math.imul(seed, 1103515245) + 12345) | 0;
        s += String.fromCharCode((seed >>> 8) & 0xffff);
      }
      samples.push(s);
    }
    const out = new Uint8Array(100);
    for (const s of samples) {
      const n = encodeUtf8(s, out);
      expect(out.subarray(0, n)).toEqual(enc.encode(s));
    }
  });

  test("a key range outside the array is a RangeError", () => {
    const { cache } = makeCache();
    expect(() => cache.find(k("abc"), 2, 5)).toThrow(RangeError);
    expect(() => cache.find(k("abc"), -1, 2)).toThrow(RangeError);
    expect(() => cache.find(k("abc"), 2, 1)).toThrow(RangeError);
  });
});

describe("one shard vs many", () => {
  test("with room to spare, 1 and 16 shards give the same answers", () => {
    const caches = [1, 16].map((shardCount) =>
      makeCache({ shardCount, maxEntries: 10_000, maxBytes: 1 << 22 }),
    );
    let seed = 1;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) | 0;
      return (seed >>> 8) % n;
    };
    const outs = caches.map(() => new Uint8Array(2048));
    for (let i = 0; i < 5000; i++) {
      const key = `user:${rnd(500)}`;
      const op = rnd(10);
      const value = new Uint8Array(rnd(1000)).fill(i & 255);
      const results = caches.map(({ cache }, j) => {
        if (op < 5) return cache.getString(key, outs[j]!);
        if (op < 9) {
          cache.setString(key, value);
          return 0;
        }
        return cache.deleteString(key) ? 1 : 0;
      });
      expect(results[1]).toBe(results[0]!);
      if (results[0]! > 0) expect(outs[1]!.subarray(0, results[0])).toEqual(outs[0]!.subarray(0, results[0]));
    }
    const [a, b] = caches.map(({ cache }) => cache.stats());
    expect(b!.shards.length).toBe(16);
    // Arena claims differ (each shard opens its own segment); everything observable agrees.
    expect({ ...b, shards: [], arenaBytes: 0 }).toEqual({ ...a!, shards: [], arenaBytes: 0 });
    for (const { cache } of caches) checkInvariants(cache);
  });

  test("per-shard stats add up to the totals, and bounds apply per shard", () => {
    const { cache } = makeCache({ shardCount: 8, maxEntries: 80, maxBytes: 8000 });
    for (let i = 0; i < 1000; i++) cache.setString(`k${i}`, new Uint8Array(i % 90));
    const s = cache.stats();
    for (const key of ["entries", "bytesUsed", "arenaBytes", "evictions"] as const) {
      expect(s.shards.reduce((sum, r) => sum + r[key], 0)).toBe(s[key]);
    }
    for (const r of s.shards) {
      expect(r.entries).toBeLessThanOrEqual(10);
      expect(r.bytesUsed).toBeLessThanOrEqual(1000);
    }
    expect(cache.totals()).toEqual({ ...s, shards: undefined } as never);
    const row = cache.counters.subarray(0, 8);
    expect(row[4]).toBe(s.shards[0]!.entries);
    checkInvariants(cache);
  });
});

describe("reading", () => {
  test("get reports a too-small buffer as -(length) - 2 and copies nothing", () => {
    const { cache } = makeCache();
    cache.setString("a", new Uint8Array(10).fill(5));
    const out = new Uint8Array(12);
    expect(cache.get(k("a"), out, 3)).toBe(-12);
    expect(out.every((b) => b === 0)).toBe(true);
    expect(cache.get(k("a"), out, 2)).toBe(10);
    expect(cache.get(k("zz"), out)).toBe(-1);
    expect(() => cache.copyValue(cache.findString("a"), out, 5)).toThrow(RangeError);
  });

  test("handles from several finds stay valid until the next write, even when a find reclaims", () => {
    const { cache, clock } = makeCache();
    cache.setString("a", k("AAAA"));
    cache.setString("t", k("TTTT"), 5);
    cache.setString("b", k("BBBB"));
    clock.t += 10;
    const ha = cache.findString("a");
    expect(cache.findString("t")).toBe(-1);
    const hb = cache.findString("b");
    const out = new Uint8Array(8);
    cache.copyValue(ha, out, 0);
    cache.copyValue(hb, out, 4);
    expect(dec.decode(out)).toBe("AAAABBBB");
  });

  test("copyValue copies every length at every alignment", () => {
    const { cache } = makeCache({ maxEntries: 2000, maxBytes: 1 << 22 });
    const lens = [0, 1, 3, 4, 5, 15, 16, 17, 31, 64, 100, 511, 2047, 2048, 2049, 5000];
    let n = 0;
    for (const len of lens) {
      for (let keyLen = 1; keyLen <= 4; keyLen++) {
        const key = `${"k".repeat(keyLen)}${n++}`;
        const v = new Uint8Array(len).map((_, i) => (i * 31 + len) & 255);
        cache.setString(key, v);
        for (let off = 0; off < 4; off++) {
          const buf = new ArrayBuffer(len + 16);
          const out = new Uint8Array(buf, off === 3 ? 1 : 0);
          const h = cache.findString(key);
          expect(cache.copyValue(h, out, off)).toBe(len);
          expect(out.subarray(off, off + len)).toEqual(v);
          expect(out[off + len]).toBe(0);
          if (off > 0) expect(out[off - 1]).toBe(0);
        }
      }
    }
  });
});

describe("options", () => {
  const bad: { name: string; opts: Partial<CacheOptions>; mentions: string }[] = [
    { name: "shardCount not a power of two", opts: { shardCount: 3 }, mentions: "shardCount" },
    { name: "shardCount zero", opts: { shardCount: 0 }, mentions: "shardCount" },
    { name: "maxEntries zero", opts: { maxEntries: 0 }, mentions: "maxEntries" },
    { name: "maxEntries fractional", opts: { maxEntries: 1.5 }, mentions: "maxEntries" },
    { name: "maxBytes below one per shard", opts: { maxBytes: 3, shardCount: 4 }, mentions: "maxBytes" },
    {
      name: "maxBytes too big per shard",
      opts: { maxBytes: 2 ** 33, maxEntries: 1e6, shardCount: 1 },
      mentions: "shardCount",
    },
    { name: "maxEntryBytes zero", opts: { maxEntryBytes: 0 }, mentions: "maxEntryBytes" },
    { name: "now not a function", opts: { now: 5 as unknown as () => number }, mentions: "now" },
  ];
  for (const c of bad) {
    test(`rejects ${c.name} with INVALID_OPTION naming the option`, () => {
      let err: unknown;
      try {
        makeCache(c.opts);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CacheError);
      expect((err as CacheError).code).toBe("INVALID_OPTION");
      expect((err as CacheError).message).toContain(c.mentions);
    });
  }

  test("maxEntries is split per shard rounding up", () => {
    const { cache } = makeCache({ maxEntries: 9, shardCount: 4 });
    for (let i = 0; i < 500; i++) cache.setString(`k${i}`, k("v"));
    expect(cache.size).toBe(12);
  });
});

describe("clear", () => {
  test("clear drops entries and arena but keeps counting", () => {
    const { cache, clock } = makeCache({ shardCount: 4 });
    run(cache, clock, ["set a=1", "set b=2", "get a", "get x"]);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.stats()).toMatchObject({ entries: 0, bytesUsed: 0, arenaBytes: 0, hits: 1, misses: 1 });
    expect(read(cache, "a")).toBeUndefined();
    run(cache, clock, ["set a=3"]);
    expect(read(cache, "a")).toBe("3");
  });
});

describe("fragmentation", () => {
  test("values of 50 B to 5 KB churned through a full cache keep the arena within 1/7 of live bytes plus two segments per shard", () => {
    const shardCount = 4;
    const cache = seededCache({ maxEntries: 4000, maxBytes: 4 << 20, shardCount, hashSeed: 1 });
    let seed = 3;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) | 0;
      return (seed >>> 8) % n;
    };
    const value = new Uint8Array(5000);
    for (let i = 0; i < 40_000; i++) {
      const len = 50 + rnd(4951);
      const op = rnd(10);
      if (op < 8) cache.setString(`user:${rnd(6000)}`, value.subarray(0, len));
      else cache.deleteString(`user:${rnd(6000)}`);
    }
    checkInvariants(cache);
    const u = cache.arenaUsage();
    const segment = 128 << 10;
    expect(u.segmentBytesInUse).toBeLessThanOrEqual((u.liveBlockBytes * 8) / 7 + 2 * segment * shardCount);
    expect(cache.stats().bytesUsed).toBeGreaterThan(3.5 * (1 << 20));
  });
});
