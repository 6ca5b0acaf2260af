/**
 * The Redis benchmark (GitHub issue 10): our server over Redis with its near-cache, against
 * direct Redis doing the same reads, side by side in one run.
 *
 * ```
 * bun bench/redis/run.ts                      full run (< 10 minutes on the 2-core reference machine)
 * bun bench/redis/run.ts --quick              small data, short cells (1-2 minutes), written to $TMPDIR
 * bun bench/redis/run.ts --phases reads,open,scale,writes
 * bun bench/redis/run.ts --rounds 5 --duration 2000
 * bun bench/redis/run.ts --render bench/results/redis.json   re-render the markdown
 * ```
 *
 * 1. reads: GetFeatures of all 20 features, our TCP client (typed), at 1x1 and 8x8, in
 *    alternated rounds: our server (STORE=redis) at near-cache hit ratios of ~0 % (uniform ids
 *    over N entities, CACHE_SIZE 1,000), ~90 % and ~99 % (Zipf(0.99) ids, cache sizes chosen
 *    for them), against direct Redis (Bun client + typed decode, the e2e row; node-redis +
 *    typed decode of our own layout); and near-cache hits against the memory store's hits.
 *    The hit ratio is measured: 1 - Redis HGETALL calls (INFO commandstats) / requests.
 * 2. open: the same sides at one fixed rate (open loop, latency from the intended send time).
 * 3. scale: one server against two servers over the same Redis, clients split over both.
 * 4. writes: SetFeatures of 20 features with REDIS_WAIT_REPLICAS=0 and 1 (a replica started
 *    with --replicaof), against HSET of the same 20 values (and HSET + WAIT 1), Redis with
 *    `appendonly yes`, `appendfsync everysec`.
 *
 * Every server (ours and redis-server) is a child process on 127.0.0.1, pinned to CPU 1 with
 * taskset, the load generator (this process) to CPU 0, and stopped by PID at the end (also on
 * SIGINT and on errors). Writes bench/results/redis.md and redis.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { RedisClient } from "bun";
import {
  type RedisNode,
  startRedis as startHarnessRedis,
  stopAll as stopHarness,
} from "../../test/redis/harness.ts";
import type { CellTiming, Shape } from "../durable/compare.ts";
import { machineInfo } from "../durable/machine.ts";
import { rewriteAof, startRedisAof } from "../durable/redis-aof.ts";
import { closedLoop } from "../e2e/load.ts";
import { hasTaskset, type Proc, pinProcess } from "../e2e/procs.ts";
import { round } from "../e2e/report.ts";
import {
  type Driver,
  loadOurs,
  loadRedis,
  type OurStartedServer,
  redisSystem,
  startOurServer,
  startRedis as startPlainRedis,
  tcpSystem,
} from "../e2e/systems.ts";
import { entityId, keyStream } from "../e2e/workload.ts";
import { alternate, type CellSpec, type Member, mergedOf, type Side } from "./cells.ts";
import { markdown, type Results, SIDE_LABELS, targets } from "./report.ts";
import {
  bunClients,
  commandCalls,
  hsetOp,
  metric,
  nodeRedisReads,
  ourClient,
  ourWriteOp,
  whenReady,
} from "./sides.ts";

const PHASES = ["reads", "open", "scale", "writes"] as const;
type Phase = (typeof PHASES)[number];

/** Tunables of a run, filled by `defaults`. */
interface Options {
  quick: boolean;
  phases: Phase[];
  /** Entities in Redis for the reads (each layout). */
  entities: number;
  /** Near-cache sizes: ~0 % (uniform), ~90 % and ~99 % (Zipf) hit ratios. */
  cache0: number;
  cache90: number;
  cache99: number;
  /** Entities written by the write phase (loaded first, so every write overwrites). */
  writeEntities: number;
  rounds: number;
  openRounds: number;
  /** Open-loop rate as a fraction of the slowest side's closed-loop 8x8 throughput. */
  openFraction: number;
  timing: CellTiming;
  pin: boolean;
  outDir: string;
}

