/**
 * `featurestore load` and `export` against a real server: NDJSON, CSV and Parquet files made
 * here, round trips through export, rejected rows with their line numbers, --max-errors, resume
 * after a SIGKILL of the loader with its checkpoint, and re-runs that leave the same store.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { benchRow, writeNdjson } from "../../bench/cli/data.ts";
import { FeatureStoreClient } from "../../src/client/index.ts";
import { removeDir, type ServerProcess, serverEnv, startServer, tempDir } from "../e2e/durable-fixture.ts";
import { cli, jsonLines, spawnCli } from "./helpers.ts";

let dir: string;
let server: ServerProcess | undefined;
let env: Record<string, string>;

beforeAll(async () => {
  dir = tempDir("cli-load");
  server = await startServer(serverEnv(dir, { STORE: "memory" }), (s) => {
    server = s;
  });
  env = { FEATURESTORE_SERVER: server.address };
});
afterAll(async () => {
  await server?.stop();
  removeDir(dir);
});

const path = (name: string) => join(dir, name);

/** Exports `ids` as NDJSON and returns the records by id. */
async function exported(idsFile: string): Promise<Map<string, Record<string, unknown>>> {
  const out = path(`export-${Math.random().toString(36).slice(2)}.ndjson`);
  const r = await cli(["export", "--ids", idsFile, "-o", out, "--quiet"], { env });
  expect(r.code).toBe(0);
  const m = new Map<string, Record<string, unknown>>();
  for (const row of jsonLines(readFileSync(out, "utf8"))) m.set(row.entity_id as string, row);
  return m;
}

