/**
 * `ping` and `latency`: round trips with one request in flight, as `redis-cli --latency` does.
 * Latencies go into a log-linear histogram (LatencyHistogram), so percentiles cost the same
 * after a second or an hour.
 */
import type { Command } from "commander";
import { usage } from "../errors.ts";
import { ms, printJson, println } from "../output.ts";
import { getTyped } from "../read.ts";
import { globals, withClient } from "./common.ts";

export function registerPing(program: Command): void {
  program
    .command("ping")
    .description("one round trip to the server; prints its time")
    .addHelpText("after", "\nExit status 3 when the server does not answer within --timeout.")
    .action(async (_o, cmd: Command) => {
      const flags = globals(cmd);
      await withClient(flags, async (client, deadlineMs) => {
        const t0 = performance.now();
        await client.ping({ deadlineMs });
        const t = performance.now() - t0;
        if (flags.json) printJson({ ok: true, ms: round3(t) });
        else println(`PONG ${ms(t)} ms`);
      });
    });

  program
    .command("latency")
    .description("live p50/p99 of round trips, one at a time (like redis-cli --latency)")
    .option("-n, --count <n>", "stop after this many requests")
    .option("-d, --duration <s>", "stop after this many seconds")
    .option("-i, --interval <ms>", "refresh the line (and with --history print one) this often", "1000")
    .option("--history", "print a line per interval (like --latency-history) instead of one updating line")
    .option("--get <entity_id>", "time a GetFeatures of this entity instead of a Ping")
    .addHelpText(
      "after",
      `
Runs until --count, --duration or Ctrl-C, then prints the totals. The live line is drawn on a
terminal only; with --json, one JSON object per interval and one at the end.

  featurestore latency --duration 10
  featurestore latency --get user:42 --history --interval 5000 --json`,
    )
    .action(async (o: LatencyFlags, cmd: Command) => {
      const flags = globals(cmd);
      const count = o.count === undefined ? Number.POSITIVE_INFINITY : positiveInt("--count", o.count);
      const durationMs =
        o.duration === undefined ? Number.POSITIVE_INFINITY : positiveNum("--duration", o.duration) * 1000;
      const intervalMs = positiveNum("--interval", o.interval);
      let stop = false;
      const onSignal = () => {
        stop = true;
      };
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      const live = !flags.json && !o.history && process.stdout.isTTY;
      try {
        await withClient(flags, async (client, deadlineMs) => {
          const total = new LatencyHistogram();
          const window = new LatencyHistogram();
          const start = performance.now();
          let lastPrint = start;
          const report = (h: LatencyHistogram, final: boolean) => {
            const s = h.summary();
            if (flags.json) printJson({ ...s, final, elapsed_s: round3((performance.now() - start) / 1000) });
            else {
              const line = `p50 ${ms(s.p50_ms)} ms  p99 ${ms(s.p99_ms)} ms  min ${ms(s.min_ms)}  max ${ms(s.max_ms)}  avg ${ms(s.avg_ms)}  (${s.samples} samples)`;
              if (live) process.stdout.write(`\r\x1b[K${line}${final ? "\n" : ""}`);
              else println(line);
            }
          };
          while (!stop && total.samples < count) {
            const t0 = performance.now();
            if (o.get !== undefined) await getTyped(client, o.get, [], deadlineMs);
            else await client.ping({ deadlineMs });
            const t1 = performance.now();
            total.record(t1 - t0);
            window.record(t1 - t0);
            if (t1 - start >= durationMs) break;
            if (t1 - lastPrint >= intervalMs) {
              lastPrint = t1;
              if (live) report(total, false);
              else if (o.history) report(window, false);
              window.reset();
            }
          }
          if (live) report(total, true);
          else if (flags.json || !o.history || total.samples > 0) report(total, true);
        });
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}

interface LatencyFlags {
  count?: string;
  duration?: string;
  interval: string;
  history?: boolean;
  get?: string;
}

function positiveInt(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw usage(`${flag} must be a whole number >= 1, got "${s}"`);
  return n;
}

function positiveNum(flag: string, s: string): number {
  const n = Number(s);
  if (!(n > 0)) throw usage(`${flag} must be a positive number, got "${s}"`);
  return n;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * Latencies in buckets of 1/16 of a power of two of microseconds (at most ~4.4 % wide), from
 * 1 us to ~17 minutes: 30 octaves x 16 counts. Percentiles are the bucket's upper bound,
 * clamped to the largest sample.
 */
export class LatencyHistogram {
  private static readonly SUB = 16;
  private static readonly OCTAVES = 30;
  private readonly counts = new Float64Array(LatencyHistogram.SUB * LatencyHistogram.OCTAVES);
  samples = 0;
  private sum = 0;
  private min = Number.POSITIVE_INFINITY;
  private max = 0;

  /** Adds one latency, ms. */
  record(ms: number): void {
    const us = Math.max(1, ms * 1000);
    const i = Math.min(this.counts.length - 1, Math.floor(Math.log2(us) * LatencyHistogram.SUB));
    this.counts[i]!++;
    this.samples++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  reset(): void {
    this.counts.fill(0);
    this.samples = 0;
    this.sum = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
  }

  /** The latency, ms, below which a fraction `q` of the samples fall. */
  quantile(q: number): number {
    if (this.samples === 0) return 0;
    const target = Math.ceil(q * this.samples);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target)
        return Math.min(this.max, Math.max(this.min, 2 ** ((i + 1) / LatencyHistogram.SUB) / 1000));
    }
    return this.max;
  }

  summary(): {
    samples: number;
    p50_ms: number;
    p99_ms: number;
    min_ms: number;
    max_ms: number;
    avg_ms: number;
  } {
    const r = (x: number) => Math.round(x * 1000) / 1000;
    return {
      samples: this.samples,
      p50_ms: r(this.quantile(0.5)),
      p99_ms: r(this.quantile(0.99)),
      min_ms: r(this.samples ? this.min : 0),
      max_ms: r(this.max),
      avg_ms: r(this.samples ? this.sum / this.samples : 0),
    };
  }
}
