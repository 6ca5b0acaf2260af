/**
 * TCP-level fuzz property: random and mutated frames (any header field, lying lengths, any
 * method, the bodies of test/fuzz/gen.ts) on one connection of a real server, delivered in
 * random pieces. Every answer frame must carry a known status other than INTERNAL, an OK
 * answer must decode as its method's response, an error's body must be UTF-8, and after each
 * batch a fresh connection must be served correctly (Ping, SetFeatures, GetFeatures).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { HEADER_BYTES, METHOD_NAMES, Method } from "../../src/codec/frame.ts";
import { Code } from "../../src/codec/status.ts";
import { startTestTcpServer } from "../e2e/fixture.ts";
import { type Frame, RawPeer } from "../e2e/raw.ts";
import {
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { arbStep, RESPONSE_SCHEMAS, type Step } from "./gen.ts";
import { FUZZ_LIMITS, ServiceHarness, Violation } from "./oracle.ts";
import type { FuzzProperty } from "./runner.ts";
import { hex } from "./wire.ts";

/** Largest frame body the fuzzed server takes (a frame past it is refused and its connection closed). */
const MAX_FRAME_BYTES = 64 * 1024;
/** Request id of the Ping sent after each batch; fuzzed ids stay below 2^31. */
const SENTINEL_ID = 0xfffffff0;
/** How long a connection may stay silent before the batch is taken as answered (a lying length leaves the server waiting). */
const QUIET_MS = 40;

/** One frame: a request, and what the header says about it. */
export interface FrameSpec {
  step: Step;
  requestId: number;
  /** Method byte; null = the step's own. */
  method: number | null;
  status: number;
  flags: number;
  /** Length field; null = the body's length. */
  length: number | null;
}

export interface Batch {
  frames: FrameSpec[];
  /** Where the byte stream is cut into separate writes (modulo its length). */
  cuts: number[];
}

const arbFrame: fc.Arbitrary<FrameSpec> = fc.record({
  step: arbStep,
  requestId: fc.nat(2 ** 31 - 1),
  method: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(255) }),
  status: fc.oneof(
    { weight: 19, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) },
  ),
  flags: fc.oneof(
    { weight: 19, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xffff }) },
  ),
  length: fc.oneof(
    { weight: 30, arbitrary: fc.constant(null) },
    {
      weight: 1,
      arbitrary: fc.oneof(
        fc.nat(64),
        fc.constantFrom(MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, 2 ** 31, 2 ** 32 - 1),
      ),
    },
  ),
});

export const arbBatch: fc.Arbitrary<Batch> = fc
  .record({
    frames: fc.array(arbFrame, { minLength: 1, maxLength: 6 }),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
  })
  .map((b) =>
    Object.assign(b, {
      [fc.toStringMethod]: () =>
        `{frames: [${b.frames
          .map(
            (f) =>
              `{id: ${f.requestId}, method: ${METHOD_NAMES[f.method ?? f.step.method] ?? f.method ?? f.step.method}, status: ${f.status}, flags: ${f.flags}, length: ${f.length ?? "body"}, body: "${hex(f.step.body)}"}`,
          )
          .join(", ")}], cuts: [${b.cuts.join(", ")}]}`,
    }),
  );

/** The 12-byte header with every field as given (src/codec/frame.ts writes flags as 0 only). */
export function encodeFrame(f: FrameSpec): Uint8Array {
  const body = f.step.body;
  const out = new Uint8Array(HEADER_BYTES + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, f.length ?? body.length, true);
  v.setUint32(4, f.requestId, true);
  out[8] = f.method ?? f.step.method;
  out[9] = f.status;
  v.setUint16(10, f.flags, true);
  out.set(body, HEADER_BYTES);
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Next frame, or null when the server closed the connection or stayed quiet for `ms`. */
async function nextWithin(peer: RawPeer, ms: number): Promise<Frame | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quiet = new Promise<null>((r) => {
    timer = setTimeout(() => r(null), ms);
  });
  try {
    return await Promise.race([peer.next(), quiet]);
  } finally {
    clearTimeout(timer);
  }
}

/** Checks one answer frame. */
function checkAnswer(f: Frame, batch: Batch): void {
  const where = `answer to request ${f.requestId} (method ${f.method})`;
  if (f.status === Code.Internal) throw new Violation(`${where} is INTERNAL: ${safeText(f.body)}`);
  if (f.status > Code.Unauthenticated) throw new Violation(`${where} has unknown status ${f.status}`);
  if (f.status !== Code.OK) {
    try {
      utf8.decode(f.body);
    } catch {
      throw new Violation(`${where}: error message is not UTF-8: ${hex(f.body)}`);
    }
    return;
  }
  if (f.body.length > FUZZ_LIMITS.maxResponseBytes!)
    throw new Violation(`${where}: answer of ${f.body.length} bytes is over maxResponseBytes`);
  const desc = RESPONSE_SCHEMAS[f.method];
  if (f.method === Method.Ping || f.method === Method.Authenticate) {
    if (f.body.length !== 0) throw new Violation(`${where}: answered ${f.body.length} bytes`);
    return;
  }
  if (desc === undefined) throw new Violation(`${where}: OK for method ${f.method}, which does not exist`);
  try {
    fromBinary(desc, f.body);
  } catch (err) {
    throw new Violation(
      `${where} does not decode as ${desc.typeName}: ${(err as Error).message}; ${hex(f.body)}`,
    );
  }
  // A lying length desynchronises the stream: body bytes then read as headers, with any id.
  const inSync = batch.frames.every((x) => x.length === null);
  if (inSync && f.requestId !== SENTINEL_ID && !batch.frames.some((x) => x.requestId === f.requestId))
    throw new Violation(`${where}: no request had that id`);
}

