/** gRPC-web on the HTTP port, spoken with fetch: binary, text (base64), +json, and bad input. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { startTestHttpServer, T0_JSON, type TestHttpServer } from "./fixture.ts";

let s: TestHttpServer;
beforeAll(() => {
  s = startTestHttpServer({ maxBodyBytes: 4096 });
});
afterAll(() => s.server.stop());

/** A 5-byte-prefixed message: flags, u32 big-endian length. */
function frame(message: Uint8Array, flags = 0, declaredLength = message.length): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, declaredLength);
  out.set(message, 5);
  return out;
}

interface Parsed {
  messages: Uint8Array[];
  trailers: Record<string, string>;
}

/** Splits a gRPC-web response body into data messages and the trailers frame. */
function parseFrames(body: Uint8Array): Parsed {
  const messages: Uint8Array[] = [];
  const trailers: Record<string, string> = {};
  let at = 0;
  while (at < body.length) {
    const flags = body[at]!;
    const len = new DataView(body.buffer, body.byteOffset).getUint32(at + 1);
    const payload = body.subarray(at + 5, at + 5 + len);
    if (flags & 0x80) {
      for (const line of new TextDecoder().decode(payload).split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) trailers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
    } else messages.push(payload);
    at += 5 + len;
  }
  return { messages, trailers };
}

async function call(
  method: string,
  body: Uint8Array | string,
  contentType: string,
  headers: Record<string, string> = {},
) {
  const res = await fetch(s.rpc(method), {
    method: "POST",
    headers: { "content-type": contentType, "x-grpc-web": "1", ...headers },
    body,
  });
  const raw = await res.bytes();
  const bytes = contentType.startsWith("application/grpc-web-text")
    ? Uint8Array.fromBase64(new TextDecoder().decode(raw))
    : raw;
  return { res, ...parseFrames(bytes) };
}

const getUser = () =>
  frame(toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "gw:1" })));

async function expectStillServing() {
  const { res, messages, trailers } = await call("GetFeatures", getUser(), "application/grpc-web+proto");
  expect(res.status).toBe(200);
  expect(trailers["grpc-status"]).toBe("0");
  expect(fromBinary(GetFeaturesResponseSchema, messages[0]!).found).toBe(true);
}

describe("gRPC-web", () => {
  test("binary: a data frame with the response and a trailers frame with grpc-status 0", async () => {
    const set = create(SetFeaturesRequestSchema, {
      entityId: "gw:1",
      features: { n: { kind: { case: "intValue", value: 7n } } },
    });
    const w = await call(
      "SetFeatures",
      frame(toBinary(SetFeaturesRequestSchema, set)),
      "application/grpc-web",
    );
    expect(w.res.status).toBe(200);
    expect(w.res.headers.get("content-type")).toBe("application/grpc-web+proto");
    expect(w.messages).toEqual([new Uint8Array(0)]);
    expect(w.trailers).toEqual({ "grpc-status": "0" });

    const r = await call("GetFeatures", getUser(), "application/grpc-web+proto");
    const msg = fromBinary(GetFeaturesResponseSchema, r.messages[0]!);
    expect(msg.features.n?.kind).toEqual({ case: "intValue", value: 7n });
    expect(r.trailers["grpc-status"]).toBe("0");
  });

  test("text: the same frames in base64 both ways", async () => {
    const r = await call("GetFeatures", getUser().toBase64(), "application/grpc-web-text");
    expect(r.res.headers.get("content-type")).toBe("application/grpc-web-text+proto");
    expect(fromBinary(GetFeaturesResponseSchema, r.messages[0]!).found).toBe(true);
    expect(r.trailers["grpc-status"]).toBe("0");
  });

  test("text: a body sent as several padded base64 chunks is accepted", async () => {
    const f = getUser();
    const body = f.subarray(0, 4).toBase64() + f.subarray(4).toBase64();
    const r = await call("GetFeatures", body, "application/grpc-web-text+proto");
    expect(r.trailers["grpc-status"]).toBe("0");
  });

  test("+json: JSON messages inside the frames", async () => {
    const r = await call(
      "GetFeatures",
      frame(new TextEncoder().encode('{"entity_id":"gw:1"}')),
      "application/grpc-web+json",
    );
    expect(r.res.headers.get("content-type")).toBe("application/grpc-web+json");
    expect(JSON.parse(new TextDecoder().decode(r.messages[0]!))).toEqual({
      entityId: "gw:1",
      features: { n: { intValue: "7", eventTimeMs: T0_JSON } },
      found: true,
    });
  });
});

