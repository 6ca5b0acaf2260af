/**
 * Interop with the real clients, not our own: @connectrpc/connect with the Node transports
 * (Connect with binary and with JSON, and gRPC-web), using code generated from our proto by
 * protoc-gen-es (`npm run gen`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  FeatureStoreService,
  FeatureValueSchema,
  SetFeaturesRequestSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { startTestHttpServer, T0, type TestHttpServer } from "./fixture.ts";

let s: TestHttpServer;
beforeAll(() => {
  s = startTestHttpServer({ maxBodyBytes: 8192 });
});
afterAll(() => s.server.stop());

/**
 * HTTP verbs the GET-enabled clients used, by method name, seen by a pass-through proxy in
 * front of the server (a client interceptor runs before connect-es turns POST into GET).
 */
const verbs: Record<string, Set<string>> = {};
let proxy: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  proxy = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const name = url.pathname.split("/").pop()!;
      const set = verbs[name] ?? new Set<string>();
      verbs[name] = set;
      set.add(req.method);
      const res = await fetch(`${s.base}${url.pathname}${url.search}`, {
        method: req.method,
        headers: req.headers,
        body: req.method === "GET" ? undefined : await req.arrayBuffer(),
      });
      return new Response(await res.arrayBuffer(), { status: res.status, headers: res.headers });
    },
  });
});
afterAll(() => proxy.stop(true));
const viaProxy = () => `http://127.0.0.1:${proxy.port}`;

const transports: [string, () => Transport][] = [
  [
    "Connect, binary",
    () => createConnectTransport({ baseUrl: s.base, httpVersion: "1.1", useBinaryFormat: true }),
  ],
  [
    "Connect, JSON",
    () => createConnectTransport({ baseUrl: s.base, httpVersion: "1.1", useBinaryFormat: false }),
  ],
  [
    "Connect, JSON, GET for side-effect-free methods",
    () =>
      createConnectTransport({
        baseUrl: viaProxy(),
        httpVersion: "1.1",
        useBinaryFormat: false,
        useHttpGet: true,
      }),
  ],
  [
    "Connect, binary, GET for side-effect-free methods",
    () =>
      createConnectTransport({
        baseUrl: viaProxy(),
        httpVersion: "1.1",
        useBinaryFormat: true,
        useHttpGet: true,
      }),
  ],
  [
    "gRPC-web, binary",
    () => createGrpcWebTransport({ baseUrl: s.base, httpVersion: "1.1", useBinaryFormat: true }),
  ],
  [
    "gRPC-web, JSON",
    () => createGrpcWebTransport({ baseUrl: s.base, httpVersion: "1.1", useBinaryFormat: false }),
  ],
];

const fv = (kind: ReturnType<typeof create<typeof FeatureValueSchema>>["kind"]) =>
  create(FeatureValueSchema, { kind });

