import type { KeyObject } from "node:crypto";
import type { EpochRecord } from "../attest/record.js";
import type { DenialReason } from "../core/denial.js";
import { bytesEqual, toHex } from "../core/hex.js";
import type { TokenClaims } from "../token/claims.js";
import { COSE_ALG, ed25519PublicKey } from "../token/cose.js";
import { verifyTokenWith } from "../token/signer.js";
import { verifyHsmEpoch } from "./epoch.js";
import { algorithmOf } from "./keys.js";

/**
 * A token verified all the way to the HSM, offline (pure) — the HSM counterpart of
 * src/token/verify-bound.ts: the epoch's HSM signature verifies over its binding with the HSM
 * key; the token is signed by the issuer key that binding names (token_signer = "memory"), or
 * by the HSM key itself (token_signer = "hsm"); it names that epoch and its claims hold.
 * Chain: token → issuer key → epoch binding → HSM signature → HSM key (→ enrollment record).
 */
export interface HsmBoundTokenInput {
  readonly token: Uint8Array;
  /** The epoch the token names: its record and HSM signature (a lineage epoch entry body). */
  readonly epoch: { readonly quote: Uint8Array; readonly hsmSignature?: Uint8Array };
  readonly hsmPublicKey: KeyObject;
  readonly audience: string;
  readonly now: number;
  readonly skew?: number;
}

export type HsmBoundTokenVerification =
  | {
      readonly ok: true;
      readonly claims: TokenClaims;
      readonly record: EpochRecord;
      readonly signer: "issuer" | "hsm";
    }
  | { readonly ok: false; readonly reason: DenialReason; readonly detail: string };

export function verifyTokenBoundHsm(input: HsmBoundTokenInput): HsmBoundTokenVerification {
  const e = verifyHsmEpoch(input.epoch, input.hsmPublicKey);
  if (!e.ok) return { ok: false, reason: "quote_invalid", detail: `${e.check}: ${e.detail}` };
  if (!e.verified)
    return { ok: false, reason: "quote_invalid", detail: "the epoch was not verified by the daemon" };
  const opts = {
    audience: input.audience,
    now: input.now,
    ...(input.skew !== undefined ? { skew: input.skew } : {}),
  };
  // Which key signed it follows from the protected alg: ES256 can only be the (P-256) HSM key.
  const hsmAlg = algorithmOf(input.hsmPublicKey) === "ed25519" ? COSE_ALG.EdDSA : COSE_ALG.ES256;
  const issuer = ed25519PublicKey(e.binding.issuer);
  let signer: "issuer" | "hsm" = "issuer";
  let t = verifyTokenWith(input.token, COSE_ALG.EdDSA, { ...opts, issuerPublicKey: issuer });
  if (
    !t.ok &&
    t.reason !== "token_expired" &&
    t.reason !== "token_wrong_audience" &&
    t.reason !== "token_not_yet_valid"
  ) {
    const h = verifyTokenWith(input.token, hsmAlg, { ...opts, issuerPublicKey: input.hsmPublicKey });
    if (h.ok || (h.reason !== "token_malformed" && h.reason !== "token_signature_invalid")) {
      t = h;
      signer = "hsm";
    }
  }
  if (!t.ok) return t;
  if (!bytesEqual(t.claims.epoch, e.hash)) {
    return {
      ok: false,
      reason: "token_signature_invalid",
      detail: `the token names epoch ${toHex(t.claims.epoch)}, this record is epoch ${toHex(e.hash)} (fetch the token's with execgate evidence --epoch ${toHex(t.claims.epoch)})`,
    };
  }
  return { ok: true, claims: t.claims, record: e.record, signer };
}
