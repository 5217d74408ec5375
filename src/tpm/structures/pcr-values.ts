import { createHash } from "node:crypto";
import { ExecgateError } from "../../core/errors.js";
import { fromHex } from "../../core/hex.js";
import { hashAlgByName, hashAlgInfo } from "../constants.js";
import { type PcrSelection, pcrIndices } from "./pcr-selection.js";

/** PCR values by bank (TPMI_ALG_HASH) then PCR index. */
export type PcrValues = ReadonlyMap<number, ReadonlyMap<number, Uint8Array>>;

/** Builds PcrValues from `{ sha256: { "0": "<hex>", ... } }` (the JSON shape tests and configs use). */
export function pcrValuesFromHex(
  banks: Readonly<Record<string, Readonly<Record<string, string>>>>,
): PcrValues {
  const out = new Map<number, Map<number, Uint8Array>>();
  for (const [bankName, pcrs] of Object.entries(banks)) {
    const info = hashAlgByName(bankName);
    if (info === undefined) throw new ExecgateError("unsupported", `PCR bank "${bankName}" is not supported`);
    const m = new Map<number, Uint8Array>();
    for (const [idx, hex] of Object.entries(pcrs)) {
      const i = Number(idx);
      if (!Number.isInteger(i) || i < 0 || i > 31) throw new ExecgateError("malformed", `PCR index "${idx}"`);
      const v = fromHex(hex, `PCR ${bankName}:${idx}`);
      if (v.length !== info.digestSize) {
        throw new ExecgateError(
          "malformed",
          `PCR ${bankName}:${idx} is ${v.length} bytes, want ${info.digestSize}`,
        );
      }
      m.set(i, v);
    }
    out.set(info.alg, m);
  }
  return out;
}

/**
 * The selected PCR values in digest order: banks in selection order, PCRs ascending within
 * a bank (TPM 2.0 Part 1 §17.6.4 / Part 3 §18.4 TPM2_Quote). Throws `malformed` if one is
 * missing or has the wrong size for its bank.
 */
export function selectedPcrValues(selection: PcrSelection, values: PcrValues): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const bank of selection) {
    const info = hashAlgInfo(bank.hashAlg);
    if (info === undefined) {
      throw new ExecgateError("unsupported", `PCR bank 0x${bank.hashAlg.toString(16)} is not supported`);
    }
    const m = values.get(bank.hashAlg);
    for (const i of pcrIndices(bank)) {
      const v = m?.get(i);
      if (v === undefined) throw new ExecgateError("malformed", `no value for PCR ${info.name}:${i}`);
      if (v.length !== info.digestSize) {
        throw new ExecgateError(
          "malformed",
          `PCR ${info.name}:${i} is ${v.length} bytes, want ${info.digestSize}`,
        );
      }
      out.push(v);
    }
  }
  return out;
}

/**
 * pcrDigest of TPMS_QUOTE_INFO: H(PCR values concatenated in selection order), where H is the
 * hash of the signing scheme (not of the banks), as the TPM computes it and tpm2_checkquote checks.
 */
export function computePcrDigest(selection: PcrSelection, values: PcrValues, hashAlg: number): Uint8Array {
  const info = hashAlgInfo(hashAlg);
  if (info === undefined)
    throw new ExecgateError("unsupported", `hash 0x${hashAlg.toString(16)} is not supported`);
  const h = createHash(info.name);
  for (const v of selectedPcrValues(selection, values)) h.update(v);
  return new Uint8Array(h.digest());
}