for (const [name, make] of transports) {
  describe(`@connectrpc/connect client over ${name}`, () => {
    const id = `interop:${name}`;

    test("writes and reads every kind of feature value", async () => {
      const client = createClient(FeatureStoreService, make());
      await client.setFeatures({
        entityId: id,
        ttlMs: 600_000n,
        features: {
          i: fv({ case: "intValue", value: -9007199254740993n }),
          d: fv({ case: "doubleValue", value: Number.NaN }),
          s: fv({ case: "stringValue", value: "Zoë 🚀" }),
          b: fv({ case: "boolValue", value: false }),
          y: fv({ case: "bytesValue", value: new Uint8Array([0, 255, 251]) }),
          f: fv({
            case: "floatList",
            value: { $typeName: "featurestore.v1.FloatList", values: [0.5, -1.25] },
          }),
          l: fv({
            case: "intList",
            value: { $typeName: "featurestore.v1.Int64List", values: [1n, -2n, 2n ** 62n] },
          }),
          t: fv({
            case: "stringList",
            value: { $typeName: "featurestore.v1.StringList", values: ["a", ""] },
          }),
        },
      });
      const got = await client.getFeatures({ entityId: id });
      expect(got.found).toBe(true);
      expect(got.entityId).toBe(id);
      const k = (n: string) => got.features[n]?.kind;
      expect(k("i")).toEqual({ case: "intValue", value: -9007199254740993n });
      expect(k("d")?.case).toBe("doubleValue");
      expect(Number.isNaN(k("d")?.value as number)).toBe(true);
      expect(k("s")).toEqual({ case: "stringValue", value: "Zoë 🚀" });
      expect(k("b")).toEqual({ case: "boolValue", value: false });
      expect(k("y")?.value).toEqual(new Uint8Array([0, 255, 251]));
      expect(k("f")?.value).toMatchObject({ values: [0.5, -1.25] });
      expect(k("l")?.value).toMatchObject({ values: [1n, -2n, 2n ** 62n] });
      expect(k("t")?.value).toMatchObject({ values: ["a", ""] });
    });

    test("updates, windows and feature sets: every new message through this transport", async () => {
      const client = createClient(FeatureStoreService, make());
      const uid = `${id}:rt`;
      const now = BigInt(T0); // the test server's clock
      const spec = { bucketMs: 60_000n, retentionMs: 3_600_000n };
      const first = await client.updateFeatures({
        entityId: uid,
        updates: [
          { name: "clicks", op: { case: "increment", value: { delta: { case: "intDelta", value: 2n } } } },
          { name: "spend", op: { case: "increment", value: { delta: { case: "doubleDelta", value: 0.5 } } } },
          {
            name: "recent",
            op: {
              case: "append",
              value: {
                values: fv({
                  case: "stringList",
                  value: { $typeName: "featurestore.v1.StringList", values: ["a", "b", "c"] },
                }),
                keepLast: 2,
              },
            },
          },
          { name: "amt", op: { case: "observe", value: { value: 4, spec } }, eventTimeMs: now },
          { name: "amt2", op: { case: "observe", value: { value: 1, spec } }, eventTimeMs: now - 7_200_000n },
        ],
      });
      expect(first.skipped).toEqual(["amt2"]); // older than the retention
      expect(first.values.clicks?.kind).toEqual({ case: "intValue", value: 2n });
      expect(first.values.spend?.kind).toEqual({ case: "doubleValue", value: 0.5 });
      await client.updateFeatures({
        entityId: uid,
        updates: [{ name: "amt", op: { case: "observe", value: { value: 6, spec } }, eventTimeMs: now }],
      });
      const read = await client.getFeatures({
        entityId: uid,
        featureNames: ["recent", "amt"],
        windows: [{ feature: "amt", windowMs: 3_600_000n }],
      });
      expect(read.features.recent?.kind.value).toMatchObject({ values: ["c", "b"] });
      const win = read.features.amt?.kind;
      expect(win?.case).toBe("window");
      expect(win?.value).toMatchObject({ counts: [2n], sums: [10], mins: [4], maxs: [6] });
      expect(read.aggregates).toHaveLength(1);
      expect(read.aggregates[0]).toMatchObject({
        feature: "amt",
        windowMs: 3_600_000n,
        count: 2n,
        sum: 10,
        min: 4,
        max: 6,
        mean: 5,
      });
      // A string cannot be incremented: FAILED_PRECONDITION naming the feature, as a ConnectError.
      const err = await client
        .updateFeatures({
          entityId: uid,
          updates: [
            { name: "recent", op: { case: "increment", value: { delta: { case: "intDelta", value: 1n } } } },
          ],
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.FailedPrecondition);
      expect((err as ConnectError).rawMessage).toContain('"recent"');

      const set = `set${name.replace(/[^A-Za-z0-9]/g, "")}`;
      await client.setFeatures({
        entityId: uid,
        features: { s: fv({ case: "intValue", value: 1n }) },
        featureSet: set,
        version: "v1",
      });
      expect(await client.publishVersion({ featureSet: set, version: "v1" })).toMatchObject({
        featureSet: set,
        current: "v1",
        previous: "",
      });
      const info = await client.getFeatureSet({ featureSet: set });
      expect(info).toMatchObject({ current: "v1", dropping: [] });
      const versioned = await client.getFeatures({ entityId: uid, featureSet: set });
      expect([versioned.version, versioned.features.s?.kind.value]).toEqual(["v1", 1n]);
    });

    test("projects, batches and deletes", async () => {
      const client = createClient(FeatureStoreService, make());
      const some = await client.getFeatures({ entityId: id, featureNames: ["s", "nope"] });
      expect(Object.keys(some.features)).toEqual(["s"]);
      expect(some.missing).toEqual(["nope"]);

      const written = await client.batchSet({
        items: [
          create(SetFeaturesRequestSchema, {
            entityId: `${id}/a`,
            features: { x: fv({ case: "intValue", value: 1n }) },
          }),
          create(SetFeaturesRequestSchema, {
            entityId: `${id}/b`,
            features: { x: fv({ case: "intValue", value: 2n }) },
          }),
        ],
      });
      expect(written.written).toBe(2);
      const batch = await client.batchGet({ entityIds: [`${id}/a`, `${id}/b`, `${id}/c`] });
      expect(batch.hits).toBe(2);
      expect(batch.misses).toBe(1);
      expect(batch.results.map((r) => r.found)).toEqual([true, true, false]);

      expect((await client.deleteFeatures({ entityId: `${id}/a` })).deleted).toBe(true);
      expect((await client.deleteFeatures({ entityId: `${id}/a` })).deleted).toBe(false);
      expect((await client.getFeatures({ entityId: `${id}/a` })).found).toBe(false);
    });

    test("sees a server error as a ConnectError with its code and message", async () => {
      const client = createClient(FeatureStoreService, make());
      const err = await client.getFeatures({ entityId: "" }).then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.rawMessage).toBe("entity_id must not be empty");
    });

    test("sees a request over the size limit as resource_exhausted", async () => {
      const client = createClient(FeatureStoreService, make());
      const err = await client
        .setFeatures({
          entityId: "big",
          features: { v: fv({ case: "stringValue", value: "x".repeat(10_000) }) },
        })
        .then(
          () => null,
          (e: unknown) => ConnectError.from(e),
        );
      expect(err?.code).toBe(Code.ResourceExhausted);
      // and keeps working
      expect((await client.getFeatures({ entityId: id })).found).toBe(true);
    });

    test("sees an expired deadline as deadline_exceeded", async () => {
      const client = createClient(FeatureStoreService, make());
      const err = await client.getFeatures({ entityId: id }, { timeoutMs: 1 }).then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
      // Either the server answered in time (ok) or the deadline passed (client- or server-side).
      if (err !== null) expect(err.code).toBe(Code.DeadlineExceeded);
    });
  });
}

test("the GET transports really read with GET and write with POST", () => {
  expect([...(verbs.GetFeatures ?? [])]).toEqual(["GET"]);
  expect([...(verbs.BatchGet ?? [])]).toEqual(["GET"]);
  expect([...(verbs.SetFeatures ?? [])]).toEqual(["POST"]);
  expect([...(verbs.GetFeatureSet ?? [])]).toEqual(["GET"]);
  expect([...(verbs.UpdateFeatures ?? [])]).toEqual(["POST"]);
  expect([...(verbs.PublishVersion ?? [])]).toEqual(["POST"]);
});
