/**
 * A bare gRPC unary client on `node:http2`: one HTTP/2 session per connection, one stream per
 * call, the request message framed by hand, the answer message handed back as bytes. No
 * interceptors, no call objects, no deadline timers: the least a gRPC client can do in Bun.
 *
 * It is a measuring instrument, not what a user would run: `@grpc/grpc-js` on Bun saturates
 * at a few thousand calls per second, below what either gRPC server can serve, so this client
 * is what shows the servers' own difference.
 *
 * ```
 * request  HEADERS :method POST, :path /pkg.Service/Method, content-type application/grpc, te trailers
 *          DATA    [0x00][u32 BE length][message]            (END_STREAM)
 * answer   HEADERS :status 200 (or trailers-only: grpc-status in this block)
 *          DATA    [flags][u32 BE length][message]
 *          HEADERS grpc-status, grpc-message                 (trailers)
 * ```
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";

const PREFIX_BYTES = 5;

/** One HTTP/2 connection making gRPC unary calls. */
export class H2GrpcClient {
  private constructor(private readonly session: ClientHttp2Session) {}

  /** Connects to `host:port` (cleartext, prior knowledge); resolves once the session is up. */
  static connect(host: string, port: number, timeoutMs = 10_000): Promise<H2GrpcClient> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://${host}:${port}`);
      const t = setTimeout(() => {
        session.destroy();
        reject(new Error(`h2 connect to ${host}:${port}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      session.once("connect", () => {
        clearTimeout(t);
        session.removeAllListeners("error");
        // An error after connecting fails the calls in flight (their streams error too).
        session.on("error", () => {});
        resolve(new H2GrpcClient(session));
      });
      session.once("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
    });
  }

  /** Calls `path` with one message; resolves with the answer message (without its prefix). */
  call(path: string, message: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let detail: string | undefined;
      const onStatus = (h: IncomingHttpHeaders) => {
        const s = h["grpc-status"];
        if (typeof s === "string") {
          status = s;
          detail = h["grpc-message"] as string | undefined;
        }
      };
      stream.on("response", onStatus); // trailers-only answers carry the status here
      stream.on("trailers", onStatus);
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      stream.on("end", () => {
        if (status !== "0") {
          reject(new Error(`grpc-status ${status ?? "missing"}: ${decodeURIComponent(detail ?? "")}`));
          return;
        }
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (all.length < PREFIX_BYTES) {
          reject(new Error(`answer of ${all.length} bytes has no message`));
          return;
        }
        resolve(all.subarray(PREFIX_BYTES, PREFIX_BYTES + all.readUInt32BE(1)));
      });
      const framed = Buffer.allocUnsafe(PREFIX_BYTES + message.length);
      framed[0] = 0;
      framed.writeUInt32BE(message.length, 1);
      framed.set(message, PREFIX_BYTES);
      stream.end(framed);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.session.close(() => resolve()));
  }
}
