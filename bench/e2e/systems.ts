/**
 * Every competitor behind one small interface: a system is started (a separate process), loaded
 * with the same N entities, opened with K connections, and asked for an `OpFn` per operation and
 * client mode. The load generator never knows which system it drives.
 *
 * - `tcp`: our server, binary TCP protocol, our FeatureStoreClient.
 * - `connect`: our server (same process), Connect unary with binary protobuf over HTTP/1.1 fetch.
 * - `redis`: redis-server from apt, hashes, Bun's built-in RedisClient.
 * - `floor`: a Bun.listen server answering every frame with a fixed frame, through our client's raw `call()`.
 * - `grpc`: our server's native gRPC port, `@grpc/grpc-js` client (proto-loader stubs, or identity serializers for raw).
 * - `stock`: a stock `@grpc/grpc-js` server (`grpc-stock-server.ts`), the same client.
 * - `grpc-h2`, `stock-h2`: the same two servers through a bare `node:http2` gRPC client (raw only),
 *   which shows the servers' cost where grpc-js on Bun is the limit.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { RedisClient } from "bun";
import { FeatureStoreClient, TcpTransport } from "../../src/client/index.ts";
import { decodeDenseBatchGet, decodeDenseGet } from "../../src/codec/dense.ts";
import type { FeaturesInput } from "../../src/codec/features.ts";
import { Method } from "../../src/codec/frame.ts";
import {
  decodeBatchGetResponse,
  decodeGetFeaturesResponse,
  encodeBatchSetRequest,
  encodeSetFeaturesRequest,
  type SetFeaturesItem,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { H2GrpcClient } from "./grpc-h2-client.ts";
import { loadService } from "./grpc-stock-server.ts";
import type { OpFn } from "./load.ts";
import { freePort, type Proc, rssBytes, spawnProc, waitForPort } from "./procs.ts";
import {
  decodeRedisFields,
  decodeRedisHash,
  entityId,
  entityValues,
  ourFeatures,
  ourWrite,
  PROJECTED,
  redisFields,
  redisWrite,
  stubWrite,
  workloadSpec,
} from "./workload.ts";

export const OPS = ["get_all", "get_proj5", "batch10", "batch100", "set5", "mix95_5"] as const;
export type OpName = (typeof OPS)[number];
export const OP_LABELS: Record<OpName, string> = {
  get_all: "GetFeatures (all 20)",
  get_proj5: "GetFeatures (5 names)",
  batch10: "BatchGet 10",
  batch100: "BatchGet 100",
  set5: "SetFeatures (5)",
  mix95_5: "95/5 read/write",
};
/**
 * Raw: answer bytes handed back undecoded (measures the server). Typed: decoded into values (what
 * users get). Dense: decoded into a Float32Array by a FeatureVectorSpec (what a model takes;
 * GetFeatures and BatchGet only).
 */
export type Mode = "raw" | "typed" | "dense";
export type SystemName =
  | "tcp"
  | "connect"
  | "redis"
  | "floor"
  | "httpfloor"
  | "grpc"
  | "stock"
  | "grpc-h2"
  | "stock-h2";

/** What the op functions share: the entity ids and the key stream of the cell. */
export interface OpInput {
  ids: readonly string[];
  /** Entity indexes, a power-of-two length; request `seq` of a batch of B uses keys[(seq*B + j) & mask]. */
  keys: Int32Array;
}

export interface Driver {
  /** The op function, or null when the system does not do this op in this mode. */
  op(op: OpName, mode: Mode, input: OpInput): OpFn | null;
  close(): Promise<void>;
}

/** A system's primitives, from which every operation of the workload is built. */
interface OpParts {
  getAll: OpFn;
  getProj5: OpFn;
  batch: (size: number) => OpFn;
  set: OpFn;
}

