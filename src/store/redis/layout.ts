/**
 * How entities live in Redis: one hash per entity (the layout of the realtime Redis feature
 * stores this project follows), so that a batch job in any language can write them directly.
 *
 * ```
 * key    REDIS_KEY_PREFIX + entity_id            e.g. "fs:user:42" (the id's bytes)
 * field  feature name (UTF-8)                    e.g. "ctr_7d"
 * value  the encoded FeatureValue message        e.g. 50 80 d0 ea b6 b7 33 11 00 00 00 00 00 00 e0 3f
 *                                                     (event_time_ms 1767225600000, double_value 0.5)
 * TTL    PEXPIRE on the key (none = PERSIST)     refreshed by each SetFeatures, kept by deletes
 * ```
 *
 * A FeatureValue the server stores is canonical (src/codec/value-meta.ts): `0x50 <varint
 * event_time_ms>`, then `0x58 <varint max_age_ms>` when it has one, then its one oneof field:
 * 0x08 varint (int), 0x11 fixed64 (double), 0x1a string, 0x20 bool, 0x2a bytes, 0x32
 * float_list, 0x3a int_list, 0x42 string_list, or 0x4a window (the tiles of a windowed
 * aggregate, written by the server only). A batch job may write the oneof field alone
 * (`encodeFeatureValue` of the client package): its event time is then 0, older than any write.
 * The scripts below read the event time where the canonical layout puts it (the first byte
 * 0x50, then the varint); a value laid out otherwise counts as event time 0 there.
 *
 * A record (what the near-cache and the service work on) is built from a hash as the run of
 * canonical map entries the service writes (service.ts): `0x12 len (0x0a len name 0x12 len value)`.
 */
import { ValueField } from "../../codec/features.ts";
import { VALUE_WIRE_TYPES } from "../../codec/value.ts";
import { TAG_EVENT_TIME, TAG_MAX_AGE } from "../../codec/value-meta.ts";
import { bytesEqual, type ProtoWriter, varintSize, WireType } from "../../codec/wire.ts";

/** The key of an entity: the prefix, then the id bytes. */
export function entityKey(prefix: Uint8Array, id: Uint8Array): Buffer {
  const key = Buffer.allocUnsafe(prefix.length + id.length);
  key.set(prefix, 0);
  key.set(id, prefix.length);
  return key;
}

/** The `window` member (9, length-delimited): the server writes it, clients never do. */
const TAG_WINDOW = (ValueField.Window << 3) | WireType.Bytes;

/**
 * True when `v` is a FeatureValue this server can serve: exactly one oneof field of a known
 * number with its wire type (a window included), and at most one event time and one max age
 * (varints), in any order, exactly filling `v`. What this server writes, and what a batch job writing the layout
 * must write. A hash field written by another client that fails this is left out of answers (a
 * client decoding it would fail on the whole entity).
 */
export function isFeatureValue(v: Uint8Array): boolean {
  let pos = 0;
  let oneof = 0;
  let meta = 0; // bit 1: event time seen, bit 2: max age seen
  while (pos < v.length) {
    const tag = v[pos++]!;
    if (tag >= 0x80) return false;
    const wt = tag & 7;
    if (tag === TAG_EVENT_TIME || tag === TAG_MAX_AGE) {
      const bit = tag === TAG_EVENT_TIME ? 1 : 2;
      if ((meta & bit) !== 0) return false;
      meta |= bit;
    } else {
      if ((VALUE_WIRE_TYPES[tag >>> 3] !== wt && tag !== TAG_WINDOW) || ++oneof > 1) return false;
      if (wt === WireType.Fixed64) {
        pos += 8;
        continue;
      }
    }
    let len = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (pos >= v.length || i >= 10) return false;
      const b = v[pos++]!;
      len += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) break;
    }
    if (wt === WireType.Bytes) pos += len;
  }
  return oneof === 1 && pos === v.length;
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
 * Lua: the event time of a stored value where the canonical layout puts it (first byte 0x50,
 * then a varint; Lua numbers are doubles, exact for ms timestamps below 2^53), else 0. `false`
 * (an absent field) is 0 too.
 */
const EVENT_TIME_LUA = `
local function etime(v)
  if not v or string.byte(v, 1) ~= 80 then return 0 end
  local t, mul = 0, 1
  for i = 2, math.min(#v, 11) do
    local b = string.byte(v, i)
    t = t + (b % 128) * mul
    if b < 128 then return t end
    mul = mul * 128
  end
  return 0
end
`;

/**
 * SetFeatures as one atomic script, set-if-newer per field. KEYS[1] the entity; ARGV: replace
 * (1/0), TTL ms (0 = none), MAX_FEATURES_PER_ENTITY, then name, value pairs. A field whose
 * stored value has a newer event time than the one given keeps it (equal times: the write
 * wins); with replace, the names not given are deleted (the skipped ones are given, so kept).
 * Returns the skipped names, or an error reply `LIMIT <n>` (nothing written). HMGET, HDEL and
 * HSET in chunks: Lua's unpack() is bounded by its C stack.
 */
