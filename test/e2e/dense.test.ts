/**
 * The dense read over real sockets: the TCP client against the TCP server, and the decode helper
 * on BatchGet answers fetched over Connect (binary) from the HTTP adapter.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  CellStatus,
  decodeDenseBatchGet,
  FeatureStoreClient,
  FeatureVectorSpec,
} from "../../src/client/index.ts";
import { encodeSetFeaturesRequest } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { startTestHttpServer } from "../http/fixture.ts";
import { startTestTcpServer } from "./fixture.ts";

let tcp: ReturnType<typeof startTestTcpServer>;
let client: FeatureStoreClient;
let http: ReturnType<typeof startTestHttpServer>;

const spec = new FeatureVectorSpec([
  "clicks",
  { name: "ctr", default: -1 },
  { name: "emb", width: 4 },
  { name: "country", kind: "string", map: (c) => ["US", "DE", "FR"].indexOf(c) },
]);

function features(i: number) {
  return {
    clicks: i,
    ctr: i / 100,
    emb: new Float32Array([i, i + 0.5, -i, 0.25]),
    country: ["US", "DE", "FR"][i % 3]!,
  };
}

function expectRow(values: Float32Array, row: number, i: number) {
  expect(Array.from(values.subarray(row * spec.width, (row + 1) * spec.width))).toEqual([
    i,
    Math.fround(i / 100),
    i,
    i + 0.5,
    -i,
    0.25,
    i % 3,
  ]);
}

beforeAll(async () => {
  tcp = startTestTcpServer();
  client = await FeatureStoreClient.connect({ servers: [`127.0.0.1:${tcp.port}`], connectionsPerServer: 2 });
  await client.batchSet(
    Array.from({ length: 200 }, (_, i) => ({ entityId: `u${i}`, features: features(i) })),
  );
  http = startTestHttpServer();
});
afterAll(async () => {
  await client.close();
  await tcp.server.drain(1000);
  await http.server.stop();
});

describe("dense read over TCP", () => {
  test("a BatchGet of 100 fills 100 rows in id order, missing ids included", async () => {
    const ids = Array.from({ length: 100 }, (_, j) => (j % 10 === 9 ? `missing${j}` : `u${199 - j}`));
    const out = spec.newBatch(100);
    const b = await client.getDense(ids, spec, { out });
    expect(b.rows).toBe(100);
    for (let j = 0; j < 100; j++) {
      if (j % 10 === 9) {
        expect(b.found[j]).toBe(0);
        expect(Array.from(b.row(j))).toEqual([0, -1, 0, 0, 0, 0, 0]);
        expect(b.status[j * 4]).toBe(CellStatus.EntityMissing);
      } else {
        expect(b.found[j]).toBe(1);
        expectRow(b.values, j, 199 - j);
      }
    }
  });

  test("many reads in flight at once, each with its own batch, all land in their own rows", async () => {
    const outs = Array.from({ length: 64 }, () => spec.newBatch(3));
    const reads = outs.map((out, k) => client.getDense([`u${k}`, `u${k + 1}`, `u${k + 2}`], spec, { out }));
    const done = await Promise.all(reads);
    done.forEach((b, k) => {
      expect(b).toBe(outs[k]!);
      for (let r = 0; r < 3; r++) expectRow(b.values, r, k + r);
    });
  });

  test("fetch: 'all' over the wire reads the same cells", async () => {
    const all = new FeatureVectorSpec(["clicks", { name: "emb", width: 4 }], { fetch: "all" });
    const b = await client.getDense(["u7", "nobody"], all);
    expect(Array.from(b.values)).toEqual([7, 7, 7.5, -7, 0.25, 0, 0, 0, 0, 0]);
  });
});

describe("dense decode of a BatchGet fetched over Connect", () => {
  test("decodeDenseBatchGet reads the body of a binary Connect answer", async () => {
    const w = new ProtoWriter(256);
    for (let i = 0; i < 5; i++) {
      w.reset();
      encodeSetFeaturesRequest(w, { entityId: `c${i}`, features: features(i) });
      const res = await fetch(http.rpc("SetFeatures"), {
        method: "POST",
        headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
        body: w.finish(),
      });
      expect(res.status).toBe(200);
    }
    const ids = ["c0", "c1", "nope", "c4"];
    const res = await fetch(http.rpc("BatchGet"), {
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body: spec.batchGetRequest(ids),
    });
    expect(res.status).toBe(200);
    const b = decodeDenseBatchGet(spec, await res.bytes(), undefined, ids.length);
    expectRow(b.values, 0, 0);
    expectRow(b.values, 1, 1);
    expect(b.found[2]).toBe(0);
    expectRow(b.values, 3, 4);
  });
});
