import { createPublicKey, type KeyObject } from "node:crypto";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { hashAlgInfo } from "../../src/tpm/constants.js";
import {
  parsePcrSelectionText,
  pcrIndices,
  pcrSelectionToText,
} from "../../src/tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { verifyQuote } from "../../src/tpm/verify-quote.js";
import { flag, hexArg, parseCommandArgs, printJson, readInput, requireStr, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";

export const command: Command = {
  summary: "verify a quote offline (tpm2_quote or execgate tpm quote output); exit 0 only if valid",
  usage:
    "--ak-pub AK.pem --message F --signature F --pcrs F --nonce HEX [--pcr-selection sha256:0,…] [--allow-sha1] [--json]\n" +
    "  --pcr-selection: the selection you asked for (default: the one recorded in the pcrs file)\n" +
    "Exit: 0 valid, 1 invalid or malformed input (the failed check on stderr, or in --json), 2 usage,\n" +
    "  3 unreadable file.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      "ak-pub": { type: "string" },
      message: { type: "string" },
      signature: { type: "string" },
      pcrs: { type: "string" },
      nonce: { type: "string" },
      "pcr-selection": { type: "string" },
      "allow-sha1": { type: "boolean" },
      json: { type: "boolean" },
    });
    const nonce = hexArg(p, "nonce");
    const selectionText = str(p, "pcr-selection");
    const expected = selectionText === undefined ? undefined : parsePcrSelectionText(selectionText);
    const akPem = await readInput(requireStr(p, "ak-pub"), "AK public key");
    const attest = await readInput(requireStr(p, "message"), "message");
    const signature = await readInput(requireStr(p, "signature"), "signature");
    const pcrsBytes = await readInput(requireStr(p, "pcrs"), "PCR values");

    let akPublic: KeyObject;
    try {
      akPublic = createPublicKey(Buffer.from(akPem));
    } catch (e) {
      throw new ExecgateError("malformed", `--ak-pub is not a PEM/DER public key: ${(e as Error).message}`);
    }
    const pcrs = parsePcrsFile(pcrsBytes);
    const result = verifyQuote({
      attest,
      signature,
      akPublic,
      expectedQualifyingData: nonce,
      expectedSelection: expected ?? pcrs.selection,
      pcrValues: pcrs.values,
      allowSha1: flag(p, "allow-sha1"),
    });

    if (!result.ok) {
      if (flag(p, "json")) printJson({ valid: false, check: result.check, detail: result.detail });
      else process.stderr.write(`quote INVALID: check ${result.check} failed: ${result.detail}\n`);
      return EXIT.failed;
    }
    const q = result.quote;
    const values: Record<string, Record<string, string>> = {};
    for (const bank of q.selection) {
      const name = hashAlgInfo(bank.hashAlg)?.name ?? String(bank.hashAlg);
      const out: Record<string, string> = {};
      for (const i of pcrIndices(bank))
        out[String(i)] = toHex(pcrs.values.get(bank.hashAlg)?.get(i) ?? new Uint8Array());
      values[name] = out;
    }
    const summary = {
      valid: true,
      selection: pcrSelectionToText(q.selection),
      pcrDigest: toHex(q.pcrDigest),
      qualifyingData: toHex(q.extraData),
      clock: q.clock.toString(),
      resetCount: q.resetCount,
      restartCount: q.restartCount,
      safe: q.safe,
      firmwareVersion: q.firmwareVersion.toString(16),
      signer: toHex(q.qualifiedSigner),
      pcrs: values,
    };
    if (flag(p, "json")) printJson(summary);
    else {
      process.stdout.write(
        `quote valid: ${summary.selection}, digest ${summary.pcrDigest}\n` +
          `  clock ${summary.clock} ms, resetCount ${q.resetCount}, restartCount ${q.restartCount}, safe ${q.safe}\n`,
      );
    }
    return EXIT.ok;
  },
};
