/**
 * Streaming ingestion end to end: a real redis-server holds the stream, a real server process
 * (STORE=sqlite over a DATA_DIR) takes the writes, and the consumer runs in this process
 * (`startIngest`) or as a child process (`bun src/ingest/main.ts`) that is SIGKILLed mid-stream.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { RedisClientType } from "@redis/client";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import { type IngestHandle, startIngest } from "../../src/ingest/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import {
  connect,
  removeDir,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { type RedisNode, startRedis } from "../redis/harness.ts";
import {
  checkVersions,
  groupInfo,
  type IngestProcess,
  produce,
  redisClient,
  sample,
  startConsumer,
  versionEntry,
  waitFor,
} from "./fixture.ts";

/** Longest run of one test, ms: the SIGKILL tests move 60,000 entries through two consumers. */
setDefaultTimeout(120_000);

/** Longest wait for a consumer to drain what a test produced, ms. */
const DRAIN_TIMEOUT_MS = 60_000;

let redis: RedisNode;
let r: RedisClientType;
let server: ServerProcess;
let client: FeatureStoreClient;
const dir = tempDir("ingest");
const dirs = [dir];
const servers: ServerProcess[] = [];
const consumers: IngestProcess[] = [];
const handles: IngestHandle[] = [];

beforeAll(async () => {
  redis = await startRedis();
  r = await redisClient(redis.url);
  server = await startServer(serverEnv(dir, { GRPC_PORT: "0" }), (s) => servers.push(s));
  client = await connect(server);
});

afterAll(async () => {
  for (const h of handles) await h.stop().catch(() => {});
  for (const c of consumers) await c.stop();
  await client?.close();
  for (const s of servers) await s.stop();
  await r?.destroy();
  await redis?.stop();
  for (const d of dirs) removeDir(d);
});

/** A consumer in this process, stopped by afterAll if the test does not. */
async function ingest(stream: string, extra: Partial<Parameters<typeof startIngest>[0]> = {}) {
  const h = await startIngest({
    redisUrl: redis.url,
    stream,
    group: "g",
    consumer: "c1",
    client: { servers: [server.address], deadlineMs: 10_000 },
    blockMs: 100,
    metricsPort: 0,
    metricsHost: "127.0.0.1",
    logger: silentLogger,
    ...extra,
  });
  handles.push(h);
  return h;
}

/** Waits until the group has read everything and acknowledged it. */
async function drained(stream: string, group = "g"): Promise<void> {
  await waitFor(
    async () => {
      const g = await groupInfo(r, stream, group);
      return g.lag === 0 && g.pending === 0;
    },
    DRAIN_TIMEOUT_MS,
    () => `${stream} was not drained`,
  );
}

async function deadLetters(stream: string): Promise<Record<string, string>[]> {
  const raw = await r.sendCommand<[string, string[]][]>(["XRANGE", `${stream}:dead`, "-", "+"]);
  return raw.map(([, kv]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i < kv.length; i += 2) o[String(kv[i])] = String(kv[i + 1]);
    return o;
  });
}

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

