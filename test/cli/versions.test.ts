/**
 * `publish`, `rollback`, `drop-version`, `feature-set`, the `--feature-set`/`--version` flags of
 * get, batch-get, set and del, and the atomic updates `incr` and `append`, against a real server
 * process.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, type ServerProcess, serverEnv, startServer, tempDir } from "../e2e/durable-fixture.ts";
import { cli, jsonLines } from "./helpers.ts";

const COMMANDS = ["incr", "append", "publish", "rollback", "drop-version", "feature-set"];

/** The JSON error `--json` prints on stderr. */
function jsonError(stderr: string): { code: string; exit: number; message: string } {
  return (JSON.parse(stderr.trim()) as { error: { code: string; exit: number; message: string } }).error;
}

describe("featurestore versions and updates without a server", () => {
  test("every new command is listed and has --help with examples", async () => {
    const all = await cli(["--help"]);
    for (const c of COMMANDS) expect(all.stdout).toContain(`  ${c}`);
    for (const c of COMMANDS) {
      const r = await cli([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: featurestore ${c}`);
      expect(r.stdout).toContain("Example");
    }
    for (const c of ["get", "batch-get", "set", "del"]) {
      const r = await cli([c, "--help"]);
      expect(r.stdout).toContain("--feature-set <name>");
      expect(r.stdout).toContain("--version <name>");
    }
  });

  test("--version alone prints the program's version; after a command it is the command's flag", async () => {
    const alone = await cli(["--version"]);
    expect(alone.code).toBe(0);
    expect(alone.stdout.trim()).toBe((await cli(["-V"])).stdout.trim());
    // Checked before connecting: the flag reached `get`, not the program.
    const r = await cli(["get", "x", "--version", "v1", "--server", "127.0.0.1:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--version v1 needs --feature-set");
  });

  test("writes need --feature-set and --version together, reads --feature-set with any --version: exit 2 before connecting", async () => {
    const offline = ["--server", "127.0.0.1:1", "--timeout", "300"];
    for (const args of [
      ["set", "x", "a=1", "--feature-set", "ranker"],
      ["del", "x", "--feature-set", "ranker"],
      ["incr", "x", "clicks", "--feature-set", "ranker"],
      ["append", "x", "l", "a", "--keep", "2", "--feature-set", "ranker"],
    ]) {
      const r = await cli([...offline, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--feature-set ranker needs --version <name>");
    }
    const r = await cli([...offline, "--json", "batch-get", "x", "--version", "v1"]);
    expect(r.code).toBe(2);
    expect(jsonError(r.stderr).code).toBe("usage");
  });

  test("bad incr and append arguments exit 2 naming what is wrong", async () => {
    const offline = ["--server", "127.0.0.1:1", "--timeout", "300"];
    const cases: [string[], string][] = [
      [["incr", "x", "clicks=abc"], '"abc" is not a number'],
      [["incr", "x", "clicks:int=0.5"], "not a whole number"],
      [["incr", "x", "tags:string_list=1"], "counters are int or double"],
      [["incr", "x", "clicks", "clicks=2"], "given twice"],
      [["append", "x", "l", "a"], "--keep"],
      [["append", "x", "l", "a", "--keep", "0"], "--keep must be a whole number >= 1"],
      [["append", "x", "l", "a", "--keep", "2", "--type", "float"], '"a" is not a number'],
      [["append", "x", "l", "1.5", "--keep", "2", "--type", "int"], '"1.5" is not an integer'],
      [["append", "x", "l", "a", "--keep", "2", "--type", "bool"], "--type must be string, int or float"],
    ];
    for (const [args, message] of cases) {
      const r = await cli([...offline, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe("featurestore versions and updates against a server", () => {
  let dir: string;
  let server: ServerProcess | undefined;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = tempDir("cli-versions");
    server = await startServer(serverEnv(dir), (s) => {
      server = s;
    });
    env = { FEATURESTORE_SERVER: server.address };
  });
  afterAll(async () => {
    await server?.stop();
    removeDir(dir);
  });

  test("publish, rollback, drop-version and feature-set print the set's state, one line or JSON", async () => {
    for (const v of ["v1", "v2"]) {
      const r = await cli(
        ["set", "u:1", `score=${v === "v1" ? 1 : 2}`, "--feature-set", "rt", "--version", v],
        {
          env,
        },
      );
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`OK (1 feature, feature set rt version ${v})\n`);
    }
    const empty = await cli(["feature-set", "rt", "--json"], { env });
    expect(empty.code).toBe(0);
    expect(JSON.parse(empty.stdout)).toEqual({ feature_set: "rt", current: "", previous: "", dropping: [] });
    expect((await cli(["feature-set", "rt"], { env })).stdout).toBe("rt: current (none), previous (none)\n");

    const p1 = await cli(["publish", "rt", "v1"], { env });
    expect(p1.code).toBe(0);
    expect(p1.stdout).toBe("rt: current v1, previous (none)\n");
    const p2 = await cli(["publish", "rt", "v2", "--json"], { env });
    expect(JSON.parse(p2.stdout)).toEqual({ feature_set: "rt", current: "v2", previous: "v1", dropping: [] });
    expect((await cli(["feature-set", "rt"], { env })).stdout).toBe("rt: current v2, previous v1\n");

    const back = await cli(["rollback", "rt", "--json"], { env });
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout)).toEqual({
      feature_set: "rt",
      current: "v1",
      previous: "v2",
      dropping: [],
    });

    const drop = await cli(["drop-version", "rt", "v2", "--json"], { env });
    expect(drop.code).toBe(0);
    const dropped = JSON.parse(drop.stdout);
    expect(dropped).toMatchObject({ feature_set: "rt", current: "v1", previous: "" });
    // Its one entity is freed in the background: listed as dropping until then.
    expect(["[]", '["v2"]']).toContain(JSON.stringify(dropped.dropping));
    let state = "";
    for (let i = 0; i < 50; i++) {
      state = (await cli(["feature-set", "rt"], { env })).stdout;
      if (!state.includes("dropping")) break;
      await Bun.sleep(100);
    }
    expect(state).toBe("rt: current v1, previous (none)\n");
    const gone = await cli(["get", "u:1", "--feature-set", "rt", "--version", "v2", "--json"], { env });
    expect(gone.code).toBe(1);
  });

  test("get --feature-set reads the published version and says which; --version reads another", async () => {
    await cli(["set", "u:2", "score=10", "tag=a", "--feature-set", "gs", "--version", "old"], { env });
    await cli(["set", "u:2", "score=20", "--feature-set", "gs", "--version", "new"], { env });
    expect((await cli(["publish", "gs", "old"], { env })).code).toBe(0);

    const pub = await cli(["get", "u:2", "--feature-set", "gs", "--json"], { env });
    expect(pub.code).toBe(0);
    expect(JSON.parse(pub.stdout)).toMatchObject({
      entity_id: "u:2",
      found: true,
      features: { score: 10, tag: "a" },
      feature_set: "gs",
      version: "old",
    });
    const text = await cli(["get", "u:2", "--feature-set", "gs"], { env });
    expect(text.stdout).toMatch(/score\s+int\s+10/);
    expect(text.stdout).toContain("feature set gs, version old");

    const next = await cli(["get", "u:2", "score", "--feature-set", "gs", "--version", "new", "--json"], {
      env,
    });
    expect(JSON.parse(next.stdout)).toMatchObject({ features: { score: 20 }, version: "new" });
    // The plain entity of that id is another record.
    expect((await cli(["get", "u:2"], { env })).code).toBe(1);

    expect((await cli(["publish", "gs", "new"], { env })).code).toBe(0);
    await cli(["set", "u:3", "score=30", "--feature-set", "gs", "--version", "new"], { env });
    const batch = await cli(["batch-get", "u:2", "u:3", "--feature-set", "gs", "--json"], { env });
    expect(batch.code).toBe(0);
    expect(
      jsonLines(batch.stdout).map((r) => [r.entity_id, (r.features as { score: number }).score, r.version]),
    ).toEqual([
      ["u:2", 20, "new"],
      ["u:3", 30, "new"],
    ]);
    const human = await cli(["batch-get", "u:2", "u:3", "--feature-set", "gs", "--version", "old"], { env });
    expect(human.code).toBe(1);
    expect(human.stderr).toContain("1 found, 1 missing, feature set gs version old");
  });

  test("set and del write and delete in the version named, not in the plain entities", async () => {
    const w = ["--feature-set", "sd", "--version", "v1"];
    const set = await cli(["set", "u:4", "a=1", "b=2", ...w, "--json"], { env });
    expect(JSON.parse(set.stdout)).toEqual({
      ok: true,
      entity_id: "u:4",
      features: 2,
      feature_set: "sd",
      version: "v1",
    });
    expect((await cli(["del", "u:4", "a"], { env })).code).toBe(1);
    const del = await cli(["del", "u:4", "a", ...w, "--json"], { env });
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toEqual({
      entity_id: "u:4",
      deleted: true,
      feature_set: "sd",
      version: "v1",
    });
    const rec = JSON.parse((await cli(["get", "u:4", ...w, "--json"], { env })).stdout);
    expect(rec.features).toEqual({ b: 2 });
    const whole = await cli(["del", "u:4", ...w], { env });
    expect(whole.stdout).toBe("deleted, feature set sd version v1\n");
    expect((await cli(["get", "u:4", ...w], { env })).code).toBe(1);
  });

  test("what the set's state refuses (FAILED_PRECONDITION) exits 2 with the server's reason", async () => {
    const unpublished = await cli(["get", "u:1", "--feature-set", "never", "--json"], { env });
    expect(unpublished.code).toBe(2);
    expect(unpublished.stdout).toBe("");
    const e = jsonError(unpublished.stderr);
    expect(e).toMatchObject({ code: "failed_precondition", exit: 2 });
    expect(e.message).toContain('feature set "never" has no published version');
    expect(e.message).toContain("featurestore publish never <version>");

    const noPrevious = await cli(["rollback", "never"], { env });
    expect(noPrevious.code).toBe(2);
    expect(noPrevious.stderr).toBe(
      'featurestore: rollback: feature set "never" has no previous version to roll back to\n',
    );

    await cli(["publish", "fp", "live"], { env });
    const current = await cli(["--json", "drop-version", "fp", "live"], { env });
    expect(current.code).toBe(2);
    expect(jsonError(current.stderr).code).toBe("failed_precondition");
    expect(jsonError(current.stderr).message).toContain(
      '"live" is the published version of feature set "fp"',
    );
    expect((await cli(["feature-set", "fp"], { env })).stdout).toBe("fp: current live, previous (none)\n");

    const bad = await cli(["publish", "fp", "no/slash"], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("version must be 1 to 64 characters");
  });

  test("incr adds up over calls, ints and doubles, and prints the new values", async () => {
    const first = await cli(["incr", "c:1", "clicks"], { env });
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^clicks\s+int\s+1\n$/);
    const second = await cli(["incr", "c:1", "clicks=4", "spend=0.5", "views:double"], { env });
    expect(second.stdout).toMatch(/clicks\s+int\s+5\n/);
    expect(second.stdout).toMatch(/spend\s+double\s+0.5\n/);
    expect(second.stdout).toMatch(/views\s+double\s+1\n/);
    const third = await cli(["incr", "c:1", "clicks=-2", "spend=0.25", "views:double=2", "--json"], { env });
    expect(third.code).toBe(0);
    expect(JSON.parse(third.stdout)).toEqual({
      entity_id: "c:1",
      values: { clicks: 3, spend: 0.75, views: 3 },
      types: { clicks: "int", spend: "double", views: "double" },
    });
    const rec = JSON.parse((await cli(["get", "c:1", "--json"], { env })).stdout);
    expect(rec.features).toEqual({ clicks: 3, spend: 0.75, views: 3 });
    expect(rec.types).toEqual({ clicks: "int", spend: "double", views: "double" });

    // All or none: a double delta on the int counter refuses the whole call.
    const mixed = await cli(["incr", "c:1", "spend=0.5", "clicks:double=1"], { env });
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('incr: feature "clicks"');
    expect(JSON.parse((await cli(["get", "c:1", "--json"], { env })).stdout).features.spend).toBe(0.75);
    // A whole delta is an int increment: a double counter needs name:double=N, and says so.
    const whole = await cli(["incr", "c:1", "spend=1"], { env });
    expect(whole.code).toBe(2);
    expect(whole.stderr).toContain("name:double=");

    const v = ["--feature-set", "ctr", "--version", "v1"];
    await cli(["incr", "c:1", "clicks=10", ...v], { env });
    const inSet = await cli(["incr", "c:1", "clicks=5", ...v, "--json"], { env });
    expect(JSON.parse(inSet.stdout)).toMatchObject({
      values: { clicks: 15 },
      feature_set: "ctr",
      version: "v1",
    });
  });

  test("append pushes values newest first and keeps the last --keep", async () => {
    const r = await cli(["append", "a:1", "recent", "a", "b", "c", "--keep", "2"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("OK (3 appended to recent, keeping the newest 2)\n");
    let rec = JSON.parse((await cli(["get", "a:1", "--json"], { env })).stdout);
    expect(rec.features.recent).toEqual(["c", "b"]);
    const j = await cli(["append", "a:1", "recent", "d", "--keep", "3", "--json"], { env });
    expect(JSON.parse(j.stdout)).toEqual({
      ok: true,
      entity_id: "a:1",
      feature: "recent",
      appended: 1,
      keep: 3,
    });
    await cli(["append", "a:1", "prices", "1.5", "-2.25", "--type", "float", "--keep", "5"], { env });
    await cli(["append", "a:1", "prices", "3", "--type", "float", "--keep", "2"], { env });
    await cli(["append", "a:1", "ids", "7", "9007199254740993", "--type", "int", "--keep", "5"], { env });
    rec = JSON.parse((await cli(["get", "a:1", "--json"], { env })).stdout);
    expect(rec.features).toEqual({
      recent: ["d", "c", "b"],
      prices: [3, -2.25],
      ids: ["9007199254740993", 7],
    });
    expect(rec.types).toEqual({ recent: "string_list", prices: "float_list", ids: "int_list" });

    const wrongKind = await cli(["append", "a:1", "prices", "x", "--keep", "2"], { env });
    expect(wrongKind.code).toBe(2);
    expect(wrongKind.stderr).toContain("--type int or --type float");
  });

  test("load --feature-set --version writes a version readers get once it is published", async () => {
    const file = join(dir, "scores-v2.ndjson");
    writeFileSync(file, ['{"entity_id":"l:1","score":0.5}', '{"entity_id":"l:2","score":0.75}'].join("\n"));
    const offline = await cli(["load", file, "--feature-set", "lf", "--server", "127.0.0.1:1"]);
    expect(offline.code).toBe(2);
    expect(offline.stderr).toContain("--feature-set and --version go together");
    await cli(["set", "l:1", "score:double=0.25", "--feature-set", "lf", "--version", "v1"], { env });
    expect((await cli(["publish", "lf", "v1"], { env })).code).toBe(0);
    const load = await cli(["load", file, "--feature-set", "lf", "--version", "v2", "--json"], { env });
    expect(load.code).toBe(0);
    // Loaded but not published: readers still get v1.
    const before = JSON.parse((await cli(["get", "l:1", "--feature-set", "lf", "--json"], { env })).stdout);
    expect(before).toMatchObject({ features: { score: 0.25 }, version: "v1" });
    expect((await cli(["publish", "lf", "v2"], { env })).code).toBe(0);
    const after = jsonLines(
      (await cli(["batch-get", "l:1", "l:2", "--feature-set", "lf", "--json"], { env })).stdout,
    );
    expect(after.map((r) => [r.features, r.version])).toEqual([
      [{ score: 0.5 }, "v2"],
      [{ score: 0.75 }, "v2"],
    ]);
    // The plain entities were never written.
    expect((await cli(["get", "l:1"], { env })).code).toBe(1);
  });
});
