/**
 * The TCP transport against a scripted server written here (not the real one): it parses
 * frames per proto/PROTOCOL.md and does whatever the test's script says with each of them:
 * echo, hold and answer later in any order, answer with an error, drop the connection, send
 * garbage. No assertion depends on timing; waits are bounded polls with generous limits.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import {
  type ClientOptions,
  Code,
  FeatureStoreClient,
  FeatureStoreError,
  Method,
  TcpTransport,
} from "../../src/client/index.ts";
import { HEADER_BYTES, readU32, writeHeader } from "../../src/codec/frame.ts";

// ---- the scripted server ----------------------------------------------------------------------

type Sock = Socket<undefined>;

interface Frame {
  socket: Sock;
  id: number;
  method: number;
  body: Uint8Array;
}

type Script = (f: Frame, server: ScriptedServer) => void;

/** Answers every frame with status 0 and the request body. */
const echo: Script = (f, s) => s.answer(f, 0, f.body);
/** Keeps every frame in `held` for the test to answer. */
const hold: Script = (f, s) => {
  s.held.push(f);
};

function frameBytes(id: number, method: number, status: number, body: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + body.length);
  writeHeader(out, 0, body.length, id, method, status);
  out[10] = flags;
  out.set(body, HEADER_BYTES);
  return out;
}

class ScriptedServer {
  listener: TCPSocketListener<undefined> | null = null;
  port = 0;
  script: Script = echo;
  /** Frames received, over all connections. */
  frames = 0;
  /** Body bytes received. */
  bodyBytes = 0;
  /** Connections accepted since start. */
  accepted = 0;
  held: Frame[] = [];
  readonly sockets = new Set<Sock>();
  private readonly buffers = new Map<Sock, Uint8Array>();

  static start(script: Script = echo): ScriptedServer {
    const s = new ScriptedServer();
    s.script = script;
    s.listen(0);
    return s;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private listen(port: number): void {
    this.listener = Bun.listen({
      hostname: "127.0.0.1",
      port,
      socket: {
        binaryType: "uint8array",
        open: (socket) => {
          this.accepted++;
          this.sockets.add(socket);
          this.buffers.set(socket, new Uint8Array(0));
        },
        data: (socket, chunk) => this.onData(socket, chunk as unknown as Uint8Array),
        close: (socket) => {
          this.sockets.delete(socket);
          this.buffers.delete(socket);
        },
      },
    });
    this.port = this.listener.port;
  }

  private onData(socket: Sock, chunk: Uint8Array): void {
    const prev = this.buffers.get(socket);
    if (prev === undefined) return;
    let buf = chunk;
    if (prev.length > 0) {
      buf = new Uint8Array(prev.length + chunk.length);
      buf.set(prev);
      buf.set(chunk, prev.length);
    }
    let p = 0;
    while (buf.length - p >= HEADER_BYTES) {
      const len = readU32(buf, p);
      if (buf.length - p - HEADER_BYTES < len) break;
      const f: Frame = {
        socket,
        id: readU32(buf, p + 4),
        method: buf[p + 8]!,
        body: buf.slice(p + HEADER_BYTES, p + HEADER_BYTES + len),
      };
      p += HEADER_BYTES + len;
      this.frames++;
      this.bodyBytes += len;
      this.script(f, this);
      if (!this.buffers.has(socket)) return; // the script closed it
    }
    this.buffers.set(socket, buf.slice(p));
  }

  answer(f: Frame, status: number, body: Uint8Array = new Uint8Array(0)): void {
    f.socket.write(frameBytes(f.id, f.method, status, body));
  }

  /** Answers the held frames (in the given order of indexes, default as received) with their bodies. */
  release(order?: number[]): void {
    const held = this.held;
    this.held = [];
    for (const i of order ?? held.map((_, i) => i)) this.answer(held[i]!, 0, held[i]!.body);
  }

  /** Closes the listener and every connection. */
  stop(): void {
    this.listener?.stop(true);
    this.listener = null;
    for (const s of this.sockets) s.terminate();
  }

  /** Listens again on the same port (after `stop`). */
  restart(): void {
    this.listen(this.port);
  }
}

// ---- helpers ------------------------------------------------------------------------------------

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function server(script: Script = echo): ScriptedServer {
  const s = ScriptedServer.start(script);
  cleanups.push(() => s.stop());
  return s;
}

/** A client whose transport is at hand; every connection is up when it resolves. */
async function client(
  servers: ScriptedServer[],
  opts: Partial<ClientOptions> = {},
): Promise<{ c: FeatureStoreClient; t: TcpTransport }> {
  const t = new TcpTransport({ servers: servers.map((s) => s.address), connectionsPerServer: 1, ...opts });
  cleanups.push(() => t.close());
  const c = new FeatureStoreClient(t, { deadlineMs: opts.deadlineMs ?? 5000 });
  const total = servers.length * (opts.connectionsPerServer ?? 1);
  await until(() => t.stats().open === total, "every connection to open");
  return { c, t };
}

/** Polls `cond` every 5 ms; fails after `limitMs` (a hang detector, not a timing assertion). */
async function until(cond: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

async function failure(p: Promise<unknown>): Promise<FeatureStoreError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return err as FeatureStoreError;
  }
  throw new Error("expected a rejection");
}

