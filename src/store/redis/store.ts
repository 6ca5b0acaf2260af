/**
 * Redis as the shared store (STORE=redis): the truth lives in Redis (standalone or Cluster,
 * layout in layout.ts), each server keeps the typed-array cache in front of it as a near-cache.
 *
 * Reads: a near-cache hit answers synchronously, as the memory store does. A miss answers
 * PENDING and joins the loads of this event-loop turn: one `HGETALL` + `PTTL` per entity, sent
 * together once the turn ends (one pipeline per node), single-flight (a second miss of an entity
 * being loaded waits for the same load), absence cached too, bounded (`maxPendingLoads`, then
 * RESOURCE_EXHAUSTED). What landed stays readable for a while (see `sweep`), so the requests
 * that waited for it run again and find it, even if the near-cache could not keep it.
 *
 * Coherence: Redis tracks the keys each connection read and pushes an invalidation when one
 * changes, whoever changed it (another server, `redis-cli`, a batch job), or when it expires.
 * The pitfalls, handled:
 * - an invalidation that arrives while a load of that key is in flight: the load's answer still
 *   serves the requests waiting for it (it was true when Redis read it) but is not cached;
 * - a tracking connection that drops loses its invalidations: the whole near-cache is flushed
 *   (and again when the Cluster topology is refreshed, during which loads fill nothing);
 * - everything cached expires after `maxStalenessMs` at most, even if an invalidation were lost.
 *
 * Writes are the request's change (a script for SetFeatures, HDEL or DEL), sent at once and
 * acknowledged when Redis answers, or, with `waitReplicas` > 0, when `WAIT` confirms that many
 * replicas have it (one WAIT per master per turn). The near-cache entry is dropped when the
 * write is sent; the next read loads the result. SetFeatures is set-if-newer per field, in the
 * script (a stored value with a newer event time stays). UpdateFeatures is compare-and-set
 * (update.ts): read, compute, and a script that writes only if nothing changed meanwhile.
 * Dropping a prefix scans every master (drop.ts).
 */
import type { CacheOptions } from "../../cache/index.ts";
import { Code, FeatureStoreError } from "../../codec/status.ts";
import { recordFreshUntil } from "../../codec/value-meta.ts";
import { ProtoWriter } from "../../codec/wire.ts";
import { LimitedLog, type Logger, silentLogger } from "../../log/index.ts";
import type { RedisStats } from "../../metrics/prometheus.ts";
import { ABSENT, CacheFront, NOT_CACHED } from "../cache-front.ts";
import { PENDING, type PrefixDrop, type RemoteStore } from "../types.ts";
import { RedisPrefixDrop } from "./drop.ts";
import {
  EXPECT_ABSENT,
  EXPECT_VALUE,
  entityKey,
  findInRecord,
  NEW_DELETE,
  NEW_LEAVE,
  NEW_SET,
  prefixPattern,
  recordOf,
  SET_SCRIPT,
  UPDATE_SCRIPT,
} from "./layout.ts";
import { type InvalidationSink, RedisLink, type RedisLinkOptions } from "./link.ts";
import { CombinedUpdate, type Compute, KeyQueue, MAX_CAS_ROUNDS, type QueuedUpdate } from "./update.ts";

/** How often landed loads are let go when no load lands, ms. */
const LANDED_SWEEP_MS = 1000;

export interface RedisStoreOptions {
  /** The near-cache. */
  cache: CacheOptions;
  /** REDIS_KEY_PREFIX. */
  prefix: string;
  /** NEAR_CACHE_MAX_STALENESS_MS: the longest anything stays in the near-cache. */
  maxStalenessMs: number;
  /** REDIS_COMMAND_TIMEOUT_MS: a load or a write not answered by then fails UNAVAILABLE. */
  commandTimeoutMs: number;
  /** REDIS_WAIT_REPLICAS: a write is acknowledged once this many replicas confirmed it. */
  waitReplicas: number;
  /** How long WAIT waits for them, ms (below commandTimeoutMs). */
  waitTimeoutMs: number;
  /** MAX_FEATURES_PER_ENTITY, enforced by the write and update scripts. */
  maxFeaturesPerEntity: number;
  /** Entity loads in flight at most; a miss past it fails RESOURCE_EXHAUSTED. */
  maxPendingLoads: number;
  logger?: Logger;
}

