/**
 * Our server (a real process) over a standalone redis-server that is killed and restarted:
 * the server never crashes, reports unready while Redis is gone, fails calls UNAVAILABLE within
 * their deadline, and recovers by itself when Redis returns. Also: a server started while Redis
 * is down starts, unready, and becomes ready when Redis comes up; bad Redis settings stop the
 * start with exit code 2 naming the variable.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import { Code } from "../../src/codec/status.ts";
import { codeOf } from "../codes.ts";
import {
  connect,
  removeDir,
  runToExit,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { until as waitUntil } from "../until.ts";
import { freePort, type RedisNode, startRedis } from "./harness.ts";

const WAIT_MS = 30_000;
const POLL_MS = 10;
const servers: ServerProcess[] = [];
const clients: FeatureStoreClient[] = [];
const redises: RedisNode[] = [];
const dir = tempDir("redis-standalone");

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.stop();
  for (const r of redises) await r.stop();
  removeDir(dir);
}, 30_000);

const until = (what: string, f: () => boolean | Promise<boolean>) => waitUntil(what, f, WAIT_MS, POLL_MS);

function env(url: string): Record<string, string> {
  return serverEnv(dir, { STORE: "redis", REDIS_URL: url, REDIS_COMMAND_TIMEOUT_MS: "300" });
}

describe("a server over a standalone Redis that goes away", () => {
  test("Redis killed and restarted: the server stays up, unready, calls UNAVAILABLE, then recovers by itself", async () => {
    // AOF with fsync always: what Redis acknowledged survives its SIGKILL.
    const redis = await startRedis({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    redises.push(redis);
    const server = await startServer(env(redis.url), (s) => servers.push(s));
    await until("ready", async () => (await server.httpStatus("/ready")) === 200);
    const client = await connect(server);
    clients.push(client);
    await client.setFeatures("u1", { v: 1 });
    expect((await client.getFeatures("u1")).features.v).toBe(1);

    await redis.kill9();
    await until("unready", async () => (await server.httpStatus("/ready")) === 503);
    expect(await server.httpStatus("/health")).toBe(200);
    // The dropped connection flushed the near-cache: reads need Redis, and fail within their deadline.
    expect(await codeOf(client.getFeatures("u1", undefined, { deadlineMs: 5000 }))).toBe(Code.Unavailable);
    expect(await codeOf(client.getFeatures("u2", undefined, { deadlineMs: 5000 }))).toBe(Code.Unavailable);
    expect(await codeOf(client.setFeatures("u1", { v: 2 }, { deadlineMs: 5000 }))).toBe(Code.Unavailable);

    await redis.restart();
    await until("ready again", async () => (await server.httpStatus("/ready")) === 200);
    expect((await client.getFeatures("u1")).features.v).toBe(1); // the refused write was not applied
    await client.setFeatures("u1", { v: 3 });
    expect((await client.getFeatures("u1")).features.v).toBe(3);
    expect(server.exitCode).toBeNull();
    expect(server.output).toContain("Redis unavailable");
    expect(server.output).toContain("Redis ready");
  }, 60_000);

  test("a server started while Redis is down starts unready and becomes ready when Redis comes up", async () => {
    const port = await freePort();
    const server = await startServer(env(`redis://127.0.0.1:${port}`), (s) => servers.push(s));
    expect(await server.httpStatus("/ready")).toBe(503);
    const client = await connect(server);
    clients.push(client);
    expect(await codeOf(client.getFeatures("x", undefined, { deadlineMs: 5000 }))).toBe(Code.Unavailable);
    const redis = await startRedis({ port });
    redises.push(redis);
    await until("ready", async () => (await server.httpStatus("/ready")) === 200);
    await client.setFeatures("x", { v: 1 });
    expect((await client.getFeatures("x")).features.v).toBe(1);
  }, 60_000);

  test("bad Redis settings stop the start with exit code 2 naming the variable", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ STORE: "redis" }, "REDIS_URL"],
      [{ STORE: "redis", REDIS_URL: "http://x:1" }, "REDIS_URL"],
      [{ STORE: "redis", REDIS_CLUSTER_NODES: "a:1,nope" }, "REDIS_CLUSTER_NODES"],
      [
        {
          STORE: "redis",
          REDIS_URL: "redis://127.0.0.1:1",
          REDIS_WAIT_REPLICAS: "1",
          REDIS_WAIT_TIMEOUT_MS: "2000",
        },
        "REDIS_WAIT_TIMEOUT_MS",
      ],
    ];
    for (const [extra, name] of cases) {
      const { code, output } = await runToExit(serverEnv(dir, extra), (s) => servers.push(s));
      expect(code).toBe(2);
      expect(output).toContain(name);
    }
  }, 60_000);
});
