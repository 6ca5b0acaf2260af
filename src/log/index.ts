/** Structured logs: one JSON object per line on stdout (stderr for warn and error). */
import type { LogLevel } from "../config/index.ts";
import { RateLimiter } from "./ratelimit.ts";

export { RateLimiter } from "./ratelimit.ts";

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

/**
 * Lines of one limited kind per window: enough to show what is happening, while the counts
 * live in metrics (featurestore_rejected_total). At most 6 lines per kind per 10 s, whatever
 * clients do.
 */
export const LIMITED_LOG_LINES = 5;
/** The window of LIMITED_LOG_LINES, ms. */
export const LIMITED_LOG_WINDOW_MS = 10_000;

export interface LimitedLogOptions {
  /** Lines written per window; default LIMITED_LOG_LINES. */
  limit?: number;
  /** Window length, ms; default LIMITED_LOG_WINDOW_MS. */
  windowMs?: number;
  /** Clock in ms (tests); default performance.now. Read only when a line is logged or flushed. */
  now?: () => number;
}

/**
 * One kind of log line (one `msg`) that clients, or a bug hit by every request, can trigger
 * at will: at most `limit` lines per `windowMs`. The rest are counted and reported as one line
 * `{"msg":"suppressed similar log lines","kind":<msg>,"suppressed":N,"windowMs":…}` at the same
 * level once their window has ended: before the next line of the kind, or on `flush()`.
 */
export class LimitedLog {
  private readonly limiter: RateLimiter;
  private readonly write: (msg: string, fields?: LogFields) => void;
  private readonly now: () => number;

  constructor(
    logger: Logger,
    level: LogLevel,
    readonly msg: string,
    options: LimitedLogOptions = {},
  ) {
    this.limiter = new RateLimiter(
      options.limit ?? LIMITED_LOG_LINES,
      options.windowMs ?? LIMITED_LOG_WINDOW_MS,
    );
    this.write = (msg, fields) => logger[level](msg, fields);
    this.now = options.now ?? (() => performance.now());
  }

  /** Logs `msg` with `fields` unless this kind has used up its window. */
  log(fields?: LogFields): void {
    const now = this.now();
    this.report(now);
    if (this.limiter.admit(now)) this.write(this.msg, fields);
  }

  /** Writes the count of lines suppressed in a window that has ended, if any (call it now and then). */
  flush(): void {
    this.report(this.now());
  }

  private report(now: number): void {
    const suppressed = this.limiter.takeRefused(now);
    if (suppressed > 0)
      this.write("suppressed similar log lines", {
        kind: this.msg,
        suppressed,
        windowMs: this.limiter.windowMs,
      });
  }
}
