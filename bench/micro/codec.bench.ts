/**
 * The client's typed decode of a typical answer (20 features: 6 ints, 6 doubles, 6 short
 * strings, a bool, a 32-float embedding), side by side with the same values read from a Redis
 * HGETALL reply (an object of strings) and decoded the way the e2e benchmark does. The server
 * never runs this code; users' services do, on every call.
 *
 * Run: bun bench/micro/codec.bench.ts
 */
import { bench, do_not_optimize, run, summary } from "mitata";
import { writeFeatureMap } from "../../src/codec/features.ts";
import { decodeGetFeaturesResponse } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { decodeRedisHash, entityValues, ourFeatures, redisFields } from "../e2e/workload.ts";

const ANSWERS = 256;
const answers: Uint8Array[] = [];
const hashes: Record<string, string>[] = [];
for (let i = 0; i < ANSWERS; i++) {
  const w = new ProtoWriter(1024);
  w.stringField(1, `user:${i}`);
  writeFeatureMap(w, 2, ourFeatures(entityValues(i)));
  w.byte(0x18);
  w.byte(1);
  answers.push(w.finish());
  hashes.push(redisFields(entityValues(i)));
}
let k = 0;

summary(() => {
  bench("ours: decode GetFeaturesResponse (typed)", () => {
    do_not_optimize(decodeGetFeaturesResponse(answers[k++ & (ANSWERS - 1)]!));
  });
  bench("redis: decode HGETALL object (typed)", () => {
    do_not_optimize(decodeRedisHash(hashes[k++ & (ANSWERS - 1)]!));
  });
});

await run();
