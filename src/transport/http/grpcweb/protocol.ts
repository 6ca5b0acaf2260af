/**
 * gRPC-web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md), unary only.
 *
 * Both directions carry length-prefixed messages; the response ends with a trailers frame:
 *
 * ```
 * 0  u8   flags    0x00 data, 0x80 trailers (0x01 = compressed: refused, we take identity only)
 * 1  u32  length   big-endian, bytes that follow
 * 5  ...  payload  a protobuf message, or for trailers "grpc-status: 0\r\ngrpc-message: ...\r\n"
 * ```
 *
 * The HTTP status is 200 even for errors: the status travels in the trailers. An error answer
 * is "trailers-only": grpc-status and grpc-message also as response headers, and a body of
 * just the trailers frame, so clients reading either place see it. `application/grpc-web-text`
 * is the same byte stream in base64, both ways.
 */
import {
  FLAG_COMPRESSED,
  headerGrpcMessage,
  headerGrpcStatus,
  PREFIX_BYTES,
  parseGrpcTimeout,
  percentEncode,
  readU32BE,
  writeU32BE,
} from "../../grpc-wire.ts";
import { headerContentType } from "../headers.ts";

// Shared with native gRPC (src/transport/grpc): the message prefix, timeouts, status messages.
export { FLAG_COMPRESSED, PREFIX_BYTES, parseGrpcTimeout, percentEncode, readU32BE, writeU32BE };

/** Flags bit: the payload is the trailers block, not a message. */
export const FLAG_TRAILERS = 0x80;

/** A gRPC-web content type: `application/grpc-web[-text][+proto|+json]`. */
const CONTENT_TYPE = /^application\/grpc-web(-text)?(?:\+(proto|json))?\s*(?:;.*)?$/i;

/** One of the four gRPC-web content types, with its answer headers. */
export interface GrpcWebVariant {
  /** Base64 body (grpc-web-text). */
  readonly text: boolean;
  /** JSON messages (+json) instead of binary protobuf. */
  readonly json: boolean;
  /** Response headers for this variant, built once. */
  readonly headers: Record<string, string>;
}

const variants: GrpcWebVariant[] = [];
for (const text of [false, true])
  for (const json of [false, true]) {
    const contentType = `application/grpc-web${text ? "-text" : ""}+${json ? "json" : "proto"}`;
    variants.push({ text, json, headers: { [headerContentType]: contentType } });
  }

/** The variant for a request content type, or undefined when it is not gRPC-web. */
export function grpcWebVariant(contentType: string): GrpcWebVariant | undefined {
  const m = CONTENT_TYPE.exec(contentType);
  if (m === null) return undefined;
  return variants[(m[1] ? 2 : 0) + (m[2]?.toLowerCase() === "json" ? 1 : 0)];
}

/** True when the content type is in the gRPC-web family (to answer refusals in its terms). */
export function looksLikeGrpcWeb(contentType: string | null): boolean {
  return contentType !== null && /^application\/grpc-web/i.test(contentType);
}

const encoder = new TextEncoder();

/** The trailers frame for a status: flag 0x80, length, then the HTTP/1-style header block. */
export function trailersFrame(code: number, message: string): Uint8Array {
  const block = encoder.encode(
    message
      ? `${headerGrpcStatus}: ${code}\r\n${headerGrpcMessage}: ${percentEncode(message)}\r\n`
      : `${headerGrpcStatus}: ${code}\r\n`,
  );
  const frame = new Uint8Array(PREFIX_BYTES + block.length);
  frame[0] = FLAG_TRAILERS;
  writeU32BE(frame, 1, block.length);
  frame.set(block, PREFIX_BYTES);
  return frame;
}

/** The trailers of every successful answer. */
export const OK_TRAILERS = trailersFrame(0, "");

/** A trailers-only error answer: HTTP 200, status in the headers and in a trailers frame. */
export function grpcWebErrorResponse(
  variant: GrpcWebVariant,
  code: number,
  message: string,
  httpStatus = 200,
  extraHeaders?: Record<string, string>,
): Response {
  const frame = trailersFrame(code, message);
  const headers: Record<string, string> = {
    ...variant.headers,
    ...extraHeaders,
    [headerGrpcStatus]: String(code),
  };
  if (message) headers[headerGrpcMessage] = percentEncode(message);
  return new Response(variant.text ? frame.toBase64() : frame, { status: httpStatus, headers });
}

/** The binary proto variant, for refusals of requests whose exact variant is unknown. */
export const DEFAULT_VARIANT: GrpcWebVariant = variants[0]!;