function safeText(b: Uint8Array): string {
  try {
    return utf8.decode(b);
  } catch {
    return hex(b);
  }
}

let server: ReturnType<typeof startTestTcpServer> | undefined;
let harness: ServiceHarness | undefined;
let healthCount = 0;

/**
 * The server under fuzz: the FeatureService of a ServiceHarness (the small limits of
 * test/fuzz/oracle.ts), so that every batch starts from the seeded records and a failure
 * replays on its own.
 */
async function startServer(): Promise<void> {
  if (server) return;
  harness = new ServiceHarness();
  server = startTestTcpServer({ service: harness.service, maxFrameBytes: MAX_FRAME_BYTES });
}

/** Stops the server under fuzz (tests call it in afterAll). */
export async function stopTcpServer(): Promise<void> {
  const s = server;
  server = undefined;
  harness = undefined;
  await s?.server.drain(1000);
}

function frameOf(id: number, method: number, body: Uint8Array): Uint8Array {
  return encodeFrame({ step: { method, body }, requestId: id, method, status: 0, flags: 0, length: null });
}

/** A fresh connection is served: Ping, a write, and a read that returns it. */
async function expectServing(port: number): Promise<void> {
  const id = `health:${healthCount++}`;
  const peer = await RawPeer.connect(port);
  try {
    const set = create(SetFeaturesRequestSchema, {
      entityId: id,
      features: { ok: { kind: { case: "intValue", value: 7n } } },
    });
    await peer.send(frameOf(1, Method.Ping, new Uint8Array(0)));
    await peer.send(frameOf(2, Method.SetFeatures, toBinary(SetFeaturesRequestSchema, set)));
    await peer.send(
      frameOf(
        3,
        Method.GetFeatures,
        toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: id })),
      ),
    );
    const answers = [await peer.next(), await peer.next(), await peer.next()];
    for (const [i, a] of answers.entries())
      if (a === null || a.status !== Code.OK || a.requestId !== i + 1)
        throw new Violation(
          `a fresh connection is not served: answer ${i + 1} is ${a ? `status ${a.status}` : "a close"}`,
        );
    const got = fromBinary(GetFeaturesResponseSchema, answers[2]!.body);
    const v = got.features.ok?.kind;
    if (!got.found || v?.case !== "intValue" || v.value !== 7n)
      throw new Violation(
        `a fresh connection reads back ${JSON.stringify(got.features.ok?.kind, (_k, x) => (typeof x === "bigint" ? `${x}` : x))}`,
      );
  } finally {
    peer.end();
  }
}

/** Sends a batch in pieces, then a Ping; checks every answer until the Ping's, a close or silence. */
export async function checkBatch(batch: Batch): Promise<void> {
  if (!server) await startServer();
  harness!.reset();
  const port = server!.port;
  const stream = Uint8Array.from([...batch.frames.flatMap((f) => [...encodeFrame(f)])]);
  const cuts = [...new Set(batch.cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const peer = await RawPeer.connect(port);
  try {
    // The server may close the connection part way (a refused header): the rest is not sent.
    const send = (b: Uint8Array) => (peer.closed ? Promise.resolve() : peer.send(b).catch(() => {}));
    let from = 0;
    for (const c of [...cuts, stream.length]) {
      if (c > from) {
        await send(stream.subarray(from, c));
        await Bun.sleep(0);
      }
      from = Math.max(from, c);
    }
    await send(frameOf(SENTINEL_ID, Method.Ping, new Uint8Array(0)));
    for (;;) {
      const f = await nextWithin(peer, QUIET_MS);
      if (f === null) break;
      checkAnswer(f, batch);
      if (f.requestId === SENTINEL_ID && f.method === Method.Ping && f.status === Code.OK) break;
    }
  } finally {
    peer.end();
  }
  await expectServing(port);
}

export const tcpProperties: FuzzProperty<Batch>[] = [
  {
    name: "tcp: random and mutated frames never get INTERNAL, and a fresh connection is served after each batch",
    arbitrary: arbBatch,
    check: checkBatch,
    async: true,
    testRuns: 150,
    weight: 1,
    setup: startServer,
  },
];
