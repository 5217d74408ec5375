import { ExecgateError } from "../../core/errors.js";
import type { TpmRunner } from "../runner.js";

/** A PCR selection as banks with their PCR indices, in the order tools and quotes use. */
export type PcrBanks = ReadonlyArray<{ readonly bank: string; readonly pcrs: readonly number[] }>;

/** PCR values: bank → index → digest. */
export type PcrValues = Map<string, Map<number, Uint8Array>>;

const DIGEST_SIZE: Record<string, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };
export const DEFAULT_PCRS: PcrBanks = [{ bank: "sha256", pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 10] }];

/** The tpm2-tools text form, `sha256:0,1,2+sha1:0`. */
export function pcrBanksText(sel: PcrBanks): string {
  return sel.map((b) => `${b.bank}:${[...b.pcrs].sort((x, y) => x - y).join(",")}`).join("+");
}

/**
 * TPM2_PCR_Read through tpm2_pcrread with `-o` (values format: the digests concatenated, bank
 * by bank in selection order, PCRs ascending). tpm2_pcrread loops over the TPM's 8-digest limit.
 */
export async function pcrRead(runner: TpmRunner, sel: PcrBanks): Promise<PcrValues> {
  const { files } = await runner.run("tpm2_pcrread", [pcrBanksText(sel), "-o", "pcrs.bin"], {
    outputs: ["pcrs.bin"],
  });
  const bytes = files["pcrs.bin"]!;
  const out: PcrValues = new Map();
  let off = 0;
  for (const { bank, pcrs } of sel) {
    const size = DIGEST_SIZE[bank];
    if (size === undefined) throw new ExecgateError("unsupported", `PCR bank ${bank}`);
    const values = new Map<number, Uint8Array>();
    for (const i of [...pcrs].sort((x, y) => x - y)) {
      if (off + size > bytes.length) throw new ExecgateError("hardware_error", "tpm2_pcrread returned too few values");
      values.set(i, bytes.slice(off, off + size));
      off += size;
    }
    out.set(bank, values);
  }
  if (off !== bytes.length) throw new ExecgateError("hardware_error", "tpm2_pcrread returned more values than asked");
  return out;
}

/** TPM2_PCR_Extend of one bank (tests and dev only: emulates a boot on swtpm). */
export async function pcrExtend(runner: TpmRunner, index: number, bank: string, digest: Uint8Array): Promise<void> {
  const size = DIGEST_SIZE[bank];
  if (size === undefined || digest.length !== size) throw new ExecgateError("usage", `bad ${bank} digest`);
  if (!Number.isInteger(index) || index < 0 || index > 23) throw new ExecgateError("usage", `bad PCR index ${index}`);
  await runner.run("tpm2_pcrextend", [`${index}:${bank}=${Buffer.from(digest).toString("hex")}`]);
}
