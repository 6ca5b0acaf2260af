/**
 * One abuse class in its own process (run.ts starts it, niced, on the canary's core):
 *
 * ```
 * bun bench/abuse/abuser.ts <class> <tcpPort> <httpPort> <windowMs>
 *   stdout "ready"          once the payload is built
 *   stdin  "go"             opens the window
 *   stdout "result {json}"  the Tally, when the abuse is done or the window has closed
 * ```
 *
 * The window is enforced here too: whatever the abuse is still waiting for when it closes, the
 * tally so far is printed and the process exits, taking its sockets with it.
 */
import { cpuOf } from "./canary.ts";
import { readCommands } from "./child.ts";
import { CLASSES, newTally } from "./classes.ts";

/** Time past the window given to the abuse to notice its deadline and count what it saw. */
const SLACK_MS = 700;

async function main(): Promise<void> {
  const [name, tcpArg, httpArg, windowArg] = process.argv.slice(2);
  const cls = CLASSES.find((c) => c.name === name);
  const windowMs = Number(windowArg);
  if (!cls || !(windowMs > 0))
    throw new Error(
      `usage: abuser.ts <${CLASSES.map((c) => c.name).join("|")}> <tcpPort> <httpPort> <windowMs>`,
    );
  const run = cls.prepare({ tcpPort: Number(tcpArg), httpPort: Number(httpArg) });
  process.stdout.write("ready\n");
  if (!(await readCommands(60_000))) throw new Error("abuser: no go");
  const tally = newTally();
  const cpu0 = process.cpuUsage();
  const deadline = performance.now() + windowMs;
  const done = run({ deadline, tally }).catch((err: unknown) => {
    tally.notes.push(`abuser failed: ${err instanceof Error ? err.message : String(err)}`);
  });
  await Promise.race([done, Bun.sleep(windowMs + SLACK_MS)]);
  tally.cpuSeconds = cpuOf(cpu0);
  process.stdout.write(`result ${JSON.stringify(tally)}\n`);
  process.exit(0);
}

if (import.meta.main) await main();
