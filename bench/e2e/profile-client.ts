/**
 * One client mode against one server, for profiling what bench/e2e/client.ts measures: starts
 * our server (CPU 1, its own data directory), loads N entities, runs each given mode in a closed
 * loop on CPU 0 and prints its rate and the CPU per request of the load generator and of the
 * server. Under `bun --cpu-prof` it profiles the client; with PROFILE_SERVER=<dir> the server
 * writes its own profile there when it stops.
 *
 * ```
 * bun --cpu-prof --cpu-prof-md --cpu-prof-dir=/tmp/p bench/e2e/profile-client.ts batch100 dense 8x8
 * PROFILE_SERVER=/tmp/s SYSTEM=connect bun bench/e2e/profile-client.ts get_all raw,typed 8x8
 * ```
 * Args: op (get_all | batch100 | ...), modes (raw,typed,dense), shape KxD. Env: N (20,000
 * entities), DURATION_MS (3,000 per mode), SYSTEM (tcp | connect), PROFILE_SERVER.
 */
import { resolve } from "node:path";
import { closedLoop } from "./load.ts";
import { cpuSeconds, pinProcess, selfCpuSeconds } from "./procs.ts";
import { connectSystem, loadOurs, type Mode, type OpName, startOurServer, tcpSystem } from "./systems.ts";
import { entityId, keyStream } from "./workload.ts";

const ROOT = resolve(import.meta.dir, "../..");
const n = Number(process.env.N ?? 20_000);
const durationMs = Number(process.env.DURATION_MS ?? 3000);
const op = (process.argv[2] ?? "get_all") as OpName;
const modes = (process.argv[3] ?? "typed").split(",") as Mode[];
const shape = /^(\d+)x(\d+)$/.exec(process.argv[4] ?? "1x32");
if (shape === null) throw new Error(`shape must be KxD (e.g. 8x8), got ${process.argv[4]}`);
const [k, d] = [Number(shape[1]), Number(shape[2])];

pinProcess("0");
const srv = await startOurServer(ROOT, "src/main.ts", n, {}, "1", process.env.PROFILE_SERVER);
try {
  await loadOurs(srv, n);
  const ids = Array.from({ length: n }, (_, i) => entityId(i));
  const keys = keyStream(n, 1 << 20, "uniform");
  const system =
    process.env.SYSTEM === "connect"
      ? connectSystem(srv.proc, srv.httpPort)
      : tcpSystem("tcp", srv.proc, srv.tcpPort);
  const driver = await system.open(k);
  for (const mode of modes) {
    const fn = driver.op(op, mode, { ids, keys });
    if (fn === null) throw new Error(`${system.name} has no ${mode} ${op}`);
    const gen0 = selfCpuSeconds();
    const srv0 = cpuSeconds(srv.proc.pid);
    const r = await closedLoop(fn, { slots: k * d, warmupMs: 500, durationMs, maxRequests: 1e9 });
    const per = (s: number) => ((s * 1e6) / r.issued).toFixed(2);
    console.log(
      `${system.name} ${mode} ${op} ${k}x${d}: ${Math.round(r.throughput)} req/s, ` +
        `gen ${per(selfCpuSeconds() - gen0)} µs/req, srv ${per(cpuSeconds(srv.proc.pid) - srv0)} µs/req`,
    );
  }
  await driver.close();
} finally {
  await srv.proc.stop();
}
