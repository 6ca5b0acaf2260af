/**
 * Generators for the fuzz suite, shared by the `bun test` part (test/fuzz/*.test.ts) and the
 * long run (bench/fuzz/run.ts). Every generated value is plain data (field trees, lists of
 * mutations), so fast-check can shrink a failure down to a small reproducer.
 *
 * Three kinds of request body, as issue 8 asks:
 * - (a) random bytes;
 * - (b) a valid request built with protobuf-es, encoded, then mutated: structurally (fields
 *   inserted, deleted, duplicated, moved, renumbered to 0 or past 2^29-1, given another wire
 *   type including 3/4/6/7, overlong tags and lengths, lying lengths, new payloads such as
 *   invalid UTF-8 or packed runs of bad length) and then byte by byte (bit flips, truncation,
 *   splices);
 * - (c) SetFeatures / BatchSet whose FeatureValue bytes are built field by field at random.
 */
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import fc from "fast-check";
import { METHOD_NAMES, Method } from "../../src/codec/frame.ts";
import {
  BatchGetRequestSchema,
  BatchGetResponseSchema,
  BatchSetRequestSchema,
  BatchSetResponseSchema,
  DeleteFeaturesRequestSchema,
  DeleteFeaturesResponseSchema,
  DropVersionRequestSchema,
  FeatureSetInfoSchema,
  FeatureUpdateSchema,
  type FeatureValue,
  FeatureValueSchema,
  FloatListSchema,
  GetFeatureSetRequestSchema,
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  Int64ListSchema,
  PublishVersionRequestSchema,
  RollbackVersionRequestSchema,
  SetFeaturesRequestSchema,
  SetFeaturesResponseSchema,
  StringListSchema,
  UpdateFeaturesRequestSchema,
  UpdateFeaturesResponseSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import {
  cloneWire,
  encodeWire,
  hex,
  messageNodes,
  parseWire,
  shapeOf,
  varint,
  type WireField,
} from "./wire.ts";

/**
 * Request and response schema of each method number (Ping has neither: empty bodies; nor has
 * the TCP Authenticate frame, 6, whose body is a token and whose answer is empty).
 */
export const REQUEST_SCHEMAS: (DescMessage | undefined)[] = [
  undefined,
  GetFeaturesRequestSchema,
  BatchGetRequestSchema,
  SetFeaturesRequestSchema,
  BatchSetRequestSchema,
  DeleteFeaturesRequestSchema,
  undefined,
  UpdateFeaturesRequestSchema,
  PublishVersionRequestSchema,
  RollbackVersionRequestSchema,
  DropVersionRequestSchema,
  GetFeatureSetRequestSchema,
];
export const RESPONSE_SCHEMAS: (DescMessage | undefined)[] = [
  undefined,
  GetFeaturesResponseSchema,
  BatchGetResponseSchema,
  SetFeaturesResponseSchema,
  BatchSetResponseSchema,
  DeleteFeaturesResponseSchema,
  undefined,
  UpdateFeaturesResponseSchema,
  FeatureSetInfoSchema,
  FeatureSetInfoSchema,
  FeatureSetInfoSchema,
  FeatureSetInfoSchema,
];

/** Entity ids the generators favour, so that requests meet the records the harness seeds. */
export const SEEDED_IDS = ["u1", "u2", "big"] as const;

/** One request: a method number and its body bytes. Prints as a reproducer. */
export interface Step {
  method: number;
  body: Uint8Array;
}

/** Attaches the printed form fast-check shows for a counterexample: method and body hex. */
export function step(method: number, body: Uint8Array): Step {
  return Object.assign(
    { method, body },
    { [fc.toStringMethod]: () => `{method: ${METHOD_NAMES[method] ?? method}, body: "${hex(body)}"}` },
  );
}

// ---- scalars ---------------------------------------------------------------------------------

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const utf8 = new TextEncoder();

/** Byte strings that are not UTF-8: stray continuation, overlong NUL, lone surrogates, past U+10FFFF, truncated. */
export const BAD_UTF8: readonly number[][] = [
  [0xff],
  [0x80],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe2, 0x82],
  [0x61, 0xf0, 0x9f, 0x98],
];

/** Field numbers: the schema's, then the edges (0, 2^29-1, 2^29, 2^32 ...), then anything. */
export const arbFieldNo: fc.Arbitrary<number> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 8 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      0,
      9,
      15,
      16,
      19000,
      2 ** 29 - 1,
      2 ** 29,
      2 ** 29 + 1,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 32 - 1,
      2 ** 32,
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 32 }) },
);

