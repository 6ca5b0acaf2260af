/**
 * Alternated side-by-side rounds where one side is several processes (our server and the
 * redis-server behind it; two servers and one Redis): the e2e load loops (`closedLoop`,
 * `openLoop`), histograms and /proc readers, with CPU time summed per role over the processes
 * of a side, the other processes' CPU as noise, and the backend loads of each cell for the
 * measured near-cache hit ratio. bench/durable/compare.ts does the same for one process per
 * side; its types and `median` are reused.
 */
import type { CellTiming, Shape } from "../durable/compare.ts";
import { median, shapeName } from "../durable/compare.ts";
import { Histogram } from "../e2e/hist.ts";
import { closedLoop, type LoopResult, type OpFn, openLoop } from "../e2e/load.ts";
import { cpuSeconds, machineBusySeconds, selfCpuSeconds } from "../e2e/procs.ts";
import { type Latency, latencyOf, round } from "../e2e/report.ts";

/** A process whose CPU time counts for a side: `role` groups them ("server", "redis"). */
export interface Member {
  readonly role: string;
  readonly pid: number;
}

/** One side of a comparison. */
export interface Side {
  readonly name: string;
  readonly members: readonly Member[];
  /** The op of a loop over `conns` connections (opened once per side and connection count). */
  op(conns: number): Promise<OpFn>;
  /**
   * Backend reads so far (Redis HGETALL calls): a cell's delta over the requests it sent is
   * its near-cache miss ratio. Absent for a side that has no near-cache.
   */
  loads?: () => Promise<number>;
}

/** One cell: a side at one shape (closed loop) or at one rate (open loop) in one round. */
export interface Run {
  round: number;
  side: string;
  /** `KxD` (closed loop) or `open KxR` (open loop over K connections at R req/s). */
  shape: string;
  requests: number;
  errors: number;
  firstError?: string;
  throughput: number;
  latencyUs: Latency;
  /** CPU per request (user + system, all threads) of each role's processes, µs. */
  cpuUsPerReq: Record<string, number>;
  /** CPU of each role's processes, % of one core. */
  cpuPct: Record<string, number>;
  /** The load generator (this process), % of one core. */
  genCpuPct: number;
  /** Every other process on the machine, % of one core (noise; also the kernel's softirq time). */
  otherCpuPct: number;
  /** 1 - backend loads / requests sent (warm-up included), when the side reports loads. */
  hitRatio?: number;
  /** Open loop: offered rate, and true when the generator could not keep the schedule. */
  offered?: number;
  truncated?: boolean;
  maxSendLagMs?: number;
  attempts: number;
}

/** A side's rounds at one shape, merged. */
export interface Merged {
  side: string;
  shape: string;
  rounds: number;
  /** Median of the rounds' throughputs, req/s; `throughputs` has each. */
  throughput: number;
  throughputs: number[];
  /** Each percentile the median of the rounds' values, µs. */
  latencyUs: Latency;
  /** Percentiles of every measured answer of every round in one histogram, µs. */
  pooledLatencyUs: Latency;
  p99s: number[];
  cpuUsPerReq: Record<string, number>;
  genCpuPct: number;
  hitRatio?: number;
  hitRatios?: number[];
  errors: number;
  firstError?: string;
  otherCpuPct: number;
  maxOtherCpuPct: number;
}

export interface Comparison {
  runs: Run[];
  merged: Merged[];
}

/** CPU seconds of every member, summed per role. */
function roleCpu(members: readonly Member[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of members) out[m.role] = (out[m.role] ?? 0) + cpuSeconds(m.pid);
  return out;
}

function membersCpu(members: readonly Member[]): number {
  let s = 0;
  for (const m of members) s += cpuSeconds(m.pid);
  return s;
}

/** CPU used by processes outside `members` and this one over the next `ms`, % of one core. */
async function otherCpuPct(members: readonly Member[], ms: number): Promise<number> {
  const busy0 = machineBusySeconds();
  const mine0 = membersCpu(members);
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  await Bun.sleep(ms);
  const other = machineBusySeconds() - busy0 - (membersCpu(members) - mine0) - (selfCpuSeconds() - self0);
  return (100 * other) / ((performance.now() - t0) / 1000);
}

let seqBase = 0;
/** A fresh start in the key stream for each cell. */
function nextSeq(): number {
  seqBase += 7_919_113;
  return seqBase;
}