describe("gRPC-web errors and bad input: HTTP 200, status in the trailers, and the server keeps serving", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const cases: {
    name: string;
    body: () => Uint8Array | string;
    ct?: string;
    headers?: Record<string, string>;
    code: number;
    message?: string;
  }[] = [
    {
      name: "an invalid request is INVALID_ARGUMENT (3)",
      body: () =>
        frame(toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "" }))),
      code: 3,
      message: "entity_id must not be empty",
    },
    {
      name: "an empty body is INVALID_ARGUMENT",
      body: () => new Uint8Array(0),
      code: 3,
      message: "no message",
    },
    {
      name: "a truncated message is INVALID_ARGUMENT",
      body: () => frame(new Uint8Array([0x0a, 0x01]), 0, 10),
      code: 3,
      message: "truncated",
    },
    {
      name: "two messages in a unary call is INVALID_ARGUMENT",
      body: () => new Uint8Array([...getUser(), ...getUser()]),
      code: 3,
      message: "exactly one message",
    },
    {
      name: "a message flagged compressed is INVALID_ARGUMENT",
      body: () => frame(new Uint8Array([0x0a, 0x01, 0x61]), 1),
      code: 3,
      message: "compressed",
    },
    {
      name: "grpc-encoding other than identity is UNIMPLEMENTED (12)",
      body: getUser,
      headers: { "grpc-encoding": "gzip" },
      code: 12,
    },
    {
      name: "a message over the limit is RESOURCE_EXHAUSTED (8)",
      body: () => frame(new Uint8Array(5000)),
      code: 8,
      message: "exceeds the limit",
    },
    {
      name: "a prefix declaring more than the limit is RESOURCE_EXHAUSTED",
      body: () => frame(new Uint8Array(10), 0, 1 << 30),
      code: 8,
    },
    {
      name: "invalid base64 in grpc-web-text is INVALID_ARGUMENT",
      body: () => "!!!not base64!!!",
      ct: "application/grpc-web-text",
      code: 3,
      message: "base64",
    },
    {
      name: "invalid JSON in +json is INVALID_ARGUMENT",
      body: () => frame(enc("{nope")),
      ct: "application/grpc-web+json",
      code: 3,
      message: "not valid JSON",
    },
    {
      name: "a malformed grpc-timeout is INVALID_ARGUMENT",
      body: getUser,
      headers: { "grpc-timeout": "soon" },
      code: 3,
    },
    {
      name: "an expired deadline (grpc-timeout: 0m) is DEADLINE_EXCEEDED (4)",
      body: getUser,
      headers: { "grpc-timeout": "0m" },
      code: 4,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const ct = c.ct ?? "application/grpc-web+proto";
      const r = await call("GetFeatures", c.body(), ct, c.headers);
      expect(r.res.status).toBe(200);
      // Trailers-only: the status is in the headers and in the trailers frame.
      expect(r.res.headers.get("grpc-status")).toBe(String(c.code));
      expect(r.messages).toEqual([]);
      expect(r.trailers["grpc-status"]).toBe(String(c.code));
      if (c.message) expect(decodeURIComponent(r.trailers["grpc-message"] ?? "")).toContain(c.message);
      await expectStillServing();
    });
  }

  test("grpc-message is percent-encoded", async () => {
    const r = await call(
      "GetFeatures",
      frame(enc('{"entityId":"x","bogus%":1}')),
      "application/grpc-web+json",
    );
    expect(r.trailers["grpc-message"]).toContain("bogus%25");
  });

  test("an unknown method is UNIMPLEMENTED with HTTP 404", async () => {
    const r = await call("Frobnicate", getUser(), "application/grpc-web+proto");
    expect(r.res.status).toBe(404);
    expect(r.res.headers.get("grpc-status")).toBe("12");
    await expectStillServing();
  });
});