/** Wire types: mostly the four real ones, sometimes groups (3, 4) and the undefined 6 and 7. */
export const arbWireType: fc.Arbitrary<number> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(0, 1, 2, 5) },
  { weight: 2, arbitrary: fc.constantFrom(3, 4, 6, 7) },
);

/** Varint payloads: any u64, the edges around 2^52, 2^53, 2^60, 2^63, overlong and 11-byte ones. */
export const arbVarintBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => Uint8Array.from(varint(v))),
  },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom(
        0n,
        1n,
        127n,
        128n,
        2n ** 31n,
        2n ** 32n,
        2n ** 52n - 1n,
        2n ** 52n,
        2n ** 52n + 1n,
        2n ** 53n,
        2n ** 53n + 1n,
        2n ** 60n,
        2n ** 63n - 1n,
        2n ** 63n,
        2n ** 64n - 1n,
      )
      .map((v) => Uint8Array.from(varint(v))),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.bigInt({ min: 0n, max: 2n ** 20n }), fc.integer({ min: 1, max: 12 }))
      .map(([v, pad]) => Uint8Array.from(varint(v, pad))),
  },
  { weight: 1, arbitrary: fc.constant(Uint8Array.from([...Array(10).fill(0xff), 0x01])) },
);

/** Fixed 64-bit payloads, with the NaN, infinity and -0 patterns. */
const arbFixed64 = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 8, maxLength: 8 }) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(NaN, -0, Infinity, -Infinity, Number.MIN_VALUE, 2 ** 53, 2 ** 63)
      .map((d) => new Uint8Array(new Float64Array([d]).buffer)),
  },
  { weight: 1, arbitrary: fc.constant(Uint8Array.from([1, 0, 0, 0, 0, 0, 0xf8, 0x7f])) }, // NaN with a payload
);

/** Length-delimited payloads of the leaf kind: bytes, UTF-8, not UTF-8, packed runs of good or bad length. */
export const arbLeafPayload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 24 }) },
  { weight: 3, arbitrary: fc.string({ unit: "grapheme", maxLength: 8 }).map((s) => utf8.encode(s)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...BAD_UTF8), fc.string({ maxLength: 3 }), fc.boolean())
      .map(([bad, s, before]) => {
        const ok = utf8.encode(s);
        return Uint8Array.from(before ? [...bad, ...ok] : [...ok, ...bad]);
      }),
  },
  {
    weight: 2,
    // packed varints; one time in four the last byte is cut, leaving a varint unfinished
    arbitrary: fc.tuple(fc.array(arbVarintBytes, { maxLength: 5 }), fc.nat(3)).map(([vs, cut]) => {
      const all = vs.flatMap((v) => Array.from(v));
      return Uint8Array.from(all.slice(0, Math.max(0, all.length - (cut === 0 ? 1 : 0))));
    }),
  },
  {
    weight: 2,
    // packed floats: 4n bytes when n % 3 is 0, else 1 or 2 bytes too many
    arbitrary: fc
      .integer({ min: 0, max: 6 })
      .chain((n) => fc.uint8Array({ minLength: 4 * n + (n % 3), maxLength: 4 * n + (n % 3) })),
  },
);

/** Any field at all, nested up to `depth` levels. */
function arbAnyField(depth: number): fc.Arbitrary<WireField> {
  return fc.tuple(arbFieldNo, arbWireType).chain(([no, wt]): fc.Arbitrary<WireField> => {
    switch (wt) {
      case 0:
        return arbVarintBytes.map((value) => ({ no, wt, value }));
      case 1:
        return arbFixed64.map((value) => ({ no, wt, value }));
      case 5:
        return fc.uint8Array({ minLength: 4, maxLength: 4 }).map((value) => ({ no, wt, value }));
      case 2:
        return depth > 0
          ? fc.oneof(
              { weight: 3, arbitrary: arbLeafPayload.map((value) => ({ no, wt, value })) },
              {
                weight: 1,
                arbitrary: fc
                  .array(arbAnyField(depth - 1), { maxLength: 3 })
                  .map((value) => ({ no, wt, value })),
              },
            )
          : arbLeafPayload.map((value) => ({ no, wt, value }));
      default:
        return fc.uint8Array({ maxLength: 3 }).map((value) => ({ no, wt, value }));
    }
  });
}

