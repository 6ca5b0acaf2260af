/**
 * Test PKI made with openssl: a self-signed CA, a server certificate for 127.0.0.1/localhost
 * signed by it, a client certificate signed by it (mTLS), a second CA and a client certificate
 * of that one (a client the server must refuse), and tokens files. Everything lives in a fresh
 * temporary directory; `removeDir(pki.dir)` cleans up.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createToken } from "../../src/auth/tokens.ts";

export interface Pki {
  dir: string;
  /** PEM files. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by another CA: refused by a server that asks for certificates. */
  strangerCert: string;
  strangerKey: string;
  /** Writes a new server certificate + key (same CA) over the files, for reload tests; returns its serial. */
  rotateServer(): Promise<string>;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const proc = Bun.spawn(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`openssl ${args.join(" ")}: ${await new Response(proc.stderr).text()}`);
}

/** Makes a key and a certificate `name` signed by the CA `ca` (or self-signed when ca is null). */
async function issue(
  dir: string,
  name: string,
  cn: string,
  ca: string | null,
  server: boolean,
): Promise<void> {
  await openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-subj",
    `/CN=${cn}`,
    "-out",
    `${name}.csr`,
  );
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    ca === null
      ? "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
      : server
        ? "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        : "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
  );
  const sign =
    ca === null
      ? ["-signkey", `${name}.key`]
      : ["-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial"];
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    ...sign,
    "-days",
    "2",
    "-sha256",
    "-extfile",
    ext,
    "-out",
    `${name}.crt`,
  );
}

export async function makePki(): Promise<Pki> {
  const dir = mkdtempSync(join(tmpdir(), "fs-pki-"));
  await issue(dir, "ca", "featurestore test CA", null, false);
  await issue(dir, "server", "127.0.0.1", "ca", true);
  await issue(dir, "client", "test client", "ca", false);
  await issue(dir, "other-ca", "another CA", null, false);
  await issue(dir, "stranger", "stranger", "other-ca", false);
  const f = (n: string) => join(dir, n);
  return {
    dir,
    caCert: f("ca.crt"),
    serverCert: f("server.crt"),
    serverKey: f("server.key"),
    clientCert: f("client.crt"),
    clientKey: f("client.key"),
    strangerCert: f("stranger.crt"),
    strangerKey: f("stranger.key"),
    async rotateServer() {
      await issue(dir, "server", "127.0.0.1", "ca", true);
      const proc = Bun.spawn(["openssl", "x509", "-in", "server.crt", "-noout", "-serial"], {
        cwd: dir,
        stdout: "pipe",
      });
      return (await new Response(proc.stdout).text()).trim();
    },
  };
}

/** The tokens of a test: one per scope set, and the file that lists them. */
export interface TestTokens {
  file: string;
  read: string;
  write: string;
  admin: string;
  /** Rewrites the file without `name`'s line (revocation). */
  revoke(name: "reader" | "writer" | "admin"): void;
}

export function makeTokens(dir: string): TestTokens {
  const reader = createToken("reader", ["read"]);
  const writer = createToken("writer", ["read", "write"]);
  const admin = createToken("admin", ["admin"]);
  const file = join(dir, "tokens");
  const lines = { reader: reader.line, writer: writer.line, admin: admin.line };
  const write = () => writeFileSync(file, `# test tokens\n${Object.values(lines).join("\n")}\n`);
  write();
  return {
    file,
    read: reader.token,
    write: writer.token,
    admin: admin.token,
    revoke(name) {
      delete (lines as Partial<typeof lines>)[name];
      write();
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
