/**
 * The abuse classes of issue 8, each a request pattern a careless or hostile client can send.
 * An abuser prepares its payload before the window opens (so that building a megabyte request
 * does not compete with the canary inside it), then repeats the abuse until the window closes
 * or its count is reached, recording what the server answered. Each runs in its own process
 * (abuser.ts), which run.ts kills at the end of the class: every socket it opened goes with it.
 */
import net from "node:net";
import { HEADER_BYTES, Method, writeHeader } from "../../src/codec/frame.ts";
import {
  encodeBatchGetRequest,
  encodeGetFeaturesRequest,
  encodeSetFeaturesRequest,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { DEFAULTS } from "../../src/config/index.ts";
import { entityId, FEATURE_NAMES } from "../e2e/workload.ts";
import { type Answer, codeName, encodedFrame, FrameConn, frame } from "./frames.ts";

/** Entities loaded before every class (the workload's user:<i>, 20 features each). */
export const ENTITIES = 10_000;
/** One entity with a large record: a bytes feature of this size (under CACHE_MAX_ENTRY_BYTES, 64 KiB). */
export const BIG_ENTITY = "big:0";
export const BIG_FEATURE = "blob";
export const BIG_BYTES = 60_000;

/** The server's documented defaults the classes are sized against (src/config, so they cannot drift). */
export const LIMITS = {
  maxFrameBytes: DEFAULTS.maxFrameBytes,
  maxFeatureNames: DEFAULTS.maxFeatureNames,
  maxBatchItems: DEFAULTS.maxBatchItems,
  maxResponseBytes: DEFAULTS.maxResponseBytes,
  maxPendingOutputBytes: DEFAULTS.maxPendingOutputBytes,
  maxClientMemoryBytes: DEFAULTS.maxClientMemoryBytes,
  cacheMaxEntryBytes: DEFAULTS.cacheMaxEntryBytes,
} as const;
const NAMES = LIMITS.maxFeatureNames;

/** Where a class stands against the documented limits. */
export type LimitStand = "within" | "over" | "each within, together over" | "bad input";

/** What an abuser saw; every count is bounded by the class's own caps. */
export interface Tally {
  /** Requests sent (frames, HTTP requests, or connections for the connection classes). */
  requests: number;
  /** Answers received. */
  answered: number;
  /** Answer kinds ("RESOURCE_EXHAUSTED: ...", "OK", "HTTP 429 resource_exhausted: ...") and counts. */
  outcomes: Record<string, number>;
  /** Connections opened, closed by the server, refused. */
  connections: number;
  cutByServer: number;
  refused: number;
  /** Largest OK answer, bytes. */
  maxAnswerBytes: number;
  /** Slowest answer, ms from sending the request. */
  slowestMs: number;
  notes: string[];
  /** CPU the abuser process used in the window, seconds. */
  cpuSeconds: number;
}

export function newTally(): Tally {
  return {
    requests: 0,
    answered: 0,
    outcomes: {},
    connections: 0,
    cutByServer: 0,
    refused: 0,
    maxAnswerBytes: 0,
    slowestMs: 0,
    notes: [],
    cpuSeconds: 0,
  };
}

/** Distinct outcome kinds kept; more are counted under "other". */
const MAX_KINDS = 6;

function count(t: Tally, kind: string): void {
  const k = kind.length > 200 ? `${kind.slice(0, 200)}…` : kind;
  if (t.outcomes[k] === undefined && Object.keys(t.outcomes).length >= MAX_KINDS) {
    t.outcomes.other = (t.outcomes.other ?? 0) + 1;
    return;
  }
  t.outcomes[k] = (t.outcomes[k] ?? 0) + 1;
}

function countAnswer(t: Tally, a: Answer, ms: number): void {
  t.answered++;
  if (ms > t.slowestMs) t.slowestMs = ms;
  if (a.status === 0) {
    count(t, "OK");
    if (a.length > t.maxAnswerBytes) t.maxAnswerBytes = a.length;
  } else count(t, `${codeName(a.status)}: ${a.message}`);
}

export interface AbuseEnv {
  tcpPort: number;
  httpPort: number;
}

export interface RunCtx {
  /** performance.now() at which the window closes. */
  deadline: number;
  tally: Tally;
}

export type Run = (ctx: RunCtx) => Promise<void>;

export interface AbuseClass {
  name: string;
  /** What the abuser does, for the table. */
  label: string;
  limits: LimitStand;
  /** Which limit, and what the server should do. */
  expect: string;
  /** Builds the payload (outside the window) and returns the abuse. */
  prepare(env: AbuseEnv): Run;
}

const sleepUntil = (t: number) => Bun.sleep(Math.max(0, t - performance.now())).then(() => null);

// ---- shapes of abuse ----------------------------------------------------------------------------

/** A request still unanswered when the window closes is reported only if it had waited this long, ms. */
const STALL_MS = 250;

/** Most times a serial abuser reconnects after the server closed its connection. */
const MAX_RECONNECTS = 50;

/** Sends `bytes` over TCP, one in flight, again and again until the deadline or `cap` requests. */
function serialTcp(env: AbuseEnv, bytes: Uint8Array, cap: number): Run {
  return async ({ deadline, tally }) => {
    let conn: FrameConn | null = null;
    let reconnects = 0;
    while (tally.requests < cap && performance.now() < deadline) {
      if (conn === null || conn.endReason !== null) {
        if (conn !== null && conn.endReason === "closed by server") tally.cutByServer++;
        if (conn !== null && ++reconnects > MAX_RECONNECTS) break;
        try {
          conn = await FrameConn.open(env.tcpPort);
          tally.connections++;
        } catch {
          tally.refused++;
          await Bun.sleep(50);
          continue;
        }
      }
      const t0 = performance.now();
      tally.requests++;
      const a = await Promise.race([conn.request(bytes), sleepUntil(deadline)]);
      if (a === null) {
        if (conn.endReason === null) {
          // The last request, cut by the window: an outcome only if it had waited long enough to be a stall.
          const waited = performance.now() - t0;
          if (waited >= STALL_MS)
            count(tally, `no answer within ${Math.round(waited)} ms (the window closed)`);
          break;
        }
        count(tally, `connection ${conn.endReason}`);
        continue;
      }
      countAnswer(tally, a, performance.now() - t0);
    }
    if (conn?.endReason === "closed by server") tally.cutByServer++;
    conn?.destroy();
  };
}

/** Bytes of an HTTP answer body read; the rest is cancelled (a 600 MB answer is not kept). */
const HTTP_READ_CAP = 64 * 1024 * 1024;

/** POSTs a Connect JSON request, one in flight, again and again until the deadline or `cap`. */
function serialConnect(env: AbuseEnv, method: string, body: string, cap: number): Run {
  const url = `http://127.0.0.1:${env.httpPort}/featurestore.v1.FeatureStoreService/${method}`;
  return async ({ deadline, tally }) => {
    while (tally.requests < cap && performance.now() < deadline) {
      const t0 = performance.now();
      tally.requests++;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), Math.max(1, deadline - t0));
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          signal: abort.signal,
        });
        let bytes = 0;
        let head = "";
        const reader = res.body?.getReader();
        if (reader) {
          const dec = new TextDecoder();
          for (;;) {
            const r = await reader.read();
            if (r.done) break;
            bytes += r.value.length;
            if (head.length < 512) head += dec.decode(r.value.subarray(0, 512));
            if (bytes > HTTP_READ_CAP) {
              await reader.cancel();
              tally.notes.push(`stopped reading an answer after ${bytes} bytes`);
              break;
            }
          }
        }
        tally.answered++;
        tally.slowestMs = Math.max(tally.slowestMs, performance.now() - t0);
        if (res.status === 200) {
          count(tally, "HTTP 200");
          tally.maxAnswerBytes = Math.max(tally.maxAnswerBytes, bytes);
        } else {
          let what = head.slice(0, 200);
          try {
            const e = JSON.parse(head) as { code?: string; message?: string };
            what = `${e.code}: ${e.message}`;
          } catch {
            // not a Connect error body
          }
          count(tally, `HTTP ${res.status} ${what}`);
        }
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        const waited = performance.now() - t0;
        if (!abort.signal.aborted) count(tally, `fetch failed: ${msg}`);
        else if (waited >= STALL_MS)
          count(tally, `no answer within ${Math.round(waited)} ms (the window closed)`);
        if (abort.signal.aborted) break;
      } finally {
        clearTimeout(timer);
      }
    }
  };
}

