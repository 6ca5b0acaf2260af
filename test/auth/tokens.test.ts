/** The tokens file: parsing, scopes, lookup, reload and revocation, and the start-up refusals. */
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  Auth,
  AuthFailure,
  createToken,
  parseTokensFile,
  Scope,
  scopeOf,
  TokensFileError,
  tokenHash,
} from "../../src/auth/tokens.ts";
import { Method } from "../../src/codec/frame.ts";
import { Code } from "../../src/codec/status.ts";
import { silentLogger } from "../../src/log/index.ts";
import { codeOfSync } from "../codes.ts";
import { runToExit, type ServerProcess, serverEnv, tempDir } from "../e2e/durable-fixture.ts";
import { removeDir } from "./certs.ts";

const dir = tempDir("tokens");
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
  removeDir(dir);
});

describe("the tokens file", () => {
  test("a line is name, scopes, sha256:hex; comments and blank lines are skipped; scopes imply the lower ones", () => {
    const text = `# comment\n\nranker read sha256:${tokenHash("a")}  # trailing comment\nops admin sha256:${tokenHash("b")}\n`;
    const entries = parseTokensFile(text, "f");
    expect(entries.size).toBe(2);
    const ops = entries.get(tokenHash("b"))!.principal;
    expect(ops.name).toBe("ops");
    expect(ops.scopes).toBe(Scope.Read | Scope.Write | Scope.Admin);
  });

  test.each([
    ["ranker read", "line 1: expected"],
    [`ranker read,root sha256:${"0".repeat(64)}`, 'unknown scope "root"'],
    ["ranker read md5:abc", "sha256:"],
    [`a read sha256:${"0".repeat(64)}\na write sha256:${"1".repeat(64)}`, "line 2: the name a is used twice"],
    [
      `a read sha256:${"0".repeat(64)}\nb write sha256:${"0".repeat(64)}`,
      "line 2: this token hash is listed twice",
    ],
  ])("a malformed file is refused naming the line: %p", (text, message) => {
    expect(() => parseTokensFile(text, "tokens")).toThrow(TokensFileError);
    expect(() => parseTokensFile(text, "tokens")).toThrow(message);
  });

  test("methods need their scope: reads read, writes write", () => {
    expect(scopeOf(Method.GetFeatures)).toBe(Scope.Read);
    expect(scopeOf(Method.BatchGet)).toBe(Scope.Read);
    expect(scopeOf(Method.SetFeatures)).toBe(Scope.Write);
    expect(scopeOf(Method.BatchSet)).toBe(Scope.Write);
    expect(scopeOf(Method.DeleteFeatures)).toBe(Scope.Write);
    expect(scopeOf(99)).toBe(Scope.Admin);
  });

  test("lookup, authorize, and revocation on reload (the principal held by a connection loses its scopes)", () => {
    const reader = createToken("reader", ["read"]);
    const writer = createToken("writer", ["write"]);
    const file = join(dir, "t1");
    writeFileSync(file, `${reader.line}\n${writer.line}\n`);
    const auth = new Auth({ tokensFile: file, logger: silentLogger });
    try {
      const r = auth.fromHeader(`Bearer ${reader.token}`, "test")!;
      expect(r.name).toBe("reader");
      expect(codeOfSync(() => auth.authorize(r, Method.GetFeatures, "test"))).toBe(Code.OK);
      expect(codeOfSync(() => auth.authorize(r, Method.SetFeatures, "test"))).toBe(Code.PermissionDenied);
      expect(codeOfSync(() => auth.fromHeader(null, "test"))).toBe(Code.Unauthenticated);
      expect(codeOfSync(() => auth.fromHeader("Basic abc", "test"))).toBe(Code.Unauthenticated);
      expect(codeOfSync(() => auth.fromHeader("Bearer nope", "test"))).toBe(Code.Unauthenticated);
      expect([...auth.failures]).toEqual([1, 1, 1, 1, 0]);
      const w = auth.fromToken(writer.token, "test");
      writeFileSync(file, `${reader.line}\n`);
      auth.reload();
      expect(w.scopes).toBe(0);
      expect(codeOfSync(() => auth.authorize(w, Method.GetFeatures, "test"))).toBe(Code.Unauthenticated);
      expect(codeOfSync(() => auth.fromToken(writer.token, "test"))).toBe(Code.Unauthenticated);
      expect(codeOfSync(() => auth.authorize(r, Method.GetFeatures, "test"))).toBe(Code.OK);
      // A broken file on reload is refused: the previous tokens stay in force.
      writeFileSync(file, "garbage\n");
      auth.reload();
      expect(auth.fromToken(reader.token, "test").name).toBe("reader");
      expect(auth.failures[AuthFailure.Unknown]).toBeGreaterThan(1);
    } finally {
      auth.close();
    }
  });

  test("a malformed tokens file stops the server with exit 2 naming the line; METRICS_AUTH needs tokens", async () => {
    const file = join(dir, "bad");
    writeFileSync(file, `ok read sha256:${tokenHash("x")}\nbroken line\n`);
    const bad = await runToExit(
      serverEnv(join(dir, "data"), { AUTH_TOKENS_FILE: file, GRPC_PORT: "0" }),
      (s) => servers.push(s),
    );
    expect(bad.code).toBe(2);
    expect(bad.output).toContain(`${file} line 2`);
    const missing = await runToExit(
      serverEnv(join(dir, "data"), { AUTH_TOKENS_FILE: join(dir, "nope") }),
      (s) => servers.push(s),
    );
    expect(missing.code).toBe(2);
    expect(missing.output).toContain("AUTH_TOKENS_FILE");
    const metrics = await runToExit(serverEnv(join(dir, "data"), { METRICS_AUTH: "true" }), (s) =>
      servers.push(s),
    );
    expect(metrics.code).toBe(2);
    expect(metrics.output).toContain("METRICS_AUTH");
  }, 30_000);
});
