/**
 * A strict JSON parser (RFC 8259) for request bodies: the values JSON.parse produces, but a key
 * given twice in one object is an error rather than "last one wins", and nesting is bounded.
 *
 * JSON.parse cannot be used for request bodies because it hides duplicate keys: with
 * `{"entityId":"a","entityId":"b"}` the first value vanishes without a trace, and the proto3
 * JSON mapping (json.ts) never sees that a field was given twice. Keys are compared after
 * unescaping, so "a" and "\u0061" are the same key, as they are for JSON.parse.
 *
 * Cost is linear in the input: one pass over the char codes; a string without escapes is one
 * `slice` (an escape switches to appending slices between escapes); a duplicate key is found
 * with `Object.hasOwn` on the object being built, a hash lookup whatever the number of keys
 * (see KEY_CACHE for what makes it cheap). Recursion is bounded by MAX_JSON_DEPTH, so deep
 * input is a clear error, never a stack overflow. bench/micro/json.bench.ts compares it with
 * JSON.parse.
 *
 * Strings are returned as JSON.parse returns them, lone surrogates included (RFC 8259 allows
 * `"\ud800"` syntactically): whether a lone surrogate is acceptable depends on where the string
 * goes, and json.ts, which knows the field path, rejects it where it would become a protobuf
 * string.
 *
 * Errors are INVALID_ARGUMENT. Syntax errors read "request body is not valid JSON: …", and
 * every error gives the line and column (1-based, in UTF-16 units) and the path to the value.
 */
import { invalidArgument } from "../../codec/status.ts";

/**
 * Deepest nesting of arrays and objects accepted. The service's deepest message needs 7 levels
 * (BatchSet → items[] → item → features → value → floatList → values[]); 64 leaves room for
 * new messages and keeps the recursion far from the stack limit.
 */
export const MAX_JSON_DEPTH = 64;

const SYNTAX = "request body is not valid JSON";

/**
 * Parses `text` as one JSON value, with the result JSON.parse gives, except that a duplicate
 * key in any object, nesting deeper than MAX_JSON_DEPTH and any syntax error throw
 * INVALID_ARGUMENT with the position.
 */
export function parseJsonStrict(text: string): unknown {
  return new StrictJsonParser(text).parse();
}

// Char codes.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SLASH = 0x2f;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;

/** Integers below this are exact in a double. */
const TWO_TO_53 = 2 ** 53;
/** 10^22 is the largest power of ten that is an exact double. */
const MAX_EXACT_POW10 = 22;
const POW10 = Array.from({ length: MAX_EXACT_POW10 + 1 }, (_, k) => 10 ** k);
/** Exponent digits stop accumulating here (the value is then 0 or Infinity, left to Number()). */
const EXP_CAP = 100_000;

/**
 * Keys seen recently, by a hash of length and three chars: field names and feature names
 * repeat from one request to the next. A key found here is the same JS string as last time,
 * already interned by JSC as a property name, so the `Object.hasOwn` duplicate check and the
 * property store skip hashing a fresh string. Measured on 20-member objects: 2.6x the time of
 * JSON.parse without the cache, 1.1x with it (a Set per object instead of `Object.hasOwn`
 * was slower still: one more allocation and hash per object). A miss costs one comparison of
 * at most KEY_CACHE_MAX_LENGTH chars and replaces the slot.
 */
const KEY_CACHE_SIZE = 256;
const KEY_CACHE_MASK = KEY_CACHE_SIZE - 1;
const KEY_CACHE_MAX_LENGTH = 32;
const KEY_CACHE: (string | undefined)[] = new Array(KEY_CACHE_SIZE).fill(undefined);

/**
 * One parse: the text, the position and the path to the value being parsed (for errors).
 *
 * No read goes past the end of the text (every charCodeAt is behind a length check, or goes
 * through `code`, which gives -1 there): JSC compiles a charCodeAt site that has once returned
 * NaN for an out-of-bounds index into a call to the generic builtin, which made the whole
 * parse 3x slower (measured: the whitespace skip alone took 30% of a parse).
 */
class StrictJsonParser {
  private pos = 0;
  private readonly len: number;
  /**
   * The object or array being parsed is at depth `depth` (0: none yet), reached from the top
   * through path[0 .. depth-1): for an object, the key of the member being read; for an array,
   * the array itself, whose length is the index of the element being read (one store per
   * array instead of one per element). Only errors read them: syntax errors name the enclosing
   * object or array, duplicate keys the object that has them.
   */
  private readonly path: (string | unknown[])[] = [];
  private depth = 0;

