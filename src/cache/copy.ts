/**
 * Allocation-free byte copy from an arena into a caller's Uint8Array.
 *
 * `out.set(arena.subarray(a, b), o)` is a native memcpy, but `subarray` allocates a view object
 * (measured here: ~60 ns fixed cost, ~77 ns for 500 B). A byte loop allocates nothing but costs ~0.45
 * ns/byte (~220 ns for 500 B). Copying 4-byte words through Int32Array views costs ~0.14 ns/byte
 * (~70 ns for 500 B) and allocates nothing, so mid-sized values take that path:
 *
 * - `n < SMALL_COPY`: byte loop (the word set-up is not worth it).
 * - `n <= WORD_COPY_MAX`: word loop. The destination is aligned to 4 first; when source and
 *   destination disagree mod 4, each output word is stitched from two source words with shifts.
 *   Needs Int32Array views over the destination's whole ArrayBuffer: created the first time a
 *   buffer is seen and kept while the caller keeps writing into the same buffer (one output buffer
 *   per connection is the intended use), so the steady state allocates nothing.
 * - larger: native memcpy through one short-lived view, ~2.5x faster than words at 5 KB and the
 *   view's cost is small next to the copy.
 *
 * Assumes a little-endian host (x86-64, arm64): byte k of a word is `(w >>> 8k) & 255`.
 */

/** Below this many bytes a plain byte loop wins. */
const SMALL_COPY = 16;
/** Above this many bytes the native memcpy wins despite its view allocation (measured on 500 B/5 KB). */
const WORD_COPY_MAX = 2048;

/** Copies bytes out of one arena, keeping word views of the last destination buffer. */
export class ByteCopier {
  private buf: ArrayBufferLike | null = null;
  private o8: Uint8Array = new Uint8Array(0);
  private o32: Int32Array = new Int32Array(0);
  /** Sink for the prefetching loads, so the JIT cannot drop them. */
  touched = 0;

  /**
   * Copies `src8[s, s+n)` to `out[offset, offset+n)`. `src32` must view the same buffer as `src8`
   * from byte 0, and `src8` must have at least 4 readable bytes past `s+n` (the arena pads for this).
   * Bounds of `out` are the caller's job.
   */
  copy(src8: Uint8Array, src32: Int32Array, s: number, out: Uint8Array, offset: number, n: number): void {
    if (n < SMALL_COPY) {
      for (let i = 0; i < n; i++) out[offset + i] = src8[s + i]!;
      return;
    }
    if (n > WORD_COPY_MAX) {
      out.set(src8.subarray(s, s + n), offset);
      return;
    }
    const buf = out.buffer;
    if (buf !== this.buf) {
      this.buf = buf;
      this.o8 = new Uint8Array(buf);
      this.o32 = new Int32Array(buf, 0, buf.byteLength >>> 2);
    }
    const o8 = this.o8;
    const o32 = this.o32;
    // Touch one byte per cache line first: these loads are independent, so a cold value's lines are
    // fetched in parallel instead of a few at a time as the copy loop reaches them.
    let touch = 0;
    for (let q = s + 64, qEnd = s + n; q < qEnd; q += 64) touch |= src8[q]!;
    this.touched = touch;
    let d = out.byteOffset + offset;
    if (d + n > o8.length) {
      // A length-tracking view whose buffer shrank; let the native path raise the error.
      out.set(src8.subarray(s, s + n), offset);
      return;
    }
    // Head: bytes until the destination is word aligned.
    while ((d & 3) !== 0) {
      o8[d++] = src8[s++]!;
      n--;
    }
    const words = n >>> 2;
    let dw = d >>> 2;
    const dwEnd = dw + words;
    const r = s & 3;
    let w = s >>> 2;
    if (r === 0) {
      for (; dw < dwEnd; dw++, w++) o32[dw] = src32[w]!;
    } else {
      const rs = r << 3;
      const ls = 32 - rs;
      let cur = src32[w]!;
      for (; dw < dwEnd; dw++) {
        const next = src32[++w]!;
        o32[dw] = (cur >>> rs) | (next << ls);
        cur = next;
      }
    }
    const done = words << 2;
    s += done;
    d += done;
    for (let i = 0, tail = n & 3; i < tail; i++) o8[d + i] = src8[s + i]!;
  }
}
