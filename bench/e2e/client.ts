/**
 * Issue 15: what an inference service gets from the client. The typed, raw and dense clients
 * against one server, beside the two floors, in alternating rounds of one run:
 *
 * - GetFeatures of all 20 features at 1×1, 1×32 and 8×8 (K connections × D in flight):
 *   TCP floor (raw), TCP raw / typed / dense; Connect raw / typed / dense and the Bun.serve
 *   floor (raw) at 1×1 and 8×8;
 * - BatchGet of 100 entities × 20 features at 1×1 and 8×8: TCP raw / typed / dense, Connect
 *   raw / typed / dense at 8×8.
 *
 * Dense = `client.getDense(ids, spec, { out })` into a batch reused per slot (all 20 features,
 * 51 floats per row; strings as category codes); over Connect, `decodeDenseBatchGet` on the
 * fetched bytes. Each round runs every row; odd rounds in reverse order, so drift of a shared
 * machine hits every row alike. Per row: the median req/s of the rounds, latency percentiles of
 * all rounds' answers merged, server CPU per request (the server's /proc utime + stime).
 *
 * ```
 * bun bench/e2e/client.ts                 N = 200,000, 3 rounds of 2 s cells (~6 min)
 * bun bench/e2e/client.ts --quick         N = 20,000, one round of 300 ms cells (< 1 min)
 * bun bench/e2e/client.ts --rounds 5 --duration 3000 -n 1000000
 * bun bench/e2e/client.ts --render bench/results/client.json   re-render the md from a JSON
 * ```
 *
 * Writes bench/results/client.md and client.json (client-quick.* with --quick). Servers pinned
 * to CPU 1, this process (the load generator) to CPU 0, as run.ts does.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { resolve } from "node:path";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { Method } from "../../src/codec/frame.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { Histogram } from "./hist.ts";
import { closedLoop } from "./load.ts";
import {
  cpuSeconds,
  freePort,
  hasTaskset,
  machineBusySeconds,
  type Proc,
  pinProcess,
  selfCpuSeconds,
  spawnProc,
  waitForPort,
} from "./procs.ts";
import {
  fmtRate,
  fmtUs,
  type Latency,
  latencyOf,
  round,
  type Target,
  table,
  targetsTable,
} from "./report.ts";
import {
  connectSystem,
  type Driver,
  loadOurs,
  type Mode,
  type OpName,
  type System,
  type SystemName,
  startHttpFloor,
  startOurServer,
  tcpSystem,
} from "./systems.ts";
import { entityId, keyStream } from "./workload.ts";

const ROOT = resolve(import.meta.dir, "../..");
const STREAM = 1 << 20;
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Options {
  quick: boolean;
  entities: number;
  warmupMs: number;
  durationMs: number;
  rounds: number;
  outDir: string;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const o: Options = {
    quick,
    entities: quick ? 20_000 : 200_000,
    warmupMs: quick ? 100 : 500,
    durationMs: quick ? 300 : 2000,
    rounds: quick ? 1 : 3,
    outDir: "bench/results",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = Number(argv[i + 1]);
    if (a === "--quick") continue;
    if (a === "-n" || a === "--entities") o.entities = v;
    else if (a === "--duration") o.durationMs = v;
    else if (a === "--warmup") o.warmupMs = v;
    else if (a === "--rounds") o.rounds = v;
    else if (a === "--out") o.outDir = argv[i + 1]!;
    else if (a === "--render") {
      // Re-renders the md of a client.json (presentation changes; no measuring).
      const path = resolve(argv[i + 1] ?? "bench/results/client.json");
      writeFileSync(
        path.replace(/\.json$/, ".md"),
        markdown(JSON.parse(readFileSync(path, "utf8")) as Results),
      );
      process.exit(0);
    } else if (a === "--help" || a === "-h") {
      console.log(readFileSync(import.meta.path, "utf8").split("*/")[0]);
      process.exit(0);
    } else throw new Error(`unknown flag ${a} (see --help)`);
    if (a !== "--out" && !(v > 0)) throw new Error(`${a} needs a positive number`);
    i++;
  }
  return o;
}

