/**
 * TLS on the native gRPC port (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE for mTLS), with a PKI
 * made by openssl for the test: real clients (grpc-js with `credentials.createSsl` and the token
 * as call credentials, `buf curl --cacert`) get through, a plaintext client is refused with a
 * log line that says why, client certificates are checked, and a rotated certificate is served
 * to new connections without a restart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { loadConfig } from "../../src/config/index.ts";
import { createLogger } from "../../src/log/index.ts";
import { type RunningServer, startServer } from "../../src/main.ts";
import { makePki, makeTokens, type Pki, removeDir, type TestTokens } from "../auth/certs.ts";
import {
  bufCurl,
  featureStoreClient,
  type GetFeaturesResponse,
  OWN_CONNECTION,
  PROTO_DIR,
  SERVICE,
} from "./fixture.ts";

const BUF = join(import.meta.dir, "../../node_modules/.bin/buf");

const FeatureStoreClient = (
  grpc.loadPackageDefinition(
    protoLoader.loadSync("featurestore/v1/featurestore.proto", {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: [PROTO_DIR],
    }),
  ) as unknown as { featurestore: { v1: { FeatureStoreService: grpc.ServiceClientConstructor } } }
).featurestore.v1.FeatureStoreService;

type LogLine = { level: string; msg: string } & Record<string, unknown>;

/** The feature store with its log lines kept; `stop` shuts it down and removes its data. */
interface Running {
  server: RunningServer;
  port: number;
  logs: LogLine[];
  stop(): Promise<void>;
}

async function start(env: Record<string, string>): Promise<Running> {
  const dataDir = mkdtempSync(join(tmpdir(), "featurestore-grpc-tls-"));
  const logs: LogLine[] = [];
  const logger = createLogger("info", (line) => logs.push(JSON.parse(line) as LogLine));
  const server = startServer(
    loadConfig({
      HOST: "127.0.0.1",
      TCP_PORT: "0",
      HTTP_PORT: "0",
      GRPC_PORT: "0",
      DATA_DIR: dataDir,
      DURABILITY: "async",
      SHUTDOWN_TIMEOUT_MS: "2000",
      ...env,
    }),
    logger,
  );
  const stop = () => server.shutdown().finally(() => rmSync(dataDir, { recursive: true, force: true }));
  try {
    await server.grpc!.listening;
  } catch (err) {
    await stop();
    throw err;
  }
  return { server, port: server.grpc!.port, logs, stop };
}

/** Call credentials that send `authorization: Bearer <token>` with every call. */
function bearer(token: string): grpc.CallCredentials {
  return grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    callback(null, metadata);
  });
}

/** A grpc-js client over TLS trusting the test CA, with a client certificate and a token if given. */
function tlsClient(
  port: number,
  pki: Pki,
  opts: { token?: string; cert?: "client" | "stranger" } = {},
): grpc.Client {
  const pem = (path: string) => readFileSync(path);
  const key = opts.cert === undefined ? null : pem(opts.cert === "client" ? pki.clientKey : pki.strangerKey);
  const cert =
    opts.cert === undefined ? null : pem(opts.cert === "client" ? pki.clientCert : pki.strangerCert);
  const channel = grpc.credentials.createSsl(pem(pki.caCert), key, cert);
  const credentials =
    opts.token === undefined
      ? channel
      : grpc.credentials.combineChannelCredentials(channel, bearer(opts.token));
  // grpc-js sends the target's host as SNI; Bun's tls refuses an IP address as servername
  // (ERR_INVALID_ARG_VALUE, where Node only warns), so the name in the certificate is used.
  return new FeatureStoreClient(`127.0.0.1:${port}`, credentials, {
    ...OWN_CONNECTION,
    "grpc.ssl_target_name_override": "localhost",
  });
}

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; details: string };

