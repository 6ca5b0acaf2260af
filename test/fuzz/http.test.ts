/** Fuzzing the HTTP adapter (issue 8): Connect binary and JSON, Connect GET and gRPC-web bodies on a real server. */
import { afterAll, describe, test } from "bun:test";
import { httpProperties, stopHttpServer } from "./http.props.ts";
import { runFuzz, testBudget } from "./runner.ts";

afterAll(stopHttpServer);

describe("fuzz: HTTP bodies", () => {
  for (const p of httpProperties)
    test(p.name, async () => {
      const r = await runFuzz(p, testBudget(p), `bun test test/fuzz/http.test.ts -t '${p.name}'`);
      if (r.failure) throw new Error(r.failure);
    });
});
