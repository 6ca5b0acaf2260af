/**
 * Tokens with scopes, shared by every transport (AUTH_TOKENS_FILE).
 *
 * The file holds one entry per line, and no secret: only each token's SHA-256.
 *
 * ```
 * # name       scopes            sha256 of the token
 * ranker       read              sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 * batch-load   read,write        sha256:...
 * ops          read,write,admin  sha256:...
 * ```
 *
 * `read` allows GetFeatures and BatchGet (and Ping); `write` also SetFeatures, BatchSet,
 * DeleteFeatures and every write operation added later; `admin` also what operators do. A
 * presented token is hashed and looked up by its digest, then compared with the entry's digest
 * in constant time; the principal of a token string is cached (bounded), so HTTP pays one Map
 * lookup per request and TCP one check per connection plus one bit test per request.
 *
 * The file is read again on SIGHUP and when it changes (checked every RELOAD_CHECK_MS), and the
 * reload is logged. A principal whose token left the file loses its scopes at once, so a
 * revoked token stops working on connections that authenticated before, too. A file that fails
 * to parse at start stops the server (exit 2, naming the line); on a reload it is refused and
 * the previous tokens stay in force (logged).
 */
import { timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { Method } from "../codec/frame.ts";
import { Code, FeatureStoreError } from "../codec/status.ts";
import { LimitedLog, type Logger } from "../log/index.ts";

/** Scope bits. */
export const Scope = { Read: 1, Write: 2, Admin: 4 } as const;
export const SCOPE_NAMES = ["read", "write", "admin"] as const;
/** A scope implies the ones before it: write can read, admin can write. */
const IMPLIED = [Scope.Read, Scope.Read | Scope.Write, Scope.Read | Scope.Write | Scope.Admin];

/** How often the file's modification time and size are checked, ms. */
export const RELOAD_CHECK_MS = 250;
/** Token strings whose principal is remembered (a bound on what a flood of bad tokens can pin). */
const CACHE_MAX = 4096;

/** Why an authentication failed, as counted in featurestore_auth_failures_total{reason}. */
export const AuthFailure = { Missing: 0, Malformed: 1, Unknown: 2, Scope: 3, Tls: 4 } as const;
export const AUTH_FAILURE_NAMES = ["missing", "malformed", "unknown", "scope", "tls"] as const;

/** Who a token says the caller is; `scopes` becomes 0 when the token is revoked. */
export class Principal {
  constructor(
    readonly name: string,
    public scopes: number,
  ) {}
}

interface Entry {
  principal: Principal;
  digest: Buffer;
}

/** The scope bit a FeatureStore method needs. */
export function scopeOf(method: number): number {
  switch (method) {
    case Method.Ping:
    case Method.GetFeatures:
    case Method.BatchGet:
    case Method.GetFeatureSet:
      return Scope.Read;
    case Method.SetFeatures:
    case Method.BatchSet:
    case Method.DeleteFeatures:
    case Method.UpdateFeatures:
      return Scope.Write;
    default:
      return Scope.Admin;
  }
}

/** A tokens file the server cannot start with: the message names the file and the line. */
export class TokensFileError extends Error {
  override readonly name = "TokensFileError";
}

/** Parses a tokens file; throws TokensFileError naming the first bad line. */
export function parseTokensFile(text: string, path: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  const names = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, "").trim();
    if (line === "") continue;
    const at = `${path} line ${i + 1}`;
    const parts = line.split(/\s+/);
    if (parts.length !== 3)
      throw new TokensFileError(`${at}: expected "<name> <scopes> sha256:<hex>", got ${parts.length} fields`);
    const [name, scopeList, hash] = parts as [string, string, string];
    if (names.has(name)) throw new TokensFileError(`${at}: the name ${name} is used twice`);
    let scopes = 0;
    for (const s of scopeList.split(",")) {
      const k = (SCOPE_NAMES as readonly string[]).indexOf(s);
      if (k < 0) throw new TokensFileError(`${at}: unknown scope "${s}" (use read, write, admin)`);
      scopes |= IMPLIED[k]!;
    }
    const m = /^sha256:([0-9a-f]{64})$/.exec(hash);
    if (m === null) throw new TokensFileError(`${at}: the hash must be sha256: and 64 lowercase hex digits`);
    if (entries.has(m[1]!)) throw new TokensFileError(`${at}: this token hash is listed twice`);
    names.add(name);
    entries.set(m[1]!, { principal: new Principal(name, scopes), digest: Buffer.from(m[1]!, "hex") });
  }
  return entries;
}

/** SHA-256 of a token, hex: what a tokens file line holds. */
export function tokenHash(token: string): string {
  return new Bun.CryptoHasher("sha256").update(token).digest("hex");
}

/** A fresh random token (32 bytes, base64url) and its tokens-file line. */
export function createToken(name: string, scopes: readonly string[]): { token: string; line: string } {
  const token = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  const line = `${name} ${scopes.join(",")} sha256:${tokenHash(token)}`;
  parseTokensFile(line, "the new line"); // validates name and scopes
  return { token, line };
}

export interface AuthOptions {
  /** AUTH_TOKENS_FILE; null = no authentication (the server runs open and says so at start). */
  tokensFile: string | null;
  logger: Logger;
}

/**
 * Authentication and authorisation for every transport. Disabled (every call allowed) when no
 * tokens file is configured.
 */
