/**
 * Tokens on the native gRPC port (AUTH_TOKENS_FILE): every FeatureStoreService call carries
 * `authorization: Bearer <token>` metadata, checked against the method's scope before its
 * request is read; health and reflection stay open. A stock grpc-js client, a raw HTTP/2 call
 * and `buf curl` are the callers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { makeTokens, removeDir, type TestTokens } from "../auth/certs.ts";
import {
  bufCurl,
  type FeatureStoreTarget,
  featureStoreClient,
  type GetFeaturesResponse,
  grpcHeaders,
  healthClient,
  lengthPrefixed,
  type Outcome,
  SERVICE,
  setRequestBytes,
  startFeatureStore,
} from "./fixture.ts";

/** Calls `method` with `authorization` metadata (none when `auth` is null); never rejects. */
function callWith<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  auth: string | null,
): Promise<Outcome<T>> {
  const metadata = new grpc.Metadata();
  if (auth !== null) metadata.set("authorization", auth);
  type Unary = (
    request: unknown,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<T>,
  ) => grpc.ClientUnaryCall;
  const fn = (client as unknown as Record<string, Unary>)[method]!;
  return new Promise((resolve) => {
    fn.call(client, request, metadata, { deadline: Date.now() + 5000 }, (err, value) => {
      if (err) resolve({ ok: false, code: err.code, details: err.details });
      else resolve({ ok: true, value: value as T });
    });
  });
}

const bearer = (token: string) => `Bearer ${token}`;

/** One request of each FeatureStoreService method. */
const READS: [string, object][] = [
  ["GetFeatures", { entity_id: "user:auth" }],
  ["BatchGet", { entity_ids: ["user:auth", "user:none"] }],
];
const WRITES: [string, object][] = [
  ["SetFeatures", { entity_id: "user:auth", features: { n: { int_value: "1" } } }],
  ["BatchSet", { items: [{ entity_id: "user:batch", features: { n: { int_value: "2" } } }] }],
  ["DeleteFeatures", { entity_id: "user:gone" }],
];

/** `code` and `details` of a failed call, or the test fails with what came back. */
function failure(out: Outcome<unknown>): { code: string; details: string } {
  if (out.ok) throw new Error(`expected the call to fail; it answered ${JSON.stringify(out.value)}`);
  return { code: grpc.status[out.code]!, details: out.details };
}