/** A unary call with a 5 s deadline; never rejects. */
function call<T>(client: grpc.Client, method: string, request: unknown): Promise<Outcome<T>> {
  type Unary = (r: unknown, o: grpc.CallOptions, cb: grpc.requestCallback<T>) => grpc.ClientUnaryCall;
  const fn = (client as unknown as Record<string, Unary>)[method]!;
  return new Promise((resolve) => {
    fn.call(client, request, { deadline: Date.now() + 5000 }, (err, value) => {
      if (err) resolve({ ok: false, code: grpc.status[err.code]!, details: err.details });
      else resolve({ ok: true, value: value as T });
    });
  });
}

/** Runs `fn` with a client, closed afterwards. */
async function withClient<T>(client: grpc.Client, fn: (c: grpc.Client) => Promise<T>): Promise<T> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** `buf curl --protocol grpc <args>` (no --http2-prior-knowledge: https negotiates h2 by ALPN). */
async function bufCurlTls(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([BUF, "curl", "--protocol", "grpc", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BUF_CACHE_DIR: join(tmpdir(), "featurestore-buf-cache") },
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** The serial number of the certificate a new TLS connection (ALPN h2) is served, as hex without leading zeros. */
function servedSerial(port: number, pki: Pki, clientCert = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      {
        host: "127.0.0.1",
        port,
        ca: readFileSync(pki.caCert),
        ALPNProtocols: ["h2"],
        ...(clientCert ? { cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) } : {}),
      },
      () => {
        const serial = normalSerial(socket.getPeerCertificate().serialNumber);
        const alpn = socket.alpnProtocol;
        socket.destroy();
        if (alpn !== "h2") reject(new Error(`ALPN negotiated ${alpn}, not h2`));
        else resolve(serial);
      },
    );
    socket.on("error", reject);
  });
}

/** `serial=0A1B...` (openssl) or `0A1B...` (node) as upper-case hex without leading zeros. */
const normalSerial = (s: string) =>
  s
    .replace(/^serial=/, "")
    .toUpperCase()
    .replace(/^0+/, "");

/** Polls (bounded, ~5 s) until new connections are served the certificate with `serial`. */
async function waitForSerial(port: number, pki: Pki, serial: string, clientCert = false): Promise<string> {
  let seen = await servedSerial(port, pki, clientCert);
  for (let i = 0; i < 100 && seen !== serial; i++) {
    await Bun.sleep(50);
    seen = await servedSerial(port, pki, clientCert);
  }
  return seen;
}

/** A plaintext HTTP/2 (prior knowledge) connection to `port`: what it got before it closed. */
function plaintextAttempt(port: number): Promise<string> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const settle = (what: string) => {
      session.destroy();
      resolve(what);
    };
    session.on("error", (err) => settle(`error: ${err.message}`));
    session.on("close", () => settle("closed"));
    const stream = session.request({ ":method": "POST", ":path": `/${SERVICE}/GetFeatures` });
    stream.on("response", (h) => settle(`answered ${h[":status"]}`));
    stream.on("error", () => {});
    stream.end();
  });
}

const SET = { entity_id: "user:tls", features: { n: { int_value: "7" } } };
const GET = { entity_id: "user:tls" };

