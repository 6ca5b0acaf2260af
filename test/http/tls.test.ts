/**
 * TLS on the HTTP port, with a CA made by the test (test/auth/certs.ts): real clients with a
 * token (@connectrpc/connect-node, `buf curl`), plaintext refused, client certificates (mTLS),
 * and a certificate rotated on disk put in use for new connections without a restart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { TlsSource } from "../../src/auth/tls.ts";
import { Auth } from "../../src/auth/tokens.ts";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import { makePki, makeTokens, type Pki, removeDir, type TestTokens } from "../auth/certs.ts";
import {
  FeatureStoreService,
  FeatureValueSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { startTestHttpServer, type TestHttpServer } from "./fixture.ts";

const BUF = join(import.meta.dir, "../../node_modules/.bin/buf");
/** The service's descriptors, for `buf curl --schema` (the HTTP port has no reflection). */
const DESCRIPTORS = join(import.meta.dir, "../../src/transport/grpc/descriptors.binpb");
const PATH = "/featurestore.v1.FeatureStoreService";

let pki: Pki;
let tokens: TestTokens;
let auth: Auth;
let ca: string;
beforeAll(async () => {
  pki = await makePki();
  tokens = makeTokens(pki.dir);
  auth = new Auth({ tokensFile: tokens.file, logger: silentLogger });
  ca = readFileSync(pki.caCert, "utf8");
});
afterAll(() => {
  auth.close();
  removeDir(pki.dir);
});

/** Adds `authorization: Bearer <token>` to every call. */
const withToken =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

/** The gRPC code a call failed with, or "ok". */
async function outcome(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/**
 * The TLS failure a call ran into: the error code of its cause (node's `ERR_SSL_...`, a
 * verification code, or ECONNRESET when the server drops the connection after a TLS 1.3
 * handshake the client thought complete). Fails the test when the call got an answer.
 */
async function tlsFailure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    // A refusal by the server's RPC layer would be Unauthenticated or PermissionDenied.
    expect([Code.Unauthenticated, Code.PermissionDenied]).not.toContain(e.code);
    return String((e.cause as { code?: unknown } | undefined)?.code ?? e.rawMessage);
  }
  throw new Error("the call succeeded");
}

const setRequest = (entityId: string) =>
  create(SetFeaturesRequestSchema, {
    entityId,
    features: { score: create(FeatureValueSchema, { kind: { case: "doubleValue", value: 0.5 } }) },
  });

/** Runs `buf curl` against the server; spawned asynchronously, since the server runs here. */
async function bufCurl(args: string[]) {
  const proc = Bun.spawn([BUF, "curl", "--schema", DESCRIPTORS, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BUF_CACHE_DIR: join(tmpdir(), "featurestore-buf-cache") },
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout, stderr, exitCode };
}

/** The serial number of the certificate a new TLS connection is shown, as a number. */
function peerSerial(port: number): Promise<bigint> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, ca }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(BigInt(`0x${serial}`));
    });
    socket.on("error", reject);
  });
}

