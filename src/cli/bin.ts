#!/usr/bin/env bun
/**
 * The `featurestore` executable (package.json "bin"). Runs under Bun: `npx featurestore ...`
 * from the repository puts node_modules/.bin (where the `bun` package links it) on PATH.
 */
import { run } from "./main.ts";

process.exitCode = await run(process.argv.slice(2));
