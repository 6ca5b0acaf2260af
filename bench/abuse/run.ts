/**
 * The abuse canary benchmark (issue 8): while one abuser at a time sends what a careless or
 * hostile client can send, a well-behaved canary measures what everyone else gets. Not a test:
 * it measures and reports, and keeps going whatever the server does.
 *
 * ```
 * bun run bench:abuse                               every class (< 3 minutes)
 * bun run bench:abuse -- --only slowloris_200x4mib,never_reads
 * bun run bench:abuse -- --window 3000 --idle 4000 --period-us 1000 --no-pin --keep-logs
 * bun run bench:abuse -- --env STORE=memory --env DURABILITY=async     server settings
 * bun run bench:abuse -- --render bench/results/abuse.json   re-render the markdown from a JSON
 * ```
 *
 * Per class: a fresh server (`bun src/main.ts`, default settings, its own empty DATA_DIR,
 * pinned to CPU 0) is loaded;
 * the canary (canary.ts) and the abuser (abuser.ts, niced) start on CPU 1 and prepare; both get
 * "go"; the window runs; the server's RSS is sampled every RSS_SAMPLE_MS and its log lines are
 * counted; then both children are killed, a new connection's Ping measures recovery, and the
 * server is stopped (or found dead). Writes bench/results/abuse.json and abuse.md.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { Method } from "../../src/codec/frame.ts";
import {
  cpuSeconds,
  freePort,
  hasTaskset,
  machineBusySeconds,
  type Proc,
  pinProcess,
  rssBytes,
  selfCpuSeconds,
  spawnProc,
  waitForPort,
} from "../e2e/procs.ts";
import { loadOurs } from "../e2e/systems.ts";
import { Child } from "./child.ts";
import { type AbuseClass, BIG_BYTES, BIG_ENTITY, BIG_FEATURE, CLASSES, ENTITIES, LIMITS } from "./classes.ts";
import { FrameConn, frame } from "./frames.ts";
import { markdown, type PhaseResult, type Results } from "./report.ts";

const ROOT = resolve(import.meta.dir, "../..");
const TMP = resolve(ROOT, "bench/results/tmp/abuse");
const SERVER_CPU = "0";
const CLIENT_CPU = "1";
/** Niceness of the abusers: when an abuser and the canary both want CPU 1, the canary gets it. */
const ABUSER_NICE = 10;
const RSS_SAMPLE_MS = 50;
/** Canary requests before "ready" (not recorded): warms the server's JIT and the connection. */
const CANARY_WARMUP_MS = 1000;
/** After a class, a new connection's Ping must be answered within this, or the server counts as hung. */
const RECOVERY_BOUND_MS = 3000;
/** The whole run stops starting classes past this. */
const BUDGET_MS = 170_000;
/** What one class costs beyond its window (start, load, children, recovery, stop), for the budget. */
const PHASE_OVERHEAD_MS = 4000;
/**
 * Before a class, wait (at most QUIET_WAIT_MS, in QUIET_SAMPLE_MS samples) for other processes
 * to use less than QUIET_PCT of a core: the machine may be shared, and a canary starved of CPU
 * measures its neighbours instead of the server.
 */
const QUIET_PCT = 50;
const QUIET_SAMPLE_MS = 500;
const QUIET_WAIT_MS = 3000;

