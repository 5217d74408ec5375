import type { KeyObject } from "node:crypto";
import { digest } from "../core/digest.js";
import { toHex } from "../core/hex.js";
import { type TpmtPublic, tpmName } from "../tpm/structures/public.js";

/*
 * The host identity tokens carry (EAT ueid, claim 256) and the lineage origin is named after:
 * type byte 0x01 (RAND, RFC 9711 §4.2.1) ‖ SHA-256 of the EK's TPM Name, or of the HSM root
 * key's SubjectPublicKeyInfo DER on a host without a TPM. The daemon derives it at start and
 * the auditor re-derives it from a bundle's enrollment files, so both use these functions.
 */
export const UEID_TYPE_RAND = 0x01;

/** ueid of a TPM host: from the EK public area (TPMT_PUBLIC). */
export function ueidOfEk(ek: TpmtPublic): Uint8Array {
  return Uint8Array.of(UEID_TYPE_RAND, ...digest("sha256", tpmName(ek)));
}

/** ueid of a host whose only root is the HSM key. */
export function ueidOfKey(key: KeyObject): Uint8Array {
  return Uint8Array.of(UEID_TYPE_RAND, ...digest("sha256", key.export({ type: "spki", format: "der" })));
}

/** The short host id (first 8 bytes of the ueid's digest, hex) that names the log and its key. */
export function hostIdOf(ueid: Uint8Array): string {
  return toHex(ueid.subarray(1, 9));
}

/** The lineage origin (checkpoint first line) of the host with this ueid. */
export function lineageOrigin(ueid: Uint8Array): string {
  return `execgate/${hostIdOf(ueid)}`;
}
