/**
 * CSV rows with csv-parse (RFC 4180: quoted fields, embedded newlines, a BOM): the first record
 * names the columns. A record that does not parse (wrong column count, a broken quote) becomes
 * a BadRow with its line, through csv-parse's `skip_records_with_error`. An empty cell is null:
 * CSV cannot tell an empty string from no value, and `export` writes absent features as empty
 * cells, so an empty cell writes nothing (an empty string stays possible in NDJSON and Parquet).
 */
import { createReadStream, statSync } from "node:fs";
import { type CsvError, type Info, parse } from "csv-parse";
import { BadRow, type RowChunk, type RowSource } from "./source.ts";

/** Records per chunk. */
const CSV_CHUNK_ROWS = 2000;

interface Parsed {
  record: Record<string, string | null>;
  info: Info;
}

export class CsvSource implements RowSource {
  readonly unit = "line";
  readonly totalBytes: number;
  private bytesRead = 0;
  private readonly it: AsyncIterator<Parsed>;
  private readonly skipped: { line: number; reason: string }[] = [];
  private toSkip: number;
  private readonly stream: ReturnType<typeof createReadStream>;

  constructor(path: string, fromRow: number) {
    this.totalBytes = statSync(path).size;
    this.toSkip = fromRow;
    this.stream = createReadStream(path, { highWaterMark: 1 << 20 });
    this.stream.on("data", (b) => {
      this.bytesRead += b.length;
    });
    const parser = parse({
      columns: true,
      bom: true,
      info: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err: CsvError | undefined) => {
        if (err === undefined) return;
        const line = (err as unknown as { lines?: number }).lines ?? 0;
        this.skipped.push({ line, reason: err.message.replace(/^Invalid Record Length: /, "") });
      },
    });
    this.stream.pipe(parser);
    this.it = parser[Symbol.asyncIterator]() as AsyncIterator<Parsed>;
  }

  async next(): Promise<RowChunk | null> {
    const rows: RowChunk["rows"] = [];
    const lines: number[] = [];
    while (rows.length < CSV_CHUNK_ROWS) {
      const r = await this.it.next();
      // A skipped record is reported as it is parsed, before records still queued ahead of it:
      // put it back in line order.
      this.drainSkipped(rows, lines, r.done ? Number.POSITIVE_INFINITY : r.value.info.lines);
      if (r.done) break;
      if (this.toSkip > 0) {
        this.toSkip--;
        continue;
      }
      const record = r.value.record;
      for (const k in record) if (record[k] === "") record[k] = null;
      rows.push(record);
      lines.push(r.value.info.lines);
    }
    if (rows.length === 0) return null;
    return { rows, lines, bytesRead: this.bytesRead };
  }

  private drainSkipped(rows: RowChunk["rows"], lines: number[], before: number): void {
    while (this.skipped.length > 0 && this.skipped[0]!.line < before) {
      const s = this.skipped.shift()!;
      if (this.toSkip > 0) {
        this.toSkip--;
        continue;
      }
      rows.push(new BadRow(s.reason));
      lines.push(s.line);
    }
  }

  async close(): Promise<void> {
    this.stream.destroy();
  }
}
