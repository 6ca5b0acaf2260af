/**
 * The bulk-load benchmark (issue 14): `featurestore load` of an NDJSON file of N entities x 20
 * features into a local server (STORE=memory and the default STORE=sqlite), beside
 * `redis-cli --pipe` loading the same rows as hashes (HSET of 20 fields) into redis-server.
 *
 * ```
 * bun bench/cli/load.ts                   500,000 rows, 3 rounds per side (~2 minutes)
 * bun bench/cli/load.ts --rows 200000 --rounds 1
 * ```
 *
 * Every round starts a fresh server (or redis-server) as a child process pinned to CPU 1 with
 * taskset, and the loader (`bun src/cli/bin.ts load`, or `redis-cli --pipe`) pinned to CPU 0;
 * each is stopped by its PID. The file is generated once, outside the timed part, and read once
 * before the first round so that every round reads it from the page cache. Reported: the median
 * round's wall time and rows/s, and the CPU time per row of the loader and of the server (from
 * /proc/<pid>/stat), which says which side limits the rate. Writes bench/results/load.md and
 * load.json.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeNdjson, writeRedisProtocol } from "./data.ts";

const ROOT = resolve(import.meta.dir, "../..");
const SERVER_CPU = "1";
const LOADER_CPU = "0";
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const HZ = 100;
let debugOut = "";

interface Round {
  seconds: number;
  rowsPerS: number;
  loaderCpuUsPerRow: number;
  serverCpuUsPerRow: number;
}

interface Side {
  name: string;
  rounds: Round[];
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > end) throw new Error(`${what}: not ready within ${ms} ms ${debugOut}`);
    await Bun.sleep(20);
  }
}

async function ourServerRound(file: string, rows: number, env: Record<string, string>): Promise<Round> {
  const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-load-"));
  const server = Bun.spawn(["taskset", "-c", SERVER_CPU, process.execPath, "src/main.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      TCP_PORT: "0",
      HTTP_PORT: "0",
      GRPC_ENABLED: "false",
      DATA_DIR: dataDir,
      CACHE_SIZE: String(Math.max(rows * 2, 1000)),
      CACHE_MAX_BYTES: String(2 * 2 ** 30),
      WARM_ENTITIES: "0",
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  let port = 0;
  try {
    // The "listening" line (stdout) names the ports; a configuration error goes to stderr.
    let out = "";
    const errText = new Response(server.stderr).text();
    void server.exited.then(async (c) => {
      if (port === 0) console.error(`server exited ${c}: ${await errText}`);
    });
    const reader = server.stdout.getReader();
    await waitFor("server", async () => {
      const { value } = await reader.read();
      if (value) out += new TextDecoder().decode(value);
      debugOut = out;
      const m = /"tcpPort":(\d+)/.exec(out);
      if (m) port = Number(m[1]);
      return port > 0;
    });
    void (async () => {
      while (!(await reader.read()).done) {}
    })();
    const before = cpuTicks(server.pid);
    const t0 = performance.now();
    const loader = Bun.spawn(
      [
        "taskset",
        "-c",
        LOADER_CPU,
        process.execPath,
        "src/cli/bin.ts",
        "--server",
        `127.0.0.1:${port}`,
        "--json",
        "load",
        file,
      ],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    const code = await loader.exited;
    const seconds = (performance.now() - t0) / 1000;
    const serverTicks = cpuTicks(server.pid) - before;
    const summary = JSON.parse(await new Response(loader.stdout).text());
    if (code !== 0 || summary.written !== rows)
      throw new Error(
        `load exited ${code}: ${JSON.stringify(summary)} ${await new Response(loader.stderr).text()}`,
      );
    const usage = loader.resourceUsage();
    const loaderCpu = usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN;
    return {
      seconds,
      rowsPerS: rows / seconds,
      loaderCpuUsPerRow: (loaderCpu * 1e6) / rows,
      serverCpuUsPerRow: ((serverTicks / HZ) * 1e6) / rows,
    };
  } finally {
    server.kill("SIGKILL");
    await server.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function redisRound(respFile: string, rows: number): Promise<Round> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = Bun.spawn(
    [
      "taskset",
      "-c",
      SERVER_CPU,
      "redis-server",
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    await waitFor("redis-server", () =>
      Bun.spawnSync(["redis-cli", "-p", String(port), "ping"])
        .stdout.toString()
        .includes("PONG"),
    );
    const before = cpuTicks(server.pid);
    const t0 = performance.now();
    const cli = Bun.spawn(["taskset", "-c", LOADER_CPU, "redis-cli", "-p", String(port), "--pipe"], {
      stdin: Bun.file(respFile),
      stdout: "pipe",
      stderr: "pipe",
    });
    const code = await cli.exited;
    const seconds = (performance.now() - t0) / 1000;
    const serverTicks = cpuTicks(server.pid) - before;
    const out = await new Response(cli.stdout).text();
    const keys = Number(
      Bun.spawnSync(["redis-cli", "-p", String(port), "dbsize"])
        .stdout.toString()
        .trim(),
    );
    if (code !== 0 || keys !== rows) throw new Error(`redis-cli --pipe exited ${code}, ${keys} keys: ${out}`);
    const usage = cli.resourceUsage();
    const cliCpu = usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN;
    return {
      seconds,
      rowsPerS: rows / seconds,
      loaderCpuUsPerRow: (cliCpu * 1e6) / rows,
      serverCpuUsPerRow: ((serverTicks / HZ) * 1e6) / rows,
    };
  } finally {
    server.kill("SIGKILL");
    await server.exited;
  }
}

function median(side: Side): Round {
  const sorted = [...side.rounds].sort((a, b) => a.seconds - b.seconds);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const rows = arg("--rows", 500_000);
  const rounds = arg("--rounds", 3);
  const dir = mkdtempSync(join(tmpdir(), "fs-bench-load-data-"));
  try {
    const ndjson = join(dir, "rows.ndjson");
    const resp = join(dir, "rows.resp");
    const ndjsonBytes = await writeNdjson(ndjson, rows);
    const respBytes = await writeRedisProtocol(resp, rows);
    await Bun.file(ndjson).arrayBuffer();
    await Bun.file(resp).arrayBuffer();
    const sides: Side[] = [
      { name: "featurestore load, STORE=memory", rounds: [] },
      { name: "featurestore load, STORE=sqlite (DURABILITY=sync)", rounds: [] },
      { name: "featurestore load, STORE=sqlite (DURABILITY=async)", rounds: [] },
      { name: "redis-cli --pipe (HSET x 20 fields, no persistence)", rounds: [] },
    ];
    const run = [
      () => ourServerRound(ndjson, rows, { STORE: "memory" }),
      () => ourServerRound(ndjson, rows, { STORE: "sqlite" }),
      () => ourServerRound(ndjson, rows, { STORE: "sqlite", DURABILITY: "async" }),
      () => redisRound(resp, rows),
    ];
    for (let r = 0; r < rounds; r++)
      for (let s = 0; s < sides.length; s++) {
        const round = await run[s]!();
        sides[s]!.rounds.push(round);
        console.log(
          `${sides[s]!.name}: ${Math.round(round.rowsPerS)} rows/s (${round.seconds.toFixed(2)} s)`,
        );
      }
    const machine = {
      cpu: cpus()[0]?.model ?? "?",
      nproc: cpus().length,
      bun: Bun.version,
      redis: /v=([\d.]+)/.exec(Bun.spawnSync(["redis-server", "--version"]).stdout.toString())?.[1] ?? "?",
      loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
      commit: Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT }).stdout.toString().trim(),
    };
    const result = { date: new Date().toISOString(), rows, rounds, ndjsonBytes, respBytes, machine, sides };
    writeFileSync(join(ROOT, "bench/results/load.json"), `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(join(ROOT, "bench/results/load.md"), render(result));
    console.log(render(result));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function render(r: {
  date: string;
  rows: number;
  rounds: number;
  ndjsonBytes: number;
  respBytes: number;
  machine: Record<string, unknown>;
  sides: Side[];
}): string {
  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const lines = [
    "# Bulk load: `featurestore load` against `redis-cli --pipe`",
    "",
    `${f(r.rows)} entities x 20 features (8 ints, 6 doubles, 4 strings, a bool, an 8-float embedding), ` +
      `NDJSON ${(r.ndjsonBytes / 1e6).toFixed(0)} MB; the same rows as RESP HSETs ${(r.respBytes / 1e6).toFixed(0)} MB. ` +
      `Median of ${r.rounds} rounds, a fresh server each round; server pinned to CPU ${SERVER_CPU}, loader to CPU ${LOADER_CPU}. ` +
      "`bun bench/cli/load.ts` writes this file.",
    "",
    "| side | rows/s | wall s | loader CPU µs/row | server CPU µs/row |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...r.sides.map((s) => {
      const m = median(s);
      return `| ${s.name} | ${f(m.rowsPerS)} | ${m.seconds.toFixed(2)} | ${m.loaderCpuUsPerRow.toFixed(2)} | ${m.serverCpuUsPerRow.toFixed(2)} |`;
    }),
    "",
    `Machine: ${r.machine.cpu}, ${r.machine.nproc} cores, Bun ${r.machine.bun}, Redis ${r.machine.redis}, ` +
      `commit ${r.machine.commit}, load average at the end ${JSON.stringify(r.machine.loadavg)} (the machine is shared: ` +
      "other sessions' work shows in the wall times; CPU per row is steadier). " +
      `Run ${r.date}.`,
    "",
    "All rounds (rows/s): " +
      r.sides.map((s) => `${s.name}: ${s.rounds.map((x) => f(x.rowsPerS)).join(", ")}`).join("; ") +
      ".",
    "",
  ];
  return lines.join("\n");
}

await main();
