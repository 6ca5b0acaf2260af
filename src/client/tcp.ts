/**
 * The TCP transport: a small pool of `Bun.connect` sockets speaking proto/PROTOCOL.md.
 *
 * Per connection, everything a request needs lives in arrays preallocated to `maxInFlight`
 * and indexed by a slot; the request id on the wire names the slot:
 *
 * ```
 * request_id (u32) = generation << slotBits | slot
 *   slot        index into the pending arrays (ids, methods, deadlines, resolves, rejects)
 *   generation  bumped each time the slot is reused, so that a late answer to a request that
 *               already timed out never completes the request now holding the slot
 * ```
 *
 * Free slots are a stack (LIFO), so the slots in use stay packed at the bottom and the deadline
 * scan only walks up to the highest slot ever used.
 *
 * Output: frames produced in one tick are appended to one buffer per connection and leave in
 * one `socket.write` from a microtask. `write` returns how many bytes the kernel took; the rest
 * stays at the front of the buffer and is resent from `drain`.
 *
 * Input: answers are parsed straight from the chunk Bun hands to `data`; only a trailing partial
 * frame is copied into a per-connection buffer (grown to the largest frame seen, never shrunk),
 * which later chunks are appended to. Answer bodies are views, never copies.
 */
import type { Socket, SocketHandler } from "bun";
import { HEADER_BYTES, Method, readU32, writeHeader } from "../codec/frame.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";
import {
  type ClientOptions,
  DEADLINE_TICK_MS,
  type Endpoint,
  type ResolvedClientOptions,
  resolveClientOptions,
} from "./options.ts";
import {
  type ClientTransport,
  canceled,
  methodName,
  newPending,
  type Reject,
  type Resolve,
  rejected,
  takeReject,
  takeResolve,
} from "./transport.ts";

type Sock = Socket<Connection>;

const IDLE = 0;
const CONNECTING = 1;
const OPEN = 2;
/** Waiting for the reconnect timer. */
const BACKOFF = 3;
/** The transport is closed; never reconnects. */
const SHUTDOWN = 4;

const INITIAL_OUT_BYTES = 64 * 1024;
const INITIAL_IN_BYTES = 64 * 1024;
/**
 * A buffer grown past this for one large request or answer goes back to its initial size once
 * empty, so that one 50 MB BatchGet does not pin 50 MB per connection for good.
 */
const SHRINK_ABOVE_BYTES = 4 * 1024 * 1024;
/** Highest gRPC code; a status byte above it is reported as UNKNOWN. */
const MAX_CODE = 16;

const messageDecoder = new TextDecoder("utf-8");

/** Connection-level counters, for tests and the benchmark's sanity checks. */
export interface TransportStats {
  /** Connections open now. */
  open: number;
  /** Requests waiting for an answer, over all connections. */
  inFlight: number;
  /** Calls waiting for a connection to come up or for a free slot. */
  waiting: number;
  /** Connections established since start (first connects and reconnects). */
  connects: number;
  /** Answers that arrived after their call had timed out, and were dropped. */
  lateAnswers: number;
  /** Socket writes the kernel took only part of; the rest was resent on `drain`. */
  partialWrites: number;
}

/** One socket of the pool and all its per-request state. */
class Connection {
  socket: Sock | null = null;
  state = IDLE;
  /** Failed connection attempts since the last success (drives the backoff). */
  attempts = 0;
  lastAttemptAt = Number.NEGATIVE_INFINITY;
  reconnectTimer: ReturnType<typeof setTimeout> | null = null;

  // ---- pending requests, indexed by slot ----
  readonly capacity: number;
  readonly slotBits: number;
  readonly slotMask: number;
  readonly genMask: number;
  readonly ids: Uint32Array;
  readonly gens: Uint32Array;
  readonly busy: Uint8Array;
  readonly methods: Uint8Array;
  /** Absolute deadlines, performance.now() ms. */
  readonly deadlines: Float64Array;
  readonly resolves: (Resolve | undefined)[];
  readonly rejects: (Reject | undefined)[];
  readonly free: Int32Array;
  freeTop: number;
  highWater = 0;
  inFlight = 0;
  /** A lower bound on the earliest deadline in flight: the scan is skipped before it. */
  nextExpiry = Number.POSITIVE_INFINITY;
  /** Requests that timed out and whose answer may still come: that many unmatched ids are tolerated. */
  lateBudget = 0;

