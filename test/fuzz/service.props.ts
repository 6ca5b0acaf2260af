/** Service-level fuzz properties: `FeatureService.handle` over a MemoryStore, checked by test/fuzz/oracle.ts. */
import fc from "fast-check";
import {
  arbMutatedStep,
  arbRandomStep,
  arbSteps,
  arbValidStep,
  arbValueBytesStep,
  type Step,
} from "./gen.ts";
import { ServiceHarness } from "./oracle.ts";
import type { FuzzProperty } from "./runner.ts";

let harness: ServiceHarness | undefined;
const h = () => {
  harness ??= new ServiceHarness();
  return harness;
};

/** Resets the store to the seeds, then runs and checks each request in turn. */
function checkSteps(steps: Step[]): void {
  const s = h();
  s.reset();
  for (const st of steps) s.check(st);
}

const one = (arb: fc.Arbitrary<Step>) => arb.map((s) => [s]);

export const serviceProperties: FuzzProperty<Step[]>[] = [
  {
    name: "service: random bytes under any method are answered or refused, never INTERNAL",
    arbitrary: one(arbRandomStep),
    check: checkSteps,
    async: false,
    testRuns: 600,
    weight: 1,
  },
  {
    name: "service: valid requests from protobuf-es are answered as protobuf-es reads them",
    arbitrary: fc.array(arbValidStep, { minLength: 1, maxLength: 4 }),
    check: checkSteps,
    async: false,
    testRuns: 600,
    weight: 1,
  },
  {
    name: "service: mutated requests never give INTERNAL, and whatever they store reads back",
    arbitrary: fc.array(arbMutatedStep, { minLength: 1, maxLength: 3 }),
    check: checkSteps,
    async: false,
    testRuns: 1200,
    weight: 3,
  },
  {
    name: "service: SetFeatures with FeatureValue bytes built at random stores only what protobuf-es can read",
    arbitrary: fc
      .tuple(arbValueBytesStep, fc.array(arbValidStep, { maxLength: 2 }))
      .map(([w, rest]) => [w, ...rest]),
    check: checkSteps,
    async: false,
    testRuns: 1200,
    weight: 3,
  },
  {
    name: "service: sequences of every kind of request keep the store readable and equal to the model",
    arbitrary: arbSteps,
    check: checkSteps,
    async: false,
    testRuns: 600,
    weight: 2,
  },
];