enum State {
  Queued,
  Sent,
  Landed,
}

/** One entity being loaded (single-flight: every miss of it while in flight waits for this). */
interface Load {
  readonly id: string;
  readonly key: Buffer;
  state: State;
  /** An invalidation or a write of this entity came while it was in flight: do not cache it. */
  stale: boolean;
  record: Uint8Array | null;
  expiresAt: number;
  /** `recordFreshUntil` of the record (0: no feature has a max age). */
  freshUntil: number;
  /** performance.now() when it landed. */
  landedAt: number;
}

/** The loads sent together at the end of one turn, and who waits for them. */
interface Batch {
  readonly loads: Load[];
  readonly done: Promise<void>;
  settle: (err?: FeatureStoreError) => void;
}

export class RedisStore extends CacheFront implements RemoteStore, InvalidationSink {
  readonly remote = true;
  private link: RedisLink | null = null;
  private readonly setScript = script(SET_SCRIPT);
  private readonly updateScript = script(UPDATE_SCRIPT);
  private readonly opts: RedisStoreOptions;
  private readonly prefix: Buffer;
  private readonly logger: Logger;
  private readonly logInvalid: LimitedLog;
  private readonly loads = new Map<string, Load>();
  private queued: Batch | null = null;
  private readonly inFlight = new Set<Batch>();
  /** The loads counted against maxPendingLoads (queued or sent). */
  private pendingLoads = 0;
  /** Landed loads in landing order (some may be gone from `loads` already), for the sweep. */
  private landedQueue: Load[] = [];
  private landedHead = 0;
  private readonly sweepTimer: ReturnType<typeof setInterval>;
  private paused = false;
  private closed = false;
  /** This turn's WAITs, one per master that took writes: a key of it, and the writes' wait. */
  private waits = new Map<
    string,
    { key: Buffer; done: Promise<void>; settle: (e?: FeatureStoreError) => void }
  >();
  private readonly scratch = new ProtoWriter(4096);
  /** The keys with updates queued or running (one CAS round in flight per key), by id. */
  private readonly updating = new Map<string, KeyQueue>();
  /** Where `findInRecord` answers. */
  private readonly at = new Int32Array(2);
  /**
   * Counters for metrics and tests. updateRounds: CAS scripts sent by updates (a round may
   * carry several updates of one key); updateConflicts: those that found a name changed.
   */
  readonly stats = {
    loads: 0,
    invalidations: 0,
    flushes: 0,
    skippedFields: 0,
    updateRounds: 0,
    updateConflicts: 0,
  };

  constructor(opts: RedisStoreOptions) {
    super(opts.cache);
    this.opts = opts;
    this.prefix = Buffer.from(opts.prefix, "utf8");
    this.logger = opts.logger ?? silentLogger;
    this.logInvalid = new LimitedLog(this.logger, "warn", "Redis hash field is not a FeatureValue");
    this.sweepTimer = setInterval(() => this.sweep(), LANDED_SWEEP_MS);
    this.sweepTimer.unref();
  }

  /**
   * A store over the Redis of `opts`, connecting in the background (not ready until it is;
   * calls fail UNAVAILABLE meanwhile). `link.whenConnected(ms)` waits for it.
   */
  static create(opts: RedisStoreOptions & Omit<RedisLinkOptions, "sink" | "logger">): RedisStore {
    const store = new RedisStore(opts);
    store.link = new RedisLink({ ...opts, sink: store, logger: store.logger });
    store.link.start();
    return store;
  }

