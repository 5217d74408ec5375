import type { KeyObject } from "node:crypto";
import { CborTag, type CborValue, decode, encode } from "../cbor/index.js";
import { asExecgateError } from "../core/errors.js";
import { claimsFromCbor, claimsToCbor, type TokenClaims } from "../token/claims.js";
import { COSE_ALG, COSE_SIGN1_TAG, decodeSign1, HEADER, sigStructure, verifySign1 } from "../token/cose.js";
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
  const protectedBytes = encode(new Map<number, CborValue>([[HEADER.alg, signer.alg]]));
  const signature = await signer.sign(sigStructure(protectedBytes, payload, new Uint8Array()));
  return encode(new CborTag(COSE_SIGN1_TAG, [protectedBytes, new Map(), payload, signature]));
}

/**
 * verifyToken for a signer's tokens: EdDSA is verifyToken itself; ES256 checks, in the same
 * order, structure (alg must be the signer's), signature, then audience, not-before, expiry.
 * (The claim checks mirror src/token/token.ts verifyToken, which accepts EdDSA only.)
 */
export function verifyTokenWith(bytes: Uint8Array, alg: number, opts: VerifyTokenOptions): TokenVerification {
  if (alg === COSE_ALG.EdDSA) return verifyToken(bytes, opts);
  if (bytes.length === 0) return { ok: false, reason: "no_token", detail: "empty token" };
  let msg: ReturnType<typeof decodeSign1>;
  try {
    msg = decodeSign1(bytes, { requireTag: true });
  } catch (e) {
    return { ok: false, reason: "token_malformed", detail: asExecgateError(e).message };
  }
  if (msg.alg !== alg)
    return { ok: false, reason: "token_malformed", detail: `alg ${msg.alg} is not ${alg}` };
  if (!verifySign1(msg, opts.issuerPublicKey)) {
    return {
      ok: false,
      reason: "token_signature_invalid",
      detail: "signature does not verify with the HSM key",
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
