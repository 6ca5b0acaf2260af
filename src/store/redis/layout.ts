/**
 * How entities live in Redis: one hash per entity (the layout of the realtime Redis feature
 * stores this project follows), so that a batch job in any language can write them directly.
 *
 * ```
 * key    REDIS_KEY_PREFIX + entity_id            e.g. "fs:user:42" (the id's UTF-8 bytes)
 * field  feature name (UTF-8)                    e.g. "ctr_7d"
 * value  the encoded FeatureValue message        e.g. 11 00 00 00 00 00 00 e0 3f  (double_value 0.5)
 * TTL    PEXPIRE on the key (none = PERSIST)     refreshed by each SetFeatures, kept by deletes
 * ```
 *
 * A FeatureValue is one protobuf field (see proto/featurestore/v1/featurestore.proto): 0x08
 * varint (int), 0x11 fixed64 (double), 0x1a string, 0x20 bool, 0x2a bytes, 0x32 float_list,
 * 0x3a int_list, 0x42 string_list. `encodeFeatureValue` / `decodeFeatureValue` in the client
 * package produce and read exactly these bytes.
 *
 * A record (what the near-cache and the service work on) is built from a hash as the run of
 * canonical map entries the service writes (service.ts): `0x12 len (0x0a len name 0x12 len value)`.
 */
import { VALUE_WIRE_TYPES } from "../../codec/value.ts";
import { type ProtoWriter, varintSize, WireType } from "../../codec/wire.ts";

/** The key of an entity: the prefix, then the id bytes. */
export function entityKey(prefix: Uint8Array, id: Uint8Array): Buffer {
  const key = Buffer.allocUnsafe(prefix.length + id.length);
  key.set(prefix, 0);
  key.set(id, prefix.length);
  return key;
}

/**
 * True when `v` is one FeatureValue field of a known number with its wire type, exactly
 * filling `v`: what this server writes, and what a batch job writing the layout must write.
 * A hash field written by another client that fails this is left out of answers (a client
 * decoding it would fail on the whole entity).
 */
export function isFeatureValue(v: Uint8Array): boolean {
  if (v.length < 2 || v[0]! >= 0x80) return false;
  const wt = v[0]! & 7;
  if (VALUE_WIRE_TYPES[v[0]! >>> 3] !== wt) return false;
  if (wt === WireType.Fixed64) return v.length === 9;
  let pos = 1;
  let len = 0;
  let mul = 1;
  for (;;) {
    if (pos >= v.length || pos > 10) return false;
    const b = v[pos++]!;
    len += (b & 0x7f) * mul;
    mul *= 128;
    if (b < 0x80) break;
  }
  return wt === WireType.Varint ? pos === v.length : pos + len === v.length;
}

/**
 * The record of a hash, from the flat [name, value, name, value, ...] reply of HGETALL;
 * fields whose value is not a FeatureValue are skipped and counted in `skipped`.
 */
export function recordOf(
  flat: readonly Uint8Array[],
  w: ProtoWriter,
): { record: Uint8Array; skipped: number } {
  w.reset();
  let skipped = 0;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!;
    const value = flat[i + 1]!;
    if (name.length === 0 || !isFeatureValue(value)) {
      skipped++;
      continue;
    }
    w.byte((2 << 3) | WireType.Bytes);
    w.varint(1 + varintSize(name.length) + name.length + 1 + varintSize(value.length) + value.length);
    w.bytesField(1, name, 0, name.length);
    w.bytesField(2, value, 0, value.length);
  }
  return { record: w.finish(), skipped };
}

/**
 * SetFeatures as one atomic script. KEYS[1] the entity; ARGV: replace (1/0), TTL ms (0 = none),
 * MAX_FEATURES_PER_ENTITY, then name, value pairs. A merge counts the names the hash does not
 * have yet only when it could pass the limit. Returns 1, or an error reply `LIMIT <n>` (nothing
 * written). HSET in chunks: Lua's unpack() is bounded by its C stack.
 */
export const SET_SCRIPT = `
local key = KEYS[1]
local limit = tonumber(ARGV[3])
local n = (#ARGV - 3) / 2
if ARGV[1] == '1' then
  if n > limit then return redis.error_reply('LIMIT ' .. n) end
  redis.call('DEL', key)
else
  local had = redis.call('HLEN', key)
  if had + n > limit then
    local count = had
    for i = 4, #ARGV, 2 do
      if redis.call('HEXISTS', key, ARGV[i]) == 0 then count = count + 1 end
    end
    if count > limit then return redis.error_reply('LIMIT ' .. count) end
  end
end
for i = 4, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if n > 0 then
  if ARGV[2] == '0' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ARGV[2]) end
end
return 1
`;
