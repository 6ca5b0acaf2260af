/**
 * `stats`: a line per interval from the server's /metrics counters, like `redis-cli --stat`:
 * requests/s by method, errors/s, cache hit ratio, entries and open connections. Rates are the
 * difference between two scrapes over the time between them.
 */

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { CliError, Exit, usage } from "../errors.ts";
import { count, printJson, println } from "../output.ts";
import { globals } from "./common.ts";

/** The server's default HTTP_PORT, where /metrics is served. */
export const DEFAULT_HTTP_PORT = 8081;
/** Lines between two repeated headers. */
const HEADER_EVERY = 20;

/** Columns of methods, in the order of the protocol, with their short titles. */
const METHODS: readonly [string, string][] = [
  ["GetFeatures", "get"],
  ["BatchGet", "bget"],
  ["SetFeatures", "set"],
  ["BatchSet", "bset"],
  ["DeleteFeatures", "del"],
  ["Ping", "ping"],
];

/** What one scrape says. */
export interface Scrape {
  at: number;
  /** Requests answered, by method (every transport and code). */
  requests: Map<string, number>;
  errors: number;
  hits: number;
  misses: number;
  entries: number;
  connections: number;
}

/** Parses the Prometheus text format, keeping the few series `stats` shows. */
export function parseMetrics(text: string, at: number): Scrape {
  const s: Scrape = { at, requests: new Map(), errors: 0, hits: 0, misses: 0, entries: 0, connections: 0 };
  for (const line of text.split("\n")) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const sp = line.lastIndexOf(" ");
    const value = Number(line.slice(sp + 1));
    const brace = line.indexOf("{");
    const name = brace >= 0 && brace < sp ? line.slice(0, brace) : line.slice(0, sp);
    const labels = brace >= 0 && brace < sp ? line.slice(brace, sp) : "";
    switch (name) {
      case "featurestore_requests_total": {
        const method = /method="([^"]*)"/.exec(labels)?.[1] ?? "?";
        s.requests.set(method, (s.requests.get(method) ?? 0) + value);
        if (!labels.includes('code="ok"')) s.errors += value;
        break;
      }
      case "featurestore_cache_hits_total":
        s.hits = value;
        break;
      case "featurestore_cache_misses_total":
        s.misses = value;
        break;
      case "featurestore_cache_entries":
        s.entries = value;
        break;
      case "featurestore_open_connections":
        s.connections += value;
        break;
    }
  }
  return s;
}

/** The rates between two scrapes, as one row of the table (and its JSON form). */
export function rates(a: Scrape, b: Scrape): Record<string, number | null> {
  const dt = (b.at - a.at) / 1000;
  const per = (x: number) => Math.max(0, x) / dt;
  const out: Record<string, number | null> = {};
  let total = 0;
  for (const [method] of METHODS) {
    const r = per((b.requests.get(method) ?? 0) - (a.requests.get(method) ?? 0));
    out[method] = Math.round(r);
    total += r;
  }
  out.requests_per_s = Math.round(total);
  out.errors_per_s = Math.round(per(b.errors - a.errors));
  const hits = b.hits - a.hits;
  const lookups = hits + (b.misses - a.misses);
  out.hit_ratio = lookups > 0 ? Math.round((hits / lookups) * 1000) / 1000 : null;
  out.entries = b.entries;
  out.connections = b.connections;
  return out;
}

