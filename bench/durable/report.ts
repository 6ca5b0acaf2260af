/**
 * Printing, kept apart from measuring: the results of a run (all figures, also in the JSON) and
 * the markdown tables made from them. The hand-written reading of a run ("what this shows /
 * what we missed") lives in `notes.md` next to this file and is appended as it is.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Target } from "../e2e/report.ts";
import type { LoadResult } from "../e2e/systems.ts";
import {
  type Comparison,
  type Merged,
  median,
  mergedOf,
  p99Ratio,
  ratioOf,
  throughputRatio,
} from "./compare.ts";
import type { FsyncProbe, MachineInfo } from "./machine.ts";
import type { StartAnatomy, StartTiming } from "./restart.ts";

export interface RestartResults {
  entities: number;
  /** SIGTERM to exit of the server that filled the file (commit, checkpoint, close), ms. */
  fillShutdownMs: number;
  /** Files of the data directory after the fill's shutdown, bytes. */
  files: Record<string, number>;
  /** ...and after the timed starts. */
  filesAfter: Record<string, number>;
  configs: string[];
  /** The size-dependent steps of a start, timed alone in the benchmark process. */
  anatomy: StartAnatomy;
  runs: { config: string; rep: number; timing: StartTiming }[];
}

export interface Results {
  date: string;
  machine: MachineInfo;
  pinning: string;
  /** Where the servers' code came from: the working tree, or a git archive of a commit. */
  server: string;
  /** fdatasync probes of the data filesystem, at the start, before the writes and at the end. */
  fsync: ({ at: string } & FsyncProbe)[];
  config: Record<string, unknown>;
  load: Record<string, LoadResult>;
  hit: Comparison | null;
  miss: Comparison | null;
  /** Files of the miss server's data directory, bytes. */
  missFiles?: Record<string, number>;
  writes: { sync: Comparison; async: Comparison } | null;
  restart: RestartResults | null;
  /** How busy the machine was with other work during the kept cells. */
  noise: { cells: number; medianOtherCpuPct: number; cellsOverLimit: number } | null;
  targets: Target[];
  totalSeconds: number;
}

const NOTES = resolve(import.meta.dir, "notes.md");