interface Options {
  only: string[] | null;
  windowMs: number;
  idleMs: number;
  periodUs: number;
  pin: boolean;
  keepLogs: boolean;
  out: string;
  /** Server settings beyond the defaults (--env KEY=VALUE). */
  env: Record<string, string>;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    only: null,
    windowMs: 4000,
    idleMs: 5000,
    periodUs: 1000,
    pin: true,
    keepLogs: false,
    out: resolve(ROOT, "bench/results/abuse"),
    env: {},
  };
  const num = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`${name} ${JSON.stringify(v)}: expected an integer from ${min} to ${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--only") {
      o.only = (argv[++i] ?? "").split(",").filter(Boolean);
      const unknown = o.only.filter((n) => n !== "idle" && !CLASSES.some((c) => c.name === n));
      if (unknown.length)
        throw new Error(
          `--only: unknown ${unknown.join(", ")}; classes: ${CLASSES.map((c) => c.name).join(", ")}`,
        );
    } else if (a === "--window") o.windowMs = num(a, argv[++i], 500, 30_000);
    else if (a === "--idle") o.idleMs = num(a, argv[++i], 500, 30_000);
    else if (a === "--period-us") o.periodUs = num(a, argv[++i], 100, 100_000);
    else if (a === "--no-pin") o.pin = false;
    else if (a === "--keep-logs") o.keepLogs = true;
    else if (a === "--out") o.out = resolve(argv[++i] ?? o.out);
    else if (a === "--env") {
      const kv = argv[++i] ?? "";
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new Error(`--env ${JSON.stringify(kv)}: expected KEY=VALUE`);
      o.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else
      throw new Error(
        `unknown option ${a} (--only, --window, --idle, --period-us, --no-pin, --keep-logs, --out, --env)`,
      );
  }
  return o;
}

const log = (msg: string) => process.stderr.write(`${msg}\n`);

// ---- the server ---------------------------------------------------------------------------------

interface Server {
  proc: Proc;
  tcpPort: number;
  httpPort: number;
  outFile: string;
  errFile: string;
}

/**
 * Starts `bun src/main.ts` with default limits, its stdout and stderr going to files (through
 * `sh -c exec`, so the PID measured is the server's own), then loads the entities.
 */
async function startServer(
  name: string,
  cpus: string | undefined,
  env: Record<string, string>,
): Promise<Server> {
  const tcpPort = freePort();
  const httpPort = freePort();
  const outFile = `${TMP}/${name}.stdout`;
  const errFile = `${TMP}/${name}.stderr`;
  const proc = spawnProc({
    name: `featurestore (${name})`,
    cmd: ["sh", "-c", 'exec "$0" src/main.ts >"$1" 2>"$2"', process.execPath, outFile, errFile],
    cwd: ROOT,
    ...(cpus !== undefined ? { cpus } : {}),
    env: {
      HOST: "127.0.0.1",
      TCP_PORT: String(tcpPort),
      HTTP_PORT: String(httpPort),
      GRPC_ENABLED: "false",
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: "1000",
      // A durable store starts empty for every class: no class inherits another's data or lock.
      DATA_DIR: `${TMP}/${name}.data`,
      ...env,
    },
  });
  try {
    await waitForPort(tcpPort, proc, 15_000);
    await waitForPort(httpPort, proc, 5_000);
  } catch (err) {
    await proc.stop(500);
    throw new Error(`${(err as Error).message.split("\n")[0]} ${tailOf(errFile)}`);
  }
  const srv = { proc, tcpPort, httpPort, outFile, errFile };
  try {
    await loadOurs(srv, ENTITIES);
    const client = await FeatureStoreClient.connect({
      servers: [`127.0.0.1:${tcpPort}`],
      connectionsPerServer: 1,
      deadlineMs: 10_000,
    });
    try {
      await client.setFeatures(
        BIG_ENTITY,
        { [BIG_FEATURE]: new Uint8Array(BIG_BYTES).fill(7) },
        { replace: true },
      );
    } finally {
      await client.close();
    }
  } catch (err) {
    await proc.stop(1000);
    throw new Error(`loading the server failed: ${(err as Error).message} ${tailOf(errFile)}`);
  }
  return srv;
}

function tailOf(file: string): string {
  try {
    return readFileSync(file, "utf8").slice(-600).replaceAll("\n", " ").trim();
  } catch {
    return "";
  }
}

/** Lines in a log file (newline count); 0 if unreadable. */
function lineCount(file: string): number {
  try {
    const b = readFileSync(file);
    let n = 0;
    for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
}

/** The commonest `msg` values among the log lines after line `from`. */
function topLogs(files: string[], from: number[], k: number): [string, number][] {
  const counts = new Map<string, number>();
  files.forEach((f, fi) => {
    let text = "";
    try {
      text = readFileSync(f, "utf8");
    } catch {
      return;
    }
    const lines = text.split("\n").slice(from[fi], -1);
    for (const line of lines) {
      let msg = line.slice(0, 160);
      try {
        const o = JSON.parse(line) as { level?: string; msg?: string; reason?: string };
        msg = `${o.level}: ${o.msg}${o.reason ? ` (${o.reason})` : ""}`;
      } catch {
        // not a JSON line (a crash trace): keep its start
      }
      counts.set(msg, (counts.get(msg) ?? 0) + 1);
    }
  });
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, k);
}

function stateOf(p: Proc): string {
  const { exitCode, signalCode } = p.proc;
  if (exitCode === null && signalCode === null) return "alive";
  return signalCode !== null ? `died (${signalCode})` : `exited (${exitCode})`;
}

/** ms until a new connection's Ping is answered, or null past `boundMs`. */
async function recovery(port: number, boundMs: number): Promise<number | null> {
  const t0 = performance.now();
  const until = t0 + boundMs;
  while (performance.now() < until) {
    let c: FrameConn;
    try {
      c = await FrameConn.open(port);
    } catch {
      await Bun.sleep(50);
      continue;
    }
    const a = await Promise.race([
      c.request(frame(Method.Ping, 1)),
      Bun.sleep(Math.max(0, until - performance.now())).then(() => null),
    ]);
    c.destroy();
    if (a !== null && a.status === 0) return performance.now() - t0;
    if (c.endReason !== "closed by server") return null;
    await Bun.sleep(50);
  }
  return null;
}

/** Waits for a quiet machine (see QUIET_PCT); returns the ms waited and the last sample's other-CPU percent. */
async function waitQuiet(): Promise<{ waitedMs: number; otherPct: number }> {
  const t0 = performance.now();
  let otherPct = 0;
  while (performance.now() - t0 < QUIET_WAIT_MS) {
    const busy0 = machineBusySeconds();
    const self0 = selfCpuSeconds();
    const s0 = performance.now();
    await Bun.sleep(QUIET_SAMPLE_MS);
    const wall = (performance.now() - s0) / 1000;
    otherPct = (100 * (machineBusySeconds() - busy0 - (selfCpuSeconds() - self0))) / wall;
    if (otherPct < QUIET_PCT) break;
  }
  return { waitedMs: performance.now() - t0, otherPct };
}

// ---- one phase ----------------------------------------------------------------------------------

async function runPhase(
  cls: AbuseClass | null,
  name: string,
  windowMs: number,
  o: Options,
): Promise<PhaseResult> {
  const t0 = performance.now();
  const result: PhaseResult = {
    name,
    label: cls?.label ?? "no abuse",
    limits: cls?.limits ?? "idle",
    expect: cls?.expect ?? "",
    canary: null,
    abuser: null,
    server: {
      rssIdleBytes: 0,
      rssPeakBytes: 0,
      stderrLines: 0,
      stdoutLines: 0,
      topLogs: [],
      cpuPct: 0,
      state: "not started",
      recoveryMs: null,
    },
    otherCpuPct: 0,
    quietWaitMs: 0,
    seconds: 0,
  };
  const serverCpus = o.pin ? SERVER_CPU : undefined;
  const clientCpus = o.pin ? CLIENT_CPU : undefined;
  let srv: Server | null = null;
  const kids: Child[] = [];
  let sampler: ReturnType<typeof setInterval> | null = null;
  try {
    srv = await startServer(name, serverCpus, o.env);
    const pid = srv.proc.pid;
    result.server.state = "alive";
    result.server.rssIdleBytes = rssBytes(pid);
    result.server.rssPeakBytes = result.server.rssIdleBytes;
    const canary = new Child({
      name: "canary",
      cmd: [
        process.execPath,
        "bench/abuse/canary.ts",
        String(srv.tcpPort),
        String(windowMs),
        String(ENTITIES),
        String(o.periodUs),
        String(CANARY_WARMUP_MS),
      ],
      cwd: ROOT,
      ...(clientCpus !== undefined ? { cpus: clientCpus } : {}),
    });
    kids.push(canary);
    const abuser = cls
      ? new Child({
          name: cls.name,
          cmd: [
            process.execPath,
            "bench/abuse/abuser.ts",
            cls.name,
            String(srv.tcpPort),
            String(srv.httpPort),
            String(windowMs),
          ],
          cwd: ROOT,
          nice: ABUSER_NICE,
          ...(clientCpus !== undefined ? { cpus: clientCpus } : {}),
        })
      : null;
    if (abuser) kids.push(abuser);
    const [canaryReady, abuserReady] = await Promise.all([
      canary.waitLine("ready", 20_000),
      abuser ? abuser.waitLine("ready", 30_000) : Promise.resolve(""),
    ]);
    if (canaryReady === null) throw new Error(`canary not ready: ${canary.stderrTail().slice(-300)}`);
    if (abuserReady === null) throw new Error(`abuser not ready: ${abuser?.stderrTail().slice(-300)}`);

    const quiet = await waitQuiet();
    result.quietWaitMs = Math.round(quiet.waitedMs);
    const errFrom = lineCount(srv.errFile);
    const outFrom = lineCount(srv.outFile);
    const cpu0 = cpuSeconds(pid);
    const self0 = selfCpuSeconds();
    const busy0 = machineBusySeconds();
    const w0 = performance.now();
    sampler = setInterval(() => {
      const r = rssBytes(pid);
      if (r > result.server.rssPeakBytes) result.server.rssPeakBytes = r;
    }, RSS_SAMPLE_MS);
    canary.send("go");
    abuser?.send("go");

    const [c, a] = await Promise.all([
      canary.waitLine("result", windowMs + 6000),
      abuser ? abuser.waitLine("result", windowMs + 3000) : Promise.resolve(null),
    ]);
    const self1 = selfCpuSeconds();
    const cpu1 = cpuSeconds(pid);
    const busy1 = machineBusySeconds();
    const wall = (performance.now() - w0) / 1000;
    await Promise.all(kids.map((k) => k.kill()));
    clearInterval(sampler);
    sampler = null;
    result.canary = c !== null ? JSON.parse(c) : null;
    result.abuser = a !== null ? JSON.parse(a) : null;
    result.server.cpuPct = (100 * (cpu1 - cpu0)) / wall;
    // The children report their own CPU (they may have exited before /proc could be read).
    const ours = self1 - self0 + (result.canary?.cpuSeconds ?? 0) + (result.abuser?.cpuSeconds ?? 0);
    result.otherCpuPct = Math.max(0, (100 * (busy1 - busy0 - (cpu1 - cpu0) - ours)) / wall);
    if (c === null) result.error = `canary gave no result: ${canary.stderrTail().slice(-300)}`;
    else if (cls && a === null) result.error = `abuser gave no result: ${abuser?.stderrTail().slice(-300)}`;

    result.server.state = stateOf(srv.proc);
    if (result.server.state === "alive") {
      result.server.recoveryMs = await recovery(srv.tcpPort, RECOVERY_BOUND_MS);
      const r = rssBytes(pid);
      if (r > result.server.rssPeakBytes) result.server.rssPeakBytes = r;
    }
    result.server.stderrLines = lineCount(srv.errFile) - errFrom;
    result.server.stdoutLines = lineCount(srv.outFile) - outFrom;
    result.server.topLogs = topLogs([srv.errFile, srv.outFile], [errFrom, outFrom], 4);
  } catch (err) {
    result.error = (err instanceof Error ? err.message : String(err)).replaceAll("\n", " ").slice(0, 400);
  } finally {
    if (sampler !== null) clearInterval(sampler);
    await Promise.all(kids.map((k) => k.kill()));
    if (srv !== null) {
      if (result.server.state === "alive") result.server.state = stateOf(srv.proc);
      await srv.proc.stop(2000);
    }
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}

// ---- the run ------------------------------------------------------------------------------------

function machine(): Results["machine"] {
  let cpu = cpus()[0]?.model.trim() ?? "unknown";
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpu;
  } catch {
    // keep os.cpus()'s
  }
  const nproc = Number(Bun.spawnSync(["nproc"]).stdout.toString().trim()) || cpus().length;
  return { nproc, cpu, bun: Bun.version, kernel: Bun.spawnSync(["uname", "-r"]).stdout.toString().trim() };
}

/** The commit measured, and the source files that differ from it (others may be editing). */
function gitState(): Results["git"] {
  const head = Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: ROOT }).stdout.toString().trim();
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--", "src", "proto"], { cwd: ROOT })
    .stdout.toString()
    .split("\n")
    .filter(Boolean)
    .map((l) => l.slice(3));
  return { commit: head || "unknown", dirty };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === "--render") {
    const json = resolve(argv[1] ?? "bench/results/abuse.json");
    const md = markdown(JSON.parse(readFileSync(json, "utf8")) as Results);
    writeFileSync(json.replace(/\.json$/, ".md"), md);
    console.log(md);
    return;
  }
  const o = parseArgs(argv);
  const started = performance.now();
  mkdirSync(TMP, { recursive: true });
  let pinning = "not pinned";
  if (o.pin && cpus().length >= 2 && hasTaskset() && pinProcess(CLIENT_CPU))
    pinning = `server pinned to CPU ${SERVER_CPU}; canary, abusers (nice ${ABUSER_NICE}) and this harness to CPU ${CLIENT_CPU} (taskset)`;
  else o.pin = false;
  log(`abuse bench: window ${o.windowMs} ms, idle ${o.idleMs} ms, canary every ${o.periodUs} µs; ${pinning}`);

  const plan: [AbuseClass | null, string, number][] = [[null, "idle", o.idleMs]];
  for (const c of CLASSES) plan.push([c, c.name, o.windowMs]);
  plan.push([null, "idle_after", o.idleMs]);
  const chosen = o.only ? plan.filter(([, n]) => o.only!.includes(n) || n === "idle") : plan;

  const phases: PhaseResult[] = [];
  for (const [cls, name, windowMs] of chosen) {
    if (performance.now() - started + windowMs + PHASE_OVERHEAD_MS + QUIET_WAIT_MS > BUDGET_MS) {
      log(`${name}: skipped (time budget of ${BUDGET_MS / 1000} s)`);
      continue;
    }
    log(`${name}: ${cls?.label ?? "no abuse"}`);
    const p = await runPhase(cls, name, windowMs, o);
    phases.push(p);
    const c = p.canary;
    log(
      `  canary p50 ${c?.p50 ?? "-"} µs, p99 ${c?.p99 ?? "-"} µs, max ${c?.max ?? "-"} µs, lost ${c?.lost ?? "-"}; ` +
        `RSS ${(p.server.rssIdleBytes / 2 ** 20).toFixed(0)} -> ${(p.server.rssPeakBytes / 2 ** 20).toFixed(0)} MiB; ` +
        `stderr ${p.server.stderrLines} lines; other processes ${p.otherCpuPct.toFixed(0)} % CPU; server ${p.server.state}${p.error ? `; ERROR ${p.error}` : ""} (${p.seconds.toFixed(1)} s)`,
    );
  }

  const results: Results = {
    date: new Date().toISOString(),
    git: gitState(),
    machine: machine(),
    pinning,
    config: {
      windowMs: o.windowMs,
      idleMs: o.idleMs,
      periodUs: o.periodUs,
      entities: ENTITIES,
      rssSampleMs: RSS_SAMPLE_MS,
      limits: { ...LIMITS },
      rssBoundBytes: LIMITS.maxClientMemoryBytes,
      serverEnv: o.env,
    },
    phases,
    totalSeconds: (performance.now() - started) / 1000,
  };
  mkdirSync(resolve(o.out, ".."), { recursive: true });
  writeFileSync(`${o.out}.json`, `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  writeFileSync(`${o.out}.md`, md);
  if (!o.keepLogs) rmSync(TMP, { recursive: true, force: true });
  console.log(md);
  log(`wrote ${o.out}.json and ${o.out}.md`);
  // Nothing of ours is left running; exit even if a library left a handle open.
  process.exit(0);
}

if (import.meta.main) await main();
