/**
 * The shipped alert rules and dashboard against Prometheus' own checker (`promtool`, Debian's
 * `prometheus` package; .ci/run installs it) and against what real processes export:
 *
 * - `promtool check rules` and `promtool test rules` (test/metrics/alerts.test.yml) on
 *   src/metrics/alerts.yml;
 * - `promtool check metrics` on the /metrics of a server that has seen traffic (STORE=memory;
 *   STORE=redis with AUTH_TOKENS_FILE) and of a stream consumer;
 * - every metric name that an alert or a dashboard panel queries appears in those scrapes.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken } from "../../src/auth/tokens.ts";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { type IngestHandle, startIngest } from "../../src/ingest/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import {
  connect,
  removeDir,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { produce, redisClient } from "../ingest/fixture.ts";
import { type RedisNode, startRedis } from "../redis/harness.ts";
import { until } from "../until.ts";

setDefaultTimeout(60_000);

const ROOT = join(import.meta.dir, "..", "..");
const ALERTS = join(ROOT, "src/metrics/alerts.yml");
const DASHBOARD = join(ROOT, "src/metrics/grafana-dashboard.json");
const ALERT_TESTS = join(import.meta.dir, "alerts.test.yml");

/**
 * What `promtool check metrics` (2.42) says of prom-client's default process metrics: three
 * gauges named like counters. They are prom-client's names, not ours; each also exists without
 * `_total`, by type (`nodejs_active_handles{type}`), so dropping them loses nothing. Listed here
 * until src/metrics/prometheus.ts removes them; any other complaint fails the test.
 */

/** Series Prometheus makes itself for every target; no process exports them. */
const SYNTHETIC = new Set(["up"]);

function promtool(args: string[], stdin?: string): { code: number; out: string } {
  const which = Bun.which("promtool");
  if (which === null)
    throw new Error(
      "promtool is missing: apt-get install prometheus (Debian's package; .ci/run installs it)",
    );
  const p = Bun.spawnSync([which, ...args], {
    cwd: ROOT,
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode ?? -1, out: `${p.stdout.toString()}${p.stderr.toString()}` };
}

/** Names of the samples in a scrape (`x_bucket`, `x_sum`, `x_count` for a histogram). */
function sampleNames(scrape: string): Set<string> {
  const names = new Set<string>();
  for (const line of scrape.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    names.add(line.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/)![0]);
  }
  return names;
}

const PROMQL_WORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "offset",
  "bool",
  "inf",
  "nan",
]);

/**
 * Metric names a PromQL expression reads: identifiers left once strings, label matchers,
 * grouping lists, ranges and Grafana variables are taken out, except function names (followed
 * by `(`) and keywords.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\$\w+/g, " ")
    .replace(/\boffset\s+\d+\w+/g, " ");
  const out: string[] = [];
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
    if (m[1] !== undefined) continue; // a function
    if (PROMQL_WORDS.has(m[0])) continue;
    out.push(m[0]);
  }
  return out;
}

/** Every expression of the alert rules (their `expr:` values, one or several lines). */
function alertExpressions(): string[] {
  const lines = require("node:fs").readFileSync(ALERTS, "utf8").split("\n") as string[];
  const exprs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i]!.match(/^(\s*)expr:\s*(.*)$/);
    if (!m) continue;
    if (m[2] !== "|") {
      exprs.push(m[2]!);
      continue;
    }
    const body: string[] = [];
    const indent = m[1]!.length;
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === "" || lines[i + 1]!.search(/\S/) > indent))
      body.push(lines[++i]!);
    exprs.push(body.join("\n"));
  }
  return exprs;
}

/** Every `expr` of the dashboard's panel targets and the query of its variables. */
function dashboardExpressions(): string[] {
  const d = JSON.parse(require("node:fs").readFileSync(DASHBOARD, "utf8"));
  const exprs: string[] = [];
  for (const p of d.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
  for (const v of d.templating.list)
    if (v.type === "query") exprs.push(v.definition.replace(/label_values\(([^,]+),.*/, "$1"));
  return exprs;
}

describe("the alert rules", () => {
  test("promtool check rules accepts src/metrics/alerts.yml", () => {
    const { code, out } = promtool(["check", "rules", ALERTS]);
    expect(out).toContain("SUCCESS");
    expect(code).toBe(0);
  });

  test("promtool test rules: the alerts fire (and stay quiet) on the synthetic series of alerts.test.yml", () => {
    const { code, out } = promtool(["test", "rules", ALERT_TESTS]);
    expect(out).toContain("SUCCESS");
    expect(code).toBe(0);
  });

  test("the PromQL name extraction finds metrics, not functions, labels, keywords or variables", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (method, le) (rate(x_bucket{instance=~"$instance",code!="ok"}[$__rate_interval]))) / ignoring(code) group_left sum(y_total offset 5m) and time() - z',
      ),
    ).toEqual(["x_bucket", "y_total", "z"]);
  });
});

