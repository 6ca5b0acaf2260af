/**
 * gRPC-web headers (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), named
 * once as in connect-es (packages/connect/src/protocol-grpc-web/headers.ts). Lower case, as
 * fetch's `Headers` stores them and as the trailers frame writes them.
 */

/** The compression of request messages; only `identity` is accepted. */
export const headerGrpcEncoding = "grpc-encoding";
/** The call's timeout: up to 8 digits and a unit (H, M, S, m, u, n). */
export const headerGrpcTimeout = "grpc-timeout";
/** The status code of a call, in the trailers (and in the headers of a trailers-only answer). */
export const headerGrpcStatus = "grpc-status";
/** The status message, percent-encoded, next to `grpc-status`. */
export const headerGrpcMessage = "grpc-message";
