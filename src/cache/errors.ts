/** Stable codes callers can switch on. */
export type CacheErrorCode = "VALUE_TOO_LARGE" | "KEY_TOO_LARGE" | "INVALID_OPTION";

/** The one error type the cache throws for caller mistakes; `code` is stable, `message` is for humans. */
export class CacheError extends Error {
  override readonly name = "CacheError";
  readonly code: CacheErrorCode;

  constructor(code: CacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