// ---- payloads -----------------------------------------------------------------------------------

const w = new ProtoWriter(1 << 20);

/** `n` distinct short feature names (f0, f1, ...). */
function names(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `f${i}`);
}

/** The workload's 20 real names first, then made-up ones, `n` in all (a projection that mostly misses). */
function projection(n: number): string[] {
  return [...FEATURE_NAMES, ...names(n - FEATURE_NAMES.length)];
}

function setFrame(entity: string, n: number, replace: boolean): Uint8Array {
  const features: Record<string, boolean> = {};
  for (const name of names(n)) features[name] = true;
  return encodedFrame(w, Method.SetFeatures, 1, (w) =>
    encodeSetFeaturesRequest(w, { entityId: entity, features, replace }),
  );
}

function batchFrame(ids: string[], projectionNames?: string[]): Uint8Array {
  return encodedFrame(w, Method.BatchGet, 1, (w) => encodeBatchGetRequest(w, ids, projectionNames));
}

const tenIds = () => Array.from({ length: 10 }, (_, i) => entityId(i));
const bigIds = () => new Array<string>(LIMITS.maxBatchItems).fill(BIG_ENTITY);
const manyIds = () => Array.from({ length: LIMITS.maxBatchItems }, (_, i) => entityId(i % ENTITIES));

