/**
 * What commands print: JSON (one document, or one line per event) on stdout with `--json`,
 * aligned text for people otherwise. Diagnostics go to stderr either way.
 */
import type { TypedRecord } from "./read.ts";
import { toHuman, toJsonValue } from "./values.ts";

/** Writes `s` and a newline to stdout. */
export function println(s = ""): void {
  process.stdout.write(`${s}\n`);
}

/** Writes `s` and a newline to stderr. */
export function eprintln(s = ""): void {
  process.stderr.write(`${s}\n`);
}

/** One JSON document on one line. */
export function printJson(v: unknown): void {
  println(JSON.stringify(v));
}

/**
 * A record as JSON: `{ entity_id, found, features: {name: value}, types: {name: type}, missing,
 * stale }` (missing and stale when not empty). With `eventTimes`, also `event_times: {name: ms}`
 * (0: the value has none) and `max_ages: {name: ms}` of the features that have one.
 */
export function recordJson(rec: TypedRecord, eventTimes = false): Record<string, unknown> {
  const features: Record<string, unknown> = {};
  const types: Record<string, string> = {};
  for (const f of rec.features) {
    features[f.name] = toJsonValue(f.value);
    types[f.name] = f.type;
  }
  const out: Record<string, unknown> = { entity_id: rec.entityId, found: rec.found, features, types };
  if (eventTimes) {
    const times: Record<string, number> = {};
    const ages: Record<string, number> = {};
    for (const f of rec.features) {
      times[f.name] = f.eventTimeMs;
      if (f.maxAgeMs > 0) ages[f.name] = f.maxAgeMs;
    }
    out.event_times = times;
    out.max_ages = ages;
  }
  if (rec.missing.length > 0) out.missing = rec.missing;
  if (rec.stale.length > 0) out.stale = rec.stale;
  return out;
}

/**
 * A record for people: the id, then one `name  type  value` line per feature, sorted by name;
 * with `eventTimes`, each line starts with the value's event time (UTC, `-` when it has none) and
 * ends with its max age when it has one.
 */
export function printRecord(rec: TypedRecord, eventTimes = false): void {
  if (!rec.found) {
    println(`${rec.entityId}: (not found)`);
    return;
  }
  const fs = [...rec.features].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  println(`${rec.entityId}  (${fs.length} feature${fs.length === 1 ? "" : "s"})`);
  const nameW = Math.max(4, ...fs.map((f) => f.name.length));
  const typeW = Math.max(4, ...fs.map((f) => f.type.length));
  for (const f of fs) {
    const line = `${f.name.padEnd(nameW)}  ${f.type.padEnd(typeW)}  ${toHuman(f.value)}`;
    if (!eventTimes) println(`  ${line}`);
    else
      println(
        `  ${eventTimeText(f.eventTimeMs).padEnd(24)}  ${line}${f.maxAgeMs > 0 ? `  (max age ${f.maxAgeMs} ms)` : ""}`,
      );
  }
  if (rec.missing.length > 0) println(`  missing: ${rec.missing.join(", ")}`);
  if (rec.stale.length > 0) println(`  stale (older than their max age): ${rec.stale.join(", ")}`);
}

/** An event time as UTC ISO text (`2024-06-01T12:00:00.000Z`, 24 characters); `-` for none. */
function eventTimeText(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : "-";
}

/** `n` with thousands separators. */
export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Milliseconds with a precision that suits their size. */
export function ms(x: number): string {
  return x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(0);
}
