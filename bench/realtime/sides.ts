/**
 * What each side of the real-time benchmark (issue 12) does per request, and how its data is
 * pre-filled. Every op is an `OpFn` of the e2e load loops: request `seq` picks its entity from a
 * uniform key stream (`keys[seq & mask]`), `slot` picks the connection.
 *
 * Ours (our TCP client, one `FeatureStoreClient` with K connections):
 * - counter: `updateFeatures(id, [{ name: "clicks", increment: 1 }])` (an int increment);
 * - list: `updateFeatures(id, [{ name: "recent", append: [item], keepLast: 20 }])`;
 * - window write: `updateFeatures(id, [{ name: "spend", observe: v, spec }])`, spec = 60 s
 *   buckets kept 24 h (the server keeps count, sum, min and max per bucket);
 * - window read: `getFeatures(id, [], { windows: [{ feature: "spend", windowMs: 1 h }] })`:
 *   count, sum, min, max and mean of the last 60 buckets, computed on the server.
 *
 * Redis (`Bun.RedisClient`, one client per connection; the client pipelines every command
 * issued before it flushes, so the 2-3 commands of one op and the ops of concurrent slots on a
 * connection go out together; none of the pairs is wrapped in MULTI):
 * - counter: `HINCRBY c:<i> clicks 1`;
 * - list: `LPUSH l:<i> item` + `LTRIM l:<i> 0 19`, pipelined (not atomic: another client may
 *   see 21 items between the two);
 * - window write, bucket hashes: `HINCRBY <id>:<minute> count 1` + `HINCRBYFLOAT <id>:<minute>
 *   sum v` + `EXPIRE <id>:<minute> 86460` (count and sum only, no min/max);
 * - window write, sorted set: `ZADD z:<id> <t> <t>:<seq>:<v>` + `ZREMRANGEBYSCORE z:<id> -inf
 *   (<t - 24 h>` (every event kept as a member for 24 h);
 * - window read, bucket hashes: one `EVALSHA` of a script that runs `HMGET key count sum` over
 *   the 60 bucket keys and sums them (`lua`), or 60 pipelined `HMGET`s summed by the client
 *   (`pipe`); the mean is sum / count, on the client;
 * - window read, sorted set: `ZRANGEBYSCORE z:<id> (<t - 1 h> +inf`, count and sum (parsed
 *   from the members) on the client. `ZCOUNT` alone would give the count only.
 */
import { RedisClient } from "bun";
import type { FeatureStoreClient, FeatureUpdateInput, ReadOptions } from "../../src/client/index.ts";
import { closedLoop, type OpFn } from "../e2e/load.ts";
import { rng } from "../e2e/workload.ts";

/** The window spec of every observe: 60 s buckets kept 24 h (1,440 buckets). */
export const BUCKET_MS = 60_000;
export const RETENTION_MS = 86_400_000;
/** The window read: the last hour, 60 buckets. */
export const WINDOW_MS = 3_600_000;
/** Items a list keeps. */
export const KEEP_LAST = 20;
/** A Redis bucket hash lives one bucket past the retention (s), so the oldest kept bucket is whole. */
const BUCKET_TTL_S = (RETENTION_MS + BUCKET_MS) / 1000;
const BUCKETS_PER_WINDOW = WINDOW_MS / BUCKET_MS;

const SPEC = { bucketMs: BUCKET_MS, retentionMs: RETENTION_MS };
/** Payload pools reused round-robin (a power of two), so the timed loop generates no data. */
const POOL = 256;
const ITEMS: string[] = Array.from({ length: POOL }, (_, k) => `sku-${100_000 + k * 7919}`);
/** Observed values: doubles in [0.25, 100.25). */
const VALUES: number[] = Array.from({ length: POOL }, (_, k) => ((k * 389) % 1000) / 10 + 0.25);
const VALUE_TEXT: string[] = VALUES.map(String);

