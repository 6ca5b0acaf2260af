/** gRPC status codes: the TCP protocol's `status` byte, Connect's error codes and gRPC-web's `grpc-status`. */
export const Code = {
  OK: 0,
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

/** Connect's snake_case names, indexed by code. */
export const CODE_NAMES = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
] as const;

/** The one error type of the project: a status code the caller can switch on, a message and a cause. */
export class FeatureStoreError extends Error {
  override readonly name = "FeatureStoreError";
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Normalises anything thrown into a FeatureStoreError (unknown errors become INTERNAL). */
  static from(err: unknown): FeatureStoreError {
    if (err instanceof FeatureStoreError) return err;
    if (err instanceof Error) return new FeatureStoreError(Code.Internal, err.message, { cause: err });
    return new FeatureStoreError(Code.Internal, String(err), { cause: err });
  }
}

/** Shorthand for the most common error. */
export function invalidArgument(message: string): FeatureStoreError {
  return new FeatureStoreError(Code.InvalidArgument, message);
}
