/**
 * The format of a stream entry, and its translation into one write (a SetFeaturesItem).
 *
 * A Redis Stream entry is a list of field/value pairs (bytes). One entry is one write:
 *
 * | field          | value                                                                      |
 * |----------------|----------------------------------------------------------------------------|
 * | `entity_id`    | required: the entity, non-empty UTF-8                                      |
 * | `features`     | JSON object, the proto3 JSON of `map<string, FeatureValue>`:               |
 * |                | `{"clicks": {"intValue": "3"}, "emb": {"floatList": {"values": [0.5, 1]}}}`|
 * | `f:<name>`     | one feature, its type inferred from the value's text (below)               |
 * | `ttl_ms`       | optional: time to live of the record from this write, ms (0 = default)     |
 * | `replace`      | optional: `true`/`false` (`1`/`0`): replace the record instead of merging  |
 * | `meta:<any>`   | ignored: room for the producer's own fields (trace ids, event times)       |
 *
 * At least one feature, from `features`, `f:` fields or both (a name may appear once). Any
 * other field, a field given twice, a value that is not valid UTF-8, or a value that does not
 * parse makes the entry invalid: it goes to the dead-letter stream with the reason, and is
 * never retried.
 *
 * `features` takes both spellings of the FeatureValue members (`intValue` / `int_value`), one
 * member per value: `intValue` (a decimal string or a safe integer), `doubleValue` (a number,
 * or "NaN", "Infinity", "-Infinity"), `stringValue`, `boolValue`, `bytesValue` (base64, standard
 * or URL-safe), `floatList` / `intList` / `stringList` (`{"values": [...]}`).
 *
 * `f:<name>` values are typed by their text: an integer literal (`42`, `-7`) is an int64, any
 * other JSON number (`0.5`, `1e3`) a double, `true`/`false` a bool, a JSON array of numbers a
 * float_list, a JSON array of strings a string_list, a JSON string (`"42"`) that string, and
 * any other text (`FR`) the text itself as a string. Quote a value to keep it a string.
 */
import type { FeatureInput, FeaturesInput } from "../codec/features.ts";
import type { SetFeaturesItem } from "../codec/messages.ts";

/** Field names of the entry format. */
export const ENTRY_FIELDS = {
  entityId: "entity_id",
  features: "features",
  ttlMs: "ttl_ms",
  replace: "replace",
  /** Prefix of a flat feature field: `f:clicks`. */
  flatPrefix: "f:",
  /** Prefix of a field the consumer ignores. */
  metaPrefix: "meta:",
} as const;

