/**
 * The durability benchmark (GitHub issue 9): what the SQLite tier costs and what it buys, side
 * by side in one run.
 *
 * ```
 * bun run bench:durable                          full run (< 8 minutes on the 2-core reference machine)
 * bun run bench:durable -- --quick               small data, short cells (< 1 minute), written to $TMPDIR
 * bun run bench:durable -- --phases hit,miss,write,restart
 * bun run bench:durable -- --rounds 3 --duration 2000
 * bun run bench:durable -- --server-commit HEAD  run the server from `git archive HEAD` (not the working tree)
 * bun run bench:durable -- --render bench/results/durable.json   re-render the markdown
 * ```
 *
 * 1. hit: GetFeatures over TCP when every read hits the cache, STORE=sqlite vs STORE=memory.
 * 2. miss: reads that miss a small cache (CACHE_SIZE 1,000, WARM_ENTITIES=0) and go to the file,
 *    against the hit path of (1).
 * 3. write: SetFeatures of 5 features, DURABILITY=sync vs Redis `appendfsync always`, and
 *    DURABILITY=async vs Redis `appendfsync everysec` (HSET of the same 5 fields).
 * 4. restart: 1M entities on disk; spawn to "feature store listening" and to /ready 200, with
 *    WARM_ENTITIES=0 and the default 100,000; the file's size.
 *
 * Writes bench/results/durable.md and durable.json. Servers (ours and Redis) are pinned to CPU
 * 0 and this process (the load generator) to CPU 1 with taskset; every data directory is made
 * under one temporary directory (one filesystem) and removed at the end.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { OpFn } from "../e2e/load.ts";
import { hasTaskset, type Proc, pinProcess } from "../e2e/procs.ts";
import { round } from "../e2e/report.ts";
import {
  type Driver,
  type LoadResult,
  loadOurs,
  loadRedis,
  type OurServer,
  redisSystem,
  startOurServer,
  tcpSystem,
} from "../e2e/systems.ts";
import { entityId, keyStream } from "../e2e/workload.ts";
import { alternate, type CellTiming, type Contestant, median, type Shape } from "./compare.ts";
import { machineInfo, probeFsync } from "./machine.ts";
import { rewriteAof, startRedisAof } from "./redis-aof.ts";
import { markdown, type Results, targets } from "./report.ts";
import { filesIn, startAnatomy, timedStop, timeStart } from "./restart.ts";

const PHASES = ["hit", "miss", "write", "restart"] as const;
type Phase = (typeof PHASES)[number];

/** Tunables of a run, filled by `defaults`. */
interface Options {
  quick: boolean;
  phases: Phase[];
  /** Entities of the hit comparison and of the write servers (all fit the cache). */
  entities: number;
  /** Entities on disk behind the small cache of the miss phase. */
  missEntities: number;
  /** CACHE_SIZE of the miss server. */
  missCacheSize: number;
  /** Entities on disk for the restart phase. */
  restartEntities: number;
  /** Starts timed per configuration (alternated). */
  restartReps: number;
  rounds: number;
  timing: CellTiming;
  pin: boolean;
  outDir: string;
  /** Run the servers from this commit (a `git archive` in the data directory), not the working tree. */
  serverCommit: string | null;
}

function defaults(quick: boolean): Options {
  return {
    quick,
    phases: [...PHASES],
    entities: quick ? 20_000 : 100_000,
    missEntities: quick ? 40_000 : 200_000,
    missCacheSize: 1000,
    restartEntities: quick ? 100_000 : 1_000_000,
    restartReps: quick ? 1 : 3,
    // Many short rounds rather than a few long ones: on a shared machine the median of five
    // rounds shrugs off a round that a neighbour disturbed.
    rounds: quick ? 1 : 5,
    timing: {
      warmupMs: quick ? 100 : 300,
      durationMs: quick ? 300 : 1500,
      maxRequests: 5_000_000,
      noisyPct: 25,
      noisyRetries: 2,
      retryBudgetS: quick ? 2 : 8,
      quietWaitS: quick ? 2 : 25,
    },
    pin: true,
    outDir: quick ? tmpdir() : "bench/results",
    serverCommit: null,
  };
}

