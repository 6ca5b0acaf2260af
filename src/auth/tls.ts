/**
 * TLS material for every listener (TLS_CERT_FILE, TLS_KEY_FILE, optional TLS_CA_FILE for
 * client certificates), read at start and again whenever one of the files changes (checked
 * every RELOAD_CHECK_MS) or on SIGHUP: listeners subscribe with `onChange` and swap their
 * context (Bun.serve `reload`, http2 `setSecureContext`, new TCP connections use the latest).
 * A pair that does not load at start stops the server (exit 2, naming the file); on a reload
 * it is refused and the previous certificate stays in use (logged).
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import type { Logger } from "../log/index.ts";
import { RELOAD_CHECK_MS } from "./tokens.ts";

/** PEM texts as the listeners take them. */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** Client certificates must chain to this (mTLS); undefined = none asked for. */
  ca?: string;
}

/** A certificate setting the server cannot start with; the message names the file. */
export class TlsConfigError extends Error {
  override readonly name = "TlsConfigError";
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string | null;
}

/** Reads and checks the files: the key must parse and match the certificate. Throws TlsConfigError. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw new TlsConfigError(`${what} ${path} cannot be read: ${(err as Error).message}`);
    }
  };
  const cert = read(files.certFile, "TLS_CERT_FILE");
  const key = read(files.keyFile, "TLS_KEY_FILE");
  const ca = files.caFile === null ? undefined : read(files.caFile, "TLS_CA_FILE");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new TlsConfigError(
      `TLS_CERT_FILE ${files.certFile} is not a PEM certificate: ${(err as Error).message}`,
    );
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key)))
      throw new TlsConfigError(
        `TLS_KEY_FILE ${files.keyFile} is not the key of TLS_CERT_FILE ${files.certFile}`,
      );
  } catch (err) {
    if (err instanceof TlsConfigError) throw err;
    throw new TlsConfigError(
      `TLS_KEY_FILE ${files.keyFile} is not a PEM private key: ${(err as Error).message}`,
    );
  }
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new TlsConfigError(
        `TLS_CA_FILE ${files.caFile} is not a PEM certificate: ${(err as Error).message}`,
      );
    }
  }
  return { cert, key, ca };
}

/** The current TLS material, reloaded when its files change. */
export class TlsSource {
  private material: TlsMaterial;
  private readonly listeners: ((m: TlsMaterial) => void)[] = [];
  private stamp: string;
  private readonly timer: ReturnType<typeof setInterval>;

  /** Loads the files (throws TlsConfigError) and starts watching them. */
  constructor(
    private readonly files: TlsFiles,
    private readonly logger: Logger,
  ) {
    this.material = loadTls(files);
    this.stamp = this.fileStamp();
    this.timer = setInterval(() => {
      if (this.fileStamp() !== this.stamp) this.reload();
    }, RELOAD_CHECK_MS);
    this.timer.unref();
  }

  get current(): TlsMaterial {
    return this.material;
  }

  /** True when clients must present a certificate (TLS_CA_FILE). */
  get mutual(): boolean {
    return this.files.caFile !== null;
  }

  /** Calls `f` with the new material after every successful reload; returns the unsubscribe. */
  onChange(f: (m: TlsMaterial) => void): () => void {
    this.listeners.push(f);
    return () => {
      const i = this.listeners.indexOf(f);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Reads the files again (on change, or SIGHUP); keeps the old material if they do not load. */
  reload(): void {
    this.stamp = this.fileStamp();
    let next: TlsMaterial;
    try {
      next = loadTls(this.files);
    } catch (err) {
      this.logger.error("TLS files refused; the previous certificate stays in use", {
        err: (err as Error).message,
      });
      return;
    }
    this.material = next;
    for (const f of this.listeners) f(next);
    this.logger.info("TLS certificate reloaded", { cert: this.files.certFile });
  }

  private fileStamp(): string {
    const { certFile, keyFile, caFile } = this.files;
    return [certFile, keyFile, caFile]
      .map((p) => {
        if (p === null) return "";
        try {
          const st = statSync(p);
          return `${st.mtimeMs}:${st.size}:${st.ino}`;
        } catch {
          return "missing";
        }
      })
      .join("|");
  }

  close(): void {
    clearInterval(this.timer);
  }
}
