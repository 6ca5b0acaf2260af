/**
 * Printing of the real-time benchmark, kept apart from measuring: the figures of a run
 * (`Results`, also the JSON file) become the markdown report and the targets of issue 12.
 */
import type { CellTiming } from "../durable/compare.ts";
import type { MachineInfo } from "../durable/machine.ts";
import { fmtUs, type Target, table, targetsTable } from "../e2e/report.ts";
import { type Comparison, type Merged, mergedOf, type Run, ratioOf } from "../redis/cells.ts";

export const PHASES = ["counter", "list", "read", "write", "get"] as const;
export type Phase = (typeof PHASES)[number];

export interface Results {
  date: string;
  command: string;
  machine: MachineInfo;
  uptimeStart: string;
  uptimeEnd: string;
  pinning: string;
  config: {
    quick: boolean;
    /** Entities of the counter, list, fresh-window and plain GetFeatures cells. */
    entities: number;
    /** Entities holding 24 h of window buckets (asked for, and filled within the budget). */
    windowEntitiesAsked: number;
    windowEntities: number;
    windowEvents: number;
    rounds: number;
    getRounds: number;
    timing: CellTiming;
    before: { rev: string; commit: string; from: string };
  };
  /** Seconds each pre-fill took, and the observe rate of ours while it built 24 h windows. */
  prefill: Record<string, number>;
  /** The same windows read from ours and from both Redis layouts right after the pre-fill. */
  checks: { id: string; ours: string; redisHash: string; redisZset: string }[];
  comparisons: Partial<Record<Phase, Comparison>>;
  targets: Target[];
  totalSeconds: number;
  /** A reading of the figures, written after the run (kept in the JSON so that --render keeps it). */
  notes?: string[];
}

/** What each side is, for the tables. */
export const SIDE_LABELS: Record<string, string> = {
  ours: "ours, STORE=memory",
  redis: "Redis, no persistence",
  "ours-default": "ours, default config (STORE=sqlite, DURABILITY=sync)",
  "redis-always": "Redis, appendfsync always",
  "ours-agg": "ours (windows and no names: the aggregates alone)",
  "redis-lua": "Redis bucket hashes, EVALSHA over 60 keys",
  "redis-pipe": "Redis bucket hashes, 60 pipelined HMGET",
  "redis-zset": "Redis sorted set",
  "ours-24h": "ours, STORE=memory, 24 h of buckets",
  "redis-hash": "Redis bucket hashes, 24 h of buckets",
  "ours-fresh": "ours, STORE=memory, fresh windows",
  "ours-default-fresh": "ours, default config, fresh windows",
  "redis-always-hash-fresh": "Redis appendfsync always, bucket hashes, fresh",
  "redis-always-zset-fresh": "Redis appendfsync always, sorted set, fresh",
  after: "after (working tree)",
  before: "before (d68e845)",
};

/** One row of a comparison table: side `a` against side `b` in comparison `phase`. */
interface Pair {
  phase: Phase;
  op: string;
  a: string;
  b: string;
}

const OPS: Record<Phase, string> = {
  counter: "1. counter +1",
  list: "2. list append, keep 20",
  write: "3. windowed event",
  read: "4. 1 h window read",
  get: "5. GetFeatures hit, 20 features",
};

/** ours STORE=memory against Redis without persistence: the issue's comparison. */
const MEMORY_PAIRS: Pair[] = [
  { phase: "counter", op: "1. counter +1 (HINCRBY)", a: "ours", b: "redis" },
  { phase: "list", op: "2. list append, keep 20 (LPUSH + LTRIM)", a: "ours", b: "redis" },
  { phase: "write", op: "3. windowed event (bucket hashes)", a: "ours-24h", b: "redis-hash" },
  { phase: "write", op: "3. windowed event (sorted set)", a: "ours-24h", b: "redis-zset" },
  { phase: "read", op: "4. 1 h window read (hashes, Lua)", a: "ours-agg", b: "redis-lua" },
  { phase: "read", op: "4. 1 h window read (hashes, 60 HMGET)", a: "ours-agg", b: "redis-pipe" },
  { phase: "read", op: "4. 1 h window read (sorted set)", a: "ours-agg", b: "redis-zset" },
];