function u32(n: number): Uint8Array {
  return new Uint8Array([n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24]);
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

// ---- tests --------------------------------------------------------------------------------------

describe("TcpTransport", () => {
  test("many requests in flight on one connection are matched by id when answered out of order", async () => {
    const s = server(hold);
    const { c } = await client([s]);
    const n = 200;
    const calls = Array.from({ length: n }, (_, i) => c.call(Method.Ping, u32(i)));
    await until(() => s.held.length === n, "every request to arrive");
    expect(s.accepted).toBe(1);
    // Reverse order, then the rest shuffled deterministically.
    const order = s.held.map((_, i) => i).reverse();
    for (let i = order.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    s.release(order);
    const bodies = await Promise.all(calls);
    bodies.forEach((b, i) => {
      expect(Array.from(b)).toEqual(Array.from(u32(i)));
    });
  });

  test("typed calls travel as frames and decode their answers", async () => {
    const s = server((f, srv) => {
      // A GetFeaturesResponse: entity_id "e", found = true (no features).
      if (f.method === Method.GetFeatures) srv.answer(f, 0, new Uint8Array([0x0a, 1, 0x65, 0x18, 1]));
      else if (f.method === Method.BatchSet) srv.answer(f, 0, new Uint8Array([0x08, 7]));
      else srv.answer(f, 0);
    });
    const { c } = await client([s]);
    const r = await c.getFeatures("e");
    expect(r.found).toBe(true);
    expect(r.entityId).toBe("e");
    expect(await c.batchSet([{ entityId: "x", features: { a: 1 } }])).toBe(7);
    expect(await c.deleteFeatures("x")).toBe(false);
    await c.setFeatures("x", { a: 1 });
    await c.ping();
  });

  test("a malformed answer body fails the call INTERNAL", async () => {
    const s = server((f, srv) => srv.answer(f, 0, new Uint8Array([0x0a, 50])));
    const { c } = await client([s]);
    const err = await failure(c.getFeatures("e"));
    expect(err.code).toBe(Code.Internal);
  });

  test("an error frame rejects with its status code and message", async () => {
    const s = server((f, srv) => srv.answer(f, Code.NotFound, new TextEncoder().encode("no such thing ✗")));
    const { c } = await client([s]);
    const err = await failure(c.getFeatures("e"));
    expect(err.code).toBe(Code.NotFound);
    expect(err.message).toBe("no such thing ✗");
    // The connection keeps serving after an error frame.
    s.script = echo;
    await c.ping();
  });

  test("a call not answered by its deadline fails DEADLINE_EXCEEDED; the late answer is dropped and the slot reused", async () => {
    const s = server(hold);
    const { c, t } = await client([s], { maxInFlight: 1 });
    const err = await failure(c.call(Method.Ping, u32(1), 50));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect((await failure(c.getFeatures("e", undefined, { deadlineMs: 30 }))).code).toBe(
      Code.DeadlineExceeded,
    );
    expect(t.stats().inFlight).toBe(0);
    s.release(); // two late answers
    s.script = echo;
    // With maxInFlight 1 this only works if the expired slot was freed.
    const body = await c.call(Method.Ping, u32(2));
    expect(Array.from(body)).toEqual(Array.from(u32(2)));
    expect(t.stats().lateAnswers).toBe(2);
    expect(t.stats().connects).toBe(1);
  });

  test("past maxInFlight calls wait for a free slot; past maxInFlight waiting they fail RESOURCE_EXHAUSTED", async () => {
    const s = server(hold);
    const { c, t } = await client([s], { maxInFlight: 2 });
    const calls = [1, 2, 3, 4].map((i) => c.call(Method.Ping, u32(i)));
    expect((await failure(c.call(Method.Ping, u32(5)))).code).toBe(Code.ResourceExhausted);
    expect(t.stats()).toMatchObject({ inFlight: 2, waiting: 2 });
    await until(() => s.held.length === 2, "two requests");
    s.release();
    await until(() => s.held.length === 2, "the two waiting requests");
    s.release();
    const bodies = await Promise.all(calls);
    bodies.forEach((b, i) => {
      expect(Array.from(b)).toEqual(Array.from(u32(i + 1)));
    });
    expect(s.frames).toBe(4);
  });

  test("a call waiting for a free slot fails DEADLINE_EXCEEDED at its deadline", async () => {
    const s = server(hold);
    const { c, t } = await client([s], { maxInFlight: 1 });
    const first = c.call(Method.Ping, u32(1));
    const err = await failure(c.call(Method.Ping, u32(2), 30));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(t.stats().waiting).toBe(0);
    await until(() => s.held.length === 1, "the first request");
    s.release();
    await first;
    expect(s.frames).toBe(1);
  });

  test("calls in flight when the server closes the connection fail UNAVAILABLE", async () => {
    const s = server((f, srv) => {
      srv.held.push(f);
      if (srv.held.length === 3) f.socket.end();
    });
    const { c } = await client([s]);
    const errs = await Promise.all([1, 2, 3].map((i) => failure(c.call(Method.Ping, u32(i)))));
    for (const e of errs) expect(e.code).toBe(Code.Unavailable);
  });

  test("after the server restarts on the same port, calls work again without intervention", async () => {
    const s = server();
    const { c, t } = await client([s], { reconnect: { initialMs: 10, maxMs: 100 } });
    await c.ping();
    s.stop();
    await until(() => t.stats().open === 0, "the client to notice");
    s.restart();
    await until(() => t.stats().open === 1, "the reconnect");
    await c.ping();
    expect(t.stats().connects).toBe(2);
  });

  test("a call made while every server is down waits for the reconnect within its deadline", async () => {
    const s = server();
    const { c, t } = await client([s], { reconnect: { initialMs: 10, maxMs: 50 } });
    s.stop();
    await until(() => t.stats().open === 0, "the client to notice");
    const p = c.call(Method.Ping, u32(9), 10_000);
    await until(() => t.stats().waiting === 1, "the call to wait");
    s.restart();
    expect(Array.from(await p)).toEqual(Array.from(u32(9)));
  });

  test("a call with no connection fails UNAVAILABLE once its deadline passes", async () => {
    const s = server();
    const { c, t } = await client([s], { reconnect: { initialMs: 10, maxMs: 50 } });
    s.stop();
    await until(() => t.stats().open === 0, "the client to notice");
    const err = await failure(c.call(Method.Ping, u32(1), 50));
    expect(err.code).toBe(Code.Unavailable);
  });

  test("connect() rejects UNAVAILABLE when no server is reachable within the deadline", async () => {
    const port = freePort();
    const err = await failure(
      FeatureStoreClient.connect({
        servers: [`127.0.0.1:${port}`],
        deadlineMs: 100,
        reconnect: { initialMs: 10 },
      }),
    );
    expect(err.code).toBe(Code.Unavailable);
  });

  test("connect() resolves once one server is up, even if another is down", async () => {
    const s = server();
    const c = await FeatureStoreClient.connect({ servers: [s.address, `127.0.0.1:${freePort()}`] });
    cleanups.push(() => c.close());
    // Calls go to the live connection only.
    for (let i = 0; i < 10; i++) await c.ping();
    expect(s.frames).toBe(10);
  });

  test("requests are spread round-robin over the connections of two servers", async () => {
    const a = server();
    const b = server();
    const { c } = await client([a, b], { connectionsPerServer: 2 });
    await Promise.all(Array.from({ length: 20 }, () => c.ping()));
    for (let i = 0; i < 20; i++) await c.ping();
    expect(a.frames).toBe(20);
    expect(b.frames).toBe(20);
    expect(a.accepted).toBe(2);
    expect(b.accepted).toBe(2);
  });

  test("answers split over many chunks, coalesced in one chunk, or larger than the input buffer all arrive", async () => {
    const big = new Uint8Array(3 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 255;
    let n = 0;
    const s = server((f, srv) => {
      n++;
      const bytes = frameBytes(f.id, f.method, 0, f.method === Method.Ping ? f.body : big);
      if (n % 3 === 0) {
        // Drip it: a few bytes, then a few more, then the rest, each in its own tick.
        const cuts = [0, 5, 14, bytes.length];
        cuts.slice(1).forEach((end, i) => {
          setTimeout(() => f.socket.write(bytes.subarray(cuts[i]!, end)), i * 3);
        });
      } else if (n % 3 === 1) {
        srv.held.push(f);
      } else {
        // Two answers in one write.
        const prev = srv.held.pop()!;
        const prevBytes = frameBytes(prev.id, prev.method, 0, prev.body);
        const both = new Uint8Array(prevBytes.length + bytes.length);
        both.set(prevBytes);
        both.set(bytes, prevBytes.length);
        f.socket.write(both);
      }
    });
    const { c } = await client([s]);
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([1, 2, 3].map((i) => c.call(Method.Ping, u32(round * 10 + i))));
      results.forEach((b, i) => {
        expect(Array.from(b)).toEqual(Array.from(u32(round * 10 + i + 1)));
      });
    }
    // The third frame of a round is dripped: the big answer arrives in pieces, over many chunks.
    const [x, y, got] = await Promise.all([
      c.call(Method.Ping, u32(1)),
      c.call(Method.Ping, u32(2)),
      c.call(Method.GetFeatures, new Uint8Array(0)),
    ]);
    expect(Array.from(x)).toEqual(Array.from(u32(1)));
    expect(Array.from(y)).toEqual(Array.from(u32(2)));
    expect(got.length).toBe(big.length);
    expect(Buffer.compare(got, big)).toBe(0);
  });

  test("requests larger than one socket write go out in full, resent on drain", async () => {
    const s = server((f, srv) => srv.answer(f, 0, u32(f.body.length)));
    const { c, t } = await client([s]);
    const body = new Uint8Array(1024 * 1024).fill(7);
    const n = 48;
    const answers = await Promise.all(Array.from({ length: n }, () => c.call(Method.Ping, body)));
    for (const a of answers) expect(readU32(a, 0)).toBe(body.length);
    expect(s.bodyBytes).toBe(n * body.length);
    // 48 MiB in one tick is far more than a socket buffer takes at once.
    expect(t.stats().partialWrites).toBeGreaterThan(0);
  });

  describe("a server that breaks the protocol gets its connection closed; its calls fail INTERNAL", () => {
    const cases: [string, Script][] = [
      ["unknown request id", (f) => f.socket.write(frameBytes(f.id ^ 0x5a5a0000, f.method, 0, f.body))],
      ["non-zero flags", (f) => f.socket.write(frameBytes(f.id, f.method, 0, f.body, 1))],
      ["wrong method", (f) => f.socket.write(frameBytes(f.id, Method.BatchGet, 0, f.body))],
      [
        "length over maxFrameBytes",
        (f) => {
          const h = new Uint8Array(HEADER_BYTES);
          writeHeader(h, 0, 1 << 20, f.id, f.method, 0);
          f.socket.write(h);
        },
      ],
    ];
    for (const [name, script] of cases) {
      test(name, async () => {
        const s = server(script);
        const { c, t } = await client([s], { maxFrameBytes: 64 * 1024, reconnect: { initialMs: 10 } });
        const err = await failure(c.call(Method.Ping, u32(1)));
        expect(err.code).toBe(Code.Internal);
        expect(err.message).toContain("protocol violation");
        // The client reconnects and works with a well-behaved server.
        s.script = echo;
        await until(() => t.stats().connects === 2 && t.stats().open === 1, "the reconnect");
        await c.ping();
      });
    }
  });

  test("close() fails pending calls CANCELED, is idempotent, and later calls fail CANCELED", async () => {
    const s = server(hold);
    const { c } = await client([s]);
    const pending = c.call(Method.Ping, u32(1));
    await until(() => s.held.length === 1, "the request");
    const closed = c.close();
    expect(c.close()).toBe(closed);
    expect((await failure(pending)).code).toBe(Code.Canceled);
    await closed;
    expect((await failure(c.ping())).code).toBe(Code.Canceled);
    await until(() => s.sockets.size === 0, "the server to see the close");
  });

  test("options are validated with messages naming the option", () => {
    expect(() => new TcpTransport({ servers: [] })).toThrow(/servers/);
    expect(() => new TcpTransport({ servers: ["nohost"] })).toThrow(/host:port/);
    expect(() => new TcpTransport({ servers: ["h:99999"] })).toThrow(/port/);
    expect(() => new TcpTransport({ servers: ["h:1"], maxInFlight: 0 })).toThrow(/maxInFlight/);
    expect(() => new TcpTransport({ servers: ["h:1"], connectionsPerServer: 1.5 })).toThrow(
      /connectionsPerServer/,
    );
    expect(() => new TcpTransport({ servers: ["h:1"], deadlineMs: -1 })).toThrow(/deadlineMs/);
    expect(() => new TcpTransport({ servers: ["h:1"], reconnect: { initialMs: 100, maxMs: 10 } })).toThrow(
      /reconnect.maxMs/,
    );
  });

  test("after close() nothing keeps the process alive", async () => {
    const script = join(tmpdir(), `fs-client-exit-${process.pid}.ts`);
    const entry = join(import.meta.dir, "../../src/client/index.ts");
    await Bun.write(
      script,
      `
import { FeatureStoreClient } from ${JSON.stringify(entry)};
// A minimal server: answers every 12-byte Ping frame with its own header (status 0, empty body).
const srv = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { binaryType: "uint8array", data(s, d) { s.write(d); } } });
const live = await FeatureStoreClient.connect({ servers: ["127.0.0.1:" + srv.port] });
const down = await FeatureStoreClient.connect({ servers: ["127.0.0.1:" + srv.port], reconnect: { initialMs: 10, maxMs: 20 } });
await live.ping();
await down.ping();
const inFlight = live.ping({ deadlineMs: 60_000 }).catch(() => "failed");
srv.stop(true);
await Bun.sleep(50); // "down" is now reconnecting in the background
await live.close();
await inFlight;
await down.close();
console.log("closed");
`,
    );
    const proc = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    const killer = setTimeout(() => proc.kill(), 20_000);
    const code = await proc.exited;
    clearTimeout(killer);
    const out = await new Response(proc.stdout).text();
    const errText = await new Response(proc.stderr).text();
    expect(errText).toBe("");
    expect(out.trim()).toBe("closed");
    expect(code).toBe(0);
  });
});
