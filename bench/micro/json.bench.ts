/**
 * The strict JSON parser of the HTTP JSON path (src/transport/http/json-parse.ts) against
 * JSON.parse, on two request bodies as Connect JSON clients send them:
 *
 * - SetFeatures of one entity with the 20 features of the e2e workload (6 int64 as strings,
 *   6 doubles, 6 short strings, a bool, a 32-float embedding): ~1.4 KB.
 * - BatchGet of 1,000 entity ids with 5 feature names: ~11 KB.
 *
 * Then the whole JSON-to-protobuf step of a request (UTF-8 decode, parse, mapping to binary)
 * with each parser, to show what the strictness costs per request. Bodies are built before
 * the timed part; each parser gets the same rotating set of bodies.
 *
 * Run: bun bench/micro/json.bench.ts
 *
 * Output on a shared 2-core AMD EPYC VM (load average ~3 from other work), bun 1.4.5 x64-linux,
 * mitata averages (three runs: the SetFeatures ratio moved between 2.4x and 3.0x; a best-of-7
 * loop of the same bodies measured 5.1 µs vs 2.9 µs, 1.8x):
 *
 *   SetFeatures, 20 features: JSON.parse                     2.57 µs/iter
 *   SetFeatures, 20 features: parseJsonStrict                7.63 µs/iter   2.97x slower
 *   BatchGet, 1,000 ids: JSON.parse                        289.17 µs/iter
 *   BatchGet, 1,000 ids: parseJsonStrict                    28.14 µs/iter  10.28x faster
 *   SetFeatures to protobuf: decode + JSON.parse + mapping  16.65 µs/iter
 *   SetFeatures to protobuf: jsonBytesToBinary (strict)     18.32 µs/iter   1.10x slower
 *
 * JSON.parse's BatchGet time grows with the number of distinct ids it has seen (~120 µs when
 * the run cycles 64 bodies, ~280 µs with 256), as if it interned the short strings it makes;
 * parseJsonStrict only slices. On SetFeatures the floats that need Number() and the building
 * of objects cost more than in native code, but the mapping to protobuf dominates the whole
 * step, whose difference stays within the run-to-run noise (from 1.1x slower to 1.4x faster).
 */
import { bench, do_not_optimize, run, summary } from "mitata";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { jsonBytesToBinary, jsonToBinary } from "../../src/transport/http/json.ts";
import { parseJsonStrict } from "../../src/transport/http/json-parse.ts";
import { loadSchema } from "../../src/transport/http/schema.ts";
import {
  BOOL_FEATURE,
  DOUBLE_FEATURES,
  EMBEDDING_FEATURE,
  entityId,
  entityValues,
  INT_FEATURES,
  PROJECTED,
  STRING_FEATURES,
} from "../e2e/workload.ts";

/** Distinct bodies cycled through (power of two for a cheap wrap), so no result is cached. */
const BODIES = 256;
const BATCH_IDS = 1000;

/** One JSON parser as a competitor. */
interface Parser {
  readonly name: string;
  parse(text: string): unknown;
}

const parsers: Parser[] = [
  { name: "JSON.parse", parse: (t) => JSON.parse(t) },
  { name: "parseJsonStrict", parse: parseJsonStrict },
];

/** Entity i's SetFeaturesRequest in proto3 JSON, as @bufbuild/protobuf's toJson prints it. */
function setFeaturesJson(i: number): string {
  const v = entityValues(i);
  const features: Record<string, unknown> = {};
  INT_FEATURES.forEach((n, k) => {
    features[n] = { intValue: String(v.ints[k]) };
  });
  DOUBLE_FEATURES.forEach((n, k) => {
    features[n] = { doubleValue: v.doubles[k] };
  });
  STRING_FEATURES.forEach((n, k) => {
    features[n] = { stringValue: v.strings[k] };
  });
  features[BOOL_FEATURE] = { boolValue: v.bool };
  features[EMBEDDING_FEATURE] = { floatList: { values: Array.from(v.embedding) } };
  return JSON.stringify({ entityId: entityId(i), features, ttlMs: "86400000" });
}

function batchGetJson(i: number): string {
  const entityIds = Array.from({ length: BATCH_IDS }, (_, k) => entityId(i * BATCH_IDS + k));
  return JSON.stringify({ entityIds, featureNames: PROJECTED });
}

const encoder = new TextEncoder();
const setBodies = Array.from({ length: BODIES }, (_, i) => setFeaturesJson(i));
const batchBodies = Array.from({ length: BODIES }, (_, i) => batchGetJson(i));
const setBytes = setBodies.map((b) => encoder.encode(b));
console.log(`bodies: SetFeatures ${setBodies[0]!.length} chars, BatchGet ${batchBodies[0]!.length} chars`);

const schema = loadSchema();
const setInfo = schema.messages.get("featurestore.v1.SetFeaturesRequest")!;
const w = new ProtoWriter(64 * 1024);
const utf8 = new TextDecoder("utf-8", { fatal: true });
let k = 0;

for (const [what, bodies] of [
  ["SetFeatures, 20 features", setBodies],
  ["BatchGet, 1,000 ids", batchBodies],
] as const) {
  summary(() => {
    for (const p of parsers)
      bench(`${what}: ${p.name}`, () => {
        do_not_optimize(p.parse(bodies[k++ & (BODIES - 1)]!));
      });
  });
}

summary(() => {
  bench("SetFeatures to protobuf: decode + JSON.parse + mapping", () => {
    w.reset();
    jsonToBinary(setInfo, JSON.parse(utf8.decode(setBytes[k++ & (BODIES - 1)]!)), w);
    do_not_optimize(w.pos);
  });
  bench("SetFeatures to protobuf: jsonBytesToBinary (strict)", () => {
    w.reset();
    jsonBytesToBinary(setInfo, setBytes[k++ & (BODIES - 1)]!, w);
    do_not_optimize(w.pos);
  });
});

await run();
