import { expect, test } from "bun:test";
import { isValidUtf8 } from "../../src/service/utf8.ts";

const check = (bytes: number[]) => isValidUtf8(new Uint8Array(bytes), 0, bytes.length);

test.each([
  ["ASCII", [0x61, 0x62], true],
  ["2-, 3- and 4-byte sequences", [...new TextEncoder().encode("é€🚀")], true],
  ["a lone continuation byte", [0x80], false],
  ["a truncated 3-byte sequence", [0xe2, 0x82], false],
  ["an overlong encoding of '/'", [0xc0, 0xaf], false],
  ["an overlong 3-byte encoding", [0xe0, 0x80, 0xaf], false],
  ["a UTF-16 surrogate", [0xed, 0xa0, 0x80], false],
  ["a code point past U+10FFFF", [0xf4, 0x90, 0x80, 0x80], false],
  ["0xFF", [0xff], false],
])("%s is valid: %p", (_, bytes, valid) => {
  expect(check(bytes as number[])).toBe(valid as boolean);
});

test("agrees with a strict TextDecoder on every 2-byte sequence", () => {
  const dec = new TextDecoder("utf-8", { fatal: true });
  for (let a = 0; a < 256; a++)
    for (let b = 0; b < 256; b++) {
      const bytes = new Uint8Array([a, b]);
      let ok = true;
      try {
        dec.decode(bytes);
      } catch {
        ok = false;
      }
      expect(isValidUtf8(bytes, 0, 2)).toBe(ok);
    }
});