type Loop = (
  fn: OpFn,
) => Promise<LoopResult & { offered?: number; truncated?: boolean; maxSendLagMs?: number }>;

/** Runs one cell and reads every counter around it. */
async function measure(
  side: Side,
  fn: OpFn,
  loop: Loop,
): Promise<{ run: Omit<Run, "round" | "side" | "shape" | "attempts">; hist: Histogram }> {
  Bun.gc(true);
  const loads0 = side.loads ? await side.loads() : 0;
  const cpu0 = roleCpu(side.members);
  const self0 = selfCpuSeconds();
  const busy0 = machineBusySeconds();
  const r = await loop(fn);
  const cpu1 = roleCpu(side.members);
  const self = selfCpuSeconds() - self0;
  const busy = machineBusySeconds() - busy0;
  const loads = side.loads ? (await side.loads()) - loads0 : Number.NaN;
  const cpuUsPerReq: Record<string, number> = {};
  const cpuPct: Record<string, number> = {};
  let mine = 0;
  for (const role in cpu1) {
    const s = cpu1[role]! - cpu0[role]!;
    mine += s;
    cpuUsPerReq[role] = round((s * 1e6) / Math.max(1, r.issued), 2);
    cpuPct[role] = round((100 * s) / r.wallSeconds, 1);
  }
  return {
    hist: r.hist,
    run: {
      requests: r.requests,
      errors: r.errors,
      ...(r.firstError ? { firstError: r.firstError } : {}),
      throughput: Math.round(r.throughput),
      latencyUs: latencyOf(r.hist),
      cpuUsPerReq,
      cpuPct,
      genCpuPct: round((100 * self) / r.wallSeconds, 1),
      otherCpuPct: round(Math.max(0, (100 * (busy - mine - self)) / r.wallSeconds), 1),
      ...(side.loads ? { hitRatio: round(1 - loads / Math.max(1, r.issued), 4) } : {}),
      ...(r.offered !== undefined
        ? { offered: r.offered, truncated: r.truncated ?? false, maxSendLagMs: round(r.maxSendLagMs ?? 0, 1) }
        : {}),
    },
  };
}

/** A cell of a round: a closed-loop shape, or an open loop at a rate over K connections. */
export type CellSpec = { kind: "closed"; shape: Shape } | { kind: "open"; conns: number; rate: number };

const specName = (c: CellSpec): string =>
  c.kind === "closed" ? shapeName(c.shape) : `open ${c.conns}x${Math.round(c.rate)}/s`;

/**
 * Runs `rounds` rounds; in each, every cell spec, and at each every side (the order of the
 * sides reversed on odd rounds, so drift of the machine hits both alike). A cell during which
 * other processes used more than `timing.noisyPct` of a core waits for a quieter moment first
 * and is run again (the quietest attempt kept), within the budgets of `timing`.
 */
export async function alternate(
  sides: readonly Side[],
  specs: readonly CellSpec[],
  rounds: number,
  timing: CellTiming,
  log: (line: string) => void,
): Promise<Comparison> {
  const runs: Run[] = [];
  let budget = timing.retryBudgetS;
  let waitBudget = timing.quietWaitS;
  const quiet = async (members: readonly Member[]): Promise<void> => {
    let said = false;
    while (waitBudget > 0) {
      const t0 = performance.now();
      const other = await otherCpuPct(members, 500);
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
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const spec of specs)
      for (const side of order) {
        const conns = spec.kind === "closed" ? spec.shape[0] : spec.conns;
        const opKey = `${side.name}/${conns}`;
        let fn = ops.get(opKey);
        if (fn === undefined) {
          fn = await side.op(conns);
          ops.set(opKey, fn);
        }
        const loop: Loop =
          spec.kind === "closed"
            ? (f) =>
                closedLoop(f, {
                  slots: spec.shape[0] * spec.shape[1],
                  warmupMs: timing.warmupMs,
                  durationMs: timing.durationMs,
                  maxRequests: timing.maxRequests,
                  seqStart: nextSeq(),
                })
            : (f) => {
                const base = nextSeq();
                return openLoop((seq, slot) => f(base + seq, slot), {
                  rate: spec.rate,
                  slots: spec.conns,
                  warmupMs: timing.warmupMs,
                  durationMs: timing.durationMs,
                  maxOutstanding: 1024,
                });
              };
        await quiet(side.members);
        let best = await measure(side, fn, loop);
        let attempts = 1;
        while (best.run.otherCpuPct > timing.noisyPct && attempts <= timing.noisyRetries && budget > 0) {
          log(`    (other processes used ${best.run.otherCpuPct}% of a core: running it again)`);
          const t0 = performance.now();
          await quiet(side.members);
          const again = await measure(side, fn, loop);
          budget -= (performance.now() - t0) / 1000;
          attempts++;
          if (again.run.otherCpuPct < best.run.otherCpuPct) best = again;
        }
        const shape = specName(spec);
        const run: Run = { round: r, side: side.name, shape, ...best.run, attempts };
        runs.push(run);
        const key = `${side.name}/${shape}`;
        let h = hists.get(key);
        if (h === undefined) {
          h = new Histogram();
          hists.set(key, h);
        }
        h.merge(best.hist);
        const cpu = Object.entries(run.cpuUsPerReq)
          .map(([role, us]) => `${role} ${us}`)
          .join(", ");
        log(
          `  round ${r} ${side.name} ${shape}: ${run.throughput} req/s, p50 ${run.latencyUs.p50} ` +
            `p99 ${run.latencyUs.p99} p99.9 ${run.latencyUs.p999} µs, µs/req ${cpu}, gen ${run.genCpuPct}%` +
            `${run.hitRatio !== undefined ? `, hit ${(run.hitRatio * 100).toFixed(1)}%` : ""}` +
            `${run.truncated ? ", could not keep the rate" : ""}` +
            `, other ${run.otherCpuPct}%${run.errors ? `, ${run.errors} errors: ${run.firstError}` : ""}`,
        );
      }
  }
  return { runs, merged: mergeRuns(runs, sides, specs.map(specName), hists) };
}