/** Largest ttl_ms the server takes (2^52 ms, its MAX_TTL_MS). */
const MAX_TTL_MS = 2 ** 52;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Thrown by `parseEntry`: the entry is malformed; `message` says which field and why. */
export class InvalidEntryError extends Error {
  override readonly name = "InvalidEntryError";
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The text of a field name or value; bytes that are not UTF-8 make the entry invalid. */
function text(b: Uint8Array | string, what: string): string {
  if (typeof b === "string") return b;
  try {
    return utf8.decode(b);
  } catch {
    throw new InvalidEntryError(`${what} is not valid UTF-8`);
  }
}

/**
 * Turns the flat field/value list of one entry (`[f1, v1, f2, v2, ...]`, as XREADGROUP returns
 * it) into a write. Throws InvalidEntryError naming the offending field.
 */
export function parseEntry(fields: readonly (Uint8Array | string)[]): SetFeaturesItem {
  if (fields.length % 2 !== 0) throw new InvalidEntryError("odd number of fields and values");
  let entityId: string | undefined;
  let ttlMs: number | undefined;
  let replace: boolean | undefined;
  const features: FeaturesInput = Object.create(null);
  let count = 0;
  const seen = new Set<string>();
  const put = (name: string, value: FeatureInput, field: string) => {
    if (name.length === 0) throw new InvalidEntryError(`${field}: a feature name must not be empty`);
    if (Object.hasOwn(features, name)) throw new InvalidEntryError(`feature "${name}" is given twice`);
    features[name] = value;
    count++;
  };
  for (let i = 0; i < fields.length; i += 2) {
    const field = text(fields[i]!, `field #${i / 2}`);
    if (seen.has(field)) throw new InvalidEntryError(`field "${field}" is given twice`);
    seen.add(field);
    if (field.startsWith(ENTRY_FIELDS.metaPrefix)) continue;
    const value = text(fields[i + 1]!, `field "${field}"`);
    if (field === ENTRY_FIELDS.entityId) {
      if (value.length === 0) throw new InvalidEntryError("entity_id must not be empty");
      entityId = value;
    } else if (field === ENTRY_FIELDS.features) {
      const map = parseJson(value, "features");
      if (map === null || typeof map !== "object" || Array.isArray(map))
        throw new InvalidEntryError('features must be a JSON object: {"name": {"intValue": "1"}, ...}');
      for (const name of Object.keys(map))
        put(name, featureValueFromJson(name, (map as Record<string, unknown>)[name]), "features");
    } else if (field.startsWith(ENTRY_FIELDS.flatPrefix)) {
      put(field.slice(ENTRY_FIELDS.flatPrefix.length), inferValue(field, value), field);
    } else if (field === ENTRY_FIELDS.ttlMs) {
      if (!/^\d+$/.test(value) || Number(value) > MAX_TTL_MS)
        throw new InvalidEntryError(
          `ttl_ms must be an integer from 0 to 2^52 ms, got ${JSON.stringify(value)}`,
        );
      ttlMs = Number(value);
    } else if (field === ENTRY_FIELDS.replace) {
      if (value === "true" || value === "1") replace = true;
      else if (value === "false" || value === "0") replace = false;
      else throw new InvalidEntryError(`replace must be true, false, 1 or 0, got ${JSON.stringify(value)}`);
    } else {
      throw new InvalidEntryError(
        `unknown field "${field}": expected entity_id, features, f:<name>, ttl_ms, replace or meta:<name>`,
      );
    }
  }
  if (entityId === undefined) throw new InvalidEntryError("entity_id is missing");
  if (count === 0) throw new InvalidEntryError("no features: give a features field or f:<name> fields");
  const item: SetFeaturesItem = { entityId, features };
  if (ttlMs !== undefined) item.ttlMs = ttlMs;
  if (replace !== undefined) item.replace = replace;
  return item;
}

function parseJson(s: string, what: string): unknown {
  try {
    return JSON.parse(s);
  } catch (err) {
    throw new InvalidEntryError(`${what} is not JSON: ${(err as Error).message}`);
  }
}

// ---- f:<name> values: typed by their text -------------------------------------------------------

const INT_LITERAL = /^-?(0|[1-9]\d*)$/;

function inferValue(field: string, s: string): FeatureInput {
  if (INT_LITERAL.test(s)) return int64(BigInt(s), field);
  if (s === "true") return true;
  if (s === "false") return false;
  const c = s.charCodeAt(0);
  // A JSON number, string or array; any other text is a string as it is.
  if (c === 0x22 /* " */ || c === 0x5b /* [ */ || c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch {
      if (c === 0x22 || c === 0x5b) throw new InvalidEntryError(`${field} is not valid JSON`);
      return s;
    }
    if (typeof v === "number") return { double: v };
    if (typeof v === "string") return v;
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x === "number")) return Float32Array.from(v as number[]);
      if (v.every((x) => typeof x === "string")) return v as string[];
      throw new InvalidEntryError(`${field}: a list must hold only numbers or only strings`);
    }
  }
  return s;
}

function int64(v: bigint, what: string): bigint {
  if (v < INT64_MIN || v > INT64_MAX) throw new InvalidEntryError(`${what}: ${v} does not fit int64`);
  return v;
}

// ---- features: the proto3 JSON of a FeatureValue -----------------------------------------------

