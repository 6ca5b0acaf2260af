/**
 * Printing, kept apart from measuring: the figures of a run (`Results`, also the JSON) become
 * the markdown report, with the targets of issue 10 checked first.
 */
import type { MachineInfo } from "../durable/machine.ts";
import { fmtRate, fmtUs, type Target, table, targetsTable } from "../e2e/report.ts";
import type { LoadResult } from "../e2e/systems.ts";
import { type Comparison, type Merged, mergedOf, ratioOf } from "./cells.ts";

export interface Results {
  date: string;
  machine: MachineInfo;
  uptimeStart: string;
  uptimeEnd: string;
  pinning: string;
  config: {
    entities: number;
    cache0: number;
    cache90: number;
    cache99: number;
    hot: number;
    writeEntities: number;
    rounds: number;
    openRounds: number;
    openFraction: number;
    timing: { warmupMs: number; durationMs: number; noisyPct: number };
    quick: boolean;
    nearCacheMaxStalenessMs: number;
  };
  load: Record<string, LoadResult>;
  reads: Comparison | null;
  open: Comparison | null;
  /** The open loop's offered rate, req/s. */
  openRate: number;
  scale: Comparison | null;
  writes: Comparison | null;
  /** After the writes: the master and the replica hold the same value of a written entity. */
  writesReplicaCheck?: string;
  targets: Target[];
  totalSeconds: number;
}

/** What each side is, for the tables. */
export const SIDE_LABELS: Record<string, string> = {
  "redis-bun/uniform": "Redis direct, Bun client + typed decode (uniform)",
  "redis-node/uniform": "Redis direct, node-redis + typed decode of our layout (uniform)",
  "ours-0%": "ours over Redis, ~0 % near-cache hits (uniform, CACHE_SIZE 1,000)",
  "redis-bun/zipf": "Redis direct, Bun client + typed decode (Zipf)",
  "ours-90%": "ours over Redis, ~90 % hits (Zipf)",
  "ours-99%": "ours over Redis, ~99 % hits (uniform)",
  "memory/uniform": "STORE=memory, 100 % hits (uniform)",
  "ours-hot": "ours over Redis, near-cache hits (1,000 hot ids)",
  "memory-hot": "STORE=memory, hits (the same 1,000 ids)",
  "1 server, ~0%": "one server, ~0 % hits",
  "2 servers, ~0%": "two servers, ~0 % hits",
  "1 server, ~90%": "one server, ~90 % hits",
  "2 servers, ~90%": "two servers, ~90 % hits",
  "ours-wait0": "ours, SetFeatures (20), REDIS_WAIT_REPLICAS=0",
  hset: "Redis direct, HSET of the 20 values (Bun client, pipelined)",
  "ours-wait1": "ours, SetFeatures (20), REDIS_WAIT_REPLICAS=1",
  "hset-wait1": "Redis direct, HSET + WAIT 1 0.5 s per write",
};

