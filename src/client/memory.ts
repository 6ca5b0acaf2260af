/**
 * In-process transport: hands each request to a FeatureService and answers through a resolved
 * promise, so that callers see the same asynchrony as over a network. For fast tests and for
 * embedding the client API in front of a local store.
 */

import { FeatureStoreError } from "../codec/status.ts";
import { ProtoWriter } from "../codec/wire.ts";
import type { FeatureService } from "../service/service.ts";
import { type ClientTransport, canceled, rejected } from "./transport.ts";

/** What the transport needs of a service (FeatureService has it). */
export type RequestHandler = Pick<FeatureService, "handle">;

export class InMemoryTransport implements ClientTransport {
  private readonly out = new ProtoWriter(4096);
  private closed = false;

  constructor(private readonly service: RequestHandler) {}

  /**
   * Runs the request now and resolves with a copy of the answer. The deadline is not enforced:
   * the service answers before this returns.
   */
  call(method: number, body: Uint8Array, _deadlineMs: number): Promise<Uint8Array> {
    if (this.closed) return rejected(canceled());
    const out = this.out;
    out.reset();
    try {
      this.service.handle(method, body, 0, body.length, out);
    } catch (err) {
      return rejected(FeatureStoreError.from(err));
    }
    return Promise.resolve(out.finish());
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