function parseArgs(argv: string[]): Options {
  const o = defaults(argv.includes("--quick"));
  const num = (v: string | undefined, flag: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case "--quick":
        break;
      case "--phases": {
        const xs = (v ?? "").split(",").filter(Boolean);
        for (const x of xs)
          if (!PHASES.includes(x as Phase))
            throw new Error(`--phases: unknown "${x}", expected some of ${PHASES.join(",")}`);
        o.phases = xs as Phase[];
        i++;
        break;
      }
      case "--rounds":
        o.rounds = Math.floor(num(v, a));
        i++;
        break;
      case "--duration":
        o.timing.durationMs = num(v, a);
        i++;
        break;
      case "--restart-entities":
        o.restartEntities = Math.floor(num(v, a));
        i++;
        break;
      case "--server-commit":
        o.serverCommit = v ?? "HEAD";
        i++;
        break;
      case "--no-retry":
        o.timing.noisyRetries = 0;
        break;
      case "--no-pin":
        o.pin = false;
        break;
      case "--out":
        o.outDir = v ?? o.outDir;
        i++;
        break;
      case "--render": {
        const path = resolve(v ?? "bench/results/durable.json");
        const r = JSON.parse(readFileSync(path, "utf8")) as Results;
        writeFileSync(path.replace(/\.json$/, ".md"), markdown(r));
        process.exit(0);
        break;
      }
      case "--help":
      case "-h":
        console.log(readFileSync(import.meta.path, "utf8").split("*/")[0]);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown flag ${a} (see --help)`);
    }
  }
  return o;
}

const ROOT = resolve(import.meta.dir, "../..");
const ENTRY = "src/main.ts";
const SERVER_CPU = "0";
const CLIENT_CPU = "1";
/** Shapes of the hit and write comparisons: connections x in flight on each. */
const SHAPES: Shape[] = [
  [1, 1],
  [1, 32],
  [8, 8],
];
const MISS_SHAPES: Shape[] = [
  [1, 1],
  [8, 8],
];
/** Key stream length (a power of two, as the e2e drivers index it with a mask). */
const STREAM = 1 << 20;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** Extracts `rev` (git archive: the index and the working tree are not touched) into `into`. */
function snapshot(rev: string, into: string): { root: string; commit: string } {
  const head = Bun.spawnSync(["git", "rev-parse", "--verify", `${rev}^{commit}`], { cwd: ROOT });
  if (head.exitCode !== 0) throw new Error(`--server-commit: ${rev} is not a commit`);
  const commit = head.stdout.toString().trim();
  const tar = Bun.spawnSync(["sh", "-c", `git archive ${commit} | tar -x -C "${into}"`], { cwd: ROOT });
  if (tar.exitCode !== 0) throw new Error(`git archive ${commit} failed: ${tar.stderr.toString()}`);
  symlinkSync(join(ROOT, "node_modules"), join(into, "node_modules"));
  return { root: into, commit };
}

/** Sum of a counter over its label sets, from our server's /metrics. */
async function counter(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{"))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const phase = (p: Phase) => o.phases.includes(p);
  if (process.env.WARM_ENTITIES !== undefined || process.env.STORE !== undefined)
    throw new Error("unset WARM_ENTITIES and STORE: the benchmark sets them per server");

  let pinning = "not pinned";
  if (o.pin && cpus().length >= 2 && hasTaskset() && pinProcess(CLIENT_CPU))
    pinning = `servers (ours and Redis) pinned to CPU ${SERVER_CPU}, load generator to CPU ${CLIENT_CPU} (taskset)`;
  const serverCpus = pinning === "not pinned" ? undefined : SERVER_CPU;

  const dataRoot = mkdtempSync(join(tmpdir(), "featurestore-durable-"));
  const dir = (name: string) => {
    const d = join(dataRoot, name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  log(`durable bench: phases ${o.phases.join(",")}; ${pinning}; data under ${dataRoot}`);

  const machine = machineInfo(ROOT, dataRoot);
  let serverRoot = ROOT;
  let server = "the working tree";
  if (o.serverCommit !== null) {
    const snap = snapshot(o.serverCommit, dir("server"));
    serverRoot = snap.root;
    server = `git archive of ${snap.commit}`;
    machine.git = { commit: snap.commit, dirty: [] };
  }
  log(`  server code: ${server}`);
  const fsync: Results["fsync"] = [];
  const probe = (at: string) => {
    const p = probeFsync(dataRoot);
    fsync.push({ at, ...p });
    log(`  fdatasync of a 4 KiB append (${at}): p50 ${p.p50Us} µs, p99 ${p.p99Us} µs`);
  };
  probe("start");

  const maxN = Math.max(o.entities, o.missEntities);
  const ids: string[] = new Array(maxN);
  for (let i = 0; i < maxN; i++) ids[i] = entityId(i);
  const keys = keyStream(o.entities, STREAM, "uniform");

  const results: Results = {
    date: new Date().toISOString(),
    machine,
    pinning,
    server,
    fsync,
    config: {
      entities: o.entities,
      missEntities: o.missEntities,
      missCacheSize: o.missCacheSize,
      restartEntities: o.restartEntities,
      restartReps: o.restartReps,
      rounds: o.rounds,
      timing: o.timing,
      shapes: SHAPES.map(([k, d]) => `${k}x${d}`),
      quick: o.quick,
    },
    load: {},
    hit: null,
    miss: null,
    writes: null,
    restart: null,
    noise: null,
    targets: [],
    totalSeconds: 0,
  };

  const procs: Proc[] = [];
  const drivers: Driver[] = [];
  const ourContestant = (
    name: string,
    srv: OurServer,
    op: "get_all" | "set5",
    k: Int32Array,
  ): Contestant => ({
    name,
    pid: srv.proc.pid,
    async op(conns): Promise<OpFn> {
      const d = await tcpSystem("tcp", srv.proc, srv.tcpPort).open(conns);
      drivers.push(d);
      return d.op(op, "raw", { ids, keys: k })!;
    },
    misses: () => counter(srv.httpPort, "featurestore_cache_misses_total"),
  });
  const startLoaded = async (
    name: string,
    n: number,
    env: Record<string, string>,
  ): Promise<{ srv: OurServer; load: LoadResult }> => {
    const srv = await startOurServer(serverRoot, ENTRY, n, env, serverCpus);
    procs.push(srv.proc);
    const load = await loadOurs(srv, n);
    log(`  ${name}: loaded ${n} in ${load.seconds.toFixed(1)} s`);
    return { srv, load };
  };
  const stop = async (p: Proc) => {
    await p.stop(60_000);
    procs.splice(procs.indexOf(p), 1);
  };

  try {
    // ---- 1 and 2: reads that hit the cache, and reads that go to the file --------------------
    if (phase("hit") || phase("miss")) {
      log(`hit path: STORE=sqlite and STORE=memory, ${o.entities} entities each (all in the cache)`);
      const sqlite = await startLoaded("sqlite", o.entities, {
        STORE: "sqlite",
        DATA_DIR: dir("hit-sqlite"),
      });
      results.load.hitSqlite = sqlite.load;
      const sqliteHit = ourContestant("sqlite", sqlite.srv, "get_all", keys);

      if (phase("hit")) {
        const memory = await startLoaded("memory", o.entities, { STORE: "memory" });
        results.load.hitMemory = memory.load;
        results.hit = await alternate(
          [sqliteHit, ourContestant("memory", memory.srv, "get_all", keys)],
          SHAPES,
          o.rounds,
          o.timing,
          log,
        );
        for (const d of drivers.splice(0)) await d.close();
        await stop(memory.srv.proc);
      }

      if (phase("miss")) {
        log(
          `miss path: ${o.missEntities} entities on disk, CACHE_SIZE=${o.missCacheSize}, WARM_ENTITIES=0, uniform ids`,
        );
        const missDir = dir("miss");
        const small = { STORE: "sqlite", DATA_DIR: missDir, CACHE_SIZE: String(o.missCacheSize) };
        const fill = await startLoaded("miss fill (DURABILITY=async)", o.missEntities, {
          ...small,
          DURABILITY: "async",
        });
        results.load.miss = fill.load;
        await stop(fill.srv.proc);
        // Restarted: the cache starts empty, as after a deploy with WARM_ENTITIES=0.
        const miss = await startOurServer(
          serverRoot,
          ENTRY,
          o.missEntities,
          { ...small, WARM_ENTITIES: "0" },
          serverCpus,
        );
        procs.push(miss.proc);
        const missKeys = keyStream(o.missEntities, STREAM, "uniform", 0.99, 4242);
        results.miss = await alternate(
          [ourContestant("sqlite miss", miss, "get_all", missKeys), { ...sqliteHit, name: "sqlite hit" }],
          MISS_SHAPES,
          o.rounds,
          o.timing,
          log,
        );
        results.missFiles = filesIn(missDir);
        for (const d of drivers.splice(0)) await d.close();
        await stop(miss.proc);
      }
      for (const d of drivers.splice(0)) await d.close();
      await stop(sqlite.srv.proc);
    }

    // ---- 3: durable writes against Redis with an AOF -----------------------------------------
    if (phase("write")) {
      log(`writes: SetFeatures of 5 features vs HSET of the same 5 fields, over ${o.entities} entities`);
      const ours = async (mode: "sync" | "async") => {
        const { srv, load } = await startLoaded(`DURABILITY=${mode}`, o.entities, {
          STORE: "sqlite",
          DATA_DIR: dir(`write-${mode}`),
          DURABILITY: mode,
        });
        results.load[`write-${mode}`] = load;
        return ourContestant(`sqlite ${mode}`, srv, "set5", keys);
      };
      const redis = async (fsync: "always" | "everysec") => {
        const r = await startRedisAof(fsync, dir(`redis-${fsync}`), serverCpus);
        procs.push(r.proc);
        const load = await loadRedis(r.proc, r.port, o.entities);
        results.load[`redis-${fsync}`] = load;
        log(`  redis appendfsync ${fsync}: loaded ${o.entities} in ${load.seconds.toFixed(1)} s`);
        // The bulk load's AOF is rewritten now, so that the automatic rewrite (at twice 64 MB)
        // does not fork in the middle of a measurement.
        await rewriteAof(r.port);
        const c: Contestant = {
          name: `redis ${fsync}`,
          pid: r.proc.pid,
          async op(conns) {
            const d = await redisSystem(r.proc, r.port).open(conns);
            drivers.push(d);
            return d.op("set5", "raw", { ids, keys })!;
          },
        };
        return c;
      };
      probe("before the writes");
      const sync = await ours("sync");
      const always = await redis("always");
      const async_ = await ours("async");
      const everysec = await redis("everysec");
      // The same write path with no file behind the cache: what SQLite adds to a write.
      const mem = await startLoaded("STORE=memory", o.entities, { STORE: "memory" });
      results.load["write-memory"] = mem.load;
      const memory = ourContestant("memory", mem.srv, "set5", keys);
      log("  DURABILITY=sync vs appendfsync always:");
      const syncCmp = await alternate([sync, always], SHAPES, o.rounds, o.timing, log);
      log("  DURABILITY=async vs appendfsync everysec (and STORE=memory):");
      const asyncCmp = await alternate([async_, everysec, memory], SHAPES, o.rounds, o.timing, log);
      results.writes = { sync: syncCmp, async: asyncCmp };
      for (const d of drivers.splice(0)) await d.close();
      for (const p of [...procs]) await stop(p);
    }

    // ---- 4: restart over a full file ---------------------------------------------------------
    if (phase("restart")) {
      const n = o.restartEntities;
      log(`restart: filling ${n} entities with DURABILITY=async...`);
      const restartDir = dir("restart");
      const fill = await startLoaded("restart fill (DURABILITY=async)", n, {
        STORE: "sqlite",
        DATA_DIR: restartDir,
        DURABILITY: "async",
        // The fill measures nothing about the cache: keep it at the default's entity count.
        CACHE_SIZE: "100000",
        CACHE_MAX_BYTES: String(256 << 20),
      });
      results.load.restart = fill.load;
      const fillShutdownMs = await timedStop(fill.srv.proc);
      procs.splice(procs.indexOf(fill.srv.proc), 1);
      const files = filesIn(restartDir);
      log(`  stopped in ${fillShutdownMs} ms; files ${JSON.stringify(files)}`);
      const configs: { name: string; env: Record<string, string> }[] = [
        { name: "WARM_ENTITIES=0", env: { STORE: "sqlite", DATA_DIR: restartDir, WARM_ENTITIES: "0" } },
        { name: "WARM_ENTITIES default (100,000)", env: { STORE: "sqlite", DATA_DIR: restartDir } },
        { name: "STORE=memory, empty (Bun's own start)", env: { STORE: "memory" } },
      ];
      const runs: { config: string; rep: number; timing: Awaited<ReturnType<typeof timeStart>> }[] = [];
      for (let rep = 0; rep < o.restartReps; rep++) {
        const order = rep % 2 === 0 ? configs : [...configs].reverse();
        for (const c of order) {
          const timing = await timeStart({
            root: serverRoot,
            entry: ENTRY,
            env: c.env,
            cpus: serverCpus,
            timeoutMs: 120_000,
          });
          runs.push({ config: c.name, rep, timing });
          log(
            `  ${c.name}: listening ${timing.listeningMs} ms, ready ${timing.readyMs} ms, store opened ${timing.storeOpenedMs} ms` +
              `, warm ${timing.warmMs} ms (${timing.warmed}), rows ${timing.rows}, shutdown ${timing.shutdownMs} ms`,
          );
        }
      }
      results.restart = {
        entities: n,
        fillShutdownMs,
        files,
        filesAfter: filesIn(restartDir),
        anatomy: startAnatomy(join(restartDir, "features.db"), 100_000),
        configs: configs.map((c) => c.name),
        runs,
      };
    }

    probe("end");
    const kept = [results.hit, results.miss, results.writes?.sync, results.writes?.async].flatMap(
      (c) => c?.runs ?? [],
    );
    results.noise = {
      cells: kept.length,
      medianOtherCpuPct: round(median(kept.map((x) => x.otherCpuPct)), 1),
      cellsOverLimit: kept.filter((x) => x.otherCpuPct > o.timing.noisyPct).length,
    };
    results.targets = targets(results);
  } finally {
    for (const d of drivers) await d.close().catch(() => {});
    for (const p of procs) await p.stop().catch(() => {});
    // The snapshot's node_modules is a link to ours: unlinked first, never walked.
    if (o.serverCommit !== null) rmSync(join(dataRoot, "server", "node_modules"), { force: true });
    rmSync(dataRoot, { recursive: true, force: true });
  }

  results.totalSeconds = round((performance.now() - started) / 1000, 1);
  const outDir = resolve(ROOT, o.outDir);
  mkdirSync(outDir, { recursive: true });
  const base = o.quick ? "durable-quick" : "durable";
  const md = markdown(results);
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify(results, null, 1)}\n`);
  console.log(md);
  log(`wrote ${join(outDir, base)}.md and .json in ${results.totalSeconds} s`);
}

await main();
