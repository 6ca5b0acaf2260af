/**
 * Feature types as the command line names them, how a cell of an input file (a JSON value, a CSV
 * text, a Parquet value) becomes a typed value, and how a read value is shown (human text, JSON,
 * CSV text) so that `export` writes what `load` reads back.
 */
import { type FeatureInput, type FeatureValue, WindowValue } from "../client/index.ts";

/** The value types of the protocol's FeatureValue oneof, as written in schema files and flags. */
export const TYPES = [
  "int",
  "double",
  "string",
  "bool",
  "bytes",
  "float_list",
  "int_list",
  "string_list",
] as const;
export type FeatureType = (typeof TYPES)[number];

export function isType(s: string): s is FeatureType {
  return (TYPES as readonly string[]).includes(s);
}

/**
 * The type of a value read from the server: a writable type, or `window`, the tiles of a
 * windowed feature, which only the server writes (from UpdateFeatures observe): `get` shows
 * them, `load` and `set` cannot write them, `export` leaves them out.
 */
export type ReadType = FeatureType | "window";

/** The type of a value read from the server. */
export function typeOf(v: FeatureValue): ReadType {
  if (typeof v === "number") return Number.isInteger(v) && !Object.is(v, -0) ? "int" : "double";
  if (typeof v === "bigint") return "int";
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "bool";
  if (v instanceof Float32Array) return "float_list";
  if (v instanceof BigInt64Array) return "int_list";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof WindowValue) return "window";
  return "string_list";
}

/**
 * The type a value suggests when no schema names its column: JSON numbers are ints when whole,
 * a list of numbers is a float_list (an embedding), a list of strings a string_list. CSV text is
 * read the same way (`17` int, `0.5` double, `true` bool, `[0.1,0.2]` float_list). Null for a
 * value that says nothing (null, an empty cell or list).
 */
export function inferType(v: unknown, fromText: boolean): FeatureType | null {
  if (v === null || v === undefined) return null;
  if (fromText && typeof v === "string") return inferText(v);
  switch (typeof v) {
    case "number":
      return Number.isInteger(v) ? "int" : "double";
    case "bigint":
      return "int";
    case "boolean":
      return "bool";
    case "string":
      return "string";
  }
  if (v instanceof Float32Array || v instanceof Float64Array) return "float_list";
  if (v instanceof BigInt64Array || v instanceof Int32Array) return "int_list";
  if (v instanceof Uint8Array) return "bytes";
  if (Array.isArray(v)) {
    if (v.length === 0) return null;
    const first = v.find((x) => x !== null);
    if (typeof first === "number") return "float_list";
    if (typeof first === "bigint") return "int_list";
    if (typeof first === "string") return "string_list";
  }
  return null;
}

const INT_TEXT = /^-?\d+$/;

function inferText(s: string): FeatureType | null {
  if (s.length === 0) return null;
  if (INT_TEXT.test(s)) return "int";
  if (s === "true" || s === "false") return "bool";
  const c = s.charCodeAt(0);
  if (c === 0x5b /* [ */) {
    try {
      return inferType(JSON.parse(s), false);
    } catch {
      return "string";
    }
  }
  const n = Number(s);
  if (Number.isFinite(n) && s.trim() === s) return "double";
  if (s === "NaN" || s === "Infinity" || s === "-Infinity") return "double";
  return "string";
}

/**
 * The type of a column seen with two types in the sample: an int column that also holds doubles
 * is a double column; any other mix is a string column only when both are scalars (text wins),
 * otherwise the first type stays and the odd values are rejected as rows.
 */
export function widen(a: FeatureType, b: FeatureType): FeatureType {
  if (a === b) return a;
  if ((a === "int" && b === "double") || (a === "double" && b === "int")) return "double";
  if ((a === "int_list" && b === "float_list") || (a === "float_list" && b === "int_list"))
    return "float_list";
  return a;
}

/**
 * A cell as the typed input of the client (`FeatureInput`) for a column of type `t`, or a string
 * Rejection saying why it cannot be one (the row is then rejected with it). Strings are parsed for every
 * type, so CSV cells and JSON strings take the same path; undefined for an absent value.
 */
/** Why a cell cannot be a value of its column: the row is rejected with this reason. */
export class Rejection {
  constructor(readonly reason: string) {}
}

function reject(reason: string): Rejection {
  return new Rejection(reason);
}