describe("NDJSON", () => {
  test("load types values (inferred), then export writes the same rows and a schema that keeps types", async () => {
    const rows = [
      { entity_id: "n:1", clicks: 3, ctr: 0.5, country: "DE", premium: true, emb: [0.5, -1], tags: ["a"] },
      { entity_id: "n:2", clicks: 4, ctr: 2, country: "FR", premium: false, emb: [0.25, 1], tags: [] },
      { entity_id: "n:3", clicks: null, ctr: 1.25, country: "US", emb: [1, 2] },
    ];
    writeFileSync(path("a.ndjson"), rows.map((r) => JSON.stringify(r)).join("\n"));
    const r = await cli(["load", path("a.ndjson"), "--json", "--schema-out", path("a.schema.json")], { env });
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ outcome: "complete", rows: 3, written: 3, rejected: 0 });
    // ctr has a fraction in the sample: a double column, 2 included.
    expect(summary.types).toMatchObject({
      clicks: "int",
      ctr: "double",
      country: "string",
      premium: "bool",
      emb: "float_list",
      tags: "string_list",
    });
    const get = JSON.parse((await cli(["get", "n:2", "--json"], { env })).stdout);
    expect(get.types.ctr).toBe("double");
    expect(get.features).toEqual({
      clicks: 4,
      ctr: 2,
      country: "FR",
      premium: false,
      emb: [0.25, 1],
      tags: [],
    });

    writeFileSync(path("a.ids"), "n:1\nn:2\nn:3\nn:missing\n");
    const ex = await cli(
      [
        "export",
        "--ids",
        path("a.ids"),
        "-o",
        path("a.out.ndjson"),
        "--schema-out",
        path("a.out.schema.json"),
        "--json",
      ],
      { env },
    );
    expect(ex.code).toBe(0);
    expect(JSON.parse(ex.stdout)).toMatchObject({ exported: 3, missing: 1 });
    const back = jsonLines(readFileSync(path("a.out.ndjson"), "utf8"));
    expect(back).toEqual([
      { entity_id: "n:1", clicks: 3, ctr: 0.5, country: "DE", premium: true, emb: [0.5, -1], tags: ["a"] },
      { entity_id: "n:2", clicks: 4, ctr: 2, country: "FR", premium: false, emb: [0.25, 1], tags: [] },
      { entity_id: "n:3", ctr: 1.25, country: "US", emb: [1, 2] },
    ]);
    // Loading the export with its schema into other ids gives the same types (2 stays a double).
    const renamed = back.map((x) => ({ ...x, entity_id: `m${(x.entity_id as string).slice(1)}` }));
    writeFileSync(path("b.ndjson"), renamed.map((x) => JSON.stringify(x)).join("\n"));
    expect((await cli(["load", path("b.ndjson"), "--schema", path("a.out.schema.json")], { env })).code).toBe(
      0,
    );
    expect(JSON.parse((await cli(["get", "m:2", "--json"], { env })).stdout)).toMatchObject({
      types: get.types,
      features: get.features,
    });
  });

  test("bad rows are rejected with their line numbers; --max-errors decides exit 5 (done) or 6 (stopped)", async () => {
    const lines = [
      '{"entity_id":"bad:1","x":1}',
      "{not json",
      '{"x":2}',
      "",
      '{"entity_id":"bad:4","x":"many"}',
      '{"entity_id":"","x":3}',
      '{"entity_id":"bad:6","x":6}',
    ];
    writeFileSync(path("bad.ndjson"), `${lines.join("\n")}\n`);
    const r = await cli(
      ["load", path("bad.ndjson"), "--max-errors", "10", "--json", "--rejects", path("bad.rejects")],
      { env },
    );
    expect(r.code).toBe(5);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ outcome: "complete", written: 2, rejected: 4 });
    expect(s.rejected_rows.map((x: { line: number }) => x.line)).toEqual([2, 3, 5, 6]);
    expect(s.rejected_rows[0].reason).toContain("invalid JSON");
    expect(s.rejected_rows[1].reason).toContain('no "entity_id"');
    expect(s.rejected_rows[2].reason).toContain('column "x" (int)');
    expect(jsonLines(readFileSync(path("bad.rejects"), "utf8")).map((x) => x.line)).toEqual([2, 3, 5, 6]);
    expect((await cli(["get", "bad:6"], { env })).code).toBe(0);

    const human = await cli(["load", path("bad.ndjson"), "--max-errors", "1"], { env });
    expect(human.code).toBe(6);
    expect(human.stderr).toContain("line 2: invalid JSON");
    expect(human.stderr).toContain('line 3: no "entity_id" column');
    expect(human.stderr).toContain("more than --max-errors 1");
  });

  test("loading a file twice leaves the same store (merge and --replace)", async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => benchRow(i));
    writeFileSync(path("twice.ndjson"), rows.map((x) => JSON.stringify(x)).join("\n"));
    writeFileSync(path("twice.ids"), rows.map((x) => x.entity_id).join("\n"));
    expect((await cli(["load", path("twice.ndjson")], { env })).code).toBe(0);
    const first = await exported(path("twice.ids"));
    expect(first.size).toBe(3000);
    expect((await cli(["load", path("twice.ndjson")], { env })).code).toBe(0);
    expect(await exported(path("twice.ids"))).toEqual(first);
    expect((await cli(["load", path("twice.ndjson"), "--replace"], { env })).code).toBe(0);
    expect((await cli(["load", path("twice.ndjson"), "--replace"], { env })).code).toBe(0);
    expect(await exported(path("twice.ids"))).toEqual(first);
    const row = first.get("user:2999")!;
    expect(row.embedding).toEqual((benchRow(2999).embedding as number[]).map((x) => Math.fround(x)));
    expect(row.country).toBe(benchRow(2999).country);
  });

  test("a loader killed with SIGKILL mid-file resumes from its checkpoint and the store ends complete", async () => {
    const n = 200_000;
    const file = path("big.ndjson");
    await writeNdjson(file, n);
    const ckpt = path("big.ckpt");
    // Small batches, one in flight: slow enough to be killed half way.
    const args = ["load", file, "--checkpoint", ckpt, "--batch-size", "200", "--window", "1", "--json"];
    const first = spawnCli(args, { env });
    let saved = 0;
    for (let waited = 0; waited < 30_000 && saved < 20_000; waited += 20) {
      await Bun.sleep(20);
      if (existsSync(ckpt)) saved = JSON.parse(readFileSync(ckpt, "utf8")).rows;
    }
    first.kill("SIGKILL");
    expect(await first.exited).not.toBe(0);
    const at = JSON.parse(readFileSync(ckpt, "utf8"));
    expect(at.rows).toBeGreaterThan(0);
    expect(at.rows).toBeLessThan(n);
    expect(at.rows % 200).toBe(0);

    const second = await cli(args, { env });
    expect(second.code).toBe(0);
    const s = JSON.parse(second.stdout);
    // The second run starts at the checkpoint: it reads only the rest.
    expect(s.rows).toBeLessThanOrEqual(n - at.rows);
    expect(s.rows_done).toBe(n);
    expect(existsSync(ckpt)).toBe(false);
    // Every entity is there with its values.
    writeFileSync(path("big.ids"), Array.from({ length: n }, (_, i) => `user:${i}`).join("\n"));
    const ex = await cli(["export", "--ids", path("big.ids"), "-o", path("big.out.ndjson"), "--json"], {
      env,
    });
    expect(JSON.parse(ex.stdout)).toMatchObject({ exported: n, missing: 0 });
    const back = jsonLines(readFileSync(path("big.out.ndjson"), "utf8"));
    for (const i of [0, 1, at.rows - 1, at.rows, at.rows + 1, n - 1]) {
      const want = benchRow(i);
      expect(back[i]!.entity_id).toBe(want.entity_id);
      expect(back[i]!.clicks_30d).toBe(want.clicks_30d);
      expect(back[i]!.ctr_7d).toBe(want.ctr_7d);
      expect(back[i]!.segment).toBe(want.segment);
    }
  }, 120_000);

  test("--from-row skips rows; a checkpoint of another file is refused (exit 2)", async () => {
    writeFileSync(
      path("skip.ndjson"),
      ["s:0", "s:1", "s:2", "s:3"].map((id) => JSON.stringify({ entity_id: id, v: 1 })).join("\n"),
    );
    const r = await cli(["load", path("skip.ndjson"), "--from-row", "2", "--json"], { env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ rows: 2, written: 2 });
    expect((await cli(["get", "s:1"], { env })).code).toBe(1);
    expect((await cli(["get", "s:3"], { env })).code).toBe(0);
    writeFileSync(
      path("other.ckpt"),
      JSON.stringify({ version: 1, file: "/elsewhere", size: 1, rows: 1, written: 1, rejected: 0 }),
    );
    const refused = await cli(["load", path("skip.ndjson"), "--checkpoint", path("other.ckpt")], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("not this file");
  });
});

