/**
 * Tokens and TLS on the binary TCP port, with the product's client and with raw frames: an
 * Authenticate frame first, scopes per method, revocation without a restart, repeated
 * failures closing the connection, TLS with a CA made by the test, mTLS, and a certificate
 * rotated without a restart.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { TlsSource } from "../../src/auth/tls.ts";
import { Auth, AuthFailure } from "../../src/auth/tokens.ts";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { Method } from "../../src/codec/frame.ts";
import { Code } from "../../src/codec/status.ts";
import { silentLogger } from "../../src/log/index.ts";
import { makePki, makeTokens, type Pki, removeDir, type TestTokens } from "../auth/certs.ts";
import { codeOf } from "../codes.ts";
import { startTestTcpServer } from "./fixture.ts";
import { frame, RawPeer, text } from "./raw.ts";

let pki: Pki;
let tokens: TestTokens;
const stops: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  pki = await makePki();
  tokens = makeTokens(pki.dir);
}, 30_000);
afterAll(() => removeDir(pki.dir));
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

function start(opts: { tls?: "tls" | "mtls" } = {}) {
  const auth = new Auth({ tokensFile: tokens.file, logger: silentLogger });
  const tls =
    opts.tls === undefined
      ? null
      : new TlsSource(
          {
            certFile: pki.serverCert,
            keyFile: pki.serverKey,
            caFile: opts.tls === "mtls" ? pki.caCert : null,
          },
          silentLogger,
        );
  const { server, port } = startTestTcpServer({ auth, tls });
  stops.push(() => {
    auth.close();
    tls?.close();
    return server.drain(1000);
  });
  return { auth, port };
}

async function client(port: number, extra: Partial<Parameters<typeof FeatureStoreClient.connect>[0]> = {}) {
  const c = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${port}`],
    connectionsPerServer: 1,
    deadlineMs: 2000,
    ...extra,
  });
  stops.push(() => c.close());
  return c;
}

const ca = () => Bun.file(pki.caCert).text();

describe("tokens on TCP", () => {
  test("without a token every request is UNAUTHENTICATED, and the third refusal closes the connection", async () => {
    const { port, auth } = start();
    const peer = await RawPeer.connect(port);
    for (const [id, m] of [
      [1, Method.Ping],
      [2, Method.GetFeatures],
      [3, Method.Ping],
      [4, Method.Ping],
    ] as const)
      await peer.send(frame(id, m));
    const answers = [];
    for (let a = await peer.next(); a !== null; a = await peer.next()) answers.push(a);
    expect(answers.map((a) => a.status)).toEqual([
      Code.Unauthenticated,
      Code.Unauthenticated,
      Code.Unauthenticated,
    ]);
    expect(text(answers[0]!.body)).toContain("Authenticate");
    expect(peer.closed).toBe(true);
    expect(auth.failures[AuthFailure.Missing]).toBe(3);
  });

  test("a wrong token is UNAUTHENTICATED for the client's calls", async () => {
    const { port, auth } = start();
    const c = await client(port, { token: "not-a-token" });
    expect(await codeOf(c.getFeatures("u"))).toBe(Code.Unauthenticated);
    expect(auth.failures[AuthFailure.Unknown]).toBeGreaterThan(0);
  });

  test("a read token reads and is PERMISSION_DENIED writing; a write token writes; an admin token does all", async () => {
    const { port, auth } = start();
    const reader = await client(port, { token: tokens.read });
    const writer = await client(port, { token: tokens.write });
    const admin = await client(port, { token: tokens.admin });
    expect(await codeOf(reader.setFeatures("u", { a: 1 }))).toBe(Code.PermissionDenied);
    expect(auth.failures[AuthFailure.Scope]).toBe(1);
    await writer.setFeatures("u", { a: 1 });
    expect((await reader.getFeatures("u")).features.a).toBe(1);
    expect(await reader.batchGet(["u"])).toMatchObject({ hits: 1 });
    await admin.deleteFeatures("u", ["a"]);
    expect((await writer.getFeatures("u")).found).toBe(true);
    expect(await codeOf(reader.deleteFeatures("u"))).toBe(Code.PermissionDenied);
  });

  test("a token revoked in the file stops working on an open connection within a second, without a restart", async () => {
    const { port } = start();
    const c = await client(port, { token: tokens.write });
    await c.setFeatures("r", { a: 1 });
    tokens.revoke("writer");
    const started = performance.now();
    while ((await codeOf(c.getFeatures("r"))) === Code.OK) {
      if (performance.now() - started > 10_000) throw new Error("the revoked token kept working");
      await Bun.sleep(10);
    }
    expect(await codeOf(c.getFeatures("r"))).toBe(Code.Unauthenticated);
    tokens = makeTokens(pki.dir); // fresh tokens for the next tests
  });
});

describe("TLS on TCP", () => {
  test("the product's client over TLS with the test CA and a token", async () => {
    const { port } = start({ tls: "tls" });
    const c = await client(port, { token: tokens.write, tls: { ca: await ca() } });
    await c.setFeatures("t", { v: 1 });
    expect((await c.getFeatures("t")).features.v).toBe(1);
  });

  test("a plaintext client on the TLS port is refused (its calls fail; the handshake failure is counted)", async () => {
    const { port, auth } = start({ tls: "tls" });
    const c = await client(port, { token: tokens.write, deadlineMs: 300 });
    expect(await codeOf(c.getFeatures("t"))).not.toBe(Code.OK);
    const started = performance.now();
    while (auth.failures[AuthFailure.Tls] === 0 && performance.now() - started < 5000) await Bun.sleep(10);
    expect(auth.failures[AuthFailure.Tls]).toBeGreaterThan(0);
  });

  test("a client that does not trust the server's CA refuses the connection", async () => {
    const { port } = start({ tls: "tls" });
    const c = await client(port, { token: tokens.write, deadlineMs: 300, tls: {} });
    expect(await codeOf(c.getFeatures("t"))).not.toBe(Code.OK);
  });

  test("mTLS: a client certificate from the CA is accepted; none, or a stranger's, is refused", async () => {
    const { port } = start({ tls: "mtls" });
    const [cert, key, strangerCert, strangerKey] = await Promise.all(
      [pki.clientCert, pki.clientKey, pki.strangerCert, pki.strangerKey].map((f) => Bun.file(f).text()),
    );
    const good = await client(port, { token: tokens.write, tls: { ca: await ca(), cert, key } });
    await good.setFeatures("m", { v: 1 });
    expect((await good.getFeatures("m")).features.v).toBe(1);
    const none = await client(port, { token: tokens.write, deadlineMs: 300, tls: { ca: await ca() } });
    expect(await codeOf(none.getFeatures("m"))).not.toBe(Code.OK);
    const stranger = await client(port, {
      token: tokens.write,
      deadlineMs: 300,
      tls: { ca: await ca(), cert: strangerCert, key: strangerKey },
    });
    expect(await codeOf(stranger.getFeatures("m"))).not.toBe(Code.OK);
  });

  test("a rotated certificate is served to new connections without a restart; open ones keep working", async () => {
    const { port } = start({ tls: "tls" });
    const caPem = await ca();
    const serial = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: "127.0.0.1", port, ca: caPem, servername: "localhost" }, () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.end();
        });
        s.on("error", reject);
      });
    const open = await client(port, { token: tokens.write, tls: { ca: caPem } });
    await open.setFeatures("k", { v: 1 });
    const before = await serial();
    const rotated = (await pki.rotateServer()).replace("serial=", "");
    const started = performance.now();
    // A connection that arrives while the new listener takes over may be reset: try again.
    while ((await serial().catch(() => before)) === before) {
      if (performance.now() - started > 10_000) throw new Error("the new certificate was never served");
      await Bun.sleep(20);
    }
    expect((await serial()).toUpperCase()).toBe(rotated.toUpperCase());
    expect((await open.getFeatures("k")).features.v).toBe(1);
  });
});
