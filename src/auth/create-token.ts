/**
 * Creates a token: prints the line for AUTH_TOKENS_FILE (which holds only the token's SHA-256)
 * and, on stderr, the token itself, which is shown once and never stored.
 *
 *   bun src/auth/create-token.ts <name> <scopes>      e.g.  ranker read   |   loader read,write
 *   npm run token:create -- ranker read >> tokens     then SIGHUP the server (or let it notice)
 */
import { createToken, TokensFileError } from "./tokens.ts";

const [name, scopes] = process.argv.slice(2);
if (name === undefined || scopes === undefined) {
  process.stderr.write("usage: create-token <name> <scopes: read|write|admin, comma-separated>\n");
  process.exit(2);
}
try {
  const { token, line } = createToken(name, scopes.split(","));
  process.stdout.write(`${line}\n`);
  process.stderr.write(`token for ${name} (shown once, keep it secret): ${token}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof TokensFileError ? err.message : String(err)}\n`);
  process.exit(2);
}