const INCREMENT: readonly FeatureUpdateInput[] = [{ name: "clicks", increment: 1 }];
const APPENDS: readonly FeatureUpdateInput[][] = ITEMS.map((item) => [
  { name: "recent", append: [item], keepLast: KEEP_LAST },
]);
const OBSERVES: readonly FeatureUpdateInput[][] = VALUES.map((v) => [
  { name: "spend", observe: v, spec: SPEC },
]);

/** Entity ids `<prefix><i>` for i < n (ours and Redis use the same strings as ids and keys). */
export function idsOf(prefix: string, n: number): string[] {
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) ids[i] = `${prefix}${i}`;
  return ids;
}

/** What a side's op reads from: ids and a power-of-two stream of indexes into them. */
export interface Keyed {
  ids: readonly string[];
  keys: Int32Array;
}

const pick = (k: Keyed) => {
  const mask = k.keys.length - 1;
  return (seq: number) => k.ids[k.keys[seq & mask]!]!;
};

// ---- ours -----------------------------------------------------------------------------------

export function ourCounter(c: FeatureStoreClient, k: Keyed): OpFn {
  const id = pick(k);
  return (seq) => c.updateFeatures(id(seq), INCREMENT);
}

export function ourAppend(c: FeatureStoreClient, k: Keyed): OpFn {
  const id = pick(k);
  return (seq) => c.updateFeatures(id(seq), APPENDS[seq & (POOL - 1)]!);
}

export function ourObserve(c: FeatureStoreClient, k: Keyed): OpFn {
  const id = pick(k);
  return (seq) => c.updateFeatures(id(seq), OBSERVES[seq & (POOL - 1)]!);
}

const READ: ReadOptions = { windows: [{ feature: "spend", windowMs: WINDOW_MS }] };
/** Windows and no names: the answer holds the aggregates alone. */
const NO_NAMES: string[] = [];

/** The window read of one entity; resolves with the aggregate (count, sum, mean, ...). */
export function ourWindowRead(c: FeatureStoreClient, k: Keyed): OpFn {
  const id = pick(k);
  return (seq) => c.getFeatures(id(seq), NO_NAMES, READ).then((r) => r.aggregates[0]);
}

// ---- Redis ----------------------------------------------------------------------------------

/** One client per connection (each `RedisClient` is one connection), connected. */
export async function redisClients(port: number, connections: number): Promise<RedisClient[]> {
  const cs: RedisClient[] = [];
  for (let i = 0; i < connections; i++) {
    const c = new RedisClient(`redis://127.0.0.1:${port}`);
    await c.connect();
    cs.push(c);
  }
  return cs;
}

export function redisCounter(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) => cs[slot % n]!.hincrby(id(seq), "clicks", 1);
}

const TRIM_STOP = String(KEEP_LAST - 1);

export function redisAppend(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) => {
    const c = cs[slot % n]!;
    const key = id(seq);
    return Promise.all([c.lpush(key, ITEMS[seq & (POOL - 1)]!), c.send("LTRIM", [key, "0", TRIM_STOP])]);
  };
}

/** The bucket hash of `id` holding time t: `<id>:<minute number>`. */
const bucketKey = (id: string, t: number) => `${id}:${Math.floor(t / BUCKET_MS)}`;

export function redisObserveHash(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) => {
    const c = cs[slot % n]!;
    const key = bucketKey(id(seq), Date.now());
    return Promise.all([
      c.hincrby(key, "count", 1),
      c.hincrbyfloat(key, "sum", VALUE_TEXT[seq & (POOL - 1)]!),
      c.expire(key, BUCKET_TTL_S),
    ]);
  };
}

/** The sorted set of `id`'s events. */
export const zsetKey = (id: string) => `z:${id}`;

export function redisObserveZset(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) => {
    const c = cs[slot % n]!;
    const key = zsetKey(id(seq));
    const t = Date.now();
    const member = `${t}:${seq}:${VALUE_TEXT[seq & (POOL - 1)]!}`;
    return Promise.all([
      c.send("ZADD", [key, String(t), member]),
      c.send("ZREMRANGEBYSCORE", [key, "-inf", `(${t - RETENTION_MS}`]),
    ]);
  };
}

/** A window aggregate as the Redis sides compute it. */
export interface CountSum {
  count: number;
  sum: number;
  mean: number;
}

