/**
 * A per-request index of feature names, so that a projection, a merge or a partial delete costs
 * one lookup per stored entry instead of one comparison per (entry, requested name) pair: the
 * pairwise loops were quadratic (64,000 names in one SetFeatures held the event loop for 8.5 s).
 *
 * The names are ranges of the request buffer; the index is an open-addressing table of their
 * hashes, rebuilt per request in time linear in the names' bytes, its arrays reused across
 * requests. Up to LINEAR_MAX names are compared directly instead: for the few names a typical
 * projection asks for, that beats hashing every stored entry's name.
 *
 * The hash is HalfSipHash-1-3 (the Linux kernel's `hsiphash`) keyed randomly per process: a
 * keyed PRF, so a client cannot craft names that collide. MurmurHash3 would be faster but has
 * seed-independent multicollisions, which would turn the table back into a quadratic list.
 */
import { bytesEqual } from "../codec/wire.ts";

/** Up to this many names are matched by direct comparison, without a table. */
const LINEAR_MAX = 8;

const key = crypto.getRandomValues(new Int32Array(2));
const K0 = key[0]!;
const K1 = key[1]!;

/**
 * HalfSipHash-1-3 of b[start,end) under the process key: a signed 32-bit value. One loop runs
 * every SipRound: one per 4-byte word, one for the final word (the length and the tail
 * bytes), then three to finalise (after v2 ^= 0xff).
 */
export function nameHash(b: Uint8Array, start: number, end: number): number {
  let v0 = K0;
  let v1 = K1;
  let v2 = 0x6c796765 ^ K0;
  let v3 = 0x74656462 ^ K1;
  const len = end - start;
  const words = len >> 2;
  const tail = start + (words << 2);
  let last = len << 24;
  const rest = len & 3;
  if (rest === 3) last |= b[tail + 2]! << 16;
  if (rest >= 2) last |= b[tail + 1]! << 8;
  if (rest >= 1) last |= b[tail]!;
  for (let r = 0, i = start; r < words + 4; r++, i += 4) {
    let m = 0;
    if (r < words) m = b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    else if (r === words) m = last;
    else if (r === words + 1) v2 ^= 0xff;
    v3 ^= m;
    // SipRound on 32-bit words: rotations 5, 16, 8, 7, 13, 16
    v0 = (v0 + v1) | 0;
    v1 = (v1 << 5) | (v1 >>> 27);
    v1 ^= v0;
    v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0;
    v3 = (v3 << 8) | (v3 >>> 24);
    v3 ^= v2;
    v0 = (v0 + v3) | 0;
    v3 = (v3 << 7) | (v3 >>> 25);
    v3 ^= v0;
    v2 = (v2 + v1) | 0;
    v1 = (v1 << 13) | (v1 >>> 19);
    v1 ^= v2;
    v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  return v1 ^ v3;
}

/** Growable list of [start, end) ranges into one buffer, reused across requests. */
export class Ranges {
  starts: Int32Array<ArrayBuffer> = new Int32Array(64);
  ends: Int32Array<ArrayBuffer> = new Int32Array(64);
  /** A third number per range (the field number of a value occurrence). */
  extra: Int32Array<ArrayBuffer> = new Int32Array(64);
  count = 0;

  push(start: number, end: number, extra = 0): void {
    if (this.count === this.starts.length) {
      const n = this.count * 2;
      this.starts = grown(this.starts, n);
      this.ends = grown(this.ends, n);
      this.extra = grown(this.extra, n);
    }
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.extra[this.count++] = extra;
  }
}

/** A copy of `a` with room for `n` numbers. */
export function grown(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const g = new Int32Array(n);
  g.set(a);
  return g;
}

/**
 * Which of a request's names equal a given name, and which of them repeat each other. After
 * `build`, `first[i]` is the index of the first name equal to name `i` (itself if it is the
 * first), `last[f]` the index of the last name equal to first name `f`, and `unique` the number
 * of distinct names.
 */
export class NameIndex {
  first: Int32Array<ArrayBuffer> = new Int32Array(64);
  last: Int32Array<ArrayBuffer> = new Int32Array(64);
  unique = 0;
  /** Table slot -> name index + 1 (0 = empty), and each slot's hash; a power-of-two size. */
  private slots = new Int32Array(128);
  private hashes = new Int32Array(128);
  private mask = 127;
  private buf: Uint8Array = new Uint8Array(0);
  private names: Ranges = new Ranges();
  private linear = true;

  /** Indexes `names`, ranges of `buf`. Linear in their bytes. */
  build(buf: Uint8Array, names: Ranges): void {
    const n = names.count;
    this.buf = buf;
    this.names = names;
    if (this.first.length < n) {
      this.first = new Int32Array(n * 2);
      this.last = new Int32Array(n * 2);
    }
    const { starts, ends } = names;
    const { first, last } = this;
    this.unique = 0;
    this.linear = n <= LINEAR_MAX;
    if (!this.linear) {
      let size = this.slots.length;
      while (size < n * 2) size *= 2;
      if (size !== this.slots.length) {
        this.slots = new Int32Array(size);
        this.hashes = new Int32Array(size);
      } else this.slots.fill(0);
      this.mask = size - 1;
    }
    for (let i = 0; i < n; i++) {
      const f = this.linear
        ? this.linearFind(starts[i]!, ends[i]!, buf, i)
        : this.insert(i, buf, starts[i]!, ends[i]!);
      if (f < 0) {
        first[i] = i;
        last[i] = i;
        this.unique++;
      } else {
        first[i] = f;
        last[f] = i;
      }
    }
  }

  /** The index of the first request name equal to other[start,end), or -1. */
  lookup(other: Uint8Array, start: number, end: number): number {
    if (this.linear) return this.linearFind(start, end, other, this.names.count);
    const { slots, hashes, mask } = this;
    const { starts, ends } = this.names;
    const h = nameHash(other, start, end);
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const k = slots[s]! - 1;
      if (k < 0) return -1;
      if (hashes[s] === h && bytesEqual(this.buf, starts[k]!, ends[k]!, other, start, end)) return k;
    }
  }

  /** The first of names [0, before) equal to other[start,end) and first of its kind, or -1. */
  private linearFind(start: number, end: number, other: Uint8Array, before: number): number {
    const { starts, ends } = this.names;
    const first = this.first;
    for (let i = 0; i < before; i++)
      if (first[i] === i && bytesEqual(this.buf, starts[i]!, ends[i]!, other, start, end)) return i;
    return -1;
  }

  /** Adds name `i` unless an equal name is in the table; returns that name's index, or -1. */
  private insert(i: number, buf: Uint8Array, start: number, end: number): number {
    const { slots, hashes, mask } = this;
    const { starts, ends } = this.names;
    const h = nameHash(buf, start, end);
    let s = h & mask;
    for (; ; s = (s + 1) & mask) {
      const k = slots[s]! - 1;
      if (k < 0) break;
      if (hashes[s] === h && bytesEqual(buf, starts[k]!, ends[k]!, buf, start, end)) return k;
    }
    slots[s] = i + 1;
    hashes[s] = h;
    return -1;
  }
}