export function registerStats(program: Command): void {
  program
    .command("stats")
    .description("a line per second of the server's counters (like redis-cli --stat)")
    .option(
      "--http <host:port>",
      `the server's HTTP port, where /metrics is (default: --server's host, port ${DEFAULT_HTTP_PORT})`,
    )
    .option("-i, --interval <ms>", "time between lines", "1000")
    .option("-n, --count <n>", "stop after this many lines")
    .addHelpText(
      "after",
      `
Columns: requests/s in total and per method (get, bget = BatchGet, set, bset = BatchSet, del,
ping), errors/s (answers other than ok), the cache hit ratio over the interval, cache entries and
open connections (every transport). With --json, one JSON object per line. --token is sent as a
bearer token (for METRICS_AUTH); --cacert makes it https.

  featurestore stats --http 127.0.0.1:8081 --count 10`,
    )
    .action(async (o: { http?: string; interval: string; count?: string }, cmd: Command) => {
      const flags = globals(cmd);
      const intervalMs = Number(o.interval);
      if (!(intervalMs > 0)) throw usage(`--interval must be a positive number of ms, got "${o.interval}"`);
      const lines = o.count === undefined ? Number.POSITIVE_INFINITY : Number(o.count);
      if (!(lines >= 1)) throw usage(`--count must be a whole number >= 1, got "${o.count}"`);
      const host = flags.server.replace(/:\d+$/, "");
      const address = o.http ?? `${host}:${DEFAULT_HTTP_PORT}`;
      const tls = Boolean(flags.tls || flags.cacert);
      const url = `${tls ? "https" : "http"}://${address}/metrics`;
      const headers: Record<string, string> = flags.token ? { authorization: `Bearer ${flags.token}` } : {};
      const fetchOpts: RequestInit & { tls?: { ca?: string } } = { headers };
      if (flags.cacert) fetchOpts.tls = { ca: readFileSync(flags.cacert, "utf8") };
      const timeout = Number(flags.timeout);
      const scrape = async (): Promise<Scrape> => {
        let res: Response;
        try {
          res = await fetch(url, { ...fetchOpts, signal: AbortSignal.timeout(timeout) });
        } catch (err) {
          throw new CliError(Exit.Server, `${url}: ${(err as Error).message}`, { code: "unavailable" });
        }
        const text = await res.text();
        if (res.status === 401 || res.status === 403)
          throw new CliError(Exit.Auth, `${url}: HTTP ${res.status} (give --token)`, {
            code: "unauthenticated",
          });
        if (res.status !== 200)
          throw new CliError(Exit.Server, `${url}: HTTP ${res.status}`, { code: "unavailable" });
        return parseMetrics(text, performance.now());
      };
      let stop = false;
      const onSignal = () => {
        stop = true;
      };
      process.once("SIGINT", onSignal);
      try {
        let prev = await scrape();
        for (let n = 0; n < lines && !stop; n++) {
          await sleepUnless(intervalMs, () => stop);
          if (stop) break;
          const cur = await scrape();
          const row = rates(prev, cur);
          prev = cur;
          if (flags.json) printJson({ time: new Date().toISOString(), ...row });
          else {
            if (n % HEADER_EVERY === 0) println(header());
            println(formatRow(row));
          }
        }
      } finally {
        process.off("SIGINT", onSignal);
      }
    });
}

function header(): string {
  const cols = ["req/s", ...METHODS.map(([, t]) => t), "err/s", "hit%", "entries", "conns"];
  return cols.map((c, i) => (i === 0 ? c.padStart(9) : c.padStart(c === "entries" ? 12 : 8))).join(" ");
}

function formatRow(r: Record<string, number | null>): string {
  const cells = [
    count(r.requests_per_s ?? 0).padStart(9),
    ...METHODS.map(([m]) => count(r[m] ?? 0).padStart(8)),
    count(r.errors_per_s ?? 0).padStart(8),
    (r.hit_ratio === null || r.hit_ratio === undefined ? "-" : `${(r.hit_ratio * 100).toFixed(1)}`).padStart(
      8,
    ),
    count(r.entries ?? 0).padStart(12),
    count(r.connections ?? 0).padStart(8),
  ];
  return cells.join(" ");
}

async function sleepUnless(msTotal: number, stop: () => boolean): Promise<void> {
  const end = performance.now() + msTotal;
  while (!stop()) {
    const left = end - performance.now();
    if (left <= 0) return;
    await Bun.sleep(Math.min(left, 50));
  }
}
