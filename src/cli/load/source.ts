/**
 * Where rows come from: one RowSource per file format, each handing out chunks of parsed rows
 * with the line (or row) number of each, so that a rejected row can be named.
 */

/** A row that could not be parsed (bad JSON, a CSV record with the wrong column count...). */
export class BadRow {
  constructor(readonly reason: string) {}
}

/** Rows read together. */
export interface RowChunk {
  /** Parsed rows (objects keyed by column) or BadRow; `null` for a blank line (not an error). */
  rows: (Record<string, unknown> | BadRow | null)[];
  /** Line (NDJSON, CSV) or row (Parquet) number of each row, 1-based, as editors count. */
  lines: number[];
  /** Input bytes consumed up to the end of this chunk (for the progress bar). */
  bytesRead: number;
}

export interface RowSource {
  /** Size of the input, bytes (0 when unknown: a pipe). */
  readonly totalBytes: number;
  /** What `lines` count: "line" for text formats, "row" for Parquet. */
  readonly unit: "line" | "row";
  /** Next chunk; null at the end. Row i of the file (0-based, header excluded) is counted by `--from-row`. */
  next(): Promise<RowChunk | null>;
  close(): Promise<void>;
}

/** The formats `load` reads and `export` writes. */
export const FORMATS = ["ndjson", "csv", "parquet"] as const;
export type Format = (typeof FORMATS)[number];

/** The format of `path` from its extension (`.jsonl`/`.json` count as NDJSON); null if unknown. */
export function formatOf(path: string): Format | null {
  const p = path.toLowerCase().replace(/\.gz$/, "");
  if (p.endsWith(".ndjson") || p.endsWith(".jsonl") || p.endsWith(".json")) return "ndjson";
  if (p.endsWith(".csv")) return "csv";
  if (p.endsWith(".parquet") || p.endsWith(".pq")) return "parquet";
  return null;
}
