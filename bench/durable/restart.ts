/**
 * Restart time of a server over a full data file: spawn `bun src/main.ts`, then time (from just
 * before the spawn) the "feature store listening" log line and the first 200 of /ready, and
 * take the start-up phases from the server's own log lines ("store opened", "cache warmed").
 * Detection polls every millisecond, so each figure is late by at most ~1-2 ms.
 */
import { Database } from "bun:sqlite";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { freePort, type Proc, spawnProc } from "../e2e/procs.ts";
import { round } from "../e2e/report.ts";

/** The log line main.ts writes once both listeners are up. */
const LISTENING = '"msg":"feature store listening"';

export interface StartTiming {
  /** Spawn to the "feature store listening" line on stdout, ms. */
  listeningMs: number;
  /** Spawn to the first /ready answered 200, ms. */
  readyMs: number;
  /** Spawn to the "store opened" line (Bun's start, opening the file, counting its rows), ms (log clock, 1 ms). */
  storeOpenedMs: number | null;
  /** The warm-up's own duration, from the "cache warmed" line, ms. */
  warmMs: number | null;
  /** Entities loaded into the cache at start (from the "cache warmed" line). */
  warmed: number | null;
  /** Rows in the file, from the "store opened" line. */
  rows: number | null;
  /** SIGTERM to exit, ms. */
  shutdownMs: number;
}

export interface StartOptions {
  root: string;
  entry: string;
  env: Record<string, string>;
  cpus: string | undefined;
  timeoutMs: number;
}

/** Starts a server, times it to listening and to ready, then stops it (SIGTERM, timed). */
export async function timeStart(o: StartOptions): Promise<StartTiming> {
  const tcpPort = freePort();
  const httpPort = freePort();
  const wall0 = Date.now();
  const t0 = performance.now();
  const proc = spawnProc({
    name: "featurestore-restart",
    cmd: [process.execPath, o.entry],
    cwd: o.root,
    cpus: o.cpus,
    env: {
      HOST: "127.0.0.1",
      TCP_PORT: String(tcpPort),
      HTTP_PORT: String(httpPort),
      // 0: a free port, never the default 50052 another server on this machine may hold.
      GRPC_PORT: "0",
      LOG_LEVEL: "info",
      ...o.env,
    },
  });
  try {
    let listeningMs = Number.NaN;
    let readyMs = Number.NaN;
    const until = t0 + o.timeoutMs;
    while (Number.isNaN(listeningMs) || Number.isNaN(readyMs)) {
      if (proc.proc.exitCode !== null || proc.proc.signalCode !== null)
        throw new Error(`server exited during start:\n${proc.tail()}`);
      if (performance.now() > until)
        throw new Error(`server not ready within ${o.timeoutMs} ms:\n${proc.tail()}`);
      if (Number.isNaN(listeningMs) && proc.tail().includes(LISTENING)) listeningMs = performance.now() - t0;
      if (Number.isNaN(readyMs)) {
        try {
          const res = await fetch(`http://127.0.0.1:${httpPort}/ready`);
          await res.arrayBuffer();
          if (res.status === 200) readyMs = performance.now() - t0;
        } catch {
          // not listening yet
        }
      }
      await Bun.sleep(1);
    }
    const lines = logLines(proc.tail());
    const opened = lines.find((l) => l.msg === "store opened");
    const warmed = lines.find((l) => l.msg === "cache warmed");
    const t1 = performance.now();
    await proc.stop(60_000);
    return {
      listeningMs: round(listeningMs, 1),
      readyMs: round(readyMs, 1),
      storeOpenedMs: opened ? Date.parse(String(opened.time)) - wall0 : null,
      warmMs: warmed ? Number(warmed.ms) : null,
      warmed: warmed ? Number(warmed.entities) : null,
      rows: opened ? Number(opened.rows) : null,
      shutdownMs: round(performance.now() - t1, 1),
    };
  } finally {
    await proc.stop(5000);
  }
}

/** Stops `proc` with SIGTERM (waiting up to a minute for a graceful close) and returns how long it took, ms. */
export async function timedStop(proc: Proc): Promise<number> {
  const t = performance.now();
  await proc.stop(60_000);
  return round(performance.now() - t, 1);
}

function logLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the 4 KiB tail
    }
  }
  return out;
}

/** Sizes of the files in `dir` (the database, its WAL and shared-memory index), bytes. */
export function filesIn(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of readdirSync(dir)) {
    const s = statSync(join(dir, name));
    if (s.isFile()) out[name] = s.size;
  }
  return out;
}

/** What the server's start does with the file, each step timed alone, ms. */
export interface StartAnatomy {
  /** `PRAGMA quick_check(1)`: the soundness check at open (it reads every page). */
  quickCheckMs: number;
  /** `SELECT count(*)`: the row count of the "store opened" log line. */
  countMs: number;
  /** The warm-up's query, `ORDER BY rowid DESC LIMIT n`, read to the end. */
  recentMs: number;
  recentRows: number;
}

/**
 * Times, in this process, the steps of a start that depend on the file's size, with the same
 * statements the server runs (src/store/sqlite/backend.ts). The server must be stopped.
 */
export function startAnatomy(file: string, warm: number): StartAnatomy {
  const db = new Database(file, { readonly: true });
  try {
    const time = (f: () => void) => {
      const t = performance.now();
      f();
      return round(performance.now() - t, 1);
    };
    const quickCheckMs = time(() => db.query("PRAGMA quick_check(1)").get());
    const countMs = time(() => db.query("SELECT count(*) AS n FROM entities").get());
    let recentRows = 0;
    const recentMs = time(() => {
      const q = db.query("SELECT id, record, expires_at FROM entities ORDER BY rowid DESC LIMIT ?");
      for (const _ of q.iterate(warm)) recentRows++;
    });
    return { quickCheckMs, countMs, recentMs, recentRows };
  } finally {
    db.close();
  }
}
