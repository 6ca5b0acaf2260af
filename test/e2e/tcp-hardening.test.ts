/**
 * The TCP server against clients that hold its resources: half-sent frames, idle connections,
 * memory held across many connections, clients that do not read, huge answers, and floods of
 * bad input that must not flood the log.
 */
import { describe, expect, test } from "bun:test";
import * as net from "node:net";
import { HEADER_BYTES, Method, readU32, writeHeader } from "../../src/codec/frame.ts";
import { encodeBatchGetRequest, encodeSetFeaturesRequest } from "../../src/codec/messages.ts";
import { Code } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { createLogger, LIMITED_LOG_LINES } from "../../src/log/index.ts";
import { Reject } from "../../src/metrics/hot.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import { type TcpServerOptions, unsafeExposeInternals } from "../../src/transport/tcp/server.ts";
import { startTestTcpServer } from "./fixture.ts";
import { frame, RawPeer, text } from "./raw.ts";

const MiB = 1024 * 1024;

/** Resolves to what `p` resolves to, or fails naming `what` after `ms`: a bound on waiting, not a speed check. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `cond()` holds, checking every few ms, failing naming `what` after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(5);
  }
}

/** A server with the hardening limits under test, and a view of its accounting. */
function start(overrides: Partial<TcpServerOptions> = {}, serviceOptions = {}) {
  const s = startTestTcpServer({ idleTimeoutMs: 0, frameTimeoutMs: 60_000, ...overrides }, serviceOptions);
  const internals = unsafeExposeInternals(s.server);
  const inputBytes = () => internals.connections().reduce((sum, c) => sum + c.inputBytes, 0);
  const heldBytes = () => internals.connections().reduce((sum, c) => sum + c.heldBytes, 0);
  return { ...s, internals, inputBytes, heldBytes };
}

/** A log sink that keeps every line, parsed. */
function capturingLogger(level: "info" | "debug" = "info") {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, (line) => lines.push(JSON.parse(line)));
  return { logger, lines };
}

/** The first `sent` bytes of a frame whose header announces a body of `declared` bytes. */
function partialFrame(
  declared: number,
  sent: number,
  requestId = 1,
  method: number = Method.SetFeatures,
): Uint8Array {
  const f = new Uint8Array(HEADER_BYTES + sent);
  writeHeader(f, 0, declared, requestId, method, 0);
  return f;
}

function setBody(entityId: string, features: Record<string, number | Uint8Array>): Uint8Array {
  const w = new ProtoWriter(256);
  encodeSetFeaturesRequest(w, { entityId, features });
  return w.finish();
}
const getBody = (id: string) => new Uint8Array([0x0a, id.length, ...new TextEncoder().encode(id)]);

/** `count` copies of one frame, back to back. */
function repeated(one: Uint8Array, count: number): Uint8Array {
  const all = new Uint8Array(one.length * count);
  for (let i = 0; i < count; i++) all.set(one, i * one.length);
  return all;
}

interface AnswerHead {
  requestId: number;
  status: number;
  length: number;
}

/**
 * Sends `bytes` on a new connection and reads `count` answers, keeping only their headers (so
 * that 100,000 answers or one of 15 MB cost the test nothing). Fails if the server closes first.
 */
