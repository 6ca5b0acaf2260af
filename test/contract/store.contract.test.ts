/**
 * The store contract: every backend runs the same tests through the service's five methods
 * (EmbeddedFeatureStore). Memory is the cache alone; the SQLite variants put the cache in front
 * of a file, once with a cache large enough for everything and once with a cache of 4 entities,
 * so that nearly every read goes to the file. The durable ones also run the restart tests.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Method } from "../../src/codec/frame.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";

interface Backend {
  name: string;
  durable: boolean;
  /** Opens the store on `dir` (the same dir again = a restart) with the given clock. */
  open(dir: string, clock: { t: number }): EmbeddedFeatureStore;
}

const cache = (maxEntries: number, clock: { t: number }) => ({
  maxEntries,
  maxBytes: 1 << 22,
  shardCount: 2,
  now: () => clock.t,
});

const BACKENDS: Backend[] = [
  { name: "memory", durable: false, open: (_dir, clock) => EmbeddedFeatureStore.create(cache(1000, clock)) },
  {
    name: "sqlite",
    durable: true,
    open: (dir, clock) => EmbeddedFeatureStore.open({ path: dir, cache: cache(1000, clock) }),
  },
  {
    name: "sqlite behind a 4-entity cache",
    durable: true,
    open: (dir, clock) =>
      EmbeddedFeatureStore.open({ path: dir, durability: "async", cache: cache(4, clock) }),
  },
];

