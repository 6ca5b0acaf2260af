/**
 * What authentication and TLS cost on the hot path (issue 13): GetFeatures of the e2e workload,
 * closed loop at 1x1 and 8x8, against four servers that differ only in their security settings
 * (plain, auth, TLS, auth+TLS), over TCP (the product's typed client) and over Connect (binary
 * protobuf with Bun's fetch). Rounds alternate the four servers cell by cell (ABCD, then DCBA)
 * so that drift of this shared machine hits each alike; every figure is the median of the
 * rounds, with the min-max across rounds beside it.
 *
 *   bun bench/security/run.ts            full run, ~5 min (8 rounds of 1.8 s cells)
 *   bun bench/security/run.ts --quick    ~40 s (2 rounds of 0.8 s cells); writes security-quick.*
 *   options: --rounds N, --duration MS, --warmup MS, --entities N, --no-pin, --out DIR,
 *            --only tcp,connect, --shapes 1x1,8x8
 *
 * The four servers run at once (idle ones cost nothing measurable), each `bun src/main.ts`
 * with STORE=memory, pinned to CPU 1; this process, the load generator, to CPU 0. Server CPU
 * per request comes from /proc/<pid>/stat over the measured window only (the warm-up runs
 * before it, apart). Every server is stopped by PID at the end, also on SIGINT (procs.ts).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { createToken } from "../../src/auth/tokens.ts";
import { FeatureStoreClient, TcpTransport } from "../../src/client/index.ts";
import type { ClientTlsOptions } from "../../src/client/options.ts";
import { decodeGetFeaturesResponse } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { makePki, removeDir } from "../../test/auth/certs.ts";
import { closedLoop, type OpFn } from "../e2e/load.ts";
import {
  cpuSeconds,
  hasTaskset,
  machineBusySeconds,
  type Proc,
  pinProcess,
  selfCpuSeconds,
  waitForPort,
} from "../e2e/procs.ts";
import { startOurServer } from "../e2e/systems.ts";
import { entityId, entityValues, keyStream, ourFeatures } from "../e2e/workload.ts";
import {
  CONFIGS,
  type ConfigName,
  type Results,
  type Run,
  SHAPES,
  TRANSPORTS,
  type Transport,
} from "./model.ts";
import { markdown, summarize } from "./report.ts";

const ROOT = join(import.meta.dir, "..", "..");
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Options {
  quick: boolean;
  /** Entities loaded into every server (all of them fit the cache: the hot path is measured). */
  entities: number;
  /** Alternating rounds; each runs every (transport, shape, config) cell once. */
  rounds: number;
  /** Unmeasured closed loop before each cell (connections warm, TLS handshakes done), ms. */
  warmupMs: number;
  /** Measured window of a cell, ms. */
  durationMs: number;
  pin: boolean;
  outDir: string;
  /** Subsets, to look again at one cell (e.g. --only connect --shapes 8x8). */
  transports: Transport[];
  shapes: [number, number][];
}

/**
 * Defaults. Full: 16 cells x 8 rounds x (1.8 s + 0.3 s warm-up) ~ 4.7 min, plus ~10 s of start
 * and load: under 6 minutes. Eight short rounds rather than fewer long ones: a difference that
 * shows in all eight is unlikely to be chance (1 in 256), and a burst of other work on this
 * shared machine spoils one round, not a third of them. Quick: 16 x 2 x 1.0 s ~ 32 s plus ~8 s
 * of set-up.
 */
function defaults(quick: boolean): Options {
  return {
    quick,
    entities: quick ? 20_000 : 100_000,
    rounds: quick ? 2 : 8,
    warmupMs: quick ? 200 : 300,
    durationMs: quick ? 800 : 1800,
    pin: true,
    outDir: join(ROOT, "bench", "results"),
    transports: [...TRANSPORTS],
    shapes: [...SHAPES],
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
      case "--rounds":
        o.rounds = Math.floor(num(v, a));
        i++;
        break;
      case "--duration":
        o.durationMs = num(v, a);
        i++;
        break;
      case "--warmup":
        o.warmupMs = num(v, a);
        i++;
        break;
      case "--entities":
      case "-n":
        o.entities = Math.floor(num(v, a));
        i++;
        break;
      case "--only":
        o.transports = (v ?? "").split(",").map((t) => {
          if (!(TRANSPORTS as readonly string[]).includes(t))
            throw new Error(`--only: unknown "${t}", expected some of ${TRANSPORTS.join(",")}`);
          return t as Transport;
        });
        i++;
        break;
      case "--shapes":
        o.shapes = (v ?? "").split(",").map((sh) => {
          const m = /^(\d+)x(\d+)$/.exec(sh);
          if (!m) throw new Error(`--shapes: "${sh}" is not KxD, e.g. 8x8`);
          return [Number(m[1]), Number(m[2])] as [number, number];
        });
        i++;
        break;
      case "--no-pin":
        o.pin = false;
        break;
      case "--out":
        if (!v) throw new Error("--out needs a directory");
        o.outDir = v;
        i++;
        break;
      default:
        throw new Error(`unknown option ${a} (see the comment at the top of bench/security/run.ts)`);
    }
  }
  return o;
}