export function toInput(t: FeatureType, v: unknown, strict: boolean): FeatureInput | undefined | Rejection {
  if (v === null || v === undefined) return undefined;
  switch (t) {
    case "int":
      if (typeof v === "number") {
        if (Number.isSafeInteger(v)) return v;
        if (!strict && Number.isFinite(v)) return { double: v };
        return reject(`${v} is not an integer`);
      }
      if (typeof v === "bigint") return v;
      if (typeof v === "string") {
        if (INT_TEXT.test(v)) {
          const n = Number(v);
          return Number.isSafeInteger(n) ? n : BigInt(v);
        }
        if (v.length === 0) return undefined;
        const n = Number(v);
        if (!strict && Number.isFinite(n) && v.trim() === v) return { double: n };
        return reject(`"${short(v)}" is not an integer`);
      }
      return reject(`${describe(v)} is not an integer`);
    case "double":
      if (typeof v === "number") return { double: v };
      if (typeof v === "bigint") return { double: Number(v) };
      if (typeof v === "string") {
        if (v.length === 0) return undefined;
        const n = Number(v);
        if (!Number.isNaN(n) || v === "NaN") return { double: n };
        return reject(`"${short(v)}" is not a number`);
      }
      return reject(`${describe(v)} is not a number`);
    case "string":
      if (typeof v === "string") return v;
      if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
      if (v instanceof Uint8Array) return new TextDecoder().decode(v);
      return reject(`${describe(v)} is not a string`);
    case "bool":
      if (typeof v === "boolean") return v;
      if (v === "true" || v === "1" || v === 1) return true;
      if (v === "false" || v === "0" || v === 0) return false;
      if (v === "") return undefined;
      return reject(`${typeof v === "string" ? `"${short(v)}"` : describe(v)} is not a bool (true/false)`);
    case "bytes":
      if (v instanceof Uint8Array) return v;
      if (typeof v === "string") {
        const b = Buffer.from(v, "base64");
        if (b.toString("base64").replace(/=+$/, "") !== v.replace(/=+$/, ""))
          return reject(`"${short(v)}" is not base64`);
        return new Uint8Array(b.buffer, b.byteOffset, b.length);
      }
      return reject(`${describe(v)} is not bytes (base64 text)`);
    case "float_list":
    case "int_list":
    case "string_list":
      return toList(t, v);
  }
}

function toList(t: FeatureType, v: unknown): FeatureInput | undefined | Rejection {
  let list: unknown = v;
  if (typeof v === "string") {
    if (v.length === 0) return undefined;
    try {
      list = JSON.parse(v);
    } catch {
      return reject(`"${short(v)}" is not a JSON list`);
    }
  }
  if (t === "float_list") {
    if (list instanceof Float32Array) return list;
    if (list instanceof Float64Array) return Float32Array.from(list);
    if (!Array.isArray(list)) return reject(`${describe(list)} is not a list of numbers`);
    const out = new Float32Array(list.length);
    for (let i = 0; i < list.length; i++) {
      const x = list[i];
      if (typeof x === "number") out[i] = x;
      else if (typeof x === "bigint") out[i] = Number(x);
      else return reject(`element ${i} (${describe(x)}) is not a number`);
    }
    return out;
  }
  if (t === "int_list") {
    if (list instanceof BigInt64Array) return list;
    if (!Array.isArray(list)) return reject(`${describe(list)} is not a list of integers`);
    const out = new BigInt64Array(list.length);
    for (let i = 0; i < list.length; i++) {
      const x = list[i];
      if (typeof x === "number" && Number.isSafeInteger(x)) out[i] = BigInt(x);
      else if (typeof x === "bigint") out[i] = x;
      else if (typeof x === "string" && INT_TEXT.test(x)) out[i] = BigInt(x);
      else return reject(`element ${i} (${describe(x)}) is not an integer`);
    }
    return out;
  }
  if (!Array.isArray(list)) return reject(`${describe(list)} is not a list of strings`);
  for (let i = 0; i < list.length; i++)
    if (typeof list[i] !== "string") return reject(`element ${i} (${describe(list[i])}) is not a string`);
  return list as string[];
}

function short(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `"${short(v)}"`;
  return String(v);
}

// ---- output ------------------------------------------------------------------------------------

/** The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612). */
export function f32Text(x: number): number {
  if (!Number.isFinite(x) || Number.isInteger(x)) return x;
  for (let p = 6; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return Number(x.toPrecision(9));
}

/**
 * A read value as JSON: int64 beyond 2^53 as a decimal string, bytes as base64, float lists
 * with their float32 digits, non-finite doubles as strings ("NaN", "Infinity"), a window as
 * `{ bucketMs, retentionMs, startsMs, counts, sums, mins, maxs }`.
 */
export function toJsonValue(v: FeatureValue): unknown {
  if (v instanceof WindowValue) return v.toJSON();
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (v instanceof Float32Array) return Array.from(v, f32Text);
  if (v instanceof BigInt64Array)
    return Array.from(v, (x) => (x >= -(2n ** 53n) && x <= 2n ** 53n ? Number(x) : x.toString()));
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.length).toString("base64");
  return v;
}

/** A read value as a CSV cell that `load` reads back with the same type (doubles keep a point). */
export function toCellText(v: FeatureValue): string {
  if (typeof v === "number" && Number.isInteger(v) && Number.isFinite(v)) return String(v);
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return v;
  if (typeof v === "boolean" || typeof v === "bigint") return String(v);
  return JSON.stringify(toJsonValue(v));
}

/** A value for people: lists in brackets (long ones cut), bytes in hex. */
export function toHuman(v: FeatureValue, maxItems = 16): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof Uint8Array) {
    const hex = Buffer.from(v.buffer, v.byteOffset, Math.min(v.length, 32)).toString("hex");
    return `0x${hex}${v.length > 32 ? "..." : ""} (${v.length} bytes)`;
  }
  if (v instanceof WindowValue) {
    let events = 0;
    for (const c of v.counts) events += c;
    const tiles = v.startsMs.length;
    return `${events} events in ${tiles} tile${tiles === 1 ? "" : "s"} of ${v.bucketMs} ms (retention ${v.retentionMs} ms)`;
  }
  const items = Array.from(toJsonValue(v) as unknown[]);
  const shown = items.slice(0, maxItems).map((x) => (typeof x === "string" ? JSON.stringify(x) : String(x)));
  return `[${shown.join(", ")}${items.length > maxItems ? `, ... ${items.length} items` : ""}]`;
}