/** JSON member names of FeatureValue's oneof, both spellings, to the value kind. */
const MEMBERS: Record<string, Kind> = {
  intValue: "int",
  int_value: "int",
  doubleValue: "double",
  double_value: "double",
  stringValue: "string",
  string_value: "string",
  boolValue: "bool",
  bool_value: "bool",
  bytesValue: "bytes",
  bytes_value: "bytes",
  floatList: "floatList",
  float_list: "floatList",
  intList: "intList",
  int_list: "intList",
  stringList: "stringList",
  string_list: "stringList",
};
type Kind = "int" | "double" | "string" | "bool" | "bytes" | "floatList" | "intList" | "stringList";

function featureValueFromJson(name: string, v: unknown): FeatureInput {
  const what = `features["${name}"]`;
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new InvalidEntryError(`${what} must be a FeatureValue object, e.g. {"intValue": "3"}`);
  const keys = Object.keys(v);
  if (keys.length !== 1)
    throw new InvalidEntryError(`${what} must set exactly one of ${Object.keys(MEMBERS).join(", ")}`);
  const member = keys[0]!;
  const kind = Object.hasOwn(MEMBERS, member) ? MEMBERS[member] : undefined;
  if (kind === undefined) throw new InvalidEntryError(`${what}: unknown member "${member}"`);
  const x = (v as Record<string, unknown>)[member];
  const at = `${what}.${member}`;
  switch (kind) {
    case "int":
      return jsonInt64(x, at);
    case "double":
      return { double: jsonDouble(x, at) };
    case "string":
      if (typeof x !== "string") throw new InvalidEntryError(`${at} must be a string`);
      return x;
    case "bool":
      if (typeof x !== "boolean") throw new InvalidEntryError(`${at} must be true or false`);
      return x;
    case "bytes":
      return base64(x, at);
    case "floatList":
      return Float32Array.from(listValues(x, at), (e, i) => jsonDouble(e, `${at}.values[${i}]`));
    case "intList":
      return BigInt64Array.from(listValues(x, at), (e, i) => jsonInt64(e, `${at}.values[${i}]`));
    case "stringList":
      return listValues(x, at).map((e, i) => {
        if (typeof e !== "string") throw new InvalidEntryError(`${at}.values[${i}] must be a string`);
        return e;
      });
  }
}

function listValues(x: unknown, at: string): unknown[] {
  if (x === null || typeof x !== "object" || Array.isArray(x))
    throw new InvalidEntryError(`${at} must be {"values": [...]}`);
  const keys = Object.keys(x);
  if (keys.length > 1 || (keys.length === 1 && keys[0] !== "values"))
    throw new InvalidEntryError(`${at} must be {"values": [...]}`);
  const values = (x as { values?: unknown }).values ?? [];
  if (!Array.isArray(values)) throw new InvalidEntryError(`${at}.values must be an array`);
  return values;
}

/** int64 in proto3 JSON: a decimal string, or a number that is an exact integer. */
function jsonInt64(x: unknown, at: string): bigint {
  if (typeof x === "string" && INT_LITERAL.test(x)) return int64(BigInt(x), at);
  if (typeof x === "number" && Number.isSafeInteger(x)) return BigInt(x);
  throw new InvalidEntryError(
    `${at} must be an integer (a decimal string for 64 bits), got ${JSON.stringify(x)}`,
  );
}

/** double in proto3 JSON: a number, or "NaN", "Infinity", "-Infinity". */
function jsonDouble(x: unknown, at: string): number {
  if (typeof x === "number") return x;
  if (x === "NaN") return Number.NaN;
  if (x === "Infinity") return Number.POSITIVE_INFINITY;
  if (x === "-Infinity") return Number.NEGATIVE_INFINITY;
  throw new InvalidEntryError(`${at} must be a number, got ${JSON.stringify(x)}`);
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function base64(x: unknown, at: string): Uint8Array {
  if (typeof x !== "string" || !BASE64.test(x) || x.replace(/=+$/, "").length % 4 === 1)
    throw new InvalidEntryError(`${at} must be base64`);
  return new Uint8Array(Buffer.from(x.replace(/-/g, "+").replace(/_/g, "/"), "base64"));
}