async function exchange(port: number, bytes: Uint8Array, count: number): Promise<AnswerHead[]> {
  const answers: AnswerHead[] = [];
  const header = new Uint8Array(HEADER_BYTES);
  let headerLen = 0;
  let bodyLeft = 0;
  let current: AnswerHead | null = null;
  let done!: () => void;
  let failed!: (e: Error) => void;
  const finished = new Promise<void>((resolve, reject) => {
    done = resolve;
    failed = reject;
  });
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, data) {
        let at = 0;
        while (at < data.length) {
          if (bodyLeft > 0) {
            const n = Math.min(bodyLeft, data.length - at);
            at += n;
            bodyLeft -= n;
            if (bodyLeft === 0) answers.push(current!);
            continue;
          }
          const n = Math.min(HEADER_BYTES - headerLen, data.length - at);
          header.set(data.subarray(at, at + n), headerLen);
          headerLen += n;
          at += n;
          if (headerLen < HEADER_BYTES) break;
          headerLen = 0;
          current = { requestId: readU32(header, 4), status: header[9]!, length: readU32(header, 0) };
          bodyLeft = current.length;
          if (bodyLeft === 0) answers.push(current);
        }
        if (answers.length >= count) done();
      },
      close() {
        failed(new Error(`closed after ${answers.length} of ${count} answers`));
      },
      error() {},
    },
  });
  try {
    let off = 0;
    while (off < bytes.length) {
      const n = socket.write(bytes.subarray(off));
      if (n > 0) off += n;
      else await Bun.sleep(1);
    }
    await within(finished, 20_000, `${count} answers`);
    return answers;
  } finally {
    socket.end();
  }
}

/** A fresh connection can still write and read: the server serves everyone else. */
async function expectServing(port: number): Promise<void> {
  const peer = await RawPeer.connect(port);
  await peer.send(frame(1, Method.SetFeatures, setBody("health", { ok: 1 })));
  await peer.send(frame(2, Method.GetFeatures, getBody("health")));
  expect((await peer.next())?.status).toBe(Code.OK);
  const b = await peer.next();
  expect(b?.status).toBe(Code.OK);
  expect(b?.requestId).toBe(2);
  peer.end();
}

describe("TCP server: time limits", () => {
  test("a connection that sends half a frame is answered DEADLINE_EXCEEDED and closed after frameTimeoutMs", async () => {
    const frameTimeoutMs = 200;
    const { server, port, metrics, internals } = start({ frameTimeoutMs });
    try {
      const peer = await RawPeer.connect(port);
      const started = performance.now();
      await peer.send(partialFrame(100, 40, 77, Method.GetFeatures));
      const answer = await within(peer.next(), 5000, "an answer to the half-sent frame");
      await within(peer.whenClosed, 5000, "the connection closed");
      // Never before the limit (a lower bound, with a little room for timer rounding).
      expect(performance.now() - started).toBeGreaterThanOrEqual(frameTimeoutMs - 10);
      expect(answer?.requestId).toBe(77);
      expect(answer?.status).toBe(Code.DeadlineExceeded);
      expect(text(answer!.body)).toContain("TCP_FRAME_TIMEOUT_MS");
      expect(metrics.rejected[Reject.FrameTimeout]).toBe(1);
      expect(internals.clientMemoryBytes).toBe(0);
      await expectServing(port);
    } finally {
      await server.drain(1000);
    }
  });

  test("a frame trickled in a few bytes at a time is cut at frameTimeoutMs although the connection is never idle", async () => {
    const { server, port, metrics } = start({ frameTimeoutMs: 200, idleTimeoutMs: 60_000 });
    try {
      const peer = await RawPeer.connect(port);
      const f = partialFrame(1000, 1000);
      let sent = 0;
      while (!peer.closed && sent < f.length) {
        await peer.send(f.subarray(sent, sent + 4)).catch(() => {});
        sent += 4;
        await Bun.sleep(20);
      }
      await within(peer.whenClosed, 5000, "the connection closed");
      expect(sent).toBeLessThan(f.length);
      expect(metrics.rejected[Reject.FrameTimeout]).toBe(1);
      expect(metrics.rejected[Reject.IdleTimeout]).toBe(0);
    } finally {
      await server.drain(1000);
    }
  });

  test("an idle connection is closed after idleTimeoutMs while an active one is not", async () => {
    const idleTimeoutMs = 200;
    const { server, port, metrics } = start({ idleTimeoutMs, frameTimeoutMs: 10_000 });
    try {
      const idle = await RawPeer.connect(port);
      const active = await RawPeer.connect(port);
      // Taken before the ping is sent, so before the server hears the idle connection last.
      const lastHeard = performance.now();
      await idle.send(frame(1, Method.Ping));
      expect((await idle.next())?.status).toBe(Code.OK);
      let id = 0;
      while (!idle.closed && performance.now() - lastHeard < 5000) {
        await active.send(frame(++id, Method.Ping));
        expect((await active.next())?.requestId).toBe(id);
        await Bun.sleep(30);
      }
      await within(idle.whenClosed, 1000, "the idle connection closed");
      expect(performance.now() - lastHeard).toBeGreaterThanOrEqual(idleTimeoutMs - 10);
      // Well past the limit, the active connection is still served.
      expect(id).toBeGreaterThan(2);
      expect(active.closed).toBe(false);
      await active.send(frame(9999, Method.Ping));
      expect((await active.next())?.requestId).toBe(9999);
      expect(metrics.rejected[Reject.IdleTimeout]).toBe(1);
      active.end();
    } finally {
      await server.drain(1000);
    }
  });
});

