/**
 * Printing, kept apart from measuring: the figures of a run (`Results`) become a markdown
 * report, a JSON file and an SVG of latency percentile curves. No plotting dependency.
 */
import type { Histogram } from "./hist.ts";
import type { LoadResult, Mode, OpName, SystemName } from "./systems.ts";
import { OP_LABELS } from "./systems.ts";

/** Percentiles of a curve: 0, 90, 99, 99.9 ... on a "nines" axis, 10 points per decade. */
export const CURVE_NINES: number[] = Array.from({ length: 41 }, (_, i) => i / 10);

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Latency figures in microseconds. */
export function latencyOf(h: Histogram): Latency {
  const us = (p: number) => round(h.percentile(p) / 1000, 1);
  return {
    p50: us(50),
    p90: us(90),
    p99: us(99),
    p999: us(99.9),
    max: us(100),
    mean: round(h.mean() / 1000, 1),
  };
}

/** [percentile, us] pairs for the plot. */
export function curveOf(h: Histogram): [number, number][] {
  return CURVE_NINES.map((x) => {
    const p = 100 * (1 - 10 ** -x);
    return [round(p, 4), round(h.percentile(p) / 1000, 1)];
  });
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface Cell {
  system: SystemName;
  mode: Mode;
  op: OpName;
  dist: "uniform" | "zipf";
  conns: number;
  depth: number;
  requests: number;
  errors: number;
  firstError?: string;
  seconds: number;
  throughput: number;
  latencyUs: Latency;
  /** Server CPU over the whole cell (warm-up included): percent of one core, and us per request. */
  serverCpuPct: number;
  serverCpuUsPerReq: number;
  /** The load generator's CPU, percent of one core (near 100 % means the client is the limit). */
  clientCpuPct: number;
  /** CPU used by everything else on the machine during the cell, percent of one core (noise). */
  otherCpuPct: number;
  serverRssMB: number;
  /** Runs of this cell: more than 1 when other processes disturbed the first (the quietest is kept). */
  attempts: number;
  curve: [number, number][];
}

export interface OpenCell {
  system: SystemName;
  mode: Mode;
  op: OpName;
  conns: number;
  /** Offered rate as a fraction of the system's closed-loop peak at the same K x D. */
  fraction: number;
  offered: number;
  achieved: number;
  requests: number;
  errors: number;
  latencyUs: Latency;
  peakOutstanding: number;
  maxSendLagMs: number;
  truncated: boolean;
  serverCpuPct: number;
  clientCpuPct: number;
  otherCpuPct: number;
  curve: [number, number][];
}

export interface MetricsRun {
  round: number;
  metrics: "on" | "off";
  shape: string;
  throughput: number;
  p50: number;
  p99: number;
  serverCpuUsPerReq: number;
  otherCpuPct: number;
}

/** One setting's medians over the rounds (serverCpuUsPerReq: absent in runs before it was kept). */
export interface MetricsSide {
  throughput: number;
  p99: number;
  p99s: number[];
  serverCpuUsPerReq?: number;
}

export interface MetricsSummary {
  shape: string;
  on: MetricsSide;
  off: MetricsSide;
  /** on / off throughput (1 = free; 0.95 = 5 % cost): the median of `ratios`. */
  throughputRatio: number;
  /** on / off throughput of each round (their spread is the noise of the ratio). */
  ratios?: number[];
  costPct: number;
  /** Spread of p99 across rounds of the same setting, us (the noise floor). */
  p99NoiseUs: number;
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  /** measured / goal, oriented so that <= 1 is met for "at most" goals and >= 1 for "at least". */
  ratio: number | null;
  met: boolean | null;
  note?: string;
}

export interface Results {
  date: string;
  /** Source measured: the commit, and the files under src/ that differed from it (uncommitted work). */
  git?: { commit: string; dirty: string[] };
  machine: Record<string, string | number>;
  config: Record<string, unknown>;
  pinning: string;
  load: Partial<Record<"featurestore" | "redis", LoadResult>>;
  floorAnswerBytes: number;
  cells: Cell[];
  open: OpenCell[];
  metrics: { runs: MetricsRun[]; summary: MetricsSummary[] } | null;
  targets: Target[];
  totalSeconds: number;
}

const SYSTEM_LABEL: Record<SystemName, string> = {
  tcp: "ours, TCP",
  connect: "ours, Connect/HTTP",
  redis: "Redis 7",
  floor: "transport floor",
  httpfloor: "HTTP floor (Bun.serve)",
  grpc: "ours, native gRPC, grpc-js client",
  stock: "stock grpc-js server, grpc-js client",
  "grpc-h2": "ours, native gRPC, bare node:http2 client",
  "stock-h2": "stock grpc-js server, bare node:http2 client",
};

export function label(system: SystemName, mode: Mode): string {
  if (system === "floor" || system === "httpfloor") return SYSTEM_LABEL[system];
  return `${SYSTEM_LABEL[system]} (${mode})`;
}

/** Requests per second, short (12.3k, 1.20M). */
export function fmtRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e4) return `${Math.round(x / 1e3)}k`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