/** Maps an operation onto a system's primitives: the workload (batch sizes, the 95/5 mix) is defined once. */
function opFrom(op: OpName, p: OpParts): OpFn {
  switch (op) {
    case "get_all":
      return p.getAll;
    case "get_proj5":
      return p.getProj5;
    case "batch10":
      return p.batch(10);
    case "batch100":
      return p.batch(100);
    case "set5":
      return p.set;
    case "mix95_5":
      return (seq, slot) => (seq % 20 === 0 ? p.set(seq, slot) : p.getAll(seq, slot));
  }
}

export interface LoadResult {
  entities: number;
  seconds: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  /** (RSS after - RSS before) / N. */
  bytesPerEntity: number;
  /** Redis only: INFO used_memory delta / N. */
  usedMemoryPerEntity?: number;
}

export interface System {
  readonly name: SystemName;
  /** The server process (for CPU and RSS); shared by tcp and connect. */
  readonly proc: Proc;
  /** Opens a client with `connections` connections. */
  open(connections: number): Promise<Driver>;
}

/** Write payloads reused round-robin, so a write costs no data generation in the timed loop. */
const WRITE_POOL = 256;

// ---- our server -------------------------------------------------------------------------------

export interface OurServer {
  proc: Proc;
  tcpPort: number;
  httpPort: number;
}

/** A server started by `startOurServer`: also its native gRPC port. */
export interface OurStartedServer extends OurServer {
  grpcPort: number;
}

