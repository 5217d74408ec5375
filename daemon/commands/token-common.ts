import { defaultSocketPath, ExecgateClient, ExecgateDenied } from "../../src/client/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { MAX_ARGV_BYTES, MAX_ARGV_ITEMS, MAX_TOKEN_BYTES } from "../../src/wire/request.js";
import { type OptionSpec, type Parsed, readInput, str } from "../args.js";
import { EXIT, usageError } from "../exit.js";

/* Shared by the executor commands: run, token request|redeem|verify, status. */

export const SOCKET_OPTION: OptionSpec = { socket: { type: "string" } };

export const SOCKET_HELP =
  "  --socket P: the daemon's socket (default: $EXECGATE_SOCKET, else /run/execgate/execgate.sock)";

/** --socket wins over EXECGATE_SOCKET, which wins over the system path. */
export function connect(p: Parsed): Promise<ExecgateClient> {
  return ExecgateClient.connect(str(p, "socket") ?? defaultSocketPath());
}

/**
 * Runs `fn`; a denial prints `execgate: denied: <reason>` on stderr and becomes exit 1. With
 * `json`, stdout also gets `{ "denied": true, "reason": … }`, so a script reading stdout sees it.
 */
export async function orDenied(fn: () => Promise<number>, json = false): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof ExecgateDenied)) throw e;
    process.stderr.write(`execgate: denied: ${e.reason}\n`);
    if (json) process.stdout.write(`${JSON.stringify({ denied: true, reason: e.reason })}\n`);
    return EXIT.failed;
  }
}

/** --nonce HEX: 8..64 bytes (the eat_nonce bounds), or undefined when absent. */
export function nonceArg(p: Parsed): Uint8Array | undefined {
  const v = str(p, "nonce");
  if (v === undefined) return undefined;
  if (!/^(?:[0-9a-fA-F]{2}){8,64}$/.test(v)) throw usageError("--nonce must be 8..64 bytes of hex");
  return new Uint8Array(Buffer.from(v, "hex"));
}

/** The daemon's argv bounds (src/wire/request.ts), checked here so an overlong argv is a usage error. */
export function checkArgv(argv: readonly string[]): readonly string[] {
  let total = 0;
  for (const a of argv) total += a.length;
  if (argv.length > MAX_ARGV_ITEMS || total > MAX_ARGV_BYTES)
    throw usageError(`the command may have at most ${MAX_ARGV_ITEMS} words and ${MAX_ARGV_BYTES} characters`);
  return argv;
}

const SCOPE_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function scopeArg(p: Parsed): string {
  const v = str(p, "scope");
  if (v === undefined) throw usageError("--scope is required (the scope to ask the policy for)");
  if (!SCOPE_RE.test(v)) throw usageError("--scope must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}");
  return v;
}

export function toBase64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

function fromBase64url(s: string, what: string): Uint8Array {
  const t = s.trim();
  if (!BASE64URL_RE.test(t)) throw usageError(`${what} is not base64url`);
  return new Uint8Array(Buffer.from(t, "base64url"));
}

/** The first byte of a tagged COSE_Sign1 (tag 18): 0xd2. Base64url text never starts with it. */
const COSE_SIGN1_TAG_BYTE = 0xd2;

/**
 * The token from `--in F` (raw bytes as `token request --out` writes them, or base64url text) or
 * from the one positional argument (base64url). A file is text only if it is all base64url;
 * a real token (tag 18) never is, as its first byte is 0xd2.
 */
export async function tokenInput(p: Parsed): Promise<Uint8Array> {
  const file = str(p, "in");
  if ((file === undefined) === (p.positionals.length === 0) || p.positionals.length > 1)
    throw usageError("give the token as --in F or as one base64url argument");
  let token: Uint8Array;
  if (file !== undefined) {
    const bytes = await readInput(file, "token");
    const text = Buffer.from(bytes).toString("latin1").trim();
    token = bytes[0] !== COSE_SIGN1_TAG_BYTE && BASE64URL_RE.test(text) ? fromBase64url(text, file) : bytes;
  } else {
    token = fromBase64url(p.positionals[0]!, "the token argument");
  }
  if (token.length === 0 || token.length > MAX_TOKEN_BYTES)
    throw new ExecgateError("malformed", `token of ${token.length} bytes outside 1..${MAX_TOKEN_BYTES}`);
  return token;
}
