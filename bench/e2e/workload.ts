/**
 * The benchmark's data set and key streams, modelled on Feast's published serving benchmarks:
 * N entities with 20 features each (6 ints, 6 doubles, 6 short strings, 1 bool, 1 embedding of
 * 32 float32), generated deterministically from the entity index so every system holds the same
 * values, and random entity ids drawn uniformly or from Zipf(0.99).
 */
import { FeatureVectorSpec } from "../../src/codec/dense.ts";
import type { FeaturesInput } from "../../src/codec/features.ts";

export const INT_FEATURES = [
  "age_days",
  "clicks_7d",
  "clicks_30d",
  "purchases_30d",
  "sessions_1d",
  "cart_items",
] as const;
export const DOUBLE_FEATURES = [
  "ctr_7d",
  "ctr_30d",
  "avg_order_value",
  "ltv_estimate",
  "rating_avg",
  "price_sensitivity",
] as const;
export const STRING_FEATURES = ["country", "device", "segment", "plan", "last_category", "language"] as const;
export const BOOL_FEATURE = "is_premium";
export const EMBEDDING_FEATURE = "embedding";
export const EMBEDDING_DIM = 32;

/** The 20 names, in the order every system writes them. */
export const FEATURE_NAMES: readonly string[] = [
  ...INT_FEATURES,
  ...DOUBLE_FEATURES,
  ...STRING_FEATURES,
  BOOL_FEATURE,
  EMBEDDING_FEATURE,
];

/** The 5 names of the projected GetFeatures (one of each kind, the embedding included). */
export const PROJECTED: readonly string[] = [
  "clicks_7d",
  "ctr_7d",
  "segment",
  BOOL_FEATURE,
  EMBEDDING_FEATURE,
];
/** The 5 features a SetFeatures writes (a merge into the existing record). */
export const WRITTEN: readonly string[] = [
  "clicks_7d",
  "sessions_1d",
  "ctr_7d",
  "last_category",
  BOOL_FEATURE,
];

const COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "ES", "IT", "NL", "SE"];
const DEVICES = ["ios", "android", "web-desktop", "web-mobile", "tv"];
const SEGMENTS = ["new", "casual", "engaged", "power", "churn-risk", "dormant"];
const PLANS = ["free", "basic", "plus", "premium", "family"];
const CATEGORIES = [
  "books",
  "electronics",
  "garden",
  "toys",
  "grocery",
  "fashion",
  "sports",
  "beauty",
  "home",
];
const LANGUAGES = ["en", "de", "fr", "ja", "pt", "es", "it", "nl", "sv"];

/** The entity id of entity i. */
export function entityId(i: number): string {
  return `user:${i}`;
}

/** mulberry32: a small, fast, seedable PRNG; returns [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

/** Plain values of entity i (`version` varies the written values of SetFeatures). */
export interface EntityValues {
  ints: number[];
  doubles: number[];
  strings: string[];
  bool: boolean;
  embedding: Float32Array;
}

export function entityValues(i: number, version = 0): EntityValues {
  const r = rng(i * 2654435761 + version * 97 + 1);
  return {
    ints: [
      Math.floor(r() * 4000),
      Math.floor(r() * 200),
      Math.floor(r() * 900),
      Math.floor(r() * 40),
      Math.floor(r() * 12),
      Math.floor(r() * 9),
    ],
    // Rounded as a feature pipeline would write them; none is an integer (see doubleOf).
    doubles: [r() * 0.2, r() * 0.2, 5 + r() * 300, 10 + r() * 5000, 1 + r() * 4, r()].map(doubleOf),
    strings: [
      pick(r, COUNTRIES),
      pick(r, DEVICES),
      pick(r, SEGMENTS),
      pick(r, PLANS),
      pick(r, CATEGORIES),
      pick(r, LANGUAGES),
    ],
    bool: r() < 0.2,
    embedding: Float32Array.from({ length: EMBEDDING_DIM }, () => r() * 2 - 1),
  };
}

/** Four significant decimals, never an integer (so the value stays a double everywhere). */
function doubleOf(x: number): number {
  const v = Math.round(x * 1e4) / 1e4;
  return Number.isInteger(v) ? v + 0.0001 : v;
}

/** Entity i as our client writes it (ints as int_value, doubles forced to double_value). */
export function ourFeatures(v: EntityValues): FeaturesInput {
  const f: FeaturesInput = {};
  INT_FEATURES.forEach((n, k) => {
    f[n] = v.ints[k]!;
  });
  DOUBLE_FEATURES.forEach((n, k) => {
    f[n] = { double: v.doubles[k]! };
  });
  STRING_FEATURES.forEach((n, k) => {
    f[n] = v.strings[k]!;
  });
  f[BOOL_FEATURE] = v.bool;
  f[EMBEDDING_FEATURE] = v.embedding;
  return f;
}

/** The 5 written features of a SetFeatures, ours. */
export function ourWrite(v: EntityValues): FeaturesInput {
  return {
    clicks_7d: v.ints[1]!,
    sessions_1d: v.ints[4]!,
    ctr_7d: { double: v.doubles[0]! },
    last_category: v.strings[4]!,
    is_premium: v.bool,
  };
}

/**
 * The 5 written features of a SetFeatures as `@grpc/proto-loader` objects (the stub client's
 * request shape: one oneof field set per value).
 */
export function stubWrite(v: EntityValues): Record<string, Record<string, unknown>> {
  return {
    clicks_7d: { intValue: v.ints[1]! },
    sessions_1d: { intValue: v.ints[4]! },
    ctr_7d: { doubleValue: v.doubles[0]! },
    last_category: { stringValue: v.strings[4]! },
    is_premium: { boolValue: v.bool },
  };
}

