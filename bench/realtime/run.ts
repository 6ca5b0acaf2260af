/**
 * The real-time benchmark (GitHub issue 12): UpdateFeatures' increment, append and observe and
 * the windowed read against Redis doing the same work the way real-time Redis feature stores
 * do, and plain GetFeatures before and after the issue, side by side in one run.
 *
 * ```
 * bun run bench:realtime                       full run (< 10 minutes on the 2-core reference machine)
 * QUICK=1 bun run bench:realtime               small data, one short round (< 2 minutes), written to $TMPDIR
 * bun bench/realtime/run.ts --phases counter,list,read,write,get
 * bun bench/realtime/run.ts --rounds 5 --get-rounds 9 --duration 2000
 * bun bench/realtime/run.ts --before /tmp/before   the "before" server from an existing checkout
 * bun bench/realtime/run.ts --render bench/results/realtime.json   re-render the markdown
 * ```
 *
 * 1. counter: increment an int by 1 vs `HINCRBY`.
 * 2. list: append one item keeping the last 20 vs `LPUSH` + `LTRIM`.
 * 4. read (run before 3, on the same entities): count, sum and mean of the last hour of a
 *    window holding 24 h of minute buckets vs 60 bucket hashes (a Lua script, or 60 pipelined
 *    HMGETs) and vs a sorted set (ZRANGEBYSCORE).
 * 3. write: observe one event into that window vs HINCRBY + HINCRBYFLOAT + EXPIRE of the
 *    minute's hash, and vs ZADD + ZREMRANGEBYSCORE.
 * 5. get: GetFeatures of 20 features (cache hits), the server of commit d68e845 (`git archive`
 *    into the run's temporary directory) against the working tree.
 *
 * Ours runs with STORE=memory against Redis without persistence, and with its default config
 * (STORE=sqlite, DURABILITY=sync) against Redis with `appendfsync always` (ops 1-3). Every
 * server is a child process on 127.0.0.1 (ephemeral ports), pinned to CPU 1 with taskset, the
 * load generator (this process) to CPU 0, and stopped by PID at the end (also on SIGINT and on
 * errors). Sides: bench/realtime/sides.ts; cells: bench/redis/cells.ts `alternate`. Writes
 * bench/results/realtime.md and realtime.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RedisClient } from "bun";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import type { CellTiming } from "../durable/compare.ts";
import { machineInfo } from "../durable/machine.ts";
import { startRedisAof } from "../durable/redis-aof.ts";
import type { OpFn } from "../e2e/load.ts";
import { hasTaskset, type Proc, pinProcess } from "../e2e/procs.ts";
import { round } from "../e2e/report.ts";
import { loadOurs, type OurStartedServer, startOurServer, startRedis, tcpSystem } from "../e2e/systems.ts";
import { entityId, keyStream } from "../e2e/workload.ts";
import { alternate, type CellSpec, type Member, type Side } from "../redis/cells.ts";
import { ourClient } from "../redis/sides.ts";
import { markdown, PHASES, type Phase, type Results, SIDE_LABELS, targets } from "./report.ts";
import {
  type CountSum,
  idsOf,
  type Keyed,
  ourAppend,
  ourCounter,
  ourFillCounters,
  ourFillLists,
  ourFillWindows,
  ourObserve,
  ourWindowRead,
  redisAppend,
  redisClients,
  redisCounter,
  redisFillCounters,
  redisFillLists,
  redisFillWindows,
  redisObserveHash,
  redisObserveZset,
  redisReadLua,
  redisReadPipe,
  redisReadZset,
} from "./sides.ts";

/** Tunables of a run, filled by `defaults`. */
interface Options {
  quick: boolean;
  phases: Phase[];
  /** Entities per op (counters, lists, fresh windows, plain GetFeatures). */
  entities: number;
  /** Entities given 24 h of window history (fewer if the budget runs out), in groups of `windowGroup`. */
  windowEntities: number;
  windowGroup: number;
  /** Events per windowed entity. */
  windowEvents: number;
  /** No group of the window pre-fill starts after this many seconds. */
  windowFillBudgetS: number;
  rounds: number;
  /**
   * Rounds of the before/after comparison: more than the others, since it looks for a
   * difference of a few per cent (its cells are few, so they are cheap).
   */
  getRounds: number;
  timing: CellTiming;
  pin: boolean;
  outDir: string;
  /** The "before" server: a revision to `git archive`, or an existing checkout (`beforeDir`). */
  beforeRev: string;
  beforeDir: string | null;
}