// ---- the classes --------------------------------------------------------------------------------

export const CLASSES: AbuseClass[] = [
  {
    name: "set_64k_names",
    label: "SetFeatures with 64,000 feature names (~0.8 MB)",
    limits: "over",
    expect: `MAX_FEATURE_NAMES (${NAMES}): refused before any per-name work`,
    prepare: (env) => serialTcp(env, setFrame("abuse:wide", 64_000, true), 10_000),
  },
  {
    name: "set_max_names",
    label: `SetFeatures merging ${NAMES} names (MAX_FEATURE_NAMES) into one entity`,
    limits: "within",
    expect: "served: at MAX_FEATURE_NAMES, under CACHE_MAX_ENTRY_BYTES",
    prepare: (env) => serialTcp(env, setFrame("abuse:wide", NAMES, false), 10_000),
  },
  {
    name: "batch_10x100k_names",
    label: "BatchGet 10 ids × 100,000 names (~0.9 MB)",
    limits: "over",
    expect: `MAX_FEATURE_NAMES (${NAMES}): refused before projecting`,
    prepare: (env) => serialTcp(env, batchFrame(tenIds(), projection(100_000)), 10_000),
  },
  {
    name: "batch_10x_max_names",
    label: `BatchGet 10 ids × ${NAMES} names (MAX_FEATURE_NAMES; 20 real, the rest missing)`,
    limits: "within",
    expect: "served",
    prepare: (env) => serialTcp(env, batchFrame(tenIds(), projection(NAMES)), 10_000),
  },
  {
    name: "connect_get_1m_names",
    label: "Connect JSON GetFeatures with 1,000,000 names (~10 MB body)",
    limits: "over",
    expect: "body over MAX_FRAME_BYTES (4 MiB): 429 from Content-Length, nothing parsed",
    prepare: (env) =>
      serialConnect(
        env,
        "GetFeatures",
        JSON.stringify({ entityId: entityId(0), featureNames: projection(1_000_000) }),
        1_000,
      ),
  },
  {
    name: "connect_get_max_names",
    label: `Connect JSON GetFeatures with ${NAMES} names (MAX_FEATURE_NAMES)`,
    limits: "within",
    expect: "served",
    prepare: (env) =>
      serialConnect(
        env,
        "GetFeatures",
        JSON.stringify({ entityId: entityId(0), featureNames: projection(NAMES) }),
        10_000,
      ),
  },
  {
    name: "batch_max_ids_tcp",
    label: `BatchGet of MAX_BATCH_ITEMS (${LIMITS.maxBatchItems}) distinct 20-feature entities over TCP`,
    limits: "within",
    expect: "served (an answer of ~4 MB, under MAX_RESPONSE_BYTES, or refused at it)",
    prepare: (env) => serialTcp(env, batchFrame(manyIds()), 10_000),
  },
  {
    name: "connect_batch_max_ids",
    label: `Connect JSON BatchGet of MAX_BATCH_ITEMS (${LIMITS.maxBatchItems}) distinct 20-feature entities`,
    limits: "within",
    expect: "served, or RESOURCE_EXHAUSTED at MAX_RESPONSE_BYTES",
    prepare: (env) => serialConnect(env, "BatchGet", JSON.stringify({ entityIds: manyIds() }), 1_000),
  },
  {
    name: "batch_big_x10k_tcp",
    label: `BatchGet of one ${BIG_BYTES / 1000} KB entity's id × 10,000 over TCP (a ~600 MB answer)`,
    limits: "within",
    expect: "request within MAX_BATCH_ITEMS; answer over MAX_RESPONSE_BYTES (4 MiB): refused while building",
    prepare: (env) => serialTcp(env, batchFrame(bigIds()), 1_000),
  },
  {
    name: "batch_big_x10k_connect",
    label: `Connect JSON BatchGet of the ${BIG_BYTES / 1000} KB entity × 10,000 (~800 MB of JSON)`,
    limits: "within",
    expect: "as over TCP: RESOURCE_EXHAUSTED before the answer is built, nothing base64'd",
    prepare: (env) => serialConnect(env, "BatchGet", JSON.stringify({ entityIds: bigIds() }), 1_000),
  },
  {
    name: "slowloris_200x4mib",
    label: "200 connections, each sending a 4 MiB frame but its last byte (800 MB held)",
    limits: "each within, together over",
    expect: "MAX_CLIENT_MEMORY_BYTES (256 MiB): the largest holders are cut",
    prepare: (env) => slowloris(env, 200, LIMITS.maxFrameBytes),
  },
  {
    name: "bad_pipelined_100k",
    label: "100,000 pipelined frames with an unknown method, one connection",
    limits: "bad input",
    expect: "UNIMPLEMENTED for each, connection kept, no log line per frame",
    prepare: (env) => badPipelined(env, 100_000),
  },
  {
    name: "bad_connections_1k",
    label: "1,000 connections, each sending a header with non-zero flags",
    limits: "bad input",
    expect: "INVALID_ARGUMENT then closed, each; logging bounded",
    prepare: (env) => badConnections(env, 1_000, 50),
  },
  {
    name: "never_reads",
    label: `a client pipelining GetFeatures of the ${BIG_BYTES / 1000} KB entity and never reading`,
    limits: "each within, together over",
    expect: "MAX_PENDING_OUTPUT_BYTES (16 MiB): disconnected with a logged reason",
    prepare: (env) => neverReads(env, 100_000),
  },
];