  /** The connections (for waiting until they are up). */
  get connection(): RedisLink {
    return this.link!;
  }

  get ready(): boolean {
    return !this.closed && this.link !== null && this.link.ready;
  }

  /** The counters for /metrics. */
  metrics(): RedisStats {
    return { ...this.stats, pendingLoads: this.pendingLoads, up: this.ready ? 1 : 0 };
  }

  get writeFailure(): string | null {
    if (this.link === null || this.link.ready) return null;
    return `Redis is unreachable: ${this.link.lastError ?? "connecting"}`;
  }

  // ---- reads ------------------------------------------------------------------------------

  find(key: Uint8Array, start: number, end: number): number {
    const h = this.lookup(key, start, end);
    return h === NOT_CACHED ? this.miss(key, start, end) : h;
  }

  private miss(key: Uint8Array, start: number, end: number): number {
    const id = latin1(key, start, end);
    const load = this.loads.get(id);
    if (load !== undefined) {
      if (load.state !== State.Landed) return PENDING;
      if (this.isFresh(load)) {
        if (load.record === null) return -1;
        return this.serveSide(load.record, load.expiresAt, load.freshUntil);
      }
      this.loads.delete(id);
    }
    if (this.closed) throw shuttingDown();
    if (this.pendingLoads >= this.opts.maxPendingLoads)
      throw new FeatureStoreError(
        Code.ResourceExhausted,
        `${this.pendingLoads} entities are being loaded from Redis already (REDIS_MAX_PENDING_LOADS): retry later`,
      );
    const fresh: Load = {
      id,
      key: entityKey(this.prefix, key.subarray(start, end)),
      state: State.Queued,
      stale: false,
      record: null,
      expiresAt: 0,
      freshUntil: 0,
      landedAt: 0,
    };
    this.loads.set(id, fresh);
    this.pendingLoads++;
    let batch = this.queued;
    if (batch === null) {
      batch = this.queued = newBatch();
      setImmediate(() => this.send(batch!));
    }
    batch.loads.push(fresh);
    return PENDING;
  }

  loaded(): Promise<void> {
    const batches: Promise<void>[] = [];
    if (this.queued !== null) batches.push(this.queued.done);
    for (const b of this.inFlight) batches.push(b.done);
    if (batches.length === 1) return batches[0]!;
    return Promise.all(batches).then(() => {});
  }

  /** Sends one turn's loads: HGETALL and PTTL per entity, pipelined. */
  private send(batch: Batch): void {
    this.queued = null;
    this.inFlight.add(batch);
    const link = this.link!;
    const replies: Promise<unknown>[] = new Array(batch.loads.length * 2);
    for (let i = 0; i < batch.loads.length; i++) {
      const load = batch.loads[i]!;
      load.state = State.Sent;
      replies[2 * i] = link.send(load.key, true, ["HGETALL", load.key]);
      replies[2 * i + 1] = link.send(load.key, true, ["PTTL", load.key]);
    }
    this.stats.loads += batch.loads.length;
    const timer = setTimeout(
      () => this.land(batch, null, timeoutError("a read", this.opts.commandTimeoutMs)),
      this.opts.commandTimeoutMs,
    );
    Promise.all(replies).then(
      (r) => {
        clearTimeout(timer);
        this.land(batch, r, null);
      },
      (err: unknown) => {
        clearTimeout(timer);
        this.land(batch, null, redisError(err));
      },
    );
  }