const countSum = (count: number, sum: number): CountSum => ({
  count,
  sum,
  mean: count > 0 ? sum / count : 0,
});

/** Sums `count` and `sum` of every bucket hash in KEYS; the sum as text (Lua numbers would be truncated to integers). */
const SUM_BUCKETS = `local c, s = 0, 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'count', 'sum')
  if v[1] then
    c = c + tonumber(v[1])
    s = s + tonumber(v[2])
  end
end
return {c, tostring(s)}`;

/** Fills `args[from..]` with the 60 bucket keys of the hour ending at t, newest first. */
function windowKeys(args: string[], from: number, id: string, t: number): void {
  const last = Math.floor(t / BUCKET_MS);
  for (let i = 0; i < BUCKETS_PER_WINDOW; i++) args[from + i] = `${id}:${last - i}`;
}

/** The window read over bucket hashes as one script call (`EVALSHA sha 60 key...`). */
export async function redisReadLua(cs: readonly RedisClient[], k: Keyed): Promise<OpFn> {
  const sha = (await cs[0]!.send("SCRIPT", ["LOAD", SUM_BUCKETS])) as string;
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) => {
    const args = new Array<string>(2 + BUCKETS_PER_WINDOW);
    args[0] = sha;
    args[1] = String(BUCKETS_PER_WINDOW);
    windowKeys(args, 2, id(seq), Date.now());
    return (cs[slot % n]!.send("EVALSHA", args) as Promise<[number, string]>).then(([c, s]) =>
      countSum(c, Number(s)),
    );
  };
}

/** The window read over bucket hashes as 60 pipelined HMGETs, summed by the client. */
export function redisReadPipe(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  const fields = ["count", "sum"];
  const keys = new Array<string>(BUCKETS_PER_WINDOW);
  return (seq, slot) => {
    const c = cs[slot % n]!;
    windowKeys(keys, 0, id(seq), Date.now());
    const ps = new Array<Promise<(string | null)[]>>(BUCKETS_PER_WINDOW);
    for (let i = 0; i < BUCKETS_PER_WINDOW; i++) ps[i] = c.hmget(keys[i]!, fields);
    return Promise.all(ps).then((rows) => {
      let count = 0;
      let sum = 0;
      for (const r of rows)
        if (r[0] !== null && r[0] !== undefined) {
          count += Number(r[0]);
          sum += Number(r[1]);
        }
      return countSum(count, sum);
    });
  };
}

/** The window read over the sorted set: the hour's members, count and sum on the client. */
export function redisReadZset(cs: readonly RedisClient[], k: Keyed): OpFn {
  const id = pick(k);
  const n = cs.length;
  return (seq, slot) =>
    (
      cs[slot % n]!.send("ZRANGEBYSCORE", [
        zsetKey(id(seq)),
        `(${Date.now() - WINDOW_MS}`,
        "+inf",
      ]) as Promise<string[]>
    ).then((members) => {
      let sum = 0;
      for (const m of members) sum += Number(m.slice(m.lastIndexOf(":") + 1));
      return countSum(members.length, sum);
    });
}

// ---- pre-fill -------------------------------------------------------------------------------

/** Runs fn(0..n-1) with `inflight` calls outstanding (the e2e closed loop, bounded by count). */
export async function pipelined(
  n: number,
  inflight: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  if (n === 0) return;
  const r = await closedLoop((seq) => (seq < n ? fn(seq) : Promise.resolve()), {
    slots: inflight,
    warmupMs: 0,
    durationMs: 3_600_000,
    maxRequests: n,
  });
  if (r.errors > 0) throw new Error(`pre-fill: ${r.errors} errors, first: ${r.firstError}`);
}

/** One counter per entity (1 each) and a full list (20 items) per entity, on our server. */
export async function ourFillCounters(c: FeatureStoreClient, ids: readonly string[]): Promise<void> {
  await pipelined(ids.length, 64, (i) => c.updateFeatures(ids[i]!, INCREMENT));
}

