/**
 * What the gRPC tests share: the feature store started in-process with its native gRPC port, a
 * reference server built from the maintained grpc-js packages (`@grpc/reflection`,
 * `grpc-health-check`), clients generated from proto/ by `@grpc/proto-loader`, a raw HTTP/2
 * call for what a well-behaved client never sends, and `buf curl`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { type RunningServer, startServer } from "../../src/main.ts";
import {
  file_featurestore_v1_featurestore,
  GetFeaturesRequestSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.ts";

/** proto/, the include directory of every .proto file. */
export const PROTO_DIR = join(import.meta.dir, "../../proto");
/** The buf CLI from devDependencies (there is no global one). */
const BUF = join(import.meta.dir, "../../node_modules/.bin/buf");

export const SERVICE = "featurestore.v1.FeatureStoreService";
export const METHODS = [
  "GetFeatures",
  "BatchGet",
  "SetFeatures",
  "BatchSet",
  "DeleteFeatures",
  "UpdateFeatures",
  "PublishVersion",
  "RollbackVersion",
  "DropVersion",
  "GetFeatureSet",
] as const;

/**
 * Field names as in the .proto (keepCase), int64 as decimal strings, enums by name, unset
 * scalars at their defaults and the set member of each oneof named in `kind`.
 */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** The clients' view: featurestore.proto and health.proto parsed by proto-loader. */
const clientDefinition = protoLoader.loadSync(
  ["featurestore/v1/featurestore.proto", "grpc/health/v1/health.proto"],
  LOADER_OPTIONS,
);

/**
 * The reference server's view: the clients' definition, with the descriptors it carries for
 * reflection replaced by the ones buf compiled (protobuf-es embeds them in test/gen). protobufjs
 * re-describes what it parsed wrongly for map fields: from .proto sources the entry is a nested
 * message `Features` without `map_entry`; from a compiled set the enclosing message gets
 * `map_entry` too. Go reflection clients (buf curl, grpcurl) reject both, so `@grpc/reflection`
 * could not describe this service at all (fullstorydev/grpcurl#519).
 */
export const referenceDefinition: protoLoader.PackageDefinition = (() => {
  const compiled = [file_featurestore_v1_featurestore, file_grpc_health_v1_health].map((f) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)),
  );
  const def: protoLoader.PackageDefinition = {};
  for (const [name, entry] of Object.entries(clientDefinition))
    def[name] =
      "fileDescriptorProtos" in entry
        ? ({ ...entry, fileDescriptorProtos: compiled } as typeof entry)
        : entry;
  return def;
})();

const loaded = grpc.loadPackageDefinition(clientDefinition) as unknown as {
  featurestore: { v1: { FeatureStoreService: grpc.ServiceClientConstructor } };
  grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
};
const FeatureStoreClient = loaded.featurestore.v1.FeatureStoreService;
const HealthClient = loaded.grpc.health.v1.Health;

// ---- messages as proto-loader gives them (keepCase, longs as strings) -----------------------

/** One FeatureValue: exactly one member of the `kind` oneof, and when it was true. */
export interface FeatureValue {
  int_value?: string;
  double_value?: number;
  string_value?: string;
  bool_value?: boolean;
  bytes_value?: Uint8Array;
  float_list?: { values: number[] };
  int_list?: { values: string[] };
  string_list?: { values: string[] };
  /** ms since the epoch, int64 as a decimal string; "0" on write means the server's clock. */
  event_time_ms?: string;
  /** The feature's default maximum age, ms ("0" = none). */
  max_age_ms?: string;
  /** Set by the loader on answers: which member is present. */
  kind?: string;
}
export interface GetFeaturesResponse {
  entity_id: string;
  features: Record<string, FeatureValue>;
  found: boolean;
  missing: string[];
  stale: string[];
  read_time_ms: string;
}
export interface BatchGetResponse {
  results: GetFeaturesResponse[];
  hits: number;
  misses: number;
}
export interface SetFeaturesRequest {
  entity_id: string;
  features: Record<string, FeatureValue>;
  ttl_ms?: string;
  replace?: boolean;
  feature_set?: string;
  version?: string;
}
/** FeatureSetInfo: a feature set's pointers after a change, or as read. */
export interface FeatureSetInfo {
  feature_set: string;
  current: string;
  previous: string;
  dropping: string[];
}
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** A finished call: the answer, or the status it failed with. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; code: grpc.status; details: string };

