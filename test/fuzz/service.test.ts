/**
 * Fuzzing the service core (issue 8): random, mutated and hand-built request bodies through
 * `FeatureService.handle`, with protobuf-es as the oracle. A few thousand cases under fixed
 * seeds; `bun run fuzz` runs the same properties for longer (bench/fuzz/run.ts).
 */
import { describe, test } from "bun:test";
import { runFuzz, testBudget } from "./runner.ts";
import { serviceProperties } from "./service.props.ts";

describe("fuzz: FeatureService.handle", () => {
  for (const p of serviceProperties)
    test(p.name, async () => {
      const r = await runFuzz(p, testBudget(p), `bun test test/fuzz/service.test.ts -t '${p.name}'`);
      if (r.failure) throw new Error(r.failure);
    });
});
