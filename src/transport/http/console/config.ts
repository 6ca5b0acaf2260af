/**
 * The configuration in effect as the console shows it (GET /console/config.json): every Config
 * field under the environment variable that sets it, its value, and whether that is the
 * default. Nothing secret leaves: a URL's password is replaced (REDIS_URL), and a field whose
 * name says it holds a secret (password, secret, token; not a *File path) is replaced whole, so
 * that a secret option added later is hidden without this file knowing it. The tokens file is
 * shown as its path only; its contents are never read here.
 */
import { type Config, DEFAULTS } from "../../../config/index.ts";

/** One row of the console's config table. */
export interface ConfigEntry {
  /** The environment variable, e.g. "REDIS_URL". */
  readonly name: string;
  /** The value in effect, redacted where it holds a secret. */
  readonly value: string | number | boolean | readonly string[] | null;
  /** True when the value is the built-in default (not set, or set to the default). */
  readonly isDefault: boolean;
}

/** What GET /console/config.json answers. */
export interface PublicConfig {
  /** The Bun version the server runs on. */
  readonly bun: string;
  readonly config: readonly ConfigEntry[];
}

/** What replaces a redacted value or password. */
export const REDACTED = "***";

/** Field names that hold a secret: replaced whole. A path to a file (`authTokensFile`) is not one. */
const SECRET_FIELD = /password|secret|token(?!s?File$)|apiKey|credential/i;
/** `scheme://user:password@` in any string value: the password goes, the user stays. */
const URL_PASSWORD = /(\/\/[^:@/\s]*):[^@/\s]*@/g;

/** The environment variable of a Config field: camelCase to UPPER_SNAKE (`redisUrl` → `REDIS_URL`). */
export function envName(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

/** The config with secrets redacted, in the order of the Config interface. */
export function publicConfig(config: Config): PublicConfig {
  const defaults = DEFAULTS as unknown as Record<string, unknown>;
  const entries: ConfigEntry[] = [];
  for (const [field, raw] of Object.entries(config)) {
    const isDefault = sameValue(raw, defaults[field]);
    entries.push({ name: envName(field), value: redact(field, raw), isDefault });
  }
  return { bun: Bun.version, config: entries };
}

function redact(field: string, v: unknown): ConfigEntry["value"] {
  if (SECRET_FIELD.test(field)) return v === null || v === "" ? v : REDACTED;
  if (typeof v === "string") return redactUrl(v);
  if (Array.isArray(v)) return v.map((s) => redactUrl(String(s)));
  if (typeof v === "number" || typeof v === "boolean" || v === null) return v;
  return REDACTED; // no Config field is an object today; show none that might be
}

function redactUrl(s: string): string {
  return s.replace(URL_PASSWORD, `$1:${REDACTED}@`);
}

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}
