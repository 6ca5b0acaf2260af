/**
 * CORS (https://fetch.spec.whatwg.org/#http-cors-protocol), so that a page on an allowed origin
 * can call the service with connect-web or grpc-web, and a page on any other cannot.
 *
 * CORS_ORIGINS decides it, once per server:
 *
 * ```
 * (empty, the default)   no CORS headers at all: a browser refuses every cross-origin call
 * https://a.example,...  those origins: access-control-allow-origin: <the origin>, vary: origin
 * *                      any origin (for read-only open deployments): access-control-allow-origin: *
 * ```
 *
 * No credentials are allowed (the token travels in `authorization`, which a page sets itself;
 * there are no cookies to protect). A preflight is answered with a fixed list of request
 * headers, the ones Connect and gRPC-web clients send and `authorization`, never with what the
 * preflight asks for: an echo would let a page send any header at all.
 *
 * With CORS off, answers are not touched; with it on, an answer to a request with an `origin`
 * header gets its headers added after the handler (a browser always sends `origin`
 * cross-origin; server-to-server clients do not, and pay one header read).
 */
import { headerAllow } from "./headers.ts";

/** The request header a browser names the calling page's origin in. */
export const headerOrigin = "origin";
/** Names the request headers an answer depends on, for caches (`origin` with a list of origins). */
export const headerVary = "vary";
export const headerAllowOrigin = "access-control-allow-origin";
export const headerAllowMethods = "access-control-allow-methods";
export const headerAllowHeaders = "access-control-allow-headers";
export const headerExposeHeaders = "access-control-expose-headers";
export const headerMaxAge = "access-control-max-age";

/** Request headers Connect and gRPC-web clients send, and the token: the whole allowed list. */
export const ALLOWED_HEADERS = [
  "Content-Type",
  "Connect-Protocol-Version",
  "Connect-Timeout-Ms",
  "Connect-Accept-Encoding",
  "Connect-Content-Encoding",
  "Content-Encoding",
  "Accept-Encoding",
  "Grpc-Timeout",
  "Grpc-Encoding",
  "Grpc-Accept-Encoding",
  "X-Grpc-Web",
  "X-User-Agent",
  "Authorization",
];

/** Response headers a browser client must be able to read. */
export const EXPOSED_HEADERS = [
  "Grpc-Status",
  "Grpc-Message",
  "Grpc-Status-Details-Bin",
  "Content-Encoding",
  "Connect-Content-Encoding",
];

/** The HTTP methods of the port, on every answer to OPTIONS. */
const METHODS = "GET, POST, OPTIONS";
/** How long a browser may cache a preflight answer, in seconds (2 h, Chromium's cap). */
const MAX_AGE_SECONDS = "7200";
const ALLOWED = ALLOWED_HEADERS.join(", ");
const EXPOSED = EXPOSED_HEADERS.join(", ");

/** The answer to a plain OPTIONS, or to a preflight from an origin that is not allowed. */
const PLAIN_OPTIONS = { [headerAllow]: METHODS };

/**
 * The preflight answer's headers for an allowed origin (`access-control-allow-origin` and
 * `vary` are added by `wrap`, as on every answer).
 */
const PREFLIGHT = {
  [headerAllow]: METHODS,
  [headerAllowMethods]: METHODS,
  [headerAllowHeaders]: ALLOWED,
  [headerMaxAge]: MAX_AGE_SECONDS,
};

/** What the router needs from CORS: the preflight answer and a wrapper for every other answer. */
export interface Cors {
  /** Answers an OPTIONS request (a preflight or a plain OPTIONS) with 204. */
  preflight(req: Request): Response;
  /** `route`, with the CORS headers added to its answers; `route` itself when CORS is off. */
  wrap(route: (req: Request) => Response | Promise<Response>): (req: Request) => Response | Promise<Response>;
}

/**
 * The CORS policy for `origins` (CORS_ORIGINS): empty = none, a list = those origins (compared
 * exactly with what the browser sends, scheme, host and port; case-insensitively), containing
 * "*" = any.
 */
export function createCors(origins: readonly string[]): Cors {
  if (origins.length === 0) return NO_CORS;
  if (origins.includes("*")) return new AnyOrigin();
  return new ListedOrigins(origins);
}

/** CORS off: OPTIONS says which methods exist, and nothing a browser would take as permission. */
const NO_CORS: Cors = {
  preflight: () => new Response(null, { status: 204, headers: PLAIN_OPTIONS }),
  wrap: (route) => route,
};

/** Adds the headers of an allowed origin to an answer (headers of a constructed Response are mutable). */
function decorate(res: Response, origin: string, vary: boolean): Response {
  const h = res.headers;
  h.set(headerAllowOrigin, origin);
  h.set(headerExposeHeaders, EXPOSED);
  if (vary) h.append(headerVary, "Origin");
  return res;
}

/** `*`: every origin, no `vary` needed since the answer is the same for all. */
class AnyOrigin implements Cors {
  preflight(req: Request): Response {
    const headers = req.headers.has(headerOrigin) ? PREFLIGHT : PLAIN_OPTIONS;
    return new Response(null, { status: 204, headers });
  }

  wrap(route: (req: Request) => Response | Promise<Response>) {
    return (req: Request): Response | Promise<Response> => {
      const res = route(req);
      if (!req.headers.has(headerOrigin)) return res;
      return res instanceof Promise ? res.then((r) => decorate(r, "*", false)) : decorate(res, "*", false);
    };
  }
}

/** A list of origins: the allowed one is named back, and every answer varies by origin. */
class ListedOrigins implements Cors {
  /** Lower-cased: scheme and host are case-insensitive, and browsers send them lower-case. */
  private readonly allowed: ReadonlySet<string>;

  constructor(origins: readonly string[]) {
    this.allowed = new Set(origins.map((o) => o.toLowerCase()));
  }

  private isAllowed(origin: string | null): origin is string {
    return origin !== null && this.allowed.has(origin.toLowerCase());
  }

  preflight(req: Request): Response {
    const headers = this.isAllowed(req.headers.get(headerOrigin)) ? PREFLIGHT : PLAIN_OPTIONS;
    return new Response(null, { status: 204, headers });
  }

  wrap(route: (req: Request) => Response | Promise<Response>) {
    return (req: Request): Response | Promise<Response> => {
      const res = route(req);
      const origin = req.headers.get(headerOrigin);
      // A disallowed origin or none: only vary, so that a cache keeps answers per origin.
      const allowed = this.isAllowed(origin) ? origin : null;
      return res instanceof Promise ? res.then((r) => this.finish(r, allowed)) : this.finish(res, allowed);
    };
  }

  private finish(res: Response, origin: string | null): Response {
    if (origin !== null) return decorate(res, origin, true);
    res.headers.append(headerVary, "Origin");
    return res;
  }
}
