import { createPublicKey, type KeyObject } from "node:crypto";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { verifyTokenBoundHsm } from "../../src/hsm/verify-bound.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { verifyToken } from "../../src/token/token.js";
import { verifyTokenBound } from "../../src/token/verify-bound.js";
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
  summary:
    "verify a token offline — against its epoch's quote and the AK, or against a bare issuer key; exit 0 only if valid",
  usage:
    "(--in F | TOKEN_B64URL) --audience A (--epoch-record F (--ak-pub AK.pem | --hsm-pub KEY.pem --hsm-signature F) | --issuer-key PEM) [--now SECONDS] [--json]\n" +
    "  --hsm-pub + --hsm-signature: an HSM-rooted epoch (docs/hsm.md): the HSM signature over the binding\n" +
    "    names the issuer key (no TPM quote is checked; not with --ak-pub)\n" +
    "  --epoch-record + --ak-pub: the full chain — the quote in the epoch record verifies with the AK over the\n" +
    "    epoch binding, the binding names the issuer key, the token is signed by it and names that epoch\n" +
    "    (get the record with `execgate evidence --epoch <token epoch> --record-out F`, or from the lineage)\n" +
    "  --issuer-key: only the token's own signature and claims, against a key you already trust\n" +
    "  --now: the time to judge nbf/exp at, seconds since the epoch (default: this host's clock)\n" +
    '--json: { valid, boundTo: "tpm-quote" | "hsm-signature" | "none", boundToQuote, claims }\n' +
    "Exit: 0 valid, 1 invalid (the reason on stderr, or in --json), 2 usage, 3 unreadable file.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      {
        in: { type: "string" },
        "issuer-key": { type: "string" },
        "epoch-record": { type: "string" },
        "ak-pub": { type: "string" },
        "hsm-pub": { type: "string" },
        "hsm-signature": { type: "string" },
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
    const bound =
      str(p, "epoch-record") !== undefined ||
      str(p, "ak-pub") !== undefined ||
      str(p, "hsm-pub") !== undefined;
    if (bound === (str(p, "issuer-key") !== undefined)) {
      throw usageError("give either --epoch-record with --ak-pub, or --issuer-key");
    }
    // Two roots, two different checks: one of them would be silently ignored.
    if (str(p, "ak-pub") !== undefined && str(p, "hsm-pub") !== undefined)
      throw usageError(
        "--ak-pub (a TPM-quoted epoch) and --hsm-pub (an HSM-signed epoch) are two different roots; give one",
      );
    if (str(p, "hsm-signature") !== undefined && str(p, "hsm-pub") === undefined)
      throw usageError("--hsm-signature goes with --hsm-pub");
    const hsm = str(p, "hsm-pub") !== undefined;
    /** What the token was verified down to. */
    const boundTo: "tpm-quote" | "hsm-signature" | "none" = !bound
      ? "none"
      : hsm
        ? "hsm-signature"
        : "tpm-quote";
    const token = await tokenInput(p);
    let r: { ok: true; claims: TokenClaims } | { ok: false; reason: string; detail: string };
    if (bound) {
      const record = await readInput(requireStr(p, "epoch-record"), "epoch record");
      if (hsm) {
        const hsmPublicKey = publicKeyFrom(
          await readInput(requireStr(p, "hsm-pub"), "HSM public key"),
          "--hsm-pub",
        );
        const hsmSignature = await readInput(requireStr(p, "hsm-signature"), "HSM signature");
        r = verifyTokenBoundHsm({
          token,
          epoch: { quote: record, hsmSignature },
          hsmPublicKey,
          audience,
          now,
        });
      } else {
        const akPublic = publicKeyFrom(await readInput(requireStr(p, "ak-pub"), "AK public key"), "--ak-pub");
        r = verifyTokenBound({ token, epochRecord: record, akPublic, audience, now });
      }
    } else {
      const key = publicKeyFrom(await readInput(requireStr(p, "issuer-key"), "issuer key"), "--issuer-key");
      if (key.asymmetricKeyType !== "ed25519")
        throw new ExecgateError("malformed", `--issuer-key is ${key.asymmetricKeyType}, not Ed25519`);
      r = verifyToken(token, { issuerPublicKey: key, audience, now });
    }
    if (!r.ok) {
      if (flag(p, "json")) printJson({ valid: false, reason: r.reason, detail: r.detail });
      else process.stderr.write(`token INVALID: ${r.reason}: ${r.detail}\n`);
      return EXIT.failed;
    }
    const claims = claimsToJson(r.claims);
    if (flag(p, "json")) printJson({ valid: true, boundToQuote: boundTo === "tpm-quote", boundTo, claims });
    else {
      const how = {
        "tpm-quote": " (bound to a verified TPM quote)",
        "hsm-signature": " (bound to an HSM-signed epoch)",
        none: "",
      }[boundTo];
      process.stdout.write(
        `token valid${how}: ${claims.cti}, scope ${r.claims.scope}, action ${claims.action}\n` +
          `  aud ${r.claims.aud}, nbf ${r.claims.nbf}, exp ${r.claims.exp}, boot ${r.claims.bootId}\n`,
      );
    }
    return EXIT.ok;
  },
};

function publicKeyFrom(bytes: Uint8Array, what: string): KeyObject {
  try {
    return createPublicKey(Buffer.from(bytes));
  } catch (e) {
    throw new ExecgateError("malformed", `${what} is not a PEM/DER public key: ${(e as Error).message}`);
  }
}
