/**
 * HTTP-level fuzz property: short sequences of Connect binary, Connect JSON, Connect GET and
 * gRPC-web (binary, text, +json) requests with random and mutated bodies, against a real
 * server. Never HTTP 500, never Connect code "internal", never grpc-status 13; an OK answer
 * decodes as its method's response (protobuf-es `fromBinary` or `fromJson`); a normal request
 * afterwards is served. Sequences mix encodings so that a value written in binary is read
 * back as JSON.
 */
import { create, fromBinary, fromJson, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import fc from "fast-check";
import { METHOD_NAMES, Method } from "../../src/codec/frame.ts";
import {
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { startTestHttpServer } from "../http/fixture.ts";
import { arbJsonBody, arbStep, RESPONSE_SCHEMAS } from "./gen.ts";
import { FUZZ_LIMITS, ServiceHarness, Violation } from "./oracle.ts";
import type { FuzzProperty } from "./runner.ts";
import { hex } from "./wire.ts";

/** Largest request body the fuzzed server takes. */
const MAX_BODY_BYTES = 16 * 1024;

type Kind = "proto" | "json" | "get-proto" | "get-json" | "grpc-web" | "grpc-web-text" | "grpc-web-json";

/** One HTTP request of a case. */
export interface HttpStep {
  kind: Kind;
  /** Method number 1-5. */
  method: number;
  /** The message: bytes for binary kinds, text for JSON kinds. */
  message: Uint8Array | string;
  /** gRPC-web prefix: flags byte and a length that may lie (null = the message's). */
  flags: number;
  length: number | null;
  /** gRPC-web-text: how the base64 is spoiled (0 = not; 1 = a stray character; 2 = split in padded chunks). */
  spoil: number;
  /** Read the same request as binary too and compare protobuf-es's readings of both answers. */
  crossCheck?: boolean;
}

const toHttpMethod = (m: number) => (m >= 1 && m <= 5 ? m : Method.GetFeatures);

const arbPrefix = fc.record({
  flags: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(255) }),
  length: fc.oneof(
    { weight: 12, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.oneof(fc.nat(64), fc.constantFrom(MAX_BODY_BYTES + 1, 2 ** 31, 2 ** 32 - 1)) },
  ),
  spoil: fc.oneof(
    { weight: 8, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) },
  ),
});

/** GET serves only the side-effect-free methods; the others go by POST. */
const getOr = (kind: Kind, method: number, post: Kind): Kind =>
  kind.startsWith("get") && method !== Method.GetFeatures && method !== Method.BatchGet ? post : kind;

const binaryStep = fc
  .tuple(
    fc.constantFrom<Kind>("proto", "proto", "grpc-web", "grpc-web-text", "get-proto"),
    arbStep,
    arbPrefix,
  )
  .map(([kind, s, p]): HttpStep => {
    const method = toHttpMethod(s.method);
    return { kind: getOr(kind, method, "proto"), method, message: s.body, ...p };
  });

const jsonStep = fc
  .tuple(fc.constantFrom<Kind>("json", "json", "grpc-web-json", "get-json"), arbJsonBody(), arbPrefix)
  .map(
    ([kind, b, p]): HttpStep => ({
      kind: getOr(kind, b.method, "json"),
      method: b.method,
      message: b.text,
      ...p,
    }),
  );

/** Reads of the seeded and fuzzed ids, as JSON: a value stored through binary must be writable as JSON. */
const jsonRead = fc.constantFrom("u1", "u2", "big", "u3", " ").map(
  (id): HttpStep => ({
    kind: "json",
    method: Method.GetFeatures,
    message: JSON.stringify({ entityId: id }),
    flags: 0,
    length: null,
    spoil: 0,
    crossCheck: true,
  }),
);

const describeStep = (s: HttpStep) =>
  `{${s.kind} ${METHOD_NAMES[s.method]}${s.flags ? ` flags=${s.flags}` : ""}${s.length !== null ? ` length=${s.length}` : ""}${s.spoil ? ` spoil=${s.spoil}` : ""} ${typeof s.message === "string" ? JSON.stringify(s.message) : `"${hex(s.message)}"`}}`;