const int = (x: number) => Math.round(x).toLocaleString("en-US");
const us = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(0)} µs`);
const pcts = (m: Merged) =>
  `${m.latencyUs.p50.toFixed(0)} / ${m.latencyUs.p99.toFixed(0)} / ${m.latencyUs.p999.toFixed(0)}`;
const x2 = (x: number) => `${x.toFixed(2)}×`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const check = (met: boolean | null) => (met === null ? "–" : met ? "met" : "**missed**");
const errs = (m: Merged) => (m.errors ? ` (${m.errors} errors)` : "");

/** The targets of issue 9, checked against the figures of a run. */
export function targets(r: Results): Target[] {
  const t: Target[] = [];
  if (r.hit)
    for (const shape of shapesOf(r.hit)) {
      const a = mergedOf(r.hit, "sqlite", shape);
      const b = mergedOf(r.hit, "memory", shape);
      const tr = throughputRatio(r.hit, "memory", "sqlite", shape);
      t.push({
        name: `Hit path throughput at ${shape}: memory / sqlite`,
        goal: "≤ 1.1×",
        measured: `${int(a.throughput)} vs ${int(b.throughput)} req/s`,
        ratio: tr,
        met: tr <= 1.1,
      });
      const pr = p99Ratio(r.hit, "sqlite", "memory", shape);
      t.push({
        name: `Hit path p99 at ${shape}: sqlite / memory`,
        goal: "≤ 1.1×",
        measured: `${us(a.latencyUs.p99)} vs ${us(b.latencyUs.p99)}`,
        ratio: pr,
        met: pr <= 1.1,
      });
    }
  if (r.miss) {
    const m = mergedOf(r.miss, "sqlite miss", "1x1");
    t.push({
      name: "Miss path p99 at 1x1",
      goal: "< 1 ms",
      measured: us(m.latencyUs.p99),
      ratio: m.latencyUs.p99 / 1000,
      met: m.latencyUs.p99 < 1000,
    });
  }
  if (r.writes)
    for (const [mode, cmp, redis] of [
      ["sync", r.writes.sync, "always"],
      ["async", r.writes.async, "everysec"],
    ] as const)
      for (const shape of shapesOf(cmp)) {
        const a = mergedOf(cmp, `sqlite ${mode}`, shape);
        const b = mergedOf(cmp, `redis ${redis}`, shape);
        const tr = throughputRatio(cmp, `sqlite ${mode}`, `redis ${redis}`, shape);
        t.push({
          name: `Writes at ${shape}: DURABILITY=${mode} / Redis appendfsync ${redis}`,
          goal: "≥ 1× throughput",
          measured: `${int(a.throughput)} vs ${int(b.throughput)} req/s`,
          ratio: tr,
          met: tr >= 1,
        });
      }
  return t;
}

function shapesOf(c: Comparison): string[] {
  return [...new Set(c.merged.map((m) => m.shape))];
}

export function markdown(r: Results): string {
  const L: string[] = [];
  const m = r.machine;
  L.push("# Durability benchmark (issue 9)", "");
  L.push(
    `Run ${r.date.slice(0, 16).replace("T", " ")} UTC at commit ${m.git ? m.git.commit.slice(0, 7) : "?"}` +
      `${m.git?.dirty.length ? ` (uncommitted changes in ${m.git.dirty.join(", ")})` : ""}` +
      `, ${r.totalSeconds} s in all; \`bun run bench:durable\` (bench/durable/run.ts).`,
    "",
  );
  L.push("| machine | |", "| --- | --- |");
  L.push(`| CPU | ${m.cpu}, nproc ${m.nproc}, ${m.memGiB} GiB |`);
  L.push(`| OS | ${m.os}, kernel ${m.kernel} |`);
  L.push(`| runtime | Bun ${m.bun}, SQLite ${m.sqlite} (bun:sqlite), Redis ${m.redis} |`);
  L.push(
    `| data directories | ${m.dataFs.type} on ${m.dataFs.device} (${m.dataFs.options}), all under one temporary directory |`,
  );
  L.push(
    `| one fdatasync'd 4 KiB append there (${r.fsync[0]?.count ?? 0} appends per probe) | ${r.fsync
      .map((f) => `${f.at}: p50 ${us(f.p50Us)}, p99 ${us(f.p99Us)}, max ${us(f.maxUs)}`)
      .join("; ")} |`,
  );
  L.push(`| server code | ${r.server} |`);
  L.push(`| pinning | ${r.pinning} |`);
  if (r.noise)
    L.push(
      `| other processes during the cells | median ${r.noise.medianOtherCpuPct} % of a core; ` +
        `${r.noise.cellsOverLimit} of ${r.noise.cells} cells above ${(r.config as { timing: { noisyPct: number } }).timing.noisyPct} % |`,
    );
  L.push("");
  const cfg = r.config as {
    rounds: number;
    timing: {
      warmupMs: number;
      durationMs: number;
      noisyPct: number;
      noisyRetries: number;
      retryBudgetS: number;
      quietWaitS: number;
    };
  };
  L.push(
    `Method: each comparison runs its contestants in alternated rounds (A B, then B A, ${cfg.rounds} rounds), ` +
      `every cell a closed loop (K connections × D requests in flight each, ${cfg.timing.warmupMs} ms warm-up ` +
      `then ${cfg.timing.durationMs} ms measured). Throughput and each percentile (p50 / p99 / p99.9, µs) are the ` +
      "median of the rounds, a ratio the median of the per-round ratios (the JSON also has the percentiles of " +
      "all rounds pooled). The machine is shared with other work: a cell during which other processes used " +
      `more than ${cfg.timing.noisyPct} % of a core waits for a quieter moment first (at most ` +
      `${cfg.timing.quietWaitS} s per comparison) and is run again if the cell itself was disturbed (at most ` +
      `${cfg.timing.noisyRetries} times, ${cfg.timing.retryBudgetS} s per comparison), the quietest attempt kept; ` +
      '"other CPU" gives the median ' +
      "(and the largest) of what they used during the kept cells (it also holds the kernel's softirq " +
      "time for our own loopback traffic, ~10 % of a core at 1x1). Our servers are driven with the raw TCP " +
      "client (answers not decoded: this measures the server), Redis with `Bun.RedisClient` (one client per " +
      "connection, automatic pipelining). " +
      "Server µs/req is the server process's CPU time (all threads) per request.",
    "",
  );

  L.push("## Targets", "", "| target | goal | measured | ratio | |", "| --- | --- | --- | --- | --- |");
  for (const t of r.targets)
    L.push(
      `| ${t.name} | ${t.goal} | ${t.measured} | ${t.ratio === null ? "–" : x2(t.ratio)} | ${check(t.met)} |`,
    );
  L.push("");

  if (r.hit) {
    const n = Number(r.config.entities);
    L.push(
      "## 1. GetFeatures when every read hits the cache: STORE=sqlite vs STORE=memory",
      "",
      `${int(n)} entities of 20 features (~570 B encoded) in each server, all in the cache ` +
        "(CACHE_SIZE 1.25× N), uniform random ids, all 20 features answered.",
      "",
      "| K×D | sqlite req/s | memory req/s | memory / sqlite | sqlite p50 / p99 / p99.9 | memory p50 / p99 / p99.9 | p99 sqlite / memory | server µs/req sqlite / memory | cache misses | other CPU |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const shape of shapesOf(r.hit)) {
      const a = mergedOf(r.hit, "sqlite", shape);
      const b = mergedOf(r.hit, "memory", shape);
      L.push(
        `| ${shape} | ${int(a.throughput)}${errs(a)} | ${int(b.throughput)}${errs(b)} | ${x2(throughputRatio(r.hit, "memory", "sqlite", shape))} ` +
          `| ${pcts(a)} | ${pcts(b)} | ${x2(p99Ratio(r.hit, "sqlite", "memory", shape))} ` +
          `| ${a.serverCpuUsPerReq} / ${b.serverCpuUsPerReq} | ${pct(a.missRatio)} / ${pct(b.missRatio)} ` +
          `| ${other(a)} / ${other(b)} |`,
      );
    }
    L.push("", `p99 of each round (µs): ${roundsLine(r.hit)}`, "");
  }

  if (r.miss) {
    const c = r.config as { missEntities: number; missCacheSize: number };
    const files = r.missFiles ? Object.values(r.missFiles).reduce((a, b) => a + b, 0) : 0;
    L.push(
      "## 2. GetFeatures that miss the cache and read the file",
      "",
      `${int(c.missEntities)} entities on disk (${mib(files)} of files), CACHE_SIZE=${int(c.missCacheSize)}, ` +
        "WARM_ENTITIES=0 (restarted after the fill, so the cache starts empty), uniform random ids; " +
        "against the hit path of the STORE=sqlite server of section 1 in the same rounds. The file is in " +
        "the OS page cache (it was just written and the machine has the memory): this is a B-tree " +
        "lookup in SQLite, not a disk read.",
      "",
      "| server | K×D | req/s | p50 | p90 | p99 | p99.9 | max | server µs/req | cache misses | other CPU |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const x of r.miss.merged)
      L.push(
        `| ${x.contestant} | ${x.shape} | ${int(x.throughput)}${errs(x)} | ${us(x.latencyUs.p50)} | ${us(x.latencyUs.p90)} ` +
          `| ${us(x.latencyUs.p99)} | ${us(x.latencyUs.p999)} | ${us(x.latencyUs.max)} | ${x.serverCpuUsPerReq} | ${pct(x.missRatio)} | ${other(x)} |`,
      );
    L.push("");
    for (const shape of shapesOf(r.miss)) {
      const a = mergedOf(r.miss, "sqlite miss", shape);
      const b = mergedOf(r.miss, "sqlite hit", shape);
      L.push(
        `- ${shape}: miss / hit p50 ${x2(ratioOf(r.miss, "sqlite miss", "sqlite hit", shape, (q) => q.latencyUs.p50))}, ` +
          `p99 ${x2(p99Ratio(r.miss, "sqlite miss", "sqlite hit", shape))}, ` +
          `throughput ${x2(throughputRatio(r.miss, "sqlite miss", "sqlite hit", shape))}; ` +
          `server CPU per request +${(a.serverCpuUsPerReq - b.serverCpuUsPerReq).toFixed(1)} µs.`,
      );
    }
    L.push("", `p99 of each round (µs): ${roundsLine(r.miss)}`, "");
  }

  if (r.writes) {
    L.push(
      "## 3. Durable writes: DURABILITY=sync / async vs Redis 7 with an append-only file",
      "",
      `Both sides hold the same ${int(Number(r.config.entities))} entities (loaded before), and each write ` +
        "updates 5 features of a uniformly random one: our `SetFeatures` of 5 features (a merge: the server " +
        "rewrites the entity's whole ~570 B record in its SQLite row) against `HSET key` with the same 5 " +
        "fields and values (Redis appends the command to its AOF). Redis runs with `appendonly yes`, " +
        '`save ""`, and `appendfsync always` (against sync) or `everysec` (against async); its AOF was ' +
        "rewritten after the bulk load so that no automatic rewrite forks during a cell. Every data directory " +
        "is on the same filesystem.",
      "",
      "| durability | K×D | ours req/s | Redis req/s | ours / Redis | ours p50 / p99 / p99.9 | Redis p50 / p99 / p99.9 | p99 ours / Redis | server µs/req ours / Redis | bytes to disk per write ours / Redis | other CPU |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const [mode, cmp, redis] of [
      ["sync", r.writes.sync, "always"],
      ["async", r.writes.async, "everysec"],
    ] as const)
      for (const shape of shapesOf(cmp)) {
        const a = mergedOf(cmp, `sqlite ${mode}`, shape);
        const b = mergedOf(cmp, `redis ${redis}`, shape);
        L.push(
          `| ${mode} vs ${redis} | ${shape} | ${int(a.throughput)}${errs(a)} | ${int(b.throughput)}${errs(b)} ` +
            `| ${x2(throughputRatio(cmp, `sqlite ${mode}`, `redis ${redis}`, shape))} | ${pcts(a)} | ${pcts(b)} ` +
            `| ${x2(p99Ratio(cmp, `sqlite ${mode}`, `redis ${redis}`, shape))} | ${a.serverCpuUsPerReq} / ${b.serverCpuUsPerReq} ` +
            `| ${int(a.diskBytesPerReq)} / ${int(b.diskBytesPerReq)} | ${other(a)} / ${other(b)} |`,
        );
      }
    const cmp = r.writes.async;
    if (cmp.merged.some((x) => x.contestant === "memory")) {
      L.push(
        "",
        "The same SetFeatures on a STORE=memory server (no file: the cache is the store), run in the rounds " +
          "of the async comparison, shows what the write costs without SQLite:",
        "",
        "| K×D | memory req/s | memory / async | memory / Redis everysec | memory p50 / p99 / p99.9 | server µs/req memory / async |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
      );
      for (const shape of shapesOf(cmp)) {
        const m = mergedOf(cmp, "memory", shape);
        const a = mergedOf(cmp, "sqlite async", shape);
        L.push(
          `| ${shape} | ${int(m.throughput)}${errs(m)} | ${x2(throughputRatio(cmp, "memory", "sqlite async", shape))} ` +
            `| ${x2(throughputRatio(cmp, "memory", "redis everysec", shape))} | ${pcts(m)} ` +
            `| ${m.serverCpuUsPerReq} / ${a.serverCpuUsPerReq} |`,
        );
      }
    }
    L.push(
      "",
      `Throughput of each round (req/s): sync ${thrLine(r.writes.sync)}; async ${thrLine(r.writes.async)}`,
      "",
    );
  }

  if (r.restart) {
    const x = r.restart;
    const load = r.load.restart;
    const total = Object.values(x.files).reduce((a, b) => a + b, 0);
    L.push(
      "## 4. Restart with the file full",
      "",
      `${int(x.entities)} entities filled by BatchSet (500 per batch, 4 in flight) with DURABILITY=async` +
        `${load ? ` in ${load.seconds.toFixed(1)} s (${int(x.entities / load.seconds)}/s)` : ""}, then SIGTERM: ` +
        `the server exited ${x.fillShutdownMs.toFixed(0)} ms later. On disk: ` +
        `${Object.entries(x.files)
          .map(([k, v]) => `${k} ${mib(v)}`)
          .join(", ")} (${mib(total)}, ${(total / x.entities).toFixed(0)} B per entity). ` +
        "Each start is timed from just before the spawn (`bun src/main.ts`, pinned) to the " +
        '"feature store listening" log line and to the first 200 from /ready; other cache options are ' +
        "the server's defaults (CACHE_SIZE 1,000,000, CACHE_MAX_BYTES 1 GiB). Configurations alternate; " +
        "the file is in the OS page cache (a cold-disk start would add the reads). Figures are medians, " +
        "with min–max over the starts.",
      "",
      '| configuration | starts | spawn → listening | spawn → /ready 200 | spawn → "store opened" | warm-up | entities warmed | SIGTERM → exit |',
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const c of x.configs) {
      const rs = x.runs.filter((q) => q.config === c).map((q) => q.timing);
      const f = (get: (t: StartTiming) => number | null) => {
        const v = rs.map(get).filter((y): y is number => y !== null && Number.isFinite(y));
        if (v.length === 0) return "–";
        const med = median(v);
        return v.length > 1
          ? `${med.toFixed(0)} ms (${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)})`
          : `${med.toFixed(0)} ms`;
      };
      const warmed = rs.map((t) => t.warmed).find((w) => w !== null);
      L.push(
        `| ${c} | ${rs.length} | ${f((t) => t.listeningMs)} | ${f((t) => t.readyMs)} | ${f((t) => t.storeOpenedMs)} ` +
          `| ${f((t) => t.warmMs)} | ${warmed === undefined || warmed === null ? "–" : int(warmed)} | ${f((t) => t.shutdownMs)} |`,
      );
    }
    const a = x.anatomy;
    L.push(
      "",
      "The steps of a start whose cost grows with the file, timed alone in the benchmark process with the " +
        `server's statements: \`PRAGMA quick_check(1)\` at open ${a.quickCheckMs.toFixed(0)} ms, ` +
        `\`SELECT count(*)\` for the "store opened" line ${a.countMs.toFixed(0)} ms, the warm-up query ` +
        `(newest ${int(a.recentRows)} rows) ${a.recentMs.toFixed(0)} ms.`,
      "",
    );
  }

  if (existsSync(NOTES)) L.push(readFileSync(NOTES, "utf8").trim(), "");
  return `${L.join("\n")}\n`;
}

/** Median (and largest) CPU use of other processes over the rounds, % of a core. */
function other(m: Merged): string {
  return `${m.otherCpuPct.toFixed(0)} % (≤ ${m.maxOtherCpuPct.toFixed(0)})`;
}

function pct(x: number | undefined): string {
  return x === undefined ? "–" : `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)} %`;
}

function roundsLine(c: Comparison): string {
  return c.merged
    .map((m) => `${m.contestant} ${m.shape} ${m.p99s.map((p) => p.toFixed(0)).join(", ")}`)
    .join("; ");
}

function thrLine(c: Comparison): string {
  return c.merged.map((m) => `${m.contestant} ${m.shape} ${m.throughputs.map(int).join(", ")}`).join("; ");
}