function mergeRuns(
  runs: readonly Run[],
  sides: readonly Side[],
  shapes: readonly string[],
  hists: Map<string, Histogram>,
): Merged[] {
  const merged: Merged[] = [];
  for (const shape of shapes)
    for (const side of sides) {
      const rs = runs.filter((x) => x.side === side.name && x.shape === shape);
      if (rs.length === 0) continue;
      const med = (get: (r: Run) => number) => round(median(rs.map(get)), 1);
      const roles = Object.keys(rs[0]!.cpuUsPerReq);
      const hitRatios = rs.map((x) => x.hitRatio).filter((x): x is number => x !== undefined);
      const firstError = rs.find((x) => x.firstError)?.firstError;
      merged.push({
        side: side.name,
        shape,
        rounds: rs.length,
        throughput: Math.round(median(rs.map((x) => x.throughput))),
        throughputs: rs.map((x) => x.throughput),
        latencyUs: {
          p50: med((x) => x.latencyUs.p50),
          p90: med((x) => x.latencyUs.p90),
          p99: med((x) => x.latencyUs.p99),
          p999: med((x) => x.latencyUs.p999),
          max: med((x) => x.latencyUs.max),
          mean: med((x) => x.latencyUs.mean),
        },
        pooledLatencyUs: latencyOf(hists.get(`${side.name}/${shape}`)!),
        p99s: rs.map((x) => x.latencyUs.p99),
        cpuUsPerReq: Object.fromEntries(
          roles.map((role) => [role, round(median(rs.map((x) => x.cpuUsPerReq[role]!)), 2)]),
        ),
        genCpuPct: med((x) => x.genCpuPct),
        ...(hitRatios.length ? { hitRatio: round(median(hitRatios), 4), hitRatios } : {}),
        errors: rs.reduce((a, x) => a + x.errors, 0),
        ...(firstError ? { firstError } : {}),
        otherCpuPct: med((x) => x.otherCpuPct),
        maxOtherCpuPct: Math.max(...rs.map((x) => x.otherCpuPct)),
      });
    }
  return merged;
}

/** The merged figures of `side` at `shape`, or undefined. */
export function mergedOf(c: Comparison | null, side: string, shape: string): Merged | undefined {
  return c?.merged.find((x) => x.side === side && x.shape === shape);
}

/** Median over rounds of get(a's run) / get(b's run), pairing the runs of a round. */
export function ratioOf(c: Comparison, a: string, b: string, shape: string, get: (r: Run) => number): number {
  const ratios: number[] = [];
  for (const ra of c.runs) {
    if (ra.side !== a || ra.shape !== shape) continue;
    const rb = c.runs.find((x) => x.side === b && x.shape === shape && x.round === ra.round);
    if (rb && get(rb) > 0) ratios.push(get(ra) / get(rb));
  }
  return round(median(ratios), 3);
}