export const arbField: fc.Arbitrary<WireField> = arbAnyField(2);

// ---- mutations -------------------------------------------------------------------------------

/** One structural edit of a field tree; `node` picks a message (pre-order), `idx` a field in it (both modulo). */
export type TreeMutation =
  | { op: "insert"; node: number; idx: number; field: WireField }
  | { op: "delete"; node: number; idx: number }
  | { op: "duplicate"; node: number; idx: number }
  | { op: "move"; node: number; idx: number; to: number }
  | { op: "renumber"; node: number; idx: number; no: number }
  | { op: "rewire"; node: number; idx: number; wt: number }
  | { op: "payload"; node: number; idx: number; value: Uint8Array }
  | { op: "pad"; node: number; idx: number; tagPad: number; lenPad: number }
  | { op: "lie"; node: number; idx: number; delta: number };

const at = { node: fc.nat(), idx: fc.nat() };
export const arbTreeMutation: fc.Arbitrary<TreeMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("insert" as const), ...at, field: arbField }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("delete" as const), ...at }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("duplicate" as const), ...at }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("move" as const), ...at, to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("renumber" as const), ...at, no: arbFieldNo }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("rewire" as const), ...at, wt: fc.integer({ min: 0, max: 7 }) }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("payload" as const), ...at, value: arbLeafPayload }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("pad" as const),
      ...at,
      tagPad: fc.integer({ min: 0, max: 10 }),
      lenPad: fc.integer({ min: 0, max: 10 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("lie" as const),
      ...at,
      delta: fc.oneof(fc.integer({ min: -4, max: 4 }), fc.constantFrom(2 ** 20, 2 ** 31, 2 ** 32 - 1)),
    }),
  },
);

/** Applies mutations to a copy of `root`. */
export function mutateTree(root: readonly WireField[], muts: readonly TreeMutation[]): WireField[] {
  const tree = cloneWire(root);
  for (const m of muts) {
    const nodes = messageNodes(tree);
    const node = nodes[m.node % nodes.length]!;
    if (m.op === "insert") {
      node.splice(m.idx % (node.length + 1), 0, cloneWire([m.field])[0]!);
      continue;
    }
    if (node.length === 0) continue;
    const i = m.idx % node.length;
    const f = node[i]!;
    switch (m.op) {
      case "delete":
        node.splice(i, 1);
        break;
      case "duplicate":
        node.splice(i, 0, cloneWire([f])[0]!);
        break;
      case "move": {
        node.splice(i, 1);
        node.splice(m.to % (node.length + 1), 0, f);
        break;
      }
      case "renumber":
        f.no = m.no;
        break;
      case "rewire":
        f.wt = m.wt;
        if (Array.isArray(f.value) && m.wt !== 2) f.value = encodeWire(f.value);
        break;
      case "payload":
        f.value = m.value;
        break;
      case "pad":
        f.tagPad = m.tagPad;
        f.lenPad = m.lenPad;
        break;
      case "lie":
        f.lenDelta = m.delta;
        break;
    }
  }
  return tree;
}

/** One byte-level edit; positions are taken modulo the length. */
export type ByteMutation =
  | { op: "flip"; pos: number; bit: number }
  | { op: "set"; pos: number; byte: number }
  | { op: "truncate"; pos: number }
  | { op: "splice"; pos: number; bytes: Uint8Array }
  | { op: "cut"; pos: number; len: number }
  | { op: "repeat"; pos: number; len: number };

export const arbByteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("flip" as const), pos: fc.nat(), bit: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("set" as const), pos: fc.nat(), byte: fc.nat(255) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("truncate" as const), pos: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("splice" as const),
      pos: fc.nat(),
      bytes: fc.uint8Array({ maxLength: 6 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("cut" as const),
      pos: fc.nat(),
      len: fc.integer({ min: 1, max: 8 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("repeat" as const),
      pos: fc.nat(),
      len: fc.integer({ min: 1, max: 16 }),
    }),
  },
);

export function mutateBytes(input: Uint8Array, muts: readonly ByteMutation[]): Uint8Array {
  let b = Array.from(input);
  for (const m of muts) {
    const n = b.length;
    const p = n === 0 ? 0 : m.pos % n;
    switch (m.op) {
      case "flip":
        if (n > 0) b[p] = b[p]! ^ (1 << m.bit);
        break;
      case "set":
        if (n > 0) b[p] = m.byte;
        break;
      case "truncate":
        b = b.slice(0, m.pos % (n + 1));
        break;
      case "splice":
        b.splice(m.pos % (n + 1), 0, ...m.bytes);
        break;
      case "cut":
        b.splice(p, m.len);
        break;
      case "repeat":
        b.splice(p, 0, ...b.slice(p, p + m.len));
        break;
    }
  }
  return Uint8Array.from(b);
}