/** Our default config (durable) against Redis fsyncing every write. */
const DURABLE_PAIRS: Pair[] = [
  { phase: "counter", op: "1. counter +1", a: "ours-default", b: "redis-always" },
  { phase: "list", op: "2. list append, keep 20", a: "ours-default", b: "redis-always" },
  {
    phase: "write",
    op: "3. windowed event, fresh (bucket hashes)",
    a: "ours-default-fresh",
    b: "redis-always-hash-fresh",
  },
  {
    phase: "write",
    op: "3. windowed event, fresh (sorted set)",
    a: "ours-default-fresh",
    b: "redis-always-zset-fresh",
  },
];

/** Other views of the same rounds. */
const OTHER_PAIRS: Pair[] = [
  { phase: "counter", op: "1. default config vs Redis without persistence", a: "ours-default", b: "redis" },
  { phase: "list", op: "2. default config vs Redis without persistence", a: "ours-default", b: "redis" },
  { phase: "write", op: "3. fresh windows vs 24 h of buckets (ours)", a: "ours-fresh", b: "ours-24h" },
  { phase: "write", op: "3. ours fresh windows vs Redis bucket hashes", a: "ours-fresh", b: "redis-hash" },
];

/** The Redis sides an op's ours is held against for the ≥ 2× target: the fastest per shape. */
const TARGET_SIDES: { phase: Phase; ours: string; redis: string[] }[] = [
  { phase: "counter", ours: "ours", redis: ["redis"] },
  { phase: "list", ours: "ours", redis: ["redis"] },
  { phase: "write", ours: "ours-24h", redis: ["redis-hash", "redis-zset"] },
  { phase: "read", ours: "ours-agg", redis: ["redis-lua", "redis-pipe", "redis-zset"] },
];

const DURABLE_TARGETS: { phase: Phase; ours: string; redis: string[] }[] = [
  { phase: "counter", ours: "ours-default", redis: ["redis-always"] },
  { phase: "list", ours: "ours-default", redis: ["redis-always"] },
  {
    phase: "write",
    ours: "ours-default-fresh",
    redis: ["redis-always-hash-fresh", "redis-always-zset-fresh"],
  },
];

const SHAPES = ["1x1", "8x8"];
const int = (x: number) => Math.round(x).toLocaleString("en-US");
const x2 = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "–");
const lat = (m: Merged) =>
  `${fmtUs(m.latencyUs.p50)} / ${fmtUs(m.latencyUs.p99)} / ${fmtUs(m.latencyUs.p999)}`;
const cpu = (m: Merged) => Object.values(m.cpuUsPerReq).reduce((a, b) => a + b, 0);
const runCpu = (r: Run) => Object.values(r.cpuUsPerReq).reduce((a, b) => a + b, 0);
const label = (side: string) => SIDE_LABELS[side] ?? side;

const throughputRatio = (c: Comparison, a: string, b: string, shape: string) =>
  ratioOf(c, a, b, shape, (r) => r.throughput);
const p99Ratio = (c: Comparison, a: string, b: string, shape: string) =>
  ratioOf(c, a, b, shape, (r) => r.latencyUs.p99);

function targetRows(r: Results, list: typeof TARGET_SIDES, what: string): Target[] {
  const out: Target[] = [];
  for (const t of list) {
    const c = r.comparisons[t.phase];
    if (!c) continue;
    for (const shape of SHAPES) {
      const a = mergedOf(c, t.ours, shape);
      const bs = t.redis.map((s) => mergedOf(c, s, shape)).filter((m): m is Merged => m !== undefined);
      if (!a || bs.length === 0) continue;
      const b = bs.reduce((x, y) => (y.throughput > x.throughput ? y : x));
      const ratio = throughputRatio(c, t.ours, b.side, shape);
      out.push({
        name: `${OPS[t.phase]} at ${shape}: ${what} / ${label(b.side)}${bs.length > 1 ? " (the fastest Redis layout)" : ""}`,
        goal: "≥ 2× throughput",
        measured: `${int(a.throughput)} vs ${int(b.throughput)} /s`,
        ratio,
        met: ratio >= 2,
      });
    }
  }
  return out;
}