for (const backend of BACKENDS) {
  describe(`store contract: ${backend.name}`, () => {
    const opened: EmbeddedFeatureStore[] = [];
    const dirs: string[] = [];
    const clock = { t: 1_000_000 };
    function fresh(): { fs: EmbeddedFeatureStore; dir: string; reopen(): EmbeddedFeatureStore } {
      const dir = mkdtempSync(join(tmpdir(), "fs-contract-"));
      dirs.push(dir);
      let fs = backend.open(dir, clock);
      opened.push(fs);
      return {
        get fs() {
          return fs;
        },
        dir,
        reopen() {
          fs.close();
          fs = backend.open(dir, clock);
          opened.push(fs);
          return fs;
        },
      };
    }
    afterEach(() => {
      for (const fs of opened.splice(0)) fs.close();
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
      clock.t = 1_000_000;
    });

    test("a set entity reads back with every value type intact", () => {
      const { fs } = fresh();
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
      fs.setFeatures("u", features);
      const r = fs.getFeatures("u");
      expect(r.found).toBe(true);
      expect({ ...r.features }).toEqual({ ...features, d: 0.25 });
    });

    test("merge keeps other names and overwrites named ones; replace drops the rest", () => {
      const { fs } = fresh();
      fs.setFeatures("u", { a: 1, b: 2 });
      fs.setFeatures("u", { b: 20, c: 30 });
      expect({ ...fs.getFeatures("u").features }).toEqual({ a: 1, b: 20, c: 30 });
      fs.setFeatures("u", { z: 9 }, { replace: true });
      expect({ ...fs.getFeatures("u").features }).toEqual({ z: 9 });
    });

    test("a projection returns the named features and lists the absent ones as missing", () => {
      const { fs } = fresh();
      fs.setFeatures("u", { a: 1, b: "x", c: true });
      const r = fs.getFeatures("u", ["c", "nope", "a"]);
      expect({ ...r.features }).toEqual({ a: 1, c: true });
      expect(r.missing).toEqual(["nope"]);
      expect(fs.getFeatures("ghost", ["a"])).toEqual({
        entityId: "ghost",
        found: false,
        features: {},
        missing: ["a"],
      });
    });

    test("an entity expires after its TTL; deleting names keeps the expiry", () => {
      const { fs } = fresh();
      fs.setFeatures("t", { a: 1, b: 2 }, { ttlMs: 1000 });
      fs.setFeatures("forever", { a: 1 });
      clock.t += 600;
      expect(fs.deleteFeatures("t", ["b"])).toBe(true);
      clock.t += 399;
      expect({ ...fs.getFeatures("t").features }).toEqual({ a: 1 });
      clock.t += 2;
      expect(fs.getFeatures("t").found).toBe(false);
      expect(fs.getFeatures("forever").found).toBe(true);
    });

    test("delete of names, then of the entity; a second delete reports nothing deleted", () => {
      const { fs } = fresh();
      fs.setFeatures("u", { a: 1, b: 2 });
      expect(fs.deleteFeatures("u", ["a", "zz"])).toBe(true);
      expect({ ...fs.getFeatures("u").features }).toEqual({ b: 2 });
      expect(fs.deleteFeatures("u", ["zz"])).toBe(false);
      expect(fs.deleteFeatures("u")).toBe(true);
      expect(fs.getFeatures("u").found).toBe(false);
      expect(fs.deleteFeatures("u")).toBe(false);
    });

    test("an absent entity, once written, is found (the cached absence is invalidated)", () => {
      const { fs } = fresh();
      expect(fs.getFeatures("late").found).toBe(false);
      fs.setFeatures("late", { a: 1 });
      expect(fs.getFeatures("late").features.a).toBe(1);
    });

    test("BatchSet then BatchGet keep request order and count hits and misses", () => {
      const { fs } = fresh();
      const items = Array.from({ length: 50 }, (_, i) => ({ entityId: `e${i}`, features: { v: i } }));
      expect(fs.batchSet(items)).toBe(50);
      const ids = ["e49", "nobody", "e0", "e7", "e0"];
      const r = fs.batchGet(ids);
      expect(r.results.map((x) => x.entityId)).toEqual(ids);
      expect(r.results.map((x) => x.features.v)).toEqual([49, undefined, 0, 7, 0]);
      expect([r.hits, r.misses]).toEqual([4, 1]);
    });

    test("bad input is INVALID_ARGUMENT and changes nothing", () => {
      const { fs } = fresh();
      fs.setFeatures("u", { a: 1 });
      const code = (f: () => unknown) => {
        try {
          f();
          return Code.OK;
        } catch (err) {
          return FeatureStoreError.from(err).code;
        }
      };
      expect(code(() => fs.setFeatures("", { a: 1 }))).toBe(Code.InvalidArgument);
      expect(
        code(() =>
          fs.batchSet([
            { entityId: "ok", features: { a: 1 } },
            { entityId: "", features: {} },
          ]),
        ),
      ).toBe(Code.InvalidArgument);
      expect(fs.getFeatures("ok").found).toBe(false);
      const service = fs.service;
      const garbage = new Uint8Array([0x0a, 0x05, 0x61]);
      expect(code(() => service.handle(Method.SetFeatures, garbage, 0, 3, new ProtoWriter(64)))).toBe(
        Code.InvalidArgument,
      );
      expect({ ...fs.getFeatures("u").features }).toEqual({ a: 1 });
    });

    test("a record larger than the cache's entry bound is stored and served whole where the store is durable", () => {
      const { fs } = fresh();
      const big = "x".repeat(300 * 1024);
      let code: number = Code.OK;
      try {
        fs.setFeatures("big", { s: big });
      } catch (err) {
        code = FeatureStoreError.from(err).code;
      }
      if (!backend.durable) {
        expect(code).toBe(Code.ResourceExhausted);
        return;
      }
      expect(code).toBe(Code.OK);
      expect(fs.getFeatures("big").features.s).toBe(big);
      fs.setFeatures("big", { n: 1 });
      expect(fs.getFeatures("big", ["n"]).features.n).toBe(1);
      expect(fs.getFeatures("big").features.s).toBe(big);
    });

    test.skipIf(!backend.durable)("every write survives a restart, deletes included", () => {
      const h = fresh();
      for (let i = 0; i < 200; i++) h.fs.setFeatures(`r${i}`, { v: i, s: `s${i}` });
      h.fs.deleteFeatures("r3");
      h.fs.deleteFeatures("r4", ["s"]);
      const fs = h.reopen();
      expect(fs.getFeatures("r199").features).toEqual({ v: 199, s: "s199" });
      expect(fs.getFeatures("r3").found).toBe(false);
      expect({ ...fs.getFeatures("r4").features }).toEqual({ v: 4 });
      expect(fs.batchGet(Array.from({ length: 200 }, (_, i) => `r${i}`)).hits).toBe(199);
    });

    test.skipIf(!backend.durable)(
      "TTLs hold across a restart: an entity expired while closed is never served",
      () => {
        const h = fresh();
        h.fs.setFeatures("short", { a: 1 }, { ttlMs: 1000 });
        h.fs.setFeatures("long", { a: 1 }, { ttlMs: 10_000 });
        clock.t += 5000;
        const fs = h.reopen();
        expect(fs.getFeatures("short").found).toBe(false);
        expect(fs.getFeatures("long").found).toBe(true);
        clock.t += 5001;
        expect(fs.getFeatures("long").found).toBe(false);
      },
    );
  });
}