// ---- valid messages (protobuf-es) ----------------------------------------------------------------

/** Feature names: a few fixed ones (so that names meet), then any string, including lone surrogates. */
export const arbName: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("a", "b", "c", "emb", "tags", "blob", "ü", "🚀") },
  { weight: 2, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 3 }) },
);

/** Entity ids: mostly the seeded ones, sometimes empty, odd or around the 64-byte limit of the fuzz service. */
export const arbEntityId: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...SEEDED_IDS, "u3") },
  { weight: 2, arbitrary: fc.string({ maxLength: 10 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 14, maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 62, maxLength: 66 }) },
);

const arbInt64 = fc.oneof(
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  fc.constantFrom(0n, -1n, 2n ** 53n, INT64_MIN, INT64_MAX),
);

/** A FeatureValue as protobuf-es holds it; `none` leaves the oneof unset (a write must refuse it). */
export const arbFeatureValue: fc.Arbitrary<FeatureValue["kind"]> = fc.oneof(
  { weight: 3, arbitrary: arbInt64.map((value) => ({ case: "intValue" as const, value })) },
  { weight: 2, arbitrary: fc.double().map((value) => ({ case: "doubleValue" as const, value })) },
  {
    weight: 2,
    arbitrary: fc
      .string({ unit: "grapheme", maxLength: 10 })
      .map((value) => ({ case: "stringValue" as const, value })),
  },
  { weight: 1, arbitrary: fc.boolean().map((value) => ({ case: "boolValue" as const, value })) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        { weight: 9, arbitrary: fc.uint8Array({ maxLength: 24 }) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1500, maxLength: 3000 }) },
      )
      .map((value) => ({ case: "bytesValue" as const, value })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.float(), { maxLength: 6 })
      .map((values) => ({ case: "floatList" as const, value: create(FloatListSchema, { values }) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(arbInt64, { maxLength: 5 })
      .map((values) => ({ case: "intList" as const, value: create(Int64ListSchema, { values }) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.string({ unit: "grapheme", maxLength: 5 }), { maxLength: 4 })
      .map((values) => ({ case: "stringList" as const, value: create(StringListSchema, { values }) })),
  },
  { weight: 1, arbitrary: fc.constant({ case: undefined, value: undefined }) },
);

/** The fuzzed service's fixed clock (oracle.ts), ms. */
const FUZZ_NOW = 1_000_000n;

/**
 * Event times: mostly none (the server stamps its clock), else around the clock (older, equal,
 * newer: set-if-newer), at the 60 s skew bound, or far off (negative, far future).
 */
const arbEventTime: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(0n) },
  { weight: 3, arbitrary: fc.bigInt({ min: FUZZ_NOW - 2_000n, max: FUZZ_NOW + 2_000n }) },
  { weight: 1, arbitrary: fc.constantFrom(FUZZ_NOW + 60_000n, FUZZ_NOW + 60_001n, 1n, -1n, INT64_MAX) },
);

/** Max ages: mostly none, else small enough that reads at the fixed clock find values stale. */
const arbMaxAge: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(0n) },
  { weight: 2, arbitrary: fc.bigInt({ min: 1n, max: 3_000n }) },
  { weight: 1, arbitrary: fc.constantFrom(-1n, INT64_MAX) },
);

