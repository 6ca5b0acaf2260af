/**
 * A protobuf message as a tree of wire fields, for structure-aware mutation: a valid message
 * encoded by protobuf-es is parsed into fields (nested where the schema says a field holds a
 * message), fields are inserted, deleted, duplicated, renumbered, given another wire type, an
 * overlong tag, a lying length, a new payload, and the tree is encoded back to bytes.
 *
 * Nothing here assumes the result is valid: field numbers go up to 2^32 (the wire allows
 * tags up to 2^35 in a 5-byte varint; protobuf stops at 2^29-1), wire types 3, 4, 6 and 7 are
 * written with whatever bytes follow, and varints may be padded past 10 bytes.
 */
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";

/** One field as it sits on the wire. */
export interface WireField {
  /** Field number; 0 and anything above 2^29-1 are illegal but writable. */
  no: number;
  /** Wire type 0..7 (3, 4, 6, 7: groups and undefined types, written as tag then `value`). */
  wt: number;
  /** The payload: raw bytes after the tag (varint, fixed, or the contents of a length-delimited field), or nested fields. */
  value: Uint8Array | WireField[];
  /** Extra continuation bytes in the tag varint (an overlong encoding). */
  tagPad?: number;
  /** Extra continuation bytes in the length varint of a wire type 2 field. */
  lenPad?: number;
  /** Added to the length written for a wire type 2 field: a length that lies. */
  lenDelta?: number;
}

/** Which fields of a message hold messages, by field number: the shape a parse follows. */
export interface Shape {
  [fieldNo: number]: Shape | undefined;
}

const shapes = new Map<string, Shape>();

/** The nesting shape of a generated message: map entries become `{1: key, 2: value}` messages. */
export function shapeOf(desc: DescMessage): Shape {
  const known = shapes.get(desc.typeName);
  if (known) return known;
  const shape: Shape = {};
  shapes.set(desc.typeName, shape);
  for (const f of desc.fields) {
    if (f.fieldKind === "message") shape[f.number] = shapeOf(f.message);
    else if (f.fieldKind === "list" && f.listKind === "message") shape[f.number] = shapeOf(f.message);
    else if (f.fieldKind === "map")
      shape[f.number] = { 2: f.mapKind === "message" ? shapeOf(f.message) : undefined };
  }
  return shape;
}

// ---- varints -------------------------------------------------------------------------------

/** Writes `v` (0 <= v < 2^64, bigint or a safe number) as a varint with `pad` extra continuation bytes. */
export function varint(v: number | bigint, pad = 0): number[] {
  let x = BigInt(v);
  const out: number[] = [];
  do {
    const low = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? low | 0x80 : low);
  } while (x > 0n);
  if (pad > 0) {
    out[out.length - 1]! |= 0x80;
    for (let i = 1; i < pad; i++) out.push(0x80);
    out.push(0);
  }
  return out;
}

/** Reads a varint as a bigint at `at`; returns [value, next] or null when truncated or longer than 10 bytes. */
function readVarint(b: Uint8Array, at: number): [bigint, number] | null {
  let v = 0n;
  for (let i = 0; i < 10; i++) {
    if (at >= b.length) return null;
    const byte = b[at++]!;
    v |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return [v, at];
  }
  return null;
}

// ---- parse and encode ------------------------------------------------------------------------

/**
 * Parses `bytes` into wire fields, descending into length-delimited fields that `shape` says
 * hold messages. Throws on bytes that are not a well-formed sequence of fields (the inputs
 * are protobuf-es output, so that is a bug in this file).
 */
export function parseWire(bytes: Uint8Array, shape: Shape | undefined): WireField[] {
  const fields: WireField[] = [];
  let at = 0;
  while (at < bytes.length) {
    const t = readVarint(bytes, at);
    if (t === null) throw new Error("parseWire: truncated tag");
    const tag = t[0];
    at = t[1];
    const no = Number(tag >> 3n);
    const wt = Number(tag & 7n);
    let end: number;
    if (wt === 0) {
      const v = readVarint(bytes, at);
      if (v === null) throw new Error("parseWire: truncated varint");
      end = v[1];
    } else if (wt === 1) end = at + 8;
    else if (wt === 5) end = at + 4;
    else if (wt === 2) {
      const l = readVarint(bytes, at);
      if (l === null) throw new Error("parseWire: truncated length");
      at = l[1];
      end = at + Number(l[0]);
      const inner = shape?.[no];
      const payload = bytes.slice(at, end);
      fields.push({ no, wt, value: inner ? parseWire(payload, inner) : payload });
      at = end;
      continue;
    } else throw new Error(`parseWire: wire type ${wt}`);
    fields.push({ no, wt, value: bytes.slice(at, end) });
    at = end;
  }
  return fields;
}

/** Encodes wire fields to bytes, honouring every oddity they carry. */
export function encodeWire(fields: readonly WireField[]): Uint8Array {
  const out: number[] = [];
  writeFields(fields, out);
  return Uint8Array.from(out);
}

function writeFields(fields: readonly WireField[], out: number[]): void {
  for (const f of fields) {
    for (const b of varint(BigInt(f.no) * 8n + BigInt(f.wt & 7), f.tagPad ?? 0)) out.push(b);
    const payload = Array.isArray(f.value) ? encodeWire(f.value) : f.value;
    if (f.wt === 2) {
      const len = Math.max(0, payload.length + (f.lenDelta ?? 0));
      for (const b of varint(len, f.lenPad ?? 0)) out.push(b);
    }
    for (const b of payload) out.push(b);
  }
}

