/**
 * CORS, so that a page on another origin can call the service with connect-web or grpc-web.
 * Any origin is allowed and no credentials are: the service has no cookies or sessions to
 * protect, and "*" keeps responses cacheable across origins (Connect GET).
 */

/** Request headers Connect and gRPC-web clients send. */
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

/** On every response. */
export const CORS_HEADERS = {
  "access-control-allow-origin": "*",
  "access-control-expose-headers": EXPOSED_HEADERS.join(", "),
};

const PREFLIGHT_HEADERS = {
  ...CORS_HEADERS,
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": ALLOWED_HEADERS.join(", "),
  // How long a browser may cache the preflight answer, in seconds (2 h, Chromium's cap).
  "access-control-max-age": "7200",
};

/**
 * Answers an OPTIONS request (a CORS preflight or a plain OPTIONS): 204 with what is allowed.
 * Headers the browser asks for beyond the list (a custom tracing header, say) are allowed too.
 */
export function preflight(req: Request): Response {
  const asked = req.headers.get("access-control-request-headers");
  const headers = asked
    ? {
        ...PREFLIGHT_HEADERS,
        "access-control-allow-headers": `${PREFLIGHT_HEADERS["access-control-allow-headers"]}, ${asked}`,
      }
    : PREFLIGHT_HEADERS;
  return new Response(null, { status: 204, headers: { ...headers, allow: "GET, POST, OPTIONS" } });
}
