/**
 * One measurement in a fresh process, so competitors do not pollute each other's heap and RSS.
 * Usage: bun bench/micro/cache.probe.ts <memory|pause|heap|frag> <competitor>
 * Prints one JSON object on stdout. `cache.bench.ts` runs every probe; this file runs alone too.
 */

import { heapStats } from "bun:jsc";
import { ShardedLruCache } from "../../src/cache/index.ts";
import {
  COMPETITORS,
  type Competitor,
  ENTITIES,
  fill,
  KEY_BYTES,
  keyBlock,
  payloadBytesPerEntity,
  rng,
  valuePool,
} from "./cache.competitors.ts";

/** Mixed operations timed by the pause probe. */
const PAUSE_OPS = 5_000_000;
/** Ops per batch for the batch view of pauses. */
const PAUSE_BATCH = 1000;
/** Gets run by the heap-growth probe. */
const HEAP_GETS = 10_000_000;

function settle(): void {
  Bun.gc(true);
  Bun.gc(true);
}

function snapshot() {
  const m = process.memoryUsage();
  const h = heapStats();
  // JSC's heapSize includes extraMemorySize (ArrayBuffer sizes, reserved not committed); the cells
  // the collector traces are the difference.
  return {
    rss: m.rss,
    cells: h.heapSize - h.extraMemorySize,
    extra: h.extraMemorySize,
    objects: h.objectCount,
  };
}

function make(name: string): Competitor {
  const factory = COMPETITORS[name];
  if (!factory)
    throw new Error(`unknown competitor ${name}; use one of ${Object.keys(COMPETITORS).join(", ")}`);
  return factory();
}

/** Heap and RSS per entity after filling 1M entities, net of the workload's own inputs. */
function memory(name: string) {
  const keys = keyBlock("user:", ENTITIES);
  const values = valuePool();
  settle();
  const before = snapshot();
  const c = make(name);
  const t = Bun.nanoseconds();
  fill(c, keys, values);
  const fillNs = (Bun.nanoseconds() - t) / ENTITIES;
  settle();
  const after = snapshot();
  const payload = payloadBytesPerEntity(values);
  const rssPer = (after.rss - before.rss) / ENTITIES;
  const cellsPer = (after.cells - before.cells) / ENTITIES;
  // Keep the cache alive past the measurement.
  const out = new Uint8Array(1024);
  for (let i = 0; i < ENTITIES; i += 9973) {
    if (c.get(keys, i * KEY_BYTES, i * KEY_BYTES + KEY_BYTES, out, 0) < 0)
      throw new Error(`fill lost entity ${i}`);
  }
  return {
    name,
    entities: ENTITIES,
    payloadBytesPerEntity: payload,
    fillNsPerEntity: fillNs,
    rssBytesPerEntity: rssPer,
    rssOverheadPerEntity: rssPer - payload,
    gcHeapBytesPerEntity: cellsPer,
    arrayBufferBytesReservedPerEntity: (after.extra - before.extra) / ENTITIES,
    objectsPerEntity: (after.objects - before.objects) / ENTITIES,
  };
}

/**
 * 5M mixed operations on a full cache (80% get hit, 5% get miss, 10% overwrite, 5% insert that
 * evicts), each timed on its own with Bun.nanoseconds (~20 ns of clock overhead per op, the same
 * for everyone). A GC pause lands inside one op, so the slowest op is the worst pause; batches of
 * 1000 give the view a latency-sensitive caller sees.
 *
 * On a shared 2-core machine the scheduler also stops the process for whole time slices (several
 * ms) now and then, which no cache causes. Each batch therefore reads the process's involuntary
 * context switch count before and after (one getrusage per 1000 ops); pauses are reported both raw
 * and for batches the kernel did not preempt.
 */
