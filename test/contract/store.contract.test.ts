/**
 * The store contract: every backend (backends.ts: memory, SQLite with a large and a tiny cache,
 * Redis standalone with a large and a tiny near-cache, a Redis Cluster) runs the same tests
 * through the service's five methods. The durable ones also run the restart tests (for Redis: a
 * new store over the same Redis, as a restarted or second server).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Method } from "../../src/codec/frame.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { codeOf } from "../codes.ts";
import { BACKENDS, harness, stopBackends } from "./backends.ts";

afterAll(stopBackends);

for (const backend of BACKENDS) {
  describe(`store contract: ${backend.name}`, () => {
    const { clock, fresh } = harness(backend);

    test("a set entity reads back with every value type intact", async () => {
      const { fs } = await fresh();
      const features = {
        i: 42,
        big: 2n ** 60n,
        d: { double: 0.25 },
        s: "Zoë 🚀",
        b: true,
        bytes: new Uint8Array([0, 255]),
        emb: new Float32Array([0.5, -1]),
        ids: new BigInt64Array([1n, -2n]),
        tags: ["a", "b"],
      };
      await fs.setFeatures("u", features);
      const r = await fs.getFeatures("u");
      expect(r.found).toBe(true);
      expect({ ...r.features }).toEqual({ ...features, d: 0.25 });
    });

    test("merge keeps other names and overwrites named ones; replace drops the rest", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1, b: 2 });
      await fs.setFeatures("u", { b: 20, c: 30 });
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ a: 1, b: 20, c: 30 });
      await fs.setFeatures("u", { z: 9 }, { replace: true });
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ z: 9 });
    });

    test("a projection returns the named features and lists the absent ones as missing", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1, b: "x", c: true });
      const r = await fs.getFeatures("u", ["c", "nope", "a"]);
      expect({ ...r.features }).toEqual({ a: 1, c: true });
      expect(r.missing).toEqual(["nope"]);
      expect(await fs.getFeatures("ghost", ["a"])).toEqual({
        entityId: "ghost",
        found: false,
        features: {},
        missing: ["a"],
        stale: [],
        aggregates: [],
        readTimeMs: 0,
      });
    });

    // Redis keeps its own clock: its TTLs are tested in real time in test/redis/redis-store.test.ts.
    test.skipIf(!backend.clocked)(
      "an entity expires after its TTL; deleting names keeps the expiry",
      async () => {
        const { fs } = await fresh();
        await fs.setFeatures("t", { a: 1, b: 2 }, { ttlMs: 1000 });
        await fs.setFeatures("forever", { a: 1 });
        clock.t += 600;
        expect(await fs.deleteFeatures("t", ["b"])).toBe(true);
        clock.t += 399;
        expect({ ...(await fs.getFeatures("t")).features }).toEqual({ a: 1 });
        clock.t += 2;
        expect((await fs.getFeatures("t")).found).toBe(false);
        expect((await fs.getFeatures("forever")).found).toBe(true);
      },
    );

    test("delete of names, then of the entity; a second delete reports nothing deleted", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1, b: 2 });
      expect(await fs.deleteFeatures("u", ["a", "zz"])).toBe(true);
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ b: 2 });
      expect(await fs.deleteFeatures("u", ["zz"])).toBe(false);
      expect(await fs.deleteFeatures("u")).toBe(true);
      expect((await fs.getFeatures("u")).found).toBe(false);
      expect(await fs.deleteFeatures("u")).toBe(false);
    });

    test("an absent entity, once written, is found (the cached absence is invalidated)", async () => {
      const { fs } = await fresh();
      expect((await fs.getFeatures("late")).found).toBe(false);
      await fs.setFeatures("late", { a: 1 });
      expect((await fs.getFeatures("late")).features.a).toBe(1);
    });

    test("BatchSet then BatchGet keep request order and count hits and misses", async () => {
      const { fs } = await fresh();
      const items = Array.from({ length: 50 }, (_, i) => ({ entityId: `e${i}`, features: { v: i } }));
      expect(await fs.batchSet(items)).toBe(50);
      const ids = ["e49", "nobody", "e0", "e7", "e0"];
      const r = await fs.batchGet(ids);
      expect(r.results.map((x) => x.entityId)).toEqual(ids);
      expect(r.results.map((x) => x.features.v)).toEqual([49, undefined, 0, 7, 0]);
      expect([r.hits, r.misses]).toEqual([4, 1]);
    });

    test("bad input is INVALID_ARGUMENT and changes nothing", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1 });
      expect(await codeOf(() => fs.setFeatures("", { a: 1 }))).toBe(Code.InvalidArgument);
      expect(
        await codeOf(() =>
          fs.batchSet([
            { entityId: "ok", features: { a: 1 } },
            { entityId: "", features: {} },
          ]),
        ),
      ).toBe(Code.InvalidArgument);
      expect((await fs.getFeatures("ok")).found).toBe(false);
      const service = fs.service;
      const garbage = new Uint8Array([0x0a, 0x05, 0x61]);
      expect(await codeOf(() => service.handle(Method.SetFeatures, garbage, 0, 3, new ProtoWriter(64)))).toBe(
        Code.InvalidArgument,
      );
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ a: 1 });
    });

    test("a record larger than the cache's entry bound is stored and served whole where the store is durable", async () => {
      const { fs } = await fresh();
      const big = "x".repeat(300 * 1024);
      let code: number = Code.OK;
      try {
        await fs.setFeatures("big", { s: big });
      } catch (err) {
        code = FeatureStoreError.from(err).code;
      }
      if (!backend.durable) {
        expect(code).toBe(Code.ResourceExhausted);
        return;
      }
      expect(code).toBe(Code.OK);
      expect((await fs.getFeatures("big")).features.s).toBe(big);
      await fs.setFeatures("big", { n: 1 });
      expect((await fs.getFeatures("big", ["n"])).features.n).toBe(1);
      expect((await fs.getFeatures("big")).features.s).toBe(big);
    });

    test.skipIf(!backend.durable)("every write survives a restart, deletes included", async () => {
      const h = await fresh();
      for (let i = 0; i < 200; i++) await h.fs.setFeatures(`r${i}`, { v: i, s: `s${i}` });
      await h.fs.deleteFeatures("r3");
      await h.fs.deleteFeatures("r4", ["s"]);
      const fs = await h.reopen();
      expect((await fs.getFeatures("r199")).features).toEqual({ v: 199, s: "s199" });
      expect((await fs.getFeatures("r3")).found).toBe(false);
      expect({ ...(await fs.getFeatures("r4")).features }).toEqual({ v: 4 });
      expect((await fs.batchGet(Array.from({ length: 200 }, (_, i) => `r${i}`))).hits).toBe(199);
    });

    // Redis keeps its own clock: its TTLs are tested in real time in test/redis/redis-store.test.ts.
    test.skipIf(!backend.durable || !backend.clocked)(
      "TTLs hold across a restart: an entity expired while closed is never served",
      async () => {
        const h = await fresh();
        await h.fs.setFeatures("short", { a: 1 }, { ttlMs: 1000 });
        await h.fs.setFeatures("long", { a: 1 }, { ttlMs: 10_000 });
        clock.t += 5000;
        const fs = await h.reopen();
        expect((await fs.getFeatures("short")).found).toBe(false);
        expect((await fs.getFeatures("long")).found).toBe(true);
        clock.t += 5001;
        expect((await fs.getFeatures("long")).found).toBe(false);
      },
    );
  });
}
