/** Structured logs: one JSON object per line on stdout (stderr for warn and error). */
import type { LogLevel } from "../config/index.ts";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** True when debug lines are written; check it before building costly fields. */
  readonly debugEnabled: boolean;
}

/**
 * A logger writing `{"time":"…","level":"info","msg":"…",...fields}` lines. Levels below
 * `level` are no-ops decided at construction. `sink` replaces stdout/stderr (tests).
 */
export function createLogger(level: LogLevel, sink?: (line: string, level: LogLevel) => void): Logger {
  const min = RANK[level];
  const out =
    sink ??
    ((line: string, lvl: LogLevel) => {
      (RANK[lvl] >= RANK.warn ? process.stderr : process.stdout).write(`${line}\n`);
    });
  const make =
    (lvl: LogLevel) =>
    (msg: string, fields?: LogFields): void => {
      out(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...errorsToJson(fields) }), lvl);
    };
  const noop = (): void => {};
  return {
    debug: min <= RANK.debug ? make("debug") : noop,
    info: min <= RANK.info ? make("info") : noop,
    warn: min <= RANK.warn ? make("warn") : noop,
    error: make("error"),
    debugEnabled: min <= RANK.debug,
  };
}

function errorsToJson(fields?: LogFields): LogFields | undefined {
  if (!fields) return fields;
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    if (v instanceof Error) fields[k] = { name: v.name, message: v.message, stack: v.stack };
  }
  return fields;
}

/** A logger that writes nothing (tests, embedded use). */
export const silentLogger: Logger = createLogger("error", () => {});
