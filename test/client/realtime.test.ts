/**
 * Issue 12's typed API end to end through the real service: the same cases run on the client
 * over the in-memory transport and on the embedded store (the two implementations of
 * FeatureStoreApi in this directory's care), on an injected clock. The semantics themselves are
 * the contract suite's (test/contract/realtime.contract.test.ts); these check that every method
 * reaches the service and every answer field comes back typed.
 */
import { describe, expect, test } from "bun:test";
import {
  Code,
  FeatureStoreClient,
  FeatureStoreError,
  InMemoryTransport,
  WindowValue,
} from "../../src/client/index.ts";
import { CellStatus, FeatureVectorSpec } from "../../src/codec/dense.ts";
import type { FeatureStoreApi } from "../../src/codec/messages.ts";
import { EmbeddedFeatureStore } from "../../src/service/embedded.ts";
import { FeatureService } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";

const START = 1_700_000_000_000;

type Opened = { api: FeatureStoreApi; clock: { t: number } };

const IMPLEMENTATIONS: { name: string; open(): Opened }[] = [
  {
    name: "client over the in-memory transport",
    open() {
      const clock = { t: START };
      const store = new MemoryStore({
        maxEntries: 1000,
        maxBytes: 1 << 22,
        shardCount: 2,
        now: () => clock.t,
      });
      return { api: new FeatureStoreClient(new InMemoryTransport(new FeatureService(store))), clock };
    },
  },
  {
    name: "embedded store",
    open() {
      const clock = { t: START };
      const api = EmbeddedFeatureStore.create({
        maxEntries: 1000,
        maxBytes: 1 << 22,
        shardCount: 2,
        now: () => clock.t,
      });
      return { api, clock };
    },
  },
];

/** The error of `call`, thrown (embedded store) or rejected (client). */
async function rejection(call: () => unknown): Promise<FeatureStoreError> {
  try {
    await call();
  } catch (err) {
    expect(err).toBeInstanceOf(FeatureStoreError);
    return err as FeatureStoreError;
  }
  throw new Error("expected a rejection");
}

