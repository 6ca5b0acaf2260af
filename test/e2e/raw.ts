/** A raw TCP peer for protocol tests: sends arbitrary bytes and reads answer frames. */
import type { Socket } from "bun";
import { HEADER_BYTES, readU32, writeHeader } from "../../src/codec/frame.ts";

export interface Frame {
  requestId: number;
  method: number;
  status: number;
  body: Uint8Array;
}

export function frame(
  requestId: number,
  method: number,
  body: Uint8Array | number[] = [],
  status = 0,
): Uint8Array {
  const b = body instanceof Uint8Array ? body : new Uint8Array(body);
  const f = new Uint8Array(HEADER_BYTES + b.length);
  writeHeader(f, 0, b.length, requestId, method, status);
  f.set(b, HEADER_BYTES);
  return f;
}

export class RawPeer {
  private buf = new Uint8Array(0);
  private waiters: (() => void)[] = [];
  private socket!: Socket<undefined>;
  closed = false;
  readonly whenClosed: Promise<void>;
  private resolveClosed!: () => void;

  private constructor() {
    this.whenClosed = new Promise((r) => {
      this.resolveClosed = r;
    });
  }

  static async connect(port: number): Promise<RawPeer> {
    const peer = new RawPeer();
    peer.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => {
          const next = new Uint8Array(peer.buf.length + data.length);
          next.set(peer.buf);
          next.set(data, peer.buf.length);
          peer.buf = next;
          peer.wake();
        },
        close: () => {
          peer.closed = true;
          peer.resolveClosed();
          peer.wake();
        },
        error: () => {},
      },
    });
    return peer;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Writes everything, waiting for the socket to take it. */
  async send(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      if (this.closed) throw new Error("closed while sending");
      const n = this.socket.write(bytes.subarray(off));
      if (n > 0) off += n;
      else await Bun.sleep(1);
    }
  }

  /** Next answer frame, or null if the server closed the connection first. */
  async next(): Promise<Frame | null> {
    for (;;) {
      if (this.buf.length >= HEADER_BYTES) {
        const len = readU32(this.buf, 0);
        if (this.buf.length >= HEADER_BYTES + len) {
          const f: Frame = {
            requestId: readU32(this.buf, 4),
            method: this.buf[8]!,
            status: this.buf[9]!,
            body: this.buf.slice(HEADER_BYTES, HEADER_BYTES + len),
          };
          this.buf = this.buf.slice(HEADER_BYTES + len);
          return f;
        }
      }
      if (this.closed) return null;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  end(): void {
    this.socket.end();
  }
}

export const text = (b: Uint8Array) => new TextDecoder().decode(b);