describe("what real processes export", () => {
  const dirs: string[] = [];
  const servers: ServerProcess[] = [];
  const clients: FeatureStoreClient[] = [];
  let redis: RedisNode;
  let ingest: IngestHandle | null = null;
  const scrapes: Record<string, string> = {};

  /** Traffic that makes every request-level series appear: hits, misses, errors, rejections. */
  async function traffic(server: ServerProcess, client: FeatureStoreClient): Promise<void> {
    await client.setFeatures("u:1", { a: 1, b: "x" });
    await client.batchSet([{ entityId: "u:2", features: { a: 2 } }]);
    await client.getFeatures("u:1");
    await client.getFeatures("nobody");
    await client.batchGet(["u:1", "u:2", "u:3"]);
    await client.deleteFeatures("u:2");
    await client.ping();
    await client.setFeatures("", { a: 1 }).catch(() => {}); // invalid_argument
    await fetch(`http://127.0.0.1:${server.httpPort}/featurestore.v1.FeatureStore/GetFeatures`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ entityId: "u:1" }),
    }).then((r) => r.arrayBuffer());
    await fetch(`http://127.0.0.1:${server.httpPort}/nowhere`).then((r) => r.arrayBuffer()); // http_not_found
  }

  async function scrapeOf(server: ServerProcess): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  }

  beforeAll(async () => {
    // STORE=memory, no authentication.
    const memDir = tempDir("promtool-memory");
    dirs.push(memDir);
    const mem = await startServer(serverEnv(memDir, { STORE: "memory" }), (s) => servers.push(s));
    const memClient = await connect(mem);
    clients.push(memClient);
    await traffic(mem, memClient);
    scrapes.memory = await scrapeOf(mem);

    // STORE=redis with tokens: the Redis and authentication metrics.
    redis = await startRedis();
    const redisDir = tempDir("promtool-redis");
    dirs.push(redisDir);
    const { token, line } = createToken("tester", ["admin"]);
    const tokensFile = join(redisDir, "tokens");
    writeFileSync(tokensFile, `${line}\n`);
    const red = await startServer(
      serverEnv(redisDir, { STORE: "redis", REDIS_URL: redis.url, AUTH_TOKENS_FILE: tokensFile }),
      (s) => servers.push(s),
    );
    // Writes are UNAVAILABLE until the server's Redis link is up: wait for /ready, as a
    // deployment's readiness probe does.
    await until("the STORE=redis server is ready", async () => (await red.httpStatus("/ready")) === 200);
    const redClient = await FeatureStoreClient.connect({ servers: [red.address], token, deadlineMs: 10_000 });
    clients.push(redClient);
    await traffic(red, redClient);
    const stranger = await FeatureStoreClient.connect({ servers: [red.address], token: "not-a-token" }).catch(
      () => null,
    );
    if (stranger !== null) {
      clients.push(stranger);
      await stranger.ping().catch(() => {});
    }
    await redClient.getFeatures("u:1"); // a near-cache hit after the load
    scrapes.redis = await scrapeOf(red);

    // A stream consumer that wrote, dead-lettered and measured its lag.
    const r = await redisClient(redis.url);
    try {
      await produce(r, "s", 0, 10, (i) =>
        // Entry 3 is invalid; entry 5 is refused by the server (an id past MAX_ENTITY_ID_BYTES).
        i === 3 ? ["bad", "entry"] : ["entity_id", i === 5 ? "x".repeat(2000) : `i:${i}`, "f:n", String(i)],
      );
    } finally {
      await r.destroy();
    }
    ingest = await startIngest({
      redisUrl: redis.url,
      stream: "s",
      group: "g",
      consumer: "c",
      client: memClient,
      blockMs: 50,
      logger: silentLogger,
    });
    for (let i = 0; i < 500 && ingest.stats().written + ingest.stats().deadLettered < 10; i++)
      await Bun.sleep(10);
    scrapes.ingest = await ingest.registry.metrics();
  });

  afterAll(async () => {
    await ingest?.stop();
    for (const c of clients) await c.close();
    for (const s of servers) await s.stop();
    await redis?.stop();
    for (const d of dirs) removeDir(d);
  });

  for (const which of ["memory", "redis"] as const) {
    test(`promtool check metrics: a STORE=${which} server's scrape is clean`, () => {
      expect(promtool(["check", "metrics"], scrapes[which])).toEqual({ code: 0, out: "" });
    });
  }

  test("promtool check metrics: the stream consumer's scrape is clean", () => {
    expect(promtool(["check", "metrics"], scrapes.ingest)).toEqual({ code: 0, out: "" });
  });

  test("every metric an alert or a dashboard panel queries is exported by a server or the consumer", () => {
    const exported = new Set([
      ...sampleNames(scrapes.memory!),
      ...sampleNames(scrapes.redis!),
      ...sampleNames(scrapes.ingest!),
    ]);
    const queried = new Map<string, string>();
    for (const e of alertExpressions())
      for (const n of metricNames(e)) queried.set(n, `alerts.yml: ${e.trim()}`);
    for (const e of dashboardExpressions()) for (const n of metricNames(e)) queried.set(n, `dashboard: ${e}`);
    expect(queried.size).toBeGreaterThan(25);
    const missing = [...queried]
      .filter(([n]) => !exported.has(n) && !SYNTHETIC.has(n))
      .map(([n, e]) => `${n} (${e})`);
    expect(missing).toEqual([]);
  });

  test("a STORE=memory server alone exports every server metric the dashboard queries but the Redis and auth ones", () => {
    const mem = sampleNames(scrapes.memory!);
    const needed = dashboardExpressions()
      .flatMap(metricNames)
      .filter((n) => !/^featurestore_(redis|auth|ingest)_/.test(n));
    expect(needed.filter((n) => !mem.has(n))).toEqual([]);
  });
});
