import { describe, expect, test } from "bun:test";
import { type KeyPredicate, ShardedLruCache, unsafeExposeInternals } from "../../src/cache/index.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const k = (s: string) => enc.encode(s);

/** A cache with a fixed hash seed (so failures replay) and a fake clock. */
function makeCache(opts: {
  maxEntries?: number;
  maxBytes?: number;
  shardCount?: number;
  maxEntryBytes?: number;
}) {
  const clock = { t: 1_000 };
  const cache = new ShardedLruCache({
    maxEntries: 100,
    maxBytes: 1 << 20,
    shardCount: 1,
    now: () => clock.t,
    ...opts,
  });
  unsafeExposeInternals(cache).setHashing(42);
  return { cache, clock };
}

/** freshUntil of the entry under `key`, or undefined on a miss. */
function freshOf(cache: ShardedLruCache, key: string): number | undefined {
  const h = cache.findString(key);
  return h < 0 ? undefined : cache.freshUntil(h);
}

/** The value of `key` as a string, or undefined on a miss. */
function valueFor(cache: ShardedLruCache, key: string): string | undefined {
  const out = new Uint8Array(70_000);
  const n = cache.getString(key, out);
  return n < 0 ? undefined : dec.decode(out.subarray(0, n));
}

function check(cache: ShardedLruCache): void {
  unsafeExposeInternals(cache).checkInvariants();
}