/** One row: a system, a client mode, an operation, a shape. */
interface Row {
  system: SystemName;
  mode: Mode;
  op: OpName;
  conns: number;
  depth: number;
}

function rows(): Row[] {
  const out: Row[] = [];
  const add = (system: SystemName, mode: Mode, op: OpName, conns: number, depth: number) =>
    out.push({ system, mode, op, conns, depth });
  for (const [k, d] of [
    [1, 1],
    [1, 32],
    [8, 8],
  ] as const) {
    add("floor", "raw", "get_all", k, d);
    for (const m of ["raw", "typed", "dense"] as const) add("tcp", m, "get_all", k, d);
    if (k === 1 && d === 32) continue;
    add("httpfloor", "raw", "get_all", k, d);
    for (const m of ["raw", "typed", "dense"] as const) add("connect", m, "get_all", k, d);
  }
  for (const [k, d] of [
    [1, 1],
    [8, 8],
  ] as const)
    for (const m of ["raw", "typed", "dense"] as const) add("tcp", m, "batch100", k, d);
  for (const m of ["raw", "typed", "dense"] as const) add("connect", m, "batch100", 8, 8);
  return out;
}

const keyOf = (r: Row) => `${r.system}/${r.mode}/${r.op}/${r.conns}x${r.depth}`;

interface RoundFigure {
  round: number;
  throughput: number;
  p50: number;
  p99: number;
  serverCpuUsPerReq: number;
  clientCpuPct: number;
  otherCpuPct: number;
  errors: number;
}

interface Summary extends Row {
  label: string;
  /** Median of the rounds. */
  throughput: number;
  latencyUs: Latency;
  serverCpuUsPerReq: number;
  clientCpuPct: number;
  otherCpuPct: number;
  rounds: RoundFigure[];
}