for (const impl of IMPLEMENTATIONS) {
  describe(`issue 12 typed API: ${impl.name}`, () => {
    test("an older write is skipped and named; the newer value and its event time stay", async () => {
      const { api } = impl.open();
      expect((await api.setFeatures("u", { a: 1, b: 1 }, { eventTimeMs: START - 100 })).skipped).toEqual([]);
      const r = await api.setFeatures("u", { a: 2, c: 3 }, { eventTimeMs: START - 200 });
      expect(r.skipped).toEqual(["a"]);
      const got = await api.getFeatures("u", undefined, { eventTimes: true });
      expect({ ...got.features }).toEqual({ a: 1, b: 1, c: 3 });
      expect({ ...got.eventTimes }).toEqual({ a: START - 100, b: START - 100, c: START - 200 });
    });

    test("a write without an event time reads back at the server's clock", async () => {
      const { api, clock } = impl.open();
      clock.t = START + 5;
      await api.setFeatures("u", { a: 1 });
      expect((await api.getFeatures("u", ["a"], { eventTimes: true })).eventTimes?.a).toBe(START + 5);
    });

    test("a max age moves an old feature to stale and reports the read time", async () => {
      const { api, clock } = impl.open();
      await api.setFeatures("u", { old: 1 }, { eventTimeMs: START - 10_000 });
      await api.setFeatures("u", { fresh: 2 }, { eventTimeMs: START - 10 });
      const r = await api.getFeatures("u", undefined, { maxAgeMs: 1000 });
      expect({ ...r.features }).toEqual({ fresh: 2 });
      expect(r.stale).toEqual(["old"]);
      expect(r.readTimeMs).toBe(clock.t);
      expect({ ...r.eventTimes }).toEqual({ fresh: START - 10 });
      const b = await api.batchGet(["u", "nobody"], ["old", "fresh"], { maxAgeMs: 1000 });
      expect(b.results.map((x) => [x.found, { ...x.features }, x.stale, x.missing])).toEqual([
        [true, { fresh: 2 }, ["old"], []],
        [false, {}, [], ["old", "fresh"]],
      ]);
    });

    test("a feature's own max age, written with it, makes it stale on a plain read", async () => {
      const { api, clock } = impl.open();
      await api.setFeatures("u", { a: 1 }, { maxAgeMs: 1000 });
      expect((await api.getFeatures("u")).stale).toEqual([]);
      clock.t += 1001;
      const r = await api.getFeatures("u");
      expect([{ ...r.features }, r.stale]).toEqual([{}, ["a"]]);
    });

    test("updateFeatures increments, appends, sets if newer and observes in one call", async () => {
      const { api } = impl.open();
      await api.setFeatures("u", { label: "new" }, { eventTimeMs: START });
      const spec = { bucketMs: 60_000, retentionMs: 3_600_000 };
      const r = await api.updateFeatures("u", [
        { name: "clicks", increment: 2 },
        { name: "spend", increment: 1.5 },
        { name: "recent", append: ["a", "b", "c"], keepLast: 2 },
        { name: "label", set: "old", eventTimeMs: START - 1 },
        { name: "amount", observe: 4, spec },
      ]);
      expect(r.skipped).toEqual(["label"]);
      expect({ ...r.values }).toEqual({ clicks: 2, spend: 1.5 });
      const again = await api.updateFeatures("u", [{ name: "clicks", increment: 1n }]);
      expect(again.values.clicks).toBe(3);
      const got = await api.getFeatures("u");
      expect(got.features.recent).toEqual(["c", "b"]);
      expect(got.features.label).toBe("new");
      const w = got.features.amount as WindowValue;
      expect(w).toBeInstanceOf(WindowValue);
      expect([w.bucketMs, w.retentionMs, w.counts, Array.from(w.sums)]).toEqual([
        60_000,
        3_600_000,
        [1],
        [4],
      ]);
    });

    test("a windowed read answers its aggregates in order", async () => {
      const { api, clock } = impl.open();
      const spec = { bucketMs: 60_000, retentionMs: 3_600_000 };
      for (const [value, ago] of [
        [1, 0],
        [5, 30_000],
        [10, 600_000],
      ] as const)
        await api.updateFeatures("u", [{ name: "amount", observe: value, spec, eventTimeMs: clock.t - ago }]);
      const r = await api.getFeatures("u", ["amount"], {
        windows: [
          { feature: "amount", windowMs: 120_000 },
          { feature: "amount", windowMs: 3_600_000 },
        ],
      });
      expect(r.readTimeMs).toBe(clock.t);
      expect(r.aggregates.map((a) => [a.feature, a.windowMs, a.count, a.sum, a.min, a.max])).toEqual([
        ["amount", 120_000, 2, 6, 1, 5],
        ["amount", 3_600_000, 3, 16, 1, 10],
      ]);
    });

    test("a window feature in a dense read is a TypeMismatch cell", async () => {
      const { api } = impl.open();
      await api.updateFeatures("u", [
        { name: "amount", observe: 1, spec: { bucketMs: 1000, retentionMs: 10_000 } },
        { name: "n", increment: 7 },
      ]);
      const spec = new FeatureVectorSpec(["amount", "n"]);
      const d =
        api instanceof EmbeddedFeatureStore
          ? api.getDense(["u"], spec)
          : await (api as FeatureStoreClient).getDense(["u"], spec);
      expect(Array.from(d.status)).toEqual([CellStatus.TypeMismatch, CellStatus.Ok]);
      expect(d.values[1]).toBe(7);
    });

    test("publish, read a version, roll back and drop through the feature set methods", async () => {
      const { api } = impl.open();
      await api.setFeatures("u", { score: 1 }, { featureSet: "ranker", version: "v1" });
      await api.setFeatures("u", { score: 2 }, { featureSet: "ranker", version: "v2" });
      expect(await api.getFeatureSet("ranker")).toEqual({
        featureSet: "ranker",
        current: "",
        previous: "",
        dropping: [],
      });
      expect((await api.publishVersion("ranker", "v1")).current).toBe("v1");
      expect((await api.getFeatures("u", undefined, { featureSet: "ranker" })).features.score).toBe(1);
      const b = await api.batchGet(["u"], undefined, { featureSet: "ranker" });
      expect([b.version, b.results[0]!.features.score]).toEqual(["v1", 1]);
      expect(await api.publishVersion("ranker", "v2")).toMatchObject({ current: "v2", previous: "v1" });
      expect(
        (await api.getFeatures("u", undefined, { featureSet: "ranker", version: "v1" })).features.score,
      ).toBe(1);
      expect((await api.getFeatures("u", undefined, { featureSet: "ranker" })).features.score).toBe(2);
      expect((await api.rollbackVersion("ranker")).current).toBe("v1");
      expect((await api.getFeatures("u", undefined, { featureSet: "ranker" })).features.score).toBe(1);
      const dropped = await api.dropVersion("ranker", "v2");
      expect(dropped.current).toBe("v1");
      expect(await api.deleteFeatures("u", ["score"], { featureSet: "ranker", version: "v1" })).toBe(true);
      expect((await api.getFeatures("u", undefined, { featureSet: "ranker" })).features).toEqual(
        Object.create(null),
      );
      // The plain entity was never written.
      expect((await api.getFeatures("u")).found).toBe(false);
    });

    test("the server's errors for what the client cannot check come back with their codes", async () => {
      const { api } = impl.open();
      await api.setFeatures("u", { s: "x" });
      const inc = await rejection(() => api.updateFeatures("u", [{ name: "s", increment: 1 }]));
      expect(inc.code).toBe(Code.FailedPrecondition);
      expect(inc.message).toContain("s");
      expect((await rejection(() => api.rollbackVersion("ranker"))).code).toBe(Code.FailedPrecondition);
      expect((await rejection(() => api.publishVersion("bad name", "v1"))).code).toBe(Code.InvalidArgument);
    });
  });
}
