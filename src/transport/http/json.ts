/**
 * The proto3 JSON mapping for the service's messages, converting straight between JSON values
 * and protobuf binary (the only thing FeatureService speaks), driven by the field tables of
 * schema.ts.
 *
 * Written here rather than taken from protobufjs because protobufjs' `fromObject`/`toObject`
 * are not the proto3 JSON mapping: they ignore unknown fields, accept only one spelling of a
 * field name, coerce wrong types silently (`entityId: 5` becomes "5") and add a virtual
 * field for each oneof. The rules implemented here:
 *
 * - Input accepts the proto name (`entity_id`) and the JSON name (`entityId`); a field given
 *   under both, an unknown field, two members of one oneof, or a value of the wrong JSON type
 *   is INVALID_ARGUMENT naming the field. `null` means the field's default.
 * - A key given twice in one JSON object (a field, or a map entry such as one feature name)
 *   is INVALID_ARGUMENT: bodies are read by json-parse.ts, not JSON.parse, which keeps the last.
 * - A string that becomes a protobuf string (values, list items, map keys) must be well-formed
 *   UTF-16: a lone surrogate, such as the escape `"\ud800"`, has no UTF-8 encoding (TextEncoder
 *   would write U+FFFD, so "a\ud800" and "a\udbff" would name one entity). It is
 *   INVALID_ARGUMENT naming the field, as invalid UTF-8 is on the binary path.
 * - 64-bit integers: a JSON string on output, a string or a number on input. 32-bit integers
 *   are numbers, also accepted as strings. Floats also take "NaN", "Infinity", "-Infinity".
 * - bytes: standard base64 with padding on output; standard or URL-safe, padded or not, on input.
 * - Output uses the JSON (lowerCamelCase) names and omits fields at their default (0, "",
 *   false, empty list or map), except a set oneof member, which is always emitted.
 */
import { invalidArgument } from "../../codec/status.ts";
import { ProtoReader, type ProtoWriter, WireType } from "../../codec/wire.ts";
import { decodeBase64 } from "./base64.ts";
import { parseJsonStrict } from "./json-parse.ts";
import type { FieldInfo, MessageInfo, ScalarType } from "./schema.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = Record<string, unknown>;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

// ---- JSON -> binary ---------------------------------------------------------------------------

/**
 * Parses a JSON request body (UTF-8 bytes) as message `info` and appends its binary encoding
 * to `w`. Malformed UTF-8, malformed JSON, a duplicate key, nesting deeper than MAX_JSON_DEPTH
 * and any mapping error are INVALID_ARGUMENT.
 */
export function jsonBytesToBinary(info: MessageInfo, body: Uint8Array, w: ProtoWriter): void {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw invalidArgument("request body is not valid UTF-8");
  }
  jsonToBinary(info, parseJsonStrict(text), w);
}

/** Appends the binary encoding of the JSON value `json` (a parsed object) as message `info`. */
export function jsonToBinary(info: MessageInfo, json: unknown, w: ProtoWriter): void {
  if (json === null) return; // null is the default message
  writeMessage(info, json, w, "");
}

/**
 * Fields are written in declaration order (as protobuf-es and protoc do), whatever the order
 * of the JSON keys, so equal requests encode to equal bytes.
 */
function writeMessage(info: MessageInfo, obj: unknown, w: ProtoWriter, path: string): void {
  if (!isObject(obj)) throw wrongType(path || "request", `a JSON object (${info.fullName})`, obj);
  let matched = 0;
  let oneofs: Record<string, string> | undefined;
  for (const f of info.fields) {
    // Own properties only: a JSON object inherits "constructor", "toString", ... from Object.
    let key = f.jsonName;
    let present = Object.hasOwn(obj, key);
    if (f.name !== f.jsonName && Object.hasOwn(obj, f.name)) {
      if (present)
        throw invalidArgument(
          `field "${joinPath(path, f.name)}" is given twice (as ${f.name} and ${f.jsonName})`,
        );
      key = f.name;
      present = true;
    }
    if (!present) continue;
    matched++;
    const v = obj[key];
    if (v === null) continue;
    const at = joinPath(path, key);
    if (f.oneof !== undefined) {
      oneofs ??= {};
      const other = oneofs[f.oneof];
      if (other !== undefined)
        throw invalidArgument(`"${at}": oneof "${f.oneof}" already has "${other}" set; set only one`);
      oneofs[f.oneof] = key;
    }
    if (f.mapKey !== undefined) writeMap(f, v, w, at);
    else if (f.repeated) writeRepeated(f, v, w, at);
    else if (f.type.message) {
      const lenAt = w.beginLength(f.number);
      writeMessage(f.type.message, v, w, at);
      w.endLength(lenAt);
    } else {
      const s = f.type.scalar;
      const parsed = parseScalar(s, v, at);
      if (f.oneof === undefined && isDefault(parsed)) continue;
      writeScalarField(w, f.number, s, parsed);
    }
  }
  const keys = Object.keys(obj);
  if (matched !== keys.length) {
    const unknown = keys.find((k) => !info.byJsonKey.has(k)) ?? keys[0]!;
    throw invalidArgument(`unknown field "${joinPath(path, unknown)}" in ${info.fullName}`);
  }
}

function joinPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function writeRepeated(f: FieldInfo, v: unknown, w: ProtoWriter, at: string): void {
  if (!Array.isArray(v)) throw wrongType(at, "a JSON array", v);
  if (v.length === 0) return;
  const msg = f.type.message;
  if (msg) {
    for (let i = 0; i < v.length; i++) {
      if (v[i] === null) throw invalidArgument(`"${at}[${i}]" must not be null`);
      const lenAt = w.beginLength(f.number);
      writeMessage(msg, v[i], w, `${at}[${i}]`);
      w.endLength(lenAt);
    }
    return;
  }
  const s = f.type.scalar!;
  if (s === "string" || s === "bytes") {
    for (let i = 0; i < v.length; i++) writeScalarField(w, f.number, s, parseScalar(s, v[i], `${at}[${i}]`));
    return;
  }
  // Numeric and bool lists are packed (proto3's default): one length-delimited run.
  const lenAt = w.beginLength(f.number);
  for (let i = 0; i < v.length; i++) writeScalarValue(w, s, parseScalar(s, v[i], `${at}[${i}]`));
  w.endLength(lenAt);
}

function writeMap(f: FieldInfo, v: unknown, w: ProtoWriter, at: string): void {
  if (!isObject(v)) throw wrongType(at, "a JSON object (map)", v);
  const keyType = f.mapKey!;
  for (const k of Object.keys(v)) {
    if (keyType === "string" && !k.isWellFormed())
      throw invalidArgument(`"${at}[${JSON.stringify(k)}]": a map key ${notWellFormed(k)}`);
    const entryAt = `${at}["${k}"]`;
    const value = v[k];
    if (value === null) throw invalidArgument(`"${entryAt}": a map value must not be null`);
    const lenAt = w.beginLength(f.number);
    writeScalarField(w, 1, keyType, parseMapKey(keyType, k, entryAt));
    if (f.type.message) {
      const valueAt = w.beginLength(2);
      writeMessage(f.type.message, value, w, entryAt);
      w.endLength(valueAt);
    } else {
      writeScalarField(w, 2, f.type.scalar, parseScalar(f.type.scalar, value, entryAt));
    }
    w.endLength(lenAt);
  }
}

type Scalar = number | bigint | boolean | string | Uint8Array;

function parseMapKey(t: ScalarType, k: string, at: string): Scalar {
  if (t === "string") return k;
  if (t === "bool") {
    if (k === "true") return true;
    if (k === "false") return false;
    throw invalidArgument(`"${at}": a bool map key must be "true" or "false"`);
  }
  return parseScalar(t, k, at);
}

const INT_STRING = /^-?\d+$/;
const FLOAT_STRING = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const FLOAT32_MAX = 3.4028234663852886e38;

