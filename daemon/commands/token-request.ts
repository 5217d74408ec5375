import { decode } from "../../src/cbor/index.js";
import type { ExecgateClient } from "../../src/client/index.js";
import { toHex } from "../../src/core/hex.js";
import { claimsFromCbor } from "../../src/token/claims.js";
import { decodeToken } from "../../src/token/token.js";
import { flag, hexArg, parseCommandArgs, printJson, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import {
  checkArgv,
  connect,
  nonceArg,
  orDenied,
  SOCKET_HELP,
  SOCKET_OPTION,
  scopeArg,
  toBase64url,
} from "./token-common.js";

/**
 * The epoch claim of a token just received, in hex (decoded, not verified: token verify does
 * that); undefined for bytes that do not decode as a token.
 */
function tokenEpoch(token: Uint8Array): string | undefined {
  try {
    const msg = decodeToken(token);
    return toHex(claimsFromCbor(decode(msg.payload, { maxDepth: 4, maxItems: 128, maxLength: 4096 })).epoch);
  } catch {
    return undefined;
  }
}

function argvJson(s: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw usageError("--argv-json is not JSON");
  }
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string"))
    throw usageError("--argv-json must be a non-empty JSON array of strings");
  return [...checkArgv(v as string[])];
}

export const command: Command = {
  summary: "ask the daemon for an execution token (base64url on stdout, or raw bytes to --out)",
  usage:
    '--scope S (--argv-json \'["cmd","arg"]\' | --action HEX) [--nonce HEX] [--audience A] [--out F] [--json] [--socket P]\n' +
    "  --argv-json: the daemon computes the action digest from argv (as execgate run does)\n" +
    "  --action: a SHA-256 action digest you computed (32 bytes of hex)\n" +
    `${SOCKET_HELP}\n` +
    "Exit: 0 issued, 1 denied (execgate: denied: <reason> on stderr), 2 usage, 3 daemon unreachable.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      scope: { type: "string" },
      "argv-json": { type: "string" },
      action: { type: "string" },
      nonce: { type: "string" },
      audience: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
      ...SOCKET_OPTION,
    });
    const scope = scopeArg(p);
    const argvText = str(p, "argv-json");
    if ((argvText === undefined) === (str(p, "action") === undefined))
      throw usageError("give exactly one of --argv-json and --action");
    const action = argvText === undefined ? hexArg(p, "action") : undefined;
    if (action !== undefined && action.length !== 32) throw usageError("--action must be 32 bytes of hex");
    const nonce = nonceArg(p);
    const audience = str(p, "audience");
    const out = str(p, "out");
    let client: ExecgateClient | undefined;
    try {
      client = await connect(p);
      const c = client;
      return await orDenied(
        async () => {
          const common = { scope, ...(nonce ? { nonce } : {}), ...(audience ? { audience } : {}) };
          const t = await c.requestToken(
            argvText !== undefined ? { ...common, argv: argvJson(argvText) } : { ...common, action: action! },
          );
          if (out !== undefined) await writeOutput(out, t.token, "token");
          const tokenId = toHex(t.tokenId);
          if (flag(p, "json")) {
            const epoch = tokenEpoch(t.token);
            printJson({
              ...(out === undefined ? { token: toBase64url(t.token) } : { out }),
              tokenId,
              expiresAt: t.expiresAt,
              // The epoch the token names (unverified here): what `execgate evidence --epoch` takes.
              ...(epoch === undefined ? {} : { epoch }),
            });
          } else if (out === undefined) {
            process.stdout.write(`${toBase64url(t.token)}\n`);
          } else {
            process.stderr.write(`token ${tokenId} written to ${out}, expires at ${t.expiresAt}\n`);
          }
          return EXIT.ok;
        },
        flag(p, "json"),
      );
    } finally {
      await client?.close();
    }
  },
};
