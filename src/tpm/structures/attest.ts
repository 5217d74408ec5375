import { Cursor } from "../../core/cursor.js";
import { ExecgateError } from "../../core/errors.js";
import { ByteWriter } from "../../core/writer.js";
import { MAX_DATA_BUFFER, MAX_DIGEST_BUFFER, MAX_NAME_BUFFER, TPM_ST } from "../constants.js";
import { type PcrSelection, readPcrSelection, writePcrSelection } from "./pcr-selection.js";

// TPMS_CLOCK_INFO — TPM 2.0 Part 2 §10.11.1
export interface TpmsClockInfo {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  /** TPMI_YES_NO: only 0 or 1 unmarshal. */
  readonly safe: boolean;
}

// TPMS_QUOTE_INFO — Part 2 §10.12.4
export interface TpmsQuoteInfo {
  readonly type: typeof TPM_ST.ATTEST_QUOTE;
  readonly pcrSelect: PcrSelection;
  readonly pcrDigest: Uint8Array;
}

// TPMS_CERTIFY_INFO — Part 2 §10.12.3
export interface TpmsCertifyInfo {
  readonly type: typeof TPM_ST.ATTEST_CERTIFY;
  readonly name: Uint8Array;
  readonly qualifiedName: Uint8Array;
}

// TPMU_ATTEST — Part 2 §10.12.11 (the two members execgate uses)
export type TpmuAttest = TpmsQuoteInfo | TpmsCertifyInfo;

// TPMS_ATTEST — Part 2 §10.12.12
export interface TpmsAttest {
  readonly magic: number;
  readonly type: number;
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clockInfo: TpmsClockInfo;
  readonly firmwareVersion: bigint;
  readonly attested: TpmuAttest;
  /** The bytes this was parsed from (what the TPM signed). */
  readonly raw: Uint8Array;
}

export interface TpmsAttestHeader {
  readonly magic: number;
  readonly type: number;
}

/** Reads only magic and type, so a verifier can check them in order before the union. */
export function parseAttestHeader(bytes: Uint8Array): TpmsAttestHeader {
  const c = new Cursor(bytes);
  return { magic: c.u32("TPMS_ATTEST.magic"), type: c.u16("TPMS_ATTEST.type") };
}

/**
 * Parses TPMS_ATTEST bytes exactly (no trailing bytes). The magic is recorded, not checked
 * (verifiers check it after the signature); attested types other than QUOTE and CERTIFY throw
 * `unsupported`.
 */
export function parseAttest(bytes: Uint8Array): TpmsAttest {
  const c = new Cursor(bytes);
  const magic = c.u32("TPMS_ATTEST.magic");
  const type = c.u16("TPMS_ATTEST.type");
  const qualifiedSigner = c.tpm2b("TPMS_ATTEST.qualifiedSigner", MAX_NAME_BUFFER);
  const extraData = c.tpm2b("TPMS_ATTEST.extraData", MAX_DATA_BUFFER);
  const clock = c.u64("TPMS_CLOCK_INFO.clock");
  const resetCount = c.u32("TPMS_CLOCK_INFO.resetCount");
  const restartCount = c.u32("TPMS_CLOCK_INFO.restartCount");
  const safeByte = c.u8("TPMS_CLOCK_INFO.safe");
  if (safeByte > 1)
    throw new ExecgateError("malformed", `TPMS_CLOCK_INFO.safe = ${safeByte}`, { offset: c.offset - 1 });
  const firmwareVersion = c.u64("TPMS_ATTEST.firmwareVersion");
  let attested: TpmuAttest;
  if (type === TPM_ST.ATTEST_QUOTE) {
    const pcrSelect = readPcrSelection(c);
    const pcrDigest = c.tpm2b("TPMS_QUOTE_INFO.pcrDigest", MAX_DIGEST_BUFFER);
    attested = { type, pcrSelect, pcrDigest };
  } else if (type === TPM_ST.ATTEST_CERTIFY) {
    const name = c.tpm2b("TPMS_CERTIFY_INFO.name", MAX_NAME_BUFFER);
    const qualifiedName = c.tpm2b("TPMS_CERTIFY_INFO.qualifiedName", MAX_NAME_BUFFER);
    attested = { type, name, qualifiedName };
  } else {
    throw new ExecgateError("unsupported", `TPMS_ATTEST.type 0x${type.toString(16)} is not supported`);
  }
  c.end("TPMS_ATTEST");
  return {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clockInfo: { clock, resetCount, restartCount, safe: safeByte === 1 },
    firmwareVersion,
    attested,
    raw: bytes.slice(),
  };
}

/** Marshals a TPMS_ATTEST (without `raw`); `type` is taken from `attested`. */
export function serializeAttest(
  a: Omit<TpmsAttest, "raw" | "type"> & { readonly type?: number },
): Uint8Array {
  const w = new ByteWriter();
  w.u32(a.magic).u16(a.type ?? a.attested.type);
  w.tpm2b(a.qualifiedSigner).tpm2b(a.extraData);
  w.u64(a.clockInfo.clock)
    .u32(a.clockInfo.resetCount)
    .u32(a.clockInfo.restartCount)
    .u8(a.clockInfo.safe ? 1 : 0);
  w.u64(a.firmwareVersion);
  if (a.attested.type === TPM_ST.ATTEST_QUOTE) {
    writePcrSelection(w, a.attested.pcrSelect);
    w.tpm2b(a.attested.pcrDigest);
  } else {
    w.tpm2b(a.attested.name).tpm2b(a.attested.qualifiedName);
  }
  return w.finish();
}
