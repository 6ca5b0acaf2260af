/**
 * The processes under test: spawned by the benchmark, pinned with taskset, measured through
 * /proc, and stopped by PID (only what this benchmark started), also on SIGINT and on errors.
 */
import { readFileSync } from "node:fs";
import type { Subprocess } from "bun";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux). */
let clockTicks = 100;
try {
  const r = Bun.spawnSync(["getconf", "CLK_TCK"]);
  const n = Number(r.stdout.toString().trim());
  if (n > 0) clockTicks = n;
} catch {
  // keep 100
}

const children = new Set<Subprocess>();
let hooksInstalled = false;

function killAll(): void {
  for (const p of children) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping the servers this benchmark started\n`);
      killAll();
      process.exit(130);
    });
}

/** True when the `taskset` tool is available. */
export function hasTaskset(): boolean {
  return Bun.which("taskset") !== null;
}

/** Pins every thread of `pid` (default: this process) to `cpus` (e.g. "0"). */
export function pinProcess(cpus: string, pid = process.pid): boolean {
  if (!hasTaskset()) return false;
  const r = Bun.spawnSync(["taskset", "-a", "-p", "-c", cpus, String(pid)]);
  return r.exitCode === 0;
}

/** A free TCP port on loopback (bound then released; a tiny race we accept in a benchmark). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly proc: Subprocess;
  /** Stops the process (SIGTERM, then SIGKILL after `graceMs`) and waits for it. */
  stop(graceMs?: number): Promise<void>;
  /** Last lines of its stderr/stdout (for error messages). */
  tail(): string;
}

export interface SpawnOptions {
  name: string;
  cmd: string[];
  env?: Record<string, string>;
  /** CPU list for taskset ("1"); none = not pinned. */
  cpus?: string;
  cwd?: string;
}

/** Spawns a server process, keeping the last 4 KiB of its output for diagnostics. */
export function spawnProc(o: SpawnOptions): Proc {
  installHooks();
  const cmd = o.cpus !== undefined && hasTaskset() ? ["taskset", "-c", o.cpus, ...o.cmd] : o.cmd;
  let log = "";
  const keep = (chunk: string) => {
    log = (log + chunk).slice(-4096);
  };
  const proc = Bun.spawn(cmd, {
    cwd: o.cwd,
    env: { ...process.env, ...o.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  children.add(proc);
  drainStream(proc.stdout, keep);
  drainStream(proc.stderr, keep);
  return {
    name: o.name,
    pid: proc.pid,
    proc,
    tail: () => log,
    async stop(graceMs = 3000) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        children.delete(proc);
        return;
      }
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await proc.exited;
      clearTimeout(t);
      children.delete(proc);
    },
  };
}

async function drainStream(
  s: ReadableStream<Uint8Array> | undefined | number | null,
  sink: (t: string) => void,
) {
  if (!s || typeof s === "number") return;
  const dec = new TextDecoder();
  try {
    for await (const chunk of s) sink(dec.decode(chunk, { stream: true }));
  } catch {
    // process gone
  }
}

/** Resolves when `port` accepts a TCP connection; throws after `timeoutMs` or if `p` exits. */
export async function waitForPort(port: number, p: Proc, timeoutMs = 30_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null)
      throw new Error(
        `${p.name} exited (${p.proc.exitCode ?? p.proc.signalCode}) before listening:\n${p.tail()}`,
      );
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`${p.name} did not listen on ${port} within ${timeoutMs} ms:\n${p.tail()}`);
}

/** CPU time (user + system, all threads) of `pid`, seconds; NaN if unreadable. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8") as string;
    // Field 2 (comm) may hold spaces: parse after the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After comm: f[0] = state (field 3) ... utime = field 14 -> f[11], stime = field 15 -> f[12]
    return (Number(f[11]) + Number(f[12])) / clockTicks;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size of `pid`, bytes; NaN if unreadable. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8") as string;
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** This process's own CPU seconds (the load generator). */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Busy CPU time of the whole machine (all cores, every process), seconds, from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    // cpu user nice system idle iowait irq softirq steal ...
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return (total - f[3]! - f[4]!) / clockTicks;
  } catch {
    return Number.NaN;
  }
}
