/**
 * Tokens and scopes on the HTTP port (issue 13), per wire: Connect binary, Connect JSON,
 * Connect GET and gRPC-web, spoken with fetch. A refusal is the protocol's own error answer:
 * Connect 401 UNAUTHENTICATED and 403 PERMISSION_DENIED, gRPC-web grpc-status 16 and 7.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMessage, type MessageInitShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Auth } from "../../src/auth/tokens.ts";
import { CODE_NAMES } from "../../src/codec/status.ts";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import { HotMetrics } from "../../src/metrics/hot.ts";
import { createMetricsRegistry } from "../../src/metrics/prometheus.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import { startHttpServer } from "../../src/transport/http/server.ts";
import { makeTokens, removeDir, type TestTokens } from "../auth/certs.ts";
import {
  BatchGetRequestSchema,
  DeleteFeaturesRequestSchema,
  GetFeaturesRequestSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { startTestHttpServer, type TestHttpServer } from "./fixture.ts";
import { rawRequest } from "./raw.ts";

const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

/** The requests of the test, one per method, as protobuf-es messages. */
const REQUESTS = {
  GetFeatures: [GetFeaturesRequestSchema, { entityId: "user:1" }],
  BatchGet: [BatchGetRequestSchema, { entityIds: ["user:1", "user:2"] }],
  SetFeatures: [
    SetFeaturesRequestSchema,
    { entityId: "user:1", features: { age: { kind: { case: "intValue", value: 42n } } } },
  ],
  DeleteFeatures: [DeleteFeaturesRequestSchema, { entityId: "user:2" }],
} as const satisfies Record<string, readonly [DescMessage, unknown]>;
type MethodName = keyof typeof REQUESTS;
const READS: MethodName[] = ["GetFeatures", "BatchGet"];
const WRITES: MethodName[] = ["SetFeatures", "DeleteFeatures"];

function binary(method: MethodName): Uint8Array {
  const [schema, init] = REQUESTS[method];
  return toBinary(
    schema as DescMessage,
    create(schema as DescMessage, init as MessageInitShape<DescMessage>),
  );
}
function json(method: MethodName): string {
  const [schema, init] = REQUESTS[method];
  return toJsonString(
    schema as DescMessage,
    create(schema as DescMessage, init as MessageInitShape<DescMessage>),
  );
}

/** What a call came back with: the gRPC code (0 = OK), the HTTP status and the headers. */
interface Outcome {
  code: number;
  status: number;
  headers: Headers;
}

/** A Connect answer: 200 is OK, else the code named in the JSON error body. */
async function connectOutcome(res: Response): Promise<Outcome> {
  const text = await res.text();
  const code =
    res.status === 200 ? 0 : CODE_NAMES.indexOf(JSON.parse(text).code as (typeof CODE_NAMES)[number]);
  return { code, status: res.status, headers: res.headers };
}

/** A gRPC-web answer: grpc-status from the headers (trailers-only) or from the trailers frame. */
async function grpcWebOutcome(res: Response): Promise<Outcome> {
  const body = await res.bytes();
  let status = res.headers.get("grpc-status");
  for (let at = 0; status === null && at + 5 <= body.length; ) {
    const len = new DataView(body.buffer, body.byteOffset).getUint32(at + 1);
    if (body[at]! & 0x80) {
      const m = /grpc-status:\s*(\d+)/.exec(new TextDecoder().decode(body.subarray(at + 5, at + 5 + len)));
      status = m?.[1] ?? null;
    }
    at += 5 + len;
  }
  return { code: Number(status), status: res.status, headers: res.headers };
}

/** One way to call a method over HTTP; `writes` false for Connect GET (side-effect-free methods only). */
interface Wire {
  name: string;
  writes: boolean;
  call(base: string, method: MethodName, headers: Record<string, string>): Promise<Outcome>;
}

const PATH = "/featurestore.v1.FeatureStoreService";

