/**
 * Strict JSON on the HTTP JSON path: duplicate keys and lone surrogates are INVALID_ARGUMENT
 * (over Connect POST, Connect GET and gRPC-web +json), and the parser of
 * src/transport/http/json-parse.ts gives JSON.parse's values on valid input and a positioned
 * INVALID_ARGUMENT on anything else.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { MAX_JSON_DEPTH, parseJsonStrict } from "../../src/transport/http/json-parse.ts";
import { postJson, startTestHttpServer, T0_JSON, type TestHttpServer } from "./fixture.ts";

let s: TestHttpServer;
beforeAll(() => {
  s = startTestHttpServer();
});
afterAll(() => s.server.stop());

const entries = () => s.store.cache.stats().entries;

/** GetFeatures over Connect JSON; the parsed answer. */
async function get(entityId: string) {
  const res = await postJson(s.rpc("GetFeatures"), { entityId });
  expect(res.status).toBe(200);
  return res.json as { entityId?: string; found?: boolean; features?: Record<string, unknown> };
}

/** Expects a Connect 400 invalid_argument whose message contains every fragment. */
function expectInvalid(res: { status: number; json: Record<string, unknown> }, ...fragments: string[]) {
  expect(res.status).toBe(400);
  expect(res.json.code).toBe("invalid_argument");
  for (const f of fragments) expect(res.json.message as string).toContain(f);
}

describe("lone surrogates over HTTP JSON", () => {
  test('a SetFeatures with the entity id "sur\\ud800" (escaped in the JSON text) is 400 invalid_argument and writes nothing', async () => {
    const before = entries();
    const res = await postJson(
      s.rpc("SetFeatures"),
      '{"entityId":"sur\\ud800","features":{"a":{"intValue":"1"}}}',
    );
    expectInvalid(res, '"entityId"', "lone surrogate", "\\ud800");
    expect(entries()).toBe(before);
    expect((await get("sur\ufffd")).found).toBeFalsy();
  });

  test("two entity ids that differ only in a lone surrogate no longer write to one entity", async () => {
    const first = await postJson(
      s.rpc("SetFeatures"),
      '{"entityId":"twin\\ud800","features":{"a":{"intValue":"1"}}}',
    );
    const second = await postJson(
      s.rpc("SetFeatures"),
      '{"entityId":"twin\\udbff","features":{"b":{"intValue":"2"}}}',
    );
    expectInvalid(first, "\\ud800");
    expectInvalid(second, "\\udbff");
    // Before the fix both became "twin\ufffd" and the second write merged into the first.
    expect((await get("twin\ufffd")).found).toBeFalsy();
  });

  const places: [string, string, string, string][] = [
    [
      "a feature name (map key)",
      "SetFeatures",
      '{"entityId":"e","features":{"f\\udc00":{"boolValue":true}}}',
      'features["f\\udc00"]',
    ],
    [
      "a string value",
      "SetFeatures",
      '{"entityId":"e","features":{"f":{"stringValue":"\\ud83d"}}}',
      'features["f"].stringValue',
    ],
    [
      "a string_list item",
      "SetFeatures",
      '{"entityId":"e","features":{"f":{"stringList":{"values":["ok","\\ude00x"]}}}}',
      'features["f"].stringList.values[1]',
    ],
    [
      "a requested feature name",
      "GetFeatures",
      '{"entityId":"e","featureNames":["\\udfff"]}',
      "featureNames[0]",
    ],
    ["a BatchGet entity id", "BatchGet", '{"entityIds":["a","b\\ud800"]}', "entityIds[1]"],
    [
      "an entity id inside BatchSet",
      "BatchSet",
      '{"items":[{"entityId":"\\udbffz","features":{"a":{"intValue":"1"}}}]}',
      "items[0].entityId",
    ],
  ];
  for (const [what, method, body, path] of places)
    test(`a lone surrogate in ${what} is 400 invalid_argument naming ${path}`, async () => {
      const before = entries();
      expectInvalid(await postJson(s.rpc(method), body), path, "lone surrogate");
      expect(entries()).toBe(before);
    });

  test("a well-formed surrogate pair, escaped or not, is accepted and read back", async () => {
    expect(
      (
        await postJson(
          s.rpc("SetFeatures"),
          '{"entityId":"emoji\\ud83d\\ude00","features":{"😀":{"intValue":"7"}}}',
        )
      ).status,
    ).toBe(200);
    expect(await get("emoji😀")).toEqual({
      entityId: "emoji😀",
      features: { "😀": { intValue: "7", eventTimeMs: T0_JSON } },
      found: true,
    });
  });
});