  // ---- output ----
  out = new Uint8Array(INITIAL_OUT_BYTES);
  outLen = 0;
  flushQueued = false;
  waitingDrain = false;
  readonly flush: () => void;

  // ---- input: unparsed bytes are inBuf[inStart, inEnd) ----
  inBuf = new Uint8Array(INITIAL_IN_BYTES);
  inStart = 0;
  inEnd = 0;

  constructor(
    readonly pool: TcpTransport,
    readonly endpoint: Endpoint,
    capacity: number,
  ) {
    this.capacity = capacity;
    let bits = 1;
    while (1 << bits < capacity) bits++;
    this.slotBits = bits;
    this.slotMask = (1 << bits) - 1;
    this.genMask = 2 ** (32 - bits) - 1;
    this.ids = new Uint32Array(capacity);
    this.gens = new Uint32Array(capacity);
    this.busy = new Uint8Array(capacity);
    this.methods = new Uint8Array(capacity);
    this.deadlines = new Float64Array(capacity);
    this.resolves = new Array<Resolve | undefined>(capacity).fill(undefined);
    this.rejects = new Array<Reject | undefined>(capacity).fill(undefined);
    this.free = new Int32Array(capacity);
    // Slot 0 on top of the stack.
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.freeTop = capacity;
    this.flush = () => this.doFlush();
  }

  get label(): string {
    return `${this.endpoint.host}:${this.endpoint.port}`;
  }

  /** Queues one request; the connection must be OPEN and have a free slot. */
  send(method: number, body: Uint8Array, deadline: number): Promise<Uint8Array> {
    const promise = newPending();
    this.enqueue(method, body, deadline, takeResolve(), takeReject());
    return promise;
  }

  /** `send` with the promise's resolving functions given. */
  enqueue(method: number, body: Uint8Array, deadline: number, resolve: Resolve, reject: Reject): void {
    const slot = this.free[--this.freeTop]!;
    if (slot >= this.highWater) this.highWater = slot + 1;
    const gen = (this.gens[slot]! + 1) & this.genMask;
    this.gens[slot] = gen;
    const id = ((gen << this.slotBits) | slot) >>> 0;
    this.ids[slot] = id;
    this.busy[slot] = 1;
    this.methods[slot] = method;
    this.deadlines[slot] = deadline;
    this.resolves[slot] = resolve;
    this.rejects[slot] = reject;
    if (deadline < this.nextExpiry) this.nextExpiry = deadline;
    this.inFlight++;
    this.pool.inFlight++;

    const len = body.length;
    const need = this.outLen + HEADER_BYTES + len;
    if (need > this.out.length) this.growOut(need);
    const out = this.out;
    writeHeader(out, this.outLen, len, id, method, 0);
    if (len < 64) {
      let p = this.outLen + HEADER_BYTES;
      for (let i = 0; i < len; i++) out[p++] = body[i]!;
    } else {
      out.set(body, this.outLen + HEADER_BYTES);
    }
    this.outLen = need;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
    if (this.pool.ticker === null) this.pool.startTicker();
  }

