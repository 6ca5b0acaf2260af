/** The security benchmark's configurations and the shape of its results file. */

/** The four servers: they differ only in AUTH_TOKENS_FILE and TLS_CERT_FILE/TLS_KEY_FILE. */
export const CONFIGS = ["plain", "auth", "tls", "auth+tls"] as const;
export type ConfigName = (typeof CONFIGS)[number];

/** TCP: the product's typed client. Connect: binary protobuf over Bun's fetch. */
export const TRANSPORTS = ["tcp", "connect"] as const;
export type Transport = (typeof TRANSPORTS)[number];

/** K connections x D requests in flight on each (on Connect, K x D connections: no pipelining). */
export const SHAPES: readonly [number, number][] = [
  [1, 1],
  [8, 8],
];

/**
 * The cost target of authentication: within noise, i.e. under 3 % on throughput, p99 and
 * server CPU per request (a token is checked once per TCP connection, and cached per token on
 * HTTP, so the per-request cost should be a bit test or a Map lookup).
 */
export const AUTH_TARGET = 0.03;

/** One measured cell: one server, one transport, one shape, one round. */
export interface Run {
  round: number;
  transport: Transport;
  /** "1x1", "8x8". */
  shape: string;
  config: ConfigName;
  requests: number;
  seconds: number;
  throughput: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  /** Server CPU (user + system, all threads) over the measured window / requests, µs. */
  serverCpuUsPerReq: number;
  /** CPU over the window, percent of one core. */
  serverCpuPct: number;
  /** The load generator (this process). */
  clientCpuPct: number;
  /** Every other process on the machine (noise). */
  otherCpuPct: number;
  /** Connect only: server-side connections open at the end, and connections closed during the cell (TIME_WAIT). */
  connections?: number;
  reconnects?: number;
}

/** Median and range across rounds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** One server on one transport and shape, over every round. */
export interface Row {
  transport: Transport;
  shape: string;
  config: ConfigName;
  rounds: number;
  throughput: Spread;
  p50Us: Spread;
  p99Us: Spread;
  serverCpuUsPerReq: Spread;
  clientCpuPct: number;
  otherCpuPct: number;
  /** Connect: most connections open at the end of a cell; median closed in the window. */
  connections?: number;
  reconnects?: number;
}

export type Metric = "throughput" | "p99Us" | "serverCpuUsPerReq";
export const METRICS: readonly Metric[] = ["throughput", "p99Us", "serverCpuUsPerReq"];

/** met: under the target; noise: over it, but not worse in every round; missed: over it, worse in every round. */
export type Verdict = "met" | "noise" | "missed";

/** One metric of a comparison: ratio of the medians, and the range of the per-round (paired) ratios. */
export interface MetricRatio {
  ratio: number;
  pairedMin: number;
  pairedMax: number;
  /** Rounds in which `config` did worse than `base`. */
  worseRounds: number;
  /** Only for the auth comparisons. */
  verdict?: Verdict;
}

export interface Comparison {
  transport: Transport;
  shape: string;
  config: ConfigName;
  base: ConfigName;
  /** auth (vs plain, vs tls) has the 3 % target; TLS is reported as a cost. */
  targeted: boolean;
  rounds: number;
  metrics: Record<Metric, MetricRatio>;
  verdict?: Verdict;
}

export interface Summary {
  rows: Row[];
  comparisons: Comparison[];
}

export interface Results {
  kind: "security";
  quick: boolean;
  date: string;
  commit: string;
  machine: Record<string, string | number>;
  pinning: string;
  loadAtStart: { line: string; load: number[] };
  loadAtEnd: { line: string; load: number[] };
  options: { entities: number; rounds: number; warmupMs: number; durationMs: number };
  /** Seconds to load each server. */
  loadSeconds: Record<string, number>;
  runs: Run[];
  summary: Summary;
  totalSeconds: number;
}
