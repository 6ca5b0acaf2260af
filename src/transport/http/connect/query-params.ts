/**
 * The query parameters of a Connect GET (https://connectrpc.com/docs/protocol#unary-get-request),
 * named once as in connect-es (packages/connect/src/protocol-connect/query-params.ts):
 *
 * ```
 * GET /<service>/<Method>?connect=v1&encoding=proto&base64=1&compression=identity&message=…
 * ```
 */

/** The protocol version; when present it must be `queryVersion`. */
export const paramConnectVersion = "connect";
/** The message codec: `proto` or `json` (required). */
export const paramEncoding = "encoding";
/** The message compression; only `identity` is accepted. */
export const paramCompression = "compression";
/** `1` when `message` is base64 (standard or URL-safe, padded or not). */
export const paramBase64 = "base64";
/** The request message: base64 when `base64=1`, else the text of a JSON message. */
export const paramMessage = "message";
/** The one value of `connect` (the header's `protocolVersion` with a `v`). */
export const queryVersion = "v1";