describe("TCP server: client memory", () => {
  test("past maxClientMemoryBytes the connection holding the most is cut, the others keep their frames and a fresh client is served", async () => {
    const budget = 7 * MiB;
    const { server, port, metrics, internals, inputBytes, heldBytes } = start({
      maxFrameBytes: 4 * MiB,
      maxClientMemoryBytes: budget,
    });
    const accounted = () => {
      expect(internals.clientMemoryBytes).toBe(heldBytes());
      expect(internals.clientMemoryBytes).toBeLessThanOrEqual(budget);
    };
    try {
      // Two small holders (0.5 MiB each), then a big one (3.5 MiB of a 4 MiB frame): 4.5-6 MiB held.
      const small = [await RawPeer.connect(port), await RawPeer.connect(port)];
      let expected = 0;
      for (const p of small) {
        await p.send(partialFrame(4 * MiB, MiB / 2));
        expected += HEADER_BYTES + MiB / 2;
        await until(() => inputBytes() === expected, 5000, "small partial frames received");
      }
      const big = await RawPeer.connect(port);
      await big.send(partialFrame(4 * MiB, 3.5 * MiB));
      expected += HEADER_BYTES + 3.5 * MiB;
      await until(() => inputBytes() === expected, 5000, "big partial frame received");
      accounted();
      expect(metrics.rejected[Reject.ClientMemory]).toBe(0);

      // A second big one (3 MiB) passes the budget: the first big one, holding the most, goes.
      const big2 = await RawPeer.connect(port);
      await big2.send(partialFrame(3 * MiB + 100, 3 * MiB));
      await within(big.whenClosed, 5000, "the greediest connection cut");
      expected += HEADER_BYTES + 3 * MiB - (HEADER_BYTES + 3.5 * MiB);
      await until(() => inputBytes() === expected, 5000, "second big partial frame received");
      accounted();
      expect(metrics.rejected[Reject.ClientMemory]).toBe(1);
      expect(small.map((p) => p.closed)).toEqual([false, false]);
      expect(big2.closed).toBe(false);

      await expectServing(port);
      for (const p of [...small, big2]) p.end();
      await until(() => internals.clientMemoryBytes === 0, 5000, "all memory given back");
    } finally {
      await server.drain(1000);
    }
  });

  test("a client that does not read its answers is cut at maxClientMemoryBytes before its own output limit", async () => {
    const budget = 8 * MiB;
    const { server, port, metrics, internals } = start({
      maxPendingOutputBytes: 64 * MiB,
      maxClientMemoryBytes: budget,
    });
    try {
      const seed = await RawPeer.connect(port);
      await seed.send(frame(1, Method.SetFeatures, setBody("fat", { blob: new Uint8Array(4000) })));
      expect((await seed.next())?.status).toBe(Code.OK);
      seed.end();

      // ~400 MB of answers if the server kept them all.
      const all = repeated(frame(0, Method.GetFeatures, getBody("fat")), 100_000);
      const sock = net.connect({ host: "127.0.0.1", port });
      sock.pause(); // never read
      let closed = false;
      sock.on("close", () => {
        closed = true;
      });
      sock.on("error", () => {});
      sock.write(all);
      let most = 0;
      await until(
        () => {
          most = Math.max(most, internals.clientMemoryBytes);
          return closed;
        },
        10_000,
        "the non-reading client cut",
      );
      expect(most).toBeLessThanOrEqual(budget);
      expect(metrics.rejected[Reject.ClientMemory]).toBe(1);
      expect(metrics.rejected[Reject.OutputOverflow]).toBe(0);
      await expectServing(port);
      await until(() => internals.clientMemoryBytes === 0, 5000, "all memory given back");
    } finally {
      await server.drain(1000);
    }
  });

  test("the server-wide output writer stays within twice the largest answer, whatever the requests", async () => {
    const { server, port, internals } = start(
      { maxPendingOutputBytes: 64 * MiB },
      { maxResponseBytes: 4 * MiB },
    );
    try {
      const bound = 2 * (4 * MiB + 1 * MiB);
      await exchange(port, frame(1, Method.SetFeatures, setBody("fat", { blob: new Uint8Array(15_000) })), 1);
      const batch = (n: number) => {
        const w = new ProtoWriter(1 << 16);
        encodeBatchGetRequest(
          w,
          Array.from({ length: n }, () => "fat"),
        );
        return w.finish();
      };
      // 1,000 x 15 KB would be a 15 MB answer: refused before the writer grows past the limit.
      const [refused] = await exchange(port, frame(2, Method.BatchGet, batch(1000)), 1);
      expect(refused?.status).toBe(Code.ResourceExhausted);
      expect(internals.outputCapacity).toBeLessThanOrEqual(bound);
      // An answer just under the limit is served, and the writer keeps room for the next one.
      const [served] = await exchange(port, frame(3, Method.BatchGet, batch(270)), 1);
      expect(served?.status).toBe(Code.OK);
      expect(served!.length).toBeGreaterThan(3 * MiB);
      expect(internals.outputCapacity).toBeLessThanOrEqual(bound);
    } finally {
      await server.drain(1000);
    }
  });
});