/** Starts `bun <entry>` (src/main.ts) in `root` with the given env, pinned to `cpus`. */
export async function startOurServer(
  root: string,
  entry: string,
  n: number,
  env: Record<string, string>,
  cpus: string | undefined,
  profileDir?: string,
): Promise<OurStartedServer> {
  // A data directory of its own unless one is given: two servers of one run cannot share
  // ./data (SQLite refuses a locked database), and a run must not leave a database behind.
  const ownDir = env.DATA_DIR === undefined ? mkdtempSync(join(tmpdir(), "fs-bench-")) : undefined;
  const tcpPort = freePort();
  const httpPort = freePort();
  // A free port rather than the default 50052, so that two servers of one run do not collide.
  const grpcPort = freePort();
  const proc = spawnProc({
    name: "featurestore",
    cmd: [
      process.execPath,
      // A CPU profile of the server, written (as .cpuprofile and grep-able markdown) when it stops.
      ...(profileDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${profileDir}`] : []),
      entry,
    ],
    cwd: root,
    cpus,
    env: {
      HOST: "127.0.0.1",
      TCP_PORT: String(tcpPort),
      HTTP_PORT: String(httpPort),
      GRPC_PORT: String(grpcPort),
      // Room for every entity: the benchmark measures serving, not eviction.
      CACHE_SIZE: String(Math.max(1024, Math.ceil(n * 1.25))),
      CACHE_MAX_BYTES: String(Math.max(64 << 20, n * 4096)),
      LOG_LEVEL: "warn",
      ...(ownDir !== undefined ? { DATA_DIR: ownDir } : {}),
      ...env,
    },
  });
  if (ownDir !== undefined) {
    const stop = proc.stop;
    proc.stop = async (graceMs) => {
      await stop(graceMs);
      rmSync(ownDir, { recursive: true, force: true });
    };
  }
  await waitForPort(tcpPort, proc);
  await waitForPort(grpcPort, proc);
  return { proc, tcpPort, httpPort, grpcPort };
}

/** Loads N entities with BatchSet (500 per batch, 4 batches in flight). */
export async function loadOurs(srv: OurServer, n: number): Promise<LoadResult> {
  const client = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${srv.tcpPort}`],
    connectionsPerServer: 2,
    deadlineMs: 60_000,
  });
  try {
    await Bun.sleep(200);
    const rssBefore = rssBytes(srv.proc.pid);
    const t0 = performance.now();
    const BATCH = 500;
    const INFLIGHT = 4;
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const from = next;
        const to = Math.min(n, from + BATCH);
        next = to;
        const items = [];
        for (let i = from; i < to; i++)
          items.push({ entityId: entityId(i), features: ourFeatures(entityValues(i)), replace: true });
        const written = await client.batchSet(items);
        if (written !== to - from) throw new Error(`BatchSet wrote ${written} of ${to - from}`);
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
    const seconds = (performance.now() - t0) / 1000;
    await Bun.sleep(300);
    const rssAfter = rssBytes(srv.proc.pid);
    // Sanity: a loaded entity reads back complete.
    const probe = await client.getFeatures(entityId(n - 1));
    if (!probe.found || Object.keys(probe.features).length !== 20)
      throw new Error(`load check failed: ${JSON.stringify(probe).slice(0, 200)}`);
    return {
      entities: n,
      seconds,
      rssBeforeBytes: rssBefore,
      rssAfterBytes: rssAfter,
      bytesPerEntity: (rssAfter - rssBefore) / n,
    };
  } finally {
    await client.close();
  }
}

function writePools(): {
  ours: FeaturesInput[];
  redis: Record<string, string>[];
  stub: Record<string, Record<string, unknown>>[];
} {
  const ours: FeaturesInput[] = [];
  const redis: Record<string, string>[] = [];
  const stub: Record<string, Record<string, unknown>>[] = [];
  for (let k = 0; k < WRITE_POOL; k++) {
    const v = entityValues(k, 1);
    ours.push(ourWrite(v));
    redis.push(redisWrite(v));
    stub.push(stubWrite(v));
  }
  return { ours, redis, stub };
}
const POOLS = writePools();

/** Our server over TCP with our client; `floor` reuses it for the raw GetFeatures call. */
export function tcpSystem(name: "tcp" | "floor", proc: Proc, port: number): System {
  return {
    name,
    proc,
    async open(connections) {
      const client = await FeatureStoreClient.connect({
        servers: [`127.0.0.1:${port}`],
        connectionsPerServer: connections,
        deadlineMs: 30_000,
      });
      // Wait until every connection of the pool is up, so the first cell is not skewed.
      const t = client.transport;
      for (let i = 0; i < 300 && t instanceof TcpTransport && t.stats().open < connections; i++)
        await Bun.sleep(10);
      return name === "floor" ? floorDriver(client) : tcpDriver(client);
    },
  };
}

function floorDriver(client: FeatureStoreClient): Driver {
  const w = new ProtoWriter(1024);
  return {
    op(op, mode, { ids, keys }) {
      if (op !== "get_all" || mode !== "raw") return null;
      const mask = keys.length - 1;
      return (seq) => {
        w.reset();
        w.stringField(1, ids[keys[seq & mask]!]!);
        return client.call(Method.GetFeatures, w.view());
      };
    },
    close: () => client.close(),
  };
}

/** Slots of a closed loop at most (K x D); each has its own dense output batch. */
const MAX_SLOTS = 256;

/**
 * The dense ops: getDense of 1 or `size` ids, each slot writing into its own batch (reused call
 * after call, as a server handling one request per slot would).
 */
function denseOps(
  client: FeatureStoreClient,
  op: OpName,
  ids: readonly string[],
  keys: Int32Array,
): OpFn | null {
  const size = op === "get_all" ? 1 : op === "batch10" ? 10 : op === "batch100" ? 100 : 0;
  if (size === 0) return null;
  const spec = workloadSpec();
  const mask = keys.length - 1;
  const outs = Array.from({ length: MAX_SLOTS }, () => spec.newBatch(size));
  const scratch = Array.from({ length: MAX_SLOTS }, () => new Array<string>(size).fill(""));
  return (seq, slot) => {
    const list = scratch[slot]!;
    const base = seq * size;
    for (let j = 0; j < size; j++) list[j] = ids[keys[(base + j) & mask]!]!;
    return client.getDense(list, spec, { out: outs[slot]! });
  };
}

function tcpDriver(client: FeatureStoreClient): Driver {
  const w = new ProtoWriter(16 * 1024);
  return {
    op(op, mode, { ids, keys }) {
      if (mode === "dense") return denseOps(client, op, ids, keys);
      const mask = keys.length - 1;
      const id = (seq: number) => ids[keys[seq & mask]!]!;
      const batch = (size: number): OpFn => {
        if (mode === "raw")
          return (seq) => {
            w.reset();
            const base = seq * size;
            for (let j = 0; j < size; j++) w.stringField(1, ids[keys[(base + j) & mask]!]!);
            return client.call(Method.BatchGet, w.view());
          };
        const scratch: string[] = new Array(size).fill("");
        return (seq) => {
          const base = seq * size;
          for (let j = 0; j < size; j++) scratch[j] = ids[keys[(base + j) & mask]!]!;
          return client.batchGet(scratch); // encoded before it returns: scratch may be reused
        };
      };
      const set: OpFn =
        mode === "raw"
          ? (seq) => {
              w.reset();
              encodeSetFeaturesRequest(w, {
                entityId: id(seq),
                features: POOLS.ours[seq & (WRITE_POOL - 1)]!,
              });
              return client.call(Method.SetFeatures, w.view());
            }
          : (seq) => client.setFeatures(id(seq), POOLS.ours[seq & (WRITE_POOL - 1)]!);
      const getAll: OpFn =
        mode === "raw"
          ? (seq) => {
              w.reset();
              w.stringField(1, id(seq));
              return client.call(Method.GetFeatures, w.view());
            }
          : (seq) => client.getFeatures(id(seq));
      const getProj5: OpFn =
        mode === "raw"
          ? (seq) => {
              w.reset();
              w.stringField(1, id(seq));
              for (const name of PROJECTED) w.stringField(2, name);
              return client.call(Method.GetFeatures, w.view());
            }
          : (seq) => client.getFeatures(id(seq), PROJECTED);
      return opFrom(op, { getAll, getProj5, batch, set });
    },
    close: () => client.close(),
  };
}

/** Our server over Connect (unary, binary protobuf) on HTTP/1.1, with Bun's fetch (keep-alive pool). */
export function connectSystem(
  proc: Proc,
  httpPort: number,
  name: "connect" | "httpfloor" = "connect",
): System {
  const base = `http://127.0.0.1:${httpPort}/featurestore.v1.FeatureStoreService/`;
  const headers = { "content-type": "application/proto", "connect-protocol-version": "1" };
  const spec = workloadSpec();
  return {
    name,
    proc,
    async open() {
      const w = new ProtoWriter(16 * 1024);
      const post = async (method: string, body: Uint8Array): Promise<Uint8Array> => {
        const res = await fetch(base + method, { method: "POST", headers, body });
        const bytes = await res.bytes();
        if (res.status !== 200)
          throw new Error(`${method}: HTTP ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`);
        return bytes;
      };
      return {
        op(op, mode, { ids, keys }) {
          const mask = keys.length - 1;
          const id = (seq: number) => ids[keys[seq & mask]!]!;
          // The Bun.serve floor answers every request alike: only its raw GetFeatures row means anything.
          if (name === "httpfloor" && (op !== "get_all" || mode !== "raw")) return null;
          if (mode === "dense") {
            const size = op === "get_all" ? 1 : op === "batch10" ? 10 : op === "batch100" ? 100 : 0;
            if (size === 0) return null;
            // One batch per in-flight call would do; decoding happens at once on arrival, so one is enough.
            const out = spec.newBatch(size);
            return (seq) => {
              w.reset();
              const base = seq * size;
              for (let j = 0; j < size; j++) w.stringField(1, ids[keys[(base + j) & mask]!]!);
              w.raw(spec.requestSuffix);
              // One id: a GetFeatures (the same request bytes), as the TCP client does.
              return size === 1
                ? post("GetFeatures", w.finish()).then((b) => decodeDenseGet(spec, b, out))
                : post("BatchGet", w.finish()).then((b) => decodeDenseBatchGet(spec, b, out, size));
            };
          }
          const typedGet = mode === "typed" ? decodeGetFeaturesResponse : undefined;
          const getAll: OpFn = (seq) => {
            w.reset();
            w.stringField(1, id(seq));
            const p = post("GetFeatures", w.finish()); // fetch may read the body later: a copy
            return typedGet ? p.then((b) => typedGet(b)) : p;
          };
          const set: OpFn = (seq) => {
            w.reset();
            encodeSetFeaturesRequest(w, { entityId: id(seq), features: POOLS.ours[seq & (WRITE_POOL - 1)]! });
            return post("SetFeatures", w.finish());
          };
          const batch =
            (size: number): OpFn =>
            (seq) => {
              w.reset();
              const base = seq * size;
              for (let j = 0; j < size; j++) w.stringField(1, ids[keys[(base + j) & mask]!]!);
              const p = post("BatchGet", w.finish());
              return mode === "typed" ? p.then(decodeBatchGetResponse) : p;
            };
          const getProj5: OpFn = (seq) => {
            w.reset();
            w.stringField(1, id(seq));
            for (const name of PROJECTED) w.stringField(2, name);
            const p = post("GetFeatures", w.finish());
            return typedGet ? p.then((b) => typedGet(b)) : p;
          };
          return opFrom(op, { getAll, getProj5, batch, set });
        },
        async close() {},
      };
    },
  };
}

/** Starts the Bun.serve floor (`http-floor-server.ts`) answering `bodyBytes` bytes, pinned to `cpus`. */
export async function startHttpFloor(
  bodyBytes: number,
  cpus: string | undefined,
): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = spawnProc({
    name: "httpfloor",
    cmd: [process.execPath, `${import.meta.dir}/http-floor-server.ts`],
    env: { FLOOR_PORT: String(port), FLOOR_BODY_BYTES: String(bodyBytes) },
    cpus,
  });
  await waitForPort(port, proc);
  return { proc, port };
}

