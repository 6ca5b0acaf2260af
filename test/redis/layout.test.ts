/**
 * The byte-level helpers of the Redis layout and the combining of updates, without Redis: which
 * hash values are served, the SCAN pattern of a prefix, a feature found in a record, and the
 * computes of one combined round.
 */
import { describe, expect, test } from "bun:test";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { findInRecord, isFeatureValue, prefixPattern, recordOf } from "../../src/store/redis/layout.ts";
import { CombinedUpdate, KeyQueue, type QueuedUpdate } from "../../src/store/redis/update.ts";
import { b, intOf, intValue } from "./store-fixture.ts";

const bytes = (...x: number[]) => new Uint8Array(x);

describe("isFeatureValue", () => {
  test("accepts canonical values, with and without a max age, and a lone oneof field", () => {
    expect(isFeatureValue(intValue(1_767_225_600_000, 5))).toBe(true);
    expect(isFeatureValue(intValue(1_767_225_600_000, 5, 60_000))).toBe(true);
    expect(isFeatureValue(bytes(0x08, 0x05))).toBe(true);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x11, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f))).toBe(true);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x1a, 0x02, 0x61, 0x62))).toBe(true);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x4a, 0x02, 0x08, 0x01))).toBe(true); // a window
  });

  test("accepts the event time after the oneof field (another program's order)", () => {
    expect(isFeatureValue(bytes(0x08, 0x07, 0x50, 0x7f))).toBe(true);
  });

  test("rejects two oneof fields, a repeated event time, a truncated field, unknown fields, text", () => {
    expect(isFeatureValue(bytes(0x08, 0x05, 0x20, 0x01))).toBe(false);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x50, 0x02, 0x08, 0x05))).toBe(false);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x1a, 0x05, 0x61))).toBe(false);
    expect(isFeatureValue(bytes(0x50, 0x01, 0x11, 0, 0))).toBe(false);
    expect(isFeatureValue(bytes(0x50, 0x01))).toBe(false);
    expect(isFeatureValue(bytes(0x48, 0x01, 0x08, 0x05))).toBe(false);
    expect(isFeatureValue(new TextEncoder().encode("not a value"))).toBe(false);
    expect(isFeatureValue(bytes())).toBe(false);
  });
});

describe("prefixPattern", () => {
  test("escapes * ? [ ] \\ and ends with *; other bytes, 0x00 and 0xFF included, are kept", () => {
    const p = prefixPattern(Buffer.from([0xff, 0x76, 0x2a, 0x3f, 0x5b, 0x5d, 0x5c, 0x00, 0x61]));
    expect([...p]).toEqual([
      0xff, 0x76, 0x5c, 0x2a, 0x5c, 0x3f, 0x5c, 0x5b, 0x5c, 0x5d, 0x5c, 0x5c, 0x00, 0x61, 0x2a,
    ]);
  });
});

describe("findInRecord", () => {
  test("finds each feature's value in a record built from a hash, and misses the absent", () => {
    const { record } = recordOf(
      [b("a"), intValue(1, 1), b("long_name"), intValue(2, 300), b("ab"), intValue(3, 3)],
      new ProtoWriter(64),
    );
    const at = new Int32Array(2);
    expect(findInRecord(record, 0, record.length, b("long_name"), at)).toBe(true);
    expect(intOf(record.subarray(at[0]!, at[1]!))).toBe(300);
    expect(findInRecord(record, 0, record.length, b("ab"), at)).toBe(true);
    expect(intOf(record.subarray(at[0]!, at[1]!))).toBe(3);
    expect(findInRecord(record, 0, record.length, b("b"), at)).toBe(false);
    expect(findInRecord(record, 0, record.length, b("long"), at)).toBe(false);
  });
});

function queued(
  names: string[],
  compute: QueuedUpdate["compute"],
  ttlMs = 0,
): QueuedUpdate & { result: Promise<void> } {
  let resolve!: () => void;
  let reject!: (e: FeatureStoreError) => void;
  const result = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  result.catch(() => {});
  return { names: names.map(b), compute, ttlMs, defaultTtlMs: 0, resolve, reject, result };
}

describe("combined updates", () => {
  test("one round reads the union of the names; each compute sees what the ones before it answered", () => {
    const add = (cur: (Uint8Array | null)[]) => cur.map((v) => intValue(1, (v === null ? 0 : intOf(v)) + 1));
    const c = new CombinedUpdate([
      queued(["x"], add),
      queued(["y", "x"], add),
      queued(["x"], () => [undefined]),
    ]);
    expect(c.names.map((n) => new TextDecoder().decode(n))).toEqual(["x", "y"]);
    expect(c.apply([intValue(1, 10), null])).toBe(true);
    expect(intOf(c.next[0]!)).toBe(12);
    expect(intOf(c.next[1]!)).toBe(1);
    expect(c.changed).toEqual([true, true]);
    // A conflict: applied again from the values found.
    expect(c.apply([intValue(1, 20), intValue(1, 5)])).toBe(true);
    expect(intOf(c.next[0]!)).toBe(22);
    expect(intOf(c.next[1]!)).toBe(6);
  });

  test("a compute that throws, or answers the wrong count, is rejected and leaves the round", async () => {
    const bad = queued(["x"], () => {
      throw new FeatureStoreError(Code.FailedPrecondition, "x is a string");
    });
    const wrong = queued(["x"], () => []);
    const good = queued(["x"], () => [null]);
    const c = new CombinedUpdate([bad, wrong, good]);
    expect(c.apply([intValue(1, 1)])).toBe(true);
    expect(c.live).toEqual([good]);
    expect(c.next).toEqual([null]);
    expect((await bad.result.catch((e: FeatureStoreError) => e))?.code).toBe(Code.FailedPrecondition);
    expect((await wrong.result.catch((e: FeatureStoreError) => e))?.code).toBe(Code.Internal);
    const alone = new CombinedUpdate([queued(["x"], () => [])]);
    expect(alone.apply([null])).toBe(false);
  });

  test("a round takes the head of the queue sharing its TTLs; after a limit failure each runs alone", () => {
    const q = new KeyQueue(b("id"), Buffer.from("fs:id"));
    const u = Array.from({ length: 6 }, (_, i) => queued(["a"], () => [], i === 3 ? 100 : 0));
    for (const x of u.slice(0, 5)) q.push(x);
    expect(q.take()).toEqual([u[0]!, u[1]!, u[2]!]);
    expect(q.take()).toEqual([u[3]!]);
    q.retryAlone([u[0]!, u[2]!]); // a combined round failed on the feature limit
    expect(q.take()).toEqual([u[0]!]);
    expect(q.take()).toEqual([u[2]!]);
    q.push(u[5]!);
    expect(q.take()).toEqual([u[4]!, u[5]!]);
    expect(q.empty).toBe(true);
  });
});
