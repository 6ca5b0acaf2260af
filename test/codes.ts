/** The status code a call ends with, for tests that assert codes rather than messages. */
import { Code, FeatureStoreError } from "../src/codec/status.ts";

/** The code `f` throws (FeatureStoreError.from of it), or OK. */
export function codeOfSync(f: () => unknown): number {
  try {
    f();
    return Code.OK;
  } catch (err) {
    return FeatureStoreError.from(err).code;
  }
}

/** The code a call (a promise, or a function returning one or throwing) settles with, or OK. */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<number> {
  try {
    await (typeof p === "function" ? p() : p);
    return Code.OK;
  } catch (err) {
    return FeatureStoreError.from(err).code;
  }
}
