/**
 * The RedisStore's writes against a real standalone redis-server, without the service:
 * set-if-newer per field in the SET script, compare-and-set updates (concurrent increments that
 * sum exactly, conflicts that make the compute run again, failures that stay with their update,
 * the TTL rules, WAIT and the command timeout), dropping a key prefix in bounded steps, and the
 * freshness bound a load computes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { SIDE } from "../../src/store/cache-front.ts";
import { MAX_CAS_ROUNDS } from "../../src/store/redis/update.ts";
import { PENDING } from "../../src/store/types.ts";
import { type RedisNode, startRedis } from "./harness.ts";
import {
  b,
  closeStores,
  entity,
  exists,
  increment,
  intOf,
  intValue,
  keyOf,
  names,
  openStore,
  pttl,
  rawHash,
  varintFields,
} from "./store-fixture.ts";

let redis: RedisNode;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await closeStores();
  await redis.stop();
});
afterEach(async () => {
  await closeStores();
  await redis.cli("FLUSHALL");
});

const open = (overrides: Parameters<typeof openStore>[1] = {}) => openStore({ url: redis.url }, overrides);

async function failure(p: Promise<unknown>): Promise<FeatureStoreError> {
  try {
    await p;
  } catch (err) {
    return FeatureStoreError.from(err);
  }
  throw new Error("expected a failure");
}

const T = 1_767_225_600_000; // 2026-01-01, ms

describe("setFeatures: set-if-newer per field", () => {
  test("an older write of a feature is skipped, reported, and the stored value stays byte for byte", async () => {
    const s = await open();
    const id = b("e1");
    expect(await s.setFeatures(id, [b("a"), intValue(T + 10, 1)], false, 0)).toEqual([]);
    const skipped = await s.setFeatures(id, [b("a"), intValue(T + 9, 2), b("c"), intValue(T, 3)], false, 0);
    expect(names(skipped)).toEqual(["a"]);
    const h = await rawHash(s, id);
    expect([...h.get("a")!]).toEqual([...intValue(T + 10, 1)]);
    expect(intOf(h.get("c")!)).toBe(3);
  });

  test("an equal event time overwrites (ties: the write wins)", async () => {
    const s = await open();
    const id = b("e2");
    await s.setFeatures(id, [b("a"), intValue(T, 1)], false, 0);
    expect(await s.setFeatures(id, [b("a"), intValue(T, 2)], false, 0)).toEqual([]);
    expect(intOf((await rawHash(s, id)).get("a")!)).toBe(2);
  });

  test("a newer write replaces the stored value", async () => {
    const s = await open();
    const id = b("e3");
    await s.setFeatures(id, [b("a"), intValue(T, 1)], false, 0);
    expect(await s.setFeatures(id, [b("a"), intValue(T + 1, 2)], false, 0)).toEqual([]);
    expect(varintFields((await rawHash(s, id)).get("a")!).get(10)).toBe(T + 1);
  });

  test("a value without an event time, written by redis-cli, is older than any write", async () => {
    const s = await open();
    await redis.cli("HSET", "fs:e4", "a", "\x08\x07");
    expect(intOf((await entity(s, b("e4")))!.get("a")!)).toBe(7); // served as it is
    expect(await s.setFeatures(b("e4"), [b("a"), intValue(1, 8)], false, 0)).toEqual([]);
    expect(intOf((await rawHash(s, b("e4"))).get("a")!)).toBe(8);
  });

  test("a stored value whose event time is not first counts as time 0 in the script", async () => {
    const s = await open();
    // 0x08 0x07 0x50 0x7f: a valid FeatureValue, its event time (127) after the oneof field.
    await redis.cli("HSET", "fs:e5", "a", "\x08\x07\x50\x7f");
    expect(await s.setFeatures(b("e5"), [b("a"), intValue(1, 9)], false, 0)).toEqual([]);
    expect(intOf((await rawHash(s, b("e5"))).get("a")!)).toBe(9);
  });

  test("replace deletes the names not given and keeps the skipped ones with their stored value", async () => {
    const s = await open();
    const id = b("r1");
    await s.setFeatures(
      id,
      [b("old"), intValue(T + 5, 1), b("gone"), intValue(T, 2), b("fresh"), intValue(T, 3)],
      false,
      0,
    );
    const skipped = await s.setFeatures(
      id,
      [b("old"), intValue(T, 10), b("fresh"), intValue(T + 1, 30)],
      true,
      0,
    );
    expect(names(skipped)).toEqual(["old"]);
    const h = await rawHash(s, id);
    expect([...h.keys()].sort()).toEqual(["fresh", "old"]);
    expect(intOf(h.get("old")!)).toBe(1);
    expect(intOf(h.get("fresh")!)).toBe(30);
  });

  test("replace with every name skipped keeps the entity as it was, less the names not given", async () => {
    const s = await open();
    const id = b("r2");
    await s.setFeatures(id, [b("a"), intValue(T + 5, 1), b("b"), intValue(T, 2)], false, 0);
    expect(names(await s.setFeatures(id, [b("a"), intValue(T, 9)], true, 0))).toEqual(["a"]);
    const h = await rawHash(s, id);
    expect([...h.keys()]).toEqual(["a"]);
    expect(intOf(h.get("a")!)).toBe(1);
  });

  test("MAX_FEATURES_PER_ENTITY still holds: only new names count, nothing is written past it", async () => {
    const s = await open({ maxFeaturesPerEntity: 2 });
    const id = b("lim");
    await s.setFeatures(id, [b("a"), intValue(T, 1), b("b"), intValue(T, 2)], false, 0);
    expect(await s.setFeatures(id, [b("a"), intValue(T + 1, 5)], false, 0)).toEqual([]);
    const err = await failure(
      s.setFeatures(id, [b("a"), intValue(T + 2, 6), b("c"), intValue(T, 1)], false, 0),
    );
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.message).toContain("MAX_FEATURES_PER_ENTITY");
    expect(intOf((await rawHash(s, id)).get("a")!)).toBe(5);
    const replace = await failure(
      s.setFeatures(id, [b("x"), intValue(T, 1), b("y"), intValue(T, 1), b("z"), intValue(T, 1)], true, 0),
    );
    expect(replace.code).toBe(Code.ResourceExhausted);
    expect([...(await rawHash(s, id)).keys()].sort()).toEqual(["a", "b"]);
  });

  test("a merge of 2,500 fields (HMGET and HSET in chunks) reports exactly the older ones", async () => {
    const s = await open();
    const id = b("big");
    const first: Uint8Array[] = [];
    for (let i = 0; i < 2500; i++) first.push(b(`f${i}`), intValue(T + (i % 2), i));
    await s.setFeatures(id, first, false, 0);
    const second: Uint8Array[] = [];
    for (let i = 0; i < 2500; i++) second.push(b(`f${i}`), intValue(T, i + 1));
    const skipped = await s.setFeatures(id, second, false, 0);
    expect(skipped.length).toBe(1250);
    const h = await rawHash(s, id);
    expect(intOf(h.get("f0")!)).toBe(1);
    expect(intOf(h.get("f1")!)).toBe(1);
  });

  test("the TTL is set by a write (PEXPIRE) and removed by one without (PERSIST)", async () => {
    const s = await open();
    const id = b("ttl");
    await s.setFeatures(id, [b("a"), intValue(T, 1)], false, 60_000);
    expect(await pttl(s, id)).toBeGreaterThan(50_000);
    await s.setFeatures(id, [b("a"), intValue(T + 1, 1)], false, 0);
    expect(await pttl(s, id)).toBe(-1);
  });

  test("after a write this server does not serve the old record from its near-cache", async () => {
    const s = await open();
    const id = b("nc");
    await s.setFeatures(id, [b("a"), intValue(T, 1)], false, 0);
    expect(intOf((await entity(s, id))!.get("a")!)).toBe(1);
    s.invalidate = () => {}; // even with every invalidation lost
    await s.setFeatures(id, [b("a"), intValue(T + 1, 2)], false, 0);
    expect(intOf((await entity(s, id))!.get("a")!)).toBe(2);
  });
});

describe("update: compare-and-set", () => {
  test("50 concurrent increments of one key from one store sum exactly, in a few combined rounds", async () => {
    const s = await open();
    const id = b("hot");
    const before = s.stats.updateRounds;
    await Promise.all(Array.from({ length: 50 }, () => s.update(id, [b("n")], increment(), 0, 0)));
    expect(intOf((await rawHash(s, id)).get("n")!)).toBe(50);
    expect(s.stats.updateRounds - before).toBeLessThanOrEqual(2);
  });

  test("50 increments arriving one turn after another from one store sum exactly", async () => {
    const s = await open();
    const id = b("hot2");
    const all: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      all.push(s.update(id, [b("n")], increment(), 0, 0));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(intOf((await rawHash(s, id)).get("n")!)).toBe(50);
  });

  test("50 concurrent increments from two stores over one Redis sum exactly", async () => {
    const a = await open();
    const c = await open();
    const id = b("shared");
    // Both near-caches hold the entity first, so that the first rounds read stale copies too.
    await a.setFeatures(id, [b("n"), intValue(T, 0)], false, 0);
    await entity(a, id);
    await entity(c, id);
    const all: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      all.push((i % 2 === 0 ? a : c).update(id, [b("n")], increment(), 0, 0));
      if (i % 5 === 4) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(intOf((await rawHash(a, id)).get("n")!)).toBe(50);
    expect(intOf((await entity(c, id))!.get("n")!)).toBe(50);
  });

  test("a change by another client between the read and the CAS makes compute run again on the value found", async () => {
    const s = await open();
    const id = b("cas");
    await s.setFeatures(id, [b("n"), intValue(T, 1)], false, 0);
    expect(intOf((await entity(s, id))!.get("n")!)).toBe(1); // cached
    s.invalidate = () => {}; // the near-cache keeps the old value: the read will be stale
    await redis.cli("HSET", "fs:cas", "n", "\x08\x05");
    const seen: number[] = [];
    await s.update(
      id,
      [b("n")],
      ([v]) => {
        seen.push(intOf(v!));
        return [intValue(T + 1, intOf(v!) + 1)];
      },
      0,
      0,
    );
    expect(seen).toEqual([1, 5]);
    expect(s.stats.updateConflicts).toBe(1);
    expect(intOf((await rawHash(s, id)).get("n")!)).toBe(6);
  });

  test("updates of one key run in call order", async () => {
    const s = await open();
    const id = b("order");
    const digit =
      (d: number) =>
      ([v]: (Uint8Array | null)[]) => [intValue(T, (v == null ? 0 : intOf(v)) * 10 + d)];
    await Promise.all([1, 2, 3, 4].map((d) => s.update(id, [b("n")], digit(d), 0, 0)));
    expect(intOf((await rawHash(s, id)).get("n")!)).toBe(1234);
  });

  test("a compute that throws fails only its own update; the others of its round are applied", async () => {
    const s = await open();
    const id = b("throws");
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        s.update(
          id,
          [b("n")],
          i === 3
            ? () => {
                throw new FeatureStoreError(Code.FailedPrecondition, "n is not a list");
              }
            : increment(),
          0,
          0,
        ),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(results.map((_, i) => (i === 3 ? "rejected" : "fulfilled")));
    const err = (results[3] as PromiseRejectedResult).reason as FeatureStoreError;
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.message).toBe("n is not a list");
    expect(intOf((await rawHash(s, id)).get("n")!)).toBe(9);
  });

  test("compute answers null to delete a feature and undefined to leave it; several names change atomically", async () => {
    const s = await open();
    const id = b("multi");
    await s.setFeatures(
      id,
      [b("a"), intValue(T, 1), b("b"), intValue(T, 2), b("c"), intValue(T, 3)],
      false,
      0,
    );
    const seen: (number | null)[] = [];
    await s.update(
      id,
      [b("a"), b("b"), b("d")],
      (cur) => {
        for (const v of cur) seen.push(v === null ? null : intOf(v));
        return [null, undefined, intValue(T, 4)];
      },
      0,
      0,
    );
    expect(seen).toEqual([1, 2, null]);
    const h = await rawHash(s, id);
    expect([...h.keys()].sort()).toEqual(["b", "c", "d"]);
    expect(intOf(h.get("b")!)).toBe(2);
  });

  test("combined updates of different names each see the values their predecessors left", async () => {
    const s = await open();
    const id = b("mixed");
    const sums: number[] = [];
    await Promise.all([
      s.update(id, [b("x")], increment(), 0, 0),
      s.update(id, [b("y"), b("x")], increment(), 0, 0),
      s.update(
        id,
        [b("x"), b("y")],
        (cur) => {
          sums.push(intOf(cur[0]!) + intOf(cur[1]!));
          return [undefined, undefined];
        },
        0,
        0,
      ),
    ]);
    expect(sums.at(-1)).toBe(3);
    const h = await rawHash(s, id);
    expect(intOf(h.get("x")!)).toBe(2);
    expect(intOf(h.get("y")!)).toBe(1);
  });

  test("TTL: ttlMs > 0 sets it; 0 keeps the entity's expiry, or none; a new entity gets defaultTtlMs", async () => {
    const s = await open();
    await s.update(b("t1"), [b("n")], increment(), 0, 5000);
    const fresh = await pttl(s, b("t1"));
    expect(fresh).toBeGreaterThan(0);
    expect(fresh).toBeLessThanOrEqual(5000);
    await s.update(b("t1"), [b("n")], increment(), 0, 90_000);
    expect(await pttl(s, b("t1"))).toBeLessThanOrEqual(5000); // kept, not the default

    await s.setFeatures(b("t2"), [b("n"), intValue(T, 1)], false, 0);
    await s.update(b("t2"), [b("n")], increment(), 0, 5000);
    expect(await pttl(s, b("t2"))).toBe(-1); // existed without expiry: still none

    await s.setFeatures(b("t3"), [b("n"), intValue(T, 1)], false, 600_000);
    await s.update(b("t3"), [b("n")], increment(), 1000, 5000);
    const set = await pttl(s, b("t3"));
    expect(set).toBeGreaterThan(0);
    expect(set).toBeLessThanOrEqual(1000);

    await s.update(b("t4"), [b("n")], increment(), 0, 0);
    expect(await pttl(s, b("t4"))).toBe(-1);
  });

  test("an update that leaves everything and gives no TTL writes nothing", async () => {
    const s = await open();
    const before = s.stats.updateRounds;
    await s.update(b("noop"), [b("n")], () => [undefined], 0, 5000);
    expect(s.stats.updateRounds).toBe(before);
    expect(await exists(s, keyOf(b("noop")))).toBe(false);
  });

  test("past MAX_FEATURES_PER_ENTITY an update fails RESOURCE_EXHAUSTED alone, its round-mates applied", async () => {
    const s = await open({ maxFeaturesPerEntity: 2 });
    const id = b("ulim");
    await s.setFeatures(id, [b("a"), intValue(T, 0)], false, 0);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        i === 2
          ? s.update(id, [b("b"), b("c")], () => [intValue(T, 1), intValue(T, 1)], 0, 0)
          : s.update(id, [b("a")], increment(), 0, 0),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(results.map((_, i) => (i === 2 ? "rejected" : "fulfilled")));
    const err = (results[2] as PromiseRejectedResult).reason as FeatureStoreError;
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.message).toContain("MAX_FEATURES_PER_ENTITY");
    const h = await rawHash(s, id);
    expect([...h.keys()]).toEqual(["a"]);
    expect(intOf(h.get("a")!)).toBe(5);
  });

  test(`a key changed by another writer before every CAS fails UNAVAILABLE after ${MAX_CAS_ROUNDS} rounds, naming the contention`, async () => {
    const s = await open();
    const id = b("fought");
    // Another writer gets in before each of our scripts: the store's connection, patched to
    // send a change of the field ahead of every EVALSHA.
    const link = s.connection;
    const send = link.send.bind(link);
    let changes = 0;
    link.send = (key, readonly, args) => {
      if (args[0] !== "EVALSHA" && args[0] !== "EVAL") return send(key, readonly, args);
      return send(key, false, ["HSET", key, "n", `other ${++changes}`]).then(() => send(key, readonly, args));
    };
    let calls = 0;
    const err = await failure(
      s.update(
        id,
        [b("n")],
        () => {
          calls++;
          return [intValue(T, calls)];
        },
        0,
        0,
      ),
    );
    expect(err.code).toBe(Code.Unavailable);
    expect(err.message).toContain("contention");
    expect(calls).toBe(MAX_CAS_ROUNDS);
    expect(s.stats.updateConflicts).toBe(MAX_CAS_ROUNDS);
    expect((await rawHash(s, id)).get("n")!.toString()).toBe(`other ${MAX_CAS_ROUNDS}`);
  });

  test("after an update this server serves the new value, even with every invalidation lost", async () => {
    const s = await open();
    const id = b("seen");
    await s.setFeatures(id, [b("n"), intValue(T, 1)], false, 0);
    expect(intOf((await entity(s, id))!.get("n")!)).toBe(1);
    s.invalidate = () => {};
    await s.update(id, [b("n")], increment(), 0, 0);
    expect(intOf((await entity(s, id))!.get("n")!)).toBe(2);
  });

  test("REDIS_WAIT_REPLICAS without a replica: an update is refused UNAVAILABLE, not acknowledged", async () => {
    const s = await open({ waitReplicas: 1, waitTimeoutMs: 50 });
    const err = await failure(s.update(b("w"), [b("n")], increment(), 0, 0));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.message).toContain("REDIS_WAIT_REPLICAS");
  });

  test("a Redis that does not answer fails an update UNAVAILABLE within REDIS_COMMAND_TIMEOUT_MS", async () => {
    const frozen = await startRedis();
    try {
      const s = await openStore({ url: frozen.url }, { commandTimeoutMs: 200 });
      frozen.signal("SIGSTOP");
      const started = performance.now();
      const err = await failure(s.update(b("z"), [b("n")], increment(), 0, 0));
      expect(err.code).toBe(Code.Unavailable);
      expect(err.message).toContain("REDIS_COMMAND_TIMEOUT_MS");
      expect(performance.now() - started).toBeLessThan(2000);
      frozen.signal("SIGCONT");
      await closeStores();
    } finally {
      frozen.signal("SIGCONT");
      await frozen.stop();
    }
  });

  test("the update script survives a SCRIPT FLUSH (NOSCRIPT: sent again in full)", async () => {
    const s = await open();
    await s.update(b("sf"), [b("n")], increment(), 0, 0);
    await redis.cli("SCRIPT", "FLUSH");
    await s.update(b("sf"), [b("n")], increment(), 0, 0);
    expect(intOf((await rawHash(s, b("sf"))).get("n")!)).toBe(2);
  });
});

/** Feature-set style key bytes: 0xFF 'v' <set> 0x00 <version> 0x00 <entity>. */
function versionKey(set: string, version: string, entity: string): Uint8Array {
  return Buffer.concat([
    Buffer.from([0xff, 0x76]),
    Buffer.from(set),
    Buffer.from([0]),
    Buffer.from(version),
    Buffer.from([0]),
    Buffer.from(entity),
  ]);
}
function versionPrefix(set: string, version: string): Uint8Array {
  return Buffer.concat([
    Buffer.from([0xff, 0x76]),
    Buffer.from(set),
    Buffer.from([0]),
    Buffer.from(version),
    Buffer.from([0]),
  ]);
}

