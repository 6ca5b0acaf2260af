/**
 * Side-by-side comparison in alternated rounds: every contestant runs every shape once per
 * round, the order of the contestants flipping each round (A B, then B A...), so that drift of
 * the machine (page cache, a neighbour's load, the disk's mood) hits both sides alike. A
 * contestant's figures are its rounds merged: throughput as the median of the rounds,
 * percentiles from the merged histogram (more samples than one cell has), and the ratio of
 * two contestants as the median of their per-round ratios.
 */
import { readFileSync } from "node:fs";
import { Histogram } from "../e2e/hist.ts";
import { closedLoop, type OpFn } from "../e2e/load.ts";
import { cpuSeconds, machineBusySeconds, selfCpuSeconds } from "../e2e/procs.ts";
import { type Latency, latencyOf, round } from "../e2e/report.ts";

/** One side of a comparison: a server process and the op that loads it, per shape. */
export interface Contestant {
  readonly name: string;
  /** The server's PID (its CPU time is read around each cell). */
  readonly pid: number;
  /** The op of a closed loop over `conns` connections. */
  op(conns: number): Promise<OpFn>;
  /** Cache misses so far (read from /metrics), when the comparison wants the miss ratio. */
  misses?: () => Promise<number>;
}

/** A closed-loop shape: connections x requests in flight on each. */
export type Shape = readonly [conns: number, depth: number];

export const shapeName = ([k, d]: Shape): string => `${k}x${d}`;

export interface CellTiming {
  warmupMs: number;
  durationMs: number;
  /** Stop a cell after this many answers. */
  maxRequests: number;
  /**
   * The machine is shared: a cell during which other processes used more than this much CPU
   * (% of one core) is run again...
   */
  noisyPct: number;
  /** ...at most this many more times, the quietest attempt kept... */
  noisyRetries: number;
  /** ...while this budget of seconds (per comparison, spent by retries) lasts. */
  retryBudgetS: number;
  /**
   * Before each cell, wait (in steps of half a second) while other processes use more than
   * `noisyPct`, spending at most this many seconds per comparison: neighbours' work comes in
   * bursts, and a cell started after one is cleaner than a cell run again.
   */
  quietWaitS: number;
}

/** One run of one contestant at one shape in one round. */
export interface Run {
  round: number;
  contestant: string;
  shape: string;
  requests: number;
  errors: number;
  firstError?: string;
  seconds: number;
  throughput: number;
  latencyUs: Latency;
  /** Server CPU per request (user + system, all threads), µs. */
  serverCpuUsPerReq: number;
  serverCpuPct: number;
  /**
   * Bytes the server sent toward storage per request (/proc/<pid>/io write_bytes, counted when
   * a page is dirtied, all threads): the write amplification of a durable write.
   */
  diskBytesPerReq: number;
  clientCpuPct: number;
  /** CPU used by every other process on the machine, % of one core. */
  otherCpuPct: number;
  /** Cache misses / requests sent (warm-up included), when the contestant reports misses. */
  missRatio?: number;
  /** Attempts made (more than 1 when other processes were busy; the quietest is kept). */
  attempts: number;
}

/** A contestant's rounds at one shape, merged. */
export interface Merged {
  contestant: string;
  shape: string;
  rounds: number;
  /** Median of the rounds' throughputs, requests/s. */
  throughput: number;
  /**
   * Each percentile as the median of the rounds' values, µs: a round disturbed by a neighbour
   * moves it less than it moves the pooled figure.
   */
  latencyUs: Latency;
  /** Percentiles of every measured request of every round pooled in one histogram, µs. */
  pooledLatencyUs: Latency;
  /** p99 of each round, µs (its spread is the run-to-run noise). */
  p99s: number[];
  throughputs: number[];
  serverCpuUsPerReq: number;
  diskBytesPerReq: number;
  errors: number;
  firstError?: string;
  missRatio?: number;
  /** Median and largest CPU use of other processes during the rounds, % of one core. */
  otherCpuPct: number;
  maxOtherCpuPct: number;
}