describe("TLS with a token", () => {
  let s: TestHttpServer;
  let tls: TlsSource;
  const logLines: string[] = [];
  let base: string;
  beforeAll(() => {
    tls = new TlsSource({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: null }, silentLogger);
    s = startTestHttpServer({ auth, tls, logger: createLogger("info", (l) => logLines.push(l)) });
    base = `https://127.0.0.1:${s.server.port}`;
  });
  afterAll(async () => {
    await s.server.stop();
    tls.close();
  });

  const transports: [string, (token: string | null) => Transport][] = [
    [
      "Connect (binary)",
      (token) =>
        createConnectTransport({
          baseUrl: base,
          httpVersion: "1.1",
          nodeOptions: { ca },
          interceptors: token === null ? [] : [withToken(token)],
        }),
    ],
    [
      "Connect (JSON)",
      (token) =>
        createConnectTransport({
          baseUrl: base,
          httpVersion: "1.1",
          useBinaryFormat: false,
          nodeOptions: { ca },
          interceptors: token === null ? [] : [withToken(token)],
        }),
    ],
    [
      "gRPC-web",
      (token) =>
        createGrpcWebTransport({
          baseUrl: base,
          httpVersion: "1.1",
          nodeOptions: { ca },
          interceptors: token === null ? [] : [withToken(token)],
        }),
    ],
  ];

  for (const [name, transport] of transports) {
    test(`@connectrpc/connect-node, ${name}, trusting the test CA: a write token writes and reads back`, async () => {
      const client = createClient(FeatureStoreService, transport(tokens.write));
      await client.setFeatures(setRequest(`tls:${name}`));
      const got = await client.getFeatures({ entityId: `tls:${name}` });
      expect(got.found).toBe(true);
      expect(got.features.score?.kind).toEqual({ case: "doubleValue", value: 0.5 });
    });

    test(`@connectrpc/connect-node, ${name}: no token is Unauthenticated, a read token writing is PermissionDenied`, async () => {
      const anonymous = createClient(FeatureStoreService, transport(null));
      expect(await outcome(anonymous.getFeatures({ entityId: "x" }))).toBe(Code.Unauthenticated);
      const reader = createClient(FeatureStoreService, transport(tokens.read));
      expect(await outcome(reader.setFeatures(setRequest("x")))).toBe(Code.PermissionDenied);
      expect(await outcome(reader.getFeatures({ entityId: "x" }))).toBe("ok");
    });
  }

  test("a client that does not trust the CA is refused at the handshake", async () => {
    const client = createClient(
      FeatureStoreService,
      createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [withToken(tokens.read)] }),
    );
    expect(await tlsFailure(client.getFeatures({ entityId: "x" }))).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  });

  test("buf curl with -H 'Authorization: Bearer ...' and --cacert writes and reads", async () => {
    const auth = ["-H", `Authorization: Bearer ${tokens.write}`, "--cacert", pki.caCert];
    const set = await bufCurl([
      ...auth,
      "-d",
      '{"entityId":"curl:1","features":{"age":{"intValue":"7","eventTimeMs":"1700000000000"}}}',
      `${base}${PATH}/SetFeatures`,
    ]);
    expect(set.stderr).toBe("");
    expect(set.exitCode).toBe(0);
    const get = await bufCurl([...auth, "-d", '{"entityId":"curl:1"}', `${base}${PATH}/GetFeatures`]);
    expect(get.exitCode).toBe(0);
    expect(JSON.parse(get.stdout)).toEqual({
      entityId: "curl:1",
      features: { age: { intValue: "7", eventTimeMs: "1700000000000" } },
      found: true,
    });
  });

  test("buf curl without a token is unauthenticated, with a read token writing permission_denied", async () => {
    const anonymous = await bufCurl([
      "--cacert",
      pki.caCert,
      "-d",
      '{"entityId":"curl:1"}',
      `${base}${PATH}/GetFeatures`,
    ]);
    expect(anonymous.exitCode).not.toBe(0);
    expect(anonymous.stdout + anonymous.stderr).toContain("unauthenticated");
    const reader = await bufCurl([
      "-H",
      `Authorization: Bearer ${tokens.read}`,
      "--cacert",
      pki.caCert,
      "-d",
      '{"entityId":"curl:2","features":{}}',
      `${base}${PATH}/SetFeatures`,
    ]);
    expect(reader.exitCode).not.toBe(0);
    expect(reader.stdout + reader.stderr).toContain("permission_denied");
  });

  test("plaintext HTTP to the TLS port gets no answer: the connection is closed", async () => {
    const port = s.server.port;
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    const received = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(port, "127.0.0.1", () =>
        socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
      );
      let data = "";
      socket.on("data", (c) => {
        data += c.toString("latin1");
      });
      socket.on("close", () => resolve(data));
      socket.on("error", reject);
    });
    expect(received).not.toContain("HTTP/1.1");
    // Bun.serve reports no failed handshake, so the server cannot log each one; it says at start
    // that the port speaks TLS only (listener.ts).
    const started = logLines.find((l) => l.includes("http server: TLS on"));
    expect(started).toBeDefined();
    expect(started).toContain("plaintext connections are closed at the handshake");
  });

  test("/health over TLS needs no token", async () => {
    const res = await fetch(`${base}/health`, { tls: { ca } });
    expect(res.status).toBe(200);
  });
});

