/**
 * The local stores (memory, and the cache in front of SQLite) on what issue 12 added to the seam:
 * the fresh-until time kept beside each record, and prefix drops in bounded steps.
 */

import type { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CacheOptions } from "../../src/cache/index.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { recordFreshUntil } from "../../src/codec/value-meta.ts";
import { SIDE } from "../../src/store/cache-front.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import { prefixEnd } from "../../src/store/sqlite/backend.ts";
import { TieredStore } from "../../src/store/tiered.ts";
import type { DurableStore, PrefixDrop } from "../../src/store/types.ts";

const enc = new TextEncoder();

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** A canonical FeatureValue: event time, max age when > 0, then int_value. */
function value(eventTime: number, maxAge: number, int: number): number[] {
  return [0x50, ...varint(eventTime), ...(maxAge > 0 ? [0x58, ...varint(maxAge)] : []), 0x08, ...varint(int)];
}

/** A record: canonical map entries `0x12 <len> 0x0a <name> 0x12 <value>`. */
function record(...features: [name: string, value: number[]][]): Uint8Array {
  const bytes: number[] = [];
  for (const [name, v] of features) {
    const n = [...enc.encode(name)];
    const inner = [0x0a, ...varint(n.length), ...n, 0x12, ...varint(v.length), ...v];
    bytes.push(0x12, ...varint(inner.length), ...inner);
  }
  return Uint8Array.from(bytes);
}

/** Key of entity `e` in version `v` of feature set `s`: `0xFF 'v' S 0x00 V 0x00 E` (notes12). */
function versionKey(s: string, v: string, e: string): Uint8Array {
  return Uint8Array.from([0xff, 0x76, ...enc.encode(s), 0, ...enc.encode(v), 0, ...enc.encode(e)]);
}
function versionPrefix(s: string, v: string): Uint8Array {
  return Uint8Array.from([0xff, 0x76, ...enc.encode(s), 0, ...enc.encode(v), 0]);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function write(store: DurableStore, key: Uint8Array, rec: Uint8Array, freshUntil = 0): void {
  store.write(key, 0, key.length, rec, 0, freshUntil);
}

/** The record under key (a copy), or null. */
function read(store: DurableStore, key: Uint8Array): Uint8Array | null {
  const h = store.find(key, 0, key.length);
  if (h < 0) return null;
  const out = new Uint8Array(store.length(h));
  store.copyTo(h, out, 0);
  return out;
}

function freshOf(store: DurableStore, key: Uint8Array): number | null {
  const h = store.find(key, 0, key.length);
  return h < 0 ? null : store.freshUntil(h);
}

const dirs: string[] = [];
const open: { close(): void }[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const CACHE: CacheOptions = { maxEntries: 10_000, maxBytes: 1 << 22, shardCount: 4 };

function memory(cache: Partial<CacheOptions> = {}): MemoryStore {
  return new MemoryStore({ ...CACHE, ...cache });
}

function tiered(cache: Partial<CacheOptions> = {}, dir?: string): TieredStore {
  const d = dir ?? mkdtempSync(join(tmpdir(), "fs-store-"));
  if (dir === undefined) dirs.push(d);
  const store = TieredStore.open({ dir: d, durability: "async", cache: { ...CACHE, ...cache } });
  open.push(store);
  return store;
}

const KINDS: { name: string; make: (cache?: Partial<CacheOptions>) => DurableStore }[] = [
  { name: "memory store", make: memory },
  { name: "tiered store", make: tiered },
];

/** Steps a drop to its end, `max` per step; checks each step's count; answers the counts. */
async function drain(drop: PrefixDrop, max: number): Promise<number[]> {
  const counts: number[] = [];
  while (!drop.done) {
    const n = await drop.step(max);
    expect(n).toBeGreaterThanOrEqual(0);
    expect(n).toBeLessThanOrEqual(max);
    counts.push(n);
    if (counts.length > 100_000) throw new Error("the drop does not end");
  }
  return counts;
}

describe.each(KINDS)("$name: fresh-until times", ({ make }) => {
  test("a record written with a fresh-until time answers it on a hit, one written without answers 0", () => {
    const store = make();
    write(store, enc.encode("a"), record(["f", value(1_000, 500, 1)]), 1_500);
    write(store, enc.encode("b"), record(["f", value(1_000, 0, 1)]));
    expect(freshOf(store, enc.encode("a"))).toBe(1_500);
    expect(freshOf(store, enc.encode("b"))).toBe(0);
    write(store, enc.encode("a"), record(["f", value(2_000, 0, 2)]), 0);
    expect(freshOf(store, enc.encode("a"))).toBe(0);
  });
});

describe("tiered store: fresh-until times of records read from the file", () => {
  const rec = record(
    ["x", value(10_000, 3_000, 1)],
    ["y", value(12_000, 0, 2)],
    ["z", value(11_000, 1_000, 3)],
  );
  const fresh = 12_000; // least of 10_000 + 3_000 and 11_000 + 1_000

  test("the record builder agrees with recordFreshUntil", () => {
    expect(recordFreshUntil(rec, 0, rec.length)).toBe(fresh);
  });

  test("a record read back after a restart answers the fresh-until time its values give", () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-store-"));
    dirs.push(dir);
    const first = tiered({}, dir);
    write(first, enc.encode("e1"), rec, fresh);
    write(first, enc.encode("e2"), record(["y", value(12_000, 0, 2)]), 0);
    first.close();
    const second = tiered({}, dir);
    expect(freshOf(second, enc.encode("e1"))).toBe(fresh);
    expect(freshOf(second, enc.encode("e2"))).toBe(0);
    expect(hex(read(second, enc.encode("e1"))!)).toBe(hex(rec));
  });

  test("a record evicted from a tiny cache and loaded again answers the same fresh-until time", () => {
    const store = tiered({ maxEntries: 2, shardCount: 1 });
    write(store, enc.encode("e1"), rec, fresh);
    for (let i = 0; i < 5; i++) write(store, enc.encode(`other${i}`), record(["y", value(1, 0, i)]));
    expect(store.cache.has(enc.encode("e1"))).toBe(false);
    expect(freshOf(store, enc.encode("e1"))).toBe(fresh);
    expect(store.cache.has(enc.encode("e1"))).toBe(true);
  });

  test("a record too large for the cache is served from beside it with its fresh-until time", () => {
    const big = record(["x", value(10_000, 3_000, 1)], ["pad", value(5_000, 0, 2 ** 40)]);
    const store = tiered({ maxEntryBytes: big.length - 1, shardCount: 1 });
    write(store, enc.encode("big"), big, 13_000);
    const h = store.find(enc.encode("big"), 0, 3);
    expect(h).toBe(SIDE);
    expect(store.freshUntil(h)).toBe(13_000);
    write(store, enc.encode("small"), record(["y", value(1, 0, 1)]));
    expect(freshOf(store, enc.encode("small"))).toBe(0);
  });

  test("warm-up fills the cache with the records' fresh-until times", () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-store-"));
    dirs.push(dir);
    const first = tiered({}, dir);
    write(first, enc.encode("e1"), rec, fresh);
    first.close();
    const second = tiered({}, dir);
    expect(second.warm(10, () => {})).toBe(1);
    const h = second.cache.find(enc.encode("e1"));
    expect(h).toBeGreaterThanOrEqual(0);
    expect(second.cache.freshUntil(h)).toBe(fresh);
  });
});