export const arbHttpCase: fc.Arbitrary<HttpStep[]> = fc
  .array(
    fc.oneof(
      { weight: 5, arbitrary: binaryStep },
      { weight: 4, arbitrary: jsonStep },
      { weight: 2, arbitrary: jsonRead },
    ),
    {
      minLength: 1,
      maxLength: 3,
    },
  )
  .map((steps) =>
    Object.assign(steps, { [fc.toStringMethod]: () => `[${steps.map(describeStep).join(", ")}]` }),
  );

const utf8 = new TextEncoder();

/** The 5-byte gRPC-web prefix and the message. */
function grpcWebFrame(s: HttpStep): Uint8Array {
  const msg = typeof s.message === "string" ? utf8.encode(s.message) : s.message;
  const out = new Uint8Array(5 + msg.length);
  out[0] = s.flags;
  new DataView(out.buffer).setUint32(1, s.length ?? msg.length);
  out.set(msg, 5);
  return out;
}

function spoilBase64(b64: string, spoil: number): string {
  if (spoil === 1) return `${b64.slice(0, b64.length >> 1)}*${b64.slice(b64.length >> 1)}`;
  if (spoil === 2) return `${b64}=${b64}`;
  return b64;
}

/** Splits a gRPC-web response body into messages and trailers. */
function grpcWebFrames(body: Uint8Array): { messages: Uint8Array[]; trailers: Map<string, string> } {
  const messages: Uint8Array[] = [];
  const trailers = new Map<string, string>();
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body[at]!;
    const len = new DataView(body.buffer, body.byteOffset).getUint32(at + 1);
    const payload = body.subarray(at + 5, at + 5 + len);
    if (flags & 0x80)
      for (const line of new TextDecoder().decode(payload).split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) trailers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
    else messages.push(payload);
    at += 5 + len;
  }
  return { messages, trailers };
}

let server: ReturnType<typeof startTestHttpServer> | undefined;
let harness: ServiceHarness | undefined;

/** The server under fuzz: the FeatureService of a ServiceHarness, reset to the seeds before each case. */
function startServer(): void {
  if (server) return;
  harness = new ServiceHarness();
  server = startTestHttpServer({ service: harness.service, maxBodyBytes: MAX_BODY_BYTES });
}

/** Stops the server under fuzz (tests call it in afterAll). */
export async function stopHttpServer(): Promise<void> {
  const s = server;
  server = undefined;
  harness = undefined;
  await s?.server.stop(1000);
}

