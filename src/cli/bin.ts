#!/usr/bin/env bun
/**
 * The `featurestore` executable (package.json "bin"). Runs under Bun: `npx featurestore ...`
 * from the repository puts node_modules/.bin (where the `bun` package links it) on PATH.
 */
import { run } from "./main.ts";

const argv = process.argv.slice(2);
// The stream consumer has its own options and runs until stopped (src/ingest/main.ts).
if (argv[0] === "ingest") await (await import("../ingest/main.ts")).runIngest(argv.slice(1));
else process.exitCode = await run(argv);