/** Range of each integer type, as bigints. */
const INT_RANGE: Partial<Record<ScalarType, [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

/** Converts one JSON value to the JS value of scalar type `t`: 64-bit integers as bigint. */
function parseScalar(t: ScalarType, v: unknown, at: string): Scalar {
  switch (t) {
    case "string":
      if (typeof v !== "string") throw wrongType(at, "a string", v);
      if (!v.isWellFormed()) throw invalidArgument(`"${at}" ${notWellFormed(v)}`);
      return v;
    case "bool":
      if (typeof v !== "boolean") throw wrongType(at, "true or false", v);
      return v;
    case "bytes":
      if (typeof v !== "string") throw wrongType(at, "a base64 string", v);
      return decodeBase64(v, `"${at}"`);
    case "double":
    case "float": {
      let n: number;
      if (typeof v === "number") n = v;
      else if (typeof v === "string") {
        if (v === "NaN") return Number.NaN;
        if (v === "Infinity") return Number.POSITIVE_INFINITY;
        if (v === "-Infinity") return Number.NEGATIVE_INFINITY;
        if (!FLOAT_STRING.test(v)) throw wrongType(at, 'a number or "NaN", "Infinity", "-Infinity"', v);
        n = Number(v);
      } else throw wrongType(at, "a number", v);
      if (!Number.isFinite(n)) throw invalidArgument(`"${at}" is out of range for ${t}`);
      if (t === "float" && Math.abs(n) > FLOAT32_MAX)
        throw invalidArgument(`"${at}" is out of range for float`);
      return n;
    }
    default: {
      // integers
      let b: bigint;
      if (typeof v === "number") {
        if (!Number.isInteger(v)) throw invalidArgument(`"${at}" must be an integer (${t}), got ${v}`);
        b = BigInt(v);
      } else if (typeof v === "string") {
        if (!INT_STRING.test(v))
          throw invalidArgument(`"${at}" must be an integer (${t}), got ${JSON.stringify(v)}`);
        b = BigInt(v);
      } else throw wrongType(at, `an integer (${t})`, v);
      const [min, max] = INT_RANGE[t]!;
      if (b < min || b > max) throw invalidArgument(`"${at}" is out of range for ${t}`);
      return t.endsWith("64") ? b : Number(b);
    }
  }
}

function isDefault(v: Scalar): boolean {
  if (typeof v === "object") return v.length === 0;
  return v === 0 || v === 0n || v === false || v === "";
}

/** Protobuf wire type of each scalar type. */
export function wireTypeOf(t: ScalarType): number {
  switch (t) {
    case "double":
    case "fixed64":
    case "sfixed64":
      return WireType.Fixed64;
    case "float":
    case "fixed32":
    case "sfixed32":
      return WireType.Fixed32;
    case "string":
    case "bytes":
      return WireType.Bytes;
    default:
      return WireType.Varint;
  }
}

function writeScalarField(w: ProtoWriter, field: number, t: ScalarType, v: Scalar): void {
  w.tag(field, wireTypeOf(t));
  writeScalarValue(w, t, v);
}

// float32 bits through a Uint32Array over the same buffer, written out little-endian with shifts.
const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

function writeU32LE(w: ProtoWriter, v: number): void {
  w.ensure(4);
  const b = w.bytes;
  const p = w.pos;
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
  w.pos = p + 4;
}

function writeU64LE(w: ProtoWriter, v: bigint): void {
  const u = BigInt.asUintN(64, v);
  writeU32LE(w, Number(u & 0xffffffffn));
  writeU32LE(w, Number(u >> 32n));
}

function writeScalarValue(w: ProtoWriter, t: ScalarType, v: Scalar): void {
  switch (t) {
    case "string": {
      const b = utf8Encoder.encode(v as string);
      w.varint(b.length);
      w.raw(b);
      return;
    }
    case "bytes":
      w.varint((v as Uint8Array).length);
      w.raw(v as Uint8Array);
      return;
    case "bool":
      w.byte(v ? 1 : 0);
      return;
    case "double":
      w.double(v as number);
      return;
    case "float":
      f32[0] = v as number;
      writeU32LE(w, f32Bits[0]!);
      return;
    case "fixed32":
    case "sfixed32":
      writeU32LE(w, v as number);
      return;
    case "fixed64":
    case "sfixed64":
      writeU64LE(w, v as bigint);
      return;
    case "uint32":
      w.varint(v as number);
      return;
    case "int32":
      // A negative int32 is sign-extended to 64 bits on the wire (10 bytes).
      if ((v as number) >= 0) w.varint(v as number);
      else w.varint64(BigInt(v as number));
      return;
    case "sint32": {
      const n = v as number;
      w.varint(((n << 1) ^ (n >> 31)) >>> 0);
      return;
    }
    case "int64":
    case "uint64":
      w.varint64(v as bigint);
      return;
    case "sint64": {
      const n = v as bigint;
      w.varint64(BigInt.asUintN(64, (n << 1n) ^ (n >> 63n)));
      return;
    }
  }
}

// ---- binary -> JSON ---------------------------------------------------------------------------

/** Readers by nesting depth, reused across calls. */
const readers: ProtoReader[] = [];

/**
 * Decodes the binary message `info` in buf[start,end) into its proto3 JSON object (with
 * null prototypes: a map key may be "__proto__"). Throws on malformed input.
 */
export function binaryToJson(info: MessageInfo, buf: Uint8Array, start: number, end: number): JsonObject {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: JsonObject = Object.create(null);
  readMessage(info, buf, view, start, end, out, 0);
  return out;
}

function readMessage(
  info: MessageInfo,
  buf: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  out: JsonObject,
  depth: number,
): void {
  if (depth > 64) throw invalidArgument("message nesting is deeper than 64");
  const r = readerAt(depth).reset(buf, start, end);
  while (!r.done()) {
    const tag = r.tag();
    const wt = tag & 7;
    const f = info.byNumber[tag >>> 3];
    if (f === undefined) {
      r.skip(wt);
      continue;
    }
    const key = f.jsonName;
    if (f.mapKey !== undefined) {
      if (wt !== WireType.Bytes) throw badWireType(info, f, wt);
      r.bytesRange();
      const map = objectAt(out, key);
      readMapEntry(f, buf, view, r.fieldStart, r.fieldEnd, map, depth + 1);
      continue;
    }
    const msg = f.type.message;
    if (msg) {
      if (wt !== WireType.Bytes) throw badWireType(info, f, wt);
      r.bytesRange();
      if (f.repeated) {
        const item: JsonObject = Object.create(null);
        readMessage(msg, buf, view, r.fieldStart, r.fieldEnd, item, depth + 1);
        listAt(out, key).push(item);
      } else {
        // A repeated occurrence of a singular message merges into the first, as protobuf says.
        const target = objectAt(out, key);
        readMessage(msg, buf, view, r.fieldStart, r.fieldEnd, target, depth + 1);
        if (f.oneof !== undefined) clearOneof(info, f, out);
      }
      continue;
    }
    const t = f.type.scalar;
    const expected = wireTypeOf(t);
    if (f.repeated) {
      const list = listAt(out, key);
      if (wt === WireType.Bytes && expected !== WireType.Bytes) {
        r.bytesRange();
        const runEnd = r.fieldEnd;
        const after = r.pos;
        r.pos = r.fieldStart;
        r.end = runEnd;
        while (!r.done()) list.push(readScalar(t, r, view));
        r.end = end;
        r.pos = after;
      } else if (wt === expected) list.push(readScalar(t, r, view));
      else throw badWireType(info, f, wt);
      continue;
    }
    if (wt !== expected) throw badWireType(info, f, wt);
    const v = readScalar(t, r, view);
    if (f.oneof !== undefined) {
      out[key] = v;
      clearOneof(info, f, out);
    } else if (v === defaultJson(t)) delete out[key];
    else out[key] = v;
  }
  inFieldOrder(info, out);
}

/** Puts the keys of `out` in field-number order (the wire may have them in any order). */
function inFieldOrder(info: MessageInfo, out: JsonObject): void {
  const keys = Object.keys(out);
  let last = 0;
  let sorted = true;
  for (const k of keys) {
    const n = info.byJsonKey.get(k)!.number;
    if (n < last) sorted = false;
    last = n;
  }
  if (sorted) return;
  const entries = keys.map((k) => [k, out[k]] as const);
  for (const k of keys) delete out[k];
  entries.sort((a, b) => info.byJsonKey.get(a[0])!.number - info.byJsonKey.get(b[0])!.number);
  for (const [k, v] of entries) out[k] = v;
}

function readMapEntry(
  f: FieldInfo,
  buf: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  map: JsonObject,
  depth: number,
): void {
  const r = readerAt(depth).reset(buf, start, end);
  const keyType = f.mapKey!;
  let k: unknown = defaultJson(keyType);
  let v: unknown;
  let valueStart = -1;
  let valueEnd = -1;
  while (!r.done()) {
    const tag = r.tag();
    const wt = tag & 7;
    const n = tag >>> 3;
    if (n === 1 && wt === wireTypeOf(keyType)) k = readScalar(keyType, r, view);
    else if (n === 2 && f.type.message && wt === WireType.Bytes) {
      r.bytesRange();
      valueStart = r.fieldStart;
      valueEnd = r.fieldEnd;
    } else if (n === 2 && f.type.scalar && wt === wireTypeOf(f.type.scalar))
      v = readScalar(f.type.scalar, r, view);
    else r.skip(wt);
  }
  if (f.type.message) {
    const obj: JsonObject = Object.create(null);
    if (valueStart >= 0) readMessage(f.type.message, buf, view, valueStart, valueEnd, obj, depth + 1);
    v = obj;
  } else if (v === undefined) v = defaultJson(f.type.scalar!);
  map[String(k)] = v;
}

function readerAt(depth: number): ProtoReader {
  let r = readers[depth];
  if (r === undefined) {
    r = new ProtoReader();
    readers[depth] = r;
  }
  return r;
}

function objectAt(out: JsonObject, key: string): JsonObject {
  let o = out[key] as JsonObject | undefined;
  if (o === undefined) {
    o = Object.create(null) as JsonObject;
    out[key] = o;
  }
  return o;
}

function listAt(out: JsonObject, key: string): unknown[] {
  let l = out[key] as unknown[] | undefined;
  if (l === undefined) {
    l = [];
    out[key] = l;
  }
  return l;
}

/** Setting one member of a oneof clears the others. */
function clearOneof(info: MessageInfo, f: FieldInfo, out: JsonObject): void {
  for (const other of info.fields) if (other !== f && other.oneof === f.oneof) delete out[other.jsonName];
}

function readScalar(t: ScalarType, r: ProtoReader, view: DataView): Json {
  switch (t) {
    case "string": {
      r.bytesRange();
      try {
        return utf8.decode(r.buf.subarray(r.fieldStart, r.fieldEnd));
      } catch {
        throw invalidArgument("string field is not valid UTF-8");
      }
    }
    case "bytes":
      r.bytesRange();
      return r.buf.subarray(r.fieldStart, r.fieldEnd).toBase64();
    case "bool":
      return r.varint() !== 0;
    case "uint32":
      return r.varint() % 2 ** 32;
    case "int32":
      return Number(BigInt.asIntN(32, r.varint64()));
    case "sint32": {
      const n = r.varint() % 2 ** 32;
      return (n >>> 1) ^ -(n & 1);
    }
    case "int64":
      return r.varint64().toString();
    case "uint64":
      return BigInt.asUintN(64, r.varint64()).toString();
    case "sint64": {
      const n = BigInt.asUintN(64, r.varint64());
      return ((n >> 1n) ^ -(n & 1n)).toString();
    }
    case "double":
      return jsonFloat(view.getFloat64(fixed(r, 8), true));
    case "float":
      return jsonFloat(view.getFloat32(fixed(r, 4), true));
    case "fixed32":
      return view.getUint32(fixed(r, 4), true);
    case "sfixed32":
      return view.getInt32(fixed(r, 4), true);
    case "fixed64":
      return view.getBigUint64(fixed(r, 8), true).toString();
    case "sfixed64":
      return view.getBigInt64(fixed(r, 8), true).toString();
  }
}

/** Consumes an n-byte fixed-width field; returns where it starts. */
function fixed(r: ProtoReader, n: number): number {
  if (r.end - r.pos < n) throw invalidArgument("truncated fixed-width field");
  r.pos += n;
  return r.pos - n;
}

function jsonFloat(n: number): number | string {
  if (Number.isFinite(n)) return n;
  return Number.isNaN(n) ? "NaN" : n > 0 ? "Infinity" : "-Infinity";
}

function defaultJson(t: ScalarType): Json {
  switch (t) {
    case "string":
    case "bytes":
      return "";
    case "bool":
      return false;
    case "int64":
    case "uint64":
    case "sint64":
    case "fixed64":
    case "sfixed64":
      return "0";
    default:
      return 0;
  }
}

// ---- helpers ----------------------------------------------------------------------------------

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Why `s` (not well-formed UTF-16) is refused; escapes it, so the message itself is well-formed. */
function notWellFormed(s: string): string {
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    break;
  }
  const unit = s.charCodeAt(i).toString(16);
  const shown = JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
  return `must be valid Unicode, got ${shown} with a lone surrogate \\u${unit} at index ${i}: it has no UTF-8 encoding`;
}

function wrongType(at: string, expected: string, got: unknown) {
  return invalidArgument(`"${at}" must be ${expected}, got ${describe(got)}`);
}

function badWireType(info: MessageInfo, f: FieldInfo, wt: number) {
  return invalidArgument(`${info.fullName}.${f.name} has the wrong wire type ${wt}`);
}
