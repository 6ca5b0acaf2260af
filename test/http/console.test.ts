/**
 * The web console (/console on the HTTP port): its pure parts (the config's redaction, the
 * Prometheus arithmetic, the lookup table's rows) in bun, its HTTP surface with fetch, and the
 * page itself in headless Chromium (Debian's `chromium`, driven by playwright-core) against a
 * real server started by `startServer`, with an entity written over the TCP protocol.
 *
 * The browser tests need /usr/bin/chromium (CHROMIUM_PATH overrides). Without it they are
 * skipped with the reason printed, except under CI, where .ci/run installs it and its absence
 * is a failure. CONSOLE_SCREENSHOTS=<dir> keeps the screenshots there (the README's come from
 * `CONSOLE_SCREENSHOTS=bench/results bun test test/http/console.test.ts`); otherwise they go
 * to a temporary directory that is removed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { createToken } from "../../src/auth/tokens.ts";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { DEFAULTS, loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { type RunningServer, startServer } from "../../src/main.ts";
import { envName, publicConfig, REDACTED } from "../../src/transport/http/console/config.ts";
import { buildAssets } from "../../src/transport/http/console/handler.ts";
import { featureRows } from "../../src/transport/http/console/page/features.ts";
import { liveStats, parsePrometheus, quantile } from "../../src/transport/http/console/page/prometheus.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** The flags Chromium needs on these machines: no sandbox as root, no network but loopback. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const haveChromium = existsSync(CHROMIUM);
const inCi = (process.env.CI ?? "") !== "" && process.env.CI !== "false";
if (!haveChromium && !inCi)
  console.warn(
    `test/http/console.test.ts: skipping the browser tests: ${CHROMIUM} is missing ` +
      "(apt-get install -y --no-install-recommends chromium, as .ci/run does)",
  );

/** A password that must never reach the page. */
const REDIS_PASSWORD = "s3cret-pw";
/** How long a page may take to show what it waits for, ms (it polls every 1,000 ms). */
const UI_TIMEOUT_MS = 10_000;

// ---- pure parts ----------------------------------------------------------------------------

describe("the console's config view", () => {
  test("names each field by its environment variable", () => {
    expect(envName("store")).toBe("STORE");
    expect(envName("redisUrl")).toBe("REDIS_URL");
    expect(envName("nearCacheMaxStalenessMs")).toBe("NEAR_CACHE_MAX_STALENESS_MS");
    expect(envName("consoleEnabled")).toBe("CONSOLE_ENABLED");
  });

  test("redacts a REDIS_URL password, keeps paths, marks what is not the default", () => {
    const c = publicConfig(
      loadConfig({
        REDIS_URL: `redis://app:${REDIS_PASSWORD}@10.0.0.5:6379/0`,
        AUTH_TOKENS_FILE: "/etc/featurestore/tokens",
        CACHE_SIZE: "5000",
      }),
    );
    const byName = new Map(c.config.map((e) => [e.name, e]));
    expect(byName.get("REDIS_URL")?.value).toBe(`redis://app:${REDACTED}@10.0.0.5:6379/0`);
    expect(byName.get("AUTH_TOKENS_FILE")?.value).toBe("/etc/featurestore/tokens");
    expect(byName.get("CACHE_SIZE")).toEqual({ name: "CACHE_SIZE", value: 5000, isDefault: false });
    expect(byName.get("STORE")).toEqual({ name: "STORE", value: "sqlite", isDefault: true });
    expect(JSON.stringify(c)).not.toContain(REDIS_PASSWORD);
    expect(c.config.length).toBe(Object.keys(DEFAULTS).length);
  });

  test("redacts a field whose name says it is a secret, whatever its value", () => {
    const config = { ...loadConfig({}), redisPassword: "hunter2", apiToken: "t0k" };
    const c = publicConfig(config as ReturnType<typeof loadConfig>);
    const byName = new Map(c.config.map((e) => [e.name, e.value]));
    expect(byName.get("REDIS_PASSWORD")).toBe(REDACTED);
    expect(byName.get("API_TOKEN")).toBe(REDACTED);
  });
});

