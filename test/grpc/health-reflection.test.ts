/**
 * Health and reflection, proven equal: the same tests run against the feature store's own gRPC
 * server and against a reference grpc-js server built from the maintained packages
 * (`@grpc/reflection`, `grpc-health-check`), so whatever a tool does with the reference it can
 * do with the feature store. Reflection is exercised by `buf curl` without a schema, which has
 * nothing else to go on, and by a grpc-js client of reflection.proto.
 */
import { describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  bufCurl,
  call,
  type GrpcTarget,
  healthClient,
  METHODS,
  ok,
  PROTO_DIR,
  SERVICE,
  type ServingStatus,
  startFeatureStore,
  startReferenceServer,
} from "./fixture.ts";

const TARGETS: [string, () => Promise<GrpcTarget>][] = [
  ["the feature store's gRPC server", () => startFeatureStore()],
  ["a reference grpc-js server (@grpc/reflection, grpc-health-check)", startReferenceServer],
];

const HEALTH_METHODS = ["Check", "List", "Watch"];

/** A reflection client generated from reflection.proto, v1 or v1alpha. */
function reflectionClient(port: number, version: "v1" | "v1alpha"): grpc.Client {
  const def = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, {
    keepCase: true,
    includeDirs: [PROTO_DIR],
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  const Client = pkg.grpc.reflection[version]!.ServerReflection;
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends each request on one ServerReflectionInfo stream and collects one response per request. */
function reflect(client: grpc.Client, requests: object[]): Promise<ReflectionResponse[]> {
  return new Promise((resolve, reject) => {
    const stream = (
      client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }
    ).ServerReflectionInfo();
    const responses: ReflectionResponse[] = [];
    stream.on("data", (r: ReflectionResponse) => responses.push(r));
    stream.on("error", reject);
    stream.on("end", () => resolve(responses));
    for (const r of requests) stream.write(r);
    stream.end();
  });
}

/** Runs `fn` against a freshly started target; stopped afterwards. */
async function withTarget(start: () => Promise<GrpcTarget>, fn: (t: GrpcTarget) => Promise<void>) {
  const target = await start();
  try {
    await fn(target);
  } finally {
    await target.shutdown();
  }
}

const lines = (s: string) => s.split("\n").filter((l) => l !== "");

describe.each(TARGETS)("%s", (_name, start) => {
  test("buf curl lists the service's methods through reflection v1 and v1alpha", async () => {
    await withTarget(start, async (t) => {
      const base = `http://127.0.0.1:${t.port}`;
      for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
        const out = await bufCurl(["--reflect-protocol", protocol, "--list-methods", base]);
        expect({ protocol, exitCode: out.exitCode, stderr: out.stderr }).toEqual({
          protocol,
          exitCode: 0,
          stderr: "",
        });
        const listed = lines(out.stdout);
        for (const m of METHODS) expect(listed).toContain(`${SERVICE}/${m}`);
        for (const m of HEALTH_METHODS) expect(listed).toContain(`grpc.health.v1.Health/${m}`);
      }
      const services = await bufCurl(["--list-services", base]);
      expect(lines(services.stdout)).toContain(SERVICE);
    });
  });

  test("buf curl writes with SetFeatures and reads it back with GetFeatures, knowing only what reflection says", async () => {
    await withTarget(start, async (t) => {
      const base = `http://127.0.0.1:${t.port}/${SERVICE}`;
      const write = await bufCurl([
        "-d",
        '{"entity_id":"user:123","features":{"age":{"int_value":25,"event_time_ms":1700000000000}}}',
        `${base}/SetFeatures`,
      ]);
      expect({ exitCode: write.exitCode, stderr: write.stderr }).toEqual({ exitCode: 0, stderr: "" });
      expect(JSON.parse(write.stdout)).toEqual({});
      const read = await bufCurl([
        "--reflect-protocol",
        "grpc-v1alpha",
        "-d",
        '{"entity_id":"user:123"}',
        `${base}/GetFeatures`,
      ]);
      expect(read.exitCode).toBe(0);
      expect(JSON.parse(read.stdout)).toEqual({
        entityId: "user:123",
        features: { age: { intValue: "25", eventTimeMs: "1700000000000" } },
        found: true,
      });
    });
  });

  test("buf curl's health Check says SERVING", async () => {
    await withTarget(start, async (t) => {
      const url = `http://127.0.0.1:${t.port}/grpc.health.v1.Health/Check`;
      for (const data of ["{}", `{"service":"${SERVICE}"}`]) {
        const out = await bufCurl(["-d", data, url]);
        expect(out.exitCode).toBe(0);
        expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
      }
    });
  });

  test("a reflection client finds the service, its file by name, and NOT_FOUND for an unknown symbol", async () => {
    await withTarget(start, async (t) => {
      for (const version of ["v1", "v1alpha"] as const) {
        const client = reflectionClient(t.port, version);
        try {
          const [list, bySymbol, byName, unknown] = await reflect(client, [
            { list_services: "" },
            { file_containing_symbol: SERVICE },
            { file_by_filename: "featurestore/v1/featurestore.proto" },
            { file_containing_symbol: "nope.v1.Nothing" },
          ]);
          expect(list?.list_services_response?.service.map((s) => s.name)).toContain(SERVICE);
          for (const r of [bySymbol, byName]) {
            const files = (r?.file_descriptor_response?.file_descriptor_proto ?? []).map((b) =>
              fromBinary(FileDescriptorProtoSchema, b),
            );
            const file = files.find((f) => f.name === "featurestore/v1/featurestore.proto");
            expect(file?.service.map((s) => s.name)).toEqual(["FeatureStoreService"]);
            expect(file?.service[0]?.method.map((m) => m.name).sort()).toEqual([...METHODS].sort());
            const entry = file?.messageType.find((m) => m.name === "SetFeaturesRequest")?.nestedType[0];
            expect(entry?.name).toBe("FeaturesEntry");
            expect(entry?.options?.mapEntry).toBe(true);
          }
          expect(unknown?.error_response?.error_code).toBe(grpc.status.NOT_FOUND);
        } finally {
          client.close();
        }
      }
    });
  });

  test("health Check is SERVING for the server and the service, NOT_FOUND for an unknown service", async () => {
    await withTarget(start, async (t) => {
      const client = healthClient(t.port);
      try {
        for (const service of ["", SERVICE]) {
          const got = await ok<{ status: ServingStatus }>(client, "Check", { service });
          expect({ service, status: got.status }).toEqual({ service, status: "SERVING" });
        }
        const unknown = await call(client, "Check", { service: "nope.v1.Nothing" });
        expect(unknown.ok ? "OK" : grpc.status[unknown.code]).toBe("NOT_FOUND");
      } finally {
        client.close();
      }
    });
  });

  test("health List returns the status of the server and of the service", async () => {
    await withTarget(start, async (t) => {
      const client = healthClient(t.port);
      try {
        const got = await ok<{ statuses: Record<string, { status: ServingStatus }> }>(client, "List", {});
        expect(got.statuses[""]?.status).toBe("SERVING");
        expect(got.statuses[SERVICE]?.status).toBe("SERVING");
        for (const [service, { status }] of Object.entries(got.statuses))
          expect({ service, status }).toEqual({ service, status: "SERVING" });
      } finally {
        client.close();
      }
    });
  });

  test("health Watch of an unknown service streams SERVICE_UNKNOWN rather than failing", async () => {
    await withTarget(start, async (t) => {
      const client = healthClient(t.port);
      const watch = (
        client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: ServingStatus }> }
      ).Watch({ service: "nope.v1.Nothing" });
      try {
        const first = await new Promise<string>((resolve) => {
          watch.on("data", (m: { status: ServingStatus }) => resolve(m.status));
          watch.on("error", () => {});
          watch.on("status", (s: grpc.StatusObject) => resolve(`ended with ${grpc.status[s.code]}`));
        });
        expect(first).toBe("SERVICE_UNKNOWN");
      } finally {
        watch.cancel();
        client.close();
      }
    });
  });

  test("health Watch streams SERVING, then NOT_SERVING or its end once the server shuts down", async () => {
    const target = await start();
    const client = healthClient(target.port);
    const watch = (
      client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: ServingStatus }> }
    ).Watch({ service: "" });
    const statuses: ServingStatus[] = [];
    let ended: grpc.StatusObject | null = null;
    try {
      let onChange = () => {};
      const change = () => new Promise<void>((resolve) => (onChange = resolve));
      let next = change();
      watch.on("data", (m: { status: ServingStatus }) => {
        statuses.push(m.status);
        onChange();
      });
      watch.on("error", () => {}); // the end is read from "status"
      watch.on("status", (s: grpc.StatusObject) => {
        ended = s;
        onChange();
      });
      await next;
      expect(statuses).toEqual(["SERVING"]);
      void target.shutdown(); // awaited in finally: shutdown is idempotent
      // Bounded by the stream: each turn sees a new message or the end.
      for (let turns = 0; turns < 10 && ended === null && !statuses.includes("NOT_SERVING"); turns++) {
        next = change();
        await next;
      }
      expect(ended !== null || statuses.includes("NOT_SERVING")).toBe(true);
      expect(statuses.slice(1).every((s) => s === "NOT_SERVING")).toBe(true);
    } finally {
      watch.cancel();
      client.close();
      await target.shutdown();
    }
  });
});
