/**
 * Versioned feature sets: where a version's entities and a set's pointer live in the store.
 *
 * ```
 * entity E of version V of set S   0xFF 'v' S 0x00 V 0x00 E
 * the pointer of set S             0xFF 's' S           a record: "current", "previous"
 *                                                       (string_value), "dropping" (string_list)
 * ```
 *
 * 0xFF never starts valid UTF-8 and entity ids must be valid UTF-8, so no entity a client names
 * can reach these keys. The pointer is an ordinary record: durable in SQLite, shared and kept
 * coherent by the near-cache's tracking over Redis, changed atomically (a read-modify-write on a
 * local store, a compare-and-set on Redis). Publishing rewrites the pointer only; a reader
 * resolves it once per request, so one BatchGet never mixes versions.
 */
import { ValueField } from "../codec/features.ts";
import { Code, FeatureStoreError, invalidArgument } from "../codec/status.ts";
import { ProtoReader, ProtoWriter, utf8Slice, WireType } from "../codec/wire.ts";
import { canonicalValue } from "./ops.ts";

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const encoder = new TextEncoder();

/** Checks a feature set or version name: INVALID_ARGUMENT naming the field otherwise. */
export function checkSetName(value: string, field: string): void {
  if (!NAME.test(value))
    throw invalidArgument(
      `${field} must be 1 to 64 characters of [A-Za-z0-9_.-]; got ${JSON.stringify(value)}`,
    );
}

/** Key prefix of the entities of version `version` of set `set` (names already checked). */
export function versionPrefix(set: string, version: string): Uint8Array {
  return encoder.encode(`\u0000v${set}\u0000${version}\u0000`).map((b, i) => (i === 0 ? 0xff : b));
}

/** Key of the pointer record of set `set`. */
export function pointerKey(set: string): Uint8Array {
  return encoder.encode(`\u0000s${set}`).map((b, i) => (i === 0 ? 0xff : b));
}

/** The pointer's fields, in the order `pointerValues` and `readPointer` use. */
export const POINTER_NAMES: Uint8Array[] = ["current", "previous", "dropping"].map((s) => encoder.encode(s));

/** A feature set's state (FeatureSetInfo). */
export interface Pointer {
  current: string;
  previous: string;
  dropping: string[];
}

/** The pointer from its stored values (null: absent), in POINTER_NAMES order. */
export function readPointer(values: readonly (Uint8Array | null)[]): Pointer {
  return {
    current: stringOf(values[0] ?? null),
    previous: stringOf(values[1] ?? null),
    dropping: listOf(values[2] ?? null),
  };
}

function stringOf(v: Uint8Array | null): string {
  if (v === null) return "";
  const r = new ProtoReader().reset(v);
  let s = "";
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((ValueField.String << 3) | WireType.Bytes)) {
      r.bytesRange();
      s = utf8Slice(v, r.fieldStart, r.fieldEnd);
    } else r.skip(tag & 7);
  }
  return s;
}

function listOf(v: Uint8Array | null): string[] {
  if (v === null) return [];
  const r = new ProtoReader().reset(v);
  const out: string[] = [];
  while (!r.done()) {
    const tag = r.tag();
    if (tag === ((ValueField.StringList << 3) | WireType.Bytes)) {
      r.bytesRange();
      const l = new ProtoReader().reset(v, r.fieldStart, r.fieldEnd);
      out.length = 0;
      while (!l.done()) {
        const t = l.tag();
        if (t === ((1 << 3) | WireType.Bytes)) {
          l.bytesRange();
          out.push(utf8Slice(v, l.fieldStart, l.fieldEnd));
        } else l.skip(t & 7);
      }
    } else r.skip(tag & 7);
  }
  return out;
}

/** The stored values of pointer `p` at time `now`, in POINTER_NAMES order (null: delete). */
export function pointerValues(p: Pointer, now: number): (Uint8Array | null)[] {
  const w = new ProtoWriter(128);
  const str = (s: string): Uint8Array | null => {
    if (s === "") return null;
    w.reset();
    w.stringField(ValueField.String, s);
    return canonicalValue(now, 0, w.view());
  };
  let dropping: Uint8Array | null = null;
  if (p.dropping.length > 0) {
    w.reset();
    const at = w.beginLength(ValueField.StringList);
    for (const s of p.dropping) w.stringField(1, s);
    w.endLength(at);
    dropping = canonicalValue(now, 0, w.view());
  }
  return [str(p.current), str(p.previous), dropping];
}

/** The changes PublishVersion, RollbackVersion and DropVersion make to a pointer. */
export const pointerChange = {
  publish(p: Pointer, set: string, version: string): Pointer {
    if (p.dropping.includes(version))
      throw new FeatureStoreError(
        Code.FailedPrecondition,
        `version "${version}" of feature set "${set}" is being dropped; publish another version`,
      );
    if (p.current === version) return p;
    return { current: version, previous: p.current, dropping: p.dropping };
  },
  rollback(p: Pointer, set: string): Pointer {
    if (p.previous === "")
      throw new FeatureStoreError(
        Code.FailedPrecondition,
        `feature set "${set}" has no previous version to roll back to`,
      );
    return { current: p.previous, previous: p.current, dropping: p.dropping };
  },
  drop(p: Pointer, set: string, version: string): Pointer {
    if (p.current === version)
      throw new FeatureStoreError(
        Code.FailedPrecondition,
        `version "${version}" is the published version of feature set "${set}"; publish or roll back first`,
      );
    if (p.dropping.includes(version)) return p;
    return {
      current: p.current,
      previous: p.previous === version ? "" : p.previous,
      dropping: [...p.dropping, version],
    };
  },
  dropped(p: Pointer, version: string): Pointer {
    return { current: p.current, previous: p.previous, dropping: p.dropping.filter((v) => v !== version) };
  },
};

/** Writes a FeatureSetInfo message for `set` in state `p`. */
export function writeSetInfo(out: ProtoWriter, set: string, p: Pointer): void {
  out.stringField(1, set);
  if (p.current !== "") out.stringField(2, p.current);
  if (p.previous !== "") out.stringField(3, p.previous);
  for (const v of p.dropping) out.stringField(4, v);
}