  constructor(private readonly text: string) {
    this.len = text.length;
  }

  parse(): unknown {
    const value = this.value(this.next(), 0);
    if (this.next() >= 0) this.fail("unexpected text after the JSON value", this.pos);
    return value;
  }

  /** The char code at `i`, or -1 past the end. */
  private code(i: number): number {
    return i < this.len ? this.text.charCodeAt(i) : -1;
  }

  /** Parses the value at `pos`, whose first char code is `c`, inside `depth` arrays and objects. */
  private value(c: number, depth: number): unknown {
    const pos = this.pos;
    if (c === QUOTE) return this.string();
    if (c === OPEN_BRACE) return this.object(depth + 1);
    if (c === OPEN_BRACKET) return this.array(depth + 1);
    if ((c >= ZERO && c <= NINE) || c === MINUS) return this.number();
    const text = this.text;
    if (c === 0x74 && text.startsWith("true", pos)) {
      this.pos = pos + 4;
      return true;
    }
    if (c === 0x66 && text.startsWith("false", pos)) {
      this.pos = pos + 5;
      return false;
    }
    if (c === 0x6e && text.startsWith("null", pos)) {
      this.pos = pos + 4;
      return null;
    }
    if (c < 0) return this.fail("unexpected end of input, expected a value", pos);
    return this.fail(`unexpected ${this.show(pos)}, expected a value`, pos);
  }

  private object(depth: number): Record<string, unknown> {
    this.enter(depth);
    const obj: Record<string, unknown> = {};
    this.pos++;
    let c = this.next();
    if (c === CLOSE_BRACE) {
      this.pos++;
      this.depth = depth - 1;
      return obj;
    }
    for (;;) {
      const keyAt = this.pos;
      if (c !== QUOTE) this.fail(`expected a string key, got ${this.showOrEnd(keyAt)}`, keyAt);
      const key = this.key();
      this.path[depth - 1] = key;
      if (Object.hasOwn(obj, key)) this.duplicate(key, depth, keyAt);
      if (this.next() !== COLON)
        this.fail(`expected ':' after a key, got ${this.showOrEnd(this.pos)}`, this.pos);
      this.pos++;
      const v = this.value(this.next(), depth);
      // JSON.parse makes "__proto__" an own property; an assignment would set the prototype.
      if (key === "__proto__")
        Object.defineProperty(obj, key, { value: v, writable: true, enumerable: true, configurable: true });
      else obj[key] = v;
      c = this.next();
      if (c === COMMA) {
        this.pos++;
        c = this.next();
        continue;
      }
      if (c === CLOSE_BRACE) {
        this.pos++;
        this.depth = depth - 1;
        return obj;
      }
      this.fail(`expected ',' or '}' after an object member, got ${this.showOrEnd(this.pos)}`, this.pos);
    }
  }

  private array(depth: number): unknown[] {
    this.enter(depth);
    const arr: unknown[] = [];
    // The index of the element being read is arr.length: errors read it from here.
    this.path[depth - 1] = arr;
    this.pos++;
    let c = this.next();
    if (c === CLOSE_BRACKET) {
      this.pos++;
      this.depth = depth - 1;
      return arr;
    }
    for (;;) {
      arr.push(this.value(c, depth));
      c = this.next();
      if (c === COMMA) {
        this.pos++;
        c = this.next();
        continue;
      }
      if (c === CLOSE_BRACKET) {
        this.pos++;
        this.depth = depth - 1;
        return arr;
      }
      this.fail(`expected ',' or ']' after an array element, got ${this.showOrEnd(this.pos)}`, this.pos);
    }
  }

