/**
 * The durable default backend: one SQLite file in WAL mode, through `bun:sqlite`.
 *
 * Layout: one row per entity, the canonical encoded record as a BLOB (the same bytes the cache
 * holds and GetFeatures answers with, so a read from the file needs no re-encoding):
 *
 * ```
 * entities(id BLOB PRIMARY KEY,         -- entity id bytes; WITHOUT ROWID: the row lives in the id B-tree
 *          record BLOB NOT NULL,        -- canonical features map entries
 *          expires_at INTEGER NOT NULL, -- ms since the epoch, 0 = never
 *          written INTEGER NOT NULL)    -- ms since the epoch of the last write (the warm-up's order)
 * index on expires_at where expires_at > 0   -- the purge of expired rows
 * ```
 *
 * Ids compare as bytes (memcmp), so the ids starting with a prefix are one range of the primary
 * key: a prefix drop (a feature-set version) reads them in order, a bounded batch at a time.
 *
 * A row per entity (not per feature) because every read wants the whole record or a projection
 * of it, and the service merges in memory: one B-tree lookup per miss, one row write per write.
 * WITHOUT ROWID and an upsert in place: schema 1 (a rowid table, `INSERT OR REPLACE`, so every
 * write deleted a row, appended it under a new rowid and moved its unique-index entry) wrote
 * 16-26 KB of WAL per 570-byte record in bench/durable; an update in place dirties one leaf.
 *
 * Writes go into one open transaction per event-loop turn (group commit): the first write of a
 * turn begins it, the commit runs once after the turn. `durability: "sync"` commits with
 * `synchronous=FULL` (the WAL is fsynced before the commit returns: Redis' `appendfsync
 * always`); `"async"` with `synchronous=NORMAL` (the commit reaches the OS, which survives a
 * process crash; the WAL is fsynced by a checkpoint at least once a second: `appendfsync everysec`).
 * The file is opened with `locking_mode=EXCLUSIVE`, so a second server on the same file is
 * refused at start rather than sharing it.
 */
import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Code, FeatureStoreError } from "../../codec/status.ts";

/** What a backend holds for one entity. */
export interface StoredRecord {
  record: Uint8Array;
  /** ms since the epoch; 0 = never. */
  expiresAt: number;
}

/** When a write is acknowledged: after fsync ("sync"), or once the OS has it ("async"). */
export type Durability = "sync" | "async";

export interface SqliteBackendOptions {
  /** Directory of the database file (created if missing). */
  dir: string;
  durability: Durability;
  /** Clock for expiry, ms. Default Date.now. */
  now?: () => number;
}

/** The database file's name inside DATA_DIR. */
export const DB_FILE = "features.db";
/** PRAGMA application_id of our files ("FSv1"): any other SQLite file is refused as foreign. */
const APPLICATION_ID = 0x46537631;
const SCHEMA_VERSION = 2;
/** Files up to this size are read whole by `PRAGMA quick_check` at start. */
const QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024;
/** Rows the purge deletes per step: well under 1 ms of work here. */
export const PURGE_BATCH = 256;

/** A start-up failure the operator must fix (exit code 2): the message names the path and cause. */
export class StoreStartError extends Error {
  override readonly name = "StoreStartError";
}

export class SqliteBackend {
  readonly path: string;
  private readonly db: Database;
  private readonly getStmt: Statement;
  private readonly putStmt: Statement;
  private readonly delStmt: Statement;
  private readonly purgeStmt: Statement;
  private readonly rangeStmt: Statement;
  private readonly fromStmt: Statement;
  private readonly now: () => number;
  private inTransaction = false;