/** Security material shared by the servers and the clients. */
interface Material {
  dir: string;
  caPem: string;
  certFile: string;
  keyFile: string;
  tokensFile: string;
  /** `read` scope: what the measured GetFeatures uses. */
  readToken: string;
  /** `read,write`: loads the entities. */
  loaderToken: string;
}

async function makeMaterial(): Promise<Material> {
  const pki = await makePki();
  const reader = createToken("bench-reader", ["read"]);
  const loader = createToken("bench-loader", ["read", "write"]);
  const tokensFile = join(pki.dir, "tokens");
  writeFileSync(tokensFile, `# bench/security tokens\n${reader.line}\n${loader.line}\n`);
  return {
    dir: pki.dir,
    caPem: readFileSync(pki.caCert, "utf8"),
    certFile: pki.serverCert,
    keyFile: pki.serverKey,
    tokensFile,
    readToken: reader.token,
    loaderToken: loader.token,
  };
}

/** One of the four servers under test. */
interface Server {
  config: ConfigName;
  proc: Proc;
  tcpPort: number;
  httpPort: number;
  auth: boolean;
  tls: boolean;
}

function envOf(config: ConfigName, m: Material): Record<string, string> {
  const env: Record<string, string> = { STORE: "memory" };
  if (config === "auth" || config === "auth+tls") env.AUTH_TOKENS_FILE = m.tokensFile;
  if (config === "tls" || config === "auth+tls") {
    env.TLS_CERT_FILE = m.certFile;
    env.TLS_KEY_FILE = m.keyFile;
  }
  return env;
}

/** The TCP client options that reach `s` (token and CA as it needs). */
function clientSecurity(s: Server, m: Material, token: string): { token?: string; tls?: ClientTlsOptions } {
  return {
    ...(s.auth ? { token } : {}),
    ...(s.tls ? { tls: { ca: m.caPem } } : {}),
  };
}

async function startServer(
  config: ConfigName,
  m: Material,
  n: number,
  cpus_: string | undefined,
): Promise<Server> {
  const srv = await startOurServer(ROOT, "src/main.ts", n, envOf(config, m), cpus_);
  await waitForPort(srv.httpPort, srv.proc);
  return {
    config,
    proc: srv.proc,
    tcpPort: srv.tcpPort,
    httpPort: srv.httpPort,
    auth: config === "auth" || config === "auth+tls",
    tls: config === "tls" || config === "auth+tls",
  };
}

/** Loads entities 0..n-1 with BatchSet (500 per batch, 4 in flight) and checks one reads back whole. */
async function load(s: Server, m: Material, n: number): Promise<number> {
  const client = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${s.tcpPort}`],
    connectionsPerServer: 2,
    deadlineMs: 60_000,
    ...clientSecurity(s, m, m.loaderToken),
  });
  try {
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const from = next;
        const to = Math.min(n, from + 500);
        next = to;
        const items = [];
        for (let i = from; i < to; i++)
          items.push({ entityId: entityId(i), features: ourFeatures(entityValues(i)), replace: true });
        const written = await client.batchSet(items);
        if (written !== to - from) throw new Error(`${s.config}: BatchSet wrote ${written} of ${to - from}`);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const probe = await client.getFeatures(entityId(n - 1));
    if (!probe.found || Object.keys(probe.features).length !== 20)
      throw new Error(`${s.config}: load check failed: ${JSON.stringify(probe).slice(0, 200)}`);
    return (performance.now() - t0) / 1000;
  } finally {
    await client.close();
  }
}

/** A GetFeatures op on one server through one transport, and how to release it. */
interface Driver {
  op: OpFn;
  close(): Promise<void>;
}

/** The product's typed client: `getFeatures(id)` decoded into values, K connections. */
async function tcpDriver(
  s: Server,
  m: Material,
  conns: number,
  ids: readonly string[],
  keys: Int32Array,
): Promise<Driver> {
  const client = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${s.tcpPort}`],
    connectionsPerServer: conns,
    deadlineMs: 30_000,
    ...clientSecurity(s, m, m.readToken),
  });
  // Every connection of the pool up (and authenticated on its first call, in the warm-up).
  const t = client.transport;
  for (let i = 0; i < 300 && t instanceof TcpTransport && t.stats().open < conns; i++) await Bun.sleep(10);
  const mask = keys.length - 1;
  return {
    op: (seq) => client.getFeatures(ids[keys[seq & mask]!]!),
    close: () => client.close(),
  };
}

