/**
 * Connect request headers (https://connectrpc.com/docs/protocol#unary-request), named once as
 * in connect-es (packages/connect/src/protocol-connect/headers.ts). Lower case, as fetch's
 * `Headers` stores them. A GET carries the same information in query parameters instead
 * (query-params.ts).
 */

/** The protocol version a client speaks; when present it must be `protocolVersion`. */
export const headerProtocolVersion = "connect-protocol-version";
/** The call's timeout: up to 10 digits of milliseconds. */
export const headerTimeout = "connect-timeout-ms";
/** The compression of a unary message. */
export const headerUnaryEncoding = "content-encoding";
/** The compression of streamed messages; read on unary calls too, for clients that send it. */
export const headerStreamEncoding = "connect-content-encoding";
/** The one value of `connect-protocol-version`. */
export const protocolVersion = "1";
