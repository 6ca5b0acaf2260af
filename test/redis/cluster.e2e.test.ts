/**
 * Two of our servers (real `bun src/main.ts` processes) over a real Redis Cluster of 3 masters
 * and 3 replicas: writes through one are read through the other, a `redis-cli` write is seen by
 * both, a paused master (SIGSTOP) fails calls within their deadline without hanging anything,
 * and a master killed with SIGKILL during a stream of writes acknowledged with
 * REDIS_WAIT_REPLICAS=1 loses none of them. The staleness after a write and the time until
 * writes succeed again are printed (measurements, not assertions).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { codeOf } from "../codes.ts";
import {
  connect,
  diff,
  itemFeatures,
  itemId,
  readAll,
  removeDir,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { until as waitUntil } from "../until.ts";
import { type RedisCluster, type RedisNode, startCluster } from "./harness.ts";

const COMMAND_TIMEOUT_MS = 500;
/** The longest any bounded wait of this file polls, ms (a liveness bound, not a timing). */
const WAIT_MS = 30_000;
const POLL_MS = 5;

let cluster: RedisCluster;
const servers: ServerProcess[] = [];
const clients: FeatureStoreClient[] = [];
const dir = tempDir("redis-cluster");
let a: FeatureStoreClient;
let b: FeatureStoreClient;
let serverA: ServerProcess;
let serverB: ServerProcess;

const until = (what: string, f: () => boolean | Promise<boolean>) => waitUntil(what, f, WAIT_MS, POLL_MS);

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** A key of ours (`fs:` + id) whose slot the given master serves. */
async function idOn(master: RedisNode, prefix: string): Promise<string> {
  for (let i = 0; i < 10_000; i++) {
    const id = `${prefix}${i}`;
    if ((await cluster.masterOf(`fs:${id}`)).port === master.port) return id;
  }
  throw new Error(`no key of ${master.port} among 10,000 candidates: it serves no slot`);
}

beforeAll(async () => {
  cluster = await startCluster({ nodeTimeoutMs: 2000 });
  const env = serverEnv(dir, {
    STORE: "redis",
    REDIS_CLUSTER_NODES: cluster.seeds,
    REDIS_WAIT_REPLICAS: "1",
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
    REDIS_WAIT_TIMEOUT_MS: "400",
    NEAR_CACHE_MAX_STALENESS_MS: "10000",
    CACHE_SIZE: "100000",
  });
  serverA = await startServer(env, (s) => servers.push(s));
  serverB = await startServer(env, (s) => servers.push(s));
  for (const s of [serverA, serverB])
    await until("server ready", async () => (await s.httpStatus("/ready")) === 200);
  a = await connect(serverA, 2);
  b = await connect(serverB, 2);
  clients.push(a, b);
  // A new cluster's replicas may not acknowledge (WAIT) for a moment after they linked.
  for (const master of await cluster.masters()) {
    const id = await idOn(master, "warm:");
    await until(
      "every shard acknowledges a write with WAIT 1",
      async () => (await codeOf(a.setFeatures(id, { v: 0 }))) === Code.OK,
    );
  }
}, 180_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.stop();
  await cluster?.stop();
  removeDir(dir);
}, 30_000);

