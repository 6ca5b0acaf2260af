/**
 * Every competitor behind one small interface: a system is started (a separate process), loaded
 * with the same N entities, opened with K connections, and asked for an `OpFn` per operation and
 * client mode. The load generator never knows which system it drives.
 *
 * - `tcp`: our server, binary TCP protocol, our FeatureStoreClient.
 * - `connect`: our server (same process), Connect unary with binary protobuf over HTTP/1.1 fetch.
 * - `redis`: redis-server from apt, hashes, Bun's built-in RedisClient.
 * - `floor`: a Bun.listen server answering every frame with a fixed frame, through our client's raw `call()`.
 */
import { RedisClient } from "bun";
import { FeatureStoreClient, TcpTransport } from "../../src/client/index.ts";
import type { FeaturesInput } from "../../src/codec/features.ts";
import { Method } from "../../src/codec/frame.ts";
import {
  decodeBatchGetResponse,
  decodeGetFeaturesResponse,
  encodeSetFeaturesRequest,
} from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
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
/** Raw: answer bytes handed back undecoded (measures the server). Typed: decoded into values (what users get). */
export type Mode = "raw" | "typed";
export type SystemName = "tcp" | "connect" | "redis" | "floor";

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

/** Starts `bun <entry>` (src/main.ts) in `root` with the given env, pinned to `cpus`. */
export async function startOurServer(
  root: string,
  entry: string,
  n: number,
  env: Record<string, string>,
  cpus: string | undefined,
  profileDir?: string,
): Promise<OurServer> {
  const tcpPort = freePort();
  const httpPort = freePort();
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
      // Room for every entity: the benchmark measures serving, not eviction.
      CACHE_SIZE: String(Math.max(1024, Math.ceil(n * 1.25))),
      CACHE_MAX_BYTES: String(Math.max(64 << 20, n * 4096)),
      LOG_LEVEL: "warn",
      ...env,
    },
  });
  await waitForPort(tcpPort, proc);
  return { proc, tcpPort, httpPort };
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

function writePools(): { ours: FeaturesInput[]; redis: Record<string, string>[] } {
  const ours: FeaturesInput[] = [];
  const redis: Record<string, string>[] = [];
  for (let k = 0; k < WRITE_POOL; k++) {
    const v = entityValues(k, 1);
    ours.push(ourWrite(v));
    redis.push(redisWrite(v));
  }
  return { ours, redis };
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

function tcpDriver(client: FeatureStoreClient): Driver {
  const w = new ProtoWriter(16 * 1024);
  return {
    op(op, mode, { ids, keys }) {
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
export function connectSystem(proc: Proc, httpPort: number): System {
  const base = `http://127.0.0.1:${httpPort}/featurestore.v1.FeatureStoreService/`;
  const headers = { "content-type": "application/proto", "connect-protocol-version": "1" };
  return {
    name: "connect",
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
