import { createPublicKey, type KeyObject } from "node:crypto";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { verifyToken } from "../../src/token/token.js";
import { flag, parseCommandArgs, printJson, readInput, requireStr, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import { tokenInput } from "./token-common.js";

/** The claims as printed by --json (bytes as hex). */
export function claimsToJson(c: TokenClaims): Record<string, unknown> {
  return {
    iss: c.iss,
    sub: c.sub,
    aud: c.aud,
    exp: c.exp,
    nbf: c.nbf,
    iat: c.iat,
    cti: toHex(c.cti),
    ...(c.nonce !== undefined ? { nonce: toHex(c.nonce) } : {}),
    ueid: toHex(c.ueid),
    scope: c.scope,
    action: toHex(c.action),
    peer: {
      uid: c.peer.uid,
      gid: c.peer.gid,
      pid: c.peer.pid,
      exe: toHex(c.peer.exe),
      ...(c.peer.unit !== undefined ? { unit: c.peer.unit } : {}),
    },
    epoch: toHex(c.epoch),
    pcrDigest: toHex(c.pcrDigest),
    policyDigest: toHex(c.policyDigest),
    bootId: c.bootId,
    lineage: { index: c.lineage[0], leafHash: toHex(c.lineage[1]) },
  };
}

export const command: Command = {
  summary: "verify a token offline against an issuer public key; exit 0 only if valid",
  usage:
    "(--in F | TOKEN_B64URL) --issuer-key PEM --audience A [--now SECONDS] [--json]\n" +
    "  --issuer-key: the daemon's Ed25519 issuer public key (PEM file)\n" +
    "  --now: the time to judge nbf/exp at, seconds since the epoch (default: this host's clock)\n" +
    "  Checks the COSE_Sign1 structure (alg EdDSA), the signature, audience, nbf and exp.\n" +
    "  It does NOT yet check that the issuer key is the one bound into an epoch quote by the TPM;\n" +
    "  that binding (token → issuer key → quote → AK → EK) comes with the daemon's evidence export.\n" +
    "Exit: 0 valid, 1 invalid (the denial reason on stderr, or in --json), 2 usage, 3 unreadable file.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      {
        in: { type: "string" },
        "issuer-key": { type: "string" },
        audience: { type: "string" },
        now: { type: "string" },
        json: { type: "boolean" },
      },
      true,
    );
    const audience = requireStr(p, "audience");
    const nowText = str(p, "now");
    if (nowText !== undefined && !/^\d{1,15}$/.test(nowText))
      throw usageError("--now must be whole seconds since the epoch");
    const now = nowText === undefined ? Math.floor(Date.now() / 1000) : Number(nowText);
    const keyPem = await readInput(requireStr(p, "issuer-key"), "issuer key");
    const token = await tokenInput(p);
    let key: KeyObject;
    try {
      key = createPublicKey(Buffer.from(keyPem));
    } catch (e) {
      throw new ExecgateError(
        "malformed",
        `--issuer-key is not a PEM/DER public key: ${(e as Error).message}`,
      );
    }
    if (key.asymmetricKeyType !== "ed25519")
      throw new ExecgateError("malformed", `--issuer-key is ${key.asymmetricKeyType}, not Ed25519`);

    const r = verifyToken(token, { issuerPublicKey: key, audience, now });
    if (!r.ok) {
      if (flag(p, "json")) printJson({ valid: false, reason: r.reason, detail: r.detail });
      else process.stderr.write(`token INVALID: ${r.reason}: ${r.detail}\n`);
      return EXIT.failed;
    }
    const claims = claimsToJson(r.claims);
    if (flag(p, "json")) printJson({ valid: true, claims });
    else {
      process.stdout.write(
        `token valid: ${claims.cti}, scope ${r.claims.scope}, action ${claims.action}\n` +
          `  aud ${r.claims.aud}, nbf ${r.claims.nbf}, exp ${r.claims.exp}, boot ${r.claims.bootId}\n`,
      );
    }
    return EXIT.ok;
  },
};
