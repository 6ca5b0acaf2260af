/**
 * Helpers of the CLI tests: the `featurestore` command run as a child process (`bun
 * src/cli/bin.ts`, what `npx featurestore` runs), against servers started by the durable
 * fixture (real processes on free ports, killed by PID in each test's `finally`).
 */
import { join } from "node:path";
import type { Subprocess } from "bun";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest a CLI run may take in a test, ms. */
export const CLI_TIMEOUT_MS = 60_000;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
  stdin?: string;
}

/** Starts `featurestore args...`; the caller waits for it or kills it. */
export function spawnCli(args: readonly string[], opts: CliOptions = {}): Subprocess<"pipe", "pipe", "pipe"> {
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  // The tests' own environment must not leak into the command under test.
  for (const k of ["FEATURESTORE_SERVER", "FEATURESTORE_TOKEN", "FEATURESTORE_CACERT", "FEATURESTORE_TLS"])
    if (opts.env?.[k] === undefined) delete env[k];
  const proc = Bun.spawn([process.execPath, "src/cli/bin.ts", ...args], {
    cwd: ROOT,
    env,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (opts.stdin !== undefined) proc.stdin.write(opts.stdin);
  proc.stdin.end();
  return proc;
}

/** Runs `featurestore args...` to its end (killed after CLI_TIMEOUT_MS). */
export async function cli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  const proc = spawnCli(args, opts);
  const timer = setTimeout(() => proc.kill("SIGKILL"), CLI_TIMEOUT_MS);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** The lines of NDJSON output, parsed. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}