describe("CSV", () => {
  test("load infers types from text, rejects bad records with their lines, export CSV reads back the same", async () => {
    const csv = [
      "user_id,clicks,ctr,country,premium,emb",
      'c:1,3,0.5,DE,true,"[0.5,-1]"',
      'c:2,4,2.0,"Saint-Denis, FR",false,"[1,2]"',
      "c:3,oops,1.5,US,true,[0]",
      "c:4,5,1.5,US",
      'c:5,,0.25,"multi\nline",false,[]',
    ].join("\n");
    writeFileSync(path("a.csv"), `${csv}\n`);
    const r = await cli(["load", path("a.csv"), "--id-column", "user_id", "--max-errors", "5", "--json"], {
      env,
    });
    expect(r.code).toBe(5);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ written: 3, rejected: 2 });
    expect(s.types).toMatchObject({
      clicks: "int",
      ctr: "double",
      country: "string",
      premium: "bool",
      emb: "float_list",
    });
    expect(s.rejected_rows.map((x: { line: number }) => x.line)).toEqual([4, 5]);
    expect(s.rejected_rows[0].reason).toContain('"oops" is not an integer');

    const c2 = JSON.parse((await cli(["get", "c:2", "--json"], { env })).stdout);
    expect(c2.features).toEqual({
      clicks: 4,
      ctr: 2,
      country: "Saint-Denis, FR",
      premium: false,
      emb: [1, 2],
    });
    expect(c2.types.ctr).toBe("double");
    const c5 = JSON.parse((await cli(["get", "c:5", "--json"], { env })).stdout);
    expect(c5.features).toEqual({ ctr: 0.25, country: "multi\nline", premium: false, emb: [] });

    writeFileSync(path("c.ids"), "c:1\nc:2\nc:5\n");
    const ex = await cli(
      [
        "export",
        "--ids",
        path("c.ids"),
        "--id-column",
        "user_id",
        "--format",
        "csv",
        "-o",
        path("c.out.csv"),
      ],
      { env },
    );
    expect(ex.code).toBe(0);
    // The export loads back (into other ids) with the same types and values, without a schema.
    const text = readFileSync(path("c.out.csv"), "utf8").replaceAll("c:", "d:");
    writeFileSync(path("d.csv"), text);
    const again = await cli(["load", path("d.csv"), "--id-column", "user_id", "--json"], { env });
    expect(again.code).toBe(0);
    const d2 = JSON.parse((await cli(["get", "d:2", "--json"], { env })).stdout);
    expect(d2.features).toEqual(c2.features);
    expect(d2.types).toEqual(c2.types);
  });
});

