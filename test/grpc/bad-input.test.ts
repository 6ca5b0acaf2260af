/**
 * The native gRPC port under input no stock client sends (raw sockets and raw HTTP/2 streams)
 * and under many calls at once: each bad request gets its status, the connection or stream it
 * came on is the only one affected, and a fresh grpc-js call is served afterwards.
 */
import { describe, expect, test } from "bun:test";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Transport } from "../../src/metrics/hot.ts";
import {
  call,
  type FeatureStoreTarget,
  featureStoreClient,
  type GetFeaturesResponse,
  getRequestBytes,
  grpcHeaders,
  lengthPrefixed,
  OWN_CONNECTION,
  ok,
  rawRequest,
  SERVICE,
  startFeatureStore,
} from "./fixture.ts";

const GET = `/${SERVICE}/GetFeatures`;
const SET = `/${SERVICE}/SetFeatures`;
/** Messages up to 64 KiB, and 1 MiB (the least allowed) for bytes of messages still arriving. */
const MEMORY_LIMITS = {
  MAX_FRAME_BYTES: "65536",
  MAX_PENDING_OUTPUT_BYTES: "65536",
  MAX_CLIENT_MEMORY_BYTES: "1048576",
};

/** Runs `fn` against a fresh feature store, then checks it still serves a new client, then stops it. */
async function withStore(
  fn: (store: FeatureStoreTarget) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const store = await startFeatureStore(env);
  try {
    await fn(store);
    await expectServing(store.port);
  } finally {
    await store.shutdown();
  }
}

/** A new grpc-js client, on its own connection, can write and read back. */
async function expectServing(port: number): Promise<void> {
  const client = featureStoreClient(port, OWN_CONNECTION);
  try {
    await ok(client, "SetFeatures", { entity_id: "health", features: { ok: { bool_value: true } } });
    const got = await ok<GetFeaturesResponse>(client, "GetFeatures", { entity_id: "health" });
    expect(got.found).toBe(true);
  } finally {
    client.close();
  }
}

/** A tiny seeded PRNG, so that the garbage is the same on every run. */
function garbage(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Writes `bytes` on a new TCP connection and resolves once the server has closed it. */
function sendAndWaitForClose(port: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(bytes));
    socket.on("data", () => {}); // the GOAWAY nghttp2 sends before closing
    socket.on("error", () => {}); // a reset is a close too
    socket.on("close", () => resolve());
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error("the server kept a connection open that did not start with the HTTP/2 preface"));
    });
  });
}

/** An unknown path through grpc-js itself: the bytes are passed through as they are. */
function callPath(client: grpc.Client, path: string): Promise<grpc.status> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      getRequestBytes("user:1"),
      (err) => resolve(err ? err.code : grpc.status.OK),
    );
  });
}

