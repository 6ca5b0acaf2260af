/**
 * What the results depend on besides the code: the machine, the runtime, Redis, the commit, the
 * filesystem of the data directories, and what one fsync costs there (the floor of every
 * durable write at one in flight).
 */
import { Database } from "bun:sqlite";
import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { Histogram } from "../e2e/hist.ts";
import { round } from "../e2e/report.ts";

export interface MachineInfo {
  cpu: string;
  nproc: number;
  memGiB: number;
  kernel: string;
  os: string;
  bun: string;
  redis: string;
  sqlite: string;
  git: { commit: string; dirty: string[] } | null;
  dataFs: { dir: string; device: string; type: string; options: string };
}

const text = (cmd: string[], cwd?: string): string => {
  const r = Bun.spawnSync(cmd, cwd ? { cwd } : {});
  return r.exitCode === 0 ? r.stdout.toString().trim() : "";
};

/** Describes the machine; `dataDir` is a directory on the filesystem every data dir lives on. */
export function machineInfo(root: string, dataDir: string): MachineInfo {
  const redisBin = Bun.which("redis-server");
  const redisV = redisBin ? /v=([\d.]+)/.exec(text([redisBin, "--version"]))?.[1] : undefined;
  const db = new Database(":memory:");
  const sqlite = (db.query("SELECT sqlite_version() AS v").get() as { v: string }).v;
  db.close();
  const head = text(["git", "rev-parse", "HEAD"], root);
  const dirty = text(["git", "status", "--porcelain", "--", "src", "proto"], root)
    .split("\n")
    .filter(Boolean)
    .map((l) => l.slice(3));
  // findmnt: SOURCE FSTYPE OPTIONS of the mount holding dataDir.
  const [device = "?", type = "?", options = "?"] = text([
    "findmnt",
    "-n",
    "-o",
    "SOURCE,FSTYPE,OPTIONS",
    "-T",
    dataDir,
  ]).split(/\s+/);
  let os = "linux";
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // keep "linux"
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    // --all: this process may be pinned to one CPU by now, and plain nproc counts only those.
    nproc: Number(text(["nproc", "--all"])) || cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: text(["uname", "-r"]),
    os,
    bun: Bun.version,
    redis: redisV ?? "not installed",
    sqlite,
    git: head ? { commit: head, dirty } : null,
    dataFs: { dir: dataDir, device, type, options },
  };
}

export interface FsyncProbe {
  /** Appends of 4 KiB, each followed by fdatasync. */
  count: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/**
 * The cost of one durable append on the data filesystem: `count` appends of 4 KiB to a new
 * file, each followed by fdatasync (what SQLite's WAL commit and Redis's AOF fsync call).
 */
export function probeFsync(dir: string, count = 300): FsyncProbe {
  const path = join(dir, "fsync-probe.bin");
  const fd = openSync(path, "w");
  const block = new Uint8Array(4096).fill(7);
  const h = new Histogram();
  try {
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      h.record((performance.now() - t) * 1e6);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return {
    count,
    p50Us: round(h.percentile(50) / 1000, 1),
    p99Us: round(h.percentile(99) / 1000, 1),
    maxUs: round(h.max / 1000, 1),
  };
}
