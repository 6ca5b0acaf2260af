/**
 * `featurestore ingest`: the CLI runs the stream consumer (src/ingest) with its own options:
 * entries written with redis-cli reach the server, and SIGTERM stops it with exit 0 and nothing
 * left pending.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { FeatureStoreClient } from "../../src/client/index.ts";
import {
  connect,
  removeDir,
  type ServerProcess,
  serverEnv,
  startServer,
  tempDir,
} from "../e2e/durable-fixture.ts";
import { type RedisNode, startRedis } from "../redis/harness.ts";

const ROOT = join(import.meta.dir, "..", "..");
const dir = tempDir("cli-ingest");
const servers: ServerProcess[] = [];
const clients: FeatureStoreClient[] = [];
let redis: RedisNode | null = null;

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.stop();
  await redis?.stop();
  removeDir(dir);
});

test("featurestore ingest consumes a stream into the server and stops on SIGTERM with exit 0", async () => {
  redis = await startRedis();
  const server = await startServer(serverEnv(dir, { GRPC_PORT: "0" }), (s) => servers.push(s));
  const client = await connect(server);
  clients.push(client);
  for (let i = 0; i < 20; i++)
    await redis.cli("XADD", "events", "*", "entity_id", `u${i}`, "f:clicks", String(i), "f:country", "FR");
  const consumer = Bun.spawn(
    [
      process.execPath,
      "src/cli/bin.ts",
      "ingest",
      "--redis",
      redis.url,
      "--stream",
      "events",
      "--group",
      "fs",
      "--consumer",
      "c1",
      "--server",
      server.address,
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  try {
    const until = performance.now() + 20_000;
    while ((await client.getFeatures("u19")).features.clicks !== 19) {
      if (performance.now() > until) throw new Error(await new Response(consumer.stderr).text());
      await Bun.sleep(20);
    }
    const r = await client.batchGet(Array.from({ length: 20 }, (_, i) => `u${i}`));
    expect(r.results.map((x) => x.features.clicks)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(r.results.every((x) => x.features.country === "FR")).toBe(true);
  } finally {
    consumer.kill("SIGTERM");
  }
  expect(await consumer.exited).toBe(0);
  expect(await redis.cli("XPENDING", "events", "fs")).toStartWith("0");
}, 60_000);
