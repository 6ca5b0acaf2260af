/**
 * The binary TCP transport (proto/PROTOCOL.md) on Bun.listen: a thin shell around
 * FeatureService.handle.
 *
 * Data path: a `data` event's bytes are parsed in place; every complete frame is answered
 * synchronously into one server-wide output writer; the answers of one event go out in one
 * `socket.write` (sooner when they pass OUT_FLUSH_BYTES). An incomplete frame is copied into its
 * connection's input buffer, sized by what has arrived and never past the frame's declared
 * length (bounded by MAX_FRAME_BYTES). What the kernel does not take is copied into that
 * connection's pending buffer and resent on `drain`.
 *
 * Bun cannot pause reading, so what clients make the server hold is bounded three ways:
 * - per connection, pending answers past MAX_PENDING_OUTPUT_BYTES cut it (Redis' client output
 *   buffer limit);
 * - server-wide, the capacities of every input and pending buffer are a running total checked
 *   before any of them is allocated or grown; past MAX_CLIENT_MEMORY_BYTES, empty buffers are
 *   released, then the connections holding the most are cut, greediest first;
 * - in time, one sweep timer for the whole server cuts connections idle for
 *   TCP_IDLE_TIMEOUT_MS and frames not whole TCP_FRAME_TIMEOUT_MS after their first byte.
 *
 * Logging: a client's mistake in one request is logged at debug only (and counted); what
 * happens to a connection (refused, cut) is logged at warn and a bug at error, each kind
 * rate-limited (LimitedLog), so no client can flood the log.
 */
import type { Socket, TCPSocketListener, TCPSocketListenOptions } from "bun";
import type { TlsMaterial, TlsSource } from "../../auth/tls.ts";
import { type Auth, AuthFailure, type Principal, scopeOf } from "../../auth/tokens.ts";
import {
  HEADER_BYTES,
  isWriteMethod,
  METHOD_NAMES,
  Method,
  readU32,
  writeHeader,
} from "../../codec/frame.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { decodeUtf8, ProtoWriter } from "../../codec/wire.ts";
import { DEFAULTS } from "../../config/index.ts";
import { LimitedLog, type Logger } from "../../log/index.ts";
import { type HotMetrics, Reject, Transport } from "../../metrics/hot.ts";
import { type Deferred, type FeatureService, settleDeferred } from "../../service/service.ts";

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
  /**
   * A connection that neither sends anything nor takes any of its pending answers for this long
   * is closed, ms; 0 = never. Checked by the sweep, so it is closed between this long and 1.5x
   * this long. Default 300,000 (TCP_IDLE_TIMEOUT_MS).
   */
  idleTimeoutMs?: number;
  /**
   * A frame must arrive whole within this long of its first byte, ms; 0 = never. Past it the
   * client gets DEADLINE_EXCEEDED (when its header arrived) and the connection is closed.
   * Default 10,000 (TCP_FRAME_TIMEOUT_MS).
   */
  frameTimeoutMs?: number;
  /**
   * Bound on bytes held for clients over all connections: the capacity of every unfinished
   * input frame's buffer plus every unsent-answer buffer. Checked before any of them is
   * allocated or grown. Default 256 MiB (MAX_CLIENT_MEMORY_BYTES).
   */
  maxClientMemoryBytes?: number;
  /**
   * The store's durability point (`DurableStore.sync`): after a write, resolves once it is
   * durable, rejects if it cannot be made so. Write answers are held until then, with every
   * answer after them on the same connection. Absent: writes are durable at once.
   */
  sync?: () => Promise<void> | null;
  /** Log every request at debug level. */
  logRequests?: boolean;
  /** Tokens and scopes (AUTH_TOKENS_FILE): an Authenticate frame first; absent or disabled = open. */
  auth?: Auth;
  /** TLS on this port (TLS_CERT_FILE ...); absent = plaintext. */
  tls?: TlsSource | null;
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

/** Starts listening. Throws if the port cannot be bound or an option is out of range. */
export function startTcpServer(opts: TcpServerOptions): TcpServer {
  return new TcpServerCore(opts);
}

/** What tests may inspect of a running server; see unsafeExposeInternals. */
export interface TcpServerInternals {
  /** The running total of bytes held for clients (input and pending buffer capacities). */
  readonly clientMemoryBytes: number;
  /** Each open connection's buffers now; their heldBytes sum to clientMemoryBytes. */
  connections(): { inputBytes: number; pendingBytes: number; heldBytes: number }[];
  /** Capacity of the server-wide output writer, bytes. */
  readonly outputCapacity: number;
  /** Bytes copied into and within backlogs so far (linear in what was sent, never quadratic). */
  readonly backlogBytesCopied: number;
}

/**
 * Opens a running server's internal state to tests that check its invariants (the pattern of
 * node-lru-cache's `unsafeExposeInternals`). Not for production use; it may change at any time.
 */
export function unsafeExposeInternals(server: TcpServer): TcpServerInternals {
  return TcpServerCore.unsafeExposeInternals(server);
}

/** Starting size of a connection's input buffer: a small frame's worth, reused for every partial frame. */
const INITIAL_INPUT = 16 * 1024;
/** An input buffer larger than this (grown for one big frame) is released once that frame is done. */
const KEEP_INPUT = 64 * 1024;
/** Starting size of a connection's pending-answer buffer. */
const INITIAL_PENDING = 64 * 1024;
/** A pending buffer larger than this (grown for a burst) is released once it has drained. */
const KEEP_PENDING = 1024 * 1024;
/** Usual size of the server-wide output writer. */
const OUT_BYTES = 256 * 1024;
/**
 * Answers accumulated in one data event are written out once they pass this, so that a burst
 * of big answers cannot grow the writer without bound before the per-connection and server-wide
 * limits see them. Small answers still go out in one write per event.
 */
const OUT_FLUSH_BYTES = 1024 * 1024;
/**
 * After a data event, a writer grown past this (one huge answer: an issue measured it at
 * 638 MiB after one BatchGet, kept for the life of the process) goes back to OUT_BYTES.
 */
const OUT_SHRINK_ABOVE = 4 * 1024 * 1024;
/**
 * Frames one connection may have answered per turn of the event loop; the rest of what it sent
 * waits (as its backlog) until every other connection with data has had its turn. Bun hands a
 * pipelined burst over in one data event (100,000 frames of 12 bytes arrived as one 1.2 MB
 * chunk), and answering it whole held the loop for ~140 ms in bench/abuse. 256 small frames
 * take well under a millisecond.
 */