  /** The replies of a batch (or its failure): fills the near-cache and wakes its waiters. */
  private land(batch: Batch, replies: unknown[] | null, err: FeatureStoreError | null): void {
    if (!this.inFlight.delete(batch)) return; // already failed by its timer
    this.pendingLoads -= batch.loads.length;
    const now = Date.now();
    for (let i = 0; i < batch.loads.length; i++) {
      const load = batch.loads[i]!;
      if (this.loads.get(load.id) !== load) continue;
      if (replies === null) {
        this.loads.delete(load.id);
        continue;
      }
      load.state = State.Landed;
      load.landedAt = performance.now();
      this.landedQueue.push(load);
      const flat = replies[2 * i] as Uint8Array[];
      const pttl = Number(replies[2 * i + 1]);
      if (flat.length > 0) {
        const { record, skipped } = recordOf(flat, this.scratch);
        if (skipped > 0) {
          this.stats.skippedFields += skipped;
          this.logInvalid.log({ key: load.key.toString("utf8"), skipped });
        }
        load.record = record.length > 0 ? record : null;
        if (load.record !== null) load.freshUntil = recordFreshUntil(record, 0, record.length);
      }
      load.expiresAt = pttl > 0 ? now + pttl : 0;
      if (!load.stale && !this.paused) this.fill(load, pttl);
    }
    if (err !== null) batch.settle(err);
    else batch.settle();
    this.sweep();
  }

  /** A landed load may still be served: within the staleness bound and its TTL. */
  private isFresh(load: Load): boolean {
    if (performance.now() - load.landedAt > this.opts.maxStalenessMs) return false;
    return load.expiresAt === 0 || load.expiresAt > Date.now();
  }

  /**
   * Lets go of landed loads once no waiting request can need them any more: a request runs
   * again when the last load it waits for lands, and every load lands or fails within the
   * command timeout, so a landed load is kept twice that long (a request that read it, then
   * met another miss, finds it on its next run even if the near-cache could not keep it), and
   * never past the staleness bound. At most REDIS_MAX_PENDING_LOADS are kept; the oldest go first.
   */
  private sweep(): void {
    const queue = this.landedQueue;
    const keepUntil = performance.now() - Math.min(2 * this.opts.commandTimeoutMs, this.opts.maxStalenessMs);
    let head = this.landedHead;
    while (head < queue.length) {
      const load = queue[head]!;
      const live = this.loads.get(load.id) === load;
      if (live && load.landedAt > keepUntil && queue.length - head <= this.opts.maxPendingLoads) break;
      if (live) this.loads.delete(load.id);
      head++;
    }
    if (head > 1024 && head * 2 > queue.length) {
      this.landedQueue = queue.slice(head);
      head = 0;
    }
    this.landedHead = head;
  }

  private fill(load: Load, pttl: number): void {
    const maxAge = this.opts.maxStalenessMs;
    const ttl = pttl > 0 ? Math.min(pttl, maxAge) : maxAge;
    const id = Buffer.from(load.id, "latin1");
    const value = load.record ?? ABSENT;
    if (id.length + value.length > this.cache.maxEntryBytes) return; // served from Redis each time
    this.cache.set(id, value, ttl, 0, id.length, load.freshUntil);
  }

  now(): number {
    return Date.now();
  }

  // ---- invalidation -----------------------------------------------------------------------

  invalidate(key: Uint8Array | string): void {
    const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : key;
    const prefix = this.prefix;
    if (bytes.length < prefix.length) return;
    for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return;
    this.stats.invalidations++;
    this.forget(bytes, prefix.length, bytes.length);
  }

  /** Drops the entity from the near-cache; a load in flight is not cached, a landed one is let go. */
  private forget(key: Uint8Array, start: number, end: number): void {
    this.cache.delete(key, start, end);
    const id = latin1(key, start, end);
    const load = this.loads.get(id);
    if (load === undefined) return;
    if (load.state === State.Landed) this.loads.delete(id);
    else load.stale = true;
  }

  flush(reason: string): void {
    this.stats.flushes++;
    if (this.cache.size > 0) this.logger.info("near-cache flushed", { reason });
    this.cache.clear();
    for (const [id, load] of this.loads) {
      if (load.state === State.Landed) this.loads.delete(id);
      else load.stale = true;
    }
  }

  pause(paused: boolean): void {
    this.paused = paused;
  }

  // ---- writes -----------------------------------------------------------------------------

