/**
 * Reading a request body within a size limit and a deadline, for both protocols.
 *
 * Bun.serve's own body limit is off (server.ts): it would answer 413 with no protocol body
 * before a handler runs. Here a Content-Length over the limit is refused before anything is
 * buffered, and a body without one is read only until it passes the limit; either refusal is
 * RESOURCE_EXHAUSTED (`BodyTooLarge`), answered with `connection: close` (`CLOSE`).
 */
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { type HotMetrics, Reject } from "../../metrics/hot.ts";
import { headerConnection, headerContentLength } from "./headers.ts";

/** RESOURCE_EXHAUSTED for a body over the limit (answered with CLOSE). */
export class BodyTooLarge extends FeatureStoreError {}

/**
 * On answers to a body that was refused unread: the rest of it is still on the wire, so the
 * connection closes rather than make Bun read (and discard) up to Content-Length bytes.
 */
export const CLOSE = { [headerConnection]: "close" };

const EMPTY = new Uint8Array(0);

/** The extra headers of the error answer for `err`: `CLOSE` when the body was refused unread. */
export function closeAfter(err: FeatureStoreError): Record<string, string> | undefined {
  return err instanceof BodyTooLarge ? CLOSE : undefined;
}

/** Counts the refusal and returns the error for a message of `n` bytes over `limit`. */
export function tooLarge(metrics: HotMetrics, n: number, limit: number): BodyTooLarge {
  metrics.reject(Reject.HttpBodyTooLarge);
  return new BodyTooLarge(
    Code.ResourceExhausted,
    `request body of ${n} bytes exceeds the limit of ${limit} bytes (MAX_FRAME_BYTES)`,
  );
}

/** DEADLINE_EXCEEDED, for a request whose timeout ran out before it was handled. */
export function deadlineExceeded(): FeatureStoreError {
  return new FeatureStoreError(
    Code.DeadlineExceeded,
    "the request's deadline passed before it could be handled",
  );
}

/**
 * The deadline (a `Date.now()` time, ms) of a request with a timeout of `timeout` ms, or
 * undefined without one. A timeout of 0 has passed already: DEADLINE_EXCEEDED at once.
 */
export function deadlineAfter(timeout: number | undefined): number | undefined {
  const deadline = timeout === undefined ? undefined : Date.now() + timeout;
  if (timeout === 0) throw deadlineExceeded();
  return deadline;
}

/** Throws DEADLINE_EXCEEDED when `deadline` has passed (checked once the body is read). */
export function checkDeadline(deadline: number | undefined): void {
  if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
}

/**
 * Reads a request body of at most `limit` bytes. A Content-Length over the limit is refused
 * before anything is buffered; without one the stream is read until it passes the limit.
 */
export async function readBody(
  req: Request,
  limit: number,
  deadline: number | undefined,
  metrics: HotMetrics,
): Promise<Uint8Array> {
  const declared = req.headers.get(headerContentLength);
  if (declared !== null && Number(declared) > limit) throw tooLarge(metrics, Number(declared), limit);
  // With a Content-Length, `req.bytes()` alone: touching `req.body` first makes Bun create a
  // ReadableStream per request (~1.5 us of server CPU on a bare Bun.serve, issue 15's profile).
  let reading: Promise<Uint8Array>;
  if (declared !== null) reading = req.bytes();
  else if (req.body === null) return EMPTY;
  else reading = readCapped(req.body, limit, metrics);
  const body = deadline === undefined ? await reading : await beforeDeadline(reading, deadline);
  if (body.length > limit) throw tooLarge(metrics, body.length, limit);
  return body;
}

/** Resolves with the body, or rejects DEADLINE_EXCEEDED when the deadline passes first. */
export function beforeDeadline(reading: Promise<Uint8Array>, deadline: number): Promise<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(deadlineExceeded()), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([reading, expired]).finally(() => clearTimeout(timer));
}

/**
 * Reads a body stream of unknown length, giving up (cancelling the stream and throwing
 * `BodyTooLarge`) as soon as it passes `limit`: nothing past the limit is kept.
 */
export async function readCapped(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  metrics: HotMetrics,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge(metrics, total, limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return body;
}