  private growOut(need: number): void {
    let cap = this.out.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.out.subarray(0, this.outLen));
    this.out = next;
  }

  doFlush(): void {
    this.flushQueued = false;
    const socket = this.socket;
    if (this.waitingDrain || socket === null || this.outLen === 0) return;
    const n = socket.write(this.out, 0, this.outLen);
    if (n === this.outLen) {
      this.outLen = 0;
      if (this.out.length > SHRINK_ABOVE_BYTES) this.out = new Uint8Array(INITIAL_OUT_BYTES);
    } else if (n >= 0) {
      // The kernel took part of it: keep the rest at the front and resend on drain.
      this.out.copyWithin(0, n, this.outLen);
      this.outLen -= n;
      this.waitingDrain = true;
      this.pool.partialWrites++;
    }
    // n < 0: the socket is closed; the close handler fails what was queued.
  }

  onDrain(): void {
    this.waitingDrain = false;
    this.doFlush();
  }

  // ---- input -------------------------------------------------------------------------------

  onData(chunk: Uint8Array): void {
    this.read(chunk);
    // Answers freed slots: calls waiting for one go now.
    if (this.pool.waiting.length > 0) this.pool.pump();
  }

  private read(chunk: Uint8Array): void {
    if (this.inStart === this.inEnd) {
      // Nothing buffered: parse in place, keep only a trailing partial frame.
      const p = this.parse(chunk, 0, chunk.length);
      if (p < 0) return;
      this.inStart = 0;
      this.inEnd = 0;
      // Answers handed out earlier may view the old buffer; they keep it alive, not this.
      if (this.inBuf.length > SHRINK_ABOVE_BYTES) this.inBuf = new Uint8Array(INITIAL_IN_BYTES);
      if (p < chunk.length) this.append(chunk, p);
      return;
    }
    this.append(chunk, 0);
    const p = this.parse(this.inBuf, this.inStart, this.inEnd);
    if (p < 0) return;
    this.inStart = p;
    if (p === this.inEnd) {
      // Views handed out from this chunk stay valid: the next chunk lands at 0 only after the
      // continuations of this one have run (microtasks drain between socket events).
      this.inStart = 0;
      this.inEnd = 0;
    }
  }

  /** Appends chunk[from..] to the input buffer, compacting or growing it first if needed. */
  private append(chunk: Uint8Array, from: number): void {
    const n = chunk.length - from;
    if (this.inEnd + n > this.inBuf.length) {
      const kept = this.inEnd - this.inStart;
      let need = kept + n;
      // Grow once to the whole frame when its header is already known (length checked in parse).
      if (kept >= HEADER_BYTES) need = Math.max(need, HEADER_BYTES + readU32(this.inBuf, this.inStart));
      else if (kept === 0 && n >= HEADER_BYTES)
        need = Math.max(
          need,
          Math.min(HEADER_BYTES + readU32(chunk, from), HEADER_BYTES + this.pool.options.maxFrameBytes),
        );
      if (need > this.inBuf.length) {
        let cap = this.inBuf.length * 2;
        while (cap < need) cap *= 2;
        const next = new Uint8Array(cap);
        next.set(this.inBuf.subarray(this.inStart, this.inEnd));
        this.inBuf = next;
      } else {
        this.inBuf.copyWithin(0, this.inStart, this.inEnd);
      }
      this.inStart = 0;
      this.inEnd = kept;
    }
    this.inBuf.set(from === 0 ? chunk : chunk.subarray(from), this.inEnd);
    this.inEnd += n;
  }

  /** Handles every complete frame in buf[p, end); returns where the unparsed rest starts, or -1 if the connection was dropped. */
  private parse(buf: Uint8Array, p: number, end: number): number {
    const maxFrame = this.pool.options.maxFrameBytes;
    while (end - p >= HEADER_BYTES) {
      const len = readU32(buf, p);
      if (len > maxFrame) {
        this.violation(`answer length ${len} exceeds maxFrameBytes ${maxFrame}`);
        return -1;
      }
      if (buf[p + 10] !== 0 || buf[p + 11] !== 0) {
        this.violation("non-zero flags in an answer header");
        return -1;
      }
      const bodyStart = p + HEADER_BYTES;
      if (end - bodyStart < len) break;
      if (!this.answer(readU32(buf, p + 4), buf[p + 8]!, buf[p + 9]!, buf, bodyStart, bodyStart + len))
        return -1;
      p = bodyStart + len;
    }
    return p;
  }

  private answer(
    id: number,
    method: number,
    status: number,
    buf: Uint8Array,
    start: number,
    end: number,
  ): boolean {
    const slot = id & this.slotMask;
    if (slot >= this.capacity || this.busy[slot] === 0 || this.ids[slot] !== id) {
      if (this.lateBudget > 0) {
        this.lateBudget--;
        this.pool.lateAnswers++;
        return true;
      }
      this.violation(`answer for unknown request id ${id}`);
      return false;
    }
    if (this.methods[slot] !== method) {
      this.violation(`answer to request ${id} has method ${method}, the request had ${this.methods[slot]}`);
      return false;
    }
    const resolve = this.resolves[slot]!;
    const reject = this.rejects[slot]!;
    this.release(slot);
    if (status === 0) {
      resolve(buf.subarray(start, end));
    } else {
      const message = messageDecoder.decode(buf.subarray(start, end));
      const code = (status <= MAX_CODE ? status : Code.Unknown) as Code;
      reject(new FeatureStoreError(code, status <= MAX_CODE ? message : `status ${status}: ${message}`));
    }
    return true;
  }

  private release(slot: number): void {
    this.busy[slot] = 0;
    this.resolves[slot] = undefined;
    this.rejects[slot] = undefined;
    this.free[this.freeTop++] = slot;
    this.inFlight--;
    this.pool.inFlight--;
  }

  /** The server broke the protocol: the byte stream cannot be trusted any more. */
  private violation(what: string): void {
    const socket = this.socket;
    this.lost(Code.Internal, `protocol violation by ${this.label}: ${what}`);
    socket?.terminate();
  }

  // ---- deadlines ---------------------------------------------------------------------------

  /** Fails calls whose deadline has passed; recomputes `nextExpiry`. */
  expire(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    const deadlines = this.deadlines;
    for (let s = 0; s < this.highWater; s++) {
      if (this.busy[s] === 0) continue;
      const d = deadlines[s]!;
      if (d <= now) {
        const reject = this.rejects[s]!;
        const method = this.methods[s]!;
        this.release(s);
        this.lateBudget++;
        reject(
          new FeatureStoreError(
            Code.DeadlineExceeded,
            `${methodName(method)}: deadline exceeded (${this.label})`,
          ),
        );
      } else if (d < next) {
        next = d;
      }
    }
    this.nextExpiry = next;
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  onOpen(socket: Sock): void {
    if (this.state === SHUTDOWN) {
      socket.terminate();
      return;
    }
    socket.setNoDelay(true);
    this.socket = socket;
    this.state = OPEN;
    const token = this.pool.options.token;
    if (token !== null) {
      // First on the connection: the server answers frames in order, so every request sent
      // after it is authenticated. A refusal fails those requests with the server's code.
      this.enqueue(
        Method.Authenticate,
        new TextEncoder().encode(token),
        performance.now() + this.pool.options.deadlineMs,
        ignoreAnswer,
        ignoreAnswer,
      );
    }
    this.attempts = 0;
    this.lateBudget = 0;
    this.pool.connects++;
    this.pool.onConnectionUp();
  }

  /** Called once per connection loss (close handler, protocol violation): fails everything in flight. */
  lost(code: Code, message: string): void {
    if (this.socket === null && this.state !== OPEN) return;
    this.socket = null;
    this.outLen = 0;
    this.waitingDrain = false;
    this.inStart = 0;
    this.inEnd = 0;
    this.lateBudget = 0;
    this.nextExpiry = Number.POSITIVE_INFINITY;
    this.failAll(code, message);
    if (this.state !== SHUTDOWN) {
      this.state = BACKOFF;
      this.pool.scheduleReconnect(this);
    }
  }

  failAll(code: Code, message: string): void {
    if (this.inFlight === 0) return;
    for (let s = 0; s < this.highWater; s++) {
      if (this.busy[s] === 0) continue;
      const reject = this.rejects[s]!;
      const method = this.methods[s]!;
      this.release(s);
      reject(new FeatureStoreError(code, `${methodName(method)}: ${message}`));
    }
  }
}