/** Writes `n` records under version v1 and v2 of set "s", plus look-alikes; answers the keys by role. */
function fill(store: DurableStore, n: number) {
  const dropped: Uint8Array[] = [];
  const kept: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    dropped.push(versionKey("s", "v1", `e${i}`));
    kept.push(versionKey("s", "v2", `e${i}`));
    if (i % 5 === 0) kept.push(versionKey("s", "v10", `e${i}`)); // shares "v1" but not "v1\0"
    if (i % 7 === 0) kept.push(enc.encode(`user:${i}`));
  }
  dropped.push(versionPrefix("s", "v1")); // a key equal to the prefix starts with it
  kept.push(Uint8Array.from([0xff, 0x73, ...enc.encode("s")])); // the set's pointer record
  kept.push(versionPrefix("s", "v1").subarray(0, -1)); // shorter than the prefix
  for (const key of [...dropped, ...kept]) write(store, key, record(["k", value(1, 100, key.length)]), 101);
  return { dropped, kept };
}

function expectOnly(store: DurableStore, dropped: Uint8Array[], kept: Uint8Array[]): void {
  for (const key of dropped) expect(read(store, key)).toBeNull();
  for (const key of kept) {
    expect(hex(read(store, key)!)).toBe(hex(record(["k", value(1, 100, key.length)])));
    expect(freshOf(store, key)).toBe(101);
  }
}

describe.each(KINDS)("$name: dropPrefix", ({ make }) => {
  test("removes exactly the records under the prefix, across many steps of at most max each", async () => {
    const store = make();
    const { dropped, kept } = fill(store, 400);
    const drop = store.dropPrefix(versionPrefix("s", "v1"));
    expect(drop.done).toBe(false);
    const counts = await drain(drop, 16);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(dropped.length);
    expect(counts.length).toBeGreaterThan(dropped.length / 16);
    expectOnly(store, dropped, kept);
    expect(await drop.step(16)).toBe(0);
  });

  test("writes and removals of other records between steps are untouched by the drop", async () => {
    const store = make();
    const { dropped, kept } = fill(store, 200);
    const drop = store.dropPrefix(versionPrefix("s", "v1"));
    const extra: Uint8Array[] = [];
    let round = 0;
    while (!drop.done) {
      await drop.step(5);
      round++;
      const key = versionKey("s", "v2", `late${round}`);
      write(store, key, record(["k", value(1, 100, key.length)]), 101);
      extra.push(key);
      if (round % 3 === 0) {
        const gone = kept.pop()!;
        expect(store.remove(gone, 0, gone.length)).toBe(true);
        dropped.push(gone);
      }
    }
    expectOnly(store, dropped, [...kept, ...extra]);
  });

  test("a prefix of 0xFF bytes only, which has no upper bound, drops every key under it", async () => {
    const store = make();
    const { dropped, kept } = fill(store, 50);
    const users = kept.filter((k) => k[0] !== 0xff);
    const all = [...dropped, ...kept.filter((k) => k[0] === 0xff)];
    await drain(store.dropPrefix(Uint8Array.from([0xff])), 7);
    expectOnly(store, all, users);
  });

  test("a prefix nothing starts with is done after a step that removes nothing", async () => {
    const store = make();
    const { kept, dropped } = fill(store, 20);
    const counts = await drain(store.dropPrefix(versionPrefix("other", "v1")), 1_000);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(0);
    expectOnly(store, [], [...kept, ...dropped]);
  });
});

