/**
 * The columns of a load: the key column, and each feature column's type, from `--schema` or
 * inferred from a sample of the first rows (see `inferType`/`widen` in ../values.ts).
 */
import { readFileSync } from "node:fs";
import { usage } from "../errors.ts";
import { type FeatureType, inferType, isType, TYPES, widen } from "../values.ts";

/** Rows looked at to infer column types before the first batch is encoded. */
export const SAMPLE_ROWS = 1000;

/**
 * The time columns of a feature column `f`: `f@event_time_ms`, the event time of its value (ms
 * since the epoch), and `f@max_age_ms`, its own max age (ms): FeatureValue.event_time_ms and
 * max_age_ms (proto/featurestore/v1). `export --event-times` writes them; `load` writes them into
 * the value they go with, so that a reloaded export keeps its event times (and a stored value
 * newer than the row's is kept: set-if-newer) instead of taking the server's clock. They are not
 * features; a feature whose value is absent from a row ignores them.
 */
export const EVENT_TIME_SUFFIX = "@event_time_ms";
export const MAX_AGE_SUFFIX = "@max_age_ms";

/** Whether `column` is a time column (see EVENT_TIME_SUFFIX), not a feature. */
export function isTimeColumn(column: string): boolean {
  return column.endsWith(EVENT_TIME_SUFFIX) || column.endsWith(MAX_AGE_SUFFIX);
}

/** Column -> type, as written in a schema file. */
export type Schema = Record<string, FeatureType>;

/**
 * Reads a schema file: a JSON object of column -> type, e.g.
 * `{ "clicks": "int", "ctr": "double", "embedding": "float_list" }`. Columns it does not name
 * are inferred.
 */
export function readSchema(path: string): Schema {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw usage(`--schema ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw usage(`--schema ${path}: not JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw usage(`--schema ${path}: expected an object of column -> type`);
  const schema: Schema = Object.create(null);
  for (const [col, t] of Object.entries(raw)) {
    if (typeof t !== "string" || !isType(t))
      throw usage(
        `--schema ${path}: column "${col}" has type ${JSON.stringify(t)}; use one of ${TYPES.join(", ")}`,
      );
    schema[col] = t;
  }
  return schema;
}

/**
 * Types of the columns seen in `rows` (all but `key` and the time columns), widened over the
 * sample; a schema's types win. `fromText`: values are CSV text.
 */
export function inferColumns(
  rows: readonly (Record<string, unknown> | null)[],
  key: string,
  schema: Schema,
  fromText: boolean,
): Map<string, FeatureType> {
  const types = new Map<string, FeatureType>();
  for (const row of rows) {
    if (row === null) continue;
    for (const col in row) {
      if (col === key || schema[col] !== undefined || isTimeColumn(col)) continue;
      const t = inferType(row[col], fromText);
      if (t === null) continue;
      const seen = types.get(col);
      types.set(col, seen === undefined ? t : widen(seen, t));
    }
  }
  for (const col in schema) if (col !== key && !isTimeColumn(col)) types.set(col, schema[col]!);
  return types;
}
