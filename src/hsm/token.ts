import type { KeyObject } from "node:crypto";
import { encode } from "../cbor/index.js";
import { claimsToCbor, type TokenClaims } from "../token/claims.js";
import { COSE_ALG, lowS, sign1, toBeSigned1 } from "../token/cose.js";
import { type TokenVerification, type VerifyTokenOptions, verifyToken } from "../token/token.js";
import type { HsmKey } from "./hsm.js";

/**
 * Tokens signed by the HSM key directly (hsm.issuer = "hsm"), as COSE_Sign1 (RFC 9052 §4.4):
 * a P-256 key gives ES256 — whose signature is the raw r‖s CKM_ECDSA returns (RFC 9053 §2.1),
 * over SHA-256 of the Sig_structure — an Ed25519 key gives EdDSA. Same claims as the
 * in-memory issuer's tokens (src/token).
 */
export interface TokenSigner {
  /** COSE alg of the signatures (protected header). */
  readonly alg: number;
  readonly publicKey: KeyObject;
  /** Signs the Sig_structure bytes. */
  sign(toBeSigned: Uint8Array): Promise<Uint8Array>;
}

export function hsmTokenSigner(key: HsmKey): TokenSigner {
  return {
    alg: key.algorithm === "ecdsa-p256" ? COSE_ALG.ES256 : COSE_ALG.EdDSA,
    publicKey: key.publicKey,
    sign: (tbs) => key.sign(tbs),
  };
}

export async function signTokenWith(claims: TokenClaims, signer: TokenSigner): Promise<Uint8Array> {
  const payload = encode(claimsToCbor(claims));
  const { protectedBytes, tbs } = toBeSigned1(payload, signer.alg);
  // CKM_ECDSA returns either s; verifiers take only the low one (decodeToken).
  return sign1(protectedBytes, payload, lowS(signer.alg, await signer.sign(tbs)));
}

/** verifyToken for a signer's tokens: the same checks in the same order, with the signer's algorithm. */
export function verifyTokenWith(bytes: Uint8Array, alg: number, opts: VerifyTokenOptions): TokenVerification {
  return verifyToken(bytes, { ...opts, alg });
}