const WIRES: Wire[] = [
  {
    name: "Connect, binary",
    writes: true,
    call: async (base, method, headers) =>
      connectOutcome(
        await fetch(`${base}${PATH}/${method}`, {
          method: "POST",
          headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...headers },
          body: binary(method),
        }),
      ),
  },
  {
    name: "Connect, JSON",
    writes: true,
    call: async (base, method, headers) =>
      connectOutcome(
        await fetch(`${base}${PATH}/${method}`, {
          method: "POST",
          headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers },
          body: json(method),
        }),
      ),
  },
  {
    name: "Connect, GET",
    writes: false,
    call: async (base, method, headers) => {
      const message = Buffer.from(binary(method)).toString("base64url");
      return connectOutcome(
        await fetch(`${base}${PATH}/${method}?connect=v1&encoding=proto&base64=1&message=${message}`, {
          headers,
        }),
      );
    },
  },
  {
    name: "gRPC-web",
    writes: true,
    call: async (base, method, headers) => {
      const msg = binary(method);
      const body = new Uint8Array(5 + msg.length);
      new DataView(body.buffer).setUint32(1, msg.length);
      body.set(msg, 5);
      return grpcWebOutcome(
        await fetch(`${base}${PATH}/${method}`, {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", ...headers },
          body,
        }),
      );
    },
  },
];

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Asserts a refusal with `code`, as each protocol says it. */
function expectRefused(wire: Wire, o: Outcome, code: number): void {
  expect(o.code).toBe(code);
  if (wire.name.startsWith("Connect")) {
    expect(o.status).toBe(code === UNAUTHENTICATED ? 401 : 403);
    if (code === UNAUTHENTICATED) expect(o.headers.get("www-authenticate")).toBe("Bearer");
  } else {
    expect(o.status).toBe(200);
    expect(o.headers.get("grpc-status")).toBe(String(code));
  }
}

/** A server with authentication on, its tokens, its Auth and a registry that counts failures. */
function startAuthServer(dir: string, extra: Parameters<typeof startTestHttpServer>[0] = {}) {
  const tokens = makeTokens(dir);
  const logLines: string[] = [];
  const auth = new Auth({ tokensFile: tokens.file, logger: createLogger("info", (l) => logLines.push(l)) });
  const metrics = new HotMetrics(true);
  const store = new MemoryStore({ maxEntries: 1000, maxBytes: 1 << 20, shardCount: 1 });
  const registry = createMetricsRegistry({
    hot: metrics,
    cacheStats: () => store.cache.stats(),
    authFailures: auth.failures,
  });
  const s = startTestHttpServer({ auth, metrics, registry, ...extra });
  return { s, auth, tokens, logLines };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fs-http-auth-"));
});
afterAll(() => removeDir(dir));

