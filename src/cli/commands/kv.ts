/** `get`, `set`, `del` and `batch-get`: one entity or a few, read or written by hand. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { FeatureInput, FeaturesInput, VersionOptions } from "../../client/index.ts";
import { CliError, Exit, usage } from "../errors.ts";
import { readSchema, type Schema } from "../load/columns.ts";
import { eprintln, printJson, println, printRecord, recordJson } from "../output.ts";
import { batchGetVersioned, getTyped, type TypedRecord } from "../read.ts";
import { type FeatureType, inferType, isType, Rejection, TYPES, toInput } from "../values.ts";
import { globals, withClient } from "./common.ts";
import {
  explainRefusal,
  type VersionFlags,
  versionFlags,
  versionJson,
  versionOptions,
  wholeMs,
} from "./versions.ts";

const EVENT_TIMES_HELP =
  "also show each value's event time (UTC; with --json event_times in ms, 0 for none) and its own max age";

/** The hint of a read refused because its feature set has no published version. */
function unpublishedHint(v: VersionOptions): string | undefined {
  return v.version === undefined
    ? `publish one with: featurestore publish ${v.featureSet} <version>; or read one with --version`
    : undefined;
}

export function registerKv(program: Command): void {
  versionFlags(
    program
      .command("get")
      .description("print the features of one entity (all of them, or the names given)")
      .argument("<entity_id>")
      .argument("[features...]", "feature names (default: all)")
      .option("--event-times", EVENT_TIMES_HELP),
    false,
  )
    .addHelpText(
      "after",
      `
Features older than their own max age are not returned; they are listed as stale.
With --feature-set, the entity is read in the set's published version (or --version's), which
is shown (--json: "feature_set" and "version"); exit status 2 when nothing is published.
Exit status 1 when the entity does not exist.

Examples:
  featurestore get user:42
  featurestore get user:42 clicks_7d embedding --json --event-times
  featurestore get user:42 --feature-set ranker                  # the published version
  featurestore get user:42 --feature-set ranker --version v8     # before publishing it`,
    )
    .action(async (id: string, names: string[], o: { eventTimes?: boolean } & VersionFlags, cmd: Command) => {
      const flags = globals(cmd);
      const eventTimes = Boolean(o.eventTimes);
      const v = versionOptions("get", o, false);
      await withClient(flags, async (client, deadlineMs) => {
        let rec: TypedRecord;
        let read: string | undefined;
        if (v === undefined) rec = await getTyped(client, id, names, deadlineMs);
        else {
          // A BatchGet of one: its answer names the version read (GetFeatures' does not).
          const b = await explainRefusal(
            "get",
            () => batchGetVersioned(client, [id], names, deadlineMs, v),
            unpublishedHint(v),
          );
          rec = b.records[0]!;
          read = b.version;
        }
        if (flags.json) printJson({ ...recordJson(rec, eventTimes), ...versionJson(v, read) });
        else {
          printRecord(rec, eventTimes);
          if (v !== undefined) println(`  feature set ${v.featureSet}, version ${read}`);
        }
        if (!rec.found) throw new CliError(Exit.NotFound, `${id}: not found`, { code: "not_found" });
      });
    });

  versionFlags(
    program
      .command("set")
      .description("write features of one entity (merged into its record unless --replace)")
      .argument("<entity_id>")
      .argument("[assignments...]", `name=value or name:type=value (types: ${TYPES.join(", ")})`)
      .option("-d, --data <json>", "features as a JSON object; @file reads a file, - reads stdin")
      .option("--schema <file>", "JSON object of feature -> type for the values given")
      .option("--ttl <ms>", "time to live of the record, ms (default: the server's)")
      .option("--replace", "replace the whole record instead of merging into it"),
    true,
  )
    .addHelpText(
      "after",
      `
Values are typed as load types them: 17 is an int, 0.5 a double, true a bool, [0.1,0.2] a
float_list (an embedding), ["a","b"] a string_list, anything else a string. Name the type to
force it: ctr:double=1  ids:int_list=[1,2]  avatar:bytes=AQID (base64).

With --feature-set and --version, the entity is written in that version of the set (readers
of the set see it once the version is published: featurestore publish).

Examples:
  featurestore set user:42 clicks_7d=17 ctr:double=0.25 country=DE embedding=[0.1,-0.5]
  featurestore set user:42 -d '{"clicks_7d": 17, "embedding": [0.1, -0.5]}' --ttl 86400000
  featurestore set user:42 score=0.9 --feature-set ranker --version v8`,
    )
    .action(async (id: string, assignments: string[], o: SetFlags, cmd: Command) => {
      const flags = globals(cmd);
      const features = parseFeatures(assignments, o);
      const n = Object.keys(features).length;
      if (n === 0 && !o.replace) throw usage("set: give at least one name=value or --data");
      const ttlMs = o.ttl === undefined ? 0 : wholeMs("--ttl", o.ttl);
      const v = versionOptions("set", o, true);
      await withClient(flags, async (client, deadlineMs) => {
        await explainRefusal("set", () =>
          client.setFeatures(id, features, { ttlMs, replace: Boolean(o.replace), deadlineMs, ...v }),
        );
        if (flags.json) printJson({ ok: true, entity_id: id, features: n, ...versionJson(v) });
        else println(`OK (${n} feature${n === 1 ? "" : "s"}${inVersion(v)})`);
      });
    });

  versionFlags(
    program
      .command("del")
      .description("delete an entity, or only the features named")
      .argument("<entity_id>")
      .argument("[features...]", "feature names (default: the whole entity)"),
    true,
  )
    .addHelpText(
      "after",
      `
With --feature-set and --version, deletes in that version of the set.
Exit status 1 when there was nothing to delete.

Examples:
  featurestore del user:42 embedding
  featurestore del user:42 --feature-set ranker --version v8`,
    )
    .action(async (id: string, names: string[], o: VersionFlags, cmd: Command) => {
      const flags = globals(cmd);
      const v = versionOptions("del", o, true);
      await withClient(flags, async (client, deadlineMs) => {
        const deleted = await explainRefusal("del", () =>
          client.deleteFeatures(id, names.length > 0 ? names : undefined, { deadlineMs, ...v }),
        );
        if (flags.json) printJson({ entity_id: id, deleted, ...versionJson(v) });
        else println(deleted ? `deleted${inVersion(v)}` : "(nothing to delete)");
        if (!deleted) throw new CliError(Exit.NotFound, `${id}: nothing to delete`, { code: "not_found" });
      });
    });

  versionFlags(
    program
      .command("batch-get")
      .description("print the features of several entities (one BatchGet per 1,000 ids)")
      .argument("[entity_ids...]")
      .option("--ids <file>", "read ids from a file, one per line (- for stdin)")
      .option("-f, --features <names>", "comma-separated feature names (default: all)")
      .option("--event-times", EVENT_TIMES_HELP),
    false,
  )
    .addHelpText(
      "after",
      `
With --json, one JSON record per line (NDJSON). Exit status 1 when any entity is missing.
With --feature-set, every entity is read in one version: the published one when the first
BatchGet is answered (or --version's), kept for the next 1,000s even if another is published
meanwhile; it is shown on stderr (--json: "feature_set" and "version" in every record).

Examples:
  featurestore batch-get user:1 user:2 -f clicks_7d,country
  cut -f1 ids.txt | featurestore batch-get --ids - --json
  featurestore batch-get --ids ids.txt --feature-set ranker --json`,
    )
    .action(async (args: string[], o: BatchGetFlags, cmd: Command) => {
      const flags = globals(cmd);
      const ids = [...args, ...(o.ids ? readIds(o.ids) : [])];
      if (ids.length === 0) throw usage("batch-get: give entity ids or --ids <file>");
      const names = splitNames(o.features);
      let v = versionOptions("batch-get", o, false);
      const hint = v === undefined ? undefined : unpublishedHint(v);
      let missing = 0;
      await withClient(flags, async (client, deadlineMs) => {
        for (let i = 0; i < ids.length; i += 1000) {
          const chunk = ids.slice(i, i + 1000);
          const b = await explainRefusal(
            "batch-get",
            () => batchGetVersioned(client, chunk, names, deadlineMs, v),
            hint,
          );
          // Pin the version the first answer resolved, so that a publish between two
          // BatchGets cannot mix versions in one output.
          if (v !== undefined && v.version === undefined)
            v = { featureSet: v.featureSet, version: b.version };
          const where = versionJson(v);
          for (const rec of b.records) {
            if (!rec.found) missing++;
            if (flags.json) printJson({ ...recordJson(rec, Boolean(o.eventTimes)), ...where });
            else printRecord(rec, Boolean(o.eventTimes));
          }
        }
      });
      if (!flags.json && (ids.length > 1 || v !== undefined))
        eprintln(`${ids.length - missing} found, ${missing} missing${inVersion(v)}`);
      if (missing > 0)
        throw new CliError(Exit.NotFound, `${missing} of ${ids.length} not found`, { code: "not_found" });
    });
}

