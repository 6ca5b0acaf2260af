/**
 * `export`: records back out as NDJSON, CSV or Parquet, in the layout `load` reads (an id column
 * and a column per feature, with `--event-times` its time columns). The server has no scan, so
 * the ids come from a list (`--ids`) or from the key column of a data file (`--ids-from`, e.g. the
 * file that was loaded). Window features (tiles only the server writes) are left out and counted.
 */
import { createWriteStream, type WriteStream, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { stringify } from "csv-stringify/sync";
import { parquetWriteBuffer } from "hyparquet-writer";
import type { FeatureStoreClient, FeatureValue } from "../../client/index.ts";
import { usage } from "../errors.ts";
import { EVENT_TIME_SUFFIX, MAX_AGE_SUFFIX } from "../load/columns.ts";
import { CsvSource } from "../load/csv.ts";
import { NdjsonSource } from "../load/ndjson.ts";
import { ParquetSource } from "../load/parquet.ts";
import { BadRow, FORMATS, type Format, formatOf, type RowSource } from "../load/source.ts";
import { count, eprintln, printJson } from "../output.ts";
import { batchGetTyped, type TypedFeature, type TypedRecord } from "../read.ts";
import { type FeatureType, toCellText, toJsonValue } from "../values.ts";
import { globals, withClient } from "./common.ts";
import { readIds, splitNames } from "./kv.ts";

/** Ids per BatchGet: the server's default MAX_BATCH_ITEMS. */
const EXPORT_BATCH = 1000;
/** BatchGets in flight. */
const EXPORT_WINDOW = 4;

interface ExportFlags {
  ids?: string;
  idsFrom?: string;
  idColumn: string;
  features?: string;
  format?: string;
  output?: string;
  schemaOut?: string;
  eventTimes?: boolean;
}

/** A feature `load` can write back: any type but `window`. */
interface ExportFeature extends TypedFeature {
  type: FeatureType;
}

/** A found record, without its window features. */
interface ExportRecord {
  entityId: string;
  features: ExportFeature[];
}

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("write records of the ids given as NDJSON, CSV or Parquet (what load reads)")
    .option("--ids <file>", "ids to export, one per line (- for stdin)")
    .option("--ids-from <file>", "export the ids in the key column of this data file (e.g. the file loaded)")
    .option("--id-column <column>", "id column, in --ids-from and in the output", "entity_id")
    .option("-f, --features <names>", "comma-separated feature names (default: all)")
    .option("--format <format>", `${FORMATS.join(" | ")} (default: from --output's extension, else ndjson)`)
    .option("-o, --output <file>", "output file (default: stdout)")
    .option("--schema-out <file>", "also write the column types (a --schema for load)")
    .option(
      "--event-times",
      `also write each feature's event time and max age, as <feature>${EVENT_TIME_SUFFIX} and <feature>${MAX_AGE_SUFFIX} columns`,
    )
    .addHelpText(
      "after",
      `
The server cannot list its entities, so export reads the ids it is given: --ids (one per line)
or --ids-from, the id column of an NDJSON/CSV/Parquet file (the input of an earlier load).
Missing entities are skipped and counted. CSV and Parquet columns are the features of the first
1,000 records found (or --features); features seen only later are counted as dropped. NDJSON
keeps every feature. Parquet keeps every type; NDJSON and CSV keep them when read back with the
--schema-out file (a whole double such as 2.0 would otherwise read back as an int).

Event times: without --event-times a reloaded export takes the server's clock as the event time
of every value. With it, each feature column f comes with f${EVENT_TIME_SUFFIX} (when the value was
true, ms since the epoch) and f${MAX_AGE_SUFFIX} (its own max age, ms; empty when it has none), and
load writes them back into the values: the original event times are kept, and a value already
stored with a newer event time is not overwritten. In CSV and Parquet every feature column gets
both time columns.

Not exported: window features (the tiles of UpdateFeatures observe, which only the server
writes; load could not write them back), and features stale by their own max age (the server
does not return their values). Both are counted in the summary.

  featurestore export --ids-from users.ndjson -o backup.parquet
  featurestore export --ids ids.txt --format csv -f clicks_7d,country > part.csv`,
    )
    .action(async (o: ExportFlags, cmd: Command) => {
      const flags = globals(cmd);
      const format = (o.format ?? (o.output ? formatOf(o.output) : "ndjson")) as Format | null;
      if (format === null || !FORMATS.includes(format))
        throw usage(`export: cannot tell the format of ${o.output}; give --format ${FORMATS.join("|")}`);
      if (!o.ids && !o.idsFrom) throw usage("export: give --ids <file> or --ids-from <data file>");
      const ids = [
        ...(o.ids ? readIds(o.ids) : []),
        ...(o.idsFrom ? await idsFromFile(o.idsFrom, o.idColumn) : []),
      ];
      const names = splitNames(o.features);
      const sink = newSink(format, o.output, o.idColumn, names, Boolean(o.eventTimes));
      let found = 0;
      let missing = 0;
      let windows = 0;
      let stale = 0;
      const windowNames = new Set<string>();
      await withClient(flags, async (client, deadlineMs) => {
        await readInOrder(client, ids, names, deadlineMs, (recs) => {
          for (const rec of recs) {
            if (!rec.found) {
              missing++;
              continue;
            }
            found++;
            stale += rec.stale.length;
            const features: ExportFeature[] = [];
            for (const f of rec.features) {
              if (f.type === "window") {
                windows++;
                windowNames.add(f.name);
              } else features.push(f as ExportFeature);
            }
            sink.add({ entityId: rec.entityId, features });
          }
        });
      });
      const types = await sink.finish();
      if (o.schemaOut) writeFileSync(o.schemaOut, `${JSON.stringify(types, null, 2)}\n`);
      const summary = {
        exported: found,
        missing,
        dropped_features: sink.dropped(),
        window_values: windows,
        stale_values: stale,
        format,
        output: o.output ?? "-",
      };
      if (flags.json && o.output) printJson(summary);
      else if (!flags.quiet) {
        eprintln(
          `exported ${count(found)} entities (${count(missing)} missing)${sink.dropped() ? `, ${count(sink.dropped())} feature values dropped (not in the columns)` : ""}`,
        );
        if (windows > 0)
          eprintln(
            `left out ${count(windows)} window values (${[...windowNames].join(", ")}): only the server writes them`,
          );
        if (stale > 0) eprintln(`left out ${count(stale)} values stale by their own max age`);
      }
    });
}

