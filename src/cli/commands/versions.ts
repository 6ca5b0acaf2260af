/**
 * Versioned feature sets and atomic updates: `publish`, `rollback`, `drop-version` and
 * `feature-set` move and show a set's pointer; `incr` and `append` are UpdateFeatures calls
 * (all or none). Also the `--feature-set`/`--version` flags that get, batch-get, set and del
 * share, and the checks of them.
 */
import type { Command } from "commander";
import {
  Code,
  type FeatureSetInfo,
  type FeatureStoreClient,
  FeatureStoreError,
  type FeatureUpdateInput,
  type UpdateOptions,
  type VersionOptions,
} from "../../client/index.ts";
import { CliError, Exit, usage } from "../errors.ts";
import { printJson, println } from "../output.ts";
import { isType, toJsonValue } from "../values.ts";
import { globals, withClient } from "./common.ts";

// ---- --feature-set and --version --------------------------------------------------------------

/** The flags of `versionFlags`, as commander parses them. */
export interface VersionFlags {
  featureSet?: string;
  version?: string;
}

/**
 * Adds `--feature-set` and `--version` to `cmd`. A read names the set and gets its published
 * version unless `--version` names another; a write (`write`) must name both.
 */
export function versionFlags(cmd: Command, write: boolean): Command {
  return write
    ? cmd
        .option("--feature-set <name>", "write into a version of this feature set (needs --version)")
        .option("--version <name>", "the version of --feature-set to write; readers see it once published")
    : cmd
        .option("--feature-set <name>", "read this feature set, in its published version unless --version")
        .option("--version <name>", "read this version of --feature-set instead of the published one");
}

/**
 * The VersionOptions of a command's flags (undefined: the plain entities). `--version` needs
 * `--feature-set`; a write needs both: a usage error naming the command otherwise.
 */
export function versionOptions(command: string, o: VersionFlags, write: boolean): VersionOptions | undefined {
  const { featureSet, version } = o;
  if (featureSet === undefined && version === undefined) return undefined;
  if (featureSet === undefined)
    throw usage(
      `${command}: --version ${version} needs --feature-set <name>, the set the version belongs to`,
    );
  if (write && version === undefined)
    throw usage(
      `${command}: --feature-set ${featureSet} needs --version <name>: a write names the version it writes (readers get it after: featurestore publish ${featureSet} <version>)`,
    );
  return version === undefined ? { featureSet } : { featureSet, version };
}

/** `feature_set` and `version` keys added to a command's JSON output when it named a set. */
export function versionJson(v: VersionOptions | undefined, read?: string): Record<string, string> {
  if (v?.featureSet === undefined) return {};
  return { feature_set: v.featureSet, version: read ?? v.version ?? "" };
}

/**
 * Runs `f`; a FAILED_PRECONDITION from the server (a state that refuses the request: nothing
 * published, no previous version, the current version, a counter of another type...) becomes a
 * usage error (exit 2) prefixed with the command and followed by a hint when `hint` gives one
 * (a function sees the server's message).
 */
export async function explainRefusal<T>(
  command: string,
  f: () => Promise<T>,
  hint?: string | ((message: string) => string | undefined),
): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (!(err instanceof FeatureStoreError) || err.code !== Code.FailedPrecondition) throw err;
    const h = typeof hint === "function" ? hint(err.message) : hint;
    throw new CliError(Exit.Usage, `${command}: ${err.message}${h ? ` (${h})` : ""}`, {
      cause: err,
      code: "failed_precondition",
    });
  }
}

/** A whole number of ms >= 0 given to `flag`. */
export function wholeMs(flag: string, s: string): number {
  const n = Number(s);
  if (s.trim() === "" || !Number.isSafeInteger(n) || n < 0)
    throw usage(`${flag} must be a whole number of ms, got "${s}"`);
  return n;
}

// ---- publish, rollback, drop-version, feature-set ---------------------------------------------

/** FeatureSetInfo as --json prints it: `{ feature_set, current, previous, dropping }` ("" for none). */
export function featureSetJson(i: FeatureSetInfo): Record<string, unknown> {
  return { feature_set: i.featureSet, current: i.current, previous: i.previous, dropping: i.dropping };
}