/** A features map: usually a handful of names, sometimes more than the fuzz service's 32-name limit. */
const arbFeatures = fc
  .oneof(
    { weight: 10, arbitrary: fc.array(fc.tuple(arbName, arbFeatureValue), { maxLength: 6 }) },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.tuple(
          fc.string({ minLength: 1, maxLength: 5 }),
          fc.integer().map((v) => ({ case: "intValue" as const, value: BigInt(v) })),
        ),
        { minLength: 20, maxLength: 60 },
      ),
    },
  )
  .chain((entries) =>
    fc.tuple(
      fc.constant(entries),
      fc.array(fc.tuple(arbEventTime, arbMaxAge), { minLength: entries.length, maxLength: entries.length }),
    ),
  )
  .map(([entries, times]) => {
    const features: Record<string, MessageShape<typeof FeatureValueSchema>> = {};
    for (const [i, [name, kind]] of entries.entries())
      Object.defineProperty(features, name, {
        value: create(FeatureValueSchema, { kind, eventTimeMs: times[i]![0], maxAgeMs: times[i]![1] }),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    return features;
  });

/** ttl_ms: mostly 0 or small, then the edges: 2^52 (the cache's limit), 2^53, 2^60, 2^63-1, negatives. */
export const arbTtl: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(0n) },
  { weight: 2, arbitrary: fc.bigInt({ min: 1n, max: 100_000n }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      2n ** 52n - 1n,
      2n ** 52n,
      2n ** 52n + 1n,
      2n ** 53n - 1n,
      2n ** 53n,
      2n ** 53n + 1n,
      2n ** 60n,
      INT64_MAX,
      -1n,
      INT64_MIN,
    ),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: INT64_MIN, max: INT64_MAX }) },
);

/** Feature-name lists: short, or long enough to pass the fuzz service's 32-name limit. */
const arbNames = fc.oneof(
  { weight: 10, arbitrary: fc.array(arbName, { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 4 }), { minLength: 30, maxLength: 120 }) },
);

const arbSetRequest = fc
  .record({ entityId: arbEntityId, features: arbFeatures, ttlMs: arbTtl, replace: fc.boolean() })
  .map((r) => create(SetFeaturesRequestSchema, r));

/**
 * One FeatureUpdate: increments (int or double), appends, sets and window observations on the
 * seeded names, so they meet values of every kind (and fail FAILED_PRECONDITION on the wrong one).
 */
const arbUpdate = fc
  .record({
    name: arbName,
    eventTimeMs: arbEventTime,
    maxAgeMs: arbMaxAge,
    op: fc.oneof(
      arbInt64.map((v) => ({
        case: "increment" as const,
        value: { delta: { case: "intDelta" as const, value: v } },
      })),
      fc.double().map((v) => ({
        case: "increment" as const,
        value: { delta: { case: "doubleDelta" as const, value: v } },
      })),
      fc.record({ kind: arbFeatureValue, keepLast: fc.integer({ min: 0, max: 6 }) }).map((a) => ({
        case: "append" as const,
        value: { values: create(FeatureValueSchema, { kind: a.kind }), keepLast: a.keepLast },
      })),
      arbFeatureValue.map((kind) => ({ case: "set" as const, value: create(FeatureValueSchema, { kind }) })),
      fc
        .record({
          value: fc.double(),
          bucketMs: fc.constantFrom(0n, 1_000n, 1_500n),
          retentionMs: fc.constantFrom(0n, 10_000n, 9_000n, 10_000_000n),
        })
        .map((o) => ({
          case: "observe" as const,
          value: { value: o.value, spec: { bucketMs: o.bucketMs, retentionMs: o.retentionMs } },
        })),
    ),
  })
  .map((u) => create(FeatureUpdateSchema, u as Parameters<typeof create<typeof FeatureUpdateSchema>>[1]));

/** A valid request of each method, encoded by protobuf-es. */
export const arbValidStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(step(Method.Ping, new Uint8Array(0))) },
  {
    weight: 3,
    arbitrary: fc
      .record({ entityId: arbEntityId, featureNames: arbNames, maxAgeMs: arbMaxAge })
      .map((r) =>
        step(Method.GetFeatures, toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, r))),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        entityIds: fc.oneof(
          { weight: 5, arbitrary: fc.array(arbEntityId, { maxLength: 6 }) },
          { weight: 1, arbitrary: fc.array(fc.constantFrom(...SEEDED_IDS), { minLength: 4, maxLength: 20 }) },
        ),
        featureNames: arbNames,
        maxAgeMs: arbMaxAge,
      })
      .map((r) => step(Method.BatchGet, toBinary(BatchGetRequestSchema, create(BatchGetRequestSchema, r)))),
  },
  {
    weight: 4,
    arbitrary: arbSetRequest.map((r) => step(Method.SetFeatures, toBinary(SetFeaturesRequestSchema, r))),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(arbSetRequest, { maxLength: 4 })
      .map((items) =>
        step(Method.BatchSet, toBinary(BatchSetRequestSchema, create(BatchSetRequestSchema, { items }))),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ entityId: arbEntityId, featureNames: arbNames })
      .map((r) =>
        step(
          Method.DeleteFeatures,
          toBinary(DeleteFeaturesRequestSchema, create(DeleteFeaturesRequestSchema, r)),
        ),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        entityId: arbEntityId,
        updates: fc.array(arbUpdate, { maxLength: 4 }),
        ttlMs: fc.constantFrom(0n, 1000n),
      })
      .map((r) =>
        step(
          Method.UpdateFeatures,
          toBinary(UpdateFeaturesRequestSchema, create(UpdateFeaturesRequestSchema, r)),
        ),
      ),
  },
);