/** BatchGets of `ids`, a few in flight, handed to `each` in the order of `ids`. */
async function readInOrder(
  client: FeatureStoreClient,
  ids: readonly string[],
  names: readonly string[],
  deadlineMs: number,
  each: (recs: TypedRecord[]) => void,
): Promise<void> {
  const inFlight: Promise<TypedRecord[]>[] = [];
  for (let i = 0; i < ids.length; i += EXPORT_BATCH) {
    const p = batchGetTyped(client, ids.slice(i, i + EXPORT_BATCH), names, deadlineMs);
    p.catch(() => {});
    inFlight.push(p);
    if (inFlight.length >= EXPORT_WINDOW) each(await inFlight.shift()!);
  }
  while (inFlight.length > 0) each(await inFlight.shift()!);
}

/** The ids in the key column of a data file. */
async function idsFromFile(path: string, key: string): Promise<string[]> {
  const format = formatOf(path);
  if (format === null) throw usage(`--ids-from ${path}: cannot tell its format from the extension`);
  let source: RowSource;
  try {
    source =
      format === "ndjson"
        ? await NdjsonSource.open(path, 0)
        : format === "csv"
          ? new CsvSource(path, 0)
          : await ParquetSource.open(path, 0);
  } catch (err) {
    throw usage(`--ids-from ${path}: ${(err as Error).message}`);
  }
  const ids: string[] = [];
  const seen = new Set<string>();
  try {
    for (let c = await source.next(); c !== null; c = await source.next())
      for (const row of c.rows) {
        if (row === null || row instanceof BadRow) continue;
        const id = row[key];
        const s =
          typeof id === "string" ? id : typeof id === "number" || typeof id === "bigint" ? String(id) : null;
        if (s !== null && s.length > 0 && !seen.has(s)) {
          seen.add(s);
          ids.push(s);
        }
      }
  } finally {
    await source.close();
  }
  return ids;
}

/** Where records go, in one format. */
interface Sink {
  add(rec: ExportRecord): void;
  /** Flushes; resolves with the column types written. */
  finish(): Promise<Record<string, FeatureType>>;
  /** Feature values left out: not among the columns. */
  dropped(): number;
}

function newSink(
  format: Format,
  output: string | undefined,
  key: string,
  names: string[],
  eventTimes: boolean,
): Sink {
  if (format === "ndjson") return new NdjsonSink(output, key, eventTimes);
  if (format === "csv") return new CsvSink(output, key, names, eventTimes);
  if (output === undefined && process.stdout.isTTY) throw usage("export: Parquet is binary; give -o <file>");
  return new ParquetSink(output, key, names, eventTimes);
}

/** The columns of feature column `c`: itself, then its time columns with `eventTimes`. */
function columnGroup(c: string, eventTimes: boolean): string[] {
  return eventTimes ? [c, c + EVENT_TIME_SUFFIX, c + MAX_AGE_SUFFIX] : [c];
}

