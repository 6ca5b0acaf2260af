/** A version drop that fails (its store closed under it) is logged and resumed, never silent. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log/index.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("a drop cut short by the store closing is logged with its set and version, and resumes on reopen", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-drops-"));
  dirs.push(dir);
  const lines: string[] = [];
  const logger = createLogger("warn", (line) => lines.push(line));
  const open = () =>
    EmbeddedFeatureStore.open({
      path: dir,
      cache: { maxEntries: 10_000, maxBytes: 1 << 24, shardCount: 2 },
      service: { logger, dropStepRecords: 100 },
    });
  let fs = await open();
  const items = (version: string) =>
    Array.from({ length: 1000 }, (_, i) => ({
      entityId: `e${i}`,
      features: { v: i },
      featureSet: "s",
      version,
    }));
  await fs.batchSet(items("old"));
  await fs.batchSet(items("new"));
  await fs.publishVersion("s", "old");
  await fs.publishVersion("s", "new");
  expect((await fs.dropVersion("s", "old")).dropping).toEqual(["old"]);
  await fs.close(); // mid-drop: 1,000 records at 100 a step
  await fs.service.dropsSettled(); // the job fails at its next step
  expect(lines.length).toBe(1);
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  expect(line).toMatchObject({ level: "warn", feature_set: "s", version: "old" });
  expect(String(line.msg)).toContain("DropVersion or GetFeatureSet resumes it");

  fs = await open();
  expect((await fs.getFeatureSet("s")).dropping).toEqual(["old"]); // and resumes it
  await fs.service.dropsSettled();
  expect(await fs.getFeatureSet("s")).toEqual({
    featureSet: "s",
    current: "new",
    previous: "",
    dropping: [],
  });
  expect((await fs.getFeatures("e1", [], { featureSet: "s", version: "old" })).found).toBe(false);
  expect((await fs.getFeatures("e1", [], { featureSet: "s" })).features.v).toBe(1);
  await fs.close();
});
