/**
 * The console page's script (bundled by handler.ts for the browser). Three panels, each fed by
 * one call the browser makes to the server that served the page:
 *
 * - lookup: GetFeatures through the Connect adapter, JSON (POST, `connect-protocol-version: 1`);
 * - live: /metrics scraped every second, rates and quantiles computed here (prometheus.ts);
 * - config: /console/config.json, secrets already redacted by the server.
 *
 * The token the user types is sent as `authorization: Bearer <token>` on all three. It lives in
 * this tab only (sessionStorage: gone when the tab closes, never sent anywhere else). Every
 * value from the server reaches the page through textContent, never as HTML.
 */
import { document, type Element, type InputElement, sessionStorage } from "./dom.ts";
import { type FeatureRow, featureRows, type GetFeaturesJson } from "./features.ts";
import { type LiveStats, liveStats, parsePrometheus, type Scrape } from "./prometheus.ts";

const GET_FEATURES = "/featurestore.v1.FeatureStoreService/GetFeatures";
const METRICS = "/metrics";
const CONFIG = "/console/config.json";
/** How often /metrics is scraped, ms: the window of every live number. */
const POLL_MS = 1000;
/** Request-rate points the sparkline keeps (one a poll: a minute). */
const HISTORY = 60;
const TOKEN_KEY = "featurestore.console.token";

let token = sessionStorage.getItem(TOKEN_KEY) ?? "";

function el<T extends Element = Element>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`console: #${id} is missing from index.html`);
  return e as T;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return token === "" ? extra : { ...extra, authorization: `Bearer ${token}` };
}

/** A Connect error answer's "code: message", or the HTTP status when the body is not one. */
async function errorText(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const e = JSON.parse(text) as { code?: string; message?: string };
    if (e.code !== undefined) {
      const hint = e.code === "unauthenticated" ? " (enter a token above)" : "";
      return `${e.code}: ${e.message ?? ""}${hint}`;
    }
  } catch {}
  return `HTTP ${res.status} ${res.statusText}`;
}

function setStatus(node: Element, text: string, kind: "ok" | "warn" | "error" | "" = ""): void {
  node.textContent = text;
  node.className = kind === "" ? "status" : `status ${kind}`;
}

// ---- token ---------------------------------------------------------------------------------

function showToken(): void {
  setStatus(el("token-state"), token === "" ? "no token" : "token set (this tab only)");
}

function setupToken(): void {
  const input = el<InputElement>("token");
  el<Element>("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = input.value.trim();
    input.value = "";
    if (token === "") sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
    showToken();
    void loadConfig();
  });
  el("token-forget").addEventListener("click", () => {
    token = "";
    input.value = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
    void loadConfig();
  });
  showToken();
}

// ---- lookup --------------------------------------------------------------------------------

function setupLookup(): void {
  el<Element>("lookup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void lookup();
  });
}

async function lookup(): Promise<void> {
  const id = el<InputElement>("entity-id").value;
  const names = el<InputElement>("feature-names")
    .value.split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  const status = el("lookup-status");
  const body = el("features-body");
  setStatus(status, `looking up ${JSON.stringify(id)}…`);
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(GET_FEATURES, {
      method: "POST",
      headers: headers({ "content-type": "application/json", "connect-protocol-version": "1" }),
      body: JSON.stringify({ entityId: id, featureNames: names }),
    });
  } catch (err) {
    setStatus(status, `the server did not answer: ${String(err)}`, "error");
    return;
  }
  const ms = performance.now() - started;
  if (!res.ok) {
    body.replaceChildren();
    setStatus(status, await errorText(res), "error");
    return;
  }
  const answer = (await res.json()) as GetFeaturesJson;
  const rows = featureRows(answer, names);
  body.replaceChildren(...rows.map(rowOf));
  const took = `${ms.toFixed(1)} ms round trip`;
  if (answer.found) {
    const present = rows.filter((r) => r.status === "present").length;
    const missing = rows.length - present;
    setStatus(
      status,
      `found ${JSON.stringify(id)}: ${present} present` +
        (missing > 0 ? `, ${missing} missing` : "") +
        ` · ${took}`,
      missing > 0 ? "warn" : "ok",
    );
  } else setStatus(status, `${JSON.stringify(id)} not found · ${took}`, "warn");
}

