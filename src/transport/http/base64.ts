/** Lenient base64 decoding for what HTTP clients send. */
import { invalidArgument } from "../../codec/status.ts";

const ALPHABET = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * Decodes standard or URL-safe base64, padded or not (proto3 JSON bytes, the Connect GET
 * `message` parameter). Anything else is INVALID_ARGUMENT naming `what`.
 */
export function decodeBase64(s: string, what: string): Uint8Array {
  const bare = s.replace(/=+$/, "");
  if (!ALPHABET.test(s) || bare.length % 4 === 1) throw invalidArgument(`${what} is not valid base64`);
  try {
    return Uint8Array.fromBase64(bare.replaceAll("-", "+").replaceAll("_", "/"), {
      lastChunkHandling: "loose",
    });
  } catch {
    throw invalidArgument(`${what} is not valid base64`);
  }
}

/**
 * Decodes a gRPC-web-text body: base64 that a client may send as several padded chunks
 * concatenated (one per write), with whitespace allowed between them.
 */
export function decodeBase64Chunks(body: Uint8Array, what: string): Uint8Array {
  const text = new TextDecoder("latin1").decode(body).replace(/\s+/g, "");
  const chunks = text.split(/(?<==)(?=[^=])/);
  if (chunks.length === 1) return decodeBase64(text, what);
  const parts = chunks.map((c) => decodeBase64(c, what));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
