import { hasTpmaObject, type TpmaObjectFlag } from "./constants.js";
import type { TpmtPublic } from "./structures/public.js";

/**
 * What makes a key fit its role, from its public area alone (TPM 2.0 Part 1 §25.2, Part 2
 * §8.3): an attestation key is a restricted signing key that never leaves its TPM and was made
 * inside it, so it signs only TPM-generated structures (quotes, certifications), never a
 * forged TPMS_ATTEST; the checkpoint signing key never leaves its TPM either. Checked by the
 * daemon at start and by the auditor on the bundle's enrollment.
 */
const AK_ATTRS: readonly TpmaObjectFlag[] = [
  "fixedTPM",
  "fixedParent",
  "sensitiveDataOrigin",
  "restricted",
  "sign",
];
const SIGNING_KEY_ATTRS: readonly TpmaObjectFlag[] = [
  "fixedTPM",
  "fixedParent",
  "sensitiveDataOrigin",
  "sign",
];

function missing(p: TpmtPublic, want: readonly TpmaObjectFlag[]): TpmaObjectFlag[] {
  return want.filter((f) => !hasTpmaObject(p.objectAttributes, f));
}

/** Why this key is not an attestation key, or undefined when it is one. */
export function notAnAttestationKey(p: TpmtPublic): string | undefined {
  const absent = missing(p, AK_ATTRS);
  const decrypt = hasTpmaObject(p.objectAttributes, "decrypt");
  if (absent.length === 0 && !decrypt) return undefined;
  return `not a restricted TPM-resident signing key (missing ${absent.join(", ") || "none"}, decrypt set: ${decrypt})`;
}

/** Why this key is not a TPM-resident signing key, or undefined when it is one. */
export function notATpmSigningKey(p: TpmtPublic): string | undefined {
  const absent = missing(p, SIGNING_KEY_ATTRS);
  return absent.length === 0 ? undefined : `missing ${absent.join(", ")}`;
}