describe("startIngest over redis-server and a server process", () => {
  test("entries of every shape are written with their types, TTL and replace; bad ones go to the dead-letter stream with their reason", async () => {
    const s = "shapes";
    await client.setFeatures("old", { stale: 1, keep: 2 });
    const ids = await produce(r, s, 0, 1, () => [
      "entity_id",
      "flat",
      "f:n",
      "3",
      "f:x",
      "0.5",
      "f:c",
      "FR",
      "f:emb",
      "[1,2]",
      "meta:trace",
      "t1",
    ]);
    const poison = {
      unknownField: (await produce(r, s, 0, 1, () => ["entity_id", "p1", "f:a", "1", "colour", "red"]))[0]!,
      badJson: (await produce(r, s, 0, 1, () => ["entity_id", "p2", "features", "{"]))[0]!,
      noEntity: (await produce(r, s, 0, 1, () => ["f:a", "1"]))[0]!,
      // Valid here, refused by the server (MAX_ENTITY_ID_BYTES, 1024): found by bisecting the batch.
      longId: (await produce(r, s, 0, 1, () => ["entity_id", "x".repeat(2000), "f:a", "1"]))[0]!,
    };
    ids.push(
      ...(await produce(r, s, 0, 1, () => [
        "entity_id",
        "json",
        "features",
        JSON.stringify({
          big: { intValue: "9007199254740993" },
          tags: { stringList: { values: ["a", "b"] } },
        }),
      ])),
      ...(await produce(r, s, 0, 1, () => ["entity_id", "old", "f:fresh", "true", "replace", "true"])),
      ...(await produce(r, s, 0, 1, () => ["entity_id", "short", "f:a", "1", "ttl_ms", "300"])),
    );
    const h = await ingest(s);
    await drained(s);

    const flat = await client.getFeatures("flat");
    expect(flat.features.n).toBe(3);
    expect(flat.features.x).toBe(0.5);
    expect(flat.features.c).toBe("FR");
    expect(flat.features.emb).toEqual(new Float32Array([1, 2]));
    expect(Object.keys(flat.features).sort()).toEqual(["c", "emb", "n", "x"]);
    const json = await client.getFeatures("json");
    expect(json.features.big).toBe(9007199254740993n);
    expect(json.features.tags).toEqual(["a", "b"]);
    expect((await client.getFeatures("old")).features).toEqual(
      Object.assign(Object.create(null), { fresh: true }),
    );
    expect((await client.getFeatures("short")).found).toBe(true);
    for (const p of ["p1", "p2"]) expect((await client.getFeatures(p)).found).toBe(false);

    const dead = await deadLetters(s);
    const byId = new Map(dead.map((d) => [d["dead:id"], d]));
    expect(dead.length).toBe(4);
    expect(byId.get(poison.unknownField)).toMatchObject({
      "dead:reason": "invalid",
      "dead:deliveries": "1",
      "dead:group": "g",
      "dead:consumer": "c1",
      entity_id: "p1",
      colour: "red",
    });
    expect(byId.get(poison.unknownField)!["dead:message"]).toContain('unknown field "colour"');
    expect(byId.get(poison.badJson)!["dead:message"]).toContain("features is not JSON");
    expect(byId.get(poison.noEntity)!["dead:message"]).toBe("entity_id is missing");
    expect(byId.get(poison.longId)!["dead:reason"]).toBe("rejected");
    expect(byId.get(poison.longId)!["dead:message"]).toContain("invalid_argument");

    const m = await scrape(h.metricsPort!);
    const labels = { stream: s, group: "g", consumer: "c1" };
    expect(sample(m, "featurestore_ingest_lag_entries", labels)).toBe(0);
    expect(sample(m, "featurestore_ingest_pending_entries", labels)).toBe(0);
    expect(sample(m, "featurestore_ingest_entries_total", { ...labels, outcome: "written" })).toBe(4);
    expect(sample(m, "featurestore_ingest_entries_total", { ...labels, outcome: "dead_lettered" })).toBe(4);
    expect(sample(m, "featurestore_ingest_dead_letters_total", { ...labels, reason: "invalid" })).toBe(3);
    expect(sample(m, "featurestore_ingest_dead_letters_total", { ...labels, reason: "rejected" })).toBe(1);
    expect(
      sample(m, "featurestore_ingest_write_failures_total", { code: "invalid_argument" }),
    ).toBeGreaterThan(0);
    await h.stop();
    expect(h.stats()).toMatchObject({ written: 4, deadLettered: 4, ackMisses: 0 });

    // ttl_ms: 300 ms from the write
    await waitFor(
      async () => !(await client.getFeatures("short")).found,
      5000,
      () => "the 300 ms TTL did not expire",
    );
  });

  test("an entry delivered more than maxDeliveries times goes to the dead-letter stream unwritten", async () => {
    const s = "redelivered";
    await r.sendCommand(["XGROUP", "CREATE", s, "g", "0", "MKSTREAM"]);
    const [id] = await produce(r, s, 0, 1, () => ["entity_id", "crasher", "f:a", "1"]);
    // A consumer "ghost" took it, and (as if it crashed on it every time) it was handed out 9 times.
    await r.sendCommand(["XREADGROUP", "GROUP", "g", "ghost", "COUNT", "1", "STREAMS", s, ">"]);
    await r.sendCommand(["XCLAIM", s, "g", "ghost", "0", id!, "RETRYCOUNT", "9"]);
    const h = await ingest(s, { minIdleMs: 1, claimEveryMs: 50, maxDeliveries: 5 });
    await drained(s);
    const [dead] = await deadLetters(s);
    expect(dead).toMatchObject({ "dead:id": id, "dead:reason": "max_deliveries", "dead:deliveries": "10" });
    expect(dead!["dead:message"]).toBe("delivered 10 times (max 5)");
    expect((await client.getFeatures("crasher")).found).toBe(false);
    const m = await scrape(h.metricsPort!);
    expect(sample(m, "featurestore_ingest_redeliveries_total", { source: "claimed" })).toBe(1);
    expect(sample(m, "featurestore_ingest_dead_letters_total", { reason: "max_deliveries" })).toBe(1);
    await h.stop();
  });

  test("throughput: 100,000 entries already in the stream are written and acknowledged, lag visible meanwhile", async () => {
    const s = "bulk";
    const total = 100_000;
    const entities = 2000;
    await r.sendCommand(["XGROUP", "CREATE", s, "g", "0", "MKSTREAM"]);
    await produce(r, s, 0, total, (i) => versionEntry(i, entities));
    const t0 = performance.now();
    const h = await ingest(s);
    // Scraped every 100 ms: each scrape is an XINFO GROUPS and a render in the consumer's process.
    let maxLag = 0;
    let scrapes = 0;
    for (const until = Date.now() + DRAIN_TIMEOUT_MS; h.stats().written < total; scrapes++) {
      if (Date.now() > until) throw new Error(`only ${h.stats().written} of ${total} entries were written`);
      maxLag = Math.max(maxLag, sample(await scrape(h.metricsPort!), "featurestore_ingest_lag_entries") ?? 0);
      await Bun.sleep(100);
    }
    const seconds = (performance.now() - t0) / 1000;
    await drained(s);
    await h.stop();
    console.log(
      `ingest: ${total} entries in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} entries/s ` +
        `(batch 500, STORE=sqlite); largest lag of ${scrapes} scrapes ${maxLag}`,
    );
    expect(maxLag).toBeGreaterThan(0);
    expect(await checkVersions(client, total, entities)).toEqual([]);
  });

  test("a server outage stalls the stream without dead-lettering it; the entries are written once the server is back", async () => {
    const s = "outage";
    const ownDir = tempDir("ingest-outage");
    dirs.push(ownDir);
    const own = await startServer(serverEnv(ownDir, { GRPC_PORT: "0" }), (p) => servers.push(p));
    const port = own.tcpPort;
    const h = await startIngest({
      redisUrl: redis.url,
      stream: s,
      group: "g",
      consumer: "c1",
      client: { servers: [own.address], deadlineMs: 500, reconnect: { initialMs: 20, maxMs: 200 } },
      blockMs: 100,
      writeDeadlineMs: 500,
      retryMaxMs: 200,
      logger: silentLogger,
    });
    handles.push(h);
    await produce(r, s, 0, 100, (i) => versionEntry(i, 10));
    await drained(s);
    await own.stop();
    await produce(r, s, 100, 200, (i) => versionEntry(i, 10));
    await Bun.sleep(1500);
    const during = await groupInfo(r, s, "g");
    expect(during.pending).toBeGreaterThan(0);
    expect(h.stats().deadLettered).toBe(0);
    // The same DATA_DIR on the same port: the client reconnects to where it was.
    const back = await startServer(serverEnv(ownDir, { GRPC_PORT: "0", TCP_PORT: String(port) }), (p) =>
      servers.push(p),
    );
    await drained(s);
    expect(h.stats().deadLettered).toBe(0);
    const c = await connect(back);
    try {
      expect(await checkVersions(c, 200, 10)).toEqual([]);
    } finally {
      await c.close();
      await h.stop();
    }
  });
});