describe("mTLS (a CA for client certificates)", () => {
  let s: TestHttpServer;
  let tls: TlsSource;
  let base: string;
  const read = (f: string) => readFileSync(f, "utf8");
  beforeAll(() => {
    tls = new TlsSource(
      { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert },
      silentLogger,
    );
    s = startTestHttpServer({ auth, tls });
    base = `https://127.0.0.1:${s.server.port}`;
  });
  afterAll(async () => {
    await s.server.stop();
    tls.close();
  });

  const client = (nodeOptions: { ca: string; cert?: string; key?: string }) =>
    createClient(
      FeatureStoreService,
      createConnectTransport({
        baseUrl: base,
        httpVersion: "1.1",
        nodeOptions,
        interceptors: [withToken(tokens.read)],
      }),
    );

  test("a client with a certificate from the CA and a token is served", async () => {
    const c = client({ ca, cert: read(pki.clientCert), key: read(pki.clientKey) });
    expect(await outcome(c.getFeatures({ entityId: "x" }))).toBe("ok");
    const res = await fetch(`${base}/health`, {
      tls: { ca, cert: read(pki.clientCert), key: read(pki.clientKey) },
    });
    expect(res.status).toBe(200);
  });

  test("a client certificate does not replace the token: without one the call is Unauthenticated", async () => {
    const c = createClient(
      FeatureStoreService,
      createConnectTransport({
        baseUrl: base,
        httpVersion: "1.1",
        nodeOptions: { ca, cert: read(pki.clientCert), key: read(pki.clientKey) },
      }),
    );
    expect(await outcome(c.getFeatures({ entityId: "x" }))).toBe(Code.Unauthenticated);
  });

  test("a client without a certificate is refused at the handshake, even with a token", async () => {
    // The server's alert says why: TLS 1.3 "certificate required".
    expect(await tlsFailure(client({ ca }).getFeatures({ entityId: "x" }))).toBe(
      "ERR_SSL_TLSV1_ALERT_CERTIFICATE_REQUIRED",
    );
    await expect(fetch(`${base}/health`, { tls: { ca } })).rejects.toThrow();
  });

  test("a client with a certificate from another CA is refused at the handshake", async () => {
    const c = client({ ca, cert: read(pki.strangerCert), key: read(pki.strangerKey) });
    // Under TLS 1.3 the client's side of the handshake is done before the server checks its
    // certificate; the server then drops the connection, and no HTTP answer ever comes.
    expect(await tlsFailure(c.getFeatures({ entityId: "x" }))).toMatch(/ECONNRESET|CERTIFICATE|SSL/);
    await expect(
      fetch(`${base}/health`, { tls: { ca, cert: read(pki.strangerCert), key: read(pki.strangerKey) } }),
    ).rejects.toThrow();
  });
});

describe("certificate rotation", () => {
  test("a new certificate written over the files is shown to new connections, without a restart", async () => {
    const tls = new TlsSource(
      { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: null },
      silentLogger,
    );
    const s = startTestHttpServer({ auth, tls });
    try {
      const port = s.server.port;
      const before = await peerSerial(port);
      const rotated = BigInt(`0x${(await pki.rotateServer()).replace(/^serial=/, "")}`);
      expect(rotated).not.toBe(before);
      // The files are checked every RELOAD_CHECK_MS (250 ms); poll, bounded well above that.
      const until = Date.now() + 5_000;
      let seen = before;
      while (seen !== rotated && Date.now() < until) {
        await Bun.sleep(50);
        // A connection that arrives while the new listener takes over may be reset: try again.
        seen = await peerSerial(port).catch(() => seen);
      }
      expect(seen).toBe(rotated);
      // And the port still serves, on the same number, with the new certificate.
      const client = createClient(
        FeatureStoreService,
        createConnectTransport({
          baseUrl: `https://127.0.0.1:${port}`,
          httpVersion: "1.1",
          nodeOptions: { ca },
          interceptors: [withToken(tokens.read)],
        }),
      );
      expect(await outcome(client.getFeatures({ entityId: "x" }))).toBe("ok");
    } finally {
      await s.server.stop();
      tls.close();
    }
  });
});