describe("the gRPC port under bad input", () => {
  test("garbage instead of the HTTP/2 preface closes that connection and nothing else", async () => {
    await withStore(async (store) => {
      for (const seed of [1, 2, 0x1234567]) await sendAndWaitForClose(store.port, garbage(4096, seed));
      await sendAndWaitForClose(store.port, Buffer.from("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    });
  });

  test("a length prefix that promises more bytes than the stream carries is INVALID_ARGUMENT", async () => {
    await withStore(async (store) => {
      const lying = lengthPrefixed(Buffer.alloc(10), 1000);
      const answer = await rawRequest(store.port, grpcHeaders(GET), [lying]);
      expect(answer.status).toBe(200);
      expect(answer.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });

  test("a length prefix over MAX_FRAME_BYTES is RESOURCE_EXHAUSTED before the body is sent", async () => {
    await withStore(
      async (store) => {
        const prefix = lengthPrefixed(Buffer.alloc(0), 65_537);
        // The stream stays open and no body follows: the prefix alone must be answered.
        const answer = await rawRequest(store.port, grpcHeaders(SET), [prefix], "open");
        expect(answer.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
        expect(answer.grpcMessage).toContain("MAX_FRAME_BYTES");
        const huge = await rawRequest(
          store.port,
          grpcHeaders(SET),
          [lengthPrefixed(Buffer.alloc(0), 2 ** 32 - 1)],
          "open",
        );
        expect(huge.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
      },
      { MAX_FRAME_BYTES: "65536" },
    );
  });

  test("bytes held for unfinished messages over all calls are bounded by MAX_CLIENT_MEMORY_BYTES", async () => {
    // 20 calls of 60,000 bytes each, none finished, against a 1 MiB budget: at most 17 fit, the
    // rest are refused at once; the ones held end at their deadline.
    await withStore(async (store) => {
      const partial = lengthPrefixed(Buffer.alloc(60_000, 1), 65_000);
      const headers = grpcHeaders(SET, { "grpc-timeout": "3S" });
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => rawRequest(store.port, headers, [partial], "open")),
      );
      const codes = answers.map((a) => grpc.status[a.grpcStatus ?? -1]);
      expect(codes.filter((c) => c === "RESOURCE_EXHAUSTED").length).toBeGreaterThanOrEqual(3);
      expect(codes.filter((c) => c !== "RESOURCE_EXHAUSTED" && c !== "DEADLINE_EXCEEDED")).toEqual([]);
    }, MEMORY_LIMITS);
  });

  test("bytes of unfinished messages are given back when the stream ends or is reset mid-message", async () => {
    // A 1 MiB budget for bytes of messages still arriving, 60,000 bytes held by each call here:
    // forty calls would exhaust it many times over if any of them kept its bytes.
    await withStore(async (store) => {
      const partial = lengthPrefixed(Buffer.alloc(60_000, 1), 65_000);
      for (let i = 0; i < 40; i++) {
        const ended = await rawRequest(store.port, grpcHeaders(SET), [partial], i % 2 ? "end" : "reset");
        if (i % 2) expect(ended.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
      }
      const client = featureStoreClient(store.port);
      try {
        const big = { blob: { bytes_value: Buffer.alloc(60_000, 2) } };
        await ok(client, "SetFeatures", { entity_id: "user:big", features: big });
      } finally {
        client.close();
      }
    }, MEMORY_LIMITS);
  });

  test("a deadline that passes while the message is still arriving is DEADLINE_EXCEEDED", async () => {
    await withStore(async (store) => {
      const half = lengthPrefixed(getRequestBytes("user:1")).subarray(0, 8);
      const answer = await rawRequest(
        store.port,
        grpcHeaders(GET, { "grpc-timeout": "50m" }),
        [half],
        "open",
      );
      expect(answer.grpcStatus).toBe(grpc.status.DEADLINE_EXCEEDED);
    });
  });

  test("a malformed grpc-timeout is INVALID_ARGUMENT and an unknown grpc-encoding UNIMPLEMENTED", async () => {
    await withStore(async (store) => {
      const body = [lengthPrefixed(getRequestBytes("user:1"))];
      const timeout = await rawRequest(store.port, grpcHeaders(GET, { "grpc-timeout": "soon" }), body);
      expect(timeout.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
      const encoding = await rawRequest(store.port, grpcHeaders(GET, { "grpc-encoding": "br" }), body);
      expect(encoding.grpcStatus).toBe(grpc.status.UNIMPLEMENTED);
    });
  });

  test("an unknown service and an unknown method are UNIMPLEMENTED", async () => {
    await withStore(async (store) => {
      const client = featureStoreClient(store.port);
      try {
        expect(grpc.status[await callPath(client, "/nope.v1.Nothing/GetFeatures")]).toBe("UNIMPLEMENTED");
        expect(grpc.status[await callPath(client, `/${SERVICE}/GetEverything`)]).toBe("UNIMPLEMENTED");
        expect(grpc.status[await callPath(client, `/${SERVICE}/GetFeatures`)]).toBe("OK");
      } finally {
        client.close();
      }
    });
  });

  test("a body that is not a valid protobuf message is INVALID_ARGUMENT", async () => {
    await withStore(async (store) => {
      const bodies = [
        [0x0a, 0x50, 0x61], // entity_id says 80 bytes, 1 follows
        [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // an 11-byte varint
        [0x00, 0x01], // field number 0
        [0x0f], // wire type 7
      ];
      for (const body of bodies) {
        const answer = await rawRequest(store.port, grpcHeaders(GET), [lengthPrefixed(Buffer.from(body))]);
        expect({ body, status: answer.grpcStatus }).toEqual({ body, status: grpc.status.INVALID_ARGUMENT });
      }
    });
  });

  test("a SetFeatures whose value has the wrong wire shape is INVALID_ARGUMENT and writes nothing", async () => {
    await withStore(async (store) => {
      /** SetFeaturesRequest { entity_id: "u", features: { f: <value bytes> } } */
      const setWith = (value: number[]) => {
        const entry = [0x0a, 0x01, 0x66, 0x12, value.length, ...value];
        return Buffer.from([0x0a, 0x01, 0x75, 0x12, entry.length, ...entry]);
      };
      const shapes = {
        "a float_list of 3 bytes": [0x32, 0x05, 0x0a, 0x03, 0x01, 0x02, 0x03],
        "int_value as length-delimited": [0x0a, 0x01, 0x01],
        "a string_value that is not UTF-8": [0x1a, 0x02, 0xc3, 0x28],
      };
      for (const [shape, value] of Object.entries(shapes)) {
        const answer = await rawRequest(store.port, grpcHeaders(SET), [lengthPrefixed(setWith(value))]);
        expect({ shape, status: answer.grpcStatus }).toEqual({ shape, status: grpc.status.INVALID_ARGUMENT });
      }
      const client = featureStoreClient(store.port);
      try {
        expect((await ok<GetFeaturesResponse>(client, "GetFeatures", { entity_id: "u" })).found).toBe(false);
      } finally {
        client.close();
      }
    });
  });

  test("a request flagged compressed without a grpc-encoding is INVALID_ARGUMENT", async () => {
    await withStore(async (store) => {
      const message = lengthPrefixed(getRequestBytes("user:1"));
      message[0] = 1;
      const answer = await rawRequest(store.port, grpcHeaders(GET), [message]);
      expect(answer.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });

  test("a request with no message, or with two, is INVALID_ARGUMENT", async () => {
    await withStore(async (store) => {
      const none = await rawRequest(store.port, grpcHeaders(GET), []);
      expect(none.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
      const one = lengthPrefixed(getRequestBytes("user:1"));
      const two = await rawRequest(store.port, grpcHeaders(GET), [Buffer.concat([one, one])]);
      expect(two.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });

  test("a content type other than application/grpc is answered with HTTP 415", async () => {
    await withStore(async (store) => {
      for (const contentType of ["application/json", "text/plain", ""]) {
        const answer = await rawRequest(store.port, grpcHeaders(GET, { "content-type": contentType }), [
          Buffer.from("{}"),
        ]);
        expect({ contentType, status: answer.status }).toEqual({ contentType, status: 415 });
        expect(answer.grpcStatus).toBeNull();
      }
    });
  });
});

describe("the gRPC port under many calls at once", () => {
  test("1,000 concurrent calls on one connection are all answered", async () => {
    await withStore(async (store) => {
      const client = featureStoreClient(store.port);
      try {
        await ok(client, "SetFeatures", { entity_id: "user:hot", features: { n: { int_value: "7" } } });
        const answers = await Promise.all(
          Array.from({ length: 1000 }, (_, i) =>
            call<GetFeaturesResponse>(client, "GetFeatures", { entity_id: i % 2 ? "user:hot" : `user:${i}` }),
          ),
        );
        const failed = answers.filter((a) => !a.ok);
        expect(failed).toEqual([]);
        answers.forEach((a, i) => {
          expect(a.ok && a.value.found).toBe(i % 2 === 1);
        });
      } finally {
        client.close();
      }
    });
  });

  test("concurrent writes waiting for the same commit each get their own answer", async () => {
    await withStore(
      async (store) => {
        const client = featureStoreClient(store.port);
        try {
          const answers = await Promise.all(
            Array.from({ length: 200 }, (_, i) =>
              call<{ written: number }>(client, "BatchSet", {
                items: Array.from({ length: i + 1 }, (_, j) => ({
                  entity_id: `w:${i}:${j}`,
                  features: { n: { int_value: String(j) } },
                })),
              }),
            ),
          );
          expect(answers.map((a) => (a.ok ? a.value.written : grpc.status[a.code]))).toEqual(
            Array.from({ length: 200 }, (_, i) => i + 1),
          );
        } finally {
          client.close();
        }
      },
      { DURABILITY: "sync" },
    );
  });

  test("500 clients, each on its own connection, each making one call, are all answered", async () => {
    await withStore(async (store) => {
      const clients = Array.from({ length: 500 }, () => featureStoreClient(store.port, OWN_CONNECTION));
      try {
        const answers = await Promise.all(
          clients.map((c, i) => call<GetFeaturesResponse>(c, "GetFeatures", { entity_id: `user:${i}` })),
        );
        expect(answers.filter((a) => !a.ok)).toEqual([]);
        // They really were 500 connections: the server counts them while they are open.
        expect(store.server.metrics.openConnections[Transport.Grpc]).toBeGreaterThanOrEqual(500);
      } finally {
        for (const c of clients) c.close();
      }
    });
  });
});
