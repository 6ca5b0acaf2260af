/** The Connect protocol on the HTTP port, spoken with fetch: binary, JSON, GET, and every kind of bad input. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetFeaturesRequestSchema,
  GetFeaturesResponseSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { postJson, startTestHttpServer, T0_JSON, type TestHttpServer } from "./fixture.ts";
import { rawRequest } from "./raw.ts";

let s: TestHttpServer;
beforeAll(async () => {
  s = startTestHttpServer({ maxBodyBytes: 4096 });
  const res = await postJson(s.rpc("SetFeatures"), {
    entityId: "user:1",
    features: {
      age: { intValue: "42" },
      name: { stringValue: "ann" },
      emb: { floatList: { values: [0.5, 1.5] } },
    },
  });
  expect(res.status).toBe(200);
});
afterAll(() => s.server.stop());

/** After every bad request: the server still answers a good one. */
async function expectStillServing() {
  const res = await postJson(s.rpc("GetFeatures"), { entityId: "user:1", featureNames: ["age"] });
  expect(res.status).toBe(200);
  expect(res.json).toEqual({
    entityId: "user:1",
    features: { age: { intValue: "42", eventTimeMs: T0_JSON } },
    found: true,
  });
}

describe("Connect unary with binary bodies", () => {
  test("SetFeatures then GetFeatures round-trip application/proto bodies byte for byte", async () => {
    const set = create(SetFeaturesRequestSchema, {
      entityId: "bin:1",
      features: { score: { kind: { case: "doubleValue", value: 0.75 } } },
    });
    const w = await fetch(s.rpc("SetFeatures"), {
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body: toBinary(SetFeaturesRequestSchema, set),
    });
    expect(w.status).toBe(200);
    expect(w.headers.get("content-type")).toBe("application/proto");
    expect((await w.bytes()).length).toBe(0);

    const r = await fetch(s.rpc("GetFeatures"), {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "bin:1" })),
    });
    expect(r.status).toBe(200);
    const msg = fromBinary(GetFeaturesResponseSchema, await r.bytes());
    expect(msg.found).toBe(true);
    expect(msg.features.score?.kind).toEqual({ case: "doubleValue", value: 0.75 });
  });
});

describe("Connect unary with JSON bodies", () => {
  test("answers in camelCase with int64 as strings and omits defaults", async () => {
    const res = await postJson(s.rpc("GetFeatures"), { entity_id: "user:1" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.json).toEqual({
      entityId: "user:1",
      features: {
        age: { intValue: "42", eventTimeMs: T0_JSON },
        name: { stringValue: "ann", eventTimeMs: T0_JSON },
        emb: { floatList: { values: [0.5, 1.5] }, eventTimeMs: T0_JSON },
      },
      found: true,
    });
  });

  test("accepts a charset parameter and reports a miss as found omitted, not an error", async () => {
    const res = await postJson(
      s.rpc("BatchGet"),
      { entityIds: ["user:1", "nobody"], featureNames: ["name"] },
      {
        "content-type": "application/json; charset=utf-8",
      },
    );
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      results: [
        { entityId: "user:1", features: { name: { stringValue: "ann", eventTimeMs: T0_JSON } }, found: true },
        { entityId: "nobody", missing: ["name"] },
      ],
      hits: 1,
      misses: 1,
    });
  });

  test("BatchSet, DeleteFeatures and the empty response message", async () => {
    const batch = await postJson(s.rpc("BatchSet"), {
      items: [
        { entityId: "a", features: { x: { boolValue: true } } },
        { entityId: "b", features: { x: { bytesValue: "AAE=" } }, ttlMs: 60000 },
      ],
    });
    expect(batch.json).toEqual({ written: 2 });
    expect((await postJson(s.rpc("DeleteFeatures"), { entityId: "a" })).json).toEqual({ deleted: true });
    expect((await postJson(s.rpc("DeleteFeatures"), { entityId: "a" })).json).toEqual({});
    expect((await postJson(s.rpc("GetFeatures"), { entityId: "b" })).json).toEqual({
      entityId: "b",
      features: { x: { bytesValue: "AAE=", eventTimeMs: T0_JSON } },
      found: true,
    });
  });
});