/** write_bytes of /proc/<pid>/io (bytes the process caused to be sent to storage); NaN if unreadable. */
function writeBytes(pid: number): number {
  try {
    const m = /^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8") as string);
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU used by every process but `pid` and this one over the next `ms`, % of one core. */
async function otherCpuPct(pid: number, ms: number): Promise<number> {
  const busy0 = machineBusySeconds();
  const cpu0 = cpuSeconds(pid);
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  await Bun.sleep(ms);
  const other = machineBusySeconds() - busy0 - (cpuSeconds(pid) - cpu0) - (selfCpuSeconds() - self0);
  return (100 * other) / ((performance.now() - t0) / 1000);
}

let seqBase = 0;
/** A fresh start in the key stream for each cell, so that cells do not replay the same keys. */
function nextSeq(): number {
  seqBase += 7_919_113;
  return seqBase;
}

async function measure(
  c: Contestant,
  fn: OpFn,
  shape: Shape,
  t: CellTiming,
): Promise<{ run: Omit<Run, "round" | "contestant" | "shape" | "attempts">; hist: Histogram }> {
  Bun.gc(true);
  const misses0 = c.misses ? await c.misses() : 0;
  const cpu0 = cpuSeconds(c.pid);
  const io0 = writeBytes(c.pid);
  const self0 = selfCpuSeconds();
  const busy0 = machineBusySeconds();
  const r = await closedLoop(fn, {
    slots: shape[0] * shape[1],
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    maxRequests: t.maxRequests,
    seqStart: nextSeq(),
  });
  const cpu = cpuSeconds(c.pid) - cpu0;
  const io = writeBytes(c.pid) - io0;
  const self = selfCpuSeconds() - self0;
  const other = machineBusySeconds() - busy0 - cpu - self;
  const misses = c.misses ? (await c.misses()) - misses0 : Number.NaN;
  return {
    hist: r.hist,
    run: {
      requests: r.requests,
      errors: r.errors,
      ...(r.firstError ? { firstError: r.firstError } : {}),
      seconds: round(r.seconds, 3),
      throughput: Math.round(r.throughput),
      latencyUs: latencyOf(r.hist),
      serverCpuUsPerReq: round((cpu * 1e6) / Math.max(1, r.issued), 2),
      serverCpuPct: round((100 * cpu) / r.wallSeconds, 1),
      diskBytesPerReq: Math.round(io / Math.max(1, r.issued)),
      clientCpuPct: round((100 * self) / r.wallSeconds, 1),
      otherCpuPct: round(Math.max(0, (100 * other) / r.wallSeconds), 1),
      ...(c.misses ? { missRatio: round(misses / Math.max(1, r.issued), 4) } : {}),
    },
  };
}

export interface Comparison {
  runs: Run[];
  merged: Merged[];
}

/**
 * Runs `rounds` rounds; in each, every shape, and at each shape every contestant (the order
 * reversed on odd rounds). `log` gets one line per run.
 */
export async function alternate(
  contestants: readonly Contestant[],
  shapes: readonly Shape[],
  rounds: number,
  timing: CellTiming,
  log: (line: string) => void,
): Promise<Comparison> {
  const runs: Run[] = [];
  let budget = timing.retryBudgetS;
  let waitBudget = timing.quietWaitS;
  /** Waits while the machine is busy with other work, within the comparison's wait budget. */
  const quiet = async (pid: number): Promise<void> => {
    let said = false;
    while (waitBudget > 0) {
      const t0 = performance.now();
      const other = await otherCpuPct(pid, 500);
      waitBudget -= (performance.now() - t0) / 1000;
      if (other <= timing.noisyPct) return;
      if (!said)
        log(`    (other processes use ${other.toFixed(0)}% of a core: waiting for a quieter moment)`);
      said = true;
    }
  };
  const hists = new Map<string, Histogram>();
  const ops = new Map<string, OpFn>();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? contestants : [...contestants].reverse();
    for (const shape of shapes)
      for (const c of order) {
        const key = `${c.name}/${shapeName(shape)}`;
        let fn = ops.get(key);
        if (fn === undefined) {
          fn = await c.op(shape[0]);
          ops.set(key, fn);
        }
        await quiet(c.pid);
        let best = await measure(c, fn, shape, timing);
        let attempts = 1;
        while (best.run.otherCpuPct > timing.noisyPct && attempts <= timing.noisyRetries && budget > 0) {
          log(`    (other processes used ${best.run.otherCpuPct}% of a core: running it again)`);
          const t0 = performance.now();
          await quiet(c.pid);
          const again = await measure(c, fn, shape, timing);
          budget -= (performance.now() - t0) / 1000;
          attempts++;
          if (again.run.otherCpuPct < best.run.otherCpuPct) best = again;
        }
        const { run, hist } = best;
        const full: Run = { round: r, contestant: c.name, shape: shapeName(shape), ...run, attempts };
        runs.push(full);
        let h = hists.get(key);
        if (h === undefined) {
          h = new Histogram();
          hists.set(key, h);
        }
        h.merge(hist);
        log(
          `  round ${r} ${c.name} ${full.shape}: ${full.throughput} req/s, p50 ${full.latencyUs.p50} ` +
            `p99 ${full.latencyUs.p99} p99.9 ${full.latencyUs.p999} µs, srv ${full.serverCpuUsPerReq} µs/req` +
            `, disk ${full.diskBytesPerReq} B/req` +
            `${full.missRatio !== undefined ? `, misses ${(full.missRatio * 100).toFixed(1)}%` : ""}` +
            `, other ${full.otherCpuPct}%${full.errors ? `, ${full.errors} errors: ${full.firstError}` : ""}`,
        );
      }
  }
  const merged: Merged[] = [];
  for (const shape of shapes)
    for (const c of contestants) {
      const sn = shapeName(shape);
      const rs = runs.filter((x) => x.contestant === c.name && x.shape === sn);
      const h = hists.get(`${c.name}/${sn}`)!;
      const firstError = rs.find((x) => x.firstError)?.firstError;
      const missRatios = rs.map((x) => x.missRatio).filter((x): x is number => x !== undefined);
      merged.push({
        contestant: c.name,
        shape: sn,
        rounds: rs.length,
        throughput: Math.round(median(rs.map((x) => x.throughput))),
        latencyUs: {
          p50: med(rs, (x) => x.latencyUs.p50),
          p90: med(rs, (x) => x.latencyUs.p90),
          p99: med(rs, (x) => x.latencyUs.p99),
          p999: med(rs, (x) => x.latencyUs.p999),
          max: med(rs, (x) => x.latencyUs.max),
          mean: med(rs, (x) => x.latencyUs.mean),
        },
        pooledLatencyUs: latencyOf(h),
        p99s: rs.map((x) => x.latencyUs.p99),
        throughputs: rs.map((x) => x.throughput),
        serverCpuUsPerReq: round(median(rs.map((x) => x.serverCpuUsPerReq)), 2),
        diskBytesPerReq: Math.round(median(rs.map((x) => x.diskBytesPerReq))),
        errors: rs.reduce((a, x) => a + x.errors, 0),
        ...(firstError ? { firstError } : {}),
        ...(missRatios.length ? { missRatio: round(median(missRatios), 4) } : {}),
        otherCpuPct: med(rs, (x) => x.otherCpuPct),
        maxOtherCpuPct: Math.max(...rs.map((x) => x.otherCpuPct)),
      });
    }
  return { runs, merged };
}

/** The merged figures of `contestant` at `shape`. */
export function mergedOf(c: Comparison, contestant: string, shape: string): Merged {
  const m = c.merged.find((x) => x.contestant === contestant && x.shape === shape);
  if (!m) throw new Error(`no figures for ${contestant} at ${shape}`);
  return m;
}

/** Median over rounds of get(a's run) / get(b's run), pairing the runs of a round. */
export function ratioOf(c: Comparison, a: string, b: string, shape: string, get: (r: Run) => number): number {
  const ratios: number[] = [];
  for (const ra of c.runs) {
    if (ra.contestant !== a || ra.shape !== shape) continue;
    const rb = c.runs.find((x) => x.contestant === b && x.shape === shape && x.round === ra.round);
    if (rb && get(rb) > 0) ratios.push(get(ra) / get(rb));
  }
  return round(median(ratios), 3);
}

/** Median over rounds of a's throughput / b's throughput. */
export const throughputRatio = (c: Comparison, a: string, b: string, shape: string): number =>
  ratioOf(c, a, b, shape, (r) => r.throughput);

/** Median over rounds of a's p99 / b's p99. */
export const p99Ratio = (c: Comparison, a: string, b: string, shape: string): number =>
  ratioOf(c, a, b, shape, (r) => r.latencyUs.p99);

function med(rs: readonly Run[], get: (r: Run) => number): number {
  return round(median(rs.map(get)), 1);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