describe("every RPC checks its bearer token", () => {
  let s: TestHttpServer;
  let auth: Auth;
  let tokens: TestTokens;
  beforeAll(() => {
    ({ s, auth, tokens } = startAuthServer(mkdtempSync(join(dir, "rpc-"))));
  });
  afterAll(async () => {
    await s.server.stop();
    auth.close();
  });

  for (const wire of WIRES)
    describe(wire.name, () => {
      test("without an authorization header the call is UNAUTHENTICATED", async () => {
        for (const m of wire.writes ? [...READS, ...WRITES] : READS)
          expectRefused(wire, await wire.call(s.base, m, {}), UNAUTHENTICATED);
      });

      test("a malformed authorization header is UNAUTHENTICATED", async () => {
        for (const value of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", tokens.read, `Token ${tokens.read}`])
          expectRefused(
            wire,
            await wire.call(s.base, "GetFeatures", { authorization: value }),
            UNAUTHENTICATED,
          );
      });

      test("an unknown token is UNAUTHENTICATED", async () => {
        expectRefused(
          wire,
          await wire.call(s.base, "GetFeatures", bearer(`${tokens.admin}x`)),
          UNAUTHENTICATED,
        );
      });

      test("a read token reads", async () => {
        for (const m of READS) expect((await wire.call(s.base, m, bearer(tokens.read))).code).toBe(0);
      });

      if (wire.writes)
        test("a read token writing is PERMISSION_DENIED", async () => {
          for (const m of WRITES)
            expectRefused(wire, await wire.call(s.base, m, bearer(tokens.read)), PERMISSION_DENIED);
        });
      else
        test("a write over GET is refused before any token matters (GET is for side-effect-free methods)", async () => {
          const o = await wire.call(s.base, "SetFeatures", bearer(tokens.admin));
          expect(o.status).toBe(405);
        });

      test("a write token reads and writes", async () => {
        for (const m of wire.writes ? [...READS, ...WRITES] : READS)
          expect((await wire.call(s.base, m, bearer(tokens.write))).code).toBe(0);
      });

      test("an admin token reads and writes", async () => {
        for (const m of wire.writes ? [...READS, ...WRITES] : READS)
          expect((await wire.call(s.base, m, bearer(tokens.admin))).code).toBe(0);
      });
    });

  test("an unauthenticated POST is answered before its body is read, and its connection closed", async () => {
    // The body is announced but never sent: an answer can only come from a check made before reading it.
    const answer = await rawRequest(
      s.server.port,
      [
        `POST ${PATH}/SetFeatures HTTP/1.1`,
        "Host: 127.0.0.1",
        "Content-Type: application/proto",
        "Content-Length: 60000",
      ].join("\r\n"),
    );
    expect(answer.startsWith("HTTP/1.1 401")).toBe(true);
    expect(answer.toLowerCase()).toContain("connection: close");
    expect(answer.toLowerCase()).toContain("www-authenticate: bearer");
  });

  test("/health and /ready stay open, and /metrics is open without METRICS_AUTH", async () => {
    for (const path of ["/health", "/ready", "/metrics"])
      expect((await fetch(`${s.base}${path}`)).status).toBe(200);
  });
});

describe("revocation", () => {
  test("a token removed from the file stops working without a restart, on every wire; the others keep working", async () => {
    const { s, auth, tokens } = startAuthServer(mkdtempSync(join(dir, "revoke-")));
    try {
      for (const wire of WIRES)
        expect((await wire.call(s.base, "GetFeatures", bearer(tokens.read))).code).toBe(0);
      tokens.revoke("reader");
      // The file is checked every RELOAD_CHECK_MS (250 ms); poll, bounded well above that.
      const until = Date.now() + 5_000;
      let code = 0;
      while (code === 0 && Date.now() < until) {
        code = (await WIRES[1]!.call(s.base, "GetFeatures", bearer(tokens.read))).code;
        if (code === 0) await Bun.sleep(25);
      }
      expect(code).toBe(UNAUTHENTICATED);
      for (const wire of WIRES) {
        expectRefused(wire, await wire.call(s.base, "GetFeatures", bearer(tokens.read)), UNAUTHENTICATED);
        expect((await wire.call(s.base, "GetFeatures", bearer(tokens.write))).code).toBe(0);
      }
    } finally {
      await s.server.stop();
      auth.close();
    }
  });
});

/** The value of `featurestore_auth_failures_total{reason="<reason>"}` in a scrape. */
function failures(text: string, reason: string): number {
  const prefix = `featurestore_auth_failures_total{reason="${reason}"} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? Number.NaN : Number(line.slice(prefix.length));
}

describe("failed attempts are counted and logged", () => {
  test("featurestore_auth_failures_total counts each refusal under its reason", async () => {
    const { s, auth, tokens } = startAuthServer(mkdtempSync(join(dir, "count-")));
    try {
      const scrape = async () => (await fetch(`${s.base}/metrics`)).text();
      const before = await scrape();
      const connect = WIRES[1]!;
      await connect.call(s.base, "GetFeatures", {});
      await connect.call(s.base, "GetFeatures", { authorization: "Basic x" });
      await connect.call(s.base, "GetFeatures", { authorization: "Basic x" });
      await connect.call(s.base, "GetFeatures", bearer("not-a-token"));
      await WIRES[3]!.call(s.base, "GetFeatures", bearer("not-a-token"));
      await WIRES[3]!.call(s.base, "GetFeatures", bearer("still-not-a-token"));
      await connect.call(s.base, "SetFeatures", bearer(tokens.read));
      await connect.call(s.base, "GetFeatures", bearer(tokens.read)); // allowed: counts nothing
      const after = await scrape();
      const delta = (reason: string) => failures(after, reason) - failures(before, reason);
      expect(delta("missing")).toBe(1);
      expect(delta("malformed")).toBe(2);
      expect(delta("unknown")).toBe(3);
      expect(delta("scope")).toBe(1);
    } finally {
      await s.server.stop();
      auth.close();
    }
  });

  test("the failure log names the reason and the transport, never the token", async () => {
    const { s, auth, logLines } = startAuthServer(mkdtempSync(join(dir, "log-")));
    try {
      const secret = "a-secret-that-must-not-be-logged";
      await WIRES[1]!.call(s.base, "GetFeatures", bearer(secret));
      await WIRES[3]!.call(s.base, "GetFeatures", bearer(secret));
      const refused = logLines.filter((l) => l.includes("authentication failed"));
      expect(refused.length).toBeGreaterThanOrEqual(1);
      expect(refused[0]).toContain('"reason":"unknown"');
      expect(refused[0]).toContain('"transport":"connect"');
      for (const l of logLines) expect(l).not.toContain(secret);
    } finally {
      await s.server.stop();
      auth.close();
    }
  });
});

describe("/metrics with METRICS_AUTH", () => {
  let s: TestHttpServer;
  let auth: Auth;
  let tokens: TestTokens;
  beforeAll(() => {
    ({ s, auth, tokens } = startAuthServer(mkdtempSync(join(dir, "metrics-")), { metricsAuth: true }));
  });
  afterAll(async () => {
    await s.server.stop();
    auth.close();
  });

  test("a scrape without a token, or with an unknown or malformed one, is 401", async () => {
    for (const headers of [{}, bearer("nope"), { authorization: "Basic x" }]) {
      const res = await fetch(`${s.base}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe("Bearer");
      expect(await res.json()).toMatchObject({ code: "unauthenticated" });
    }
  });

  test("a scrape with a valid token of any scope is 200", async () => {
    for (const token of [tokens.read, tokens.write, tokens.admin]) {
      const res = await fetch(`${s.base}/metrics`, { headers: bearer(token) });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("featurestore_auth_failures_total");
    }
  });

  test("/health and /ready stay open", async () => {
    expect((await fetch(`${s.base}/health`)).status).toBe(200);
    expect((await fetch(`${s.base}/ready`)).status).toBe(200);
  });

  test("METRICS_AUTH without tokens is refused at start rather than leaving /metrics open", () => {
    const open = new Auth({ tokensFile: null, logger: silentLogger });
    const metrics = new HotMetrics(false);
    const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 16, shardCount: 1 });
    expect(() =>
      startHttpServer({
        host: "127.0.0.1",
        port: 0,
        service: new FeatureService(store, { defaultTtlMs: 0 }),
        metrics,
        registry: createMetricsRegistry({ hot: metrics, cacheStats: () => store.cache.stats() }),
        maxBodyBytes: 4096,
        logger: silentLogger,
        isReady: () => true,
        auth: open,
        metricsAuth: true,
      }),
    ).toThrow(/metricsAuth needs an enabled auth/);
  });
});

describe("authentication off", () => {
  test("with no tokens file every call is allowed, with or without a header", async () => {
    const auth = new Auth({ tokensFile: null, logger: silentLogger });
    const s = startTestHttpServer({ auth });
    try {
      for (const wire of WIRES)
        for (const headers of [{}, bearer("anything")])
          for (const m of wire.writes ? [...READS, ...WRITES] : READS)
            expect((await wire.call(s.base, m, headers)).code).toBe(0);
    } finally {
      await s.server.stop();
    }
  });
});
