/**
 * Freeing the entities under a key prefix in Redis (a dropped feature-set version), a bounded
 * step at a time: `SCAN <cursor> MATCH <prefix>* COUNT <max>` on each master in turn (every
 * master of a Cluster holds some of the keys; the standalone server all of them), then `UNLINK`
 * of the keys found, one command per hash slot. The cursor of each master is kept here; the
 * drop is done once every master's cursor came back 0 and every key found was unlinked.
 *
 * SCAN guarantees every key present for the whole scan is returned at least once; a key may be
 * returned twice (UNLINK of a gone key counts 0). Keys written under the prefix after the drop
 * started may survive it (the service refuses such writes). A master that appears while the
 * drop runs (a failover) is scanned from its start.
 */
import type { PrefixDrop } from "../types.ts";
import type { RedisLink } from "./link.ts";

/** What the drop needs of its store. */
export interface DropContext {
  readonly link: RedisLink;
  /** `p` within the command timeout, its errors as FeatureStoreErrors. */
  timed<T>(p: Promise<T>, what: string): Promise<T>;
  /** A key was unlinked: drop it from the near-cache. */
  removed(key: Buffer): void;
}

export class RedisPrefixDrop implements PrefixDrop {
  /** The next cursor of each master seen so far; "0" once its scan is complete. */
  private readonly cursors = new Map<string, string>();
  /** Masters whose scan came back to cursor 0. */
  private readonly finished = new Set<string>();
  /** Keys found and not unlinked yet (a SCAN may answer more than a step removes). */
  private found: Buffer[] = [];
  private scanned = false;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ctx: DropContext,
    /** The SCAN MATCH pattern (layout.ts `prefixPattern`). */
    private readonly pattern: Buffer,
  ) {}

  get done(): boolean {
    return this.scanned && this.found.length === 0;
  }

  /** Scans one master a bounded amount (COUNT `max`) if fewer than `max` keys are found, then unlinks up to `max`. */
  step(max: number): Promise<number> {
    const run = this.chain.then(() => this.run(Math.floor(max)));
    this.chain = run.catch(() => {});
    return run;
  }

  private async run(max: number): Promise<number> {
    if (this.done || !(max > 0)) return 0;
    if (this.found.length < max && !this.scanned) await this.scanOnce(max);
    if (this.found.length === 0) return 0;
    const take = this.found.slice(0, max);
    const removed = await this.unlink(take);
    this.found = this.found.slice(take.length);
    return removed;
  }

  /** One SCAN of the first master whose scan is not complete; marks the drop scanned when none is left. */
  private async scanOnce(count: number): Promise<void> {
    const masters = await this.ctx.timed(this.ctx.link.masterNodes(), "the list of masters");
    const next = masters.find((m) => !this.finished.has(m.id));
    if (next !== undefined) {
      const cursor = this.cursors.get(next.id) ?? "0";
      const reply = (await this.ctx.timed(
        next.send(["SCAN", cursor, "MATCH", this.pattern, "COUNT", String(count)]),
        "a SCAN",
      )) as [Buffer, Buffer[]];
      const after = reply[0].toString("latin1");
      this.cursors.set(next.id, after);
      if (after === "0") this.finished.add(next.id);
      for (const key of reply[1]) this.found.push(key);
    }
    this.scanned = masters.every((m) => this.finished.has(m.id));
  }

  /** UNLINKs `keys`, one command per hash slot (all at once standalone); answers how many existed. */
  private async unlink(keys: Buffer[]): Promise<number> {
    const link = this.ctx.link;
    const bySlot = new Map<number, (string | Buffer)[]>();
    for (const key of keys) {
      const slot = link.slotOf(key);
      const args = bySlot.get(slot);
      if (args === undefined) bySlot.set(slot, ["UNLINK", key]);
      else args.push(key);
    }
    const replies = await this.ctx.timed(
      Promise.all([...bySlot.values()].map((args) => link.send(args[1] as Buffer, false, args))),
      "an UNLINK",
    );
    for (const key of keys) this.ctx.removed(key);
    return replies.reduce((sum: number, n) => sum + Number(n), 0);
  }
}