// ---- Redis ------------------------------------------------------------------------------------

export async function startRedis(
  cpus: string | undefined,
): Promise<{ proc: Proc; port: number; version: string }> {
  const port = freePort();
  const bin = Bun.which("redis-server");
  if (bin === null)
    throw new Error(
      "redis-server not found: apt-get update && apt-get install -y redis-server (or --only tcp,connect,floor)",
    );
  const proc = spawnProc({
    name: "redis",
    cmd: [
      bin,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
    ],
    cpus,
  });
  await waitForPort(port, proc);
  const v = Bun.spawnSync([bin, "--version"]).stdout.toString();
  const version = /v=([\d.]+)/.exec(v)?.[1] ?? v.trim();
  return { proc, port, version };
}

async function usedMemory(c: RedisClient): Promise<number> {
  const info = (await c.send("INFO", ["memory"])) as string;
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

/** Loads N entities with HSET, pipelined (Bun's client pipelines; 5000 writes awaited at a time). */
export async function loadRedis(proc: Proc, port: number, n: number): Promise<LoadResult> {
  const c = new RedisClient(`redis://127.0.0.1:${port}`);
  await c.connect();
  try {
    await Bun.sleep(200);
    const rssBefore = rssBytes(proc.pid);
    const usedBefore = await usedMemory(c);
    const t0 = performance.now();
    const WINDOW = 5000;
    for (let from = 0; from < n; from += WINDOW) {
      const to = Math.min(n, from + WINDOW);
      const ps: Promise<number>[] = [];
      for (let i = from; i < to; i++) ps.push(c.hset(entityId(i), redisFields(entityValues(i))));
      await Promise.all(ps);
    }
    const seconds = (performance.now() - t0) / 1000;
    await Bun.sleep(300);
    const rssAfter = rssBytes(proc.pid);
    const usedAfter = await usedMemory(c);
    const probe = decodeRedisHash(await c.hgetall(entityId(n - 1)));
    if (probe === null || Object.keys(probe).length !== 20) throw new Error("redis load check failed");
    return {
      entities: n,
      seconds,
      rssBeforeBytes: rssBefore,
      rssAfterBytes: rssAfter,
      bytesPerEntity: (rssAfter - rssBefore) / n,
      usedMemoryPerEntity: (usedAfter - usedBefore) / n,
    };
  } finally {
    c.close();
  }
}

export function redisSystem(proc: Proc, port: number): System {
  return {
    name: "redis",
    proc,
    async open(connections) {
      // One RedisClient is one connection; slots are spread over them.
      const clients: RedisClient[] = [];
      for (let k = 0; k < connections; k++) {
        const c = new RedisClient(`redis://127.0.0.1:${port}`);
        await c.connect();
        clients.push(c);
      }
      const nc = clients.length;
      return {
        op(op, mode, { ids, keys }) {
          const mask = keys.length - 1;
          const typed = mode === "typed";
          const id = (seq: number) => ids[keys[seq & mask]!]!;
          const getAll: OpFn = typed
            ? (seq, slot) => clients[slot % nc]!.hgetall(id(seq)).then(decodeRedisHash)
            : (seq, slot) => clients[slot % nc]!.hgetall(id(seq));
          const set: OpFn = (seq, slot) =>
            clients[slot % nc]!.hset(id(seq), POOLS.redis[seq & (WRITE_POOL - 1)]!);
          const batch =
            (size: number): OpFn =>
            (seq, slot) => {
              const c = clients[slot % nc]!;
              const base = seq * size;
              const ps: Promise<Record<string, string>>[] = new Array(size);
              for (let j = 0; j < size; j++) ps[j] = c.hgetall(ids[keys[(base + j) & mask]!]!);
              const all = Promise.all(ps);
              return typed ? all.then((hs) => hs.map(decodeRedisHash)) : all;
            };
          const getProj5: OpFn = typed
            ? (seq, slot) =>
                clients[slot % nc]!.hmget(id(seq), PROJECTED as string[]).then((v) =>
                  decodeRedisFields(PROJECTED, v),
                )
            : (seq, slot) => clients[slot % nc]!.hmget(id(seq), PROJECTED as string[]);
          return opFrom(op, { getAll, getProj5, batch, set });
        },
        async close() {
          for (const c of clients) c.close();
        },
      };
    },
  };
}

/** Size of a typical full GetFeatures answer body: one entity's 20 features, encoded. */
export function typicalAnswerBytes(): number {
  const w = new ProtoWriter(4096);
  w.stringField(1, entityId(123456));
  const rec = new ProtoWriter(4096);
  encodeSetFeaturesRequest(rec, { entityId: "", features: ourFeatures(entityValues(123456)) });
  // SetFeaturesRequest = (empty id field) + the features map entries (field 2), like the stored record.
  return w.pos + rec.pos - 2 + 2; // minus the empty id field (2 bytes), plus found = true (2 bytes)
}

// ---- native gRPC: our server's GRPC_PORT and a stock grpc-js server ----------------------------

const GRPC_SERVICE = "/featurestore.v1.FeatureStoreService/";
/** grpc-js serializers that pass bytes through (the raw client). */
const toBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const asIs = (b: Buffer): Buffer => b;

/** A proto-loader stub: a grpc-js Client with one method per RPC taking a request object. */
type Stub = grpc.Client &
  Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => unknown>;

/** The generated client class (proto-loader, the options of grpc-stock-server.ts), loaded once. */
let stubClass: grpc.ServiceClientConstructor | null = null;

/**
 * `connections` grpc-js channels to `port`. grpc-js shares one connection among channels with
 * the same target and options unless each has its own subchannel pool: with it, K clients are
 * K HTTP/2 connections.
 */
async function grpcStubs(port: number, connections: number): Promise<Stub[]> {
  stubClass ??= loadService();
  const Ctor = stubClass;
  const stubs: Stub[] = [];
  for (let k = 0; k < connections; k++) {
    const s = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    }) as unknown as Stub;
    await new Promise<void>((resolve, reject) =>
      s.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
    );
    stubs.push(s);
  }
  return stubs;
}