// ---- connection-level classes -------------------------------------------------------------------

/** `conns` connections each send a frame header announcing `frameBytes`, then all but one body byte. */
function slowloris(env: AbuseEnv, conns: number, frameBytes: number): Run {
  const header = new Uint8Array(HEADER_BYTES);
  writeHeader(header, 0, frameBytes, 1, Method.GetFeatures, 0);
  const body = new Uint8Array(frameBytes - 1);
  return async ({ deadline, tally }) => {
    const open: FrameConn[] = [];
    const connect = async () => {
      try {
        const c = await FrameConn.open(env.tcpPort);
        c.onAnswer = (a) => countAnswer(tally, a, 0);
        open.push(c);
        tally.connections++;
      } catch {
        tally.refused++;
      }
    };
    // Connect them all first (50 at a time), then start every upload: the server sees 200
    // frames growing at once, as it would from 200 slow clients.
    for (let i = 0; i < conns && performance.now() < deadline; i += 50)
      await Promise.all(Array.from({ length: Math.min(50, conns - i) }, connect));
    for (const c of open) {
      tally.requests++;
      c.send(header);
      c.send(body);
    }
    let delivered = 0;
    await Promise.all(
      open.map(async (c) => {
        await Promise.race([c.drained(), sleepUntil(deadline)]);
        if (c.endReason === null && c.pendingBytes === 0) delivered++;
      }),
    );
    await sleepUntil(deadline);
    let stillOpen = 0;
    for (const c of open) {
      if (c.endReason === "closed by server" || c.endReason?.startsWith("error")) tally.cutByServer++;
      else stillOpen++;
    }
    tally.notes.push(
      `${delivered} of ${conns} unfinished frames fully delivered; ${stillOpen} connections still open at the end`,
    );
    for (const c of open) c.destroy();
  };
}

