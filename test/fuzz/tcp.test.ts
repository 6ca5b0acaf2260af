/** Fuzzing the TCP transport (issue 8): random and mutated frames on a real server, then a fresh connection is served. */
import { afterAll, describe, test } from "bun:test";
import { runFuzz, testBudget } from "./runner.ts";
import { stopTcpServer, tcpProperties } from "./tcp.props.ts";

afterAll(stopTcpServer);

describe("fuzz: TCP frames", () => {
  for (const p of tcpProperties)
    test(p.name, async () => {
      const r = await runFuzz(p, testBudget(p), `bun test test/fuzz/tcp.test.ts -t '${p.name}'`);
      if (r.failure) throw new Error(r.failure);
    });
});
