import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { toHex } from "../../src/core/hex.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { goldenFromPcrs } from "../../src/policy/integrity-schema.js";
import { enroll } from "../../src/tpm/enroll.js";
import { handleHex } from "../../src/tpm/ops/handles.js";
import { DEFAULT_PCR_SELECTION_TEXT, pcrRead } from "../../src/tpm/ops/pcr.js";
import { parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { parseTpm2bPublic, tpmName, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { flag, parseCommandArgs, printJson, requireStr, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import { akHandleFrom, runnerFrom, TPM_OPTIONS, TPM_USAGE } from "../tpm-context.js";

/**
 * Provisions the EK (if absent), the AK and the AK-certified checkpoint signing key, and writes
 * what a verifier needs into --out: public areas (TPM2B_PUBLIC) and PEM keys, EK certificates,
 * the TPM2_Certify evidence, and enrollment.json naming them with their digests.
 */
export const command: Command = {
  summary: "provision EK/AK and the AK-certified checkpoint key; write the enrollment record to --out",
  usage: `--out DIR [--ak-alg ecc|rsa] [--golden-out F [--pcrs SEL]] [--json] ${TPM_USAGE}\n  --golden-out: write the [integrity.pcrs.*] policy section with the TPM's current PCR values`,
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...TPM_OPTIONS,
      out: { type: "string" },
      "ak-alg": { type: "string" },
      "golden-out": { type: "string" },
      pcrs: { type: "string" },
      json: { type: "boolean" },
    });
    const out = requireStr(p, "out");
    const alg = str(p, "ak-alg") ?? "ecc";
    if (alg !== "ecc" && alg !== "rsa") throw usageError("--ak-alg must be ecc or rsa");
    const runner = runnerFrom(p);
    const e = await enroll(runner, { akHandle: akHandleFrom(p), akAlgorithm: alg });
    try {
      await mkdir(out, { recursive: true });
    } catch (err) {
      throw usageError(`cannot create --out ${out}: ${(err as Error).message}`);
    }

    const files: Record<string, string> = {};
    const put = async (name: string, data: Uint8Array | string) => {
      await writeOutput(join(out, name), data, name);
      files[name] = createHash("sha256").update(data).digest("hex");
    };
    const pem = (pub: Uint8Array) =>
      String(tpmPublicKey(parseTpm2bPublic(pub)).export({ type: "spki", format: "pem" }));
    await put("ek.pub", e.ekPublic);
    await put("ak.pub", e.akPublic);
    await put("ak.pem", pem(e.akPublic));
    await put("signing-key.pub", e.signingKeyPublic);
    await put("signing-key.pem", pem(e.signingKeyPublic));
    await put("signing-key.certify.attest", e.signingKeyCertify.attest);
    await put("signing-key.certify.sig", e.signingKeyCertify.signature);
    for (const c of e.ekCertificates) await put(`ek-cert-${handleHex(c.nvIndex)}.der`, c.der);

    const record = {
      version: 1,
      ek: { handle: handleHex(e.ekHandle), name: toHex(tpmName(parseTpm2bPublic(e.ekPublic))) },
      ak: {
        handle: handleHex(e.akHandle),
        algorithm: alg,
        created: e.akCreated,
        name: toHex(tpmName(parseTpm2bPublic(e.akPublic))),
      },
      signingKey: {
        handle: handleHex(e.signingKeyHandle),
        name: toHex(tpmName(parseTpm2bPublic(e.signingKeyPublic))),
        certifyQualifyingData: toHex(e.signingKeyCertify.qualifyingData),
      },
      ekCertificates: e.ekCertificates.map((c) => ({ nvIndex: handleHex(c.nvIndex), key: c.key })),
      files,
    };
    await writeOutput(
      join(out, "enrollment.json"),
      `${JSON.stringify(record, null, 2)}\n`,
      "enrollment.json",
    );
    const goldenOut = str(p, "golden-out");
    if (goldenOut !== undefined) {
      const selection = parsePcrSelectionText(str(p, "pcrs") ?? DEFAULT_PCR_SELECTION_TEXT);
      const pcrs = pcrHexFromTpm(await pcrRead(runner, selection)) as Record<string, Record<string, string>>;
      await writeOutput(
        goldenOut,
        `# Golden PCR values of this TPM, written by execgate enroll\n${goldenFromPcrs(pcrs)}`,
        "golden values",
      );
    }
    if (flag(p, "json")) printJson(record);
    else {
      process.stdout.write(
        `enrolled: AK ${record.ak.handle} (${alg}${e.akCreated ? ", new" : ", existing"}), signing key ${record.signingKey.handle}, ` +
          `${e.ekCertificates.length} EK certificate(s); record in ${join(out, "enrollment.json")}\n`,
      );
    }
    return EXIT.ok;
  },
};