const FULL_LIST: FeatureUpdateInput[] = [
  { name: "recent", append: ITEMS.slice(0, KEEP_LAST), keepLast: KEEP_LAST },
];

export async function ourFillLists(c: FeatureStoreClient, ids: readonly string[]): Promise<void> {
  await pipelined(ids.length, 64, (i) => c.updateFeatures(ids[i]!, FULL_LIST));
}

export async function redisFillCounters(c: RedisClient, ids: readonly string[]): Promise<void> {
  await pipelined(ids.length, 256, (i) => c.hincrby(ids[i]!, "clicks", 1));
}

export async function redisFillLists(c: RedisClient, ids: readonly string[]): Promise<void> {
  const items = ITEMS.slice(0, KEEP_LAST);
  await pipelined(ids.length, 256, (i) => c.send("RPUSH", [ids[i]!, ...items]));
}

/** The pre-filled history of one windowed entity: event times (ascending) and values. */
export interface History {
  times: Float64Array;
  values: Float64Array;
}

/**
 * `events` events of entity `e`, uniformly spread over the 24 h before `t0` (the oldest
 * bucket left out, so that nothing expires during the run before it is read), oldest first;
 * values like the observed ones. Deterministic in (e, t0).
 */
export function history(e: number, events: number, t0: number): History {
  const r = rng(0x5eed + e);
  const from = t0 - RETENTION_MS + 2 * BUCKET_MS;
  const times = new Float64Array(events);
  const values = new Float64Array(events);
  for (let i = 0; i < events; i++) {
    times[i] = from + Math.floor(r() * (t0 - from));
    values[i] = Math.floor(r() * 1000) / 10 + 0.25;
  }
  times.sort();
  return { times, values };
}

/**
 * Observes the histories of `ids` on our server: entities in groups of `group`, the events of a
 * group interleaved (entity by entity, each oldest first). No group starts after `deadline`
 * (performance.now() ms); resolves with the entities filled (a multiple of `group`).
 */
export async function ourFillWindows(
  c: FeatureStoreClient,
  ids: readonly string[],
  events: number,
  t0: number,
  group: number,
  deadline: number,
): Promise<number> {
  let filled = 0;
  for (let g = 0; g + group <= ids.length; g += group) {
    if (performance.now() > deadline) break;
    const hs = Array.from({ length: group }, (_, j) => history(g + j, events, t0));
    await pipelined(group * events, 64, (i) => {
      const j = i % group;
      const k = (i / group) | 0;
      const h = hs[j]!;
      return c.updateFeatures(ids[g + j]!, [
        { name: "spend", observe: h.values[k]!, spec: SPEC, eventTimeMs: h.times[k]! },
      ]);
    });
    filled = g + group;
  }
  return filled;
}

/**
 * The same histories in Redis, both layouts: per bucket one hash (count, sum; HSET, then
 * PEXPIREAT one bucket past the retention of its start) and one sorted set of every event.
 */
export async function redisFillWindows(
  c: RedisClient,
  ids: readonly string[],
  events: number,
  t0: number,
): Promise<void> {
  await pipelined(ids.length, 4, (e) => {
    const h = history(e, events, t0);
    const id = ids[e]!;
    const buckets = new Map<number, [count: number, sum: number]>();
    const zargs: string[] = [zsetKey(id)];
    for (let i = 0; i < events; i++) {
      const t = h.times[i]!;
      const b = Math.floor(t / BUCKET_MS);
      const cs = buckets.get(b);
      if (cs === undefined) buckets.set(b, [1, h.values[i]!]);
      else {
        cs[0]++;
        cs[1] += h.values[i]!;
      }
      zargs.push(String(t), `${t}:p${i}:${h.values[i]!}`);
    }
    const ps: Promise<unknown>[] = [c.send("ZADD", zargs)];
    for (const [b, [count, sum]] of buckets) {
      const key = `${id}:${b}`;
      ps.push(c.send("HSET", [key, "count", String(count), "sum", String(sum)]));
      ps.push(c.send("PEXPIREAT", [key, String(b * BUCKET_MS + RETENTION_MS + BUCKET_MS)]));
    }
    return Promise.all(ps);
  });
}