describe("duplicate JSON keys over HTTP JSON", () => {
  const cases: [string, string, string, string[]][] = [
    [
      "a field given twice at the top level",
      "SetFeatures",
      '{"entityId":"dup:a","entityId":"dup:b","features":{"a":{"intValue":"1"}}}',
      ['duplicate JSON key "entityId"', "top-level object"],
    ],
    [
      "a field given twice in a nested message",
      "SetFeatures",
      '{"entityId":"dup:c","features":{"a":{"intValue":"1","intValue":"2"}}}',
      ['duplicate JSON key "intValue"', "features.a"],
    ],
    [
      "a feature name given twice in the features map",
      "SetFeatures",
      '{"entityId":"dup:d","features":{"a":{"intValue":"1"},"a":{"intValue":"2"}}}',
      ['duplicate JSON key "a"', "the object at features"],
    ],
    [
      "a field given twice inside a list of messages",
      "BatchSet",
      '{"items":[{"entityId":"dup:e"},{"entityId":"dup:f","replace":true,"replace":false}]}',
      ['duplicate JSON key "replace"', "items[1]"],
    ],
    [
      'feature names equal only after unescaping ("a" and "\\u0061")',
      "SetFeatures",
      '{"entityId":"dup:g","features":{"a":{"intValue":"1"},"\\u0061":{"intValue":"2"}}}',
      ['duplicate JSON key "a"'],
    ],
    [
      'field names equal only after unescaping ("entityId" and "entity\\u0049d")',
      "SetFeatures",
      '{"entityId":"dup:h","entity\\u0049d":"dup:i"}',
      ['duplicate JSON key "entityId"'],
    ],
  ];
  for (const [what, method, body, fragments] of cases)
    test(`${what} is 400 invalid_argument naming the key and where it is, and nothing is written`, async () => {
      const before = entries();
      expectInvalid(await postJson(s.rpc(method), body), ...fragments);
      expect(entries()).toBe(before);
    });

  test("the duplicate key's line and column are in the message", async () => {
    const res = await postJson(s.rpc("SetFeatures"), '{\n  "entityId": "dup:j",\n  "entityId": "dup:k"\n}');
    expectInvalid(res, "line 3, column 3");
  });

  test("a Connect GET with encoding=json rejects a duplicate key and a lone surrogate too", async () => {
    for (const [message, fragment] of [
      ['{"entityId":"a","entityId":"b"}', 'duplicate JSON key "entityId"'],
      ['{"entityId":"sur\\ud800"}', "lone surrogate"],
    ]) {
      const res = await fetch(
        `${s.rpc("GetFeatures")}?encoding=json&message=${encodeURIComponent(message!)}`,
      );
      expect(res.status).toBe(400);
      const body = (await res.json()) as { code: string; message: string };
      expect(body.code).toBe("invalid_argument");
      expect(body.message).toContain(fragment!);
    }
  });

  test("gRPC-web +json rejects a duplicate key with grpc-status 3", async () => {
    const json = new TextEncoder().encode('{"entityId":"a","entityId":"b"}');
    const body = new Uint8Array(5 + json.length);
    new DataView(body.buffer).setUint32(1, json.length);
    body.set(json, 5);
    const res = await fetch(s.rpc("GetFeatures"), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+json", "x-grpc-web": "1" },
      body,
    });
    const raw = new TextDecoder().decode(await res.bytes());
    const status = res.headers.get("grpc-status") ?? /grpc-status: *(\d+)/.exec(raw)?.[1];
    expect(status).toBe("3");
  });

  test(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is 400 invalid_argument and the server keeps serving`, async () => {
    const deep = `{"entityId":"deep","features":${"[".repeat(1000)}${"]".repeat(1000)}}`;
    expectInvalid(await postJson(s.rpc("SetFeatures"), deep), `deeper than ${MAX_JSON_DEPTH} levels`);
    expect((await postJson(s.rpc("GetFeatures"), { entityId: "x" })).status).toBe(200);
  });

  test("a body with distinct keys, including one named __proto__, is still accepted", async () => {
    const res = await postJson(
      s.rpc("SetFeatures"),
      '{"entityId":"ok:1","features":{"a":{"intValue":"1"},"__proto__":{"intValue":"2"}}}',
    );
    expect(res.status).toBe(200);
    expect((await get("ok:1")).features).toEqual({
      a: { intValue: "1", eventTimeMs: T0_JSON },
      ["__proto__"]: { intValue: "2", eventTimeMs: T0_JSON },
    });
  });
});

// ---- the parser alone -------------------------------------------------------------------------

function errorOf(text: string): FeatureStoreError {
  try {
    parseJsonStrict(text);
  } catch (err) {
    if (err instanceof FeatureStoreError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text.slice(0, 60))} to be rejected`);
}

