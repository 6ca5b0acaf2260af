/**
 * The checkpoint of a load: how many rows of which file are acknowledged by the server. It is
 * rewritten (write to a temporary file, then rename: a crash leaves the old or the new one, never
 * half of one) as batches are acknowledged, at most every CHECKPOINT_INTERVAL_MS, and removed
 * when the load completes. A load given a checkpoint that exists resumes after its rows.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { usage } from "../errors.ts";

/** Longest time between two checkpoint writes while batches are acknowledged, ms. */
export const CHECKPOINT_INTERVAL_MS = 200;

export interface CheckpointData {
  version: 1;
  /** Absolute path and size of the input: a checkpoint only resumes the file it was written for. */
  file: string;
  size: number;
  /** Rows (from the start of the file) whose every batch the server acknowledged. */
  rows: number;
  /** Rows written and rejected so far, over every run. */
  written: number;
  rejected: number;
  updatedAt: string;
}

export class Checkpoint {
  private lastWrite = 0;
  private readonly file: string;
  private readonly size: number;

  constructor(
    readonly path: string,
    input: string,
  ) {
    this.file = resolve(input);
    this.size = statSync(input).size;
  }

  /** The saved state, or null when there is none; a checkpoint of another file is a usage error. */
  read(): CheckpointData | null {
    if (!existsSync(this.path)) return null;
    let data: CheckpointData;
    try {
      data = JSON.parse(readFileSync(this.path, "utf8"));
    } catch (err) {
      throw usage(
        `--checkpoint ${this.path}: unreadable (${(err as Error).message}); delete it to start over`,
      );
    }
    if (data.version !== 1 || data.file !== this.file || data.size !== this.size)
      throw usage(
        `--checkpoint ${this.path} is for ${data.file} (${data.size} bytes), not this file; ` +
          "delete it to start over, or give --from-row",
      );
    return data;
  }

  /** Saves the state if the last save is older than CHECKPOINT_INTERVAL_MS (always with `force`). */
  save(rows: number, written: number, rejected: number, force = false): void {
    const now = performance.now();
    if (!force && now - this.lastWrite < CHECKPOINT_INTERVAL_MS) return;
    this.lastWrite = now;
    const data: CheckpointData = {
      version: 1,
      file: this.file,
      size: this.size,
      rows,
      written,
      rejected,
      updatedAt: new Date().toISOString(),
    };
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(data)}\n`);
    renameSync(tmp, this.path);
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}