/** The Authenticate frame's answer: a refusal shows in the answers of the requests after it. */
function ignoreAnswer(): void {}

/** Socket handlers, declared once; per-connection state is `socket.data`. */
const handlers: SocketHandler<Connection> = {
  binaryType: "uint8array",
  open(socket) {
    socket.data.onOpen(socket);
  },
  data(socket, chunk) {
    const conn = socket.data;
    if (conn.socket === socket) conn.onData(chunk as unknown as Uint8Array);
  },
  drain(socket) {
    const conn = socket.data;
    if (conn.socket === socket) conn.onDrain();
  },
  close(socket) {
    const conn = socket.data;
    if (conn.socket === socket) conn.lost(Code.Unavailable, `connection to ${conn.label} lost`);
    conn.pool.onSocketClosed();
  },
  error(socket, err) {
    // Our handlers do not throw; if something does, the stream is in an unknown state.
    const conn = socket.data;
    if (conn.socket === socket)
      conn.lost(Code.Internal, `connection to ${conn.label} failed: ${err.message}`);
    socket.terminate();
  },
  connectError() {
    // Handled where Bun.connect's promise rejects.
  },
};

/**
 * A call that found no live connection (start-up, every server down) or no free slot (every
 * connection at maxInFlight), waiting for one. Rare, so it may allocate.
 */