  /**
   * Parses the key whose opening quote is at `pos`: string(), but a short key without escapes
   * that is in KEY_CACHE comes back as the cached string (see there).
   */
  private key(): string {
    const text = this.text;
    const len = this.len;
    const start = this.pos + 1;
    for (let i = start; i < len; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.pos = i + 1;
        const n = i - start;
        if (n === 0 || n > KEY_CACHE_MAX_LENGTH) return text.slice(start, i);
        const slot =
          (n * 31 +
            text.charCodeAt(start) * 7 +
            text.charCodeAt(start + (n >> 1)) * 3 +
            text.charCodeAt(i - 1)) &
          KEY_CACHE_MASK;
        const cached = KEY_CACHE[slot];
        if (cached !== undefined && cached.length === n && text.startsWith(cached, start)) return cached;
        const key = text.slice(start, i);
        KEY_CACHE[slot] = key;
        return key;
      }
      if (c === BACKSLASH) return this.escapedString(start, i);
      if (c < 0x20) this.controlCharacter(i);
    }
    return this.fail("unterminated string", this.pos);
  }

  /** Parses the string whose opening quote is at `pos`. */
  private string(): string {
    const text = this.text;
    const len = this.len;
    const start = this.pos + 1;
    for (let i = start; i < len; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.pos = i + 1;
        return text.slice(start, i);
      }
      if (c === BACKSLASH) return this.escapedString(start, i);
      if (c < 0x20) this.controlCharacter(i);
    }
    return this.fail("unterminated string", this.pos);
  }

  /** The slow path of string(): text[start, i) is plain and text[i] is a backslash. */
  private escapedString(start: number, i: number): string {
    const text = this.text;
    const len = this.len;
    let out = text.slice(start, i);
    let chunk = i;
    while (i < len) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.pos = i + 1;
        return out + text.slice(chunk, i);
      }
      if (c < 0x20) this.controlCharacter(i);
      if (c !== BACKSLASH) {
        i++;
        continue;
      }
      out += text.slice(chunk, i);
      const e = this.code(i + 1);
      let n = 2;
      switch (e) {
        case QUOTE:
        case BACKSLASH:
        case SLASH:
          out += String.fromCharCode(e);
          break;
        case 0x62: // b
          out += "\b";
          break;
        case 0x66: // f
          out += "\f";
          break;
        case 0x6e: // n
          out += "\n";
          break;
        case 0x72: // r
          out += "\r";
          break;
        case 0x74: // t
          out += "\t";
          break;
        case 0x75: {
          // u: exactly four hex digits, one UTF-16 code unit (a pair is two escapes, as in JSON.parse)
          const u =
            (hex(this.code(i + 2)) << 12) |
            (hex(this.code(i + 3)) << 8) |
            (hex(this.code(i + 4)) << 4) |
            hex(this.code(i + 5));
          if (u < 0) this.fail("bad \\u escape: expected four hex digits", i);
          out += String.fromCharCode(u);
          n = 6;
          break;
        }
        case -1:
          return this.fail("unterminated string", this.pos);
        default:
          this.fail(`bad escape ${JSON.stringify(text.slice(i, i + 2))} in a string`, i);
      }
      i += n;
      chunk = i;
    }
    return this.fail("unterminated string", this.pos);
  }

  /**
   * Parses a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
   *
   * The digits are accumulated as they are checked. While the significand stays below 2^53
   * and the decimal exponent within ±22, significand and power of ten are both exact doubles,
   * so one multiplication or division gives the correctly rounded value (Clinger's fast path),
   * the value JSON.parse gives. Anything else goes to Number(), which reads this grammar
   * exactly as JSON.parse does. The fast path covers integers of up to 15 digits and decimals
   * such as 0.25 or 0.534216046333313 (about two thirds of float32 embedding values printed as
   * doubles). Measured on arrays of 32 numbers: 0.78 µs instead of 1.5 µs for 4-decimal
   * doubles, 0.7 µs instead of 1.8 µs for integers, than with Number() on a slice.
   */
  private number(): number {
    const text = this.text;
    const len = this.len;
    const start = this.pos;
    let i = start;
    let c = text.charCodeAt(i);
    const negative = c === MINUS;
    if (negative) c = ++i < len ? text.charCodeAt(i) : -1;
    let sig = 0;
    if (c === ZERO) {
      c = ++i < len ? text.charCodeAt(i) : -1;
      if (c >= ZERO && c <= NINE) this.fail("a number must not have a leading zero", start);
    } else if (c >= ZERO && c <= NINE) {
      do {
        sig = sig * 10 + (c - ZERO);
        c = ++i < len ? text.charCodeAt(i) : -1;
      } while (c >= ZERO && c <= NINE);
    } else this.fail(`expected a digit after '-', got ${this.showOrEnd(i)}`, i);
    let e10 = 0;
    if (c === DOT) {
      c = ++i < len ? text.charCodeAt(i) : -1;
      if (!(c >= ZERO && c <= NINE)) this.fail(`expected a digit after '.', got ${this.showOrEnd(i)}`, i);
      do {
        sig = sig * 10 + (c - ZERO);
        e10--;
        c = ++i < len ? text.charCodeAt(i) : -1;
      } while (c >= ZERO && c <= NINE);
    }
    if (c === LOWER_E || c === UPPER_E) {
      c = ++i < len ? text.charCodeAt(i) : -1;
      const negativeExp = c === MINUS;
      if (negativeExp || c === PLUS) c = ++i < len ? text.charCodeAt(i) : -1;
      if (!(c >= ZERO && c <= NINE))
        this.fail(`expected a digit in the exponent, got ${this.showOrEnd(i)}`, i);
      let exp = 0;
      do {
        if (exp < EXP_CAP) exp = exp * 10 + (c - ZERO);
        c = ++i < len ? text.charCodeAt(i) : -1;
      } while (c >= ZERO && c <= NINE);
      e10 += negativeExp ? -exp : exp;
    }
    this.pos = i;
    if (sig < TWO_TO_53 && e10 >= -MAX_EXACT_POW10 && e10 <= MAX_EXACT_POW10) {
      const v = e10 === 0 ? sig : e10 < 0 ? sig / POW10[-e10]! : sig * POW10[e10]!;
      return negative ? -v : v;
    }
    return +text.slice(start, i);
  }

  /**
   * Skips JSON whitespace (space, tab, line feed, carriage return: nothing else) and returns
   * the char code there, -1 at the end.
   */
  private next(): number {
    const text = this.text;
    const len = this.len;
    for (let i = this.pos; i < len; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x20 || (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09)) {
        this.pos = i;
        return c;
      }
    }
    this.pos = len;
    return -1;
  }

  private enter(depth: number): void {
    if (depth > MAX_JSON_DEPTH)
      this.fail(
        `request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`,
        this.pos,
        false,
        false,
      );
    this.depth = depth;
  }

  private duplicate(key: string, depth: number, at: number): never {
    this.depth = depth - 1;
    const where = depth === 1 ? "the top-level object" : `the object at ${formatPath(this.path, depth - 1)}`;
    return this.fail(
      `duplicate JSON key ${quote(key)} in ${where}: a key may be given once per object`,
      at,
      false,
      false,
    );
  }

  private controlCharacter(i: number): never {
    const hex4 = this.text.charCodeAt(i).toString(16).toUpperCase().padStart(4, "0");
    return this.fail(`control character U+${hex4} in a string: escape it`, i);
  }

  /** Throws INVALID_ARGUMENT for the problem at offset `at`, with line, column and path. */
  private fail(problem: string, at: number, syntax = true, withPath = true): never {
    let line = 1;
    let lineStart = 0;
    for (let i = this.text.indexOf("\n"); i !== -1 && i < at; i = this.text.indexOf("\n", i + 1)) {
      line++;
      lineStart = i + 1;
    }
    const where = `line ${line}, column ${at - lineStart + 1}`;
    const path = withPath && this.depth > 1 ? ` (in ${formatPath(this.path, this.depth - 1)})` : "";
    throw invalidArgument(syntax ? `${SYNTAX}: ${problem} at ${where}${path}` : `${problem} (${where})`);
  }

  private show(i: number): string {
    return JSON.stringify(this.text.charAt(i));
  }

  private showOrEnd(i: number): string {
    return i >= this.len ? "the end of the input" : this.show(i);
  }
}

/** Value of a hex digit's char code, or -1 (so a bad digit makes the OR of four negative). */
function hex(c: number): number {
  if (c >= ZERO && c <= NINE) return c - ZERO;
  const l = c | 0x20; // lower case
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** `items[2].features["a b"]`: identifier keys dotted, other keys quoted (lone surrogates escaped). */
function formatPath(path: readonly (string | unknown[])[], n: number): string {
  let out = "";
  for (let d = 0; d < n; d++) {
    const k = path[d];
    if (typeof k !== "string") out += `[${k!.length}]`;
    else if (k.length <= SHOWN_KEY_LENGTH && IDENTIFIER.test(k)) out += d === 0 ? k : `.${k}`;
    else out += `[${quote(k)}]`;
  }
  return out;
}

/** Keys longer than this are cut in messages (a key may be most of a 64 KB body). */
const SHOWN_KEY_LENGTH = 40;

/** `key` as a JSON string literal, cut to SHOWN_KEY_LENGTH: escaped, so never a lone surrogate. */
function quote(key: string): string {
  return JSON.stringify(key.length > SHOWN_KEY_LENGTH ? `${key.slice(0, SHOWN_KEY_LENGTH)}…` : key);
}