/** Sends one step; checks the answer. */
async function send(s: HttpStep): Promise<void> {
  const name = METHOD_NAMES[s.method]!;
  const url = server!.rpc(name);
  const respDesc = RESPONSE_SCHEMAS[s.method]!;
  let res: Response;
  const grpc = s.kind.startsWith("grpc-web");
  if (s.kind === "get-proto" || s.kind === "get-json") {
    const msg =
      typeof s.message === "string"
        ? `encoding=json&message=${encodeURIComponent(s.message)}`
        : `encoding=proto&base64=1&message=${s.message.toBase64({ alphabet: "base64url", omitPadding: true })}`;
    res = await fetch(`${url}?connect=v1&${msg}`);
  } else if (grpc) {
    const frame = grpcWebFrame(s);
    const text = s.kind === "grpc-web-text";
    res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": text
          ? "application/grpc-web-text"
          : s.kind === "grpc-web-json"
            ? "application/grpc-web+json"
            : "application/grpc-web+proto",
        "x-grpc-web": "1",
      },
      body: text ? spoilBase64(frame.toBase64(), s.spoil) : frame,
    });
  } else {
    res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": s.kind === "json" ? "application/json" : "application/proto",
        "connect-protocol-version": "1",
      },
      body: s.message,
    });
  }
  const body = await res.bytes();
  const where = `${describeStep(s)} answered HTTP ${res.status}`;
  if (res.status === 500) throw new Violation(`${where}: ${new TextDecoder().decode(body)}`);
  if (grpc) {
    const headerStatus = res.headers.get("grpc-status");
    if (headerStatus === "13")
      throw new Violation(`${where}, grpc-status 13: ${res.headers.get("grpc-message")}`);
    const bytes =
      s.kind === "grpc-web-text"
        ? Uint8Array.fromBase64(new TextDecoder().decode(body).replace(/\s+/g, ""))
        : body;
    const { messages, trailers } = grpcWebFrames(bytes);
    const status = trailers.get("grpc-status") ?? headerStatus;
    if (status === "13")
      throw new Violation(`${where}, trailer grpc-status 13: ${trailers.get("grpc-message")}`);
    if (status === "0") {
      if (messages.length !== 1)
        throw new Violation(`${where}: grpc-status 0 with ${messages.length} messages`);
      decodeAnswer(respDesc, messages[0]!, s.kind === "grpc-web-json", where);
    }
    return;
  }
  if (res.status === 200) {
    decodeAnswer(respDesc, body, s.kind === "json" || s.kind === "get-json", where);
    if (s.crossCheck) await crossCheck(s, body, where);
    return;
  }
  const text = new TextDecoder().decode(body);
  let code: unknown;
  try {
    code = (JSON.parse(text) as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  if (code === "internal") throw new Violation(`${where}: code internal: ${text}`);
}

function decodeAnswer(
  desc: (typeof RESPONSE_SCHEMAS)[number] & object,
  body: Uint8Array,
  json: boolean,
  where: string,
): void {
  if (!json && body.length > FUZZ_LIMITS.maxResponseBytes!)
    throw new Violation(`${where}: answer of ${body.length} bytes is over maxResponseBytes`);
  try {
    if (json) fromJson(desc, JSON.parse(new TextDecoder().decode(body)) as JsonValue);
    else fromBinary(desc, body);
  } catch (err) {
    const shown = json ? new TextDecoder().decode(body) : hex(body);
    throw new Violation(
      `${where}: the answer does not decode as ${desc.typeName}: ${(err as Error).message}; ${shown.slice(0, 400)}`,
    );
  }
}

/** Canonical JSON text with sorted keys, to compare two readings of one message. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/** The JSON answer to a GetFeatures says what the binary answer to the same request says. */
async function crossCheck(s: HttpStep, jsonBody: Uint8Array, where: string): Promise<void> {
  const req = fromJson(GetFeaturesRequestSchema, JSON.parse(s.message as string) as JsonValue);
  const res = await fetch(server!.rpc("GetFeatures"), {
    method: "POST",
    headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
    body: toBinary(GetFeaturesRequestSchema, req),
  });
  if (res.status !== 200) return; // refused in binary (an answer too large): nothing to compare
  const bin = fromBinary(GetFeaturesResponseSchema, await res.bytes());
  const json = fromJson(
    GetFeaturesResponseSchema,
    JSON.parse(new TextDecoder().decode(jsonBody)) as JsonValue,
  );
  const a = canonical(toJson(GetFeaturesResponseSchema, json));
  const b = canonical(toJson(GetFeaturesResponseSchema, bin));
  if (a !== b) throw new Violation(`${where}: the JSON answer ${a} differs from the binary one ${b}`);
}

/** A normal SetFeatures and GetFeatures, binary, are served. */
async function expectServing(): Promise<void> {
  const post = (method: string, body: Uint8Array) =>
    fetch(server!.rpc(method), {
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body,
    });
  const set = create(SetFeaturesRequestSchema, {
    entityId: "health",
    features: { ok: { kind: { case: "intValue", value: 7n } } },
  });
  const w = await post("SetFeatures", toBinary(SetFeaturesRequestSchema, set));
  if (w.status !== 200)
    throw new Violation(`a normal SetFeatures answered HTTP ${w.status}: ${await w.text()}`);
  const r = await post(
    "GetFeatures",
    toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "health" })),
  );
  if (r.status !== 200)
    throw new Violation(`a normal GetFeatures answered HTTP ${r.status}: ${await r.text()}`);
  const got = fromBinary(GetFeaturesResponseSchema, await r.bytes());
  const v = got.features.ok?.kind;
  if (v?.case !== "intValue" || v.value !== 7n)
    throw new Violation("a normal GetFeatures does not read back its write");
}

export async function checkHttpCase(steps: HttpStep[]): Promise<void> {
  startServer();
  harness!.reset();
  for (const s of steps) await send(s);
  await expectServing();
}

export const httpProperties: FuzzProperty<HttpStep[]>[] = [
  {
    name: "http: random and mutated Connect, JSON and gRPC-web bodies never get 500, internal or grpc-status 13",
    arbitrary: arbHttpCase,
    check: checkHttpCase,
    async: true,
    testRuns: 300,
    weight: 1,
    setup: startServer,
  },
];