// ---- (c): FeatureValue bytes built field by field ------------------------------------------------

/** Field numbers inside a FloatList / Int64List / StringList: mostly 1, sometimes 0 or past 2^29-1. */
const arbListFieldNo = fc.oneof(
  { weight: 8, arbitrary: fc.constant(1) },
  { weight: 2, arbitrary: fc.constantFrom(0, 2, 15, 2 ** 29 - 1, 2 ** 29, 2 ** 32 - 1, 2 ** 32) },
);

/** One field of a list message: the right shape for `kind` (6 float, 7 int, 8 string) or a wrong one. */
function arbListField(kind: number): fc.Arbitrary<WireField> {
  const right: fc.Arbitrary<WireField> =
    kind === 6
      ? fc.oneof(
          fc
            .tuple(arbListFieldNo, fc.uint8Array({ minLength: 4, maxLength: 4 }))
            .map(([no, value]) => ({ no, wt: 5, value })),
          fc
            .tuple(arbListFieldNo, fc.integer({ min: 0, max: 4 }), fc.integer({ min: -1, max: 1 }))
            .chain(([no, n, off]) =>
              fc
                .uint8Array({ minLength: Math.max(0, 4 * n + off), maxLength: Math.max(0, 4 * n + off) })
                .map((value) => ({ no, wt: 2, value })),
            ),
        )
      : kind === 7
        ? fc.oneof(
            fc.tuple(arbListFieldNo, arbVarintBytes).map(([no, value]) => ({ no, wt: 0, value })),
            fc.tuple(arbListFieldNo, arbLeafPayload).map(([no, value]) => ({ no, wt: 2, value })),
          )
        : fc.tuple(arbListFieldNo, arbLeafPayload).map(([no, value]) => ({ no, wt: 2, value }));
  return fc.oneof({ weight: 6, arbitrary: right }, { weight: 1, arbitrary: arbAnyField(0) });
}

/** One field of a FeatureValue: usually a oneof member with its own wire type, else anything. */
const arbValueField: fc.Arbitrary<WireField> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.integer({ min: 1, max: 8 }).chain((no): fc.Arbitrary<WireField> => {
      switch (no) {
        case 1:
        case 4:
          return arbVarintBytes.map((value) => ({ no, wt: 0, value }));
        case 2:
          return arbFixed64.map((value) => ({ no, wt: 1, value }));
        case 3:
        case 5:
          return arbLeafPayload.map((value) => ({ no, wt: 2, value }));
        default:
          return fc.array(arbListField(no), { maxLength: 4 }).map((value) => ({ no, wt: 2, value }));
      }
    }),
  },
  { weight: 1, arbitrary: arbAnyField(1) },
  // a huge field number whose low 32 bits of tag name a oneof member
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 7 })).map(([no, k]) => ({
      no: no + k * 2 ** 29,
      wt: no === 2 ? 1 : no === 1 || no === 4 ? 0 : 2,
      value: no === 2 ? new Uint8Array(8) : no === 1 || no === 4 ? Uint8Array.of(1) : new Uint8Array(0),
    })),
  },
);

/** A FeatureValue as a field tree: usually one field, sometimes none or several (the last one wins). */
export const arbValueTree: fc.Arbitrary<WireField[]> = fc.oneof(
  { weight: 6, arbitrary: arbValueField.map((f) => [f]) },
  { weight: 2, arbitrary: fc.array(arbValueField, { maxLength: 4 }) },
);

const text = (field: number, s: string): WireField => ({ no: field, wt: 2, value: utf8.encode(s) });

