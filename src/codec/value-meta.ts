/**
 * The time metadata of stored feature values, read from their bytes without decoding them.
 *
 * A value the server stores is canonical: its event time first, its default max age next (when it
 * has one), then its one oneof field (FeatureValue, proto/featurestore/v1/featurestore.proto):
 *
 * ```
 * 0x50 <varint event_time_ms>  [0x58 <varint max_age_ms>]  <oneof field>
 * ```
 *
 * so the event time is at a fixed place (the Redis scripts read it there too). A value written
 * by another program may lack it or hold it later: `valueEventTime` then walks the fields, and a
 * value without one has event time 0 ("unknown": older than anything, stale under any max age).
 */
import { WireType } from "./wire.ts";

/** FeatureValue.event_time_ms (field 10, varint) and max_age_ms (field 11, varint) tags. */
export const TAG_EVENT_TIME = (10 << 3) | WireType.Varint; // 0x50
export const TAG_MAX_AGE = (11 << 3) | WireType.Varint; // 0x58

/**
 * Reads the non-negative varint at b[at] (at most 2^53, as event times and ages are) and leaves
 * its end in `end[0]`; -1 when it is malformed or does not end before `stop`.
 */
function varintAt(b: Uint8Array, at: number, stop: number, end: Int32Array): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10 && at + i < stop; i++) {
    const x = b[at + i]!;
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (x < 0x80) {
      end[0] = at + i + 1;
      return v;
    }
  }
  return -1;
}

const END = new Int32Array(1);

/**
 * The value of varint field `tag` in the FeatureValue b[start,end), or 0 when absent. Canonical
 * values answer from their first bytes; others are walked field by field (malformed: 0).
 */
function metaField(b: Uint8Array, start: number, end: number, tag: number): number {
  let p = start;
  while (p < end) {
    const t = b[p]!;
    if (t >= 0x80) return 0; // a field number above 15: not one of ours, and rare; give up
    p++;
    const wt = t & 7;
    if (t === tag) {
      const v = varintAt(b, p, end, END);
      return Math.max(v, 0);
    }
    if (wt === WireType.Varint) {
      if (varintAt(b, p, end, END) < 0) return 0;
      p = END[0]!;
    } else if (wt === WireType.Fixed64) p += 8;
    else if (wt === WireType.Fixed32) p += 4;
    else if (wt === WireType.Bytes) {
      const len = varintAt(b, p, end, END);
      if (len < 0) return 0;
      p = END[0]! + len;
    } else return 0;
  }
  return 0;
}

/** Event time (ms since the epoch) of the FeatureValue b[start,end); 0 when it has none. */
export function valueEventTime(b: Uint8Array, start: number, end: number): number {
  return metaField(b, start, end, TAG_EVENT_TIME);
}

/** Default max age (ms) of the FeatureValue b[start,end); 0 when it has none. */
export function valueMaxAge(b: Uint8Array, start: number, end: number): number {
  // Canonical: after the event time, or nothing. Other layouts are walked.
  return metaField(b, start, end, TAG_MAX_AGE);
}

/**
 * When the first feature of the record b[start,end) (canonical map entries, see
 * src/service/service.ts) goes stale by its own max age: the least event_time + max_age over the
 * values that have a max age, in ms since the epoch; 0 when none has one. Stores keep it beside
 * each record so that a plain read checks one number, not every value.
 */
export function recordFreshUntil(b: Uint8Array, start: number, end: number): number {
  let least = 0;
  let p = start;
  while (p < end) {
    // entry: 0x12 <len> 0x0a <name len> <name> 0x12 <value len> <value>
    const entryLen = varintAt(b, p + 1, end, END);
    if (entryLen < 0) return least;
    const entryEnd = END[0]! + entryLen;
    const nameLen = varintAt(b, END[0]! + 1, entryEnd, END);
    if (nameLen < 0) return least;
    const valueTagAt = END[0]! + nameLen;
    const valueLen = varintAt(b, valueTagAt + 1, entryEnd, END);
    if (valueLen >= 0) {
      const vs = END[0]!;
      const ve = vs + valueLen;
      const maxAge = valueMaxAge(b, vs, ve);
      if (maxAge > 0) {
        const until = valueEventTime(b, vs, ve) + maxAge;
        if (least === 0 || until < least) least = until;
      }
    }
    p = entryEnd;
  }
  return least;
}