const whitespace = fc.constantFrom("", "", "", " ", "\n", "\t", "\r\n", "  ");
/** One UTF-16 unit as it may appear in a JSON string: raw, \u escaped in either case, or a short escape. */
const stringChar = (c: string) =>
  fc.constantFrom(
    c,
    `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`,
    (
      {
        '"': '\\"',
        "\\": "\\\\",
        "/": "\\/",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
      } as Record<string, string>
    )[c] ?? c,
  );
/** Escapes UTF-16 units one by one: a pair may become two \u escapes, or one raw and one escaped. */
const stringText = (s: string) =>
  fc
    .tuple(
      ...s
        .split("")
        .map((c) =>
          c === '"' || c === "\\" || c < " " ? stringChar(c).filter((e) => e !== c) : stringChar(c),
        ),
    )
    .map((parts) => `"${parts.join("")}"`);
const numberText = fc
  .tuple(
    fc.boolean(),
    fc.oneof(fc.constant("0"), fc.stringMatching(/^[1-9][0-9]{0,20}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,20}$/)),
    fc.option(fc.tuple(fc.constantFrom("e", "E", "e+", "e-", "E-", "E+"), fc.stringMatching(/^[0-9]{1,3}$/))),
  )
  .map(
    ([neg, int, frac, exp]) =>
      `${neg ? "-" : ""}${int}${frac === null ? "" : `.${frac}`}${exp === null ? "" : exp.join("")}`,
  );
/**
 * Valid JSON texts spelt every way RFC 8259 allows: whitespace between any tokens, any unit of
 * a string escaped or not, numbers with fractions and exponents, keys unique after unescaping.
 */
const { text: jsonText } = fc.letrec<{ text: string; value: string; array: string; object: string }>(
  (tie) => ({
    text: fc.tuple(whitespace, tie("value"), whitespace).map((p) => p.join("")),
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.constantFrom("true", "false", "null"),
      numberText,
      fc.string({ unit: "grapheme", maxLength: 8 }).chain(stringText),
      fc.string({ unit: "binary", maxLength: 4 }).chain(stringText),
      tie("array"),
      tie("object"),
    ),
    array: fc
      .array(fc.tuple(whitespace, tie("value"), whitespace), { maxLength: 5 })
      .map((items) => `[${items.map((p) => p.join("")).join(",")}]`),
    object: fc
      .uniqueArray(fc.tuple(fc.string({ unit: "binary", maxLength: 6 }), tie("value")), {
        selector: (e) => e[0],
        maxLength: 5,
      })
      .chain((members) =>
        fc
          .tuple(
            ...members.map(([k, v]) =>
              fc.tuple(whitespace, stringText(k), whitespace, whitespace, fc.constant(v), whitespace),
            ),
          )
          .map((ms) => `{${ms.map(([w1, k, w2, w3, v, w4]) => `${w1}${k}${w2}:${w3}${v}${w4}`).join(",")}}`),
      ),
  }),
);

