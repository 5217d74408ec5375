import type { KeyObject } from "node:crypto";
import { asExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import { hashAlgInfo, TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from "./constants.js";
import { parseAttest, parseAttestHeader, type TpmsAttest, type TpmsClockInfo } from "./structures/attest.js";
import { type PcrSelection, pcrSelectionDifference } from "./structures/pcr-selection.js";
import { computePcrDigest, type PcrValues } from "./structures/pcr-values.js";
import { parseTpm2bPublic, type TpmtPublic, tpmName, tpmPublicKey } from "./structures/public.js";
import { parseSignature, type TpmtSignature, verifyTpmSignature } from "./structures/signature.js";

/*
 * Quote and certify verification, pure (no I/O, no clock). The checks run in one fixed order
 * (docs/tpm.md, "Quote verification"): signature over the raw TPMS_ATTEST bytes first, then magic, type, extraData,
 * the signed PCR selection against the requested one, then the recomputed PCR digest. Only a
 * value that passed all of them is returned as a Verified* type; nothing here throws for bad
 * input — a parse failure is the check "malformed".
 */

declare const verifiedQuoteBrand: unique symbol;
declare const verifiedCertifyBrand: unique symbol;

/** Options shared by both verifiers. */
export interface AttestVerifyOptions {
  /**
   * Accept SHA-1 signatures (default false). Some real TPMs / Windows AKs only sign with
   * RSASSA-SHA1; enable it deliberately, per deployment.
   */
  readonly allowSha1?: boolean;
}

export interface VerifyQuoteInput extends AttestVerifyOptions {
  /** The raw TPMS_ATTEST bytes, exactly as signed (tpm2_quote -m). */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE bytes (tpm2_quote -s). */
  readonly signature: Uint8Array;
  readonly akPublic: KeyObject;
  /** The nonce given as qualifyingData to TPM2_Quote. */
  readonly expectedQualifyingData: Uint8Array;
  /** The selection that was requested; the signed one must equal it bit for bit. */
  readonly expectedSelection: PcrSelection;
  /** PCR values claimed for the quote (e.g. from the pcrs file or an event-log replay). */
  readonly pcrValues: PcrValues;
}

export interface VerifiedAttestCommon {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
  readonly firmwareVersion: bigint;
  readonly extraData: Uint8Array;
  readonly qualifiedSigner: Uint8Array;
  /** TPMI_ALG_HASH of the signature (and of the PCR digest). */
  readonly signatureHashAlg: number;
  /** The raw signed bytes, for lineage records. */
  readonly attest: Uint8Array;
}

export interface VerifiedQuote extends VerifiedAttestCommon {
  readonly [verifiedQuoteBrand]: true;
  readonly selection: PcrSelection;
  readonly pcrDigest: Uint8Array;
}

export type QuoteCheck =
  | "signature"
  | "magic"
  | "type"
  | "extra_data"
  | "pcr_selection"
  | "pcr_digest"
  | "malformed";

export type QuoteVerification =
  | { readonly ok: true; readonly quote: VerifiedQuote }
  | { readonly ok: false; readonly check: QuoteCheck; readonly detail: string };

type SignatureOutcome =
  | { readonly ok: true; readonly signature: TpmtSignature & { readonly hashAlg: number } }
  | { readonly ok: false; readonly check: "signature" | "malformed"; readonly detail: string };

function fail<C extends string>(
  check: C,
  detail: string,
): { readonly ok: false; readonly check: C; readonly detail: string } {
  return { ok: false, check, detail };
}

function checkSignature(
  attest: Uint8Array,
  sigBytes: Uint8Array,
  key: KeyObject,
  opts: AttestVerifyOptions,
): SignatureOutcome {
  let sig: TpmtSignature;
  try {
    sig = parseSignature(sigBytes);
  } catch (e) {
    return fail("malformed", `TPMT_SIGNATURE: ${asExecgateError(e).message}`);
  }
  if (sig.sigAlg === TPM_ALG.NULL) return fail("signature", "TPM_ALG_NULL signature");
  const hash = hashAlgInfo(sig.hashAlg);
  if (hash === undefined)
    return fail("signature", `unsupported signature hash 0x${sig.hashAlg.toString(16)}`);
  if (hash.alg === TPM_ALG.SHA1 && opts.allowSha1 !== true)
    return fail("signature", "SHA-1 signature not allowed");
  let good: boolean;
  try {
    good = verifyTpmSignature(sig, key, attest);
  } catch (e) {
    return fail("signature", asExecgateError(e).message);
  }
  if (!good) return fail("signature", "signature does not verify with the AK over the TPMS_ATTEST bytes");
  return { ok: true, signature: sig };
}

type HeaderOutcome =
  | { readonly ok: true; readonly parsed: TpmsAttest }
  | { readonly ok: false; readonly check: "malformed" | "magic" | "type"; readonly detail: string };

/** magic, then type, then the full parse (after the signature has been checked). */
function checkHeaderAndParse(attest: Uint8Array, wantType: number): HeaderOutcome {
  let header: { magic: number; type: number };
  try {
    header = parseAttestHeader(attest);
  } catch (e) {
    return fail("malformed", `TPMS_ATTEST: ${asExecgateError(e).message}`);
  }
  if (header.magic !== TPM_GENERATED_VALUE) {
    return fail("magic", `magic 0x${header.magic.toString(16)} != TPM_GENERATED_VALUE`);
  }
  if (header.type !== wantType) {
    return fail("type", `type 0x${header.type.toString(16)} != 0x${wantType.toString(16)}`);
  }
  try {
    return { ok: true, parsed: parseAttest(attest) };
  } catch (e) {
    return fail("malformed", `TPMS_ATTEST: ${asExecgateError(e).message}`);
  }
}

function common(a: TpmsAttest, hashAlg: number): VerifiedAttestCommon {
  const ci: TpmsClockInfo = a.clockInfo;
  return {
    clock: ci.clock,
    resetCount: ci.resetCount,
    restartCount: ci.restartCount,
    safe: ci.safe,
    firmwareVersion: a.firmwareVersion,
    extraData: a.extraData,
    qualifiedSigner: a.qualifiedSigner,
    signatureHashAlg: hashAlg,
    attest: a.raw,
  };
}

/** Verifies a TPM2_Quote result. Never throws. */
export function verifyQuote(input: VerifyQuoteInput): QuoteVerification {
  const sig = checkSignature(input.attest, input.signature, input.akPublic, input);
  if (!sig.ok) return sig;
  const hdr = checkHeaderAndParse(input.attest, TPM_ST.ATTEST_QUOTE);
  if (!hdr.ok) return hdr;
  const a = hdr.parsed;
  if (a.attested.type !== TPM_ST.ATTEST_QUOTE) return fail("type", "attested is not TPMS_QUOTE_INFO");
  if (!bytesEqual(a.extraData, input.expectedQualifyingData)) {
    return fail(
      "extra_data",
      `extraData ${toHex(a.extraData)} != expected ${toHex(input.expectedQualifyingData)}`,
    );
  }
  const diff = pcrSelectionDifference(a.attested.pcrSelect, input.expectedSelection);
  if (diff !== undefined) return fail("pcr_selection", diff);
  let digest: Uint8Array;
  try {
    digest = computePcrDigest(a.attested.pcrSelect, input.pcrValues, sig.signature.hashAlg);
  } catch (e) {
    return fail("pcr_digest", asExecgateError(e).message);
  }
  if (!bytesEqual(digest, a.attested.pcrDigest)) {
    return fail(
      "pcr_digest",
      `PCR values digest ${toHex(digest)} != signed pcrDigest ${toHex(a.attested.pcrDigest)}`,
    );
  }
  const quote = {
    ...common(a, sig.signature.hashAlg),
    selection: a.attested.pcrSelect,
    pcrDigest: a.attested.pcrDigest,
  } as VerifiedQuote;
  return { ok: true, quote };
}

export interface VerifyCertifyInput extends AttestVerifyOptions {
  /** TPMS_ATTEST bytes from TPM2_Certify (tpm2_certify -o). */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE bytes (tpm2_certify -s). */
  readonly signature: Uint8Array;
  readonly akPublic: KeyObject;
  readonly expectedQualifyingData: Uint8Array;
  /** TPM2B_PUBLIC bytes of the certified object (tpm2_create -u / tpm2_readpublic -o). */
  readonly certifiedPublic: Uint8Array;
}

export interface VerifiedCertify extends VerifiedAttestCommon {
  readonly [verifiedCertifyBrand]: true;
  /** Name of the certified object (= tpmName(certified)). */
  readonly name: Uint8Array;
  readonly qualifiedName: Uint8Array;
  readonly certified: TpmtPublic;
  /** The certified object's public key, usable with node:crypto. */
  readonly certifiedKey: KeyObject;
}

export type CertifyCheck = "signature" | "magic" | "type" | "extra_data" | "name" | "malformed";

export type CertifyVerification =
  | { readonly ok: true; readonly certify: VerifiedCertify }
  | { readonly ok: false; readonly check: CertifyCheck; readonly detail: string };

/**
 * Verifies a TPM2_Certify result: the AK vouches that the object whose public area is
 * `certifiedPublic` lives in the same TPM. Checks signature, magic, type, extraData, then that
 * the certified Name equals nameAlg ‖ H(TPMT_PUBLIC) of `certifiedPublic`. Attribute policy
 * (e.g. fixedTPM, sign, not decrypt) is the caller's: see `certified.objectAttributes`.
 * Never throws.
 */
export function verifyCertify(input: VerifyCertifyInput): CertifyVerification {
  const sig = checkSignature(input.attest, input.signature, input.akPublic, input);
  if (!sig.ok) return sig;
  const hdr = checkHeaderAndParse(input.attest, TPM_ST.ATTEST_CERTIFY);
  if (!hdr.ok) return hdr;
  const a = hdr.parsed;
  if (a.attested.type !== TPM_ST.ATTEST_CERTIFY) return fail("type", "attested is not TPMS_CERTIFY_INFO");
  if (!bytesEqual(a.extraData, input.expectedQualifyingData)) {
    return fail(
      "extra_data",
      `extraData ${toHex(a.extraData)} != expected ${toHex(input.expectedQualifyingData)}`,
    );
  }
  let certified: TpmtPublic;
  let name: Uint8Array;
  let certifiedKey: KeyObject;
  try {
    certified = parseTpm2bPublic(input.certifiedPublic);
    name = tpmName(certified);
    certifiedKey = tpmPublicKey(certified);
  } catch (e) {
    return fail("malformed", `certified TPM2B_PUBLIC: ${asExecgateError(e).message}`);
  }
  if (!bytesEqual(name, a.attested.name)) {
    return fail(
      "name",
      `certified name ${toHex(a.attested.name)} != Name of the given public ${toHex(name)}`,
    );
  }
  const certify = {
    ...common(a, sig.signature.hashAlg),
    name: a.attested.name,
    qualifiedName: a.attested.qualifiedName,
    certified,
    certifiedKey,
  } as VerifiedCertify;
  return { ok: true, certify };
}
