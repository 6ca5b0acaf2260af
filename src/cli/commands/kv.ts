/** `get`, `set`, `del` and `batch-get`: one entity or a few, read or written by hand. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { FeatureInput, FeaturesInput } from "../../client/index.ts";
import { CliError, Exit, usage } from "../errors.ts";
import { readSchema, type Schema } from "../load/columns.ts";
import { eprintln, printJson, println, printRecord, recordJson } from "../output.ts";
import { batchGetTyped, getTyped } from "../read.ts";
import { type FeatureType, inferType, isType, Rejection, TYPES, toInput } from "../values.ts";
import { globals, withClient } from "./common.ts";

const EVENT_TIMES_HELP =
  "also show each value's event time (UTC; with --json event_times in ms, 0 for none) and its own max age";

export function registerKv(program: Command): void {
  program
    .command("get")
    .description("print the features of one entity (all of them, or the names given)")
    .argument("<entity_id>")
    .argument("[features...]", "feature names (default: all)")
    .option("--event-times", EVENT_TIMES_HELP)
    .addHelpText(
      "after",
      "\nFeatures older than their own max age are not returned; they are listed as stale.\nExit status 1 when the entity does not exist.\n\nExample:\n  featurestore get user:42\n  featurestore get user:42 clicks_7d embedding --json --event-times",
    )
    .action(async (id: string, names: string[], o: { eventTimes?: boolean }, cmd: Command) => {
      const flags = globals(cmd);
      const eventTimes = Boolean(o.eventTimes);
      await withClient(flags, async (client, deadlineMs) => {
        const rec = await getTyped(client, id, names, deadlineMs);
        if (flags.json) printJson(recordJson(rec, eventTimes));
        else printRecord(rec, eventTimes);
        if (!rec.found) throw new CliError(Exit.NotFound, `${id}: not found`, { code: "not_found" });
      });
    });

  program
    .command("set")
    .description("write features of one entity (merged into its record unless --replace)")
    .argument("<entity_id>")
    .argument("[assignments...]", `name=value or name:type=value (types: ${TYPES.join(", ")})`)
    .option("-d, --data <json>", "features as a JSON object; @file reads a file, - reads stdin")
    .option("--schema <file>", "JSON object of feature -> type for the values given")
    .option("--ttl <ms>", "time to live of the record, ms (default: the server's)")
    .option("--replace", "replace the whole record instead of merging into it")
    .addHelpText(
      "after",
      `
Values are typed as load types them: 17 is an int, 0.5 a double, true a bool, [0.1,0.2] a
float_list (an embedding), ["a","b"] a string_list, anything else a string. Name the type to
force it: ctr:double=1  ids:int_list=[1,2]  avatar:bytes=AQID (base64).

Examples:
  featurestore set user:42 clicks_7d=17 ctr:double=0.25 country=DE embedding=[0.1,-0.5]
  featurestore set user:42 -d '{"clicks_7d": 17, "embedding": [0.1, -0.5]}' --ttl 86400000`,
    )
    .action(async (id: string, assignments: string[], o: SetFlags, cmd: Command) => {
      const flags = globals(cmd);
      const features = parseFeatures(assignments, o);
      const n = Object.keys(features).length;
      if (n === 0 && !o.replace) throw usage("set: give at least one name=value or --data");
      const ttlMs = o.ttl === undefined ? 0 : nonNegative("--ttl", o.ttl);
      await withClient(flags, async (client, deadlineMs) => {
        await client.setFeatures(id, features, { ttlMs, replace: Boolean(o.replace), deadlineMs });
        if (flags.json) printJson({ ok: true, entity_id: id, features: n });
        else println(`OK (${n} feature${n === 1 ? "" : "s"})`);
      });
    });

  program
    .command("del")
    .description("delete an entity, or only the features named")
    .argument("<entity_id>")
    .argument("[features...]", "feature names (default: the whole entity)")
    .addHelpText("after", "\nExit status 1 when there was nothing to delete.")
    .action(async (id: string, names: string[], _o, cmd: Command) => {
      const flags = globals(cmd);
      await withClient(flags, async (client, deadlineMs) => {
        const deleted = await client.deleteFeatures(id, names.length > 0 ? names : undefined, { deadlineMs });
        if (flags.json) printJson({ entity_id: id, deleted });
        else println(deleted ? "deleted" : "(nothing to delete)");
        if (!deleted) throw new CliError(Exit.NotFound, `${id}: nothing to delete`, { code: "not_found" });
      });
    });

  program
    .command("batch-get")
    .description("print the features of several entities (one BatchGet per 1,000 ids)")
    .argument("[entity_ids...]")
    .option("--ids <file>", "read ids from a file, one per line (- for stdin)")
    .option("-f, --features <names>", "comma-separated feature names (default: all)")
    .option("--event-times", EVENT_TIMES_HELP)
    .addHelpText(
      "after",
      "\nWith --json, one JSON record per line (NDJSON). Exit status 1 when any entity is missing.\n\nExample:\n  featurestore batch-get user:1 user:2 -f clicks_7d,country\n  cut -f1 ids.txt | featurestore batch-get --ids - --json",
    )
    .action(
      async (args: string[], o: { ids?: string; features?: string; eventTimes?: boolean }, cmd: Command) => {
        const flags = globals(cmd);
        const ids = [...args, ...(o.ids ? readIds(o.ids) : [])];
        if (ids.length === 0) throw usage("batch-get: give entity ids or --ids <file>");
        const names = splitNames(o.features);
        let missing = 0;
        await withClient(flags, async (client, deadlineMs) => {
          for (let i = 0; i < ids.length; i += 1000) {
            const recs = await batchGetTyped(client, ids.slice(i, i + 1000), names, deadlineMs);
            for (const rec of recs) {
              if (!rec.found) missing++;
              if (flags.json) printJson(recordJson(rec, Boolean(o.eventTimes)));
              else printRecord(rec, Boolean(o.eventTimes));
            }
          }
        });
        if (!flags.json && ids.length > 1) eprintln(`${ids.length - missing} found, ${missing} missing`);
        if (missing > 0)
          throw new CliError(Exit.NotFound, `${missing} of ${ids.length} not found`, { code: "not_found" });
      },
    );
}

interface SetFlags {
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

function nonNegative(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0) throw usage(`${flag} must be a whole number of ms, got "${s}"`);
  return n;
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
