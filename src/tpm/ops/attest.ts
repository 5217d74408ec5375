import { ExecgateError } from "../../core/errors.js";
import type { TpmRunner } from "../runner.js";
import { type PcrSelection, pcrSelectionToText } from "../structures/pcr-selection.js";
import { handleHex } from "./handles.js";

/** What the TPM signed, byte for byte as tpm2-tools wrote it. */
export interface QuoteOutput {
  /** TPMS_ATTEST as signed (tpm2_quote -m). */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE (tpm2_quote -s, tss format). */
  readonly signature: Uint8Array;
  /** The PCR values in tpm2-tools' pcrs file format (tpm2_quote -o). */
  readonly pcrsFile: Uint8Array;
}

const MAX_QUALIFYING_DATA = 64;

/** TPM2_Quote with the AK over `selection`, binding `qualifyingData` (the verifier's nonce). */
export async function quote(
  runner: TpmRunner,
  opts: { akHandle: number; selection: PcrSelection; qualifyingData: Uint8Array },
): Promise<QuoteOutput> {
  if (opts.qualifyingData.length === 0 || opts.qualifyingData.length > MAX_QUALIFYING_DATA) {
    throw new ExecgateError("usage", `qualifying data must be 1..${MAX_QUALIFYING_DATA} bytes`);
  }
  const { files } = await runner.run(
    "tpm2_quote",
    [
      "-c",
      handleHex(opts.akHandle),
      "-l",
      pcrSelectionToText(opts.selection),
      "-q",
      Buffer.from(opts.qualifyingData).toString("hex"),
      "-g",
      "sha256",
      "-m",
      "q.msg",
      "-s",
      "q.sig",
      "-o",
      "q.pcrs",
    ],
    { outputs: ["q.msg", "q.sig", "q.pcrs"] },
  );
  return { attest: files["q.msg"]!, signature: files["q.sig"]!, pcrsFile: files["q.pcrs"]! };
}

/**
 * tpm2_certify (tpm2-tools 5.4) has no option for qualifyingData and always passes these four
 * bytes. Certification binds a key to the TPM once; freshness comes from the quotes.
 */
export const TPM2_TOOLS_CERTIFY_QUALIFYING_DATA = Uint8Array.of(0x00, 0xff, 0x55, 0xaa);

/** TPM2_Certify: the AK attests that the object at `objectHandle` is resident in this TPM. */
export async function certify(
  runner: TpmRunner,
  opts: { objectHandle: number; akHandle: number },
): Promise<{ attest: Uint8Array; signature: Uint8Array; qualifyingData: Uint8Array }> {
  const { files } = await runner.run(
    "tpm2_certify",
    [
      "-c",
      handleHex(opts.objectHandle),
      "-C",
      handleHex(opts.akHandle),
      "-g",
      "sha256",
      "-o",
      "c.att",
      "-s",
      "c.sig",
    ],
    { outputs: ["c.att", "c.sig"] },
  );
  return {
    attest: files["c.att"]!,
    signature: files["c.sig"]!,
    qualifyingData: TPM2_TOOLS_CERTIFY_QUALIFYING_DATA,
  };
}

/** TPM2_Sign of a SHA-256 digest with a non-restricted key; returns the TPMT_SIGNATURE bytes. */
export async function signDigest(runner: TpmRunner, handle: number, digest: Uint8Array): Promise<Uint8Array> {
  if (digest.length !== 32) throw new ExecgateError("usage", "sign expects a 32-byte SHA-256 digest");
  const { files } = await runner.run(
    "tpm2_sign",
    ["-c", handleHex(handle), "-g", "sha256", "-s", "ecdsa", "-d", "-o", "sig.bin", "digest.bin"],
    { inputs: { "digest.bin": digest }, outputs: ["sig.bin"] },
  );
  return files["sig.bin"]!;
}