/** A SetFeaturesRequest tree whose values come from `arbValueTree`. */
export const arbSetTree: fc.Arbitrary<WireField[]> = fc
  .record({
    entityId: arbEntityId,
    entries: fc.array(fc.tuple(arbName, arbValueTree), { minLength: 1, maxLength: 5 }),
    ttl: fc.option(arbTtl),
    replace: fc.option(fc.boolean()),
  })
  .map(({ entityId, entries, ttl, replace }) => {
    const tree: WireField[] = [text(1, entityId)];
    for (const [name, value] of entries)
      tree.push({ no: 2, wt: 2, value: [text(1, name), { no: 2, wt: 2, value }] });
    if (ttl !== null) tree.push({ no: 3, wt: 0, value: Uint8Array.from(varint(BigInt.asUintN(64, ttl))) });
    if (replace !== null) tree.push({ no: 4, wt: 0, value: Uint8Array.of(replace ? 1 : 0) });
    return tree;
  });

// ---- the three kinds of request ---------------------------------------------------------------------

const arbMethod = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 5 }) },
  { weight: 1, arbitrary: fc.integer({ min: 6, max: 255 }) },
);

/** (a) random bytes under any method. */
export const arbRandomStep: fc.Arbitrary<Step> = fc
  .tuple(arbMethod, fc.uint8Array({ maxLength: 200 }))
  .map(([m, b]) => step(m, b));

const parsed = (s: Step): WireField[] => {
  const desc = REQUEST_SCHEMAS[s.method];
  return desc ? parseWire(s.body, shapeOf(desc)) : [];
};

/** (b) a valid request, then 0-4 structural and 0-2 byte mutations. */
export const arbMutatedStep: fc.Arbitrary<Step> = fc
  .record({
    valid: arbValidStep,
    tree: fc.array(arbTreeMutation, { maxLength: 4 }),
    bytes: fc.oneof(
      { weight: 3, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.array(arbByteMutation, { maxLength: 2 }) },
    ),
  })
  .map(({ valid, tree, bytes }) => {
    const body = tree.length === 0 ? valid.body : encodeWire(mutateTree(parsed(valid), tree));
    return step(valid.method, mutateBytes(body, bytes));
  });

/** (c) SetFeatures or BatchSet with FeatureValue bytes built field by field, maybe mutated further. */
export const arbValueBytesStep: fc.Arbitrary<Step> = fc
  .record({
    batch: fc.option(fc.array(arbSetTree, { minLength: 1, maxLength: 3 }), { freq: 4 }),
    single: arbSetTree,
    tree: fc.oneof(
      { weight: 3, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.array(arbTreeMutation, { maxLength: 2 }) },
    ),
  })
  .map(({ batch, single, tree }) =>
    batch === null
      ? step(Method.SetFeatures, encodeWire(mutateTree(single, tree)))
      : step(
          Method.BatchSet,
          encodeWire(
            mutateTree(
              batch.map((item) => ({ no: 1, wt: 2, value: item })),
              tree,
            ),
          ),
        ),
  );

/** Any request body, weighted towards the ones that get past the first check. */
export const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: arbRandomStep },
  { weight: 2, arbitrary: arbValidStep },
  { weight: 5, arbitrary: arbMutatedStep },
  { weight: 4, arbitrary: arbValueBytesStep },
);

/** A short sequence of requests: writes followed by the reads that meet them. */
export const arbSteps: fc.Arbitrary<Step[]> = fc.array(arbStep, { minLength: 1, maxLength: 4 });

// ---- JSON bodies (Connect JSON and gRPC-web+json) --------------------------------------------------

/** A marker that the JSON encoder below turns into raw text (numbers JSON.stringify cannot write). */
const RAW = "\u0000raw:";

/** Values that a JSON decoder of these messages must refuse or read correctly, never crash on. */
export const arbOddJson: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom<unknown>(
      null,
      true,
      false,
      0,
      -1,
      1.5,
      -0.5,
      2 ** 53,
      2 ** 53 + 2,
      2 ** 64,
      -(2 ** 63),
      1e308,
      -1e308,
      5e-324,
      "",
      " ",
      "0",
      "-0",
      "1.0",
      "1e3",
      "0x10",
      "+1",
      " 1",
      "NaN",
      "Infinity",
      "-Infinity",
      "9223372036854775807",
      "9223372036854775808",
      "-9223372036854775809",
      "18446744073709551616",
      "4503599627370496",
      "1152921504606846976",
      "\ud800",
      "\udfff",
      "a\u0000b",
      "AAAA",
      "A===",
      "-_-_",
      [],
      [[]],
      [null],
      {},
      { intValue: "1", doubleValue: 2 },
      { floatList: { values: ["NaN", "x"] } },
      { "@type": "x" },
      `${RAW}1e400`,
      `${RAW}-1e400`,
      `${RAW}123456789012345678901234567890`,
      `${RAW}1E2`,
      `${RAW}-0`,
      `${RAW}0.0000000000000000000000000001`,
    ),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.bigInt({ min: INT64_MIN * 4n, max: INT64_MAX * 4n }).map((b) => b.toString()) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) },
);