/** FeatureSetInfo on one line: `ranker: current v8, previous v7, dropping v5`. */
export function featureSetText(i: FeatureSetInfo): string {
  let s = `${i.featureSet}: current ${i.current || "(none)"}, previous ${i.previous || "(none)"}`;
  if (i.dropping.length > 0) s += `, dropping ${i.dropping.join(" ")}`;
  return s;
}

const SET_STATE_HELP = `
Prints the feature set's state on one line: its current (published) version, the previous one
(what rollback returns to) and the versions being dropped; with --json
{"feature_set", "current", "previous", "dropping": [...]}, "" for none.`;

export function registerVersions(program: Command): void {
  program
    .command("publish")
    .description(
      "make a version of a feature set the one every reader gets (the current one becomes previous)",
    )
    .argument("<feature_set>")
    .argument("<version>")
    .addHelpText(
      "after",
      `${SET_STATE_HELP}
The switch is atomic: a batch-get reads every entity in one version. Publishing the current
version changes nothing. Exit status 2 when the version is being dropped.

Example:
  featurestore set user:42 score=0.9 --feature-set ranker --version v8
  featurestore get user:42 --feature-set ranker --version v8     # check it first
  featurestore publish ranker v8`,
    )
    .action((set: string, version: string, _o, cmd: Command) =>
      showSet(cmd, "publish", (c, deadlineMs) => c.publishVersion(set, version, { deadlineMs })),
    );

  program
    .command("rollback")
    .description("make the previous version of a feature set current again (the two swap)")
    .argument("<feature_set>")
    .addHelpText(
      "after",
      `${SET_STATE_HELP}
Exit status 2 when there is no previous version (nothing was published twice, or it was dropped).

Example:
  featurestore rollback ranker`,
    )
    .action((set: string, _o, cmd: Command) =>
      showSet(cmd, "rollback", (c, deadlineMs) => c.rollbackVersion(set, { deadlineMs })),
    );

  program
    .command("drop-version")
    .description("delete a version of a feature set that is not current (freed in the background)")
    .argument("<feature_set>")
    .argument("<version>")
    .addHelpText(
      "after",
      `${SET_STATE_HELP}
The version's entities are freed in steps in the background; until then it is listed as
dropping and cannot be written or published. A drop interrupted by a restart resumes when the
command is run again. Exit status 2 for the current version: publish another or roll back first.

Example:
  featurestore drop-version ranker v6`,
    )
    .action((set: string, version: string, _o, cmd: Command) =>
      showSet(cmd, "drop-version", (c, deadlineMs) => c.dropVersion(set, version, { deadlineMs })),
    );

  program
    .command("feature-set")
    .description("show a feature set's current, previous and dropping versions")
    .argument("<feature_set>")
    .addHelpText(
      "after",
      `${SET_STATE_HELP}
A set nothing was ever published in shows current (none), exit status 0.

Example:
  featurestore feature-set ranker
  featurestore feature-set ranker --json | jq -r .current`,
    )
    .action((set: string, _o, cmd: Command) =>
      showSet(cmd, "feature-set", (c, deadlineMs) => c.getFeatureSet(set, { deadlineMs })),
    );
}

async function showSet(
  cmd: Command,
  command: string,
  call: (client: FeatureStoreClient, deadlineMs: number) => Promise<FeatureSetInfo>,
): Promise<void> {
  const flags = globals(cmd);
  await withClient(flags, async (client, deadlineMs) => {
    const info = await explainRefusal(command, () => call(client, deadlineMs));
    if (flags.json) printJson(featureSetJson(info));
    else println(featureSetText(info));
  });
}

// ---- incr and append ---------------------------------------------------------------------------

/** The flags incr and append share. */
interface UpdateFlags extends VersionFlags {
  ttl?: string;
  eventTime?: string;
  maxAge?: string;
}

interface AppendFlags extends UpdateFlags {
  keep: string;
  type: string;
}

/** What `--type` of append accepts, and the list kind each names. */
const LIST_TYPES: Record<string, "string" | "int" | "float"> = {
  string: "string",
  string_list: "string",
  int: "int",
  int_list: "int",
  float: "float",
  float_list: "float",
};

