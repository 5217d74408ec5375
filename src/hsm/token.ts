import { COSE_ALG } from "../token/cose.js";
import type { TokenSigner } from "../token/signer.js";
import type { HsmKey } from "./hsm.js";

/**
 * Tokens signed by the HSM key directly (hsm.issuer = "hsm"): a P-256 key gives ES256 — whose
 * signature is the raw r‖s CKM_ECDSA returns (RFC 9053 §2.1), over SHA-256 of the Sig_structure —
 * an Ed25519 key gives EdDSA. Same claims as the in-memory issuer's tokens; a signature that
 * fails or does not come in time is denied hardware_unavailable.
 */
export function hsmTokenSigner(key: HsmKey): TokenSigner {
  return {
    alg: key.algorithm === "ecdsa-p256" ? COSE_ALG.ES256 : COSE_ALG.EdDSA,
    publicKey: key.publicKey,
    failure: "hardware_unavailable",
    sign: (tbs) => key.sign(tbs),
  };
}
