/**
 * The 12-byte frame header of the binary TCP protocol (proto/PROTOCOL.md), little-endian:
 *
 * ```
 * 0  u32 length      body bytes after the header
 * 4  u32 request_id  echoed in the answer
 * 8  u8  method      Method
 * 9  u8  status      0 in requests; gRPC code in answers
 * 10 u16 flags       0 (reserved)
 * ```
 */
export const HEADER_BYTES = 12;

/** Method numbers on the wire. */
export const Method = {
  Ping: 0,
  GetFeatures: 1,
  BatchGet: 2,
  SetFeatures: 3,
  BatchSet: 4,
  DeleteFeatures: 5,
  /**
   * TCP only, the first frame of a connection when the server requires tokens: the body is the
   * token's UTF-8 bytes (proto/PROTOCOL.md). Not a service method (no METHOD_NAMES entry).
   */
  Authenticate: 6,
  UpdateFeatures: 7,
  PublishVersion: 8,
  RollbackVersion: 9,
  DropVersion: 10,
  GetFeatureSet: 11,
} as const;
export type Method = (typeof Method)[keyof typeof Method];

/** True for the methods that change the store, whose answers wait for durability. */
export function isWriteMethod(method: number): boolean {
  return (
    method === Method.SetFeatures ||
    method === Method.BatchSet ||
    method === Method.DeleteFeatures ||
    (method >= Method.UpdateFeatures && method <= Method.DropVersion)
  );
}

/** Method names as in the proto service, indexed by method number. */
export const METHOD_NAMES = [
  "Ping",
  "GetFeatures",
  "BatchGet",
  "SetFeatures",
  "BatchSet",
  "DeleteFeatures",
  // 6 is the TCP-only Authenticate frame, not a service method: the service routes skip it.
  "Authenticate",
  "UpdateFeatures",
  "PublishVersion",
  "RollbackVersion",
  "DropVersion",
  "GetFeatureSet",
] as const;
export type MethodName = (typeof METHOD_NAMES)[number];
/** Number of method slots (for per-method counters). */
export const METHOD_COUNT = METHOD_NAMES.length;

/** Writes a header at `at`. The buffer must have 12 bytes there. */
export function writeHeader(
  buf: Uint8Array,
  at: number,
  length: number,
  requestId: number,
  method: number,
  status: number,
): void {
  buf[at] = length;
  buf[at + 1] = length >>> 8;
  buf[at + 2] = length >>> 16;
  buf[at + 3] = length >>> 24;
  buf[at + 4] = requestId;
  buf[at + 5] = requestId >>> 8;
  buf[at + 6] = requestId >>> 16;
  buf[at + 7] = requestId >>> 24;
  buf[at + 8] = method;
  buf[at + 9] = status;
  buf[at + 10] = 0;
  buf[at + 11] = 0;
}

/** Reads the u32 little-endian at `at`. */
export function readU32(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16)) + buf[at + 3]! * 0x1000000;
}
