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
 */
import { CacheError, type CacheOptions } from "../cache/index.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { ABSENT, CacheFront, NOT_CACHED } from "./cache-front.ts";
import { type Durability, SqliteBackend } from "./sqlite/backend.ts";
import type { DurableStore } from "./types.ts";

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
    let stored: ReturnType<SqliteBackend["read"]>;
    try {
      stored = this.backend.read(id);
    } catch (err) {
      // A failed read inside the turn's transaction rolled it back: the turn's writes fail too.
      const e = FeatureStoreError.from(err);
      if (this.settle !== null) this.fail(e);
      throw e;
    }
    if (stored === null) {
      this.cache.set(key, ABSENT, 0, start, end);
      return -1;
    }
    const ttl = stored.expiresAt === 0 ? 0 : Math.max(1, stored.expiresAt - this.clock());
    if (end - start + stored.record.length > this.cache.maxEntryBytes)
      return this.serveSide(stored.record, stored.expiresAt);
    this.cache.set(key, stored.record, ttl, start, end);
    return this.cache.find(key, start, end);
  }

  now(): number {
    return this.clock();
  }

  write(key: Uint8Array, start: number, end: number, record: Uint8Array, ttlMs: number): void {
    const expiresAt = ttlMs === 0 ? 0 : this.clock() + ttlMs;
    this.backendWrite(() => this.backend.put(key.subarray(start, end), record, expiresAt));
    try {
      if (end - start + record.length <= this.cache.maxEntryBytes)
        this.cache.set(key, record, ttlMs, start, end);
      else this.cache.delete(key, start, end); // served from the backend from now on
    } catch (err) {
      if (err instanceof CacheError) this.cache.delete(key, start, end);
      else throw err;
    }
  }

  remove(key: Uint8Array, start: number, end: number): boolean {
    if (this.find(key, start, end) < 0) return false;
    this.backendWrite(() => this.backend.delete(key.subarray(start, end)));
    this.cache.set(key, ABSENT, 0, start, end);
    return true;
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
      if (id.length + record.length <= this.cache.maxEntryBytes)
        this.cache.set(id, record, expiresAt === 0 ? 0 : Math.max(1, expiresAt - now));
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