/** `n` frames with method 99 in one write; counts the answers. */
function badPipelined(env: AbuseEnv, n: number): Run {
  const all = new Uint8Array(n * HEADER_BYTES);
  for (let i = 0; i < n; i++) writeHeader(all, i * HEADER_BYTES, 0, i, 99, 0);
  return async ({ deadline, tally }) => {
    const c = await FrameConn.open(env.tcpPort);
    tally.connections++;
    const t0 = performance.now();
    c.onAnswer = (a) => countAnswer(tally, a, performance.now() - t0);
    tally.requests = n;
    c.send(all);
    while (c.answers < n && c.endReason === null && performance.now() < deadline) await Bun.sleep(5);
    if (c.endReason === "closed by server") tally.cutByServer++;
    tally.notes.push(`${c.answers} of ${n} answered in ${Math.round(performance.now() - t0)} ms`);
    c.destroy();
  };
}

/** `n` connections, `parallel` at a time, each sending one header with flags = 1. */
function badConnections(env: AbuseEnv, n: number, parallel: number): Run {
  const bad = new Uint8Array(HEADER_BYTES);
  writeHeader(bad, 0, 0, 7, Method.Ping, 0);
  bad[10] = 1; // flags must be 0
  /** How long one connection waits for the server to answer and close. */
  const WAIT_MS = 1000;
  return async ({ deadline, tally }) => {
    let started = 0;
    let leftOpen = 0;
    const one = async () => {
      let c: FrameConn;
      try {
        c = await FrameConn.open(env.tcpPort);
      } catch {
        tally.refused++;
        return;
      }
      tally.connections++;
      tally.requests++;
      const t0 = performance.now();
      c.onAnswer = (a) => countAnswer(tally, a, performance.now() - t0);
      c.send(bad);
      await Promise.race([c.ended, sleepUntil(Math.min(deadline, t0 + WAIT_MS))]);
      if (c.endReason === "closed by server") tally.cutByServer++;
      else leftOpen++;
      c.destroy();
    };
    const lane = async () => {
      while (started < n && performance.now() < deadline) {
        started++;
        await one();
      }
    };
    await Promise.all(Array.from({ length: parallel }, lane));
    if (leftOpen > 0)
      tally.notes.push(`${leftOpen} connections not closed by the server within ${WAIT_MS} ms`);
  };
}

/**
 * A client that writes requests and never reads: node:net's `pause()` stops reading from the
 * kernel, so the server's answers fill the socket buffers and then its pending output.
 */
function neverReads(env: AbuseEnv, n: number): Run {
  const BATCH = 500;
  const one = new ProtoWriter(64);
  encodeGetFeaturesRequest(one, BIG_ENTITY);
  const body = one.finish();
  const batch = new Uint8Array(BATCH * (HEADER_BYTES + body.length));
  for (let i = 0; i < BATCH; i++)
    batch.set(frame(Method.GetFeatures, i, body), i * (HEADER_BYTES + body.length));
  return async ({ deadline, tally }) => {
    const s = net.connect({ host: "127.0.0.1", port: env.tcpPort });
    let ended: string | null = null;
    let received = 0;
    s.on("data", (b: Buffer) => {
      received += b.length;
    });
    s.on("error", (e: Error) => {
      ended ??= `error: ${e.message}`;
    });
    s.on("end", () => {
      ended ??= "closed by server";
    });
    s.on("close", () => {
      ended ??= "closed by server";
    });
    await new Promise<void>((resolve, reject) => {
      s.once("connect", () => resolve());
      s.once("error", reject);
    });
    s.pause();
    tally.connections++;
    let drainWait = 0;
    while (tally.requests < n && ended === null && performance.now() < deadline) {
      const more = s.write(batch);
      tally.requests += BATCH;
      if (!more) {
        const t = performance.now();
        await Promise.race([new Promise((r) => s.once("drain", r)), sleepUntil(deadline)]);
        drainWait += performance.now() - t;
      }
    }
    const sent = tally.requests;
    await sleepUntil(deadline);
    // Read what is there now, to learn whether the server closed the connection.
    s.resume();
    await Promise.race([new Promise((r) => s.once("close", r)), Bun.sleep(500)]);
    if (ended !== null && ended !== "closed by us") tally.cutByServer++;
    count(tally, ended === null ? "still open at the end of the window" : `connection ${ended}`);
    tally.notes.push(
      `${sent} requests written (${Math.round(drainWait)} ms blocked on the server), ` +
        `${(received / 2 ** 20).toFixed(1)} MiB of answers read after resuming`,
    );
    s.destroy();
  };
}
