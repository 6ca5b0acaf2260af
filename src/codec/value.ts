/**
 * One feature value on its own: the encoded FeatureValue message, as the Redis layout stores it
 * in each hash field (src/store/redis/layout.ts). A TypeScript batch job writing entities
 * straight into Redis encodes each value with `encodeFeatureValue` (in the order the server
 * stores values: event time, max age, then the value); `decodeFeatureValue` reads one back.
 */
import {
  type FeatureInput,
  type FeatureValue,
  msOption,
  readFeatureValue,
  ValueField,
  writeFeatureValue,
  writeValueMeta,
} from "./features.ts";
import { ProtoReader, ProtoWriter, WireType } from "./wire.ts";

/**
 * The wire type of each oneof member a write may carry, by field number (undefined: not one).
 * `window` (9) is written by the server only, and event_time_ms (10) and max_age_ms (11) are not
 * members: none of them is here.
 */
export const VALUE_WIRE_TYPES: readonly (number | undefined)[] = (() => {
  const t: (number | undefined)[] = [];
  t[ValueField.Int] = WireType.Varint;
  t[ValueField.Double] = WireType.Fixed64;
  t[ValueField.String] = WireType.Bytes;
  t[ValueField.Bool] = WireType.Varint;
  t[ValueField.Bytes] = WireType.Bytes;
  t[ValueField.FloatList] = WireType.Bytes;
  t[ValueField.IntList] = WireType.Bytes;
  t[ValueField.StringList] = WireType.Bytes;
  return t;
})();

/** The time metadata of one encoded value. */
export interface ValueMeta {
  /** When the value was true, ms since the epoch; 0 or absent: none (the server stamps its clock on write). */
  eventTimeMs?: number;
  /** The feature's default max age, ms; 0 or absent: none. */
  maxAgeMs?: number;
}

/**
 * The FeatureValue message of `value`, typed as the client's setFeatures types it, in the order
 * the server stores it (proto/featurestore/v1/featurestore.proto, FeatureValue):
 *
 * ```
 * 0x50 <varint event_time_ms>   when eventTimeMs > 0
 * 0x58 <varint max_age_ms>      when maxAgeMs > 0
 * <the one oneof field>
 * ```
 * A value without an event time is "unknown" to the server: older than any write, stale under
 * any max age. Throws INVALID_ARGUMENT for a value or time it cannot encode.
 */
export function encodeFeatureValue(value: FeatureInput, meta?: ValueMeta): Uint8Array {
  const w = new ProtoWriter(64);
  if (meta !== undefined)
    writeValueMeta(w, msOption("eventTimeMs", meta.eventTimeMs), msOption("maxAgeMs", meta.maxAgeMs));
  writeFeatureValue(w, "value", value);
  return w.finish();
}

/** The typed value of an encoded FeatureValue message; throws FeatureStoreError on bad bytes. */
export function decodeFeatureValue(bytes: Uint8Array): FeatureValue {
  return readFeatureValue(new ProtoReader().reset(bytes), 0, bytes.length);
}