const LABEL: Record<string, string> = {
  floor: "TCP floor (Bun.listen)",
  tcp: "ours, TCP",
  connect: "ours, Connect",
  httpfloor: "HTTP floor (Bun.serve)",
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const pinned = cpus().length >= 2 && hasTaskset() && pinProcess("0");
  const serverCpus = pinned ? "1" : undefined;
  const pinning = pinned ? "servers pinned to CPU 1, load generator to CPU 0 (taskset)" : "not pinned";
  log(`client bench (issue 15): N=${o.entities}, ${o.rounds} rounds of ${o.durationMs} ms cells; ${pinning}`);
  const N = o.entities;
  const ids: string[] = Array.from({ length: N }, (_, i) => entityId(i));
  const keys = keyStream(N, STREAM, "uniform");
  const procs: Proc[] = [];
  const drivers = new Map<string, Driver>();
  try {
    const ours = await startOurServer(ROOT, "src/main.ts", N, { METRICS_ENABLED: "true" }, serverCpus);
    procs.push(ours.proc);
    const load = await loadOurs(ours, N);
    log(`  loaded ${N} in ${load.seconds.toFixed(1)} s`);
    const answerBytes = await measureAnswerBytes(ours.tcpPort, ids[N >> 1]!);
    const floorPort = freePort();
    const floor = spawnProc({
      name: "floor",
      cmd: [process.execPath, resolve(import.meta.dir, "floor-server.ts")],
      env: { FLOOR_PORT: String(floorPort), FLOOR_BODY_BYTES: String(answerBytes) },
      cpus: serverCpus,
    });
    procs.push(floor);
    await waitForPort(floorPort, floor);
    const httpFloor = await startHttpFloor(answerBytes, serverCpus);
    procs.push(httpFloor.proc);
    const systems = new Map<SystemName, System>([
      ["tcp", tcpSystem("tcp", ours.proc, ours.tcpPort)],
      ["floor", tcpSystem("floor", floor, floorPort)],
      ["connect", connectSystem(ours.proc, ours.httpPort)],
      ["httpfloor", connectSystem(httpFloor.proc, httpFloor.port, "httpfloor")],
    ]);

    const all = rows();
    const figures = new Map<string, RoundFigure[]>();
    const hists = new Map<string, Histogram>();
    let seq = 0;
    for (let r = 0; r < o.rounds; r++) {
      log(`round ${r + 1} of ${o.rounds}`);
      const order = r % 2 === 0 ? all : [...all].reverse();
      for (const row of order) {
        const sys = systems.get(row.system)!;
        const dkey = `${row.system}/${row.conns}`;
        let driver = drivers.get(dkey);
        if (!driver) {
          driver = await sys.open(row.conns);
          drivers.set(dkey, driver);
        }
        const fn = driver.op(row.op, row.mode, { ids, keys });
        if (!fn) throw new Error(`${keyOf(row)}: no op`);
        Bun.gc(true);
        const cpu0 = cpuSeconds(sys.proc.pid);
        const self0 = selfCpuSeconds();
        const busy0 = machineBusySeconds();
        seq += 7_919_113;
        const res = await closedLoop(fn, {
          slots: row.conns * row.depth,
          warmupMs: o.warmupMs,
          durationMs: o.durationMs,
          maxRequests: 10_000_000,
          seqStart: seq,
        });
        const cpu = cpuSeconds(sys.proc.pid) - cpu0;
        const self = selfCpuSeconds() - self0;
        const other = machineBusySeconds() - busy0 - cpu - self;
        const f: RoundFigure = {
          round: r,
          throughput: Math.round(res.throughput),
          p50: round(res.hist.percentile(50) / 1000, 1),
          p99: round(res.hist.percentile(99) / 1000, 1),
          serverCpuUsPerReq: round((cpu * 1e6) / Math.max(1, res.issued), 2),
          clientCpuPct: round((100 * self) / res.wallSeconds, 1),
          otherCpuPct: round(Math.max(0, (100 * other) / res.wallSeconds), 1),
          errors: res.errors,
        };
        if (res.errors > 0) log(`    ${res.errors} errors: ${res.firstError}`);
        const k = keyOf(row);
        figures.set(k, [...(figures.get(k) ?? []), f]);
        const h = hists.get(k) ?? new Histogram();
        h.merge(res.hist);
        hists.set(k, h);
        log(
          `  ${k}: ${f.throughput} req/s, p50 ${f.p50} p99 ${f.p99} us, srv ${f.serverCpuUsPerReq} us/req, ` +
            `gen ${f.clientCpuPct}%, other ${f.otherCpuPct}%`,
        );
      }
    }

    const summaries: Summary[] = all.map((row) => {
      const rs = figures.get(keyOf(row))!;
      return {
        ...row,
        label: `${LABEL[row.system]}${row.system.endsWith("floor") ? "" : ` ${row.mode}`}`,
        throughput: Math.round(median(rs.map((x) => x.throughput))),
        latencyUs: latencyOf(hists.get(keyOf(row))!),
        serverCpuUsPerReq: round(median(rs.map((x) => x.serverCpuUsPerReq)), 2),
        clientCpuPct: round(median(rs.map((x) => x.clientCpuPct)), 1),
        otherCpuPct: round(median(rs.map((x) => x.otherCpuPct)), 1),
        rounds: rs,
      };
    });
    const results = {
      kind: "client",
      date: new Date().toISOString(),
      git: gitCommit(),
      machine: machine(),
      pinning,
      config: { ...o, answerBytes, keyStream: STREAM },
      load,
      rows: summaries,
      targets: targets(summaries),
      totalSeconds: round((performance.now() - started) / 1000, 1),
    };
    const outDir = resolve(ROOT, o.outDir);
    mkdirSync(outDir, { recursive: true });
    const base = o.quick ? "client-quick" : "client";
    const md = markdown(results);
    writeFileSync(resolve(outDir, `${base}.md`), md);
    writeFileSync(resolve(outDir, `${base}.json`), `${JSON.stringify(results, null, 1)}\n`);
    console.log(md);
    log(`wrote ${o.outDir}/${base}.md and ${base}.json in ${results.totalSeconds} s`);
  } finally {
    for (const d of drivers.values()) await d.close().catch(() => {});
    for (const p of procs) await p.stop().catch(() => {});
  }
}

