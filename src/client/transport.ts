/**
 * The client's transport seam: one raw call = an encoded request body in, an encoded response
 * body out. The typed client encodes and decodes; transports only move bytes.
 */
import { METHOD_NAMES } from "../codec/frame.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";

export interface ClientTransport {
  /**
   * Sends one request and resolves with the response body, or rejects with a FeatureStoreError
   * (the server's status code, DEADLINE_EXCEEDED, UNAVAILABLE, CANCELED...).
   *
   * `body` is only read during the call: a transport copies what it needs before returning,
   * so callers may reuse the buffer at once. The resolved bytes are a view that stays valid
   * while the continuation that receives it runs (the microtasks after the answer arrived);
   * copy them (`.slice()`) to keep them longer.
   *
   * @param deadlineMs time allowed for the answer, ms from now (> 0; Infinity for none).
   */
  call(method: number, body: Uint8Array, deadlineMs: number): Promise<Uint8Array>;
  /** Fails calls still pending with CANCELED and releases every resource; idempotent. */
  close(): Promise<void>;
}

export type Resolve = (body: Uint8Array) => void;
export type Reject = (err: unknown) => void;

// A promise's resolving functions, captured without allocating a closure per call: the executor
// is one module-level function and hands them over through these two variables.
let capturedResolve: Resolve | undefined;
let capturedReject: Reject | undefined;
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** Creates a pending promise; its resolve/reject are then in `takeResolve()` / `takeReject()`. */
export function newPending(): Promise<Uint8Array> {
  return new Promise<Uint8Array>(capture);
}
export function takeResolve(): Resolve {
  const r = capturedResolve!;
  capturedResolve = undefined;
  return r;
}
export function takeReject(): Reject {
  const r = capturedReject!;
  capturedReject = undefined;
  return r;
}

export function methodName(method: number): string {
  return METHOD_NAMES[method] ?? `method ${method}`;
}

export function canceled(what = "client is closed"): FeatureStoreError {
  return new FeatureStoreError(Code.Canceled, what);
}

export function rejected(err: FeatureStoreError): Promise<never> {
  return Promise.reject(err);
}
