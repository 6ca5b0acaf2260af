/**
 * Parquet rows with hyparquet (pure JavaScript, no native or WASM download), read in row ranges
 * so that a large file streams. Column types come from the Parquet schema: INT32/INT64 -> int,
 * FLOAT/DOUBLE -> double, BOOLEAN -> bool, UTF8 byte arrays -> string, other byte arrays -> bytes,
 * LIST of those -> float_list / int_list / string_list.
 */
import { statSync } from "node:fs";
import {
  asyncBufferFromFile,
  type FileMetaData,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from "hyparquet";
import type { FeatureType } from "../values.ts";
import type { Schema } from "./columns.ts";
import type { RowChunk, RowSource } from "./source.ts";

/** Rows read per range: a few MB of a 20-feature file. */
const PARQUET_CHUNK_ROWS = 10_000;

type AsyncBuffer = Awaited<ReturnType<typeof asyncBufferFromFile>>;

export class ParquetSource implements RowSource {
  readonly unit = "row";
  private row: number;

  private constructor(
    private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData,
    readonly totalBytes: number,
    readonly totalRows: number,
    fromRow: number,
  ) {
    this.row = fromRow;
  }

  static async open(path: string, fromRow: number): Promise<ParquetSource> {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    return new ParquetSource(file, metadata, statSync(path).size, Number(metadata.num_rows), fromRow);
  }

  /** Feature types named by the file's schema (columns of other types are inferred). */
  schema(): Schema {
    const out: Schema = Object.create(null);
    for (const child of parquetSchema(this.metadata).children) {
      const t = typeOfElement(child);
      if (t !== null) out[child.element.name] = t;
    }
    return out;
  }

  async next(): Promise<RowChunk | null> {
    if (this.row >= this.totalRows) return null;
    const rowStart = this.row;
    const rowEnd = Math.min(this.totalRows, rowStart + PARQUET_CHUNK_ROWS);
    const rows = (await parquetReadObjects({
      file: this.file,
      metadata: this.metadata,
      rowStart,
      rowEnd,
      utf8: false,
    })) as Record<string, unknown>[];
    this.row = rowEnd;
    const lines = new Array<number>(rows.length);
    for (let i = 0; i < rows.length; i++) lines[i] = rowStart + i + 1;
    return { rows, lines, bytesRead: Math.round((this.totalBytes * rowEnd) / this.totalRows) };
  }

  async close(): Promise<void> {}
}

type SchemaNode = ReturnType<typeof parquetSchema>;

function typeOfElement(node: SchemaNode): FeatureType | null {
  const e = node.element;
  if (e.converted_type === "LIST" || e.logical_type?.type === "LIST") {
    let leaf = node;
    while (leaf.children.length > 0) leaf = leaf.children[0]!;
    const t = typeOfElement(leaf);
    if (t === "int") return "int_list";
    if (t === "double") return "float_list";
    if (t === "string" || t === "bytes") return "string_list";
    return null;
  }
  switch (e.type) {
    case "INT32":
    case "INT64":
      return "int";
    case "FLOAT":
    case "DOUBLE":
      return "double";
    case "BOOLEAN":
      return "bool";
    case "BYTE_ARRAY":
    case "FIXED_LEN_BYTE_ARRAY":
      return e.converted_type === "UTF8" || e.logical_type?.type === "STRING" ? "string" : "bytes";
    default:
      return null;
  }
}
