import { type KeyObject, verify } from "node:crypto";
import { decodeEpochBinding, type EpochBinding, epochHash } from "../attest/binding.js";
import { type CborValue, decode } from "../cbor/index.js";
import { asExecgateError } from "../core/errors.js";
import { algorithmOf } from "./keys.js";

/*
 * HSM epochs (docs/hsm.md "Epoch records"). Where a TPM epoch carries a quote whose
 * qualifyingData is SHA-256(binding), an HSM epoch carries the HSM key's signature over the
 * binding bytes themselves:
 *   P-256:   ECDSA over SHA-256(binding) — i.e. over the epoch hash — as raw r‖s (64 bytes);
 *   Ed25519: EdDSA over the binding bytes (64 bytes).
 * It sits in the epoch record (the `quote` field of the lineage's epoch entry) as
 *   "hsm_signature": bstr .size 64
 * beside the TPM fields (present too in tpm+hsm mode, absent in HSM-only mode).
 * Pure: the auditor calls verifyHsmEpoch with the record bytes and the exported HSM key.
 */
export const HSM_SIGNATURE_FIELD = "hsm_signature";

const RECORD_FIELDS = [
  "binding",
  "attest",
  "signature",
  "pcrs",
  "verified",
  "reason",
  "quirks",
  HSM_SIGNATURE_FIELD,
];

export type HsmEpochVerification =
  | {
      readonly ok: true;
      readonly binding: EpochBinding;
      /** The epoch hash (SHA-256 of the binding): the id the next epoch and tokens name. */
      readonly hash: Uint8Array;
      /** The daemon's own verdict recorded with it (integrity policy included). */
      readonly verified: boolean;
      /** True when the record also carries a TPM quote (tpm+hsm mode); verify it separately. */
      readonly hasQuote: boolean;
    }
  | { readonly ok: false; readonly check: string; readonly detail: string };

/** True iff `signature` is the HSM key's signature over the epoch binding bytes. */
export function verifyHsmBindingSignature(
  bindingBytes: Uint8Array,
  signature: Uint8Array,
  hsmPublicKey: KeyObject,
): boolean {
  try {
    if (signature.length !== 64) return false;
    return algorithmOf(hsmPublicKey) === "ed25519"
      ? verify(null, bindingBytes, hsmPublicKey, signature)
      : verify("sha256", bindingBytes, { key: hsmPublicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies an HSM epoch record offline, in a fixed order: the record decodes (a map with only
 * known fields), the binding is canonical, the HSM signature is present and verifies over the
 * binding bytes with `hsmPublicKey`. Never throws.
 */
export function verifyHsmEpoch(record: Uint8Array, hsmPublicKey: KeyObject): HsmEpochVerification {
  const fail = (check: string, detail: string) => ({ ok: false as const, check, detail });
  let m: ReadonlyMap<unknown, CborValue>;
  try {
    const v = decode(record, { maxDepth: 4, maxItems: 256, maxLength: 64 * 1024 });
    if (!(v instanceof Map)) return fail("hsm_epoch_record", "not a map");
    m = v as ReadonlyMap<unknown, CborValue>;
  } catch (e) {
    return fail("hsm_epoch_record", asExecgateError(e).message);
  }
  for (const k of m.keys())
    if (!RECORD_FIELDS.includes(k as string)) return fail("hsm_epoch_record", `unknown field ${String(k)}`);
  const bindingBytes = m.get("binding");
  const sig = m.get(HSM_SIGNATURE_FIELD);
  const verified = m.get("verified");
  if (!(bindingBytes instanceof Uint8Array)) return fail("hsm_epoch_record", "binding missing");
  if (typeof verified !== "boolean") return fail("hsm_epoch_record", "verified must be a bool");
  let binding: EpochBinding;
  try {
    binding = decodeEpochBinding(bindingBytes);
  } catch (e) {
    return fail("hsm_epoch_binding", asExecgateError(e).message);
  }
  if (sig === undefined) return fail("hsm_epoch_signature", "no HSM signature in the record");
  if (!(sig instanceof Uint8Array)) return fail("hsm_epoch_record", "hsm_signature must be bytes");
  if (!verifyHsmBindingSignature(bindingBytes, sig, hsmPublicKey))
    return fail("hsm_epoch_signature", "the HSM signature does not verify over the binding");
  return { ok: true, binding, hash: epochHash(binding), verified, hasQuote: m.has("attest") };
}
