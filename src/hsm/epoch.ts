import type { KeyObject } from "node:crypto";
import type { EpochBinding } from "../attest/binding.js";
import { epochHash } from "../attest/binding.js";
import { verifyHsmBindingSignature } from "../attest/hsm-signature.js";
import { decodeEpochRecord, type EpochRecord } from "../attest/record.js";
import { asExecgateError } from "../core/errors.js";

/*
 * HSM epochs (docs/hsm.md "Epoch entries"). Where a TPM epoch carries a quote whose
 * qualifyingData is SHA-256(binding), an HSM epoch carries the HSM key's signature over the
 * binding bytes themselves:
 *   P-256:   ECDSA over SHA-256(binding) — i.e. over the epoch hash — as raw r‖s (64 bytes);
 *   Ed25519: EdDSA over the binding bytes (64 bytes).
 * The signature sits in the lineage's epoch entry beside the epoch record:
 *   EpochBody = { "quote": EpochRecord bytes, …, ? "hsmSignature": bstr .size 64 }
 * and the record keeps its TPM format (in HSM-only mode it has no quote fields).
 * Pure: the auditor calls verifyHsmEpoch with an epoch entry's body and the exported HSM key.
 */

/** What verifyHsmEpoch reads: the fields of a lineage epoch entry body (EpochBody). */
export interface HsmEpochInput {
  /** The epoch record bytes (EpochBody.quote). */
  readonly quote: Uint8Array;
  readonly hsmSignature?: Uint8Array;
}

export type HsmEpochVerification =
  | {
      readonly ok: true;
      readonly record: EpochRecord;
      readonly binding: EpochBinding;
      /** The epoch hash (SHA-256 of the binding): the id the next epoch and tokens name. */
      readonly hash: Uint8Array;
      /** The daemon's own verdict recorded with it (integrity policy included). */
      readonly verified: boolean;
      /** True when the record also carries a TPM quote (tpm+hsm mode); verify it as for TPM epochs. */
      readonly hasQuote: boolean;
    }
  | { readonly ok: false; readonly check: string; readonly detail: string };

/**
 * Verifies an HSM epoch offline, in a fixed order: the record decodes strictly
 * (decodeEpochRecord: known fields, canonical binding), the HSM signature is present and
 * verifies over the binding bytes with `hsmPublicKey`. Never throws.
 */
export function verifyHsmEpoch(epoch: HsmEpochInput, hsmPublicKey: KeyObject): HsmEpochVerification {
  const fail = (check: string, detail: string) => ({ ok: false as const, check, detail });
  let record: EpochRecord;
  try {
    record = decodeEpochRecord(epoch.quote);
  } catch (e) {
    return fail("hsm_epoch_record", asExecgateError(e).message);
  }
  const sig = epoch.hsmSignature;
  if (sig === undefined) return fail("hsm_epoch_signature", "no HSM signature in the epoch entry");
  if (!verifyHsmBindingSignature(record.bindingBytes, sig, hsmPublicKey))
    return fail("hsm_epoch_signature", "the HSM signature does not verify over the binding");
  return {
    ok: true,
    record,
    binding: record.binding,
    hash: epochHash(record.binding),
    verified: record.verified,
    hasQuote: record.attest !== undefined,
  };
}