describe("the live panel's arithmetic", () => {
  const scrape = (
    at: number,
    requests: number,
    errors: number,
    buckets: number[],
    hits: number,
    misses: number,
  ) => {
    const les = ["0.0001", "0.001", "0.01", "+Inf"];
    const lines = [
      "# HELP featurestore_requests_total RPCs answered",
      "# TYPE featurestore_requests_total counter",
      `featurestore_requests_total{method="GetFeatures",transport="tcp",code="ok"} ${requests}`,
      `featurestore_requests_total{method="GetFeatures",transport="connect",code="not_found"} ${errors}`,
      ...les.map(
        (le, i) =>
          `featurestore_request_duration_seconds_bucket{method="GetFeatures",transport="tcp",le="${le}"} ${buckets[i]}`,
      ),
      `featurestore_cache_hits_total ${hits}`,
      `featurestore_cache_misses_total ${misses}`,
      'other_metric{path="a \\"quoted\\" label"} 1 1700000000000',
    ];
    return parsePrometheus(lines.join("\n"), at);
  };

  test("parses labels with escapes and skips comments", () => {
    const s = scrape(0, 1, 0, [1, 1, 1, 1], 0, 0);
    expect(s.samples.get("other_metric")).toEqual([{ labels: { path: 'a "quoted" label' }, value: 1 }]);
    expect(s.samples.has("#")).toBe(false);
  });

  test("a window's rate, error rate, p50, p99 and hit ratio come from the counters' increase", () => {
    const a = scrape(1000, 100, 5, [50, 90, 100, 105], 80, 20);
    // 200 more requests in 2 s: 100 under 100 µs, 90 more under 1 ms, 10 under 10 ms.
    const b = scrape(3000, 290, 15, [150, 280, 300, 305], 260, 40);
    const s = liveStats(a, b);
    expect(s.requestsPerSecond).toBe(100);
    expect(s.errorsPerSecond).toBe(5);
    expect(s.p50).toBeCloseTo(0.0001, 9); // rank 100 of 200: the top of the first bucket
    expect(s.p99).toBeCloseTo(0.001 + (0.009 * 8) / 10, 9); // rank 198: 8 of the 10 in (1 ms, 10 ms]
    expect(s.hitRatio).toBe(0.9); // 180 hits, 20 misses
    expect(s.hitRatioTotal).toBeCloseTo(260 / 300, 9);
  });

  test("an idle window has no quantiles and no hit ratio; a restarted server counts from zero", () => {
    const a = scrape(0, 100, 0, [100, 100, 100, 100], 10, 0);
    const idle = liveStats(a, scrape(1000, 100, 0, [100, 100, 100, 100], 10, 0));
    expect(idle.requestsPerSecond).toBe(0);
    expect(Number.isNaN(idle.p50)).toBe(true);
    expect(Number.isNaN(idle.hitRatio)).toBe(true);
    const restarted = liveStats(a, scrape(1000, 7, 0, [7, 7, 7, 7], 1, 0));
    expect(restarted.requestsPerSecond).toBe(7);
  });

  test("a quantile in the +Inf bucket answers the largest finite bound", () => {
    expect(
      quantile(0.99, [
        [0.001, 1],
        [Number.POSITIVE_INFINITY, 100],
      ]),
    ).toBe(0.001);
    expect(Number.isNaN(quantile(0.5, []))).toBe(true);
  });
});

describe("the lookup table's rows", () => {
  const answer = {
    entityId: "user:42",
    found: true,
    missing: ["nope"],
    features: {
      clicks: { intValue: "3" },
      emb: { floatList: { values: [0.5, 0.25, 1, 2, 3, 4, 5, 6, 7] } },
      empty: { stringList: {} },
      raw: { bytesValue: "AAEC" },
    },
  };

  test("without names: every feature, by name, with its type and value", () => {
    expect(featureRows(answer, []).map((r) => [r.name, r.type, r.value, r.status])).toEqual([
      ["clicks", "int", "3", "present"],
      ["emb", "float_list", "[0.5, 0.25, 1, 2, 3, 4, 5, 6, …] (9)", "present"],
      ["empty", "string_list", "[] (0)", "present"],
      ["raw", "bytes", "AAEC (3 B)", "present"],
    ]);
  });

  test("with names: one row per distinct name asked, missing ones marked", () => {
    expect(featureRows(answer, ["nope", "clicks", "nope"]).map((r) => [r.name, r.status])).toEqual([
      ["nope", "missing"],
      ["clicks", "present"],
    ]);
    // A name such as "constructor" is the entity's only if it has it.
    expect(featureRows(answer, ["constructor"])[0]?.status).toBe("missing");
  });
});

