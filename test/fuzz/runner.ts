/**
 * Runs a fuzz property with fast-check under a fixed seed and turns a failure into a report
 * that says how to replay it. Shared by the `bun test` part and bench/fuzz/run.ts.
 *
 * Environment (all optional):
 * - `FUZZ_SEED`: the seed of every property (default: a fixed seed per property in tests, a
 *   fresh one per run in the long run, printed either way);
 * - `FUZZ_PATH`: with FUZZ_SEED, replays one failing case (the `path` a report prints);
 * - `FUZZ_CASES`, `FUZZ_SECONDS`: the long run's budget (bench/fuzz/run.ts).
 */
import fc from "fast-check";

/** A property: inputs, and a check that throws on a violation. */
export interface FuzzProperty<T> {
  /** A sentence about the behaviour checked. */
  name: string;
  arbitrary: fc.Arbitrary<T>;
  check: (value: T) => void | Promise<void>;
  /** True when `check` returns a promise (the TCP and HTTP properties). */
  async: boolean;
  /** Cases in `bun test`. */
  testRuns: number;
  /** Share of the long run's FUZZ_CASES and FUZZ_SECONDS, relative to the others. */
  weight: number;
  /** Called once before the first case (start servers, seed records). */
  setup?: () => void | Promise<void>;
}

export interface FuzzBudget {
  runs: number;
  /** Stop generating new cases after this long (shrinking a failure included); 0 = no limit. */
  seconds: number;
  seed: number;
  path?: string;
}

export interface FuzzResult {
  name: string;
  seed: number;
  runs: number;
  ms: number;
  /** The report, when the property failed. */
  failure?: string;
}

/** A stable 31-bit seed from a name (FNV-1a), so that each property has its own fixed seed. */
export function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 1;
}

/** Parses a non-negative integer environment variable; throws naming it when malformed. */
export function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  return n;
}

/** The budget of a property in `bun test`: its testRuns, its fixed seed unless FUZZ_SEED says otherwise. */
export function testBudget<T>(p: FuzzProperty<T>): FuzzBudget {
  const path = process.env.FUZZ_PATH;
  return {
    runs: p.testRuns,
    seconds: 60,
    seed: envInt("FUZZ_SEED") ?? seedOf(p.name),
    ...(path ? { path } : {}),
  };
}

/** Runs the property; never throws for a property failure (see `failure`). `replay` is the command a report prints. */
export async function runFuzz<T>(
  p: FuzzProperty<T>,
  budget: FuzzBudget,
  replay: string,
): Promise<FuzzResult> {
  await p.setup?.();
  const params: fc.Parameters<[T]> = {
    seed: budget.seed,
    numRuns: budget.runs,
    ...(budget.path ? { path: budget.path } : {}),
    ...(budget.seconds > 0
      ? { plugins: [fc.interruptAfterTimeLimit(budget.seconds * 1000) as fc.Plugin<[T]>] }
      : {}),
  };
  const t0 = performance.now();
  const details = p.async
    ? await fc.check(
        fc.asyncProperty(p.arbitrary, async (v) => {
          await p.check(v);
        }),
        params,
      )
    : fc.check(
        fc.property(p.arbitrary, (v) => {
          p.check(v);
        }),
        params,
      );
  const ms = performance.now() - t0;
  const result: FuzzResult = { name: p.name, seed: budget.seed, runs: details.numRuns, ms };
  if (details.failed && details.counterexample !== null) {
    const err = details.errorInstance;
    result.failure = [
      `fuzz property failed: ${p.name}`,
      `  after ${details.numRuns} case(s), shrunk ${details.numShrinks} time(s)${details.interrupted ? " (interrupted)" : ""}`,
      `  replay: FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath} ${replay}`,
      `  counterexample: ${fc.stringify(details.counterexample[0])}`,
      `  ${err instanceof Error ? err.message : String(err)}`,
    ].join("\n");
  } else if (details.failed) {
    result.failure = `fuzz property failed: ${p.name}: ${details.errorInstance ?? "no counterexample (too many skips?)"}`;
  }
  return result;
}
