import type { KeyObject } from "node:crypto";
import { encode } from "../cbor/index.js";
import type { DenialReason } from "../core/denial.js";
import { claimsToCbor, type TokenClaims } from "./claims.js";
import { lowS, sign1, toBeSigned1 } from "./cose.js";
import { type TokenVerification, type VerifyTokenOptions, verifyToken } from "./token.js";

/**
 * What signs tokens, as COSE_Sign1 (RFC 9052 §4.4): the in-memory Ed25519 issuer key
 * (sign-thread.ts) or the HSM key (hsm/token.ts). The gate calls only this, so a token's lineage
 * entries and their failure shape do not depend on which one signs (docs/lineage.md).
 */
export interface TokenSigner {
  /** COSE alg of the signatures (protected header). */
  readonly alg: number;
  readonly publicKey: KeyObject;
  /**
   * Signs the Sig_structure bytes: at once (the entries then join the current group commit) or
   * later. `waiting` is how many token requests are in flight, so a signer can move its work off
   * the event loop when they queue up.
   */
  sign(toBeSigned: Uint8Array, waiting: number): Uint8Array | Promise<Uint8Array>;
  /**
   * The denial when a signature fails or does not come in time (default hardware_unavailable:
   * a key outside the process).
   */
  readonly failure?: DenialReason;
  /** Why this signer can make no signature at all, known before any decision (a key of the wrong type). */
  readonly unusable?: string;
  /** Releases what the signer holds (at daemon stop). */
  close?(): Promise<void>;
}

/** The token for `claims`: at once when the signer signs at once, else once its signature is back. */
export function signTokenWith(
  claims: TokenClaims,
  signer: TokenSigner,
  waiting = 0,
): Uint8Array | Promise<Uint8Array> {
  const payload = encode(claimsToCbor(claims));
  const { protectedBytes, tbs } = toBeSigned1(payload, signer.alg);
  // CKM_ECDSA returns either s; verifiers take only the low one (decodeToken).
  const finish = (sig: Uint8Array) => sign1(protectedBytes, payload, lowS(signer.alg, sig));
  const sig = signer.sign(tbs, waiting);
  return sig instanceof Uint8Array ? finish(sig) : sig.then(finish);
}

/** verifyToken for a signer's tokens: the same checks in the same order, with the signer's algorithm. */
export function verifyTokenWith(bytes: Uint8Array, alg: number, opts: VerifyTokenOptions): TokenVerification {
  return verifyToken(bytes, { ...opts, alg });
}