/** A unary call with identity serializers: bytes in, answer bytes out. */
function rawUnary(c: grpc.Client, method: string, body: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    c.makeUnaryRequest(GRPC_SERVICE + method, toBuffer, asIs, body, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  );
}

/** A unary call through the stub: a request object in, a decoded answer object out. */
function stubUnary(c: Stub, method: string, req: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => c[method]!(req, (err, res) => (err ? reject(err) : resolve(res))));
}

/**
 * A gRPC server (ours on GRPC_PORT, or the stock one) through a client library: `grpc-js`
 * (typed = proto-loader stubs, what a user would write; raw = identity serializers) or the bare
 * `node:http2` client (raw only).
 */
export function grpcSystem(
  name: "grpc" | "stock" | "grpc-h2" | "stock-h2",
  proc: Proc,
  port: number,
): System {
  const bare = name === "grpc-h2" || name === "stock-h2";
  return {
    name,
    proc,
    async open(connections) {
      if (bare) {
        const cs: H2GrpcClient[] = [];
        for (let k = 0; k < connections; k++) cs.push(await H2GrpcClient.connect("127.0.0.1", port));
        return grpcDriver(
          (slot, method, body) => cs[slot % cs.length]!.call(GRPC_SERVICE + method, body),
          null,
          {
            close: async () => {
              for (const c of cs) await c.close();
            },
          },
        );
      }
      const stubs = await grpcStubs(port, connections);
      const n = stubs.length;
      return grpcDriver(
        (slot, method, body) => rawUnary(stubs[slot % n]!, method, body),
        (slot, method, req) => stubUnary(stubs[slot % n]!, method, req),
        {
          close: async () => {
            for (const s of stubs) s.close();
          },
        },
      );
    },
  };
}

