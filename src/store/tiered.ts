/**
 * The hot tier in front of a durable backend: the typed-array cache answers hits synchronously
 * and without allocation, exactly as the memory store does; a miss reads the backend, fills the
 * cache, and answers. Absence is cached too (a one-byte marker no record can be), so a read of
 * an entity that does not exist costs one backend read until a write of it.
 *
 * Writes go to the backend's open transaction and to the cache at once, so a read that follows
 * a write sees it before the write is acknowledged (Redis applies in memory, then logs). The
 * commit runs once per event-loop turn (group commit); `sync()` is what a transport awaits
 * before acknowledging a write. If the commit fails, every write of that turn fails, the cache
 * is cleared (it may hold what the file refused) and refills from the file.
 *
 * Records too large for the cache's segments are kept in the backend only and served from beside
 * the cache (cache-front.ts).
 *
 * A record's fresh-until time (`freshUntil`) is not a column: the write that stores a record
 * hands it to the cache, and a record read from the file gets it from `recordFreshUntil` (a walk
 * of the record's entry headers, small beside the B-tree read of the miss itself). A column would
 * save that walk but change the file's schema, which this server refuses to read across versions.
 */
import { CacheError, type CacheOptions } from "../cache/index.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";
import { recordFreshUntil } from "../codec/value-meta.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { ABSENT, CacheFront, NOT_CACHED } from "./cache-front.ts";
import { type Durability, SqliteBackend } from "./sqlite/backend.ts";
import type { DurableStore, PrefixDrop } from "./types.ts";

/**
 * The WAL is checkpointed into the database file this often, ms: with DURABILITY=async that is
 * the fsync (Redis' appendfsync everysec); in both modes it keeps the WAL small (left to
 * SQLite's page-count trigger it grew to 16 MiB, a disk-full hazard on a small volume).
 */
export const CHECKPOINT_EVERY_MS = 1000;
/** How often expired rows are purged, ms; each step deletes at most PURGE_BATCH rows. */
const PURGE_EVERY_MS = 1000;

export interface TieredStoreOptions {
  cache: CacheOptions;
  backend: SqliteBackend;
  /** Checkpoint (and so fsync) the backend this often, ms; 0 = leave it to SQLite. */
  checkpointEveryMs: number;
  logger: Logger;
}

export class TieredStore extends CacheFront implements DurableStore {
  readonly backend: SqliteBackend;
  private readonly clock: () => number;
  private readonly logger: Logger;
  private batch: Promise<void> | null = null;
  private settle: ((err?: FeatureStoreError) => void) | null = null;
  private failure: string | null = null;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private closed = false;

  /** Opens the SQLite file in `dir` behind a cache; throws StoreStartError. */
  static open(opts: {
    dir: string;
    durability: Durability;
    cache: CacheOptions;
    logger?: Logger;
  }): TieredStore {
    const backend = new SqliteBackend({ dir: opts.dir, durability: opts.durability, now: opts.cache.now });
    return new TieredStore({
      cache: opts.cache,
      backend,
      checkpointEveryMs: CHECKPOINT_EVERY_MS,
      logger: opts.logger ?? silentLogger,
    });
  }

  constructor(opts: TieredStoreOptions) {
    super(opts.cache);
    this.backend = opts.backend;
    this.clock = opts.cache.now ?? Date.now;
    this.logger = opts.logger;
    this.timers.push(setInterval(() => this.purge(), PURGE_EVERY_MS));
    if (opts.checkpointEveryMs > 0)
      this.timers.push(setInterval(() => this.backend.checkpoint(), opts.checkpointEveryMs));
    for (const t of this.timers) t.unref();
  }

  get ready(): boolean {
    return !this.closed;
  }

  /** Why writes are failing now (the readiness probe shows it), or null. */
  get writeFailure(): string | null {
    return this.failure;
  }

  find(key: Uint8Array, start: number, end: number): number {
    const h = this.lookup(key, start, end);
    return h === NOT_CACHED ? this.load(key, start, end) : h;
  }

