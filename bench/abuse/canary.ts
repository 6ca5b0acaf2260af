/**
 * The canary: one well-behaved client on its own TCP connection, sending one GetFeatures (all
 * features of a loaded entity) every `periodUs`, open loop. Request i is due at start + i·period
 * and its latency is taken from that due time, so a send delayed by a stalled server or by this
 * process's own timer shows up as latency instead of being left out (no coordinated omission).
 *
 * Run by run.ts as a child process (its own event loop, so an abuser's CPU work cannot delay
 * its timers or its reads):
 *
 * ```
 * bun bench/abuse/canary.ts <port> <windowMs> <entities> [periodUs=1000] [warmupMs=1000]
 *   stdout "ready"          after connecting and warmupMs of requests (not recorded)
 *   stdin  "go"             starts the measured window (requests keep flowing in between)
 *   stdout "result {json}"  CanaryResult, after the window and up to GRACE_MS for late answers
 * ```
 */
import { Method } from "../../src/codec/frame.ts";
import { encodeGetFeaturesRequest } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { Histogram } from "../e2e/hist.ts";
import { entityId } from "../e2e/workload.ts";
import { readCommands } from "./child.ts";
import { codeName, FrameConn, frame } from "./frames.ts";

/** What the canary saw in its measured window; latencies in microseconds. */
export interface CanaryResult {
  /** Requests due in the window. */
  due: number;
  answered: number;
  /** Answers with a non-OK status (first one in `firstError`). */
  errors: number;
  firstError?: string;
  /** Due in the window and not answered within GRACE_MS of its end (counted at that time). */
  lost: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** p99 measured from when the request actually left (the server's part, without this process's lateness), us. */
  p99FromSend: number;
  /** How late this process sent (its timer and event loop, not the server): p99 and max, us. */
  sendLagP99: number;
  sendLagMax: number;
  /** Why the connection ended during the window, if it did. */
  connection?: string;
  /** CPU this process used from "go" to its result, seconds. */
  cpuSeconds: number;
}

/** Late answers are awaited this long after the window ends; the rest count as lost. */
const GRACE_MS = 1500;
/** The canary gives up if "go" has not come this long after "ready". */
const MAX_WAIT_FOR_GO_MS = 60_000;

async function main(): Promise<void> {
  const [portArg, windowArg, entitiesArg, periodArg, warmupArg] = process.argv.slice(2);
  const port = Number(portArg);
  const windowMs = Number(windowArg);
  const entities = Number(entitiesArg);
  const periodMs = Number(periodArg ?? 1000) / 1000;
  const warmupMs = Number(warmupArg ?? 1000);
  if (!(port > 0 && windowMs > 0 && entities > 0 && periodMs > 0))
    throw new Error("usage: canary.ts <port> <windowMs> <entities> [periodUs] [warmupMs]");

  // Bounded: the warm-up, the longest wait for "go", the window and its grace, at one request per period.
  const cap = Math.ceil((warmupMs + MAX_WAIT_FOR_GO_MS + windowMs + GRACE_MS) / periodMs);
  const answered = new Uint8Array(cap);
  const sentAt = new Float64Array(cap);
  const w = new ProtoWriter(256);
  const BODIES = 1024;
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < BODIES; i++) {
    w.reset();
    encodeGetFeaturesRequest(w, entityId((i * 7919) % entities));
    bodies.push(w.finish());
  }

  const conn = await FrameConn.open(port);
  const start = performance.now();
  const due = (id: number) => start + id * periodMs;
  // The measured window: request ids in [firstId, endId), due every period from "go" on.
  let firstId = cap;
  let endId = cap;
  /** Sending stops at this id (the end of the window). */
  let stopId = cap;
  const lat = new Histogram();
  const fromSend = new Histogram();
  const lag = new Histogram();
  let errors = 0;
  let firstError: string | undefined;
  let inWindowAnswered = 0;
  let connectionDuringWindow: string | undefined;

  conn.onAnswer = (a) => {
    const id = a.requestId;
    if (id >= cap || answered[id] === 1) return;
    answered[id] = 1;
    if (id < firstId || id >= endId) return;
    inWindowAnswered++;
    const now = performance.now();
    lat.record((now - due(id)) * 1e6);
    fromSend.record((now - sentAt[id]!) * 1e6);
    if (a.status !== 0) {
      errors++;
      firstError ??= `${codeName(a.status)}: ${a.message}`;
    }
  };
  conn.ended.then((reason) => {
    if (next >= firstId) connectionDuringWindow = reason;
  });

  let next = 0;
  const tick = () => {
    const now = performance.now();
    while (next < stopId && due(next) <= now) {
      if (next >= firstId) lag.record((now - due(next)) * 1e6);
      sentAt[next] = now;
      conn.send(frame(Method.GetFeatures, next, bodies[next % BODIES]!));
      next++;
    }
    if (next >= stopId || conn.endReason !== null) return;
    setTimeout(tick, Math.max(0, due(next) - performance.now()));
  };
  tick();

  await Bun.sleep(warmupMs);
  process.stdout.write("ready\n");
  const go = await readCommands(MAX_WAIT_FOR_GO_MS);
  if (!go) throw new Error("canary: no go");
  // The window starts at the next request due.
  const cpu0 = process.cpuUsage();
  firstId = next;
  endId = Math.min(cap, firstId + Math.round(windowMs / periodMs));
  stopId = endId;
  await Bun.sleep(Math.max(0, due(endId) - performance.now()));
  // Late answers get GRACE_MS after the last request was due.
  const giveUp = due(endId) + GRACE_MS;
  while (inWindowAnswered < endId - firstId && performance.now() < giveUp && conn.endReason === null)
    await Bun.sleep(10);

  // Unanswered requests count at the time we stopped waiting: a lower bound on their latency.
  const now = performance.now();
  let lost = 0;
  for (let id = firstId; id < endId; id++) {
    if (answered[id] === 1) continue;
    lost++;
    lat.record((now - due(id)) * 1e6);
  }
  const us = (ns: number) => Math.round(ns / 100) / 10;
  const result: CanaryResult = {
    due: endId - firstId,
    answered: inWindowAnswered,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    lost,
    p50: us(lat.percentile(50)),
    p99: us(lat.percentile(99)),
    p999: us(lat.percentile(99.9)),
    max: us(lat.percentile(100)),
    p99FromSend: us(fromSend.percentile(99)),
    sendLagP99: us(lag.percentile(99)),
    sendLagMax: us(lag.percentile(100)),
    ...(connectionDuringWindow !== undefined ? { connection: connectionDuringWindow } : {}),
    cpuSeconds: cpuOf(cpu0),
  };
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
  conn.destroy();
  process.exit(0);
}

/** CPU seconds this process used since `from`. */
export function cpuOf(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1e6;
}

if (import.meta.main) await main();
