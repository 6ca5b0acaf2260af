/**
 * Printing of the gRPC comparison (issue 11), kept apart from measuring (grpc.ts): the figures
 * become bench/results/e2e-grpc.md; run.ts writes them as e2e-grpc.json too.
 */
import type { GrpcMeasured, GrpcSummary } from "./grpc.ts";
import { GRPC_ROWS } from "./grpc.ts";
import { fmtRate, fmtUs, table, targetsTable } from "./report.ts";
import type { Mode, SystemName } from "./systems.ts";

/** Everything a run of `--grpc` records. */
export interface GrpcResults extends GrpcMeasured {
  kind: "grpc";
  date: string;
  git?: { commit: string; dirty: string[] };
  machine: Record<string, string | number>;
  config: Record<string, unknown>;
  pinning: string;
  totalSeconds: number;
}

const SERVER: Record<string, string> = {
  grpc: "ours, native gRPC",
  "grpc-h2": "ours, native gRPC",
  stock: "stock grpc-js server",
  "stock-h2": "stock grpc-js server",
  tcp: "ours, TCP",
  connect: "ours, Connect/HTTP",
};

function client(system: SystemName, mode: Mode): string {
  if (system === "grpc-h2" || system === "stock-h2") return "bare node:http2 client, bytes";
  if (system === "grpc" || system === "stock")
    return mode === "typed"
      ? "grpc-js + proto-loader stubs, objects"
      : "grpc-js, identity serializers, bytes";
  if (system === "tcp")
    return mode === "typed" ? "FeatureStoreClient, decoded values" : "FeatureStoreClient.call, bytes";
  return mode === "typed" ? "fetch + our decoder, values" : "fetch, bytes";
}

/** The stock row a row is compared with: the same client; our other transports against the user's stock setup. */
function baselineOf(system: SystemName, mode: Mode): [SystemName, Mode] | null {
  if (system === "grpc") return ["stock", mode];
  if (system === "grpc-h2") return ["stock-h2", "raw"];
  if (system === "tcp" || system === "connect") return ["stock", "typed"];
  return null;
}