describe("TCP server: fairness between connections", () => {
  test("bytes that wait behind a connection's backlog are copied a bounded number of times (linear, not quadratic)", async () => {
    const { server, port, internals } = start();
    try {
      // 160 frames of 50 KB each (8 MB; Pings, whose body is ignored): a turn answers ~5 of them
      // (BYTES_PER_TURN), so the rest of every data event waits as the backlog while more
      // arrives behind it.
      const burst = repeated(frame(1, Method.Ping, new Uint8Array(50_000)), 160);
      const answers = await exchange(port, burst, 160);
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => Code.OK));
      // The old backlog copied itself whole on every data event: ~30x the bytes here.
      expect(internals.backlogBytesCopied).toBeLessThan(4 * burst.length);
    } finally {
      await server.drain(1000);
    }
  });

  test("a burst of 100,000 pipelined frames on one connection does not keep another waiting until it is all answered", async () => {
    const { server, port } = start();
    try {
      const burst = repeated(frame(1, Method.Ping), 100_000);
      let burstAnswered = 0;
      let atOtherAnswer = -1;
      let burstDone!: () => void;
      const finished = new Promise<void>((r) => {
        burstDone = r;
      });
      const a = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          data(_s, data) {
            burstAnswered += data.length / HEADER_BYTES; // a Ping's answer is a bare header
            if (burstAnswered >= 100_000) burstDone();
          },
        },
      });
      let otherDone!: () => void;
      const other = new Promise<void>((r) => {
        otherDone = r;
      });
      const b = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          data() {
            atOtherAnswer = burstAnswered;
            otherDone();
          },
        },
      });
      a.write(burst);
      b.write(frame(2, Method.Ping));
      await within(Promise.all([finished, other]), 20_000, "every answer");
      // Bun hands a burst over in data events of up to 512 KB (43,000 of these frames): each was
      // answered whole before anyone else. Now a connection gets FRAMES_PER_TURN (256) per turn.
      expect(atOtherAnswer).toBeGreaterThanOrEqual(0);
      expect(atOtherAnswer).toBeLessThan(5_000);
      a.end();
      b.end();
    } finally {
      await server.drain(1000);
    }
  });
});

