/**
 * Real Redis processes for the Redis backend tests: standalone servers and Cluster deployments of
 * `redis-server` children, each on a free loopback port in its own temporary directory.
 *
 * Only processes this module spawned are ever signalled, always by their PID. `stopAll()` (for
 * `afterAll`) stops them; a process `exit` hook (and SIGINT, SIGTERM, SIGHUP) SIGKILLs whatever
 * is still running, so a crashed or killed test run leaves no `redis-server` behind. `.ci/run` installs Debian's `redis-server` (which
 * brings `redis-cli`) on a machine without it.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import calculateSlot from "@redis/client/dist/lib/utils/calculate-slot.js";
import type { Subprocess } from "bun";

/** Every server binds the loopback address only. */
export const HOST = "127.0.0.1";
/** Longest wait for a spawned server to answer PING, ms (start-up is ~10-30 ms here). */
export const READY_TIMEOUT_MS = 10_000;
/** Longest wait for a SIGTERMed server to exit before it is SIGKILLed, ms. */
export const STOP_TIMEOUT_MS = 5_000;
/** Interval of the repeated SIGTERM of `stop()`, ms. */
const TERM_REPEAT_MS = 100;
/** Longest run of one `redis-cli` call before it is killed and the call throws, ms. */
export const CLI_TIMEOUT_MS = 10_000;
/** Longest wait for a new cluster to agree (state ok everywhere, every replica linked), ms. */
export const CLUSTER_READY_TIMEOUT_MS = 20_000;
/** Longest wait for a new cluster's replicas to acknowledge a write (first sync, AOF rewrite), ms. */
export const READY_ACK_TIMEOUT_MS = 60_000;
/** Polling step of the bounded waits, ms: short, because failover durations are read from it. */
const POLL_MS = 25;
/** Attempts at a fresh port when `redis-server` finds its port taken (a race with another binder). */
const PORT_ATTEMPTS = 5;
/** Bytes of a server's output kept for error messages (the tail; older output is dropped). */
const LOG_TAIL_BYTES = 64 * 1024;
/** Redis Cluster has 16384 hash slots, 0-16383. */
const CLUSTER_SLOTS = 16384;

/**
 * Options of every server, before the caller's `args` (a later option overrides an earlier one,
 * and `--save` after `--save ""` sets the schedule afresh). Logs go to stdout, which is kept.
 * `--shutdown-timeout 0`: on SIGTERM a Redis 7 master otherwise waits up to 10 s for lagging
 * replicas to catch up, and the replicas of a cluster are stopped at the same time.
 */
function baseArgs(port: number, dir: string): string[] {
  // biome-ignore format: option/value pairs
  return [
    "--bind", HOST,
    "--port", String(port),
    "--dir", dir,
    "--save", "",
    "--appendonly", "no",
    "--daemonize", "no",
    "--protected-mode", "no",
    "--logfile", "",
    "--shutdown-timeout", "0",
  ];
}