describe("Connect GET for side-effect-free methods", () => {
  test("reads with encoding=json and a URL-encoded message", async () => {
    const message = encodeURIComponent(JSON.stringify({ entityId: "user:1", featureNames: ["age"] }));
    const res = await fetch(`${s.rpc("GetFeatures")}?connect=v1&encoding=json&message=${message}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({
      entityId: "user:1",
      features: { age: { intValue: "42", eventTimeMs: T0_JSON } },
      found: true,
    });
  });

  test("reads with encoding=proto and a base64url message", async () => {
    const req = toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId: "user:1" }));
    const message = req.toBase64({ alphabet: "base64url", omitPadding: true });
    const res = await fetch(`${s.rpc("GetFeatures")}?connect=v1&encoding=proto&base64=1&message=${message}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/proto");
    expect(fromBinary(GetFeaturesResponseSchema, await res.bytes()).found).toBe(true);
  });

  test("BatchGet is readable by GET too", async () => {
    const message = encodeURIComponent(JSON.stringify({ entityIds: ["user:1"], featureNames: ["name"] }));
    const res = await fetch(`${s.rpc("BatchGet")}?encoding=json&message=${message}`);
    expect(await res.json()).toEqual({
      results: [
        { entityId: "user:1", features: { name: { stringValue: "ann", eventTimeMs: T0_JSON } }, found: true },
      ],
      hits: 1,
    });
  });
});

describe("Connect errors and bad input: the right answer, and the server keeps serving", () => {
  const cases: {
    name: string;
    send: () => Promise<Response>;
    status: number;
    code: string;
    message?: string;
    header?: [string, string];
  }[] = [
    {
      name: "an invalid request (empty entity id) is invalid_argument, HTTP 400",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "" })),
      status: 400,
      code: "invalid_argument",
      message: "entity_id must not be empty",
    },
    {
      name: "invalid JSON is invalid_argument",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit('{"entityId": ')),
      status: 400,
      code: "invalid_argument",
      message: "not valid JSON",
    },
    {
      name: "an unknown JSON field is invalid_argument",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "x", colour: "red" })),
      status: 400,
      code: "invalid_argument",
      message: 'unknown field "colour"',
    },
    {
      name: "a JSON value of the wrong type is invalid_argument naming the field",
      send: () => fetch(s.rpc("SetFeatures"), jsonInit({ entityId: "x", ttlMs: "soon" })),
      status: 400,
      code: "invalid_argument",
      message: '"ttlMs" must be an integer',
    },
    {
      name: "a malformed protobuf body is invalid_argument",
      send: () =>
        fetch(s.rpc("GetFeatures"), {
          method: "POST",
          headers: { "content-type": "application/proto" },
          body: new Uint8Array([0x0a, 0x7f, 0x01]),
        }),
      status: 400,
      code: "invalid_argument",
    },
    {
      name: "a wrong content type is HTTP 415",
      send: () =>
        fetch(s.rpc("GetFeatures"), { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }),
      status: 415,
      code: "invalid_argument",
      header: [
        "accept-post",
        "application/proto, application/json, application/grpc-web+proto, application/grpc-web-text+proto",
      ],
    },
    {
      name: "the streaming content type is HTTP 415 (every method is unary)",
      send: () =>
        fetch(s.rpc("GetFeatures"), {
          method: "POST",
          headers: { "content-type": "application/connect+proto" },
          body: "",
        }),
      status: 415,
      code: "invalid_argument",
    },
    {
      name: "a body over the limit (by Content-Length) is resource_exhausted, HTTP 429",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "x".repeat(5000) })),
      status: 429,
      code: "resource_exhausted",
      message: "exceeds the limit of 4096 bytes",
    },
    {
      name: "a body over the limit without Content-Length (chunked) is resource_exhausted",
      send: () =>
        fetch(s.rpc("GetFeatures"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: new ReadableStream({
            start(c) {
              for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(" ".repeat(1000)));
              c.close();
            },
          }),
        }),
      status: 429,
      code: "resource_exhausted",
    },
    {
      name: "an unknown method is unimplemented, HTTP 404",
      send: () => fetch(s.rpc("Frobnicate"), jsonInit({})),
      status: 404,
      code: "unimplemented",
      message: "unknown method Frobnicate",
    },
    {
      name: "an unknown path is HTTP 404",
      send: () => fetch(`${s.base}/nowhere`, jsonInit({})),
      status: 404,
      code: "unimplemented",
    },
    {
      name: "GET on a method with side effects is HTTP 405 with Allow: POST",
      send: () => fetch(`${s.rpc("SetFeatures")}?encoding=json&message=%7B%7D`),
      status: 405,
      code: "unimplemented",
      header: ["allow", "POST"],
    },
    {
      name: "PUT is HTTP 405",
      send: () => fetch(s.rpc("GetFeatures"), { ...jsonInit({}), method: "PUT" }),
      status: 405,
      code: "unimplemented",
      header: ["allow", "GET, POST"],
    },
    {
      name: "GET without a known encoding is HTTP 415",
      send: () => fetch(`${s.rpc("GetFeatures")}?encoding=xml&message=x`),
      status: 415,
      code: "invalid_argument",
    },
    {
      name: "a compressed body is unimplemented, HTTP 501",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "x" }, { "content-encoding": "gzip" })),
      status: 501,
      code: "unimplemented",
      message: 'unsupported content-encoding "gzip"',
    },
    {
      name: "GET with compression=gzip is unimplemented",
      send: () => fetch(`${s.rpc("GetFeatures")}?encoding=json&compression=gzip&message=%7B%7D`),
      status: 501,
      code: "unimplemented",
    },
    {
      name: "a malformed connect-timeout-ms is invalid_argument",
      send: () => fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "x" }, { "connect-timeout-ms": "soon" })),
      status: 400,
      code: "invalid_argument",
      message: "connect-timeout-ms",
    },
    {
      name: "an expired deadline (connect-timeout-ms: 0) is deadline_exceeded, HTTP 504",
      send: () => fetch(s.rpc("SetFeatures"), jsonInit({ entityId: "late" }, { "connect-timeout-ms": "0" })),
      status: 504,
      code: "deadline_exceeded",
    },
    {
      name: "an unknown protocol version is invalid_argument",
      send: () =>
        fetch(s.rpc("GetFeatures"), jsonInit({ entityId: "x" }, { "connect-protocol-version": "2" })),
      status: 400,
      code: "invalid_argument",
    },
    {
      name: "a body just under the limit is accepted",
      send: () =>
        fetch(
          s.rpc("SetFeatures"),
          jsonInit({ entityId: "big", features: { v: { stringValue: "x".repeat(3000) } } }),
        ),
      status: 200,
      code: "",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const res = await c.send();
      expect(res.status).toBe(c.status);
      if (c.status !== 200) {
        expect(res.headers.get("content-type")).toBe("application/json");
        const body = (await res.json()) as { code: string; message: string };
        expect(body.code).toBe(c.code);
        if (c.message) expect(body.message).toContain(c.message);
      } else await res.arrayBuffer();
      if (c.header) expect(res.headers.get(c.header[0])).toBe(c.header[1]);
      await expectStillServing();
    });
  }

  test("an expired deadline on a write does not apply it", async () => {
    const res = await postJson(s.rpc("GetFeatures"), { entityId: "late" });
    expect(res.json).toEqual({ entityId: "late" });
  });

  test("a Content-Length over the limit is refused before the body is sent", async () => {
    // Only the start of the body comes: the server must answer from the headers alone.
    const text = await rawRequest(
      s.server.port,
      `POST /featurestore.v1.FeatureStoreService/GetFeatures HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 1000000000`,
      "\x0a\x01x",
    );
    expect(text).toStartWith("HTTP/1.1 429");
    expect(text.toLowerCase()).toContain("connection: close");
    expect(text).toContain('"code":"resource_exhausted"');
    await expectStillServing();
  });
});

function jsonInit(body: unknown, headers: Record<string, string> = {}): RequestInit {
  return {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
}

describe("large answers", () => {
  test("a BatchGet answer near MAX_RESPONSE_BYTES is served, and the next small call still works", async () => {
    const big = startTestHttpServer();
    try {
      await postJson(big.rpc("SetFeatures"), {
        entityId: "wide",
        features: { v: { stringValue: "x".repeat(3000) } },
      });
      // 330 x 3 KB: just under the default MAX_RESPONSE_BYTES (1 MiB).
      const ids = Array.from({ length: 330 }, () => "wide");
      const res = await fetch(big.rpc("BatchGet"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ entityIds: ids }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { found: boolean }[]; hits: number };
      expect(body.hits).toBe(330);
      expect(body.results.every((r) => r.found)).toBe(true);
      const small = await postJson(big.rpc("GetFeatures"), { entityId: "nobody" });
      expect(small.json).toEqual({ entityId: "nobody" });
    } finally {
      await big.server.stop();
    }
  });
});
