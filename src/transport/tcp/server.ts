/**
 * The binary TCP transport (proto/PROTOCOL.md) on Bun.listen: a thin shell around
 * FeatureService.handle.
 *
 * Data path: a `data` event's bytes are parsed in place (a partial frame is kept per
 * connection, bounded by MAX_FRAME_BYTES); every complete frame is answered synchronously into
 * one server-wide output writer; the answers of one event go out in one `socket.write`. What
 * the kernel does not take is copied into that connection's pending buffer and resent on
 * `drain`. Bun cannot pause reading, so a connection whose pending answers pass
 * MAX_PENDING_OUTPUT_BYTES is cut, with a logged reason (Redis' client output buffer limit).
 */
import type { Socket, TCPSocketListener } from "bun";
import { HEADER_BYTES, METHOD_NAMES, readU32, writeHeader } from "../../codec/frame.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { ProtoWriter } from "../../codec/wire.ts";
import type { Logger } from "../../log/index.ts";
import { type HotMetrics, Reject, Transport } from "../../metrics/hot.ts";
import type { FeatureService } from "../../service/service.ts";

export interface TcpServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  service: FeatureService;
  metrics: HotMetrics;
  logger: Logger;
  /** Largest request body in bytes; a longer frame is refused and its connection closed. */
  maxFrameBytes: number;
  /** Unread answers a client may accumulate before it is disconnected, bytes. */
  maxPendingOutputBytes: number;
  /** Most open connections; more are closed on arrival. */
  maxConnections: number;
  /** A connection that sends nothing for this long is closed, ms; 0 = never (TCP_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
  /** A frame must arrive whole within this long of its first byte, ms (TCP_FRAME_TIMEOUT_MS). */
  frameTimeoutMs?: number;
  /** Bound on unfinished input plus unsent answers over all connections, bytes (MAX_CLIENT_MEMORY_BYTES). */
  maxClientMemoryBytes?: number;
  /** Log every request at debug level. */
  logRequests?: boolean;
}

export interface TcpServer {
  readonly port: number;
  /** Open connections now. */
  readonly connectionCount: number;
  /**
   * Graceful stop: no new connections; every complete request already received is answered
   * and flushed, then each connection is closed. Connections still open after `timeoutMs`
   * are cut. Resolves when all are closed.
   */
  drain(timeoutMs: number): Promise<void>;
}

/** Per-connection state, in `socket.data`. */
class Connection {
  /** Bytes of an incomplete frame (header included), kept between data events. */
  input: Uint8Array | null = null;
  inputLen = 0;
  /** Answers the kernel has not taken yet: pending[pendingStart, pendingEnd). */
  pending: Uint8Array | null = null;
  pendingStart = 0;
  pendingEnd = 0;
  /** Set when no more answers will be written (protocol error, overflow, shutdown). */
  closing = false;
  constructor(readonly remote: string) {}

  get pendingBytes(): number {
    return this.pendingEnd - this.pendingStart;
  }
}

type Sock = Socket<Connection>;

const INITIAL_INPUT = 16 * 1024;

