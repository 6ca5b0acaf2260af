/**
 * What recording metrics costs per request (issue 15), side by side in one run: the TCP
 * server's answer to one GetFeatures of the e2e workload's entity (20 features, ~580 B), done
 * the way `TcpServer.answer` does it, with and without its metrics work:
 *
 * - `service only`: `FeatureService.handle` into a reused writer (what any answer costs);
 * - `service + metrics`: the same plus what METRICS_ENABLED=true adds to a data event that
 *   carries one request (the worst case): two clock reads (`performance.now()`, one when the
 *   event starts, one per answer) and `HotMetrics.request` (a counter and a latency bucket in
 *   typed arrays); pipelined requests share the first read;
 * - `service + metrics off`: the same code path with METRICS_ENABLED=false (recording methods
 *   swapped for no-ops at construction, no clock read);
 * - the recording alone, and one clock read alone, for scale.
 *
 * The e2e on/off comparison (`bun run bench:e2e -- --metrics`) measures two whole servers
 * through loopback, where round-to-round noise on this 2-core machine is ±15 %: it cannot see a
 * cost of a few percent. This isolates it: the added time per request over the server's CPU
 * per request (the e2e `srv µs/req`) is the share metrics take.
 *
 * Run: taskset -c 1 bun bench/micro/metrics.bench.ts
 */
import { bench, do_not_optimize, run, summary } from "mitata";
import { Method } from "../../src/codec/frame.ts";
import { Code } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { HotMetrics, Transport } from "../../src/metrics/hot.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import { entityValues, ourFeatures } from "../e2e/workload.ts";

const ENTITIES = 1024;
const store = EmbeddedFeatureStore.create({ maxEntries: 4096, maxBytes: 64 << 20, shardCount: 16 });
for (let i = 0; i < ENTITIES; i++) store.setFeatures(`user:${i}`, ourFeatures(entityValues(i)));

/** GetFeatures request bodies (entity_id = 1), one per entity. */
const requests = Array.from({ length: ENTITIES }, (_, i) => {
  const w = new ProtoWriter(64);
  w.stringField(1, `user:${i}`);
  return w.view().slice();
});
const out = new ProtoWriter(64 * 1024);
const service = store.service;
const on = new HotMetrics(true);
const off = new HotMetrics(false);

/** One answer as TcpServer.answer gives it: clock, service, clock, record (when timed). */
function answer(i: number, metrics: HotMetrics, timed: boolean): number {
  const body = requests[i & (ENTITIES - 1)]!;
  const t0 = timed ? performance.now() : 0;
  out.reset();
  service.handle(Method.GetFeatures, body, 0, body.length, out);
  if (timed) metrics.request(Transport.Tcp, Method.GetFeatures, Code.OK, (performance.now() - t0) / 1000);
  return out.pos;
}

// Every variant compiled and warm before mitata times the first one.
for (let k = 0; k < 200_000; k++) {
  answer(k, on, true);
  answer(k, off, false);
}

let i = 0;
summary(() => {
  bench("service only", () => do_not_optimize(answer(i++, off, false)));
  bench("service + metrics (METRICS_ENABLED=true)", () => do_not_optimize(answer(i++, on, true)));
  bench("service + metrics off (METRICS_ENABLED=false)", () =>
    do_not_optimize(answer(i++, off, off.enabled)),
  );
});
summary(() => {
  bench("recording alone: 2 clock reads + HotMetrics.request", () => {
    const t0 = performance.now();
    on.request(Transport.Tcp, Method.GetFeatures, Code.OK, (performance.now() - t0) / 1000);
  });
  bench("one clock read (performance.now)", () => do_not_optimize(performance.now()));
});

await run();
