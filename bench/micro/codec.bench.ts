/**
 * The client's decode of answers, side by side in one run (issue 15), on the same bytes:
 *
 * - a GetFeatures answer of the benchmark's typical entity (20 features: 6 ints, 6 doubles,
 *   6 short strings, a bool, a 32-float embedding), and a BatchGet answer of 100 of them;
 * - the same answers with every value carrying its event time first (issue 12: `0x50` and a
 *   6-byte varint, 7 bytes more per value), as the server now stores and answers every value:
 *   decoded typed (with and without building `eventTimes`) and dense;
 * - ours typed (now), ours typed as it was before issue 15 (`codec.before.ts`, a frozen copy),
 *   ours dense into a reused DenseBatch (every feature a column, the strings mapped to codes),
 *   `@bufbuild/protobuf` and `protobufjs` decoding to message objects (what a user would write
 *   without our client), and the same values read from a Redis HGETALL reply object.
 *
 * mitata's third line per row is the heap growth per iteration; the table printed after the run
 * is the process memory grown by N decodes in a row after a full GC (median of 5 attempts).
 * Both are lower bounds for code that allocates (cells freed by the GC are reused before the
 * process grows), but an allocation-free decode reads 0 however long it runs: the figure behind
 * "no allocation per read".
 *
 * Run: bun bench/micro/codec.bench.ts   (pin it: taskset -c 1 bun bench/micro/codec.bench.ts)
 */

import { memoryUsage } from "bun:jsc";
import { fromBinary } from "@bufbuild/protobuf";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import protobuf from "protobufjs";
import { decodeDenseBatchGet, decodeDenseGet, FeatureVectorSpec } from "../../src/codec/dense.ts";
import { writeFeatureMap } from "../../src/codec/features.ts";
import { decodeBatchGetResponse, decodeGetFeaturesResponse } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import {
  BatchGetResponseSchema,
  GetFeaturesResponseSchema,
} from "../../test/gen/featurestore/v1/featurestore_pb.ts";
import {
  BOOL_FEATURE,
  DOUBLE_FEATURES,
  decodeRedisHash,
  EMBEDDING_DIM,
  EMBEDDING_FEATURE,
  entityValues,
  INT_FEATURES,
  ourFeatures,
  redisFields,
  STRING_FEATURES,
} from "../e2e/workload.ts";
import { decodeBatchGetResponseBefore, decodeGetFeaturesResponseBefore } from "./codec.before.ts";

const ANSWERS = 256;
const BATCH = 100;

/** An event time of today (6 varint bytes), as the server stamps every stored value. */
const EVENT_TIME_MS = 1_760_000_000_000;

/** The GetFeaturesResponse of entity i; with `eventTimeMs`, every value carries it first. */
function getAnswer(i: number, eventTimeMs = 0): Uint8Array {
  const w = new ProtoWriter(1024);
  w.stringField(1, `user:${i}`);
  writeFeatureMap(w, 2, ourFeatures(entityValues(i)), eventTimeMs);
  w.byte(0x18);
  w.byte(1);
  return w.finish();
}

const answers: Uint8Array[] = [];
const timedAnswers: Uint8Array[] = [];
const hashes: Record<string, string>[] = [];
for (let i = 0; i < ANSWERS; i++) {
  answers.push(getAnswer(i));
  timedAnswers.push(getAnswer(i, EVENT_TIME_MS));
  hashes.push(redisFields(entityValues(i)));
}
/** BatchGetResponses of 100 entities: results are length-delimited GetFeaturesResponses. */
function batchesOf(from: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let b = 0; b < 8; b++) {
    const w = new ProtoWriter(1 << 17);
    for (let j = 0; j < BATCH; j++) {
      const a = from[(b * BATCH + j) % ANSWERS]!;
      w.bytesField(1, a);
    }
    w.byte(0x10);
    w.varint(BATCH);
    out.push(w.finish());
  }
  return out;
}
const batches = batchesOf(answers);
const timedBatches = batchesOf(timedAnswers);

/** Every feature a column; the strings as category codes (mapped once per distinct value). */
const codes = new Map<string, number>();
const code = (s: string) => {
  let c = codes.get(s);
  if (c === undefined) {
    c = codes.size;
    codes.set(s, c);
  }
  return c;
};
const spec = new FeatureVectorSpec([
  ...INT_FEATURES,
  ...DOUBLE_FEATURES,
  ...STRING_FEATURES.map((name) => ({ name, kind: "string" as const, map: code })),
  BOOL_FEATURE,
  { name: EMBEDDING_FEATURE, width: EMBEDDING_DIM },
]);
const one = spec.newBatch(1);
const hundred = spec.newBatch(BATCH);

const pbjs = protobuf.loadSync(`${import.meta.dir}/../../proto/featurestore/v1/featurestore.proto`);
const PbGet = pbjs.lookupType("featurestore.v1.GetFeaturesResponse");
const PbBatch = pbjs.lookupType("featurestore.v1.BatchGetResponse");

