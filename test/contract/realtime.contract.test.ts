/**
 * The real-time contract (issue 12): event time and set-if-newer, freshness, atomic updates,
 * windowed aggregates and versioned feature sets, on every backend of backends.ts (memory,
 * SQLite, Redis standalone and Cluster), with the test's clock injected into the service.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { WindowValue } from "../../src/codec/features.ts";
import { Method } from "../../src/codec/frame.ts";
import { Code } from "../../src/codec/status.ts";
import { ProtoWriter, WireType } from "../../src/codec/wire.ts";
import { codeOf } from "../codes.ts";
import { type Api, BACKENDS, harness, START, stopBackends } from "./backends.ts";

afterAll(stopBackends);

const MIN = 60_000;
const HOUR = 60 * MIN;
const SPEC = { bucketMs: MIN, retentionMs: HOUR };

/** A deterministic PRNG (mulberry32) so that failures replay. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shuffles in place with `r`. */
function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** The FeatureUpdate bytes of a request the typed API cannot express (an unknown op). */
function rawUpdate(id: string, name: string, opField: number): Uint8Array {
  const w = new ProtoWriter(64);
  w.stringField(1, id);
  const at = w.beginLength(2);
  w.stringField(1, name);
  const op = w.beginLength(opField);
  w.tag(1, WireType.Varint);
  w.varint(1);
  w.endLength(op);
  w.endLength(at);
  return w.finish();
}

async function call(fs: Api, method: number, body: Uint8Array): Promise<unknown> {
  return fs.service.handle(method, body, 0, body.length, new ProtoWriter(256))?.ready;
}