function pause(name: string) {
  const keys = keyBlock("user:", ENTITIES);
  const values = valuePool();
  const c = make(name);
  fill(c, keys, values);
  const misses = keyBlock("miss:", 100_000);
  const fresh = keyBlock("new:", Math.ceil(PAUSE_OPS * 0.05) + 1000);
  const r = rng(23);
  const kinds = new Uint8Array(PAUSE_OPS);
  const ids = new Int32Array(PAUSE_OPS);
  for (let i = 0; i < PAUSE_OPS; i++) {
    const x = r();
    kinds[i] = x < 0.8 ? 0 : x < 0.85 ? 1 : x < 0.95 ? 2 : 3;
    ids[i] = Math.floor(r() * ENTITIES);
  }
  const out = new Uint8Array(4096);
  settle();
  let worst = 0;
  let over1ms = 0;
  let over100us = 0;
  let worstBatch = 0;
  let batch = 0;
  // Same, for batches without an involuntary context switch.
  let batchWorst = 0;
  let batchOver1ms = 0;
  let batchOver100us = 0;
  let calmWorst = 0;
  let calmOver1ms = 0;
  let calmOver100us = 0;
  let calmWorstBatch = 0;
  let preemptedBatches = 0;
  let slowSets = 0;
  let nivcsw = process.resourceUsage().involuntaryContextSwitches;
  let freshNext = 0;
  let sink = 0;
  const start = Bun.nanoseconds();
  for (let i = 0; i < PAUSE_OPS; i++) {
    const kind = kinds[i]!;
    const id = ids[i]!;
    const t0 = Bun.nanoseconds();
    if (kind === 0) sink += c.get(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, out, 0);
    else if (kind === 1) {
      const m = (id % 100_000) * KEY_BYTES;
      sink += c.get(misses, m, m + KEY_BYTES, out, 0);
    } else if (kind === 2) c.set(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, values[i & 255]!);
    else {
      const f = freshNext++ * KEY_BYTES;
      c.set(fresh, f, f + KEY_BYTES, values[i & 255]!);
    }
    const dt = Bun.nanoseconds() - t0;
    if (dt > batchWorst) batchWorst = dt;
    if (dt > 1e6) {
      batchOver1ms++;
      if (kind >= 2) slowSets++;
    }
    if (dt > 1e5) batchOver100us++;
    batch += dt;
    if ((i + 1) % PAUSE_BATCH === 0) {
      const n = process.resourceUsage().involuntaryContextSwitches;
      if (batchWorst > worst) worst = batchWorst;
      if (batch > worstBatch) worstBatch = batch;
      over1ms += batchOver1ms;
      over100us += batchOver100us;
      if (n === nivcsw) {
        if (batchWorst > calmWorst) calmWorst = batchWorst;
        if (batch > calmWorstBatch) calmWorstBatch = batch;
        calmOver1ms += batchOver1ms;
        calmOver100us += batchOver100us;
      } else preemptedBatches++;
      nivcsw = n;
      batch = 0;
      batchWorst = 0;
      batchOver1ms = 0;
      batchOver100us = 0;
    }
  }
  const totalNs = Bun.nanoseconds() - start;
  sink += c.get(keys, 0, KEY_BYTES, out, 0); // keeps the cache reachable to the end
  return {
    name,
    ops: PAUSE_OPS,
    worstOpMs: worst / 1e6,
    opsOver1ms: over1ms,
    opsOver100us: over100us,
    worstBatchMs: worstBatch / 1e6,
    batchOps: PAUSE_BATCH,
    preemptedBatches,
    calmWorstOpMs: calmWorst / 1e6,
    calmOpsOver1ms: calmOver1ms,
    calmOpsOver100us: calmOver100us,
    calmWorstBatchMs: calmWorstBatch / 1e6,
    slowOpsThatWereSets: slowSets,
    meanNsPerOp: totalNs / PAUSE_OPS,
    sink,
  };
}

/**
 * GC heap before and after 10M gets (90% hits, 10% misses) on a full cache, both after a full GC.
 * (JSC's heap statistics do not show young-generation allocation between collections, so this
 * measures growth, not allocation; mitata's per-iteration heap column shows the latter.)
 */