const INT_TEXT = /^-?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function updateFlags(cmd: Command): Command {
  return versionFlags(cmd, true)
    .option(
      "--ttl <ms>",
      "time to live of the record from this call, ms (default: the entity keeps its expiry)",
    )
    .option("--event-time <ms>", "event time of the change, ms since the epoch (default: the server's clock)")
    .option("--max-age <ms>", "a new max age for the features changed, ms (default: each keeps its own)");
}

export function registerUpdates(program: Command): void {
  updateFlags(
    program
      .command("incr")
      .description("add to counters of one entity, atomically (all or none); prints the new values")
      .argument("<entity_id>")
      .argument("<counters...>", "name (adds 1), name=delta, or name:int=delta / name:double=delta"),
  )
    .addHelpText(
      "after",
      `
A whole delta is an int64 increment, a fraction (0.5, 1e-3) a double one; name:double=1 makes
a whole delta a double. An absent counter starts at 0 with the delta's type; a counter of the
other type, or of another kind, is refused (exit status 2) and nothing is changed.

Examples:
  featurestore incr user:42 clicks
  featurestore incr user:42 clicks=3 spend=12.5 views:double=1 --json
  featurestore incr user:42 clicks --feature-set live --version v1`,
    )
    .action(async (id: string, specs: string[], o: UpdateFlags, cmd: Command) => {
      const flags = globals(cmd);
      const counters = specs.map(parseCounter);
      const seen = new Set<string>();
      for (const c of counters) {
        if (seen.has(c.name)) throw usage(`incr: "${c.name}" given twice; give each counter once`);
        seen.add(c.name);
      }
      const { options, times } = updateOptions("incr", o);
      const updates: FeatureUpdateInput[] = counters.map((c) => ({
        name: c.name,
        increment: c.delta,
        ...times,
      }));
      await withClient(flags, async (client, deadlineMs) => {
        const { values } = await explainRefusal(
          "incr",
          () => client.updateFeatures(id, updates, { ...options, deadlineMs }),
          (m) =>
            m.includes("holds a double_value; an int increment")
              ? "a whole delta is an int increment: name:double=N adds to a double counter"
              : undefined,
        );
        if (flags.json) {
          const out: Record<string, unknown> = {};
          const types: Record<string, string> = {};
          for (const c of counters) {
            out[c.name] = toJsonValue(values[c.name] ?? 0);
            types[c.name] = c.type;
          }
          printJson({ entity_id: id, values: out, types, ...versionJson(options) });
        } else {
          const nameW = Math.max(...counters.map((c) => c.name.length));
          for (const c of counters)
            println(`${c.name.padEnd(nameW)}  ${c.type.padEnd(6)}  ${String(values[c.name] ?? 0)}`);
        }
      });
    });

  updateFlags(
    program
      .command("append")
      .description("push values onto the front of a list feature of one entity, keeping the newest N")
      .argument("<entity_id>")
      .argument("<feature>")
      .argument("<values...>", "the items, pushed one at a time: the last given ends up first"),
  )
    .requiredOption(
      "-k, --keep <n>",
      "how many items the list keeps, newest first (1 to the server's MAX_LIST_ITEMS)",
    )
    .option(
      "--type <type>",
      "the items' type: string (a string_list), int (int_list) or float (float_list)",
      "string",
    )
    .addHelpText(
      "after",
      `
Like Redis LPUSH then LTRIM: the list is [last value, ..., first value, older items...] cut to
--keep. An absent list is created with the values' type; a list of another type, or a feature
that is not a list, is refused (exit status 2) and nothing is changed.

Examples:
  featurestore append user:42 recent_items sku-1 sku-2 --keep 20
  featurestore append user:42 last_prices 9.99 12.5 --type float --keep 5`,
    )
    .action(async (id: string, name: string, items: string[], o: AppendFlags, cmd: Command) => {
      const flags = globals(cmd);
      const keepLast = Number(o.keep);
      if (!Number.isSafeInteger(keepLast) || keepLast < 1)
        throw usage(`append: --keep must be a whole number >= 1, got "${o.keep}"`);
      const kind = LIST_TYPES[o.type];
      if (kind === undefined)
        throw usage(
          `append: --type must be string, int or float (or string_list, int_list, float_list), got "${o.type}"`,
        );
      const { options, times } = updateOptions("append", o);
      const update: FeatureUpdateInput = { name, append: listOf(kind, items), keepLast, ...times };
      await withClient(flags, async (client, deadlineMs) => {
        await explainRefusal(
          "append",
          () => client.updateFeatures(id, [update], { ...options, deadlineMs }),
          (m) =>
            kind === "string" && (m.includes("holds a float_list") || m.includes("holds an int_list"))
              ? "--type int or --type float appends to a numeric list"
              : undefined,
        );
        if (flags.json)
          printJson({
            ok: true,
            entity_id: id,
            feature: name,
            appended: items.length,
            keep: keepLast,
            ...versionJson(options),
          });
        else println(`OK (${items.length} appended to ${name}, keeping the newest ${keepLast})`);
      });
    });
}

