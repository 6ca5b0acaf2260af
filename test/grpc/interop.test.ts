/**
 * The native gRPC port as a stock client sees it: a `@grpc/grpc-js` client generated from
 * featurestore.proto by `@grpc/proto-loader` calls every method, and each answer is what the
 * service contract says.
 */
import { describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import {
  type BatchGetResponse,
  call,
  type FeatureSetInfo,
  type FeatureStoreTarget,
  type FeatureValue,
  featureStoreClient,
  type GetFeaturesResponse,
  grpcHeaders,
  lengthPrefixed,
  ok,
  rawRequest,
  setRequestBytes,
  startFeatureStore,
} from "./fixture.ts";

/**
 * Runs `fn` against a fresh feature store and one client of it; both are stopped afterwards.
 * `env` overrides the server's configuration, `channel` the client's channel options.
 */
async function withStore(
  fn: (client: grpc.Client, store: FeatureStoreTarget) => Promise<void>,
  env: Record<string, string> = {},
  channel: grpc.ChannelOptions = {},
): Promise<void> {
  const store = await startFeatureStore(env);
  const client = featureStoreClient(store.port, channel);
  try {
    await fn(client, store);
  } finally {
    client.close();
    await store.shutdown();
  }
}

const get = (client: grpc.Client, entity_id: string, feature_names: string[] = [], more = {}) =>
  ok<GetFeaturesResponse>(client, "GetFeatures", { entity_id, feature_names, ...more });

/** The test's clock before a call and after its answer, ms since the epoch. */
interface Span {
  before: number;
  after: number;
}

/** Writes `features`; resolves to the span of the test's clock the write took (see `unstamped`). */
async function set(
  client: grpc.Client,
  entity_id: string,
  features: Record<string, FeatureValue>,
  more = {},
): Promise<Span> {
  const before = Date.now();
  expect(await ok<object>(client, "SetFeatures", { entity_id, features, ...more })).toEqual({ skipped: [] });
  return { before, after: Date.now() };
}

/** An event time in the past (2023-11-14T22:13:20Z), ms since the epoch: what a client sends. */
const EVENT_TIME = 1_700_000_000_000;

/** `values` as written with an event time: EVENT_TIME + offset, one offset per value, in order. */
function at(values: Record<string, FeatureValue>, offset = 0): Record<string, FeatureValue> {
  const out: Record<string, FeatureValue> = {};
  for (const [name, v] of Object.entries(values))
    out[name] = { ...v, event_time_ms: String(EVENT_TIME + offset++) };
  return out;
}

/**
 * What a written value reads back as: the same member (named in `kind` by the loader) and event
 * time, with the loader's default max age. A value written without an event time is stamped by
 * the server: compare it through `unstamped`.
 */
function withKind(values: Record<string, FeatureValue>): Record<string, FeatureValue> {
  const out: Record<string, FeatureValue> = {};
  for (const [name, v] of Object.entries(values))
    out[name] = { ...v, max_age_ms: v.max_age_ms ?? "0", kind: Object.keys(v)[0]! };
  return out;
}

/**
 * Checks that every value read carries the server's stamp of the write that stored it (an
 * event time within that write's span, per name or one span for all) and returns the values
 * without it, so that the rest compares exactly with `withKind`.
 */
function unstamped(
  values: Record<string, FeatureValue>,
  spans: Span | Record<string, Span>,
): Record<string, FeatureValue> {
  const out: Record<string, FeatureValue> = {};
  for (const [name, { event_time_ms, ...rest }] of Object.entries(values)) {
    const span = "before" in spans ? (spans as Span) : (spans as Record<string, Span>)[name];
    expect({ name, event_time_ms }).toEqual({ name, event_time_ms: expect.stringMatching(/^[1-9][0-9]*$/) });
    expect(Number(event_time_ms)).toBeGreaterThanOrEqual(span?.before ?? Number.NaN);
    expect(Number(event_time_ms)).toBeLessThanOrEqual(span?.after ?? Number.NaN);
    out[name] = rest;
  }
  return out;
}

/** Every kind of value, with the edges of each range. */
const EVERY_KIND: Record<string, FeatureValue> = {
  int_max: { int_value: "9223372036854775807" },
  int_min: { int_value: "-9223372036854775808" },
  int_past_2_53: { int_value: "9007199254740993" },
  int_negative: { int_value: "-42" },
  double_pi: { double_value: Math.PI },
  double_max: { double_value: Number.MAX_VALUE },
  double_tiny: { double_value: Number.MIN_VALUE },
  double_negative: { double_value: -1.5e-300 },
  double_infinity: { double_value: Number.NEGATIVE_INFINITY },
  double_nan: { double_value: Number.NaN },
  string_unicode: { string_value: "héllo, 世界 🙂" },
  bool_true: { bool_value: true },
  bytes_all: { bytes_value: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
  // float32 values exactly: what a float list stores is what it returns.
  float_list: { float_list: { values: [0.5, -1.25, 3.4028234663852886e38, 1.401298464324817e-45] } },
  int_list: { int_list: { values: ["9223372036854775807", "-9223372036854775808", "0", "-1"] } },
  string_list: { string_list: { values: ["a", "", "🙂", "x".repeat(1000)] } },
};

/** Each member at its zero value: set in the oneof, so it must come back set. */
const ZERO_OF_EVERY_KIND: Record<string, FeatureValue> = {
  int_zero: { int_value: "0" },
  double_zero: { double_value: 0 },
  string_empty: { string_value: "" },
  bool_false: { bool_value: false },
  bytes_empty: { bytes_value: Buffer.alloc(0) },
  float_list_empty: { float_list: { values: [] } },
  int_list_empty: { int_list: { values: [] } },
  string_list_empty: { string_list: { values: [] } },
};

describe("a grpc-js client generated from featurestore.proto", () => {
  test("every kind of value round-trips through SetFeatures and GetFeatures", async () => {
    await withStore(async (client) => {
      // Each value with its own event time: they are kept per feature, to the millisecond.
      const written = at(EVERY_KIND);
      await set(client, "user:kinds", written);
      const got = await get(client, "user:kinds");
      expect(got.found).toBe(true);
      expect(got.entity_id).toBe("user:kinds");
      expect(got.missing).toEqual([]);
      expect(got.stale).toEqual([]);
      expect(got.features).toEqual(withKind(written));
    });
  });

  test("a value set to its zero in the oneof comes back set, not absent", async () => {
    await withStore(async (client) => {
      const span = await set(client, "user:zeros", ZERO_OF_EVERY_KIND);
      const got = await get(client, "user:zeros");
      expect(unstamped(got.features, span)).toEqual(withKind(ZERO_OF_EVERY_KIND));
      await set(client, "user:negative-zero", { d: { double_value: -0 } });
      const negativeZero = (await get(client, "user:negative-zero")).features.d?.double_value;
      expect(Object.is(negativeZero, -0)).toBe(true);
    });
  });

  test("a write merges by default and replaces the record with replace: true", async () => {
    await withStore(async (client) => {
      const first = await set(client, "user:m", { a: { int_value: "1" }, b: { int_value: "2" } });
      const second = await set(client, "user:m", { b: { int_value: "3" }, c: { string_value: "c" } });
      // A kept feature keeps the event time of the write that stored it.
      expect(unstamped((await get(client, "user:m")).features, { a: first, b: second, c: second })).toEqual(
        withKind({ a: { int_value: "1" }, b: { int_value: "3" }, c: { string_value: "c" } }),
      );
      const third = await set(client, "user:m", { d: { bool_value: true } }, { replace: true });
      expect(unstamped((await get(client, "user:m")).features, third)).toEqual(
        withKind({ d: { bool_value: true } }),
      );
    });
  });

  test("a projection returns the names asked for and lists the ones the entity lacks as missing", async () => {
    await withStore(async (client) => {
      const span = await set(client, "user:p", {
        a: { int_value: "1" },
        b: { int_value: "2" },
        c: { int_value: "3" },
      });
      const got = await get(client, "user:p", ["c", "nope", "a"]);
      expect(got.found).toBe(true);
      expect(unstamped(got.features, span)).toEqual(
        withKind({ a: { int_value: "1" }, c: { int_value: "3" } }),
      );
      expect(got.missing).toEqual(["nope"]);
      const absent = await get(client, "user:absent", ["a", "b"]);
      expect(absent.found).toBe(false);
      expect(absent.features).toEqual({});
      expect(absent.missing).toEqual(["a", "b"]);
    });
  });

  test("an entity written with a short ttl_ms is found, then not found once it expires", async () => {
    await withStore(async (client) => {
      await set(client, "user:ttl", { a: { int_value: "1" } }, { ttl_ms: "300" });
      await set(client, "user:kept", { a: { int_value: "1" } });
      expect((await get(client, "user:ttl")).found).toBe(true);
      let found = true;
      for (let i = 0; i < 200 && found; i++) {
        await Bun.sleep(25);
        found = (await get(client, "user:ttl")).found;
      }
      expect(found).toBe(false);
      expect((await get(client, "user:kept")).found).toBe(true);
    });
  });

  test("BatchSet writes every item and BatchGet of 1,000 ids answers in request order with hits and misses", async () => {
    await withStore(async (client) => {
      const items = [];
      for (let i = 0; i < 1000; i += 2)
        items.push({ entity_id: `batch:${i}`, features: at({ n: { int_value: String(i) } }, i) });
      const written = await ok<{ written: number }>(client, "BatchSet", { items });
      expect(written.written).toBe(500);
      const ids = Array.from({ length: 1000 }, (_, i) => `batch:${i}`);
      const got = await ok<BatchGetResponse>(client, "BatchGet", { entity_ids: ids });
      expect(got.hits).toBe(500);
      expect(got.misses).toBe(500);
      expect(got.results.map((r) => r.entity_id)).toEqual(ids);
      got.results.forEach((r, i) => {
        expect(r.found).toBe(i % 2 === 0);
        expect(r.features).toEqual(i % 2 === 0 ? withKind(at({ n: { int_value: String(i) } }, i)) : {});
      });
      const projected = await ok<BatchGetResponse>(client, "BatchGet", {
        entity_ids: ["batch:0", "batch:1"],
        feature_names: ["n", "other"],
      });
      expect(projected.results.map((r) => r.missing)).toEqual([["other"], ["n", "other"]]);
    });
  });

  test("DeleteFeatures removes the names given, or the whole entity when none are", async () => {
    await withStore(async (client) => {
      const span = await set(client, "user:d", { a: { int_value: "1" }, b: { int_value: "2" } });
      const del = (entity_id: string, feature_names: string[] = []) =>
        ok<{ deleted: boolean }>(client, "DeleteFeatures", { entity_id, feature_names });
      expect((await del("user:d", ["a"])).deleted).toBe(true);
      const after = await get(client, "user:d", ["a", "b"]);
      expect(unstamped(after.features, span)).toEqual(withKind({ b: { int_value: "2" } }));
      expect(after.missing).toEqual(["a"]);
      expect((await del("user:d")).deleted).toBe(true);
      expect((await get(client, "user:d")).found).toBe(false);
      expect((await del("user:d")).deleted).toBe(false);
    });
  });

  test("an empty entity id, a value with no kind set and a negative ttl_ms are INVALID_ARGUMENT", async () => {
    await withStore(async (client) => {
      const emptyGet = await call(client, "GetFeatures", { entity_id: "" });
      expect(emptyGet.ok ? "OK" : grpc.status[emptyGet.code]).toBe("INVALID_ARGUMENT");
      const emptySet = await call(client, "SetFeatures", {
        entity_id: "",
        features: { a: { int_value: "1" } },
      });
      expect(emptySet.ok ? "OK" : grpc.status[emptySet.code]).toBe("INVALID_ARGUMENT");
      const shapeless = await call(client, "SetFeatures", { entity_id: "user:s", features: { a: {} } });
      expect(shapeless.ok ? "OK" : grpc.status[shapeless.code]).toBe("INVALID_ARGUMENT");
      const negativeTtl = await call(client, "SetFeatures", {
        entity_id: "user:s",
        features: { a: { int_value: "1" } },
        ttl_ms: "-1",
      });
      expect(negativeTtl.ok ? "OK" : grpc.status[negativeTtl.code]).toBe("INVALID_ARGUMENT");
      expect((await get(client, "user:s")).found).toBe(false);
    });
  });

  test("a deadline already past is DEADLINE_EXCEEDED and the write is not applied", async () => {
    await withStore(async (client, store) => {
      const late = await call(
        client,
        "SetFeatures",
        { entity_id: "user:late", features: { a: { int_value: "1" } } },
        { deadline: Date.now() - 1000 },
      );
      expect(late.ok ? "OK" : grpc.status[late.code]).toBe("DEADLINE_EXCEEDED");
      // grpc-js may give up before sending; a raw call makes the server itself see grpc-timeout 0.
      const raw = await rawRequest(
        store.port,
        grpcHeaders("/featurestore.v1.FeatureStoreService/SetFeatures", { "grpc-timeout": "0m" }),
        [lengthPrefixed(setRequestBytes("user:late", "a", 1n))],
      );
      expect(raw.grpcStatus).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect((await get(client, "user:late")).found).toBe(false);
    });
  });

  test("a message over MAX_FRAME_BYTES is RESOURCE_EXHAUSTED and the server goes on serving", async () => {
    await withStore(
      async (client) => {
        const big = await call(client, "SetFeatures", {
          entity_id: "user:big",
          features: { blob: { bytes_value: Buffer.alloc(100_000, 7) } },
        });
        expect(big.ok ? "OK" : grpc.status[big.code]).toBe("RESOURCE_EXHAUSTED");
        expect(big.ok ? "" : big.details).toContain("MAX_FRAME_BYTES");
        await set(client, "user:small", { a: { int_value: "1" } });
        expect((await get(client, "user:big")).found).toBe(false);
        expect((await get(client, "user:small")).found).toBe(true);
      },
      { MAX_FRAME_BYTES: "65536" },
    );
  });

  test("a client compressing with gzip round-trips, and the limit applies to the decompressed size", async () => {
    await withStore(
      async (client) => {
        const text = "gzip me ".repeat(4000); // 32,000 bytes that compress to a few hundred
        const span = await set(client, "user:gz", { text: { string_value: text } });
        expect(unstamped((await get(client, "user:gz")).features, span)).toEqual(
          withKind({ text: { string_value: text } }),
        );
        // 100,000 bytes compress far below the limit: refused only after decompression, which
        // shows the message travelled gzipped.
        const big = await call(client, "SetFeatures", {
          entity_id: "user:gzbig",
          features: { blob: { bytes_value: Buffer.alloc(100_000, 7) } },
        });
        expect(big.ok ? "OK" : grpc.status[big.code]).toBe("RESOURCE_EXHAUSTED");
        expect(big.ok ? "" : big.details).toContain("decompressed");
      },
      { MAX_FRAME_BYTES: "65536" },
      { "grpc.default_compression_algorithm": 2 },
    );
  });

  test("UpdateFeatures increments and appends on one entity, answers the new count, and a read sees both", async () => {
    await withStore(async (client) => {
      const update = (delta: string, seen: string[], offset: number) =>
        ok<{ skipped: string[]; values: Record<string, FeatureValue> }>(client, "UpdateFeatures", {
          entity_id: "user:u",
          updates: [
            { name: "clicks", increment: { int_delta: delta }, event_time_ms: String(EVENT_TIME + offset) },
            {
              name: "seen",
              append: { values: { string_list: { values: seen } }, keep_last: 3 },
              event_time_ms: String(EVENT_TIME + offset),
            },
          ],
        });
      // An absent counter starts at 0; an append pushes each item onto the front, as LPUSH does.
      expect(await update("1", ["a", "b"], 0)).toEqual({
        skipped: [],
        values: withKind(at({ clicks: { int_value: "1" } })),
      });
      expect(await update("41", ["c", "d"], 1)).toEqual({
        skipped: [],
        values: withKind(at({ clicks: { int_value: "42" } }, 1)),
      });
      const got = await get(client, "user:u");
      expect(got.found).toBe(true);
      expect(got.features).toEqual(
        withKind({
          clicks: { int_value: "42", event_time_ms: String(EVENT_TIME + 1) },
          seen: { string_list: { values: ["d", "c", "b"] }, event_time_ms: String(EVENT_TIME + 1) },
        }),
      );
      const wrongType = await call(client, "UpdateFeatures", {
        entity_id: "user:u",
        updates: [{ name: "seen", increment: { int_delta: "1" } }],
      });
      expect(wrongType.ok ? "OK" : grpc.status[wrongType.code]).toBe("FAILED_PRECONDITION");
    });
  });

  test("versions of a feature set are written by SetFeatures, switched by PublishVersion and RollbackVersion, and read by GetFeatures", async () => {
    await withStore(async (client) => {
      const version = (v: string) => ({ feature_set: "ranker", version: v });
      const info = (current: string, previous: string): FeatureSetInfo => ({
        feature_set: "ranker",
        current,
        previous,
        dropping: [],
      });
      const score = (feature_set: object = { feature_set: "ranker" }) =>
        get(client, "user:v", [], feature_set).then((r) => r.features);
      const unpublished = await call(client, "GetFeatures", { entity_id: "user:v", feature_set: "ranker" });
      expect(unpublished.ok ? "OK" : grpc.status[unpublished.code]).toBe("FAILED_PRECONDITION");
      const v1 = at({ score: { double_value: 0.25 } });
      const v2 = at({ score: { double_value: 0.75 } }, 1);
      await set(client, "user:v", v1, version("v1"));
      expect(await ok(client, "PublishVersion", version("v1"))).toEqual(info("v1", ""));
      // Writing the next version does not change what readers of the set get.
      await set(client, "user:v", v2, version("v2"));
      expect(await score()).toEqual(withKind(v1));
      expect(await score(version("v2"))).toEqual(withKind(v2));
      // The plain entity is another key altogether.
      expect((await get(client, "user:v")).found).toBe(false);
      expect(await ok(client, "PublishVersion", version("v2"))).toEqual(info("v2", "v1"));
      expect(await score()).toEqual(withKind(v2));
      expect(await ok(client, "GetFeatureSet", { feature_set: "ranker" })).toEqual(info("v2", "v1"));
      const dropCurrent = await call(client, "DropVersion", version("v2"));
      expect(dropCurrent.ok ? "OK" : grpc.status[dropCurrent.code]).toBe("FAILED_PRECONDITION");
      expect(await ok(client, "RollbackVersion", { feature_set: "ranker" })).toEqual(info("v1", "v2"));
      expect(await score()).toEqual(withKind(v1));
    });
  });
});

describe("the metrics of the gRPC port", () => {
  test("calls over native gRPC are counted in featurestore_requests_total with transport grpc", async () => {
    await withStore(async (client, store) => {
      await set(client, "user:metrics", { a: { int_value: "1" } });
      await get(client, "user:metrics");
      await call(client, "GetFeatures", { entity_id: "" });
      const res = await fetch(`http://127.0.0.1:${store.httpPort}/metrics`);
      expect(res.status).toBe(200);
      const lines = (await res.text())
        .split("\n")
        .filter((l) => l.startsWith("featurestore_requests_total{") && l.includes('transport="grpc"'));
      const count = (method: string, code: string) =>
        lines
          .filter((l) => l.includes(`method="${method}"`) && l.includes(`code="${code}"`))
          .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
      expect(count("SetFeatures", "ok")).toBe(1);
      expect(count("GetFeatures", "ok")).toBe(1);
      expect(count("GetFeatures", "invalid_argument")).toBe(1);
    });
  });
});
