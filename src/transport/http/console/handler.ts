/**
 * The web console (CONSOLE_ENABLED), answered to GET and HEAD on the HTTP port:
 *
 * ```
 * /console, /console/   the page (page/index.html)
 * /console/app.js       page/app.ts and its imports, bundled by Bun.build for the browser
 * /console/style.css    page/style.css
 * /console/favicon.svg  page/favicon.svg (without it every visit logs a 404 for /favicon.ico)
 * /console/config.json  the config in effect, secrets redacted (config.ts); a token when auth is on
 * ```
 *
 * The page is static and public: it holds no data. Everything it shows comes from calls the
 * browser makes with the token the user typed in: GetFeatures through the Connect adapter
 * (JSON), /metrics, and /console/config.json, which needs a valid token of any scope whenever
 * AUTH_TOKENS_FILE is set (the config is not secret, but it maps the deployment).
 *
 * Nothing generated is committed: the assets are built from page/ on the first request and
 * kept in memory (14 KiB). The build costs 5-7 ms here (Bun 1.4.5; test/http/console.test.ts
 * prints it), paid once by the first visitor rather than by every server start, nor at all by
 * servers nobody opens the console on.
 * A failed build is logged and answered 500, and retried on the next request.
 */
import { join } from "node:path";
import type { Auth } from "../../../auth/tokens.ts";
import { FeatureStoreError } from "../../../codec/status.ts";
import type { Config } from "../../../config/index.ts";
import type { Logger } from "../../../log/index.ts";
import { refusalHeaders } from "../auth.ts";
import { connectErrorResponse, JSON_HEADERS } from "../connect/protocol.ts";
import { headerAuthorization, headerCacheControl, headerContentType } from "../headers.ts";
import { publicConfig } from "./config.ts";

/** The console's path; its assets are under `${CONSOLE_PATH}/`. */
export const CONSOLE_PATH = "/console";
/** The config endpoint's path. */
export const CONSOLE_CONFIG_PATH = `${CONSOLE_PATH}/config.json`;

/** The page sources, beside this file. */
const PAGE_DIR = join(import.meta.dir, "page");

/**
 * Same-origin everything, no inline script or style, no framing: the page only ever talks to
 * the server that served it, so a CSP this strict costs nothing and blunts any injection.
 */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** The `if-none-match` request header and its `etag` answer. */
const headerIfNoneMatch = "if-none-match";
const headerEtag = "etag";

/** One built asset, held in memory. */
interface Asset {
  readonly body: Uint8Array;
  readonly headers: Record<string, string>;
  readonly etag: string;
}

/** Answers the console's paths for one server. */
export class ConsoleHandler {
  /** The assets by path, built once on first use; null until then or after a failed build. */
  private assets: Promise<Map<string, Asset>> | null = null;
  /** The config.json body: the config cannot change while the server runs. */
  private readonly configJson: string;

  constructor(
    config: Config,
    private readonly auth: Auth | undefined,
    private readonly logger: Logger,
  ) {
    this.configJson = JSON.stringify(publicConfig(config));
  }

  /** True for the paths this handler owns (the router asks before `answer`). */
  static owns(path: string): boolean {
    return path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`);
  }

  /** The answer to a GET or HEAD of `path`, or undefined when no such console file exists (404). */
  async answer(path: string, headers: Headers): Promise<Response | undefined> {
    if (path === CONSOLE_CONFIG_PATH) return this.config(headers);
    const key = path === CONSOLE_PATH ? `${CONSOLE_PATH}/` : path;
    const asset = (await this.built()).get(key);
    if (asset === undefined) return undefined;
    if (headers.get(headerIfNoneMatch) === asset.etag)
      return new Response(null, { status: 304, headers: { [headerEtag]: asset.etag } });
    return new Response(asset.body, { headers: asset.headers });
  }

  /** GET /console/config.json: any valid token when authentication is on. */
  private config(headers: Headers): Response {
    if (this.auth?.enabled) {
      try {
        this.auth.fromHeader(headers.get(headerAuthorization), "console");
      } catch (err) {
        const e = FeatureStoreError.from(err);
        return connectErrorResponse(e, refusalHeaders(e, false));
      }
    }
    return new Response(this.configJson, {
      headers: { ...JSON_HEADERS, [headerCacheControl]: "no-store", ...SECURITY_HEADERS },
    });
  }

  private built(): Promise<Map<string, Asset>> {
    if (this.assets === null) {
      this.assets = buildAssets();
      this.assets.catch((err) => {
        this.logger.error("console: building the page failed; retrying on the next request", { err });
        this.assets = null;
      });
    }
    return this.assets;
  }
}

/**
 * Bundles page/app.ts for browsers (one ES module, minified, no source map) and reads the HTML
 * and CSS beside it. Throws the build's messages when it fails.
 */
export async function buildAssets(): Promise<Map<string, Asset>> {
  const result = await Bun.build({
    entrypoints: [join(PAGE_DIR, "app.ts")],
    target: "browser",
    format: "esm",
    minify: true,
    sourcemap: "none",
  });
  const js = result.outputs[0];
  if (!result.success || js === undefined)
    throw new AggregateError(result.logs, "console: Bun.build of page/app.ts failed");
  const [html, css, icon, script] = await Promise.all([
    Bun.file(join(PAGE_DIR, "index.html")).bytes(),
    Bun.file(join(PAGE_DIR, "style.css")).bytes(),
    Bun.file(join(PAGE_DIR, "favicon.svg")).bytes(),
    // A BuildArtifact is Blob-like, but Bun 1.4.5's has no bytes() yet.
    js.arrayBuffer().then((b) => new Uint8Array(b)),
  ]);
  return new Map([
    [`${CONSOLE_PATH}/`, asset(html, "text/html; charset=utf-8")],
    [`${CONSOLE_PATH}/app.js`, asset(script, "text/javascript; charset=utf-8")],
    [`${CONSOLE_PATH}/style.css`, asset(css, "text/css; charset=utf-8")],
    [`${CONSOLE_PATH}/favicon.svg`, asset(icon, "image/svg+xml")],
  ]);
}

function asset(body: Uint8Array, type: string): Asset {
  const etag = `"${Bun.hash(body).toString(36)}"`;
  return {
    body,
    etag,
    // no-cache = revalidate each time: the etag makes that a 304, and a new server version is
    // picked up at once.
    headers: {
      [headerContentType]: type,
      [headerCacheControl]: "no-cache",
      [headerEtag]: etag,
      ...SECURITY_HEADERS,
    },
  };
}
