/**
 * The rows of the lookup table, from a GetFeatures answer in the Connect JSON mapping
 * (src/transport/http/json.ts): 64-bit integers as strings, bytes as base64, a set oneof
 * member always present, an empty list as `{}`.
 *
 * ```json
 * {"entityId":"user:42","found":true,"missing":["nope"],
 *  "features":{"clicks":{"intValue":"3"},"emb":{"floatList":{"values":[0.5,0.25]}}}}
 * ```
 * Pure functions, so bun tests them without a browser.
 */

/** The GetFeaturesResponse fields the console reads (absent = the field's default). */
export interface GetFeaturesJson {
  entityId?: string;
  found?: boolean;
  missing?: string[];
  features?: Record<string, FeatureValueJson>;
}

/** A FeatureValue: exactly one member of its `kind` oneof is set. */
export type FeatureValueJson = Partial<{
  intValue: string | number;
  doubleValue: number | string;
  stringValue: string;
  boolValue: boolean;
  bytesValue: string;
  floatList: { values?: Array<number | string> };
  intList: { values?: Array<string | number> };
  stringList: { values?: string[] };
}>;

/** Whether the entity has the feature. */
export type FeatureStatus = "present" | "missing";

/** One row of the table. */
export interface FeatureRow {
  readonly name: string;
  /** The proto type: int, double, string, bool, bytes, float_list, int_list, string_list; "" when missing. */
  readonly type: string;
  /** The value as shown (lists shortened); "" when missing. */
  readonly value: string;
  /** The whole value, for the cell's tooltip. */
  readonly full: string;
  readonly status: FeatureStatus;
  /**
   * How old the value is, as shown; "" until the API gives it. The real-time features issue adds
   * event times and per-feature statuses to the answer: read them here, and the table shows them
   * (the column is already there).
   */
  readonly age: string;
}

/** Items shown of a list before it is cut with "…". */
export const LIST_PREVIEW = 8;

/** The JSON member name of each proto type, in the oneof's order. */
const KINDS = [
  ["intValue", "int"],
  ["doubleValue", "double"],
  ["stringValue", "string"],
  ["boolValue", "bool"],
  ["bytesValue", "bytes"],
  ["floatList", "float_list"],
  ["intList", "int_list"],
  ["stringList", "string_list"],
] as const;

/**
 * The table's rows: with `requested` names, one per distinct name in the order asked (present
 * or missing); without, every feature the entity has, by name.
 */
export function featureRows(answer: GetFeaturesJson, requested: readonly string[]): FeatureRow[] {
  const features = answer.features ?? {};
  const names = requested.length > 0 ? [...new Set(requested)] : Object.keys(features).sort();
  return names.map((name) => {
    const v = Object.hasOwn(features, name) ? features[name] : undefined;
    return v === undefined ? missingRow(name) : presentRow(name, v);
  });
}

function missingRow(name: string): FeatureRow {
  return { name, type: "", value: "", full: "", status: "missing", age: "" };
}

function presentRow(name: string, v: FeatureValueJson): FeatureRow {
  for (const [member, type] of KINDS) {
    const x = v[member];
    if (x === undefined) continue;
    const [value, full] = show(member, x);
    return { name, type, value, full, status: "present", age: "" };
  }
  return {
    name,
    type: "unknown",
    value: JSON.stringify(v),
    full: JSON.stringify(v),
    status: "present",
    age: "",
  };
}

/** [shown, full] text of one oneof member. */
function show(member: (typeof KINDS)[number][0], x: unknown): [string, string] {
  switch (member) {
    case "stringValue":
      return same(JSON.stringify(x));
    case "bytesValue": {
      const b64 = String(x);
      const shown = b64.length > 44 ? `${b64.slice(0, 44)}…` : b64;
      return [`${shown} (${base64Length(b64)} B)`, b64];
    }
    case "floatList":
    case "intList":
    case "stringList": {
      const values = ((x as { values?: unknown[] }).values ?? []).map((e) =>
        member === "stringList" ? JSON.stringify(e) : String(e),
      );
      const head = values.slice(0, LIST_PREVIEW).join(", ");
      const more = values.length > LIST_PREVIEW ? ", …" : "";
      return [`[${head}${more}] (${values.length})`, `[${values.join(", ")}]`];
    }
    default:
      return same(String(x));
  }
}

function same(s: string): [string, string] {
  return [s, s];
}

/** Bytes encoded by a padded or unpadded base64 string. */
function base64Length(b64: string): number {
  const s = b64.replace(/=+$/, "");
  return Math.floor((s.length * 3) / 4);
}