/** Keys a mutation may add to an object: real JSON names, proto names, unknown and dangerous ones. */
const arbJsonKey = fc.constantFrom(
  "entityId",
  "entity_id",
  "featureNames",
  "feature_names",
  "entityIds",
  "features",
  "ttlMs",
  "ttl_ms",
  "replace",
  "items",
  "intValue",
  "doubleValue",
  "stringValue",
  "boolValue",
  "bytesValue",
  "floatList",
  "intList",
  "stringList",
  "values",
  "unknownField",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "",
);

export type JsonMutation =
  | { op: "replace"; node: number; value: unknown }
  | { op: "add"; node: number; key: string; value: unknown }
  | { op: "remove"; node: number };

export const arbJsonMutation: fc.Arbitrary<JsonMutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("replace" as const), node: fc.nat(), value: arbOddJson }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("add" as const),
      node: fc.nat(),
      key: arbJsonKey,
      value: arbOddJson,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("remove" as const), node: fc.nat() }) },
);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Applies JSON mutations to a copy of `value`; nodes are counted in pre-order, the root first. */
export function mutateJson(value: unknown, muts: readonly JsonMutation[]): unknown {
  let root = structuredClone(value) as Json;
  for (const m of muts) {
    const slots: { get: () => Json; set: (v: Json) => void; remove: () => void }[] = [];
    const visit = (get: () => Json, set: (v: Json) => void, remove: () => void) => {
      slots.push({ get, set, remove });
      const v = get();
      if (Array.isArray(v))
        for (let i = 0; i < v.length; i++)
          visit(
            () => v[i]!,
            (x) => {
              v[i] = x;
            },
            () => {
              v.splice(i, 1);
            },
          );
      else if (v !== null && typeof v === "object")
        for (const k of Object.keys(v))
          visit(
            () => v[k]!,
            (x) => {
              Object.defineProperty(v, k, { value: x, enumerable: true, configurable: true, writable: true });
            },
            () => {
              delete v[k];
            },
          );
    };
    visit(
      () => root,
      (x) => {
        root = x;
      },
      () => {
        root = {};
      },
    );
    const slot = slots[m.node % slots.length]!;
    // A copy: the odd values are shared constants, and a later mutation edits in place.
    const value = m.op === "remove" ? null : (structuredClone(m.value) as Json);
    if (m.op === "replace") slot.set(value);
    else if (m.op === "remove") slot.remove();
    else {
      const target = slot.get();
      if (target !== null && typeof target === "object" && !Array.isArray(target))
        Object.defineProperty(target, m.key, {
          value,
          enumerable: true,
          configurable: true,
          writable: true,
        });
      else if (Array.isArray(target)) target.push(value);
    }
  }
  return root;
}

/** JSON text of a value, with RAW markers written as the raw text they carry. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value).replace(/"\\u0000raw:([^"]*)"/g, "$1");
}

/** A JSON request body for `method` (1-5): a valid request's JSON, mutated; random JSON; or broken text. */
export function arbJsonBody(): fc.Arbitrary<{ method: number; text: string }> {
  const fromValid = fc
    .record({
      valid: arbValidStep.filter((s) => s.method !== Method.Ping),
      muts: fc.array(arbJsonMutation, { maxLength: 3 }),
      bytes: fc.oneof(
        { weight: 6, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(arbByteMutation, { maxLength: 2 }) },
      ),
    })
    .map(({ valid, muts, bytes }) => {
      const desc = REQUEST_SCHEMAS[valid.method]!;
      const json = toJson(desc, fromBinary(desc, valid.body));
      const t = jsonText(mutateJson(json, muts));
      return {
        method: valid.method,
        text: bytes.length === 0 ? t : new TextDecoder().decode(mutateBytes(utf8.encode(t), bytes)),
      };
    });
  const random = fc
    .tuple(fc.integer({ min: 1, max: 5 }), fc.oneof(fc.json({ maxDepth: 3 }), arbOddJson.map(jsonText)))
    .map(([method, t]) => ({ method, text: t }));
  return fc.oneof({ weight: 5, arbitrary: fromValid }, { weight: 2, arbitrary: random });
}