for (const backend of BACKENDS) {
  describe(`real-time contract: ${backend.name}`, () => {
    const { clock, fresh } = harness(backend);

    // ---- event time -----------------------------------------------------------------------

    test("an older event never overwrites a newer value, and the answer names what it skipped", async () => {
      const { fs } = await fresh();
      expect((await fs.setFeatures("u", { a: 1, b: 1 }, { eventTimeMs: 2000 })).skipped).toEqual([]);
      expect((await fs.setFeatures("u", { a: 2, b: 2 }, { eventTimeMs: 1500 })).skipped.sort()).toEqual([
        "a",
        "b",
      ]);
      const r = await fs.getFeatures("u", undefined, { eventTimes: true });
      expect({ ...r.features }).toEqual({ a: 1, b: 1 });
      expect(r.eventTimes).toEqual({ a: 2000, b: 2000 });
      // Equal event times: the write wins (a replayed event is idempotent).
      expect((await fs.setFeatures("u", { a: 3 }, { eventTimeMs: 2000 })).skipped).toEqual([]);
      expect((await fs.getFeatures("u", ["a"])).features.a).toBe(3);
    });

    test("a write without an event time is stamped with the server's clock and ordered by it", async () => {
      const { fs } = await fresh();
      clock.t = START + 5000;
      await fs.setFeatures("u", { a: "now" });
      expect((await fs.getFeatures("u", ["a"], { eventTimes: true })).eventTimes).toEqual({
        a: START + 5000,
      });
      expect((await fs.setFeatures("u", { a: "late" }, { eventTimeMs: START + 4999 })).skipped).toEqual([
        "a",
      ]);
      expect((await fs.getFeatures("u", ["a"])).features.a).toBe("now");
    });

    test("replace keeps a newer stored feature and drops the unnamed ones", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1, b: 1, c: 1 }, { eventTimeMs: 3000 });
      const { skipped } = await fs.setFeatures("u", { a: 9, z: 9 }, { eventTimeMs: 2000, replace: true });
      expect(skipped).toEqual(["a"]);
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ a: 1, z: 9 });
    });

    test("out-of-order and replayed events leave the newest value of each feature, exactly", async () => {
      const { fs } = await fresh();
      const r = rng(12);
      const values = (i: number) =>
        [
          i,
          `s${i}`,
          new Float32Array([i, -i]),
          [`x${i}`],
          { double: i + 0.5 },
          new BigInt64Array([BigInt(i)]),
        ][i % 6]!;
      // 6 features x 40 events with distinct event times, each sent twice, in random order.
      const events: { name: string; t: number; v: number }[] = [];
      for (let f = 0; f < 6; f++) {
        const times = shuffle(
          Array.from({ length: 40 }, (_, k) => START - 100_000 + k * 97 + f),
          r,
        );
        for (const t of times) events.push({ name: `f${f}`, t, v: Math.floor(r() * 1000) * 6 + f });
      }
      const sent = shuffle([...events, ...events], r);
      for (const e of sent) await fs.setFeatures("e", { [e.name]: values(e.v) }, { eventTimeMs: e.t });
      const got = await fs.getFeatures("e", undefined, { eventTimes: true });
      for (let f = 0; f < 6; f++) {
        const newest = events.filter((e) => e.name === `f${f}`).reduce((a, b) => (b.t > a.t ? b : a));
        const want = values(newest.v);
        expect(got.features[`f${f}`]).toEqual(
          typeof want === "object" && "double" in want ? want.double : (want as never),
        );
        expect(got.eventTimes![`f${f}`]).toBe(newest.t);
      }
    });

    test("an event time too far ahead of the server's clock is INVALID_ARGUMENT naming the feature", async () => {
      const { fs } = await fresh();
      const err = await codeOf(() => fs.setFeatures("u", { fut: 1 }, { eventTimeMs: START + 3_600_000 }));
      expect(err).toBe(Code.InvalidArgument);
      try {
        await fs.setFeatures("u", { fut: 1 }, { eventTimeMs: START + 3_600_000 });
      } catch (e) {
        expect(String(e)).toContain('"fut"');
        expect(String(e)).toContain("MAX_EVENT_TIME_SKEW_MS");
      }
      expect((await fs.getFeatures("u")).found).toBe(false);
      // Within the skew bound it is accepted.
      await fs.setFeatures("u", { near: 1 }, { eventTimeMs: START + 30_000 });
      expect((await fs.getFeatures("u")).features.near).toBe(1);
    });

    // ---- freshness --------------------------------------------------------------------------

    test("a read's max age holds at its boundary: just inside is present, just outside is stale", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { a: 1, b: 2 }, { eventTimeMs: START - 1000 });
      await fs.setFeatures("u", { c: 3 }, { eventTimeMs: START });
      let r = await fs.getFeatures("u", undefined, { maxAgeMs: 1000 });
      expect({ ...r.features }).toEqual({ a: 1, b: 2, c: 3 });
      expect(r.stale).toEqual([]);
      expect(r.readTimeMs).toBe(START);
      clock.t = START + 1;
      r = await fs.getFeatures("u", undefined, { maxAgeMs: 1000 });
      expect({ ...r.features }).toEqual({ c: 3 });
      expect([...r.stale].sort()).toEqual(["a", "b"]);
      expect(r.readTimeMs).toBe(START + 1);
      // With names: stale ones are stale, absent ones missing, never both.
      r = await fs.getFeatures("u", ["a", "c", "zz"], { maxAgeMs: 1000 });
      expect({ ...r.features }).toEqual({ c: 3 });
      expect(r.stale).toEqual(["a"]);
      expect(r.missing).toEqual(["zz"]);
      // A BatchGet applies it to every entity.
      await fs.setFeatures("v", { a: 1 }, { eventTimeMs: START + 1 });
      const b = await fs.batchGet(["u", "v"], ["a"], { maxAgeMs: 1000 });
      expect(b.results.map((x) => x.stale)).toEqual([["a"], []]);
      expect(b.results[1]!.features.a).toBe(1);
    });

    test("a feature's own max age, set at write time, applies to plain reads; the stricter max age wins", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { hot: 1 }, { maxAgeMs: 500 });
      await fs.setFeatures("u", { cold: 2 });
      clock.t = START + 500;
      let r = await fs.getFeatures("u");
      expect({ ...r.features }).toEqual({ hot: 1, cold: 2 });
      clock.t = START + 501;
      r = await fs.getFeatures("u");
      expect({ ...r.features }).toEqual({ cold: 2 });
      expect(r.stale).toEqual(["hot"]);
      expect((await fs.getFeatures("u", ["hot"])).features.hot).toBeUndefined();
      expect((await fs.batchGet(["u"])).results[0]!.stale).toEqual(["hot"]);
      // A read asking for more than 500 ms does not bring it back; asking for less is stricter.
      expect((await fs.getFeatures("u", undefined, { maxAgeMs: 60_000 })).stale).toEqual(["hot"]);
      clock.t = START + 100;
      expect((await fs.getFeatures("u", ["hot"], { maxAgeMs: 99 })).stale).toEqual(["hot"]);
      expect((await fs.getFeatures("u", ["hot"], { maxAgeMs: 100 })).features.hot).toBe(1);
      // A fresh write makes it present again.
      clock.t = START + 10_000;
      await fs.setFeatures("u", { hot: 5 }, { maxAgeMs: 500 });
      expect((await fs.getFeatures("u")).features.hot).toBe(5);
    });

    // ---- atomic updates -------------------------------------------------------------------------

    test("increments count from zero, keep their type, and answer the new value", async () => {
      const { fs } = await fresh();
      let r = await fs.updateFeatures("u", [
        { name: "clicks", increment: 1 },
        { name: "spend", increment: { double: 0.25 } },
      ]);
      expect({ ...r.values }).toEqual({ clicks: 1, spend: 0.25 });
      r = await fs.updateFeatures("u", [
        { name: "clicks", increment: 41 },
        { name: "spend", increment: { double: 1 } },
      ]);
      expect({ ...r.values }).toEqual({ clicks: 42, spend: 1.25 });
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ clicks: 42, spend: 1.25 });
      await fs.updateFeatures("u", [{ name: "big", increment: 2n ** 62n }]);
      expect(await codeOf(() => fs.updateFeatures("u", [{ name: "big", increment: 2n ** 62n }]))).toBe(
        Code.FailedPrecondition,
      );
    });

    test("appends keep the last N, newest first, for every list kind", async () => {
      const { fs } = await fresh();
      await fs.updateFeatures("u", [{ name: "seen", append: ["a", "b"], keepLast: 3 }]);
      await fs.updateFeatures("u", [{ name: "seen", append: ["c", "d"], keepLast: 3 }]);
      expect((await fs.getFeatures("u")).features.seen).toEqual(["d", "c", "b"]);
      await fs.updateFeatures("u", [{ name: "ids", append: new BigInt64Array([1n, 2n]), keepLast: 10 }]);
      await fs.updateFeatures("u", [{ name: "ids", append: new BigInt64Array([-3n]), keepLast: 2 }]);
      expect((await fs.getFeatures("u")).features.ids).toEqual(new BigInt64Array([-3n, 2n]));
      await fs.updateFeatures("u", [{ name: "emb", append: new Float32Array([0.5, 1.5]), keepLast: 3 }]);
      await fs.updateFeatures("u", [{ name: "emb", append: new Float32Array([2.5, 3.5]), keepLast: 3 }]);
      expect((await fs.getFeatures("u")).features.emb).toEqual(new Float32Array([3.5, 2.5, 1.5]));
    });

    test("several updates on one entity apply all or none", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { name: "ann", n: 1 });
      await fs.updateFeatures("u", [
        { name: "n", increment: 1 },
        { name: "tags", append: ["x"], keepLast: 5 },
        { name: "status", set: "active", eventTimeMs: START },
      ]);
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({
        name: "ann",
        n: 2,
        tags: ["x"],
        status: "active",
      });
      const code = await codeOf(() =>
        fs.updateFeatures("u", [
          { name: "n", increment: 1 },
          { name: "name", increment: 1 },
        ]),
      );
      expect(code).toBe(Code.FailedPrecondition);
      expect((await fs.getFeatures("u", ["n"])).features.n).toBe(2);
    });

    test("a set update is set-if-newer and reports what it skipped", async () => {
      const { fs } = await fresh();
      await fs.updateFeatures("u", [{ name: "s", set: "new", eventTimeMs: START }]);
      const r = await fs.updateFeatures("u", [
        { name: "s", set: "old", eventTimeMs: START - 1 },
        { name: "n", increment: 1 },
      ]);
      expect(r.skipped).toEqual(["s"]);
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ s: "new", n: 1 });
    });

    test("50 concurrent callers incrementing and appending lose no update", async () => {
      const { fs } = await fresh();
      const callers = 50;
      const each = 20;
      await Promise.all(
        Array.from({ length: callers }, async (_, c) => {
          for (let k = 0; k < each; k++)
            await fs.updateFeatures("hot", [
              { name: "n", increment: 1 },
              { name: "sum", increment: { double: 0.5 } },
              { name: "last", append: [`${c}:${k}`], keepLast: 1000 },
            ]);
        }),
      );
      const r = await fs.getFeatures("hot");
      expect(r.features.n).toBe(callers * each);
      expect(r.features.sum).toBe(callers * each * 0.5);
      const last = r.features.last as string[];
      expect(last.length).toBe(callers * each);
      expect(new Set(last).size).toBe(callers * each);
      // Each caller's items appear newest first, in its own order.
      for (let c = 0; c < callers; c++) {
        const mine = last.filter((x) => x.startsWith(`${c}:`)).map((x) => Number(x.split(":")[1]));
        expect(mine).toEqual(Array.from({ length: each }, (_, k) => each - 1 - k));
      }
    });

    test("bad updates are INVALID_ARGUMENT or FAILED_PRECONDITION, name the feature, and change nothing", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { s: "text", n: 1, l: ["a"] });
      const expectError = async (f: () => unknown, code: number, feature: string) => {
        let message = "";
        try {
          await f();
        } catch (e) {
          message = String(e);
        }
        expect(message).toContain(`"${feature}"`);
        expect(await codeOf(f)).toBe(code);
      };
      await expectError(
        () => fs.updateFeatures("u", [{ name: "s", increment: 1 }]),
        Code.FailedPrecondition,
        "s",
      );
      await expectError(
        () => fs.updateFeatures("u", [{ name: "n", append: ["x"], keepLast: 3 }]),
        Code.FailedPrecondition,
        "n",
      );
      await expectError(
        () => fs.updateFeatures("u", [{ name: "l", append: new BigInt64Array([1n]), keepLast: 3 }]),
        Code.FailedPrecondition,
        "l",
      );
      await expectError(
        () => fs.updateFeatures("u", [{ name: "l", append: ["x"], keepLast: 0 }]),
        Code.InvalidArgument,
        "l",
      );
      await expectError(
        () => fs.updateFeatures("u", [{ name: "n", increment: 1, eventTimeMs: START + 10 * HOUR }]),
        Code.InvalidArgument,
        "n",
      );
      await expectError(
        () => call(fs, Method.UpdateFeatures, rawUpdate("u", "n", 15)),
        Code.InvalidArgument,
        "n",
      );
      await expectError(
        () =>
          fs.updateFeatures("u", [{ name: "w", observe: 1, spec: { bucketMs: MIN, retentionMs: 90_000 } }]),
        Code.InvalidArgument,
        "w",
      );
      expect({ ...(await fs.getFeatures("u")).features }).toEqual({ s: "text", n: 1, l: ["a"] });
    });

    // ---- windows ------------------------------------------------------------------------------

    test("window events roll up by tile across bucket boundaries; late events land in their tile", async () => {
      const { fs } = await fresh();
      clock.t = 10 * HOUR + 30_000; // 30 s into a minute tile
      const now = clock.t;
      const observe = (v: number, t: number) =>
        fs.updateFeatures("u", [{ name: "amt", observe: v, spec: SPEC, eventTimeMs: t }]);
      await observe(1, now); // current tile
      await observe(2, now - 30_000); // current tile, its first ms
      await observe(4, now - 30_001); // previous tile, its last ms
      await observe(8, now - 20 * MIN); // late, within retention
      await observe(16, now - HOUR + MIN - 30_000); // the oldest tile of the hour
      const r = await fs.getFeatures("u", [], {
        windows: [
          { feature: "amt", windowMs: MIN },
          { feature: "amt", windowMs: 2 * MIN },
          { feature: "amt", windowMs: 30 * MIN },
          { feature: "amt", windowMs: HOUR },
        ],
      });
      expect(r.aggregates.map((a) => [a.windowMs, a.count, a.sum, a.min, a.max])).toEqual([
        [MIN, 2, 3, 1, 2],
        [2 * MIN, 3, 7, 1, 4],
        [30 * MIN, 4, 15, 1, 8],
        [HOUR, 5, 31, 1, 16],
      ]);
      expect(r.aggregates[3]!.mean).toBeCloseTo(31 / 5, 12);
      // Windows without names: the aggregates alone; naming features returns them as well.
      expect([r.found, Object.keys(r.features)]).toEqual([true, []]);
      await fs.setFeatures("u", { plan: "pro" });
      const named = await fs.getFeatures("u", ["plan", "amt"], {
        windows: [{ feature: "amt", windowMs: MIN }],
      });
      expect(Object.keys(named.features).sort()).toEqual(["amt", "plan"]);
      expect(named.features.amt).toBeInstanceOf(WindowValue);
      expect(named.aggregates.map((a) => a.count)).toEqual([2]);
      // One tile later the current-tile events fall out of the 1-minute window.
      clock.t = now + 30_000;
      const later = await fs.getFeatures("u", [], { windows: [{ feature: "amt", windowMs: MIN }] });
      expect([later.aggregates[0]!.count, later.aggregates[0]!.sum]).toEqual([0, 0]);
    });

    test("an event older than the retention is skipped; empty windows count zero", async () => {
      const { fs } = await fresh();
      clock.t = 10 * HOUR;
      const r = await fs.updateFeatures("u", [
        { name: "w", observe: 5, spec: SPEC, eventTimeMs: 10 * HOUR - HOUR - 1 },
      ]);
      expect(r.skipped).toEqual(["w"]);
      await fs.updateFeatures("u", [
        { name: "w", observe: 5, spec: SPEC, eventTimeMs: 10 * HOUR - 30 * MIN },
      ]);
      const a = await fs.getFeatures("u", [], {
        windows: [
          { feature: "w", windowMs: 5 * MIN },
          { feature: "absent", windowMs: 5 * MIN },
        ],
      });
      expect(a.aggregates.map((x) => [x.feature, x.count, x.sum])).toEqual([
        ["w", 0, 0],
        ["absent", 0, 0],
      ]);
    });

    test("window queries past the retention, off the bucket, or on a non-window are FAILED_PRECONDITION", async () => {
      const { fs } = await fresh();
      await fs.setFeatures("u", { plain: 1 });
      await fs.updateFeatures("u", [{ name: "w", observe: 1, spec: SPEC }]);
      for (const [feature, windowMs] of [
        ["w", 2 * HOUR],
        ["w", 90_000],
        ["plain", MIN],
      ] as const) {
        let message = "";
        try {
          await fs.getFeatures("u", [], { windows: [{ feature, windowMs }] });
        } catch (e) {
          message = String(e);
        }
        expect(message).toContain(`"${feature}"`);
        expect(await codeOf(() => fs.getFeatures("u", [], { windows: [{ feature, windowMs }] }))).toBe(
          Code.FailedPrecondition,
        );
      }
      expect(
        await codeOf(() =>
          fs.updateFeatures("u", [{ name: "w", observe: 1, spec: { bucketMs: MIN, retentionMs: 2 * HOUR } }]),
        ),
      ).toBe(Code.FailedPrecondition);
    });

    test("windowed aggregates equal a model that keeps every event (property test)", async () => {
      const { fs } = await fresh();
      const r = rng(7);
      const spec = { bucketMs: 10_000, retentionMs: 600_000 };
      clock.t = 1000 * spec.retentionMs;
      const kept: { t: number; v: number }[] = [];
      const tile = (t: number) => t - (t % spec.bucketMs);
      for (let round = 0; round < 12; round++) {
        for (let k = 0; k < 25; k++) {
          const t = clock.t - Math.floor(r() * spec.retentionMs * 1.3) + Math.floor(r() * 20_000);
          const v = Math.floor(r() * 200) - 100;
          const res = await fs.updateFeatures("p", [{ name: "x", observe: v, spec, eventTimeMs: t }]);
          const accepted = tile(t) >= tile(clock.t) - spec.retentionMs + spec.bucketMs;
          expect(res.skipped).toEqual(accepted ? [] : ["x"]);
          if (accepted) kept.push({ t, v });
        }
        for (const windowMs of [10_000, 50_000, 300_000, 600_000]) {
          const got = (await fs.getFeatures("p", [], { windows: [{ feature: "x", windowMs }] }))
            .aggregates[0]!;
          const last = tile(clock.t);
          const inWindow = kept.filter(
            (e) => tile(e.t) <= last && tile(e.t) >= last - windowMs + spec.bucketMs,
          );
          expect(got.count).toBe(inWindow.length);
          expect(got.sum).toBe(inWindow.reduce((s, e) => s + e.v, 0));
          if (inWindow.length > 0) {
            expect(got.min).toBe(Math.min(...inWindow.map((e) => e.v)));
            expect(got.max).toBe(Math.max(...inWindow.map((e) => e.v)));
          }
        }
        clock.t += Math.floor(r() * 120_000);
      }
      // Memory is bounded: no more tiles than the retention holds plus the skew ahead.
      const w = (await fs.getFeatures("p", ["x"])).features.x as { startsMs: number[] };
      expect(w.startsMs.length).toBeLessThanOrEqual(
        spec.retentionMs / spec.bucketMs + 60_000 / spec.bucketMs,
      );
    });

    // ---- versioned feature sets -------------------------------------------------------------------

    test("readers keep the published version while the next is written; publish and rollback switch it", async () => {
      const { fs } = await fresh();
      expect(await codeOf(() => fs.getFeatures("u", [], { featureSet: "ranker" }))).toBe(
        Code.FailedPrecondition,
      );
      await fs.batchSet(
        ["a", "b", "c"].map((id) => ({
          entityId: id,
          features: { score: 1 },
          featureSet: "ranker",
          version: "v1",
        })),
      );
      expect(await fs.publishVersion("ranker", "v1")).toEqual({
        featureSet: "ranker",
        current: "v1",
        previous: "",
        dropping: [],
      });
      for (const id of ["a", "b", "c"])
        await fs.setFeatures(id, { score: 2 }, { featureSet: "ranker", version: "v2" });
      let b = await fs.batchGet(["a", "b", "c"], [], { featureSet: "ranker" });
      expect(b.version).toBe("v1");
      expect(b.results.map((x) => x.features.score)).toEqual([1, 1, 1]);
      // The plain entity is another key altogether.
      expect((await fs.getFeatures("a")).found).toBe(false);
      // An explicit version reads the unpublished one; a GetFeatures says which version it read.
      const v2 = await fs.getFeatures("a", [], { featureSet: "ranker", version: "v2" });
      expect([v2.features.score, v2.version]).toEqual([2, "v2"]);
      expect((await fs.getFeatures("a", ["score"], { featureSet: "ranker" })).version).toBe("v1");
      expect((await fs.getFeatures("a")).version).toBeUndefined();
      expect((await fs.publishVersion("ranker", "v2")).previous).toBe("v1");
      b = await fs.batchGet(["a", "b", "c"], [], { featureSet: "ranker" });
      expect([b.version, ...b.results.map((x) => x.features.score)]).toEqual(["v2", 2, 2, 2]);
      expect(await fs.rollbackVersion("ranker")).toMatchObject({ current: "v1", previous: "v2" });
      b = await fs.batchGet(["a", "b", "c"], [], { featureSet: "ranker" });
      expect([b.version, ...b.results.map((x) => x.features.score)]).toEqual(["v1", 1, 1, 1]);
      expect(await fs.getFeatureSet("ranker")).toMatchObject({ current: "v1", previous: "v2" });
    });

    test("a dropped version is freed and leaves the pointer; the published one cannot be dropped", async () => {
      const { fs } = await fresh();
      const items = Array.from({ length: 300 }, (_, i) => ({
        entityId: `e${i}`,
        features: { v: i },
        featureSet: "s",
        version: "old",
      }));
      await fs.batchSet(items);
      await fs.batchSet(items.map((x) => ({ ...x, version: "new" })));
      await fs.setFeatures("e0", { plain: 1 });
      await fs.publishVersion("s", "old");
      await fs.publishVersion("s", "new");
      expect(await codeOf(() => fs.dropVersion("s", "new"))).toBe(Code.FailedPrecondition);
      const info = await fs.dropVersion("s", "old");
      expect([info.current, info.previous, info.dropping]).toEqual(["new", "", ["old"]]);
      // A write into a version being dropped is refused (it would outlive the drop).
      expect(await codeOf(() => fs.setFeatures("e1", { v: 1 }, { featureSet: "s", version: "old" }))).toBe(
        Code.FailedPrecondition,
      );
      await fs.service.dropsSettled();
      expect(await fs.getFeatureSet("s")).toEqual({
        featureSet: "s",
        current: "new",
        previous: "",
        dropping: [],
      });
      const old = await fs.batchGet(
        items.map((x) => x.entityId),
        [],
        { featureSet: "s", version: "old" },
      );
      expect(old.hits).toBe(0);
      expect(
        (
          await fs.batchGet(
            items.map((x) => x.entityId),
            [],
            { featureSet: "s" },
          )
        ).hits,
      ).toBe(300);
      expect((await fs.getFeatures("e0")).features.plain).toBe(1);
      expect(await codeOf(() => fs.rollbackVersion("s"))).toBe(Code.FailedPrecondition);
    });

    test("feature set and version names are checked", async () => {
      const { fs } = await fresh();
      expect(await codeOf(() => fs.publishVersion("bad name", "v1"))).toBe(Code.InvalidArgument);
      expect(await codeOf(() => fs.publishVersion("s", ""))).toBe(Code.InvalidArgument);
      expect(await codeOf(() => fs.setFeatures("u", { a: 1 }, { featureSet: "s" }))).toBe(
        Code.InvalidArgument,
      );
      expect(await codeOf(() => fs.getFeatures("u", [], { version: "v1" }))).toBe(Code.InvalidArgument);
    });
  });
}
