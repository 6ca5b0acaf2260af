/**
 * CORS on the HTTP port (CORS_ORIGINS): none by default, a list of origins, or `*`; the allowed
 * request headers are a fixed list, never an echo of what a preflight asks for.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ALLOWED_HEADERS } from "../../src/transport/http/cors.ts";
import { startTestHttpServer, type TestHttpServer } from "./fixture.ts";

const ALLOWED = "https://dashboard.example";
const EVIL = "https://evil.example";

/** A browser's preflight for a Connect POST that also asks for a header outside the list. */
function preflight(s: TestHttpServer, origin: string): Promise<Response> {
  return fetch(s.rpc("SetFeatures"), {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,connect-protocol-version,authorization,x-evil-header",
    },
  });
}

/** A browser's cross-origin Connect POST; `body` picks a good or a bad request. */
async function post(s: TestHttpServer, origin: string | null, body: unknown): Promise<Response> {
  const res = await fetch(s.rpc("GetFeatures"), {
    method: "POST",
    headers: { ...(origin ? { origin } : {}), "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res;
}

/** Every access-control-* header of an answer. */
function corsHeaders(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k.startsWith("access-control-")) out[k] = v;
  });
  return out;
}

/** The allowed request headers are exactly the fixed list. */
function expectFixedAllowList(res: Response): void {
  const allowed = res.headers
    .get("access-control-allow-headers")!
    .split(/,\s*/)
    .map((h) => h.toLowerCase());
  expect(allowed.sort()).toEqual(ALLOWED_HEADERS.map((h) => h.toLowerCase()).sort());
  expect(allowed).toContain("authorization");
  expect(allowed).not.toContain("x-evil-header");
}

describe("CORS_ORIGINS empty (the default): no cross-origin access", () => {
  let s: TestHttpServer;
  beforeAll(() => {
    s = startTestHttpServer();
  });
  afterAll(() => s.server.stop());

  test("a preflight gets 204 with no access-control headers, so a browser blocks the call", async () => {
    const res = await preflight(s, ALLOWED);
    expect(res.status).toBe(204);
    expect(corsHeaders(res)).toEqual({});
    expect(res.headers.get("allow")).toBe("GET, POST, OPTIONS");
  });

  test("an answer to a cross-origin request carries no access-control headers", async () => {
    for (const body of [{ entityId: "x" }, { entityId: "" }])
      expect(corsHeaders(await post(s, EVIL, body))).toEqual({});
  });
});

describe("CORS_ORIGINS listing one origin", () => {
  let s: TestHttpServer;
  beforeAll(() => {
    s = startTestHttpServer({ corsOrigins: [ALLOWED, "http://localhost:5173"] });
  });
  afterAll(() => s.server.stop());

  test("a preflight from the allowed origin names that origin and the fixed header list, with vary: origin", async () => {
    const res = await preflight(s, ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(res.headers.get("vary")).toBe("Origin");
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(Number(res.headers.get("access-control-max-age"))).toBeGreaterThan(0);
    expectFixedAllowList(res);
  });

  test("a preflight from another origin gets no access-control headers", async () => {
    for (const origin of [EVIL, "null", `${ALLOWED}.evil.example`, "http://dashboard.example"]) {
      const res = await preflight(s, origin);
      expect(res.status).toBe(204);
      expect(corsHeaders(res)).toEqual({});
      expect(res.headers.get("vary")).toBe("Origin");
    }
  });

  test("answers to the allowed origin, errors included, name it and expose the gRPC status headers", async () => {
    for (const body of [{ entityId: "x" }, { entityId: "" }]) {
      const res = await post(s, ALLOWED, body);
      expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      expect(res.headers.get("vary")).toBe("Origin");
      const exposed = res.headers.get("access-control-expose-headers")!.toLowerCase();
      expect(exposed).toContain("grpc-status");
      expect(exposed).toContain("grpc-message");
    }
  });

  test("answers to another origin, or to a request with none, carry only vary: origin", async () => {
    for (const origin of [EVIL, null]) {
      const res = await post(s, origin, { entityId: "x" });
      expect(res.status).toBe(200);
      expect(corsHeaders(res)).toEqual({});
      expect(res.headers.get("vary")).toBe("Origin");
    }
  });

  test("a gRPC-web answer to the allowed origin exposes grpc-status too", async () => {
    const res = await fetch(s.rpc("GetFeatures"), {
      method: "POST",
      headers: { origin: ALLOWED, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    await res.arrayBuffer();
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(res.headers.get("access-control-expose-headers")!.toLowerCase()).toContain("grpc-status");
  });
});

describe("CORS_ORIGINS=*", () => {
  let s: TestHttpServer;
  beforeAll(() => {
    s = startTestHttpServer({ corsOrigins: ["*"] });
  });
  afterAll(() => s.server.stop());

  test("a preflight from any origin is allowed with *, the fixed header list and no echo", async () => {
    for (const origin of [ALLOWED, EVIL]) {
      const res = await preflight(s, origin);
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe("*");
      expect(res.headers.get("vary")).toBeNull();
      expectFixedAllowList(res);
    }
  });

  test("answers to a cross-origin request say * and expose the gRPC status headers", async () => {
    const res = await post(s, EVIL, { entityId: "x" });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-expose-headers")!.toLowerCase()).toContain("grpc-status");
  });

  test("an OPTIONS without an origin is no preflight: only the allowed methods", async () => {
    const res = await fetch(s.rpc("GetFeatures"), { method: "OPTIONS" });
    expect(res.status).toBe(204);
    expect(corsHeaders(res)).toEqual({});
  });
});