function defaults(quick: boolean): Options {
  const entities = quick ? 50_000 : 200_000;
  return {
    quick,
    phases: [...PHASES],
    entities,
    cache0: 1000,
    // An LRU over a Zipf(0.99) stream of 200k entities, after its first 2^20 draws, holds
    // ~92 % of the requests at 100k entries (simulated on this stream: 60k 0.86, 80k 0.89,
    // 100k 0.92, 150k 0.96; 200k still only 0.965-0.984, the first reads of the tail).
    cache90: Math.round(entities / 2),
    // Uniform ids: an LRU of C entries over N entities answers C / N of them once filled.
    cache99: Math.round(entities * 0.99),
    writeEntities: quick ? 10_000 : 50_000,
    rounds: quick ? 1 : 3,
    openRounds: quick ? 1 : 2,
    openFraction: 0.5,
    timing: {
      warmupMs: quick ? 150 : 300,
      durationMs: quick ? 500 : 1500,
      maxRequests: 2_000_000,
      noisyPct: 25,
      noisyRetries: quick ? 0 : 1,
      retryBudgetS: quick ? 0 : 10,
      quietWaitS: quick ? 2 : 15,
    },
    pin: true,
    outDir: quick ? tmpdir() : "bench/results",
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
      case "--no-pin":
        o.pin = false;
        break;
      case "--out":
        o.outDir = v ?? o.outDir;
        i++;
        break;
      case "--render": {
        const path = resolve(v ?? "bench/results/redis.json");
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
const READ_SHAPES: CellSpec[] = [
  { kind: "closed", shape: [1, 1] },
  { kind: "closed", shape: [8, 8] },
];
const SCALE_SHAPES: Shape[] = [
  [2, 1],
  [8, 8],
];
/** Key stream length (a power of two: the e2e drivers index it with a mask). */
const STREAM = 1 << 20;
/**
 * The Zipf stream is longer (2^23 draws, 2^21 with --quick), and a near-cache is filled with
 * 2^20 other draws: the cells then meet tail ids never read before, as a live stream does,
 * rather than replaying a stream every id of which the near-cache already holds.
 */
const ZIPF_STREAM = 1 << 23;
/** Hot ids of the hit-path comparison: all of them stay in any near-cache. */
const HOT = 1000;
/** The key prefix of our layout in Redis (REDIS_KEY_PREFIX's default). */
const PREFIX = "fs:";
/**
 * NEAR_CACHE_MAX_STALENESS_MS of the ~90 % and ~99 % servers, ms: longer than the run. The run
 * alternates nine sides, so each server idles 8/9 of the time while its entries age; with the
 * default bound (60 s) a first full run measured 75-90 % instead of ~90 and ~99 %, which says
 * more about the idling than about a server under continuous load.
 */
const LONG_STALENESS_MS = 600_000;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function uptime(): string {
  const r = Bun.spawnSync(["uptime"]);
  return r.exitCode === 0
    ? r.stdout.toString().trim()
    : `load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(", ")}`;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const phase = (p: Phase) => o.phases.includes(p);
  for (const v of ["STORE", "REDIS_URL", "REDIS_CLUSTER_NODES", "CACHE_SIZE", "REDIS_WAIT_REPLICAS"])
    if (process.env[v] !== undefined) throw new Error(`unset ${v}: the benchmark sets it per server`);
  const uptimeStart = uptime();
  log(`redis bench: phases ${o.phases.join(",")}; ${uptimeStart}`);

  let pinning = "not pinned";
  if (o.pin && cpus().length >= 2 && hasTaskset() && pinProcess(CLIENT_CPU))
    pinning = `servers (ours and every redis-server) pinned to CPU ${SERVER_CPU}, load generator to CPU ${CLIENT_CPU} (taskset)`;
  const serverCpus = pinning === "not pinned" ? undefined : SERVER_CPU;
  const dataRoot = mkdtempSync(join(tmpdir(), "featurestore-redis-bench-"));

  const n = o.entities;
  const ids: string[] = new Array(Math.max(n, o.writeEntities));
  for (let i = 0; i < ids.length; i++) ids[i] = entityId(i);
  const uniform = keyStream(n, STREAM, "uniform", 0.99, 4242);
  const zipf = keyStream(n, o.quick ? ZIPF_STREAM >> 2 : ZIPF_STREAM, "zipf");
  // Other draws of the same distribution (another seed): the cells start anywhere in `zipf`
  // and must not replay the very requests that filled the near-cache.
  const zipfWarm = keyStream(n, STREAM, "zipf", 0.99, 4343);
  // Every id once, in order (padded to a power of two; BatchGets of 100 over the first n).
  const sweep = new Int32Array(2 ** Math.ceil(Math.log2(n)));
  for (let i = 0; i < sweep.length; i++) sweep[i] = i % n;
  const hot = keyStream(HOT, STREAM, "uniform", 0.99, 77);
  const writeKeys = keyStream(o.writeEntities, STREAM, "uniform", 0.99, 99);

  const results: Results = {
    date: new Date().toISOString(),
    machine: machineInfo(ROOT, dataRoot),
    uptimeStart,
    uptimeEnd: "",
    pinning,
    config: {
      entities: n,
      cache0: o.cache0,
      cache90: o.cache90,
      cache99: o.cache99,
      hot: HOT,
      writeEntities: o.writeEntities,
      rounds: o.rounds,
      openRounds: o.openRounds,
      openFraction: o.openFraction,
      timing: o.timing,
      quick: o.quick,
      nearCacheMaxStalenessMs: LONG_STALENESS_MS,
    },
    load: {},
    reads: null,
    open: null,
    openRate: 0,
    scale: null,
    writes: null,
    targets: [],
    totalSeconds: 0,
  };

  const procs: Proc[] = [];
  const harnessNodes: RedisNode[] = [];
  const closers: (() => Promise<void>)[] = [];
  const admins: RedisClient[] = [];
  const stop = async (p: Proc) => {
    await p.stop(10_000);
    procs.splice(procs.indexOf(p), 1);
  };
  const closeAll = async () => {
    for (const c of closers.splice(0)) await c().catch(() => {});
  };

  /** Our server over the Redis at `redisUrl`, pinned, once /ready says Redis is connected. */
  const ourOverRedis = async (name: string, redisUrl: string, env: Record<string, string>) => {
    const cacheSize = Number(env.CACHE_SIZE ?? 100_000);
    const srv = await startOurServer(
      ROOT,
      ENTRY,
      cacheSize,
      { STORE: "redis", REDIS_URL: redisUrl, ...env },
      serverCpus,
    );
    procs.push(srv.proc);
    await whenReady(srv.httpPort);
    log(`  ${name}: pid ${srv.proc.pid}, TCP ${srv.tcpPort}, ${JSON.stringify(env)}`);
    return srv;
  };
  /** Our typed GetFeatures over `keys`, one driver per connection count. */
  const ourRead = (srv: OurStartedServer, keys: Int32Array) => async (conns: number) => {
    const d = await tcpSystem("tcp", srv.proc, srv.tcpPort).open(conns);
    closers.push(() => d.close());
    return d.op("get_all", "typed", { ids, keys })!;
  };
  /** Runs `keys` once through the server as BatchGets of 100 (fills a near-cache). */
  const prewarm = async (srv: OurStartedServer, keys: Int32Array, name: string, count = keys.length) => {
    const d: Driver = await tcpSystem("tcp", srv.proc, srv.tcpPort).open(4);
    const t0 = performance.now();
    const r = await closedLoop(d.op("batch100", "raw", { ids, keys })!, {
      slots: 16,
      warmupMs: 0,
      durationMs: 60_000,
      maxRequests: Math.ceil(count / 100),
    });
    await d.close();
    log(
      `  prewarmed ${name}: ${r.requests} BatchGets of 100 in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  };

  try {
    // ---- reads, open loop and scale: one Redis without persistence, both layouts loaded ------
    if (phase("reads") || phase("open") || phase("scale")) {
      const redis = await startPlainRedis(serverCpus);
      procs.push(redis.proc);
      const url = `redis://127.0.0.1:${redis.port}`;
      const admin = new RedisClient(url);
      await admin.connect();
      admins.push(admin);
      const hgetalls = () => commandCalls(admin, "hgetall");
      const R: Member = { role: "redis", pid: redis.proc.pid };
      log(`reads: redis-server ${redis.version} pid ${redis.proc.pid} on ${redis.port}, ${n} entities`);

      const s0 = await ourOverRedis("ours, CACHE_SIZE 1,000", url, { CACHE_SIZE: String(o.cache0) });
      results.load.ours = await loadOurs(s0, n);
      log(
        `  loaded ${n} entities through our server (BatchSet, fs: layout) in ${results.load.ours.seconds.toFixed(1)} s`,
      );
      results.load.redisStrings = await loadRedis(redis.proc, redis.port, n);
      log(
        `  loaded ${n} entities as strings (HSET, e2e layout) in ${results.load.redisStrings.seconds.toFixed(1)} s`,
      );
      const long = { NEAR_CACHE_MAX_STALENESS_MS: String(LONG_STALENESS_MS) };
      const s90 = await ourOverRedis("ours, ~90 %", url, { CACHE_SIZE: String(o.cache90), ...long });
      const s99 = await ourOverRedis("ours, ~99 %", url, { CACHE_SIZE: String(o.cache99), ...long });
      const mem = await startOurServer(ROOT, ENTRY, n, { STORE: "memory" }, serverCpus);
      procs.push(mem.proc);
      results.load.memory = await loadOurs(mem, n);
      log(`  memory store: loaded ${n} in ${results.load.memory.seconds.toFixed(1)} s`);
      await prewarm(s90, zipfWarm, "~90 %");
      await prewarm(s99, sweep, "~99 %", n);

      const ours = (name: string, srv: OurStartedServer, keys: Int32Array): Side => ({
        name,
        members: [{ role: "server", pid: srv.proc.pid }, R],
        op: ourRead(srv, keys),
        loads: hgetalls,
      });
      const bunDirect = (name: string, keys: Int32Array): Side => ({
        name,
        members: [R],
        async op(conns) {
          const d = await redisSystem(redis.proc, redis.port).open(conns);
          closers.push(() => d.close());
          return d.op("get_all", "typed", { ids, keys })!;
        },
      });
      const nodeDirect: Side = {
        name: "redis-node/uniform",
        members: [R],
        async op(conns) {
          const d = await nodeRedisReads(url, conns, PREFIX, ids, uniform);
          closers.push(d.close);
          return d.op;
        },
      };
      const memory = (name: string, keys: Int32Array): Side => ({
        name,
        members: [{ role: "server", pid: mem.proc.pid }],
        op: ourRead(mem, keys),
        loads: () => metric(mem.httpPort, "featurestore_cache_misses_total"),
      });
      const sides: Side[] = [
        bunDirect("redis-bun/uniform", uniform),
        nodeDirect,
        ours("ours-0%", s0, uniform),
        bunDirect("redis-bun/zipf", zipf),
        ours("ours-90%", s90, zipf),
        ours("ours-99%", s99, uniform),
        memory("memory/uniform", uniform),
        ours("ours-hot", s99, hot),
        memory("memory-hot", hot),
      ];
      for (const s of sides) if (!SIDE_LABELS[s.name]) throw new Error(`no label for ${s.name}`);

      if (phase("reads")) {
        log(`reads: ${sides.length} sides x ${READ_SHAPES.length} shapes x ${o.rounds} rounds`);
        results.reads = await alternate(sides, READ_SHAPES, o.rounds, o.timing, log);
      }
      if (phase("open")) {
        // One rate every side can carry: a fraction of the slowest side's closed-loop peak.
        let peak = Number.POSITIVE_INFINITY;
        for (const s of sides) {
          const m = mergedOf(results.reads, s.name, "8x8");
          if (m) peak = Math.min(peak, m.throughput);
        }
        if (!Number.isFinite(peak)) peak = o.quick ? 8000 : 16_000;
        const rate = Math.max(1000, Math.floor((peak * o.openFraction) / 500) * 500);
        results.openRate = rate;
        log(
          `open loop: ${rate} req/s over 8 connections (${o.openFraction} of the slowest 8x8 peak, ${peak})`,
        );
        results.open = await alternate(
          sides,
          [{ kind: "open", conns: 8, rate }],
          o.openRounds,
          o.timing,
          log,
        );
      }
      await closeAll();
      await stop(mem.proc);

      if (phase("scale")) {
        log("scale: one server against two over the same Redis (clients split over both)");
        const s0b = await ourOverRedis("second server, CACHE_SIZE 1,000", url, {
          CACHE_SIZE: String(o.cache0),
        });
        const s90b = await ourOverRedis("second server, ~90 %", url, {
          CACHE_SIZE: String(o.cache90),
          NEAR_CACHE_MAX_STALENESS_MS: String(LONG_STALENESS_MS),
        });
        await prewarm(s90b, zipfWarm, "second ~90 %");
        // The fresh server's code is warmed up too (its near-cache holds 1,000 entries anyway).
        await prewarm(s0b, uniform.subarray(0, 1 << 16), "second ~0 %");
        const pair = (name: string, a: OurStartedServer, b: OurStartedServer, keys: Int32Array): Side => ({
          name,
          members: [{ role: "server", pid: a.proc.pid }, { role: "server", pid: b.proc.pid }, R],
          async op(conns) {
            const half = Math.max(1, conns >> 1);
            const fa = await ourRead(a, keys)(half);
            const fb = await ourRead(b, keys)(half);
            return (seq, slot) => ((slot & 1) === 0 ? fa(seq, slot) : fb(seq, slot));
          },
          loads: hgetalls,
        });
        const scaleSides: Side[] = [
          ours("1 server, ~0%", s0, uniform),
          pair("2 servers, ~0%", s0, s0b, uniform),
          ours("1 server, ~90%", s90, zipf),
          pair("2 servers, ~90%", s90, s90b, zipf),
        ];
        const specs: CellSpec[] = SCALE_SHAPES.map((shape) => ({ kind: "closed", shape }));
        results.scale = await alternate(scaleSides, specs, o.rounds, o.timing, log);
        await closeAll();
        await stop(s0b.proc);
        await stop(s90b.proc);
      }
      for (const s of [s0, s90, s99]) await stop(s.proc);
      admin.close();
      await stop(redis.proc);
    }

    // ---- writes: Redis with an AOF (everysec) and one replica -----------------------------------
    if (phase("writes")) {
      const aofDir = join(dataRoot, "aof");
      mkdirSync(aofDir, { recursive: true });
      const master = await startRedisAof("everysec", aofDir, serverCpus);
      procs.push(master.proc);
      const url = `redis://127.0.0.1:${master.port}`;
      const replica = await startHarnessRedis({ args: ["--replicaof", "127.0.0.1", String(master.port)] });
      harnessNodes.push(replica);
      if (serverCpus !== undefined) pinProcess(serverCpus, replica.pid);
      const admin = new RedisClient(url);
      await admin.connect();
      admins.push(admin);
      await untilReplicaLinked(admin, 15_000);
      log(`writes: master pid ${master.proc.pid} (appendfsync everysec), replica pid ${replica.pid}`);

      const w0 = await ourOverRedis("ours, REDIS_WAIT_REPLICAS=0", url, { CACHE_SIZE: "10000" });
      const w1 = await ourOverRedis("ours, REDIS_WAIT_REPLICAS=1", url, {
        CACHE_SIZE: "10000",
        REDIS_WAIT_REPLICAS: "1",
      });
      results.load.writes = await loadOurs(w0, o.writeEntities);
      log(`  loaded ${o.writeEntities} entities in ${results.load.writes.seconds.toFixed(1)} s`);
      // The bulk load's AOF is rewritten now, and automatic rewrites are off for the cells, so
      // that no rewrite forks in the middle of one (both sides would pay it at random).
      await rewriteAof(master.port);
      await admin.send("CONFIG", ["SET", "auto-aof-rewrite-percentage", "0"]);
      await untilReplicaLinked(admin, 15_000);
      const M: Member = { role: "redis", pid: master.proc.pid };
      const Rp: Member = { role: "replica", pid: replica.pid };
      const ourWriter = (name: string, srv: OurStartedServer): Side => ({
        name,
        members: [{ role: "server", pid: srv.proc.pid }, M, Rp],
        async op(conns) {
          const c = await ourClient(srv.tcpPort, conns);
          closers.push(() => c.close());
          return ourWriteOp(c, ids, writeKeys);
        },
      });
      const direct = (name: string, wait: number): Side => ({
        name,
        members: [M, Rp],
        async op(conns) {
          const cs = await bunClients(master.port, conns);
          closers.push(async () => {
            for (const c of cs) c.close();
          });
          return hsetOp(cs, PREFIX, ids, writeKeys, wait, 500);
        },
      });
      const writeSides = [
        ourWriter("ours-wait0", w0),
        direct("hset", 0),
        ourWriter("ours-wait1", w1),
        direct("hset-wait1", 1),
      ];
      results.writes = await alternate(writeSides, READ_SHAPES, o.rounds, o.timing, log);
      // Every write of the last cells reached the replica: the same entity on both.
      const probe = (node: string) =>
        Bun.spawnSync(["redis-cli", "-p", node, "HGET", `${PREFIX}${entityId(writeKeys[0]!)}`, "ctr_7d"])
          .stdout.toString()
          .trim();
      await Bun.sleep(200);
      results.writesReplicaCheck =
        probe(String(master.port)) === probe(String(replica.port)) ? "same" : "differs";
      await closeAll();
      await stop(w0.proc);
      await stop(w1.proc);
      await replica.stop();
      admin.close();
      await stop(master.proc);
    }

    results.targets = targets(results);
  } finally {
    await closeAll();
    for (const a of admins) a.close();
    for (const p of [...procs]) await p.stop().catch(() => {});
    for (const node of harnessNodes) await node.stop().catch(() => {});
    await stopHarness();
    rmSync(dataRoot, { recursive: true, force: true });
  }

  results.uptimeEnd = uptime();
  results.totalSeconds = round((performance.now() - started) / 1000, 1);
  const outDir = resolve(ROOT, o.outDir);
  mkdirSync(outDir, { recursive: true });
  const base = o.quick ? "redis-quick" : "redis";
  const md = markdown(results);
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify(results, null, 1)}\n`);
  console.log(md);
  log(`wrote ${join(outDir, base)}.md and .json in ${results.totalSeconds} s; ${results.uptimeEnd}`);
}

/** Waits until the master reports a replica online and caught up with its offset. */
async function untilReplicaLinked(admin: RedisClient, ms: number): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    const info = (await admin.send("INFO", ["replication"])) as string;
    const master = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
    const slave = /slave0:.*state=online,offset=(\d+)/.exec(info);
    if (slave && Number(slave[1]) >= master) return;
    if (performance.now() > until) throw new Error(`the replica did not catch up within ${ms} ms:\n${info}`);
    await Bun.sleep(50);
  }
}

await main();