describe("the gRPC port over TLS (TLS_CERT_FILE, TLS_KEY_FILE) with tokens", () => {
  let pki: Pki;
  let tokens: TestTokens;
  let store: Running;

  beforeAll(async () => {
    pki = await makePki();
    tokens = makeTokens(pki.dir);
    store = await start({
      TLS_CERT_FILE: pki.serverCert,
      TLS_KEY_FILE: pki.serverKey,
      AUTH_TOKENS_FILE: tokens.file,
    });
  });

  afterAll(async () => {
    await store?.stop();
    if (pki) removeDir(pki.dir);
  });

  test("a grpc-js client trusting the test CA, with the token as call credentials, writes and reads", async () => {
    await withClient(tlsClient(store.port, pki, { token: tokens.write }), async (client) => {
      expect(await call(client, "SetFeatures", SET)).toEqual({ ok: true, value: { skipped: [] } });
      const got = await call<GetFeaturesResponse>(client, "GetFeatures", GET);
      expect(got).toMatchObject({ ok: true, value: { found: true, features: { n: { int_value: "7" } } } });
    });
  });

  test("over TLS a call still needs its token: none is UNAUTHENTICATED, a read token writing PERMISSION_DENIED", async () => {
    await withClient(tlsClient(store.port, pki), async (client) => {
      expect(await call(client, "GetFeatures", GET)).toEqual({
        ok: false,
        code: "UNAUTHENTICATED",
        details: "authorization: Bearer <token> is required",
      });
    });
    await withClient(tlsClient(store.port, pki, { token: tokens.read }), async (client) => {
      expect(await call(client, "SetFeatures", SET)).toEqual({
        ok: false,
        code: "PERMISSION_DENIED",
        details: "token reader lacks the write scope",
      });
      expect((await call(client, "GetFeatures", GET)).ok).toBe(true);
    });
  });

  test("buf curl with --cacert and -H 'Authorization: Bearer ...' writes and reads, knowing only what reflection says", async () => {
    const base = `https://127.0.0.1:${store.port}/${SERVICE}`;
    const write = await bufCurlTls([
      "--cacert",
      pki.caCert,
      "-H",
      `Authorization: Bearer ${tokens.write}`,
      "-d",
      '{"entity_id":"user:buf-tls","features":{"n":{"int_value":42}}}',
      `${base}/SetFeatures`,
    ]);
    expect({ exitCode: write.exitCode, stderr: write.stderr }).toEqual({ exitCode: 0, stderr: "" });
    const read = await bufCurlTls([
      "--cacert",
      pki.caCert,
      "-H",
      `Authorization: Bearer ${tokens.read}`,
      "-d",
      '{"entity_id":"user:buf-tls"}',
      `${base}/GetFeatures`,
    ]);
    expect({ exitCode: read.exitCode, stderr: read.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(JSON.parse(read.stdout)).toMatchObject({ found: true, features: { n: { intValue: "42" } } });
    // Without the CA, buf curl does not trust the server (its reason shows with -v only).
    const untrusted = await bufCurlTls(["-v", "-d", '{"entity_id":"x"}', `${base}/GetFeatures`]);
    expect(untrusted.exitCode).not.toBe(0);
    expect(untrusted.stderr).toContain("certificate signed by unknown authority");
  });

  test("a plaintext client is refused on the TLS port, and the log says why (rate-limited)", async () => {
    const before = store.logs.length;
    expect(await plaintextAttempt(store.port)).not.toMatch(/^answered/);
    await withClient(featureStoreClient(store.port), async (client) => {
      const out = await call(client, "GetFeatures", GET);
      expect(out.ok || out.code).toBe("UNAVAILABLE");
    });
    const curl = await bufCurl([
      "-d",
      '{"entity_id":"x"}',
      `http://127.0.0.1:${store.port}/${SERVICE}/GetFeatures`,
    ]);
    expect(curl.exitCode).not.toBe(0);
    const refused = store.logs
      .slice(before)
      .filter((l) => l.msg === "grpc: plaintext connection refused on the TLS port");
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]).toMatchObject({ level: "warn", remote: "127.0.0.1" });
    expect(String(refused[0]!.hint)).toContain("TLS");
    // A flood of plaintext connections does not flood the log.
    for (let i = 0; i < 20; i++) await plaintextAttempt(store.port);
    const all = store.logs.filter((l) => l.msg === "grpc: plaintext connection refused on the TLS port");
    expect(all.length).toBeLessThanOrEqual(6);
  });

  test("a rotated certificate is served to new connections without a restart; open ones keep working", async () => {
    const before = await servedSerial(store.port, pki);
    const open = tlsClient(store.port, pki, { token: tokens.read });
    try {
      expect((await call(open, "GetFeatures", GET)).ok).toBe(true);
      const rotated = normalSerial(await pki.rotateServer());
      expect(rotated).not.toBe(before);
      expect(await waitForSerial(store.port, pki, rotated)).toBe(rotated);
      expect((await call(open, "GetFeatures", GET)).ok).toBe(true);
      await withClient(tlsClient(store.port, pki, { token: tokens.read }), async (client) => {
        expect((await call(client, "GetFeatures", GET)).ok).toBe(true);
      });
      expect(store.logs.some((l) => l.msg === "TLS certificate reloaded")).toBe(true);
    } finally {
      open.close();
    }
  });
});