// ---- HTTP surface --------------------------------------------------------------------------

/** A feature store on loopback ports 0 over a temporary DATA_DIR, with its TCP client. */
interface Target {
  readonly server: RunningServer;
  readonly base: string;
  readonly client: FeatureStoreClient;
  close(): Promise<void>;
}

async function startTarget(env: Record<string, string>, token?: string): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), "featurestore-console-"));
  const server = startServer(
    loadConfig({
      HOST: "127.0.0.1",
      TCP_PORT: "0",
      HTTP_PORT: "0",
      GRPC_ENABLED: "false",
      DATA_DIR: dataDir,
      DURABILITY: "async",
      SHUTDOWN_TIMEOUT_MS: "2000",
      ...env,
    }),
    silentLogger,
  );
  const client = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${server.tcp.port}`],
    ...(token === undefined ? {} : { token }),
  });
  return {
    server,
    base: `http://127.0.0.1:${server.http.port}`,
    client,
    async close() {
      await client.close();
      await server.shutdown();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A tokens file with one token (write scope: the test writes with it too), in its own directory. */
function tokensFile(): { dir: string; path: string; token: string } {
  const dir = mkdtempSync(join(tmpdir(), "featurestore-console-tokens-"));
  const { token, line } = createToken("console", ["write"]);
  const path = join(dir, "tokens");
  writeFileSync(path, `${line}\n`);
  return { dir, path, token };
}

describe("the console over HTTP", () => {
  test("the assets build from src in a few milliseconds", async () => {
    const started = performance.now();
    const assets = await buildAssets();
    const ms = performance.now() - started;
    console.log(`console: Bun.build of the page took ${ms.toFixed(1)} ms`);
    expect([...assets.keys()].sort()).toEqual([
      "/console/",
      "/console/app.js",
      "/console/favicon.svg",
      "/console/style.css",
    ]);
    expect(ms).toBeLessThan(2_000);
  });

  test("the page is public and locked down; an unchanged asset answers 304; other paths are 404", async () => {
    const t = await startTarget({});
    try {
      for (const path of ["/console", "/console/"]) {
        const res = await fetch(`${t.base}${path}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
        expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
        expect(await res.text()).toContain('<script type="module" src="/console/app.js">');
      }
      const js = await fetch(`${t.base}/console/app.js`);
      expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      const etag = js.headers.get("etag") ?? "";
      expect((await js.text()).length).toBeGreaterThan(1000);
      const again = await fetch(`${t.base}/console/app.js`, { headers: { "if-none-match": etag } });
      expect(again.status).toBe(304);
      expect((await fetch(`${t.base}/console/app.ts`)).status).toBe(404);
      expect((await fetch(`${t.base}/console/app.js`, { method: "POST" })).status).toBe(404);
    } finally {
      await t.close();
    }
  });

  test("CONSOLE_ENABLED=false serves none of it", async () => {
    const t = await startTarget({ CONSOLE_ENABLED: "false" });
    try {
      expect((await fetch(`${t.base}/console`)).status).toBe(404);
      expect((await fetch(`${t.base}/console/config.json`)).status).toBe(404);
    } finally {
      await t.close();
    }
  });

  test("config.json needs a valid token when AUTH_TOKENS_FILE is set, and never holds one", async () => {
    const tokens = tokensFile();
    const t = await startTarget({ AUTH_TOKENS_FILE: tokens.path }, tokens.token);
    try {
      const refused = await fetch(`${t.base}/console/config.json`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get("www-authenticate")).toBe("Bearer");
      expect((await fetch(`${t.base}/console`)).status).toBe(200); // the page itself is public
      const ok = await fetch(`${t.base}/console/config.json`, {
        headers: { authorization: `Bearer ${tokens.token}` },
      });
      expect(ok.status).toBe(200);
      const text = await ok.text();
      expect(text).toContain(tokens.path);
      expect(text).not.toContain(tokens.token);
      expect(text).not.toContain("sha256:");
    } finally {
      await t.close();
      rmSync(tokens.dir, { recursive: true, force: true });
    }
  });
});

// ---- in Chromium ---------------------------------------------------------------------------

test.if(!haveChromium && inCi)("Chromium is installed under CI (.ci/run installs it)", () => {
  expect(existsSync(CHROMIUM)).toBe(true);
});

describe.skipIf(!haveChromium)("the console in headless Chromium", () => {
  let browser: Browser;
  const keep = process.env.CONSOLE_SCREENSHOTS;
  const shots = keep ?? mkdtempSync(join(tmpdir(), "featurestore-console-shots-"));

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    if (keep === undefined) rmSync(shots, { recursive: true, force: true });
  });

  /**
   * A new tab on the console, and the errors it reports: uncaught exceptions and failed loads
   * (a 401 is expected where the test leaves the token out).
   */
  async function openConsole(base: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().includes("401")) errors.push(m.text());
    });
    await page.goto(`${base}/console`);
    return { page, errors };
  }

  /**
   * Waits for `cond` to hold, polling; throws after UI_TIMEOUT_MS. (Playwright's waitForFunction
   * evaluates with eval inside the page, which the console's CSP forbids, as it should.)
   */
  async function until(cond: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + UI_TIMEOUT_MS;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`not true within ${UI_TIMEOUT_MS} ms: ${cond}`);
      await Bun.sleep(50);
    }
  }

  /** The feature table as rows of [name, type, value, status, age]. */
  async function tableRows(page: Page): Promise<string[][]> {
    const cells = await page.locator("#features-body td").allTextContents();
    const rows: string[][] = [];
    for (let i = 0; i < cells.length; i += 5) rows.push(cells.slice(i, i + 5));
    return rows;
  }

  async function lookUp(page: Page, id: string, names: string, expectStatus: string): Promise<void> {
    await page.fill("#entity-id", id);
    await page.fill("#feature-names", names);
    await page.click("#lookup-button");
    await page
      .locator("#lookup-status")
      .filter({ hasText: expectStatus })
      .waitFor({ timeout: UI_TIMEOUT_MS });
  }

  test("looks entities up through Connect, shows live metrics and the config without secrets", async () => {
    const t = await startTarget({ REDIS_URL: `redis://app:${REDIS_PASSWORD}@127.0.0.1:6399` });
    let loading = false;
    let load = Promise.resolve();
    try {
      await t.client.setFeatures("user:42", {
        clicks: 3,
        ctr: { double: 0.25 },
        country: "fr",
        premium: true,
        avatar: new Uint8Array([0, 1, 2]),
        embedding: new Float32Array([0.5, 0.25, -1]),
        recent: ["item:7", "item:9"],
        counts: new BigInt64Array([1n, 2n]),
      });
      const { page, errors } = await openConsole(t.base);

      // Every feature, by name: types and values as the Connect JSON mapping gives them.
      await lookUp(page, "user:42", "", 'found "user:42": 8 present');
      expect(await tableRows(page)).toEqual([
        ["avatar", "bytes", "AAEC (3 B)", "present", "—"],
        ["clicks", "int", "3", "present", "—"],
        ["country", "string", '"fr"', "present", "—"],
        ["counts", "int_list", "[1, 2] (2)", "present", "—"],
        ["ctr", "double", "0.25", "present", "—"],
        ["embedding", "float_list", "[0.5, 0.25, -1] (3)", "present", "—"],
        ["premium", "bool", "true", "present", "—"],
        ["recent", "string_list", '["item:7", "item:9"] (2)', "present", "—"],
      ]);

      // A projection with a name the entity lacks.
      await lookUp(page, "user:42", "clicks, nope, embedding", "1 missing");
      expect(await tableRows(page)).toEqual([
        ["clicks", "int", "3", "present", "—"],
        ["nope", "", "", "missing", "—"],
        ["embedding", "float_list", "[0.5, 0.25, -1] (3)", "present", "—"],
      ]);
      expect(await page.locator("#lookup-status").textContent()).toContain("2 present, 1 missing");
      expect(await page.locator("#features-body tr.missing td.name").textContent()).toBe("nope");

      // An entity that does not exist, with and without names.
      await lookUp(page, "nobody", "", '"nobody" not found');
      expect(await tableRows(page)).toEqual([]);
      await lookUp(page, "nobody", "clicks", '"nobody" not found');
      expect(await tableRows(page)).toEqual([["clicks", "", "", "missing", "—"]]);

      // Load over TCP while the page polls /metrics: the request rate climbs past anything the
      // page's own lookups make (a few a second), and the latency and hit ratio tiles fill in.
      loading = true;
      load = (async () => {
        while (loading) {
          await Promise.all(Array.from({ length: 50 }, () => t.client.getFeatures("user:42", ["clicks"])));
          await Bun.sleep(1);
        }
      })();
      const rate = async () =>
        Number.parseFloat(((await page.locator("#rate").textContent()) ?? "").replaceAll(",", ""));
      await until(async () => (await rate()) >= 100);
      expect(await page.locator("#p50").textContent()).toMatch(/^\d+(\.\d+)? (µs|ms|s)$/);
      expect(await page.locator("#p99").textContent()).toMatch(/^\d+(\.\d+)? (µs|ms|s)$/);
      expect(await page.locator("#hit-ratio-total").textContent()).toMatch(/^\d+\.\d % since start$/);
      expect(await page.locator("#sparkline-line").getAttribute("points")).not.toBe("");

      // The config in effect: STORE among them, the Redis password nowhere on the page.
      await page.locator("#config-status").filter({ hasText: "Bun" }).waitFor({ timeout: UI_TIMEOUT_MS });
      const config = await page.locator("#config-body tr").allInnerTexts();
      expect(config.some((r) => /^STORE\s+sqlite$/.test(r))).toBe(true);
      expect(config.some((r) => r.includes(`REDIS_URL\tredis://app:${REDACTED}@127.0.0.1:6399`))).toBe(true);
      expect(await page.content()).not.toContain(REDIS_PASSWORD);
      // The README's pictures: the lookup beside the live panel under load, and the whole page.
      await lookUp(page, "user:42", "", 'found "user:42": 8 present');
      const points = async () =>
        ((await page.locator("#sparkline-line").getAttribute("points")) ?? "").split(" ");
      await until(async () => (await points()).length >= 6); // a few seconds of history on the sparkline
      await page.screenshot({ path: join(shots, "console-lookup.png") });
      await page.screenshot({ path: join(shots, "console-full.png"), fullPage: true });
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      loading = false;
      await load;
      await t.close();
    }
    expect(statSync(join(shots, "console-lookup.png")).size).toBeGreaterThan(10_000);
  }, 60_000);

  test("with AUTH_TOKENS_FILE and METRICS_AUTH every call waits for the token typed in the page", async () => {
    const tokens = tokensFile();
    const t = await startTarget({ AUTH_TOKENS_FILE: tokens.path, METRICS_AUTH: "true" }, tokens.token);
    try {
      await t.client.setFeatures("user:7", { clicks: 11 });
      const { page } = await openConsole(t.base);
      // Without a token: each panel says what is missing.
      await lookUp(page, "user:7", "", "unauthenticated");
      expect(await page.locator("#lookup-status").textContent()).toContain("enter a token above");
      await page.locator("#config-status").filter({ hasText: "unauthenticated" }).waitFor();
      await page.locator("#live-status").filter({ hasText: "unauthenticated" }).waitFor();

      await page.fill("#token", tokens.token);
      await page.click("#token-use");
      await page.locator("#token-state").filter({ hasText: "token set" }).waitFor();
      await lookUp(page, "user:7", "", 'found "user:7"');
      expect(await tableRows(page)).toEqual([["clicks", "int", "11", "present", "—"]]);
      await page.locator("#config-status").filter({ hasText: "Bun" }).waitFor({ timeout: UI_TIMEOUT_MS });
      await page.locator("#live-status").filter({ hasText: "updated" }).waitFor({ timeout: UI_TIMEOUT_MS });
      // The token stays in this tab: sessionStorage, never localStorage or a cookie.
      const stored = await page.evaluate(
        "[sessionStorage.length, localStorage.length, document.cookie, document.getElementById('token').value]",
      );
      expect(stored).toEqual([1, 0, "", ""]);
      await page.close();
    } finally {
      await t.close();
      rmSync(tokens.dir, { recursive: true, force: true });
    }
  }, 60_000);
});
