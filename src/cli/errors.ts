/**
 * Exit codes of the `featurestore` command and the one error type that carries them. Every
 * failure that reaches `main` becomes a CliError: a FeatureStoreError from the client is mapped
 * by its gRPC code, anything else is a usage or internal error.
 */
import { CODE_NAMES, Code, FeatureStoreError } from "../client/index.ts";

/**
 * What the process exit status says. Scripts switch on these; they are documented in `--help`
 * and in the README.
 */
export const Exit = {
  /** Done. */
  Ok: 0,
  /** `get`/`del`/`batch-get`: an entity (or, for `del`, anything to delete) was not found. */
  NotFound: 1,
  /**
   * Bad flags or arguments, an unreadable input or schema file, or a request the server refused
   * as invalid (INVALID_ARGUMENT, OUT_OF_RANGE) or as impossible in the present state
   * (FAILED_PRECONDITION: a feature set with nothing published or no previous version, dropping
   * the current version, incrementing a counter of another type...). `code` tells them apart.
   */
  Usage: 2,
  /** The server could not be reached, timed out, or failed (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...). */
  Server: 3,
  /** The server refused the token (UNAUTHENTICATED) or its scopes (PERMISSION_DENIED). */
  Auth: 4,
  /** `load` finished, but some rows were rejected (no more than `--max-errors`): they are listed. */
  Rejected: 5,
  /** `load` stopped early: more than `--max-errors` rows were rejected. The checkpoint is kept. */
  TooManyRejected: 6,
  /** Interrupted (Ctrl-C / SIGTERM); `load` kept its checkpoint. */
  Interrupted: 130,
} as const;
export type Exit = (typeof Exit)[keyof typeof Exit];

/** The exit-status table as printed at the end of `featurestore --help`. */
export const EXIT_HELP = `Exit status:
  0    ok
  1    not found (get, del, batch-get: an entity missing / nothing deleted)
  2    usage: bad flags, unreadable file or schema, a request the server refused as invalid
       or impossible now (nothing published, no previous version, drop of the current one...)
  3    server unavailable, timed out or failed
  4    authentication or permission refused
  5    load: done, some rows rejected (listed with their line numbers)
  6    load: stopped, more than --max-errors rows rejected (checkpoint kept)
  130  interrupted (load: checkpoint kept)`;

/** An error that ends the command with `exit`; its message is printed (as JSON with --json). */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly exit: Exit,
    message: string,
    options?: { cause?: unknown; code?: string },
  ) {
    super(message, options);
    this.code = options?.code ?? (exit === Exit.Usage ? "usage" : "error");
  }
  /** A stable name of what failed: a gRPC code name (`unavailable`) or `usage`, `not_found`... */
  readonly code: string;

  /** Normalises anything thrown; FeatureStoreErrors are mapped by their gRPC code. */
  static from(err: unknown): CliError {
    if (err instanceof CliError) return err;
    if (err instanceof FeatureStoreError) {
      return new CliError(exitOf(err.code), err.message, { cause: err, code: CODE_NAMES[err.code] });
    }
    const message = err instanceof Error ? err.message : String(err);
    return new CliError(Exit.Server, message, { cause: err, code: "internal" });
  }
}

/** The exit status of a gRPC code. */
export function exitOf(code: Code): Exit {
  switch (code) {
    case Code.OK:
      return Exit.Ok;
    case Code.NotFound:
      return Exit.NotFound;
    case Code.InvalidArgument:
    case Code.OutOfRange:
    case Code.FailedPrecondition:
      return Exit.Usage;
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return Exit.Auth;
    default:
      return Exit.Server;
  }
}

export function usage(message: string): CliError {
  return new CliError(Exit.Usage, message);
}