type RawCall = (slot: number, method: string, body: Uint8Array) => Promise<Uint8Array>;
type StubCall = (slot: number, method: string, req: unknown) => Promise<unknown>;

function grpcDriver(raw: RawCall, stub: StubCall | null, life: { close(): Promise<void> }): Driver {
  const w = new ProtoWriter(16 * 1024);
  return {
    op(op, mode, { ids, keys }) {
      const mask = keys.length - 1;
      const id = (seq: number) => ids[keys[seq & mask]!]!;
      if (mode === "raw") {
        // finish() copies: grpc-js may serialize after this function returns.
        const getAll: OpFn = (seq, slot) => {
          w.reset();
          w.stringField(1, id(seq));
          return raw(slot, "GetFeatures", w.finish());
        };
        const getProj5: OpFn = (seq, slot) => {
          w.reset();
          w.stringField(1, id(seq));
          for (const name of PROJECTED) w.stringField(2, name);
          return raw(slot, "GetFeatures", w.finish());
        };
        const batch =
          (size: number): OpFn =>
          (seq, slot) => {
            w.reset();
            const base = seq * size;
            for (let j = 0; j < size; j++) w.stringField(1, ids[keys[(base + j) & mask]!]!);
            return raw(slot, "BatchGet", w.finish());
          };
        const set: OpFn = (seq, slot) => {
          w.reset();
          encodeSetFeaturesRequest(w, { entityId: id(seq), features: POOLS.ours[seq & (WRITE_POOL - 1)]! });
          return raw(slot, "SetFeatures", w.finish());
        };
        return opFrom(op, { getAll, getProj5, batch, set });
      }
      if (stub === null) return null;
      const getAll: OpFn = (seq, slot) => stub(slot, "GetFeatures", { entityId: id(seq) });
      const getProj5: OpFn = (seq, slot) =>
        stub(slot, "GetFeatures", { entityId: id(seq), featureNames: PROJECTED });
      const batch =
        (size: number): OpFn =>
        (seq, slot) => {
          const entityIds: string[] = new Array(size);
          const base = seq * size;
          for (let j = 0; j < size; j++) entityIds[j] = ids[keys[(base + j) & mask]!]!;
          return stub(slot, "BatchGet", { entityIds });
        };
      const set: OpFn = (seq, slot) =>
        stub(slot, "SetFeatures", { entityId: id(seq), features: POOLS.stub[seq & (WRITE_POOL - 1)]! });
      return opFrom(op, { getAll, getProj5, batch, set });
    },
    close: () => life.close(),
  };
}