/** Calls a unary method of a proto-loader client and waits for its outcome (never rejects). */
export function call<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  options: grpc.CallOptions = {},
): Promise<Outcome<T>> {
  type Unary = (
    request: unknown,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<T>,
  ) => grpc.ClientUnaryCall;
  const fn = (client as unknown as Record<string, Unary | undefined>)[method];
  if (typeof fn !== "function") throw new Error(`the client has no method ${method}`);
  return new Promise((resolve) => {
    fn.call(client, request, new grpc.Metadata(), options, (err, value) => {
      if (err) resolve({ ok: false, code: err.code, details: err.details });
      else resolve({ ok: true, value: value as T });
    });
  });
}

/** Like `call`, but an error fails the test with its code and details. */
export async function ok<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  options?: grpc.CallOptions,
): Promise<T> {
  const out = await call<T>(client, method, request, options);
  if (!out.ok) throw new Error(`${method} failed: ${grpc.status[out.code]} ${out.details}`);
  return out.value;
}

/** Channel options of a client that opens its own connection, shared with no other client. */
export const OWN_CONNECTION: grpc.ChannelOptions = { "grpc.use_local_subchannel_pool": 1 };

/** A FeatureStoreService client generated from featurestore.proto. */
export function featureStoreClient(port: number, options: grpc.ChannelOptions = {}): grpc.Client {
  return new FeatureStoreClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
}

/** A grpc.health.v1.Health client generated from health.proto. */
export function healthClient(port: number): grpc.Client {
  return new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), OWN_CONNECTION);
}

// ---- the servers ----------------------------------------------------------------------------

/** A gRPC server under test: where it listens and how it stops. */
export interface GrpcTarget {
  readonly port: number;
  /**
   * Graceful shutdown: health goes NOT_SERVING (or health watches end), new calls are refused,
   * resolves once every connection is closed. Idempotent.
   */
  shutdown(): Promise<void>;
}

/** The feature store, every transport in-process, with its data in a fresh directory. */
export interface FeatureStoreTarget extends GrpcTarget {
  readonly server: RunningServer;
  readonly httpPort: number;
}

/**
 * Starts the feature store (`startServer` from main.ts) on loopback ports 0 over a SQLite file
 * in a temporary directory, removed at shutdown. Writes are acknowledged once the OS has them
 * (DURABILITY=async: no fsync per test write) and shutdown cuts what is left after 2 s.
 * `env` overrides any of it (MAX_FRAME_BYTES, DURABILITY...).
 */
export async function startFeatureStore(env: Record<string, string> = {}): Promise<FeatureStoreTarget> {
  const dataDir = mkdtempSync(join(tmpdir(), "featurestore-grpc-"));
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
    silentLogger,
  );
  const grpcServer = server.grpc;
  if (grpcServer === null) throw new Error("GRPC_ENABLED is false");
  let stopping: Promise<void> | null = null;
  const shutdown = () => {
    stopping ??= server.shutdown().finally(() => rmSync(dataDir, { recursive: true, force: true }));
    return stopping;
  };
  try {
    await grpcServer.listening;
  } catch (err) {
    await shutdown();
    throw err;
  }
  return { server, port: grpcServer.port, httpPort: server.http.port, shutdown };
}

/**
 * A grpc-js server made only of maintained parts: `@grpc/reflection`'s ReflectionService over a
 * proto-loader definition of featurestore.proto and health.proto, `grpc-health-check`'s
 * HealthImplementation, and a FeatureStoreService that keeps SetFeatures requests in a Map.
 * It is the yardstick the feature store's health and reflection must match.
 */
