/**
 * The harness itself, against real `redis-server` processes: what the Redis backend tests rely on
 * (a node answers, stops, restarts on its port; a cluster forms, routes keys and fails over).
 */

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { startCluster, startRedis, stopAll } from "./harness.ts";

afterAll(stopAll);

/** Whether a process with this PID exists (signal 0 checks without signalling). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("a standalone node", () => {
  test("answers SET and GET on loopback and is gone after stop", async () => {
    const node = await startRedis();
    expect(node.url).toBe(`redis://127.0.0.1:${node.port}`);
    expect(await node.cli("SET", "greeting", "hello")).toBe("OK");
    expect(await node.cli("GET", "greeting")).toBe("hello");
    expect(await node.cli("CONFIG", "GET", "bind")).toBe("bind\n127.0.0.1");
    expect(existsSync(node.dir)).toBe(true);
    const pid = node.pid;
    await node.stop();
    expect(node.running).toBe(false);
    expect(pidAlive(pid)).toBe(false);
  });

  test("an error reply makes cli throw", async () => {
    await using node = await startRedis();
    await node.cli("SET", "s", "text");
    await expect(node.cli("INCR", "s")).rejects.toThrow("not an integer");
  });

  test("restarts on the same port and dir, keeping data when the caller asks for an AOF", async () => {
    await using node = await startRedis({ args: ["--appendonly", "yes"] });
    const { port, dir, pid } = node;
    await node.cli("SET", "kept", "1");
    await node.kill9();
    expect(pidAlive(pid)).toBe(false);
    await node.restart();
    expect(node.port).toBe(port);
    expect(node.dir).toBe(dir);
    expect(node.pid).not.toBe(pid);
    expect(await node.cli("PING")).toBe("PONG");
    expect(await node.cli("GET", "kept")).toBe("1");
  });

  test("keeps no data by default: no snapshots, no AOF", async () => {
    await using node = await startRedis();
    expect(await node.cli("CONFIG", "GET", "save")).toBe("save");
    expect(await node.cli("CONFIG", "GET", "appendonly")).toBe("appendonly\nno");
  });
});

describe("a cluster of 3 masters and 3 replicas", () => {
  test("forms, routes a key to its master, and fails over a killed master", async () => {
    await using cluster = await startCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1000 });
    expect(cluster.nodes).toHaveLength(6);
    expect(cluster.seeds.split(",")).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`));
    for (const node of cluster.nodes) expect(await node.cli("CLUSTER", "INFO")).toContain("cluster_state:ok");

    const lines = (await cluster.nodes[0]!.cli("CLUSTER", "NODES")).split("\n");
    expect(lines.filter((l) => / (myself,)?master /.test(l))).toHaveLength(3);
    expect(lines.filter((l) => / (myself,)?slave /.test(l))).toHaveLength(3);
    const masters = await cluster.masters();
    const replicas = await cluster.replicas();
    expect(masters).toHaveLength(3);
    expect(replicas).toHaveLength(3);

    // -c follows the MOVED redirect from whichever node it asks first.
    expect(await cluster.nodes[0]!.cli("-c", "SET", "user:42", "v1")).toBe("OK");
    const owner = await cluster.masterOf("user:42");
    expect(masters).toContain(owner);
    expect(await owner.cli("GET", "user:42")).toBe("v1");

    await owner.kill9();
    const ms = await cluster.waitForFailover(owner, 15_000);
    expect(ms).toBeGreaterThan(0);
    console.log(`failover after kill -9 with cluster-node-timeout 1000: ${ms} ms`);
    const promoted = await cluster.masterOf("user:42");
    expect(promoted).not.toBe(owner);
    expect(replicas).toContain(promoted);
    expect(await promoted.cli("GET", "user:42")).toBe("v1");
    expect(await cluster.masters()).toHaveLength(3);
    expect(await cluster.masters()).not.toContain(owner);

    // The old master comes back from its nodes.conf as a replica of the one that replaced it.
    await owner.restart();
    const settled = Date.now() + 10_000;
    while (!(await cluster.replicas()).includes(owner) && Date.now() < settled) await Bun.sleep(50);
    expect(await cluster.replicas()).toContain(owner);
  }, 30_000);
});
