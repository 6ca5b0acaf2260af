/**
 * Load generation: a closed loop (K x D slots, each sends its next request when the previous
 * one is answered) and an open loop (requests sent on a fixed schedule, latency measured from
 * the intended send time so that queueing is not hidden: no coordinated omission).
 *
 * Measurement is kept apart from printing: both loops return figures, never print. Latencies
 * go into a preallocated histogram; the harness allocates nothing per request in the closed
 * loop beyond what the client under test does.
 */
import { Histogram } from "./hist.ts";

/**
 * One request of the workload: `seq` numbers the request (it picks the keys), `slot` is the
 * sender (it picks the connection for clients that have one per slot group).
 */
export type OpFn = (seq: number, slot: number) => Promise<unknown>;

export interface LoopResult {
  /** Requests answered in the measured window. */
  requests: number;
  errors: number;
  /** First error seen, for the report. */
  firstError: string | null;
  /** Length of the measured window, s. */
  seconds: number;
  /** Answers per second. */
  throughput: number;
  hist: Histogram;
  /** Requests sent in all, warm-up included (for CPU time per request over the whole run). */
  issued: number;
  /** Wall time of the whole run, warm-up included, s. */
  wallSeconds: number;
}

export interface ClosedOptions {
  /** Concurrent senders (K connections x D in flight). */
  slots: number;
  warmupMs: number;
  durationMs: number;
  /** Stop the measured window after this many answers. */
  maxRequests: number;
  /** First `seq` (so that cells start at different places of the key stream). */
  seqStart?: number;
}

/** Runs a closed loop; resolves when every slot has stopped. */
export async function closedLoop(op: OpFn, o: ClosedOptions): Promise<LoopResult> {
  const hist = new Histogram();
  const seqStart = o.seqStart ?? 0;
  let seq = seqStart;
  let errors = 0;
  let firstError: string | null = null;
  const started = performance.now();
  let measureFrom = started + o.warmupMs;
  let measuring = o.warmupMs <= 0;
  let measureEnd = measureFrom + o.durationMs;
  let stop = false;
  let lastAnswer = measureFrom;

  async function slot(s: number): Promise<void> {
    while (!stop) {
      const t0 = performance.now();
      try {
        await op(seq++, s);
      } catch (err) {
        if (measuring) errors++;
        firstError ??= String(err);
        if (errors > 1000) stop = true;
      }
      const t1 = performance.now();
      if (measuring) {
        hist.record((t1 - t0) * 1e6);
        lastAnswer = t1;
        if (t1 >= measureEnd || hist.count >= o.maxRequests) stop = true;
      } else if (t1 >= measureFrom) {
        measuring = true;
        measureFrom = t1;
        measureEnd = t1 + o.durationMs;
      }
    }
  }

  const all: Promise<void>[] = [];
  for (let s = 0; s < o.slots; s++) all.push(slot(s));
  await Promise.all(all);
  const seconds = (lastAnswer - measureFrom) / 1000;
  return {
    requests: hist.count,
    errors,
    firstError,
    seconds,
    throughput: seconds > 0 ? hist.count / seconds : 0,
    hist,
    issued: seq - seqStart,
    wallSeconds: (performance.now() - started) / 1000,
  };
}

export interface OpenOptions {
  /** Offered rate, requests per second. */
  rate: number;
  /** Senders: `slot` passed to op is seq % slots. */
  slots: number;
  warmupMs: number;
  durationMs: number;
  /** Requests outstanding at most; past it the schedule waits (and the wait counts as latency). */
  maxOutstanding: number;
}

export interface OpenResult extends LoopResult {
  offered: number;
  /** Most requests outstanding at once. */
  peakOutstanding: number;
  /** Largest lag of a send behind its intended time, ms (the generator falling behind). */
  maxSendLagMs: number;
  /** True when sending was cut at the hard time limit (the system could not keep up). */
  truncated: boolean;
}

/**
 * Runs an open loop at `rate`: request i is due at t0 + i / rate; its latency is counted from
 * that intended time, so a late send (generator or server behind) shows up as latency.
 */
export async function openLoop(op: OpFn, o: OpenOptions): Promise<OpenResult> {
  const hist = new Histogram();
  const interval = 1000 / o.rate;
  const warmupCount = Math.floor((o.warmupMs / 1000) * o.rate);
  let total = warmupCount + Math.max(1, Math.floor((o.durationMs / 1000) * o.rate));
  let errors = 0;
  let firstError: string | null = null;
  let outstanding = 0;
  let peakOutstanding = 0;
  let maxSendLagMs = 0;
  let firstMeasuredAt = 0;
  let lastAnswer = 0;
  let done = 0;
  let wake: (() => void) | null = null;

  async function one(i: number, intended: number): Promise<void> {
    try {
      await op(i, i % o.slots);
    } catch (err) {
      if (i >= warmupCount) errors++;
      firstError ??= String(err);
    }
    const t = performance.now();
    outstanding--;
    done++;
    if (i >= warmupCount) {
      hist.record((t - intended) * 1e6);
      lastAnswer = t;
    }
    if (wake !== null && (done === total || outstanding < o.maxOutstanding)) {
      const w = wake;
      wake = null;
      w();
    }
  }

  const t0 = performance.now() + 1;
  // Bounded even when the system cannot keep up: sending stops at twice the planned time.
  const hardStop = t0 + 2 * (o.warmupMs + o.durationMs) + 1000;
  let truncated = false;
  let i = 0;
  while (i < total) {
    const now = performance.now();
    if (now > hardStop && i > warmupCount) {
      truncated = true;
      total = i;
      break;
    }
    while (i < total) {
      const intended = t0 + i * interval;
      if (intended > now) break;
      if (outstanding >= o.maxOutstanding) break;
      const lag = now - intended;
      if (lag > maxSendLagMs) maxSendLagMs = lag;
      if (i === warmupCount) firstMeasuredAt = intended;
      outstanding++;
      if (outstanding > peakOutstanding) peakOutstanding = outstanding;
      one(i, intended);
      i++;
    }
    if (i >= total) break;
    if (outstanding >= o.maxOutstanding) await new Promise<void>((r) => (wake = r));
    // Yield to I/O; setImmediate runs after the poll phase, so answers are taken in between.
    else await new Promise<void>((r) => setImmediate(r));
  }
  while (done < total) await new Promise<void>((r) => (wake = r));
  const seconds = (lastAnswer - firstMeasuredAt) / 1000;
  return {
    requests: hist.count,
    errors,
    firstError,
    seconds,
    throughput: seconds > 0 ? hist.count / seconds : 0,
    hist,
    issued: total,
    wallSeconds: (performance.now() - t0) / 1000,
    offered: o.rate,
    peakOutstanding,
    maxSendLagMs,
    truncated,
  };
}
