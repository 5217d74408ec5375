import type { KeyObject } from "node:crypto";
import { decodeEpochRecord, type EpochRecord } from "../attest/record.js";
import type { DenialReason } from "../core/denial.js";
import { digest } from "../core/digest.js";
import { asExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import type { PcrSelection } from "../tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../tpm/structures/pcrs-file.js";
import { type VerifiedQuote, verifyQuote } from "../tpm/verify-quote.js";
import type { TokenClaims } from "./claims.js";
import { ed25519PublicKey } from "./cose.js";
import { verifyToken } from "./token.js";

/**
 * A token verified all the way to the TPM, offline (pure): the epoch record's quote verifies
 * with the AK over SHA-256(binding); the binding names the issuer key; the token is signed by
 * that key, names that epoch, and its claims hold (audience, nbf, exp). Chain:
 * token → issuer key → epoch binding → quote → AK (→ EK certificate, checked at enrollment).
 */
export interface BoundTokenInput {
  readonly token: Uint8Array;
  /** The epoch record the token names (the daemon's `evidence {epoch}` reply, or the lineage). */
  readonly epochRecord: Uint8Array;
  readonly akPublic: KeyObject;
  readonly audience: string;
  readonly now: number;
  readonly skew?: number;
  readonly selection?: PcrSelection;
}

export type BoundTokenVerification =
  | {
      readonly ok: true;
      readonly claims: TokenClaims;
      readonly quote: VerifiedQuote;
      readonly record: EpochRecord;
    }
  | { readonly ok: false; readonly reason: DenialReason; readonly detail: string };

export function verifyTokenBound(input: BoundTokenInput): BoundTokenVerification {
  let record: EpochRecord;
  try {
    record = decodeEpochRecord(input.epochRecord);
  } catch (e) {
    return { ok: false, reason: "quote_invalid", detail: `epoch record: ${asExecgateError(e).message}` };
  }
  if (!record.verified || !record.attest || !record.signature || !record.pcrs) {
    return { ok: false, reason: "quote_invalid", detail: "the epoch was not verified by the daemon" };
  }
  const epochHash = digest("sha256", record.bindingBytes);
  let q: ReturnType<typeof verifyQuote>;
  try {
    const pcrs = parsePcrsFile(record.pcrs);
    q = verifyQuote({
      attest: record.attest,
      signature: record.signature,
      akPublic: input.akPublic,
      expectedQualifyingData: epochHash,
      expectedSelection: input.selection ?? pcrs.selection,
      pcrValues: pcrs.values,
    });
  } catch (e) {
    return { ok: false, reason: "quote_invalid", detail: asExecgateError(e).message };
  }
  if (!q.ok) return { ok: false, reason: "quote_invalid", detail: `${q.check}: ${q.detail}` };
  const issuer = ed25519PublicKey(record.binding.issuer);
  const t = verifyToken(input.token, {
    issuerPublicKey: issuer,
    audience: input.audience,
    now: input.now,
    ...(input.skew !== undefined ? { skew: input.skew } : {}),
  });
  if (!t.ok) return t;
  if (!bytesEqual(t.claims.epoch, epochHash)) {
    return {
      ok: false,
      reason: "token_signature_invalid",
      detail: `the token names epoch ${toHex(t.claims.epoch)}, this record is epoch ${toHex(epochHash)} (fetch the token's with execgate evidence --epoch ${toHex(t.claims.epoch)})`,
    };
  }
  return { ok: true, claims: t.claims, quote: q.quote, record };
}
