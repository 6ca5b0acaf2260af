/**
 * Issue 11: our native gRPC port against a stock `@grpc/grpc-js` server (`grpc-stock-server.ts`)
 * holding the same entities, GetFeatures through the same clients, at 1×1, 1×32 and 8×8, in
 * alternating rounds (round r runs the rows in order, round r+1 in reverse, so drift of a shared
 * machine hits every row alike). Our TCP and Connect paths run in the same rounds for the gap.
 *
 * Rows (system, client mode):
 * - `grpc`/`stock` typed: grpc-js with proto-loader stubs, answers decoded into objects (what a user runs);
 * - `grpc`/`stock` raw: grpc-js with identity serializers (the client's decode taken out);
 * - `grpc-h2`/`stock-h2` raw: a bare node:http2 client (grpc-js taken out: the servers' own difference);
 * - `tcp` typed and raw, `connect` typed: our other transports, same server process.
 *
 * Measurement only: the figures go back to run.ts, which writes them; grpc-report.ts prints.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Histogram } from "./hist.ts";
import type { OpFn } from "./load.ts";
import type { Proc } from "./procs.ts";
import { type Cell, latencyOf, round, type Target } from "./report.ts";
import {
  connectSystem,
  type Driver,
  grpcSystem,
  type LoadResult,
  loadGrpc,
  loadOurs,
  type Mode,
  type OpName,
  type System,
  type SystemName,
  sameAnswers,
  startOurServer,
  startStockGrpc,
  tcpSystem,
} from "./systems.ts";

/** The rows of one round, in order; odd rounds run them in reverse. Ours and stock alternate. */
export const GRPC_ROWS: [SystemName, Mode][] = [
  ["grpc", "typed"],
  ["stock", "typed"],
  ["grpc", "raw"],
  ["stock", "raw"],
  ["grpc-h2", "raw"],
  ["stock-h2", "raw"],
  ["tcp", "typed"],
  ["tcp", "raw"],
  ["connect", "typed"],
];

/** The shapes of issue 11: connections × in flight on each. */
export const GRPC_SHAPES: [number, number][] = [
  [1, 1],
  [1, 32],
  [8, 8],
];

/** What the comparison needs from the harness (run.ts). */
export interface GrpcContext {
  root: string;
  serverEntry: string;
  ids: string[];
  /** The uniform key stream. */
  keys: Int32Array;
  serverCpus: string | undefined;
  shapes: [number, number][];
  ops: OpName[];
  rounds: number;
  durationMs: number;
  /** A round during which other processes used more than this (% of one core) is left out of the summary, if a quieter one exists. */
  noisyPct: number;
  /** Every process started here is added, so the harness stops it also on errors. */
  procs: Proc[];
  /** One closed-loop cell (with the harness's retry on a noisy machine) and its histogram. */
  measure(fn: OpFn, pid: number, conns: number, depth: number): Promise<{ cell: Cell; hist: Histogram }>;
  log(msg: string): void;
}

/** One cell of one round. */
export interface GrpcRun extends Cell {
  round: number;
}

/**
 * A row at one shape over its quiet rounds (background CPU within `noisyPct`; every round when
 * none was quiet): median throughput, latency of those rounds' answers merged.
 */
export interface GrpcSummary {
  system: SystemName;
  mode: Mode;
  op: OpName;
  shape: string;
  rounds: number;
  /** Rounds summarized (the quiet ones). */
  roundsUsed: number;
  /** Median over the rounds used, and the lowest and highest of them. */
  throughput: number;
  throughputMin: number;
  throughputMax: number;
  /** From the rounds' histograms merged, µs. */
  latencyUs: ReturnType<typeof latencyOf>;
  /** Medians over rounds. */
  serverCpuUsPerReq: number;
  serverCpuPct: number;
  clientCpuPct: number;
  otherCpuPct: number;
  errors: number;
}

export interface GrpcMeasured {
  load: { featurestore: LoadResult; stock: LoadResult };
  /** GetFeatures answer message size, bytes: ours, stock (the same 20 features). */
  answerBytes: { ours: number; stock: number };
  versions: Record<string, string>;
  runs: GrpcRun[];
  summary: GrpcSummary[];
  targets: Target[];
}

function pkgVersion(root: string, pkg: string): string {
  try {
    return (
      JSON.parse(readFileSync(join(root, "node_modules", pkg, "package.json"), "utf8")) as { version: string }
    ).version;
  } catch {
    return "unknown";
  }
}

