/**
 * What gRPC (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) and gRPC-web share:
 * the length prefix of every message, the `grpc-*` headers, the timeout and status-message
 * formats. Used by src/transport/http/grpcweb and src/transport/grpc.
 *
 * ```
 * 0  u8   flags    0x01 = compressed with grpc-encoding (gRPC-web: 0x80 = trailers)
 * 1  u32  length   big-endian, bytes that follow
 * 5  ...  message
 * ```
 */
import { Code, FeatureStoreError } from "../codec/status.ts";

/** The length prefix of every message: one flags byte and a u32 big-endian length. */
export const PREFIX_BYTES = 5;
/** Flags bit: the payload is compressed with grpc-encoding. */
export const FLAG_COMPRESSED = 0x01;

/** The compression of request messages. */
export const headerGrpcEncoding = "grpc-encoding";
/** The call's timeout: up to 8 digits and a unit (H, M, S, m, u, n). */
export const headerGrpcTimeout = "grpc-timeout";
/** The status code of a call, in the trailers (and in the headers of a trailers-only answer). */
export const headerGrpcStatus = "grpc-status";
/** The status message, percent-encoded, next to `grpc-status`. */
export const headerGrpcMessage = "grpc-message";
/** The compressions a peer accepts, offered in answers. */
export const headerGrpcAcceptEncoding = "grpc-accept-encoding";

/**
 * `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n). Returns milliseconds, or
 * undefined when absent; a malformed value is INVALID_ARGUMENT (as `parseConnectTimeout`).
 */
export function parseGrpcTimeout(value: string | null): number | undefined {
  if (value === null) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null)
    throw new FeatureStoreError(Code.InvalidArgument, `invalid ${headerGrpcTimeout} value: "${value}"`);
  const n = Number(m[1]);
  switch (m[2]) {
    case "H":
      return n * 3_600_000;
    case "M":
      return n * 60_000;
    case "S":
      return n * 1000;
    case "m":
      return n;
    case "u":
      return n / 1000;
    default:
      return n / 1_000_000;
  }
}

const encoder = new TextEncoder();

/**
 * grpc-message is percent-encoded: bytes outside printable ASCII, and '%', become %XX of
 * their UTF-8 encoding.
 */
export function percentEncode(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length && plain; i++) {
    const c = message.charCodeAt(i);
    plain = c >= 0x20 && c <= 0x7e && c !== 0x25;
  }
  if (plain) return message;
  let out = "";
  for (const b of encoder.encode(message))
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/** Writes `v` (0 <= v < 2^32) as 4 big-endian bytes at `at`. */
export function writeU32BE(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

/** Reads 4 big-endian bytes at `at` as an unsigned number. */
export function readU32BE(buf: Uint8Array, at: number): number {
  return buf[at]! * 0x1000000 + ((buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!);
}