function targets(rs: Summary[]): Target[] {
  const get = (system: SystemName, mode: Mode, op: OpName, k: number, d: number) =>
    rs.find((r) => r.system === system && r.mode === mode && r.op === op && r.conns === k && r.depth === d);
  const t: Target[] = [];
  const dense11 = get("tcp", "dense", "batch100", 1, 1);
  if (dense11)
    t.push({
      name: "dense BatchGet 100×20 p99 at 1×1",
      goal: "< 1 ms",
      measured: fmtUs(dense11.latencyUs.p99),
      ratio: dense11.latencyUs.p99 / 1000,
      met: dense11.latencyUs.p99 < 1000,
    });
  for (const op of ["batch100", "get_all"] as const) {
    const dense = get("tcp", "dense", op, 8, 8);
    const raw = get("tcp", "raw", op, 8, 8);
    if (dense && raw)
      t.push({
        name: `dense ${op === "batch100" ? "BatchGet 100" : "GetFeatures"} throughput at 8×8 vs raw`,
        goal: "≥ 0.8× raw",
        measured: `${fmtRate(dense.throughput)} vs ${fmtRate(raw.throughput)}`,
        ratio: dense.throughput / raw.throughput,
        met: dense.throughput / raw.throughput >= 0.8,
      });
  }
  const typed132 = get("tcp", "typed", "get_all", 1, 32);
  const raw132 = get("tcp", "raw", "get_all", 1, 32);
  if (typed132 && raw132)
    t.push({
      name: "typed GetFeatures throughput at 1×32 vs raw",
      goal: "≥ 0.8× raw",
      measured: `${fmtRate(typed132.throughput)} vs ${fmtRate(raw132.throughput)}`,
      ratio: typed132.throughput / raw132.throughput,
      met: typed132.throughput / raw132.throughput >= 0.8,
    });
  for (const mode of ["typed", "raw"] as const) {
    const c = get("connect", mode, "get_all", 8, 8);
    const tcp = get("tcp", mode, "get_all", 8, 8);
    if (c && tcp)
      t.push({
        name: `TCP vs Connect GetFeatures throughput at 8×8 (${mode})`,
        goal: "TCP ≤ 2× Connect",
        measured: `${fmtRate(tcp.throughput)} vs ${fmtRate(c.throughput)}`,
        ratio: tcp.throughput / c.throughput,
        met: tcp.throughput / c.throughput <= 2,
      });
  }
  const hf = get("httpfloor", "raw", "get_all", 8, 8);
  const craw = get("connect", "raw", "get_all", 8, 8);
  if (hf && craw)
    t.push({
      name: "Connect vs Bun.serve floor at 8×8 (raw)",
      goal: "(the adapter's share)",
      measured: `${fmtRate(craw.throughput)} vs ${fmtRate(hf.throughput)}; ${craw.serverCpuUsPerReq.toFixed(1)} vs ${hf.serverCpuUsPerReq.toFixed(1)} µs server CPU/req`,
      ratio: craw.throughput / hf.throughput,
      met: null,
    });
  return t;
}

type Results = {
  date: string;
  git: string;
  machine: Record<string, string | number>;
  pinning: string;
  config: Options & { answerBytes: number };
  rows: Summary[];
  targets: Target[];
  totalSeconds: number;
};

