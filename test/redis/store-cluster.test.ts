/**
 * The RedisStore's writes against a real Redis Cluster (3 masters, 1 replica each), without the
 * service: the scripts routed by slot, concurrent compare-and-set increments from two stores
 * acknowledged by a replica (REDIS_WAIT_REPLICAS=1), and a prefix dropped on every master.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { type RedisCluster, startCluster } from "./harness.ts";
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
  rawHash,
} from "./store-fixture.ts";

let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
}, 90_000);
afterAll(async () => {
  await closeStores();
  await cluster.stop();
});
afterEach(async () => {
  await closeStores();
  for (const m of await cluster.masters()) await m.cli("FLUSHALL");
});

const open = (overrides: Parameters<typeof openStore>[1] = {}) =>
  openStore({ clusterNodes: cluster.seeds.split(",") }, overrides);

/** Keys on every master, summed. */
async function dbsize(): Promise<number> {
  let n = 0;
  for (const m of await cluster.masters()) n += Number(await m.cli("DBSIZE"));
  return n;
}

const T = 1_767_225_600_000;

describe("Cluster: writes routed by slot", () => {
  test("set-if-newer holds on every master", async () => {
    const s = await open();
    const ids = Array.from({ length: 30 }, (_, i) => b(`sn${i}`));
    await Promise.all(ids.map((id) => s.setFeatures(id, [b("a"), intValue(T + 1, 1)], false, 0)));
    const skipped = await Promise.all(
      ids.map((id) => s.setFeatures(id, [b("a"), intValue(T, 2), b("z"), intValue(T, 3)], false, 0)),
    );
    expect(skipped.every((list) => names(list).join() === "a")).toBe(true);
    for (const id of ids) expect(intOf((await rawHash(s, id)).get("a")!)).toBe(1);
  });

  test("50 concurrent increments from two stores of each of 6 keys sum exactly, each update acknowledged by a replica", async () => {
    const a = await open({ waitReplicas: 1, waitTimeoutMs: 2000 });
    const c = await open({ waitReplicas: 1, waitTimeoutMs: 2000 });
    const ids = Array.from({ length: 6 }, (_, i) => b(`ctr${i}`));
    const all: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      for (const id of ids) all.push((i % 2 === 0 ? a : c).update(id, [b("n")], increment(), 0, 0));
      if (i % 7 === 6) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    for (const id of ids) {
      expect(intOf((await rawHash(a, id)).get("n")!)).toBe(50);
      expect(intOf((await entity(c, id))!.get("n")!)).toBe(50);
    }
  });

  test("50 concurrent increments of one key from one store sum exactly", async () => {
    const s = await open();
    await Promise.all(Array.from({ length: 50 }, () => s.update(b("one"), [b("n")], increment(), 0, 0)));
    expect(intOf((await rawHash(s, b("one"))).get("n")!)).toBe(50);
  });
});

describe("Cluster: dropPrefix", () => {
  test("scans every master and removes exactly the prefixed keys in bounded steps", async () => {
    const s = await open();
    const key = (v: string, e: string) =>
      Buffer.concat([
        Buffer.from([0xff, 0x76]),
        Buffer.from("set\0"),
        Buffer.from(v),
        Buffer.from([0]),
        Buffer.from(e),
      ]);
    const write = (id: Uint8Array) => s.setFeatures(id, [b("a"), intValue(T, 1)], false, 0);
    await Promise.all(Array.from({ length: 600 }, (_, i) => write(key("3", `e${i}`))));
    await Promise.all(Array.from({ length: 60 }, (_, i) => write(key("33", `e${i}`))));
    await Promise.all(Array.from({ length: 40 }, (_, i) => write(b(`plain${i}`))));
    // Every master holds some of the dropped keys.
    for (const m of await cluster.masters()) expect(Number(await m.cli("DBSIZE"))).toBeGreaterThan(100);
    expect(await dbsize()).toBe(700);

    const drop = s.dropPrefix(
      Buffer.concat([Buffer.from([0xff, 0x76]), Buffer.from("set\0"), Buffer.from("3\0")]),
    );
    let removed = 0;
    let steps = 0;
    while (!drop.done) {
      const n = await drop.step(25);
      expect(n).toBeLessThanOrEqual(25);
      removed += n;
      steps++;
      expect(steps).toBeLessThan(10_000);
    }
    expect(removed).toBe(600);
    expect(await dbsize()).toBe(100);
    expect(await exists(s, keyOf(key("33", "e5")))).toBe(true);
    expect(await exists(s, keyOf(b("plain5")))).toBe(true);
  });
});