/**
 * Connect unary, binary protobuf, over Bun's fetch (HTTP/1.1, keep-alive pool): the answer
 * decoded like the TCP client's. With auth, `authorization: Bearer`; with TLS, https and the
 * test CA in fetch's `tls: { ca }` (Bun keeps such connections in its pool like plain ones).
 * HTTP/1.1 has no pipelining, so K x D requests in flight are K x D connections.
 */
function connectDriver(s: Server, m: Material, ids: readonly string[], keys: Int32Array): Driver {
  const scheme = s.tls ? "https" : "http";
  const url = `${scheme}://127.0.0.1:${s.httpPort}/featurestore.v1.FeatureStoreService/GetFeatures`;
  const headers: Record<string, string> = {
    "content-type": "application/proto",
    "connect-protocol-version": "1",
    ...(s.auth ? { authorization: `Bearer ${m.readToken}` } : {}),
  };
  const init: BunFetchRequestInit = { method: "POST", headers, ...(s.tls ? { tls: { ca: m.caPem } } : {}) };
  const w = new ProtoWriter(256);
  const mask = keys.length - 1;
  return {
    op: async (seq) => {
      w.reset();
      w.stringField(1, ids[keys[seq & mask]!]!);
      // finish() copies: fetch may read the body after the next request reuses the writer.
      const res = await fetch(url, { ...init, body: w.finish() });
      const bytes = await res.bytes();
      if (res.status !== 200)
        throw new Error(`HTTP ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`);
      return decodeGetFeaturesResponse(bytes);
    },
    async close() {},
  };
}

/** Sockets of `port` on loopback by TCP state, from /proc/net/tcp (both ends: server and client side). */
function socketsOf(port: number): { established: number; timeWait: number } {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let established = 0;
  let timeWait = 0;
  try {
    for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n")) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ...; count the server's end only for ESTABLISHED.
      if (f.length < 4) continue;
      if (f[3] === "01" && f[1]!.endsWith(hex)) established++;
      else if (f[3] === "06" && (f[1]!.endsWith(hex) || f[2]!.endsWith(hex))) timeWait++;
    }
  } catch {
    return { established: Number.NaN, timeWait: Number.NaN };
  }
  return { established, timeWait };
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;

let seqBase = 0;
/** A fresh start in the key stream for each cell, so that cells do not replay the same keys. */
function nextSeq(): number {
  seqBase += 7_919_113;
  return seqBase;
}

/** One cell: an unmeasured warm-up loop, then the measured closed loop with CPU read around it. */
async function measure(
  o: Options,
  drv: Driver,
  s: Server,
  transport: Transport,
  conns: number,
  depth: number,
  round: number,
): Promise<Run> {
  const slots = conns * depth;
  await closedLoop(drv.op, {
    slots,
    warmupMs: 0,
    durationMs: o.warmupMs,
    maxRequests: 1e9,
    seqStart: nextSeq(),
  });
  Bun.gc(true);
  const tw0 = transport === "connect" ? socketsOf(s.httpPort).timeWait : 0;
  const cpu0 = cpuSeconds(s.proc.pid);
  const self0 = selfCpuSeconds();
  const busy0 = machineBusySeconds();
  const t0 = performance.now();
  const r = await closedLoop(drv.op, {
    slots,
    warmupMs: 0,
    durationMs: o.durationMs,
    maxRequests: 1e9,
    seqStart: nextSeq(),
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(s.proc.pid) - cpu0;
  const self = selfCpuSeconds() - self0;
  const other = machineBusySeconds() - busy0 - cpu - self;
  const sockets = transport === "connect" ? socketsOf(s.httpPort) : null;
  if (r.errors > 0 || r.requests === 0)
    throw new Error(`${transport} ${s.config} ${conns}x${depth}: ${r.errors} errors (${r.firstError})`);
  return {
    round,
    transport,
    shape: `${conns}x${depth}`,
    config: s.config,
    requests: r.requests,
    seconds: round2(r.seconds),
    throughput: Math.round(r.throughput),
    p50Us: round1(r.hist.percentile(50) / 1000),
    p99Us: round1(r.hist.percentile(99) / 1000),
    p999Us: round1(r.hist.percentile(99.9) / 1000),
    serverCpuUsPerReq: round2((cpu * 1e6) / Math.max(1, r.issued)),
    serverCpuPct: round1((100 * cpu) / wall),
    clientCpuPct: round1((100 * self) / wall),
    otherCpuPct: round1(Math.max(0, (100 * other) / wall)),
    ...(sockets ? { connections: sockets.established, reconnects: Math.max(0, sockets.timeWait - tw0) } : {}),
  };
}

function machine(): Record<string, string | number> {
  const kernel = Bun.spawnSync(["uname", "-r"]).stdout.toString().trim();
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel,
    bun: Bun.version,
  };
}

function commit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=10", "HEAD"], { cwd: ROOT });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "unknown";
}