function heap(name: string) {
  const keys = keyBlock("user:", ENTITIES);
  const values = valuePool();
  const c = make(name);
  fill(c, keys, values);
  const misses = keyBlock("miss:", 100_000);
  const r = rng(5);
  const ids = new Int32Array(1 << 20);
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(r() * ENTITIES);
  const out = new Uint8Array(4096);
  // Warm the code paths (JIT tiers allocate while compiling), then measure.
  let sink = 0;
  for (let i = 0; i < 200_000; i++) {
    const id = ids[i & 0xfffff]!;
    sink += c.get(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, out, 0);
  }
  settle();
  const before = snapshot();
  const t = Bun.nanoseconds();
  for (let i = 0; i < HEAP_GETS; i++) {
    const id = ids[i & 0xfffff]!;
    if (i % 10 === 9) {
      const m = (id % 100_000) * KEY_BYTES;
      sink += c.get(misses, m, m + KEY_BYTES, out, 0);
    } else sink += c.get(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, out, 0);
  }
  const getNs = (Bun.nanoseconds() - t) / HEAP_GETS;
  settle();
  const after = snapshot();
  sink += c.get(keys, 0, KEY_BYTES, out, 0); // keeps the cache reachable until after the snapshot
  return {
    name,
    gets: HEAP_GETS,
    heapGrowthAfterGcBytes: after.cells - before.cells,
    objectGrowthAfterGc: after.objects - before.objects,
    rssGrowthBytes: after.rss - before.rss,
    meanNsPerGet: getNs,
    sink,
  };
}

/**
 * Fragmentation on a 50 B - 5 KB workload: a byte-bounded cache (256 MiB, 16 shards) churned
 * with 1M operations (70% set of a random key with a random size, 10% delete, 20% get) after it is
 * full. Reports arena segments in use against the live bytes they hold.
 */
function frag() {
  const maxBytes = 256 << 20;
  const cache = new ShardedLruCache({ maxEntries: ENTITIES, maxBytes, shardCount: 16 });
  const keySpace = 400_000;
  const keys = keyBlock("user:", keySpace);
  const big = new Uint8Array(5000);
  for (let i = 0; i < big.length; i++) big[i] = i & 255;
  const r = rng(99);
  const out = new Uint8Array(8192);
  settle();
  const rss0 = process.memoryUsage().rss;
  let sets = 0;
  while (cache.stats().evictions === 0) {
    const id = Math.floor(r() * keySpace);
    cache.set(
      keys.subarray(id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES),
      big.subarray(0, 50 + Math.floor(r() * 4951)),
    );
    sets++;
  }
  const ops = 1_000_000;
  let worstSetNs = 0;
  const t = Bun.nanoseconds();
  for (let i = 0; i < ops; i++) {
    const id = Math.floor(r() * keySpace);
    const s = id * KEY_BYTES;
    const x = r();
    if (x < 0.7) {
      const t0 = Bun.nanoseconds();
      cache.set(keys, big.subarray(0, 50 + Math.floor(r() * 4951)), 0, s, s + KEY_BYTES);
      const dt = Bun.nanoseconds() - t0;
      if (dt > worstSetNs) worstSetNs = dt;
    } else if (x < 0.8) cache.delete(keys, s, s + KEY_BYTES);
    else cache.get(keys.subarray(s, s + KEY_BYTES), out, 0);
  }
  const churnNs = (Bun.nanoseconds() - t) / ops;
  settle();
  const rss1 = process.memoryUsage().rss;
  const st = cache.stats();
  const u = cache.arenaUsage();
  return {
    name: "ShardedLruCache",
    maxBytes,
    fillSets: sets,
    churnOps: ops,
    entries: st.entries,
    bytesUsed: st.bytesUsed,
    liveBlockBytes: u.liveBlockBytes,
    segmentBytesInUse: u.segmentBytesInUse,
    arenaOverLive: u.segmentBytesInUse / st.bytesUsed,
    rssOverLive: (rss1 - rss0) / st.bytesUsed,
    churnNsPerOp: churnNs,
    worstSetMs: worstSetNs / 1e6,
  };
}

const [mode, name = "ShardedLruCache"] = process.argv.slice(2);
const probes: Record<string, (n: string) => unknown> = { memory, pause, heap, frag };
const probe = probes[mode ?? ""];
if (!probe) {
  console.error(`usage: bun ${process.argv[1]} <${Object.keys(probes).join("|")}> [competitor]`);
  process.exit(2);
}
console.log(JSON.stringify(probe(name)));