function rowOf(r: FeatureRow): Element {
  const tr = document.createElement("tr");
  tr.className = r.status;
  const cell = (text: string, cls: string, title?: string) => {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    if (title !== undefined && title !== text) td.title = title;
    tr.append(td);
  };
  cell(r.name, "name");
  cell(r.type, "type");
  cell(r.value, "value", r.full);
  cell(r.status, "feature-status");
  cell(r.age === "" ? "—" : r.age, "age");
  return tr;
}

// ---- live ----------------------------------------------------------------------------------

const rates: number[] = [];
let previous: Scrape | null = null;

function setupLive(): void {
  const tick = async () => {
    if (document.visibilityState === "visible") await poll();
    else previous = null; // a window spanning a hidden tab would average over minutes
    setTimeout(tick, POLL_MS);
  };
  void tick();
}

async function poll(): Promise<void> {
  const status = el("live-status");
  try {
    const res = await fetch(METRICS, { headers: headers(), cache: "no-store" });
    if (!res.ok) {
      setStatus(status, `/metrics: ${await errorText(res)}`, "error");
      previous = null;
      return;
    }
    const scrape = parsePrometheus(await res.text(), performance.now());
    if (previous !== null) {
      showLive(liveStats(previous, scrape));
      setStatus(status, `updated ${new Date().toLocaleTimeString()}`);
    } else setStatus(status, "measuring…");
    previous = scrape;
  } catch (err) {
    setStatus(status, `/metrics did not answer: ${String(err)}`, "error");
    previous = null;
  }
}

function showLive(s: LiveStats): void {
  el("rate").textContent = `${fmtRate(s.requestsPerSecond)}/s`;
  el("errors").textContent = `${fmtRate(s.errorsPerSecond)}/s`;
  el("p50").textContent = fmtSeconds(s.p50);
  el("p99").textContent = fmtSeconds(s.p99);
  el("hit-ratio").textContent = fmtRatio(s.hitRatio);
  el("hit-ratio-total").textContent = `${fmtRatio(s.hitRatioTotal)} since start`;
  rates.push(s.requestsPerSecond);
  if (rates.length > HISTORY) rates.shift();
  drawSparkline();
}

/** The request rate of the last HISTORY polls as an SVG polyline in a 120 × 30 box. */
function drawSparkline(): void {
  const max = Math.max(1, ...rates);
  const points = rates.map((r, i) => {
    const x = (120 * (i + HISTORY - rates.length)) / (HISTORY - 1);
    const y = 29 - (28 * r) / max;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  el("sparkline-line").setAttribute("points", points.join(" "));
  el("sparkline").setAttribute("aria-label", `request rate, last ${rates.length} s, peak ${fmtRate(max)}/s`);
}

function fmtRate(r: number): string {
  return r >= 100 ? Math.round(r).toLocaleString("en") : r.toFixed(1);
}

function fmtSeconds(s: number): string {
  if (Number.isNaN(s)) return "–";
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(2)} ms`;
  return `${s.toFixed(2)} s`;
}

function fmtRatio(r: number): string {
  return Number.isNaN(r) ? "–" : `${(r * 100).toFixed(1)} %`;
}

// ---- config --------------------------------------------------------------------------------

interface ConfigJson {
  bun: string;
  config: Array<{ name: string; value: unknown; isDefault: boolean }>;
}

async function loadConfig(): Promise<void> {
  const status = el("config-status");
  const body = el("config-body");
  try {
    const res = await fetch(CONFIG, { headers: headers(), cache: "no-store" });
    if (!res.ok) {
      body.replaceChildren();
      setStatus(status, await errorText(res), "error");
      return;
    }
    const c = (await res.json()) as ConfigJson;
    body.replaceChildren(
      ...c.config.map((e) => {
        const tr = document.createElement("tr");
        tr.className = e.isDefault ? "default" : "set";
        const name = document.createElement("td");
        name.textContent = e.name;
        const value = document.createElement("td");
        value.textContent = Array.isArray(e.value)
          ? e.value.join(", ")
          : e.value === null
            ? ""
            : String(e.value);
        tr.append(name, value);
        return tr;
      }),
    );
    const set = c.config.filter((e) => !e.isDefault).length;
    setStatus(status, `${set} set, ${c.config.length - set} at their default · Bun ${c.bun}`);
  } catch (err) {
    setStatus(status, `the server did not answer: ${String(err)}`, "error");
  }
}

setupToken();
setupLookup();
setupLive();
void loadConfig();