describe("fresh-until times", () => {
  test("an entry set with a fresh-until time answers it through find, one set without answers 0", () => {
    const { cache } = makeCache({});
    cache.set(k("a"), k("va"), 0, 0, 1, 1_700_000_000_123);
    cache.set(k("b"), k("vb"));
    expect(freshOf(cache, "a")).toBe(1_700_000_000_123);
    expect(freshOf(cache, "b")).toBe(0);
    expect(valueFor(cache, "a")).toBe("va");
    expect(valueFor(cache, "b")).toBe("vb");
    check(cache);
  });

  test("an overwrite in place sets, changes and clears the fresh-until time", () => {
    const { cache } = makeCache({});
    cache.setString("a", k("1234"));
    expect(freshOf(cache, "a")).toBe(0);
    cache.setString("a", k("5678"), 0, 5_000);
    expect(freshOf(cache, "a")).toBe(5_000);
    cache.setString("a", k("9abc"), 0, 7_000);
    expect(freshOf(cache, "a")).toBe(7_000);
    cache.setString("a", k("de"));
    expect(freshOf(cache, "a")).toBe(0);
    expect(valueFor(cache, "a")).toBe("de");
    check(cache);
  });

  test("an overwrite that grows the entry into a new block carries the new fresh-until time", () => {
    const { cache } = makeCache({});
    cache.setString("a", k("x"), 0, 5_000);
    cache.setString("b", k("y"));
    cache.setString("a", k("x".repeat(300)), 0, 9_000);
    expect(freshOf(cache, "a")).toBe(9_000);
    expect(freshOf(cache, "b")).toBe(0);
    expect(valueFor(cache, "a")).toBe("x".repeat(300));
    check(cache);
  });

  test("the fresh-until time is kept with the entry, not its ttl: the entry expires by its ttl alone", () => {
    const { cache, clock } = makeCache({});
    cache.setString("a", k("v"), 10, 2_000);
    clock.t += 5;
    expect(freshOf(cache, "a")).toBe(2_000);
    clock.t += 5;
    expect(freshOf(cache, "a")).toBeUndefined();
  });

  test("fresh-until times survive compaction of the segments holding their entries", () => {
    // 24-byte entries make 256-byte segments: churn compacts constantly.
    const { cache } = makeCache({ maxEntries: 40, maxBytes: 600, maxEntryBytes: 24, shardCount: 2 });
    const model = new Map<string, { value: string; fresh: number }>();
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 5_000; i++) {
      const key = `k${rand(60)}`;
      const value = "v".repeat(rand(18));
      const fresh = rand(3) === 0 ? 0 : 1_000 + i;
      cache.setString(key, k(value), 0, fresh);
      model.set(key, { value, fresh });
      if (rand(5) === 0) {
        const gone = `k${rand(60)}`;
        cache.deleteString(gone);
        model.delete(gone);
      }
      if (i % 500 === 0) check(cache);
    }
    check(cache);
    let found = 0;
    for (const [key, e] of model) {
      const h = cache.findString(key);
      if (h < 0) continue; // evicted: the byte budget is tight on purpose
      found++;
      expect(cache.freshUntil(h)).toBe(e.fresh);
      expect(valueFor(cache, key)).toBe(e.value);
    }
    expect(found).toBeGreaterThan(10);
  });

  test("a slot freed by eviction and reused by an entry without a time answers 0, not the evicted entry's time", () => {
    const { cache } = makeCache({ maxEntries: 2 });
    cache.setString("a", k("1"), 0, 111);
    cache.setString("b", k("2"), 0, 222);
    cache.setString("c", k("3")); // evicts a, reusing its slot
    cache.setString("d", k("4")); // evicts b
    expect(freshOf(cache, "a")).toBeUndefined();
    expect(freshOf(cache, "b")).toBeUndefined();
    expect(freshOf(cache, "c")).toBe(0);
    expect(freshOf(cache, "d")).toBe(0);
    cache.setString("a", k("1"), 0, 333);
    expect(freshOf(cache, "a")).toBe(333);
    check(cache);
  });

  test("a flagged entry with the longest key (65535 bytes) is found, read and removed exactly", () => {
    const { cache } = makeCache({ maxEntryBytes: 70_000, maxBytes: 1 << 22 });
    const long = new Uint8Array(65_535).fill(0x61);
    const other = long.slice(0, 65_534);
    cache.set(long, k("long"), 0, 0, long.length, 42);
    cache.set(other, k("shorter"), 0, 0, other.length, 43);
    const h = cache.find(long);
    expect(h).toBeGreaterThanOrEqual(0);
    expect(cache.freshUntil(h)).toBe(42);
    expect(dec.decode(cache.arenaOf(h).subarray(cache.valueOffset(h), cache.valueOffset(h) + 4))).toBe(
      "long",
    );
    expect(cache.freshUntil(cache.find(other))).toBe(43);
    check(cache);
    expect(cache.delete(long)).toBe(true);
    expect(cache.find(long)).toBe(-1);
    expect(cache.freshUntil(cache.find(other))).toBe(43);
    check(cache);
  });

  test("a fresh-until time that is negative, NaN or infinite is a RangeError and changes nothing", () => {
    const { cache } = makeCache({});
    cache.setString("a", k("old"), 0, 5);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => cache.setString("a", k("new"), 0, bad)).toThrow(RangeError);
    }
    expect(valueFor(cache, "a")).toBe("old");
    expect(freshOf(cache, "a")).toBe(5);
  });

  test("clear drops the times with the entries", () => {
    const { cache } = makeCache({});
    cache.setString("a", k("1"), 0, 9);
    cache.clear();
    cache.setString("b", k("2"));
    expect(freshOf(cache, "b")).toBe(0);
    check(cache);
  });
});

/** Runs a walk to its end, `maxSlots`/`maxRemoved` per call; answers the number of calls. */
function walkAll(cache: ShardedLruCache, maxSlots: number, maxRemoved: number, remove: KeyPredicate): number {
  let cursor = 0;
  let calls = 0;
  do {
    cursor = cache.walk(cursor, maxSlots, maxRemoved, remove);
    calls++;
    if (calls > 1_000_000) throw new Error("walk does not end");
  } while (cursor >= 0);
  return calls;
}

const startsWith =
  (prefix: string): KeyPredicate =>
  (arena, s, e) =>
    dec.decode(arena.subarray(s, e)).startsWith(prefix);

function liveKeys(cache: ShardedLruCache): string[] {
  const internals = unsafeExposeInternals(cache);
  const keys: string[] = [];
  for (let i = 0; i < cache.shardCount; i++)
    for (const key of internals.shardKeys(i)) keys.push(dec.decode(key));
  return keys.sort();
}