export class Auth {
  readonly enabled: boolean;
  /** Failures by AuthFailure reason, for /metrics. */
  readonly failures = new Float64Array(AUTH_FAILURE_NAMES.length);
  private entries = new Map<string, Entry>();
  private readonly cache = new Map<string, Principal | null>();
  private readonly path: string | null;
  private readonly logger: Logger;
  private readonly logFailure: LimitedLog;
  private stamp = "";
  private timer: ReturnType<typeof setInterval> | null = null;

  /** Loads the file (throws TokensFileError) and starts watching it. */
  constructor(opts: AuthOptions) {
    this.path = opts.tokensFile;
    this.enabled = this.path !== null;
    this.logger = opts.logger;
    this.logFailure = new LimitedLog(opts.logger, "warn", "authentication failed");
    if (this.path === null) return;
    this.stamp = this.fileStamp();
    this.entries = parseTokensFile(this.read(), this.path);
    this.logger.info("tokens loaded", { file: this.path, tokens: this.entries.size });
    this.timer = setInterval(() => this.reloadIfChanged(), RELOAD_CHECK_MS);
    this.timer.unref();
  }

  /** Reads the file again (SIGHUP); a file that does not parse is refused, the old tokens kept. */
  reload(): void {
    if (this.path === null) return;
    this.stamp = this.fileStamp();
    let next: Map<string, Entry>;
    try {
      next = parseTokensFile(this.read(), this.path);
    } catch (err) {
      this.logger.error("tokens file refused; the previous tokens stay in force", {
        err: (err as Error).message,
      });
      return;
    }
    let revoked = 0;
    for (const [hash, old] of this.entries) {
      const now = next.get(hash);
      if (now === undefined) {
        old.principal.scopes = 0;
        revoked++;
      } else {
        // Keep the principal object: connections that authenticated hold it.
        old.principal.scopes = now.principal.scopes;
        now.principal = old.principal;
      }
    }
    this.entries = next;
    this.cache.clear();
    this.logger.info("tokens reloaded", { file: this.path, tokens: next.size, revoked });
  }

  private reloadIfChanged(): void {
    if (this.fileStamp() !== this.stamp) this.reload();
  }

  private fileStamp(): string {
    try {
      const st = statSync(this.path!);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return "missing";
    }
  }

  private read(): string {
    try {
      return readFileSync(this.path!, "utf8");
    } catch (err) {
      throw new TokensFileError(`AUTH_TOKENS_FILE ${this.path} cannot be read: ${(err as Error).message}`);
    }
  }

  /** The principal of a token, or null when no entry has its hash (cached per token string). */
  lookup(token: string): Principal | null {
    const cached = this.cache.get(token);
    if (cached !== undefined) return cached;
    const digest = new Bun.CryptoHasher("sha256").update(token).digest();
    const entry = this.entries.get(digest.toString("hex"));
    const found = entry !== undefined && timingSafeEqual(entry.digest, digest) ? entry.principal : null;
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(token, found);
    return found;
  }

  /**
   * The principal of an `authorization` header (`Bearer <token>`); null when authentication is
   * off. Throws UNAUTHENTICATED for a missing, malformed or unknown token.
   */
  fromHeader(value: string | null | undefined, transport: string): Principal | null {
    if (!this.enabled) return null;
    if (value === null || value === undefined || value === "")
      throw this.fail(AuthFailure.Missing, transport, "authorization: Bearer <token> is required");
    if (!value.startsWith("Bearer ") || value.length === 7)
      throw this.fail(AuthFailure.Malformed, transport, "the authorization header must be Bearer <token>");
    return this.fromToken(value.slice(7).trim(), transport);
  }

  /** The principal of a bare token (TCP's authentication frame); throws UNAUTHENTICATED. */
  fromToken(token: string, transport: string): Principal {
    const p = token === "" ? null : this.lookup(token);
    if (p === null || p.scopes === 0)
      throw this.fail(AuthFailure.Unknown, transport, "unknown or revoked token");
    return p;
  }

  /**
   * Throws unless `p` may call `method`: PERMISSION_DENIED for a known token without the scope,
   * UNAUTHENTICATED for one revoked since. A no-op when authentication is off.
   */
  authorize(p: Principal | null, method: number, transport: string): void {
    if (!this.enabled) return;
    const need = scopeOf(method);
    if (p === null) throw this.fail(AuthFailure.Missing, transport, "authentication is required");
    if ((p.scopes & need) !== 0) return;
    if (p.scopes === 0) throw this.fail(AuthFailure.Unknown, transport, "the token was revoked");
    throw this.fail(
      AuthFailure.Scope,
      transport,
      `token ${p.name} lacks the ${SCOPE_NAMES[31 - Math.clz32(need)]} scope`,
      Code.PermissionDenied,
      p.name,
    );
  }

  /** Counts and logs (rate-limited, never the token) a refused call; returns its error. */
  fail(
    reason: number,
    transport: string,
    message: string,
    code: Code = Code.Unauthenticated,
    name?: string,
  ): FeatureStoreError {
    this.failures[reason]!++;
    // The message says what was wrong (never the token itself); the name is the token's name.
    this.logFailure.log({ reason: AUTH_FAILURE_NAMES[reason], transport, token: name, message });
    return new FeatureStoreError(code, message);
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }
}
