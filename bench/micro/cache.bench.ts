/**
 * Cache microbenchmarks: our ShardedLruCache vs lru-cache v11 vs mnemonist's LRUCache, side by
 * side in one run, at 1M entities with ~500-byte values and keys like `user:123456`, on the
 * server-shaped workload (key bytes in, value bytes out; see `cache.competitors.ts`).
 *
 * Then, each in a fresh process (`cache.probe.ts`): memory per entity after filling, worst pause in
 * 5M mixed operations, heap growth across 10M gets, and fragmentation on 50 B - 5 KB values.
 * Writes bench/results/cache.md and bench/results/cache.json. Takes ~3-4 minutes on 2 cores.
 *
 * Usage: bun bench/micro/cache.bench.ts [--quick]   (--quick skips the probes)
 */

import { bench, do_not_optimize, group, run, summary } from "mitata";
import {
  type Competitor,
  ENTITIES,
  fill,
  KEY_BYTES,
  keyBlock,
  lruCache,
  machine,
  mnemonist,
  OUR_MAX_ENTRIES,
  ours,
  randomIds,
  VALUE_MAX,
  VALUE_MIN,
  valuePool,
} from "./cache.competitors.ts";

const RESULTS_DIR = new URL("../results/", import.meta.url).pathname;
const PROBE = new URL("./cache.probe.ts", import.meta.url).pathname;
/** Random ids cycled through by the timed loops (power of two for a cheap wrap). */
const ID_COUNT = 1 << 21;
const ID_MASK = ID_COUNT - 1;

const quick = process.argv.includes("--quick");

// ---- set-up, outside every timed part --------------------------------------------------------------

const keys = keyBlock("user:", ENTITIES);
const misses = keyBlock("miss:", 1 << 16);
const values = valuePool();
const ids = randomIds(ID_COUNT);
const mixKinds = new Uint8Array(ID_COUNT);
for (let i = 0; i < ID_COUNT; i++) mixKinds[i] = ids[(i * 7919) & ID_MASK]! % 10 === 0 ? 1 : 0;

const competitors: Competitor[] = [ours(), lruCache(), mnemonist()];
const fillNs: Record<string, number> = {};
for (const c of competitors) {
  const t = Bun.nanoseconds();
  fill(c, keys, values);
  fillNs[c.name] = (Bun.nanoseconds() - t) / ENTITIES;
  Bun.gc(true);
}

/** Per-competitor state for the insert-with-eviction workload: a counter written as key digits. */
function freshKeyWriter(prefix: string) {
  const buf = new Uint8Array(KEY_BYTES);
  new TextEncoder().encodeInto(prefix, buf);
  let n = 0;
  return () => {
    let x = n++;
    for (let p = KEY_BYTES - 1; p >= prefix.length; p--) {
      buf[p] = 48 + (x % 10);
      x = Math.floor(x / 10);
    }
    return buf;
  };
}

const out = new Uint8Array(8192);

function workloads(c: Competitor) {
  let i = 0;
  const nextKey = freshKeyWriter("n");
  return {
    getHit: () => {
      const id = ids[i++ & ID_MASK]!;
      do_not_optimize(c.get(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, out, 0));
    },
    getMiss: () => {
      const m = (ids[i++ & ID_MASK]! & 0xffff) * KEY_BYTES;
      do_not_optimize(c.get(misses, m, m + KEY_BYTES, out, 0));
    },
    setOverwrite: () => {
      const n = i++;
      const id = ids[n & ID_MASK]!;
      c.set(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, values[n & 255]!);
    },
    setEvict: () => {
      const k = nextKey();
      c.set(k, 0, KEY_BYTES, values[i++ & 255]!);
    },
    mix: () => {
      const n = i++;
      const id = ids[n & ID_MASK]!;
      if (mixKinds[n & ID_MASK] === 1)
        c.set(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, values[n & 255]!);
      else do_not_optimize(c.get(keys, id * KEY_BYTES, id * KEY_BYTES + KEY_BYTES, out, 0));
    },
  };
}

const loads = competitors.map((c) => ({ name: c.name, w: workloads(c) }));
const GROUPS = [
  ["get hit", "getHit"],
  ["get miss", "getMiss"],
  ["set overwrite", "setOverwrite"],
  ["90/10 get/set mix", "mix"],
  // Last: it replaces the caches' contents with fresh keys.
  ["set with eviction", "setEvict"],
] as const;

for (const [title, key] of GROUPS) {
  group(title, () => {
    summary(() => {
      for (const { name, w } of loads) bench(`${title}: ${name}`, w[key]);
    });
  });
}

const result = await run({ colors: false });

