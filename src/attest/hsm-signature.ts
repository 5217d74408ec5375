import { type KeyObject, verify } from "node:crypto";

/**
 * True iff `signature` is the HSM key's signature over the epoch binding bytes (docs/hsm.md
 * "Epoch entries"): EdDSA over the bytes for Ed25519, ECDSA P-256 over their SHA-256 as raw r‖s.
 * Here, not in src/hsm: the epoch's evaluation needs it, and src/hsm builds on src/attest.
 */
export function verifyHsmBindingSignature(
  bindingBytes: Uint8Array,
  signature: Uint8Array,
  hsmPublicKey: KeyObject,
): boolean {
  try {
    if (signature.length !== 64) return false;
    if (hsmPublicKey.asymmetricKeyType === "ed25519")
      return verify(null, bindingBytes, hsmPublicKey, signature);
    if (
      hsmPublicKey.asymmetricKeyType !== "ec" ||
      hsmPublicKey.asymmetricKeyDetails?.namedCurve !== "prime256v1"
    )
      return false;
    return verify("sha256", bindingBytes, { key: hsmPublicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return false;
  }
}