describe("Parquet", () => {
  test("load reads types from the file's schema (lists too), export Parquet reads back the same", async () => {
    const buf = parquetWriteBuffer({
      columnData: [
        { name: "entity_id", data: ["p:1", "p:2", "p:3"] },
        { name: "clicks", data: [1n, 2n, null] },
        { name: "ctr", data: [0.5, 2, 1.25] },
        { name: "country", data: ["DE", "FR", "US"] },
        { name: "premium", data: [true, false, true] },
        { name: "emb", data: [[0.5, -1], [1, 2], []] },
        { name: "tags", data: [["a"], ["b", "c"], null] },
      ],
      schema: [
        { name: "root", num_children: 7 },
        { name: "entity_id", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
        { name: "clicks", type: "INT64", repetition_type: "OPTIONAL" },
        { name: "ctr", type: "DOUBLE", repetition_type: "OPTIONAL" },
        { name: "country", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
        { name: "premium", type: "BOOLEAN", repetition_type: "OPTIONAL" },
        { name: "emb", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
        { name: "list", repetition_type: "REPEATED", num_children: 1 },
        { name: "element", type: "FLOAT", repetition_type: "REQUIRED" },
        { name: "tags", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
        { name: "list", repetition_type: "REPEATED", num_children: 1 },
        { name: "element", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
      ],
    });
    writeFileSync(path("a.parquet"), new Uint8Array(buf));
    const r = await cli(["load", path("a.parquet"), "--json"], { env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).types).toMatchObject({
      clicks: "int",
      ctr: "double",
      country: "string",
      premium: "bool",
      emb: "float_list",
      tags: "string_list",
    });
    const p2 = JSON.parse((await cli(["get", "p:2", "--json"], { env })).stdout);
    expect(p2.features).toEqual({
      clicks: 2,
      ctr: 2,
      country: "FR",
      premium: false,
      emb: [1, 2],
      tags: ["b", "c"],
    });
    expect(p2.types.ctr).toBe("double");

    const ex = await cli(["export", "--ids-from", path("a.parquet"), "-o", path("a.out.parquet")], { env });
    expect(ex.code).toBe(0);
    const back = await parquetReadObjects({
      file: new Uint8Array(readFileSync(path("a.out.parquet"))).buffer,
    });
    expect(back.map((x) => x.entity_id)).toEqual(["p:1", "p:2", "p:3"]);
    expect(back[1]).toMatchObject({
      clicks: 2n,
      ctr: 2,
      country: "FR",
      premium: false,
      emb: [1, 2],
      tags: ["b", "c"],
    });
    expect(back[2]).toMatchObject({ clicks: null, emb: [], tags: null });
    // Loading the export over the same ids (--replace) leaves the same records.
    const reload = await cli(["load", path("a.out.parquet"), "--replace"], { env });
    expect(reload.code).toBe(0);
    expect(JSON.parse((await cli(["get", "p:2", "--json"], { env })).stdout)).toEqual(p2);
  });
});

describe("event times", () => {
  test("export --event-times writes each value's event time and max age; load writes them back, and set-if-newer keeps a newer stored value", async () => {
    const t0 = Date.now() - 3_600_000;
    const day = 86_400_000;
    const rows = [
      {
        entity_id: "t:1",
        clicks: 5,
        "clicks@event_time_ms": t0,
        ctr: 0.5,
        "ctr@event_time_ms": t0 + 1,
        "ctr@max_age_ms": day,
        country: "DE",
      },
      { entity_id: "t:2", clicks: 7, "clicks@event_time_ms": String(t0 + 2), "ctr@event_time_ms": t0 },
    ];
    writeFileSync(path("t.ndjson"), rows.map((x) => JSON.stringify(x)).join("\n"));
    const r = await cli(["load", path("t.ndjson"), "--json"], { env });
    expect(r.code).toBe(0);
    // Time columns are not features.
    expect(JSON.parse(r.stdout).types).toEqual({ clicks: "int", ctr: "double", country: "string" });
    const get = async (id: string) =>
      JSON.parse((await cli(["get", id, "--json", "--event-times"], { env })).stdout);
    const t1 = await get("t:1");
    const t2 = await get("t:2");
    expect(t1.event_times).toMatchObject({ clicks: t0, ctr: t0 + 1 });
    // No time column: the server's clock.
    expect(t1.event_times.country).toBeGreaterThan(t0 + 1000);
    expect(t1.max_ages).toEqual({ ctr: day });
    expect(t2).toMatchObject({ features: { clicks: 7 }, event_times: { clicks: t0 + 2 }, max_ages: {} });

    // A window (only the server writes one) and a value stale by its own max age: not exported.
    const addUnexported = async () => {
      const client = await FeatureStoreClient.connect({ servers: [server!.address] });
      try {
        const spec = { bucketMs: 60_000, retentionMs: day };
        await client.updateFeatures("t:1", [{ name: "spend", observe: 2, spec }]);
        await client.setFeatures("t:2", { old: "x" }, { eventTimeMs: t0, maxAgeMs: 1000 });
      } finally {
        await client.close();
      }
    };
    writeFileSync(path("t.ids"), "t:1\nt:2\n");

    for (const format of ["ndjson", "csv", "parquet"]) {
      await addUnexported();
      const out = path(`t.out.${format}`);
      const ex = await cli(
        [
          "export",
          "--ids",
          path("t.ids"),
          "--event-times",
          "-o",
          out,
          "--schema-out",
          `${out}.schema`,
          "--json",
        ],
        { env },
      );
      expect(ex.code).toBe(0);
      expect(JSON.parse(ex.stdout)).toMatchObject({ exported: 2, window_values: 1, stale_values: 1 });
      expect(JSON.parse(readFileSync(`${out}.schema`, "utf8"))).toEqual({
        clicks: "int",
        ctr: "double",
        country: "string",
      });
      if (format === "ndjson")
        expect(jsonLines(readFileSync(out, "utf8"))).toEqual([
          {
            entity_id: "t:1",
            clicks: 5,
            "clicks@event_time_ms": t0,
            ctr: 0.5,
            "ctr@event_time_ms": t0 + 1,
            "ctr@max_age_ms": day,
            country: "DE",
            "country@event_time_ms": t1.event_times.country,
          },
          { entity_id: "t:2", clicks: 7, "clicks@event_time_ms": t0 + 2 },
        ]);
      if (format === "csv")
        expect(readFileSync(out, "utf8").split("\n")[0]).toBe(
          "entity_id,clicks,clicks@event_time_ms,clicks@max_age_ms,ctr,ctr@event_time_ms,ctr@max_age_ms,country,country@event_time_ms,country@max_age_ms",
        );

      // Reloaded into an empty store, every value has its original event time and max age.
      const reload = async () => {
        for (const id of ["t:1", "t:2"]) expect((await cli(["del", id], { env })).code).toBe(0);
        expect((await cli(["load", out, "--schema", `${out}.schema`], { env })).code).toBe(0);
      };
      await reload();
      expect(await get("t:1")).toEqual(t1);
      expect(await get("t:2")).toEqual(t2);

      // A value written since (newer) is kept when the export is loaded again; the others are
      // rewritten with their own times.
      expect((await cli(["set", "t:1", "clicks=99"], { env })).code).toBe(0);
      expect((await cli(["load", out, "--schema", `${out}.schema`], { env })).code).toBe(0);
      const after = await get("t:1");
      expect(after.features).toEqual({ ...t1.features, clicks: 99 });
      expect(after.event_times.clicks).toBeGreaterThan(t0 + 1000);
      expect(after.event_times.ctr).toBe(t0 + 1);
      await reload(); // the store as loaded, for the next format
    }
  }, 60_000);

  test("a time cell that is not whole ms, or an event time ahead of the server's clock, rejects its row", async () => {
    const lines = [
      JSON.stringify({ entity_id: "tb:1", x: 1, "x@event_time_ms": "yesterday" }),
      JSON.stringify({ entity_id: "tb:2", x: 1, "x@max_age_ms": -5 }),
      JSON.stringify({ entity_id: "tb:3", x: 1, "x@event_time_ms": Date.now() + 86_400_000 }),
      JSON.stringify({ entity_id: "tb:4", x: 1, "x@event_time_ms": 1000 }),
    ];
    writeFileSync(path("tb.ndjson"), `${lines.join("\n")}\n`);
    const r = await cli(["load", path("tb.ndjson"), "--max-errors", "10", "--json"], { env });
    expect(r.code).toBe(5);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ written: 1, rejected: 3 });
    const reasons = new Map<number, string>(
      s.rejected_rows.map((x: { line: number; reason: string }) => [x.line, x.reason]),
    );
    expect(reasons.get(1)).toContain('x@event_time_ms "yesterday" is not a whole number of ms');
    expect(reasons.get(2)).toContain("x@max_age_ms -5 is not a whole number of ms");
    expect(reasons.get(3)).toContain("ahead of the server's clock");
    const tb4 = JSON.parse((await cli(["get", "tb:4", "--json", "--event-times"], { env })).stdout);
    expect(tb4.event_times).toEqual({ x: 1000 });
  });
});
