/**
 * From the rounds to the figures (medians, ranges, ratios, verdicts) and from the figures to
 * markdown. Nothing here measures.
 */
import {
  AUTH_TARGET,
  CONFIGS,
  type Comparison,
  type ConfigName,
  METRICS,
  type Metric,
  type MetricRatio,
  type Results,
  type Row,
  type Run,
  type Spread,
  type Summary,
  TRANSPORTS,
  type Transport,
  type Verdict,
} from "./model.ts";

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function spread(xs: number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** The comparisons made for every transport and shape: [config, base, has the auth target]. */
const PAIRS: readonly [ConfigName, ConfigName, boolean][] = [
  ["auth", "plain", true],
  ["auth+tls", "tls", true],
  ["tls", "plain", false],
  ["auth+tls", "plain", false],
];

/** Worse means less throughput, or more latency or CPU. */
function cost(metric: Metric, ratio: number): number {
  return metric === "throughput" ? 1 - ratio : ratio - 1;
}

function verdictOf(metric: Metric, m: MetricRatio, rounds: number): Verdict {
  if (cost(metric, m.ratio) < AUTH_TARGET) return "met";
  return m.worseRounds === rounds ? "missed" : "noise";
}

function compare(
  runs: Run[],
  rows: Row[],
  transport: Transport,
  shape: string,
  config: ConfigName,
  base: ConfigName,
  targeted: boolean,
): Comparison | null {
  const a = rows.find((r) => r.transport === transport && r.shape === shape && r.config === config);
  const b = rows.find((r) => r.transport === transport && r.shape === shape && r.config === base);
  if (!a || !b) return null;
  const of = (c: ConfigName) =>
    new Map(
      runs
        .filter((r) => r.transport === transport && r.shape === shape && r.config === c)
        .map((r) => [r.round, r]),
    );
  const ra = of(config);
  const rb = of(base);
  const rounds = [...ra.keys()].filter((k) => rb.has(k));
  const metrics = {} as Record<Metric, MetricRatio>;
  let verdict: Verdict = "met";
  for (const metric of METRICS) {
    const paired = rounds.map((k) => ra.get(k)![metric] / rb.get(k)![metric]);
    const m: MetricRatio = {
      ratio: a[metric].median / b[metric].median,
      pairedMin: Math.min(...paired),
      pairedMax: Math.max(...paired),
      worseRounds: paired.filter((p) => cost(metric, p) > 0).length,
    };
    if (targeted) {
      m.verdict = verdictOf(metric, m, rounds.length);
      if (m.verdict === "missed" || (m.verdict === "noise" && verdict === "met")) verdict = m.verdict;
    }
    metrics[metric] = m;
  }
  return {
    transport,
    shape,
    config,
    base,
    targeted,
    rounds: rounds.length,
    metrics,
    ...(targeted ? { verdict } : {}),
  };
}

/** Rows (medians and ranges per server) and comparisons (ratios and verdicts). */
export function summarize(runs: Run[]): Summary {
  // The shapes run, in the order they ran (--shapes may pick others than SHAPES).
  const shapes = [...new Set(runs.map((r) => r.shape))];
  const rows: Row[] = [];
  for (const transport of TRANSPORTS)
    for (const shape of shapes)
      for (const config of CONFIGS) {
        const rs = runs.filter((r) => r.transport === transport && r.shape === shape && r.config === config);
        if (rs.length === 0) continue;
        const conns = rs.map((r) => r.connections).filter((x): x is number => x !== undefined);
        const recon = rs.map((r) => r.reconnects).filter((x): x is number => x !== undefined);
        rows.push({
          transport,
          shape,
          config,
          rounds: rs.length,
          throughput: spread(rs.map((r) => r.throughput)),
          p50Us: spread(rs.map((r) => r.p50Us)),
          p99Us: spread(rs.map((r) => r.p99Us)),
          serverCpuUsPerReq: spread(rs.map((r) => r.serverCpuUsPerReq)),
          clientCpuPct: median(rs.map((r) => r.clientCpuPct)),
          otherCpuPct: median(rs.map((r) => r.otherCpuPct)),
          ...(conns.length ? { connections: Math.max(...conns) } : {}),
          ...(recon.length ? { reconnects: median(recon) } : {}),
        });
      }
  const comparisons: Comparison[] = [];
  for (const transport of TRANSPORTS)
    for (const shape of shapes)
      for (const [config, base, targeted] of PAIRS) {
        const c = compare(runs, rows, transport, shape, config, base, targeted);
        if (c) comparisons.push(c);
      }
  return { rows, comparisons };
}

// ---- markdown ---------------------------------------------------------------------------------

const PORT: Record<Transport, string> = { tcp: "TCP", connect: "Connect" };
const LABEL: Record<ConfigName, string> = {
  plain: "plain",
  auth: "auth",
  tls: "TLS",
  "auth+tls": "auth + TLS",
};
const VERDICT: Record<Verdict, string> = { met: "met", noise: "within noise", missed: "**missed**" };

function rate(x: number): string {
  if (x >= 100_000) return `${Math.round(x / 1000)}k`;
  if (x >= 1000) return `${(x / 1000).toFixed(1)}k`;
  return String(Math.round(x));
}

function us(x: number): string {
  if (x >= 10_000) return `${(x / 1000).toFixed(1)} ms`;
  if (x >= 1000) return `${(x / 1000).toFixed(2)} ms`;
  return `${Math.round(x)} µs`;
}

function withRange(s: Spread, f: (x: number) => string): string {
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

const x2 = (r: number) => `${r.toFixed(2)}×`;
const pct = (r: number) => `${r >= 1 ? "+" : "−"}${Math.abs((r - 1) * 100).toFixed(1)} %`;

function ratioCell(m: MetricRatio): string {
  return `${x2(m.ratio)} (${m.pairedMin.toFixed(2)}–${m.pairedMax.toFixed(2)})`;
}

function shapeLabel(shape: string): string {
  return shape.replace("x", "×");
}

/** Which metrics decided a verdict other than met, e.g. "p99 +6.1 %, worse in 4/6 rounds". */
function why(c: Comparison): string {
  const names: Record<Metric, string> = { throughput: "req/s", p99Us: "p99", serverCpuUsPerReq: "CPU/req" };
  const parts: string[] = [];
  for (const metric of METRICS) {
    const m = c.metrics[metric];
    if (m.verdict === undefined || m.verdict === "met") continue;
    parts.push(`${names[metric]} ${pct(m.ratio)}, worse in ${m.worseRounds}/${c.rounds} rounds`);
  }
  return parts.join("; ");
}

/** The table for the README: every server, median (min–max across rounds), ratios vs plain. */
export function readmeTable(s: Summary): string {
  const out = [
    "| port | K×D | server | req/s (min–max) | × plain | p99 (min–max) | × plain | server µs/req | × plain | auth target (< 3 %) |",
    "|:--|:-:|:--|--:|--:|--:|--:|--:|--:|:--|",
  ];
  for (const row of s.rows) {
    const vsPlain = s.comparisons.find(
      (c) =>
        c.transport === row.transport &&
        c.shape === row.shape &&
        c.config === row.config &&
        c.base === "plain",
    );
    const target = s.comparisons.find(
      (c) => c.transport === row.transport && c.shape === row.shape && c.config === row.config && c.targeted,
    );
    const r = (m: Metric) => (vsPlain ? x2(vsPlain.metrics[m].ratio) : "–");
    const verdict = target?.verdict
      ? `${VERDICT[target.verdict]}${target.base === "plain" ? "" : ` (vs ${LABEL[target.base]})`}`
      : "–";
    out.push(
      `| ${PORT[row.transport]} | ${shapeLabel(row.shape)} | ${LABEL[row.config]} | ${withRange(row.throughput, rate)} | ${r("throughput")} | ${withRange(row.p99Us, us)} | ${r("p99Us")} | ${row.serverCpuUsPerReq.median.toFixed(1)} | ${r("serverCpuUsPerReq")} | ${verdict} |`,
    );
  }
  return out.join("\n");
}

function comparisonTable(s: Summary, targeted: boolean): string {
  const out = [
    `| port | K×D | ${targeted ? "auth on" : "server"} | vs | req/s × | p99 × | server CPU/req × |${targeted ? " verdict |" : ""}`,
    `|:--|:-:|:--|:--|--:|--:|--:|${targeted ? ":--|" : ""}`,
  ];
  for (const c of s.comparisons) {
    if (c.targeted !== targeted) continue;
    const verdict = c.verdict ? ` ${VERDICT[c.verdict]}${c.verdict === "met" ? "" : `: ${why(c)}`} |` : "";
    out.push(
      `| ${PORT[c.transport]} | ${shapeLabel(c.shape)} | ${LABEL[c.config]} | ${LABEL[c.base]} | ${ratioCell(c.metrics.throughput)} | ${ratioCell(c.metrics.p99Us)} | ${ratioCell(c.metrics.serverCpuUsPerReq)} |${verdict}`,
    );
  }
  return out.join("\n");
}

function diagnostics(s: Summary): string {
  const out = [
    "| port | K×D | server | p50 (min–max) | server CPU µs/req (min–max) | generator CPU | other CPU | Connect: connections (max), closed in the window |",
    "|:--|:-:|:--|--:|--:|--:|--:|--:|",
  ];
  for (const r of s.rows)
    out.push(
      `| ${PORT[r.transport]} | ${shapeLabel(r.shape)} | ${LABEL[r.config]} | ${withRange(r.p50Us, us)} | ${withRange(r.serverCpuUsPerReq, (x) => x.toFixed(1))} | ${Math.round(r.clientCpuPct)} % | ${Math.round(r.otherCpuPct)} % | ${r.connections !== undefined ? `${r.connections}, ${r.reconnects}` : "–"} |`,
    );
  return out.join("\n");
}

export function markdown(r: Results): string {
  const m = r.machine;
  const s = r.summary;
  const o = r.options;
  const targeted = s.comparisons.filter((c) => c.targeted);
  const count = (v: Verdict) => targeted.filter((c) => c.verdict === v).length;
  const other = median(r.runs.map((x) => x.otherCpuPct));
  const busy = r.runs.filter((x) => x.otherCpuPct > 25).length;
  return `# Security cost benchmark (issue 13)${r.quick ? " — quick run" : ""}

${r.date} · commit \`${r.commit}\` · ${m.cores} × ${m.cpu} · ${m.memGiB} GiB · Bun ${m.bun} · Linux ${m.kernel}

Load average (1, 5, 15 min) at start: **${r.loadAtStart.load.join(", ")}**; at end: ${r.loadAtEnd.load.join(", ")} (\`uptime\`: ${r.loadAtStart.line}). Other processes used a median of ${Math.round(other)} % of a core during the cells (over 25 % in ${busy} of ${r.runs.length}).

GetFeatures of all 20 features of the e2e workload (\`bench/e2e/workload.ts\`), uniform keys over ${o.entities.toLocaleString("en-US")} entities loaded into four \`bun src/main.ts\` servers with \`STORE=memory\` that differ only in their security settings: **plain**; **auth** (\`AUTH_TOKENS_FILE\`, a \`read\` token); **TLS** (\`TLS_CERT_FILE\`/\`TLS_KEY_FILE\`, an EC P-256 certificate from a test CA); **auth + TLS**. TCP: the product's typed client (\`FeatureStoreClient.getFeatures\`, \`token\`, \`tls: { ca }\`), K connections × D in flight. Connect: unary, binary protobuf, Bun's \`fetch\` (\`authorization: Bearer\`; https with \`tls: { ca }\`), the answer decoded; HTTP/1.1 has no pipelining, so K × D in flight is K × D keep-alive connections. Closed loop; ${r.pinning}. ${o.rounds} rounds; in each, every (port, K×D) cell runs the four servers back to back, in the order plain, auth, TLS, auth + TLS in even rounds and reversed in odd ones, each for ${o.warmupMs} ms unmeasured and then ${o.durationMs} ms measured. Server CPU per request: utime + stime of the server (\`/proc/<pid>/stat\`) over the measured window / requests. Run took ${r.totalSeconds} s.

Figures are the median of the rounds, (min–max) across rounds. Ratios are of the medians; in the comparison tables the range is that of the per-round ratios (each round's pair ran seconds apart), which shows the noise.

## GetFeatures, security on vs off

${readmeTable(s)}

Auth target: authentication costs under ${AUTH_TARGET * 100} % on throughput, p99 and server CPU per request (for auth + TLS, against TLS alone). *met*: under ${AUTH_TARGET * 100} % on all three; *within noise*: over it on some metric, but not worse in every round (the sign of the difference changes from round to round); *missed*: over it and worse in every round. ${count("met")} of ${targeted.length} met, ${count("noise")} within noise, ${count("missed")} missed.

## The cost of authentication

${comparisonTable(s, true)}

## The cost of TLS

${comparisonTable(s, false)}

## Per server: p50, CPU and noise

${diagnostics(s)}

\`generator CPU\`: the load generator's core (100 % means the client, not the server, is the limit, and throughput then measures the client's cost: the typed decode, and its side of TLS). \`other CPU\`: every other process on the machine during the cell, percent of one core. Connect: the most connections open to the server at the end of a cell (idle ones kept by fetch's pool included), and the median count of sockets closed during the measured window (TIME_WAIT): non-zero means fetch reconnected (a new TLS handshake each) inside the window.
`;
}