/** The targets of issue 12, checked against the figures of a run. */
export function targets(r: Results): Target[] {
  const t = [
    ...targetRows(r, TARGET_SIDES, "ours (STORE=memory)"),
    ...targetRows(r, DURABLE_TARGETS, "ours (default config)"),
  ];
  const c = r.comparisons.get;
  if (c)
    for (const shape of SHAPES) {
      const a = mergedOf(c, "after", shape);
      const b = mergedOf(c, "before", shape);
      if (!a || !b) continue;
      const tr = throughputRatio(c, "after", "before", shape);
      t.push({
        name: `${OPS.get} at ${shape}: throughput after / before`,
        goal: "≥ 1× (no slower)",
        measured: `${int(a.throughput)} vs ${int(b.throughput)} /s`,
        ratio: tr,
        met: tr >= 1,
      });
      const pr = p99Ratio(c, "after", "before", shape);
      t.push({
        name: `${OPS.get} at ${shape}: p99 after / before`,
        goal: "≤ 1× (no slower)",
        measured: `${fmtUs(a.latencyUs.p99)} vs ${fmtUs(b.latencyUs.p99)}`,
        ratio: pr,
        met: pr <= 1,
      });
    }
  return t;
}

function pairTable(r: Results, pairs: Pair[], headA: string, headB: string): string {
  const rows: string[][] = [];
  for (const p of pairs) {
    const c = r.comparisons[p.phase];
    if (!c) continue;
    for (const shape of SHAPES) {
      const a = mergedOf(c, p.a, shape);
      const b = mergedOf(c, p.b, shape);
      if (!a || !b) continue;
      rows.push([
        p.op,
        shape,
        int(a.throughput),
        int(b.throughput),
        `**${x2(throughputRatio(c, p.a, p.b, shape))}**`,
        lat(a),
        lat(b),
        x2(p99Ratio(c, p.a, p.b, shape)),
        `${cpu(a).toFixed(1)} / ${cpu(b).toFixed(1)}`,
        x2(ratioOf(c, p.a, p.b, shape, runCpu)),
        `${a.genCpuPct.toFixed(0)} / ${b.genCpuPct.toFixed(0)} %`,
        `${a.otherCpuPct.toFixed(0)} / ${b.otherCpuPct.toFixed(0)} %`,
      ]);
    }
  }
  return table(
    [
      "op",
      "K×D",
      `${headA} /s`,
      `${headB} /s`,
      "ratio",
      `${headA} p50 / p99 / p99.9`,
      `${headB} p50 / p99 / p99.9`,
      "p99 ratio",
      "server µs/op",
      "µs/op ratio",
      "gen CPU",
      "other CPU",
    ],
    rows,
    [":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
  );
}

function roundsTable(r: Results): string {
  const rows: string[][] = [];
  for (const phase of PHASES) {
    const c = r.comparisons[phase];
    if (!c) continue;
    for (const m of c.merged)
      rows.push([
        phase,
        label(m.side),
        m.shape,
        m.throughputs.map(int).join(", "),
        m.p99s.map((x) => fmtUs(x)).join(", "),
        `${m.errors}${m.firstError ? ` (${m.firstError.slice(0, 80)})` : ""}`,
      ]);
  }
  return table(["phase", "side", "K×D", "ops/s per round", "p99 per round", "errors"], rows, [
    ":--",
    ":--",
    ":-:",
    "--:",
    "--:",
    "--:",
  ]);
}

function getTable(c: Comparison): string {
  const rows: string[][] = [];
  for (const shape of SHAPES) {
    const a = mergedOf(c, "after", shape);
    const b = mergedOf(c, "before", shape);
    if (!a || !b) continue;
    const perRound = (get: (x: Run) => number) =>
      c.runs
        .filter((x) => x.side === "after" && x.shape === shape)
        .map((x) => {
          const y = c.runs.find((z) => z.side === "before" && z.shape === shape && z.round === x.round);
          return y ? x2(get(x) / get(y)) : "–";
        })
        .join(", ");
    rows.push([
      shape,
      int(a.throughput),
      int(b.throughput),
      `**${x2(throughputRatio(c, "after", "before", shape))}**`,
      perRound((x) => x.throughput),
      lat(a),
      lat(b),
      `**${x2(p99Ratio(c, "after", "before", shape))}**`,
      perRound((x) => x.latencyUs.p99),
      `${cpu(a).toFixed(1)} / ${cpu(b).toFixed(1)}`,
      `**${x2(ratioOf(c, "after", "before", shape, (x) => x.cpuUsPerReq.server ?? Number.NaN))}**`,
      perRound((x) => x.cpuUsPerReq.server ?? Number.NaN),
    ]);
  }
  return table(
    [
      "K×D",
      "after /s",
      "before /s",
      "after / before",
      "per round",
      "after p50 / p99 / p99.9",
      "before p50 / p99 / p99.9",
      "p99 after / before",
      "per round",
      "server µs/req after / before",
      "server CPU after / before",
      "per round",
    ],
    rows,
    [":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
  );
}

export function markdown(r: Results): string {
  const m = r.machine;
  const cfg = r.config;
  const L: string[] = [];
  L.push("# Real-time operations against Redis (issue 12)", "");
  L.push(
    `Run ${r.date.slice(0, 16).replace("T", " ")} UTC at commit ${m.git ? m.git.commit.slice(0, 7) : "?"}` +
      `${m.git?.dirty.length ? ` with uncommitted changes in ${m.git.dirty.length} files under src/ and proto/ (the work of issue 12)` : ""}` +
      `, ${r.totalSeconds} s in all: \`${r.command}\`.`,
    "",
  );
  L.push(
    `Machine: ${m.cpu}, ${m.nproc} cores, ${m.memGiB} GiB; ${m.os}, kernel ${m.kernel}; Bun ${m.bun}; redis-server ${m.redis}.`,
    "",
  );
  L.push(
    `- pinning: ${r.pinning}`,
    `- load before: \`${r.uptimeStart}\``,
    `- load after: \`${r.uptimeEnd}\``,
    "",
  );
  L.push(
    `Method: each comparison runs its sides in alternated rounds (order reversed every other round, ${cfg.rounds} ` +
      `round${cfg.rounds === 1 ? "" : "s"}), every cell a closed loop of K connections × D requests in flight ` +
      `(${cfg.timing.warmupMs} ms warm-up, then ${cfg.timing.durationMs} ms measured): 1x1 is one connection with ` +
      "one request at a time, 8x8 eight connections with eight each (pipelined on our TCP protocol and by Bun's " +
      "Redis client alike). Throughput and each percentile are the median over the rounds; a ratio is the median " +
      "of the per-round ratios (the JSON has every round and the percentiles of all rounds pooled). Latency is one " +
      "op as the caller sees it: for the Redis sides all of its 2-3 (or 60) commands. `server µs/op` is the CPU " +
      "time (utime + stime, all threads, /proc) of the server process per op, warm-up included (`µs/op ratio`: a / b, the median of the per-round ratios; it moves much less with a " +
      "neighbour's load than throughput does); `gen CPU` the " +
      "load generator's share of its one core (near 100 % the client, not the server, sets the pace). A cell during " +
      `which other processes used more than ${cfg.timing.noisyPct} % of a core waits for a quieter moment ` +
      "(bounded) and may run again; `other CPU` is what they used during the kept cell (it includes the kernel's " +
      "loopback softirq time).",
    "",
  );
  L.push(
    `Data: keys uniform over ${int(cfg.entities)} entities per op (counters \`c:<i>\`, lists \`l:<i>\` filled with ` +
      "20 items, fresh windows `f:<i>`), the same ids as keys in Redis. Windows: 60 s buckets kept 24 h. " +
      `${int(cfg.windowEntities)} entities${cfg.windowEntities < cfg.windowEntitiesAsked ? ` (of ${int(cfg.windowEntitiesAsked)} asked: the pre-fill budget ran out)` : ""} ` +
      `hold 24 h of history: ${int(cfg.windowEvents)} events each at uniformly random times over the last 24 h ` +
      "(~1,080 non-empty buckets), observed one by one through UpdateFeatures on ours (its only way in: a " +
      "SetFeatures may not carry a window), written as per-minute hashes and as a sorted set in Redis. The " +
      "window reads run before the window writes, on these entities, so every side reads the pre-filled hour. " +
      "Entities of the 24 h windows are few because ours fills them at the observe rate given below: each observe " +
      "rewrites the whole window.",
    "",
  );
  const pf = r.prefill;
  if (Object.keys(pf).length)
    L.push(
      `Pre-fill (s): ${Object.entries(pf)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}.`,
      "",
    );
  if (r.checks.length)
    L.push(
      "Check after the pre-fill, the same 1 h window read from each (count / sum): " +
        r.checks
          .map((c) => `${c.id}: ours ${c.ours}, hashes ${c.redisHash}, sorted set ${c.redisZset}`)
          .join("; ") +
        ". The sorted set counts the 60 minutes before the read; ours and the hashes the current minute and the 59 before it.",
      "",
    );
  if (r.targets.length) L.push("## Targets", "", targetsTable(r.targets, "target", "measured"), "");
  L.push(
    "## Ours (STORE=memory) against Redis without persistence",
    "",
    "Neither side persists anything: our server with `STORE=memory` (the cache is the store), redis-server " +
      'with `--save "" --appendonly no`. Ratio = ours / Redis (throughput, median of per-round ratios).',
    "",
    pairTable(r, MEMORY_PAIRS, "ours", "Redis"),
    "",
    "## Our default config against Redis with appendfsync always",
    "",
    "Our server as `bun src/main.ts` starts it (STORE=sqlite, DURABILITY=sync: a write is acknowledged once its " +
      'commit is fsynced) against redis-server with `appendonly yes`, `appendfsync always`, `save ""` (each ' +
      "reply after the AOF is fsynced; pipelined commands share one fsync, as our group commit does). The window " +
      "writes of this pair go to fresh windows (`f:<i>`: only the buckets the run itself writes): filling 24 h " +
      "windows through the file was out of the time budget.",
    "",
    pairTable(r, DURABLE_PAIRS, "ours", "Redis"),
    "",
    "## Other ratios from the same rounds",
    "",
    pairTable(r, OTHER_PAIRS, "a", "b"),
    "",
  );
  const g = r.comparisons.get;
  if (g)
    L.push(
      "## 5. Plain GetFeatures hit, before and after issue 12",
      "",
      `The server of ${cfg.before.rev} (${cfg.before.from}, commit ${cfg.before.commit.slice(0, 7)}) and the ` +
        "working tree, each a process with the default config (STORE=sqlite; its own data directory) holding the " +
        `same ${int(cfg.entities)} entities of 20 features (loaded with BatchSet), read by the same client code ` +
        "(our TCP client, typed `getFeatures(id)` of all 20 features: GetFeatures did not change on the wire), " +
        `uniform ids, every read a cache hit, in ${cfg.getRounds} alternated rounds. Server CPU per ` +
        "request is the steadier figure on a shared machine: a neighbour's burst moves throughput and p99 of a " +
        "round far more than the CPU the server spends on each request.",
      "",
      getTable(g),
      "",
    );
  if (r.notes?.length) L.push("## What this shows", "", ...r.notes.map((n) => `- ${n}`), "");
  L.push("## Every round", "", roundsTable(r), "");
  L.push(
    "## What each side does",
    "",
    "- ours: our TCP client (`FeatureStoreClient`, K connections), `updateFeatures` with one update " +
      '(`{ name: "clicks", increment: 1 }`, `{ name: "recent", append: [item], keepLast: 20 }`, ' +
      '`{ name: "spend", observe: v, spec: { bucketMs: 60_000, retentionMs: 86_400_000 } }`), and ' +
      '`getFeatures(id, [], { windows: [{ feature: "spend", windowMs: 3_600_000 }] })` (windows and no names: the aggregates alone). The server keeps ' +
      "count, sum, min and max per bucket and answers count, sum, min, max and mean.",
    "- Redis: `Bun.RedisClient`, one client (connection) per K; it pipelines every command issued in the " +
      "same tick, so the commands of one op and the ops of the D slots on a connection go out together. No " +
      "MULTI anywhere. Counter `HINCRBY c:<i> clicks 1`; list `LPUSH` + `LTRIM 0 19`, pipelined (not atomic); " +
      "window write, bucket hashes: `HINCRBY <id>:<minute> count 1` + `HINCRBYFLOAT … sum v` + `EXPIRE … 86460` " +
      "(count and sum only); sorted set: `ZADD z:<id> t t:seq:v` + `ZREMRANGEBYSCORE z:<id> -inf (t-24h`. " +
      "Window read, bucket hashes: `EVALSHA` of a script summing `HMGET count sum` over the 60 keys (one round " +
      "trip), or 60 pipelined `HMGET` summed by the client; sorted set: `ZRANGEBYSCORE z:<id> (t-1h +inf`, count " +
      "and sum from the members on the client (ZCOUNT would give the count alone; the sum needs the members).",
    "",
  );
  return L.join("\n");
}