  /** A miss: reads the backend and fills the cache (the record, or the absence marker). */
  private load(key: Uint8Array, start: number, end: number): number {
    const id = key.subarray(start, end);
    const stored = this.backendRead(() => this.backend.read(id));
    if (stored === null) {
      this.cache.set(key, ABSENT, 0, start, end);
      return -1;
    }
    const record = stored.record;
    const freshUntil = recordFreshUntil(record, 0, record.length);
    const ttl = stored.expiresAt === 0 ? 0 : Math.max(1, stored.expiresAt - this.clock());
    if (end - start + record.length > this.cache.maxEntryBytes)
      return this.serveSide(record, stored.expiresAt, freshUntil);
    this.cache.set(key, record, ttl, start, end, freshUntil);
    return this.cache.find(key, start, end);
  }

  /** Runs a backend read; a failure inside the turn's transaction rolled it back, so the turn's writes fail too. */
  private backendRead<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      const e = FeatureStoreError.from(err);
      if (this.settle !== null) this.fail(e);
      throw e;
    }
  }

  now(): number {
    return this.clock();
  }

  write(
    key: Uint8Array,
    start: number,
    end: number,
    record: Uint8Array,
    ttlMs: number,
    freshUntil: number,
  ): void {
    const expiresAt = ttlMs === 0 ? 0 : this.clock() + ttlMs;
    this.backendWrite(() => this.backend.put(key.subarray(start, end), record, expiresAt));
    try {
      if (end - start + record.length <= this.cache.maxEntryBytes)
        this.cache.set(key, record, ttlMs, start, end, freshUntil);
      else this.cache.delete(key, start, end); // served from the backend from now on
    } catch (err) {
      if (err instanceof CacheError) this.cache.delete(key, start, end);
      else throw err;
    }
  }

  remove(key: Uint8Array, start: number, end: number): boolean {
    if (this.find(key, start, end) < 0) return false;
    this.erase(key, start, end);
    this.cache.set(key, ABSENT, 0, start, end);
    return true;
  }

  /** Deletes the row of key[start,end) in the turn's batch (the caller sets the cache). */
  private erase(key: Uint8Array, start: number, end: number): void {
    this.backendWrite(() => this.backend.delete(key.subarray(start, end)));
  }

  /**
   * Deletes the file's rows under `prefix` in key order, `max` per step, each as `remove` does
   * (in the turn's batch), and their cached copies; a step's promise settles once its deletes
   * are committed (see SqlitePrefixDrop).
   */
  dropPrefix(prefix: Uint8Array): PrefixDrop {
    const p = prefix.slice();
    return new SqlitePrefixDrop(
      p,
      (from, limit) => this.removePrefixed(p, from, limit),
      () => this.sync(),
    );
  }

  /** Removes up to `limit` rows under `prefix` from the key `from` on; answers their ids. */
  private removePrefixed(prefix: Uint8Array, from: Uint8Array, limit: number): Uint8Array[] {
    if (this.closed) throw new FeatureStoreError(Code.Unavailable, "the server is shutting down");
    const ids = this.backendRead(() => this.backend.idsWithPrefix(prefix, from, limit));
    for (const id of ids) {
      this.erase(id, 0, id.length);
      // Not the absence marker `remove` leaves: a dropped version is not read again, and a marker
      // per dropped record would evict the live ones.
      this.cache.delete(id);
    }
    return ids;
  }

  /** Runs a backend write in the turn's batch; a failure fails the whole batch. */
  private backendWrite(f: () => void): void {
    if (this.closed) throw new FeatureStoreError(Code.Unavailable, "the server is shutting down");
    this.openBatch();
    try {
      f();
    } catch (err) {
      const e = FeatureStoreError.from(err);
      this.fail(e);
      throw e;
    }
  }

  private openBatch(): void {
    if (this.batch !== null) return;
    this.batch = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    // A batch nobody awaits (an embedded caller) must not become an unhandled rejection.
    this.batch.catch(() => {});
    setImmediate(() => this.commit());
  }

  /** Resolves once every write made so far is durable; rejects with the commit's error. Null when nothing is pending. */
  sync(): Promise<void> | null {
    return this.batch;
  }

  /**
   * Commits the turn's writes now (also called by the scheduled commit and at close); returns
   * the error that failed them, or null once they are durable (or when nothing was pending).
   */
  commit(): FeatureStoreError | null {
    const settle = this.settle;
    if (settle === null) return null;
    this.batch = null;
    this.settle = null;
    try {
      this.backend.commit();
    } catch (err) {
      const e = FeatureStoreError.from(err);
      this.recordFailure(e);
      settle(e);
      return e;
    }
    if (this.failure !== null) {
      this.logger.info("store writes succeed again", { path: this.backend.path });
      this.failure = null;
    }
    settle();
    return null;
  }

  /** A write failed before the commit: the turn's earlier writes are rolled back with it. */
  private fail(e: FeatureStoreError): void {
    const settle = this.settle;
    this.batch = null;
    this.settle = null;
    this.recordFailure(e);
    settle?.(e);
  }

  private recordFailure(e: FeatureStoreError): void {
    // The cache may hold writes the file refused: drop it all, reads refill from the file.
    this.cache.clear();
    if (this.failure === null)
      this.logger.error("store writes failing", { path: this.backend.path, err: e.message });
    this.failure = e.message;
  }

  private purge(): void {
    if (this.batch !== null) return;
    const started = performance.now();
    // Bounded steps: at most ~1 ms of purging per tick.
    while (this.backend.purgeExpired() > 0 && performance.now() - started < 1) {}
  }

  /** Fills the cache with the most recently written entities; returns how many. */
  warm(limit: number, progress: (n: number) => void): number {
    let n = 0;
    const now = this.clock();
    for (const { id, record, expiresAt } of this.backend.recent(limit)) {
      if (id.length + record.length <= this.cache.maxEntryBytes) {
        const ttl = expiresAt === 0 ? 0 : Math.max(1, expiresAt - now);
        this.cache.set(id, record, ttl, 0, id.length, recordFreshUntil(record, 0, record.length));
      }
      if (++n % 100_000 === 0) progress(n);
    }
    return n;
  }

  /** Commits what is pending, stops the timers and closes the file. */
  close(): void {
    if (this.closed) return;
    this.commit();
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.backend.close();
  }
}

