/**
 * UpdateFeatures over Redis: compare-and-set rounds, one key at a time, the queued updates of a
 * key combined into one round.
 *
 * Each key has a queue of the updates this server was asked for, in call order; one round is in
 * flight per key. A round takes the updates at the head of the queue (those with the TTL of the
 * first, so that the TTL rules hold as if they ran one by one), runs their computes in order on
 * the values read (each compute sees what the ones before it answered), and sends the result as
 * one CAS script (layout.ts UPDATE_SCRIPT) that writes only if Redis still holds the values read.
 * If it does not, the script answers the values it found and the computes run again on them,
 * without another read. Fifty increments of one hot key thus cost two or three rounds, not fifty.
 *
 * A compute that throws fails its own update only: it leaves the round, the others go on.
 */
import { Code, FeatureStoreError } from "../../codec/status.ts";

/** What `RemoteStore.update` is given to compute the new values from the current ones. */
export type Compute = (current: (Uint8Array | null)[]) => (Uint8Array | null | undefined)[];

/**
 * Rounds of one update before it fails UNAVAILABLE: each lost round means another writer changed
 * one of the names between our read and our CAS; 32 in a row is a key fought over by many
 * servers at once, not bad luck.
 */
export const MAX_CAS_ROUNDS = 32;
/** Updates of one key combined into one round at most (bounds the script's arguments). */
export const MAX_UPDATES_PER_ROUND = 1024;

/** One caller's update, waiting in its key's queue or running in a round. */
export interface QueuedUpdate {
  readonly names: readonly Uint8Array[];
  readonly compute: Compute;
  readonly ttlMs: number;
  readonly defaultTtlMs: number;
  readonly resolve: () => void;
  readonly reject: (err: FeatureStoreError) => void;
}

/** The updates of one key waiting for their round. */
export class KeyQueue {
  private readonly waiting: QueuedUpdate[] = [];
  private head = 0;
  /** Updates to run alone, one per round (after a combined round hit the feature limit). */
  private solo = 0;

  constructor(
    /** The entity id (a copy: the caller's bytes are theirs). */
    readonly id: Uint8Array,
    /** Its Redis key. */
    readonly key: Buffer,
  ) {}

  push(u: QueuedUpdate): void {
    this.waiting.push(u);
  }

  get empty(): boolean {
    return this.head === this.waiting.length;
  }

  /** The next round's updates: the head of the queue sharing the first one's TTLs. */
  take(): QueuedUpdate[] {
    const w = this.waiting;
    const first = w[this.head]!;
    let end = this.head + 1;
    if (this.solo > 0) this.solo--;
    else
      while (
        end < w.length &&
        end - this.head < MAX_UPDATES_PER_ROUND &&
        w[end]!.ttlMs === first.ttlMs &&
        w[end]!.defaultTtlMs === first.defaultTtlMs
      )
        end++;
    const group = w.slice(this.head, end);
    this.head = end;
    if (this.head > 1024 && this.head * 2 > w.length) {
      w.splice(0, this.head);
      this.head = 0;
    }
    return group;
  }

  /** Puts `group` back at the head of the queue, to run one update per round. */
  retryAlone(group: QueuedUpdate[]): void {
    this.waiting.splice(this.head, 0, ...group);
    this.solo += group.length;
  }
}

/**
 * The updates of one round over the union of their names: `names` is what to read and compare,
 * `apply` runs the computes on the values found.
 */
export class CombinedUpdate {
  /** The union of the updates' names, first appearance first. */
  readonly names: Uint8Array[];
  /** Per update, the positions of its names in `names`. */
  private readonly positions: Int32Array[];
  /** False once an update has failed (its compute threw) and left the round. */
  private readonly alive: boolean[];
  /** The values of `names` after the last `apply`, and which of them a compute answered. */
  readonly next: (Uint8Array | null)[] = [];
  readonly changed: boolean[] = [];

  constructor(private readonly updates: QueuedUpdate[]) {
    this.alive = updates.map(() => true);
    if (updates.length === 1) {
      this.names = updates[0]!.names.slice();
      this.positions = [Int32Array.from(this.names, (_, i) => i)];
      return;
    }
    const names: Uint8Array[] = [];
    const index = new Map<string, number>();
    this.positions = updates.map((u) =>
      Int32Array.from(u.names, (name) => {
        const k = Buffer.from(name.buffer, name.byteOffset, name.length).toString("latin1");
        let at = index.get(k);
        if (at === undefined) {
          at = names.length;
          index.set(k, at);
          names.push(name);
        }
        return at;
      }),
    );
    this.names = names;
  }

  /**
   * Runs the live computes in call order on `current` (the values of `names`), each on the
   * answers of those before it; an update whose compute throws (or answers the wrong count) is
   * rejected and leaves the round. Fills `next` and `changed`; answers whether any update is left.
   */
  apply(current: readonly (Uint8Array | null)[]): boolean {
    const next = this.next;
    const changed = this.changed;
    next.length = 0;
    changed.length = 0;
    for (let i = 0; i < this.names.length; i++) {
      next.push(current[i] ?? null);
      changed.push(false);
    }
    let left = false;
    for (let k = 0; k < this.updates.length; k++) {
      if (!this.alive[k]) continue;
      const pos = this.positions[k]!;
      const input: (Uint8Array | null)[] = new Array(pos.length);
      for (let i = 0; i < pos.length; i++) input[i] = next[pos[i]!]!;
      let out: (Uint8Array | null | undefined)[];
      try {
        out = this.updates[k]!.compute(input);
        if (!Array.isArray(out) || out.length !== pos.length)
          throw new FeatureStoreError(
            Code.Internal,
            `an update's compute answered ${Array.isArray(out) ? out.length : "no"} values for ${pos.length} names`,
          );
      } catch (err) {
        this.alive[k] = false;
        this.updates[k]!.reject(FeatureStoreError.from(err));
        continue;
      }
      for (let i = 0; i < pos.length; i++) {
        const v = out[i];
        if (v === undefined) continue;
        next[pos[i]!] = v;
        changed[pos[i]!] = true;
      }
      left = true;
    }
    return left;
  }

  /** True when some compute answered a value for some name. */
  get anyChange(): boolean {
    return this.changed.includes(true);
  }

  /** The updates still in the round. */
  get live(): QueuedUpdate[] {
    return this.updates.filter((_, k) => this.alive[k]);
  }

  resolveAll(): void {
    for (const u of this.live) u.resolve();
  }

  rejectAll(err: FeatureStoreError): void {
    for (const u of this.live) u.reject(err);
  }
}
