/**
 * The transport floor: a trivial Bun.listen server that speaks our frame format and answers
 * every request frame with one fixed, pre-built answer of FLOOR_BODY_BYTES (the size of a
 * typical GetFeatures answer), echoing the request id and method. It does no other work, so no
 * TCP server in Bun can answer faster; the benchmark measures how close ours gets.
 *
 * Env: FLOOR_PORT (0 = free port), FLOOR_BODY_BYTES. Prints `{"port":N}` on stdout when listening.
 */
import type { Socket } from "bun";
import { HEADER_BYTES, readU32, writeHeader } from "../../src/codec/frame.ts";

const bodyBytes = Number(process.env.FLOOR_BODY_BYTES ?? 600);
const frame = HEADER_BYTES + bodyBytes;
const answer = new Uint8Array(frame);
for (let i = HEADER_BYTES; i < frame; i++) answer[i] = i & 0x7f;

interface Conn {
  /** Partial request frame kept between data events. */
  rest: Uint8Array;
  restLen: number;
  /** Answers the kernel has not taken yet. */
  pending: Uint8Array | null;
}

let out = new Uint8Array(256 * 1024);

function onData(socket: Socket<Conn>, data: Uint8Array): void {
  const c = socket.data;
  let buf = data;
  let end = data.length;
  if (c.restLen > 0) {
    const need = c.restLen + data.length;
    if (c.rest.length < need) {
      const g = new Uint8Array(need * 2);
      g.set(c.rest.subarray(0, c.restLen));
      c.rest = g;
    }
    c.rest.set(data, c.restLen);
    buf = c.rest;
    end = need;
  }
  let at = 0;
  let o = 0;
  while (end - at >= HEADER_BYTES) {
    const len = readU32(buf, at);
    if (end - at - HEADER_BYTES < len) break;
    if (o + frame > out.length) {
      const g = new Uint8Array(out.length * 2);
      g.set(out.subarray(0, o));
      out = g;
    }
    out.set(answer, o);
    writeHeader(out, o, bodyBytes, readU32(buf, at + 4), buf[at + 8]!, 0);
    o += frame;
    at += HEADER_BYTES + len;
  }
  const rest = end - at;
  if (rest > 0) {
    if (buf === c.rest) c.rest.copyWithin(0, at, end);
    else {
      if (c.rest.length < rest) c.rest = new Uint8Array(rest * 2);
      c.rest.set(buf.subarray(at, end));
    }
  }
  c.restLen = rest;
  if (o === 0) return;
  if (c.pending !== null) {
    c.pending = concat(c.pending, out.subarray(0, o));
    return;
  }
  const w = socket.write(out.subarray(0, o));
  if (w >= 0 && w < o) c.pending = out.slice(w, o);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const r = new Uint8Array(a.length + b.length);
  r.set(a);
  r.set(b, a.length);
  return r;
}

const listener = Bun.listen<Conn>({
  hostname: "127.0.0.1",
  port: Number(process.env.FLOOR_PORT ?? 0),
  socket: {
    open(socket) {
      socket.data = { rest: new Uint8Array(16 * 1024), restLen: 0, pending: null };
    },
    data: onData,
    drain(socket) {
      const c = socket.data;
      if (c.pending === null) return;
      const w = socket.write(c.pending);
      if (w >= c.pending.length) c.pending = null;
      else if (w > 0) c.pending = c.pending.slice(w);
    },
  },
});

process.stdout.write(`${JSON.stringify({ port: listener.port })}\n`);
process.on("SIGTERM", () => {
  listener.stop(true);
  process.exit(0);
});