/** Starts both servers, loads them alike, checks they answer alike, then runs the rounds. */
export async function grpcComparison(ctx: GrpcContext): Promise<GrpcMeasured> {
  const n = ctx.ids.length;
  const { log } = ctx;
  // Our server with its default durable store, in a directory of its own (startOurServer's);
  // the reads below are all hot-tier hits.
  const drivers: Driver[] = [];
  try {
    log(`starting our server and loading ${n} entities over TCP...`);
    const ours = await startOurServer(
      ctx.root,
      ctx.serverEntry,
      n,
      { METRICS_ENABLED: "true" },
      ctx.serverCpus,
    );
    ctx.procs.push(ours.proc);
    const loadOursResult = await loadOurs(ours, n);
    log(
      `  loaded in ${loadOursResult.seconds.toFixed(1)} s, ${Math.round(loadOursResult.bytesPerEntity)} B/entity RSS`,
    );
    log(`starting the stock grpc-js server and loading ${n} entities by BatchSet over gRPC...`);
    const stock = await startStockGrpc(ctx.serverCpus);
    ctx.procs.push(stock.proc);
    const loadStock = await loadGrpc(stock.proc, stock.port, n);
    log(
      `  loaded in ${loadStock.seconds.toFixed(1)} s, ${Math.round(loadStock.bytesPerEntity)} B/entity RSS`,
    );
    const probe = [0, n >> 1, n - 1].map((i) => ctx.ids[i]!);
    const [oursBytes, stockBytes] = await sameAnswers(ours.grpcPort, stock.port, probe);
    log(
      `  both servers answer ${probe.join(", ")} with the same features (${oursBytes} vs ${stockBytes} bytes)`,
    );

    const systems = new Map<SystemName, System>([
      ["grpc", grpcSystem("grpc", ours.proc, ours.grpcPort)],
      ["grpc-h2", grpcSystem("grpc-h2", ours.proc, ours.grpcPort)],
      ["stock", grpcSystem("stock", stock.proc, stock.port)],
      ["stock-h2", grpcSystem("stock-h2", stock.proc, stock.port)],
      ["tcp", tcpSystem("tcp", ours.proc, ours.tcpPort)],
      ["connect", connectSystem(ours.proc, ours.httpPort)],
    ]);
    const driverCache = new Map<string, Driver>();
    const driverFor = async (sys: System, conns: number): Promise<Driver> => {
      const key = `${sys.name}/${conns}`;
      let d = driverCache.get(key);
      if (!d) {
        d = await sys.open(conns);
        driverCache.set(key, d);
        drivers.push(d);
      }
      return d;
    };

    const runs: GrpcRun[] = [];
    const hists = new WeakMap<GrpcRun, Histogram>();
    for (let r = 0; r < ctx.rounds; r++) {
      const rows = r % 2 === 0 ? GRPC_ROWS : [...GRPC_ROWS].reverse();
      log(`round ${r + 1} of ${ctx.rounds}${r % 2 ? " (rows in reverse)" : ""}:`);
      for (const op of ctx.ops)
        for (const [k, d] of ctx.shapes)
          for (const [name, mode] of rows) {
            const sys = systems.get(name)!;
            const fn = (await driverFor(sys, k)).op(op, mode, { ids: ctx.ids, keys: ctx.keys });
            if (!fn) continue;
            const { cell, hist } = await ctx.measure(fn, sys.proc.pid, k, d);
            Object.assign(cell, { system: name, mode, op, dist: "uniform" });
            const run: GrpcRun = { ...cell, round: r };
            runs.push(run);
            hists.set(run, hist);
            log(
              `  ${name}/${mode} ${op} ${k}x${d}: ${cell.throughput} req/s, p50 ${cell.latencyUs.p50} p99 ${cell.latencyUs.p99} ` +
                `p99.9 ${cell.latencyUs.p999} us, srv ${cell.serverCpuUsPerReq} us/req (${cell.serverCpuPct}%), ` +
                `gen ${cell.clientCpuPct}%, other ${cell.otherCpuPct}%${cell.errors ? `, ${cell.errors} errors: ${cell.firstError}` : ""}`,
            );
          }
    }
    const summary = summarize(runs, hists, ctx.noisyPct);
    return {
      load: { featurestore: loadOursResult, stock: loadStock },
      answerBytes: { ours: oursBytes, stock: stockBytes },
      versions: {
        "@grpc/grpc-js": pkgVersion(ctx.root, "@grpc/grpc-js"),
        "@grpc/proto-loader": pkgVersion(ctx.root, "@grpc/proto-loader"),
        "protobufjs (proto-loader's)": pkgVersion(ctx.root, "@grpc/proto-loader/node_modules/protobufjs"),
      },
      runs,
      summary,
      targets: grpcTargets(summary),
    };
  } finally {
    for (const d of drivers) await d.close().catch(() => {});
    for (const p of ctx.procs.splice(0)) await p.stop().catch(() => {});
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function summarize(runs: GrpcRun[], hists: WeakMap<GrpcRun, Histogram>, noisyPct: number): GrpcSummary[] {
  const out: GrpcSummary[] = [];
  const keyOf = (c: GrpcRun) => `${c.system}/${c.mode}/${c.op}/${c.conns}x${c.depth}`;
  for (const key of new Set(runs.map(keyOf))) {
    const [system, mode, op, shape] = key.split("/") as [SystemName, Mode, OpName, string];
    const all = runs.filter((c) => keyOf(c) === key);
    const quiet = all.filter((c) => c.otherCpuPct <= noisyPct);
    const rs = quiet.length > 0 ? quiet : all;
    const hist = new Histogram();
    for (const c of rs) hist.merge(hists.get(c)!);
    const tp = rs.map((c) => c.throughput);
    out.push({
      system,
      mode,
      op,
      shape,
      rounds: all.length,
      roundsUsed: rs.length,
      throughput: Math.round(median(tp)),
      throughputMin: Math.min(...tp),
      throughputMax: Math.max(...tp),
      latencyUs: latencyOf(hist),
      serverCpuUsPerReq: round(median(rs.map((c) => c.serverCpuUsPerReq)), 1),
      serverCpuPct: round(median(rs.map((c) => c.serverCpuPct)), 1),
      clientCpuPct: round(median(rs.map((c) => c.clientCpuPct)), 1),
      otherCpuPct: round(median(rs.map((c) => c.otherCpuPct)), 1),
      errors: rs.reduce((a, c) => a + c.errors, 0),
    });
  }
  return out;
}

/** Issue 11's target at 8×8 (≥ 2× the stock server's throughput at a lower p99), for each client. */
function grpcTargets(s: GrpcSummary[]): Target[] {
  const t: Target[] = [];
  const get = (system: SystemName, mode: Mode, shape: string) =>
    s.find((x) => x.system === system && x.mode === mode && x.op === "get_all" && x.shape === shape);
  const us = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(0)} µs`);
  const pairs: [SystemName, SystemName, Mode, string][] = [
    ["grpc", "stock", "typed", "grpc-js + proto-loader stubs (what users run)"],
    ["grpc", "stock", "raw", "grpc-js, identity serializers"],
    ["grpc-h2", "stock-h2", "raw", "bare node:http2 client (server-bound)"],
  ];
  for (const shape of ["8x8", "1x32"])
    for (const [a, b, mode, client] of pairs) {
      const ours = get(a, mode, shape);
      const stock = get(b, mode, shape);
      if (!ours || !stock) continue;
      const ratio = ours.throughput / stock.throughput;
      const lowerP99 = ours.latencyUs.p99 < stock.latencyUs.p99;
      t.push({
        name: `GetFeatures at ${shape.replace("x", "×")}, ${client}`,
        goal: "≥ 2× stock throughput, lower p99",
        measured: `${ours.throughput}/s (p99 ${us(ours.latencyUs.p99)}) vs ${stock.throughput}/s (p99 ${us(stock.latencyUs.p99)})`,
        ratio,
        met: shape === "8x8" ? ratio >= 2 && lowerP99 : null,
        ...(shape === "8x8" ? {} : { note: "issue 11 sets the target at 8×8; shown for reference" }),
      });
    }
  // Server CPU per request: the servers' own cost, whatever the client could drive.
  for (const [a, b, mode, client] of pairs) {
    const ours = get(a, mode, "8x8");
    const stock = get(b, mode, "8x8");
    if (!ours || !stock) continue;
    t.push({
      name: `Server CPU per GetFeatures at 8×8, ${client}: stock / ours`,
      goal: "–",
      measured: `${stock.serverCpuUsPerReq} µs vs ${ours.serverCpuUsPerReq} µs`,
      ratio: stock.serverCpuUsPerReq / ours.serverCpuUsPerReq,
      met: null,
    });
  }
  return t;
}

/** Issue 11's data set: 100k entities of 20 features. */
export const GRPC_DEFAULT_ENTITIES = 100_000;