/** Text output: a file stream or stdout, written in blocks. */
class TextOut {
  private parts: string[] = [];
  private size = 0;
  private readonly stream: WriteStream | null;
  constructor(path: string | undefined) {
    this.stream = path === undefined ? null : createWriteStream(path);
  }
  write(s: string): void {
    this.parts.push(s);
    this.size += s.length;
    if (this.size > 1 << 20) this.flush();
  }
  private flush(): void {
    const s = this.parts.join("");
    this.parts = [];
    this.size = 0;
    if (this.stream) this.stream.write(s);
    else process.stdout.write(s);
  }
  async end(): Promise<void> {
    this.flush();
    const stream = this.stream;
    if (stream)
      await new Promise<void>((resolve, reject) =>
        stream.end((err?: Error | null) => (err ? reject(err) : resolve())),
      );
  }
}

/** Column types seen, first type wins per column (a later value of another type is still written). */
function noteTypes(types: Record<string, FeatureType>, rec: ExportRecord): void {
  for (const f of rec.features) if (types[f.name] === undefined) types[f.name] = f.type;
}

class NdjsonSink implements Sink {
  private readonly out: TextOut;
  private readonly types: Record<string, FeatureType> = {};
  constructor(
    path: string | undefined,
    private readonly key: string,
    private readonly eventTimes: boolean,
  ) {
    this.out = new TextOut(path);
  }
  add(rec: ExportRecord): void {
    const row: Record<string, unknown> = { [this.key]: rec.entityId };
    for (const f of rec.features) {
      row[f.name] = toJsonValue(f.value);
      if (!this.eventTimes) continue;
      if (f.eventTimeMs > 0) row[f.name + EVENT_TIME_SUFFIX] = f.eventTimeMs;
      if (f.maxAgeMs > 0) row[f.name + MAX_AGE_SUFFIX] = f.maxAgeMs;
    }
    this.out.write(`${JSON.stringify(row)}\n`);
    noteTypes(this.types, rec);
  }
  async finish(): Promise<Record<string, FeatureType>> {
    await this.out.end();
    return this.types;
  }
  dropped(): number {
    return 0;
  }
}

/**
 * Columns of a tabular output: `names` if given, else the features of the first records
 * (buffered until COLUMN_SAMPLE of them are seen).
 */
const COLUMN_SAMPLE = 1000;

class CsvSink implements Sink {
  private readonly out: TextOut;
  private readonly types: Record<string, FeatureType> = {};
  private columns: string[] | null;
  private buffered: ExportRecord[] = [];
  private droppedValues = 0;
  constructor(
    path: string | undefined,
    private readonly key: string,
    names: string[],
    private readonly eventTimes: boolean,
  ) {
    this.out = new TextOut(path);
    this.columns = names.length > 0 ? names : null;
    if (this.columns) this.header();
  }
  private header(): void {
    const cols = this.columns!.flatMap((c) => columnGroup(c, this.eventTimes));
    this.out.write(stringify([[this.key, ...cols]]));
  }
  add(rec: ExportRecord): void {
    noteTypes(this.types, rec);
    if (this.columns === null) {
      this.buffered.push(rec);
      if (this.buffered.length >= COLUMN_SAMPLE) this.fixColumns();
      return;
    }
    this.row(rec);
  }
  private fixColumns(): void {
    this.columns = columnsOf(this.buffered);
    this.header();
    for (const r of this.buffered) this.row(r);
    this.buffered = [];
  }
  private row(rec: ExportRecord): void {
    const cols = this.columns!;
    const stride = this.eventTimes ? 3 : 1;
    const cells: string[] = new Array(cols.length * stride + 1).fill("");
    cells[0] = rec.entityId;
    let placed = 0;
    for (const f of rec.features) {
      const i = cols.indexOf(f.name);
      if (i < 0) continue;
      const at = 1 + i * stride;
      cells[at] = cellText(f.type, f.value);
      if (this.eventTimes) {
        if (f.eventTimeMs > 0) cells[at + 1] = String(f.eventTimeMs);
        if (f.maxAgeMs > 0) cells[at + 2] = String(f.maxAgeMs);
      }
      placed++;
    }
    this.droppedValues += rec.features.length - placed;
    this.out.write(stringify([cells]));
  }
  async finish(): Promise<Record<string, FeatureType>> {
    if (this.columns === null) this.fixColumns();
    await this.out.end();
    return this.types;
  }
  dropped(): number {
    return this.droppedValues;
  }
}

/** A CSV cell that reads back as its type: a whole double keeps a ".0". */
function cellText(type: FeatureType, v: FeatureValue): string {
  if (type === "double" && typeof v === "number" && Number.isInteger(v)) return `${v}.0`;
  return toCellText(v);
}