describe("memory store: dropPrefix", () => {
  test("each step walks a bounded stretch of the cache, so many non-matching records take many steps", async () => {
    const store = memory({ shardCount: 1, maxEntries: 2_000 });
    for (let i = 0; i < 1_000; i++) write(store, enc.encode(`user:${i}`), record(["k", value(1, 0, i)]));
    const last = versionKey("s", "v1", "last");
    write(store, last, record(["k", value(1, 0, 1)]));
    const counts = await drain(store.dropPrefix(versionPrefix("s", "v1")), 1);
    // At most 8 slots per record a step may remove: 1001 slots take at least 126 steps.
    expect(counts.length).toBeGreaterThanOrEqual(Math.ceil(1_001 / 8));
    expect(counts.filter((n) => n > 0)).toEqual([1]);
    expect(read(store, last)).toBeNull();
    expect(store.cache.size).toBe(1_000);
  });
});

describe("tiered store: dropPrefix", () => {
  test("records in the file only, in the cache too, and cached as absent are all dropped alike", async () => {
    const store = tiered({ maxEntries: 8, shardCount: 1 });
    const { dropped, kept } = fill(store, 300);
    store.commit();
    // Some of them cached (the last ones read), an absent key under the prefix cached as absent.
    for (const key of dropped.slice(0, 4)) expect(read(store, key)).not.toBeNull();
    expect(read(store, versionKey("s", "v1", "never"))).toBeNull();
    const before = store.backend.count();
    const counts = await drain(store.dropPrefix(versionPrefix("s", "v1")), 7);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(dropped.length);
    expect(store.backend.count()).toBe(before - dropped.length);
    expect(store.backend.dirty).toBe(false); // every step's deletes committed before it settled
    expectOnly(store, dropped, kept);
  });

  test("the drop's deletes are in the file after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-store-"));
    dirs.push(dir);
    const first = tiered({ maxEntries: 16, shardCount: 1 }, dir);
    const { dropped, kept } = fill(first, 100);
    await drain(first.dropPrefix(versionPrefix("s", "v1")), 9);
    first.close();
    const second = tiered({}, dir);
    expect(second.backend.count()).toBe(kept.length);
    expectOnly(second, dropped, kept);
  });

  test("a step whose commit fails rejects, and the drop starts over and still removes every record", async () => {
    const store = tiered({ maxEntries: 32, shardCount: 1 });
    const { dropped, kept } = fill(store, 60);
    store.commit();
    const drop = store.dropPrefix(versionPrefix("s", "v1"));
    expect(await drop.step(10)).toBe(10);
    // The next commit fails as a full disk would fail it: SQLite rolls the turn back.
    const backend = store.backend;
    const realCommit = backend.commit.bind(backend);
    backend.commit = () => {
      backend.commit = realCommit;
      const internals = backend as unknown as { db: Database; inTransaction: boolean };
      internals.db.run("ROLLBACK");
      internals.inTransaction = false;
      throw new FeatureStoreError(Code.ResourceExhausted, "injected: disk full");
    };
    let failure: unknown = null;
    try {
      await drop.step(10);
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(FeatureStoreError);
    expect(drop.done).toBe(false);
    expect(store.backend.count()).toBe(dropped.length + kept.length - 10);
    await drain(drop, 10);
    expect(store.backend.count()).toBe(kept.length);
    expectOnly(store, dropped, kept);
  });

  test("prefixEnd is the least string above every string with the prefix", () => {
    expect(prefixEnd(Uint8Array.from([1, 2, 3]))).toEqual(Uint8Array.from([1, 2, 4]));
    expect(prefixEnd(Uint8Array.from([0xff, 0x76, 0xff, 0xff]))).toEqual(Uint8Array.from([0xff, 0x77]));
    expect(prefixEnd(Uint8Array.from([0xff, 0xff]))).toBeNull();
    expect(prefixEnd(new Uint8Array(0))).toBeNull();
  });
});
