/**
 * `load <file>`: NDJSON, CSV or Parquet into the store with pipelined BatchSets (load/loader.ts),
 * a progress bar on a terminal, rejected rows with their line numbers, a checkpoint to resume.
 */
import { writeFileSync } from "node:fs";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { CliError, Exit, usage } from "../errors.ts";
import { Checkpoint } from "../load/checkpoint.ts";
import { EVENT_TIME_SUFFIX, MAX_AGE_SUFFIX, readSchema } from "../load/columns.ts";
import { CsvSource } from "../load/csv.ts";
import {
  DEFAULT_BATCH_BYTES,
  DEFAULT_BATCH_ROWS,
  DEFAULT_RETRIES,
  DEFAULT_WINDOW,
  type LoadSummary,
  load,
} from "../load/loader.ts";
import { NdjsonSource } from "../load/ndjson.ts";
import { ParquetSource } from "../load/parquet.ts";
import { FORMATS, type Format, formatOf, type RowSource } from "../load/source.ts";
import { count, eprintln, printJson } from "../output.ts";
import { globals, withClient } from "./common.ts";

/** Rejected rows printed on stderr (all of them go to --rejects). */
const MAX_PRINTED_REJECTS = 100;
/** Rejected rows kept in the --json summary. */
const MAX_JSON_REJECTS = 1000;
/** The server's default MAX_ENTITY_ID_BYTES: longer ids are rejected here, with their line. */
const MAX_ID_BYTES = 1024;

interface LoadFlags {
  format?: string;
  idColumn: string;
  schema?: string;
  replace?: boolean;
  ttl?: string;
  batchSize: string;
  window: string;
  maxErrors: string;
  fromRow?: string;
  checkpoint?: string;
  rejects?: string;
  schemaOut?: string;
  featureSet?: string;
  version?: string;
}