/** Every message node of a tree in pre-order, the root first: what a mutation picks from. */
export function messageNodes(root: WireField[]): WireField[][] {
  const nodes: WireField[][] = [];
  const visit = (m: WireField[]) => {
    nodes.push(m);
    for (const f of m) if (Array.isArray(f.value)) visit(f.value);
  };
  visit(root);
  return nodes;
}

/** A deep copy (mutations edit in place). */
export function cloneWire(fields: readonly WireField[]): WireField[] {
  return fields.map((f) => ({ ...f, value: Array.isArray(f.value) ? cloneWire(f.value) : f.value }));
}

// ---- strict wire-type check ------------------------------------------------------------------

/** The wire type protobuf writes for a scalar. */
export function scalarWireType(t: ScalarType): number {
  switch (t) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 1;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return 5;
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return 2;
    default:
      return 0;
  }
}

function fieldWireTypes(f: DescField): number[] {
  switch (f.fieldKind) {
    case "scalar":
      return [scalarWireType(f.scalar)];
    case "enum":
      return [0];
    case "list":
      if (f.listKind === "scalar") {
        const wt = scalarWireType(f.scalar);
        return wt === 2 ? [2] : [wt, 2];
      }
      return f.listKind === "enum" ? [0, 2] : [2];
    default:
      return [2];
  }
}

/**
 * True when `bytes` is a strictly well-formed `desc` at every depth: each known field has a
 * wire type its type allows, packed runs of floats and doubles are a multiple of 4 or 8 bytes,
 * packed varint runs end exactly at their length, no varint is longer than 10 bytes, no wire
 * type is 3, 4, 6 or 7.
 *
 * protobuf-es reads some malformed input instead of refusing it: it reads an int64 field
 * sent with wire type 2 as a varint, and a packed float run of 9 bytes reads 12, running into
 * the next field. Conformant parsers treat the first as an unknown field and refuse the
 * second, so the equality oracle applies only where every reading agrees.
 */
export function wellFormed(desc: DescMessage, bytes: Uint8Array): boolean {
  let at = 0;
  while (at < bytes.length) {
    const t = readVarint(bytes, at);
    if (t === null) return false;
    at = t[1];
    const no = Number(t[0] >> 3n);
    const wt = Number(t[0] & 7n);
    const field = desc.fields.find((f) => f.number === no);
    if (field !== undefined && !fieldWireTypes(field).includes(wt)) return false;
    if (wt === 0) {
      const v = readVarint(bytes, at);
      if (v === null) return false;
      at = v[1];
    } else if (wt === 1) at += 8;
    else if (wt === 5) at += 4;
    else if (wt === 2) {
      const l = readVarint(bytes, at);
      if (l === null) return false;
      const end = l[1] + Number(l[0]);
      if (end > bytes.length) return false;
      const payload = bytes.subarray(l[1], end);
      at = end;
      if (field !== undefined && !payloadWellFormed(field, payload)) return false;
    } else return false;
    if (at > bytes.length) return false;
  }
  return true;
}

/** The payload of a length-delimited known field. */
function payloadWellFormed(field: DescField, payload: Uint8Array): boolean {
  switch (field.fieldKind) {
    case "message":
      return wellFormed(field.message, payload);
    case "map":
      return mapEntryWellFormed(field, payload);
    case "list":
      if (field.listKind === "message") return wellFormed(field.message, payload);
      if (field.listKind === "enum") return packedVarints(payload);
      return packedScalars(field.scalar, payload);
    default:
      return true;
  }
}

/** A packed run (or a string / bytes element) of a repeated scalar. */
function packedScalars(t: ScalarType, payload: Uint8Array): boolean {
  const wt = scalarWireType(t);
  if (wt === 2) return true;
  if (wt === 1) return payload.length % 8 === 0;
  if (wt === 5) return payload.length % 4 === 0;
  return packedVarints(payload);
}

function packedVarints(payload: Uint8Array): boolean {
  let at = 0;
  while (at < payload.length) {
    const v = readVarint(payload, at);
    if (v === null) return false;
    at = v[1];
  }
  return true;
}

function mapEntryWellFormed(field: DescField & { fieldKind: "map" }, bytes: Uint8Array): boolean {
  let at = 0;
  while (at < bytes.length) {
    const t = readVarint(bytes, at);
    if (t === null) return false;
    at = t[1];
    const no = Number(t[0] >> 3n);
    const wt = Number(t[0] & 7n);
    if (no === 1 && wt !== scalarWireType(field.mapKey)) return false;
    if (no === 2 && field.mapKind === "message" && wt !== 2) return false;
    if (wt === 0) {
      const v = readVarint(bytes, at);
      if (v === null) return false;
      at = v[1];
    } else if (wt === 1) at += 8;
    else if (wt === 5) at += 4;
    else if (wt === 2) {
      const l = readVarint(bytes, at);
      if (l === null) return false;
      const end = l[1] + Number(l[0]);
      if (end > bytes.length) return false;
      if (no === 2 && field.mapKind === "message" && !wellFormed(field.message, bytes.subarray(l[1], end)))
        return false;
      at = end;
    } else return false;
    if (at > bytes.length) return false;
  }
  return true;
}

/** Lower-case hex, for reproducers. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}