/** `, feature set ranker version v8` after a command's text output when it named a version. */
function inVersion(v: VersionOptions | undefined): string {
  return v?.featureSet === undefined ? "" : `, feature set ${v.featureSet} version ${v.version ?? ""}`;
}

interface BatchGetFlags extends VersionFlags {
  ids?: string;
  features?: string;
  eventTimes?: boolean;
}

interface SetFlags extends VersionFlags {
  data?: string;
  schema?: string;
  ttl?: string;
  replace?: boolean;
}

/** Ids from a file or stdin, one per line; blank lines skipped. */
export function readIds(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw usage(`--ids ${path}: ${(err as Error).message}`);
  }
  return text.split(/\r?\n/).filter((s) => s.length > 0);
}

export function splitNames(s: string | undefined): string[] {
  return s
    ? s
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x.length > 0)
    : [];
}

/** The features of `set`: --data's JSON object, then each name[:type]=value (later wins). */
function parseFeatures(assignments: readonly string[], o: SetFlags): FeaturesInput {
  const schema: Schema = o.schema ? readSchema(o.schema) : Object.create(null);
  const out: FeaturesInput = {};
  if (o.data !== undefined) {
    const text =
      o.data === "-" ? readFileSync(0, "utf8") : o.data.startsWith("@") ? readText(o.data.slice(1)) : o.data;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      throw usage(`--data is not JSON: ${(err as Error).message}`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj))
      throw usage("--data must be a JSON object");
    for (const [name, v] of Object.entries(obj)) {
      const t = schema[name] ?? inferType(v, false);
      if (t === null) continue;
      out[name] = typed(name, t, v, schema[name] !== undefined);
    }
  }
  for (const a of assignments) {
    const eq = a.indexOf("=");
    if (eq <= 0) throw usage(`"${a}" is not name=value (or name:type=value)`);
    let name = a.slice(0, eq);
    const text = a.slice(eq + 1);
    let t: FeatureType | null = null;
    const colon = name.lastIndexOf(":");
    if (colon > 0 && isType(name.slice(colon + 1))) {
      t = name.slice(colon + 1) as FeatureType;
      name = name.slice(0, colon);
    }
    t = t ?? schema[name] ?? inferType(text, true) ?? "string";
    out[name] = typed(name, t, text, true);
  }
  return out;
}

function typed(name: string, t: FeatureType, v: unknown, strict: boolean): FeatureInput {
  const input = toInput(t, v, strict);
  if (input instanceof Rejection) throw usage(`feature "${name}" (${t}): ${input.reason}`);
  if (input === undefined) throw usage(`feature "${name}": empty value`);
  // A double that is whole would be written as an int by the client: say it is a double.
  if (t === "double" && typeof input === "number") return { double: input };
  return input;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw usage(`--data @${path}: ${(err as Error).message}`);
  }
}