  setFeatures(id: Uint8Array, fields: Uint8Array[], replace: boolean, ttlMs: number): Promise<Uint8Array[]> {
    const key = this.beginWrite(id);
    const args: (string | Buffer)[] = [
      "",
      "",
      "1",
      key,
      replace ? "1" : "0",
      String(ttlMs),
      String(this.opts.maxFeaturesPerEntity),
    ];
    for (const f of fields) args.push(Buffer.from(f.buffer, f.byteOffset, f.length));
    return this.acknowledged(key, this.evalScript(this.setScript, key, args)) as Promise<Buffer[]>;
  }

  deleteFeatures(id: Uint8Array, names: Uint8Array[] | null): Promise<boolean> {
    const key = this.beginWrite(id);
    const args: (string | Buffer)[] = names === null ? ["DEL", key] : ["HDEL", key];
    if (names !== null) for (const n of names) args.push(Buffer.from(n.buffer, n.byteOffset, n.length));
    return this.acknowledged(key, this.link!.send(key, false, args)).then((n) => Number(n) > 0);
  }

  update(
    id: Uint8Array,
    names: Uint8Array[],
    compute: Compute,
    ttlMs: number,
    defaultTtlMs: number,
  ): Promise<void> {
    if (this.closed) return Promise.reject(shuttingDown());
    return new Promise<void>((resolve, reject) => {
      const u: QueuedUpdate = { names, compute, ttlMs, defaultTtlMs, resolve, reject };
      const k = latin1(id, 0, id.length);
      const queued = this.updating.get(k);
      if (queued !== undefined) return queued.push(u);
      const q = new KeyQueue(id.slice(), entityKey(this.prefix, id));
      q.push(u);
      this.updating.set(k, q);
      // Not at once: compute never runs inside the caller's call, and the updates of this
      // key asked for in the same turn join the first round.
      queueMicrotask(() => void this.runUpdates(k, q));
    });
  }

  /** Runs the rounds of one key's queue until it is empty. */
  private async runUpdates(k: string, q: KeyQueue): Promise<void> {
    while (!q.empty) await this.runRound(q, q.take());
    this.updating.delete(k);
  }

