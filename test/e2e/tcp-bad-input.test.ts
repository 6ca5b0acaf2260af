import { afterAll, describe, expect, test } from "bun:test";
import * as net from "node:net";
import { Method } from "../../src/codec/frame.ts";
import { encodeSetFeaturesRequest } from "../../src/codec/messages.ts";
import { Code } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { Reject } from "../../src/metrics/hot.ts";
import { startTestTcpServer } from "./fixture.ts";
import { frame, RawPeer, text } from "./raw.ts";

const { server, port, metrics } = startTestTcpServer();
afterAll(() => server.drain(1000));

function setBody(entityId: string, features: Record<string, number | string | Uint8Array>): Uint8Array {
  const w = new ProtoWriter(256);
  encodeSetFeaturesRequest(w, { entityId, features });
  return w.finish();
}
const getBody = (id: string) => new Uint8Array([0x0a, id.length, ...new TextEncoder().encode(id)]);

/** A fresh connection can still write and read: the server serves everyone else. */
async function expectServing(): Promise<void> {
  const peer = await RawPeer.connect(port);
  await peer.send(frame(1, Method.SetFeatures, setBody("health", { ok: 1 })));
  await peer.send(frame(2, Method.GetFeatures, getBody("health")));
  const a = await peer.next();
  const b = await peer.next();
  expect(a?.status).toBe(Code.OK);
  expect(b?.status).toBe(Code.OK);
  expect(b?.requestId).toBe(2);
  peer.end();
}

/** A tiny seeded PRNG so that the garbage is the same on every run. */
function garbage(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe("TCP server under bad input", () => {
  test("random garbage bytes get an error frame and that connection closed", async () => {
    for (const seed of [1, 2, 3, 0x1234567]) {
      const peer = await RawPeer.connect(port);
      await peer.send(garbage(4096, seed));
      const f = await peer.next();
      expect(f).not.toBeNull();
      expect([Code.ResourceExhausted, Code.InvalidArgument] as number[]).toContain(f!.status);
      await peer.whenClosed;
    }
    await expectServing();
  });

  test("a truncated frame followed by close costs nothing", async () => {
    const peer = await RawPeer.connect(port);
    const f = frame(7, Method.GetFeatures, getBody("someone"));
    await peer.send(f.subarray(0, f.length - 3));
    peer.end();
    await peer.whenClosed;
    await expectServing();
  });

  test("a length prefix of 2^31 is refused with RESOURCE_EXHAUSTED before any body is read", async () => {
    const before = metrics.rejected[Reject.FrameTooLarge]!;
    const peer = await RawPeer.connect(port);
    const header = frame(42, Method.GetFeatures);
    new DataView(header.buffer).setUint32(0, 2 ** 31, true);
    await peer.send(header);
    const f = await peer.next();
    expect(f?.requestId).toBe(42);
    expect(f?.status).toBe(Code.ResourceExhausted);
    expect(text(f!.body)).toContain("MAX_FRAME_BYTES");
    await peer.whenClosed;
    expect(metrics.rejected[Reject.FrameTooLarge]).toBe(before + 1);
    await expectServing();
  });

  test("non-zero status or flags in a request header is INVALID_ARGUMENT and closes", async () => {
    const peer = await RawPeer.connect(port);
    await peer.send(frame(5, Method.Ping, [], 3));
    const f = await peer.next();
    expect(f?.status).toBe(Code.InvalidArgument);
    await peer.whenClosed;
  });

  test.each([
    ["an unknown method", 77, new Uint8Array(0), Code.Unimplemented, "unknown method"],
    [
      "an invalid protobuf body",
      Method.GetFeatures,
      new Uint8Array([0x0a, 0x7f, 1]),
      Code.InvalidArgument,
      "past the end",
    ],
    ["an empty entity id", Method.GetFeatures, new Uint8Array(0), Code.InvalidArgument, "entity_id"],
    // SetFeatures{entity_id:"u", features:{"a": {int_value sent as length-delimited}}}
    [
      "a value of the wrong shape",
      Method.SetFeatures,
      new Uint8Array([0x0a, 1, 0x75, 0x12, 8, 0x0a, 1, 0x61, 0x12, 3, 0x0a, 1, 0x00]),
      Code.InvalidArgument,
      'feature "a"',
    ],
  ])(
    "%s gets a clear error and the same connection keeps serving",
    async (_, method, body, code, message) => {
      const peer = await RawPeer.connect(port);
      await peer.send(frame(9, method, body));
      await peer.send(frame(10, Method.Ping));
      const err = await peer.next();
      expect(err?.requestId).toBe(9);
      expect(err?.status).toBe(code);
      expect(text(err!.body)).toContain(message);
      const pong = await peer.next();
      expect(pong?.requestId).toBe(10);
      expect(pong?.status).toBe(Code.OK);
      peer.end();
    },
  );

  test("a client that sends 100,000 requests without reading is cut off and server memory stays bounded", async () => {
    // Answers of ~4 KB each: 100,000 unread would be ~400 MB if the server buffered them all.
    const seed = await RawPeer.connect(port);
    await seed.send(frame(1, Method.SetFeatures, setBody("fat", { blob: new Uint8Array(4000) })));
    expect((await seed.next())?.status).toBe(Code.OK);
    seed.end();

    const before = metrics.rejected[Reject.OutputOverflow]!;
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss;
    const one = frame(0, Method.GetFeatures, getBody("fat"));
    const all = new Uint8Array(one.length * 100_000);
    for (let i = 0; i < 100_000; i++) all.set(one, i * one.length);
    const sock = net.connect({ host: "127.0.0.1", port });
    sock.pause(); // never read
    const closed = new Promise<void>((resolve) => sock.on("close", () => resolve()));
    sock.on("error", () => {});
    sock.write(all);
    await closed;
    const rssAfter = process.memoryUsage().rss;
    expect(metrics.rejected[Reject.OutputOverflow]).toBe(before + 1);
    expect(rssAfter - rssBefore).toBeLessThan(150 * 1024 * 1024);
    await expectServing();
  });

  test("1,000 connections opened at once are all served", async () => {
    const peers = await Promise.all(Array.from({ length: 1000 }, () => RawPeer.connect(port)));
    await Promise.all(peers.map((p, i) => p.send(frame(i, Method.Ping))));
    const answers = await Promise.all(peers.map((p) => p.next()));
    answers.forEach((a, i) => {
      expect(a?.status).toBe(Code.OK);
      expect(a?.requestId).toBe(i);
    });
    expect(server.connectionCount).toBeGreaterThanOrEqual(1000);
    for (const p of peers) p.end();
    await Promise.all(peers.map((p) => p.whenClosed));
    await expectServing();
  });
});