export async function startReferenceServer(): Promise<GrpcTarget> {
  const server = new grpc.Server();
  const health = new HealthImplementation({ "": "SERVING", [SERVICE]: "SERVING" });
  health.addToServer(server);
  new ReflectionService(referenceDefinition).addToServer(server);
  const records = new Map<string, SetFeaturesRequest>();
  type Unary = grpc.handleUnaryCall<Record<string, unknown>, unknown>;
  const getFeatures: Unary = (c, done) => {
    const id = c.request.entity_id as string;
    const r = records.get(id);
    done(null, { entity_id: id, features: r?.features ?? {}, found: r !== undefined, missing: [] });
  };
  const setFeatures: Unary = (c, done) => {
    records.set(c.request.entity_id as string, c.request as unknown as SetFeaturesRequest);
    done(null, {});
  };
  const unimplemented: Unary = (_c, done) => done({ code: grpc.status.UNIMPLEMENTED });
  server.addService(referenceDefinition[SERVICE] as grpc.ServiceDefinition, {
    GetFeatures: getFeatures,
    SetFeatures: setFeatures,
    BatchGet: unimplemented,
    BatchSet: unimplemented,
    DeleteFeatures: unimplemented,
    UpdateFeatures: unimplemented,
    PublishVersion: unimplemented,
    RollbackVersion: unimplemented,
    DropVersion: unimplemented,
    GetFeatureSet: unimplemented,
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  let stopping: Promise<void> | null = null;
  return {
    port,
    shutdown() {
      stopping ??= new Promise<void>((resolve) => {
        health.setStatus("", "NOT_SERVING");
        health.setStatus(SERVICE, "NOT_SERVING");
        // Calls still open (a health watch the test forgot) are cut after a while, as the feature store does.
        const force = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return stopping;
    },
  };
}

// ---- raw HTTP/2 -----------------------------------------------------------------------------

/** What came back for a raw HTTP/2 request. */
export interface RawAnswer {
  /** The HTTP status. */
  status: number;
  /** grpc-status from the trailers or, for a trailers-only answer, from the headers. */
  grpcStatus: number | null;
  grpcMessage: string;
  body: Buffer;
}

/** What a raw request does once its body is written. */
export type After =
  /** ends the request stream (END_STREAM), as every client does */
  | "end"
  /** leaves it open: the server must answer without the rest */
  | "open"
  /** resets it (RST_STREAM CANCEL): the client gave up mid-request */
  | "reset";

/** One request on its own HTTP/2 session: headers, then each chunk of `body` as DATA, then `after`. */
export function rawRequest(
  port: number,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array[] = [],
  after: After = "end",
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ...headers });
    const chunks: Buffer[] = [];
    const answer: RawAnswer = { status: 0, grpcStatus: null, grpcMessage: "", body: Buffer.alloc(0) };
    const grpcStatus = (h: http2.IncomingHttpHeaders) => {
      const s = h["grpc-status"];
      if (typeof s === "string") answer.grpcStatus = Number(s);
      const m = h["grpc-message"];
      if (typeof m === "string") answer.grpcMessage = decodeURIComponent(m);
    };
    stream.on("response", (h) => {
      answer.status = Number(h[":status"]);
      grpcStatus(h);
    });
    stream.on("trailers", grpcStatus);
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {}); // a reset after the answer: the answer is what counts
    stream.on("close", () => {
      answer.body = Buffer.concat(chunks);
      session.close();
      resolve(answer);
    });
    for (const c of body) stream.write(c);
    if (after === "end") stream.end();
    else if (after === "reset")
      stream.write(new Uint8Array(0), () => stream.close(http2.constants.NGHTTP2_CANCEL));
  });
}

/** The headers of a gRPC call to `path`. */
export function grpcHeaders(path: string, extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  return { ":path": path, "content-type": "application/grpc", te: "trailers", ...extra };
}

/** A gRPC message: flags, the big-endian length, the payload. */
export function lengthPrefixed(payload: Uint8Array, length = payload.length): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(length, 1);
  out.set(payload, 5);
  return out;
}

/** A GetFeaturesRequest as bytes (protobuf-es, not the server's codec). */
export function getRequestBytes(entityId: string): Buffer {
  return Buffer.from(toBinary(GetFeaturesRequestSchema, create(GetFeaturesRequestSchema, { entityId })));
}

/** A SetFeaturesRequest writing one int64 feature, as bytes. */
export function setRequestBytes(entityId: string, name: string, value: bigint): Buffer {
  const request = create(SetFeaturesRequestSchema, {
    entityId,
    features: { [name]: { kind: { case: "intValue", value } } },
  });
  return Buffer.from(toBinary(SetFeaturesRequestSchema, request));
}

// ---- buf curl -------------------------------------------------------------------------------

/** What `buf curl` printed and how it exited. */
export interface CurlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `buf curl --protocol grpc --http2-prior-knowledge <args>` without a schema, so it asks the
 * server's reflection service. Spawned asynchronously: the server runs in this process.
 */
export async function bufCurl(args: string[]): Promise<CurlResult> {
  const proc = Bun.spawn([BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
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
