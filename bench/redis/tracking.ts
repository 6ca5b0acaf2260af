/**
 * Default vs broadcast CLIENT TRACKING for the near-cache (issue 10 asks for a measured choice).
 *
 * One redis-server; a writer store W and a reader store R in this process, each with its own
 * connections. R reads K hot entities (its near-cache holds them); W then rewrites all N
 * entities, then rewrites the hot ones one at a time while R polls for each new value. Per mode,
 * alternated over rounds: the invalidations R receives, Redis' CPU for the write phase, its
 * tracking table, and the staleness (W's acknowledgement → R serving the new value).
 *
 *   bun bench/redis/tracking.ts [--rounds 2] [--entities 20000] [--hot 1000]
 *
 * Writes bench/results/redis-tracking.md.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RedisStore } from "../../src/store/redis/store.ts";
import { openRedisApi, type RedisApi } from "../../test/redis/api.ts";
import { startRedis } from "../../test/redis/harness.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? def : Number(process.argv[i + 1]);
};
const ROUNDS = arg("--rounds", 2);
const N = arg("--entities", 20_000);
const K = arg("--hot", 1_000);
const STALENESS_WRITES = 200;

type Mode = "default" | "bcast";

interface Result {
  mode: Mode;
  invalidations: number;
  redisCpuMs: number;
  trackingKeys: number;
  trackingPrefixes: number;
  staleness: number[];
}

function info(text: string, key: string): number {
  return Number(new RegExp(`^${key}:([0-9.]+)`, "m").exec(text)?.[1] ?? Number.NaN);
}

async function round(url: string, cli: (...a: string[]) => Promise<string>, mode: Mode, prefix: string) {
  const opts = { prefix, entries: N + K, ...(mode === "bcast" ? { broadcastPrefix: prefix } : {}) };
  const w: RedisApi = await openRedisApi({ url }, opts);
  const r: RedisApi = await openRedisApi({ url }, opts);
  try {
    const ids = Array.from({ length: N }, (_, i) => `e${i}`);
    for (let i = 0; i < N; i += 500)
      await w.batchSet(ids.slice(i, i + 500).map((entityId, j) => ({ entityId, features: { v: i + j } })));
    const hot = ids.slice(0, K);
    for (let i = 0; i < K; i += 500) await r.batchGet(hot.slice(i, i + 500));
    const store = r.store as RedisStore;
    const before = store.stats.invalidations;
    const cpu0 = await cli("INFO", "cpu");
    for (let i = 0; i < N; i += 500)
      await w.batchSet(ids.slice(i, i + 500).map((entityId, j) => ({ entityId, features: { v: -(i + j) } })));
    const cpu1 = await cli("INFO", "cpu");
    const redisCpuMs =
      (info(cpu1, "used_cpu_sys") +
        info(cpu1, "used_cpu_user") -
        info(cpu0, "used_cpu_sys") -
        info(cpu0, "used_cpu_user")) *
      1000;
    // Let the pushes of the last writes arrive.
    await Bun.sleep(50);
    const invalidations = store.stats.invalidations - before;
    const stats = await cli("INFO", "stats");
    // R holds the hot set again, then each hot write is timed until R serves it.
    for (let i = 0; i < K; i += 500) await r.batchGet(hot.slice(i, i + 500));
    const staleness: number[] = [];
    for (let i = 0; i < STALENESS_WRITES; i++) {
      const id = hot[i % K]!;
      await w.setFeatures(id, { v: 1_000_000 + i });
      const acked = performance.now();
      while ((await r.getFeatures(id)).features.v !== 1_000_000 + i) {}
      staleness.push(performance.now() - acked);
    }
    staleness.sort((a, b) => a - b);
    return {
      mode,
      invalidations,
      redisCpuMs,
      trackingKeys: info(stats, "tracking_total_keys"),
      trackingPrefixes: info(stats, "tracking_total_prefixes"),
      staleness,
    } satisfies Result;
  } finally {
    await w.close();
    await r.close();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], q: number) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

const redis = await startRedis();
try {
  const results: Result[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    const order: Mode[] = k % 2 === 0 ? ["default", "bcast"] : ["bcast", "default"];
    for (const mode of order) {
      await redis.cli("FLUSHALL");
      results.push(await round(redis.url, (...a) => redis.cli(...a), mode, `t${k}${mode[0]}:`));
    }
  }
  const rows = (["default", "bcast"] as Mode[]).map((mode) => {
    const rs = results.filter((r) => r.mode === mode);
    const all = rs.flatMap((r) => r.staleness).sort((a, b) => a - b);
    return `| ${mode === "default" ? "default (`CLIENT TRACKING ON`)" : "broadcast (`BCAST PREFIX`)"} | ${median(rs.map((r) => r.invalidations)).toLocaleString("en-US")} | ${median(rs.map((r) => r.redisCpuMs)).toFixed(0)} ms | ${median(rs.map((r) => r.trackingKeys))} keys, ${median(rs.map((r) => r.trackingPrefixes))} prefixes | ${pct(all, 0.5).toFixed(2)} / ${pct(all, 0.99).toFixed(2)} ms |`;
  });
  const uptime = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const md = `## CLIENT TRACKING: default vs broadcast (bench/redis/tracking.ts)

${new Date().toISOString().slice(0, 10)} · Bun ${Bun.version} · one redis-server · writer and reader stores in one process · N = ${N.toLocaleString("en-US")} entities, the reader holding K = ${K.toLocaleString("en-US")} · ${ROUNDS} alternated rounds (medians) · load average at the end ${uptime}

| mode | invalidations the reader received while the writer rewrote all N | Redis CPU for those N writes | Redis tracking table after | staleness p50 / p99 (${STALENESS_WRITES} writes to held keys) |
|:--|--:|--:|--:|--:|
${rows.join("\n")}

Default mode sends a server only the invalidations of keys it read (K), Redis remembering them in its tracking table; broadcast sends every server every write under the prefix (N), whatever it holds. With many servers and a write-heavy stream, broadcast multiplies pushes by the number of servers; default mode costs Redis a table of the keys servers hold. The server uses default mode.
`;
  writeFileSync(join(import.meta.dir, "../results/redis-tracking.md"), md);
  console.log(md);
} finally {
  await redis.stop();
}
