/**
 * A Connect JSON BatchGet with many results is converted a slice at a time (context.ts
 * `jsonAnswer`), yielding to the event loop between slices: the text must be exactly what the
 * one-piece conversion writes.
 */
import { describe, expect, test } from "bun:test";
import { Method } from "../../src/codec/frame.ts";
import { encodeBatchGetRequest } from "../../src/codec/messages.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { outputJson } from "../../src/transport/http/context.ts";
import { loadSchema } from "../../src/transport/http/schema.ts";
import { postJson, startTestHttpServer } from "./fixture.ts";

describe("Connect JSON BatchGet answered in slices", () => {
  test("the text of a 300-result answer equals the one-piece conversion, hits and misses included", async () => {
    const s = startTestHttpServer();
    try {
      const items = Array.from({ length: 250 }, (_, i) => ({
        entityId: `e${i}`,
        features: {
          n: { intValue: String(i) },
          d: { doubleValue: i / 3 },
          s: { stringValue: `v${i}` },
          emb: { floatList: { values: [i, 0.5, -1.25] } },
          tags: { stringList: { values: ["a", String(i)] } },
          flag: { boolValue: i % 2 === 0 },
        },
      }));
      const set = await postJson(s.rpc("BatchSet"), { items });
      expect(set.status).toBe(200);
      const ids = Array.from({ length: 300 }, (_, i) => `e${(i * 7) % 320}`);
      const res = await fetch(s.rpc("BatchGet"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          entityIds: ids,
          featureNames: ["n", "emb", "tags", "flag", "d", "s", "none"],
        }),
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      // The same request through the service and the one-piece conversion.
      const req = new ProtoWriter(1024);
      encodeBatchGetRequest(req, ids, ["n", "emb", "tags", "flag", "d", "s", "none"]);
      const out = new ProtoWriter(1024);
      s.service.handle(Method.BatchGet, req.bytes, 0, req.pos, out);
      const m = [...loadSchema().methods.values()].find((x) => x.name === "BatchGet")!;
      expect(text).toBe(JSON.stringify(outputJson(m, out)));
      const body = JSON.parse(text) as { results: unknown[]; hits: number; misses: number };
      expect(body.results.length).toBe(300);
      expect(body.hits + body.misses).toBe(300);
      expect(body.misses).toBeGreaterThan(0);
    } finally {
      await s.server.stop();
    }
  });
});