function markdown(r: Results): string {
  const m = r.machine;
  const out: string[] = [];
  out.push("## Client benchmark (issue 15): typed, raw and dense reads beside the floors");
  out.push("");
  out.push(
    `${r.date.slice(0, 10)} · ${m.cpu} (${m.cores} cores) · ${m.memGiB} GiB · Linux ${m.kernel} · Bun ${m.bun} · ` +
      `N = ${r.config.entities.toLocaleString("en-US")} entities × 20 features (answer ${r.config.answerBytes} B) · ${r.pinning} · ` +
      `${r.config.rounds} alternating round(s) of ${r.config.durationMs} ms cells after ${r.config.warmupMs} ms warm-up · ` +
      `load average at start ${m.loadavg} · total ${Math.round(r.totalSeconds)} s · commit ${r.git}` +
      (r.config.quick ? " · **--quick**" : ""),
  );
  out.push("");
  out.push("### Targets");
  out.push("");
  out.push(targetsTable(r.targets, "target", "measured"));
  out.push("");
  const section = (title: string, op: OpName) => {
    out.push(`### ${title}`);
    out.push("");
    const rows = r.rows
      .filter((x) => x.op === op)
      .map((x) => {
        const raw = r.rows.find(
          (y) =>
            y.op === op &&
            y.system === x.system &&
            y.mode === "raw" &&
            y.conns === x.conns &&
            y.depth === x.depth,
        );
        return [
          x.label,
          `${x.conns}×${x.depth}`,
          fmtRate(x.throughput),
          raw && x.mode !== "raw" ? `${(x.throughput / raw.throughput).toFixed(2)}×` : "",
          fmtUs(x.latencyUs.p50),
          fmtUs(x.latencyUs.p99),
          fmtUs(x.latencyUs.p999),
          x.serverCpuUsPerReq.toFixed(1),
          ((x.clientCpuPct * 1e4) / x.throughput).toFixed(1),
          `${x.clientCpuPct.toFixed(0)}%`,
          `${x.otherCpuPct.toFixed(0)}%`,
          `${Math.min(...x.rounds.map((y) => y.throughput)).toLocaleString("en-US")}–${Math.max(...x.rounds.map((y) => y.throughput)).toLocaleString("en-US")}`,
        ];
      });
    out.push(
      table(
        [
          "system, client",
          "K×D",
          "req/s",
          "vs raw",
          "p50",
          "p99",
          "p99.9",
          "srv µs/req",
          "gen µs/req",
          "gen CPU",
          "bg CPU",
          "rounds' req/s",
        ],
        rows,
        [":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  };
  section("GetFeatures, all 20 features", "get_all");
  section("BatchGet, 100 entities × 20 features", "batch100");
  out.push(
    "req/s: median of the rounds (their range in the last column); percentiles over every answer of every round. " +
      "raw = answer bytes undecoded; typed = `getFeatures`/`batchGet` (`decodeGetFeaturesResponse`/`decodeBatchGetResponse` " +
      "on the Connect body); dense = `getDense` into a per-slot reused batch (Connect: `decodeDenseBatchGet` on the fetched " +
      "bytes), 51 floats per entity. srv µs/req: CPU of the answering process per request; gen µs/req: the load " +
      "generator's CPU per answer (the client's cost: the figure least moved by other load); gen CPU: its share of its core " +
      "(near 100 % = the client is the limit); bg: other processes (noise; above ~25 % the rates are unreliable).",
  );
  out.push("");
  return out.join("\n");
}

function machine(): Record<string, string | number> {
  const uname = Bun.spawnSync(["uname", "-r"]).stdout.toString().trim();
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: uname,
    bun: Bun.version,
    loadavg: load,
  };
}

function gitCommit(): string {
  const head = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT }).stdout.toString().trim();
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--", "src"], { cwd: ROOT })
    .stdout.toString()
    .split("\n")
    .filter(Boolean).length;
  return dirty ? `${head} + ${dirty} uncommitted src files` : head;
}

/** Body size of a full GetFeatures answer (both floors answer with this size). */
async function measureAnswerBytes(port: number, id: string): Promise<number> {
  const c = await FeatureStoreClient.connect({ servers: [`127.0.0.1:${port}`], connectionsPerServer: 1 });
  try {
    const w = new ProtoWriter(256);
    w.stringField(1, id);
    return (await c.call(Method.GetFeatures, w.finish())).length;
  } finally {
    await c.close();
  }
}

await main();