/**
 * A prefix drop over the SQLite file: each step deletes the next `max` rows under the prefix in
 * key order (one range scan of the primary key) and resumes after the last one. The deletes
 * commit with the store's batch, so a step answers a promise that settles with the count once
 * they are durable. If that commit fails they are rolled back: the promise rejects with its
 * error and the drop starts over from the prefix (the rows deleted and committed before are gone,
 * so the scan meets only what is left). `done` turns true only once a step found no further row
 * and its commit, and every earlier step's, succeeded.
 */
class SqlitePrefixDrop implements PrefixDrop {
  /** Least key the next step reads from. */
  private from: Uint8Array;
  private finished = false;
  /** Bumped at each failure: a step of an earlier round must not finish the drop. */
  private round = 0;

  constructor(
    private readonly prefix: Uint8Array,
    private readonly removeFrom: (from: Uint8Array, limit: number) => Uint8Array[],
    private readonly sync: () => Promise<void> | null,
  ) {
    this.from = prefix;
  }

  get done(): boolean {
    return this.finished;
  }

  step(max: number): number | Promise<number> {
    if (this.finished) return 0;
    const limit = Math.max(1, Math.floor(max));
    const round = this.round;
    let ids: Uint8Array[];
    try {
      ids = this.removeFrom(this.from, limit);
    } catch (err) {
      this.restart();
      throw err;
    }
    const last = ids[ids.length - 1];
    if (last !== undefined) {
      // The least key above `last`: the scan resumes after it.
      const next = new Uint8Array(last.length + 1);
      next.set(last);
      this.from = next;
    }
    const end = ids.length < limit;
    const pending = this.sync();
    if (pending === null) {
      if (end) this.finished = true;
      return ids.length;
    }
    return pending.then(
      () => {
        if (end && this.round === round) this.finished = true;
        return ids.length;
      },
      (err: unknown) => {
        this.restart();
        throw err;
      },
    );
  }

  private restart(): void {
    this.round++;
    this.from = this.prefix;
    this.finished = false;
  }
}
