import { quote } from "../../src/tpm/ops/attest.js";
import { readPublic } from "../../src/tpm/ops/keys.js";
import { DEFAULT_PCR_SELECTION_TEXT } from "../../src/tpm/ops/pcr.js";
import { parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { hexArg, parseCommandArgs, requireStr, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { loadConfigArg } from "../config-arg.js";
import { EXIT, usageError } from "../exit.js";
import { runnerFor, TPM_OPTIONS, TPM_USAGE, tpmSettings } from "../tpm-context.js";

export const command: Command = {
  summary: "quote PCRs with the AK, writing tpm2-tools' binary formats (TPMS_ATTEST, TPMT_SIGNATURE, pcrs)",
  usage:
    `--nonce HEX [--pcrs ${DEFAULT_PCR_SELECTION_TEXT}] --message F --signature F --pcrs-out F [--ak-pub-out F.pem] ${TPM_USAGE}\n` +
    "Exit: 0 quoted, 2 usage or configuration, 3 TPM unreachable or failing (e.g. no AK at the\n" +
    "  handle) or an output file cannot be written.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...TPM_OPTIONS,
      nonce: { type: "string" },
      pcrs: { type: "string" },
      message: { type: "string" },
      signature: { type: "string" },
      "pcrs-out": { type: "string" },
      "ak-pub-out": { type: "string" },
    });
    const nonce = hexArg(p, "nonce");
    if (nonce.length === 0 || nonce.length > 64) throw usageError("--nonce must be 1..64 bytes of hex");
    const selection = parsePcrSelectionText(str(p, "pcrs") ?? DEFAULT_PCR_SELECTION_TEXT);
    const [messageOut, signatureOut, pcrsOut] = [
      requireStr(p, "message"),
      requireStr(p, "signature"),
      requireStr(p, "pcrs-out"),
    ];
    const tpm = tpmSettings(p, await loadConfigArg(p));
    const runner = runnerFor(tpm);
    const akHandle = tpm.akHandle;
    const q = await quote(runner, { akHandle, selection, qualifyingData: nonce });
    await writeOutput(messageOut, q.attest, "message");
    await writeOutput(signatureOut, q.signature, "signature");
    await writeOutput(pcrsOut, q.pcrsFile, "PCR values");
    const akPubOut = str(p, "ak-pub-out");
    if (akPubOut !== undefined) {
      const pub = await readPublic(runner, akHandle);
      if (!pub) throw usageError(`no AK at ${akHandle.toString(16)}`);
      const pem = tpmPublicKey(parseTpm2bPublic(pub)).export({ type: "spki", format: "pem" });
      await writeOutput(akPubOut, String(pem), "AK public key");
    }
    return EXIT.ok;
  },
};