/** One `redis-server` child: its address, its directory, and control over its process. */
export interface RedisNode {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** PID of the current process (a new one after `restart()`). */
  readonly pid: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** The `--dir` of the server: its AOF, RDB and (in a cluster) `nodes.conf`. */
  readonly dir: string;
  /** True from a successful start until the process is seen to exit. */
  readonly running: boolean;
  /** The tail of what the server printed (its log), for error messages. */
  readonly log: string;
  /** Sends `sig` to this node's process, if it still runs (e.g. SIGSTOP/SIGCONT to freeze it). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM (repeated until heeded), waits for the exit, SIGKILL after STOP_TIMEOUT_MS. No-op if stopped. */
  stop(): Promise<void>;
  /** SIGKILL and waits for the exit: a crash, nothing flushed. */
  kill9(): Promise<void>;
  /**
   * Starts the server again on the same port and dir with the same options and waits until it
   * answers PING; a running node is stopped first.
   */
  restart(): Promise<void>;
  /**
   * Runs `redis-cli -e -h 127.0.0.1 -p <port> ...args` and resolves with its stdout, trimmed
   * (`-e`: an error reply is a non-zero exit). Throws on a non-zero exit or after CLI_TIMEOUT_MS.
   * Options go before the command, e.g. `cli("-c", "SET", "k", "v")` follows cluster redirects.
   */
  cli(...args: string[]): Promise<string>;
  /** Same as `stop()`, for `await using node = await startRedis()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of `startRedis`. */
export interface StartRedisOptions {
  /** More `redis-server` options, after (so overriding) the defaults, e.g. `["--appendonly", "yes"]`. */
  args?: string[];
  /** Directory of the server; default a fresh temporary one, removed by `stopAll()` or at exit. */
  dir?: string;
  /** Port; default a free ephemeral one (retried if another process takes it first). */
  port?: number;
}

// ---- what this module started ------------------------------------------------------------------

/** Nodes whose process runs: what `stopAll()` stops and the exit hook kills. */
const running = new Set<ServerNode>();
/** Temporary directories this module created; removed by `stopAll()`, `cluster.stop()` and at exit. */
const ownedDirs = new Set<string>();
/** Ports handed out by `freePort`, so two concurrent allocations never return the same one. */
const handedOut = new Set<number>();
let exitHookInstalled = false;
/** Signals that end this process by default; a CI timeout sends SIGTERM, a closed terminal SIGHUP. */
const TERMINATING_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** SIGKILLs every child still running and removes the temporary directories (synchronous: `exit`). */
function killLeftovers(): void {
  for (const node of running) node.signal("SIGKILL");
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
}

/**
 * On `exit` (a crash included) kill the leftovers. A terminating signal skips `exit`, so each of
 * them kills the leftovers too and is raised again, once no listener of ours is left, to terminate
 * as it would have.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", killLeftovers);
  for (const sig of TERMINATING_SIGNALS) {
    process.once(sig, () => {
      killLeftovers();
      process.kill(process.pid, sig);
    });
  }
}

function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "fs-redis-"));
  ownedDirs.add(dir);
  return dir;
}

function removeOwnedDir(dir: string): void {
  if (!ownedDirs.delete(dir)) return;
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A free port: bind a listener on port 0, read the port the kernel chose, close it. Another
 * process may still take it before `redis-server` binds it; the start then retries.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, HOST, () => {
        const address = server.address();
        const chosen = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    if (port !== 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/**
 * PING in RESP (an array of one bulk string) on a fresh connection; true on `+PONG`. A server
 * still loading its data answers `-LOADING`, which is not ready.
 */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: HOST, port });
    let reply = "";
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once("error", () => finish(false));
    socket.once("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}

/**
 * Runs `redis-cli` with `args`; resolves with stdout (trimmed) or throws with stderr on a non-zero
 * exit. The child is killed after `timeoutMs` (a frozen server would otherwise hang the call).
 */
async function runCli(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<string> {
  const proc = Bun.spawn(["redis-cli", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) {
      const why = proc.signalCode === "SIGKILL" ? `killed after ${timeoutMs} ms` : `exit code ${code}`;
      throw new Error(`redis-cli ${args.join(" ")}: ${why}\n${stderr.trim() || stdout.trim()}`);
    }
    return stdout.trim();
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every POLL_MS until it returns true; throws `describe()` after `timeoutMs`. */
async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() >= deadline) throw new Error(`not within ${timeoutMs} ms: ${describe()}`);
    await Bun.sleep(POLL_MS);
  }
}

/**
 * Waits until every master's replicas acknowledge a write (`WAIT` after a `SET` on the same
 * connection): a replica whose link is up may still be finishing its first sync and AOF rewrite,
 * and until it acknowledges, clients that ask for WAIT are refused.
 */
async function replicasAcknowledge(cluster: Cluster, replicas: number): Promise<void> {
  let last = "";
  for (const master of await cluster.masters()) {
    const view = parseClusterNodes(await master.cli("CLUSTER", "NODES"));
    const own = view.find((line) => line.port === master.port)?.slots[0];
    if (own === undefined) continue;
    const key = keyInSlots(own[0], own[1]);
    await waitUntil(
      async () => {
        const proc = Bun.spawn(["redis-cli", "-h", HOST, "-p", String(master.port)], {
          stdin: new TextEncoder().encode(`SET ${key} 1\nWAIT ${replicas} 1000\n`),
          stdout: "pipe",
          stderr: "pipe",
        });
        last = (await new Response(proc.stdout).text()).trim();
        await proc.exited;
        return Number(last.split("\n").pop()) >= replicas;
      },
      READY_ACK_TIMEOUT_MS,
      () => `the replicas of ${master.port} did not acknowledge a write: ${last}`,
    );
  }
}

/** A key whose hash slot lies in [from, to] (found by trying `ready:0`, `ready:1`, ...). */
function keyInSlots(from: number, to: number): string {
  for (let i = 0; ; i++) {
    const key = `ready:${i}`;
    const slot = calculateSlot(key);
    if (slot >= from && slot <= to) return key;
  }
}

/** Thrown by a start when the server could not bind its port(s): another process took them. */
class PortTakenError extends Error {}

// ---- one server ----------------------------------------------------------------------------------

class ServerNode implements RedisNode {
  readonly host = HOST;
  readonly url: string;
  private proc: Subprocess<"ignore", "pipe", "pipe"> | null = null;
  private exited: Promise<unknown> = Promise.resolve();
  private alive = false;
  private logTail = "";

  constructor(
    readonly port: number,
    readonly dir: string,
    /** The complete `redis-server` argument list, reused as is by `restart()`. */
    private readonly argv: readonly string[],
  ) {
    this.url = `redis://${HOST}:${port}`;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  get running(): boolean {
    return this.alive;
  }

  get log(): string {
    return this.logTail;
  }

  /** Spawns the process and waits until it answers PING; throws (with the log) otherwise. */
  async launch(): Promise<void> {
    installExitHook();
    this.logTail = "";
    const proc = Bun.spawn(["redis-server", ...this.argv], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.proc = proc;
    this.alive = true;
    running.add(this);
    // Both pipes are drained for the whole life of the child, so it never blocks on a log line.
    const pumps = Promise.all([this.pump(proc.stdout), this.pump(proc.stderr)]);
    this.exited = proc.exited.then(async () => {
      await pumps;
      if (this.proc === proc) {
        this.alive = false;
        running.delete(this);
      }
    });
    try {
      await waitUntil(
        async () => {
          if (!this.alive) throw this.startFailure(proc);
          return ping(this.port);
        },
        READY_TIMEOUT_MS,
        () => `redis-server on port ${this.port} did not answer PING\n${this.logTail}`,
      );
    } catch (err) {
      await this.kill9();
      throw err;
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.proc?.kill(sig);
  }

  async stop(): Promise<void> {
    // Redis refuses a SIGTERM while it writes its first AOF (a replica does after its full sync:
    // "Writing initial AOF, can't exit") and forgets it, so it is repeated until the exit.
    const deadline = performance.now() + STOP_TIMEOUT_MS;
    while (this.alive && performance.now() < deadline) {
      this.signal("SIGTERM");
      await Promise.race([this.exited, Bun.sleep(TERM_REPEAT_MS)]);
    }
    await this.kill9();
  }

  async kill9(): Promise<void> {
    this.signal("SIGKILL");
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    // The same port must be free again; another process may hold it briefly (a client's
    // ephemeral port, say), so a few attempts before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.launch();
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw err;
        await Bun.sleep(200 * attempt);
      }
    }
  }

  cli(...args: string[]): Promise<string> {
    return runCli(["-e", "-h", HOST, "-p", String(this.port), ...args]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  private startFailure(proc: Subprocess): Error {
    const message = `redis-server on port ${this.port} exited with ${proc.exitCode ?? proc.signalCode} before answering PING\n${this.logTail}`;
    return /Address already in use/i.test(this.logTail) ? new PortTakenError(message) : new Error(message);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.logTail += decoder.decode(chunk, { stream: true });
      if (this.logTail.length > LOG_TAIL_BYTES) this.logTail = this.logTail.slice(-LOG_TAIL_BYTES / 2);
    }
  }
}

/**
 * Starts a server in `dir` (or a fresh temporary one) with the default options, then `args(port)`.
 * Ports not given are retried on a bind failure, so `args` may allocate more ports (a cluster bus).
 */
async function startNode(
  port: number | undefined,
  dir: string | undefined,
  args: () => Promise<string[]>,
): Promise<ServerNode> {
  const nodeDir = dir ?? makeTempDir();
  for (let attempt = 1; ; attempt++) {
    const nodePort = port ?? (await freePort());
    const node = new ServerNode(nodePort, nodeDir, [...baseArgs(nodePort, nodeDir), ...(await args())]);
    try {
      await node.launch();
      return node;
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) {
        if (dir === undefined) removeOwnedDir(nodeDir);
        throw err;
      }
    }
  }
}

/**
 * Starts a standalone `redis-server` on 127.0.0.1: a free port, a fresh temporary dir, no RDB
 * snapshots (`--save ""`), no AOF (`--appendonly no`), all overridable through `args`. Resolves once
 * it answers PING; throws with its log if it exits first or is not ready within READY_TIMEOUT_MS.
 */
export function startRedis(opts: StartRedisOptions = {}): Promise<RedisNode> {
  const extra = opts.args ?? [];
  return startNode(opts.port, opts.dir, async () => extra);
}

/** Stops every node this module started and still runs (for `afterAll`); removes its temporary dirs. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((node) => node.stop()));
  for (const dir of [...ownedDirs]) removeOwnedDir(dir);
}

// ---- cluster --------------------------------------------------------------------------------------

/** Options of `startCluster`. */
export interface StartClusterOptions {
  /** Masters, each owning an equal share of the 16384 slots; default 3 (the least Redis accepts). */
  masters?: number;
  /** Replicas of each master; default 1. */
  replicasPerMaster?: number;
  /**
   * `cluster-node-timeout`, ms; default 2000. A dead master is failed over about one to two of
   * these after its death (see `waitForFailover`).
   */
  nodeTimeoutMs?: number;
  /** More `redis-server` options for every node, after (so overriding) the cluster defaults. */
  extraArgs?: string[];
}

/** A Redis Cluster of `ServerNode`s, each in its own temporary dir. */
export interface RedisCluster {
  /** Every node, in start order (the first `masters` were the masters when the cluster was created). */
  readonly nodes: RedisNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,...`: every node's address, for a client's seed list. */
  readonly seeds: string;
  /** The masters now, as one reachable node sees them in CLUSTER NODES (failed ones left out). */
  masters(): Promise<RedisNode[]>;
  /** The replicas now, as one reachable node sees them in CLUSTER NODES (failed ones left out). */
  replicas(): Promise<RedisNode[]>;
  /** The master that owns `key`'s slot now (CLUSTER KEYSLOT, then CLUSTER NODES). */
  masterOf(key: string): Promise<RedisNode>;
  /**
   * Resolves with the ms from this call until every other running node reports `cluster_state:ok`
   * and sees all 16384 slots owned by live masters, none by `deadNode` (so a replica took over its
   * slots). Call it right after killing `deadNode`; a dead replica resolves at the first poll.
   * Throws with the last observed state after `timeoutMs`.
   */
  waitForFailover(deadNode: RedisNode, timeoutMs: number): Promise<number>;
  /**
   * True once every node reports `cluster_state:ok` and knows every other, and every replica's
   * link to its master is up (as after `startCluster`). A client discovers the cluster's shape
   * once (CLUSTER SLOTS, which leaves out a replica not in sync), so a test that needs replicas
   * in that shape waits for this first.
   */
  settled(): Promise<boolean>;
  /** Stops every node and removes the temporary dirs. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using cluster = await startCluster()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** One line of CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...` */
interface ClusterNodeLine {
  id: string;
  port: number;
  flags: string[];
  /** Slot ranges owned, inclusive; migrating/importing entries (`[slot->-id]`) are left out. */
  slots: Array<[number, number]>;
}

function parseClusterNodes(text: string): ClusterNodeLine[] {
  const lines: ClusterNodeLine[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(" ");
    if (fields.length < 8) continue;
    const address = fields[1]!.split("@")[0]!;
    const slots: Array<[number, number]> = [];
    for (const range of fields.slice(8)) {
      if (range.startsWith("[")) continue;
      const [from, to] = range.split("-");
      slots.push([Number(from), Number(to ?? from)]);
    }
    lines.push({
      id: fields[0]!,
      port: Number(address.slice(address.lastIndexOf(":") + 1)),
      flags: fields[2]!.split(","),
      slots,
    });
  }
  return lines;
}

/** A node that is not marked failed (`fail`) or suspected (`fail?`) by the viewer. */
function isHealthy(line: ClusterNodeLine): boolean {
  return !line.flags.includes("fail") && !line.flags.includes("fail?");
}

function isLiveMaster(line: ClusterNodeLine): boolean {
  return line.flags.includes("master") && isHealthy(line);
}

/** The `field:value` lines of INFO or CLUSTER INFO as a map. */
function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/** Slots owned by live masters in one node's view, counted once each. */
function coveredSlots(view: ClusterNodeLine[], except: number): number {
  const owned = new Uint8Array(CLUSTER_SLOTS);
  for (const line of view) {
    if (line.port === except || !isLiveMaster(line)) continue;
    for (const [from, to] of line.slots) owned.fill(1, from, to + 1);
  }
  return owned.reduce((sum, bit) => sum + bit, 0);
}

class Cluster implements RedisCluster {
  readonly seeds: string;

  constructor(readonly nodes: RedisNode[]) {
    this.seeds = nodes.map((node) => `${HOST}:${node.port}`).join(",");
  }

  async masters(): Promise<RedisNode[]> {
    // Masters that serve slots: right after `--cluster create` one node's view may still show a
    // replica-to-be as a slotless master, and a test looking for a key of it would never find one.
    return this.byPort((await this.view()).filter((line) => isLiveMaster(line) && line.slots.length > 0));
  }

  async replicas(): Promise<RedisNode[]> {
    return this.byPort((await this.view()).filter((line) => line.flags.includes("slave") && isHealthy(line)));
  }

  async masterOf(key: string): Promise<RedisNode> {
    const asker = this.nodes.find((node) => node.running);
    if (!asker) throw new Error("masterOf: no node of the cluster is running");
    const slot = Number(await asker.cli("CLUSTER", "KEYSLOT", key));
    const owner = (await this.view()).find(
      (line) => isLiveMaster(line) && line.slots.some(([from, to]) => slot >= from && slot <= to),
    );
    const node = owner && this.nodes.find((n) => n.port === owner.port);
    if (!node) throw new Error(`masterOf: no live master owns slot ${slot} (key ${JSON.stringify(key)})`);
    return node;
  }

  async waitForFailover(deadNode: RedisNode, timeoutMs: number): Promise<number> {
    const start = performance.now();
    let last = "nothing observed yet";
    // deadNode is left out even if its process runs: a SIGSTOPped node would hang redis-cli.
    const others = () => this.nodes.filter((node) => node !== deadNode && node.running);
    await waitUntil(
      async () => {
        const states = await Promise.all(
          others().map(async (node) => {
            const [info, nodes] = await Promise.all([
              node.cli("CLUSTER", "INFO"),
              node.cli("CLUSTER", "NODES"),
            ]).catch((err: Error) => [`error: ${err.message}`, ""]);
            const state = parseInfo(info).get("cluster_state");
            const view = parseClusterNodes(nodes);
            const deadOwns = view.some((line) => line.port === deadNode.port && line.slots.length > 0);
            const covered = coveredSlots(view, deadNode.port);
            return {
              port: node.port,
              ok: state === "ok" && !deadOwns && covered === CLUSTER_SLOTS,
              state,
              covered,
            };
          }),
        );
        last = states
          .map((s) => `${s.port}: state ${s.state}, ${s.covered} slots on live masters`)
          .join("; ");
        return states.length > 0 && states.every((s) => s.ok);
      },
      timeoutMs,
      () => `failover of ${deadNode.port}: ${last}`,
    );
    return Math.round(performance.now() - start);
  }

  settled(): Promise<boolean> {
    return clusterSettled(this.nodes, () => {});
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    for (const node of this.nodes) removeOwnedDir(node.dir);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** CLUSTER NODES of the first running node that answers. */
  private async view(): Promise<ClusterNodeLine[]> {
    let lastError: unknown = new Error("no node of the cluster is running");
    for (const node of this.nodes) {
      if (!node.running) continue;
      try {
        return parseClusterNodes(await node.cli("CLUSTER", "NODES"));
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  private byPort(lines: ClusterNodeLine[]): RedisNode[] {
    const ports = new Set(lines.map((line) => line.port));
    return this.nodes.filter((node) => ports.has(node.port));
  }
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min)
    throw new RangeError(`startCluster: ${name} must be an integer >= ${min}, got ${value}`);
}

/**
 * Whether the new cluster has settled: every node knows all `total` nodes and reports
 * `cluster_state:ok`, and every replica reports `master_link_status:up`.
 */
async function clusterSettled(nodes: RedisNode[], describe: (s: string) => void): Promise<boolean> {
  const states = await Promise.all(
    nodes.map(async (node) => {
      const [cluster, replication] = await Promise.all([
        node.cli("CLUSTER", "INFO").then(parseInfo),
        node.cli("INFO", "replication").then(parseInfo),
      ]);
      const state = cluster.get("cluster_state");
      const known = Number(cluster.get("cluster_known_nodes"));
      const role = replication.get("role");
      const link = replication.get("master_link_status");
      return {
        ok: state === "ok" && known === nodes.length && (role === "master" || link === "up"),
        text: `${node.port}: state ${state}, knows ${known}, ${role}${role === "slave" ? ` link ${link}` : ""}`,
      };
    }),
  );
  describe(states.map((s) => s.text).join("; "));
  return states.every((s) => s.ok);
}

/**
 * Starts `masters * (1 + replicasPerMaster)` nodes with `--cluster-enabled yes`, joins them with
 * `redis-cli --cluster create`, and resolves once every node reports `cluster_state:ok` and knows
 * every other and every replica's link to its master is up (within CLUSTER_READY_TIMEOUT_MS).
 *
 * Each node has its own dir (`nodes.conf` there), an explicit `--cluster-port` (the default, port +
 * 10000, overflows for ephemeral ports above 55535), and `--appendonly yes`, so that `restart()`
 * brings a node back with its identity and its data, as a deployment would; the default
 * `appendfsync everysec` may lose the last second on `kill9()`, which its replica still holds.
 * `--cluster-replica-validity-factor 0` lets a replica take over however long ago it last heard
 * from its master, so failover tests do not depend on timing. `--repl-diskless-sync-delay 0`: a
 * master otherwise waits 5 s for more replicas before the first full sync, which was 5 of the 6 s
 * that a 3+3 cluster took to settle here.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const replicasPerMaster = opts.replicasPerMaster ?? 1;
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 2000;
  checkCount("masters", masters, 3);
  checkCount("replicasPerMaster", replicasPerMaster, 0);
  checkCount("nodeTimeoutMs", nodeTimeoutMs, 1);
  // biome-ignore format: option/value pairs
  const args = async () => [
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", String(nodeTimeoutMs),
    "--cluster-port", String(await freePort()),
    "--cluster-replica-validity-factor", "0",
    "--repl-diskless-sync-delay", "0",
    "--appendonly", "yes",
    ...(opts.extraArgs ?? []),
  ];
  const started = await Promise.allSettled(
    Array.from({ length: masters * (1 + replicasPerMaster) }, () => startNode(undefined, undefined, args)),
  );
  const nodes = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const cluster = new Cluster(nodes);
  try {
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    const addresses = nodes.map((node) => `${HOST}:${node.port}`);
    await runCli(
      ["--cluster", "create", ...addresses, "--cluster-replicas", String(replicasPerMaster), "--cluster-yes"],
      CLUSTER_READY_TIMEOUT_MS,
    );
    let state = "";
    await waitUntil(
      () =>
        clusterSettled(nodes, (s) => {
          state = s;
        }),
      CLUSTER_READY_TIMEOUT_MS,
      () => `cluster did not settle: ${state}`,
    );
    if (replicasPerMaster > 0) await replicasAcknowledge(cluster, replicasPerMaster);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
