/**
 * What each side of the Redis benchmark does per request, on top of the e2e drivers:
 *
 * - our server, typed GetFeatures (`tcpSystem(...).op("get_all", "typed")`, the e2e driver);
 * - direct Redis, `Bun.RedisClient` + typed decode (`redisSystem(...).op("get_all", "typed")`,
 *   the e2e row): HGETALL of the entity stored as strings (`user:<i>`, e2e's layout), because
 *   Bun's client returns hash values as UTF-8 strings and mangles the binary FeatureValue bytes
 *   of our layout (a 0xff byte comes back as U+FFFD);
 * - direct Redis, node-redis (`@redis/client`, the library our server uses) + typed decode:
 *   HGETALL of our own layout (`fs:user:<i>`, values as bytes, each read by
 *   `decodeFeatureValue`), i.e. what the server does on a miss minus the hop;
 * - writes of all 20 features: our SetFeatures, and HSET of the same 20 encoded values into the
 *   same `fs:` hashes with Bun's client (pipelined by the client), optionally followed by WAIT.
 */
import { createClient, RESP_TYPES } from "@redis/client";
import { RedisClient } from "bun";
import {
  decodeFeatureValue,
  encodeFeatureValue,
  FeatureStoreClient,
  type FeaturesInput,
  type FeatureValue,
  TcpTransport,
} from "../../src/client/index.ts";
import type { OpFn } from "../e2e/load.ts";
import { entityValues, ourFeatures } from "../e2e/workload.ts";

/** Write payloads reused round-robin (a power of two), so the timed loop generates no data. */
const WRITE_POOL = 256;

/** Our 20 features of pool entry k (version 1: different values than the loaded ones). */
const OUR_WRITES: FeaturesInput[] = Array.from({ length: WRITE_POOL }, (_, k) =>
  ourFeatures(entityValues(k, 1)),
);
/** The same 20 features as the hash fields our server writes: name -> encoded FeatureValue. */
const HASH_WRITES: Record<string, Buffer>[] = OUR_WRITES.map((f) => {
  const h: Record<string, Buffer> = {};
  for (const name in f) h[name] = Buffer.from(encodeFeatureValue(f[name]!));
  return h;
});

/** Our client with `connections` connections to `port`, once they are all open. */
export async function ourClient(port: number, connections: number): Promise<FeatureStoreClient> {
  const client = await FeatureStoreClient.connect({
    servers: [`127.0.0.1:${port}`],
    connectionsPerServer: connections,
    deadlineMs: 30_000,
  });
  const t = client.transport;
  for (let i = 0; i < 300 && t instanceof TcpTransport && t.stats().open < connections; i++)
    await Bun.sleep(10);
  return client;
}

/** SetFeatures of all 20 features (a merge over the entity's 20) of entity keys[seq]. */
export function ourWriteOp(client: FeatureStoreClient, ids: readonly string[], keys: Int32Array): OpFn {
  const mask = keys.length - 1;
  return (seq) => client.setFeatures(ids[keys[seq & mask]!]!, OUR_WRITES[seq & (WRITE_POOL - 1)]!);
}

/** Bun clients, one per connection. */
export async function bunClients(port: number, connections: number): Promise<RedisClient[]> {
  const cs: RedisClient[] = [];
  for (let k = 0; k < connections; k++) {
    const c = new RedisClient(`redis://127.0.0.1:${port}`);
    await c.connect();
    cs.push(c);
  }
  return cs;
}

/**
 * HSET of the 20 encoded values into `prefix + id`, then (waitReplicas > 0) `WAIT n timeout`
 * on the same connection: Bun's client pipelines both, and WAIT answers once the replicas have
 * everything sent before it on that connection.
 */
export function hsetOp(
  clients: RedisClient[],
  prefix: string,
  ids: readonly string[],
  keys: Int32Array,
  waitReplicas: number,
  waitTimeoutMs: number,
): OpFn {
  const mask = keys.length - 1;
  const n = clients.length;
  const waitArgs = [String(waitReplicas), String(waitTimeoutMs)];
  return (seq, slot) => {
    const c = clients[slot % n]!;
    const set = c.hset(prefix + ids[keys[seq & mask]!]!, HASH_WRITES[seq & (WRITE_POOL - 1)]!);
    if (waitReplicas === 0) return set;
    const waited = c.send("WAIT", waitArgs).then((acks: number) => {
      if (acks < waitReplicas) throw new Error(`WAIT: ${acks} of ${waitReplicas} replicas`);
    });
    return Promise.all([set, waited]);
  };
}

/** Replies of the node-redis side: bulk strings as Buffers, HGETALL as a flat [field, value, ...] array. */
const BYTES = {
  typeMapping: {
    [RESP_TYPES.BLOB_STRING]: Buffer,
    [RESP_TYPES.SIMPLE_STRING]: Buffer,
    [RESP_TYPES.MAP]: Array,
  },
};

/** Typed features of a flat HGETALL reply of our layout; null for a missing key. */
function decodeHash(flat: Buffer[]): Record<string, FeatureValue> | null {
  if (flat.length === 0) return null;
  const out: Record<string, FeatureValue> = {};
  for (let i = 0; i + 1 < flat.length; i += 2)
    out[flat[i]!.toString("latin1")] = decodeFeatureValue(flat[i + 1]!);
  return out;
}

/**
 * Direct reads of our layout with node-redis (RESP3, one client per connection, commands of
 * concurrent callers pipelined by the client): HGETALL `prefix + id`, every value decoded.
 */
export async function nodeRedisReads(
  url: string,
  connections: number,
  prefix: string,
  ids: readonly string[],
  keys: Int32Array,
): Promise<{ op: OpFn; close: () => Promise<void> }> {
  const open = () => createClient({ url, RESP: 3 });
  const clients: ReturnType<typeof open>[] = [];
  for (let k = 0; k < connections; k++) {
    const c = open();
    c.on("error", () => {});
    await c.connect();
    clients.push(c);
  }
  const mask = keys.length - 1;
  const n = clients.length;
  return {
    op: (seq, slot) =>
      (
        clients[slot % n]!.sendCommand(["HGETALL", prefix + ids[keys[seq & mask]!]!], BYTES) as Promise<
          Buffer[]
        >
      ).then(decodeHash),
    close: async () => {
      for (const c of clients) await c.close();
    },
  };
}

/** Calls of `command` Redis has executed since its start (INFO commandstats). */
export async function commandCalls(admin: RedisClient, command: string): Promise<number> {
  const info = (await admin.send("INFO", ["commandstats"])) as string;
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return m ? Number(m[1]) : 0;
}

/** Sum of a counter over its label sets, from our server's /metrics. */
export async function metric(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{"))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

/** Waits until our server's /ready answers 200 (Redis connected), at most `ms`. */
export async function whenReady(httpPort: number, ms = 15_000): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${httpPort}/ready`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (performance.now() > until)
      throw new Error(`server on HTTP port ${httpPort} not ready within ${ms} ms`);
    await Bun.sleep(50);
  }
}
