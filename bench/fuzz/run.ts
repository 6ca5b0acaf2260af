/**
 * The long fuzz run (issue 8): the properties of test/fuzz (service, TCP, HTTP) with a large
 * budget and a fresh seed, printed first so that any run can be repeated.
 *
 * ```
 * bun run fuzz                                   200,000 cases, no time limit
 * FUZZ_CASES=1000000 FUZZ_SECONDS=1800 bun run fuzz
 * FUZZ_SEED=123 FUZZ_ONLY="tcp:" bun run fuzz    one seed, the properties whose name contains "tcp:"
 * FUZZ_SEED=123 FUZZ_PATH=... FUZZ_ONLY="<name>" bun run fuzz   replay one failure
 * ```
 *
 * FUZZ_CASES and FUZZ_SECONDS are shared among the properties by their `weight` (the service
 * properties take most: they cost microseconds a case, the TCP and HTTP ones milliseconds).
 * FUZZ_SECONDS=0 (the default) sets no time limit. Exits 1 when any property fails.
 */
import { cpus } from "node:os";
import { httpProperties, stopHttpServer } from "../../test/fuzz/http.props.ts";
import { envInt, type FuzzProperty, type FuzzResult, runFuzz } from "../../test/fuzz/runner.ts";
import { serviceProperties } from "../../test/fuzz/service.props.ts";
import { stopTcpServer, tcpProperties } from "../../test/fuzz/tcp.props.ts";

/** Cases of the whole run when FUZZ_CASES is not set. */
const DEFAULT_CASES = 200_000;

interface RunOptions {
  cases: number;
  seconds: number;
  seed: number;
  path?: string;
  only?: string;
}

/** Reads the environment; every value is validated, with the variable's name in the error. */
function options(): RunOptions {
  const path = process.env.FUZZ_PATH;
  const only = process.env.FUZZ_ONLY;
  return {
    cases: envInt("FUZZ_CASES") ?? DEFAULT_CASES,
    seconds: envInt("FUZZ_SECONDS") ?? 0,
    seed: envInt("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31),
    ...(path ? { path } : {}),
    ...(only ? { only } : {}),
  };
}

async function main(): Promise<number> {
  const o = options();
  const all = [...serviceProperties, ...tcpProperties, ...httpProperties] as FuzzProperty<unknown>[];
  const chosen = o.only ? all.filter((p) => p.name.includes(o.only!)) : all;
  if (chosen.length === 0) {
    console.error(
      `FUZZ_ONLY="${o.only}" matches no property; names:\n${all.map((p) => `  ${p.name}`).join("\n")}`,
    );
    return 2;
  }
  const weights = chosen.reduce((n, p) => n + p.weight, 0);
  console.log(
    `fuzz: seed ${o.seed}, ${o.cases} cases${o.seconds ? `, ${o.seconds} s` : ""}; ` +
      `bun ${Bun.version}, ${cpus()[0]?.model ?? "unknown CPU"} x${cpus().length}`,
  );
  const results: FuzzResult[] = [];
  try {
    for (const p of chosen) {
      const share = p.weight / weights;
      const r = await runFuzz(
        p,
        {
          runs: Math.max(1, Math.round(o.cases * share)),
          seconds: o.seconds * share,
          seed: o.seed,
          ...(o.path ? { path: o.path } : {}),
        },
        `FUZZ_ONLY="${p.name}" bun run fuzz`,
      );
      results.push(r);
      const rate = r.runs / (r.ms / 1000);
      console.log(
        `${r.failure ? "FAIL" : "ok  "} ${String(r.runs).padStart(8)} cases ${(r.ms / 1000).toFixed(1).padStart(7)} s ${rate.toFixed(0).padStart(7)}/s  ${p.name}`,
      );
      if (r.failure) console.log(r.failure);
    }
  } finally {
    await stopTcpServer();
    await stopHttpServer();
  }
  const failed = results.filter((r) => r.failure);
  const cases = results.reduce((n, r) => n + r.runs, 0);
  const seconds = results.reduce((n, r) => n + r.ms, 0) / 1000;
  console.log(
    `fuzz: ${cases} cases in ${seconds.toFixed(1)} s, ${failed.length} of ${results.length} properties failed (seed ${o.seed})`,
  );
  return failed.length > 0 ? 1 : 0;
}

process.exit(await main());