const FRAMES_PER_TURN = 256;
/** Least time between two GC hints after connections were cut for memory, ms. */
const GC_HINT_MS = 250;
/** Request bytes one connection may have answered per turn (a frame is never split). */
const BYTES_PER_TURN = 256 * 1024;
/** Starting size of a connection's late-answer writer (answers of deferred requests). */
const LATE_BYTES = 4096;
/** Refused authentications after which a connection is closed (a client retrying a bad token). */
const MAX_AUTH_FAILURES = 3;
/**
 * The sweep runs every quarter of the shortest timeout, within these bounds: often enough that
 * a timeout is enforced within 1.5x its value, rarely enough to cost nothing (one pass over the
 * open connections per second at the default timeouts).
 */
const SWEEP_MIN_MS = 10;
const SWEEP_MAX_MS = 1000;

/** Codes that mean the client must change its request: counted as `bad_request`, logged at debug only. */
const CLIENT_FAULT = new Uint8Array(17);
for (const c of [
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
])
  CLIENT_FAULT[c] = 1;

/** Socket errors that say what the peer did (reset, vanished); logged at debug only. */
const PEER_ERRORS = new Set([
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** Per-connection state, in `socket.data`. */
class Connection {
  /** The first inputLen bytes of one incomplete frame (header included), kept between data events. */
  input: Uint8Array | null = null;
  inputLen = 0;
  /** Answers the kernel has not taken yet: pending[pendingStart, pendingEnd). */
  pending: Uint8Array | null = null;
  pendingStart = 0;
  pendingEnd = 0;
  /** Set when no more answers will be written (protocol error, overflow, timeout, shutdown). */
  closing = false;
  /** Set once the socket is closed and the buffers released. */
  closed = false;
  /** Sweep tick of the last activity: data received or pending answers taken (idle timeout). */
  lastTick: number;
  /** Sweep tick at which the frame in `input` started to arrive (frame timeout). */
  frameTick = 0;
  /**
   * Answers waiting for a write to be durable, in order: each data event that wrote adds one
   * segment (its answers from the first write on); answers after a held one wait behind it.
   */
  held: HeldAnswers[] | null = null;
  /** Requests waiting for a remote store (their answers come out of order, by request id). */
  deferred = 0;
  /** Answers of deferred requests written since the last flush of late answers. */
  late: ProtoWriter | null = null;
  /** Who the connection authenticated as (tokens required); null before, or when off. */
  principal: Principal | null = null;
  /** Refused authentications so far; MAX_AUTH_FAILURES closes the connection. */
  authFailures = 0;

  constructor(
    readonly remote: string,
    tick: number,
  ) {
    this.lastTick = tick;
  }

  get pendingBytes(): number {
    return this.pendingEnd - this.pendingStart;
  }

  /**
   * What the connection sent that waits for its next turn (FRAMES_PER_TURN): whole frames, and
   * perhaps the start of one; answered in order before anything it sends later.
   */
  backlog: Uint8Array | null = null;
  /** The unanswered part of the backlog is backlog[backlogStart, backlogEnd); the rest is room. */
  backlogStart = 0;
  backlogEnd = 0;

  /** Bytes held for this connection: the capacities of its buffers (what RSS sees). */
  get heldBytes(): number {
    return (this.input?.length ?? 0) + (this.pending?.length ?? 0) + (this.backlog?.length ?? 0);
  }
}

type Sock = Socket<Connection>;

/** Answers of one data event that wait for the commit of the writes among them. */
interface HeldAnswers {
  bytes: Uint8Array;
  /** Undefined while the commit is pending; null once durable; the error if it failed. */
  outcome: FeatureStoreError | null | undefined;
}

function nonNegative(name: string, value: number | undefined, def: number): number {
  const v = value ?? def;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`TcpServerOptions.${name} must be >= 0, got ${v}`);
  return v;
}

/** Sweep ticks that must pass before a connection stamped at tick k is over `timeoutMs`; 0 = never. */
function ticksFor(timeoutMs: number, sweepMs: number): number {
  // An event stamped with tick k happened after sweep k ran; at sweep m at least (m - k - 1)
  // sweep intervals have passed since (timers never fire early, a blocked loop only delays
  // them), so a connection is never cut before its timeout.
  return timeoutMs > 0 ? Math.ceil(timeoutMs / sweepMs) + 1 : 0;
}

class TcpServerCore implements TcpServer {
  private readonly service: FeatureService;
  private readonly metrics: HotMetrics;
  private readonly logger: Logger;
  private readonly maxFrameBytes: number;
  private readonly maxPendingOutputBytes: number;
  private readonly maxConnections: number;
  private readonly maxClientMemoryBytes: number;
  private readonly idleTimeoutMs: number;
  private readonly frameTimeoutMs: number;
  private readonly sync: () => Promise<void> | null;
  /**
   * The writer is given back past this: room for the largest answer (MAX_RESPONSE_BYTES) on
   * top of what a data event writes before it flushes, so legitimate large answers do not
   * reallocate it every time; one huge answer does not pin more.
   */
  private readonly outShrinkAbove: number;
  /**
   * Where in `out` each commit this data event's writes joined starts: `at` is the first write
   * answer of the commit `batch`. Answers from a mark on wait for its commit, each write for
   * the commit it was applied in (a write that fails before the commit fails the earlier writes
   * of its commit too, so they must not wait for the next one).
   */
  private readonly holdMarks: { at: number; batch: Promise<void> }[] = [];
  /** Connections with late answers to send at the next flushLate. */
  private lateSockets: Sock[] = [];
  /** The connection whose data is being answered (a deferred answer goes back to it). */
  private current: Sock | null = null;
  /** Answers of the current data event; shared by all connections (one event at a time). */
  private readonly out = new ProtoWriter(OUT_BYTES);
  private readonly open = new Set<Sock>();
  private readonly timed: boolean;
  /**
   * When the data event being answered began (performance.now(); 0 when not timed): the arrival
   * time of every request it carries. One clock read per event rather than one per request
   * halves the clock reads of pipelined requests (~40 ns each, bench/micro/metrics.bench.ts),
   * and a request queued behind others of the same read has that wait counted.
   */
  private arrived = 0;
  private readonly logRequests: boolean;
  private listener: TCPSocketListener<Connection>;
  private readonly host: string;
  /** Tokens required (AUTH_TOKENS_FILE) or null: decided once. */
  private readonly auth: Auth | null;
  private readonly logTls: LimitedLog;
  private readonly mutualTls: boolean;
  private draining = false;
  private onAllClosed: (() => void) | null = null;
  /** Sum of every connection's heldBytes, updated wherever a buffer is allocated or released. */
  private clientMemory = 0;
  /** Connections with a backlog, in the order their next turn comes; served by one setImmediate. */
  private readonly turns: Sock[] = [];
  private turnScheduled = false;
  /** Set while a backlog is being answered: what a turn leaves is `backlogRest` into it (-1: none). */
  private backlogTurn = false;
  private backlogRest = -1;
  /** Bytes copied into and within backlogs (unsafeExposeInternals). */
  private backlogCopied = 0;
  /** When `collectSoon` last asked the GC to run (performance.now()). */
  private lastGcHint = Number.NEGATIVE_INFINITY;
  /** Frames and request bytes answered in the current slice of one connection. */
  private sliceFrames = 0;
  private sliceBytes = 0;
  /**
   * A coarse clock: sweeps so far. Connections are stamped with it, so the data path reads no
   * clock at all; the sweep compares stamps against it.
   */
  private tick = 0;
  private readonly idleTicks: number;
  private readonly frameTicks: number;
  private readonly sweepTimer: ReturnType<typeof setInterval> | null = null;

  // One rate-limited log per kind of event a client can trigger at will.
  private readonly logClosing: LimitedLog;
  private readonly logRefused: LimitedLog;
  private readonly logOverflow: LimitedLog;
  private readonly logIdle: LimitedLog;
  private readonly logFrameTimeout: LimitedLog;
  private readonly logMemory: LimitedLog;
  private readonly logSocketError: LimitedLog;
  private readonly logInternal: LimitedLog;
  private readonly limitedLogs: LimitedLog[];

  constructor(opts: TcpServerOptions) {
    this.service = opts.service;
    this.metrics = opts.metrics;
    const logger = opts.logger;
    this.logger = logger;
    this.maxFrameBytes = opts.maxFrameBytes;
    this.maxPendingOutputBytes = opts.maxPendingOutputBytes;
    this.maxConnections = opts.maxConnections;
    this.timed = opts.metrics.enabled || opts.logRequests === true;
    this.logRequests = opts.logRequests === true && logger.debugEnabled;
    const idleMs = nonNegative("idleTimeoutMs", opts.idleTimeoutMs, DEFAULTS.tcpIdleTimeoutMs);
    this.idleTimeoutMs = idleMs;
    this.frameTimeoutMs = nonNegative("frameTimeoutMs", opts.frameTimeoutMs, DEFAULTS.tcpFrameTimeoutMs);
    this.maxClientMemoryBytes = opts.maxClientMemoryBytes ?? DEFAULTS.maxClientMemoryBytes;
    this.sync = opts.sync ?? (() => null);
    this.auth = opts.auth?.enabled ? opts.auth : null;
    this.mutualTls = opts.tls?.mutual ?? false;
    this.outShrinkAbove = Math.max(
      OUT_SHRINK_ABOVE,
      2 * (opts.service.options.maxResponseBytes + OUT_FLUSH_BYTES),
    );
    if (!(this.maxClientMemoryBytes > 0))
      throw new RangeError(
        `TcpServerOptions.maxClientMemoryBytes must be > 0, got ${this.maxClientMemoryBytes}`,
      );

    this.logClosing = new LimitedLog(logger, "warn", "closing connection");
    this.logTls = new LimitedLog(
      logger,
      "warn",
      "TLS handshake failed (plaintext or a refused client certificate)",
    );
    this.logRefused = new LimitedLog(logger, "warn", "refusing connection");
    this.logOverflow = new LimitedLog(logger, "warn", "disconnecting client that does not read its answers");
    this.logIdle = new LimitedLog(logger, "warn", "closing idle connection");
    this.logFrameTimeout = new LimitedLog(logger, "warn", "closing connection: frame not whole in time");
    this.logMemory = new LimitedLog(logger, "warn", "cutting connection: client memory limit");
    this.logSocketError = new LimitedLog(logger, "warn", "socket error");
    this.logInternal = new LimitedLog(logger, "error", "request failed");
    this.limitedLogs = [
      this.logClosing,
      this.logRefused,
      this.logOverflow,
      this.logIdle,
      this.logFrameTimeout,
      this.logMemory,
      this.logSocketError,
      this.logInternal,
    ];

    const shortest = Math.min(
      idleMs || Number.POSITIVE_INFINITY,
      this.frameTimeoutMs || Number.POSITIVE_INFINITY,
    );
    const sweepMs = Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, Math.floor(shortest / 4)));
    this.idleTicks = ticksFor(idleMs, sweepMs);
    this.frameTicks = ticksFor(this.frameTimeoutMs, sweepMs);

    this.host = opts.host;
    this.listener = this.listen(opts.port, opts.tls?.current ?? null);
    // A new certificate: a new listener on the same port (SO_REUSEPORT) takes new connections,
    // then the old one stops listening; connections already open keep their session.
    opts.tls?.onChange((material) => {
      const old = this.listener;
      this.listener = this.listen(old.port, material);
      old.stop(false);
    });
    if (shortest !== Number.POSITIVE_INFINITY) {
      this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
      this.sweepTimer.unref();
    }
  }

  /** Listens on `port`, with TLS when `tls` is given (client certificates required with a CA). */
  private listen(port: number, tls: TlsMaterial | null): TCPSocketListener<Connection> {
    const socket = {
      open: (socket: Sock) => this.onOpen(socket),
      data: (socket: Sock, data: Uint8Array) => this.onData(socket, data),
      drain: (socket: Sock) => this.onDrain(socket),
      close: (socket: Sock) => this.onClose(socket),
      error: (socket: Sock, err: Error) => this.onError(socket, err),
      handshake: (socket: Sock, ok: boolean, err: Error | null) => this.onHandshake(socket, ok, err),
    };
    const options = {
      hostname: this.host,
      port,
      socket,
      ...(tls === null
        ? {}
        : {
            reusePort: true,
            tls: {
              cert: tls.cert,
              key: tls.key,
              ca: tls.ca,
              requestCert: tls.ca !== undefined,
              rejectUnauthorized: tls.ca !== undefined,
            },
          }),
    };
    // reusePort is missing from Bun's type declaration (it works: DESIGN.md).
    return Bun.listen<Connection>(options as unknown as TCPSocketListenOptions<Connection>);
  }

  /** A TLS handshake that failed (plaintext on the TLS port, no or a foreign client certificate). */
  private onHandshake(socket: Sock, ok: boolean, err: Error | null): void {
    // Without client certificates asked for, a verification note about the (absent) client
    // certificate is not a failure.
    if (ok && (err === null || !this.mutualTls)) return;
    this.auth?.fail(AuthFailure.Tls, "tcp", "TLS handshake failed");
    this.logTls.log({ remote: socket.data.remote, err: err?.message ?? "handshake failed" });
    socket.end();
  }

  get port(): number {
    return this.listener.port;
  }

  get connectionCount(): number {
    return this.open.size;
  }

  drain(timeoutMs: number): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
      for (const l of this.limitedLogs) l.flush();
      this.listener.stop(false);
      for (const s of this.open) this.endIfIdle(s);
    }
    if (this.open.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (this.open.size > 0)
          this.logger.warn("shutdown timeout: cutting connections", { open: this.open.size });
        for (const s of this.open) s.terminate();
        resolve();
      }, timeoutMs);
      this.onAllClosed = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  // ---- socket events ------------------------------------------------------------------------

  private onOpen(socket: Sock): void {
    socket.data = new Connection(`${socket.remoteAddress}`, this.tick);
    if (this.draining || this.open.size >= this.maxConnections) {
      this.metrics.reject(this.draining ? Reject.ShuttingDown : Reject.MaxConnections);
      this.logRefused.log({
        remote: socket.data.remote,
        reason: this.draining ? "shutting down" : `MAX_CONNECTIONS (${this.maxConnections}) reached`,
      });
      socket.data.closing = true;
      socket.terminate();
      return;
    }
    this.open.add(socket);
    this.metrics.connection(Transport.Tcp, 1);
    if (this.logger.debugEnabled) this.logger.debug("connection opened", { remote: socket.data.remote });
  }

  private onData(socket: Sock, data: Uint8Array): void {
    const conn = socket.data;
    if (conn.closing) return;
    conn.lastTick = this.tick;
    if (conn.backlog !== null) {
      // Behind its own backlog: kept in order for its next turn.
      this.appendBacklog(conn, data);
      return;
    }
    this.consume(socket, conn, data);
  }

  /**
   * Answers what `data` holds, up to one turn's share (FRAMES_PER_TURN, BYTES_PER_TURN); what is
   * left becomes the connection's backlog, answered at its next turn.
   */
  private consume(socket: Sock, conn: Connection, data: Uint8Array): void {
    this.sliceFrames = 0;
    this.sliceBytes = 0;
    if (this.timed) this.arrived = performance.now();
    const out = this.out;
    out.reset();
    this.holdMarks.length = 0;
    this.current = socket;
    let at = 0;
    if (conn.inputLen > 0) at = this.continueFrame(conn, data);
    if (!conn.closing) {
      at = this.parse(socket, conn, data, at, data.length);
      if (!conn.closing && at < data.length) {
        if (!this.sliceOver()) this.keepRest(conn, data, at);
        else if (this.backlogTurn) this.backlogRest = at;
        else this.setBacklog(socket, conn, data.slice(at));
      }
    }
    // From here conn.closed means it was cut (client memory, output overflow): nothing to send.
    if (!conn.closed) {
      if (conn.closing) this.releaseInput(conn);
      else if (conn.inputLen === 0 && conn.input !== null && conn.input.length > KEEP_INPUT)
        this.setInput(conn, null);
      this.flushOut(socket, conn);
    }
    if (out.bytes.length > this.outShrinkAbove) out.bytes = new Uint8Array(OUT_BYTES);
    if (conn.closed) return;
    if (conn.closing && conn.pendingBytes === 0 && conn.held === null) socket.end();
    else if (this.draining) this.endIfIdle(socket);
  }

  private onDrain(socket: Sock): void {
    const conn = socket.data;
    const p = conn.pending;
    if (p === null || conn.pendingBytes === 0) return;
    const written = socket.write(p.subarray(conn.pendingStart, conn.pendingEnd));
    if (written > 0) {
      conn.pendingStart += written;
      conn.lastTick = this.tick;
    }
    if (conn.pendingBytes === 0) {
      conn.pendingStart = conn.pendingEnd = 0;
      if (p.length > KEEP_PENDING) this.setPending(conn, null);
      if (conn.closing && conn.held === null) socket.end();
      else if (this.draining) this.endIfIdle(socket);
    }
  }

  private onClose(socket: Sock): void {
    const conn = socket.data;
    conn.closing = true;
    conn.closed = true;
    this.releaseInput(conn);
    this.releasePending(conn);
    this.releaseBacklog(conn);
    if (!this.open.delete(socket)) return;
    this.metrics.connection(Transport.Tcp, -1);
    if (this.logger.debugEnabled) this.logger.debug("connection closed", { remote: conn.remote });
    if (this.draining && this.open.size === 0) this.onAllClosed?.();
  }

  private onError(socket: Sock, err: Error): void {
    // A socket error is what the peer did or what the network did to it: never a stack trace.
    const code = (err as { code?: unknown }).code;
    const fields = { remote: socket.data?.remote, code, message: err.message };
    if (typeof code === "string" && PEER_ERRORS.has(code)) {
      if (this.logger.debugEnabled) this.logger.debug("socket error", fields);
    } else {
      this.logSocketError.log(fields);
    }
  }

  // ---- frames -------------------------------------------------------------------------------

  /**
   * Answers the complete frames in buf[at,end) into `out`; returns where the first incomplete
   * one starts. Stops at a refused header (the connection is then closing).
   */
  private parse(socket: Sock, conn: Connection, buf: Uint8Array, at: number, end: number): number {
    const out = this.out;
    while (end - at >= HEADER_BYTES) {
      const length = this.frameLength(conn, buf, at);
      if (length < 0) return at;
      const bodyStart = at + HEADER_BYTES;
      const bodyEnd = bodyStart + length;
      if (bodyEnd > end) break;
      if (this.sliceOver()) break; // the rest waits for this connection's next turn
      this.answer(buf, at, bodyStart, bodyEnd);
      this.sliceFrames++;
      this.sliceBytes += length;
      at = bodyEnd;
      if (conn.closing) return at; // refused repeatedly: nothing after this frame is answered
      if (out.pos >= OUT_FLUSH_BYTES) {
        this.flushOut(socket, conn);
        if (conn.closing) return at;
      }
    }
    return at;
  }

  /** True once the connection being served has had its share of this turn. */
  private sliceOver(): boolean {
    return this.sliceFrames >= FRAMES_PER_TURN || this.sliceBytes >= BYTES_PER_TURN;
  }

  /**
   * Makes `rest` (a copy of what a data event left) the connection's backlog and gives it a
   * turn. False when the client memory budget cut the connection instead.
   */
  private setBacklog(socket: Sock, conn: Connection, rest: Uint8Array): boolean {
    if (!this.reserve(conn, rest.length)) return false;
    this.clientMemory += rest.length;
    this.backlogCopied += rest.length;
    conn.backlog = rest;
    conn.backlogStart = 0;
    conn.backlogEnd = rest.length;
    this.queueTurn(socket);
    return true;
  }

  /**
   * Appends `data` behind the backlog. The buffer doubles when full, or is compacted when its
   * answered head is at least half of it: every byte is copied a bounded number of times,
   * however the bytes arrive (copying the whole backlog per data event was quadratic: a 440 KB
   * BatchSet loaded at 62k rows/s against 84k for 220 KB ones).
   */
  private appendBacklog(conn: Connection, data: Uint8Array): void {
    let buf = conn.backlog!;
    const live = conn.backlogEnd - conn.backlogStart;
    if (conn.backlogEnd + data.length > buf.length) {
      if (live + data.length <= buf.length && conn.backlogStart * 2 >= buf.length) {
        buf.copyWithin(0, conn.backlogStart, conn.backlogEnd);
      } else {
        const cap = Math.max(buf.length * 2, live + data.length);
        if (!this.reserve(conn, cap - buf.length)) return;
        this.clientMemory += cap - buf.length;
        const grown = new Uint8Array(cap);
        grown.set(buf.subarray(conn.backlogStart, conn.backlogEnd));
        conn.backlog = buf = grown;
      }
      conn.backlogStart = 0;
      conn.backlogEnd = live;
      this.backlogCopied += live;
    }
    buf.set(data, conn.backlogEnd);
    conn.backlogEnd += data.length;
    this.backlogCopied += data.length;
  }

  /** Gives the connection a turn after every other connection waiting now. */
  private queueTurn(socket: Sock): void {
    this.turns.push(socket);
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(() => this.nextTurns());
    }
  }

  /** One slice for each connection waiting with a backlog, in order; those with more go again. */
  private nextTurns(): void {
    this.turnScheduled = false;
    const waiting = this.turns.splice(0);
    for (const socket of waiting) {
      const conn = socket.data;
      const buf = conn.backlog;
      if (buf === null || conn.closed) continue;
      if (conn.closing) {
        this.releaseBacklog(conn);
        continue;
      }
      const start = conn.backlogStart;
      this.backlogTurn = true;
      this.backlogRest = -1;
      this.consume(socket, conn, buf.subarray(start, conn.backlogEnd));
      this.backlogTurn = false;
      if (conn.backlog !== buf) continue; // released: the connection was cut or closed
      if (this.backlogRest < 0 || conn.closing) this.releaseBacklog(conn);
      else {
        conn.backlogStart = start + this.backlogRest;
        this.queueTurn(socket);
      }
    }
  }

  /**
   * Body length of the frame whose header is at buf[at], or -1 after refusing it: a length
   * past MAX_FRAME_BYTES is refused before any of its body is buffered.
   */
  private frameLength(conn: Connection, buf: Uint8Array, at: number): number {
    const length = readU32(buf, at);
    if (length > this.maxFrameBytes) {
      this.refuse(
        conn,
        buf,
        at,
        Code.ResourceExhausted,
        `frame body of ${length} bytes exceeds MAX_FRAME_BYTES (${this.maxFrameBytes})`,
        Reject.FrameTooLarge,
      );
      return -1;
    }
    if (buf[at + 9] !== 0 || buf[at + 10] !== 0 || buf[at + 11] !== 0) {
      this.refuse(
        conn,
        buf,
        at,
        Code.InvalidArgument,
        "malformed frame header: status and flags must be 0 in a request",
        Reject.BadHeader,
      );
      return -1;
    }
    return length;
  }

  /**
   * Adds the start of `data` to the incomplete frame in conn.input, and answers that frame
   * once it is whole. Returns how many bytes of `data` it took (the rest are later frames); all
   * of them when the connection is refused, or cut to keep MAX_CLIENT_MEMORY_BYTES.
   */
  private continueFrame(conn: Connection, data: Uint8Array): number {
    let input = conn.input!;
    let len = conn.inputLen;
    let used = 0;
    if (len < HEADER_BYTES) {
      // input is at least INITIAL_INPUT long, so a header always fits.
      used = Math.min(HEADER_BYTES - len, data.length);
      input.set(data.subarray(0, used), len);
      len += used;
      conn.inputLen = len;
      if (len < HEADER_BYTES) return used;
      if (this.frameLength(conn, input, 0) < 0) return data.length;
    }
    const total = HEADER_BYTES + readU32(input, 0);
    const n = Math.min(total - len, data.length - used);
    if (len + n > input.length) {
      // Grown by what has arrived, never past the frame's own length: a header alone
      // announcing MAX_FRAME_BYTES does not make the server reserve them. Four-fold steps:
      // doubling left twice the frame's size of garbage behind each large frame, which under
      // 200 half-sent 4 MiB frames took RSS to 1.3 GiB and GC pauses to hundreds of ms.
      const cap = Math.min(total, Math.max(len + n, input.length * 4));
      if (!this.reserve(conn, cap - input.length)) return data.length;
      const grown = new Uint8Array(cap);
      grown.set(input.subarray(0, len));
      this.setInput(conn, grown);
      input = grown;
    }
    input.set(data.subarray(used, used + n), len);
    len += n;
    used += n;
    if (len < total) {
      conn.inputLen = len;
      return used;
    }
    conn.inputLen = 0;
    this.answer(input, 0, HEADER_BYTES, total);
    return used;
  }

  /**
   * Keeps data[at,end), the start of a frame whose header (if it arrived) passed the checks,
   * for the next data event, unless that cuts the connection to keep MAX_CLIENT_MEMORY_BYTES.
   */
  private keepRest(conn: Connection, data: Uint8Array, at: number): void {
    const rest = data.length - at;
    let input = conn.input;
    if (input === null || input.length < rest) {
      const total = rest >= HEADER_BYTES ? HEADER_BYTES + readU32(data, at) : 0;
      const cap = Math.max(INITIAL_INPUT, Math.min(total, rest * 2));
      if (!this.reserve(conn, cap - (input?.length ?? 0))) return;
      input = new Uint8Array(cap);
      this.setInput(conn, input);
    }
    input.set(data.subarray(at), 0);
    conn.inputLen = rest;
    conn.frameTick = this.tick;
  }

  /** Answers one frame whose header is at buf[at] and body is buf[bodyStart,bodyEnd) into `out`. */
  private answer(buf: Uint8Array, at: number, bodyStart: number, bodyEnd: number): void {
    const out = this.out;
    const requestId = readU32(buf, at + 4);
    const method = buf[at + 8]!;
    const t0 = this.arrived;
    const headerAt = out.pos;
    out.ensure(HEADER_BYTES);
    out.pos += HEADER_BYTES;
    if (this.auth !== null) {
      const p = this.current!.data.principal;
      if (method === Method.Authenticate || p === null || (p.scopes & scopeOf(method)) === 0) {
        this.authenticate(this.current!, method, buf, bodyStart, bodyEnd, headerAt);
        this.finishFrame(out, headerAt, requestId, method, out.bytes[headerAt + 9]!, t0);
        return;
      }
    } else if (method === Method.Authenticate) {
      // A client configured with a token, on a server without tokens: nothing to check.
      this.finishFrame(out, headerAt, requestId, method, Code.OK, t0);
      return;
    }
    let code: number = Code.OK;
    try {
      const deferred = this.service.handle(method, buf, bodyStart, bodyEnd, out);
      if (deferred !== undefined) {
        out.pos = headerAt;
        this.answerLater(this.current!, deferred, requestId, method, t0);
        return;
      }
      if (isWriteMethod(method)) this.markCommit(headerAt);
    } catch (err) {
      code = this.failed(err, method, requestId, headerAt);
    }
    this.finishFrame(out, headerAt, requestId, method, code, t0);
  }

  /**
   * With tokens required: an Authenticate frame (its body the token) sets the connection's
   * principal; any other request of a connection without one, or whose token lacks the scope
   * or was revoked, is refused. The answer's body is written after `headerAt` and its code
   * left in the header's status byte. MAX_AUTH_FAILURES refusals close the connection.
   */
  private authenticate(
    socket: Sock,
    method: number,
    buf: Uint8Array,
    bodyStart: number,
    bodyEnd: number,
    headerAt: number,
  ): void {
    const conn = socket.data;
    const auth = this.auth!;
    const out = this.out;
    let code: number = Code.OK;
    try {
      if (method === Method.Authenticate)
        conn.principal = auth.fromToken(decodeUtf8(buf, bodyStart, bodyEnd), "tcp");
      else if (conn.principal === null)
        throw auth.fail(
          AuthFailure.Missing,
          "tcp",
          "authenticate first: send an Authenticate frame (method 6) with the token",
        );
      else auth.authorize(conn.principal, method, "tcp");
    } catch (err) {
      const e = FeatureStoreError.from(err);
      code = e.code;
      out.pos = headerAt + HEADER_BYTES;
      out.utf8(e.message);
      if (e.code === Code.Unauthenticated && ++conn.authFailures >= MAX_AUTH_FAILURES && !conn.closing) {
        conn.closing = true;
        this.logClosing.log({ remote: conn.remote, reason: "authentication failed repeatedly" });
      }
    }
    out.bytes[headerAt + 9] = code;
  }

  /** Fills in the header of the answer frame at out[headerAt] and records the request. */
  private finishFrame(
    out: ProtoWriter,
    headerAt: number,
    requestId: number,
    method: number,
    code: number,
    t0: number,
  ): void {
    writeHeader(out.bytes, headerAt, out.pos - headerAt - HEADER_BYTES, requestId, method, code);
    if (this.timed) {
      const seconds = (performance.now() - t0) / 1000;
      this.metrics.request(Transport.Tcp, method, code, seconds);
      if (this.logRequests)
        this.logger.debug("request", {
          method: METHOD_NAMES[method] ?? method,
          requestId,
          code,
          us: seconds * 1e6,
        });
    }
  }

  /**
   * Answers a request that waits for a remote store once it can, out of order (the protocol
   * matches answers by request id), in the shared writer (free between data events) and sent
   * at once, or behind the answers the connection holds.
   */
  private answerLater(socket: Sock, deferred: Deferred, requestId: number, method: number, t0: number): void {
    const conn = socket.data;
    conn.deferred++;
    const out = this.out;
    // Runs right after the answer is written into `out` (free between data events), before
    // anything else can use it: the frame is copied to the connection's late answers, which go
    // out together once the answers woken by the same loads are all written (one socket write
    // per connection, not one per answer: the miss path spent 21% of its CPU in socket writes).
    const write = (code: number): void => {
      this.finishFrame(out, 0, requestId, method, code, t0);
      conn.deferred--;
      if (!conn.closed) {
        let late = conn.late;
        if (late === null) {
          late = conn.late = new ProtoWriter(Math.max(LATE_BYTES, out.pos));
          this.lateSockets.push(socket);
          if (this.lateSockets.length === 1) queueMicrotask(this.flushLate);
        }
        late.raw(out.bytes, 0, out.pos);
      }
      out.reset();
    };
    settleDeferred(deferred, out, HEADER_BYTES, () => write(Code.OK)).catch((err: unknown) =>
      write(this.failed(err, method, requestId, 0)),
    );
  }

  /** Sends every connection's late answers, one write each (or behind the answers it holds). */
  private readonly flushLate = (): void => {
    const sockets = this.lateSockets;
    this.lateSockets = [];
    for (const socket of sockets) {
      const conn = socket.data;
      const late = conn.late;
      conn.late = null;
      if (late === null || conn.closed) continue;
      if (conn.held === null) this.send(socket, conn, late.bytes, 0, late.pos);
      else this.hold(socket, conn, late.view(), null);
      if (conn.closed) continue;
      if (conn.closing && conn.pendingBytes === 0 && conn.held === null) socket.end();
      else if (this.draining) this.endIfIdle(socket);
    }
  };

  /** Replaces a failed request's partial answer by its error message; returns the status code. */
  private failed(err: unknown, method: number, requestId: number, headerAt: number): number {
    const e = FeatureStoreError.from(err);
    const out = this.out;
    out.pos = headerAt + HEADER_BYTES;
    out.utf8(e.message);
    if (CLIENT_FAULT[e.code] === 1) {
      this.metrics.reject(Reject.BadRequest);
      if (this.logger.debugEnabled)
        this.logger.debug("request refused", {
          method: METHOD_NAMES[method] ?? method,
          requestId,
          code: e.code,
          message: e.message,
        });
    } else if (e.code === Code.Internal || e.code === Code.Unknown) {
      this.logInternal.log({ method: METHOD_NAMES[method] ?? method, code: e.code, err: e.cause ?? e });
    }
    return e.code;
  }

  /** Appends an error frame answering the request whose header is at buf[at], its id and method echoed. */
  private errorFrame(buf: Uint8Array, at: number, code: number, message: string): void {
    const out = this.out;
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
  }

  /**
   * Answers the request whose header is at buf[at] with an error frame (so the client fails
   * that call with the code) and marks the connection for closing.
   */
  private refuse(
    conn: Connection,
    buf: Uint8Array,
    at: number,
    code: number,
    message: string,
    reason: number,
  ): void {
    this.errorFrame(buf, at, code, message);
    this.metrics.reject(reason);
    conn.closing = true;
    this.logClosing.log({ remote: conn.remote, reason: message });
  }

  // ---- output -------------------------------------------------------------------------------

  /** Notes that the write answered at `at` waits for the store's current commit. */
  private markCommit(at: number): void {
    const batch = this.sync();
    if (batch === null) return;
    const marks = this.holdMarks;
    if (marks.length === 0 || marks[marks.length - 1]!.batch !== batch) marks.push({ at, batch });
  }

  /**
   * Sends the answers in `out` and rewinds it: those before this event's first write go now
   * (unless earlier answers of the connection still wait), each run from a write on is held
   * until that write's commit.
   */
  private flushOut(socket: Sock, conn: Connection): void {
    const out = this.out;
    const marks = this.holdMarks;
    const firstMark = marks.length > 0 ? marks[0]!.at : out.pos;
    if (firstMark > 0) {
      if (conn.held === null) this.send(socket, conn, out.bytes, 0, firstMark);
      else this.hold(socket, conn, out.bytes.slice(0, firstMark), null);
    }
    for (let k = 0; k < marks.length; k++) {
      const end = k + 1 < marks.length ? marks[k + 1]!.at : out.pos;
      this.hold(socket, conn, out.bytes.slice(marks[k]!.at, end), marks[k]!.batch);
    }
    marks.length = 0;
    out.reset();
  }

  /** Queues answers behind those the connection holds, until `pending` settles (null: at once). */
  private hold(socket: Sock, conn: Connection, bytes: Uint8Array, pending: Promise<void> | null): void {
    const segment: HeldAnswers = { bytes, outcome: undefined };
    conn.held ??= [];
    conn.held.push(segment);
    if (pending === null) {
      segment.outcome = null;
      this.release(socket, conn);
      return;
    }
    pending.then(
      () => {
        segment.outcome = null;
        this.release(socket, conn);
      },
      (err: unknown) => {
        segment.outcome = FeatureStoreError.from(err);
        this.release(socket, conn);
      },
    );
  }

  /** Sends the held segments whose commit has settled, in order; a failed commit fails its writes. */
  private release(socket: Sock, conn: Connection): void {
    const held = conn.held;
    if (held === null || conn.closed) return;
    while (held.length > 0 && held[0]!.outcome !== undefined) {
      const { bytes, outcome } = held.shift()!;
      const answers = outcome === null || outcome === undefined ? bytes : this.failWrites(bytes, outcome);
      this.send(socket, conn, answers, 0, answers.length);
      if (conn.closed) return;
    }
    if (held.length > 0) return;
    conn.held = null;
    if (conn.closing && conn.pendingBytes === 0) socket.end();
    else if (this.draining) this.endIfIdle(socket);
  }

  /** The held answers with every successful write answer replaced by the commit's error. */
  private failWrites(bytes: Uint8Array, err: FeatureStoreError): Uint8Array {
    const out = new ProtoWriter(bytes.length + 256);
    for (let at = 0; at < bytes.length; ) {
      const end = at + HEADER_BYTES + readU32(bytes, at);
      const method = bytes[at + 8]!;
      if (isWriteMethod(method) && bytes[at + 9] === Code.OK) {
        const headerAt = out.pos;
        out.ensure(HEADER_BYTES);
        out.pos += HEADER_BYTES;
        out.utf8(err.message);
        writeHeader(
          out.bytes,
          headerAt,
          out.pos - headerAt - HEADER_BYTES,
          readU32(bytes, at + 4),
          method,
          err.code,
        );
      } else out.raw(bytes, at, end);
      at = end;
    }
    return out.view();
  }

  /** Writes bytes[start,end) to the socket, keeping what the kernel does not take. */
  private send(socket: Sock, conn: Connection, bytes: Uint8Array, start: number, end: number): void {
    let written = 0;
    if (conn.pendingBytes === 0) {
      written = socket.write(bytes.subarray(start, end));
      if (written < 0) return; // closed: the close handler cleans up
      if (written === end - start) return;
    }
    const rest = end - start - written;
    if (conn.pendingBytes + rest > this.maxPendingOutputBytes) {
      this.metrics.reject(Reject.OutputOverflow);
      this.logOverflow.log({
        remote: conn.remote,
        pendingBytes: conn.pendingBytes + rest,
        limit: this.maxPendingOutputBytes,
      });
      this.cut(socket, conn);
      return;
    }
    this.appendPending(conn, bytes, start + written, end);
  }

  private appendPending(conn: Connection, bytes: Uint8Array, start: number, end: number): void {
    const n = end - start;
    let p = conn.pending;
    if (p === null || conn.pendingEnd + n > p.length) {
      const live = conn.pendingBytes;
      if (p !== null && live + n <= p.length / 2) {
        p.copyWithin(0, conn.pendingStart, conn.pendingEnd);
      } else {
        const old = p?.length ?? 0;
        // Doubling, but never past the per-connection limit, which live + n is within.
        const cap = Math.max(
          live + n,
          Math.min(this.maxPendingOutputBytes, Math.max(INITIAL_PENDING, old * 2, (live + n) * 2)),
        );
        if (!this.reserve(conn, cap - old)) return; // conn itself was the greediest: cut
        const grown = new Uint8Array(cap);
        if (p !== null) grown.set(p.subarray(conn.pendingStart, conn.pendingEnd));
        this.setPending(conn, grown);
        p = grown;
      }
      conn.pendingStart = 0;
      conn.pendingEnd = live;
    }
    p.set(bytes.subarray(start, end), conn.pendingEnd);
    conn.pendingEnd += n;
  }

  private endIfIdle(socket: Sock): void {
    const conn = socket.data;
    if (
      conn.pendingBytes === 0 &&
      conn.inputLen === 0 &&
      conn.held === null &&
      conn.backlog === null &&
      conn.deferred === 0
    ) {
      conn.closing = true;
      socket.end();
    }
  }

  // ---- client memory ------------------------------------------------------------------------

  private setInput(conn: Connection, input: Uint8Array | null): void {
    this.clientMemory += (input?.length ?? 0) - (conn.input?.length ?? 0);
    conn.input = input;
  }

  private setPending(conn: Connection, pending: Uint8Array | null): void {
    this.clientMemory += (pending?.length ?? 0) - (conn.pending?.length ?? 0);
    conn.pending = pending;
  }

  private releaseInput(conn: Connection): void {
    this.setInput(conn, null);
    conn.inputLen = 0;
  }

  private releaseBacklog(conn: Connection): void {
    this.clientMemory -= conn.backlog?.length ?? 0;
    conn.backlog = null;
    conn.backlogStart = conn.backlogEnd = 0;
  }

  private releasePending(conn: Connection): void {
    this.setPending(conn, null);
    conn.pendingStart = conn.pendingEnd = 0;
  }

  /**
   * Makes room for `delta` more bytes held for `conn`, within MAX_CLIENT_MEMORY_BYTES. False
   * when `conn` itself had to be cut (its buffers are then released and it must be left alone).
   */
  private reserve(conn: Connection, delta: number): boolean {
    return this.clientMemory + delta <= this.maxClientMemoryBytes || this.makeRoom(conn, delta);
  }

  /**
   * Over the budget: first the buffers that hold nothing now are released (other connections'
   * kept input and pending buffers), then connections are cut, the ones holding the most first
   * (`conn` counted with the `delta` it asks for), until `delta` fits.
   */
  private makeRoom(conn: Connection, delta: number): boolean {
    const budget = this.maxClientMemoryBytes;
    for (const s of this.open) {
      const c = s.data;
      if (c === conn) continue;
      if (c.inputLen === 0 && c.input !== null) this.setInput(c, null);
      if (c.pendingBytes === 0 && c.pending !== null) this.releasePending(c);
    }
    if (this.clientMemory + delta <= budget) return true;
    const held = (s: Sock) => s.data.heldBytes + (s.data === conn ? delta : 0);
    const greediest = [...this.open].sort((a, b) => held(b) - held(a));
    for (const s of greediest) {
      if (this.clientMemory + delta <= budget) return true;
      const c = s.data;
      this.metrics.reject(Reject.ClientMemory);
      this.logMemory.log({
        remote: c.remote,
        heldBytes: held(s),
        clientMemoryBytes: this.clientMemory + delta,
        limit: budget,
      });
      this.cut(s, c);
      this.collectSoon();
      if (c === conn) return false;
    }
    return this.clientMemory + delta <= budget;
  }

  /**
   * After connections were cut for memory, asks the GC (without waiting for it) to take their
   * buffers back: left to the allocation rate, the collector ran late and RSS overshot the budget
   * several times over. At most once per GC_HINT_MS.
   */
  private collectSoon(): void {
    const now = performance.now();
    if (now - this.lastGcHint < GC_HINT_MS) return;
    this.lastGcHint = now;
    Bun.gc(false);
  }

  /** Drops a connection at once, without its pending answers, and releases what it holds. */
  private cut(socket: Sock, conn: Connection): void {
    conn.closing = true;
    conn.closed = true;
    this.releaseInput(conn);
    this.releasePending(conn);
    this.releaseBacklog(conn);
    socket.terminate();
  }

  // ---- timeouts -----------------------------------------------------------------------------

  /** Runs every sweep interval: advances the coarse clock and cuts what has timed out. */
  private sweep(): void {
    const tick = ++this.tick;
    const frameTicks = this.frameTicks;
    const idleTicks = this.idleTicks;
    for (const socket of this.open) {
      const conn = socket.data;
      if (frameTicks > 0 && conn.inputLen > 0 && !conn.closing && tick - conn.frameTick >= frameTicks)
        this.frameTimedOut(socket, conn);
      else if (idleTicks > 0 && tick - conn.lastTick >= idleTicks) this.idleTimedOut(socket, conn);
    }
    for (const l of this.limitedLogs) l.flush();
  }

  private frameTimedOut(socket: Sock, conn: Connection): void {
    this.metrics.reject(Reject.FrameTimeout);
    this.logFrameTimeout.log({
      remote: conn.remote,
      receivedBytes: conn.inputLen,
      limitMs: this.frameTimeoutMs,
    });
    conn.closing = true;
    if (conn.inputLen >= HEADER_BYTES) {
      // The header arrived: the client learns which request failed and why.
      const out = this.out;
      out.reset();
      this.errorFrame(
        conn.input!,
        0,
        Code.DeadlineExceeded,
        `frame not received whole within TCP_FRAME_TIMEOUT_MS (${this.frameTimeoutMs} ms)`,
      );
      this.releaseInput(conn);
      this.send(socket, conn, out.bytes, 0, out.pos);
      out.reset();
    }
    this.closeTimedOut(socket, conn);
  }

  private idleTimedOut(socket: Sock, conn: Connection): void {
    this.metrics.reject(Reject.IdleTimeout);
    this.logIdle.log({ remote: conn.remote, pendingBytes: conn.pendingBytes, limitMs: this.idleTimeoutMs });
    conn.closing = true;
    this.closeTimedOut(socket, conn);
  }

  /** Closes a timed-out connection: gracefully if nothing is pending, else at once (its client is not reading). */
  private closeTimedOut(socket: Sock, conn: Connection): void {
    if (conn.closed) return;
    if (conn.pendingBytes > 0) {
      this.cut(socket, conn);
      return;
    }
    this.releaseInput(conn);
    socket.end();
  }

  /** See unsafeExposeInternals. */
  static unsafeExposeInternals(server: TcpServer): TcpServerInternals {
    if (!(server instanceof TcpServerCore)) throw new TypeError("not a server made by startTcpServer");
    const s = server;
    return {
      get clientMemoryBytes() {
        return s.clientMemory;
      },
      connections() {
        return [...s.open].map(({ data: c }) => ({
          inputBytes: c.inputLen,
          pendingBytes: c.pendingBytes,
          heldBytes: c.heldBytes,
        }));
      },
      get outputCapacity() {
        return s.out.bytes.length;
      },
      get backlogBytesCopied() {
        return s.backlogCopied;
      },
    };
  }
}
