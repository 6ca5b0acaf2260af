/**
 * The `featurestore` command: flags parsed by commander, one module per group of commands under
 * commands/, and one place (`run`) that turns whatever a command throws into a message and an
 * exit status (errors.ts).
 */
import { Command, CommanderError, Option } from "commander";
import { registerExport } from "./commands/export.ts";
import { registerKv } from "./commands/kv.ts";
import { registerLoad } from "./commands/load.ts";
import { registerPing } from "./commands/ping.ts";
import { registerStats } from "./commands/stats.ts";
import { registerUpdates, registerVersions } from "./commands/versions.ts";
import { DEFAULT_SERVER, DEFAULT_TIMEOUT_MS } from "./connect.ts";
import { CliError, EXIT_HELP, Exit } from "./errors.ts";
import { eprintln, printJson } from "./output.ts";

/** What `featurestore -V` prints. */
const VERSION = "0.1.0";

/** The program with every command registered (exported for tests of the help texts). */
export function program(): Command {
  const p = new Command("featurestore")
    .description("Command line of the feature store: read, write, load and export features, watch a server")
    // Only -V: commander would take a --version anywhere on the line as the program's, and
    // get, set, del, batch-get, incr and append have a --version <name> (run() answers a lone --version).
    .version(VERSION, "-V", "print the version (so does --version alone)")
    .addOption(
      new Option("-s, --server <host:port>", "server's TCP address")
        .env("FEATURESTORE_SERVER")
        .default(DEFAULT_SERVER),
    )
    .addOption(
      new Option("--token <token>", "token, for a server with AUTH_TOKENS_FILE").env("FEATURESTORE_TOKEN"),
    )
    .addOption(new Option("--tls", "connect with TLS, trusting the system's CAs").env("FEATURESTORE_TLS"))
    .addOption(
      new Option("--cacert <file>", "CA certificate (PEM) of the server's; implies --tls").env(
        "FEATURESTORE_CACERT",
      ),
    )
    .addOption(new Option("--cert <file>", "client certificate (PEM), for mTLS").env("FEATURESTORE_CERT"))
    .addOption(new Option("--key <file>", "client key (PEM), for mTLS").env("FEATURESTORE_KEY"))
    .addOption(
      new Option("--tls-server-name <name>", "name the server's certificate must carry (default: its host)"),
    )
    .addOption(
      new Option("-t, --timeout <ms>", "deadline of each call, ms")
        .env("FEATURESTORE_TIMEOUT")
        .default(String(DEFAULT_TIMEOUT_MS)),
    )
    .option("--json", "machine-readable output on stdout (JSON; NDJSON for streams)")
    .option("-q, --quiet", "no progress bar or summary text")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError("(add --help for usage)")
    .addHelpText("after", `\n${EXIT_HELP}\n\nEvery command has --help: featurestore load --help`)
    .exitOverride();
  registerKv(p);
  registerUpdates(p);
  registerVersions(p);
  registerPing(p);
  registerStats(p);
  registerLoad(p);
  registerExport(p);
  p.command("ingest")
    .description("consume a Redis Stream into the server (XREADGROUP, XACK after each write): ingest --help")
    .allowUnknownOption()
    .helpOption(false)
    .argument("[options...]");
  for (const c of p.commands) c.exitOverride().showHelpAfterError("(add --help for usage)");
  return p;
}

/** Runs the command line `argv` (without the runtime and script); resolves with the exit status. */
export async function run(argv: readonly string[]): Promise<number> {
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return Exit.Ok;
  }
  const p = program();
  try {
    await p.parseAsync([...argv], { from: "user" });
    return Exit.Ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, having printed what was asked.
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.help" ||
        err.code === "commander.version"
      )
        return Exit.Ok;
      return Exit.Usage;
    }
    const e = CliError.from(err);
    if (e.message) {
      if (p.opts().json) printJsonError(e);
      else eprintln(`featurestore: ${e.message}`);
    }
    return e.exit;
  }
}

function printJsonError(e: CliError): void {
  // On stderr, so that stdout keeps only results.
  process.stderr.write(`${JSON.stringify({ error: { code: e.code, exit: e.exit, message: e.message } })}\n`);
}

export { printJson };
