/**
 * The stream consumer as a process:
 *
 * ```
 * bun src/ingest/main.ts --redis redis://127.0.0.1:6379 --stream features --group featurestore \
 *   --consumer ingest-1 --server 127.0.0.1:50051 [--metrics-port 9465]
 * ```
 *
 * SIGTERM or SIGINT stops it gracefully (the batch in flight is written and acknowledged).
 * Exit codes: 0 after a graceful stop, 2 for a bad option, 1 when it cannot start (Redis or the
 * server unreachable).
 */
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import type { ClientOptions } from "../client/options.ts";
import { createLogger } from "../log/index.ts";
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_BLOCK_MS,
  DEFAULT_CLAIM_EVERY_MS,
  DEFAULT_MAX_DELIVERIES,
  DEFAULT_MIN_IDLE_MS,
  IngestOptionError,
  type StartIngestOptions,
  startIngest,
} from "./index.ts";

const USAGE = `Usage: featurestore ingest (or bun src/ingest/main.ts) --redis <url> --stream <key> --group <name> --consumer <name> --server <host:port> [options]

Consumes a Redis Stream in a consumer group and writes each entry to a feature store server.

  --redis <url>            Redis holding the stream (redis://host:port[/db]); env REDIS_URL
  --stream <key>           the stream
  --group <name>           the consumer group (created at --start-id if missing)
  --consumer <name>        this consumer's name in the group (default: the host name and PID)
  --server <host:port>     a feature store server (repeat for several); env FEATURESTORE_SERVER,
                           default 127.0.0.1:50051
  --token <token>          token for a server with AUTH_TOKENS_FILE; env FEATURESTORE_TOKEN
  --batch <n>              entries per XREADGROUP and BatchSet (default ${DEFAULT_BATCH_SIZE})
  --block-ms <ms>          longest wait of one read (default ${DEFAULT_BLOCK_MS})
  --min-idle-ms <ms>       claim entries pending longer than this from other consumers (default ${DEFAULT_MIN_IDLE_MS})
  --claim-every-ms <ms>    how often to look for them (default ${DEFAULT_CLAIM_EVERY_MS})
  --max-deliveries <n>     dead-letter an entry delivered more often (default ${DEFAULT_MAX_DELIVERIES})
  --dead-letter <key>      dead-letter stream (default <stream>:dead)
  --start-id <id>          where a new group starts: 0 (default) or $
  --metrics-port <port>    serve Prometheus metrics at /metrics on this port (0 = any free port)
  --metrics-host <addr>    address of the metrics listener (default 0.0.0.0)
  --log-level <level>      debug, info (default), warn or error
  -h, --help               this text
`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function intArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) fail(`--${name} must be a non-negative integer, got "${v}"`);
  return Number(v);
}

function parse(args: readonly string[]): StartIngestOptions {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        redis: { type: "string" },
        stream: { type: "string" },
        group: { type: "string" },
        consumer: { type: "string" },
        server: { type: "string", multiple: true },
        token: { type: "string" },
        batch: { type: "string" },
        "block-ms": { type: "string" },
        "min-idle-ms": { type: "string" },
        "claim-every-ms": { type: "string" },
        "max-deliveries": { type: "string" },
        "dead-letter": { type: "string" },
        "start-id": { type: "string" },
        "metrics-port": { type: "string" },
        "metrics-host": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const s = (k: string) => values[k] as string | undefined;
  const redisUrl = s("redis") ?? process.env.REDIS_URL;
  if (redisUrl === undefined) fail("--redis is required");
  for (const k of ["stream", "group"]) if (s(k) === undefined) fail(`--${k} is required`);
  const servers = (values.server as string[] | undefined) ?? [
    process.env.FEATURESTORE_SERVER ?? "127.0.0.1:50051",
  ];
  const level = s("log-level") ?? "info";
  if (!["debug", "info", "warn", "error"].includes(level))
    fail(`--log-level must be debug, info, warn or error, got "${level}"`);
  const client: ClientOptions = { servers, deadlineMs: 10_000 };
  const token = s("token") ?? process.env.FEATURESTORE_TOKEN;
  if (token !== undefined) client.token = token;
  const opts: StartIngestOptions = {
    redisUrl,
    stream: s("stream")!,
    group: s("group")!,
    consumer: s("consumer") ?? `${hostname()}-${process.pid}`,
    client,
    logger: createLogger(level as "info"),
  };
  const optional: [keyof StartIngestOptions, number | string | undefined][] = [
    ["batchSize", intArg("batch", s("batch"))],
    ["blockMs", intArg("block-ms", s("block-ms"))],
    ["minIdleMs", intArg("min-idle-ms", s("min-idle-ms"))],
    ["claimEveryMs", intArg("claim-every-ms", s("claim-every-ms"))],
    ["maxDeliveries", intArg("max-deliveries", s("max-deliveries"))],
    ["metricsPort", intArg("metrics-port", s("metrics-port"))],
    ["deadLetterStream", s("dead-letter")],
    ["startId", s("start-id")],
    ["metricsHost", s("metrics-host")],
  ];
  for (const [k, v] of optional) if (v !== undefined) (opts as unknown as Record<string, unknown>)[k] = v;
  return opts;
}

/**
 * Runs the consumer with command-line `args` until SIGTERM or SIGINT (then exits 0); exits 2 for a
 * bad option, 1 when it cannot start. `featurestore ingest ...` runs this too.
 */
export async function runIngest(args: readonly string[]): Promise<void> {
  const opts = parse(args);
  try {
    const handle = await startIngest(opts);
    let signalled = false;
    const onSignal = () => {
      if (signalled) return;
      signalled = true;
      void handle.stop().then(() => process.exit(0));
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  } catch (err) {
    if (err instanceof IngestOptionError) fail(err.message);
    process.stderr.write(`ingest could not start: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (import.meta.main) await runIngest(process.argv.slice(2));
