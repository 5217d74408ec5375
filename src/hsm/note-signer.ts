import type { NoteSigner } from "../lineage/signer.js";
import type { HsmKey } from "./hsm.js";
import { rawToDer } from "./keys.js";

/**
 * Lineage checkpoints signed by the HSM key, as C2SP signed-note lines any note verifier
 * checks from the exported public key: P-256 keys give note type 0x02 (DER ECDSA-Sig-Value
 * over SHA-256(text); CKM_ECDSA returns raw r‖s, converted here), Ed25519 keys type 0x01
 * (CKM_EDDSA over the text).
 */
export function hsmNoteSigner(key: HsmKey, name: string): NoteSigner {
  return {
    name,
    algorithm: key.algorithm,
    publicKey: key.publicKey,
    async sign(message) {
      const sig = await key.sign(message);
      return key.algorithm === "ecdsa-p256" ? rawToDer(sig) : sig;
    },
  };
}