/** Microseconds, with ms past 10 ms. */
export function fmtUs(us: number): string {
  if (us >= 10_000) return `${(us / 1000).toFixed(1)} ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return `${us.toFixed(0)} µs`;
}

function fmtBytes(b: number): string {
  if (b >= 1 << 30) return `${(b / (1 << 30)).toFixed(2)} GiB`;
  if (b >= 1 << 20) return `${(b / (1 << 20)).toFixed(0)} MiB`;
  return `${(b / 1024).toFixed(0)} KiB`;
}

/** A markdown table; the first column left-aligned, the others right, unless `align` says. */
/** The targets as a markdown table: name, goal, measured, ratio, met or **missed**. */
export function targetsTable(targets: Target[], nameHead: string, measuredHead: string): string {
  return table(
    [nameHead, "goal", measuredHead, "ratio", ""],
    targets.map((t) => [
      t.name,
      t.goal,
      t.measured,
      t.ratio === null ? "–" : `${t.ratio.toFixed(2)}×`,
      t.met === null ? "–" : t.met ? "met" : "**missed**",
    ]),
    [":--", ":--", ":--", "--:", ":-:"],
  );
}

export function table(head: string[], rows: string[][], align?: string[]): string {
  const a = align ?? head.map((_, i) => (i === 0 ? ":--" : "--:"));
  return [`| ${head.join(" | ")} |`, `|${a.join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join(
    "\n",
  );
}

/** Every system and client mode, in the order cells run and tables list them. */
export const MODE_ORDER: [SystemName, Mode][] = [
  ["floor", "raw"],
  ["tcp", "raw"],
  ["tcp", "typed"],
  ["connect", "raw"],
  ["connect", "typed"],
  ["redis", "raw"],
  ["redis", "typed"],
];

/** The markdown report: summary of targets first, then the tables. */
export function markdown(r: Results): string {
  const out: string[] = [];
  const m = r.machine;
  out.push("## End-to-end benchmark");
  out.push("");
  out.push(
    `${r.date.slice(0, 10)} · ${m.cpu} (${m.cores} cores) · ${m.memGiB} GiB · Linux ${m.kernel} · Bun ${m.bun} · Redis ${m.redis} · ` +
      `N = ${Number(r.config.entities).toLocaleString("en-US")} entities × 20 features · ${r.pinning} · ` +
      `${r.config.durationMs} ms per cell after ${r.config.warmupMs} ms warm-up · total ${Math.round(r.totalSeconds)} s` +
      (r.config.quick ? " · **--quick**" : "") +
      (r.git
        ? ` · commit ${r.git.commit.slice(0, 7)}${r.git.dirty.length ? ` + uncommitted ${r.git.dirty.join(", ")}` : ""}`
        : ""),
  );
  const limit = Number(r.config.noisyPct ?? 25);
  const reruns = r.cells.filter((c) => c.attempts > 1).length;
  const noisy = r.cells.filter((c) => c.otherCpuPct > limit).length;
  const noisyOpen = r.open.filter((c) => c.otherCpuPct > limit).length;
  const noisyMetrics = r.metrics?.runs.filter((c) => c.otherCpuPct > limit).length ?? 0;
  if (reruns + noisy + noisyOpen + noisyMetrics > 0) {
    out.push("");
    out.push(
      `The machine was shared while this ran: ${reruns} of ${r.cells.length} closed-loop cells were run again because ` +
        `other processes used CPU meanwhile; ${noisy} closed-loop cells, ${noisyOpen} of ${r.open.length} open-loop cells ` +
        `and ${noisyMetrics} of ${r.metrics?.runs.length ?? 0} metrics runs kept more than ${limit}% of a core of background ` +
        "CPU (the bg CPU column; e2e.json has it for every run).",
    );
  }
  out.push("");
  if (r.targets.length > 0) {
    out.push("### Targets");
    out.push("");
    if (r.config.quick) {
      out.push("_--quick: short cells on a small data set; the verdicts are indicative only._");
      out.push("");
    }
    out.push(targetsTable(r.targets, "target", "measured"));
    out.push("");
  }

  const main = r.cells.filter((c) => c.op === "get_all" && c.dist === "uniform");
  if (main.length > 0) {
    out.push("### GetFeatures, all 20 features, uniform keys, closed loop");
    out.push("");
    out.push(
      "K×D = connections × requests in flight on each. raw = answer bytes undecoded (measures the server); " +
        "typed = decoded into values (what users get). CPU: server µs per request; the load generator's share of its core; " +
        "bg = CPU used by other processes on the machine meanwhile (noise).",
    );
    out.push("");
    const shapes = [...new Set(main.map((c) => `${c.conns}x${c.depth}`))];
    const rows: string[][] = [];
    for (const shape of shapes)
      for (const [sys, mode] of MODE_ORDER) {
        const c = main.find((x) => x.system === sys && x.mode === mode && `${x.conns}x${x.depth}` === shape);
        if (!c) continue;
        rows.push([
          label(sys, mode),
          shape.replace("x", "×"),
          fmtRate(c.throughput),
          fmtUs(c.latencyUs.p50),
          fmtUs(c.latencyUs.p99),
          fmtUs(c.latencyUs.p999),
          fmtUs(c.latencyUs.max),
          c.serverCpuUsPerReq.toFixed(1),
          `${c.clientCpuPct.toFixed(0)}%`,
          `${c.otherCpuPct.toFixed(0)}%`,
        ]);
      }
    out.push(
      table(
        ["system (client)", "K×D", "req/s", "p50", "p99", "p99.9", "max", "srv µs/req", "gen CPU", "bg CPU"],
        rows,
        [":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  }

  const opsCells = r.cells.filter((c) => !(c.op === "get_all" && c.dist === "uniform"));
  if (opsCells.length > 0) {
    const all = r.cells;
    const cols = MODE_ORDER.filter(([s, mo]) =>
      opsCells.some((c) => c.system === s && c.mode === mo && c.op !== "get_all"),
    );
    const keys: [OpName, string][] = [];
    for (const c of all) if (!keys.some(([o, d]) => o === c.op && d === c.dist)) keys.push([c.op, c.dist]);
    const shapes = [...new Set(opsCells.map((c) => `${c.conns}x${c.depth}`))];
    for (const shape of shapes) {
      const isLat = shape === "1x1";
      out.push(
        isLat
          ? `### Every operation at 1×1: p50 / p99`
          : `### Every operation at ${shape.replace("x", "×")}: throughput (p99)`,
      );
      out.push("");
      const rows = keys.map(([op, dist]) => [
        `${OP_LABELS[op]}, ${dist}`,
        ...cols.map(([s, mo]) => {
          const c = all.find(
            (x) =>
              x.system === s &&
              x.mode === mo &&
              x.op === op &&
              x.dist === dist &&
              `${x.conns}x${x.depth}` === shape,
          );
          if (!c) return "–";
          return isLat
            ? `${fmtUs(c.latencyUs.p50)} / ${fmtUs(c.latencyUs.p99)}`
            : `${fmtRate(c.throughput)} (${fmtUs(c.latencyUs.p99)})`;
        }),
      ]);
      out.push(table(["operation, keys", ...cols.map(([s, mo]) => label(s, mo))], rows));
      out.push("");
    }
  }

  if (r.open.length > 0) {
    out.push("### Open loop: fixed offered rate, latency from the intended send time");
    out.push("");
    out.push(
      "Rates are fractions of the same system's closed-loop peak at 8×8; a send that is late still counts from when it was due (no coordinated omission).",
    );
    out.push("");
    out.push(
      table(
        ["system (client)", "load", "offered", "achieved", "p50", "p99", "p99.9", "max", "srv CPU", "bg CPU"],
        r.open.map((o) => [
          label(o.system, o.mode),
          `${Math.round(o.fraction * 100)}%`,
          fmtRate(o.offered),
          fmtRate(o.achieved) + (o.truncated ? " (cut)" : ""),
          fmtUs(o.latencyUs.p50),
          fmtUs(o.latencyUs.p99),
          fmtUs(o.latencyUs.p999),
          fmtUs(o.latencyUs.max),
          `${o.serverCpuPct.toFixed(0)}%`,
          `${o.otherCpuPct.toFixed(0)}%`,
        ]),
        [":--", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  }

  const loads = Object.entries(r.load);
  if (loads.length > 0) {
    out.push("### Loading and memory");
    out.push("");
    out.push(
      table(
        [
          "system",
          "entities",
          "load time",
          "entities/s",
          "RSS after load",
          "RSS per entity",
          "allocator per entity",
        ],
        loads.map(([name, l]) => [
          name === "redis" ? "Redis 7 (pipelined HSET)" : "ours (BatchSet of 500)",
          l!.entities.toLocaleString("en-US"),
          `${l!.seconds.toFixed(1)} s`,
          fmtRate(l!.entities / l!.seconds),
          fmtBytes(l!.rssAfterBytes),
          `${Math.round(l!.bytesPerEntity)} B`,
          l!.usedMemoryPerEntity !== undefined
            ? `${Math.round(l!.usedMemoryPerEntity)} B (used_memory)`
            : "–",
        ]),
        [":--", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  }

  if (r.metrics) {
    out.push("### Metrics on vs off (GetFeatures over TCP, raw client)");
    out.push("");
    out.push(
      table(
        [
          "K×D",
          "on: req/s",
          "off: req/s",
          "on/off (median of rounds)",
          "on/off per round",
          "srv µs/req on / off",
          "on: p99 µs (rounds)",
          "off: p99 µs (rounds)",
          "p99 noise",
        ],
        r.metrics.summary.map((s) => [
          s.shape.replace("x", "×"),
          fmtRate(s.on.throughput),
          fmtRate(s.off.throughput),
          `${s.throughputRatio.toFixed(3)} (${s.costPct >= 0 ? `${s.costPct.toFixed(1)}% cost` : `on ${(-s.costPct).toFixed(1)}% faster`})`,
          s.ratios?.map((x) => x.toFixed(2)).join(" / ") ?? "",
          s.on.serverCpuUsPerReq !== undefined
            ? `${s.on.serverCpuUsPerReq.toFixed(2)} / ${s.off.serverCpuUsPerReq?.toFixed(2)}`
            : "",
          s.on.p99s.map((x) => x.toFixed(0)).join(" / "),
          s.off.p99s.map((x) => x.toFixed(0)).join(" / "),
          `±${s.p99NoiseUs.toFixed(0)} µs`,
        ]),
        [":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  }
  out.push(
    `Typical GetFeatures answer: ${r.floorAnswerBytes} bytes of body (the floor answers with a frame of that size). ` +
      "Full figures: `bench/results/e2e.json`; percentile curves: `bench/results/e2e-latency.svg`.",
  );
  out.push("");
  return out.join("\n");
}

// ---- SVG ----------------------------------------------------------------------------------------

const COLORS: Record<string, string> = {
  "floor/raw": "#7f7f7f",
  "tcp/raw": "#1f77b4",
  "tcp/typed": "#17becf",
  "connect/raw": "#9467bd",
  "connect/typed": "#e377c2",
  "redis/raw": "#ff7f0e",
  "redis/typed": "#d62728",
};

interface Panel {
  title: string;
  series: { name: string; color: string; points: [number, number][]; dashed: boolean }[];
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * Latency percentile curves: x is the percentile on a "nines" axis (0, 90, 99, 99.9, 99.99),
 * y is latency on a log axis; one panel per closed-loop shape of GetFeatures.
 */
export function svg(r: Results): string {
  const panels: Panel[] = [];
  const main = r.cells.filter((c) => c.op === "get_all" && c.dist === "uniform");
  for (const shape of [...new Set(main.map((c) => `${c.conns}x${c.depth}`))]) {
    const series = MODE_ORDER.flatMap(([s, mo]) => {
      const c = main.find((x) => x.system === s && x.mode === mo && `${x.conns}x${x.depth}` === shape);
      if (!c) return [];
      return [
        {
          name: `${label(s, mo)} ${fmtRate(c.throughput)}/s`,
          color: COLORS[`${s}/${mo}`]!,
          points: c.curve,
          dashed: mo === "raw" && s !== "floor",
        },
      ];
    });
    panels.push({ title: `GetFeatures closed loop ${shape.replace("x", "×")}`, series });
  }
  const b100 = r.cells.filter(
    (c) => c.op === "batch100" && c.dist === "uniform" && c.conns === 1 && c.depth === 1,
  );
  if (b100.length > 0)
    panels.push({
      title: "BatchGet 100, 1×1",
      series: b100.map((c) => ({
        name: label(c.system, c.mode),
        color: COLORS[`${c.system}/${c.mode}`]!,
        points: c.curve,
        dashed: c.mode === "raw",
      })),
    });
  const openMid = r.open.filter((o) => Math.abs(o.fraction - 0.5) < 0.01);
  if (openMid.length > 0)
    panels.push({
      title: "Open loop at 50% of peak",
      series: openMid.map((o) => ({
        name: `${label(o.system, o.mode)} ${fmtRate(o.offered)}/s`,
        color: COLORS[`${o.system}/${o.mode}`]!,
        points: o.curve,
        dashed: o.mode === "raw" && o.system !== "floor",
      })),
    });

  const W = 460;
  const H = 340;
  const cols = 2;
  const rowsN = Math.ceil(panels.length / cols);
  const width = W * cols;
  const height = H * rowsN + 40;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  parts.push(
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="14">Latency by percentile (log scale), ${esc(String(r.machine.cpu))}, ${r.date.slice(0, 10)}</text>`,
  );
  panels.forEach((p, i) => {
    const ox = (i % cols) * W;
    const oy = 40 + Math.floor(i / cols) * H;
    parts.push(panelSvg(p, ox, oy, W, H));
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

function panelSvg(p: Panel, ox: number, oy: number, W: number, H: number): string {
  const left = ox + 56;
  const right = ox + W - 24;
  const top = oy + 24;
  const bottom = oy + H - 44;
  const all = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter((y) => y > 0);
  if (all.length === 0) return "";
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const xMax = CURVE_NINES[CURVE_NINES.length - 1]!;
  const xOf = (pct: number) => {
    const nines = pct >= 100 ? xMax : Math.min(xMax, -Math.log10(1 - pct / 100));
    return left + (nines / xMax) * (right - left);
  };
  const yOf = (us: number) =>
    bottom -
    ((Math.log10(Math.max(us, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (bottom - top);
  const s: string[] = [];
  s.push(
    `<text x="${(left + right) / 2}" y="${oy + 14}" text-anchor="middle" font-size="12">${esc(p.title)}</text>`,
  );
  s.push(
    `<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#999"/>`,
  );
  for (let d = lo; d <= hi * 1.001; d *= 10) {
    const y = yOf(d);
    s.push(`<line x1="${left}" x2="${right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    const lab = d >= 1000 ? `${d / 1000} ms` : `${d} µs`;
    s.push(`<text x="${left - 4}" y="${y + 4}" text-anchor="end">${lab}</text>`);
  }
  for (const [pct, lab] of [
    [0, "p0"],
    [90, "p90"],
    [99, "p99"],
    [99.9, "p99.9"],
    [99.99, "p99.99"],
  ] as [number, string][]) {
    const x = xOf(pct);
    s.push(`<line x1="${x}" x2="${x}" y1="${top}" y2="${bottom}" stroke="#eee"/>`);
    s.push(`<text x="${x}" y="${bottom + 14}" text-anchor="middle">${lab}</text>`);
  }
  p.series.forEach((ser, k) => {
    const d = ser.points.map(
      ([pct, us], j) => `${j === 0 ? "M" : "L"}${xOf(pct).toFixed(1)},${yOf(us).toFixed(1)}`,
    );
    s.push(
      `<path d="${d.join(" ")}" fill="none" stroke="${ser.color}" stroke-width="1.8"${ser.dashed ? ' stroke-dasharray="5,3"' : ""}/>`,
    );
    const ly = top + 12 + k * 13;
    s.push(
      `<line x1="${left + 8}" x2="${left + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${ser.color}" stroke-width="2"${ser.dashed ? ' stroke-dasharray="5,3"' : ""}/>`,
    );
    s.push(`<text x="${left + 30}" y="${ly}">${esc(ser.name)}</text>`);
  });
  return s.join("\n");
}