function defaults(quick: boolean): Options {
  return {
    quick,
    phases: [...PHASES],
    entities: quick ? 10_000 : 50_000,
    windowEntities: quick ? 16 : 128,
    windowGroup: 16,
    windowEvents: 2000,
    windowFillBudgetS: quick ? 20 : 90,
    rounds: quick ? 1 : 3,
    getRounds: quick ? 1 : 7,
    timing: {
      warmupMs: quick ? 150 : 300,
      durationMs: quick ? 500 : 1500,
      maxRequests: 2_000_000,
      noisyPct: 25,
      noisyRetries: quick ? 0 : 1,
      retryBudgetS: quick ? 0 : 12,
      quietWaitS: quick ? 2 : 15,
    },
    pin: true,
    outDir: quick ? tmpdir() : "bench/results",
    beforeRev: "d68e845",
    beforeDir: null,
  };
}

function parseArgs(argv: string[]): Options {
  const quickEnv = process.env.QUICK;
  const o = defaults(
    argv.includes("--quick") || (quickEnv !== undefined && quickEnv !== "" && quickEnv !== "0"),
  );
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
        o.getRounds = Math.max(o.getRounds, o.rounds);
        i++;
        break;
      case "--get-rounds":
        o.getRounds = Math.floor(num(v, a));
        i++;
        break;
      case "--duration":
        o.timing.durationMs = num(v, a);
        i++;
        break;
      case "--entities":
        o.entities = Math.floor(num(v, a));
        i++;
        break;
      case "--window-entities":
        o.windowEntities = Math.max(o.windowGroup, Math.floor(num(v, a) / o.windowGroup) * o.windowGroup);
        i++;
        break;
      case "--before":
        o.beforeDir = resolve(v ?? "");
        i++;
        break;
      case "--before-rev":
        o.beforeRev = v ?? o.beforeRev;
        i++;
        break;
      case "--no-pin":
        o.pin = false;
        break;
      case "--out":
        o.outDir = v ?? o.outDir;
        i++;
        break;
      case "--render": {
        const path = resolve(v ?? "bench/results/realtime.json");
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
const SERVER_CPU = "1";
const CLIENT_CPU = "0";
const SHAPES: CellSpec[] = [
  { kind: "closed", shape: [1, 1] },
  { kind: "closed", shape: [8, 8] },
];
/** Key stream length (a power of two: the ops index it with a mask). */
const STREAM = 1 << 20;
/**
 * startOurServer sizes the cache for the data set; "" restores the server's defaults
 * (CACHE_SIZE 1,000,000, CACHE_MAX_BYTES 1 GiB), which hold everything here as well.
 */
const DEFAULT_CACHE = { CACHE_SIZE: "", CACHE_MAX_BYTES: "" };

const log = (msg: string) => process.stderr.write(`${msg}\n`);
const seconds = (t0: number) => round((performance.now() - t0) / 1000, 1);

function uptime(): string {
  const r = Bun.spawnSync(["uptime"]);
  return r.exitCode === 0
    ? r.stdout.toString().trim()
    : `load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(", ")}`;
}

/** Extracts `rev` with `git archive` into `into` (index and working tree untouched), node_modules linked. */
function snapshot(rev: string, into: string): string {
  const head = Bun.spawnSync(["git", "rev-parse", "--verify", `${rev}^{commit}`], { cwd: ROOT });
  if (head.exitCode !== 0) throw new Error(`--before-rev: ${rev} is not a commit`);
  const commit = head.stdout.toString().trim();
  mkdirSync(into, { recursive: true });
  const tar = Bun.spawnSync(["sh", "-c", `git archive ${commit} | tar -x -C "${into}"`], { cwd: ROOT });
  if (tar.exitCode !== 0) throw new Error(`git archive ${commit} failed: ${tar.stderr.toString()}`);
  symlinkSync(join(ROOT, "node_modules"), join(into, "node_modules"));
  return commit;
}

const fmtCountSum = (count: number, sum: number) => `${count} / ${round(sum, 2)}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  const started = performance.now();
  const phase = (p: Phase) => o.phases.includes(p);
  for (const v of ["STORE", "DATA_DIR", "DURABILITY", "REDIS_URL", "CACHE_SIZE"])
    if (process.env[v] !== undefined) throw new Error(`unset ${v}: the benchmark sets it per server`);
  const uptimeStart = uptime();
  log(`realtime bench: phases ${o.phases.join(",")}${o.quick ? " (quick)" : ""}; ${uptimeStart}`);

  let pinning = "not pinned";
  if (o.pin && cpus().length >= 2 && hasTaskset() && pinProcess(CLIENT_CPU))
    pinning = `servers (ours and every redis-server) pinned to CPU ${SERVER_CPU}, load generator to CPU ${CLIENT_CPU} (taskset)`;
  const serverCpus = pinning === "not pinned" ? undefined : SERVER_CPU;
  const dataRoot = mkdtempSync(join(tmpdir(), "featurestore-realtime-bench-"));

  const n = o.entities;
  const uniform = keyStream(n, STREAM, "uniform", 0.99, 4242);
  const counters: Keyed = { ids: idsOf("c:", n), keys: uniform };
  const lists: Keyed = { ids: idsOf("l:", n), keys: uniform };
  const fresh: Keyed = { ids: idsOf("f:", n), keys: uniform };
  const users: Keyed = { ids: Array.from({ length: n }, (_, i) => entityId(i)), keys: uniform };

  const results: Results = {
    date: new Date().toISOString(),
    command: `${o.quick && !argv.includes("--quick") ? "QUICK=1 " : ""}bun bench/realtime/run.ts${argv.length ? ` ${argv.join(" ")}` : ""}`,
    machine: machineInfo(ROOT, dataRoot),
    uptimeStart,
    uptimeEnd: "",
    pinning,
    config: {
      quick: o.quick,
      entities: n,
      windowEntitiesAsked: o.windowEntities,
      windowEntities: 0,
      windowEvents: o.windowEvents,
      rounds: o.rounds,
      getRounds: o.getRounds,
      timing: o.timing,
      before: { rev: o.beforeRev, commit: "", from: "" },
    },
    prefill: {},
    checks: [],
    comparisons: {},
    targets: [],
    totalSeconds: 0,
  };

  const procs: Proc[] = [];
  /** Clients of the cells of one comparison (closed after it), and the pre-fill clients (at the end). */
  const cellClosers: (() => unknown)[] = [];
  const fillClosers: (() => unknown)[] = [];
  const closeAll = async (list: (() => unknown)[]) => {
    for (const c of list.splice(0)) await Promise.resolve(c()).catch(() => {});
  };
  const track = <T extends { close(): unknown }>(x: T, list = cellClosers): T => {
    list.push(() => x.close());
    return x;
  };
  const ours = async (name: string, root: string, env: Record<string, string>): Promise<OurStartedServer> => {
    const srv = await startOurServer(root, ENTRY, 0, { ...DEFAULT_CACHE, ...env }, serverCpus);
    procs.push(srv.proc);
    log(`  ${name}: pid ${srv.proc.pid}, TCP ${srv.tcpPort}, ${JSON.stringify(env)}`);
    return srv;
  };
  const dataDir = (name: string) => {
    const d = join(dataRoot, name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  try {
    const needsRealtime = o.phases.some((p) => p !== "get");
    if (needsRealtime) {
      const redis = await startRedis(serverCpus);
      procs.push(redis.proc);
      const always = await startRedisAof("always", dataDir("redis-aof"), serverCpus);
      procs.push(always.proc);
      log(
        `redis-server ${redis.version}: no persistence pid ${redis.proc.pid} on ${redis.port}, ` +
          `appendfsync always pid ${always.proc.pid} on ${always.port}`,
      );
      const mem = await ours("ours, STORE=memory", ROOT, { STORE: "memory" });
      const def = await ours("ours, default config", ROOT, { DATA_DIR: dataDir("ours-default") });
      const fillers = {
        mem: track(await ourClient(mem.tcpPort, 4), fillClosers),
        def: track(await ourClient(def.tcpPort, 4), fillClosers),
        redis: track((await redisClients(redis.port, 1))[0]!, fillClosers),
        always: track((await redisClients(always.port, 1))[0]!, fillClosers),
      };

      /** A side of our server `srv` doing `make(client)` over K connections. */
      const ourSide = (name: string, srv: OurStartedServer, make: (c: FeatureStoreClient) => OpFn): Side => ({
        name,
        members: [{ role: "server", pid: srv.proc.pid }],
        async op(conns) {
          return make(track(await ourClient(srv.tcpPort, conns)));
        },
      });
      const redisSide = (
        name: string,
        r: { proc: Proc; port: number },
        make: (cs: RedisClient[]) => OpFn | Promise<OpFn>,
      ): Side => {
        const member: Member = { role: "server", pid: r.proc.pid };
        return {
          name,
          members: [member],
          async op(conns) {
            const cs = await redisClients(r.port, conns);
            for (const c of cs) track(c);
            return make(cs);
          },
        };
      };
      const compare = async (p: Phase, sides: Side[]) => {
        for (const s of sides) if (!SIDE_LABELS[s.name]) throw new Error(`no label for ${s.name}`);
        log(`${p}: ${sides.length} sides x ${SHAPES.length} shapes x ${o.rounds} rounds`);
        results.comparisons[p] = await alternate(sides, SHAPES, o.rounds, o.timing, log);
        await closeAll(cellClosers);
      };

      if (phase("counter")) {
        const t0 = performance.now();
        await Promise.all([
          ourFillCounters(fillers.mem, counters.ids),
          ourFillCounters(fillers.def, counters.ids),
          redisFillCounters(fillers.redis, counters.ids),
          redisFillCounters(fillers.always, counters.ids),
        ]);
        results.prefill.counters = seconds(t0);
        log(`  counters: ${n} per server in ${results.prefill.counters} s`);
        await compare("counter", [
          ourSide("ours", mem, (c) => ourCounter(c, counters)),
          redisSide("redis", redis, (cs) => redisCounter(cs, counters)),
          ourSide("ours-default", def, (c) => ourCounter(c, counters)),
          redisSide("redis-always", always, (cs) => redisCounter(cs, counters)),
        ]);
      }

      if (phase("list")) {
        const t0 = performance.now();
        await Promise.all([
          ourFillLists(fillers.mem, lists.ids),
          ourFillLists(fillers.def, lists.ids),
          redisFillLists(fillers.redis, lists.ids),
          redisFillLists(fillers.always, lists.ids),
        ]);
        results.prefill.lists = seconds(t0);
        log(`  lists: ${n} of 20 items per server in ${results.prefill.lists} s`);
        await compare("list", [
          ourSide("ours", mem, (c) => ourAppend(c, lists)),
          redisSide("redis", redis, (cs) => redisAppend(cs, lists)),
          ourSide("ours-default", def, (c) => ourAppend(c, lists)),
          redisSide("redis-always", always, (cs) => redisAppend(cs, lists)),
        ]);
      }

      if (phase("read") || phase("write")) {
        const asked = idsOf("w:", o.windowEntities);
        const t0 = Date.now();
        const f0 = performance.now();
        const filled = await ourFillWindows(
          fillers.mem,
          asked,
          o.windowEvents,
          t0,
          o.windowGroup,
          performance.now() + o.windowFillBudgetS * 1000,
        );
        const fillS = seconds(f0);
        if (filled === 0) throw new Error("the window pre-fill filled no entity");
        const windows: Keyed = {
          ids: asked.slice(0, filled),
          keys: keyStream(filled, STREAM, "uniform", 0.99, 77),
        };
        results.config.windowEntities = filled;
        results.prefill.windowsOurs = fillS;
        results.prefill.windowsOursObservesPerS = Math.round((filled * o.windowEvents) / fillS);
        const r0 = performance.now();
        await redisFillWindows(fillers.redis, windows.ids, o.windowEvents, t0);
        results.prefill.windowsRedis = seconds(r0);
        log(
          `  windows: ${filled} entities x ${o.windowEvents} events: ours ${fillS} s ` +
            `(${results.prefill.windowsOursObservesPerS} observes/s), Redis ${results.prefill.windowsRedis} s`,
        );
        // The same hour read from each: the pre-fill wrote the same events everywhere.
        const probe: Keyed = { ids: windows.ids, keys: new Int32Array([0, 1, 2, 3]) };
        const oursRead = ourWindowRead(fillers.mem, probe);
        const [lua, zset] = [
          await redisReadLua([fillers.redis], probe),
          redisReadZset([fillers.redis], probe),
        ];
        for (let i = 0; i < Math.min(4, filled); i++) {
          const a = (await oursRead(i, 0)) as { count: number; sum: number };
          const h = (await lua(i, 0)) as CountSum;
          const z = (await zset(i, 0)) as CountSum;
          results.checks.push({
            id: windows.ids[i]!,
            ours: fmtCountSum(a.count, a.sum),
            redisHash: fmtCountSum(h.count, h.sum),
            redisZset: fmtCountSum(z.count, z.sum),
          });
          if (a.count !== h.count)
            log(`  (check: ${windows.ids[i]} ours ${a.count} events, hashes ${h.count})`);
        }
        log(`  check: ${JSON.stringify(results.checks)}`);

        if (phase("read"))
          await compare("read", [
            ourSide("ours-agg", mem, (c) => ourWindowRead(c, windows)),
            redisSide("redis-lua", redis, (cs) => redisReadLua(cs, windows)),
            redisSide("redis-pipe", redis, (cs) => redisReadPipe(cs, windows)),
            redisSide("redis-zset", redis, (cs) => redisReadZset(cs, windows)),
          ]);
        if (phase("write"))
          await compare("write", [
            ourSide("ours-24h", mem, (c) => ourObserve(c, windows)),
            redisSide("redis-hash", redis, (cs) => redisObserveHash(cs, windows)),
            redisSide("redis-zset", redis, (cs) => redisObserveZset(cs, windows)),
            ourSide("ours-fresh", mem, (c) => ourObserve(c, fresh)),
            ourSide("ours-default-fresh", def, (c) => ourObserve(c, fresh)),
            redisSide("redis-always-hash-fresh", always, (cs) => redisObserveHash(cs, fresh)),
            redisSide("redis-always-zset-fresh", always, (cs) => redisObserveZset(cs, fresh)),
          ]);
      }
      await closeAll(cellClosers);
      await closeAll(fillClosers);
      for (const p of [mem.proc, def.proc, redis.proc, always.proc]) {
        await p.stop(10_000);
        procs.splice(procs.indexOf(p), 1);
      }
    }

    if (phase("get")) {
      let beforeRoot = o.beforeDir;
      if (beforeRoot === null) {
        beforeRoot = join(dataRoot, "before-src");
        results.config.before.commit = snapshot(o.beforeRev, beforeRoot);
        results.config.before.from = "git archive";
      } else {
        const head = Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: beforeRoot });
        results.config.before.commit = head.stdout.toString().trim();
        results.config.before.from = `checkout at ${beforeRoot}`;
      }
      const before = await ours("before", beforeRoot, { DATA_DIR: dataDir("before") });
      const after = await ours("after", ROOT, { DATA_DIR: dataDir("after") });
      const t0 = performance.now();
      await loadOurs(before, n);
      await loadOurs(after, n);
      results.prefill.getFeaturesLoad = seconds(t0);
      log(`  loaded ${n} entities of 20 features into each in ${results.prefill.getFeaturesLoad} s`);
      const reader = (name: string, srv: OurStartedServer): Side => ({
        name,
        members: [{ role: "server", pid: srv.proc.pid }],
        async op(conns) {
          const d = track(await tcpSystem("tcp", srv.proc, srv.tcpPort).open(conns));
          return d.op("get_all", "typed", users)!;
        },
      });
      log(`get: 2 sides x ${SHAPES.length} shapes x ${o.getRounds} rounds`);
      results.comparisons.get = await alternate(
        [reader("after", after), reader("before", before)],
        SHAPES,
        o.getRounds,
        o.timing,
        log,
      );
      await closeAll(cellClosers);
    }
    results.targets = targets(results);
  } finally {
    await closeAll(cellClosers);
    await closeAll(fillClosers);
    for (const p of [...procs]) await p.stop().catch(() => {});
    rmSync(dataRoot, { recursive: true, force: true });
  }

  results.uptimeEnd = uptime();
  results.totalSeconds = round((performance.now() - started) / 1000, 1);
  const outDir = resolve(ROOT, o.outDir);
  mkdirSync(outDir, { recursive: true });
  const base = o.quick ? "realtime-quick" : "realtime";
  const md = markdown(results);
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify(results, null, 1)}\n`);
  console.log(md);
  log(`wrote ${join(outDir, base)}.md and .json in ${results.totalSeconds} s; ${results.uptimeEnd}`);
}

await main();