export const SET_SCRIPT = `${EVENT_TIME_LUA}
local key = KEYS[1]
local limit = tonumber(ARGV[3])
local n = (#ARGV - 3) / 2
local names = {}
for i = 4, #ARGV, 2 do names[#names + 1] = ARGV[i] end
local stored = {}
for i = 1, n, 1000 do
  local got = redis.call('HMGET', key, unpack(names, i, math.min(i + 999, n)))
  for j = 1, #got do stored[i + j - 1] = got[j] end
end
local replace = ARGV[1] == '1'
if replace then
  if n > limit then return redis.error_reply('LIMIT ' .. n) end
else
  local count = redis.call('HLEN', key)
  for i = 1, n do if not stored[i] then count = count + 1 end end
  if count > limit then return redis.error_reply('LIMIT ' .. count) end
end
local skipped = {}
local set = {}
for i = 1, n do
  local v = ARGV[3 + 2 * i]
  if stored[i] and etime(stored[i]) > etime(v) then
    skipped[#skipped + 1] = names[i]
  else
    set[#set + 1] = names[i]
    set[#set + 1] = v
  end
end
if replace then
  local given = {}
  for i = 1, n do given[names[i]] = true end
  local had = redis.call('HKEYS', key)
  local gone = {}
  for i = 1, #had do if not given[had[i]] then gone[#gone + 1] = had[i] end end
  for i = 1, #gone, 1000 do
    redis.call('HDEL', key, unpack(gone, i, math.min(i + 999, #gone)))
  end
end
for i = 1, #set, 1000 do
  redis.call('HSET', key, unpack(set, i, math.min(i + 999, #set)))
end
if n > 0 then
  if ARGV[2] == '0' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ARGV[2]) end
end
return skipped
`;

/** ARGV of UPDATE_SCRIPT before the names, and per name. */
export const UPDATE_HEAD_ARGS = 4;
export const UPDATE_ARGS_PER_NAME = 5;
/** UPDATE_SCRIPT flags: the expected value is absent / given; the new one is set / deleted / left. */
export const EXPECT_ABSENT = "0";
export const EXPECT_VALUE = "1";
export const NEW_SET = "s";
export const NEW_DELETE = "d";
export const NEW_LEAVE = "u";

/**
 * Compare-and-set of some fields of one entity (UpdateFeatures), as one atomic script. KEYS[1]
 * the entity; ARGV: TTL ms, default TTL ms, MAX_FEATURES_PER_ENTITY, n, then per name five:
 *
 * ```
 * name  expect-flag ('0' absent, '1' value)  expected value ('' when absent)
 *       new-flag ('s' set, 'd' delete, 'u' leave)  new value ('' unless set)
 * ```
 *
 * If any field's value is not the expected one, nothing is written and the current values are
 * returned (an array, nil for absent: the caller computes again from them without another
 * read). Else the changes are applied and 1 is returned; the TTL: > 0 sets it, else an entity
 * that did not exist gets the default TTL (if > 0), else the expiry is kept. An error reply
 * `LIMIT <n>` (nothing written) past the feature limit.
 */
export const UPDATE_SCRIPT = `
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local dttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local cur = {}
local conflict = false
for i = 1, n do
  local b = 5 * i
  local v = redis.call('HGET', key, ARGV[b])
  cur[i] = v
  if ARGV[b + 1] == '1' then
    if v ~= ARGV[b + 2] then conflict = true end
  elseif v then conflict = true end
end
if conflict then return cur end
local existed = redis.call('EXISTS', key) == 1
local delta = 0
for i = 1, n do
  local f = ARGV[5 * i + 3]
  if f == 's' and not cur[i] then delta = delta + 1 elseif f == 'd' and cur[i] then delta = delta - 1 end
end
if delta > 0 then
  local count = redis.call('HLEN', key) + delta
  if count > limit then return redis.error_reply('LIMIT ' .. count) end
end
for i = 1, n do
  local b = 5 * i
  local f = ARGV[b + 3]
  if f == 's' then redis.call('HSET', key, ARGV[b], ARGV[b + 4])
  elseif f == 'd' then redis.call('HDEL', key, ARGV[b]) end
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl)
elseif not existed and dttl > 0 then redis.call('PEXPIRE', key, dttl) end
return 1
`;

/** The SCAN MATCH pattern of the keys starting with `prefix`: its bytes glob-escaped, then `*`. */
export function prefixPattern(prefix: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(prefix.length * 2 + 1);
  let n = 0;
  for (const b of prefix) {
    // * ? [ ] \\ are special to Redis' glob matcher (stringmatchlen); a backslash makes them literal.
    if (b === 0x2a || b === 0x3f || b === 0x5b || b === 0x5d || b === 0x5c) out[n++] = 0x5c;
    out[n++] = b;
  }
  out[n++] = 0x2a;
  return out.subarray(0, n);
}

/**
 * Where the value of feature `name` lies in the record b[start,end) (canonical map entries):
 * its start in `at[0]` and end in `at[1]`; false when the record has no such feature.
 */
export function findInRecord(
  b: Uint8Array,
  start: number,
  end: number,
  name: Uint8Array,
  at: Int32Array,
): boolean {
  let p = start;
  while (p < end) {
    // entry: 0x12 <len> 0x0a <name len> <name> 0x12 <value len> <value>
    p = varintEnd(b, p + 1, at);
    const entryEnd = p + at[0]!;
    p = varintEnd(b, p + 1, at);
    const nameStart = p;
    const nameEnd = p + at[0]!;
    p = varintEnd(b, nameEnd + 1, at);
    if (bytesEqual(b, nameStart, nameEnd, name, 0, name.length)) {
      at[1] = p + at[0]!;
      at[0] = p;
      return true;
    }
    p = entryEnd;
  }
  return false;
}

/** Reads the varint at b[p] into `out[0]`; answers where it ends. */
function varintEnd(b: Uint8Array, p: number, out: Int32Array): number {
  let v = 0;
  let mul = 1;
  for (;;) {
    const x = b[p++]!;
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (x < 0x80) break;
  }
  out[0] = v;
  return p;
}
