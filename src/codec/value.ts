/**
 * One feature value on its own: the encoded FeatureValue message, as the Redis layout stores it
 * in each hash field (src/store/redis/layout.ts). A TypeScript batch job writing entities
 * straight into Redis encodes each value with `encodeFeatureValue`; `decodeFeatureValue` reads
 * one back.
 */
import {
  type FeatureInput,
  type FeatureValue,
  readFeatureValue,
  ValueField,
  writeFeatureValue,
} from "./features.ts";
import { ProtoReader, ProtoWriter, WireType } from "./wire.ts";

/** The wire type of each FeatureValue field, by field number (undefined: not a FeatureValue field). */
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

/** The FeatureValue message of `value` (one oneof field), typed as the client's setFeatures types it. */
export function encodeFeatureValue(value: FeatureInput): Uint8Array {
  const w = new ProtoWriter(64);
  writeFeatureValue(w, "value", value);
  return w.finish();
}

/** The typed value of an encoded FeatureValue message; throws FeatureStoreError on bad bytes. */
export function decodeFeatureValue(bytes: Uint8Array): FeatureValue {
  return readFeatureValue(new ProtoReader().reset(bytes), 0, bytes.length);
}