describe("dropPrefix", () => {
  test("removes exactly the keys under the prefix, at most max per step, until done", async () => {
    const s = await open();
    const v = (e: string) => intValue(T, e.length);
    const write = (id: Uint8Array) => s.setFeatures(id, [b("a"), v("x")], false, 0);
    await Promise.all(Array.from({ length: 500 }, (_, i) => write(versionKey("ctr", "1", `e${i}`))));
    await Promise.all(Array.from({ length: 50 }, (_, i) => write(versionKey("ctr", "10", `e${i}`))));
    await Promise.all(Array.from({ length: 50 }, (_, i) => write(versionKey("ctr2", "1", `e${i}`))));
    await write(b("plain"));
    await redis.cli("SET", "other:\xff\x76ctr", "x"); // outside REDIS_KEY_PREFIX
    const cached = versionKey("ctr", "1", "e7");
    expect((await entity(s, cached))!.size).toBe(1);

    const drop = s.dropPrefix(versionPrefix("ctr", "1"));
    let removed = 0;
    let steps = 0;
    while (!drop.done) {
      const n = await drop.step(7);
      expect(n).toBeLessThanOrEqual(7);
      removed += n;
      steps++;
      expect(steps).toBeLessThan(10_000);
    }
    expect(removed).toBe(500);
    expect(steps).toBeGreaterThanOrEqual(500 / 7);
    expect(await drop.step(7)).toBe(0);
    expect(Number(await redis.cli("DBSIZE"))).toBe(102);
    expect(await exists(s, keyOf(versionKey("ctr", "10", "e3")))).toBe(true);
    expect(await exists(s, keyOf(versionKey("ctr2", "1", "e3")))).toBe(true);
    expect(await exists(s, keyOf(b("plain")))).toBe(true);
    // The near-cache lets go of what was dropped, whether or not Redis says so.
    expect(await entity(s, cached)).toBeNull();
  });

  test("the prefix is matched as bytes: glob characters in it are literal", async () => {
    const s = await open();
    const ids = ["k*1", "k*2", "kx1", "k[ab]\\?1", "ka\\?1", "k[ab]\\x1", "k?1"];
    for (const id of ids) await s.setFeatures(b(id), [b("a"), intValue(T, 1)], false, 0);
    for (const [prefix, gone] of [
      ["k*", ["k*1", "k*2"]],
      ["k[ab]\\?", ["k[ab]\\?1"]],
      ["k?", ["k?1"]],
    ] as const) {
      const drop = s.dropPrefix(b(prefix));
      let removed = 0;
      while (!drop.done) removed += await drop.step(100);
      expect(removed).toBe(gone.length);
    }
    const left: string[] = [];
    for (const id of ids) if (await exists(s, keyOf(b(id)))) left.push(id);
    expect(left).toEqual(["kx1", "ka\\?1", "k[ab]\\x1"]);
  });

  test("a prefix with nothing under it is done after scanning, having removed nothing", async () => {
    const s = await open();
    await s.setFeatures(b("x"), [b("a"), intValue(T, 1)], false, 0);
    const drop = s.dropPrefix(versionPrefix("none", "1"));
    let removed = 0;
    while (!drop.done) removed += await drop.step(1000);
    expect(removed).toBe(0);
    expect(await exists(s, keyOf(b("x")))).toBe(true);
  });
});

