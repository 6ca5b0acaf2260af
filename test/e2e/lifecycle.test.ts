import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { startServer } from "../../src/main.ts";
import { startTestTcpServer } from "./fixture.ts";

// The default store is SQLite in DATA_DIR: each run gets its own directory.
const SERVER_ENV = {
  DATA_DIR: mkdtempSync(join(tmpdir(), "fs-lifecycle-")),
  HOST: "127.0.0.1",
  TCP_PORT: "0",
  HTTP_PORT: "0",
  GRPC_PORT: "0",
  CACHE_SIZE: "100000",
  CACHE_MAX_BYTES: "67108864",
};

describe("server lifecycle", () => {
  test("the client reconnects by itself after the server restarts on the same port", async () => {
    const first = startTestTcpServer();
    const port = first.port;
    const client = await FeatureStoreClient.connect({
      servers: [`127.0.0.1:${port}`],
      reconnect: { initialMs: 10, maxMs: 50 },
    });
    try {
      await client.setFeatures("r", { v: 1 });
      await first.server.drain(1000);
      const second = startTestTcpServer({ port });
      try {
        // Bounded: up to ~200 attempts while the pool notices the restart and reconnects.
        let ok = false;
        for (let i = 0; i < 200 && !ok; i++) {
          try {
            await client.setFeatures("r", { v: 2 });
            ok = true;
          } catch {
            await Bun.sleep(10);
          }
        }
        expect(ok).toBe(true);
        expect((await client.getFeatures("r")).features.v).toBe(2);
      } finally {
        await second.server.drain(1000);
      }
    } finally {
      await client.close();
    }
  });

  test("graceful shutdown answers what it received and loses no acknowledged write", async () => {
    const server = startServer(loadConfig(SERVER_ENV), silentLogger);
    const client = await FeatureStoreClient.connect({
      servers: [`127.0.0.1:${server.tcp.port}`],
      connectionsPerServer: 4,
    });
    const n = 20_000;
    const acked: number[] = [];
    let failed = 0;
    const calls: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      calls.push(
        client.setFeatures(`w:${i}`, { i }).then(
          () => {
            acked.push(i);
          },
          () => {
            failed++;
          },
        ),
      );
      if (i === n / 4) await Bun.sleep(0);
    }
    // Shut down while most writes are still in flight.
    await Promise.race([calls[n / 2], Bun.sleep(5)]);
    expect(server.ready).toBe(true);
    const stopping = server.shutdown();
    expect(server.ready).toBe(false);
    await Promise.all(calls);
    await stopping;
    await client.close();
    // Every call settled: acknowledged or failed, none left hanging.
    expect(acked.length + failed).toBe(n);
    expect(acked.length).toBeGreaterThan(0);
    // Every acknowledged write is in the store.
    for (const i of acked) {
      const key = new TextEncoder().encode(`w:${i}`);
      expect(server.store.find(key, 0, key.length)).toBeGreaterThanOrEqual(0);
    }
  });

  test("SIGTERM drains and exits 0; a bad config value exits 2 naming the variable", async () => {
    const proc = Bun.spawn([process.execPath, "src/main.ts"], {
      env: {
        ...process.env,
        ...SERVER_ENV,
        DATA_DIR: mkdtempSync(join(tmpdir(), "fs-lifecycle-")),
        LOG_LEVEL: "info",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = proc.stdout.getReader();
    let out = "";
    let port = 0;
    // Read log lines until the listening line tells the port (bounded by the test timeout).
    while (port === 0) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
      const m = out.match(/"tcpPort":(\d+)/);
      if (m) port = Number(m[1]);
    }
    expect(port).toBeGreaterThan(0);
    const client = await FeatureStoreClient.connect({ servers: [`127.0.0.1:${port}`] });
    await client.setFeatures("s", { v: 1 });
    expect((await client.getFeatures("s")).features.v).toBe(1);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    reader.releaseLock();
    await client.close();

    const bad = Bun.spawn([process.execPath, "src/main.ts"], {
      env: { ...process.env, ...SERVER_ENV, SHARD_COUNT: "3" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await bad.exited).toBe(2);
    expect(await new Response(bad.stderr).text()).toContain("SHARD_COUNT=3 is invalid");
  });
});
