/** What every command shares: the global flags and a client opened and closed around the work. */
import type { Command } from "commander";
import type { FeatureStoreClient } from "../../client/index.ts";
import { type ConnectionFlags, connect, timeoutMs } from "../connect.ts";

export interface GlobalFlags extends ConnectionFlags {
  json?: boolean;
  quiet?: boolean;
}

/** The program's flags as seen from a subcommand (they may be given before or after it). */
export function globals(cmd: Command): GlobalFlags {
  return cmd.optsWithGlobals<GlobalFlags>();
}

/** Connects, runs `f`, closes the client whatever happens. */
export async function withClient<T>(
  flags: GlobalFlags,
  f: (client: FeatureStoreClient, deadlineMs: number) => Promise<T>,
  connections = 1,
): Promise<T> {
  const deadlineMs = timeoutMs(flags);
  const client = await connect(flags, connections);
  try {
    return await f(client, deadlineMs);
  } finally {
    await client.close();
  }
}