describe("two servers over one Redis Cluster", () => {
  test("a write through A is read through B, a redis-cli write is seen by both; staleness over 1,000 writes", async () => {
    await a.setFeatures("greeting", { v: 1, s: "hello" });
    expect({ ...(await b.getFeatures("greeting")).features }).toEqual({ v: 1, s: "hello" });
    expect((await a.getFeatures("greeting")).features.v).toBe(1); // both near-caches hold it now
    const master = await cluster.masterOf("fs:greeting");
    await master.cli("HSET", "fs:greeting", "v", "\x08\x02");
    await until(
      "A serves the redis-cli write",
      async () => (await a.getFeatures("greeting")).features.v === 2,
    );
    await until(
      "B serves the redis-cli write",
      async () => (await b.getFeatures("greeting")).features.v === 2,
    );

    // Staleness: B holds the old value in its near-cache, A acknowledges a new one; how long
    // until B serves it (polled back to back; includes one round trip of the poll).
    const staleness: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = `stale:${i % 100}`;
      await b.getFeatures(id);
      await a.setFeatures(id, { v: i });
      const acked = performance.now();
      let polls = 0;
      while ((await b.getFeatures(id)).features.v !== i) {
        if (++polls > 100_000) throw new Error(`B never served write ${i}`);
      }
      staleness.push(performance.now() - acked);
    }
    staleness.sort((x, y) => x - y);
    const ms = (v: number) => `${v.toFixed(2)} ms`;
    console.log(
      `staleness after an acknowledged write, B vs A, 1,000 writes: p50 ${ms(percentile(staleness, 0.5))}, ` +
        `p99 ${ms(percentile(staleness, 0.99))}, max ${ms(staleness[staleness.length - 1]!)}`,
    );
    expect(staleness.length).toBe(1000);
  }, 60_000);

  test("a master paused with SIGSTOP past the command timeout: its calls fail UNAVAILABLE, others are served, all resume after SIGCONT", async () => {
    const masters = await cluster.masters();
    const paused = masters[0]!;
    const other = masters[1]!;
    const onPaused = await idOn(paused, "pause:");
    const onOther = await idOn(other, "other:");
    await a.setFeatures(onPaused, { v: 1 });
    await a.setFeatures(onOther, { v: 1 });
    const fresh = await Promise.all([0, 1, 2, 3].map((i) => idOn(paused, `pmiss${i}:`)));
    paused.signal("SIGSTOP");
    try {
      const started = performance.now();
      const calls = [
        ...fresh.map((id) => codeOf(a.getFeatures(id, undefined, { deadlineMs: 5000 }))),
        codeOf(a.setFeatures(onPaused, { v: 2 }, { deadlineMs: 5000 })),
        codeOf(b.setFeatures(onPaused, { v: 3 }, { deadlineMs: 5000 })),
      ];
      // Another master's keys are served meanwhile.
      await b.setFeatures(onOther, { v: 2 }, { deadlineMs: 5000 });
      expect((await b.getFeatures(onOther)).features.v).toBe(2);
      const codes = await Promise.all(calls);
      const failedAfter = performance.now() - started;
      console.log(
        `calls to a master paused by SIGSTOP failed after ${failedAfter.toFixed(0)} ms (REDIS_COMMAND_TIMEOUT_MS=${COMMAND_TIMEOUT_MS}, client deadline 5000)`,
      );
      expect(codes).toEqual(codes.map(() => Code.Unavailable));
    } finally {
      paused.signal("SIGCONT");
    }
    const resumed = await until(
      "writes to the resumed master succeed",
      async () => (await codeOf(a.setFeatures(onPaused, { v: 4 }))) === Code.OK,
    );
    console.log(`after SIGCONT, writes succeeded again within ${resumed.toFixed(0)} ms`);
    await until("B reads the resumed master", async () => (await b.getFeatures(onPaused)).features.v === 4);
    expect(serverA.exitCode).toBeNull();
    expect(serverB.exitCode).toBeNull();
  }, 60_000);

  test("a server reading from replicas (REDIS_READ_FROM_REPLICAS) is kept coherent by the replicas' tracking", async () => {
    const env = serverEnv(dir, {
      STORE: "redis",
      REDIS_CLUSTER_NODES: cluster.seeds,
      REDIS_READ_FROM_REPLICAS: "true",
    });
    // C learns the cluster's shape once, at start, and a replica still resyncing after the
    // SIGSTOP above would be left out of it (a CI run read masters only for 30 s).
    // (Polled every 100 ms: each check runs redis-cli twice per node.)
    await waitUntil("the cluster settled, every replica's link up", () => cluster.settled(), WAIT_MS, 100);
    const serverC = await startServer(env, (s) => servers.push(s));
    await until("C ready", async () => (await serverC.httpStatus("/ready")) === 200);
    const c = await connect(serverC, 2);
    clients.push(c);
    // HGETALLs served by replicas, each node asked for its own role (a CLUSTER NODES view may lag).
    const replicaReads = async () => {
      let n = 0;
      for (const node of cluster.nodes) {
        if (!node.running || !(await node.cli("INFO", "replication")).includes("role:slave")) continue;
        const m = /cmdstat_hgetall:calls=(\d+)/.exec(await node.cli("INFO", "commandstats"));
        n += m === null ? 0 : Number(m[1]);
      }
      return n;
    };
    const before = await replicaReads();
    const ids = Array.from({ length: 20 }, (_, i) => `replica:${i}`);
    // WAIT 1 on A: a write is acknowledged once a replica has it, so C can read it there.
    for (const id of ids) await a.setFeatures(id, { v: 1 });
    for (const id of ids) expect((await c.getFeatures(id)).features.v).toBe(1);
    // C's client spreads reads over masters and replicas: more reads until replicas served some.
    let extra = 0;
    await until("replicas serve some of C's reads", async () => {
      await c.getFeatures(`replica:probe:${extra++}`);
      return (await replicaReads()) > before;
    });
    for (const id of ids) await a.setFeatures(id, { v: 2 });
    for (const id of ids)
      await until(`C serves ${id} v2`, async () => (await c.getFeatures(id)).features.v === 2);
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${serverC.httpPort}/metrics`)).text();
      const n = Number(/featurestore_redis_invalidations_total (\d+)/.exec(text)?.[1] ?? 0);
      return { text, invalidations: n, up: text.includes("featurestore_redis_up 1") };
    };
    // featurestore_redis_up is refreshed by a probe every second: a connection error of any node
    // (a replica link being re-established after the previous tests) shows until the next probe.
    let m = await scrape();
    await until("C reports its invalidations and Redis up", async () => {
      m = await scrape();
      return m.invalidations >= ids.length && m.up;
    }).catch(() => {
      throw new Error(
        `C's metrics: ${m.text
          .split("\n")
          .filter((l) => l.includes("redis_"))
          .join("; ")}`,
      );
    });
  }, 60_000);

  test("kill -9 of a master during a stream of writes with REDIS_WAIT_REPLICAS=1: every acknowledged write reads back after failover", async () => {
    const victim = (await cluster.masters())[2]!;
    const probe = await idOn(victim, "probe:");
    const acked: number[] = [];
    let failed = 0;
    let next = 0;
    let stop = false;
    const TOTAL = 6000;
    const lane = async (client: FeatureStoreClient) => {
      while (!stop && next < TOTAL) {
        const i = next++;
        try {
          await client.setFeatures(itemId(i), itemFeatures(i), { deadlineMs: 5000 });
          acked.push(i);
        } catch {
          failed++;
        }
      }
    };
    const lanes = [a, b, a, b, a, b, a, b].map(lane);
    await until("some writes acknowledged", () => acked.length >= 500);
    const killedAt = performance.now();
    await victim.kill9();
    const failover = await cluster.waitForFailover(victim, WAIT_MS);
    // The promoted replica has no replica of its own: with WAIT 1 its writes cannot be
    // acknowledged until the old master is back (as its replica), as an operator would do.
    const refusedWithoutReplica = await codeOf(a.setFeatures(probe, { v: 0 }));
    await victim.restart();
    await until(
      "a write to the dead master's slots succeeds",
      async () => (await codeOf(a.setFeatures(probe, { v: 1 }))) === Code.OK,
    );
    const writesBack = performance.now() - killedAt;
    stop = next >= TOTAL;
    await until("the stream ends", () => next >= TOTAL || acked.length >= 3000);
    stop = true;
    await Promise.all(lanes);
    console.log(
      `kill -9 of a master: cluster failed over in ${failover.toFixed(0)} ms; writes to its slots ` +
        `succeeded again ${writesBack.toFixed(0)} ms after the kill, once the old master rejoined as a replica; ` +
        `${acked.length} writes acknowledged, ${failed} refused`,
    );
    expect(failed).toBeGreaterThan(0); // the kill was felt
    expect(refusedWithoutReplica).toBe(Code.Unavailable);
    let lost = 0;
    const wrong: string[] = [];
    // A server that has not refreshed its slot map yet may refuse a read UNAVAILABLE for a
    // moment (its connection to the old master is being re-established): reads are retried.
    for (const reader of [b, a]) {
      await until("every acknowledged write is read back", async () => {
        lost = 0;
        wrong.length = 0;
        try {
          await readAll(
            reader,
            acked.map((i) => itemId(i)),
            (k, features) => {
              const i = acked[k]!;
              if (features === null) lost++;
              else {
                const d = diff(features, itemFeatures(i));
                if (d !== "" && wrong.length < 5) wrong.push(`${itemId(i)}: ${d}`);
              }
            },
          );
          return true;
        } catch (err) {
          if (FeatureStoreError.from(err).code !== Code.Unavailable) throw err;
          return false;
        }
      });
      expect(wrong).toEqual([]);
      expect(lost).toBe(0);
    }
    expect(wrong).toEqual([]);
    expect(lost).toBe(0);
  }, 120_000);
});