describe("parseJsonStrict gives JSON.parse's values", () => {
  test("on every text fc.json() generates", () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        expect(parseJsonStrict(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
  });

  test("on JSON texts of any Unicode, lone surrogates included", () => {
    fc.assert(
      fc.property(fc.json({ stringUnit: "binary" }), (text) => {
        expect(parseJsonStrict(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 1000 },
    );
  });

  test("on texts with random whitespace, every kind of escape and every number form", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        expect(parseJsonStrict(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
  });

  test("on numbers, to the last bit (negative zero, 17 digits, huge and tiny exponents)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          numberText,
          fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
        ),
        (text) => {
          expect(Object.is(parseJsonStrict(text), JSON.parse(text))).toBe(true);
        },
      ),
      { numRuns: 5000 },
    );
    for (const text of [
      "-0",
      "-0.0",
      "-0e5",
      "0.1",
      "9007199254740993",
      "1e400",
      "-1e-400",
      "4.9e-324",
      "1.7976931348623157e308",
      "123456789012345678901234567890",
    ])
      expect(Object.is(parseJsonStrict(text), JSON.parse(text))).toBe(true);
  });

  test("makes a __proto__ key an own property, as JSON.parse does, without touching the prototype", () => {
    const v = parseJsonStrict('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(v).toStrictEqual(JSON.parse('{"__proto__":{"polluted":true}}'));
  });

  test("keeps keys apart that share a slot of its key cache", () => {
    // Same length, first, middle and last chars: the same slot.
    expect(parseJsonStrict('{"aXbYc":1,"aZbWc":2}')).toEqual({ aXbYc: 1, aZbWc: 2 });
    expect(parseJsonStrict('{"aZbWc":3}')).toEqual({ aZbWc: 3 });
    expect(parseJsonStrict('{"aXbYc":4}')).toEqual({ aXbYc: 4 });
  });

  test(`accepts exactly ${MAX_JSON_DEPTH} levels of nesting`, () => {
    const text = `${"[".repeat(MAX_JSON_DEPTH)}${"]".repeat(MAX_JSON_DEPTH)}`;
    expect(parseJsonStrict(text)).toStrictEqual(JSON.parse(text));
  });
});

describe("parseJsonStrict rejects", () => {
  const malformed: [string, string, string][] = [
    ["an empty body", "", "unexpected end of input"],
    ["only whitespace", " \n ", "unexpected end of input"],
    ["a trailing comma in an object", '{"a":1,}', 'expected a string key, got "}" at line 1, column 8'],
    ["a trailing comma in an array", "[1,2,]", "expected a value at line 1, column 6"],
    ["a leading zero", "[01]", "leading zero at line 1, column 2"],
    ["a leading zero after a minus", "-01", "leading zero"],
    ["a bare minus", "-", "expected a digit after '-'"],
    ["a leading plus", "+1", 'unexpected "+"'],
    ["a leading dot", ".5", 'unexpected "."'],
    ["a trailing dot", "1.", "expected a digit after '.'"],
    ["an empty exponent", "1e+", "expected a digit in the exponent"],
    ["NaN and Infinity", "[NaN]", 'unexpected "N"'],
    ["a hex number", "0x10", "unexpected text after the JSON value"],
    ["a bad escape", '"a\\x"', 'bad escape "\\\\x"'],
    ["a short \\u escape", '"\\u12"', "bad \\u escape"],
    ["a \\u escape with a non-hex digit", '"\\u12G4"', "bad \\u escape"],
    ["a backslash at the end", '"abc\\', "unterminated string"],
    ["an unterminated string", '{"a":"abc', "unterminated string at line 1, column 6"],
    ["an unterminated string after an escape", '"a\\nb', "unterminated string"],
    ["a raw control character in a string", '"a\tb"', "control character U+0009"],
    ["a raw line feed in a key", '{"a\nb":1}', "control character U+000A"],
    ["a raw NUL in a string", '"\u0000"', "control character U+0000"],
    ["trailing garbage", '{"a":1} x', "unexpected text after the JSON value at line 1, column 9"],
    ["two values", "1 2", "unexpected text after the JSON value"],
    ["single quotes", "{'a':1}", "expected a string key"],
    ["an unquoted key", "{a:1}", "expected a string key"],
    ["a missing colon", '{"a" 1}', "expected ':' after a key"],
    ["a missing comma", "[1 2]", "expected ',' or ']'"],
    ["an unclosed object", '{"a":1', "expected ',' or '}'"],
    ["an unclosed array", "[1", "expected ',' or ']'"],
    ["a misspelt literal", "[tru]", 'unexpected "t"'],
    ["a literal in capitals", "True", 'unexpected "T"'],
    ["a byte order mark", "\ufeff{}", "unexpected"],
    ["a non-JSON space (U+00A0)", "[1,\u00a02]", "unexpected"],
    ["a comment", "[1 /* no */]", "expected ',' or ']'"],
  ];
  for (const [what, text, message] of malformed)
    test(`${what}, as JSON.parse does, with INVALID_ARGUMENT saying where`, () => {
      expect(() => JSON.parse(text)).toThrow();
      const err = errorOf(text);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toStartWith("request body is not valid JSON: ");
      expect(err.message).toContain(message);
      expect(err.message).toMatch(/line \d+, column \d+/);
    });

  test("a syntax error deep inside says which object or array it is in, on which line", () => {
    const err = errorOf('{\n "items": [\n  {"features": {"a": {"intValue": 01}}}\n ]\n}');
    expect(err.message).toContain("leading zero at line 3, column 35 (in items[0].features.a)");
  });

  test("a duplicate key at the top level, which JSON.parse accepts", () => {
    expect(JSON.parse('{"a":1,"a":2}')).toEqual({ a: 2 });
    const err = errorOf('{"a":1,"a":2}');
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message).toBe(
      'duplicate JSON key "a" in the top-level object: a key may be given once per object (line 1, column 8)',
    );
  });

  test("a duplicate key however deep, naming the object that has it", () => {
    expect(errorOf('[{"x":{"k":1,"k":2}}]').message).toContain(
      'duplicate JSON key "k" in the object at [0].x',
    );
    expect(errorOf('{"a b":{"k":[],"k":[]}}').message).toContain('in the object at ["a b"]');
    expect(errorOf('{"__proto__":1,"__proto__":2}').message).toContain('duplicate JSON key "__proto__"');
  });

  test("keys equal only after unescaping, in any spelling", () => {
    for (const text of [
      '{"a":1,"\\u0061":2}',
      '{"\\u0061":1,"a":2}',
      '{"\\u0041":1,"\\u0041":2}',
      '{"\\/":1,"/":2}',
      '{"\\ud83d\\ude00":1,"😀":2}',
    ])
      expect(errorOf(text).message).toContain("duplicate JSON key");
  });

  test("a duplicate key slipped into any valid object", () => {
    const withMember = jsonText.filter((t) => firstKey(t) >= 0);
    fc.assert(
      fc.property(withMember, (text) => {
        // Repeat the first key of the first non-empty object, spelt as it is.
        const at = firstKey(text);
        const dup = `${text.slice(0, at)}${text.slice(at, endOfString(text, at))}:null,${text.slice(at)}`;
        expect(() => JSON.parse(dup)).not.toThrow();
        expect(errorOf(dup).message).toContain("duplicate JSON key");
      }),
      { numRuns: 500 },
    );
  });

  test("100,000 levels of nesting with a clear INVALID_ARGUMENT, not a stack overflow", () => {
    for (const text of [
      "[".repeat(100_000) + "]".repeat(100_000),
      `${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`,
      "[".repeat(100_000),
    ]) {
      const err = errorOf(text);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toContain(`nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`);
    }
    expect(errorOf(`${"[".repeat(MAX_JSON_DEPTH + 1)}${"]".repeat(MAX_JSON_DEPTH + 1)}`).message).toContain(
      `line 1, column ${MAX_JSON_DEPTH + 1}`,
    );
  });

  test("whatever a random edit does to valid JSON: JSON.parse's value, or INVALID_ARGUMENT, never another error", () => {
    const edit = fc.tuple(
      jsonText,
      fc.nat(),
      fc.constantFrom("delete", "insert", "replace"),
      fc.constantFrom(...'{}[],:"\\/0123456789-+.eEtfnu xa\t\n\u0000\u001f\ud800'.split("")),
    );
    fc.assert(
      fc.property(edit, ([text, n, op, c]) => {
        const i = text.length === 0 ? 0 : n % text.length;
        const edited =
          op === "delete"
            ? text.slice(0, i) + text.slice(i + 1)
            : op === "insert"
              ? text.slice(0, i) + c + text.slice(i)
              : text.slice(0, i) + c + text.slice(i + 1);
        let expected: unknown;
        let valid = true;
        try {
          expected = JSON.parse(edited);
        } catch {
          valid = false;
        }
        let actual: unknown;
        try {
          actual = parseJsonStrict(edited);
        } catch (err) {
          expect(err).toBeInstanceOf(FeatureStoreError);
          expect((err as FeatureStoreError).code).toBe(Code.InvalidArgument);
          // Valid JSON is refused only for a duplicate key (the edit can make one).
          if (valid) expect((err as Error).message).toStartWith("duplicate JSON key");
          return;
        }
        expect(valid).toBe(true);
        expect(actual).toStrictEqual(expected);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("parseJsonStrict is linear in its input", () => {
  // A quadratic parser needs ~10^10 steps on these; a linear one a few milliseconds.
  test("an object with 100,000 keys, a string with 200,000 escapes and an array of 200,000 numbers each parse in well under 2 seconds", () => {
    const keys = `{${Array.from({ length: 100_000 }, (_, i) => `"k${i}":${i}`).join(",")}}`;
    const escapes = `"${"\\n\\u0041".repeat(100_000)}"`;
    const numbers = `[${Array.from({ length: 200_000 }, (_, i) => i / 7).join(",")}]`;
    for (const text of [keys, escapes, numbers]) {
      const t0 = performance.now();
      const value = parseJsonStrict(text);
      const ms = performance.now() - t0;
      expect(value).toStrictEqual(JSON.parse(text));
      expect(ms).toBeLessThan(2000);
    }
  });
});

/** Index of the opening quote of the first key in `text` (valid JSON), or -1. */
function firstKey(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '"') i = endOfString(text, i) - 1;
    else if (text[i] === "{") {
      let j = i + 1;
      while (" \t\r\n".includes(text[j]!)) j++;
      if (text[j] === '"') return j;
    }
  }
  return -1;
}

/** Index just past the string literal whose opening quote is at `at`. */
function endOfString(text: string, at: number): number {
  let i = at + 1;
  while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
  return i + 1;
}
