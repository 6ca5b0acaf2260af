/**
 * HTTP header names and values that the router and both protocols use, named once (as
 * connect-es does in protocol-connect/headers.ts). Each protocol's own headers are in its
 * folder (connect/headers.ts, grpcweb/headers.ts); the CORS ones in cors.ts. Lower case, as
 * fetch's `Headers` stores them.
 */

/** The media type of a request or response body; it also picks the protocol of a POST. */
export const headerContentType = "content-type";
/** The declared body length, checked against the limit before any byte is buffered. */
export const headerContentLength = "content-length";
/** `close` on answers to a body refused unread (see `CLOSE` in body.ts). */
export const headerConnection = "connection";
/** `no-store` on probe and metrics answers. */
export const headerCacheControl = "cache-control";
/** The HTTP methods a path accepts, on 405 answers. */
export const headerAllow = "allow";
/** The content types a POST accepts, on 415 answers (RFC 9110 section 15.5.16). */
export const headerAcceptPost = "accept-post";
/** The only message encoding this server accepts (no compression), in every encoding header. */
export const encodingIdentity = "identity";
/** `Bearer <token>` on every RPC when authentication is on (and on /metrics with METRICS_AUTH). */
export const headerAuthorization = "authorization";
/** `Bearer` on a 401 answer (RFC 6750 section 3), telling curl users what to send. */
export const headerWwwAuthenticate = "www-authenticate";
