/**
 * Helpers of the ingestion tests: the consumer as a child process (`bun src/ingest/main.ts`) so
 * that it can be SIGKILLed for real, a Redis client for the test's own stream commands, and
 * entries whose final effect in the store can be checked exactly.
 *
 * Entry i writes feature `v<k>` = i of entity `e:<j>`, where j = i mod entities and k = i div
 * entities: no two entries write the same feature, so after every entry is applied each entity
 * holds exactly v0..v<n-1> with known values, whatever the order, however many times each entry
 * was replayed (sets are idempotent).
 */
import { join } from "node:path";
import { createClient, type RedisClientType } from "@redis/client";
import type { Subprocess } from "bun";
import type { FeatureStoreClient } from "../../src/client/index.ts";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest wait for a consumer to print its start line or to exit, ms. */
export const PROCESS_TIMEOUT_MS = 15_000;
/** Polling step of the bounded waits, ms. */
export const POLL_MS = 10;

/** A consumer child process with everything it printed so far. */
export class IngestProcess {
  stdout = "";
  stderr = "";
  exitCode: number | null = null;
  metricsPort = 0;
  readonly exited: Promise<number>;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    void this.pump(proc.stdout, (s) => {
      this.stdout += s;
      if (this.metricsPort === 0) {
        const m = this.stdout.match(/"msg":"ingest started".*"metricsPort":(\d+)/);
        if (m) this.metricsPort = Number(m[1]);
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

  get output(): string {
    return this.stdout + this.stderr;
  }

  /** Sends `signal` to this process, by its PID, if it still runs. */
  signal(signal: "SIGKILL" | "SIGTERM"): void {
    if (this.exitCode === null) this.proc.kill(signal);
  }

  /** Waits for the exit, at most PROCESS_TIMEOUT_MS (then SIGKILLs it and throws). */
  async waitExit(): Promise<number> {
    const code = await Promise.race([this.exited, Bun.sleep(PROCESS_TIMEOUT_MS).then(() => -1)]);
    if (code === -1) {
      await this.stop();
      throw new Error(`consumer ${this.pid} did not exit within ${PROCESS_TIMEOUT_MS} ms:\n${this.output}`);
    }
    return code;
  }

  /** SIGKILL and wait (the `finally` of every test). */
  async stop(): Promise<void> {
    this.signal("SIGKILL");
    await this.exited;
  }

  /** The stats of its "ingest stopped" line (a graceful stop), or null. */
  finalStats(): Record<string, number> | null {
    const line = this.stdout.split("\n").find((l) => l.includes('"msg":"ingest stopped"'));
    return line === undefined ? null : JSON.parse(line);
  }

  private async pump(stream: ReadableStream<Uint8Array>, into: (s: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) into(decoder.decode(chunk, { stream: true }));
  }
}

/**
 * Spawns `bun src/ingest/main.ts <args>` (metrics on a free port) and waits for its start line;
 * `track` gets the process first, so the caller's `finally` stops it whatever happens.
 */
export async function startConsumer(
  args: string[],
  track: (p: IngestProcess) => void,
): Promise<IngestProcess> {
  const proc = Bun.spawn([process.execPath, "src/ingest/main.ts", "--metrics-port", "0", ...args], {
    cwd: ROOT,
    env: { ...process.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const p = new IngestProcess(proc);
  track(p);
  await waitFor(
    () => {
      if (p.exitCode !== null) throw new Error(`consumer exited with ${p.exitCode}:\n${p.output}`);
      return p.metricsPort !== 0;
    },
    PROCESS_TIMEOUT_MS,
    () => `consumer did not start:\n${p.output}`,
  );
  return p;
}

/** Polls `cond` every POLL_MS until it is true; throws `message()` after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  message: () => string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(message());
    await Bun.sleep(POLL_MS);
  }
}

/** A plain node-redis client for the test's own commands (RESP3: XINFO answers as objects). */
export async function redisClient(url: string): Promise<RedisClientType> {
  const c = createClient({ url, RESP: 3 }) as unknown as RedisClientType;
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** XINFO GROUPS of `stream`, the entry of `group`. */
export async function groupInfo(
  r: RedisClientType,
  stream: string,
  group: string,
): Promise<{ pending: number; lag: number | null; entriesRead: number | null; consumers: number }> {
  const groups = await r.sendCommand<Record<string, unknown>[]>(["XINFO", "GROUPS", stream]);
  const g = groups.find((x) => String(x.name) === group);
  if (g === undefined) throw new Error(`no group ${group} on ${stream}`);
  const num = (v: unknown) => (typeof v === "number" ? v : null);
  return {
    pending: Number(g.pending),
    lag: num(g.lag),
    entriesRead: num(g["entries-read"]),
    consumers: Number(g.consumers),
  };
}

/** XADDs `fields(i)` for i in [from, to), pipelined in chunks; resolves with the ids. */
export async function produce(
  r: RedisClientType,
  stream: string,
  from: number,
  to: number,
  fields: (i: number) => string[],
): Promise<string[]> {
  const ids: string[] = [];
  const CHUNK = 2000;
  for (let i = from; i < to; i += CHUNK) {
    const end = Math.min(to, i + CHUNK);
    const replies = await Promise.all(
      Array.from({ length: end - i }, (_, k) =>
        r.sendCommand<string>(["XADD", stream, "*", ...fields(i + k)]),
      ),
    );
    ids.push(...replies.map(String));
  }
  return ids;
}

/** Entry i (see the module comment): even ones as flat fields, odd ones as a features map. */
export function versionEntry(i: number, entities: number): string[] {
  const id = `e:${i % entities}`;
  const name = `v${Math.floor(i / entities)}`;
  if (i % 2 === 0) return ["entity_id", id, `f:${name}`, String(i)];
  return ["entity_id", id, "features", JSON.stringify({ [name]: { intValue: String(i) } })];
}

/**
 * Checks that entities e:0..e:<entities-1> hold exactly what entries 0..total-1 wrote: every
 * feature present with its value, nothing else. Returns the differences (empty when exact).
 */
export async function checkVersions(
  client: FeatureStoreClient,
  total: number,
  entities: number,
): Promise<string[]> {
  const problems: string[] = [];
  const ids = Array.from({ length: entities }, (_, j) => `e:${j}`);
  for (let from = 0; from < ids.length; from += 500) {
    const r = await client.batchGet(ids.slice(from, from + 500));
    r.results.forEach((res, k) => {
      const j = from + k;
      const want = new Map<string, number>();
      for (let i = j; i < total; i += entities) want.set(`v${Math.floor(i / entities)}`, i);
      const got = res.found ? res.features : {};
      for (const [name, v] of want)
        if (got[name] !== v) problems.push(`e:${j}.${name}: got ${String(got[name])}, want ${v}`);
      for (const name of Object.keys(got)) if (!want.has(name)) problems.push(`e:${j}.${name}: not written`);
    });
  }
  return problems;
}

/** The text of one metric sample from a Prometheus scrape, or null. */
export function sample(scrape: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of scrape.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return null;
}
