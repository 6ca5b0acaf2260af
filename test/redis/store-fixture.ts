/**
 * The RedisStore alone (no service) against real Redis: stores to open and close, canonical
 * values built by hand (`0x50 <event time> [0x58 <max age>] 0x08 <int>`), entities read back
 * through the store's own `find`/`loaded`, and raw hashes read past the near-cache.
 */
import { RedisStore, type RedisStoreOptions } from "../../src/store/redis/store.ts";
import { PENDING } from "../../src/store/types.ts";
import { redisStoreOptions } from "./api.ts";

export type Target = { url?: string; clusterNodes?: string[] };

/** Stores opened by `openStore`, closed by `closeStores` (afterEach). */
const opened: RedisStore[] = [];

/** A connected store over `target` (REDIS_KEY_PREFIX "fs:", see `redisStoreOptions`). */
export async function openStore(
  target: Target,
  overrides: Partial<RedisStoreOptions> & { entries?: number } = {},
): Promise<RedisStore> {
  const store = RedisStore.create(redisStoreOptions(target, overrides));
  opened.push(store);
  await store.connection.whenConnected(10_000);
  return store;
}

export async function closeStores(): Promise<void> {
  for (const s of opened.splice(0)) await s.close();
}

const enc = new TextEncoder();
/** UTF-8 bytes of `s` (names and ids). */
export const b = (s: string): Uint8Array => enc.encode(s);

function varint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** A canonical FeatureValue with int_value `n`: event time `t`, then max age when > 0. */
export function intValue(t: number, n: number, maxAgeMs = 0): Uint8Array {
  const out: number[] = [0x50];
  varint(out, t);
  if (maxAgeMs > 0) {
    out.push(0x58);
    varint(out, maxAgeMs);
  }
  out.push(0x08);
  varint(out, n);
  return new Uint8Array(out);
}

/** Reads varint fields of a FeatureValue: field number -> value (int_value is 1, event time 10). */
export function varintFields(v: Uint8Array): Map<number, number> {
  const fields = new Map<number, number>();
  let p = 0;
  while (p < v.length) {
    const tag = v[p++]!;
    if ((tag & 7) !== 0) throw new Error(`not a varint field: tag ${tag}`);
    let x = 0;
    let mul = 1;
    for (;;) {
      const c = v[p++]!;
      x += (c & 0x7f) * mul;
      mul *= 128;
      if (c < 0x80) break;
    }
    fields.set(tag >>> 3, x);
  }
  return fields;
}

/** int_value of a value made by `intValue` (or written by redis-cli as 0x08 <n>). */
export function intOf(v: Uint8Array): number {
  const n = varintFields(v).get(1);
  if (n === undefined) throw new Error("no int_value");
  return n;
}

/** An update's compute adding 1 to every name's int (absent: 0), stamped with event time `t`. */
export function increment(t = Date.now()) {
  return (current: (Uint8Array | null)[]) => current.map((v) => intValue(t, (v === null ? 0 : intOf(v)) + 1));
}

/** The features of an entity as the store serves it (near-cache or a load): name -> value bytes; null if absent. */
export async function entity(store: RedisStore, id: Uint8Array): Promise<Map<string, Uint8Array> | null> {
  let h = store.find(id, 0, id.length);
  if (h === PENDING) {
    await store.loaded();
    h = store.find(id, 0, id.length);
  }
  if (h < 0) return null;
  return parseRecord(store.arena(h).slice(store.offset(h), store.offset(h) + store.length(h)));
}

/** The entries of a record (`0x12 len 0x0a len name 0x12 len value`...). */
export function parseRecord(r: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let p = 0;
  const len = (): number => {
    let x = 0;
    let mul = 1;
    for (;;) {
      const c = r[p++]!;
      x += (c & 0x7f) * mul;
      mul *= 128;
      if (c < 0x80) return x;
    }
  };
  while (p < r.length) {
    p++; // 0x12
    len();
    p++; // 0x0a
    const nl = len();
    const name = new TextDecoder().decode(r.subarray(p, p + nl));
    p += nl + 1; // name, 0x12
    const vl = len();
    out.set(name, r.slice(p, p + vl));
    p += vl;
  }
  return out;
}

/** The Redis key of an entity of these stores ("fs:" + id). */
export function keyOf(id: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from("fs:"), id]);
}

/** HGETALL straight from Redis (past the near-cache): name -> bytes. */
export async function rawHash(store: RedisStore, id: Uint8Array): Promise<Map<string, Buffer>> {
  const key = keyOf(id);
  const flat = (await store.connection.send(key, true, ["HGETALL", key])) as Buffer[];
  const out = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!.toString("utf8"), flat[i + 1]!);
  return out;
}

/** PTTL of an entity straight from Redis. */
export async function pttl(store: RedisStore, id: Uint8Array): Promise<number> {
  const key = keyOf(id);
  return Number(await store.connection.send(key, true, ["PTTL", key]));
}

/** EXISTS of a raw key. */
export async function exists(store: RedisStore, key: Buffer): Promise<boolean> {
  return Number(await store.connection.send(key, true, ["EXISTS", key])) === 1;
}

/** The names of a setFeatures' skipped answer, as text, sorted. */
export function names(list: Uint8Array[]): string[] {
  return list.map((n) => new TextDecoder().decode(n)).sort();
}
