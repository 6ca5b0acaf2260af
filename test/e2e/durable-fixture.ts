/**
 * Helpers of the durability tests: the server as a child process (`bun src/main.ts`) over a
 * DATA_DIR, so that it can be killed for real, and the items the writers send, each with a
 * value derived from its index so that a read can be checked exactly without keeping copies.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { FeatureStoreClient, type Features, type FeaturesInput } from "../../src/client/index.ts";

/** The repository root: the child runs `src/main.ts` from there. */
const ROOT = join(import.meta.dir, "..", "..");
/** Longest wait for a server to print its listening line, ms (start-up is ~0.2-1 s here). */
export const START_TIMEOUT_MS = 15_000;
/** Longest wait for a signalled or failing process to exit, ms. */
export const EXIT_TIMEOUT_MS = 15_000;
/** Polling step of the bounded waits, ms. */
const POLL_MS = 10;

/** Environment of every test server: loopback, free ports, a cache far below the defaults. */
export function serverEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOST: "127.0.0.1",
    TCP_PORT: "0",
    HTTP_PORT: "0",
    GRPC_PORT: "0",
    DATA_DIR: dataDir,
    CACHE_SIZE: "400000",
    CACHE_MAX_BYTES: String(128 << 20),
    LOG_LEVEL: "info",
    ...extra,
  };
}