// ---- collect --------------------------------------------------------------------------------------

type Row = { workload: string; competitor: string; nsPerOp: number; opsPerSec: number };
const rows: Row[] = [];
for (const trial of result.benchmarks) {
  const r = trial.runs[0];
  if (!r?.stats) continue;
  const [workload = "", competitor = ""] = trial.alias.split(": ");
  rows.push({ workload, competitor, nsPerOp: r.stats.avg, opsPerSec: 1e9 / r.stats.avg });
}

function probe(mode: string, name: string): Record<string, number | string> | { error: string } {
  const p = Bun.spawnSync([process.execPath, PROBE, mode, name], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0)
    return { error: `${mode} ${name} exited ${p.exitCode}: ${p.stderr.toString().slice(-500)}` };
  return JSON.parse(p.stdout.toString().trim().split("\n").pop() ?? "{}");
}

const names = competitors.map((c) => c.name);
// Free the in-process caches before the probes start their own.
competitors.length = 0;
loads.length = 0;
Bun.gc(true);

const probes: Record<string, Record<string, Record<string, number | string>>> = {
  memory: {},
  pause: {},
  heap: {},
};
if (!quick) {
  for (const mode of ["memory", "pause", "heap"] as const) {
    for (const name of names) {
      console.error(`probe ${mode} ${name} ...`);
      probes[mode]![name] = probe(mode, name) as Record<string, number | string>;
    }
  }
  console.error("probe frag ...");
  probes.frag = { ShardedLruCache: probe("frag", "ShardedLruCache") as Record<string, number | string> };
}

// ---- report ---------------------------------------------------------------------------------------

const m = await machine();
const ours_ = "ShardedLruCache";
const num = (v: unknown) => (typeof v === "number" ? v : Number.NaN);
const f = (v: number, d = 0) =>
  Number.isFinite(v) ? v.toLocaleString("en-US", { maximumFractionDigits: d }) : "n/a";

const lines: string[] = [];
lines.push("# Cache benchmark results", "");
lines.push(
  `Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB RAM, ${m.os}, Bun ${m.bun}. ` +
    `Run ${new Date().toISOString().slice(0, 16)}Z with \`bun bench/micro/cache.bench.ts\`.`,
  "",
  `Workload: ${f(ENTITIES)} entities, keys \`user:NNNNNN\` (${KEY_BYTES} B, arriving as bytes), values ` +
    `${VALUE_MIN}-${VALUE_MAX} B copied into an output buffer. Competitors decode the key with ` +
    "Buffer#utf8Slice and `out.set()` the stored Uint8Array. Ours: 16 shards, maxBytes 1 GiB, " +
    `maxEntries ${f(OUR_MAX_ENTRIES)} (1/64 headroom so all 1M fit despite hash imbalance across shards). ` +
    "Uniform random keys: nearly every lookup misses the CPU caches.",
  "",
);

lines.push("## Throughput (mitata, mean ns/op; ratio = ours vs the faster of the other two)", "");
lines.push("| workload | ShardedLruCache | lru-cache | mnemonist | ratio |", "|---|---:|---:|---:|---:|");
const ratios: Record<string, number> = {};
for (const [title] of GROUPS) {
  const get = (n: string) =>
    rows.find((r) => r.workload === title && r.competitor === n)?.nsPerOp ?? Number.NaN;
  const o = get(ours_);
  const best = Math.min(get("lru-cache"), get("mnemonist"));
  ratios[title] = best / o;
  lines.push(`| ${title} | ${f(o)} | ${f(get("lru-cache"))} | ${f(get("mnemonist"))} | ${f(best / o, 2)}x |`);
}
lines.push("");

