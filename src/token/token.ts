import type { KeyObject } from "node:crypto";
import { decode, encode } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { claimsFromCbor, claimsToCbor, type TokenClaims } from "./claims.js";
import { COSE_ALG, type CoseSign1, decodeSign1, isLowS, signSign1, verifySign1 } from "./cose.js";

/** Execution tokens: COSE_Sign1, EdDSA (Ed25519) by the daemon's in-memory issuer key. */
export function issueToken(claims: TokenClaims, issuerKey: KeyObject): Uint8Array {
  return signSign1(encode(claimsToCbor(claims)), issuerKey, COSE_ALG.EdDSA);
}

/**
 * A token's COSE_Sign1, held to one encoding of what was signed: tagged, the unprotected header
 * empty (docs/protocol.md) and an ES256 signature low-S. Anything a holder could add or flip
 * without the key would otherwise redeem as other bytes than were issued, and the token_issued
 * digest the auditor looks up would not match.
 */
export function decodeToken(bytes: Uint8Array): CoseSign1 {
  const msg = decodeSign1(bytes, { requireTag: true });
  if (msg.unprotectedHeader.size !== 0)
    throw new ExecgateError("malformed", "token: the unprotected header must be empty");
  if (!isLowS(msg.alg, msg.signature))
    throw new ExecgateError("malformed", "token: ES256 signature with a high s");
  return msg;
}

export interface VerifyTokenOptions {
  readonly issuerPublicKey: KeyObject;
  readonly audience: string;
  /** Seconds since the epoch (the caller's clock; nothing here reads one). */
  readonly now: number;
  /** Tolerated clock difference for nbf/exp, seconds (default 0: issuer and verifier share a host). */
  readonly skew?: number;
  /** The one COSE algorithm accepted (default EdDSA, the in-memory issuer key; ES256 for an HSM P-256 key). */
  readonly alg?: number;
}

export type TokenVerification =
  | { readonly ok: true; readonly claims: TokenClaims }
  | { readonly ok: false; readonly reason: DenialReason; readonly detail: string };

/**
 * Verifies in a fixed order: structure (COSE_Sign1, exactly the expected alg), signature, then claims —
 * audience, not-before, expiry. Never throws: every failure is a denial reason.
 */
export function verifyToken(bytes: Uint8Array, opts: VerifyTokenOptions): TokenVerification {
  if (bytes.length === 0) return { ok: false, reason: "no_token", detail: "empty token" };
  let msg: CoseSign1;
  try {
    msg = decodeToken(bytes);
  } catch (e) {
    return { ok: false, reason: "token_malformed", detail: asExecgateError(e).message };
  }
  const alg = opts.alg ?? COSE_ALG.EdDSA;
  if (msg.alg !== alg)
    return { ok: false, reason: "token_malformed", detail: `alg ${msg.alg} is not ${alg}` };
  if (!verifySign1(msg, opts.issuerPublicKey)) {
    return {
      ok: false,
      reason: "token_signature_invalid",
      detail: "signature does not verify with the issuer key",
    };
  }
  let claims: TokenClaims;
  try {
    claims = claimsFromCbor(decode(msg.payload, { maxDepth: 4, maxItems: 128, maxLength: 4096 }));
  } catch (e) {
    return { ok: false, reason: "token_malformed", detail: asExecgateError(e).message };
  }
  const skew = opts.skew ?? 0;
  if (claims.aud !== opts.audience) {
    return { ok: false, reason: "token_wrong_audience", detail: `aud ${claims.aud} != ${opts.audience}` };
  }
  if (opts.now + skew < claims.nbf) {
    return { ok: false, reason: "token_not_yet_valid", detail: `nbf ${claims.nbf} > now ${opts.now}` };
  }
  if (opts.now - skew >= claims.exp) {
    return { ok: false, reason: "token_expired", detail: `exp ${claims.exp} <= now ${opts.now}` };
  }
  return { ok: true, claims };
}