const int = (x: number) => Math.round(x).toLocaleString("en-US");
const x2 = (x: number) => `${x.toFixed(2)}×`;
const pct = (x: number | undefined) => (x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
const lat = (m: Merged) =>
  `${fmtUs(m.latencyUs.p50)} / ${fmtUs(m.latencyUs.p99)} / ${fmtUs(m.latencyUs.p999)}`;
const cpu = (m: Merged, role: string) => {
  const v = m.cpuUsPerReq[role];
  return v === undefined ? "–" : v.toFixed(1);
};
const totalCpu = (m: Merged) => Object.values(m.cpuUsPerReq).reduce((a, b) => a + b, 0);

/** The targets of issue 10, checked against the figures of a run. */
export function targets(r: Results): Target[] {
  const t: Target[] = [];
  const c = r.reads;
  if (c) {
    for (const shape of ["1x1", "8x8"]) {
      const a = mergedOf(c, "ours-0%", shape);
      const b = mergedOf(c, "redis-bun/uniform", shape);
      if (a && b)
        for (const p of ["p50", "p99"] as const) {
          const ratio = ratioOf(c, "ours-0%", "redis-bun/uniform", shape, (x) => x.latencyUs[p]);
          t.push({
            name: `~0 % hit (${pct(a.hitRatio)} measured), ${p} at ${shape}: ours / Redis direct`,
            goal: "≤ 1.3×",
            measured: `${fmtUs(a.latencyUs[p])} vs ${fmtUs(b.latencyUs[p])}`,
            ratio,
            met: ratio <= 1.3,
          });
        }
    }
    const a = mergedOf(c, "ours-90%", "8x8");
    const b = mergedOf(c, "redis-bun/zipf", "8x8");
    if (a && b) {
      const tr = ratioOf(c, "ours-90%", "redis-bun/zipf", "8x8", (x) => x.throughput);
      t.push({
        name: `~90 % hit (${pct(a.hitRatio)} measured), throughput at 8x8: ours / Redis direct`,
        goal: "≥ 3×",
        measured: `${int(a.throughput)} vs ${int(b.throughput)} req/s`,
        ratio: tr,
        met: tr >= 3,
      });
      const pr = ratioOf(c, "ours-90%", "redis-bun/zipf", "8x8", (x) => x.latencyUs.p99);
      t.push({
        name: "~90 % hit, p99 at 8x8: ours / Redis direct",
        goal: "< 1×",
        measured: `${fmtUs(a.latencyUs.p99)} vs ${fmtUs(b.latencyUs.p99)}`,
        ratio: pr,
        met: pr < 1,
      });
    }
    for (const shape of ["1x1", "8x8"]) {
      const h = mergedOf(c, "ours-hot", shape);
      const m = mergedOf(c, "memory-hot", shape);
      if (h && m) {
        const pr = ratioOf(c, "ours-hot", "memory-hot", shape, (x) => x.latencyUs.p99);
        t.push({
          name: `near-cache hits (${pct(h.hitRatio)}), p99 at ${shape}: ours over Redis / STORE=memory`,
          goal: "≤ 1.1× (the same)",
          measured: `${fmtUs(h.latencyUs.p99)} vs ${fmtUs(m.latencyUs.p99)}`,
          ratio: pr,
          met: pr <= 1.1,
        });
      }
    }
  }
  return t;
}

function readsTable(c: Comparison, sides: string[], baseline: (side: string) => string | null): string {
  const rows: string[][] = [];
  for (const shape of [...new Set(c.merged.map((m) => m.shape))])
    for (const side of sides) {
      const m = mergedOf(c, side, shape);
      if (!m) continue;
      const base = baseline(side);
      const vs =
        base === null || base === side
          ? "–"
          : `${x2(ratioOf(c, side, base, shape, (x) => x.throughput))} / ${x2(
              ratioOf(c, side, base, shape, (x) => x.latencyUs.p99),
            )}`;
      rows.push([
        SIDE_LABELS[side] ?? side,
        shape,
        pct(m.hitRatio),
        int(m.throughput),
        vs,
        lat(m),
        cpu(m, "server"),
        cpu(m, "redis"),
        `${m.genCpuPct.toFixed(0)} %`,
        `${m.otherCpuPct.toFixed(0)} % (≤ ${m.maxOtherCpuPct.toFixed(0)})`,
      ]);
    }
  return table(
    [
      "side",
      "K×D",
      "near-cache hits",
      "req/s",
      "vs direct: req/s, p99",
      "p50 / p99 / p99.9",
      "server µs/req",
      "redis µs/req",
      "gen CPU",
      "other CPU",
    ],
    rows,
    [":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
  );
}

/** The direct-Redis side each read side is compared with. */
function readBaseline(side: string): string | null {
  if (side === "ours-0%" || side === "ours-99%" || side === "memory/uniform" || side === "redis-node/uniform")
    return "redis-bun/uniform";
  if (side === "ours-90%") return "redis-bun/zipf";
  if (side === "ours-hot") return "memory-hot";
  return null;
}

export function markdown(r: Results): string {
  const L: string[] = [];
  const m = r.machine;
  const cfg = r.config;
  L.push("# Redis as the shared tier: benchmark (issue 10)", "");
  L.push(
    `Run ${r.date.slice(0, 16).replace("T", " ")} UTC at commit ${m.git ? m.git.commit.slice(0, 7) : "?"}` +
      `${m.git?.dirty.length ? ` (uncommitted changes in ${m.git.dirty.join(", ")})` : ""}` +
      `, ${r.totalSeconds} s in all; \`bun bench/redis/run.ts${cfg.quick ? " --quick" : ""}\`.`,
    "",
  );
  L.push("| machine | |", "| --- | --- |");
  L.push(`| CPU | ${m.cpu}, nproc ${m.nproc}, ${m.memGiB} GiB |`);
  L.push(`| OS | ${m.os}, kernel ${m.kernel} |`);
  L.push(`| runtime | Bun ${m.bun}, Redis ${m.redis} (apt), node-redis (\`@redis/client\`) in our server |`);
  L.push(`| pinning | ${r.pinning} |`);
  L.push(`| load before | \`${r.uptimeStart}\` |`);
  L.push(`| load after | \`${r.uptimeEnd}\` |`);
  L.push("");
  L.push(
    `Method: each comparison runs its sides in alternated rounds (order reversed every other round, ${cfg.rounds} rounds), ` +
      `every cell a closed loop of K connections × D requests in flight (${cfg.timing.warmupMs} ms warm-up, ` +
      `${cfg.timing.durationMs} ms measured). Throughput and percentiles are the median of the rounds; a ratio is ` +
      "the median of the per-round ratios (the JSON has every round and the pooled percentiles). CPU per request " +
      "is `/proc/<pid>/stat` utime + stime (all threads) of each process of the side over the cell (warm-up " +
      "included), summed by role; `gen CPU` is the load generator's share of its core, `other CPU` everything else " +
      `on the machine (a cell above ${cfg.timing.noisyPct} % waits for a quieter moment and may run again). ` +
      "The near-cache hit ratio is measured, not assumed: 1 − (HGETALL calls Redis executed during the cell, INFO " +
      "commandstats) / (requests sent); every near-cache miss costs exactly one HGETALL (single-flight). " +
      "NEAR_CACHE_MAX_STALENESS_MS is the default (60 s) for the ~0 % server and " +
      `${int(cfg.nearCacheMaxStalenessMs)} ms (longer than the run) for the ~90 % and ~99 % servers: the run ` +
      "alternates nine sides, so each server idles 8/9 of the time while its entries age, and with the default " +
      "a first run measured 75-90 % instead of ~90 and ~99 %, an artefact of the idling.",
    "",
  );
  L.push(
    `Data: ${int(cfg.entities)} entities of 20 features (6 ints, 6 doubles, 6 short strings, a bool, a 32-float ` +
      "embedding; ~570 B encoded), written twice into one `redis-server` without persistence: in our layout " +
      "(`fs:user:<i>`, one hash field per feature, the encoded FeatureValue bytes; loaded through our server's " +
      "BatchSet) and as strings (`user:<i>`, the e2e benchmark's layout: numbers as decimal strings, the embedding " +
      "as base64). `Bun.RedisClient` returns hash values as UTF-8 strings and cannot read our binary values (a " +
      '0xff byte comes back as U+FFFD), so the Bun-client row, the issue\'s "Redis + Bun client with typed decode", ' +
      "reads the string copy of the same entities: same HGETALL of 20 fields, same typed result. The node-redis " +
      "row reads our own layout (HGETALL as bytes, `decodeFeatureValue` per field): what our server does on a miss, " +
      "without the extra hop. Our side is our TCP client's typed `getFeatures` (all 20 features).",
    "",
  );

  if (r.targets.length) L.push("## Targets", "", targetsTable(r.targets, "target", "measured"), "");

  if (r.reads) {
    L.push(
      "## 1. GetFeatures: our server over Redis against Redis direct",
      "",
      `Near-cache sizes: ${int(cfg.cache0)} entries for ~0 % (uniform ids over ${int(cfg.entities)}); ` +
        `${int(cfg.cache90)} for ~90 % (Zipf(0.99) ids, rank r mapped to entity r·P mod N; the near-cache first ` +
        "filled by 2^20 other draws (another seed) as BatchGets of 100, and the cells read a 2^23-draw stream, so " +
        `they meet tail ids never read before, as a live stream does); ${int(cfg.cache99)} for ~99 % (uniform ids: an LRU of C entries ` +
        "over N answers C/N once filled; filled by one sweep over every id). The hit rows read " +
        `${int(cfg.hot)} hot ids (uniformly) from the ~99 % server and from a STORE=memory server holding every entity. ` +
        '"vs direct" is ours / Redis direct (Bun client, same key distribution) for the Redis rows, and near-cache ' +
        "/ memory for the hit row.",
      "",
      readsTable(
        r.reads,
        [
          "redis-bun/uniform",
          "redis-node/uniform",
          "ours-0%",
          "redis-bun/zipf",
          "ours-90%",
          "ours-99%",
          "memory/uniform",
          "ours-hot",
          "memory-hot",
        ],
        readBaseline,
      ),
      "",
    );
    L.push(
      `p99 of each round (µs): ${r.reads.merged.map((x) => `${x.side} ${x.shape} ${x.p99s.join(", ")}`).join("; ")}`,
      "",
    );
  }

  if (r.open) {
    L.push(
      "## 2. Open loop at one fixed rate",
      "",
      `Every side at ${int(r.openRate)} req/s over 8 connections (${cfg.openFraction} of the slowest side's 8x8 ` +
        `closed-loop throughput), ${cfg.openRounds} alternated round(s); latency counted from each request's ` +
        "intended send time (no coordinated omission). The generator's own stalls show up here too (see " +
        "bench/e2e/README.md: its p99 at 25 % load is 2-8 ms for every system), so compare the sides with each other.",
      "",
    );
    const rows = r.open.merged.map((x) => [
      SIDE_LABELS[x.side] ?? x.side,
      pct(x.hitRatio),
      int(x.throughput),
      lat(x),
      cpu(x, "server"),
      cpu(x, "redis"),
      `${x.otherCpuPct.toFixed(0)} %`,
    ]);
    L.push(
      table(
        [
          "side",
          "near-cache hits",
          "answered/s",
          "p50 / p99 / p99.9",
          "server µs/req",
          "redis µs/req",
          "other CPU",
        ],
        rows,
      ),
      "",
    );
    const late = r.open.runs.filter((x) => x.truncated);
    if (late.length)
      L.push(`Could not keep the rate: ${late.map((x) => `${x.side} (round ${x.round})`).join(", ")}.`, "");
  }

  if (r.scale) {
    L.push(
      "## 3. One server against two over one Redis",
      "",
      "The same client load (K connections × D in flight) on one server, or split over two servers (half the " +
        "connections each, each server with its own near-cache of the same size), with one redis-server. Every " +
        "server and Redis share CPU 1 (the generator has CPU 0): on this 2-core machine a second server adds " +
        "no core, so what this shows is the cost of a second server, not its capacity. CPU per request is the sum " +
        "over the side's processes.",
      "",
    );
    const rows: string[][] = [];
    for (const shape of [...new Set(r.scale.merged.map((x) => x.shape))])
      for (const x of r.scale.merged.filter((y) => y.shape === shape)) {
        const one = x.side.replace("2 servers", "1 server");
        const vs = one === x.side ? "–" : `${x2(ratioOf(r.scale, x.side, one, shape, (y) => y.throughput))}`;
        rows.push([
          SIDE_LABELS[x.side] ?? x.side,
          shape,
          pct(x.hitRatio),
          int(x.throughput),
          vs,
          lat(x),
          cpu(x, "server"),
          cpu(x, "redis"),
          totalCpu(x).toFixed(1),
          `${x.otherCpuPct.toFixed(0)} %`,
        ]);
      }
    L.push(
      table(
        [
          "setup",
          "K×D",
          "near-cache hits",
          "req/s",
          "two / one",
          "p50 / p99 / p99.9",
          "servers µs/req",
          "redis µs/req",
          "total µs/req",
          "other CPU",
        ],
        rows,
      ),
      "",
    );
  }

  if (r.writes) {
    L.push(
      "## 4. Writes: SetFeatures of 20 features",
      "",
      `${int(cfg.writeEntities)} entities loaded first; each write replaces the 20 values of a uniformly random ` +
        "one (a merge of all 20 names). Redis: `appendonly yes`, `appendfsync everysec`, its AOF rewritten after the " +
        "load and automatic rewrites off during the cells (no fork in a cell), one replica (`--replicaof`, no " +
        "persistence) on the same core. Ours: `SetFeatures` through the server (one Lua script per write, WAIT once " +
        "per event-loop turn with REDIS_WAIT_REPLICAS=1); direct: HSET of the same 20 encoded values into the same " +
        "`fs:` hashes with Bun's client (its commands pipeline), and HSET followed by its own `WAIT 1 500`. " +
        `Master and replica agreed on a written entity after the cells: ${r.writesReplicaCheck ?? "not checked"}.`,
      "",
    );
    const base: Record<string, string> = { "ours-wait0": "hset", "ours-wait1": "hset-wait1" };
    const rows: string[][] = [];
    for (const shape of [...new Set(r.writes.merged.map((x) => x.shape))])
      for (const x of r.writes.merged.filter((y) => y.shape === shape)) {
        const b = base[x.side];
        rows.push([
          SIDE_LABELS[x.side] ?? x.side,
          shape,
          int(x.throughput),
          b
            ? `${x2(ratioOf(r.writes, x.side, b, shape, (y) => y.throughput))} / ${x2(
                ratioOf(r.writes, x.side, b, shape, (y) => y.latencyUs.p99),
              )}`
            : "–",
          lat(x),
          cpu(x, "server"),
          cpu(x, "redis"),
          cpu(x, "replica"),
          x.errors ? `${x.errors}: ${x.firstError?.slice(0, 80)}` : "0",
        ]);
      }
    L.push(
      table(
        [
          "side",
          "K×D",
          "writes/s",
          "vs direct: writes/s, p99",
          "p50 / p99 / p99.9",
          "server µs/req",
          "master µs/req",
          "replica µs/req",
          "errors",
        ],
        rows,
      ),
      "",
    );
  }

  const loads = Object.entries(r.load)
    .map(
      ([k, v]) =>
        `${k} ${int(v.entities)} in ${v.seconds.toFixed(1)} s (${fmtRate(v.entities / v.seconds)}/s)`,
    )
    .join("; ");
  if (loads) L.push(`Loading: ${loads}.`, "");
  return `${L.join("\n")}\n`;
}