interface Waiting {
  method: number;
  body: Uint8Array;
  deadline: number;
  resolve: Resolve;
  reject: Reject;
}

/**
 * A pool of TCP connections to one or more servers: `connectionsPerServer` sockets per server,
 * calls spread round-robin over the live ones, each reconnected in the background after a loss.
 *
 * Failure semantics:
 * - an error frame from the server rejects with its status code and message;
 * - a call not answered by its deadline rejects DEADLINE_EXCEEDED; its slot is freed at once and
 *   a late answer is dropped;
 * - a connection lost with calls in flight rejects them UNAVAILABLE; nothing is retried by the
 *   client (a write may or may not have been applied; reads and `replace` writes are idempotent
 *   and safe for the caller to retry);
 * - with no live connection, a call waits until one comes up (an immediate connection attempt is
 *   made) and rejects UNAVAILABLE if none does by its deadline;
 * - with every live connection at `maxInFlight`, a call waits (FIFO) for a free slot and rejects
 *   DEADLINE_EXCEEDED if none frees up by its deadline; at most `maxInFlight` calls per
 *   connection wait, past that a call rejects RESOURCE_EXHAUSTED at once;
 * - a server that breaks the protocol (unknown request id, bad header, over-long frame) gets
 *   its connection closed; calls on it reject INTERNAL.
 */
export class TcpTransport implements ClientTransport {
  readonly options: ResolvedClientOptions;
  private readonly conns: Connection[] = [];
  private rr = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;
  /** Sockets opened or being opened and not yet closed. */
  private liveSockets = 0;
  /** @internal Calls waiting for a connection or a slot, oldest first. */
  readonly waiting: Waiting[] = [];
  private readyWaiters: { resolve: () => void; reject: (e: unknown) => void; deadline: number }[] = [];

  /** @internal Requests in flight over all connections. */
  inFlight = 0;
  /** @internal */
  ticker: ReturnType<typeof setInterval> | null = null;
  /** @internal */
  connects = 0;
  /** @internal */
  lateAnswers = 0;
  /** @internal */
  partialWrites = 0;

  /** Starts connecting every connection of the pool at once; calls made before one is up wait for it. */
  constructor(options: ClientOptions) {
    this.options = resolveClientOptions(options);
    const o = this.options;
    // Interleaved (s0c0, s1c0, s0c1, s1c1...): consecutive calls go to different servers.
    for (let c = 0; c < o.connectionsPerServer; c++)
      for (const ep of o.servers) this.conns.push(new Connection(this, ep, o.maxInFlight));
    for (const conn of this.conns) this.connect(conn);
  }

  /** Counters of the pool (a snapshot). */
  stats(): TransportStats {
    let open = 0;
    for (const c of this.conns) if (c.state === OPEN) open++;
    return {
      open,
      inFlight: this.inFlight,
      waiting: this.waiting.length,
      connects: this.connects,
      lateAnswers: this.lateAnswers,
      partialWrites: this.partialWrites,
    };
  }

