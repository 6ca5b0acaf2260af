/**
 * The columns of a load: the key column, and each feature column's type, from `--schema` or
 * inferred from a sample of the first rows (see `inferType`/`widen` in ../values.ts).
 */
import { readFileSync } from "node:fs";
import { usage } from "../errors.ts";
import { type FeatureType, inferType, isType, TYPES, widen } from "../values.ts";

/** Rows looked at to infer column types before the first batch is encoded. */
export const SAMPLE_ROWS = 1000;

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
 * Types of the columns seen in `rows` (all but `key`), widened over the sample; a schema's
 * types win. `fromText`: values are CSV text.
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
      if (col === key || schema[col] !== undefined) continue;
      const t = inferType(row[col], fromText);
      if (t === null) continue;
      const seen = types.get(col);
      types.set(col, seen === undefined ? t : widen(seen, t));
    }
  }
  for (const col in schema) if (col !== key) types.set(col, schema[col]!);
  return types;
}
