/**
 * NDJSON rows: one JSON object per line. The file is read in 1 MiB blocks; the whole lines of a
 * block are decoded to one string at once and split there (a TextDecoder call per line cost more
 * than the JSON.parse of a short line), each line parsed with JSON.parse.
 */
import { type FileHandle, open } from "node:fs/promises";
import { BadRow, type RowChunk, type RowSource } from "./source.ts";

/** Bytes read per block: large enough that a read is cheap per row, small enough to stream. */
export const NDJSON_BLOCK_BYTES = 1 << 20;
const NL = 0x0a;

export class NdjsonSource implements RowSource {
  readonly unit = "line";
  private buf = new Uint8Array(NDJSON_BLOCK_BYTES * 2);
  /** Bytes of `buf` holding data not yet consumed (a partial line from the last block). */
  private held = 0;
  private position = 0;
  private line = 0;
  private eof = false;
  private toSkip: number;
  private readonly decoder = new TextDecoder();

  private constructor(
    private readonly fh: FileHandle,
    readonly totalBytes: number,
    fromRow: number,
  ) {
    this.toSkip = fromRow;
  }

  static async open(path: string, fromRow: number): Promise<NdjsonSource> {
    const fh = await open(path, "r");
    const size = (await fh.stat()).size;
    return new NdjsonSource(fh, size, fromRow);
  }

  async next(): Promise<RowChunk | null> {
    for (;;) {
      if (this.eof && this.held === 0) return null;
      if (!this.eof) await this.fill();
      if (this.held === 0) return null;
      // (lastIndexOf from -1 would search the whole buffer: held > 0 here.)
      let end = this.buf.lastIndexOf(NL, this.held - 1);
      if (end < 0) {
        if (!this.eof) {
          if (this.held === this.buf.length) this.grow();
          continue;
        }
        end = this.held; // the last line has no newline
      } else end += 1;
      let start = 0;
      while (this.toSkip > 0 && start < end) {
        const nl = this.buf.indexOf(NL, start);
        start = nl < 0 || nl >= end ? end : nl + 1;
        this.toSkip--;
        this.line++;
      }
      const chunk = this.parse(start, end);
      this.buf.copyWithin(0, end, this.held);
      this.held -= end;
      if (chunk.rows.length > 0 || (this.eof && this.held === 0)) return chunk.rows.length > 0 ? chunk : null;
    }
  }

  private parse(start: number, end: number): RowChunk {
    const text = start < end ? this.decoder.decode(this.buf.subarray(start, end)) : "";
    const rows: RowChunk["rows"] = [];
    const lines: number[] = [];
    let p = 0;
    const n = text.length;
    while (p < n) {
      let nl = text.indexOf("\n", p);
      if (nl < 0) nl = n;
      this.line++;
      let q = nl;
      if (q > p && text.charCodeAt(q - 1) === 13) q--;
      if (q > p) {
        let row: Record<string, unknown> | BadRow;
        try {
          row = JSON.parse(text.slice(p, q));
        } catch (err) {
          row = new BadRow(`invalid JSON (${(err as Error).message})`);
        }
        rows.push(row);
        lines.push(this.line);
      }
      p = nl + 1;
    }
    return { rows, lines, bytesRead: this.position - (this.held - end) };
  }

  private grow(): void {
    const next = new Uint8Array(this.buf.length * 2);
    next.set(this.buf.subarray(0, this.held));
    this.buf = next;
  }

  private async fill(): Promise<void> {
    if (this.buf.length - this.held < NDJSON_BLOCK_BYTES) this.grow();
    const { bytesRead } = await this.fh.read(this.buf, this.held, NDJSON_BLOCK_BYTES, this.position);
    this.position += bytesRead;
    this.held += bytesRead;
    if (bytesRead === 0) this.eof = true;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
