import { describe, expect, test } from "bun:test";
import { ConfigError, DEFAULTS, loadConfig } from "../../src/config/index.ts";

describe("loadConfig", () => {
  test("an empty environment gives the documented defaults", () => {
    expect(loadConfig({})).toEqual(DEFAULTS);
  });

  test("values are read from their variables", () => {
    const c = loadConfig({
      TCP_PORT: "0",
      HTTP_PORT: "9000",
      CACHE_SIZE: "1_000",
      CACHE_MAX_BYTES: "1048576",
      SHARD_COUNT: "8",
      DEFAULT_TTL_MS: "60000",
      LOG_LEVEL: "DEBUG",
      MAX_FRAME_BYTES: "65536",
      METRICS_ENABLED: "off",
    });
    expect(c).toMatchObject({
      tcpPort: 0,
      httpPort: 9000,
      cacheSize: 1000,
      cacheMaxBytes: 1048576,
      shardCount: 8,
      defaultTtlMs: 60000,
      logLevel: "debug",
      maxFrameBytes: 65536,
      metricsEnabled: false,
    });
  });

  test.each([
    [{ TCP_PORT: "http" }, /TCP_PORT="http" is invalid: expected an integer from 0 to 65535/],
    [{ TCP_PORT: "70000" }, /TCP_PORT/],
    [{ SHARD_COUNT: "12" }, /SHARD_COUNT=12 is invalid: expected a power of two/],
    [{ CACHE_SIZE: "-5" }, /CACHE_SIZE/],
    [{ CACHE_SIZE: "2", SHARD_COUNT: "4" }, /at least SHARD_COUNT/],
    [{ DEFAULT_TTL_MS: "1.5" }, /DEFAULT_TTL_MS/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL="loud" is invalid: expected one of debug, info, warn, error/],
    [{ METRICS_ENABLED: "maybe" }, /METRICS_ENABLED="maybe" is invalid: expected true or false/],
    [{ MAX_FRAME_BYTES: "10" }, /MAX_FRAME_BYTES/],
    [
      { CACHE_MAX_BYTES: String(4 * 2 ** 30), SHARD_COUNT: "1" },
      /CACHE_MAX_BYTES=4294967296 with SHARD_COUNT=1 is invalid: .* use SHARD_COUNT=4 or more/,
    ],
    [
      { MAX_CLIENT_MEMORY_BYTES: String(2 ** 20) },
      /MAX_CLIENT_MEMORY_BYTES=1048576 is invalid: .*MAX_FRAME_BYTES/,
    ],
    [{ MAX_FEATURE_NAMES: "0" }, /MAX_FEATURE_NAMES/],
    [{ TCP_FRAME_TIMEOUT_MS: "5" }, /TCP_FRAME_TIMEOUT_MS/],
  ])("%o is refused with a message naming the variable", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  test("a cross-field mistake stops the server with exit code 2 and the variables' names, not the cache's", () => {
    const r = Bun.spawnSync(["bun", "src/main.ts"], {
      env: {
        ...process.env,
        CACHE_MAX_BYTES: String(4 * 2 ** 30),
        SHARD_COUNT: "1",
        TCP_PORT: "0",
        HTTP_PORT: "0",
        GRPC_PORT: "0",
      },
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(2);
    const err = r.stderr.toString();
    expect(err).toContain("SHARD_COUNT");
    expect(err).not.toContain("maxBytes");
  });
});