export function grpcMarkdown(r: GrpcResults): string {
  const out: string[] = [];
  const m = r.machine;
  const n = Number(r.config.entities);
  out.push("## Native gRPC against a stock grpc-js server (issue 11)");
  out.push("");
  out.push(
    `${r.date.slice(0, 10)} · ${m.cpu} (nproc ${m.cores}) · Linux ${m.kernel} · Bun ${m.bun} · ` +
      Object.entries(r.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(" · ") +
      ` · N = ${n.toLocaleString("en-US")} entities × 20 features · ${r.pinning} · ` +
      `${r.config.rounds} alternating rounds of ${r.config.durationMs} ms per cell after ${r.config.warmupMs} ms warm-up · ` +
      `total ${Math.round(r.totalSeconds)} s` +
      (r.git
        ? ` · commit ${r.git.commit.slice(0, 7)}${r.git.dirty.length ? ` + uncommitted ${r.git.dirty.join(", ")}` : ""}`
        : ""),
  );
  out.push("");
  out.push(
    `Both servers hold the same entities (checked: the same 20 features for 3 probe ids; a full answer is ` +
      `${r.answerBytes.ours} bytes from ours, ${r.answerBytes.stock} from stock). Loading: ours ` +
      `${r.load.featurestore.seconds.toFixed(1)} s by BatchSet over TCP, ${Math.round(r.load.featurestore.bytesPerEntity)} B RSS per entity; ` +
      `stock ${r.load.stock.seconds.toFixed(1)} s by BatchSet over gRPC, ${Math.round(r.load.stock.bytesPerEntity)} B RSS per entity.`,
  );
  out.push("");
  if (r.targets.length > 0) {
    out.push("### Target: at least 2× the stock server's throughput at 8×8, at a lower p99");
    out.push("");
    out.push(targetsTable(r.targets, "comparison", "measured (ours vs stock)"));
    out.push("");
  }
  const note = clientBoundNote(r.summary);
  if (note) {
    out.push(note);
    out.push("");
  }
  const ops = [...new Set(r.summary.map((s) => s.op))];
  for (const op of ops) {
    out.push(`### ${op === "get_all" ? "GetFeatures, all 20 features" : op}, uniform keys, closed loop`);
    out.push("");
    out.push(
      "K×D = connections × calls in flight on each. rounds: the quiet rounds summarized (other processes within " +
        `${r.config.noisyPct}% of a core; all rounds when none was) of those run; req/s: their median (lowest–highest); ` +
        "latencies from their answers together. × stock: throughput over the stock server's with the same client " +
        "(TCP and Connect rows: over stock with proto-loader stubs, the user's alternative). srv µs/req: the " +
        "server process's CPU (/proc/<pid>/stat, utime + stime) per request; srv / gen CPU: share of its core used " +
        "by the server and by the load generator; bg: other processes (noise).",
    );
    out.push("");
    const rows: string[][] = [];
    const shapes = [...new Set(r.summary.filter((s) => s.op === op).map((s) => s.shape))];
    for (const shape of shapes)
      for (const [sys, mode] of GRPC_ROWS) {
        const s = find(r.summary, sys, mode, op, shape);
        if (!s) continue;
        const base = baselineOf(sys, mode);
        const b = base ? find(r.summary, base[0], base[1], op, shape) : undefined;
        rows.push([
          SERVER[sys] ?? sys,
          client(sys, mode),
          shape.replace("x", "×"),
          `${s.roundsUsed}/${s.rounds}`,
          `${fmtRate(s.throughput)} (${fmtRate(s.throughputMin)}–${fmtRate(s.throughputMax)})`,
          b ? `${(s.throughput / b.throughput).toFixed(2)}×` : "–",
          fmtUs(s.latencyUs.p50),
          fmtUs(s.latencyUs.p99),
          fmtUs(s.latencyUs.p999),
          s.serverCpuUsPerReq.toFixed(1),
          `${s.serverCpuPct.toFixed(0)}%`,
          `${s.clientCpuPct.toFixed(0)}%`,
          `${s.otherCpuPct.toFixed(0)}%`,
        ]);
      }
    out.push(
      table(
        [
          "server",
          "client",
          "K×D",
          "rounds",
          "req/s",
          "× stock",
          "p50",
          "p99",
          "p99.9",
          "srv µs/req",
          "srv CPU",
          "gen CPU",
          "bg",
        ],
        rows,
        [":--", ":--", ":-:", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
      ),
    );
    out.push("");
  }
  const errors = r.summary.filter((s) => s.errors > 0);
  if (errors.length > 0) {
    out.push(
      `Errors: ${errors.map((s) => `${s.system}/${s.mode} ${s.shape}: ${s.errors}`).join("; ")} (first messages in e2e-grpc.json).`,
    );
    out.push("");
  }
  return out.join("\n");
}

/**
 * Says when grpc-js saturated the load generator's core at 8×8 so that the two servers look
 * alike, with what separates them: the bare client's rows and the server CPU per request.
 */
function clientBoundNote(s: GrpcSummary[]): string | null {
  const ours = find(s, "grpc", "typed", "get_all", "8x8");
  const stock = find(s, "stock", "typed", "get_all", "8x8");
  if (!ours || !stock) return null;
  const gen = Math.min(ours.clientCpuPct, stock.clientCpuPct);
  const srv = Math.max(ours.serverCpuPct, stock.serverCpuPct);
  if (gen < 85 || srv >= gen) return null;
  const bareOurs = find(s, "grpc-h2", "raw", "get_all", "8x8");
  const bareStock = find(s, "stock-h2", "raw", "get_all", "8x8");
  return (
    `**The grpc-js client is the limit at 8×8**: with proto-loader stubs the load generator used ` +
    `${ours.clientCpuPct.toFixed(0)}% / ${stock.clientCpuPct.toFixed(0)}% of its core (ours / stock) while the servers used ` +
    `${ours.serverCpuPct.toFixed(0)}% / ${stock.serverCpuPct.toFixed(0)}% of theirs, so both servers answer about as fast as ` +
    `grpc-js on Bun can ask (${fmtRate(ours.throughput)} vs ${fmtRate(stock.throughput)}/s). The servers' own cost: ` +
    `${ours.serverCpuUsPerReq.toFixed(0)} vs ${stock.serverCpuUsPerReq.toFixed(0)} µs of server CPU per request with that client` +
    (bareOurs && bareStock
      ? `; with the bare node:http2 client, which leaves the servers the bottleneck, ${fmtRate(bareOurs.throughput)} vs ` +
        `${fmtRate(bareStock.throughput)}/s (${(bareOurs.throughput / bareStock.throughput).toFixed(2)}×) at ` +
        `${bareOurs.serverCpuUsPerReq.toFixed(0)} vs ${bareStock.serverCpuUsPerReq.toFixed(0)} µs per request.`
      : ".")
  );
}

function find(
  s: GrpcSummary[],
  system: SystemName,
  mode: Mode,
  op: string,
  shape: string,
): GrpcSummary | undefined {
  return s.find((x) => x.system === system && x.mode === mode && x.op === op && x.shape === shape);
}