describe("the consumer process killed mid-stream (SIGKILL)", () => {
  const total = 60_000;
  const entities = 1000;

  async function killMidStream(s: string): Promise<{ pendingAtKill: number; readAtKill: number }> {
    await r.sendCommand(["XGROUP", "CREATE", s, "g", "0", "MKSTREAM"]);
    await produce(r, s, 0, total / 2, (i) => versionEntry(i, entities));
    const first = await startConsumer(
      [
        "--redis",
        redis.url,
        "--stream",
        s,
        "--group",
        "g",
        "--consumer",
        "first",
        "--server",
        server.address,
      ],
      (p) => consumers.push(p),
    );
    // More entries arrive while it runs; it is killed a third of the way through.
    const producing = produce(r, s, total / 2, total, (i) => versionEntry(i, entities));
    await waitFor(
      async () => ((await groupInfo(r, s, "g")).entriesRead ?? 0) >= total / 3,
      DRAIN_TIMEOUT_MS,
      () => `the first consumer did not read a third of the stream:\n${first.output}`,
    );
    first.signal("SIGKILL");
    await first.waitExit();
    await producing;
    const g = await groupInfo(r, s, "g");
    return { pendingAtKill: g.pending, readAtKill: g.entriesRead ?? 0 };
  }

  async function expectExactlyApplied(s: string): Promise<void> {
    await drained(s);
    const g = await groupInfo(r, s, "g");
    expect(g.entriesRead).toBe(total);
    const pending = await r.sendCommand<unknown[]>(["XPENDING", s, "g"]);
    expect(Number(pending[0])).toBe(0);
    expect(await r.sendCommand<number>(["EXISTS", `${s}:dead`])).toBe(0);
    expect(await checkVersions(client, total, entities)).toEqual([]);
  }

  test("restarted under the same name, it takes back its own pending entries first: nothing lost, nothing doubled", async () => {
    const s = "killed-same-name";
    const { pendingAtKill, readAtKill } = await killMidStream(s);
    expect(pendingAtKill).toBeGreaterThan(0);
    const again = await startConsumer(
      [
        "--redis",
        redis.url,
        "--stream",
        s,
        "--group",
        "g",
        "--consumer",
        "first",
        "--server",
        server.address,
      ],
      (p) => consumers.push(p),
    );
    await expectExactlyApplied(s);
    again.signal("SIGTERM");
    expect(await again.waitExit()).toBe(0);
    const stats = again.finalStats()!;
    expect(stats.redelivered).toBe(pendingAtKill);
    expect(stats.written).toBe(total - readAtKill + pendingAtKill);
    expect(stats.ackMisses).toBe(0);
  });

  test("another consumer claims the dead one's entries with XAUTOCLAIM once idle: nothing lost, nothing doubled", async () => {
    const s = "killed-claimed";
    const { pendingAtKill, readAtKill } = await killMidStream(s);
    expect(pendingAtKill).toBeGreaterThan(0);
    const second = await startConsumer(
      [
        ...["--redis", redis.url, "--stream", s, "--group", "g", "--consumer", "second"],
        ...["--server", server.address, "--min-idle-ms", "1000", "--claim-every-ms", "200"],
      ],
      (p) => consumers.push(p),
    );
    await expectExactlyApplied(s);
    second.signal("SIGTERM");
    expect(await second.waitExit()).toBe(0);
    const stats = second.finalStats()!;
    expect(stats.redelivered).toBe(pendingAtKill);
    expect(stats.written).toBe(total - readAtKill + pendingAtKill);
    expect(stats.ackMisses).toBe(0);
    // The dead consumer holds nothing any more.
    const left = await r.sendCommand<unknown[]>(["XPENDING", s, "g", "-", "+", "10", "first"]);
    expect(left).toEqual([]);
  });

  test("SIGTERM stops it gracefully: what it read is written and acknowledged before it exits 0", async () => {
    const s = "terminated";
    await r.sendCommand(["XGROUP", "CREATE", s, "g", "0", "MKSTREAM"]);
    await produce(r, s, 0, total, (i) => versionEntry(i, entities));
    const p = await startConsumer(
      ["--redis", redis.url, "--stream", s, "--group", "g", "--consumer", "t", "--server", server.address],
      (x) => consumers.push(x),
    );
    await waitFor(
      async () => ((await groupInfo(r, s, "g")).entriesRead ?? 0) >= total / 4,
      DRAIN_TIMEOUT_MS,
      () => `the consumer did not read a quarter of the stream:\n${p.output}`,
    );
    p.signal("SIGTERM");
    expect(await p.waitExit()).toBe(0);
    const g = await groupInfo(r, s, "g");
    expect(g.pending).toBe(0);
    expect(g.entriesRead).toBeLessThan(total);
    expect(p.finalStats()!.written).toBe(g.entriesRead!);
  });
});