export function registerLoad(program: Command): void {
  program
    .command("load")
    .description("bulk-load an NDJSON, CSV or Parquet file: one entity per row")
    .argument("<file>", "input file (.ndjson/.jsonl, .csv, .parquet)")
    .option("--format <format>", `${FORMATS.join(" | ")} (default: from the extension)`)
    .option("--id-column <column>", "column holding the entity id", "entity_id")
    .option(
      "--schema <file>",
      "JSON object of column -> type (int, double, string, bool, bytes, float_list, int_list, string_list)",
    )
    .option("--replace", "replace each entity's record (default: merge the row's features into it)")
    .option("--ttl <ms>", "time to live of every record written, ms (default: the server's)")
    .option(
      "--feature-set <name>",
      "write into a version of this feature set (with --version); publish it with `featurestore publish`",
    )
    .option("--version <name>", "the version to write (with --feature-set)")
    .option(
      "--batch-size <rows>",
      "rows per BatchSet (at most the server's MAX_BATCH_ITEMS)",
      String(DEFAULT_BATCH_ROWS),
    )
    .option("--window <batches>", "BatchSets in flight at once", String(DEFAULT_WINDOW))
    .option("--max-errors <n>", "rejected rows tolerated; one more stops the load", "0")
    .option("--from-row <n>", "skip the first n data rows (NDJSON lines, CSV records, Parquet rows)")
    .option(
      "--checkpoint <file>",
      "save progress here as batches are acknowledged; resume from it if it exists",
    )
    .option("--rejects <file>", "write every rejected row here as NDJSON: {line, reason}")
    .option("--schema-out <file>", "write the column types used (a --schema for the next load)")
    .addHelpText(
      "after",
      `
Rows: an "${"entity_id"}" column (or --id-column) and feature columns. Types come from --schema, from a
Parquet file's own schema, or are inferred from the first 1,000 rows: whole numbers int (a column
with any fraction is double), true/false bool, a list of numbers float_list (an embedding), a list
of strings string_list, anything else string; bytes are base64 text. null, an empty CSV cell or an
absent key writes nothing for that feature. A row whose value does not fit its column, whose id is
missing, or that is not valid JSON/CSV is rejected and reported with its line number.

Event times: a column f${EVENT_TIME_SUFFIX} gives the value of feature f its event time (ms since
the epoch; default: the server's clock) and f${MAX_AGE_SUFFIX} its own max age (ms), as
export --event-times writes them. They are not features. A stored value with a newer event time
is kept (set if newer); one more than the server's MAX_EVENT_TIME_SKEW_MS ahead is rejected.

Re-running is safe: rows are written by entity id (merge, or --replace), so loading a file twice
leaves the same store. A file with one id on several rows: the last row wins (one connection
keeps the file's order). With --checkpoint, progress is saved as batches are acknowledged; after
a crash or Ctrl-C the same command resumes after the last acknowledged batch; the checkpoint is
removed when the load completes.

Exit status: 0 loaded, 5 loaded with rejected rows (<= --max-errors), 6 stopped after more than
--max-errors rejected rows, 2 unreadable input or bad flags, 3 server unavailable, 4 auth, 130
interrupted (checkpoint kept).

  featurestore load users.ndjson
  featurestore load users.csv --id-column user_id --schema schema.json --max-errors 100 --checkpoint users.ckpt
  featurestore load day=2024-06-01.parquet --replace --json
  featurestore load scores-v8.parquet --feature-set ranker --version v8 && featurestore publish ranker v8`,
    )
    .action(async (file: string, o: LoadFlags, cmd: Command) => {
      const flags = globals(cmd);
      const format = (o.format ?? formatOf(file)) as Format | null;
      if (format === null || !FORMATS.includes(format))
        throw usage(`load: cannot tell the format of ${file}; give --format ${FORMATS.join("|")}`);
      const batchRows = int("--batch-size", o.batchSize, 1);
      const window = int("--window", o.window, 1);
      const maxErrors = int("--max-errors", o.maxErrors, 0);
      const ttlMs = o.ttl === undefined ? 0 : int("--ttl", o.ttl, 0);
      if (Boolean(o.featureSet) !== Boolean(o.version))
        throw usage("load: --feature-set and --version go together (a load writes one version of one set)");
      const schema = o.schema ? readSchema(o.schema) : Object.create(null);
      const checkpoint = o.checkpoint ? newCheckpoint(o.checkpoint, file) : null;
      const saved = checkpoint?.read() ?? null;
      let fromRow = o.fromRow === undefined ? 0 : int("--from-row", o.fromRow, 0);
      if (saved !== null && o.fromRow === undefined) fromRow = saved.rows;
      const source = await openSource(format, file, fromRow);
      const fileSchema = source instanceof ParquetSource ? source.schema() : undefined;
      const showBar =
        !flags.json && !flags.quiet && process.stderr.isTTY === true && process.stdout.isTTY === true;
      const talk = !flags.json && !flags.quiet;
      if (talk && saved !== null && o.fromRow === undefined)
        eprintln(`resuming ${file} at row ${count(fromRow)} (checkpoint ${o.checkpoint})`);
      const rejects: { line: number; reason: string }[] = [];
      const rejectsOut = o.rejects ? openRejects(o.rejects) : null;
      const bar = showBar ? newBar(source.totalBytes) : null;
      let interrupted = false;
      const onSignal = () => {
        interrupted = true;
      };
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      const started = performance.now();
      let summary: LoadSummary;
      try {
        summary = await withClient(flags, (client, deadlineMs) =>
          load(client, source, {
            key: o.idColumn,
            schema,
            fileSchema,
            replace: Boolean(o.replace),
            ttlMs,
            featureSet: o.featureSet,
            version: o.version,
            batchRows,
            batchBytes: DEFAULT_BATCH_BYTES,
            window,
            maxErrors,
            retries: DEFAULT_RETRIES,
            deadlineMs,
            maxIdBytes: MAX_ID_BYTES,
            fromRow,
            priorWritten: saved?.written ?? 0,
            priorRejected: saved?.rejected ?? 0,
            checkpoint,
            onReject(line, reason) {
              if (rejects.length < MAX_JSON_REJECTS) rejects.push({ line, reason });
              rejectsOut?.push(`${JSON.stringify({ line, reason })}\n`);
              if (talk && rejects.length <= MAX_PRINTED_REJECTS) {
                if (bar !== null) process.stderr.write("\r\x1b[K");
                eprintln(`${source.unit} ${line}: ${reason}`);
                if (rejects.length === MAX_PRINTED_REJECTS)
                  eprintln("(further rejected rows are not printed; see --rejects)");
              }
            },
            onProgress(p) {
              if (bar === null) return;
              const s = (performance.now() - started) / 1000;
              bar.update(p.bytesRead, {
                rows: count(p.rows),
                rps: count(s > 0 ? p.rows / s : 0),
                mbps: (s > 0 ? p.bytesRead / s / 1e6 : 0).toFixed(1),
              });
            },
            interrupted: () => interrupted,
          }),
        );
      } finally {
        bar?.stop();
        await source.close();
        if (rejectsOut !== null) writeFileSync(o.rejects!, rejectsOut.join(""));
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
      if (o.schemaOut) writeFileSync(o.schemaOut, `${JSON.stringify(summary.types, null, 2)}\n`);
      report(summary, file, flags.json === true, talk, rejects);
      if (summary.outcome === "interrupted")
        throw new CliError(
          Exit.Interrupted,
          checkpoint
            ? `interrupted; resume with the same command (checkpoint ${o.checkpoint})`
            : `interrupted after row ${summary.rowsDone}; resume with --from-row ${summary.rowsDone}`,
          { code: "interrupted" },
        );
      if (summary.outcome === "too_many_rejected")
        throw new CliError(
          Exit.TooManyRejected,
          `stopped: more than --max-errors ${maxErrors} rows rejected`,
          { code: "too_many_rejected" },
        );
      if (summary.rejected > 0)
        throw new CliError(Exit.Rejected, `${summary.rejected} rows rejected`, { code: "rejected" });
    });
}

function report(
  s: LoadSummary,
  file: string,
  json: boolean,
  talk: boolean,
  rejects: { line: number; reason: string }[],
): void {
  if (json) {
    printJson({
      file,
      outcome: s.outcome,
      rows: s.rows,
      written: s.written,
      rejected: s.rejected,
      rows_done: s.rowsDone,
      batches: s.batches,
      retries: s.retries,
      seconds: Math.round(s.seconds * 1000) / 1000,
      rows_per_s: Math.round(s.rows / s.seconds),
      bytes_per_s: Math.round(s.bytesRead / s.seconds),
      types: s.types,
      rejected_rows: rejects,
    });
    return;
  }
  if (!talk) return;
  const rate = s.seconds > 0 ? s.rows / s.seconds : 0;
  eprintln(
    `${file}: ${count(s.written)} written, ${count(s.rejected)} rejected of ${count(s.rows)} rows in ` +
      `${s.seconds.toFixed(2)} s (${count(rate)} rows/s, ${(s.bytesRead / Math.max(s.seconds, 1e-9) / 1e6).toFixed(1)} MB/s, ` +
      `${s.batches} batches${s.retries ? `, ${s.retries} retries` : ""})`,
  );
}

function newBar(total: number): SingleBar {
  const bar = new SingleBar({
    format: "{bar} {percentage}% | {rows} rows | {rps} rows/s | {mbps} MB/s | ETA {eta_formatted}",
    barsize: 24,
    etaBuffer: 50,
    fps: 5,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(Math.max(total, 1), 0, { rows: "0", rps: "0", mbps: "0.0" });
  return bar;
}

async function openSource(format: Format, file: string, fromRow: number): Promise<RowSource> {
  try {
    if (format === "ndjson") return await NdjsonSource.open(file, fromRow);
    if (format === "csv") return new CsvSource(file, fromRow);
    return await ParquetSource.open(file, fromRow);
  } catch (err) {
    throw usage(`load: ${file}: ${(err as Error).message}`);
  }
}

function newCheckpoint(path: string, file: string): Checkpoint {
  try {
    return new Checkpoint(path, file);
  } catch (err) {
    throw usage(`load: ${file}: ${(err as Error).message}`);
  }
}

function openRejects(path: string): string[] {
  try {
    writeFileSync(path, "");
  } catch (err) {
    throw usage(`--rejects ${path}: ${(err as Error).message}`);
  }
  return [];
}

function int(flag: string, s: string, min: number): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min)
    throw usage(`${flag} must be a whole number >= ${min}, got "${s}"`);
  return n;
}