  /** Resolves once at least one connection is up; rejects UNAVAILABLE if none is after `deadlineMs`. */
  ready(deadlineMs: number = this.options.deadlineMs): Promise<void> {
    if (this.closed) return rejected(canceled());
    for (const c of this.conns) if (c.state === OPEN) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.readyWaiters.push({ resolve, reject, deadline: performance.now() + deadlineMs });
    if (this.ticker === null) this.startTicker();
    return promise;
  }

  call(method: number, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    if (this.closed) return rejected(canceled());
    if (!(deadlineMs > 0))
      return rejected(
        new FeatureStoreError(Code.DeadlineExceeded, `${methodName(method)}: deadline must be > 0 ms`),
      );
    if (body.length > this.options.maxFrameBytes)
      return rejected(
        new FeatureStoreError(
          Code.ResourceExhausted,
          `${methodName(method)}: request of ${body.length} bytes exceeds maxFrameBytes ${this.options.maxFrameBytes}`,
        ),
      );
    const deadline = performance.now() + deadlineMs;
    // Calls already waiting go first.
    if (this.waiting.length === 0) {
      const c = this.pick();
      if (c !== null) return c.send(method, body, deadline);
    }
    return this.wait(method, body, deadline);
  }

  /** The next OPEN connection with a free slot, round-robin; null if there is none. */
  private pick(): Connection | null {
    const conns = this.conns;
    const n = conns.length;
    let i = this.rr;
    for (let k = 0; k < n; k++) {
      const c = conns[i]!;
      if (++i === n) i = 0;
      if (c.state === OPEN && c.freeTop > 0) {
        this.rr = i;
        return c;
      }
    }
    return null;
  }

  /** Parks a call until a connection with a free slot is up; the body is copied since the caller may reuse its buffer. */
  private wait(method: number, body: Uint8Array, deadline: number): Promise<Uint8Array> {
    if (this.waiting.length >= this.options.maxInFlight * this.conns.length)
      return rejected(
        new FeatureStoreError(
          Code.ResourceExhausted,
          `${methodName(method)}: ${this.waiting.length} calls already wait for a connection or a free slot (maxInFlight ${this.options.maxInFlight} per connection)`,
        ),
      );
    const promise = newPending();
    this.waiting.push({ method, body: body.slice(), deadline, resolve: takeResolve(), reject: takeReject() });
    if (!this.anyOpen()) this.kick();
    if (this.ticker === null) this.startTicker();
    return promise;
  }

  private anyOpen(): boolean {
    for (const c of this.conns) if (c.state === OPEN) return true;
    return false;
  }

  /** @internal Dispatches waiting calls, oldest first, while a connection has a free slot. */
  pump(): void {
    const waiting = this.waiting;
    const now = performance.now();
    let i = 0;
    for (; i < waiting.length; i++) {
      const w = waiting[i]!;
      if (w.deadline <= now) {
        w.reject(this.waitExpired(w.method));
        continue;
      }
      const c = this.pick();
      if (c === null) break;
      c.enqueue(w.method, w.body, w.deadline, w.resolve, w.reject);
    }
    if (i > 0) waiting.splice(0, i);
  }

  /** The error of a call whose deadline passed while it waited. */
  private waitExpired(method: number): FeatureStoreError {
    if (this.anyOpen())
      return new FeatureStoreError(
        Code.DeadlineExceeded,
        `${methodName(method)}: deadline exceeded while waiting for a free slot (maxInFlight ${this.options.maxInFlight} per connection)`,
      );
    return this.noConnection(methodName(method));
  }

  /** Connects now every connection sleeping in backoff, unless it tried very recently. */
  private kick(): void {
    const now = performance.now();
    for (const c of this.conns) {
      if (c.state === BACKOFF && now - c.lastAttemptAt >= this.options.reconnectInitialMs) {
        if (c.reconnectTimer !== null) clearTimeout(c.reconnectTimer);
        c.reconnectTimer = null;
        this.connect(c);
      }
    }
  }