function columnsOf(recs: readonly ExportRecord[]): string[] {
  const seen = new Set<string>();
  for (const r of recs) for (const f of r.features) seen.add(f.name);
  return [...seen];
}

/** Parquet column types of each feature type (lists as 3-level LISTs). */
const PARQUET_LEAF: Record<FeatureType, { type: string; converted_type?: string }> = {
  int: { type: "INT64" },
  double: { type: "DOUBLE" },
  string: { type: "BYTE_ARRAY", converted_type: "UTF8" },
  bool: { type: "BOOLEAN" },
  bytes: { type: "BYTE_ARRAY" },
  float_list: { type: "FLOAT" },
  int_list: { type: "INT64" },
  string_list: { type: "BYTE_ARRAY", converted_type: "UTF8" },
};

/** Parquet: every record is held until the end (one file, row groups of 100,000). */
class ParquetSink implements Sink {
  private readonly recs: ExportRecord[] = [];
  private readonly types: Record<string, FeatureType> = {};
  private droppedValues = 0;
  constructor(
    private readonly path: string | undefined,
    private readonly key: string,
    private readonly names: string[],
    private readonly eventTimes: boolean,
  ) {}
  add(rec: ExportRecord): void {
    noteTypes(this.types, rec);
    this.recs.push(rec);
  }
  async finish(): Promise<Record<string, FeatureType>> {
    const columns = this.names.length > 0 ? this.names : columnsOf(this.recs.slice(0, COLUMN_SAMPLE));
    const cols = columns.filter((c) => this.types[c] !== undefined);
    const index = new Map(cols.map((c, i) => [c, i]));
    const data: unknown[][] = cols.map(() => new Array(this.recs.length).fill(null));
    // With --event-times: the event time and max age columns of each feature column (INT64).
    const times: (bigint | null)[][] = this.eventTimes
      ? cols.flatMap(() => [new Array(this.recs.length).fill(null), new Array(this.recs.length).fill(null)])
      : [];
    const ids: string[] = new Array(this.recs.length);
    for (let r = 0; r < this.recs.length; r++) {
      const rec = this.recs[r]!;
      ids[r] = rec.entityId;
      for (const f of rec.features) {
        const i = index.get(f.name);
        if (i === undefined || f.type !== this.types[f.name]) {
          this.droppedValues++;
          continue;
        }
        data[i]![r] = parquetValue(f.type, f.value);
        if (this.eventTimes) {
          if (f.eventTimeMs > 0) times[2 * i]![r] = BigInt(f.eventTimeMs);
          if (f.maxAgeMs > 0) times[2 * i + 1]![r] = BigInt(f.maxAgeMs);
        }
      }
    }
    const schema: Record<string, unknown>[] = [
      { name: "root", num_children: cols.length * (this.eventTimes ? 3 : 1) + 1 },
      { name: this.key, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
    ];
    for (const c of cols) {
      const t = this.types[c]!;
      const leaf = PARQUET_LEAF[t];
      if (t.endsWith("_list")) {
        schema.push({ name: c, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 });
        schema.push({ name: "list", repetition_type: "REPEATED", num_children: 1 });
        schema.push({ name: "element", repetition_type: "REQUIRED", ...leaf });
      } else schema.push({ name: c, repetition_type: "OPTIONAL", ...leaf });
      if (this.eventTimes)
        for (const name of columnGroup(c, true).slice(1))
          schema.push({ name, repetition_type: "OPTIONAL", type: "INT64" });
    }
    const columnData = [{ name: this.key, data: ids as unknown[] }];
    for (let i = 0; i < cols.length; i++) {
      const group = columnGroup(cols[i]!, this.eventTimes);
      columnData.push({ name: group[0]!, data: data[i]! });
      if (this.eventTimes) {
        columnData.push({ name: group[1]!, data: times[2 * i]! });
        columnData.push({ name: group[2]!, data: times[2 * i + 1]! });
      }
    }
    const buf = parquetWriteBuffer({
      columnData,
      // biome-ignore lint/suspicious/noExplicitAny: hyparquet-writer's SchemaElement type is not exported from its root
      schema: schema as any,
      rowGroupSize: 100_000,
    });
    if (this.path === undefined) process.stdout.write(new Uint8Array(buf));
    else writeFileSync(this.path, new Uint8Array(buf));
    const out: Record<string, FeatureType> = {};
    for (const c of cols) out[c] = this.types[c]!;
    return out;
  }
  dropped(): number {
    return this.droppedValues;
  }
}

function parquetValue(type: FeatureType, v: FeatureValue): unknown {
  switch (type) {
    case "int":
      return typeof v === "bigint" ? v : BigInt(v as number);
    case "float_list":
      return Array.from(v as Float32Array);
    case "int_list":
      return Array.from(v as BigInt64Array);
    default:
      return v;
  }
}
