import { ExecgateError } from "../../core/errors.js";
import { hashAlgByName, hashAlgInfo } from "../constants.js";
import type { TpmRunner } from "../runner.js";
import {
  type PcrSelection,
  parsePcrSelectionText,
  pcrIndices,
  pcrSelectionToText,
} from "../structures/pcr-selection.js";
import type { PcrValues } from "../structures/pcr-values.js";

/** The default quote selection (issue 2): sha256 bank, PCRs 0–7 and 10. */
export const DEFAULT_PCR_SELECTION_TEXT = "sha256:0,1,2,3,4,5,6,7,10";
export const DEFAULT_PCR_SELECTION: PcrSelection = parsePcrSelectionText(DEFAULT_PCR_SELECTION_TEXT);

/**
 * TPM2_PCR_Read through tpm2_pcrread with `-o` (values format: the digests concatenated, bank
 * by bank in selection order, PCRs ascending). tpm2_pcrread loops over the TPM's 8-digest limit.
 */
export async function pcrRead(runner: TpmRunner, sel: PcrSelection): Promise<PcrValues> {
  const { files } = await runner.run("tpm2_pcrread", [pcrSelectionToText(sel), "-o", "pcrs.bin"], {
    outputs: ["pcrs.bin"],
  });
  const bytes = files["pcrs.bin"]!;
  const out = new Map<number, Map<number, Uint8Array>>();
  let off = 0;
  for (const bank of sel) {
    const info = hashAlgInfo(bank.hashAlg);
    if (info === undefined) throw new ExecgateError("unsupported", `PCR bank 0x${bank.hashAlg.toString(16)}`);
    const values = new Map<number, Uint8Array>();
    for (const i of pcrIndices(bank)) {
      if (off + info.digestSize > bytes.length) {
        throw new ExecgateError("hardware_error", "tpm2_pcrread returned too few values");
      }
      values.set(i, bytes.slice(off, off + info.digestSize));
      off += info.digestSize;
    }
    out.set(bank.hashAlg, values);
  }
  if (off !== bytes.length)
    throw new ExecgateError("hardware_error", "tpm2_pcrread returned more values than asked");
  return out;
}

/** TPM2_PCR_Extend of one bank (tests and dev only: emulates a boot on swtpm). */
export async function pcrExtend(
  runner: TpmRunner,
  index: number,
  bank: string,
  digest: Uint8Array,
): Promise<void> {
  const info = hashAlgByName(bank);
  if (info === undefined || digest.length !== info.digestSize)
    throw new ExecgateError("usage", `bad ${bank} digest`);
  if (!Number.isInteger(index) || index < 0 || index > 23)
    throw new ExecgateError("usage", `bad PCR index ${index}`);
  await runner.run("tpm2_pcrextend", [`${index}:${bank}=${Buffer.from(digest).toString("hex")}`]);
}
