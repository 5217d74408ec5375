import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { toHex } from "../../src/core/hex.js";
import { Swtpm } from "../../src/dev/swtpm.js";
import { verifyEkChain } from "../../src/tpm/ek-chain.js";
import { enroll } from "../../src/tpm/enroll.js";
import { quote } from "../../src/tpm/ops/attest.js";
import { handleHex } from "../../src/tpm/ops/handles.js";
import { DEFAULT_PCR_SELECTION } from "../../src/tpm/ops/pcr.js";
import { pcrSelectionToText } from "../../src/tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { verifyCertify, verifyQuote } from "../../src/tpm/verify-quote.js";
import { flag, parseCommandArgs, printJson, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";

/**
 * The embedded default. For now (until the daemon lands): a swtpm in DIR (manufactured with EK
 * certificates on first run, resumed afterwards), enrollment (EK, AK, AK-certified signing
 * key), one quote over a fresh nonce, and its verification in TypeScript — then a report.
 */
export const command: Command = {
  summary: "embedded default: a swtpm in DIR, enroll, quote and verify it, print the result",
  usage: "[--dir DIR (default ./.execgate-dev)] [--json]",
  async run(argv) {
    const p = parseCommandArgs(argv, { dir: { type: "string" }, json: { type: "boolean" } });
    const dir = resolve(str(p, "dir") ?? ".execgate-dev");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tpm = await Swtpm.start({ dir: join(dir, "tpm") });
    try {
      await writeFile(join(dir, "env"), `TPM2TOOLS_TCTI=${tpm.tcti}\n`);
      const e = await enroll(tpm.runner);
      const now = new Date();
      const trust = await readFile(tpm.paths.rootCa, "utf8");
      const intermediates = [await readFile(tpm.paths.issuerCa, "utf8")];
      const chains = e.ekCertificates.map((c) => ({
        nvIndex: handleHex(c.nvIndex),
        key: c.key,
        chain: verifyEkChain({ ekCert: c.der, trustBundlePem: trust, intermediates, now }),
      }));
      const akPublic = tpmPublicKey(parseTpm2bPublic(e.akPublic));
      const cert = verifyCertify({
        attest: e.signingKeyCertify.attest,
        signature: e.signingKeyCertify.signature,
        akPublic,
        expectedQualifyingData: e.signingKeyCertify.qualifyingData,
        certifiedPublic: e.signingKeyPublic,
      });
      const nonce = new Uint8Array(randomBytes(32));
      const q = await quote(tpm.runner, {
        akHandle: e.akHandle,
        selection: DEFAULT_PCR_SELECTION,
        qualifyingData: nonce,
      });
      const pcrs = parsePcrsFile(q.pcrsFile);
      const verified = verifyQuote({
        attest: q.attest,
        signature: q.signature,
        akPublic,
        expectedQualifyingData: nonce,
        expectedSelection: DEFAULT_PCR_SELECTION,
        pcrValues: pcrs.values,
      });
      const ok = chains.length > 0 && chains.every((c) => c.chain.ok) && cert.ok && verified.ok;
      const report = {
        ok,
        dir,
        tcti: tpm.tcti,
        ak: { handle: handleHex(e.akHandle), created: e.akCreated },
        ekCertificates: chains.map((c) => ({
          nvIndex: c.nvIndex,
          key: c.key,
          chain: c.chain.ok ? "verified" : `invalid: ${c.chain.detail}`,
        })),
        signingKey: {
          handle: handleHex(e.signingKeyHandle),
          certifiedByAk: cert.ok ? "verified" : `invalid: ${cert.detail}`,
        },
        quote: verified.ok
          ? {
              valid: true,
              nonce: toHex(nonce),
              selection: pcrSelectionToText(verified.quote.selection),
              pcrDigest: toHex(verified.quote.pcrDigest),
              resetCount: verified.quote.resetCount,
              restartCount: verified.quote.restartCount,
              clock: verified.quote.clock.toString(),
            }
          : { valid: false, check: verified.check, detail: verified.detail },
      };
      if (flag(p, "json")) printJson(report);
      else {
        const lines = [
          `execgate dev: swtpm in ${dir} (${tpm.tcti})`,
          `  AK ${report.ak.handle} ${e.akCreated ? "created" : "resumed"}`,
          ...report.ekCertificates.map((c) => `  EK certificate ${c.nvIndex} (${c.key}): ${c.chain}`),
          `  signing key ${report.signingKey.handle} certified by the AK: ${report.signingKey.certifiedByAk}`,
          verified.ok
            ? `  quote over ${report.quote.selection ?? ""}: VALID (nonce ${toHex(nonce).slice(0, 16)}…, resetCount ${verified.quote.resetCount})`
            : `  quote: INVALID (${verified.check}: ${verified.detail})`,
          ok ? "result: attested" : "result: NOT attested",
        ];
        process.stdout.write(`${lines.join("\n")}\n`);
      }
      return ok ? EXIT.ok : EXIT.failed;
    } finally {
      await tpm.stop();
    }
  },
};