/**
 * Entity i as a Redis hash, as a user would store it with HSET: numbers as decimal strings,
 * the bool as "1"/"0", the embedding as base64 of its little-endian float32 bytes (the
 * compact and cheap-to-decode choice; a comma list is 2.5x larger and slower to parse).
 */
export function redisFields(v: EntityValues): Record<string, string> {
  const f: Record<string, string> = {};
  INT_FEATURES.forEach((n, k) => {
    f[n] = String(v.ints[k]!);
  });
  DOUBLE_FEATURES.forEach((n, k) => {
    f[n] = String(v.doubles[k]!);
  });
  STRING_FEATURES.forEach((n, k) => {
    f[n] = v.strings[k]!;
  });
  f[BOOL_FEATURE] = v.bool ? "1" : "0";
  f[EMBEDDING_FEATURE] = Buffer.from(
    v.embedding.buffer,
    v.embedding.byteOffset,
    v.embedding.byteLength,
  ).toString("base64");
  return f;
}

/** The 5 written features of a SetFeatures, as HSET field/value arguments. */
export function redisWrite(v: EntityValues): Record<string, string> {
  return {
    clicks_7d: String(v.ints[1]!),
    sessions_1d: String(v.ints[4]!),
    ctr_7d: String(v.doubles[0]!),
    last_category: v.strings[4]!,
    is_premium: v.bool ? "1" : "0",
  };
}

/** Feature kinds of the schema, for typed decode of Redis strings. */
const KIND_INT = 1;
const KIND_DOUBLE = 2;
const KIND_STRING = 3;
const KIND_BOOL = 4;
const KIND_EMBEDDING = 5;
const KINDS = new Map<string, number>([
  ...INT_FEATURES.map((n) => [n, KIND_INT] as [string, number]),
  ...DOUBLE_FEATURES.map((n) => [n, KIND_DOUBLE] as [string, number]),
  ...STRING_FEATURES.map((n) => [n, KIND_STRING] as [string, number]),
  [BOOL_FEATURE, KIND_BOOL],
  [EMBEDDING_FEATURE, KIND_EMBEDDING],
]);

export type TypedValue = number | string | boolean | Float32Array;

function decodeOne(kind: number | undefined, s: string): TypedValue {
  switch (kind) {
    case KIND_INT:
    case KIND_DOUBLE:
      return Number(s);
    case KIND_BOOL:
      return s === "1";
    case KIND_EMBEDDING: {
      const bytes = Uint8Array.fromBase64(s);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    }
    default:
      return s;
  }
}

/**
 * What an inference service must do with HGETALL's object of strings: turn it back into typed
 * values with the feature schema (numbers, a bool, a Float32Array). Returns null for a missing key.
 */
export function decodeRedisHash(h: Record<string, string>): Record<string, TypedValue> | null {
  const out: Record<string, TypedValue> = {};
  let any = false;
  for (const name in h) {
    out[name] = decodeOne(KINDS.get(name), h[name]!);
    any = true;
  }
  return any ? out : null;
}

/** Typed decode of an HMGET reply for `names`. */
export function decodeRedisFields(
  names: readonly string[],
  values: (string | null)[],
): Record<string, TypedValue> {
  const out: Record<string, TypedValue> = {};
  for (let k = 0; k < names.length; k++) {
    const s = values[k];
    if (s !== null && s !== undefined) out[names[k]!] = decodeOne(KINDS.get(names[k]!), s);
  }
  return out;
}

/** Key distributions. */
export type Distribution = "uniform" | "zipf";

/**
 * A stream of `count` entity indexes in [0, n). Zipf(s) ranks are drawn by inverting the CDF
 * (binary search), and rank r is mapped to entity (r * P) mod n with P coprime to n, so that
 * the hot entities are spread over the key space rather than loaded next to each other.
 */
export function keyStream(n: number, count: number, dist: Distribution, s = 0.99, seed = 42): Int32Array {
  const out = new Int32Array(count);
  const r = rng(seed);
  if (dist === "uniform") {
    for (let i = 0; i < count; i++) out[i] = Math.floor(r() * n);
    return out;
  }
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) {
    acc += 1 / (k + 1) ** s;
    cdf[k] = acc;
  }
  let p = 2654435761 % n || 1;
  while (gcd(p, n) !== 1) p++;
  for (let i = 0; i < count; i++) {
    const u = r() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out[i] = (lo * p) % n;
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * The dense read of the workload: all 20 features as one row of 51 floats (the ints, doubles
 * and bool as numbers, the embedding as 32 floats, each string as a category code: its index
 * in the value lists above, looked up once per distinct value). The spec is the whole record, so
 * by default it fetches whole records (`fetch: "all"`): no projection work on the server.
 */
export function workloadSpec(fetch: "named" | "all" = "all"): FeatureVectorSpec {
  const lists = [COUNTRIES, DEVICES, SEGMENTS, PLANS, CATEGORIES, LANGUAGES];
  return new FeatureVectorSpec(
    [
      ...INT_FEATURES,
      ...DOUBLE_FEATURES,
      ...STRING_FEATURES.map((name, k) => ({
        name,
        kind: "string" as const,
        map: (v: string) => lists[k]!.indexOf(v),
        default: -1,
      })),
      BOOL_FEATURE,
      { name: EMBEDDING_FEATURE, width: EMBEDDING_DIM },
    ],
    { fetch },
  );
}
