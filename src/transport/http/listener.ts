/**
 * The Bun.serve listener of the HTTP port, plaintext or TLS, and its certificate rotation.
 *
 * With TLS, Bun.serve takes `tls: { cert, key, ca, requestCert, rejectUnauthorized }`; with a
 * CA (TLS_CA_FILE) a client must present a certificate that chains to it, or the handshake
 * fails before any HTTP is read (mTLS).
 *
 * Rotation: Bun.serve's `reload()` swaps handlers only; it accepts `tls` and ignores it (checked
 * on Bun 1.4.5: after `reload({ tls })` new connections still get the old certificate; also
 * oven-sh/bun#43815), and a Bun.serve server has no `setSecureContext`. So a new certificate
 * gets a new listener on the same port (`SO_REUSEPORT`, set on every TLS listener for this),
 * then the old one stops listening and lets its connections finish. Between the two steps the
 * kernel hands new connections to either; afterwards only the new one accepts. Both steps run
 * in one turn of the event loop, so the only connections lost are those the kernel queued on
 * the old listener since its last accept (Linux resets them when it closes). `SO_REUSEPORT`
 * also lets a second process of the same user bind the port without EADDRINUSE; only TLS
 * listeners set it.
 *
 * A plaintext request to a TLS port fails the handshake and Bun closes the connection without
 * an answer. Bun.serve exposes no hook for a failed handshake (no `tlsClientError`, and
 * `error` is not called), so the server cannot log it; the listener logs at start that TLS is
 * on, so a client's "connection closed" has an explanation in the log.
 */
import type { Server } from "bun";
import type { TlsMaterial, TlsSource } from "../../auth/tls.ts";
import type { Logger } from "../../log/index.ts";

/** What every listener of the port is built with, TLS aside. */
export interface ListenerOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Bun.serve's `fetch`. */
  fetch: (req: Request) => Response | Promise<Response>;
  /** Bun.serve's `error`: the answer when `fetch` throws. */
  error: (err: Error) => Response;
  /** TLS material, reloaded on change; null or absent = plaintext. */
  tls?: TlsSource | null;
}

/** The listener of the HTTP port: one Bun.serve server, replaced when the certificate changes. */
export class Listener {
  /** The port listened on (the chosen one when the option was 0). */
  readonly port: number;
  private server: Server<undefined>;
  /** Listeners replaced by a rotation, until their connections are done. */
  private readonly retiring = new Set<Server<undefined>>();
  private stopped = false;

  /** Binds the port (throws when it cannot); with TLS, subscribes to certificate changes. */
  constructor(private readonly opts: ListenerOptions) {
    const tls = opts.tls ?? null;
    this.server = this.serve(opts.port, tls === null ? null : tls.current, tls?.mutual ?? false);
    this.port = this.server.port ?? opts.port;
    if (tls === null) return;
    opts.logger.info("http server: TLS on; plaintext connections are closed at the handshake", {
      port: this.port,
      clientCertificates: tls.mutual ? "required" : "not asked for",
    });
    tls.onChange((m) => this.rotate(m, tls.mutual));
  }

  private serve(port: number, tls: TlsMaterial | null, mutual: boolean): Server<undefined> {
    const { host, fetch, error } = this.opts;
    return Bun.serve({
      hostname: host,
      port,
      development: false,
      // Bun's own limit would answer 413 with no protocol body before our handler runs; ours
      // (readBody) answers in Connect or gRPC-web terms, from Content-Length before anything is
      // buffered, and stops reading a body without one as soon as it passes the limit.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      ...(tls === null
        ? {}
        : {
            reusePort: true,
            tls: {
              cert: tls.cert,
              key: tls.key,
              ca: mutual ? tls.ca : undefined,
              requestCert: mutual,
              rejectUnauthorized: mutual,
            },
          }),
      fetch,
      error,
    });
  }

  /** Puts new TLS material in use for new connections (see the file comment). */
  private rotate(m: TlsMaterial, mutual: boolean): void {
    if (this.stopped) return;
    let next: Server<undefined>;
    try {
      next = this.serve(this.port, m, mutual);
    } catch (err) {
      this.opts.logger.error("http server: the new certificate cannot be used; the previous one stays", {
        err: (err as Error).message,
      });
      return;
    }
    const old = this.server;
    this.server = next;
    this.retiring.add(old);
    old.stop(false).finally(() => this.retiring.delete(old));
    this.opts.logger.info("http server: new connections use the new certificate", { port: this.port });
  }

  /**
   * Stops listening. `closeActive` false: connections finish their requests first; true: they
   * are cut. Resolves once every connection of every listener is closed.
   */
  stop(closeActive: boolean): Promise<void> {
    this.stopped = true;
    const all = [this.server, ...this.retiring].map((s) => s.stop(closeActive));
    return Promise.all(all).then(() => {});
  }
}
