import { describe, expect, test } from "bun:test";
import type { LogLevel } from "../../src/config/index.ts";
import { createLogger, LimitedLog, RateLimiter } from "../../src/log/index.ts";

/** A logger whose lines are kept, parsed, for assertions. */
function capture(level: LogLevel = "debug") {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, (line) => lines.push(JSON.parse(line)));
  return { logger, lines };
}

describe("RateLimiter", () => {
  test("admits `limit` events per window and refuses the rest", () => {
    const r = new RateLimiter(3, 1000);
    const admitted = [0, 1, 2, 3, 4, 999].map((t) => r.admit(t));
    expect(admitted).toEqual([true, true, true, false, false, false]);
  });

  test("a new window opens at the first event after the previous one ended", () => {
    const r = new RateLimiter(1, 1000);
    expect(r.admit(0)).toBe(true);
    expect(r.admit(500)).toBe(false);
    expect(r.admit(1000)).toBe(true);
    expect(r.admit(1999)).toBe(false);
    expect(r.admit(5000)).toBe(true);
  });

  test("refused events are reported once, and only after their window has ended", () => {
    const r = new RateLimiter(1, 1000);
    r.admit(0);
    r.admit(1);
    r.admit(2);
    expect(r.takeRefused(999)).toBe(0);
    expect(r.takeRefused(1000)).toBe(2);
    expect(r.takeRefused(1001)).toBe(0);
  });

  test("bad options throw an error that names them", () => {
    expect(() => new RateLimiter(0, 1000)).toThrow(/limit/);
    expect(() => new RateLimiter(1, 0)).toThrow(/windowMs/);
  });
});

describe("LimitedLog", () => {
  test("writes at most `limit` lines per window, then one line with the count of the rest", () => {
    const { logger, lines } = capture();
    let now = 0;
    const log = new LimitedLog(logger, "warn", "closing connection", {
      limit: 2,
      windowMs: 1000,
      now: () => now,
    });
    for (let i = 0; i < 1000; i++) log.log({ i });
    expect(lines.map((l) => l.msg)).toEqual(["closing connection", "closing connection"]);
    now = 1000;
    log.log({ i: 1000 });
    expect(lines.slice(2)).toMatchObject([
      { level: "warn", msg: "suppressed similar log lines", kind: "closing connection", suppressed: 998 },
      { level: "warn", msg: "closing connection", i: 1000 },
    ]);
  });

  test("flush reports what was suppressed once the window has ended, without a new line", () => {
    const { logger, lines } = capture();
    let now = 0;
    const log = new LimitedLog(logger, "error", "request failed", {
      limit: 1,
      windowMs: 1000,
      now: () => now,
    });
    log.log();
    log.log();
    log.log();
    log.flush();
    expect(lines).toHaveLength(1);
    now = 2000;
    log.flush();
    log.flush();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: "error", kind: "request failed", suppressed: 2, windowMs: 1000 });
  });

  test("a level the logger does not write costs no lines at all", () => {
    const { logger, lines } = capture("error");
    const log = new LimitedLog(logger, "warn", "socket error", { limit: 1, windowMs: 1, now: () => 0 });
    for (let i = 0; i < 10; i++) log.log();
    log.flush();
    expect(lines).toHaveLength(0);
  });

  test("kinds are limited separately", () => {
    const { logger, lines } = capture();
    const a = new LimitedLog(logger, "warn", "a", { limit: 1, now: () => 0 });
    const b = new LimitedLog(logger, "warn", "b", { limit: 1, now: () => 0 });
    a.log();
    a.log();
    b.log();
    expect(lines.map((l) => l.msg)).toEqual(["a", "b"]);
  });
});
