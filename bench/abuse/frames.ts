/**
 * Raw frames of the binary TCP protocol (proto/PROTOCOL.md) for the canary and the abusers: a
 * connection that writes with backpressure and reports each answer's header, without the
 * project client's pooling, deadlines or reconnection, so that an abuser can send what a
 * well-behaved client never would and the canary sees exactly what the server does.
 */
import type { Socket } from "bun";
import { HEADER_BYTES, readU32, writeHeader } from "../../src/codec/frame.ts";
import { CODE_NAMES } from "../../src/codec/status.ts";
import type { ProtoWriter } from "../../src/codec/wire.ts";

/** One answer frame: its header, and the start of an error frame's message. */
export interface Answer {
  requestId: number;
  method: number;
  status: number;
  /** Body bytes of the frame. */
  length: number;
  /** UTF-8 message of an error frame (status != 0), at most MESSAGE_KEEP bytes of it. */
  message: string;
}

/** Bytes of an error message kept: enough to name the limit, bounded if a server sends megabytes. */
const MESSAGE_KEEP = 512;

/** The gRPC code's Connect name in upper case (RESOURCE_EXHAUSTED), or the number. */
export function codeName(status: number): string {
  return CODE_NAMES[status]?.toUpperCase() ?? `code ${status}`;
}

/** A frame: the 12-byte header then `body`. */
export function frame(method: number, requestId: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const f = new Uint8Array(HEADER_BYTES + body.length);
  writeHeader(f, 0, body.length, requestId, method, 0);
  f.set(body, HEADER_BYTES);
  return f;
}

/** A frame whose body is what `encode` writes into `w` (reset first). */
export function encodedFrame(
  w: ProtoWriter,
  method: number,
  requestId: number,
  encode: (w: ProtoWriter) => void,
): Uint8Array {
  w.reset();
  encode(w);
  return frame(method, requestId, w.view());
}

/**
 * A TCP connection speaking raw frames. Writes the kernel does not take are queued and resent
 * on `drain`; answers are parsed from the byte stream (headers may straddle chunks) and handed
 * to `onAnswer`; bodies are skipped, except the first bytes of error messages.
 */
export class FrameConn {
  /** Frames answered. */
  answers = 0;
  /** Bytes received. */
  bytesIn = 0;
  /** Why the connection ended: "closed by server", "error: ..." or "closed by us"; null while open. */
  endReason: string | null = null;
  /** Resolves when the connection ends, with `endReason`. */
  readonly ended: Promise<string>;
  /** Called for every answer frame. */
  onAnswer: (a: Answer) => void = () => {};

  private socket: Socket<undefined> | null = null;
  private queue: Uint8Array[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private resolveEnded!: (reason: string) => void;
  private closing = false;
  // Parser state: a header being filled, then a body being skipped.
  private readonly header = new Uint8Array(HEADER_BYTES);
  private headerFill = 0;
  private bodyLeft = 0;
  private current: Answer | null = null;
  private messageBytes: Uint8Array | null = null;
  private messageFill = 0;
  /** Answers awaited by `request`, in order (the server answers in request order per connection). */
  private waiting: ((a: Answer | null) => void)[] = [];

  private constructor() {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  /** Connects to 127.0.0.1:`port`; rejects if the connection is refused. */
  static async open(port: number): Promise<FrameConn> {
    const c = new FrameConn();
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => c.onData(chunk),
        drain: () => c.flush(),
        close: () => c.end(c.closing ? "closed by us" : "closed by server"),
        error: (_s, err) => c.end(`error: ${err.message}`),
        end: () => c.end(c.closing ? "closed by us" : "closed by server"),
      },
    });
    return c;
  }

  /** Bytes given to `send` that the kernel has not taken yet. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Sends `bytes` (kept by reference until written: do not reuse the buffer before then). */
  send(bytes: Uint8Array): void {
    if (this.endReason !== null || this.socket === null) return;
    if (this.queueHead < this.queue.length) {
      this.queue.push(bytes);
      this.queuedBytes += bytes.length;
      return;
    }
    const n = this.socket.write(bytes);
    if (n < 0) {
      this.end("closed by server");
      return;
    }
    if (n < bytes.length) {
      this.queue.push(bytes.subarray(n));
      this.queuedBytes += bytes.length - n;
    }
  }

  /** Resolves once everything sent has been taken by the kernel (or the connection ended). */
  drained(): Promise<void> {
    if (this.queuedBytes === 0 || this.endReason !== null) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Sends one frame and resolves with its answer, or null if the connection ends first. */
  request(bytes: Uint8Array): Promise<Answer | null> {
    if (this.endReason !== null) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.send(bytes);
    });
  }

  /** Closes our side (FIN). */
  close(): void {
    this.closing = true;
    this.socket?.end();
  }

  /** Closes at once (RST); nothing queued is sent. */
  destroy(): void {
    this.closing = true;
    this.socket?.terminate();
    this.end("closed by us");
  }

  private flush(): void {
    const s = this.socket;
    if (s === null) return;
    while (this.queueHead < this.queue.length) {
      const b = this.queue[this.queueHead]!;
      const n = s.write(b);
      if (n < 0) {
        this.end("closed by server");
        return;
      }
      this.queuedBytes -= Math.max(0, n);
      if (n < b.length) {
        this.queue[this.queueHead] = b.subarray(n);
        return;
      }
      this.queueHead++;
    }
    this.queue = [];
    this.queueHead = 0;
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private end(reason: string): void {
    if (this.endReason !== null) return;
    this.endReason = reason;
    for (const w of this.drainWaiters.splice(0)) w();
    for (const w of this.waiting.splice(0)) w(null);
    this.resolveEnded(reason);
  }

  private onData(chunk: Uint8Array): void {
    this.bytesIn += chunk.length;
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        if (this.messageBytes !== null && this.messageFill < this.messageBytes.length) {
          const keep = Math.min(n, this.messageBytes.length - this.messageFill);
          this.messageBytes.set(chunk.subarray(i, i + keep), this.messageFill);
          this.messageFill += keep;
        }
        i += n;
        this.bodyLeft -= n;
        if (this.bodyLeft === 0) this.finishAnswer();
        continue;
      }
      const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - i);
      this.header.set(chunk.subarray(i, i + n), this.headerFill);
      this.headerFill += n;
      i += n;
      if (this.headerFill < HEADER_BYTES) break;
      this.headerFill = 0;
      const h = this.header;
      this.current = {
        length: readU32(h, 0),
        requestId: readU32(h, 4),
        method: h[8]!,
        status: h[9]!,
        message: "",
      };
      this.bodyLeft = this.current.length;
      this.messageBytes =
        this.current.status !== 0 ? new Uint8Array(Math.min(MESSAGE_KEEP, this.bodyLeft)) : null;
      this.messageFill = 0;
      if (this.bodyLeft === 0) this.finishAnswer();
    }
  }

  private finishAnswer(): void {
    const a = this.current!;
    if (this.messageBytes !== null)
      a.message = new TextDecoder().decode(this.messageBytes.subarray(0, this.messageFill));
    this.current = null;
    this.messageBytes = null;
    this.answers++;
    this.waiting.shift()?.(a);
    this.onAnswer(a);
  }
}
