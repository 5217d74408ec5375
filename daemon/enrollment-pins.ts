import type { Enrollment } from "../src/tpm/enroll.js";
import { parseTpm2bPublic, tpmPublicKey } from "../src/tpm/structures/public.js";

/**
 * The enrollment files an auditor pins (`audit verify --ak-pub`, the log key): the EK, AK and
 * checkpoint-key public areas as the TPM gave them, and the AK and signing key as PEM.
 */
export function pinFiles(e: Enrollment): [name: string, data: Uint8Array | string][] {
  const pem = (pub: Uint8Array) =>
    String(tpmPublicKey(parseTpm2bPublic(pub)).export({ type: "spki", format: "pem" }));
  return [
    ["ek.pub", e.ekPublic],
    ["ak.pub", e.akPublic],
    ["ak.pem", pem(e.akPublic)],
    ["signing-key.pub", e.signingKeyPublic],
    ["signing-key.pem", pem(e.signingKeyPublic)],
  ];
}