describe("the gRPC port with client certificates (TLS_CA_FILE)", () => {
  let pki: Pki;
  let tokens: TestTokens;
  let store: Running;

  beforeAll(async () => {
    pki = await makePki();
    tokens = makeTokens(pki.dir);
    store = await start({
      TLS_CERT_FILE: pki.serverCert,
      TLS_KEY_FILE: pki.serverKey,
      TLS_CA_FILE: pki.caCert,
      AUTH_TOKENS_FILE: tokens.file,
    });
  });

  afterAll(async () => {
    await store?.stop();
    if (pki) removeDir(pki.dir);
  });

  /** Log lines of refused client certificates (Auth's, reason tls) after index `from`. */
  const tlsFailures = (from: number) =>
    store.logs.slice(from).filter((l) => l.msg === "authentication failed" && l.reason === "tls");

  test("a client certificate signed by the CA, with a token, is accepted", async () => {
    await withClient(tlsClient(store.port, pki, { token: tokens.write, cert: "client" }), async (client) => {
      expect((await call(client, "SetFeatures", SET)).ok).toBe(true);
      expect(await call(client, "GetFeatures", GET)).toMatchObject({ ok: true, value: { found: true } });
    });
    const curl = await bufCurlTls([
      "--cacert",
      pki.caCert,
      "--cert",
      pki.clientCert,
      "--key",
      pki.clientKey,
      "-H",
      `Authorization: Bearer ${tokens.read}`,
      "-d",
      JSON.stringify(GET),
      `https://127.0.0.1:${store.port}/${SERVICE}/GetFeatures`,
    ]);
    expect({ exitCode: curl.exitCode, stderr: curl.stderr }).toEqual({ exitCode: 0, stderr: "" });
  });

  test("a client certificate does not replace the token", async () => {
    await withClient(tlsClient(store.port, pki, { cert: "client" }), async (client) => {
      expect(await call(client, "GetFeatures", GET)).toMatchObject({ ok: false, code: "UNAUTHENTICATED" });
    });
  });

  test("a client without a certificate is refused in the handshake, counted as an auth failure (tls)", async () => {
    const before = store.logs.length;
    await withClient(tlsClient(store.port, pki, { token: tokens.admin }), async (client) => {
      expect(await call(client, "GetFeatures", GET)).toMatchObject({ ok: false, code: "UNAVAILABLE" });
    });
    expect(tlsFailures(before)[0]).toMatchObject({ level: "warn", reason: "tls", transport: "grpc" });
  });

  test("a client certificate from another CA is refused in the handshake, counted as an auth failure (tls)", async () => {
    const before = store.logs.length;
    await withClient(
      tlsClient(store.port, pki, { token: tokens.admin, cert: "stranger" }),
      async (client) => {
        expect(await call(client, "GetFeatures", GET)).toMatchObject({ ok: false, code: "UNAVAILABLE" });
      },
    );
    expect(tlsFailures(before)[0]).toMatchObject({ level: "warn", reason: "tls", transport: "grpc" });
  });

  test("after a certificate rotation, client certificates are still required and still accepted", async () => {
    const rotated = normalSerial(await pki.rotateServer());
    expect(await waitForSerial(store.port, pki, rotated, true)).toBe(rotated);
    await withClient(tlsClient(store.port, pki, { token: tokens.read, cert: "client" }), async (client) => {
      expect((await call(client, "GetFeatures", GET)).ok).toBe(true);
    });
    await withClient(tlsClient(store.port, pki, { token: tokens.read }), async (client) => {
      expect(await call(client, "GetFeatures", GET)).toMatchObject({ ok: false, code: "UNAVAILABLE" });
    });
  });
});
