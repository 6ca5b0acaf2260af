/**
 * Every `featurestore` command against a real server process: exit codes, human and --json
 * output, --help of each command, tokens (AUTH_TOKENS_FILE).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { makeTokens } from "../auth/certs.ts";
import { removeDir, type ServerProcess, serverEnv, startServer, tempDir } from "../e2e/durable-fixture.ts";
import { cli, jsonLines, spawnCli } from "./helpers.ts";

const COMMANDS = ["get", "set", "del", "batch-get", "ping", "latency", "stats", "load", "export"];

describe("featurestore without a server", () => {
  test("--help of the program lists every command and the exit statuses", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c}`);
    expect(r.stdout).toContain("Exit status:");
    expect(r.stdout).toContain("FEATURESTORE_SERVER");
  });

  test("every command has --help, exits 0 and shows the global flags", async () => {
    for (const c of COMMANDS) {
      const r = await cli([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: featurestore ${c}`);
      expect(r.stdout).toContain("--server");
    }
  });

  test("bad usage exits 2 with a message", async () => {
    expect((await cli(["get"])).code).toBe(2);
    expect((await cli(["frobnicate"])).code).toBe(2);
    const r = await cli(["set", "x", "novalue"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("name=value");
    expect((await cli(["load", "/nonexistent/file.ndjson"])).code).toBe(2);
    expect((await cli(["load", "file.txt"])).code).toBe(2);
    expect((await cli(["--timeout", "-1", "ping"])).code).toBe(2);
  });

  test("an unreachable server exits 3, with a JSON error on stderr under --json", async () => {
    const r = await cli(["--server", "127.0.0.1:1", "--timeout", "300", "--json", "ping"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("");
    const err = JSON.parse(r.stderr.trim()) as { error: { code: string; exit: number } };
    expect(err.error.code).toBe("unavailable");
    expect(err.error.exit).toBe(3);
  });
});

describe("featurestore against a server", () => {
  let dir: string;
  let server: ServerProcess | undefined;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = tempDir("cli");
    server = await startServer(serverEnv(dir), (s) => {
      server = s;
    });
    env = { FEATURESTORE_SERVER: server.address };
  });
  afterAll(async () => {
    await server?.stop();
    removeDir(dir);
  });

  test("set writes typed values from flags; get shows them with their types; --json parses", async () => {
    const set = await cli(
      [
        "set",
        "user:1",
        "clicks=17",
        "ctr:double=1",
        "country=DE",
        "emb=[0.5,-0.25]",
        'tags=["a","b"]',
        "premium=true",
        "ids:int_list=[1,2]",
        "avatar:bytes=AQID",
      ],
      { env },
    );
    expect(set.code).toBe(0);
    expect(set.stdout).toContain("OK (8 features)");
    const human = await cli(["get", "user:1"], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/clicks\s+int\s+17/);
    expect(human.stdout).toMatch(/ctr\s+double\s+1/);
    expect(human.stdout).toMatch(/emb\s+float_list\s+\[0\.5, -0\.25\]/);
    const r = await cli(["get", "user:1", "--json"], { env });
    expect(r.code).toBe(0);
    const rec = JSON.parse(r.stdout);
    expect(rec).toEqual({
      entity_id: "user:1",
      found: true,
      features: {
        clicks: 17,
        ctr: 1,
        country: "DE",
        emb: [0.5, -0.25],
        tags: ["a", "b"],
        premium: true,
        ids: [1, 2],
        avatar: "AQID",
      },
      types: {
        clicks: "int",
        ctr: "double",
        country: "string",
        emb: "float_list",
        tags: "string_list",
        premium: "bool",
        ids: "int_list",
        avatar: "bytes",
      },
    });
  });

  test("set --data takes JSON (and stdin), --replace replaces the record, get of names projects", async () => {
    expect((await cli(["set", "user:2", "-d", '{"a": 1, "b": 0.5, "e": [1, 2]}'], { env })).code).toBe(0);
    expect((await cli(["set", "user:2", "-d", "-"], { env, stdin: '{"c": "x"}' })).code).toBe(0);
    let rec = JSON.parse((await cli(["get", "user:2", "--json"], { env })).stdout);
    expect(rec.features).toEqual({ a: 1, b: 0.5, e: [1, 2], c: "x" });
    expect(rec.types.e).toBe("float_list");
    expect((await cli(["set", "user:2", "z=1", "--replace"], { env })).code).toBe(0);
    rec = JSON.parse((await cli(["get", "user:2", "--json"], { env })).stdout);
    expect(rec.features).toEqual({ z: 1 });
    rec = JSON.parse((await cli(["get", "user:1", "clicks", "nope", "--json"], { env })).stdout);
    expect(rec.features).toEqual({ clicks: 17 });
    expect(rec.missing).toEqual(["nope"]);
  });

  test("get --event-times shows each value's event time and max age; windows read as window; stale features are listed", async () => {
    const t0 = Date.now() - 3_600_000;
    const client = await FeatureStoreClient.connect({ servers: [server!.address] });
    try {
      await client.setFeatures("user:t", { clicks: 3 }, { eventTimeMs: t0 });
      await client.setFeatures("user:t", { fresh: "a" }, { eventTimeMs: t0 + 1, maxAgeMs: 86_400_000 });
      await client.setFeatures("user:t", { old: "b" }, { eventTimeMs: t0, maxAgeMs: 1000 });
      const spec = { bucketMs: 60_000, retentionMs: 86_400_000 };
      await client.updateFeatures("user:t", [{ name: "spend", observe: 2.5, spec, eventTimeMs: t0 + 2 }]);
      await client.updateFeatures("user:t", [{ name: "spend", observe: 1.5, spec, eventTimeMs: t0 + 3 }]);
    } finally {
      await client.close();
    }

    const plain = JSON.parse((await cli(["get", "user:t", "--json"], { env })).stdout);
    expect(plain.event_times).toBeUndefined();
    expect(plain.stale).toEqual(["old"]);
    expect(plain.types).toEqual({ clicks: "int", fresh: "string", spend: "window" });
    expect(plain.features.spend).toMatchObject({ bucketMs: 60_000, retentionMs: 86_400_000 });
    expect(plain.features.spend.counts.reduce((a: number, b: number) => a + b, 0)).toBe(2);
    expect(plain.features.spend.sums.reduce((a: number, b: number) => a + b, 0)).toBe(4);

    const timed = JSON.parse((await cli(["get", "user:t", "--json", "--event-times"], { env })).stdout);
    expect(timed.features).toEqual(plain.features);
    expect(timed.event_times).toMatchObject({ clicks: t0, fresh: t0 + 1 });
    expect(timed.event_times.spend).toBeGreaterThanOrEqual(t0);
    expect(timed.max_ages).toEqual({ fresh: 86_400_000 });

    const human = await cli(["get", "user:t", "--event-times"], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`${new Date(t0).toISOString()}  clicks`);
    expect(human.stdout).toMatch(/fresh\s+string\s+"a"\s+\(max age 86400000 ms\)/);
    expect(human.stdout).toMatch(/spend\s+window\s+2 events in \d+ tiles? of 60000 ms/);
    expect(human.stdout).toContain("stale (older than their max age): old");
    const batch = jsonLines((await cli(["batch-get", "user:t", "--event-times", "--json"], { env })).stdout);
    expect(batch[0]!.event_times).toEqual(timed.event_times);
  });

  test("get of a missing entity exits 1 (not found), with found: false in --json", async () => {
    const r = await cli(["get", "nobody", "--json"], { env });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).found).toBe(false);
  });

  test("del exits 0 when it deleted, 1 when there was nothing", async () => {
    await cli(["set", "gone", "a=1", "b=2"], { env });
    let r = await cli(["del", "gone", "a", "--json"], { env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ entity_id: "gone", deleted: true });
    expect((await cli(["del", "gone"], { env })).code).toBe(0);
    r = await cli(["del", "gone", "--json"], { env });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).deleted).toBe(false);
  });

  test("batch-get prints one JSON record per id (ids from args and stdin), exit 1 when one is missing", async () => {
    let r = await cli(["batch-get", "user:1", "--ids", "-", "-f", "clicks", "--json"], {
      env,
      stdin: "user:2\nnobody\n",
    });
    expect(r.code).toBe(1);
    const recs = jsonLines(r.stdout);
    expect(recs.map((x) => [x.entity_id, x.found])).toEqual([
      ["user:1", true],
      ["user:2", true],
      ["nobody", false],
    ]);
    expect(recs[0]!.features).toEqual({ clicks: 17 });
    r = await cli(["batch-get", "user:1", "user:2"], { env });
    expect(r.code).toBe(0);
  });

  test("ping prints PONG and a time; --json gives ms", async () => {
    const r = await cli(["ping"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^PONG \d/);
    const j = JSON.parse((await cli(["ping", "--json"], { env })).stdout);
    expect(j.ok).toBe(true);
    expect(j.ms).toBeGreaterThan(0);
  });

  test("latency --count stops after N round trips and reports p50 <= p99", async () => {
    const r = await cli(["latency", "--count", "300", "--json"], { env });
    expect(r.code).toBe(0);
    const last = jsonLines(r.stdout).at(-1)!;
    expect(last.final).toBe(true);
    expect(last.samples).toBe(300);
    expect(last.p50_ms as number).toBeGreaterThan(0);
    expect(last.p50_ms as number).toBeLessThanOrEqual(last.p99_ms as number);
    const g = await cli(["latency", "--count", "20", "--get", "user:1"], { env });
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/p50 .* p99 .*\(20 samples\)/);
  });

  test("latency --duration stops in time, and Ctrl-C stops it with a summary", async () => {
    const t0 = performance.now();
    const r = await cli(["latency", "--duration", "0.5", "--json"], { env });
    expect(r.code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(jsonLines(r.stdout).at(-1)!.final).toBe(true);
    const running = spawnCli(["latency", "--json"], { env });
    await Bun.sleep(700);
    running.kill("SIGINT");
    expect(await running.exited).toBe(0);
    const last = jsonLines(await new Response(running.stdout).text()).at(-1)!;
    expect(last.final).toBe(true);
    expect(last.samples as number).toBeGreaterThan(0);
  });

  test("stats prints a line per interval of rates from /metrics", async () => {
    const http = `127.0.0.1:${server!.httpPort}`;
    const traffic = cli(["latency", "--duration", "1.2"], { env });
    const r = await cli(["stats", "--http", http, "--interval", "400", "--count", "2", "--json"], { env });
    await traffic;
    expect(r.code).toBe(0);
    const rows = jsonLines(r.stdout);
    expect(rows.length).toBe(2);
    for (const row of rows) {
      expect(typeof row.requests_per_s).toBe("number");
      expect(row).toHaveProperty("hit_ratio");
      expect(row.connections as number).toBeGreaterThanOrEqual(0);
    }
    expect(rows.some((x) => (x.Ping as number) > 0)).toBe(true);
    const human = await cli(["stats", "--http", http, "--interval", "200", "--count", "1"], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("req/s");
    expect(human.stdout).toContain("hit%");
    const down = await cli(["stats", "--http", "127.0.0.1:1", "--count", "1", "--timeout", "500"], { env });
    expect(down.code).toBe(3);
  });
});

describe("featurestore with tokens", () => {
  test("no token or a revoked one exits 4; a read token cannot set (4); a write token can; FEATURESTORE_TOKEN works", async () => {
    const dir = tempDir("cli-auth");
    let server: ServerProcess | undefined;
    try {
      const tokens = makeTokens(dir);
      server = await startServer(serverEnv(dir, { AUTH_TOKENS_FILE: tokens.file }), (s) => {
        server = s;
      });
      const base = ["--server", server.address, "--timeout", "2000"];
      const none = await cli([...base, "get", "x", "--json"]);
      expect(none.code).toBe(4);
      expect(JSON.parse(none.stderr.trim()).error.code).toBe("unauthenticated");
      expect((await cli([...base, "--token", "nope", "ping"])).code).toBe(4);
      const denied = await cli([...base, "--token", tokens.read, "--json", "set", "x", "a=1"]);
      expect(denied.code).toBe(4);
      expect(JSON.parse(denied.stderr.trim()).error.code).toBe("permission_denied");
      expect((await cli([...base, "--token", tokens.write, "set", "x", "a=1"])).code).toBe(0);
      const viaEnv = await cli([...base, "get", "x", "--json"], { env: { FEATURESTORE_TOKEN: tokens.read } });
      expect(viaEnv.code).toBe(0);
      expect(JSON.parse(viaEnv.stdout).features).toEqual({ a: 1 });
    } finally {
      await server?.stop();
      removeDir(dir);
    }
  });
});
