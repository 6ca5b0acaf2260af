/**
 * The console's live numbers, computed in the browser from two scrapes of /metrics a second
 * apart: no server-side state, and the same arithmetic PromQL's `rate()` and
 * `histogram_quantile()` do over a 1 s window. Pure functions, so bun tests them without a
 * browser.
 *
 * The Prometheus text exposition format, one sample per line:
 * ```
 * # HELP featurestore_requests_total RPCs answered, ...
 * # TYPE featurestore_requests_total counter
 * featurestore_requests_total{method="GetFeatures",transport="connect",code="ok"} 42
 * featurestore_request_duration_seconds_bucket{method="GetFeatures",transport="connect",le="0.0001"} 40
 * featurestore_cache_hits_total 17
 * ```
 * Label values are quoted, with `\\`, `\"` and `\n` escaped; a sample may end with a timestamp.
 */

/** The metrics the console reads (src/metrics/prometheus.ts METRIC_NAMES). */
export const REQUESTS = "featurestore_requests_total";
export const DURATION_BUCKET = "featurestore_request_duration_seconds_bucket";
export const CACHE_HITS = "featurestore_cache_hits_total";
export const CACHE_MISSES = "featurestore_cache_misses_total";

/** One sample: its labels and value. */
export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** One scrape: the samples of each metric name, and when it was taken (ms, any monotonic clock). */
export interface Scrape {
  readonly at: number;
  readonly samples: ReadonlyMap<string, readonly Sample[]>;
}

/** What the live panel shows for one window between two scrapes. NaN = nothing to show. */
export interface LiveStats {
  /** Seconds between the scrapes. */
  readonly seconds: number;
  /** RPCs answered per second, every method, transport and code. */
  readonly requestsPerSecond: number;
  /** RPCs answered per second with a code other than ok. */
  readonly errorsPerSecond: number;
  /** Median and 99th percentile latency in the window, seconds (NaN without requests). */
  readonly p50: number;
  readonly p99: number;
  /** Cache hits / lookups in the window (NaN without lookups). */
  readonly hitRatio: number;
  /** Cache hits / lookups since the server started (NaN without any). */
  readonly hitRatioTotal: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

/** Parses the text format; comments, blank and malformed lines are skipped. */
export function parsePrometheus(text: string, at: number): Scrape {
  const samples = new Map<string, Sample[]>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line.trim());
    if (m === null) continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) for (const l of m[2].matchAll(LABEL)) labels[l[1]!] = unescapeLabel(l[2]!);
    const value = parseValue(m[3]!);
    if (Number.isNaN(value)) continue;
    let list = samples.get(m[1]!);
    if (list === undefined) {
      list = [];
      samples.set(m[1]!, list);
    }
    list.push({ labels, value });
  }
  return { at, samples };
}

function parseValue(s: string): number {
  if (s === "+Inf") return Number.POSITIVE_INFINITY;
  if (s === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(s);
}

function unescapeLabel(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

/** The sum of every sample of `name` whose labels pass `keep`. */
export function total(s: Scrape, name: string, keep?: (labels: Sample["labels"]) => boolean): number {
  let sum = 0;
  for (const x of s.samples.get(name) ?? []) if (keep === undefined || keep(x.labels)) sum += x.value;
  return sum;
}

/** A counter's increase from `a` to `b`; a restart (b below a) counts from zero, as rate() does. */
function increase(before: number, after: number): number {
  return after >= before ? after - before : after;
}

/** Cumulative bucket counts by upper bound (`le`), summed over every series: the sorted pairs. */
export function buckets(s: Scrape): Array<[le: number, count: number]> {
  const byLe = new Map<number, number>();
  for (const x of s.samples.get(DURATION_BUCKET) ?? []) {
    const le = parseValue(x.labels.le ?? "");
    if (!Number.isNaN(le)) byLe.set(le, (byLe.get(le) ?? 0) + x.value);
  }
  return [...byLe].sort((p, q) => p[0] - q[0]);
}

/**
 * The `q` quantile (0..1) of a cumulative histogram, as histogram_quantile() estimates it:
 * find the bucket holding rank q·n and interpolate linearly inside it (from 0 for the first);
 * a rank in the +Inf bucket answers the largest finite bound. NaN when the histogram is empty.
 */
export function quantile(q: number, cumulative: ReadonlyArray<readonly [number, number]>): number {
  const n = cumulative.length === 0 ? 0 : cumulative[cumulative.length - 1]![1];
  if (n <= 0) return Number.NaN;
  const rank = q * n;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lowerLe;
      if (count === lowerCount) return le;
      return lowerLe + ((le - lowerLe) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerLe = le;
    lowerCount = count;
  }
  return lowerLe;
}

/** The live numbers of the window from scrape `a` to the later scrape `b`. */
export function liveStats(a: Scrape, b: Scrape): LiveStats {
  const seconds = Math.max((b.at - a.at) / 1000, 1e-3);
  const notOk = (l: Sample["labels"]) => l.code !== "ok";
  const before = new Map(buckets(a));
  const window = buckets(b).map(([le, c]): [number, number] => [le, increase(before.get(le) ?? 0, c)]);
  const hits = increase(total(a, CACHE_HITS), total(b, CACHE_HITS));
  const misses = increase(total(a, CACHE_MISSES), total(b, CACHE_MISSES));
  const hitsTotal = total(b, CACHE_HITS);
  const lookupsTotal = hitsTotal + total(b, CACHE_MISSES);
  return {
    seconds,
    requestsPerSecond: increase(total(a, REQUESTS), total(b, REQUESTS)) / seconds,
    errorsPerSecond: increase(total(a, REQUESTS, notOk), total(b, REQUESTS, notOk)) / seconds,
    p50: quantile(0.5, window),
    p99: quantile(0.99, window),
    hitRatio: hits + misses > 0 ? hits / (hits + misses) : Number.NaN,
    hitRatioTotal: lookupsTotal > 0 ? hitsTotal / lookupsTotal : Number.NaN,
  };
}