export function startTcpServer(opts: TcpServerOptions): TcpServer {
  const { service, metrics, logger, maxFrameBytes, maxPendingOutputBytes, maxConnections } = opts;
  const out = new ProtoWriter(256 * 1024);
  const open = new Set<Sock>();
  const timed = metrics.enabled || opts.logRequests === true;
  const logRequests = opts.logRequests === true && logger.debugEnabled;
  let draining = false;
  let onAllClosed: (() => void) | null = null;

  /** Answers one frame whose body is buf[start,end) into `out`. */
  function answer(buf: Uint8Array, at: number, bodyStart: number, bodyEnd: number): void {
    const requestId = readU32(buf, at + 4);
    const method = buf[at + 8]!;
    const t0 = timed ? performance.now() : 0;
    const headerAt = out.pos;
    out.ensure(HEADER_BYTES);
    out.pos += HEADER_BYTES;
    let code: number = Code.OK;
    try {
      service.handle(method, buf, bodyStart, bodyEnd, out);
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      out.pos = headerAt + HEADER_BYTES;
      out.utf8(e.message);
      if (code === Code.Internal) logger.error("request failed", { method, err: e });
    }
    writeHeader(out.bytes, headerAt, out.pos - headerAt - HEADER_BYTES, requestId, method, code);
    if (timed) {
      const seconds = (performance.now() - t0) / 1000;
      metrics.request(Transport.Tcp, method, code, seconds);
      if (logRequests)
        logger.debug("request", {
          method: METHOD_NAMES[method] ?? method,
          requestId,
          code,
          us: seconds * 1e6,
        });
    }
  }

  /**
   * Appends an error frame answering the request whose header is at buf[at] (its id and method
   * echoed, so the client fails that call with the code) and marks the connection for closing.
   */
  function refuse(
    conn: Connection,
    buf: Uint8Array,
    at: number,
    code: number,
    message: string,
    reason: number,
  ): void {
    const headerAt = out.pos;
    out.ensure(HEADER_BYTES);
    out.pos += HEADER_BYTES;
    out.utf8(message);
    writeHeader(
      out.bytes,
      headerAt,
      out.pos - headerAt - HEADER_BYTES,
      readU32(buf, at + 4),
      buf[at + 8]!,
      code,
    );
    metrics.reject(reason);
    conn.closing = true;
    logger.warn("closing connection", { remote: conn.remote, reason: message });
  }

  function onData(socket: Sock, data: Uint8Array): void {
    const conn = socket.data;
    if (conn.closing) return;
    let buf = data;
    let end = data.length;
    if (conn.inputLen > 0) {
      appendInput(conn, data);
      buf = conn.input!;
      end = conn.inputLen;
    }
    out.reset();
    let at = 0;
    while (end - at >= HEADER_BYTES) {
      const length = readU32(buf, at);
      if (length > maxFrameBytes) {
        refuse(
          conn,
          buf,
          at,
          Code.ResourceExhausted,
          `frame body of ${length} bytes exceeds MAX_FRAME_BYTES (${maxFrameBytes})`,
          Reject.FrameTooLarge,
        );
        break;
      }
      if (buf[at + 9] !== 0 || buf[at + 10] !== 0 || buf[at + 11] !== 0) {
        refuse(
          conn,
          buf,
          at,
          Code.InvalidArgument,
          "malformed frame header: status and flags must be 0 in a request",
          Reject.BadHeader,
        );
        break;
      }
      const bodyStart = at + HEADER_BYTES;
      if (end - bodyStart < length) break;
      answer(buf, at, bodyStart, bodyStart + length);
      at = bodyStart + length;
    }
    if (conn.closing) {
      conn.input = null;
      conn.inputLen = 0;
    } else {
      keepRest(conn, buf, at, end);
    }
    if (out.pos > 0) send(socket, conn, out.bytes, 0, out.pos);
    if (conn.closing && conn.pendingBytes === 0) socket.end();
    else if (draining) endIfIdle(socket);
  }

  /** Keeps buf[at,end), an incomplete frame, for the next data event. */
  function keepRest(conn: Connection, buf: Uint8Array, at: number, end: number): void {
    const rest = end - at;
    if (rest === 0) {
      conn.inputLen = 0;
      // A buffer grown for one big frame is not kept for the life of the connection.
      if (conn.input !== null && conn.input.length > INITIAL_INPUT * 4) conn.input = null;
      return;
    }
    if (buf === conn.input) {
      if (at > 0) buf.copyWithin(0, at, end);
    } else {
      if (conn.input === null || conn.input.length < rest)
        conn.input = new Uint8Array(Math.max(INITIAL_INPUT, rest * 2));
      conn.input.set(buf.subarray(at, end));
    }
    conn.inputLen = rest;
  }

  function appendInput(conn: Connection, data: Uint8Array): void {
    const need = conn.inputLen + data.length;
    let input = conn.input!;
    if (input.length < need) {
      // The header check bounds a partial frame to HEADER + MAX_FRAME_BYTES; one data event adds at most its own size.
      const grown = new Uint8Array(Math.max(need, input.length * 2));
      grown.set(input.subarray(0, conn.inputLen));
      input = grown;
      conn.input = grown;
    }
    input.set(data, conn.inputLen);
    conn.inputLen = need;
  }

  /** Writes bytes[start,end) to the socket, keeping what the kernel does not take. */
  function send(socket: Sock, conn: Connection, bytes: Uint8Array, start: number, end: number): void {
    let written = 0;
    if (conn.pendingBytes === 0) {
      written = socket.write(bytes.subarray(start, end));
      if (written < 0) return; // closed: the close handler cleans up
      if (written === end - start) return;
    }
    const rest = end - start - written;
    if (conn.pendingBytes + rest > maxPendingOutputBytes) {
      metrics.reject(Reject.OutputOverflow);
      logger.warn("disconnecting client that does not read its answers", {
        remote: conn.remote,
        pendingBytes: conn.pendingBytes + rest,
        limit: maxPendingOutputBytes,
      });
      conn.closing = true;
      conn.pending = null;
      conn.pendingStart = conn.pendingEnd = 0;
      socket.terminate();
      return;
    }
    appendPending(conn, bytes, start + written, end);
  }

  function appendPending(conn: Connection, bytes: Uint8Array, start: number, end: number): void {
    const n = end - start;
    let p = conn.pending;
    if (p === null) {
      p = new Uint8Array(Math.max(64 * 1024, n * 2));
      conn.pending = p;
    } else if (conn.pendingEnd + n > p.length) {
      const live = conn.pendingBytes;
      if (live + n <= p.length / 2) {
        p.copyWithin(0, conn.pendingStart, conn.pendingEnd);
      } else {
        const grown = new Uint8Array(Math.max(p.length * 2, (live + n) * 2));
        grown.set(p.subarray(conn.pendingStart, conn.pendingEnd));
        p = grown;
        conn.pending = grown;
      }
      conn.pendingStart = 0;
      conn.pendingEnd = live;
    }
    p.set(bytes.subarray(start, end), conn.pendingEnd);
    conn.pendingEnd += n;
  }

  function onDrain(socket: Sock): void {
    const conn = socket.data;
    const p = conn.pending;
    if (p === null || conn.pendingBytes === 0) return;
    const written = socket.write(p.subarray(conn.pendingStart, conn.pendingEnd));
    if (written > 0) conn.pendingStart += written;
    if (conn.pendingBytes === 0) {
      conn.pendingStart = conn.pendingEnd = 0;
      if (p.length > 1024 * 1024) conn.pending = null; // give back a buffer grown for a burst
      if (conn.closing) socket.end();
      else if (draining) endIfIdle(socket);
    }
  }

  function endIfIdle(socket: Sock): void {
    const conn = socket.data;
    if (conn.pendingBytes === 0 && conn.inputLen === 0) {
      conn.closing = true;
      socket.end();
    }
  }

  const listener: TCPSocketListener<Connection> = Bun.listen<Connection>({
    hostname: opts.host,
    port: opts.port,
    socket: {
      open(socket) {
        socket.data = new Connection(`${socket.remoteAddress}`);
        if (draining || open.size >= maxConnections) {
          metrics.reject(draining ? Reject.ShuttingDown : Reject.BadRequest);
          logger.warn("refusing connection", {
            remote: socket.remoteAddress,
            reason: draining ? "shutting down" : `MAX_CONNECTIONS (${maxConnections}) reached`,
          });
          socket.data.closing = true;
          socket.terminate();
          return;
        }
        open.add(socket);
        metrics.connection(Transport.Tcp, 1);
        if (logger.debugEnabled) logger.debug("connection opened", { remote: socket.remoteAddress });
      },
      data: onData,
      drain: onDrain,
      close(socket) {
        if (!open.delete(socket)) return;
        metrics.connection(Transport.Tcp, -1);
        if (logger.debugEnabled) logger.debug("connection closed", { remote: socket.data.remote });
        if (draining && open.size === 0) onAllClosed?.();
      },
      error(socket, err) {
        logger.warn("socket error", { remote: socket.data?.remote, err });
      },
    },
  });

  return {
    get port() {
      return listener.port;
    },
    get connectionCount() {
      return open.size;
    },
    drain(timeoutMs: number): Promise<void> {
      if (!draining) {
        draining = true;
        listener.stop(false);
        for (const s of open) endIfIdle(s);
      }
      if (open.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          if (open.size > 0) logger.warn("shutdown timeout: cutting connections", { open: open.size });
          for (const s of open) s.terminate();
          resolve();
        }, timeoutMs);
        onAllClosed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