/** Starts the stock grpc-js server (`grpc-stock-server.ts`) pinned to `cpus`. */
export async function startStockGrpc(cpus: string | undefined): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = spawnProc({
    name: "stock-grpc",
    cmd: [process.execPath, `${import.meta.dir}/grpc-stock-server.ts`],
    env: { STOCK_GRPC_PORT: String(port) },
    cpus,
  });
  await waitForPort(port, proc);
  return { proc, port };
}

/**
 * Loads N entities into a gRPC server with BatchSet (500 per call, 4 in flight), encoded by our
 * codec and sent with identity serializers: the stock server decodes them with protobufjs and
 * keeps the objects.
 */
export async function loadGrpc(proc: Proc, port: number, n: number): Promise<LoadResult> {
  const [c] = await grpcStubs(port, 1);
  try {
    await Bun.sleep(200);
    const rssBefore = rssBytes(proc.pid);
    const t0 = performance.now();
    const BATCH = 500;
    let next = 0;
    const worker = async () => {
      const w = new ProtoWriter(BATCH * 1024);
      while (next < n) {
        const from = next;
        const to = Math.min(n, from + BATCH);
        next = to;
        const items: SetFeaturesItem[] = [];
        for (let i = from; i < to; i++)
          items.push({ entityId: entityId(i), features: ourFeatures(entityValues(i)), replace: true });
        w.reset();
        encodeBatchSetRequest(w, items);
        await rawUnary(c!, "BatchSet", w.finish());
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const seconds = (performance.now() - t0) / 1000;
    Bun.gc(true);
    await Bun.sleep(300);
    const rssAfter = rssBytes(proc.pid);
    return {
      entities: n,
      seconds,
      rssBeforeBytes: rssBefore,
      rssAfterBytes: rssAfter,
      bytesPerEntity: (rssAfter - rssBefore) / n,
    };
  } finally {
    c!.close();
  }
}

/**
 * GetFeatures of `ids` from two gRPC servers, decoded by our codec, compared: both must hold the
 * same 20 features per entity. Returns the answer sizes (bytes) of the last id, [a, b].
 */
export async function sameAnswers(
  portA: number,
  portB: number,
  ids: readonly string[],
): Promise<[number, number]> {
  const a = await H2GrpcClient.connect("127.0.0.1", portA);
  const b = await H2GrpcClient.connect("127.0.0.1", portB);
  try {
    const sizes: [number, number] = [0, 0];
    for (const id of ids) {
      const w = new ProtoWriter(64);
      w.stringField(1, id);
      const body = w.finish();
      const ra = await a.call(`${GRPC_SERVICE}GetFeatures`, body);
      const rb = await b.call(`${GRPC_SERVICE}GetFeatures`, body);
      const da = decodeGetFeaturesResponse(ra);
      const db = decodeGetFeaturesResponse(rb);
      if (!da.found || Object.keys(da.features).length !== 20 || !Bun.deepEquals(da.features, db.features))
        throw new Error(
          `servers disagree on ${id}: ${JSON.stringify(da).slice(0, 200)} vs ${JSON.stringify(db).slice(0, 200)}`,
        );
      sizes[0] = ra.length;
      sizes[1] = rb.length;
    }
    return sizes;
  } finally {
    await a.close();
    await b.close();
  }
}