describe("TCP server: logging under floods of bad input", () => {
  test("100,000 bad pipelined requests write no log line at info level and are all counted as bad_request", async () => {
    const { logger, lines } = capturingLogger("info");
    const { server, port, metrics } = start({ logger });
    try {
      const half = repeated(frame(1, 77), 50_000); // an unknown method
      const bad = repeated(frame(2, Method.GetFeatures, [0x0a, 0x7f, 1]), 50_000); // a body past its end
      const all = new Uint8Array(half.length + bad.length);
      all.set(half);
      all.set(bad, half.length);
      const answers = await exchange(port, all, 100_000);
      expect(answers.filter((a) => a.status === Code.Unimplemented)).toHaveLength(50_000);
      expect(answers.filter((a) => a.status === Code.InvalidArgument)).toHaveLength(50_000);
      expect(lines).toEqual([]);
      expect(metrics.rejected[Reject.BadRequest]).toBe(100_000);
    } finally {
      await server.drain(1000);
    }
  });

  test("a bug hit by every request logs a handful of error lines, not one per request", async () => {
    class BuggyService extends FeatureService {
      override handle(): undefined {
        throw new TypeError("a bug hit by every request");
      }
    }
    const { logger, lines } = capturingLogger("info");
    const service = new BuggyService(new MemoryStore({ maxEntries: 16, maxBytes: 1 << 20, shardCount: 1 }));
    const { server, port } = start({ logger, service });
    try {
      const answers = await exchange(port, repeated(frame(1, Method.Ping), 100_000), 100_000);
      expect(answers.every((a) => a.status === Code.Internal)).toBe(true);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.length).toBeLessThanOrEqual(LIMITED_LOG_LINES + 1);
      expect(lines.every((l) => l.level === "error")).toBe(true);
    } finally {
      await server.drain(1000);
    }
  });

  test("300 connections closed for bad frame headers log a handful of warn lines and are all counted", async () => {
    const { logger, lines } = capturingLogger("info");
    const { server, port, metrics } = start({ logger });
    try {
      for (let i = 0; i < 300; i++) {
        const peer = await RawPeer.connect(port);
        await peer.send(frame(i, Method.Ping, [], 3)); // a status in a request header
        expect((await peer.next())?.status).toBe(Code.InvalidArgument);
        await within(peer.whenClosed, 5000, "the bad connection closed");
      }
      expect(metrics.rejected[Reject.BadHeader]).toBe(300);
      expect(lines.length).toBeLessThanOrEqual(LIMITED_LOG_LINES + 1);
      expect(lines.every((l) => l.stack === undefined && l.err === undefined)).toBe(true);
    } finally {
      await server.drain(1000);
    }
  });

  test("200 connections refused past maxConnections log a handful of warn lines and are all counted", async () => {
    const { logger, lines } = capturingLogger("info");
    const { server, port, metrics } = start({ logger, maxConnections: 1 });
    try {
      const first = await RawPeer.connect(port);
      await first.send(frame(1, Method.Ping));
      expect((await first.next())?.status).toBe(Code.OK);
      for (let i = 0; i < 200; i++) {
        const peer = await RawPeer.connect(port);
        await within(peer.whenClosed, 5000, "the refused connection closed");
      }
      expect(metrics.rejected[Reject.MaxConnections]).toBe(200);
      expect(lines.length).toBeLessThanOrEqual(LIMITED_LOG_LINES + 1);
      first.end();
    } finally {
      await server.drain(1000);
    }
  });
});