type Decoder = { name: string; get: (i: number) => unknown; batch: ((i: number) => unknown) | null };
const decoders: Decoder[] = [
  {
    name: "ours: typed (now)",
    get: (i) => decodeGetFeaturesResponse(answers[i & (ANSWERS - 1)]!),
    batch: (i) => decodeBatchGetResponse(batches[i & 7]!),
  },
  {
    name: "ours: typed, values with event times",
    get: (i) => decodeGetFeaturesResponse(timedAnswers[i & (ANSWERS - 1)]!),
    batch: (i) => decodeBatchGetResponse(timedBatches[i & 7]!),
  },
  {
    name: "ours: typed + eventTimes, values with event times",
    get: (i) => {
      const a = timedAnswers[i & (ANSWERS - 1)]!;
      return decodeGetFeaturesResponse(a, 0, a.length, true);
    },
    batch: (i) => decodeBatchGetResponse(timedBatches[i & 7]!, true),
  },
  {
    name: "ours: typed (before issue 15)",
    get: (i) => decodeGetFeaturesResponseBefore(answers[i & (ANSWERS - 1)]!),
    batch: (i) => decodeBatchGetResponseBefore(batches[i & 7]!),
  },
  {
    name: "ours: dense, reused batch",
    get: (i) => decodeDenseGet(spec, answers[i & (ANSWERS - 1)]!, one),
    batch: (i) => decodeDenseBatchGet(spec, batches[i & 7]!, hundred),
  },
  {
    name: "ours: dense, values with event times",
    get: (i) => decodeDenseGet(spec, timedAnswers[i & (ANSWERS - 1)]!, one),
    batch: (i) => decodeDenseBatchGet(spec, timedBatches[i & 7]!, hundred),
  },
  {
    name: "@bufbuild/protobuf fromBinary",
    get: (i) => fromBinary(GetFeaturesResponseSchema, answers[i & (ANSWERS - 1)]!),
    batch: (i) => fromBinary(BatchGetResponseSchema, batches[i & 7]!),
  },
  {
    name: "protobufjs decode",
    get: (i) => PbGet.decode(answers[i & (ANSWERS - 1)]!),
    batch: (i) => PbBatch.decode(batches[i & 7]!),
  },
  {
    name: "redis: HGETALL object -> typed",
    get: (i) => decodeRedisHash(hashes[i & (ANSWERS - 1)]!),
    batch: (i) => {
      const out = new Array(BATCH);
      for (let j = 0; j < BATCH; j++) out[j] = decodeRedisHash(hashes[(i * BATCH + j) & (ANSWERS - 1)]!);
      return out;
    },
  },
];

// Every decoder compiled and warm before mitata times the first: the first row of a group
// otherwise paid the JIT's tier-up (it read 2x its steady state in the 2026-12-03 run).
for (const d of decoders)
  for (let i = 0; i < 20_000; i++) {
    do_not_optimize(d.get(i));
    if (d.batch && i % 100 === 0) do_not_optimize(d.batch(i));
  }

let k = 0;
group("GetFeatures answer, 20 features", () => {
  summary(() => {
    for (const d of decoders)
      bench(d.name, () => {
        do_not_optimize(d.get(k++));
      });
  });
});
group(`BatchGet answer, ${BATCH} entities x 20 features`, () => {
  summary(() => {
    for (const d of decoders) {
      const b = d.batch;
      if (b)
        bench(d.name, () => {
          do_not_optimize(b(k++));
        });
    }
  });
});

/**
 * Process memory grown by `n` calls in a row (GC'd before, not forced during), per call: the
 * median of 5 attempts (a collection that happens to run during one attempt returns pages and
 * makes that attempt read low or negative).
 */
function grownPerCall(fn: (i: number) => unknown, n: number): number {
  for (let i = 0; i < 1000; i++) do_not_optimize(fn(i));
  const attempts: number[] = [];
  for (let a = 0; a < 5; a++) {
    Bun.gc(true);
    Bun.gc(true);
    const m0 = memoryUsage().current;
    for (let i = 0; i < n; i++) do_not_optimize(fn(i));
    attempts.push((memoryUsage().current - m0) / n);
  }
  return attempts.sort((x, y) => x - y)[2]!;
}

await run();

const rows: string[] = [];
for (const d of decoders) {
  const g = grownPerCall(d.get, 2000);
  const b = d.batch ? grownPerCall(d.batch, 40) : Number.NaN;
  rows.push(`| ${d.name} | ${Math.round(g)} | ${Math.round(b)} |`);
}
// The whole in-process read: the service answers from the cache, the answer is decoded into a
// reused batch (the request and answer writers are the store's own, reused).
const store = EmbeddedFeatureStore.create({ maxEntries: 1024, maxBytes: 8 << 20, shardCount: 4 });
for (let i = 0; i < ANSWERS; i++) store.setFeatures(`user:${i}`, ourFeatures(entityValues(i)));
const ids = Array.from({ length: BATCH }, (_, j) => `user:${j}`);
const embedded = grownPerCall(() => store.getDense(ids, spec, hundred), 200);
const embeddedTyped = grownPerCall(() => store.batchGet(ids), 200);

console.log(
  [
    "",
    "memory grown per decode (B) after a full GC, median of 5 attempts of GetFeatures x 2,000 and BatchGet 100 x 40",
    "(a lower bound where the decode allocates: freed cells are reused first; 0 for an allocation-free decode)",
    "| decoder | GetFeatures | BatchGet 100 |",
    "|:--|--:|--:|",
    ...rows,
    "",
    `embedded store, 100 ids x 200 calls: getDense into a reused batch ${Math.round(embedded)} B per call, ` +
      `batchGet ${Math.round(embeddedTyped)} B per call`,
  ].join("\n"),
);