  constructor(opts: SqliteBackendOptions) {
    this.now = opts.now ?? Date.now;
    try {
      mkdirSync(opts.dir, { recursive: true });
    } catch (err) {
      throw new StoreStartError(`DATA_DIR ${opts.dir} cannot be created: ${(err as Error).message}`);
    }
    this.path = join(opts.dir, DB_FILE);
    let db: Database;
    try {
      db = new Database(this.path, { create: true, strict: true });
    } catch (err) {
      throw new StoreStartError(`cannot open ${this.path}: ${(err as Error).message}`);
    }
    this.db = db;
    try {
      // Taken first: a second server fails here, before it touches anything.
      db.run("PRAGMA locking_mode = EXCLUSIVE");
      db.run("PRAGMA busy_timeout = 0");
      this.checkFile();
      db.run("PRAGMA journal_mode = WAL");
      db.run(`PRAGMA synchronous = ${opts.durability === "sync" ? "FULL" : "NORMAL"}`);
      // Checkpoints are ours (async mode: once a second), not after every 1000 pages mid-turn.
      db.run("PRAGMA wal_autocheckpoint = 4096");
      db.run(
        "CREATE TABLE IF NOT EXISTS entities (id BLOB PRIMARY KEY, record BLOB NOT NULL, " +
          "expires_at INTEGER NOT NULL, written INTEGER NOT NULL) WITHOUT ROWID",
      );
      db.run("CREATE INDEX IF NOT EXISTS entities_expiry ON entities(expires_at) WHERE expires_at > 0");
      // Written only when they differ: a restart on a full disk must still be able to read.
      if (pragma(db, "application_id") !== APPLICATION_ID)
        db.run(`PRAGMA application_id = ${APPLICATION_ID}`);
      if (pragma(db, "user_version") !== SCHEMA_VERSION) db.run(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    } catch (err) {
      db.close();
      if (err instanceof StoreStartError) throw err;
      throw new StoreStartError(startCause(this.path, err));
    }
    this.getStmt = db.prepare("SELECT record, expires_at FROM entities WHERE id = ?");
    this.putStmt = db.prepare(
      "INSERT INTO entities (id, record, expires_at, written) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (id) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at, written = excluded.written",
    );
    this.delStmt = db.prepare("DELETE FROM entities WHERE id = ?");
    this.purgeStmt = db.prepare(
      "DELETE FROM entities WHERE id IN (SELECT id FROM entities WHERE expires_at > 0 AND expires_at <= ? LIMIT ?)",
    );
    // Range scans of the primary key (BLOBs compare as memcmp, so a prefix is a key range).
    this.rangeStmt = db.prepare("SELECT id FROM entities WHERE id >= ? AND id < ? ORDER BY id LIMIT ?");
    this.fromStmt = db.prepare("SELECT id FROM entities WHERE id >= ? ORDER BY id LIMIT ?");
  }

  /** Refuses a file that is not ours or not sound; takes the exclusive lock. */
  private checkFile(): void {
    const db = this.db;
    // The first read takes the lock (and fails with SQLITE_BUSY if another process holds it),
    // and fails with SQLITE_NOTADB on a file that is not a database.
    const app = pragma(db, "application_id");
    const tables = db.query("SELECT count(*) AS n FROM sqlite_master").get() as { n: number };
    if (tables.n > 0 && app !== APPLICATION_ID)
      throw new StoreStartError(
        `${this.path} is a SQLite file of another application (application_id ${app}): not a feature store file`,
      );
    const version = pragma(db, "user_version");
    if (tables.n > 0 && version !== SCHEMA_VERSION)
      throw new StoreStartError(
        `${this.path} has schema version ${version}; this server reads ${SCHEMA_VERSION}` +
          (version < SCHEMA_VERSION ? " (a file of an earlier development build: export and reload it)" : ""),
      );
    // quick_check reads every page (706 ms of a 957 ms start at 1M entities, cached): done in
    // full up to QUICK_CHECK_MAX_BYTES; past it the header and schema checks above stand, and a
    // damaged page shows later as UNAVAILABLE naming the file, never as wrong data.
    if (pragma(db, "page_count") * pragma(db, "page_size") <= QUICK_CHECK_MAX_BYTES) {
      const check = db.query("PRAGMA quick_check(1)").get() as { quick_check: string };
      if (check.quick_check !== "ok")
        throw new StoreStartError(`${this.path} is corrupt: ${check.quick_check}`);
    }
    // Hold the write lock from now on (EXCLUSIVE locking mode keeps it until close).
    db.run("BEGIN EXCLUSIVE");
    db.run("COMMIT");
  }

  /** The live record of key, or null (absent or expired). */
  read(key: Uint8Array): StoredRecord | null {
    let row: { record: Uint8Array; expires_at: number } | null;
    try {
      // Inside the turn's transaction a read may have to spill dirty pages to the WAL, and so
      // fail with SQLITE_FULL, after which SQLite has rolled the transaction back.
      row = this.getStmt.get(key) as { record: Uint8Array; expires_at: number } | null;
    } catch (err) {
      throw this.failed(err, "read");
    }
    if (row === null) return null;
    if (row.expires_at !== 0 && row.expires_at <= this.now()) return null;
    return { record: row.record, expiresAt: row.expires_at };
  }

  /**
   * Ids of the rows whose id starts with `prefix` and is >= `from`, in byte order, at most
   * `limit`; expired rows not yet purged included. One range scan of the primary key, reading
   * only the rows it answers; it sees the turn's uncommitted writes. Throws FeatureStoreError
   * (the turn's transaction is then rolled back, as for `read`).
   */
  idsWithPrefix(prefix: Uint8Array, from: Uint8Array, limit: number): Uint8Array[] {
    const end = prefixEnd(prefix);
    try {
      const rows = (end === null ? this.fromStmt.all(from, limit) : this.rangeStmt.all(from, end, limit)) as {
        id: Uint8Array;
      }[];
      return rows.map((r) => r.id);
    } catch (err) {
      throw this.failed(err, "read");
    }
  }

  /** Writes a record into the turn's transaction. Throws FeatureStoreError when the file refuses it. */
  put(key: Uint8Array, record: Uint8Array, expiresAt: number): void {
    this.checkTransaction();
    this.begin();
    try {
      this.putStmt.run(key, record, expiresAt, this.now());
    } catch (err) {
      throw this.failed(err, "write");
    }
  }

  /** Deletes a record in the turn's transaction. */
  delete(key: Uint8Array): void {
    this.checkTransaction();
    this.begin();
    try {
      this.delStmt.run(key);
    } catch (err) {
      throw this.failed(err, "delete");
    }
  }

  /** True while a transaction holds writes that are not committed. */
  get dirty(): boolean {
    return this.inTransaction;
  }

  /** Commits the turn's transaction (fsync in sync mode). Throws FeatureStoreError; the writes are then rolled back. */
  commit(): void {
    if (!this.inTransaction) return;
    this.checkTransaction();
    try {
      this.db.run("COMMIT");
      this.inTransaction = false;
    } catch (err) {
      throw this.failed(err, "commit");
    }
  }

  /** Deletes up to PURGE_BATCH expired rows in its own commit; returns how many. */
  purgeExpired(): number {
    if (this.inTransaction) return 0;
    try {
      return this.purgeStmt.run(this.now(), PURGE_BATCH).changes;
    } catch {
      return 0; // retried on the next step; a failing disk shows in writes
    }
  }

  /** Writes the WAL into the database file, fsyncing both. */
  checkpoint(): void {
    if (this.inTransaction) return;
    try {
      this.db.run("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // the next one retries
    }
  }

  /** The most recently written live records, newest first, at most `limit`. */
  *recent(limit: number): Generator<{ id: Uint8Array; record: Uint8Array; expiresAt: number }> {
    const now = this.now();
    const q = this.db.query("SELECT id, record, expires_at FROM entities ORDER BY written DESC LIMIT ?");
    for (const row of q.iterate(limit) as Iterable<{
      id: Uint8Array;
      record: Uint8Array;
      expires_at: number;
    }>) {
      if (row.expires_at !== 0 && row.expires_at <= now) continue;
      yield { id: row.id, record: row.record, expiresAt: row.expires_at };
    }
  }

  /** Rows in the file (expired ones included until purged). */
  count(): number {
    return (this.db.query("SELECT count(*) AS n FROM entities").get() as { n: number }).n;
  }

  /** Commits what is pending and closes the file (releasing the lock). */
  close(): void {
    try {
      this.commit();
    } finally {
      // A statement left unfinalized would keep the file (and its exclusive lock) open.
      for (const st of [
        this.getStmt,
        this.putStmt,
        this.delStmt,
        this.purgeStmt,
        this.rangeStmt,
        this.fromStmt,
      ])
        st.finalize();
      this.db.close(true);
    }
  }

  /**
   * Fails if SQLite rolled the turn's transaction back on its own (an error in a statement we
   * did not see fail, e.g. a cache spill): without this, the turn's later writes would
   * autocommit one by one while its earlier ones were gone.
   */
  private checkTransaction(): void {
    if (!this.inTransaction || this.db.inTransaction) return;
    this.inTransaction = false;
    throw new FeatureStoreError(
      Code.Unavailable,
      `the store rolled back this turn's writes (${this.path}); nothing of them is kept`,
    );
  }

  private begin(): void {
    if (this.inTransaction) return;
    try {
      this.db.run("BEGIN");
    } catch (err) {
      throw this.failed(err, "begin");
    }
    this.inTransaction = true;
  }

  /** Rolls back the turn's transaction and describes the failure in client terms. */
  private failed(err: unknown, what: string): FeatureStoreError {
    if (this.inTransaction) {
      try {
        this.db.run("ROLLBACK");
      } catch {
        // SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR)
      }
      this.inTransaction = false;
    }
    const code = (err as { code?: string }).code ?? "";
    const message = (err as Error).message;
    if (code.startsWith("SQLITE_FULL"))
      return new FeatureStoreError(
        Code.ResourceExhausted,
        `the disk of DATA_DIR is full (${this.path}): ${message}`,
        {
          cause: err,
        },
      );
    return new FeatureStoreError(
      Code.Unavailable,
      `the store cannot ${what} (${this.path}): ${code} ${message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * The least byte string above every string that starts with `prefix` (its last byte below 0xFF
 * incremented, the 0xFF bytes after it dropped); null when there is none (empty or all 0xFF).
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array | null {
  let n = prefix.length;
  while (n > 0 && prefix[n - 1] === 0xff) n--;
  if (n === 0) return null;
  const end = prefix.slice(0, n);
  end[n - 1]!++;
  return end;
}

function pragma(db: Database, name: string): number {
  return (db.query(`PRAGMA ${name}`).get() as Record<string, number>)[name]!;
}

/** A start-up failure in the operator's words. */
function startCause(path: string, err: unknown): string {
  const code = (err as { code?: string }).code ?? "";
  const message = (err as Error).message;
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
    return `${path} is in use by another server (the database is locked): one DATA_DIR per server`;
  if (code.startsWith("SQLITE_NOTADB")) return `${path} is not a feature store file (${message})`;
  if (code.startsWith("SQLITE_CORRUPT")) return `${path} is corrupt (${message})`;
  if (
    code.startsWith("SQLITE_READONLY") ||
    code.startsWith("SQLITE_CANTOPEN") ||
    code.startsWith("SQLITE_PERM")
  )
    return `${path} cannot be written (${message}): check DATA_DIR's permissions`;
  return `${path} cannot be opened: ${code} ${message}`;
}