describe("walk", () => {
  test("a prefix walk removes exactly the matching keys across many bounded calls, and keeps the others' order", () => {
    const { cache } = makeCache({ maxEntries: 4_000, shardCount: 8 });
    const expected: string[] = [];
    for (let i = 0; i < 1_500; i++) {
      const drop = i % 3 === 0;
      const key = drop ? `v1:${i}` : `v2:${i}`;
      cache.setString(key, k(`value ${i}`), 0, drop ? 0 : i + 1);
      if (!drop) expected.push(key);
    }
    cache.setString("v1", k("shorter than the prefix"));
    expected.push("v1");
    const order = unsafeExposeInternals(cache)
      .shardKeys(3)
      .map((b) => dec.decode(b));
    const calls = walkAll(cache, 16, 4, startsWith("v1:"));
    expect(calls).toBeGreaterThan(100);
    expect(liveKeys(cache)).toEqual(expected.sort());
    expect(
      unsafeExposeInternals(cache)
        .shardKeys(3)
        .map((b) => dec.decode(b)),
    ).toEqual(order.filter((key) => !key.startsWith("v1:")));
    for (const key of expected) if (key !== "v1") expect(freshOf(cache, key)).toBe(Number(key.slice(3)) + 1);
    expect(cache.size).toBe(expected.length);
    check(cache);
  });

  test("each call walks at most maxSlots slots and removes at most maxRemoved entries", () => {
    const { cache } = makeCache({ maxEntries: 500 });
    for (let i = 0; i < 400; i++) cache.setString(i % 2 === 0 ? `x${i}` : `y${i}`, k("v"));
    let cursor = 0;
    while (cursor >= 0) {
      const before = cache.size;
      let offered = 0;
      const next = cache.walk(cursor, 10, 3, (arena, s, e) => {
        offered++;
        return startsWith("x")(arena, s, e);
      });
      expect(offered).toBeLessThanOrEqual(10);
      expect(before - cache.size).toBeLessThanOrEqual(3);
      if (next >= 0) expect(next - cursor).toBeLessThanOrEqual(10); // one shard: the cursor is the slot
      cursor = next;
    }
    expect(liveKeys(cache).every((key) => key.startsWith("y"))).toBe(true);
    expect(cache.size).toBe(200);
  });

  test("deletes and inserts between calls never make the walk skip or revisit an entry that stayed", () => {
    const { cache } = makeCache({ maxEntries: 3_000, shardCount: 4 });
    for (let i = 0; i < 1_000; i++) cache.setString(`old:${i}`, k(`v${i}`));
    const stayed = new Set<string>();
    for (let i = 0; i < 1_000; i++) if (i % 4 !== 0) stayed.add(`old:${i}`);
    const offered = new Map<string, number>();
    let cursor = 0;
    let round = 0;
    while (cursor >= 0) {
      cursor = cache.walk(cursor, 7, 1_000, (arena, s, e) => {
        const key = dec.decode(arena.subarray(s, e));
        offered.set(key, (offered.get(key) ?? 0) + 1);
        return false;
      });
      // Between calls: delete keys ahead of and behind the cursor (shifting index buckets), and
      // insert new ones (reusing the freed slots).
      round++;
      for (let j = 0; j < 4; j++) {
        const i = (round * 37 + j * 251) % 1_000;
        if (i % 4 === 0) cache.deleteString(`old:${i}`);
      }
      cache.setString(`new:${round}`, k("n"));
    }
    for (const key of stayed) expect(offered.get(key)).toBe(1);
    for (const n of offered.values()) expect(n).toBe(1);
    check(cache);
  });

  test("a walk of an empty cache, or from past its last slot, is done at once", () => {
    const { cache } = makeCache({ shardCount: 4 });
    expect(cache.walk(0, 10, 10, () => true)).toBe(-1);
    cache.setString("a", k("1"));
    expect(cache.walk(10_000, 10, 10, () => true)).toBe(-1);
    expect(freshOf(cache, "a")).toBe(0);
  });

  test("a negative or fractional cursor and bounds below 1 are RangeErrors", () => {
    const { cache } = makeCache({});
    expect(() => cache.walk(-1, 1, 1, () => false)).toThrow(RangeError);
    expect(() => cache.walk(0.5, 1, 1, () => false)).toThrow(RangeError);
    expect(() => cache.walk(0, 0, 1, () => false)).toThrow(RangeError);
    expect(() => cache.walk(0, 1, 0, () => false)).toThrow(RangeError);
  });
});
