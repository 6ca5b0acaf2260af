/**
 * The canary and each abuser run as child processes of run.ts, so that none of them can delay
 * another's event loop, and so that killing an abuser closes every socket it opened. They talk
 * in lines: the child prints "ready" once prepared, waits for "go" on stdin, and prints
 * "result {json}" at the end. Everything started here is killed by PID when run.ts exits.
 */
import type { Subprocess } from "bun";
import { hasTaskset } from "../e2e/procs.ts";

// ---- child side ---------------------------------------------------------------------------------

/** Child side: resolves true when "go" arrives on stdin, false after `timeoutMs` or at EOF. */
export async function readCommands(timeoutMs: number): Promise<boolean> {
  const reader = Bun.stdin.stream().getReader();
  const dec = new TextDecoder();
  let text = "";
  const timeout = Bun.sleep(timeoutMs).then(() => null);
  for (;;) {
    const r = await Promise.race([reader.read(), timeout]);
    if (r === null || r.done) return false;
    text += dec.decode(r.value, { stream: true });
    if (text.split("\n").some((l) => l.trim() === "go")) {
      reader.releaseLock();
      return true;
    }
  }
}

// ---- parent side --------------------------------------------------------------------------------

const children = new Set<Subprocess>();
let hooked = false;

function killChildren(): void {
  for (const p of children) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
}

export interface ChildOptions {
  name: string;
  cmd: string[];
  /** CPU list for taskset; none = not pinned. */
  cpus?: string;
  /** Niceness (0-19): an abuser yields its core to the canary when both want it. */
  nice?: number;
  cwd?: string;
}

/** A child speaking the line protocol above. */
export class Child {
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  private lines: string[] = [];
  private waiters: (() => void)[] = [];
  private errTail = "";

  constructor(readonly o: ChildOptions) {
    if (!hooked) {
      hooked = true;
      process.on("exit", killChildren);
    }
    let cmd = o.cmd;
    if (o.nice !== undefined && Bun.which("nice")) cmd = ["nice", "-n", String(o.nice), ...cmd];
    if (o.cpus !== undefined && hasTaskset()) cmd = ["taskset", "-c", o.cpus, ...cmd];
    this.proc = Bun.spawn(cmd, { cwd: o.cwd, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    children.add(this.proc);
    this.proc.exited.then(() => {
      children.delete(this.proc);
      this.wake();
    });
    this.readLines(this.proc.stdout);
    this.readErr(this.proc.stderr);
  }

  /** The first line starting with `prefix` (the rest of it), or null on timeout or exit. */
  async waitLine(prefix: string, timeoutMs: number): Promise<string | null> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) return this.lines.splice(i, 1)[0]!.slice(prefix.length).trim();
      const left = until - performance.now();
      if (left <= 0 || this.proc.exitCode !== null || this.proc.signalCode !== null) return null;
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), Bun.sleep(left)]);
    }
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    try {
      this.proc.stdin.write(`${line}\n`);
      this.proc.stdin.flush();
    } catch {
      // gone
    }
  }

  /** The last bytes the child wrote to stderr (for error messages). */
  stderrTail(): string {
    return this.errTail.trim();
  }

  /** Kills the child (SIGKILL) and waits for it. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await this.proc.exited;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async readLines(s: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of s) {
        buf += dec.decode(chunk, { stream: true });
        let nl = buf.indexOf("\n");
        while (nl >= 0) {
          this.lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          nl = buf.indexOf("\n");
        }
        this.wake();
      }
    } catch {
      // child gone
    }
  }

  private async readErr(s: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of s)
        this.errTail = (this.errTail + dec.decode(chunk, { stream: true })).slice(-2048);
    } catch {
      // child gone
    }
  }
}