if (!quick) {
  lines.push("## Memory per entity after filling 1M (fresh process each)", "");
  lines.push(
    "| | ShardedLruCache | lru-cache | mnemonist |",
    "|---|---:|---:|---:|",
    `| key+value bytes | ${names.map((n) => f(num(probes.memory![n]?.payloadBytesPerEntity), 1)).join(" | ")} |`,
    `| RSS growth | ${names.map((n) => f(num(probes.memory![n]?.rssBytesPerEntity), 1)).join(" | ")} |`,
    `| **overhead beyond key+value (RSS)** | ${names.map((n) => f(num(probes.memory![n]?.rssOverheadPerEntity), 1)).join(" | ")} |`,
    `| GC heap cells | ${names.map((n) => f(num(probes.memory![n]?.gcHeapBytesPerEntity), 1)).join(" | ")} |`,
    `| GC objects | ${names.map((n) => f(num(probes.memory![n]?.objectsPerEntity), 3)).join(" | ")} |`,
    `| fill ns/entity | ${names.map((n) => f(num(probes.memory![n]?.fillNsPerEntity))).join(" | ")} |`,
    "",
  );
  lines.push(
    "## Pauses in 5M mixed ops on a full cache (80% get hit, 5% miss, 10% overwrite, 5% insert+evict)",
    "",
  );
  lines.push(
    "| | ShardedLruCache | lru-cache | mnemonist |",
    "|---|---:|---:|---:|",
    `| **worst single op (ms)** | ${names.map((n) => f(num(probes.pause![n]?.worstOpMs), 3)).join(" | ")} |`,
    `| ops over 1 ms | ${names.map((n) => f(num(probes.pause![n]?.opsOver1ms))).join(" | ")} |`,
    `| ops over 100 us | ${names.map((n) => f(num(probes.pause![n]?.opsOver100us))).join(" | ")} |`,
    `| worst batch of 1000 ops (ms) | ${names.map((n) => f(num(probes.pause![n]?.worstBatchMs), 3)).join(" | ")} |`,
    `| mean ns/op (incl. 2 clock reads) | ${names.map((n) => f(num(probes.pause![n]?.meanNsPerOp))).join(" | ")} |`,
    "",
  );
  lines.push("## Heap across 10M gets on a full cache (90% hit, 10% miss)", "");
  lines.push(
    "| | ShardedLruCache | lru-cache | mnemonist |",
    "|---|---:|---:|---:|",
    `| GC heap growth, no GC forced (bytes) | ${names.map((n) => f(num(probes.heap![n]?.heapGrowthNoGcBytes))).join(" | ")} |`,
    `| GC heap growth after full GC (bytes) | ${names.map((n) => f(num(probes.heap![n]?.heapGrowthAfterGcBytes))).join(" | ")} |`,
    `| objects after full GC | ${names.map((n) => f(num(probes.heap![n]?.objectGrowthAfterGc))).join(" | ")} |`,
    `| mean ns/get | ${names.map((n) => f(num(probes.heap![n]?.meanNsPerGet))).join(" | ")} |`,
    "",
  );
  const fr = probes.frag?.ShardedLruCache ?? {};
  lines.push("## Fragmentation: 50 B - 5 KB values, 256 MiB budget, 1M churn ops after full (ours)", "");
  lines.push(
    `Live key+value bytes ${f(num(fr.bytesUsed))} in ${f(num(fr.entries))} entries; arena segments in use ` +
      `${f(num(fr.segmentBytesInUse))} = **${f(num(fr.arenaOverLive), 3)}x live**; RSS growth ${f(num(fr.rssOverLive), 3)}x live; ` +
      `${f(num(fr.churnNsPerOp))} ns/op during churn; worst set ${f(num(fr.worstSetMs), 3)} ms.`,
    "",
  );

  const ourMem = num(probes.memory![ours_]?.rssOverheadPerEntity);
  const ourPause = num(probes.pause![ours_]?.worstOpMs);
  const lruPause = num(probes.pause!["lru-cache"]?.worstOpMs);
  const heapGrowth = num(probes.heap![ours_]?.heapGrowthNoGcBytes);
  const verdict = (ok: boolean) => (ok ? "met" : "**missed**");
  lines.push("## Targets", "");
  lines.push(
    "| target | result | |",
    "|---|---|---|",
    `| get hit >= 1.5x the faster competitor | ${f(ratios["get hit"] ?? Number.NaN, 2)}x | ${verdict((ratios["get hit"] ?? 0) >= 1.5)} |`,
    `| 90/10 mix >= 1.5x the faster competitor | ${f(ratios["90/10 get/set mix"] ?? Number.NaN, 2)}x | ${verdict((ratios["90/10 get/set mix"] ?? 0) >= 1.5)} |`,
    `| overhead per entity <= 64 B | ${f(ourMem, 1)} B | ${verdict(ourMem <= 64)} |`,
    `| worst pause <= 1/10 of lru-cache's | ${f(ourPause, 3)} ms vs ${f(lruPause, 3)} ms (1/${f(lruPause / ourPause, 1)}) | ${verdict(ourPause * 10 <= lruPause)} |`,
    `| no heap growth across 10M gets | ${f(heapGrowth)} bytes | ${verdict(heapGrowth <= 0)} |`,
    "",
  );
}

const md = lines.join("\n");
console.log(`\n${md}`);
if (!quick) {
  await Bun.write(`${RESULTS_DIR}cache.md`, md);
  await Bun.write(
    `${RESULTS_DIR}cache.json`,
    `${JSON.stringify({ machine: m, date: new Date().toISOString(), fillNs, throughput: rows, ratios, probes }, null, 2)}\n`,
  );
}