describe("freshUntil", () => {
  test("a record loaded from Redis carries the least event time + max age of its values", async () => {
    const s = await open();
    const id = b("fresh");
    await s.setFeatures(
      id,
      [b("a"), intValue(T, 1, 500), b("b"), intValue(T - 1000, 2, 1200), b("c"), intValue(T - 10_000, 3)],
      false,
      0,
    );
    expect(s.find(id, 0, id.length)).toBe(PENDING);
    await s.loaded();
    const h = s.find(id, 0, id.length);
    expect(h).toBeGreaterThanOrEqual(0);
    expect(s.freshUntil(h)).toBe(T + 200);
    // Again from the near-cache.
    const again = s.find(id, 0, id.length);
    expect(again).not.toBe(SIDE);
    expect(s.freshUntil(again)).toBe(T + 200);
  });

  test("a record without a max age has freshUntil 0", async () => {
    const s = await open();
    const id = b("ageless");
    await s.setFeatures(id, [b("a"), intValue(T, 1)], false, 0);
    await entity(s, id);
    const h = s.find(id, 0, id.length);
    expect(s.freshUntil(h)).toBe(0);
  });

  test("a record too large for the near-cache, served beside it, carries its freshUntil too", async () => {
    const s = await open({ cache: { maxEntries: 100, maxBytes: 1 << 20, shardCount: 1, maxEntryBytes: 64 } });
    const id = b("large");
    const fields: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) fields.push(b(`feature_${i}`), intValue(T, i, 1000 + i));
    await s.setFeatures(id, fields, false, 0);
    expect(s.find(id, 0, id.length)).toBe(PENDING);
    await s.loaded();
    const h = s.find(id, 0, id.length);
    expect(h).toBe(SIDE);
    expect(s.freshUntil(h)).toBe(T + 1000);
  });
});
