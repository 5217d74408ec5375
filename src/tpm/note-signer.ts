import type { KeyObject } from "node:crypto";
import { digest as sha256Of } from "../core/digest.js";
import { ExecgateError } from "../core/errors.js";
import type { NoteSigner } from "../lineage/signer.js";
import { TPM_ALG } from "./constants.js";
import { signDigest } from "./ops/attest.js";
import type { TpmRunner } from "./runner.js";
import { ecdsaSignatureToDer, parseSignature } from "./structures/signature.js";

/**
 * Lineage checkpoints signed by the TPM-resident, AK-certified P-256 key: the note text is
 * hashed here (SHA-256), TPM2_Sign signs the digest, and the TPMT_SIGNATURE's r and s become the
 * DER ECDSA-Sig-Value a C2SP signed-note ECDSA line carries.
 */
export function tpmNoteSigner(
  runner: TpmRunner,
  handle: number,
  publicKey: KeyObject,
  name: string,
): NoteSigner {
  if (publicKey.asymmetricKeyType !== "ec" || publicKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new ExecgateError("config_invalid", "the checkpoint signing key must be ECC P-256");
  }
  return {
    name,
    algorithm: "ecdsa-p256",
    publicKey,
    async sign(message) {
      const digest = sha256Of("sha256", message);
      const sig = parseSignature(await signDigest(runner, handle, digest));
      if (sig.sigAlg !== TPM_ALG.ECDSA) {
        throw new ExecgateError("hardware_error", "the TPM did not return an ECDSA signature");
      }
      return ecdsaSignatureToDer(sig.signatureR, sig.signatureS);
    },
  };
}