describe("the gRPC port with AUTH_TOKENS_FILE", () => {
  let dir: string;
  let tokens: TestTokens;
  let store: FeatureStoreTarget;
  let client: grpc.Client;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-grpc-auth-"));
    tokens = makeTokens(dir);
    store = await startFeatureStore({ AUTH_TOKENS_FILE: tokens.file });
    client = featureStoreClient(store.port);
  });

  afterAll(async () => {
    client?.close();
    await store?.shutdown();
    removeDir(dir);
  });

  test("every method without a token is UNAUTHENTICATED, and the message says what to send", async () => {
    for (const [method, request] of [...READS, ...WRITES]) {
      const out = failure(await callWith(client, method, request, null));
      expect({ method, ...out }).toEqual({
        method,
        code: "UNAUTHENTICATED",
        details: "authorization: Bearer <token> is required",
      });
    }
  });

  test("an authorization value that is not `Bearer <token>` is UNAUTHENTICATED", async () => {
    for (const value of ["Basic dXNlcjpwYXNz", "Bearer", tokens.admin, `bearer ${tokens.admin}`]) {
      const out = failure(await callWith(client, "GetFeatures", { entity_id: "u" }, value));
      expect({ value, ...out }).toEqual({
        value,
        code: "UNAUTHENTICATED",
        details: "the authorization header must be Bearer <token>",
      });
    }
  });

  test("a token that is not in the file is UNAUTHENTICATED", async () => {
    for (const token of ["not-a-token", `${tokens.admin}x`, tokens.admin.slice(1)]) {
      const out = failure(await callWith(client, "GetFeatures", { entity_id: "u" }, bearer(token)));
      expect(out).toEqual({ code: "UNAUTHENTICATED", details: "unknown or revoked token" });
    }
  });

  test("a read token reads with GetFeatures and BatchGet", async () => {
    const got = await callWith<GetFeaturesResponse>(
      client,
      "GetFeatures",
      { entity_id: "user:nobody" },
      bearer(tokens.read),
    );
    expect(got).toMatchObject({ ok: true, value: { entity_id: "user:nobody", found: false } });
    const batch = await callWith(client, "BatchGet", { entity_ids: ["a", "b"] }, bearer(tokens.read));
    expect(batch).toMatchObject({ ok: true, value: { misses: 2 } });
  });

  test("a read token writing is PERMISSION_DENIED on every write method, and nothing is written", async () => {
    for (const [method, request] of WRITES) {
      const out = failure(await callWith(client, method, request, bearer(tokens.read)));
      expect({ method, ...out }).toEqual({
        method,
        code: "PERMISSION_DENIED",
        details: "token reader lacks the write scope",
      });
    }
    const after = await callWith<GetFeaturesResponse>(
      client,
      "GetFeatures",
      { entity_id: "user:auth" },
      bearer(tokens.read),
    );
    expect(after).toMatchObject({ ok: true, value: { found: false } });
  });

  test("a write token writes with every write method and reads what it wrote", async () => {
    for (const [method, request] of WRITES) {
      const out = await callWith(client, method, request, bearer(tokens.write));
      expect({ method, ok: out.ok }).toEqual({ method, ok: true });
    }
    const got = await callWith<GetFeaturesResponse>(
      client,
      "GetFeatures",
      { entity_id: "user:batch" },
      bearer(tokens.write),
    );
    expect(got).toMatchObject({ ok: true, value: { found: true, features: { n: { int_value: "2" } } } });
  });

  test("an admin token may call every method", async () => {
    for (const [method, request] of [...WRITES, ...READS]) {
      const out = await callWith(client, method, request, bearer(tokens.admin));
      expect({ method, ok: out.ok }).toEqual({ method, ok: true });
    }
  });

  test("a refused call is answered trailers-only before its request is sent, and the connection stays usable", async () => {
    const session = http2.connect(`http://127.0.0.1:${store.port}`);
    try {
      // The request's message is never finished: a server that read it first would wait.
      const body = lengthPrefixed(setRequestBytes("user:raw", "n", 1n));
      const answer = await new Promise<{ headers: http2.IncomingHttpHeaders; data: number }>(
        (resolve, reject) => {
          const stream = session.request({
            ":method": "POST",
            ...grpcHeaders(`/${SERVICE}/SetFeatures`, { authorization: bearer(tokens.read) }),
          });
          let headers: http2.IncomingHttpHeaders = {};
          let data = 0;
          stream.on("response", (h) => {
            headers = h;
          });
          stream.on("data", (c: Buffer) => {
            data += c.length;
          });
          stream.on("error", () => {});
          stream.on("close", () => resolve({ headers, data }));
          session.on("error", reject);
          stream.write(body.subarray(0, 8));
        },
      );
      expect({
        status: Number(answer.headers[":status"]),
        grpcStatus: answer.headers["grpc-status"],
        grpcMessage: decodeURIComponent(String(answer.headers["grpc-message"])),
        data: answer.data,
      }).toEqual({
        status: 200,
        grpcStatus: String(grpc.status.PERMISSION_DENIED),
        grpcMessage: "token reader lacks the write scope",
        data: 0,
      });
      // The same HTTP/2 connection carries the next call, with a token that may write.
      const next = await new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ...grpcHeaders(`/${SERVICE}/SetFeatures`, { authorization: bearer(tokens.write) }),
        });
        let status: string | undefined;
        stream.on("trailers", (h) => {
          status = h["grpc-status"] as string | undefined;
        });
        stream.on("data", () => {});
        stream.on("error", reject);
        stream.on("close", () => resolve(status));
        stream.end(body);
      });
      expect(next).toBe("0");
    } finally {
      session.close();
    }
  });

  test("every refusal is counted by reason in featurestore_auth_failures_total", async () => {
    const count = async (reason: string) => {
      const text = await (await fetch(`http://127.0.0.1:${store.httpPort}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith("featurestore_auth_failures_total{") && l.includes(`"${reason}"`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    const before = {
      missing: await count("missing"),
      unknown: await count("unknown"),
      scope: await count("scope"),
    };
    await callWith(client, "GetFeatures", { entity_id: "u" }, null);
    await callWith(client, "GetFeatures", { entity_id: "u" }, bearer("wrong"));
    await callWith(client, "SetFeatures", WRITES[0]![1], bearer(tokens.read));
    expect({
      missing: await count("missing"),
      unknown: await count("unknown"),
      scope: await count("scope"),
    }).toEqual({
      missing: before.missing + 1,
      unknown: before.unknown + 1,
      scope: before.scope + 1,
    });
  });

  test("health Check and List answer without a token", async () => {
    const health = healthClient(store.port);
    try {
      const check = await callWith(health, "Check", { service: SERVICE }, null);
      expect(check).toEqual({ ok: true, value: { status: "SERVING" } });
      const list = await callWith<{ statuses: Record<string, unknown> }>(health, "List", {}, null);
      expect(list.ok && Object.keys(list.value.statuses).sort()).toEqual(
        ["", SERVICE, "grpc.health.v1.Health"].sort(),
      );
    } finally {
      health.close();
    }
  });

  test("buf curl lists services by reflection without a token, and calls with -H 'Authorization: Bearer ...'", async () => {
    const base = `http://127.0.0.1:${store.port}`;
    const services = await bufCurl(["--list-services", base]);
    expect({ exitCode: services.exitCode, stderr: services.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(services.stdout.split("\n")).toContain(SERVICE);
    const url = `${base}/${SERVICE}/GetFeatures`;
    const data = '{"entity_id":"user:batch"}';
    const refused = await bufCurl(["-d", data, url]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain("unauthenticated");
    const read = await bufCurl(["-H", `Authorization: Bearer ${tokens.read}`, "-d", data, url]);
    expect({ exitCode: read.exitCode, stderr: read.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(JSON.parse(read.stdout)).toMatchObject({ entityId: "user:batch", found: true });
  });
});

describe("a token revoked in the file", () => {
  test("stops working on the gRPC port within a second, without a restart; the others keep working", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-grpc-revoke-"));
    const tokens = makeTokens(dir);
    const store = await startFeatureStore({ AUTH_TOKENS_FILE: tokens.file });
    const client = featureStoreClient(store.port);
    try {
      const read = () => callWith(client, "GetFeatures", { entity_id: "u" }, bearer(tokens.read));
      expect((await read()).ok).toBe(true);
      tokens.revoke("reader");
      // Polled, bounded: the file is checked every RELOAD_CHECK_MS (250 ms).
      let last = await read();
      for (let i = 0; i < 80 && last.ok; i++) {
        await Bun.sleep(25);
        last = await read();
      }
      expect(failure(last)).toEqual({ code: "UNAUTHENTICATED", details: "unknown or revoked token" });
      const writer = await callWith(client, "GetFeatures", { entity_id: "u" }, bearer(tokens.write));
      expect(writer.ok).toBe(true);
    } finally {
      client.close();
      await store.shutdown();
      removeDir(dir);
    }
  });
});

describe("the gRPC port without AUTH_TOKENS_FILE", () => {
  test("answers calls with or without a token, as before", async () => {
    const store = await startFeatureStore();
    const client = featureStoreClient(store.port);
    try {
      expect((await callWith(client, "SetFeatures", WRITES[0]![1], null)).ok).toBe(true);
      expect((await callWith(client, "GetFeatures", READS[0]![1], "Bearer anything")).ok).toBe(true);
    } finally {
      client.close();
      await store.shutdown();
    }
  });
});