/** `uptime`'s line and the three load averages. */
function uptimeNow(): { line: string; load: number[] } {
  const r = Bun.spawnSync(["uptime"]);
  return { line: r.stdout.toString().trim(), load: loadavg().map(round2) };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const loadAtStart = uptimeNow();
  log(`security bench: ${loadAtStart.line}`);
  const pinned = o.pin && cpus().length >= 2 && hasTaskset() && pinProcess("0");
  const serverCpus = pinned ? "1" : undefined;
  const pinning = pinned ? "servers pinned to CPU 1, load generator to CPU 0 (taskset)" : "not pinned";
  log(
    `N=${o.entities}, ${o.rounds} rounds of ${o.durationMs} ms cells (+${o.warmupMs} ms warm-up); ${pinning}`,
  );

  const ids: string[] = Array.from({ length: o.entities }, (_, i) => entityId(i));
  const keys = keyStream(o.entities, 1 << 18, "uniform");
  const material = await makeMaterial();
  const servers: Server[] = [];
  const drivers: Driver[] = [];
  try {
    const loadSeconds: Record<string, number> = {};
    for (const config of CONFIGS) {
      const s = await startServer(config, material, o.entities, serverCpus);
      servers.push(s);
      loadSeconds[config] = round2(await load(s, material, o.entities));
      log(
        `  ${config}: pid ${s.proc.pid}, TCP ${s.tcpPort}, HTTP ${s.httpPort}, loaded in ${loadSeconds[config]} s`,
      );
    }
    const byConfig = new Map(servers.map((s) => [s.config, s]));
    // One driver per (transport, shape, config), opened once and reused by every round.
    const driverOf = new Map<string, Driver>();
    for (const transport of o.transports)
      for (const [k] of o.shapes)
        for (const s of servers) {
          const d =
            transport === "tcp"
              ? await tcpDriver(s, material, k, ids, keys)
              : connectDriver(s, material, ids, keys);
          drivers.push(d);
          driverOf.set(`${transport}/${k}/${s.config}`, d);
        }

    const runs: Run[] = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? [...CONFIGS] : [...CONFIGS].reverse();
      for (const transport of o.transports)
        for (const [k, d] of o.shapes) {
          const line: string[] = [];
          for (const config of order) {
            const s = byConfig.get(config)!;
            const run = await measure(
              o,
              driverOf.get(`${transport}/${k}/${config}`)!,
              s,
              transport,
              k,
              d,
              round,
            );
            runs.push(run);
            line.push(`${config} ${run.throughput}/s p99 ${run.p99Us} us ${run.serverCpuUsPerReq} us/req`);
          }
          log(`  round ${round + 1}/${o.rounds} ${transport} ${k}x${d}: ${line.join(" | ")}`);
        }
    }

    const results: Results = {
      kind: "security",
      quick: o.quick,
      date: new Date().toISOString(),
      commit: commit(),
      machine: machine(),
      pinning,
      loadAtStart,
      loadAtEnd: uptimeNow(),
      options: {
        entities: o.entities,
        rounds: o.rounds,
        warmupMs: o.warmupMs,
        durationMs: o.durationMs,
      },
      loadSeconds,
      runs,
      summary: summarize(runs),
      totalSeconds: Math.round((performance.now() - started) / 1000),
    };
    const base = join(o.outDir, o.quick ? "security-quick" : "security");
    writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
    const md = markdown(results);
    writeFileSync(`${base}.md`, md);
    console.log(md);
    log(`wrote ${base}.md and ${base}.json in ${results.totalSeconds} s`);
  } finally {
    for (const d of drivers) await d.close().catch(() => {});
    for (const s of servers) await s.proc.stop().catch(() => {});
    removeDir(material.dir);
  }
}

if (import.meta.main) {
  const arg = process.argv.indexOf("--render");
  if (arg >= 0) {
    // Re-render the markdown of a results file (after a change to report.ts).
    const path = process.argv[arg + 1];
    if (!path) throw new Error("--render needs a results .json");
    const results = JSON.parse(readFileSync(path, "utf8")) as Results;
    results.summary = summarize(results.runs);
    writeFileSync(path.replace(/\.json$/, ".md"), markdown(results));
    log(`rendered ${path.replace(/\.json$/, ".md")}`);
  } else {
    await main();
  }
}