  /**
   * One combined round: read (near-cache or HMGET), compute, CAS; again on the values the script
   * found while it finds changes, up to MAX_CAS_ROUNDS. Settles every update of the group (or
   * puts them back to run alone); never throws.
   */
  private async runRound(q: KeyQueue, group: QueuedUpdate[]): Promise<void> {
    const c = new CombinedUpdate(group);
    const { ttlMs, defaultTtlMs } = group[0]!;
    try {
      let current = this.cachedValues(q.id, c.names) ?? (await this.readValues(q.key, c.names));
      for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
        if (!c.apply(current)) return;
        if (!c.anyChange && ttlMs === 0) return c.resolveAll();
        if (this.closed) throw shuttingDown();
        // As for any write: a load in flight is not cached, the next read loads the result.
        this.forget(q.id, 0, q.id.length);
        this.stats.updateRounds++;
        const reply = await this.timed(
          this.evalScript(this.updateScript, q.key, this.casArgs(q, c, current, ttlMs, defaultTtlMs)),
          "an update",
        );
        if (!Array.isArray(reply)) {
          if (this.opts.waitReplicas > 0) await this.timed(this.waitAfterTurn(q.key), "a WAIT");
          return c.resolveAll();
        }
        this.stats.updateConflicts++;
        current = reply as (Buffer | null)[];
      }
      c.rejectAll(
        new FeatureStoreError(
          Code.Unavailable,
          `the update lost ${MAX_CAS_ROUNDS} compare-and-set rounds in a row: other writers keep changing ` +
            "these features of the entity (contention on one entity); retry later",
        ),
      );
    } catch (err) {
      const e = redisError(err);
      const live = c.live;
      if (e.code === Code.ResourceExhausted && live.length > 1) q.retryAlone(live);
      else c.rejectAll(e);
    }
  }

  /**
   * The current values of `names` from the near-cache (copies: the arena moves), or null when
   * the entity is not cached. A stale copy costs a lost CAS round, never a wrong write.
   */
  private cachedValues(id: Uint8Array, names: readonly Uint8Array[]): (Uint8Array | null)[] | null {
    const h = this.lookup(id, 0, id.length);
    if (h === NOT_CACHED) return null;
    const out: (Uint8Array | null)[] = new Array(names.length).fill(null);
    if (h < 0) return out;
    const arena = this.arena(h);
    const start = this.offset(h);
    const end = start + this.length(h);
    const at = this.at;
    for (let i = 0; i < names.length; i++)
      if (findInRecord(arena, start, end, names[i]!, at)) out[i] = arena.slice(at[0]!, at[1]!);
    return out;
  }

  private readValues(key: Buffer, names: readonly Uint8Array[]): Promise<(Buffer | null)[]> {
    if (names.length === 0) return Promise.resolve([]);
    const args: (string | Buffer)[] = ["HMGET", key];
    for (const n of names) args.push(Buffer.from(n.buffer, n.byteOffset, n.length));
    return this.timed(this.link!.send(key, true, args) as Promise<(Buffer | null)[]>, "a read");
  }

  /** The update script's arguments (layout.ts UPDATE_SCRIPT): the values read, the values computed. */
  private casArgs(
    q: KeyQueue,
    c: CombinedUpdate,
    current: readonly (Uint8Array | null)[],
    ttlMs: number,
    defaultTtlMs: number,
  ): (string | Buffer)[] {
    const args: (string | Buffer)[] = [
      "",
      "",
      "1",
      q.key,
      String(ttlMs),
      String(defaultTtlMs),
      String(this.opts.maxFeaturesPerEntity),
      String(c.names.length),
    ];
    for (let i = 0; i < c.names.length; i++) {
      const old = current[i] ?? null;
      const next = c.next[i]!;
      args.push(
        bytes(c.names[i]!),
        old === null ? EXPECT_ABSENT : EXPECT_VALUE,
        old === null ? EMPTY : bytes(old),
        !c.changed[i] ? NEW_LEAVE : next === null ? NEW_DELETE : NEW_SET,
        !c.changed[i] || next === null ? EMPTY : bytes(next),
      );
    }
    return args;
  }

  dropPrefix(prefix: Uint8Array): PrefixDrop {
    if (this.closed) throw shuttingDown();
    const pattern = prefixPattern(Buffer.concat([this.prefix, prefix]));
    const at = this.prefix.length;
    return new RedisPrefixDrop(
      {
        link: this.link!,
        timed: (p, what) => this.timed(p, what),
        removed: (key) => this.forget(key, at, key.length),
      },
      pattern,
    );
  }

  /**
   * EVALSHA of `s` with `args` (the first two left for the command and the script), routed by
   * `key`; sent again in full after a NOSCRIPT (a restarted or flushed Redis).
   */
  private evalScript(s: Script, key: Buffer, args: (string | Buffer)[]): Promise<unknown> {
    args[0] = "EVALSHA";
    args[1] = s.sha;
    const link = this.link!;
    return link.send(key, false, args).catch((err: unknown) => {
      if (!String((err as Error)?.message).startsWith("NOSCRIPT")) throw err;
      args[0] = "EVAL";
      args[1] = s.source;
      return link.send(key, false, args);
    });
  }

  private beginWrite(id: Uint8Array): Buffer {
    if (this.closed) throw shuttingDown();
    this.forget(id, 0, id.length);
    return entityKey(this.prefix, id);
  }

  /**
   * The write's reply, checked, within the command timeout; with waitReplicas, also the WAIT
   * sent after the turn's writes to the key's master.
   */
  private acknowledged(key: Buffer, reply: Promise<unknown>): Promise<unknown> {
    let ack = reply;
    if (this.opts.waitReplicas > 0) {
      const waited = this.waitAfterTurn(key);
      ack = ack.then((r) => waited.then(() => r));
    }
    return this.timed(ack, "a write");
  }

  /** `p` within the command timeout (else UNAVAILABLE naming `what`), its errors as FeatureStoreErrors. */
  private timed<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = this.opts.commandTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(what, ms)), ms);
    });
    const checked = p.catch((err: unknown) => Promise.reject(redisError(err)));
    return Promise.race([checked, timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * The WAIT that follows this turn's writes to `key`'s master: one per master per turn, sent
   * after the turn with a key of that master (so on the connection that carried its writes);
   * each write waits only for its own master's.
   */
  private waitAfterTurn(key: Buffer): Promise<void> {
    const link = this.link!;
    const master = link.masterOf(key);
    let wait = this.waits.get(master);
    if (wait === undefined) {
      if (this.waits.size === 0) setImmediate(() => this.sendWaits());
      let settle!: (e?: FeatureStoreError) => void;
      const done = new Promise<void>((resolve, reject) => {
        settle = (e) => (e === undefined ? resolve() : reject(e));
      });
      done.catch(() => {});
      wait = { key, done, settle };
      this.waits.set(master, wait);
    }
    return wait.done;
  }

  private sendWaits(): void {
    const waits = this.waits;
    this.waits = new Map();
    const { waitReplicas, waitTimeoutMs } = this.opts;
    for (const { key, settle } of waits.values()) {
      this.link!.sendToMasterOf(key, ["WAIT", String(waitReplicas), String(waitTimeoutMs)]).then(
        (n) => {
          const reached = Number(n);
          if (reached >= waitReplicas) settle();
          else
            settle(
              new FeatureStoreError(
                Code.Unavailable,
                `the write reached ${reached} of the ${waitReplicas} replicas REDIS_WAIT_REPLICAS asks for ` +
                  `within ${waitTimeoutMs} ms; it is not acknowledged (it may still be applied)`,
              ),
            );
        },
        (err: unknown) => settle(redisError(err)),
      );
    }
  }

  sync(): null {
    return null;
  }

  /** Stops taking requests; resolves once the connections are closed (what is in flight is answered first). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    await this.link?.close();
  }
}

/** A Lua script and its SHA1 (EVALSHA). */
interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") };
}

const EMPTY = Buffer.alloc(0);

/** A Buffer over the same bytes (node-redis sends Buffers as they are). */
function bytes(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

function shuttingDown(): FeatureStoreError {
  return new FeatureStoreError(Code.Unavailable, "the server is shutting down");
}

function newBatch(): Batch {
  let settle!: (err?: FeatureStoreError) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (err) => (err === undefined ? resolve() : reject(err));
  });
  // A batch whose waiters all failed earlier must not become an unhandled rejection.
  done.catch(() => {});
  return { loads: [], done, settle };
}

/** The id bytes key[start,end) as a string, one char per byte (a map key, not text). */
function latin1(key: Uint8Array, start: number, end: number): string {
  return Buffer.from(key.buffer, key.byteOffset + start, end - start).toString("latin1");
}

function timeoutError(what: string, ms: number): FeatureStoreError {
  return new FeatureStoreError(
    Code.Unavailable,
    `Redis did not answer ${what} within ${ms} ms (REDIS_COMMAND_TIMEOUT_MS)`,
  );
}

/** A Redis or connection error as the client sees it: the feature limit, or UNAVAILABLE. */
function redisError(err: unknown): FeatureStoreError {
  if (err instanceof FeatureStoreError) return err;
  const message = String((err as Error)?.message ?? err);
  const limit = /^LIMIT (\d+)/.exec(message);
  if (limit !== null)
    return new FeatureStoreError(
      Code.ResourceExhausted,
      `the entity would hold ${limit[1]} features; the limit is MAX_FEATURES_PER_ENTITY`,
    );
  return new FeatureStoreError(Code.Unavailable, `Redis: ${message}`, { cause: err });
}