/** One counter of `incr`: its name, delta and the delta's type. */
interface Counter {
  name: string;
  delta: number | bigint | { double: number };
  type: "int" | "double";
}

/** `name`, `name=delta` or `name:int|double[=delta]` (a ":" not followed by a type is part of the name). */
function parseCounter(spec: string): Counter {
  const eq = spec.indexOf("=");
  let name = eq < 0 ? spec : spec.slice(0, eq);
  const text = eq < 0 ? undefined : spec.slice(eq + 1);
  let type: "int" | "double" | undefined;
  const colon = name.lastIndexOf(":");
  if (colon > 0 && isType(name.slice(colon + 1))) {
    const t = name.slice(colon + 1);
    if (t !== "int" && t !== "double") throw usage(`incr: "${spec}": counters are int or double, not ${t}`);
    type = t;
    name = name.slice(0, colon);
  }
  if (name.length === 0) throw usage(`incr: "${spec}" is not name, name=delta or name:type=delta`);
  if (text === undefined || text === "") {
    if (text === "") throw usage(`incr: "${spec}" has no delta after "="`);
    return type === "double" ? { name, delta: { double: 1 }, type } : { name, delta: 1, type: "int" };
  }
  if (INT_TEXT.test(text) && type !== "double") {
    const big = BigInt(text);
    if (big < INT64_MIN || big > INT64_MAX) throw usage(`incr: "${spec}": ${text} does not fit an int64`);
    const n = Number(text);
    return { name, delta: Number.isSafeInteger(n) ? n : big, type: "int" };
  }
  const x = Number(text);
  if (text.trim() !== text || !Number.isFinite(x)) throw usage(`incr: "${spec}": "${text}" is not a number`);
  if (type === "int")
    throw usage(`incr: "${spec}": ${text} is not a whole number (name:double= for a double)`);
  return { name, delta: { double: x }, type: "double" };
}

/** The items of `append` as the client's typed list of `kind`. */
function listOf(
  kind: "string" | "int" | "float",
  items: readonly string[],
): string[] | Float32Array | BigInt64Array {
  if (kind === "string") return [...items];
  if (kind === "float") {
    const out = new Float32Array(items.length);
    items.forEach((s, i) => {
      const x = Number(s);
      if (s.trim() === "" || s.trim() !== s || Number.isNaN(x))
        throw usage(`append: "${s}" is not a number (--type float)`);
      out[i] = x;
    });
    return out;
  }
  const out = new BigInt64Array(items.length);
  items.forEach((s, i) => {
    if (!INT_TEXT.test(s)) throw usage(`append: "${s}" is not an integer (--type int)`);
    const big = BigInt(s);
    if (big < INT64_MIN || big > INT64_MAX) throw usage(`append: ${s} does not fit an int64`);
    out[i] = big;
  });
  return out;
}

/** UpdateOptions (ttl, feature set, version) and the times every update carries, from the flags. */
function updateOptions(
  command: string,
  o: UpdateFlags,
): { options: UpdateOptions; times: { eventTimeMs?: number; maxAgeMs?: number } } {
  const options: UpdateOptions = { ...versionOptions(command, o, true) };
  if (o.ttl !== undefined) options.ttlMs = wholeMs("--ttl", o.ttl);
  const times: { eventTimeMs?: number; maxAgeMs?: number } = {};
  if (o.eventTime !== undefined) times.eventTimeMs = wholeMs("--event-time", o.eventTime);
  if (o.maxAge !== undefined) times.maxAgeMs = wholeMs("--max-age", o.maxAge);
  return { options, times };
}