  private connect(conn: Connection): void {
    if (this.closed) return;
    conn.state = CONNECTING;
    conn.lastAttemptAt = performance.now();
    this.liveSockets++;
    const tls = this.options.tls;
    Bun.connect<Connection>({
      hostname: conn.endpoint.host,
      port: conn.endpoint.port,
      data: conn,
      socket: handlers,
      tls:
        tls === null
          ? undefined
          : {
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
              serverName: tls.serverName,
              rejectUnauthorized: true,
            },
    }).catch(() => {
      this.onSocketClosed();
      if (conn.state === SHUTDOWN) return;
      conn.attempts++;
      conn.state = BACKOFF;
      this.scheduleReconnect(conn);
    });
  }

  /** @internal */
  scheduleReconnect(conn: Connection): void {
    if (this.closed || conn.reconnectTimer !== null) return;
    const o = this.options;
    const base = Math.min(o.reconnectMaxMs, o.reconnectInitialMs * 2 ** Math.min(conn.attempts, 30));
    const delay = base * (0.5 + Math.random() * 0.5);
    conn.reconnectTimer = setTimeout(() => {
      conn.reconnectTimer = null;
      if (conn.state === BACKOFF) this.connect(conn);
    }, delay);
    // A pool that only retries in the background must not keep the process alive; calls waiting
    // for a connection do, through the deadline ticker.
    conn.reconnectTimer.unref();
  }

  /** @internal A connection came up: release ready() waiters and dispatch waiting calls. */
  onConnectionUp(): void {
    const ready = this.readyWaiters;
    if (ready.length > 0) {
      this.readyWaiters = [];
      for (const w of ready) w.resolve();
    }
    if (this.waiting.length > 0) this.pump();
  }

  /** @internal */
  onSocketClosed(): void {
    this.liveSockets--;
    if (this.liveSockets === 0 && this.resolveClosed !== null) {
      this.resolveClosed();
      this.resolveClosed = null;
    }
  }

  private noConnection(what: string): FeatureStoreError {
    const names = this.options.servers.map((s) => `${s.host}:${s.port}`).join(", ");
    return new FeatureStoreError(Code.Unavailable, `${what}: no connection to ${names} within the deadline`);
  }

  /** @internal */
  startTicker(): void {
    this.ticker = setInterval(() => this.tick(), DEADLINE_TICK_MS);
  }

  private tick(): void {
    const now = performance.now();
    if (this.inFlight > 0)
      for (const c of this.conns) if (c.inFlight > 0 && now >= c.nextExpiry) c.expire(now);
    const waiting = this.waiting;
    if (waiting.length > 0) {
      // Slots freed by expiry go to waiting calls first; then expire those still waiting.
      this.pump();
      let kept = 0;
      for (let i = 0; i < waiting.length; i++) {
        const w = waiting[i]!;
        if (w.deadline <= now) w.reject(this.waitExpired(w.method));
        else waiting[kept++] = w;
      }
      waiting.length = kept;
    }
    if (this.readyWaiters.length > 0) {
      const keep = [];
      for (const w of this.readyWaiters) {
        if (w.deadline <= now) w.reject(this.noConnection("connect"));
        else keep.push(w);
      }
      this.readyWaiters = keep;
    }
    if (this.inFlight === 0 && waiting.length === 0 && this.readyWaiters.length === 0) this.stopTicker();
  }

  private stopTicker(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  /**
   * Fails every pending call with CANCELED, stops the reconnect timers and closes the sockets;
   * resolves once every socket is closed. Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    this.stopTicker();
    const err = canceled();
    for (const w of this.waiting.splice(0, this.waiting.length)) w.reject(err);
    for (const w of this.readyWaiters) w.reject(err);
    this.readyWaiters = [];
    const sockets: Sock[] = [];
    for (const c of this.conns) {
      if (c.reconnectTimer !== null) clearTimeout(c.reconnectTimer);
      c.reconnectTimer = null;
      c.state = SHUTDOWN;
      if (c.socket !== null) sockets.push(c.socket);
      c.lost(Code.Canceled, "client is closed");
    }
    this.closing =
      this.liveSockets === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.resolveClosed = resolve;
          });
    for (const s of sockets) s.end();
    return this.closing;
  }
}