/** A fresh directory under the system temp dir; remove it with `removeDir`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `fs-durable-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A server child process with everything it printed so far. */
export class ServerProcess {
  tcpPort = 0;
  httpPort = 0;
  stdout = "";
  stderr = "";
  exitCode: number | null = null;
  readonly exited: Promise<number>;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    // Both pipes are drained for the whole life of the child, so it never blocks on a log line.
    void this.pump(proc.stdout, (s) => {
      this.stdout += s;
      if (this.tcpPort === 0) {
        const m = this.stdout.match(/"tcpPort":(\d+),"httpPort":(\d+)/);
        if (m) {
          this.tcpPort = Number(m[1]);
          this.httpPort = Number(m[2]);
        }
      }
    });
    void this.pump(proc.stderr, (s) => {
      this.stderr += s;
    });
    this.exited = proc.exited.then((code) => {
      this.exitCode = code;
      return code;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** `host:port` of the TCP listener. */
  get address(): string {
    return `127.0.0.1:${this.tcpPort}`;
  }

  get output(): string {
    return this.stdout + this.stderr;
  }

  /** Sends `signal` to this process (by its PID) if it still runs. */
  signal(signal: "SIGKILL" | "SIGTERM"): void {
    if (this.exitCode === null) this.proc.kill(signal);
  }

  /** Waits for the exit, at most EXIT_TIMEOUT_MS (then kills it and throws). */
  async waitExit(): Promise<number> {
    const timeout = Bun.sleep(EXIT_TIMEOUT_MS).then(() => -1);
    const code = await Promise.race([this.exited, timeout]);
    if (code === -1) {
      this.signal("SIGKILL");
      await this.exited;
      throw new Error(`server ${this.pid} did not exit within ${EXIT_TIMEOUT_MS} ms:\n${this.output}`);
    }
    return code;
  }

  /** Kills the process with SIGKILL and waits for it (the `finally` of every test). */
  async stop(): Promise<void> {
    this.signal("SIGKILL");
    await this.exited;
  }

  /** GET on the HTTP listener; resolves with the status. */
  async httpStatus(path: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}${path}`);
    await res.arrayBuffer();
    return res.status;
  }

  private async pump(stream: ReadableStream<Uint8Array>, into: (s: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) into(decoder.decode(chunk, { stream: true }));
  }
}

/** Spawns `bun src/main.ts` with `env` (on top of this process's environment). */
export function spawnServer(env: Record<string, string>): ServerProcess {
  const proc = Bun.spawn([process.execPath, "src/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return new ServerProcess(proc);
}

/**
 * Spawns a server and waits until it listens (its JSON log line names the ports). Throws with
 * its output if it exits first or does not listen within START_TIMEOUT_MS; `track` receives the
 * process before anything can fail, so the caller's `finally` stops it.
 */
export async function startServer(
  env: Record<string, string>,
  track: (s: ServerProcess) => void,
): Promise<ServerProcess> {
  const server = spawnServer(env);
  track(server);
  for (let waited = 0; server.tcpPort === 0; waited += POLL_MS) {
    if (server.exitCode !== null)
      throw new Error(`server exited with ${server.exitCode} before listening:\n${server.output}`);
    if (waited >= START_TIMEOUT_MS)
      throw new Error(`server did not listen within ${START_TIMEOUT_MS} ms:\n${server.output}`);
    await Bun.sleep(POLL_MS);
  }
  return server;
}

/** Runs a server that is expected to fail at start; resolves with its exit code and output. */
export async function runToExit(
  env: Record<string, string>,
  track: (s: ServerProcess) => void,
): Promise<{ code: number; output: string; tcpPort: number }> {
  const server = spawnServer(env);
  track(server);
  const code = await server.waitExit();
  // The pipes are drained by the pumps; give them the last chunks.
  await Bun.sleep(POLL_MS);
  return { code, output: server.output, tcpPort: server.tcpPort };
}

/** A client of a few connections with a deadline long enough for fsync under load. */
export function connect(server: ServerProcess, connections = 2): Promise<FeatureStoreClient> {
  return FeatureStoreClient.connect({
    servers: [server.address],
    connectionsPerServer: connections,
    deadlineMs: 10_000,
    reconnect: { initialMs: 20, maxMs: 200 },
  });
}

// ---- items: every value is a function of an index ---------------------------------------------

export function itemId(i: number): string {
  return `item:${i}`;
}

/**
 * Version `version` of item i: an int, a string and a float list, all exact (the floats are
 * representable in float32).
 */
export function itemFeatures(i: number, version = 1): FeaturesInput {
  return {
    n: i * 16 + version,
    s: `v${version}:${i}-${"abcdefgh".slice(0, i % 8)}`,
    f: new Float32Array([(i % 4096) / 8, -(i % 100) / 4, version]),
  };
}

export function hotId(lane: number): string {
  return `hot:${lane}`;
}

/** Version v of a hot entity (one entity per writer lane, rewritten with increasing versions). */
export function hotFeatures(lane: number, v: number): FeaturesInput {
  return { ver: v, s: `hot${lane}-v${v}`, f: new Float32Array([v / 2]) };
}

/** Differences between a read record and the expected one, as text; "" when equal exactly. */
export function diff(got: Features, want: FeaturesInput): string {
  const out: string[] = [];
  const names = new Set([...Object.keys(got), ...Object.keys(want)]);
  for (const name of names) {
    const g = got[name];
    const w = want[name];
    const gs = g instanceof Float32Array ? `[${Array.from(g)}]` : JSON.stringify(g);
    const ws = w instanceof Float32Array ? `[${Array.from(w)}]` : JSON.stringify(w);
    if (gs !== ws) out.push(`${name}: got ${gs}, want ${ws}`);
  }
  return out.join("; ");
}

/**
 * Reads `ids` in BatchGet chunks, a few chunks at once, and calls `each(index, features|null)`
 * for every id, in order of `ids` within a chunk.
 */
export async function readAll(
  client: FeatureStoreClient,
  ids: readonly string[],
  each: (k: number, features: Features | null) => void,
  chunk = 1000,
  parallel = 4,
): Promise<void> {
  let next = 0;
  const reader = async () => {
    while (next < ids.length) {
      const from = next;
      next = Math.min(ids.length, next + chunk);
      const r = await client.batchGet(ids.slice(from, next));
      for (let j = 0; j < r.results.length; j++) {
        const res = r.results[j]!;
        each(from + j, res.found ? res.features : null);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, reader));
}
