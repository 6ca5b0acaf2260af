/**
 * Redis with its append-only file on: the durable configuration a user would compare against.
 * `appendfsync always` fsyncs the AOF before replying (per event-loop iteration, so pipelined
 * writes share one fsync, as our group commit does); `everysec` writes the AOF before replying
 * and fsyncs it once a second in a background thread. RDB snapshots are off (`save ""`), so the
 * AOF is the only persistence, and its directory is given (the same filesystem as ours).
 */
import { RedisClient } from "bun";
import { freePort, type Proc, spawnProc, waitForPort } from "../e2e/procs.ts";

export type AppendFsync = "always" | "everysec";

export interface RedisAof {
  proc: Proc;
  port: number;
  version: string;
  dir: string;
}

/** Starts redis-server with `appendonly yes`, `appendfsync <fsync>` and its files in `dir`. */
export async function startRedisAof(
  fsync: AppendFsync,
  dir: string,
  cpus: string | undefined,
): Promise<RedisAof> {
  const bin = Bun.which("redis-server");
  if (bin === null)
    throw new Error("redis-server not found: apt-get update && apt-get install -y redis-server");
  const port = freePort();
  const proc = spawnProc({
    name: `redis-${fsync}`,
    cmd: [
      bin,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--protected-mode",
      "no",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      fsync,
    ],
    cpus,
  });
  await waitForPort(port, proc);
  const v = Bun.spawnSync([bin, "--version"]).stdout.toString();
  return { proc, port, version: /v=([\d.]+)/.exec(v)?.[1] ?? v.trim(), dir };
}

/**
 * Rewrites the AOF now and waits for the rewrite to finish (at most `timeoutMs`), so that the
 * automatic rewrite (triggered when the AOF doubles past 64 MB) does not fork in the middle of
 * a measurement after the bulk load.
 */
export async function rewriteAof(port: number, timeoutMs = 60_000): Promise<void> {
  const c = new RedisClient(`redis://127.0.0.1:${port}`);
  await c.connect();
  const until = performance.now() + timeoutMs;
  const idle = async () => {
    while (performance.now() < until) {
      const info = (await c.send("INFO", ["persistence"])) as string;
      if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
      await Bun.sleep(100);
    }
    throw new Error(`an AOF rewrite on port ${port} did not finish within ${timeoutMs} ms`);
  };
  try {
    // The load may have started the automatic rewrite already: let it finish, then rewrite
    // again so that the new base holds every loaded entity.
    await idle();
    await c.send("BGREWRITEAOF", []);
    await Bun.sleep(100);
    await idle();
  } finally {
    c.close();
  }
}
